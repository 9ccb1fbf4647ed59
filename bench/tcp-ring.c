/* tcp-ring: the practical limit of a ring over tcp, without any collective library.
 *
 *     tcp-ring RANK N HOSTS PORT BYTES     (HOSTS: N comma-separated IPv4 addresses)
 *
 * Rank r listens on PORT, connects to rank r+1 (mod N) and accepts rank r-1; then it
 * sends BYTES to r+1 while it receives BYTES from r-1, both at once, as every rank of a
 * ring all-reduce does in its steady state. It prints the bytes per second it sent and
 * received: the most a ring can move per link here, with the kernel's tcp stack, the
 * links' shaping and the machine's cores, and nothing else. bench/compare runs it in
 * its network namespaces beside the libraries. Bounded: 120 s in all (alarm).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

#define CHUNK (4u << 20)

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void die(const char *what)
{
    fprintf(stderr, "tcp-ring: %s: %s\n", what, strerror(errno));
    exit(1);
}

struct flow {
    int fd;
    size_t bytes;
    double done;     /* when the last byte went or came */
};

static void *send_all(void *arg)
{
    struct flow *f = arg;
    char *buf = calloc(1, CHUNK);
    if (buf == NULL) die("calloc");
    for (size_t left = f->bytes; left > 0;) {
        ssize_t n = send(f->fd, buf, left < CHUNK ? left : CHUNK, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) die("send");
        left -= (size_t)n;
    }
    f->done = now();
    free(buf);
    return NULL;
}

static void *recv_all(void *arg)
{
    struct flow *f = arg;
    char *buf = malloc(CHUNK);
    if (buf == NULL) die("malloc");
    for (size_t left = f->bytes; left > 0;) {
        ssize_t n = recv(f->fd, buf, left < CHUNK ? left : CHUNK, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) die(n == 0 ? "recv: the peer closed early" : "recv");
        left -= (size_t)n;
    }
    f->done = now();
    free(buf);
    return NULL;
}

static void help(FILE *f)
{
    fprintf(f, "usage: tcp-ring RANK N HOSTS PORT BYTES\n"
               "  rank RANK of N streams BYTES to the next rank and reads as much from the previous;\n"
               "  HOSTS: the N IPv4 addresses, comma-separated; PORT: where each listens\n");
}

int main(int argc, char **argv)
{
    cli_scan(argc, argv, "tcp-ring", help, 0);
    if (argc != 6) {
        help(stderr);
        return 2;
    }
    int rank = atoi(argv[1]), n = atoi(argv[2]), port = atoi(argv[4]);
    size_t bytes = strtoull(argv[5], NULL, 10);
    char hosts[1024], *ip[64], *save = NULL;
    snprintf(hosts, sizeof hosts, "%s", argv[3]);
    int k = 0;
    for (char *h = strtok_r(hosts, ",", &save); h && k < 64; h = strtok_r(NULL, ",", &save)) ip[k++] = h;
    if (n < 2 || k != n || rank < 0 || rank >= n || port <= 0 || port > 65535 || bytes == 0) {
        fprintf(stderr, "tcp-ring: bad arguments (want 0 <= RANK < N, N addresses, a port, BYTES > 0)\n");
        return 2;
    }
    alarm(120);

    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
    if (lfd < 0) die("socket");
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in me = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    if (bind(lfd, (struct sockaddr *)&me, sizeof me) < 0 || listen(lfd, 4) < 0) die("bind/listen");

    struct sockaddr_in next = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    if (inet_pton(AF_INET, ip[(rank + 1) % n], &next.sin_addr) != 1) {
        fprintf(stderr, "tcp-ring: bad address %s\n", ip[(rank + 1) % n]);
        return 2;
    }
    int out = -1;
    for (double t0 = now(); out < 0; usleep(20000)) {   /* the next rank may not listen yet */
        out = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (out < 0) die("socket");
        if (connect(out, (struct sockaddr *)&next, sizeof next) == 0) break;
        close(out);
        out = -1;
        if (now() - t0 > 30) die("connect");
    }
    struct pollfd pf = { .fd = lfd, .events = POLLIN };
    if (poll(&pf, 1, 30000) != 1) die("accept (nobody came within 30 s)");
    int in = accept(lfd, NULL, NULL);
    if (in < 0) die("accept");

    struct flow s = { .fd = out, .bytes = bytes }, r = { .fd = in, .bytes = bytes };
    pthread_t ts, tr;
    double t0 = now();
    if (pthread_create(&ts, NULL, send_all, &s) != 0 || pthread_create(&tr, NULL, recv_all, &r) != 0) die("pthread");
    pthread_join(ts, NULL);
    pthread_join(tr, NULL);
    double t = (s.done > r.done ? s.done : r.done) - t0;
    printf("tcp-ring: rank %d moved %zu bytes each way in %.3f s: %.4f GB/s\n", rank, bytes, t, (double)bytes / t / 1e9);
    close(in);
    close(out);
    close(lfd);
    return 0;
}
