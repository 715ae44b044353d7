#!/usr/bin/env python3
"""Reference embeddings for all-MiniLM-L6-v2 from real sentence-transformers.

Writes crates/inference/tests/golden/minilm/reference.json, which the Rust tests in
crates/inference/src/local/bert/ compare against (token ids exactly, vectors by cosine).

    python3 -m venv /tmp/st && /tmp/st/bin/pip install sentence-transformers
    scripts/fetch-test-models.sh
    /tmp/st/bin/python scripts/golden/minilm_reference.py [--bench]

The model loads offline from $CORRAL_CACHE/models/all-MiniLM-L6-v2 (default ~/.cache/corral).
With --bench it also prints sentences/s and tokens/s at batch 1 and 32 on two threads.
"""

import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import sentence_transformers  # noqa: E402
import torch  # noqa: E402
from sentence_transformers import SentenceTransformer  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "crates/inference/tests/golden/minilm/reference.json"
CACHE = Path(os.environ.get("CORRAL_CACHE", Path.home() / ".cache/corral"))
MODEL_DIR = CACHE / "models/all-MiniLM-L6-v2"

LONG = " ".join(
    f"Paragraph {i}: retrieval-augmented generation grounds a language model's answers "
    f"in documents fetched at question time, citing sources like [{i}]."
    for i in range(1, 25)
)

SENTENCES = [
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog.",
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "How do I reset my password?",
    "Café résumé naïve façade Ångström über Straße",
    "ΟΔΟΣ ΣΟΦΟΣ: Greek capitals, including a final sigma.",
    "我爱北京天安门。",
    "東京は日本の首都です。日本語の文章。",
    "한국어 문장도 있습니다.",
    "Emoji time 😀🚀🎉 and a thumbs up 👍🏽!",
    "Punctuation!!! ... ??? (parentheses) [brackets] {braces} <angle> \"quotes\" 'single' — dash – en-dash; colon: semi;",
    "Numbers: 3.14159, 2,718, 1e-9, 42nd, $1,000,000.00 and 50% off.",
    "MiXeD CaSe WoRdS iN a SeNtEnCe WITH ALLCAPS and lowercase",
    " ",
    "",
    "tab\tseparated\ttext\nwith a newline\r\nand\u00a0non-breaking space",
    "zero\u200bwidth and control\u0007chars\u0000removed",
    "supercalifragilisticexpialidocious antidisestablishmentarianism pneumonoultramicroscopicsilicovolcanoconiosis",
    "URLs like https://example.com/path?query=1&x=y#frag and e-mail foo.bar@example.org",
    "The [CLS] and [SEP] markers inside text, and [MASK] too.",
    "Ünïcödé àccénts ẞ ﬁ ligature ½ fraction ² superscript",
    "Rust's borrow checker prevents data races at compile time.",
    LONG,
]


def main() -> None:
    bench = "--bench" in sys.argv[1:]
    if not (MODEL_DIR / "model.safetensors").exists():
        sys.exit(f"{MODEL_DIR}: model missing; run scripts/fetch-test-models.sh")
    torch.set_num_threads(2)
    model = SentenceTransformer(str(MODEL_DIR), device="cpu")
    model.eval()

    embeddings = model.encode(
        SENTENCES, batch_size=32, normalize_embeddings=True, convert_to_numpy=True
    )
    features = model.tokenizer(
        SENTENCES, truncation=True, max_length=model.max_seq_length, padding=False
    )
    input_ids = [list(map(int, ids)) for ids in features["input_ids"]]
    assert max(len(ids) for ids in input_ids) == model.max_seq_length, "LONG must truncate"

    OUT.parent.mkdir(parents=True, exist_ok=True)
    reference = {
        "model": "sentence-transformers/all-MiniLM-L6-v2",
        "model_dir": "$CORRAL_CACHE/models/all-MiniLM-L6-v2",
        "sentence_transformers_version": sentence_transformers.__version__,
        "torch_version": torch.__version__,
        "max_seq_length": model.max_seq_length,
        "normalize_embeddings": True,
        "sentences": SENTENCES,
        "input_ids": input_ids,
        "embeddings": [[float(x) for x in row] for row in embeddings],
    }
    OUT.write_text(json.dumps(reference, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {OUT.relative_to(ROOT)}: {len(SENTENCES)} sentences, dim {embeddings.shape[1]}")

    if bench:
        tokens = sum(len(ids) for ids in input_ids)
        for batch_size in (1, 32):
            model.encode(SENTENCES, batch_size=batch_size)  # warm-up
            runs = 3
            start = time.perf_counter()
            for _ in range(runs):
                model.encode(SENTENCES, batch_size=batch_size, normalize_embeddings=True)
            seconds = (time.perf_counter() - start) / runs
            print(
                f"sentence-transformers batch {batch_size:2}: "
                f"{len(SENTENCES) / seconds:8.1f} sentences/s, {tokens / seconds:9.1f} tokens/s "
                f"(torch threads {torch.get_num_threads()})"
            )


if __name__ == "__main__":
    main()
