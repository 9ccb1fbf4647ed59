# cli.sh: -h/--help, --version and unknown --options, alike in loom's bench scripts
# (sourced by scripts in bench/, sh or bash). The help is the script's own head
# comment. Single-letter options are each script's (getopts names an unknown one).
loom_root=$(cd "$(dirname "$0")/.." && pwd)

cli_version() {
    awk '/^#define LOOM_VERSION_(MAJOR|MINOR|PATCH) / { v = v (v == "" ? "" : ".") $3 } END { print v }' \
        "$loom_root/include/loom.h"
}

cli_help() { sed -n '2,/^[^#]/{/^#/{s/^# \{0,1\}//;p}}' "$1"; }

# cli_scan SCRIPT ARGS...: before the script parses ARGS (up to "--").
cli_scan() {
    script=$1
    shift
    for a in "$@"; do
        case $a in
        --) return 0 ;;
        -h|--help) cli_help "$script"; exit 0 ;;
        --version) echo "$(basename "$script") (loom) $(cli_version)"; exit 0 ;;
        --*) echo "$(basename "$script"): unknown option '$a'" >&2; cli_help "$script" >&2; exit 2 ;;
        esac
    done
}
