/* loom.h: the public API of loom, a collective-communications runtime.
 *
 * Close to NCCL's API on purpose (an nccl.h ABI shim stays thin): dtype and op
 * numbering equal NCCL's, counts mean what they mean in NCCL (allgather sendcount and
 * reduce_scatter recvcount are per rank; alltoall count is per peer).
 *
 * Rules: every rank issues the collectives of one communicator in the same order.
 * A call with bad arguments returns LOOM_ERR_INVALID_ARGUMENT and changes nothing; a
 * call that fails part-way (a peer died, an abort) may have written part of its
 * output, as in NCCL. No call waits without a deadline (LOOM_TIMEOUT_MS). After a
 * failure the communicator is unusable: later calls return the same error at once;
 * destroy it.
 */
#ifndef LOOM_H
#define LOOM_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif
/* libloom exports these declarations and nothing else (it is built with hidden
   visibility), so its internals cannot clash with a program's own names. */
#if defined(__GNUC__)
#pragma GCC visibility push(default)
#endif

/* The version of this header; loom_version() is the library's (they differ when a
   program runs against another libloom.so.0 than it was built with). The wire
   protocols carry their own versions and refuse a mismatch with a message. */
#define LOOM_VERSION_MAJOR 0
#define LOOM_VERSION_MINOR 2
#define LOOM_VERSION_PATCH 0
#define LOOM_VERSION_CODE (LOOM_VERSION_MAJOR * 10000 + LOOM_VERSION_MINOR * 100 + LOOM_VERSION_PATCH)
int loom_version(void);   /* LOOM_VERSION_CODE of the library */

/* X(name, message): one list, so codes and messages never drift. */
#define LOOM_RESULT_LIST(X)                                                         \
    X(LOOM_SUCCESS, "success")                                                      \
    X(LOOM_ERR_SYSTEM, "system call failed")                                        \
    X(LOOM_ERR_INTERNAL, "internal error (a bug in loom)")                          \
    X(LOOM_ERR_INVALID_ARGUMENT, "invalid argument")                                \
    X(LOOM_ERR_INVALID_USAGE, "invalid usage")                                      \
    X(LOOM_ERR_REMOTE, "a remote rank failed or left")                              \
    X(LOOM_IN_PROGRESS, "operation in progress")                                    \
    X(LOOM_ERR_TIMEOUT, "timed out")                                                \
    X(LOOM_ERR_CUDA, "CUDA error")                                                  \
    X(LOOM_ERR_ABORTED, "communicator aborted")

#define LOOM_RESULT_ENUM_(name, msg) name,
typedef enum { LOOM_RESULT_LIST(LOOM_RESULT_ENUM_) LOOM_NUM_RESULTS } loom_result_t;
#undef LOOM_RESULT_ENUM_

typedef enum { LOOM_INT8, LOOM_UINT8, LOOM_INT32, LOOM_UINT32, LOOM_INT64, LOOM_UINT64,
               LOOM_FLOAT16, LOOM_FLOAT32, LOOM_FLOAT64, LOOM_BFLOAT16,
               LOOM_NUM_DTYPES } loom_dtype_t;
typedef enum { LOOM_SUM, LOOM_PROD, LOOM_MAX, LOOM_MIN, LOOM_AVG, LOOM_NUM_OPS } loom_op_t;

typedef struct loom_comm   *loom_comm_t;
typedef struct loom_stream *loom_stream_t;        /* NULL: the call blocks until done */
typedef struct { char internal[128]; } loom_id_t;  /* root address, port, 128-bit secret */

/* Longest string loom_id_to_string writes, with its NUL. */
#define LOOM_ID_STRLEN 96

const char   *loom_strerror(loom_result_t r);
/* Detail of the last failure on comm (or of the last failed call of this thread when
   comm is NULL or the failure happened before a communicator existed). Never NULL. */
const char   *loom_last_error(loom_comm_t comm);

loom_result_t loom_get_id(loom_id_t *id);
loom_result_t loom_id_to_string(const loom_id_t *id, char *buf, size_t len);
loom_result_t loom_id_from_string(const char *s, loom_id_t *id);
loom_result_t loom_comm_init(loom_comm_t *comm, int nranks, const loom_id_t *id, int rank);
loom_result_t loom_comm_init_env(loom_comm_t *comm); /* LOOM_*, torchrun, Slurm, Open MPI */
loom_result_t loom_comm_split(loom_comm_t comm, int color, int key, loom_comm_t *newcomm);
loom_result_t loom_comm_destroy(loom_comm_t comm);
loom_result_t loom_comm_abort(loom_comm_t comm);     /* never hangs                     */
loom_result_t loom_comm_get_error(loom_comm_t comm); /* asynchronous error, if any      */
int           loom_comm_rank(loom_comm_t comm);
int           loom_comm_size(loom_comm_t comm);

loom_result_t loom_stream_create(loom_stream_t *s);   /* an ordered host queue           */
/* A cudaStream_t (not the legacy NULL stream): calls with device buffers launch at
   once and complete in that stream's order; query/sync ask CUDA; a kernel's failure
   (timeout, abort, a dead peer) is reported by loom_comm_get_error. destroy frees only
   the wrapper. Host buffers need a host stream or NULL. */
loom_result_t loom_stream_wrap_cuda(void *cuda_stream, loom_stream_t *s);
loom_result_t loom_stream_query(loom_stream_t s);     /* SUCCESS or IN_PROGRESS; or the
                                                         first error since the last sync */
loom_result_t loom_stream_sync(loom_stream_t s);      /* first error since the last sync */
loom_result_t loom_stream_destroy(loom_stream_t s);   /* waits for queued work first     */

loom_result_t loom_allreduce(const void *send, void *recv, size_t count,
                             loom_dtype_t dt, loom_op_t op, loom_comm_t c, loom_stream_t s);
loom_result_t loom_reduce(const void *send, void *recv, size_t count, loom_dtype_t dt,
                          loom_op_t op, int root, loom_comm_t c, loom_stream_t s);
loom_result_t loom_broadcast(const void *send, void *recv, size_t count, loom_dtype_t dt,
                             int root, loom_comm_t c, loom_stream_t s);
loom_result_t loom_allgather(const void *send, void *recv, size_t sendcount,
                             loom_dtype_t dt, loom_comm_t c, loom_stream_t s);
loom_result_t loom_reduce_scatter(const void *send, void *recv, size_t recvcount,
                                  loom_dtype_t dt, loom_op_t op, loom_comm_t c, loom_stream_t s);
loom_result_t loom_alltoall(const void *send, void *recv, size_t count, loom_dtype_t dt,
                            loom_comm_t c, loom_stream_t s);
loom_result_t loom_send(const void *buf, size_t count, loom_dtype_t dt, int peer,
                        loom_comm_t c, loom_stream_t s);
loom_result_t loom_recv(void *buf, size_t count, loom_dtype_t dt, int peer,
                        loom_comm_t c, loom_stream_t s);
loom_result_t loom_barrier(loom_comm_t c, loom_stream_t s);
loom_result_t loom_group_start(void);   /* fuse sends/recvs (pipeline, all-to-all) */
loom_result_t loom_group_end(void);

/* Helpers beyond NCCL's API. */
size_t        loom_dtype_size(loom_dtype_t dt);      /* 0 for an unknown dtype */
const char   *loom_dtype_name(loom_dtype_t dt);      /* "float32", ...; NULL if unknown */
const char   *loom_op_name(loom_op_t op);            /* "sum", ...; NULL if unknown */

#if defined(__GNUC__)
#pragma GCC visibility pop
#endif
#ifdef __cplusplus
}
#endif
#endif /* LOOM_H */
