# Shared helpers for nvmevm's shell-level tests (sourced, not run).
# Each result is one line "PASS|FAIL|SKIP <name>[: reason]" appended to $NVMEVM_RESULTS,
# so tests that run inside the sandbox report into the same file as the host's.

TESTS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$TESTS_DIR/.." && pwd)
BUILD=${NVMEVM_BUILD:-$REPO/build}
NVMEVM=${NVMEVM:-$BUILD/nvmevm}
TINY=${TINY:-$BUILD/guest-images/tiny/tiny.elf}
GUEST_DIR=${NVMEVM_GUEST_DIR:-$BUILD/guest}
: "${NVMEVM_RESULTS:=/dev/null}"
TEST_TMP=${TEST_TMP:-$(mktemp -d /tmp/nvmevm-test.XXXXXX)}

t_pass() { echo "PASS $1" | tee -a "$NVMEVM_RESULTS"; }
t_fail() { echo "FAIL $1: $2" | tee -a "$NVMEVM_RESULTS"; }
t_skip() { echo "SKIP $1: $2" | tee -a "$NVMEVM_RESULTS"; }

# t_check NAME CONDITION-DESCRIPTION COMMAND...: PASS if COMMAND succeeds.
t_check() {
    local name=$1 what=$2
    shift 2
    if "$@"; then t_pass "$name"; else t_fail "$name" "$what"; fi
}

# run_capture OUTFILE TIMEOUT CMD...: runs CMD with stdout+stderr to OUTFILE; sets RC.
run_capture() {
    local out=$1 secs=$2
    shift 2
    RC=0
    timeout -k 5 "$secs" "$@" >"$out" 2>&1 </dev/null || RC=$?
}

# Prints the last lines of a log to help whoever reads a failure.
# wait_for FILE PATTERN SECONDS: 0 once FILE has a line matching PATTERN, 1 after SECONDS.
wait_for() { # wait_for FILE PATTERN SECONDS
    for _ in $(seq $(($3 * 10))); do
        grep -q -- "$2" "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

# expect_cli_error NAME STATUS PATTERN CMD...: CMD exits with STATUS ("any": a small
# non-zero one) and writes exactly one stderr line matching PATTERN.
expect_cli_error() {
    local name=$1 want=$2 pattern=$3
    shift 3
    local err="$TEST_TMP/$name.err" rc=0 lines
    timeout 30 "$@" >/dev/null 2>"$err" </dev/null || rc=$?
    lines=$(grep -c . "$err")
    if { [ "$want" = any ] && { [ "$rc" -eq 0 ] || [ "$rc" -ge 124 ]; }; } ||
        { [ "$want" != any ] && [ "$rc" -ne "$want" ]; }; then
        t_fail "cli/$name" "exit status $rc (want $want): $(head -c 300 "$err")"
    elif [ "$lines" -ne 1 ]; then
        t_fail "cli/$name" "stderr has $lines lines (want 1): $(head -c 300 "$err")"
    elif ! grep -q -- "$pattern" "$err"; then
        t_fail "cli/$name" "stderr '$(cat "$err")' does not match '$pattern'"
    else
        t_pass "cli/$name"
    fi
}

show_tail() {
    echo "---- last lines of $1 ----"
    tail -n "${2:-15}" "$1" | sed 's/^/    /'
    echo "----"
}

# guest_scratch NAME SIZE: a sparse disk image $disk in /var/tmp (O_DIRECT works there, not
# always in /tmp), an empty list $pids of processes to kill, and an EXIT trap that kills
# them and removes the image.
guest_scratch() {
    disk=/var/tmp/nvmevm-$1-$$.img
    truncate -s "$2" "$disk"
    pids=()
    trap 'for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done; rm -f "$disk"' EXIT
}
