#!/bin/sh
# test_install.sh: loom as a user installs and links it. `meson install` into a scratch
# root puts loom.h, libloom.so.0 (its SONAME versioned), a pkg-config file and the
# tools there; examples/allreduce.c, compiled with the README's line against that
# install alone, runs on 3 ranks under the installed loomrun and is right; libloom
# needs no C++ runtime; the versions agree (meson's, loom.h's, the library's).
#
#   test_install.sh BUILD_DIR SOURCE_DIR PROJECT_VERSION
set -u
build=${1:?usage: test_install.sh BUILD_DIR SOURCE_DIR PROJECT_VERSION} src=${2:?} version=${3:?}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/loom-install.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
fail=0
no() { echo "FAIL: $*"; fail=1; }

timeout 120 meson install -C "$build" --no-rebuild --destdir "$tmp/root" >"$tmp/install.log" 2>&1 ||
    { cat "$tmp/install.log"; no "meson install"; exit 1; }
pc=$(find "$tmp/root" -name loom.pc | head -1)
lib=$(find "$tmp/root" -name 'libloom.so.0' | head -1)
hdr=$(find "$tmp/root" -name loom.h | head -1)
run=$(find "$tmp/root" -name loomrun -type f | head -1)
for f in "$pc" "$lib" "$hdr" "$run"; do [ -n "$f" ] || no "missing from the install: $(ls -R "$tmp/root" | head -40)"; done
[ "$fail" = 0 ] || exit 1
for t in loom-env loom-perf; do find "$tmp/root" -name "$t" -type f | grep -q . || no "$t not installed"; done

if readelf -d "$lib" | grep -qE 'NEEDED.*lib(asan|tsan|ubsan)'; then
    echo "skip: a sanitizer build (its library needs the sanitizer's runtime loaded first)"
    exit 77
fi
soname=$(readelf -d "$lib" | sed -n 's/.*SONAME.*\[\(.*\)\]/\1/p')
[ "$soname" = libloom.so.0 ] || no "SONAME '$soname', want libloom.so.0"
if readelf -d "$lib" | grep -q 'NEEDED.*libstdc++'; then no "libloom needs libstdc++"; fi

# the README's compile line, against the install only (sysroot: the .pc names /usr/local)
export PKG_CONFIG_PATH=$(dirname "$pc") PKG_CONFIG_SYSROOT_DIR=$tmp/root
flags=$(pkg-config --cflags --libs loom) || no "pkg-config --cflags --libs loom"
[ "$(pkg-config --modversion loom)" = "$version" ] || no "pkg-config version $(pkg-config --modversion loom), want $version"
cc "$src/examples/allreduce.c" $flags -o "$tmp/allreduce" || no "the example does not compile: cc allreduce.c $flags"
libdir=$(dirname "$lib")
LD_LIBRARY_PATH=$libdir timeout 60 "$run" -n 3 "$tmp/allreduce" >"$tmp/out" 2>&1 || { cat "$tmp/out"; no "the example failed"; }
grep -q "^\[2\] rank 2 of 3: sum 6 (expected 6)$" "$tmp/out" || { cat "$tmp/out"; no "the example's output"; }

# versions: meson's, loom.h's, the installed tools' (compiled against loom.h)
h=$(awk '/^#define LOOM_VERSION_(MAJOR|MINOR|PATCH) / { v = v (v == "" ? "" : ".") $3 } END { print v }' "$hdr")
[ "$h" = "$version" ] || no "loom.h says $h, meson.build $version"
v=$(LD_LIBRARY_PATH=$libdir "$run" --version)
[ "$v" = "loomrun (loom) $version" ] || no "loomrun --version: '$v'"
[ "$fail" = 0 ] && echo "install: loom $version installs, links through pkg-config and runs (SONAME $soname)"
exit $fail
