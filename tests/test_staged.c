/* test_staged.c: the host half of device buffers staged over tcp, without a GPU.
 *
 * A staged link (runtime/cuda.c, transport/cuda_ipc.c) is a tcp connection of its own
 * (CONN_DATA_DEV) whose FIFO a CUDA kernel fills or drains with plain stores and
 * release/acquire counters, never kicking the progress thread: the progress thread
 * must poll while comm->staged_calls says such a kernel runs. Here a thread plays the
 * kernel on each side, exactly as exec_cuda.cu does (meta, then a release store of
 * tail; an acquire load of tail, then a release store of head; no futex, no kick), and
 * every slot must arrive whole and in order. The same ranks also run a host
 * all-reduce over their host links before and after, so the two kinds of links
 * coexist on one communicator. Bounded: a stalled progress thread fails the deadline.
 *
 *     test_staged [slots]      2 ranks, LOOM_TRANSPORT=tcp (set here)
 */
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "comm.h"
#include "harness.h"
#include "transport.h"

static int slots_to_move = 3000;

static int host_allreduce(loom_comm_t comm, int rank, int n)
{
    int32_t v[1000];
    for (int i = 0; i < 1000; i++) v[i] = rank + i;
    CHECK_OK(loom_allreduce(v, v, 1000, LOOM_INT32, LOOM_SUM, comm, NULL));
    for (int i = 0; i < 1000; i++) CHECK_EQ(v[i], n * (n - 1) / 2 + n * i);
    return 0;
}

static int body(loom_comm_t comm, int rank, int n, void *arg)
{
    (void)arg;
    if (host_allreduce(comm, rank, n)) return 1;
    struct loom_conn *conn;
    CHECK_OK(comm_dev_conn(comm, 1 - rank, rank == 0, &conn));
    CHECK(conn->dev && conn->proxied);
    struct fifo *f = &conn->fifo;
    size_t words = f->slot_bytes / 8;
    atomic_fetch_add(&comm->staged_calls, 1);            /* "a kernel runs" */
    progress_kick(comm->prog);
    double t0 = harness_now(), deadline = t0 + 60;
    for (uint32_t s = 0; s < (uint32_t)slots_to_move; s++) {
        if (rank == 0) {                                  /* the producing "kernel" */
            uint32_t t = atomic_load_explicit(&f->ctrl->tail, memory_order_relaxed);
            while (t - atomic_load_explicit(&f->ctrl->head, memory_order_acquire) >= f->nslots)
                CHECK(harness_now() < deadline);
            uint64_t *d = (uint64_t *)(f->data + (size_t)(t & (f->nslots - 1)) * f->slot_bytes);
            for (size_t i = 0; i < words; i++) d[i] = harness_word(s, i);
            f->ctrl->meta[t & (f->nslots - 1)] = (struct slot_meta){ .bytes = (uint32_t)f->slot_bytes,
                                                                     .kind = 7, .count = s, .seq = s, .root = -1 };
            atomic_store_explicit(&f->ctrl->tail, t + 1, memory_order_release);
        } else {                                          /* the consuming "kernel" */
            uint32_t h = atomic_load_explicit(&f->ctrl->head, memory_order_relaxed);
            while (atomic_load_explicit(&f->ctrl->tail, memory_order_acquire) == h) CHECK(harness_now() < deadline);
            const struct slot_meta *m = &f->ctrl->meta[h & (f->nslots - 1)];
            CHECK_EQ(m->bytes, f->slot_bytes);
            CHECK_EQ(m->seq, s);
            const uint64_t *d = (const uint64_t *)(f->data + (size_t)(h & (f->nslots - 1)) * f->slot_bytes);
            for (size_t i = 0; i < words; i++)
                if (d[i] != harness_word(s, i)) {
                    fprintf(stderr, "rank 1: slot %u word %zu is %llx, want %llx\n", s, i,
                            (unsigned long long)d[i], (unsigned long long)harness_word(s, i));
                    return 1;
                }
            atomic_store_explicit(&f->ctrl->head, h + 1, memory_order_release);
        }
    }
    atomic_fetch_sub(&comm->staged_calls, 1);
    double dt = harness_now() - t0;
    if (rank == 1)
        printf("staged: %d slots of %zu bytes through the progress threads in %.2f s (%.2f GB/s)\n", slots_to_move,
               f->slot_bytes, dt, (double)slots_to_move * (double)f->slot_bytes / dt / 1e9);
    return host_allreduce(comm, rank, n);
}

int main(int argc, char **argv)
{
    if (argc > 1) slots_to_move = atoi(argv[1]);
    setenv("LOOM_TRANSPORT", "tcp", 1);
    setenv("LOOM_SOCKET_IFNAME", "=lo", 1);
    struct run_opts o = { .timeout_s = 90 };
    int rc = run_ranks("staged", 2, body, NULL, &o);
    printf("staged: %s\n", rc ? "FAIL" : "ok");
    return rc ? 1 : 0;
}
