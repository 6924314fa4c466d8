#!/bin/sh
# persist.sh write TAG | persist.sh check TAG: a marker written in one boot must be
# there in the next (offset 8 MiB of /dev/nvme0n1).
. /scripts/lib-nvme.sh
wait_nvme /dev/nvme0n1 || exit 3
dev=/dev/nvme0n1
mode=$1
tag=$2
case $mode in
write)
    printf 'nvmevm-persist-%s\n' "$tag" | dd of=$dev bs=512 seek=16384 conv=sync,fsync 2>/dev/null
    sync
    echo "persist: wrote $tag"
    ;;
check)
    got=$(dd if=$dev bs=512 skip=16384 count=1 2>/dev/null | head -1)
    echo "persist: read '$got'"
    [ "$got" = "nvmevm-persist-$tag" ]
    ;;
*) echo "persist: usage write|check TAG"; exit 2 ;;
esac
