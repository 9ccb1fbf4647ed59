/* cpu-pingpong: how far apart two CPUs are, as the round trip of one cache line.
 *
 *     cpu-pingpong [CPU_A CPU_B]      (default 0 1)
 *
 * Two threads, pinned to CPU_A and CPU_B, pass a counter back and forth through one
 * cache line 20000 times, in 5 batches; it prints the median batch's nanoseconds per
 * round trip. On this 2-vCPU VM it reads 55-65 ns most of the time and 320-380 ns in
 * episodes (the host runs the two vCPUs on cores that share less), and loom's and Open
 * MPI's shared-memory calls slow down with it, small ones most: bench/compare measures
 * it before and after every job on one host so that a slow repetition can be told
 * apart from a slow library. Bounded: 10 s in all (alarm). Exit 77 when the CPUs
 * cannot be had.
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

#define TRIPS 4000
#define BATCHES 5

static _Alignas(128) _Atomic unsigned long line;

static double now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return 1e9 * (double)t.tv_sec + (double)t.tv_nsec;
}

static int pin(int cpu)
{
    cpu_set_t s;
    CPU_ZERO(&s);
    CPU_SET(cpu, &s);
    return pthread_setaffinity_np(pthread_self(), sizeof s, &s);
}

/* The other side: answers every odd value with the next even one. */
static void *echo(void *arg)
{
    if (pin(*(int *)arg) != 0) return (void *)1;
    for (unsigned long want = 1; want < 2ul * TRIPS * BATCHES; want += 2) {
        while (atomic_load_explicit(&line, memory_order_acquire) != want) {
        }
        atomic_store_explicit(&line, want + 1, memory_order_release);
    }
    return NULL;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void help(FILE *f)
{
    fprintf(f, "usage: cpu-pingpong [CPU_A CPU_B]   (default 0 1)\n"
               "  the round trip of one cache line between two CPUs, ns (median of 5 x 4000)\n");
}

int main(int argc, char **argv)
{
    cli_scan(argc, argv, "cpu-pingpong", help, 0);
    if (argc != 1 && argc != 3) {
        help(stderr);
        return 2;
    }
    int a = argc > 2 ? atoi(argv[1]) : 0, b = argc > 2 ? atoi(argv[2]) : 1;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    if (a < 0 || b < 0 || a == b || a >= ncpu || b >= ncpu) {
        fprintf(stderr, "cpu-pingpong: need two different CPUs below %ld (got %d and %d)\n", ncpu, a, b);
        return 77;
    }
    alarm(10);
    if (pin(a) != 0) {
        fprintf(stderr, "cpu-pingpong: cannot run on CPU %d\n", a);
        return 77;
    }
    pthread_t t;
    if (pthread_create(&t, NULL, echo, &b) != 0) {
        perror("cpu-pingpong: pthread_create");
        return 1;
    }
    double ns[BATCHES];
    unsigned long v = 0;
    for (int k = 0; k < BATCHES; k++) {
        double t0 = now_ns();
        for (int i = 0; i < TRIPS; i++) {
            atomic_store_explicit(&line, ++v, memory_order_release);
            ++v;
            while (atomic_load_explicit(&line, memory_order_acquire) != v) {
            }
        }
        ns[k] = (now_ns() - t0) / TRIPS;
    }
    void *rc;
    pthread_join(t, &rc);
    if (rc != NULL) {
        fprintf(stderr, "cpu-pingpong: cannot run on CPU %d\n", b);
        return 77;
    }
    qsort(ns, BATCHES, sizeof ns[0], cmp);
    printf("cpu-pingpong: CPU %d <-> %d: %.1f ns a round trip (median of %d x %d)\n", a, b, ns[BATCHES / 2],
           BATCHES, TRIPS);
    return 0;
}
