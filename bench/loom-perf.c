/* loom-perf: the nccl-tests equivalent for loom, one binary for every collective.
 *
 *   loomrun -n 4 loom-perf -o allreduce -b 8 -e 256M -f 2 -d float32 -r sum
 *
 * Prints nccl-tests' columns (size, count, type, redop, root, then time / algbw /
 * busbw / #wrong out-of-place and in-place), its busbw factors, and a last line
 * "# Avg bus bandwidth : X". Exits 1 when any #wrong is not 0.
 * Method: -w warm-up calls, a barrier, -n back-to-back calls timed together; the time
 * of a row is the mean per call, the max over ranks. Then (-c 1) one more call on
 * fresh inputs whose every element is checked exactly: inputs are small integers,
 * distinct per rank and element, so every dtype and op has an exact expected value.
 * -o memcpy measures memcpy the same way on every rank: the limit on shared memory
 * (its "in-place" column repeats the measurement).
 * Uses only include/loom.h. Not a correctness suite (tests/ is); a measurement tool.
 */
#include <getopt.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "loom.h"

#define DIE(...) do { fprintf(stderr, "loom-perf: " __VA_ARGS__); fputc('\n', stderr); exit(2); } while (0)
#define CHECK(call) do { loom_result_t r_ = (call); if (r_ != LOOM_SUCCESS) { \
    fprintf(stderr, "loom-perf: rank %d: %s failed: %s: %s\n", rank, #call, loom_strerror(r_), \
            loom_last_error(comm)); exit(1); } } while (0)

enum coll { C_ALLREDUCE, C_REDUCESCATTER, C_ALLGATHER, C_BROADCAST, C_REDUCE, C_ALLTOALL, C_SENDRECV, C_MEMCPY };
static const char *coll_names[] = { "allreduce", "reducescatter", "allgather", "broadcast", "reduce",
                                    "alltoall", "sendrecv", "memcpy" };

static struct {
    enum coll coll;
    size_t min_bytes, max_bytes, incr;
    double factor;
    loom_dtype_t dt;
    loom_op_t op;
    int iters, warmup, check, root;
} opt = { C_ALLREDUCE, 32 << 20, 32 << 20, 0, 2, LOOM_FLOAT32, LOOM_SUM, 20, 5, 1, 0 };

static int rank, nranks;
static loom_comm_t comm;

/* ---- arguments ---- */

static size_t parse_size(const char *s)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || v < 0) DIE("bad size '%s'", s);
    switch (*end) {
    case 'k': case 'K': v *= 1024; end++; break;
    case 'm': case 'M': v *= 1024 * 1024; end++; break;
    case 'g': case 'G': v *= 1024.0 * 1024 * 1024; end++; break;
    }
    if (*end) DIE("bad size '%s'", s);
    return (size_t)v;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: loom-perf [-o allreduce|reducescatter|allgather|broadcast|reduce|alltoall|sendrecv|memcpy]\n"
            "                 [-b MIN] [-e MAX] [-f FACTOR | -i INCREMENT] [-d DTYPE] [-r OP]\n"
            "                 [-n ITERS] [-w WARMUP] [-c 0|1] [-R ROOT]\n"
            "sizes take K/M/G; dtypes int8 uint8 int32 uint32 int64 uint64 float16 float32 float64\n"
            "bfloat16 (also half, float, double); ops sum prod max min avg.\n"
            "Run one process per rank: loomrun -n N loom-perf ..., or mpirun.\n");
    exit(2);
}

static int lookup(const char *s, const char *(*name)(int), int n)
{
    for (int i = 0; i < n; i++)
        if (strcmp(s, name(i)) == 0) return i;
    return -1;
}
static const char *dt_name(int i) { return loom_dtype_name((loom_dtype_t)i); }
static const char *op_name(int i) { return loom_op_name((loom_op_t)i); }

static void parse_args(int argc, char **argv)
{
    int c;
    while ((c = getopt(argc, argv, "o:b:e:f:i:d:r:n:w:c:R:h")) != -1) {
        switch (c) {
        case 'o': {
            int i;
            for (i = 0; i <= C_MEMCPY && strcmp(optarg, coll_names[i]); i++) {}
            if (i > C_MEMCPY) DIE("unknown collective '%s'", optarg);
            opt.coll = (enum coll)i;
            break;
        }
        case 'b': opt.min_bytes = parse_size(optarg); break;
        case 'e': opt.max_bytes = parse_size(optarg); break;
        case 'f': opt.factor = atof(optarg); opt.incr = 0; if (opt.factor <= 1) DIE("-f must be > 1"); break;
        case 'i': opt.incr = parse_size(optarg); if (!opt.incr) DIE("-i must be > 0"); break;
        case 'd': {
            const char *s = strcmp(optarg, "half") == 0 ? "float16" : strcmp(optarg, "float") == 0 ? "float32"
                          : strcmp(optarg, "double") == 0 ? "float64" : optarg;
            int i = lookup(s, dt_name, LOOM_NUM_DTYPES);
            if (i < 0) DIE("unknown dtype '%s'", optarg);
            opt.dt = (loom_dtype_t)i;
            break;
        }
        case 'r': {
            int i = lookup(optarg, op_name, LOOM_NUM_OPS);
            if (i < 0) DIE("unknown op '%s'", optarg);
            opt.op = (loom_op_t)i;
            break;
        }
        case 'n': opt.iters = atoi(optarg); if (opt.iters < 1) DIE("-n must be >= 1"); break;
        case 'w': opt.warmup = atoi(optarg); if (opt.warmup < 0) DIE("-w must be >= 0"); break;
        case 'c': opt.check = atoi(optarg); break;
        case 'R': opt.root = atoi(optarg); break;
        default: usage();
        }
    }
    if (optind != argc || opt.max_bytes < opt.min_bytes) usage();
}

/* ---- element values ---- */

/* Round to nearest even (nearbyintf rounds that way in the default mode). */
static uint16_t float_to_half(float f)
{
    uint16_t sign = signbit(f) ? 0x8000 : 0;
    float a = fabsf(f);
    if (a == 0) return sign;
    if (a >= 65520.0f) return sign | 0x7c00;
    int ex;
    frexpf(a, &ex);                             /* a = m * 2^ex, m in [0.5, 1) */
    int e = ex - 1;                             /* a = 1.f * 2^e */
    if (e < -14) return sign | (uint16_t)nearbyintf(ldexpf(a, 24));
    int mant = (int)nearbyintf((ldexpf(a, -e) - 1.0f) * 1024.0f);
    if (mant == 1024) { mant = 0; e++; }
    if (e > 15) return sign | 0x7c00;
    return sign | (uint16_t)((e + 15) << 10 | mant);
}

static uint16_t float_to_bf16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    x += 0x7fffu + ((x >> 16) & 1);
    return (uint16_t)(x >> 16);
}

/* Input of rank r at element i: small, distinct per rank and element; prod inputs
   are 1 with a sparse 2 so products stay exact in every dtype. */
static int64_t input(int r, size_t i)
{
    if (opt.op == LOOM_PROD) return ((i + (size_t)r * 5) % 17 == 0) ? 2 : 1;
    return (int64_t)((i * 3 + (size_t)r * 7) % 13 + 1);
}

/* Stores v (an integer or, for avg, a quotient) as dtype dt at p[i]. */
static void store(void *p, size_t i, double v)
{
    switch (opt.dt) {
    case LOOM_INT8: ((int8_t *)p)[i] = (int8_t)(int64_t)v; break;
    case LOOM_UINT8: ((uint8_t *)p)[i] = (uint8_t)(int64_t)v; break;
    case LOOM_INT32: ((int32_t *)p)[i] = (int32_t)(int64_t)v; break;
    case LOOM_UINT32: ((uint32_t *)p)[i] = (uint32_t)(int64_t)v; break;
    case LOOM_INT64: ((int64_t *)p)[i] = (int64_t)v; break;
    case LOOM_UINT64: ((uint64_t *)p)[i] = (uint64_t)(int64_t)v; break;
    case LOOM_FLOAT16: ((uint16_t *)p)[i] = float_to_half((float)v); break;
    case LOOM_FLOAT32: ((float *)p)[i] = (float)v; break;
    case LOOM_FLOAT64: ((double *)p)[i] = v; break;
    case LOOM_BFLOAT16: ((uint16_t *)p)[i] = float_to_bf16((float)v); break;
    default: break;
    }
}

/* Expected reduction over all ranks of input(q, i), in the dtype's arithmetic:
   integers wrap, then avg divides (truncating); floats sum exactly, avg divides in
   the dtype's precision (float for 16-bit types) and rounds. */
static double expected_reduce(size_t i)
{
    int64_t acc = input(0, i);
    for (int q = 1; q < nranks; q++) {
        int64_t v = input(q, i);
        switch (opt.op) {
        case LOOM_PROD: acc *= v; break;
        case LOOM_MAX: acc = v > acc ? v : acc; break;
        case LOOM_MIN: acc = v < acc ? v : acc; break;
        default: acc += v; break;
        }
    }
    if (opt.op != LOOM_AVG) return (double)acc;
    switch (opt.dt) {
    case LOOM_INT8: return (double)((int8_t)acc / nranks);
    case LOOM_UINT8: return (double)((uint8_t)acc / nranks);
    case LOOM_FLOAT64: return (double)acc / nranks;
    default:
        if (opt.dt == LOOM_INT32 || opt.dt == LOOM_UINT32 || opt.dt == LOOM_INT64 || opt.dt == LOOM_UINT64)
            return (double)(acc / nranks);
        return (double)((float)acc / (float)nranks);
    }
}

/* ---- one size ---- */

struct bufs {
    char *send, *recv, *expect;
    size_t count;        /* the count argument of the call      */
    size_t send_elems, recv_elems;
};

static size_t esize(void) { return loom_dtype_size(opt.dt); }

static void fill_inputs(struct bufs *b)
{
    for (size_t i = 0; i < b->send_elems; i++) store(b->send, i, (double)input(rank, i));
}

/* Expected output of this rank (or NULL-sized for non-root reduce). */
static size_t fill_expected(struct bufs *b)
{
    size_t n = b->count, E = esize();
    switch (opt.coll) {
    case C_ALLREDUCE: for (size_t i = 0; i < n; i++) store(b->expect, i, expected_reduce(i)); return n;
    case C_REDUCE:
        if (rank != opt.root) return 0;
        for (size_t i = 0; i < n; i++) store(b->expect, i, expected_reduce(i));
        return n;
    case C_REDUCESCATTER:
        for (size_t i = 0; i < n; i++) store(b->expect, i, expected_reduce((size_t)rank * n + i));
        return n;
    case C_BROADCAST: for (size_t i = 0; i < n; i++) store(b->expect, i, (double)input(opt.root, i)); return n;
    case C_ALLGATHER:
        for (int q = 0; q < nranks; q++)
            for (size_t i = 0; i < n; i++) store(b->expect, (size_t)q * n + i, (double)input(q, i));
        return n * (size_t)nranks;
    case C_ALLTOALL:
        for (int q = 0; q < nranks; q++)
            for (size_t i = 0; i < n; i++) store(b->expect, (size_t)q * n + i, (double)input(q, (size_t)rank * n + i));
        return n * (size_t)nranks;
    case C_SENDRECV:
        for (size_t i = 0; i < n; i++) store(b->expect, i, (double)input((rank + nranks - 1) % nranks, i));
        return n;
    case C_MEMCPY: memcpy(b->expect, b->send, n * E); return n;
    }
    return 0;
}

static void run_once(struct bufs *b, int in_place)
{
    size_t n = b->count, E = esize();
    char *s = b->send, *r = b->recv;
    if (in_place) {
        /* in-place layouts as nccl-tests: the send data lives inside recv */
        if (opt.coll == C_ALLGATHER) s = r + (size_t)rank * n * E;
        else if (opt.coll == C_REDUCESCATTER) { r = s + (size_t)rank * n * E; }
        else s = r;
    }
    switch (opt.coll) {
    case C_ALLREDUCE: CHECK(loom_allreduce(s, r, n, opt.dt, opt.op, comm, NULL)); break;
    case C_REDUCE: CHECK(loom_reduce(s, r, n, opt.dt, opt.op, opt.root, comm, NULL)); break;
    case C_REDUCESCATTER: CHECK(loom_reduce_scatter(s, r, n, opt.dt, opt.op, comm, NULL)); break;
    case C_BROADCAST: CHECK(loom_broadcast(s, r, n, opt.dt, opt.root, comm, NULL)); break;
    case C_ALLGATHER: CHECK(loom_allgather(s, r, n, opt.dt, comm, NULL)); break;
    case C_ALLTOALL: CHECK(loom_alltoall(s, r, n, opt.dt, comm, NULL)); break;
    case C_SENDRECV:
        CHECK(loom_group_start());
        CHECK(loom_send(s, n, opt.dt, (rank + 1) % nranks, comm, NULL));
        CHECK(loom_recv(r, n, opt.dt, (rank + nranks - 1) % nranks, comm, NULL));
        CHECK(loom_group_end());
        break;
    case C_MEMCPY: memcpy(r, b->send, n * E); break;
    }
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static double max_over_ranks(double v)
{
    double out;
    CHECK(loom_allreduce(&v, &out, 1, LOOM_FLOAT64, LOOM_MAX, comm, NULL));
    return out;
}

/* Runs once on fresh inputs; returns the number of wrong elements over all ranks. */
static int64_t check(struct bufs *b, int in_place)
{
    size_t E = esize();
    fill_inputs(b);
    memset(b->recv, 0xa5, b->recv_elems * E);
    if (in_place && opt.coll == C_ALLGATHER) memcpy(b->recv + (size_t)rank * b->count * E, b->send, b->count * E);
    else if (in_place) memcpy(b->recv, b->send, b->send_elems * E);
    run_once(b, in_place);
    size_t n = fill_expected(b);
    int64_t wrong = 0;
    for (size_t i = 0; i < n; i++) wrong += memcmp(b->recv + i * E, b->expect + i * E, E) != 0;
    double w = (double)wrong, total;
    CHECK(loom_allreduce(&w, &total, 1, LOOM_FLOAT64, LOOM_SUM, comm, NULL));
    return (int64_t)total;
}

/* Reduce-scatter in place overwrites its own input block: check it separately. */
static int64_t check_rs_in_place(struct bufs *b)
{
    size_t E = esize();
    fill_inputs(b);
    run_once(b, 1);
    char *got = b->send + (size_t)rank * b->count * E;
    char *keep = malloc(b->count * E + 1);
    memcpy(keep, got, b->count * E);
    fill_inputs(b);
    size_t n = fill_expected(b);
    int64_t wrong = 0;
    for (size_t i = 0; i < n; i++) wrong += memcmp(keep + i * E, b->expect + i * E, E) != 0;
    free(keep);
    fill_inputs(b);                 /* later timed calls start from clean inputs */
    double w = (double)wrong, total;
    CHECK(loom_allreduce(&w, &total, 1, LOOM_FLOAT64, LOOM_SUM, comm, NULL));
    return (int64_t)total;
}

static double bus_factor(void)
{
    double n = nranks;
    switch (opt.coll) {
    case C_ALLREDUCE: return 2 * (n - 1) / n;
    case C_ALLGATHER: case C_REDUCESCATTER: case C_ALLTOALL: return (n - 1) / n;
    default: return 1;
    }
}

static int64_t run_size(size_t bytes, double *busbw_sum, int *rows)
{
    size_t E = esize(), per = (opt.coll == C_ALLGATHER || opt.coll == C_REDUCESCATTER ||
                               opt.coll == C_ALLTOALL) ? (size_t)nranks : 1;
    struct bufs b = { .count = bytes / E / per };
    size_t total = b.count * per;    /* elements in the "size" column */
    b.send_elems = opt.coll == C_ALLGATHER ? b.count : total;
    b.recv_elems = opt.coll == C_REDUCESCATTER ? b.count : total;
    size_t alloc = (total ? total : 1) * E;
    if (posix_memalign((void **)&b.send, 64, alloc) || posix_memalign((void **)&b.recv, 64, alloc) ||
        posix_memalign((void **)&b.expect, 64, alloc))
        DIE("out of memory for %zu bytes", alloc);
    memset(b.send, 0, alloc);
    memset(b.recv, 0, alloc);
    memset(b.expect, 0, alloc);
    fill_inputs(&b);

    double t[2];
    int64_t wrong[2] = { 0, 0 };
    for (int ip = 0; ip < 2; ip++) {
        for (int i = 0; i < opt.warmup; i++) run_once(&b, ip);
        if (opt.coll != C_MEMCPY || nranks > 1) CHECK(loom_barrier(comm, NULL));
        double t0 = now();
        for (int i = 0; i < opt.iters; i++) run_once(&b, ip);
        t[ip] = max_over_ranks((now() - t0) / opt.iters);
        if (opt.check) wrong[ip] = ip && opt.coll == C_REDUCESCATTER ? check_rs_in_place(&b) : check(&b, ip);
    }
    if (rank == 0) {
        const char *redop = (opt.coll == C_ALLREDUCE || opt.coll == C_REDUCE || opt.coll == C_REDUCESCATTER)
                                ? loom_op_name(opt.op) : "none";
        int root = (opt.coll == C_BROADCAST || opt.coll == C_REDUCE) ? opt.root : -1;
        printf("%12zu  %12zu  %8s  %6s  %6d", total * E, total, loom_dtype_name(opt.dt), redop, root);
        for (int ip = 0; ip < 2; ip++) {
            double algbw = (double)(total * E) / t[ip] / 1e9, busbw = algbw * bus_factor();
            *busbw_sum += busbw;
            printf("  %8.2f  %6.2f  %6.2f  %5lld", t[ip] * 1e6, algbw, busbw, (long long)wrong[ip]);
        }
        printf("\n");
        fflush(stdout);
    }
    *rows += 2;
    free(b.send);
    free(b.recv);
    free(b.expect);
    return wrong[0] + wrong[1];
}

/* ---- main ---- */

int main(int argc, char **argv)
{
    parse_args(argc, argv);
    rank = 0;
    comm = NULL;
    if (loom_comm_init_env(&comm) != LOOM_SUCCESS) {
        fprintf(stderr, "loom-perf: cannot join the job: %s\n", loom_last_error(NULL));
        return 1;
    }
    rank = loom_comm_rank(comm);
    nranks = loom_comm_size(comm);
    if ((opt.coll == C_BROADCAST || opt.coll == C_REDUCE) && (opt.root < 0 || opt.root >= nranks))
        DIE("-R %d out of range for %d ranks", opt.root, nranks);

    char host[64] = "?";
    gethostname(host, sizeof host - 1);
    struct { int32_t pid; char host[60]; } me = { (int32_t)getpid(), "" }, *all = calloc((size_t)nranks, sizeof me);
    snprintf(me.host, sizeof me.host, "%s", host);
    CHECK(loom_allgather(&me, all, sizeof me, LOOM_UINT8, comm, NULL));
    if (rank == 0) {
        printf("# loom-perf: %s, %d ranks, dtype %s, op %s, iters %d, warmup %d, check %d\n",
               coll_names[opt.coll], nranks, loom_dtype_name(opt.dt), loom_op_name(opt.op), opt.iters,
               opt.warmup, opt.check);
        for (int r = 0; r < nranks; r++) printf("#  Rank %2d Pid %6d on %10s\n", r, all[r].pid, all[r].host);
        printf("#\n");
        printf("#                                                              out-of-place                       in-place          \n");
        printf("#       size         count      type   redop    root     time   algbw   busbw #wrong     time   algbw   busbw #wrong\n");
        printf("#        (B)    (elements)                               (us)  (GB/s)  (GB/s)            (us)  (GB/s)  (GB/s)       \n");
    }
    free(all);

    double busbw_sum = 0;
    int rows = 0;
    int64_t wrong = 0;
    size_t unit = loom_dtype_size(opt.dt) *
                  ((opt.coll == C_ALLGATHER || opt.coll == C_REDUCESCATTER || opt.coll == C_ALLTOALL) ? (size_t)nranks : 1);
    for (size_t bytes = opt.min_bytes; bytes <= opt.max_bytes;) {
        wrong += run_size(bytes, &busbw_sum, &rows);
        size_t next = opt.incr ? bytes + opt.incr : (size_t)((double)(bytes ? bytes : unit) * opt.factor);
        if (next <= bytes) break;
        bytes = next;
    }
    if (rank == 0) {
        printf("# Out of bounds values : %lld %s\n", (long long)wrong, wrong ? "FAILED" : "OK");
        printf("# Avg bus bandwidth    : %g \n", rows ? busbw_sum / rows : 0.0);
        printf("#\n");
    }
    loom_comm_destroy(comm);
    return wrong ? 1 : 0;
}
