#!/bin/sh
# Exit with the status given as nvmevm.arg (0-255).
case ${1:-} in
"" | *[!0-9]*) echo "exit: nvmevm.arg must be a number, got '${1:-}'"; exit 2 ;;
esac
exit "$1"
