#!/usr/bin/env python3
"""Renders a golden case through its Jinja chat template with Python's jinja2, configured as Hugging
Face transformers configures it, to produce the `.expected.txt` of template cases independently of
our Rust renderer.

    python3 render_with_jinja2.py gemma3_conversation.input.json gemma3_chat_template.jinja "<bos>" "<eos>"
    python3 render_with_jinja2.py llama3_2_template_tools.input.json llama3_2_chat_template.jinja "<|begin_of_text|>" "<|eot_id|>"

Messages become OpenAI-style dicts the way `template.rs` builds them. One deliberate difference
from transformers: `tojson` sorts object keys, because Corral's JSON maps do not keep insertion order.
"""
import datetime
import json
import sys

from jinja2.exceptions import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment


def openai_messages(messages):
    names, out = {}, []
    for m in messages:
        role = m["role"]
        if role == "user":
            out.append({"role": "user", "content": "\n".join(p["text"] for p in m["content"] if p["type"] == "text")})
        elif role == "assistant" and m.get("tool_calls"):
            calls = []
            for c in m["tool_calls"]:
                names[c["id"]] = c["name"]
                calls.append({"id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}})
            out.append({"role": "assistant", "content": m.get("content", ""), "tool_calls": calls})
        elif role == "tool":
            d = {"role": "tool", "tool_call_id": m["tool_call_id"], "content": m["content"]}
            if m["tool_call_id"] in names:
                d["name"] = names[m["tool_call_id"]]
            out.append(d)
        else:
            out.append({"role": role, "content": m.get("content", "")})
    return out


def main():
    case_path, template_path, bos, eos = sys.argv[1:5]
    case = json.load(open(case_path))
    date = datetime.date.fromisoformat(case["date"]) if case.get("date") else datetime.date.today()

    def raise_exception(message):
        raise TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=True):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: date.strftime(fmt)
    template = env.from_string(open(template_path).read())
    variables = dict(
        messages=openai_messages(case["messages"]),
        add_generation_prompt=case.get("add_generation_prompt", False),
        bos_token=bos,
        eos_token=eos,
        date_string=date.strftime("%d %b %Y"),
    )
    if case.get("tools"):
        variables["tools"] = [{"type": "function", "function": t} for t in case["tools"]]
    out = case_path.replace(".input.json", ".expected.txt")
    with open(out, "w", encoding="utf-8", newline="") as f:
        f.write(template.render(**variables))
    print(out)


if __name__ == "__main__":
    main()
