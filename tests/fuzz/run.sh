#!/usr/bin/env bash
# Fuzzes libpissa's loaders: builds the libFuzzer harnesses of tests/fuzz with clang (-DPISSA_BUILD_FUZZ=ON:
# ASan + UBSan) and runs each for SECONDS (docs/reliability.md).
#
#   tests/fuzz/run.sh SECONDS [HARNESS...]      e.g. tests/fuzz/run.sh 20, tests/fuzz/run.sh 600 peft jsonl
#
# HARNESS is a name from tests/fuzz/CMakeLists.txt (safetensors, hf_checkpoint, ...); default: all of them.
# Environment: PISSA_FUZZ_BUILD, the build folder (default build-fuzz in the source tree); PISSA_FUZZ_ARGS, more
# libFuzzer flags (e.g. "-runs=10000000" to stop after that many executions instead of after SECONDS).
#
# Each harness runs on a working corpus BUILD/fuzz-corpus/HARNESS (kept from run to run, read together with the
# committed seeds tests/fuzz/corpus/HARNESS, which are never written) with its dictionary tests/fuzz/dict/HARNESS.dict
# if there is one; its output goes to BUILD/fuzz-logs/HARNESS.log. A crash, sanitizer report, leak, timeout (10 s for
# one input) or out-of-memory (2 GB) stops that harness and leaves the reproducer in BUILD/fuzz-artifacts/HARNESS/;
# the script runs the other harnesses, then exits 1 naming every harness that failed.
set -euo pipefail
if [[ $# -lt 1 || ! $1 =~ ^[0-9]+$ ]]; then
    echo "usage: $0 SECONDS [HARNESS...]" >&2
    exit 2
fi
seconds=$1
shift
src=$(cd "$(dirname "$0")/../.." && pwd)
build=${PISSA_FUZZ_BUILD:-$src/build-fuzz}

cmake -S "$src" -B "$build" -DCMAKE_C_COMPILER=clang -DPISSA_BUILD_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DPISSA_BUILD_TESTS=OFF -DPISSA_BUILD_BENCH=OFF >/dev/null
cmake --build "$build" -j2 --target pissa_fuzzers >/dev/null

if [[ $# -eq 0 ]]; then
    set -- $(cd "$build/tests/fuzz" && ls fuzz_* | sed 's/^fuzz_//' | sort)
fi
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export OPENBLAS_NUM_THREADS=1
failed=()
for h in "$@"; do
    bin=$build/tests/fuzz/fuzz_$h
    if [[ ! -x $bin ]]; then
        echo "$h: no harness $bin (known: $(cd "$build/tests/fuzz" && ls fuzz_* | sed 's/^fuzz_//' | xargs))" >&2
        failed+=("$h")
        continue
    fi
    work=$build/fuzz-corpus/$h art=$build/fuzz-artifacts/$h log=$build/fuzz-logs/$h.log
    mkdir -p "$work" "$art" "$(dirname "$log")"
    dict=()
    [[ -f $src/tests/fuzz/dict/$h.dict ]] && dict=(-dict="$src/tests/fuzz/dict/$h.dict")
    echo "== fuzz $h: ${seconds} s (log $log)"
    stamp=$(date +%s)
    # shellcheck disable=SC2086
    if "$bin" "$work" "$src/tests/fuzz/corpus/$h" "${dict[@]}" -max_total_time="$seconds" -timeout=10 \
        -rss_limit_mb=2048 -artifact_prefix="$art/" -print_final_stats=1 ${PISSA_FUZZ_ARGS:-} >"$log" 2>&1; then
        grep -E '^(#[0-9]+ +DONE|Done [0-9]+ runs|stat::number_of_executed_units|stat::average_exec_per_sec)' "$log" \
            | sed 's/^/   /' || true
    else
        echo "!! $h FAILED; reproducer(s):" >&2
        find "$art" -type f -newermt "@$stamp" >&2
        tail -n 60 "$log" >&2
        failed+=("$h")
    fi
done
if [[ ${#failed[@]} -gt 0 ]]; then
    echo "fuzzing failed: ${failed[*]}" >&2
    exit 1
fi
echo "fuzzing passed: $*"
