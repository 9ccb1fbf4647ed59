/* bootstrap.h: root-based TCP rendezvous. The root (a thread started by loom_get_id,
 * or by rank 0 under a launcher) collects one HELLO per rank, checks the 128-bit
 * secret, and answers every rank with the table of all peers. */
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

/* Join the group: send my info, receive everyone's (table: nranks entries). */
loom_result_t boot_join(const struct boot_id *b, int nranks, int rank,
                        const struct loom_peer_info *me, struct loom_peer_info *table,
                        uint64_t deadline_ns, char *err, size_t errlen);

/* This process's identity (hostname, host id, pid). */
void boot_self_info(struct loom_peer_info *me);
/* 16 random bytes from getrandom(2). */
loom_result_t boot_random(uint8_t *buf, size_t len);
bool boot_secret_equal(const uint8_t *a, const uint8_t *b);   /* constant time */

#endif
