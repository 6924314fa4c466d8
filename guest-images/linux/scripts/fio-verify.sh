#!/bin/sh
# fio 4k random writes at QD16 over SIZE (nvmevm.arg, default 256M) with crc32c
# verification of every block, on /dev/nvme0n1.
. /scripts/lib-nvme.sh
wait_nvme /dev/nvme0n1 || exit 3
size=${1:-256M}
fio --name=verify --filename=/dev/nvme0n1 --size="$size" --rw=randwrite --bs=4k \
    --ioengine=libaio --iodepth=16 --direct=1 --verify=crc32c --verify_fatal=1 \
    --do_verify=1 --group_reporting >/tmp/fio.out 2>&1
status=$?
grep -E '^ *(read|write):|err=|verify' /tmp/fio.out | head -8
[ $status -eq 0 ] && echo "fio-verify: ok" || { tail -20 /tmp/fio.out; echo "fio-verify: failed ($status)"; }
exit $status
