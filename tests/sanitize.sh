#!/bin/bash
# sanitize.sh: the suites under a sanitizer, as `make check-sanitize` runs them.
#
#   tests/sanitize.sh asan|tsan [BUILD_DIR]
#
# asan  AddressSanitizer + UndefinedBehaviorSanitizer (every finding fatal, leaks
#       checked as each rank exits): the api, fail, boot and unit suites, every small
#       collective case over shm and tcp (1-8 ranks) and the medium ones at 2 and 3 ranks.
# tsan  ThreadSanitizer: the api, fail, boot and unit suites, every small collective
#       case, and the medium one over tcp at 2 ranks (the executor and the progress
#       thread hand slots to each other there).
# Built without CUDA (a sanitized cudart is not to be had); the build directory defaults
# to build-asan or build-tsan. A finding fails the test that made it. Sized to keep CI
# within its budget: about 4 minutes each on 2 cores.
set -euo pipefail
kind=${1:?usage: tests/sanitize.sh asan|tsan [BUILD_DIR]}
case "$kind" in
    asan) san=address,undefined ;;
    tsan) san=thread ;;
    *) echo "sanitize.sh: unknown kind '$kind' (asan or tsan)" >&2; exit 2 ;;
esac
dir=${2:-build-$kind}
cd "$(dirname "$0")/.."

if [ ! -f "$dir/build.ninja" ]; then
    meson setup "$dir" -Dcuda=disabled -Db_sanitize="$san" -Dbuildtype=debugoptimized \
        -Dc_args=-fno-sanitize-recover=all -Dcpp_args=-fno-sanitize-recover=all >/dev/null
fi
ninja -C "$dir" >/dev/null

tests=()
for tr in shm tcp; do
    for n in 1 2 3 4 5 8; do tests+=("coll-$tr-r$n-small"); done
done
if [ "$kind" = asan ]; then
    tests+=(coll-shm-r2-medium coll-shm-r3-medium coll-tcp-r2-medium coll-tcp-r3-medium)
else
    tests+=(coll-tcp-r2-medium)
fi
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:halt_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1
echo "== $kind: suites api, fail, boot, unit and ${#tests[@]} collective cases ($dir)"
# timeouts are the suites' own, times 3: sanitized code runs slower
meson test -C "$dir" --print-errorlogs --num-processes 2 -t 3 --suite api --suite fail --suite boot --suite unit
meson test -C "$dir" --print-errorlogs --num-processes 2 -t 3 "${tests[@]}"
