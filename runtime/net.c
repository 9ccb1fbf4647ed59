/* net.c: socket helpers shared by bootstrap, the control mesh and the tcp transport.
 * Every blocking helper takes a deadline; nothing here knows about collectives. */
#include "net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "auth.h"
#include "env.h"
#include "log.h"

/* ---- time ---- */

uint64_t net_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t net_deadline(int64_t timeout_ms)
{
    if (timeout_ms < 0) timeout_ms = 0;
    return net_now_ns() + (uint64_t)timeout_ms * 1000000ull;
}

int net_ms_left(uint64_t deadline_ns)
{
    uint64_t now = net_now_ns();
    if (now >= deadline_ns) return 0;
    uint64_t ms = (deadline_ns - now + 999999) / 1000000;
    return ms > 0x7fffffff ? 0x7fffffff : (int)ms;
}

void net_cond_wait_ms(pthread_cond_t *cv, pthread_mutex_t *lock, int ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);     /* pthread_cond_timedwait's clock */
    ts.tv_nsec += (long)ms * 1000000;
    ts.tv_sec += ts.tv_nsec / 1000000000;
    ts.tv_nsec %= 1000000000;
    pthread_cond_timedwait(cv, lock, &ts);
}

/* ---- addresses ---- */

/* "loom-" and 32 hex digits, after the leading NUL of an abstract name */
#define UNIX_NAME_LEN 37

void net_addr_to_sockaddr(const struct loom_addr *a, struct sockaddr_storage *ss, socklen_t *len)
{
    memset(ss, 0, sizeof *ss);
    if (a->family == NET_UNIX) {
        struct sockaddr_un *su = (struct sockaddr_un *)ss;
        su->sun_family = AF_UNIX;
        memcpy(su->sun_path + 1, "loom-", 5);
        for (int i = 0; i < 16; i++) snprintf(su->sun_path + 6 + 2 * i, 3, "%02x", a->ip[i]);
        *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + UNIX_NAME_LEN);
    } else if (a->family == 6) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons(a->port);
        s6->sin6_scope_id = a->scope;
        memcpy(&s6->sin6_addr, a->ip, 16);
        *len = sizeof *s6;
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
        s4->sin_family = AF_INET;
        s4->sin_port = htons(a->port);
        memcpy(&s4->sin_addr, a->ip, 4);
        *len = sizeof *s4;
    }
}

void net_addr_from_sockaddr(struct loom_addr *a, const struct sockaddr *sa)
{
    memset(a, 0, sizeof *a);
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
        a->family = 6;
        a->port = ntohs(s6->sin6_port);
        a->scope = s6->sin6_scope_id;
        memcpy(a->ip, &s6->sin6_addr, 16);
    } else {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
        a->family = 4;
        a->port = ntohs(s4->sin_port);
        memcpy(a->ip, &s4->sin_addr, 4);
    }
}

void net_addr_str(const struct loom_addr *a, char *buf, size_t len)
{
    if (a->family == NET_UNIX) {
        int n = snprintf(buf, len, "unix:@loom-");
        for (int i = 0; i < 16 && n > 0 && (size_t)n < len; i++) n += snprintf(buf + n, len - (size_t)n, "%02x", a->ip[i]);
        return;
    }
    char ip[INET6_ADDRSTRLEN] = "?";
    inet_ntop(a->family == 6 ? AF_INET6 : AF_INET, a->ip, ip, sizeof ip);
    if (a->family == 6 && a->scope) snprintf(buf, len, "[%s%%%u]:%u", ip, a->scope, a->port);   /* link-local */
    else if (a->family == 6) snprintf(buf, len, "[%s]:%u", ip, a->port);
    else snprintf(buf, len, "%s:%u", ip, a->port);
}

void net_sockaddr_str(const struct sockaddr *sa, socklen_t len, char *buf, size_t buflen)
{
    if (sa->sa_family == AF_INET || sa->sa_family == AF_INET6) {
        struct loom_addr a;
        net_addr_from_sockaddr(&a, sa);
        net_addr_str(&a, buf, buflen);
    } else if (sa->sa_family == AF_UNIX) {
        snprintf(buf, buflen, "a local process");   /* a connecting unix socket has no name */
    } else {
        snprintf(buf, buflen, "an address of family %d", (int)sa->sa_family);
    }
    (void)len;
}

bool net_unix_addr(struct loom_addr *a)
{
    memset(a, 0, sizeof *a);
    a->family = NET_UNIX;
    return auth_random(a->ip, sizeof a->ip);
}

bool net_is_loopback(const struct loom_addr *a)
{
    static const uint8_t v6lo[16] = { [15] = 1 };
    if (a->family == 4) return a->ip[0] == 127;
    if (a->family == 6) return memcmp(a->ip, v6lo, 16) == 0;
    return false;
}

loom_result_t net_addr_parse(const char *s, bool numeric, struct loom_addr *a, char *err, size_t errlen)
{
    char host[256];
    const char *port_s;
    if (s == NULL || *s == '\0') {
        snprintf(err, errlen, "empty address");
        return LOOM_ERR_INVALID_ARGUMENT;
    }
    if (s[0] == '[') {
        const char *end = strchr(s, ']');
        if (end == NULL || end[1] != ':' || (size_t)(end - s - 1) >= sizeof host) goto bad;
        memcpy(host, s + 1, (size_t)(end - s - 1));
        host[end - s - 1] = '\0';
        port_s = end + 2;
    } else {
        const char *colon = strrchr(s, ':');
        if (colon == NULL || (size_t)(colon - s) >= sizeof host) goto bad;
        memcpy(host, s, (size_t)(colon - s));
        host[colon - s] = '\0';
        port_s = colon + 1;
    }
    char *endp;
    long port = strtol(port_s, &endp, 10);
    if (*port_s == '\0' || *endp != '\0' || port <= 0 || port > 65535) goto bad;

    struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = numeric ? AI_NUMERICHOST : 0 }, *res = NULL;
    const char *fam = loom_env_str("LOOM_SOCKET_FAMILY");
    if (strcmp(fam, "AF_INET") == 0) hints.ai_family = AF_INET;
    else if (strcmp(fam, "AF_INET6") == 0) hints.ai_family = AF_INET6;
    int rc = getaddrinfo(host, NULL, &hints, &res);
    if (rc != 0 || res == NULL) {
        snprintf(err, errlen, "cannot resolve '%s': %s", host, gai_strerror(rc));
        return LOOM_ERR_INVALID_ARGUMENT;
    }
    net_addr_from_sockaddr(a, res->ai_addr);
    a->port = (uint16_t)port;
    freeaddrinfo(res);
    return LOOM_SUCCESS;
bad:
    snprintf(err, errlen, "bad address '%s' (want host:port or [ipv6]:port)", s);
    return LOOM_ERR_INVALID_ARGUMENT;
}

/* ---- interface choice ---- */

bool net_ifname_matches(const char *spec, const char *ifname)
{
    bool exclude = false, exact = false;
    if (*spec == '^') { exclude = true; spec++; }
    if (*spec == '=') { exact = true; spec++; }
    bool hit = false;
    while (*spec) {
        size_t n = strcspn(spec, ",");
        if (n > 0) {
            if (exact ? (strlen(ifname) == n && strncmp(ifname, spec, n) == 0)
                      : strncmp(ifname, spec, n) == 0)
                hit = true;
        }
        spec += n;
        if (*spec == ',') spec++;
    }
    return exclude ? !hit : hit;
}

static bool addr_usable(const struct sockaddr *sa, int want_family)
{
    if (sa == NULL) return false;
    if (sa->sa_family != AF_INET && sa->sa_family != AF_INET6) return false;
    if (want_family && sa->sa_family != want_family) return false;
    if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a6 = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        if (IN6_IS_ADDR_LINKLOCAL(a6)) return false;   /* needs a scope; not portable */
    }
    return true;
}

/* Pass 0 looks for IPv4, pass 1 for IPv6 (IPv4 first, as NCCL does). */
static bool pick_from(struct ifaddrs *ifs, const char *spec, bool allow_lo, int want_family,
                      struct loom_addr *a, char *ifname, size_t iflen)
{
    for (int pass = 0; pass < 2; pass++) {
        int fam = pass == 0 ? AF_INET : AF_INET6;
        if (want_family && want_family != fam) continue;
        for (struct ifaddrs *i = ifs; i; i = i->ifa_next) {
            if (!addr_usable(i->ifa_addr, fam) || !(i->ifa_flags & IFF_UP)) continue;
            bool lo = (i->ifa_flags & IFF_LOOPBACK) != 0;
            /* loopback only when named, or (second pass) when it is all there is */
            if (spec[0] ? !net_ifname_matches(spec, i->ifa_name) : net_ifname_matches("docker", i->ifa_name)) continue;
            if (lo && !allow_lo && (spec[0] == '\0' || spec[0] == '^')) continue;
            net_addr_from_sockaddr(a, i->ifa_addr);
            a->port = 0;
            snprintf(ifname, iflen, "%s", i->ifa_name);
            return true;
        }
    }
    return false;
}

loom_result_t net_pick_interface(struct loom_addr *a, char *ifname, size_t iflen,
                                 char *err, size_t errlen)
{
    const char *spec = loom_env_str("LOOM_SOCKET_IFNAME");
    const char *fam_s = loom_env_str("LOOM_SOCKET_FAMILY");
    int fam = strcmp(fam_s, "AF_INET") == 0 ? AF_INET : strcmp(fam_s, "AF_INET6") == 0 ? AF_INET6 : 0;
    struct ifaddrs *ifs;
    if (getifaddrs(&ifs) != 0) {
        snprintf(err, errlen, "getifaddrs: %s", strerror(errno));
        return LOOM_ERR_SYSTEM;
    }
    bool ok = pick_from(ifs, spec, false, fam, a, ifname, iflen);
    if (!ok && (spec[0] == '\0' || spec[0] == '^')) ok = pick_from(ifs, spec, true, fam, a, ifname, iflen);
    freeifaddrs(ifs);
    if (!ok) {
        snprintf(err, errlen, "no usable network interface (LOOM_SOCKET_IFNAME='%s', "
                 "LOOM_SOCKET_FAMILY='%s')", spec, fam_s);
        return LOOM_ERR_SYSTEM;
    }
    return LOOM_SUCCESS;
}

/* ---- sockets ---- */

void net_set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0) fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

void net_set_nodelay(int fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

loom_result_t net_bind(struct loom_addr *a, int *fd_out, char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    socklen_t len;
    net_addr_to_sockaddr(a, &ss, &len);
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) goto fail;
    int one = 1;
    if (a->family != NET_UNIX) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&ss, len) != 0) goto fail_close;
    if (a->family != NET_UNIX) {
        len = sizeof ss;
        if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0) goto fail_close;
        a->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                 : ((struct sockaddr_in *)&ss)->sin_port);
    }
    *fd_out = fd;
    return LOOM_SUCCESS;
fail_close:
    close(fd);
fail:;
    int e = errno;
    char as[80];
    net_addr_str(a, as, sizeof as);
    snprintf(err, errlen, "cannot bind %s: %s%s", as, strerror(e),
             e == EADDRNOTAVAIL ? " (not an address of this host)" : "");
    return LOOM_ERR_SYSTEM;
}

loom_result_t net_listen_on(int fd, char *err, size_t errlen)
{
    if (listen(fd, 1024) == 0) return LOOM_SUCCESS;
    snprintf(err, errlen, "listen: %s", strerror(errno));
    return LOOM_ERR_SYSTEM;
}

loom_result_t net_listen(struct loom_addr *a, int *fd, char *err, size_t errlen)
{
    loom_result_t r = net_bind(a, fd, err, errlen);
    if (r == LOOM_SUCCESS && (r = net_listen_on(*fd, err, errlen)) != LOOM_SUCCESS) close(*fd);
    return r;
}

loom_result_t net_connect(const struct loom_addr *a, uint64_t deadline_ns, bool retry_refused,
                          int *fd_out, char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    socklen_t len;
    net_addr_to_sockaddr(a, &ss, &len);
    int backoff_ms = 5, last_errno = 0;
    for (int attempt = 0; attempt < 100000; attempt++) {
        int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0) { last_errno = errno; break; }
        int rc = connect(fd, (struct sockaddr *)&ss, len);
        if (rc != 0 && errno == EINPROGRESS) {
            struct pollfd p = { .fd = fd, .events = POLLOUT };
            int ms = net_ms_left(deadline_ns);
            rc = poll(&p, 1, ms) == 1 ? 0 : -1;
            int soerr = 0;
            socklen_t sl = sizeof soerr;
            if (rc == 0 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) == 0 && soerr) {
                errno = soerr;
                rc = -1;
            } else if (rc != 0) {
                errno = ETIMEDOUT;
            }
        }
        if (rc == 0) {
            int fl = fcntl(fd, F_GETFL);
            fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
            if (a->family != NET_UNIX) net_set_nodelay(fd);
            *fd_out = fd;
            return LOOM_SUCCESS;
        }
        last_errno = errno;
        close(fd);
        if (!retry_refused && last_errno == ECONNREFUSED) {
            char as[80];
            net_addr_str(a, as, sizeof as);
            snprintf(err, errlen, "%s refused the connection: nobody listens there any more", as);
            return LOOM_ERR_REMOTE;
        }
        bool retry = last_errno == ECONNREFUSED || last_errno == ECONNRESET ||
                     last_errno == ENETUNREACH || last_errno == EHOSTUNREACH ||
                     last_errno == EAGAIN || last_errno == ETIMEDOUT;
        if (!retry || net_ms_left(deadline_ns) == 0) break;
        int ms = net_ms_left(deadline_ns);
        usleep((useconds_t)(backoff_ms < ms ? backoff_ms : ms) * 1000);
        if (backoff_ms < 200) backoff_ms *= 2;
    }
    char as[80];
    net_addr_str(a, as, sizeof as);
    snprintf(err, errlen, "cannot connect to %s: %s", as, strerror(last_errno));
    return last_errno == ETIMEDOUT || net_ms_left(deadline_ns) == 0 ? LOOM_ERR_TIMEOUT
                                                                    : LOOM_ERR_SYSTEM;
}

static loom_result_t io_all(int fd, void *buf, size_t len, uint64_t deadline_ns, bool is_send)
{
    char *p = buf;
    while (len > 0) {
        ssize_t n = is_send ? send(fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT)
                            : recv(fd, p, len, MSG_DONTWAIT);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
            continue;
        }
        if (n == 0 && !is_send) return LOOM_ERR_REMOTE;
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) return LOOM_ERR_REMOTE;
        int ms = net_ms_left(deadline_ns);
        if (ms == 0) return LOOM_ERR_TIMEOUT;
        struct pollfd pf = { .fd = fd, .events = is_send ? POLLOUT : POLLIN };
        poll(&pf, 1, ms);
    }
    return LOOM_SUCCESS;
}

loom_result_t net_send_all(int fd, const void *buf, size_t len, uint64_t deadline_ns)
{
    return io_all(fd, (void *)buf, len, deadline_ns, true);
}

loom_result_t net_recv_all(int fd, void *buf, size_t len, uint64_t deadline_ns)
{
    return io_all(fd, buf, len, deadline_ns, false);
}

/* ---- descriptors over unix sockets ---- */

bool net_send_fd(int sock, const void *buf, size_t len, int fd)
{
    union { struct cmsghdr h; char b[CMSG_SPACE(sizeof(int))]; } ctl;
    memset(&ctl, 0, sizeof ctl);
    struct iovec iov = { (void *)buf, len };
    struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.b, .msg_controllen = sizeof ctl.b };
    struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cm), &fd, sizeof fd);
    ssize_t n;
    do n = sendmsg(sock, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
    while (n < 0 && errno == EINTR);
    return n == (ssize_t)len;   /* a partial write would separate fd and frame: callers
                                   keep the socket empty enough that it never happens */
}

ssize_t net_recv_fds(int sock, void *buf, size_t len, void (*take)(void *, int), void *arg)
{
    union { struct cmsghdr h; char b[CMSG_SPACE(4 * sizeof(int))]; } ctl;
    struct iovec iov = { buf, len };
    struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.b, .msg_controllen = sizeof ctl.b };
    ssize_t n = recvmsg(sock, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n < 0) return n;
    if (mh.msg_flags & MSG_CTRUNC) take(arg, -1);   /* the kernel dropped some (EMFILE) */
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
        if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS) continue;
        size_t nfd = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < nfd; i++) {
            int fd;
            memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof fd);
            take(arg, fd);
        }
    }
    return n;
}
