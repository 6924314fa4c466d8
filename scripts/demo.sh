#!/bin/bash
# The main job on a fresh machine: install what is needed, build nvmevm and the default
# Debian guest, then `nvmevm fio` boots that guest with a 1 GiB NVMe disk and, once the
# namespace exists, runs fio (4k random read/write, crc32c verified) on /dev/nvme0n1, prints
# fio's report and exits with fio's status. On a host whose /dev/kvm cannot run a Linux
# kernel (kvm_pvm, or no /dev/kvm), nvmevm fio runs the guest inside the QEMU TCG sandbox
# and says so in one line.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${NVMEVM_BUILD:-$REPO/build}
export NVMEVM_BUILD=$BUILD
"$REPO/scripts/install-deps.sh"
"$REPO/scripts/build.sh"
job=$REPO/guest-images/linux/jobs/demo.fio
echo "demo: nvmevm fio $job, on a temporary 1 GiB disk"
exec "$BUILD/nvmevm" fio --size 1G "$job"
