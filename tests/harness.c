/* harness.c: fork N ranks, give each a communicator, wait with a deadline. */
#include "harness.h"

#include <signal.h>
#include <stdbool.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

loom_id_t harness_id;

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

int run_ranks(const char *name, int n, rank_fn fn, void *arg, const struct run_opts *opts)
{
    struct run_opts o = { .timeout_s = 120 };
    if (opts) o = *opts;
    if (o.timeout_s <= 0) o.timeout_s = 120;
    if (loom_get_id(&harness_id) != LOOM_SUCCESS) {
        fprintf(stderr, "%s: loom_get_id: %s\n", name, loom_last_error(NULL));
        return 1;
    }
    fflush(stdout);
    fflush(stderr);
    pid_t pids[1024];
    for (int r = 0; r < n; r++) {
        pids[r] = fork();
        if (pids[r] == 0) {
            alarm((unsigned)o.timeout_s + 5);   /* a rank never outlives its run */
            int rc = rank_main(r, n, fn, arg, &o);
            fflush(stdout);
            fflush(stderr);
            _exit(rc ? 1 : 0);
        }
    }
    double deadline = harness_now() + o.timeout_s, t0 = harness_now();
    int left = n, fail = 0;
    int done[1024] = { 0 };
    while (left > 0) {
        int st;
        pid_t p = waitpid(-1, &st, WNOHANG);
        if (p <= 0) {
            if (harness_now() > deadline) {
                fprintf(stderr, "%s: TIMEOUT after %d s with %d of %d ranks still running:", name,
                        o.timeout_s, left, n);
                for (int r = 0; r < n; r++)
                    if (!done[r]) { fprintf(stderr, " %d", r); kill(pids[r], SIGKILL); }
                fprintf(stderr, "\n");
                while (wait(NULL) > 0) {}
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
