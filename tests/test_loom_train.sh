#!/bin/sh
# test_loom_train.sh: the loom-train command line and its pictures: a short pipelined run
# with --trace (its last line, a Chrome-trace JSON that pipeline-timeline draws and
# measures), and bad input (a layout that does not match the ranks, unknown options,
# missing data) refused with a clear message and a non-zero status.
#
#     sh tests/test_loom_train.sh LOOMRUN LOOM-TRAIN PIPELINE-TIMELINE
#
# Every run is bounded by timeout(1).
LOOMRUN=${1:?usage} TRAIN=${2:?usage} TIMELINE=${3:?usage}
dir=$(mktemp -d "${TMPDIR:-/tmp}/test_loom_train.XXXXXX") || exit 1
trap 'rm -rf "$dir"' EXIT
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
show() { sed 's/^/    | /' "$1"; }

# 1. a 2-stage 1F1B run with a trace, drawn
timeout 120 "$LOOMRUN" -n 2 "$TRAIN" --pp 2 --micro-batches 4 --data synthetic --synthetic-n 2048 \
    --epochs 2 --steps 6 --batch 64 --trace "$dir/t.json" >"$dir/run.out" 2>&1
rc=$?
[ $rc = 0 ] || { fail "traced run exited $rc"; show "$dir/run.out"; }
grep -Eq '^\[0\] final: train_loss=[0-9.]+ test_acc=[0-9.]+ samples_per_s=[0-9]+$' "$dir/run.out" ||
    { fail "no final line"; show "$dir/run.out"; }
[ "$(grep -c '^\[0\] epoch ' "$dir/run.out")" = 2 ] || { fail "not 2 epoch lines"; show "$dir/run.out"; }
python3 -c "import json,sys; e=json.load(open(sys.argv[1]))['traceEvents']; \
c=lambda k: sum(1 for x in e if x.get('cat')==k); \
assert c('fwd')==2*2*6*4 and c('bwd')==2*2*6*4 and c('pp')>0, (c('fwd'),c('bwd'),c('pp'))" "$dir/t.json" ||
    fail "the trace does not hold 4 forwards and 4 backwards per step per stage"
python3 "$TIMELINE" "$dir/t.json" -o "$dir/t.svg" >"$dir/tl.out" 2>&1 || { fail "pipeline-timeline failed"; show "$dir/tl.out"; }
grep -q 'theory (p-1)/m = 0.250' "$dir/tl.out" || { fail "no bubble line for p=2 m=4"; show "$dir/tl.out"; }
grep -q '<rect' "$dir/t.svg" 2>/dev/null || fail "no SVG drawn"

# 2. bad input: clear message, non-zero status, nothing hangs
expect_refused() {   # NAME PATTERN CMD...
    name=$1 pat=$2; shift 2
    timeout 60 "$@" >"$dir/$name.out" 2>&1
    rc=$?
    if [ $rc = 0 ] || [ $rc = 124 ]; then fail "$name: exit status $rc"; show "$dir/$name.out";
    elif ! grep -q -- "$pat" "$dir/$name.out"; then fail "$name: no '$pat' in:"; show "$dir/$name.out"; fi
}
expect_refused layout "must equal the 3 ranks" "$LOOMRUN" -n 3 "$TRAIN" --dp 2 --data synthetic
expect_refused depth "raise --depth" "$LOOMRUN" -n 4 "$TRAIN" --pp 4 --depth 1 --data synthetic
expect_refused hidden "not a multiple of --tp 3" "$LOOMRUN" -n 3 "$TRAIN" --tp 3 --hidden 256 --data synthetic
expect_refused option "--zero wants 0 or 1" "$TRAIN" --zero 2
expect_refused data "dataset-fashion-mnist" "$TRAIN" --data-dir "$dir/nowhere"

[ $failures = 0 ] && echo "loom-train: all checks passed"
[ $failures = 0 ]
