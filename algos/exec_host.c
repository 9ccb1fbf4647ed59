/* exec_host.c: the host executor. Runs a schedule's steps on host memory, moving
 * data through each link's FIFO one slot at a time, reducing straight out of the
 * received slot into the next send slot (no staging copy).
 *
 * Every wait spins a short while, then sleeps on the FIFO counter's futex in slices
 * of at most 10 ms, re-checking between slices: the comm's status (a peer died, an
 * abort), the peer having left, and the wait's deadline: LOOM_TIMEOUT_MS bounds how
 * long a wait may go without its link moving, not a whole call, so a slow but moving
 * link (10 Mbit/s, a big call) never times out while a silent one does.
 * Not here: which steps to run (schedule.c), sockets (runtime/progress.c, which this
 * executor calls to move its tcp links' bytes while it waits on a comm whose host links
 * are all tcp).
 */
#include "exec.h"

#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "log.h"
#include "reduce.h"

#define SLEEP_SLICE_US 10000
/* Single copy on shm: a 2-rank all-gather of at least this many bytes per rank may hand
   over the address of its block instead of copying it into the FIFO, and the peer copies
   straight from this rank's buffer into its output with process_vm_readv (what Open
   MPI's vader does above 4 KiB). Which way is cheaper is not fixed on a VM: with the two
   vCPUs on near cores the FIFO's pipelined copies win from 128 KiB per rank (512 KiB
   all-gather 23-25 us against 34-37), with them far apart (a cache line's round trip
   300-400 ns instead of 55) copying into slots the other core just read slows 14x and
   the FIFO's calls 4-6x (512 KiB 123-158 us), the single copy's mostly not (35-40 us
   in 3 of 4 such episodes; bench/RESULTS.md, 2026-12-02). So the two ranks choose per
   call, alike, from what their recent calls took each way (remote_choose). Below 32
   KiB every slot's piece would cost a system call of its own and the FIFO measured
   faster. Not for broadcast: there the root only waits while the receiver copies
   alone, and it measured no better. */
#define REMOTE_MIN_BYTES (32u << 10)
/* One eligible call in this many tries the way that measured dearer (costs change). */
#define REMOTE_EXPLORE 32
/* Output bytes (this rank's whole receive buffer) from which outputs stream. 8 MiB, not
   1: below it the output still fits this machine's L3 beside the FIFOs, and cached
   stores win (2-rank broadcast of 2 MiB: 7.1-8.0 GB/s streaming, 13.6-16.0 cached, 3
   alternating runs); 16 MiB and up keep streaming (bench/RESULTS.md, issue 2). An
   all-gather's or all-to-all's output is nranks blocks: counting one block (as before
   2026-12-02) kept an 8 MiB all-gather cached and measured slower (4 ranks, 8 rounds:
   8 MiB 2518 -> 2201 us, 16 MiB 5021 -> 4153; 2 ranks pinned, 8 rounds: 8 MiB 1588 ->
   960). */
#define STREAM_OUT_BYTES (8u << 20)

struct exec {
    struct loom_comm *c;
    const struct loom_op *op;
    uint64_t deadline;         /* of the wait in progress: set when it first sleeps,
                                  cleared when it gets its slot                    */
    struct slot_meta meta;     /* what this operation's slots carry */
    bool stream_out;           /* output too big to stay cached: bypass the cache */
    int cost_class;            /* single copy: the call's size class, -1 when it is
                                  not a candidate (REMOTE_MIN_BYTES)                 */
    int way;                   /* how this call sends its blocks: -1 not chosen yet,
                                  0 through the FIFO, 1 by address                 */
    struct loom_conn *way_conn;      /* the link it chose for (its costs are kept there) */
    struct loom_conn *got_conn;      /* where the peer's block came from, and how:    */
    unsigned got;                    /* bit 0 through the FIFO, bit 1 by address      */
    uint64_t start_ns;               /* when the call began, for its cost             */
    bool drive;                /* every host link is tcp and this thread moves their
                                  bytes itself (runtime/progress.c)                 */
    struct loom_conn *remote_conn;   /* where they went, and the tail after the     */
    uint32_t remote_until;           /* last: the call ends once head reaches it    */
};

/* Final data into the user's output. For large outputs, non-temporal stores: no
   read-for-ownership of the destination and no eviction of the FIFO slots, which
   measured 2x on 16 MiB 2-rank all-reduce (bench/RESULTS.md). Small outputs stay in
   cache, where the caller will read them. */
static void out_copy(const struct exec *x, void *dst, const void *src, size_t n)
{
    if (x->stream_out) copy_stream(dst, src, n);
    else memcpy(dst, src, n);
}

/* A polite spin: tells the core (and an SMT sibling) that this thread is waiting. */
#if defined(__x86_64__) || defined(__i386__)
static inline void cpu_relax(void) { __builtin_ia32_pause(); }
#elif defined(__aarch64__)
static inline void cpu_relax(void) { __asm__ __volatile__("yield"); }
#else
static inline void cpu_relax(void) {}
#endif

/* ---- waiting ---- */

/* The spin phase of every wait: up to cfg.spin_ns (none when 0), reading the clock
   only every 64 turns (it costs as much as the hand-off it waits for) and yielding
   every 256 so other load sharing this core can run, or at every turn when local ranks
   outnumber cores (cfg.spin_yield: the peer waited for may need this very core).
   Never on a proxied (tcp) link: what ends that wait is a socket wake-up of tens of
   microseconds, taken by this process's progress thread or by the executor itself
   (wait_link), and a spinning executor competes with that thread and the kernel's
   network work for a core. Measured on 4 netns hosts at 4 Gbit/s:
   16-64 MiB all-reduce busbw 0.38-0.45 GB/s spinning, 0.46-0.48 not (3 rounds each). */
struct spin {
    uint64_t end;
    unsigned turn;
    bool on, yield_all;
    _Atomic int32_t *peer_cpu;   /* where the awaited side notes its CPU (fifo.c) */
    int peer;                    /* the rank it waits for                         */
};

static struct spin spin_start(const struct exec *x, bool proxied)
{
    return (struct spin){ .on = x->c->cfg.spin_ns > 0 && !proxied, .yield_all = x->c->cfg.spin_yield };
}

/* The wait is on conn: watch where the side it waits for notes its CPU (the receiver
   for a sender waiting for room, the sender for a receiver waiting for a slot). */
static void spin_on(struct spin *sp, const struct loom_conn *conn, bool sending)
{
    sp->peer_cpu = sending ? &conn->fifo.ctrl->rx_cpu : &conn->fifo.ctrl->tx_cpu;
    sp->peer = conn->peer;
}

int exec_move_off_cpu(struct loom_comm *c, int cpu, uint64_t now)
{
    uint64_t last = atomic_load_explicit(&c->moved_ns, memory_order_relaxed);
    if (now - last < 10000000u ||
        !atomic_compare_exchange_strong_explicit(&c->moved_ns, &last, now, memory_order_relaxed,
                                                 memory_order_relaxed))
        return -1;
    cpu_set_t mask, one;
    if (cpu < 0 || sched_getaffinity(0, sizeof mask, &mask) != 0 || CPU_COUNT(&mask) < 2) return -1;
    CPU_ZERO(&one);
    int to = -1;
    for (int i = 1; i < CPU_SETSIZE && to < 0; i++)
        if (CPU_ISSET((cpu + i) % CPU_SETSIZE, &mask)) to = (cpu + i) % CPU_SETSIZE;
    CPU_SET(to, &one);
    if (sched_setaffinity(0, sizeof one, &one) != 0) return -1;
    int landed = sched_getcpu();         /* the move is done when the call returns */
    sched_setaffinity(0, sizeof mask, &mask);
    atomic_fetch_add_explicit(&c->moves, 1, memory_order_relaxed);
    LOOM_TRACE(LOOM_SUB_COLL, "sharing CPU %d with the rank it waits for: moved to CPU %d", cpu, landed);
    return landed;
}

/* One more turn of spinning? false once the budget is spent. The budget starts at the
   first clock reading (turn 64): most waits end before it, without reading the clock. */
static bool spin_again(struct spin *sp, const struct exec *x)
{
    if (!sp->on) return false;
    cpu_relax();
    sp->turn++;
    if ((sp->turn & 63) == 0) {
        uint64_t now = net_now_ns();
        if (sp->end == 0) sp->end = now + (uint64_t)x->c->cfg.spin_ns;
        else if (now > sp->end) sp->on = false;
        /* The rank this one waits for last ran on this very CPU: the scheduler has put
           both on one core (it does, after start-up, for up to seconds, though another
           core is idle). Spinning then only delays it: yield at every turn so it runs
           (2 ranks forced on one core, 8-byte all-reduce: 11.8 -> 4.1 us a call), and
           unless local ranks outnumber cores (where sharing is expected), the higher
           rank of the two moves to another CPU it may run on. Only one of them: the
           CPU noted is where the peer last posted, so after a move the other would see
           it stale and follow. */
        int cpu = sched_getcpu();
        if (!sp->yield_all && sp->peer_cpu && atomic_load_explicit(sp->peer_cpu, memory_order_relaxed) == cpu + 1) {
            sp->yield_all = true;
            atomic_fetch_add_explicit(&x->c->colocated_waits, 1, memory_order_relaxed);
            if (!x->c->cfg.spin_yield && x->c->rank > sp->peer) exec_move_off_cpu(x->c, cpu, now);
        }
    }
    if (sp->yield_all || (sp->turn & 255) == 0) sched_yield();
    return sp->on;
}

static loom_result_t fail_wait(struct exec *x, struct loom_conn *conn, loom_result_t code, const char *why)
{
    struct loom_comm *c = x->c;
    char name[128], silent[400] = "", msg[768];
    comm_peer_name(c, conn->peer, name, sizeof name);
    /* On a timeout, first the peers that went quiet: the one this rank waits for is
       often alive and waiting itself, behind a stopped rank further along. */
    if (code == LOOM_ERR_TIMEOUT) progress_silence_report(c->prog, silent, sizeof silent);
    snprintf(msg, sizeof msg, "%s%s%s (count %zu, %s) on rank %d: %s (this rank was %s %s%s)", silent,
             silent[0] ? ": " : "", coll_name(x->op->coll), x->op->count, loom_dtype_name(x->op->dt), c->rank, why,
             conn->is_send ? "sending to" : "receiving from", name,
             code == LOOM_ERR_TIMEOUT && !silent[0] ? ", which is alive and answering: has it called this collective?"
                                                    : "");
    comm_fail(c, code, true, "%s", msg);
    return code;
}

/* Why can this wait not succeed? LOOM_SUCCESS: keep waiting. */
static loom_result_t wait_check(struct exec *x, struct loom_conn *conn, bool sending)
{
    struct loom_comm *c = x->c;
    int st = atomic_load(&c->status);
    if (st != LOOM_SUCCESS) return (loom_result_t)st;
    /* A peer that said BYE sends nothing more: fail once what it sent is consumed
       (shm: in the FIFO already; tcp: up to the socket's end, or no socket at all). */
    if (atomic_load(&c->peer_gone[conn->peer]) &&
        (sending || !conn->proxied || atomic_load(&conn->eof) || !atomic_load(&conn->attached))) {
        /* Look again: the caller saw the FIFO empty before it saw the BYE, and what the
           peer posted before leaving may have landed in between. */
        struct slot_meta m;
        if (!sending && fifo_recv_slot(&conn->fifo, &m) != NULL) return LOOM_SUCCESS;
        return fail_wait(x, conn, LOOM_ERR_REMOTE, "the peer destroyed its communicator");
    }
    uint64_t now = net_now_ns();
    if (x->deadline == 0) x->deadline = now + (uint64_t)c->cfg.timeout_ms * 1000000u;
    if (now > x->deadline) {
        char why[96];
        snprintf(why, sizeof why, "saw no progress for %lld ms (LOOM_TIMEOUT_MS)", (long long)c->cfg.timeout_ms);
        return fail_wait(x, conn, LOOM_ERR_TIMEOUT, why);
    }
    return LOOM_SUCCESS;
}

/* Sleep until the link's counter (tail for a receiver, head for a sender) moves from
   seen, at most timeout_us; spurious returns allowed. A link this thread drives moves
   only when it moves it: it polls the sockets instead. */
static void wait_link(struct exec *x, struct loom_conn *conn, bool on_tail, uint32_t seen, int64_t timeout_us)
{
    if (x->drive && conn->proxied) progress_drive(x->c->prog, (int)(timeout_us / 1000));
    else fifo_sleep(&conn->fifo, on_tail, seen, timeout_us);
}

/* Wait for a free slot for n bytes (sending) or a full one (receiving). */
static loom_result_t wait_slot(struct exec *x, struct loom_conn *conn, bool sending, size_t n,
                               char **slot, struct slot_meta *m)
{
    struct fifo *f = &conn->fifo;
    *slot = sending ? fifo_send_slot(f, n) : fifo_recv_slot(f, m);
    if (*slot) return LOOM_SUCCESS;
    x->deadline = 0;                       /* this wait's own LOOM_TIMEOUT_MS */
    struct spin sp = spin_start(x, conn->proxied);
    spin_on(&sp, conn, sending);
    while (spin_again(&sp, x)) {
        *slot = sending ? fifo_send_slot(f, n) : fifo_recv_slot(f, m);
        if (*slot) return LOOM_SUCCESS;
    }
    for (;;) {
        _Atomic uint32_t *ctr = sending ? &f->ctrl->head : &f->ctrl->tail;
        uint32_t seen = atomic_load(ctr);
        *slot = sending ? fifo_send_slot(f, n) : fifo_recv_slot(f, m);
        if (*slot) return LOOM_SUCCESS;
        loom_result_t r = wait_check(x, conn, sending);
        if (r != LOOM_SUCCESS) return r;
        wait_link(x, conn, !sending, seen, SLEEP_SLICE_US);
    }
}

/* ---- slots ---- */

loom_result_t meta_mismatch(struct loom_comm *c, int peer, const struct slot_meta *want, const struct slot_meta *got,
                            const char *where)
{
    char name[128] = "a peer";
    if (peer >= 0) comm_peer_name(c, peer, name, sizeof name);
    comm_fail(c, LOOM_ERR_INVALID_ARGUMENT, true,
              "mismatched calls%s: %s sent %s count %llu %s root %d (call #%u, %u bytes), but rank %d "
              "is in %s count %llu %s root %d (call #%u, %u bytes); every rank must issue the same "
              "collectives with the same arguments in the same order",
              where, name, coll_name((enum coll)(got->kind >> 16)), (unsigned long long)got->count,
              loom_dtype_name((loom_dtype_t)((got->kind >> 8) & 0xff)) ?: "?", got->root, got->seq,
              got->bytes, c->rank, coll_name((enum coll)(want->kind >> 16)),
              (unsigned long long)want->count, loom_dtype_name((loom_dtype_t)((want->kind >> 8) & 0xff)),
              want->root, want->seq, want->bytes);
    return LOOM_ERR_INVALID_ARGUMENT;
}

static loom_result_t check_meta(struct exec *x, struct loom_conn *conn, const struct slot_meta *want,
                                const struct slot_meta *got)
{
    struct slot_meta g = *got;
    g.kind &= ~SLOT_REMOTE;
    if (g.kind == want->kind && g.count == want->count && g.seq == want->seq && g.root == want->root &&
        g.bytes == want->bytes)
        return LOOM_SUCCESS;
    return meta_mismatch(x->c, conn->peer, want, &g, "");
}

/* ---- single copy (shm, REMOTE_MIN_BYTES) ---- */

static int cost_class(size_t bytes_per_rank)
{
    if (bytes_per_rank < REMOTE_MIN_BYTES) return -1;
    int k = 0;
    while (k < COST_CLASSES - 1 && bytes_per_rank >= (size_t)REMOTE_MIN_BYTES << (k + 1)) k++;
    return k;
}

/* The lesser of two costs, 0 meaning not measured. */
static uint32_t least(uint32_t a, uint32_t b) { return a && (a < b || !b) ? a : b; }

bool remote_choose(uint64_t fifo, uint64_t remote, int prev, uint32_t call)
{
    if (call < 4) return call % 2 == 0;          /* two measurements of each way first */
    if (remote == 0) return true;
    if (fifo == 0) return false;
    /* the way of the class's last call holds until the other costs 10 % less: near
       ties flipped about every other call (64 KiB per rank: 1223 calls one way, 979 the
       other), and a switch has a price of its own. 2-rank all-gather of 64 and 128 KiB,
       5 rounds each, medians without -> with: 7.04 -> 6.86 and 10.11 -> 9.95 us with
       near vCPUs, 8.37 -> 5.98 and 10.47 -> 9.52 in a run with far episodes */
    bool cheaper = prev == 1 ? fifo * 10 >= remote * 9 : prev == 0 ? remote * 10 < fifo * 9 : remote < fifo;
    /* the dearer way is tried less often the dearer it is: 1.5x or more, a quarter */
    uint64_t lo = cheaper ? remote : fifo, hi = cheaper ? fifo : remote;
    uint32_t every = hi / 3 < lo / 2 ? REMOTE_EXPLORE : 4 * REMOTE_EXPLORE;
    return call % every == every - 1 ? !cheaper : cheaper;
}

/* What one way costs as both ranks measured it, each the lesser of its last two calls
   (one call slowed by a preemption or a late peer does not flip the choice, a lasting
   change does after two): the lesser again, as the rank that arrived last did not wait
   for the other, so its time is the way's own. */
static uint64_t cost_of(const struct fifo_ctrl *a, const struct fifo_ctrl *b, int k, int way)
{
    return least(atomic_load_explicit(&a->call_cost[k][way], memory_order_relaxed),
                 atomic_load_explicit(&b->call_cost[k][way], memory_order_relaxed));
}

/* The end of a call that succeeded: the way it took and its time (ns per MiB of a rank's
   block) into the chosen link's last two, the lesser published for both ranks; the
   ways counted on both links (for tests and traces). */
static void cost_fold(const struct exec *x)
{
    int k = x->cost_class;
    if (x->way_conn && x->way >= 0) {
        struct loom_conn *conn = x->way_conn;
        uint64_t c = (net_now_ns() - x->start_ns) * (1u << 20) / (x->op->count * dtype_size(x->op->dt));
        uint32_t *h = conn->cost[k][x->way];
        h[0] = h[1];
        h[1] = c == 0 ? 1 : c > UINT32_MAX ? UINT32_MAX : (uint32_t)c;
        atomic_store_explicit(&conn->fifo.ctrl->call_cost[k][x->way], least(h[0], h[1]), memory_order_relaxed);
        conn->way_calls[k][x->way]++;
        conn->last_way[k] = (int8_t)x->way;
    }
    for (int way = 0; way < 2 && x->got_conn; way++)
        if (x->got & 1u << way) x->got_conn->way_calls[k][way]++;
}

/* May this step hand the peer its source's address? Only where the peer's step reads it
   into its output and the source stays unchanged to the end of the call (a 2-rank
   all-gather's own block, in place or not), the receiver said it can read this process
   (transport.h, remote_read), and, with LOOM_CMA=1, the costs say so. One choice per
   call, the same on both ranks: the first to get here writes it where the other looks
   (a rank sending by address while the other copies would serialise the call on the
   copying one: measured 8.4 against 6.0-6.4 us at 32 KiB per rank). */
static bool remote_step(struct exec *x, const struct step *st, struct loom_conn *out)
{
    if (x->cost_class < 0 || st->bytes < REMOTE_MIN_BYTES || out->fifo.slot_bytes < REMOTE_MIN_BYTES ||
        !out->fifo.lines || atomic_load_explicit(&out->fifo.ctrl->remote_read, memory_order_relaxed) != 1)
        return false;
    struct loom_conn *in;
    if (x->way < 0 && comm_conn(x->c, out->peer, false, &in) == LOOM_SUCCESS) {
        int k = x->cost_class;
        struct fifo_ctrl *o = out->fifo.ctrl, *i = in->fifo.ctrl;
        /* the lower rank's link carries the call's way: whoever comes first chooses */
        _Atomic uint64_t *shared = x->c->rank < out->peer ? &o->way : &i->way;
        uint64_t seen = atomic_load_explicit(shared, memory_order_acquire);
        uint32_t call = out->way_calls[k][0] + out->way_calls[k][1];   /* calls of the class so far */
        x->way_conn = out;
        if (seen >> 1 == x->meta.seq) {
            x->way = (int)(seen & 1);
        } else {
            uint64_t fifo = cost_of(o, i, k, 0), remote = cost_of(o, i, k, 1);
            x->way = x->c->cfg.remote_read == 2 || remote_choose(fifo, remote, out->last_way[k], call);
            if (!atomic_compare_exchange_strong_explicit(shared, &seen, (uint64_t)x->meta.seq << 1 | (uint64_t)x->way,
                                                         memory_order_acq_rel, memory_order_acquire) &&
                seen >> 1 == x->meta.seq)
                x->way = (int)(seen & 1);            /* the peer chose meanwhile */
            LOOM_TRACE(LOOM_SUB_COLL, "all-gather %u, class %d: %s (ns/MiB: through the FIFO %llu, by address %llu)",
                       x->meta.seq, k, x->way ? "by address" : "through the FIFO", (unsigned long long)fifo,
                       (unsigned long long)remote);
        }
    }
    return x->way == 1;
}

/* Copy a remote slot's n bytes from the sender's buffer to dst. */
static loom_result_t remote_read(struct exec *x, struct loom_conn *conn, char *dst, const char *slot, size_t n)
{
    struct slot_remote d;
    memcpy(&d, slot, sizeof d);
    struct iovec local = { dst, n }, remote = { (void *)(uintptr_t)d.addr, n };
    ssize_t got = process_vm_readv(d.pid, &local, 1, &remote, 1, 0);
    if (got == (ssize_t)n) return LOOM_SUCCESS;
    char why[160];
    snprintf(why, sizeof why, "reading %zu bytes of the peer's buffer with process_vm_readv: %s", n,
             got < 0 ? strerror(errno) : "short read");
    return fail_wait(x, conn, LOOM_ERR_SYSTEM, why);
}

/* The end of a call that handed over addresses: its sources must stay unchanged until
   the peer has read them, i.e. until head passes the last such slot. Deadlock-free: the
   peer reads them in its own steps of the same call, never waiting for this rank's. */
static loom_result_t wait_remote_read(struct exec *x)
{
    struct loom_conn *conn = x->remote_conn;
    struct fifo *f = &conn->fifo;
    struct spin sp = spin_start(x, false);
    spin_on(&sp, conn, true);
    for (;;) {
        uint32_t h = atomic_load(&f->ctrl->head);
        if ((int32_t)(h - x->remote_until) >= 0) return LOOM_SUCCESS;
        if (spin_again(&sp, x)) continue;
        loom_result_t r = wait_check(x, conn, true);
        if (r != LOOM_SUCCESS) return r;
        fifo_sleep(f, false, h, SLEEP_SLICE_US);
    }
}

static void post(struct loom_conn *conn, const struct slot_meta *m)
{
    fifo_post(&conn->fifo, m);
    if (conn->proxied) progress_conn_moved(conn->comm->prog, conn);
}

static void release(struct loom_conn *conn)
{
    fifo_release(&conn->fifo);
    if (conn->proxied) progress_conn_moved(conn->comm->prog, conn);
}

/* ---- one sequential step ---- */

static loom_result_t run_step(struct exec *x, const struct step *st)
{
    struct loom_comm *c = x->c;
    const struct loom_op *op = x->op;
    struct loom_conn *in = NULL, *out = NULL;
    loom_result_t r;
    if (st->prim == PRIM_COPY) {
        if (st->dst != st->src) memmove(st->dst, st->src, st->bytes);
        return LOOM_SUCCESS;
    }
    if (st->prim == PRIM_REDUCE) {
        reduce_buf(st->dst, st->dst, st->src, st->bytes / dtype_size(op->dt), op->dt, op->op);
        return LOOM_SUCCESS;
    }
    if (st->recv_peer >= 0 && (r = comm_conn(c, st->recv_peer, false, &in)) != LOOM_SUCCESS) return r;
    if (st->send_peer >= 0 && (r = comm_conn(c, st->send_peer, true, &out)) != LOOM_SUCCESS) return r;
    size_t S = c->cfg.slot_bytes, E = dtype_size(op->dt);
    bool remote = out && (st->prim == PRIM_SEND || st->prim == PRIM_COPY_SEND) && remote_step(x, st, out);
    for (size_t done = 0; done < st->bytes;) {
        size_t n = st->bytes - done < S ? st->bytes - done : S;
        struct slot_meta want = x->meta, got;
        want.bytes = (uint32_t)n;
        char *islot = NULL, *oslot = NULL;
        const char *src = st->src + done;
        char *dst = st->dst + done;
        if (in) {
            if ((r = wait_slot(x, in, false, n, &islot, &got)) != LOOM_SUCCESS) return r;
            if ((r = check_meta(x, in, &want, &got)) != LOOM_SUCCESS) return r;
            if (x->cost_class >= 0 && st->bytes >= REMOTE_MIN_BYTES) {   /* counted: cost_fold */
                x->got_conn = in;
                x->got |= got.kind & SLOT_REMOTE ? 2u : 1u;
            }
            if (got.kind & SLOT_REMOTE) {          /* the bytes are still in the sender */
                char *to = st->prim == PRIM_RECV ? dst : fifo_recv_data(&in->fifo);
                if ((r = remote_read(x, in, to, islot, n)) != LOOM_SUCCESS) return r;
                islot = to;
                if (st->prim == PRIM_RECV) {
                    release(in);
                    done += n;
                    continue;
                }
            }
        }
        if (out && (r = wait_slot(x, out, true, remote ? sizeof(struct slot_remote) : n, &oslot, NULL)) != LOOM_SUCCESS)
            return r;
        if (remote) {
            struct slot_remote d = { .addr = (uint64_t)(uintptr_t)src, .pid = c->peers[c->rank].pid };
            memcpy(oslot, &d, sizeof d);
            if (st->prim == PRIM_COPY_SEND) out_copy(x, dst, src, n);
            want.kind |= SLOT_REMOTE;
            post(out, &want);
            x->remote_conn = out;
            x->remote_until = atomic_load_explicit(&out->fifo.ctrl->tail, memory_order_relaxed);
            done += n;
            continue;
        }
        switch (st->prim) {
        case PRIM_SEND:                  memcpy(oslot, src, n); break;
        case PRIM_RECV:                  out_copy(x, dst, islot, n); break;
        case PRIM_RECV_REDUCE_SEND:      reduce_buf(oslot, islot, src, n / E, op->dt, op->op); break;
        case PRIM_RECV_REDUCE_COPY_SEND: reduce_buf2(dst, oslot, islot, src, n / E, op->dt, op->op); break;
        case PRIM_RECV_COPY_SEND:        memcpy(oslot, islot, n); out_copy(x, dst, islot, n); break;
        case PRIM_COPY_SEND:             memcpy(oslot, src, n); out_copy(x, dst, src, n); break;
        case PRIM_RECV_REDUCE_COPY:      reduce_buf(dst, islot, src, n / E, op->dt, op->op); break;
        default:                         return LOOM_ERR_INTERNAL;
        }
        if (in) release(in);
        if (out) post(out, &want);
        done += n;
    }
    return LOOM_SUCCESS;
}

/* ---- a concurrent block: sends and recvs that make progress together ---- */

struct xfer {
    const struct step *st;
    struct loom_conn *conn;
    size_t done;
    struct slot_meta want;
};

/* Move what can move without waiting; true if anything moved. */
static loom_result_t xfer_try(struct exec *x, struct xfer *t, bool *moved)
{
    size_t S = x->c->cfg.slot_bytes;
    bool sending = t->st->prim == PRIM_SEND;
    while (t->done < t->st->bytes) {
        size_t n = t->st->bytes - t->done < S ? t->st->bytes - t->done : S;
        struct slot_meta want = t->want, got;
        want.bytes = (uint32_t)n;
        char *slot = sending ? fifo_send_slot(&t->conn->fifo, n) : fifo_recv_slot(&t->conn->fifo, &got);
        if (slot == NULL) return LOOM_SUCCESS;
        if (sending) {
            memcpy(slot, t->st->src + t->done, n);
            post(t->conn, &want);
        } else {
            loom_result_t r = check_meta(x, t->conn, &want, &got);
            if (r != LOOM_SUCCESS) return r;
            if (got.kind & SLOT_REMOTE) r = remote_read(x, t->conn, t->st->dst + t->done, slot, n);
            else memcpy(t->st->dst + t->done, slot, n);
            if (r != LOOM_SUCCESS) return r;
            release(t->conn);
        }
        t->done += n;
        *moved = true;
    }
    return LOOM_SUCCESS;
}

static loom_result_t run_together(struct exec *x, const struct step *first, int n)
{
    struct xfer tv[16], *t = n <= 16 ? tv : malloc(sizeof *t * (size_t)n);
    loom_result_t r = LOOM_SUCCESS;
    bool proxied = false;
    if (t == NULL) return LOOM_ERR_SYSTEM;
    for (int i = 0; i < n && r == LOOM_SUCCESS; i++) {
        const struct step *st = &first[i];
        bool s = st->prim == PRIM_SEND;
        t[i] = (struct xfer){ .st = st, .want = x->meta };
        r = comm_conn(x->c, s ? st->send_peer : st->recv_peer, s, &t[i].conn);
        proxied = proxied || (r == LOOM_SUCCESS && t[i].conn->proxied);
    }
    struct spin sp = spin_start(x, proxied);
    while (r == LOOM_SUCCESS) {
        bool moved = false, all = true;
        struct xfer *waiting = NULL;
        for (int i = 0; i < n && r == LOOM_SUCCESS; i++) {
            if (t[i].done >= t[i].st->bytes) continue;
            /* one link carries its items in issue order: only the first unfinished moves */
            bool blocked = false;
            for (int j = 0; j < i && !blocked; j++)
                blocked = t[j].conn == t[i].conn && t[j].done < t[j].st->bytes;
            all = false;
            if (blocked) continue;
            r = xfer_try(x, &t[i], &moved);
            if (waiting == NULL && t[i].done < t[i].st->bytes) waiting = &t[i];
        }
        if (r != LOOM_SUCCESS || all) break;
        if (moved || waiting == NULL) continue;
        bool s = waiting->st->prim == PRIM_SEND;
        spin_on(&sp, waiting->conn, s);
        if (spin_again(&sp, x)) continue;
        /* Sleep on one link briefly; others are re-polled after the slice. */
        _Atomic uint32_t *ctr = s ? &waiting->conn->fifo.ctrl->head : &waiting->conn->fifo.ctrl->tail;
        uint32_t seen = atomic_load(ctr);
        r = wait_check(x, waiting->conn, s);
        if (r == LOOM_SUCCESS) wait_link(x, waiting->conn, !s, seen, n > 1 ? 1000 : SLEEP_SLICE_US);
    }
    if (t != tv) free(t);
    return r;
}

/* ---- entry ---- */

void call_meta(struct loom_comm *c, const struct loom_op *op, struct slot_meta *m)
{
    m->bytes = 0;
    if (op->coll == COLL_P2P) {   /* a send and its recv agree on bytes only (checked per
                                     slot); one may be grouped, the other not, the dtypes
                                     may differ */
        m->kind = (uint32_t)COLL_P2P << 16;
        m->count = 0;
        m->seq = 0;
        m->root = -1;
        return;
    }
    m->kind = (uint32_t)op->coll << 16 | (uint32_t)op->dt << 8 | (uint32_t)op->op;
    m->count = op->count;
    m->seq = ++c->coll_seq;
    m->root = op->root;
}

loom_result_t exec_host_run(struct loom_comm *c, const struct loom_op *op)
{
    struct sched s;
    size_t chunk = (size_t)(c->cfg.nslots / 2) * c->cfg.slot_bytes;
    loom_result_t r = sched_build(&s, op, c->rank, c->nranks, chunk, (enum algo)c->cfg.algo);
    if (r != LOOM_SUCCESS)
        return loom_set_error(c, r, "cannot build the %s schedule: %s", coll_name(op->coll), loom_strerror(r));
    struct exec x = { .c = c, .op = op };
    size_t blocks = op->coll == COLL_ALLGATHER || op->coll == COLL_ALLTOALL ? (size_t)c->nranks : 1;
    x.stream_out = op->count * dtype_size(op->dt) * blocks >= STREAM_OUT_BYTES;
    call_meta(c, op, &x.meta);
    x.cost_class = c->nranks == 2 && op->coll == COLL_ALLGATHER ? cost_class(op->count * dtype_size(op->dt)) : -1;
    x.way = -1;
    if (x.cost_class >= 0) x.start_ns = net_now_ns();
    /* One rank per host (or tcp forced): every host link is tcp, and this thread moves
       their bytes itself for the call (runtime/progress.c says why). */
    x.drive = c->nranks > 1 && (c->cfg.force == 2 || c->local_nranks == 1);
    if (x.drive) progress_exec_begin(c->prog);
    LOOM_TRACE(LOOM_SUB_COLL, "%s count %zu %s: %d steps", coll_name(op->coll), op->count,
               loom_dtype_name(op->dt), s.n);
    for (int i = 0; i < s.n && r == LOOM_SUCCESS; i++) {
        const struct step *st = &s.steps[i];
        if (st->together > 1) {
            r = run_together(&x, st, st->together);
            i += st->together - 1;
        } else {
            r = run_step(&x, st);
        }
    }
    if (r == LOOM_SUCCESS && x.remote_conn) r = wait_remote_read(&x);
    if (r == LOOM_SUCCESS && x.cost_class >= 0) cost_fold(&x);
    if (x.drive) progress_exec_end(c->prog);
    if (r == LOOM_SUCCESS && op->op == LOOM_AVG && c->nranks > 1) {
        if (op->coll == COLL_ALLREDUCE) reduce_div(op->recv, op->count, op->dt, c->nranks);
        else if (op->coll == COLL_REDUCE_SCATTER) reduce_div(op->recv, op->count, op->dt, c->nranks);
        else if (op->coll == COLL_REDUCE && c->rank == op->root) reduce_div(op->recv, op->count, op->dt, c->nranks);
    }
    sched_free(&s);
    return r;
}
