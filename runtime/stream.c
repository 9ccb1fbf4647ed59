/* stream.c: host streams. A loom_stream is an ordered queue served by one worker
 * thread: calls on it return at once and run in order; loom_stream_sync waits for
 * them. A NULL stream means the call runs in the caller's thread (enqueue.c).
 * A wrapped CUDA stream (loom_stream_wrap_cuda) has no thread: calls on it launch in
 * the caller's thread, ordered on the CUDA stream (enqueue.c, runtime/cuda.c); query
 * and sync ask CUDA, and a kernel's failure reaches loom_comm_get_error. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "enqueue.h"
#include "log.h"
#ifdef LOOM_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

struct qitem {
    struct loom_comm *c;
    struct loom_op *op;
    uint64_t ticket;
    struct qitem *next;
};

struct loom_stream {
    pthread_mutex_t lock;
    pthread_cond_t cv;          /* work arrived, or stop           */
    pthread_cond_t idle;        /* pending reached 0               */
    struct qitem *head, *tail;
    int pending;                /* queued + running                */
    loom_result_t err;          /* first error since the last sync */
    bool stop;
    pthread_t worker;
    void *cuda;                 /* the wrapped cudaStream_t, or NULL (host stream) */
};

static void *worker_main(void *arg)
{
    struct loom_stream *s = arg;
    pthread_mutex_lock(&s->lock);
    for (;;) {
        while (s->head == NULL && !s->stop) pthread_cond_wait(&s->cv, &s->lock);
        if (s->head == NULL) break;
        struct qitem *q = s->head;
        s->head = q->next;
        if (s->head == NULL) s->tail = NULL;
        pthread_mutex_unlock(&s->lock);

        loom_log_set_rank(q->c->rank);
        loom_result_t r = enqueue_run(q->c, q->op, q->ticket);
        comm_unref(q->c);
        free(q->op->p2p);
        free(q->op);
        free(q);

        pthread_mutex_lock(&s->lock);
        if (r != LOOM_SUCCESS && s->err == LOOM_SUCCESS) s->err = r;
        if (--s->pending == 0) pthread_cond_broadcast(&s->idle);
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

loom_result_t loom_stream_create(loom_stream_t *out)
{
    if (out == NULL) return loom_set_error(NULL, LOOM_ERR_INVALID_ARGUMENT, "loom_stream_create: NULL");
    struct loom_stream *s = calloc(1, sizeof *s);
    if (s == NULL) return loom_set_error(NULL, LOOM_ERR_SYSTEM, "loom_stream_create: out of memory");
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->cv, NULL);
    pthread_cond_init(&s->idle, NULL);
    if (pthread_create(&s->worker, NULL, worker_main, s) != 0) {
        free(s);
        return loom_set_error(NULL, LOOM_ERR_SYSTEM, "loom_stream_create: cannot start its thread");
    }
    *out = s;
    return LOOM_SUCCESS;
}

#ifdef LOOM_HAVE_CUDA
/* The legacy default stream (NULL) is refused: a loom_stream_t NULL means "no stream,
   block", so it could not be told apart; pass cudaStreamPerThread or a created stream. */
loom_result_t loom_stream_wrap_cuda(void *cuda_stream, loom_stream_t *out)
{
    if (out == NULL || cuda_stream == NULL)
        return loom_set_error(NULL, LOOM_ERR_INVALID_ARGUMENT, "loom_stream_wrap_cuda: %s is NULL (for the "
                              "default stream pass cudaStreamPerThread)", out ? "cuda_stream" : "the output");
    struct loom_stream *s = calloc(1, sizeof *s);
    if (s == NULL) return loom_set_error(NULL, LOOM_ERR_SYSTEM, "loom_stream_wrap_cuda: out of memory");
    s->cuda = cuda_stream;
    *out = s;
    return LOOM_SUCCESS;
}

static loom_result_t cuda_stream_wait(struct loom_stream *s, bool block)
{
    cudaError_t e = block ? cudaStreamSynchronize((cudaStream_t)s->cuda) : cudaStreamQuery((cudaStream_t)s->cuda);
    if (e == cudaErrorNotReady) return LOOM_IN_PROGRESS;
    if (e == cudaSuccess) return LOOM_SUCCESS;
    cudaGetLastError();
    return loom_set_error(NULL, LOOM_ERR_CUDA, "CUDA stream: %s", cudaGetErrorString(e));
}
#else
loom_result_t loom_stream_wrap_cuda(void *cuda_stream, loom_stream_t *s)
{
    (void)cuda_stream;
    (void)s;
    return loom_set_error(NULL, LOOM_ERR_INVALID_USAGE,
                          "loom_stream_wrap_cuda: this build of loom has no CUDA support");
}

static loom_result_t cuda_stream_wait(struct loom_stream *s, bool block)
{
    (void)s;
    (void)block;
    return LOOM_ERR_INTERNAL;
}
#endif

void *stream_cuda(loom_stream_t s)
{
    return s ? s->cuda : NULL;
}

loom_result_t stream_submit(loom_stream_t s, struct loom_comm *c, struct loom_op *op, uint64_t ticket)
{
    struct qitem *q = malloc(sizeof *q);
    if (q == NULL) {
        free(op->p2p);
        free(op);
        comm_fail(c, LOOM_ERR_SYSTEM, true, "out of memory queueing on a stream");
        return LOOM_ERR_SYSTEM;
    }
    comm_ref(c);
    *q = (struct qitem){ .c = c, .op = op, .ticket = ticket };
    pthread_mutex_lock(&s->lock);
    if (s->tail) s->tail->next = q;
    else s->head = q;
    s->tail = q;
    s->pending++;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->lock);
    return LOOM_SUCCESS;
}

loom_result_t loom_stream_query(loom_stream_t s)
{
    if (s == NULL) return LOOM_SUCCESS;   /* NULL stream: every call already finished */
    if (s->cuda) return cuda_stream_wait(s, false);
    pthread_mutex_lock(&s->lock);
    loom_result_t r = s->pending ? LOOM_IN_PROGRESS : s->err;
    pthread_mutex_unlock(&s->lock);
    return r;
}

/* Every queued call has a deadline, so this wait ends. */
loom_result_t loom_stream_sync(loom_stream_t s)
{
    if (s == NULL) return LOOM_SUCCESS;
    if (s->cuda) return cuda_stream_wait(s, true);
    pthread_mutex_lock(&s->lock);
    while (s->pending) pthread_cond_wait(&s->idle, &s->lock);
    loom_result_t r = s->err;
    s->err = LOOM_SUCCESS;
    pthread_mutex_unlock(&s->lock);
    return r;
}

loom_result_t loom_stream_destroy(loom_stream_t s)
{
    if (s == NULL) return loom_set_error(NULL, LOOM_ERR_INVALID_ARGUMENT, "loom_stream_destroy: NULL stream");
    if (s->cuda) {                        /* the CUDA stream stays the caller's */
        free(s);
        return LOOM_SUCCESS;
    }
    loom_stream_sync(s);
    pthread_mutex_lock(&s->lock);
    s->stop = true;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->lock);
    pthread_join(s->worker, NULL);
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->cv);
    pthread_cond_destroy(&s->idle);
    free(s);
    return LOOM_SUCCESS;
}
