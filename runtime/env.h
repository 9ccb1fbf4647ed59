/* env.h: every LOOM_* setting is declared once, in the table of env.c (name, type,
 * default, one line of help); code reads settings only through these functions, and
 * tools/loom-env prints the table. Reading a name that is not in the table is a bug
 * and aborts the process with a message. */
#ifndef LOOM_ENV_H
#define LOOM_ENV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum loom_env_type { LOOM_ENV_INT, LOOM_ENV_SIZE, LOOM_ENV_STR };

/* Rules beyond a range (int and size settings). */
enum { LOOM_ENV_POW2 = 1, LOOM_ENV_MULT64 = 2 };

struct loom_env_var {
    const char *name;     /* "LOOM_TIMEOUT_MS"                             */
    enum loom_env_type type;
    const char *dflt;     /* default as text; "" = unset                   */
    const char *help;     /* one line                                      */
    /* what a value set in the environment may be (checked by loom_env_check):
       int/size: min <= v <= max and the rules; string: one of choices ("a|b", an
       empty choice allows the empty string), or what check() accepts */
    int64_t min, max;
    unsigned rules;
    const char *choices;
    bool (*check)(const char *v);
    const char *allowed;  /* for strings with check(): what is allowed, in words */
    bool secret;          /* holds a secret: never printed, in errors or by loom-env */
};

/* Check every LOOM_* variable of the environment against the table. An invalid value
   is an error: false, with "LOOM_X='v' is invalid: want ..." in err. Names the table does not know go into warn ("unknown setting LOOM_TIMOUT_MS
   (did you mean LOOM_TIMEOUT_MS?)"), "" when there are none. */
bool        loom_env_check(char *err, size_t errlen, char *warn, size_t warnlen);

/* Integer setting (LOOM_ENV_INT or LOOM_ENV_SIZE; sizes accept K/M/G suffixes).
   A value loom_env_check would refuse warns (once) and yields the default: callers in
   the library check first, so only tools ever see that. */
int64_t     loom_env_int(const char *name);
/* String setting, or its default ("" when unset and no default). Never NULL. */
const char *loom_env_str(const char *name);
/* The table, for tools and docs. */
const struct loom_env_var *loom_env_table(int *n);
void        loom_env_print(FILE *f);   /* name, type, default, current value, help */

#endif
