/* tensor_cuda.c: the CUDA backend: device memory, cuBLAS sgemm, and kernels.cu.
 *
 * cuBLAS is opened at run time (dlopen), not linked: loom-train then starts on machines
 * without CUDA and uses the CPU backend there, while --device cuda finds the cuBLAS
 * that the CUDA toolkit or driver installation provides. A CUDA failure in the middle
 * of training is fatal: the rank prints it and exits (its launcher stops the others).
 */
#include "tensor.h"

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>

void train_cuda_add_bias(float *y, const float *b, int rows, int cols);
void train_cuda_bias_grad(float *db, const float *dy, int rows, int cols);
void train_cuda_act_fwd(enum act_kind k, float *y, const float *z, size_t n);
void train_cuda_act_bwd(enum act_kind k, float *dz, const float *dy, const float *z, size_t n);
void train_cuda_xent(const float *logits, const int *labels, int rows, int cols, float scale,
                     float *dlogits, float *loss, int *ok);
void train_cuda_sgd(float *p, const float *g, float *v, size_t n, float lr, float mu);
void train_cuda_adamw(float *p, const float *g, float *m, float *v, size_t n, float lr, float b1,
                      float b2, float eps, float wd, float bc1, float bc2);

typedef cublasStatus_t (*create_fn)(cublasHandle_t *);
typedef cublasStatus_t (*sgemm_fn)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int,
                                   int, const float *, const float *, int, const float *, int,
                                   const float *, float *, int);
static cublasHandle_t blas;
static sgemm_fn sgemm;

static void check(cudaError_t e, const char *what)
{
    if (e == cudaSuccess) return;
    fprintf(stderr, "loom-train: CUDA: %s: %s\n", what, cudaGetErrorString(e));
    exit(1);
}

static void launched(const char *what) { check(cudaGetLastError(), what); }

static float *cu_alloc(size_t n)
{
    void *p = NULL;
    if (cudaMalloc(&p, (n ? n : 1) * sizeof(float)) != cudaSuccess) return NULL;
    check(cudaMemset(p, 0, (n ? n : 1) * sizeof(float)), "cudaMemset");
    return p;
}

static void cu_release(float *p) { cudaFree(p); }
static void cu_to_dev(float *d, const float *h, size_t n) { check(cudaMemcpy(d, h, n * 4, cudaMemcpyHostToDevice), "to device"); }
static void cu_to_host(float *h, const float *d, size_t n) { check(cudaMemcpy(h, d, n * 4, cudaMemcpyDeviceToHost), "to host"); }
static void cu_copy(float *d, const float *s, size_t n) { if (d != s) check(cudaMemcpy(d, s, n * 4, cudaMemcpyDeviceToDevice), "copy"); }
static void cu_zero(float *p, size_t n) { check(cudaMemset(p, 0, n * 4), "zero"); }
static void cu_sync(void) { check(cudaDeviceSynchronize(), "a kernel"); }

/* Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: swap the operands. */
static void cu_gemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
                    const float *B, int ldb, float beta, float *C, int ldc)
{
    if (M == 0 || N == 0) return;
    cublasStatus_t s = sgemm(blas, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N,
                             N, M, K, &alpha, B, ldb, A, lda, &beta, C, ldc);
    if (s != CUBLAS_STATUS_SUCCESS) {
        fprintf(stderr, "loom-train: cublasSgemm failed with status %d\n", (int)s);
        exit(1);
    }
}

static void cu_add_bias(float *Y, const float *b, int rows, int cols) { train_cuda_add_bias(Y, b, rows, cols); launched("add_bias"); }
static void cu_bias_grad(float *db, const float *dY, int rows, int cols) { train_cuda_bias_grad(db, dY, rows, cols); launched("bias_grad"); }
static void cu_act_fwd(enum act_kind k, float *Y, const float *Z, size_t n) { train_cuda_act_fwd(k, Y, Z, n); launched("act_fwd"); }
static void cu_act_bwd(enum act_kind k, float *dZ, const float *dY, const float *Z, size_t n) { train_cuda_act_bwd(k, dZ, dY, Z, n); launched("act_bwd"); }
static void cu_sgd(float *p, const float *g, float *v, size_t n, float lr, float mu) { train_cuda_sgd(p, g, v, n, lr, mu); launched("sgd"); }

static void cu_adamw(float *p, const float *g, float *m, float *v, size_t n, float lr, float b1,
                     float b2, float eps, float wd, float bc1, float bc2)
{
    train_cuda_adamw(p, g, m, v, n, lr, b1, b2, eps, wd, bc1, bc2);
    launched("adamw");
}

/* Labels go to the device, per-row losses and hits come back; the host sums them in
   the CPU backend's order. */
static double cu_xent(const float *logits, const int *labels, int rows, int cols, float scale,
                      float *dlogits, int *correct)
{
    static int cap;
    static int *dlab, *dok, *hok;
    static float *dloss, *hloss;
    if (rows > cap) {
        cudaFree(dlab), cudaFree(dok), cudaFree(dloss), free(hok), free(hloss);
        cap = rows;
        check(cudaMalloc((void **)&dlab, sizeof(int) * cap), "cudaMalloc");
        check(cudaMalloc((void **)&dok, sizeof(int) * cap), "cudaMalloc");
        check(cudaMalloc((void **)&dloss, sizeof(float) * cap), "cudaMalloc");
        hok = malloc(sizeof(int) * cap);
        hloss = malloc(sizeof(float) * cap);
        if (!hok || !hloss) check(cudaErrorMemoryAllocation, "host buffers");
    }
    check(cudaMemcpy(dlab, labels, sizeof(int) * rows, cudaMemcpyHostToDevice), "labels");
    train_cuda_xent(logits, dlab, rows, cols, scale, dlogits, dloss, dok);
    launched("xent");
    check(cudaMemcpy(hloss, dloss, sizeof(float) * rows, cudaMemcpyDeviceToHost), "losses");
    check(cudaMemcpy(hok, dok, sizeof(int) * rows, cudaMemcpyDeviceToHost), "hits");
    double loss = 0;
    int ok = 0;
    for (int i = 0; i < rows; i++) loss += (double)hloss[i], ok += hok[i];
    *correct = ok;
    return loss;
}

const struct backend *backend_cuda(int device, char *err, size_t errlen)
{
    static const struct backend b = {
        .dev = DEV_CUDA, .name = "cuda (cuBLAS sgemm)", .alloc = cu_alloc, .release = cu_release,
        .to_dev = cu_to_dev, .to_host = cu_to_host, .copy = cu_copy, .zero = cu_zero,
        .gemm = cu_gemm, .add_bias = cu_add_bias, .bias_grad = cu_bias_grad,
        .act_fwd = cu_act_fwd, .act_bwd = cu_act_bwd, .xent = cu_xent, .sgd = cu_sgd,
        .adamw = cu_adamw, .sync = cu_sync,
    };
    if (blas) return &b;
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n == 0) {
        snprintf(err, errlen, "no CUDA device (%s)", e != cudaSuccess ? cudaGetErrorString(e) : "none found");
        return NULL;
    }
    if ((e = cudaSetDevice(device % n)) != cudaSuccess) {
        snprintf(err, errlen, "cudaSetDevice(%d): %s", device % n, cudaGetErrorString(e));
        return NULL;
    }
    const char *libs[] = { "libcublas.so", "libcublas.so.13", "libcublas.so.12" };
    void *h = NULL;
    for (size_t i = 0; i < sizeof libs / sizeof *libs && !h; i++) h = dlopen(libs[i], RTLD_NOW);
    create_fn create = h ? (create_fn)dlsym(h, "cublasCreate_v2") : NULL;
    sgemm = h ? (sgemm_fn)dlsym(h, "cublasSgemm_v2") : NULL;
    if (!create || !sgemm) {
        snprintf(err, errlen, "cannot load cuBLAS (%s); put the CUDA toolkit's lib64 on LD_LIBRARY_PATH",
                 h ? "symbols missing" : dlerror());
        return NULL;
    }
    cublasStatus_t s = create(&blas);
    if (s != CUBLAS_STATUS_SUCCESS) {
        snprintf(err, errlen, "cublasCreate failed with status %d", (int)s);
        blas = NULL;
        return NULL;
    }
    return &b;
}
