#!/bin/sh
# test_readme_env.sh: the README's settings table is exactly what loom-env prints:
# every LOOM_* variable loom reads is documented, and no row names a variable loom does
# not read (regenerate it with loom-env --markdown between the loom-env markers).
#   test_readme_env.sh PATH/TO/loom-env PATH/TO/README.md
set -eu
want=$(mktemp) have=$(mktemp)
trap 'rm -f "$want" "$have"' EXIT
"$1" --markdown >"$want"
sed -n '/<!-- loom-env:begin -->/,/<!-- loom-env:end -->/p' "$2" | sed '1d;$d' >"$have"
if ! [ -s "$have" ]; then
    echo "README.md has no table between <!-- loom-env:begin --> and <!-- loom-env:end -->"
    exit 1
fi
if ! diff -u "$want" "$have"; then
    echo "README settings table differs from loom-env --markdown (- loom-env, + README)"
    exit 1
fi
echo "README settings table up to date ($(grep -c '^| `LOOM_' "$want") variables)"
