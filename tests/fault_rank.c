/* fault_rank: one rank of the fault matrix (tests/test_faults.sh). It joins through
 * loom_comm_init_env, then runs checked all-reduces of COUNT floats until rank 0 has
 * been at it for SECONDS (rank 0's verdict rides in the last element, so every rank
 * stops after the same call), and reports on stdout, one line per event, with
 * CLOCK_REALTIME seconds (the same clock in every network namespace):
 *   ready T                     the communicator is up
 *   ok T CALLS                  every 10th call, and the last
 *   error T CODE SILENT MESSAGE a call failed; SILENT: seconds since the last that did
 *   done T CALLS                all calls right; exit 0
 * A wrong element is reported as "error T WRONG ..." and exits 4; a failed call exits 3,
 * a failed init exits 2 (after an error line).
 *
 *   fault_rank SECONDS [COUNT]      (COUNT default 262144: 1 MiB)
 *   fault_rank --make-id            print a new id (its root runs in this process, as in
 *                                   a launcher's) and wait to be killed
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "loom.h"

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "--make-id") == 0) {
        loom_id_t id;
        char s[LOOM_ID_STRLEN];
        if (loom_get_id(&id) != LOOM_SUCCESS || loom_id_to_string(&id, s, sizeof s) != LOOM_SUCCESS) {
            fprintf(stderr, "fault_rank: %s\n", loom_last_error(NULL));
            return 1;
        }
        printf("%s\n", s);
        fflush(stdout);
        for (;;) pause();
    }
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: fault_rank SECONDS [COUNT]\n");
        return 2;
    }
    double secs = atof(argv[1]);
    size_t count = argc > 2 ? strtoull(argv[2], NULL, 10) : 262144;
    if (count < 2) count = 2;
    loom_comm_t comm;
    loom_result_t r = loom_comm_init_env(&comm);
    if (r != LOOM_SUCCESS) {
        printf("error %.3f %s 0 %s\n", now(), loom_strerror(r), loom_last_error(NULL));
        return 2;
    }
    int rank = loom_comm_rank(comm), n = loom_comm_size(comm);
    float *buf = malloc(count * sizeof *buf);
    if (buf == NULL) return 1;
    double t0 = now(), last = t0;
    printf("ready %.3f\n", t0);
    fflush(stdout);
    long calls = 0;
    for (;;) {
        for (size_t i = 0; i + 1 < count; i++) buf[i] = (float)(rank + 1 + (int)(i % 7));
        buf[count - 1] = rank == 0 && now() - t0 < secs ? 1.0f : 0.0f;   /* rank 0: go on? */
        r = loom_allreduce(buf, buf, count, LOOM_FLOAT32, LOOM_SUM, comm, NULL);
        if (r != LOOM_SUCCESS) {
            printf("error %.3f %s %.3f %s\n", now(), loom_strerror(r), now() - last, loom_last_error(comm));
            fflush(stdout);
            loom_comm_destroy(comm);
            return 3;
        }
        calls++;
        last = now();
        for (size_t i = 0; i + 1 < count; i++)
            if (buf[i] != (float)(n * (n + 1) / 2 + n * (int)(i % 7))) {
                printf("error %.3f WRONG 0 call %ld element %zu: %g\n", now(), calls, i, (double)buf[i]);
                return 4;
            }
        if (buf[count - 1] == 0.0f) break;
        if (calls % 10 == 0) {
            printf("ok %.3f %ld\n", last, calls);
            fflush(stdout);
        }
    }
    double t1 = now();
    loom_comm_destroy(comm);
    printf("ok %.3f %ld\ndone %.3f %ld (destroy %.2f s)\n", last, calls, now(), calls, now() - t1);
    free(buf);
    return 0;
}
