#!/bin/bash
# modorder.sh MODDIR MODULE... -- print the .ko files (paths relative to
# MODDIR) needed to load MODULEs, in load order (dependencies first, each once).
# MODDIR is a lib/modules/<version> directory with a modules.dep (depmod output).
# Module names match with '-' and '_' treated alike, as modprobe does.
set -euo pipefail
if [ $# -lt 2 ]; then
    echo "usage: modorder.sh MODDIR MODULE..." >&2
    exit 2
fi
moddir=$1
shift
if [ ! -f "$moddir/modules.dep" ]; then
    echo "modorder: error: no modules.dep in $moddir (run depmod -b)" >&2
    exit 1
fi
awk -v want="$*" '
function norm(s) { gsub(/-/, "_", s); return s }
function modname(p,   n) { n = p; sub(/.*\//, "", n); sub(/\.ko(\.[a-z]+)?$/, "", n); return norm(n) }
{
    sub(/:$/, "", $1)
    n = modname($1)
    path[n] = $1
    nd = NF - 1
    ndeps[n] = nd
    # modules.dep lists the deepest dependency last: load from the end.
    for (i = 2; i <= NF; i++) dep[n, i - 1] = $i
}
function emit(p,   n, i) {
    n = modname(p)
    if (n in done) return
    if (!(n in path)) { print "modorder: error: module " n " not in modules.dep" > "/dev/stderr"; bad = 1; return }
    for (i = ndeps[n]; i >= 1; i--) emit(dep[n, i])
    done[n] = 1
    print path[n]
}
END {
    k = split(want, w, " ")
    for (j = 1; j <= k; j++) emit(norm(w[j]))
    exit bad
}' "$moddir/modules.dep"
