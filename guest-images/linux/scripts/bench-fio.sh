#!/bin/sh
# Disk benchmark for bench/nvme --linux: a series of fio jobs on one block device, one
# parsable result line per job. Positional arguments (nvmevm.arg=..., all optional):
#   $1 device      /dev/nvme0n1 (default) or /dev/vda, ...
#   $2 runtime     seconds per job (default 15)
#   $3 jobs        comma-separated RW:QD list (default randread:1,randread:16,randwrite:1,randwrite:16)
#   $4 span        bytes of the device to use, fio size syntax (default 256M)
#   $5 ioengine    libaio (default), io_uring, psync
# Output per job (one line):
#   bench-fio: job=RW-qdQD rw=RW qd=QD ios=N kib=N runtime_ms=N iops=N lat_avg_us=X clat_p50_us=N clat_p99_us=N err=N
# and at the end `bench-fio: done`. Status: 0 ok; 1 a fio job failed (its output is
# printed); 2 bad arguments; 3 no such device; 4 fio missing (initrd-base.img).
# A virtio disk needs virtio_pci + virtio_blk, which the base initramfs lacks: if the
# device is missing and /bench/modules/order exists (an extra cpio archive appended to
# the initrd by bench/nvme), those modules are loaded first.
dev=${1:-/dev/nvme0n1}
runtime=${2:-15}
jobs=${3:-randread:1,randread:16,randwrite:1,randwrite:16}
span=${4:-256M}
engine=${5:-libaio}

case $runtime in '' | *[!0-9]*) echo "bench-fio: bad runtime '$runtime'"; exit 2 ;; esac
if ! command -v fio >/dev/null; then
    echo "bench-fio: fio is not in this initramfs (boot initrd.img, not initrd-base.img)"
    exit 4
fi
if [ ! -b "$dev" ] && [ -f /bench/modules/order ]; then
    while read -r ko; do
        insmod "/bench/modules/$ko" 2>/dev/null || echo "bench-fio: insmod $ko failed"
    done </bench/modules/order
fi
# Drivers probe asynchronously: wait up to 30 s for the disk.
i=0
while [ ! -b "$dev" ] && [ $i -lt 300 ]; do
    sleep 0.1
    i=$((i + 1))
done
if [ ! -b "$dev" ]; then
    echo "bench-fio: no $dev"
    ls /sys/class/block 2>/dev/null
    exit 3
fi
echo "bench-fio: device $dev $(cat /sys/class/block/${dev#/dev/}/size 2>/dev/null) sectors," \
    "scheduler $(cat /sys/class/block/${dev#/dev/}/queue/scheduler 2>/dev/null)," \
    "cpus $(grep -c ^processor /proc/cpuinfo), engine $engine, ${runtime}s per job"

status=0
for job in $(echo "$jobs" | tr ',' ' '); do
    rw=${job%%:*}
    qd=${job#*:}
    case $rw in randread | randwrite | read | write | randrw) ;; *)
        echo "bench-fio: bad job '$job'"
        exit 2
        ;;
    esac
    case $qd in '' | *[!0-9]*) echo "bench-fio: bad queue depth in '$job'"; exit 2 ;; esac
    fio --name="$rw-qd$qd" --filename="$dev" --rw="$rw" --bs=4k --iodepth="$qd" \
        --ioengine="$engine" --direct=1 --size="$span" --time_based --runtime="$runtime" \
        --randrepeat=0 --norandommap --output-format=terse --terse-version=3 \
        >/tmp/fio.out 2>/tmp/fio.err
    rc=$?
    line=$(grep '^3;' /tmp/fio.out | head -n 1)
    if [ $rc -ne 0 ] || [ -z "$line" ]; then
        cat /tmp/fio.out /tmp/fio.err
        echo "bench-fio: job=$rw-qd$qd failed (status $rc)"
        status=1
        continue
    fi
    # terse v3: read kib/iops/runtime 6/8/9, clat p50/p99 24/30, lat mean 40;
    # the write block is the same 41 fields later.
    echo "$line" | awk -F';' -v rw="$rw" -v qd="$qd" '{
        o = (rw ~ /write/) ? 41 : 0
        p50 = $(24 + o); sub(/.*=/, "", p50)
        p99 = $(30 + o); sub(/.*=/, "", p99)
        printf "bench-fio: job=%s-qd%s rw=%s qd=%s ios=%d kib=%s runtime_ms=%s iops=%s " \
               "lat_avg_us=%s clat_p50_us=%s clat_p99_us=%s err=%s\n",
               rw, qd, rw, qd, $(6 + o) / 4, $(6 + o), $(9 + o), $(8 + o), $(40 + o), p50, p99, $5
    }'
done
echo "bench-fio: done"
exit $status
