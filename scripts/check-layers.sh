#!/bin/bash
# Checks the folders' dependency order over the `#include "dir/..."` lines of every C file:
#   util 0 <- block 1 <- emu 2, hw 2 <- kvm 3 <- migrate 4 <- app 5
# A file may include its own folder and any folder of a lower rank; emu and hw (same rank)
# must not include each other. Prints every back-edge as FILE:LINE: FROM -> TO and exits 1
# if there is one. tests/ and guest-images/ are exempt.
set -euo pipefail
cd "$(dirname "$0")/.."
declare -A rank=([util]=0 [block]=1 [emu]=2 [hw]=2 [kvm]=3 [migrate]=4 [app]=5)
bad=0
files=0
while IFS= read -r f; do
    files=$((files + 1))
    from=${f%%/*}
    while IFS=: read -r line inc; do
        to=${inc%%/*}
        [ "$to" = "$from" ] && continue
        if [ -z "${rank[$to]:-}" ]; then
            echo "$f:$line: includes \"$inc\" from an unknown folder"
            bad=1
        elif [ "${rank[$to]}" -ge "${rank[$from]}" ]; then
            echo "$f:$line: $from (rank ${rank[$from]}) -> $to (rank ${rank[$to]}): \"$inc\""
            bad=1
        fi
    done < <(grep -n '^[[:space:]]*#[[:space:]]*include[[:space:]]*"[a-z_]*/' "$f" |
             sed 's/^\([0-9]*\):[^"]*"\([^"]*\)".*/\1:\2/' || true)
done < <(for d in "${!rank[@]}"; do [ -d "$d" ] && find "$d" -name '*.[ch]'; done | sort)
if [ "$bad" -ne 0 ]; then
    echo "check-layers: back-edges found (ranks: util 0, block 1, emu/hw 2, kvm 3, migrate 4, app 5)"
    exit 1
fi
echo "check-layers: $files files, no back-edges (util 0 <- block 1 <- emu, hw 2 <- kvm 3 <- migrate 4 <- app 5)"
