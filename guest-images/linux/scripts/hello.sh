#!/bin/sh
# Print what the guest sees: kernel, CPUs, memory.
echo "kernel: $(uname -r)"
echo "cpus: $(grep -c '^processor' /proc/cpuinfo)"
echo "memory: $(awk '$1 == "MemTotal:" { print $2 }' /proc/meminfo) kB"
