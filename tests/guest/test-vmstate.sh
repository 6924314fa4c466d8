#!/bin/bash
# Level 2: KVM vCPU/VM state save and restore (kvm/vmstate.c) on this host's /dev/kvm.
# build/tests/vmstate_harness boots the tiny guest, pauses it mid-run, saves the KVM state,
# loads it with a copy of RAM into a second VM in the same process, destroys the first and
# resumes the second (--hops times). The guest's own checks decide: the checksum must equal
# an uninterrupted run's (registers + RAM exact), the LAPIC timer must keep firing (LAPIC,
# TSC, irqchip), and SMP results must hold (MP state of every vCPU, INIT/SIPI).
set -uo pipefail
. "$(dirname "$0")/../lib.sh"

HARNESS=${VMSTATE_HARNESS:-$BUILD/tests/vmstate_harness}
if [ ! -f "$TINY" ]; then
    t_fail vmstate/build "tiny guest not built: $TINY"
    exit 0
fi
if [ ! -x "$HARNESS" ]; then
    t_fail vmstate/build "harness not built: $HARNESS"
    exit 0
fi
if [ ! -w /dev/kvm ]; then
    t_skip vmstate "no usable /dev/kvm"
    exit 0
fi

# harness NAME WANT_STATUS 'PATTERN...' HARNESS-ARGS...: every PATTERN (|-separated) must
# appear in the guest's console log.
harness() {
    local name=$1 want=$2 pats=$3
    shift 3
    local log="$TEST_TMP/vmstate-$name.console" out="$TEST_TMP/vmstate-$name.log"
    # 101: the guest finished before the pause (short SMP runs on a busy host): try again.
    for _ in 1 2 3 4 5; do
        run_capture "$out" 180 "$HARNESS" --kernel "$TINY" --out "$log" "$@"
        [ "$RC" -ne 101 ] && break
    done
    if [ "$RC" -eq 124 ] && grep -q "tiny: PASS" "$log"; then
        # The guest passed, then a vCPU thread never saw the stop: vm_start vs
        # vm_request_stop kick race (a guest that exits right after the resume).
        t_fail "vmstate/$name" "hang after the guest passed (vCPU kick lost at start-up)"
        return
    fi
    if [ "$RC" -ne "$want" ]; then
        t_fail "vmstate/$name" "exit status $RC, want $want"
        show_tail "$out"
        [ -f "$log" ] && show_tail "$log"
        return
    fi
    local IFS='|'
    for pat in $pats; do
        if ! grep -q -- "$pat" "$log"; then
            t_fail "vmstate/$name" "guest output lacks '$pat'"
            show_tail "$log"
            return
        fi
    done
    if ! grep -q "hop 1:" "$out"; then
        t_fail "vmstate/$name" "no migration happened"
        show_tail "$out"
        return
    fi
    t_pass "vmstate/$name"
}

# The reference result: the same guest without a migration (--hops 0).
iters=300000000
ref="$TEST_TMP/vmstate-ref.console"
run_capture "$TEST_TMP/vmstate-ref.log" 120 "$HARNESS" --kernel "$TINY" --out "$ref" --hops 0 \
    --append "test=checksum iters=$iters"
want=$(grep -o 'result=0x[0-9a-f]*' "$ref" | head -1)
if [ "$RC" -ne 1 ] || [ -z "$want" ]; then
    t_fail vmstate/checksum "reference run failed (status $RC)"
    show_tail "$ref"
else
    # Three migrations in the middle of the ring-3 loop; the guest checks expect= itself.
    # --hostile also feeds the first vCPU record, truncated at every length and with every
    # length and count field damaged, to the destination: each must be refused.
    harness checksum 1 "$want|tiny: PASS" --wait-for "checksum progress" --delay-ms 300 \
        --hops 3 --hostile \
        --append "test=checksum iters=$iters progress=20000000 expect=${want#result=}"
    # Two vCPUs, the AP still waiting for INIT/SIPI: its MP state must survive.
    harness checksum-2cpu 1 "$want|tiny: PASS" --cpus 2 --wait-for "checksum progress" \
        --delay-ms 200 --hops 2 \
        --append "test=checksum iters=$iters progress=20000000 expect=${want#result=}"
fi

# The periodic LAPIC timer keeps firing after each restore (4000 ticks of 1 ms).
harness timer 1 "tiny: timer interrupts=40|tiny: PASS" --wait-for "hello from ring 0" \
    --delay-ms 700 --hops 3 --append "test=timer ticks=4000 period_us=1000"

# SMP: migrate a few ms after start-up, so during INIT/SIPI, the APs' ring-3 loops or
# their output (the whole test lasts ~10-20 ms here).
for cpus in 2 4; do
    for d in 0 2 4; do
        harness "smp$cpus-at-${d}ms" 1 "cpu $((cpus - 1)) ring3 loop done|online=$cpus|tiny: PASS" \
            --cpus "$cpus" --wait-for "hello from ring 0" --delay-ms "$d" --hops 1 --timeout 30 \
            --append "test=smp cpus=$cpus"
    done
done
