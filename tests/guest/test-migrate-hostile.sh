#!/bin/bash
# Level 2, hostile migration streams: a destination fed garbage, a stream cut short, or a
# stream from a VM with other disks refuses it with one line and never runs a guest; it
# keeps waiting when nothing was loaded yet, and exits non-zero otherwise.
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
# A stream refused before anything was loaded (header, configuration, silence) leaves the
# destination waiting for the real source: it logs one line, still answers status with
# "incoming", and quits cleanly. One refused after loading began ends it (non-zero status,
# "incoming migration refused"). FEED_ENDS=1 says which is expected. Either way no guest runs.
feed() {
    local name=$1 pattern=$2
    shift 2
    local log="$TEST_TMP/hostile-$name.log" sock="$TEST_TMP/h-$name.sock"
    port=$((port + 1))
    "$NVMEVM" run --kernel "$TINY" --mem 64M --no-stdin --control "$sock" \
        --incoming "tcp:127.0.0.1:$port" ${FEED_ARGS:-} "$disk" >"$log" 2>&1 </dev/null &
    local pid=$!
    for _ in $(seq 100); do
        grep -q "waiting for an incoming" "$log" && break
        sleep 0.05
    done
    (exec 3<>"/dev/tcp/127.0.0.1/$port" && "$@" >&3 && sleep 0.3) 2>/dev/null
    local rc=0 ok=0 status=""
    if [ -n "${FEED_ENDS:-}" ]; then
        timeout 20 tail --pid="$pid" -f /dev/null
        kill -9 "$pid" 2>/dev/null
        wait "$pid" || rc=$?
        [ "$rc" -ne 0 ] && [ "$rc" -lt 124 ] &&
            grep -q "incoming migration refused: .*$pattern" "$log" && ok=1
    else
        wait_for "$log" "refused a connection from .*$pattern.*still waiting" 20 &&
            status=$(timeout 20 "$NVMEVM" ctl --socket "$sock" status 2>&1)
        timeout 20 "$NVMEVM" ctl --socket "$sock" quit >/dev/null 2>&1
        timeout 20 tail --pid="$pid" -f /dev/null
        kill -9 "$pid" 2>/dev/null
        wait "$pid" || rc=$?
        [ "$rc" -eq 0 ] && grep -q '"state":"incoming"' <<<"$status" && ok=1
    fi
    if [ "$ok" -eq 1 ] && ! grep -q "tiny:" "$log"; then
        t_pass "migrate-hostile/$name"
    else
        t_fail "migrate-hostile/$name" "status $rc ${status:0:100}"
        show_tail "$log" 5
    fi
}

feed random-bytes "not an nvmevm migration stream" head -c 65536 /dev/urandom
feed truncated-header "truncated" printf 'NVMEVMI'
feed bad-version "version" printf 'NVMEVMIG\x09\x00\x00\x00\x00\x00\x00\x00'
# A well-formed header, then a section whose checksum is wrong.
feed bad-checksum "checksum" printf 'NVMEVMIG\x01\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x01\x00\x00\x00\x04\x00\x00\x00\x00\x00\x00\x00\xef\xbe\xad\xde\x00\x00\x00\x00abcd'
feed huge-section "exceeds limit" printf 'NVMEVMIG\x01\x00\x00\x00\x00\x00\x00\x00\x02\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00'

# A source that stops mid-stream (or never speaks) must not hang the destination.
FEED_ARGS="--migrate-timeout 1" feed stalled-mid-header "nothing received for 1 s" \
    sh -c "printf NVMEVMIG; sleep 4"
FEED_ARGS="--migrate-timeout 1" feed silent-peer "nothing received for 1 s" sleep 4

# Required sections and duplicates, on a real stream: record what a real source sends (a
# stand-in destination answers OK, then refuses at the end, so the source keeps running),
# then replay it without a section or with one twice. The guest must never run.
rec="$TEST_TMP/stream.rec"
stream_tool() {
    python3 - "$@" <<'PY'
import socket, struct, sys

def sections(data):
    pos, out = 16, []
    while pos + 24 <= len(data):
        sid, = struct.unpack_from("<I", data, pos)
        n, = struct.unpack_from("<Q", data, pos + 8)
        out.append((sid, data[pos:pos + 24 + n]))
        pos += 24 + n
    return data[:16], out

def read(conn, n):
    buf = b""
    while len(buf) < n:
        chunk = conn.recv(n - len(buf))
        if not chunk:
            raise SystemExit("stream-tool: the source closed early")
        buf += chunk
    return buf

if sys.argv[1] == "record":  # record PORT OUT: one stream, until its END section
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", int(sys.argv[2])))
    srv.listen(1)
    print("listening", flush=True)  # the test starts the source only after this
    srv.settimeout(60)
    conn, _ = srv.accept()
    conn.settimeout(60)
    data, first = read(conn, 16), True
    while True:
        h = read(conn, 24)
        sid, = struct.unpack_from("<I", h, 0)
        n, = struct.unpack_from("<Q", h, 8)
        data += h + read(conn, n)
        if first:
            conn.sendall(b"OK\n")
            first = False
        if sid == 0xFFFFFFFF:
            break
    conn.sendall(b"ERR recorded by the test\n")
    open(sys.argv[3], "wb").write(data)
else:  # drop|dup ID IN OUT: the stream without section ID, or with it twice
    mode, sid, src, dst = sys.argv[1], int(sys.argv[2], 0), sys.argv[3], sys.argv[4]
    head, secs = sections(open(src, "rb").read())
    out = head
    for i, raw in secs:
        if i == sid and mode == "drop":
            continue
        out += raw * (2 if i == sid and mode == "dup" else 1)
    open(dst, "wb").write(out)
PY
}
record_port=$((port + 50))
"$NVMEVM" run --kernel "$TINY" --mem 64M --no-stdin --control "$TEST_TMP/h-rec.sock" \
    --append "test=checksum iters=3000000000" "$disk" >"$TEST_TMP/hostile-rec.log" 2>&1 </dev/null &
rec_pid=$!
for _ in $(seq 100); do
    grep -q "hello from ring 0" "$TEST_TMP/hostile-rec.log" && break
    sleep 0.1
done
stream_tool record "$record_port" "$rec" >"$TEST_TMP/hostile-rec-tool.log" &
tool_pid=$!
# python3 can take seconds to start in a loaded sandbox: wait until it listens.
for _ in $(seq 300); do
    grep -q listening "$TEST_TMP/hostile-rec-tool.log" && break
    sleep 0.1
done
"$NVMEVM" migrate --socket "$TEST_TMP/h-rec.sock" "tcp:127.0.0.1:$record_port" \
    >"$TEST_TMP/hostile-rec-migrate.log" 2>&1
wait "$tool_pid"
# The recorder refused at the very end (after the source paused, drained its NVMe I/O thread
# and sent everything): the source must resume its guest, I/O thread and all, under its
# seccomp filters (restarting that thread from the migration thread once killed it).
sleep 0.5
if kill -0 "$rec_pid" 2>/dev/null && grep -q "migration failed" "$TEST_TMP/hostile-rec-migrate.log" &&
    "$NVMEVM" ctl --socket "$TEST_TMP/h-rec.sock" status 2>&1 | grep -q '"running"'; then
    t_pass migrate-hostile/refused-at-the-end-source-resumes
else
    t_fail migrate-hostile/refused-at-the-end-source-resumes "$(tail -1 "$TEST_TMP/hostile-rec.log")"
fi
kill "$rec_pid" 2>/dev/null
wait "$rec_pid" 2>/dev/null
if [ -s "$rec" ]; then
    stream_tool drop 0x10 "$rec" "$rec.no-vcpu"
    stream_tool drop 0x60 "$rec" "$rec.no-kvm"
    stream_tool drop 2 "$rec" "$rec.no-ram"
    stream_tool dup 0x60 "$rec" "$rec.kvm-twice"
    stream_tool dup 1 "$rec" "$rec.config-twice"
    export FEED_ENDS=1 # loading began: these end the destination
    feed missing-vcpu "without section 0x10 (vCPU)" cat "$rec.no-vcpu"
    feed missing-kvm "without section 0x60" cat "$rec.no-kvm"
    feed missing-ram "without any RAM section" cat "$rec.no-ram"
    feed section-twice "section 0x60 (.*) comes twice" cat "$rec.kvm-twice"
    feed config-twice "configuration section comes twice" cat "$rec.config-twice"
    # Every device of this VM is required: drop each in turn (ids 0x70 and up).
    for dev in $(python3 -c '
import struct, sys
d = open(sys.argv[1], "rb").read(); pos = 16
while pos + 24 <= len(d):
    i, = struct.unpack_from("<I", d, pos); n, = struct.unpack_from("<Q", d, pos + 8)
    if 0x70 <= i < 0xffffffff: print(hex(i))
    pos += 24 + n' "$rec" | sort -u); do
        stream_tool drop "$dev" "$rec" "$rec.no-$dev"
        feed "missing-device-$dev" "without section $dev" cat "$rec.no-$dev"
    done
    # The unmodified recording loads (the stand-in refused only at the end): the refusals
    # above are the mutations' doing.
    feed recorded-stream-complete "the source did not hand over" cat "$rec"
else
    t_fail migrate-hostile/record "could not record a stream: $(tail -1 "$TEST_TMP/hostile-rec-migrate.log")"
fi
