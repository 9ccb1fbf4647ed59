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

/* The meta every slot of op carries (bytes left 0); takes op's call number (seq). */
struct slot_meta call_meta(struct loom_comm *c, const struct loom_op *op);
/* A peer's slot belongs to another call: comm_fail with both calls spelled out (where:
   "" or " on the GPU"). Returns LOOM_ERR_INVALID_ARGUMENT. */
loom_result_t meta_mismatch(struct loom_comm *c, int peer, const struct slot_meta *want, const struct slot_meta *got,
                            const char *where);

#endif
