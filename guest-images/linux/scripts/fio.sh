#!/bin/sh
# Short fio random read/write job with crc32c verification on /dev/nvme0n1.
# nvmevm.arg: size to test (default 16M). Exit 3 when there is no NVMe disk,
# 4 when fio is missing (initrd-base.img).
dev=/dev/nvme0n1
size=${1:-16M}
# The nvme driver probes asynchronously: wait for the namespace if a controller is there.
if [ ! -b $dev ] && [ -n "$(ls /sys/class/nvme 2>/dev/null)" ]; then
    i=0
    while [ ! -b $dev ] && [ $i -lt 300 ]; do
        sleep 0.1
        i=$((i + 1))
    done
fi
if [ ! -b $dev ]; then
    echo "fio: no $dev (no NVMe disk attached or no namespace)"
    exit 3
fi
if ! command -v fio >/dev/null; then
    echo "fio: fio is not in this initramfs (boot initrd.img, not initrd-base.img)"
    exit 4
fi
fio --name=randrw --filename=$dev --size="$size" --rw=randrw --bs=4k \
    --ioengine=libaio --iodepth=16 --direct=1 --verify=crc32c --verify_fatal=1 \
    --group_reporting >/tmp/fio.out 2>&1
status=$?
if [ $status -ne 0 ]; then
    cat /tmp/fio.out
    echo "fio: failed (status $status)"
    exit 1
fi
grep -E '^ *(read|write):|err=' /tmp/fio.out
echo "fio: ok"
