#!/bin/sh
# test_tools.sh: every loom tool (programs and scripts) answers --help on stdout with
# status 0, --version with "NAME (loom) VERSION", and names an unknown option with a
# non-zero status; bench/gpu.sh --help starts nothing (writes no log).
#
#   test_tools.sh BUILD_DIR SOURCE_DIR VERSION
set -u
build=${1:?usage: test_tools.sh BUILD_DIR SOURCE_DIR VERSION} src=${2:?} version=${3:?}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/loom-tools.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
fail=0 n=0
check() {   # check PATH
    t=$1 name=$(basename "$1")
    [ -e "$t" ] || return 0                      # optional ones (MPI, Gloo, CUDA) not built
    n=$((n + 1))
    OUT=$tmp/out timeout 20 "$t" --help >"$tmp/h" 2>"$tmp/he"; rc=$?
    [ $rc = 0 ] && [ -s "$tmp/h" ] || { echo "FAIL: $name --help: status $rc, $(head -c 200 "$tmp/he")"; fail=1; }
    v=$(timeout 20 "$t" --version 2>&1)
    [ "$v" = "$name (loom) $version" ] || { echo "FAIL: $name --version said '$v'"; fail=1; }
    timeout 20 "$t" --no-such-option >"$tmp/u" 2>&1; rc=$?
    [ $rc != 0 ] && grep -q -- "--no-such-option" "$tmp/u" ||
        { echo "FAIL: $name --no-such-option: status $rc, $(head -c 200 "$tmp/u")"; fail=1; }
}
for t in tools/loomrun tools/loom-env bench/loom-perf train/loom-train bench/tcp-ring bench/cpu-pingpong \
         bench/cma-allgather bench/mpi-perf bench/gloo-perf bench/gpu-kernels; do
    check "$build/$t"
done
for t in bench/gpu.sh bench/ab.sh bench/when-far bench/results.sh bench/train.sh bench/compare bench/net-ab \
         bench/results_table.py tools/pipeline-timeline; do
    check "$src/$t"
done
[ -e "$tmp/out" ] && { echo "FAIL: bench/gpu.sh --help wrote $tmp/out: it started something"; fail=1; }
[ $fail = 0 ] && echo "tools: $n answer --help, --version and name an unknown option"
exit $fail
