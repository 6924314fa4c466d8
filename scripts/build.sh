#!/bin/bash
# Configures (once) and builds nvmevm, its unit tests and the tiny test guest in ./build,
# then the default Linux guest image in ./build/guest (cached: rebuilt only on changes).
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${NVMEVM_BUILD:-$REPO/build}
cd "$REPO"
if [ ! -f "$BUILD/build.ninja" ]; then
    echo "build: configuring $BUILD"
    meson setup "$BUILD" >/dev/null
fi
echo "build: compiling"
ninja -C "$BUILD" >/dev/null || { ninja -C "$BUILD"; exit 1; }
if [ "${1:-}" != "--no-guest" ]; then
    "$REPO/guest-images/linux/build.sh" "$BUILD/guest"
fi
