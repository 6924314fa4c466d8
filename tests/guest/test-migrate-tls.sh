#!/bin/bash
# Level 2, the migration channel secured with TLS. One tiny guest doing verified NVMe I/O
# meets, in turn: a PSK destination that first sees a stranger, a silent stranger, a
# source with the wrong key and a plain-text source (each refused in one line while the
# destination keeps waiting and the source keeps running), then the real source; a plain
# destination the TLS source is refused by; an X.509 destination reached first with the
# wrong host name, then correctly; a destination that stalls. The guest must end with its
# data intact (errors=0).
set -uo pipefail
. "$(dirname "$0")/../lib.sh"

if [ ! -f "$TINY" ]; then
    t_fail migrate-tls/build "tiny guest not built: $TINY"
    exit 0
fi
for tool in psktool certtool; do
    command -v $tool >/dev/null || { t_skip migrate-tls "$tool missing (gnutls-bin)"; exit 0; }
done
disk=/var/tmp/nvmevm-migtls-$$.img
truncate -s 64M "$disk"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done
    rm -f "$disk"
}
trap cleanup EXIT
port=$((30000 + $$ % 20000))
K="$TEST_TMP/tls"
mkdir -p "$K"

# Credentials: two unrelated PSK files, a CA, a server certificate for localhost/127.0.0.1
# and a client certificate for the source.
psktool -u nvmevm -p "$K/good.psk" >/dev/null 2>&1
psktool -u nvmevm -p "$K/wrong.psk" >/dev/null 2>&1
printf 'cn = "nvmevm test CA"\nca\ncert_signing_key\nexpiration_days = 2\n' >"$K/ca.tmpl"
printf 'cn = "localhost"\ndns_name = "localhost"\nip_address = "127.0.0.1"\ntls_www_server\nexpiration_days = 2\n' >"$K/srv.tmpl"
printf 'cn = "nvmevm source"\ntls_www_client\nexpiration_days = 2\n' >"$K/cli.tmpl"
for n in ca srv cli; do certtool --generate-privkey --key-type ecdsa --outfile "$K/$n.key" >/dev/null 2>&1; done
certtool --generate-self-signed --load-privkey "$K/ca.key" --template "$K/ca.tmpl" \
    --outfile "$K/ca.pem" >/dev/null 2>&1
for n in srv cli; do
    certtool --generate-certificate --load-privkey "$K/$n.key" --load-ca-certificate "$K/ca.pem" \
        --load-ca-privkey "$K/ca.key" --template "$K/$n.tmpl" --outfile "$K/$n.pem" >/dev/null 2>&1
done
if [ ! -s "$K/good.psk" ] || [ ! -s "$K/srv.pem" ] || [ ! -s "$K/cli.pem" ]; then
    t_fail migrate-tls/credentials "psktool/certtool did not produce the test credentials"
    exit 0
fi
X509_SRV=(--tls-cert "$K/srv.pem" --tls-key "$K/srv.key" --tls-ca "$K/ca.pem")
X509_CLI=(--tls-cert "$K/cli.pem" --tls-key "$K/cli.key" --tls-ca "$K/ca.pem")

start_vm() { # start_vm NAME LOG [ARGS...]
    local name=$1 log=$2
    shift 2
    "$NVMEVM" run --kernel "$TINY" --mem 128M --no-stdin --control "$TEST_TMP/$name.sock" \
        "$@" "$disk" >"$log" 2>&1 </dev/null &
    pids+=($!)
    LAST_PID=$!
}

src_running() { "$NVMEVM" ctl --socket "$TEST_TMP/$1.sock" status 2>/dev/null | grep -q running; }

# refused NAME SRC DST_LOG DST_PATTERN MIGRATE-PATTERN MIGRATE-ARGS...: a migration that must
# fail with MIGRATE-PATTERN, leave SRC running and (if DST_PATTERN) make the destination log
# DST_PATTERN.
refused() {
    local name=$1 src=$2 dlog=$3 dpat=$4 mpat=$5
    shift 5
    local out rc=0
    out=$(timeout 60 "$NVMEVM" migrate --socket "$TEST_TMP/$src.sock" "$@" 2>&1) || rc=$?
    if [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && grep -q -- "$mpat" <<<"$out" && src_running "$src" &&
        { [ -z "$dpat" ] || wait_for "$dlog" "$dpat" 10; }; then
        t_pass "migrate-tls/$name"
    else
        t_fail "migrate-tls/$name" "migrate status $rc: $(tail -1 <<<"$out")"
        [ -n "$dpat" ] && show_tail "$dlog" 5
    fi
}

# migrated NAME SRC SRC_PID DST_LOG MIGRATE-ARGS...: a migration that must succeed, the
# source process then ending with status 0 and the destination running the guest.
migrated() {
    local name=$1 src=$2 src_pid=$3 dlog=$4
    shift 4
    local out rc=0 src_rc=0
    out=$(timeout 120 "$NVMEVM" migrate --socket "$TEST_TMP/$src.sock" "$@" 2>&1) || rc=$?
    wait "$src_pid" || src_rc=$?
    if [ "$rc" -eq 0 ] && [ "$src_rc" -eq 0 ] && grep -q "migration received" "$dlog"; then
        t_pass "migrate-tls/$name"
        grep -h "migration channel from" "$dlog"
        echo "    $out"
    else
        t_fail "migrate-tls/$name" "migrate status $rc, source status $src_rc: $(tail -1 <<<"$out")"
        show_tail "$dlog" 5
        return 1
    fi
}

secs=40
[ -n "${NVMEVM_SANDBOX:-}" ] && secs=120
start_vm s0 "$TEST_TMP/tls-s0.log" --append "test=nvme mode=verify qd=8 queues=2 secs=$secs"
s0=$LAST_PID
wait_for "$TEST_TMP/tls-s0.log" "nvme run mode" 30 || { t_fail migrate-tls/start "guest did not start"; show_tail "$TEST_TMP/tls-s0.log"; exit 0; }

# 1. PSK destination. Strangers first: it refuses each and keeps waiting (documented in
#    docs/design.md); the source with the wrong key or without TLS is refused and runs on.
p1=$((port + 1)) d1log="$TEST_TMP/tls-d1.log"
start_vm d1 "$d1log" --incoming "tcp:127.0.0.1:$p1" --tls-psk "$K/good.psk" --migrate-timeout 2
d1=$LAST_PID
wait_for "$d1log" "waiting for an incoming migration" 20
(exec 3<>"/dev/tcp/127.0.0.1/$p1" && printf 'GET / HTTP/1.0\r\n\r\n' >&3 && sleep 0.5) 2>/dev/null
if wait_for "$d1log" "refused a connection from .*does not speak TLS; still waiting" 10; then
    t_pass migrate-tls/stranger-refused-destination-waits
else
    t_fail migrate-tls/stranger-refused-destination-waits "no refusal logged"
    show_tail "$d1log" 5
fi
(exec 3<>"/dev/tcp/127.0.0.1/$p1" && sleep 4) 2>/dev/null
if wait_for "$d1log" "nothing received for 2 s; still waiting" 10; then
    t_pass migrate-tls/silent-stranger-times-out-destination-waits
else
    t_fail migrate-tls/silent-stranger-times-out-destination-waits "no timeout logged"
    show_tail "$d1log" 5
fi
refused wrong-psk-refused-source-continues s0 "$d1log" "refused a connection" "TLS handshake" \
    --tls-psk "$K/wrong.psk" "tcp:127.0.0.1:$p1"
refused plain-source-to-tls-destination-refused s0 "$d1log" "plain-text migration stream" \
    "requires TLS" "tcp:127.0.0.1:$p1"
migrated psk-migration s0 "$s0" "$d1log" --tls-psk "$K/good.psk" "tcp:127.0.0.1:$p1" || exit 0
grep -q "TLS1.3, PSK identity 'nvmevm'" "$d1log" && t_pass migrate-tls/psk-is-tls1.3 ||
    t_fail migrate-tls/psk-is-tls1.3 "$(grep "channel from" "$d1log")"

# 2. A TLS source and a plain destination (tcp:PORT: 127.0.0.1): refused on both sides.
p2=$((port + 2)) d2log="$TEST_TMP/tls-d2.log"
start_vm d2 "$d2log" --incoming "tcp:$p2"
d2=$LAST_PID
wait_for "$d2log" "waiting for an incoming migration" 20
refused tls-source-to-plain-destination-refused d1 "$d2log" "the peer speaks TLS" \
    "does the peer speak TLS" --tls-psk "$K/good.psk" "tcp:127.0.0.1:$p2"
kill -9 "$d2" 2>/dev/null

# 3. X.509: the wrong host name is refused by the source, then the migration works.
p3=$((port + 3)) d3log="$TEST_TMP/tls-d3.log"
start_vm d3 "$d3log" --incoming "tcp:127.0.0.1:$p3" "${X509_SRV[@]}"
d3=$LAST_PID
wait_for "$d3log" "waiting for an incoming migration" 20
refused x509-wrong-hostname-refused d1 "$d3log" "refused a connection" "certificate is refused" \
    "${X509_CLI[@]}" --tls-hostname evil.example "tcp:127.0.0.1:$p3"
refused x509-untrusted-client-refused d1 "$d3log" "refused a connection" "" \
    --tls-cert "$K/ca.pem" --tls-key "$K/ca.key" --tls-ca "$K/ca.pem" "tcp:127.0.0.1:$p3"
migrated x509-migration d1 "$d1" "$d3log" "${X509_CLI[@]}" "tcp:127.0.0.1:$p3" || exit 0

# 4. A destination that stops answering (SIGSTOP: the kernel still accepts and buffers):
#    the source gives up after --migrate-timeout and keeps running.
p4=$((port + 4)) d4log="$TEST_TMP/tls-d4.log"
start_vm d4 "$d4log" --incoming "tcp:127.0.0.1:$p4"
d4=$LAST_PID
wait_for "$d4log" "waiting for an incoming migration" 20
kill -STOP "$d4"
refused stalled-destination-source-continues d3 "" "" "no answer in time" \
    --migrate-timeout 2 "tcp:127.0.0.1:$p4"
kill -9 "$d4" 2>/dev/null

rc=0
wait "$d3" || rc=$?
if [ "$rc" -eq 1 ] && grep -q "tiny: PASS" "$d3log" && grep -q "errors=0" "$d3log"; then
    t_pass migrate-tls/guest-data-intact-after-all
else
    t_fail migrate-tls/guest-data-intact-after-all "final guest status $rc"
    show_tail "$d3log"
fi
