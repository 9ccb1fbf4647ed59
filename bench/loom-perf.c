/* loom-perf: the nccl-tests equivalent for loom, one binary for every collective.
 *
 *     loomrun -n 4 loom-perf -o allreduce -b 8 -e 256M -f 2 -d float32 -r sum
 *     mpirun -np 4 loom-perf -o alltoall -b 1K -e 64M -f 4
 *     loom-perf -o memcpy -b 8 -e 256M -f 4           (no launcher: one rank)
 *
 * What it is. One process per rank (loom_comm_init_env finds the job). For each size
 * from -b to -e (times -f, or plus -i) it prints one row in nccl-tests' layout: size
 * (B), count, type, redop ("none" where the call has no op), root (-1 where the call
 * has none), then time (us), algbw and busbw (GB/s = 1e9 B/s) and #wrong, first
 * out-of-place and then in-place. Last come "# Out of bounds values" and
 * "# Avg bus bandwidth" (the mean busbw over every row and both placements); the exit
 * status is 1 when any check found a wrong element, 2 for bad arguments.
 *
 * Sizes and counts follow nccl-tests: "size" is the total of the call (allgather:
 * what is received; reduce-scatter: what is sent; alltoall: each rank's whole send
 * buffer) and "count" is the count argument of the call, per rank for allgather and
 * reduce-scatter, per peer for alltoall. A size that does not divide is rounded down
 * (count = size / eltsize [/ nranks]). algbw = size / time; busbw = algbw x
 * 2(n-1)/n for allreduce, (n-1)/n for allgather, reduce-scatter and alltoall, 1 else.
 * In-place as in nccl-tests: allreduce, reduce, broadcast, alltoall and sendrecv use
 * send == recv; allgather sends from recv + rank * count; reduce-scatter receives into
 * send + rank * count. sendrecv in-place is timed but not checked ("N/A"), as in
 * nccl-tests: a buffer that is sent and received into at once has no defined result.
 *
 * Method. Per size and placement: fresh inputs, -w warm-up calls, loom_barrier, -n
 * blocking calls (NULL stream) back to back timed together with CLOCK_MONOTONIC; the
 * time is the mean per call, then the max over ranks (nccl-tests' default is the mean
 * over ranks; the slowest rank is what a training step waits for). Then with -c 1 one
 * more call on fresh inputs (outputs poisoned first, so a call that writes nothing
 * cannot pass) whose every output element is compared bit for bit with the expected
 * value. "Out of bounds values" counts, as nccl-tests does, the (rank, size,
 * placement) checks that found wrong elements.
 *
 * Inputs are small integers, distinct per rank and element (input of rank r at index
 * j depends on (7r + 3j) mod M, M prime to 3 and 7), chosen per dtype and op so that
 * every result is exact however the library orders the reduction: for sum/avg the
 * largest M <= 13 with (M-1) * nranks within the dtype's exact range (int8 and uint8
 * 127, bfloat16 256, float16 2048); for prod 1s with a sparse 2 (at most 15 per
 * element, so float16 stays exact; 6 for 8-bit integers); for max, min and data
 * movement M = 251 (127 for 8-bit integers). Outputs are poisoned before the checked
 * call with 0xa5 bytes, which no input or expected value equals. Expected values
 * are computed as the dtype computes: integers wrap, avg divides the (wrapped) sum
 * and truncates; floats sum exactly, then avg divides in the dtype's precision
 * (float for float16/bfloat16, then rounded to nearest even). Exact only up to the
 * limits above (sums: 127 ranks for 8-bit integers, 256 for bfloat16, 2048 for
 * float16; past them integers still wrap exactly, 16-bit floats may not).
 *
 * -o memcpy is the limit to compare with: every rank memcpy's size bytes between two
 * buffers of its own, all ranks at once, timed the same way; algbw = busbw =
 * size / time. Its "in-place" column is a second, independent sample of the same
 * copy (a copy onto itself moves nothing), checked the same way.
 *
 * -G 1 (builds with CUDA): device buffers on GPU (rank mod the number of GPUs),
 * calls on a wrapped CUDA stream, each timed batch ended by a stream sync.
 * Inputs are made and checked on the host and copied over. -o memcpy then times
 * cudaMemcpyAsync device to device: the copy bandwidth in the same run (counting the
 * bytes once, as algbw; the bytes read plus written are twice that).
 *
 * What it is not: a correctness suite (tests/ is) or nccl-tests itself (no -g/-t
 * threads per process, no -a, -m, -z). It uses only include/loom.h (and CUDA's
 * runtime for -G).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#ifdef LOOM_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "loom.h"
#include "cli.h"
#include "size.h"

/* ---- errors ---- */

static int rank, nranks;
static loom_comm_t comm;

/* A failed loom call ends this rank; the others then fail with LOOM_ERR_REMOTE. */
#define LOOM_CHECK(call)                                                                  \
    do {                                                                                   \
        loom_result_t r_ = (call);                                                         \
        if (r_ != LOOM_SUCCESS) {                                                          \
            fprintf(stderr, "loom-perf: rank %d: %s: %s: %s\n", rank, #call,               \
                    loom_strerror(r_), loom_last_error(comm));                             \
            exit(1);                                                                       \
        }                                                                                  \
    } while (0)

#define FATAL(...)                                                                        \
    do {                                                                                   \
        fprintf(stderr, "loom-perf: rank %d: ", rank);                                     \
        fprintf(stderr, __VA_ARGS__);                                                      \
        fputc('\n', stderr);                                                               \
        exit(1);                                                                           \
    } while (0)

/* ---- options ---- */

enum coll { C_ALLREDUCE, C_REDUCESCATTER, C_ALLGATHER, C_BROADCAST, C_REDUCE, C_ALLTOALL,
            C_SENDRECV, C_MEMCPY, C_NUM };
static const char *const coll_names[C_NUM] = { "allreduce", "reducescatter", "allgather", "broadcast",
                                               "reduce", "alltoall", "sendrecv", "memcpy" };

static struct {
    enum coll coll;
    size_t min_bytes, max_bytes;   /* the "size" column, bytes                   */
    double factor;                 /* > 1: multiply; 0: add incr                 */
    size_t incr;                   /* bytes, when factor == 0                    */
    loom_dtype_t dt;
    loom_op_t op;
    int iters, warmup, check, root;
    int gpu;                       /* -G 1: device buffers                       */
} opt = { C_ALLREDUCE, 32u << 20, 32u << 20, 2, 0, LOOM_FLOAT32, LOOM_SUM, 20, 5, 1, 0, 0 };

static size_t esize;   /* bytes per element of opt.dt */

static int reduces(void) { return opt.coll == C_ALLREDUCE || opt.coll == C_REDUCE || opt.coll == C_REDUCESCATTER; }
static int has_root(void) { return opt.coll == C_BROADCAST || opt.coll == C_REDUCE; }
static int per_rank(void) { return opt.coll == C_ALLGATHER || opt.coll == C_REDUCESCATTER || opt.coll == C_ALLTOALL; }

/* ---- arguments ---- */

static void help(FILE *f)
{
    fprintf(f,
            "usage: loom-perf [-o OP] [-b MIN] [-e MAX] [-f FACTOR | -i INCREMENT] [-d DTYPE] [-r REDOP]\n"
            "                 [-n ITERS] [-w WARMUP] [-c 0|1] [-R ROOT] [-G 0|1]\n"
            "  -o  allreduce reducescatter allgather broadcast reduce alltoall sendrecv memcpy (allreduce)\n"
            "  -b, -e  smallest and largest size in bytes, K/M/G = powers of 1024 (32M, 32M)\n"
            "  -f  multiply the size by FACTOR > 1 (2); -i  add INCREMENT bytes instead\n"
            "  -d  int8 uint8 int32 uint32 int64 uint64 float16|half float32|float float64|double\n"
            "      bfloat16 (float32)\n"
            "  -r  sum prod max min avg (sum)\n"
            "  -n  timed iterations (20); -w  warm-up iterations (5); -c  check results (1)\n"
            "  -R  root of broadcast and reduce (0)\n"
            "  -G  1: device buffers on a CUDA stream (builds with CUDA; 0)\n"
            "one process per rank: loomrun -n N loom-perf ..., mpirun -np N loom-perf ...;\n"
            "with no launcher it runs as one rank.\n");
}

/* A bad argument: why, the usage, exit 2. */
static void usage(const char *why)
{
    fprintf(stderr, "loom-perf: %s\n", why);
    help(stderr);
    exit(2);
}

static int parse_int(const char *s, int lo, const char *what)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (end == s || *end || v < lo || v > 1000000000) {
        char msg[96];
        snprintf(msg, sizeof msg, "bad %s '%s'", what, s);
        usage(msg);
    }
    return (int)v;
}

static size_t parse_size(const char *s)
{
    size_t v;
    if (!bench_size(s, &v)) usage("bad size (digits, then an optional K, M or G)");
    return v;
}

static enum coll parse_coll(const char *s)
{
    for (int i = 0; i < C_NUM; i++)
        if (strcmp(s, coll_names[i]) == 0) return (enum coll)i;
    usage("unknown -o");
    return C_ALLREDUCE;
}

static loom_dtype_t parse_dtype(const char *s)
{
    if (strcmp(s, "half") == 0) return LOOM_FLOAT16;
    if (strcmp(s, "float") == 0) return LOOM_FLOAT32;
    if (strcmp(s, "double") == 0) return LOOM_FLOAT64;
    for (int i = 0; i < LOOM_NUM_DTYPES; i++) {
        const char *n = loom_dtype_name((loom_dtype_t)i);
        if (n && strcmp(s, n) == 0) return (loom_dtype_t)i;
    }
    usage("unknown -d");
    return LOOM_FLOAT32;
}

static loom_op_t parse_op(const char *s)
{
    for (int i = 0; i < LOOM_NUM_OPS; i++) {
        const char *n = loom_op_name((loom_op_t)i);
        if (n && strcmp(s, n) == 0) return (loom_op_t)i;
    }
    usage("unknown -r");
    return LOOM_SUM;
}

static double parse_factor(const char *s)
{
    char *end;
    double f = strtod(s, &end);
    if (end == s || *end || !(f > 1) || f > 1e6) usage("-f must be a number > 1");
    return f;
}

static void parse_args(int argc, char **argv)
{
    int c;
    opterr = 0;
    cli_scan(argc, argv, "loom-perf", help, 1);
    while ((c = getopt(argc, argv, "o:b:e:f:i:d:r:n:w:c:R:G:h")) != -1) {
        switch (c) {
        case 'o': opt.coll = parse_coll(optarg); break;
        case 'b': opt.min_bytes = parse_size(optarg); break;
        case 'e': opt.max_bytes = parse_size(optarg); break;
        case 'f': opt.factor = parse_factor(optarg); break;
        case 'i':
            opt.incr = parse_size(optarg);
            opt.factor = 0;
            if (opt.incr == 0) usage("-i must be > 0");
            break;
        case 'd': opt.dt = parse_dtype(optarg); break;
        case 'r': opt.op = parse_op(optarg); break;
        case 'n': opt.iters = parse_int(optarg, 1, "-n"); break;
        case 'w': opt.warmup = parse_int(optarg, 0, "-w"); break;
        case 'c': opt.check = parse_int(optarg, 0, "-c") != 0; break;
        case 'R': opt.root = parse_int(optarg, 0, "-R"); break;
        case 'G': opt.gpu = parse_int(optarg, 0, "-G") != 0; break;
        case 'h': help(stdout); exit(0);
        default: {
            char why[96];
            if (optopt && strchr("obefidrnwcRG", optopt)) snprintf(why, sizeof why, "-%c needs a value", optopt);
            else snprintf(why, sizeof why, "unknown option '-%c'", optopt);
            usage(why);
        }
        }
    }
    if (optind != argc) usage("unexpected argument");
    if (opt.min_bytes > opt.max_bytes) usage("-b is larger than -e");
    esize = loom_dtype_size(opt.dt);
    if (esize == 0) usage("dtype unknown to this library");
}

/* ---- 16-bit float encodings (checker only; round to nearest even) ---- */

static uint16_t float_to_half(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000u, a = x & 0x7fffffffu;
    if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00u);          /* NaN             */
    if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);         /* >= 65520: inf   */
    uint32_t h, rem, halfway;
    if (a >= 0x38800000u) {                                          /* >= 2^-14: normal */
        h = (a - 0x38000000u) >> 13;                                 /* rebias 127 -> 15 */
        rem = a & 0x1fffu;
        halfway = 0x1000u;
    } else {                                                         /* subnormal half: */
        uint32_t e = a >> 23, mant = (a & 0x7fffffu) | 0x800000u;    /* units of 2^-24  */
        if (e < 102) return (uint16_t)sign;                          /* < 2^-25: zero   */
        uint32_t shift = 126 - e;                                    /* 14 .. 24        */
        h = mant >> shift;
        rem = mant & ((1u << shift) - 1);
        halfway = 1u << (shift - 1);
    }
    if (rem > halfway || (rem == halfway && (h & 1))) h++;           /* may carry: fine */
    return (uint16_t)(sign | h);
}

static uint16_t float_to_bf16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40u);  /* NaN */
    return (uint16_t)((x + 0x7fffu + ((x >> 16) & 1)) >> 16);
}

/* ---- expected values ---- */

/* Writes the integer v as one element of opt.dt: integers keep the low bits (the
   wrap of the dtype), floats take v exactly (v is small or a power of two). */
static void encode_int(int64_t v, unsigned char *out)
{
    switch (opt.dt) {
    case LOOM_INT8: case LOOM_UINT8: { uint8_t x = (uint8_t)v; memcpy(out, &x, 1); break; }
    case LOOM_INT32: case LOOM_UINT32: { uint32_t x = (uint32_t)v; memcpy(out, &x, 4); break; }
    case LOOM_INT64: case LOOM_UINT64: { uint64_t x = (uint64_t)v; memcpy(out, &x, 8); break; }
    case LOOM_FLOAT16: { uint16_t x = float_to_half((float)v); memcpy(out, &x, 2); break; }
    case LOOM_BFLOAT16: { uint16_t x = float_to_bf16((float)v); memcpy(out, &x, 2); break; }
    case LOOM_FLOAT32: { float x = (float)v; memcpy(out, &x, 4); break; }
    case LOOM_FLOAT64: { double x = (double)v; memcpy(out, &x, 8); break; }
    default: break;
    }
}

/* avg: the sum, wrapped to the dtype, divided by nranks as the dtype divides. */
static void encode_avg(int64_t sum, unsigned char *out)
{
    int64_t n = nranks;
    switch (opt.dt) {
    case LOOM_INT8: encode_int((int8_t)sum / n, out); break;
    case LOOM_UINT8: encode_int((uint8_t)sum / n, out); break;
    case LOOM_INT32: encode_int((int32_t)sum / n, out); break;
    case LOOM_UINT32: encode_int((int64_t)((uint32_t)sum / (uint64_t)n), out); break;
    case LOOM_INT64: encode_int(sum / n, out); break;
    case LOOM_UINT64: encode_int((int64_t)((uint64_t)sum / (uint64_t)n), out); break;
    case LOOM_FLOAT16: { uint16_t x = float_to_half((float)sum / (float)n); memcpy(out, &x, 2); break; }
    case LOOM_BFLOAT16: { uint16_t x = float_to_bf16((float)sum / (float)n); memcpy(out, &x, 2); break; }
    case LOOM_FLOAT32: { float x = (float)sum / (float)n; memcpy(out, &x, 4); break; }
    case LOOM_FLOAT64: { double x = (double)sum / (double)n; memcpy(out, &x, 8); break; }
    default: break;
    }
}

/* Input of rank r at element j is ival((7r + 3j) % pat.m); the output of a reduction
   at j depends only on (3j) % pat.m. So two tables of pat.m encoded elements say
   everything: val (inputs) and red (reductions over all ranks). */
static struct {
    size_t m;            /* period, prime to 3 and 7                       */
    unsigned char *val;  /* (m, esize): encoded input of residue k         */
    unsigned char *red;  /* (m, esize): encoded reduction of residue k     */
} pat;

static int m_ok(size_t m) { return m % 3 && m % 7; }

static int64_t ival(size_t k)
{
    if (reduces() && opt.op == LOOM_PROD) return k == 0 ? 2 : 1;
    return (int64_t)k;
}

/* The largest integer every partial sum may reach and stay exact (or not wrap). */
static int64_t sum_limit(void)
{
    switch (opt.dt) {
    case LOOM_INT8: case LOOM_UINT8: return 127;   /* uint8 too: below the 0xa5 poison */
    case LOOM_BFLOAT16: return 256;
    case LOOM_FLOAT16: return 2048;
    default: return 1 << 24;
    }
}

static size_t choose_period(void)
{
    if (reduces() && (opt.op == LOOM_SUM || opt.op == LOOM_AVG)) {
        for (size_t m = 13; m > 2; m--)
            if (m_ok(m) && (int64_t)(m - 1) * nranks <= sum_limit()) return m;
        return 2;
    }
    if (reduces() && opt.op == LOOM_PROD) {
        /* ceil(nranks / m) twos at most per element: 2^15 fits float16; 8-bit integers
           would wrap to 0 past 2^7 (exact, but a check of nothing), so 2^6 there */
        size_t twos = esize == 1 ? 6 : 15, m = 2;
        while (!m_ok(m) || ((size_t)nranks + m - 1) / m > twos) m++;
        return m;
    }
    return esize == 1 ? 127 : 251;   /* max, min and data movement: any exact value */
}

static void expected_reduction(size_t k, unsigned char *out)
{
    int64_t acc = ival(k % pat.m);              /* rank 0 */
    for (int r = 1; r < nranks; r++) {
        int64_t v = ival((7 * (size_t)r + k) % pat.m);
        switch (opt.op) {
        case LOOM_PROD: acc = (int64_t)((uint64_t)acc * (uint64_t)v); break;
        case LOOM_MAX: acc = v > acc ? v : acc; break;
        case LOOM_MIN: acc = v < acc ? v : acc; break;
        default: acc = (int64_t)((uint64_t)acc + (uint64_t)v); break;
        }
    }
    if (opt.op == LOOM_AVG) encode_avg(acc, out);
    else encode_int(acc, out);
}

static void setup_pattern(void)
{
    pat.m = choose_period();
    pat.val = malloc(pat.m * esize);
    pat.red = malloc(pat.m * esize);
    if (!pat.val || !pat.red) FATAL("out of memory");
    for (size_t k = 0; k < pat.m; k++) {
        encode_int(ival(k), pat.val + k * esize);
        if (reduces()) expected_reduction(k, pat.red + k * esize);
    }
}

/* ---- sequences: fill and compare ---- */

/* Element j of a sequence is table[(base + 3j) % m]: it repeats every m elements,
   so one block of whole periods is built once and copied or compared many times. */
#define BLOCK_TARGET 4096
static unsigned char *blk;   /* (blk_n, esize) */
static size_t blk_n;

static void build_block(const unsigned char *table, size_t base)
{
    for (size_t j = 0; j < blk_n; j++)
        memcpy(blk + j * esize, table + ((base + 3 * (j % pat.m)) % pat.m) * esize, esize);
}

static void fill_seq(unsigned char *dst, size_t n, const unsigned char *table, size_t base)
{
    build_block(table, base % pat.m);
    for (size_t off = 0; off < n; off += blk_n) {
        size_t k = n - off < blk_n ? n - off : blk_n;
        memcpy(dst + off * esize, blk, k * esize);
    }
}

static uint64_t wrong_in_seq(const unsigned char *got, size_t n, const unsigned char *table, size_t base)
{
    uint64_t wrong = 0;
    build_block(table, base % pat.m);
    for (size_t off = 0; off < n; off += blk_n) {
        size_t k = n - off < blk_n ? n - off : blk_n;
        const unsigned char *g = got + off * esize;
        if (memcmp(g, blk, k * esize) == 0) continue;
        for (size_t j = 0; j < k; j++) wrong += memcmp(g + j * esize, blk + j * esize, esize) != 0;
    }
    return wrong;
}

static void setup_block(void)
{
    size_t periods = BLOCK_TARGET / (pat.m * esize);
    blk_n = pat.m * (periods ? periods : 1);
    blk = malloc(blk_n * esize);
    if (!blk) FATAL("out of memory");
}

/* ---- buffers and one call ---- */

struct bufs {
    unsigned char *send, *recv;   /* posix_memalign(64), cap bytes each, touched    */
    unsigned char *dsend, *drecv; /* -G: their device twins (cap bytes each)        */
    size_t cap;
    size_t count;                 /* the count argument of the call                */
    size_t send_n, recv_n;        /* elements used in send, recv                   */
    size_t bytes;                 /* the "size" column                             */
};

/* ---- device buffers (-G) ---- */

static loom_stream_t gstream;      /* wraps gcuda; NULL without -G */
#ifdef LOOM_HAVE_CUDA
static cudaStream_t gcuda;
#define CUDA_CHECK(call) do { cudaError_t e_ = (call); \
    if (e_ != cudaSuccess) FATAL("%s: %s", #call, cudaGetErrorString(e_)); } while (0)

static void gpu_alloc(struct bufs *b)
{
    int ndev = 0;
    CUDA_CHECK(cudaGetDeviceCount(&ndev));
    CUDA_CHECK(cudaSetDevice(rank % ndev));
    CUDA_CHECK(cudaMalloc((void **)&b->dsend, b->cap));
    CUDA_CHECK(cudaMalloc((void **)&b->drecv, b->cap));
    CUDA_CHECK(cudaStreamCreate(&gcuda));   /* blocking: after gpu_copy's cudaMemcpy DMA */
    LOOM_CHECK(loom_stream_wrap_cuda(gcuda, &gstream));
}

/* Host buffers -> device (up), or back (down): the first n bytes of each. */
static void gpu_copy(struct bufs *b, size_t n, int up)
{
    if (up) {
        CUDA_CHECK(cudaMemcpy(b->dsend, b->send, n, cudaMemcpyHostToDevice));
        CUDA_CHECK(cudaMemcpy(b->drecv, b->recv, n, cudaMemcpyHostToDevice));
    } else {
        CUDA_CHECK(cudaMemcpy(b->send, b->dsend, n, cudaMemcpyDeviceToHost));
        CUDA_CHECK(cudaMemcpy(b->recv, b->drecv, n, cudaMemcpyDeviceToHost));
    }
}

static void gpu_sync(void) { if (opt.gpu) CUDA_CHECK(cudaStreamSynchronize(gcuda)); }
static void gpu_memcpy(void *r, const void *s, size_t n) { CUDA_CHECK(cudaMemcpyAsync(r, s, n, cudaMemcpyDeviceToDevice, gcuda)); }
static void gpu_free(struct bufs *b)
{
    loom_stream_destroy(gstream);
    cudaStreamDestroy(gcuda);
    cudaFree(b->dsend);
    cudaFree(b->drecv);
}
#else
static void gpu_alloc(struct bufs *b) { (void)b; FATAL("-G 1: this loom-perf was built without CUDA"); }
static void gpu_copy(struct bufs *b, size_t n, int up) { (void)b; (void)n; (void)up; }
static void gpu_sync(void) {}
static void gpu_memcpy(void *r, const void *s, size_t n) { (void)r; (void)s; (void)n; }
static void gpu_free(struct bufs *b) { (void)b; }
#endif

/* The device twin of a pointer into b's host buffers (-G), else p. */
static void *twin(const struct bufs *b, const void *p)
{
    const unsigned char *q = p;
    if (!opt.gpu) return (void *)q;
    if (q >= b->send && q < b->send + b->cap) return b->dsend + (q - b->send);
    return b->drecv + (q - b->recv);
}

static void alloc_bufs(struct bufs *b)
{
    b->cap = opt.max_bytes > 64 ? opt.max_bytes : 64;
    void *s = NULL, *r = NULL;
    if (posix_memalign(&s, 64, b->cap) || posix_memalign(&r, 64, b->cap))
        FATAL("cannot allocate 2 x %zu bytes", b->cap);
    b->send = s;
    b->recv = r;
    memset(b->send, 0xa5, b->cap);      /* fault every page in before any timing */
    memset(b->recv, 0xa5, b->cap);
    if (opt.gpu) gpu_alloc(b);
}

static void set_size(struct bufs *b, size_t bytes)
{
    size_t n = (size_t)nranks, elems = bytes / esize;
    b->count = per_rank() ? elems / n : elems;
    size_t total = per_rank() ? b->count * n : b->count;
    b->send_n = opt.coll == C_ALLGATHER ? b->count : total;
    b->recv_n = opt.coll == C_REDUCESCATTER ? b->count : total;
    b->bytes = total * esize;
}

static size_t block_bytes(const struct bufs *b) { return b->count * esize; }

/* The buffers one call uses, out-of-place or in-place (nccl-tests' layouts). */
static void place(const struct bufs *b, int in_place, const void **s, void **r)
{
    *s = b->send;
    *r = b->recv;
    if (!in_place || opt.coll == C_MEMCPY) return;
    if (opt.coll == C_ALLGATHER) *s = b->recv + (size_t)rank * block_bytes(b);
    else if (opt.coll == C_REDUCESCATTER) *r = b->send + (size_t)rank * block_bytes(b);
    else *s = b->recv;
}

/* Through a volatile pointer so that back-to-back copies cannot be merged. */
static void *(*volatile copy_fn)(void *, const void *, size_t) = memcpy;

static void run_once(const void *s, void *r, size_t count)
{
    loom_stream_t st = gstream;
    int next = (rank + 1) % nranks, prev = (rank + nranks - 1) % nranks;
    switch (opt.coll) {
    case C_ALLREDUCE: LOOM_CHECK(loom_allreduce(s, r, count, opt.dt, opt.op, comm, st)); break;
    case C_REDUCESCATTER: LOOM_CHECK(loom_reduce_scatter(s, r, count, opt.dt, opt.op, comm, st)); break;
    case C_ALLGATHER: LOOM_CHECK(loom_allgather(s, r, count, opt.dt, comm, st)); break;
    case C_BROADCAST: LOOM_CHECK(loom_broadcast(s, r, count, opt.dt, opt.root, comm, st)); break;
    case C_REDUCE: LOOM_CHECK(loom_reduce(s, r, count, opt.dt, opt.op, opt.root, comm, st)); break;
    case C_ALLTOALL: LOOM_CHECK(loom_alltoall(s, r, count, opt.dt, comm, st)); break;
    case C_SENDRECV:
        LOOM_CHECK(loom_group_start());
        LOOM_CHECK(loom_send(s, count, opt.dt, next, comm, st));
        LOOM_CHECK(loom_recv(r, count, opt.dt, prev, comm, st));
        LOOM_CHECK(loom_group_end());
        break;
    case C_MEMCPY:
        if (opt.gpu) gpu_memcpy(r, s, count * esize);
        else copy_fn(r, s, count * esize);
        break;
    default: break;
    }
}

/* ---- inputs and checks ---- */

/* Fresh inputs where this placement reads them; outputs poisoned with 0xa5 bytes, a
   value no input or result takes in any dtype: negative, or 165 > 127 for uint8, or
   huge for uint32 and uint64. */
static void prepare(struct bufs *b, int in_place)
{
    size_t me = 7 * (size_t)rank;
    memset(b->recv, 0xa5, b->recv_n * esize);
    if (!in_place || opt.coll == C_MEMCPY) fill_seq(b->send, b->send_n, pat.val, me);
    else if (opt.coll == C_ALLGATHER) fill_seq(b->recv + (size_t)rank * block_bytes(b), b->count, pat.val, me);
    else if (opt.coll == C_REDUCESCATTER) fill_seq(b->send, b->send_n, pat.val, me);
    else fill_seq(b->recv, b->send_n, pat.val, me);
}

/* Whether this placement's result has a defined value to check. */
static int checkable(int in_place) { return opt.check && !(in_place && opt.coll == C_SENDRECV); }

/* Wrong elements in this rank's output. */
static uint64_t wrong_here(const struct bufs *b, int in_place)
{
    size_t c = b->count, m = pat.m, bb = block_bytes(b);
    size_t my_block = 3 * (((size_t)rank % m) * (c % m) % m);   /* 3 * rank * c, mod m */
    uint64_t wrong = 0;
    switch (opt.coll) {
    case C_ALLREDUCE: return wrong_in_seq(b->recv, c, pat.red, 0);
    case C_REDUCE: return rank == opt.root ? wrong_in_seq(b->recv, c, pat.red, 0) : 0;
    case C_REDUCESCATTER: {
        const unsigned char *out = in_place ? b->send + (size_t)rank * bb : b->recv;
        return wrong_in_seq(out, c, pat.red, my_block);
    }
    case C_BROADCAST: return wrong_in_seq(b->recv, c, pat.val, 7 * (size_t)opt.root);
    case C_ALLGATHER:
        for (int q = 0; q < nranks; q++) wrong += wrong_in_seq(b->recv + (size_t)q * bb, c, pat.val, 7 * (size_t)q);
        return wrong;
    case C_ALLTOALL:
        for (int q = 0; q < nranks; q++)
            wrong += wrong_in_seq(b->recv + (size_t)q * bb, c, pat.val, 7 * (size_t)q + my_block);
        return wrong;
    case C_SENDRECV:
        return wrong_in_seq(b->recv, c, pat.val, 7 * (size_t)((rank + nranks - 1) % nranks));
    case C_MEMCPY: return wrong_in_seq(b->recv, c, pat.val, 7 * (size_t)rank);
    default: return 0;
    }
}

static uint64_t sum_over_ranks(uint64_t v)
{
    uint64_t out = 0;
    LOOM_CHECK(loom_allreduce(&v, &out, 1, LOOM_UINT64, LOOM_SUM, comm, NULL));
    return out;
}

static double max_over_ranks(double v)
{
    double out = 0;
    LOOM_CHECK(loom_allreduce(&v, &out, 1, LOOM_FLOAT64, LOOM_MAX, comm, NULL));
    return out;
}

/* ---- timing ---- */

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

struct result {
    double sec;          /* per call, max over ranks           */
    int checked;
    uint64_t wrong;      /* wrong elements summed over ranks    */
};

static uint64_t failed_checks;   /* this rank's checks that found wrong elements */

static struct result measure(struct bufs *b, int in_place)
{
    struct result res = { 0, checkable(in_place), 0 };
    const void *s;
    void *r;
    place(b, in_place, &s, &r);
    const void *ds = twin(b, s);          /* the buffers the calls use */
    void *dr = twin(b, r);
    size_t used = (b->send_n > b->recv_n ? b->send_n : b->recv_n) * esize;
    prepare(b, in_place);
    if (opt.gpu) gpu_copy(b, used, 1);
    for (int i = 0; i < opt.warmup; i++) run_once(ds, dr, b->count);
    gpu_sync();
    LOOM_CHECK(loom_barrier(comm, NULL));
    double t0 = now();
    for (int i = 0; i < opt.iters; i++) run_once(ds, dr, b->count);
    gpu_sync();
    res.sec = max_over_ranks((now() - t0) / opt.iters);
    if (res.checked) {
        prepare(b, in_place);
        if (opt.gpu) gpu_copy(b, used, 1);
        run_once(ds, dr, b->count);
        gpu_sync();
        if (opt.gpu) gpu_copy(b, used, 0);
        uint64_t here = wrong_here(b, in_place);
        failed_checks += here != 0;
        res.wrong = sum_over_ranks(here);
    }
    return res;
}

/* ---- output (rank 0) ---- */

static double bus_factor(void)
{
    double n = nranks;
    switch (opt.coll) {
    case C_ALLREDUCE: return 2 * (n - 1) / n;
    case C_ALLGATHER: case C_REDUCESCATTER: case C_ALLTOALL: return (n - 1) / n;
    default: return 1;
    }
}

/* v right-aligned in width characters (out holds 16): 2 decimals, fewer, none, then
   the exponent form, as nccl-tests fits its columns. */
static void fit(char *out, int width, double v)
{
    static const char *const fmts[] = { "%*.2f", "%*.1f", "%*.0f", "%*.1e", "%*.0e" };
    char tmp[64];
    int len = 0;
    for (int i = 0; i < 5; i++) {
        len = snprintf(tmp, sizeof tmp, fmts[i], width, v);
        if (len >= 0 && len <= width) break;
    }
    if (len < 0 || len > 15) len = 15;
    memcpy(out, tmp, (size_t)len);
    out[len] = '\0';
}

static void print_header(void)
{
    struct { int32_t pid; char host[60]; } me = { (int32_t)getpid(), "" }, *all;
    all = calloc((size_t)nranks, sizeof me);
    if (!all) FATAL("out of memory");
    gethostname(me.host, sizeof me.host - 1);
    LOOM_CHECK(loom_allgather(&me, all, sizeof me, LOOM_UINT8, comm, NULL));
    if (rank == 0) {
        printf("# loom-perf: %s  nranks %d  minBytes %zu maxBytes %zu step: ", coll_names[opt.coll], nranks,
               opt.min_bytes, opt.max_bytes);
        if (opt.factor > 0) printf("%g(factor)", opt.factor);
        else printf("%zu(bytes)", opt.incr);
        printf(" warmup iters: %d iters: %d validation: %d\n", opt.warmup, opt.iters, opt.check);
        printf("#\n# Using ranks\n");
        for (int r = 0; r < nranks; r++) printf("#  Rank %2d Pid %6d on %10s\n", r, (int)all[r].pid, all[r].host);
        printf("#\n");
        printf("# %10s  %12s  %8s  %6s  %6s           out-of-place                       in-place          \n",
               "", "", "", "", "");
        printf("# %10s  %12s  %8s  %6s  %6s  %7s  %6s  %6s %6s  %7s  %6s  %6s %6s\n", "size", "count", "type",
               "redop", "root", "time", "algbw", "busbw", "#wrong", "time", "algbw", "busbw", "#wrong");
        printf("# %10s  %12s  %8s  %6s  %6s  %7s  %6s  %6s  %5s  %7s  %6s  %6s  %5s\n", "(B)", "(elements)", "", "",
               "", "(us)", "(GB/s)", "(GB/s)", "", "(us)", "(GB/s)", "(GB/s)", "");
        fflush(stdout);
    }
    free(all);
}

static double busbw_sum;
static int busbw_n;

static void print_result(const struct bufs *b, const struct result *res)
{
    char t[16], alg[16], bus[16], wrong[24];
    double algbw = res->sec > 0 ? (double)b->bytes / res->sec / 1e9 : 0, busbw = algbw * bus_factor();
    busbw_sum += busbw;
    busbw_n++;
    fit(t, 7, res->sec * 1e6);
    fit(alg, 6, algbw);
    fit(bus, 6, busbw);
    if (res->checked) snprintf(wrong, sizeof wrong, "%llu", (unsigned long long)res->wrong);
    else snprintf(wrong, sizeof wrong, "N/A");
    if (rank == 0) printf("  %7s  %6s  %6s  %5s", t, alg, bus, wrong);
}

static void print_row_start(const struct bufs *b)
{
    if (rank != 0) return;
    printf("%12zu  %12zu  %8s  %6s  %6d", b->bytes, b->count, loom_dtype_name(opt.dt),
           reduces() ? loom_op_name(opt.op) : "none", has_root() ? opt.root : -1);
}

static void print_footer(uint64_t failed)
{
    if (rank != 0) return;
    printf("# Out of bounds values : %llu %s\n", (unsigned long long)failed, failed ? "FAILED" : "OK");
    printf("# Avg bus bandwidth    : %g \n", busbw_n ? busbw_sum / busbw_n : 0.0);
    printf("#\n");
    fflush(stdout);
}

/* ---- main ---- */

static size_t next_size(size_t bytes)
{
    if (opt.factor == 0) return bytes + opt.incr;
    double next = (double)bytes * opt.factor;
    if (next > (double)(SIZE_MAX / 2)) return SIZE_MAX;
    return (size_t)next > bytes ? (size_t)next : bytes + 1;   /* from 0, or a small factor */
}

/* Returns the number of wrong elements (over ranks and both placements). */
static uint64_t run_size(struct bufs *b, size_t bytes)
{
    set_size(b, bytes);
    print_row_start(b);
    uint64_t wrong = 0;
    for (int in_place = 0; in_place < 2; in_place++) {
        struct result res = measure(b, in_place);
        print_result(b, &res);
        wrong += res.wrong;
    }
    if (rank == 0) {
        printf("\n");
        fflush(stdout);
    }
    return wrong;
}

static void join(void)
{
    if (loom_comm_init_env(&comm) != LOOM_SUCCESS) {
        fprintf(stderr, "loom-perf: cannot start: %s\n", loom_last_error(NULL));
        exit(1);
    }
    rank = loom_comm_rank(comm);
    nranks = loom_comm_size(comm);
    if (has_root() && opt.root >= nranks) {
        if (rank == 0) fprintf(stderr, "loom-perf: -R %d is not a rank of %d\n", opt.root, nranks);
        loom_comm_destroy(comm);
        exit(2);
    }
}

int main(int argc, char **argv)
{
    parse_args(argc, argv);
    join();
    setup_pattern();
    setup_block();
    struct bufs b;
    alloc_bufs(&b);
    print_header();

    uint64_t wrong = 0;
    for (size_t bytes = opt.min_bytes; bytes <= opt.max_bytes; bytes = next_size(bytes)) {
        wrong += run_size(&b, bytes);   /* sizes stay below SIZE_MAX / 4: no wrap */
    }
    print_footer(sum_over_ranks(failed_checks));

    if (opt.gpu) gpu_free(&b);
    free(b.send);
    free(b.recv);
    free(blk);
    free(pat.val);
    free(pat.red);
    if (loom_comm_destroy(comm) != LOOM_SUCCESS)
        fprintf(stderr, "loom-perf: rank %d: loom_comm_destroy: %s\n", rank, loom_last_error(NULL));
    return wrong ? 1 : 0;
}
