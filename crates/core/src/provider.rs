//! Provider-level traits: what the stack builds from one `[[providers.<api>]]` entry of the config,
//! and asks for the models, stores, shields and tools it routes to.
//!
//! Building a provider must be cheap (no model loading, no network): the stack builds every
//! configured provider to validate a config. Heavy work happens when a model or store is first asked for.

use std::sync::Arc;

use async_trait::async_trait;

use crate::chat::ChatModel;
use crate::embed::Embedder;
use crate::error::{ChatError, EmbedError, ShieldError, ToolError, VectorStoreError};
use crate::shield::Shield;
use crate::tool::Tool;
use crate::vector::VectorStore;

/// A source of chat models and embedders (a local runtime, a remote endpoint).
#[async_trait]
pub trait InferenceProvider: Send + Sync {
    /// The chat model this provider knows as `name` (a file, a remote model name).
    async fn chat_model(&self, name: &str) -> Result<Arc<dyn ChatModel>, ChatError>;

    /// The embedder this provider knows as `name`.
    async fn embedder(&self, name: &str) -> Result<Arc<dyn Embedder>, EmbedError>;

    /// The model names this provider can serve now (a remote endpoint's `/models`), or `None` when
    /// it has no such listing.
    async fn list_models(&self) -> Result<Option<Vec<String>>, ChatError> {
        Ok(None)
    }
}

/// A place vector stores live (an embedded directory, a Qdrant cluster).
#[async_trait]
pub trait VectorIoProvider: Send + Sync {
    /// Opens the store named `name`, creating it for `dimension`-dimensional vectors if it is new.
    async fn open_store(
        &self,
        name: &str,
        dimension: usize,
    ) -> Result<Arc<dyn VectorStore>, VectorStoreError>;
}

/// A kind of shield (Llama Guard, PII, rules).
#[async_trait]
pub trait SafetyProvider: Send + Sync {
    /// The shield configured under `name` with the shield entry's `params`. `context` gives access
    /// to the stack's chat models (a Llama Guard model, a classifier); it is only borrowed while
    /// the shield is built.
    async fn shield(
        &self,
        name: &str,
        params: &serde_json::Value,
        context: &dyn ShieldContext,
    ) -> Result<Arc<dyn Shield>, ShieldError>;
}

/// What a stack lends a safety provider while it builds a shield.
#[async_trait]
pub trait ShieldContext: Send + Sync {
    /// The configured chat model with this id.
    async fn chat_model(&self, id: &str) -> Result<Arc<dyn ChatModel>, ChatError>;
}

/// A context that serves nothing: for shields that need no model, and tests.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoShieldContext;

#[async_trait]
impl ShieldContext for NoShieldContext {
    async fn chat_model(&self, id: &str) -> Result<Arc<dyn ChatModel>, ChatError> {
        Err(ChatError::InvalidRequest(format!(
            "unknown model `{id}`: no models are available here"
        )))
    }
}

/// A source of tools (built-ins, an MCP server).
#[async_trait]
pub trait ToolRuntimeProvider: Send + Sync {
    /// The tools of the group configured with the tool group entry's `params`. `context` gives
    /// access to what else the stack serves (vector stores for `knowledge_search`); it is only
    /// borrowed while the group is built.
    async fn tools(
        &self,
        params: &serde_json::Value,
        context: &dyn ToolContext,
    ) -> Result<Vec<Arc<dyn Tool>>, ToolError>;
}

/// A vector store together with the embedder that filled it, which must also embed its queries.
#[derive(Clone)]
pub struct SearchableStore {
    pub id: String,
    pub store: Arc<dyn VectorStore>,
    pub embedder: Arc<dyn Embedder>,
}

impl std::fmt::Debug for SearchableStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SearchableStore")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// What a tool runtime may use from the stack that builds its tools.
#[async_trait]
pub trait ToolContext: Send + Sync {
    /// The configured vector store with this id, opened, with its embedder.
    async fn searchable_store(&self, id: &str) -> Result<SearchableStore, VectorStoreError>;
}

/// A context that serves nothing: for tool runtimes that need nothing from a stack, and tests.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoToolContext;

#[async_trait]
impl ToolContext for NoToolContext {
    async fn searchable_store(&self, id: &str) -> Result<SearchableStore, VectorStoreError> {
        Err(VectorStoreError::InvalidRequest(format!(
            "unknown vector store `{id}`: no stores are available here"
        )))
    }
}
