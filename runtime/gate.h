/* gate.h: the handshake on every connection loom accepts (the rendezvous root's
 * listener and each rank's), both sides of it, and the set of connections an acceptor
 * is still authenticating.
 *
 * Both sides prove they hold the key (the job's secret, or the communicator's key
 * derived from it) without sending it: each sends an HMAC-SHA256 over the other's
 * fresh nonce. The acceptor speaks first and never waits on one connection: it keeps
 * every connection that has not yet presented a valid hello in a bounded set, each
 * with its own deadline, and serves them from its poll loop, so an idle, slow or
 * hostile client delays nobody. When the set is full the oldest connection is dropped
 * (a real peer sends its hello within one round trip, and retries if it was dropped). Refusals are logged once, then summed up at most every
 * 10 s.
 *
 * CHALLENGE, acceptor -> connector, as soon as it accepts (fixed layout):
 *  offset size field
 *  0      4    magic    "LMCH"
 *  4      4    version  GATE_VERSION
 *  8      16   nonce    fresh random bytes
 * HELLO, connector -> acceptor, then payload_len bytes of payload:
 *  0      4    magic    "LMHL"
 *  4      4    kind     GATE_JOIN (a rank joining the root), CONN_CTRL, CONN_DATA, CONN_DATA_DEV
 *  8      4    src      the connecting rank
 *  12     4    dst      the rank connected to (-1: the root)
 *  16     4    nranks   ranks in the job
 *  20     4    payload_len  must be what the acceptor expects
 *  24     8    zero
 *  32     16   nonce    fresh random bytes of the connector
 *  48     32   mac      HMAC(key, "loom hello" | CHALLENGE | HELLO[0..48) | payload)
 * VERDICT, acceptor -> connector, then text_len bytes of text (why it refused):
 *  0      4    magic    "LMVD"
 *  4      4    status   loom_result_t; LOOM_SUCCESS admits
 *  8      4    text_len < GATE_TEXT_MAX
 *  12     4    zero
 *  16     32   mac      HMAC(key, "loom verdict" | CHALLENGE | HELLO[0..48) | VERDICT[0..16) | text);
 *                       zero when the hello's mac was wrong (there is nothing to prove
 *                       to a stranger), so a connector trusts only an admission
 * All integers little-endian (the hosts' order; loom runs on x86-64 and aarch64).
 */
#ifndef LOOM_GATE_H
#define LOOM_GATE_H

#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "auth.h"
#include "loom.h"

#define GATE_VERSION 2
#define GATE_MAX_PENDING 64     /* connections authenticating at once, per gate    */
#define GATE_HELLO_MS 2000      /* each one's time to present a valid hello        */
#define GATE_PAYLOAD_MAX 512
#define GATE_TEXT_MAX 256
#define GATE_KEY_MAX 32

enum { CONN_CTRL = 1, CONN_DATA = 2, CONN_DATA_DEV = 3 /* a staged device link */, GATE_JOIN = 16 };

struct gate_challenge {
    uint32_t magic, version;
    uint8_t nonce[16];
};

struct gate_hello {
    uint32_t magic, kind;
    int32_t src, dst, nranks;
    uint32_t payload_len;
    uint8_t zero[8];
    uint8_t nonce[16];
    uint8_t mac[SHA256_BYTES];
};

struct gate_verdict {
    uint32_t magic;
    int32_t status;
    uint32_t text_len, zero;
    uint8_t mac[SHA256_BYTES];
};

_Static_assert(sizeof(struct gate_challenge) == 24 && sizeof(struct gate_hello) == 80 &&
               sizeof(struct gate_verdict) == 48, "gate layouts (the tables above)");

/* ---- acceptor ---- */

struct gate_pending {
    int fd;
    uint64_t since_ns;                 /* accepted at                               */
    size_t got;                        /* bytes of hello + payload received          */
    struct gate_challenge ch;
    uint8_t in[sizeof(struct gate_hello) + GATE_PAYLOAD_MAX];
    char from[80];
};

/* An authenticated hello, waiting for the owner's verdict (gate_verdict). */
struct gate_arrival {
    int fd;                            /* non-blocking                               */
    struct gate_hello h;
    uint8_t payload[GATE_PAYLOAD_MAX]; /* h.payload_len bytes                        */
    struct gate_challenge ch;
    char from[80];
};

struct gate {
    const char *owner;                 /* "bootstrap root", "rank 3": log lines      */
    uint8_t key[GATE_KEY_MAX];
    size_t keylen;
    int lfd[2], nl;                    /* listening sockets (not owned)              */
    size_t payload_bytes;              /* what every hello must carry                */
    struct gate_pending pend[GATE_MAX_PENDING];
    int npend;
    int pf_first;                      /* where gate_pollset put its fds             */
    uint64_t paused_until_ns;          /* out of descriptors: accept nothing until   */
    uint64_t log_ns;                   /* last refusal logged                        */
    unsigned unlogged;                 /* refusals since                             */
    unsigned long long refused;        /* all refusals                               */
};

void gate_init(struct gate *g, const char *owner, const uint8_t *key, size_t keylen, size_t payload_bytes);
void gate_add_listener(struct gate *g, int fd);
void gate_remove_listener(struct gate *g, int fd);
/* Close every connection still authenticating; log the refusals not yet told. */
void gate_close(struct gate *g);
/* Append the listeners and pending connections to pf[n..]; returns the new count.
   pf must have room for 2 + GATE_MAX_PENDING more. */
int  gate_pollset(struct gate *g, struct pollfd *pf, int n);
/* ms, lowered to the time left until the next pending deadline. */
int  gate_timeout_ms(const struct gate *g, int ms);
/* After poll(pf): accept, read hellos, drop the expired. Each authenticated hello goes
   into out[] (room for GATE_MAX_PENDING); returns how many. */
int  gate_service(struct gate *g, const struct pollfd *pf, struct gate_arrival *out);
/* Answer an arrival. Admitted (LOOM_SUCCESS): the fd is the caller's; returns false
   (and closes it) if the verdict could not be sent. Refused: text says why; closed. */
bool gate_verdict(struct gate *g, struct gate_arrival *a, loom_result_t status, const char *text);
/* Count a refusal and log it unless one was logged in the last 10 s (the next line
   then says how many were not). */
void gate_refused(struct gate *g, const char *from, const char *why);

/* ---- connector ---- */

/* Run the connector's side on a connected socket (blocking, bounded by the deadline):
   read the challenge, send h (magic, nonce and mac filled in here) and the payload,
   read the verdict and check its mac. LOOM_SUCCESS: admitted. Refused: err holds the
   acceptor's reason, and the code is the one it gave if its verdict proves it holds the
   key, else LOOM_ERR_INVALID_ARGUMENT. *dropped (if not NULL) says whether the
   connection ended before any verdict (LOOM_ERR_REMOTE: the acceptor died, or dropped
   it under a crowd of strangers: worth a retry). LOOM_ERR_TIMEOUT past the deadline. */
loom_result_t gate_handshake(int fd, const uint8_t *key, size_t keylen, struct gate_hello *h,
                             const void *payload, uint64_t deadline_ns, bool *dropped, char *err, size_t errlen);

/* ---- shared by both sides (and the fuzz harness) ---- */

/* The hello's mac over the challenge, the hello's first 48 bytes and the payload. */
void gate_hello_mac(const uint8_t *key, size_t keylen, const struct gate_challenge *ch,
                    const struct gate_hello *h, const void *payload, uint8_t mac[SHA256_BYTES]);
/* Parse a hello plus payload as received (len bytes): 0 complete and well formed,
   1 needs more bytes, -1 malformed (why says what). Checks the layout, not the mac. */
int  gate_parse_hello(const uint8_t *in, size_t len, size_t payload_bytes, struct gate_hello *h,
                      const char **why);

#endif
