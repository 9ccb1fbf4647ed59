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
 * Connections arrive through the gate (runtime/gate.c), which authenticates them
 * without ever blocking this thread; then each must be what the mesh expects: a
 * control connection only from a higher rank, once; a tcp data link only where the
 * link to that peer is tcp, once per kind.
 *
 * Between ranks on one host the control connection is a unix socket, and it also
 * carries the memory of their shm links (transport/shm.c): the lower rank of a pair
 * makes each link's FIFO as a memfd and sends the descriptor (CTRL_SHM_FD, SCM_RIGHTS);
 * the higher rank asks for it when it needs it first (CTRL_SHM_REQ). Nothing is ever
 * named in /dev/shm, so a kill at any moment leaves nothing behind and no other user
 * can open a FIFO.
 *
 * Control frame (fixed layout), followed by len bytes of text for CTRL_ABORT:
 *  offset size field
 *  0      4    magic  "LMCT"
 *  4      4    type   CTRL_HEARTBEAT, CTRL_BYE, CTRL_ABORT
 *  8      4    code   ABORT: loom_result_t that broke the sender; BYE: the tcp data
 *                     links the sender opened to this rank (it counts as gone only
 *                     once all of them are in, so none of its bytes are missed)
 *                     SHM_REQ, SHM_FD: the sending rank of the link meant
 *  12     4    len    bytes of text that follow (< 640)
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

#include "comm.h"
#include "ctrl.h"
#include "gate.h"
#include "log.h"

#define CTRL_MAGIC 0x54434d4cu /* "LMCT" */

struct ctrl_peer {
    int fd;                          /* -1 until connected                      */
    _Atomic uint64_t heard_ns;       /* last frame received (0: never connected) */
    int bye_links;                   /* BYE's count of its data links, -1: no BYE */
    int links_in;                    /* its data links admitted here              */
    int early[2];                    /* admitted data sockets [host, dev] whose
                                        receiving link is not made yet (lock)     */
    /* shm links with this peer (same host), [0] the link from this rank, [1] to it;
       all under lock */
    int fd_out[2];                   /* a FIFO's memfd to send it                 */
    bool req_out[2], req_sent[2];    /* ask it for its FIFO's memfd               */
    int fd_in[2];                    /* received from it, not yet taken           */
    int fdq[4], nfdq;                /* descriptors read, not yet matched to a
                                        CTRL_SHM_FD frame (this thread only)      */
    bool fd_lost;                    /* the kernel dropped one (no room here)      */
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
    _Atomic bool fd_work;            /* an fd_out or req_out waits to be sent      */
    _Atomic bool stop, orderly, tell_peers;
    struct ctrl_peer *peers;         /* (nranks)                                */
    pthread_mutex_t lock;            /* guards conns, mesh count                */
    pthread_cond_t cv;
    int mesh;                        /* control sockets up                       */
    struct loom_conn **conns;        /* proxied connections (tcp)               */
    struct pollfd *exec_pf;          /* (4 nranks) the executor's poll set       */
    int nconns, cap;
    struct gate gate;                /* connections still authenticating          */
    struct gate_arrival *arrivals;   /* (GATE_MAX_PENDING)                        */
    char owner[32];                  /* "rank 3": the gate's log lines            */
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

/* The receiving tcp link from src (dev: staged device link), if it is made (lock). */
static struct loom_conn *find_recv(struct loom_progress *p, int src, bool dev)
{
    for (int i = 0; i < p->nconns; i++)
        if (!p->conns[i]->is_send && p->conns[i]->peer == src && p->conns[i]->dev == dev) return p->conns[i];
    return NULL;
}

void progress_add_conn(struct loom_progress *p, struct loom_conn *conn)
{
    pthread_mutex_lock(&p->lock);
    int *early = &p->peers[conn->peer].early[conn->dev];
    if (!conn->is_send && *early >= 0) {
        tcp_attach(conn, *early);
        *early = -1;
    }
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
        off += (size_t)snprintf(buf + off, len - off, "%s%s silent for %.1f s (stopped or hung?)",
                                off ? "; " : "", name, (double)(now - heard) / 1e9);
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

/* ---- shm memory handed between ranks on one host ---- */

/* [0] the link from this rank to peer, [1] from peer to this rank; -1 neither. */
static int link_dir(const struct loom_comm *c, int peer, int link_src)
{
    return link_src == c->rank ? 0 : link_src == peer ? 1 : -1;
}

void progress_fd_offer(struct loom_progress *p, int peer, int link_src, int fd)
{
    pthread_mutex_lock(&p->lock);
    int d = link_dir(p->comm, peer, link_src);
    if (d >= 0 && p->peers[peer].fd_out[d] < 0) {
        p->peers[peer].fd_out[d] = fd;
        fd = -1;
    }
    pthread_mutex_unlock(&p->lock);
    if (fd >= 0) close(fd);         /* offered once per link: a second one is a bug */
    atomic_store(&p->fd_work, true);
    progress_kick(p);
}

loom_result_t progress_fd_take(struct loom_progress *p, int peer, int link_src, uint64_t deadline_ns, int *fd,
                               char *err, size_t errlen)
{
    struct loom_comm *c = p->comm;
    int d = link_dir(c, peer, link_src);
    loom_result_t r = LOOM_ERR_TIMEOUT;
    *fd = -1;
    pthread_mutex_lock(&p->lock);
    for (;;) {
        struct ctrl_peer *cp = &p->peers[peer];
        if (cp->fd_in[d] >= 0) {
            *fd = cp->fd_in[d];
            cp->fd_in[d] = -1;
            r = LOOM_SUCCESS;
            break;
        }
        if (!cp->req_out[d]) {
            cp->req_out[d] = true;
            atomic_store(&p->fd_work, true);
            progress_kick(p);
        }
        if (atomic_load(&c->status) != LOOM_SUCCESS) {
            r = (loom_result_t)atomic_load(&c->status);
            snprintf(err, errlen, "%s", "the communicator failed meanwhile");
            break;
        }
        if (atomic_load(&c->peer_gone[peer])) {
            r = LOOM_ERR_REMOTE;
            snprintf(err, errlen, "the peer left before handing over the link's shared memory");
            break;
        }
        if (net_ms_left(deadline_ns) == 0) {
            snprintf(err, errlen, "the peer did not hand over the link's shared memory in time");
            break;
        }
        net_cond_wait_ms(&p->cv, &p->lock, 20);
    }
    pthread_mutex_unlock(&p->lock);
    return r;
}

/* Send what executors queued: memfds offered, requests for the peer's. */
static void send_fds(struct loom_progress *p)
{
    struct loom_comm *c = p->comm;
    pthread_mutex_lock(&p->lock);
    for (int r = 0; r < c->nranks; r++) {
        struct ctrl_peer *cp = &p->peers[r];
        for (int d = 0; d < 2; d++) {
            int link_src = d == 0 ? c->rank : r;
            if (cp->fd_out[d] >= 0 && cp->fd >= 0) {
                struct ctrl_frame f = { .magic = CTRL_MAGIC, .type = CTRL_SHM_FD, .code = link_src };
                if (!net_send_fd(cp->fd, &f, sizeof f, cp->fd_out[d]) && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                    atomic_store(&p->fd_work, true);   /* the socket is full: next turn */
                    continue;
                }
                close(cp->fd_out[d]);
                cp->fd_out[d] = -1;
            }
            if (cp->req_out[d] && !cp->req_sent[d] && cp->fd >= 0) {
                ctrl_send(p, r, CTRL_SHM_REQ, link_src, NULL);
                cp->req_sent[d] = true;
            }
        }
    }
    pthread_mutex_unlock(&p->lock);
}

/* A descriptor arrived on r's control socket (SCM_RIGHTS); -1: one was lost. */
static void fd_arrived(void *arg, int fd)
{
    struct ctrl_peer *cp = arg;
    if (fd < 0) cp->fd_lost = true;
    else if (cp->nfdq < (int)(sizeof cp->fdq / sizeof cp->fdq[0])) cp->fdq[cp->nfdq++] = fd;
    else close(fd);   /* more than the frames can claim: the frame that lacks one says so */
}

/* ---- control mesh ---- */

/* A peer that said BYE is gone once every data link it opened to this rank is in:
   until then its last bytes may still be on their way. */
static void maybe_gone(struct loom_progress *p, int r)
{
    if (p->peers[r].bye_links >= 0 && p->peers[r].links_in >= p->peers[r].bye_links)
        atomic_store(&p->comm->peer_gone[r], true);
}

/* What the mesh expects from an authenticated connection: "" admits. */
static void judge(struct loom_progress *p, const struct gate_hello *h, char *why, size_t len)
{
    struct loom_comm *c = p->comm;
    why[0] = '\0';
    if (h->nranks != c->nranks || h->src < 0 || h->src >= c->nranks || h->src == c->rank || h->dst != c->rank)
        snprintf(why, len, "ranks %d -> %d of %d do not fit this communicator (rank %d of %d)", h->src, h->dst,
                 h->nranks, c->rank, c->nranks);
    else if (h->kind == CONN_CTRL && (h->src < c->rank || p->peers[h->src].fd >= 0))
        snprintf(why, len, "a control connection from rank %d was not expected (%s)", h->src,
                 h->src < c->rank ? "this rank connects to lower ranks" : "it has one");
    else if (h->kind != CONN_CTRL && h->kind != CONN_DATA && h->kind != CONN_DATA_DEV)
        snprintf(why, len, "unknown connection kind %u", h->kind);
}

static void admit(struct loom_progress *p, struct gate_arrival *a)
{
    struct loom_comm *c = p->comm;
    char why[256];
    judge(p, &a->h, why, sizeof why);
    int src = a->h.src;
    bool dev = a->h.kind == CONN_DATA_DEV;
    /* A data link only where the link from src is tcp, and only one. Without conn_lock:
       an executor holds it while it dials a peer, whose progress thread may be waiting
       on this one's verdict. */
    pthread_mutex_lock(&p->lock);
    struct loom_conn *link = a->h.kind == CONN_CTRL ? NULL : find_recv(p, src, dev);
    if (why[0] == '\0' && a->h.kind != CONN_CTRL) {
        if (!dev && comm_link_transport(c, src) != &loom_transport_tcp)
            snprintf(why, sizeof why, "a tcp data connection from rank %d, whose link is %s", src,
                     comm_link_transport(c, src)->name);
        else if (p->peers[src].early[dev] >= 0 || (link && tcp_attached(link)))
            snprintf(why, sizeof why, "a second tcp data connection from rank %d", src);
    }
    pthread_mutex_unlock(&p->lock);
    if (why[0]) {
        LOOM_WARN(LOOM_SUB_NET, "%s refused a connection from %s: %s", p->owner, a->from, why);
        gate_verdict(&p->gate, a, LOOM_ERR_INVALID_ARGUMENT, why);
        return;
    }
    if (!gate_verdict(&p->gate, a, LOOM_SUCCESS, NULL)) return;
    if (a->h.kind == CONN_CTRL) {
        net_set_nodelay(a->fd);
        p->peers[src].heard_ns = net_now_ns();
        pthread_mutex_lock(&p->lock);
        p->peers[src].fd = a->fd;
        p->mesh++;
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->lock);
        return;
    }
    pthread_mutex_lock(&p->lock);
    if ((link = find_recv(p, src, dev))) tcp_attach(link, a->fd);
    else p->peers[src].early[dev] = a->fd;
    pthread_mutex_unlock(&p->lock);
    p->peers[src].links_in++;
    maybe_gone(p, src);
}

static void serve_gate(struct loom_progress *p, const struct pollfd *pf)
{
    int n = gate_service(&p->gate, pf, p->arrivals);
    for (int i = 0; i < n; i++) admit(p, &p->arrivals[i]);
}

/* Close r's control connection (under the lock: progress_wait_mesh reads it). */
static void drop_ctrl(struct loom_progress *p, int r)
{
    pthread_mutex_lock(&p->lock);
    close(p->peers[r].fd);
    p->peers[r].fd = -1;
    pthread_mutex_unlock(&p->lock);
}

static void peer_lost(struct loom_progress *p, int r, const char *why)
{
    struct loom_comm *c = p->comm;
    drop_ctrl(p, r);
    if (atomic_load(&c->peer_gone[r]) || atomic_load(&p->stop)) return;
    char name[128];
    comm_peer_name(c, r, name, sizeof name);
    comm_fail(c, LOOM_ERR_REMOTE, false, "%s %s: the process died or was killed", name, why);
}

/* r sent what no loom rank sends: give its connection up and fail the comm, for all. */
static void peer_broke(struct loom_progress *p, int r, const char *why)
{
    struct loom_comm *c = p->comm;
    drop_ctrl(p, r);
    char name[128];
    comm_peer_name(c, r, name, sizeof name);
    comm_fail(c, LOOM_ERR_REMOTE, true, "%s broke the control protocol: it %s", name, why);
}

/* A frame about an shm link with r; NULL, or what was wrong with it. */
static const char *shm_frame(struct loom_progress *p, int r, const struct ctrl_frame *f)
{
    struct loom_comm *c = p->comm;
    struct ctrl_peer *cp = &p->peers[r];
    int d = link_dir(c, r, f->code);
    if (d < 0 || !comm_local(c, r) || comm_link_transport(c, r) != &loom_transport_shm)
        return "sent a frame about a shared-memory link it does not have with this rank";
    if (f->type == CTRL_SHM_REQ) {
        if (c->rank > r) return "asked this rank for memory that it makes itself";
        shm_offer(c, r, f->code);
        return NULL;
    }
    if (c->rank < r) return "sent memory for a link this rank makes itself";
    if (cp->nfdq == 0) return "sent a shared-memory frame without its descriptor";
    int fd = cp->fdq[0];
    memmove(cp->fdq, cp->fdq + 1, sizeof cp->fdq[0] * (size_t)--cp->nfdq);
    pthread_mutex_lock(&p->lock);
    bool dup = cp->fd_in[d] >= 0;   /* offered unasked is fine: the maker touched it first */
    if (!dup) cp->fd_in[d] = fd;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->lock);
    if (dup) {
        close(fd);
        return "sent the memory of a link twice";
    }
    return NULL;
}

int ctrl_parse(const char *rx, size_t len, int nranks, struct ctrl_frame *f, size_t *need, const char **why)
{
    if (len < sizeof *f) return 1;
    memcpy(f, rx, sizeof *f);
    *why = f->magic != CTRL_MAGIC ? "sent a corrupt control frame"
         : f->len >= CTRL_TEXT_MAX || (f->len && f->type != CTRL_ABORT) ? "sent a control frame of a wrong length"
         : f->type < CTRL_HEARTBEAT || f->type > CTRL_SHM_FD ? "sent a control frame of an unknown type"
         : f->type == CTRL_BYE && (f->code < 0 || f->code > 2) ? "said goodbye with an impossible link count"
         : (f->type == CTRL_SHM_REQ || f->type == CTRL_SHM_FD) && (f->code < 0 || f->code >= nranks)
             ? "named a rank that does not exist" : NULL;
    if (*why) return -1;
    *need = sizeof *f + f->len;
    return len < *need ? 1 : 0;
}

/* Consume whole frames from peer r's control socket. */
static void ctrl_read(struct loom_progress *p, int r)
{
    struct loom_comm *c = p->comm;
    struct ctrl_peer *cp = &p->peers[r];
    for (int guard = 0; guard < 64 && cp->fd >= 0; guard++) {
        ssize_t n = net_recv_fds(cp->fd, cp->rx + cp->rx_len, sizeof cp->rx - cp->rx_len, fd_arrived, cp);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
            peer_lost(p, r, "closed its control connection without saying goodbye");
            return;
        }
        if (n < 0) return;
        if (cp->fd_lost) {   /* our own shortage, not the peer's doing: say so */
            comm_fail(c, LOOM_ERR_SYSTEM, true, "a shared-memory descriptor from rank %d was dropped on arrival: "
                      "this process is out of file descriptors (ulimit -n)?", r);
            return;
        }
        cp->rx_len += (size_t)n;
        cp->heard_ns = net_now_ns();
        for (;;) {
            struct ctrl_frame f;
            size_t need;
            const char *why;
            int st = ctrl_parse(cp->rx, cp->rx_len, c->nranks, &f, &need, &why);
            if (st < 0) {
                peer_broke(p, r, why);
                return;
            }
            if (st > 0) break;
            if (f.type == CTRL_BYE) {
                cp->bye_links = f.code;
                maybe_gone(p, r);
            } else if (f.type == CTRL_SHM_FD || f.type == CTRL_SHM_REQ) {
                const char *bad = shm_frame(p, r, &f);
                if (bad) {
                    peer_broke(p, r, bad);
                    return;
                }
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
    n = gate_pollset(&p->gate, pf, n);
    for (int i = 1; i < n; i++) (*who)[i] = -1;
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
    int maxfds = 3 + GATE_MAX_PENDING + 5 * c->nranks;   /* eventfd, the gate; per peer: control, and a tcp
                                                            send and recv link for host and device buffers */
    struct pollfd *pf = malloc(sizeof *pf * (size_t)maxfds);
    int *who = malloc(sizeof *who * (size_t)maxfds);
    if (!pf || !who) abort();
    uint64_t next_hb = net_now_ns();
    uint64_t flush_deadline = 0;

    for (;;) {
        if (atomic_exchange(&p->tell_peers, false)) send_abort(p);
        if (atomic_exchange(&p->fd_work, false)) send_fds(p);
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
                if (p->peers[r].fd >= 0 && p->peers[r].bye_links < 0)
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
            /* fd_work: an executor queued a descriptor or a request (it kicks, but may
               have before this thread said it sleeps; a full socket retries too) */
            timeout = did || staged || atomic_load(&p->fd_work) ? 0
                    : gate_timeout_ms(&p->gate, atomic_load(&p->stop) ? 5 : hb_ms);
        }
        int n = build_pollset(p, pf, &who);
        int rc = poll(pf, (nfds_t)n, timeout);
        atomic_store(&p->sleeping, false);
        if (rc < 0) continue;
        /* on a timeout too: the gate drops connections past their deadline then */
        if (pf[0].revents & POLLIN) {
            uint64_t v;
            ssize_t r = read(p->efd, &v, sizeof v);
            (void)r;
        }
        serve_gate(p, pf);
        for (int i = 1; i < n; i++)
            if (who[i] >= 0 && (pf[i].revents & (POLLIN | POLLHUP | POLLERR)))
                ctrl_read(p, who[i]);
    }

    /* Leaving: BYE after an orderly destroy; after a failure, the reason again (a peer
       may not have heard it, e.g. when this rank learnt it from another), so nobody
       mistakes the closing sockets for a death. */
    if (atomic_load(&p->orderly))
        for (int r = 0; r < c->nranks; r++)
            if (p->peers[r].fd >= 0) ctrl_send(p, r, CTRL_BYE, atomic_load(&c->links_to[r]), NULL);
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
    for (int r = 0; r < c->nranks; r++) {
        struct ctrl_peer *cp = &p->peers[r];
        cp->fd = cp->bye_links = -1;
        for (int d = 0; d < 2; d++) cp->early[d] = cp->fd_out[d] = cp->fd_in[d] = -1;
    }
    p->exec_pf = calloc(4 * (size_t)c->nranks, sizeof *p->exec_pf);   /* a send and a recv link
                                                                         per peer, host and device */
    p->arrivals = calloc(GATE_MAX_PENDING, sizeof *p->arrivals);
    if (p->exec_pf == NULL || p->arrivals == NULL) goto oom_free;
    snprintf(p->owner, sizeof p->owner, "rank %d", c->rank);
    gate_init(&p->gate, p->owner, c->key, sizeof c->key, 0);
    gate_add_listener(&p->gate, c->tcp_fd);
    gate_add_listener(&p->gate, c->unix_fd);
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->cv, NULL);
    p->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (p->efd < 0) {
        snprintf(err, errlen, "eventfd: %s", strerror(errno));
        free(p->exec_pf);
        free(p->arrivals);
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
        loom_result_t res = comm_dial(c, r, CONN_CTRL, deadline, &fd, err, errlen);
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
    free(p->arrivals);
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
    if (have == c->nranks - 1) {
        pthread_mutex_unlock(&p->lock);
        return LOOM_SUCCESS;
    }
    int len = snprintf(err, errlen, "control mesh incomplete after %lld ms (%d of %d peers); missing:",
                       (long long)c->cfg.timeout_ms, have, c->nranks - 1);
    for (int r = 0; r < c->nranks && len < (int)errlen - 8; r++)   /* admit() writes fd under the lock */
        if (r != c->rank && p->peers[r].fd < 0)
            len += snprintf(err + len, errlen - (size_t)len, " %d", r);
    pthread_mutex_unlock(&p->lock);
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
    for (int r = 0; r < p->comm->nranks; r++) {
        if (p->peers[r].fd >= 0) close(p->peers[r].fd);
        for (int d = 0; d < 2; d++) {
            if (p->peers[r].early[d] >= 0) close(p->peers[r].early[d]);
            if (p->peers[r].fd_out[d] >= 0) close(p->peers[r].fd_out[d]);
            if (p->peers[r].fd_in[d] >= 0) close(p->peers[r].fd_in[d]);
        }
        for (int i = 0; i < p->peers[r].nfdq; i++) close(p->peers[r].fdq[i]);
    }
    close(p->efd);
    gate_close(&p->gate);
    free(p->peers);
    free(p->conns);
    free(p->exec_pf);
    free(p->arrivals);
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->cv);
    p->comm->prog = NULL;
    free(p);
}
