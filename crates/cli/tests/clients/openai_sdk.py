"""OpenAI's official Python SDK, unchanged, against `corral serve` (run by serve_clients.rs).

Usage: openai_sdk.py BASE_URL CHAT_MODEL EMBEDDING_MODEL PDF. Exits non-zero with the failing step on
any mismatch; prints one line per step.
"""
import json
import math
import os
import sys

import openai

base_url, chat_model, embedding_model, pdf = sys.argv[1:5]
client = openai.OpenAI(base_url=base_url, api_key="unused-on-loopback", max_retries=0)


def step(name, ok, detail=""):
    print(f"{'ok  ' if ok else 'FAIL'} {name} {detail}".rstrip(), flush=True)
    if not ok:
        sys.exit(1)


ids = [m.id for m in client.models.list()]
step("models.list", chat_model in ids and embedding_model in ids, str(ids))
step("models.retrieve", client.models.retrieve(chat_model).id == chat_model)

prompt = [{"role": "user", "content": "The capital city of France is called"}]
chat = client.chat.completions.create(model=chat_model, messages=prompt, max_tokens=8, temperature=0)
text = chat.choices[0].message.content
step("chat", isinstance(text, str) and len(text) > 0 and chat.choices[0].finish_reason in ("stop", "length"), repr(text))
step("chat usage", chat.usage.completion_tokens > 0 and chat.usage.total_tokens >= chat.usage.completion_tokens, str(chat.usage))

pieces, finish, usage = [], None, None
for chunk in client.chat.completions.create(
    model=chat_model, messages=prompt, max_tokens=8, temperature=0, stream=True,
    stream_options={"include_usage": True},
):
    if chunk.usage is not None:
        usage = chunk.usage
    for choice in chunk.choices:
        if choice.delta.content:
            pieces.append(choice.delta.content)
        if choice.finish_reason:
            finish = choice.finish_reason
streamed = "".join(pieces)
step("chat stream", streamed == text and finish is not None, repr(streamed))
step("chat stream usage", usage is not None and usage.completion_tokens > 0, str(usage))

tools = [{"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}}]
with_tools = client.chat.completions.create(
    model=chat_model, messages=[{"role": "user", "content": "Weather in Paris?"}],
    tools=tools, max_tokens=16, temperature=0,
)
message = with_tools.choices[0].message
calls = message.tool_calls or []
step("chat with tools", all(json.loads(c.function.arguments) is not None for c in calls)
     and (calls or isinstance(message.content, str)), f"{len(calls)} calls, text {message.content!r}")

completion = client.completions.create(model=chat_model, prompt="The capital city of France is called", max_tokens=4, temperature=0)
step("completions", completion.choices[0].text.startswith(" Paris"), repr(completion.choices[0].text))

# The SDK asks for base64 by default and decodes it.
embeddings = client.embeddings.create(model=embedding_model, input=["a cat", "a kitten", "tax law"])
vectors = [d.embedding for d in embeddings.data]
norm = math.sqrt(sum(x * x for x in vectors[0]))
cos = lambda a, b: sum(x * y for x, y in zip(a, b))
step("embeddings", len(vectors) == 3 and len(vectors[0]) == 384 and abs(norm - 1) < 1e-3
     and cos(vectors[0], vectors[1]) > cos(vectors[0], vectors[2]), f"dim {len(vectors[0])}")
floats = client.embeddings.create(model=embedding_model, input="a cat", encoding_format="float")
step("embeddings as floats", max(abs(a - b) for a, b in zip(floats.data[0].embedding, vectors[0])) < 1e-6)

moderation = client.moderations.create(model="rules", input=["How do I bake bread?", "Give me step-by-step instructions to make a pipe bomb."])
flags = [r.flagged for r in moderation.results]
step("moderations", flags == [False, True], str(flags))

with open(pdf, "rb") as f:
    pdf_bytes = f.read()
uploaded = client.files.create(file=(os.path.basename(pdf), pdf_bytes), purpose="assistants")
step("files.create", uploaded.filename == os.path.basename(pdf) and uploaded.bytes == len(pdf_bytes), uploaded.id)
step("files.retrieve", client.files.retrieve(uploaded.id).filename == uploaded.filename)
step("files.content", client.files.content(uploaded.id).read() == pdf_bytes)
step("files.list", uploaded.id in [f.id for f in client.files.list()])
store = client.vector_stores.create(name="glpk")
attached = client.vector_stores.files.create_and_poll(vector_store_id=store.id, file_id=uploaded.id)
step("vector_stores.files.create_and_poll", attached.status == "completed", str(attached.last_error))
step("vector_stores.retrieve", client.vector_stores.retrieve(store.id).file_counts.completed == 1)
hits = list(client.vector_stores.search(vector_store_id=store.id, query="CNF satisfiability", max_num_results=3))
step("vector_stores.search", len(hits) > 0 and hits[0].file_id == uploaded.id and hits[0].filename == uploaded.filename
     and "cnf" in hits[0].content[0].text.lower(), f"{len(hits)} hits, best {hits[0].score if hits else None}")
response = client.responses.create(
    model=chat_model, input="What is CNF satisfiability?", max_output_tokens=24, temperature=0,
    tools=[{"type": "file_search", "vector_store_ids": [store.id], "max_num_results": 3}],
)
kinds = [item.type for item in response.output]
searched = [item for item in response.output if item.type == "file_search_call"]
step("responses.create with file_search", kinds[:2] == ["file_search_call", "message"]
     and searched[0].results[0].file_id == uploaded.id and isinstance(response.output_text, str), str(kinds))
step("responses.retrieve", client.responses.retrieve(response.id).id == response.id)
follow = client.responses.create(model=chat_model, input="And in one word?", previous_response_id=response.id, max_output_tokens=4, temperature=0)
step("responses.create with previous_response_id", follow.previous_response_id == response.id and follow.output[0].type == "message")
events = [event.type for event in client.responses.create(model=chat_model, input="The capital city of France is called", max_output_tokens=4, temperature=0, stream=True)]
step("responses stream", events[0] == "response.created" and events[-1] == "response.completed" and "response.output_text.delta" in events, f"{len(events)} events")
step("vector_stores.files.list", [f.id for f in client.vector_stores.files.list(vector_store_id=store.id)] == [uploaded.id])
step("vector_stores.delete", client.vector_stores.delete(store.id).deleted)
step("files.delete", client.files.delete(uploaded.id).deleted)
try:
    client.files.retrieve(uploaded.id)
    step("a deleted file raises NotFoundError", False)
except openai.NotFoundError:
    step("a deleted file raises NotFoundError", True)

try:
    client.chat.completions.create(model="no-such-model", messages=prompt)
    step("unknown model raises NotFoundError", False)
except openai.NotFoundError as e:
    step("unknown model raises NotFoundError", "no-such-model" in str(e))
try:
    client.chat.completions.create(model=chat_model, messages=prompt, n=2)
    step("n=2 raises BadRequestError", False)
except openai.BadRequestError as e:
    step("n=2 raises BadRequestError", e.body.get("param") == "n", str(e.body))
print("all steps passed")
