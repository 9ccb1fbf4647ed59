/* comm.h: the communicator, as runtime/ and algos/ see it. Fields are grouped by who
 * owns them; a field belongs to one of: set at init (read-only after), the
 * connection table (conn_lock), failure state (atomics + err_lock), issue order
 * (atomics; order_lock only to sleep). Not public: include/loom.h holds the API. */
#ifndef LOOM_COMM_H
#define LOOM_COMM_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include "loom.h"
#include "transport.h"

#define LOOM_MAX_RANKS 1024

/* Settings read once per communicator from the env table. */
struct loom_config {
    uint32_t nslots;        /* FIFO slots per link (power of two)              */
    size_t   slot_bytes;    /* bytes per slot (multiple of 64)                 */
    int64_t  timeout_ms;    /* deadline of every wait                          */
    int64_t  spin_ns;       /* spin before sleeping                            */
    bool     spin_yield;    /* yield the core at every turn of the spin        */
    int64_t  heartbeat_ms;  /* control heartbeat interval                      */
    int      force;         /* 0 auto, 1 shm, 2 tcp                            */
    int      algo;          /* enum algo: LOOM_ALGO (all-reduce, RS, AG)      */
    int      remote_read;   /* LOOM_CMA: may senders on this host hand over
                               addresses (process_vm_readv) instead of bytes?
                               0 never, 1 where it measures cheaper, 2 always */
};

struct loom_progress;
struct shm_made;

struct loom_comm {
    /* ---- set at init, read-only afterwards ---- */
    int rank, nranks;
    struct loom_peer_info *peers;   /* (nranks); peers[rank] is this process       */
    uint8_t key[32];                /* HMAC(id secret, session): every connection
                                       between ranks proves it holds this (gate.h) */
    char tag[17];                   /* 16 hex digits derived from key: names the
                                       device links' shm segments (cuda_ipc.c)     */
    struct loom_config cfg;
    int local_nranks;               /* ranks on this host (incl. me)               */
    int tcp_fd;                     /* listener for peers on other hosts (and tcp
                                       data links when forced), -1 if none need it  */
    int unix_fd;                    /* listener for peers on this host, -1 if none */
    _Atomic int *links_to;          /* (nranks) tcp data links I opened to peer r:
                                       my BYE tells r, so it waits for them all    */
    pthread_mutex_t shm_lock;       /* shm_made (transport/shm.c)                  */
    struct shm_made *shm_made;      /* (2 nranks) FIFOs this rank made for shm
                                       links with higher ranks                      */
    struct loom_progress *prog;

    /* ---- connections, created on first use (conn_lock) ---- */
    pthread_mutex_t conn_lock;
    struct loom_conn *_Atomic *send;   /* (2 nranks): [peer] host buffers, [nranks +  */
    struct loom_conn *_Atomic *recv;   /* peer] device buffers staged over tcp        */
    _Atomic int staged_calls;          /* device calls in flight over tcp-staged links:
                                          the progress thread polls, never sleeps     */

    /* ---- failure: status is LOOM_SUCCESS until the comm breaks ---- */
    _Atomic int status;
    _Atomic bool aborting;
    _Atomic bool *peer_gone;           /* (nranks) peer said BYE (orderly destroy)  */
    pthread_mutex_t err_lock;
    char err[768];                     /* detail of the last failure (err_lock)     */

    /* ---- issue order: calls run in the order they were issued, one at a time
       (runtime/enqueue.c). Lock-free while no call waits for its turn; order_lock and
       order_cv only put waiters to sleep and wake them. ---- */
    _Atomic uint64_t next_ticket;      /* tickets handed out                        */
    _Atomic uint64_t now_serving;      /* the ticket whose turn it is               */
    _Atomic uint64_t left;             /* tickets that left without their turn (the
                                          comm broke); a ticket is settled once it ran
                                          (now_serving passed it) or left             */
    _Atomic int order_waiters;         /* threads asleep on order_cv                */
    pthread_mutex_t order_lock;
    pthread_cond_t order_cv;
    uint32_t coll_seq;                 /* collectives run; checked against peers    */
    _Atomic uint64_t moved_ns;         /* last time a waiter left a shared CPU
                                          (algos/exec_host.c, exec_move_off_cpu)     */
    _Atomic uint32_t colocated_waits;  /* waits that found their peer on their CPU  */
    _Atomic uint32_t moves;            /* and moved away (the higher rank of two)    */
    _Atomic bool torn_down;            /* resources released (destroy/abort)        */

    _Atomic int refs;                  /* user handle + queued stream operations    */

    /* ---- device buffers: set by the first device call (runtime/cuda.c) ---- */
    struct cuda_comm *_Atomic cuda;
};

/* Every ticket handed out has run or left: no call of c is running or waiting. Reads
   next_ticket last: the counters only grow, so equality means settled at that moment. */
static inline bool issue_settled(struct loom_comm *c)
{
    uint64_t done = atomic_load(&c->now_serving) + atomic_load(&c->left);
    return done == atomic_load(&c->next_ticket);
}

/* ---- comm.c ---- */
/* LOOM_TIMEOUT_MS: the bound of every wait. */
int64_t comm_timeout_ms(void);
/* Every LOOM_* setting valid? (Else an error naming it, the value and what is
   allowed.) Unknown LOOM_* names are warned about once. */
loom_result_t comm_check_env(const char *call);
/* loom_get_id; local: the root listens on 127.0.0.1 (every rank on this host). */
loom_result_t comm_get_id(loom_id_t *id, bool local);
void comm_ref(struct loom_comm *c);
void comm_unref(struct loom_comm *c);
/* The connection to/from peer (dev: the staged device link), connecting it now if it
   is not yet. */
loom_result_t conn_connect(struct loom_comm *c, int peer, bool is_send, bool dev, struct loom_conn **out);
/* The connection to/from peer, connecting it on first use. Inline: every step of every
   call asks, and after the first time it is one load. */
static inline loom_result_t comm_conn(struct loom_comm *c, int peer, bool is_send, struct loom_conn **out)
{
    struct loom_conn *conn = atomic_load_explicit(&(is_send ? c->send : c->recv)[peer], memory_order_acquire);
    if (conn == NULL) return conn_connect(c, peer, is_send, false, out);
    *out = conn;
    return LOOM_SUCCESS;
}
/* The same for a device link staged through host memory over tcp (runtime/cuda.c):
   its own socket and FIFO, which a CUDA kernel fills or drains. */
loom_result_t comm_dev_conn(struct loom_comm *c, int peer, bool is_send, struct loom_conn **out);
/* ---- launch.c ---- */
struct sockaddr_un;
/* The abstract unix address rank 0 hands a one-host job's id over: named by this
   user's uid and the launch's key. */
socklen_t launch_id_sockaddr(const char *key, struct sockaddr_un *su);

/* "rank 3 (host pid 1234)" */
void comm_peer_name(const struct loom_comm *c, int peer, char *buf, size_t len);
/* The transport of the host-buffer link with peer (both ends pick the same). */
const struct loom_transport *comm_link_transport(const struct loom_comm *c, int peer);
/* Is rank r on this host (shared memory, unix sockets)? */
static inline bool comm_local(const struct loom_comm *c, int r) { return c->peers[r].host_id == c->peers[c->rank].host_id; }
/* Open a connection of kind (CONN_CTRL, CONN_DATA, CONN_DATA_DEV, gate.h) to peer and
   pass its gate, within the deadline. Control connections to peers on this host use
   their unix listener. A refused connection means the peer is gone (LOOM_ERR_REMOTE). */
loom_result_t comm_dial(struct loom_comm *c, int peer, uint32_t kind, uint64_t deadline_ns, int *fd,
                        char *err, size_t errlen);

/* ---- error.c ---- */
/* Break the communicator: the first failure wins and is logged; later calls return
   code. tell_peers broadcasts the reason so every rank stops waiting. */
void comm_fail(struct loom_comm *c, loom_result_t code, bool tell_peers, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Record the detail of a failed call that leaves the comm usable (bad argument).
   c may be NULL (thread-local detail). Returns code. */
loom_result_t loom_set_error(struct loom_comm *c, loom_result_t code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- progress.c: one thread per comm ---- */
loom_result_t progress_start(struct loom_comm *c, char *err, size_t errlen);
/* Wait until the control mesh to every peer is up. */
loom_result_t progress_wait_mesh(struct loom_comm *c, uint64_t deadline_ns, char *err, size_t errlen);
/* Make the thread look at the proxied connections now. */
void progress_kick(struct loom_progress *p);
/* A host call on a comm whose host links are all tcp: its executor moves them itself
   from begin to end (see progress.c). */
void progress_exec_begin(struct loom_progress *p);
void progress_exec_end(struct loom_progress *p);
/* The executor posted or freed a slot of a proxied link: writes a posted slot out now
   while the executor drives the link, else kicks the thread. */
void progress_conn_moved(struct loom_progress *p, struct loom_conn *conn);
/* The executor waits on a link it drives: move every host link's bytes and, if none
   moved, sleep until a socket is ready or timeout_ms pass. Callers re-check. */
void progress_drive(struct loom_progress *p, int timeout_ms);
/* Hand a tcp link to the thread. A receiving one gets its socket here if it came
   before the link was made. */
void progress_add_conn(struct loom_progress *p, struct loom_conn *conn);
/* shm links (transport/shm.c) between this rank and a peer on this host: hand the
   peer the memfd of the link whose sender is link_src (the thread sends it over the
   control socket and closes it), or take the one the peer hands over, asking for it
   first if it has not come (bounded by the deadline and by the comm's failure). */
void progress_fd_offer(struct loom_progress *p, int peer, int link_src, int fd);
loom_result_t progress_fd_take(struct loom_progress *p, int peer, int link_src, uint64_t deadline_ns, int *fd,
                               char *err, size_t errlen);
/* Ask the thread to send ABORT with the comm's error to every peer. */
void progress_tell_peers(struct loom_progress *p);
/* Append "rank 2 (host pid 9) silent for 3.1 s (stopped or hung?)" for each peer not
   heard from lately ("; " between them). */
void progress_silence_report(struct loom_progress *p, char *buf, size_t len);
/* Stop the thread. orderly: flush tcp sends and say BYE first (bounded). */
void progress_stop(struct loom_progress *p, bool orderly);

#endif
