//! Cross-cutting behaviour written once, around any provider: [`Retrying`], [`Timeout`], [`Fallback`].
//!
//! Each wrapper decides from [`crate::CapabilityError::kind`] alone, so it works for every provider
//! that classifies its errors. Compose them innermost-first: `Fallback` over `Retrying` over `Timeout`
//! over the provider, so each attempt has its own time limit and a provider is only given up on
//! after its retries.
//!
//! A stream counts as started once its first delta arrives: a failure before that is retried or
//! falls back like a failed call; a failure after it goes to the caller, since the caller has already
//! seen part of the answer.

mod fallback;
mod retry;
mod timeout;

#[cfg(test)]
mod tests;

pub use fallback::Fallback;
pub use retry::{RetryPolicy, Retrying};
pub use timeout::Timeout;

use futures::StreamExt;

use crate::chat::ChatStream;
use crate::error::ChatError;

/// Waits for a stream's first item, so that an error there counts as a failure to start.
async fn started(mut stream: ChatStream) -> Result<ChatStream, ChatError> {
    match stream.next().await {
        None => Ok(stream),
        Some(Err(e)) => Err(e),
        Some(Ok(first)) => Ok(futures::stream::iter([Ok(first)]).chain(stream).boxed()),
    }
}
