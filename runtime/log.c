/* log.c: NCCL-style logging; the settings are described in log.h. A line reads
 *
 *     myhost:1234:0 [1240] INFO NET tcp.c:88 connected to rank 1 (10.0.0.2:41000)
 *     host:pid:rank [thread] LEVEL SUBSYS file:line message
 *
 * rank is "-" until the thread calls loom_log_set_rank; thread is the kernel thread id
 * (what top -H and gdb show), followed by "/name" when the thread was given a name of
 * its own (pthread_setname_np). Each line goes out in one write(2), so lines of
 * concurrent threads and processes sharing a file or terminal do not interleave.
 *
 * This is not a tracing system: no buffering, no timestamps, no rotation. Settings
 * are read once (pthread_once), through env.h; env.c never calls back in here.
 */
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "env.h"

/* ---- settings (written once, by init) ---- */

static pthread_once_t once = PTHREAD_ONCE_INIT;
static int level = LOOM_LOG_NONE;      /* most verbose level printed               */
_Atomic int loom_log_maybe_trace = 1;
static unsigned subsys = LOOM_SUB_ALL; /* enum loom_log_subsys bits printed         */
static int out_fd = STDERR_FILENO;
static char host[64] = "unknown";      /* short host name (up to the first dot)     */

static _Thread_local int my_rank = -1;

static const char *level_names[] = { [LOOM_LOG_NONE] = "NONE", [LOOM_LOG_WARN] = "WARN",
                                     [LOOM_LOG_INFO] = "INFO", [LOOM_LOG_TRACE] = "TRACE" };

static const struct { const char *name; unsigned bits; } subsystems[] = {
    { "INIT", LOOM_SUB_INIT }, { "BOOT", LOOM_SUB_BOOT }, { "NET", LOOM_SUB_NET },
    { "SHM", LOOM_SUB_SHM },   { "COLL", LOOM_SUB_COLL }, { "PROXY", LOOM_SUB_PROXY },
    { "ENV", LOOM_SUB_ENV },   { "ALL", LOOM_SUB_ALL },
};
#define NSUBSYS (sizeof subsystems / sizeof subsystems[0])

/* ---- formatting one line ---- */

#define LINE_BYTES 2048   /* longer messages are cut, ending in "..." */

static const char *subsys_name(unsigned sub)
{
    for (size_t i = 0; i < NSUBSYS; i++)
        if (subsystems[i].bits == sub) return subsystems[i].name;
    return "?";
}

/* "1240", or "1240/progress" when the thread has a name other than the program's. */
static void thread_label(char *buf, size_t len)
{
    char name[17] = "";
    long tid = (long)gettid();
    if (tid != (long)getpid() && prctl(PR_GET_NAME, name) == 0 && name[0] &&
        strncmp(name, program_invocation_short_name, 15) != 0)
        snprintf(buf, len, "%ld/%s", tid, name);
    else
        snprintf(buf, len, "%ld", tid);
}

/* Format and write one line. Used by loom_log and, before settings are complete, by
   init itself (so it must not touch once). */
static void emit(enum loom_log_level lvl, unsigned sub, const char *file, int line,
                 const char *fmt, va_list ap)
{
    char buf[LINE_BYTES], rank[16], thread[48];
    const char *base = strrchr(file, '/');
    if (my_rank >= 0) snprintf(rank, sizeof rank, "%d", my_rank);
    else snprintf(rank, sizeof rank, "-");
    thread_label(thread, sizeof thread);

    int n = snprintf(buf, sizeof buf, "%s:%d:%s [%s] %s %s %s:%d ", host, (int)getpid(), rank,
                     thread, level_names[lvl], subsys_name(sub), base ? base + 1 : file, line);
    if (n < 0) return;
    size_t used = (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1;
    int m = vsnprintf(buf + used, sizeof buf - used, fmt, ap);
    if (m > 0) used += (size_t)m;
    if (used > sizeof buf - 2) {                 /* cut: leave room for "...\n" */
        used = sizeof buf - 5;
        memcpy(buf + used, "...", 3);
        used += 3;
    }
    while (used > 0 && buf[used - 1] == '\n') used--;   /* callers' own newlines */
    buf[used++] = '\n';

    ssize_t w;
    do w = write(out_fd, buf, used);
    while (w < 0 && errno == EINTR);
}

/* A warning about the log settings themselves (init cannot call loom_log). */
static void init_warn(int line, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void init_warn(int line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    emit(LOOM_LOG_WARN, LOOM_SUB_ENV, __FILE__, line, fmt, ap);
    va_end(ap);
}

/* ---- reading the settings ---- */

static void read_host(void)
{
    char h[sizeof host];
    if (gethostname(h, sizeof h) != 0) return;
    h[sizeof h - 1] = '\0';
    h[strcspn(h, ".")] = '\0';
    if (h[0]) memcpy(host, h, sizeof host);
}

/* -1 when the text names no level. */
static int parse_level(const char *s)
{
    if (s[0] == '\0') return LOOM_LOG_NONE;
    if (strcasecmp(s, "WARN") == 0) return LOOM_LOG_WARN;
    if (strcasecmp(s, "INFO") == 0 || strcasecmp(s, "VERSION") == 0) return LOOM_LOG_INFO;
    if (strcasecmp(s, "TRACE") == 0) return LOOM_LOG_TRACE;
    return -1;
}

/* "INIT,NET" -> those bits; "^NET" -> all but NET. Unknown names are reported in
   bad (the first one) and skipped. */
static unsigned parse_subsys(const char *s, char *bad, size_t badlen)
{
    bool exclude = s[0] == '^';
    unsigned mask = 0;
    bad[0] = '\0';
    if (exclude) s++;
    while (*s) {
        size_t n = strcspn(s, ",");
        bool known = n == 0;                         /* empty items are harmless */
        for (size_t i = 0; i < NSUBSYS && !known; i++)
            if (strlen(subsystems[i].name) == n && strncasecmp(s, subsystems[i].name, n) == 0) {
                mask |= subsystems[i].bits;
                known = true;
            }
        if (!known && !bad[0]) snprintf(bad, badlen, "%.*s", (int)n, s);
        s += n;
        if (*s == ',') s++;
    }
    return exclude ? LOOM_SUB_ALL & ~mask : mask;
}

bool loom_log_level_ok(const char *s) { return parse_level(s) >= 0; }

bool loom_log_subsys_ok(const char *s)
{
    char bad[64];
    parse_subsys(s, bad, sizeof bad);
    return bad[0] == '\0';
}

/* "/tmp/loom.%h.%p.log" -> "/tmp/loom.myhost.1234.log"; "%%" -> "%". False when
   the result does not fit. */
static bool expand_path(const char *pat, char *out, size_t len)
{
    size_t o = 0;
    for (const char *p = pat; *p; p++) {
        char piece[64];
        const char *add = piece;
        char key = p[0] == '%' ? p[1] : '\0';
        if (key == 'h' || key == 'p' || key == '%') p++;
        if (key == 'h') add = host;
        else if (key == 'p') snprintf(piece, sizeof piece, "%d", (int)getpid());
        else snprintf(piece, sizeof piece, "%c", *p);     /* a plain character, or "%%" */
        size_t n = strlen(add);
        if (o + n >= len) return false;
        memcpy(out + o, add, n);
        o += n;
    }
    out[o] = '\0';
    return true;
}

/* Point out_fd at the file; on failure leave stderr and describe why in problem
   (else problem is ""). */
static void open_file(const char *pat, char *problem, size_t len)
{
    char path[PATH_MAX];
    problem[0] = '\0';
    if (!expand_path(pat, path, sizeof path)) {
        snprintf(problem, len, "LOOM_DEBUG_FILE '%.200s' expands to a path that is too long; "
                 "logging to stderr", pat);
        return;
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) {
        snprintf(problem, len, "cannot open LOOM_DEBUG_FILE %.300s: %s; logging to stderr", path,
                 strerror(errno));
        return;
    }
    out_fd = fd;
}

static void init(void)
{
    char problem[512], bad[64];
    read_host();
    const char *file = loom_env_str("LOOM_DEBUG_FILE");
    problem[0] = '\0';
    if (file[0]) open_file(file, problem, sizeof problem);
    if (problem[0]) init_warn(__LINE__, "%s", problem);

    const char *l = loom_env_str("LOOM_DEBUG");
    int lv = parse_level(l);
    level = lv < 0 ? LOOM_LOG_NONE : lv;
    if (lv < 0) init_warn(__LINE__, "LOOM_DEBUG='%s' is not WARN, INFO or TRACE; printing warnings only", l);
    atomic_store_explicit(&loom_log_maybe_trace, level >= LOOM_LOG_TRACE, memory_order_relaxed);

    const char *s = loom_env_str("LOOM_DEBUG_SUBSYS");
    subsys = parse_subsys(s, bad, sizeof bad);
    if (bad[0])
        init_warn(__LINE__, "LOOM_DEBUG_SUBSYS='%s': unknown subsystem '%s' ignored (known: "
                  "INIT,BOOT,NET,SHM,COLL,PROXY,ENV,ALL)", s, bad);
}

/* ---- the interface ---- */

void loom_log_set_rank(int rank) { my_rank = rank < 0 ? -1 : rank; }

int loom_log_enabled(enum loom_log_level lvl, enum loom_log_subsys sub)
{
    pthread_once(&once, init);
    if (lvl == LOOM_LOG_WARN) return 1;          /* failures are never silent */
    return lvl != LOOM_LOG_NONE && (int)lvl <= level && (subsys & (unsigned)sub) != 0;
}

void loom_log(enum loom_log_level lvl, enum loom_log_subsys sub, const char *file, int line,
              const char *fmt, ...)
{
    if ((int)lvl <= LOOM_LOG_NONE || (int)lvl > LOOM_LOG_TRACE || !loom_log_enabled(lvl, sub)) return;
    va_list ap;
    va_start(ap, fmt);
    emit(lvl, (unsigned)sub, file ? file : "?", line, fmt, ap);
    va_end(ap);
}
