#!/bin/bash
# Level 3, `nvmevm fio`: the user's own job in the default guest, as a user runs it. Runs
# where a Linux kernel can run (directly or inside the sandbox, see run.sh).
set -uo pipefail
. "$(dirname "$0")/../lib.sh"

# Each run takes ~20 s in the sandbox; a stuck one should not hold the suite for long.
TIMEOUT=${LINUX_BOOT_TIMEOUT:-300}
a=$TEST_TMP/fio-a.img
b=$TEST_TMP/fio-b.img
rm -f "$a" "$b"
truncate -s 256M "$a"
truncate -s 64M "$b"

# One job on both namespaces (no filename=: nvmevm fills in both), crc32c-verified, with
# JSON output: stdout must be exactly fio's JSON, and fio must have used both disks.
cat >"$TEST_TMP/two.fio" <<'JOB'
[global]
ioengine=libaio
direct=1
bs=4k
iodepth=8
size=16M
verify=crc32c
[write-and-verify]
rw=randwrite
JOB
out=$TEST_TMP/fio-two.json
err=$TEST_TMP/fio-two.err
rc=0
timeout "$TIMEOUT" "$NVMEVM" fio --output-format=json "$TEST_TMP/two.fio" "$a" "$b" \
    >"$out" 2>"$err" || rc=$?
check=$(python3 - "$out" <<'PY' 2>&1
import json, sys
d = json.load(open(sys.argv[1]))
job = d["jobs"][0]
disks = sorted(u["name"] for u in d.get("disk_util", []))
assert job["error"] == 0, f"fio error {job['error']}"
assert job["write"]["io_kbytes"] >= 16 * 1024, f"wrote {job['write']['io_kbytes']} KiB"
assert job["read"]["io_kbytes"] >= 16 * 1024, f"verified {job['read']['io_kbytes']} KiB"
assert disks == ["nvme0n1", "nvme0n2"], f"disks used: {disks}"
print("ok")
PY
)
if [ "$rc" -eq 0 ] && [ "$check" = ok ]; then
    t_pass fio/two-namespaces-json
else
    t_fail fio/two-namespaces-json "status $rc; $check"
    head -c 600 "$out"; show_tail "$err" 20
fi

# What the guest wrote is on the host's files: a job that names its files and a pattern,
# and a --guest-file it includes from /user.
printf 'buffer_pattern=0x6e766d65\nbs=64k\nrw=write\n' >"$TEST_TMP/pattern.fio"
cat >"$TEST_TMP/write.fio" <<'JOB'
[global]
include pattern.fio
[first]
filename=/dev/nvme0n1
size=1M
[second]
filename=/dev/nvme0n2
size=2M
offset=4M
JOB
rc=0
timeout "$TIMEOUT" "$NVMEVM" fio --guest-file "$TEST_TMP/pattern.fio" "$TEST_TMP/write.fio" \
    "$a" "$b" >"$TEST_TMP/fio-write.out" 2>"$TEST_TMP/fio-write.err" || rc=$?
python3 -c 'import sys; sys.stdout.buffer.write(b"nvme" * (int(sys.argv[1]) // 4))' $((1 << 20)) \
    >"$TEST_TMP/expect-1m"
python3 -c 'import sys; sys.stdout.buffer.write(b"nvme" * (int(sys.argv[1]) // 4))' $((2 << 20)) \
    >"$TEST_TMP/expect-2m"
# buffer_pattern is written in the byte order given (0x6e766d65 = "nvme").
if [ "$rc" -eq 0 ] && cmp -s -n $((1 << 20)) "$a" "$TEST_TMP/expect-1m" &&
    cmp -s -i $((4 << 20)):0 -n $((2 << 20)) "$b" "$TEST_TMP/expect-2m" &&
    grep -q "first: (groupid=0" "$TEST_TMP/fio-write.out" &&
    ! grep -q "nvmevm-init" "$TEST_TMP/fio-write.out"; then
    t_pass fio/data-on-host-files
else
    t_fail fio/data-on-host-files "status $rc; $(cmp -n $((1 << 20)) "$a" "$TEST_TMP/expect-1m" 2>&1)"
    show_tail "$TEST_TMP/fio-write.out" 10; show_tail "$TEST_TMP/fio-write.err" 20
fi

# fio's own failure is the exit status, and the guest's console is shown on stderr.
printf '[bad-engine]\nioengine=no-such-engine\nrw=read\nsize=1M\n' >"$TEST_TMP/bad.fio"
rc=0
timeout "$TIMEOUT" "$NVMEVM" fio "$TEST_TMP/bad.fio" "$a" >"$TEST_TMP/fio-bad.out" \
    2>"$TEST_TMP/fio-bad.err" || rc=$?
if [ "$rc" -eq 1 ] && grep -q "no-such-engine" "$TEST_TMP/fio-bad.out" &&
    grep -q "the guest console's last" "$TEST_TMP/fio-bad.err"; then
    t_pass fio/status-passed-through
else
    t_fail fio/status-passed-through "status $rc (want fio's 1)"
    show_tail "$TEST_TMP/fio-bad.out" 10; show_tail "$TEST_TMP/fio-bad.err" 10
fi
rm -f "$a" "$b"
