#!/bin/sh
# test_exports.sh: libloom.so exports the functions loom.h declares and nothing else, so
# its internals (comm_fail, fifo_post, reduce_buf, ...) never clash with a program's or
# another library's names.
#   test_exports.sh PATH/TO/libloom.so PATH/TO/include/loom.h
set -eu
exported=$(nm -D --defined-only "$1" | awk '{print $3}' | sort)
declared=$(grep -oE '\bloom_[a-z0-9_]+\(' "$2" | tr -d '(' | sort -u)
status=0
for s in $exported; do
    printf '%s\n' "$declared" | grep -qxF -- "$s" || { echo "exported but not in loom.h: $s"; status=1; }
done
for s in $declared; do
    printf '%s\n' "$exported" | grep -qxF -- "$s" || { echo "declared in loom.h but not exported: $s"; status=1; }
done
[ "$status" = 0 ] && echo "libloom.so exports the $(printf '%s\n' "$exported" | wc -l) functions of loom.h, nothing else"
exit "$status"
