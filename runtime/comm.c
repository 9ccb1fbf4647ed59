/* comm.c: communicator life cycle: ids, init (explicit and from launcher variables),
 * split, destroy, abort, and the connection table.
 *
 * Init: pick the interface, open this rank's listener, join the rendezvous (every
 * rank learns every rank's host, pid and listener), start the progress thread and
 * build the control mesh. Data links are connected on first use (comm_conn), shm for
 * peers on the same host, tcp otherwise (LOOM_TRANSPORT forces one).
 * Teardown order: progress thread (flush tcp, BYE), then links, then the listener.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "auth.h"
#include "bootstrap.h"
#include "comm.h"
#include "gate.h"
#include "gpu.h"
#include "env.h"
#include "exec_cuda.h"
#include "log.h"

/* ---- ids ---- */

int64_t comm_timeout_ms(void) { return loom_env_int("LOOM_TIMEOUT_MS"); }

loom_result_t comm_check_env(const char *call)
{
    static atomic_bool warned;
    char err[400], warn[1024];
    bool ok = loom_env_check(err, sizeof err, warn, sizeof warn);
    if (warn[0] && !atomic_exchange(&warned, true)) LOOM_WARN(LOOM_SUB_ENV, "%s", warn);
    return ok ? LOOM_SUCCESS : loom_set_error(NULL, LOOM_ERR_INVALID_ARGUMENT, "%s: %s", call, err);
}

loom_result_t comm_get_id(loom_id_t *id, bool local)
{
    struct boot_id b = { .magic = BOOT_ID_MAGIC, .version = 1 };
    char err[256], ifname[64] = "lo";
    if (!auth_random(b.secret, sizeof b.secret)) return loom_set_error(NULL, LOOM_ERR_SYSTEM, "loom_get_id: getrandom failed");
    loom_result_t r = LOOM_SUCCESS;
    if (local) b.root = (struct loom_addr){ .family = 4, .ip = { 127, 0, 0, 1 } };
    else r = net_pick_interface(&b.root, ifname, sizeof ifname, err, sizeof err);
    if (r == LOOM_SUCCESS) r = boot_root_start(&b, comm_timeout_ms(), err, sizeof err);
    if (r != LOOM_SUCCESS) return loom_set_error(NULL, r, "loom_get_id: %s", err);
    boot_id_pack(id, &b);
    char as[80];
    net_addr_str(&b.root, as, sizeof as);
    LOOM_INFO(LOOM_SUB_BOOT, "rendezvous root listening on %s (%s)", as, ifname);
    return LOOM_SUCCESS;
}

loom_result_t loom_get_id(loom_id_t *id)
{
    if (id == NULL) return loom_set_error(NULL, LOOM_ERR_INVALID_ARGUMENT, "loom_get_id: id is NULL");
    loom_result_t r = comm_check_env("loom_get_id");
    return r == LOOM_SUCCESS ? comm_get_id(id, false) : r;
}

/* "loom1:<addr>:<32 hex digits of the secret>" */
loom_result_t loom_id_to_string(const loom_id_t *id, char *buf, size_t len)
{
    struct boot_id b;
    if (id == NULL || buf == NULL || boot_id_unpack(id, &b) != LOOM_SUCCESS)
        return loom_set_error(NULL, LOOM_ERR_INVALID_ARGUMENT, "loom_id_to_string: not a loom id");
    char as[80], hex[33];
    net_addr_str(&b.root, as, sizeof as);
    auth_hex_encode(b.secret, sizeof b.secret, hex);
    if ((size_t)snprintf(buf, len, "loom1:%s:%s", as, hex) >= len)
        return loom_set_error(NULL, LOOM_ERR_INVALID_ARGUMENT, "loom_id_to_string: buffer of %zu bytes "
                              "too small (need LOOM_ID_STRLEN)", len);
    return LOOM_SUCCESS;
}

loom_result_t loom_id_from_string(const char *s, loom_id_t *id)
{
    struct boot_id b = { .magic = BOOT_ID_MAGIC, .version = 1 };
    char addr[128], err[256];
    if (s == NULL || id == NULL || strncmp(s, "loom1:", 6) != 0) goto bad;
    const char *colon = strrchr(s, ':');
    if (colon == NULL || colon < s + 6 || (size_t)(colon - s - 6) >= sizeof addr) goto bad;
    memcpy(addr, s + 6, (size_t)(colon - s - 6));
    addr[colon - s - 6] = '\0';
    if (!auth_hex_decode(colon + 1, b.secret, sizeof b.secret)) goto bad;
    if (net_addr_parse(addr, true, &b.root, err, sizeof err) != LOOM_SUCCESS)
        return loom_set_error(NULL, LOOM_ERR_INVALID_ARGUMENT, "loom_id_from_string: %s", err);
    boot_id_pack(id, &b);
    return LOOM_SUCCESS;
bad:
    return loom_set_error(NULL, LOOM_ERR_INVALID_ARGUMENT,
                          "loom_id_from_string: a string of %zu characters (not shown: it may hold a secret) is "
                          "not 'loom1:<host>:<port>:<32 hex digits>'", s ? strlen(s) : 0);
}

/* ---- references, names, connections ---- */

void comm_ref(struct loom_comm *c) { atomic_fetch_add(&c->refs, 1); }

void comm_unref(struct loom_comm *c)
{
    if (atomic_fetch_sub(&c->refs, 1) != 1) return;
    free(c->peers);
    free((void *)c->send);
    free((void *)c->recv);
    free((void *)c->peer_gone);
    free((void *)c->links_to);
    pthread_mutex_destroy(&c->conn_lock);
    pthread_mutex_destroy(&c->shm_lock);
    pthread_mutex_destroy(&c->err_lock);
    pthread_mutex_destroy(&c->order_lock);
    pthread_cond_destroy(&c->order_cv);
    free(c);
}

void comm_peer_name(const struct loom_comm *c, int peer, char *buf, size_t len)
{
    if (c->peers && peer >= 0 && peer < c->nranks)
        snprintf(buf, len, "rank %d (%s pid %d)", peer, c->peers[peer].host, (int)c->peers[peer].pid);
    else
        snprintf(buf, len, "rank %d", peer);
}

const struct loom_transport *comm_link_transport(const struct loom_comm *c, int peer)
{
    const struct loom_peer_info *me = &c->peers[c->rank], *p = &c->peers[peer];
    if (c->cfg.force == 2) return &loom_transport_tcp;
    if (loom_transport_shm.can_connect(me, p)) return &loom_transport_shm;
    return &loom_transport_tcp;
}

loom_result_t conn_connect(struct loom_comm *c, int peer, bool is_send, bool dev, struct loom_conn **out)
{
    struct loom_conn *_Atomic *tab = (is_send ? c->send : c->recv) + (dev ? c->nranks : 0);
    struct loom_conn *conn = atomic_load_explicit(&tab[peer], memory_order_acquire);
    if (conn) {
        *out = conn;
        return LOOM_SUCCESS;
    }
    loom_result_t r = LOOM_SUCCESS;
    char err[320] = "", name[128];
    pthread_mutex_lock(&c->conn_lock);
    conn = atomic_load(&tab[peer]);
    if (conn == NULL) {
        conn = calloc(1, sizeof *conn);
        if (conn == NULL) {
            r = LOOM_ERR_SYSTEM;
            snprintf(err, sizeof err, "out of memory");
        } else {
            *conn = (struct loom_conn){ .peer = peer, .is_send = is_send, .dev = dev, .comm = c,
                                        .tp = dev ? &loom_transport_tcp : comm_link_transport(c, peer) };
            memset(conn->last_way, -1, sizeof conn->last_way);
            r = is_send ? conn->tp->connect_send(conn, err, sizeof err)
                        : conn->tp->connect_recv(conn, err, sizeof err);
        }
        if (r == LOOM_SUCCESS) {
            atomic_store_explicit(&tab[peer], conn, memory_order_release);
            LOOM_INFO(LOOM_SUB_INIT, "%s link %s rank %d connected%s", conn->tp->name,
                      is_send ? "to" : "from", peer, dev ? " (device buffers, staged)" : "");
        } else {
            free(conn);
            conn = NULL;
        }
    }
    pthread_mutex_unlock(&c->conn_lock);
    *out = conn;
    if (r == LOOM_SUCCESS) return r;
    /* Refused: the peer has left, and its control socket carries why. Give the
       progress thread (which may need conn_lock, hence outside it) a moment to read
       that before blaming the link. */
    for (int i = 0; i < 200 && r == LOOM_ERR_REMOTE && atomic_load(&c->status) == LOOM_SUCCESS; i++)
        usleep(1000);
    comm_peer_name(c, peer, name, sizeof name);
    comm_fail(c, r, true, "cannot connect the %slink %s %s: %s", dev ? "staged device " : "", is_send ? "to" : "from",
              name, err);
    return (loom_result_t)atomic_load(&c->status);
}


loom_result_t comm_dev_conn(struct loom_comm *c, int peer, bool is_send, struct loom_conn **out)
{
    return conn_connect(c, peer, is_send, true, out);
}

loom_result_t comm_dial(struct loom_comm *c, int peer, uint32_t kind, uint64_t deadline_ns, int *fd_out,
                        char *err, size_t errlen)
{
    const struct loom_addr *to = kind == CONN_CTRL && comm_local(c, peer) ? &c->peers[peer].uaddr
                                                                          : &c->peers[peer].addr;
    char why[256] = "", as[80];
    loom_result_t r;
    /* A gate drops a connection that waits behind a crowd of strangers: try again,
       until the deadline (the loop's count only bounds it further). */
    for (int attempt = 0, backoff_ms = 1; attempt < 1000000; attempt++) {
        int fd;
        r = net_connect(to, deadline_ns, false, &fd, why, sizeof why);
        if (r != LOOM_SUCCESS) break;
        struct gate_hello h = { .kind = kind, .src = c->rank, .dst = peer, .nranks = c->nranks };
        bool dropped;
        r = gate_handshake(fd, c->key, sizeof c->key, &h, NULL, deadline_ns, &dropped, why, sizeof why);
        if (r == LOOM_SUCCESS) {
            *fd_out = fd;
            return LOOM_SUCCESS;
        }
        close(fd);
        if (!dropped || net_ms_left(deadline_ns) == 0) break;
        usleep((useconds_t)backoff_ms * 1000);
        if (backoff_ms < 100) backoff_ms *= 2;
    }
    net_addr_str(to, as, sizeof as);
    snprintf(err, errlen, "%s: %s", as, why);
    return r;
}

/* ---- init ---- */

/* Settings are checked against the table first (comm_check_env): here they only map. */
static void read_config(struct loom_config *cfg)
{
    cfg->timeout_ms = comm_timeout_ms();
    cfg->heartbeat_ms = loom_env_int("LOOM_HEARTBEAT_MS");
    int64_t spin = loom_env_int("LOOM_SPIN_US");
    cfg->spin_ns = (spin < 0 ? 50 : spin) * 1000;
    const char *t = loom_env_str("LOOM_TRANSPORT");
    cfg->force = strcmp(t, "tcp") == 0 ? 2 : strcmp(t, "shm") == 0 ? 1 : 0;
    cfg->remote_read = (int)loom_env_int("LOOM_CMA");
    const char *a = loom_env_str("LOOM_ALGO");
    cfg->algo = strcmp(a, "ring") == 0 ? 1 : strcmp(a, "direct") == 0 ? 2 : 0;
}

static void close_listeners(struct loom_comm *c)
{
    if (c->tcp_fd >= 0) close(c->tcp_fd);
    if (c->unix_fd >= 0) close(c->unix_fd);
    c->tcp_fd = c->unix_fd = -1;
}

static void teardown(struct loom_comm *c, bool orderly)
{
    /* Kernels first: one on a staged link needs the progress thread until it ends
       (and its end runs a host function that may still use the thread). */
    cuda_comm_free(c);
    progress_stop(c->prog, orderly);
    for (int r = 0; r < 2 * c->nranks; r++) {
        struct loom_conn *s = atomic_exchange(&c->send[r], NULL), *v = atomic_exchange(&c->recv[r], NULL);
        if (s) { s->tp->close(s); free(s); }
        if (v) { v->tp->close(v); free(v); }
    }
    shm_release(c);
    close_listeners(c);
}

/* The comm's key, from the id's secret and the rendezvous' fresh session: a reused
   id still gives every communicator a key of its own. The tag names segments in
   /dev/shm, which every local user can list: derived, so it tells nothing of the key. */
static void derive_key(struct loom_comm *c, const uint8_t *secret, const uint8_t *session)
{
    static const char label[] = "loom comm", tag_label[] = "loom tag";
    const void *p[] = { label, session };
    size_t l[] = { sizeof label - 1, 16 };
    hmac_sha256(secret, 16, 2, p, l, c->key);
    uint8_t t[SHA256_BYTES];
    const void *tp[] = { tag_label };
    size_t tl[] = { sizeof tag_label - 1 };
    hmac_sha256(c->key, sizeof c->key, 1, tp, tl, t);
    for (int i = 0; i < 8; i++) snprintf(c->tag + 2 * i, 3, "%02x", t[i]);
}

/* After the rendezvous: listen on tcp only where a peer needs it (one on another host,
   or tcp forced); the unix listener only where a peer shares this host. */
static loom_result_t open_listeners(struct loom_comm *c, char *err, size_t errlen)
{
    bool remote = false;
    for (int i = 0; i < c->nranks; i++)
        if (!comm_local(c, i)) {
            remote = true;
            if (net_is_loopback(&c->peers[c->rank].addr)) {
                char as[80];
                net_addr_str(&c->peers[c->rank].addr, as, sizeof as);
                snprintf(err, errlen, "this rank would talk to rank %d on another host (%s) from a loopback address "
                         "(%s): choose an interface with LOOM_SOCKET_IFNAME", i, c->peers[i].host, as);
                return LOOM_ERR_INVALID_USAGE;
            }
        }
    if (remote || c->cfg.force == 2) {
        loom_result_t r = net_listen_on(c->tcp_fd, err, errlen);
        if (r != LOOM_SUCCESS) return r;
    } else {
        close(c->tcp_fd);
        c->tcp_fd = -1;
    }
    if (c->local_nranks == 1) {
        close(c->unix_fd);
        c->unix_fd = -1;
    }
    return LOOM_SUCCESS;
}

static loom_result_t comm_create(loom_comm_t *out, int nranks, const struct boot_id *b, int rank)
{
    char err[512] = "", ifname[64];
    struct loom_comm *c = calloc(1, sizeof *c);
    if (c == NULL) return loom_set_error(NULL, LOOM_ERR_SYSTEM, "loom_comm_init: out of memory");
    c->rank = rank;
    c->nranks = nranks;
    c->tcp_fd = c->unix_fd = -1;
    c->refs = 1;
    pthread_mutex_init(&c->conn_lock, NULL);
    pthread_mutex_init(&c->shm_lock, NULL);
    pthread_mutex_init(&c->err_lock, NULL);
    pthread_mutex_init(&c->order_lock, NULL);
    pthread_cond_init(&c->order_cv, NULL);
    c->peers = calloc((size_t)nranks, sizeof *c->peers);
    c->send = calloc(2 * (size_t)nranks, sizeof *c->send);
    c->recv = calloc(2 * (size_t)nranks, sizeof *c->recv);
    c->peer_gone = calloc((size_t)nranks, sizeof *c->peer_gone);
    c->links_to = calloc((size_t)nranks, sizeof *c->links_to);
    loom_log_set_rank(rank);
    static atomic_bool banner;
    if (!atomic_exchange(&banner, true))
        LOOM_INFO(LOOM_SUB_INIT, "loom version %d.%d.%d", LOOM_VERSION_MAJOR, LOOM_VERSION_MINOR, LOOM_VERSION_PATCH);
    read_config(&c->cfg);
    loom_result_t r = LOOM_ERR_SYSTEM;
    if (!c->peers || !c->send || !c->recv || !c->peer_gone || !c->links_to) {
        snprintf(err, sizeof err, "out of memory");
        goto out_free;
    }

    struct loom_peer_info me;
    boot_self_info(&me);
    me.rank = rank;
    /* the table's ranges are the FIFOs' limits */
    _Static_assert(FIFO_MAX_SLOTS == 64 && CUDA_MAX_SLOTS == 64 && CUDA_MAX_CHANNELS == 32,
                   "LOOM_NSLOTS, LOOM_CUDA_NSLOTS and LOOM_CUDA_CHANNELS ranges in runtime/env.c");
    me.nslots = (uint32_t)loom_env_int("LOOM_NSLOTS");
    me.slot_bytes = (uint32_t)loom_env_int("LOOM_SLOT_BYTES");
    me.cuda_nchan = (uint32_t)loom_env_int("LOOM_CUDA_CHANNELS");
    me.cuda_nslots = (uint32_t)loom_env_int("LOOM_CUDA_NSLOTS");
    me.cuda_slot_bytes = (uint32_t)loom_env_int("LOOM_CUDA_SLOT_BYTES");
    me.transport = c->cfg.force;
    me.probe_addr = (uint64_t)(uintptr_t)c->key;
    const char *proto = loom_env_str("LOOM_PROTO");
    me.cuda_proto = strcmp(proto, "simple") == 0 ? PROTO_SIMPLE : strcmp(proto, "ll") == 0 ? PROTO_LL : -1;
    /* The tcp port is taken now (its address goes in the table) but not listened on
       until the table says a peer needs it; the unix listener has a random name that
       only the table tells. */
    r = net_pick_interface(&me.addr, ifname, sizeof ifname, err, sizeof err);
    if (r == LOOM_SUCCESS) r = net_bind(&me.addr, &c->tcp_fd, err, sizeof err);
    if (r == LOOM_SUCCESS && !net_unix_addr(&me.uaddr)) {
        snprintf(err, sizeof err, "getrandom failed");
        r = LOOM_ERR_SYSTEM;
    }
    if (r == LOOM_SUCCESS) r = net_listen(&me.uaddr, &c->unix_fd, err, sizeof err);
    if (r != LOOM_SUCCESS) goto out_close;
    uint64_t deadline = net_deadline(c->cfg.timeout_ms);
    struct boot_join join;
    r = boot_join(b, nranks, rank, &me, c->peers, &join, deadline, err, sizeof err);
    if (r != LOOM_SUCCESS) goto out_close;
    derive_key(c, b->secret, join.session);

    for (int i = 0; i < nranks; i++) c->local_nranks += comm_local(c, i);
    /* Waits spin (cfg.spin_ns, 50 us by default). When local ranks outnumber cores the
       spin yields the core at every turn, so the peer it waits for runs at once: 4 ranks
       on 2 cores, 8-byte all-reduce 24 us sleeping at once, 5.3 us yield-spinning; 8
       ranks 67 -> 16 us. A plain spin there would steal that peer's core instead. */
    c->cfg.spin_yield = c->local_nranks > sysconf(_SC_NPROCESSORS_ONLN);
    c->cfg.nslots = c->peers[0].nslots;          /* one geometry for the whole comm */
    c->cfg.slot_bytes = c->peers[0].slot_bytes;
    /* both ends of a link must pick the same transport (and device staging) */
    if (c->cfg.force != c->peers[0].transport)
        LOOM_WARN(LOOM_SUB_ENV, "LOOM_TRANSPORT differs from rank 0's; rank 0's holds for this communicator");
    c->cfg.force = c->peers[0].transport;
    if (c->cfg.force == 1)
        for (int i = 0; i < nranks; i++)
            if (!comm_local(c, i)) {
                snprintf(err, sizeof err, "LOOM_TRANSPORT=shm but rank %d is on another host (%s)", i,
                         c->peers[i].host);
                r = LOOM_ERR_INVALID_USAGE;
            }
    if (r == LOOM_SUCCESS) r = open_listeners(c, err, sizeof err);
    if (r == LOOM_SUCCESS) r = boot_ready(&join, deadline, err, sizeof err);
    boot_leave(&join);
    if (r != LOOM_SUCCESS) goto out_close;

    r = progress_start(c, err, sizeof err);
    if (r == LOOM_SUCCESS) r = progress_wait_mesh(c, deadline, err, sizeof err);
    if (r != LOOM_SUCCESS) goto out_teardown;
    char as[80];
    net_addr_str(c->tcp_fd >= 0 ? &me.addr : &me.uaddr, as, sizeof as);
    LOOM_INFO(LOOM_SUB_INIT, "rank %d of %d ready: listening on %s%s%s, %d local ranks, FIFO %u x %zu bytes", rank,
              nranks, as, c->tcp_fd >= 0 ? " on " : "", c->tcp_fd >= 0 ? ifname : "", c->local_nranks,
              c->cfg.nslots, c->cfg.slot_bytes);
    *out = c;
    return LOOM_SUCCESS;

out_teardown:
    teardown(c, false);
    goto out_free;
out_close:
    close_listeners(c);
out_free:
    loom_set_error(NULL, r, "loom_comm_init (rank %d of %d): %s", rank, nranks, err);
    comm_unref(c);
    return r;
}

loom_result_t loom_comm_init(loom_comm_t *comm, int nranks, const loom_id_t *id, int rank)
{
    struct boot_id b;
    if (comm == NULL || id == NULL)
        return loom_set_error(NULL, LOOM_ERR_INVALID_ARGUMENT, "loom_comm_init: NULL %s", comm ? "id" : "comm");
    if (nranks < 1 || nranks > LOOM_MAX_RANKS || rank < 0 || rank >= nranks)
        return loom_set_error(NULL, LOOM_ERR_INVALID_ARGUMENT,
                              "loom_comm_init: rank %d of %d ranks (want 1 <= nranks <= %d, 0 <= rank < nranks)",
                              rank, nranks, LOOM_MAX_RANKS);
    if (boot_id_unpack(id, &b) != LOOM_SUCCESS)
        return loom_set_error(NULL, LOOM_ERR_INVALID_ARGUMENT, "loom_comm_init: id was not made by loom_get_id");
    loom_result_t r = comm_check_env("loom_comm_init");
    return r == LOOM_SUCCESS ? comm_create(comm, nranks, &b, rank) : r;
}

/* ---- split ---- */

struct split_entry { int32_t color, key, rank; };

static int by_key(const void *a, const void *b)
{
    const struct split_entry *x = a, *y = b;
    return x->key != y->key ? (x->key < y->key ? -1 : 1) : (x->rank < y->rank ? -1 : x->rank > y->rank);
}

loom_result_t loom_comm_split(loom_comm_t c, int color, int key, loom_comm_t *newcomm)
{
    if (c == NULL || newcomm == NULL)
        return loom_set_error(c, LOOM_ERR_INVALID_ARGUMENT, "loom_comm_split: NULL %s", c ? "newcomm" : "comm");
    int n = c->nranks;
    struct split_entry mine = { color < 0 ? -1 : color, key, c->rank };
    struct split_entry *all = malloc(sizeof *all * (size_t)n);
    loom_id_t *ids = malloc(sizeof *ids * (size_t)n);
    loom_result_t r = LOOM_ERR_SYSTEM;
    if (all == NULL || ids == NULL) {
        loom_set_error(c, r, "loom_comm_split: out of memory");
        goto out;
    }
    r = loom_allgather(&mine, all, sizeof mine / sizeof(int32_t), LOOM_INT32, c, NULL);
    if (r != LOOM_SUCCESS) goto out;
    int members = 0, newrank = 0;
    struct split_entry *group = all;       /* compacted in place: my color, by key */
    for (int i = 0; i < n; i++)
        if (mine.color >= 0 && all[i].color == mine.color) group[members++] = all[i];
    qsort(group, (size_t)members, sizeof *group, by_key);
    for (int i = 0; i < members; i++)
        if (group[i].rank == c->rank) newrank = i;
    /* the new group's root listens on loopback when every member is on this host */
    bool local = true;
    for (int i = 0; i < members; i++) local &= comm_local(c, group[i].rank);
    loom_id_t myid;
    memset(&myid, 0, sizeof myid);
    if (mine.color >= 0 && newrank == 0 && (r = comm_get_id(&myid, local)) != LOOM_SUCCESS) {
        /* still take part in the exchange so the others are not left waiting */
        memset(&myid, 0, sizeof myid);
    }
    loom_result_t rg = loom_allgather(&myid, ids, sizeof myid, LOOM_UINT8, c, NULL);
    if (rg != LOOM_SUCCESS) { r = rg; goto out; }
    if (mine.color < 0) {
        *newcomm = NULL;
        r = LOOM_SUCCESS;
        goto out;
    }
    r = loom_comm_init(newcomm, members, &ids[group[0].rank], newrank);
out:
    free(all);
    free(ids);
    return r;
}

/* ---- destroy, abort, queries ---- */

/* Wait until the calls issued so far have run or left (they all have deadlines; after
   a failure they leave at once), including those queued on streams. */
static void drain(struct loom_comm *c, int64_t limit_ms)
{
    uint64_t deadline = net_deadline(limit_ms);
    pthread_mutex_lock(&c->order_lock);
    atomic_fetch_add(&c->order_waiters, 1);
    while (!issue_settled(c) && net_ms_left(deadline) > 0) net_cond_wait_ms(&c->order_cv, &c->order_lock, 5);
    atomic_fetch_sub(&c->order_waiters, 1);
    atomic_store(&c->torn_down, true);
    pthread_mutex_unlock(&c->order_lock);
}

loom_result_t loom_comm_destroy(loom_comm_t c)
{
    if (c == NULL) return loom_set_error(NULL, LOOM_ERR_INVALID_ARGUMENT, "loom_comm_destroy: comm is NULL");
    drain(c, c->cfg.timeout_ms);
    bool orderly = atomic_load(&c->status) == LOOM_SUCCESS && issue_settled(c);
    /* After a failure nobody may be left waiting on us: say why before leaving. */
    teardown(c, orderly);
    LOOM_INFO(LOOM_SUB_INIT, "communicator destroyed (rank %d of %d)", c->rank, c->nranks);
    comm_unref(c);
    return LOOM_SUCCESS;
}

loom_result_t loom_comm_abort(loom_comm_t c)
{
    if (c == NULL) return loom_set_error(NULL, LOOM_ERR_INVALID_ARGUMENT, "loom_comm_abort: comm is NULL");
    atomic_store(&c->aborting, true);
    comm_fail(c, LOOM_ERR_ABORTED, true, "rank %d aborted the communicator (loom_comm_abort)", c->rank);
    /* Waiters re-check the status at least every 10 ms; give them a moment, then
       tear down regardless (bounded: abort never hangs). */
    drain(c, 2000);
    if (!issue_settled(c)) {
        /* A call still runs (stuck in a system call?), or waits in a stream whose worker
           is busy elsewhere: freeing the links under it would crash it. Leak them
           rather; the status makes every later call fail at once. */
        LOOM_WARN(LOOM_SUB_INIT, "loom_comm_abort: a call is still running or queued after 2 s; leaking its resources");
        return LOOM_SUCCESS;
    }
    teardown(c, false);
    comm_unref(c);
    return LOOM_SUCCESS;
}

loom_result_t loom_comm_get_error(loom_comm_t c)
{
    if (c == NULL) return loom_set_error(NULL, LOOM_ERR_INVALID_ARGUMENT, "loom_comm_get_error: comm is NULL");
    return (loom_result_t)atomic_load(&c->status);
}

int loom_comm_rank(loom_comm_t c) { return c ? c->rank : -1; }
int loom_comm_size(loom_comm_t c) { return c ? c->nranks : -1; }
