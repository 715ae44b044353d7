#!/usr/bin/env bash
# The agent loop's overhead, Corral against LangChain, measured in the same run.
#
# Runs crates/agents/benches/agent_loop.rs (instant scripted model, instant tool; a turn is
# user message -> tool call -> tool result -> text answer) and scripts/bench/langchain_agent_loop.py
# (LangChain's create_agent on the same scenario, with a fake chat model), with the same counts,
# then prints the ratios. The LangChain peer gets its own virtualenv with pinned versions under
# ${CORRAL_CACHE:-$HOME/.cache/corral}/venv-langchain; if that cannot be made, the peer is skipped
# and Corral's figures are still printed.
#
#   scripts/bench-agents.sh                       # 1000 sessions x 3 turns for the concurrent part
#   SESSIONS=1000 TURNS_PER_SESSION=5 scripts/bench-agents.sh
#   LANGCHAIN_TURNS=300 scripts/bench-agents.sh   # fewer sequential LangChain turns (it is slow)
set -euo pipefail

cd "$(dirname "$0")/.."

SESSIONS=${SESSIONS:-1000}
TURNS_PER_SESSION=${TURNS_PER_SESSION:-3}
LANGCHAIN_TURNS=${LANGCHAIN_TURNS:-1000}
CACHE=${CORRAL_CACHE:-$HOME/.cache/corral}
VENV="$CACHE/venv-langchain"
# Versions measured; change them together, and the virtualenv is made again.
PINS=(
    langchain==1.5.2
    langchain-core==1.8.3
    langgraph==1.2.24
    langgraph-checkpoint==4.3.2
    langgraph-prebuilt==1.1.3
)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "== building the Rust bench"
cargo bench -p corral-agents --bench agent_loop --no-run

# Returns 0 when the virtualenv holds exactly the pinned versions.
venv_ready() {
    [[ -x "$VENV/bin/python" && -f "$VENV/.pins" ]] && [[ "$(cat "$VENV/.pins")" == "${PINS[*]}" ]]
}

make_venv() {
    command -v python3 >/dev/null || { echo "python3 is not installed"; return 1; }
    rm -rf "$VENV"
    mkdir -p "$CACHE"
    python3 -m venv "$VENV" || return 1
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "${PINS[@]}" || return 1
    echo "${PINS[*]}" >"$VENV/.pins"
}

peer=1
if ! venv_ready; then
    echo "== making $VENV (${PINS[*]})"
    if ! make_venv; then
        echo "!! could not install LangChain into $VENV; the LangChain peer is skipped"
        peer=0
    fi
fi

echo
echo "== Corral ($(uptime | sed 's/.*load/load/'), $(nproc) cores)"
cargo bench -p corral-agents --bench agent_loop -- --bench \
    --sessions "$SESSIONS" --turns-per-session "$TURNS_PER_SESSION" | tee "$work/corral.txt"

if [[ $peer == 1 ]]; then
    echo
    echo "== LangChain ($(uptime | sed 's/.*load/load/'))"
    if ! "$VENV/bin/python" scripts/bench/langchain_agent_loop.py \
        --turns "$LANGCHAIN_TURNS" --sessions "$SESSIONS" \
        --turns-per-session "$TURNS_PER_SESSION" | tee "$work/langchain.txt"; then
        echo "!! the LangChain peer failed; no ratios"
        peer=0
    fi
fi
echo "== done ($(uptime | sed 's/.*load/load/'))"

[[ $peer == 1 ]] || exit 0

echo
echo "== ratios (LangChain / Corral; > 1 means Corral is faster)"
python3 - "$work/corral.txt" "$work/langchain.txt" <<'PY'
import json
import sys


def last_json(path):
    with open(path, encoding="utf-8") as f:
        lines = [line for line in f if line.startswith("{")]
    if not lines:
        sys.exit(f"no JSON line in {path}")
    return json.loads(lines[-1])


ours, theirs = last_json(sys.argv[1]), last_json(sys.argv[2])
step_ours = ours["sequential_step_us"]
step_theirs = theirs["sequential_best_step_us"]
print(
    f"per-step overhead, sequential: Corral {step_ours:.1f} us, "
    f"LangChain {step_theirs:.1f} us (best of ainvoke/invoke): x{step_theirs / step_ours:.1f}"
)
turn_ours = ours["sequential"]["p99_us"]
turn_theirs = min(theirs["sequential_async"]["p99_us"], theirs["sequential_sync"]["p99_us"])
print(
    f"p99 turn latency, sequential: Corral {turn_ours:.0f} us, LangChain {turn_theirs:.0f} us: "
    f"x{turn_theirs / turn_ours:.1f}"
)
c_ours, c_theirs = ours["concurrent"], theirs["concurrent"]
print(
    f"concurrent {c_ours['sessions']} sessions x {c_ours['turns_per_session']} turns: Corral "
    f"{c_ours['turns_per_s']:.0f} turns/s (2 worker threads), LangChain "
    f"{c_theirs['turns_per_s']:.0f} turns/s (one asyncio loop): "
    f"x{c_ours['turns_per_s'] / c_theirs['turns_per_s']:.1f} in turns/s; p99 "
    f"{c_ours['p99_us'] / 1e3:.1f} ms vs {c_theirs['p99_us'] / 1e3:.1f} ms: "
    f"x{c_theirs['p99_us'] / c_ours['p99_us']:.1f}"
)
sqlite = ours.get("sqlite")
if sqlite:
    print(f"Corral SQLite persistence: {sqlite['persistence_per_turn_us']:.0f} us per turn")
PY
