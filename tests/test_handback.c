/* test_handback.c: what a call on an all-tcp comm leaves unsent goes out after it.
 *
 * On a comm whose host links are all tcp, the executor moves the sockets' bytes itself
 * during a call (runtime/progress.c: progress_exec_begin .. _end), so a call may end
 * with slots its socket has not taken; the progress thread must send them afterwards
 * though the rank calls nothing more. Here each rank plays its executor by hand, so
 * the case is certain rather than a matter of timing: rank 0, inside begin .. end, posts
 * slots to rank 1 until its FIFO is full (rank 1 reads nothing meanwhile, so the socket
 * and rank 1's FIFO fill first and rank 0's last slots stay unsent), ends the "call" and
 * calls nothing more; rank 1 then takes every slot, driving its own link as an executor
 * does, and checks each byte. Heartbeats are 60 s apart: nothing but the hand-back at
 * the end of rank 0's "call" wakes its progress thread within the 20 s allowed.
 *
 *     test_handback      2 ranks, LOOM_TRANSPORT=tcp and LOOM_HEARTBEAT_MS=60000 (set here)
 */
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "comm.h"
#include "harness.h"
#include "transport.h"

static void path(char *buf, size_t len, const char *what)
{
    snprintf(buf, len, "/tmp/loom-handback-%d-%s", (int)getppid(), what);
}

/* Rank 0: post slots until the FIFO is full; returns how many, or -1. */
static int fill(loom_comm_t comm, int rank)
{
    struct loom_conn *out;
    CHECK_OK(comm_conn(comm, 1, true, &out));
    struct fifo *f = &out->fifo;
    int posted = 0;
    double until = harness_now() + 20;
    progress_exec_begin(comm->prog);
    /* full: no free slot, and a push after a pause moved nothing (the pipe is full) */
    for (;;) {
        char *slot = fifo_send_slot(f, f->slot_bytes);
        if (slot == NULL) {
            if (harness_now() > until) break;
            uint32_t h = atomic_load(&f->ctrl->head);
            usleep(50000);
            progress_conn_moved(comm->prog, out);
            if (atomic_load(&f->ctrl->head) == h) break;
            continue;
        }
        for (size_t i = 0; i < f->slot_bytes / 8; i++) ((uint64_t *)slot)[i] = harness_word((uint32_t)posted, i);
        struct slot_meta m = { .bytes = (uint32_t)f->slot_bytes, .kind = 7, .count = (uint64_t)posted,
                               .seq = (uint32_t)posted, .root = -1 };
        fifo_post(f, &m);
        progress_conn_moved(comm->prog, out);
        posted++;
    }
    bool left = out->tp->send_pending(out);
    progress_exec_end(comm->prog);
    printf("handback: posted %d slots, %u of them unsent when the call ended\n", posted,
           atomic_load(&f->ctrl->tail) - atomic_load(&f->ctrl->head));
    CHECK(left);            /* the case this test is about did arise */
    return posted;
}

/* Rank 1: take n slots, driving the link as an executor does. */
static int drain(loom_comm_t comm, int rank, int n)
{
    struct loom_conn *in;
    CHECK_OK(comm_conn(comm, 0, false, &in));
    struct fifo *f = &in->fifo;
    double until = harness_now() + 20;
    progress_exec_begin(comm->prog);
    for (int s = 0; s < n;) {
        struct slot_meta m;
        const char *slot = fifo_recv_slot(f, &m);
        if (slot == NULL) {
            CHECK(harness_now() < until);
            progress_drive(comm->prog, 10);
            continue;
        }
        CHECK_EQ(m.seq, s);
        CHECK_EQ(m.bytes, f->slot_bytes);
        for (size_t i = 0; i < f->slot_bytes / 8; i++) CHECK(((const uint64_t *)slot)[i] == harness_word((uint32_t)s, i));
        fifo_release(f);
        progress_conn_moved(comm->prog, in);
        s++;
    }
    progress_exec_end(comm->prog);
    return 0;
}

static int body(loom_comm_t comm, int rank, int n, void *arg)
{
    (void)arg;
    char count[96], done[96];
    path(count, sizeof count, "count");
    path(done, sizeof done, "done");
    int32_t v = rank;                                   /* both links up */
    CHECK_OK(loom_allreduce(&v, &v, 1, LOOM_INT32, LOOM_SUM, comm, NULL));
    CHECK_EQ(v, n * (n - 1) / 2);
    if (rank == 0) {
        int posted = fill(comm, rank);
        if (posted < 0) return 1;
        char tmp[112];
        snprintf(tmp, sizeof tmp, "%s.tmp", count);
        FILE *f = fopen(tmp, "w");
        CHECK(f != NULL);
        fprintf(f, "%d\n", posted);
        CHECK(fclose(f) == 0 && rename(tmp, count) == 0);   /* whole or not there */
        double until = harness_now() + 20;              /* calling nothing meanwhile */
        while (access(done, F_OK) != 0 && harness_now() < until) usleep(10000);
        CHECK(access(done, F_OK) == 0);
        unlink(count);
        unlink(done);
    } else {
        double until = harness_now() + 40;
        FILE *f = NULL;
        while ((f = fopen(count, "r")) == NULL && harness_now() < until) usleep(10000);
        CHECK(f != NULL);
        int posted = -1;
        CHECK(fscanf(f, "%d", &posted) == 1);
        fclose(f);
        if (drain(comm, rank, posted)) return 1;
        f = fopen(done, "w");
        CHECK(f != NULL);
        fclose(f);
    }
    return 0;
}

int main(void)
{
    setenv("LOOM_TRANSPORT", "tcp", 1);
    setenv("LOOM_HEARTBEAT_MS", "60000", 1);
    struct run_opts o = { .timeout_s = 120 };
    return run_ranks("handback", 2, body, NULL, &o) ? 1 : 0;
}
