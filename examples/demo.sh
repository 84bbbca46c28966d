#!/usr/bin/env bash
# The quick-start job: generate a small Llama checkpoint (no download), then PiSSA-initialise it as the
# official PiSSA workflow does, with the fast randomized SVD and with the exact SVD.
# Usage: examples/demo.sh [BUILD_DIR] [WORK_DIR]
set -euo pipefail
build=${1:-build}
work=${2:-demo}
"$build/pissa-synth" --out "$work/base" --layers 4 --dim 512 --hidden 1376 --heads 8 --kv-heads 8 --vocab 4096
echo
"$build/pissa-init" --model "$work/base" --out "$work/pissa" --rank 16 --target all-linear --init pissa_niter_4
echo
"$build/pissa-init" --model "$work/base" --out "$work/pissa_exact" --rank 16 --target all-linear --init pissa -q
echo
echo "Residual model: $work/pissa/model.safetensors + config.json; initial adapter: $work/pissa/pissa_init/"
