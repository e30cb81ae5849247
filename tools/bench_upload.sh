#!/usr/bin/env bash
# tools/bench_upload.sh - upload throughput of tierckpt against Debian's aws-cli, same step, same
# local S3 server, same run.  Run by `make bench` after the file-call benchmark.
#
#   tools/bench_upload.sh BUILD_DIR
#
# A step of BENCH_UPLOAD_MB MiB (default 1024, in 4 files, like the shards of a DCP checkpoint)
# is written under the shim into a scratch tier, committed with a marker, and uploaded by
# `tierckpt flush` (the shim's uploader: multipart, TIERCKPT_S3_CONCURRENCY parts in parallel).
# The same directory is then uploaded by `/usr/bin/aws s3 cp --recursive` to another key prefix.
# Each is run BENCH_UPLOAD_RUNS times (default 3), alternating; the report gives the median
# seconds of each and the ratio aws/tierckpt (above 1: tierckpt is faster).  Target >= 1.2.
# Both are capped by the local server (it writes every byte to disk), so the ratio measures the
# clients' overheads, not S3.
set -euo pipefail
export LC_ALL=C

die() { echo "bench_upload: error: $*" >&2; exit 1; }
[[ $# -eq 1 ]] || { echo "usage: $0 BUILD_DIR" >&2; exit 2; }
BUILD=$(cd "$1" && pwd) || die "no build directory $1"
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MB=${BENCH_UPLOAD_MB:-1024}
RUNS=${BENCH_UPLOAD_RUNS:-3}
AWS=/usr/bin/aws
[[ -x $AWS ]] || die "$AWS missing (Debian's awscli): run tools/install-deps.sh"
[[ -x $BUILD/tierckpt ]] || die "$BUILD/tierckpt missing: run make"

SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/tierckpt-upbench.XXXXXX")
SHM=$(mktemp -d /dev/shm/tierckpt-upbench.XXXXXX)
SERVER_PID=
cleanup() {
    [[ -n $SERVER_PID ]] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
    rm -rf -- "$SCRATCH" "$SHM"
    return 0
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# the local S3 server, on a free port
coproc SRV { exec "$ROOT/tools/s3rver.sh" "$SCRATCH/s3data" bench 2>"$SCRATCH/s3rver.err"; }
SERVER_PID=$SRV_PID
read -r -t 60 ready port <&"${SRV[0]}" || die "the S3 server did not start: $(cat "$SCRATCH/s3rver.err")"
[[ $ready == READY ]] || die "unexpected server output: $ready $port"

export AWS_ENDPOINT_URL=http://127.0.0.1:$port AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER
export AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
export TIERCKPT_PREFIX=$SCRATCH/ckpt TIERCKPT_SHM_DIR=$SHM TIERCKPT_LOG_LEVEL=warn
mkdir -p "$TIERCKPT_PREFIX"

# the step: 4 shards and a marker, written through the shim (the job's view)
per=$(( MB / 4 ))
"$BUILD/tierckpt" run -- sh -c "mkdir -p '$TIERCKPT_PREFIX/step_1' && \
    for i in 0 1 2 3; do head -c ${per}M /dev/urandom > '$TIERCKPT_PREFIX/step_1/__'\$i'_0.distcp'; done && \
    echo marker > '$TIERCKPT_PREFIX/step_1/.metadata'" || die "writing the step failed"
TIER_STEP=$(find "$SHM" -type d -name step_1 -path '*/fs/*' | head -n 1)
[[ -d $TIER_STEP ]] || die "the step is not in the tier"

echo "bench_upload: ${MB} MiB step (4 files), $RUNS runs each, local S3 server on port $port"
t_ours=() t_aws=()
for (( i = 0; i < RUNS; i++ )); do
    # tierckpt: a fresh key prefix and a fresh journal each run (the step is re-committed)
    rm -f "$SHM"/tierckpt-*/default/meta/steps"$TIERCKPT_PREFIX"/step_1.{journal,state,error}
    a=$(date +%s.%N)
    TIERCKPT_S3_BASE_PATH=s3://bench/ours-$i/ "$BUILD/tierckpt" flush --timeout 900 >/dev/null ||
        die "tierckpt flush failed"
    b=$(date +%s.%N)
    "$AWS" --endpoint-url "$AWS_ENDPOINT_URL" s3 cp --recursive --quiet "$TIER_STEP" \
        "s3://bench/aws-$i/step_1" || die "aws s3 cp failed"
    c=$(date +%s.%N)
    t_ours+=("$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.3f", b - a }')")
    t_aws+=("$(awk -v b="$b" -v c="$c" 'BEGIN { printf "%.3f", c - b }')")
    printf '.'
done
echo
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END {
    printf "%.3f", (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
mo=$(median "${t_ours[@]}") ma=$(median "${t_aws[@]}")
printf '\n%-28s %10s %12s\n' upload "median s" "MB/s"
awk -v mb="$MB" -v mo="$mo" -v ma="$ma" 'BEGIN {
    printf "%-28s %10.3f %12.1f\n", "tierckpt (flush)", mo, mb * 1.048576 / mo
    printf "%-28s %10.3f %12.1f\n", "aws s3 cp --recursive", ma, mb * 1.048576 / ma
    printf "ratio aws/tierckpt: %.2f (target >= 1.2)\n", ma / mo }'
