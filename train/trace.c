/* trace.c: record spans, gather them to rank 0, write Chrome-trace JSON. */
#include "trace.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

double trace_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void trace_add(struct trace *t, const char *name, const char *cat, int tid, int mb, int step,
               double t0, double t1, size_t bytes)
{
    if (t->n == t->cap) {
        size_t cap = t->cap ? 2 * t->cap : 1024;
        struct trace_event *ev = realloc(t->ev, cap * sizeof *ev);
        if (!ev) return;   /* a trace is best effort; training goes on */
        t->ev = ev;
        t->cap = cap;
    }
    struct trace_event *e = &t->ev[t->n++];
    memset(e, 0, sizeof *e);
    snprintf(e->name, sizeof e->name, "%s", name);
    snprintf(e->cat, sizeof e->cat, "%s", cat);
    e->tid = tid;
    e->stage = t->stage;
    e->mb = mb;
    e->step = step;
    e->t0 = t0;
    e->t1 = t1;
    e->bytes = bytes;
}

void trace_free(struct trace *t)
{
    free(t->ev);
    memset(t, 0, sizeof *t);
}

static void write_events(FILE *f, const struct trace_event *ev, size_t n, int rank, double base, int *first)
{
    for (size_t i = 0; i < n; i++) {
        const struct trace_event *e = &ev[i];
        char name[64];
        if (e->mb >= 0) snprintf(name, sizeof name, "%s%d", e->name, e->mb);
        else snprintf(name, sizeof name, "%s", e->name);
        fprintf(f, "%s\n{\"name\":\"%s\",\"cat\":\"%s\",\"ph\":\"X\",\"pid\":%d,\"tid\":%d,"
                   "\"ts\":%.3f,\"dur\":%.3f,\"args\":{\"stage\":%d,\"mb\":%d,\"step\":%d,\"bytes\":%zu}}",
                *first ? "" : ",", name, e->cat, rank, e->tid, (e->t0 - base) * 1e6,
                (e->t1 - e->t0) * 1e6, e->stage, e->mb, e->step, e->bytes);
        *first = 0;
    }
}

int trace_write(struct trace *t, loom_comm_t world, const char *path)
{
    int rank = loom_comm_rank(world), n = loom_comm_size(world);
    long long cnt = (long long)t->n;
    long long *counts = calloc((size_t)n, sizeof *counts);
    loom_result_t r = counts ? loom_allgather(&cnt, counts, 1, LOOM_INT64, world, NULL) : LOOM_ERR_SYSTEM;
    if (r != LOOM_SUCCESS) {
        fprintf(stderr, "loom-train: trace: gathering counts: %s\n", loom_strerror(r));
        free(counts);
        return -1;
    }
    FILE *f = NULL;
    double base = t->n ? t->ev[0].t0 : 0;
    int first = 1, rc = 0;
    if (rank == 0) {
        if (!(f = fopen(path, "w"))) {
            perror(path);
            rc = -1;   /* still receive, so the others are not left waiting */
        } else {
            fprintf(f, "{\"displayTimeUnit\":\"ms\",\"traceEvents\":[");
            for (int q = 0; q < n; q++)
                fprintf(f, "%s\n{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":%d,\"args\":{\"name\":\"rank %d\"}}",
                        q ? "," : "", q, q);
            first = 0;
            write_events(f, t->ev, t->n, 0, base, &first);
        }
        for (int q = 1; q < n; q++) {
            struct trace_event *ev = malloc(sizeof *ev * (size_t)(counts[q] ? counts[q] : 1));
            if (!ev) { rc = -1; break; }
            r = loom_recv(ev, (size_t)counts[q] * sizeof *ev, LOOM_UINT8, q, world, NULL);
            if (r != LOOM_SUCCESS) {
                fprintf(stderr, "loom-train: trace: from rank %d: %s\n", q, loom_strerror(r));
                free(ev);
                rc = -1;
                break;
            }
            if (f) write_events(f, ev, (size_t)counts[q], q, base, &first);
            free(ev);
        }
        if (f) {
            fprintf(f, "\n]}\n");
            if (fclose(f)) rc = -1;
        }
    } else if ((r = loom_send(t->ev, t->n * sizeof *t->ev, LOOM_UINT8, 0, world, NULL)) != LOOM_SUCCESS) {
        fprintf(stderr, "loom-train: trace: to rank 0: %s\n", loom_strerror(r));
        rc = -1;
    }
    free(counts);
    return rc;
}
