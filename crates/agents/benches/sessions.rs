//! The SQLite session store's cost on the agent's path: saving a turn (done once or twice per
//! turn) and loading a session's turns (done when a conversation resumes).
//!
//! `cargo bench -p corral-agents --bench sessions`. Without `--bench` among its arguments it does
//! nothing, because `cargo test --all-targets` runs bench targets too.

use std::error::Error;
use std::time::{Duration, Instant};

use corral_agents::{
    SessionInfo, SessionStore, SqliteSessionStore, Step, StepDetails, StopReason, ToolResult, Turn,
    TurnStatus,
};
use corral_core::{ChatResponse, FinishReason, Message, ToolCall, Usage};
use serde_json::json;

const SAVES: usize = 2_000;
const LOADS: usize = 300;
const TURNS_PER_SESSION: u32 = 50;

fn main() -> Result<(), Box<dyn Error>> {
    if !std::env::args().any(|arg| arg == "--bench") {
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run())
}

async fn run() -> Result<(), Box<dyn Error>> {
    let dir = tempfile::tempdir()?;
    let store = SqliteSessionStore::open(&dir.path().join("sessions.db"))?;
    let bytes = serde_json::to_string(&turn("s", 0))?.len();
    println!(
        "a turn: 1 user message, 2 inference steps, 1 tool step with 2 calls ({bytes} bytes as JSON)"
    );

    // Saves: new turns in one session, as a long conversation makes them.
    let long = SessionInfo {
        id: "long".to_string(),
        name: "bench".to_string(),
        created_at: 1,
    };
    store.create_session(&long).await?;
    for seq in 0..20 {
        store.save_turn(&turn(&long.id, seq)).await?;
    }
    let mut times = Vec::with_capacity(SAVES);
    for seq in 20..20 + SAVES as u32 {
        let t = turn(&long.id, seq);
        let start = Instant::now();
        store.save_turn(&t).await?;
        times.push(start.elapsed());
    }
    report("save_turn (new turn)", &mut times);

    // Saving a turn again (a paused turn resumed): delete and insert in one transaction.
    let mut times = Vec::with_capacity(SAVES);
    for i in 0..SAVES as u32 {
        let t = turn(&long.id, i % 100);
        let start = Instant::now();
        store.save_turn(&t).await?;
        times.push(start.elapsed());
    }
    report("save_turn (replace)", &mut times);

    // Loads: a 50-turn session, among the long one's turns.
    let resumed = SessionInfo {
        id: "resumed".to_string(),
        name: "bench".to_string(),
        created_at: 2,
    };
    store.create_session(&resumed).await?;
    for seq in 0..TURNS_PER_SESSION {
        store.save_turn(&turn(&resumed.id, seq)).await?;
    }
    let mut times = Vec::with_capacity(LOADS);
    for _ in 0..LOADS {
        let start = Instant::now();
        let turns = store.turns(&resumed.id).await?;
        times.push(start.elapsed());
        if turns.len() != TURNS_PER_SESSION as usize {
            return Err(format!("loaded {} turns", turns.len()).into());
        }
    }
    report("turns (50-turn session)", &mut times);
    Ok(())
}

fn report(what: &str, times: &mut [Duration]) {
    times.sort();
    let total: Duration = times.iter().sum();
    let mean = total / u32::try_from(times.len()).unwrap_or(u32::MAX).max(1);
    let at = |q: f64| {
        let i = ((times.len() as f64 * q).ceil() as usize).clamp(1, times.len().max(1)) - 1;
        times.get(i).copied().unwrap_or_default()
    };
    println!(
        "{what:<26} n={:<5} mean {:>9.1} µs   p50 {:>9.1} µs   p99 {:>9.1} µs",
        times.len(),
        micros(mean),
        micros(at(0.50)),
        micros(at(0.99)),
    );
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn text(words: usize, seed: u32) -> String {
    const WORDS: [&str; 12] = [
        "install",
        "the",
        "package",
        "with",
        "cargo",
        "then",
        "configure",
        "corral.toml",
        "and",
        "restart",
        "server",
        "models",
    ];
    (0..words)
        .map(|i| WORDS[(i + seed as usize) % WORDS.len()])
        .collect::<Vec<_>>()
        .join(" ")
}

fn call(id: &str, query: &str) -> ToolCall {
    ToolCall {
        id: id.to_string(),
        name: "search_docs".to_string(),
        arguments: json!({ "query": query, "top_k": 5 }),
    }
}

/// About 2 KB of text: a question, a first inference that calls two tools, their results, and
/// the final answer.
fn turn(session_id: &str, seq: u32) -> Turn {
    let id = format!("turn_{session_id}_{seq:06}");
    let question = text(40, seq);
    let calls = vec![
        call("call_1", "install corral"),
        call("call_2", "configure models"),
    ];
    let results: Vec<ToolResult> = calls
        .iter()
        .enumerate()
        .map(|(i, c)| ToolResult {
            call_id: c.id.clone(),
            tool: c.name.clone(),
            content: text(80, seq + i as u32),
            error: None,
            metadata: serde_json::Map::new(),
        })
        .collect();
    let answer = text(70, seq + 7);
    let usage = Usage {
        prompt_tokens: 900,
        completion_tokens: 120,
    };
    let step = |n: usize, details: StepDetails| Step {
        id: format!("step_{id}_{n}"),
        details,
        started_at: 1_700_000_000_000 + i64::from(seq) * 1_000 + n as i64 * 100,
        completed_at: 1_700_000_000_000 + i64::from(seq) * 1_000 + n as i64 * 100 + 90,
    };
    let first = ChatResponse {
        text: String::new(),
        tool_calls: calls.clone(),
        finish_reason: FinishReason::ToolCalls,
        usage: Some(usage),
        tool_call_error: None,
    };
    let last = ChatResponse {
        text: answer.clone(),
        tool_calls: Vec::new(),
        finish_reason: FinishReason::Stop,
        usage: Some(usage),
        tool_call_error: None,
    };
    let mut messages = vec![first.to_message()];
    messages.extend(
        results
            .iter()
            .map(|r| Message::tool_result(r.call_id.clone(), r.content.clone())),
    );
    messages.push(last.to_message());
    Turn {
        session_id: session_id.to_string(),
        seq,
        input: vec![Message::user(question)],
        messages,
        steps: vec![
            step(0, StepDetails::Inference { response: first }),
            step(1, StepDetails::ToolExecution { calls, results }),
            step(2, StepDetails::Inference { response: last }),
        ],
        status: TurnStatus::Completed,
        stop_reason: Some(StopReason::EndOfTurn),
        answer,
        citations: Vec::new(),
        pending_tool_calls: Vec::new(),
        usage: Usage {
            prompt_tokens: 1_800,
            completion_tokens: 240,
        },
        started_at: 1_700_000_000_000 + i64::from(seq) * 1_000,
        completed_at: Some(1_700_000_000_000 + i64::from(seq) * 1_000 + 900),
        id,
    }
}
