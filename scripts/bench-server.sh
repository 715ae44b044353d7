#!/usr/bin/env bash
# The HTTP server (#8), Corral against Llama Stack 0.2.12, measured in the same run on the same
# scripted upstream.
#
# Both servers send inference to crates/server/examples/instant_upstream.rs (an instant,
# scripted OpenAI-compatible server, one thread) through their `remote::vllm` provider. For each
# server, in turn:
#   1. a vector store is built through its own OpenAI API (scripts/bench/setup_store.py: the
#      repository's Markdown docs, uploaded and attached with the same static chunking, embedded
#      by the upstream's scripted embeddings);
#   2. wrk (Debian's package) drives POST /chat/completions (whole, then streamed: 16 deltas)
#      and POST /vector_stores/{id}/search at CONNECTIONS concurrent connections for SECONDS
#      (after a 2 s warm-up): requests/s and p50/p99 latency, and any non-2xx answer fails the run;
#   3. scripts/bench/idle_connections.py opens IDLE keep-alive connections, one request each,
#      and reads the server's RSS before and after: memory per idle connection.
# Then it prints the ratios (> 1 means Corral is better).
#
# Llama Stack runs as it ships (one uvicorn process, plain `uvicorn` as its own build installs
# it; inline::faiss for vectors, inline::localfs for files; its own pinned virtualenv under
# ${CORRAL_CACHE:-$HOME/.cache/corral}/venv-llama-stack) but for two settings in its favour:
# telemetry with no sinks (by default it prints every span to the console and writes it to
# SQLite), and LLAMA_STACK_LOGGING=all=critical. Under load its span queue overflows and it logs
# "Log queue is full, dropping event" through rich for every span, which took half its time and
# made it 3-8x slower in our runs. Corral runs `target/release/corral serve`, which logs nothing
# per request at its default level.
# Load generator, upstream and server share this machine's cores: the figures are for one box.
#
#   scripts/bench-server.sh                  # 64 connections, 10 s per case, 1000 idle
#   CONNECTIONS=32 SECONDS_PER_CASE=20 IDLE=2000 scripts/bench-server.sh
#   CORRAL_BIN=path/to/corral scripts/bench-server.sh   # measure that binary, build nothing
set -euo pipefail
cd "$(dirname "$0")/.."

CONNECTIONS=${CONNECTIONS:-64}
SECONDS_PER_CASE=${SECONDS_PER_CASE:-10}
IDLE=${IDLE:-1000}
CACHE=${CORRAL_CACHE:-$HOME/.cache/corral}
VENV="$CACHE/venv-llama-stack"
# Versions measured; change them together, and the virtualenv is made again. Besides Llama Stack
# itself: what its `remote::vllm`, `inline::faiss` and `inline::localfs` providers import
# (`chardet` reads an uploaded file) and what its own build adds for the server, at the versions
# that were current when measured.
PINS=(
    llama-stack==0.2.12
    llama-stack-client==0.2.12
    openai==3.57.0
    faiss-cpu==1.15.1
    sqlalchemy[asyncio]==2.1.9
    aiosqlite==0.22.1
    fastapi==0.165.0
    starlette==1.10.0
    uvicorn==0.54.0
    chardet==7.7.0
    fire==0.7.1
    httpx==0.28.1
    opentelemetry-sdk==1.45.2
    opentelemetry-exporter-otlp-proto-http==1.45.2
)

command -v wrk >/dev/null || {
    echo "wrk is not installed (Debian: apt-get install wrk)" >&2
    exit 1
}
ulimit -n "$(ulimit -Hn)"

work=$(mktemp -d "${TMPDIR:-/tmp}/corral-bench-server.XXXXXX")
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

echo "== building corral and the scripted upstream (release)"
if [[ -z ${CORRAL_BIN:-} ]]; then
    cargo build --release -q -p corral-cli
fi
cargo build --release -q -p corral-server --example instant_upstream
corral=${CORRAL_BIN:-target/release/corral}
upstream_bin=target/release/examples/instant_upstream

venv_ready() {
    [[ -x "$VENV/bin/python" && -f "$VENV/.pins" ]] && [[ "$(cat "$VENV/.pins")" == "${PINS[*]}" ]]
}
if ! venv_ready; then
    echo "== making $VENV (${PINS[*]})"
    rm -rf "$VENV"
    mkdir -p "$CACHE"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "${PINS[@]}"
    echo "${PINS[*]}" >"$VENV/.pins"
fi
python="$VENV/bin/python"

# Waits until `$2` (a file) has a line matching `$3`, or the process `$1` dies, or 120 s pass.
wait_for_line() {
    local pid=$1 file=$2 pattern=$3
    for _ in $(seq 1200); do
        grep -qE "$pattern" "$file" 2>/dev/null && return 0
        kill -0 "$pid" 2>/dev/null || {
            echo "!! process $pid ended; its output:" >&2
            tail -40 "$file" >&2
            return 1
        }
        sleep 0.1
    done
    echo "!! nothing matched /$pattern/ in $file within 120 s" >&2
    return 1
}

# Waits until the server `$1` (a pid) answers GET `$2` (its health URL), or dies, or 120 s pass.
wait_for_health() {
    local pid=$1 url=$2
    for _ in $(seq 1200); do
        curl -sf -o /dev/null "$url" && return 0
        kill -0 "$pid" 2>/dev/null || {
            echo "!! process $pid ended before answering $url" >&2
            return 1
        }
        sleep 0.1
    done
    echo "!! $url did not answer within 120 s" >&2
    return 1
}

free_port() {
    "$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

"$upstream_bin" 127.0.0.1:0 >"$work/upstream.log" 2>&1 &
pids+=($!)
wait_for_line "$!" "$work/upstream.log" "^listening on "
upstream=$(sed -n 's/^listening on //p' "$work/upstream.log")
echo "== scripted upstream at $upstream"

docs=(README.md ARCHITECTURE.md docs/*.md)

# wrk's Lua script for one POST with a JSON body.
post_script() {
    local body=$1 file=$2
    cat >"$file" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [[$body]]
LUA
}

# Runs one wrk case and appends a JSON line {server, case, rps, p50_ms, p99_ms} to results.
run_case() {
    local server=$1 case=$2 url=$3 body=$4
    local script="$work/$server-$case.lua" out="$work/$server-$case.txt"
    post_script "$body" "$script"
    wrk -t2 -c"$CONNECTIONS" -d2s --timeout 30s -s "$script" "$url" >/dev/null
    wrk -t2 -c"$CONNECTIONS" -d"${SECONDS_PER_CASE}s" --timeout 30s --latency -s "$script" "$url" >"$out"
    if grep -qE "Non-2xx|Socket errors" "$out"; then
        echo "!! $server $case: wrk saw errors" >&2
        cat "$out" >&2
        exit 1
    fi
    "$python" - "$server" "$case" "$out" >>"$work/results.jsonl" <<'PY'
import json, re, sys

server, case, path = sys.argv[1:4]
text = open(path, encoding="utf-8").read()


def ms(label):
    match = re.search(rf"^\s*{label}%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
    value, unit = float(match.group(1)), match.group(2)
    return value * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]


rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
print(json.dumps({"server": server, "case": case, "rps": rps, "p50_ms": ms("50"), "p99_ms": ms("99")}))
PY
    tail -1 "$work/results.jsonl"
}

# Measures one server: $1 name, $2 its pid, $3 base URL of its OpenAI routes, $4 its port,
# $5 extra JSON for creating the store, $6 the search body.
measure() {
    local name=$1 pid=$2 base=$3 port=$4 extra=$5 search=$6
    echo "== $name: building the store ($(uptime | sed 's/.*load/load/'))"
    local setup
    setup=$("$python" scripts/bench/setup_store.py "$base" instant-embed "${docs[@]}" --extra "$extra")
    echo "$setup"
    local store
    store=$("$python" -c 'import json, sys; print(json.loads(sys.argv[1])["store"])' "$setup")
    local chat='{"model": "instant", "messages": [{"role": "user", "content": "What does the attached document say about tenants?"}], "max_tokens": 64}'
    run_case "$name" chat "$base/chat/completions" "$chat"
    run_case "$name" chat_stream "$base/chat/completions" "${chat%\}}, \"stream\": true}"
    run_case "$name" search "$base/vector_stores/$store/search" "$search"
    if [[ $name == corral ]]; then
        run_case "$name" search_hybrid "$base/vector_stores/$store/search" \
            '{"query": "How does the server keep tenants apart?", "max_num_results": 10}'
    fi
    echo "== $name: $IDLE idle connections"
    "$python" scripts/bench/idle_connections.py --pid "$pid" --port "$port" \
        --connections "$IDLE" | tee "$work/$name-idle.json"
    echo "== $name: peak RSS $(grep VmHWM "/proc/$pid/status" | awk '{print $2}') KiB"
}

vector_search='{"query": "How does the server keep tenants apart?", "max_num_results": 10, "search_mode": "vector"}'

# --- Corral
port=$(free_port)
mkdir -p "$work/corral"
cat >"$work/corral/corral.toml" <<TOML
version = 1

[server]
data_dir = "$work/corral/data"

[[providers.inference]]
id = "vllm"
type = "remote::vllm"
config = { base_url = "$upstream" }

[[models]]
id = "instant"
provider = "vllm"
provider_model = "instant"
kind = "chat"

[[models]]
id = "instant-embed"
provider = "vllm"
provider_model = "instant-embed"
kind = "embedding"
TOML
"$corral" --config "$work/corral/corral.toml" serve --port "$port" \
    >"$work/corral.log" 2>&1 &
corral_pid=$!
pids+=("$corral_pid")
wait_for_line "$corral_pid" "$work/corral.log" "^corral serving on "
measure corral "$corral_pid" "http://127.0.0.1:$port/v1" "$port" '{}' "$vector_search"
kill "$corral_pid"

# --- Llama Stack
port=$(free_port)
mkdir -p "$work/llama-stack"
cat >"$work/llama-stack/run.yaml" <<YAML
version: '2'
image_name: corral-bench
apis:
- inference
- vector_io
- files
- telemetry
providers:
  inference:
  - provider_id: vllm
    provider_type: remote::vllm
    config:
      url: $upstream
      max_tokens: 4096
      api_token: fake
      tls_verify: false
  vector_io:
  - provider_id: faiss
    provider_type: inline::faiss
    config:
      kvstore:
        type: sqlite
        db_path: $work/llama-stack/faiss_store.db
  telemetry:
  - provider_id: meta-reference
    provider_type: inline::meta-reference
    config:
      sinks: []
      sqlite_db_path: $work/llama-stack/trace_store.db
  files:
  - provider_id: localfs
    provider_type: inline::localfs
    config:
      storage_dir: $work/llama-stack/files
      metadata_store:
        type: sqlite
        db_path: $work/llama-stack/files_metadata.db
metadata_store:
  type: sqlite
  db_path: $work/llama-stack/registry.db
models:
- model_id: instant
  provider_id: vllm
  provider_model_id: instant
  model_type: llm
- model_id: instant-embed
  provider_id: vllm
  provider_model_id: instant-embed
  model_type: embedding
  metadata:
    embedding_dimension: 384
server:
  port: $port
YAML
LLAMA_STACK_LOGGING="all=critical" \
    "$python" -m llama_stack.distribution.server.server --config "$work/llama-stack/run.yaml" \
    --port "$port" >"$work/llama-stack.log" 2>&1 &
ls_pid=$!
pids+=("$ls_pid")
# It logs nothing at `critical`, so its health route says when it is up.
wait_for_health "$ls_pid" "http://127.0.0.1:$port/v1/health" || {
    tail -40 "$work/llama-stack.log" >&2
    exit 1
}
measure llama-stack "$ls_pid" "http://127.0.0.1:$port/v1/openai/v1" "$port" \
    '{"embedding_dimension": 384, "provider_id": "faiss"}' \
    '{"query": "How does the server keep tenants apart?", "max_num_results": 10}'
kill "$ls_pid"

echo
echo "== results ($(nproc) cores; $CONNECTIONS connections, ${SECONDS_PER_CASE}s per case)"
"$python" - "$work" <<'PY'
import json, sys
from pathlib import Path

work = Path(sys.argv[1])
rows = [json.loads(line) for line in (work / "results.jsonl").read_text().splitlines()]
by = {(r["server"], r["case"]): r for r in rows}
print(f"{'case':<28}{'Corral rps':>12}{'p99 ms':>9}{'Llama Stack rps':>17}{'p99 ms':>9}{'rps x':>8}{'p99 x':>8}")
for case, theirs in [("chat", "chat"), ("chat_stream", "chat_stream"), ("search", "search"),
                     ("search_hybrid", "search")]:
    ours, peer = by[("corral", case)], by[("llama-stack", theirs)]
    label = case if case == theirs else f"{case} (vs {theirs})"
    if peer["rps"] == 0:
        print(f"{label:<28}{ours['rps']:>12.0f}{ours['p99_ms']:>9.2f}  Llama Stack finished no request in the window")
        continue
    print(f"{label:<28}{ours['rps']:>12.0f}{ours['p99_ms']:>9.2f}{peer['rps']:>17.1f}"
          f"{peer['p99_ms']:>9.0f}{ours['rps'] / peer['rps']:>8.0f}{peer['p99_ms'] / ours['p99_ms']:>8.0f}")
idle = {name: json.loads((work / f"{name}-idle.json").read_text()) for name in ("corral", "llama-stack")}
ours, peer = idle["corral"]["kib_per_connection"], idle["llama-stack"]["kib_per_connection"]
ratio = f"Llama Stack / Corral = {peer / ours:.2f}" if ours > 0 else "(Corral's RSS did not grow)"
print(f"memory per idle connection: Corral {ours:.1f} KiB, Llama Stack {peer:.1f} KiB: {ratio}")
PY
