#!/usr/bin/env python3
"""Prints a GGUF file's `tokenizer.chat_template` (stdlib only).

Usage: python3 extract_gguf_template.py MODEL.gguf > template.jinja
Also reports the BOS/EOS token texts on stderr.
"""
import struct
import sys

SCALAR = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}


def read(f, fmt):
    size = struct.calcsize(fmt)
    return struct.unpack(fmt, f.read(size))[0]


def read_str(f):
    n = read(f, "<Q")
    return f.read(n).decode("utf-8")


def read_value(f, vtype):
    if vtype in SCALAR:
        return read(f, SCALAR[vtype])
    if vtype == 8:
        return read_str(f)
    if vtype == 9:
        item_type = read(f, "<I")
        count = read(f, "<Q")
        return [read_value(f, item_type) for _ in range(count)]
    raise ValueError(f"unknown GGUF value type {vtype}")


def main():
    with open(sys.argv[1], "rb") as f:
        if f.read(4) != b"GGUF":
            sys.exit("not a GGUF file")
        version = read(f, "<I")
        if version < 2:
            sys.exit(f"unsupported GGUF version {version}")
        read(f, "<Q")  # tensor count
        kv_count = read(f, "<Q")
        meta = {}
        for _ in range(kv_count):
            key = read_str(f)
            meta[key] = read_value(f, read(f, "<I"))
    tokens = meta.get("tokenizer.ggml.tokens", [])
    for name in ("bos", "eos"):
        tid = meta.get(f"tokenizer.ggml.{name}_token_id")
        if tid is not None and tid < len(tokens):
            print(f"{name}_token = {tokens[tid]!r} (id {tid})", file=sys.stderr)
    print(f"general.architecture = {meta.get('general.architecture')!r}", file=sys.stderr)
    template = meta.get("tokenizer.chat_template")
    if template is None:
        sys.exit("this GGUF has no tokenizer.chat_template")
    sys.stdout.write(template)


if __name__ == "__main__":
    main()
