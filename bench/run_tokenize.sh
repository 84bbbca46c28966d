#!/bin/sh
# Tokenizer encode throughput, libpissa against transformers.js (the npm package the tokenizer fixtures come from), one
# thread each, on the first MB of tinyshakespeare encoded as one text with add_special_tokens; builds nothing.
#   bench/run_tokenize.sh [--bytes N] [--reps R]
# Environment: BUILD_DIR (default build), DATA_DIR (default ../shared/data), NODE_MODULES (default
# tests/reference/tokenizers/node_modules: `npm install --ignore-scripts` there, see its README.md).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
build=${BUILD_DIR:-$here/../build}
data=${DATA_DIR:-$here/../../shared/data}
modules=${NODE_MODULES:-$here/../tests/reference/tokenizers/node_modules}
exe=$build/bench/bench_tokenize
[ -x "$exe" ] || { echo "run_tokenize.sh: $exe not found (build first: cmake --build $build)" >&2; exit 1; }
[ -d "$modules/@huggingface/transformers" ] || {
    echo "run_tokenize.sh: $modules/@huggingface/transformers not found (npm install --ignore-scripts in" \
         "tests/reference/tokenizers)" >&2; exit 1; }
text=$data/tinyshakespeare/input.txt
set -- --text "$text" "$@" llama2="$data/tokenizers/llama2" llama3="$data/tokenizers/llama3" \
    qwen3="$data/tokenizers/qwen3" gpt2_style="$here/../tests/reference/tokenizers/gpt2_style"
tmp=${TMPDIR:-/tmp}/pissa-bench-tokenize.$$
mkdir -p "$tmp"
trap 'rm -rf "$tmp"' EXIT
OPENBLAS_NUM_THREADS=1 "$exe" "$@" > "$tmp/c.tsv"
node "$here/bench_tokenize.mjs" "$modules" "$@" > "$tmp/js.tsv"
# one table: MB/s of each side and the ratio (the id counts must agree: both encode the same text)
awk -F'\t' 'NR == FNR { if (FNR > 1) { js[$1] = $6; jsn[$1] = $3 } next }
    FNR == 1 { printf "%-11s %9s %8s %14s %18s %7s\n", "tokenizer", "bytes", "ids", "libpissa MB/s", "transformers.js MB/s", "ratio"; next }
    { if (jsn[$1] != $3) { printf "%s: %s ids here, %s in transformers.js\n", $1, $3, jsn[$1] > "/dev/stderr"; bad = 1 }
      printf "%-11s %9d %8d %14.2f %18.2f %6.1fx\n", $1, $2, $3, $6, js[$1], $6 / js[$1] }
    END { exit bad }' "$tmp/js.tsv" "$tmp/c.tsv"
