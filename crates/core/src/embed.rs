//! Text embeddings.

use std::sync::Arc;

use async_trait::async_trait;

use crate::error::EmbedError;

pub type Embedding = Vec<f32>;

#[async_trait]
pub trait Embedder: Send + Sync {
    /// Length of every vector this embedder returns.
    fn dimension(&self) -> usize;

    /// The longest input, in the embedder's own tokens, it takes without truncating.
    fn max_input_tokens(&self) -> usize;

    /// One vector per input, in input order.
    async fn embed(&self, inputs: &[String]) -> Result<Vec<Embedding>, EmbedError>;
}

#[async_trait]
impl<E: Embedder + ?Sized> Embedder for Arc<E> {
    fn dimension(&self) -> usize {
        (**self).dimension()
    }
    fn max_input_tokens(&self) -> usize {
        (**self).max_input_tokens()
    }
    async fn embed(&self, inputs: &[String]) -> Result<Vec<Embedding>, EmbedError> {
        (**self).embed(inputs).await
    }
}
