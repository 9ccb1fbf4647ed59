/* env.c: the one table of every LOOM_* setting, and the functions that read them.
 *
 * A setting that is not in this table cannot be read: asking for one aborts, because
 * it is a bug. So tools/loom-env and the README always list everything loom looks at.
 *
 * This file is not a configuration system: values are read from the environment each
 * time they are asked for (callers read them once, at init), nothing is cached, and
 * there are no config files. It must not log through log.c: the logger reads its own
 * settings through loom_env_str, so a warning here goes straight to stderr instead
 * (no recursion into the logger's pthread_once, hence no deadlock).
 */
#include "env.h"
#include "log.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- checks of string settings (syntax only: what they name is checked by its user) ---- */

static bool ifname_ok(const char *v)
{
    if (*v == '^') v++;
    if (*v == '=') v++;
    if (*v == '\0') return false;
    for (const char *item = v; *item;) {
        size_t n = strcspn(item, ",");
        if (n == 0 || n > 15) return false;                     /* IFNAMSIZ - 1 */
        for (size_t i = 0; i < n; i++)
            if (!isalnum((unsigned char)item[i]) && !strchr("._-@:", item[i])) return false;
        item += n;
        if (*item == ',' && *++item == '\0') return false;
    }
    return true;
}

static bool hex32_ok(const char *v)
{
    if (strlen(v) != 32) return false;
    for (int i = 0; i < 32; i++)
        if (!isxdigit((unsigned char)v[i])) return false;
    return true;
}

/* "host:port", "[v6]:port": a port 1-65535 after the last colon, a host before it. */
static bool hostport_ok(const char *v)
{
    const char *colon = strrchr(v, ':');
    if (colon == NULL || colon == v || (v[0] == '[' && colon[-1] != ']')) return false;
    char *end;
    long port = strtol(colon + 1, &end, 10);
    return colon[1] && *end == '\0' && port >= 1 && port <= 65535;
}

static bool id_ok(const char *v)
{
    if (strncmp(v, "loom1:", 6) != 0) return false;
    const char *colon = strrchr(v, ':');
    if (colon == NULL || colon < v + 7 || !hex32_ok(colon + 1)) return false;
    char addr[300];
    size_t n = (size_t)(colon - v - 6);
    if (n >= sizeof addr) return false;
    memcpy(addr, v + 6, n);
    addr[n] = '\0';
    return hostport_ok(addr);
}

static bool path_ok(const char *v) { return strlen(v) < 4096; }

/* ---- the table ---- */

#define DAY_MS 86400000
#define MiB (1 << 20)

static const struct loom_env_var table[] = {
    /* logging (runtime/log.c) */
    { .name = "LOOM_DEBUG", .type = LOOM_ENV_STR, .dflt = "", .check = loom_log_level_ok,
      .allowed = "WARN, INFO, VERSION or TRACE (any case), or empty",
      .help = "log level: WARN, INFO (VERSION is taken as INFO) or TRACE; failures print WARN lines even when unset" },
    { .name = "LOOM_DEBUG_SUBSYS", .type = LOOM_ENV_STR, .dflt = "ALL", .check = loom_log_subsys_ok,
      .allowed = "a comma list of INIT,BOOT,NET,SHM,COLL,PROXY,ENV or ALL, optionally after ^",
      .help = "subsystems to log: comma list of INIT,BOOT,NET,SHM,COLL,PROXY,ENV or ALL; a leading ^ excludes them" },
    { .name = "LOOM_DEBUG_FILE", .type = LOOM_ENV_STR, .dflt = "", .check = path_ok, .allowed = "a path",
      .help = "write log lines to this file instead of stderr; %h is replaced by the host name, %p by the pid" },

    /* deadlines */
    { .name = "LOOM_TIMEOUT_MS", .type = LOOM_ENV_INT, .dflt = "600000", .min = 1, .max = 7 * (int64_t)DAY_MS,
      .help = "how long any wait may see no progress before the call fails (a collective: its link silent that "
              "long; the rendezvous and connects as a whole), in milliseconds, 1 to 7 days" },
    { .name = "LOOM_HEARTBEAT_MS", .type = LOOM_ENV_INT, .dflt = "1000", .min = 10, .max = 3600000,
      .help = "interval between heartbeats on the control connections, in milliseconds (10 to 3600000; at "
              "least four fit in LOOM_TIMEOUT_MS)" },

    /* transports */
    { .name = "LOOM_TRANSPORT", .type = LOOM_ENV_STR, .dflt = "", .choices = "|shm|tcp",
      .help = "empty = auto (shm between peers on one host, tcp across hosts); shm or tcp forces that one (rank 0's setting holds)" },
    { .name = "LOOM_SOCKET_IFNAME", .type = LOOM_ENV_STR, .dflt = "", .check = ifname_ok,
      .allowed = "interface names or prefixes separated by commas, after an optional ^ (exclude) and = (exact)",
      .help = "interfaces for sockets, NCCL syntax: eth,ib = name prefixes, ^ excludes, = exact names; "
              "loopback only when named or when it is all there is" },
    { .name = "LOOM_SOCKET_FAMILY", .type = LOOM_ENV_STR, .dflt = "", .choices = "|AF_INET|AF_INET6",
      .help = "AF_INET or AF_INET6: use only addresses of that family (empty = either)" },
    { .name = "LOOM_NSLOTS", .type = LOOM_ENV_INT, .dflt = "8", .min = 2, .max = 64, .rules = LOOM_ENV_POW2,
      .help = "FIFO slots per directed link, a power of two from 2 to 64 (more = more bytes in flight)" },
    { .name = "LOOM_SLOT_BYTES", .type = LOOM_ENV_SIZE, .dflt = "128K", .min = 64, .max = 64 * MiB,
      .rules = LOOM_ENV_MULT64,
      .help = "bytes per FIFO slot, a multiple of 64 from 64 to 64M; K, M, G suffixes (powers of 1024)" },
    { .name = "LOOM_ALGO", .type = LOOM_ENV_STR, .dflt = "", .choices = "|ring|direct",
      .help = "all-reduce, reduce-scatter and all-gather algorithm: ring, direct (everyone to everyone, small messages) or empty = by size" },
    { .name = "LOOM_CMA", .type = LOOM_ENV_INT, .dflt = "1", .min = 0, .max = 2,
      .help = "2-rank all-gather on one host, from 32K per rank: hand the peer the block's address instead of its bytes "
              "(it copies them with process_vm_readv, one copy instead of two) where the kernel allows it. 1: in the calls "
              "where that measured cheaper (both ranks take the way their recent calls of that size took less time on, one "
              "call in 32 trying the other); 2: always; 0: never (a receiver's 0 holds for its links). Set it alike on both "
              "ranks: the first to choose decides a call" },
    { .name = "LOOM_SPIN_US", .type = LOOM_ENV_INT, .dflt = "-1", .min = -1, .max = 1000000,
      .help = "microseconds a waiter on a shared-memory link spins before it sleeps on a futex (tcp waits never spin), "
              "0 to 1000000; -1 = 50, yielding the core at every turn when local ranks outnumber cores" },

    /* device buffers (runtime/cuda.c, algos/exec_cuda.cu) */
    { .name = "LOOM_CUDA_CHANNELS", .type = LOOM_ENV_INT, .dflt = "16", .min = 1, .max = 32,
      .help = "thread blocks per collective on device buffers, each with its own FIFO per link (1 to 32)" },
    { .name = "LOOM_CUDA_NSLOTS", .type = LOOM_ENV_INT, .dflt = "8", .min = 2, .max = 64, .rules = LOOM_ENV_POW2,
      .help = "device FIFO slots per link and channel, a power of two from 2 to 64" },
    { .name = "LOOM_CUDA_SLOT_BYTES", .type = LOOM_ENV_SIZE, .dflt = "512K", .min = 4096, .max = 64 * MiB,
      .rules = LOOM_ENV_MULT64,
      .help = "bytes per device FIFO slot, a multiple of 64 from 4K to 64M; K, M, G suffixes" },
    { .name = "LOOM_PROTO", .type = LOOM_ENV_STR, .dflt = "", .choices = "|simple|ll",
      .help = "device buffers: simple (bulk slots), ll (low-latency lines: flag beside the data) or empty = by size "
              "(ll for steps up to 64K); rank 0's setting holds for the communicator" },
    { .name = "LOOM_CUDA_FIFO", .type = LOOM_ENV_STR, .dflt = "", .choices = "|host",
      .help = "device buffers on one host: empty = the receiver's GPU memory where the sender's GPU can reach it, "
              "else pinned host memory; host forces pinned host memory (the sender's setting holds for its links)" },

    /* launch (loom_comm_init_env, runtime/launch.c; tools/loomrun sets the first four) */
    { .name = "LOOM_RANK", .type = LOOM_ENV_INT, .dflt = "-1", .min = -1, .max = 1023,
      .help = "rank of this process, for loom_comm_init_env (-1 = look at RANK, Slurm, Open MPI)" },
    { .name = "LOOM_WORLD_SIZE", .type = LOOM_ENV_INT, .dflt = "-1", .min = -1, .max = 1024,
      .help = "number of ranks, for loom_comm_init_env (-1 = look at WORLD_SIZE, Slurm, Open MPI)" },
    { .name = "LOOM_LOCAL_RANK", .type = LOOM_ENV_INT, .dflt = "-1", .min = -1, .max = 1023,
      .help = "rank of this process among the ranks on its host" },
    { .name = "LOOM_COMM_ID", .type = LOOM_ENV_STR, .dflt = "", .check = id_ok, .secret = true,
      .allowed = "an id string, loom1:<host>:<port>:<32 hex digits>",
      .help = "id string from loom_id_to_string: the rendezvous loom_comm_init_env joins (loomrun sets it)" },
    { .name = "LOOM_ROOT_ADDR", .type = LOOM_ENV_STR, .dflt = "", .check = hostport_ok,
      .allowed = "host:port or [ipv6]:port, port 1 to 65535",
      .help = "host:port of the rendezvous root (rank 0 listens there); used when LOOM_COMM_ID is unset" },
    { .name = "LOOM_SECRET", .type = LOOM_ENV_STR, .dflt = "", .check = hex32_ok, .allowed = "32 hex digits",
      .secret = true,
      .help = "32 hex digits: rendezvous secret with LOOM_ROOT_ADDR/MASTER_ADDR (unset: derived from LOOM_SECRET_FILE)" },
    { .name = "LOOM_SECRET_FILE", .type = LOOM_ENV_STR, .dflt = "", .check = path_ok, .allowed = "a path",
      .help = "per-user secret file used without LOOM_SECRET (empty = ~/.loom/secret, made on first use, mode 0600; "
              "ranks on other hosts need the same file)" },
    { .name = "LOOM_ID_FILE", .type = LOOM_ENV_STR, .dflt = "", .check = path_ok, .allowed = "a path",
      .help = "file through which rank 0 hands the id to the ranks of its host when no address is given (empty = an "
              "abstract unix socket named by your uid and the launcher's job id)" },
};
#define NVARS ((int)(sizeof table / sizeof table[0]))

/* One warning per invalid variable, however often it is read. */
static atomic_bool warned[NVARS];

static const char *type_names[] = { [LOOM_ENV_INT] = "int", [LOOM_ENV_SIZE] = "size",
                                    [LOOM_ENV_STR] = "string" };

/* ---- lookup ---- */

static int find(const char *name)
{
    for (int i = 0; i < NVARS; i++)
        if (strcmp(table[i].name, name) == 0) return i;
    fprintf(stderr, "loom: internal error: setting %s is not in the table of runtime/env.c\n",
            name ? name : "(null)");
    abort();
}

/* The raw value, or NULL when unset or empty (empty counts as unset). */
static const char *raw(const char *name)
{
    const char *s = getenv(name);
    return s && *s ? s : NULL;
}

/* ---- parsing ---- */

/* Decimal integer; for sizes a K/M/G suffix (powers of 1024, any case), optionally
   followed by B or iB ("128K", "128kb", "128KiB"). Sizes cannot be negative.
   Surrounding blanks are allowed. False on anything else, overflow included. */
static bool parse_number(const char *s, enum loom_env_type type, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (end == s || errno == ERANGE) return false;
    if (type == LOOM_ENV_SIZE) {
        int shift = 0;
        switch (*end) {
        case 'k': case 'K': shift = 10; break;
        case 'm': case 'M': shift = 20; break;
        case 'g': case 'G': shift = 30; break;
        default: break;
        }
        if (shift) {
            end++;
            if (*end == 'i' && (end[1] == 'B' || end[1] == 'b')) end += 2;
            else if (*end == 'B' || *end == 'b') end++;
        }
        if (v < 0 || v > (LLONG_MAX >> shift)) return false;
        v <<= shift;
    }
    while (*end == ' ' || *end == '\t') end++;
    if (*end) return false;
    *out = v;
    return true;
}

/* v as an error or a table may show it: quoted, or only its length when a secret. */
static const char *shown(int i, const char *v, char *buf, size_t len)
{
    if (table[i].secret) snprintf(buf, len, "(%zu characters, not shown)", strlen(v));
    else snprintf(buf, len, "'%.100s'", v);
    return buf;
}

/* Does value v fit variable i? If not, what is allowed goes into want. */
static bool valid(int i, const char *v, char *want, size_t len)
{
    const struct loom_env_var *e = &table[i];
    if (e->type == LOOM_ENV_STR) {
        if (e->check) {
            snprintf(want, len, "%s", e->allowed);
            return e->check(v);
        }
        if (!e->choices) return true;
        size_t n = strlen(v);
        for (const char *c = e->choices;;) {
            size_t k = strcspn(c, "|");
            if (k == n && strncmp(c, v, n) == 0) return true;
            if (c[k] == '\0') break;
            c += k + 1;
        }
        int w = snprintf(want, len, "one of");
        for (const char *c = e->choices; *c && w > 0 && (size_t)w < len;) {
            size_t k = strcspn(c, "|");
            if (k) w += snprintf(want + w, len - (size_t)w, " %.*s", (int)k, c);
            c += k + (c[k] == '|');
        }
        if (e->choices[0] == '|' && w > 0 && (size_t)w < len) snprintf(want + w, len - (size_t)w, ", or empty");
        return false;
    }
    int64_t x;
    bool pow2 = e->rules & LOOM_ENV_POW2, m64 = e->rules & LOOM_ENV_MULT64;
    snprintf(want, len, "%s%s from %lld to %lld", pow2 ? "a power of two" : m64 ? "a multiple of 64" : "an integer",
             e->type == LOOM_ENV_SIZE ? " (bytes; K, M, G suffixes)" : "", (long long)e->min, (long long)e->max);
    if (!parse_number(v, e->type, &x) || x < e->min || x > e->max) return false;
    if (pow2 && (x & (x - 1))) return false;
    if (m64 && x % 64) return false;
    return true;
}

/* Straight to stderr in one write(2): logging itself reads settings through here. */
static void warn_invalid(int i, const char *value)
{
    if (atomic_exchange(&warned[i], true)) return;
    char line[640], want[256];
    valid(i, value, want, sizeof want);
    char sv[128];
    int n = snprintf(line, sizeof line, "loom: WARN ENV %s=%s is invalid (want %s); using the default %s\n",
                     table[i].name, shown(i, value, sv, sizeof sv), want, table[i].dflt[0] ? table[i].dflt : "(empty)");
    if (n <= 0) return;
    if (n >= (int)sizeof line) {
        n = (int)sizeof line - 1;
        line[n - 1] = '\n';
    }
    ssize_t w = write(STDERR_FILENO, line, (size_t)n);
    (void)w;   /* nothing better to do when stderr is gone */
}

/* ---- reading settings ---- */

int64_t loom_env_int(const char *name)
{
    int i = find(name);
    const struct loom_env_var *v = &table[i];
    int64_t dflt, val;
    if (v->type == LOOM_ENV_STR || !parse_number(v->dflt, v->type, &dflt)) {
        fprintf(stderr, "loom: internal error: %s is a %s setting with default '%s'; "
                "loom_env_int cannot read it\n", name, type_names[v->type], v->dflt);
        abort();
    }
    const char *s = raw(name);
    char want[256];
    if (s == NULL) return dflt;
    if (valid(i, s, want, sizeof want) && parse_number(s, v->type, &val)) return val;
    warn_invalid(i, s);
    return dflt;
}

const char *loom_env_str(const char *name)
{
    int i = find(name);
    const char *s = raw(name);
    char want[256];
    if (s && !valid(i, s, want, sizeof want)) {
        warn_invalid(i, s);
        s = NULL;
    }
    return s ? s : table[i].dflt;
}

const struct loom_env_var *loom_env_table(int *n)
{
    if (n) *n = NVARS;
    return table;
}

/* ---- checking the environment ---- */

/* Edit distance, for "did you mean". */
static int distance(const char *a, const char *b)
{
    int la = (int)strlen(a), lb = (int)strlen(b), row[64];
    if (la > 62 || lb > 62) return 99;
    for (int j = 0; j <= lb; j++) row[j] = j;
    for (int i = 1; i <= la; i++) {
        int diag = row[0];
        row[0] = i;
        for (int j = 1; j <= lb; j++) {
            int up = row[j], best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best) best = up + 1;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            diag = up;
            row[j] = best;
        }
    }
    return row[lb];
}

extern char **environ;

bool loom_env_check(char *err, size_t errlen, char *warn, size_t warnlen)
{
    bool ok = true;
    size_t wl = 0;
    if (warnlen) warn[0] = '\0';
    for (int i = 0; i < NVARS && ok; i++) {
        const char *v = raw(table[i].name);
        char want[256];
        if (v && !valid(i, v, want, sizeof want)) {
            char sv[128];
            snprintf(err, errlen, "%s=%s is invalid: want %s", table[i].name, shown(i, v, sv, sizeof sv), want);
            ok = false;
        }
    }
    for (char **e = environ; e && *e; e++) {
        if (strncmp(*e, "LOOM_", 5) != 0) continue;
        char name[64];
        size_t n = strcspn(*e, "=");
        if (n >= sizeof name) n = sizeof name - 1;
        memcpy(name, *e, n);
        name[n] = '\0';
        int best = -1, bd = 99;
        bool known = false;
        for (int i = 0; i < NVARS && !known; i++) {
            known = strcmp(name, table[i].name) == 0;
            int d = distance(name, table[i].name);
            if (d < bd) bd = d, best = i;
        }
        if (known || wl + 120 >= warnlen) continue;
        wl += (size_t)snprintf(warn + wl, warnlen - wl, "%sunknown setting %s ignored", wl ? "; " : "", name);
        if (best >= 0 && bd <= 3) wl += (size_t)snprintf(warn + wl, warnlen - wl, " (did you mean %s?)", table[best].name);
    }
    return ok;
}

/* ---- the printed table ---- */

#define VALUE_COLUMN_MAX 24   /* longer values (an id string) overflow their column */

static int imax(int a, int b) { return a > b ? a : b; }

static int slen(const char *s) { return (int)strlen(s); }

void loom_env_print(FILE *f)
{
    int wname = slen("variable"), wtype = slen("type"), wdflt = slen("default"), wval = slen("value");
    for (int i = 0; i < NVARS; i++) {
        const char *cur = raw(table[i].name);
        wname = imax(wname, slen(table[i].name));
        wtype = imax(wtype, slen(type_names[table[i].type]));
        wdflt = imax(wdflt, table[i].dflt[0] ? slen(table[i].dflt) : 1);
        if (cur) wval = imax(wval, slen(cur) + (int)sizeof " (invalid)" - 1);
    }
    if (wval > VALUE_COLUMN_MAX) wval = VALUE_COLUMN_MAX;
    fprintf(f, "%-*s  %-*s  %-*s  %-*s  %s\n", wname, "variable", wtype, "type", wdflt, "default",
            wval, "value", "meaning");
    for (int i = 0; i < NVARS; i++) {
        const struct loom_env_var *v = &table[i];
        const char *cur = raw(v->name);
        char want[256];
        bool bad = cur && !valid(i, cur, want, sizeof want);
        char val[256];
        snprintf(val, sizeof val, "%s%s", !cur ? "-" : v->secret ? "(set)" : cur, bad ? " (invalid)" : "");
        fprintf(f, "%-*s  %-*s  %-*s  %-*s  %s\n", wname, v->name, wtype, type_names[v->type], wdflt,
                v->dflt[0] ? v->dflt : "-", wval, val, v->help);
    }
}
