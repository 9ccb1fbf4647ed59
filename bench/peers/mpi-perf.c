/* mpi-perf: the Open MPI side of loom's peer comparison (issue 3).
 *
 *   mpirun -np 4 mpi-perf -o allreduce -b 8 -e 256M -f 2 -d float32
 *
 * Times MPI_Allreduce, MPI_Reduce_scatter_block, MPI_Allgather and MPI_Bcast with
 * Open MPI's default decisions, by loom-perf's method (-w warm-up calls, a barrier,
 * -n calls timed together, mean per call, max over ranks), checks one more call on
 * fresh inputs exactly, and prints loom-perf's columns so the rows line up (the
 * in-place columns use MPI_IN_PLACE). Sizes follow loom-perf: -b/-e are the bytes of
 * the "size" column; for allgather and reducescatter the count is per rank.
 * MPI has no 16-bit floats and no avg: those are refused. Not part of libloom; built
 * only when meson finds MPI.
 */
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../cli.h"
#include "../size.h"

enum coll { C_ALLREDUCE, C_REDUCESCATTER, C_ALLGATHER, C_BROADCAST, NCOLL };
static const char *coll_names[] = { "allreduce", "reducescatter", "allgather", "broadcast" };

/* loom's dtypes that MPI has, in loom's order (no float16, no bfloat16) */
static const char *dt_names[] = { "int8", "uint8", "int32", "uint32", "int64", "uint64", "float32", "float64" };
static const size_t dt_sizes[] = { 1, 1, 4, 4, 8, 8, 4, 8 };
static MPI_Datatype mpi_type(int dt)
{
    switch (dt) {
    case 0: return MPI_INT8_T;
    case 1: return MPI_UINT8_T;
    case 2: return MPI_INT32_T;
    case 3: return MPI_UINT32_T;
    case 4: return MPI_INT64_T;
    case 5: return MPI_UINT64_T;
    case 6: return MPI_FLOAT;
    default: return MPI_DOUBLE;
    }
}
static const char *op_names[] = { "sum", "prod", "max", "min" };
static MPI_Op mpi_op(int op)
{
    return op == 0 ? MPI_SUM : op == 1 ? MPI_PROD : op == 2 ? MPI_MAX : MPI_MIN;
}

static struct {
    enum coll coll;
    size_t min_bytes, max_bytes;
    double factor;
    int dt, op, iters, warmup, check;
} opt = { C_ALLREDUCE, 32 << 20, 32 << 20, 2, 6, 0, 20, 5, 1 };

static int rank, nranks;

static void help(FILE *f)
{
    fprintf(f, "usage: mpi-perf [-o allreduce|reducescatter|allgather|broadcast] [-b MIN] [-e MAX]\n"
               "                [-f FACTOR] [-d int8|uint8|int32|uint32|int64|uint64|float32|float64]\n"
               "                [-r sum|prod|max|min] [-n ITERS] [-w WARMUP] [-c 0|1]\n");
}

static void usage(const char *why)
{
    if (rank == 0) {
        fprintf(stderr, "mpi-perf: %s\n", why);
        help(stderr);
    }
    MPI_Finalize();
    exit(2);
}

static size_t parse_size(const char *s)
{
    size_t v;
    if (!bench_size(s, &v)) usage("bad size (digits, then an optional K, M or G)");
    return v;
}

static int find(const char *s, const char *const *names, int n)
{
    for (int i = 0; i < n; i++)
        if (strcmp(s, names[i]) == 0) return i;
    return -1;
}

static void parse(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        char why[96];
        snprintf(why, sizeof why, v ? "unknown option '%.60s'" : "'%.60s' needs a value", a);
        if (a[0] != '-' || a[1] == '\0' || a[2] != '\0' || v == NULL) usage(why);
        i++;
        switch (a[1]) {
        case 'o': opt.coll = (enum coll)find(v, coll_names, NCOLL); break;
        case 'b': opt.min_bytes = parse_size(v); break;
        case 'e': opt.max_bytes = parse_size(v); break;
        case 'f': opt.factor = atof(v); break;
        case 'd': opt.dt = find(v, dt_names, 8); break;
        case 'r': opt.op = find(v, op_names, 4); break;
        case 'n': opt.iters = atoi(v); break;
        case 'w': opt.warmup = atoi(v); break;
        case 'c': opt.check = atoi(v); break;
        default: usage(why);
        }
    }
    if ((int)opt.coll < 0 || opt.dt < 0 || opt.op < 0) usage("unknown collective, dtype or op");
    if (opt.factor <= 1 || opt.iters < 1 || opt.warmup < 0 || opt.max_bytes < opt.min_bytes) usage("bad numbers");
}

/* ---- values: small integers, exact in every dtype (as loom-perf) ---- */

static int64_t input(int r, size_t i)
{
    if (opt.op == 1) return (i + (size_t)r * 5) % 17 == 0 ? 2 : 1;
    return (int64_t)((i * 3 + (size_t)r * 7) % 13 + 1);
}

static void put(void *p, size_t i, int64_t v)
{
    switch (opt.dt) {
    case 0: case 1: ((uint8_t *)p)[i] = (uint8_t)v; break;
    case 2: case 3: ((uint32_t *)p)[i] = (uint32_t)v; break;
    case 4: case 5: ((uint64_t *)p)[i] = (uint64_t)v; break;
    case 6: ((float *)p)[i] = (float)v; break;
    default: ((double *)p)[i] = (double)v; break;
    }
}

static int64_t reduced(size_t i)
{
    int64_t acc = input(0, i);
    for (int q = 1; q < nranks; q++) {
        int64_t v = input(q, i);
        acc = opt.op == 0 ? acc + v : opt.op == 1 ? acc * v : opt.op == 2 ? (v > acc ? v : acc) : (v < acc ? v : acc);
    }
    return acc;
}

/* ---- one size ---- */

static double now(void) { return MPI_Wtime(); }

static void call(char *s, char *r, size_t count, int in_place)
{
    MPI_Datatype t = mpi_type(opt.dt);
    int n = (int)count;
    switch (opt.coll) {
    case C_ALLREDUCE: MPI_Allreduce(in_place ? MPI_IN_PLACE : s, r, n, t, mpi_op(opt.op), MPI_COMM_WORLD); break;
    case C_REDUCESCATTER:
        MPI_Reduce_scatter_block(in_place ? MPI_IN_PLACE : s, in_place ? s : r, n, t, mpi_op(opt.op), MPI_COMM_WORLD);
        break;
    case C_ALLGATHER: MPI_Allgather(in_place ? MPI_IN_PLACE : s, n, t, r, n, t, MPI_COMM_WORLD); break;
    case C_BROADCAST: MPI_Bcast(r, n, t, 0, MPI_COMM_WORLD); break;
    default: break;
    }
}

static void fill(char *s, char *r, size_t count, int in_place)
{
    size_t E = dt_sizes[opt.dt], total = count * (opt.coll == C_REDUCESCATTER ? (size_t)nranks : 1);
    char *src = in_place && opt.coll == C_ALLREDUCE ? r : s;
    if (opt.coll == C_ALLGATHER) src = in_place ? r + (size_t)rank * count * E : s;
    if (opt.coll == C_BROADCAST) src = r;
    for (size_t i = 0; i < total; i++) put(src, i, input(opt.coll == C_BROADCAST ? 0 : rank, i));
}

static long long check(char *s, char *r, char *want, size_t count, int in_place, size_t bufbytes)
{
    size_t E = dt_sizes[opt.dt], n = count;
    memset(r, 0xa5, bufbytes);
    fill(s, r, count, in_place);
    call(s, r, count, in_place);
    const char *got = in_place && opt.coll == C_REDUCESCATTER ? s : r;
    switch (opt.coll) {
    case C_ALLREDUCE: for (size_t i = 0; i < n; i++) put(want, i, reduced(i)); break;
    case C_REDUCESCATTER: for (size_t i = 0; i < n; i++) put(want, i, reduced((size_t)rank * n + i)); break;
    case C_ALLGATHER:
        for (int q = 0; q < nranks; q++)
            for (size_t i = 0; i < n; i++) put(want, (size_t)q * n + i, input(q, i));
        n *= (size_t)nranks;
        break;
    case C_BROADCAST: for (size_t i = 0; i < n; i++) put(want, i, input(0, i)); break;
    default: break;
    }
    long long wrong = 0, total = 0;
    for (size_t i = 0; i < n; i++) wrong += memcmp(got + i * E, want + i * E, E) != 0;
    MPI_Allreduce(&wrong, &total, 1, MPI_LONG_LONG, MPI_SUM, MPI_COMM_WORLD);
    return total;
}

int main(int argc, char **argv)
{
    cli_scan(argc, argv, "mpi-perf", help, 1);   /* before MPI_Init: nothing to finalize */
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &nranks);
    parse(argc, argv);
    int per = opt.coll == C_ALLGATHER || opt.coll == C_REDUCESCATTER;
    size_t E = dt_sizes[opt.dt], maxc = opt.max_bytes / E + 1;
    char *s = malloc(maxc * E + 64), *r = malloc(maxc * E + 64), *want = malloc(maxc * E + 64);
    if (!s || !r || !want) usage("out of memory");
    memset(s, 0, maxc * E + 64);
    memset(r, 0, maxc * E + 64);
    memset(want, 0, maxc * E + 64);
    double bus = opt.coll == C_ALLREDUCE ? 2.0 * (nranks - 1) / nranks
               : opt.coll == C_BROADCAST ? 1.0 : (double)(nranks - 1) / nranks;
    if (rank == 0) {
        printf("# mpi-perf (Open MPI, default decisions): %s  nranks %d  dtype %s  op %s  iters %d  warmup %d\n",
               coll_names[opt.coll], nranks, dt_names[opt.dt], op_names[opt.op], opt.iters, opt.warmup);
        printf("#                                                              out-of-place                       in-place          \n");
        printf("#       size         count      type   redop    root     time   algbw   busbw #wrong     time   algbw   busbw #wrong\n");
        printf("#        (B)    (elements)                               (us)  (GB/s)  (GB/s)            (us)  (GB/s)  (GB/s)       \n");
    }
    long long bad = 0;
    double sum_bw = 0;
    int rows = 0;
    for (size_t bytes = opt.min_bytes; bytes <= opt.max_bytes;) {
        size_t count = bytes / E / (per ? (size_t)nranks : 1), total = count * (per ? (size_t)nranks : 1);
        double t[2];
        long long wrong[2] = { 0, 0 };
        for (int ip = 0; ip < 2; ip++) {
            fill(s, r, count, ip);
            for (int i = 0; i < opt.warmup; i++) call(s, r, count, ip);
            MPI_Barrier(MPI_COMM_WORLD);
            double t0 = now();
            for (int i = 0; i < opt.iters; i++) call(s, r, count, ip);
            double mine = (now() - t0) / opt.iters;
            MPI_Allreduce(&mine, &t[ip], 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
            if (opt.check) wrong[ip] = check(s, r, want, count, ip, maxc * E);
            bad += wrong[ip];
        }
        if (rank == 0) {
            int reduces = opt.coll != C_ALLGATHER && opt.coll != C_BROADCAST;
            printf("%12zu  %12zu  %8s  %6s  %6d", total * E, count, dt_names[opt.dt],
                   reduces ? op_names[opt.op] : "none", opt.coll == C_BROADCAST ? 0 : -1);
            for (int ip = 0; ip < 2; ip++) {
                double algbw = (double)(total * E) / t[ip] / 1e9;
                sum_bw += algbw * bus;
                rows++;
                printf("  %8.2f  %6.2f  %6.2f  %5lld", t[ip] * 1e6, algbw, algbw * bus, wrong[ip]);
            }
            printf("\n");
            fflush(stdout);
        }
        size_t next = (size_t)((double)(bytes ? bytes : E) * opt.factor);
        if (next <= bytes) break;
        bytes = next;
    }
    if (rank == 0) {
        printf("# Out of bounds values : %lld %s\n", bad, bad ? "FAILED" : "OK");
        printf("# Avg bus bandwidth    : %g \n#\n", rows ? sum_bw / rows : 0.0);
    }
    free(s);
    free(r);
    free(want);
    MPI_Finalize();
    return bad ? 1 : 0;
}
