#!/usr/bin/env bash
# Memory benchmark: peak resident memory (and seconds per training step) of the programs on full-size models,
# against the goals of issue 13. The models are random (pissa-synth at Hugging Face's initializer scale) with the
# dimensions of real ones, written in BF16:
#   tinyllama  TinyLlama-1.1B: D 2048, F 5632, 22 layers, 32 heads, 4 KV heads, V 32000, untied (2.2 GB)
#   llama7b    Llama-2-7B: D 4096, F 11008, 32 layers, 32 heads, 32 KV heads, V 32000, untied (13.5 GB)
# For each model, each in its own process under /usr/bin/time -v:
#   load       pissa-eval on one row of 16 tokens, base as stored (BF16, used from the mapping) and NF4
#   train      pissa-finetune --method lora --rank 16 --target all-linear (tinyllama: batch 4 x 256, 2 updates;
#              llama7b: batch 1 x 512, 1 update), with each base of DTYPES
#   init       pissa-init QPiSSA (--quantize nf4 --qiter 1, r 16, all-linear, pissa_niter_4, --no-quant-error)
#   merge      pissa-merge of that residual model and its pissa_init adapter
# "peak RSS" is /usr/bin/time's maximum resident set size, which counts the resident pages of the mapped checkpoint;
# "anon" is the largest RssAnon (memory the process allocated, i.e. beyond the mapped file) seen by sampling
# /proc/PID/status every 0.2 s, and "file" the largest RssFile (mapped file pages and libraries) sampled.
# Seconds per step are read from pissa-finetune's progress lines as they arrive: step 1 includes planning the arena.
#
#   bench/run_memory.sh [tinyllama] [llama7b]        (default: tinyllama)
# Environment: BUILD_DIR (default build), THREADS (2), OUT_DIR (default $TMPDIR/pissa-bench-memory: the models and
# outputs; llama7b needs about 3 x 13.5 GB of disk at its peak), DTYPES (bases of the training runs, default
# "bf16 nf4"), STEPS (updates per training run; default 2 for tinyllama, 1 for llama7b), GRAD_CHECKPOINT (0; 1
# passes --grad-checkpoint to pissa-finetune, or notes that this build's pissa-finetune has no such option and runs
# without it), KEEP (0: each model is deleted after its runs; 1 keeps them and reuses a model already written),
# SKIP ("" or a list of load train init merge), OPENBLAS_CORETYPE (default SkylakeX on a CPU with AVX-512:
# bench/blas_env.sh). Builds nothing.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/blas_env.sh"
build=${BUILD_DIR:-$here/../build}
threads=${THREADS:-2}
out=${OUT_DIR:-${TMPDIR:-/tmp}/pissa-bench-memory}
dtypes=${DTYPES:-bf16 nf4}
keep=${KEEP:-0}
skip=" ${SKIP:-} "
export OPENBLAS_NUM_THREADS=$threads
for p in pissa-synth pissa-corpus pissa-eval pissa-finetune pissa-init pissa-merge; do
    [ -x "$build/$p" ] || { echo "run_memory.sh: $build/$p not found (build first: cmake --build $build)" >&2; exit 1; }
done
[ -x /usr/bin/time ] || { echo "run_memory.sh: /usr/bin/time is missing (apt-get install time)" >&2; exit 1; }
models=${*:-tinyllama}
ckpt_flag=
if [ "${GRAD_CHECKPOINT:-0}" = 1 ]; then
    if "$build/pissa-finetune" --help 2>&1 | grep -q -- '--grad-checkpoint'; then
        ckpt_flag=--grad-checkpoint
    else
        echo "note: $build/pissa-finetune has no --grad-checkpoint option; training runs without it"
    fi
fi
mkdir -p "$out"
results=$out/results.md
: > "$results"
gib() { awk -v k="$1" 'BEGIN { printf "%.2f", k / 1048576 }'; } # KiB -> GiB

# Prefixes each line of stdin with the time it arrived.
stamp() { while IFS= read -r line; do printf '%s %s\n' "$(date +%s.%N)" "$line"; done; }

# measure NAME GOAL CMD...: runs CMD under /usr/bin/time -v, samples its memory, and appends a row to the results.
measure() {
    local name=$1 goal=$2
    shift 2
    local log=$out/$name.log tf=$out/$name.time
    echo "== $name: $*"
    local t0
    t0=$(date +%s.%N)
    /usr/bin/time -v -o "$tf" "$@" > "$out/$name.out" 2> >(stamp > "$log") &
    local tp=$! pid='' anon=0 file=0 prog
    prog=$(basename "$1" | cut -c 1-15) # the kernel's comm
    while kill -0 "$tp" 2> /dev/null; do
        [ -n "$pid" ] || pid=$(pgrep -P "$tp" -x "$prog" | head -n 1 || true) # not the stamping subshell
        if [ -n "$pid" ] && [ -r "/proc/$pid/status" ]; then
            read -r a f < <(awk '/^RssAnon:/ { a = $2 } /^RssFile:/ { f = $2 } END { print a + 0, f + 0 }' \
                "/proc/$pid/status" 2> /dev/null || echo "0 0")
            [ "$a" -gt "$anon" ] && anon=$a
            [ "$f" -gt "$file" ] && file=$f
        fi
        sleep 0.2
    done
    local rc=0
    wait "$tp" || rc=$?
    sleep 0.2 # the stamping of stderr finishes
    local t1 secs rss
    t1=$(date +%s.%N)
    secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", b - a }')
    rss=$(awk -F': ' '/Maximum resident set size/ { print $2 }' "$tf")
    sed 's/^[0-9.]* //' "$log" | tail -n 3
    [ "$rc" = 0 ] || { echo "run_memory.sh: $name failed (exit $rc); see $log" >&2; exit 1; }
    # seconds per step from pissa-finetune's progress lines: the header line ends the load, each "step k/N" a step
    local steps
    steps=$(awk '/^[0-9.]+ pissa-finetune: .* rows, / { t = $1 } /^[0-9.]+ step [0-9]+\// && t { printf "%s%.0f", sep, $1 - t; sep = " / "; t = $1 }' "$log")
    printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' "$name" "$(gib "$rss")" "$(gib "$anon")" "$(gib "$file")" \
        "${steps:--}" "$secs" "$goal" "$*" | sed "s|$out/||g; s|$build/||g" >> "$results"
    echo "   peak RSS $(gib "$rss") GiB, anon $(gib "$anon") GiB, file $(gib "$file") GiB; step seconds: ${steps:--}; $secs s in all"
}

skipped() { case "$skip" in *" $1 "*) return 0 ;; esac; return 1; }

echo "load before: $(uptime); OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-(unset)}; $(nproc) cores, $(free -g | awk '/^Mem:/ { print $2 }') GiB"
for model in $models; do
    case $model in
    tinyllama)
        dims="--dim 2048 --hidden 5632 --layers 22 --heads 32 --kv-heads 4 --vocab 32000"
        batch=4 seq=256 steps=${STEPS:-2}
        goals=(bf16 "≤ 5 GB" nf4 "≤ 2.5 GB")
        init_goal="-" ;;
    llama7b)
        dims="--dim 4096 --hidden 11008 --layers 32 --heads 32 --kv-heads 32 --vocab 32000"
        batch=1 seq=512 steps=${STEPS:-1}
        goals=(bf16 "≤ 16 GB" nf4 "≤ 8 GB")
        init_goal="anon ≤ 4 GB" ;;
    *) echo "run_memory.sh: unknown model '$model' (tinyllama or llama7b)" >&2; exit 2 ;;
    esac
    m=$out/$model
    if [ "$keep" = 1 ] && [ -f "$m/config.json" ]; then
        echo "== $model: reusing $m"
    else
        echo "== $model: writing $m (pissa-synth $dims --untied --dtype bf16)"
        t0=$(date +%s)
        # shellcheck disable=SC2086
        "$build/pissa-synth" --out "$m" $dims --untied --dtype bf16
        echo "   $(( $(date +%s) - t0 )) s"
    fi
    size=$(stat -c %s "$m/model.safetensors")
    echo "| $model: model.safetensors $(awk -v b="$size" 'BEGIN { printf "%.2f", b / 1073741824 }') GiB (BF16) | | | | | | | |" >> "$results"
    "$build/pissa-corpus" --out "$out/rows.jsonl" --rows $((batch * steps)) --len "$seq" --vocab 32000 --seed 1
    "$build/pissa-corpus" --out "$out/one.jsonl" --rows 1 --len 16 --vocab 32000 --seed 2

    if ! skipped load; then
        for d in bf16 nf4; do
            measure "$model-load-$d" "-" "$build/pissa-eval" --model "$m" --data "$out/one.jsonl" --base-dtype "$d" \
                --threads "$threads" --json
        done
    fi
    if ! skipped train; then
        for d in $dtypes; do
            goal="-"
            for ((i = 0; i < ${#goals[@]}; i += 2)); do [ "${goals[i]}" = "$d" ] && goal=${goals[i + 1]}; done
            rm -rf "$out/ft"
            # shellcheck disable=SC2086
            measure "$model-train-$d${ckpt_flag:+-ckpt}" "$goal" "$build/pissa-finetune" --model "$m" \
                --data "$out/rows.jsonl" --out "$out/ft" --method lora --rank 16 --target all-linear --batch "$batch" \
                --seq "$seq" --steps "$steps" --base-dtype "$d" --threads "$threads" $ckpt_flag
            rm -rf "$out/ft"
        done
    fi
    if ! skipped init; then
        rm -rf "$out/init"
        measure "$model-init-qpissa" "$init_goal" "$build/pissa-init" --model "$m" --out "$out/init" --rank 16 \
            --target all-linear --quantize nf4 --qiter 1 --no-quant-error --threads "$threads"
        if ! skipped merge; then
            rm -rf "$out/merged"
            measure "$model-merge" "-" "$build/pissa-merge" --model "$out/init" --adapter "$out/init/pissa_init" \
                --out "$out/merged"
            rm -rf "$out/merged"
        fi
        rm -rf "$out/init"
    fi
    [ "$keep" = 1 ] || rm -rf "$m"
done
echo "load after: $(uptime)"
echo
echo "peak RSS: /usr/bin/time's maximum resident set size (mapped file pages included); anon: the largest RssAnon"
echo "sampled (beyond the mapped file); file: the largest RssFile sampled; step s: seconds of each update (the first"
echo "includes planning); total s: the whole run (load, steps, writing)"
echo "| run | peak RSS GiB | anon GiB | file GiB | step s | total s | goal | command |"
echo "|---|---|---|---|---|---|---|---|"
cat "$results"
