#!/bin/sh
# test_readme_hosts.sh: the README's "two hosts by hand" lines, run as written: two
# network namespaces joined by a veth pair play the hosts (10.0.0.1 and 10.0.0.2, inside
# the namespaces only), a folder where build/ is this build plays the working copy.
# The secret line runs on host A, its value goes to host B through a file (the README's
# "hand the same value to the other host"), then each host runs its line.
#
#   test_readme_hosts.sh README.md BUILD_DIR
#
# Root only (exit 77 otherwise, or without ip / namespaces). Every command is bounded.
set -u
readme=${1:?usage: test_readme_hosts.sh README.md BUILD_DIR} build=${2:?}
skip() { echo "skip: $*"; exit 77; }
[ "$(id -u)" = 0 ] || skip "needs root"
command -v ip >/dev/null 2>&1 || skip "ip (iproute2) not found"

lines=$(sed -n '/<!-- two-hosts:begin -->/,/<!-- two-hosts:end -->/p' "$readme" | grep -v '^#\|^<!--\|^```\|^$')
secret_line=$(printf '%s\n' "$lines" | sed -n 1p)
host_a=$(printf '%s\n' "$lines" | sed -n 2p)
host_b=$(printf '%s\n' "$lines" | sed -n 3p)
case "$secret_line" in export\ LOOM_SECRET=*) ;; *) echo "FAIL: the README block lost its secret line: '$secret_line'"; exit 1 ;; esac
[ -n "$host_a" ] && [ -n "$host_b" ] || { echo "FAIL: the README block has not two host lines"; exit 1; }
case "$host_a" in *LOOM_ROOT_ADDR=10.0.0.1:*) ;; *) echo "FAIL: host A's line does not name 10.0.0.1"; exit 1 ;; esac

tag=$$ tmp=$(mktemp -d) || exit 1
T() { timeout -k 2 10 "$@"; }
cleanup() { T ip netns del "lr${tag}a" 2>/dev/null; T ip netns del "lr${tag}b" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
T ip netns add "lr${tag}a" 2>"$tmp/err" || skip "cannot create a network namespace: $(cat "$tmp/err")"
T ip netns add "lr${tag}b" &&
T ip -n "lr${tag}a" link add lv0 type veth peer name lv0 netns "lr${tag}b" &&
T ip -n "lr${tag}a" link set lo up && T ip -n "lr${tag}b" link set lo up &&
T ip -n "lr${tag}a" addr add 10.0.0.1/24 dev lv0 && T ip -n "lr${tag}b" addr add 10.0.0.2/24 dev lv0 &&
T ip -n "lr${tag}a" link set lv0 up && T ip -n "lr${tag}b" link set lv0 up 2>"$tmp/err" ||
    skip "cannot build the namespaces: $(cat "$tmp/err")"

mkdir "$tmp/a" "$tmp/b"
ln -s "$(cd "$build" && pwd)" "$tmp/a/build"
ln -s "$(cd "$build" && pwd)" "$tmp/b/build"
# host A makes the secret; host B gets its value
(cd "$tmp/a" && eval "$secret_line" && printf '%s\n' "$LOOM_SECRET" >"$tmp/secret") || { echo "FAIL: $secret_line"; exit 1; }
[ "$(wc -c <"$tmp/secret")" = 33 ] || { echo "FAIL: the secret line made '$(cat "$tmp/secret")'"; exit 1; }
echo "== host A: $host_a"
timeout -k 5 120 ip netns exec "lr${tag}a" sh -c "cd '$tmp/a' && export LOOM_SECRET=\$(cat '$tmp/secret') && $host_a" \
    >"$tmp/a.out" 2>&1 &
pa=$!
echo "== host B: $host_b"
timeout -k 5 120 ip netns exec "lr${tag}b" sh -c "cd '$tmp/b' && export LOOM_SECRET=\$(cat '$tmp/secret') && $host_b" \
    >"$tmp/b.out" 2>&1
rb=$?
wait $pa
ra=$?
tail -3 "$tmp/a.out" | sed 's/^/[A] /'
tail -3 "$tmp/b.out" | sed 's/^/[B] /'
[ $ra = 0 ] && [ $rb = 0 ] && grep -q "Avg bus bandwidth" "$tmp/a.out" ||
    { echo "FAIL: host A exited $ra, host B $rb"; cat "$tmp/a.out" "$tmp/b.out" | head -20; exit 1; }
echo "two hosts by hand: the README's lines work as written"
