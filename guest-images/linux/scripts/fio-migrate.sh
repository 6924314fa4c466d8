#!/bin/sh
# Runs while the VM migrates: fio random writes with crc32c verification over SIZE
# (nvmevm.arg, default 64M), with the guest clock and the SMART write counter printed
# before and after, so the host can check time stayed sane and counters kept counting.
. /scripts/lib-nvme.sh
wait_nvme /dev/nvme0n1 || exit 3
writes() { nvme smart-log /dev/nvme0 | awk '/host_write_commands/ { gsub(",", ""); print $3 }'; }
echo "clock-start: $(cut -d' ' -f1 /proc/uptime) $(date +%s)"
echo "smart-writes-start: $(writes)"
echo "fio-migrate: running"
fio --name=mig --filename=/dev/nvme0n1 --size="${1:-64M}" --rw=randwrite --bs=4k \
    --ioengine=libaio --iodepth=16 --direct=1 --verify=crc32c --verify_fatal=1 \
    --do_verify=1 >/tmp/fio.out 2>&1
status=$?
echo "smart-writes-end: $(writes)"
echo "clock-end: $(cut -d' ' -f1 /proc/uptime) $(date +%s)"
grep -E '^ *(read|write):|err=' /tmp/fio.out | head -4
[ $status -eq 0 ] && echo "fio: ok" || { tail -15 /tmp/fio.out; echo "fio: failed"; }
exit $status
