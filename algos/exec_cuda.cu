/* exec_cuda.cu: the CUDA executor. One kernel runs a rank's schedule (algos/schedule.h)
 * on device memory, the same steps in the same order as exec_host.c, moving data
 * through each link's device FIFO (layout in exec_cuda.h) one slot at a time and
 * reducing straight out of the received slot into the next send slot.
 *
 * Channels: the launch has one block per channel; channel ch takes its share of every
 * step (a contiguous run of 16-byte units) through its own FIFO on every link, so the
 * blocks never wait for each other. Within a block, thread 0 waits (polling the peer's
 * counter with acquire loads), the block moves one slot with 16-byte loads and stores,
 * every thread fences, and thread 0 publishes the slot with a release store.
 *
 * Waits give up: every 1024 polls thread 0 reads the status flag (mapped host memory,
 * raised by the host on abort or a peer's failure, or by another block) and the
 * global timer against the plan's timeout; either ends the kernel with the flag set.
 *
 * Reductions: 10 dtypes x 5 ops (avg reduces as sum; exec_cuda_div divides after).
 * Integers wrap (unsigned arithmetic); float max/min are `a > b ? a : b` as on the
 * host; float16 and bfloat16 are computed in float and rounded to nearest even, so
 * results are bit-identical to algos/reduce.c for every dtype.
 * Not here: building schedules, connecting links, streams (runtime/cuda.c).
 */
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

#include "exec_cuda.h"
#include "loom.h"
#include "schedule.h"

#define NTHREADS CUDA_THREADS
static_assert(NTHREADS % 32 == 0, "whole warps: the LL header is shared with __shfl_sync");
#define UNROLL 4


/* ---- element operations ---- */

template <typename T> struct Arith { typedef T U; };
template <> struct Arith<int8_t> { typedef uint8_t U; };
template <> struct Arith<int32_t> { typedef uint32_t U; };
template <> struct Arith<int64_t> { typedef uint64_t U; };

template <int OP, typename T> __device__ __forceinline__ T op2(T x, T y)
{
    typedef typename Arith<T>::U U;
    if (OP == LOOM_PROD) return (T)((U)x * (U)y);
    if (OP == LOOM_MAX) return x > y ? x : y;
    if (OP == LOOM_MIN) return x < y ? x : y;
    return (T)((U)x + (U)y);
}

/* Storage type S, one element op f. 16-bit floats are stored as uint16_t. */
template <typename T, int OP> struct Fn {
    typedef T S;
    static __device__ __forceinline__ S f(S x, S y) { return op2<OP, T>(x, y); }
};
struct Half {};
struct BF16 {};
template <int OP> struct Fn<Half, OP> {
    typedef uint16_t S;
    static __device__ __forceinline__ S f(S x, S y)
    {
        float r = op2<OP, float>(__half2float(__ushort_as_half(x)), __half2float(__ushort_as_half(y)));
        return __half_as_ushort(__float2half_rn(r));
    }
};
template <int OP> struct Fn<BF16, OP> {
    typedef uint16_t S;
    static __device__ __forceinline__ S f(S x, S y)
    {
        float r = op2<OP, float>(__uint_as_float((uint32_t)x << 16), __uint_as_float((uint32_t)y << 16));
        return __bfloat16_as_ushort(__float2bfloat16_rn(r));
    }
};

/* a op b element by element over one word W: 16 bytes (uint4, the bulk path) or 8
   (an LL line's data; a partial word is zero-padded, its padding computed and never
   stored) */
template <typename F, typename W> __device__ __forceinline__ W vop(W a, W b)
{
    typedef typename F::S S;
    const int n = sizeof(W) / sizeof(S);
    S x[n], y[n];
    memcpy(x, &a, sizeof(W));
    memcpy(y, &b, sizeof(W));
#pragma unroll
    for (int i = 0; i < n; i++) x[i] = F::f(x[i], y[i]);
    memcpy(&a, x, sizeof(W));
    return a;
}

/* d1[i] = a[i] op b[i] (b NULL: a[i]), and d2[i] too unless NULL; n bytes, a multiple
   of the element size. Run by the whole block. Loads bypass L1 (__ldcg): slots are
   rewritten by other processes between uses. 16-byte accesses when every pointer is
   16-byte aligned, element by element otherwise. */
template <typename F>
__device__ void apply(char *d1, char *d2, const char *a, const char *b, uint64_t n)
{
    typedef typename F::S S;
    uintptr_t al = (uintptr_t)d1 | (uintptr_t)a | (uintptr_t)(d2 ? d2 : d1) | (uintptr_t)(b ? b : a);
    uint64_t nv = (al & 15) == 0 ? n / 16 : 0;
    const uint4 *va = (const uint4 *)a, *vb = (const uint4 *)b;
    uint4 *v1 = (uint4 *)d1, *v2 = (uint4 *)d2;
    uint64_t i = threadIdx.x;
    for (; i + (UNROLL - 1) * NTHREADS < nv; i += UNROLL * NTHREADS) {
        uint4 x[UNROLL], y[UNROLL];
#pragma unroll
        for (int u = 0; u < UNROLL; u++) x[u] = __ldcg(va + i + u * NTHREADS);
        if (b) {
#pragma unroll
            for (int u = 0; u < UNROLL; u++) y[u] = __ldcg(vb + i + u * NTHREADS);
#pragma unroll
            for (int u = 0; u < UNROLL; u++) x[u] = vop<F, uint4>(x[u], y[u]);
        }
#pragma unroll
        for (int u = 0; u < UNROLL; u++) {
            v1[i + u * NTHREADS] = x[u];
            if (d2) v2[i + u * NTHREADS] = x[u];
        }
    }
    for (; i < nv; i += NTHREADS) {
        uint4 x = __ldcg(va + i);
        if (b) x = vop<F, uint4>(x, __ldcg(vb + i));
        v1[i] = x;
        if (d2) v2[i] = x;
    }
    /* the rest (or everything, unaligned), element by element */
    const S *ea = (const S *)a, *eb = (const S *)b;
    S *e1 = (S *)d1, *e2 = (S *)d2;
    for (uint64_t k = nv * 16 / sizeof(S) + threadIdx.x; k < n / sizeof(S); k += NTHREADS) {
        S x = __ldcg(ea + k);
        if (b) x = F::f(x, __ldcg(eb + k));
        e1[k] = x;
        if (d2) e2[k] = x;
    }
}

/* ---- counters ---- */

__device__ __forceinline__ uint32_t ld_acquire(const char *p)
{
    uint32_t v;
    asm volatile("ld.acquire.sys.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
    return v;
}
__device__ __forceinline__ void st_release(char *p, uint32_t v)
{
    asm volatile("st.release.sys.global.u32 [%0], %1;" ::"l"(p), "r"(v) : "memory");
}
__device__ __forceinline__ uint32_t ld_own(const char *p)  /* a counter only we write */
{
    return *(volatile const uint32_t *)p;
}
__device__ __forceinline__ uint64_t globaltimer(void)
{
    uint64_t t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    return t;
}

struct kctx {
    struct dplan p;
    int ch;
    uint64_t t0;
};

/* Stop the kernel with code (the first code wins; the host reads the details). A
   mismatched slot also records its meta (got) beside what this rank wanted. */
__device__ void raise_flag(const kctx &x, int code, int step, bool sending, const dmeta *got = NULL,
                           uint32_t want_bytes = 0)
{
    struct dstatus *s = x.p.status;
    if (atomicCAS((int *)&s->flag, 0, code) == 0) {
        s->step = step;
        s->sending = sending;
        s->channel = x.ch;
        if (got) s->got = *got;
        s->want = x.p.meta;
        s->want.bytes = want_bytes;
    }
    __threadfence_system();
}

/* Thread 0: another round of waiting allowed? Checks the flag and the clock every
   1024 polls. */
__device__ __forceinline__ bool keep_waiting(const kctx &x, uint32_t &polls, int step, bool sending)
{
    if ((++polls & 1023) != 0) return true;
    if (x.p.status->flag != 0) return false;
    if (globaltimer() - x.t0 > x.p.timeout_ns) {
        raise_flag(x, LOOM_ERR_TIMEOUT, step, sending);
        return false;
    }
    if (polls > (1u << 16)) __nanosleep(200);
    return true;
}

__device__ __forceinline__ char *chan(const kctx &x, char *q) { return q ? q + (uint64_t)x.ch * x.p.chan_bytes : q; }
__device__ __forceinline__ char *slot(const kctx &x, char *q, uint32_t i)
{
    return q + CUDA_CTRL_BYTES + (uint64_t)(i & (x.p.nslots - 1)) * x.p.slot_bytes;
}

__device__ __forceinline__ bool same_call(const kctx &x, const dmeta &g, uint32_t want_bytes)
{
    return g.bytes == want_bytes && g.seq == x.p.meta.seq && g.kind == x.p.meta.kind &&
           g.count == x.p.meta.count && g.root == x.p.meta.root;
}

/* Is the meta of the slot at h what this step expects? Else raise the flag. */
__device__ bool meta_ok(const kctx &x, char *rq, uint32_t h, uint32_t want_bytes, int step)
{
    const dmeta *m = (const dmeta *)(rq + CUDA_OFF_META) + (h & (x.p.nslots - 1));
    dmeta g;
    g.bytes = __ldcg(&m->bytes);
    g.kind = __ldcg(&m->kind);
    g.count = __ldcg((const unsigned long long *)&m->count);
    g.seq = __ldcg(&m->seq);
    g.root = __ldcg(&m->root);
    if (same_call(x, g, want_bytes)) return true;
    raise_flag(x, LOOM_ERR_INVALID_ARGUMENT, step, false, &g, want_bytes);
    return false;
}

/* The sender's own counters of its link in this step (struct dstep.sctr), kept in its
   own memory: finding the next slot to write reads nothing across the link unless the
   head last seen says the FIFO is full. */
enum { S_TAIL, S_HEAD_SEEN, S_LL_TAIL, S_LL_HEAD_SEEN, S_NCTR };
static_assert(S_NCTR == CUDA_SCTR, "exec_cuda.h sizes the counters");
__device__ __forceinline__ uint32_t *sview(const kctx &x, const struct dstep &st) { return st.sctr + S_NCTR * x.ch; }

/* Thread 0: is slot t free? Re-reads the receiver's head only when the one seen says
   no, and stores it back only when it moved. */
__device__ __forceinline__ bool room(uint32_t *seen, const char *head, uint32_t t, uint32_t k)
{
    uint32_t s = *seen;
    if (t - s < k) return true;
    uint32_t h = ld_acquire(head);
    if (h == s) return false;
    *seen = h;
    return t - h < k;
}

/* Thread 0: publish simple slot t (its data written and fenced by the block). */
__device__ __forceinline__ void post(const kctx &x, char *sq, uint32_t *v, uint32_t t, uint32_t bytes)
{
    dmeta *m = (dmeta *)(sq + CUDA_OFF_META) + (t & (x.p.nslots - 1));
    *m = x.p.meta;
    m->bytes = bytes;
    st_release(sq + CUDA_OFF_TAIL, t + 1);
    v[S_TAIL] = t + 1;
}

/* The channel's share [lo, hi) of a step of `bytes`: whole 16-byte units, the last
   channel also the rest. Both ends of a link split the same step the same way. */
__device__ __forceinline__ void share(const kctx &x, uint64_t bytes, uint64_t &lo, uint64_t &hi)
{
    uint64_t units = bytes / 16, base = units / x.p.nchan, extra = units % x.p.nchan, ch = x.ch;
    lo = (ch * base + (ch < extra ? ch : extra)) * 16;
    hi = lo + (base + (ch < extra ? 1 : 0)) * 16;
    if (ch == (uint64_t)x.p.nchan - 1) hi = bytes;
}

/* ---- the LL protocol (exec_cuda.h) ---- */

__device__ __forceinline__ char *ll_slot(const kctx &x, char *q, uint32_t i)
{
    return q + CUDA_CTRL_BYTES + (uint64_t)x.p.nslots * x.p.slot_bytes + (uint64_t)(i % CUDA_LL_SLOTS) * CUDA_LL_SLOT_BYTES;
}

/* The flag of LL slot number t: t + 1, never 0 (the value of never-written lines):
   the t whose t + 1 wraps gets 1, which its slot (index K - 1, every flag a multiple
   of K = CUDA_LL_SLOTS) has never carried. A stale line could pass only if it was
   last written 2^32 / K uses of its slot ago. */
__device__ __forceinline__ uint32_t ll_flag(uint32_t t) { return t + 1 != 0 ? t + 1 : 1; }

/* One line: 8 bytes of data and the flag twice, in one 16-byte store. */
__device__ __forceinline__ void ll_store(char *line, uint64_t v, uint32_t flag)
{
    asm volatile("st.volatile.global.v4.u32 [%0], {%1, %2, %3, %4};" ::"l"(line), "r"((uint32_t)v), "r"(flag),
                 "r"((uint32_t)(v >> 32)), "r"(flag) : "memory");
}

/* The line's 8 bytes once both its flags are `flag`; false: gave up (the flag word is
   raised: abort, a peer's failure, or this thread's timeout). Any thread. */
__device__ __forceinline__ bool ll_load(const kctx &x, const char *line, uint32_t flag, uint64_t &v, int step)
{
    uint32_t d0, f0, d1, f1, polls = 0;
    for (;;) {
        asm volatile("ld.volatile.global.v4.u32 {%0, %1, %2, %3}, [%4];"
                     : "=r"(d0), "=r"(f0), "=r"(d1), "=r"(f1) : "l"(line) : "memory");
        if (f0 == flag && f1 == flag) break;
        if (!keep_waiting(x, polls, step, false)) return false;
    }
    v = (uint64_t)d1 << 32 | d0;
    return true;
}

/* Up to 8 bytes of a user buffer (nb: 8, or the tail of the step), little-endian. */
__device__ __forceinline__ uint64_t ld8(const char *p, uint32_t nb)
{
    if (nb == 8 && ((uintptr_t)p & 7) == 0) return __ldcg((const unsigned long long *)p);
    uint64_t v = 0;
    for (uint32_t i = 0; i < nb; i++) v |= (uint64_t)(unsigned char)p[i] << (8 * i);
    return v;
}
__device__ __forceinline__ void st8(char *p, uint64_t v, uint32_t nb)
{
    if (nb == 8 && ((uintptr_t)p & 7) == 0) {
        *(unsigned long long *)p = v;
        return;
    }
    for (uint32_t i = 0; i < nb; i++) p[i] = (char)(v >> (8 * i));
}

/* Every thread: the slot's header lines, checked against this call. Lane 0 of each
   warp waits for them and hands them to its warp (a sixteenth of the polling of every
   thread reading them, which matters when the FIFO is across PCIe). */
__device__ bool ll_meta_ok(const kctx &x, const char *is, uint32_t flag, uint32_t want_bytes, int step)
{
    unsigned long long w[CUDA_LL_HDR] = {};
    int got = 1;
    if ((threadIdx.x & 31) == 0)
        for (int i = 0; i < CUDA_LL_HDR && got; i++) {
            uint64_t v = 0;
            got = ll_load(x, is + 16 * i, flag, v, step);
            w[i] = v;
        }
    if (!__shfl_sync(0xffffffffu, got, 0)) return false;
    for (int i = 0; i < CUDA_LL_HDR; i++) w[i] = __shfl_sync(0xffffffffu, w[i], 0);
    dmeta g;
    g.bytes = (uint32_t)w[0];
    g.seq = (uint32_t)(w[0] >> 32);
    g.kind = (uint32_t)w[1];
    g.root = (int32_t)(w[1] >> 32);
    g.count = w[2];
    if (same_call(x, g, want_bytes)) return true;
    if (threadIdx.x == 0) raise_flag(x, LOOM_ERR_INVALID_ARGUMENT, step, false, &g, want_bytes);
    return false;
}

/* A send/recv step under LL: slots of CUDA_LL_DATA bytes, thread i carries bytes
   [8i, 8i + 8) of each. Same primitives, same element order as run_step. */
template <typename F> __device__ bool run_step_ll(const kctx &x, const struct dstep &st, int idx)
{
    __shared__ uint32_t s_h, s_t;
    __shared__ int s_go;
    uint64_t lo, hi;
    share(x, st.bytes, lo, hi);
    char *rq = chan(x, st.recvq), *sq = chan(x, st.sendq);
    const bool red = st.prim == PRIM_RECV_REDUCE_SEND || st.prim == PRIM_RECV_REDUCE_COPY_SEND ||
                     st.prim == PRIM_RECV_REDUCE_COPY;
    const bool to_dst = st.prim != PRIM_SEND && st.prim != PRIM_RECV_REDUCE_SEND;
    for (uint64_t off = lo; off < hi;) {
        uint32_t n = hi - off < CUDA_LL_DATA ? (uint32_t)(hi - off) : CUDA_LL_DATA;
        if (threadIdx.x == 0) {          /* room to write (the reader needs no wait here) */
            int go = 1;
            uint32_t polls = 0;
            if (rq) s_h = ld_own(rq + CUDA_OFF_LL_HEAD);
            if (sq) {
                uint32_t *v = sview(x, st), t = v[S_LL_TAIL];
                while (!room(&v[S_LL_HEAD_SEEN], sq + CUDA_OFF_LL_HEAD, t, CUDA_LL_SLOTS) &&
                       (go = keep_waiting(x, polls, idx, true))) {}
                s_t = t;
            }
            s_go = go;
        }
        __syncthreads();
        if (!s_go) return false;
        const char *is = rq ? ll_slot(x, rq, s_h) : NULL;
        char *os = sq ? ll_slot(x, sq, s_t) : NULL;
        bool ok = is == NULL || ll_meta_ok(x, is, ll_flag(s_h), n, idx);
        uint32_t b = threadIdx.x * 8;
        if (ok && b < n) {
            uint32_t nb = n - b < 8 ? n - b : 8;
            uint64_t v = 0;
            if (is) {
                ok = ll_load(x, is + 16 * (CUDA_LL_HDR + threadIdx.x), ll_flag(s_h), v, idx);
                if (red) v = vop<F, uint64_t>(v, ld8(st.src + off + b, nb));
            } else {
                v = ld8(st.src + off + b, nb);
            }
            if (ok && to_dst) st8(st.dst + off + b, v, nb);
            if (ok && os) ll_store(os + 16 * (CUDA_LL_HDR + threadIdx.x), v, ll_flag(s_t));
        }
        if (ok && os && threadIdx.x < CUDA_LL_HDR) {
            const dmeta &m = x.p.meta;
            uint64_t w = threadIdx.x == 0 ? (uint64_t)m.seq << 32 | n
                       : threadIdx.x == 1 ? (uint64_t)(uint32_t)m.root << 32 | m.kind : m.count;
            ll_store(os + 16 * threadIdx.x, w, ll_flag(s_t));
        }
        if (__syncthreads_or(!ok)) return false;
        if (threadIdx.x == 0) {
            if (rq) st_release(rq + CUDA_OFF_LL_HEAD, s_h + 1);   /* every line read */
            if (sq) sview(x, st)[S_LL_TAIL] = s_t + 1;
        }
        off += n;
    }
    return true;
}

/* ---- one sequential step ---- */

template <typename F> __device__ bool run_step(const kctx &x, const struct dstep &st, int idx)
{
    __shared__ uint32_t s_h, s_t;
    __shared__ int s_go;
    uint64_t lo, hi;
    share(x, st.bytes, lo, hi);
    if (st.prim == PRIM_COPY) {
        if (st.dst != st.src) apply<F>(st.dst + lo, NULL, st.src + lo, NULL, hi - lo);
        __syncthreads();
        return true;
    }
    if (st.prim == PRIM_REDUCE) {
        apply<F>(st.dst + lo, NULL, st.dst + lo, st.src + lo, hi - lo);
        __syncthreads();
        return true;
    }
    if (st.proto == PROTO_LL) return run_step_ll<F>(x, st, idx);
    char *rq = chan(x, st.recvq), *sq = chan(x, st.sendq);
    for (uint64_t off = lo; off < hi;) {
        uint64_t n = hi - off < x.p.slot_bytes ? hi - off : x.p.slot_bytes;
        if (threadIdx.x == 0) {
            int go = 1;
            uint32_t polls = 0;
            if (rq) {
                uint32_t h = ld_own(rq + CUDA_OFF_HEAD);
                while (ld_acquire(rq + CUDA_OFF_TAIL) == h && (go = keep_waiting(x, polls, idx, false))) {}
                if (go) go = meta_ok(x, rq, h, (uint32_t)n, idx);
                s_h = h;
            }
            if (sq && go) {
                uint32_t *v = sview(x, st), t = v[S_TAIL];
                while (!room(&v[S_HEAD_SEEN], sq + CUDA_OFF_HEAD, t, x.p.nslots) &&
                       (go = keep_waiting(x, polls, idx, true))) {}
                s_t = t;
            }
            s_go = go;
        }
        __syncthreads();
        if (!s_go) return false;
        char *is = rq ? slot(x, rq, s_h) : NULL, *os = sq ? slot(x, sq, s_t) : NULL;
        const char *src = st.src + off;
        char *dst = st.dst + off;
        switch (st.prim) {
        case PRIM_SEND:                  apply<F>(os, NULL, src, NULL, n); break;
        case PRIM_RECV:                  apply<F>(dst, NULL, is, NULL, n); break;
        case PRIM_RECV_REDUCE_SEND:      apply<F>(os, NULL, is, src, n); break;
        case PRIM_RECV_REDUCE_COPY_SEND: apply<F>(dst, os, is, src, n); break;
        case PRIM_RECV_COPY_SEND:        apply<F>(os, dst, is, NULL, n); break;
        case PRIM_COPY_SEND:             apply<F>(os, dst, src, NULL, n); break;
        case PRIM_RECV_REDUCE_COPY:      apply<F>(dst, NULL, is, src, n); break;
        default: break;
        }
        __threadfence_system();
        __syncthreads();
        if (threadIdx.x == 0) {
            if (rq) st_release(rq + CUDA_OFF_HEAD, s_h + 1);
            if (sq) post(x, sq, sview(x, st), s_t, (uint32_t)n);
        }
        off += n;
    }
    return true;
}

/* ---- a concurrent block of sends and recvs (p2p, all-to-all) ---- */

template <typename F> __device__ bool run_together(const kctx &x, const struct dstep *steps, int first, int n)
{
    __shared__ uint64_t s_done[CUDA_MAX_TOGETHER];
    __shared__ int s_pick;
    __shared__ uint32_t s_ctr;
    for (int i = threadIdx.x; i < n; i += NTHREADS) {
        uint64_t lo, hi;
        share(x, steps[first + i].bytes, lo, hi);
        s_done[i] = lo;
    }
    __syncthreads();
    for (;;) {
        if (threadIdx.x == 0) {
            /* the first item that can move a slot now; -1: all done; -2: stop */
            uint32_t polls = 0;
            int pick;
            for (;;) {
                bool left = false;
                pick = -1;
                for (int i = 0; i < n && pick < 0; i++) {
                    const struct dstep &st = steps[first + i];
                    uint64_t lo, hi;
                    share(x, st.bytes, lo, hi);
                    if (s_done[i] >= hi) continue;
                    left = true;
                    bool blocked = false;   /* one link carries its items in issue order */
                    for (int j = 0; j < i && !blocked; j++) {
                        const struct dstep &o = steps[first + j];
                        uint64_t l2, h2;
                        share(x, o.bytes, l2, h2);
                        blocked = s_done[j] < h2 && (st.prim == PRIM_SEND ? o.sendq == st.sendq : o.recvq == st.recvq);
                    }
                    if (blocked) continue;
                    if (st.prim == PRIM_SEND) {
                        uint32_t *v = sview(x, st);
                        if (room(&v[S_HEAD_SEEN], chan(x, st.sendq) + CUDA_OFF_HEAD, v[S_TAIL], x.p.nslots)) {
                            pick = i;
                            s_ctr = v[S_TAIL];
                        }
                    } else {
                        char *rq = chan(x, st.recvq);
                        uint32_t h = ld_own(rq + CUDA_OFF_HEAD);
                        if (ld_acquire(rq + CUDA_OFF_TAIL) != h) {
                            uint64_t m = hi - s_done[i] < x.p.slot_bytes ? hi - s_done[i] : x.p.slot_bytes;
                            pick = meta_ok(x, rq, h, (uint32_t)m, first + i) ? i : -2;
                            s_ctr = h;
                        }
                    }
                }
                if (pick != -1 || !left) break;
                if (!keep_waiting(x, polls, first, false)) { pick = -2; break; }
            }
            s_pick = pick;
        }
        __syncthreads();
        int pick = s_pick;
        if (pick == -2) return false;
        if (pick < 0) break;
        const struct dstep &st = steps[first + pick];
        uint64_t lo, hi;
        share(x, st.bytes, lo, hi);
        uint64_t off = s_done[pick], m = hi - off < x.p.slot_bytes ? hi - off : x.p.slot_bytes;
        bool sending = st.prim == PRIM_SEND;
        char *q = chan(x, sending ? st.sendq : st.recvq), *sl = slot(x, q, s_ctr);
        if (sending) apply<F>(sl, NULL, st.src + off, NULL, m);
        else apply<F>(st.dst + off, NULL, sl, NULL, m);
        __threadfence_system();
        __syncthreads();
        if (threadIdx.x == 0) {
            if (sending) post(x, q, sview(x, st), s_ctr, (uint32_t)m);
            else st_release(q + CUDA_OFF_HEAD, s_ctr + 1);
            s_done[pick] = off + m;
        }
        __syncthreads();
    }
    __syncthreads();
    return true;
}

template <typename F> __global__ void __launch_bounds__(NTHREADS) exec_kernel(struct dplan p)
{
    kctx x = { p, (int)blockIdx.x, globaltimer() };
    for (int i = 0; i < p.nsteps;) {
        struct dstep st = p.steps[i];
        if (st.together > 1) {
            if (!run_together<F>(x, p.steps, i, st.together)) return;
            i += st.together;
        } else {
            if (!run_step<F>(x, st, i)) return;
            i++;
        }
    }
}

/* ---- launches: one switch over dtype x op picks the instantiation ---- */

template <template <typename> class K, typename... A>
static int by_type(int dt, int op, A... a)
{
#define OPS(T)                                                                             \
    switch (op) {                                                                          \
    case LOOM_PROD: return K<Fn<T, LOOM_PROD> >::run(a...);                                \
    case LOOM_MAX:  return K<Fn<T, LOOM_MAX> >::run(a...);                                 \
    case LOOM_MIN:  return K<Fn<T, LOOM_MIN> >::run(a...);                                 \
    default:        return K<Fn<T, LOOM_SUM> >::run(a...);                                 \
    }
    switch (dt) {
    case LOOM_INT8:     OPS(int8_t)
    case LOOM_UINT8:    OPS(uint8_t)
    case LOOM_INT32:    OPS(int32_t)
    case LOOM_UINT32:   OPS(uint32_t)
    case LOOM_INT64:    OPS(int64_t)
    case LOOM_UINT64:   OPS(uint64_t)
    case LOOM_FLOAT16:  OPS(Half)
    case LOOM_FLOAT32:  OPS(float)
    case LOOM_FLOAT64:  OPS(double)
    case LOOM_BFLOAT16: OPS(BF16)
    default: return (int)cudaErrorInvalidValue;
    }
#undef OPS
}

template <typename F> struct LaunchExec {
    static int run(const struct dplan *p, cudaStream_t s)
    {
        exec_kernel<F><<<p->nchan, NTHREADS, 0, s>>>(*p);
        return (int)cudaGetLastError();
    }
};

extern "C" int exec_cuda_launch(const struct dplan *plan, void *stream)
{
    return by_type<LaunchExec>(plan->dtype, plan->op, plan, (cudaStream_t)stream);
}

/* ---- the reduction alone (bench) ---- */

template <typename F> __global__ void __launch_bounds__(NTHREADS) reduce_kernel(char *d, const char *a, const char *b, uint64_t n)
{
    /* each block a contiguous share of whole 16-byte units, the last block the rest */
    uint64_t units = n / 16, per = (units + gridDim.x - 1) / gridDim.x;
    uint64_t lo = per * blockIdx.x * 16, hi = lo + per * 16;
    if (lo > n) lo = n;
    if (hi > n || blockIdx.x == gridDim.x - 1) hi = n;
    apply<F>(d + lo, NULL, a + lo, b + lo, hi - lo);
}

template <typename F> struct LaunchReduce {
    static int run(void *d, const void *a, const void *b, uint64_t n, cudaStream_t s)
    {
        int dev, sms;
        cudaGetDevice(&dev);
        cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
        uint64_t blocks = (n + (256u << 10) - 1) / (256u << 10);   /* >= 256 KiB per block */
        if (blocks > (uint64_t)sms * 4) blocks = (uint64_t)sms * 4;
        if (blocks == 0) blocks = 1;
        reduce_kernel<F><<<(unsigned)blocks, NTHREADS, 0, s>>>((char *)d, (const char *)a, (const char *)b, n);
        return (int)cudaGetLastError();
    }
};

extern "C" int exec_cuda_reduce(void *dst, const void *a, const void *b, size_t count, int dtype, int op, void *stream)
{
    uint64_t n = (uint64_t)count * loom_dtype_size((loom_dtype_t)dtype);
    if (n == 0) return 0;
    return by_type<LaunchReduce>(dtype, op, dst, a, b, n, (cudaStream_t)stream);
}

/* ---- avg: buf[i] /= n, as reduce_div on the host ---- */

template <typename T> __device__ __forceinline__ T div1(T v, int n) { return (T)(v / (T)n); }
/* the host divides 8- and 32-bit integers in float/double and truncates: the same
   quotient as integer division (reduce.c explains why) */
template <typename F> struct DivOf;
template <typename T, int OP> struct DivOf<Fn<T, OP> > {
    static __device__ __forceinline__ typename Fn<T, OP>::S d(typename Fn<T, OP>::S v, int n) { return div1<T>(v, n); }
};
template <int OP> struct DivOf<Fn<Half, OP> > {
    static __device__ __forceinline__ uint16_t d(uint16_t v, int n)
    {
        return __half_as_ushort(__float2half_rn(__half2float(__ushort_as_half(v)) / (float)n));
    }
};
template <int OP> struct DivOf<Fn<BF16, OP> > {
    static __device__ __forceinline__ uint16_t d(uint16_t v, int n)
    {
        return __bfloat16_as_ushort(__float2bfloat16_rn(__uint_as_float((uint32_t)v << 16) / (float)n));
    }
};

template <typename F> __global__ void div_kernel(typename F::S *p, uint64_t count, int n)
{
    for (uint64_t i = blockIdx.x * (uint64_t)blockDim.x + threadIdx.x; i < count; i += (uint64_t)gridDim.x * blockDim.x)
        p[i] = DivOf<F>::d(p[i], n);
}

template <typename F> struct LaunchDiv {
    static int run(void *buf, uint64_t count, int n, cudaStream_t s)
    {
        uint64_t blocks = (count + 255) / 256;
        if (blocks > 1024) blocks = 1024;
        div_kernel<F><<<(unsigned)blocks, 256, 0, s>>>((typename F::S *)buf, count, n);
        return (int)cudaGetLastError();
    }
};

extern "C" int exec_cuda_div(void *buf, size_t count, int dtype, int n, void *stream)
{
    if (count == 0 || n <= 1) return 0;
    return by_type<LaunchDiv>(dtype, LOOM_SUM, buf, (uint64_t)count, n, (cudaStream_t)stream);
}
