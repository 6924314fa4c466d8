#!/bin/bash
# Level 2, live migration: the tiny guest doing verified NVMe I/O (and a ring-3 loop
# dirtying memory) hops between nvmevm processes on this host; data read back must equal
# data written across every hop. Also: a refused stream and a killed connection leave the
# source running.
set -uo pipefail
. "$(dirname "$0")/../lib.sh"

if [ ! -f "$TINY" ]; then
    t_fail migrate/build "tiny guest not built: $TINY"
    exit 0
fi
disk=/var/tmp/nvmevm-migrate-$$.img
truncate -s 128M "$disk"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done
    rm -f "$disk"
}
trap cleanup EXIT
port_base=$((20000 + $$ % 20000))

# start_vm NAME LOG [ARGS...]: an nvmevm with control socket $TEST_TMP/NAME.sock.
start_vm() {
    local name=$1 log=$2
    shift 2
    "$NVMEVM" run --kernel "$TINY" --mem 256M --no-stdin --control "$TEST_TMP/$name.sock" \
        "$@" "$disk" >"$log" 2>&1 </dev/null &
    pids+=($!)
    LAST_PID=$!
}

wait_for() { # wait_for FILE PATTERN SECONDS
    for _ in $(seq $(($3 * 10))); do
        grep -q -- "$2" "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

# Hop the guest HOPS times; every process but the last must exit 0 after its migration.
hops() {
    local hops=$1 src=vm0 srclog="$TEST_TMP/migrate-vm0.log"
    start_vm vm0 "$srclog" --append "test=nvme mode=verify qd=8 queues=2 secs=$((hops * 3 + 8))"
    local src_pid=$LAST_PID
    wait_for "$srclog" "nvme run mode" 30 || { t_fail migrate/hops "guest did not start"; show_tail "$srclog"; return; }
    local i
    for i in $(seq 1 "$hops"); do
        local dst=vm$i dstlog="$TEST_TMP/migrate-vm$i.log" port=$((port_base + i))
        start_vm "$dst" "$dstlog" --incoming "tcp:127.0.0.1:$port"
        local dst_pid=$LAST_PID
        wait_for "$dstlog" "waiting for an incoming migration" 20 || break
        sleep 0.5
        if ! timeout 120 "$NVMEVM" migrate --socket "$TEST_TMP/$src.sock" "tcp:127.0.0.1:$port" \
            >"$TEST_TMP/migrate-cmd-$i.log" 2>&1; then
            t_fail migrate/hops "hop $i: $(tail -1 "$TEST_TMP/migrate-cmd-$i.log")"
            show_tail "$dstlog"
            return
        fi
        local rc=0
        wait "$src_pid" || rc=$?
        if [ "$rc" -ne 0 ]; then
            t_fail migrate/hops "hop $i: source exited $rc after migrating"
            return
        fi
        src=$dst
        srclog=$dstlog
        src_pid=$dst_pid
    done
    local rc=0
    wait "$src_pid" || rc=$?
    if [ "$rc" -eq 1 ] && grep -q "tiny: PASS" "$srclog" && grep -q "errors=0" "$srclog"; then
        t_pass "migrate/$hops-hops-verified-io"
    else
        t_fail "migrate/$hops-hops-verified-io" "final guest status $rc"
        show_tail "$srclog"
    fi
    grep -h "migrated to" "$TEST_TMP"/migrate-cmd-*.log | head -3
}
hops 10

# A destination with a different --mem refuses; the source keeps running and finishes.
refused() {
    local log="$TEST_TMP/migrate-refuse-src.log" dlog="$TEST_TMP/migrate-refuse-dst.log"
    local port=$((port_base + 50))
    start_vm rsrc "$log" --append "test=checksum iters=3000000000"
    local src_pid=$LAST_PID
    wait_for "$log" "hello from ring 0" 30
    "$NVMEVM" run --kernel "$TINY" --mem 128M --no-stdin --incoming "tcp:127.0.0.1:$port" \
        "$disk" >"$dlog" 2>&1 </dev/null &
    local dst_pid=$!
    pids+=("$dst_pid")
    wait_for "$dlog" "waiting for an incoming migration" 20
    local out rc=0
    out=$("$NVMEVM" migrate --socket "$TEST_TMP/rsrc.sock" "tcp:127.0.0.1:$port" 2>&1) || rc=$?
    wait "$dst_pid" 2>/dev/null
    if [ "$rc" -ne 0 ] && grep -q "guest RAM is" <<<"$out" &&
        "$NVMEVM" ctl --socket "$TEST_TMP/rsrc.sock" status | grep -q running; then
        t_pass migrate/refused-stream-source-continues
    else
        t_fail migrate/refused-stream-source-continues "rc=$rc: $out"
    fi
    kill "$src_pid" 2>/dev/null
    wait "$src_pid" 2>/dev/null
}
refused

# The connection dies mid-migration (the destination is killed): the source continues.
killed() {
    local log="$TEST_TMP/migrate-kill-src.log" dlog="$TEST_TMP/migrate-kill-dst.log"
    local port=$((port_base + 60))
    start_vm ksrc "$log" --append "test=nvme mode=verify qd=8 secs=20"
    local src_pid=$LAST_PID
    wait_for "$log" "nvme run mode" 30
    start_vm kdst "$dlog" --incoming "tcp:127.0.0.1:$port"
    local dst_pid=$LAST_PID
    wait_for "$dlog" "waiting for an incoming migration" 20
    "$NVMEVM" migrate --socket "$TEST_TMP/ksrc.sock" --max-bandwidth 20M \
        "tcp:127.0.0.1:$port" >/dev/null 2>&1 &
    local mig=$!
    sleep 1
    kill -9 "$dst_pid"
    wait "$mig" 2>/dev/null
    local rc=0
    wait "$src_pid" || rc=$?
    if [ "$rc" -eq 1 ] && grep -q "tiny: PASS" "$log"; then
        t_pass migrate/connection-killed-source-continues
    else
        t_fail migrate/connection-killed-source-continues "source status $rc"
        show_tail "$log"
    fi
}
killed
