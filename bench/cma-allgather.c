/* cma-allgather.c: the floor of a single-copy 2-rank all-gather on one host.
 *
 * Two processes (fork) each publish their block's address and then read the other's
 * block straight into their output with process_vm_readv (CMA: one kernel copy, the
 * mechanism Open MPI's vader uses above 4 KiB), after copying their own block into
 * their output (out of place, as loom-perf's first column). The hand-shakes are two
 * counters in shared memory, polled: nothing a library could do with less. If this
 * is no faster than loom's two-copy FIFO path, a CMA path in loom cannot lead either
 * (bench/RESULTS.md, issue 3).
 *
 *     cma-allgather [bytes per rank ...]      default 32K 64K 128K (K, M, G suffixes)
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "size.h"

struct shared {
    _Alignas(128) _Atomic uint64_t ready[2];   /* rank r's block is in place for call k */
    _Alignas(128) _Atomic uint64_t read[2];    /* rank r has read its peer's block      */
    _Alignas(128) uint64_t addr[2];
    int32_t pid[2];
};

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* One rank's run; returns microseconds per call, or -1 on failure. */
static double run(struct shared *sh, int r, size_t n, int warm, int iters)
{
    alarm(60);                                  /* a peer that failed must not leave us spinning */
    char *src = aligned_alloc(4096, n), *dst = aligned_alloc(4096, 2 * n);
    if (src == NULL || dst == NULL) return -1;
    memset(src, 'a' + r, n);
    memset(dst, 0, 2 * n);
    sh->pid[r] = (int32_t)getpid();
    sh->addr[r] = (uint64_t)(uintptr_t)src;
    double t0 = 0;
    for (int it = 0; it < warm + iters; it++) {
        uint64_t k = (uint64_t)it + 1;
        if (it == warm) t0 = now();
        atomic_store(&sh->ready[r], k);
        memcpy(dst + (size_t)r * n, src, n);
        while (atomic_load(&sh->ready[1 - r]) < k) {}
        struct iovec local = { dst + (size_t)(1 - r) * n, n }, remote = { (void *)(uintptr_t)sh->addr[1 - r], n };
        if (process_vm_readv(sh->pid[1 - r], &local, 1, &remote, 1, 0) != (ssize_t)n) {
            fprintf(stderr, "cma-allgather: process_vm_readv: %s\n", strerror(errno));
            return -1;
        }
        atomic_store(&sh->read[r], k);
        while (atomic_load(&sh->read[1 - r]) < k) {}     /* my block may change after this */
    }
    double us = (now() - t0) / iters * 1e6;
    for (size_t i = 0; i < 2 * n; i++)
        if (dst[i] != (char)('a' + (int)(i / n))) {
            fprintf(stderr, "cma-allgather: rank %d: byte %zu wrong\n", r, i);
            return -1;
        }
    free(src);
    free(dst);
    return us;
}

static void help(FILE *f)
{
    fprintf(f, "usage: cma-allgather [BYTES_PER_RANK ...]   (default 32K 64K 128K; K, M, G suffixes)\n"
               "  2 forked ranks all-gather with process_vm_readv, one copy: the floor of the single copy\n");
}

int main(int argc, char **argv)
{
    cli_scan(argc, argv, "cma-allgather", help, 0);
    size_t def[] = { 32 << 10, 64 << 10, 128 << 10 };
    int nsizes = argc > 1 ? argc - 1 : 3;
    printf("# 2 ranks, out of place; size = both blocks, as loom-perf -o allgather\n");
    printf("# %10s %10s %8s\n", "size (B)", "time (us)", "busbw");
    for (int s = 0; s < nsizes; s++) {
        size_t n = def[s];
        if (argc > 1 && (!bench_size(argv[s + 1], &n) || n == 0)) {
            fprintf(stderr, "cma-allgather: '%s' is not a size (bytes per rank: 65536, 64K, 1M)\n", argv[s + 1]);
            return 2;
        }
        struct shared *sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (sh == MAP_FAILED) return 1;
        pid_t pid = fork();
        if (pid < 0) return 1;
        if (pid == 0) _exit(run(sh, 1, n, 200, 2000) < 0);
        double us = run(sh, 0, n, 200, 2000);
        int st = 0;
        waitpid(pid, &st, 0);
        munmap(sh, sizeof *sh);
        if (us < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) return 1;
        printf("  %10zu %10.2f %8.2f\n", 2 * n, us, (double)n / us / 1e3);   /* (n-1)/n of 2n */
    }
    return 0;
}
