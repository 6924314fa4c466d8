#!/bin/bash
# Reliability: the Debian guest (build/guest) makes N round trips A -> B -> A between
# nvmevm processes while fio, in a loop, writes 32 MiB of random 4k blocks on its NVMe
# disk and verifies every one (crc32c) after each pass, so every pass spans migrations.
# At the end the loop is stopped over the serial console of the last process: every fio
# pass must have verified clean (0 mismatches, 0 errors) and the guest must still answer.
# The guest runs the image's shell (nvmevm.run=shell); each process's console input is a
# FIFO, so the last one can be typed into.
# usage: tests/reliability/roundtrips.sh [N=20]
set -uo pipefail
. "$(dirname "$0")/lib.sh"
N=${1:-20}
[[ $N =~ ^[0-9]+$ ]] && [ "$N" -gt 0 ] || { echo "usage: $0 [N]" >&2; exit 2; }
rel_enter_sandbox "$0" "$@"
[ -f "$GUEST_DIR/initrd.img" ] || { echo "roundtrips: no guest image in $GUEST_DIR" >&2; exit 2; }

work=$(mktemp -d /var/tmp/nvmevm-roundtrips.XXXXXX)
disk=$work/disk.img
truncate -s 256M "$disk"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null && { wait "$p"; } 2>/dev/null; done
    rm -rf "$work"
}
trap cleanup EXIT
port=$((33000 + $$ % 1000 * 20))
RUN=("$NVMEVM" run --mem 512M)

# start_vm K [ARGS...]: process K with console input from FIFO $work/in-K (kept open on
# fd IN_FD so the guest never sees end-of-file) and output in $work/vm-K.log.
start_vm() {
    local k=$1
    shift
    mkfifo "$work/in-$k"
    exec {IN_FD}<>"$work/in-$k"
    "${RUN[@]}" --control "$work/vm-$k.sock" "$@" "$disk" <"$work/in-$k" \
        >"$work/vm-$k.log" 2>&1 &
    LAST=$!
    pids+=("$LAST")
}
type_line() { printf '%s\r' "$2" >&"$1"; } # type_line FD TEXT: Enter is CR on a serial line

start_vm 0 --append "quiet nvmevm.run=shell"
cur=0 cur_pid=$LAST cur_fd=$IN_FD
if ! wait_for "$work/vm-0.log" "nvmevm-init: shell" 600; then
    echo "roundtrips: the guest did not boot"
    show_tail "$work/vm-0.log" 20
    exit 1
fi
sleep 2 # the shell opens the console after printing that line
type_line "$cur_fd" '. /scripts/lib-nvme.sh; wait_nvme /dev/nvme0n1 && echo "nvme:"" ready"'
wait_for "$work/vm-0.log" "nvme: ready" 120 || { echo "roundtrips: no NVMe disk in the guest"; show_tail "$work/vm-0.log"; exit 1; }
# The loop counts passes and failed passes, and fio's verification complaints (mismatches).
type_line "$cur_fd" '(n=0; bad=0; mism=0; while [ ! -e /tmp/stop ]; do n=$((n+1)); fio --name=rt --filename=/dev/nvme0n1 --size=32M --rw=randwrite --bs=4k --ioengine=libaio --iodepth=16 --direct=1 --verify=crc32c --verify_fatal=1 --do_verify=1 >/tmp/fio.out 2>&1; s=$?; m=$(grep -c -i "verify failed\|bad magic\|bad header\|mismatch" /tmp/fio.out); mism=$((mism+m)); [ $s -eq 0 ] || { bad=$((bad+1)); tail -8 /tmp/fio.out; }; echo "fio-loop: pass $n status $s mismatches $m"; echo "$n $bad $mism" >/tmp/fio.sum; done; echo "fio-loop"": stopped") >/dev/console 2>&1 &'
wait_for "$work/vm-0.log" "fio-loop: pass 1 " 600 || { echo "roundtrips: fio did not run"; show_tail "$work/vm-0.log"; exit 1; }
echo "roundtrips: guest up, fio looping: $(grep -m1 'fio-loop: pass 1 ' "$work/vm-0.log")"

# hop K: migrate the current process into a new process K.
hop() {
    local k=$1 p=$((port + $1 % 20))
    start_vm "$k" --incoming "tcp:127.0.0.1:$p"
    local new_pid=$LAST new_fd=$IN_FD
    wait_for "$work/vm-$k.log" "waiting for an incoming migration" 120 || return 1
    timeout 900 "$NVMEVM" migrate --socket "$work/vm-$cur.sock" "tcp:127.0.0.1:$p" \
        >"$work/mig-$k.log" 2>&1 || return 1
    local rc=0
    wait "$cur_pid" || rc=$?
    [ "$rc" -eq 0 ] || { echo "roundtrips: process $cur exited $rc after migrating"; return 1; }
    exec {cur_fd}>&-
    cur=$k cur_pid=$new_pid cur_fd=$new_fd
}
k=0
for ((r = 1; r <= N; r++)); do
    for dir in "A -> B" "B -> A"; do
        k=$((k + 1))
        if ! hop "$k"; then
            echo "roundtrips: round trip $r, $dir failed: $(tail -1 "$work/mig-$k.log" 2>/dev/null)"
            show_tail "$work/vm-$cur.log" 15
            show_tail "$work/vm-$k.log" 15
            echo "$((r - 1)) round trips, migration failed"
            exit 1
        fi
        echo "roundtrips: $r/$N $dir: $(tail -1 "$work/mig-$k.log")"
    done
    passes=$(cat "$work"/vm-*.log | grep -c "fio-loop: pass ")
    echo "roundtrips: round trip $r done; fio passes so far: $passes"
done

# Stop the loop after its current pass and end the VM with the number of failed passes.
type_line "$cur_fd" 'touch /tmp/stop; wait; read n bad mism </tmp/fio.sum; echo "fio-summary: passes $n failed $bad mismatches $mism"; exit $((bad > 0 || mism > 0))'
rc=0
timeout 900 tail --pid="$cur_pid" -f /dev/null
wait "$cur_pid" || rc=$?
log=$work/vm-$cur.log
read -r _ _ passes _ failed _ mism < <(grep -h "fio-summary:" "$log" | tr -d '\r' | tail -1)
grep -h "fio-loop: pass " "$work"/vm-*.log | tr -d '\r' | awk '$6 != 0 || $8 != 0' | head -5
echo "roundtrips: guest exit status $rc; fio: ${passes:-?} passes, ${failed:-?} failed, ${mism:-?} mismatches"
if [ "$rc" -eq 0 ] && [ "${failed:-1}" = 0 ] && [ "${mism:-1}" = 0 ] && [ "${passes:-0}" -gt 0 ]; then
    echo "$N round trips, 0 mismatches"
    exit 0
fi
show_tail "$log" 20
echo "$N round trips, ${mism:-?} mismatches, ${failed:-?} failed fio passes (guest status $rc)"
exit 1
