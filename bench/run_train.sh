#!/bin/sh
# Training-step benchmark, libpissa against PyTorch (forward + backward + AdamW, LoRA r 16 on all 7 projections,
# random weights; see bench/bench_train.c for the FLOP count). Each side and each configuration runs in its own
# process, so every peak RSS is that run's alone. Builds nothing.
#   bench/run_train.sh [stories260k d512 d768]     (default: all three)
# Environment: BUILD_DIR (default build), THREADS (default 2; OpenBLAS on our side, torch.set_num_threads on
# PyTorch's), WARMUP (2), STEPS (5: the median is reported), OUT_DIR (default $TMPDIR/pissa-bench-train: the
# random checkpoints, written once, up to 440 MB for d768).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
build=${BUILD_DIR:-$here/../build}
threads=${THREADS:-2}
warmup=${WARMUP:-2}
steps=${STEPS:-5}
out=${OUT_DIR:-${TMPDIR:-/tmp}/pissa-bench-train}
exe=$build/bench/bench_train
[ -x "$exe" ] || { echo "run_train.sh: $exe not found (build first: cmake --build $build)" >&2; exit 1; }
configs=${*:-stories260k d512 d768}
mkdir -p "$out"
results=$out/results.txt
: > "$results"
echo "load before: $(uptime)"
for c in $configs; do
    OPENBLAS_NUM_THREADS=$threads "$exe" --config "$c" --dir "$out" --threads "$threads" --warmup "$warmup" \
        --steps "$steps" > "$out/ours_$c.txt"
    grep -v '^RESULT' "$out/ours_$c.txt"
    sed -n 's/^RESULT /ours /p' "$out/ours_$c.txt" >> "$results"
    OPENBLAS_NUM_THREADS=$threads OMP_NUM_THREADS=$threads /usr/bin/python3 "$here/bench_train_torch.py" \
        --config "$c" --dir "$out" --threads "$threads" --warmup "$warmup" --steps "$steps" > "$out/torch_$c.txt"
    grep -v '^RESULT' "$out/torch_$c.txt"
    sed -n 's/^RESULT /torch /p' "$out/torch_$c.txt" >> "$results"
done
echo "load after: $(uptime)"
echo
# one row per config: ours and torch (median ms/step), speed ratio, tokens/s, GFLOP/s and % of sgemm peak, RSS
awk -v threads="$threads" '
function val(line, key,   n, i, kv, f) {
    n = split(line, f, " ")
    for (i = 1; i <= n; i++) { split(f[i], kv, "="); if (kv[1] == key) return kv[2] }
    return ""
}
{ c = val($0, "config"); if ($1 == "ours") { ours[c] = $0; order[++n] = c } else torch[c] = $0 }
END {
    printf "%d threads; ms/step and tokens/s: median of the timed steps; ", threads
    printf "%% peak: of cblas_sgemm on 2048^3 in the same run\n"
    printf "| config | ours ms/step | torch ms/step | speed-up | ours tokens/s | torch tokens/s "
    printf "| ours GFLOP/s (%% peak) | torch GFLOP/s | ours RSS MiB | torch RSS MiB | RSS ratio |\n"
    printf "|---|---|---|---|---|---|---|---|---|---|---|\n"
    for (i = 1; i <= n; i++) {
        c = order[i]; o = ours[c]; t = torch[c]
        om = val(o, "ms"); tm = val(t, "ms"); og = val(o, "gflops"); pk = val(o, "peak")
        orss = val(o, "rss_mib"); trss = val(t, "rss_mib")
        printf "| %s | %.0f | %.0f | %.2fx | %.0f | %.0f | %.1f (%.0f%%) | %.1f | %.0f | %.0f | %.2f |\n",
            c, om, tm, tm / om, val(o, "tokens_s"), val(t, "tokens_s"), og, 100 * og / pk, val(t, "gflops"),
            orss, trss, orss / trss
        if (val(o, "loss0") != val(t, "loss0"))
            printf "  (%s: first losses differ: ours %s, torch %s)\n", c, val(o, "loss0"), val(t, "loss0")
    }
}' "$results"
