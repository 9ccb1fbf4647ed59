/* progress.c: the one progress thread of a communicator.
 *
 * It drives what executors cannot: tcp connections (slots <-> socket), the control
 * mesh (one socket to every peer: heartbeats, BYE on orderly destroy, ABORT with a
 * reason when a rank fails), and accepting connections on the rank's listener.
 * It does not spin: it sleeps in poll() and executors kick it through an eventfd when
 * they post to or free a slot of a tcp FIFO while it sleeps. The exception: while a
 * CUDA kernel drives a staged device link (comm->staged_calls), nothing kicks, so it
 * polls those FIFOs without sleeping until the kernel is done.
 *
 * While a host call runs on a comm whose host links are all tcp (one rank per host, or
 * LOOM_TRANSPORT=tcp), its executor moves those links' bytes itself (progress_exec_begin
 * .. _end): it writes a slot out as it posts it and, when it must wait, polls the
 * sockets and reads them itself, as Gloo's and Open MPI's callers do. Handing every slot
 * to this thread and back cost two to three wake-ups per slot, each of which can land
 * on a vCPU the host has taken away (steal) while the other core idles. This thread
 * then leaves those links alone; between calls it moves them again (the executor kicks
 * it at the end of a call that left bytes unsent). Mixed comms (shm and tcp links) keep
 * the hand-off: an executor asleep on a shm futex cannot also watch sockets.
 *
 * Control frame (fixed layout), followed by len bytes of text for CTRL_ABORT:
 *  offset size field
 *  0      4    magic  "LMCT"
 *  4      4    type   CTRL_HEARTBEAT, CTRL_BYE, CTRL_ABORT
 *  8      4    code   loom_result_t that broke the sender (ABORT)
 *  12     4    len    bytes of text that follow (<= 640)
 *
 * Failure rules: EOF on a control socket without a BYE first means the peer died:
 * the comm fails with LOOM_ERR_REMOTE naming it. ABORT means the peer failed: the
 * comm fails with LOOM_ERR_REMOTE and the peer's reason. Not here: deadlines of
 * waits (the executors check them) and what the data means (algos/).
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "bootstrap.h"
#include "comm.h"
#include "log.h"

enum { CTRL_HEARTBEAT = 1, CTRL_BYE = 2, CTRL_ABORT = 3 };
#define CTRL_MAGIC 0x54434d4cu /* "LMCT" */
#define CTRL_TEXT_MAX 640

struct ctrl_frame {
    uint32_t magic, type;
    int32_t code;
    uint32_t len;
};

struct ctrl_peer {
    int fd;                          /* -1 until connected                      */
    _Atomic uint64_t heard_ns;       /* last frame received (0: never connected) */
    size_t rx_len;                   /* bytes buffered in rx                    */
    char rx[sizeof(struct ctrl_frame) + CTRL_TEXT_MAX];
};

struct loom_progress {
    struct loom_comm *comm;
    pthread_t thread;
    bool started;
    int efd;                         /* eventfd: kicks                          */
    _Atomic bool sleeping;
    _Atomic bool exec_drives;        /* the executor moves the host tcp links      */
    _Atomic bool stop, orderly, tell_peers;
    struct ctrl_peer *peers;         /* (nranks)                                */
    pthread_mutex_t lock;            /* guards conns, mesh count                */
    pthread_cond_t cv;
    int mesh;                        /* control sockets up                       */
    struct loom_conn **conns;        /* proxied connections (tcp)               */
    struct pollfd *exec_pf;          /* (4 nranks) the executor's poll set       */
    int nconns, cap;
};

/* ---- small helpers ---- */

void progress_kick(struct loom_progress *p)
{
    if (atomic_load(&p->sleeping)) {
        uint64_t one = 1;
        ssize_t n = write(p->efd, &one, sizeof one);
        (void)n;
    }
}

void progress_add_conn(struct loom_progress *p, struct loom_conn *conn)
{
    pthread_mutex_lock(&p->lock);
    if (p->nconns == p->cap) {
        int cap = p->cap ? 2 * p->cap : 16;
        struct loom_conn **n = realloc(p->conns, sizeof *n * (size_t)cap);
        if (n == NULL) abort();     /* a few pointers; nothing sane to do */
        p->conns = n;
        p->cap = cap;
    }
    p->conns[p->nconns++] = conn;
    pthread_mutex_unlock(&p->lock);
    uint64_t one = 1;
    ssize_t n = write(p->efd, &one, sizeof one);
    (void)n;
}

void progress_tell_peers(struct loom_progress *p)
{
    atomic_store(&p->tell_peers, true);
    uint64_t one = 1;
    ssize_t n = write(p->efd, &one, sizeof one);
    (void)n;
}

/* At least four heartbeats per timeout, so silence is visible before a wait expires. */
static int64_t heartbeat_ms(const struct loom_comm *c)
{
    int64_t hb = c->cfg.heartbeat_ms, quarter = c->cfg.timeout_ms / 4;
    return hb < quarter ? hb : (quarter > 10 ? quarter : 10);
}

void progress_silence_report(struct loom_progress *p, char *buf, size_t len)
{
    struct loom_comm *c = p->comm;
    /* Silent for two heartbeats is suspicious; the interval shrinks with the timeout
       (progress_heartbeat_ms) so a stopped peer shows before anyone times out. */
    uint64_t now = net_now_ns(), limit = (uint64_t)(2 * heartbeat_ms(c) + 50) * 1000000ull;
    size_t off = strlen(buf);
    for (int r = 0; r < c->nranks && off + 80 < len; r++) {
        if (r == c->rank || p->peers[r].heard_ns == 0) continue;
        uint64_t heard = p->peers[r].heard_ns;
        if (now - heard < limit) continue;
        char name[128];
        comm_peer_name(c, r, name, sizeof name);
        off += (size_t)snprintf(buf + off, len - off, "; %s silent for %.1f s (stopped or hung?)",
                                name, (double)(now - heard) / 1e9);
    }
}

static void ctrl_send(struct loom_progress *p, int r, uint32_t type, int code, const char *text)
{
    struct { struct ctrl_frame f; char text[CTRL_TEXT_MAX]; } m = {
        .f = { .magic = CTRL_MAGIC, .type = type, .code = code } };
    if (text) {
        m.f.len = (uint32_t)strnlen(text, CTRL_TEXT_MAX - 1);
        memcpy(m.text, text, m.f.len);
    }
    /* Short deadline: a control frame is tiny; a peer that cannot take it is gone. */
    if (net_send_all(p->peers[r].fd, &m, sizeof m.f + m.f.len, net_deadline(200)) != LOOM_SUCCESS)
        LOOM_TRACE(LOOM_SUB_PROXY, "control frame %u to rank %d not sent", type, r);
}

/* ---- control mesh ---- */

loom_result_t progress_send_hello(struct loom_comm *c, int fd, uint32_t kind, int dst, uint64_t deadline)
{
    struct conn_hello h = { .magic = CONN_MAGIC, .kind = kind, .src = c->rank, .dst = dst };
    memcpy(h.secret, c->secret, 16);
    return net_send_all(fd, &h, sizeof h, deadline);
}

/* Read the handshake of an accepted connection and route it. */
static void accept_one(struct loom_progress *p)
{
    struct loom_comm *c = p->comm;
    char from_s[80];
    int fd = net_accept(c->listen_fd, from_s, sizeof from_s);
    if (fd < 0) return;
    struct conn_hello h;
    if (net_recv_all(fd, &h, sizeof h, net_deadline(2000)) != LOOM_SUCCESS ||
        h.magic != CONN_MAGIC || !boot_secret_equal(h.secret, c->secret)) {
        LOOM_WARN(LOOM_SUB_NET, "refused a connection from %s: it did not present this "
                  "communicator's secret", from_s);
        close(fd);
        return;
    }
    if (h.src < 0 || h.src >= c->nranks || h.src == c->rank || h.dst != c->rank) {
        LOOM_WARN(LOOM_SUB_NET, "refused a connection from %s: bad ranks %d -> %d", from_s, h.src, h.dst);
        close(fd);
        return;
    }
    if (h.kind == CONN_CTRL && p->peers[h.src].fd < 0) {
        net_set_nonblock(fd);
        net_set_nodelay(fd);
        p->peers[h.src].fd = fd;
        p->peers[h.src].heard_ns = net_now_ns();
        pthread_mutex_lock(&p->lock);
        p->mesh++;
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->lock);
        return;
    }
    if (h.kind == CONN_DATA || h.kind == CONN_DATA_DEV) {
        char err[256];
        if (tcp_attach_recv(c, h.src, fd, h.kind == CONN_DATA_DEV, err, sizeof err) == LOOM_SUCCESS) return;
        comm_fail(c, LOOM_ERR_SYSTEM, true, "tcp data connection from rank %d: %s", h.src, err);
    } else {
        LOOM_WARN(LOOM_SUB_NET, "refused a duplicate connection (kind %u) from rank %d", h.kind, h.src);
    }
    close(fd);
}

static void accept_pending(struct loom_progress *p)
{
    for (int i = 0; i < 1024; i++) {
        struct pollfd pf = { .fd = p->comm->listen_fd, .events = POLLIN };
        if (poll(&pf, 1, 0) != 1) return;
        accept_one(p);
    }
}

static void peer_lost(struct loom_progress *p, int r, const char *why)
{
    struct loom_comm *c = p->comm;
    close(p->peers[r].fd);
    p->peers[r].fd = -1;
    if (atomic_load(&c->peer_gone[r]) || atomic_load(&p->stop)) return;
    char name[128];
    comm_peer_name(c, r, name, sizeof name);
    comm_fail(c, LOOM_ERR_REMOTE, false, "%s %s: the process died or was killed", name, why);
}

/* Consume whole frames from peer r's control socket. */
static void ctrl_read(struct loom_progress *p, int r)
{
    struct loom_comm *c = p->comm;
    struct ctrl_peer *cp = &p->peers[r];
    for (int guard = 0; guard < 64 && cp->fd >= 0; guard++) {
        ssize_t n = recv(cp->fd, cp->rx + cp->rx_len, sizeof cp->rx - cp->rx_len, MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
            peer_lost(p, r, "closed its control connection without saying goodbye");
            return;
        }
        if (n < 0) return;
        cp->rx_len += (size_t)n;
        cp->heard_ns = net_now_ns();
        while (cp->rx_len >= sizeof(struct ctrl_frame)) {
            struct ctrl_frame f;
            memcpy(&f, cp->rx, sizeof f);
            if (f.magic != CTRL_MAGIC || f.len >= CTRL_TEXT_MAX) {
                peer_lost(p, r, "sent a corrupt control frame");
                return;
            }
            size_t need = sizeof f + f.len;
            if (cp->rx_len < need) break;
            if (f.type == CTRL_BYE) {
                /* Its data connections were made before its BYE: take them first,
                   so an unattached link really means nothing was sent. */
                accept_pending(p);
                atomic_store(&c->peer_gone[r], true);
            } else if (f.type == CTRL_ABORT) {
                char name[128], text[CTRL_TEXT_MAX];
                memcpy(text, cp->rx + sizeof f, f.len);
                text[f.len] = '\0';
                comm_peer_name(c, r, name, sizeof name);
                /* A mismatch of arguments is the user's error on every rank; anything
                   else is, from here, a remote failure. The reason goes in before the
                   peer counts as gone, so a waiter never reports the bare departure. */
                comm_fail(c, f.code == LOOM_ERR_INVALID_ARGUMENT ? LOOM_ERR_INVALID_ARGUMENT : LOOM_ERR_REMOTE,
                          false, "%s failed: %s", name, text);
                atomic_store(&c->peer_gone[r], true);
            }
            memmove(cp->rx, cp->rx + need, cp->rx_len - need);
            cp->rx_len -= need;
        }
    }
}

/* Tell every peer why this communicator failed (the ABORT frame). */
static void send_abort(struct loom_progress *p)
{
    struct loom_comm *c = p->comm;
    char text[CTRL_TEXT_MAX];
    pthread_mutex_lock(&c->err_lock);
    size_t tl = strnlen(c->err, sizeof text - 1);   /* truncate to one frame */
    memcpy(text, c->err, tl);
    text[tl] = '\0';
    pthread_mutex_unlock(&c->err_lock);
    for (int r = 0; r < c->nranks; r++)
        if (p->peers[r].fd >= 0) ctrl_send(p, r, CTRL_ABORT, atomic_load(&c->status), text);
}

/* ---- the thread ---- */

/* Does this thread leave conn to the executor now? (Host links while it drives them.) */
static bool driven(struct loom_progress *p, const struct loom_conn *conn)
{
    return !conn->dev && atomic_load(&p->exec_drives);
}

/* Move one link's bytes (under p->lock); a failure of the link fails the comm. */
static bool conn_progress(struct loom_comm *c, struct loom_conn *conn)
{
    char err[256];
    bool did = false;
    loom_result_t r = conn->tp->progress(conn, &did, err, sizeof err);
    if (r != LOOM_SUCCESS && atomic_load(&c->status) == LOOM_SUCCESS && !atomic_load(&c->peer_gone[conn->peer])) {
        char name[128];
        comm_peer_name(c, conn->peer, name, sizeof name);
        comm_fail(c, LOOM_ERR_REMOTE, false, "tcp link %s %s: %s", conn->is_send ? "to" : "from", name, err);
    }
    return did;
}

/* Move the links' bytes: the executor's (exec: host links) or this thread's (the rest).
   Under the lock: executors may grow the array meanwhile, and the executor and this
   thread never move one link at once. progress() never blocks. */
static bool conns_progress(struct loom_progress *p, bool exec)
{
    bool did = false;
    pthread_mutex_lock(&p->lock);
    for (int i = 0; i < p->nconns; i++)
        if (!(exec ? p->conns[i]->dev : driven(p, p->conns[i]))) did |= conn_progress(p->comm, p->conns[i]);
    pthread_mutex_unlock(&p->lock);
    return did;
}

/* The sockets of the links that wait for one (exec: host links; else the rest) into
   pf[first..]; returns the new count. *unattached: a host link has no socket yet. */
static int conns_pollset(struct loom_progress *p, bool exec, struct pollfd *pf, int first, int *who,
                         bool *unattached)
{
    int n = first;
    pthread_mutex_lock(&p->lock);
    for (int i = 0; i < p->nconns; i++) {
        struct loom_conn *conn = p->conns[i];
        if (exec ? conn->dev : driven(p, conn)) continue;
        if (unattached && !atomic_load(&conn->attached)) *unattached = true;
        short ev = 0;
        int fd = conn->tp->poll_fd(conn, &ev);
        if (fd >= 0 && ev) {
            if (who) who[n] = -1;
            pf[n++] = (struct pollfd){ .fd = fd, .events = ev };
        }
    }
    pthread_mutex_unlock(&p->lock);
    return n;
}

/* Slots posted on a send link that are not on the wire yet? */
static bool sends_pending(struct loom_progress *p)
{
    pthread_mutex_lock(&p->lock);
    bool any = false;
    for (int i = 0; i < p->nconns && !any; i++)
        any = p->conns[i]->is_send && p->conns[i]->tp->send_pending(p->conns[i]);
    pthread_mutex_unlock(&p->lock);
    return any;
}

void progress_exec_begin(struct loom_progress *p)
{
    atomic_store(&p->exec_drives, true);
}

void progress_exec_end(struct loom_progress *p)
{
    atomic_store(&p->exec_drives, false);
    /* Slots the sockets did not take are this thread's again; it may be asleep with
       the host links out of its poll set. */
    if (sends_pending(p)) progress_kick(p);
}

void progress_conn_moved(struct loom_progress *p, struct loom_conn *conn)
{
    if (!driven(p, conn)) {
        progress_kick(p);
    } else if (conn->is_send) {     /* a posted slot: out now, as far as the socket takes it */
        pthread_mutex_lock(&p->lock);
        conn_progress(p->comm, conn);
        pthread_mutex_unlock(&p->lock);
    }                               /* a freed slot: the next progress_drive reads into it */
}

void progress_drive(struct loom_progress *p, int timeout_ms)
{
    if (conns_progress(p, true)) return;
    bool unattached = false;
    int n = conns_pollset(p, true, p->exec_pf, 0, NULL, &unattached);
    /* A link whose socket the thread has not accepted yet wakes nobody when it arrives:
       look again soon. */
    poll(p->exec_pf, (nfds_t)n, unattached && timeout_ms > 1 ? 1 : timeout_ms);
    conns_progress(p, true);
}

static int build_pollset(struct loom_progress *p, struct pollfd *pf, int **who)
{
    struct loom_comm *c = p->comm;
    int n = 0;
    pf[n++] = (struct pollfd){ .fd = p->efd, .events = POLLIN };
    pf[n++] = (struct pollfd){ .fd = c->listen_fd, .events = POLLIN };
    for (int r = 0; r < c->nranks; r++)
        if (p->peers[r].fd >= 0) {
            (*who)[n] = r;
            pf[n++] = (struct pollfd){ .fd = p->peers[r].fd, .events = POLLIN };
        }
    return conns_pollset(p, false, pf, n, *who, NULL);
}

static void *progress_main(void *arg)
{
    struct loom_progress *p = arg;
    struct loom_comm *c = p->comm;
    loom_log_set_rank(c->rank);
    int maxfds = 2 + 5 * c->nranks;   /* eventfd, listener; per peer: control, and a tcp
                                         send and recv link for host and for device buffers */
    struct pollfd *pf = malloc(sizeof *pf * (size_t)maxfds);
    int *who = malloc(sizeof *who * (size_t)maxfds);
    if (!pf || !who) abort();
    uint64_t next_hb = net_now_ns();
    uint64_t flush_deadline = 0;

    for (;;) {
        if (atomic_exchange(&p->tell_peers, false)) send_abort(p);
        /* Told peers first: a rank that fails and then destroys must still say why. */
        if (atomic_load(&p->stop)) {
            if (!atomic_load(&p->orderly)) break;
            if (flush_deadline == 0) flush_deadline = net_deadline(c->cfg.timeout_ms < 10000 ? c->cfg.timeout_ms : 10000);
            if (!sends_pending(p) || net_now_ns() > flush_deadline ||
                atomic_load(&c->status) != LOOM_SUCCESS)
                break;
        }
        bool did = conns_progress(p, false);
        uint64_t now = net_now_ns();
        if (now >= next_hb) {
            for (int r = 0; r < c->nranks; r++)
                if (p->peers[r].fd >= 0 && !atomic_load(&c->peer_gone[r]))
                    ctrl_send(p, r, CTRL_HEARTBEAT, 0, NULL);
            next_hb = now + (uint64_t)heartbeat_ms(c) * 1000000ull;
        }
        int timeout = 0;
        if (!did) {
            atomic_store(&p->sleeping, true);
            /* Read before the re-check: a kernel that posts its last slot and ends
               after this read has its slot seen by the re-check. */
            bool staged = atomic_load(&c->staged_calls) > 0;
            /* Re-check after announcing sleep: a kick sent before this point was
               skipped by the executor, so look at the FIFOs once more. */
            did = conns_progress(p, false);
            int hb_ms = (int)((next_hb - net_now_ns()) / 1000000) + 1;
            /* a kernel posts and releases slots of staged device links without a
               kick: poll them while one runs */
            timeout = did || staged ? 0 : (atomic_load(&p->stop) ? 5 : hb_ms);
        }
        int n = build_pollset(p, pf, &who);
        int rc = poll(pf, (nfds_t)n, timeout);
        atomic_store(&p->sleeping, false);
        if (rc <= 0) continue;
        if (pf[0].revents & POLLIN) {
            uint64_t v;
            ssize_t r = read(p->efd, &v, sizeof v);
            (void)r;
        }
        if (pf[1].revents & POLLIN) accept_one(p);
        for (int i = 2; i < n; i++)
            if (who[i] >= 0 && (pf[i].revents & (POLLIN | POLLHUP | POLLERR)))
                ctrl_read(p, who[i]);
    }

    /* Leaving: BYE after an orderly destroy; after a failure, the reason again (a peer
       may not have heard it, e.g. when this rank learnt it from another), so nobody
       mistakes the closing sockets for a death. */
    if (atomic_load(&p->orderly))
        for (int r = 0; r < c->nranks; r++)
            if (p->peers[r].fd >= 0) ctrl_send(p, r, CTRL_BYE, 0, NULL);
    if (!atomic_load(&p->orderly) && atomic_load(&c->status) != LOOM_SUCCESS) send_abort(p);
    free(pf);
    free(who);
    return NULL;
}

/* ---- life cycle ---- */

loom_result_t progress_start(struct loom_comm *c, char *err, size_t errlen)
{
    struct loom_progress *p = calloc(1, sizeof *p);
    if (p == NULL) goto oom;
    p->comm = c;
    p->peers = calloc((size_t)c->nranks, sizeof *p->peers);
    if (p->peers == NULL) goto oom_free;
    for (int r = 0; r < c->nranks; r++) p->peers[r].fd = -1;
    p->exec_pf = calloc(4 * (size_t)c->nranks, sizeof *p->exec_pf);   /* a send and a recv link
                                                                         per peer, host and device */
    if (p->exec_pf == NULL) goto oom_free;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->cv, NULL);
    p->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (p->efd < 0) {
        snprintf(err, errlen, "eventfd: %s", strerror(errno));
        free(p->exec_pf);
        free(p->peers);
        free(p);
        return LOOM_ERR_SYSTEM;
    }
    c->prog = p;

    /* I connect to lower ranks; higher ranks connect to me (their connects wait in
       my listener's backlog until the thread accepts them). */
    uint64_t deadline = net_deadline(c->cfg.timeout_ms);
    for (int r = 0; r < c->rank; r++) {
        int fd;
        loom_result_t res = net_connect(&c->peers[r].addr, deadline, false, &fd, err, errlen);
        if (res == LOOM_SUCCESS) res = progress_send_hello(c, fd, CONN_CTRL, r, deadline);
        if (res != LOOM_SUCCESS) {
            char name[128];
            comm_peer_name(c, r, name, sizeof name);
            size_t off = strlen(err);
            snprintf(err + off, errlen - off, " (control connection to %s)", name);
            return res;   /* progress_stop() cleans up */
        }
        net_set_nonblock(fd);
        p->peers[r].fd = fd;
        p->peers[r].heard_ns = net_now_ns();
        p->mesh++;
    }
    int rc = pthread_create(&p->thread, NULL, progress_main, p);
    if (rc != 0) {
        snprintf(err, errlen, "cannot start the progress thread: %s", strerror(rc));
        return LOOM_ERR_SYSTEM;
    }
    p->started = true;
    return LOOM_SUCCESS;
oom_free:
    free(p->exec_pf);
    free(p->peers);
    free(p);
oom:
    snprintf(err, errlen, "out of memory");
    return LOOM_ERR_SYSTEM;
}

loom_result_t progress_wait_mesh(struct loom_comm *c, uint64_t deadline_ns, char *err, size_t errlen)
{
    struct loom_progress *p = c->prog;
    pthread_mutex_lock(&p->lock);
    while (p->mesh < c->nranks - 1 && net_ms_left(deadline_ns) > 0) {
        net_cond_wait_ms(&p->cv, &p->lock, 20);
    }
    int have = p->mesh;
    pthread_mutex_unlock(&p->lock);
    if (have == c->nranks - 1) return LOOM_SUCCESS;
    int len = snprintf(err, errlen, "control mesh incomplete after %lld ms (%d of %d peers); missing:",
                       (long long)c->cfg.timeout_ms, have, c->nranks - 1);
    for (int r = 0; r < c->nranks && len < (int)errlen - 8; r++)
        if (r != c->rank && p->peers[r].fd < 0)
            len += snprintf(err + len, errlen - (size_t)len, " %d", r);
    return LOOM_ERR_TIMEOUT;
}

void progress_stop(struct loom_progress *p, bool orderly)
{
    if (p == NULL) return;
    if (p->started) {
        atomic_store(&p->orderly, orderly);
        atomic_store(&p->stop, true);
        uint64_t one = 1;
        ssize_t n = write(p->efd, &one, sizeof one);
        (void)n;
        pthread_join(p->thread, NULL);
    }
    for (int r = 0; r < p->comm->nranks; r++)
        if (p->peers[r].fd >= 0) close(p->peers[r].fd);
    close(p->efd);
    free(p->peers);
    free(p->conns);
    free(p->exec_pf);
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->cv);
    p->comm->prog = NULL;
    free(p);
}
