/* reduce.h: element-wise reductions on host memory for every dtype x op.
 * Vectorised by the compiler (restrict loops, -O3); float16 and bfloat16 are computed
 * in float and rounded to nearest even. */
#ifndef LOOM_REDUCE_H
#define LOOM_REDUCE_H

#include <stddef.h>
#include <stdint.h>
#include "loom.h"

/* dst[i] = a[i] op b[i] for i < count. dst may equal a or b (exactly; no partial
   overlap). op LOOM_AVG reduces as LOOM_SUM (avg = sum, then reduce_div). */
void reduce_buf(void *dst, const void *a, const void *b, size_t count,
                 loom_dtype_t dt, loom_op_t op);
/* Same, and also writes the result to dst2 (a second output, e.g. a FIFO slot). */
void reduce_buf2(void *dst, void *dst2, const void *a, const void *b, size_t count,
                  loom_dtype_t dt, loom_op_t op);
/* buf[i] /= n (integer types: truncating division, as NCCL's avg). */
void reduce_div(void *buf, size_t count, loom_dtype_t dt, int n);

/* memcpy with non-temporal stores (bypassing the cache) where the CPU has them
   (x86-64); a plain memcpy elsewhere. For large outputs nobody reads soon. */
void copy_stream(void *dst, const void *src, size_t n);

float    loom_half_to_float(uint16_t h);
uint16_t loom_float_to_half(float f);    /* round to nearest even, inf/nan kept */
float    loom_bf16_to_float(uint16_t h);
uint16_t loom_float_to_bf16(float f);    /* round to nearest even, nan kept quiet */

#endif
