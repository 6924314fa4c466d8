#!/bin/sh
# Namespace Management Delete through the guest's nvme-cli: the first disk was given on the
# command line without deletable=on and must survive; the second has deletable=on and goes.
. /scripts/lib-nvme.sh
wait_nvme /dev/nvme0n2 || exit 3
if nvme delete-ns /dev/nvme0 -n 1 2>&1; then
    echo "ns-delete: namespace 1 was deleted"
    exit 1
fi
nvme ns-rescan /dev/nvme0 2>/dev/null
sleep 1
[ -b /dev/nvme0n1 ] || { echo "ns-delete: /dev/nvme0n1 vanished"; exit 1; }
echo "ns-delete: protected namespace refused"
nvme delete-ns /dev/nvme0 -n 2 || { echo "ns-delete: deletable namespace refused"; exit 1; }
nvme ns-rescan /dev/nvme0 2>/dev/null
i=0
while [ -b /dev/nvme0n2 ] && [ $i -lt 50 ]; do
    sleep 0.1
    i=$((i + 1))
done
[ -b /dev/nvme0n2 ] && { echo "ns-delete: /dev/nvme0n2 still there"; exit 1; }
dd if=/dev/nvme0n1 of=/dev/null bs=4k count=16 iflag=direct 2>/dev/null ||
    { echo "ns-delete: namespace 1 unreadable"; exit 1; }
echo "ns-delete: deletable namespace deleted"
