/* cuda_ipc.c: device FIFOs between ranks on one host (built only with CUDA).
 *
 * The receiver of a directed link src -> dst allocates the FIFO (every channel's) in
 * its device memory, zeroes it, and publishes it in a small POSIX shared-memory
 * record "/loom-<comm tag>-cu-<src>-<dst>" with its GPU's PCI bus id; it never waits
 * there. The sender waits for the record (bounded by the comm's timeout, and by the
 * comm failing) and decides where the FIFO lives, then answers in the record:
 *  - device: the receiver's FIFO, mapped with cudaIpcOpenMemHandle. Several ranks may
 *    share one GPU (IPC handles work between processes on one device); ranks on
 *    different GPUs map it with peer access. A sender in the receiver's own process
 *    (ranks as threads) uses the address itself: a process cannot open its own handle.
 *  - host: where the sender's GPU cannot reach the receiver's (no peer access, or the
 *    GPU is not visible to the sender), where mapping fails, or with
 *    LOOM_CUDA_FIFO=host: the sender creates the FIFO in POSIX shared memory
 *    "/loom-<tag>-cuh-<src>-<dst>" and both sides register it with CUDA as mapped
 *    pinned memory; both kernels reach it over PCIe (staging through host memory).
 * The receiver then reads the answer (cuda_link_finish), maps the host FIFO if that
 * was the choice and frees its device one. Opening every receive link first, then
 * every send link, then finishing the receive links never waits in a cycle.
 *
 * Peers on other hosts (or every peer, with LOOM_TRANSPORT=tcp) get a staged link
 * instead: the FIFO of a tcp connection of its own (comm_dev_conn), registered with
 * CUDA; the progress thread moves its slots over the socket (cuda_link_staged).
 *
 * Record layout (offset/size):
 *  0    4    ready    0 while the receiver writes it, then 1 (release store)
 *  4    4    pid      the receiver's pid
 *  8    8    addr     the FIFO's device address in the receiver's process
 *  16   8    bytes    its size
 *  24   64   handle   cudaIpcMemHandle_t
 *  88   16   bus      the receiver's GPU (cudaDeviceGetPCIBusId)
 *  104  4    answer   0, then ANSWER_DEVICE or ANSWER_HOST (the sender, release store)
 */
#include "cuda_ipc.h"

#include <cuda_runtime_api.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "comm.h"
#include "transport.h"
#include "env.h"
#include "log.h"

enum { ANSWER_DEVICE = 1, ANSWER_HOST = 2 };

struct ipc_record {
    _Atomic uint32_t ready;
    int32_t pid;
    uint64_t addr;
    uint64_t bytes;
    cudaIpcMemHandle_t handle;
    char bus[16];
    _Atomic uint32_t answer;
    uint32_t pad;
};
_Static_assert(sizeof(struct ipc_record) == 112, "record layout");

static loom_result_t cerr(cudaError_t e, const char *what, char *err, size_t errlen)
{
    snprintf(err, errlen, "%s: %s", what, cudaGetErrorString(e));
    cudaGetLastError();
    return LOOM_ERR_CUDA;
}

static loom_result_t serr(const char *name, char *err, size_t errlen)
{
    snprintf(err, errlen, "shared memory %s: %s", name, strerror(errno));
    return LOOM_ERR_SYSTEM;
}

static size_t page_round(size_t n)
{
    size_t pg = (size_t)sysconf(_SC_PAGESIZE);
    return (n + pg - 1) / pg * pg;
}

/* Map shared memory `name` (create: new and zeroed) read-write; NULL and err on failure. */
static void *map_shm(const char *name, size_t bytes, bool create, char *err, size_t errlen)
{
    int fd = shm_open(name, create ? O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC : O_RDWR | O_CLOEXEC, 0600);
    if (fd < 0) {
        serr(name, err, errlen);
        return NULL;
    }
    void *m = MAP_FAILED;
    /* allocated now, not on first touch: a full /dev/shm fails here, with a message */
    int e = create ? posix_fallocate(fd, 0, (off_t)bytes) : 0;
    if (e == 0) m = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    else errno = e;
    if (m == MAP_FAILED) serr(name, err, errlen);
    close(fd);
    if (m == MAP_FAILED && create) shm_unlink(name);
    return m == MAP_FAILED ? NULL : m;
}

/* Register l->host (bytes long) with CUDA as mapped pinned memory; l->fifo becomes its
   device address. what: the FIFO, for messages. */
static loom_result_t register_host(struct cuda_link *l, size_t bytes, const char *what, char *err, size_t errlen)
{
    char msg[96];
    cudaError_t e = cudaHostRegister(l->host, bytes, cudaHostRegisterMapped | cudaHostRegisterPortable);
    if (e != cudaSuccess) {
        snprintf(msg, sizeof msg, "cudaHostRegister of the %s", what);
        return cerr(e, msg, err, errlen);
    }
    l->registered = true;
    if ((e = cudaHostGetDevicePointer((void **)&l->fifo, l->host, 0)) != cudaSuccess) {
        snprintf(msg, sizeof msg, "cudaHostGetDevicePointer of the %s", what);
        return cerr(e, msg, err, errlen);
    }
    return LOOM_SUCCESS;
}

/* The host FIFO of l (hname): created zeroed by the sender, mapped by the receiver,
   registered with CUDA on both; l->fifo is its device address. */
static loom_result_t map_host_fifo(struct cuda_link *l, bool create, char *err, size_t errlen)
{
    l->host_bytes = page_round(l->bytes);
    l->host = map_shm(l->hname, l->host_bytes, create, err, errlen);
    if (l->host == NULL) return LOOM_ERR_SYSTEM;
    l->host_made = create;
    return register_host(l, l->host_bytes, "host FIFO", err, errlen);
}

static loom_result_t publish(struct loom_comm *c, struct cuda_link *l, cudaStream_t s, char *err, size_t errlen)
{
    cudaError_t e = cudaMalloc((void **)&l->fifo, l->bytes);
    if (e != cudaSuccess) return cerr(e, "cudaMalloc of the FIFO", err, errlen);
    l->owned = true;
    struct ipc_record rec = { .pid = (int32_t)getpid(), .addr = (uint64_t)(uintptr_t)l->fifo, .bytes = l->bytes };
    int dev = 0;
    if ((e = cudaMemsetAsync(l->fifo, 0, l->bytes, s)) != cudaSuccess ||
        (e = cudaStreamSynchronize(s)) != cudaSuccess)
        return cerr(e, "zeroing the FIFO", err, errlen);
    if ((e = cudaIpcGetMemHandle(&rec.handle, l->fifo)) != cudaSuccess)
        return cerr(e, "cudaIpcGetMemHandle", err, errlen);
    if ((e = cudaGetDevice(&dev)) != cudaSuccess || (e = cudaDeviceGetPCIBusId(rec.bus, sizeof rec.bus, dev)) != cudaSuccess)
        return cerr(e, "cudaDeviceGetPCIBusId", err, errlen);
    struct ipc_record *m = map_shm(l->name, sizeof *m, true, err, errlen);
    if (m == NULL) return LOOM_ERR_SYSTEM;
    m->pid = rec.pid;
    m->addr = rec.addr;
    m->bytes = rec.bytes;
    m->handle = rec.handle;
    memcpy(m->bus, rec.bus, sizeof m->bus);
    atomic_store_explicit(&m->ready, 1, memory_order_release);
    l->rec = m;                                /* until the sender's answer */
    l->pending = true;
    (void)c;
    return LOOM_SUCCESS;
}

/* The record, once the receiver has written it whole (mapped; NULL: not yet). */
static struct ipc_record *read_record(const char *name)
{
    int fd = shm_open(name, O_RDWR | O_CLOEXEC, 0);
    if (fd < 0) return NULL;
    struct stat st;
    struct ipc_record *m = MAP_FAILED;
    if (fstat(fd, &st) == 0 && st.st_size >= (off_t)sizeof *m)   /* sized: safe to map */
        m = mmap(NULL, sizeof *m, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (m == MAP_FAILED) return NULL;
    if (atomic_load_explicit(&m->ready, memory_order_acquire) == 1) return m;
    munmap(m, sizeof *m);
    return NULL;
}

/* Wait (bounded by the comm's timeout and its failing) until ready() says so. */
static loom_result_t wait_for(struct loom_comm *c, bool (*ready)(void *), void *arg, const char *what, char *err,
                              size_t errlen)
{
    uint64_t deadline = net_deadline(c->cfg.timeout_ms);
    unsigned us = 20;
    while (!ready(arg)) {
        if (atomic_load(&c->status) != LOOM_SUCCESS) {
            snprintf(err, errlen, "the communicator failed while waiting for %s", what);
            return (loom_result_t)atomic_load(&c->status);
        }
        if (net_ms_left(deadline) == 0) {
            snprintf(err, errlen, "no %s within %lld ms", what, (long long)c->cfg.timeout_ms);
            return LOOM_ERR_TIMEOUT;
        }
        usleep(us);
        if (us < 2000) us *= 2;
    }
    return LOOM_SUCCESS;
}

struct record_wait {
    const char *name;
    struct ipc_record *m;
};
static bool record_ready(void *arg)
{
    struct record_wait *w = arg;
    return (w->m = read_record(w->name)) != NULL;
}
static bool answer_ready(void *arg)
{
    return atomic_load_explicit(&((struct ipc_record *)arg)->answer, memory_order_acquire) != 0;
}

/* Can this process's current GPU reach the memory of the GPU at PCI bus id `bus`?
   enable: also turn peer access on (for memory of this process, which IPC's lazy
   flag does not cover). */
static bool reaches(const char *bus, bool enable)
{
    int mine = 0, peer = 0, can = 0;
    char my_bus[16] = "";
    if (cudaGetDevice(&mine) != cudaSuccess || cudaDeviceGetPCIBusId(my_bus, sizeof my_bus, mine) != cudaSuccess) {
        cudaGetLastError();
        return false;
    }
    if (strcasecmp(my_bus, bus) == 0) return true;              /* the same GPU */
    if (cudaDeviceGetByPCIBusId(&peer, bus) != cudaSuccess ||   /* not visible here */
        cudaDeviceCanAccessPeer(&can, mine, peer) != cudaSuccess) {
        cudaGetLastError();
        return false;
    }
    if (can && enable) {
        cudaError_t e = cudaDeviceEnablePeerAccess(peer, 0);
        cudaGetLastError();
        can = e == cudaSuccess || e == cudaErrorPeerAccessAlreadyEnabled;
    }
    return can != 0;
}

static loom_result_t import(struct loom_comm *c, struct cuda_link *l, char *err, size_t errlen)
{
    struct record_wait w = { .name = l->name };
    char what[96];
    snprintf(what, sizeof what, "FIFO from the peer (%s)", l->name);
    loom_result_t r = wait_for(c, record_ready, &w, what, err, errlen);
    if (r != LOOM_SUCCESS) return r;
    struct ipc_record *m = w.m;
    shm_unlink(l->name);                       /* both sides hold it mapped now */
    uint32_t answer = ANSWER_HOST;
    if (m->bytes != l->bytes) {
        snprintf(err, errlen, "the peer's FIFO has %llu bytes, this rank expects %zu (different "
                 "LOOM_CUDA_* settings?)", (unsigned long long)m->bytes, l->bytes);
        r = LOOM_ERR_INVALID_USAGE;
    } else if (strcmp(loom_env_str("LOOM_CUDA_FIFO"), "host") == 0) {
        LOOM_INFO(LOOM_SUB_INIT, "cuda link %s: pinned host FIFO (LOOM_CUDA_FIFO=host)", l->name);
    } else if (!reaches(m->bus, m->pid == (int32_t)getpid())) {
        LOOM_INFO(LOOM_SUB_INIT, "cuda link %s: this GPU cannot reach the peer's (%s); pinned host FIFO", l->name,
                  m->bus);
    } else if (m->pid == (int32_t)getpid()) {  /* same process: the address itself */
        l->fifo = (char *)(uintptr_t)m->addr;
        answer = ANSWER_DEVICE;
    } else {
        cudaError_t e = cudaIpcOpenMemHandle((void **)&l->fifo, m->handle, cudaIpcMemLazyEnablePeerAccess);
        if (e == cudaSuccess) {
            l->imported = true;
            answer = ANSWER_DEVICE;
        } else {
            LOOM_WARN(LOOM_SUB_INIT, "cuda link %s: cudaIpcOpenMemHandle: %s; using a pinned host FIFO instead",
                      l->name, cudaGetErrorString(e));
            cudaGetLastError();
        }
    }
    if (r == LOOM_SUCCESS && answer == ANSWER_HOST) r = map_host_fifo(l, true, err, errlen);
    /* a failed sender answers nothing: the receiver's wait ends with the comm's failure */
    if (r == LOOM_SUCCESS) atomic_store_explicit(&m->answer, answer, memory_order_release);
    munmap(m, sizeof *m);
    return r;
}

loom_result_t cuda_link_finish(struct loom_comm *c, struct cuda_link *l, char *err, size_t errlen)
{
    if (!l->pending) return LOOM_SUCCESS;
    char what[96];
    snprintf(what, sizeof what, "answer of the sender (%s)", l->name);
    loom_result_t r = wait_for(c, answer_ready, l->rec, what, err, errlen);
    if (r != LOOM_SUCCESS) return r;
    uint32_t answer = atomic_load_explicit(&l->rec->answer, memory_order_acquire);
    munmap(l->rec, sizeof *l->rec);
    l->rec = NULL;
    l->pending = false;
    if (answer == ANSWER_DEVICE) return LOOM_SUCCESS;
    cudaFree(l->fifo);                         /* the sender chose host memory */
    l->owned = false;
    l->fifo = NULL;
    r = map_host_fifo(l, false, err, errlen);
    shm_unlink(l->hname);                      /* both sides hold it mapped now */
    return r;
}

bool cuda_link_staged(const struct loom_comm *c, int peer)
{
    return c->cfg.force == 2 || c->peers[c->rank].host_id != c->peers[peer].host_id;
}

/* A staged link: the tcp FIFO of the comm's device link with peer, registered with
   CUDA as mapped pinned memory. The progress thread moves its slots to or from the
   socket; the kernel posts and releases them as it would on any FIFO. */
static loom_result_t open_staged(struct loom_comm *c, struct cuda_link *l, int peer, bool is_send, char *err,
                                 size_t errlen)
{
    loom_result_t r = comm_dev_conn(c, peer, is_send, &l->conn);
    if (r != LOOM_SUCCESS) {
        snprintf(err, errlen, "%s", loom_last_error(c));
        return r;
    }
    struct fifo *f = &l->conn->fifo;
    if (f->map_bytes != l->bytes) {
        snprintf(err, errlen, "the tcp FIFO has %zu bytes, the kernel wants %zu", f->map_bytes, l->bytes);
        return LOOM_ERR_INTERNAL;
    }
    l->host = (char *)f->ctrl;                 /* the conn's memory: tcp.c unmaps it */
    return register_host(l, f->map_bytes, "tcp FIFO", err, errlen);
}

loom_result_t cuda_link_open(struct loom_comm *c, int peer, bool is_send, size_t bytes, void *stream,
                             struct cuda_link **out, char *err, size_t errlen)
{
    struct cuda_link *l = calloc(1, sizeof *l);
    if (l == NULL) {
        snprintf(err, errlen, "out of memory");
        return LOOM_ERR_SYSTEM;
    }
    int src = is_send ? c->rank : peer, dst = is_send ? peer : c->rank;
    snprintf(l->name, sizeof l->name, "/loom-%s-cu-%d-%d", c->tag, src, dst);
    snprintf(l->hname, sizeof l->hname, "/loom-%s-cuh-%d-%d", c->tag, src, dst);
    l->bytes = bytes;
    loom_result_t r = cuda_link_staged(c, peer) ? open_staged(c, l, peer, is_send, err, errlen)
                    : is_send ? import(c, l, err, errlen) : publish(c, l, (cudaStream_t)stream, err, errlen);
    if (r != LOOM_SUCCESS) {
        cuda_link_close(l);
        return r;
    }
    LOOM_INFO(LOOM_SUB_INIT, "cuda link %s rank %d %s (%zu bytes%s)", is_send ? "to" : "from", peer,
              is_send || l->conn ? "connected" : "published", bytes,
              l->conn ? ", staged over tcp" : l->host ? ", pinned host memory" : l->imported ? ", mapped" : "");
    *out = l;
    return LOOM_SUCCESS;
}

void cuda_link_close(struct cuda_link *l)
{
    if (l == NULL) return;
    if (l->rec) munmap(l->rec, sizeof *l->rec);
    if (l->owned) {
        shm_unlink(l->name);                   /* a peer that never came */
        cudaFree(l->fifo);
    }
    if (l->imported) cudaIpcCloseMemHandle(l->fifo);
    if (l->registered) cudaHostUnregister(l->host);
    if (l->host && !l->conn) munmap(l->host, l->host_bytes);
    if (l->host_made) shm_unlink(l->hname);    /* a receiver that never came */
    cudaGetLastError();
    free(l);
}
