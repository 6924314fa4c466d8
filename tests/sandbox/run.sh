#!/bin/bash
# run.sh [options] -- COMMAND... -- run COMMAND inside the QEMU TCG sandbox, a
# Linux VM whose /dev/kvm works (nested SVM), and exit with COMMAND's status.
#
# The sandbox boots Debian's kernel (the one guest-images/linux/build.sh fetches)
# with a small uncompressed initramfs, mounts this host's root read-only over
# virtio-9p, the repository read-write at the same path, and runs COMMAND via
# bash in a chroot of it, in the current directory. See README.md.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# The source tree (tests/sandbox/run.sh), or an install (<prefix>/share/nvmevm/sandbox/run.sh
# with the guest builder beside it in ../guest-images/linux).
if [ -d "$here/../guest-images/linux" ]; then
    repo=$(cd "$here/.." && pwd)
else
    repo=$(cd "$here/../.." && pwd)
fi

log() { echo "sandbox: $*"; }
die() { echo "sandbox: error: $*" >&2; exit 2; }

usage() {
    cat <<EOF
usage: $0 [options] -- COMMAND [ARG...]
  --mem SIZE        sandbox memory (default 3G)
  --cpus N          sandbox vCPUs, 1 or 2 (default 1: boots 1-vCPU inner guests ~40% faster)
  --disk FILE       attach FILE as a virtio-blk disk (/dev/vda, vdb, ...); may repeat
  --disk-ro FILE    the same, read-only (FILE need not be writable)
  --copy FILE       copy FILE in, as /run/sandbox/files/N/NAME for the Nth --copy (from 0);
                    may repeat (the sandbox cannot see the host's /tmp)
  --timeout SEC     kill the sandbox after SEC seconds and exit 124 (default 1800)
  --stall SEC       kill the sandbox and exit 123 when its kernel shows no sign of life for
                    SEC seconds (heartbeat, soft lockups; default 120, 0 = never)
  --env NAME=VALUE  set a variable for COMMAND; may repeat
  --timestamps      prefix each output line with the host-side elapsed time
  --verbose         show the sandbox kernel's boot messages (default: errors hidden)
  --build-dir DIR   sandbox initramfs cache (default $build_root/sandbox)
  --guest-dir DIR   Linux guest image, gives the kernel (default $build_root/guest)
COMMAND runs as root in a chroot of this host's root (read-only; the repository is
read-write; /tmp, /var/tmp, /run are empty tmpfs) with cwd = the current directory.
EOF
    exit "${1:-2}"
}

mem=3G
cpus=1
timeout=1800
stall=120
timestamps=0
klog="quiet loglevel=4"
# In a source tree the images live in the build directory. Installed by meson install
# (<prefix>/share/nvmevm/sandbox, no meson.build above it) they go to nvmevm's user cache,
# the directory `nvmevm cache` lists and cleans.
if [ -n "${NVMEVM_BUILD:-}" ] || [ -f "$repo/meson.build" ]; then
    build_root=${NVMEVM_BUILD:-$repo/build}
else
    build_root=${NVMEVM_CACHE_DIR:-${XDG_CACHE_HOME:-${HOME:-/nonexistent}/.cache}/nvmevm}
fi
build_dir=$build_root/sandbox
guest_dir=$build_root/guest
disks=()
disk_ro=() # "on" or "off" for each of disks
copies=()
envs=()
while [ $# -gt 0 ]; do
    opt=$1
    case $opt in
    --) shift; break ;;
    -h | --help) usage 0 ;;
    --timestamps) timestamps=1; shift; continue ;;
    --verbose) klog=; shift; continue ;;
    --*=*) val=${opt#*=}; opt=${opt%%=*}; shift ;;
    --*) [ $# -ge 2 ] || die "option $opt needs a value"; val=$2; shift 2 ;;
    *) echo "sandbox: error: expected options then -- COMMAND, got '$opt'" >&2; usage ;;
    esac
    case $opt in
    --mem) mem=$val ;;
    --cpus) cpus=$val ;;
    --disk) disks+=("$val"); disk_ro+=(off) ;;
    --disk-ro) disks+=("$val"); disk_ro+=(on) ;;
    --copy) copies+=("$val") ;;
    --timeout) timeout=$val ;;
    --stall) stall=$val ;;
    --env) envs+=("$val") ;;
    --build-dir) build_dir=$val ;;
    --guest-dir) guest_dir=$val ;;
    *) die "unknown option $opt (see --help)" ;;
    esac
done
[ $# -gt 0 ] || usage
case $cpus in 1 | 2) ;; *) die "--cpus must be 1 or 2, got '$cpus'" ;; esac
case $timeout in '' | *[!0-9]*) die "--timeout must be a number of seconds, got '$timeout'" ;; esac
case $stall in '' | *[!0-9]*) die "--stall must be a number of seconds, got '$stall'" ;; esac
for e in ${envs[@]+"${envs[@]}"}; do
    [[ $e =~ ^[A-Za-z_][A-Za-z0-9_]*= ]] || die "--env wants NAME=VALUE, got '$e'"
done
for d in ${disks[@]+"${disks[@]}"}; do
    [ -f "$d" ] || [ -b "$d" ] || die "--disk $d: no such file"
done
for f in ${copies[@]+"${copies[@]}"}; do
    [ -f "$f" ] && [ -r "$f" ] || die "--copy $f: no such readable file"
done
qemu_bin=$(command -v qemu-system-x86_64) || die "qemu-system-x86_64 not found (apt-get install qemu-system-x86)"

log "running inside QEMU TCG (nested SVM), $cpus vCPU, $mem, timeout ${timeout}s:$(printf ' %q' "$@")"
start=$EPOCHREALTIME

# --- images: the guest build provides the kernel and its modules -----------------
"$repo/guest-images/linux/build.sh" "$guest_dir" || die "guest image build failed ($guest_dir)"
kver=$(cat "$guest_dir/kernel-version")
moddir=$guest_dir/linux-pkg/lib/modules/$kver

mkdir -p "$build_dir"
build_dir=$(cd "$build_dir" && pwd)
cpio_img=$build_dir/sandbox.cpio
sandbox_modules=(irqbypass ccp kvm kvm-amd virtio_pci 9pnet_virtio 9p virtio_blk)

build_initramfs() {
    local busybox stage hash m applet
    busybox=$(command -v busybox) || die "busybox not found (apt-get install busybox-static)"
    hash=$({
        cat "$guest_dir/kernel-package"
        printf '%s\n' "${sandbox_modules[@]}"
        stat -L -c '%n %s %Y' "$busybox"
        cat "$here/init" "$repo/guest-images/linux/modorder.sh"
    } | sha256sum | awk '{ print $1 }')
    if [ -f "$cpio_img" ] && [ "$(cat "$build_dir/.stamp" 2>/dev/null)" = "$hash" ]; then
        return 0
    fi
    log "building the sandbox initramfs ($kver)"
    stage=$build_dir/.stage
    rm -rf "$stage"
    mkdir -p "$stage"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,etc,newroot}
    cp "$busybox" "$stage/bin/busybox"
    while read -r applet; do
        [ "$applet" = bin/busybox ] && continue
        ln -sf /bin/busybox "$stage/$applet"
    done < <("$busybox" --list-full)
    while read -r m; do
        mkdir -p "$stage/lib/modules/$kver/$(dirname "$m")"
        cp "$moddir/$m" "$stage/lib/modules/$kver/$m"
        echo "/lib/modules/$kver/$m" >>"$stage/etc/modules-load"
    done < <("$repo/guest-images/linux/modorder.sh" "$moddir" "${sandbox_modules[@]}")
    cp "$here/init" "$stage/init"
    chmod 755 "$stage/init"
    if [ "$(id -u)" = 0 ]; then
        mknod -m 600 "$stage/dev/console" c 5 1
    fi
    # Uncompressed: under TCG the kernel would spend seconds inflating.
    (cd "$stage" && find . -mindepth 1 -print0 | LC_ALL=C sort -z |
        cpio --null -o -H newc --owner=0:0 --quiet) >"$cpio_img.tmp"
    mv "$cpio_img.tmp" "$cpio_img"
    rm -rf "$stage"
    echo "$hash" >"$build_dir/.stamp"
}
(
    flock 9
    build_initramfs
) 9>"$build_dir/.lock"

# --- the control share: the command in, the exit status out ------------------------
ctl=$(mktemp -d "$build_dir/run.XXXXXX")
# shellcheck disable=SC2317 # called from the traps
cleanup() { rm -rf "$ctl" "$ctl.console" "$ctl.stalled" "$ctl.fifo" "$ctl.hb"; }
trap cleanup EXIT
trap 'cleanup; exit 130' INT
trap 'cleanup; exit 143' TERM

i=0
for f in ${copies[@]+"${copies[@]}"}; do
    mkdir -p "$ctl/files/$i"
    cp "$f" "$ctl/files/$i/" || die "--copy $f: cannot copy it"
    i=$((i + 1))
done
sq() { printf "'%s'" "${1//\'/\'\\\'\'}"; } # quote for sh
echo "REPO=$(sq "$repo")" >"$ctl/env"
{
    echo "# generated by tests/sandbox/run.sh"
    for v in PATH HOME USER LOGNAME LANG LANGUAGE LC_ALL LC_CTYPE TERM TZ CI; do
        if [ -n "${!v+x}" ]; then printf 'export %s=%q\n' "$v" "${!v}"; fi
    done
    while read -r v; do
        printf 'export %s=%q\n' "$v" "${!v}"
    done < <(compgen -e | grep '^NVMEVM_' || true)
    echo "export NVMEVM_SANDBOX=1 # tests may size their work for nested TCG"
    for e in ${envs[@]+"${envs[@]}"}; do
        printf 'export %s=%q\n' "${e%%=*}" "${e#*=}"
    done
    printf 'cd %q 2>/dev/null || { echo "sandbox: warning: %q is not visible inside, running in /"; cd /; }\n' \
        "$PWD" "$PWD"
    printf 'exec'
    printf ' %q' "$@"
    printf '\n'
} >"$ctl/cmd.sh"
case $PWD/ in
"$repo"/*) ;;
/tmp/* | /var/tmp/* | /run/* | /dev/* | /proc/* | /sys/*)
    log "warning: $PWD is hidden by a tmpfs inside the sandbox; COMMAND will run in /" ;;
esac

# --- QEMU --------------------------------------------------------------------------
qesc() { printf '%s' "${1//,/,,}"; } # commas are doubled inside QEMU option values
kernel=$guest_dir/vmlinuz
if [ -f "$guest_dir/vmlinux" ]; then
    kernel=$guest_dir/vmlinux # decompressed ELF, PVH entry: ~3 s faster under TCG
fi
qemu=("$qemu_bin" -accel tcg -cpu max -smp "$cpus" -m "$mem"
    -display none -nodefaults -no-reboot -no-user-config
    -chardev "stdio,id=con" -serial "chardev:con"
    -chardev "file,id=hb,path=$(qesc "$ctl.hb")" -serial "chardev:hb"
    -kernel "$kernel" -initrd "$cpio_img"
    -append "console=ttyS0 $klog reboot=k panic=-1 no_timer_check"
    -virtfs "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap"
    -virtfs "local,path=$(qesc "$repo"),mount_tag=repo,security_model=none,multidevs=remap"
    -virtfs "local,path=$(qesc "$ctl"),mount_tag=ctl,security_model=none")
if [ -f /usr/share/qemu/qboot.rom ]; then
    qemu+=(-bios /usr/share/qemu/qboot.rom) # no SeaBIOS banner, boots faster
fi
i=0
for d in ${disks[@]+"${disks[@]}"}; do
    qemu+=(-drive "file=$(qesc "$d"),if=none,id=disk$i,format=raw,readonly=${disk_ro[$i]}"
        -device "virtio-blk-pci,drive=disk$i")
    i=$((i + 1))
done

filter() {
    if [ "$timestamps" = 1 ]; then
        local line now
        while IFS= read -r line || [ -n "$line" ]; do
            now=$EPOCHREALTIME
            line=${line//$'\r'/}
            [[ $line =~ ^\[\ *[0-9.]+\]\ reboot:\ Power\ down$ ]] && continue
            [[ $line =~ ^\[\ *[0-9.]+\]\ kvm\ \[[0-9]+\]:\ vcpu[0-9]+,\ guest\ rIP:.*Unhandled ]] && continue
            printf '[%7.2f] %s\n' "$(awk -v a="$start" -v b="$now" 'BEGIN { print b - a }')" "$line"
        done
    else
        # Drop CRs (inner guests send \r\n) and the sandbox kernel's last words.
        # ... and the sandbox KVM's note about an MSR the inner guests probe (harmless).
        sed -u -e 's/\r//g' -e '/^\[ *[0-9.]*\] reboot: Power down$/d' \
            -e '/^\[ *[0-9.]*\] kvm \[[0-9]*\]: vcpu[0-9]*, guest rIP: .* Unhandled [RW][DR]MSR/d'
    fi
}

# QEMU's stdio chardev needs an open stdin (CI may run us with none).
if ! (exec 3<&0) 2>/dev/null; then
    exec </dev/null
fi

# Last words of the sandbox kernel (its log lines) for a report on a stuck sandbox.
kernel_messages() {
    grep -a -E '^(\[ *[0-9.]+\] )?\[ *[0-9]+\.[0-9]+\]' "$console" | tail -n 25 | sed 's/^/    /' || true
}

# The watchdog: a sandbox whose kernel stops (heartbeat from its init goes stale) or keeps
# reporting soft lockups is killed, since nothing inside it can time out any more.
stop_qemu() { # PID of the timeout(1) process that runs QEMU
    kill -TERM "$1" 2>/dev/null # timeout passes it on to QEMU
    sleep 5
    pkill -KILL -P "$1" 2>/dev/null
    kill -KILL "$1" 2>/dev/null
}
watchdog() {
    local qpid=$1 boot_start now hb shb lockups
    boot_start=$(date +%s)
    while kill -0 "$qpid" 2>/dev/null; do
        sleep 2
        now=$(date +%s)
        if [ ! -e "$ctl/started" ]; then
            if [ $((now - boot_start)) -gt $((stall + 60)) ]; then
                echo "no command started after $((now - boot_start)) s" >"$ctl.stalled"
                stop_qemu "$qpid"
            fi
            continue
        fi
        hb=$(stat -c %Y "$ctl/heartbeat" 2>/dev/null || stat -c %Y "$ctl/started")
        shb=$(stat -c %Y "$ctl.hb" 2>/dev/null || stat -c %Y "$ctl/started")
        lockups=$(grep -a -c -E 'soft lockup|self-detected stall|rcu_.*detected stalls' \
            "$console" 2>/dev/null)
        if [ $((now - hb)) -gt "$stall" ] || [ $((now - shb)) -gt "$stall" ] ||
            [ "${lockups:-0}" -ge 3 ]; then
            echo "heartbeat on the serial port $((now - shb)) s ago, over 9p $((now - hb)) s ago;" \
                "$lockups lockup reports" >"$ctl.stalled"
            stop_qemu "$qpid"
        fi
    done
}

run_qemu() {
    set +e
    rm -f "$ctl.stalled"
    if [ -t 0 ] && [ -t 1 ] && [ "$timestamps" = 0 ]; then
        # Interactive: the terminal goes to QEMU unfiltered (prompts without newlines).
        timeout --foreground -k 10 "$timeout" "${qemu[@]}"
        qemu_rc=$?
    else
        : >"$console"
        local fifo=$ctl.fifo
        rm -f "$fifo"
        mkfifo "$fifo"
        timeout -k 10 "$timeout" "${qemu[@]}" >"$fifo" 2>&1 </dev/null &
        local qpid=$!
        filter <"$fifo" | tee -a "$console" &
        local fpid=$!
        local wpid=
        if [ "$stall" -gt 0 ]; then
            watchdog "$qpid" &
            wpid=$!
        fi
        wait "$qpid"
        qemu_rc=$?
        wait "$fpid"
        [ -n "$wpid" ] && kill "$wpid" 2>/dev/null && wait "$wpid" 2>/dev/null
        rm -f "$fifo"
    fi
    set -e
}
console=$ctl.console
run_qemu
# A sandbox that died before starting COMMAND (a TCG timing hiccup in the kernel's
# boot, say) is booted once more: COMMAND has not run, so this is safe.
if [ "$qemu_rc" != 124 ] && [ "$qemu_rc" != 137 ] && [ ! -e "$ctl/started" ] &&
    [ ! -s "$ctl/status" ]; then
    log "warning: the sandbox stopped before starting COMMAND (QEMU exit $qemu_rc); booting it again"
    run_qemu
fi

elapsed=$(awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
if [ -s "$ctl.stalled" ]; then
    echo "sandbox: error: the sandbox kernel is stuck ($(cat "$ctl.stalled")), QEMU killed after ${elapsed}s; its last messages:" >&2
    kernel_messages >&2
    exit 123
fi
if [ "$qemu_rc" = 124 ] || [ "$qemu_rc" = 137 ]; then
    echo "sandbox: error: timed out after ${timeout}s, QEMU killed" >&2
    exit 124
fi
if [ ! -s "$ctl/status" ]; then
    echo "sandbox: error: the sandbox stopped without an exit status (QEMU exit $qemu_rc, after ${elapsed}s; see the output above)" >&2
    exit 125
fi
status=$(cat "$ctl/status")
log "done in ${elapsed}s, exit status $status"
exit "$status"
