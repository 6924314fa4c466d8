# Shared by tests/reliability/*.sh (sourced): the sandbox decision, VM helpers, the proxy.
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
REL_DIR=$TESTS_DIR/reliability

# rel_enter_sandbox SCRIPT ARGS...: where this host's /dev/kvm cannot run guests, re-runs
# SCRIPT inside the QEMU TCG sandbox (1 vCPU, as tests/guests.sh does) and exits with its
# status; returns where guests can run here (or when already inside).
rel_enter_sandbox() {
    local script=$1 timeout=${REL_SANDBOX_TIMEOUT:-3600}
    shift
    [ -n "${NVMEVM_SANDBOX:-}" ] && return 0
    local why rc=0
    why=$("$NVMEVM" probe) || rc=$?
    [ "$rc" -eq 0 ] && { echo "reliability: running directly on /dev/kvm (${why#nvmevm: })"; return 0; }
    if [ "$rc" -ne 3 ]; then
        echo "reliability: nvmevm probe failed (status $rc): $why" >&2
        exit 2
    fi
    echo "reliability: running inside the QEMU TCG sandbox, 1 vCPU (${why#nvmevm: })"
    local pass=()
    [ -n "${REL_SEED:-}" ] && pass+=(--env "REL_SEED=$REL_SEED")
    rc=0
    nice "$REPO/tests/sandbox/run.sh" ${pass[@]+"${pass[@]}"} --cpus 1 --timeout "$timeout" --stall 120 \
        --env "NVMEVM=$NVMEVM" --env "TINY=$TINY" --env "NVMEVM_GUEST_DIR=$GUEST_DIR" \
        -- "$script" "$@" || rc=$?
    exit "$rc"
}

# holds_lock PID FILE: PID has FILE open with an OFD/POSIX write lock on it (the lock shows
# in the fdinfo of the descriptor that took it).
holds_lock() {
    local pid=$1 file fd
    file=$(readlink -f "$2")
    for fd in /proc/"$pid"/fd/*; do
        [ "$(readlink -f "$fd" 2>/dev/null)" = "$file" ] || continue
        grep -q '^lock:.*WRITE' "/proc/$pid/fdinfo/${fd##*/}" 2>/dev/null && return 0
    done
    return 1
}

# The proxy (proxy.py) runs as a coprocess for the whole script: proxy_start PORT, then
# proxy_case WORDS... sends one case and proxy_result reads its one-line answer.
proxy_start() {
    coproc PROXY { exec python3 "$REL_DIR/proxy.py" "$1"; }
    local line
    read -r -t 60 line <&"${PROXY[0]}" && [ "$line" = ready ] ||
        { echo "reliability: the proxy did not start" >&2; exit 2; }
}
proxy_case() { echo "$*" >&"${PROXY[1]}"; }
proxy_result() { # sets RESULT; fails after SECONDS without an answer
    RESULT=
    read -r -t "${1:-300}" RESULT <&"${PROXY[0]}"
}
# field NAME: the value of NAME=... in $RESULT
field() { sed -n "s/.*\\b$1=\\([^ ]*\\).*/\\1/p" <<<"$RESULT"; }

# rel_workdir NAME: a scratch directory ($work) with a 16 MiB disk ($disk), and an exit
# trap that kills the VMs in $src_pid/$dst_pid and the proxy, then removes the directory.
rel_workdir() {
    work=$(mktemp -d "/var/tmp/nvmevm-$1.XXXXXX")
    disk=$work/disk.img
    truncate -s 16M "$disk"
    src_pid=
    dst_pid=
    trap rel_cleanup EXIT
}
rel_cleanup() {
    for p in $src_pid $dst_pid; do kill -9 "$p" 2>/dev/null && { wait "$p"; } 2>/dev/null; done
    [ -n "${PROXY_PID:-}" ] && kill "$PROXY_PID" 2>/dev/null
    rm -rf "$work"
}
