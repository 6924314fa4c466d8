#!/bin/bash
# The main job on a fresh machine: install what is needed, build nvmevm and the default
# Debian guest, boot it, and let it report its kernel, CPUs and memory before powering off.
# On a host whose /dev/kvm cannot run a Linux kernel (kvm_pvm), the guest boots inside the
# QEMU TCG sandbox instead, and this says so.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${NVMEVM_BUILD:-$REPO/build}
export NVMEVM_BUILD=$BUILD
"$REPO/scripts/install-deps.sh"
"$REPO/scripts/build.sh"

RUN=("$BUILD/nvmevm" run --cpus 2 --mem 512M --no-stdin --append "quiet nvmevm.run=hello")
rc=0
"$BUILD/nvmevm" probe --quiet || rc=$?
case $rc in
0)
    echo "demo: this host's /dev/kvm runs Linux guests: booting directly"
    "${RUN[@]}"
    ;;
3)
    echo "demo: this host's /dev/kvm cannot run a Linux kernel (guest ring 0 is emulated):" \
        "booting inside the QEMU TCG sandbox"
    "$REPO/tests/sandbox/run.sh" --cpus 2 -- "${RUN[@]}"
    ;;
*)
    echo "demo: no usable /dev/kvm on this host" >&2
    exit 1
    ;;
esac
