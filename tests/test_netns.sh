#!/bin/sh
# test_netns.sh: three "hosts" made of network namespaces, joined by a bridge, run one
# loom job over tcp (ranks in different namespaces are different hosts to loom, so the
# automatic transport choice must pick tcp, and the traffic crosses the veths), then a
# job of two ranks in each of two namespaces (shm inside a namespace, tcp across).
# Last, an interface choice that leaves only loopback (LOOM_SOCKET_IFNAME=^lv) must fail
# every rank with a message, not advertise 127.0.0.1 to ranks on other hosts.
#
#   test_netns.sh PATH/TO/env_init_check
#
#   namespace loom<pid>h:  bridge loom<pid>br, ports va vb vc (tests/netns.sh)
#   namespace loom<pid>a:  lv0 (peer of va)  10.77.<x>.1/24  fd77:<x>::1/64   rank 0, root
#   namespace loom<pid>b:  lv0 (peer of vb)  10.77.<x>.2/24  fd77:<x>::2/64   rank 1
#   namespace loom<pid>c:  lv0 (peer of vc)  10.77.<x>.3/24  fd77:<x>::3/64   rank 2
#
# Nothing is created in the root namespace: every link lives in one of the four
# namespaces above, and deleting them (the EXIT trap) removes everything. One run over
# IPv4, one over IPv6 (ULA addresses, no duplicate address detection).
#
# Root only: exit 77 (skip) otherwise, or when ip is missing or namespaces cannot be
# made (no privilege, e.g. in an unprivileged container). Every command is bounded.
set -u
check=${1:?usage: test_netns.sh PATH/TO/env_init_check}

skip() { echo "skip: $*"; exit 77; }
[ "$(id -u)" = 0 ] || skip "needs root"
command -v ip >/dev/null 2>&1 || skip "ip (iproute2) not found"
command -v timeout >/dev/null 2>&1 || skip "timeout not found"

. "$(dirname "$0")/netns.sh"
tag=$$
x=$netns_x
nodes="a b c"
tmp=$(mktemp -d) || exit 1

cleanup() {
    netns_del "loom$tag" $nodes
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

# No loom code has run yet: a kernel without namespaces, veth or bridge support is a skip.
netns_hosts "loom$tag" 77 1 $nodes 2>"$tmp/err" ||
    skip "cannot build namespaces, veths and a bridge: $(cat "$tmp/err")"

secret=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
[ ${#secret} -eq 32 ] || { echo "FAIL: no random secret"; exit 1; }

tx_bytes() { T ip netns exec "loom${tag}$1" cat /sys/class/net/lv0/statistics/tx_bytes; }

# run FAMILY ROOT_ADDR NAMESPACE...: one job, rank i in the i-th namespace given.
ifname=lv0
run() {
    family=$1 root=$2
    shift 2
    size=$#
    echo "== $size ranks in namespaces $*, $family, root $root"
    before=$(tx_bytes b)
    i=0 pids=""
    for n in "$@"; do
        timeout -k 5 90 ip netns exec "loom${tag}$n" env -u LOOM_COMM_ID -u LOOM_TRANSPORT \
            LOOM_RANK=$i LOOM_WORLD_SIZE=$size LOOM_ROOT_ADDR="$root" LOOM_SECRET="$secret" \
            LOOM_SOCKET_IFNAME=$ifname LOOM_SOCKET_FAMILY="$family" LOOM_TIMEOUT_MS=60000 \
            "$check" $size > "$tmp/rank$i" 2>&1 &
        pids="$pids $!"
        i=$((i + 1))
    done
    fail=0 i=0
    for p in $pids; do
        wait "$p"; rc=$?
        sed "s/^/[rank $i] /" "$tmp/rank$i"
        if [ $rc -ne 0 ] || ! grep -q "^env_init_check: rank $i of $size .* ok" "$tmp/rank$i"; then
            echo "FAIL: rank $i exited with $rc ($family)"
            fail=1
        fi
        i=$((i + 1))
    done
    # The ranks in namespace b sent their share of an 8 MiB all-reduce (and more) over
    # its veth.
    sent=$(( $(tx_bytes b) - before ))
    echo "namespace b sent $sent bytes on lv0"
    if [ "$sent" -lt 4000000 ]; then
        echo "FAIL: the traffic did not cross the veths ($family)"
        fail=1
    fi
    return $fail
}

port=$((20000 + tag % 20000))
status=0
run AF_INET "10.77.$x.1:$port" a b c || status=1
run AF_INET6 "[fd77:$x::1]:$((port + 1))" a b c || status=1
# Two ranks per namespace: shm between the two, tcp across. With one rank per host the
# executors move the tcp links' bytes themselves during a call; here the progress
# thread does (an executor asleep on a shm link cannot watch sockets).
run AF_INET "10.77.$x.1:$((port + 2))" a a b b || status=1

echo "== 3 ranks in namespaces a b c, LOOM_SOCKET_IFNAME=^lv (only loopback left): every rank must fail"
ifname='^lv'
if run AF_INET "10.77.$x.1:$((port + 3))" a b c > "$tmp/lo.out" 2>&1; then
    echo "FAIL: ranks on three hosts formed a job on loopback addresses"; status=1
fi
n=$(grep -c "FAIL: rank . exited" "$tmp/lo.out")
grep "loopback" "$tmp/lo.out" | head -3
[ "$n" = 3 ] || { echo "FAIL: $n of 3 ranks failed"; status=1; }
grep -q "from a loopback address" "$tmp/lo.out" || { echo "FAIL: no rank said why"; status=1; }
exit $status
