/* loom-env: print every LOOM_* setting loom reads (name, type, default, current
 * value, meaning), from the one table in runtime/env.c.
 *
 *     loom-env              aligned table, with the values set in this environment
 *     loom-env --markdown   the same table in markdown, for the README (no values)
 *
 * It sets nothing and checks nothing beyond marking values that do not parse.
 */
#include <stdio.h>
#include <string.h>

#include "env.h"
#include "loom.h"

/* ---- markdown ---- */

/* Text for a markdown table cell: '|' would end the cell, "<job key>" would be
   taken for an HTML tag. */
static void cell(const char *s)
{
    for (; *s; s++) {
        if (*s == '|') fputs("\\|", stdout);
        else if (*s == '<') fputs("&lt;", stdout);
        else if (*s == '>') fputs("&gt;", stdout);
        else putchar(*s);
    }
}

static void print_markdown(void)
{
    static const char *types[] = { [LOOM_ENV_INT] = "int", [LOOM_ENV_SIZE] = "size",
                                   [LOOM_ENV_STR] = "string" };
    int n;
    const struct loom_env_var *t = loom_env_table(&n);
    printf("| variable | type | default | meaning |\n");
    printf("|---|---|---|---|\n");
    for (int i = 0; i < n; i++) {
        printf("| `%s` | %s | ", t[i].name, types[t[i].type]);
        if (t[i].dflt[0]) printf("`%s`", t[i].dflt);
        else printf("(empty)");
        printf(" | ");
        cell(t[i].help);
        printf(" |\n");
    }
}

/* ---- main ---- */

static int usage(FILE *f)
{
    fprintf(f, "usage: loom-env [--markdown]\n"
               "  print every LOOM_* setting: name, type, default, value here, meaning\n"
               "  --markdown  the table in markdown (for the README)\n");
    return f == stdout ? 0 : 2;
}

int main(int argc, char **argv)
{
    if (argc > 2) return usage(stderr);
    if (argc == 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0))
        return usage(stdout);
    if (argc == 2 && strcmp(argv[1], "--version") == 0) {
        printf("loom-env (loom) %d.%d.%d\n", LOOM_VERSION_MAJOR, LOOM_VERSION_MINOR, LOOM_VERSION_PATCH);
        return 0;
    }
    if (argc == 2 && strcmp(argv[1], "--markdown") != 0) {
        fprintf(stderr, "loom-env: unknown argument '%s'\n", argv[1]);
        return usage(stderr);
    }
    if (argc == 2) print_markdown();
    else loom_env_print(stdout);
    return fflush(stdout) == 0 ? 0 : 1;
}
