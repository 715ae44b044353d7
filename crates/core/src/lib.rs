//! Corral's vocabulary and provider traits.
//!
//! Everything in Corral points at this crate: messages and chat requests, documents and chunks, and the
//! object-safe traits a provider implements — [`ChatModel`], [`Embedder`], [`VectorStore`], [`Tool`],
//! [`Shield`] — plus the provider-level traits the stack builds them from ([`provider`]). A provider
//! author depends on this crate alone. Cross-cutting behaviour (retry, timeout, fallback) is written
//! once, in [`wrap`], around any provider.
//!
//! It deliberately has no heavy dependencies: no HTTP, no model runtime, no storage engine.

pub mod chat;
pub mod document;
pub mod embed;
pub mod error;
pub mod lenient;
pub mod message;
pub mod provider;
pub mod shield;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod tool;
pub mod vector;
pub mod wrap;

/// Provider traits are async; implement them with this attribute.
pub use async_trait::async_trait;
pub use chat::{
    ChatDelta, ChatModel, ChatRequest, ChatResponse, ChatStream, FinishReason, GenerateRequest,
    ResponseFormat, Sampling, StreamCollector, ToolCallDelta, ToolChoice, Usage,
};
pub use document::{Chunk, Citation, Document, PageRange, SearchHit};
pub use embed::{Embedder, Embedding, TokenCounter};
pub use error::{
    CapabilityError, ChatError, EmbedError, ErrorKind, ProviderError, ShieldError, ToolError,
    VectorStoreError,
};
pub use message::{ContentPart, ImageSource, Message, Role, ToolCall};
pub use provider::{
    InferenceProvider, NoShieldContext, NoToolContext, SafetyProvider, SearchableStore,
    ShieldContext, ToolContext, ToolRuntimeProvider, VectorIoProvider,
};
pub use shield::{ContentOrigin, Shield, Violation, ViolationLevel};
pub use tool::{Tool, ToolOutput, ToolSpec};
pub use vector::{
    EmbeddedChunk, Filter, Fusion, SearchMode, SearchQuery, StoredDocument, VectorStore,
};
pub use wrap::{Fallback, RetryPolicy, Retrying, Timeout};
