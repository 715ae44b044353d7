//! Shields: checks on what goes into and comes out of a model, and on what enters a conversation
//! from outside it (retrieved passages, tool results).

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::ShieldError;
use crate::message::Message;

/// How serious a violation is. `Error` blocks (ends an agent's turn, drops retrieved content);
/// `Warn` is reported and the turn goes on; `Info` is only recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ViolationLevel {
    Info,
    Warn,
    Error,
}

impl ViolationLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Warn => "warn",
            Self::Error => "error",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Violation {
    pub level: ViolationLevel,
    /// What to tell the user instead of an answer.
    pub user_message: String,
    /// The shield's detail: categories, scores, spans.
    #[serde(default)]
    pub metadata: serde_json::Map<String, serde_json::Value>,
    /// The checked text with the offending parts replaced (PII redaction), for the caller to use
    /// instead of the original. `None` when the shield does not rewrite.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replacement: Option<String>,
}

impl Violation {
    pub fn new(level: ViolationLevel, user_message: impl Into<String>) -> Self {
        Self {
            level,
            user_message: user_message.into(),
            metadata: serde_json::Map::new(),
            replacement: None,
        }
    }

    /// Adds one metadata entry.
    pub fn with(mut self, key: &str, value: impl Into<serde_json::Value>) -> Self {
        self.metadata.insert(key.to_string(), value.into());
        self
    }

    pub fn with_replacement(mut self, text: impl Into<String>) -> Self {
        self.replacement = Some(text.into());
        self
    }
}

/// Where text checked with [`Shield::check_content`] came from. Instructions aimed at the model are
/// expected in a user's request; inside a retrieved document or a tool's result they are an
/// (indirect) injection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContentOrigin {
    /// A passage found in a vector store.
    Retrieved,
    /// What a tool returned.
    ToolResult,
}

impl ContentOrigin {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Retrieved => "retrieved",
            Self::ToolResult => "tool_result",
        }
    }
}

#[async_trait]
pub trait Shield: Send + Sync {
    /// Checks a conversation and judges its last message (the user's request for an input shield,
    /// the answer for an output shield); the earlier messages are its context. `None` when it
    /// passes. A shield that cannot reach a verdict returns an error, never `None`.
    async fn check(&self, messages: &[Message]) -> Result<Option<Violation>, ShieldError>;

    /// Checks text that enters the conversation from outside the user. The default judges it as
    /// if the user had written it.
    async fn check_content(
        &self,
        text: &str,
        origin: ContentOrigin,
    ) -> Result<Option<Violation>, ShieldError> {
        let _ = origin;
        self.check(&[Message::user(text)]).await
    }
}

#[async_trait]
impl<S: Shield + ?Sized> Shield for Arc<S> {
    async fn check(&self, messages: &[Message]) -> Result<Option<Violation>, ShieldError> {
        (**self).check(messages).await
    }

    async fn check_content(
        &self,
        text: &str,
        origin: ContentOrigin,
    ) -> Result<Option<Violation>, ShieldError> {
        (**self).check_content(text, origin).await
    }
}
