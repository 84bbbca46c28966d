#!/bin/sh
# Training-step benchmark, libpissa against PyTorch (forward + backward + AdamW, LoRA r 16 on all 7 projections,
# random weights; see bench/bench_train.c for the FLOP count). Each side and each configuration runs in its own
# process, so every peak RSS is that run's alone. Builds nothing.
#   bench/run_train.sh [stories260k d512 d768]     (default: all three)
# Environment: BUILD_DIR (default build), THREADS (default 2; OpenBLAS on our side, torch.set_num_threads on
# PyTorch's), WARMUP (2), STEPS (5: each run reports the median step), REPEATS (1: runs of each side, alternating
# ours and PyTorch; the table takes the median run of each side, which evens out a shared machine's slow drifts),
# OUT_DIR (default $TMPDIR/pissa-bench-train: the random checkpoints, written once, up to 440 MB for d768).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
build=${BUILD_DIR:-$here/../build}
threads=${THREADS:-2}
warmup=${WARMUP:-2}
steps=${STEPS:-5}
repeats=${REPEATS:-1}
out=${OUT_DIR:-${TMPDIR:-/tmp}/pissa-bench-train}
exe=$build/bench/bench_train
[ -x "$exe" ] || { echo "run_train.sh: $exe not found (build first: cmake --build $build)" >&2; exit 1; }
configs=${*:-stories260k d512 d768}
mkdir -p "$out"
results=$out/results.txt
: > "$results"
echo "load before: $(uptime)"
for c in $configs; do
    for r in $(seq "$repeats"); do
        OPENBLAS_NUM_THREADS=$threads "$exe" --config "$c" --dir "$out" --threads "$threads" --warmup "$warmup" \
            --steps "$steps" > "$out/ours_$c.txt"
        grep -v '^RESULT' "$out/ours_$c.txt"
        sed -n 's/^RESULT /ours /p' "$out/ours_$c.txt" >> "$results"
        OPENBLAS_NUM_THREADS=$threads OMP_NUM_THREADS=$threads /usr/bin/python3 "$here/bench_train_torch.py" \
            --config "$c" --dir "$out" --threads "$threads" --warmup "$warmup" --steps "$steps" > "$out/torch_$c.txt"
        grep -v '^RESULT' "$out/torch_$c.txt"
        sed -n 's/^RESULT /torch /p' "$out/torch_$c.txt" >> "$results"
    done
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
# every run of both sides; the table uses the median run of each (by ms/step)
{
    c = val($0, "config")
    if (!(c in seen)) { seen[c] = 1; order[++n] = c }
    if ($1 == "ours") ours[c, ++no[c]] = $0; else torch[c, ++nt[c]] = $0
}
function median_run(runs, c, k,   i, j, t, ms) {
    for (i = 1; i <= k; i++) ms[i] = i
    for (i = 1; i <= k; i++)  # insertion sort of the run indices by ms
        for (j = i; j > 1 && val(runs[c, ms[j - 1]], "ms") + 0 > val(runs[c, ms[j]], "ms") + 0; j--) {
            t = ms[j]; ms[j] = ms[j - 1]; ms[j - 1] = t
        }
    return runs[c, ms[int((k + 1) / 2)]]
}
function all_ms(runs, c, k,   i, s) {
    s = ""
    for (i = 1; i <= k; i++) s = s (i > 1 ? " " : "") sprintf("%.0f", val(runs[c, i], "ms"))
    return s
}
END {
    printf "%d threads; ms/step and tokens/s: median of the timed steps (of the median run when repeated); ", threads
    printf "%% peak: of cblas_sgemm on 2048^3 in the same run\n"
    printf "| config | ours ms/step | torch ms/step | speed-up | ours tokens/s | torch tokens/s "
    printf "| ours GFLOP/s (%% peak) | torch GFLOP/s | ours RSS MiB | torch RSS MiB | RSS ratio |\n"
    printf "|---|---|---|---|---|---|---|---|---|---|---|\n"
    for (i = 1; i <= n; i++) {
        c = order[i]; o = median_run(ours, c, no[c]); t = median_run(torch, c, nt[c])
        om = val(o, "ms"); tm = val(t, "ms"); og = val(o, "gflops"); pk = val(o, "peak")
        orss = val(o, "rss_mib"); trss = val(t, "rss_mib")
        printf "| %s | %.0f | %.0f | %.2fx | %.0f | %.0f | %.1f (%.0f%%) | %.1f | %.0f | %.0f | %.2f |\n",
            c, om, tm, tm / om, val(o, "tokens_s"), val(t, "tokens_s"), og, 100 * og / pk, val(t, "gflops"),
            orss, trss, orss / trss
        if (no[c] > 1 || nt[c] > 1)
            printf "  (%s runs, ms/step in order: ours %s; torch %s)\n", c, all_ms(ours, c, no[c]), all_ms(torch, c, nt[c])
        if (val(o, "loss0") != val(t, "loss0"))
            printf "  (%s: first losses differ: ours %s, torch %s)\n", c, val(o, "loss0"), val(t, "loss0")
    }
}' "$results"
