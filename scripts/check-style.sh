#!/bin/bash
# Checks every tracked C file against the repo's .clang-format (clang-format 14) without
# changing anything; prints each violation and exits non-zero if there is one.
# To fix: scripts/check-style.sh --fix (rewrites the files in place).
set -euo pipefail
cd "$(dirname "$0")/.."
CF=${CLANG_FORMAT:-$(command -v clang-format-14 || command -v clang-format || true)}
[ -n "$CF" ] || { echo "check-style: clang-format not found (apt-get install clang-format)"; exit 2; }
mapfile -t files < <(git ls-files '*.c' '*.h')
if [ "${1:-}" = "--fix" ]; then
    "$CF" -i --style=file "${files[@]}"
    exit 0
fi
if "$CF" --dry-run -Werror --style=file "${files[@]}"; then
    echo "check-style: ${#files[@]} files formatted as .clang-format says"
else
    echo "check-style: run scripts/check-style.sh --fix"
    exit 1
fi
