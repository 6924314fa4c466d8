#!/bin/bash
# Installs everything nvmevm needs to build, test and benchmark, from Debian's archive.
# Quick when everything is already there (no apt-get update then).
set -euo pipefail

PACKAGES=(
    build-essential meson ninja-build pkg-config clang-format
    linux-libc-dev liburing-dev libnvme-dev libjson-c-dev liblzma-dev libcriterion-dev
    libgnutls28-dev gnutls-bin libseccomp-dev clang
    qemu-system-x86 busybox-static cpio lz4 kmod
    fio nvme-cli util-linux procps man-db
    python3 python3-matplotlib
)

missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
    echo "install-deps: all ${#PACKAGES[@]} packages present"
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: need root to install: ${missing[*]}" >&2
    exit 1
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-deps: done"
