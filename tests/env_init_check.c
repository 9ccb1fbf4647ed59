/* env_init_check: one rank of a job started by a launcher (mpirun, loomrun, the netns
 * test, torchrun- or Slurm-style variables). It joins through loom_comm_init_env, runs
 * a few collectives whose results it can check exactly, and exits 0 when all are right.
 *
 *   env_init_check [NRANKS]     (NRANKS: the world size the launcher should have set)
 *
 * It is not a test by itself: test_mpirun.sh, test_netns.sh and test_loomrun.sh start
 * it, and it is what a user can run to see that a launcher and loom agree.
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "loom.h"

static int rank = -1;

#define FAIL(...) do { fprintf(stderr, "env_init_check: rank %d: ", rank); fprintf(stderr, __VA_ARGS__); \
    fputc('\n', stderr); return 1; } while (0)
#define OK(call) do { loom_result_t r_ = (call); if (r_ != LOOM_SUCCESS) \
    FAIL("%s: %s: %s", #call, loom_strerror(r_), loom_last_error(comm)); } while (0)

/* Sum over ranks q of (q + 1) * (i % 1000 + 1): distinct per element, exact in int64. */
static int check_allreduce(loom_comm_t comm, int n, size_t count)
{
    int64_t *a = malloc(count * sizeof *a), *b = malloc(count * sizeof *b);
    if (a == NULL || b == NULL) FAIL("out of memory");
    for (size_t i = 0; i < count; i++) a[i] = (int64_t)(rank + 1) * (int64_t)(i % 1000 + 1);
    OK(loom_allreduce(a, b, count, LOOM_INT64, LOOM_SUM, comm, NULL));
    int64_t ranks = (int64_t)n * (n + 1) / 2;
    for (size_t i = 0; i < count; i++)
        if (b[i] != ranks * (int64_t)(i % 1000 + 1))
            FAIL("allreduce of %zu int64: element %zu is %" PRId64 ", expected %" PRId64, count, i, b[i],
                 ranks * (int64_t)(i % 1000 + 1));
    free(a);
    free(b);
    return 0;
}

int main(int argc, char **argv)
{
    loom_comm_t comm = NULL;
    loom_result_t r = loom_comm_init_env(&comm);
    if (r != LOOM_SUCCESS) {
        fprintf(stderr, "env_init_check: loom_comm_init_env: %s: %s\n", loom_strerror(r), loom_last_error(NULL));
        return 1;
    }
    rank = loom_comm_rank(comm);
    int n = loom_comm_size(comm);
    if (argc > 1 && n != atoi(argv[1])) FAIL("world size is %d, expected %s", n, argv[1]);
    if (rank < 0 || rank >= n) FAIL("rank %d out of [0, %d)", rank, n);

    if (check_allreduce(comm, n, 1) || check_allreduce(comm, n, 4097) ||
        check_allreduce(comm, n, (1u << 20) + 3))
        return 1;

    /* Every rank appears once, in rank order. */
    int32_t me = rank, *all = calloc((size_t)n, sizeof *all);
    if (all == NULL) FAIL("out of memory");
    OK(loom_allgather(&me, all, 1, LOOM_INT32, comm, NULL));
    for (int q = 0; q < n; q++)
        if (all[q] != q) FAIL("allgather: slot %d holds %d", q, all[q]);

    /* The last rank's host name reaches everyone. */
    char host[64] = "", root_host[64] = "";
    gethostname(host, sizeof host - 1);
    if (rank == n - 1) memcpy(root_host, host, sizeof host);
    OK(loom_broadcast(root_host, root_host, sizeof root_host, LOOM_INT8, n - 1, comm, NULL));
    if (root_host[0] == '\0') FAIL("broadcast delivered an empty host name");

    /* Two sub-communicators: even and odd ranks (across hosts where ranks alternate),
       and the lower and upper halves (one host each in the netns test's a a b b job). */
    for (int way = 0; way < 2; way++) {
        loom_comm_t sub = NULL;
        int color = way == 0 ? rank % 2 : rank < n / 2;
        OK(loom_comm_split(comm, color, rank, &sub));
        int ns = loom_comm_size(sub);
        int32_t one = 1, sum = 0;
        OK(loom_allreduce(&one, &sum, 1, LOOM_INT32, LOOM_SUM, sub, NULL));
        if (sum != ns) FAIL("split %d: a sub-communicator of %d summed %d", way, ns, sum);
        OK(loom_comm_destroy(sub));
    }

    OK(loom_barrier(comm, NULL));
    printf("env_init_check: rank %d of %d on %s ok (rank %d is on %s)\n", rank, n, host, n - 1, root_host);
    fflush(stdout);
    OK(loom_comm_destroy(comm));
    free(all);
    return 0;
}
