#!/bin/sh
# Chat template rendering, libpissa against @huggingface/jinja (node) and Python's jinja2 (transformers' engine),
# the same templates and conversations, one thread each; builds and installs nothing.
#   bench/run_chat.sh [REPS]      (default 2000 renders per template)
# Needs: BUILD_DIR/bench/bench_chat (default build), node with tests/reference/chat/node_modules (npm install
# --ignore-scripts there), and a python3 (PYTHON, default python3) with jinja2.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
build=${BUILD_DIR:-$here/../build}
python=${PYTHON:-python3}
reps=${1:-2000}
exe=$build/bench/bench_chat
[ -x "$exe" ] || { echo "run_chat.sh: $exe not found (build first: cmake --build $build)" >&2; exit 1; }
tmp=${TMPDIR:-/tmp}/pissa-bench-chat.$$
mkdir -p "$tmp"
"$exe" --dir "$here/../tests/reference/chat" --shared "$here/../../shared/data" --reps "$reps" --out "$tmp/pairs.tsv"
cut -f1,4 "$tmp/pairs.tsv" | LC_ALL=C sort > "$tmp/c.tsv"
node "$here/bench_chat_ref.mjs" "$tmp/pairs.tsv" "$reps" | LC_ALL=C sort > "$tmp/js.tsv"
"$python" "$here/bench_chat_jinja2.py" "$tmp/pairs.tsv" "$reps" | LC_ALL=C sort > "$tmp/py.tsv"
echo
printf '%-18s %12s %12s %12s %10s %10s\n' template "libpissa us" "hf/jinja us" "jinja2 us" "vs js" "vs jinja2"
LC_ALL=C join -t "$(printf '\t')" "$tmp/c.tsv" "$tmp/js.tsv" | LC_ALL=C join -t "$(printf '\t')" - "$tmp/py.tsv" |
    awk -F'\t' '{ printf "%-18s %12.1f %12.1f %12.1f %9.1fx %9.1fx\n", $1, $2, $3, $4, $3 / $2, $4 / $2;
                  sc += log($3 / $2); sp += log($4 / $2); n++ }
                END { printf "%-18s %12s %12s %12s %9.1fx %9.1fx\n", "geometric mean", "", "", "", exp(sc / n), exp(sp / n) }'
rm -rf "$tmp"
