/* tcp.c: the tcp transport, driven by the progress thread.
 * Each side of a directed link keeps a private FIFO (same layout as shm, in
 * anonymous memory). The executor fills or drains it exactly as with shm; the
 * progress thread moves whole slots between it and a non-blocking socket (or, while a
 * host call runs on a comm whose host links are all tcp, the executor itself does:
 * runtime/progress.c).
 *
 * Wire format, one message per slot (fixed layout):
 *  offset size          field
 *  0      24            struct slot_meta (bytes, kind, count, seq, root)
 *  24     meta.bytes    payload
 *
 * The sender connects to the receiver's listener and passes its gate (runtime/gate.h,
 * kind CONN_DATA); the receiver's progress thread admits it only where its link from
 * that rank is tcp and has no socket yet, and attaches the socket to the receiving
 * link (tcp_attach), or keeps it until the link is made (progress_add_conn).
 * Device buffers staged over tcp (runtime/cuda.c) use links of their own (kind
 * CONN_DATA_DEV): the same FIFO, registered with CUDA, filled or drained by a kernel
 * instead of an executor thread; the progress thread moves it all the same.
 * Not here: what happens when the peer dies (its control socket reports that). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <poll.h>
#include <sys/uio.h>
#include <unistd.h>

#include "comm.h"
#include "gate.h"
#include "log.h"

struct tcp_priv {
    int fd;                   /* -1 until connected / attached                      */
    size_t off;               /* bytes of the current message already moved         */
    struct slot_meta rmeta;   /* receiver: header of the message being read         */
    bool blocked;             /* sender: last write hit EAGAIN                       */
    bool broken;              /* socket closed or failed; nothing more moves         */
};

static bool tcp_can_connect(const struct loom_peer_info *me, const struct loom_peer_info *peer)
{
    (void)me;
    (void)peer;
    return true;
}

loom_result_t tcp_link_init(struct loom_conn *c, uint32_t nslots, size_t slot_bytes, char *err, size_t errlen)
{
    size_t bytes = fifo_map_bytes(nslots, slot_bytes);
    void *mem = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    struct tcp_priv *tp = calloc(1, sizeof *tp);
    if (mem == MAP_FAILED || tp == NULL) {
        if (mem != MAP_FAILED) munmap(mem, bytes);
        free(tp);
        snprintf(err, errlen, "cannot allocate a %zu-byte tcp FIFO", bytes);
        return LOOM_ERR_SYSTEM;
    }
    tp->fd = -1;
    c->fifo.ctrl = mem;
    c->fifo.data = (char *)mem + FIFO_DATA_OFFSET;
    c->fifo.nslots = nslots;
    c->fifo.slot_bytes = slot_bytes;
    c->fifo.map_bytes = bytes;
    c->priv = tp;
    c->proxied = true;
    return LOOM_SUCCESS;
}

static loom_result_t tcp_alloc(struct loom_conn *c, char *err, size_t errlen)
{
    return tcp_link_init(c, c->comm->cfg.nslots, c->comm->cfg.slot_bytes, err, errlen);
}

static void tcp_close(struct loom_conn *c)
{
    struct tcp_priv *tp = c->priv;
    if (tp == NULL) return;
    if (tp->fd >= 0) close(tp->fd);
    munmap(c->fifo.ctrl, c->fifo.map_bytes);
    free(tp);
    c->priv = NULL;
}

/* Executor thread: connect to the peer's listener (bounded by the timeout). */
static loom_result_t tcp_connect_send(struct loom_conn *c, char *err, size_t errlen)
{
    struct loom_comm *comm = c->comm;
    loom_result_t r = tcp_alloc(c, err, errlen);
    if (r != LOOM_SUCCESS) return r;
    struct tcp_priv *tp = c->priv;
    uint64_t deadline = net_deadline(comm->cfg.timeout_ms);
    r = comm_dial(comm, c->peer, c->dev ? CONN_DATA_DEV : CONN_DATA, deadline, &tp->fd, err, errlen);
    if (r != LOOM_SUCCESS) {
        tcp_close(c);
        return r;
    }
    atomic_fetch_add(&comm->links_to[c->peer], 1);   /* my BYE tells the peer how many */
    net_set_nonblock(tp->fd);
    atomic_store(&c->attached, true);
    progress_add_conn(comm->prog, c);
    return LOOM_SUCCESS;
}

/* The socket arrives through the progress thread: now, if it came already, or later. */
static loom_result_t tcp_connect_recv(struct loom_conn *c, char *err, size_t errlen)
{
    loom_result_t r = tcp_alloc(c, err, errlen);
    if (r == LOOM_SUCCESS) progress_add_conn(c->comm->prog, c);
    return r;
}

bool tcp_attached(const struct loom_conn *c)
{
    return ((struct tcp_priv *)c->priv)->fd >= 0;
}

void tcp_attach(struct loom_conn *c, int fd)
{
    struct tcp_priv *tp = c->priv;
    net_set_nonblock(fd);
    net_set_nodelay(fd);
    tp->fd = fd;
    atomic_store(&c->attached, true);
    LOOM_TRACE(LOOM_SUB_NET, "tcp link from rank %d attached", c->peer);
}

/* ---- progress ---- */

/* Every posted slot goes out in one sendmsg (header and payload of each, up to
   TCP_BATCH slots): fewer, larger writes. Headers are sent from the FIFO's meta array,
   which stays put until the slot is released. tp->off counts the bytes of the oldest
   unsent slot already written. */
#define TCP_BATCH 16

static loom_result_t send_progress(struct loom_conn *c, struct tcp_priv *tp, bool *did,
                                   char *err, size_t errlen)
{
    struct fifo *f = &c->fifo;
    for (int guard = 0; guard < 1024; guard++) {
        uint32_t h = atomic_load_explicit(&f->ctrl->head, memory_order_relaxed);
        uint32_t t = atomic_load_explicit(&f->ctrl->tail, memory_order_acquire);
        if (t == h) return LOOM_SUCCESS;
        uint32_t ready = t - h < TCP_BATCH ? t - h : TCP_BATCH;
        struct iovec iov[2 * TCP_BATCH];
        size_t total[TCP_BATCH];
        int n = 0;
        for (uint32_t k = 0; k < ready; k++) {
            uint32_t i = (h + k) & (f->nslots - 1);
            struct slot_meta *m = &f->ctrl->meta[i];
            char *slot = f->data + (size_t)i * f->slot_bytes;
            size_t hdr = sizeof *m, skip = k == 0 ? tp->off : 0;
            total[k] = hdr + m->bytes;
            if (skip < hdr) iov[n++] = (struct iovec){ (char *)m + skip, hdr - skip };
            size_t doff = skip > hdr ? skip - hdr : 0;
            if (m->bytes > doff) iov[n++] = (struct iovec){ slot + doff, m->bytes - doff };
        }
        struct msghdr mh = { .msg_iov = iov, .msg_iovlen = (size_t)n };
        ssize_t w = sendmsg(tp->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) { tp->blocked = true; return LOOM_SUCCESS; }
            if (errno == EINTR) continue;
            tp->broken = true;
            /* The peer closed its end: it left or died, and its control socket says
               which (and why). Other errors are this link's own failure. */
            if (errno == EPIPE || errno == ECONNRESET) return LOOM_SUCCESS;
            snprintf(err, errlen, "send: %s", strerror(errno));
            return LOOM_ERR_REMOTE;
        }
        tp->blocked = false;
        *did = true;
        /* release every slot written whole; keep the offset into the next */
        size_t moved = (size_t)w;
        for (uint32_t k = 0; k < ready && moved > 0; k++) {
            size_t left = total[k] - tp->off;
            if (moved < left) {
                tp->off += moved;
                break;
            }
            moved -= left;
            tp->off = 0;
            fifo_release(f);      /* wakes an executor waiting for room */
        }
    }
    return LOOM_SUCCESS;
}

static loom_result_t recv_progress(struct loom_conn *c, struct tcp_priv *tp, bool *did,
                                   char *err, size_t errlen)
{
    for (int guard = 0; guard < 1024; guard++) {
        char *slot = fifo_send_slot(&c->fifo, c->fifo.slot_bytes);  /* no lines on tcp */
        if (slot == NULL) return LOOM_SUCCESS;          /* FIFO full: wait for a kick */
        size_t hdr = sizeof tp->rmeta;
        ssize_t n;
        if (tp->off < hdr)
            n = recv(tp->fd, (char *)&tp->rmeta + tp->off, hdr - tp->off, MSG_DONTWAIT);
        else
            n = recv(tp->fd, slot + (tp->off - hdr), tp->rmeta.bytes - (tp->off - hdr), MSG_DONTWAIT);
        if (n == 0) {
            tp->broken = true;                          /* the peer closed: its control */
            atomic_store(&c->eof, true);                /* socket says whether it died  */
            return LOOM_SUCCESS;
        }
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) return LOOM_SUCCESS;
            if (errno == EINTR) continue;
            tp->broken = true;
            atomic_store(&c->eof, true);
            snprintf(err, errlen, "recv: %s", strerror(errno));
            return errno == ECONNRESET ? LOOM_SUCCESS : LOOM_ERR_REMOTE;
        }
        *did = true;
        tp->off += (size_t)n;
        if (tp->off == hdr && tp->rmeta.bytes > c->fifo.slot_bytes) {
            tp->broken = true;
            snprintf(err, errlen, "corrupt stream: message of %u bytes, slots hold %zu",
                     tp->rmeta.bytes, c->fifo.slot_bytes);
            return LOOM_ERR_REMOTE;
        }
        if (tp->off < hdr + tp->rmeta.bytes) continue;
        tp->off = 0;
        fifo_post(&c->fifo, &tp->rmeta);                /* wakes a waiting executor */
    }
    return LOOM_SUCCESS;
}

/* The progress functions run on the progress thread or on an executor driving the
   link (runtime/progress.c), one at a time (under the progress lock). A receiving
   link's socket is attached by the progress thread: attached (stored after fd) says
   whether fd may be read. */
static bool tcp_ready(struct loom_conn *c, struct tcp_priv *tp)
{
    return atomic_load(&c->attached) && !tp->broken;
}

static loom_result_t tcp_progress(struct loom_conn *c, bool *did, char *err, size_t errlen)
{
    struct tcp_priv *tp = c->priv;
    if (!tcp_ready(c, tp)) return LOOM_SUCCESS;
    return c->is_send ? send_progress(c, tp, did, err, errlen) : recv_progress(c, tp, did, err, errlen);
}

static int tcp_poll_fd(struct loom_conn *c, short *events)
{
    struct tcp_priv *tp = c->priv;
    *events = 0;
    if (!tcp_ready(c, tp)) return -1;
    if (c->is_send) {
        if (tp->blocked) *events = POLLOUT;
    } else if (fifo_send_slot(&c->fifo, c->fifo.slot_bytes) != NULL) {
        *events = POLLIN;
    }
    return tp->fd;
}

static bool tcp_send_pending(struct loom_conn *c)
{
    struct tcp_priv *tp = c->priv;
    if (!tcp_ready(c, tp)) return false;
    return atomic_load(&c->fifo.ctrl->tail) != atomic_load(&c->fifo.ctrl->head);
}

const struct loom_transport loom_transport_tcp = {
    .name = "tcp",
    .can_connect = tcp_can_connect,
    .connect_send = tcp_connect_send,
    .connect_recv = tcp_connect_recv,
    .progress = tcp_progress,
    .poll_fd = tcp_poll_fd,
    .send_pending = tcp_send_pending,
    .close = tcp_close,
};
