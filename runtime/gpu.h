/* gpu.h: loom's CUDA glue as the rest of the runtime sees it (runtime/cuda.c).
 * Without CUDA (LOOM_HAVE_CUDA unset) every buffer is host memory and these are
 * inline stubs, so enqueue.c, stream.c and comm.c have no #ifdef of their own. */
#ifndef LOOM_GPU_H
#define LOOM_GPU_H

#include "comm.h"
#include "schedule.h"

#ifdef LOOM_HAVE_CUDA
/* 0: p is host memory (or no GPU is usable here); else 1 + the CUDA device holding it
   (device or managed memory). Never creates a CUDA context. */
int cuda_gpu_of(const void *p);
/* 1 + the calling thread's current CUDA device; 0 where there is none. */
int cuda_current_gpu(void);
/* Run op (op->gpu != 0) on the GPU: launched on op->cuda_stream and returning at once,
   or (NULL) on the comm's own stream and waited for. The caller holds the turn. */
loom_result_t cuda_run(struct loom_comm *c, const struct loom_op *op);
/* comm_fail: raise the abort word every kernel of c polls. Any thread. */
void cuda_comm_raise(struct loom_comm *c, int code);
/* teardown: wait for c's kernels (they end: timeout or abort word), free everything. */
void cuda_comm_free(struct loom_comm *c);
#else
static inline int cuda_gpu_of(const void *p) { (void)p; return 0; }
static inline int cuda_current_gpu(void) { return 0; }
static inline loom_result_t cuda_run(struct loom_comm *c, const struct loom_op *op)
{
    (void)op;
    return loom_set_error(c, LOOM_ERR_INTERNAL, "device buffers in a build without CUDA");
}
static inline void cuda_comm_raise(struct loom_comm *c, int code) { (void)c; (void)code; }
static inline void cuda_comm_free(struct loom_comm *c) { (void)c; }
#endif

#endif
