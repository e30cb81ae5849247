#!/usr/bin/env bash
# tools/bench.sh - what the shim costs a file call OUTSIDE the prefix, run by `make bench`.
#
#   tools/bench.sh BUILD_DIR      (BUILD_DIR holds bench_files and libtierckpt.so)
#
# Runs BUILD_DIR/bench_files (tools/bench_files.c) RUNS times without the shim and RUNS times
# with LD_PRELOAD=libtierckpt.so and TIERCKPT_PREFIX set to a scratch directory (so the shim is
# active, but the benchmarked file is elsewhere), alternating the two so that machine noise
# hits both alike, and prints per call: median baseline ns/op, median shim ns/op, and the ratio
# shim/baseline as the median of the RUNS per-pair ratios (a pair is two neighbouring runs, so
# slow drift of the machine's load cancels out).
# Target: ratio <= 1.05 (DESIGN.md section 7: writes outside the prefix are not slowed
# measurably).  A ratio over target is reported, not fatal: the machine may be noisy.
#
# Environment: BENCH_RUNS (pairs of runs, default 15) and BENCH_ITERS (calls per kind per run,
# default 20000): about 10-30 s in all, depending on the machine's load.
set -euo pipefail
export LC_ALL=C   # "." decimal point for awk and printf

usage() { echo "usage: $0 BUILD_DIR   (the directory holding bench_files and libtierckpt.so)" >&2; exit 2; }
die() { echo "bench: error: $*" >&2; exit 1; }

[[ $# -eq 1 ]] || usage
BUILD=$(cd "$1" && pwd) || die "no build directory $1"
BENCH=$BUILD/bench_files
LIB=$BUILD/libtierckpt.so
RUNS=${BENCH_RUNS:-15}
ITERS=${BENCH_ITERS:-20000}
TARGET=1.05
START=$BUILD/bench_start    # start-up of /bin/true, with and without the shim
START_RUNS=${BENCH_START_RUNS:-40}
START_TARGET=1.25
[[ -x $BENCH ]] || die "$BENCH missing: run \`make $BUILD/bench_files\` (or \`make bench\`)"
[[ -f $LIB ]] || die "$LIB missing: run \`make\` first"
[[ -x $START ]] || die "$START missing: run \`make bench\`"
[[ $RUNS =~ ^[1-9][0-9]*$ && $ITERS =~ ^[1-9][0-9]*$ ]] ||
    die "BENCH_RUNS and BENCH_ITERS must be positive integers"

SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/tierckpt-bench.XXXXXX")
SHM=
cleanup() {
    rm -rf -- "$SCRATCH"
    [[ -n $SHM ]] && rm -rf -- "$SHM"
    return 0
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
SHM=$(mktemp -d /dev/shm/tierckpt-bench.XXXXXX)

FILES=$SCRATCH/files        # the benchmarked file lives here: outside the prefix
PREFIX=$SCRATCH/checkpoints # the prefix the shim redirects: never touched by the loop
mkdir -p "$FILES" "$PREFIX" "$SCRATCH/out"

# The two configurations; both start from an environment without any tierckpt setting
# (the unquoted $(...) is meant to split into "-u NAME" words).
# shellcheck disable=SC2046
base() { env -u LD_PRELOAD $(env | sed -n 's/^\(TIERCKPT_[A-Z0-9_]*\)=.*/-u \1/p') "$@"; }
shim() {
    base env LD_PRELOAD="$LIB" TIERCKPT_PREFIX="$PREFIX" TIERCKPT_SHM_DIR="$SHM" \
        TIERCKPT_LOG_LEVEL=warn "$@"
}

# Prove the shim is active with these settings: a file made under the prefix must land in the
# tier, not at the real path.  Otherwise the numbers would measure a pass-through shim.
shim touch "$PREFIX/bench-probe" || die "touch under the shim failed"
if [[ -e $PREFIX/bench-probe ]] || [[ -z $(find "$SHM" -name bench-probe -print -quit) ]]; then
    die "the shim did not redirect $PREFIX/bench-probe into $SHM: is $LIB a working shim?"
fi

echo "bench: $RUNS pairs of runs, $ITERS calls per kind per run, without and with the shim (alternating)"
echo "       file $FILES/bench_files.dat, prefix $PREFIX"
for (( i = 0; i < RUNS; i++ )); do
    # Alternate which configuration goes first so that neither always runs on a warmer cache.
    if (( i % 2 == 0 )); then order=(base shim); else order=(shim base); fi
    for how in "${order[@]}"; do
        { "$how" "$BENCH" "$FILES" "$ITERS" && "$how" "$START" /bin/true "$START_RUNS"; } \
            >"$SCRATCH/out/$how.$i" || die "bench_files failed ($how, run $((i + 1)))"
    done
    printf '.'
done
echo

# median: the median of the numbers on stdin, one a line; fails when there are none.
median() {
    sort -g | awk '{ v[NR] = $1 }
        END { if (NR == 0) exit 1
              printf "%.3f\n", (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
# ns CONFIG RUN CALL: the ns/op that run RUN of CONFIG (base or shim) measured for CALL.
ns() { awk -v c="$3" '$1 == c { print $2 }' "$SCRATCH/out/$1.$2"; }

# bench_files' own order of kinds.
kinds=$(awk '{ print $1 }' "$SCRATCH/out/base.0")
printf '\n%-12s %14s %14s %8s\n' call "baseline ns/op" "shim ns/op" ratio
worst=0
for call in $kinds; do
    b=$(for (( i = 0; i < RUNS; i++ )); do ns base $i "$call"; done | median) ||
        die "no baseline result for $call"
    s=$(for (( i = 0; i < RUNS; i++ )); do ns shim $i "$call"; done | median) ||
        die "no shim result for $call"
    r=$(for (( i = 0; i < RUNS; i++ )); do
            awk -v b="$(ns base $i "$call")" -v s="$(ns shim $i "$call")" \
                'BEGIN { if (b > 0 && s > 0) printf "%.6f\n", s / b }'
        done | median) || die "no ratio for $call"
    t=$TARGET; [[ $call == start ]] && t=$START_TARGET
    flag=$(awk -v r="$r" -v t="$t" 'BEGIN { print (r + 0 <= t + 0) ? "" : "  over target" }')
    printf '%-12s %14.1f %14.1f %8s%s\n' "$call" "$b" "$s" "$r" "$flag"
    [[ $call == start ]] ||
        worst=$(awk -v r="$r" -v w="$worst" 'BEGIN { print (r + 0 > w + 0) ? r : w }')
done
verdict=$(awk -v w="$worst" -v t="$TARGET" \
    'BEGIN { print (w + 0 <= t + 0) ? "met" : "NOT met (a noisy machine? run it again)" }')
printf '\nns/op: median of %d runs each; ratio: median of the %d shim/baseline pairs\n' "$RUNS" "$RUNS"
printf 'start: microseconds to run /bin/true (posix_spawn + wait, %d per run), target <= %s\n' \
    "$START_RUNS" "$START_TARGET"
printf 'worst file-call ratio %s, target <= %s: %s\n' "$worst" "$TARGET" "$verdict"
