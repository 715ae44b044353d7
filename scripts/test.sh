#!/usr/bin/env bash
# The test suite, with everything it needs set up first. README.md and .ci/run both use this script.
#
# Set-up so far is the Rust toolchain alone; the scripts that fetch test models and build peers
# (llama.cpp's server, MCP reference servers) are called from here as the issues that need them land.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo test --workspace --all-targets
cargo test --workspace --doc
