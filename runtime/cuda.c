/* cuda.c: collectives on device buffers (built only with CUDA).
 *
 * Per communicator, on its first device call: the device it is bound to, a stream
 * of its own (for calls with no CUDA stream), an event marking its last launch, a
 * status word in mapped pinned memory that every kernel polls and the host raises on
 * failure (struct dstatus), the senders' own counters of every link (sctr, device
 * memory) and its links (transport/cuda_ipc.c).
 *
 * A call builds the same schedule as the host executor (algos/schedule.c), picks its
 * number of channels (thread blocks: one per 64 KiB, up to LOOM_CUDA_CHANNELS) and each
 * step's protocol (LL or simple, exec_cuda.h), resolves each step's links to device
 * FIFOs, copies the steps to the device and launches the
 * executor (algos/exec_cuda.cu) on the caller's stream, after an event wait on the
 * comm's previous launch so one comm's kernels run in issue order whatever streams
 * they were issued on. Then avg's division, a host function that turns a failed
 * kernel into comm_fail (so loom_comm_get_error reports it), and the event.
 * Stream-ordered calls return once launched; calls without a CUDA stream wait.
 *
 * Memory kinds are read with the driver's cuPointerGetAttribute, which needs no
 * context: a host-only process on a GPU machine never gets one from loom.
 */
#include "gpu.h"

#include <cuda.h>
#include <cuda_runtime_api.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_ipc.h"
#include "exec.h"
#include "transport.h"
#include "exec_cuda.h"
#include "log.h"

struct cuda_comm {
    int device;
    cudaStream_t own;              /* calls without a CUDA stream. A blocking stream:
                                      it waits for work on the legacy default stream,
                                      such as a cudaMemcpy from pageable memory that
                                      returned before its DMA finished, as a blocking
                                      call that reads device buffers should */
    cudaEvent_t last;              /* after the comm's last launch                    */
    bool launched;
    struct dstatus *status_h;      /* mapped pinned memory; status_d is its device view */
    struct dstatus *status_d;
    int32_t *scratch;              /* device: loom_barrier's int                       */
    uint32_t *sctr;                /* device, zeroed: the sender's counters of every link,
                                      CUDA_SCTR per channel, CUDA_MAX_CHANNELS per peer */
    struct cuda_link **send, **recv;   /* (nranks), opened on first use             */
    uint32_t nslots;
    size_t slot_bytes;
    int nchan;                     /* most channels a call uses                    */
    int proto;                     /* LOOM_PROTO: -1 by size, else PROTO_*         */
    bool staged;                   /* some links are staged over tcp (see comm_state) */
};

/* ---- memory kinds ---- */

typedef CUresult (*ptr_attr_fn)(void *, CUpointer_attribute, CUdeviceptr);
static ptr_attr_fn ptr_attr;
static pthread_once_t probe_once = PTHREAD_ONCE_INIT;

static void probe(void)
{
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess || n <= 0) {
        cudaGetLastError();
        return;                               /* no driver or no GPU: all host memory */
    }
    enum cudaDriverEntryPointQueryResult q;
    void *fn = NULL;
    if (cudaGetDriverEntryPointByVersion("cuPointerGetAttribute", &fn, 12000, cudaEnableDefault, &q) ==
            cudaSuccess && q == cudaDriverEntryPointSuccess)
        ptr_attr = (ptr_attr_fn)fn;
    else
        LOOM_WARN(LOOM_SUB_INIT, "CUDA: no cuPointerGetAttribute in the driver; device buffers will not be recognised");
}

int cuda_gpu_of(const void *p)
{
    pthread_once(&probe_once, probe);
    if (ptr_attr == NULL || p == NULL) return 0;
    unsigned type = 0, managed = 0;
    int dev = 0;
    if (ptr_attr(&type, CU_POINTER_ATTRIBUTE_MEMORY_TYPE, (CUdeviceptr)(uintptr_t)p) != CUDA_SUCCESS)
        return 0;                             /* not known to CUDA: plain host memory */
    ptr_attr(&managed, CU_POINTER_ATTRIBUTE_IS_MANAGED, (CUdeviceptr)(uintptr_t)p);
    if (type != CU_MEMORYTYPE_DEVICE && !managed) return 0;   /* pinned host memory   */
    if (ptr_attr(&dev, CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL, (CUdeviceptr)(uintptr_t)p) != CUDA_SUCCESS)
        return 0;
    return dev + 1;
}

int cuda_current_gpu(void)
{
    pthread_once(&probe_once, probe);
    int dev;
    if (ptr_attr == NULL || cudaGetDevice(&dev) != cudaSuccess) return 0;
    return dev + 1;
}

/* ---- per-comm state ---- */

static loom_result_t cuda_fail(struct loom_comm *c, cudaError_t e, const char *what)
{
    const char *name = cudaGetErrorString(e);
    cudaGetLastError();
    comm_fail(c, LOOM_ERR_CUDA, true, "%s failed on rank %d: %s", what, c->rank, name);
    return LOOM_ERR_CUDA;
}

#define CU(c, call) do { cudaError_t e_ = (call); if (e_ != cudaSuccess) return cuda_fail(c, e_, #call); } while (0)

/* n bytes at d zeroed before it returns, on a stream of its own that waits for no other
   work (the comm's own stream is a blocking one: it would wait for the legacy stream,
   which may wait for another rank's kernel, which waits for this one). */
static cudaError_t zero_now(void *d, size_t n)
{
    cudaStream_t t;
    cudaError_t e = cudaStreamCreateWithFlags(&t, cudaStreamNonBlocking);
    if (e != cudaSuccess) return e;
    if ((e = cudaMemsetAsync(d, 0, n, t)) == cudaSuccess) e = cudaStreamSynchronize(t);
    cudaStreamDestroy(t);
    return e;
}

static loom_result_t comm_state(struct loom_comm *c, int device, struct cuda_comm **out)
{
    struct cuda_comm *g = atomic_load(&c->cuda);
    if (g) {
        if (g->device != device)
            return loom_set_error(c, LOOM_ERR_INVALID_ARGUMENT,
                                  "buffers on GPU %d, but this communicator is bound to GPU %d (its first "
                                  "device call); use one communicator per GPU", device, g->device);
        *out = g;
        return LOOM_SUCCESS;
    }
    g = calloc(1, sizeof *g);
    if (g == NULL) return loom_set_error(c, LOOM_ERR_SYSTEM, "out of memory");
    g->device = device;
    g->send = calloc((size_t)c->nranks, sizeof *g->send);
    g->recv = calloc((size_t)c->nranks, sizeof *g->recv);
    g->nchan = (int)c->peers[0].cuda_nchan;           /* one geometry for the whole comm */
    g->nslots = c->peers[0].cuda_nslots;
    g->slot_bytes = c->peers[0].cuda_slot_bytes;
    g->proto = c->peers[0].cuda_proto;
    /* A comm with links staged over tcp (ranks on several hosts, or LOOM_TRANSPORT=tcp):
       the progress thread moves those FIFOs, one per link, with the host's geometry
       (the tcp transport's), so every call uses one channel, simple slots of that
       geometry, on every link alike (both ends of each link must agree). */
    for (int r = 0; r < c->nranks; r++) g->staged |= cuda_link_staged(c, r);
    if (g->staged) {
        g->nchan = 1;
        g->nslots = c->cfg.nslots;
        g->slot_bytes = c->cfg.slot_bytes;
        g->proto = PROTO_SIMPLE;
    }
    if (g->send == NULL || g->recv == NULL) {
        free(g->send);
        free(g->recv);
        free(g);
        return loom_set_error(c, LOOM_ERR_SYSTEM, "out of memory");
    }
    size_t sctr_bytes = (size_t)c->nranks * CUDA_MAX_CHANNELS * CUDA_SCTR * sizeof *g->sctr;
    cudaError_t e;
    const char *what = "cudaSetDevice";
    if ((e = cudaSetDevice(device)) == cudaSuccess &&
        (what = "cudaStreamCreate", e = cudaStreamCreate(&g->own)) == cudaSuccess &&
        (what = "cudaEventCreateWithFlags", e = cudaEventCreateWithFlags(&g->last, cudaEventDisableTiming)) == cudaSuccess &&
        (what = "cudaHostAlloc", e = cudaHostAlloc((void **)&g->status_h, sizeof *g->status_h, cudaHostAllocMapped)) == cudaSuccess &&
        (what = "cudaHostGetDevicePointer", e = cudaHostGetDevicePointer((void **)&g->status_d, g->status_h, 0)) == cudaSuccess &&
        (what = "cudaMalloc", e = cudaMalloc((void **)&g->scratch, sizeof *g->scratch)) == cudaSuccess &&
        (what = "cudaMalloc", e = cudaMalloc((void **)&g->sctr, sctr_bytes)) == cudaSuccess &&
        (what = "zeroing the sender counters", e = zero_now(g->sctr, sctr_bytes)) == cudaSuccess) {
        memset(g->status_h, 0, sizeof *g->status_h);
        /* a failure before this point raised no word: raise it now */
        if (atomic_load(&c->status) != LOOM_SUCCESS) g->status_h->flag = atomic_load(&c->status);
        atomic_store(&c->cuda, g);
        LOOM_INFO(LOOM_SUB_INIT, "CUDA: bound to GPU %d; %d channels, %u slots of %zu bytes per link", device,
                  g->nchan, g->nslots, g->slot_bytes);
        *out = g;
        return LOOM_SUCCESS;
    }
    if (g->sctr) cudaFree(g->sctr);
    if (g->scratch) cudaFree(g->scratch);
    if (g->status_h) cudaFreeHost(g->status_h);
    if (g->last) cudaEventDestroy(g->last);
    if (g->own) cudaStreamDestroy(g->own);
    free(g->send);
    free(g->recv);
    free(g);
    return cuda_fail(c, e, what);
}

void cuda_comm_raise(struct loom_comm *c, int code)
{
    struct cuda_comm *g = atomic_load(&c->cuda);
    if (g && g->status_h->flag == 0) g->status_h->flag = code;
}

void cuda_comm_free(struct loom_comm *c)
{
    struct cuda_comm *g = atomic_exchange(&c->cuda, NULL);
    if (g == NULL) return;
    cudaSetDevice(g->device);
    /* Every kernel ends: its peers finish, its timeout passes, or the word was raised
       (comm_fail) before an abort or a destroy after a failure. */
    if (g->launched) cudaEventSynchronize(g->last);
    for (int r = 0; r < c->nranks; r++) {
        cuda_link_close(g->send[r]);
        cuda_link_close(g->recv[r]);
    }
    cudaFree(g->scratch);
    cudaFree(g->sctr);
    cudaFreeHost(g->status_h);
    cudaEventDestroy(g->last);
    cudaStreamDestroy(g->own);
    cudaGetLastError();
    free(g->send);
    free(g->recv);
    free(g);
}

/* ---- a failed kernel becomes the comm's failure ---- */

struct report {
    struct loom_comm *c;
    struct cuda_comm *g;
    enum coll coll;
    size_t count;
    loom_dtype_t dt;
    int *peer_of_step;      /* nsteps x 2: send peer, recv peer (for the message) */
    int nsteps;
    bool staged;            /* counted in c->staged_calls until the kernel is done */
};

/* The kernel's flag -> comm_fail with what it waited for. No CUDA calls: it also runs
   as a stream host function. */
static loom_result_t report_status(struct report *rp)
{
    struct loom_comm *c = rp->c;
    const struct dstatus *s = rp->g->status_h;
    int f = s->flag;
    if (f == 0) return LOOM_SUCCESS;
    if (atomic_load(&c->status) != LOOM_SUCCESS) return (loom_result_t)atomic_load(&c->status);
    int step = s->step >= 0 && s->step < rp->nsteps ? s->step : 0;
    int peer = rp->nsteps ? rp->peer_of_step[2 * step + (s->sending ? 0 : 1)] : -1;
    char name[128] = "?";
    if (peer >= 0) comm_peer_name(c, peer, name, sizeof name);
    if (f == LOOM_ERR_INVALID_ARGUMENT) {
        struct slot_meta want, got;
        memcpy(&want, &s->want, sizeof want);
        memcpy(&got, &s->got, sizeof got);
        meta_mismatch(c, peer, &want, &got, " on the GPU");
    } else {
        comm_fail(c, (loom_result_t)f, true, "%s (count %zu, %s) on rank %d, GPU kernel channel %d: %s; it was %s %s",
                  coll_name(rp->coll), rp->count, loom_dtype_name(rp->dt), c->rank, s->channel,
                  f == LOOM_ERR_TIMEOUT ? "timed out" : loom_strerror((loom_result_t)f),
                  s->sending ? "sending to" : "receiving from", name);
    }
    return (loom_result_t)atomic_load(&c->status);
}

static void CUDART_CB report_cb(void *arg)
{
    struct report *rp = arg;
    if (rp->staged) atomic_fetch_sub(&rp->c->staged_calls, 1);
    report_status(rp);
    comm_unref(rp->c);
    free(rp->peer_of_step);
    free(rp);
}

/* ---- one call ---- */

_Static_assert(sizeof(struct dmeta) == sizeof(struct slot_meta) &&
               offsetof(struct dmeta, count) == offsetof(struct slot_meta, count) &&
               offsetof(struct dmeta, seq) == offsetof(struct slot_meta, seq) &&
               offsetof(struct dmeta, root) == offsetof(struct slot_meta, root), "dmeta is slot_meta");
_Static_assert(CUDA_OFF_HEAD == offsetof(struct fifo_ctrl, head) && CUDA_OFF_META == offsetof(struct fifo_ctrl, meta),
               "a device FIFO's control block is a host FIFO's");

/* Channels of one call: enough that each carries CUDA_CHAN_MIN_BYTES, at most the
   comm's. Every rank must get the same number (both ends of a link split every step
   the same way), so it depends only on arguments every rank shares: a collective's
   size; p2p and all-to-all (sizes differ per pair) use them all. */
#define CUDA_CHAN_MIN_BYTES ((size_t)64 << 10)
static int call_channels(const struct cuda_comm *g, const struct loom_op *o, int nranks)
{
    if (o->coll == COLL_P2P || o->coll == COLL_ALLTOALL) return g->nchan;
    size_t bytes = o->count * loom_dtype_size(o->dt);
    if (o->coll == COLL_ALLGATHER || o->coll == COLL_REDUCE_SCATTER) bytes *= (size_t)nranks;
    size_t n = (bytes + CUDA_CHAN_MIN_BYTES - 1) / CUDA_CHAN_MIN_BYTES;
    return n < 1 ? 1 : n > (size_t)g->nchan ? g->nchan : (int)n;
}

/* A step's protocol. LL for the send/recv steps of a collective up to CUDA_LL_MAX_BYTES
   whose every channel's share fits in half the LL slots: a ring's sender runs one
   step ahead of its receiver, so a step must leave room for the next, as the
   schedule's chunk (half the simple FIFO) does for simple slots. Both ends of each
   link see the same step size and channel count, so they agree. Never for p2p and
   all-to-all: there one end may run a step alone and the other as part of a group,
   which moves only simple slots. LOOM_PROTO=ll forces it for every collective step
   (cuda_run then cuts the schedule's chunk to fit). */
#define CUDA_LL_MAX_BYTES ((uint64_t)64 << 10)
#define CUDA_LL_HALF ((uint64_t)(CUDA_LL_SLOTS / 2) * CUDA_LL_DATA)
static int step_proto(const struct cuda_comm *g, const struct loom_op *o, const struct step *st, int nchan)
{
    if (o->coll == COLL_P2P || o->coll == COLL_ALLTOALL || st->together > 1) return PROTO_SIMPLE;
    if (g->proto >= 0) return g->proto;
    uint64_t units = st->bytes / 16, widest = (units / nchan + (units % nchan != 0)) * 16 + st->bytes % 16;
    return st->bytes <= CUDA_LL_MAX_BYTES && widest <= CUDA_LL_HALF ? PROTO_LL : PROTO_SIMPLE;
}

/* The FIFO of one link, opened on first use. A receive link is opened (published,
   never waiting) in one pass and finished (the sender's answer read) in a later one:
   fifo NULL only opens. */
static loom_result_t link_of(struct loom_comm *c, struct cuda_comm *g, int peer, bool is_send,
                             cudaStream_t s, char **fifo)
{
    struct cuda_link **tab = is_send ? g->send : g->recv;
    char err[320] = "", name[128];
    loom_result_t r = LOOM_SUCCESS;
    if (tab[peer] == NULL) {
        /* a staged link is the tcp FIFO: one channel, no LL slots (never used there) */
        size_t bytes = cuda_link_staged(c, peer) ? fifo_map_bytes(g->nslots, g->slot_bytes)
                                                 : (size_t)g->nchan * cuda_chan_bytes(g->nslots, g->slot_bytes);
        r = cuda_link_open(c, peer, is_send, bytes, s, &tab[peer], err, sizeof err);
    }
    if (r == LOOM_SUCCESS && fifo) {
        r = cuda_link_finish(c, tab[peer], err, sizeof err);
        *fifo = tab[peer]->fifo;
        if (r != LOOM_SUCCESS) {           /* half open: never use it */
            cuda_link_close(tab[peer]);
            tab[peer] = NULL;
        }
    }
    if (r != LOOM_SUCCESS) {
        comm_peer_name(c, peer, name, sizeof name);
        if (atomic_load(&c->status) == LOOM_SUCCESS)
            comm_fail(c, r, true, "cannot connect the device link %s %s: %s", is_send ? "to" : "from", name, err);
        return (loom_result_t)atomic_load(&c->status);
    }
    return LOOM_SUCCESS;
}

/* Inside cuda_run, once something must be released: fail and go to out. */
#define CUR(call) do { cudaError_t e_ = (call); if (e_ != cudaSuccess) { r = cuda_fail(c, e_, #call); goto out; } } while (0)

loom_result_t cuda_run(struct loom_comm *c, const struct loom_op *op)
{
    struct cuda_comm *g = NULL;
    loom_result_t r = comm_state(c, op->gpu - 1, &g);
    if (r != LOOM_SUCCESS) return r;
    CU(c, cudaSetDevice(g->device));
    cudaStream_t s = op->cuda_stream ? (cudaStream_t)op->cuda_stream : g->own;
    if (g->launched) CU(c, cudaStreamWaitEvent(s, g->last, 0));

    struct loom_op o = *op;
    if (o.barrier) o.send = o.recv = g->scratch;
    void *copy = NULL;
    bool counted = false;                  /* in c->staged_calls */
    if (o.coll == COLL_ALLTOALL && o.send == o.recv) {   /* in place: send from a copy */
        size_t bytes = o.count * loom_dtype_size(o.dt) * (size_t)c->nranks;
        CU(c, cudaMallocAsync(&copy, bytes, s));
        cudaError_t e = cudaMemcpyAsync(copy, o.send, bytes, cudaMemcpyDeviceToDevice, s);
        if (e != cudaSuccess) {
            cudaFreeAsync(copy, s);
            return cuda_fail(c, e, "cudaMemcpyAsync");
        }
        o.send = copy;
    }
    struct sched sch;
    int nchan = call_channels(g, &o, c->nranks);
    size_t chunk = (size_t)nchan * (g->nslots / 2) * g->slot_bytes;
    if (g->proto == PROTO_LL) chunk = (size_t)nchan * CUDA_LL_HALF;   /* see step_proto */
    r = sched_build(&sch, &o, c->rank, c->nranks, chunk, ALGO_RING);   /* direct needs host scratch */
    if (r != LOOM_SUCCESS) {
        if (copy) cudaFreeAsync(copy, s);
        return loom_set_error(c, r, "cannot build the %s schedule: %s", coll_name(o.coll), loom_strerror(r));
    }
    size_t n1 = sch.n ? (size_t)sch.n : 1;
    struct dstep *ds = malloc(sizeof *ds * n1);
    int *peers = malloc(sizeof *peers * 2 * n1);
    struct report *rp = calloc(1, sizeof *rp);
    if (ds == NULL || rp == NULL || peers == NULL) {
        r = loom_set_error(c, LOOM_ERR_SYSTEM, "out of memory");
        goto out;
    }
    /* Three passes: open the receive links (never waits), then the send links (waits
       for each peer's receive side, which it opens first too), then finish the receive
       links (waits for each sender's answer): no cycle of waits. */
    for (int pass = 0; pass < 3 && r == LOOM_SUCCESS; pass++)
        for (int i = 0; i < sch.n && r == LOOM_SUCCESS; i++) {
            const struct step *st = &sch.steps[i];
            if (pass == 1) {
                if (st->send_peer >= 0) {
                    r = link_of(c, g, st->send_peer, true, s, &ds[i].sendq);
                    ds[i].sctr = g->sctr + (size_t)st->send_peer * CUDA_MAX_CHANNELS * CUDA_SCTR;
                }
                continue;
            }
            if (pass == 2) {
                if (st->recv_peer >= 0) r = link_of(c, g, st->recv_peer, false, s, &ds[i].recvq);
                continue;
            }
            ds[i] = (struct dstep){ .prim = st->prim, .together = st->together, .proto = step_proto(g, &o, st, nchan),
                                    .src = st->src, .dst = st->dst, .bytes = st->bytes };
            peers[2 * i] = st->send_peer;
            peers[2 * i + 1] = st->recv_peer;
            if (st->together > CUDA_MAX_TOGETHER)
                r = loom_set_error(c, LOOM_ERR_INVALID_USAGE, "a group of %d sends and recvs on device "
                                   "buffers; at most %d per group", st->together, CUDA_MAX_TOGETHER);
            else if (st->recv_peer >= 0)
                r = link_of(c, g, st->recv_peer, false, s, NULL);
        }
    if (r != LOOM_SUCCESS) goto out;

    struct slot_meta meta;
    call_meta(c, &o, &meta);
    struct dplan plan = {
        .nsteps = sch.n, .nchan = nchan, .nslots = g->nslots, .slot_bytes = g->slot_bytes,
        .chan_bytes = cuda_chan_bytes(g->nslots, g->slot_bytes),
        .timeout_ns = (uint64_t)c->cfg.timeout_ms * 1000000u, .status = g->status_d,
        .dtype = o.dt, .op = o.op,
    };
    memcpy(&plan.meta, &meta, sizeof meta);
    if (sch.n > 0) {
        void *dsteps = NULL;
        size_t bytes = sizeof *ds * (size_t)sch.n;
        CUR(cudaMallocAsync(&dsteps, bytes, s));
        /* from pageable memory: staged before the call returns, so ds may go now */
        cudaError_t e = cudaMemcpyAsync(dsteps, ds, bytes, cudaMemcpyHostToDevice, s);
        plan.steps = dsteps;
        if (e == cudaSuccess && g->staged) {   /* the progress thread polls till it is done */
            atomic_fetch_add(&c->staged_calls, 1);
            counted = true;
            progress_kick(c->prog);
        }
        const char *what = "cudaMemcpyAsync of the steps";
        if (e == cudaSuccess) {
            what = "the kernel launch";
            e = (cudaError_t)exec_cuda_launch(&plan, s);
        }
        cudaFreeAsync(dsteps, s);          /* ordered after the kernel, if it launched */
        if (e != cudaSuccess) {
            r = cuda_fail(c, e, what);
            goto out;
        }
    }
    if (o.op == LOOM_AVG && c->nranks > 1 &&
        (o.coll == COLL_ALLREDUCE || o.coll == COLL_REDUCE_SCATTER || (o.coll == COLL_REDUCE && c->rank == o.root)))
        CUR((cudaError_t)exec_cuda_div(o.recv, o.count, o.dt, c->nranks, s));
    *rp = (struct report){ .c = c, .g = g, .coll = o.coll, .count = o.count, .dt = o.dt,
                           .peer_of_step = peers, .nsteps = sch.n, .staged = counted };
    peers = NULL;
    if (op->cuda_stream) {                 /* the host function reports and frees rp */
        comm_ref(c);
        cudaError_t e = cudaLaunchHostFunc(s, report_cb, rp);
        if (e != cudaSuccess) comm_unref(c);
        CUR(e);
        rp = NULL;
        counted = false;                   /* report_cb counts it down */
    }
    CUR(cudaEventRecord(g->last, s));
    g->launched = true;
    if (rp) {                              /* no CUDA stream: the call waits */
        cudaError_t e = cudaEventSynchronize(g->last);
        r = e != cudaSuccess ? cuda_fail(c, e, "the collective kernel") : report_status(rp);
    }
out:
    if (counted) atomic_fetch_sub(&c->staged_calls, 1);
    if (copy) cudaFreeAsync(copy, s);
    if (rp) free(rp->peer_of_step);
    free(rp);
    free(ds);
    free(peers);
    sched_free(&sch);
    return r;
}
