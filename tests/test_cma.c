/* test_cma.c: the single-copy path of a 2-rank all-gather on one host (algos/exec_host.c,
 * REMOTE_MIN_BYTES): a rank hands over its block's address, the peer copies it with
 * process_vm_readv.
 *
 * - The receiver's probe agrees with what the kernel allows: the link says "may read"
 *   exactly when this test itself can read the peer's memory (and never with LOOM_CMA=0).
 * - A rank's block stays valid until the peer has read it: every rank overwrites its
 *   input the moment its call returns (out of place: the send buffer; in place: its own
 *   block of the output), rank 1 arriving late now and then, and every output must
 *   still hold both blocks as they were. Without the wait at the end of the call the
 *   peer reads the overwritten bytes.
 * - A different count on the other rank, in the single-copy range, is refused as a
 *   mismatched all-gather, before anything is copied.
 *
 *     test_cma [on|off]        off: LOOM_CMA=0 (set here)
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "comm.h"
#include "harness.h"

enum { WORDS = 12 << 10, ITERS = 400 };       /* 48 KiB per rank: in the single-copy range */

static int32_t word(int it, int rank, int i) { return it * 1000003 + rank * 7919 + i; }

static int check_blocks(const int32_t *out, int it, int rank)
{
    for (int q = 0; q < 2; q++)
        for (int i = 0; i < WORDS; i++)
            if (out[q * WORDS + i] != word(it, q, i)) {
                fprintf(stderr, "rank %d: iteration %d: block %d word %d is %d, want %d\n", rank, it, q, i,
                        out[q * WORDS + i], word(it, q, i));
                return 1;
            }
    return 0;
}

/* Can this process read the peer's memory? (What the link's probe should have found.) */
static bool can_read_peer(struct loom_comm *c, int peer)
{
    uint8_t got[16];
    struct iovec l = { got, sizeof got }, r = { (void *)(uintptr_t)c->peers[peer].probe_addr, sizeof got };
    return process_vm_readv(c->peers[peer].pid, &l, 1, &r, 1, 0) == (ssize_t)sizeof got &&
           memcmp(got, c->secret, sizeof got) == 0;
}

static int body(loom_comm_t comm, int rank, int n, void *arg)
{
    bool on = *(const bool *)arg;
    int peer = 1 - rank;
    int32_t *send = malloc(sizeof *send * WORDS), *out = malloc(sizeof *out * 2 * WORDS);
    CHECK(send && out && n == 2);
    for (int it = 0; it < ITERS; it++) {
        bool in_place = it % 3 == 2;
        int32_t *mine = in_place ? out + rank * WORDS : send;
        for (int i = 0; i < WORDS; i++) mine[i] = word(it, rank, i);
        if (rank == 1 && it % 8 == 0) usleep(300);   /* rank 0 waits in its call */
        CHECK_OK(loom_allgather(mine, out, WORDS, LOOM_INT32, comm, NULL));
        memset(mine, 0xee, sizeof *mine * WORDS);    /* reuse the input at once */
        if (in_place) for (int i = 0; i < WORDS; i++) mine[i] = word(it, rank, i);
        if (check_blocks(out, it, rank)) return 1;
        if (it == 0) {
            struct loom_conn *in;
            CHECK_OK(comm_conn(comm, peer, false, &in));
            uint32_t said = atomic_load(&in->fifo.ctrl->remote_read);
            bool can = can_read_peer(comm, peer);
            printf("rank %d: this process %s read rank %d's memory; the link says %u\n", rank,
                   can ? "can" : "cannot", peer, said);
            CHECK_EQ(said, on && can ? 1 : 2);
        }
    }
    /* other counts on the two ranks: refused, nothing copied */
    size_t count = rank == 0 ? WORDS : WORDS - 16;
    memset(out, 0x5a, sizeof *out * 2 * WORDS);
    loom_result_t r = loom_allgather(send, out, count, LOOM_INT32, comm, NULL);
    CHECK_EQ(r, LOOM_ERR_INVALID_ARGUMENT);
    CHECK(strstr(loom_last_error(comm), "mismatched calls") && strstr(loom_last_error(comm), "allgather count"));
    CHECK(out[peer * (int)count] == 0x5a5a5a5a);
    free(send);
    free(out);
    return 0;
}

int main(int argc, char **argv)
{
    bool on = !(argc > 1 && strcmp(argv[1], "off") == 0);
    if (!on) setenv("LOOM_CMA", "0", 1);
    setenv("LOOM_TIMEOUT_MS", "30000", 1);           /* a lost wake-up fails, not hangs */
    struct run_opts o = { .timeout_s = 90 };
    return run_ranks(on ? "cma-on" : "cma-off", 2, body, &on, &o);
}
