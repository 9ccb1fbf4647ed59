/* log.c: NCCL-style logging (settings in log.h). One write(2) per line, so lines of
 * concurrent threads and processes never interleave. Settings are read once. */
#include "log.h"

#include <fcntl.h>
#include <stdbool.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "env.h"

static int level = LOOM_LOG_NONE;
static unsigned subsys = LOOM_SUB_ALL;
static int out_fd = 2;
static char host[64] = "?";
static pthread_once_t once = PTHREAD_ONCE_INIT;
static _Thread_local int my_rank = -1;

static const struct { const char *name; unsigned bit; } subsystems[] = {
    { "INIT", LOOM_SUB_INIT }, { "BOOT", LOOM_SUB_BOOT }, { "NET", LOOM_SUB_NET },
    { "SHM", LOOM_SUB_SHM },   { "COLL", LOOM_SUB_COLL }, { "PROXY", LOOM_SUB_PROXY },
    { "ENV", LOOM_SUB_ENV },   { "ALL", LOOM_SUB_ALL },
};

static unsigned parse_subsys(const char *s)
{
    bool exclude = *s == '^';
    unsigned mask = 0;
    if (exclude) s++;
    while (*s) {
        size_t n = strcspn(s, ",");
        for (size_t i = 0; i < sizeof subsystems / sizeof subsystems[0]; i++)
            if (strlen(subsystems[i].name) == n && strncasecmp(s, subsystems[i].name, n) == 0)
                mask |= subsystems[i].bit;
        s += n;
        if (*s == ',') s++;
    }
    return exclude ? LOOM_SUB_ALL & ~mask : mask;
}

/* "/tmp/loom.%h.%p.log" -> "/tmp/loom.myhost.1234.log" */
static void open_file(const char *pat)
{
    char path[512];
    size_t o = 0;
    for (const char *p = pat; *p && o + 64 < sizeof path; p++) {
        if (p[0] == '%' && p[1] == 'h') { o += (size_t)snprintf(path + o, sizeof path - o, "%s", host); p++; }
        else if (p[0] == '%' && p[1] == 'p') { o += (size_t)snprintf(path + o, sizeof path - o, "%d", (int)getpid()); p++; }
        else path[o++] = *p;
    }
    path[o] = '\0';
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd >= 0) out_fd = fd;
    else fprintf(stderr, "loom: WARN cannot open LOOM_DEBUG_FILE %s; logging to stderr\n", path);
}

static void init(void)
{
    gethostname(host, sizeof host - 1);
    char *dot = strchr(host, '.');
    if (dot) *dot = '\0';
    const char *l = loom_env_str("LOOM_DEBUG");
    if (strcasecmp(l, "WARN") == 0) level = LOOM_LOG_WARN;
    else if (strcasecmp(l, "INFO") == 0 || strcasecmp(l, "VERSION") == 0) level = LOOM_LOG_INFO;
    else if (strcasecmp(l, "TRACE") == 0) level = LOOM_LOG_TRACE;
    subsys = parse_subsys(loom_env_str("LOOM_DEBUG_SUBSYS"));
    const char *f = loom_env_str("LOOM_DEBUG_FILE");
    if (f[0]) open_file(f);
}

void loom_log_set_rank(int rank) { my_rank = rank; }

int loom_log_enabled(enum loom_log_level lvl, enum loom_log_subsys sub)
{
    pthread_once(&once, init);
    return (int)lvl <= level && (subsys & (unsigned)sub);
}

void loom_log(enum loom_log_level lvl, enum loom_log_subsys sub, const char *file, int line,
              const char *fmt, ...)
{
    pthread_once(&once, init);
    if (lvl != LOOM_LOG_WARN && !loom_log_enabled(lvl, sub)) return;
    static const char *names[] = { "", "WARN", "INFO", "TRACE" };
    const char *sname = "?";
    for (size_t i = 0; i < sizeof subsystems / sizeof subsystems[0]; i++)
        if (subsystems[i].bit == (unsigned)sub) sname = subsystems[i].name;
    const char *base = strrchr(file, '/');
    char buf[1024], rank[16];
    if (my_rank >= 0) snprintf(rank, sizeof rank, "%d", my_rank);
    else snprintf(rank, sizeof rank, "-");
    int n = snprintf(buf, sizeof buf, "%s:%d:%s [%ld] %s %s %s:%d ", host, (int)getpid(), rank,
                     (long)syscall(SYS_gettid), names[lvl], sname, base ? base + 1 : file, line);
    va_list ap;
    va_start(ap, fmt);
    if (n > 0 && n < (int)sizeof buf) n += vsnprintf(buf + n, sizeof buf - (size_t)n, fmt, ap);
    va_end(ap);
    if (n >= (int)sizeof buf - 1) n = (int)sizeof buf - 2;
    buf[n++] = '\n';
    ssize_t w = write(out_fd, buf, (size_t)n);
    (void)w;
}
