/* enqueue.c: the collective entry points of loom.h.
 * Checks every argument before anything moves (a bad call returns
 * LOOM_ERR_INVALID_ARGUMENT and changes nothing), gives the call its ticket in the
 * communicator's issue order, and runs it now (NULL stream) or queues it on a stream.
 * Between loom_group_start and loom_group_end calls are recorded; at the end the
 * sends and recvs of one communicator are fused into one concurrent operation.
 * Not here: the algorithms (algos/) or the failure machinery (comm.c, progress.c).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpu.h"
#include "enqueue.h"
#include "exec.h"
#include "log.h"

/* ---- issue order ----
   Every call takes a ticket and runs when now_serving reaches it, then passes the turn
   on. A call with nobody ahead of it (the usual case: one thread issuing, no stream)
   takes no lock: its ticket and passing the turn are its only atomic read-modify-
   writes. Only a call that finds another ahead sleeps, on order_cv; whoever passes the
   turn, or leaves without it, wakes the sleepers if order_waiters counts any. That
   cannot miss one: a sleeper counts itself before it looks at now_serving again, the
   passer stores now_serving before it reads the count, both sequentially consistent.
   A call takes its ticket before it reads the status, and loom_comm_abort sets the
   status before drain (comm.c) counts tickets: a call racing an abort is either
   counted, and waited for, or sees the status and leaves. */

static uint64_t take_ticket(struct loom_comm *c) { return atomic_fetch_add(&c->next_ticket, 1); }

static void wake_turn_waiters(struct loom_comm *c)
{
    if (atomic_load(&c->order_waiters) == 0) return;
    pthread_mutex_lock(&c->order_lock);
    pthread_cond_broadcast(&c->order_cv);
    pthread_mutex_unlock(&c->order_lock);
}

/* Sleep until ticket's turn, the comm breaks or is torn down; LOOM_ERR_TIMEOUT when the
   calls ahead take longer than the deadline. */
static loom_result_t wait_turn(struct loom_comm *c, uint64_t ticket)
{
    uint64_t deadline = net_deadline(c->cfg.timeout_ms);
    loom_result_t r = LOOM_SUCCESS;
    pthread_mutex_lock(&c->order_lock);
    atomic_fetch_add(&c->order_waiters, 1);
    while (atomic_load(&c->now_serving) != ticket && !atomic_load(&c->torn_down) &&
           atomic_load(&c->status) == LOOM_SUCCESS) {
        if (net_ms_left(deadline) == 0) {
            r = LOOM_ERR_TIMEOUT;
            break;
        }
        net_cond_wait_ms(&c->order_cv, &c->order_lock, 10);
    }
    atomic_fetch_sub(&c->order_waiters, 1);
    pthread_mutex_unlock(&c->order_lock);
    return r;
}

loom_result_t enqueue_run(struct loom_comm *c, struct loom_op *op, uint64_t ticket)
{
    loom_result_t r = atomic_load(&c->now_serving) == ticket ? LOOM_SUCCESS : wait_turn(c, ticket);
    if (r != LOOM_SUCCESS || atomic_load(&c->status) != LOOM_SUCCESS || atomic_load(&c->torn_down)) {
        /* Leave without the turn (it never comes to a broken comm): settle the ticket. */
        if (r == LOOM_ERR_TIMEOUT)
            comm_fail(c, r, true, "%s waited %lld ms for the earlier calls on this communicator",
                      coll_name(op->coll), (long long)c->cfg.timeout_ms);
        atomic_fetch_add(&c->left, 1);
        wake_turn_waiters(c);
        int st = atomic_load(&c->status);
        return st != LOOM_SUCCESS ? (loom_result_t)st : atomic_load(&c->torn_down) ? LOOM_ERR_ABORTED : r;
    }
    if (op->gpu) {
        r = cuda_run(c, op);
    } else {
        if (op->barrier) op->send = op->recv = op->scratch;
        r = exec_host_run(c, op);
    }
    atomic_store(&c->now_serving, ticket + 1);
    wake_turn_waiters(c);
    return r;
}

static loom_result_t submit(struct loom_comm *c, struct loom_op *op, loom_stream_t s)
{
    uint64_t ticket = take_ticket(c);
    /* no stream: run now; a CUDA stream: launch now, ordered on that stream */
    if (s == NULL || (op->cuda_stream = stream_cuda(s)) != NULL) return enqueue_run(c, op, ticket);
    struct loom_op *copy = malloc(sizeof *copy);
    if (copy == NULL) goto oom;
    *copy = *op;
    if (op->np2p) {
        copy->p2p = malloc(sizeof *copy->p2p * (size_t)op->np2p);
        if (copy->p2p == NULL) { free(copy); goto oom; }
        memcpy(copy->p2p, op->p2p, sizeof *copy->p2p * (size_t)op->np2p);
    }
    return stream_submit(s, c, copy, ticket);
oom:
    /* The ticket is taken and will never run: break the comm, so the calls queued
       behind it fail at once instead of waiting for their turn. */
    comm_fail(c, LOOM_ERR_SYSTEM, true, "out of memory queueing %s", coll_name(op->coll));
    return LOOM_ERR_SYSTEM;
}

/* ---- groups ---- */

struct group_item {
    struct loom_comm *c;
    loom_stream_t s;
    struct loom_op op;        /* COLL_P2P: one item in op.p2p_one */
    struct p2p_item one;
};

static _Thread_local struct {
    int depth;
    struct group_item *items;
    int n, cap;
} group;

/* Threads inside a group now, all together: a call outside any group (the usual case)
   learns it from this word, without the thread-local lookup (a __tls_get_addr call in a
   shared library). A thread always sees its own increment. */
static _Atomic int groups_open;

static bool in_group(void) { return atomic_load_explicit(&groups_open, memory_order_relaxed) > 0 && group.depth > 0; }

loom_result_t loom_group_start(void)
{
    if (group.depth >= 1024)
        return loom_set_error(NULL, LOOM_ERR_INVALID_USAGE, "loom_group_start nested too deep");
    if (group.depth++ == 0) atomic_fetch_add_explicit(&groups_open, 1, memory_order_relaxed);
    return LOOM_SUCCESS;
}

static loom_result_t group_add(struct loom_comm *c, const struct loom_op *op, loom_stream_t s)
{
    if (group.n == group.cap) {
        int cap = group.cap ? 2 * group.cap : 32;
        struct group_item *n = realloc(group.items, sizeof *n * (size_t)cap);
        if (n == NULL) return loom_set_error(c, LOOM_ERR_SYSTEM, "out of memory in a group");
        group.items = n;
        group.cap = cap;
    }
    struct group_item *g = &group.items[group.n++];
    *g = (struct group_item){ .c = c, .s = s, .op = *op };
    if (op->coll == COLL_P2P) g->one = op->p2p[0];
    return LOOM_SUCCESS;
}

/* Self sends and self recvs must pair up, in order, with equal sizes. */
static loom_result_t check_self_pairs(struct loom_comm *c, const struct p2p_item *it, int n)
{
    int ns = 0, nr = 0;
    for (int i = 0; i < n; i++) {
        if (it[i].peer != c->rank) continue;
        if (it[i].is_send) ns++;
        else nr++;
    }
    for (int k = 0, i = 0, j = 0; k < ns && k < nr; k++, i++, j++) {
        while (!(it[i].peer == c->rank && it[i].is_send)) i++;
        while (!(it[j].peer == c->rank && !it[j].is_send)) j++;
        if (it[i].count * dtype_size(it[i].dt) != it[j].count * dtype_size(it[j].dt))
            return loom_set_error(c, LOOM_ERR_INVALID_ARGUMENT,
                                  "group: send to self #%d has %zu bytes, recv from self has %zu", k,
                                  it[i].count * dtype_size(it[i].dt), it[j].count * dtype_size(it[j].dt));
    }
    if (ns != nr)
        return loom_set_error(c, LOOM_ERR_INVALID_ARGUMENT,
                              "group: %d sends to self but %d recvs from self (rank %d)", ns, nr, c->rank);
    return LOOM_SUCCESS;
}

loom_result_t loom_group_end(void)
{
    if (group.depth == 0)
        return loom_set_error(NULL, LOOM_ERR_INVALID_USAGE, "loom_group_end without loom_group_start");
    if (--group.depth > 0) return LOOM_SUCCESS;
    atomic_fetch_sub_explicit(&groups_open, 1, memory_order_relaxed);
    loom_result_t first = LOOM_SUCCESS;
    for (int i = 0; i < group.n;) {
        struct group_item *g = &group.items[i];
        loom_result_t r;
        if (g->op.coll != COLL_P2P) {
            r = submit(g->c, &g->op, g->s);
            i++;
        } else {
            /* fuse the run of p2p items of this communicator */
            int j = i, n = 0;
            while (j < group.n && group.items[j].op.coll == COLL_P2P && group.items[j].c == g->c) j++;
            struct p2p_item *items = malloc(sizeof *items * (size_t)(j - i));
            if (items == NULL) {
                r = loom_set_error(g->c, LOOM_ERR_SYSTEM, "out of memory in a group");
            } else {
                for (int k = i; k < j; k++) items[n++] = group.items[k].one;
                struct loom_op op = { .coll = COLL_P2P, .p2p = items, .np2p = n, .root = -1,
                                      .dt = LOOM_UINT8, .gpu = items[0].gpu };
                r = check_self_pairs(g->c, items, n);
                for (int k = 1; k < n && r == LOOM_SUCCESS; k++)
                    if (items[k].gpu != op.gpu)
                        r = loom_set_error(g->c, LOOM_ERR_INVALID_ARGUMENT, "group: send/recv #%d is on %s "
                                           "memory, #0 on %s memory; one group cannot mix them", k,
                                           items[k].gpu ? "device" : "host", op.gpu ? "device" : "host");
                if (r == LOOM_SUCCESS) r = submit(g->c, &op, g->s);
                free(items);
            }
            i = j;
        }
        if (first == LOOM_SUCCESS) first = r;
    }
    group.n = 0;
    return first;
}

/* ---- argument checks ---- */

static loom_result_t check_comm(struct loom_comm *c, const char *fn)
{
    if (c == NULL) return loom_set_error(NULL, LOOM_ERR_INVALID_ARGUMENT, "%s: comm is NULL", fn);
    int st = atomic_load(&c->status);
    if (st != LOOM_SUCCESS) return (loom_result_t)st;   /* detail already recorded */
    if (c->torn_down) return loom_set_error(c, LOOM_ERR_INVALID_USAGE, "%s: communicator destroyed", fn);
    return LOOM_SUCCESS;
}

static loom_result_t check_dtype(struct loom_comm *c, const char *fn, loom_dtype_t dt)
{
    if ((unsigned)dt >= LOOM_NUM_DTYPES)
        return loom_set_error(c, LOOM_ERR_INVALID_ARGUMENT, "%s: unknown dtype %d", fn, (int)dt);
    return LOOM_SUCCESS;
}

static loom_result_t check_op(struct loom_comm *c, const char *fn, loom_op_t op)
{
    if ((unsigned)op >= LOOM_NUM_OPS)
        return loom_set_error(c, LOOM_ERR_INVALID_ARGUMENT, "%s: unknown op %d", fn, (int)op);
    return LOOM_SUCCESS;
}

/* count elements times mult ranks must fit in memory. */
static loom_result_t check_size(struct loom_comm *c, const char *fn, size_t count, loom_dtype_t dt, size_t mult)
{
    size_t bytes;   /* a multiplication, not two divisions: this runs in every call */
    if (__builtin_mul_overflow(count, dtype_size(dt) * mult, &bytes) || bytes > (size_t)PTRDIFF_MAX ||
        count > UINT64_MAX / 2)
        return loom_set_error(c, LOOM_ERR_INVALID_ARGUMENT,
                              "%s: count %zu of %s (x%zu ranks) overflows the address space", fn, count,
                              loom_dtype_name(dt), mult);
    return LOOM_SUCCESS;
}

static loom_result_t check_buf(struct loom_comm *c, const char *fn, const void *p, size_t count, const char *which)
{
    if (p == NULL && count > 0)
        return loom_set_error(c, LOOM_ERR_INVALID_ARGUMENT, "%s: %s buffer is NULL with count %zu", fn, which, count);
    return LOOM_SUCCESS;
}

static loom_result_t check_rank(struct loom_comm *c, const char *fn, int r, const char *which)
{
    if (r < 0 || r >= c->nranks)
        return loom_set_error(c, LOOM_ERR_INVALID_ARGUMENT, "%s: %s %d out of range [0, %d)", fn, which, r, c->nranks);
    return LOOM_SUCCESS;
}

#define LOOM_RETURN_IF_ERR(expr) do { loom_result_t r_ = (expr); if (r_ != LOOM_SUCCESS) return r_; } while (0)

/* The call, as messages name it. */
static const char *call_name(const struct loom_op *op) { return op->barrier ? "barrier" : coll_name(op->coll); }

/* Host or device memory (op->gpu): both buffers on the same side, and device buffers
   on one GPU. Host buffers on a CUDA stream are refused: the stream could not order
   them without a host callback blocking CUDA's callback thread for the whole call. */
static loom_result_t check_memory(struct loom_comm *c, struct loom_op *op, loom_stream_t s)
{
    if (op->count == 0 && !op->barrier) return LOOM_SUCCESS;   /* moves nothing: any memory */
    const void *bufs[2] = { op->send, op->recv };
    const char *names[2] = { "send", "recv" };
    int gpu[2] = { 0, 0 }, first = -1;
    if (op->coll == COLL_P2P) {
        bufs[0] = op->p2p[0].buf;
        names[0] = "the";
        bufs[1] = NULL;
    }
    for (int i = 0; i < 2; i++) {
        if (bufs[i] == NULL) continue;
        gpu[i] = cuda_gpu_of(bufs[i]);
        if (first < 0) first = i;
        else if (gpu[i] != gpu[first])
            return loom_set_error(c, LOOM_ERR_INVALID_ARGUMENT, "loom_%s: the %s buffer is %s memory%s but the %s "
                                  "buffer is %s memory%s; both must be on the same side", call_name(op), names[first],
                                  gpu[first] ? "device" : "host", gpu[first] ? " (GPU)" : "", names[i],
                                  gpu[i] ? "device" : "host", gpu[i] ? " (GPU)" : "");
    }
    op->gpu = first < 0 ? 0 : gpu[first];
    if (s != NULL && stream_cuda(s) != NULL) {
        if (op->barrier) op->gpu = cuda_current_gpu();   /* its scratch is on that GPU */
        if (!op->gpu)
            return loom_set_error(c, LOOM_ERR_INVALID_USAGE, "loom_%s: host buffers on a CUDA stream; use device "
                                  "buffers, or a loom_stream_create stream or NULL for host buffers", call_name(op));
    }
    if (op->coll == COLL_P2P) op->p2p[0].gpu = op->gpu;
    return LOOM_SUCCESS;
}

static loom_result_t dispatch(struct loom_comm *c, struct loom_op *op, loom_stream_t s)
{
    loom_result_t r = check_memory(c, op, s);
    if (r != LOOM_SUCCESS) return r;
    if (in_group()) return group_add(c, op, s);
    if (op->count == 0 && !op->barrier) return LOOM_SUCCESS;   /* nothing moves, as in NCCL */
    return submit(c, op, s);
}

/* ---- entry points ---- */

loom_result_t loom_allreduce(const void *send, void *recv, size_t count, loom_dtype_t dt,
                             loom_op_t op, loom_comm_t c, loom_stream_t s)
{
    const char *fn = "loom_allreduce";
    LOOM_RETURN_IF_ERR(check_comm(c, fn));
    LOOM_RETURN_IF_ERR(check_dtype(c, fn, dt));
    LOOM_RETURN_IF_ERR(check_op(c, fn, op));
    LOOM_RETURN_IF_ERR(check_size(c, fn, count, dt, 1));
    LOOM_RETURN_IF_ERR(check_buf(c, fn, send, count, "send"));
    LOOM_RETURN_IF_ERR(check_buf(c, fn, recv, count, "recv"));
    struct loom_op o = { .coll = COLL_ALLREDUCE, .send = send, .recv = recv, .count = count,
                         .dt = dt, .op = op, .root = -1 };
    return dispatch(c, &o, s);
}

loom_result_t loom_reduce(const void *send, void *recv, size_t count, loom_dtype_t dt,
                          loom_op_t op, int root, loom_comm_t c, loom_stream_t s)
{
    const char *fn = "loom_reduce";
    LOOM_RETURN_IF_ERR(check_comm(c, fn));
    LOOM_RETURN_IF_ERR(check_dtype(c, fn, dt));
    LOOM_RETURN_IF_ERR(check_op(c, fn, op));
    LOOM_RETURN_IF_ERR(check_rank(c, fn, root, "root"));
    LOOM_RETURN_IF_ERR(check_size(c, fn, count, dt, 1));
    LOOM_RETURN_IF_ERR(check_buf(c, fn, send, count, "send"));
    if (c->rank == root) LOOM_RETURN_IF_ERR(check_buf(c, fn, recv, count, "recv"));
    struct loom_op o = { .coll = COLL_REDUCE, .send = send, .recv = recv, .count = count,
                         .dt = dt, .op = op, .root = root };
    return dispatch(c, &o, s);
}

loom_result_t loom_broadcast(const void *send, void *recv, size_t count, loom_dtype_t dt,
                             int root, loom_comm_t c, loom_stream_t s)
{
    const char *fn = "loom_broadcast";
    LOOM_RETURN_IF_ERR(check_comm(c, fn));
    LOOM_RETURN_IF_ERR(check_dtype(c, fn, dt));
    LOOM_RETURN_IF_ERR(check_rank(c, fn, root, "root"));
    LOOM_RETURN_IF_ERR(check_size(c, fn, count, dt, 1));
    if (c->rank == root) LOOM_RETURN_IF_ERR(check_buf(c, fn, send, count, "send"));
    LOOM_RETURN_IF_ERR(check_buf(c, fn, recv, count, "recv"));
    struct loom_op o = { .coll = COLL_BROADCAST, .send = c->rank == root ? send : recv, .recv = recv,
                         .count = count, .dt = dt, .op = LOOM_SUM, .root = root };
    return dispatch(c, &o, s);
}

loom_result_t loom_allgather(const void *send, void *recv, size_t sendcount, loom_dtype_t dt,
                             loom_comm_t c, loom_stream_t s)
{
    const char *fn = "loom_allgather";
    LOOM_RETURN_IF_ERR(check_comm(c, fn));
    LOOM_RETURN_IF_ERR(check_dtype(c, fn, dt));
    LOOM_RETURN_IF_ERR(check_size(c, fn, sendcount, dt, (size_t)c->nranks));
    LOOM_RETURN_IF_ERR(check_buf(c, fn, send, sendcount, "send"));
    LOOM_RETURN_IF_ERR(check_buf(c, fn, recv, sendcount, "recv"));
    struct loom_op o = { .coll = COLL_ALLGATHER, .send = send, .recv = recv, .count = sendcount,
                         .dt = dt, .op = LOOM_SUM, .root = -1 };
    return dispatch(c, &o, s);
}

loom_result_t loom_reduce_scatter(const void *send, void *recv, size_t recvcount, loom_dtype_t dt,
                                  loom_op_t op, loom_comm_t c, loom_stream_t s)
{
    const char *fn = "loom_reduce_scatter";
    LOOM_RETURN_IF_ERR(check_comm(c, fn));
    LOOM_RETURN_IF_ERR(check_dtype(c, fn, dt));
    LOOM_RETURN_IF_ERR(check_op(c, fn, op));
    LOOM_RETURN_IF_ERR(check_size(c, fn, recvcount, dt, (size_t)c->nranks));
    LOOM_RETURN_IF_ERR(check_buf(c, fn, send, recvcount, "send"));
    LOOM_RETURN_IF_ERR(check_buf(c, fn, recv, recvcount, "recv"));
    struct loom_op o = { .coll = COLL_REDUCE_SCATTER, .send = send, .recv = recv, .count = recvcount,
                         .dt = dt, .op = op, .root = -1 };
    return dispatch(c, &o, s);
}

loom_result_t loom_alltoall(const void *send, void *recv, size_t count, loom_dtype_t dt,
                            loom_comm_t c, loom_stream_t s)
{
    const char *fn = "loom_alltoall";
    LOOM_RETURN_IF_ERR(check_comm(c, fn));
    LOOM_RETURN_IF_ERR(check_dtype(c, fn, dt));
    LOOM_RETURN_IF_ERR(check_size(c, fn, count, dt, (size_t)c->nranks));
    LOOM_RETURN_IF_ERR(check_buf(c, fn, send, count, "send"));
    LOOM_RETURN_IF_ERR(check_buf(c, fn, recv, count, "recv"));
    struct loom_op o = { .coll = COLL_ALLTOALL, .send = send, .recv = recv, .count = count,
                         .dt = dt, .op = LOOM_SUM, .root = -1 };
    return dispatch(c, &o, s);
}

static loom_result_t p2p(const char *fn, bool is_send, void *buf, size_t count, loom_dtype_t dt,
                         int peer, loom_comm_t c, loom_stream_t s)
{
    LOOM_RETURN_IF_ERR(check_comm(c, fn));
    LOOM_RETURN_IF_ERR(check_dtype(c, fn, dt));
    LOOM_RETURN_IF_ERR(check_rank(c, fn, peer, "peer"));
    LOOM_RETURN_IF_ERR(check_size(c, fn, count, dt, 1));
    LOOM_RETURN_IF_ERR(check_buf(c, fn, buf, count, "the"));
    if (peer == c->rank && !in_group())
        return loom_set_error(c, LOOM_ERR_INVALID_USAGE,
                              "%s to self outside a group would wait forever; pair it with a "
                              "%s inside loom_group_start/end", fn, is_send ? "loom_recv" : "loom_send");
    struct p2p_item it = { .is_send = is_send, .peer = peer, .buf = buf, .count = count, .dt = dt };
    struct loom_op o = { .coll = COLL_P2P, .p2p = &it, .np2p = 1, .root = -1, .dt = LOOM_UINT8,
                         .count = count };
    return dispatch(c, &o, s);
}

loom_result_t loom_send(const void *buf, size_t count, loom_dtype_t dt, int peer, loom_comm_t c, loom_stream_t s)
{
    return p2p("loom_send", true, (void *)buf, count, dt, peer, c, s);
}

loom_result_t loom_recv(void *buf, size_t count, loom_dtype_t dt, int peer, loom_comm_t c, loom_stream_t s)
{
    return p2p("loom_recv", false, buf, count, dt, peer, c, s);
}

loom_result_t loom_barrier(loom_comm_t c, loom_stream_t s)
{
    LOOM_RETURN_IF_ERR(check_comm(c, "loom_barrier"));
    struct loom_op o = { .coll = COLL_ALLREDUCE, .count = 1, .dt = LOOM_INT32, .op = LOOM_SUM,
                         .root = -1, .barrier = true };
    return dispatch(c, &o, s);
}
