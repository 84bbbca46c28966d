#!/usr/bin/env bash
# ctest demo_script: runs examples/demo.sh at its quick size and checks that it exits 0 and prints both loss
# curves (a table row with four finite losses per eval point) and both final held-out losses.
# Usage: check_demo.sh SOURCE_DIR BUILD_DIR WORK_DIR
set -euo pipefail
src=$1 build=$2 work=$3
rm -rf "$work"
out=$(PISSA_DEMO_QUICK=1 bash "$src/examples/demo.sh" "$build" "$work" 2>&1) || { echo "$out"; echo "demo.sh failed"; exit 1; }
echo "$out"
num='[0-9]+\.[0-9]+'
grep -Eq '^ *update +PiSSA train +LoRA train +PiSSA eval +LoRA eval$' <<<"$out" || { echo "no curve table header"; exit 1; }
rows=$(grep -Ec "^ +[0-9]+ +$num +$num +$num +$num$" <<<"$out" || true)
[ "$rows" -ge 3 ] || { echo "expected at least 3 rows of both curves, got $rows"; exit 1; }
grep -Eq "^Held-out loss on task B: before $num; after PiSSA $num, after LoRA $num$" <<<"$out" \
    || { echo "no final held-out losses"; exit 1; }
for m in pissa lora; do
    [ -s "$work/$m/adapter_model.safetensors" ] || { echo "no $m adapter"; exit 1; }
done
[ -s "$work/pretrained/model.safetensors" ] || { echo "no pretrained checkpoint"; exit 1; }
echo "demo ok"
