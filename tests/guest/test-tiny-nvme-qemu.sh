#!/bin/bash
# The tiny guest's NVMe driver (test=nvme, test=nvme-bad) against QEMU's NVMe
# controller, the reference until nvmevm's own controller runs these tests.
# QEMU_ACCEL=kvm|tcg (default: kvm if /dev/kvm is usable, else tcg).
# Exit status of the guest: 1 = PASS, 3 = a check failed (guest-images/tiny/README.md).
set -uo pipefail
. "$(dirname "$0")/../lib.sh"

QEMU=${QEMU:-qemu-system-x86_64}
if ! command -v "$QEMU" >/dev/null; then
    t_skip tiny-nvme-qemu "$QEMU not installed"
    exit 0
fi
if [ ! -f "$TINY" ]; then
    t_fail tiny-nvme-qemu/build "tiny guest not built: $TINY"
    exit 0
fi
if [ -z "${QEMU_ACCEL:-}" ]; then
    if [ -r /dev/kvm ] && [ -w /dev/kvm ]; then QEMU_ACCEL=kvm; else QEMU_ACCEL=tcg; fi
fi
case $QEMU_ACCEL in
kvm) accel=(-enable-kvm -cpu host,-arch-capabilities) ;; # plain "-cpu host" aborts on this host
*) accel=(-accel tcg -cpu max) ;;
esac

img="$TEST_TMP/nvme.img"
truncate -s 256M "$img"

# qrun NAME SMP APPEND WANT_STATUS NVME_DEVICE_OPTS DRIVE PATTERN...
qrun() {
    local name=$1 smp=$2 append=$3 want=$4 devopts=$5 drive=$6
    shift 6
    local out="$TEST_TMP/tiny-nvme-$name.log"
    local dev=()
    if [ "$drive" != none ]; then
        dev=(-drive "$drive,if=none,id=d" -device "nvme,drive=d,serial=tiny1$devopts")
    fi
    run_capture "$out" 300 "$QEMU" "${accel[@]}" -m 256M -smp "$smp" -nographic -nodefaults \
        -serial stdio -device isa-debug-exit,iobase=0x501,iosize=1 -kernel "$TINY" \
        -append "$append" "${dev[@]}"
    if [ "$RC" -ne "$want" ]; then
        t_fail "tiny-nvme-qemu/$name" "exit status $RC, want $want"
        show_tail "$out"
        return
    fi
    for pat in "$@"; do
        if ! grep -aq -- "$pat" "$out"; then
            t_fail "tiny-nvme-qemu/$name" "output lacks '$pat'"
            show_tail "$out"
            return
        fi
    done
    t_pass "tiny-nvme-qemu/$name"
}

raw="file=$img,format=raw"
qrun verify-qd1 1 "test=nvme mode=verify qd=1" 1 "" "$raw" "nvme ctrl vid=0x1b36" "errors=0"
qrun verify-qd32-q4-shadow 1 "test=nvme mode=verify qd=32 queues=4 doorbell=shadow" 1 "" "$raw" \
    "doorbell=shadow" "errors=0"
qrun verify-msix 1 "test=nvme mode=verify qd=8 queues=2 irq=msix" 1 "" "$raw" "irq=msix" "errors=0"
qrun verify-2cpus 2 "test=nvme mode=verify qd=8 queues=4 cpus=2 irq=msix" 1 "" "$raw" \
    "qid=4 cpu=1" "errors=0"
qrun verify-prp-list 1 "test=nvme mode=verify qd=4 queues=2 bs=131072 ios=2000" 1 "" "$raw" \
    "errors=0"
qrun verify-4k-lba 1 "test=nvme mode=verify qd=8 bs=8192" 1 \
    ",logical_block_size=4096,physical_block_size=4096" "$raw" "lba=4096" "errors=0"
qrun randread-secs 1 "test=nvme mode=randread qd=32 queues=4 secs=1" 1 "" "$raw" "iops="
qrun bad 1 "test=nvme-bad" 1 "" "$raw" "case=reset-with-io-inflight" \
    "final verify ios=1024 errors=0"
# The verifier itself: a device that drops writes must fail with a mismatch.
qrun dropped-writes 1 "test=nvme qd=8 ios=200" 3 "" "driver=null-co,size=256M,read-zeroes=on" \
    "data mismatch"
# ... and one whose reads succeed without moving data (the read buffer is poisoned first).
qrun reads-without-data 1 "test=nvme qd=1 ios=200" 3 "" \
    "driver=null-co,size=256M,read-zeroes=off" "errors=100"
qrun no-controller 1 "test=nvme" 3 "" none "no NVMe controller"
