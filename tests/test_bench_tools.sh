#!/bin/bash
# test_bench_tools.sh: the A/B helpers behind bench/RESULTS.md, on stand-ins with known
# answers (no library, no timing):
#   - bench/ab.sh gives each version its settings (DIR:VAR=V;VAR=V), prints the median
#     and every value per version and size, and with -s rotates the versions' order;
#   - bench/when-far runs its command only while the CPUs' round trip reads over the
#     threshold, and counts the runs.
#   test_bench_tools.sh SOURCE_ROOT
set -euo pipefail
cd "$1"
fake=$(mktemp -d)
trap 'rm -rf "$fake"' EXIT
mkdir -p "$fake/tools" "$fake/bench"
# loomrun stand-in: one loom-perf row whose out-of-place time is $FAKE_US
cat > "$fake/tools/loomrun" <<'STUB'
#!/bin/sh
t=${FAKE_US:-9.00}
echo "$t" >> "$(dirname "$0")/../order"
echo "[0]        65536          8192   float32    none      -1  $t   1.00   0.50      0  $t   1.00   0.50      0"
STUB
# cpu-pingpong stand-in: the round trip in $FAKE_NS
cat > "$fake/bench/cpu-pingpong" <<'STUB'
#!/bin/sh
echo "cpu-pingpong: CPU 0 <-> 1: ${FAKE_NS:-50.0} ns a round trip (median of 5 x 4000)"
STUB
chmod +x "$fake/tools/loomrun" "$fake/bench/cpu-pingpong"
export WHEN_FAR_PAUSE=$fake/no-pause      # not the real runs' pause file

out=$(bench/ab.sh -b "$fake" 3 "cur cur:FAKE_US=2.50;OTHER=1" -- -o allgather -b 64K -e 64K)
printf '%s\n' "$out"
printf '%s\n' "$out" | grep -Eq '^cur +65536  median +9\.000  all  9\.00 9\.00 9\.00$' ||
    { echo "ab.sh: the plain version's row is wrong"; exit 1; }
printf '%s\n' "$out" | grep -Eq '^cur:FAKE_US=2\.50;OTHER=1 +65536  median +2\.500  all  2\.50 2\.50 2\.50$' ||
    { echo "ab.sh: the version's settings did not reach its run"; exit 1; }

rm -f "$fake/order"
bench/ab.sh -b "$fake" -s 1 2 "cur:FAKE_US=1 cur:FAKE_US=2 cur:FAKE_US=3" -- -o allgather > /dev/null
[ "$(tr '\n' ' ' < "$fake/order")" = "2 3 1 3 1 2 " ] ||
    { echo "ab.sh -s 1: the versions ran in the order $(tr '\n' ' ' < "$fake/order")"; exit 1; }

out=$(FAKE_NS=350.0 bench/when-far -b "$fake" -t 1 -r 200 -- echo ran)
printf '%s\n' "$out" | tail -4
[ "$(printf '%s\n' "$out" | grep -cx ran)" -ge 1 ] && printf '%s\n' "$out" | grep -q "^=== after: round trip 350.0 ns" ||
    { echo "when-far: the command did not run while far"; exit 1; }
out=$(FAKE_NS=50.0 timeout 30 bench/when-far -b "$fake" -t 1 -r 200 -- echo ran)
printf '%s\n' "$out"
[ "$out" = "when-far: 0 run(s) in 1 s" ] || { echo "when-far: ran while near"; exit 1; }
echo "bench tools: ok"
