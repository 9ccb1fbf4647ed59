/* test_place: loom's own placement of two ranks that share a CPU (algos/exec_host.c,
 * exec_move_off_cpu), not the kernel's.
 *
 * move    in one process: the call moves the thread to the next CPU of its mask and
 *         says where it landed, gives the mask back, counts the move; a second call
 *         within 10 ms does nothing, nor does one with a mask of one CPU (pinned).
 * decide  2 ranks, both put on CPU 0 at the start of each of 3 rounds of 50 small
 *         all-reduces: whenever the higher rank found its peer on its own CPU it moved
 *         (its comm counted a move), and the lower rank never moved. Where the kernel
 *         split the pair before either looked there is nothing to judge in that round;
 *         the kernel's placement after a move is not judged at all (it may put the
 *         ranks back together: its business, not loom's).
 * Skips (77) unless CPUs 0 and 1 are both available.
 */
#include <sched.h>
#include <string.h>
#include <time.h>

#include "comm.h"
#include "exec.h"
#include "harness.h"
#include "net.h"

static bool mask_is(const cpu_set_t *want)
{
    cpu_set_t now;
    return sched_getaffinity(0, sizeof now, &now) == 0 && CPU_EQUAL(&now, want);
}

static int move_case(void)
{
    int rank = -1;   /* for CHECK */
    static struct loom_comm c;      /* the call only uses moved_ns and moves */
    cpu_set_t two, one;
    CPU_ZERO(&two);
    CPU_SET(0, &two);
    CPU_SET(1, &two);
    CPU_ZERO(&one);
    CPU_SET(1, &one);
    CHECK(sched_setaffinity(0, sizeof two, &two) == 0);
    uint64_t now = net_now_ns();
    CHECK_EQ(exec_move_off_cpu(&c, 0, now), 1);
    CHECK(mask_is(&two));
    CHECK_EQ(c.moves, 1);
    CHECK_EQ(exec_move_off_cpu(&c, 1, now + 5000000), -1);          /* within 10 ms */
    CHECK_EQ(c.moves, 1);
    CHECK_EQ(exec_move_off_cpu(&c, 1, now + 11000000), 0);          /* wraps to CPU 0 */
    CHECK_EQ(c.moves, 2);
    CHECK(sched_setaffinity(0, sizeof one, &one) == 0);
    CHECK_EQ(exec_move_off_cpu(&c, 1, now + 30000000), -1);         /* pinned: left alone */
    CHECK(mask_is(&one));
    CHECK_EQ(c.moves, 2);
    CHECK(sched_setaffinity(0, sizeof two, &two) == 0);
    printf("move: ok\n");
    return 0;
}

static int decide_body(loom_comm_t comm, int rank, int n, void *arg)
{
    (void)arg;
    (void)n;
    cpu_set_t one, two;
    CPU_ZERO(&one);
    CPU_SET(0, &one);
    CPU_ZERO(&two);
    CPU_SET(0, &two);
    CPU_SET(1, &two);
    int judged = 0;
    for (int round = 0; round < 3; round++) {
        if (round > 0) nanosleep(&(struct timespec){ .tv_nsec = 12000000 }, NULL);   /* past the 10 ms limit */
        CHECK(sched_setaffinity(0, sizeof one, &one) == 0 && sched_getcpu() == 0);
        CHECK(sched_setaffinity(0, sizeof two, &two) == 0);
        uint32_t seen0 = comm->colocated_waits, moves0 = comm->moves;
        float v[2] = { 1, 2 };
        for (int i = 0; i < 50; i++) CHECK_OK(loom_allreduce(v, v, 2, LOOM_FLOAT32, LOOM_MAX, comm, NULL));
        int32_t mine[2] = { (int32_t)(comm->colocated_waits - seen0), (int32_t)(comm->moves - moves0) }, all[4];
        CHECK_OK(loom_allgather(mine, all, 2, LOOM_INT32, comm, NULL));
        if (rank == 0)
            printf("round %d: rank 0 found rank 1 on its CPU %d times and moved %d times; rank 1: %d and %d\n", round,
                   all[0], all[1], all[2], all[3]);
        CHECK_EQ(all[1], 0);                      /* the lower rank stays */
        if (all[2] > 0) {
            CHECK(all[3] >= 1);                   /* the higher rank saw it: it moved */
            judged++;
        }
    }
    if (rank == 0) printf("decide: %d of 3 rounds had something to judge\n", judged);
    return 0;
}

int main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    cpu_set_t mine;
    if (sched_getaffinity(0, sizeof mine, &mine) != 0 || !CPU_ISSET(0, &mine) || !CPU_ISSET(1, &mine)) {
        printf("colocated: skipped: CPUs 0 and 1 are not both available\n");
        return 77;
    }
    int fail = move_case();
    fail |= run_ranks("decide", 2, decide_body, NULL, NULL);
    return fail;
}
