//! Trying providers in order.

use std::future::Future;

use async_trait::async_trait;

use super::started;
use crate::chat::{ChatModel, ChatRequest, ChatResponse, ChatStream, GenerateRequest};
use crate::embed::{Embedder, Embedding};
use crate::error::{CapabilityError, ChatError, EmbedError};

/// A primary provider and the ones to try, in order, when it fails in a way another provider may
/// not (an outage, a rate limit, a timeout, credentials, a context limit). A request that is wrong in
/// itself is not sent on: it would fail everywhere.
#[derive(Debug, Clone)]
pub struct Fallback<M> {
    primary: M,
    fallbacks: Vec<M>,
}

impl<M> Fallback<M> {
    pub fn new(primary: M, fallbacks: impl IntoIterator<Item = M>) -> Self {
        Self {
            primary,
            fallbacks: fallbacks.into_iter().collect(),
        }
    }

    fn chain(&self) -> impl Iterator<Item = &M> {
        std::iter::once(&self.primary).chain(&self.fallbacks)
    }

    async fn first_success<'a, T, E, F, Fut>(&'a self, mut call: F) -> Result<T, E>
    where
        E: CapabilityError,
        F: FnMut(&'a M) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let mut result = call(&self.primary).await;
        for (position, next) in self.fallbacks.iter().enumerate() {
            match &result {
                Err(error) if error.kind().other_provider_may_help() => {
                    tracing::warn!(position, %error, "provider failed; falling back to the next");
                    result = call(next).await;
                }
                _ => break,
            }
        }
        result
    }
}

#[async_trait]
impl<M: ChatModel> ChatModel for Fallback<M> {
    async fn stream(&self, request: &ChatRequest) -> Result<ChatStream, ChatError> {
        self.first_success(|m| async move { started(m.stream(request).await?).await })
            .await
    }

    async fn complete(&self, request: &ChatRequest) -> Result<ChatResponse, ChatError> {
        self.first_success(|m| m.complete(request)).await
    }

    async fn generate(&self, request: &GenerateRequest) -> Result<ChatStream, ChatError> {
        self.first_success(|m| async move { started(m.generate(request).await?).await })
            .await
    }
}

#[async_trait]
impl<E: Embedder> Embedder for Fallback<E> {
    /// The primary's; the stack only chains embedders of equal dimension.
    fn dimension(&self) -> usize {
        self.primary.dimension()
    }
    fn max_input_tokens(&self) -> usize {
        self.chain()
            .map(Embedder::max_input_tokens)
            .min()
            .unwrap_or_default()
    }
    /// The primary's: chunks are sized for it, and the stack only chains embedders that take
    /// the same inputs.
    fn token_counter(&self) -> Option<std::sync::Arc<dyn crate::embed::TokenCounter>> {
        self.primary.token_counter()
    }
    async fn embed(&self, inputs: &[String]) -> Result<Vec<Embedding>, EmbedError> {
        self.first_success(|e| e.embed(inputs)).await
    }
}
