#!/bin/sh
# What the guest's nvme driver and nvme-cli see of the controller (the host-side test
# checks these lines against what nvmevm should report).
. /scripts/lib-nvme.sh
wait_nvme /dev/nvme0n1 || exit 3
echo "devices: $(ls /dev/nvme* | tr '\n' ' ')"
nvme list
nvme id-ctrl /dev/nvme0 | grep -E '^(vid|sn|mn|fr|mdts|oacs|oncs|vwc|aerl|nn|sgls|ver) '
for ns in /dev/nvme0n*; do
    echo "== id-ns $ns"
    nvme id-ns "$ns" | grep -E '^(nsze|ncap|nuse|flbas|dlfeat) |^lbaf  0'
done
echo "== smart-log"
nvme smart-log /dev/nvme0 | grep -E 'critical_warning|data_units_read|data_units_written|host_read_commands|host_write_commands|power_cycles|power_on_hours|unsafe_shutdowns'
echo "== error-log"
nvme error-log /dev/nvme0 -e 1 | head -5
echo "== get-feature"
nvme get-feature /dev/nvme0 -f 7 -H | head -3
nvme get-feature /dev/nvme0 -f 6 -H | head -3
