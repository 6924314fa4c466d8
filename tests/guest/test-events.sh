#!/bin/bash
# Level 2, the control socket's events and a destination that waits: `nvmevm ctl --watch`
# on both sides of a live migration sees the state changes (the destination's refusal of
# a garbage connection first, which leaves it waiting and answering status), the guest's
# exit at the destination with its status, a guest reset, and disk errors (NVMe controller fatal status:
# tests/unit/test_nvme_regs.c, the tiny driver has no way into CSTS.CFS);
# `run --incoming` ends after --incoming-timeout and on quit.
set -uo pipefail
. "$(dirname "$0")/../lib.sh"

if [ ! -f "$TINY" ]; then
    t_fail events/build "tiny guest not built: $TINY"
    exit 0
fi
guest_scratch events 16M
port=$((30000 + $$ % 20000))

# reap PID SECONDS: waits (bounded) for PID to end; REAP_RC is its exit status.
reap() {
    REAP_RC=0
    timeout "$2" tail --pid="$1" -f /dev/null
    wait "$1" || REAP_RC=$?
}

# events FILE: the event names and states in a watch log, one per line ("MIGRATION:active").
events() {
    python3 -c 'import json, sys
for l in open(sys.argv[1]):
    e = json.loads(l)
    assert set(e) == {"event", "data", "timestamp"}, e
    assert e["timestamp"]["seconds"] > 1e9 and 0 <= e["timestamp"]["microseconds"] < 1e6, e
    d = e["data"]
    print(e["event"] + (":" + d["side"] + ":" + d["state"] if "state" in d else "") +
          (":" + str(d["status"]) if e["event"] == "SHUTDOWN" else ""))' "$1" 2>&1
}

# 1. A live migration watched from both sides; the destination first refuses garbage.
slog="$TEST_TMP/ev-src.log" dlog="$TEST_TMP/ev-dst.log"
# The guest dirties memory for a fixed time, then exits with PASS (status 1) wherever it is.
secs=15 settle=1 reset_ms=2000
[ -n "${NVMEVM_SANDBOX:-}" ] && secs=90 settle=5 reset_ms=10000
"$NVMEVM" run --kernel "$TINY" --mem 64M --no-stdin --control "$TEST_TMP/ev-src.sock" \
    --append "test=dirty mb=2 rate_mb_s=1 secs=$secs progress_s=1" "$disk" >"$slog" 2>&1 </dev/null &
src=$!
pids+=("$src")
# No --kernel: a destination needs neither a kernel nor the default guest image.
NVMEVM_GUEST_DIR=/nonexistent "$NVMEVM" run --mem 64M --no-stdin --control "$TEST_TMP/ev-dst.sock" \
    --incoming "tcp:127.0.0.1:$port" "$disk" >"$dlog" 2>&1 </dev/null &
dst=$!
pids+=("$dst")
wait_for "$slog" "tiny: dirty start" 60 && wait_for "$dlog" "waiting for an incoming" 60 ||
    { t_fail events/start "the VMs did not start"; show_tail "$slog"; show_tail "$dlog"; exit 0; }
"$NVMEVM" ctl --socket "$TEST_TMP/ev-src.sock" --watch >"$TEST_TMP/ev-wsrc.out" 2>&1 &
wsrc=$!
"$NVMEVM" ctl --socket "$TEST_TMP/ev-dst.sock" --watch >"$TEST_TMP/ev-wdst.out" 2>&1 &
wdst=$!
"$NVMEVM" ctl --socket "$TEST_TMP/ev-dst.sock" --watch --human >"$TEST_TMP/ev-wdst-human.out" 2>&1 &
wdsth=$!
sleep "$settle" # the watchers subscribe
# A migration cancelled half-way (throttled to 1 MB/s) into a disposable destination, which
# had begun loading and so ends; `migrate --cancel` reports success only when it was one.
xlog="$TEST_TMP/ev-x.log" xport=$((port + 100))
"$NVMEVM" run --mem 64M --no-stdin --control "$TEST_TMP/ev-x.sock" \
    --incoming "tcp:127.0.0.1:$xport" "$disk" >"$xlog" 2>&1 </dev/null &
x=$!
pids+=("$x")
wait_for "$xlog" "waiting for an incoming" 30
timeout 60 "$NVMEVM" migrate --socket "$TEST_TMP/ev-src.sock" --max-bandwidth 1M \
    "tcp:127.0.0.1:$xport" >"$TEST_TMP/ev-x-migrate.log" 2>&1 &
xm=$!
for _ in $(seq 300); do
    "$NVMEVM" ctl --socket "$TEST_TMP/ev-src.sock" migrate-status 2>/dev/null |
        grep -q '"migration":"active"' && break
    sleep 0.1
done
rc=0
out=$(timeout 20 "$NVMEVM" migrate --cancel --socket "$TEST_TMP/ev-src.sock" 2>&1) || rc=$?
xrc=0
wait "$xm" || xrc=$?
ok=0
[ "$rc" -eq 0 ] && [ "$xrc" -eq 1 ] && grep -q "migration cancelled" "$TEST_TMP/ev-x-migrate.log" && ok=1
t_check events/cancel "cancel status $rc: $out; migrate status $xrc: $(tail -1 "$TEST_TMP/ev-x-migrate.log")" [ "$ok" -eq 1 ]
rc=0
out=$(timeout 20 "$NVMEVM" migrate --cancel --socket "$TEST_TMP/ev-src.sock" 2>&1) || rc=$?
ok=0
[ "$rc" -eq 1 ] && [ "$out" = "nvmevm: migrate --cancel: no migration is running" ] && ok=1
t_check events/cancel-nothing-running "status $rc: $out" [ "$ok" -eq 1 ]
reap "$x" 30
rc=$REAP_RC
ok=0
[ "$rc" -eq 1 ] && grep -q "^nvmevm: incoming migration refused: " "$xlog" && ok=1
t_check events/loaded-then-cut-destination-ends "status $rc: $(tail -1 "$xlog")" [ "$ok" -eq 1 ]
(exec 3<>"/dev/tcp/127.0.0.1/$port" && head -c 4096 /dev/urandom >&3 && sleep 0.3) 2>/dev/null
wait_for "$dlog" "refused a connection from .*not an nvmevm migration stream; still waiting" 20
st=$(timeout 20 "$NVMEVM" ctl --socket "$TEST_TMP/ev-dst.sock" status 2>&1)
t_check events/destination-waits-after-garbage "status after garbage: $st" \
    grep -q '"state":"incoming","incoming":"waiting"' <<<"$st"
rc=0
out=$(timeout 20 "$NVMEVM" ctl --socket "$TEST_TMP/ev-dst.sock" pause 2>&1) || rc=$?
t_check events/destination-refuses-pause "status $rc: $out" \
    grep -q '"class":"InvalidState"' <<<"$out"
rc=0
out=$(timeout 120 "$NVMEVM" migrate --socket "$TEST_TMP/ev-src.sock" "tcp:127.0.0.1:$port" 2>&1) || rc=$?
t_check events/migration-after-garbage "migrate status $rc: $out" [ "$rc" -eq 0 ]
reap "$src" 30
src_rc=$REAP_RC
reap "$wsrc" 30
wrc=$REAP_RC
got=$(events "$TEST_TMP/ev-wsrc.out" | tr '\n' ' ')
ok=0
[ "$src_rc" -eq 0 ] && [ "$wrc" -eq 0 ] &&
[ "$got" = "MIGRATION:source:active MIGRATION:source:cancelled MIGRATION:source:active MIGRATION:source:device MIGRATION:source:completed SHUTDOWN:0 " ] && ok=1
t_check events/source-states "source status $src_rc, watch status $wrc, events: $got" [ "$ok" -eq 1 ]
# The guest finishes its checksum at the destination and exits with PASS (status 1).
reap "$dst" $((secs + 60))
dst_rc=$REAP_RC
reap "$wdst" 30
wrc=$REAP_RC
got=$(events "$TEST_TMP/ev-wdst.out" | tr '\n' ' ')
want="MIGRATION:destination:receiving MIGRATION:destination:refused MIGRATION:destination:receiving MIGRATION:destination:completed SHUTDOWN:1 "
ok=0
[ "$dst_rc" -eq 1 ] && [ "$wrc" -eq 0 ] && [ "$got" = "$want" ] && ok=1
t_check events/destination-states-and-guest-exit \
    "destination status $dst_rc, watch status $wrc, events: $got" [ "$ok" -eq 1 ]
t_check events/refusal-reason "$(grep refused "$TEST_TMP/ev-wdst.out")" \
    grep -q '"state":"refused",.*"error":"not an nvmevm migration stream"' "$TEST_TMP/ev-wdst.out"
wait "$wdsth" 2>/dev/null
t_check events/human "$(head -c 400 "$TEST_TMP/ev-wdst-human.out")" \
    grep -Eq '^[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3} SHUTDOWN status=1$' "$TEST_TMP/ev-wdst-human.out"

# 2. --incoming-timeout: nobody comes, one line, status 1; quit while waiting: status 0.
port=$((port + 1))
run_capture "$TEST_TMP/ev-timeout.log" 60 "$NVMEVM" run --mem 64M --no-stdin \
    --control "$TEST_TMP/ev-t.sock" --incoming "tcp:127.0.0.1:$port" --incoming-timeout 1 "$disk"
ok=0
[ "$RC" -eq 1 ] && ok=1
grep -q "^nvmevm: incoming migration refused: no migration arrived within 1 s" "$TEST_TMP/ev-timeout.log" || ok=0
t_check events/incoming-timeout "status $RC: $(cat "$TEST_TMP/ev-timeout.log")" [ "$ok" -eq 1 ]
port=$((port + 1))
"$NVMEVM" run --mem 64M --no-stdin --control "$TEST_TMP/ev-q.sock" \
    --incoming "tcp:127.0.0.1:$port" "$disk" >"$TEST_TMP/ev-quit.log" 2>&1 </dev/null &
q=$!
pids+=("$q")
wait_for "$TEST_TMP/ev-quit.log" "waiting for an incoming" 30
timeout 20 "$NVMEVM" ctl --socket "$TEST_TMP/ev-q.sock" quit >/dev/null 2>&1
reap "$q" 30
rc=$REAP_RC
t_check events/quit-while-incoming "status $rc: $(tail -1 "$TEST_TMP/ev-quit.log")" [ "$rc" -eq 0 ]

# watched NAME LOG KERNEL-ARGS -- RUN-ARGS...: runs the tiny guest with a watcher that
# connects as soon as the control socket exists (before the guest gets far); the events go
# to $TEST_TMP/ev-NAME.watch.
watched() {
    local name=$1 log=$2 append=$3
    shift 4
    local sock="$TEST_TMP/ev-$name.sock"
    "$NVMEVM" run --kernel "$TINY" --mem 128M --no-stdin --control "$sock" --append "$append" \
        "$@" >"$log" 2>&1 </dev/null &
    local vm=$!
    pids+=("$vm")
    for _ in $(seq 300); do [ -S "$sock" ] && break; sleep 0.01; done
    timeout 120 "$NVMEVM" ctl --socket "$sock" --watch >"$TEST_TMP/ev-$name.watch" 2>&1
    WATCH_RC=$?
    reap "$vm" 30
    VM_RC=$REAP_RC
}

# 3. Disk errors: a disk file on a 1 MiB tmpfs fills up under the guest's writes; each
#    failed write is a DISK_ERROR event (namespace, NVMe status, errno 28, ENOSPC).
mnt="$TEST_TMP/ev-mnt"
mkdir -p "$mnt"
if [ "$(id -u)" -ne 0 ] || ! mount -t tmpfs -o size=1m tmpfs "$mnt" 2>/dev/null; then
    t_skip events/disk-error "needs root to mount a small tmpfs"
else
    truncate -s 16M "$mnt/full.img"
    watched diskerr "$TEST_TMP/ev-diskerr.log" "test=nvme mode=verify qd=8 queues=1 ios=4000" -- \
        --cache writeback "$mnt/full.img"
    umount "$mnt"
    t_check events/disk-error "watch status $WATCH_RC, guest $VM_RC: $(grep -m1 DISK_ERROR "$TEST_TMP/ev-diskerr.watch")" \
        grep -q '"event":"DISK_ERROR","data":{"nsid":1,"op":"write","lba":[0-9]*,"status":[0-9]*,"errno":28}' \
        "$TEST_TMP/ev-diskerr.watch"
fi

# 4. A guest reset: RESET from the i8042, then SHUTDOWN with status 0.
watched reset "$TEST_TMP/ev-reset.log" "test=reset iters=$reset_ms" -- "$disk"
got=$(events "$TEST_TMP/ev-reset.watch" | tr '\n' ' ')
ok=0
[ "$VM_RC" -eq 0 ] && [ "$WATCH_RC" -eq 0 ] && [ "$got" = "RESET SHUTDOWN:0 " ] && ok=1
grep -q '"event":"RESET","data":{"source":"i8042"}' "$TEST_TMP/ev-reset.watch" || ok=0
t_check events/guest-reset "guest $VM_RC, watch $WATCH_RC, events: $got" [ "$ok" -eq 1 ]
