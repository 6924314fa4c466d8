#!/bin/bash
# without-kvm.sh COMMAND...: runs COMMAND (as root) in a private mount namespace whose /dev
# has no kvm node, as on our CI hosts. For trying the no-KVM paths on a host that has one.
set -euo pipefail
[ "$(id -u)" -eq 0 ] || { echo "without-kvm: needs root (mount namespace)" >&2; exit 2; }
[ $# -gt 0 ] || { echo "usage: $0 COMMAND [ARG...]" >&2; exit 2; }
exec unshare -m bash -c '
    set -e
    mount --make-rprivate /
    new=$(mktemp -d /run/nokvm-dev.XXXXXX)
    mount -t tmpfs -o mode=755 tmpfs "$new"
    for n in /dev/* /dev/.[!.]*; do
        [ -e "$n" ] || [ -L "$n" ] || continue
        b=${n#/dev/}
        [ "$b" = kvm ] && continue
        if [ -d "$n" ] && [ ! -L "$n" ]; then
            mkdir "$new/$b" && mount --rbind "$n" "$new/$b"
        else
            cp -a "$n" "$new/$b"
        fi
    done
    mount --move "$new" /dev
    rmdir "$new" 2>/dev/null || true
    exec "$@"' without-kvm "$@"
