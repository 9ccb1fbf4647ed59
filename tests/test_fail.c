/* test_fail: failure semantics (issue 2, item 6), each case on its own ranks.
 *
 *   test_fail kill|stop|abort|abort-stream|leave|badargs|mismatch|strerror [shm|tcp]
 *
 * kill      rank 0 kills rank 1 (SIGKILL) 200 ms into a loop of large all-reduces:
 *           every survivor's call returns LOOM_ERR_REMOTE or LOOM_ERR_TIMEOUT less than
 *           5 s after the kill, loom_last_error names "rank 1" and the host, later calls
 *           fail within 1 s, destroy returns.
 * stop      the same with SIGSTOP and LOOM_TIMEOUT_MS=2000: survivors fail within
 *           timeout + 3 s naming rank 1; then rank 0 kills the stopped rank.
 * abort     rank 0 blocks in an all-reduce that rank 1 never calls; a second thread
 *           calls loom_comm_abort: it returns within 1 s and so does the blocked call,
 *           with LOOM_ERR_ABORTED, its output untouched.
 * abort-stream  the same with four such all-reduces queued on a host stream (one
 *           blocked in the stream's worker, three waiting their turn): abort returns
 *           within 1 s, loom_stream_sync within 1 s of it with LOOM_ERR_ABORTED, no
 *           output touched, the stream destroys cleanly.
 * badargs   every bad argument of every call returns LOOM_ERR_INVALID_ARGUMENT,
 *           names the call in loom_last_error and changes no buffer; the communicator
 *           still works afterwards.
 * mismatch  rank 1 passes another count (or dtype) than the others: every rank gets
 *           LOOM_ERR_INVALID_ARGUMENT, no rank hangs, no output is written.
 * leave     rank 1 destroys its communicator while rank 0 waits for it: LOOM_ERR_REMOTE
 *           within seconds, naming rank 1.
 * strerror  every result code has a distinct message; loom_last_error is never NULL.
 * leftovers 40 runs in which a rank is killed (SIGKILL) at a random moment of its first
 *           calls, while the links are half made (the maker of a FIFO before its peer
 *           mapped it, or the other way round): the survivor fails naming it, and
 *           nothing is left in /dev/shm or /tmp, nor in the survivor's descriptors.
 *
 * Ranks learn each other's pids through an all-gather; the killer records when it
 * struck in memory shared by all ranks (MAP_SHARED before the fork), so each survivor
 * measures its own delay from the same CLOCK_MONOTONIC instant.
 */
#include <dirent.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "harness.h"

/* Shared by every rank of one run (and the parent). */
struct shared {
    _Atomic int64_t strike_ns;   /* when rank 1 was killed/stopped; 0 = not yet */
    atomic_int survivors_done;   /* survivors that have seen their error       */
    atomic_int flag;             /* abort case: rank 0 is finished              */
};

static struct shared *sh;

static int64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static double since_s(int64_t t0) { return (double)(now_ns() - t0) * 1e-9; }

static void sleep_ms(int ms) { usleep((useconds_t)ms * 1000); }

static void reset_shared(void) { memset(sh, 0, sizeof *sh); }

/* The ranks init themselves (run_opts.no_comm): these cases destroy or abort the
   communicator themselves, or must not destroy it at all. */
static int init(loom_comm_t *comm, int rank, int n)
{
    loom_result_t r = loom_comm_init(comm, n, &harness_id, rank);
    if (r != LOOM_SUCCESS) {
        fprintf(stderr, "rank %d: loom_comm_init: %s: %s\n", rank, loom_strerror(r), loom_last_error(NULL));
        return 1;
    }
    return 0;
}

static int gather_pids(loom_comm_t comm, int rank, int64_t *pids)
{
    int64_t me = (int64_t)getpid();
    CHECK_OK(loom_allgather(&me, pids, 1, LOOM_INT64, comm, NULL));
    return 0;
}

/* ---- kill and stop: a dead or stopped peer ---- */

struct striker {
    pid_t victim;
    int sig;
    int nsurvivors;
    int delay_ms;
    pthread_t th;
};

/* Rank 0's second thread: strike rank 1, and for SIGSTOP kill it once every
   survivor has seen its error (or after 30 s). */
static void *strike(void *p)
{
    struct striker *s = p;
    sleep_ms(s->delay_ms);
    atomic_store(&sh->strike_ns, now_ns());
    if (kill(s->victim, s->sig) != 0) perror("kill");
    if (s->sig == SIGSTOP) {
        int64_t t0 = now_ns();
        while (atomic_load(&sh->survivors_done) < s->nsurvivors && since_s(t0) < 30) sleep_ms(10);
        kill(s->victim, SIGKILL);
    }
    return NULL;
}

struct peer_fail_arg {
    int sig;           /* SIGKILL or SIGSTOP */
    double limit_s;    /* survivors must fail this soon after the strike */
};

/* What a survivor checks once its call has failed at t_err. */
static int check_survivor(loom_comm_t comm, int rank, const struct peer_fail_arg *a, loom_result_t r,
                          int iters, int64_t t_err, float *send, float *recv)
{
    const char *what = a->sig == SIGKILL ? "kill" : "stop";
    int64_t strike = atomic_load(&sh->strike_ns);
    char host[256] = "";
    gethostname(host, sizeof host - 1);
    const char *msg = loom_last_error(comm);
    printf("%s: rank %d: %s after %d all-reduces, %.3f s after the %s: %s\n", what, rank, loom_strerror(r),
           iters, strike ? (double)(t_err - strike) * 1e-9 : -1.0, what, msg);
    fflush(stdout);
    CHECK(r == LOOM_ERR_REMOTE || r == LOOM_ERR_TIMEOUT);
    CHECK(strike != 0);                             /* no failure before rank 1 was struck */
    double delay = (double)(t_err - strike) * 1e-9;
    if (delay > a->limit_s) {
        fprintf(stderr, "%s: rank %d: the call failed %.3f s after the %s (limit %.1f s)\n", what, rank, delay,
                what, a->limit_s);
        return 1;
    }
    CHECK(msg != NULL && strstr(msg, "rank 1") != NULL);   /* names the rank that was struck */
    CHECK(strstr(msg, host) != NULL);                      /* and its host */
    CHECK(loom_comm_get_error(comm) != LOOM_SUCCESS);

    /* Later calls fail at once, and with a message. */
    int64_t t1 = now_ns();
    loom_result_t r2 = loom_allreduce(send, recv, 16, LOOM_FLOAT32, LOOM_SUM, comm, NULL);
    loom_result_t r3 = loom_barrier(comm, NULL);
    double later = since_s(t1);
    CHECK(r2 != LOOM_SUCCESS);
    CHECK(r3 != LOOM_SUCCESS);
    if (later > 1.0) {
        fprintf(stderr, "%s: rank %d: later calls took %.3f s to fail\n", what, rank, later);
        return 1;
    }
    CHECK(strlen(loom_last_error(comm)) > 0);
    return 0;
}

static int peer_fail(loom_comm_t comm, int rank, int n, void *argp)
{
    const struct peer_fail_arg *a = argp;
    if (init(&comm, rank, n)) return 1;
    int64_t pids[64];
    if (gather_pids(comm, rank, pids)) return 1;
    size_t count = 4u << 20;   /* 16 MiB of float32 per rank: a call takes a while */
    float *send = malloc(count * sizeof *send), *recv = malloc(count * sizeof *recv);
    CHECK(send && recv);
    for (size_t i = 0; i < count; i++) send[i] = (float)((i + (size_t)rank) % 7);
    CHECK_OK(loom_barrier(comm, NULL));

    struct striker s = { .victim = (pid_t)pids[1], .sig = a->sig, .nsurvivors = n - 1, .delay_ms = 200 };
    if (rank == 0) CHECK(pthread_create(&s.th, NULL, strike, &s) == 0);

    /* Loop until a call fails; rank 1 loops until it is struck. */
    int64_t t0 = now_ns();
    loom_result_t r = LOOM_SUCCESS;
    int iters = 0;
    while (r == LOOM_SUCCESS && since_s(t0) < 40) {
        r = loom_allreduce(send, recv, count, LOOM_FLOAT32, LOOM_SUM, comm, NULL);
        iters += r == LOOM_SUCCESS;
    }
    int64_t t_err = now_ns();
    if (rank == 1) {           /* not struck, or failed first: wait for the strike */
        fprintf(stderr, "rank 1: still running after %d all-reduces (last: %s); waiting to be %s\n", iters,
                loom_strerror(r), a->sig == SIGKILL ? "killed" : "stopped");
        for (;;) pause();
    }
    atomic_fetch_add(&sh->survivors_done, 1);   /* lets the striker kill a stopped rank 1 */
    int rc = check_survivor(comm, rank, a, r, iters, t_err, send, recv);
    if (rank == 0) pthread_join(s.th, NULL);
    if (rc) return rc;
    int64_t t2 = now_ns();
    loom_comm_destroy(comm);
    double d = since_s(t2);
    if (d > 5.0) {
        fprintf(stderr, "rank %d: loom_comm_destroy took %.3f s after the failure\n", rank, d);
        return 1;
    }
    free(send);
    free(recv);
    return 0;
}

/* ---- abort from another thread ---- */

struct aborter {
    loom_comm_t comm;
    int64_t t_start, t_end;
    loom_result_t r;
    pthread_t th;
};

static void *do_abort(void *p)
{
    struct aborter *a = p;
    sleep_ms(300);
    a->t_start = now_ns();
    a->r = loom_comm_abort(a->comm);
    a->t_end = now_ns();
    return NULL;
}

/* arg non-NULL: the all-reduces are queued on a host stream (abort-stream). */
static int abort_case(loom_comm_t comm, int rank, int n, void *arg)
{
    bool on_stream = arg != NULL;
    if (init(&comm, rank, n)) return 1;
    CHECK_OK(loom_barrier(comm, NULL));   /* connected and in step */
    if (rank != 0) {
        /* Never join the all-reduce; stay alive until rank 0 is done. */
        int64_t t0 = now_ns();
        while (!atomic_load(&sh->flag) && since_s(t0) < 30) sleep_ms(10);
        CHECK(atomic_load(&sh->flag));
        int64_t t1 = now_ns();
        loom_comm_destroy(comm);
        CHECK(since_s(t1) < 5.0);
        return 0;
    }
    size_t count = 1u << 20;
    float *send = malloc(count * sizeof *send), *recv = malloc(count * sizeof *recv);
    CHECK(send && recv);
    for (size_t i = 0; i < count; i++) send[i] = 1.0f;
    memset(recv, 0xa5, count * sizeof *recv);
    struct aborter a = { .comm = comm };
    loom_stream_t s = NULL;
    if (on_stream) CHECK_OK(loom_stream_create(&s));
    CHECK(pthread_create(&a.th, NULL, do_abort, &a) == 0);
    int64_t t0 = now_ns();
    loom_result_t r = loom_allreduce(send, recv, count, LOOM_FLOAT32, LOOM_SUM, comm, s);
    if (on_stream) {
        for (int k = 1; k < 4 && r == LOOM_SUCCESS; k++)
            r = loom_allreduce(send, recv, count, LOOM_FLOAT32, LOOM_SUM, comm, s);
        CHECK_OK(r);                      /* queued, not run */
        r = loom_stream_sync(s);
    }
    int64_t t_ret = now_ns();
    pthread_join(a.th, NULL);
    atomic_store(&sh->flag, 1);
    /* comm is gone after loom_comm_abort: not touched again. */
    double abort_took = (double)(a.t_end - a.t_start) * 1e-9;
    double call_after = (double)(t_ret - a.t_start) * 1e-9;
    printf("abort: the blocked %s returned %s %.3f s after loom_comm_abort began (%.3f s in the call); "
           "abort returned %s in %.3f s\n", on_stream ? "stream (4 calls queued)" : "call", loom_strerror(r),
           call_after, (double)(t_ret - t0) * 1e-9, loom_strerror(a.r), abort_took);
    if (on_stream) CHECK_OK(loom_stream_destroy(s));
    CHECK_EQ(a.r, LOOM_SUCCESS);
    CHECK_EQ(r, LOOM_ERR_ABORTED);
    CHECK(t_ret >= a.t_start);     /* it did block until the abort */
    CHECK(abort_took < 1.0);
    CHECK(call_after < 1.0);
    for (size_t i = 0; i < count * sizeof *recv; i++)
        if (((unsigned char *)recv)[i] != 0xa5) {
            fprintf(stderr, "abort: output byte %zu written by a call that failed\n", i);
            return 1;
        }
    free(send);
    free(recv);
    return 0;
}

/* ---- bad arguments ---- */

#define BCOUNT 16
static unsigned char bsend[BCOUNT * 64 * 8], brecv[BCOUNT * 64 * 8];

static void bfill(void)
{
    for (size_t i = 0; i < sizeof bsend; i++) bsend[i] = (unsigned char)(i * 7 + 1);
    memset(brecv, 0xa5, sizeof brecv);
}

static long bchanged(void)
{
    for (size_t i = 0; i < sizeof bsend; i++)
        if (bsend[i] != (unsigned char)(i * 7 + 1)) return (long)i;
    for (size_t i = 0; i < sizeof brecv; i++)
        if (brecv[i] != 0xa5) return (long)(sizeof bsend + i);
    return -1;
}

/* The call must fail with INVALID_ARGUMENT, say which function failed, and leave both
   buffers as they were. A failure is printed and counted, and the checks go on, so one
   run lists every bad argument that got through. bad_ctx says which loop value is in use. */
static char bad_ctx[64];

#define BAD(fname, errcomm, call) do {                                                         \
    bfill();                                                                                   \
    loom_result_t r_ = (call);                                                                 \
    const char *m_ = loom_last_error(errcomm);                                                 \
    long at_ = bchanged();                                                                     \
    if (r_ != LOOM_ERR_INVALID_ARGUMENT)                                                       \
        fprintf(stderr, "%s:%d: rank %d: %s%s returned %s, expected LOOM_ERR_INVALID_ARGUMENT (%s)\n", \
                __FILE__, __LINE__, rank, #call, bad_ctx, loom_strerror(r_), m_);              \
    else if (at_ >= 0)                                                                         \
        fprintf(stderr, "%s:%d: rank %d: %s%s changed a buffer (byte %ld)\n", __FILE__, __LINE__, \
                rank, #call, bad_ctx, at_);                                                    \
    else if (m_ == NULL || strstr(m_, fname) == NULL)                                          \
        fprintf(stderr, "%s:%d: rank %d: %s%s: loom_last_error does not name %s: '%s'\n",      \
                __FILE__, __LINE__, rank, #call, bad_ctx, fname, m_ ? m_ : "(null)");          \
    if (r_ != LOOM_ERR_INVALID_ARGUMENT || at_ >= 0 || m_ == NULL || strstr(m_, fname) == NULL) \
        nfail++;                                                                               \
    nbad++;                                                                                    \
} while (0)

static int badargs(loom_comm_t comm, int rank, int n, void *arg)
{
    (void)arg;
    const size_t c = BCOUNT, huge = SIZE_MAX / 2;
    const loom_dtype_t F = LOOM_FLOAT32, D = LOOM_FLOAT64;
    void *s = bsend, *r = brecv;
    int nbad = 0, nfail = 0;
    const loom_dtype_t bad_dts[] = { (loom_dtype_t)42, LOOM_NUM_DTYPES, (loom_dtype_t)-1 };
    const loom_op_t bad_ops[] = { (loom_op_t)42, LOOM_NUM_OPS, (loom_op_t)-1 };
    const int bad_ranks[] = { -1, n, n + 100, INT_MAX };
    /* count x n elements of float64 overflow, count alone does not */
    size_t per_rank_huge = (size_t)PTRDIFF_MAX / 8 / (size_t)n + 1;

    /* NULL buffers with count > 0 */
    BAD("loom_allreduce", comm, loom_allreduce(NULL, r, c, F, LOOM_SUM, comm, NULL));
    BAD("loom_allreduce", comm, loom_allreduce(s, NULL, c, F, LOOM_SUM, comm, NULL));
    BAD("loom_reduce", comm, loom_reduce(NULL, r, c, F, LOOM_SUM, 0, comm, NULL));
    if (rank == 0) BAD("loom_reduce", comm, loom_reduce(s, NULL, c, F, LOOM_SUM, 0, comm, NULL));
    if (rank == 0) BAD("loom_broadcast", comm, loom_broadcast(NULL, r, c, F, 0, comm, NULL));
    BAD("loom_broadcast", comm, loom_broadcast(s, NULL, c, F, 0, comm, NULL));
    BAD("loom_allgather", comm, loom_allgather(NULL, r, c, F, comm, NULL));
    BAD("loom_allgather", comm, loom_allgather(s, NULL, c, F, comm, NULL));
    BAD("loom_reduce_scatter", comm, loom_reduce_scatter(NULL, r, c, F, LOOM_SUM, comm, NULL));
    BAD("loom_reduce_scatter", comm, loom_reduce_scatter(s, NULL, c, F, LOOM_SUM, comm, NULL));
    BAD("loom_alltoall", comm, loom_alltoall(NULL, r, c, F, comm, NULL));
    BAD("loom_alltoall", comm, loom_alltoall(s, NULL, c, F, comm, NULL));
    BAD("loom_send", comm, loom_send(NULL, c, F, (rank + 1) % n, comm, NULL));
    BAD("loom_recv", comm, loom_recv(NULL, c, F, (rank + 1) % n, comm, NULL));

    /* unknown dtype */
    for (size_t i = 0; i < sizeof bad_dts / sizeof bad_dts[0]; i++) {
        loom_dtype_t dt = bad_dts[i];
        snprintf(bad_ctx, sizeof bad_ctx, " with dtype %d", (int)dt);
        BAD("loom_allreduce", comm, loom_allreduce(s, r, c, dt, LOOM_SUM, comm, NULL));
        BAD("loom_reduce", comm, loom_reduce(s, r, c, dt, LOOM_SUM, 0, comm, NULL));
        BAD("loom_broadcast", comm, loom_broadcast(s, r, c, dt, 0, comm, NULL));
        BAD("loom_allgather", comm, loom_allgather(s, r, c, dt, comm, NULL));
        BAD("loom_reduce_scatter", comm, loom_reduce_scatter(s, r, c, dt, LOOM_SUM, comm, NULL));
        BAD("loom_alltoall", comm, loom_alltoall(s, r, c, dt, comm, NULL));
        BAD("loom_send", comm, loom_send(s, c, dt, (rank + 1) % n, comm, NULL));
        BAD("loom_recv", comm, loom_recv(r, c, dt, (rank + 1) % n, comm, NULL));
    }
    CHECK(loom_dtype_size((loom_dtype_t)42) == 0);
    CHECK(loom_dtype_name((loom_dtype_t)42) == NULL);
    CHECK(loom_op_name((loom_op_t)42) == NULL);

    /* unknown op */
    for (size_t i = 0; i < sizeof bad_ops / sizeof bad_ops[0]; i++) {
        loom_op_t op = bad_ops[i];
        snprintf(bad_ctx, sizeof bad_ctx, " with op %d", (int)op);
        BAD("loom_allreduce", comm, loom_allreduce(s, r, c, F, op, comm, NULL));
        BAD("loom_reduce", comm, loom_reduce(s, r, c, F, op, 0, comm, NULL));
        BAD("loom_reduce_scatter", comm, loom_reduce_scatter(s, r, c, F, op, comm, NULL));
    }

    /* root and peer out of range */
    for (size_t i = 0; i < sizeof bad_ranks / sizeof bad_ranks[0]; i++) {
        int q = bad_ranks[i];
        snprintf(bad_ctx, sizeof bad_ctx, " with root/peer %d", q);
        BAD("loom_reduce", comm, loom_reduce(s, r, c, F, LOOM_SUM, q, comm, NULL));
        BAD("loom_broadcast", comm, loom_broadcast(s, r, c, F, q, comm, NULL));
        BAD("loom_send", comm, loom_send(s, c, F, q, comm, NULL));
        BAD("loom_recv", comm, loom_recv(r, c, F, q, comm, NULL));
    }

    bad_ctx[0] = '\0';

    /* sizes that overflow */
    BAD("loom_allreduce", comm, loom_allreduce(s, r, huge, D, LOOM_SUM, comm, NULL));
    BAD("loom_reduce", comm, loom_reduce(s, r, huge, D, LOOM_SUM, 0, comm, NULL));
    BAD("loom_broadcast", comm, loom_broadcast(s, r, huge, D, 0, comm, NULL));
    BAD("loom_allgather", comm, loom_allgather(s, r, huge, D, comm, NULL));
    BAD("loom_reduce_scatter", comm, loom_reduce_scatter(s, r, huge, D, LOOM_SUM, comm, NULL));
    BAD("loom_alltoall", comm, loom_alltoall(s, r, huge, D, comm, NULL));
    BAD("loom_send", comm, loom_send(s, huge, D, (rank + 1) % n, comm, NULL));
    BAD("loom_recv", comm, loom_recv(r, huge, D, (rank + 1) % n, comm, NULL));
    if (n > 1) {
        BAD("loom_allgather", comm, loom_allgather(s, r, per_rank_huge, D, comm, NULL));
        BAD("loom_reduce_scatter", comm, loom_reduce_scatter(s, r, per_rank_huge, D, LOOM_SUM, comm, NULL));
        BAD("loom_alltoall", comm, loom_alltoall(s, r, per_rank_huge, D, comm, NULL));
    }

    /* NULL communicator (the detail goes to the thread's last error) */
    BAD("loom_allreduce", NULL, loom_allreduce(s, r, c, F, LOOM_SUM, NULL, NULL));
    BAD("loom_reduce", NULL, loom_reduce(s, r, c, F, LOOM_SUM, 0, NULL, NULL));
    BAD("loom_broadcast", NULL, loom_broadcast(s, r, c, F, 0, NULL, NULL));
    BAD("loom_allgather", NULL, loom_allgather(s, r, c, F, NULL, NULL));
    BAD("loom_reduce_scatter", NULL, loom_reduce_scatter(s, r, c, F, LOOM_SUM, NULL, NULL));
    BAD("loom_alltoall", NULL, loom_alltoall(s, r, c, F, NULL, NULL));
    BAD("loom_send", NULL, loom_send(s, c, F, 0, NULL, NULL));
    BAD("loom_recv", NULL, loom_recv(r, c, F, 0, NULL, NULL));
    BAD("loom_barrier", NULL, loom_barrier(NULL, NULL));
    loom_comm_t nc = (loom_comm_t)r;   /* must stay as it is */
    BAD("loom_comm_split", NULL, loom_comm_split(NULL, 0, 0, &nc));
    CHECK(nc == (loom_comm_t)r);
    BAD("loom_comm_destroy", NULL, loom_comm_destroy(NULL));
    BAD("loom_comm_abort", NULL, loom_comm_abort(NULL));

    /* A bad call inside a group leaves the group usable: the group below is empty. */
    CHECK_OK(loom_group_start());
    BAD("loom_send", comm, loom_send(s, c, F, n, comm, NULL));
    CHECK_OK(loom_group_end());

    if (nfail) {
        fprintf(stderr, "badargs: rank %d: %d of %d bad calls were not rejected cleanly\n", rank, nfail, nbad);
        return 1;
    }

    /* Nothing above broke the communicator or used up a call: it still works. */
    CHECK_EQ(loom_comm_get_error(comm), LOOM_SUCCESS);
    int64_t in[BCOUNT], out[BCOUNT];
    for (int i = 0; i < BCOUNT; i++) in[i] = rank * 100 + i;
    CHECK_OK(loom_allreduce(in, out, BCOUNT, LOOM_INT64, LOOM_SUM, comm, NULL));
    for (int i = 0; i < BCOUNT; i++) CHECK_EQ(out[i], 100LL * n * (n - 1) / 2 + (long long)n * i);
    int64_t root_val = -1;
    if (rank == n - 1) root_val = 4242;
    CHECK_OK(loom_broadcast(&root_val, &root_val, 1, LOOM_INT64, n - 1, comm, NULL));
    CHECK_EQ(root_val, 4242);
    if (rank == 0) printf("badargs: %d bad calls rejected on %d ranks; the communicator still works\n", nbad, n);
    return 0;
}

/* ---- different arguments on different ranks ---- */

struct mismatch_arg {
    const char *what;
    size_t count[2];            /* count of rank 1, count of the others */
    loom_dtype_t dt[2];
};

static int mismatch(loom_comm_t comm, int rank, int n, void *argp)
{
    const struct mismatch_arg *a = argp;
    (void)n;
    int odd = rank == 1 ? 0 : 1;
    size_t count = a->count[odd];
    loom_dtype_t dt = a->dt[odd];
    size_t bytes = count * loom_dtype_size(dt);
    unsigned char *send = malloc(bytes), *recv = malloc(bytes);
    CHECK(send && recv);
    memset(send, 1, bytes);
    memset(recv, 0xa5, bytes);
    int64_t t0 = now_ns();
    loom_result_t r = loom_allreduce(send, recv, count, dt, LOOM_SUM, comm, NULL);
    printf("mismatch (%s): rank %d: allreduce of %zu %s returned %s after %.3f s: %s\n", a->what, rank, count,
           loom_dtype_name(dt), loom_strerror(r), since_s(t0), loom_last_error(comm));
    fflush(stdout);
    /* Every rank, not only the neighbours of rank 1, learns what went wrong. */
    CHECK_EQ(r, LOOM_ERR_INVALID_ARGUMENT);
    CHECK(strstr(loom_last_error(comm), "mismatch") != NULL);
    for (size_t i = 0; i < bytes; i++)
        if (recv[i] != 0xa5) {
            fprintf(stderr, "mismatch: rank %d: output byte %zu written by a failed call\n", rank, i);
            return 1;
        }
    /* The communicator is now broken: later calls fail at once. */
    CHECK(loom_barrier(comm, NULL) != LOOM_SUCCESS);
    free(send);
    free(recv);
    return 0;
}

/* ---- result codes and messages ---- */

static int strerror_case(void)
{
    int rank = 0;
    const char *seen[LOOM_NUM_RESULTS];
    for (int i = 0; i < LOOM_NUM_RESULTS; i++) {
        seen[i] = loom_strerror((loom_result_t)i);
        CHECK(seen[i] != NULL && seen[i][0] != '\0');
        for (int j = 0; j < i; j++)
            if (strcmp(seen[i], seen[j]) == 0) {
                fprintf(stderr, "strerror: codes %d and %d share the message '%s'\n", j, i, seen[i]);
                return 1;
            }
    }
    CHECK(loom_strerror((loom_result_t)LOOM_NUM_RESULTS) != NULL);
    CHECK(loom_strerror((loom_result_t)1000) != NULL);
    CHECK(loom_strerror((loom_result_t)-1) != NULL);
    CHECK(loom_last_error(NULL) != NULL);
    loom_id_t id;
    CHECK_EQ(loom_id_from_string("not an id", &id), LOOM_ERR_INVALID_ARGUMENT);
    CHECK(loom_last_error(NULL) != NULL && loom_last_error(NULL)[0] != '\0');
    printf("strerror: %d distinct messages\n", (int)LOOM_NUM_RESULTS);
    return 0;
}

/* ---- a peer leaves: it destroys its communicator while this rank waits for it ---- */

static int leave_case(loom_comm_t comm, int rank, int n, void *arg)
{
    (void)arg;
    if (init(&comm, rank, n)) return 1;
    if (rank == 1) {
        sleep_ms(200);
        CHECK_OK(loom_comm_destroy(comm));
        return 0;
    }
    float x = 1, y = 0;
    int64_t t0 = now_ns();
    loom_result_t r = loom_allreduce(&x, &y, 1, LOOM_FLOAT32, LOOM_SUM, comm, NULL);
    printf("leave: rank 0: %s after %.2f s: %s\n", loom_strerror(r), since_s(t0), loom_last_error(comm));
    CHECK_EQ(r, LOOM_ERR_REMOTE);
    CHECK(since_s(t0) < 3);
    CHECK(strstr(loom_last_error(comm), "rank 1") != NULL);
    CHECK(y == 0);
    loom_comm_destroy(comm);
    return 0;
}

/* ---- main ---- */

/* ---- leftovers ---- */

/* Names in dir starting with prefix (-1: unreadable). */
static int count_names(const char *dir, const char *prefix)
{
    DIR *d = opendir(dir);
    if (d == NULL) return -1;
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) n += strncmp(e->d_name, prefix, strlen(prefix)) == 0;
    closedir(d);
    return n;
}

static int open_fds(void) { return count_names("/proc/self/fd", ""); }

static int leftover_body(loom_comm_t unused, int rank, int n, void *arg)
{
    (void)unused;
    (void)n;
    int run = *(int *)arg, victim = run % 2;            /* the FIFOs' maker, or its peer */
    int fds0 = open_fds();
    loom_comm_t comm = NULL;
    CHECK_OK(loom_comm_init(&comm, 2, &harness_id, rank));
    if (rank == victim) {
        /* die somewhere in the first calls: before, while or after links are made */
        pid_t me = getpid();
        if (fork() == 0) {
            usleep((useconds_t)(run * 137 % 3000));
            kill(me, SIGKILL);
            _exit(0);
        }
    }
    static char buf[1 << 20], out[1 << 20];
    loom_result_t r = LOOM_SUCCESS;
    for (int i = 0; i < 200 && r == LOOM_SUCCESS; i++)
        r = loom_allreduce(buf, out, sizeof buf / 4, LOOM_FLOAT32, LOOM_SUM, comm, NULL);
    if (rank == victim) pause();                        /* the killer is on its way */
    CHECK(r == LOOM_ERR_REMOTE || r == LOOM_ERR_TIMEOUT);
    CHECK(strstr(loom_last_error(comm), "rank 1") || strstr(loom_last_error(comm), "rank 0"));
    loom_comm_destroy(comm);
    CHECK_EQ(open_fds(), fds0);                         /* nothing held after destroy */
    return 0;
}

static int leftovers(const char *name, struct run_opts *o)
{
    int rank = -1;   /* for CHECK */
    int shm0 = count_names("/dev/shm", "loom"), tmp0 = count_names("/tmp", "loom-id");
    int fail = 0;
    setenv("LOOM_TIMEOUT_MS", "10000", 1);
    for (int run = 0; run < 40 && !fail; run++) {
        o->may_die = 1u << (run % 2);
        fail |= run_ranks(name, 2, leftover_body, &run, o);
    }
    int shm1 = count_names("/dev/shm", "loom"), tmp1 = count_names("/tmp", "loom-id");
    printf("%s: /dev/shm loom* %d -> %d, /tmp loom-id* %d -> %d\n", name, shm0, shm1, tmp0, tmp1);
    CHECK_EQ(shm1, shm0);
    CHECK_EQ(tmp1, tmp0);
    return fail;
}

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: test_fail kill|stop|abort|leave|badargs|mismatch|strerror [shm|tcp]\n");
        return 2;
    }
    const char *c = argv[1], *tr = argc == 3 ? argv[2] : "shm";
    if (strcmp(tr, "tcp") == 0) setenv("LOOM_TRANSPORT", "tcp", 1);
    else if (strcmp(tr, "shm") != 0) {
        fprintf(stderr, "test_fail: unknown transport '%s'\n", tr);
        return 2;
    }
    sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sh == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
    reset_shared();
    char name[64];
    snprintf(name, sizeof name, "fail-%s-%s", c, tr);
    struct run_opts o = { .timeout_s = 60, .no_comm = 1 };   /* per run_ranks call */

    if (strcmp(c, "strerror") == 0) return strerror_case();
    if (strcmp(c, "leftovers") == 0) return leftovers(name, &o);
    if (strcmp(c, "kill") == 0) {
        struct peer_fail_arg a = { SIGKILL, 5.0 };
        o.may_die = 1u << 1;
        return run_ranks(name, 4, peer_fail, &a, &o);
    }
    if (strcmp(c, "stop") == 0) {
        setenv("LOOM_TIMEOUT_MS", "2000", 1);
        struct peer_fail_arg a = { SIGSTOP, 2.0 + 3.0 };
        o.may_die = 1u << 1;
        /* Which survivor's deadline fires first varies: two ring sizes, two chances to
           see a survivor blame a live neighbour instead of the stopped rank. */
        int fail = run_ranks(name, 3, peer_fail, &a, &o);
        reset_shared();
        fail |= run_ranks(name, 4, peer_fail, &a, &o);
        return fail;
    }
    if (strcmp(c, "abort") == 0) return run_ranks(name, 2, abort_case, NULL, &o);
    if (strcmp(c, "abort-stream") == 0) return run_ranks(name, 2, abort_case, "stream", &o);
    if (strcmp(c, "leave") == 0) return run_ranks(name, 2, leave_case, NULL, &o);
    if (strcmp(c, "badargs") == 0) {
        o.no_comm = 0;
        int fail = run_ranks(name, 2, badargs, NULL, &o);
        fail |= run_ranks(name, 3, badargs, NULL, &o);
        return fail;
    }
    if (strcmp(c, "mismatch") == 0) {
        /* Bounded: if loom cannot tell, the ranks time out (and the test fails). */
        setenv("LOOM_TIMEOUT_MS", "10000", 1);
        o.no_comm = 0;
        o.timeout_s = 20;
        static const struct mismatch_arg cases[] = {
            { "count 200 on rank 1, 100 elsewhere", { 200, 100 }, { LOOM_FLOAT32, LOOM_FLOAT32 } },
            { "count 100 on rank 1, 200 elsewhere", { 100, 200 }, { LOOM_FLOAT32, LOOM_FLOAT32 } },
            { "count 1 MiB + 1 on rank 1, 1 MiB elsewhere", { (1u << 20) + 1, 1u << 20 },
              { LOOM_FLOAT32, LOOM_FLOAT32 } },
            { "int32 on rank 1, float32 elsewhere", { 100, 100 }, { LOOM_INT32, LOOM_FLOAT32 } },
        };
        int fail = 0;
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
            fail |= run_ranks(name, 2, mismatch, (void *)&cases[i], &o);
            fail |= run_ranks(name, 3, mismatch, (void *)&cases[i], &o);
        }
        return fail;
    }
    fprintf(stderr, "test_fail: unknown case '%s'\n", c);
    return 2;
}
