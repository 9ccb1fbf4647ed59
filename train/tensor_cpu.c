/* tensor_cpu.c: the CPU backend: OpenBLAS sgemm (a plain loop where OpenBLAS is not
 * built in, so the trainer still builds on a machine with only a C compiler) and
 * element-wise loops. Deterministic: the same inputs give the same bits on every rank. */
#include "tensor.h"

#include <float.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef LOOM_HAVE_OPENBLAS
#include <cblas.h>
#endif

static float *cpu_alloc(size_t n)
{
    void *p = NULL;
    if (posix_memalign(&p, 64, (n ? n : 1) * sizeof(float))) return NULL;
    memset(p, 0, (n ? n : 1) * sizeof(float));
    return p;
}

static void cpu_release(float *p) { free(p); }
static void cpu_copy(float *dst, const float *src, size_t n) { if (dst != src) memmove(dst, src, n * sizeof *dst); }
static void cpu_zero(float *p, size_t n) { memset(p, 0, n * sizeof *p); }
static void cpu_sync(void) {}

static void cpu_gemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
                     const float *B, int ldb, float beta, float *C, int ldc)
{
#ifdef LOOM_HAVE_OPENBLAS
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
#else
    for (int i = 0; i < M; i++) {
        float *c = C + (size_t)i * ldc;
        for (int j = 0; j < N; j++) c[j] = beta == 0.0f ? 0.0f : beta * c[j];
        for (int k = 0; k < K; k++) {
            float a = alpha * (ta ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k]);
            if (tb)
                for (int j = 0; j < N; j++) c[j] += a * B[(size_t)j * ldb + k];
            else
                for (int j = 0; j < N; j++) c[j] += a * B[(size_t)k * ldb + j];
        }
    }
#endif
}

static void cpu_add_bias(float *Y, const float *b, int rows, int cols)
{
    for (int i = 0; i < rows; i++)
        for (int j = 0; j < cols; j++) Y[(size_t)i * cols + j] += b[j];
}

static void cpu_bias_grad(float *db, const float *dY, int rows, int cols)
{
    for (int i = 0; i < rows; i++)
        for (int j = 0; j < cols; j++) db[j] += dY[(size_t)i * cols + j];
}

static void cpu_act_fwd(enum act_kind k, float *Y, const float *Z, size_t n)
{
    for (size_t i = 0; i < n; i++) Y[i] = act_value(k, Z[i]);
}

static void cpu_act_bwd(enum act_kind k, float *dZ, const float *dY, const float *Z, size_t n)
{
    for (size_t i = 0; i < n; i++) dZ[i] = act_grad(k, Z[i], dY[i]);
}

static double cpu_xent(const float *logits, const int *labels, int rows, int cols, float scale,
                       float *dlogits, int *correct)
{
    double loss = 0;
    int ok = 0;
    for (int i = 0; i < rows; i++) {
        int hit;
        loss += (double)xent_row(logits + (size_t)i * cols, cols, labels[i], scale,
                                 dlogits ? dlogits + (size_t)i * cols : NULL, &hit);
        ok += hit;
    }
    *correct = ok;
    return loss;
}

/* restrict (the trainer never aliases parameters, gradients and state) and
   -fno-math-errno (meson.build) let these loops vectorise: AdamW over a 1.2 M-weight
   model went from about a quarter of a 2-rank step to a small part of it. */
static void cpu_sgd(float *restrict p, const float *restrict g, float *restrict v, size_t n,
                    float lr, float mu)
{
    for (size_t i = 0; i < n; i++) sgd_one(&p[i], g[i], &v[i], lr, mu);
}

static void cpu_adamw(float *restrict p, const float *restrict g, float *restrict m,
                      float *restrict v, size_t n, float lr, float b1, float b2, float eps,
                      float wd, float bc1, float bc2)
{
    for (size_t i = 0; i < n; i++) adamw_one(&p[i], g[i], &m[i], &v[i], lr, b1, b2, eps, wd, bc1, bc2);
}

const struct backend *backend_cpu(void)
{
    static const struct backend b = {
        .dev = DEV_CPU,
#ifdef LOOM_HAVE_OPENBLAS
        .name = "cpu (OpenBLAS sgemm)",
#else
        .name = "cpu (plain C gemm: OpenBLAS not built in)",
#endif
        .alloc = cpu_alloc, .release = cpu_release, .to_dev = cpu_copy, .to_host = cpu_copy,
        .copy = cpu_copy, .zero = cpu_zero, .gemm = cpu_gemm, .add_bias = cpu_add_bias,
        .bias_grad = cpu_bias_grad, .act_fwd = cpu_act_fwd, .act_bwd = cpu_act_bwd,
        .xent = cpu_xent, .sgd = cpu_sgd, .adamw = cpu_adamw, .sync = cpu_sync,
    };
    return &b;
}

#ifndef TRAIN_HAVE_CUDA
const struct backend *backend_cuda(int device, char *err, size_t errlen)
{
    (void)device;
    snprintf(err, errlen, "this loom-train was built without CUDA (meson found no nvcc/cuBLAS)");
    return NULL;
}
#endif
