//! Text embeddings.

use std::sync::Arc;

use async_trait::async_trait;

use crate::error::EmbedError;

pub type Embedding = Vec<f32>;

/// Counts text in an embedder's own tokens, so chunks can be sized to what the embedder takes.
pub trait TokenCounter: Send + Sync {
    /// Tokens `text` becomes, without the special tokens the embedder adds around an input.
    fn count_tokens(&self, text: &str) -> usize;
}

#[async_trait]
pub trait Embedder: Send + Sync {
    /// Length of every vector this embedder returns.
    fn dimension(&self) -> usize;

    /// The longest input, in the embedder's own tokens, it takes without truncating.
    fn max_input_tokens(&self) -> usize;

    /// How this embedder counts tokens, when it knows (a local model does; a remote endpoint
    /// usually does not, and chunking then estimates).
    fn token_counter(&self) -> Option<Arc<dyn TokenCounter>> {
        None
    }

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
    fn token_counter(&self) -> Option<Arc<dyn TokenCounter>> {
        (**self).token_counter()
    }
    async fn embed(&self, inputs: &[String]) -> Result<Vec<Embedding>, EmbedError> {
        (**self).embed(inputs).await
    }
}
