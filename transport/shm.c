/* shm.c: the shared-memory transport between processes on one host.
 * A directed link src -> dst is one memfd holding the FIFO and its lines for small
 * slots (layout in transport.h). The lower rank of the pair makes it, whichever side
 * needs the link first, and hands the descriptor over their control connection, a
 * unix socket (runtime/progress.c); the higher rank maps what it is given, asking for
 * it if it needs the link first. The memory has no name: nothing is left in /dev/shm
 * however a process ends, and no other user can open or plant a FIFO. The lower rank
 * never waits for the other to make a link; the higher waits only on the lower's
 * progress thread, which answers whatever its executor does. No thread moves data:
 * executors read and write the FIFO directly.
 *
 * Dropped: named POSIX segments that both sides opened with O_CREAT (the second
 * unlinked the name): a process killed before its peer mapped the segment left it
 * behind, and another local user who guessed the name could map it first. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "comm.h"
#include "log.h"

/* A FIFO this rank made (the lower of the pair), kept until its link takes it. */
struct shm_made {
    bool made;
    void *mem;          /* NULL once a link took it (or if making it failed) */
};

struct shm_priv {
    size_t bytes;       /* mapped */
};

static bool shm_can_connect(const struct loom_peer_info *me, const struct loom_peer_info *peer)
{
    return me->host_id == peer->host_id;
}

/* Can this process read the peer's memory with process_vm_readv? Asked once per link
   by the receiver, which is the one that reads: the peer's copy of the comm key must
   come back (EPERM under Yama ptrace_scope >= 1, seccomp or other users; a pid from
   another pid namespace reads something else or nothing). */
static bool probe_remote_read(struct loom_comm *comm, int peer)
{
    if (!comm->cfg.remote_read) return false;
    uint8_t got[16];
    struct iovec local = { got, sizeof got },
                 remote = { (void *)(uintptr_t)comm->peers[peer].probe_addr, sizeof got };
    ssize_t n = process_vm_readv(comm->peers[peer].pid, &local, 1, &remote, 1, 0);
    bool ok = n == (ssize_t)sizeof got && memcmp(got, comm->key, sizeof got) == 0;
    LOOM_TRACE(LOOM_SUB_SHM, "reading rank %d's memory directly: %s", peer,
               ok ? "yes" : n < 0 ? strerror(errno) : "other contents");
    return ok;
}

static size_t link_bytes(const struct loom_comm *comm)
{
    return fifo_map_bytes(comm->cfg.nslots, comm->cfg.slot_bytes) + FIFO_MAX_SLOTS * sizeof(struct fifo_line);
}

/* The FIFO of the link with peer whose sender is link_src, made here once (memfd,
   mapped, offered to the peer); NULL and err if it cannot be. Under shm_lock. */
static struct shm_made *make_fifo(struct loom_comm *comm, int peer, int link_src, char *err, size_t errlen)
{
    if (comm->shm_made == NULL) {
        comm->shm_made = calloc(2 * (size_t)comm->nranks, sizeof *comm->shm_made);
        if (comm->shm_made == NULL) {
            snprintf(err, errlen, "out of memory");
            return NULL;
        }
    }
    struct shm_made *m = &comm->shm_made[2 * peer + (link_src == comm->rank ? 0 : 1)];
    if (m->made) return m;
    m->made = true;
    size_t bytes = link_bytes(comm);
    int fd = memfd_create("loom-fifo", MFD_CLOEXEC);
    if (fd < 0 || ftruncate(fd, (off_t)bytes) != 0) goto fail;
    m->mem = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0);
    if (m->mem == MAP_FAILED) {
        m->mem = NULL;
        goto fail;
    }
    progress_fd_offer(comm->prog, peer, link_src, fd);
    LOOM_TRACE(LOOM_SUB_SHM, "made the FIFO of link %d -> %d (%zu bytes)", link_src,
               link_src == comm->rank ? peer : comm->rank, bytes);
    return m;
fail:
    snprintf(err, errlen, "shared memory of %zu bytes (memfd): %s", bytes, strerror(errno));
    if (fd >= 0) close(fd);
    return NULL;
}

void shm_offer(struct loom_comm *comm, int peer, int link_src)
{
    char err[256];
    pthread_mutex_lock(&comm->shm_lock);
    struct shm_made *m = make_fifo(comm, peer, link_src, err, sizeof err);
    pthread_mutex_unlock(&comm->shm_lock);
    if (m == NULL) {
        char name[128];
        comm_peer_name(comm, peer, name, sizeof name);
        comm_fail(comm, LOOM_ERR_SYSTEM, true, "the shm link with %s: %s", name, err);
    }
}

void shm_release(struct loom_comm *comm)
{
    for (int i = 0; comm->shm_made && i < 2 * comm->nranks; i++)
        if (comm->shm_made[i].mem) munmap(comm->shm_made[i].mem, link_bytes(comm));
    free(comm->shm_made);
    comm->shm_made = NULL;
}

/* The FIFO's memory: made here (lower rank) or handed over by the peer. */
static void *link_memory(struct loom_conn *c, size_t bytes, char *err, size_t errlen)
{
    struct loom_comm *comm = c->comm;
    int link_src = c->is_send ? comm->rank : c->peer;
    void *mem = NULL;
    if (comm->rank < c->peer) {
        pthread_mutex_lock(&comm->shm_lock);
        struct shm_made *m = make_fifo(comm, c->peer, link_src, err, errlen);
        if (m && m->mem == NULL) snprintf(err, errlen, "the FIFO could not be made");
        if (m) mem = m->mem;
        if (m) m->mem = NULL;                      /* the link's now */
        pthread_mutex_unlock(&comm->shm_lock);
        return mem;
    }
    int fd;
    loom_result_t r = progress_fd_take(comm->prog, c->peer, link_src, net_deadline(comm->cfg.timeout_ms), &fd,
                                       err, errlen);
    if (r != LOOM_SUCCESS) return NULL;
    struct stat st = { 0 };
    if (fstat(fd, &st) != 0 || st.st_size != (off_t)bytes)
        snprintf(err, errlen, "the peer's FIFO has %lld bytes, not %zu", (long long)st.st_size, bytes);
    else if ((mem = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0)) == MAP_FAILED)
        snprintf(err, errlen, "mapping the peer's FIFO (%zu bytes): %s", bytes, strerror(errno));
    close(fd);
    return mem == MAP_FAILED ? NULL : mem;
}

static loom_result_t shm_open_link(struct loom_conn *c, char *err, size_t errlen)
{
    struct loom_comm *comm = c->comm;
    struct shm_priv *sp = calloc(1, sizeof *sp);
    if (sp == NULL) {
        snprintf(err, errlen, "out of memory");
        return LOOM_ERR_SYSTEM;
    }
    size_t data_end = fifo_map_bytes(comm->cfg.nslots, comm->cfg.slot_bytes);
    sp->bytes = link_bytes(comm);
    void *mem = link_memory(c, sp->bytes, err, errlen);
    if (mem == NULL) {
        free(sp);
        return atomic_load(&comm->status) != LOOM_SUCCESS ? (loom_result_t)atomic_load(&comm->status)
                                                          : LOOM_ERR_SYSTEM;
    }
    c->fifo.ctrl = mem;
    c->fifo.data = (char *)mem + FIFO_DATA_OFFSET;
    c->fifo.lines = (struct fifo_line *)((char *)mem + data_end);
    c->fifo.nslots = comm->cfg.nslots;
    c->fifo.slot_bytes = comm->cfg.slot_bytes;
    c->fifo.map_bytes = sp->bytes;
    c->priv = sp;
    if (!c->is_send) atomic_store(&c->fifo.ctrl->remote_read, probe_remote_read(comm, c->peer) ? 1 : 2);
    return LOOM_SUCCESS;
}

static void shm_close(struct loom_conn *c)
{
    struct shm_priv *sp = c->priv;
    if (sp == NULL) return;
    for (int k = 0; k < COST_CLASSES && c->is_send && c->fifo.ctrl; k++)   /* algos/exec_host.c */
        if (c->way_calls[k][0] + c->way_calls[k][1])
            LOOM_TRACE(LOOM_SUB_SHM, "2-rank all-gathers of %u KiB per rank and up to rank %d: %u through the FIFO "
                       "(%u ns/MiB), %u by address (%u ns/MiB)", 32u << k, c->peer, c->way_calls[k][0],
                       atomic_load(&c->fifo.ctrl->call_cost[k][0]), c->way_calls[k][1],
                       atomic_load(&c->fifo.ctrl->call_cost[k][1]));
    if (c->fifo.ctrl) munmap(c->fifo.ctrl, c->fifo.map_bytes);
    free(sp);
    c->priv = NULL;
}

const struct loom_transport loom_transport_shm = {
    .name = "shm",
    .can_connect = shm_can_connect,
    .connect_send = shm_open_link,
    .connect_recv = shm_open_link,
    .progress = NULL,
    .poll_fd = NULL,
    .send_pending = NULL,
    .close = shm_close,
};
