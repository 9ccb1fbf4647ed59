/* exec.h: executors run schedules. exec_host runs them on host memory in the
 * calling thread (a stream's worker or the user's thread for a NULL stream). */
#ifndef LOOM_EXEC_H
#define LOOM_EXEC_H

#include "comm.h"
#include "schedule.h"

/* Run op on c. The caller holds c's turn (issue order). On failure the comm may be
   broken (comm_fail) and loom_last_error(c) says why. */
loom_result_t exec_host_run(struct loom_comm *c, const struct loom_op *op);

#endif
