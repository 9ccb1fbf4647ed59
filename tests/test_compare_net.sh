#!/bin/sh
# test_compare_net.sh: bench/compare's scenario net keeps working and cleans up.
#  1. A smoke run: 4 netns hosts with links shaped to 4 Gbit/s, two sizes, one
#     repetition, loom, Open MPI and Gloo over tcp: every library gives both rows.
#  2. A job that hangs (a loom-perf that only sleeps) is killed at --job-timeout, compare
#     fails saying so, and neither a namespace nor a process of that run is left.
#  3. bench/net-ab, which borrows those namespaces, runs one round of loom, Gloo and the
#     raw ring, prints a figure for each, and leaves no namespace behind.
#   test_compare_net.sh SRC_ROOT BUILD_ROOT
# Root only (77 otherwise), like compare's scenario net itself. Every command bounded.
set -u
src=${1:?usage: test_compare_net.sh SRC_ROOT BUILD_ROOT} build=${2:?}
skip() { echo "skip: $*"; exit 77; }
fail() { echo "FAIL: $*"; exit 1; }
[ "$(id -u)" = 0 ] || skip "needs root"
for t in ip tc mpirun python3 timeout; do command -v $t >/dev/null 2>&1 || skip "$t not found"; done
for p in bench/loom-perf bench/mpi-perf bench/gloo-perf bench/tcp-ring tools/loomrun; do
    [ -x "$build/$p" ] || skip "$p not built"
done
out=$(mktemp -d) || exit 1
trap 'rm -rf "$out"' EXIT
before=$(ip netns list | grep -c '^lc')

echo "== 1. smoke run of scenario net"
timeout -k 5 300 python3 "$src/bench/compare" --smoke --scenarios net --build "$build" --out "$out/o1" \
    > "$out/log1" 2>&1
rc=$?
cat "$out/log1"
[ $rc = 77 ] && skip "compare skipped the scenario (see above)"
[ $rc = 0 ] || fail "compare exited with $rc"
rows=$(sed -n '/links shaped to 4 Gbit\/s/,$p' "$out/log1" |
       awk '$1 ~ /^[0-9]+$/ && $2 != "nan" && $3 != "nan" && $4 != "nan"' | wc -l)
[ "$rows" = 2 ] || fail "expected 2 sizes with a figure from each library, got $rows"

echo "== 2. a hanging job is killed at --job-timeout and everything is removed"
fake=$out/fake
mkdir -p "$fake/bench" "$fake/tools"
ln -s "$build/bench/mpi-perf" "$build/bench/gloo-perf" "$build/bench/tcp-ring" "$fake/bench/"
ln -s "$build/tools/loomrun" "$fake/tools/"
printf '#!/bin/sh\nexec sleep 299.25\n' > "$fake/bench/loom-perf"
chmod +x "$fake/bench/loom-perf"
timeout -k 5 120 python3 "$src/bench/compare" --smoke --scenarios net --build "$fake" --out "$out/o2" \
    --job-timeout 5 > "$out/log2" 2>&1
rc=$?
cat "$out/log2"
[ $rc != 0 ] || fail "compare succeeded with a hanging job"
grep -q "timed out after 5" "$out/log2" || fail "no timeout message"
sleep 1
pgrep -fx "sleep 299.25" >/dev/null && { pkill -fx "sleep 299.25"; fail "the hung job's processes were left"; }
after=$(ip netns list | grep -c '^lc')
[ "$after" = "$before" ] || fail "namespaces left: $(ip netns list | grep '^lc' | tr '\n' ' ')"
echo "== 3. bench/net-ab: one round"
timeout -k 5 120 python3 "$src/bench/net-ab" --rounds 1 --size 1M --iters 2 --build "$build" cur gloo ring \
    > "$out/log3" 2>&1
rc=$?
cat "$out/log3"
[ $rc = 0 ] || fail "net-ab exited with $rc"
for v in cur gloo ring; do
    grep -Eq "^round 0 $v +0\.[0-9]*[1-9][0-9]* GB/s" "$out/log3" || fail "no figure for $v in round 0"
    grep -Eq "^$v +median " "$out/log3" || fail "no median for $v"
done
after=$(ip netns list | grep -c '^lc')
[ "$after" = "$before" ] || fail "net-ab left namespaces: $(ip netns list | grep '^lc' | tr '\n' ' ')"
echo "ok: smoke rows from all three libraries; hung job killed, nothing left; net-ab ran"
