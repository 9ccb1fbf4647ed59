/* test_coll: every collective x dtype x op x in-place/out-of-place against a serial
 * reference, on N local ranks over one transport.
 *
 *   test_coll shm|tcp NRANKS small|medium|big
 *
 * small: counts {0, 1, 7, 4097}; medium: 1 MiB + 3 elements (per rank for allgather,
 * reduce-scatter and all-to-all: that total split over the ranks); big: 64 MiB, one
 * dtype/op per collective. Inputs are small integers, distinct per rank and element
 * and periodic in the element index (period 13, or 17 for prod), so the expected
 * result of every element is exact and read from a small table: a misrouted chunk,
 * a wrong op or a wrong rounding is caught, and checking stays cheap. Also checked:
 * out-of-place calls leave their input alone; reduce leaves non-root outputs alone.
 */
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "harness.h"

enum coll { ALLREDUCE, REDUCE, BROADCAST, ALLGATHER, REDUCE_SCATTER, ALLTOALL, SENDRECV, BARRIER, NCOLL };
static const char *coll_names[] = { "allreduce", "reduce", "broadcast", "allgather", "reduce_scatter",
                                    "alltoall", "sendrecv", "barrier" };

struct cfg {
    const char *size_class;
};

/* ---- values ---- */

static uint16_t to_half(float f)     /* round to nearest even; the test's own */
{
    uint16_t sign = signbit(f) ? 0x8000 : 0;
    float a = fabsf(f);
    if (a == 0) return sign;
    if (a >= 65520.0f) return sign | 0x7c00;
    int ex;
    frexpf(a, &ex);
    int e = ex - 1;
    if (e < -14) return sign | (uint16_t)nearbyintf(ldexpf(a, 24));
    int m = (int)nearbyintf((ldexpf(a, -e) - 1.0f) * 1024.0f);
    if (m == 1024) { m = 0; e++; }
    return sign | (uint16_t)((e + 15) << 10 | m);
}

static uint16_t to_bf16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    x += 0x7fffu + ((x >> 16) & 1);
    return (uint16_t)(x >> 16);
}

/* Store v as dt at out, which may be unaligned (the expected-value pattern is built
   at byte offsets): through memcpy, never a cast pointer. */
static void put(loom_dtype_t dt, double v, void *out)
{
    int64_t i = (int64_t)v;
    union { int8_t i8; int32_t i32; int64_t i64; uint16_t u16; float f; double d; } x;
    size_t n;
    switch (dt) {
    case LOOM_INT8: case LOOM_UINT8: x.i8 = (int8_t)i; n = 1; break;
    case LOOM_INT32: case LOOM_UINT32: x.i32 = (int32_t)i; n = 4; break;
    case LOOM_INT64: case LOOM_UINT64: x.i64 = i; n = 8; break;
    case LOOM_FLOAT16: x.u16 = to_half((float)v); n = 2; break;
    case LOOM_FLOAT32: x.f = (float)v; n = 4; break;
    case LOOM_FLOAT64: x.d = v; n = 8; break;
    case LOOM_BFLOAT16: x.u16 = to_bf16((float)v); n = 2; break;
    default: return;
    }
    memcpy(out, &x, n);
}

static int period(loom_op_t op) { return op == LOOM_PROD ? 17 : 13; }

/* Rank q's input at element i (depends on i only through i % period). */
static int64_t val(loom_op_t op, int q, size_t i)
{
    if (op == LOOM_PROD) return (i + (size_t)q * 5) % 17 == 0 ? 2 : 1;
    return (int64_t)((i * 3 + (size_t)q * 7) % 13 + 1);
}

/* The reduction over n ranks of val(op, q, j), in the dtype's arithmetic. */
static double reduce_ref(loom_dtype_t dt, loom_op_t op, int n, size_t j)
{
    int64_t acc = val(op, 0, j);
    for (int q = 1; q < n; q++) {
        int64_t v = val(op, q, j);
        acc = op == LOOM_PROD ? acc * v : op == LOOM_MAX ? (v > acc ? v : acc)
            : op == LOOM_MIN ? (v < acc ? v : acc) : acc + v;
    }
    if (op != LOOM_AVG) return (double)acc;
    switch (dt) {
    case LOOM_INT8: return (double)((int8_t)acc / n);
    case LOOM_UINT8: return (double)((uint8_t)acc / n);
    case LOOM_INT32: case LOOM_UINT32: case LOOM_INT64: case LOOM_UINT64: return (double)(acc / n);
    case LOOM_FLOAT64: return (double)acc / n;
    default: return (double)((float)acc / (float)n);   /* float32, and float for 16-bit */
    }
}

/* ---- tables: bytes of each value, indexed by residue ---- */

struct tables {
    size_t E;
    int P;
    unsigned char red[17][8];
};

static unsigned char (*inputs)[17][8];   /* [nranks][17][8] */

static void make_tables(struct tables *t, loom_dtype_t dt, loom_op_t op, int n)
{
    t->E = loom_dtype_size(dt);
    t->P = period(op);
    for (int q = 0; q < n; q++)
        for (int j = 0; j < t->P; j++) put(dt, (double)val(op, q, (size_t)j), inputs[q][j]);
    for (int j = 0; j < t->P; j++) put(dt, reduce_ref(dt, op, n, (size_t)j), t->red[j]);
}

/* buf[i] = row[(off + i) % P] */
static void fill(void *buf, size_t count, size_t off, const unsigned char (*row)[8], const struct tables *t)
{
    unsigned char *p = buf;
    for (size_t i = 0; i < count; i++) memcpy(p + i * t->E, row[(off + i) % (size_t)t->P], t->E);
}

/* Index of the first element where buf differs from row, or -1. */
static long long diff(const void *buf, size_t count, size_t off, const unsigned char (*row)[8], const struct tables *t)
{
    const unsigned char *p = buf;
    for (size_t i = 0; i < count; i++)
        if (memcmp(p + i * t->E, row[(off + i) % (size_t)t->P], t->E) != 0) return (long long)i;
    return -1;
}

static long long untouched(const void *buf, size_t bytes)
{
    const unsigned char *p = buf;
    for (size_t i = 0; i < bytes; i++)
        if (p[i] != 0xa5) return (long long)i;
    return -1;
}

/* ---- one case ---- */

struct bufs {
    unsigned char *a, *b;      /* send and recv, each big enough for n*count elements */
};

#define FAIL(...) do { fprintf(stderr, "rank %d: %s %s %s count %zu %s root %d: ", rank, coll_names[coll], \
    loom_dtype_name(dt), loom_op_name(op), count, ip ? "in-place" : "out-of-place", root); \
    fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); return 1; } while (0)
#define EXPECT(buf, cnt, off, row) do { long long at_ = diff(buf, cnt, off, row, &t); if (at_ >= 0) { \
    unsigned long long got_ = 0, want_ = 0; memcpy(&got_, (buf) + (size_t)at_ * t.E, t.E); \
    memcpy(&want_, (row)[((off) + (size_t)at_) % (size_t)t.P], t.E); \
    FAIL("element %lld is 0x%llx, expected 0x%llx (line %d)", at_, got_, want_, __LINE__); } } while (0)

static bool reduces(enum coll c) { return c == ALLREDUCE || c == REDUCE || c == REDUCE_SCATTER; }
static bool per_rank(enum coll c) { return c == ALLGATHER || c == REDUCE_SCATTER || c == ALLTOALL; }

static int run_case(loom_comm_t comm, int rank, int n, struct bufs *B, enum coll coll, loom_dtype_t dt,
                    loom_op_t op, size_t count, int ip)
{
    struct tables t;
    make_tables(&t, dt, op, n);
    size_t E = t.E, all = count * (size_t)n;
    int root = (int)((count + (size_t)dt + (size_t)op) % (size_t)n);
    unsigned char *s = B->a, *r = B->b;
    const unsigned char (*mine)[8] = inputs[rank];
    size_t span = (per_rank(coll) ? all : count) * E + 64;     /* bytes a case may touch */
    memset(B->a, 0xa5, span);
    memset(B->b, 0xa5, span);
    switch (coll) {
    case ALLREDUCE:
        fill(ip ? r : s, count, 0, mine, &t);
        CHECK_OK(loom_allreduce(ip ? r : s, r, count, dt, op, comm, NULL));
        EXPECT(r, count, 0, t.red);
        if (!ip) EXPECT(s, count, 0, mine);
        break;
    case REDUCE:
        fill(ip ? r : s, count, 0, mine, &t);
        CHECK_OK(loom_reduce(ip ? r : s, r, count, dt, op, root, comm, NULL));
        if (rank == root) EXPECT(r, count, 0, t.red);
        else if (ip) EXPECT(r, count, 0, mine);
        else if (untouched(r, span) >= 0) FAIL("non-root output written at byte %lld", untouched(r, span));
        if (!ip) EXPECT(s, count, 0, mine);
        break;
    case BROADCAST:
        if (rank == root) fill(ip ? r : s, count, 0, mine, &t);
        CHECK_OK(loom_broadcast(ip ? r : s, r, count, dt, root, comm, NULL));
        EXPECT(r, count, 0, inputs[root]);
        if (!ip && rank == root) EXPECT(s, count, 0, mine);
        break;
    case ALLGATHER: {
        unsigned char *src = ip ? r + (size_t)rank * count * E : s;
        fill(src, count, 0, mine, &t);
        CHECK_OK(loom_allgather(src, r, count, dt, comm, NULL));
        for (int q = 0; q < n; q++) EXPECT(r + (size_t)q * count * E, count, 0, inputs[q]);
        if (!ip) EXPECT(s, count, 0, mine);
        break;
    }
    case REDUCE_SCATTER: {
        fill(s, all, 0, mine, &t);
        unsigned char *dst = ip ? s + (size_t)rank * count * E : r;
        CHECK_OK(loom_reduce_scatter(s, dst, count, dt, op, comm, NULL));
        EXPECT(dst, count, (size_t)rank * count, t.red);
        if (!ip) EXPECT(s, all, 0, mine);
        break;
    }
    case ALLTOALL:
        fill(ip ? r : s, all, 0, mine, &t);
        CHECK_OK(loom_alltoall(ip ? r : s, r, count, dt, comm, NULL));
        for (int q = 0; q < n; q++) EXPECT(r + (size_t)q * count * E, count, (size_t)rank * count, inputs[q]);
        if (!ip) EXPECT(s, all, 0, mine);
        break;
    case SENDRECV: {
        int to = (rank + 1) % n, from = (rank + n - 1) % n;
        fill(s, count, 0, mine, &t);
        CHECK_OK(loom_group_start());
        CHECK_OK(loom_send(s, count, dt, to, comm, NULL));
        CHECK_OK(loom_recv(r, count, dt, from, comm, NULL));
        CHECK_OK(loom_group_end());
        EXPECT(r, count, 0, inputs[from]);
        EXPECT(s, count, 0, mine);
        break;
    }
    case BARRIER:
        CHECK_OK(loom_barrier(comm, NULL));
        break;
    default:
        break;
    }
    return 0;
}

/* ---- plans ---- */

static int matrix(loom_comm_t comm, int rank, int n, const size_t *sizes, int nsizes)
{
    size_t maxc = 0;
    for (int i = 0; i < nsizes; i++) maxc = sizes[i] > maxc ? sizes[i] : maxc;
    struct bufs B = { malloc(maxc * (size_t)n * 8 + 64), malloc(maxc * (size_t)n * 8 + 64) };
    CHECK(B.a && B.b);
    int cases = 0;
    for (int c = 0; c < NCOLL; c++)
        for (int dt = 0; dt < LOOM_NUM_DTYPES; dt++)
            for (int op = 0; op < (reduces((enum coll)c) ? LOOM_NUM_OPS : 1); op++)
                for (int si = 0; si < nsizes; si++)
                    for (int ip = 0; ip < (c == SENDRECV || c == BARRIER ? 1 : 2); ip++) {
                        size_t count = sizes[si];
                        if (per_rank((enum coll)c) && count > 100000) count = count / (size_t)n;
                        if (run_case(comm, rank, n, &B, (enum coll)c, (loom_dtype_t)dt, (loom_op_t)op, count, ip))
                            return 1;
                        cases++;
                    }
    if (rank == 0) printf("  %d cases\n", cases);
    free(B.a);
    free(B.b);
    return 0;
}

static int big(loom_comm_t comm, int rank, int n)
{
    static const struct { enum coll c; loom_dtype_t dt; loom_op_t op; } plan[] = {
        { ALLREDUCE, LOOM_FLOAT32, LOOM_SUM }, { ALLREDUCE, LOOM_INT64, LOOM_MAX },
        { ALLGATHER, LOOM_INT8, LOOM_SUM },    { REDUCE_SCATTER, LOOM_BFLOAT16, LOOM_SUM },
        { BROADCAST, LOOM_FLOAT64, LOOM_SUM }, { REDUCE, LOOM_INT32, LOOM_MAX },
        { ALLTOALL, LOOM_UINT8, LOOM_SUM },    { SENDRECV, LOOM_FLOAT32, LOOM_SUM },
    };
    size_t bytes = 64u << 20;
    struct bufs B = { malloc(bytes + 64), malloc(bytes + 64) };
    CHECK(B.a && B.b);
    for (size_t i = 0; i < sizeof plan / sizeof plan[0]; i++) {
        size_t count = bytes / loom_dtype_size(plan[i].dt) / (per_rank(plan[i].c) ? (size_t)n : 1);
        for (int ip = 0; ip < (plan[i].c == SENDRECV ? 1 : 2); ip++)
            if (run_case(comm, rank, n, &B, plan[i].c, plan[i].dt, plan[i].op, count, ip)) return 1;
    }
    free(B.a);
    free(B.b);
    return 0;
}

static int body(loom_comm_t comm, int rank, int n, void *arg)
{
    const struct cfg *cfg = arg;
    inputs = calloc((size_t)n, sizeof *inputs);
    CHECK(inputs != NULL);
    if (strcmp(cfg->size_class, "small") == 0) {
        static const size_t sizes[] = { 0, 1, 7, 4097 };
        return matrix(comm, rank, n, sizes, 4);
    }
    if (strcmp(cfg->size_class, "medium") == 0) {
        static const size_t sizes[] = { (1u << 20) + 3 };
        return matrix(comm, rank, n, sizes, 1);
    }
    return big(comm, rank, n);
}

int main(int argc, char **argv)
{
    if (argc != 4 || (strcmp(argv[1], "shm") && strcmp(argv[1], "tcp")) ||
        (strcmp(argv[3], "small") && strcmp(argv[3], "medium") && strcmp(argv[3], "big"))) {
        fprintf(stderr, "usage: test_coll shm|tcp NRANKS small|medium|big\n");
        return 2;
    }
    if (strcmp(argv[1], "tcp") == 0) setenv("LOOM_TRANSPORT", "tcp", 1);
    /* LOOM_ALGO (ring, direct) may be set by the caller to test one algorithm */
    struct cfg cfg = { argv[3] };
    char name[64];
    snprintf(name, sizeof name, "coll-%s-%s-%s", argv[1], argv[2], argv[3]);
    struct run_opts o = { .timeout_s = 600 };
    return run_ranks(name, atoi(argv[2]), body, &cfg, &o);
}
