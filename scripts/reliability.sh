#!/bin/bash
# The reliability figures (tests/reliability/): N Linux round trips under verified fio,
# N mutated migration streams, N cut connections. Each script prints progress and one
# final figure line and fails when its figure does; this runs them one after another
# (each in its own sandbox where `nvmevm probe` says guests cannot run here) and repeats
# the figures at the end. Needs a build (scripts/build.sh: nvmevm, tiny guest, build/guest).
# usage: scripts/reliability.sh [ROUNDTRIPS=20 [STREAMS=1000 [CUTS=50]]]
set -uo pipefail
rel=$(cd "$(dirname "$0")/../tests/reliability" && pwd)
runs=("roundtrips.sh ${1:-20}" "hostile-streams.sh ${2:-1000}" "cut-connections.sh ${3:-50}")
figures=()
failed=0
for r in "${runs[@]}"; do
    read -r script n <<<"$r"
    echo "==== $script $n"
    out=$(mktemp)
    start=$SECONDS
    "$rel/$script" "$n" 2>&1 | tee "$out"
    rc=${PIPESTATUS[0]}
    line=$(grep -E '^[0-9]+ (round trips|mutated streams|cut connections)' "$out" | tail -1)
    figures+=("${line:-$script: no figure} ($([ "$rc" -eq 0 ] && echo ok || echo "FAILED, status $rc"), $((SECONDS - start)) s)")
    [ "$rc" -eq 0 ] || failed=$((failed + 1))
    rm -f "$out"
done
echo "==== reliability figures"
printf '%s\n' "${figures[@]}"
[ "$failed" -eq 0 ]
