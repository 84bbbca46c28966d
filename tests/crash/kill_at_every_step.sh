#!/usr/bin/env bash
# ctest crash_consistency: kills pissa-finetune --save-every 1 at each of the renames, unlinks and rmdirs it makes
# (strace's syscall fault injection, deterministic: the K-th such call gets SIGKILL on entry), and checks after every
# kill that OUT is either absent or whole: its adapter loads (pissa-eval --adapter OUT reads it and the residual
# model beside it) and resuming from OUT/state gives, bit for bit, the adapter of the run that was never killed.
# Usage: kill_at_every_step.sh BUILD_DIR WORK_DIR
set -euo pipefail
build=$1 work=$2
command -v strace >/dev/null || { echo "strace is missing (Debian: strace)"; exit 1; }
# Under strace, LeakSanitizer cannot attach (ptrace is taken): in a sanitizer build, leaks are checked by the other
# tests; AddressSanitizer and UBSan still run here.
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
rm -rf "$work" && mkdir -p "$work"
"$build/pissa-synth" --out "$work/base" --layers 2 --dim 32 --hidden 48 --heads 4 --kv-heads 2 --vocab 64 --seq 64 \
    2>/dev/null
for i in 0 1 2 3 4 5 6 7; do
    printf '{"input_ids": [%d, %d, %d, %d, %d, %d, %d, %d]}\n' $((3 + i)) $((9 + i)) $((4 + i)) $((20 + i)) \
        $((7 + i)) $((30 + i)) $((11 + i)) $((5 + i))
done >"$work/data.jsonl"
opts=(--model "$work/base" --data "$work/data.jsonl" --method pissa --rank 2 --target q_proj,down_proj --steps 3
      --batch 2 --lr 1e-2 --save-every 1 --seed 5 -q)
calls=rename,renameat,renameat2,unlink,unlinkat,rmdir

"$build/pissa-finetune" "${opts[@]}" --out "$work/ref" 2>/dev/null
strace -f -qq -e trace=$calls -o "$work/calls.txt" "$build/pissa-finetune" "${opts[@]}" --out "$work/count" \
    2>/dev/null
cmp "$work/ref/adapter_model.safetensors" "$work/count/adapter_model.safetensors" \
    || { echo "two uninterrupted runs differ"; exit 1; }

# strace counts each syscall separately: kill point (s, k) is the k-th call of syscall s.
n=0 absent=0 whole=0
for s in ${calls//,/ }; do
    count=$(grep -c -E "^[0-9]+ +$s\(" "$work/calls.txt" || true)
    n=$((n + count))
    for ((k = 1; k <= count; k++)); do
        out="$work/out"
        rm -rf "$out"
        rc=0
        { strace -f -qq -e trace=$s -e inject=$s:signal=KILL:when=$k -o /dev/null \
            "$build/pissa-finetune" "${opts[@]}" --out "$out" >/dev/null 2>&1 || rc=$?; } 2>/dev/null
        [ $rc -ne 0 ] || { echo "kill point $s #$k: the run was not killed (exit 0)"; exit 1; }
        if [ ! -e "$out" ]; then
            absent=$((absent + 1))
            rm -rf "$work"/out.tmp.*
            continue
        fi
        for f in adapter_config.json adapter_model.safetensors model.safetensors config.json \
                 pissa_init/adapter_config.json state/state.json state/state.safetensors log.csv; do
            [ -s "$out/$f" ] || { echo "kill point $s #$k: OUT exists but $f is missing"; ls -lR "$out"; exit 1; }
        done
        "$build/pissa-eval" --model "$out" --adapter "$out" --data "$work/data.jsonl" -q >/dev/null \
            2>"$work/eval.err" || { echo "kill point $s #$k: the adapter in OUT does not load:"; cat "$work/eval.err"
                                    exit 1; }
        "$build/pissa-finetune" "${opts[@]}" --out "$out" --resume "$out/state" 2>"$work/resume.err" \
            || { echo "kill point $s #$k: OUT/state does not resume:"; cat "$work/resume.err"; exit 1; }
        cmp -s "$work/ref/adapter_model.safetensors" "$out/adapter_model.safetensors" \
            || { echo "kill point $s #$k: the resumed adapter differs from the uninterrupted run's"; exit 1; }
        left=$(find "$work" -maxdepth 1 -name 'out.tmp.*' | wc -l)
        [ "$left" -eq 0 ] || { echo "kill point $s #$k: the resumed run left the killed run's temporaries"; exit 1; }
        whole=$((whole + 1))
    done
done
[ "$n" -ge 10 ] || { echo "only $n kill points: strace did not see the writes"; exit 1; }
echo "crash consistency: $n kill points; OUT absent after $absent, whole and resumed bit for bit after $whole"
[ "$whole" -gt 0 ] || { echo "no kill point left a saved OUT: the test checks nothing"; exit 1; }
