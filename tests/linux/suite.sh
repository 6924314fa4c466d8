#!/bin/bash
# Level 3: the Debian Linux guest under nvmevm. Runs where /dev/kvm can run a Linux kernel:
# directly on such a host, or inside the QEMU TCG sandbox (tests/linux/run.sh decides).
set -uo pipefail
. "$(dirname "$0")/../lib.sh"

# Console output costs an exit per character under nested KVM: keep the guest quiet.
BASE_APPEND="quiet"
BOOT_TIMEOUT=${LINUX_BOOT_TIMEOUT:-400}

# linux_boot LOG CPUS MEM SCRIPT [ARG]: boots the default guest running /scripts/SCRIPT.sh.
linux_boot() {
    local log=$1 cpus=$2 mem=$3 script=$4 arg=${5:-}
    local append="$BASE_APPEND nvmevm.run=$script"
    [ -n "$arg" ] && append+=" nvmevm.arg=$arg"
    run_capture "$log" "$BOOT_TIMEOUT" "$NVMEVM" run --cpus "$cpus" --mem "$mem" --no-stdin \
        --append "$append"
}

# One boot, several checks: 1 vCPU, 768 MiB, reaches /init, reports, exits 0.
log="$TEST_TMP/linux-1cpu.log"
linux_boot "$log" 1 768M hello
if ! grep -q "nvmevm-init: started" "$log"; then
    t_fail linux/boot-1cpu "guest never reached /init (status $RC)"
    show_tail "$log" 30
else
    t_check linux/boot-1cpu "want 'cpus: 1' and exit 0 (status $RC)" \
        bash -c "grep -q '^cpus: 1' '$log' && [ $RC -eq 0 ]"
    memkb=$(awk '/^memory:/ {print $2}' "$log")
    # MemTotal is RAM less what the kernel keeps for itself: expect 85-100% of 768 MiB.
    t_check linux/memory-size "MemTotal ${memkb:-?} kB for --mem 768M" \
        bash -c "[ -n '$memkb' ] && [ '$memkb' -gt 668467 ] && [ '$memkb' -le 786432 ]"
    t_check linux/kernel-version "want 6.1 in 'kernel:' line" grep -q '^kernel: 6\.1\.' "$log"
fi

log="$TEST_TMP/linux-2cpu.log"
linux_boot "$log" 2 512M hello
t_check linux/boot-2cpus "want 'cpus: 2' and exit 0 (status $RC)" \
    bash -c "grep -q '^cpus: 2' '$log' && [ $RC -eq 0 ]" || true
grep -q '^cpus: 2' "$log" || show_tail "$log" 30

# The guest's exit status becomes nvmevm's.
log="$TEST_TMP/linux-exit.log"
linux_boot "$log" 1 512M exit 7
t_check linux/exit-status "status $RC, want 7" [ "$RC" -eq 7 ]

# A line typed on the serial console reaches the guest's shell.
serial_input() {
    local log="$TEST_TMP/linux-echo.log" fifo="$TEST_TMP/console.in"
    rm -f "$fifo" && mkfifo "$fifo"
    timeout -k 5 "$BOOT_TIMEOUT" "$NVMEVM" run --mem 512M \
        --append "$BASE_APPEND nvmevm.run=echo" <"$fifo" >"$log" 2>&1 &
    local pid=$!
    exec 3>"$fifo"
    local waited=0
    while ! grep -q "echo: ready" "$log" && [ $waited -lt $((BOOT_TIMEOUT * 10)) ]; do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
        waited=$((waited + 1))
    done
    sleep 0.5
    printf 'typed-on-the-host 42\r' >&3
    local rc=0
    wait "$pid" || rc=$?
    exec 3>&-
    if grep -q "got: typed-on-the-host 42" "$log" && [ $rc -eq 0 ]; then
        t_pass linux/serial-input
    else
        t_fail linux/serial-input "guest did not echo the typed line (status $rc)"
        show_tail "$log" 20
    fi
}
serial_input
