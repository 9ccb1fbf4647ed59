#!/bin/sh
# bench/train.sh: loom-train's samples/s per layout on 1, 2 and 4 ranks (issue 5).
#
#     bench/train.sh [BUILD] [DEVICE]       defaults: build cpu
#
# Every layout trains the same model on Fashion-MNIST for one epoch of STEPS steps
# (default 300) with the same global batch; the table gives samples/s of the training
# steps (loom-train's own figure, evaluation excluded). Set MODEL to change the model
# (default: --depth 3 --hidden 512 --batch 128).
BUILD=${1:-build}
DEVICE=${2:-cpu}
STEPS=${STEPS:-300}
MODEL=${MODEL:---depth 3 --hidden 512 --batch 128}
LOOMRUN=$BUILD/tools/loomrun
TRAIN=$BUILD/train/loom-train
[ -x "$TRAIN" ] || { echo "bench/train.sh: no $TRAIN (build first)"; exit 1; }

printf '%-34s %5s %12s\n' layout ranks samples/s
while read -r n args; do
    [ -n "$n" ] || continue
    out=$(timeout 900 "$LOOMRUN" -n "$n" "$TRAIN" $MODEL --epochs 1 --steps "$STEPS" \
          --device "$DEVICE" $args 2>&1)
    sps=$(printf '%s\n' "$out" | sed -n 's/.*final: .*samples_per_s=\([0-9]*\).*/\1/p')
    [ -n "$sps" ] || { printf '%s\n' "$out" | tail -5; sps=FAILED; }
    printf '%-34s %5s %12s\n' "${args:-serial}" "$n" "$sps"
done <<'LAYOUTS'
1
2 --dp 2
2 --tp 2
2 --pp 2 --micro-batches 4
4 --dp 4
4 --tp 4
4 --pp 4 --micro-batches 8
4 --dp 2 --tp 2
4 --dp 2 --pp 2 --micro-batches 4
4 --tp 2 --pp 2 --micro-batches 4
4 --dp 2 --zero 1 --tp 2
LAYOUTS
