#!/bin/bash
# build.sh OUTDIR -- build nvmevm's default Linux guest from Debian packages.
#
# Writes:
#   OUTDIR/vmlinuz          bzImage of Debian's linux-image-<abi>-amd64 (the ABI
#                           linux-image-amd64 currently depends on)
#   OUTDIR/vmlinux          the same kernel decompressed (ELF with a PVH entry note):
#                           QEMU boots it ~3 s faster under TCG than the bzImage
#   OUTDIR/initrd.img       cpio newc, lz4 legacy format: busybox, nvme modules,
#                           fio, nvme-cli (+ shared libraries), /init, /scripts
#   OUTDIR/initrd-base.img  the same without fio (~1/10 the size, boots faster)
#   OUTDIR/kernel-version   e.g. 6.1.0-56-amd64
#   OUTDIR/kernel-package   "<package> <version>"
#   OUTDIR/linux-pkg/       the extracted kernel package (boot/, lib/modules/<ver>/
#                           with modules.dep), reused by tests/sandbox/run.sh
#
# Nothing is installed on the host. The work is skipped when the inputs (package
# versions, the host binaries copied in, this script, init, scripts/) are unchanged.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

log() { echo "guest-image: $*"; }
die() { echo "guest-image: error: $*" >&2; exit 1; }

if [ $# -ne 1 ] || [ "${1#-}" != "$1" ]; then
    echo "usage: $0 OUTDIR" >&2
    exit 2
fi

for tool in apt-get apt-cache dpkg-deb cpio lz4 ldd sha256sum flock awk; do
    command -v "$tool" >/dev/null || die "'$tool' not found (install it; see scripts/install-deps.sh)"
done

mkdir -p "$1"
out=$(cd "$1" && pwd)

# One builder at a time per OUTDIR (parallel test runs share it).
exec 9>"$out/.lock"
flock 9

find_tool() { # find_tool NAME -> path of a host binary, also in sbin dirs
    PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin" command -v "$1" 2>/dev/null
}

busybox=$(find_tool busybox) || die "busybox not found (apt-get install busybox-static)"
if ldd "$busybox" >/dev/null 2>&1; then
    die "$busybox is dynamically linked (apt-get install busybox-static)"
fi
fio=$(find_tool fio) || die "fio not found (apt-get install fio)"
nvmecli=$(find_tool nvme) || die "nvme not found (apt-get install nvme-cli)"
depmod=$(find_tool depmod || true)

# --- which kernel -------------------------------------------------------------
# The metapackage depends on the current ABI's package, e.g.
# "Depends: linux-image-6.1.0-56-amd64 (= 6.1.192-2)" (same as apt-cache depends).
read -r kpkg kpkgver < <(apt-cache show --no-all-versions linux-image-amd64 2>/dev/null |
    awk '/^Depends:/ {
        sub(/^Depends: */, "")
        n = split($0, d, /[,|]/)
        for (i = 1; i <= n; i++)
            if (match(d[i], /linux-image-[0-9][^ ]*/)) {
                p = substr(d[i], RSTART, RLENGTH); v = ""
                if (match(d[i], /\(= [^)]+\)/)) v = substr(d[i], RSTART + 3, RLENGTH - 4)
                print p, v; exit
            }
    }') || true
if [ -n "${kpkg:-}" ] && [ -z "${kpkgver:-}" ]; then
    kpkgver=$(apt-cache show --no-all-versions "$kpkg" 2>/dev/null |
        awk '$1 == "Version:" { print $2; exit }') || true
fi
if [ -z "${kpkg:-}" ] || [ -z "${kpkgver:-}" ]; then
    if [ -f "$out/kernel-package" ] && [ -d "$out/linux-pkg" ]; then
        read -r kpkg kpkgver <"$out/kernel-package"
        log "warning: apt-cache cannot resolve linux-image-amd64; reusing cached $kpkg $kpkgver"
    else
        die "apt-cache cannot resolve linux-image-amd64 (run apt-get update)"
    fi
fi
kver=${kpkg#linux-image-}

# --- the kernel package (download + extract once per package version) -----------
pkgdir=$out/linux-pkg
if [ "$(cat "$pkgdir/.pkg" 2>/dev/null)" != "$kpkg $kpkgver" ]; then
    log "downloading $kpkg ($kpkgver)"
    scratch=$(mktemp -d "$out/.dl.XXXXXX")
    trap 'rm -rf "$scratch"' EXIT
    if ! (cd "$scratch" && apt-get download -q "$kpkg=$kpkgver") >"$scratch/apt.log" 2>&1; then
        cat "$scratch/apt.log" >&2
        die "apt-get download $kpkg=$kpkgver failed"
    fi
    log "extracting $kpkg"
    dpkg-deb -x "$scratch"/*.deb "$scratch/pkg"
    [ -f "$scratch/pkg/boot/vmlinuz-$kver" ] || die "$kpkg has no boot/vmlinuz-$kver"
    [ -d "$scratch/pkg/lib/modules/$kver" ] || die "$kpkg has no lib/modules/$kver"
    # The package ships no modules.dep (the postinst runs depmod): make it here.
    if [ -n "$depmod" ]; then
        "$depmod" -b "$scratch/pkg" "$kver"
    else
        "$busybox" depmod -b "$scratch/pkg" "$kver"
    fi
    [ -s "$scratch/pkg/lib/modules/$kver/modules.dep" ] || die "depmod wrote no modules.dep"
    echo "$kpkg $kpkgver" >"$scratch/pkg/.pkg"
    rm -rf "$pkgdir"
    mv "$scratch/pkg" "$pkgdir"
    rm -rf "$scratch"
    trap - EXIT
fi
moddir=$pkgdir/lib/modules/$kver

# --- inputs of the initramfs --------------------------------------------------
guest_modules=(nvme)
mapfile -t mods < <("$here/modorder.sh" "$moddir" "${guest_modules[@]}")

# Shared libraries as the dynamic linker names them (ldd paths, e.g. /lib64/ld-linux...).
libs_of() {
    ldd "$@" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\/.*[^:]$/ { print $1 }' | sort -u
}
mapfile -t base_libs < <(libs_of "$nvmecli")
mapfile -t fio_libs < <(comm -23 <(libs_of "$fio") <(printf '%s\n' "${base_libs[@]}"))
if [ ${#base_libs[@]} = 0 ] || [ ${#fio_libs[@]} = 0 ]; then
    die "ldd found no libraries for $nvmecli / $fio"
fi
libs=("${base_libs[@]}" "${fio_libs[@]}")

scripts=("$here"/scripts/*.sh)
inputs_hash=$(
    {
        echo "$kpkg $kpkgver"
        printf '%s\n' "${mods[@]}" "${libs[@]}"
        sha256sum "${BASH_SOURCE[0]}" "$here/modorder.sh" "$here/init" "${scripts[@]}" |
            awk '{ print $1 }'
        # Host binaries: identified by size and mtime (hashing ~90 MB costs ~0.4 s).
        stat -L -c '%n %s %Y' "$busybox" "$fio" "$nvmecli" "${libs[@]}"
    } | sha256sum | awk '{ print $1 }'
)

if [ "$(cat "$out/.stamp" 2>/dev/null)" = "$inputs_hash" ] &&
    [ -f "$out/vmlinuz" ] && [ -f "$out/initrd.img" ] && [ -f "$out/initrd-base.img" ]; then
    log "up to date ($kpkg, $out)"
    exit 0
fi

# --- stage the initramfs: base part + fio part ------------------------------------
stage=$out/.initramfs
rm -rf "$stage"
trap 'rm -rf "$stage"' EXIT
base=$stage/base
fiost=$stage/fio
mkdir -p "$base"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,tmp,run,etc,scripts} "$fiost/usr/bin"

cp "$busybox" "$base/bin/busybox"
while read -r applet; do
    [ "$applet" = bin/busybox ] && continue
    mkdir -p "$base/$(dirname "$applet")"
    ln -sf /bin/busybox "$base/$applet"
done < <("$busybox" --list-full)

for m in "${mods[@]}"; do
    mkdir -p "$base/lib/modules/$kver/$(dirname "$m")"
    cp "$moddir/$m" "$base/lib/modules/$kver/$m"
    echo "/lib/modules/$kver/$m" >>"$base/etc/modules-load"
done
# A modules.dep for the packed subset, so busybox modprobe works too.
cp "$moddir"/modules.order "$moddir"/modules.builtin "$moddir"/modules.builtin.modinfo \
    "$base/lib/modules/$kver/"
if [ -n "$depmod" ]; then
    "$depmod" -b "$base" "$kver"
fi

copy_libs() { # copy_libs DESTROOT LIB...
    local dest=$1 lib
    shift
    for lib in "$@"; do
        mkdir -p "$dest/$(dirname "$lib")"
        cp -L "$lib" "$dest/$lib"
    done
}
cp "$nvmecli" "$base/usr/sbin/nvme"
copy_libs "$base" "${base_libs[@]}"
cp "$fio" "$fiost/usr/bin/fio"
copy_libs "$fiost" "${fio_libs[@]}"

cp "$here/init" "$base/init"
chmod 755 "$base/init"
for s in "${scripts[@]}"; do
    cp "$s" "$base/scripts/"
done
chmod 755 "$base"/scripts/*.sh
echo "$kver" >"$base/etc/kernel-version"
# The kernel opens /dev/console before running /init; /init copes without it.
if [ "$(id -u)" = 0 ]; then
    mknod -m 600 "$base/dev/console" c 5 1
fi

pack() { # pack DIR OUTFILE: cpio newc, lz4 legacy format (the kernel's lz4 loader)
    (cd "$1" && find . -mindepth 1 -print0 | LC_ALL=C sort -z |
        cpio --null -o -H newc --owner=0:0 --quiet) | lz4 -l -9 -q >"$2"
}
size_mb=$(du -smc "$base" "$fiost" | awk 'END { print $1 }')
log "packing initramfs ($size_mb MB)"
pack "$base" "$stage/base.img" &
pack "$fiost" "$stage/fio.img"
wait $! || die "packing the base initramfs failed"
# The kernel unpacks concatenated archives in turn: full image = base + fio.
cat "$stage/base.img" "$stage/fio.img" >"$out/initrd.img.tmp"
mv "$stage/base.img" "$out/initrd-base.img.tmp"
cp "$pkgdir/boot/vmlinuz-$kver" "$out/vmlinuz.tmp"
mv "$out/vmlinuz.tmp" "$out/vmlinuz"
# Debian's bzImage holds an xz stream: unpack it once here instead of at every boot.
rm -f "$out/vmlinux"
xzoff=$(LC_ALL=C grep -obUaP '\xfd7zXZ\x00' "$out/vmlinuz" | head -n 1 | cut -d: -f1) || true
if [ -n "$xzoff" ] && command -v xz >/dev/null; then
    tail -c +$((xzoff + 1)) "$out/vmlinuz" | xz -dcq >"$out/vmlinux.tmp" 2>/dev/null || true
    if [ "$(head -c 4 "$out/vmlinux.tmp" | od -An -tx1 | tr -d ' ')" = 7f454c46 ]; then
        mv "$out/vmlinux.tmp" "$out/vmlinux"
    fi
    rm -f "$out/vmlinux.tmp"
fi
[ -f "$out/vmlinux" ] || log "warning: could not unpack vmlinux from the bzImage (not xz?)"
mv "$out/initrd.img.tmp" "$out/initrd.img"
mv "$out/initrd-base.img.tmp" "$out/initrd-base.img"
echo "$kver" >"$out/kernel-version"
echo "$kpkg $kpkgver" >"$out/kernel-package"
rm -rf "$stage"
trap - EXIT
echo "$inputs_hash" >"$out/.stamp"
mb() { du -m "$1" | awk '{ print $1 }'; }
log "done: $out/vmlinuz ($kver), initrd.img $(mb "$out/initrd.img") MB, initrd-base.img $(mb "$out/initrd-base.img") MB"
