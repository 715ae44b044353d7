//! What a turn is made of, as it is streamed, stored and resumed: the turn, its steps, and the
//! events a consumer renders a live trace from.

use corral_core::{ChatResponse, Citation, Message, ToolCall, ToolCallDelta, Usage, Violation};
use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch.
pub type Millis = i64;

pub(crate) fn now_millis() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A new random id with a readable prefix (`turn_…`, `step_…`).
pub(crate) fn new_id(prefix: &str) -> String {
    format!(
        "{prefix}_{:016x}{:016x}",
        fastrand::u64(..),
        fastrand::u64(..)
    )
}

/// One exchange: the caller's input and everything the agent did to answer it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Turn {
    pub id: String,
    pub session_id: String,
    /// The turn's position in its session, from 0.
    pub seq: u32,
    /// What the caller sent (usually one user message).
    pub input: Vec<Message>,
    /// The messages this turn added to the conversation after its input: assistant messages with
    /// tool calls, tool results, and the final answer. The next turn's history is the inputs and
    /// these, turn after turn.
    pub messages: Vec<Message>,
    pub steps: Vec<Step>,
    pub status: TurnStatus,
    /// Why the turn ended (when it has).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_reason: Option<StopReason>,
    /// The answer shown to the user (a shield's message when one blocked it).
    #[serde(default)]
    pub answer: String,
    /// The passages the answer can cite as `[n]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub citations: Vec<Citation>,
    /// Tool calls the caller must run and answer before the turn can go on (client-side tools).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending_tool_calls: Vec<ToolCall>,
    #[serde(default)]
    pub usage: Usage,
    pub started_at: Millis,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<Millis>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TurnStatus {
    /// Still running (only ever seen in events, or in a store after a crash mid-turn).
    InProgress,
    /// Waiting for the caller's results for [`Turn::pending_tool_calls`].
    AwaitingInput,
    Completed,
    /// Ended by an error (the error is the last step's).
    Failed,
}

/// Why a turn ended.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum StopReason {
    /// The model gave its answer.
    EndOfTurn,
    /// The model's answer hit its token limit and may be cut short.
    Length,
    /// `max_infer_iters` inference calls were made without a final answer.
    MaxIterations { limit: u32 },
    /// The model called the same tool with the same arguments too many times in a row of turns'
    /// steps; the loop was stopped instead of spinning to the limit.
    RepeatedToolCall { tool: String, times: u32 },
    /// The model's tool calls could not be used, again and again.
    MalformedToolCalls { attempts: u32 },
    /// A shield found an error-level violation.
    Shield { shield: String },
    /// The answer did not match the response format even after one repair.
    InvalidOutput { problem: String },
    /// A provider failed.
    Error { message: String },
}

/// One thing the agent did within a turn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    pub id: String,
    #[serde(flatten)]
    pub details: StepDetails,
    pub started_at: Millis,
    pub completed_at: Millis,
}

impl Step {
    pub fn kind(&self) -> StepKind {
        self.details.kind()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepKind {
    Inference,
    ToolExecution,
    ShieldCall,
    Retrieval,
}

impl StepKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Inference => "inference",
            Self::ToolExecution => "tool_execution",
            Self::ShieldCall => "shield_call",
            Self::Retrieval => "retrieval",
        }
    }
}

/// What a step did and found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StepDetails {
    Inference {
        response: ChatResponse,
    },
    ToolExecution {
        calls: Vec<ToolCall>,
        results: Vec<ToolResult>,
    },
    ShieldCall {
        shield: String,
        target: ShieldTarget,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        violation: Option<Violation>,
        /// What was checked when it is outside text: a passage (`[2] guide.md`) or a tool's
        /// result (`web_search (call_1)`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        subject: Option<String>,
        /// What the agent did about the violation.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        action: Option<ShieldAction>,
    },
    Retrieval {
        query: String,
        /// The numbered passages as the model was given them with the turn's input.
        context: String,
        citations: Vec<Citation>,
        /// Passages found but left out of the context by its token budget.
        left_out: usize,
    },
}

impl StepDetails {
    pub fn kind(&self) -> StepKind {
        match self {
            Self::Inference { .. } => StepKind::Inference,
            Self::ToolExecution { .. } => StepKind::ToolExecution,
            Self::ShieldCall { .. } => StepKind::ShieldCall,
            Self::Retrieval { .. } => StepKind::Retrieval,
        }
    }
}

/// What a shield looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShieldTarget {
    /// The turn's input (its last user message is judged).
    Input,
    /// The answer.
    Output,
    /// A passage retrieved for the input. Only flagged passages get a step.
    Retrieved,
    /// A tool's result. Only flagged results get a step.
    ToolResult,
}

/// What the agent did about a violation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShieldAction {
    /// An error on the input or the answer: the turn ended with the shield's message.
    Blocked,
    /// The shield's redacted text was used instead.
    Redacted,
    /// An error on a passage: it was left out of the context.
    Dropped,
    /// An error on a tool result: the model was told it was withheld, not what it said.
    Withheld,
    /// A warning on outside text: it was given to the model with a note not to follow
    /// instructions in it.
    Marked,
    /// Nothing changed; the violation is recorded (and a warning is sent as an event).
    Reported,
}

/// The outcome of one tool call, as the model is told it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolResult {
    pub call_id: String,
    pub tool: String,
    /// What the model reads: the tool's output, or the error.
    pub content: String,
    /// Set when the call failed (the content then explains it to the model).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub metadata: serde_json::Map<String, serde_json::Value>,
}

impl ToolResult {
    /// A result the caller supplies for a client-side tool call.
    pub fn client(call_id: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            call_id: call_id.into(),
            tool: String::new(),
            content: content.into(),
            error: None,
            metadata: serde_json::Map::new(),
        }
    }
}

/// A live event of a turn. In order: `TurnStarted`, then for each step `StepStarted`,
/// `StepProgress`…, `StepCompleted`, and last `TurnCompleted` or `TurnAwaitingInput`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum AgentEvent {
    TurnStarted {
        session_id: String,
        turn_id: String,
    },
    StepStarted {
        step_id: String,
        kind: StepKind,
    },
    StepProgress {
        step_id: String,
        #[serde(flatten)]
        delta: StepDelta,
    },
    StepCompleted {
        step: Step,
    },
    /// The turn paused: run these client-side tool calls and resume with their results.
    TurnAwaitingInput {
        turn: Box<Turn>,
    },
    TurnCompleted {
        turn: Box<Turn>,
    },
}

/// A piece of a step's progress.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "delta", rename_all = "snake_case")]
pub enum StepDelta {
    /// Answer text as the model streams it.
    Text { text: String },
    /// A fragment of a tool call as the model streams it.
    ToolCall(ToolCallDelta),
    /// A tool call is about to run.
    ToolCallStarted { call: ToolCall },
    /// A tool call has finished.
    ToolCallFinished { result: ToolResult },
    /// A shield reported a warning; the turn goes on.
    ShieldWarning {
        shield: String,
        violation: Violation,
    },
}
