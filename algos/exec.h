/* exec.h: executors run schedules. exec_host runs them on host memory in the
 * calling thread (a stream's worker or the user's thread for a NULL stream). */
#ifndef LOOM_EXEC_H
#define LOOM_EXEC_H

#include "comm.h"
#include "schedule.h"
#include "transport.h"

/* Run op on c. The caller holds c's turn (issue order). On failure the comm may be
   broken (comm_fail) and loom_last_error(c) says why. */
loom_result_t exec_host_run(struct loom_comm *c, const struct loom_op *op);

/* The meta every slot of op carries (bytes left 0) into *m; takes op's call number (seq).
   Written field by field where it is kept: a struct returned by value was built in a
   temporary and copied with wider loads than its stores, which stalled store-to-load
   forwarding twice in every call (about 10 % of a 2-rank 8-byte broadcast, perf). */
void call_meta(struct loom_comm *c, const struct loom_op *op, struct slot_meta *m);
/* The single-copy choice of a 2-rank all-gather on shm (exec_host.c, REMOTE_MIN_BYTES):
   does call number `call` of a size class hand over addresses? fifo and remote: what the
   recent calls of the class took each way (ns per MiB of a block, 0 = not measured yet);
   prev: the way of the class's last call (0 FIFO, 1 by address, -1 none). Each way is
   tried twice first; then the cheaper is taken, the last call's way until the other
   costs 10 % less, except one call in REMOTE_EXPLORE which measures the other (one in
   4 x REMOTE_EXPLORE when that costs 1.5x or more). */
bool remote_choose(uint64_t fifo, uint64_t remote, int prev, uint32_t call);
/* Move the calling thread off cpu to the next CPU of its affinity mask, then give the
   mask back (the thread stays where it landed): a one-off push the load balancer does
   not give two threads that keep passing one core between them. Called by a waiter
   that finds the rank it waits for last ran on its own CPU (the higher rank of the
   two). At most once per 10 ms per communicator; never when the mask has one CPU (the
   user pinned it). Returns the CPU it moved to, or -1 when it did not move. */
int exec_move_off_cpu(struct loom_comm *c, int cpu, uint64_t now);
/* A peer's slot belongs to another call: comm_fail with both calls spelled out (where:
   "" or " on the GPU"). Returns LOOM_ERR_INVALID_ARGUMENT. */
loom_result_t meta_mismatch(struct loom_comm *c, int peer, const struct slot_meta *want, const struct slot_meta *got,
                            const char *where);

#endif
