/* transport.h: the only transport header algos/ and runtime/ include.
 *
 * Connector model: each directed link (src -> dst) owns a FIFO of K slots in memory
 * the receiver can read, plus head and tail counters. The sender fills the slot at
 * tail and advances tail; the receiver reads the slot at head (reducing straight out
 * of it) and advances head. shm puts the FIFO in shared memory (a memfd) mapped by both
 * processes, so executors on both sides touch it directly and no thread is needed.
 * tcp keeps one private FIFO per side; the progress thread moves slots between that
 * FIFO and the socket (or the executor, during a call on an all-tcp comm), so the
 * executor code is the same for both.
 *
 * Shared FIFO layout (struct fifo_ctrl then the slots; offset/size in bytes):
 *  offset      size       field
 *  0           4          tail         slots posted by the sender (wrapping u32)
 *  4           4          rx_sleepers  receivers asleep on tail (futex)
 *  8           4          tx_cpu       shm: 1 + the CPU the sender last posted on
 *  128         4          head         slots consumed by the receiver (wrapping u32)
 *  132         4          tx_sleepers  senders asleep on head (futex)
 *  136         4          rx_cpu       shm: 1 + the CPU the receiver last released on
 *  256         4          reserved     0
 *  260         4          remote_read  shm: can the receiver read the sender's memory
 *                                      (process_vm_readv)? 0 not known yet, 1 yes, 2 no
 *  320         24*64      meta[64]     per slot: bytes, and the operation it belongs to
 *                                      (tcp; on shm the meta travels in the lines)
 *  1856        4*2*12     call_cost    shm, a 2-rank all-gather (algos/exec_host.c,
 *                                      "single copy"): what the sender's recent calls
 *                                      took, by size class and way
 *  1952        8          way          on the lower rank's link: the way both take in
 *                                      call number seq, seq << 1 | way
 *  4096        K*S        slot data    slot i at 4096 + i*S, S = slot_bytes
 *  4096+K*S    1024*64    lines[64]    shm only: struct fifo_line, small slots inline
 * head and tail sit on different 128-byte lines (a GPU's L2 line; the device FIFOs
 * share this control block) so the two sides never write one line.
 *
 * On shm every slot is announced in its line: the sender writes the meta into slot i's
 * line and then the post number (this link's posts counted from 1, 64 bits, so it never
 * repeats) with a release store, then tail as usual. Small slots (up to FIFO_LINE_DATA
 * bytes) carry their payload in the line too; larger ones in the data area, written
 * before the post. The receiver polls only the line, never tail: one cache line crosses
 * cores per small slot, where polling tail as well made tail's line bounce between the
 * sender's store and the receiver's reads at every slot (2 ranks pinned to two CPUs,
 * 10 alternating rounds, medians: broadcast of 8 B 0.110 -> 0.100 us, 32 B 0.110 ->
 * 0.090). Tail still moves for every slot, for sleepers (futex on tail) and the tcp
 * FIFOs, which have no lines. An inline slot needs no data slot, so with lines up to
 * FIFO_MAX_SLOTS slots may be in flight (lines[] indexed modulo that) while
 * data slots, indexed modulo K, still wait for head to be less than K behind: a stream
 * of small calls runs 64 deep without the data area growing (4 ranks on 2 cores,
 * broadcast of 8-512 B: 0.9 -> 0.3 us a call).
 *
 * A slot can also carry no payload but where it is: kind has SLOT_REMOTE and the line
 * holds a struct slot_remote; the receiver copies the bytes straight out of the
 * sender's buffer with process_vm_readv (one copy instead of two, shm only, when the
 * receiver said remote_read = 1), and the sender keeps that buffer unchanged until
 * head has passed the slot (algos/exec_host.c decides when, from call_cost).
 */
#ifndef LOOM_TRANSPORT_H
#define LOOM_TRANSPORT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "loom.h"
#include "net.h"

#define FIFO_MAX_SLOTS 64
#define FIFO_DATA_OFFSET 4096
/* Size classes of the single-copy choice: a call's bytes per rank, 32 KiB << class,
   the last one open-ended (algos/exec_host.c). */
#define COST_CLASSES 12

/* What a slot belongs to: lets the receiver detect a peer that called a different
   collective, count, dtype, op or root (a user error NCCL would hang on). */
struct slot_meta {
    uint32_t bytes;     /* payload bytes in this slot                     */
    uint32_t kind;      /* coll << 16 | dtype << 8 | op                   */
    uint64_t count;     /* the call's count argument                      */
    uint32_t seq;       /* collective number on this comm (0 for p2p)     */
    int32_t  root;      /* root or -1                                     */
};

/* kind flag of a slot whose payload stays in the sender's memory */
#define SLOT_REMOTE 0x80000000u
struct slot_remote {
    uint64_t addr;      /* in the sender's address space */
    int32_t  pid;       /* the sender                   */
};

struct fifo_ctrl {
    _Atomic uint32_t tail;
    _Atomic uint32_t rx_sleepers;
    _Atomic int32_t tx_cpu;
    char pad0[116];
    _Atomic uint32_t head;
    _Atomic uint32_t tx_sleepers;
    _Atomic int32_t rx_cpu;
    char pad1[116];
    uint32_t reserved;
    _Atomic uint32_t remote_read;
    char pad2[56];
    struct slot_meta meta[FIFO_MAX_SLOTS];
    /* The single-copy choice, written by the sender, read by both ranks: its calls'
       cost, ns per MiB of its block, the lesser of the last two, [size class][way] (way
       0 through the FIFO, 1 by address), 0 = not measured yet; and the way of the
       current call (the first of the two ranks to choose writes it). */
    _Atomic uint32_t call_cost[COST_CLASSES][2];
    _Atomic uint64_t way;
};
_Static_assert(sizeof(struct fifo_ctrl) <= FIFO_DATA_OFFSET, "FIFO header too large");
_Static_assert(offsetof(struct fifo_ctrl, call_cost) == 1856 && offsetof(struct fifo_ctrl, way) == 1952,
               "FIFO header layout (the table above)");

/* A small slot sent inline (shm): post number, meta and payload, first line first.
   1 KiB: 2-rank 256 B-1 KiB calls also gain from it (all-gather of 512 B 0.23 -> 0.20
   us, all-reduce of 256 B 0.27 -> 0.24, against 256-byte lines; from 2 KiB the same). */
#define FIFO_LINE_BYTES 1024
#define FIFO_LINE_DATA (FIFO_LINE_BYTES - 32)
struct fifo_line {
    _Alignas(64) _Atomic uint64_t post;   /* the link's post number, from 1     */
    struct slot_meta meta;
    char data[FIFO_LINE_DATA];            /* 32 bytes share the first line      */
};
_Static_assert(sizeof(struct fifo_line) == FIFO_LINE_BYTES, "fifo_line layout");

/* One side's view of a FIFO. */
struct fifo {
    struct fifo_ctrl *ctrl;
    char     *data;        /* ctrl + FIFO_DATA_OFFSET                         */
    struct fifo_line *lines; /* shm: data + K*S, FIFO_MAX_SLOTS of them; else NULL */
    uint32_t  nslots;      /* K, power of two <= FIFO_MAX_SLOTS               */
    size_t    slot_bytes;  /* S, multiple of 64                               */
    size_t    map_bytes;   /* FIFO_DATA_OFFSET + K*S (+ the lines on shm)     */
    uint32_t  head_seen;   /* sender: the head it last read (see fifo_send_slot) */
    uint64_t  posts;       /* shm: this side's slots posted (sender) or released
                              (receiver) so far, the lines' post numbers. Not
                              counted on tcp FIFOs, which have no lines: there
                              one thread posts and another releases            */
};

size_t fifo_map_bytes(uint32_t nslots, size_t slot_bytes);

/* Does a slot of n payload bytes go inline (in its line) on this FIFO? */
static inline bool fifo_inline(const struct fifo *f, size_t n) { return f->lines && n <= FIFO_LINE_DATA; }
/* Slots in flight at most, and the modulus of meta[] and lines[] (see the top). */
static inline uint32_t fifo_depth(const struct fifo *f) { return f->lines ? FIFO_MAX_SLOTS : f->nslots; }

/* Sender: where to write the next slot of n payload bytes if one is free, else NULL
   (its line when it goes inline, else the data slot at tail). The receiver's head is
   read (acquire) only when the one last seen says the FIFO is full: the head's cache
   line stays with the receiver instead of crossing cores on every slot. A head seen is
   never ahead of the real one, and the acquire that saw it ordered the receiver's
   reads of every slot before it. One sender thread at a time per FIFO. */
static inline char *fifo_send_slot(struct fifo *f, size_t n)
{
    uint32_t t = atomic_load_explicit(&f->ctrl->tail, memory_order_relaxed);
    bool in_line = fifo_inline(f, n);
    uint32_t room = in_line ? fifo_depth(f) : f->nslots;
    if (t - f->head_seen >= room) {
        f->head_seen = atomic_load_explicit(&f->ctrl->head, memory_order_acquire);
        if (t - f->head_seen >= room) return NULL;
    }
    if (in_line) return f->lines[t & (fifo_depth(f) - 1)].data;
    return f->data + (size_t)(t & (f->nslots - 1)) * f->slot_bytes;
}
/* Sender: publish the slot returned by fifo_send_slot with its meta (m->bytes is the
   n given there, or sizeof(struct slot_remote) was and kind has SLOT_REMOTE). */
void fifo_post(struct fifo *f, const struct slot_meta *m);

/* Does a slot with this meta carry its payload in its line? (Both sides decide alike.) */
static inline bool fifo_meta_inline(const struct fifo *f, const struct slot_meta *m)
{
    return fifo_inline(f, m->kind & SLOT_REMOTE ? sizeof(struct slot_remote) : m->bytes);
}

/* Receiver: the slot at head if one is full (its meta in *m), else NULL. With lines the
   slot is there once its line has the next post number (its acquire orders the meta and
   the payload, inline or not, before it); head can then be one ahead of tail, whose
   store may not have landed yet. Without lines (tcp), tail says it. */
static inline char *fifo_recv_slot(struct fifo *f, struct slot_meta *m)
{
    uint32_t h = atomic_load_explicit(&f->ctrl->head, memory_order_relaxed);
    uint32_t i = h & (fifo_depth(f) - 1);
    if (f->lines) {
        struct fifo_line *l = &f->lines[i];
        if (atomic_load_explicit(&l->post, memory_order_acquire) != f->posts + 1) return NULL;
        *m = l->meta;
        if (fifo_meta_inline(f, m)) return l->data;
    } else {
        uint32_t t = atomic_load_explicit(&f->ctrl->tail, memory_order_acquire);
        if ((int32_t)(t - h) <= 0) return NULL;
        *m = f->ctrl->meta[i];
    }
    return f->data + (size_t)(h & (f->nslots - 1)) * f->slot_bytes;
}
/* Receiver: the data slot at head, which it may write until it releases the slot
   (where a remote slot's bytes land when they cannot go straight to the output). */
static inline char *fifo_recv_data(struct fifo *f)
{
    uint32_t h = atomic_load_explicit(&f->ctrl->head, memory_order_relaxed);
    return f->data + (size_t)(h & (f->nslots - 1)) * f->slot_bytes;
}
/* Receiver: hand the slot back to the sender. */
void fifo_release(struct fifo *f);

/* Sleep until the counter (tail for a receiver, head for a sender) differs from
   seen, or timeout_us passes. Spurious returns are allowed; callers re-check. */
void fifo_sleep(struct fifo *f, bool on_tail, uint32_t seen, int64_t timeout_us);

/* ---- peers and connections ---- */

struct loom_peer_info {          /* sent verbatim during bootstrap */
    char     host[64];           /* hostname, for messages                        */
    uint64_t host_id;            /* equal = same host (hostname, boot id, netns)  */
    int32_t  pid;
    int32_t  rank;
    struct loom_addr addr;       /* this rank's tcp listener (peers on other hosts,
                                    and tcp data links when forced)               */
    struct loom_addr uaddr;      /* its unix listener (control from this host)    */
    uint32_t nslots;             /* FIFO geometry wanted (rank 0's is used)      */
    uint32_t slot_bytes;
    uint32_t cuda_nchan;         /* device FIFO geometry wanted (rank 0's too)   */
    uint32_t cuda_nslots;
    uint32_t cuda_slot_bytes;
    int32_t  cuda_proto;         /* LOOM_PROTO: -1 by size, else PROTO_* (rank 0's) */
    int32_t  transport;          /* LOOM_TRANSPORT: 0 auto, 1 shm, 2 tcp (rank 0's) */
    uint64_t probe_addr;         /* where this process keeps the comm's key: a
                                    receiver on this host that can read it there with
                                    process_vm_readv can read this rank's buffers    */
};

struct loom_comm;
struct loom_transport;

/* One direction of one peer link, as the executor sees it. */
struct loom_conn {
    struct fifo fifo;
    int peer;
    bool is_send;
    bool proxied;                 /* progress thread drives it (tcp)             */
    bool dev;                     /* a CUDA kernel fills or drains the FIFO (tcp
                                     staging of device buffers, runtime/cuda.c)  */
    _Atomic bool eof;             /* no more data will arrive (tcp: peer closed)  */
    _Atomic bool attached;        /* tcp: a socket carries this link              */
    /* shm, the single-copy choice (algos/exec_host.c), on a sending link: the last two
       costs of this rank's calls, ns per MiB, [class][way][older, newer] (the lesser is
       published in call_cost) and the last call's way. On both: the calls whose block
       went (sending) or came (receiving) each way; on a sending link their sum is the
       number of the class's next call, which remote_choose's schedule counts. */
    uint32_t cost[COST_CLASSES][2][2];
    uint32_t way_calls[COST_CLASSES][2];
    int8_t last_way[COST_CLASSES];      /* sending: the way of the class's last call,
                                           -1 none yet (set where the link is made) */
    const struct loom_transport *tp;
    struct loom_comm *comm;
    void *priv;                   /* transport state                              */
};

/* The vtable. Slots carry their contract; use the wrappers below. */
struct loom_transport {
    const char *name;   /* "shm", "tcp" */
    /* Can this transport join me and peer? */
    bool (*can_connect)(const struct loom_peer_info *me, const struct loom_peer_info *peer);
    /* Set up one direction: map/allocate the FIFO and reach the peer. Bounded by the
       comm's timeout; on error the message is in err and nothing is left behind. */
    loom_result_t (*connect_send)(struct loom_conn *c, char *err, size_t errlen);
    loom_result_t (*connect_recv)(struct loom_conn *c, char *err, size_t errlen);
    /* Progress thread, or an executor driving the link (runtime/progress.c), one at a
       time under the progress lock: move bytes between the FIFO and the wire without
       blocking. Sets *did when something moved. NULL for shm. */
    loom_result_t (*progress)(struct loom_conn *c, bool *did, char *err, size_t errlen);
    /* Same callers: the fd to poll and the events (0: nothing to wait for). */
    int (*poll_fd)(struct loom_conn *c, short *events);
    /* Same callers: true while sent slots are not yet on the wire. */
    bool (*send_pending)(struct loom_conn *c);
    /* Release everything. Cannot fail; logs problems. */
    void (*close)(struct loom_conn *c);
};

extern const struct loom_transport loom_transport_shm;
extern const struct loom_transport loom_transport_tcp;

/* shm.c, for the progress thread: a peer on this host asks for the memory of the shm
   link whose sender is link_src, which this rank makes (the lower rank of a pair). */
void shm_offer(struct loom_comm *comm, int peer, int link_src);
/* shm.c: unmap what was made and never used (comm teardown). */
void shm_release(struct loom_comm *comm);

/* tcp.c: the link's private FIFO (nslots x slot_bytes), no socket yet; the tcp vtable's
   progress, poll_fd, send_pending and close work on it once tcp_attach gave it one. */
loom_result_t tcp_link_init(struct loom_conn *c, uint32_t nslots, size_t slot_bytes, char *err, size_t errlen);
/* tcp.c, for the progress thread: does a receiving tcp link have its socket, and hand
   it the accepted, authenticated one. */
bool tcp_attached(const struct loom_conn *c);
void tcp_attach(struct loom_conn *c, int fd);

#endif
