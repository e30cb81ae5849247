#!/usr/bin/env bash
# tools/demo.sh - the main job, run by `make demo`: a real PyTorch DCP save and load under tierckpt.
#
#   tools/demo.sh BUILD_DIR        (BUILD_DIR holds tierckpt and libtierckpt.so)
#
# 1. trains a small MLP with 2 processes over gloo (tools/demo_train.py) under
#    `tierckpt run`, checkpointing with DCP into $TIERCKPT_PREFIX/step_<N>, and prints the stall
#    of each save;
# 2. runs a second job that resumes from the newest step and checks that every tensor is
#    bit-identical to what was saved;
# 3. shows where the bytes live: `tierckpt ls`, the real prefix directory (empty), the tier.
# Everything lives in scratch directories (one under /tmp, one under /dev/shm) that are removed
# on exit.  Exit status 0 on success.
set -euo pipefail

usage() { echo "usage: $0 BUILD_DIR   (the directory holding tierckpt and libtierckpt.so)" >&2; exit 2; }
die() { echo "demo: error: $*" >&2; exit 1; }

[[ $# -eq 1 ]] || usage
BUILD=$(cd "$1" && pwd) || die "no build directory $1"
TIERCKPT=$BUILD/tierckpt
PY=/usr/bin/python3   # Debian's python3-torch is only there
cd "$(dirname "${BASH_SOURCE[0]}")/.."

[[ -x $TIERCKPT && -f $BUILD/libtierckpt.so ]] ||
    die "$TIERCKPT or $BUILD/libtierckpt.so missing: run \`make\` first"
"$PY" -c 'import torch' 2>/dev/null ||
    die "$PY cannot import torch: install python3-torch (tools/install-deps.sh)"

SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/tierckpt-demo.XXXXXX")
SHM=
cleanup() {
    rm -rf -- "$SCRATCH"
    [[ -n $SHM ]] && rm -rf -- "$SHM"
    return 0
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
SHM=$(mktemp -d /dev/shm/tierckpt-demo.XXXXXX)

PREFIX=$SCRATCH/checkpoints
REF=$SCRATCH/reference   # plain copies of what was saved, outside the prefix
mkdir -p "$PREFIX" "$REF"

export TIERCKPT_PREFIX=$PREFIX
export TIERCKPT_SHM_DIR=$SHM
export TIERCKPT_NAMESPACE=demo
unset TIERCKPT_CONFIG TIERCKPT_S3_BASE_PATH   # memory only for now
TIER=$SHM/tierckpt-$(id -u)/$TIERCKPT_NAMESPACE

echo "== tierckpt demo"
echo "   TIERCKPT_PREFIX=$PREFIX   (what the job writes to)"
echo "   TIERCKPT_SHM_DIR=$SHM   (where the memory tier lives)"

echo
echo "== 1. train under tierckpt, DCP checkpoint every 10 steps"
"$TIERCKPT" run -- "$PY" tools/demo_train.py train \
    --ckpt-root "$PREFIX" --ref-dir "$REF" --steps 30 --save-every 10

echo
echo "== 2. a new job resumes from the newest step"
"$TIERCKPT" run -- "$PY" tools/demo_train.py resume --ckpt-root "$PREFIX" --ref-dir "$REF"

echo
echo "== 3. where the bytes live"
echo "\$ tierckpt ls"
"$TIERCKPT" ls
echo "\$ ls -A $PREFIX      # the real directory: nothing was written there"
real=$(ls -A "$PREFIX")
if [[ -n $real ]]; then
    echo "$real"
    die "files landed at the real path $PREFIX: the shim did not redirect them"
fi
echo "(empty)"
echo "\$ du -sh <step directories in $TIER>      # the memory tier"
[[ -d $TIER ]] || die "no tier directory $TIER"
mapfile -t steps < <(find "$TIER" -type d -name 'step_*' -prune | sort -V)
(( ${#steps[@]} > 0 )) || die "no step directory in the tier $TIER"
du -sh "${steps[@]}"

echo
echo "demo: OK (scratch directories removed on exit)"
