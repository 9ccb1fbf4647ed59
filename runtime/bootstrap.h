/* bootstrap.h: root-based TCP rendezvous. The root (a thread started by loom_get_id,
 * or by rank 0 under a launcher) admits one connection per rank through the gate
 * (runtime/gate.c: each proves it holds the id's secret), answers every rank with the
 * table of all peers and a fresh session nonce, then holds them at a barrier until
 * every rank says it is listening, so no rank connects to a peer that is not. */
#ifndef LOOM_BOOTSTRAP_H
#define LOOM_BOOTSTRAP_H

#include "loom.h"
#include "net.h"
#include "transport.h"

/* Layout of loom_id_t.internal (offset/size):
 *  0   4   magic    "LMID"
 *  4   4   version  1
 *  8   24  root     struct loom_addr
 *  32  16  secret
 *  48  80  zero
 */
struct boot_id {
    uint32_t magic;
    uint32_t version;
    struct loom_addr root;
    uint8_t secret[16];
};
#define BOOT_ID_MAGIC 0x44494d4cu /* "LMID" */

void boot_id_pack(loom_id_t *id, const struct boot_id *b);
loom_result_t boot_id_unpack(const loom_id_t *id, struct boot_id *b);

/* Start a root listening on b->root (port 0: any; updated). The root serves one
   group of ranks, then exits; it gives up after timeout_ms. */
loom_result_t boot_root_start(struct boot_id *b, int64_t timeout_ms, char *err, size_t errlen);

/* A rank's side of one rendezvous. */
struct boot_join {
    int fd;                      /* to the root, until boot_ready                 */
    uint8_t session[16];         /* fresh per rendezvous: the comm's key from it  */
    uint8_t nonce[16];           /* my hello's: the root's replies carry it       */
    uint8_t secret[16];
    char root_s[80];
};

/* Join the group: present my info, receive everyone's (table: nranks entries). On
   success the root waits for boot_ready (or boot_leave). */
loom_result_t boot_join(const struct boot_id *b, int nranks, int rank, const struct loom_peer_info *me,
                        struct loom_peer_info *table, struct boot_join *j, uint64_t deadline_ns,
                        char *err, size_t errlen);
/* I listen where the table says: wait until every rank does. Closes the connection. */
loom_result_t boot_ready(struct boot_join *j, uint64_t deadline_ns, char *err, size_t errlen);
/* Give up after boot_join (the root then tells the others). */
void boot_leave(struct boot_join *j);

/* This process's identity (hostname, host id, pid). */
void boot_self_info(struct loom_peer_info *me);

#endif
