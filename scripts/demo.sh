#!/bin/bash
# The main job on a fresh machine: install what is needed, build nvmevm and the default
# Debian guest, boot it with an NVMe disk, let it report its kernel, CPUs and memory, run
# fio (random read/write, crc32c verified) on /dev/nvme0n1, and power off.
# On a host whose /dev/kvm cannot run a Linux kernel (kvm_pvm), the guest boots inside the
# QEMU TCG sandbox instead, and this says so.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${NVMEVM_BUILD:-$REPO/build}
export NVMEVM_BUILD=$BUILD
"$REPO/scripts/install-deps.sh"
"$REPO/scripts/build.sh"

APPEND="quiet nvmevm.run=demo nvmevm.arg=${DEMO_FIO_SIZE:-64M}"
rc=0
why=$("$BUILD/nvmevm" probe) || rc=$?
why=${why#nvmevm: }
case $rc in
0)
    echo "demo: booting directly ($why)"
    disk=$BUILD/demo-disk.img
    [ -f "$disk" ] || truncate -s 1G "$disk"
    "$BUILD/nvmevm" run --cpus 2 --mem 512M --no-stdin --append "$APPEND" "$disk"
    ;;
3)
    echo "demo: booting inside the QEMU TCG sandbox, where nested SVM gives a working" \
        "/dev/kvm ($why)"
    # One sandbox vCPU (two soft-locked up under nested guests); the disk lives in the
    # sandbox's own RAM-backed /tmp.
    "$REPO/tests/sandbox/run.sh" --cpus 1 --stall 120 -- bash -c "truncate -s 1G /tmp/demo-disk.img &&
        exec '$BUILD/nvmevm' run --cpus 2 --mem 512M --no-stdin --append '$APPEND' \
        /tmp/demo-disk.img"
    ;;
*)
    echo "demo: nvmevm probe failed (status $rc): $why" >&2
    exit 1
    ;;
esac
