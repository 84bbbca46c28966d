#!/usr/bin/env bash
# ctest demo_script: runs examples/demo.sh at its quick size and checks what the README claims of it: both loss
# curves are printed, fine-tuning with either method lowers the held-out loss on task B, PiSSA's held-out loss is
# below LoRA's at update 10, and WORK/curves.png is drawn when gnuplot is installed (a missing gnuplot fails the
# test under PISSA_REQUIRE_ALL=1, as CI sets it). SIZE tiny (the sanitizer build, where the quick size takes
# minutes) runs the tiny size, whose 12 pretraining updates are too few for PiSSA's lead: everything else is checked.
# Usage: check_demo.sh SOURCE_DIR BUILD_DIR WORK_DIR [quick|tiny]
set -euo pipefail
src=$1 build=$2 work=$3 size=${4:-quick}
rm -rf "$work"
case $size in quick) level=1 ;; tiny) level=2 ;; *) echo "check_demo.sh: size '$size' is not quick or tiny"; exit 2 ;; esac
out=$(PISSA_DEMO_QUICK=$level bash "$src/examples/demo.sh" "$build" "$work" 2>&1) \
    || { echo "$out"; echo "demo.sh failed"; exit 1; }
echo "$out"
fail() { echo "FAIL: $*"; exit 1; }
num='[0-9]+\.[0-9]+'
grep -Eq '^ *update +PiSSA train +LoRA train +PiSSA eval +LoRA eval$' <<<"$out" || fail "no curve table header"
rows=$(grep -Ec "^ +[0-9]+ +$num +$num +$num +$num$" <<<"$out" || true)
[ "$rows" -ge 2 ] || fail "expected at least 2 rows of both curves, got $rows"
final=$(grep -E "^Held-out loss on task B: before $num; after PiSSA $num, after LoRA $num$" <<<"$out") \
    || fail "no final held-out losses"
# "before B; after PiSSA P, after LoRA L": both methods lower the held-out loss
read -r before pissa lora < <(sed -E 's/.*before ([0-9.]+); after PiSSA ([0-9.]+), after LoRA ([0-9.]+)$/\1 \2 \3/' <<<"$final")
awk -v b="$before" -v p="$pissa" -v l="$lora" 'BEGIN { exit !(p < b && l < b) }' \
    || fail "held-out loss not lowered by both methods: before $before, after PiSSA $pissa, after LoRA $lora"
echo "held-out loss $before -> PiSSA $pissa, LoRA $lora"
if [ "$size" = quick ]; then
    # the row of update 10: PiSSA's held-out loss (4th column) below LoRA's (5th)
    row10=$(grep -E "^ +10 +$num +$num +$num +$num$" <<<"$out") || fail "no row for update 10"
    awk '{ exit !($4 < $5) }' <<<"$row10" || fail "PiSSA does not lead LoRA at update 10: $row10"
    echo "at update 10: $(awk '{ print "PiSSA " $4 ", LoRA " $5 }' <<<"$row10")"
else
    echo "PiSSA's lead at update 10 is checked at the quick size (the Release build), not at the tiny one"
fi
for m in pissa lora; do
    [ -s "$work/$m/adapter_model.safetensors" ] || fail "no $m adapter"
done
[ -s "$work/pretrained/model.safetensors" ] || fail "no pretrained checkpoint"
if command -v gnuplot >/dev/null 2>&1; then
    [ "$(head -c 8 "$work/curves.png" 2>/dev/null | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] \
        || fail "gnuplot is installed but $work/curves.png is not a PNG"
elif [ "${PISSA_REQUIRE_ALL:-0}" != 0 ]; then
    fail "gnuplot (Debian: gnuplot-nox) is missing, and PISSA_REQUIRE_ALL=1 forbids skipping the plot check"
else
    echo "SKIPPED: gnuplot (Debian: gnuplot-nox) is missing: curves.png not checked"
fi
echo "demo ok"
