#!/bin/sh
# Training-step benchmark, libpissa against PyTorch (forward + backward + AdamW, LoRA r 16 on all 7 projections,
# random weights; see bench/bench_train.c for the FLOP count), and libpissa against itself over the format of the
# frozen base (the base-dtype axis). Each side, configuration and format runs in its own process, so every peak RSS
# is that run's alone. Builds nothing.
#   bench/run_train.sh [stories260k d512 d768 d2048 d4096]     (default: the first three)
#   BASE_DTYPES="f32 bf16 nf4 int8" TORCH=0 bench/run_train.sh d2048 d4096      (the base-dtype axis only)
# Environment: BUILD_DIR (default build), THREADS (default 2; OpenBLAS on our side, torch.set_num_threads on
# PyTorch's), WARMUP (2), STEPS (5: each run reports the median step), REPEATS (1: runs of each side, alternating
# ours and PyTorch; the table takes the median run of each side, which evens out a shared machine's slow drifts),
# TORCH (1; 0 skips the comparison with PyTorch), BASE_DTYPES (empty; e.g. "f32 bf16 nf4 int8": our step with the
# frozen projections loaded in each format, the formats alternating within each repeat, reported as ratios to the
# first), OUT_DIR (default $TMPDIR/pissa-bench-train: the random F32 checkpoints, written once, up to 1.5 GB for
# d2048), OPENBLAS_CORETYPE (default SkylakeX on a CPU with AVX-512: bench/blas_env.sh).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
. "$here/blas_env.sh"
build=${BUILD_DIR:-$here/../build}
threads=${THREADS:-2}
warmup=${WARMUP:-2}
steps=${STEPS:-5}
repeats=${REPEATS:-1}
torch=${TORCH:-1}
dtypes=${BASE_DTYPES:-}
out=${OUT_DIR:-${TMPDIR:-/tmp}/pissa-bench-train}
exe=$build/bench/bench_train
[ -x "$exe" ] || { echo "run_train.sh: $exe not found (build first: cmake --build $build)" >&2; exit 1; }
configs=${*:-stories260k d512 d768}
mkdir -p "$out"
results=$out/results.txt
: > "$results"
echo "load before: $(uptime); OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-(unset)}"
for c in $configs; do
    for r in $(seq "$repeats"); do
        if [ "$torch" = 1 ]; then
            OPENBLAS_NUM_THREADS=$threads "$exe" --config "$c" --dir "$out" --threads "$threads" --warmup "$warmup" \
                --steps "$steps" > "$out/ours_$c.txt"
            grep -v '^RESULT' "$out/ours_$c.txt"
            sed -n 's/^RESULT /ours /p' "$out/ours_$c.txt" >> "$results"
            OPENBLAS_NUM_THREADS=$threads OMP_NUM_THREADS=$threads /usr/bin/python3 "$here/bench_train_torch.py" \
                --config "$c" --dir "$out" --threads "$threads" --warmup "$warmup" --steps "$steps" > "$out/torch_$c.txt"
            grep -v '^RESULT' "$out/torch_$c.txt"
            sed -n 's/^RESULT /torch /p' "$out/torch_$c.txt" >> "$results"
        fi
        for d in $dtypes; do
            OPENBLAS_NUM_THREADS=$threads "$exe" --config "$c" --dir "$out" --threads "$threads" --warmup "$warmup" \
                --steps "$steps" --base-dtype "$d" > "$out/ours_${c}_$d.txt"
            grep -v '^RESULT' "$out/ours_${c}_$d.txt"
            sed -n "s/^RESULT /dtype rep=$r /p" "$out/ours_${c}_$d.txt" >> "$results"
        done
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
    if ($1 == "dtype") next
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
    if (!n) exit
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
[ -n "$dtypes" ] || exit 0
echo
# the base-dtype axis: one row per config, each format's median ms/step and peak RSS over the repeats, as ratios to
# the first format (ratio of medians, and in brackets the median of the per-repeat ratios: the figure a drifting
# machine moves least)
awk -v threads="$threads" -v dtypes="$dtypes" '
function val(line, key,   n, i, kv, f) {
    n = split(line, f, " ")
    for (i = 1; i <= n; i++) { split(f[i], kv, "="); if (kv[1] == key) return kv[2] }
    return ""
}
function median(a, k,   i, j, t, b) {
    for (i = 1; i <= k; i++) b[i] = a[i]
    for (i = 2; i <= k; i++) for (j = i; j > 1 && b[j - 1] > b[j]; j--) { t = b[j]; b[j] = b[j - 1]; b[j - 1] = t }
    return k % 2 ? b[(k + 1) / 2] : (b[k / 2] + b[k / 2 + 1]) / 2
}
$1 == "dtype" {
    c = val($0, "config"); d = val($0, "base"); r = val($0, "rep")
    if (!(c in seen)) { seen[c] = 1; order[++n] = c }
    ms[c, d, r] = val($0, "ms"); rss[c, d, r] = val($0, "rss_mib"); if (r > reps) reps = r
    loss[c, d] = val($0, "loss0")
}
END {
    nd = split(dtypes, dt, " "); ref = dt[1]
    printf "%d threads, %d repeat(s); ms/step: median of the timed steps (median over repeats); ratios to %s: ", threads, reps, ref
    printf "ratio of medians (median of per-repeat ratios)\n"
    printf "| config |"; for (i = 1; i <= nd; i++) printf " %s ms/step |", dt[i]
    for (i = 1; i <= nd; i++) printf " %s RSS MiB |", dt[i]
    printf "\n|---|"; for (i = 1; i <= 2 * nd; i++) printf "---|"; printf "\n"
    for (k = 1; k <= n; k++) {
        c = order[k]; printf "| %s |", c
        for (q = 0; q < 2; q++)
            for (i = 1; i <= nd; i++) {
                delete a; delete p; m = 0
                for (r = 1; r <= reps; r++) if ((c, dt[i], r) in ms) {
                    m++; a[m] = q ? rss[c, dt[i], r] : ms[c, dt[i], r]
                    p[m] = a[m] / (q ? rss[c, ref, r] : ms[c, ref, r])
                }
                med = median(a, m)
                if (i == 1) { base = med; printf " %.0f |", med }
                else printf " %.0f (%.2f× [%.2f×]) |", med, med / base, median(p, m)
            }
        printf "\n"
        printf "  (%s first losses:", c; for (i = 1; i <= nd; i++) printf " %s %s", dt[i], loss[c, dt[i]]; printf ")\n"
    }
}' "$results"
