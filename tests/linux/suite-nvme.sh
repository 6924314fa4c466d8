#!/bin/bash
# Level 3, NVMe: the Debian guest's nvme driver, nvme-cli and fio on nvmevm's controller.
# Runs where a Linux kernel can run (directly or inside the sandbox, see run.sh).
set -uo pipefail
. "$(dirname "$0")/../lib.sh"

BOOT_TIMEOUT=${LINUX_BOOT_TIMEOUT:-600}
FIO_SIZE=${NVME_FIO_SIZE:-256M}
# Disks live outside tmpfs when possible so O_DIRECT (cache=none) is exercised.
DISK_DIR=${NVME_DISK_DIR:-$TEST_TMP}
d1="$DISK_DIR/nvme-a.img"
d2="$DISK_DIR/nvme-b.img"
rm -f "$d1" "$d2"
truncate -s 512M "$d1"
truncate -s 64M "$d2"

# nvme_boot LOG SCRIPT [ARG...]: boots the default guest with both disks.
nvme_boot() {
    local log=$1 script=$2
    shift 2
    local append="quiet nvmevm.run=$script"
    for a in "$@"; do append+=" nvmevm.arg=$a"; done
    run_capture "$log" "$BOOT_TIMEOUT" "$NVMEVM" run --mem 512M --no-stdin \
        --append "$append" "$d1" "$d2"
}

# expect LOG NAME PATTERN...: PASS if every extended regex matches a line.
expect() {
    local log=$1 name=$2
    shift 2
    for pat in "$@"; do
        if ! grep -Eq -- "$pat" "$log"; then
            t_fail "nvme/$name" "no line matching '$pat' (status $RC)"
            show_tail "$log" 25
            return 1
        fi
    done
    t_pass "nvme/$name"
}

log="$TEST_TMP/nvme-info.log"
nvme_boot "$log" nvme-info
expect "$log" namespaces-appear "devices: .*/dev/nvme0n1 .*/dev/nvme0n2" && \
expect "$log" id-ctrl '^mn +: nvmevm NVMe controller' '^sn +: NVMEVM0001' '^vid +: 0x1b36' \
    '^ver +: 0x10400' && \
expect "$log" id-ns-sizes '^nsze +: 0x100000' '^nsze +: 0x20000' && \
expect "$log" smart-log 'critical_warning[[:space:]]+: 0' 'power_cycles[[:space:]]+: [1-9]' 'host_read_commands[[:space:]]+: [1-9]' && \
expect "$log" get-feature-queues 'Number of IO Completion Queues Allocated' && \
t_check nvme/info-exit "status $RC" [ "$RC" -eq 0 ]

log="$TEST_TMP/nvme-discard.log"
nvme_boot "$log" discard
expect "$log" discard-reads-zeroes "discard: reads back zeroes" && \
    t_check nvme/discard-exit "status $RC" [ "$RC" -eq 0 ]

# Data written in one boot is there in the next, and in the host's file.
tag="t$$"
log="$TEST_TMP/nvme-persist1.log"
nvme_boot "$log" persist write "$tag"
log2="$TEST_TMP/nvme-persist2.log"
nvme_boot "$log2" persist check "$tag"
if [ "$RC" -eq 0 ] && dd if="$d1" bs=512 skip=16384 count=1 2>/dev/null |
    grep -q "nvmevm-persist-$tag"; then
    t_pass nvme/persists-across-reboot
else
    t_fail nvme/persists-across-reboot "status $RC"
    show_tail "$log2" 10
fi

log="$TEST_TMP/nvme-fio.log"
start=$(date +%s)
nvme_boot "$log" fio-verify "$FIO_SIZE"
echo "nvme: fio verify over $FIO_SIZE took $(($(date +%s) - start)) s"
expect "$log" fio-verify-"$FIO_SIZE" "fio-verify: ok" && \
    t_check nvme/fio-verify-exit "status $RC" [ "$RC" -eq 0 ]
# Mixed sizes 512 B-64 KiB at QD24 with trims among the writes (it once soft-locked a
# 2-vCPU sandbox): written blocks verified, trimmed blocks read back as zeroes.
log="$TEST_TMP/nvme-fio-trim.log"
start=$(date +%s)
nvme_boot "$log" fio-trim "${NVME_TRIM_SIZE:-64M}"
echo "nvme: fio trim+write verify over ${NVME_TRIM_SIZE:-64M} took $(($(date +%s) - start)) s"
expect "$log" fio-trim-verify "fio-trim: ok" && \
    t_check nvme/fio-trim-exit "status $RC" [ "$RC" -eq 0 ]
# The guest cannot delete a disk given on the command line unless it is marked deletable=on.
log="$TEST_TMP/nvme-ns-delete.log"
run_capture "$log" "$BOOT_TIMEOUT" "$NVMEVM" run --mem 512M --no-stdin \
    --append "quiet nvmevm.run=ns-delete" "$d1" "$d2,deletable=on"
expect "$log" ns-delete-protected "ns-delete: protected namespace refused" && \
expect "$log" ns-delete-deletable "ns-delete: deletable namespace deleted" && \
    t_check nvme/ns-delete-exit "status $RC" [ "$RC" -eq 0 ]
rm -f "$d1" "$d2"
