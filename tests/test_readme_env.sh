#!/bin/sh
# test_readme_env.sh: the README's settings table is what loom-env prints, so every
# LOOM_* variable loom reads is documented (regenerate it with loom-env --markdown).
#   test_readme_env.sh PATH/TO/loom-env PATH/TO/README.md
set -eu
table=$("$1" --markdown)
missing=0
printf '%s\n' "$table" | while IFS= read -r line; do
    grep -qxF -- "$line" "$2" || { echo "README.md lacks: $line"; exit 1; }
done || missing=1
[ "$missing" = 0 ] && echo "README settings table up to date"
exit "$missing"
