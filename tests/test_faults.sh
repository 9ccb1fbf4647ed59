#!/bin/bash
# test_faults.sh: the fault matrix. Four "hosts" (network namespaces on a bridge, one
# rank each, tests/fault_rank running checked 1 MiB all-reduces) meet one fault per cell;
# each cell asserts its outcome: the job goes on with every result right, or every rank
# (but a killed one) fails with an error naming the culprit within a bound. Prints a
# markdown table (bench/RESULTS.md keeps it).
#
#   test_faults.sh PATH/TO/fault_rank [CELL...]     (no cell: all of them)
#
# Cells (LOOM_TIMEOUT_MS 6000 unless said):
#   veth-down-short   rank 1's link down for 2 s, then up: goes on
#   veth-down         rank 1's link down for good: every rank fails within 12 s
#   nft-drop          rank 2's host drops every packet (nft): every rank fails within 12 s
#   slow-10mbit       rank 1's link shaped to 10 Mbit/s (tc tbf), LOOM_TIMEOUT_MS 2000, one
#                     4 MiB call that takes longer than that: goes on (silence, not work,
#                     is what times out)
#   stop-short        rank 2 SIGSTOPped for 2 s: goes on
#   stop-long         rank 2 SIGSTOPped for good (LOOM_TIMEOUT_MS 3000): the others fail
#                     within 8 s naming rank 2
#   kill-former-root  the process that made the id (and hosted its root) killed after the
#                     rendezvous: goes on
#   kill-rank0        rank 0 (which hosted the root) killed mid-job: the others fail
#                     within 3 s naming rank 0
#   kill-mid-join     rank 1 killed after it joined, before rank 3 did (the root in a
#                     launcher's process): ranks 0, 2 and 3 (which comes after the kill) fail
#                     within 5 s naming rank 1
#   idle-outsider     idle connections held to the root's port during the rendezvous and
#                     to every rank's tcp port during the calls: goes on, destroy < 3 s
# Root only (exit 77 otherwise, or without ip/nft/tc). Every wait is bounded.
set -u
rank_prog=${1:?usage: test_faults.sh PATH/TO/fault_rank [CELL...]}
shift
cells=${*:-veth-down-short veth-down nft-drop slow-10mbit stop-short stop-long kill-former-root kill-rank0 kill-mid-join idle-outsider}

skip() { echo "skip: $*"; exit 77; }
[ "$(id -u)" = 0 ] || skip "needs root"
for t in ip nft tc timeout ss; do command -v $t >/dev/null 2>&1 || skip "$t not found"; done

. "$(dirname "$0")/netns.sh"
tag=$$ x=$netns_x
hub=lf${tag}h nodes="a b c d"
tmp=$(mktemp -d) || exit 1
cleanup() {
    for f in "$tmp"/pid*; do [ -f "$f" ] && kill -KILL "$(cat "$f")" 2>/dev/null; done
    netns_del "lf$tag" $nodes
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP
netns_hosts "lf$tag" 88 0 $nodes 2>"$tmp/err" || skip "cannot build namespaces, veths and a bridge: $(cat "$tmp/err")"
ns_of() { echo "lf${tag}$(echo $nodes | cut -d' ' -f$(($1 + 1)))"; }
ip_of() { echo "10.88.$x.$(($1 + 1))"; }
port=$((21000 + tag % 20000))
secret=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
now() { date +%s.%N; }

# start R SECONDS COUNT [ENV...]: rank R in its namespace, pid in $tmp/pidR, output in $tmp/outR
start() {
    local r=$1 secs=$2 count=$3
    shift 3
    : >"$tmp/out$r"
    timeout -k 5 90 ip netns exec "$(ns_of $r)" env LOOM_RANK=$r LOOM_WORLD_SIZE=4 LOOM_SECRET="$secret" \
        LOOM_SOCKET_IFNAME=lv0 LOOM_TIMEOUT_MS=${timeout_ms:-6000} "$@" \
        sh -c "echo \$\$ >$tmp/pid$r; exec $rank_prog $secs $count" >"$tmp/out$r" 2>"$tmp/err$r" &
    eval "wrap$r=$!"
}
start_all() {   # start_all SECONDS COUNT [ENV...]
    port=$((port + 1))
    for r in 0 1 2 3; do start $r "$@" LOOM_ROOT_ADDR="$(ip_of 0):$port"; done
}
wait_ready() {   # every rank named in $* printed ready (10 s at most)
    for i in $(seq 100); do
        local all=1
        for r in "$@"; do grep -q '^ready' "$tmp/out$r" 2>/dev/null || all=0; done
        [ $all = 1 ] && return 0
        sleep 0.1
    done
    return 1
}
wait_ranks() {   # wait for the ranks' wrappers (each bounded by its timeout)
    for r in 0 1 2 3; do eval "wait \$wrap$r" 2>/dev/null; done
}
pid_of() { cat "$tmp/pid$1"; }

rows=""
fail=0
# verdict CELL EXPECT FAULT_TIME: judge the outcome and add the table's row.
# EXPECT: "continue", or "error BOUND CULPRIT [KILLED]": every rank but KILLED fails within
# BOUND seconds of the fault with a message naming rank CULPRIT
verdict() {
    local cell=$1 expect=$2 tf=$3 ok=1 outcome="" worst=0
    set -- $expect
    for r in 0 1 2 3; do
        local line d
        if [ "$1" = continue ]; then
            line=$(grep '^done' "$tmp/out$r")
            if [ -n "$line" ]; then outcome="$outcome r$r done ($(echo "$line" | awk '{print $3}') calls);"
            else ok=0; outcome="$outcome r$r: $(tail -1 "$tmp/out$r" | cut -c1-120);"; fi
        else
            [ "${4:-}" = "$r" ] && { outcome="$outcome r$r killed;"; continue; }
            line=$(grep '^error' "$tmp/out$r" | head -1)
            if [ -z "$line" ]; then ok=0; outcome="$outcome r$r no error: $(tail -1 "$tmp/out$r");"; continue; fi
            d=$(echo "$line $tf" | awk '{ printf "%.1f", $2 - $NF }')
            worst=$(echo "$worst $d" | awk '{ print ($2 > $1) ? $2 : $1 }')
            local code=$(echo "$line" | awk '{print $3}')
            outcome="$outcome r$r $code after ${d} s;"
            [ "$3" = "$r" ] || echo "$line" | grep -q "rank $3 " || { ok=0; outcome="$outcome (does not name rank $3);"; }
            awk -v d="$d" -v b="$2" 'BEGIN { exit !(d <= b) }' || { ok=0; outcome="$outcome (over ${2} s);"; }
        fi
    done
    [ $ok = 1 ] || fail=1
    rows="$rows| $cell | $(echo "$expect" | sed 's/^error \([0-9.]*\) \([0-9]\).*/error within \1 s naming rank \2/') | $outcome | $([ $ok = 1 ] && echo pass || echo FAIL) |
"
    echo "== $cell: $([ $ok = 1 ] && echo pass || echo FAIL):$outcome"
    if [ $ok = 0 ]; then for r in 0 1 2 3; do sed "s/^/    [r$r] /" "$tmp/out$r" | tail -3; tail -2 "$tmp/err$r" | sed "s/^/    [r$r err] /"; done; fi
}

for cell in $cells; do
    timeout_ms=6000
    case $cell in
    veth-down-short)
        start_all 6 262144; wait_ready 0 1 2 3 || echo "not ready"; sleep 1
        tf=$(now); T ip -n "$hub" link set vb down; sleep 2; T ip -n "$hub" link set vb up
        wait_ranks; verdict $cell continue "$tf" ;;
    veth-down)
        start_all 30 262144; wait_ready 0 1 2 3; sleep 1
        tf=$(now); T ip -n "$hub" link set vb down
        wait_ranks; T ip -n "$hub" link set vb up; verdict $cell "error 12 1" "$tf" ;;
    nft-drop)
        start_all 30 262144; wait_ready 0 1 2 3; sleep 1
        tf=$(now)
        T ip netns exec "$(ns_of 2)" nft -f - <<EOF || { echo "FAIL: nft"; fail=1; }
table inet loomfault {
    chain i { type filter hook input priority 0; policy drop; }
    chain o { type filter hook output priority 0; policy drop; }
}
EOF
        wait_ranks; T ip netns exec "$(ns_of 2)" nft delete table inet loomfault; verdict $cell "error 12 2" "$tf" ;;
    slow-10mbit)
        T ip -n "$hub" link set vb down; T ip -n "$hub" link set vb up
        T tc -n "$hub" qdisc add dev vb root tbf rate 10mbit burst 32kbit latency 400ms &&
        T tc -n "$(ns_of 1)" qdisc add dev lv0 root tbf rate 10mbit burst 32kbit latency 400ms
        timeout_ms=2000
        tf=$(now); start_all 0 1048576; wait_ranks
        T tc -n "$hub" qdisc del dev vb root; T tc -n "$(ns_of 1)" qdisc del dev lv0 root
        verdict $cell continue "$tf"
        took=$(awk '/^ready/ { r = $2 } /^ok/ { o = $2 } END { printf "%.1f", o - r }' "$tmp/out1")
        echo "   the 4 MiB call took $took s with LOOM_TIMEOUT_MS=2000"
        awk -v t="$took" 'BEGIN { exit !(t > 2) }' || { echo "FAIL: the call was not slower than the timeout"; fail=1; }
        rows="$rows| | (the call took $took s, LOOM_TIMEOUT_MS 2 s) | | |
" ;;
    stop-short)
        start_all 6 262144; wait_ready 0 1 2 3; sleep 1
        tf=$(now); kill -STOP "$(pid_of 2)"; sleep 2; kill -CONT "$(pid_of 2)"
        wait_ranks; verdict $cell continue "$tf" ;;
    stop-long)
        timeout_ms=3000
        start_all 30 262144; wait_ready 0 1 2 3; sleep 1
        tf=$(now); kill -STOP "$(pid_of 2)"
        for i in $(seq 150); do [ "$(grep -l '^error' "$tmp/out0" "$tmp/out1" "$tmp/out3" 2>/dev/null | wc -l)" = 3 ] && break; sleep 0.1; done
        kill -KILL "$(pid_of 2)"
        wait_ranks; verdict $cell "error 8 2 2" "$tf" ;;
    kill-former-root)
        port=$((port + 1))
        rm -f "$tmp/id"
        ip netns exec "$(ns_of 0)" env LOOM_SOCKET_IFNAME=lv0 LOOM_TIMEOUT_MS=20000 sh -c \
            "echo \$\$ >$tmp/pidmaker; exec $rank_prog --make-id" >"$tmp/id" 2>"$tmp/maker.err" &
        maker=$!
        for i in $(seq 50); do [ -s "$tmp/id" ] && break; sleep 0.1; done
        for r in 0 1 2 3; do start $r 6 262144 LOOM_COMM_ID="$(cat "$tmp/id")"; done
        wait_ready 0 1 2 3; sleep 1
        tf=$(now); kill -KILL $maker; wait $maker 2>/dev/null
        wait_ranks; verdict $cell continue "$tf" ;;
    kill-rank0)
        start_all 30 262144; wait_ready 0 1 2 3; sleep 1
        tf=$(now); kill -KILL "$(pid_of 0)"
        wait_ranks; verdict $cell "error 3 0 0" "$tf" ;;
    kill-mid-join)
        # the root in a process of its own (a launcher's), so it outlives the ranks it
        # tells and can tell a latecomer too
        rm -f "$tmp/id"
        ip netns exec "$(ns_of 0)" env LOOM_SOCKET_IFNAME=lv0 LOOM_TIMEOUT_MS=20000 sh -c \
            "echo \$\$ >$tmp/pidmaker; exec $rank_prog --make-id" >"$tmp/id" 2>"$tmp/maker.err" &
        maker=$!
        for i in $(seq 50); do [ -s "$tmp/id" ] && break; sleep 0.1; done
        for r in 0 1 2; do start $r 6 262144 LOOM_COMM_ID="$(cat "$tmp/id")"; done
        sleep 1.5
        tf=$(now); kill -KILL "$(pid_of 1)"
        sleep 0.5; start 3 6 262144 LOOM_COMM_ID="$(cat "$tmp/id")"
        wait_ranks; kill -KILL $maker; wait $maker 2>/dev/null
        verdict $cell "error 5 1 1" "$tf" ;;
    idle-outsider)
        port=$((port + 1))
        root="$(ip_of 0):$port"
        for r in 0 1 2; do start $r 6 262144 LOOM_ROOT_ADDR="$root"; done
        # 50 idle connections to the root while it waits for rank 3
        ip netns exec "$(ns_of 3)" bash -c "for i in \$(seq 50); do exec {fd}<>/dev/tcp/$(ip_of 0)/$port || break; done; sleep 20" \
            2>/dev/null &
        idle1=$!
        sleep 1; tf=$(now); start 3 6 262144 LOOM_ROOT_ADDR="$root"
        wait_ready 0 1 2 3
        # then 20 to every tcp port a rank listens on
        targets=""
        for r in 0 1 2 3; do
            for p in $(T ip netns exec "$(ns_of $r)" ss -ltnH | awk '{ n = split($4, a, ":"); print a[n] }'); do
                targets="$targets $(ip_of $r)/$p"
            done
        done
        ip netns exec "$(ns_of 3)" bash -c "for t in $targets; do for i in \$(seq 20); do exec {fd}<>/dev/tcp/\$t || break; done; done; sleep 20" \
            2>/dev/null &
        idle2=$!
        wait_ranks; kill $idle1 $idle2 2>/dev/null
        verdict $cell continue "$tf"
        slow=$(awk '/^done/ { gsub(/[()]/, ""); if ($(NF - 1) + 0 > 3) print }' "$tmp"/out? | head -1)
        [ -z "$slow" ] || { echo "FAIL: a destroy took over 3 s: $slow"; fail=1; }
        echo "   outsiders held connections to $(echo $targets | wc -w) rank ports" ;;
    *) echo "unknown cell $cell"; fail=1 ;;
    esac
done

echo
echo "| cell | expected | outcome per rank (delay from the fault) | |"
echo "|---|---|---|---|"
printf '%s' "$rows"
exit $fail
