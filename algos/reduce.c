/* reduce.c: element-wise reductions on host memory, every dtype x op.
 *
 * One kernel per (dtype, op) generated from one macro: a plain loop the compiler
 * vectorises (-O3), in three variants so restrict stays true when dst aliases an
 * input exactly (dst == a, dst == b, or neither). Integer sum and prod wrap (done in
 * the unsigned type). max/min are `a > b ? a : b` / `a < b ? a : b`, the semantics of
 * x86 maxps/minps: a NaN in b propagates, a NaN in a does not.
 * float16 and bfloat16 are converted to float in blocks of 256, reduced by the float
 * kernel and rounded back to nearest even. avg reduces as sum; reduce_div divides.
 * Not here: choosing what to reduce (schedules) or device memory (reduce.cu, later).
 */
#include "reduce.h"

#include <stdbool.h>
#include <string.h>

typedef void (*kernel_fn)(void *dst, const void *a, const void *b, size_t n);

/* ---- half and bfloat16 conversions ---- */

static inline float h2f(uint16_t h)
{
    /* Place the 15 magnitude bits in a float and rescale by 2^112: normals and
       subnormals come out exact; all-ones exponents (inf, NaN) get float's. */
    uint32_t u = (uint32_t)(h & 0x7fff) << 13;
    float f;
    memcpy(&f, &u, 4);
    f *= 0x1p112f;
    memcpy(&u, &f, 4);
    if ((h & 0x7c00) == 0x7c00) u |= 0x7f800000u;
    u |= (uint32_t)(h & 0x8000) << 16;
    memcpy(&f, &u, 4);
    return f;
}

static inline uint16_t f2h(float f)
{
    /* Every case is computed and one is selected, so loops over it vectorise. */
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000;
    x &= 0x7fffffffu;
    /* normal: rebias the exponent by -112, round to nearest even at bit 13 */
    uint32_t norm = (x + 0xc8000fffu + ((x >> 13) & 1)) >> 13;
    /* below 2^-14 (subnormal or zero): adding 0.5 leaves round(|f| * 2^24), to
       nearest even by the FPU, in the low mantissa bits of a float in [0.5, 1) */
    float v;
    memcpy(&v, &x, 4);
    v += 0.5f;
    uint32_t sub;
    memcpy(&sub, &v, 4);
    sub -= 0x3f000000u;
    uint32_t h = x < 0x38800000u ? sub : norm;
    h = x >= 0x477ff000u ? 0x7c00u : h;                       /* >= 65520: inf */
    h = x > 0x7f800000u ? (0x7e00u | ((x >> 13) & 0x3ff)) : h; /* NaN stays quiet */
    return (uint16_t)(h | sign);
}

static inline float bf2f(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline uint16_t f2bf(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t r = (x + 0x7fffu + ((x >> 16) & 1)) >> 16;
    return (uint16_t)((x & 0x7fffffffu) > 0x7f800000u ? (x >> 16) | 0x40 : r);   /* NaN: quiet */
}

/* Exported for tests and tools; the loops below use the inline versions (calls
   into a shared library's exported symbols are not inlined). */
float loom_half_to_float(uint16_t h) { return h2f(h); }
uint16_t loom_float_to_half(float f) { return f2h(f); }
float loom_bf16_to_float(uint16_t h) { return bf2f(h); }
uint16_t loom_float_to_bf16(float f) { return f2bf(f); }

/* ---- native kernels ---- */

#define OP_SUM(T, U, x, y)  ((T)((U)(x) + (U)(y)))
#define OP_PROD(T, U, x, y) ((T)((U)(x) * (U)(y)))
#define OP_MAX(T, U, x, y)  ((x) > (y) ? (x) : (y))
#define OP_MIN(T, U, x, y)  ((x) < (y) ? (x) : (y))

#define KERNEL(name, T, U, OP)                                                                \
    static void name##_3(T *restrict d, const T *restrict a, const T *restrict b, size_t n)  \
    { for (size_t i = 0; i < n; i++) d[i] = OP(T, U, a[i], b[i]); }                          \
    static void name##_da(T *restrict d, const T *restrict b, size_t n)                      \
    { for (size_t i = 0; i < n; i++) d[i] = OP(T, U, d[i], b[i]); }                          \
    static void name##_db(T *restrict d, const T *restrict a, size_t n)                      \
    { for (size_t i = 0; i < n; i++) d[i] = OP(T, U, a[i], d[i]); }                          \
    static void name(void *d, const void *a, const void *b, size_t n)                         \
    {                                                                                          \
        if (d == a && d == b) name##_self(d, n);                                               \
        else if (d == a) name##_da(d, b, n);                                                   \
        else if (d == b) name##_db(d, a, n);                                                   \
        else name##_3(d, a, b, n);                                                             \
    }

/* d == a == b (x op x): no restrict possible, and rare; a plain loop. */
#define SELF(name, T, U, OP)                                                                  \
    static void name##_self(void *d_, size_t n)                                               \
    { T *d = d_; for (size_t i = 0; i < n; i++) d[i] = OP(T, U, d[i], d[i]); }

#define KERNELS(tn, T, U)                                                                     \
    SELF(tn##_sum, T, U, OP_SUM) KERNEL(tn##_sum, T, U, OP_SUM)                               \
    SELF(tn##_prod, T, U, OP_PROD) KERNEL(tn##_prod, T, U, OP_PROD)                           \
    SELF(tn##_max, T, U, OP_MAX) KERNEL(tn##_max, T, U, OP_MAX)                               \
    SELF(tn##_min, T, U, OP_MIN) KERNEL(tn##_min, T, U, OP_MIN)

KERNELS(i8, int8_t, uint8_t)
KERNELS(u8, uint8_t, uint8_t)
KERNELS(i32, int32_t, uint32_t)
KERNELS(u32, uint32_t, uint32_t)
KERNELS(i64, int64_t, uint64_t)
KERNELS(u64, uint64_t, uint64_t)
KERNELS(f32, float, float)
KERNELS(f64, double, double)

/* Indexed [dtype][op]; avg uses sum. NULL rows: the 16-bit floats (below). */
#define ROW(tn) { tn##_sum, tn##_prod, tn##_max, tn##_min, tn##_sum }
static const kernel_fn kernels[LOOM_NUM_DTYPES][LOOM_NUM_OPS] = {
    [LOOM_INT8] = ROW(i8),   [LOOM_UINT8] = ROW(u8),   [LOOM_INT32] = ROW(i32),
    [LOOM_UINT32] = ROW(u32), [LOOM_INT64] = ROW(i64), [LOOM_UINT64] = ROW(u64),
    [LOOM_FLOAT32] = ROW(f32), [LOOM_FLOAT64] = ROW(f64),
};

/* ---- 16-bit floats: through float, 256 elements at a time ---- */

#define BLOCK 256

static inline __attribute__((always_inline)) void to_float(float *out, const uint16_t *in, size_t n, bool bf)
{
    if (bf) for (size_t i = 0; i < n; i++) out[i] = bf2f(in[i]);
    else    for (size_t i = 0; i < n; i++) out[i] = h2f(in[i]);
}

static inline __attribute__((always_inline)) void from_float(uint16_t *out, const float *in, size_t n, bool bf)
{
    if (bf) for (size_t i = 0; i < n; i++) out[i] = f2bf(in[i]);
    else    for (size_t i = 0; i < n; i++) out[i] = f2h(in[i]);
}

/* The 16-bit paths need 32->16-bit packing, which baseline x86-64 (SSE2) lacks:
   they are cloned for AVX2 and picked at load time (ifunc), plain code elsewhere. */
#if defined(__x86_64__) && defined(__GNUC__)
#define CLONES __attribute__((target_clones("avx2", "default")))
#else
#define CLONES
#endif

CLONES static void reduce16(uint16_t *d, const uint16_t *a, const uint16_t *b, size_t n, loom_op_t op, bool bf)
{
    float fa[BLOCK], fb[BLOCK];
    kernel_fn k = kernels[LOOM_FLOAT32][op];
    for (size_t i = 0; i < n; i += BLOCK) {
        size_t m = n - i < BLOCK ? n - i : BLOCK;
        to_float(fa, a + i, m, bf);
        to_float(fb, b + i, m, bf);
        k(fa, fa, fb, m);
        from_float(d + i, fa, m, bf);
    }
}

/* ---- entry points ---- */

void reduce_buf(void *dst, const void *a, const void *b, size_t count, loom_dtype_t dt, loom_op_t op)
{
    if ((unsigned)dt >= LOOM_NUM_DTYPES || (unsigned)op >= LOOM_NUM_OPS) return;
    if (dt == LOOM_FLOAT16 || dt == LOOM_BFLOAT16) reduce16(dst, a, b, count, op, dt == LOOM_BFLOAT16);
    else kernels[dt][op](dst, a, b, count);
}

void reduce_buf2(void *dst, void *dst2, const void *a, const void *b, size_t count,
                 loom_dtype_t dt, loom_op_t op)
{
    /* Block by block, so the copy reads what the reduction just left in L1. */
    size_t e = loom_dtype_size(dt), step = 4096 / (e ? e : 1);
    for (size_t i = 0; i < count; i += step) {
        size_t m = count - i < step ? count - i : step;
        reduce_buf((char *)dst + i * e, (const char *)a + i * e, (const char *)b + i * e, m, dt, op);
        memcpy((char *)dst2 + i * e, (char *)dst + i * e, m * e);
    }
}

/* ---- streaming copy ---- */

#if defined(__x86_64__)
#include <immintrin.h>
void copy_stream(void *dst, const void *src, size_t n)
{
    size_t head = (16 - ((uintptr_t)dst & 15)) & 15;
    if (n < 4096 || head >= n) {
        memcpy(dst, src, n);
        return;
    }
    memcpy(dst, src, head);                       /* align the destination */
    __m128i *d = (__m128i *)((char *)dst + head);
    const __m128i *s = (const __m128i *)((const char *)src + head);
    size_t k = (n - head) / 16;
    for (size_t i = 0; i < k; i++) _mm_stream_si128(d + i, _mm_loadu_si128(s + i));
    memcpy(d + k, s + k, n - head - k * 16);
    _mm_sfence();                                 /* visible before anyone is told */
}
#else
void copy_stream(void *dst, const void *src, size_t n) { memcpy(dst, src, n); }
#endif

#define DIV_LOOP(T)                                                                           \
    { T *p = buf; for (size_t i = 0; i < count; i++) p[i] = (T)(p[i] / (T)n); }
/* Integers up to 32 bits: truncating division through double is exact (|x| < 2^32,
   n <= 1024 leaves the quotient's fraction far above double's resolution) and, unlike
   integer division, vectorises. */
#define DIV_LOOP_VIA_DOUBLE(T)                                                                \
    { T *p = buf; double dn = (double)n;                                                     \
      for (size_t i = 0; i < count; i++) p[i] = (T)(int64_t)((double)p[i] / dn); }

CLONES void reduce_div(void *buf, size_t count, loom_dtype_t dt, int n)
{
    if (n <= 1) return;
    switch (dt) {
    case LOOM_INT8:    DIV_LOOP_VIA_DOUBLE(int8_t) break;
    case LOOM_UINT8:   DIV_LOOP_VIA_DOUBLE(uint8_t) break;
    case LOOM_INT32:   DIV_LOOP_VIA_DOUBLE(int32_t) break;
    case LOOM_UINT32:  DIV_LOOP_VIA_DOUBLE(uint32_t) break;
    case LOOM_INT64:   DIV_LOOP(int64_t) break;
    case LOOM_UINT64:  DIV_LOOP(uint64_t) break;
    case LOOM_FLOAT32: DIV_LOOP(float) break;
    case LOOM_FLOAT64: DIV_LOOP(double) break;
    case LOOM_FLOAT16:
    case LOOM_BFLOAT16: {
        bool bf = dt == LOOM_BFLOAT16;
        uint16_t *p = buf;
        float f[BLOCK];
        for (size_t i = 0; i < count; i += BLOCK) {
            size_t m = count - i < BLOCK ? count - i : BLOCK;
            to_float(f, p + i, m, bf);
            for (size_t j = 0; j < m; j++) f[j] /= (float)n;
            from_float(p + i, f, m, bf);
        }
        break;
    }
    default: break;
    }
}
