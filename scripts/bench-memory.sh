#!/usr/bin/env bash
# Memory (#5) figures in one run:
#   1. ingestion end to end — `corral ingest` of Debian's glpk-doc PDFs (471 pages) with the real
#      MiniLM embedder, 2 kernel threads — pages/s, chunks/s, and the share of time that is not
#      embedding (load + chunk + store against the total of the stages);
#   2. the embedded store at 10k and 100k chunks (`cargo bench -p corral-memory --bench store`):
#      query latency p50/p99 per mode, vector recall against brute force, bytes on disk per chunk.
#
# Needs the release binary (`cargo build --release -p corral-cli`), the test models
# (scripts/fetch-test-models.sh) and the PDFs (scripts/fetch-test-pdfs.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

cache="${CORRAL_CACHE:-$HOME/.cache/corral}"
corral="${CORRAL_BIN:-target/release/corral}"
pdfs="${CORRAL_TEST_PDFS:-$cache/pdfs/glpk-doc}"
work="$(mktemp -d "${TMPDIR:-/tmp}/corral-bench-memory.XXXXXX")"
trap 'rm -rf "$work"' EXIT

cat >"$work/corral.toml" <<TOML
version = 1

[[providers.inference]]
id = "local"
type = "local"
config = { models_dir = "$cache/models", threads = 2 }

[[models]]
id = "minilm"
provider = "local"
provider_model = "all-MiniLM-L6-v2"
kind = "embedding"

[[providers.vector_io]]
id = "embedded"
type = "embedded"
config = { path = "$work/stores" }

[[vector_stores]]
id = "bench"
provider = "embedded"
embedding_model = "minilm"
TOML

echo "== ingestion: $pdfs"
"$corral" --config "$work/corral.toml" ingest "$pdfs"
echo "== re-ingestion of the unchanged files"
/usr/bin/time -f "%e s" "$corral" --config "$work/corral.toml" ingest "$pdfs" >/dev/null

echo "== the embedded store"
cargo bench -q -p corral-memory --bench store -- 10000 100000
