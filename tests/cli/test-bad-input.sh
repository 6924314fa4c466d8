#!/bin/bash
# Bad input gives one clear line on stderr and a non-zero exit, never a crash.
set -uo pipefail
. "$(dirname "$0")/../lib.sh"

# expect_error NAME PATTERN CMD...: exit status 1 or 2, stderr one line matching PATTERN.
expect_error() {
    local name=$1 pattern=$2
    shift 2
    local err="$TEST_TMP/$name.err"
    local rc=0
    timeout 30 "$@" >/dev/null 2>"$err" </dev/null || rc=$?
    local lines
    lines=$(grep -c . "$err")
    if [ "$rc" -eq 0 ] || [ "$rc" -ge 124 ]; then
        t_fail "cli/$name" "exit status $rc (want a small non-zero status): $(head -c 300 "$err")"
    elif [ "$lines" -ne 1 ]; then
        t_fail "cli/$name" "stderr has $lines lines (want 1): $(head -c 300 "$err")"
    elif ! grep -q -- "$pattern" "$err"; then
        t_fail "cli/$name" "stderr '$(cat "$err")' does not match '$pattern'"
    else
        t_pass "cli/$name"
    fi
}

expect_error missing-kernel "nvmevm: $TEST_TMP/nope: No such file or directory" \
    "$NVMEVM" run --kernel "$TEST_TMP/nope"

# A file that looks like a bzImage but is not: right magic, broken fields.
make_image() { # make_image FILE VERSION XLOADFLAGS
    head -c 65536 /dev/zero >"$1"
    printf '\x04' | dd of="$1" bs=1 seek=$((0x1f1)) conv=notrunc status=none
    printf '\x55\xaa\xeb\x66HdrS' | dd of="$1" bs=1 seek=$((0x1fe)) conv=notrunc status=none
    printf "$2" | dd of="$1" bs=1 seek=$((0x206)) conv=notrunc status=none
    printf "$3" | dd of="$1" bs=1 seek=$((0x236)) conv=notrunc status=none
}
make_image "$TEST_TMP/old.bz" '\x0b\x02' '\x7f'
expect_error old-protocol "too old" "$NVMEVM" run --kernel "$TEST_TMP/old.bz"
make_image "$TEST_TMP/no64.bz" '\x0f\x02' '\x00'
expect_error no-64bit-entry "no 64-bit entry point" "$NVMEVM" run --kernel "$TEST_TMP/no64.bz"
head -c 4096 /dev/urandom >"$TEST_TMP/random.bin"
expect_error random-kernel "not a bzImage" "$NVMEVM" run --kernel "$TEST_TMP/random.bin"
if [ -f "$GUEST_DIR/vmlinuz" ]; then
    head -c 3000 "$GUEST_DIR/vmlinuz" >"$TEST_TMP/truncated.bz"
    expect_error truncated-kernel "truncated" "$NVMEVM" run --kernel "$TEST_TMP/truncated.bz"
else
    t_skip cli/truncated-kernel "default guest not built ($GUEST_DIR/vmlinuz)"
fi
: >"$TEST_TMP/empty"
expect_error empty-kernel "empty" "$NVMEVM" run --kernel "$TEST_TMP/empty"

expect_error mem-zero "--mem 0: too small" "$NVMEVM" run --kernel "$TINY" --mem 0
expect_error mem-absurd "more than this host" "$NVMEVM" run --kernel "$TINY" --mem 100T
expect_error mem-junk "expected a size" "$NVMEVM" run --kernel "$TINY" --mem lots
expect_error cpus-zero "--cpus 0" "$NVMEVM" run --kernel "$TINY" --cpus 0
expect_error cpus-absurd "--cpus 65" "$NVMEVM" run --kernel "$TINY" --cpus 65
expect_error missing-initrd "No such file" "$NVMEVM" run --kernel "$GUEST_DIR/vmlinuz" \
    --initrd "$TEST_TMP/nope.img"

# Without access to /dev/kvm (an unprivileged user): one line naming /dev/kvm.
if [ -e /dev/kvm ] && [ "$(id -u)" -eq 0 ] && command -v setpriv >/dev/null; then
    cp "$NVMEVM" "$TEST_TMP/nvmevm-copy" && chmod 755 "$TEST_TMP" "$TEST_TMP/nvmevm-copy"
    if setpriv --reuid=65534 --regid=65534 --clear-groups test -r /dev/kvm; then
        t_skip cli/no-kvm-access "user nobody can open /dev/kvm on this host"
    else
        expect_error no-kvm-access "/dev/kvm: Permission denied" \
            setpriv --reuid=65534 --regid=65534 --clear-groups env XDG_RUNTIME_DIR=/tmp \
            "$TEST_TMP/nvmevm-copy" run --kernel "$TINY"
    fi
else
    t_skip cli/no-kvm-access "needs root, /dev/kvm and setpriv to run as an unprivileged user"
fi

# Disks: missing, unreadable, locked by another nvmevm, bad options.
expect_error disk-missing "nvmevm: $TEST_TMP/nodisk.img: No such file or directory" \
    "$NVMEVM" run --kernel "$TINY" "$TEST_TMP/nodisk.img"
mkdir -p "$TEST_TMP/adir"
expect_error disk-is-directory "adir" "$NVMEVM" run --kernel "$TINY" "$TEST_TMP/adir"
expect_error disk-bad-option "unknown option 'fast'" \
    "$NVMEVM" run --kernel "$TINY" --disk "$TEST_TMP/x.img,fast"
truncate -s 16M "$TEST_TMP/locked.img"
"$NVMEVM" run --kernel "$TINY" --mem 64M --no-stdin --append "test=ring3 iters=100000000000" \
    "$TEST_TMP/locked.img" >/dev/null 2>&1 </dev/null &
holder=$!
sleep 0.5
expect_error disk-locked "locked by another process" \
    "$NVMEVM" run --kernel "$TINY" "$TEST_TMP/locked.img"
kill "$holder" 2>/dev/null
wait "$holder" 2>/dev/null
if [ "$(id -u)" -eq 0 ] && command -v setpriv >/dev/null; then
    truncate -s 16M "$TEST_TMP/private.img" && chmod 600 "$TEST_TMP/private.img"
    expect_error disk-unreadable "private.img: Permission denied" \
        setpriv --reuid=65534 --regid=65534 --clear-groups "$TEST_TMP/nvmevm-copy" run \
        --kernel "$TINY" "$TEST_TMP/private.img"
else
    t_skip cli/disk-unreadable "needs root and setpriv to run as an unprivileged user"
fi

# --help documents every option.
help=$("$NVMEVM" run --help)
missing=""
for opt in --kernel --initrd --append --mem --mem-shared --cpus --name --control --no-stdin \
    --disk --cache --queues --poll-us; do
    grep -q -- "$opt" <<<"$help" || missing+=" $opt"
done
if [ -z "$missing" ]; then t_pass cli/run-help; else t_fail cli/run-help "missing:$missing"; fi
