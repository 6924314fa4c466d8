#!/bin/bash
# The control socket's path is checked before /dev/kvm is opened: --control never replaces
# what is not a stale socket, the default directory is used only if it is ours, and a path
# too long for a socket is refused in one line rather than cut short.
set -uo pipefail
. "$(dirname "$0")/../lib.sh"

# expect_refusal NAME PATTERN CMD...: non-zero status, one stderr line matching PATTERN.
expect_refusal() {
    local name=$1 pattern=$2
    shift 2
    local err="$TEST_TMP/$name.err" rc=0
    timeout 30 "$@" >/dev/null 2>"$err" </dev/null || rc=$?
    if [ "$rc" -eq 0 ] || [ "$rc" -ge 124 ] || [ "$(grep -c . "$err")" -ne 1 ] ||
        ! grep -q -- "$pattern" "$err"; then
        t_fail "cli/$name" "status $rc, stderr: $(head -c 300 "$err")"
    else
        t_pass "cli/$name"
    fi
}

echo precious >"$TEST_TMP/file"
expect_refusal control-onto-file "exists and is not a socket" \
    "$NVMEVM" run --kernel "$TINY" --no-stdin --control "$TEST_TMP/file"
t_check cli/control-file-untouched "the file was replaced" grep -qx precious "$TEST_TMP/file"
mkdir -p "$TEST_TMP/dir"
expect_refusal control-onto-dir "exists and is not a socket" \
    "$NVMEVM" run --kernel "$TINY" --no-stdin --control "$TEST_TMP/dir"
ln -sf "$TEST_TMP/file" "$TEST_TMP/link"
expect_refusal control-onto-symlink "exists and is not a socket" \
    "$NVMEVM" run --kernel "$TINY" --no-stdin --control "$TEST_TMP/link"
t_check cli/control-symlink-untouched "the symlink was replaced" [ -L "$TEST_TMP/link" ]
long=$(printf 'd%.0s' $(seq 120))
expect_refusal control-path-too-long "too long for a socket path" \
    "$NVMEVM" run --kernel "$TINY" --no-stdin --control "$TEST_TMP/$long.sock"
expect_refusal xdg-too-long "too long for a socket path" \
    env XDG_RUNTIME_DIR="$TEST_TMP/$long" "$NVMEVM" run --kernel "$TINY" --no-stdin
expect_refusal name-with-slash "contain no '/'" \
    "$NVMEVM" run --kernel "$TINY" --no-stdin --name ../../etc/x

# The /tmp/nvmevm-UID fallback of a user without XDG_RUNTIME_DIR: someone else may have
# made it first. Runs as user nobody, whose fallback directory this test owns.
if [ "$(id -u)" -eq 0 ] && command -v setpriv >/dev/null; then
    cp "$NVMEVM" "$TEST_TMP/nvmevm-copy" && cp "$TINY" "$TEST_TMP/tiny.elf" &&
        chmod 755 "$TEST_TMP" "$TEST_TMP/nvmevm-copy" && chmod 644 "$TEST_TMP/tiny.elf"
    nobody=(env -u XDG_RUNTIME_DIR setpriv --reuid=65534 --regid=65534 --clear-groups
        "$TEST_TMP/nvmevm-copy" run --kernel "$TEST_TMP/tiny.elf" --no-stdin)
    fb=/tmp/nvmevm-65534
    if [ -e "$fb" ] || [ -L "$fb" ]; then
        t_skip cli/fallback-dir "$fb exists already; not touching it"
    else
        mkdir -m 0700 "$fb"
        expect_refusal fallback-dir-not-ours "owned by uid 0" "${nobody[@]}"
        chown 65534:65534 "$fb" && chmod 0755 "$fb"
        expect_refusal fallback-dir-open-mode "mode 0755, want 0700" "${nobody[@]}"
        rmdir "$fb" && mkdir -m 0700 "$TEST_TMP/elsewhere" && chown 65534 "$TEST_TMP/elsewhere"
        ln -s "$TEST_TMP/elsewhere" "$fb"
        expect_refusal fallback-dir-symlink "not a directory" "${nobody[@]}"
        rm -f "$fb"
    fi
else
    t_skip cli/fallback-dir "needs root to run as another user"
fi
