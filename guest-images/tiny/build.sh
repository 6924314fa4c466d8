#!/bin/sh
# Build the tiny test guest with explicit flags (independent of the project's
# meson options such as b_sanitize): build.sh OUTPUT WORKDIR SOURCES...
# Produces OUTPUT (ELF32 i386 multiboot image) and WORKDIR/tiny64.elf (symbols).
set -eu
out=$1
work=$2
shift 2
here=$(cd "$(dirname "$0")" && pwd)
CC=${TINY_CC:-gcc}
LD=${TINY_LD:-ld}
OBJCOPY=${TINY_OBJCOPY:-objcopy}

CFLAGS="-m64 -O2 -std=gnu11 -g -Wall -Wextra -ffreestanding -fno-builtin -fno-pic -fno-pie
 -fno-stack-protector -fno-stack-clash-protection -fcf-protection=none
 -fno-asynchronous-unwind-tables -fno-unwind-tables -fno-tree-loop-distribute-patterns
 -mgeneral-regs-only -mno-red-zone -mcmodel=small -I$here"

mkdir -p "$work"
objs=""
for src in "$@"; do
    case $src in
    *.c | *.S) ;;
    *) continue ;;
    esac
    obj="$work/$(basename "$src").o"
    # shellcheck disable=SC2086
    $CC $CFLAGS -c "$src" -o "$obj"
    objs="$objs $obj"
done
# One RWX segment is intended; binutils >= 2.39 would warn about it.
ldflags="-nostdlib -static -z max-page-size=0x1000 -z noexecstack"
if $LD --help 2>/dev/null | grep -q -- --no-warn-rwx-segments; then
    ldflags="$ldflags --no-warn-rwx-segments"
fi
# shellcheck disable=SC2086
$LD $ldflags -T "$here/linker.ld" -o "$work/tiny64.elf" $objs
$OBJCOPY -O elf32-i386 --strip-debug "$work/tiny64.elf" "$out.tmp"
mv "$out.tmp" "$out"
