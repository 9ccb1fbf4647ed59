/* allreduce.c: the smallest loom program. Each rank contributes its rank number plus
 * one; every rank receives the sum. Start it under any launcher loom knows:
 *
 *     cc allreduce.c $(pkg-config --cflags --libs loom) -o allreduce
 *     loomrun -n 4 ./allreduce          (or mpirun -np 4, torchrun-style variables, ...)
 *
 * prints "rank 0 of 4: sum 10 (expected 10)" and so on, and exits 0 when right. */
#include <stdio.h>

#include <loom.h>

int main(void)
{
    loom_comm_t comm;
    loom_result_t r = loom_comm_init_env(&comm);
    if (r != LOOM_SUCCESS) {
        fprintf(stderr, "loom_comm_init_env: %s: %s\n", loom_strerror(r), loom_last_error(NULL));
        return 1;
    }
    int rank = loom_comm_rank(comm), n = loom_comm_size(comm);
    float mine = (float)(rank + 1), sum = 0;
    r = loom_allreduce(&mine, &sum, 1, LOOM_FLOAT32, LOOM_SUM, comm, NULL);   /* NULL stream: blocks */
    if (r != LOOM_SUCCESS) fprintf(stderr, "loom_allreduce: %s: %s\n", loom_strerror(r), loom_last_error(comm));
    else printf("rank %d of %d: sum %g (expected %d)\n", rank, n, sum, n * (n + 1) / 2);
    loom_comm_destroy(comm);
    return r == LOOM_SUCCESS && sum == n * (n + 1) / 2 ? 0 : 1;
}
