/* loom-env: print every LOOM_* setting (name, type, default, current value, help),
 * or with --markdown the same table in markdown for the README. */
#include <stdio.h>
#include <string.h>

#include "env.h"

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--markdown") == 0) {
        static const char *types[] = { "int", "size", "string" };
        int n;
        const struct loom_env_var *t = loom_env_table(&n);
        printf("| variable | type | default | meaning |\n|---|---|---|---|\n");
        for (int i = 0; i < n; i++)
            printf("| `%s` | %s | %s | %s |\n", t[i].name, types[t[i].type], t[i].dflt[0] ? t[i].dflt : "-", t[i].help);
        return 0;
    }
    if (argc > 1) {
        fprintf(stderr, "usage: loom-env [--markdown]\n");
        return 2;
    }
    loom_env_print(stdout);
    return 0;
}
