#!/bin/bash
# Builds the libFuzzer harnesses (fuzz/, clang, ASan+UBSan) in build-fuzz and runs each for
# SECONDS (default 60), one at a time, starting from its committed seeds. Prints one line
# per harness: executions, coverage (cov/ft), crashes; exits 1 if any harness crashed,
# leaving the crashing input's path in the output.
#   scripts/fuzz.sh [SECONDS]        FUZZ_BUILD=dir overrides build-fuzz
set -uo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
SECS=${1:-60}
BUILD=${FUZZ_BUILD:-$REPO/build-fuzz}
HARNESSES="fuzz_nvme fuzz_stream fuzz_control"

if [ ! -f "$BUILD/build.ninja" ]; then
    CC=clang meson setup "$BUILD" "$REPO" -Dfuzz=true -Dtests=disabled >/dev/null ||
        { echo "fuzz: meson setup failed"; exit 1; }
fi
targets=""
for h in $HARNESSES; do targets="$targets fuzz/$h"; done
# shellcheck disable=SC2086
ninja -C "$BUILD" $targets >"$BUILD/fuzz-build.log" 2>&1 ||
    { tail -n 20 "$BUILD/fuzz-build.log"; echo "fuzz: build failed"; exit 1; }

failed=0
for h in $HARNESSES; do
    work="$BUILD/fuzz-run/$h"
    mkdir -p "$work/corpus" "$work/crashes"
    log="$work/log"
    args=(-max_total_time="$SECS" -print_final_stats=1 -timeout=25 -rss_limit_mb=2048
        -artifact_prefix="$work/crashes/")
    [ -f "$REPO/fuzz/$h.dict" ] && args+=(-dict="$REPO/fuzz/$h.dict")
    # New inputs go to the scratch corpus; the committed seeds are read only.
    nice "$BUILD/fuzz/$h" "${args[@]}" "$work/corpus" "$REPO/fuzz/corpus/$h" >"$log" 2>&1
    rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    cov=$(grep -o 'cov: [0-9]* ft: [0-9]*' "$log" | tail -n 1)
    crash=$(grep -o "Test unit written to .*" "$log" | sed 's/Test unit written to //' | head -n 1)
    if [ $rc -ne 0 ] || [ -n "$crash" ]; then
        failed=1
        echo "$h: executions ${execs:-?}, ${cov:-cov: ?}, crashes 1: ${crash:-exit $rc, see $log}"
        grep -m 3 -E 'ERROR|SUMMARY|fuzz_' "$log" | sed 's/^/    /'
    else
        echo "$h: executions $execs, $cov, crashes 0"
    fi
done
exit $failed
