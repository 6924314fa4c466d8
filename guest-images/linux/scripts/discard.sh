#!/bin/sh
# Write a pattern, discard it (Dataset Management deallocate), read back: must be zeroes.
. /scripts/lib-nvme.sh
wait_nvme /dev/nvme0n1 || exit 3
dev=/dev/nvme0n1
# 1 MiB of 0xA5 at offset 2 MiB.
dd if=/dev/zero bs=1M count=1 2>/dev/null | tr '\000' '\245' >/tmp/pat
dd if=/tmp/pat of=$dev bs=1M seek=2 count=1 oflag=direct 2>/dev/null || exit 1
dd if=$dev bs=1M skip=2 count=1 iflag=direct 2>/dev/null | cmp -s - /tmp/pat ||
    { echo "discard: pattern did not read back"; exit 1; }
echo "discard: pattern written"
blkdiscard -o $((2 * 1048576)) -l 1048576 $dev || { echo "discard: blkdiscard failed"; exit 1; }
dd if=/dev/zero of=/tmp/zero bs=1M count=1 2>/dev/null
if dd if=$dev bs=1M skip=2 count=1 iflag=direct 2>/dev/null | cmp -s - /tmp/zero; then
    echo "discard: reads back zeroes"
else
    echo "discard: NOT zeroes after discard"
    exit 1
fi
