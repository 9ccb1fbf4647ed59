/* exec_cuda.h: what the host side (runtime/cuda.c) hands the CUDA executor
 * (algos/exec_cuda.cu). Plain C, read by both compilers.
 *
 * The device FIFO of one link, one per channel (a channel is one thread block running
 * the whole schedule on its share of every step). It lives in the receiver's device
 * memory; the sender maps it through CUDA IPC. Layout of one channel (offset/size):
 *  offset       size     field
 *  0            4        tail     slots posted by the sender (wrapping u32)
 *  128          4        head     slots consumed by the receiver (wrapping u32)
 *  256          8*K      meta[K]  per slot: bytes, call number (seq)
 *  4096         K*S      slots    slot i at 4096 + i*S
 * Channel ch starts at ch * cuda_chan_bytes(K, S). Only the owner of a counter writes
 * it (tail: sender, head: receiver), with a release store after the data; the other
 * side polls it with acquire loads. The counters persist across calls, so a kernel
 * reads its own counter at the start of each step and carries on from there.
 */
#ifndef LOOM_EXEC_CUDA_H
#define LOOM_EXEC_CUDA_H

#include <stddef.h>
#include <stdint.h>

#define CUDA_MAX_CHANNELS 32
#define CUDA_MAX_SLOTS 64
#define CUDA_MAX_TOGETHER 256      /* sends + recvs of one concurrent block */
#define CUDA_CTRL_BYTES 4096
#define CUDA_OFF_TAIL 0
#define CUDA_OFF_HEAD 128
#define CUDA_OFF_META 256

static inline size_t cuda_chan_bytes(uint32_t nslots, size_t slot_bytes)
{
    return CUDA_CTRL_BYTES + (size_t)nslots * slot_bytes;
}

/* One step of the schedule (algos/schedule.h), with its links resolved to the FIFO of
   channel 0 (NULL: the step does not use that direction). */
struct dstep {
    int32_t prim;
    int32_t together;
    char *sendq;
    char *recvq;
    const char *src;
    char *dst;
    uint64_t bytes;
};

/* Written by the kernel that failed, read by the host (mapped pinned memory). The
   flag is also the abort word: the host raises it (comm_fail) and every waiting block
   sees it within a few thousand polls. */
struct dstatus {
    volatile int32_t flag;        /* 0, or the loom_result_t that stopped the kernels */
    int32_t step;                 /* which step waited                                */
    int32_t sending;              /* 1: waited for room, 0: for data                  */
    int32_t channel;
    uint32_t got_bytes, got_seq;  /* a mismatched slot's meta                         */
    uint32_t want_bytes, want_seq;
};

/* One launch. */
struct dplan {
    const struct dstep *steps;    /* device memory                                    */
    int32_t nsteps;
    int32_t nchan;
    uint32_t nslots;              /* K, power of two                                  */
    uint32_t seq;                 /* call number on this comm (0 for p2p)             */
    uint64_t slot_bytes;          /* S, multiple of 64                                */
    uint64_t chan_bytes;          /* cuda_chan_bytes(K, S)                            */
    uint64_t timeout_ns;          /* each block gives up after this long              */
    struct dstatus *status;       /* device pointer of the mapped status              */
    int32_t dtype, op;
};

#ifdef __cplusplus
extern "C" {
#endif
/* Launch the executor (plan.nchan blocks) on stream; 0 or a cudaError_t. */
int exec_cuda_launch(const struct dplan *plan, void *stream);
/* buf[i] /= n on stream (avg). */
int exec_cuda_div(void *buf, size_t count, int dtype, int n, void *stream);
/* dst[i] = a[i] op b[i] on stream, alone (bench: the reduction as HBM bandwidth). */
int exec_cuda_reduce(void *dst, const void *a, const void *b, size_t count, int dtype, int op,
                     void *stream);
#ifdef __cplusplus
}
#endif

#endif
