#!/usr/bin/env bash
# The quick-start job, with no download: pretrain a tiny Llama on a corpus generated here (a sparse Markov chain,
# "task A"), save it as a safetensors checkpoint, then fine-tune it with PiSSA and with LoRA -- same rank, steps,
# learning rate and data -- on a shifted task B (half of the tokens get new successors), and print the two loss
# curves side by side. Writes WORK/curves.png when gnuplot is installed.
#
# Pretraining uses only the existing programs: pissa-synth writes a random model at Hugging Face's initializer
# scale (weights of std 0.02) and pissa-finetune --method full trains every weight of it, embeddings included, into
# a full checkpoint.
#
# Usage: examples/demo.sh [BUILD_DIR] [WORK_DIR]
# PISSA_DEMO_QUICK=1 (tests/demo/check_demo.sh): a fifth of the data, pretraining and batch, 10 updates evaluated
# every 5 -- enough pretraining for PiSSA's lead at update 10 to show, in a few seconds. PISSA_DEMO_QUICK=2: a tiny
# run (12 pretraining updates, too few for that lead) for the sanitizer build, where the quick size takes minutes.
set -euo pipefail
build=${1:-build}
work=${2:-demo}
V=64 D=64 T=64
if [ "${PISSA_DEMO_QUICK:-0}" = 2 ]; then
    rows=200 pre_steps=12 steps=6 every=2 batch=4
elif [ "${PISSA_DEMO_QUICK:-0}" = 1 ]; then
    rows=800 pre_steps=100 steps=10 every=5 batch=8
else
    rows=4000 pre_steps=200 steps=100 every=10 batch=16
fi
rank=8 lr=2e-2
mkdir -p "$work"
loss_of() { sed -n 's/.*"loss": \([0-9.eE+-]*\).*/\1/p'; }

echo "== 1. corpora: task A (pretraining) and the shifted task B, $V-token vocabulary, rows of $T tokens"
"$build/pissa-corpus" --out "$work/a_train.jsonl" --rows "$rows" --len $T --vocab $V --seed 1
"$build/pissa-corpus" --out "$work/a_eval.jsonl" --rows 200 --len $T --vocab $V --seed 2
"$build/pissa-corpus" --out "$work/b_train.jsonl" --rows "$rows" --len $T --vocab $V --shift 0.5 --seed 3
"$build/pissa-corpus" --out "$work/b_eval.jsonl" --rows 200 --len $T --vocab $V --shift 0.5 --seed 4
echo "   (the best possible loss on either task is the chain's entropy, 1.14 nats per token)"

echo "== 2. pretraining: random Llama (D $D, 2 layers, V $V), every weight trained"
"$build/pissa-synth" --out "$work/random" --dim $D --hidden 172 --layers 2 --heads 4 --kv-heads 4 --vocab $V --seq $T
"$build/pissa-finetune" --model "$work/random" --data "$work/a_train.jsonl" --out "$work/pretrained" --method full \
    --lr 1e-2 --steps $pre_steps --batch $batch --seq $T -q
base_a=$("$build/pissa-eval" --model "$work/pretrained" --data "$work/a_eval.jsonl" --json 2>/dev/null | loss_of)
base_b=$("$build/pissa-eval" --model "$work/pretrained" --data "$work/b_eval.jsonl" --json 2>/dev/null | loss_of)
echo "   pretrained model $work/pretrained: held-out loss $base_a on task A, $base_b on task B"

echo "== 3. fine-tuning on task B: PiSSA vs LoRA, rank $rank on all 7 projections, $steps updates of $batch x $T, lr $lr"
for m in pissa lora; do
    "$build/pissa-finetune" --model "$work/pretrained" --data "$work/b_train.jsonl" --eval-data "$work/b_eval.jsonl" \
        --out "$work/$m" --method $m --rank $rank --target all-linear --lr $lr --steps $steps --batch $batch \
        --seq $T --eval-every $every --seed 0 -q
done

echo
echo "Loss on task B (train: that update's batch; held-out: 200 rows)"
printf '%6s  %12s %12s  %12s %12s\n' update "PiSSA train" "LoRA train" "PiSSA eval" "LoRA eval"
printf '%6s  %12s %12s  %12.4f %12.4f\n' 0 - - "$base_b" "$base_b"
# log.csv: step,split,loss,lr,grad_norm,tokens -- join the two runs on (step, split).
awk -F, -v every=$every '
    FNR == 1 { run++; next }
    { loss[run, $1, $2] = $3; if ($1 > last) last = $1 }
    END {
        for (s = every; s <= last; s += every)
            printf "%6d  %12.4f %12.4f  %12.4f %12.4f\n", s, loss[1, s, "train"], loss[2, s, "train"],
                   loss[1, s, "eval"], loss[2, s, "eval"]
    }' "$work/pissa/log.csv" "$work/lora/log.csv"
final() { awk -F, '$2 == "eval" { l = $3 } END { print l }' "$1"; }
echo
echo "Held-out loss on task B: before $base_b; after PiSSA $(final "$work/pissa/log.csv"), after LoRA $(final "$work/lora/log.csv")"

if command -v gnuplot >/dev/null 2>&1; then
    term=png
    gnuplot -e 'set terminal pngcairo' >/dev/null 2>&1 && term=pngcairo
    for m in pissa lora; do
        grep ',train,' "$work/$m/log.csv" > "$work/$m/train.csv" || true
        { echo "0,eval,$base_b"; grep ',eval,' "$work/$m/log.csv"; } > "$work/$m/eval.csv" || true
    done
    gnuplot >/dev/null 2>&1 <<EOF && echo "Plot: $work/curves.png" || true
set terminal $term size 800,500
set output '$work/curves.png'
set datafile separator ','
set title 'Fine-tuning on the shifted task: PiSSA vs LoRA (rank $rank, lr $lr)'
set xlabel 'update'; set ylabel 'loss (nats per token)'; set key top right; set grid
plot '$work/pissa/train.csv' using 1:3 with lines lc rgb '#f4a0a0' title 'PiSSA train', \
     '$work/lora/train.csv' using 1:3 with lines lc rgb '#a0c0e8' title 'LoRA train', \
     '$work/pissa/eval.csv' using 1:3 with linespoints lw 2 pt 7 lc rgb '#d62728' title 'PiSSA held-out', \
     '$work/lora/eval.csv' using 1:3 with linespoints lw 2 pt 7 lc rgb '#1f77b4' title 'LoRA held-out'
EOF
fi
