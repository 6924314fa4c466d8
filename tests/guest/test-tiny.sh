#!/bin/bash
# Level 2: nvmevm boots the tiny guest on this host's /dev/kvm (ring-0 setup, ring-3 hot
# loops). The tiny guest reports through port 0x501: exit status 2v+1 for a byte v, so
# status 1 means the guest's checks passed (guest-images/tiny/README.md).
set -uo pipefail
. "$(dirname "$0")/../lib.sh"

if [ ! -f "$TINY" ]; then
    t_fail tiny/build "tiny guest not built: $TINY"
    exit 0
fi

# tiny_run NAME CPUS APPEND WANT_STATUS PATTERN...: every PATTERN must appear in the output.
tiny_run() {
    local name=$1 cpus=$2 append=$3 want=$4
    shift 4
    local out="$TEST_TMP/tiny-$name.log"
    run_capture "$out" 120 "$NVMEVM" run --kernel "$TINY" --cpus "$cpus" --mem 64M \
        --no-stdin --append "$append"
    if [ "$RC" -ne "$want" ]; then
        t_fail "tiny/$name" "exit status $RC, want $want"
        show_tail "$out"
        return
    fi
    for pat in "$@"; do
        if ! grep -q -- "$pat" "$out"; then
            t_fail "tiny/$name" "output lacks '$pat'"
            show_tail "$out"
            return
        fi
    done
    t_pass "tiny/$name"
}

tiny_run hello 1 "test=hello" 1 "tiny: hello from ring 0" "tiny: hello from ring 3" "tiny: PASS"
# A billion iterations only finish in seconds if the loop really runs natively in ring 3.
tiny_run ring3-loop 1 "test=ring3 iters=1000000000" 1 "ring3 loop done iters=1000000000" \
    "cpl=3" "tiny: PASS"
tiny_run timer-interrupt 1 "test=timer ticks=20" 1 "tiny: timer interrupts=20" "tiny: PASS"
tiny_run two-vcpus 2 "test=smp cpus=2" 1 "tiny: cpu 1 online" "online=2" "tiny: PASS"
tiny_run four-vcpus 4 "test=smp cpus=4" 1 "tiny: cpu 3 online" "online=4" "tiny: PASS"
# The guest's status becomes nvmevm's: a #UD (vector 6) exits with 64+6 -> 2*70+1.
tiny_run exit-status 1 "test=fault" 141 "exception"
tiny_run bad-test-name 1 "test=nosuch" 7 "unknown test"

# Pause and resume in the middle of a long deterministic computation: the result must be
# the one an uninterrupted run computes, and nothing may run while paused.
pause_resume() {
    local iters=400000000
    local ref="$TEST_TMP/tiny-checksum-ref.log" out="$TEST_TMP/tiny-pause.log"
    local sock="$TEST_TMP/pause.sock"
    run_capture "$ref" 120 "$NVMEVM" run --kernel "$TINY" --mem 64M --no-stdin \
        --append "test=checksum iters=$iters"
    local want
    want=$(grep -o 'result=0x[0-9a-f]*' "$ref" | head -1)
    if [ "$RC" -ne 1 ] || [ -z "$want" ]; then
        t_fail tiny/pause-resume "reference run failed (status $RC)"
        show_tail "$ref"
        return
    fi
    "$NVMEVM" run --kernel "$TINY" --mem 64M --no-stdin --control "$sock" \
        --append "test=checksum iters=$iters progress=20000000 expect=${want#result=}" \
        >"$out" 2>&1 </dev/null &
    local pid=$! pauses=0 frozen=1
    for _ in $(seq 200); do
        grep -q "checksum progress" "$out" && break
        sleep 0.05
    done
    for _ in 1 2 3 4 5; do
        "$NVMEVM" ctl --socket "$sock" pause >/dev/null || break
        local before after
        before=$(wc -c <"$out")
        "$NVMEVM" ctl --socket "$sock" status | grep -q '"state":"paused"' || frozen=0
        sleep 0.4
        after=$(wc -c <"$out")
        [ "$before" = "$after" ] || frozen=0
        "$NVMEVM" ctl --socket "$sock" resume >/dev/null || break
        pauses=$((pauses + 1))
        sleep 0.2
    done
    local rc=0
    wait "$pid" || rc=$?
    local got
    got=$(grep -o 'result=0x[0-9a-f]*' "$out" | head -1)
    if [ "$pauses" -lt 5 ]; then
        t_fail tiny/pause-resume "only $pauses of 5 pause/resume cycles happened before the end"
        show_tail "$out"
    elif [ "$frozen" -ne 1 ]; then
        t_fail tiny/pause-resume "guest produced output while paused"
    elif [ "$rc" -ne 1 ] || [ "$got" != "$want" ]; then
        t_fail tiny/pause-resume "status $rc, $got (want $want)"
        show_tail "$out"
    else
        t_pass tiny/pause-resume
    fi
}
pause_resume

# SIGTERM stops nvmevm cleanly (128+15), with no core dump.
sigterm_stop() {
    local out="$TEST_TMP/tiny-sigterm.log"
    "$NVMEVM" run --kernel "$TINY" --mem 64M --no-stdin --append "test=ring3 iters=100000000000" \
        >"$out" 2>&1 </dev/null &
    local pid=$!
    sleep 1
    kill -TERM "$pid"
    local rc=0
    wait "$pid" || rc=$?
    t_check tiny/sigterm-clean-stop "exit status $rc, want 143" [ "$rc" -eq 143 ]
}
sigterm_stop
