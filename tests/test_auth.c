/* test_auth: SHA-256 and HMAC-SHA256 against their published vectors (FIPS 180-4
 * examples, RFC 4231), and the gate (runtime/gate.c) over socket pairs:
 *   - a connector with the key is admitted, and each side proved itself to the other;
 *   - a wrong key is refused with a reason and the acceptor logs it;
 *   - a listener without the key cannot admit a connector (the connector refuses a
 *     forged admission);
 *   - idle connections do not delay an honest one: with the set full of idlers it still
 *     gets in, the oldest idler being dropped;
 *   - a hello that never comes is dropped at its deadline, a malformed one at once.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "auth.h"
#include "gate.h"
#include "net.h"

static int failures;
#define EXPECT(cond) do { if (!(cond)) { fprintf(stderr, "%s:%d: failed: %s\n", __FILE__, __LINE__, #cond); \
    failures++; } } while (0)

static void hex(const uint8_t *b, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++) sprintf(out + 2 * i, "%02x", b[i]);
}

static void vectors(void)
{
    static const struct { char msg[64], want[65]; } sha[] = {
        { "", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" },
        { "abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" },
        { "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
          "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1" },
    };
    char got[65];
    uint8_t d[32];
    for (size_t i = 0; i < sizeof sha / sizeof sha[0]; i++) {
        struct sha256 s;
        sha256_init(&s);
        sha256_update(&s, sha[i].msg, strlen(sha[i].msg));
        sha256_final(&s, d);
        hex(d, 32, got);
        if (strcmp(got, sha[i].want)) fprintf(stderr, "sha256('%s') = %s, want %s\n", sha[i].msg, got, sha[i].want);
        EXPECT(strcmp(got, sha[i].want) == 0);
    }
    /* a million 'a', fed in odd pieces: every block boundary case */
    struct sha256 s;
    sha256_init(&s);
    char a[997];
    memset(a, 'a', sizeof a);
    size_t left = 1000000;
    while (left) {
        size_t n = left < sizeof a ? left : (left % 7) + 990;
        sha256_update(&s, a, n);
        left -= n;
    }
    sha256_final(&s, d);
    hex(d, 32, got);
    EXPECT(strcmp(got, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0") == 0);

    /* RFC 4231 test cases 1, 2 and 6 (a key longer than a block) */
    uint8_t k1[20], k6[131];
    memset(k1, 0x0b, sizeof k1);
    memset(k6, 0xaa, sizeof k6);
    static const char *m6 = "Test Using Larger Than Block-Size Key - Hash Key First";
    const struct { const uint8_t *key; size_t kl; const char *msg, *want; } mac[] = {
        { k1, sizeof k1, "Hi There", "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7" },
        { (const uint8_t *)"Jefe", 4, "what do ya want for nothing?",
          "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843" },
        { k6, sizeof k6, m6, "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54" },
    };
    for (size_t i = 0; i < sizeof mac / sizeof mac[0]; i++) {
        /* the message in two pieces: hmac_sha256 concatenates them */
        size_t n = strlen(mac[i].msg), half = n / 2;
        const void *p[] = { mac[i].msg, mac[i].msg + half };
        size_t l[] = { half, n - half };
        hmac_sha256(mac[i].key, mac[i].kl, 2, p, l, d);
        hex(d, 32, got);
        if (strcmp(got, mac[i].want)) fprintf(stderr, "hmac case %zu = %s, want %s\n", i, got, mac[i].want);
        EXPECT(strcmp(got, mac[i].want) == 0);
    }
    uint8_t x[4] = { 1, 2, 3, 4 }, y[4] = { 1, 2, 3, 5 };
    EXPECT(auth_equal(x, x, 4) && !auth_equal(x, y, 4));
}

/* ---- the gate, acceptor in this process, connectors forked ---- */

static const uint8_t key[32] = "the communicator's 32-byte key..";

/* A connector: dial, handshake with k, report the result as the exit status. */
static pid_t connector(const struct loom_addr *a, const uint8_t *k, int delay_ms)
{
    pid_t pid = fork();
    if (pid != 0) return pid;
    usleep((useconds_t)delay_ms * 1000);
    int fd;
    char err[256];
    uint64_t deadline = net_deadline(5000);
    if (net_connect(a, deadline, false, &fd, err, sizeof err) != LOOM_SUCCESS) _exit(10);
    struct gate_hello h = { .kind = 1, .src = 1, .dst = 0, .nranks = 2 };
    loom_result_t r = gate_handshake(fd, k, 32, &h, NULL, deadline, NULL, err, sizeof err);
    if (r != LOOM_SUCCESS) fprintf(stderr, "connector: %s: %s\n", loom_strerror(r), err);
    _exit(r == LOOM_SUCCESS ? 0 : r == LOOM_ERR_INVALID_ARGUMENT ? 2 : 3);
}

static int status_of(pid_t pid)
{
    int st;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 99;
}

/* Serve g until n arrivals were judged (admitted if admit) or ms pass. */
static int serve(struct gate *g, int n, bool admit, int ms)
{
    struct pollfd pf[2 + GATE_MAX_PENDING];
    struct gate_arrival out[GATE_MAX_PENDING];
    uint64_t deadline = net_deadline(ms);
    int got = 0;
    while (got < n && net_ms_left(deadline) > 0) {
        int k = gate_pollset(g, pf, 0);
        poll(pf, (nfds_t)k, gate_timeout_ms(g, 50));
        int m = gate_service(g, pf, out);
        for (int i = 0; i < m; i++, got++)
            if (gate_verdict(g, &out[i], admit ? LOOM_SUCCESS : LOOM_ERR_INVALID_ARGUMENT, "not today"))
                close(out[i].fd);
    }
    return got;
}

static void gate_cases(void)
{
    struct loom_addr a = { .family = 4, .ip = { 127, 0, 0, 1 } };
    int lfd;
    char err[256];
    if (net_listen(&a, &lfd, err, sizeof err) != LOOM_SUCCESS) {
        fprintf(stderr, "listen: %s\n", err);
        failures++;
        return;
    }
    struct gate g;
    gate_init(&g, "test gate", key, sizeof key, 0);
    gate_add_listener(&g, lfd);

    /* the right key: admitted */
    pid_t c = connector(&a, key, 0);
    EXPECT(serve(&g, 1, true, 5000) == 1);
    EXPECT(status_of(c) == 0);

    /* admitted by the acceptor's choice, or refused with its reason */
    c = connector(&a, key, 0);
    EXPECT(serve(&g, 1, false, 5000) == 1);
    EXPECT(status_of(c) == 2);

    /* a wrong key: the gate refuses before the owner sees anything */
    uint8_t wrong[32];
    memcpy(wrong, key, sizeof wrong);
    wrong[7] ^= 1;
    unsigned long long before = g.refused;
    c = connector(&a, wrong, 0);
    EXPECT(serve(&g, 1, true, 1500) == 0);
    EXPECT(status_of(c) == 2);
    EXPECT(g.refused == before + 1);

    /* a listener that lacks the key cannot admit: the connector rejects the forgery */
    c = connector(&a, key, 0);
    struct pollfd lp = { .fd = lfd, .events = POLLIN };
    EXPECT(poll(&lp, 1, 5000) == 1);
    int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);     /* blocking: the test plays it slowly */
    struct gate_challenge ch = { .magic = 0x48434d4cu, .version = GATE_VERSION };
    struct gate_hello h;
    struct gate_verdict v = { .magic = 0x44564d4cu, .status = LOOM_SUCCESS };
    EXPECT(send(fd, &ch, sizeof ch, 0) == (ssize_t)sizeof ch);
    EXPECT(recv(fd, &h, sizeof h, MSG_WAITALL) == (ssize_t)sizeof h);
    EXPECT(send(fd, &v, sizeof v, 0) == (ssize_t)sizeof v);
    EXPECT(status_of(c) == 2);
    close(fd);

    /* GATE_MAX_PENDING + 8 idle connections, then an honest one: it gets in, and the
       idlers beyond the limit were dropped, oldest first */
    int idle[GATE_MAX_PENDING + 8];
    for (int i = 0; i < GATE_MAX_PENDING + 8; i++) {
        EXPECT(net_connect(&a, net_deadline(2000), false, &idle[i], err, sizeof err) == LOOM_SUCCESS);
        struct pollfd pf[2 + GATE_MAX_PENDING];
        struct gate_arrival out[GATE_MAX_PENDING];
        int k = gate_pollset(&g, pf, 0);
        poll(pf, (nfds_t)k, 20);
        EXPECT(gate_service(&g, pf, out) == 0);
    }
    EXPECT(g.npend == GATE_MAX_PENDING);
    double t0 = (double)net_now_ns();
    c = connector(&a, key, 0);
    EXPECT(serve(&g, 1, true, 5000) == 1);
    EXPECT(status_of(c) == 0);
    EXPECT(((double)net_now_ns() - t0) / 1e9 < 1.5);   /* not behind the idlers' 2 s deadlines */
    /* the first idlers were dropped: their socket reads the challenge, then EOF */
    char buf[64];
    ssize_t n = recv(idle[0], buf, sizeof buf, 0);
    EXPECT(n == (ssize_t)sizeof(struct gate_challenge));
    n = recv(idle[0], buf, sizeof buf, 0);
    EXPECT(n == 0);

    /* the rest are dropped at their deadline (GATE_HELLO_MS) */
    serve(&g, 1, true, GATE_HELLO_MS + 500);
    EXPECT(g.npend == 0);
    for (int i = 0; i < GATE_MAX_PENDING + 8; i++) close(idle[i]);

    /* a malformed hello: refused at once, with a reason */
    EXPECT(net_connect(&a, net_deadline(2000), false, &fd, err, sizeof err) == LOOM_SUCCESS);
    char junk[80];
    memset(junk, 'x', sizeof junk);
    EXPECT(send(fd, junk, sizeof junk, 0) == (ssize_t)sizeof junk);
    before = g.refused;
    serve(&g, 1, true, 300);
    EXPECT(g.refused == before + 1);
    close(fd);

    gate_close(&g);
    close(lfd);
}

int main(void)
{
    vectors();
    gate_cases();
    printf("auth: %s\n", failures ? "FAIL" : "ok");
    return failures ? 1 : 0;
}
