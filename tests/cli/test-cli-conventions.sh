#!/bin/bash
# The command line's conventions (issue 13): sizes in MiB by default with decimals, every
# input checked up front with a message naming it and the fix, one line for an unknown option.
# No guest runs here: each case ends at an error that comes after the input under test.
set -uo pipefail
. "$(dirname "$0")/../lib.sh"

# expect_err NAME STATUS PATTERN CMD...: exit status STATUS and one stderr line matching PATTERN.
expect_err() {
    local name=$1
    shift
    expect_cli_error "$name" "$@"
}

nope=$TEST_TMP/conv-missing-initrd.img
kernel=$GUEST_DIR/vmlinuz
if [ ! -f "$kernel" ]; then
    t_fail cli/conventions "default guest not built ($kernel)"
    exit 0
fi
# --mem: a bare number is MiB (512 bytes would be "too small"), decimals work; the run gets
# as far as the (missing) initrd, which proves the size was taken.
expect_err mem-bare-is-mib 1 "conv-missing-initrd.img: No such file" \
    "$NVMEVM" run --kernel "$kernel" --initrd "$nope" --mem 512
expect_err mem-decimal 1 "conv-missing-initrd.img: No such file" \
    "$NVMEVM" run --kernel "$kernel" --initrd "$nope" --mem 1.5G
expect_err mem-not-pages 1 "--mem 4097K: not a whole number of 4 KiB pages (try 4100K)" \
    "$NVMEVM" run --kernel "$TINY" --mem 4097K
expect_err mem-fraction-of-a-byte 1 "--mem 0.1K: expected a size" \
    "$NVMEVM" run --kernel "$TINY" --mem 0.1K

# Options: one line, status 2.
expect_err unknown-option 2 "^nvmevm run: unknown option --frobnicate (see nvmevm run --help)$" \
    "$NVMEVM" run --frobnicate
expect_err missing-value 2 "^nvmevm run: option --mem needs a value" "$NVMEVM" run --mem
expect_err fio-unknown-option 2 "^nvmevm fio: unknown option --fast (see nvmevm fio --help)$" \
    "$NVMEVM" fio --fast job.fio
expect_err probe-unknown-option 2 "^nvmevm probe: unknown option --fast (see nvmevm probe --help)$" \
    "$NVMEVM" probe --fast
expect_err top-unknown-option 2 "unknown option --fast" "$NVMEVM" top --fast
expect_err ctl-unknown-option 2 "^nvmevm ctl: unknown option --fast (see nvmevm ctl --help)$" \
    "$NVMEVM" ctl --fast status
expect_err migrate-unknown-option 2 "^nvmevm migrate: unknown option --fast (see nvmevm migrate --help)$" \
    "$NVMEVM" migrate --fast tcp:1
expect_err migrate-missing-value 2 "^nvmevm migrate: option --vm needs a value" "$NVMEVM" migrate --vm
expect_err list-unknown-option 2 "^nvmevm list: unexpected option --fast" "$NVMEVM" list --fast
expect_err cache-unknown-option 2 "cache --fast: expected" "$NVMEVM" cache --fast
expect_err unknown-command 2 "unknown command 'runn'" "$NVMEVM" runn

# --name: too long or with a slash is named as such (not "cannot create a directory").
long=$(printf 'n%.0s' $(seq 100))
expect_err name-too-long 1 "--name $long: expected 1 to 64 characters" \
    "$NVMEVM" run --kernel "$TINY" --name "$long"
expect_err name-slash 1 "--name a/b: expected 1 to 64 characters without '/'" \
    "$NVMEVM" run --kernel "$TINY" --name a/b

# Disks.
truncate -s 16M "$TEST_TMP/conv-a.img"
expect_err disk-given-twice 1 "conv-a.img: given twice (as disk 1 and disk 2)" \
    "$NVMEVM" run --kernel "$TINY" "$TEST_TMP/conv-a.img" --disk "$TEST_TMP/conv-a.img,ro"
ln -sf "$TEST_TMP/conv-a.img" "$TEST_TMP/conv-link.img"
expect_err disk-twice-via-symlink 1 "given twice" \
    "$NVMEVM" run --kernel "$TINY" "$TEST_TMP/conv-a.img" "$TEST_TMP/conv-link.img"
expect_err disk-lba-1024 1 "lba=1024: the block size must be 512 or 4096" \
    "$NVMEVM" run --kernel "$TINY" --disk "$TEST_TMP/conv-a.img,lba=1024"
# A disk that is not a whole number of blocks: said, not silently cut (the run then stops at
# the bad --control path, before any guest).
head -c 1000 /dev/zero >"$TEST_TMP/conv-1000.img"
"$NVMEVM" run --kernel "$TINY" --control "$TEST_TMP/no/dir/x.sock" "$TEST_TMP/conv-1000.img" \
    >/dev/null 2>"$TEST_TMP/conv-1000.err" </dev/null
t_check cli/disk-partial-block "$(cat "$TEST_TMP/conv-1000.err")" \
    grep -q "conv-1000.img: the last 488 bytes are not a whole 512-byte block" "$TEST_TMP/conv-1000.err"
if [ "$(id -u)" -eq 0 ]; then
    # Readable but not writable for the user: the message says how to give it read-only.
    d=$TEST_TMP/conv-ro
    mkdir -p "$d" && chmod 755 "$d" && truncate -s 16M "$d/ro.img" && chmod 644 "$d/ro.img" &&
        cp "$NVMEVM" "$d/nvmevm" && cp "$TINY" "$d/tiny.elf" && chmod 755 "$d/nvmevm"
    chmod 755 "$TEST_TMP"
    expect_err disk-read-only-hint 1 "ro.img: Permission denied (to give the guest a read-only disk, add ,ro: --disk $d/ro.img,ro)" \
        setpriv --reuid=65534 --regid=65534 --clear-groups env XDG_RUNTIME_DIR=/tmp \
        "$d/nvmevm" run --kernel "$d/tiny.elf" "$d/ro.img"
else
    t_skip cli/disk-read-only-hint "needs root to run as an unprivileged user"
fi

# nvmevm fio and run --fio: the job, its files and options checked before anything boots.
printf '[j]\nrw=read\nsize=1M\n' >"$TEST_TMP/conv-job.fio"
expect_err fio-no-job 2 "nvmevm fio: no JOBFILE given" "$NVMEVM" fio
expect_err fio-missing-job 1 "job $TEST_TMP/nope.fio: No such file or directory" \
    "$NVMEVM" fio "$TEST_TMP/nope.fio"
expect_err fio-bad-format 1 "--output-format xml: expected normal, terse, json or json+" \
    "$NVMEVM" fio --output-format=xml "$TEST_TMP/conv-job.fio"
expect_err fio-arg-not-option 1 "--fio-arg rw=read: expected an fio option starting with --" \
    "$NVMEVM" fio --fio-arg rw=read "$TEST_TMP/conv-job.fio"
expect_err fio-missing-guest-file 1 "--guest-file $TEST_TMP/nope.dat: No such file" \
    "$NVMEVM" fio --guest-file "$TEST_TMP/nope.dat" "$TEST_TMP/conv-job.fio"
expect_err fio-bad-size 1 "--size 0: expected a size of at least 1M" \
    "$NVMEVM" fio --size 0 "$TEST_TMP/conv-job.fio"
expect_err run-fio-without-disk 1 "give the disks to run it on" \
    "$NVMEVM" run --fio "$TEST_TMP/conv-job.fio"
cp "$TEST_TMP/conv-job.fio" "$TEST_TMP/job.fio"
expect_err run-guest-file-reserved-name 1 "/user/job.fio is nvmevm's own" \
    "$NVMEVM" run --fio "$TEST_TMP/conv-job.fio" --guest-file "$TEST_TMP/job.fio" \
    --control "$TEST_TMP/no/dir/x.sock" "$TEST_TMP/conv-a.img"

# migrate: a bandwidth is MiB/s without a suffix, like every size here; nonsense is refused
# before anything is sent (no VM runs: the refusal comes first).
expect_err migrate-bandwidth-zero 1 "--max-bandwidth 0: expected bytes/s like 500M (MiB/s without a suffix)" \
    "$NVMEVM" migrate --max-bandwidth 0 tcp:127.0.0.1:1
expect_err migrate-bandwidth-junk 1 "--max-bandwidth 1.5x: expected bytes/s" \
    "$NVMEVM" migrate --max-bandwidth 1.5x tcp:127.0.0.1:1
