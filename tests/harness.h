/* harness.h: run a test body on N local ranks (forked processes), libuv style:
 * every case in its own processes, with a timeout, checks that print both operands.
 * The parent starts the rendezvous root in a process of its own, forks the ranks (it
 * never runs a thread itself: see harness.c) and waits with a deadline; on timeout it
 * kills them all. Ranks end with exit(), so a sanitizer's leak check runs in each. */
#ifndef LOOM_TEST_HARNESS_H
#define LOOM_TEST_HARNESS_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include "loom.h"

/* The body of one rank. Return 0 on success. */
typedef int (*rank_fn)(loom_comm_t comm, int rank, int nranks, void *arg);

struct run_opts {
    int timeout_s;           /* whole run; default 120                               */
    unsigned may_die;        /* bit r set: rank r may end by a signal (failure tests) */
    int no_comm;             /* ranks get comm NULL and init themselves               */
};

/* Run fn on n ranks. Returns 0 when every rank returned 0 (or died as allowed). */
int run_ranks(const char *name, int n, rank_fn fn, void *arg, const struct run_opts *o);

/* The id the ranks of the current run were given (for bodies that init themselves). */
extern loom_id_t harness_id;

#define CHECK(cond) do { if (!(cond)) { \
    fprintf(stderr, "%s:%d: rank %d: check failed: %s\n", __FILE__, __LINE__, rank, #cond); \
    return 1; } } while (0)
#define CHECK_EQ(a, b) do { long long a_ = (long long)(a), b_ = (long long)(b); if (a_ != b_) { \
    fprintf(stderr, "%s:%d: rank %d: %s == %s failed: %lld != %lld\n", __FILE__, __LINE__, rank, \
            #a, #b, a_, b_); return 1; } } while (0)
#define CHECK_OK(call) do { loom_result_t r_ = (call); if (r_ != LOOM_SUCCESS) { \
    fprintf(stderr, "%s:%d: rank %d: %s returned %s: %s\n", __FILE__, __LINE__, rank, #call, \
            loom_strerror(r_), loom_last_error(comm)); return 1; } } while (0)

double harness_now(void);

/* Word i of slot number s, for tests that move raw FIFO slots (test_staged,
   test_handback): a misrouted, stale or reordered slot does not match. */
static inline uint64_t harness_word(uint32_t s, size_t i) { return (uint64_t)s * 0x9e3779b97f4a7c15ull ^ i; }

#endif
