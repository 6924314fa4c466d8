#!/bin/sh
# For tests/linux/suite-stats.sh: fio random reads and writes (4 KiB, QD 16, O_DIRECT) over
# SIZE (nvmevm.arg, default 32M) on /dev/nvme0n1; prints fio's own counts of issued I/Os
# ("fio-stats: issued reads=R writes=W"), then holds so the host can read nvmevm's
# statistics before it stops the VM (exits by itself after 10 minutes).
. /scripts/lib-nvme.sh
wait_nvme /dev/nvme0n1 || exit 3
echo "fio-stats: running"
fio --name=stats --filename=/dev/nvme0n1 --size="${1:-32M}" --rw=randrw --bs=4k \
    --ioengine=libaio --iodepth=16 --direct=1 --randrepeat=0 >/tmp/fio.out 2>&1
status=$?
grep -E '^ *(read|write):|issued rwts' /tmp/fio.out
# "issued rwts: total=R,W,T,S short=... dropped=..."
issued=$(sed -n 's/.*issued rwts: total=\([0-9]*\),\([0-9]*\),.*/reads=\1 writes=\2/p' /tmp/fio.out)
[ $status -eq 0 ] && [ -n "$issued" ] || { tail -15 /tmp/fio.out; echo "fio-stats: failed"; exit 1; }
echo "fio-stats: issued $issued"
echo "fio-stats: holding"
sleep 600
