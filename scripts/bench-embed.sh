#!/usr/bin/env bash
# Embedding speed, ours against sentence-transformers on the same sentences, in one run:
# all-MiniLM-L6-v2, 2 threads, batch sizes 1 and 32, on two files in scripts/bench/:
#   embed-short.txt: `corral bench embed`'s own 64 sentences (8 sentences, each 1–3 times over);
#   embed-mixed.txt: the golden test's sentences (scripts/golden/minilm_reference.py), from two
#                    words to one truncated at 256 tokens, in several scripts.
#
# Needs the release binary (`cargo build --release -p corral-cli`), the test models
# (scripts/fetch-test-models.sh) and a Python with sentence-transformers, given as PYTHON:
#   python3 -m venv /tmp/st && /tmp/st/bin/pip install sentence-transformers
#   PYTHON=/tmp/st/bin/python scripts/bench-embed.sh
# Prints one line per file, engine and batch size, and our speed as a ratio of theirs.
set -euo pipefail
cd "$(dirname "$0")/.."

cache="${CORRAL_CACHE:-$HOME/.cache/corral}"
threads="${THREADS:-2}"
reps="${REPS:-3}"
corral="${CORRAL_BIN:-target/release/corral}"
python="${PYTHON:-python3}"
model="$cache/models/all-MiniLM-L6-v2"

printf '%-10s %-6s %-12s %14s %12s\n' file batch engine sentences/s tokens/s
for file in scripts/bench/embed-short.txt scripts/bench/embed-mixed.txt; do
    theirs="$("$python" scripts/bench/st_embed.py "$model" "$file" --threads "$threads" --reps "$reps")"
    ours="$(CANDLE_NUM_THREADS="$threads" RAYON_NUM_THREADS="$threads" \
        "$corral" bench embed --model "$model" --sentences "$file" --reps "$reps" --json)"
    python3 - "$(basename "$file" .txt)" "$ours" "$theirs" <<'PY'
import json, sys
name, ours, theirs = sys.argv[1], json.loads(sys.argv[2]), [json.loads(l) for l in sys.argv[3].splitlines()]
for t in theirs:
    o = next(r for r in ours["results"] if r["batch"] == t["batch"])
    print(f"{name:10} {t['batch']:<6} {'corral':12} {o['sentences_per_second']:14.1f} {o['tokens_per_second']:12.1f}")
    print(f"{name:10} {t['batch']:<6} {'s-t':12} {t['sentences_per_second']:14.1f} {t['tokens_per_second']:12.1f}"
          f"   ours/theirs = {o['sentences_per_second'] / t['sentences_per_second']:.2f}x")
PY
done
echo "s-t: $(echo "$theirs" | head -n 1 | python3 -c 'import json,sys; print(json.load(sys.stdin)["engine"])')"
