/* shm.c: the shared-memory transport between processes on one host.
 * A directed link src -> dst is one POSIX shared-memory object,
 * "/loom-<comm tag>-<src>-<dst>", holding the FIFO and its lines for small slots
 * (layout in transport.h). Both sides open it with O_CREAT and size it, so neither
 * waits for the other; a zero FIFO is an empty FIFO. The second process to map it
 * unlinks the name, so nothing is left in /dev/shm once both sides are attached;
 * close() unlinks too, covering a peer that never came. No thread: executors read and
 * write the FIFO directly. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

#include "comm.h"
#include "log.h"

struct shm_priv {
    char name[64];
};

static bool shm_can_connect(const struct loom_peer_info *me, const struct loom_peer_info *peer)
{
    return me->host_id == peer->host_id;
}

/* Can this process read the peer's memory with process_vm_readv? Asked once per link
   by the receiver, which is the one that reads: the peer's copy of the comm secret must
   come back (EPERM under Yama ptrace_scope >= 1, seccomp or other users; a pid from
   another pid namespace reads something else or nothing). */
static bool probe_remote_read(struct loom_comm *comm, int peer)
{
    if (!comm->cfg.remote_read) return false;
    uint8_t got[16];
    struct iovec local = { got, sizeof got },
                 remote = { (void *)(uintptr_t)comm->peers[peer].probe_addr, sizeof got };
    ssize_t n = process_vm_readv(comm->peers[peer].pid, &local, 1, &remote, 1, 0);
    bool ok = n == (ssize_t)sizeof got && memcmp(got, comm->secret, sizeof got) == 0;
    LOOM_TRACE(LOOM_SUB_SHM, "reading rank %d's memory directly: %s", peer,
               ok ? "yes" : n < 0 ? strerror(errno) : "other contents");
    return ok;
}

static loom_result_t shm_open_link(struct loom_conn *c, char *err, size_t errlen)
{
    struct loom_comm *comm = c->comm;
    int src = c->is_send ? comm->rank : c->peer, dst = c->is_send ? c->peer : comm->rank;
    struct shm_priv *sp = calloc(1, sizeof *sp);
    if (sp == NULL) {
        snprintf(err, errlen, "out of memory");
        return LOOM_ERR_SYSTEM;
    }
    snprintf(sp->name, sizeof sp->name, "/loom-%s-%d-%d", comm->tag, src, dst);
    size_t data_end = fifo_map_bytes(comm->cfg.nslots, comm->cfg.slot_bytes);
    size_t bytes = data_end + FIFO_MAX_SLOTS * sizeof(struct fifo_line);
    int fd = shm_open(sp->name, O_CREAT | O_RDWR | O_CLOEXEC, 0600);
    if (fd < 0) goto fail;
    if (ftruncate(fd, (off_t)bytes) != 0) goto fail_close;
    void *mem = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0);
    if (mem == MAP_FAILED) goto fail_close;
    close(fd);
    c->fifo.ctrl = mem;
    c->fifo.data = (char *)mem + FIFO_DATA_OFFSET;
    c->fifo.lines = (struct fifo_line *)((char *)mem + data_end);
    c->fifo.nslots = comm->cfg.nslots;
    c->fifo.slot_bytes = comm->cfg.slot_bytes;
    c->fifo.map_bytes = bytes;
    c->priv = sp;
    if (atomic_fetch_add(&c->fifo.ctrl->attached, 1) == 1) shm_unlink(sp->name);
    if (!c->is_send) atomic_store(&c->fifo.ctrl->remote_read, probe_remote_read(comm, c->peer) ? 1 : 2);
    LOOM_TRACE(LOOM_SUB_SHM, "mapped %s (%zu bytes)", sp->name, bytes);
    return LOOM_SUCCESS;
fail_close:
    close(fd);
    shm_unlink(sp->name);
fail:
    snprintf(err, errlen, "shared memory %s (%zu bytes): %s", sp->name, bytes, strerror(errno));
    free(sp);
    return LOOM_ERR_SYSTEM;
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
    shm_unlink(sp->name);   /* ENOENT when the peer already did: fine */
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
