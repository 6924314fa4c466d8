#!/bin/sh
# The README's demo: say what the guest sees, then run fio with crc32c verification on
# the NVMe disk (nvmevm.arg: fio size, default 64M).
sh /scripts/hello.sh
sh /scripts/fio.sh "${1:-64M}"
