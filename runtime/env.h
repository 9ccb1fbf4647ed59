/* env.h: every LOOM_* setting is declared once, in the table of env.c (name, type,
 * default, one line of help); code reads settings only through these functions, and
 * tools/loom-env prints the table. Reading a name that is not in the table is a bug
 * and aborts the process with a message. */
#ifndef LOOM_ENV_H
#define LOOM_ENV_H

#include <stdint.h>
#include <stdio.h>

enum loom_env_type { LOOM_ENV_INT, LOOM_ENV_SIZE, LOOM_ENV_STR };

struct loom_env_var {
    const char *name;     /* "LOOM_TIMEOUT_MS"                             */
    enum loom_env_type type;
    const char *dflt;     /* default as text; "" = unset                   */
    const char *help;     /* one line                                      */
};

/* Integer setting (LOOM_ENV_INT or LOOM_ENV_SIZE; sizes accept K/M/G suffixes).
   An unparsable value logs a warning and yields the default. */
int64_t     loom_env_int(const char *name);
/* String setting, or its default ("" when unset and no default). Never NULL. */
const char *loom_env_str(const char *name);
/* The table, for tools and docs. */
const struct loom_env_var *loom_env_table(int *n);
void        loom_env_print(FILE *f);   /* name, type, default, current value, help */

#endif
