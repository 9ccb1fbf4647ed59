/* error.c: result names and messages (from the one X-macro list in loom.h), the
 * per-communicator and per-thread failure detail, and dtype/op names. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "comm.h"
#include "gpu.h"
#include "log.h"
#include "schedule.h"

/* ---- version, result codes ---- */

int loom_version(void) { return LOOM_VERSION_CODE; }

const char *loom_strerror(loom_result_t r)
{
#define LOOM_RESULT_MSG_(name, msg) case name: return #name ": " msg;
    switch (r) {
        LOOM_RESULT_LIST(LOOM_RESULT_MSG_)
    default: return "unknown loom result code";
    }
#undef LOOM_RESULT_MSG_
}

/* ---- failure detail ---- */

static _Thread_local char tls_err[768];     /* failures before/without a comm     */
static _Thread_local char tls_copy[768];    /* stable copy handed to the caller   */

const char *loom_last_error(loom_comm_t c)
{
    if (c == NULL) return tls_err[0] ? tls_err : "no error";
    pthread_mutex_lock(&c->err_lock);
    snprintf(tls_copy, sizeof tls_copy, "%s", c->err[0] ? c->err : "no error");
    pthread_mutex_unlock(&c->err_lock);
    return tls_copy;
}

loom_result_t loom_set_error(struct loom_comm *c, loom_result_t code, const char *fmt, ...)
{
    char msg[640];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(tls_err, sizeof tls_err, "%s", msg);
    if (c != NULL) {
        pthread_mutex_lock(&c->err_lock);
        /* A broken comm keeps the detail of what broke it. */
        if (atomic_load(&c->status) == LOOM_SUCCESS)
            snprintf(c->err, sizeof c->err, "%s", msg);
        pthread_mutex_unlock(&c->err_lock);
    }
    return code;
}

void comm_fail(struct loom_comm *c, loom_result_t code, bool tell_peers, const char *fmt, ...)
{
    char msg[640];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);

    int expected = LOOM_SUCCESS;
    pthread_mutex_lock(&c->err_lock);
    bool first = atomic_compare_exchange_strong(&c->status, &expected, (int)code);
    if (first) snprintf(c->err, sizeof c->err, "%s", msg);
    pthread_mutex_unlock(&c->err_lock);
    if (!first) return;
    cuda_comm_raise(c, (int)code);           /* kernels polling the abort word stop */
    snprintf(tls_err, sizeof tls_err, "%s", msg);
    LOOM_WARN(LOOM_SUB_INIT, "communicator failed (%s): %s", loom_strerror(code), msg);
    if (tell_peers && c->prog) progress_tell_peers(c->prog);
}

/* ---- dtypes and ops ---- */

static const char *dtypes[LOOM_NUM_DTYPES] = {
    [LOOM_INT8] = "int8",       [LOOM_UINT8] = "uint8",     [LOOM_INT32] = "int32",
    [LOOM_UINT32] = "uint32",   [LOOM_INT64] = "int64",     [LOOM_UINT64] = "uint64",
    [LOOM_FLOAT16] = "float16", [LOOM_FLOAT32] = "float32", [LOOM_FLOAT64] = "float64",
    [LOOM_BFLOAT16] = "bfloat16",
};
static const char *ops[LOOM_NUM_OPS] = { "sum", "prod", "max", "min", "avg" };

size_t loom_dtype_size(loom_dtype_t dt)
{
    return (unsigned)dt < LOOM_NUM_DTYPES ? dtype_size(dt) : 0;
}

const char *loom_dtype_name(loom_dtype_t dt)
{
    return (unsigned)dt < LOOM_NUM_DTYPES ? dtypes[dt] : NULL;
}

const char *loom_op_name(loom_op_t op)
{
    return (unsigned)op < LOOM_NUM_OPS ? ops[op] : NULL;
}
