/* test_reduce.c: unit test of algos/reduce.c (element-wise reductions, 16-bit float
 * conversions, reduce_div, copy_stream, dtype_size) against straightforward scalar references.
 *
 * Standalone: one process, no ranks, and nothing needed beyond reduce.c (meson links
 * it against libloom), well under a second (exit 0 pass, 1 fail). By hand:
 *   gcc -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -O2 -Iinclude -Ialgos \
 *       algos/reduce.c tests/test_reduce.c -lm -o /tmp/test_reduce && /tmp/test_reduce
 * The references are written from the definitions (ldexp, frexp, integer arithmetic
 * mod 2^w), not from the bit tricks they check. Not here: timings (bench/).
 */
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reduce.h"
#include "schedule.h"

/* ---- checks: count, print both operands of the first failures ---- */

static long checks, failures;

#define MAX_PRINTED 30
#define FAIL(...) do { if (failures++ < MAX_PRINTED) { \
    fprintf(stderr, "%s:%d: ", __FILE__, __LINE__); fprintf(stderr, __VA_ARGS__); \
    fputc('\n', stderr); } } while (0)
/* Integer (or bit pattern) equality; ctx is a printf-style context for the message. */
#define CHECK_EQ(got, want, ...) do { uint64_t g_ = (uint64_t)(got), w_ = (uint64_t)(want); \
    checks++; if (g_ != w_) { FAIL("%s == %s failed: 0x%" PRIx64 " != 0x%" PRIx64 " (%s)", \
    #got, #want, g_, w_, ctx_(__VA_ARGS__)); } } while (0)
#define CHECK(cond, ...) do { checks++; if (!(cond)) \
    FAIL("check failed: %s (%s)", #cond, ctx_(__VA_ARGS__)); } while (0)

static const char *ctx_(const char *fmt, ...)
{
    static char s[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s, sizeof s, fmt, ap);
    va_end(ap);
    return s;
}

/* ---- dtypes: names, sizes, element access as bit patterns ---- */

static const char *dt_name[LOOM_NUM_DTYPES] = {
    "int8", "uint8", "int32", "uint32", "int64", "uint64",
    "float16", "float32", "float64", "bfloat16" };
static const size_t dt_size[LOOM_NUM_DTYPES] = { 1, 1, 4, 4, 8, 8, 2, 4, 8, 2 };
static const char *op_name[LOOM_NUM_OPS] = { "sum", "prod", "max", "min", "avg" };

static uint64_t get(loom_dtype_t dt, const void *p, size_t i)
{
    const unsigned char *c = (const unsigned char *)p + i * dt_size[dt];
    uint8_t u8; uint16_t u16; uint32_t u32; uint64_t u64;
    switch (dt_size[dt]) {
    case 1: memcpy(&u8, c, 1); return u8;
    case 2: memcpy(&u16, c, 2); return u16;
    case 4: memcpy(&u32, c, 4); return u32;
    default: memcpy(&u64, c, 8); return u64;
    }
}

static void put(loom_dtype_t dt, void *p, size_t i, uint64_t v)
{
    unsigned char *c = (unsigned char *)p + i * dt_size[dt];
    uint8_t u8 = (uint8_t)v; uint16_t u16 = (uint16_t)v; uint32_t u32 = (uint32_t)v;
    switch (dt_size[dt]) {
    case 1: memcpy(c, &u8, 1); break;
    case 2: memcpy(c, &u16, 2); break;
    case 4: memcpy(c, &u32, 4); break;
    default: memcpy(c, &v, 8); break;
    }
}

static float f32_of(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static uint32_t bits_f32(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static double f64_of(uint64_t u) { double d; memcpy(&d, &u, 8); return d; }
static uint64_t bits_f64(double d) { uint64_t u; memcpy(&u, &d, 8); return u; }

/* xorshift64*: reproducible inputs. */
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545f4914f6cdd1dull;
}

/* ---- reference conversions, from the definitions ---- */

/* Round q >= 0 to the nearest integer, ties to even (q is exact in double). */
static uint32_t rne(double q)
{
    double r = floor(q), d = q - r;
    if (d > 0.5 || (d == 0.5 && fmod(r, 2.0) == 1.0)) r += 1.0;
    return (uint32_t)r;
}

static float ref_h2f(uint16_t h)
{
    int e = (h >> 10) & 31, m = h & 0x3ff;
    double v = e == 0 ? ldexp(m, -24) : e == 31 ? (m ? NAN : INFINITY) : ldexp(1024 + m, e - 25);
    return (float)((h & 0x8000) ? -v : v);
}

/* NaN inputs are not handled here: callers check NaN-ness and quietness instead. */
static uint16_t ref_f2h(float f)
{
    uint16_t sign = (uint16_t)((bits_f32(f) >> 16) & 0x8000);
    double a = fabs((double)f);
    if (a >= 65520.0) return sign | 0x7c00;                     /* inf, or rounds to it */
    if (a < 0x1p-14) return (uint16_t)(sign | rne(a * 0x1p24)); /* subnormal or zero */
    int e;
    frexp(a, &e);                                               /* a in [2^(e-1), 2^e) */
    int E = e - 1;
    uint32_t r = rne(ldexp(a, 10 - E));                         /* in [1024, 2048] */
    if (r == 2048) { r = 1024; E++; }
    return (uint16_t)(sign | (uint32_t)(E + 15) << 10 | (r - 1024));
}

static float ref_bf2f(uint16_t h) { return f32_of((uint32_t)h << 16); }

static uint16_t ref_f2bf(float f)
{
    uint16_t sign = (uint16_t)((bits_f32(f) >> 16) & 0x8000);
    double a = fabs((double)f);
    if (isinf(a)) return sign | 0x7f80;
    if (a < 0x1p-126) return (uint16_t)(sign | rne(a * 0x1p133));
    int e;
    frexp(a, &e);
    int E = e - 1;
    uint32_t r = rne(ldexp(a, 7 - E));                          /* in [128, 256] */
    if (r == 256) { r = 128; E++; }
    if (E + 127 >= 255) return sign | 0x7f80;
    return (uint16_t)(sign | (uint32_t)(E + 127) << 7 | (r - 128));
}

static int h_isnan(uint16_t h) { return (h & 0x7c00) == 0x7c00 && (h & 0x3ff); }
static int bf_isnan(uint16_t h) { return (h & 0x7f80) == 0x7f80 && (h & 0x7f); }

/* ---- conversions: exhaustive on 16-bit inputs, every tie, random floats ---- */

/* One float through loom_float_to_half, against the reference (NaN: a quiet NaN). */
static void check_f2h(float f)
{
    uint16_t got = loom_float_to_half(f);
    if (isnan(f)) {
        CHECK(h_isnan(got) && (got & 0x200) && (got & 0x8000) == ((bits_f32(f) >> 16) & 0x8000),
              "f2h(nan 0x%08x) = 0x%04x", bits_f32(f), got);
        return;
    }
    CHECK_EQ(got, ref_f2h(f), "float 0x%08x = %a", bits_f32(f), (double)f);
}

static void check_f2bf(float f)
{
    uint16_t got = loom_float_to_bf16(f);
    if (isnan(f)) {
        CHECK(bf_isnan(got) && (got & 0x40) && (got & 0x8000) == ((bits_f32(f) >> 16) & 0x8000),
              "f2bf(nan 0x%08x) = 0x%04x", bits_f32(f), got);
        return;
    }
    CHECK_EQ(got, ref_f2bf(f), "float 0x%08x = %a", bits_f32(f), (double)f);
}

static void test_half(void)
{
    /* every half -> float (exact), and back (identity for non-NaN) */
    for (uint32_t h = 0; h < 0x10000; h++) {
        float f = loom_half_to_float((uint16_t)h);
        if (h_isnan((uint16_t)h)) {
            CHECK(isnan(f) && !!signbit(f) == !!(h & 0x8000), "h2f(0x%04x) = %a", h, (double)f);
            CHECK(h_isnan(loom_float_to_half(f)), "nan 0x%04x round trip", h);
            continue;
        }
        CHECK_EQ(bits_f32(f), bits_f32(ref_h2f((uint16_t)h)), "h2f(0x%04x)", h);
        CHECK_EQ(loom_float_to_half(f), h, "round trip of half 0x%04x", h);
    }
    /* every tie between neighbours h, h+1 (both signs): ties go to the even one;
       one float ulp either side goes to the nearer one. h = 0x7bff: 65520 -> inf. */
    for (uint32_t h = 0; h < 0x7c00; h++) {
        double lo = ref_h2f((uint16_t)h), hi = h == 0x7bff ? 65536.0 : ref_h2f((uint16_t)(h + 1));
        float mid = (float)((lo + hi) / 2);                     /* exact: 12 bits */
        uint32_t even = (h & 1) ? h + 1 : h;
        CHECK_EQ(loom_float_to_half(mid), even, "tie between 0x%04x and next", h);
        CHECK_EQ(loom_float_to_half(-mid), even | 0x8000, "tie between -0x%04x and next", h);
        CHECK_EQ(loom_float_to_half(nextafterf(mid, 0)), h, "just below tie above 0x%04x", h);
        CHECK_EQ(loom_float_to_half(nextafterf(mid, INFINITY)), h + 1, "just above tie above 0x%04x", h);
        check_f2h(mid);
        check_f2h(nextafterf(mid, 0));
        check_f2h(nextafterf(mid, INFINITY));
    }
    /* named edges */
    CHECK_EQ(loom_float_to_half(65504.0f), 0x7bff, "max half");
    CHECK_EQ(loom_float_to_half(65519.99f), 0x7bff, "just under overflow");
    CHECK_EQ(loom_float_to_half(65520.0f), 0x7c00, "overflow to inf");
    CHECK_EQ(loom_float_to_half(1e10f), 0x7c00, "overflow to inf");
    CHECK_EQ(loom_float_to_half(-FLT_MAX), 0xfc00, "-FLT_MAX");
    CHECK_EQ(loom_float_to_half(INFINITY), 0x7c00, "inf");
    CHECK_EQ(loom_float_to_half(-INFINITY), 0xfc00, "-inf");
    CHECK_EQ(loom_float_to_half(-0.0f), 0x8000, "-0");
    CHECK_EQ(loom_float_to_half(0x1p-24f), 0x0001, "smallest subnormal");
    CHECK_EQ(loom_float_to_half(0x1p-25f), 0x0000, "tie to 0 (even)");
    CHECK_EQ(loom_float_to_half(0x1.000002p-25f), 0x0001, "just above half the smallest");
    CHECK_EQ(loom_float_to_half(0x1.8p-24f), 0x0002, "1.5 ulp tie to 2 (even)");
    CHECK_EQ(loom_float_to_half(0x1.ff8p-15f), 0x03ff, "largest subnormal");
    CHECK_EQ(loom_float_to_half(0x1.ffcp-15f), 0x0400, "tie rounds (to even) into the normals");
    CHECK_EQ(loom_float_to_half(0x1p-14f), 0x0400, "smallest normal");
    CHECK_EQ(loom_float_to_half(0x1p-149f), 0x0000, "float subnormal");
    CHECK_EQ(loom_float_to_half(1.0f + 0x1p-11f), 0x3c00, "1 + half ulp: tie to even 1");
    CHECK_EQ(loom_float_to_half(1.0f + 0x1.8p-10f), 0x3c02, "1 + 1.5 ulp: tie to even");
    check_f2h(NAN);
    check_f2h(-NAN);
    check_f2h(f32_of(0x7f800001u));                            /* signalling NaN */
    check_f2h(f32_of(0xff800001u));
    /* random floats: all bit patterns, and concentrated on the half range */
    for (int i = 0; i < 300000; i++) {
        check_f2h(f32_of((uint32_t)rnd()));
        uint32_t u = (uint32_t)rnd();
        uint32_t e = 127 - 27 + (uint32_t)(rnd() % 46);           /* 2^-27 .. 2^18 */
        check_f2h(f32_of((u & 0x807fffffu) | e << 23));
    }
}

static void test_bf16(void)
{
    for (uint32_t h = 0; h < 0x10000; h++) {
        float f = loom_bf16_to_float((uint16_t)h);
        if (bf_isnan((uint16_t)h)) {
            CHECK(isnan(f) && !!signbit(f) == !!(h & 0x8000), "bf2f(0x%04x) = %a", h, (double)f);
            CHECK(bf_isnan(loom_float_to_bf16(f)), "nan 0x%04x round trip", h);
            continue;
        }
        CHECK_EQ(bits_f32(f), bits_f32(ref_bf2f((uint16_t)h)), "bf2f(0x%04x)", h);
        CHECK_EQ(loom_float_to_bf16(f), h, "round trip of bf16 0x%04x", h);
    }
    /* every tie (the float with only the top dropped bit set), and its neighbours */
    for (uint32_t h = 0; h < 0x7f80; h++) {
        for (uint32_t s = 0; s < 2; s++) {
            uint32_t sg = s << 15, mid = (h | sg) << 16 | 0x8000;
            uint32_t even = ((h & 1) ? h + 1 : h) | sg;
            CHECK_EQ(loom_float_to_bf16(f32_of(mid)), even, "tie above 0x%04x", h | sg);
            CHECK_EQ(loom_float_to_bf16(f32_of(mid - 1)), h | sg, "below tie above 0x%04x", h | sg);
            CHECK_EQ(loom_float_to_bf16(f32_of(mid + 1)), (h + 1) | sg, "above tie above 0x%04x", h | sg);
            check_f2bf(f32_of(mid));
        }
    }
    CHECK_EQ(loom_float_to_bf16(FLT_MAX), 0x7f80, "FLT_MAX rounds to inf");
    CHECK_EQ(loom_float_to_bf16(f32_of(0x7f7f7fffu)), 0x7f7f, "largest that stays finite");
    CHECK_EQ(loom_float_to_bf16(-INFINITY), 0xff80, "-inf");
    CHECK_EQ(loom_float_to_bf16(-0.0f), 0x8000, "-0");
    CHECK_EQ(loom_float_to_bf16(0x1p-149f), 0x0000, "smallest float subnormal: tie-free, to 0");
    CHECK_EQ(loom_float_to_bf16(f32_of(0x00008000u)), 0x0000, "subnormal tie to even 0");
    CHECK_EQ(loom_float_to_bf16(f32_of(0x00018000u)), 0x0002, "subnormal tie to even 2");
    check_f2bf(NAN);
    check_f2bf(-NAN);
    check_f2bf(f32_of(0x7f800001u));                           /* would truncate to inf */
    check_f2bf(f32_of(0xff80ffffu));
    for (int i = 0; i < 300000; i++) check_f2bf(f32_of((uint32_t)rnd()));
}

/* ---- reference reduction of one element (bit patterns in, bit pattern out) ---- */

static int is_signed(loom_dtype_t dt) { return dt == LOOM_INT8 || dt == LOOM_INT32 || dt == LOOM_INT64; }

static uint64_t sext(loom_dtype_t dt, uint64_t v)
{
    unsigned w = (unsigned)dt_size[dt] * 8;
    if (w == 64 || !is_signed(dt) || !(v >> (w - 1) & 1)) return v;
    return v | ~0ull << w;
}

/* Documented semantics: integer sum/prod wrap mod 2^w; max is a > b ? a : b and min
   a < b ? a : b (a NaN in b comes through, a NaN in a does not); avg reduces as sum. */
static uint64_t ref_op(loom_dtype_t dt, loom_op_t op, uint64_t a, uint64_t b)
{
    if (op == LOOM_AVG) op = LOOM_SUM;
    unsigned w = (unsigned)dt_size[dt] * 8;
    uint64_t mask = w == 64 ? ~0ull : (1ull << w) - 1;
    switch (dt) {
    case LOOM_FLOAT32: case LOOM_FLOAT16: case LOOM_BFLOAT16: {
        float x, y, r;
        if (dt == LOOM_FLOAT32) { x = f32_of((uint32_t)a); y = f32_of((uint32_t)b); }
        else if (dt == LOOM_FLOAT16) { x = ref_h2f((uint16_t)a); y = ref_h2f((uint16_t)b); }
        else { x = ref_bf2f((uint16_t)a); y = ref_bf2f((uint16_t)b); }
        r = op == LOOM_SUM ? x + y : op == LOOM_PROD ? x * y : op == LOOM_MAX ? (x > y ? x : y)
                                                              : (x < y ? x : y);
        if (dt == LOOM_FLOAT32) return bits_f32(r);
        if (isnan(r)) return dt == LOOM_FLOAT16 ? 0x7e00 : 0x7fc0;  /* NaN-ness only */
        return dt == LOOM_FLOAT16 ? ref_f2h(r) : ref_f2bf(r);
    }
    case LOOM_FLOAT64: {
        double x = f64_of(a), y = f64_of(b);
        double r = op == LOOM_SUM ? x + y : op == LOOM_PROD ? x * y : op == LOOM_MAX ? (x > y ? x : y)
                                                               : (x < y ? x : y);
        return bits_f64(r);
    }
    default: {
        uint64_t x = sext(dt, a), y = sext(dt, b);
        int gt = is_signed(dt) ? (int64_t)x > (int64_t)y : x > y;
        int lt = is_signed(dt) ? (int64_t)x < (int64_t)y : x < y;
        uint64_t r = op == LOOM_SUM ? x + y : op == LOOM_PROD ? x * y : op == LOOM_MAX ? (gt ? x : y)
                                                               : (lt ? x : y);
        return r & mask;
    }
    }
}

static int is_nan_bits(loom_dtype_t dt, uint64_t v)
{
    switch (dt) {
    case LOOM_FLOAT16: return h_isnan((uint16_t)v);
    case LOOM_BFLOAT16: return bf_isnan((uint16_t)v);
    case LOOM_FLOAT32: return isnan(f32_of((uint32_t)v));
    case LOOM_FLOAT64: return isnan(f64_of(v));
    default: return 0;
    }
}

/* Equal bits, or both NaN (a NaN's payload and sign are not specified). */
static int same(loom_dtype_t dt, uint64_t got, uint64_t want)
{
    return got == want || (is_nan_bits(dt, want) && is_nan_bits(dt, got));
}

/* ---- reduce_buf / reduce_buf2 against the reference ---- */

/* Inputs: mostly random bits (every 16-bit pattern, int wrap-around), a quarter
   edge values: 0, -0, +-1, extremes, inf, NaN, subnormals. */
static uint64_t input(loom_dtype_t dt)
{
    static const uint64_t edge[LOOM_NUM_DTYPES][10] = {
        [LOOM_INT8] = { 0, 1, 0xff, 0x7f, 0x80, 0x7e, 0x81, 2, 0x10, 0xf0 },
        [LOOM_UINT8] = { 0, 1, 0xff, 0x7f, 0x80, 0xfe, 2, 0x10, 0x0f, 0x11 },
        [LOOM_INT32] = { 0, 1, 0xffffffff, 0x7fffffff, 0x80000000, 0x10000, 0xffff0000, 2, 0x80000001, 0x7ffffffe },
        [LOOM_UINT32] = { 0, 1, 0xffffffff, 0x7fffffff, 0x80000000, 0x10000, 0xfffffffe, 2, 0x80000001, 3 },
        [LOOM_INT64] = { 0, 1, ~0ull, 0x7fffffffffffffffull, 0x8000000000000000ull, 1ull << 32,
                         0xffffffff00000000ull, 2, 0x8000000000000001ull, 3 },
        [LOOM_UINT64] = { 0, 1, ~0ull, 0x7fffffffffffffffull, 0x8000000000000000ull, 1ull << 32,
                          ~1ull, 2, 0x8000000000000001ull, 3 },
        [LOOM_FLOAT16] = { 0, 0x8000, 0x3c00, 0xbc00, 0x7bff, 0x7c00, 0xfc00, 0x7e00, 0x0001, 0x03ff },
        [LOOM_FLOAT32] = { 0, 0x80000000, 0x3f800000, 0xbf800000, 0x7f7fffff, 0x7f800000, 0xff800000,
                           0x7fc00000, 0x00000001, 0x00800000 },
        [LOOM_FLOAT64] = { 0, 0x8000000000000000ull, 0x3ff0000000000000ull, 0xbff0000000000000ull,
                           0x7fefffffffffffffull, 0x7ff0000000000000ull, 0xfff0000000000000ull,
                           0x7ff8000000000000ull, 1, 0x0010000000000000ull },
        [LOOM_BFLOAT16] = { 0, 0x8000, 0x3f80, 0xbf80, 0x7f7f, 0x7f80, 0xff80, 0x7fc0, 0x0001, 0x0080 },
    };
    uint64_t r = rnd();
    if (r % 4 == 0) return edge[dt][(r >> 8) % 10];
    uint64_t v = rnd();
    /* plain floats: a random sign, mantissa and moderate exponent, so sums round */
    if (dt == LOOM_FLOAT32 && r % 4 != 1) v = (v & 0x807fffffu) | (uint64_t)(100 + r % 56) << 23;
    if (dt == LOOM_FLOAT64 && r % 4 != 1) v = (v & 0x800fffffffffffffull) | (uint64_t)(1000 + r % 48) << 52;
    return v;
}

enum { DISTINCT, DST_IS_A, DST_IS_B, ALL_SAME, NUM_ALIAS };
static const char *alias_name[NUM_ALIAS] = { "dst!=a,b", "dst==a", "dst==b", "dst==a==b" };

#define GUARD 64   /* bytes past the end of an output that must stay untouched */

static void test_reduce_case(loom_dtype_t dt, loom_op_t op, size_t n, int alias, int two, size_t off)
{
    size_t E = dt_size[dt], bytes = (n + off) * E + GUARD;
    unsigned char *a = malloc(bytes), *b = malloc(bytes), *d = malloc(bytes), *d2 = malloc(bytes);
    unsigned char *sa = malloc(bytes), *sb = malloc(bytes);
    uint64_t *want = malloc((n + 1) * sizeof *want);
    if (!a || !b || !d || !d2 || !sa || !sb || !want) { fprintf(stderr, "out of memory\n"); exit(1); }
    memset(d, 0xa5, bytes);
    memset(d2, 0x5a, bytes);
    unsigned char *pa = a + off * E, *pb = b + off * E, *pd = d + off * E, *pd2 = d2 + off * E;
    for (size_t i = 0; i < n; i++) {
        put(dt, pa, i, input(dt));
        put(dt, pb, i, alias == ALL_SAME ? get(dt, pa, i) : input(dt));
        want[i] = ref_op(dt, op, get(dt, pa, i), get(dt, pb, i));
    }
    memset(pa + n * E, 0xa5, GUARD);
    memset(pb + n * E, 0xa5, GUARD);
    memcpy(sa, pa, n * E);
    memcpy(sb, pb, n * E);
    const void *x = pa, *y = pb;
    void *out = pd;
    if (alias == DST_IS_A || alias == ALL_SAME) out = pa;
    if (alias == DST_IS_B) out = pb;
    if (alias == ALL_SAME) y = pa;
    if (two) reduce_buf2(out, pd2, x, y, n, dt, op);
    else reduce_buf(out, x, y, n, dt, op);

    const char *dn = dt_name[dt], *on = op_name[op], *an = alias_name[alias];
    const char *fn = two ? "reduce_buf2" : "reduce_buf";
    for (size_t i = 0; i < n; i++) {
        uint64_t got = get(dt, out, i);
        CHECK(same(dt, got, want[i]), "%s %s %s %s n=%zu off=%zu [%zu]: got 0x%" PRIx64
              " want 0x%" PRIx64, fn, dn, on, an, n, off, i, got, want[i]);
        if (two) CHECK_EQ(get(dt, pd2, i), got, "%s %s %s %s n=%zu dst2[%zu]", fn, dn, on, an, n, i);
    }
    unsigned char *o = (unsigned char *)out + n * E;
    for (size_t i = 0; i < GUARD; i++)
        CHECK_EQ(o[i], 0xa5, "%s %s %s %s n=%zu: byte %zu past the end written", fn, dn, on, an, n, i);
    if (two)
        for (size_t i = 0; i < GUARD; i++)
            CHECK_EQ(pd2[n * E + i], 0x5a, "%s %s %s n=%zu: dst2 byte %zu past the end", fn, dn, on, n, i);
    if (out == pd)
        for (size_t i = 0; i < off * E; i++)
            CHECK_EQ(d[i], 0xa5, "%s %s %s n=%zu: byte %zu before dst written", fn, dn, on, n, i);
    /* the input that is not the output stays as it was */
    if (alias == DISTINCT || alias == DST_IS_B)
        CHECK_EQ(memcmp(pa, sa, n * E), 0, "%s %s %s %s n=%zu: a changed", fn, dn, on, an, n);
    if (alias == DISTINCT || alias == DST_IS_A)
        CHECK_EQ(memcmp(pb, sb, n * E), 0, "%s %s %s %s n=%zu: b changed", fn, dn, on, an, n);
    free(a); free(b); free(d); free(d2); free(sa); free(sb); free(want);
}

static void test_reduce(void)
{
    static const size_t lens[] = { 0, 1, 7, 255, 257, 4097 };
    for (int dt = 0; dt < LOOM_NUM_DTYPES; dt++)
        for (int op = 0; op < LOOM_NUM_OPS; op++)
            for (size_t l = 0; l < sizeof lens / sizeof *lens; l++)
                for (int alias = 0; alias < NUM_ALIAS; alias++)
                    for (int two = 0; two < 2; two++) {
                        if (two && alias == ALL_SAME) continue;
                        test_reduce_case((loom_dtype_t)dt, (loom_op_t)op, lens[l], alias, two, 0);
                        test_reduce_case((loom_dtype_t)dt, (loom_op_t)op, lens[l], alias, two, 1);
                    }
    /* a longer run past several 16-bit blocks and reduce_buf2 blocks */
    for (int dt = 0; dt < LOOM_NUM_DTYPES; dt++)
        test_reduce_case((loom_dtype_t)dt, LOOM_SUM, 100003, DISTINCT, 1, 3);
}

/* Named cases, so a bug shared by the reference and the code still shows. */
static void test_wrap(void)
{
    int8_t i8a[2] = { 127, -128 }, i8b[2] = { 1, -1 }, i8d[2];
    reduce_buf(i8d, i8a, i8b, 2, LOOM_INT8, LOOM_SUM);
    CHECK_EQ(i8d[0], -128, "int8 127 + 1");
    CHECK_EQ(i8d[1], 127, "int8 -128 + -1");
    reduce_buf(i8d, i8a, i8b, 2, LOOM_INT8, LOOM_PROD);
    CHECK_EQ(i8d[1], -128, "int8 -128 * -1");
    reduce_buf(i8d, i8a, i8b, 2, LOOM_INT8, LOOM_MAX);
    CHECK_EQ(i8d[1], -1, "int8 max(-128, -1)");
    uint8_t u8a[1] = { 255 }, u8b[1] = { 1 }, u8d[1];
    reduce_buf(u8d, u8a, u8b, 1, LOOM_UINT8, LOOM_SUM);
    CHECK_EQ(u8d[0], 0, "uint8 255 + 1");
    reduce_buf(u8d, u8a, u8b, 1, LOOM_UINT8, LOOM_MAX);
    CHECK_EQ(u8d[0], 255, "uint8 max(255, 1) compares unsigned");
    int32_t i32a[2] = { INT32_MAX, INT32_MIN }, i32b[2] = { 1, -1 }, i32d[2];
    reduce_buf(i32d, i32a, i32b, 2, LOOM_INT32, LOOM_SUM);
    CHECK_EQ((uint32_t)i32d[0], 0x80000000u, "int32 max + 1");
    CHECK_EQ((uint32_t)i32d[1], 0x7fffffffu, "int32 min - 1");
    reduce_buf(i32d, i32a, i32b, 2, LOOM_INT32, LOOM_MIN);
    CHECK_EQ(i32d[1], INT32_MIN, "int32 min(min, -1)");
    CHECK_EQ(i32d[0], 1, "int32 min(max, 1)");
    uint32_t u32a[1] = { 0xffffffffu }, u32b[1] = { 1 }, u32d[1];
    reduce_buf(u32d, u32a, u32b, 1, LOOM_UINT32, LOOM_MIN);
    CHECK_EQ(u32d[0], 1, "uint32 min compares unsigned");
    reduce_buf(u32d, u32a, u32a, 1, LOOM_UINT32, LOOM_PROD);
    CHECK_EQ(u32d[0], 1, "uint32 (2^32-1)^2 wraps to 1");
    int64_t i64a[1] = { INT64_MIN }, i64b[1] = { -1 }, i64d[1];
    reduce_buf(i64d, i64a, i64b, 1, LOOM_INT64, LOOM_PROD);
    CHECK_EQ(i64d[0], INT64_MIN, "int64 min * -1");
    reduce_buf(i64d, i64a, i64b, 1, LOOM_INT64, LOOM_SUM);
    CHECK_EQ(i64d[0], INT64_MAX, "int64 min - 1");
    uint64_t u64a[1] = { 1ull << 32 }, u64d[1];
    reduce_buf(u64d, u64a, u64a, 1, LOOM_UINT64, LOOM_PROD);
    CHECK_EQ(u64d[0], 0, "uint64 2^32 * 2^32");
    float fa[3] = { NAN, 1.0f, 2.0f }, fb[3] = { 1.0f, NAN, 1.0f }, fd[3];
    reduce_buf(fd, fa, fb, 3, LOOM_FLOAT32, LOOM_MAX);
    CHECK_EQ(bits_f32(fd[0]), bits_f32(1.0f), "max(NaN, 1): a NaN in a does not come through");
    CHECK(isnan(fd[1]), "max(1, NaN): a NaN in b comes through");
    CHECK_EQ(bits_f32(fd[2]), bits_f32(2.0f), "max(2, 1)");
    reduce_buf(fd, fa, fb, 3, LOOM_FLOAT32, LOOM_AVG);
    CHECK_EQ(bits_f32(fd[2]), bits_f32(3.0f), "avg reduces as sum");
    uint16_t ha[2] = { 0x7bff, 0x3c00 }, hb[2] = { 0x7bff, 0x0001 }, hd[2];
    reduce_buf(hd, ha, hb, 2, LOOM_FLOAT16, LOOM_SUM);
    CHECK_EQ(hd[0], 0x7c00, "half 65504 + 65504 overflows to inf");
    CHECK_EQ(hd[1], 0x3c00, "half 1 + 2^-24 rounds to 1");
    /* invalid dtype or op: nothing written */
    int32_t z[4] = { 1, 2, 3, 4 }, zd[4] = { 9, 9, 9, 9 };
    reduce_buf(zd, z, z, 4, LOOM_NUM_DTYPES, LOOM_SUM);
    reduce_buf(zd, z, z, 4, LOOM_INT32, LOOM_NUM_OPS);
    reduce_buf2(zd, zd, z, z, 4, LOOM_NUM_DTYPES, LOOM_SUM);
    reduce_buf2(zd, zd, z, z, 4, (loom_dtype_t)-1, LOOM_SUM);
    for (int i = 0; i < 4; i++) CHECK_EQ(zd[i], 9, "invalid dtype/op wrote [%d]", i);
}

/* ---- reduce_div ---- */

static uint64_t ref_div(loom_dtype_t dt, uint64_t v, int n)
{
    unsigned w = (unsigned)dt_size[dt] * 8;
    uint64_t mask = w == 64 ? ~0ull : (1ull << w) - 1;
    switch (dt) {
    case LOOM_FLOAT16: return ref_f2h(ref_h2f((uint16_t)v) / (float)n);
    case LOOM_BFLOAT16: return ref_f2bf(ref_bf2f((uint16_t)v) / (float)n);
    case LOOM_FLOAT32: return bits_f32(f32_of((uint32_t)v) / (float)n);
    case LOOM_FLOAT64: return bits_f64(f64_of(v) / (double)n);
    default:
        if (is_signed(dt)) return (uint64_t)((int64_t)sext(dt, v) / (int64_t)n) & mask;
        return (v / (uint64_t)n) & mask;
    }
}

static void test_div(void)
{
    static const int ns[] = { 1, 2, 3, 4, 7, 8, 10, 255, 1000, 65537, 1 << 24, 16777217, INT32_MAX };
    enum { N = 70000 };   /* every 16-bit pattern, and then some */
    unsigned char *buf = malloc(N * 8 + GUARD);
    uint64_t *orig = malloc(N * sizeof *orig);
    if (!buf || !orig) { fprintf(stderr, "out of memory\n"); exit(1); }
    for (int dt = 0; dt < LOOM_NUM_DTYPES; dt++)
        for (size_t k = 0; k < sizeof ns / sizeof *ns; k++) {
            int n = ns[k];
            size_t cnt = dt_size[dt] <= 2 ? N : 20000;
            uint64_t mask = dt_size[dt] == 8 ? ~0ull : (1ull << 8 * dt_size[dt]) - 1;
            for (size_t i = 0; i < cnt; i++)
                orig[i] = (dt_size[dt] <= 2 && i < 0x10000 ? i : input((loom_dtype_t)dt)) & mask;
            for (size_t i = 0; i < cnt; i++) put((loom_dtype_t)dt, buf, i, orig[i]);
            memset(buf + cnt * dt_size[dt], 0xa5, GUARD);
            reduce_div(buf, cnt, (loom_dtype_t)dt, n);
            for (size_t i = 0; i < cnt; i++) {
                uint64_t got = get((loom_dtype_t)dt, buf, i);
                uint64_t want = is_nan_bits((loom_dtype_t)dt, orig[i]) ? orig[i]  /* NaN / n: NaN */
                                                                       : ref_div((loom_dtype_t)dt, orig[i], n);
                CHECK(same((loom_dtype_t)dt, got, want), "reduce_div %s 0x%" PRIx64 " / %d: got 0x%"
                      PRIx64 " want 0x%" PRIx64, dt_name[dt], orig[i], n, got, want);
            }
            for (size_t i = 0; i < GUARD; i++)
                CHECK_EQ(buf[cnt * dt_size[dt] + i], 0xa5, "reduce_div %s: byte %zu past the end", dt_name[dt], i);
        }
    int32_t v[3] = { -7, 7, INT32_MIN };
    reduce_div(v, 3, LOOM_INT32, 2);
    CHECK_EQ(v[0], -3, "int32 -7 / 2 truncates toward zero");
    CHECK_EQ(v[1], 3, "int32 7 / 2");
    CHECK_EQ(v[2], INT32_MIN / 2, "int32 min / 2");
    uint32_t u[1] = { 0xffffffffu };
    reduce_div(u, 1, LOOM_UINT32, 2);
    CHECK_EQ(u[0], 0x7fffffffu, "uint32 max / 2");
    int64_t w[1] = { INT64_MIN + 1 };
    reduce_div(w, 1, LOOM_INT64, 3);
    CHECK_EQ(w[0], (INT64_MIN + 1) / 3, "int64 near min / 3");
    reduce_div(w, 0, LOOM_INT64, 3);                          /* count 0: nothing */
    CHECK_EQ(w[0], (INT64_MIN + 1) / 3, "count 0");
    free(buf);
    free(orig);
}

/* ---- copy_stream ---- */

static void test_copy_stream(void)
{
    static const size_t sizes[] = { 0, 1, 15, 16, 17, 4095, 4096, 4097, 65536 + 13, 1 << 20 };
    size_t max = (1 << 20) + 64;
    unsigned char *s = malloc(max), *d = malloc(max + GUARD);
    if (!s || !d) { fprintf(stderr, "out of memory\n"); exit(1); }
    for (size_t i = 0; i < max; i++) s[i] = (unsigned char)rnd();
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++)
        for (size_t so = 0; so < 3; so++)
            for (size_t doff = 0; doff < 17; doff += 5) {
                size_t n = sizes[k];
                memset(d, 0xa5, max + GUARD);
                copy_stream(d + doff, s + so, n);
                size_t bad = 0;
                while (bad < n && d[doff + bad] == s[so + bad]) bad++;
                CHECK_EQ(bad, n, "copy_stream n=%zu src+%zu dst+%zu: first wrong byte", n, so, doff);
                int clean = 1;
                for (size_t i = 0; i < doff; i++) clean &= d[i] == 0xa5;
                for (size_t i = 0; i < GUARD; i++) clean &= d[doff + n + i] == 0xa5;
                CHECK_EQ(clean, 1, "copy_stream n=%zu dst+%zu wrote outside", n, doff);
            }
    free(s);
    free(d);
}

/* ---- main ---- */

/* The inline dtype_size the library uses inside (and loom_dtype_size returns for a
   valid dtype) against the sizes written out here. */
static void test_dtype_size(void)
{
    for (int dt = 0; dt < LOOM_NUM_DTYPES; dt++)
        CHECK(dtype_size((loom_dtype_t)dt) == dt_size[dt], "dtype_size(%s)", dt_name[dt]);
}

int main(void)
{
    test_dtype_size();
    test_half();
    test_bf16();
    test_wrap();
    test_reduce();
    test_div();
    test_copy_stream();
    printf("test_reduce: %ld checks, %ld failed\n", checks, failures);
    return failures ? 1 : 0;
}
