//! Remote inference over the OpenAI-compatible HTTP API.
//!
//! One client serves every partner: a [`Preset`] is data (base URL, how the key is sent, the
//! provider's names for the Llama models), not a new client. The provider type
//! `remote::openai-compat` takes any base URL; `remote::together`, `remote::groq`, … fill it in.
//!
//! Retries, timeouts and fallback are not done here: the stack wraps these models in
//! `corral-core`'s wrappers as the config asks, deciding from the error kinds this module sets:
//! 429 → rate limited (with `Retry-After`), 5xx and dropped connections → transient, timeouts →
//! timeout, 401/403 → auth, 400/404/422 → invalid request, context overflows → context length
//! exceeded, other 4xx → permanent.

mod client;
mod presets;
mod sse;
pub(crate) mod wire;

use std::collections::BTreeMap;
use std::sync::Arc;

use corral_core::{
    ChatError, ChatModel, ChatRequest, ChatResponse, ChatStream, EmbedError, Embedder, Embedding,
    GenerateRequest, InferenceProvider, async_trait, lenient,
};
use serde::Deserialize;

pub use client::Secret;
#[cfg(feature = "bedrock")]
pub(crate) use client::Signer;
pub(crate) use client::chain as error_chain;
pub(crate) use client::{Client, Endpoint, Timeouts};
pub use presets::{Auth, Capabilities, PRESETS, Preset};

/// The `config` table of a remote provider. Every key is optional where the preset supplies it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteConfig {
    /// The URL under which `/chat/completions` lives, e.g. `http://127.0.0.1:8080/v1`.
    pub base_url: Option<String>,
    /// The API key. Prefer `${env.NAME}` here, or leave it out to read the preset's variable.
    pub api_key: Option<Secret>,
    /// The environment variable holding the key, instead of the preset's.
    pub api_key_env: Option<String>,
    /// Azure's `api-version` query parameter.
    pub api_version: Option<String>,
    /// Extra headers sent with every request.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Seconds to establish a connection (default 10).
    #[serde(default, deserialize_with = "lenient::option")]
    pub connect_timeout_secs: Option<f64>,
    /// Seconds a response may go silent, headers or body (default 120).
    #[serde(default, deserialize_with = "lenient::option")]
    pub read_timeout_secs: Option<f64>,
    /// Seconds a whole non-streaming request may take (default 600).
    #[serde(default, deserialize_with = "lenient::option")]
    pub request_timeout_secs: Option<f64>,
    /// Inputs per embeddings request (default: the preset's limit).
    #[serde(default, deserialize_with = "lenient::option")]
    pub embedding_batch_size: Option<usize>,
    /// The longest input the embedding models take, in tokens (default 512).
    #[serde(default, deserialize_with = "lenient::option")]
    pub embedding_max_input_tokens: Option<usize>,
    /// More model-name mappings (ours → the provider's), on top of the preset's.
    #[serde(default)]
    pub models: BTreeMap<String, String>,
}

/// An OpenAI-compatible endpoint as an inference provider.
#[derive(Debug, Clone)]
pub struct RemoteProvider {
    client: Arc<Client>,
    preset: &'static Preset,
    models: BTreeMap<String, String>,
    embedding_batch_size: usize,
    embedding_max_input_tokens: usize,
}

impl RemoteProvider {
    /// Builds the provider; cheap, no network. Errors name the config key at fault.
    pub fn new(preset: &'static Preset, config: RemoteConfig) -> Result<Self, String> {
        let base_url = match (&config.base_url, preset.base_url) {
            (Some(url), _) => url.clone(),
            (None, Some(url)) => url.to_string(),
            (None, None) => {
                return Err(format!(
                    "`base_url` is required for {} (e.g. http://127.0.0.1:8080/v1)",
                    preset.name
                ));
            }
        };
        let endpoint = Endpoint {
            provider: preset.name.to_string(),
            base_url,
            auth: preset.auth,
            api_key: config
                .api_key
                .filter(|k| !k.expose().is_empty())
                .or_else(|| {
                    let var = config.api_key_env.as_deref().or(preset.api_key_env)?;
                    std::env::var(var)
                        .ok()
                        .filter(|k| !k.is_empty())
                        .map(Secret::new)
                }),
            api_key_hint: config
                .api_key_env
                .clone()
                .or(preset.api_key_env.map(str::to_string)),
            query: presets::query(preset, config.api_version.as_deref()),
            headers: config.headers,
            timeouts: Timeouts::from_config(
                config.connect_timeout_secs,
                config.read_timeout_secs,
                config.request_timeout_secs,
            )?,
            signer: None,
        };
        let embedding_batch_size = config
            .embedding_batch_size
            .unwrap_or(preset.embedding_batch_size);
        if embedding_batch_size == 0 {
            return Err("`embedding_batch_size` must be at least 1".into());
        }
        let mut models: BTreeMap<String, String> = preset
            .models
            .iter()
            .map(|(ours, theirs)| (ours.to_string(), theirs.to_string()))
            .collect();
        models.extend(config.models);
        Ok(Self {
            client: Arc::new(Client::new(endpoint)?),
            preset,
            models,
            embedding_batch_size,
            embedding_max_input_tokens: config.embedding_max_input_tokens.unwrap_or(512),
        })
    }

    /// The preset this provider was built from.
    pub fn preset(&self) -> &'static Preset {
        self.preset
    }

    /// The provider's name for a model: a mapped name when there is one, else the name as given.
    pub fn provider_name<'a>(&'a self, model: &'a str) -> &'a str {
        self.models.get(model).map_or(model, String::as_str)
    }

    /// A chat model handle; no request is made until it is used.
    pub fn chat(&self, model: &str) -> RemoteChatModel {
        RemoteChatModel {
            client: self.client.clone(),
            model: self.provider_name(model).to_string(),
        }
    }
}

#[async_trait]
impl InferenceProvider for RemoteProvider {
    async fn chat_model(&self, name: &str) -> Result<Arc<dyn ChatModel>, ChatError> {
        Ok(Arc::new(self.chat(name)))
    }

    /// Asks the endpoint for one embedding to learn the vectors' length.
    async fn embedder(&self, name: &str) -> Result<Arc<dyn Embedder>, EmbedError> {
        let model = self.provider_name(name).to_string();
        let probe = self
            .client
            .embed(&model, &["dimension probe".to_string()])
            .await?;
        let dimension = probe.first().map_or(0, Vec::len);
        if dimension == 0 {
            return Err(EmbedError::InvalidRequest(format!(
                "{}: model `{model}` returned an empty embedding",
                self.preset.name
            )));
        }
        Ok(Arc::new(RemoteEmbedder {
            client: self.client.clone(),
            model,
            dimension,
            batch_size: self.embedding_batch_size,
            max_input_tokens: self.embedding_max_input_tokens,
        }))
    }

    async fn list_models(&self) -> Result<Option<Vec<String>>, ChatError> {
        Ok(Some(self.client.list_models().await?))
    }
}

/// A chat model served by a remote endpoint.
#[derive(Debug, Clone)]
pub struct RemoteChatModel {
    client: Arc<Client>,
    model: String,
}

#[async_trait]
impl ChatModel for RemoteChatModel {
    async fn stream(&self, request: &ChatRequest) -> Result<ChatStream, ChatError> {
        let body = wire::chat_body(&self.model, request, true);
        self.client.stream("chat/completions", &body).await
    }

    async fn complete(&self, request: &ChatRequest) -> Result<ChatResponse, ChatError> {
        let body = wire::chat_body(&self.model, request, false);
        let text = self.client.post("chat/completions", &body).await?;
        wire::parse_chat_response(&text)
            .map_err(|e| self.client.malformed("chat completion", &e).into())
    }

    async fn generate(&self, request: &GenerateRequest) -> Result<ChatStream, ChatError> {
        let body = wire::completion_body(&self.model, request, true);
        self.client.stream("completions", &body).await
    }
}

/// An embedding model served by a remote endpoint.
#[derive(Debug, Clone)]
pub struct RemoteEmbedder {
    client: Arc<Client>,
    model: String,
    dimension: usize,
    batch_size: usize,
    max_input_tokens: usize,
}

#[async_trait]
impl Embedder for RemoteEmbedder {
    fn dimension(&self) -> usize {
        self.dimension
    }

    fn max_input_tokens(&self) -> usize {
        self.max_input_tokens
    }

    async fn embed(&self, inputs: &[String]) -> Result<Vec<Embedding>, EmbedError> {
        let mut vectors = Vec::with_capacity(inputs.len());
        for batch in inputs.chunks(self.batch_size) {
            for vector in self.client.embed(&self.model, batch).await? {
                if vector.len() != self.dimension {
                    return Err(self
                        .client
                        .malformed(
                            "embeddings response",
                            &format!(
                                "a vector of length {} where {} was expected",
                                vector.len(),
                                self.dimension
                            ),
                        )
                        .into());
                }
                vectors.push(vector);
            }
        }
        Ok(vectors)
    }
}
