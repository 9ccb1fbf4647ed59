/* gpu-kernels: the memory limits of one GPU, and loom's reduction kernel against them.
 *   gpu-kernels [MAXBYTES]      (default 1G)
 * For sizes from 16 MiB to MAXBYTES (x4): the device-to-device copy (cudaMemcpyAsync)
 * and loom's reduction kernel alone (exec_cuda_reduce: d = a op b, the kernel the
 * collectives reduce with) for float32, bfloat16, float16 and float64 sum. Each is
 * timed with CUDA events over 20 runs after 3 warm-ups, rotating over 3 buffer sets
 * (so no run finds its inputs in L2), median printed as HBM bandwidth: bytes read plus
 * bytes written per second (copy 2n, reduce 3n), GB/s = 1e9 B/s. The last column is
 * the reduction's share of the copy's bandwidth at the same size. Inputs are random;
 * a sample of every reduction is checked against the host's reduce_buf bit for bit.
 * Uses loom's internal exec_cuda_reduce and reduce_buf (exported by libloom). */
#include <cuda_runtime_api.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "exec_cuda.h"
#include "loom.h"
#include "reduce.h"
#include "cli.h"
#include "size.h"

#define CK(call) do { cudaError_t e_ = (call); if (e_ != cudaSuccess) { \
    fprintf(stderr, "gpu-kernels: %s: %s\n", #call, cudaGetErrorString(e_)); exit(1); } } while (0)
#define SETS 3
#define RUNS 20

static int cmp(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* median ms of RUNS runs of what(set) */
static float time_it(int kind, size_t n, loom_dtype_t dt, char **A, char **B, char **D, cudaStream_t s)
{
    cudaEvent_t e0, e1;
    float ms[RUNS];
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    for (int i = -3; i < RUNS; i++) {
        int k = (i + 3) % SETS;
        CK(cudaEventRecord(e0, s));
        if (kind == 0) CK(cudaMemcpyAsync(D[k], A[k], n, cudaMemcpyDeviceToDevice, s));
        else CK((cudaError_t)exec_cuda_reduce(D[k], A[k], B[k], n / loom_dtype_size(dt), dt, LOOM_SUM, s));
        CK(cudaEventRecord(e1, s));
        CK(cudaEventSynchronize(e1));
        if (i >= 0) CK(cudaEventElapsedTime(&ms[i], e0, e1));
    }
    qsort(ms, RUNS, sizeof *ms, cmp);
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    return ms[RUNS / 2];
}

static void help(FILE *f)
{
    fprintf(f, "usage: gpu-kernels [MAXBYTES]   (default 1G; K, M, G suffixes)\n"
               "  device copy and loom's reduction kernel on GPU 0, 16 MiB to MAXBYTES, as HBM GB/s\n");
}

int main(int argc, char **argv)
{
    cli_scan(argc, argv, "gpu-kernels", help, 0);
    size_t max = (size_t)1 << 30;
    if (argc > 1 && !bench_size(argv[1], &max)) {
        fprintf(stderr, "gpu-kernels: bad size '%s' (digits, then an optional K, M or G)\n", argv[1]);
        return 2;
    }
    struct cudaDeviceProp p;
    CK(cudaGetDeviceProperties(&p, 0));
    printf("# gpu-kernels: %s, %d SMs, L2 %d MiB\n", p.name, p.multiProcessorCount, p.l2CacheSize >> 20);
    char *A[SETS], *B[SETS], *D[SETS];
    unsigned char *h = malloc(max), *g = malloc(max), *want = malloc(1 << 22);
    if (!h || !g || !want) return 1;
    uint64_t x = 88172645463325252ull;
    for (size_t i = 0; i < max; i += 8) {   /* xorshift: random bits, small enough floats */
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        uint64_t v = x & 0x3f7f3f7f3f7f3f7full;   /* exponents kept below inf/nan */
        memcpy(h + i, &v, max - i < 8 ? max - i : 8);
    }
    for (int k = 0; k < SETS; k++) {
        CK(cudaMalloc((void **)&A[k], max));
        CK(cudaMalloc((void **)&B[k], max));
        CK(cudaMalloc((void **)&D[k], max));
        CK(cudaMemcpy(A[k], h, max, cudaMemcpyHostToDevice));
        CK(cudaMemcpy(B[k], h + 8 * (k + 1), max - 64, cudaMemcpyHostToDevice));
    }
    cudaStream_t s;
    CK(cudaStreamCreate(&s));
    const loom_dtype_t dts[] = { LOOM_FLOAT32, LOOM_BFLOAT16, LOOM_FLOAT16, LOOM_FLOAT64 };
    printf("# %10s  %9s  %10s  %10s  %8s\n", "size(B)", "dtype", "copy GB/s", "reduce GB/s", "of copy");
    int bad = 0;
    for (size_t n = 16u << 20; n <= max; n *= 4) {
        float cms = time_it(0, n, LOOM_FLOAT32, A, B, D, s);
        double copy = 2.0 * (double)n / (cms * 1e-3) / 1e9;
        for (int t = 0; t < 4; t++) {
            float rms = time_it(1, n, dts[t], A, B, D, s);
            double red = 3.0 * (double)n / (rms * 1e-3) / 1e9;
            printf("  %10zu  %9s  %10.0f  %10.0f  %7.1f%%\n", n, loom_dtype_name(dts[t]), copy, red, 100 * red / copy);
            /* check the first 4 MiB of set 0 against the host */
            size_t m = n < (1u << 22) ? n : (1u << 22), e = loom_dtype_size(dts[t]);
            CK((cudaError_t)exec_cuda_reduce(D[0], A[0], B[0], n / e, dts[t], LOOM_SUM, s));
            CK(cudaStreamSynchronize(s));
            CK(cudaMemcpy(g, D[0], m, cudaMemcpyDeviceToHost));
            reduce_buf(want, h, h + 8, m / e, dts[t], LOOM_SUM);
            if (memcmp(g, want, m) != 0) {
                printf("# WRONG: %s reduction differs from the host's\n", loom_dtype_name(dts[t]));
                bad = 1;
            }
        }
    }
    fflush(stdout);
    return bad;
}
