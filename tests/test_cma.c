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
 * - Which way each block went, as the library counted it on both links of each rank:
 *   always by address with LOOM_CMA=2, never with 0, and with 1 (the default) both
 *   ways, at least twice in each size class of the run (sizes 32 KiB-1 MiB per rank),
 *   the two ranks' blocks always the same way, even where the ranks would choose
 *   differently (mixed: rank 0 set to always); and the costs published for the choice
 *   are those of the ways taken.
 * - A different count on the other rank, in the single-copy range, is refused as a
 *   mismatched all-gather, before anything is copied.
 * - remote_choose, the choice itself: two measurements of each way first, then the
 *   cheaper (the last call's way until the other costs 10 % less), one call in 32 the
 *   other (in 128 when it costs 1.5x or more); an unmeasured way is measured.
 *
 *     test_cma on|off|always|mixed|choice     LOOM_CMA=1|0|2|rank 0 2, rank 1 1 (set
 *                                             here); choice: no ranks
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "comm.h"
#include "exec.h"
#include "harness.h"

enum { WORDS = 12 << 10, ITERS = 400 };  /* 48 KiB per rank: in the single-copy range */
enum { MAX_WORDS = 256 << 10, CLASSES = 6 };  /* on: 32 KiB << (it % 6) per rank, to 1 MiB */

static int32_t word(int it, int rank, size_t i) { return it * 1000003 + rank * 7919 + (int32_t)i; }

static int check_blocks(const int32_t *out, size_t words, int it, int rank)
{
    for (int q = 0; q < 2; q++)
        for (size_t i = 0; i < words; i++)
            if (out[q * words + i] != word(it, q, i)) {
                fprintf(stderr, "rank %d: iteration %d: block %d word %zu is %d, want %d\n", rank, it, q, i,
                        out[q * words + i], word(it, q, i));
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
           memcmp(got, c->key, sizeof got) == 0;
}

static int body(loom_comm_t comm, int rank, int n, void *arg)
{
    int mode = *(const int *)arg;                  /* LOOM_CMA, or 3: mixed */
    bool sweep = mode == 1 || mode == 3;           /* sizes 32 KiB-1 MiB per rank */
    /* mixed: rank 0 always by address, rank 1 by cost; a setting read at init, set
       here behind the library's back, so that the ranks would choose differently */
    if (mode == 3 && rank == 0) comm->cfg.remote_read = 2;
    int peer = 1 - rank;
    int32_t *send = malloc(sizeof *send * MAX_WORDS), *out = malloc(sizeof *out * 2 * MAX_WORDS);
    CHECK(send && out && n == 2);
    /* Two small calls first: after the second, the peer has mapped this rank's link and
       said whether it can read this process (else the first large call could still go
       through the FIFO, remote_read being 0 until then). */
    memset(send, 0, sizeof *send * 16);
    for (int i = 0; i < 2; i++) CHECK_OK(loom_allgather(send, out, 16, LOOM_INT32, comm, NULL));
    struct loom_conn *in, *to;
    CHECK_OK(comm_conn(comm, peer, false, &in));
    CHECK_OK(comm_conn(comm, peer, true, &to));
    int ways[2] = { 0, 0 };
    for (int it = 0; it < ITERS; it++) {
        int k = sweep ? it % CLASSES : 0;            /* the call's size class */
        size_t words = sweep ? (size_t)(8 << 10) << k : WORDS;
        bool in_place = it % 3 == 2;
        int32_t *mine = in_place ? out + rank * words : send;
        for (size_t i = 0; i < words; i++) mine[i] = word(it, rank, i);
        if (rank == 1 && it % 8 == 0) usleep(300);   /* rank 0 waits in its call */
        /* the way of each block, as the library counted it on this rank's two links */
        uint32_t sent = to->way_calls[k][1], got[2] = { in->way_calls[k][0], in->way_calls[k][1] };
        CHECK_OK(loom_allgather(mine, out, words, LOOM_INT32, comm, NULL));
        bool mine_fifo = to->way_calls[k][1] == sent, peer_fifo = in->way_calls[k][0] != got[0],
             peer_addr = in->way_calls[k][1] != got[1];
        if (peer_fifo == peer_addr || mine_fifo != peer_fifo) {
            fprintf(stderr, "rank %d: call %d: this rank's block went %s, the peer's %s\n", rank, it,
                    mine_fifo ? "through the FIFO" : "by address",
                    peer_fifo == peer_addr ? "both ways or none" : peer_fifo ? "through the FIFO" : "by address");
            return 1;
        }
        ways[peer_addr]++;
        memset(mine, 0xee, sizeof *mine * words);    /* reuse the input at once */
        if (in_place) for (size_t i = 0; i < words; i++) mine[i] = word(it, rank, i);
        if (check_blocks(out, words, it, rank)) return 1;
        if (it == 0) {
            uint32_t said = atomic_load(&in->fifo.ctrl->remote_read);
            bool can = can_read_peer(comm, peer);
            printf("rank %d: this process %s read rank %d's memory; the link says %u\n", rank,
                   can ? "can" : "cannot", peer, said);
            CHECK_EQ(said, mode && can ? 1 : 2);
            if (!can) mode = 0;                      /* then nothing goes by address */
        }
    }
    printf("rank %d: %d calls through the FIFO, %d by address, both ranks alike\n", rank, ways[0], ways[1]);
    if (mode == 0) CHECK_EQ(ways[1], 0);
    if (mode == 2) CHECK_EQ(ways[0], 0);
    if (mode == 1) CHECK(ways[0] >= 2 * CLASSES && ways[1] >= 2 * CLASSES);
    if (mode == 3) CHECK(ways[1] > 0);
    /* what this rank published of its calls' costs, by size class and way */
    for (int k = 0; k < (mode == 1 ? CLASSES : mode == 3 ? 0 : 1); k++) {
        uint32_t fifo = atomic_load(&to->fifo.ctrl->call_cost[k][0]), addr = atomic_load(&to->fifo.ctrl->call_cost[k][1]);
        printf("rank %d: class %d: ns per MiB through the FIFO %u, by address %u\n", rank, k, fifo, addr);
        if (mode == 0) CHECK(fifo == 0 && addr == 0);   /* nothing to choose */
        if (mode == 1) CHECK(fifo > 0 && addr > 0);
        if (mode == 2) CHECK(fifo == 0 && addr > 0);
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

/* The choice alone (algos/exec.h). */
static int choice(void)
{
    int rank = -1;                                    /* for CHECK's message: no ranks */
    /* calls 0-3: by address, FIFO, by address, FIFO, whatever was measured */
    for (uint32_t call = 0; call < 4; call++) CHECK_EQ(remote_choose(400, 1, 0, call), call % 2 == 0);
    /* then the cheaper, but one call in 32 measures the other way */
    int by_addr = 0, calls = 320;
    for (uint32_t call = 4; call < 4 + (uint32_t)calls; call++) by_addr += remote_choose(400, 300, -1, call);
    CHECK_EQ(by_addr, calls - calls / 32);
    by_addr = 0;
    for (uint32_t call = 4; call < 4 + (uint32_t)calls; call++) by_addr += remote_choose(400, 500, -1, call);
    CHECK_EQ(by_addr, calls / 32);
    by_addr = 0;                                      /* 2.5x dearer: one in 128 */
    for (uint32_t call = 4; call < 4 + (uint32_t)calls; call++) by_addr += remote_choose(400, 1000, -1, call);
    CHECK_EQ(by_addr, 2);
    CHECK(!remote_choose(400, 400, -1, 8));           /* a tie keeps the FIFO */
    /* the last call's way holds until the other costs 10 % less */
    CHECK(remote_choose(400, 430, 1, 8) && remote_choose(400, 444, 1, 8) && !remote_choose(400, 445, 1, 8));
    CHECK(!remote_choose(400, 370, 0, 8) && !remote_choose(400, 360, 0, 8) && remote_choose(400, 359, 0, 8));
    CHECK(!remote_choose(400, 300, 0, 31) && remote_choose(400, 500, 1, 31));   /* the other, measured */
    /* a way not measured yet (a cost published late): measure it */
    CHECK(remote_choose(400, 0, 0, 8) && !remote_choose(0, 1, 1, 8));
    CHECK(remote_choose(UINT64_MAX / 16, UINT64_MAX / 16 - 1, -1, 8));
    printf("remote_choose: as specified\n");
    return 0;
}

int main(int argc, char **argv)
{
    const char *m = argc > 1 ? argv[1] : "";
    if (strcmp(m, "choice") == 0) return choice();
    static const char *modes[] = { "off", "on", "always", "mixed" };
    int mode = -1;
    for (int i = 0; i < 4; i++)
        if (strcmp(m, modes[i]) == 0) mode = i;
    if (mode < 0) {
        fprintf(stderr, "usage: test_cma on|off|always|mixed|choice\n");
        return 2;
    }
    char v[2] = { (char)('0' + (mode == 3 ? 1 : mode)), 0 };
    setenv("LOOM_CMA", v, 1);
    setenv("LOOM_TIMEOUT_MS", "30000", 1);           /* a lost wake-up fails, not hangs */
    struct run_opts o = { .timeout_s = 90 };
    char name[16];
    snprintf(name, sizeof name, "cma-%s", m);
    return run_ranks(name, 2, body, &mode, &o);
}
