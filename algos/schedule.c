/* schedule.c: the schedules of loom's host algorithms.
 *
 *   ring reduce-scatter, ring all-gather, ring all-reduce (RS then AG, per loop)
 *   chain broadcast and chain reduce (streamed slot by slot, so pipelined)
 *   pairwise-exchange all-to-all, and p2p groups (one concurrent block)
 *   direct all-reduce for small messages on few ranks (below)
 *
 * Ring all-reduce on rank r, for each loop over chunks of the n blocks (block k is
 * the k-th n-th of the buffer), step s handles block (r - s) mod n:
 *   s = 0              send                     block r            -> next
 *   s = 1 .. n-2       recv_reduce_send         partial sums pass along the ring
 *   s = n-1            recv_reduce_copy_send    block r+1 is final here; keep, pass
 *   s = n .. 2n-3      recv_copy_send           all-gather phase
 *   s = 2n-2           recv                     the last final block arrives
 * Not here: moving bytes (exec_host.c) or choosing among algorithms (enqueue.c).
 */
#include "schedule.h"

#include <stdlib.h>
#include <string.h>

#include "reduce.h"

/* Direct all-reduce up to DIRECT_BYTES_PER_PEER x (n-1) bytes and DIRECT_MAX_RANKS
   ranks: one hop beats the ring's 2(n-1) hops while messages are small, and the more
   ranks, the longer (measured on 2 cores: 2 ranks cross over near 2 KiB, 4 ranks above
   4 KiB; bench/RESULTS.md). */
#define DIRECT_BYTES_PER_PEER (2u << 10)
#define DIRECT_MAX_RANKS 8

const char *coll_name(enum coll c)
{
    static const char *names[] = { "?", "allreduce", "reduce", "broadcast", "allgather",
                                   "reduce_scatter", "alltoall", "send/recv" };
    return (unsigned)c <= COLL_P2P ? names[c] : "?";
}

const char *prim_name(enum prim p)
{
    static const char *names[] = { "send", "recv", "recv_reduce_send", "recv_reduce_copy_send",
                                   "recv_copy_send", "recv_reduce_copy", "copy", "reduce", "copy_send" };
    return (unsigned)p <= PRIM_COPY_SEND ? names[p] : "?";
}

/* ---- building ---- */

static int add(struct sched *s, enum prim p, int send_peer, int recv_peer, const char *src,
               char *dst, size_t bytes)
{
    if (s->n == s->cap) {
        int cap = 4 * s->cap;
        struct step *n = s->steps == s->inl ? malloc(sizeof *n * (size_t)cap)
                                            : realloc(s->steps, sizeof *n * (size_t)cap);
        if (n == NULL) return -1;
        if (s->steps == s->inl) memcpy(n, s->inl, sizeof s->inl);
        s->steps = n;
        s->cap = cap;
    }
    s->steps[s->n++] = (struct step){ .prim = (uint8_t)p, .together = 1, .send_peer = send_peer,
                                      .recv_peer = recv_peer, .src = src, .dst = dst, .bytes = bytes };
    return 0;
}

/* a mod n in [0, n). Ranks and offsets here are almost always within [-n, 2n), which
   takes no division: a tiny call's schedule was otherwise six integer divisions, about
   5 % of a 2-rank 8-byte broadcast on this machine (perf). */
static int mod(int a, int n)
{
    if (a >= n) a -= n;
    else if (a < 0) a += n;
    if ((unsigned)a < (unsigned)n) return a;
    a %= n;
    return a < 0 ? a + n : a;
}

/* The schedule's scratch: inline when it fits, else from the heap (sched_free). */
static char *scratch(struct sched *s, size_t bytes)
{
    s->tmp = bytes <= sizeof s->tmp_inl ? s->tmp_inl : malloc(bytes);
    return s->tmp;
}

/* Block k of count elements split n ways: the first count % n blocks get one more. */
static void block(size_t count, int n, int k, size_t *off, size_t *len)
{
    size_t base = count / (size_t)n, rem = count % (size_t)n;
    *off = (size_t)k * base + ((size_t)k < rem ? (size_t)k : rem);
    *len = base + ((size_t)k < rem ? 1 : 0);
}

/* One ring loop piece of block k: elements [L*chunk, (L+1)*chunk) of the block. */
static size_t piece(size_t blen, size_t chunk, size_t loop, size_t *start)
{
    *start = loop * chunk;
    if (*start >= blen) return 0;
    return blen - *start < chunk ? blen - *start : chunk;
}

static int ring_allreduce(struct sched *s, const struct loom_op *op, int r, int n, size_t chunk)
{
    size_t E = dtype_size(op->dt), maxb, o, l;
    const char *in = op->send;
    char *out = op->recv;
    block(op->count, n, 0, &o, &maxb);
    int next = mod(r + 1, n), prev = mod(r - 1, n);
    for (size_t loop = 0; loop * chunk < maxb; loop++) {
        for (int st = 0; st <= 2 * n - 2; st++) {
            int k = mod(r - st, n);
            size_t start, len;
            block(op->count, n, k, &o, &l);
            len = piece(l, chunk, loop, &start);
            if (len == 0) continue;            /* both ends skip: same block size */
            size_t at = (o + start) * E, bytes = len * E;
            enum prim p = st == 0 ? PRIM_SEND : st < n - 1 ? PRIM_RECV_REDUCE_SEND
                        : st == n - 1 ? PRIM_RECV_REDUCE_COPY_SEND
                        : st < 2 * n - 2 ? PRIM_RECV_COPY_SEND : PRIM_RECV;
            int sp = p == PRIM_RECV ? -1 : next, rp = p == PRIM_SEND ? -1 : prev;
            if (add(s, p, sp, rp, in + at, out + at, bytes)) return -1;
        }
    }
    return 0;
}

/* One concurrent block: send[q * stride] (bytes) to every other rank q while
   receiving rank q's into recv + q * bytes. */
static int direct_exchange(struct sched *s, int r, int n, const char *send, size_t stride, char *recv,
                           size_t bytes)
{
    int first = s->n;
    for (int st = 1; st < n; st++) {
        int to = mod(r + st, n), from = mod(r - st, n);
        if (add(s, PRIM_SEND, to, -1, send + (size_t)to * stride, NULL, bytes) ||
            add(s, PRIM_RECV, -1, from, NULL, recv + (size_t)from * bytes, bytes))
            return -1;
    }
    s->steps[first].together = 2 * (n - 1);
    return 0;
}

/* Small all-reduce (stride 0: every rank sends its whole buffer to every other rank)
   and small reduce-scatter (stride = a block: block q goes to rank q), at once: one hop
   instead of the ring's 2(n-1) or n-1 in a row. Then the n received pieces are reduced
   locally in rank order 0, 1, ..., n-1, so every rank computes the same bits. Costs n-1
   links per rank and n+1 pieces of scratch: used for small sizes on few ranks only
   (sched_build). */
static int direct_reduce(struct sched *s, const struct loom_op *op, int r, int n, bool scatter)
{
    size_t bytes = op->count * dtype_size(op->dt), stride = scatter ? bytes : 0;
    const char *own = (const char *)op->send + (size_t)r * stride;
    char *tmp = scratch(s, bytes * (size_t)(n + 1));  /* n received pieces + the sum */
    if (tmp == NULL) return -1;
    char *acc = tmp + (size_t)n * bytes;
    if (direct_exchange(s, r, n, op->send, stride, tmp, bytes)) return -1;
    for (int q = 0; q < n; q++) {
        const char *b = q == r ? own : tmp + (size_t)q * bytes;
        if (add(s, q == 0 ? PRIM_COPY : PRIM_REDUCE, -1, -1, b, acc, bytes)) return -1;
    }
    return add(s, PRIM_COPY, -1, -1, acc, op->recv, bytes);
}

/* Rank r ends with block r reduced: step s handles block (r - 1 - s) mod n. */
static int ring_reduce_scatter(struct sched *s, const struct loom_op *op, int r, int n, size_t chunk)
{
    size_t E = dtype_size(op->dt), cnt = op->count;
    const char *in = op->send;
    int next = mod(r + 1, n), prev = mod(r - 1, n);
    for (size_t loop = 0; loop * chunk < cnt; loop++) {
        size_t start, len = piece(cnt, chunk, loop, &start);
        for (int st = 0; st <= n - 1; st++) {
            int k = mod(r - 1 - st, n);
            const char *src = in + ((size_t)k * cnt + start) * E;
            enum prim p = st == 0 ? PRIM_SEND : st < n - 1 ? PRIM_RECV_REDUCE_SEND : PRIM_RECV_REDUCE_COPY;
            int sp = p == PRIM_RECV_REDUCE_COPY ? -1 : next, rp = p == PRIM_SEND ? -1 : prev;
            if (add(s, p, sp, rp, src, (char *)op->recv + start * E, len * E)) return -1;
        }
    }
    return 0;
}

/* Small all-gather: every rank sends its block to every other rank at once and
   receives theirs straight into the output (one hop instead of the ring's n-1). */
static int direct_allgather(struct sched *s, const struct loom_op *op, int r, int n)
{
    size_t bytes = op->count * dtype_size(op->dt);
    char *out = op->recv;
    if (op->send != out + (size_t)r * bytes && add(s, PRIM_COPY, -1, -1, op->send, out + (size_t)r * bytes, bytes))
        return -1;
    return direct_exchange(s, r, n, op->send, 0, out, bytes);
}

/* Rank r contributes block r: step s handles block (r - s) mod n. Out of place, the
   first step of each chunk also copies the rank's own piece into its output as it
   sends it (PRIM_COPY_SEND), rather than copying the whole block before the first
   send. */
static int ring_allgather(struct sched *s, const struct loom_op *op, int r, int n, size_t chunk)
{
    size_t E = dtype_size(op->dt), cnt = op->count;
    char *out = op->recv;
    int next = mod(r + 1, n), prev = mod(r - 1, n);
    enum prim first = op->send != out + (size_t)r * cnt * E ? PRIM_COPY_SEND : PRIM_SEND;
    for (size_t loop = 0; loop * chunk < cnt; loop++) {
        size_t start, len = piece(cnt, chunk, loop, &start);
        for (int st = 0; st <= n - 1; st++) {
            int k = mod(r - st, n);
            char *dst = out + ((size_t)k * cnt + start) * E;
            enum prim p = st == 0 ? first : st < n - 1 ? PRIM_RECV_COPY_SEND : PRIM_RECV;
            int sp = p == PRIM_RECV ? -1 : next, rp = st == 0 ? -1 : prev;
            if (add(s, p, sp, rp, (const char *)op->send + start * E, dst, len * E)) return -1;
        }
    }
    return 0;
}

/* Chain root -> root+1 -> ... -> root-1; each rank forwards slot by slot. An
   out-of-place root copies its own output slot by slot as it sends (the slot's source
   is then in cache), not the whole buffer before the first send. */
static int chain_broadcast(struct sched *s, const struct loom_op *op, int r, int n)
{
    size_t bytes = op->count * dtype_size(op->dt);
    int pos = mod(r - op->root, n), next = mod(r + 1, n), prev = mod(r - 1, n);
    if (pos == 0)
        return op->send != op->recv ? add(s, PRIM_COPY_SEND, next, -1, op->send, op->recv, bytes)
                                    : add(s, PRIM_SEND, next, -1, op->send, NULL, bytes);
    if (pos < n - 1) return add(s, PRIM_RECV_COPY_SEND, next, prev, NULL, op->recv, bytes);
    return add(s, PRIM_RECV, -1, prev, NULL, op->recv, bytes);
}

/* Chain root+1 -> root+2 -> ... -> root; partial results flow toward the root. */
static int chain_reduce(struct sched *s, const struct loom_op *op, int r, int n)
{
    size_t bytes = op->count * dtype_size(op->dt);
    int pos = mod(r - op->root - 1, n), next = mod(r + 1, n), prev = mod(r - 1, n);
    if (pos == 0) return add(s, PRIM_SEND, next, -1, op->send, NULL, bytes);
    if (pos < n - 1) return add(s, PRIM_RECV_REDUCE_SEND, next, prev, op->send, NULL, bytes);
    return add(s, PRIM_RECV_REDUCE_COPY, -1, prev, op->send, op->recv, bytes);
}

/* Step s: send block r+s to rank r+s while receiving block r-s from rank r-s. */
static int pairwise_alltoall(struct sched *s, const struct loom_op *op, int r, int n)
{
    size_t bb = op->count * dtype_size(op->dt);
    const char *in = op->send;
    char *out = op->recv;
    if (in == out) {                         /* in place: send from a copy */
        char *copy = scratch(s, bb * (size_t)n);
        if (copy == NULL) return -1;
        memcpy(copy, in, bb * (size_t)n);
        in = copy;
    }
    if (add(s, PRIM_COPY, -1, -1, in + (size_t)r * bb, out + (size_t)r * bb, bb)) return -1;
    for (int st = 1; st < n; st++) {
        int to = mod(r + st, n), from = mod(r - st, n);
        if (add(s, PRIM_SEND, to, -1, in + (size_t)to * bb, NULL, bb) ||
            add(s, PRIM_RECV, -1, from, NULL, out + (size_t)from * bb, bb))
            return -1;
        s->steps[s->n - 2].together = 2;
    }
    return 0;
}

/* The whole group is one concurrent block; self send/recv pairs become copies. */
static int p2p_group(struct sched *s, const struct loom_op *op, int r)
{
    int first = s->n;
    int self_recv = 0;
    for (int i = 0; i < op->np2p; i++) {
        const struct p2p_item *it = &op->p2p[i];
        size_t bytes = it->count * dtype_size(it->dt);
        if (it->peer == r && it->is_send) {
            /* pair with the next unmatched self recv, in issue order */
            int seen = 0, j;
            for (j = 0; j < op->np2p; j++)
                if (op->p2p[j].peer == r && !op->p2p[j].is_send && seen++ == self_recv) break;
            self_recv++;
            if (j == op->np2p) return -2;      /* enqueue pairs them; never here */
            if (add(s, PRIM_COPY, -1, -1, it->buf, op->p2p[j].buf, bytes)) return -1;
        } else if (it->peer != r) {
            if (add(s, it->is_send ? PRIM_SEND : PRIM_RECV, it->is_send ? it->peer : -1,
                    it->is_send ? -1 : it->peer, it->buf, it->buf, bytes))
                return -1;
        }
    }
    /* copies first (they need nobody), then the transfers as one concurrent block */
    int ncopy = 0;
    for (int i = first; i < s->n; i++)
        if (s->steps[i].prim == PRIM_COPY) {
            struct step t = s->steps[i];
            memmove(&s->steps[first + ncopy + 1], &s->steps[first + ncopy],
                    sizeof t * (size_t)(i - first - ncopy));
            s->steps[first + ncopy++] = t;
        }
    int nx = s->n - first - ncopy;
    if (nx > 0) s->steps[first + ncopy].together = nx;
    return 0;
}

/* Direct while the ranks are few and a call moves at most limit bytes
   (DIRECT_BYTES_PER_PEER per piece a rank sends; an all-reduce's whole buffer is
   allowed DIRECT_BYTES_PER_PEER x (n-1), as measured). */
static enum algo direct_or_ring(int nranks, size_t bytes, size_t limit)
{
    return nranks <= DIRECT_MAX_RANKS && bytes <= limit ? ALGO_DIRECT : ALGO_RING;
}

loom_result_t sched_build(struct sched *s, const struct loom_op *op, int rank, int nranks,
                          size_t chunk_bytes, enum algo algo)
{
    s->steps = s->inl;                  /* no memset: the inline arrays are 5 KiB */
    s->cap = SCHED_INLINE_STEPS;
    s->n = 0;
    s->tmp = NULL;
    size_t E = dtype_size(op->dt);
    /* elements per ring step; dtype sizes are powers of two: a shift, not a division */
    size_t chunk = chunk_bytes >> __builtin_ctzl(E);
    int rc;
    if (nranks == 1 && op->coll != COLL_P2P) {
        size_t bytes = op->count * E;
        rc = op->send == op->recv ? 0 : add(s, PRIM_COPY, -1, -1, op->send, op->recv, bytes);
        return rc ? LOOM_ERR_SYSTEM : LOOM_SUCCESS;
    }
    switch (op->coll) {
    case COLL_ALLREDUCE:
        if (algo == ALGO_AUTO) algo = direct_or_ring(nranks, op->count * E, DIRECT_BYTES_PER_PEER * (size_t)(nranks - 1));
        rc = algo == ALGO_DIRECT ? direct_reduce(s, op, rank, nranks, false) : ring_allreduce(s, op, rank, nranks, chunk);
        break;
    case COLL_REDUCE_SCATTER:
        if (algo == ALGO_AUTO) algo = direct_or_ring(nranks, op->count * E, DIRECT_BYTES_PER_PEER);
        rc = algo == ALGO_DIRECT ? direct_reduce(s, op, rank, nranks, true)
                                 : ring_reduce_scatter(s, op, rank, nranks, chunk);
        break;
    case COLL_ALLGATHER:
        if (algo == ALGO_AUTO) algo = direct_or_ring(nranks, op->count * E, DIRECT_BYTES_PER_PEER);
        rc = algo == ALGO_DIRECT ? direct_allgather(s, op, rank, nranks) : ring_allgather(s, op, rank, nranks, chunk);
        break;
    case COLL_BROADCAST:      rc = chain_broadcast(s, op, rank, nranks); break;
    case COLL_REDUCE:         rc = chain_reduce(s, op, rank, nranks); break;
    case COLL_ALLTOALL:       rc = pairwise_alltoall(s, op, rank, nranks); break;
    case COLL_P2P:            rc = p2p_group(s, op, rank); break;
    default:                  rc = -3; break;
    }
    if (rc == 0) return LOOM_SUCCESS;
    sched_free(s);
    return rc == -1 ? LOOM_ERR_SYSTEM : rc == -2 ? LOOM_ERR_INVALID_USAGE : LOOM_ERR_INTERNAL;
}

void sched_free(struct sched *s)
{
    if (s->steps != s->inl) free(s->steps);
    if (s->tmp && s->tmp != s->tmp_inl) free(s->tmp);
    s->steps = s->inl;
    s->tmp = NULL;
    s->n = 0;
}
