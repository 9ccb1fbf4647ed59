/* exec_cuda.h: what the host side (runtime/cuda.c) hands the CUDA executor
 * (algos/exec_cuda.cu). Plain C, read by both compilers.
 *
 * The device FIFO of one link, one per channel (a channel is one thread block running
 * the whole schedule on its share of every step). It lives where both ends can reach
 * it: the receiver's device memory (cuda_ipc), or pinned host memory mapped into both
 * GPUs when they cannot reach each other (LOOM_CUDA_FIFO=host forces it). Its control
 * block has the host FIFO's layout (transport.h, struct fifo_ctrl: tail, head and the
 * 24-byte slot meta at the same offsets), so one header describes both. One channel
 * (offset/size):
 *  offset        size      field
 *  0             4         tail     simple slots posted by the sender (wrapping u32)
 *  128           4         head     simple slots consumed by the receiver
 *  320           24*K      meta[K]  per slot: struct dmeta
 *  2176          4         ll_head  LL slots consumed by the receiver
 *  4096          K*S       simple slots, slot i at 4096 + i*S
 *  4096+K*S      L*LLS     LL slots (L = CUDA_LL_SLOTS of CUDA_LL_SLOT_BYTES)
 * Channel ch starts at ch * cuda_chan_bytes(K, S). Only the owner of a counter writes
 * it (tail: sender, head: receiver), with a release store after the data; the other
 * side polls it with acquire loads. The counters persist across calls. The sender also
 * keeps its own count of slots written (simple and LL) and the head it last saw in its
 * own memory (struct dstep.sctr), so it reads across the link only to wait for room.
 * The receiver's own counter (head) is in the FIFO: its memory for a device FIFO, but
 * across PCIe for host FIFOs and staged links (a cache like sctr would save that read).
 *
 * Two protocols (LOOM_PROTO; by step size otherwise):
 *  simple  a slot of S bytes is written, fenced, then published by bumping tail; the
 *          receiver polls tail. Full bandwidth, two round trips of latency per slot.
 *  LL      (low latency) a slot is CUDA_LL_HDR header lines and CUDA_LL_LINES data
 *          lines of 16 bytes: {data0, flag, data1, flag}, 8 bytes of data per line
 *          written with one 16-byte store; flag comes from the slot's number (its
 *          count of uses, ll_flag in exec_cuda.cu), so a line is valid once both
 *          its flags say so (stores are atomic per 8 bytes at least)
 *          and no fence or counter sits between the data and the reader. Half the
 *          bandwidth; every thread of the receiving block polls its own line. The
 *          header lines carry the slot's meta (struct dmeta), checked by every thread
 *          before it uses its line. Flow control: ll_head, as head above.
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
#define CUDA_OFF_META 320
#define CUDA_OFF_LL_HEAD 2176
#define CUDA_THREADS 512           /* threads per block                            */
#define CUDA_LL_HDR 3              /* header lines: {bytes, seq} {kind, root} {count} */
#define CUDA_LL_LINES CUDA_THREADS /* data lines per LL slot: one per thread       */
#define CUDA_LL_DATA (CUDA_LL_LINES * 8)                 /* payload of an LL slot  */
#define CUDA_LL_SLOT_BYTES ((CUDA_LL_HDR + CUDA_LL_LINES) * 16)
#define CUDA_LL_SLOTS 16
#define CUDA_SCTR 4                /* sender counters per channel and link (dstep.sctr) */

enum { PROTO_SIMPLE = 0, PROTO_LL = 1 };

/* The meta of a simple slot: struct slot_meta of transport.h, byte for byte. */
struct dmeta {
    uint32_t bytes;
    uint32_t kind;                /* coll << 16 | dtype << 8 | op                     */
    uint64_t count;
    uint32_t seq;                 /* call number on the comm (0 for p2p)              */
    int32_t root;
};

static inline size_t cuda_chan_bytes(uint32_t nslots, size_t slot_bytes)
{
    return CUDA_CTRL_BYTES + (size_t)nslots * slot_bytes + (size_t)CUDA_LL_SLOTS * CUDA_LL_SLOT_BYTES;
}

/* One step of the schedule (algos/schedule.h), with its links resolved to the FIFO of
   channel 0 (NULL: the step does not use that direction). */
struct dstep {
    int32_t prim;
    int32_t together;
    int32_t proto;                /* PROTO_SIMPLE or PROTO_LL (send/recv steps)       */
    int32_t pad;
    char *sendq;
    char *recvq;
    uint32_t *sctr;               /* the sender's counters for sendq (device memory):
                                     CUDA_SCTR per channel, see exec_cuda.cu         */
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
    struct dmeta got, want;       /* a mismatched slot's meta, and this rank's        */
};

/* One launch. */
struct dplan {
    const struct dstep *steps;    /* device memory                                    */
    int32_t nsteps;
    int32_t nchan;
    uint32_t nslots;              /* K, power of two                                  */
    struct dmeta meta;            /* what this call's slots carry (bytes: per slot)   */
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
