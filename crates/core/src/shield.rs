//! Shields: checks on what goes into and comes out of a model.

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::ShieldError;
use crate::message::Message;

/// How serious a violation is. `Error` ends an agent's turn; `Warn` is reported and the turn goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ViolationLevel {
    Info,
    Warn,
    Error,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Violation {
    pub level: ViolationLevel,
    /// What to tell the user instead of an answer.
    pub user_message: String,
    /// The shield's detail: categories, scores, spans.
    #[serde(default)]
    pub metadata: serde_json::Map<String, serde_json::Value>,
}

#[async_trait]
pub trait Shield: Send + Sync {
    /// `None` when the messages pass.
    async fn check(&self, messages: &[Message]) -> Result<Option<Violation>, ShieldError>;
}

#[async_trait]
impl<S: Shield + ?Sized> Shield for Arc<S> {
    async fn check(&self, messages: &[Message]) -> Result<Option<Violation>, ShieldError> {
        (**self).check(messages).await
    }
}
