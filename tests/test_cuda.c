/* test_cuda.c: collectives on device buffers, ranks as processes sharing GPU 0.
 *   test_cuda coll N [big]   every collective, dtype and reduction op, in and out of place: the
 *                            device result must equal, bit for bit, the host executor's
 *                            on the same inputs (small integers: exact in every dtype,
 *                            so any misrouted or unreduced chunk shows); big: sizes up
 *                            to 256 MiB for float32 sum
 *   test_cuda coll N quick   a reduced set (3 dtypes, 2 ops, 3 sizes) for compute-sanitizer
 *   test_cuda threads N      the quick set with the N ranks as threads of one process
 *                            (the FIFO of a peer in the same process is used directly)
 *   (coll and threads run under LOOM_PROTO=ll|simple, LOOM_CUDA_FIFO=host and
 *    LOOM_TRANSPORT=tcp too, see tests/meson.build: both protocols at every size, FIFOs
 *    in pinned host memory, and every link staged over tcp as across hosts)
 *   test_cuda mismatch       ranks pass another op or count: every rank's call fails
 *                            with INVALID_ARGUMENT and "mismatched calls on the GPU",
 *                            for a small (LL) and a large (simple) message
 *   test_cuda stream N       calls on a wrapped CUDA stream return before completion and
 *                            are ordered on it; mixed host/device buffers are refused
 *   test_cuda kill           a peer dies while a kernel waits for it: the kernel stops,
 *                            loom_comm_get_error says REMOTE
 *   test_cuda timeout        a peer never calls: the kernel gives up at LOOM_TIMEOUT_MS
 *   test_cuda abort          loom_comm_abort while a kernel waits: returns promptly and
 *                            the stream drains
 * Exits 77 (skip) where no GPU can be used. The parent never touches CUDA (a forked
 * child could not use it afterwards): a child process looks for the GPU. */
#include <cuda_runtime_api.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

#define CU(call) do { cudaError_t e_ = (call); if (e_ != cudaSuccess) { \
    fprintf(stderr, "%s:%d: rank %d: %s: %s\n", __FILE__, __LINE__, rank, #call, cudaGetErrorString(e_)); \
    return 1; } } while (0)

static int have_gpu(void)
{
    pid_t p = fork();
    if (p == 0) {
        int n = 0;
        _exit(cudaGetDeviceCount(&n) == cudaSuccess && n > 0 ? 0 : 1);
    }
    int st;
    return waitpid(p, &st, 0) == p && WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

enum { C_ALLREDUCE, C_REDUCE, C_BROADCAST, C_ALLGATHER, C_REDUCE_SCATTER, C_ALLTOALL, C_SENDRECV, NCOLL };
static const char *cname[] = { "allreduce", "reduce", "broadcast", "allgather", "reduce_scatter", "alltoall", "sendrecv" };

/* Run one collective on (s, r) with this stream. */
static loom_result_t call(int coll, const void *s, void *r, size_t count, loom_dtype_t dt, loom_op_t op,
                          int root, loom_comm_t comm, loom_stream_t st)
{
    int n = loom_comm_size(comm), me = loom_comm_rank(comm);
    switch (coll) {
    case C_ALLREDUCE: return loom_allreduce(s, r, count, dt, op, comm, st);
    case C_REDUCE: return loom_reduce(s, r, count, dt, op, root, comm, st);
    case C_BROADCAST: return loom_broadcast(s, r, count, dt, root, comm, st);
    case C_ALLGATHER: return loom_allgather(s, r, count, dt, comm, st);
    case C_REDUCE_SCATTER: return loom_reduce_scatter(s, r, count, dt, op, comm, st);
    case C_ALLTOALL: return loom_alltoall(s, r, count, dt, comm, st);
    default: {
        loom_result_t a, b, c;
        a = loom_group_start();
        b = loom_send(s, count, dt, (me + 1) % n, comm, st);
        c = loom_recv(r, count, dt, (me + n - 1) % n, comm, st);
        loom_result_t d = loom_group_end();
        return a ? a : b ? b : c ? c : d;
    }
    }
}

/* Elements of the send and recv buffers for this collective. */
static void extents(int coll, size_t count, int n, size_t *ns, size_t *nr)
{
    *ns = *nr = count;
    if (coll == C_ALLGATHER) *nr = count * (size_t)n;
    if (coll == C_REDUCE_SCATTER || coll == C_ALLTOALL) *ns = count * (size_t)n;
    if (coll == C_ALLTOALL) *nr = count * (size_t)n;
}

/* Small integers 1..4 (exact in every dtype, products of 8 stay exact in float16),
   different per rank and element. */
static void fill(unsigned char *p, size_t n, loom_dtype_t dt, int rank, unsigned salt)
{
    size_t e = loom_dtype_size(dt);
    for (size_t i = 0; i < n; i++) {
        int v = (int)((i * 7 + (size_t)rank * 3 + salt) % 4) + 1;
        unsigned char *q = p + i * e;
        switch (dt) {
        case LOOM_INT8: case LOOM_UINT8: *q = (unsigned char)v; break;
        case LOOM_INT32: case LOOM_UINT32: { uint32_t x = (uint32_t)v; memcpy(q, &x, 4); break; }
        case LOOM_INT64: case LOOM_UINT64: { uint64_t x = (uint64_t)v; memcpy(q, &x, 8); break; }
        case LOOM_FLOAT32: { float x = (float)v; memcpy(q, &x, 4); break; }
        case LOOM_FLOAT64: { double x = (double)v; memcpy(q, &x, 8); break; }
        case LOOM_FLOAT16: { uint16_t x = (uint16_t)(0x3c00 + ((v == 2) ? 0x400 : v == 3 ? 0x600 : v == 4 ? 0x800 : 0)); memcpy(q, &x, 2); break; }
        case LOOM_BFLOAT16: { uint16_t x = (uint16_t)(0x3f80 + ((v == 2) ? 0x80 : v == 3 ? 0xc0 : v == 4 ? 0x100 : 0)); memcpy(q, &x, 2); break; }
        default: break;
        }
    }
}

/* One case: host result (oracle) vs device result, byte for byte. */
static int one_case(loom_comm_t comm, int rank, int n, int coll, size_t count, loom_dtype_t dt, loom_op_t op,
                    int in_place, unsigned char *h, unsigned char *hs, unsigned char *out, char *d, size_t cap)
{
    size_t e = loom_dtype_size(dt), ns, nr;
    extents(coll, count, n, &ns, &nr);
    size_t span = (ns > nr ? ns : nr) * e;
    if (2 * span > cap || (coll == C_SENDRECV && in_place)) return 0;   /* in-place send/recv: undefined */
    int root = n > 1 ? 1 : 0;
    unsigned salt = (unsigned)(coll * 131 + dt * 17 + op * 5 + (int)count);
    /* host oracle: s at hs, r at h (in place: the placement nccl-tests uses) */
    const unsigned char *s;
    unsigned char *r;
    fill(hs, ns, dt, rank, salt);
    memset(h, 0xa5, span);
    if (in_place && coll == C_ALLGATHER) { memcpy(h + (size_t)rank * count * e, hs, count * e); s = h + (size_t)rank * count * e; r = h; }
    else if (in_place && coll == C_REDUCE_SCATTER) { memcpy(h, hs, ns * e); s = h; r = h + (size_t)rank * count * e; }
    else if (in_place) { memcpy(h, hs, ns * e); s = h; r = h; }
    else { s = hs; r = h; }
    /* the same on the device: d holds [send area | recv area] mirrored */
    char *ds = d, *dr = d + span;
    CU(cudaMemcpy(ds, hs, ns * e, cudaMemcpyHostToDevice));
    CU(cudaMemcpy(dr, h, span, cudaMemcpyHostToDevice));
    const char *s_dev = s == hs ? ds : dr + (s - h);
    char *r_dev = dr + (r - h);
    CHECK_OK(call(coll, s, r, count, dt, op, root, comm, NULL));
    CHECK_OK(call(coll, s_dev, r_dev, count, dt, op, root, comm, NULL));
    CU(cudaMemcpy(out, dr, span, cudaMemcpyDeviceToHost));
    if (memcmp(out, h, span) != 0) {
        size_t i = 0;
        while (out[i] == h[i]) i++;
        fprintf(stderr, "rank %d: %s %s %s count %zu %s: byte %zu (element %zu) is 0x%02x on the GPU, 0x%02x on the host\n",
                rank, cname[coll], loom_dtype_name(dt), loom_op_name(op), count, in_place ? "in place" : "out of place",
                i, i / e, out[i], h[i]);
        return 1;
    }
    return 0;
}

static int coll_body(loom_comm_t comm, int rank, int n, void *arg)
{
    int mode = *(int *)arg, big = mode == 1, quick = mode == 2;
    CU(cudaSetDevice(0));
    size_t cap = big ? (size_t)(2 * 256 + 16) << 20 : (size_t)16 << 20;
    unsigned char *h = malloc(cap), *hs = malloc(cap), *out = malloc(cap);
    char *d;
    CU(cudaMalloc((void **)&d, cap));
    CHECK(h && hs && out);
    static const size_t small[] = { 0, 1, 5, 1000, 4099, 65536 + 24 };
    int fails = 0;
    for (int coll = 0; coll < NCOLL; coll++) {
        bool red = coll == C_ALLREDUCE || coll == C_REDUCE || coll == C_REDUCE_SCATTER;
        for (int dt = 0; dt < LOOM_NUM_DTYPES; dt++)
            for (int op = 0; op < (red ? LOOM_NUM_OPS : 1); op++)
                for (size_t k = 0; k < sizeof small / sizeof *small; k++)
                    for (int ip = 0; ip < 2; ip++) {
                        if (quick && (op > 1 || (dt != LOOM_INT32 && dt != LOOM_FLOAT32 && dt != LOOM_BFLOAT16) ||
                                      k == 0 || k == 2 || k == 4))
                            continue;
                        fails += one_case(comm, rank, n, coll, small[k], (loom_dtype_t)dt, (loom_op_t)op, ip, h, hs, out, d, cap);
                        if (fails > 5) return 1;
                    }
    }
    if (big) {   /* a few large sizes, float32 sum: many slots, every channel, ring loops */
        static const size_t counts[] = { (1u << 20) + 3, 16u << 20, 64u << 20 };
        for (int coll = 0; coll < NCOLL; coll++)
            for (size_t k = 0; k < 3; k++) {
                size_t c = counts[k];
                if (coll == C_ALLGATHER || coll == C_REDUCE_SCATTER || coll == C_ALLTOALL) c /= (size_t)n;
                fails += one_case(comm, rank, n, coll, c, LOOM_FLOAT32, LOOM_SUM, 0, h, hs, out, d, cap);
                fails += one_case(comm, rank, n, coll, c, LOOM_INT32, LOOM_MAX, 1, h, hs, out, d, cap);
            }
    }
    cudaFree(d);
    free(h);
    free(hs);
    free(out);
    return fails != 0;
}

/* ---- ranks as threads of one process ---- */

struct thread_rank {
    loom_id_t id;
    int rank, n, rc;
};

static void *thread_main(void *arg)
{
    struct thread_rank *t = arg;
    int rank = t->rank, quick = 2;
    loom_comm_t comm;
    t->rc = 1;
    if (cudaSetDevice(0) != cudaSuccess) return NULL;
    loom_result_t r = loom_comm_init(&comm, t->n, &t->id, rank);
    if (r != LOOM_SUCCESS) {
        fprintf(stderr, "thread rank %d: loom_comm_init: %s\n", rank, loom_strerror(r));
        return NULL;
    }
    t->rc = coll_body(comm, rank, t->n, &quick);
    if (loom_comm_destroy(comm) != LOOM_SUCCESS) t->rc = 1;
    return NULL;
}

static int run_threads(int n)
{
    struct thread_rank t[16];
    pthread_t th[16];
    loom_id_t id;
    if (n < 1 || n > 16 || loom_get_id(&id) != LOOM_SUCCESS) return 1;
    int rc = 0;
    for (int i = 0; i < n; i++) {
        t[i] = (struct thread_rank){ .id = id, .rank = i, .n = n };
        if (pthread_create(&th[i], NULL, thread_main, &t[i]) != 0) return 1;
    }
    for (int i = 0; i < n; i++) {
        pthread_join(th[i], NULL);
        rc |= t[i].rc;
    }
    return rc;
}

/* ---- mismatched calls ---- */

struct mismatch_case {
    const char *what;
    size_t count[2];            /* rank 1's, the others' */
    loom_op_t op[2];
};

static int mismatch_body(loom_comm_t comm, int rank, int n, void *arg)
{
    (void)n;
    const struct mismatch_case *m = arg;
    int odd = rank == 1 ? 0 : 1;
    CU(cudaSetDevice(0));
    float *d;
    CU(cudaMalloc((void **)&d, 2 * (m->count[0] > m->count[1] ? m->count[0] : m->count[1]) * sizeof *d));
    CU(cudaMemset(d, 0, 2 * m->count[odd] * sizeof *d));
    loom_result_t r = loom_allreduce(d, d + m->count[odd], m->count[odd], LOOM_FLOAT32, m->op[odd], comm, NULL);
    printf("mismatch (%s): rank %d returned %s: %s\n", m->what, rank, loom_strerror(r), loom_last_error(comm));
    fflush(stdout);
    CHECK_EQ(r, LOOM_ERR_INVALID_ARGUMENT);
    CHECK(strstr(loom_last_error(comm), "mismatch") != NULL);
    CHECK(loom_barrier(comm, NULL) != LOOM_SUCCESS);          /* broken from now on */
    cudaFree(d);
    return 0;
}

/* Calls on a wrapped CUDA stream; bad mixes refused. */
static int stream_body(loom_comm_t comm, int rank, int n, void *arg)
{
    (void)arg;
    CU(cudaSetDevice(0));
    cudaStream_t cs;   /* blocking: ordered after the cudaMemcpy uploads (legacy stream) */
    CU(cudaStreamCreate(&cs));
    loom_stream_t s;
    CHECK_OK(loom_stream_wrap_cuda(cs, &s));
    size_t count = 1 << 20;
    float *d, *h = malloc(count * sizeof *h);
    CU(cudaMalloc((void **)&d, 2 * count * sizeof *d));
    for (size_t i = 0; i < count; i++) h[i] = (float)((int)(i % 5) + rank);
    CU(cudaMemcpy(d, h, count * sizeof *h, cudaMemcpyHostToDevice));
    /* ten in a row on the stream, each reading the last one's output */
    for (int k = 0; k < 10; k++) {
        float *src = d + (size_t)(k % 2) * count, *dst = d + (size_t)((k + 1) % 2) * count;
        CHECK_OK(loom_allreduce(src, dst, count, LOOM_FLOAT32, k % 2 ? LOOM_MAX : LOOM_SUM, comm, s));
    }
    CHECK_OK(loom_stream_sync(s));
    CU(cudaMemcpy(h, d, count * sizeof *h, cudaMemcpyDeviceToHost));
    /* after the first sum every rank holds the same values; max keeps them, sum x n */
    for (size_t i = 0; i < count; i += 997) {
        double v = 0;
        for (int q = 0; q < n; q++) v += (double)((int)(i % 5) + q);
        for (int k = 1; k < 10; k++) if (k % 2 == 0) v *= n;
        if (h[i] != (float)v) {
            fprintf(stderr, "rank %d: element %zu is %g, want %g\n", rank, i, h[i], v);
            return 1;
        }
    }
    CHECK_EQ(loom_stream_query(s), LOOM_SUCCESS);
    CHECK_OK(loom_barrier(comm, s));
    CHECK_OK(loom_stream_sync(s));
    /* refused, and nothing changes: host + device, host on a CUDA stream */
    CHECK_EQ(loom_allreduce(h, d, count, LOOM_FLOAT32, LOOM_SUM, comm, NULL), LOOM_ERR_INVALID_ARGUMENT);
    CHECK_EQ(loom_allreduce(h, h, count, LOOM_FLOAT32, LOOM_SUM, comm, s), LOOM_ERR_INVALID_USAGE);
    CHECK_EQ(loom_comm_get_error(comm), LOOM_SUCCESS);
    CHECK_OK(loom_allreduce(d, d, 1, LOOM_FLOAT32, LOOM_SUM, comm, NULL));   /* still usable */
    CHECK_OK(loom_stream_destroy(s));
    CU(cudaStreamDestroy(cs));
    cudaFree(d);
    free(h);
    return 0;
}

/* Rank 1 misbehaves (dies, idles or never calls); rank 0's kernel waits for it. */
static int fault_body(loom_comm_t comm, int rank, int n, void *arg)
{
    (void)n;
    const char *mode = arg;
    CU(cudaSetDevice(0));
    float *d;
    CU(cudaMalloc((void **)&d, 1 << 20));
    CHECK_OK(loom_allreduce(d, d, 1024, LOOM_FLOAT32, LOOM_SUM, comm, NULL));   /* links up */
    if (rank == 1) {
        if (strcmp(mode, "kill") == 0) { usleep(300000); raise(SIGKILL); }
        sleep(4);
        return 0;
    }
    cudaStream_t cs;
    CU(cudaStreamCreateWithFlags(&cs, cudaStreamNonBlocking));
    loom_stream_t s;
    CHECK_OK(loom_stream_wrap_cuda(cs, &s));
    double t0 = harness_now();
    CHECK_OK(loom_allreduce(d, d, 1 << 18, LOOM_FLOAT32, LOOM_SUM, comm, s));
    CHECK(harness_now() - t0 < 1.0);                         /* launched, not waited for */
    if (strcmp(mode, "abort") == 0) {
        usleep(300000);
        CHECK_EQ(cudaStreamQuery(cs), cudaErrorNotReady);    /* the kernel is waiting */
        t0 = harness_now();
        CHECK_OK(loom_comm_abort(comm));
        double took = harness_now() - t0;
        CU(cudaStreamSynchronize(cs));
        fprintf(stderr, "rank 0: abort returned in %.3f s, stream drained %.3f s after\n", took, harness_now() - t0);
        CHECK(took < 3.0);
        loom_stream_destroy(s);
        return 42;                                           /* comm freed: no destroy */
    }
    CU(cudaStreamSynchronize(cs));                           /* ends: abort word or timeout */
    double took = harness_now() - t0;
    loom_result_t e = loom_comm_get_error(comm);
    fprintf(stderr, "rank 0: stream drained after %.2f s, comm error %s: %s\n", took, loom_strerror(e),
            loom_last_error(comm));
    CHECK_EQ(e, strcmp(mode, "kill") == 0 ? LOOM_ERR_REMOTE : LOOM_ERR_TIMEOUT);
    CHECK(took < 10.0);
    loom_stream_destroy(s);
    return 0;
}

static int abort_wrap(loom_comm_t comm, int rank, int n, void *arg)
{
    int rc = fault_body(comm, rank, n, arg);
    if (rc == 42) _exit(0);    /* the comm is gone: skip the harness's destroy */
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: test_cuda coll N [big|quick] | threads N | stream N | mismatch | kill | timeout | abort\n");
        return 2;
    }
    if (!have_gpu()) {
        printf("SKIP: no usable GPU (cudaGetDeviceCount)\n");
        return 77;
    }
    const char *what = argv[1];
    int n = argc > 2 ? atoi(argv[2]) : 2, rc;
    int mode = argc > 3 && strcmp(argv[3], "big") == 0 ? 1 : argc > 3 && strcmp(argv[3], "quick") == 0 ? 2 : 0;
    double t0 = harness_now();
    struct run_opts o = { .timeout_s = 600 };
    if (strcmp(what, "coll") == 0) rc = run_ranks("coll", n, coll_body, &mode, &o);
    else if (strcmp(what, "stream") == 0) rc = run_ranks("stream", n, stream_body, NULL, &o);
    else if (strcmp(what, "threads") == 0) rc = run_threads(n);
    else if (strcmp(what, "mismatch") == 0) {
        setenv("LOOM_TIMEOUT_MS", "10000", 1);   /* if loom cannot tell, the ranks time out */
        o.timeout_s = 60;
        static const struct mismatch_case cases[] = {
            { "max on rank 1, sum elsewhere, 1000 floats", { 1000, 1000 }, { LOOM_MAX, LOOM_SUM } },
            { "max on rank 1, sum elsewhere, 4M floats", { 4u << 20, 4u << 20 }, { LOOM_MAX, LOOM_SUM } },
            { "count 200 on rank 1, 100 elsewhere", { 200, 100 }, { LOOM_SUM, LOOM_SUM } },
            { "count 1M + 1 on rank 1, 1M elsewhere", { (1u << 20) + 1, 1u << 20 }, { LOOM_SUM, LOOM_SUM } },
        };
        rc = 0;
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
            rc |= run_ranks("mismatch", 2, mismatch_body, (void *)&cases[i], &o);
            rc |= run_ranks("mismatch", 3, mismatch_body, (void *)&cases[i], &o);
        }
    }
    else {
        if (strcmp(what, "timeout") == 0) setenv("LOOM_TIMEOUT_MS", "1500", 1);
        o.timeout_s = 60;
        o.may_die = strcmp(what, "kill") == 0 ? 2u : 0u;
        rc = run_ranks(what, 2, strcmp(what, "abort") == 0 ? abort_wrap : fault_body, (void *)what, &o);
    }
    printf("%s %s: %s (%.1f s)\n", what, argc > 2 ? argv[2] : "", rc ? "FAIL" : "ok", harness_now() - t0);
    return rc ? 1 : 0;
}
