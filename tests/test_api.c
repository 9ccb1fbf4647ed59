/* test_api: the API around the collectives, each case on its own ranks:
 * the version; ids to and from strings (a name is never looked up: numeric only); comm_split (colors, keys, a negative color); two
 * communicators used at once from two threads; host streams (order, query, sync);
 * send/recv groups (a ring, self sends, several messages to one peer); a barrier no
 * rank leaves before the last has entered (on a NULL and on a host stream).
 *
 *   test_api [case]     (no case: all of them)
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

/* ---- ids ---- */

static int ids(void)
{
    int rank = 0;
    loom_comm_t comm = NULL;
    loom_id_t id, back;
    char s[LOOM_ID_STRLEN], s2[LOOM_ID_STRLEN];
    CHECK_EQ(loom_version(), LOOM_VERSION_CODE);   /* the library is the header's */
    CHECK_OK(loom_get_id(&id));
    CHECK_OK(loom_id_to_string(&id, s, sizeof s));
    CHECK_OK(loom_id_from_string(s, &back));
    CHECK_OK(loom_id_to_string(&back, s2, sizeof s2));
    CHECK(strcmp(s, s2) == 0);
    CHECK(strncmp(s, "loom1:", 6) == 0);
    const char *bad[] = { "", "loom1:", "loom2:1.2.3.4:5:00112233445566778899aabbccddeeff",
                          "loom1:1.2.3.4:5:0011", "loom1:1.2.3.4:99999:00112233445566778899aabbccddeeff",
                          "loom1:1.2.3.4:5:00112233445566778899aabbccddeefg", "garbage",
                          "loom1:localhost:5:00112233445566778899aabbccddeeff" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK_EQ(loom_id_from_string(bad[i], &back), LOOM_ERR_INVALID_ARGUMENT);
    CHECK_EQ(loom_id_from_string(NULL, &back), LOOM_ERR_INVALID_ARGUMENT);
    CHECK_EQ(loom_id_to_string(&id, s, 8), LOOM_ERR_INVALID_ARGUMENT);
    memset(&back, 0, sizeof back);
    CHECK_EQ(loom_comm_init(&comm, 2, &back, 0), LOOM_ERR_INVALID_ARGUMENT);
    CHECK_EQ(loom_comm_init(&comm, 0, &id, 0), LOOM_ERR_INVALID_ARGUMENT);
    CHECK_EQ(loom_comm_init(&comm, 2, &id, 2), LOOM_ERR_INVALID_ARGUMENT);
    CHECK(strlen(loom_last_error(NULL)) > 0);
    printf("ids: ok\n");
    return 0;
}

/* ---- split ---- */

static int split_body(loom_comm_t comm, int rank, int n, void *arg)
{
    (void)arg;
    /* colors by parity, keys reverse the order; rank 4 opts out */
    loom_comm_t sub;
    int color = rank == 4 ? -1 : rank % 2;
    CHECK_OK(loom_comm_split(comm, color, -rank, &sub));
    if (color < 0) {
        CHECK(sub == NULL);
    } else {
        int members = 0, mypos = 0;
        for (int q = n - 1; q >= 0; q--)
            if (q != 4 && q % 2 == color) {
                if (q == rank) mypos = members;
                members++;
            }
        CHECK_EQ(loom_comm_size(sub), members);
        CHECK_EQ(loom_comm_rank(sub), mypos);
        int32_t v = rank, sum = 0, want = 0;
        for (int q = 0; q < n; q++) want += q != 4 && q % 2 == color ? q : 0;
        {
            loom_comm_t comm = sub;     /* so a failed check prints the sub-communicator's error */
            CHECK_OK(loom_allreduce(&v, &sum, 1, LOOM_INT32, LOOM_SUM, comm, NULL));
        }
        CHECK_EQ(sum, want);
        CHECK_OK(loom_comm_destroy(sub));
    }
    /* the parent still works */
    int32_t one = 1, total = 0;
    CHECK_OK(loom_allreduce(&one, &total, 1, LOOM_INT32, LOOM_SUM, comm, NULL));
    CHECK_EQ(total, n);
    /* bad arguments */
    CHECK_EQ(loom_comm_split(comm, 0, 0, NULL), LOOM_ERR_INVALID_ARGUMENT);
    return 0;
}

/* ---- two communicators at once ---- */

struct thread_arg {
    loom_comm_t comm;
    int rank, n;
    size_t count;
    int rc;
};

static void *allreduce_loop(void *p)
{
    struct thread_arg *a = p;
    int rank = a->rank;
    loom_comm_t comm = a->comm;
    float *x = malloc(a->count * sizeof *x), *y = malloc(a->count * sizeof *y);
    a->rc = 1;
    for (int it = 0; it < 20; it++) {
        for (size_t i = 0; i < a->count; i++) x[i] = (float)((rank + 1) * ((i + (size_t)it) % 5));
        if (loom_allreduce(x, y, a->count, LOOM_FLOAT32, LOOM_SUM, comm, NULL) != LOOM_SUCCESS) {
            fprintf(stderr, "rank %d: allreduce: %s\n", rank, loom_last_error(comm));
            return NULL;
        }
        for (size_t i = 0; i < a->count; i++)
            if (y[i] != (float)(a->n * (a->n + 1) / 2 * (int)((i + (size_t)it) % 5))) {
                fprintf(stderr, "rank %d: element %zu wrong: %g\n", rank, i, y[i]);
                return NULL;
            }
    }
    free(x);
    free(y);
    a->rc = 0;
    return NULL;
}

static int two_comms_body(loom_comm_t comm, int rank, int n, void *arg)
{
    (void)arg;
    loom_comm_t second;
    CHECK_OK(loom_comm_split(comm, 0, rank, &second));
    struct thread_arg a = { comm, rank, n, 300001, 1 }, b = { second, rank, n, 7777, 1 };
    pthread_t ta, tb;
    pthread_create(&ta, NULL, allreduce_loop, &a);
    pthread_create(&tb, NULL, allreduce_loop, &b);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    CHECK_EQ(a.rc, 0);
    CHECK_EQ(b.rc, 0);
    CHECK_OK(loom_comm_destroy(second));
    return 0;
}

/* ---- streams ---- */

static int stream_body(loom_comm_t comm, int rank, int n, void *arg)
{
    (void)arg;
    enum { K = 6, COUNT = 200000 };
    loom_stream_t s;
    CHECK_OK(loom_stream_create(&s));
    int32_t *buf = malloc(sizeof *buf * COUNT);
    for (int i = 0; i < COUNT; i++) buf[i] = rank + i % 3;
    /* in place, K times: each result feeds the next, so order matters */
    for (int k = 0; k < K; k++) CHECK_OK(loom_allreduce(buf, buf, COUNT, LOOM_INT32, LOOM_SUM, comm, s));
    loom_result_t q = loom_stream_query(s);
    CHECK(q == LOOM_IN_PROGRESS || q == LOOM_SUCCESS);
    CHECK_OK(loom_barrier(comm, s));
    CHECK_OK(loom_stream_sync(s));
    CHECK_EQ(loom_stream_query(s), LOOM_SUCCESS);
    long long mult = 1;
    for (int k = 0; k < K; k++) mult *= n;
    for (int i = 0; i < COUNT; i++) {
        long long v = (long long)n * (n - 1) / 2 + (long long)n * (i % 3);
        long long want = v * (mult / n);
        if (buf[i] != (int32_t)want) {
            fprintf(stderr, "rank %d: element %d is %d, want %lld\n", rank, i, buf[i], want);
            return 1;
        }
    }
    /* a blocking call after queued ones runs after them */
    float x = 1, y = 0;
    CHECK_OK(loom_allreduce(&x, &y, 1, LOOM_FLOAT32, LOOM_SUM, comm, s));
    CHECK_OK(loom_allreduce(&y, &x, 1, LOOM_FLOAT32, LOOM_SUM, comm, NULL));
    CHECK_OK(loom_stream_sync(s));
    CHECK_EQ((long long)x, (long long)n * n);
    /* 300 rounds of a queued call and a blocking one that reads its output: the blocking
       call finds the queued one ahead, sleeps, and is woken when it has run */
    for (int it = 0; it < 300; it++) {
        int32_t a = rank + it, b = -1, d = -1;
        CHECK_OK(loom_allreduce(&a, &b, 1, LOOM_INT32, LOOM_SUM, comm, s));
        CHECK_OK(loom_allreduce(&b, &d, 1, LOOM_INT32, LOOM_SUM, comm, NULL));
        long long want = (long long)n * ((long long)n * (n - 1) / 2 + (long long)n * it);
        if (d != want) {
            fprintf(stderr, "rank %d: round %d: %d after a queued call, want %lld\n", rank, it, d, want);
            return 1;
        }
    }
    CHECK_OK(loom_stream_destroy(s));
    /* no CUDA in this build: INVALID_USAGE; with CUDA, a NULL cudaStream_t: INVALID_ARGUMENT */
    loom_result_t w = loom_stream_wrap_cuda(NULL, &s);
    CHECK(w == LOOM_ERR_INVALID_USAGE || w == LOOM_ERR_INVALID_ARGUMENT);
    free(buf);
    return 0;
}

/* ---- groups of sends and receives ---- */

static int group_body(loom_comm_t comm, int rank, int n, void *arg)
{
    (void)arg;
    enum { COUNT = 100003 };
    int64_t *out = malloc(sizeof *out * COUNT * 3), *in = malloc(sizeof *in * COUNT * 3);
    for (int i = 0; i < COUNT * 3; i++) out[i] = rank * 1000000 + i;
    int to = (rank + 1) % n, from = (rank + n - 1) % n;
    /* three messages to the same peer arrive in order; one to myself */
    CHECK_OK(loom_group_start());
    for (int k = 0; k < 3; k++) {
        CHECK_OK(loom_recv(in + k * COUNT, COUNT, LOOM_INT64, from, comm, NULL));
        CHECK_OK(loom_send(out + k * COUNT, COUNT, LOOM_INT64, to, comm, NULL));
    }
    CHECK_OK(loom_group_end());
    for (int i = 0; i < COUNT * 3; i++) CHECK_EQ(in[i], from * 1000000 + i);
    CHECK_OK(loom_group_start());
    CHECK_OK(loom_send(out, 5, LOOM_INT64, rank, comm, NULL));
    CHECK_OK(loom_recv(in, 5, LOOM_INT64, rank, comm, NULL));
    CHECK_OK(loom_group_end());
    for (int i = 0; i < 5; i++) CHECK_EQ(in[i], out[i]);
    /* an unmatched self send is refused before anything moves */
    CHECK_OK(loom_group_start());
    CHECK_OK(loom_send(out, 5, LOOM_INT64, rank, comm, NULL));
    CHECK_EQ(loom_group_end(), LOOM_ERR_INVALID_ARGUMENT);
    CHECK_EQ(loom_send(out, 5, LOOM_INT64, rank, comm, NULL), LOOM_ERR_INVALID_USAGE);
    CHECK_EQ(loom_group_end(), LOOM_ERR_INVALID_USAGE);
    /* all-to-all made of sends and recvs, like a user would */
    CHECK_OK(loom_group_start());
    for (int q = 0; q < n; q++) {
        CHECK_OK(loom_send(out + q * 10, 10, LOOM_INT64, q, comm, NULL));
        CHECK_OK(loom_recv(in + q * 10, 10, LOOM_INT64, q, comm, NULL));
    }
    CHECK_OK(loom_group_end());
    for (int q = 0; q < n; q++)
        for (int i = 0; i < 10; i++) CHECK_EQ(in[q * 10 + i], q * 1000000 + rank * 10 + i);
    /* a send and its recv agree on bytes only: a lone send of 7 int64 against a
       grouped recv of 56 uint8, and back 3 floats as 12 uint8 */
    if (n >= 2 && rank < 2) {
        unsigned char *b = (unsigned char *)in;
        if (rank == 0) {
            CHECK_OK(loom_send(out, 7, LOOM_INT64, 1, comm, NULL));
            CHECK_OK(loom_recv(b, 12, LOOM_UINT8, 1, comm, NULL));
            float f[3] = { 1.5f, -2.0f, 3.25f };
            CHECK(memcmp(b, f, sizeof f) == 0);
        } else {
            float f[3] = { 1.5f, -2.0f, 3.25f };
            CHECK_OK(loom_group_start());
            CHECK_OK(loom_recv(b, 56, LOOM_UINT8, 0, comm, NULL));
            CHECK_OK(loom_send(f, 3, LOOM_FLOAT32, 0, comm, NULL));
            CHECK_OK(loom_group_end());
            for (int i = 0; i < 7; i++) {
                int64_t v;
                memcpy(&v, b + 8 * i, 8);
                CHECK_EQ(v, i);
            }
        }
    }
    /* the comm still works */
    CHECK_OK(loom_barrier(comm, NULL));
    free(in);
    free(out);
    return 0;
}

/* ---- settings that differ between ranks: rank 0's hold ---- */

/* Rank 1 alone asks for tcp (LOOM_TRANSPORT=tcp) and for other FIFO slots; the links
   of the communicator must still agree end to end, so rank 0's choices hold. */
static int mixed_env_body(loom_comm_t comm, int rank, int n, void *arg)
{
    (void)comm;
    (void)arg;
    if (rank == 1) {
        setenv("LOOM_TRANSPORT", "tcp", 1);
        setenv("LOOM_SLOT_BYTES", "4K", 1);
    }
    loom_comm_t c;
    CHECK_OK(loom_comm_init(&c, n, &harness_id, rank));
    enum { COUNT = 300001 };
    int32_t *v = malloc(sizeof *v * COUNT);
    CHECK(v != NULL);
    for (int i = 0; i < COUNT; i++) v[i] = rank + i % 7;
    loom_result_t r = loom_allreduce(v, v, COUNT, LOOM_INT32, LOOM_SUM, c, NULL);
    if (r != LOOM_SUCCESS) fprintf(stderr, "rank %d: %s\n", rank, loom_last_error(c));
    CHECK_EQ(r, LOOM_SUCCESS);
    for (int i = 0; i < COUNT; i++) CHECK_EQ(v[i], n * (n - 1) / 2 + n * (i % 7));
    free(v);
    CHECK_OK(loom_comm_destroy(c));
    return 0;
}

/* ---- barrier: nobody leaves before the last enters ---- */

/* Times of each round, in memory shared by the ranks (MAP_SHARED before the fork). */
struct barrier_times { _Atomic int64_t enter[8][8], leave[8][8]; };
static struct barrier_times *bt;

static int64_t mono_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

/* Round k: rank k % n comes 30 ms after the others. Every rank must leave after it
   entered; over a stream from round 4 on. */
static int barrier_body(loom_comm_t comm, int rank, int n, void *arg)
{
    (void)arg;
    loom_stream_t s = NULL;
    CHECK_OK(loom_stream_create(&s));
    for (int k = 0; k < 8; k++) {
        if (rank == k % n) usleep(30000);
        bt->enter[k][rank] = mono_ns();
        CHECK_OK(loom_barrier(comm, k < 4 ? NULL : s));
        if (k >= 4) CHECK_OK(loom_stream_sync(s));
        bt->leave[k][rank] = mono_ns();
    }
    CHECK_OK(loom_stream_destroy(s));
    CHECK_OK(loom_allreduce(&n, &n, 1, LOOM_INT32, LOOM_MAX, comm, NULL));   /* all times written */
    for (int k = 0; k < 8; k++) {
        int64_t last = 0;
        for (int r = 0; r < n; r++) last = bt->enter[k][r] > last ? bt->enter[k][r] : last;
        if (bt->leave[k][rank] < last) {
            fprintf(stderr, "rank %d left barrier %d %.3f ms before rank %d entered it\n", rank, k,
                    (double)(last - bt->leave[k][rank]) / 1e6, k % n);
            return 1;
        }
    }
    return 0;
}

/* ---- many ranks: the rendezvous and control mesh at 64 ---- */

static int scale_body(loom_comm_t comm, int rank, int n, void *arg)
{
    (void)arg;
    int64_t v[1000], sum[1000];
    for (int i = 0; i < 1000; i++) v[i] = rank * i;
    CHECK_OK(loom_allreduce(v, sum, 1000, LOOM_INT64, LOOM_SUM, comm, NULL));
    for (int i = 0; i < 1000; i++) CHECK_EQ(sum[i], (int64_t)n * (n - 1) / 2 * i);
    CHECK_OK(loom_barrier(comm, NULL));
    return 0;
}

int main(int argc, char **argv)
{
    const char *only = argc > 1 ? argv[1] : "";
    int fail = 0;
    if (!*only || !strcmp(only, "ids")) fail |= ids();
    if (!*only || !strcmp(only, "split")) fail |= run_ranks("split", 6, split_body, NULL, NULL);
    if (!*only || !strcmp(only, "mixed_env")) {
        struct run_opts o = { .timeout_s = 60, .no_comm = 1 };
        setenv("LOOM_TIMEOUT_MS", "20000", 1);   /* a disagreement would hang till here */
        fail |= run_ranks("mixed-env", 3, mixed_env_body, NULL, &o);
        unsetenv("LOOM_TIMEOUT_MS");
    }
    if (!*only || !strcmp(only, "two_comms")) {
        fail |= run_ranks("two-comms-shm", 3, two_comms_body, NULL, NULL);
        setenv("LOOM_TRANSPORT", "tcp", 1);
        fail |= run_ranks("two-comms-tcp", 3, two_comms_body, NULL, NULL);
        unsetenv("LOOM_TRANSPORT");
    }
    if (!*only || !strcmp(only, "stream")) fail |= run_ranks("stream", 4, stream_body, NULL, NULL);
    if (!*only || !strcmp(only, "group")) {
        fail |= run_ranks("group-1", 1, group_body, NULL, NULL);
        fail |= run_ranks("group-4", 4, group_body, NULL, NULL);
        setenv("LOOM_TRANSPORT", "tcp", 1);
        fail |= run_ranks("group-4-tcp", 4, group_body, NULL, NULL);
        unsetenv("LOOM_TRANSPORT");
    }
    if (!*only || !strcmp(only, "barrier")) {
        bt = mmap(NULL, sizeof *bt, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (bt == MAP_FAILED) return 1;
        for (int n = 2; n <= 5; n += 3) {
            fail |= run_ranks("barrier-shm", n, barrier_body, NULL, NULL);
            setenv("LOOM_TRANSPORT", "tcp", 1);
            fail |= run_ranks("barrier-tcp", n, barrier_body, NULL, NULL);
            unsetenv("LOOM_TRANSPORT");
        }
    }
    if (!strcmp(only, "scale64")) {
        struct run_opts o = { .timeout_s = 240 };
        fail |= run_ranks("scale-64", 64, scale_body, NULL, &o);
    }
    return fail;
}
