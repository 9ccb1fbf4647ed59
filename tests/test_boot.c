/* test_boot: the rendezvous and interface choice.
 *   ifname    LOOM_SOCKET_IFNAME matching (NCCL's syntax: prefixes, ^ excludes, = exact)
 *   secret    a rank presenting a wrong secret is refused and never joins, while the
 *             ranks with the right one form their communicator
 *   duplicate a second process claiming a taken rank is refused with a message
 *   env       loom_comm_init_env with LOOM_ROOT_ADDR + LOOM_SECRET, and bad variables
 */
#include <signal.h>
#include <stdbool.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "net.h"

static int ifname(void)
{
    int rank = 0;
    static const struct { const char *spec, *name; bool want; } cases[] = {
        { "eth", "eth0", true },       { "eth", "eth10", true },    { "eth", "ens3", false },
        { "eth,ens", "ens3", true },   { "^lo", "lo", false },      { "^lo", "eth0", true },
        { "^docker,lo", "docker0", false }, { "^docker,lo", "ib0", true },
        { "=eth0", "eth0", true },     { "=eth0", "eth01", false }, { "=eth0,ib0", "ib0", true },
        { "^=eth0", "eth0", false },   { "^=eth0", "eth01", true }, { "", "eth0", false },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        if (net_ifname_matches(cases[i].spec, cases[i].name) != cases[i].want) {
            fprintf(stderr, "'%s' vs '%s': got %d, want %d\n", cases[i].spec, cases[i].name,
                    !cases[i].want, cases[i].want);
            return 1;
        }
    /* an interface that does not exist: a clear error, not a hang */
    setenv("LOOM_SOCKET_IFNAME", "=nosuchif0", 1);
    loom_id_t id;
    CHECK_EQ(loom_get_id(&id), LOOM_ERR_SYSTEM);
    CHECK(strstr(loom_last_error(NULL), "nosuchif0") != NULL);
    unsetenv("LOOM_SOCKET_IFNAME");
    printf("ifname: ok\n");
    return 0;
}

/* Shared by the forked ranks of one case (MAP_SHARED before the fork). */
static volatile int *refused;

/* Ranks 0 and 1 are the job; rank 2 is an impostor. With a wrong secret it claims
   rank 1 of 2; with the right one (a broken launcher) it claims rank 1 twice over. */
static int impostor_body(loom_comm_t unused, int rank, int n, void *arg)
{
    (void)unused;
    (void)n;
    int wrong_secret = *(int *)arg;
    loom_comm_t comm = NULL;
    loom_id_t id = harness_id;
    if (rank == 2 && wrong_secret) id.internal[40] ^= 0x5a;      /* a byte of the secret */
    /* rank 0 comes last, so both claimants of rank 1 meet a root still collecting */
    if (rank == 0) usleep(500 * 1000);
    setenv("LOOM_TIMEOUT_MS", "5000", 1);
    loom_result_t r = loom_comm_init(&comm, 2, &id, rank == 2 ? 1 : rank);
    if (r != LOOM_SUCCESS) {
        printf("rank %d refused: %s: %s\n", rank, loom_strerror(r), loom_last_error(NULL));
        CHECK(rank != 0);
        CHECK(wrong_secret ? rank == 2 : strstr(loom_last_error(NULL), "twice") != NULL);
        __sync_fetch_and_add(refused, 1);
        return 0;
    }
    int32_t one = 1, sum = 0;
    CHECK_OK(loom_allreduce(&one, &sum, 1, LOOM_INT32, LOOM_SUM, comm, NULL));
    CHECK_EQ(sum, 2);
    loom_comm_destroy(comm);
    return 0;
}

static int impostor(const char *name, int wrong_secret)
{
    struct run_opts o = { .timeout_s = 30, .no_comm = 1 };
    *refused = 0;
    int fail = run_ranks(name, 3, impostor_body, &wrong_secret, &o);
    if (*refused != 1) {
        fprintf(stderr, "%s: %d processes refused, want exactly 1\n", name, *refused);
        fail = 1;
    }
    return fail;
}

/* ---- loom_comm_init_env with an address and a secret ---- */

static int env_body(loom_comm_t unused, int rank, int n, void *arg)
{
    (void)unused;
    const char *addr = arg;
    char v[16];
    loom_comm_t comm;
    snprintf(v, sizeof v, "%d", rank);
    setenv("LOOM_RANK", v, 1);
    snprintf(v, sizeof v, "%d", n);
    setenv("LOOM_WORLD_SIZE", v, 1);
    setenv("LOOM_ROOT_ADDR", addr, 1);
    setenv("LOOM_SECRET", "00112233445566778899aabbccddeeff", 1);
    CHECK_OK(loom_comm_init_env(&comm));
    CHECK_EQ(loom_comm_rank(comm), rank);
    CHECK_EQ(loom_comm_size(comm), n);
    int32_t one = 1, sum = 0;
    CHECK_OK(loom_allreduce(&one, &sum, 1, LOOM_INT32, LOOM_SUM, comm, NULL));
    CHECK_EQ(sum, n);
    loom_comm_destroy(comm);
    return 0;
}

static int env_bad(void)
{
    int rank = 0;
    loom_comm_t comm = NULL;
    static const char *cases[][4] = {       /* LOOM_RANK, LOOM_WORLD_SIZE, LOOM_COMM_ID, LOOM_SECRET */
        { "5", "2", "", "" },  { "1", "", "", "" },   { "x", "2", "", "" },
        { "0", "2", "garbage", "" }, { "0", "2", "", "123" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        setenv("LOOM_RANK", cases[i][0], 1);
        setenv("LOOM_WORLD_SIZE", cases[i][1], 1);
        setenv("LOOM_COMM_ID", cases[i][2], 1);
        setenv("LOOM_SECRET", cases[i][3], 1);
        setenv("LOOM_ROOT_ADDR", cases[i][3][0] ? "127.0.0.1:1" : "", 1);
        loom_result_t r = loom_comm_init_env(&comm);
        if (r != LOOM_ERR_INVALID_ARGUMENT) {
            fprintf(stderr, "env case %zu: %s (%s)\n", i, loom_strerror(r), loom_last_error(NULL));
            return 1;
        }
        CHECK(strlen(loom_last_error(NULL)) > 10);
    }
    const char *names[] = { "LOOM_RANK", "LOOM_WORLD_SIZE", "LOOM_COMM_ID", "LOOM_SECRET", "LOOM_ROOT_ADDR" };
    for (size_t i = 0; i < 5; i++) unsetenv(names[i]);
    printf("env-bad: ok\n");
    return 0;
}

int main(int argc, char **argv)
{
    const char *only = argc > 1 ? argv[1] : "";
    int fail = 0;
    refused = mmap(NULL, sizeof *refused, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (refused == MAP_FAILED) return 1;
    if (!*only || !strcmp(only, "ifname")) fail |= ifname();
    if (!*only || !strcmp(only, "secret")) fail |= impostor("wrong-secret", 1);
    if (!*only || !strcmp(only, "duplicate")) fail |= impostor("duplicate-rank", 0);
    if (!*only || !strcmp(only, "env")) {
        char addr[32];
        snprintf(addr, sizeof addr, "127.0.0.1:%d", 20000 + (int)(getpid() % 30000));
        struct run_opts o = { .timeout_s = 30, .no_comm = 1 };
        fail |= run_ranks("env-root-addr", 3, env_body, addr, &o);
        fail |= env_bad();
    }
    return fail;
}
