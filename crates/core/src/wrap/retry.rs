//! Retries with exponential backoff and jitter, on retryable errors only.

use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;

use super::started;
use crate::chat::{ChatModel, ChatRequest, ChatResponse, ChatStream, GenerateRequest};
use crate::embed::{Embedder, Embedding};
use crate::error::{CapabilityError, ChatError, EmbedError};

/// When and how long to wait before trying again.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included; 1 means never retry.
    pub max_attempts: u32,
    /// The wait before the first retry; each later wait doubles, up to `max_backoff`.
    pub initial_backoff: Duration,
    /// The longest wait. A provider that asks (with `Retry-After`) for a longer one is not waited
    /// for: its error goes to the caller, who may fall back to another provider.
    pub max_backoff: Duration,
    /// Spread each wait randomly over its upper half, so that many clients do not retry in step.
    pub jitter: bool,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            jitter: true,
        }
    }
}

impl RetryPolicy {
    /// The wait after failed attempt number `attempt` (1-based), when the provider named none.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(31);
        let base = self
            .initial_backoff
            .saturating_mul(1u32 << doublings)
            .min(self.max_backoff);
        if self.jitter {
            base.mul_f64(0.5 + fastrand::f64() * 0.5)
        } else {
            base
        }
    }

    /// Runs `op` until it succeeds, fails with an error that retrying cannot fix, or has been tried
    /// `max_attempts` times; returns the last result.
    pub async fn run<T, E, F, Fut>(&self, mut op: F) -> Result<T, E>
    where
        E: CapabilityError,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let mut attempt = 1;
        loop {
            let error = match op().await {
                Ok(value) => return Ok(value),
                Err(e) => e,
            };
            if attempt >= self.max_attempts || !error.kind().is_retryable() {
                return Err(error);
            }
            let wait = match error.retry_after() {
                Some(asked) if asked > self.max_backoff => {
                    tracing::warn!(?asked, max = ?self.max_backoff, %error, "provider asked for a longer wait than allowed; not retrying");
                    return Err(error);
                }
                Some(asked) => asked,
                None => self.backoff(attempt),
            };
            tracing::warn!(attempt, ?wait, %error, "call failed; retrying");
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }
}

/// A provider whose calls are retried according to a [`RetryPolicy`].
#[derive(Debug, Clone)]
pub struct Retrying<M> {
    inner: M,
    policy: RetryPolicy,
}

impl<M> Retrying<M> {
    pub fn new(inner: M, policy: RetryPolicy) -> Self {
        Self { inner, policy }
    }

    pub fn inner(&self) -> &M {
        &self.inner
    }
}

#[async_trait]
impl<M: ChatModel> ChatModel for Retrying<M> {
    async fn stream(&self, request: &ChatRequest) -> Result<ChatStream, ChatError> {
        self.policy
            .run(|| async { started(self.inner.stream(request).await?).await })
            .await
    }

    async fn complete(&self, request: &ChatRequest) -> Result<ChatResponse, ChatError> {
        self.policy.run(|| self.inner.complete(request)).await
    }

    async fn generate(&self, request: &GenerateRequest) -> Result<ChatStream, ChatError> {
        self.policy
            .run(|| async { started(self.inner.generate(request).await?).await })
            .await
    }
}

#[async_trait]
impl<E: Embedder> Embedder for Retrying<E> {
    fn dimension(&self) -> usize {
        self.inner.dimension()
    }
    fn max_input_tokens(&self) -> usize {
        self.inner.max_input_tokens()
    }
    fn token_counter(&self) -> Option<std::sync::Arc<dyn crate::embed::TokenCounter>> {
        self.inner.token_counter()
    }
    async fn embed(&self, inputs: &[String]) -> Result<Vec<Embedding>, EmbedError> {
        self.policy.run(|| self.inner.embed(inputs)).await
    }
}
