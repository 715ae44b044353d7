//! An [`Agent`]: a chat model with instructions, tools, shields and (optionally) retrieval, that
//! runs turns of a session. Built in code with [`AgentBuilder`], or by the stack from config.

use std::collections::HashMap;
use std::sync::Arc;

use corral_core::{
    ChatModel, Message, ResponseFormat, Sampling, Shield, Tool, ToolChoice, ToolSpec,
};
use corral_tools::builtin::Retriever;
use corral_tools::builtin::knowledge::estimated_tokens;
use corral_tools::{ArgumentSchema, Limited, Limits};
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use crate::error::AgentError;
use crate::run::{self, TurnStream};
use crate::session::{MemorySessionStore, SessionInfo, SessionStore};
use crate::turn::{AgentEvent, ToolResult, Turn};

/// How an agent behaves, apart from what it is made of. Every field has a default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentSettings {
    /// Model calls allowed in one turn before it stops.
    #[serde(default = "ten")]
    pub max_infer_iters: u32,
    #[serde(default)]
    pub sampling: Sampling,
    /// Tokens per model call; `None` leaves it to the provider.
    #[serde(default)]
    pub max_tokens: Option<u32>,
    /// Applies to the first model call of a turn; later calls are `auto`, or a required tool
    /// would be called forever.
    #[serde(default)]
    pub tool_choice: ToolChoice,
    /// A JSON schema the final answer must match; the model is asked to repair it once.
    #[serde(default)]
    pub response_format: ResponseFormat,
    /// Tool calls that cannot be used (unparseable, unknown tool, bad arguments) fed back to the
    /// model before the turn gives up.
    #[serde(default = "three")]
    pub max_malformed_tool_calls: u32,
    /// The same tool with the same arguments this many times in one turn stops the turn.
    #[serde(default = "three")]
    pub max_repeated_tool_calls: u32,
    /// Time limit and output cap for every tool call.
    #[serde(default)]
    pub tool_limits: Limits,
    #[serde(default)]
    pub context: ContextSettings,
}

fn ten() -> u32 {
    10
}
fn three() -> u32 {
    3
}

impl Default for AgentSettings {
    fn default() -> Self {
        Self {
            max_infer_iters: ten(),
            sampling: Sampling::default(),
            max_tokens: None,
            tool_choice: ToolChoice::Auto,
            response_format: ResponseFormat::Text,
            max_malformed_tool_calls: three(),
            max_repeated_tool_calls: three(),
            tool_limits: Limits::default(),
            context: ContextSettings::default(),
        }
    }
}

/// How much conversation fits, and what happens to older turns when it no longer does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContextSettings {
    /// The model's context in tokens (estimated at four characters per token), including the
    /// answer's `max_tokens`.
    #[serde(default = "default_context_tokens")]
    pub max_tokens: usize,
    #[serde(default)]
    pub policy: ContextPolicy,
}

fn default_context_tokens() -> usize {
    8_192
}

impl Default for ContextSettings {
    fn default() -> Self {
        Self {
            max_tokens: default_context_tokens(),
            policy: ContextPolicy::default(),
        }
    }
}

/// What to do with the oldest turns when the history no longer fits. The current turn is never
/// cut: if it alone does not fit, the turn fails with [`AgentError::ContextTooLong`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContextPolicy {
    /// Leave them out.
    #[default]
    DropOldest,
    /// Replace them with a summary the model writes (one extra model call when it happens).
    Summarize,
}

pub(crate) struct AgentParts {
    pub model: Arc<dyn ChatModel>,
    pub instructions: Option<String>,
    pub tools: HashMap<String, Arc<dyn Tool>>,
    pub specs: Vec<ToolSpec>,
    /// The specs' estimated size in tokens, counted once: every request carries them.
    pub specs_tokens: usize,
    pub client_tools: Vec<String>,
    pub input_shields: Vec<(String, Arc<dyn Shield>)>,
    pub output_shields: Vec<(String, Arc<dyn Shield>)>,
    pub content_shields: Vec<(String, Arc<dyn Shield>)>,
    pub retriever: Option<Retriever>,
    pub settings: AgentSettings,
    pub output_schema: Option<ArgumentSchema>,
    pub sessions: Arc<dyn SessionStore>,
    /// One turn at a time per session: a turn's position and history depend on the one before.
    pub session_locks: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// A configured agent. Cheap to clone; clones share sessions.
#[derive(Clone)]
pub struct Agent {
    pub(crate) parts: Arc<AgentParts>,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field(
                "tools",
                &self.parts.specs.iter().map(|s| &s.name).collect::<Vec<_>>(),
            )
            .field("settings", &self.parts.settings)
            .finish_non_exhaustive()
    }
}

impl Agent {
    pub fn builder(model: Arc<dyn ChatModel>) -> AgentBuilder {
        AgentBuilder {
            model,
            instructions: None,
            tools: Vec::new(),
            client_tools: Vec::new(),
            input_shields: Vec::new(),
            output_shields: Vec::new(),
            content_shields: Vec::new(),
            retriever: None,
            settings: AgentSettings::default(),
            sessions: None,
        }
    }

    pub fn settings(&self) -> &AgentSettings {
        &self.parts.settings
    }

    /// The tools the model is offered, server-side and client-side.
    pub fn tool_specs(&self) -> &[ToolSpec] {
        &self.parts.specs
    }

    pub fn sessions(&self) -> &Arc<dyn SessionStore> {
        &self.parts.sessions
    }

    /// Starts a new session named `name`.
    pub async fn create_session(&self, name: &str) -> Result<SessionInfo, AgentError> {
        let session = SessionInfo::new(name);
        self.parts.sessions.create_session(&session).await?;
        Ok(session)
    }

    /// Runs a turn: streams its events, ending with [`AgentEvent::TurnCompleted`] or
    /// [`AgentEvent::TurnAwaitingInput`]. Dropping the stream cancels the turn (nothing of it is
    /// saved). A provider error ends the stream with that error, after the failed turn is saved.
    pub async fn turn(
        &self,
        session_id: &str,
        input: Vec<Message>,
    ) -> Result<TurnStream, AgentError> {
        if input.is_empty() {
            return Err(AgentError::InvalidRequest(
                "a turn needs at least one input message".into(),
            ));
        }
        run::start(self.parts.clone(), session_id, input).await
    }

    /// Resumes a turn that paused for client-side tool calls, with their results (one per
    /// pending call, matched by call id).
    pub async fn resume(
        &self,
        session_id: &str,
        turn_id: &str,
        results: Vec<ToolResult>,
    ) -> Result<TurnStream, AgentError> {
        run::resume(self.parts.clone(), session_id, turn_id, results).await
    }

    /// Runs a turn with one user message to its end and returns it.
    pub async fn ask(&self, session_id: &str, text: &str) -> Result<Turn, AgentError> {
        finish(self.turn(session_id, vec![Message::user(text)]).await?).await
    }
}

/// Reads a turn's events to the end and returns the turn (completed, or paused for input).
pub async fn finish(mut events: TurnStream) -> Result<Turn, AgentError> {
    let mut last = None;
    while let Some(event) = events.next().await {
        match event? {
            AgentEvent::TurnCompleted { turn } | AgentEvent::TurnAwaitingInput { turn } => {
                last = Some(*turn)
            }
            _ => {}
        }
    }
    last.ok_or_else(|| AgentError::InvalidRequest("the turn ended without a result".into()))
}

/// Builds an [`Agent`].
pub struct AgentBuilder {
    model: Arc<dyn ChatModel>,
    instructions: Option<String>,
    tools: Vec<Arc<dyn Tool>>,
    client_tools: Vec<ToolSpec>,
    input_shields: Vec<(String, Arc<dyn Shield>)>,
    output_shields: Vec<(String, Arc<dyn Shield>)>,
    content_shields: Vec<(String, Arc<dyn Shield>)>,
    retriever: Option<Retriever>,
    settings: AgentSettings,
    sessions: Option<Arc<dyn SessionStore>>,
}

impl std::fmt::Debug for AgentBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentBuilder")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl AgentBuilder {
    /// The system prompt.
    pub fn instructions(mut self, instructions: impl Into<String>) -> Self {
        self.instructions = Some(instructions.into());
        self
    }

    pub fn tool(mut self, tool: Arc<dyn Tool>) -> Self {
        self.tools.push(tool);
        self
    }

    pub fn tools(mut self, tools: impl IntoIterator<Item = Arc<dyn Tool>>) -> Self {
        self.tools.extend(tools);
        self
    }

    /// A tool the caller runs: a turn that calls it pauses until [`Agent::resume`].
    pub fn client_tool(mut self, spec: ToolSpec) -> Self {
        self.client_tools.push(spec);
        self
    }

    pub fn input_shield(mut self, name: impl Into<String>, shield: Arc<dyn Shield>) -> Self {
        self.input_shields.push((name.into(), shield));
        self
    }

    pub fn output_shield(mut self, name: impl Into<String>, shield: Arc<dyn Shield>) -> Self {
        self.output_shields.push((name.into(), shield));
        self
    }

    /// A shield on what enters the conversation from outside: retrieved passages and tool
    /// results. An error-level violation drops the passage or withholds the result; a warning
    /// marks it for the model as data, not instructions; a redaction replaces it.
    pub fn content_shield(mut self, name: impl Into<String>, shield: Arc<dyn Shield>) -> Self {
        self.content_shields.push((name.into(), shield));
        self
    }

    /// Searches these stores with each turn's input and puts the passages into the prompt.
    pub fn retriever(mut self, retriever: Retriever) -> Self {
        self.retriever = Some(retriever);
        self
    }

    pub fn settings(mut self, settings: AgentSettings) -> Self {
        self.settings = settings;
        self
    }

    /// Where sessions are kept (default: in memory).
    pub fn sessions(mut self, sessions: Arc<dyn SessionStore>) -> Self {
        self.sessions = Some(sessions);
        self
    }

    pub fn build(self) -> Result<Agent, AgentError> {
        let invalid = |message: String| Err(AgentError::InvalidRequest(message));
        if self.settings.max_infer_iters == 0 {
            return invalid("`max_infer_iters` must be at least 1".into());
        }
        if self.settings.max_repeated_tool_calls < 2 {
            return invalid("`max_repeated_tool_calls` must be at least 2".into());
        }
        self.settings
            .tool_limits
            .validate("agent tool limits")
            .map_err(AgentError::InvalidRequest)?;
        let mut tools = HashMap::new();
        let mut specs = Vec::new();
        for tool in self.tools {
            let spec = tool.spec().clone();
            if tools.contains_key(&spec.name) {
                return invalid(format!("two tools are named `{}`", spec.name));
            }
            let limited: Arc<dyn Tool> = Arc::new(Limited::new(tool, self.settings.tool_limits));
            tools.insert(spec.name.clone(), limited);
            specs.push(spec);
        }
        let mut client_tools = Vec::new();
        for spec in self.client_tools {
            if tools.contains_key(&spec.name) || client_tools.contains(&spec.name) {
                return invalid(format!("two tools are named `{}`", spec.name));
            }
            client_tools.push(spec.name.clone());
            specs.push(spec);
        }
        if let ToolChoice::Tool(name) = &self.settings.tool_choice
            && !specs.iter().any(|s| &s.name == name)
        {
            return invalid(format!(
                "`tool_choice` names `{name}`, which is not one of the agent's tools"
            ));
        }
        let output_schema = match &self.settings.response_format {
            ResponseFormat::Text => None,
            ResponseFormat::JsonSchema { name, schema, .. } => Some(
                ArgumentSchema::compile(name, schema)
                    .map_err(|e| AgentError::InvalidRequest(format!("response format: {e}")))?,
            ),
        };
        let specs_tokens = specs
            .iter()
            .map(|s| estimated_tokens(&s.description) + estimated_tokens(&s.parameters.to_string()))
            .sum();
        Ok(Agent {
            parts: Arc::new(AgentParts {
                model: self.model,
                instructions: self.instructions,
                tools,
                specs,
                specs_tokens,
                client_tools,
                input_shields: self.input_shields,
                output_shields: self.output_shields,
                content_shields: self.content_shields,
                retriever: self.retriever,
                settings: self.settings,
                output_schema,
                sessions: self
                    .sessions
                    .unwrap_or_else(|| Arc::new(MemorySessionStore::new())),
                session_locks: std::sync::Mutex::new(HashMap::new()),
            }),
        })
    }
}
