//! Time limits on calls.

use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;

use crate::chat::{ChatModel, ChatRequest, ChatResponse, ChatStream, GenerateRequest};
use crate::embed::{Embedder, Embedding};
use crate::error::{CapabilityError, ChatError, EmbedError};

/// A provider whose calls must finish within a limit. For a stream the limit applies to getting it
/// started and then to each wait between deltas: a long answer that keeps coming is never cut, a
/// stalled one is.
#[derive(Debug, Clone)]
pub struct Timeout<M> {
    inner: M,
    limit: Duration,
}

impl<M> Timeout<M> {
    pub fn new(inner: M, limit: Duration) -> Self {
        Self { inner, limit }
    }
}

async fn within<T, E: CapabilityError>(
    limit: Duration,
    call: impl Future<Output = Result<T, E>>,
) -> Result<T, E> {
    tokio::time::timeout(limit, call)
        .await
        .unwrap_or_else(|_| Err(E::timed_out(limit)))
}

/// Ends a stream with a timeout error when no delta arrives for `limit`.
fn idle_limited(stream: ChatStream, limit: Duration) -> ChatStream {
    futures::stream::unfold(Some(stream), move |state| async move {
        let mut stream = state?;
        match tokio::time::timeout(limit, stream.next()).await {
            Ok(Some(item)) => Some((item, Some(stream))),
            Ok(None) => None,
            Err(_) => Some((Err(ChatError::timed_out(limit)), None)),
        }
    })
    .boxed()
}

#[async_trait]
impl<M: ChatModel> ChatModel for Timeout<M> {
    async fn stream(&self, request: &ChatRequest) -> Result<ChatStream, ChatError> {
        let stream = within(self.limit, self.inner.stream(request)).await?;
        Ok(idle_limited(stream, self.limit))
    }

    async fn complete(&self, request: &ChatRequest) -> Result<ChatResponse, ChatError> {
        within(self.limit, self.inner.complete(request)).await
    }

    async fn generate(&self, request: &GenerateRequest) -> Result<ChatStream, ChatError> {
        let stream = within(self.limit, self.inner.generate(request)).await?;
        Ok(idle_limited(stream, self.limit))
    }
}

#[async_trait]
impl<E: Embedder> Embedder for Timeout<E> {
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
        within(self.limit, self.inner.embed(inputs)).await
    }
}
