# Shared by the NVMe scripts: the nvme driver probes asynchronously, so wait for a device.
wait_nvme() {
    i=0
    while [ ! -b "$1" ] && [ $i -lt 300 ]; do
        sleep 0.1
        i=$((i + 1))
    done
    [ -b "$1" ] || { echo "nvme: no $1"; return 1; }
}
