#!/usr/bin/env bash
# Real API clients for the server's tests, pinned, under the cache (CORRAL_CACHE, default
# ~/.cache/corral). Prints nothing for what is already there. Neither Python nor Node is a runtime
# dependency of Corral; this is test set-up only.
#   - venv-clients: OpenAI's Python SDK, Llama Stack's Python client 0.2.12 (the newest that
#     installs on Python 3.11; it imports `fire` and `requests` without declaring them), and
#     schemathesis (fuzzing the server from its OpenAPI document);
#   - npm-clients: the `openai` npm package and Llama Stack's TypeScript client (current API).
set -euo pipefail
cache="${CORRAL_CACHE:-$HOME/.cache/corral}"

OPENAI_VERSION="3.57.0"
LLAMA_STACK_CLIENT_VERSION="0.2.12"
SCHEMATHESIS_VERSION="4.32.5"
OPENAI_NPM_VERSION="7.59.0"
LLAMA_STACK_CLIENT_NPM_VERSION="0.7.3"

venv="$cache/venv-clients"
if ! { [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "
import sys, importlib.metadata as m
want = {'openai': '$OPENAI_VERSION', 'llama-stack-client': '$LLAMA_STACK_CLIENT_VERSION', 'schemathesis': '$SCHEMATHESIS_VERSION'}
sys.exit(any(m.version(p) != v for p, v in want.items()))" 2>/dev/null; }; then
    echo "setting up $venv (openai $OPENAI_VERSION, llama-stack-client $LLAMA_STACK_CLIENT_VERSION, schemathesis $SCHEMATHESIS_VERSION)"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q "openai==$OPENAI_VERSION" "llama-stack-client==$LLAMA_STACK_CLIENT_VERSION" fire requests \
        "schemathesis==$SCHEMATHESIS_VERSION"
fi

npm_dir="$cache/npm-clients"
installed() {
    local manifest="$npm_dir/node_modules/$1/package.json"
    [[ -f "$manifest" ]] && node -e 'process.stdout.write(require(process.argv[1]).version)' "$manifest"
}
if [[ "$(installed openai || true)" != "$OPENAI_NPM_VERSION" || "$(installed llama-stack-client || true)" != "$LLAMA_STACK_CLIENT_NPM_VERSION" ]]; then
    command -v npm >/dev/null || { echo "error: npm is not on PATH (Node 18 or later is needed)" >&2; exit 1; }
    echo "installing openai@$OPENAI_NPM_VERSION and llama-stack-client@$LLAMA_STACK_CLIENT_NPM_VERSION into $npm_dir"
    mkdir -p "$npm_dir"
    [[ -f "$npm_dir/package.json" ]] || echo '{"private": true}' > "$npm_dir/package.json"
    (cd "$npm_dir" && npm install --no-audit --no-fund --silent \
        "openai@$OPENAI_NPM_VERSION" "llama-stack-client@$LLAMA_STACK_CLIENT_NPM_VERSION")
fi
