/* trace.h: Chrome-trace events (open the JSON in Perfetto or chrome://tracing).
 * Each rank records complete events ("ph":"X") in memory; trace_write gathers them to
 * rank 0 of world, which writes one file: pid = the rank, tid 0 = compute and blocking
 * communication, tid 1 = the data-parallel loom stream. */
#ifndef LOOM_TRAIN_TRACE_H
#define LOOM_TRAIN_TRACE_H

#include <stddef.h>

#include "loom.h"

struct trace_event {
    char name[32];
    char cat[8];                /* "fwd", "bwd", "tp", "pp", "dp", "opt", "eval"     */
    int tid, stage, mb, step;
    double t0, t1;              /* seconds, CLOCK_REALTIME (one clock for all ranks)  */
    size_t bytes;
};

struct trace {
    struct trace_event *ev;
    size_t n, cap;
    int rank, stage;
};

double trace_now(void);
void trace_add(struct trace *t, const char *name, const char *cat, int tid, int mb, int step,
               double t0, double t1, size_t bytes);
/* Collective over world. Returns 0, or -1 (message printed). */
int trace_write(struct trace *t, loom_comm_t world, const char *path);
void trace_free(struct trace *t);

#endif
