#!/bin/bash
# run.sh: build the libFuzzer harnesses (clang, ASan+UBSan) and run each for a bounded
# time from the committed seeds, as `make check-fuzz` does.
#
#   fuzz/run.sh [SECONDS_EACH] [BUILD_DIR]     (defaults: 30, build-fuzz)
#
# New inputs go to a scratch folder, not into fuzz/corpus/ (the seeds stay as
# committed: python3 fuzz/seeds.py writes them). A crash, a leak or a sanitizer finding
# fails the run and leaves the input under the scratch folder, whose path is printed.
set -euo pipefail
secs=${1:-30}
dir=${2:-build-fuzz}
cd "$(dirname "$0")/.."
root=$PWD
case "$dir" in /*) ;; *) dir=$root/$dir ;; esac
command -v clang >/dev/null || { echo "fuzz/run.sh: clang not found (Debian: clang)" >&2; exit 1; }
if [ ! -f "$dir/build.ninja" ]; then
    CC=clang CXX=clang++ meson setup "$dir" -Dfuzz=true -Dcuda=disabled -Db_sanitize=address,undefined \
        -Db_lundef=false -Dbuildtype=debugoptimized -Dc_args=-fno-sanitize-recover=all >/dev/null
fi
targets="id gate ctrl tcp env"
ninja -C "$dir" $(for t in $targets; do echo "fuzz/fuzz_$t"; done) >/dev/null
scratch=$(mktemp -d "${TMPDIR:-/tmp}/loom-fuzz.XXXXXX")
status=0
for t in $targets; do
    mkdir -p "$scratch/$t"
    log="$scratch/$t.log"
    if (cd "$scratch/$t" && ASAN_OPTIONS=detect_leaks=1 "$dir/fuzz/fuzz_$t" -max_total_time="$secs" \
            -timeout=10 -rss_limit_mb=1024 -max_len=4096 -print_final_stats=1 "$scratch/$t" \
            "$root/fuzz/corpus/$t") >"$log" 2>&1; then
        runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
        echo "fuzz_$t: ok, $runs runs in ${secs} s"
    else
        echo "fuzz_$t: FAILED (log and input in $scratch/$t*):"
        grep -E "ERROR|SUMMARY|deadly|Test unit written" "$log" | head -8 | sed 's/^/    /'
        status=1
    fi
done
[ $status = 0 ] && rm -rf "$scratch"
exit $status
