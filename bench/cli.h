/* cli.h: what every bench program says to -h/--help, --version and an option it does not
 * know, alike (loom-perf, the peer harnesses, tcp-ring, cpu-pingpong, cma-allgather,
 * gpu-kernels). C and C++ (gloo-perf includes it too). */
#ifndef LOOM_BENCH_CLI_H
#define LOOM_BENCH_CLI_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../include/loom.h"

/* Before a program parses its own arguments (up to "--"): -h or --help prints help()
   to stdout and exits 0; --version prints "prog (loom) X.Y.Z" and exits 0; any other
   argument starting with "--", or with "-" and a letter when the program takes none
   (options false), is named as unknown, with the usage on stderr, exit 2. */
static inline void cli_scan(int argc, char **argv, const char *prog, void (*help)(FILE *), int options)
{
    for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            help(stdout);
            exit(0);
        }
        if (!strcmp(a, "--version")) {
            printf("%s (loom) %d.%d.%d\n", prog, LOOM_VERSION_MAJOR, LOOM_VERSION_MINOR, LOOM_VERSION_PATCH);
            exit(0);
        }
        if ((a[0] == '-' && a[1] == '-') || (!options && a[0] == '-' && ((a[1] | 32) >= 'a' && (a[1] | 32) <= 'z'))) {
            fprintf(stderr, "%s: unknown option '%s'\n", prog, a);
            help(stderr);
            exit(2);
        }
    }
}

#endif
