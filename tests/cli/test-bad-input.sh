#!/bin/bash
# Bad input gives one clear line on stderr and a non-zero exit, never a crash.
set -uo pipefail
. "$(dirname "$0")/../lib.sh"

# expect_error NAME PATTERN CMD...: a small non-zero status, one stderr line matching PATTERN.
expect_error() {
    local name=$1
    shift
    expect_cli_error "$name" any "$@"
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
    t_fail cli/truncated-kernel "default guest not built ($GUEST_DIR/vmlinuz)"
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

# Tests that run nvmevm as user nobody use copies in a directory nobody may enter (the
# repository may live under a private home directory).
cp "$NVMEVM" "$TEST_TMP/nvmevm-copy" && cp "$TINY" "$TEST_TMP/tiny.elf" &&
    chmod 755 "$TEST_TMP" "$TEST_TMP/nvmevm-copy" && chmod 644 "$TEST_TMP/tiny.elf"
as_nobody=(setpriv --reuid=65534 --regid=65534 --clear-groups)

# Without /dev/kvm, or without access to it: one line naming /dev/kvm, after every other
# input was found good.
if [ ! -e /dev/kvm ]; then
    expect_error no-kvm "/dev/kvm: No such file or directory" \
        "$NVMEVM" run --kernel "$TINY" --no-stdin
elif [ "$(id -u)" -eq 0 ] && ! "${as_nobody[@]}" test -r /dev/kvm; then
    expect_error no-kvm "/dev/kvm: Permission denied" \
        "${as_nobody[@]}" env XDG_RUNTIME_DIR=/tmp "$TEST_TMP/nvmevm-copy" run \
        --kernel "$TEST_TMP/tiny.elf" --no-stdin
else
    t_skip cli/no-kvm "/dev/kvm is usable here and this is not root (cannot drop access)"
fi

# Disks: missing, unreadable, locked by another nvmevm, bad options.
expect_error disk-missing "nvmevm: $TEST_TMP/nodisk.img: No such file or directory" \
    "$NVMEVM" run --kernel "$TINY" "$TEST_TMP/nodisk.img"
mkdir -p "$TEST_TMP/adir"
expect_error disk-is-directory "adir" "$NVMEVM" run --kernel "$TINY" "$TEST_TMP/adir"
expect_error disk-bad-option "unknown option 'fast'" \
    "$NVMEVM" run --kernel "$TINY" --disk "$TEST_TMP/x.img,fast"
# The lock another nvmevm holds: an OFD lock conflicts with this POSIX record lock too,
# so a small lock holder stands in for a running VM (no KVM needed).
truncate -s 16M "$TEST_TMP/locked.img"
python3 -c 'import fcntl, sys, time
f = open(sys.argv[1], "r+"); fcntl.lockf(f, fcntl.LOCK_EX); print("locked", flush=True)
time.sleep(60)' "$TEST_TMP/locked.img" >"$TEST_TMP/holder.out" 2>&1 &
holder=$!
for _ in $(seq 50); do grep -q locked "$TEST_TMP/holder.out" && break; sleep 0.1; done
expect_error disk-locked "locked by another process" \
    "$NVMEVM" run --kernel "$TINY" "$TEST_TMP/locked.img"
kill "$holder" 2>/dev/null
wait "$holder" 2>/dev/null
expect_error disk-twice "given twice" \
    "$NVMEVM" run --kernel "$TINY" "$TEST_TMP/locked.img" "$TEST_TMP/locked.img"
if [ "$(id -u)" -eq 0 ]; then
    truncate -s 16M "$TEST_TMP/private.img" && chmod 600 "$TEST_TMP/private.img"
    expect_error disk-unreadable "private.img: Permission denied" \
        "${as_nobody[@]}" "$TEST_TMP/nvmevm-copy" run --kernel "$TEST_TMP/tiny.elf" "$TEST_TMP/private.img"
else
    t_skip cli/disk-unreadable "needs root to run as an unprivileged user"
fi

# Inputs are checked before /dev/kvm is opened: a kernel too big for --mem, a bad
# --incoming address and a --control path that cannot exist are reported as such.
if [ -f "$GUEST_DIR/vmlinuz" ]; then
    expect_error mem-too-small-for-kernel "too small for" \
        "$NVMEVM" run --kernel "$GUEST_DIR/vmlinuz" --mem 8M --no-stdin
else
    t_fail cli/mem-too-small-for-kernel "default guest not built ($GUEST_DIR/vmlinuz)"
fi
expect_error incoming-bad-address "expected tcp:HOST:PORT" \
    "$NVMEVM" run --kernel "$TINY" --incoming udp:1.2.3.4:5
expect_error control-bad-path "$TEST_TMP/no/such/dir/x.sock" \
    "$NVMEVM" run --kernel "$TINY" --control "$TEST_TMP/no/such/dir/x.sock"
expect_error stats-bad-value "--stats maybe: expected on or off" \
    "$NVMEVM" run --kernel "$TINY" --stats=maybe
expect_error top-bad-interval "--interval 0: expected seconds" \
    "$NVMEVM" top --socket "$TEST_TMP/x.sock" --interval 0
expect_error top-bad-count "--count -1: expected a positive number" \
    "$NVMEVM" top --socket "$TEST_TMP/x.sock" --count -1
expect_error top-no-vm "no such file\|No such file" \
    "$NVMEVM" top --socket "$TEST_TMP/no-vm.sock" --count 1
expect_error ctl-stats-no-vm "No such file" \
    "$NVMEVM" ctl --socket "$TEST_TMP/no-vm.sock" stats --json

# --help documents every option.
help=$("$NVMEVM" run --help)
missing=""
for opt in --kernel --initrd --append --mem --mem-shared --cpus --name --control --no-stdin \
    --disk --cache --queues --poll-us --stats; do
    grep -q -- "$opt" <<<"$help" || missing+=" $opt"
done
if [ -z "$missing" ]; then t_pass cli/run-help; else t_fail cli/run-help "missing:$missing"; fi
