#!/bin/bash
# Level 3, live migration: the Debian guest runs fio with crc32c verification on its NVMe
# disk while it migrates A -> B -> A between two nvmevm processes (one host, or one
# sandbox); fio must pass, the guest clock stay sane, and SMART counters keep counting.
set -uo pipefail
. "$(dirname "$0")/../lib.sh"

disk="$TEST_TMP/migrate-disk.img"
truncate -s 256M "$disk"
pids=()
trap 'for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done' EXIT
port=$((30000 + $$ % 20000))
RUN=("$NVMEVM" run --mem 512M --no-stdin)
APPEND="quiet nvmevm.run=fio-migrate nvmevm.arg=${MIGRATE_FIO_SIZE:-128M}"

host_start=$(date +%s)
"${RUN[@]}" --control "$TEST_TMP/a.sock" --append "$APPEND" "$disk" >"$TEST_TMP/mig-a.log" 2>&1 &
a=$!
pids+=("$a")
if ! wait_for "$TEST_TMP/mig-a.log" "fio-migrate: running" 400; then
    t_fail migrate-linux/boot "guest never started fio"
    show_tail "$TEST_TMP/mig-a.log" 20
    exit 0
fi
sleep 2
# hop SRC_SOCK DST_NAME PORT: start an incoming nvmevm and migrate into it.
hop() {
    "${RUN[@]}" --control "$TEST_TMP/$2.sock" --incoming "tcp:127.0.0.1:$3" "$disk" \
        >"$TEST_TMP/mig-$2.log" 2>&1 &
    LAST=$!
    pids+=("$LAST")
    wait_for "$TEST_TMP/mig-$2.log" "waiting for an incoming migration" 60 || return 1
    timeout 600 "$NVMEVM" migrate --socket "$1" "tcp:127.0.0.1:$3" >"$TEST_TMP/mig-cmd-$2.log" 2>&1
}
ok=1
if hop "$TEST_TMP/a.sock" b $port; then
    b=$LAST
    wait "$a"
    echo "migrate-linux: A -> B: $(tail -1 "$TEST_TMP/mig-cmd-b.log")"
    sleep 2
    if hop "$TEST_TMP/b.sock" a2 $((port + 1)); then
        a2=$LAST
        wait "$b"
        echo "migrate-linux: B -> A: $(tail -1 "$TEST_TMP/mig-cmd-a2.log")"
    else
        ok=0
        t_fail migrate-linux/b-to-a "$(tail -1 "$TEST_TMP/mig-cmd-a2.log")"
        show_tail "$TEST_TMP/mig-b.log" 12
        show_tail "$TEST_TMP/mig-a2.log" 12
    fi
else
    ok=0
    t_fail migrate-linux/a-to-b "$(tail -1 "$TEST_TMP/mig-cmd-b.log")"
    show_tail "$TEST_TMP/mig-a.log" 12
    show_tail "$TEST_TMP/mig-b.log" 12
fi
[ $ok -eq 1 ] || exit 0
rc=0
timeout 900 tail --pid="$a2" -f /dev/null
wait "$a2" || rc=$?
log="$TEST_TMP/mig-a2.log"
host_elapsed=$(($(date +%s) - host_start))
if [ "$rc" -eq 0 ] && grep -q "fio: ok" "$log"; then
    t_pass migrate-linux/fio-verify-across-a-b-a
else
    t_fail migrate-linux/fio-verify-across-a-b-a "status $rc"
    show_tail "$log" 20
fi
# Guest time moved forward, and by no more than the host's (kvmclock never goes back).
read -r _ up0 wall0 < <(grep -h "^clock-start:" "$TEST_TMP"/mig-*.log | head -1 | tr -d '\r')
read -r _ up1 wall1 < <(grep -h "^clock-end:" "$log" | head -1 | tr -d '\r')
if [ -n "${up1:-}" ] && awk -v a="$up0" -v b="$up1" -v h="$host_elapsed" \
    'BEGIN { exit !(b > a && b - a <= h + 5) }'; then
    t_pass migrate-linux/guest-clock-sane
else
    t_fail migrate-linux/guest-clock-sane "uptime ${up0:-?} -> ${up1:-?} over ${host_elapsed}s"
fi
# The console may end lines with CR.
w0=$(grep -h "^smart-writes-start:" "$TEST_TMP"/mig-*.log | head -1 | tr -d '\r' | awk '{print $2}')
w1=$(grep -h "^smart-writes-end:" "$log" | tr -d '\r' | awk '{print $2}')
if [[ "${w0:-}" =~ ^[0-9]+$ && "${w1:-}" =~ ^[0-9]+$ ]] && [ "$w1" -gt $((w0 + 10000)) ]; then
    t_pass migrate-linux/smart-counters-kept
else
    t_fail migrate-linux/smart-counters-kept "host_write_commands ${w0:-?} -> ${w1:-?}"
fi
