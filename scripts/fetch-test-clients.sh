#!/usr/bin/env bash
# Real API clients for the server's tests, in a virtualenv under the cache: OpenAI's official
# Python SDK and Llama Stack's Python client 0.2.12 (the newest that installs on Python 3.11; it
# imports `fire` and `requests` without declaring them, so they are installed too). Pinned.
# Prints nothing when they are already there. Python is not a runtime dependency of Corral; this
# is test set-up only.
set -euo pipefail
cache="${CORRAL_CACHE:-$HOME/.cache/corral}"
venv="$cache/venv-clients"
OPENAI_VERSION="3.57.0"
LLAMA_STACK_CLIENT_VERSION="0.2.12"
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "
import sys, openai, llama_stack_client
sys.exit(openai.__version__ != '$OPENAI_VERSION' or llama_stack_client.__version__ != '$LLAMA_STACK_CLIENT_VERSION')" 2>/dev/null; then
    exit 0
fi
echo "setting up $venv (openai $OPENAI_VERSION, llama-stack-client $LLAMA_STACK_CLIENT_VERSION)"
python3 -m venv "$venv"
"$venv/bin/pip" install -q "openai==$OPENAI_VERSION" "llama-stack-client==$LLAMA_STACK_CLIENT_VERSION" fire requests
