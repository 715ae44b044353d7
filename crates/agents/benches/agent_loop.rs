//! The agent loop's own cost: turns against a model and a tool that take no time, so what is
//! measured is the framework (events, session store, request building, tool plumbing).
//!
//! A turn: one user message → the model calls `lookup` → the tool answers "ok" → the model
//! answers "done". Two inference steps and one tool step; "per step" is turn time / 3.
//!
//! - (a) sequential turns, one at a time, in sessions of [`SESSION_TURNS`] turns (history grows
//!   within a session, as in a conversation), in memory; how a turn's cost grows with a longer
//!   session; what cloning the history costs; the same turn with 20 tools offered;
//! - (b) 1,000 concurrent sessions doing K turns each on a 2-worker runtime: turns/s, p99;
//! - (c) (a) with the SQLite session store on a temp file: the persistence cost per turn.
//!
//! `cargo bench -p corral-agents --bench agent_loop [-- --sessions 1000 --turns-per-session 3]`;
//! `-- --only-sequential N` runs N sequential turns and nothing else (for a profiler). Prints
//! plain lines and one JSON line at the end (read by `scripts/bench-agents.sh`). Without `--bench`
//! among its arguments (`cargo bench` passes it) it does nothing, because
//! `cargo test --all-targets` runs bench targets too.

use std::error::Error;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use corral_agents::{
    Agent, AgentSettings, MemorySessionStore, SessionStore, SqliteSessionStore, Turn, TurnStatus,
};
use corral_core::chat::ToolCallDelta;
use corral_core::{
    ChatDelta, ChatError, ChatModel, ChatRequest, ChatStream, FinishReason, Message, Tool,
    ToolOutput, async_trait,
};
use corral_tools::tool_fn;
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};

const STEPS_PER_TURN: f64 = 3.0;
/// Sequential turns measured (after [`WARMUP`]).
const SEQUENTIAL_TURNS: usize = 20_000;
const WARMUP: usize = 500;
/// Turns per session in the sequential runs, then a fresh session.
const SESSION_TURNS: usize = 10;
/// The long sessions that show how a turn's cost grows with the history.
const LONG_SESSION_TURNS: usize = 100;
const LONG_SESSIONS: usize = 20;
const DEFAULT_SESSIONS: usize = 1_000;
const DEFAULT_TURNS_PER_SESSION: usize = 3;
/// Rounds of the concurrent run (fresh sessions each); the median round is reported.
const CONCURRENT_ROUNDS: usize = 5;

type BenchResult<T> = Result<T, Box<dyn Error + Send + Sync>>;

fn main() -> BenchResult<()> {
    let args: Vec<String> = std::env::args().collect();
    if !args.iter().any(|arg| arg == "--bench") {
        return Ok(());
    }
    let sessions = flag(&args, "--sessions")?.unwrap_or(DEFAULT_SESSIONS);
    let turns_per_session =
        flag(&args, "--turns-per-session")?.unwrap_or(DEFAULT_TURNS_PER_SESSION);
    if let Some(turns) = flag(&args, "--only-sequential")? {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let times = runtime.block_on(async {
            let agent = agent(Arc::new(MemorySessionStore::new()), 0)?;
            sequential(&agent, turns, SESSION_TURNS).await
        })?;
        Stats::of(times).print(&format!(
            "(a) sequential, current-thread runtime, {turns} turns"
        ));
        return Ok(());
    }

    println!(
        "corral agent loop: a turn is user message -> tool call -> tool result -> text answer \
         (3 steps); instant model and tool"
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut report = runtime.block_on(sequential_suite())?;

    let current = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let single = current.block_on(async {
        let agent = agent(Arc::new(MemorySessionStore::new()), 0)?;
        sequential(&agent, SEQUENTIAL_TURNS, SESSION_TURNS).await
    })?;
    let single = Stats::of(single);
    single.print(&format!(
        "(a) sequential, current-thread runtime (session of {SESSION_TURNS})"
    ));
    report["sequential_current_thread"] = single.json();

    let concurrent = runtime.block_on(concurrent_suite(sessions, turns_per_session))?;
    report["concurrent"] = concurrent;

    report["sqlite"] = runtime.block_on(sqlite_suite())?;
    report["bench"] = json!("corral_agent_loop");
    report["steps_per_turn"] = json!(STEPS_PER_TURN);
    println!("{report}");
    Ok(())
}

/// `--name N` among the arguments.
fn flag(args: &[String], name: &str) -> BenchResult<Option<usize>> {
    let Some(at) = args.iter().position(|a| a == name) else {
        return Ok(None);
    };
    let value = args
        .get(at + 1)
        .ok_or_else(|| format!("{name} needs a number"))?;
    Ok(Some(
        value.parse().map_err(|e| format!("{name} {value}: {e}"))?,
    ))
}

/// Answers by looking at the request: after a tool result, text; otherwise a call to `lookup`.
/// Streams its answer in one delta, as a fast remote model would.
#[derive(Debug, Default)]
struct InstantModel {
    calls: AtomicU64,
}

#[async_trait]
impl ChatModel for InstantModel {
    async fn stream(&self, request: &ChatRequest) -> Result<ChatStream, ChatError> {
        let deltas = if matches!(request.messages.last(), Some(Message::Tool { .. })) {
            vec![
                Ok(ChatDelta::Text {
                    text: "done".to_string(),
                }),
                Ok(ChatDelta::Finish {
                    reason: FinishReason::Stop,
                }),
            ]
        } else {
            let n = self.calls.fetch_add(1, Ordering::Relaxed);
            vec![
                Ok(ChatDelta::ToolCall(ToolCallDelta {
                    index: 0,
                    id: Some(format!("call_{n}")),
                    name: Some("lookup".to_string()),
                    arguments: r#"{"query":"x"}"#.to_string(),
                })),
                Ok(ChatDelta::Finish {
                    reason: FinishReason::ToolCalls,
                }),
            ]
        };
        Ok(futures::stream::iter(deltas).boxed())
    }
}

#[derive(Deserialize, schemars::JsonSchema)]
struct LookupArgs {
    /// What to look up.
    #[allow(dead_code)]
    query: String,
}

/// `lookup`, plus `extra` tools the model is offered but never calls.
fn tools(extra: usize) -> BenchResult<Vec<Arc<dyn Tool>>> {
    let mut tools: Vec<Arc<dyn Tool>> = vec![Arc::new(tool_fn(
        "lookup",
        "Looks something up.",
        |_: LookupArgs| async { Ok(ToolOutput::text("ok")) },
    )?)];
    for i in 0..extra {
        tools.push(Arc::new(tool_fn(
            format!("other_{i}"),
            "Another tool the model could call, with a schema of typical size.",
            |_: LookupArgs| async { Ok(ToolOutput::text("ok")) },
        )?));
    }
    Ok(tools)
}

fn agent(sessions: Arc<dyn SessionStore>, extra_tools: usize) -> BenchResult<Agent> {
    Ok(Agent::builder(Arc::new(InstantModel::default()))
        .instructions("You are terse.")
        .tools(tools(extra_tools)?)
        .settings(AgentSettings::default())
        .sessions(sessions)
        .build()?)
}

fn question(i: usize) -> String {
    format!("What is the status of item {i}?")
}

fn check(turn: &Turn) -> BenchResult<()> {
    if turn.status != TurnStatus::Completed || turn.answer != "done" || turn.steps.len() != 3 {
        return Err(format!(
            "unexpected turn: status {:?}, answer {:?}, {} steps, stop {:?}",
            turn.status,
            turn.answer,
            turn.steps.len(),
            turn.stop_reason
        )
        .into());
    }
    Ok(())
}

/// `turns` turns (after a warm-up) one at a time, a fresh session every `session_turns`.
async fn sequential(
    agent: &Agent,
    turns: usize,
    session_turns: usize,
) -> BenchResult<Vec<Duration>> {
    let mut times = Vec::with_capacity(turns);
    let mut session = String::new();
    for i in 0..WARMUP + turns {
        if i % session_turns == 0 {
            session = agent.create_session("bench").await?.id;
        }
        let start = Instant::now();
        let turn = agent.ask(&session, &question(i)).await?;
        let elapsed = start.elapsed();
        check(&turn)?;
        if i >= WARMUP {
            times.push(elapsed);
        }
    }
    Ok(times)
}

async fn sequential_suite() -> BenchResult<Value> {
    let agent = agent(Arc::new(MemorySessionStore::new()), 0)?;
    let seq = Stats::of(sequential(&agent, SEQUENTIAL_TURNS, SESSION_TURNS).await?);
    seq.print(&format!(
        "(a) sequential, 2-worker runtime (session of {SESSION_TURNS})"
    ));

    // History growth: the turn's cost at the start and at the end of long sessions.
    let mut by_position: Vec<Vec<Duration>> = (0..LONG_SESSION_TURNS)
        .map(|_| Vec::with_capacity(LONG_SESSIONS))
        .collect();
    for _ in 0..LONG_SESSIONS {
        let session = agent.create_session("long").await?.id;
        for (i, times) in by_position.iter_mut().enumerate() {
            let start = Instant::now();
            let turn = agent.ask(&session, &question(i)).await?;
            times.push(start.elapsed());
            check(&turn)?;
        }
    }
    let first = Stats::of(by_position[..10].concat());
    let last = Stats::of(by_position[LONG_SESSION_TURNS - 10..].concat());
    first.print("    turns 1-10 of 100-turn sessions");
    last.print("    turns 91-100 of 100-turn sessions");

    // What the loop's copies of the history cost: a turn loads the session's turns (a clone of
    // every earlier turn, steps included, from the memory store) and turns them into messages.
    let store = agent.sessions().clone();
    let mut clones = json!({});
    for len in [SESSION_TURNS, LONG_SESSION_TURNS] {
        let session = agent.create_session("clone").await?.id;
        for i in 0..len {
            agent.ask(&session, &question(i)).await?;
        }
        let mut times = Vec::with_capacity(2_000);
        for _ in 0..2_000 {
            let start = Instant::now();
            let turns = store.turns(&session).await?;
            let messages = corral_agents::history(&turns);
            times.push(start.elapsed());
            std::hint::black_box(messages);
        }
        let stats = Stats::of(times);
        println!(
            "    loading + flattening a {len}-turn history: mean {:.1} µs",
            stats.mean_us
        );
        clones[format!("history_{len}_turns_us")] = json!(stats.mean_us);
    }

    // The same turn with 20 tools offered: every model call copies the tool specs into the
    // request and estimates their size.
    let wide = agent_with_tools(20)?;
    let tools20 = Stats::of(sequential(&wide, SEQUENTIAL_TURNS / 4, SESSION_TURNS).await?);
    tools20.print(&format!(
        "(a) sequential, 20 tools offered (session of {SESSION_TURNS})"
    ));

    Ok(json!({
        "sequential": seq.json(),
        "sequential_step_us": seq.mean_us / STEPS_PER_TURN,
        "session_turns": SESSION_TURNS,
        "long_session": {
            "turns": LONG_SESSION_TURNS,
            "first_10": first.json(),
            "last_10": last.json(),
        },
        "history_clone": clones,
        "sequential_20_tools": tools20.json(),
    }))
}

fn agent_with_tools(extra: usize) -> BenchResult<Agent> {
    agent(Arc::new(MemorySessionStore::new()), extra - 1)
}

async fn concurrent_suite(sessions: usize, turns_per_session: usize) -> BenchResult<Value> {
    let mut rounds = Vec::with_capacity(CONCURRENT_ROUNDS);
    for _ in 0..CONCURRENT_ROUNDS {
        let agent = agent(Arc::new(MemorySessionStore::new()), 0)?;
        rounds.push(concurrent(&agent, sessions, turns_per_session).await?);
    }
    rounds.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (turns_per_s, wall, stats) = rounds.swap_remove(rounds.len() / 2);
    println!(
        "(b) {sessions} sessions x {turns_per_session} turns, 2 worker threads: {turns_per_s:.0} \
         turns/s, p50 {:.2} ms, p99 {:.2} ms, wall {:.3} s (median of {CONCURRENT_ROUNDS} rounds)",
        stats.p50_us / 1e3,
        stats.p99_us / 1e3,
        wall.as_secs_f64(),
    );
    let mut out = stats.json();
    out["sessions"] = json!(sessions);
    out["turns_per_session"] = json!(turns_per_session);
    out["turns_per_s"] = json!(turns_per_s);
    out["wall_s"] = json!(wall.as_secs_f64());
    out["worker_threads"] = json!(2);
    Ok(out)
}

/// Every session starts its turns at once; each turn's latency includes its wait for a worker.
async fn concurrent(
    agent: &Agent,
    sessions: usize,
    turns_per_session: usize,
) -> BenchResult<(f64, Duration, Stats)> {
    let (go_tx, go_rx) = tokio::sync::watch::channel(false);
    let mut tasks = Vec::with_capacity(sessions);
    for s in 0..sessions {
        let agent = agent.clone();
        let session = agent.create_session("concurrent").await?.id;
        let mut go = go_rx.clone();
        tasks.push(tokio::spawn(async move {
            go.wait_for(|go| *go).await?;
            let mut times = Vec::with_capacity(turns_per_session);
            for t in 0..turns_per_session {
                let start = Instant::now();
                let turn = agent
                    .ask(&session, &question(s * turns_per_session + t))
                    .await?;
                times.push(start.elapsed());
                check(&turn)?;
            }
            BenchResult::Ok(times)
        }));
    }
    tokio::task::yield_now().await;
    let start = Instant::now();
    go_tx.send(true)?;
    let mut times = Vec::with_capacity(sessions * turns_per_session);
    for task in tasks {
        times.extend(task.await??);
    }
    let wall = start.elapsed();
    let turns_per_s = times.len() as f64 / wall.as_secs_f64();
    Ok((turns_per_s, wall, Stats::of(times)))
}

/// Memory and SQLite agents in alternating blocks, so both see the same machine load; the
/// difference is what persisting a turn costs (loading the session's turns, saving the turn).
async fn sqlite_suite() -> BenchResult<Value> {
    const BLOCKS: usize = 10;
    const BLOCK_TURNS: usize = 500;
    let path =
        std::env::temp_dir().join(format!("corral-bench-agent-loop-{}.db", std::process::id()));
    let result = async {
        let sqlite = agent(Arc::new(SqliteSessionStore::open(&path)?), 0)?;
        let memory = agent(Arc::new(MemorySessionStore::new()), 0)?;
        let (mut on_disk, mut in_memory) = (Vec::new(), Vec::new());
        for _ in 0..BLOCKS {
            in_memory.extend(sequential(&memory, BLOCK_TURNS, SESSION_TURNS).await?);
            on_disk.extend(sequential(&sqlite, BLOCK_TURNS, SESSION_TURNS).await?);
        }
        BenchResult::Ok((Stats::of(in_memory), Stats::of(on_disk)))
    }
    .await;
    for suffix in ["", "-wal", "-shm"] {
        let mut file = path.clone().into_os_string();
        file.push(suffix);
        let _ = std::fs::remove_file(file);
    }
    let (in_memory, on_disk) = result?;
    in_memory.print(&format!(
        "(c) sequential, memory store (session of {SESSION_TURNS})"
    ));
    on_disk.print(&format!(
        "(c) sequential, SQLite store, temp file (session of {SESSION_TURNS})"
    ));
    let per_turn = on_disk.mean_us - in_memory.mean_us;
    println!(
        "    SQLite persistence: {per_turn:.1} µs per turn (mean), p50 {:.1} µs",
        on_disk.p50_us - in_memory.p50_us
    );
    Ok(json!({
        "memory": in_memory.json(),
        "sqlite": on_disk.json(),
        "persistence_per_turn_us": per_turn,
        "persistence_per_turn_p50_us": on_disk.p50_us - in_memory.p50_us,
    }))
}

#[derive(Debug, Clone, Copy)]
struct Stats {
    n: usize,
    mean_us: f64,
    p50_us: f64,
    p99_us: f64,
}

impl Stats {
    fn of(mut times: Vec<Duration>) -> Self {
        times.sort();
        let n = times.len();
        let total: Duration = times.iter().sum();
        let at = |q: f64| {
            let i = ((n as f64 * q).ceil() as usize).clamp(1, n.max(1)) - 1;
            times.get(i).map_or(0.0, micros)
        };
        Self {
            n,
            mean_us: if n == 0 {
                0.0
            } else {
                micros(&total) / n as f64
            },
            p50_us: at(0.50),
            p99_us: at(0.99),
        }
    }

    fn print(&self, label: &str) {
        println!(
            "{label:<58} n={:<6} mean {:>8.1} µs   p50 {:>8.1} µs   p99 {:>8.1} µs   per step {:>7.1} µs",
            self.n,
            self.mean_us,
            self.p50_us,
            self.p99_us,
            self.mean_us / STEPS_PER_TURN
        );
    }

    fn json(&self) -> Value {
        json!({ "n": self.n, "mean_us": self.mean_us, "p50_us": self.p50_us, "p99_us": self.p99_us })
    }
}

fn micros(d: &Duration) -> f64 {
    d.as_secs_f64() * 1e6
}
