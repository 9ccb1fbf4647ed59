/* cuda_ipc.c: device FIFOs between ranks on one host (built only with CUDA).
 *
 * The receiver of a directed link src -> dst allocates the FIFO (every channel's) in
 * its device memory, zeroes it, and publishes it in a small POSIX shared-memory
 * record "/loom-<comm tag>-cu-<src>-<dst>"; the sender waits for the record (bounded
 * by the comm's timeout, and by the comm failing), maps the memory and unlinks the
 * name. Several ranks may share one GPU: IPC handles work between processes on the
 * same device. A sender in the receiver's own process (ranks as threads) uses the
 * address itself, since a process cannot open its own handle. Ranks on different
 * GPUs map each other's memory with peer access (cudaIpcMemLazyEnablePeerAccess);
 * where the GPUs cannot reach each other, opening fails with CUDA's reason.
 *
 * Record layout (offset/size):
 *  0    4    ready    0 while the receiver writes it, then 1 (release store)
 *  4    4    pid      the receiver's pid
 *  8    8    addr     the FIFO's device address in the receiver's process
 *  16   8    bytes    its size
 *  24   64   handle   cudaIpcMemHandle_t
 */
#include "cuda_ipc.h"

#include <cuda_runtime_api.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "comm.h"
#include "log.h"

struct ipc_record {
    _Atomic uint32_t ready;
    int32_t pid;
    uint64_t addr;
    uint64_t bytes;
    cudaIpcMemHandle_t handle;
};
_Static_assert(sizeof(struct ipc_record) == 88, "record layout");

static loom_result_t cerr(cudaError_t e, const char *what, char *err, size_t errlen)
{
    snprintf(err, errlen, "%s: %s", what, cudaGetErrorString(e));
    cudaGetLastError();
    return LOOM_ERR_CUDA;
}

static loom_result_t publish(struct loom_comm *c, struct cuda_link *l, cudaStream_t s, char *err, size_t errlen)
{
    cudaError_t e = cudaMalloc((void **)&l->fifo, l->bytes);
    if (e != cudaSuccess) return cerr(e, "cudaMalloc of the FIFO", err, errlen);
    l->owned = true;
    struct ipc_record rec = { .pid = (int32_t)getpid(), .addr = (uint64_t)(uintptr_t)l->fifo, .bytes = l->bytes };
    if ((e = cudaMemsetAsync(l->fifo, 0, l->bytes, s)) != cudaSuccess ||
        (e = cudaStreamSynchronize(s)) != cudaSuccess)
        return cerr(e, "zeroing the FIFO", err, errlen);
    if ((e = cudaIpcGetMemHandle(&rec.handle, l->fifo)) != cudaSuccess)
        return cerr(e, "cudaIpcGetMemHandle", err, errlen);
    int fd = shm_open(l->name, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0600);
    if (fd < 0) {
        snprintf(err, errlen, "shared memory %s: %s", l->name, strerror(errno));
        return LOOM_ERR_SYSTEM;
    }
    struct ipc_record *m = MAP_FAILED;
    if (ftruncate(fd, sizeof *m) == 0) m = mmap(NULL, sizeof *m, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (m == MAP_FAILED) {
        snprintf(err, errlen, "shared memory %s: %s", l->name, strerror(errno));
        shm_unlink(l->name);
        return LOOM_ERR_SYSTEM;
    }
    m->pid = rec.pid;
    m->addr = rec.addr;
    m->bytes = rec.bytes;
    m->handle = rec.handle;
    atomic_store_explicit(&m->ready, 1, memory_order_release);
    munmap(m, sizeof *m);
    (void)c;
    return LOOM_SUCCESS;
}

/* The record, once the receiver has written it whole; false: not yet. */
static bool read_record(const char *name, struct ipc_record *out)
{
    int fd = shm_open(name, O_RDONLY | O_CLOEXEC, 0);
    if (fd < 0) return false;
    struct stat st;
    bool ok = false;
    if (fstat(fd, &st) == 0 && st.st_size >= (off_t)sizeof *out) {   /* sized: safe to map */
        struct ipc_record *m = mmap(NULL, sizeof *m, PROT_READ, MAP_SHARED, fd, 0);
        if (m != MAP_FAILED) {
            if (atomic_load_explicit(&m->ready, memory_order_acquire) == 1) {
                memcpy(out, m, sizeof *out);
                ok = true;
            }
            munmap(m, sizeof *m);
        }
    }
    close(fd);
    return ok;
}

static loom_result_t import(struct loom_comm *c, struct cuda_link *l, char *err, size_t errlen)
{
    struct ipc_record rec;
    uint64_t deadline = net_deadline(c->cfg.timeout_ms);
    unsigned us = 20;
    while (!read_record(l->name, &rec)) {
        if (atomic_load(&c->status) != LOOM_SUCCESS) {
            snprintf(err, errlen, "the communicator failed while waiting for the peer's FIFO");
            return (loom_result_t)atomic_load(&c->status);
        }
        if (net_ms_left(deadline) == 0) {
            snprintf(err, errlen, "the peer did not publish its FIFO (%s) within %lld ms", l->name,
                     (long long)c->cfg.timeout_ms);
            return LOOM_ERR_TIMEOUT;
        }
        usleep(us);
        if (us < 2000) us *= 2;
    }
    shm_unlink(l->name);                       /* both sides are attached now */
    if (rec.bytes != l->bytes) {
        snprintf(err, errlen, "the peer's FIFO has %llu bytes, this rank expects %zu (different "
                 "LOOM_CUDA_* settings?)", (unsigned long long)rec.bytes, l->bytes);
        return LOOM_ERR_INVALID_USAGE;
    }
    if (rec.pid == (int32_t)getpid()) {        /* same process: the address itself */
        l->fifo = (char *)(uintptr_t)rec.addr;
        return LOOM_SUCCESS;
    }
    cudaError_t e = cudaIpcOpenMemHandle((void **)&l->fifo, rec.handle, cudaIpcMemLazyEnablePeerAccess);
    if (e != cudaSuccess) return cerr(e, "cudaIpcOpenMemHandle", err, errlen);
    l->imported = true;
    return LOOM_SUCCESS;
}

loom_result_t cuda_link_open(struct loom_comm *c, int peer, bool is_send, size_t bytes, void *stream,
                             struct cuda_link **out, char *err, size_t errlen)
{
    struct cuda_link *l = calloc(1, sizeof *l);
    if (l == NULL) {
        snprintf(err, errlen, "out of memory");
        return LOOM_ERR_SYSTEM;
    }
    const struct loom_peer_info *me = &c->peers[c->rank], *p = &c->peers[peer];
    if (me->host_id != p->host_id) {
        snprintf(err, errlen, "the peer is on another host (%s); device buffers across hosts are not "
                 "supported yet (they need tcp staging through pinned host memory)", p->host);
        free(l);
        return LOOM_ERR_INVALID_USAGE;
    }
    int src = is_send ? c->rank : peer, dst = is_send ? peer : c->rank;
    snprintf(l->name, sizeof l->name, "/loom-%s-cu-%d-%d", c->tag, src, dst);
    l->bytes = bytes;
    loom_result_t r = is_send ? import(c, l, err, errlen) : publish(c, l, (cudaStream_t)stream, err, errlen);
    if (r != LOOM_SUCCESS) {
        cuda_link_close(l);
        return r;
    }
    LOOM_INFO(LOOM_SUB_INIT, "cuda_ipc link %s rank %d connected (%zu bytes%s)", is_send ? "to" : "from", peer,
              bytes, l->imported ? ", mapped" : "");
    *out = l;
    return LOOM_SUCCESS;
}

void cuda_link_close(struct cuda_link *l)
{
    if (l == NULL) return;
    if (l->owned) {
        shm_unlink(l->name);                   /* a peer that never came */
        cudaFree(l->fifo);
    }
    if (l->imported) cudaIpcCloseMemHandle(l->fifo);
    cudaGetLastError();
    free(l);
}
