//! The agent loop (issue #6): an [`Agent`] runs turns of a session — input shields, retrieval,
//! model calls, tool calls (concurrently, server- or client-side), output shields — streaming an
//! [`AgentEvent`] for every step, and keeps its sessions in a [`SessionStore`].

mod agent;
mod error;
mod run;
pub mod session;
mod sqlite;
pub mod turn;

pub use agent::{Agent, AgentBuilder, AgentSettings, ContextPolicy, ContextSettings, finish};
pub use error::AgentError;
pub use run::TurnStream;
pub use session::{
    Conversation, MemorySessionStore, SessionError, SessionInfo, SessionStore, history,
};
pub use sqlite::SqliteSessionStore;
pub use turn::{
    AgentEvent, ShieldAction, ShieldTarget, Step, StepDelta, StepDetails, StepKind, StopReason,
    ToolResult, Turn, TurnStatus,
};
