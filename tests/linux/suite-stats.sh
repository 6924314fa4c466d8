#!/bin/bash
# Level 3, live I/O statistics: fio in the Debian guest (random 4 KiB reads and writes,
# QD 16) against nvmevm's counters read from the host on the control socket, while fio
# runs and after it. fio's own issued counts must match the device's within 3% (the
# kernel adds a few reads of its own: the partition scan), bytes must be 4 KiB per
# command, the queues must add up to the namespace, and nothing may stay in flight.
# Runs where a Linux kernel can run (directly or inside the sandbox, see tests/guests.sh).
set -uo pipefail
. "$(dirname "$0")/../lib.sh"

disk="$TEST_TMP/stats-disk.img"
sock="$TEST_TMP/stats-linux.sock" out="$TEST_TMP/stats-linux.log"
truncate -s 256M "$disk"
pid=
trap 'rm -f "$disk"; [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null' EXIT
"$NVMEVM" run --mem 512M --no-stdin --control "$sock" \
    --append "quiet nvmevm.run=fio-stats nvmevm.arg=${STATS_FIO_SIZE:-32M}" "$disk" \
    >"$out" 2>&1 </dev/null &
pid=$!
if ! wait_for "$out" "fio-stats: running" 600; then
    t_fail stats-linux/boot "the guest never started fio"
    show_tail "$out" 20
    exit 0
fi
sleep 1
during=$("$NVMEVM" ctl --socket "$sock" stats --json)
if ! wait_for "$out" "fio-stats: holding" 900; then
    t_fail stats-linux/fio "fio did not finish"
    show_tail "$out" 20
    exit 0
fi
after=$("$NVMEVM" ctl --socket "$sock" stats --json)
"$NVMEVM" ctl --socket "$sock" stats
grep -E "fio-stats: issued|^ *(read|write):" "$out"

t_check stats-linux/counting-while-fio-runs "reply: ${during:0:300}" \
    python3 -c 'import json, sys
r = json.loads(sys.argv[1]); n = r["namespaces"][0]
assert r["ok"] and n["nsid"] == 1 and n["reads"] + n["writes"] > 0, n' "$during"

t_check stats-linux/matches-fio-within-3pct "reply: ${after:0:400}; $(grep "fio-stats: issued" "$out")" \
    python3 - "$after" "$out" <<'EOF'
import json, re, sys
r = json.loads(sys.argv[1])
m = re.search(r"fio-stats: issued reads=(\d+) writes=(\d+)", open(sys.argv[2]).read())
fr, fw = int(m.group(1)), int(m.group(2))
n = [x for x in r["namespaces"] if x["nsid"] == 1][0]
print(f"stats-linux: fio issued reads={fr} writes={fw}; nvmevm counted reads={n['reads']} "
      f"writes={n['writes']} others={n['others']} errors={n['errors']}")
for fio, dev in ((fr, n["reads"]), (fw, n["writes"])):
    assert fio > 1000 and dev >= fio and dev <= fio * 1.03, (fio, dev)
assert n["errors"] == 0 and n["depth"] == 0 and n["max_depth"] >= 2, n
# fio's writes are all 4 KiB; the kernel's own reads may be larger.
assert n["bytes_written"] == 4096 * n["writes"], n
assert 4096 * fr <= n["bytes_read"] <= 4096 * fr * 1.05, n
qs = r["queues"]
for k in ("reads", "writes", "bytes_read", "bytes_written"):
    assert sum(q[k] for q in qs) == n[k], (k, qs)
EOF

"$NVMEVM" ctl --socket "$sock" quit >/dev/null
rc=0
wait "$pid" || rc=$?
pid=
t_check stats-linux/exit "status $rc" [ "$rc" -eq 0 ]
