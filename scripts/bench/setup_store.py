"""Builds the vector store that scripts/bench-server.sh searches, through the server's own
OpenAI-compatible API (the `openai` package), the same way for Corral and for Llama Stack.

Uploads FILES, creates a store embedded by EMBEDDING_MODEL, attaches every file with the same
static chunking, waits for each to be ingested, checks that a search finds passages, and prints
one JSON line: the store id and the file and passage counts.

    python setup_store.py BASE_URL EMBEDDING_MODEL FILE... [--extra '{"provider_id": "faiss"}']
"""

import argparse
import json
import sys

from openai import OpenAI


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("base_url")
    parser.add_argument("embedding_model")
    parser.add_argument("files", nargs="+")
    parser.add_argument("--extra", default="{}", help="JSON merged into the create request")
    args = parser.parse_args()

    client = OpenAI(base_url=args.base_url, api_key="bench", max_retries=0, timeout=300)
    extra = {"embedding_model": args.embedding_model, **json.loads(args.extra)}
    store = client.vector_stores.create(name="bench", extra_body=extra)
    chunking = {
        "type": "static",
        "static": {"max_chunk_size_tokens": 400, "chunk_overlap_tokens": 100},
    }
    for path in args.files:
        with open(path, "rb") as handle:
            uploaded = client.files.create(file=handle, purpose="assistants")
        attached = client.vector_stores.files.create_and_poll(
            vector_store_id=store.id,
            file_id=uploaded.id,
            chunking_strategy=chunking,
            poll_interval_ms=100,
        )
        if attached.status != "completed":
            sys.exit(f"{path}: attaching ended {attached.status}: {attached.last_error}")
    found = client.vector_stores.search(
        vector_store_id=store.id, query="How are tenants kept apart?", max_num_results=10
    )
    if not found.data:
        sys.exit("a search of the new store found nothing")
    print(json.dumps({"store": store.id, "files": len(args.files), "hits": len(found.data)}))


if __name__ == "__main__":
    main()
