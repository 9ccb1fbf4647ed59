/* reduce.c: element-wise reductions on host memory, every dtype x op; reduce_div (avg);
 * the float16/bfloat16 conversions; copy_stream.
 *
 * One kernel per (dtype, op), generated from one macro: a plain loop that gcc -O3
 * vectorises with the baseline ISA (SSE2 on x86-64, NEON on aarch64), in three
 * variants so restrict stays true when dst is exactly a or b. Integer sum and prod
 * wrap (computed in the unsigned type: no signed overflow). Float max/min are
 * `a > b ? a : b` / `a < b ? a : b`, not fmaxf: the semantics of x86 maxps/minps, one
 * instruction. A NaN in b comes through, a NaN in a does not (fmaxf would drop both);
 * for two zeros the result is b. avg reduces as sum; reduce_div divides afterwards.
 * reduce_buf2 writes its two outputs in the same pass.
 * float16 and bfloat16 go through float in blocks of 256 elements: convert, reduce in
 * float, round back to nearest even. The conversions are portable C11 (no F16C, no
 * _Float16), straight-line integer and float lane code so their loops vectorise too,
 * and stay exact under flush-to-zero/denormals-are-zero FPU modes.
 * Not here: choosing what to reduce (schedules), device memory (CUDA kernels), and
 * validating dtype and op (the API does that; here an unknown one does nothing).
 */
#include "reduce.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

/* dst[i] = a[i] op b[i], and dst2[i] too unless dst2 is NULL. */
typedef void (*kernel_fn)(void *dst, void *dst2, const void *a, const void *b, size_t n);

/* ---- float16 and bfloat16 conversions ---- */

/* All ones when a < b, else 0 (a, b in [0, 2^31): a - b cannot overflow). Selects
   are written with these masks, not ?:, so every conversion loop is straight-line code
   that vectorises; gcc keeps a ?: next to a float op as a branch under -ftrapping-math. */
static inline uint32_t lt_mask(int32_t a, int32_t b) { return 0u - ((uint32_t)(a - b) >> 31); }

static inline uint32_t f32_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static inline float bits_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

/* half: sign 1 | exponent 5 (bias 15) | mantissa 10. Exact for every input. */
static inline float h2f(uint16_t h)
{
    int32_t m = h & 0x7fff;                                   /* magnitude bits */
    /* normal: move the fields into place and rebias the exponent by 127 - 15 */
    uint32_t norm = ((uint32_t)m << 13) + 0x38000000u;
    norm += ~lt_mask(m, 0x7c00) & 0x38000000u;                /* inf/NaN: exponent 255 */
    /* zero and subnormal: m * 2^-24 exactly, from an integer (no denormal operand,
       so a denormals-are-zero FPU mode cannot flush it) */
    uint32_t sub = f32_bits((float)m * 0x1p-24f);
    uint32_t s = lt_mask(m, 0x0400);
    return bits_f32((sub & s) | (norm & ~s) | (uint32_t)(h & 0x8000) << 16);
}

/* Round to nearest even; 65520 and up become inf; NaN stays NaN (quiet, payload
   dropped: 0x7e00 with its sign). The FPU does the rounding: adding M = 2^(E+13), E
   the exponent of |f| (at least -14, the half's smallest), leaves a sum whose ulp is
   the half's ulp at E, so the sum's low mantissa bits are |f| / ulp rounded to nearest
   even, subnormals included; a carry into 2^(E+1) moves into the exponent field.
   |f| is clamped to 2^16 first, which rounds to exactly 0x7c00. No operand or result
   is a float denormal (only a denormal |f| itself, whose half is 0 either way). */
static inline uint16_t f2h(float f)
{
    uint32_t u = f32_bits(f);
    int32_t x = (int32_t)(u & 0x7fffffffu);                   /* |f| */
    int32_t xc = x < 0x47800000 ? x : 0x47800000;             /* min(|f|, 2^16) */
    int32_t e = xc & 0x7f800000;
    e = e > 0x38800000 ? e : 0x38800000;                      /* max(2^E, 2^-14) */
    uint32_t mb = (uint32_t)e + (13u << 23);                  /* M = 2^(E+13) */
    uint32_t q = f32_bits(bits_f32((uint32_t)xc) + bits_f32(mb)) - mb;  /* |f| / ulp */
    uint32_t h = ((uint32_t)e >> 13) - (113u << 10) + q;      /* (E + 14) << 10, + q */
    h |= lt_mask(0x7f800000, x) & 0x0200;                     /* NaN: 0x7c00 -> 0x7e00 */
    return (uint16_t)(h | ((u >> 16) & 0x8000));
}

/* bfloat16: the top half of a float. */
static inline float bf2f(uint16_t h) { return bits_f32((uint32_t)h << 16); }

/* Round to nearest even (a carry may reach inf, as it should); NaN: truncated, made
   quiet (no rounding increment, which could carry a NaN into the sign). */
static inline uint16_t f2bf(float f)
{
    uint32_t x = f32_bits(f);
    uint32_t nan = lt_mask(0x7f800000, (int32_t)(x & 0x7fffffffu));
    uint32_t r = (x + ((0x7fffu + ((x >> 16) & 1)) & ~nan)) >> 16;
    return (uint16_t)(r | (nan & 0x40));
}

/* Exported for tests and tools; the loops below use the inline versions. */
float loom_half_to_float(uint16_t h) { return h2f(h); }
uint16_t loom_float_to_half(float f) { return f2h(f); }
float loom_bf16_to_float(uint16_t h) { return bf2f(h); }
uint16_t loom_float_to_bf16(float f) { return f2bf(f); }

/* ---- native kernels: one macro, 8 dtypes x 4 ops ---- */

/* T: the element type, U: the type the arithmetic runs in (unsigned for integers). */
#define OP_SUM(T, U, x, y)  ((T)((U)(x) + (U)(y)))
#define OP_PROD(T, U, x, y) ((T)((U)(x) * (U)(y)))
#define OP_MAX(T, U, x, y)  ((x) > (y) ? (x) : (y))
#define OP_MIN(T, U, x, y)  ((x) < (y) ? (x) : (y))

/* The loop body, once with a second output d2 (reduce_buf2) and once without. Writing
   both from registers beats reducing a block and copying it (about 20% at 8 MiB). */
#define LOOP(EXPR)                                                                         \
    if (d2) for (size_t i = 0; i < n; i++) d[i] = d2[i] = EXPR;                            \
    else    for (size_t i = 0; i < n; i++) d[i] = EXPR;

/* name(d, d2, a, b, n) picks the loop whose restrict promises hold: d is a, d is b,
   d is both (x op x: rare, no restrict possible), or d is neither. d2: NULL or a
   buffer apart from the others. */
#define KERNEL(name, T, U, OP)                                                             \
    static void name##_3(T *restrict d, T *restrict d2, const T *restrict a,               \
                         const T *restrict b, size_t n)                                    \
    { LOOP(OP(T, U, a[i], b[i])) }                                                         \
    static void name##_da(T *restrict d, T *restrict d2, const T *restrict b, size_t n)   \
    { LOOP(OP(T, U, d[i], b[i])) }                                                         \
    static void name##_db(T *restrict d, T *restrict d2, const T *restrict a, size_t n)   \
    { LOOP(OP(T, U, a[i], d[i])) }                                                         \
    static void name##_self(T *d, T *restrict d2, size_t n)                                \
    { LOOP(OP(T, U, d[i], d[i])) }                                                         \
    static void name(void *d, void *d2, const void *a, const void *b, size_t n)            \
    {                                                                                       \
        if (d == a && d == b) name##_self(d, d2, n);                                        \
        else if (d == a) name##_da(d, d2, b, n);                                            \
        else if (d == b) name##_db(d, d2, a, n);                                            \
        else name##_3(d, d2, a, b, n);                                                      \
    }

#define KERNELS(tn, T, U)                                                                  \
    KERNEL(tn##_sum, T, U, OP_SUM) KERNEL(tn##_prod, T, U, OP_PROD)                        \
    KERNEL(tn##_max, T, U, OP_MAX) KERNEL(tn##_min, T, U, OP_MIN)

KERNELS(i8, int8_t, uint8_t)
KERNELS(u8, uint8_t, uint8_t)
KERNELS(i32, int32_t, uint32_t)
KERNELS(u32, uint32_t, uint32_t)
KERNELS(i64, int64_t, uint64_t)
KERNELS(u64, uint64_t, uint64_t)
KERNELS(f32, float, float)
KERNELS(f64, double, double)

/* Indexed [dtype][op]; avg runs sum. The 16-bit float rows stay NULL (reduce16). */
#define ROW(tn) { tn##_sum, tn##_prod, tn##_max, tn##_min, tn##_sum }
static const kernel_fn kernels[LOOM_NUM_DTYPES][LOOM_NUM_OPS] = {
    [LOOM_INT8] = ROW(i8),     [LOOM_UINT8] = ROW(u8),   [LOOM_INT32] = ROW(i32),
    [LOOM_UINT32] = ROW(u32),  [LOOM_INT64] = ROW(i64),  [LOOM_UINT64] = ROW(u64),
    [LOOM_FLOAT32] = ROW(f32), [LOOM_FLOAT64] = ROW(f64),
};

/* ---- 16-bit floats: through float, BLOCK elements at a time ---- */

#define BLOCK 256   /* two float blocks: 2 KiB of stack, in L1 */

/* always_inline: so the AVX2 clone below gets AVX2 copies of these loops. */
static inline __attribute__((always_inline))
void to_float(float *restrict out, const uint16_t *restrict in, size_t n, bool bf)
{
    if (bf) for (size_t i = 0; i < n; i++) out[i] = bf2f(in[i]);
    else    for (size_t i = 0; i < n; i++) out[i] = h2f(in[i]);
}

static inline __attribute__((always_inline))
void from_float(uint16_t *restrict out, const float *restrict in, size_t n, bool bf)
{
    if (bf) for (size_t i = 0; i < n; i++) out[i] = f2bf(in[i]);
    else    for (size_t i = 0; i < n; i++) out[i] = f2h(in[i]);
}

/* Baseline x86-64 (SSE2) has no 32->16-bit truncating pack and half the divide rate,
   so the 16-bit loops and reduce_div are cloned for AVX2, one picked at load time.
   (The native kernels are not: they run at load/store speed either way.) target_clones
   needs ifunc, which glibc has on x86-64, musl and Darwin not: there, the plain build.
   Not under ThreadSanitizer either: an ifunc resolver runs while the library loads,
   before TSan's runtime is up, and its instrumented code crashes the process. */
#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define LOOM_TSAN 1
#endif
#endif
#if defined(__SANITIZE_THREAD__)
#define LOOM_TSAN 1
#endif
#if defined(__x86_64__) && defined(__GNUC__) && defined(__GLIBC__) && !defined(LOOM_TSAN)
#define CLONES __attribute__((target_clones("avx2", "default")))
#else
#define CLONES
#endif

/* x[i] = x[i] op y[i] on one block, inlined into the clones (no call per block). */
static inline __attribute__((always_inline))
void op_block(float *restrict x, const float *restrict y, size_t n, loom_op_t op)
{
    switch (op) {
    case LOOM_PROD: for (size_t i = 0; i < n; i++) x[i] = OP_PROD(float, float, x[i], y[i]); break;
    case LOOM_MAX:  for (size_t i = 0; i < n; i++) x[i] = OP_MAX(float, float, x[i], y[i]); break;
    case LOOM_MIN:  for (size_t i = 0; i < n; i++) x[i] = OP_MIN(float, float, x[i], y[i]); break;
    default:        for (size_t i = 0; i < n; i++) x[i] = OP_SUM(float, float, x[i], y[i]); break;
    }
}

/* d, a, b: exact aliases or disjoint; each block is read whole before it is written.
   d2: NULL, or a second output apart from the others. */
CLONES static void reduce16(uint16_t *d, uint16_t *d2, const uint16_t *a, const uint16_t *b,
                            size_t n, loom_op_t op, bool bf)
{
    float fa[BLOCK], fb[BLOCK];
    for (size_t i = 0; i < n; i += BLOCK) {
        size_t m = n - i < BLOCK ? n - i : BLOCK;
        to_float(fa, a + i, m, bf);
        to_float(fb, b + i, m, bf);
        op_block(fa, fb, m, op);
        from_float(d + i, fa, m, bf);
        if (d2) memcpy(d2 + i, d + i, m * sizeof *d);
    }
}

static inline __attribute__((always_inline)) void div16(uint16_t *p, size_t n, int by, bool bf)
{
    float f[BLOCK], fn = (float)by;
    for (size_t i = 0; i < n; i += BLOCK) {
        size_t m = n - i < BLOCK ? n - i : BLOCK;
        to_float(f, p + i, m, bf);
        for (size_t j = 0; j < m; j++) f[j] /= fn;
        from_float(p + i, f, m, bf);
    }
}

/* ---- entry points ---- */

/* Both entry points: an unknown dtype or op does nothing. */
static void reduce_any(void *dst, void *dst2, const void *a, const void *b, size_t count,
                       loom_dtype_t dt, loom_op_t op)
{
    if ((unsigned)dt >= LOOM_NUM_DTYPES || (unsigned)op >= LOOM_NUM_OPS) return;
    if (dt == LOOM_FLOAT16 || dt == LOOM_BFLOAT16)
        reduce16(dst, dst2, a, b, count, op, dt == LOOM_BFLOAT16);
    else
        kernels[dt][op](dst, dst2, a, b, count);
}

void reduce_buf(void *dst, const void *a, const void *b, size_t count, loom_dtype_t dt, loom_op_t op)
{
    reduce_any(dst, NULL, a, b, count, dt, op);
}

void reduce_buf2(void *dst, void *dst2, const void *a, const void *b, size_t count,
                 loom_dtype_t dt, loom_op_t op)
{
    reduce_any(dst, dst2, a, b, count, dt, op);
}

/* ---- reduce_div: buf[i] /= n ---- */

/* Integer division does not vectorise, so the narrow integers divide in floating
   point and truncate, which gives exactly the truncated integer quotient: for x/n
   not an integer, its distance to the next integer is >= 1/n, relatively >= 1/|x|,
   far above the rounding error (8-bit |x| < 2^8 in float, 2^-24; 32-bit |x| < 2^32 in
   double, 2^-53). uint32 / n (n >= 2) fits int32, so one signed conversion serves. */
#define DIV_LOOP(T, F, CONV)                                                               \
    { T *p = buf; F fn = (F)n;                                                             \
      for (size_t i = 0; i < count; i++) p[i] = (T)(CONV)((F)p[i] / fn); }
#define DIV_LOOP_INT(T)                                                                    \
    { T *p = buf; for (size_t i = 0; i < count; i++) p[i] = (T)(p[i] / (T)n); }

/* Cloned as a static helper, not as reduce_div itself: clang (14) emits the ifunc of
   a target_clones function only where its own file calls it. */
CLONES static void div_buf(void *buf, size_t count, loom_dtype_t dt, int n)
{
    switch (dt) {
    case LOOM_INT8:     DIV_LOOP(int8_t, float, int32_t) break;
    case LOOM_UINT8:    DIV_LOOP(uint8_t, float, int32_t) break;
    case LOOM_INT32:    DIV_LOOP(int32_t, double, int32_t) break;
    case LOOM_UINT32:   DIV_LOOP(uint32_t, double, int32_t) break;
    case LOOM_INT64:    DIV_LOOP_INT(int64_t) break;
    case LOOM_UINT64:   DIV_LOOP_INT(uint64_t) break;
    case LOOM_FLOAT32:  DIV_LOOP(float, float, float) break;
    case LOOM_FLOAT64:  DIV_LOOP(double, double, double) break;
    case LOOM_FLOAT16:  div16(buf, count, n, false); break;
    case LOOM_BFLOAT16: div16(buf, count, n, true); break;
    default: break;
    }
}

void reduce_div(void *buf, size_t count, loom_dtype_t dt, int n)
{
    if (n > 1) div_buf(buf, count, dt, n);  /* n == 1: nothing to do; n < 1: invalid */
}

/* ---- copy_stream: memcpy with non-temporal stores ---- */

#if defined(__x86_64__)
#include <immintrin.h>
void copy_stream(void *dst, const void *src, size_t n)
{
    size_t head = (16 - ((uintptr_t)dst & 15)) & 15;
    if (n < 4096) {                               /* small: the cache is fine */
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
