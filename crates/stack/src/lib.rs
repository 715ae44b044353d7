//! The config file and what it becomes: a [`Stack`] of providers with routes to them.
//!
//! `corral.toml` declares providers per API (inference, vector_io, safety, tool_runtime), the models,
//! vector stores, shields and tool groups served by them, agent defaults and server settings. Loading
//! it goes through four steps, each with errors that name the file and the key:
//!
//! 1. TOML syntax ([`toml`]);
//! 2. `${env.NAME}` / `${env.NAME:=default}` interpolation ([`interpolate`]);
//! 3. typed parsing into [`Config`] (unknown keys are errors, not ignored);
//! 4. resolution into a [`Stack`]: every provider's own config parsed and the provider built from the
//!    [`Registry`], and every reference (model → provider, store → embedding model, …) checked.
//!
//! A [built-in default](Config::builtin_default) is used when there is no file.

mod agent;
mod config;
mod error;
pub mod interpolate;
mod registry;
mod stack;

pub use agent::AgentOverrides;
pub use config::{
    AgentDefaults, ApiKeyEntry, Config, ModelEntry, ModelKind, ProviderEntry, Providers,
    RetrievalSettings, RetrySettings, ServerSettings, ServiceEntry, VectorStoreEntry,
};
pub use error::{ConfigError, ConfigErrorKind};
pub use registry::{Api, ProviderTable, ProviderType, ProviderTypeInfo, Registry};
pub use stack::{ConfigSource, REBUILD_AFTER, Route, Stack};

/// The tools of one MCP server reached over streamable HTTP at `url`, named at run time rather
/// than in the config (the Responses API's `mcp` tool). The connection lives as long as the
/// tools do. A build without the `mcp` feature answers with an error that says so.
pub async fn mcp_tools_over_http(
    url: &str,
    headers: std::collections::BTreeMap<String, String>,
    context: &dyn corral_core::ToolContext,
) -> Result<Vec<std::sync::Arc<dyn corral_core::Tool>>, corral_core::ToolError> {
    #[cfg(feature = "mcp")]
    {
        use corral_core::ToolRuntimeProvider as _;
        let config = corral_tools::mcp::McpConfig {
            headers,
            connect_timeout_s: 15.0,
            ..corral_tools::mcp::McpConfig::http(url)
        };
        let provider = corral_tools::mcp::McpProvider::new(config)?;
        provider.tools(&serde_json::json!({}), context).await
    }
    #[cfg(not(feature = "mcp"))]
    {
        let _ = (url, headers, context);
        Err(corral_core::ToolError::Failed(
            "this build has no MCP client (cargo feature `mcp`)".to_string(),
        ))
    }
}
