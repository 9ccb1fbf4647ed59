/* env.c: the one table of every LOOM_* setting, and the functions that read them.
 * A setting not in this table cannot be read (asking for one aborts: it is a bug),
 * so tools/loom-env and the README always list everything loom looks at. */
#include "env.h"

#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

static const struct loom_env_var table[] = {
    { "LOOM_DEBUG", LOOM_ENV_STR, "", "log level: WARN, INFO or TRACE (WARN lines about failures always print)" },
    { "LOOM_DEBUG_SUBSYS", LOOM_ENV_STR, "ALL", "subsystems logged: INIT,BOOT,NET,SHM,COLL,PROXY,ENV or ALL; ^ excludes" },
    { "LOOM_DEBUG_FILE", LOOM_ENV_STR, "", "log to this file instead of stderr; %h = host name, %p = pid" },
    { "LOOM_TIMEOUT_MS", LOOM_ENV_INT, "600000", "deadline of every wait (collective, rendezvous, connect), in ms" },
    { "LOOM_HEARTBEAT_MS", LOOM_ENV_INT, "1000", "interval of control-connection heartbeats, in ms" },
    { "LOOM_TRANSPORT", LOOM_ENV_STR, "", "empty = shm between same-host peers, tcp across hosts; shm or tcp forces one" },
    { "LOOM_SOCKET_IFNAME", LOOM_ENV_STR, "", "interfaces to use (NCCL syntax): eth,ib prefixes; ^lo excludes; =eth0 exact" },
    { "LOOM_SOCKET_FAMILY", LOOM_ENV_STR, "", "AF_INET or AF_INET6 to use only that address family" },
    { "LOOM_NSLOTS", LOOM_ENV_INT, "8", "FIFO slots per directed link (rounded up to a power of two, 2..64)" },
    { "LOOM_SLOT_BYTES", LOOM_ENV_SIZE, "128K", "bytes per FIFO slot (multiple of 64); rank 0's value is used" },
    { "LOOM_SPIN_US", LOOM_ENV_INT, "-1", "spin this long before sleeping on a futex; -1 = auto (0 when ranks > cores)" },
    { "LOOM_RANK", LOOM_ENV_INT, "-1", "this process's rank (loom_comm_init_env; set by loomrun)" },
    { "LOOM_WORLD_SIZE", LOOM_ENV_INT, "-1", "number of ranks (loom_comm_init_env; set by loomrun)" },
    { "LOOM_LOCAL_RANK", LOOM_ENV_INT, "-1", "rank among this host's ranks (informational; set by loomrun)" },
    { "LOOM_COMM_ID", LOOM_ENV_STR, "", "rendezvous id from loom_id_to_string (set by loomrun)" },
    { "LOOM_ROOT_ADDR", LOOM_ENV_STR, "", "host:port where rank 0 hosts the rendezvous, when LOOM_COMM_ID is unset" },
    { "LOOM_SECRET", LOOM_ENV_STR, "", "32 hex digits: rendezvous secret with LOOM_ROOT_ADDR/MASTER_ADDR (else derived, weaker)" },
    { "LOOM_ID_FILE", LOOM_ENV_STR, "", "file for rank 0 to hand the id to local ranks (default /dev/shm/loom-id-<job>)" },
};
#define NVARS ((int)(sizeof table / sizeof table[0]))

static const struct loom_env_var *find(const char *name)
{
    for (int i = 0; i < NVARS; i++)
        if (strcmp(table[i].name, name) == 0) return &table[i];
    fprintf(stderr, "loom: internal error: setting %s is not in the env table\n", name);
    abort();
}

const char *loom_env_str(const char *name)
{
    const struct loom_env_var *v = find(name);
    const char *s = getenv(name);
    return s && *s ? s : v->dflt;
}

static bool parse(const char *s, enum loom_env_type type, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (end == s || errno) return false;
    if (type == LOOM_ENV_SIZE && *end) {
        int shift = 0;
        switch (toupper((unsigned char)*end)) {
        case 'K': shift = 10; break;
        case 'M': shift = 20; break;
        case 'G': shift = 30; break;
        default: return false;
        }
        end++;
        if (toupper((unsigned char)*end) == 'B' || toupper((unsigned char)*end) == 'I') end++;
        v <<= shift;
    }
    if (*end) return false;
    *out = v;
    return true;
}

int64_t loom_env_int(const char *name)
{
    const struct loom_env_var *v = find(name);
    int64_t val = 0, dflt = 0;
    parse(v->dflt, v->type, &dflt);
    const char *s = getenv(name);
    if (s == NULL || *s == '\0') return dflt;
    if (parse(s, v->type, &val)) return val;
    /* Straight to stderr: logging itself reads settings. */
    fprintf(stderr, "loom: WARN %s='%s' is not a%s; using %s\n", name, s,
            v->type == LOOM_ENV_SIZE ? " size (e.g. 128K)" : "n integer", v->dflt);
    return dflt;
}

const struct loom_env_var *loom_env_table(int *n)
{
    *n = NVARS;
    return table;
}

void loom_env_print(FILE *f)
{
    static const char *types[] = { "int", "size", "string" };
    fprintf(f, "%-20s %-7s %-8s %-12s %s\n", "variable", "type", "default", "value", "meaning");
    for (int i = 0; i < NVARS; i++) {
        const char *cur = getenv(table[i].name);
        fprintf(f, "%-20s %-7s %-8s %-12s %s\n", table[i].name, types[table[i].type],
                table[i].dflt[0] ? table[i].dflt : "-", cur && *cur ? cur : "-", table[i].help);
    }
}
