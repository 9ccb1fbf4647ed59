/* test_failure: loom's failure semantics (DESIGN.md section 6), each case on its own
 * ranks with a timeout:
 *   kill9     a rank is SIGKILLed mid-allreduce: the others fail with LOOM_ERR_REMOTE
 *             (or TIMEOUT) within seconds, naming the rank and host; later calls fail fast
 *   stop      a rank is SIGSTOPped: the others fail within LOOM_TIMEOUT_MS (+slack)
 *   abort     loom_comm_abort from another thread while the main thread is blocked
 *   leave     a peer destroys its communicator while this rank waits for it
 *   badargs   every bad argument: LOOM_ERR_INVALID_ARGUMENT, clear message, no buffer changed
 *   mismatch  ranks pass different counts: an error on every rank, no hang
 *
 *   test_failure CASE [shm|tcp]
 */
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

#define BIG (4u << 20)   /* floats per allreduce: long enough to be caught mid-way */

static char host[64];

static int expect_named_failure(loom_comm_t comm, int rank, loom_result_t r, int who, double t0, double limit)
{
    double dt = harness_now() - t0;
    const char *msg = loom_last_error(comm);
    char want[32];
    snprintf(want, sizeof want, "rank %d", who);
    printf("rank %d: %s after %.2f s: %s\n", rank, loom_strerror(r), dt, msg);
    CHECK(r == LOOM_ERR_REMOTE || r == LOOM_ERR_TIMEOUT);
    CHECK(dt < limit);
    CHECK(strstr(msg, want) != NULL);
    CHECK(strstr(msg, host) != NULL);
    /* later calls fail at once with the same error */
    float x = 1, y;
    double t1 = harness_now();
    CHECK_EQ(loom_allreduce(&x, &y, 1, LOOM_FLOAT32, LOOM_SUM, comm, NULL), r);
    CHECK(harness_now() - t1 < 0.1);
    CHECK_EQ(loom_comm_get_error(comm), r);
    return 0;
}

/* Loop allreduces until one fails; returns its result. */
static loom_result_t until_failure(loom_comm_t comm, float *a, float *b, double limit)
{
    double t0 = harness_now();
    loom_result_t r = LOOM_SUCCESS;
    while (r == LOOM_SUCCESS && harness_now() - t0 < limit)
        r = loom_allreduce(a, b, BIG, LOOM_FLOAT32, LOOM_SUM, comm, NULL);
    return r;
}

/* ---- kill -9 ---- */

static void *kill_me_soon(void *arg)
{
    (void)arg;
    usleep(300 * 1000);
    raise(SIGKILL);
    return NULL;
}

static int kill9_body(loom_comm_t comm, int rank, int n, void *arg)
{
    (void)n;
    (void)arg;
    float *a = calloc(BIG, sizeof *a), *b = calloc(BIG, sizeof *b);
    pthread_t t;
    if (rank == 1) pthread_create(&t, NULL, kill_me_soon, NULL);
    double t0 = harness_now();
    loom_result_t r = until_failure(comm, a, b, 30);
    /* the kill lands at about 0.3 s: the failure must follow within a few seconds */
    return expect_named_failure(comm, rank, r, 1, t0, 5.3);
}

/* ---- SIGSTOP ---- */

static int stop_body(loom_comm_t comm, int rank, int n, void *arg)
{
    (void)arg;
    int32_t pid = (int32_t)getpid(), *pids = calloc((size_t)n, sizeof *pids);
    CHECK_OK(loom_allgather(&pid, pids, 1, LOOM_INT32, comm, NULL));
    if (rank == 2) {
        usleep(300 * 1000);            /* let its progress thread put the allgather on the wire */
        raise(SIGSTOP);
        return 0;                      /* never resumed: killed below */
    }
    float *a = calloc(BIG, sizeof *a), *b = calloc(BIG, sizeof *b);
    double t0 = harness_now();
    loom_result_t r = until_failure(comm, a, b, 30);
    int rc = expect_named_failure(comm, rank, r, 2, t0, 2.0 + 3.0);
    if (rank == 0) kill(pids[2], SIGKILL);
    return rc;
}

/* ---- abort from another thread ---- */

struct abort_arg {
    loom_comm_t comm;
    double took;
    loom_result_t r;
};

static void *abort_soon(void *p)
{
    struct abort_arg *a = p;
    usleep(300 * 1000);
    double t0 = harness_now();
    a->r = loom_comm_abort(a->comm);
    a->took = harness_now() - t0;
    return NULL;
}

static int abort_body(loom_comm_t unused, int rank, int n, void *arg)
{
    (void)unused;
    (void)arg;
    loom_comm_t comm;
    CHECK_OK(loom_comm_init(&comm, n, &harness_id, rank));
    if (rank == 1) {
        /* never joins the allreduce; sees the abort of rank 0 */
        float x = 0, y;
        double t0 = harness_now();
        while (loom_comm_get_error(comm) == LOOM_SUCCESS && harness_now() - t0 < 10) usleep(10000);
        CHECK_EQ(loom_comm_get_error(comm), LOOM_ERR_REMOTE);
        CHECK(strstr(loom_last_error(comm), "rank 0") != NULL);
        CHECK_EQ(loom_allreduce(&x, &y, 1, LOOM_FLOAT32, LOOM_SUM, comm, NULL), LOOM_ERR_REMOTE);
        CHECK_OK(loom_comm_destroy(comm));
        return 0;
    }
    float *a = calloc(BIG, sizeof *a), *b = calloc(BIG, sizeof *b);
    struct abort_arg aa = { comm, 0, LOOM_ERR_INTERNAL };
    pthread_t t;
    pthread_create(&t, NULL, abort_soon, &aa);
    double t0 = harness_now();
    loom_result_t r = loom_allreduce(a, b, BIG, LOOM_FLOAT32, LOOM_SUM, comm, NULL);
    double blocked = harness_now() - t0;
    pthread_join(t, NULL);
    printf("rank 0: allreduce returned %s after %.2f s; abort took %.3f s\n", loom_strerror(r), blocked, aa.took);
    CHECK_EQ(r, LOOM_ERR_ABORTED);
    CHECK_EQ(aa.r, LOOM_SUCCESS);
    CHECK(blocked < 1.5);
    CHECK(aa.took < 1.0);
    return 0;
}

/* ---- a peer leaves ---- */

static int leave_body(loom_comm_t unused, int rank, int n, void *arg)
{
    (void)unused;
    (void)arg;
    loom_comm_t comm;
    CHECK_OK(loom_comm_init(&comm, n, &harness_id, rank));
    if (rank == 1) {
        usleep(200 * 1000);
        CHECK_OK(loom_comm_destroy(comm));
        return 0;
    }
    float x = 1, y;
    double t0 = harness_now();
    loom_result_t r = loom_allreduce(&x, &y, 1, LOOM_FLOAT32, LOOM_SUM, comm, NULL);
    printf("rank 0: %s after %.2f s: %s\n", loom_strerror(r), harness_now() - t0, loom_last_error(comm));
    CHECK_EQ(r, LOOM_ERR_REMOTE);
    CHECK(harness_now() - t0 < 3);
    CHECK(strstr(loom_last_error(comm), "rank 1") != NULL);
    loom_comm_destroy(comm);
    return 0;
}

/* ---- bad arguments ---- */

#define BAD(call) do { memset(out, 0xa5, sizeof out); memcpy(in_copy, in, sizeof in); \
    loom_result_t r_ = (call); \
    if (r_ != LOOM_ERR_INVALID_ARGUMENT) { fprintf(stderr, "rank %d: %s returned %s, want INVALID_ARGUMENT\n", \
        rank, #call, loom_strerror(r_)); return 1; } \
    for (size_t i_ = 0; i_ < sizeof out; i_++) if (out[i_] != 0xa5) { \
        fprintf(stderr, "rank %d: %s changed the output\n", rank, #call); return 1; } \
    if (memcmp(in, in_copy, sizeof in)) { fprintf(stderr, "rank %d: %s changed the input\n", rank, #call); return 1; } \
    if (strlen(loom_last_error(comm)) < 10) { fprintf(stderr, "rank %d: %s: no message\n", rank, #call); return 1; } \
    nbad++; } while (0)

static int badargs_body(loom_comm_t comm, int rank, int n, void *arg)
{
    (void)arg;
    unsigned char out[4096], in[4096], in_copy[4096];
    int nbad = 0;
    memset(in, 1, sizeof in);
    BAD(loom_allreduce(NULL, out, 4, LOOM_FLOAT32, LOOM_SUM, comm, NULL));
    BAD(loom_allreduce(in, NULL, 4, LOOM_FLOAT32, LOOM_SUM, comm, NULL));
    BAD(loom_allreduce(in, out, 4, (loom_dtype_t)42, LOOM_SUM, comm, NULL));
    BAD(loom_allreduce(in, out, 4, (loom_dtype_t)-1, LOOM_SUM, comm, NULL));
    BAD(loom_allreduce(in, out, 4, LOOM_FLOAT32, (loom_op_t)42, comm, NULL));
    BAD(loom_allreduce(in, out, SIZE_MAX / 2, LOOM_FLOAT64, LOOM_SUM, comm, NULL));
    BAD(loom_allreduce(in, out, 4, LOOM_FLOAT32, LOOM_SUM, NULL, NULL));
    BAD(loom_reduce(in, out, 4, LOOM_INT32, LOOM_MAX, -1, comm, NULL));
    BAD(loom_reduce(in, out, 4, LOOM_INT32, LOOM_MAX, n, comm, NULL));
    BAD(loom_reduce(NULL, out, 4, LOOM_INT32, LOOM_MAX, 0, comm, NULL));
    BAD(loom_broadcast(in, out, 4, LOOM_INT32, n, comm, NULL));
    BAD(loom_broadcast(in, NULL, 4, LOOM_INT32, 0, comm, NULL));
    BAD(loom_broadcast(in, out, 4, (loom_dtype_t)10, 0, comm, NULL));
    BAD(loom_allgather(in, out, SIZE_MAX / 4, LOOM_INT8, comm, NULL));
    BAD(loom_allgather(NULL, out, 4, LOOM_INT8, comm, NULL));
    BAD(loom_reduce_scatter(in, out, 4, LOOM_UINT8, (loom_op_t)5, comm, NULL));
    BAD(loom_reduce_scatter(in, out, SIZE_MAX / 2, LOOM_UINT64, LOOM_SUM, comm, NULL));
    BAD(loom_alltoall(in, NULL, 4, LOOM_INT64, comm, NULL));
    BAD(loom_send(in, 4, LOOM_INT32, n, comm, NULL));
    BAD(loom_send(in, 4, LOOM_INT32, -1, comm, NULL));
    BAD(loom_recv(out, 4, LOOM_INT32, n + 5, comm, NULL));
    BAD(loom_recv(NULL, 4, LOOM_INT32, 0, comm, NULL));
    BAD(loom_barrier(NULL, NULL));
    CHECK_EQ(loom_comm_get_error(comm), LOOM_SUCCESS);
    CHECK_EQ(loom_comm_destroy(NULL), LOOM_ERR_INVALID_ARGUMENT);
    CHECK_EQ(loom_comm_abort(NULL), LOOM_ERR_INVALID_ARGUMENT);
    CHECK_EQ(loom_comm_rank(NULL), -1);
    /* result names: one per code, all different */
    for (int a = 0; a < LOOM_NUM_RESULTS; a++) {
        CHECK(loom_strerror((loom_result_t)a) != NULL);
        for (int b = 0; b < a; b++) CHECK(strcmp(loom_strerror((loom_result_t)a), loom_strerror((loom_result_t)b)));
    }
    CHECK(loom_last_error(NULL) != NULL);
    /* after all that, the communicator still works */
    int32_t one = 1, sum = 0;
    CHECK_OK(loom_allreduce(&one, &sum, 1, LOOM_INT32, LOOM_SUM, comm, NULL));
    CHECK_EQ(sum, n);
    if (rank == 0) printf("%d bad calls refused, nothing changed\n", nbad);
    return 0;
}

/* ---- mismatched counts ---- */

static int mismatch_body(loom_comm_t comm, int rank, int n, void *arg)
{
    (void)n;
    (void)arg;
    size_t count = rank == 0 ? 100 : 200;
    float a[200] = { 0 }, b[200];
    double t0 = harness_now();
    loom_result_t r = loom_allreduce(a, b, count, LOOM_FLOAT32, LOOM_SUM, comm, NULL);
    printf("rank %d: %s after %.2f s: %s\n", rank, loom_strerror(r), harness_now() - t0, loom_last_error(comm));
    CHECK(r == LOOM_ERR_INVALID_ARGUMENT || r == LOOM_ERR_REMOTE);
    CHECK(harness_now() - t0 < 5);
    CHECK(strstr(loom_last_error(comm), "mismatch") != NULL);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: test_failure kill9|stop|abort|leave|badargs|mismatch [shm|tcp]\n");
        return 2;
    }
    gethostname(host, sizeof host - 1);
    if (argc > 2 && strcmp(argv[2], "tcp") == 0) setenv("LOOM_TRANSPORT", "tcp", 1);
    const char *c = argv[1];
    struct run_opts o = { .timeout_s = 60 };
    if (!strcmp(c, "kill9")) {
        o.may_die = 1u << 1;
        return run_ranks("kill9", 4, kill9_body, NULL, &o);
    }
    if (!strcmp(c, "stop")) {
        setenv("LOOM_TIMEOUT_MS", "2000", 1);
        o.may_die = 1u << 2;
        return run_ranks("stop", 4, stop_body, NULL, &o);
    }
    if (!strcmp(c, "abort")) {
        o.no_comm = 1;
        return run_ranks("abort", 2, abort_body, NULL, &o);
    }
    if (!strcmp(c, "leave")) {
        o.no_comm = 1;
        return run_ranks("leave", 2, leave_body, NULL, &o);
    }
    if (!strcmp(c, "badargs")) return run_ranks("badargs", 3, badargs_body, NULL, &o);
    if (!strcmp(c, "mismatch")) return run_ranks("mismatch", 3, mismatch_body, NULL, &o);
    fprintf(stderr, "unknown case %s\n", c);
    return 2;
}
