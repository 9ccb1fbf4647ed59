# netns.sh: "hosts" made of network namespaces joined by a bridge, for the tests that
# need several of them (sourced by test_netns.sh and test_faults.sh, sh or bash).
# Nothing is made in the root namespace: deleting the namespaces removes every link.
#
#   netns_hosts PREFIX NET V6 NODE...   the hub ${PREFIX}h (bridge ${PREFIX}br, a port vNODE
#       per node) and a namespace ${PREFIX}NODE per node, whose lv0 has 10.NET.$netns_x.i/24
#       (and fdNET:$netns_x::i/64 when V6 is 1), i counting from 1. Returns non-zero (the
#       reason on stderr) when the kernel or the privilege is not there: a skip.
#   netns_del PREFIX NODE...            delete them (bounded; for an EXIT trap)
netns_x=$(($$ % 250 + 1))

T() { timeout -k 2 10 "$@"; }       # every namespace command, bounded

netns_hosts() {
    prefix=$1 net=$2 v6=$3
    shift 3
    T ip netns add "${prefix}h" && T ip -n "${prefix}h" link set lo up &&
    T ip -n "${prefix}h" link add "${prefix}br" type bridge && T ip -n "${prefix}h" link set "${prefix}br" up ||
        return 1
    i=1
    for n in "$@"; do
        ns=$prefix$n
        T ip netns add "$ns" &&
        T ip -n "${prefix}h" link add "v$n" type veth peer name lv0 netns "$ns" &&
        T ip -n "${prefix}h" link set "v$n" master "${prefix}br" &&
        T ip -n "${prefix}h" link set "v$n" up &&
        T ip -n "$ns" link set lo up &&
        T ip -n "$ns" addr add "10.$net.$netns_x.$i/24" dev lv0 &&
        { [ "$v6" != 1 ] || T ip -n "$ns" addr add "fd$net:$netns_x::$i/64" dev lv0 nodad; } &&
        T ip -n "$ns" link set lv0 up || return 1
        i=$((i + 1))
    done
}

netns_del() {
    prefix=$1
    shift
    for n in "$@" h; do T ip netns del "$prefix$n" 2>/dev/null; done
}
