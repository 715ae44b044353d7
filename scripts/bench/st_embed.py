"""sentence-transformers' speed on a file of sentences (one per line), the way `corral bench
embed --sentences FILE` measures ours: a warm-up pass, then the mean of REPS passes, at batch
sizes 1 and 32, on THREADS torch threads. Prints one JSON line per batch size.

    python st_embed.py MODEL_DIR FILE [--threads 2] [--reps 3]
"""

import argparse
import json
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import sentence_transformers  # noqa: E402
import torch  # noqa: E402
from sentence_transformers import SentenceTransformer  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model_dir")
    parser.add_argument("file")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()

    with open(args.file, encoding="utf-8") as f:
        sentences = [line.rstrip("\n") for line in f if line.strip()]
    torch.set_num_threads(args.threads)
    model = SentenceTransformer(args.model_dir, device="cpu")
    model.eval()
    features = model.tokenizer(sentences, truncation=True, max_length=model.max_seq_length)
    tokens = sum(len(ids) for ids in features["input_ids"])
    for batch_size in (1, 32):
        model.encode(sentences, batch_size=batch_size, normalize_embeddings=True)  # warm-up
        start = time.perf_counter()
        for _ in range(args.reps):
            model.encode(sentences, batch_size=batch_size, normalize_embeddings=True)
        seconds = (time.perf_counter() - start) / args.reps
        print(
            json.dumps(
                {
                    "engine": f"sentence-transformers {sentence_transformers.__version__} "
                    f"(torch {torch.__version__})",
                    "threads": torch.get_num_threads(),
                    "batch": batch_size,
                    "sentences_per_second": len(sentences) / seconds,
                    "tokens_per_second": tokens / seconds,
                }
            )
        )


if __name__ == "__main__":
    main()
