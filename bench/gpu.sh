#!/bin/bash
# bench/gpu.sh: issue 4's GPU run in one command on a machine with a GPU (no apt needed:
# a C compiler, nvcc, meson and ninja). Logs go to $OUT (default bench/results/gpu).
#   bench/gpu.sh quick   build, the GPU tests on 1-2 ranks, a small loom-perf sample
#   bench/gpu.sh tests   build, the whole GPU suite, compute-sanitizer (memcheck and
#                        racecheck on the reduced set), the copy bandwidth and the
#                        reduction kernel alone (bench/gpu-kernels)
#   bench/gpu.sh perf    build, loom-perf tables for 1, 2, 4 and 8 ranks sharing GPU 0
#                        (allreduce, allgather, reducescatter, 8 B to 1 GiB) and the
#                        device copy in the same run, under CUDA MPS when the machine has
#                        it (a private daemon, stopped at the end), and 2 ranks without;
#                        all-reduce at 64 MiB to 1 GiB for 1 to 32 channels per rank;
#                        LL against simple (8 B-1 MiB), host-memory FIFOs, tcp staging
# Every step is bounded (timeout) and the script goes on after a failure. Files: the
# summary (which steps failed), steps.log (every step's output), perf.log (tables).
set -u
. "$(dirname "$0")/cli.sh"
cli_scan "$0" "$@"
phase=${1:-quick}
case $phase in
quick|tests|perf) ;;
*) echo "gpu.sh: unknown phase '$phase' (quick, tests or perf)" >&2; cli_help "$0" >&2; exit 2 ;;
esac
cd "$(dirname "$0")/.."
OUT=${OUT:-bench/results/gpu}
mkdir -p "$OUT"
B=build-gpu
fails=""
step() {   # step NAME SECONDS CMD...: run, log, note failures
    local name=$1 secs=$2; shift 2
    local t0=$SECONDS log="$OUT/steps.log"
    case $name in perf-*) log="$OUT/perf.log" ;; esac
    echo "=== $name: $*" >>"$log"
    timeout -k 5 "$secs" "$@" >>"$log" 2>&1
    local rc=$?
    printf '%-28s rc=%-3s %5d s\n' "$name" "$rc" $((SECONDS - t0)) | tee -a "$OUT/summary.txt"
    [ $rc = 0 ] || fails="$fails $name"
}
: >"$OUT/summary.txt"; : >"$OUT/steps.log"
[ "$phase" = tests ] || : >"$OUT/perf.log"      # the tables survive a later tests run
nvidia-smi >"$OUT/nvidia-smi.txt" 2>&1
# A build carried from another machine (same CPU architecture) is used as it is.
if [ ! -x $B/tests/test_cuda ]; then
    step setup 300 meson setup --wipe $B -Dcuda=enabled -Dhwloc=disabled -Dibverbs=disabled
    step build 600 ninja -C $B
fi
PERF="$B/bench/loom-perf -G 1 -b 8 -e 1G -f 8 -n 10 -w 2"
T=$B/tests/test_cuda
P="$B/tools/loomrun"
if [ "$phase" = quick ]; then
    step cuda-coll-r1 120 $T coll 1 quick
    step cuda-coll-r2 300 $T coll 2 quick
    step cuda-coll-r2-ll 300 env LOOM_PROTO=ll $T coll 2 quick
    step cuda-coll-r2-hostfifo 300 env LOOM_CUDA_FIFO=host $T coll 2 quick
    step cuda-coll-r2-tcp 300 env LOOM_TRANSPORT=tcp $T coll 2 quick
    step cuda-stream-r2 120 $T stream 2
    step cuda-fail-kill 60 $T kill
    step cuda-fail-timeout 60 $T timeout
    step cuda-fail-abort 60 $T abort
    step perf-allreduce-r2 300 $P -n 2 $B/bench/loom-perf -G 1 -o allreduce -b 8 -e 256M -f 8 -n 10 -w 2
    step gpu-kernels 300 $B/bench/gpu-kernels 256M
elif [ "$phase" = tests ]; then
    # the suite of tests/meson.build's 'cuda' suite, run directly
    for n in 1 2 3 4 8; do step cuda-coll-r$n 120 $T coll $n; done
    step cuda-coll-r4-big 150 $T coll 4 big
    step cuda-stream-r3 60 $T stream 3
    step cuda-coll-r3-ll 120 env LOOM_PROTO=ll $T coll 3
    step cuda-coll-r3-simple 120 env LOOM_PROTO=simple $T coll 3
    step cuda-coll-r4-hostfifo 120 env LOOM_CUDA_FIFO=host $T coll 4 quick
    step cuda-threads-r4 120 $T threads 4
    step cuda-threads-r3-hostfifo 120 env LOOM_CUDA_FIFO=host $T threads 3
    step cuda-mismatch 120 $T mismatch
    step cuda-coll-r3-tcp 300 env LOOM_TRANSPORT=tcp $T coll 3 quick
    step cuda-stream-r2-tcp 120 env LOOM_TRANSPORT=tcp $T stream 2
    for c in kill timeout abort; do step cuda-fail-$c 60 $T $c; done
    step memcheck 100 compute-sanitizer --tool memcheck --report-api-errors no --error-exitcode 1 $T coll 2 quick
    step racecheck 100 compute-sanitizer --tool racecheck --report-api-errors no --error-exitcode 1 $T coll 1 quick
else
    step gpu-kernels 60 $B/bench/gpu-kernels 1G
    step perf-memcpy 60 $PERF -o memcpy
    step perf-allreduce-r2-timesliced 120 $P -n 2 $PERF -o allreduce -e 64M
    mps=0
    if command -v nvidia-cuda-mps-control >/dev/null; then
        export CUDA_MPS_PIPE_DIRECTORY=/tmp/loom-mps CUDA_MPS_LOG_DIRECTORY=/tmp/loom-mps-log
        mkdir -p $CUDA_MPS_PIPE_DIRECTORY $CUDA_MPS_LOG_DIRECTORY
        nvidia-cuda-mps-control -d && mps=1
        # a client must work under it, else go on without
        if [ $mps = 1 ] && ! timeout 30 $PERF -o memcpy -e 8 >>"$OUT/steps.log" 2>&1; then
            echo quit | nvidia-cuda-mps-control; mps=0
        fi
    fi
    echo "MPS: $mps" | tee -a "$OUT/summary.txt"
    E=1G; [ $mps = 1 ] || E=64M          # time-sliced processes are slow: fewer sizes
    for n in 1 2 4 8; do
        for op in allreduce allgather reducescatter; do
            step perf-$op-r$n 100 $P -n $n $PERF -o $op -e $E
        done
    done
    # channels per rank (LOOM_CUDA_CHANNELS) at large sizes
    for ch in 1 2 4 8 16 32; do
        for n in 2 8; do
            step perf-sweep-ch$ch-r$n 60 env LOOM_CUDA_CHANNELS=$ch $P -n $n $PERF -o allreduce -b 64M -e $E
        done
    done
    # the two protocols on small and medium messages, and staging over tcp (one GPU)
    for proto in simple ll; do
        step perf-proto-$proto-r2 60 env LOOM_PROTO=$proto $P -n 2 $PERF -o allreduce -b 8 -e 1M
        step perf-proto-$proto-r8 60 env LOOM_PROTO=$proto $P -n 8 $PERF -o allreduce -b 8 -e 1M
    done
    step perf-hostfifo-r2 60 env LOOM_CUDA_FIFO=host $P -n 2 $PERF -o allreduce -e 256M
    step perf-tcp-staged-r2 100 env LOOM_TRANSPORT=tcp $P -n 2 $PERF -o allreduce -e 256M
    [ $mps = 1 ] && echo quit | nvidia-cuda-mps-control
fi
echo "failed steps:${fails:- none}" | tee -a "$OUT/summary.txt"
[ -s "$OUT/perf.log" ] && grep -E '^(\[0\] )?( +[0-9]|=== |# (Avg|Out))' "$OUT/perf.log" | sed 's/^\[0\] //' | cut -c1-150
