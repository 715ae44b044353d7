#!/usr/bin/env python3
"""Copies the "Input Prompt Format" blocks used as golden expectations out of Meta's prompt-format
documents in the PyPI package llama-models 0.3.0 (stdlib only).

    pip download --no-deps llama-models==0.3.0 -d /tmp/lm && unzip -q /tmp/lm/*.whl -d /tmp/lm/x
    python3 extract_doc_examples.py /tmp/lm/x/llama_models
"""
import os
import sys

# expected file -> (document, section heading)
EXAMPLES = {
    "llama3_2_chat.expected.txt": ("llama3_2/text_prompt_format.md", "## User and assistant conversation"),
    "llama3_2_zero_shot_tools.expected.txt": ("llama3_2/text_prompt_format.md", "## Zero shot function calling"),
    "llama3_2_tool_e2e.expected.txt": ("llama3_2/text_prompt_format.md", "## Zero shot function calling E2E format"),
    "llama3_1_chat.expected.txt": ("llama3_1/prompt_format.md", "## User and assistant conversation"),
    "llama3_1_json_tools.expected.txt": ("llama3_1/prompt_format.md", "## JSON based tool calling"),
}


def input_block(text, heading):
    lines = text.split("\n")
    start = lines.index(heading)
    fmt = lines.index("##### Input Prompt Format", start)
    open_fence = lines.index("```", fmt)
    close_fence = lines.index("```", open_fence + 1)
    return "\n".join(lines[open_fence + 1 : close_fence])


def main():
    root = sys.argv[1]
    here = os.path.dirname(os.path.abspath(__file__))
    for name, (doc, heading) in EXAMPLES.items():
        with open(os.path.join(root, doc), encoding="utf-8") as f:
            block = input_block(f.read(), heading)
        with open(os.path.join(here, name), "w", encoding="utf-8", newline="") as f:
            f.write(block)
        print(f"{name}: {doc} / {heading}")


if __name__ == "__main__":
    main()
