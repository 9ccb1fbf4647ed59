/* loomrun: start N ranks of a program on this host and watch them.
 *
 *     loomrun -n 4 [--timeout SECONDS] [--tag-output | --no-tag] prog [args...]
 *
 * loomrun makes the job's id with loom_get_id (the rendezvous root then runs as a
 * thread inside loomrun until every rank has joined) and starts the ranks with
 * LOOM_RANK, LOOM_WORLD_SIZE, LOOM_LOCAL_RANK and LOOM_COMM_ID set, so a rank only
 * has to call loom_comm_init_env. What a rank prints on stdout (stderr) comes out on
 * loomrun's stdout (stderr) a whole line at a time, prefixed "[rank] ".
 *
 * Failure: when a rank exits non-zero or is killed, loomrun names it, sends SIGTERM
 * to the others, SIGKILL 3 s later, and exits with that rank's status (128 + signal
 * for a signal). It exits 0 only when every rank did. --timeout stops everything the
 * same way and exits 124.
 *
 * Signals: the ranks stay in loomrun's process group, so Ctrl-C at a terminal reaches
 * every rank at once, as it would reach the commands of a shell pipeline; loomrun does
 * not repeat such a signal. SIGINT, SIGTERM or SIGHUP sent to loomrun alone (kill) is
 * forwarded to the ranks. Either way the ranks get 3 s before SIGKILL, a second signal
 * kills them at once, and loomrun then dies of the signal it got, so the shell sees it.
 * Signals ignored when loomrun started (nohup, a background job of a script) stay
 * ignored, in loomrun and in the ranks. If loomrun itself is killed outright, the ranks
 * get SIGTERM from the kernel (PR_SET_PDEATHSIG).
 *
 * Signals go to the ranks' own processes, not to processes a rank starts: a shell
 * script rank should exec its last command. Once every rank has ended, loomrun waits
 * at most 1 s more for output from such leftovers, then exits.
 *
 * Output: loomrun never sits in a blocked write (it polls for room), so it keeps
 * acting on signals while a reader stalls; while stopping it drops output that
 * cannot be written for 3 s. Only rank 0 reads loomrun's stdin; the others get
 * /dev/null.
 *
 * This is not a multi-host launcher: across hosts use mpirun, srun or torchrun, whose
 * variables loom_comm_init_env also reads. It does not pin ranks to cores.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "loom.h"

extern char **environ;

#define MAX_RANKS  4096
#define GRACE_MS   3000     /* SIGTERM, then SIGKILL this much later                   */
#define DRAIN_MS   1000     /* after the last rank exits, wait this long for output from
                               children of ranks that still hold the pipes              */
#define REAP_MS    10000    /* after SIGKILL, give up on ranks that still do not die    */
#define LINE_BYTES 65536    /* longer lines are split                                   */

/* ---- messages ---- */

/* loomrun's own messages: one write(2) each, so they do not tear ranks' lines. */
static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
    char buf[1024];
    int n = snprintf(buf, sizeof buf, "loomrun: ");
    va_list ap;
    va_start(ap, fmt);
    n += vsnprintf(buf + n, sizeof buf - (size_t)n - 1, fmt, ap);
    va_end(ap);
    if (n > (int)sizeof buf - 2) n = (int)sizeof buf - 2;
    buf[n++] = '\n';
    ssize_t w = write(STDERR_FILENO, buf, (size_t)n);
    (void)w;
}

static int64_t now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* ---- options ---- */

struct options {
    int nranks;
    bool tag;              /* prefix lines with "[rank] "           */
    int64_t timeout_ms;    /* 0: none                              */
    char **argv;           /* the program and its arguments         */
};

/* Exits: 2 after a problem, 0 for --help. */
static void usage(const char *problem)
{
    FILE *f = problem ? stderr : stdout;
    if (problem) fprintf(stderr, "loomrun: %s\n", problem);
    fprintf(f,
            "usage: loomrun -n N [--timeout SECONDS] [--tag-output | --no-tag] prog [args...]\n"
            "  -n, -np N          start N ranks of prog on this host (1..%d)\n"
            "  --timeout SECONDS  stop every rank after SECONDS and exit 124\n"
            "  --tag-output       prefix every output line with \"[rank] \" (the default)\n"
            "  --no-tag           pass the ranks' lines through unprefixed\n"
            "Each rank gets LOOM_RANK, LOOM_WORLD_SIZE, LOOM_LOCAL_RANK and LOOM_COMM_ID.\n",
            MAX_RANKS);
    exit(problem ? 2 : 0);
}

static bool parse_int(const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (end == s || *end || errno || v < lo || v > hi) return false;
    *out = v;
    return true;
}

/* The value of an option: "-n 4", "-n4", "--timeout=5". */
static const char *option_value(int argc, char **argv, int *i, const char *name)
{
    size_t len = strlen(name);
    const char *a = argv[*i];
    if (a[len] == '=') return a + len + 1;
    if (a[len] != '\0') return a + len;           /* -n4 */
    if (*i + 1 >= argc) {
        char msg[64];
        snprintf(msg, sizeof msg, "%s needs a value", name);
        usage(msg);
    }
    return argv[++*i];
}

static bool is_option(const char *a, const char *name)
{
    size_t len = strlen(name);
    if (strncmp(a, name, len) != 0) return false;
    if (a[len] == '\0' || a[len] == '=') return true;
    return strcmp(name, "-n") == 0 && a[len] >= '0' && a[len] <= '9';   /* -n4 */
}

static struct options parse_options(int argc, char **argv)
{
    struct options o = { .nranks = 0, .tag = true };
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        const char *a = argv[i];
        char msg[128];
        long v;
        if (strcmp(a, "--") == 0) { i++; break; }
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) usage(NULL);
        if (strcmp(a, "--version") == 0) {
            printf("loomrun (loom) %d.%d.%d\n", LOOM_VERSION_MAJOR, LOOM_VERSION_MINOR, LOOM_VERSION_PATCH);
            exit(0);
        }
        if (is_option(a, "-np") || is_option(a, "--np") || is_option(a, "-n")) {
            const char *name = is_option(a, "-np") ? "-np" : is_option(a, "--np") ? "--np" : "-n";
            const char *s = option_value(argc, argv, &i, name);
            snprintf(msg, sizeof msg, "-n wants a number of ranks from 1 to %d, not '%.40s'", MAX_RANKS, s);
            if (!parse_int(s, 1, MAX_RANKS, &v)) usage(msg);
            o.nranks = (int)v;
        } else if (is_option(a, "--timeout")) {
            const char *s = option_value(argc, argv, &i, "--timeout");
            char *end;
            double t = strtod(s, &end);
            snprintf(msg, sizeof msg, "--timeout wants a positive number of seconds, not '%.40s'", s);
            if (end == s || *end || !(t > 0) || t > 1e9) usage(msg);
            o.timeout_ms = (int64_t)(t * 1000 + 0.5);
            if (o.timeout_ms < 1) o.timeout_ms = 1;
        } else if (strcmp(a, "--tag-output") == 0 || strcmp(a, "--tag") == 0) {
            o.tag = true;
        } else if (strcmp(a, "--no-tag") == 0 || strcmp(a, "--no-tag-output") == 0) {
            o.tag = false;
        } else {
            snprintf(msg, sizeof msg, "unknown option '%.60s'", a);
            usage(msg);
        }
    }
    if (o.nranks == 0) usage("-n N is required");
    if (i >= argc) usage("no program to run");
    o.argv = argv + i;
    return o;
}

/* ---- finding the program ---- */

static bool executable_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode) && access(path, X_OK) == 0;
}

/* Search PATH the way execvp does, so a typo fails once, before any rank starts. */
static bool find_program(const char *name, char *out, size_t len)
{
    if (strchr(name, '/')) {
        snprintf(out, len, "%s", name);
        return executable_file(out);
    }
    const char *path = getenv("PATH");
    if (path == NULL) path = "/usr/local/bin:/usr/bin:/bin";
    for (const char *p = path;; p++) {
        size_t n = strcspn(p, ":");
        if (n == 0) snprintf(out, len, "./%s", name);        /* empty entry: "." */
        else snprintf(out, len, "%.*s/%s", (int)n, p, name);
        if (executable_file(out)) return true;
        p += n;
        if (*p == '\0') return false;
    }
}

/* ---- the job ---- */

struct stream {              /* one output of one rank */
    int fd;                  /* read end of the pipe; -1 once closed */
    int dest;                /* STDOUT_FILENO or STDERR_FILENO       */
    char *line;              /* the partial line, LINE_BYTES, lazily */
    size_t len;
};

struct rank {
    pid_t pid;               /* 0: not started */
    struct stream s[2];      /* the rank's stdout, stderr */
    bool exited;
    int status;              /* waitpid status, once exited */
};

struct job {
    struct options opt;
    struct rank *ranks;
    int started, alive, open_streams;
    int sigfd;               /* signalfd: SIGCHLD and the stop signals */
    sigset_t old_mask;       /* loomrun's mask at start; the ranks get it back */
    struct rlimit old_nofile;
    bool stopping;           /* ranks are being stopped                       */
    int code;                /* loomrun's exit status                         */
    int reraise;             /* signal loomrun dies of at the end, or 0       */
    int64_t deadline;        /* --timeout, as now_ms(); 0: none               */
    int64_t kill_at;         /* SIGKILL then; 0: not planned                  */
    int64_t killed_at;       /* when SIGKILL went out; 0: not yet             */
    int64_t drain_until;     /* stop waiting for output then; 0: not yet      */
    bool drop_output;        /* stdout/stderr stalled while stopping: give up  */
};

/* ---- stopping ranks ---- */

static void signal_all(struct job *j, int sig)
{
    for (int r = 0; r < j->started; r++)
        if (!j->ranks[r].exited) kill(j->ranks[r].pid, sig);   /* unreaped: pid is ours */
}

/* Stop every rank: sig now (0: none, they already got one), SIGKILL after the grace. */
static void begin_stop(struct job *j, int sig, int code)
{
    j->stopping = true;
    j->code = code;
    if (sig) signal_all(j, sig);
    j->kill_at = now_ms() + GRACE_MS;
}

static void kill_now(struct job *j)
{
    signal_all(j, SIGKILL);
    if (!j->killed_at) j->killed_at = now_ms();
}

/* SIGINT/SIGTERM/SIGHUP for loomrun. from_tty: the terminal sent it to the whole
   process group, ranks included. */
static void on_stop_signal(struct job *j, int sig, bool from_tty)
{
    if (j->stopping) {
        say("got SIG%s while stopping; killing the ranks now", sigabbrev_np(sig));
        if (!j->reraise) j->reraise = sig;
        kill_now(j);
        return;
    }
    say("got SIG%s; stopping the ranks", sigabbrev_np(sig));
    begin_stop(j, from_tty ? 0 : sig, 128 + sig);
    j->reraise = sig;
}

static int status_code(int st)
{
    if (WIFEXITED(st)) return WEXITSTATUS(st);
    if (WIFSIGNALED(st)) return 128 + WTERMSIG(st);
    return 1;
}

/* A rank ended: the first failure names itself and stops the rest. */
static void rank_ended(struct job *j, int r, int st)
{
    struct rank *k = &j->ranks[r];
    k->exited = true;
    k->status = st;
    j->alive--;
    if (j->stopping || status_code(st) == 0) return;
    const char *rest = j->alive > 0 ? "; stopping the other ranks" : "";
    if (WIFSIGNALED(st))
        say("rank %d (pid %d) killed by signal %d (%s)%s", r, (int)k->pid, WTERMSIG(st),
            strsignal(WTERMSIG(st)), rest);
    else
        say("rank %d (pid %d) exited with status %d%s", r, (int)k->pid, status_code(st), rest);
    begin_stop(j, SIGTERM, status_code(st));
}

/* Collect every rank that has ended. Bounded: each pid is reaped once. */
static void reap(struct job *j)
{
    int st;
    pid_t pid;
    while (j->alive > 0 && (pid = waitpid(-1, &st, WNOHANG)) > 0) {
        if (!WIFEXITED(st) && !WIFSIGNALED(st)) continue;
        for (int r = 0; r < j->started; r++)
            if (j->ranks[r].pid == pid && !j->ranks[r].exited) rank_ended(j, r, st);
    }
}

static void read_signals(struct job *j)
{
    struct signalfd_siginfo si;
    for (int i = 0; i < 16; i++) {          /* at most one pending of each signal */
        if (read(j->sigfd, &si, sizeof si) != (ssize_t)sizeof si) return;
        if (si.ssi_signo != SIGCHLD) on_stop_signal(j, (int)si.ssi_signo, si.ssi_code == SI_KERNEL);
    }
}

/* "0, 2, 5" (the ranks not yet ended), cut with "..." when long. */
static const char *running_ranks(const struct job *j, char *buf, size_t len)
{
    size_t o = 0;
    buf[0] = '\0';
    for (int r = 0; r < j->started; r++) {
        if (j->ranks[r].exited) continue;
        if (o + 16 >= len) {
            snprintf(buf + o, len - o, "...");
            break;
        }
        o += (size_t)snprintf(buf + o, len - o, "%s%d", o ? ", " : "", r);
    }
    return buf;
}

/* Deadlines: --timeout, the SIGKILL after the grace. */
static void check_timers(struct job *j)
{
    int64_t t = now_ms();
    if (j->deadline && t >= j->deadline && !j->stopping) {
        say("timed out after %.3g s; stopping the ranks", (double)j->opt.timeout_ms / 1000);
        begin_stop(j, SIGTERM, 124);
    }
    if (j->kill_at && t >= j->kill_at && !j->killed_at && j->alive > 0) {
        char list[128];
        say("rank%s %s still running %d s after the stop signal; sending SIGKILL",
            j->alive > 1 ? "s" : "", running_ranks(j, list, sizeof list), GRACE_MS / 1000);
        kill_now(j);
    }
}

/* ---- output: prefixed lines ---- */

/* Copy of the first at most max bytes of iov[0..n) into out; returns its length. */
static int iov_prefix(const struct iovec *iov, int n, size_t max, struct iovec *out)
{
    int k = 0;
    for (; k < n && max > 0; k++) {
        out[k] = iov[k];
        if (out[k].iov_len > max) out[k].iov_len = max;
        max -= out[k].iov_len;
    }
    return k;
}

/* Write all of iov to fd (stdout or stderr), PIPE_BUF bytes at a time once poll says
   there is room, so loomrun never sits in a blocked write: while a reader stalls it
   still acts on signals and on its deadlines. Stalled for GRACE_MS while stopping, it
   gives up on output (everything after is dropped): stopping must end. */
static void write_all(struct job *j, int fd, struct iovec *iov, int n)
{
    int64_t stalled_since = 0;
    while (n > 0 && !j->drop_output) {
        struct pollfd p[2] = { { .fd = fd, .events = POLLOUT }, { .fd = j->sigfd, .events = POLLIN } };
        int ready = poll(p, 2, 1000);
        if (ready > 0 && p[1].revents) read_signals(j);
        reap(j);
        check_timers(j);
        if (ready <= 0 || !(p[0].revents & (POLLOUT | POLLERR | POLLHUP | POLLNVAL))) {
            int64_t t = now_ms();
            if (!stalled_since) stalled_since = t;
            if (j->stopping && t - stalled_since >= GRACE_MS) {
                j->drop_output = true;
                say("output stalled for %d s while stopping; dropping the rest", GRACE_MS / 1000);
            }
            continue;
        }
        stalled_since = 0;
        struct iovec part[4];
        int k = iov_prefix(iov, n, PIPE_BUF, part);
        ssize_t w = writev(fd, part, k);
        if (w < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (w < 0) return;                  /* the reader is gone: drop the line */
        for (; n > 0 && (size_t)w >= iov->iov_len; iov++, n--) w -= (ssize_t)iov->iov_len;
        if (n > 0) {
            iov->iov_base = (char *)iov->iov_base + w;
            iov->iov_len -= (size_t)w;
        }
    }
}

/* Lines waiting to be written, by file descriptor (1: stdout, 2: stderr): a read of
   many lines goes out in few writes. Holds any one line (prefix + LINE_BYTES buffered
   + at most LINE_BYTES read + newline). */
#define OUT_BYTES (4 * LINE_BYTES)
static struct { char data[OUT_BYTES]; size_t len; } pending[3];

static void flush_output(struct job *j, int fd)
{
    struct iovec iov = { pending[fd].data, pending[fd].len };
    if (pending[fd].len) write_all(j, fd, &iov, 1);
    pending[fd].len = 0;
}

/* One output line: prefix, the buffered part, the new part, newline. */
static void emit_line(struct job *j, int r, const struct stream *s, const char *more, size_t nmore)
{
    char prefix[24] = "";
    if (j->opt.tag) snprintf(prefix, sizeof prefix, "[%d] ", r);
    const char *piece[3] = { prefix, s->line, more };
    size_t len[3] = { strlen(prefix), s->len, nmore };
    if (pending[s->dest].len + len[0] + len[1] + len[2] + 1 > OUT_BYTES) flush_output(j, s->dest);
    char *out = pending[s->dest].data + pending[s->dest].len;
    for (int i = 0; i < 3; i++) {
        if (len[i]) memcpy(out, piece[i], len[i]);
        out += len[i];
    }
    *out++ = '\n';
    pending[s->dest].len = (size_t)(out - pending[s->dest].data);
}

/* Keep an unfinished line; a full buffer goes out as a line of its own. */
static void keep_partial(struct job *j, int r, struct stream *s, const char *p, size_t n)
{
    while (n > 0) {
        if (s->line == NULL && (s->line = malloc(LINE_BYTES)) == NULL) {
            emit_line(j, r, s, p, n);       /* no memory: pass it on as it is */
            return;
        }
        size_t take = n < LINE_BYTES - s->len ? n : LINE_BYTES - s->len;
        memcpy(s->line + s->len, p, take);
        s->len += take;
        p += take;
        n -= take;
        if (s->len == LINE_BYTES) {
            emit_line(j, r, s, "", 0);
            s->len = 0;
        }
    }
}

static void close_stream(struct job *j, int r, struct stream *s)
{
    if (s->len) emit_line(j, r, s, "", 0);   /* a last line without newline */
    flush_output(j, s->dest);
    s->len = 0;
    free(s->line);
    s->line = NULL;
    close(s->fd);
    s->fd = -1;
    j->open_streams--;
}

/* Read what the pipe has and print every completed line. */
static void pump(struct job *j, int r, struct stream *s)
{
    static char chunk[LINE_BYTES];
    ssize_t n = read(s->fd, chunk, sizeof chunk);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) return;
    if (n <= 0) {                            /* EOF, or the pipe failed */
        close_stream(j, r, s);
        return;
    }
    const char *p = chunk, *end = chunk + n;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (nl == NULL) {
            keep_partial(j, r, s, p, (size_t)(end - p));
            break;
        }
        emit_line(j, r, s, p, (size_t)(nl - p));
        s->len = 0;
        p = nl + 1;
    }
    flush_output(j, s->dest);
}

/* ---- starting ranks ---- */

static const char *set_by_loomrun[] = { "LOOM_RANK=", "LOOM_WORLD_SIZE=", "LOOM_LOCAL_RANK=",
                                        "LOOM_COMM_ID=" };
#define NSET 4

/* environ without our four variables, with NSET free slots at the end and a NULL. */
static char **base_environment(int *nbase)
{
    int n = 0, k = 0;
    while (environ[n]) n++;
    char **env = calloc((size_t)n + NSET + 1, sizeof *env);
    if (env == NULL) return NULL;
    for (int i = 0; i < n; i++) {
        bool ours = false;
        for (int v = 0; v < NSET; v++)
            ours |= strncmp(environ[i], set_by_loomrun[v], strlen(set_by_loomrun[v])) == 0;
        if (!ours) env[k++] = environ[i];
    }
    *nbase = k;
    return env;
}

/* The part of a rank between fork and exec: async-signal-safe calls only (loomrun
   has threads). Reports exec's errno through errpipe and exits 127. */
static void child(const struct job *j, int r, const char *path, char **env, int out_w, int err_w,
                  int errpipe, pid_t parent)
{
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent) _exit(127);                /* loomrun died already */
    sigprocmask(SIG_SETMASK, &j->old_mask, NULL);
    setrlimit(RLIMIT_NOFILE, &j->old_nofile);
    if (r != 0) {
        int fd = open("/dev/null", O_RDONLY);
        if (fd >= 0 && fd != STDIN_FILENO) {
            dup2(fd, STDIN_FILENO);
            close(fd);
        }
    }
    if (dup2(out_w, STDOUT_FILENO) < 0 || dup2(err_w, STDERR_FILENO) < 0) _exit(127);
    execvpe(path, j->opt.argv, env);
    int e = errno;
    ssize_t w = write(errpipe, &e, sizeof e);
    (void)w;
    _exit(127);
}

/* Fork and exec rank r. 0, or (with a message) the exit status loomrun should end
   with: 126/127 as a shell would when exec fails, 1 when fork or pipe fails. */
static int start_rank(struct job *j, int r, const char *path, char **env)
{
    int out[2], err[2], ep[2];
    struct rank *k = &j->ranks[r];
    if (pipe2(out, O_CLOEXEC) != 0) goto out_fail;
    if (pipe2(err, O_CLOEXEC) != 0) goto out_close_out;
    if (pipe2(ep, O_CLOEXEC) != 0) goto out_close_err;
    pid_t parent = getpid(), pid = fork();
    if (pid < 0) goto out_close_ep;
    if (pid == 0) child(j, r, path, env, out[1], err[1], ep[1], parent);

    close(out[1]);
    close(err[1]);
    close(ep[1]);
    *k = (struct rank){ .pid = pid };
    k->s[0] = (struct stream){ .fd = out[0], .dest = STDOUT_FILENO };
    k->s[1] = (struct stream){ .fd = err[0], .dest = STDERR_FILENO };
    fcntl(out[0], F_SETFL, O_NONBLOCK);
    fcntl(err[0], F_SETFL, O_NONBLOCK);
    j->started++;
    j->alive++;
    j->open_streams += 2;

    int e = 0;
    ssize_t n;
    do n = read(ep[0], &e, sizeof e);                    /* EOF: exec succeeded */
    while (n < 0 && errno == EINTR);
    close(ep[0]);
    if (n == (ssize_t)sizeof e) {
        say("cannot run %s (rank %d): %s", path, r, strerror(e));
        return e == ENOENT ? 127 : 126;
    }
    return 0;

out_close_ep:
    close(ep[0]);
    close(ep[1]);
out_close_err:
    close(err[0]);
    close(err[1]);
out_close_out:
    close(out[0]);
    close(out[1]);
out_fail:
    say("cannot start rank %d: %s", r, strerror(errno));
    return 1;
}

/* Start every rank; stops at the first that cannot start and returns start_rank's
   status for it (0: all started). */
static int start_ranks(struct job *j, const char *path, const char *id)
{
    int nbase;
    char **env = base_environment(&nbase);
    if (env == NULL) {
        say("out of memory");
        return 1;
    }
    char rank[32], size[32], local[32], comm[LOOM_ID_STRLEN + 16];
    snprintf(size, sizeof size, "LOOM_WORLD_SIZE=%d", j->opt.nranks);
    snprintf(comm, sizeof comm, "LOOM_COMM_ID=%s", id);
    env[nbase + 0] = rank;
    env[nbase + 1] = local;
    env[nbase + 2] = size;
    env[nbase + 3] = comm;
    int code = 0;
    for (int r = 0; r < j->opt.nranks && code == 0; r++) {
        snprintf(rank, sizeof rank, "LOOM_RANK=%d", r);
        snprintf(local, sizeof local, "LOOM_LOCAL_RANK=%d", r);
        code = start_rank(j, r, path, env);
    }
    free(env);
    return code;
}

/* ---- the event loop ---- */

/* Milliseconds until the next deadline, at most one second. */
static int poll_timeout(const struct job *j)
{
    int64_t t = now_ms(), next = t + 1000;
    int64_t d[] = { j->stopping ? 0 : j->deadline, j->killed_at ? 0 : j->kill_at, j->drain_until };
    for (size_t i = 0; i < sizeof d / sizeof d[0]; i++)
        if (d[i] && d[i] < next) next = d[i];
    return next <= t ? 0 : (int)(next - t);
}

/* True when there is nothing left to wait for (or waiting longer is pointless). */
static bool finished(struct job *j)
{
    int64_t t = now_ms();
    if (j->alive == 0) {
        if (j->open_streams == 0) return true;
        if (!j->drain_until) j->drain_until = t + DRAIN_MS;   /* children of ranks */
        return t >= j->drain_until;
    }
    if (j->killed_at && t >= j->killed_at + REAP_MS) {
        for (int r = 0; r < j->started; r++)
            if (!j->ranks[r].exited)
                say("rank %d (pid %d) survived SIGKILL for %d s; leaving it", r, (int)j->ranks[r].pid,
                    REAP_MS / 1000);
        if (j->code == 0) j->code = 1;
        return true;
    }
    return false;
}

static void run(struct job *j)
{
    int cap = 2 * j->started + 1;
    struct pollfd *pf = calloc((size_t)cap, sizeof *pf);
    struct stream **who = calloc((size_t)cap, sizeof *who);
    int *whose = calloc((size_t)cap, sizeof *whose);
    if (!pf || !who || !whose) {
        say("out of memory; killing the ranks");
        kill_now(j);
        j->code = 1;
    }
    while (pf && who && whose && !finished(j)) {
        int n = 0;
        pf[n++] = (struct pollfd){ .fd = j->sigfd, .events = POLLIN };
        for (int r = 0; r < j->started; r++)
            for (int k = 0; k < 2; k++)
                if (j->ranks[r].s[k].fd >= 0) {
                    who[n] = &j->ranks[r].s[k];
                    whose[n] = r;
                    pf[n] = (struct pollfd){ .fd = j->ranks[r].s[k].fd, .events = POLLIN };
                    n++;
                }
        int ready = poll(pf, (nfds_t)n, poll_timeout(j));
        if (ready < 0 && errno != EINTR) {
            say("poll failed: %s; killing the ranks", strerror(errno));
            kill_now(j);
            if (j->code == 0) j->code = 1;
            break;
        }
        if (ready > 0 && pf[0].revents) read_signals(j);
        for (int i = 1; ready > 0 && i < n; i++)
            if (pf[i].revents) pump(j, whose[i], who[i]);
        reap(j);
        check_timers(j);
    }
    for (int r = 0; r < j->started; r++)        /* pipes still held by ranks' children */
        for (int k = 0; k < 2; k++)
            if (j->ranks[r].s[k].fd >= 0) close_stream(j, r, &j->ranks[r].s[k]);
    free(pf);
    free(who);
    free(whose);
}

/* ---- main ---- */

/* Block SIGCHLD and the stop signals in every thread (before loom_get_id starts one)
   and read them from a signalfd. Ignored stop signals stay ignored. */
static bool setup_signals(struct job *j)
{
    static const int stops[] = { SIGINT, SIGTERM, SIGHUP };
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    for (size_t i = 0; i < sizeof stops / sizeof stops[0]; i++) {
        struct sigaction old;
        if (sigaction(stops[i], NULL, &old) == 0 && old.sa_handler != SIG_IGN) sigaddset(&set, stops[i]);
    }
    signal(SIGCHLD, SIG_DFL);               /* SIG_IGN would reap the ranks for us */
    if (sigprocmask(SIG_BLOCK, &set, &j->old_mask) != 0) return false;
    j->sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    return j->sigfd >= 0;
}

/* Two pipes per rank stay open in loomrun: make sure the descriptor limit allows it. */
static bool raise_fd_limit(struct job *j)
{
    rlim_t need = (rlim_t)j->opt.nranks * 2 + 64;
    if (getrlimit(RLIMIT_NOFILE, &j->old_nofile) != 0) return false;
    if (j->old_nofile.rlim_cur >= need) return true;
    struct rlimit more = { .rlim_cur = need, .rlim_max = j->old_nofile.rlim_max };
    if (more.rlim_max != RLIM_INFINITY && more.rlim_max < need) return false;
    return setrlimit(RLIMIT_NOFILE, &more) == 0;
}

/* A closed stdin, stdout or stderr would be reused by a pipe, and the ranks' stdout
   would then vanish at exec (the pipes are close-on-exec). */
static void ensure_std_fds(void)
{
    for (int fd = 0; fd <= 2; fd++)
        if (fcntl(fd, F_GETFD) < 0 && open("/dev/null", fd == 0 ? O_RDONLY : O_WRONLY) != fd) exit(1);
}

/* Die of the signal that stopped us, so that a calling shell sees it. */
static void die_of(int sig)
{
    sigset_t s;
    signal(sig, SIG_DFL);
    sigemptyset(&s);
    sigaddset(&s, sig);
    raise(sig);
    sigprocmask(SIG_UNBLOCK, &s, NULL);     /* delivered here */
}

int main(int argc, char **argv)
{
    ensure_std_fds();
    struct job j = { .opt = parse_options(argc, argv), .sigfd = -1 };
    char path[PATH_MAX];
    if (!find_program(j.opt.argv[0], path, sizeof path)) {
        say("cannot run %s: %s", j.opt.argv[0],
            strchr(j.opt.argv[0], '/') ? "not an executable file" : "not found in PATH");
        return 127;
    }
    if (!raise_fd_limit(&j)) {
        say("-n %d needs about %d open files; raise the limit (ulimit -n)", j.opt.nranks,
            2 * j.opt.nranks + 64);
        return 1;
    }
    if (!setup_signals(&j)) {
        say("cannot set up signal handling: %s", strerror(errno));
        return 1;
    }

    /* Every rank is on this host: the rendezvous root listens on loopback only (unless
       the user chose interfaces), not where the network can reach it. */
    loom_id_t id;
    char ids[LOOM_ID_STRLEN];
    bool own_ifname = getenv("LOOM_SOCKET_IFNAME") != NULL;
    if (!own_ifname) setenv("LOOM_SOCKET_IFNAME", "=lo", 1);
    loom_result_t idr = loom_get_id(&id);
    if (!own_ifname) unsetenv("LOOM_SOCKET_IFNAME");
    if (idr != LOOM_SUCCESS || loom_id_to_string(&id, ids, sizeof ids) != LOOM_SUCCESS) {
        say("cannot create the job's id: %s", loom_last_error(NULL));
        return 1;
    }

    j.ranks = calloc((size_t)j.opt.nranks, sizeof *j.ranks);
    if (j.ranks == NULL) {
        say("out of memory");
        return 1;
    }
    if (j.opt.timeout_ms) j.deadline = now_ms() + j.opt.timeout_ms;
    int code = start_ranks(&j, path, ids);
    if (code != 0) begin_stop(&j, SIGTERM, code);
    run(&j);
    free(j.ranks);
    if (j.reraise) die_of(j.reraise);
    return j.code;
}
