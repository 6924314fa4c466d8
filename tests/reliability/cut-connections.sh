#!/bin/bash
# Reliability: N migrations of the tiny guest (dirtying 2 MiB, an NVMe disk attached), each
# from a fresh source into a fresh destination through proxy.py, which cuts the connection
# at a random point: anywhere in the stream, in its last 8 KiB (the switchover: last pages,
# device state), in its last 40 bytes (end section, the HANDOVER line), or on the way back
# (the destination's OK, LOADED or RUNNING withheld). Afterwards exactly one of source and
# destination must run the guest (alive, status running, its guest still printing) and
# hold the disk's lock; the other must have exited.
# usage: tests/reliability/cut-connections.sh [N=50]   (REL_SEED=S fixes the seed)
set -uo pipefail
. "$(dirname "$0")/lib.sh"
N=${1:-50}
[[ $N =~ ^[0-9]+$ ]] && [ "$N" -gt 0 ] || { echo "usage: $0 [N]" >&2; exit 2; }
rel_enter_sandbox "$0" "$@"
[ -f "$TINY" ] || { echo "cut-connections: tiny guest not built: $TINY" >&2; exit 2; }

SEED=${REL_SEED:-$((RANDOM * 32768 + RANDOM))}
RANDOM=$SEED
rel_workdir cut
pport=$((45000 + $$ % 1000))
dport_base=$((47000 + $$ % 1000 * 10))
VM=("$NVMEVM" run --kernel "$TINY" --mem 64M --no-stdin)

alive() { kill -0 "$1" 2>/dev/null && [ "$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null)" != Z ]; }

# progressing PID LOG SOCK: PID says it is running and its guest prints a new progress line.
progressing() {
    local size t
    size=$(stat -c %s "$2")
    "$NVMEVM" ctl --socket "$3" status 2>/dev/null | grep -q '"running"' || return 1
    for ((t = 0; t < 600; t++)); do
        grep -q "tiny: dirty pass" <(tail -c +$((size + 1)) "$2") && return 0
        alive "$1" || return 1
        sleep 0.1
    done
    return 1
}

# one_case I WORDS...: sets RUNNER (source|destination|none|both), LOCKS (ok|...), RESULT.
one_case() {
    local i=$1
    shift
    local port=$((dport_base + i % 5000)) slog=$work/src.log dlog=$work/dst.log
    local mlog=$work/mig.log
    "${VM[@]}" --control "$work/src.sock" \
        --append "test=dirty mb=2 rate_mb_s=1 secs=10000000 progress_s=1" "$disk" \
        >"$slog" 2>&1 </dev/null &
    src_pid=$!
    wait_for "$slog" "tiny: dirty start" 60 ||
        { echo "cut-connections: the source guest did not start"; show_tail "$slog"; exit 1; }
    "${VM[@]}" --control "$work/dst.sock" --incoming "tcp:127.0.0.1:$port" "$disk" \
        >"$dlog" 2>&1 </dev/null &
    dst_pid=$!
    wait_for "$dlog" "waiting for an incoming" 60 ||
        { echo "cut-connections: the destination did not listen"; show_tail "$dlog"; exit 1; }
    proxy_case "$@" "$port"
    timeout 300 "$NVMEVM" migrate --socket "$work/src.sock" "tcp:127.0.0.1:$pport" \
        >"$mlog" 2>&1
    proxy_result 120 || RESULT="result closed=no-answer"
    # Settle: a refusing destination and a source that lost its disks both exit; wait
    # (bounded) until at most one process is left.
    local t
    for ((t = 0; t < 1200; t++)); do
        alive "$src_pid" && alive "$dst_pid" || break
        grep -q "migration received" "$dlog" && ! alive "$src_pid" && break
        # Cut before anything loaded: the destination waits for a real source; let it go.
        grep -q "still waiting for the source" "$dlog" && break
        sleep 0.1
    done
    if alive "$dst_pid" && grep -q "still waiting for the source" "$dlog" &&
        ! grep -q "migration received" "$dlog"; then
        "$NVMEVM" ctl --socket "$work/dst.sock" quit >/dev/null 2>&1
        timeout 20 tail --pid="$dst_pid" -f /dev/null
    fi
    local src_runs=0 dst_runs=0
    alive "$src_pid" && progressing "$src_pid" "$slog" "$work/src.sock" && src_runs=1
    alive "$dst_pid" && progressing "$dst_pid" "$dlog" "$work/dst.sock" && dst_runs=1
    case $src_runs$dst_runs in
    10) RUNNER=source ;;
    01) RUNNER=destination ;;
    00) RUNNER=none ;;
    11) RUNNER=both ;;
    esac
    # Locks: the runner holds the disk's lock; the other has exited (so holds none).
    LOCKS=ok
    local run_pid= other_pid= other=
    [ "$RUNNER" = source ] && run_pid=$src_pid other_pid=$dst_pid other=destination
    [ "$RUNNER" = destination ] && run_pid=$dst_pid other_pid=$src_pid other=source
    if [ -z "$run_pid" ]; then
        LOCKS="no single runner"
    elif ! holds_lock "$run_pid" "$disk"; then
        LOCKS="the $RUNNER runs without the disk lock"
    elif alive "$other_pid"; then
        holds_lock "$other_pid" "$disk" && LOCKS="the $other holds the lock too" ||
            LOCKS="the $other is still alive (without the lock)"
    fi
    MIG=$(tail -1 "$mlog")
    for p in $src_pid $dst_pid; do kill -9 "$p" 2>/dev/null && { wait "$p"; } 2>/dev/null; done
    src_pid= dst_pid=
}

echo "cut-connections: $N cases, seed $SEED (REL_SEED=$SEED repeats them)"
proxy_start "$pport"
# Measure the stream: all of it forwarded, the destination's LOADED withheld.
one_case 0 cutreply 3
len=$(field end_at)
echo "cut-connections: calibration: runner $RUNNER, locks $LOCKS; $RESULT"
[ -n "$len" ] && [ "$RUNNER" = source ] && [ "$LOCKS" = ok ] ||
    { echo "cut-connections: calibration failed"; exit 1; }
echo "cut-connections: the stream is $len bytes up to its end section"

one_runner=0
locks_ok=0
declare -A by_point=()
for ((i = 1; i <= N; i++)); do
    r=$((RANDOM % 100))
    if [ $r -lt 30 ]; then
        words=(cut $(((RANDOM * 32768 + RANDOM) % len)))
    elif [ $r -lt 65 ]; then
        words=(cutend $((1 + (RANDOM * 32768 + RANDOM) % 8192)))
    elif [ $r -lt 85 ]; then
        words=(cutend $((1 + RANDOM % 40)))
    else
        words=(cutreply $(((RANDOM % 3) == 0 ? 0 : (RANDOM % 2) * 7 + 3)))
    fi
    t0=$SECONDS
    one_case "$i" "${words[@]}"
    where=$(field cut_where)
    [ "${words[0]}" = cutreply ] && where="reply after ${words[1]} bytes ($(field replies))"
    key="${where%% (*} -> $RUNNER"
    by_point[$key]=$((${by_point[$key]:-0} + 1))
    [ "$RUNNER" = source ] || [ "$RUNNER" = destination ] && one_runner=$((one_runner + 1))
    [ "$LOCKS" = ok ] && locks_ok=$((locks_ok + 1))
    echo "case $i/$N ${words[*]} (at $(field cut_at), $where): runner $RUNNER, locks $LOCKS, $((SECONDS - t0)) s; $MIG"
    if [ "$LOCKS" != ok ]; then
        echo "    proxy: $RESULT"
        show_tail "$work/src.log" 5
        show_tail "$work/dst.log" 5
    fi
done
proxy_case quit
echo "cut-connections: cut point -> runner:"
for k in "${!by_point[@]}"; do printf '    %5s  %s\n' "${by_point[$k]}" "$k"; done | sort -k2
echo "$N cut connections: exactly one runner $one_runner/$N, locks agree $locks_ok/$N"
[ "$one_runner" -eq "$N" ] && [ "$locks_ok" -eq "$N" ]
