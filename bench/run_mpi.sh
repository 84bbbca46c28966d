#!/bin/sh
# Data-parallel training on this machine: tokens/s of pissa-finetune as 1 process x 2 threads against mpirun -np 2
# with 1 thread each, the same options and so the same rows per update (LoRA r 16 on all 7 projections, AdamW, as
# bench_train): stories260K on tinyshakespeare (batch 8 x 256 tokens) and bench_train's d512 shape (a random
# checkpoint from pissa-synth, random token rows, batch 4 x 256). Then bench_comm: what one update sums across
# processes, and how long that takes here. Builds nothing. See docs/distributed.md.
#   bench/run_mpi.sh [stories260k] [d512]     (default: both)
# Environment: BUILD_DIR (default build), STEPS (updates per run: stories260k 30, d512 10), REPEATS (3 runs of each
# layout, alternating; the table takes each layout's median), OUT_DIR (default $TMPDIR/pissa-bench-mpi),
# MPIRUN (default "mpirun --allow-run-as-root --oversubscribe").
set -eu
here=$(cd "$(dirname "$0")" && pwd)
build=${BUILD_DIR:-$here/../build}
repeats=${REPEATS:-3}
out=${OUT_DIR:-${TMPDIR:-/tmp}/pissa-bench-mpi}
mpirun=${MPIRUN:-mpirun --allow-run-as-root --oversubscribe}
data=$here/../../shared/data
ft=$build/pissa-finetune
[ -x "$ft" ] || { echo "run_mpi.sh: $ft not found (build first)" >&2; exit 1; }
[ -x "$build/bench/bench_comm" ] || { echo "run_mpi.sh: no bench_comm: libpissa was built without MPI" >&2; exit 1; }
configs=${*:-stories260k d512}
mkdir -p "$out"
results=$out/results.txt
: > "$results"

# every run: its tokens/s from --json, one line "CONFIG LAYOUT TOKENS_PER_S LOSS"
run() { # config layout args...
    c=$1 layout=$2
    shift 2
    if [ "$layout" = 1x2 ]; then
        json=$("$ft" "$@" --threads 2 --json -q --out "$out/out_$c")
    else
        json=$($mpirun -np 2 "$ft" "$@" --threads 1 --json -q --out "$out/out_$c")
    fi
    tps=$(echo "$json" | sed 's/.*"tokens_per_s": \([0-9.]*\).*/\1/')
    loss=$(echo "$json" | sed 's/.*"loss": \([0-9.e+-]*\),.*/\1/')
    echo "$c $layout $tps $loss" | tee -a "$results"
}

echo "load before: $(uptime)"
for c in $configs; do
    case $c in
    stories260k)
        head -c 400000 "$data/tinyshakespeare/input.txt" > "$out/shk.txt"
        set -- --model "$data/stories260K/stories260K.bin" --tokenizer "$data/stories260K/tok512.bin" \
            --data "$out/shk.txt" --seq 256 --batch 8 --steps "${STEPS:-30}" ;;
    d512)
        [ -f "$out/d512/config.json" ] || "$build/pissa-synth" --out "$out/d512" --dim 512 --hidden 1376 \
            --layers 8 --heads 8 --kv-heads 8 --vocab 4096 --seq 256 > /dev/null
        [ -f "$out/d512.jsonl" ] || awk 'BEGIN { srand(3); for (r = 0; r < 64; r++) {
                printf "{\"input_ids\": ["; for (t = 0; t < 256; t++) printf "%s%d", t ? ", " : "", int(rand() * 4096)
                print "]}" } }' > "$out/d512.jsonl"
        set -- --model "$out/d512" --data "$out/d512.jsonl" --seq 256 --batch 4 --steps "${STEPS:-10}" ;;
    *) echo "run_mpi.sh: unknown config $c" >&2; exit 2 ;;
    esac
    for r in $(seq "$repeats"); do
        for layout in 1x2 2x1; do
            run "$c" "$layout" "$@" --method lora --rank 16 --alpha 16 --target all-linear --lr 1e-4 \
                --schedule constant --seed 1
        done
    done
done
echo "load after: $(uptime)"
echo
awk '
{ k = $1 " " $2; n[k]++; v[k, n[k]] = $3; if (!($1 in seen)) { seen[$1] = 1; order[++m] = $1 } }
function median(k,   i, j, t, a) {
    for (i = 1; i <= n[k]; i++) a[i] = v[k, i]
    for (i = 1; i <= n[k]; i++) for (j = i; j > 1 && a[j - 1] + 0 > a[j] + 0; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
    return a[int((n[k] + 1) / 2)]
}
END {
    printf "| config | 1 process x 2 threads, tokens/s | 2 processes x 1 thread, tokens/s | ratio |\n|---|---|---|---|\n"
    for (i = 1; i <= m; i++) {
        c = order[i]; a = median(c " 1x2"); b = median(c " 2x1")
        printf "| %s | %.0f | %.0f | %.2f |\n", c, a, b, b / a
    }
}' "$results"
echo
$mpirun -np 2 "$build/bench/bench_comm"
