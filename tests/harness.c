/* harness.c: fork N ranks, give each a communicator, wait with a deadline. */
#include "harness.h"

#include <signal.h>
#include <stdbool.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

loom_id_t harness_id;

static int run_forked(const char *name, int n, rank_fn fn, void *arg, const struct run_opts *opts);

double harness_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int rank_main(int r, int n, rank_fn fn, void *arg, const struct run_opts *o)
{
    int rank = r;
    loom_comm_t comm = NULL;
    if (!o->no_comm) CHECK_OK(loom_comm_init(&comm, n, &harness_id, r));
    int rc = fn(comm, r, n, arg);
    if (comm) loom_comm_destroy(comm);
    return rc;
}

/* The rendezvous root runs in a process of its own, so this one never starts a thread
   before it forks the ranks (a child forked from a threaded parent may inherit a lock
   held by another thread: under ASan the allocator's, and the child hangs). It hands
   the id back through a pipe and lives until the parent kills it. */
static pid_t start_root(const char *name, int timeout_s)
{
    int p[2];
    if (pipe(p) != 0) return -1;
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        close(p[0]);
        alarm((unsigned)timeout_s + 10);   /* never outlives the run */
        loom_id_t id;
        if (loom_get_id(&id) != LOOM_SUCCESS) {
            fprintf(stderr, "%s: loom_get_id: %s\n", name, loom_last_error(NULL));
            _exit(1);
        }
        if (write(p[1], &id, sizeof id) != (ssize_t)sizeof id) _exit(1);
        close(p[1]);
        for (;;) pause();
    }
    close(p[1]);
    ssize_t got = pid > 0 ? read(p[0], &harness_id, sizeof harness_id) : -1;
    close(p[0]);
    if (got != (ssize_t)sizeof harness_id) {
        if (pid > 0) {
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
        }
        return -1;
    }
    return pid;
}

int run_ranks(const char *name, int n, rank_fn fn, void *arg, const struct run_opts *opts)
{
    struct run_opts o = { .timeout_s = 120 };
    if (opts) o = *opts;
    if (o.timeout_s <= 0) o.timeout_s = 120;
    pid_t root = start_root(name, o.timeout_s);
    if (root < 0) {
        fprintf(stderr, "%s: could not start the rendezvous root\n", name);
        return 1;
    }
    int fail = run_forked(name, n, fn, arg, &o);
    kill(root, SIGKILL);
    waitpid(root, NULL, 0);
    return fail;
}

static int run_forked(const char *name, int n, rank_fn fn, void *arg, const struct run_opts *opts)
{
    struct run_opts o = *opts;
    pid_t pids[1024];
    fflush(stdout);
    fflush(stderr);
    for (int r = 0; r < n; r++) {
        pids[r] = fork();
        if (pids[r] == 0) {
            alarm((unsigned)o.timeout_s + 5);   /* a rank never outlives its run */
            int rc = rank_main(r, n, fn, arg, &o);
            exit(rc ? 1 : 0);     /* not _exit: LeakSanitizer checks at exit */
        }
    }
    double deadline = harness_now() + o.timeout_s, t0 = harness_now();
    int left = n, fail = 0;
    int done[1024] = { 0 };
    while (left > 0) {
        int st;
        pid_t p = 0;
        for (int r = 0; r < n && p <= 0; r++)   /* the ranks only: the root is not ours to reap here */
            if (!done[r]) p = waitpid(pids[r], &st, WNOHANG);
        if (p <= 0) {
            if (harness_now() > deadline) {
                fprintf(stderr, "%s: TIMEOUT after %d s with %d of %d ranks still running:", name,
                        o.timeout_s, left, n);
                for (int r = 0; r < n; r++)
                    if (!done[r]) { fprintf(stderr, " %d", r); kill(pids[r], SIGKILL); }
                fprintf(stderr, "\n");
                for (int r = 0; r < n; r++)
                    if (!done[r]) waitpid(pids[r], NULL, 0);
                return 1;
            }
            usleep(2000);
            continue;
        }
        for (int r = 0; r < n; r++) {
            if (pids[r] != p) continue;
            done[r] = 1;
            left--;
            bool ok = WIFEXITED(st) && WEXITSTATUS(st) == 0;
            if (!ok && WIFSIGNALED(st) && (o.may_die >> r) & 1) ok = true;
            if (!ok) {
                fail = 1;
                if (WIFSIGNALED(st)) fprintf(stderr, "%s: rank %d killed by signal %d\n", name, r, WTERMSIG(st));
                else fprintf(stderr, "%s: rank %d exited with status %d\n", name, r, WEXITSTATUS(st));
            }
        }
    }
    printf("%s: %s (%d ranks, %.1f s)\n", name, fail ? "FAIL" : "ok", n, harness_now() - t0);
    fflush(stdout);
    return fail;
}
