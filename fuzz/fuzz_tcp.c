/* fuzz_tcp: the tcp data stream a receiving link reads (transport/tcp.c: a slot_meta
 * header, then its bytes of payload, again and again), through the real receive path
 * over a socket, with an executor taking slots out as they come. The first byte picks
 * the FIFO's geometry. Whatever the bytes: no crash, no write past a slot, a message
 * larger than a slot fails the link, and every slot delivered is exactly the message
 * the stream held there. */
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "transport.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    if (size == 0) return 0;
    uint32_t nslots = 2u << (data[0] & 3);
    size_t slot_bytes = 64u << ((data[0] >> 2) & 3);
    data++;
    size--;
    if (size > 60000) size = 60000;              /* fits the socket buffer */
    int sp[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) != 0) return 0;
    if (write(sp[1], data, size) != (ssize_t)size) abort();
    shutdown(sp[1], SHUT_WR);
    struct loom_conn *c = calloc(1, sizeof *c);
    char err[256];
    if (c == NULL || tcp_link_init(c, nslots, slot_bytes, err, sizeof err) != LOOM_SUCCESS) abort();
    tcp_attach(c, sp[0]);

    size_t at = 0;          /* where the next message starts in data (the oracle) */
    bool failed = false;
    for (int turn = 0; turn < 100000 && !failed && !atomic_load(&c->eof); turn++) {
        bool did = false;
        if (loom_transport_tcp.progress(c, &did, err, sizeof err) != LOOM_SUCCESS) failed = true;
        struct slot_meta m;
        char *slot;
        while ((slot = fifo_recv_slot(&c->fifo, &m)) != NULL) {
            struct slot_meta want;
            if (at + sizeof want > size) abort();              /* a slot from nothing */
            memcpy(&want, data + at, sizeof want);
            if (memcmp(&m, &want, sizeof m) != 0 || m.bytes > slot_bytes) abort();
            if (at + sizeof want + m.bytes > size || memcmp(slot, data + at + sizeof want, m.bytes) != 0) abort();
            at += sizeof want + m.bytes;
            fifo_release(&c->fifo);
        }
        if (!did && !failed) {
            struct slot_meta next;
            /* nothing moved: the stream must have ended, or stalled on a bad header */
            if (at + sizeof next <= size) {
                memcpy(&next, data + at, sizeof next);
                if (next.bytes <= slot_bytes && at + sizeof next + next.bytes <= size) continue;
            }
            break;
        }
    }
    /* a message too big for a slot ends the link with an error, never a delivery */
    if (at + sizeof(struct slot_meta) <= size) {
        struct slot_meta next;
        memcpy(&next, data + at, sizeof next);
        if (next.bytes > slot_bytes && !failed) abort();
    }
    loom_transport_tcp.close(c);
    free(c);
    close(sp[1]);
    return 0;
}
