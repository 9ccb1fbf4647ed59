/* bootstrap.c: root-based TCP rendezvous (the root's thread, and a rank's join).
 *
 * A rank connects to the root and passes the gate (runtime/gate.c): GATE_JOIN, src =
 * its rank, the job's size, and its struct loom_peer_info as the payload, all under
 * the mac of the id's secret. The root admits or refuses it at once (wrong size, rank
 * out of range, taken) and keeps the connection. Once every rank is in, it sends each:
 *
 * REPLY, root -> rank (fixed layout), then on success nranks x struct loom_peer_info:
 *  offset size field
 *  0      4    magic    "LMRP"
 *  4      4    status   loom_result_t
 *  8      200  msg      why the rendezvous failed
 *  208    16   session  fresh random bytes: every rank derives the comm's key from them
 *  224    4    phase    REPLY_TABLE (with the table), REPLY_GO (the barrier is passed)
 *  228    32   mac      HMAC(secret, "loom reply" | the rank's hello nonce | REPLY[0..228) | table)
 * READY, rank -> root once it listens where the table says: 4 bytes "LMRD". When every
 * rank is ready the root sends each a REPLY_GO, and exits.
 *
 * The root never waits on one connection: unauthenticated ones are the gate's, and a
 * rank that leaves (EOF) before the end fails the rendezvous for all, naming it.
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
#include <unistd.h>

#include "auth.h"
#include "comm.h"
#include "gate.h"
#include "log.h"

#define REPLY_MAGIC 0x50524d4cu /* "LMRP" */
#define READY_MAGIC 0x44524d4cu /* "LMRD" */
enum { REPLY_TABLE = 1, REPLY_GO = 2 };

struct reply {
    uint32_t magic;
    int32_t status;
    char msg[200];
    uint8_t session[16];
    uint32_t phase;
    uint8_t mac[SHA256_BYTES];
};
_Static_assert(sizeof(struct reply) == 260, "REPLY layout (the table above)");

static void reply_mac(const uint8_t *secret, const uint8_t *nonce, const struct reply *rep,
                      const struct loom_peer_info *table, size_t table_bytes, uint8_t mac[SHA256_BYTES])
{
    static const char label[] = "loom reply";
    const void *p[] = { label, nonce, rep, table };
    size_t l[] = { sizeof label - 1, 16, offsetof(struct reply, mac), table_bytes };
    hmac_sha256(secret, 16, table ? 4 : 3, p, l, mac);
}

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

/* ---- identity of this process ---- */

static uint64_t fnv1a(uint64_t h, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 0x100000001b3ull;
    return h;
}

void boot_self_info(struct loom_peer_info *me)
{
    char host[sizeof me->host] = "";
    memset(me, 0, sizeof *me);
    if (gethostname(host, sizeof host - 1) == 0) memcpy(me->host, host, sizeof host);
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

struct member {
    int fd;                        /* -1: not joined                               */
    bool ready;
    uint8_t nonce[16];             /* its hello's: the replies' macs cover it      */
    char from[80];
};

struct root_state {
    struct root *rt;
    struct gate g;
    int nranks, joined, ready;
    bool table_sent;
    struct member *m;              /* (nranks)                                     */
    struct loom_peer_info *table;  /* (nranks)                                     */
    uint8_t session[16];
    loom_result_t fail;            /* LOOM_SUCCESS until the rendezvous fails      */
    char msg[200];
};

static bool root_send(struct root_state *st, int r, int32_t status, uint32_t phase, const char *msg, uint64_t deadline)
{
    struct reply rep = { .magic = REPLY_MAGIC, .status = status, .phase = phase };
    snprintf(rep.msg, sizeof rep.msg, "%s", msg);
    memcpy(rep.session, st->session, sizeof rep.session);
    bool table = status == LOOM_SUCCESS && phase == REPLY_TABLE;
    size_t tb = sizeof *st->table * (size_t)st->nranks;
    reply_mac(st->rt->id.secret, st->m[r].nonce, &rep, table ? st->table : NULL, tb, rep.mac);
    return net_send_all(st->m[r].fd, &rep, sizeof rep, deadline) == LOOM_SUCCESS &&
           (!table || net_send_all(st->m[r].fd, st->table, tb, deadline) == LOOM_SUCCESS);
}

/* The verdict on an authenticated hello: "" admits. */
static void judge(struct root_state *st, const struct gate_arrival *a, char *why, size_t len)
{
    const struct gate_hello *h = &a->h;
    if (h->kind != GATE_JOIN)
        snprintf(why, len, "this is a rendezvous root, not a rank's listener");
    else if (st->table_sent)
        snprintf(why, len, "the rendezvous is complete: all %d ranks joined", st->nranks);
    else if (h->nranks < 1 || h->nranks > LOOM_MAX_RANKS || (st->nranks && h->nranks != st->nranks))
        snprintf(why, len, "rank %d says the job has %d ranks, the root expects %d", h->src, h->nranks,
                 st->nranks ? st->nranks : h->nranks);
    else if (h->src < 0 || h->src >= h->nranks)
        snprintf(why, len, "rank %d out of range [0, %d)", h->src, h->nranks);
    else if (st->m && st->m[h->src].fd >= 0)
        snprintf(why, len, "rank %d joined twice (first from %s, again from %s)", h->src, st->m[h->src].from, a->from);
    else
        why[0] = '\0';
}

static void root_admit(struct root_state *st, struct gate_arrival *a)
{
    char why[200];
    judge(st, a, why, sizeof why);
    if (why[0] == '\0' && st->nranks == 0) {
        st->m = calloc((size_t)a->h.nranks, sizeof *st->m);
        st->table = calloc((size_t)a->h.nranks, sizeof *st->table);
        if (!st->m || !st->table) {
            snprintf(why, sizeof why, "the root is out of memory");
            st->fail = LOOM_ERR_SYSTEM;
        } else {
            st->nranks = a->h.nranks;
            for (int i = 0; i < st->nranks; i++) st->m[i].fd = -1;
        }
    }
    if (why[0]) {
        LOOM_WARN(LOOM_SUB_BOOT, "bootstrap root refused %s: %s", a->from, why);
        gate_verdict(&st->g, a, LOOM_ERR_INVALID_ARGUMENT, why);
        return;
    }
    int r = a->h.src;
    if (!gate_verdict(&st->g, a, LOOM_SUCCESS, NULL)) return;
    st->m[r].fd = a->fd;
    memcpy(st->m[r].nonce, a->h.nonce, sizeof st->m[r].nonce);
    memcpy(st->m[r].from, a->from, sizeof st->m[r].from);
    memcpy(&st->table[r], a->payload, sizeof st->table[r]);
    st->table[r].rank = r;
    st->table[r].host[sizeof st->table[r].host - 1] = '\0';
    st->joined++;
    LOOM_TRACE(LOOM_SUB_BOOT, "root: rank %d of %d joined from %s", r, st->nranks, a->from);
}

/* A member's connection is readable: its READY, or it left. */
static void root_member(struct root_state *st, int r)
{
    uint32_t word = 0;
    ssize_t n = recv(st->m[r].fd, &word, sizeof word, MSG_DONTWAIT | MSG_WAITALL);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
    if (st->table_sent && n == (ssize_t)sizeof word && word == READY_MAGIC && !st->m[r].ready) {
        st->m[r].ready = true;
        st->ready++;
        return;
    }
    close(st->m[r].fd);
    st->m[r].fd = -1;
    st->fail = LOOM_ERR_REMOTE;
    int len = snprintf(st->msg, sizeof st->msg, "rank %d (%.64s pid %d) %s during the rendezvous", r,
                       st->table[r].host, (int)st->table[r].pid,
                       n == 0 ? "left (died, was killed or gave up)" : "broke the protocol");
    if (len > 0 && (size_t)len < sizeof st->msg) snprintf(st->msg + len, sizeof st->msg - (size_t)len, " (from %s)", st->m[r].from);
}

/* After a failure, for up to ROOT_LINGER_MS more (within the deadline): tell a rank that
   arrives late why the rendezvous failed, rather than leave it to time out. */
#define ROOT_LINGER_MS 10000
static void root_linger(struct root_state *st, struct pollfd *pf, struct gate_arrival *arr, uint64_t deadline)
{
    if (st->fail == LOOM_SUCCESS) return;   /* never admit anyone here */
    uint64_t end = net_deadline(ROOT_LINGER_MS);
    if (end > deadline) end = deadline;
    char why[240];
    snprintf(why, sizeof why, "the rendezvous failed: %s", st->msg);
    for (int turn = 0; turn < 100000 && net_ms_left(end) > 0; turn++) {
        int n = gate_pollset(&st->g, pf, 0);
        if (poll(pf, (nfds_t)n, gate_timeout_ms(&st->g, net_ms_left(end))) < 0 && errno != EINTR) return;
        int na = gate_service(&st->g, pf, arr);
        for (int i = 0; i < na; i++) gate_verdict(&st->g, &arr[i], st->fail, why);
    }
}

static void root_serve(struct root *rt)
{
    struct root_state st = { .rt = rt };
    uint64_t deadline = net_deadline(rt->timeout_ms);
    int maxfds = 1 + GATE_MAX_PENDING + LOOM_MAX_RANKS;
    struct pollfd *pf = malloc(sizeof *pf * (size_t)maxfds);
    int *who = malloc(sizeof *who * (size_t)maxfds);
    struct gate_arrival *arr = malloc(sizeof *arr * GATE_MAX_PENDING);
    gate_init(&st.g, "bootstrap root", rt->id.secret, sizeof rt->id.secret, sizeof(struct loom_peer_info));
    gate_add_listener(&st.g, rt->fd);
    if (!pf || !who || !arr) {
        LOOM_WARN(LOOM_SUB_BOOT, "bootstrap root: out of memory");
        goto out;
    }
    while (st.fail == LOOM_SUCCESS) {
        int ms = net_ms_left(deadline);
        if (ms == 0) {
            st.fail = LOOM_ERR_TIMEOUT;
            int len = snprintf(st.msg, sizeof st.msg, "rendezvous timed out after %lld ms: ", (long long)rt->timeout_ms);
            len += snprintf(st.msg + len, sizeof st.msg - (size_t)len, st.table_sent ? "%d of %d ranks ready; not:"
                            : "%d of %d ranks joined; missing:", st.table_sent ? st.ready : st.joined, st.nranks);
            for (int i = 0; i < st.nranks && len < (int)sizeof st.msg - 8; i++)
                if (st.table_sent ? !st.m[i].ready : st.m[i].fd < 0)
                    len += snprintf(st.msg + len, sizeof st.msg - (size_t)len, " %d", i);
            break;
        }
        int n = gate_pollset(&st.g, pf, 0), first_member = n;
        for (int r = 0; r < st.nranks; r++)
            if (st.m[r].fd >= 0 && !st.m[r].ready) {
                who[n] = r;
                pf[n++] = (struct pollfd){ .fd = st.m[r].fd, .events = POLLIN };
            }
        if (poll(pf, (nfds_t)n, gate_timeout_ms(&st.g, ms)) < 0 && errno != EINTR) {
            st.fail = LOOM_ERR_SYSTEM;
            snprintf(st.msg, sizeof st.msg, "the rendezvous root's poll failed: %s", strerror(errno));
            break;
        }
        for (int i = first_member; i < n && st.fail == LOOM_SUCCESS; i++)
            if (pf[i].revents) root_member(&st, who[i]);
        int na = gate_service(&st.g, pf, arr);
        for (int i = 0; i < na; i++) root_admit(&st, &arr[i]);
        if (st.fail != LOOM_SUCCESS) break;
        if (!st.table_sent && st.nranks > 0 && st.joined == st.nranks) {
            if (!auth_random(st.session, sizeof st.session)) {
                st.fail = LOOM_ERR_SYSTEM;
                snprintf(st.msg, sizeof st.msg, "the root could not draw random bytes");
                break;
            }
            for (int r = 0; r < st.nranks && st.fail == LOOM_SUCCESS; r++)
                if (!root_send(&st, r, LOOM_SUCCESS, REPLY_TABLE, "", deadline)) {
                    st.fail = LOOM_ERR_REMOTE;
                    snprintf(st.msg, sizeof st.msg, "the root could not send the peer table to rank %d (%s)", r,
                             st.m[r].from);
                }
            st.table_sent = true;
            LOOM_INFO(LOOM_SUB_BOOT, "root: all %d ranks joined", st.nranks);
        }
        if (st.table_sent && st.ready == st.nranks && st.fail == LOOM_SUCCESS) {
            for (int r = 0; r < st.nranks; r++) root_send(&st, r, LOOM_SUCCESS, REPLY_GO, "", deadline);
            LOOM_TRACE(LOOM_SUB_BOOT, "root: all %d ranks ready", st.nranks);
            goto out;
        }
    }
    if (st.nranks > 0) {
        LOOM_WARN(LOOM_SUB_BOOT, "%s", st.msg);
        /* Tell every member, the one in this very process last: its failure ends the
           process (and this thread) once it hears. */
        uint32_t phase = st.table_sent ? REPLY_GO : REPLY_TABLE;
        for (int pass = 0; pass < 2; pass++)
            for (int r = 0; r < st.nranks; r++)
                if (st.m[r].fd >= 0 && (st.table[r].pid == (int32_t)getpid()) == (pass == 1))
                    root_send(&st, r, st.fail, phase, st.msg, net_deadline(1000));
        root_linger(&st, pf, arr, deadline);
    }
out:
    for (int r = 0; r < st.nranks; r++)
        if (st.m[r].fd >= 0) close(st.m[r].fd);
    gate_close(&st.g);
    free(st.m);
    free(st.table);
    free(pf);
    free(who);
    free(arr);
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

/* Connect and pass the root's gate, retrying while the root is not up yet or dropped
   the connection (it does under a flood of strangers). */
static loom_result_t join_connect(const struct boot_id *b, int nranks, int rank, const struct loom_peer_info *me,
                                  uint8_t *nonce, int *fd_out, uint64_t deadline_ns, const char *root_s,
                                  char *err, size_t errlen)
{
    char why[320] = "";
    for (int attempt = 0, backoff_ms = 5; attempt < 100000; attempt++) {
        int fd;
        loom_result_t r = net_connect(&b->root, deadline_ns, true, &fd, why, sizeof why);
        if (r != LOOM_SUCCESS) {
            snprintf(err, errlen, "cannot reach the rendezvous root: %s (is the process that hosts it, rank 0 "
                     "or the one that made the id, running?)", why);
            return r;
        }
        struct gate_hello h = { .kind = GATE_JOIN, .src = rank, .dst = -1, .nranks = nranks,
                                .payload_len = sizeof *me };
        bool dropped;
        r = gate_handshake(fd, b->secret, sizeof b->secret, &h, me, deadline_ns, &dropped, why, sizeof why);
        if (r == LOOM_SUCCESS) {
            memcpy(nonce, h.nonce, sizeof h.nonce);
            *fd_out = fd;
            return LOOM_SUCCESS;
        }
        close(fd);
        if (!dropped || net_ms_left(deadline_ns) == 0) {
            snprintf(err, errlen, "rendezvous root %s %s rank %d: %s", root_s, dropped ? "did not admit" : "refused",
                     rank, why);
            return dropped ? LOOM_ERR_TIMEOUT : r;
        }
        int ms = net_ms_left(deadline_ns);
        usleep((useconds_t)(backoff_ms < ms ? backoff_ms : ms) * 1000);
        if (backoff_ms < 200) backoff_ms *= 2;
    }
    snprintf(err, errlen, "rendezvous root %s: too many attempts", root_s);
    return LOOM_ERR_TIMEOUT;
}

/* Read one REPLY (and the table with it) and check it came from the root. */
static loom_result_t join_reply(int fd, const struct boot_id *b, const uint8_t *nonce, uint32_t phase, int nranks,
                                struct loom_peer_info *table, struct reply *rep, uint64_t deadline_ns,
                                const char *root_s, char *err, size_t errlen)
{
    loom_result_t r = net_recv_all(fd, rep, sizeof *rep, deadline_ns);
    bool with_table = r == LOOM_SUCCESS && rep->magic == REPLY_MAGIC && rep->status == LOOM_SUCCESS &&
                      phase == REPLY_TABLE;
    size_t tb = sizeof *table * (size_t)nranks;
    if (with_table) r = net_recv_all(fd, table, tb, deadline_ns);
    if (r != LOOM_SUCCESS) {
        snprintf(err, errlen, r == LOOM_ERR_TIMEOUT
                 ? "timed out waiting for the other ranks at the rendezvous root %s"
                 : "the rendezvous root %s closed the connection: the process hosting it (rank 0, or the one that "
                   "made the id) died or was killed", root_s);
        return r;
    }
    uint8_t mac[SHA256_BYTES];
    reply_mac(b->secret, nonce, rep, with_table ? table : NULL, tb, mac);
    if (rep->magic != REPLY_MAGIC || rep->phase != phase || !auth_equal(mac, rep->mac, sizeof mac)) {
        snprintf(err, errlen, "the rendezvous root %s sent a reply that fails its check", root_s);
        return LOOM_ERR_REMOTE;
    }
    if (rep->status != LOOM_SUCCESS) {
        rep->msg[sizeof rep->msg - 1] = '\0';
        snprintf(err, errlen, "rendezvous failed (root %s): %s", root_s, rep->msg);
        return rep->status == LOOM_ERR_TIMEOUT ? LOOM_ERR_TIMEOUT : LOOM_ERR_REMOTE;
    }
    return LOOM_SUCCESS;
}

loom_result_t boot_join(const struct boot_id *b, int nranks, int rank, const struct loom_peer_info *me,
                        struct loom_peer_info *table, struct boot_join *j, uint64_t deadline_ns,
                        char *err, size_t errlen)
{
    char root_s[80];
    net_addr_str(&b->root, root_s, sizeof root_s);
    j->fd = -1;
    loom_result_t r = join_connect(b, nranks, rank, me, j->nonce, &j->fd, deadline_ns, root_s, err, errlen);
    if (r != LOOM_SUCCESS) return r;
    struct reply rep;
    r = join_reply(j->fd, b, j->nonce, REPLY_TABLE, nranks, table, &rep, deadline_ns, root_s, err, errlen);
    if (r != LOOM_SUCCESS) {
        boot_leave(j);
        return r;
    }
    memcpy(j->session, rep.session, sizeof j->session);
    memcpy(j->secret, b->secret, sizeof j->secret);
    snprintf(j->root_s, sizeof j->root_s, "%s", root_s);
    return LOOM_SUCCESS;
}

loom_result_t boot_ready(struct boot_join *j, uint64_t deadline_ns, char *err, size_t errlen)
{
    uint32_t word = READY_MAGIC;
    struct boot_id b = { .magic = BOOT_ID_MAGIC };
    memcpy(b.secret, j->secret, sizeof b.secret);
    struct reply rep;
    loom_result_t r = net_send_all(j->fd, &word, sizeof word, deadline_ns);
    if (r == LOOM_SUCCESS)
        r = join_reply(j->fd, &b, j->nonce, REPLY_GO, 0, NULL, &rep, deadline_ns, j->root_s, err, errlen);
    else
        snprintf(err, errlen, "the rendezvous root %s closed the connection: the process hosting it died or was "
                 "killed", j->root_s);
    boot_leave(j);
    return r;
}

void boot_leave(struct boot_join *j)
{
    if (j->fd >= 0) close(j->fd);
    j->fd = -1;
}
