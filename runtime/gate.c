/* gate.c: the authenticated handshake and the acceptor's set of connections still
 * authenticating (protocol and layouts in gate.h). Used by the rendezvous root
 * (bootstrap.c) and by every rank's progress thread (progress.c), so both listeners
 * behave alike: nothing here blocks on a connection that has not proved itself. */
#include "gate.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "net.h"

#define CHALLENGE_MAGIC 0x48434d4cu /* "LMCH" */
#define HELLO_MAGIC     0x4c484d4cu /* "LMHL" */
#define VERDICT_MAGIC   0x44564d4cu /* "LMVD" */
#define LOG_EVERY_NS    (10 * 1000000000ull)
#define ACCEPTS_PER_TURN 64

/* ---- macs ---- */

void gate_hello_mac(const uint8_t *key, size_t keylen, const struct gate_challenge *ch,
                    const struct gate_hello *h, const void *payload, uint8_t mac[SHA256_BYTES])
{
    static const char label[] = "loom hello";
    const void *p[] = { label, ch, h, payload };
    size_t l[] = { sizeof label - 1, sizeof *ch, offsetof(struct gate_hello, mac), h->payload_len };
    hmac_sha256(key, keylen, payload ? 4 : 3, p, l, mac);
}

static void verdict_mac(const uint8_t *key, size_t keylen, const struct gate_challenge *ch,
                        const struct gate_hello *h, const struct gate_verdict *v, const char *text,
                        uint8_t mac[SHA256_BYTES])
{
    static const char label[] = "loom verdict";
    const void *p[] = { label, ch, h, v, text };
    size_t l[] = { sizeof label - 1, sizeof *ch, offsetof(struct gate_hello, mac),
                   offsetof(struct gate_verdict, mac), v->text_len };
    hmac_sha256(key, keylen, 5, p, l, mac);
}

int gate_parse_hello(const uint8_t *in, size_t len, size_t payload_bytes, struct gate_hello *h,
                     const char **why)
{
    static const uint8_t zero[8];
    if (len < sizeof *h) return 1;
    memcpy(h, in, sizeof *h);
    if (h->magic != HELLO_MAGIC) {
        *why = "not a loom hello";
        return -1;
    }
    if (h->payload_len != payload_bytes || memcmp(h->zero, zero, sizeof zero) != 0) {
        *why = "a malformed hello (another version of loom?)";
        return -1;
    }
    return len < sizeof *h + payload_bytes ? 1 : 0;
}

/* ---- acceptor ---- */

void gate_init(struct gate *g, const char *owner, const uint8_t *key, size_t keylen, size_t payload_bytes)
{
    memset(g, 0, sizeof *g);
    g->owner = owner;
    g->keylen = keylen < GATE_KEY_MAX ? keylen : GATE_KEY_MAX;
    memcpy(g->key, key, g->keylen);
    g->payload_bytes = payload_bytes < GATE_PAYLOAD_MAX ? payload_bytes : GATE_PAYLOAD_MAX;
}

void gate_add_listener(struct gate *g, int fd)
{
    if (fd < 0 || g->nl == 2) return;
    net_set_nonblock(fd);           /* accept until none is left, never wait */
    g->lfd[g->nl++] = fd;
}

void gate_remove_listener(struct gate *g, int fd)
{
    for (int i = 0; i < g->nl; i++)
        if (g->lfd[i] == fd) {
            g->lfd[i] = g->lfd[--g->nl];
            return;
        }
}

void gate_refused(struct gate *g, const char *from, const char *why)
{
    uint64_t now = net_now_ns();
    g->refused++;
    if (g->log_ns != 0 && now - g->log_ns < LOG_EVERY_NS) {
        g->unlogged++;
        return;
    }
    if (g->unlogged)
        LOOM_WARN(LOOM_SUB_NET, "%s refused a connection from %s: %s (and %u more in the last %.0f s)", g->owner,
                  from, why, g->unlogged, (double)(now - g->log_ns) / 1e9);
    else
        LOOM_WARN(LOOM_SUB_NET, "%s refused a connection from %s: %s", g->owner, from, why);
    g->log_ns = now;
    g->unlogged = 0;
}

static void drop(struct gate *g, int i)
{
    close(g->pend[i].fd);
    g->pend[i] = g->pend[--g->npend];
}

void gate_close(struct gate *g)
{
    while (g->npend) drop(g, 0);
    if (g->unlogged)
        LOOM_WARN(LOOM_SUB_NET, "%s refused %u more connections not shown (%llu in all)", g->owner, g->unlogged,
                  g->refused);
    g->unlogged = 0;
}

int gate_pollset(struct gate *g, struct pollfd *pf, int n)
{
    g->pf_first = n;
    bool paused = g->paused_until_ns && net_now_ns() < g->paused_until_ns;
    for (int i = 0; i < g->nl; i++) pf[n++] = (struct pollfd){ .fd = paused ? -1 : g->lfd[i], .events = POLLIN };
    for (int i = 0; i < g->npend; i++) pf[n++] = (struct pollfd){ .fd = g->pend[i].fd, .events = POLLIN };
    return n;
}

int gate_timeout_ms(const struct gate *g, int ms)
{
    uint64_t now = net_now_ns();
    for (int i = 0; i < g->npend; i++) {
        uint64_t end = g->pend[i].since_ns + GATE_HELLO_MS * 1000000ull;
        int left = end > now ? (int)((end - now) / 1000000) + 1 : 0;
        if (left < ms) ms = left;
    }
    if (g->paused_until_ns > now) {
        int left = (int)((g->paused_until_ns - now) / 1000000) + 1;
        if (left < ms) ms = left;
    }
    return ms;
}

/* The connection to drop for room: the oldest. A real peer sends its hello within a
   round trip of being accepted, so it is dropped only if GATE_MAX_PENDING strangers
   arrive within that round trip (and then it retries); preferring connections that
   have sent nothing would drop it first, during that very round trip. */
static int victim(const struct gate *g)
{
    int v = 0;
    for (int i = 1; i < g->npend; i++)
        if (g->pend[i].since_ns < g->pend[v].since_ns) v = i;
    return v;
}

static void accept_some(struct gate *g, int lfd)
{
    for (int k = 0; k < ACCEPTS_PER_TURN; k++) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        int fd = accept4(lfd, (struct sockaddr *)&ss, &sl, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                /* Out of descriptors: free the least promising, or wait a moment
                   rather than spin on a listener that stays readable. */
                if (g->npend > 0) {
                    int v = victim(g);
                    gate_refused(g, g->pend[v].from, "dropped: out of file descriptors");
                    drop(g, v);
                    continue;
                }
                g->paused_until_ns = net_now_ns() + 50 * 1000000ull;
            }
            return;   /* EAGAIN: none left; ECONNABORTED and the like: next turn */
        }
        if (g->npend == GATE_MAX_PENDING) {
            int v = victim(g);
            gate_refused(g, g->pend[v].from, "dropped: too many connections authenticating at once");
            drop(g, v);
        }
        struct gate_pending *p = &g->pend[g->npend];
        memset(p, 0, offsetof(struct gate_pending, in));
        p->fd = fd;
        p->since_ns = net_now_ns();
        net_sockaddr_str((struct sockaddr *)&ss, sl, p->from, sizeof p->from);
        p->ch.magic = CHALLENGE_MAGIC;
        p->ch.version = GATE_VERSION;
        if (!auth_random(p->ch.nonce, sizeof p->ch.nonce) ||
            send(fd, &p->ch, sizeof p->ch, MSG_NOSIGNAL | MSG_DONTWAIT) != (ssize_t)sizeof p->ch) {
            close(fd);   /* a fresh socket takes 24 bytes: this one is already gone */
            continue;
        }
        g->npend++;
    }
}

static void refuse_pending(struct gate *g, int i, const char *why, bool tell)
{
    struct gate_pending *p = &g->pend[i];
    if (tell) {   /* unauthenticated: no mac, and nothing the stranger did not know */
        struct { struct gate_verdict v; char text[GATE_TEXT_MAX]; } m = {
            .v = { .magic = VERDICT_MAGIC, .status = LOOM_ERR_INVALID_ARGUMENT } };
        int len = snprintf(m.text, sizeof m.text, "%s", why);
        m.v.text_len = len < 0 ? 0 : len >= GATE_TEXT_MAX ? GATE_TEXT_MAX - 1 : (uint32_t)len;
        ssize_t n = send(p->fd, &m, sizeof m.v + m.v.text_len, MSG_NOSIGNAL | MSG_DONTWAIT);
        (void)n;
    }
    gate_refused(g, p->from, why);
    drop(g, i);
}

/* Read what pending connection i sent; true when it left the set. */
static bool read_pending(struct gate *g, int i, struct gate_arrival *out, int *nout)
{
    struct gate_pending *p = &g->pend[i];
    size_t want = sizeof(struct gate_hello) + g->payload_bytes;
    for (int guard = 0; guard < 4 && p->got < want; guard++) {
        ssize_t n = recv(p->fd, p->in + p->got, want - p->got, MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
            refuse_pending(g, i, "closed before presenting a hello", false);
            return true;
        }
        if (n < 0) break;
        p->got += (size_t)n;
        const char *why = "";
        struct gate_hello h;
        int st = gate_parse_hello(p->in, p->got, g->payload_bytes, &h, &why);
        if (st < 0) {
            refuse_pending(g, i, why, true);
            return true;
        }
        if (st > 0) continue;
        uint8_t mac[SHA256_BYTES];
        gate_hello_mac(g->key, g->keylen, &p->ch, &h, p->in + sizeof h, mac);
        if (!auth_equal(mac, h.mac, sizeof mac)) {
            refuse_pending(g, i, "wrong secret: the connecting process does not hold this job's secret", true);
            return true;
        }
        struct gate_arrival *a = &out[(*nout)++];
        a->fd = p->fd;
        a->h = h;
        memcpy(a->payload, p->in + sizeof h, g->payload_bytes);
        a->ch = p->ch;
        memcpy(a->from, p->from, sizeof a->from);
        g->pend[i] = g->pend[--g->npend];
        return true;
    }
    return false;
}

int gate_service(struct gate *g, const struct pollfd *pf, struct gate_arrival *out)
{
    int nout = 0;
    uint64_t now = net_now_ns();
    /* Pending ones first: a connection accepted this turn has not been polled yet. */
    for (int i = 0; i < g->npend;) {
        if (read_pending(g, i, out, &nout)) continue;
        if (now - g->pend[i].since_ns > GATE_HELLO_MS * 1000000ull) {
            refuse_pending(g, i, "no valid hello within 2 s", true);
            continue;
        }
        i++;
    }
    if (g->paused_until_ns && now >= g->paused_until_ns) g->paused_until_ns = 0;
    for (int i = 0; i < g->nl; i++)
        if (pf[g->pf_first + i].revents & POLLIN) accept_some(g, g->lfd[i]);
    return nout;
}

bool gate_verdict(struct gate *g, struct gate_arrival *a, loom_result_t status, const char *text)
{
    struct { struct gate_verdict v; char text[GATE_TEXT_MAX]; } m = {
        .v = { .magic = VERDICT_MAGIC, .status = status } };
    if (status != LOOM_SUCCESS && text) m.v.text_len = (uint32_t)snprintf(m.text, sizeof m.text, "%s", text);
    if (m.v.text_len >= GATE_TEXT_MAX) m.v.text_len = GATE_TEXT_MAX - 1;
    verdict_mac(g->key, g->keylen, &a->ch, &a->h, &m.v, m.text, m.v.mac);
    /* Tiny, on a socket with nothing else queued: a short bound is plenty. */
    bool sent = net_send_all(a->fd, &m, sizeof m.v + m.v.text_len, net_deadline(500)) == LOOM_SUCCESS;
    if (status != LOOM_SUCCESS || !sent) {
        close(a->fd);
        a->fd = -1;
    }
    return status == LOOM_SUCCESS && sent;
}

/* ---- connector ---- */

loom_result_t gate_handshake(int fd, const uint8_t *key, size_t keylen, struct gate_hello *h,
                             const void *payload, uint64_t deadline_ns, bool *dropped, char *err, size_t errlen)
{
    bool ignored;
    if (dropped == NULL) dropped = &ignored;
    *dropped = false;
    struct gate_challenge ch;
    loom_result_t r = net_recv_all(fd, &ch, sizeof ch, deadline_ns);
    if (r != LOOM_SUCCESS) {
        snprintf(err, errlen, r == LOOM_ERR_TIMEOUT ? "no challenge before the deadline"
                                                    : "the connection closed before the handshake began");
        *dropped = r == LOOM_ERR_REMOTE;
        return r;
    }
    if (ch.magic != CHALLENGE_MAGIC) {
        snprintf(err, errlen, "the listener there is not loom's");
        return LOOM_ERR_INVALID_USAGE;
    }
    if (ch.version != GATE_VERSION) {
        snprintf(err, errlen, "the listener speaks loom handshake version %u, this process version %u "
                 "(mixed loom versions?)", ch.version, GATE_VERSION);
        return LOOM_ERR_INVALID_USAGE;
    }
    h->magic = HELLO_MAGIC;
    memset(h->zero, 0, sizeof h->zero);
    if (!auth_random(h->nonce, sizeof h->nonce)) {
        snprintf(err, errlen, "getrandom failed");
        return LOOM_ERR_SYSTEM;
    }
    gate_hello_mac(key, keylen, &ch, h, payload, h->mac);
    r = net_send_all(fd, h, sizeof *h, deadline_ns);
    if (r == LOOM_SUCCESS && h->payload_len) r = net_send_all(fd, payload, h->payload_len, deadline_ns);
    struct gate_verdict v;
    char text[GATE_TEXT_MAX];
    if (r == LOOM_SUCCESS) r = net_recv_all(fd, &v, sizeof v, deadline_ns);
    if (r == LOOM_SUCCESS && (v.magic != VERDICT_MAGIC || v.text_len >= GATE_TEXT_MAX)) {
        snprintf(err, errlen, "a malformed answer to the handshake");
        return LOOM_ERR_INVALID_USAGE;
    }
    if (r == LOOM_SUCCESS) r = net_recv_all(fd, text, v.text_len, deadline_ns);
    if (r != LOOM_SUCCESS) {
        snprintf(err, errlen, r == LOOM_ERR_TIMEOUT ? "no answer to the handshake before the deadline"
                                                    : "the connection closed before the handshake was answered");
        *dropped = r == LOOM_ERR_REMOTE;
        return r;
    }
    text[v.text_len] = '\0';
    uint8_t mac[SHA256_BYTES];
    verdict_mac(key, keylen, &ch, h, &v, text, mac);
    if (v.status != LOOM_SUCCESS) {
        snprintf(err, errlen, "%s", text);
        /* a refusal the acceptor could sign carries its own code; a stranger's, or one
           sent to a stranger (wrong secret), cannot be told from an invalid argument */
        bool signed_ = auth_equal(mac, v.mac, sizeof mac);
        return signed_ && v.status > LOOM_SUCCESS && v.status < LOOM_NUM_RESULTS ? (loom_result_t)v.status
                                                                                : LOOM_ERR_INVALID_ARGUMENT;
    }
    if (!auth_equal(mac, v.mac, sizeof mac)) {
        snprintf(err, errlen, "the listener admitted this process without proving it holds the secret "
                 "(an impostor at that address?)");
        return LOOM_ERR_INVALID_ARGUMENT;
    }
    return LOOM_SUCCESS;
}
