/* fuzz_env: settings from the environment (runtime/env.c). The first byte picks a
 * variable of the table, the rest is its value. Whatever the value: loom_env_check
 * either accepts it, and then what loom reads is that value and within the table's
 * range, or refuses it naming the variable; never a crash. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "env.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    int n;
    const struct loom_env_var *t = loom_env_table(&n);
    if (size == 0) return 0;
    const struct loom_env_var *v = &t[data[0] % n];
    char value[512];
    size_t len = size - 1 < sizeof value - 1 ? size - 1 : sizeof value - 1;
    memcpy(value, data + 1, len);
    value[len] = '\0';
    if (strlen(value) == 0) return 0;          /* empty is unset */
    setenv(v->name, value, 1);
    char err[512], warn[64];
    bool ok = loom_env_check(err, sizeof err, warn, sizeof warn);
    if (!ok && strstr(err, v->name) == NULL) abort();
    if (v->type != LOOM_ENV_STR) {
        int64_t x = loom_env_int(v->name);     /* the default when refused */
        if (ok && (x < v->min || x > v->max)) abort();
        if (ok && (v->rules & LOOM_ENV_POW2) && (x & (x - 1))) abort();
        if (ok && (v->rules & LOOM_ENV_MULT64) && x % 64) abort();
    } else {
        const char *s = loom_env_str(v->name);
        if (ok && strcmp(s, value) != 0) abort();
    }
    unsetenv(v->name);
    return 0;
}
