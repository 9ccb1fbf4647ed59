/* launch.c: loom_comm_init_env, a communicator from what a launcher sets: the rank and
 * size (LOOM_*, torchrun, Open MPI, Slurm, PMI), and a rendezvous:
 *   - LOOM_COMM_ID: an id string (loomrun sets it);
 *   - LOOM_ROOT_ADDR, or MASTER_ADDR/MASTER_PORT: rank 0 hosts the root there. The secret
 *     is LOOM_SECRET, else derived from the per-user secret file (LOOM_SECRET_FILE,
 *     default ~/.loom/secret, made on first use, 0600) with the address and the job:
 *     nothing an outsider can compute. Ranks on other hosts need the same file (a
 *     shared home) or LOOM_SECRET;
 *   - one host and nothing else (mpirun, srun): rank 0 makes an id with a random secret
 *     and hands it to the ranks of this host through an abstract unix socket named by
 *     the user's uid and the launcher's job id; a rank takes it only from a process of
 *     its own user (SO_PEERCRED). The socket has no file: nothing is left after a
 *     kill. LOOM_ID_FILE names a file instead (0600, created O_EXCL|O_NOFOLLOW; its
 *     owner and mode are checked before it is trusted).
 * Not here: the rendezvous itself (bootstrap.c) and the communicator (comm.c).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "auth.h"
#include "bootstrap.h"
#include "comm.h"
#include "env.h"
#include "log.h"

/* ---- rank and size ---- */

/* The first launcher variable that is set (LOOM_* through the env table). */
static const char *first_env(const char **names, const char **which, char *buf, size_t len)
{
    for (int i = 0; names[i]; i++) {
        const char *v = getenv(names[i]);
        if (strncmp(names[i], "LOOM_", 5) == 0) {
            int64_t x = loom_env_int(names[i]);
            if (x < 0) continue;
            snprintf(buf, len, "%lld", (long long)x);
            v = buf;
        }
        if (v && *v) {
            *which = names[i];
            return v;
        }
    }
    return NULL;
}

static bool parse_int(const char *s, int *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < 0 || v > 1 << 30) return false;
    *out = (int)v;
    return true;
}

/* A key naming this launch, the same in every rank of it; NULL when there is none. */
static const char *job_key(char *buf, size_t len)
{
    const char *v;
    if ((v = getenv("PMIX_NAMESPACE")) && *v) snprintf(buf, len, "pmix-%s", v);
    else if ((v = getenv("OMPI_MCA_ess_base_jobid")) && *v) snprintf(buf, len, "ompi-%s", v);
    else if ((v = getenv("SLURM_JOB_ID")) && *v)
        snprintf(buf, len, "slurm-%s.%s", v, getenv("SLURM_STEP_ID") ? getenv("SLURM_STEP_ID") : "0");
    else if ((v = getenv("TORCHELASTIC_RUN_ID")) && *v) snprintf(buf, len, "torch-%s", v);
    else return NULL;
    return buf;
}

/* ---- the per-user secret file ---- */

static loom_result_t secret_path(char *path, size_t len)
{
    const char *file = loom_env_str("LOOM_SECRET_FILE");
    if (file[0]) {
        snprintf(path, len, "%s", file);
        return LOOM_SUCCESS;
    }
    const char *home = getenv("HOME");
    struct passwd *pw = (home && home[0] == '/') ? NULL : getpwuid(geteuid());
    if (pw) home = pw->pw_dir;
    if (home == NULL || home[0] != '/')
        return loom_set_error(NULL, LOOM_ERR_INVALID_USAGE, "loom_comm_init_env: no LOOM_SECRET and no home "
                              "directory for the per-user secret file: set LOOM_SECRET or LOOM_SECRET_FILE");
    if ((size_t)snprintf(path, len, "%s/.loom/secret", home) >= len)
        return loom_set_error(NULL, LOOM_ERR_INVALID_USAGE, "loom_comm_init_env: home directory path too long");
    return LOOM_SUCCESS;
}

/* The file must be this user's alone, as ssh demands of its keys. */
static loom_result_t check_private(const char *path, const struct stat *st, bool dir)
{
    if (dir ? !S_ISDIR(st->st_mode) : !S_ISREG(st->st_mode))
        return loom_set_error(NULL, LOOM_ERR_INVALID_USAGE, "loom_comm_init_env: %s is not a %s", path,
                              dir ? "directory" : "regular file");
    if (st->st_uid != geteuid())
        return loom_set_error(NULL, LOOM_ERR_INVALID_USAGE, "loom_comm_init_env: %s belongs to uid %u, not to "
                              "you (uid %u): not trusted", path, (unsigned)st->st_uid, (unsigned)geteuid());
    if (st->st_mode & (dir ? 022 : 077))
        return loom_set_error(NULL, LOOM_ERR_INVALID_USAGE, "loom_comm_init_env: %s is accessible to other users "
                              "(mode %03o): run chmod %s %s", path, (unsigned)(st->st_mode & 0777),
                              dir ? "go-w" : "600", path);
    return LOOM_SUCCESS;
}

/* Write a fresh secret at path, all at once: through an unnamed file linked into place
   (no name exists until it is whole), else O_EXCL. EEXIST: another rank was first. */
static int create_secret(const char *path)
{
    uint8_t s[16];
    char text[34];
    if (!auth_random(s, sizeof s)) return EIO;
    auth_hex_encode(s, sizeof s, text);
    text[32] = '\n';
    text[33] = '\0';
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = '\0';
    int fd = open(slash && dir[0] ? dir : ".", O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600);
    bool unnamed = fd >= 0;
    if (!unnamed) fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) return errno;
    int e = write(fd, text, 33) == 33 ? 0 : EIO;
    if (e == 0 && unnamed) {
        char proc[64];
        snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
        if (linkat(AT_FDCWD, proc, AT_FDCWD, path, AT_SYMLINK_FOLLOW) != 0) e = errno;
    }
    close(fd);
    return e;
}

/* The user's secret (16 bytes), made on first use. */
static loom_result_t user_secret(uint8_t *out, char *path, size_t pathlen)
{
    loom_result_t r = secret_path(path, pathlen);
    if (r != LOOM_SUCCESS) return r;
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash && slash != dir && !loom_env_str("LOOM_SECRET_FILE")[0]) {
        *slash = '\0';
        if (mkdir(dir, 0700) != 0 && errno != EEXIST)
            return loom_set_error(NULL, LOOM_ERR_SYSTEM, "loom_comm_init_env: cannot create %s: %s", dir,
                                  strerror(errno));
        struct stat st;
        if (lstat(dir, &st) != 0 || (r = check_private(dir, &st, true)) != LOOM_SUCCESS)
            return r != LOOM_SUCCESS ? r : loom_set_error(NULL, LOOM_ERR_SYSTEM, "loom_comm_init_env: %s: %s", dir,
                                                         strerror(errno));
    }
    for (int attempt = 0; attempt < 50; attempt++) {
        int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0 && errno == ENOENT) {
            int e = create_secret(path);
            if (e == 0) LOOM_WARN(LOOM_SUB_BOOT, "made the per-user secret %s: ranks on other hosts need the same "
                                  "file (a shared home directory) or LOOM_SECRET", path);
            else if (e != EEXIST)
                return loom_set_error(NULL, LOOM_ERR_SYSTEM, "loom_comm_init_env: cannot create %s: %s", path,
                                      strerror(e));
            continue;
        }
        if (fd < 0)
            return loom_set_error(NULL, LOOM_ERR_INVALID_USAGE, "loom_comm_init_env: cannot open %s: %s%s", path,
                                  strerror(errno), errno == ELOOP ? " (a symbolic link: not trusted)" : "");
        struct stat st;
        char text[40] = "";
        ssize_t n = -1;
        if (fstat(fd, &st) == 0 && (r = check_private(path, &st, false)) == LOOM_SUCCESS)
            n = read(fd, text, sizeof text - 1);
        close(fd);
        if (r != LOOM_SUCCESS) return r;
        if (n == 33 && text[32] == '\n') text[32] = '\0';
        if (n >= 32 && auth_hex_decode(text, out, 16)) return LOOM_SUCCESS;
        if (n == 0) {   /* another rank's O_EXCL file, not yet written */
            usleep(20 * 1000);
            continue;
        }
        break;
    }
    return loom_set_error(NULL, LOOM_ERR_INVALID_USAGE, "loom_comm_init_env: %s does not hold 32 hex digits: "
                          "remove it (a new one is made) or set LOOM_SECRET", path);
}

/* The job's secret: LOOM_SECRET, or HMAC(user secret, address, job key). */
static loom_result_t job_secret(const char *addr, uint8_t *secret, char *from, size_t fromlen)
{
    const char *hex = loom_env_str("LOOM_SECRET");
    if (hex[0]) {
        if (!auth_hex_decode(hex, secret, 16))
            return loom_set_error(NULL, LOOM_ERR_INVALID_ARGUMENT, "loom_comm_init_env: LOOM_SECRET must be 32 hex "
                                  "digits (e.g. head -c16 /dev/urandom | xxd -p)");
        snprintf(from, fromlen, "LOOM_SECRET");
        return LOOM_SUCCESS;
    }
    uint8_t user[16], mac[SHA256_BYTES];
    char path[4096], key[256] = "";
    loom_result_t r = user_secret(user, path, sizeof path);
    if (r != LOOM_SUCCESS) return r;
    job_key(key, sizeof key);
    static const char label[] = "loom job";
    const void *p[] = { label, addr, "|", key };
    size_t l[] = { sizeof label - 1, strlen(addr), 1, strlen(key) };
    hmac_sha256(user, sizeof user, 4, p, l, mac);
    memcpy(secret, mac, 16);
    snprintf(from, fromlen, "%s", path);
    LOOM_INFO(LOOM_SUB_BOOT, "no LOOM_SECRET: the rendezvous secret comes from %s", path);
    return LOOM_SUCCESS;
}

/* LOOM_ROOT_ADDR or MASTER_ADDR/MASTER_PORT: rank 0 hosts the root there. */
static loom_result_t id_by_addr(int rank, const char *addr, loom_id_t *id, char *from, size_t fromlen)
{
    struct boot_id b = { .magic = BOOT_ID_MAGIC, .version = 1 };
    char err[256];
    loom_result_t r = net_addr_parse(addr, false, &b.root, err, sizeof err);
    if (r != LOOM_SUCCESS) return loom_set_error(NULL, r, "loom_comm_init_env: root address: %s", err);
    r = job_secret(addr, b.secret, from, fromlen);
    if (r != LOOM_SUCCESS) return r;
    /* The root binds exactly the address the ranks dial: if it is not one of this
       host's, that is the user's to fix (binding every interface instead would listen
       where no rank will ever come). */
    if (rank == 0 && (r = boot_root_start(&b, comm_timeout_ms(), err, sizeof err)) != LOOM_SUCCESS)
        return loom_set_error(NULL, r, "loom_comm_init_env: rank 0 cannot host the rendezvous root at %s: %s", addr,
                              err);
    boot_id_pack(id, &b);
    return LOOM_SUCCESS;
}

/* ---- one host: rank 0 hands the id over ---- */

socklen_t launch_id_sockaddr(const char *key, struct sockaddr_un *su)
{
    uint8_t h[SHA256_BYTES];
    char hx[33];
    struct sha256 s;
    sha256_init(&s);
    sha256_update(&s, key, strlen(key));
    sha256_final(&s, h);
    auth_hex_encode(h, 16, hx);
    memset(su, 0, sizeof *su);
    su->sun_family = AF_UNIX;
    int n = snprintf(su->sun_path + 1, sizeof su->sun_path - 1, "loom-id-%u-%s", (unsigned)geteuid(), hx);
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
}

struct id_server {
    int fd;
    char id[LOOM_ID_STRLEN];
    _Atomic bool stop;
    pthread_t thread;
};

static void *id_serve(void *arg)
{
    struct id_server *sv = arg;
    uint64_t logged_ns = 0;
    unsigned unlogged = 0;
    for (int turn = 0; !atomic_load(&sv->stop) && turn < 100000000; turn++) {
        struct pollfd pf = { .fd = sv->fd, .events = POLLIN };
        if (poll(&pf, 1, 50) <= 0) continue;
        int fd = accept4(sv->fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0) {
            if (errno != EAGAIN && errno != EINTR) usleep(10000);   /* EMFILE: do not spin */
            continue;
        }
        struct ucred cr = { .uid = (uid_t)-1 };
        socklen_t cl = sizeof cr;
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &cl) == 0 && cr.uid == geteuid()) {
            ssize_t n = send(fd, sv->id, strlen(sv->id) + 1, MSG_NOSIGNAL | MSG_DONTWAIT);
            (void)n;   /* tens of bytes on a fresh socket: it takes them */
        } else if (logged_ns == 0 || net_now_ns() - logged_ns > 10000000000ull) {   /* a line per 10 s */
            LOOM_WARN(LOOM_SUB_BOOT, "refused to hand this job's id to a process of another user (uid %u, pid %d)%s",
                      (unsigned)cr.uid, (int)cr.pid, unlogged ? " (and others since the last such line)" : "");
            logged_ns = net_now_ns();
            unlogged = 0;
        } else {
            unlogged++;
        }
        close(fd);
    }
    return NULL;
}

static loom_result_t id_serve_start(struct id_server *sv, const char *key, const loom_id_t *id)
{
    struct sockaddr_un su;
    socklen_t len = launch_id_sockaddr(key, &su);
    loom_id_to_string(id, sv->id, sizeof sv->id);
    sv->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (sv->fd < 0 || bind(sv->fd, (struct sockaddr *)&su, len) != 0 || listen(sv->fd, 1024) != 0) {
        int e = errno;
        if (sv->fd >= 0) close(sv->fd);
        return loom_set_error(NULL, LOOM_ERR_SYSTEM, "loom_comm_init_env: rank 0 cannot serve the id on the unix "
                              "socket @%s: %s%s", su.sun_path + 1, strerror(e),
                              e == EADDRINUSE ? " (another launch with the same job id runs, or another user "
                                                "holds the name)" : "");
    }
    atomic_store(&sv->stop, false);
    int rc = pthread_create(&sv->thread, NULL, id_serve, sv);
    if (rc != 0) {
        close(sv->fd);
        return loom_set_error(NULL, LOOM_ERR_SYSTEM, "loom_comm_init_env: cannot start a thread: %s", strerror(rc));
    }
    return LOOM_SUCCESS;
}

static void id_serve_stop(struct id_server *sv)
{
    atomic_store(&sv->stop, true);
    pthread_join(sv->thread, NULL);
    close(sv->fd);
}

static loom_result_t id_fetch(const char *key, loom_id_t *id, int64_t timeout_ms)
{
    struct sockaddr_un su;
    socklen_t len = launch_id_sockaddr(key, &su);
    uint64_t deadline = net_deadline(timeout_ms);
    for (int attempt = 0; attempt < 1000000; attempt++) {
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) break;
        if (connect(fd, (struct sockaddr *)&su, len) == 0) {
            struct ucred cr = { .uid = (uid_t)-1 };
            socklen_t cl = sizeof cr;
            if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &cl) != 0 || cr.uid != geteuid()) {
                close(fd);
                return loom_set_error(NULL, LOOM_ERR_INVALID_USAGE, "loom_comm_init_env: the unix socket @%s that "
                                      "should hand over this job's id belongs to uid %u, not to you (uid %u): not "
                                      "trusted", su.sun_path + 1, (unsigned)cr.uid, (unsigned)geteuid());
            }
            char s[LOOM_ID_STRLEN] = "";
            loom_result_t r = net_recv_all(fd, s, sizeof s - 1, deadline);   /* ends at EOF: REMOTE */
            close(fd);
            (void)r;
            s[sizeof s - 1] = '\0';
            if (loom_id_from_string(s, id) == LOOM_SUCCESS) return LOOM_SUCCESS;
        } else {
            close(fd);
        }
        if (net_ms_left(deadline) == 0) break;
        usleep(5000);
    }
    return loom_set_error(NULL, LOOM_ERR_TIMEOUT, "loom_comm_init_env: rank 0 did not hand over the id (unix socket "
                          "@%s) within %lld ms", su.sun_path + 1, (long long)timeout_ms);
}

/* LOOM_ID_FILE: the same through a file, for those who want one (a shared filesystem). */
static loom_result_t id_file_write(const char *path, const loom_id_t *id)
{
    char s[LOOM_ID_STRLEN + 32];
    loom_id_to_string(id, s, LOOM_ID_STRLEN);
    size_t n = strlen(s);
    n += (size_t)snprintf(s + n, sizeof s - n, "\n%d\n", (int)getpid());
    for (int attempt = 0; attempt < 2; attempt++) {
        int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd >= 0) {
            bool ok = write(fd, s, n) == (ssize_t)n;
            close(fd);
            if (ok) return LOOM_SUCCESS;
            break;
        }
        struct stat st;
        if (errno != EEXIST || lstat(path, &st) != 0) break;
        loom_result_t r = check_private(path, &st, false);
        if (r != LOOM_SUCCESS) return r;
        unlink(path);   /* ours, left by an earlier launch that died: replace it */
    }
    return loom_set_error(NULL, LOOM_ERR_SYSTEM, "loom_comm_init_env: cannot create %s: %s", path, strerror(errno));
}

/* When process pid started, in seconds since the epoch (its /proc entry and the boot
   time); 0 when unknown. */
static double process_start(int pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (f == NULL) return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')');                  /* the command may hold spaces */
    unsigned long long ticks = 0;
    for (int field = 2; p && field < 22; field++) p = strchr(p + 1, ' ');
    if (p == NULL || sscanf(p + 1, "%llu", &ticks) != 1) return 0;
    f = fopen("/proc/stat", "r");
    unsigned long long btime = 0;
    while (f && fgets(buf, sizeof buf, f))
        if (sscanf(buf, "btime %llu", &btime) == 1) break;
    if (f) fclose(f);
    long hz = sysconf(_SC_CLK_TCK);
    return btime && hz > 0 ? (double)btime + (double)ticks / (double)hz : 0;
}

static loom_result_t id_file_read(const char *path, loom_id_t *id, int64_t timeout_ms)
{
    uint64_t deadline = net_deadline(timeout_ms);
    for (int i = 0; i < 1000000; i++) {
        int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (fd >= 0) {
            struct stat st;
            char s[LOOM_ID_STRLEN + 32] = "";
            loom_result_t r = fstat(fd, &st) == 0 ? check_private(path, &st, false) : LOOM_ERR_SYSTEM;
            ssize_t n = r == LOOM_SUCCESS ? read(fd, s, sizeof s - 1) : -1;
            close(fd);
            if (r != LOOM_SUCCESS) return r;   /* planted by someone else: fail, never trust it */
            int pid = 0;
            char *nl = n > 0 ? strchr(s, '\n') : NULL;
            if (nl) {
                *nl = '\0';
                pid = atoi(nl + 1);
            }
            /* whole, and written by a process still alive that started before the file
               was written: a dead launch's file whose pid was reused is not it */
            double born = pid > 0 ? process_start(pid) : 0;
            if (born > 0 && born <= (double)st.st_mtime + 1 && loom_id_from_string(s, id) == LOOM_SUCCESS)
                return LOOM_SUCCESS;
        }
        if (net_ms_left(deadline) == 0) break;
        usleep(5000);
    }
    return loom_set_error(NULL, LOOM_ERR_TIMEOUT, "loom_comm_init_env: rank 0 did not publish the id in %s within "
                          "%lld ms", path, (long long)timeout_ms);
}

/* Rank 0 makes an id (root on 127.0.0.1), hands it over while the ranks join, and
   withdraws it once loom_comm_init is done: every rank has it by then. */
static loom_result_t init_one_host(loom_comm_t *comm, int rank, int size, const char *key)
{
    const char *file = loom_env_str("LOOM_ID_FILE");
    int64_t timeout_ms = comm_timeout_ms();
    loom_id_t id;
    loom_result_t r;
    if (rank != 0) {
        r = file[0] ? id_file_read(file, &id, timeout_ms) : id_fetch(key, &id, timeout_ms);
        return r == LOOM_SUCCESS ? loom_comm_init(comm, size, &id, rank) : r;
    }
    if ((r = comm_get_id(&id, true)) != LOOM_SUCCESS) return r;
    struct id_server sv;
    r = file[0] ? id_file_write(file, &id) : id_serve_start(&sv, key, &id);
    if (r != LOOM_SUCCESS) return r;
    r = loom_comm_init(comm, size, &id, 0);
    if (file[0]) unlink(file);
    else id_serve_stop(&sv);
    return r;
}

/* ---- the entry point ---- */

loom_result_t loom_comm_init_env(loom_comm_t *comm)
{
    static const char *rank_vars[] = { "LOOM_RANK", "RANK", "OMPI_COMM_WORLD_RANK", "SLURM_PROCID", "PMI_RANK", NULL };
    static const char *size_vars[] = { "LOOM_WORLD_SIZE", "WORLD_SIZE", "OMPI_COMM_WORLD_SIZE", "SLURM_NTASKS",
                                       "PMI_SIZE", NULL };
    if (comm == NULL) return loom_set_error(NULL, LOOM_ERR_INVALID_ARGUMENT, "loom_comm_init_env: comm is NULL");
    loom_result_t r = comm_check_env("loom_comm_init_env");
    if (r != LOOM_SUCCESS) return r;
    const char *rv, *sv, *rname = "", *sname = "";
    int rank = 0, size = 1;
    char rbuf[24], sbuf[24];
    rv = first_env(rank_vars, &rname, rbuf, sizeof rbuf);
    sv = first_env(size_vars, &sname, sbuf, sizeof sbuf);
    if ((rv && !parse_int(rv, &rank)) || (sv && !parse_int(sv, &size)) || (rv != NULL) != (sv != NULL) ||
        size < 1 || rank >= size)
        return loom_set_error(NULL, LOOM_ERR_INVALID_ARGUMENT,
                              "loom_comm_init_env: rank %s=%s and size %s=%s are not a valid pair", rname,
                              rv ? rv : "(unset)", sname, sv ? sv : "(unset)");
    loom_id_t id;
    const char *cid = loom_env_str("LOOM_COMM_ID"), *root = loom_env_str("LOOM_ROOT_ADDR");
    char addr[300], key[256], from[4096] = "";
    if (cid[0]) {
        r = loom_id_from_string(cid, &id);
    } else if (root[0]) {
        r = id_by_addr(rank, root, &id, from, sizeof from);
    } else if (getenv("MASTER_ADDR") && getenv("MASTER_PORT")) {
        /* torchrun's own store listens on MASTER_PORT; loom's root takes the next port. */
        int port;
        if (!parse_int(getenv("MASTER_PORT"), &port) || port < 1 || port >= 65535)
            return loom_set_error(NULL, LOOM_ERR_INVALID_ARGUMENT, "loom_comm_init_env: MASTER_PORT='%.32s' is not "
                                  "a port (1 to 65534: loom's root takes MASTER_PORT+1)", getenv("MASTER_PORT"));
        const char *h = getenv("MASTER_ADDR");
        snprintf(addr, sizeof addr, strchr(h, ':') ? "[%.256s]:%d" : "%.256s:%d", h, port + 1);
        r = id_by_addr(rank, addr, &id, from, sizeof from);
    } else if (size == 1) {
        r = comm_get_id(&id, true);
    } else {
        bool file = loom_env_str("LOOM_ID_FILE")[0] != '\0';
        if (!file && !job_key(key, sizeof key))
            return loom_set_error(NULL, LOOM_ERR_INVALID_ARGUMENT,
                                  "loom_comm_init_env: %d ranks (%s) but no rendezvous: set LOOM_COMM_ID, "
                                  "LOOM_ROOT_ADDR=host:port or MASTER_ADDR/MASTER_PORT", size, sname);
        return init_one_host(comm, rank, size, file ? "" : key);
    }
    if (r != LOOM_SUCCESS) return r;
    r = loom_comm_init(comm, size, &id, rank);
    if (r == LOOM_ERR_INVALID_ARGUMENT && from[0] && strstr(loom_last_error(NULL), "wrong secret")) {
        char msg[640];
        snprintf(msg, sizeof msg, "%s", loom_last_error(NULL));
        loom_set_error(NULL, r, "%s (this rank's secret comes from %s: every rank needs the same)", msg, from);
    }
    return r;
}
