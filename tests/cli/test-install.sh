#!/bin/bash
# `meson install` into a prefix, then the installed nvmevm as a user meets it: the files,
# the man page, --help, the default-guest lookup (data dir, a moved binary, a moved prefix,
# the user cache), nvmevm-build-guest, the sandbox's defaults, bash completion and
# `nvmevm cache`. Its own build directory ($BUILD/install-check, prefix inside it) is
# configured once and only rebuilt incrementally afterwards.
set -uo pipefail
. "$(dirname "$0")/../lib.sh"
trap 'rm -rf "$TEST_TMP"' EXIT
# Nothing here may see the caller's guest, sandbox or cache (never clean the real cache).
unset NVMEVM_GUEST_DIR NVMEVM_SANDBOX_DIR XDG_CACHE_HOME
export NVMEVM_CACHE_DIR=$TEST_TMP/cache

IB=$BUILD/install-check
P=$IB/prefix
log=$TEST_TMP/install.log
if { [ -f "$IB/build.ninja" ] ||
    meson setup "$IB" "$REPO" --prefix="$P" -Dtests=disabled >"$log" 2>&1; } &&
    ninja -C "$IB" -j2 >>"$log" 2>&1 && rm -rf "$P" &&
    meson install -C "$IB" --no-rebuild >>"$log" 2>&1; then
    t_pass install/meson-install
else
    t_fail install/meson-install "meson setup/ninja/install in $IB failed"
    show_tail "$log"
    exit 1
fi

# --- the files ------------------------------------------------------------------------
missing=""
for f in bin/nvmevm bin/nvmevm-build-guest share/nvmevm/guest-images/linux/build.sh \
    share/nvmevm/guest-images/linux/modorder.sh share/nvmevm/sandbox/run.sh; do
    [ -x "$P/$f" ] || missing+=" $f(executable)"
done
for f in share/man/man1/nvmevm.1 share/bash-completion/completions/nvmevm \
    share/nvmevm/guest-images/linux/init share/nvmevm/guest-images/linux/README.md \
    share/nvmevm/sandbox/init; do
    [ -f "$P/$f" ] || missing+=" $f"
done
for s in "$REPO"/guest-images/linux/scripts/*.sh; do
    [ -f "$P/share/nvmevm/guest-images/linux/scripts/${s##*/}" ] || missing+=" scripts/${s##*/}"
done
if [ -z "$missing" ]; then t_pass install/files; else t_fail install/files "missing:$missing"; fi

# --- the man page -----------------------------------------------------------------------
man_page=$P/share/man/man1/nvmevm.1
if ! command -v man >/dev/null; then
    t_fail install/man-renders "man not found (apt-get install man-db; scripts/install-deps.sh)"
else
    warnings=$(LC_ALL=C MANWIDTH=80 man --warnings -l "$man_page" 2>&1 >"$TEST_TMP/man.txt")
    if [ -z "$warnings" ] && grep -q '^EXIT STATUS' "$TEST_TMP/man.txt"; then
        t_pass install/man-renders
    else
        t_fail install/man-renders "warnings: $(head -c 300 <<<"$warnings")"
    fi
    # Everything a user can type or set is in it: each command `nvmevm help` lists (a tag
    # of its own), each option of each command's --help, each variable the C code reads.
    # Checked in the source with \- as -, since the rendered text hyphenates long words.
    sed 's/\\-/-/g' "$man_page" >"$TEST_TMP/man.src"
    tags=" $(awk 'prev == ".TP" && $1 ~ /^\.BR?$/ { print $2 } { prev = $0 }' "$TEST_TMP/man.src" |
        tr -d '"' | tr '\n' ' ') "
    undocumented=""
    cmds=$("$P/bin/nvmevm" help | awk '/^commands:/ { c = 1; next } c && /^  [a-z]/ { print $1 }')
    for c in $cmds; do
        [[ $tags == *" $c "* ]] || undocumented+=" $c"
        opts=$("$P/bin/nvmevm" "$c" --help 2>/dev/null | grep -oE -- '--[a-z][a-z0-9-]*[a-z0-9]')
        for o in $opts; do
            grep -q -- "$o" "$TEST_TMP/man.src" || undocumented+=" $c$o"
        done
    done
    for v in $(grep -rhoE 'getenv\("[A-Z_]+"\)' "$REPO"/{util,block,emu,hw,kvm,migrate,app} |
        sed -E 's/getenv\("(.*)"\)/\1/' | sort -u); do
        grep -q "$v" "$TEST_TMP/man.src" || undocumented+=" \$$v"
    done
    [ -n "$cmds" ] || undocumented+=" (nvmevm help listed no commands)"
    if [ -z "$undocumented" ]; then
        t_pass install/man-complete
    else
        t_fail install/man-complete "not in nvmevm(1):$undocumented"
    fi
fi

# --- the installed binary ----------------------------------------------------------------
t_check install/help "nvmevm --help failed or listed no commands" \
    bash -c "'$P/bin/nvmevm' --help | grep -q '^commands:'"
t_check install/build-guest-help "nvmevm-build-guest --help failed" \
    bash -c "'$P/bin/nvmevm-build-guest' --help | grep -q '^usage: nvmevm-build-guest'"

# expect_run NAME PATTERN BINARY: `BINARY run` fails with one line matching PATTERN.
expect_run() {
    local name=$1 pattern=$2 bin=$3 rc=0
    timeout 30 "$bin" run --no-stdin </dev/null >/dev/null 2>"$TEST_TMP/$name.err" || rc=$?
    if [ "$rc" -ne 1 ] || [ "$(grep -c . "$TEST_TMP/$name.err")" -ne 1 ] ||
        ! grep -qF -- "$pattern" "$TEST_TMP/$name.err"; then
        t_fail "install/$name" "exit $rc, stderr '$(head -c 400 "$TEST_TMP/$name.err")', want '$pattern'"
    else
        t_pass "install/$name"
    fi
}
# fake_guest DIR: a guest directory whose vmlinuz is no kernel, so `run` gets past the lookup
# and stops at the kernel's format (naming the file it took).
fake_guest() {
    mkdir -p "$1"
    head -c 8192 /dev/urandom >"$1/vmlinuz"
    : >"$1/initrd.img"
}

expect_run guest-none-says-where \
    "no readable vmlinuz in $P/bin/guest, $P/share/nvmevm/guest or $NVMEVM_CACHE_DIR/guest); build one with: $P/bin/nvmevm-build-guest $NVMEVM_CACHE_DIR/guest" \
    "$P/bin/nvmevm"
fake_guest "$P/share/nvmevm/guest"
expect_run guest-in-data-dir "$P/share/nvmevm/guest/vmlinuz: not a bzImage" "$P/bin/nvmevm"
# A copy of the binary elsewhere still knows the configured data dir.
mkdir -p "$TEST_TMP/elsewhere"
cp "$P/bin/nvmevm" "$TEST_TMP/elsewhere/"
expect_run guest-binary-moved "$P/share/nvmevm/guest/vmlinuz: not a bzImage" \
    "$TEST_TMP/elsewhere/nvmevm"
# A whole prefix moved: its own share/nvmevm/guest, found beside the binary.
cp -a "$P" "$TEST_TMP/moved"
rm -rf "$P/share/nvmevm/guest"
expect_run guest-prefix-moved "$TEST_TMP/moved/share/nvmevm/guest/vmlinuz: not a bzImage" \
    "$TEST_TMP/moved/bin/nvmevm"
fake_guest "$NVMEVM_CACHE_DIR/guest"
expect_run guest-in-cache "$NVMEVM_CACHE_DIR/guest/vmlinuz: not a bzImage" "$P/bin/nvmevm"
NVMEVM_GUEST_DIR=$TEST_TMP/nope expect_run guest-env-only \
    "no default guest in NVMEVM_GUEST_DIR=$TEST_TMP/nope (no readable vmlinuz)" "$P/bin/nvmevm"
rm -rf "$NVMEVM_CACHE_DIR/guest"

# nvmevm-build-guest runs the installed build.sh: with no apt-get on PATH, build.sh's own
# first check answers (a real build downloads a kernel package: too slow for this level).
mkdir -p "$TEST_TMP/path"
for tool in bash dirname readlink; do ln -sf "$(command -v $tool)" "$TEST_TMP/path/$tool"; done
out=$(PATH=$TEST_TMP/path "$P/bin/nvmevm-build-guest" 2>&1)
t_check install/build-guest-runs-builder "got: $out" grep -q "guest-image: error: 'apt-get' not found" <<<"$out"
# Its default DIR is the user cache's guest/: a stand-in builder beside a copy prints it.
mkdir -p "$TEST_TMP/stub/bin" "$TEST_TMP/stub/share/nvmevm/guest-images/linux"
cp "$P/bin/nvmevm-build-guest" "$TEST_TMP/stub/bin/"
printf '#!/bin/sh\necho "build.sh $*"\n' >"$TEST_TMP/stub/share/nvmevm/guest-images/linux/build.sh"
chmod +x "$TEST_TMP/stub/share/nvmevm/guest-images/linux/build.sh"
out=$("$TEST_TMP/stub/bin/nvmevm-build-guest")
t_check install/build-guest-default-dir "got: $out" [ "$out" = "build.sh $NVMEVM_CACHE_DIR/guest" ]
out=$(env -u NVMEVM_CACHE_DIR XDG_CACHE_HOME="$TEST_TMP/xdg" "$TEST_TMP/stub/bin/nvmevm-build-guest")
t_check install/build-guest-xdg-dir "got: $out" [ "$out" = "build.sh $TEST_TMP/xdg/nvmevm/guest" ]

# The installed sandbox finds the installed guest builder (whose first check, with no
# apt-get on PATH, answers before anything boots) ...
ln -sf "$(command -v qemu-system-x86_64 || echo /usr/bin/qemu-system-x86_64)" "$TEST_TMP/path/"
out=$(PATH=$TEST_TMP/path "$P/share/nvmevm/sandbox/run.sh" --guest-dir "$TEST_TMP/sbx-guest" \
    -- true 2>&1)
t_check install/sandbox-finds-builder "got: $out" grep -q "guest-image: error: 'apt-get' not found" <<<"$out"
# ... and keeps its images in the user cache, not beside itself.
out=$(env -u NVMEVM_BUILD "$P/share/nvmevm/sandbox/run.sh" --help 2>&1)
t_check install/sandbox-uses-cache "got: $(grep -e --build-dir <<<"$out")" \
    grep -qF -- "--build-dir DIR   sandbox initramfs cache (default $NVMEVM_CACHE_DIR/sandbox)" <<<"$out"

# --- bash completion ---------------------------------------------------------------------
# complete WORD...: what the installed completion offers for the command line WORD... (the
# last word is the one being completed), from a shell that sourced only that file.
mkdir -p -m 700 "$TEST_TMP/run/nvmevm"
python3 -c 'import socket, sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])' \
    "$TEST_TMP/run/nvmevm/testvm.sock"
: >"$TEST_TMP/disk-a.img"
complete_words() {
    XDG_RUNTIME_DIR=$TEST_TMP/run bash -c '
        . "$0" || exit 1
        complete -p nvmevm | grep -q "_nvmevm nvmevm" || exit 1
        COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMPREPLY=()
        _nvmevm
        echo "${COMPREPLY[*]}"' "$P/share/bash-completion/completions/nvmevm" "$@"
}
# expect_complete NAME WANT WORD...: every word of WANT is offered.
expect_complete() {
    local name=$1 want=$2 got w miss=""
    shift 2
    got=" $(complete_words "$@") "
    for w in $want; do [[ $got == *" $w "* ]] || miss+=" $w"; done
    if [ -z "$miss" ]; then t_pass "install/complete-$name"; else
        t_fail "install/complete-$name" "missing:$miss; offered:$got"
    fi
}
NV=$P/bin/nvmevm
expect_complete commands "run ctl migrate probe cache version help" "$NV" ""
expect_complete run-option "--kernel" "$NV" run --ke
expect_complete migrate-options "--vm --socket --downtime-ms --cancel" "$NV" migrate --
expect_complete kernel-file "$TEST_TMP/disk-a.img" "$NV" run --kernel "$TEST_TMP/disk-"
expect_complete disk-file "$TEST_TMP/disk-a.img" "$NV" run --mem 1G "$TEST_TMP/disk-"
expect_complete cache-values "none writeback" "$NV" run --cache ""
expect_complete vm-names "testvm" "$NV" ctl --vm ""
expect_complete ctl-actions "status pause resume quit" "$NV" ctl --vm testvm ""
expect_complete cache-subcommands "list clean" "$NV" cache ""
expect_complete cache-dry-run "--dry-run" "$NV" cache clean --
# Not offered: an option from another option's description (migrate's "its --name").
got=$(complete_words "$NV" migrate --na)
t_check install/complete-no-stray-options "offered: $got" [ -z "$got" ]

# --- nvmevm cache ------------------------------------------------------------------------
C=$TEST_TMP/cachetest
plant_cache() {
    rm -rf "$C"
    mkdir -p "$C/guest" "$C/sandbox" "$C/guestbook"
    head -c 1048576 /dev/zero >"$C/vmlinux-0123456789abcdef-1048576"
    head -c 2097152 /dev/zero >"$C/guest/vmlinuz"
    : >"$C/guest/.stamp"
    : >"$C/guest/.lock"
    : >"$C/sandbox/sandbox.cpio"
    echo mine >"$C/notes.txt"
    echo mine >"$C/guestbook/page"
}
plant_cache
out=$(NVMEVM_CACHE_DIR=$C "$NV" cache)
t_check install/cache-lists "got: $out" bash -c '
    grep -q "^nvmevm cache: $1\$" <<<"$2" && grep -qE "1\.0 MiB  vmlinux-0123456789abcdef-1048576  " <<<"$2" &&
    grep -qE "2\.0 MiB  guest/  " <<<"$2" && grep -q "sandbox/" <<<"$2" &&
    grep -q "2 other entries" <<<"$2" && ! grep -q "guestbook\|notes" <<<"$2"' _ "$C" "$out"
out=$(NVMEVM_CACHE_DIR=$C "$NV" cache clean --dry-run)
t_check install/cache-dry-run-keeps "got: $out" bash -c '
    [ "$(grep -c "^would remove" <<<"$2")" = 3 ] && grep -q "^would free 3.0 MiB" <<<"$2" &&
    [ -f "$1/vmlinux-0123456789abcdef-1048576" ] && [ -f "$1/guest/vmlinuz" ] && [ -d "$1/sandbox" ]' _ "$C" "$out"
rc=0
out=$(NVMEVM_CACHE_DIR=$C "$NV" cache clean) || rc=$?
t_check install/cache-clean-removes "exit $rc, got: $out; left: $(ls -A "$C" | tr '\n' ' ')" bash -c '
    [ "$3" = 0 ] && [ "$(grep -c "^removed" <<<"$2")" = 3 ] && grep -q "^freed 3.0 MiB" <<<"$2" &&
    [ ! -e "$1/vmlinux-0123456789abcdef-1048576" ] && [ ! -e "$1/guest" ] && [ ! -e "$1/sandbox" ] &&
    [ -f "$1/notes.txt" ] && [ -f "$1/guestbook/page" ]' _ "$C" "$out" "$rc"
# A guest being built (build.sh holds guest/.lock) is left alone.
plant_cache
(
    exec 9>"$C/guest/.lock"
    flock 9
    exec sleep 60 # holds the lock through fd 9 until killed
) &
holder=$!
for _ in $(seq 50); do flock -n "$C/guest/.lock" true || break; sleep 0.1; done
out=$(NVMEVM_CACHE_DIR=$C "$NV" cache clean)
kill "$holder" 2>/dev/null
wait "$holder" 2>/dev/null
t_check install/cache-clean-skips-a-build "got: $out" bash -c '
    grep -q "^skipped .*guest" <<<"$2" && [ -f "$1/guest/vmlinuz" ] && [ ! -e "$1/sandbox" ]' _ "$C" "$out"
# XDG_CACHE_HOME without NVMEVM_CACHE_DIR; an empty cache.
out=$(env -u NVMEVM_CACHE_DIR XDG_CACHE_HOME="$TEST_TMP/xdg2" "$NV" cache)
t_check install/cache-xdg "got: $out" grep -q "^nvmevm cache: $TEST_TMP/xdg2/nvmevm" <<<"$out"
rc=0
NVMEVM_CACHE_DIR=$C "$NV" cache bogus >/dev/null 2>"$TEST_TMP/bogus.err" || rc=$?
t_check install/cache-usage "exit $rc: $(cat "$TEST_TMP/bogus.err")" bash -c \
    '[ "$1" = 2 ] && [ "$(grep -c . "$2")" = 1 ] && grep -q "^nvmevm: cache bogus" "$2"' _ "$rc" "$TEST_TMP/bogus.err"
