#!/bin/sh
# SVD benchmark, libpissa against PyTorch on the same matrices; builds nothing.
#   bench/run_svd.sh [--no-exact] [--shapes 1024x1024,4096x4096,4096x11008] [--reps 3]
# Environment: BUILD_DIR (default build), THREADS (default 2; OpenBLAS on our side, torch.set_num_threads on
# PyTorch's), OUT_DIR (default $TMPDIR/pissa-bench-svd: the matrices, up to 180 MB each, and c_results.tsv),
# OPENBLAS_CORETYPE (default SkylakeX on a CPU with AVX-512: bench/blas_env.sh).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
. "$here/blas_env.sh" # OPENBLAS_CORETYPE=SkylakeX on AVX-512 CPUs unless set
build=${BUILD_DIR:-$here/../build}
threads=${THREADS:-2}
out=${OUT_DIR:-${TMPDIR:-/tmp}/pissa-bench-svd}
reps=3
prev=
for a in "$@"; do [ "$prev" = --reps ] && reps=$a; prev=$a; done
exe=$build/bench/bench_svd
[ -x "$exe" ] || { echo "run_svd.sh: $exe not found (build first: cmake --build $build)" >&2; exit 1; }
mkdir -p "$out"
OPENBLAS_NUM_THREADS=$threads OMP_NUM_THREADS=$threads "$exe" --out-dir "$out" "$@"
OPENBLAS_NUM_THREADS=$threads OMP_NUM_THREADS=$threads \
    /usr/bin/python3 "$here/bench_svd_torch.py" --dir "$out" --threads "$threads" --reps "$reps"
