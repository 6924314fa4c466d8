#!/bin/bash
# Level 2: live I/O statistics. The tiny guest does a known amount of NVMe I/O, prints
# what it did, and holds (hold=1); the host's `nvmevm ctl stats --json` must count exactly
# those commands and bytes, per namespace and per queue, with nothing left in flight.
# Also: rates cover the time since the connection's previous request (`nvmevm top`, plain
# lines when stdout is not a terminal), the table of `nvmevm ctl stats`, --stats=off,
# and a VM without disks answering with an error.
set -uo pipefail
. "$(dirname "$0")/../lib.sh"

if [ ! -f "$TINY" ]; then
    t_fail stats/build "tiny guest not built: $TINY"
    exit 0
fi
disk=/var/tmp/nvmevm-stats-$$.img
truncate -s 64M "$disk"
pid=
trap 'rm -f "$disk"; [ -n "$pid" ] && kill "$pid" 2>/dev/null' EXIT

# start NAME APPEND [OPTION...]: boots the guest on $disk with a control socket and waits
# until it holds after its I/O. Sets sock, out and pid; false if it never got there.
start() {
    local name=$1 append=$2
    shift 2
    sock="$TEST_TMP/stats-$name.sock" out="$TEST_TMP/stats-$name.log"
    "$NVMEVM" run --kernel "$TINY" --mem 128M --no-stdin --control "$sock" "$@" \
        --append "test=nvme $append hold=1" "$disk" >"$out" 2>&1 </dev/null &
    pid=$!
    if wait_for "$out" "tiny: nvme holding" 120; then
        return 0
    fi
    show_tail "$out"
    return 1
}

stop() {
    "$NVMEVM" ctl --socket "$sock" quit >/dev/null 2>&1
    wait "$pid" 2>/dev/null
    pid=
}

# check NAME PYTHON-ASSERTIONS: runs them with r = the stats reply, g = the guest's line
# "tiny: nvme mode=..." as a dict, q = {qid: ios} from its per-queue lines.
check() {
    local name=$1 code=$2 rep
    rep=$("$NVMEVM" ctl --socket "$sock" stats --json)
    if python3 - "$rep" "$out" <<EOF; then t_pass "stats/$name"; else t_fail "stats/$name" "reply: ${rep:0:300}"; fi
import json, re, sys
r = json.loads(sys.argv[1])
log = open(sys.argv[2]).read()
m = re.search(r"tiny: nvme mode=(\S+) .*", log)
g = dict(kv.split("=", 1) for kv in m.group(0).split()[2:]) if m else {}
q = {int(a): int(b) for a, b in re.findall(r"tiny: nvme queue qid=(\d+) cpu=\d+ ios=(\d+)", log)}
ns = {n["nsid"]: n for n in r["namespaces"]}
qs = {x["qid"]: x for x in r["queues"]}
$code
EOF
}

# Writes on two queues, 8 KiB each, several in flight per queue.
if start write "mode=seqwrite queues=2 qd=4 bs=8192 ios=3000"; then
    check write-counts-exact '
assert r["ok"] and r["enabled"], r
assert int(g["ios"]) == 3000 and int(g["errors"]) == 0, g
n = ns[1]
assert n["writes"] == 3000 and n["reads"] == 0 and n["others"] == 0 and n["errors"] == 0, n
assert n["bytes_written"] == 3000 * 8192 and n["bytes_read"] == 0, n
assert n["depth"] == 0 and 1 <= n["max_depth"] <= 8, n
assert set(qs) == {1, 2} and q == {1: 1500, 2: 1500}, (qs.keys(), q)
for qid in (1, 2):
    x = qs[qid]
    assert x["writes"] == q[qid] and x["bytes_written"] == q[qid] * 8192, x
    assert x["depth"] == 0 and 1 <= x["max_depth"] <= 4 and x["live"], x
lat = n["latency_us"]
assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["p99_9"] <= lat["max"], lat
assert 0 < lat["avg"] <= lat["max"], lat
# The first reply on a connection covers the whole run: its mean depth is the summed latency over the time (Little law).
iv = n["interval"]
assert iv["commands"] == 3000 and iv["write_iops"] > 0, iv
want = lat["avg"] * 3000 / 1e6 / r["interval_s"]
assert 0 < iv["avg_depth"] <= 8 and abs(iv["avg_depth"] - want) <= 0.02 * want + 0.002, (iv, want)
'
    # Two frames on one connection: the first covers the run, the second an idle guest.
    "$NVMEVM" top --socket "$sock" --count 2 --interval 0.3 >"$TEST_TMP/stats-top.txt" 2>&1
    t_check stats/top-plain-frames "top output: $(head -c 600 "$TEST_TMP/stats-top.txt")" \
        python3 - "$TEST_TMP/stats-top.txt" <<'EOF'
import sys
frames = open(sys.argv[1]).read().strip().split("\n\n")
assert len(frames) == 2 and "\033" not in frames[0], frames
rows = [{l.split()[0]: l.split() for l in f.splitlines()[2:]} for f in frames]
assert frames[0].splitlines()[1].split()[:3] == ["dev", "r/s", "w/s"], frames[0]
assert float(rows[0]["ns1"][2]) > 0 and float(rows[0]["q2"][2]) > 0, rows[0]
assert float(rows[1]["ns1"][2]) == 0 and float(rows[1]["ns1"][1]) == 0, rows[1]
assert frames[0].splitlines()[1].split()[-2:] == ["aqu", "depth"], frames[0]
assert float(rows[0]["ns1"][-2]) > 0 and float(rows[1]["ns1"][-2]) == 0, rows
assert "interval 0." in frames[1].splitlines()[0], frames[1]
EOF
    "$NVMEVM" ctl --socket "$sock" stats >"$TEST_TMP/stats-table.txt" 2>&1
    t_check stats/ctl-table "table: $(head -c 400 "$TEST_TMP/stats-table.txt")" \
        python3 - "$TEST_TMP/stats-table.txt" <<'EOF'
import sys
lines = open(sys.argv[1]).read().splitlines()
assert lines[0].startswith("uptime ") and lines[1].split()[:3] == ["dev", "reads", "writes"], lines
row = {l.split()[0]: l.split() for l in lines[2:]}
assert row["ns1"][2] == "3000" and row["q1"][2] == "1500" and row["q2"][2] == "1500", row
EOF
    stop
else
    t_fail stats/write-counts-exact "the guest did not finish its writes"
fi

# Reads at QD 8 on one queue with shadow doorbells and MSI-X.
if start read "mode=randread qd=8 bs=4096 ios=2000 doorbell=shadow irq=msix"; then
    check read-counts-exact '
assert int(g["ios"]) == 2000 and int(g["errors"]) == 0, g
n = ns[1]
assert n["reads"] == 2000 and n["writes"] == 0 and n["bytes_read"] == 2000 * 4096, n
assert n["depth"] == 0 and 1 <= n["max_depth"] <= 8, n
assert list(qs) == [1] and qs[1]["reads"] == 2000, qs
'
    stop
else
    t_fail stats/read-counts-exact "the guest did not finish its reads"
fi

if start off "mode=seqwrite ios=500" --stats=off; then
    check off-counts-nothing '
assert r["ok"] and r["enabled"] is False, r
assert int(g["ios"]) == 500, g
assert ns[1]["writes"] == 0 and all(x["writes"] == 0 for x in qs.values()), r
'
    stop
else
    t_fail stats/off-counts-nothing "the guest did not finish its writes"
fi

sock="$TEST_TMP/stats-nodisk.sock" out="$TEST_TMP/stats-nodisk.log"
"$NVMEVM" run --kernel "$TINY" --mem 64M --no-stdin --control "$sock" \
    --append "test=checksum iters=100000000000 progress=20000000" >"$out" 2>&1 </dev/null &
pid=$!
wait_for "$out" "checksum progress" 60
rc=0
msg=$("$NVMEVM" ctl --socket "$sock" stats 2>&1) || rc=$?
t_check stats/no-disks-refused "status $rc: $msg" \
    bash -c '[ "$1" -eq 1 ] && [ "$(wc -l <<<"$2")" -eq 1 ] && grep -q "^nvmevm: .*no NVMe controller" <<<"$2"' \
    _ "$rc" "$msg"
stop
