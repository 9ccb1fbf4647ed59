#!/bin/sh
# bench/train.sh: loom-train per layout on 1, 2 and 4 ranks (issue 5).
#
#     bench/train.sh [speed|accuracy] [BUILD] [DEVICE]     defaults: speed build cpu
#
# speed:    every layout trains the same model (MODEL, default --depth 3 --hidden 512
#           --batch 128) on Fashion-MNIST for STEPS steps (default 300) with the same
#           global batch; prints samples/s of the training steps (loom-train's own
#           figure, evaluation excluded).
# accuracy: the default model, 5 epochs, for the serial run and one layout of each
#           kind up to 8 ranks; prints test accuracy after every epoch.
. "$(dirname "$0")/cli.sh"
cli_scan "$0" "$@"
MODE=${1:-speed}
BUILD=${2:-build}
DEVICE=${3:-cpu}
STEPS=${STEPS:-300}
MODEL=${MODEL:---depth 3 --hidden 512 --batch 128}
LOOMRUN=$BUILD/tools/loomrun
TRAIN=$BUILD/train/loom-train
[ -x "$TRAIN" ] || { echo "bench/train.sh: no $TRAIN (build first)"; exit 1; }

speed() {
    printf '%-34s %5s %12s\n' layout ranks samples/s
    while read -r n args; do
        out=$(timeout 900 "$LOOMRUN" -n "$n" "$TRAIN" $MODEL --epochs 1 --steps "$STEPS" \
              --device "$DEVICE" $args 2>&1)
        sps=$(printf '%s\n' "$out" | sed -n 's/.*final: .*samples_per_s=\([0-9]*\).*/\1/p')
        [ -n "$sps" ] || { printf '%s\n' "$out" | tail -5; sps=FAILED; }
        printf '%-34s %5s %12s\n' "${args:-serial}" "$n" "$sps"
    done <<'LAYOUTS'
1
2 --dp 2
2 --dp 2 --zero 1
2 --tp 2
2 --pp 2 --micro-batches 4
4 --dp 4
4 --tp 4
4 --pp 4 --micro-batches 8
4 --dp 2 --tp 2
4 --dp 2 --pp 2 --micro-batches 4
4 --tp 2 --pp 2 --micro-batches 4
LAYOUTS
}

accuracy() {
    printf '%-58s %5s  %s\n' layout ranks "test accuracy after epochs 1..5"
    while read -r n args; do
        out=$(timeout 900 "$LOOMRUN" -n "$n" "$TRAIN" --epochs 5 --device "$DEVICE" $args 2>&1)
        acc=$(printf '%s\n' "$out" | sed -n 's/.*epoch [0-9]*: .*test_acc=\([0-9.]*\) .*/\1/p' | tr '\n' ' ')
        [ -n "$acc" ] || { printf '%s\n' "$out" | tail -5; acc=FAILED; }
        printf '%-58s %5s  %s\n' "${args:-serial}" "$n" "$acc"
    done <<'LAYOUTS'
1
2 --dp 2
4 --dp 4 --zero 1
2 --tp 2
1 --depth 3
4 --tp 4 --depth 3
2 --pp 2 --micro-batches 4 --schedule gpipe
4 --pp 4 --depth 3 --micro-batches 7 --schedule 1f1b
2 --dp 2 --grad-accum 2 --batch 64
8 --dp 2 --tp 2 --pp 2 --depth 3 --micro-batches 4 --zero 1
LAYOUTS
}

case $MODE in
speed) speed ;;
accuracy) accuracy ;;
*) echo "usage: bench/train.sh [speed|accuracy] [BUILD] [DEVICE]"; exit 2 ;;
esac
