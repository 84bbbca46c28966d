#!/bin/sh
# Activation checkpointing: memory and time of a training step with and without it. bench/bench_train --model (LoRA
# r 16 on all 7 projections, no dropout, AdamW; median step after warm-up), each run its own process under
# /usr/bin/time -v, alternating off and on. Builds nothing.
#   bench/run_checkpoint.sh [MODEL_DIR]
# Default model: TinyLlama-1.1B's dimensions (D 2048, F 5632, 22 layers, 32 heads, 4 kv heads, V 32000, untied,
# bf16: 2.2 GB), written once by pissa-synth to OUT_DIR/tinyllama and used in place from the mapping.
# Environment: BUILD_DIR (default build), THREADS (2), BATCH (4), SEQ (256), WARMUP (1), STEPS (2), REPEATS (1),
# OUT_DIR (default $TMPDIR/pissa-bench-ckpt), OPENBLAS_CORETYPE (default SkylakeX: OpenBLAS 0.3.21 does not
# recognise this machine's CPU and falls back to slow kernels; docs/benchmarks.md).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
build=${BUILD_DIR:-$here/../build}
threads=${THREADS:-2}
batch=${BATCH:-4}
seq=${SEQ:-256}
warmup=${WARMUP:-1}
steps=${STEPS:-2}
repeats=${REPEATS:-1}
out=${OUT_DIR:-${TMPDIR:-/tmp}/pissa-bench-ckpt}
export OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-SkylakeX}
exe=$build/bench/bench_train
for x in "$exe" "$build/pissa-synth" /usr/bin/time; do
    [ -x "$x" ] || { echo "run_checkpoint.sh: $x not found (build first: cmake --build $build)" >&2; exit 1; }
done
mkdir -p "$out"
model=${1:-$out/tinyllama}
if [ $# -eq 0 ] && [ ! -f "$model/config.json" ]; then
    "$build/pissa-synth" --out "$model" --dim 2048 --hidden 5632 --layers 22 --heads 32 --kv-heads 4 --vocab 32000 \
        --untied --dtype bf16
fi
results=$out/results.txt
: > "$results"
echo "model $model, batch $batch x $seq, $threads threads, OPENBLAS_CORETYPE=$OPENBLAS_CORETYPE"
echo "load before: $(uptime)"
for r in $(seq "$repeats"); do
    for ck in 0 1; do
        flag=
        [ "$ck" = 1 ] && flag=--grad-checkpoint
        OPENBLAS_NUM_THREADS=$threads /usr/bin/time -v -o "$out/time_$ck.txt" "$exe" --model "$model" \
            --batch "$batch" --seq "$seq" --threads "$threads" --warmup "$warmup" --steps "$steps" --peak-n 256 \
            $flag > "$out/run_$ck.txt"
        grep -v '^RESULT' "$out/run_$ck.txt"
        rss=$(sed -n 's/.*Maximum resident set size (kbytes): *//p' "$out/time_$ck.txt")
        wall=$(sed -n "s/.*Elapsed (wall clock) time (h:mm:ss or m:ss): *//p" "$out/time_$ck.txt")
        echo "  /usr/bin/time: peak RSS $((rss / 1024)) MiB, wall $wall"
        sed -n "s/^RESULT /run $r time_rss_mib=$((rss / 1024)) /p" "$out/run_$ck.txt" >> "$results"
    done
done
echo "load after: $(uptime)"
echo
awk '
function val(line, key,   n, i, kv, f) {
    n = split(line, f, " ")
    for (i = 1; i <= n; i++) { split(f[i], kv, "="); if (kv[1] == key) return kv[2] }
    return ""
}
{ ck = val($0, "checkpoint"); k[ck]++; ms[ck, k[ck]] = val($0, "ms"); line[ck, k[ck]] = $0 }
function median(ck,   i, j, t, a, n) {
    n = k[ck]
    for (i = 1; i <= n; i++) a[i] = ms[ck, i]
    for (i = 1; i <= n; i++) for (j = i; j > 1 && a[j - 1] + 0 > a[j] + 0; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
    return a[int((n + 1) / 2)]
}
END {
    printf "| checkpointing | arena MiB | peak RSS MiB (time -v) | s/step (median) | first loss |\n|---|---|---|---|---|\n"
    for (ck = 0; ck <= 1; ck++) {
        l = line[ck, k[ck]]
        printf "| %s | %.0f | %s | %.2f | %s |\n", ck ? "on" : "off", val(l, "arena_mib"), val(l, "time_rss_mib"),
            median(ck) / 1000, val(l, "loss0")
    }
    printf "time ratio on/off %.2f\n", median(1) / median(0)
}' "$results"
