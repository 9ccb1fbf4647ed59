/* loomrun: start N local ranks of a program.
 *
 *   loomrun -n 4 [--timeout SECONDS] [--no-tag] prog args...
 *
 * loomrun makes the job's id (loom_get_id: the rendezvous root runs as a thread in
 * loomrun until every rank has joined) and starts the ranks with LOOM_RANK,
 * LOOM_WORLD_SIZE, LOOM_LOCAL_RANK and LOOM_COMM_ID set. Every line a rank prints is
 * prefixed with "[rank] ". SIGINT/SIGTERM are forwarded. When a rank fails (non-zero
 * exit or a signal) the others are stopped (SIGTERM, then SIGKILL after 3 s) and
 * loomrun exits with that rank's status, naming it. Exit 0 only if every rank did.
 * Not a multi-host launcher: use mpirun, srun or torchrun-style variables for that.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "loom.h"

#define GRACE_S 3
#define LINE_MAX_BYTES 65536

struct rank {
    pid_t pid;
    int out_fd, err_fd;              /* read ends, -1 once closed           */
    char *buf[2];                    /* partial line per stream              */
    size_t len[2];
    int status;                      /* waitpid status once exited           */
    int exited;
};

static struct rank *ranks;
static int nranks, tag = 1;
static volatile sig_atomic_t got_signal;
static int sig_pipe[2];

static void on_signal(int sig)
{
    got_signal = sig;
    int saved = errno;
    ssize_t w = write(sig_pipe[1], "s", 1);
    (void)w;
    errno = saved;
}

static void usage(void)
{
    fprintf(stderr, "usage: loomrun -n N [--timeout SECONDS] [--no-tag] prog [args...]\n");
    exit(2);
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* ---- output ---- */

static void emit(int r, int which, const char *p, size_t n)
{
    FILE *f = which ? stderr : stdout;
    if (tag) fprintf(f, "[%d] ", r);
    fwrite(p, 1, n, f);
    fputc('\n', f);
    fflush(f);
}

/* Read what is there; print whole lines; keep the rest. Returns 0 on EOF. */
static int pump(int r, int which)
{
    struct rank *k = &ranks[r];
    int *fd = which ? &k->err_fd : &k->out_fd;
    char chunk[8192];
    ssize_t n = read(*fd, chunk, sizeof chunk);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) return 1;
    if (n <= 0) {
        if (k->len[which]) emit(r, which, k->buf[which], k->len[which]);
        k->len[which] = 0;
        close(*fd);
        *fd = -1;
        return 0;
    }
    for (ssize_t i = 0; i < n; i++) {
        if (chunk[i] == '\n' || k->len[which] == LINE_MAX_BYTES) {
            emit(r, which, k->buf[which], k->len[which]);
            k->len[which] = 0;
            if (chunk[i] == '\n') continue;
        }
        k->buf[which][k->len[which]++] = chunk[i];
    }
    return 1;
}

/* ---- ranks ---- */

static void start(int r, char **argv, const char *id)
{
    int out[2], err[2];
    if (pipe(out) || pipe(err)) {
        perror("loomrun: pipe");
        exit(1);
    }
    pid_t pid = fork();
    if (pid < 0) {
        perror("loomrun: fork");
        exit(1);
    }
    if (pid == 0) {
        char v[32];
        dup2(out[1], 1);
        dup2(err[1], 2);
        close(out[0]); close(out[1]); close(err[0]); close(err[1]);
        signal(SIGINT, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        snprintf(v, sizeof v, "%d", r);
        setenv("LOOM_RANK", v, 1);
        setenv("LOOM_LOCAL_RANK", v, 1);
        snprintf(v, sizeof v, "%d", nranks);
        setenv("LOOM_WORLD_SIZE", v, 1);
        setenv("LOOM_COMM_ID", id, 1);
        execvp(argv[0], argv);
        fprintf(stderr, "loomrun: cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    close(out[1]);
    close(err[1]);
    ranks[r] = (struct rank){ .pid = pid, .out_fd = out[0], .err_fd = err[0] };
    ranks[r].buf[0] = malloc(LINE_MAX_BYTES);
    ranks[r].buf[1] = malloc(LINE_MAX_BYTES);
}

static void signal_all(int sig)
{
    for (int r = 0; r < nranks; r++)
        if (!ranks[r].exited) kill(ranks[r].pid, sig);
}

static int reap(void)
{
    int n = 0, st;
    pid_t pid;
    while ((pid = waitpid(-1, &st, WNOHANG)) > 0)
        for (int r = 0; r < nranks; r++)
            if (ranks[r].pid == pid) {
                ranks[r].exited = 1;
                ranks[r].status = st;
                n++;
            }
    return n;
}

static int exit_code(int st)
{
    return WIFEXITED(st) ? WEXITSTATUS(st) : WIFSIGNALED(st) ? 128 + WTERMSIG(st) : 1;
}

int main(int argc, char **argv)
{
    double timeout = 0;
    int i = 1;
    nranks = 0;
    for (; i < argc && argv[i][0] == '-'; i++) {
        if ((!strcmp(argv[i], "-n") || !strcmp(argv[i], "-np")) && i + 1 < argc) nranks = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--timeout") && i + 1 < argc) timeout = atof(argv[++i]);
        else if (!strcmp(argv[i], "--no-tag")) tag = 0;
        else if (!strcmp(argv[i], "--tag-output")) tag = 1;
        else usage();
    }
    if (nranks < 1 || nranks > 1024 || i >= argc) usage();

    loom_id_t id;
    char ids[LOOM_ID_STRLEN];
    if (loom_get_id(&id) != LOOM_SUCCESS || loom_id_to_string(&id, ids, sizeof ids) != LOOM_SUCCESS) {
        fprintf(stderr, "loomrun: cannot create the job id: %s\n", loom_last_error(NULL));
        return 1;
    }
    if (pipe(sig_pipe)) return 1;
    fcntl(sig_pipe[0], F_SETFL, O_NONBLOCK);
    fcntl(sig_pipe[1], F_SETFL, O_NONBLOCK);
    struct sigaction sa = { .sa_handler = on_signal };
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGCHLD, &sa, NULL);

    ranks = calloc((size_t)nranks, sizeof *ranks);
    for (int r = 0; r < nranks; r++) start(r, argv + i, ids);

    double t0 = now(), kill_at = 0, all_gone = 0;
    int killed = 0;
    int failed = -1, alive = nranks, open_fds = 2 * nranks, code = 0;
    struct pollfd *pf = calloc((size_t)(2 * nranks + 1), sizeof *pf);
    int *who = calloc((size_t)(2 * nranks + 1), sizeof *who);
    while (alive > 0 || open_fds > 0) {
        int n = 0;
        pf[n++] = (struct pollfd){ .fd = sig_pipe[0], .events = POLLIN };
        for (int r = 0; r < nranks; r++) {
            if (ranks[r].out_fd >= 0) { who[n] = 2 * r; pf[n++] = (struct pollfd){ .fd = ranks[r].out_fd, .events = POLLIN }; }
            if (ranks[r].err_fd >= 0) { who[n] = 2 * r + 1; pf[n++] = (struct pollfd){ .fd = ranks[r].err_fd, .events = POLLIN }; }
        }
        poll(pf, (nfds_t)n, 200);
        if (pf[0].revents) {
            char b[64];
            while (read(sig_pipe[0], b, sizeof b) > 0) {}
        }
        for (int k = 1; k < n; k++)
            if (pf[k].revents && !pump(who[k] / 2, who[k] % 2)) open_fds--;
        alive -= reap();
        if (got_signal == SIGINT || got_signal == SIGTERM) {
            fprintf(stderr, "loomrun: got signal %d; stopping the ranks\n", (int)got_signal);
            signal_all((int)got_signal);
            if (!kill_at) kill_at = now() + GRACE_S;
            if (!code) code = 128 + (int)got_signal;
            got_signal = 0;
        }
        for (int r = 0; r < nranks && failed < 0; r++) {
            if (!ranks[r].exited || exit_code(ranks[r].status) == 0 || code) continue;
            failed = r;
            int st = ranks[r].status;
            if (WIFSIGNALED(st))
                fprintf(stderr, "loomrun: rank %d (pid %d) killed by signal %d; stopping the other ranks\n", r,
                        (int)ranks[r].pid, WTERMSIG(st));
            else
                fprintf(stderr, "loomrun: rank %d (pid %d) exited with status %d; stopping the other ranks\n", r,
                        (int)ranks[r].pid, WEXITSTATUS(st));
            code = exit_code(st);
            signal_all(SIGTERM);
            kill_at = now() + GRACE_S;
        }
        if (timeout > 0 && !kill_at && now() - t0 > timeout) {
            fprintf(stderr, "loomrun: timeout after %.0f s; stopping the ranks\n", timeout);
            signal_all(SIGTERM);
            kill_at = now() + GRACE_S;
            code = 124;
        }
        if (kill_at && !killed && now() > kill_at) {
            signal_all(SIGKILL);
            killed = 1;
        }
        /* A rank's own children may hold its pipes open: once every rank is gone,
           drain for at most a second. */
        if (alive == 0 && !all_gone) all_gone = now();
        if (all_gone && now() - all_gone > 1) break;
    }
    return code;
}
