#!/bin/sh
# Mixed-size random writes (512 B to 64 KiB) at QD24, each range trimmed before it is
# written and some trimmed again after (trim_percentage), on
# /dev/nvme0n1 over SIZE (nvmevm.arg, default 64M): every written block is read back and
# checked (crc32c), every trimmed one must read back as zeroes.
. /scripts/lib-nvme.sh
wait_nvme /dev/nvme0n1 || exit 3
size=${1:-64M}
fio --name=trim-verify --filename=/dev/nvme0n1 --size="$size" --rw=randtrimwrite \
    --bsrange=512-64k --ioengine=libaio --iodepth=24 --direct=1 --verify=crc32c \
    --verify_fatal=1 --do_verify=1 --trim_percentage=25 --trim_backlog=8 \
    --trim_verify_zero=1 --group_reporting >/tmp/fio.out 2>&1
status=$?
grep -E '^ *(read|write|trim):|err=' /tmp/fio.out | head -8
[ $status -eq 0 ] && echo "fio-trim: ok" || { tail -20 /tmp/fio.out; echo "fio-trim: failed ($status)"; }
exit $status
