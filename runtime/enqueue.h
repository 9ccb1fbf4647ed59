/* enqueue.h: between the API entry points (enqueue.c) and streams (stream.c). */
#ifndef LOOM_ENQUEUE_H
#define LOOM_ENQUEUE_H

#include "comm.h"
#include "schedule.h"

/* Wait for ticket's turn on c, run op, pass the turn on. Frees nothing. */
loom_result_t enqueue_run(struct loom_comm *c, struct loom_op *op, uint64_t ticket);
/* Queue op (heap-allocated; the stream frees it and its p2p array) on s. Takes a
   reference on c that the stream drops when op has run. */
loom_result_t stream_submit(loom_stream_t s, struct loom_comm *c, struct loom_op *op, uint64_t ticket);
/* The cudaStream_t s wraps (loom_stream_wrap_cuda), or NULL for a host stream. */
void *stream_cuda(loom_stream_t s);

#endif
