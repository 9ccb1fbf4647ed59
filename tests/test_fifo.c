/* test_fifo.c: the slot FIFO itself (transport/fifo.c, transport.h), two processes on
 * one mapping as shm links have it, without a communicator.
 *
 * The sender posts messages whose sizes jump across FIFO_LINE_DATA, so inline slots
 * (payload and meta in the slot's line) and data slots follow one another in every
 * order; the receiver checks every message's meta and every byte, in order. Now and
 * then the sender pauses so the receiver goes to sleep on tail and must be woken, and
 * the receiver pauses so the sender finds the FIFO full. The same runs on a FIFO
 * without lines (what tcp uses). Bounded: alarm() ends a stuck run.
 *
 *     test_fifo [messages]
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "transport.h"

#define NSLOTS 8
#define SLOT_BYTES 4096

static size_t size_of(uint32_t k)
{
    uint32_t x = k * 2654435761u;
    if ((x >> 7) % 8 == 0) return FIFO_LINE_DATA + 1 + x % (SLOT_BYTES - FIFO_LINE_DATA);  /* data slot */
    if ((x >> 7) % 8 == 1) return 1 + (x >> 9) % FIFO_LINE_DATA;                        /* inline */
    return 1 + (x >> 9) % 8;      /* tiny: taken before the sender's tail store lands */
}

static char byte_of(uint32_t k, size_t j) { return (char)(k * 31u + j); }

static struct slot_meta meta_of(uint32_t k)
{
    return (struct slot_meta){ .bytes = (uint32_t)size_of(k), .kind = 0x10203, .count = 0x100000000ull + k,
                               .seq = k * 3, .root = (int32_t)(k % 5) - 1 };
}

/* Returns the most slots it ever had in flight. */
static uint32_t sender(struct fifo *f, uint32_t n)
{
    uint32_t most = 0;
    for (uint32_t k = 0; k < n; k++) {
        size_t bytes = size_of(k);
        char *s;
        for (int spin = 0; spin < 20000 && (s = fifo_send_slot(f, bytes)) == NULL; spin++) {}
        while (s == NULL) {
            uint32_t seen = atomic_load(&f->ctrl->head);
            if ((s = fifo_send_slot(f, bytes)) != NULL) break;
            fifo_sleep(f, false, seen, 10000);
        }
        for (size_t j = 0; j < bytes; j++) s[j] = byte_of(k, j);
        struct slot_meta m = meta_of(k);
        fifo_post(f, &m);
        int32_t in_flight = (int32_t)(atomic_load(&f->ctrl->tail) - atomic_load(&f->ctrl->head));
        if (in_flight > (int32_t)most) most = (uint32_t)in_flight;
        if (k % 4099 == 0) usleep(200);           /* let the receiver fall asleep */
    }
    return most;
}

static int receiver(struct fifo *f, uint32_t n, const char *what)
{
    for (uint32_t k = 0; k < n; k++) {
        struct slot_meta m, want = meta_of(k);
        char *s;
        for (int spin = 0; spin < 20000 && (s = fifo_recv_slot(f, &m)) == NULL; spin++) {}
        while (s == NULL) {                       /* as the executors: spin, then sleep */
            uint32_t seen = atomic_load(&f->ctrl->tail);
            if ((s = fifo_recv_slot(f, &m)) != NULL) break;
            fifo_sleep(f, true, seen, 10000);
        }
        if (memcmp(&m, &want, sizeof m) != 0) {
            fprintf(stderr, "%s: message %u: meta bytes %u count %llu seq %u, want bytes %u count %llu seq %u\n",
                    what, k, m.bytes, (unsigned long long)m.count, m.seq, want.bytes,
                    (unsigned long long)want.count, want.seq);
            return 1;
        }
        for (size_t j = 0; j < m.bytes; j++)
            if (s[j] != byte_of(k, j)) {
                fprintf(stderr, "%s: message %u (%u bytes): byte %zu is %d, want %d\n", what, k, m.bytes, j,
                        s[j], byte_of(k, j));
                return 1;
            }
        fifo_release(f);
        if (k % 6151 == 0) usleep(200);           /* let the sender find it full */
    }
    return 0;
}

static int run(uint32_t n, bool lines)
{
    const char *what = lines ? "fifo with lines" : "fifo without lines";
    size_t data_end = fifo_map_bytes(NSLOTS, SLOT_BYTES), bytes = data_end + FIFO_MAX_SLOTS * sizeof(struct fifo_line);
    char *mem = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
    struct fifo f = { .ctrl = (struct fifo_ctrl *)mem, .data = mem + FIFO_DATA_OFFSET, .nslots = NSLOTS,
                      .slot_bytes = SLOT_BYTES, .map_bytes = bytes,
                      .lines = lines ? (struct fifo_line *)(mem + data_end) : NULL };
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        return 1;
    }
    if (pid == 0) {
        uint32_t most = sender(&f, n);
        /* with lines, small slots run deeper than the K data slots (transport.h) */
        if (most > fifo_depth(&f) || (lines && most <= NSLOTS)) {
            fprintf(stderr, "%s: at most %u slots were in flight (K = %u, depth %u)\n", what, most, NSLOTS,
                    fifo_depth(&f));
            _exit(3);
        }
        _exit(0);
    }
    int bad = receiver(&f, n, what), st = 0;
    if (bad) kill(pid, SIGKILL);
    waitpid(pid, &st, 0);
    munmap(mem, bytes);
    if (!bad && !(WIFEXITED(st) && WEXITSTATUS(st) == 0)) {
        fprintf(stderr, "%s: the sender ended with status %d\n", what, st);
        bad = 1;
    }
    if (!bad) printf("%s: %u messages whole and in order\n", what, n);
    return bad;
}

int main(int argc, char **argv)
{
    uint32_t n = argc > 1 ? (uint32_t)strtoul(argv[1], NULL, 0) : 2000000;
    alarm(120);                                   /* a lost wake-up must not hang CI */
    return run(n, true) || run(n / 4, false);
}
