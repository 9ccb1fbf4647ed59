#!/bin/sh
# test_mpirun.sh: an Open MPI job (mpirun -np 4) comes up through loom_comm_init_env,
# with no MPI call inside loom or the program: OMPI_COMM_WORLD_RANK/SIZE name the rank,
# the job id keys the local rendezvous. Once over the default transports (shm on one
# host), once forced onto tcp.
#
#   test_mpirun.sh PATH/TO/env_init_check
#
# Exit 77 (skip) without Open MPI's mpirun. One host only: no hostfile, no network
# beyond what mpirun uses to start local processes.
set -u
check=${1:?usage: test_mpirun.sh PATH/TO/env_init_check}
np=4

if ! command -v mpirun >/dev/null 2>&1; then
    echo "mpirun not found: skip"
    exit 77
fi
if ! mpirun --version 2>&1 | grep -q "Open MPI"; then
    echo "mpirun is not Open MPI's: skip"
    exit 77
fi

# Keep Open MPI itself on this node and quiet: the ranks never call MPI, so the
# transport choices only matter to mpirun's own start-up.
export OMPI_MCA_btl=self,vader
export OMPI_MCA_rmaps_base_oversubscribe=1
export OMPI_MCA_hwloc_base_binding_policy=none

out=$(mktemp) || exit 1
trap 'rm -f "$out"' EXIT
status=0
for transport in auto tcp; do
    echo "== mpirun -np $np, transport $transport"
    # timeout: a rendezvous that never completes must not hang the suite.
    timeout -k 5 120 mpirun --allow-run-as-root --oversubscribe --bind-to none -np $np \
        -x LOOM_TRANSPORT="$([ $transport = auto ] || echo $transport)" \
        -x LOOM_TIMEOUT_MS=60000 \
        "$check" $np > "$out" 2>&1
    rc=$?
    cat "$out"
    ok=$(grep -c "^env_init_check: rank .* of $np .* ok" "$out")
    if [ $rc -ne 0 ] || [ "$ok" -ne $np ]; then
        echo "FAIL: mpirun exited with $rc; $ok of $np ranks reported ok"
        status=1
    fi
done
exit $status
