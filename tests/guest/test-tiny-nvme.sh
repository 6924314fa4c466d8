#!/bin/bash
# Level 2, NVMe: the tiny guest's ring-3 NVMe driver against nvmevm's controller on this
# host's /dev/kvm: verified I/O (data read back equals data written) at several queue
# depths and queue counts, both doorbell modes, polling and MSI-X; and guest misbehaviour.
set -uo pipefail
. "$(dirname "$0")/../lib.sh"

if [ ! -f "$TINY" ]; then
    t_fail tiny-nvme/build "tiny guest not built: $TINY"
    exit 0
fi
disk=/var/tmp/nvmevm-tiny-nvme-$$.img
truncate -s 256M "$disk"
trap 'rm -f "$disk"' EXIT

# nvme_run NAME APPEND [NVMEVM-OPTION...]: PASS when the guest verified every block.
nvme_run() {
    local name=$1 append=$2
    shift 2
    local out="$TEST_TMP/tiny-nvme-$name.log"
    run_capture "$out" 120 "$NVMEVM" run --kernel "$TINY" --mem 128M --no-stdin "$@" \
        --append "test=nvme $append" "$disk"
    if [ "$RC" -eq 1 ] && grep -q "errors=0" "$out" && grep -q "tiny: PASS" "$out"; then
        t_pass "tiny-nvme/$name"
    else
        t_fail "tiny-nvme/$name" "status $RC"
        show_tail "$out"
    fi
}

nvme_run verify-qd1 "mode=verify qd=1 ios=2000"
nvme_run verify-qd8 "mode=verify qd=8 ios=8000"
nvme_run verify-qd32 "mode=verify qd=32 ios=16000"
nvme_run verify-4queues-qd32 "mode=verify qd=32 queues=4 ios=16000"
nvme_run verify-shadow-doorbells "mode=verify qd=8 queues=2 doorbell=shadow ios=8000"
nvme_run verify-msix "mode=verify qd=8 queues=2 irq=msix ios=8000"
nvme_run verify-shadow-msix-qd1 "mode=verify qd=1 doorbell=shadow irq=msix ios=2000"
nvme_run verify-polling-io-thread "mode=verify qd=8 queues=4 doorbell=shadow ios=8000" \
    --poll-us 200
nvme_run verify-cache-writeback "mode=verify qd=16 queues=2 ios=8000" --cache writeback

# Hostile guest: bad doorbells, tails beyond the queue, pointers outside RAM. The controller
# answers with error statuses or CFS, and works again after a reset.
out="$TEST_TMP/tiny-nvme-bad.log"
run_capture "$out" 120 "$NVMEVM" run --kernel "$TINY" --mem 128M --no-stdin \
    --append "test=nvme-bad" "$disk"
if [ "$RC" -eq 1 ] && grep -q "tiny: PASS" "$out"; then
    t_pass tiny-nvme/misbehaving-guest
else
    t_fail tiny-nvme/misbehaving-guest "status $RC"
    show_tail "$out" 30
fi
