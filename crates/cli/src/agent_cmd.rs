//! `corral ask` (ingest, retrieve, answer with numbered citations) and `corral chat` (an
//! interactive or one-shot conversation with an agent, kept in a session).

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Args;
use corral_agents::{
    Agent, AgentEvent, MemorySessionStore, SessionStore, SqliteSessionStore, StepDelta,
    StepDetails, StopReason, Turn, TurnStatus, TurnStream,
};
use corral_core::{Citation, Message};
use corral_stack::{AgentOverrides, ModelKind, Stack};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};

use crate::memory_cmd::{ingest_into, shown, stack, store_id};
use crate::model_args::ModelArgs;

#[derive(Debug, Args)]
pub struct AskArgs {
    /// The question.
    question: String,
    /// Files or directories to ingest (incrementally) into the store before answering.
    #[arg(long, num_args = 1..)]
    docs: Vec<PathBuf>,
    /// The vector store (an id from the config); default: the agent's first, else the only one.
    #[arg(long)]
    store: Option<String>,
    /// The chat model (an id from the config); default: the agent's.
    #[arg(short, long)]
    model: Option<String>,
    /// The most tokens the model may write per call (default: the agent's `max_tokens`).
    #[arg(long)]
    max_tokens: Option<u32>,
    /// Print the answer and its citations as one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct ChatArgs {
    /// Run one turn with this message and print the answer; without it, chat interactively.
    message: Option<String>,
    /// A named agent (`[agents.<name>]` in the config); default: `[agent]`.
    #[arg(long, conflicts_with = "model")]
    agent: Option<String>,
    /// A chat model: an id from the config, a `.gguf` path, or with --base-url the endpoint's name.
    #[arg(short, long)]
    model: Option<String>,
    /// Use an OpenAI-compatible endpoint directly, e.g. http://127.0.0.1:8080/v1 (needs --model).
    #[arg(long, value_name = "URL", requires = "model")]
    base_url: Option<String>,
    /// With --base-url: the environment variable holding the API key.
    #[arg(long, value_name = "VAR", requires = "base_url")]
    api_key_env: Option<String>,
    /// Continue this session (ids are printed when a session starts; `corral chat --sessions`
    /// lists them).
    #[arg(long)]
    session: Option<String>,
    /// List the saved sessions and exit.
    #[arg(long, conflicts_with_all = ["message", "session"])]
    sessions: bool,
    /// Tool groups to use instead of the agent's (comma-separated ids from the config).
    #[arg(long, value_delimiter = ',')]
    tools: Option<Vec<String>>,
    /// The most tokens the model may write per call (default: the agent's `max_tokens`).
    #[arg(long)]
    max_tokens: Option<u32>,
    /// Print every event as a JSON line instead of the conversation.
    #[arg(long)]
    events: bool,
}

/// Where `corral chat` keeps sessions: next to the stores.
fn sessions_path() -> PathBuf {
    corral_memory::embedded::default_data_dir().join("sessions.sqlite")
}

pub async fn ask(args: AskArgs, config: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let stack = stack(config)?;
    let store = store_id(&stack, args.store)?;
    if !args.docs.is_empty() {
        let report = ingest_into(&stack, &store, &args.docs, false, 2).await?;
        eprintln!(
            "{store}: {} added, {} replaced, {} unchanged ({} chunks){}",
            report.added,
            report.replaced,
            report.unchanged,
            report.chunks,
            if report.failed.is_empty() {
                String::new()
            } else {
                format!(", {} failed", report.failed.len())
            }
        );
        for e in &report.failed {
            eprintln!(
                "  failed: {}: {}",
                shown(&e.path.to_string_lossy()),
                e.problem
            );
        }
    }
    let overrides = AgentOverrides {
        model: args.model,
        vector_stores: Some(vec![store]),
        tool_groups: None,
        max_tokens: args.max_tokens,
    };
    let agent = stack
        .agent(None, &overrides, Arc::new(MemorySessionStore::new()))
        .await?;
    let session = agent.create_session("ask").await?;
    let events = agent
        .turn(&session.id, vec![Message::user(&args.question)])
        .await?;
    let turn = if args.json {
        let turn = corral_agents::finish(events).await?;
        outln!("{}", serde_json::to_string_pretty(&answer_json(&turn))?)?;
        turn
    } else {
        let turn = render(events, &mut Renderer::new(false)).await?;
        print_sources(&turn.citations)?;
        turn
    };
    Ok(exit_code(&turn))
}

fn answer_json(turn: &Turn) -> serde_json::Value {
    serde_json::json!({
        "answer": turn.answer,
        "citations": turn.citations,
        "stop_reason": turn.stop_reason,
        "usage": turn.usage,
        "session_id": turn.session_id,
        "turn_id": turn.id,
    })
}

/// A turn that ended on an error-level shield or without an answer is not a success.
fn exit_code(turn: &Turn) -> ExitCode {
    match &turn.stop_reason {
        Some(StopReason::EndOfTurn | StopReason::Length) => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    }
}

fn print_sources(citations: &[Citation]) -> std::io::Result<()> {
    if citations.is_empty() {
        return Ok(());
    }
    outln!("\nSources:")?;
    for c in citations {
        let mut label = c.clone();
        label.source = shown(&c.source);
        outln!("  [{}] {} (score {:.3})", c.index, label.label(), c.score)?;
    }
    Ok(())
}

/// Prints a turn as it happens: text as it streams, tool calls and results one line each, and a
/// spinner on stderr while nothing is coming.
struct Renderer {
    spinner: Option<ProgressBar>,
    events_json: bool,
    text_open: bool,
}

impl Renderer {
    fn new(events_json: bool) -> Self {
        Self {
            spinner: None,
            events_json,
            text_open: false,
        }
    }

    fn wait(&mut self, what: &str) {
        if self.events_json || !std::io::stderr().is_terminal() {
            return;
        }
        let spinner = self.spinner.get_or_insert_with(|| {
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template("{spinner} {msg} {elapsed}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.enable_steady_tick(std::time::Duration::from_millis(120));
            bar
        });
        spinner.set_message(what.to_string());
    }

    fn stop_waiting(&mut self) {
        if let Some(spinner) = self.spinner.take() {
            spinner.finish_and_clear();
        }
    }

    fn event(&mut self, event: &AgentEvent) -> anyhow::Result<()> {
        if self.events_json {
            outln!("{}", serde_json::to_string(event)?)?;
            return Ok(());
        }
        match event {
            AgentEvent::StepStarted { kind, .. } => {
                let what = match kind {
                    corral_agents::StepKind::Inference => "thinking…",
                    corral_agents::StepKind::ToolExecution => "running tools…",
                    corral_agents::StepKind::ShieldCall => "checking…",
                    corral_agents::StepKind::Retrieval => "searching the documents…",
                };
                self.wait(what);
            }
            AgentEvent::StepProgress { delta, .. } => match delta {
                StepDelta::Text { text } => {
                    self.stop_waiting();
                    let mut out = std::io::stdout().lock();
                    out.write_all(text.as_bytes())?;
                    out.flush()?;
                    self.text_open = true;
                }
                StepDelta::ToolCallStarted { call } => {
                    self.stop_waiting();
                    self.end_text()?;
                    outln!(
                        "  → {}({})",
                        call.name,
                        one_line(&call.arguments.to_string(), 100)
                    )?;
                }
                StepDelta::ToolCallFinished { result } => {
                    self.stop_waiting();
                    let mark = if result.error.is_some() { "✗" } else { "←" };
                    outln!("  {mark} {}", one_line(&result.content, 100))?;
                }
                StepDelta::ShieldWarning { shield, violation } => {
                    self.stop_waiting();
                    eprintln!("warning ({shield}): {}", violation.user_message);
                }
                StepDelta::ToolCall(_) => {}
            },
            AgentEvent::StepCompleted { step } => {
                if let StepDetails::Inference { response } = &step.details
                    && !response.tool_calls.is_empty()
                {
                    // Text before a tool call is the model thinking aloud: end its line.
                    self.end_text()?;
                }
            }
            AgentEvent::TurnCompleted { turn } => {
                self.stop_waiting();
                let streamed = self.text_open;
                self.end_text()?;
                // An answer that was not streamed (a shield's message, a stop reason) is printed.
                let last_streamed = turn.steps.iter().rev().find_map(|s| match &s.details {
                    StepDetails::Inference { response } => Some(response.text.clone()),
                    _ => None,
                });
                if !streamed || last_streamed.as_deref() != Some(turn.answer.as_str()) {
                    outln!("{}", turn.answer)?;
                }
            }
            AgentEvent::TurnAwaitingInput { .. } | AgentEvent::TurnStarted { .. } => {}
        }
        Ok(())
    }

    fn end_text(&mut self) -> std::io::Result<()> {
        if self.text_open {
            self.text_open = false;
            outln!()?;
        }
        Ok(())
    }
}

fn one_line(text: &str, max: usize) -> String {
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match flat.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &flat[..cut]),
        None => flat,
    }
}

async fn render(mut events: TurnStream, renderer: &mut Renderer) -> anyhow::Result<Turn> {
    let mut last = None;
    while let Some(event) = events.next().await {
        let event = match event {
            Ok(event) => event,
            Err(error) => {
                renderer.stop_waiting();
                return Err(error.into());
            }
        };
        renderer.event(&event)?;
        if let AgentEvent::TurnCompleted { turn } | AgentEvent::TurnAwaitingInput { turn } = event {
            last = Some(*turn);
        }
    }
    last.context("the turn ended without a result")
}

pub async fn chat(args: ChatArgs, config: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let sessions: Arc<dyn SessionStore> = Arc::new(
        SqliteSessionStore::open(&sessions_path())
            .with_context(|| format!("the session store {}", sessions_path().display()))?,
    );
    if args.sessions {
        for session in sessions.list_sessions().await? {
            let turns = sessions.turns(&session.id).await?;
            let first = turns
                .first()
                .and_then(|t| t.input.first())
                .map(|m| one_line(&m.text(), 60))
                .unwrap_or_default();
            outln!(
                "{}  {}  {} turns  {}",
                session.id,
                session.name,
                turns.len(),
                first
            )?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let stack: Stack = match (&args.model, &args.base_url) {
        (Some(model), _) => ModelArgs {
            model: model.clone(),
            base_url: args.base_url.clone(),
            api_key_env: args.api_key_env.clone(),
        }
        .stack(config, ModelKind::Chat)?,
        (None, _) => stack(config)?,
    };
    let overrides = AgentOverrides {
        model: args.model.clone(),
        vector_stores: None,
        tool_groups: args.tools.clone(),
        max_tokens: args.max_tokens,
    };
    let agent = stack
        .agent(args.agent.as_deref(), &overrides, sessions.clone())
        .await?;
    let session_id = match &args.session {
        Some(id) => {
            if sessions.session(id).await?.is_none() {
                bail!("no session `{id}` in {}", sessions_path().display());
            }
            id.clone()
        }
        None => {
            let name = args.agent.clone().unwrap_or_else(|| "chat".into());
            let session = agent.create_session(&name).await?;
            if !args.events {
                eprintln!("session {}", session.id);
            }
            session.id
        }
    };
    let mut renderer = Renderer::new(args.events);
    if let Some(message) = &args.message {
        let turn = one_turn(&agent, &session_id, message, &mut renderer).await?;
        return Ok(exit_code(&turn));
    }
    let interactive = std::io::stdin().is_terminal();
    if interactive {
        eprintln!("Type a message; an empty line or /exit ends the chat.");
    }
    let stdin = std::io::stdin();
    let mut line = String::new();
    loop {
        if interactive {
            eprint!("you> ");
            std::io::stderr().flush()?;
        }
        line.clear();
        if stdin.lock().read_line(&mut line)? == 0 {
            break;
        }
        let message = line.trim();
        if message.is_empty() && interactive || message == "/exit" {
            break;
        }
        if message.is_empty() {
            continue;
        }
        if let Err(error) = one_turn(&agent, &session_id, message, &mut renderer).await {
            // One failed turn does not end the conversation.
            eprintln!("error: {error:#}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn one_turn(
    agent: &Agent,
    session_id: &str,
    message: &str,
    renderer: &mut Renderer,
) -> anyhow::Result<Turn> {
    let events = agent.turn(session_id, vec![Message::user(message)]).await?;
    let turn = render(events, renderer).await?;
    if turn.status == TurnStatus::AwaitingInput {
        bail!("the agent called a client-side tool, which `corral chat` cannot run");
    }
    if !renderer.events_json {
        print_sources(&turn.citations)?;
    }
    Ok(turn)
}
