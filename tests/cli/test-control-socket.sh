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
expect_refusal name-with-slash "without '/'" \
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

# ---- The client side, against stand-ins (tests/cli/fake_control.py): no KVM needed. ----
fake() { # fake SOCKET MODE: starts a stand-in, waits until it listens; sets FAKE_PID
    python3 "$TESTS_DIR/cli/fake_control.py" "$1" "$2" >"$1.out" 2>&1 &
    FAKE_PID=$!
    wait_for "$1.out" ready 30
}

# Every client call has a timeout: a socket that accepts and never answers.
fake "$TEST_TMP/silent.sock" silent
silent_pid=$FAKE_PID
start=$SECONDS
expect_refusal ctl-times-out "no answer within 1 s" \
    "$NVMEVM" ctl --socket "$TEST_TMP/silent.sock" --timeout 1 status
t_check cli/ctl-timeout-is-prompt "took $((SECONDS - start)) s" [ $((SECONDS - start)) -le 5 ]
expect_refusal migrate-cancel-times-out "no answer within 10 s" \
    "$NVMEVM" migrate --cancel --socket "$TEST_TMP/silent.sock"
kill "$silent_pid" 2>/dev/null
expect_refusal ctl-bad-timeout "--timeout abc: expected seconds from 1 to 3600" \
    "$NVMEVM" ctl --socket "$TEST_TMP/silent.sock" --timeout abc status
expect_refusal ctl-no-socket "No such file or directory" \
    "$NVMEVM" ctl --socket "$TEST_TMP/none.sock" status

# Greeting and events before a reply are skipped; ids come back.
fake "$TEST_TMP/vm.sock" vm
vm_pid=$FAKE_PID
rep=$("$NVMEVM" ctl --socket "$TEST_TMP/vm.sock" status 2>&1)
t_check cli/ctl-skips-greeting-and-events "reply: $rep" grep -q '^{"ok": true, "state": "running"' <<<"$rep"
# migrate --cancel tells the truth: the VM said no.
expect_refusal migrate-cancel-honest "migrate --cancel: no migration is running" \
    "$NVMEVM" migrate --cancel --socket "$TEST_TMP/vm.sock"

# nvmevm list and the lone VM: a leftover socket of a dead VM is skipped.
xdg="$TEST_TMP/xdg"
mkdir -p -m 0700 "$xdg/nvmevm"
python3 -c 'import socket, sys; s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1])' \
    "$xdg/nvmevm/dead.sock"
expect_refusal lone-vm-none "no running nvmevm found in $xdg/nvmevm" \
    env XDG_RUNTIME_DIR="$xdg" "$NVMEVM" ctl status
expect_refusal migrate-lone-vm-none "no running nvmevm found" \
    env XDG_RUNTIME_DIR="$xdg" "$NVMEVM" migrate tcp:127.0.0.1:4444
fake "$xdg/nvmevm/alpha.sock" vm
alpha=$FAKE_PID
rep=$(XDG_RUNTIME_DIR="$xdg" "$NVMEVM" ctl status 2>&1)
t_check cli/ctl-finds-lone-vm "reply: $rep" grep -q '"state": "running"' <<<"$rep"
out=$(XDG_RUNTIME_DIR="$xdg" "$NVMEVM" list 2>&1)
t_check cli/list "list: $out" python3 -c 'import sys
lines = sys.argv[1].splitlines()
assert lines[0].split() == ["NAME", "PID", "STATE", "SOCKET"], lines
rows = [l.split() for l in lines[1:]]
assert rows == [["alpha", sys.argv[2], "running", sys.argv[3]]], rows' "$out" "$alpha" "$xdg/nvmevm/alpha.sock"
fake "$xdg/nvmevm/beta.sock" vm
beta=$FAKE_PID
expect_refusal lone-vm-several "several VMs are running" env XDG_RUNTIME_DIR="$xdg" "$NVMEVM" ctl status
expect_refusal migrate-several "several VMs are running" \
    env XDG_RUNTIME_DIR="$xdg" "$NVMEVM" migrate --cancel
out=$(XDG_RUNTIME_DIR="$xdg" "$NVMEVM" list 2>&1)
t_check cli/list-two "list: $out" [ "$(grep -c running <<<"$out")" -eq 2 ]
for p in "$alpha" "$beta" "$vm_pid"; do kill "$p" 2>/dev/null; done

# nvmevm migrate checks its destination and every number before it asks the VM anything
# (no VM is needed to see these refused).
for bad in "tcp:host:0|port '0' is not a number from 1 to 65535" \
    "tcp:host:65536|port '65536' is not a number from 1 to 65535" \
    "tcp:host:http|port 'http' is not a number" "tcp:host:|missing port" \
    "udp:host:1|expected tcp:HOST:PORT" "tcp:host:-1|port '-1'"; do
    expect_refusal "migrate-uri-${bad%%|*}" "migrate: ${bad%%|*}: ${bad#*|}" \
        "$NVMEVM" migrate --socket "$TEST_TMP/none.sock" "${bad%%|*}"
done
for bad in "--downtime-ms|abc|expected a whole number" "--downtime-ms|-5|expected a whole number" \
    "--downtime-ms|4294967296|expected a whole number from 0 to 4294967295" "--timeout-s|-1|expected a whole number" \
    "--timeout-s|1x|expected a whole number" "--max-bandwidth|-5|expected bytes/s" \
    "--max-bandwidth|fast|expected bytes/s" "--migrate-timeout|0|expected seconds from 1 to 86400"; do
    IFS='|' read -r opt val msg <<<"$bad"
    expect_refusal "migrate-${opt#--}-$val" "$opt $val: $msg" \
        "$NVMEVM" migrate --socket "$TEST_TMP/none.sock" "$opt" "$val" tcp:127.0.0.1:4444
done
expect_refusal migrate-cancel-with-uri "takes no destination" \
    "$NVMEVM" migrate --cancel --socket "$TEST_TMP/none.sock" tcp:127.0.0.1:4444
expect_refusal incoming-timeout-without-incoming "apply to --incoming" \
    "$NVMEVM" run --kernel "$TINY" --no-stdin --incoming-timeout 5
expect_refusal incoming-timeout-zero "--incoming-timeout 0: expected a number" \
    "$NVMEVM" run --incoming tcp:127.0.0.1:4444 --incoming-timeout 0
