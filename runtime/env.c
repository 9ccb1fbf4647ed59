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

#include <errno.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- the table ---- */

static const struct loom_env_var table[] = {
    /* logging (runtime/log.c) */
    { "LOOM_DEBUG", LOOM_ENV_STR, "",
      "log level: WARN, INFO (VERSION is taken as INFO) or TRACE; failures print WARN lines even when unset" },
    { "LOOM_DEBUG_SUBSYS", LOOM_ENV_STR, "ALL",
      "subsystems to log: comma list of INIT,BOOT,NET,SHM,COLL,PROXY,ENV or ALL; a leading ^ excludes them" },
    { "LOOM_DEBUG_FILE", LOOM_ENV_STR, "",
      "write log lines to this file instead of stderr; %h is replaced by the host name, %p by the pid" },

    /* deadlines */
    { "LOOM_TIMEOUT_MS", LOOM_ENV_INT, "600000",
      "deadline of every wait (collective, bootstrap, connect), in milliseconds" },
    { "LOOM_HEARTBEAT_MS", LOOM_ENV_INT, "1000",
      "interval between heartbeats on the control connections, in milliseconds" },

    /* transports */
    { "LOOM_TRANSPORT", LOOM_ENV_STR, "",
      "empty = auto (shm between peers on one host, tcp across hosts); shm or tcp forces that one (rank 0's setting holds)" },
    { "LOOM_SOCKET_IFNAME", LOOM_ENV_STR, "",
      "interfaces for sockets, NCCL syntax: eth,ib = name prefixes, ^ excludes, = exact names; "
      "empty skips lo unless it is all there is" },
    { "LOOM_SOCKET_FAMILY", LOOM_ENV_STR, "",
      "AF_INET or AF_INET6: use only addresses of that family (empty = either)" },
    { "LOOM_NSLOTS", LOOM_ENV_INT, "8",
      "FIFO slots per directed link, rounded up to a power of two from 2 to 64 (more = more bytes in flight)" },
    { "LOOM_SLOT_BYTES", LOOM_ENV_SIZE, "128K",
      "bytes per FIFO slot, a multiple of 64 from 64 to 64M; K, M, G suffixes (powers of 1024)" },
    { "LOOM_ALGO", LOOM_ENV_STR, "",
      "all-reduce, reduce-scatter and all-gather algorithm: ring, direct (everyone to everyone, small messages) or empty = by size" },
    { "LOOM_CMA", LOOM_ENV_INT, "1",
      "2-rank all-gather on one host, from 32K per rank: hand the peer the block's address instead of its bytes "
      "(it copies them with process_vm_readv, one copy instead of two) where the kernel allows it. 1: in the calls "
      "where that measured cheaper (both ranks take the way their recent calls of that size took less time on, one "
      "call in 32 trying the other); 2: always; 0: never (a receiver's 0 holds for its links). Set it alike on both "
      "ranks: the first to choose decides a call" },
    { "LOOM_SPIN_US", LOOM_ENV_INT, "-1",
      "microseconds a waiter on a shared-memory link spins before it sleeps on a futex (tcp waits never spin); -1 = 50, yielding the core at every turn when local ranks outnumber cores" },

    /* device buffers (runtime/cuda.c, algos/exec_cuda.cu) */
    { "LOOM_CUDA_CHANNELS", LOOM_ENV_INT, "16",
      "thread blocks per collective on device buffers, each with its own FIFO per link (1 to 32)" },
    { "LOOM_CUDA_NSLOTS", LOOM_ENV_INT, "8",
      "device FIFO slots per link and channel, rounded up to a power of two from 2 to 64" },
    { "LOOM_CUDA_SLOT_BYTES", LOOM_ENV_SIZE, "512K",
      "bytes per device FIFO slot, a multiple of 64 from 4K to 64M; K, M, G suffixes" },
    { "LOOM_PROTO", LOOM_ENV_STR, "",
      "device buffers: simple (bulk slots), ll (low-latency lines: flag beside the data) or empty = by size "
      "(ll for steps up to 64K); rank 0's setting holds for the communicator" },
    { "LOOM_CUDA_FIFO", LOOM_ENV_STR, "",
      "device buffers on one host: empty = the receiver's GPU memory where the sender's GPU can reach it, "
      "else pinned host memory; host forces pinned host memory (the sender's setting holds for its links)" },

    /* launch (loom_comm_init_env; tools/loomrun sets the first four) */
    { "LOOM_RANK", LOOM_ENV_INT, "-1",
      "rank of this process, for loom_comm_init_env (-1 = look at RANK, Slurm, Open MPI)" },
    { "LOOM_WORLD_SIZE", LOOM_ENV_INT, "-1",
      "number of ranks, for loom_comm_init_env (-1 = look at WORLD_SIZE, Slurm, Open MPI)" },
    { "LOOM_LOCAL_RANK", LOOM_ENV_INT, "-1",
      "rank of this process among the ranks on its host" },
    { "LOOM_COMM_ID", LOOM_ENV_STR, "",
      "id string from loom_id_to_string: the rendezvous loom_comm_init_env joins (loomrun sets it)" },
    { "LOOM_ROOT_ADDR", LOOM_ENV_STR, "",
      "host:port of the rendezvous root (rank 0 listens there); used when LOOM_COMM_ID is unset" },
    { "LOOM_SECRET", LOOM_ENV_STR, "",
      "32 hex digits: rendezvous secret with LOOM_ROOT_ADDR/MASTER_ADDR (unset: derived from LOOM_SECRET_FILE)" },
    { "LOOM_SECRET_FILE", LOOM_ENV_STR, "",
      "per-user secret file used without LOOM_SECRET (empty = ~/.loom/secret, made on first use, mode 0600; "
      "ranks on other hosts need the same file)" },
    { "LOOM_ID_FILE", LOOM_ENV_STR, "",
      "file through which rank 0 hands the id to the ranks of its host when no address is given (empty = an "
      "abstract unix socket named by your uid and the launcher's job id)" },
};
#define NVARS ((int)(sizeof table / sizeof table[0]))

/* One warning per unparsable variable, however often it is read. */
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

/* Straight to stderr in one write(2): logging itself reads settings through here. */
static void warn_unparsable(int i, const char *value)
{
    if (atomic_exchange(&warned[i], true)) return;
    char line[512];
    int n = snprintf(line, sizeof line, "loom: WARN ENV %s='%s' is not %s; using the default %s\n",
                     table[i].name, value,
                     table[i].type == LOOM_ENV_SIZE ? "a size (e.g. 128K, 4M)" : "a decimal integer",
                     table[i].dflt);
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
    if (s == NULL) return dflt;
    if (parse_number(s, v->type, &val)) return val;
    warn_unparsable(i, s);
    return dflt;
}

const char *loom_env_str(const char *name)
{
    const struct loom_env_var *v = &table[find(name)];
    const char *s = raw(name);
    return s ? s : v->dflt;
}

const struct loom_env_var *loom_env_table(int *n)
{
    if (n) *n = NVARS;
    return table;
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
        int64_t ignored;
        bool bad = cur && v->type != LOOM_ENV_STR && !parse_number(cur, v->type, &ignored);
        char val[256];
        snprintf(val, sizeof val, "%s%s", cur ? cur : "-", bad ? " (invalid)" : "");
        fprintf(f, "%-*s  %-*s  %-*s  %-*s  %s\n", wname, v->name, wtype, type_names[v->type], wdflt,
                v->dflt[0] ? v->dflt : "-", wval, val, v->help);
    }
}
