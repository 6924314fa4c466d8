#!/bin/bash
# guest-smoke.sh [GUEST_DIR] -- boot the default Linux guest under QEMU/KVM and
# check its /init contract (hello, exit status, console input, fio on NVMe).
# Needs a working /dev/kvm: run it inside the sandbox:
#   tests/sandbox/run.sh -- tests/sandbox/guest-smoke.sh
# QEMU ignores port 0x502, so the guest ends with reboot -f and the exit status is
# read from the "nvmevm-init: exit status N" line.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
img=${1:-$here/../../build/guest}
if [ ! -f "$img/vmlinuz" ] || [ ! -f "$img/initrd.img" ]; then
    echo "guest-smoke: error: no guest image in $img (run guest-images/linux/build.sh)" >&2
    exit 2
fi
[ -c /dev/kvm ] || { echo "guest-smoke: error: no /dev/kvm (run inside tests/sandbox/run.sh)" >&2; exit 2; }
kver=$(cat "$img/kernel-version")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

passed=0
failed=0
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

# boot KERNEL INITRD APPEND SEND_ON SEND_LINE [QEMU ARGS...]: boot the guest, echo its
# console, type SEND_LINE once a line contains SEND_ON. Sets out, rc, t_init, t_total.
boot() {
    local kernel=$img/$1 initrd=$img/$2 append=$3 send_on=$4 send_line=$5 start line
    shift 5
    start=$EPOCHREALTIME
    out=
    t_init=never
    coproc GUEST {
        exec qemu-system-x86_64 -enable-kvm -cpu host -m 512M -display none -nodefaults \
            -serial stdio -no-reboot -kernel "$kernel" -initrd "$initrd" \
            -append "console=ttyS0 quiet reboot=k $append" "$@" 2>&1
    }
    local pid=$GUEST_PID
    while IFS= read -r -t 300 line <&"${GUEST[0]}"; do
        line=${line//$'\r'/}
        printf '    | %s\n' "$line"
        out+=$line$'\n'
        if [ "$line" = "nvmevm-init: started" ]; then
            t_init=$(secs "$start" "$EPOCHREALTIME")
        fi
        if [ -n "$send_on" ] && [[ $line == *"$send_on"* ]]; then
            printf '%s\n' "$send_line" >&"${GUEST[1]}"
            send_on=
        fi
    done
    kill "$pid" 2>/dev/null || true
    rc=0
    wait "$pid" || rc=$?
    t_total=$(secs "$start" "$EPOCHREALTIME")
}

# check NAME PATTERN...: every extended regex must match a line of $out.
check() {
    local name=$1 p bad=
    shift
    for p in "$@"; do
        grep -Eq "$p" <<<"$out" || bad+=" '$p'"
    done
    if [ -z "$bad" ] && [ "$rc" = 0 ]; then
        echo "ok: $name (to /init ${t_init}s, total ${t_total}s)"
        passed=$((passed + 1))
    else
        echo "FAIL: $name: qemu exit $rc, missing:${bad:- none}"
        failed=$((failed + 1))
    fi
}

# The bzImage + full initramfs once (what nvmevm boots); then the decompressed
# vmlinux (PVH entry, ~3 s faster here) and the small initramfs where fio is not needed.
echo "guest-smoke: hello (vmlinuz, initrd.img)"
boot vmlinuz initrd.img "" "" ""
check hello '^nvmevm-init: started$' "^kernel: $kver\$" '^cpus: 1$' '^memory: [0-9]+ kB$' \
    '^nvmevm-init: exit status 0$'

echo "guest-smoke: exit status (vmlinux, initrd-base.img)"
boot vmlinux initrd-base.img "nvmevm.run=exit nvmevm.arg=5" "" ""
check exit-status '^nvmevm-init: exit status 5$'

echo "guest-smoke: console input"
boot vmlinux initrd-base.img "nvmevm.run=echo" "echo: ready" "hello from the host"
check echo '^got: hello from the host$' '^nvmevm-init: exit status 0$'

echo "guest-smoke: shell"
boot vmlinux initrd-base.img "nvmevm.run=shell" "nvmevm-init: shell" "echo shell-\$((6 * 7)); exit 3"
check shell '^shell-42$' '^nvmevm-init: exit status 3$'

echo "guest-smoke: fio without a disk"
boot vmlinux initrd-base.img "nvmevm.run=fio" "" ""
check fio-no-disk '^fio: no /dev/nvme0n1' '^nvmevm-init: exit status 3$'

echo "guest-smoke: fio on QEMU's NVMe (vmlinux, initrd.img)"
truncate -s 64M "$work/nvme.img"
boot vmlinux initrd.img "nvmevm.run=fio nvmevm.arg=4M" "" "" \
    -drive "file=$work/nvme.img,if=none,id=nvm,format=raw" -device nvme,drive=nvm,serial=smoke
check fio-nvme '^fio: ok$' '^nvmevm-init: exit status 0$'

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
