/* schedule.h: algorithms as schedules. For one operation and one rank, a schedule is the
 * ordered list of primitive steps that rank performs (DESIGN.md section 5). The host
 * executor (exec_host.c) runs them; later a CUDA executor, a verifier and a simulator
 * read the same lists. A researcher adds an algorithm by adding a builder here. */
#ifndef LOOM_SCHED_H
#define LOOM_SCHED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "loom.h"

#ifdef __cplusplus          /* read by the CUDA executor (C++) for enum prim */
#define LOOM_ALIGNAS(n) alignas(n)
#else
#define LOOM_ALIGNAS(n) _Alignas(n)
#endif

/* loom_dtype_size of a valid dtype, inline: a tiny call needs it several times, and each
   call to the exported function goes through the PLT. log2 of the sizes, two bits per
   dtype in loom.h's order: int8 uint8 int32 uint32 int64 uint64 float16 float32 float64
   bfloat16 = 1 1 4 4 8 8 2 4 8 2 bytes. */
static inline size_t dtype_size(loom_dtype_t dt) { return (size_t)1 << ((0x79fa0u >> (2 * (unsigned)dt)) & 3); }

enum coll {
    COLL_ALLREDUCE = 1, COLL_REDUCE, COLL_BROADCAST, COLL_ALLGATHER,
    COLL_REDUCE_SCATTER, COLL_ALLTOALL, COLL_P2P
};
const char *coll_name(enum coll c);

/* One send or recv of a group (loom_send/loom_recv between group_start/end). */
struct p2p_item {
    bool is_send;
    int peer;
    void *buf;
    size_t count;
    loom_dtype_t dt;
    int gpu;                 /* 0: host memory; else 1 + the CUDA device of buf */
};

/* One operation as issued: the arguments of the call, validated. */
struct loom_op {
    enum coll coll;
    const void *send;
    void *recv;
    size_t count;            /* NCCL meaning (per rank for allgather / reduce_scatter) */
    loom_dtype_t dt;
    loom_op_t op;
    int root;                /* -1 where it does not apply                            */
    struct p2p_item *p2p;    /* COLL_P2P: the group's items, in issue order           */
    int np2p;
    bool barrier;            /* allreduce of scratch: send/recv set when it runs      */
    int gpu;                 /* 0: host buffers; else 1 + the CUDA device they are on */
    void *cuda_stream;       /* device buffers on a wrapped CUDA stream (else NULL)   */
    char scratch[16];
};

enum prim {
    PRIM_SEND,                /* src -> next                                   */
    PRIM_RECV,                /* prev -> dst                                   */
    PRIM_RECV_REDUCE_SEND,    /* (prev op src) -> next                         */
    PRIM_RECV_REDUCE_COPY_SEND, /* (prev op src) -> dst and -> next            */
    PRIM_RECV_COPY_SEND,      /* prev -> dst and -> next                       */
    PRIM_RECV_REDUCE_COPY,    /* (prev op src) -> dst                          */
    PRIM_COPY,                /* src -> dst (local)                            */
    PRIM_REDUCE,              /* dst = dst op src (local)                      */
    PRIM_COPY_SEND,           /* src -> dst and -> next                        */
};
const char *prim_name(enum prim p);

struct step {
    int32_t prim;             /* enum prim                                      */
    int32_t together;         /* >1 on the first step of a group of steps that
                                 run concurrently (pairwise exchange, p2p)      */
    int32_t send_peer;        /* -1 if the step sends nothing                   */
    int32_t recv_peer;        /* -1 if the step receives nothing                */
    const char *src;          /* local operand                                   */
    char *dst;                /* local result                                    */
    size_t bytes;
};

/* Small schedules live in the struct itself (on the executor's stack): a call of a few
   hundred nanoseconds should not spend a tenth of them in malloc and free. */
#define SCHED_INLINE_STEPS 16
#define SCHED_INLINE_TMP 4096
struct sched {
    struct step *steps;       /* inl, or the heap once it outgrows it             */
    int n, cap;
    void *tmp;                /* scratch (direct all-reduce, in-place alltoall):
                                 tmp_inl, or the heap when larger                */
    struct step inl[SCHED_INLINE_STEPS];
    LOOM_ALIGNAS(64) char tmp_inl[SCHED_INLINE_TMP];
};

/* Build rank's schedule for op on nranks ranks. chunk_bytes: the most one step of a
   ring loop may move (half the FIFO, so a sender can run one step ahead without the
   ring deadlocking). LOOM_ERR_SYSTEM when out of memory. */
enum algo { ALGO_AUTO, ALGO_RING, ALGO_DIRECT };
loom_result_t sched_build(struct sched *s, const struct loom_op *op, int rank, int nranks,
                          size_t chunk_bytes, enum algo algo);
void sched_free(struct sched *s);

#endif
