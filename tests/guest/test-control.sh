#!/bin/bash
# Level 2: the control socket under hostile and slow clients, and seccomp, against a
# running tiny guest. A client that sends half a request and waits must not hold up the
# guest or another client; ids are echoed; an over-long line is refused; text passed to
# `nvmevm migrate` reaches the VM as one string (after the client's own checks); a thread calling what its seccomp
# allowlist forbids stops nvmevm with one line and status 159.
set -uo pipefail
. "$(dirname "$0")/../lib.sh"

if [ ! -f "$TINY" ]; then
    t_fail control/build "tiny guest not built: $TINY"
    exit 0
fi

sock="$TEST_TMP/ctl.sock" out="$TEST_TMP/control.log"
"$NVMEVM" run --kernel "$TINY" --mem 64M --no-stdin --control "$sock" \
    --append "test=checksum iters=100000000000 progress=20000000" >"$out" 2>&1 </dev/null &
pid=$!
for _ in $(seq 600); do
    grep -q "checksum progress" "$out" && break
    sleep 0.1
done

# client.py SOCKET: sends stdin's bytes verbatim (no newline added), prints the reply lines.
client() {
    python3 -c 'import socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.sendall(sys.stdin.buffer.read())
s.shutdown(socket.SHUT_WR); data = b""
while True:
    d = s.recv(65536)
    if not d: break
    data += d
sys.stdout.write(data.decode())' "$1"
}

# A client that sends half a request and then trickles a byte a second, never ending the
# line (a server that waits for its line with a per-byte timeout would never get free).
python3 -c 'import socket, sys, time
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.sendall(b"{\"cmd\":\"status\",\"x\":\"")
print("sent", flush=True)
for _ in range(300):
    time.sleep(1); s.sendall(b"x")' "$sock" >"$TEST_TMP/slow.out" 2>&1 &
slow=$!
for _ in $(seq 100); do grep -q sent "$TEST_TMP/slow.out" && break; sleep 0.1; done
before=$(grep -c "checksum progress" "$out")
rep=$(timeout 60 "$NVMEVM" ctl --socket "$sock" status)
t_check control/status-beside-slow-client "status while another client holds half a line: '$rep'" \
    grep -q '"state":"running"' <<<"$rep"
# The guest keeps computing while the slow client waits (no bound on how fast).
for _ in $(seq 600); do
    [ "$(grep -c "checksum progress" "$out")" -gt "$((before + 1))" ] && break
    sleep 0.1
done
after=$(grep -c "checksum progress" "$out")
t_check control/guest-runs-beside-slow-client "progress lines $before -> $after" \
    [ "$after" -gt "$((before + 1))" ]

rep=$(printf '{"cmd":"status","id":{"n":[1,"two"]}}\n{"cmd":"nope","id":5}\n' | client "$sock")
t_check control/id-echoed "replies: $rep" \
    python3 -c 'import json, sys
g, a, b = [json.loads(l) for l in sys.argv[1].splitlines()]
assert "greeting" in g, g
assert a["ok"] and a["id"] == {"n": [1, "two"]}, a
assert not b["ok"] and b["id"] == 5 and b["error"]["class"] == "CommandNotFound", b
assert "unknown command" in b["error"]["desc"], b' "$rep"

# The greeting comes first, unasked: version, protocol, the VM's name and pid, capabilities.
rep=$(printf '' | client "$sock")
t_check control/greeting "greeting: $rep" python3 -c 'import json, sys
(g,) = [json.loads(l) for l in sys.argv[1].splitlines()]
g = g["greeting"]
assert g["version"] and g["protocol"] == 1 and g["vm"] == "ctl" and g["pid"] == int(sys.argv[2]), g
assert g["capabilities"] == ["events", "migrate", "stats"], g' "$rep" "$pid"

# QMP's form, error classes for each kind of bad request, and query-commands.
rep=$(printf '%s\n' '{"execute":"status","id":"q1"}' '{"execute":"query-commands","id":2}' \
    '{"execute":"migrate","arguments":{"uri":"tcp:h:1","downtime_ms":-5},"id":3}' \
    '{"execute":"status","extra":1}' '[1,2]' '{"cmd":"status"' '{"cmd":7}' \
    '{"cmd":"status","execute":"status"}' '{"cmd":"migrate-cancel"}' | client "$sock")
t_check control/classes-and-commands "replies: ${rep:0:600}" python3 -c 'import json, sys
r = [json.loads(l) for l in sys.argv[1].splitlines()][1:]
assert r[0]["ok"] and r[0]["id"] == "q1" and r[0]["state"] == "running", r[0]
names = [c["name"] for c in r[1]["commands"]]
for n in ("status", "pause", "resume", "quit", "migrate", "migrate-status", "migrate-cancel",
          "query-commands", "watch", "stats"):
    assert n in names, names
assert all(c["desc"] for c in r[1]["commands"]), r[1]
want = ["InvalidArgument", "InvalidRequest", "InvalidRequest", "InvalidRequest",
        "InvalidRequest", "InvalidRequest", "InvalidState"]
got = [x["error"]["class"] for x in r[2:]]
assert got == want and all(not x["ok"] and x["error"]["desc"] for x in r[2:]), got
assert r[2]["id"] == 3 and "must not be negative" in r[2]["error"]["desc"], r[2]' "$rep"

rep=$(head -c 70000 /dev/zero | tr '\0' 'x' | client "$sock")
t_check control/long-line-refused "reply: ${rep:0:200}" grep -q '"error":{"class":"InvalidRequest","desc":"request longer than 65536 bytes"}' <<<"$rep"
rep=$(printf '{"cmd":"status"}\0{"cmd":"quit"}\n' | client "$sock")
t_check control/nul-refused "reply: $rep" grep -q 'NUL byte' <<<"$rep"

# The destination text goes over as a JSON string: the VM tries to reach that odd address
# (and fails), it does not see "force":true. (`nvmevm migrate` checks the URI itself, so
# this goes through the raw socket.)
evil='tcp:h:1","force":true,"x":"'
rep=$(python3 -c 'import json, sys; print(json.dumps({"cmd": "migrate", "uri": sys.argv[1]}))' "$evil" |
    client "$sock")
t_check control/migrate-uri-injection "reply: $(head -c 300 <<<"$rep")" \
    python3 -c 'import json, sys
r = json.loads(sys.argv[1].splitlines()[1])
assert r["ok"] or r["error"]["class"] == "MigrationFailed", r' "$rep"
for _ in $(seq 100); do
    timeout 10 "$NVMEVM" ctl --socket "$sock" migrate-status | grep -q '"migration":"active"' || break
    sleep 0.1
done
st=$(timeout 10 "$NVMEVM" ctl --socket "$sock" migrate-status)
t_check control/migrate-uri-injection-failed "migrate-status: ${st:0:300}" grep -qF 'h:1\",\"force\":true' <<<"$st"
rep=$(timeout 60 "$NVMEVM" ctl --socket "$sock" status)
t_check control/running-after-injection "status: '$rep'" grep -q '"state":"running"' <<<"$rep"

kill "$slow" 2>/dev/null
wait "$slow" 2>/dev/null
"$NVMEVM" ctl --socket "$sock" quit >/dev/null
rc=0
wait "$pid" || rc=$?
t_check control/quit "exit status $rc, want 0" [ "$rc" -eq 0 ]
grep -q seccomp "$out" && t_fail control/no-seccomp-violation "$(grep seccomp "$out")"

# seccomp: each thread's filter stops a call outside its list (--seccomp=on: also in the
# sanitizer build, where it is off by default).
truncate -s 16M "$TEST_TMP/st.img"
for role in main vcpu io; do
    run_capture "$TEST_TMP/selftest-$role.log" 120 env NVMEVM_SECCOMP_SELFTEST=$role \
        "$NVMEVM" run --seccomp=on --kernel "$TINY" --mem 64M --no-stdin \
        --append "test=ring3 iters=3000000000" "$TEST_TMP/st.img"
    if [ "$RC" -eq 159 ] && grep -q "seccomp: the $role thread made a forbidden system call: execve" \
        "$TEST_TMP/selftest-$role.log"; then
        t_pass "control/seccomp-stops-$role"
    else
        t_fail "control/seccomp-stops-$role" "status $RC: $(tail -n 2 "$TEST_TMP/selftest-$role.log")"
    fi
done
