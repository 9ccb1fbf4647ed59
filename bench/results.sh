#!/bin/bash
# Reproduces the tables of bench/RESULTS.md (issue 2): the memcpy limit, then
# loom-perf all-reduce on 2 and 4 ranks over shm and over tcp on loopback, 8 B to
# 256 MiB; then the two aims (2-rank shm all-reduce at 16 MiB vs memcpy, 8-byte
# latency) measured 5 times, alternating, to show the spread.
#   bench/results.sh [build-dir] > out.txt
set -euo pipefail
. "$(dirname "$0")/cli.sh"
cli_scan "$0" "$@"
B=${1:-build}
R="$B/tools/loomrun"
P="$B/bench/loom-perf"
echo "## machine"; nproc; lscpu | grep -E 'Model name|L2|L3' || true; uptime
echo "## memcpy, 1 rank";  "$R" -n 1 "$P" -o memcpy -b 8 -e 256M -f 2
echo "## memcpy, 2 ranks at once"; "$R" -n 2 "$P" -o memcpy -b 8 -e 256M -f 2
for n in 2 4; do
  echo "## allreduce shm, $n ranks"; "$R" -n $n "$P" -o allreduce -b 8 -e 256M -f 2
done
for n in 2 4; do
  echo "## allreduce tcp (loopback), $n ranks"
  LOOM_TRANSPORT=tcp LOOM_SOCKET_IFNAME=lo "$R" -n $n "$P" -o allreduce -b 8 -e 256M -f 2
done
echo "## aims: 5 alternating runs"
for i in 1 2 3 4 5; do
  "$R" -n 1 "$P" -o memcpy -b 16M -e 16M | grep -E '^\[0\] +[0-9]' | sed 's/^/memcpy-1 /'
  "$R" -n 2 "$P" -o allreduce -b 16M -e 16M | grep -E '^\[0\] +[0-9]' | sed 's/^/allreduce-2 /'
  "$R" -n 2 "$P" -o allreduce -b 8 -e 8 -n 1000 -w 100 | grep -E '^\[0\] +[0-9]' | sed 's/^/latency-2 /'
done
