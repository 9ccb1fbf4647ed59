/* fuzz_gate: what a stranger sends to a listener (runtime/gate.c), both ways round.
 * acceptor: the bytes arrive on a connection the gate is authenticating; it must drop
 *           or refuse them (no stranger holds the key), never admit, never crash.
 * connector: the bytes are the answer of whoever listens where a rank dials; the rank
 *           must not be admitted by anything that does not prove it holds the key.
 * The first byte picks the side. */
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "gate.h"
#include "net.h"

static const uint8_t key[32] = "fuzzing key, never in the input";

static void acceptor(const unsigned char *data, size_t size)
{
    static struct gate g;
    static struct gate_arrival out[GATE_MAX_PENDING];
    int sp[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) != 0) return;
    if (size > 60000) size = 60000;              /* fits the socket buffer */
    if (write(sp[1], data, size) != (ssize_t)size) abort();
    shutdown(sp[1], SHUT_WR);
    gate_init(&g, "fuzz", key, sizeof key, 200);
    net_set_nonblock(sp[0]);
    g.pend[0] = (struct gate_pending){ .fd = sp[0], .since_ns = net_now_ns(),
                                       .ch = { .magic = 0x48434d4cu, .version = GATE_VERSION } };
    g.npend = 1;
    struct pollfd pf[2 + GATE_MAX_PENDING];
    for (int turn = 0; turn < 8 && g.npend; turn++) {
        int n = gate_pollset(&g, pf, 0);
        for (int i = 0; i < n; i++) pf[i].revents = 0;
        if (gate_service(&g, pf, out) != 0) abort();   /* admitted without the key */
    }
    gate_close(&g);
    close(sp[1]);
}

static void connector(const unsigned char *data, size_t size)
{
    int sp[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) != 0) return;
    if (size > 60000) size = 60000;
    if (write(sp[1], data, size) != (ssize_t)size) abort();
    shutdown(sp[1], SHUT_WR);
    struct gate_hello h = { .kind = 1, .src = 1, .dst = 0, .nranks = 2 };
    char err[256];
    /* a stranger cannot prove it holds the key: never admitted */
    if (gate_handshake(sp[0], key, sizeof key, &h, NULL, net_deadline(50), NULL, err, sizeof err) == LOOM_SUCCESS) abort();
    close(sp[0]);
    close(sp[1]);
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    if (size == 0) return 0;
    if (data[0] & 1) connector(data + 1, size - 1);
    else acceptor(data + 1, size - 1);
    return 0;
}
