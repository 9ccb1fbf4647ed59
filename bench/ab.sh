#!/bin/bash
# ab.sh: A/B of libloom builds (and Open MPI) by alternating runs, the method behind
# the before/after tables of bench/RESULTS.md. Each round runs every version once, in
# the order given; the medians and every value follow. On this noisy 2-core machine a
# difference counts only when it holds across rounds and both orders.
#
#   bench/ab.sh [-n RANKS] [-p] [-b BUILD] [-s SHIFT] ROUNDS "VERSION ..." -- LOOM-PERF-ARGS
#
# VERSION: a directory holding a libloom.so (loaded with LD_LIBRARY_PATH, the same
# loom-perf binary) or "cur" for BUILD's own, either optionally followed by
# ":VAR=V;VAR=V" (settings for that version's ranks, as bench/net-ab takes them), or
# "mpi" for bench/peers/mpi-perf under mpirun. -p pins rank i to CPU i (RANKS at most the CPUs; mpirun --bind-to core),
# else ranks float (loomrun; mpirun --bind-to none). -s: round r starts with version
# (SHIFT + r) mod the number of versions and goes on in order (default: every round in
# the order given); bench/when-far's runs pass their count so that no version always
# runs first in an episode. Times are loom-perf's
# out-of-place column (in place for broadcast, as bench/compare reads it), in us.
#   e.g. cp build/libloom.so /tmp/before/; (change, rebuild)
#        bench/ab.sh -p 8 "/tmp/before cur mpi" -- -o broadcast -b 8 -e 32 -f 4 -n 100000 -w 5000
set -euo pipefail
. "$(dirname "$0")/cli.sh"
cli_scan "$0" "$@"
n=2 pin=0 B=build shift0=
while getopts "n:pb:s:" o; do
    case $o in n) n=$OPTARG ;; p) pin=1 ;; b) B=$OPTARG ;; s) shift0=$OPTARG ;; *) exit 2 ;; esac
done
shift $((OPTIND - 1))
[ $# -ge 3 ] && [ "$3" = "--" ] || { sed -n 7p "$0"; exit 2; }
rounds=$1 versions=$2
shift 3
col=6
case " $* " in *" -o broadcast "*) col=10 ;; esac
out=$(mktemp)
trap 'rm -f "$out"' EXIT
port=$((30000 + $$ % 20000))
read -ra all <<< "$versions"
for ((r = 0; r < rounds; r++)); do
    order=("${all[@]}")
    if [ -n "$shift0" ]; then
        k=$(( (shift0 + r) % ${#all[@]} ))
        order=("${all[@]:k}" "${all[@]:0:k}")
    fi
    for v in "${order[@]}"; do
        if [ "$v" = mpi ]; then
            bind=none; [ $pin = 1 ] && bind=core
            rows=$(timeout 600 mpirun --allow-run-as-root --oversubscribe --bind-to $bind -np "$n" \
                   "$B/bench/mpi-perf" "$@" 2>&1 | grep -E '^ +[0-9]' || true)
        else
            lib=${v%%:*} envs=()
            [[ $v == *:* ]] && IFS=';' read -ra envs <<< "${v#*:}"
            [ "$lib" = cur ] && lib=$B
            if [ $pin = 1 ]; then
                port=$((port + 1))
                for ((i = 1; i < n; i++)); do
                    env "${envs[@]}" LD_LIBRARY_PATH=$lib LOOM_ROOT_ADDR=127.0.0.1:$port LOOM_RANK=$i LOOM_WORLD_SIZE=$n \
                        timeout 600 taskset -c $i "$B/bench/loom-perf" "$@" > /dev/null 2>&1 &
                done
                rows=$(env "${envs[@]}" LD_LIBRARY_PATH=$lib LOOM_ROOT_ADDR=127.0.0.1:$port LOOM_RANK=0 LOOM_WORLD_SIZE=$n \
                       timeout 600 taskset -c 0 "$B/bench/loom-perf" "$@" 2>&1 | grep -E '^ +[0-9]' || true)
                wait
            else
                rows=$(env "${envs[@]}" LD_LIBRARY_PATH=$lib timeout 600 "$B/tools/loomrun" -n "$n" "$B/bench/loom-perf" "$@" 2>&1 |
                       grep -E '^\[0\] +[0-9]' | sed 's/^\[0\]//' || true)
            fi
        fi
        printf '%s\n' "$rows" | awk -v v="$v" -v c=$col 'NF > c { print v, $1, $c }' >> "$out"
    done
done
# version size time -> per version and size: the median and every value, sorted
sort -k2,2n -k1,1 -k3,3g "$out" | awk '
    function flush() { if (key != "") { m = (k % 2) ? a[(k + 1) / 2] : (a[k / 2] + a[k / 2 + 1]) / 2
                       printf "%-24s %10s  median %9.3f  all %s\n", ver, size, m, vals } }
    { if ($1 " " $2 != key) { flush(); key = $1 " " $2; ver = $1; size = $2; k = 0; vals = "" }
      a[++k] = $3; vals = vals " " $3 }
    END { flush() }'
