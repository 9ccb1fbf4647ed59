#!/bin/sh
# test_loomrun.sh: checks of tools/loomrun that need no loom library calls in the
# ranks (the ranks are sh -c scripts): output prefixes, the variables each rank gets,
# exit statuses, stopping the other ranks when one fails, SIGTERM, --timeout, usage.
# Not a test of rendezvous itself (the collective tests do that).
#
#     sh tests/test_loomrun.sh build/tools/loomrun
#
# Prints each failed check with what it saw; exits 0 when all pass, 1 otherwise.
# Every loomrun run is bounded by timeout(1), so a hang fails instead of blocking.

LOOMRUN=${1:?usage: test_loomrun.sh PATH-OF-LOOMRUN}
[ -x "$LOOMRUN" ] || { echo "FAIL: $LOOMRUN is not executable"; exit 1; }

dir=$(mktemp -d "${TMPDIR:-/tmp}/test_loomrun.XXXXXX") || exit 1
trap 'rm -rf "$dir"' EXIT
failures=0

fail() {
    echo "FAIL: $*"
    failures=$((failures + 1))
}

# expect_line FILE LINE WHAT: FILE must hold LINE exactly.
expect_line() {
    grep -qxF -- "$2" "$1" || { fail "$3: no line '$2' in:"; sed 's/^/    | /' "$1"; }
}

# run NAME ARGS...: loomrun ARGS, stdout in $dir/NAME.out, stderr in $dir/NAME.err,
# exit status in $rc, seconds taken in $took.
run() {
    name=$1
    shift
    t0=$(date +%s)
    timeout 20 "$LOOMRUN" "$@" >"$dir/$name.out" 2>"$dir/$name.err" </dev/null
    rc=$?
    took=$(($(date +%s) - t0))
}

# ---- the job's rendezvous root listens on loopback only (all ranks are local) ----

run root -n 1 sh -c 'echo "root ${LOOM_COMM_ID#loom1:}"; echo "ifname ${LOOM_SOCKET_IFNAME-unset}"'
grep -q '^\[0\] root 127\.0\.0\.1:' "$dir/root.out" || fail "root not on 127.0.0.1: $(cat "$dir/root.out")"
expect_line "$dir/root.out" "[0] ifname unset" "loomrun's own interface choice does not reach the ranks"

# ---- output is prefixed per rank; each rank gets its variables ----

run env -n 3 sh -c 'echo "hi $LOOM_RANK"
echo "vars $LOOM_RANK $LOOM_WORLD_SIZE $LOOM_LOCAL_RANK ${LOOM_COMM_ID:+id-set}"
echo "oops $LOOM_RANK" >&2
printf "no newline $LOOM_RANK"'
[ "$rc" = 0 ] || fail "3 good ranks: exit status $rc, want 0 (stderr: $(cat "$dir/env.err"))"
for r in 0 1 2; do
    expect_line "$dir/env.out" "[$r] hi $r" "stdout prefix"
    expect_line "$dir/env.out" "[$r] vars $r 3 $r id-set" "LOOM_RANK/WORLD_SIZE/LOCAL_RANK/COMM_ID"
    expect_line "$dir/env.out" "[$r] no newline $r" "last line without newline"
    expect_line "$dir/env.err" "[$r] oops $r" "stderr prefix"
done
grep -q oops "$dir/env.out" && fail "stderr lines went to stdout"
n=$(wc -l <"$dir/env.out")
[ "$n" = 9 ] || fail "3 ranks x 3 stdout lines: got $n lines"

run notag --no-tag -np 2 sh -c 'echo "plain $LOOM_RANK"'
[ "$rc" = 0 ] || fail "--no-tag: exit status $rc, want 0"
expect_line "$dir/notag.out" "plain 1" "--no-tag"

# ---- one rank fails: the others are stopped, loomrun exits with its status ----

run fail -n 3 sh -c 'if [ "$LOOM_RANK" = 1 ]; then exit 3; fi; exec sleep 100'
[ "$rc" = 3 ] || fail "rank 1 exits 3: loomrun exit status $rc, want 3"
grep -q "rank 1 (pid [0-9]*) exited with status 3" "$dir/fail.err" ||
    fail "rank 1 exits 3: stderr does not name rank 1: $(cat "$dir/fail.err")"
[ "$took" -le 5 ] || fail "rank 1 exits 3: the sleeping ranks took ${took} s to stop"

run killed -n 2 sh -c 'if [ "$LOOM_RANK" = 1 ]; then kill -9 $$; fi; exec sleep 100'
[ "$rc" = 137 ] || fail "rank 1 killed by SIGKILL: loomrun exit status $rc, want 137"
grep -q "rank 1 (pid [0-9]*) killed by signal 9" "$dir/killed.err" ||
    fail "rank 1 killed: stderr does not say so: $(cat "$dir/killed.err")"

# ---- SIGTERM to loomrun stops its ranks ----

# Each rank records its pid and its parent's (loomrun; $! is timeout's).
timeout 20 "$LOOMRUN" -n 3 sh -c 'echo $$ $PPID >"$0/t.$LOOM_RANK"
mv "$0/t.$LOOM_RANK" "$0/pid.$LOOM_RANK"; exec sleep 100' "$dir" \
    >"$dir/term.out" 2>"$dir/term.err" </dev/null &
pid=$!
i=0
while [ "$(ls "$dir" | grep -c '^pid\.')" -lt 3 ] && [ $i -lt 100 ]; do
    sleep 0.1
    i=$((i + 1))
done
if [ -f "$dir/pid.0" ]; then
    read -r rank0 loomrun <"$dir/pid.0"
    kill -TERM "$loomrun"
    wait $pid 2>/dev/null
    rc=$?
    [ "$rc" = 143 ] || fail "SIGTERM: loomrun exit status $rc, want 143 (stderr: $(cat "$dir/term.err"))"
else
    fail "SIGTERM: the ranks did not start within 10 s"
    kill -TERM $pid 2>/dev/null
    wait $pid 2>/dev/null
fi
for f in "$dir"/pid.*; do
    [ -f "$f" ] || continue
    read -r p parent <"$f"
    [ "$parent" = "$loomrun" ] || fail "SIGTERM: rank pid $p has parent $parent, not loomrun ($loomrun)"
    kill -0 "$p" 2>/dev/null && { fail "SIGTERM: rank pid $p still runs"; kill -KILL "$p"; }
done

# ---- --timeout, usage, missing program ----

run tmo --timeout 1 -n 2 sh -c 'exec sleep 100'
[ "$rc" = 124 ] || fail "--timeout 1: exit status $rc, want 124"
[ "$took" -le 6 ] || fail "--timeout 1: took ${took} s"

run usage1 sh -c true
[ "$rc" = 2 ] || fail "no -n: exit status $rc, want 2"
grep -q usage "$dir/usage1.err" || fail "no -n: no usage message"
run usage2 -n 0 true
[ "$rc" = 2 ] || fail "-n 0: exit status $rc, want 2"
run usage3 -n 2
[ "$rc" = 2 ] || fail "no program: exit status $rc, want 2"
run usage4 -n 2 --bogus true
[ "$rc" = 2 ] || fail "unknown option: exit status $rc, want 2"

run missing -n 2 /nonexistent/loom-test-program
[ "$rc" = 127 ] || fail "missing program: exit status $rc, want 127"

if [ $failures -ne 0 ]; then
    echo "test_loomrun: $failures check(s) failed"
    exit 1
fi
echo "test_loomrun: all checks passed"
exit 0
