/* test_boot: the rendezvous and interface choice.
 *   ifname    LOOM_SOCKET_IFNAME matching (NCCL's syntax: prefixes, ^ excludes, = exact)
 *   secret    a rank presenting a wrong secret is refused and never joins, while the
 *             ranks with the right one form their communicator
 *   duplicate a second process claiming a taken rank is refused with a message
 *   env       loom_comm_init_env with LOOM_ROOT_ADDR + LOOM_SECRET, and bad variables
 *   idlers    1000 connections to the rendezvous root held open without a word: a 2-rank
 *             rendezvous still completes within seconds (it took 39 s behind 20 of them
 *             when the root read each hello in turn)
 *   flood     connect + reset as fast as one process can: after 110,000 of them (100,000
 *             once ended a rendezvous through a connection-count guard) and while more
 *             come, a 2-rank rendezvous completes, and the root's refusals take a few
 *             log lines, not one each
 *   listeners a job on one host listens on no tcp port (its peers use unix sockets); 100
 *             idle connections to a rank's listeners (tcp forced) stall no call, and
 *             destroy stays quick
 *   idle-cpu  a connection that never speaks, at a rank whose communicator idles (heartbeats
 *             30 s apart): past the gate's 2 s deadline it is dropped and the rank's
 *             progress thread goes back to sleep (it once spun on a zero poll timeout:
 *             4 s of CPU in 4 s); the rank may use under 1 s of CPU in 5 s
 *   secret-file  torchrun variables and no LOOM_SECRET: the secret comes from the per-user
 *             file (made 0600 on first use); a process with another user's file (another
 *             HOME) is refused, told where its secret came from; a file others can read,
 *             or that is someone else's, is refused with what to do
 *   settings  every setting is checked once, in the table: each bad value (a timeout of
 *             0 or of centuries, a spin that overflows, slots of -1 or 100 bytes, an
 *             unknown family, ...) makes loom_get_id, loom_comm_init and
 *             loom_comm_init_env fail naming the variable, the value and what is
 *             allowed, creating nothing; a misspelt LOOM_* name is warned about with
 *             the nearest known one; a root that cannot bind its address fails
 *   id-handoff   (root) one host, no address (mpirun's variables): another user who holds
 *             the id socket's name first, or plants LOOM_ID_FILE, feeds nobody: every rank
 *             fails with a message naming the intruder's uid
 */
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "auth.h"
#include "bootstrap.h"
#include "comm.h"
#include "env.h"
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

/* ---- outsiders: connections that never authenticate ---- */

struct outsider_shared {
    _Atomic int phase;          /* 1: outsiders in place, 2: job done              */
    struct loom_addr tcp, unx;  /* listeners of rank 1 (listeners case)            */
    _Atomic int connected;      /* connections the outsider holds                   */
    _Atomic long resets;        /* connect + reset cycles done                      */
    double init_s[4];           /* each member's loom_comm_init time                */
};
static struct outsider_shared *osh;

static int dial(const struct loom_addr *a)
{
    int fd;
    char err[256];
    return net_connect(a, net_deadline(2000), false, &fd, err, sizeof err) == LOOM_SUCCESS ? fd : -1;
}

/* Hold n idle connections to a (and, if set, to b) until the job is done. */
static void hold_idle(const struct loom_addr *a, const struct loom_addr *b, int n)
{
    static int fds[2048];
    int k = 0;
    for (int i = 0; i < n && k < 2048; i++) {
        if ((fds[k] = dial(a)) >= 0) k++;
        if (b && k < 2048 && (fds[k] = dial(b)) >= 0) k++;
    }
    osh->connected = k;
    osh->phase = 1;
    for (int i = 0; i < 60000 && osh->phase < 2; i++) usleep(1000);
    for (int i = 0; i < k; i++) close(fds[i]);
}

/* connect + RST until the job is done (at most 300,000 cycles or 60 s). */
static void flood(const struct loom_addr *a)
{
    struct sockaddr_storage ss;
    socklen_t len;
    net_addr_to_sockaddr(a, &ss, &len);
    double end = harness_now() + 60;
    osh->phase = 1;
    for (long i = 0; i < 300000 && osh->phase < 2 && harness_now() < end; i++) {
        int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct linger lg = { 1, 0 };
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        if (connect(fd, (struct sockaddr *)&ss, len) == 0) osh->resets++;
        close(fd);
    }
}

/* Ranks 0 and 1 form the job once the outsider (rank 2) is in place. */
static int root_outsider_body(loom_comm_t unused, int rank, int n, void *arg)
{
    (void)unused;
    (void)n;
    const char *mode = arg;
    struct boot_id b;
    CHECK(boot_id_unpack(&harness_id, &b) == LOOM_SUCCESS);
    if (rank == 2) {
        if (!strcmp(mode, "idlers")) hold_idle(&b.root, NULL, 1000);
        else flood(&b.root);
        return 0;
    }
    for (int i = 0; i < 30000 && osh->phase < 1; i++) usleep(1000);
    for (int i = 0; i < 30000 && !strcmp(mode, "flood") && osh->resets < 110000; i++) usleep(1000);
    loom_comm_t comm = NULL;
    double t0 = harness_now();
    CHECK_OK(loom_comm_init(&comm, 2, &harness_id, rank));
    osh->init_s[rank] = harness_now() - t0;
    int32_t one = rank + 1, sum = 0;
    CHECK_OK(loom_allreduce(&one, &sum, 1, LOOM_INT32, LOOM_SUM, comm, NULL));
    CHECK_EQ(sum, 3);
    loom_comm_destroy(comm);
    if (rank == 0) {
        for (int i = 0; i < 5000 && osh->init_s[1] == 0; i++) usleep(1000);
        osh->phase = 2;
    }
    return 0;
}

static int count_lines(const char *path)
{
    FILE *f = fopen(path, "r");
    int n = 0, ch;
    if (f == NULL) return -1;
    while ((ch = fgetc(f)) != EOF) n += ch == '\n';
    fclose(f);
    return n;
}

static int root_outsiders(const char *mode)
{
    int rank = -1;   /* for CHECK */
    char log[64];
    /* the root runs in this process: its log lines go to a file of its own */
    snprintf(log, sizeof log, "/tmp/loom-test-boot.%d.log", (int)getpid());
    setenv("LOOM_DEBUG_FILE", log, 1);
    setenv("LOOM_TIMEOUT_MS", "30000", 1);
    struct run_opts o = { .timeout_s = 90, .no_comm = 1 };
    int fail = run_ranks(mode, 3, root_outsider_body, (void *)mode, &o);
    unsetenv("LOOM_DEBUG_FILE");
    int lines = count_lines(log);
    printf("%s: outsider held %d connections / made %ld connect+reset cycles; init took %.2f and %.2f s; "
           "root log %d lines\n", mode, osh->connected, osh->resets, osh->init_s[0], osh->init_s[1], lines);
    unlink(log);
    CHECK(fail == 0);
    CHECK(!strcmp(mode, "idlers") ? osh->connected >= 900 : osh->resets >= 110000);
    /* a stall, not a timing: behind 20 idlers the old root took 39 s */
    CHECK(osh->init_s[0] < 10 && osh->init_s[1] < 10);
    CHECK(lines >= 1 && lines <= 12);    /* one refusal, then a sum every 10 s */
    return 0;
}

/* Rank 3 is the outsider: it holds idle connections to rank 1's listeners. */
static int listener_body(loom_comm_t unused, int rank, int n, void *arg)
{
    (void)unused;
    (void)arg;
    if (rank == n - 1) {
        for (int i = 0; i < 30000 && osh->phase < 1; i++) usleep(1000);
        osh->phase = 0;
        hold_idle(&osh->tcp, &osh->unx, 50);
        return 0;
    }
    loom_comm_t comm = NULL;
    CHECK_OK(loom_comm_init(&comm, n - 1, &harness_id, rank));
    if (rank == 1) {
        osh->tcp = comm->peers[1].addr;
        osh->unx = comm->peers[1].uaddr;
        osh->phase = 1;
        for (int i = 0; i < 30000 && osh->phase != 1; i++) usleep(1000);   /* the outsider connected */
    }
    for (int i = 0; i < 30000 && (osh->phase != 1 || osh->connected == 0); i++) usleep(1000);
    for (int i = 0; i < 20; i++) {
        int32_t v = rank + i, sum = 0;
        CHECK_OK(loom_allreduce(&v, &sum, 1, LOOM_INT32, LOOM_SUM, comm, NULL));
        CHECK_EQ(sum, 3 * i + 3);
    }
    double t0 = harness_now();
    loom_comm_destroy(comm);
    CHECK(harness_now() - t0 < 5);
    if (rank == 0) osh->phase = 2;
    return 0;
}

static double cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) + (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static int idle_cpu_body(loom_comm_t comm, int rank, int n, void *arg)
{
    (void)n;
    (void)arg;
    int fd = -1;
    if (rank == 0) fd = dial(&comm->peers[1].addr);        /* and say nothing */
    CHECK_OK(loom_barrier(comm, NULL));
    double c0 = cpu_s();
    sleep(5);
    double used = cpu_s() - c0;
    if (rank == 1) printf("idle-cpu: rank 1 used %.2f s of CPU in 5 s with a silent connection at its listener\n", used);
    CHECK(rank != 0 || fd >= 0);
    CHECK(used < 1.0);
    CHECK_OK(loom_barrier(comm, NULL));
    if (fd >= 0) close(fd);
    return 0;
}

/* A job on one host: no rank listens on tcp; a rank's tcp address refuses. */
static int local_body(loom_comm_t comm, int rank, int n, void *arg)
{
    (void)arg;
    CHECK_EQ(comm->tcp_fd, -1);
    CHECK(comm->unix_fd >= 0);
    int fd = dial(&comm->peers[(rank + 1) % n].addr);
    CHECK_EQ(fd, -1);
    int32_t one = 1, sum = 0;
    CHECK_OK(loom_allreduce(&one, &sum, 1, LOOM_INT32, LOOM_SUM, comm, NULL));
    CHECK_EQ(sum, n);
    return 0;
}

static int listeners(void)
{
    int rank = -1;   /* for CHECK */
    int fail = run_ranks("local-listeners", 3, local_body, NULL, NULL);
    setenv("LOOM_TRANSPORT", "tcp", 1);
    setenv("LOOM_TIMEOUT_MS", "20000", 1);
    struct run_opts o = { .timeout_s = 90, .no_comm = 1 };
    memset(osh, 0, sizeof *osh);
    fail |= run_ranks("idle-at-rank-listener", 4, listener_body, NULL, &o);
    unsetenv("LOOM_TRANSPORT");
    printf("listeners: the outsider held %d connections to rank 1\n", osh->connected);
    CHECK(fail == 0);
    CHECK(osh->connected >= 90);
    return 0;
}

/* ---- the secret without LOOM_SECRET, and the id on one host ---- */

static char tmpdir[64];

static void set_rank_env(int rank, int n)
{
    char v[16];
    snprintf(v, sizeof v, "%d", rank);
    setenv("RANK", v, 1);
    snprintf(v, sizeof v, "%d", n);
    setenv("WORLD_SIZE", v, 1);
}

static int secret_body(loom_comm_t unused, int rank, int n, void *arg)
{
    (void)unused;
    const char *port = arg;
    char home[128];
    /* rank 2 is the outsider: the same variables, another home, so another secret */
    snprintf(home, sizeof home, "%s/%s", tmpdir, rank == 2 ? "other" : "home");
    setenv("HOME", home, 1);
    setenv("MASTER_ADDR", "127.0.0.1", 1);
    setenv("MASTER_PORT", port, 1);
    setenv("LOOM_TIMEOUT_MS", "5000", 1);
    set_rank_env(rank == 2 ? 1 : rank, 2);
    /* the outsider comes while the root (hosted by rank 0) waits for the real rank 1 */
    usleep((useconds_t)(rank == 1 ? 1000 : rank == 2 ? 100 : 0) * 1000);
    loom_comm_t comm = NULL;
    loom_result_t r = loom_comm_init_env(&comm);
    if (rank == 2) {
        printf("outsider: %s\n", loom_last_error(NULL));
        CHECK_EQ(r, LOOM_ERR_INVALID_ARGUMENT);
        CHECK(strstr(loom_last_error(NULL), "wrong secret") != NULL);
        CHECK(strstr(loom_last_error(NULL), "/other/.loom/secret") != NULL);
        return 0;
    }
    CHECK_OK(r);
    int32_t one = 1, sum = 0;
    CHECK_OK(loom_allreduce(&one, &sum, 1, LOOM_INT32, LOOM_SUM, comm, NULL));
    CHECK_EQ(sum, n - 1);
    loom_comm_destroy(comm);
    return 0;
}

static int secret_file(void)
{
    int rank = -1;   /* for CHECK */
    snprintf(tmpdir, sizeof tmpdir, "/tmp/loom-test-secret.%d", (int)getpid());
    char path[256], port[16];
    snprintf(path, sizeof path, "%s", tmpdir);
    CHECK(mkdir(path, 0700) == 0);
    snprintf(path, sizeof path, "%s/home", tmpdir);
    CHECK(mkdir(path, 0700) == 0);
    snprintf(path, sizeof path, "%s/other", tmpdir);
    CHECK(mkdir(path, 0700) == 0);
    snprintf(port, sizeof port, "%d", 20000 + (int)(getpid() % 30000));
    struct run_opts o = { .timeout_s = 30, .no_comm = 1 };
    int fail = run_ranks("secret-file", 3, secret_body, port, &o);
    /* the file was made, private */
    struct stat st;
    snprintf(path, sizeof path, "%s/home/.loom/secret", tmpdir);
    CHECK(stat(path, &st) == 0);
    CHECK_EQ(st.st_mode & 0777, 0600);
    /* readable by others: refused, with the fix */
    chmod(path, 0644);
    char home[128];
    snprintf(home, sizeof home, "%s/home", tmpdir);
    setenv("HOME", home, 1);
    setenv("LOOM_ROOT_ADDR", "127.0.0.1:1", 1);
    set_rank_env(1, 2);
    loom_comm_t comm = NULL;
    CHECK_EQ(loom_comm_init_env(&comm), LOOM_ERR_INVALID_USAGE);
    printf("mode 0644: %s\n", loom_last_error(NULL));
    CHECK(strstr(loom_last_error(NULL), "chmod 600") != NULL);
    /* someone else's: refused (root can hand it over to check) */
    if (geteuid() == 0) {
        chmod(path, 0600);
        CHECK(chown(path, 65534, 65534) == 0);
        CHECK_EQ(loom_comm_init_env(&comm), LOOM_ERR_INVALID_USAGE);
        printf("owned by 65534: %s\n", loom_last_error(NULL));
        CHECK(strstr(loom_last_error(NULL), "uid 65534") != NULL);
    }
    unsetenv("LOOM_ROOT_ADDR");
    char cmd[160];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    CHECK(system(cmd) == 0);
    return fail;
}

/* ---- strict settings ---- */

static int settings(void)
{
    int rank = -1;   /* for CHECK */
    static const struct { const char *name, *value, *want; } bad[] = {
        { "LOOM_TIMEOUT_MS", "0", "from 1 to" },         { "LOOM_TIMEOUT_MS", "-5", "from 1 to" },
        { "LOOM_TIMEOUT_MS", "99999999999999", "from 1 to" },
        { "LOOM_SPIN_US", "9999999999999999", "from -1 to" },
        { "LOOM_NSLOTS", "-1", "power of two" },          { "LOOM_NSLOTS", "3", "power of two" },
        { "LOOM_SLOT_BYTES", "100", "multiple of 64" },   { "LOOM_SLOT_BYTES", "1T", "multiple of 64" },
        { "LOOM_SOCKET_FAMILY", "AF_UNIX", "AF_INET6" },  { "LOOM_TRANSPORT", "ib", "shm tcp" },
        { "LOOM_CMA", "7", "from 0 to 2" },               { "LOOM_DEBUG", "LOUD", "TRACE" },
        { "LOOM_DEBUG_SUBSYS", "NET,DISK", "INIT" },      { "LOOM_SECRET", "xyz", "32 hex" },
        { "LOOM_ROOT_ADDR", "nohostport", "host:port" },  { "LOOM_SOCKET_IFNAME", "^", "interface" },
        { "LOOM_HEARTBEAT_MS", "1", "from 10" },          { "LOOM_CUDA_CHANNELS", "33", "from 1 to 32" },
        { "LOOM_WORLD_SIZE", "0x10", "integer" },
    };
    loom_id_t good, id;
    CHECK(loom_get_id(&good) == LOOM_SUCCESS);   /* a real id: loom_comm_init must refuse the settings */
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        setenv(bad[i].name, bad[i].value, 1);
        loom_comm_t comm = NULL;
        for (int k = 0; k < 3; k++) {
            loom_result_t r = k == 0 ? loom_get_id(&id) : k == 1 ? loom_comm_init(&comm, 2, &good, 1)
                                                                 : loom_comm_init_env(&comm);
            const char *msg = loom_last_error(NULL);
            if (k == 2) printf("%s=%s: %s\n", bad[i].name, bad[i].value, msg);
            CHECK_EQ(r, LOOM_ERR_INVALID_ARGUMENT);
            bool secret = !strcmp(bad[i].name, "LOOM_SECRET");   /* named, never shown */
            CHECK(strstr(msg, bad[i].name) && strstr(msg, bad[i].want));
            CHECK(secret ? strstr(msg, "not shown") && !strstr(msg, bad[i].value) : strstr(msg, bad[i].value) != NULL);
            CHECK(comm == NULL);
        }
        unsetenv(bad[i].name);
    }

    /* a misspelt name: a warning naming the nearest known one, nothing refused */
    char err[256], warn[512];
    setenv("LOOM_TIMOUT_MS", "5000", 1);
    setenv("LOOM_ZZZZZZZZZZZZZZZ", "1", 1);
    CHECK(loom_env_check(err, sizeof err, warn, sizeof warn));
    printf("warning: %s\n", warn);
    CHECK(strstr(warn, "unknown setting LOOM_TIMOUT_MS ignored (did you mean LOOM_TIMEOUT_MS?)") != NULL);
    CHECK(strstr(warn, "unknown setting LOOM_ZZZZZZZZZZZZZZZ ignored;") != NULL ||
          strstr(warn, "LOOM_ZZZZZZZZZZZZZZZ ignored") != NULL);
    CHECK(strstr(warn, "LOOM_ZZZZZZZZZZZZZZZ ignored (did") == NULL);
    unsetenv("LOOM_TIMOUT_MS");
    unsetenv("LOOM_ZZZZZZZZZZZZZZZ");
    /* good values of every kind pass */
    setenv("LOOM_SLOT_BYTES", "256KiB", 1);
    setenv("LOOM_NSLOTS", "16", 1);
    setenv("LOOM_DEBUG", "info", 1);
    setenv("LOOM_ROOT_ADDR", "[fd00::1]:29500", 1);
    CHECK(loom_env_check(err, sizeof err, warn, sizeof warn));
    unsetenv("LOOM_SLOT_BYTES");
    unsetenv("LOOM_NSLOTS");
    unsetenv("LOOM_DEBUG");

    /* a root address that is not this host's: rank 0 fails, binding nothing else
       (198.51.100.0/24 is TEST-NET-2: no host has it, and nothing is sent) */
    setenv("LOOM_ROOT_ADDR", "198.51.100.7:29500", 1);
    setenv("LOOM_SECRET", "00112233445566778899aabbccddeeff", 1);
    set_rank_env(0, 2);
    loom_comm_t comm = NULL;
    CHECK_EQ(loom_comm_init_env(&comm), LOOM_ERR_SYSTEM);
    printf("root address: %s\n", loom_last_error(NULL));
    CHECK(strstr(loom_last_error(NULL), "not an address of this host") != NULL);
    unsetenv("LOOM_ROOT_ADDR");
    unsetenv("LOOM_SECRET");
    printf("settings: ok\n");
    return 0;
}

/* The intruder: another user serving its own id on the job's name, or planting the
   file, until killed. */
static pid_t intruder(const char *key, const char *file, int *ready)
{
    struct sockaddr_un su;
    socklen_t len = launch_id_sockaddr(key, &su);   /* the victim's name: its uid, the job key */
    pid_t pid = fork();
    if (pid != 0) return pid;
    if (setgid(65534) != 0 || setuid(65534) != 0) _exit(3);
    loom_id_t id;
    char s[LOOM_ID_STRLEN + 16];
    if (loom_get_id(&id) != LOOM_SUCCESS) _exit(4);
    loom_id_to_string(&id, s, LOOM_ID_STRLEN);
    if (file) {
        size_t n = strlen(s);
        snprintf(s + n, sizeof s - n, "\n%d\n", (int)getpid());
        int fd = open(file, O_WRONLY | O_CREAT | O_EXCL, 0644);
        if (fd < 0 || write(fd, s, strlen(s)) < 0) _exit(5);
        close(fd);
        *ready = 1;
        pause();
    }
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&su, len) != 0 || listen(fd, 16) != 0) _exit(6);
    *ready = 1;
    /* hold the name until the test kills it (60 s at most): nothing may end the squat
       early (a SIGPIPE from a rank that hung up did), or rank 0 could take the name */
    for (int i = 0; i < 600; i++) {
        struct pollfd p = { .fd = fd, .events = POLLIN };
        if (poll(&p, 1, 100) != 1) continue;
        int c = accept(fd, NULL, NULL);
        if (c < 0) continue;
        ssize_t w = send(c, s, strlen(s) + 1, MSG_NOSIGNAL);   /* a rank that refuses hangs up first */
        (void)w;
        close(c);
    }
    _exit(0);
}

static int idh_body(loom_comm_t unused, int rank, int n, void *arg)
{
    (void)unused;
    (void)arg;
    set_rank_env(rank, n);
    setenv("LOOM_TIMEOUT_MS", "3000", 1);
    loom_comm_t comm = NULL;
    loom_result_t r = loom_comm_init_env(&comm);
    printf("rank %d: %s: %s\n", rank, loom_strerror(r), loom_last_error(NULL));
    CHECK(r != LOOM_SUCCESS);
    CHECK(strstr(loom_last_error(NULL), "65534") != NULL || strstr(loom_last_error(NULL), "EADDRINUSE") != NULL ||
          strstr(loom_last_error(NULL), "in use") != NULL);
    return 0;
}

static int id_handoff(void)
{
    int rank = -1;   /* for CHECK */
    if (geteuid() != 0) {
        printf("id-handoff: needs root (to play another user): skip\n");
        return 77;
    }
    char key[64], file[128];
    snprintf(key, sizeof key, "ompi-loomtest%d", (int)getpid());
    setenv("OMPI_MCA_ess_base_jobid", key + 5, 1);
    int *ready = mmap(NULL, sizeof *ready, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    int fail = 0;
    for (int mode = 0; mode < 2; mode++) {
        *ready = 0;
        snprintf(file, sizeof file, "/tmp/loom-test-id.%d", (int)getpid());
        if (mode) setenv("LOOM_ID_FILE", file, 1);
        pid_t in = intruder(key, mode ? file : NULL, ready);
        for (int i = 0; i < 3000 && !*ready; i++) usleep(1000);
        CHECK(*ready);
        struct run_opts o = { .timeout_s = 30, .no_comm = 1 };
        fail |= run_ranks(mode ? "id-file-planted" : "id-socket-squatted", 2, idh_body, NULL, &o);
        kill(in, SIGKILL);
        waitpid(in, NULL, 0);
        unlink(file);
    }
    unsetenv("LOOM_ID_FILE");
    return fail;
}

int main(int argc, char **argv)
{
    const char *only = argc > 1 ? argv[1] : "";
    int fail = 0;
    refused = mmap(NULL, sizeof *refused, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    osh = mmap(NULL, sizeof *osh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (refused == MAP_FAILED || osh == MAP_FAILED) return 1;
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
    if (!strcmp(only, "idlers") || !strcmp(only, "flood")) fail |= root_outsiders(only);
    if (!strcmp(only, "listeners")) fail |= listeners();
    if (!strcmp(only, "idle-cpu")) {
        setenv("LOOM_TRANSPORT", "tcp", 1);
        setenv("LOOM_HEARTBEAT_MS", "30000", 1);
        fail |= run_ranks("idle-cpu", 2, idle_cpu_body, NULL, NULL);
    }
    if (!strcmp(only, "secret-file")) fail |= secret_file();
    if (!strcmp(only, "id-handoff")) fail |= id_handoff();
    if (!strcmp(only, "settings")) fail |= settings();
    return fail;
}
