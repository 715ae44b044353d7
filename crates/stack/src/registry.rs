//! Provider types, one table per API: a new provider is one entry here and one module in its crate.
//!
//! An entry pairs a type name (the `type` in `[[providers.<api>]]`) with the provider's typed config
//! and a constructor. The stack parses the entry's `config` table into that type, so every provider
//! gets key-naming config errors for free, then calls the constructor, which must be cheap (see
//! [`corral_core::provider`]).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use corral_core::{InferenceProvider, SafetyProvider, ToolRuntimeProvider, VectorIoProvider};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::config::deserialize_at;
use crate::error::{ConfigError, ConfigErrorKind};

/// The APIs a provider can serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Api {
    Inference,
    VectorIo,
    Safety,
    ToolRuntime,
}

impl Api {
    pub const ALL: [Api; 4] = [Api::Inference, Api::VectorIo, Api::Safety, Api::ToolRuntime];

    /// The name used in the config file (`[[providers.<name>]]`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Inference => "inference",
            Self::VectorIo => "vector_io",
            Self::Safety => "safety",
            Self::ToolRuntime => "tool_runtime",
        }
    }
}

impl fmt::Display for Api {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

type Build<P> = dyn Fn(toml::Value, &str, &str) -> Result<Arc<P>, ConfigError> + Send + Sync;

/// One provider type: its name, a line about it, and how to build it from its config table.
pub struct ProviderType<P: ?Sized> {
    name: &'static str,
    summary: &'static str,
    build: Box<Build<P>>,
}

impl<P: ?Sized> fmt::Debug for ProviderType<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProviderType")
            .field("name", &self.name)
            .field("summary", &self.summary)
            .finish_non_exhaustive()
    }
}

impl<P: ?Sized + 'static> ProviderType<P> {
    /// A provider type whose `config` table parses into `C` (use `#[serde(deny_unknown_fields)]` so
    /// typos are caught) and which `build` turns into a provider. A `build` error is reported at the
    /// entry's `config` key.
    pub fn new<C, F>(name: &'static str, summary: &'static str, build: F) -> Self
    where
        C: DeserializeOwned,
        F: Fn(C) -> Result<Arc<P>, String> + Send + Sync + 'static,
    {
        Self {
            name,
            summary,
            build: Box::new(move |value, origin, key| {
                let config: C = deserialize_at(value, origin, key)?;
                build(config).map_err(|problem| {
                    ConfigError::new(origin, key.to_string(), ConfigErrorKind::BadValue, problem)
                })
            }),
        }
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    pub fn summary(&self) -> &'static str {
        self.summary
    }

    pub(crate) fn build(
        &self,
        config: toml::Table,
        origin: &str,
        key: &str,
    ) -> Result<Arc<P>, ConfigError> {
        (self.build)(toml::Value::Table(config), origin, key)
    }
}

/// The provider types of one API, by name.
pub struct ProviderTable<P: ?Sized> {
    types: BTreeMap<&'static str, ProviderType<P>>,
}

impl<P: ?Sized> fmt::Debug for ProviderTable<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.types.keys()).finish()
    }
}

impl<P: ?Sized> Default for ProviderTable<P> {
    fn default() -> Self {
        Self {
            types: BTreeMap::new(),
        }
    }
}

impl<P: ?Sized + 'static> ProviderTable<P> {
    /// Adds a provider type, replacing one of the same name (so an application can swap in its own).
    pub fn add(&mut self, provider_type: ProviderType<P>) -> &mut Self {
        self.types.insert(provider_type.name, provider_type);
        self
    }

    pub fn get(&self, name: &str) -> Option<&ProviderType<P>> {
        self.types.get(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = &ProviderType<P>> {
        self.types.values()
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.types.keys().copied().collect()
    }
}

/// The config of a provider type that takes none: its `config` table must be empty (the shield
/// kinds take their settings per shield, in `params`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NoSettings {}

/// Every provider type a stack can be built from, one table per API.
#[derive(Debug, Default)]
pub struct Registry {
    pub inference: ProviderTable<dyn InferenceProvider>,
    pub vector_io: ProviderTable<dyn VectorIoProvider>,
    pub safety: ProviderTable<dyn SafetyProvider>,
    pub tool_runtime: ProviderTable<dyn ToolRuntimeProvider>,
}

/// A provider type, for listings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProviderTypeInfo {
    pub api: Api,
    #[serde(rename = "type")]
    pub name: &'static str,
    pub summary: &'static str,
}

impl Registry {
    /// No provider types at all; add your own.
    pub fn empty() -> Self {
        Self::default()
    }

    /// The provider types compiled into this build, each behind the cargo feature that compiles it.
    pub fn builtin() -> Self {
        #[allow(unused_mut)]
        let mut registry = Self::empty();
        #[cfg(feature = "remote")]
        for preset in corral_inference::remote::PRESETS {
            use corral_inference::remote::{RemoteConfig, RemoteProvider};
            registry.inference.add(ProviderType::new(
                preset.name,
                preset.summary,
                move |config: RemoteConfig| {
                    RemoteProvider::new(preset, config)
                        .map(|provider| Arc::new(provider) as Arc<dyn InferenceProvider>)
                },
            ));
        }
        #[cfg(feature = "bedrock")]
        registry.inference.add(ProviderType::new(
            corral_inference::bedrock::PROVIDER_TYPE,
            "AWS Bedrock (Converse API; SigV4 or a Bedrock API key)",
            |config: corral_inference::bedrock::BedrockConfig| {
                corral_inference::bedrock::BedrockProvider::new(config)
                    .map(|provider| Arc::new(provider) as Arc<dyn InferenceProvider>)
            },
        ));
        #[cfg(feature = "local")]
        registry.inference.add(ProviderType::new(
            corral_inference::local::PROVIDER_TYPE,
            "GGUF chat models (Llama 3.x, Gemma 3) and BERT embedders on this machine's CPU",
            |config: corral_inference::local::LocalConfig| {
                corral_inference::local::LocalProvider::new(config)
                    .map(|provider| Arc::new(provider) as Arc<dyn InferenceProvider>)
            },
        ));
        #[cfg(feature = "qdrant")]
        registry.vector_io.add(ProviderType::new(
            corral_memory::qdrant::PROVIDER_TYPE,
            "Qdrant over gRPC: a collection per store, dense + BM25 sparse vectors, server-side hybrid search",
            |config: corral_memory::qdrant::QdrantConfig| {
                corral_memory::qdrant::QdrantProvider::new(config)
                    .map(|provider| Arc::new(provider) as Arc<dyn VectorIoProvider>)
            },
        ));
        registry.vector_io.add(ProviderType::new(
            corral_memory::embedded::PROVIDER_TYPE,
            "Stores on this machine's disk (tantivy BM25 + exact vector search), no server",
            |config: corral_memory::EmbeddedConfig| {
                let provider = corral_memory::EmbeddedProvider::new(config);
                Ok(Arc::new(provider) as Arc<dyn VectorIoProvider>)
            },
        ));
        for (kind, summary) in corral_safety::KINDS {
            registry
                .safety
                .add(ProviderType::new(kind, summary, move |_: NoSettings| {
                    corral_safety::ShieldProvider::new(kind)
                        .map(|provider| Arc::new(provider) as Arc<dyn SafetyProvider>)
                }));
        }
        use corral_tools::builtin::{BuiltinProvider, CALCULATOR, CURRENT_TIME, KNOWLEDGE_SEARCH};
        for (kind, summary) in [
            (
                KNOWLEDGE_SEARCH,
                "Searches vector stores (tool group params: vector_stores, mode, top_k, max_tokens) and returns numbered passages with sources",
            ),
            (
                CALCULATOR,
                "Evaluates arithmetic expressions (exmex: numbers, operators, functions; no variables or I/O)",
            ),
            (
                CURRENT_TIME,
                "The current date and time in UTC or an IANA time zone",
            ),
        ] {
            registry.tool_runtime.add(ProviderType::new(
                kind,
                summary,
                move |limits: corral_tools::Limits| {
                    BuiltinProvider::new(kind, limits)
                        .map(|provider| Arc::new(provider) as Arc<dyn ToolRuntimeProvider>)
                },
            ));
        }
        #[cfg(feature = "web")]
        {
            use corral_tools::web;
            registry.tool_runtime.add(ProviderType::new(
                web::HTTP_FETCH_PROVIDER_TYPE,
                "GETs a URL and returns readable text; refuses loopback, private, link-local and metadata addresses (after DNS and on every redirect) unless allowed",
                |config: web::HttpFetchConfig| {
                    web::HttpFetchProvider::new(config)
                        .map(|provider| Arc::new(provider) as Arc<dyn ToolRuntimeProvider>)
                        .map_err(|e| e.to_string())
                },
            ));
            registry.tool_runtime.add(ProviderType::new(
                web::WEB_SEARCH_PROVIDER_TYPE,
                "Web search through Brave or Tavily (api_key, base_url), normalised to title, URL, snippet",
                |config: web::WebSearchConfig| {
                    web::WebSearchProvider::new(config)
                        .map(|provider| Arc::new(provider) as Arc<dyn ToolRuntimeProvider>)
                        .map_err(|e| e.to_string())
                },
            ));
        }
        #[cfg(feature = "mcp")]
        registry.tool_runtime.add(ProviderType::new(
            corral_tools::mcp::PROVIDER_TYPE,
            "An MCP server's tools (stdio: command/args/env; or streamable HTTP: url/headers)",
            |config: corral_tools::mcp::McpConfig| {
                corral_tools::mcp::McpProvider::new(config)
                    .map(|provider| Arc::new(provider) as Arc<dyn ToolRuntimeProvider>)
                    .map_err(|e| e.to_string())
            },
        ));
        registry
    }

    /// The names of the provider types for `api`.
    pub fn names(&self, api: Api) -> Vec<&'static str> {
        match api {
            Api::Inference => self.inference.names(),
            Api::VectorIo => self.vector_io.names(),
            Api::Safety => self.safety.names(),
            Api::ToolRuntime => self.tool_runtime.names(),
        }
    }

    /// Every provider type, API by API.
    pub fn catalogue(&self) -> Vec<ProviderTypeInfo> {
        fn list<P: ?Sized + 'static>(api: Api, table: &ProviderTable<P>) -> Vec<ProviderTypeInfo> {
            table
                .iter()
                .map(|t| ProviderTypeInfo {
                    api,
                    name: t.name(),
                    summary: t.summary(),
                })
                .collect()
        }
        let mut all = list(Api::Inference, &self.inference);
        all.extend(list(Api::VectorIo, &self.vector_io));
        all.extend(list(Api::Safety, &self.safety));
        all.extend(list(Api::ToolRuntime, &self.tool_runtime));
        all
    }
}
