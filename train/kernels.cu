// kernels.cu: the CUDA backend's element-wise kernels (tensor_cuda.c holds the rest).
// The per-element math is tensor.h's, shared with the CPU backend; reductions run in the
// CPU backend's order (a bias gradient sums rows first to last), so the two backends
// differ only where the math library does (tanhf, expf, logf; cuBLAS's sgemm).
#include <cuda_runtime.h>

#include "tensor.h"   // only its inline math and enums are used here

namespace {

constexpr int kThreads = 256;

unsigned blocks_for(size_t n) { return (unsigned)((n + kThreads - 1) / kThreads); }

__global__ void add_bias(float *y, const float *b, int rows, int cols)
{
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < (size_t)rows * cols) y[i] += b[i % cols];
}

__global__ void bias_grad(float *db, const float *dy, int rows, int cols)
{
    int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= cols) return;
    float s = db[j];
    for (int i = 0; i < rows; i++) s += dy[(size_t)i * cols + j];
    db[j] = s;
}

__global__ void act_fwd(act_kind k, float *y, const float *z, size_t n)
{
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = act_value(k, z[i]);
}

__global__ void act_bwd(act_kind k, float *dz, const float *dy, const float *z, size_t n)
{
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) dz[i] = act_grad(k, z[i], dy[i]);
}

// One thread per row (rows are a micro-batch, cols the classes): tensor.h's xent_row, as on the CPU.
__global__ void xent(const float *logits, const int *labels, int rows, int cols, float scale,
                     float *dlogits, float *loss, int *ok)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= rows) return;
    loss[i] = xent_row(logits + (size_t)i * cols, cols, labels[i], scale,
                       dlogits ? dlogits + (size_t)i * cols : NULL, &ok[i]);
}

__global__ void sgd(float *p, const float *g, float *v, size_t n, float lr, float mu)
{
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) sgd_one(&p[i], g[i], &v[i], lr, mu);
}

__global__ void adamw(float *p, const float *g, float *m, float *v, size_t n, float lr, float b1,
                      float b2, float eps, float wd, float bc1, float bc2)
{
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) adamw_one(&p[i], g[i], &m[i], &v[i], lr, b1, b2, eps, wd, bc1, bc2);
}

}  // namespace

// Launchers for tensor_cuda.c: all on the legacy default stream, which orders them
// with cuBLAS (bound to it) and with loom's per-communicator streams (created
// blocking, so they wait for it).
extern "C" {

void train_cuda_add_bias(float *y, const float *b, int rows, int cols)
{
    size_t n = (size_t)rows * cols;
    if (n) add_bias<<<blocks_for(n), kThreads>>>(y, b, rows, cols);
}

void train_cuda_bias_grad(float *db, const float *dy, int rows, int cols)
{
    if (cols) bias_grad<<<blocks_for((size_t)cols), kThreads>>>(db, dy, rows, cols);
}

void train_cuda_act_fwd(enum act_kind k, float *y, const float *z, size_t n)
{
    if (n) act_fwd<<<blocks_for(n), kThreads>>>(k, y, z, n);
}

void train_cuda_act_bwd(enum act_kind k, float *dz, const float *dy, const float *z, size_t n)
{
    if (n) act_bwd<<<blocks_for(n), kThreads>>>(k, dz, dy, z, n);
}

void train_cuda_xent(const float *logits, const int *labels, int rows, int cols, float scale,
                     float *dlogits, float *loss, int *ok)
{
    if (rows) xent<<<blocks_for((size_t)rows), kThreads>>>(logits, labels, rows, cols, scale, dlogits, loss, ok);
}

void train_cuda_sgd(float *p, const float *g, float *v, size_t n, float lr, float mu)
{
    if (n) sgd<<<blocks_for(n), kThreads>>>(p, g, v, n, lr, mu);
}

void train_cuda_adamw(float *p, const float *g, float *m, float *v, size_t n, float lr, float b1,
                      float b2, float eps, float wd, float bc1, float bc2)
{
    if (n) adamw<<<blocks_for(n), kThreads>>>(p, g, m, v, n, lr, b1, b2, eps, wd, bc1, bc2);
}

}  // extern "C"
