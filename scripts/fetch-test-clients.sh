#!/usr/bin/env bash
# Real API clients for the server's tests, in a virtualenv under the cache: OpenAI's official
# Python SDK (pinned). Prints nothing when it is already there. Python is not a runtime dependency
# of Corral; this is test set-up only.
set -euo pipefail
cache="${CORRAL_CACHE:-$HOME/.cache/corral}"
venv="$cache/venv-clients"
OPENAI_VERSION="3.57.0"
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "import openai, sys; sys.exit(openai.__version__ != '$OPENAI_VERSION')" 2>/dev/null; then
    exit 0
fi
echo "setting up $venv (openai $OPENAI_VERSION)"
python3 -m venv "$venv"
"$venv/bin/pip" install -q "openai==$OPENAI_VERSION"
