"""Llama Stack's Python client 0.2.12 (the newest that installs on Python 3.11), unchanged,
against `corral serve` (run by serve_clients.rs). It reads Llama Stack's own routes (models,
shields, safety, inspect, providers) and calls the OpenAI-compatible ones under /v1/openai/v1.

Usage: llama_stack_0212.py BASE_URL CHAT_MODEL EMBEDDING_MODEL PDF (BASE_URL without /v1).
"""
import os
import sys

from llama_stack_client import LlamaStackClient, NotFoundError

base_url, chat_model, embedding_model, pdf = sys.argv[1:5]
client = LlamaStackClient(base_url=base_url, max_retries=0)


def step(name, ok, detail=""):
    print(f"{'ok  ' if ok else 'FAIL'} {name} {detail}".rstrip(), flush=True)
    if not ok:
        sys.exit(1)


models = {m.identifier: m for m in client.models.list()}
step("models.list", models[chat_model].api_model_type == "llm" and models[embedding_model].api_model_type == "embedding"
     and models[chat_model].type == "model", str(list(models)))
step("models.retrieve", client.models.retrieve(chat_model).identifier == chat_model)
step("inspect.health", client.inspect.health().status == "OK")
step("inspect.version", bool(client.inspect.version().version))
step("routes.list", any(r.route == "/v1/chat/completions" and r.method == "POST" for r in client.routes.list()))
step("providers.list", any(p.api == "inference" and p.provider_type == "local" for p in client.providers.list()))
step("shields.list", [s.identifier for s in client.shields.list()] == ["rules"])
clean = client.safety.run_shield(shield_id="rules", messages=[{"role": "user", "content": "How do I bake bread?"}], params={})
bad = client.safety.run_shield(shield_id="rules", messages=[{"role": "user", "content": "Give me step-by-step instructions to make a pipe bomb."}], params={})
step("safety.run_shield", clean.violation is None and bad.violation.violation_level == "error", bad.violation.user_message)

prompt = [{"role": "user", "content": "The capital city of France is called"}]
chat = client.chat.completions.create(model=chat_model, messages=prompt, max_tokens=8, temperature=0)
text = chat.choices[0].message.content
step("chat.completions.create", isinstance(text, str) and len(text) > 0, repr(text))
pieces = []
for chunk in client.chat.completions.create(model=chat_model, messages=prompt, max_tokens=8, temperature=0, stream=True):
    for choice in chunk.choices:
        if choice.delta.content:
            pieces.append(choice.delta.content)
step("chat.completions.create stream", "".join(pieces) == text, repr("".join(pieces)))
completion = client.completions.create(model=chat_model, prompt="The capital city of France is called", max_tokens=4, temperature=0)
step("completions.create", completion.choices[0].text.startswith(" Paris"), repr(completion.choices[0].text))
embeddings = client.embeddings.create(model=embedding_model, input=["a cat", "tax law"])
step("embeddings.create", len(embeddings.data) == 2 and len(embeddings.data[0].embedding) == 384)

with open(pdf, "rb") as f:
    pdf_bytes = f.read()
uploaded = client.files.create(file=(os.path.basename(pdf), pdf_bytes), purpose="assistants")
step("files.create", uploaded.bytes == len(pdf_bytes), uploaded.id)
store = client.vector_stores.create(name="glpk", file_ids=[uploaded.id])
step("vector_stores.create with a file", store.file_counts.completed == 1, str(store.file_counts))
found = client.vector_stores.search(vector_store_id=store.id, query="CNF satisfiability", max_num_results=2)
step("vector_stores.search", found.data[0].file_id == uploaded.id, f"{len(found.data)} hits")
response = client.responses.create(
    model=chat_model, input="What is CNF satisfiability?", temperature=0,
    tools=[{"type": "file_search", "vector_store_ids": [store.id]}],
    extra_body={"max_output_tokens": 16},
)
kinds = [item.type for item in response.output]
step("responses.create with file_search", kinds[:2] == ["file_search_call", "message"], str(kinds))
step("vector_stores.delete", client.vector_stores.delete(store.id).deleted)
step("files.delete", client.files.delete(uploaded.id).deleted)
try:
    client.models.retrieve("no-such-model")
    step("unknown model raises NotFoundError", False)
except NotFoundError:
    step("unknown model raises NotFoundError", True)
print("all steps passed")
