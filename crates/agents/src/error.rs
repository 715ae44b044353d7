//! Errors from running an agent.

use corral_core::{ChatError, ShieldError};

use crate::session::SessionError;

#[derive(Debug, Clone, thiserror::Error)]
pub enum AgentError {
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error(transparent)]
    Session(#[from] SessionError),
    #[error("model call failed: {0}")]
    Chat(#[from] ChatError),
    #[error("shield `{shield}` could not give a verdict: {source}")]
    Shield {
        shield: String,
        #[source]
        source: ShieldError,
    },
    #[error(
        "this turn needs about {needed} tokens of context but the model has {limit}; shorten the input"
    )]
    ContextTooLong { needed: usize, limit: usize },
    #[error("retrieval failed: {0}")]
    Retrieval(String),
}
