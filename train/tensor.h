/* tensor.h: the few tensor operations an MLP trainer needs, over two backends.
 *
 * Everything is float32, row-major, in memory of the backend's device (host memory for
 * the CPU backend, device memory for CUDA). The trainer above calls only these entry
 * points, so one code path trains on either backend. A matrix is a plain pointer plus
 * its shape at the call: the trainer owns every buffer and knows every shape.
 */
#ifndef LOOM_TRAIN_TENSOR_H
#define LOOM_TRAIN_TENSOR_H

#include <stddef.h>

enum act_kind { ACT_RELU, ACT_GELU };
enum device_kind { DEV_CPU, DEV_CUDA };

struct backend {
    enum device_kind dev;
    const char *name;                       /* "cpu (OpenBLAS)", "cuda (cuBLAS)", ...      */
    float *(*alloc)(size_t n);               /* n floats, zeroed; NULL when out of memory  */
    void (*release)(float *p);
    void (*to_dev)(float *dst, const float *host, size_t n);
    void (*to_host)(float *host, const float *src, size_t n);
    void (*copy)(float *dst, const float *src, size_t n);
    void (*zero)(float *p, size_t n);
    /* C[M x N] = alpha op(A) op(B) + beta C; op(A) is M x K, op(B) is K x N; lda, ldb,
       ldc are the row strides of A, B, C as stored. */
    void (*gemm)(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A,
                 int lda, const float *B, int ldb, float beta, float *C, int ldc);
    void (*add_bias)(float *Y, const float *b, int rows, int cols);       /* Y[i,:] += b */
    void (*bias_grad)(float *db, const float *dY, int rows, int cols);    /* db += sum_i dY[i,:] */
    void (*act_fwd)(enum act_kind k, float *Y, const float *Z, size_t n);
    void (*act_bwd)(enum act_kind k, float *dZ, const float *dY, const float *Z, size_t n);
    /* Softmax cross-entropy of rows x cols logits against labels (host array). Writes
       dlogits = (softmax - onehot) * scale (unless dlogits is NULL) and returns the sum
       of the rows' losses; *correct gets the number of rows whose argmax is the label. */
    double (*xent)(const float *logits, const int *labels, int rows, int cols, float scale,
                   float *dlogits, int *correct);
    /* p -= lr (v = mu v + g) */
    void (*sgd)(float *p, const float *g, float *v, size_t n, float lr, float mu);
    /* AdamW with decoupled weight decay; bc1 = 1 - beta1^t, bc2 = 1 - beta2^t */
    void (*adamw)(float *p, const float *g, float *m, float *v, size_t n, float lr, float b1,
                  float b2, float eps, float wd, float bc1, float bc2);
    void (*sync)(void);                      /* wait for queued device work */
};

const struct backend *backend_cpu(void);
/* NULL (and a message in err) when CUDA is not built in or no GPU can be used. */
const struct backend *backend_cuda(int device, char *err, size_t errlen);

/* The element-wise math both backends share (the CUDA kernels include this header),
   so they cannot drift apart. GELU is the tanh approximation. */
#ifdef __CUDACC__
#define TRAIN_HD __host__ __device__ static inline
#else
#define TRAIN_HD static inline
#endif
#include <math.h>

TRAIN_HD float act_value(enum act_kind k, float z)
{
    if (k == ACT_RELU) return z > 0.0f ? z : 0.0f;
    float u = 0.7978845608028654f * (z + 0.044715f * z * z * z);
    return 0.5f * z * (1.0f + tanhf(u));
}

/* d act(z) / dz times dy */
TRAIN_HD float act_grad(enum act_kind k, float z, float dy)
{
    if (k == ACT_RELU) return z > 0.0f ? dy : 0.0f;
    float u = 0.7978845608028654f * (z + 0.044715f * z * z * z);
    float t = tanhf(u);
    float du = 0.7978845608028654f * (1.0f + 3.0f * 0.044715f * z * z);
    return dy * (0.5f * (1.0f + t) + 0.5f * z * (1.0f - t * t) * du);
}

/* Softmax cross-entropy of one row of logits z against label: returns the row's loss,
   sets *hit when the argmax is the label, and (unless dz is NULL) writes
   dz = (softmax - onehot) * scale. */
TRAIN_HD float xent_row(const float *z, int cols, int label, float scale, float *dz, int *hit)
{
    int arg = 0;
    for (int j = 1; j < cols; j++)
        if (z[j] > z[arg]) arg = j;
    float mx = z[arg], sum = 0.0f;
    for (int j = 0; j < cols; j++) sum += expf(z[j] - mx);
    *hit = arg == label;
    if (dz)
        for (int j = 0; j < cols; j++) dz[j] = (expf(z[j] - mx) / sum - (j == label)) * scale;
    return logf(sum) + mx - z[label];
}

TRAIN_HD void sgd_one(float *p, float g, float *v, float lr, float mu)
{
    *v = mu * *v + g;
    *p -= lr * *v;
}

TRAIN_HD void adamw_one(float *p, float g, float *m, float *v, float lr, float b1, float b2,
                        float eps, float wd, float bc1, float bc2)
{
    *m = b1 * *m + (1.0f - b1) * g;
    *v = b2 * *v + (1.0f - b2) * g * g;
    float mh = *m / bc1, vh = *v / bc2;
    *p -= lr * (mh / (sqrtf(vh) + eps) + wd * *p);
}

#endif
