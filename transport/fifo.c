/* fifo.c: the slot FIFO shared by every transport (layout in transport.h).
 * Posting and releasing are a store-release of a counter plus a futex wake when the
 * other side said it is asleep; the sleeper registers first, then re-checks, then
 * sleeps, so a wake cannot be lost (both sides use sequentially consistent atomics).
 * Futexes are not FUTEX_PRIVATE: the counters live in memory shared by processes.
 * On shm each side also notes the CPU it posted or released on (sched_getcpu reads the
 * rseq area: a few ns), in the line it writes anyway, so a long waiter can tell whether
 * the rank it waits for last ran on its own CPU (algos/exec_host.c, spin_again); waits
 * on a tcp FIFO never spin, so its notes would go unread. */
#include "transport.h"

#include <limits.h>
#include <sched.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

size_t fifo_map_bytes(uint32_t nslots, size_t slot_bytes)
{
    return FIFO_DATA_OFFSET + (size_t)nslots * slot_bytes;
}

static void futex_wake(_Atomic uint32_t *addr)
{
    syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

void fifo_post(struct fifo *f, const struct slot_meta *m)
{
    uint32_t t = atomic_load_explicit(&f->ctrl->tail, memory_order_relaxed);
    uint32_t i = t & (fifo_depth(f) - 1);
    if (f->lines) {                                 /* every slot, inline or not */
        f->posts++;
        f->lines[i].meta = *m;
        /* A data slot's payload is all stored before its line is touched. Measured, not
           explained: 2-rank 1 MiB all-reduce, 8 alternating rounds, 70.0 us without the
           fence, 63.3 with it, 65.8 when the receiver still polled tail (bench/RESULTS.md);
           likely the receiver, polling the line, pulls it back while the payload drains. */
        if (!fifo_meta_inline(f, m)) atomic_thread_fence(memory_order_seq_cst);
        atomic_store_explicit(&f->lines[i].post, f->posts, memory_order_release);
    } else {
        f->ctrl->meta[i] = *m;
    }
    if (f->lines) atomic_store_explicit(&f->ctrl->tx_cpu, sched_getcpu() + 1, memory_order_relaxed);  /* tail's line */
    atomic_store(&f->ctrl->tail, t + 1);            /* seq_cst: orders the load below */
    if (atomic_load(&f->ctrl->rx_sleepers)) futex_wake(&f->ctrl->tail);
}

void fifo_release(struct fifo *f)
{
    uint32_t h = atomic_load_explicit(&f->ctrl->head, memory_order_relaxed);
    if (f->lines) {
        f->posts++;
        atomic_store_explicit(&f->ctrl->rx_cpu, sched_getcpu() + 1, memory_order_relaxed);  /* head's line */
    }
    atomic_store(&f->ctrl->head, h + 1);
    if (atomic_load(&f->ctrl->tx_sleepers)) futex_wake(&f->ctrl->head);
}

void fifo_sleep(struct fifo *f, bool on_tail, uint32_t seen, int64_t timeout_us)
{
    _Atomic uint32_t *ctr = on_tail ? &f->ctrl->tail : &f->ctrl->head;
    _Atomic uint32_t *sleepers = on_tail ? &f->ctrl->rx_sleepers : &f->ctrl->tx_sleepers;
    if (timeout_us <= 0) return;
    struct timespec ts = { .tv_sec = timeout_us / 1000000, .tv_nsec = (timeout_us % 1000000) * 1000 };
    atomic_fetch_add(sleepers, 1);
    if (atomic_load(ctr) == seen)
        syscall(SYS_futex, (uint32_t *)ctr, FUTEX_WAIT, seen, &ts, NULL, 0);
    atomic_fetch_sub(sleepers, 1);
}
