/* size.h: the size argument of loom's bench programs, as nccl-tests writes it: digits,
 * then an optional K, M or G (powers of 1024). One parser for loom-perf, the peer
 * harnesses (mpi-perf, gloo-perf: C++ includes it too), cma-allgather and gpu-kernels. */
#ifndef LOOM_BENCH_SIZE_H
#define LOOM_BENCH_SIZE_H

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

/* *out = the size s says; false when s is not one (or past SIZE_MAX / 4). */
static inline bool bench_size(const char *s, size_t *out)
{
    char *end;
    if (*s < '0' || *s > '9') return false;
    unsigned long long v = strtoull(s, &end, 10), mult = 1;
    switch (*end) {
    case 'k': case 'K': mult = 1ull << 10; end++; break;
    case 'm': case 'M': mult = 1ull << 20; end++; break;
    case 'g': case 'G': mult = 1ull << 30; end++; break;
    default: break;
    }
    if (*end || v > (unsigned long long)(SIZE_MAX / 4) / mult) return false;
    *out = (size_t)(v * mult);
    return true;
}

#endif
