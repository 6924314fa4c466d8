#!/bin/bash
# Reliability: one long-running source VM (the tiny guest dirtying 2 MiB, an NVMe disk
# attached) is migrated N times through proxy.py, which mutates the stream in flight (bit
# flip, byte replacement, truncation, inserted or duplicated chunk; seeded, seed printed per
# case), each time into a fresh `nvmevm run --incoming`. Every destination must refuse with
# one line without running the guest: "incoming migration refused: ..." and a non-zero exit
# once loading began, "refused a connection from ...; still waiting" before (it then waits
# for the real source and is told to quit over its control socket);
# the source must report the failed migration and keep running, its guest still printing.
# usage: tests/reliability/hostile-streams.sh [N=1000]   (REL_SEED=S fixes the base seed)
set -uo pipefail
. "$(dirname "$0")/lib.sh"
N=${1:-1000}
[[ $N =~ ^[0-9]+$ ]] && [ "$N" -gt 0 ] || { echo "usage: $0 [N]" >&2; exit 2; }
rel_enter_sandbox "$0" "$@"
[ -f "$TINY" ] || { echo "hostile-streams: tiny guest not built: $TINY" >&2; exit 2; }

SEED=${REL_SEED:-$((RANDOM * 32768 + RANDOM))}
rel_workdir hostile
pport=$((41000 + $$ % 1000))
dport_base=$((43000 + $$ % 1000 * 10))
VM=("$NVMEVM" run --kernel "$TINY" --mem 64M --no-stdin)

start_source() {
    src_log=$work/src-$1.log
    "${VM[@]}" --control "$work/src.sock" \
        --append "test=dirty mb=2 rate_mb_s=1 secs=10000000 progress_s=1" "$disk" \
        >"$src_log" 2>&1 </dev/null &
    src_pid=$!
    wait_for "$src_log" "tiny: dirty start" 60 ||
        { echo "hostile-streams: the source guest did not start"; show_tail "$src_log"; exit 1; }
}

# one_case I WORDS...: a fresh destination, one migration through the proxy doing WORDS.
# Sets DST (refused|ran|hung|crashed|other), SRC (ok|...), REASON, RESULT.
one_case() {
    local i=$1
    shift
    local port=$((dport_base + i % 5000)) dlog=$work/dst.log mlog=$work/mig.log
    "${VM[@]}" --control "$work/dst.sock" --incoming "tcp:127.0.0.1:$port" "$disk" \
        >"$dlog" 2>&1 </dev/null &
    dst_pid=$!
    if ! wait_for "$dlog" "waiting for an incoming" 60; then
        DST=other REASON="destination did not listen: $(tail -1 "$dlog")" SRC=ok
        kill -9 "$dst_pid" 2>/dev/null
        wait "$dst_pid" 2>/dev/null
        return
    fi
    local size0 mrc=0 drc=0
    size0=$(stat -c %s "$src_log")
    proxy_case "$@" "$port"
    timeout 300 "$NVMEVM" migrate --socket "$work/src.sock" "tcp:127.0.0.1:$pport" \
        >"$mlog" 2>&1 || mrc=$?
    proxy_result 120 || RESULT="result closed=no-answer"
    local waited=0
    if wait_for "$dlog" "still waiting for the source\|incoming migration refused\|migration received" 120 &&
        grep -q "still waiting for the source" "$dlog"; then
        "$NVMEVM" ctl --socket "$work/dst.sock" quit >/dev/null 2>&1 && waited=1
    fi
    # A destination that neither refuses nor runs within 120 s is hung.
    timeout 120 tail --pid="$dst_pid" -f /dev/null
    if kill -0 "$dst_pid" 2>/dev/null; then
        if grep -q "migration received" "$dlog"; then DST=ran; else DST=hung; fi
        kill -9 "$dst_pid" 2>/dev/null
    fi
    wait "$dst_pid" 2>/dev/null || drc=$?
    dst_pid=
    local refusals
    local refused_re="incoming migration refused: \|refused a connection from .*still waiting"
    refusals=$(grep -c "$refused_re" "$dlog")
    REASON=$(grep -m1 -o "incoming migration refused: .*\|refused a connection from .*" "$dlog" |
        sed 's/^incoming migration refused: //; s/^refused a connection from [^:]*: //; s/; still waiting.*//')
    if [ -n "${DST:-}" ]; then
        :
    elif grep -q "migration received\|tiny:" "$dlog"; then
        DST=ran
    elif [ "$drc" -ge 128 ]; then
        DST=crashed REASON="status $drc: $(tail -1 "$dlog")"
    elif { [ "$drc" -ne 0 ] || [ "$waited" -eq 1 ]; } && [ "$refusals" -eq 1 ] &&
        [ "$(grep -vc '^nvmevm: \(control socket\|waiting for an incoming\)' "$dlog")" -eq 1 ]; then
        DST=refused
    else
        DST=other REASON="status $drc, $refusals refusal lines: $(tr '\n' '|' <"$dlog" | cut -c1-200)"
    fi
    # The source: migrate failed, the VM says running, the guest keeps printing.
    if [ "$mrc" -eq 0 ] || ! grep -q "migration failed" "$mlog"; then
        SRC="migrate status $mrc: $(tail -1 "$mlog")"
    elif ! kill -0 "$src_pid" 2>/dev/null; then
        SRC="source exited: $(tail -1 "$src_log")"
    elif ! "$NVMEVM" ctl --socket "$work/src.sock" status 2>&1 | grep -q '"running"'; then
        SRC="source not running: $("$NVMEVM" ctl --socket "$work/src.sock" status 2>&1)"
    else
        SRC="guest silent"
        local t
        for ((t = 0; t < 600; t++)); do
            [ "$(stat -c %s "$src_log")" -gt "$size0" ] && grep -q "tiny: dirty pass" \
                <(tail -c +$((size0 + 1)) "$src_log") && { SRC=ok; break; }
            sleep 0.1
        done
    fi
}

echo "hostile-streams: $N cases, base seed $SEED (REL_SEED=$SEED repeats them)"
proxy_start "$pport"
start_source 0
# Measure the stream: forward all of it but only the destination's first reply line, so the
# destination never gets the disks and the source keeps the guest (also a case in itself).
DST=
one_case 0 cutreply 3
len=$(field end_at)
echo "hostile-streams: calibration: $RESULT"
if [ "$DST" != refused ] || [ "$SRC" != ok ] || [ -z "$len" ]; then
    echo "hostile-streams: calibration failed: destination $DST ($REASON), source $SRC"
    exit 1
fi
echo "hostile-streams: the stream is $len bytes up to its end section"

declare -A by_kind_where=() by_reason=() by_outcome=()
refused=0
src_ok=0
restarts=0
for ((i = 1; i <= N; i++)); do
    seed=$((SEED + i))
    DST=
    one_case "$i" mutate "$seed" "$len"
    kind=$(field mutation)
    where=$(field where)
    [ "$(field clamped)" = 1 ] && where="$where(late)"
    by_kind_where["$kind@${where%%(*}"]=$((${by_kind_where["$kind@${where%%(*}"]:-0} + 1))
    by_outcome[$DST]=$((${by_outcome[$DST]:-0} + 1))
    [ "$DST" = refused ] && refused=$((refused + 1))
    [ "$SRC" = ok ] && src_ok=$((src_ok + 1))
    # The reason's shape, without numbers: "section 0x2: checksum 0x.. != 0x.." -> "checksum"
    shape=$(sed -E 's/0x[0-9a-f]+|[0-9]+/#/g' <<<"${REASON:-none}" | cut -c1-70)
    by_reason[$shape]=$((${by_reason[$shape]:-0} + 1))
    echo "case $i/$N seed=$seed $kind at $(field offset) ($where, changed=$(field changed)):" \
        "destination $DST${REASON:+ ($REASON)}; source $SRC"
    if [ "$DST" != refused ] || [ "$SRC" != ok ]; then
        echo "    proxy: $RESULT"
        show_tail "$work/dst.log" 6
        show_tail "$work/mig.log" 3
    fi
    if ! kill -0 "$src_pid" 2>/dev/null; then
        restarts=$((restarts + 1))
        echo "hostile-streams: the source is gone; starting a new one"
        wait "$src_pid" 2>/dev/null
        start_source "$i"
    fi
done
proxy_case quit

echo "hostile-streams: outcomes:$(for k in "${!by_outcome[@]}"; do printf ' %s=%s' "$k" "${by_outcome[$k]}"; done)"
echo "hostile-streams: mutation@region counts:"
for k in "${!by_kind_where[@]}"; do printf '    %-28s %s\n' "$k" "${by_kind_where[$k]}"; done | sort
echo "hostile-streams: refusal reasons (numbers elided):"
for k in "${!by_reason[@]}"; do printf '    %5s  %s\n' "${by_reason[$k]}" "$k"; done | sort -rn
echo "$N mutated streams: $refused refused with one line, source kept running $src_ok/$N"
[ "$refused" -eq "$N" ] && [ "$src_ok" -eq "$N" ] && [ "$restarts" -eq 0 ]
