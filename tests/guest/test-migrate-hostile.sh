#!/bin/bash
# Level 2, hostile migration streams: a destination fed garbage, a stream cut short, or a
# stream from a VM with other disks refuses it with one line, exits non-zero, and never
# runs a guest.
set -uo pipefail
. "$(dirname "$0")/../lib.sh"

if [ ! -f "$TINY" ]; then
    t_fail migrate-hostile/build "tiny guest not built: $TINY"
    exit 0
fi
disk=/var/tmp/nvmevm-mighostile-$$.img
truncate -s 16M "$disk"
trap 'rm -f "$disk"' EXIT
port=$((40000 + $$ % 20000))

# feed NAME PATTERN PRODUCER...: start an incoming nvmevm, connect, send PRODUCER's output.
feed() {
    local name=$1 pattern=$2
    shift 2
    local log="$TEST_TMP/hostile-$name.log"
    port=$((port + 1))
    "$NVMEVM" run --kernel "$TINY" --mem 64M --no-stdin --control "$TEST_TMP/h-$name.sock" \
        --incoming "tcp:127.0.0.1:$port" "$disk" >"$log" 2>&1 </dev/null &
    local pid=$!
    for _ in $(seq 100); do
        grep -q "waiting for an incoming" "$log" && break
        sleep 0.05
    done
    (exec 3<>"/dev/tcp/127.0.0.1/$port" && "$@" >&3 && sleep 0.3) 2>/dev/null
    local rc=0
    timeout 20 tail --pid="$pid" -f /dev/null
    kill -9 "$pid" 2>/dev/null
    wait "$pid" || rc=$?
    if [ "$rc" -ne 0 ] && [ "$rc" -lt 124 ] && grep -q "incoming migration refused: .*$pattern" "$log" &&
        ! grep -q "tiny:" "$log"; then
        t_pass "migrate-hostile/$name"
    else
        t_fail "migrate-hostile/$name" "status $rc"
        show_tail "$log" 5
    fi
}

feed random-bytes "not an nvmevm migration stream" head -c 65536 /dev/urandom
feed truncated-header "truncated" printf 'NVMEVMI'
feed bad-version "version" printf 'NVMEVMIG\x09\x00\x00\x00\x00\x00\x00\x00'
# A well-formed header, then a section whose checksum is wrong.
feed bad-checksum "checksum" printf 'NVMEVMIG\x01\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x01\x00\x00\x00\x04\x00\x00\x00\x00\x00\x00\x00\xef\xbe\xad\xde\x00\x00\x00\x00abcd'
feed huge-section "exceeds limit" printf 'NVMEVMIG\x01\x00\x00\x00\x00\x00\x00\x00\x02\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00'
