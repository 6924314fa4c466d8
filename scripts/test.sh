#!/bin/bash
# Runs every level of nvmevm's test suite and ends with "N passed, N failed, N skipped".
#   level 1  unit tests of the models (Criterion), on any machine
#   cli      bad input on the command line, meson install, on the host
#   level 2  the tiny guest            } directly where this host's /dev/kvm runs guests in
#   level 3  the Debian Linux guest    } hardware, else inside the QEMU TCG sandbox
#                                        (tests/guests.sh says which in one line)
# Options: --quick skips level 3.
set -uo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${NVMEVM_BUILD:-$REPO/build}
export NVMEVM_BUILD=$BUILD
QUICK=0
[ "${1:-}" = "--quick" ] && QUICK=1

"$REPO/scripts/install-deps.sh" || exit 1
"$REPO/scripts/build.sh" || { echo "0 passed, 1 failed, 0 skipped"; exit 1; }

RESULTS=$(mktemp /tmp/nvmevm-results.XXXXXX)
export NVMEVM_RESULTS=$RESULTS
. "$REPO/tests/lib.sh"

# run_units BUILD PREFIX: every unit test binary of BUILD, one result line per test case.
run_units() {
local build=$1 prefix=$2
for t in "$build"/tests/test_*; do
    [ -f "$t" ] && [ -x "$t" ] || continue
    name=$(basename "$t")
    log="$TEST_TMP/$prefix-$name.log"
    "$t" --jobs 1 >"$log" 2>&1
    rc=$?
    # One result per Criterion test case, from its own summary line.
    syn=$(grep -o 'Tested: [0-9]* | Passing: [0-9]* | Failing: [0-9]* | Crashing: [0-9]*' "$log")
    read -r tested passing failing crashing < <(sed 's/[^0-9 ]//g' <<<"$syn")
    if [ -z "$syn" ] || [ "$tested" -eq 0 ]; then
        t_fail "$prefix/$name" "no Criterion summary (exit $rc)"; show_tail "$log"; continue
    fi
    for _ in $(seq "$passing"); do echo "PASS $prefix/$name" >>"$RESULTS"; done
    for _ in $(seq $((failing + crashing))); do echo "FAIL $prefix/$name" >>"$RESULTS"; done
    echo "$prefix/$name: $passing/$tested passed"
    [ $((failing + crashing)) -eq 0 ] && [ $rc -eq 0 ] || show_tail "$log" 30
done
}

echo "== level 1: unit tests (Criterion)"
run_units "$BUILD" unit

echo "== checks: layering and format"
for check in check-layers check-style; do
    out=$("$REPO/scripts/$check.sh" 2>&1)
    if [ $? -eq 0 ]; then
        t_pass "checks/$check"
    else
        t_fail "checks/$check" "$(tail -n 1 <<<"$out")"
        sed 's/^/    /' <<<"$out" | head -20
    fi
done

echo "== cli: bad input, the control socket's paths, meson install"
"$REPO/tests/cli/test-bad-input.sh"
"$REPO/tests/cli/test-cli-conventions.sh"
"$REPO/tests/cli/test-control-socket.sh"
"$REPO/tests/cli/test-install.sh"

echo "== levels 2 and 3: the tiny guest and the Debian Linux guest"
if [ $QUICK -eq 1 ]; then
    "$REPO/tests/guests.sh" --no-linux
else
    "$REPO/tests/guests.sh"
fi

echo "== fuzz: every libFuzzer harness for ${NVMEVM_FUZZ_SECS:=20} s (scripts/fuzz.sh)"
fuzz_out=$("$REPO/scripts/fuzz.sh" "$NVMEVM_FUZZ_SECS" 2>&1)
echo "$fuzz_out"
for h in fuzz_nvme fuzz_stream fuzz_control; do
    line=$(grep "^$h: " <<<"$fuzz_out")
    if [[ $line == *"crashes 0" ]]; then
        t_pass "fuzz/$h"
    else
        t_fail "fuzz/$h" "${line:-no result (build failed?)}"
    fi
done

# The same unit tests and tiny guests with ASan and UBSan (UBSan made fatal, so a report
# fails the test). The sandbox keeps using $BUILD's kernel and caches; only the nvmevm
# binary under test comes from build-asan. Results are named unit-asan/... and asan/....
echo "== ASan/UBSan: unit tests and the tiny guest (build-asan)"
ASAN_BUILD=$REPO/build-asan
if { [ -f "$ASAN_BUILD/build.ninja" ] ||
    meson setup "$ASAN_BUILD" "$REPO" -Db_sanitize=address,undefined \
        -Dc_args=-fno-sanitize-recover=undefined >"$TEST_TMP/asan-setup.log" 2>&1; } &&
    ninja -C "$ASAN_BUILD" >"$TEST_TMP/asan-build.log" 2>&1; then
    run_units "$ASAN_BUILD" unit-asan
    asan_results=$(mktemp /tmp/nvmevm-asan-results.XXXXXX)
    NVMEVM="$ASAN_BUILD/nvmevm" NVMEVM_RESULTS="$asan_results" "$REPO/tests/guests.sh" --no-linux
    grep -v '^SKIP linux/all' "$asan_results" | sed -E 's/^(PASS|FAIL|SKIP) /\1 asan\//' >>"$RESULTS"
    rm -f "$asan_results"
else
    t_fail asan/build "build-asan did not build"
    show_tail "$TEST_TMP/asan-build.log"
fi

passed=$(grep -c '^PASS' "$RESULTS")
failed=$(grep -c '^FAIL' "$RESULTS")
skipped=$(grep -c '^SKIP' "$RESULTS")
if [ "$failed" -gt 0 ]; then
    echo "== failures:"
    grep '^FAIL' "$RESULTS" | sort | uniq -c | sed 's/^/  /'
fi
if [ "$skipped" -gt 0 ]; then
    echo "== skipped:"
    grep '^SKIP' "$RESULTS" | sed 's/^/  /'
fi
rm -rf "$RESULTS" "$TEST_TMP"
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
