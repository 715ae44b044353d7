//! Errors, one type per capability, each able to say whether retrying or another provider can help.
//!
//! Providers classify what went wrong into an [`ErrorKind`]; the wrappers in [`crate::wrap`] decide from
//! that kind alone, so a new provider gets retries, timeouts and fallback right by classifying well.
//! The provider's raw detail (HTTP status, response body) travels in [`ProviderError`] for debugging;
//! it must never contain credentials.

use std::fmt;
use std::time::Duration;

use serde::Serialize;

/// Why a call failed, in the terms a caller decides on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// Temporary trouble on the provider's side: a 5xx, a dropped connection, an overloaded server.
    Transient,
    /// The provider asked us to slow down (HTTP 429).
    RateLimited,
    /// The call took longer than it was allowed to.
    Timeout,
    /// The prompt does not fit the model's context window.
    ContextLengthExceeded,
    /// The request itself is wrong (a bad parameter, an unknown model): sent again anywhere, it fails again.
    InvalidRequest,
    /// Credentials are missing, wrong, or not allowed to do this.
    Auth,
    /// Anything else that retrying will not fix: an unclassified 4xx, a broken model file, a corrupt store.
    Permanent,
}

impl ErrorKind {
    /// Whether sending the same request to the same provider again, after a wait, can succeed.
    pub fn is_retryable(self) -> bool {
        matches!(self, Self::Transient | Self::RateLimited | Self::Timeout)
    }

    /// Whether sending the same request to a *different* provider can succeed. Only a request that is
    /// wrong in itself fails everywhere; a context limit, credentials or an outage belong to one provider.
    pub fn other_provider_may_help(self) -> bool {
        !matches!(self, Self::InvalidRequest)
    }

    /// Classifies an HTTP status the way the OpenAI-compatible world uses them.
    pub fn from_http_status(status: u16) -> Self {
        match status {
            401 | 403 => Self::Auth,
            408 => Self::Timeout,
            429 => Self::RateLimited,
            400 | 404 | 405 | 409 | 413 | 415 | 422 => Self::InvalidRequest,
            500..=599 => Self::Transient,
            _ => Self::Permanent,
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Transient => "transient",
            Self::RateLimited => "rate limited",
            Self::Timeout => "timeout",
            Self::ContextLengthExceeded => "context length exceeded",
            Self::InvalidRequest => "invalid request",
            Self::Auth => "authentication",
            Self::Permanent => "permanent",
        })
    }
}

/// A failure reported by (or while talking to) a provider, with its raw detail kept for debugging.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderError {
    pub kind: ErrorKind,
    /// What went wrong, in one line, for a person.
    pub message: String,
    /// The provider id from the config, or the provider type when no id is known.
    pub provider: Option<String>,
    /// The HTTP status, for remote providers.
    pub status: Option<u16>,
    /// The provider's raw error body, as received. Never includes request headers or credentials.
    pub body: Option<String>,
    /// How long the provider asked us to wait before trying again (`Retry-After`).
    pub retry_after: Option<Duration>,
}

impl ProviderError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            provider: None,
            status: None,
            body: None,
            retry_after: None,
        }
    }

    pub fn with_provider(mut self, provider: impl Into<String>) -> Self {
        self.provider = Some(provider.into());
        self
    }

    /// Records an HTTP status and body; the kind is left as given (classify with
    /// [`ErrorKind::from_http_status`] when nothing better is known).
    pub fn with_http(mut self, status: u16, body: impl Into<String>) -> Self {
        self.status = Some(status);
        self.body = Some(body.into());
        self
    }

    pub fn with_retry_after(mut self, wait: Duration) -> Self {
        self.retry_after = Some(wait);
        self
    }
}

impl fmt::Display for ProviderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(provider) = &self.provider {
            write!(f, "{provider}: ")?;
        }
        f.write_str(&self.message)?;
        if let Some(status) = self.status {
            write!(f, " (HTTP {status})")?;
        }
        Ok(())
    }
}

impl std::error::Error for ProviderError {}

/// What the wrappers in [`crate::wrap`] need to know about any capability's error.
pub trait CapabilityError: std::error::Error + Send + Sync + Sized + 'static {
    fn kind(&self) -> ErrorKind;

    /// How long the provider asked us to wait, when it said.
    fn retry_after(&self) -> Option<Duration> {
        None
    }

    /// The error for a call that ran out of time.
    fn timed_out(after: Duration) -> Self;
}

/// Errors from a [`crate::ChatModel`].
#[derive(Debug, Clone, thiserror::Error)]
pub enum ChatError {
    #[error(transparent)]
    Provider(#[from] ProviderError),
    #[error("the prompt needs {needed} tokens but the model's context holds {limit}")]
    ContextLengthExceeded { needed: usize, limit: usize },
    /// The stream broke after some text had already been produced; the text is kept.
    #[error("the stream broke off after {} characters of text: {source}", partial_text.chars().count())]
    StreamInterrupted {
        partial_text: String,
        #[source]
        source: ProviderError,
    },
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("invalid request: {0}")]
    InvalidRequest(String),
}

impl CapabilityError for ChatError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::Provider(e) => e.kind,
            Self::ContextLengthExceeded { .. } => ErrorKind::ContextLengthExceeded,
            Self::StreamInterrupted { source, .. } => source.kind,
            Self::Timeout(_) => ErrorKind::Timeout,
            Self::InvalidRequest(_) => ErrorKind::InvalidRequest,
        }
    }
    fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Provider(e) | Self::StreamInterrupted { source: e, .. } => e.retry_after,
            _ => None,
        }
    }
    fn timed_out(after: Duration) -> Self {
        Self::Timeout(after)
    }
}

/// Errors from an [`crate::Embedder`].
#[derive(Debug, Clone, thiserror::Error)]
pub enum EmbedError {
    #[error(transparent)]
    Provider(#[from] ProviderError),
    #[error("input {index} has {tokens} tokens; the embedder takes at most {limit}")]
    InputTooLong {
        index: usize,
        tokens: usize,
        limit: usize,
    },
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("invalid request: {0}")]
    InvalidRequest(String),
}

impl CapabilityError for EmbedError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::Provider(e) => e.kind,
            Self::InputTooLong { .. } => ErrorKind::ContextLengthExceeded,
            Self::Timeout(_) => ErrorKind::Timeout,
            Self::InvalidRequest(_) => ErrorKind::InvalidRequest,
        }
    }
    fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Provider(e) => e.retry_after,
            _ => None,
        }
    }
    fn timed_out(after: Duration) -> Self {
        Self::Timeout(after)
    }
}

/// Errors from a [`crate::VectorStore`].
#[derive(Debug, Clone, thiserror::Error)]
pub enum VectorStoreError {
    #[error(transparent)]
    Provider(#[from] ProviderError),
    #[error("embedding has {got} dimensions; this store holds {expected}-dimensional vectors")]
    DimensionMismatch { expected: usize, got: usize },
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("invalid request: {0}")]
    InvalidRequest(String),
}

impl CapabilityError for VectorStoreError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::Provider(e) => e.kind,
            Self::DimensionMismatch { .. } | Self::InvalidRequest(_) => ErrorKind::InvalidRequest,
            Self::Timeout(_) => ErrorKind::Timeout,
        }
    }
    fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Provider(e) => e.retry_after,
            _ => None,
        }
    }
    fn timed_out(after: Duration) -> Self {
        Self::Timeout(after)
    }
}

/// Errors from a [`crate::Tool`]. The agent loop feeds these back to the model as the tool's result,
/// so the message is written for the model to read and correct its call.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ToolError {
    /// The arguments do not match the tool's schema: `field` names the offending argument when known.
    #[error("invalid arguments{}: {message}", field.as_deref().map(|f| format!(" at `{f}`")).unwrap_or_default())]
    InvalidArguments {
        field: Option<String>,
        message: String,
    },
    /// The tool ran and failed.
    #[error("{0}")]
    Failed(String),
    #[error(transparent)]
    Provider(#[from] ProviderError),
    #[error("the tool did not finish within {0:?}")]
    Timeout(Duration),
}

impl CapabilityError for ToolError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::InvalidArguments { .. } => ErrorKind::InvalidRequest,
            Self::Failed(_) => ErrorKind::Permanent,
            Self::Provider(e) => e.kind,
            Self::Timeout(_) => ErrorKind::Timeout,
        }
    }
    fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Provider(e) => e.retry_after,
            _ => None,
        }
    }
    fn timed_out(after: Duration) -> Self {
        Self::Timeout(after)
    }
}

/// Errors from a [`crate::Shield`]. A shield that cannot reach a verdict says so; it never answers "safe"
/// instead.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ShieldError {
    #[error(transparent)]
    Provider(#[from] ProviderError),
    #[error("the shield's verdict could not be read: {0:?}")]
    UnparseableVerdict(String),
    #[error("no verdict within {0:?}")]
    Timeout(Duration),
    #[error("invalid request: {0}")]
    InvalidRequest(String),
}

impl CapabilityError for ShieldError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::Provider(e) => e.kind,
            Self::UnparseableVerdict(_) => ErrorKind::Permanent,
            Self::Timeout(_) => ErrorKind::Timeout,
            Self::InvalidRequest(_) => ErrorKind::InvalidRequest,
        }
    }
    fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Provider(e) => e.retry_after,
            _ => None,
        }
    }
    fn timed_out(after: Duration) -> Self {
        Self::Timeout(after)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_statuses_classify_as_openai_compatible_servers_use_them() {
        assert_eq!(ErrorKind::from_http_status(429), ErrorKind::RateLimited);
        assert_eq!(ErrorKind::from_http_status(503), ErrorKind::Transient);
        assert_eq!(ErrorKind::from_http_status(401), ErrorKind::Auth);
        assert_eq!(ErrorKind::from_http_status(400), ErrorKind::InvalidRequest);
        assert_eq!(ErrorKind::from_http_status(418), ErrorKind::Permanent);
        assert!(ErrorKind::from_http_status(502).is_retryable());
        assert!(!ErrorKind::from_http_status(401).is_retryable());
        assert!(ErrorKind::Auth.other_provider_may_help());
        assert!(!ErrorKind::InvalidRequest.other_provider_may_help());
    }

    #[test]
    fn provider_error_shows_provider_and_status_but_not_body() {
        let e = ProviderError::new(ErrorKind::Transient, "upstream overloaded")
            .with_provider("together")
            .with_http(503, r#"{"error":"busy"}"#);
        assert_eq!(e.to_string(), "together: upstream overloaded (HTTP 503)");
        assert_eq!(e.body.as_deref(), Some(r#"{"error":"busy"}"#));
    }

    #[test]
    fn errors_report_their_kind_and_retry_after() {
        let limited = ChatError::from(
            ProviderError::new(ErrorKind::RateLimited, "slow down")
                .with_retry_after(Duration::from_secs(2)),
        );
        assert_eq!(limited.kind(), ErrorKind::RateLimited);
        assert_eq!(limited.retry_after(), Some(Duration::from_secs(2)));
        let long = EmbedError::InputTooLong {
            index: 3,
            tokens: 600,
            limit: 512,
        };
        assert_eq!(long.kind(), ErrorKind::ContextLengthExceeded);
        assert_eq!(
            long.to_string(),
            "input 3 has 600 tokens; the embedder takes at most 512"
        );
        let bad = ToolError::InvalidArguments {
            field: Some("city".into()),
            message: "expected a string".into(),
        };
        assert_eq!(
            bad.to_string(),
            "invalid arguments at `city`: expected a string"
        );
    }
}
