#!/bin/bash
# Level 3, `nvmevm fio` as a user on this host runs it: straight on /dev/kvm where that runs
# Linux, else nvmevm fio starts the QEMU TCG sandbox itself (and says so in one line). Runs
# on the host, never inside a sandbox (tests/guests.sh calls it last).
set -uo pipefail
. "$(dirname "$0")/../lib.sh"

disk=$TEST_TMP/host-fio.img
rodisk=$TEST_TMP/host-fio-ro.img
rm -f "$disk" "$rodisk"
truncate -s 64M "$disk" "$rodisk"
chmod 444 "$rodisk" # given with ,ro: it need not be writable (in the sandbox too)
cat >"$TEST_TMP/host.fio" <<'JOB'
[host-write]
filename=/dev/nvme0n1
ioengine=libaio
direct=1
rw=write
bs=64k
size=2M
buffer_pattern=0x686f7374

[host-read-ro]
ioengine=libaio
direct=1
filename=/dev/nvme0n2
rw=read
bs=64k
size=1M
JOB
out=$TEST_TMP/host-fio.json
err=$TEST_TMP/host-fio.err
rc=0
timeout 900 "$NVMEVM" fio --output-format=json "$TEST_TMP/host.fio" "$disk" "$rodisk,ro" >"$out" 2>"$err" ||
    rc=$?
probe_rc=0
"$NVMEVM" probe --quiet || probe_rc=$?
said=0
if [ "$probe_rc" -eq 0 ]; then
    ! grep -q "inside the QEMU TCG sandbox" "$err" && said=1
else
    [ "$(grep -c "nvmevm fio: running the guest inside the QEMU TCG sandbox" "$err")" -eq 1 ] && said=1
fi
python3 -c 'import sys; sys.stdout.buffer.write(b"host" * (2 << 18))' >"$TEST_TMP/host-expect"
if [ "$rc" -eq 0 ] && [ "$said" -eq 1 ] &&
    python3 -c 'import json,sys; j=json.load(open(sys.argv[1]))["jobs"]
sys.exit(j[0]["error"] != 0 or j[0]["write"]["io_kbytes"] != 2048 or
         j[1]["error"] != 0 or j[1]["read"]["io_kbytes"] != 1024)' "$out" &&
    cmp -s -n $((2 << 20)) "$disk" "$TEST_TMP/host-expect"; then
    t_pass fio/from-this-host
else
    t_fail fio/from-this-host "status $rc, probe $probe_rc, where-said $said; $(head -c 300 "$out")"
    show_tail "$err" 20
fi
rm -f "$disk" "$rodisk"
