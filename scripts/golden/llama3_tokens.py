#!/usr/bin/env python3
"""Golden Llama 3 token ids, from OpenAI's tiktoken (the reference implementation).

Run from the repository root:

    python3 -m venv /tmp/tkv && /tmp/tkv/bin/pip install tiktoken
    /tmp/tkv/bin/python scripts/golden/llama3_tokens.py

Reads crates/inference/tests/golden/tokenizer/texts.json (a JSON list of strings) and the tiktoken
file ${CORRAL_CACHE:-~/.cache/corral}/models/llama3/tokenizer.model (fetch it with
scripts/fetch-test-models.sh); writes crates/inference/tests/golden/tokenizer/llama3.json as
[{"text": ..., "add_special": false, "parse_special": bool, "ids": [...]}], every text once with
parse_special false (disallowed_special=()) and once true (allowed_special="all").

The pattern is Meta's (llama_models/llama3/tokenizer.py). The 256 special tokens follow Hugging
Face's Llama 3.1/3.2 tokenizer.json (what GGUF conversions carry): llama-models 0.3.0 instead names
128005 <|step_id|> and 128011 <|image|> and numbers the reserved tokens from 2.
"""

import base64
import json
import os
import pathlib

import tiktoken

PAT = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"  # noqa: E501

NAMED = [
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|reserved_special_token_0|>",
    "<|reserved_special_token_1|>",
    "<|finetune_right_pad_id|>",
    "<|reserved_special_token_2|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eom_id|>",
    "<|eot_id|>",
    "<|python_tag|>",
]


def main() -> None:
    root = pathlib.Path(__file__).resolve().parents[2]
    cache = pathlib.Path(os.environ.get("CORRAL_CACHE", pathlib.Path.home() / ".cache" / "corral"))
    model = cache / "models" / "llama3" / "tokenizer.model"
    ranks = {}
    for line in model.read_text().splitlines():
        if line.strip():
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    specials = NAMED + [f"<|reserved_special_token_{3 + i}|>" for i in range(256 - len(NAMED))]
    enc = tiktoken.Encoding(
        name="llama3",
        pat_str=PAT,
        mergeable_ranks=ranks,
        special_tokens={t: len(ranks) + i for i, t in enumerate(specials)},
    )
    golden = root / "crates" / "inference" / "tests" / "golden" / "tokenizer"
    texts = json.loads((golden / "texts.json").read_text())
    out = []
    for text in texts:
        for parse_special in (False, True):
            if parse_special:
                ids = enc.encode(text, allowed_special="all")
            else:
                ids = enc.encode(text, disallowed_special=())
            out.append({"text": text, "add_special": False, "parse_special": parse_special, "ids": ids})
    body = ",\n".join(json.dumps(e, ensure_ascii=False) for e in out)
    (golden / "llama3.json").write_text("[\n" + body + "\n]\n")
    print(f"wrote {len(out)} entries to {golden / 'llama3.json'}")


if __name__ == "__main__":
    main()
