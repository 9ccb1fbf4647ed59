/* log.h: NCCL-style logging. LOOM_DEBUG=WARN|INFO|TRACE picks the level (default: none,
 * but WARN lines about refused connections and failures are always printed),
 * LOOM_DEBUG_SUBSYS=INIT,BOOT,NET,SHM,COLL,PROXY,ENV (or ALL, ^ to exclude) picks the
 * subsystems, LOOM_DEBUG_FILE=/tmp/loom.%h.%p.log sends lines to a file (%h host,
 * %p pid). Every line starts with "host:pid:rank". */
#ifndef LOOM_LOG_H
#define LOOM_LOG_H

#include <stdatomic.h>
#include <stdbool.h>

enum loom_log_level { LOOM_LOG_NONE = 0, LOOM_LOG_WARN, LOOM_LOG_INFO, LOOM_LOG_TRACE };
enum loom_log_subsys {
    LOOM_SUB_INIT = 1 << 0,  /* communicator life cycle      */
    LOOM_SUB_BOOT = 1 << 1,  /* bootstrap / rendezvous       */
    LOOM_SUB_NET  = 1 << 2,  /* tcp transport, sockets       */
    LOOM_SUB_SHM  = 1 << 3,  /* shared-memory transport      */
    LOOM_SUB_COLL = 1 << 4,  /* collectives, schedules       */
    LOOM_SUB_PROXY = 1 << 5, /* progress thread              */
    LOOM_SUB_ENV  = 1 << 6,  /* settings                     */
    LOOM_SUB_ALL  = 0x7f
};

/* Are these valid LOOM_DEBUG and LOOM_DEBUG_SUBSYS values? (For env.c's table.) */
bool loom_log_level_ok(const char *s);
bool loom_log_subsys_ok(const char *s);

/* Rank shown in the line prefix of this thread's messages (-1: unknown). */
void loom_log_set_rank(int rank);
int  loom_log_enabled(enum loom_log_level lvl, enum loom_log_subsys sub);
void loom_log(enum loom_log_level lvl, enum loom_log_subsys sub, const char *file, int line,
              const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* WARN is always emitted (failures must never be silent); INFO/TRACE when enabled. */
#define LOOM_WARN(sub, ...)  loom_log(LOOM_LOG_WARN, (sub), __FILE__, __LINE__, __VA_ARGS__)
#define LOOM_INFO(sub, ...)                                                           \
    do { if (loom_log_enabled(LOOM_LOG_INFO, (sub)))                                  \
             loom_log(LOOM_LOG_INFO, (sub), __FILE__, __LINE__, __VA_ARGS__); } while (0)
/* 1 until the settings are read, then 1 only with LOOM_DEBUG=TRACE: a LOOM_TRACE in
   the path of every call costs one load, not a call and a pthread_once. */
extern _Atomic int loom_log_maybe_trace;
#define LOOM_TRACE(sub, ...)                                                          \
    do { if (atomic_load_explicit(&loom_log_maybe_trace, memory_order_relaxed) &&     \
             loom_log_enabled(LOOM_LOG_TRACE, (sub)))                                 \
             loom_log(LOOM_LOG_TRACE, (sub), __FILE__, __LINE__, __VA_ARGS__); } while (0)

#endif
