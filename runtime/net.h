/* net.h: sockets for bootstrap, the control mesh and the tcp transport.
 * Address form on the wire, interface choice (LOOM_SOCKET_IFNAME, NCCL's syntax),
 * and blocking helpers that always take a deadline. Not a transport: tcp.c moves
 * FIFO slots; this file only opens, connects and reads/writes whole buffers. */
#ifndef LOOM_NET_H
#define LOOM_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/socket.h>
#include "loom.h"

/* A socket address as sent between hosts (fixed layout):
 *  offset size field
 *  0      2    family   4 or 6, or NET_UNIX: a Linux abstract unix socket (one host,
 *                       one network namespace), named "loom-" + the hex of ip[16]
 *  2      2    port     host byte order (0 for NET_UNIX)
 *  4      4    scope    IPv6 scope id (0 otherwise)
 *  8      16   ip       IPv4 in the first 4 bytes, or IPv6, or the unix name's 16 bytes
 */
#define NET_UNIX 1
struct loom_addr {
    uint16_t family;
    uint16_t port;
    uint32_t scope;
    uint8_t  ip[16];
};

uint64_t net_now_ns(void);                   /* CLOCK_MONOTONIC */
uint64_t net_deadline(int64_t timeout_ms);   /* now + timeout */
int      net_ms_left(uint64_t deadline_ns);  /* >= 0, capped at INT32 range */

/* One slice of a bounded wait on a condition variable (callers loop and re-check). */
void     net_cond_wait_ms(pthread_cond_t *cv, pthread_mutex_t *lock, int ms);

void net_addr_to_sockaddr(const struct loom_addr *a, struct sockaddr_storage *ss, socklen_t *len);
void net_addr_from_sockaddr(struct loom_addr *a, const struct sockaddr *sa);
/* "1.2.3.4:5", "[fd00::1]:5" or "unix:@loom-<32 hex digits>" */
void net_addr_str(const struct loom_addr *a, char *buf, size_t len);
/* The same for an address the kernel returned (accept, getpeername). */
void net_sockaddr_str(const struct sockaddr *sa, socklen_t len, char *buf, size_t buflen);
/* A fresh abstract unix address with a random name (nobody can guess it to squat it). */
bool net_unix_addr(struct loom_addr *a);
bool net_is_loopback(const struct loom_addr *a);
/* Parses "host:port", "[v6]:port" or "v4:port"; host names are resolved unless numeric
   (then only addresses are taken: an id string never makes loom ask a name server). */
loom_result_t net_addr_parse(const char *s, bool numeric, struct loom_addr *a, char *err, size_t errlen);

/* The address of the interface this process communicates on (port 0): chosen by
   LOOM_SOCKET_IFNAME and LOOM_SOCKET_FAMILY, loopback only when it is all there is.
   ifname receives the interface name. */
loom_result_t net_pick_interface(struct loom_addr *a, char *ifname, size_t iflen,
                                 char *err, size_t errlen);
/* NCCL_SOCKET_IFNAME matching: "eth,ib" prefixes, "^docker,lo" excludes,
   "=eth0" exact. Exposed for tests. */
bool net_ifname_matches(const char *spec, const char *ifname);

/* Socket bound to a (port 0: any; a->port is updated), not yet listening: the port is
   this process's, but a connection to it is refused until net_listen_on. */
loom_result_t net_bind(struct loom_addr *a, int *fd, char *err, size_t errlen);
loom_result_t net_listen_on(int fd, char *err, size_t errlen);
/* Both: a listening socket bound to a. */
loom_result_t net_listen(struct loom_addr *a, int *fd, char *err, size_t errlen);
/* Connect within the deadline. retry_refused: a refused connection is retried (a
   rendezvous root may not be up yet); otherwise it fails at once with LOOM_ERR_REMOTE
   (a rank's listener lives as long as its communicator: refused = gone). */
loom_result_t net_connect(const struct loom_addr *a, uint64_t deadline_ns, bool retry_refused,
                          int *fd, char *err, size_t errlen);
/* Whole-buffer I/O on a blocking or non-blocking socket, bounded by the deadline.
   LOOM_ERR_REMOTE on EOF/reset, LOOM_ERR_TIMEOUT past the deadline. */
loom_result_t net_send_all(int fd, const void *buf, size_t len, uint64_t deadline_ns);
loom_result_t net_recv_all(int fd, void *buf, size_t len, uint64_t deadline_ns);
/* Unix sockets: send len bytes carrying a descriptor (SCM_RIGHTS), non-blocking and
   all at once or not at all (true: sent). */
bool          net_send_fd(int sock, const void *buf, size_t len, int fd);
/* recv, non-blocking, that also takes descriptors: each one arriving is handed to
   take(arg, fd) (which owns it from then), take(arg, -1) when some were lost (no
   room for them in this process). Returns what recv would. */
ssize_t       net_recv_fds(int sock, void *buf, size_t len, void (*take)(void *, int), void *arg);
void          net_set_nonblock(int fd);
void          net_set_nodelay(int fd);

#endif
