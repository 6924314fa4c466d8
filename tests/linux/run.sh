#!/bin/bash
# Runs the Linux-guest suite where a Linux kernel can run: directly if this host's /dev/kvm
# does hardware virtualization, otherwise inside the QEMU TCG sandbox. Says which, in one line.
set -uo pipefail
. "$(dirname "$0")/../lib.sh"

if [ ! -f "$GUEST_DIR/vmlinuz" ]; then
    t_fail linux/guest-image "default guest not built ($GUEST_DIR/vmlinuz)"
    exit 0
fi
probe_rc=0
why=$("$NVMEVM" probe) || probe_rc=$?
case $probe_rc in
0)
    echo "linux: running directly (${why#nvmevm: })"
    "$TESTS_DIR/linux/all.sh"
    ;;
3)
    echo "linux: running inside the QEMU TCG sandbox (${why#nvmevm: })"
    # The sandbox sees the repository read-write but has its own /tmp: results go via build/.
    inner="$BUILD/linux-results.txt"
    : >"$inner"
    rc=0
    "$REPO/tests/sandbox/run.sh" --cpus 2 --timeout 2400 \
        --env "NVMEVM_RESULTS=$inner" --env "NVMEVM=$NVMEVM" --env "NVMEVM_GUEST_DIR=$GUEST_DIR" \
        -- "$TESTS_DIR/linux/all.sh" || rc=$?
    cat "$inner" >>"$NVMEVM_RESULTS"
    if [ "$rc" -ne 0 ] || ! grep -q . "$inner"; then
        t_fail linux/sandbox "sandbox run ended with status $rc"
    fi
    rm -f "$inner"
    ;;
*)
    t_skip linux/all "no usable /dev/kvm: $why"
    ;;
esac
