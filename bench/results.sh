#!/bin/bash
# Reproduces the tables of bench/RESULTS.md (issue 2): memcpy limit, then loom-perf
# all-reduce on 2 and 4 ranks over shm and over tcp on loopback, 8 B to 256 MiB.
#   bench/results.sh [build-dir] > out.txt
set -euo pipefail
B=${1:-build}
R="$B/tools/loomrun"
P="$B/bench/loom-perf"
echo "## machine"; nproc; lscpu | grep -E 'Model name|L2|L3' || true
echo "## memcpy, 1 rank";  "$R" -n 1 "$P" -o memcpy -b 8 -e 256M -f 4
echo "## memcpy, 2 ranks at once"; "$R" -n 2 "$P" -o memcpy -b 8 -e 256M -f 4
for n in 2 4; do
  echo "## allreduce shm, $n ranks"; "$R" -n $n "$P" -o allreduce -b 8 -e 256M -f 4
done
for n in 2 4; do
  echo "## allreduce tcp (loopback), $n ranks"
  LOOM_TRANSPORT=tcp LOOM_SOCKET_IFNAME=lo "$R" -n $n "$P" -o allreduce -b 8 -e 256M -f 4
done
