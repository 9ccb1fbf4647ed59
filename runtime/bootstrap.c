/* bootstrap.c: root-based TCP rendezvous (the root's thread, and a rank's join).
 *
 * HELLO, rank -> root (fixed layout):
 *  offset size field
 *  0      4    magic    "LMHL"
 *  4      4    version  1
 *  8      16   secret   must equal the id's, or the connection is refused and logged
 *  24     4    nranks
 *  28     4    rank
 *  32     ...  struct loom_peer_info of the rank
 * REPLY, root -> rank: magic, status (loom_result_t), msg[200], then on success
 * nranks x struct loom_peer_info ordered by rank.
 *
 * The root reads each HELLO with a short deadline, so a stray client cannot stall the
 * rendezvous for long; it never learns anything from a client without the secret.
 * Not here: the control mesh between ranks (progress.c).
 */
#include "bootstrap.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "log.h"

#define HELLO_MAGIC 0x4c484d4cu /* "LMHL" */

struct hello {
    uint32_t magic, version;
    uint8_t secret[16];
    int32_t nranks, rank;
    struct loom_peer_info info;
};

struct reply {
    uint32_t magic;
    int32_t status;
    char msg[200];
};

/* ---- id ---- */

void boot_id_pack(loom_id_t *id, const struct boot_id *b)
{
    memset(id, 0, sizeof *id);
    memcpy(id->internal, b, sizeof *b);
}

loom_result_t boot_id_unpack(const loom_id_t *id, struct boot_id *b)
{
    memcpy(b, id->internal, sizeof *b);
    if (b->magic != BOOT_ID_MAGIC || b->version != 1 || (b->root.family != 4 && b->root.family != 6))
        return LOOM_ERR_INVALID_ARGUMENT;
    return LOOM_SUCCESS;
}

loom_result_t boot_random(uint8_t *buf, size_t len)
{
    size_t got = 0;
    for (int i = 0; i < 100 && got < len; i++) {
        ssize_t n = getrandom(buf + got, len - got, 0);
        if (n > 0) got += (size_t)n;
        else if (errno != EINTR) break;
    }
    return got == len ? LOOM_SUCCESS : LOOM_ERR_SYSTEM;
}

bool boot_secret_equal(const uint8_t *a, const uint8_t *b)
{
    uint8_t d = 0;
    for (int i = 0; i < 16; i++) d |= (uint8_t)(a[i] ^ b[i]);
    return d == 0;
}

/* ---- identity of this process ---- */

static uint64_t fnv1a(uint64_t h, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 0x100000001b3ull;
    return h;
}

void boot_self_info(struct loom_peer_info *me)
{
    memset(me, 0, sizeof *me);
    gethostname(me->host, sizeof me->host - 1);
    uint64_t h = fnv1a(0xcbf29ce484222325ull, me->host, strlen(me->host));
    /* Same host = same hostname, same boot, same network namespace: ranks in
       different namespaces (containers, the netns tests) talk over tcp. */
    char buf[128] = "";
    int fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        ssize_t n = read(fd, buf, sizeof buf - 1);
        if (n > 0) h = fnv1a(h, buf, (size_t)n);
        close(fd);
    }
    ssize_t n = readlink("/proc/self/ns/net", buf, sizeof buf - 1);
    if (n > 0) h = fnv1a(h, buf, (size_t)n);
    me->host_id = h;
    me->pid = (int32_t)getpid();
}

/* ---- root ---- */

struct root {
    int fd;
    struct boot_id id;
    int64_t timeout_ms;
};

static void root_reply_error(int fd, loom_result_t status, const char *msg)
{
    struct reply r = { .magic = HELLO_MAGIC, .status = status };
    snprintf(r.msg, sizeof r.msg, "%s", msg);
    (void)net_send_all(fd, &r, sizeof r, net_deadline(1000));
}

static void root_serve(struct root *rt)
{
    uint64_t deadline = net_deadline(rt->timeout_ms);
    int nranks = 0, joined = 0;
    int *fds = NULL;
    struct loom_peer_info *table = NULL;

    for (int guard = 0; guard < 100000 && (nranks == 0 || joined < nranks); guard++) {
        struct pollfd p = { .fd = rt->fd, .events = POLLIN };
        int ms = net_ms_left(deadline);
        if (ms == 0 || poll(&p, 1, ms) <= 0) break;
        char from_s[80];
        int fd = net_accept(rt->fd, from_s, sizeof from_s);
        if (fd < 0) continue;

        struct hello h;
        uint64_t hd = net_deadline(2000);
        if (hd > deadline) hd = deadline;
        if (net_recv_all(fd, &h, sizeof h, hd) != LOOM_SUCCESS || h.magic != HELLO_MAGIC ||
            !boot_secret_equal(h.secret, rt->id.secret)) {
            LOOM_WARN(LOOM_SUB_BOOT, "bootstrap root refused a connection from %s: "
                      "it did not present this job's secret", from_s);
            close(fd);
            continue;
        }
        char msg[200] = "";
        if (h.nranks < 1 || h.nranks > 1024 || (nranks && h.nranks != nranks))
            snprintf(msg, sizeof msg, "rank %d says the job has %d ranks, root expects %d",
                     h.rank, h.nranks, nranks);
        else if (h.rank < 0 || h.rank >= h.nranks)
            snprintf(msg, sizeof msg, "rank %d out of range [0, %d)", h.rank, h.nranks);
        if (msg[0] == '\0' && nranks == 0) {
            nranks = h.nranks;
            fds = malloc(sizeof *fds * (size_t)nranks);
            table = calloc((size_t)nranks, sizeof *table);
            if (!fds || !table) { close(fd); break; }
            for (int i = 0; i < nranks; i++) fds[i] = -1;
        }
        if (msg[0] == '\0' && fds[h.rank] >= 0)
            snprintf(msg, sizeof msg, "rank %d joined twice (second from %s)", h.rank, from_s);
        if (msg[0]) {
            LOOM_WARN(LOOM_SUB_BOOT, "bootstrap root refused %s: %s", from_s, msg);
            root_reply_error(fd, LOOM_ERR_INVALID_ARGUMENT, msg);
            close(fd);
            continue;
        }
        fds[h.rank] = fd;
        table[h.rank] = h.info;
        table[h.rank].rank = h.rank;
        joined++;
        LOOM_TRACE(LOOM_SUB_BOOT, "root: rank %d of %d joined from %s", h.rank, nranks, from_s);
    }

    if (nranks > 0 && joined == nranks) {
        struct reply ok = { .magic = HELLO_MAGIC, .status = LOOM_SUCCESS };
        for (int i = 0; i < nranks; i++) {
            uint64_t d = net_deadline(rt->timeout_ms);
            if (net_send_all(fds[i], &ok, sizeof ok, d) != LOOM_SUCCESS ||
                net_send_all(fds[i], table, sizeof *table * (size_t)nranks, d) != LOOM_SUCCESS)
                LOOM_WARN(LOOM_SUB_BOOT, "root: could not send the peer table to rank %d", i);
        }
        LOOM_INFO(LOOM_SUB_BOOT, "root: all %d ranks joined", nranks);
    } else if (nranks > 0) {
        char msg[200];
        int len = snprintf(msg, sizeof msg, "bootstrap timed out: %d of %d ranks joined; missing:",
                           joined, nranks);
        for (int i = 0; i < nranks && len < (int)sizeof msg - 8; i++)
            if (fds[i] < 0) len += snprintf(msg + len, sizeof msg - (size_t)len, " %d", i);
        LOOM_WARN(LOOM_SUB_BOOT, "%s", msg);
        for (int i = 0; i < nranks; i++)
            if (fds[i] >= 0) root_reply_error(fds[i], LOOM_ERR_TIMEOUT, msg);
    }
    for (int i = 0; fds && i < nranks; i++)
        if (fds[i] >= 0) close(fds[i]);
    free(fds);
    free(table);
}

static void *root_main(void *arg)
{
    struct root *rt = arg;
    root_serve(rt);
    close(rt->fd);
    free(rt);
    return NULL;
}

loom_result_t boot_root_start(struct boot_id *b, int64_t timeout_ms, char *err, size_t errlen)
{
    struct root *rt = calloc(1, sizeof *rt);
    if (rt == NULL) {
        snprintf(err, errlen, "out of memory");
        return LOOM_ERR_SYSTEM;
    }
    loom_result_t r = net_listen(&b->root, &rt->fd, err, errlen);
    if (r != LOOM_SUCCESS) goto out_free;
    rt->id = *b;
    rt->timeout_ms = timeout_ms;
    pthread_t t;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    int rc = pthread_create(&t, &attr, root_main, rt);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        snprintf(err, errlen, "cannot start the bootstrap root thread: %s", strerror(rc));
        r = LOOM_ERR_SYSTEM;
        goto out_close;
    }
    return LOOM_SUCCESS;
out_close:
    close(rt->fd);
out_free:
    free(rt);
    return r;
}

/* ---- join ---- */

loom_result_t boot_join(const struct boot_id *b, int nranks, int rank,
                        const struct loom_peer_info *me, struct loom_peer_info *table,
                        uint64_t deadline_ns, char *err, size_t errlen)
{
    int fd;
    loom_result_t r = net_connect(&b->root, deadline_ns, true, &fd, err, errlen);
    if (r != LOOM_SUCCESS) return r;
    struct hello h = { .magic = HELLO_MAGIC, .version = 1, .nranks = nranks, .rank = rank,
                       .info = *me };
    memcpy(h.secret, b->secret, 16);
    struct reply rep;
    char root_s[80];
    net_addr_str(&b->root, root_s, sizeof root_s);
    r = net_send_all(fd, &h, sizeof h, deadline_ns);
    if (r == LOOM_SUCCESS) r = net_recv_all(fd, &rep, sizeof rep, deadline_ns);
    if (r != LOOM_SUCCESS) {
        snprintf(err, errlen, "bootstrap with root %s failed: %s", root_s,
                 r == LOOM_ERR_TIMEOUT ? "timed out waiting for the other ranks"
                                       : "the root closed the connection (it does this to a wrong secret)");
        goto out_close;
    }
    if (rep.magic != HELLO_MAGIC || rep.status != LOOM_SUCCESS) {
        rep.msg[sizeof rep.msg - 1] = '\0';
        snprintf(err, errlen, "bootstrap root %s refused rank %d: %s", root_s, rank, rep.msg);
        r = rep.status == LOOM_ERR_TIMEOUT ? LOOM_ERR_TIMEOUT : LOOM_ERR_INVALID_ARGUMENT;
        goto out_close;
    }
    r = net_recv_all(fd, table, sizeof *table * (size_t)nranks, deadline_ns);
    if (r != LOOM_SUCCESS) snprintf(err, errlen, "bootstrap root %s: peer table cut short", root_s);
out_close:
    close(fd);
    return r;
}
