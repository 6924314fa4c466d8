#!/bin/sh
# The user's own fio job (`nvmevm fio JOB` or `nvmevm run --fio JOB`): nvmevm packs JOB as
# /user/job.fio, --guest-file files beside it, fio options (one per line) in /user/fio-args and
# the number of namespaces in /user/namespaces. The job runs in /user once every namespace
# exists; a job that names no filename= (or directory=) gets all of them
# (filename=/dev/nvme0n1:/dev/nvme0n2...), which are also in $NVME_DISKS. fio's output is
# framed by two marker lines so `nvmevm fio` can pass exactly it to its stdout.
. /scripts/lib-nvme.sh
[ -f /user/job.fio ] || { echo "fio-job: no /user/job.fio (run with --fio JOBFILE)"; exit 2; }
n=$(cat /user/namespaces 2>/dev/null || echo 1)
disks=
ns=1 # not i: wait_nvme uses that one
while [ "$ns" -le "$n" ]; do
    wait_nvme "/dev/nvme0n$ns" || exit 1
    disks=${disks:+$disks:}/dev/nvme0n$ns
    ns=$((ns + 1))
done
export NVME_DISKS="$disks"
job=/user/job.fio
if [ -n "$disks" ] &&
    ! grep -Eq '^[[:space:]]*(filename|directory|filename_format)[[:space:]]*=' "$job"; then
    # Beside the original, so the job's relative paths (include, verify state) still work.
    { printf '[global]\nfilename=%s\n' "$disks"; cat "$job"; } >/user/.job-on-all-disks.fio
    job=/user/.job-on-all-disks.fio
fi
set --
if [ -f /user/fio-args ]; then
    while IFS= read -r a; do set -- "$@" "$a"; done </user/fio-args
fi
cd /user || exit 1
echo "@@nvmevm-fio-begin@@"
fio --eta=never "$@" "$job"
rc=$?
echo "@@nvmevm-fio-end $rc@@"
exit "$rc"
