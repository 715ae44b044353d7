#!/usr/bin/env bash
# Golden Gemma 3 token ids, from llama.cpp's own tokenizer (llama-server's /tokenize endpoint).
#
# Run from the repository root (needs python3 and the llama-server built for llama-cpp-python
# 0.3.36, and the model fetched by scripts/fetch-test-models.sh):
#
#     scripts/golden/gemma3_tokens.sh
#
# Environment: CORRAL_CACHE (default ~/.cache/corral), LLAMA_SERVER (default
# $CORRAL_CACHE/llama.cpp/0.3.36/bin/llama-server), PORT (default 18181).
#
# Starts llama-server on 127.0.0.1:$PORT with $CORRAL_CACHE/models/gemma-3-270m-q4_k_m.gguf, reads
# crates/inference/tests/golden/tokenizer/texts.json (a JSON list of strings) and writes
# crates/inference/tests/golden/tokenizer/gemma3.json as
# [{"text": ..., "add_special": bool, "parse_special": bool, "ids": [...]}]: every text with
# add_special=false and parse_special false and true, plus one text with add_special=true.
set -euo pipefail

cd "$(dirname "$0")/../.."
CACHE="${CORRAL_CACHE:-$HOME/.cache/corral}"
SERVER="${LLAMA_SERVER:-$CACHE/llama.cpp/0.3.36/bin/llama-server}"
MODEL="$CACHE/models/gemma-3-270m-q4_k_m.gguf"
PORT="${PORT:-18181}"

"$SERVER" -m "$MODEL" --host 127.0.0.1 --port "$PORT" -c 512 -np 1 -t 1 >/tmp/gemma3_tokens_server.log 2>&1 &
SERVER_PID=$!
trap 'kill "$SERVER_PID" 2>/dev/null || true' EXIT

PORT="$PORT" python3 - <<'PY'
import json
import os
import time
import urllib.request

port = os.environ["PORT"]
base = f"http://127.0.0.1:{port}"
for _ in range(300):
    try:
        with urllib.request.urlopen(base + "/health", timeout=2) as r:
            if r.status == 200:
                break
    except Exception:
        pass
    time.sleep(0.5)
else:
    raise SystemExit("llama-server did not become healthy; see /tmp/gemma3_tokens_server.log")


def tokenize(text, add_special, parse_special):
    body = json.dumps(
        {"content": text, "add_special": add_special, "parse_special": parse_special, "with_pieces": False}
    ).encode()
    req = urllib.request.Request(base + "/tokenize", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.load(r)["tokens"]


golden = "crates/inference/tests/golden/tokenizer"
texts = json.load(open(f"{golden}/texts.json", encoding="utf-8"))
out = []
for text in texts:
    for parse_special in (False, True):
        out.append(
            {"text": text, "add_special": False, "parse_special": parse_special, "ids": tokenize(text, False, parse_special)}
        )
# Pin BOS behaviour (add_bos_token = true).
text = "Hello, world!"
out.append({"text": text, "add_special": True, "parse_special": True, "ids": tokenize(text, True, True)})
with open(f"{golden}/gemma3.json", "w", encoding="utf-8") as f:
    f.write("[\n" + ",\n".join(json.dumps(e, ensure_ascii=False) for e in out) + "\n]\n")
print(f"wrote {len(out)} entries to {golden}/gemma3.json")
PY
