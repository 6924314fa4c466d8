#!/bin/bash
# Levels 2 and 3, every test that runs a guest: the tiny guest (tests/guest/test-*.sh) and
# the Debian Linux guest (tests/linux/suite*.sh). They run directly where this host's
# /dev/kvm runs guest code in hardware; anywhere else (no /dev/kvm, no access to it, or a
# kvm_pvm that emulates ring 0) inside the QEMU TCG sandbox, which says so in one line.
# In the sandbox each test script gets a sandbox boot of its own (~5 s) watched from the
# host: a stuck sandbox kernel becomes one FAIL with its last output and the suite goes on.
# usage: tests/guests.sh [--no-linux]
set -uo pipefail
. "$(dirname "$0")/lib.sh"

scripts=("$TESTS_DIR"/guest/test-*.sh)
if [ "${1:-}" = --no-linux ]; then
    t_skip linux/all "--quick given"
else
    scripts+=("$TESTS_DIR"/linux/suite.sh "$TESTS_DIR"/linux/suite-nvme.sh
        "$TESTS_DIR"/linux/suite-migrate.sh "$TESTS_DIR"/linux/suite-stats.sh
        "$TESTS_DIR"/linux/suite-fio.sh)
fi

probe_rc=0
why=$("$NVMEVM" probe) || probe_rc=$?
why=${why#nvmevm: }
if [ "$probe_rc" -eq 0 ]; then
    echo "guests: running directly on this host's /dev/kvm ($why)"
    for t in "${scripts[@]}"; do "$t"; done
    [ "${1:-}" = --no-linux ] || "$TESTS_DIR"/linux/host-fio.sh
    exit 0
fi
if [ "$probe_rc" -ne 3 ]; then
    t_fail guests/probe "nvmevm probe failed (status $probe_rc): $why"
    exit 0
fi
echo "guests: running inside the QEMU TCG sandbox, 1 vCPU ($why)"

# The sandbox has its own /tmp: results come back through the build directory, which it
# shares read-write with the host.
mkdir -p "$BUILD/sandbox"
for t in "${scripts[@]}"; do
    name=$(basename "$t" .sh)
    inner=$(mktemp "$BUILD/sandbox/results-$name.XXXXXX")
    out="$TEST_TMP/sandbox-$name.log"
    # One vCPU: with two (multi-threaded TCG) the sandbox kernel soft-locked up under
    # nested guests (tests/sandbox/README.md); --stall catches a kernel that stops anyway.
    # A stuck sandbox kernel is the test rig failing, not nvmevm: the script runs once
    # more from the start (its first results dropped), and a second stall is a FAIL.
    for attempt in 1 2; do
        : >"$inner"
        "$REPO/tests/sandbox/run.sh" --cpus 1 --timeout 2400 --stall 120 \
            --env "NVMEVM_RESULTS=$inner" --env "NVMEVM=$NVMEVM" --env "TINY=$TINY" \
            --env "NVMEVM_GUEST_DIR=$GUEST_DIR" -- "$t" 2>&1 | tee "$out"
        rc=${PIPESTATUS[0]}
        [ "$rc" -eq 123 ] && [ "$attempt" -eq 1 ] || break
        echo "guests: RETRY $name: the sandbox kernel got stuck (test rig, not nvmevm); running it once more"
    done
    cat "$inner" >>"$NVMEVM_RESULTS"
    case $rc in
    0) grep -q . "$inner" || t_fail "sandbox/$name" "the script reported no result" ;;
    123) t_fail "sandbox/$name" "the sandbox kernel got stuck during the test after \
'$(grep -E '^(PASS|FAIL|SKIP) ' "$out" | tail -n 1 | cut -c1-80)'; see its messages above" ;;
    124) t_fail "sandbox/$name" "the sandbox timed out (2400 s)" ;;
    *) t_fail "sandbox/$name" "the sandbox run ended with status $rc" ;;
    esac
    rm -f "$inner"
done
# nvmevm fio as a user runs it here: it starts the sandbox itself.
[ "${1:-}" = --no-linux ] || "$TESTS_DIR"/linux/host-fio.sh
