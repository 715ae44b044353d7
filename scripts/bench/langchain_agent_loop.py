"""LangChain's agent loop on the scenario of crates/agents/benches/agent_loop.rs, for comparison.

Per turn: one user message -> the model calls one tool -> the tool answers "ok" -> the model
answers with text (2 model steps + 1 tool step). The model is a `BaseChatModel` that answers
instantly by looking at the request (last message a tool result -> text; otherwise -> a tool
call), so it never runs out; the tool is a `@tool` function returning "ok". The agent is
`langchain.agents.create_agent` (LangChain 1.x) with an in-memory checkpointer (`InMemorySaver`),
one thread per session, as Corral's agent keeps sessions in `MemorySessionStore`.

Reports (a) sequential turns in one session (a fresh session every --session-turns turns), with
`ainvoke` and with `invoke`; (b) --sessions concurrent sessions doing --turns-per-session turns
each on one asyncio loop: turns/s and p99 turn latency. Prints plain lines, then one JSON line.

Run by scripts/bench-agents.sh, which makes the virtualenv with pinned versions.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import json
import platform
import statistics
import sys
import time
from importlib import metadata
from typing import Any

from langchain.agents import create_agent
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver

STEPS_PER_TURN = 3
_call_ids = itertools.count()


class InstantToolCaller(BaseChatModel):
    """Calls `lookup` once per turn, then answers; no waiting, no script to run out of."""

    @property
    def _llm_type(self) -> str:
        return "instant-tool-caller"

    def bind_tools(self, tools: Any, **kwargs: Any) -> "InstantToolCaller":
        return self

    @staticmethod
    def _respond(messages: list[BaseMessage]) -> ChatResult:
        if messages and isinstance(messages[-1], ToolMessage):
            message = AIMessage(content="done")
        else:
            message = AIMessage(
                content="",
                tool_calls=[
                    {
                        "name": "lookup",
                        "args": {"query": "x"},
                        "id": f"call_{next(_call_ids)}",
                        "type": "tool_call",
                    }
                ],
            )
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _generate(self, messages, stop=None, run_manager=None, **kwargs) -> ChatResult:
        return self._respond(messages)

    # The default `_agenerate` runs `_generate` on a thread pool; a native coroutine keeps the
    # model instant on the async path too.
    async def _agenerate(self, messages, stop=None, run_manager=None, **kwargs) -> ChatResult:
        return self._respond(messages)


@tool
def lookup(query: str) -> str:
    """Looks something up."""
    return "ok"


def build_agent():
    return create_agent(
        InstantToolCaller(),
        tools=[lookup],
        system_prompt="You are terse.",
        checkpointer=InMemorySaver(),
    )


def check(result: dict) -> None:
    messages = result["messages"]
    last = messages[-1]
    if not isinstance(last, AIMessage) or last.content != "done":
        raise SystemExit(f"unexpected end of turn: {last!r}")
    if not any(isinstance(m, ToolMessage) and m.content == "ok" for m in messages):
        raise SystemExit("the tool did not run")


def stats(latencies: list[float]) -> dict[str, float]:
    ordered = sorted(latencies)
    n = len(ordered)

    def at(q: float) -> float:
        i = min(max(int(-(-n * q // 1)), 1), n) - 1  # ceil(n*q), 1-based
        return ordered[i]

    return {
        "n": n,
        "mean_us": statistics.fmean(ordered) * 1e6,
        "p50_us": at(0.50) * 1e6,
        "p99_us": at(0.99) * 1e6,
    }


def line(label: str, s: dict[str, float]) -> None:
    print(
        f"{label:<44} n={s['n']:<6} mean {s['mean_us']:>9.1f} us   p50 {s['p50_us']:>9.1f} us"
        f"   p99 {s['p99_us']:>9.1f} us   per step {s['mean_us'] / STEPS_PER_TURN:>8.1f} us"
    )


def inputs(turn: int) -> dict:
    return {"messages": [HumanMessage(content=f"What is the status of item {turn}?")]}


async def sequential_async(agent, turns: int, session_turns: int, warmup: int) -> list[float]:
    latencies = []
    for i in range(warmup + turns):
        config = {"configurable": {"thread_id": f"seq-async-{i // session_turns}"}}
        start = time.perf_counter()
        result = await agent.ainvoke(inputs(i), config)
        elapsed = time.perf_counter() - start
        check(result)
        if i >= warmup:
            latencies.append(elapsed)
    return latencies


def sequential_sync(agent, turns: int, session_turns: int, warmup: int) -> list[float]:
    latencies = []
    for i in range(warmup + turns):
        config = {"configurable": {"thread_id": f"seq-sync-{i // session_turns}"}}
        start = time.perf_counter()
        result = agent.invoke(inputs(i), config)
        elapsed = time.perf_counter() - start
        check(result)
        if i >= warmup:
            latencies.append(elapsed)
    return latencies


async def concurrent(agent, sessions: int, turns_per_session: int) -> tuple[float, list[float]]:
    go = asyncio.Event()

    async def session(s: int) -> list[float]:
        config = {"configurable": {"thread_id": f"conc-{s}"}}
        await go.wait()
        latencies = []
        for t in range(turns_per_session):
            start = time.perf_counter()
            result = await agent.ainvoke(inputs(t), config)
            latencies.append(time.perf_counter() - start)
            check(result)
        return latencies

    tasks = [asyncio.create_task(session(s)) for s in range(sessions)]
    await asyncio.sleep(0)
    start = time.perf_counter()
    go.set()
    results = await asyncio.gather(*tasks)
    wall = time.perf_counter() - start
    return wall, [x for r in results for x in r]


def version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "?"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=2000, help="sequential turns")
    parser.add_argument("--session-turns", type=int, default=10, help="turns per session (a)")
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--sessions", type=int, default=1000, help="concurrent sessions (b)")
    parser.add_argument("--turns-per-session", type=int, default=5, help="turns per session (b)")
    args = parser.parse_args()

    versions = {n: version(n) for n in ("langchain", "langchain-core", "langgraph")}
    print(
        f"LangChain agent loop (create_agent + InMemorySaver), python {platform.python_version()}, "
        + ", ".join(f"{k} {v}" for k, v in versions.items())
    )
    print("a turn: user message -> tool call -> tool result -> text answer (3 steps)")

    agent = build_agent()
    gc.collect()
    seq_async = stats(await sequential_async(agent, args.turns, args.session_turns, args.warmup))
    line(f"(a) sequential ainvoke (session of {args.session_turns})", seq_async)
    agent = build_agent()
    gc.collect()
    seq_sync = stats(sequential_sync(agent, args.turns, args.session_turns, args.warmup))
    line(f"(a) sequential invoke  (session of {args.session_turns})", seq_sync)

    agent = build_agent()
    gc.collect()
    wall, latencies = await concurrent(agent, args.sessions, args.turns_per_session)
    conc = stats(latencies)
    turns_per_s = len(latencies) / wall
    print(
        f"(b) {args.sessions} sessions x {args.turns_per_session} turns, one asyncio loop: "
        f"{turns_per_s:.0f} turns/s, p50 {conc['p50_us'] / 1e3:.2f} ms, "
        f"p99 {conc['p99_us'] / 1e3:.2f} ms, wall {wall:.2f} s"
    )

    best = min(seq_async, seq_sync, key=lambda s: s["mean_us"])
    print(
        json.dumps(
            {
                "bench": "langchain_agent_loop",
                "versions": versions,
                "python": platform.python_version(),
                "steps_per_turn": STEPS_PER_TURN,
                "sequential_async": seq_async,
                "sequential_sync": seq_sync,
                "sequential_best_step_us": best["mean_us"] / STEPS_PER_TURN,
                "concurrent": {
                    "sessions": args.sessions,
                    "turns_per_session": args.turns_per_session,
                    "turns_per_s": turns_per_s,
                    "wall_s": wall,
                    **conc,
                },
            }
        )
    )


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
