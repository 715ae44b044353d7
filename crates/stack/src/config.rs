//! The typed form of `corral.toml`.

use std::time::Duration;

use corral_core::{RetryPolicy, lenient};
use serde::{Deserialize, Serialize};

use crate::error::{ConfigError, ConfigErrorKind};
use crate::interpolate::{self, Env, ExpandError};

/// The whole config file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Format version; 1 is the only one so far.
    #[serde(default = "version_1", deserialize_with = "lenient::value")]
    pub version: u32,
    #[serde(default)]
    pub providers: Providers,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<ModelEntry>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vector_stores: Vec<VectorStoreEntry>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shields: Vec<ServiceEntry>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_groups: Vec<ServiceEntry>,
    #[serde(default)]
    pub agent: AgentDefaults,
    /// Named agents, `[agents.<name>]`, for `corral chat --agent <name>`.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub agents: std::collections::BTreeMap<String, AgentDefaults>,
    #[serde(default)]
    pub server: ServerSettings,
}

fn version_1() -> u32 {
    1
}

impl Default for Config {
    /// An empty config: no providers, default agent and server settings.
    fn default() -> Self {
        Self {
            version: version_1(),
            providers: Providers::default(),
            models: Vec::new(),
            vector_stores: Vec::new(),
            shields: Vec::new(),
            tool_groups: Vec::new(),
            agent: AgentDefaults::default(),
            agents: Default::default(),
            server: ServerSettings::default(),
        }
    }
}

/// Provider instances, per API. Each has an id that models, stores, shields and tool groups name.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Providers {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inference: Vec<ProviderEntry>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vector_io: Vec<ProviderEntry>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub safety: Vec<ProviderEntry>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_runtime: Vec<ProviderEntry>,
}

/// One provider instance: `type` picks the implementation, `config` is that implementation's own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderEntry {
    pub id: String,
    #[serde(rename = "type")]
    pub provider_type: String,
    #[serde(default, skip_serializing_if = "toml::Table::is_empty")]
    pub config: toml::Table,
    /// Inference only: the time limit for a call (for a stream, for each wait between deltas).
    #[serde(
        default,
        deserialize_with = "lenient::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub timeout_secs: Option<f64>,
    /// Inference only: retries on transient errors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetrySettings>,
}

impl ProviderEntry {
    /// The configured time limit. Validated positive and finite when the stack is built.
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout_secs.and_then(|s| lenient::seconds(s).ok())
    }
}

/// `[providers.inference.retry]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetrySettings {
    #[serde(default = "three", deserialize_with = "lenient::value")]
    pub max_attempts: u32,
    #[serde(default = "half_second", deserialize_with = "lenient::value")]
    pub initial_backoff_ms: u64,
    #[serde(default = "thirty_seconds", deserialize_with = "lenient::value")]
    pub max_backoff_ms: u64,
    #[serde(default = "yes", deserialize_with = "lenient::value")]
    pub jitter: bool,
}

fn three() -> u32 {
    3
}
fn half_second() -> u64 {
    500
}
fn thirty_seconds() -> u64 {
    30_000
}
fn yes() -> bool {
    true
}

impl RetrySettings {
    pub fn policy(&self) -> RetryPolicy {
        RetryPolicy {
            max_attempts: self.max_attempts,
            initial_backoff: Duration::from_millis(self.initial_backoff_ms),
            max_backoff: Duration::from_millis(self.max_backoff_ms),
            jitter: self.jitter,
        }
    }
}

/// What a model is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    /// A chat (LLM) model. `llm`, Llama Stack's word, is accepted too.
    #[serde(alias = "llm")]
    Chat,
    Embedding,
}

impl std::fmt::Display for ModelKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(match self {
            Self::Chat => "chat",
            Self::Embedding => "embedding",
        })
    }
}

/// `[[models]]`: a model id that clients use, routed to an inference provider.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelEntry {
    pub id: String,
    /// The id of an inference provider.
    pub provider: String,
    /// The provider's own name for the model (a file, a remote model name); defaults to `id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_model: Option<String>,
    pub kind: ModelKind,
    /// Model ids to try, in order, when this one fails in a way another provider may not. Not
    /// transitive: a fallback's own fallbacks are not followed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fallbacks: Vec<String>,
}

impl ModelEntry {
    pub fn provider_model(&self) -> &str {
        self.provider_model.as_deref().unwrap_or(&self.id)
    }
}

/// `[[vector_stores]]`: a named store on a vector_io provider, with the embedding model that fills it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VectorStoreEntry {
    pub id: String,
    /// The id of a vector_io provider.
    pub provider: String,
    /// The id of an embedding model.
    pub embedding_model: String,
    /// How documents are cut into chunks when ingested into this store (default 512 tokens with
    /// 128 overlapping; capped at what the embedding model takes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunking: Option<corral_memory::ChunkConfig>,
}

/// `[[shields]]` and `[[tool_groups]]`: an id served by a provider, with parameters for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceEntry {
    pub id: String,
    /// The id of a safety (for shields) or tool_runtime (for tool groups) provider.
    pub provider: String,
    #[serde(default, skip_serializing_if = "toml::Table::is_empty")]
    pub params: toml::Table,
}

/// `[agent]` (the default agent) and `[agents.<name>]` (named ones): what an agent is made of.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentDefaults {
    /// A chat model id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instructions: Option<String>,
    /// Inference calls allowed in one turn before it stops.
    #[serde(default = "ten", deserialize_with = "lenient::value")]
    pub max_infer_iters: u32,
    /// Stores searched with each turn's input; the passages go into the prompt, numbered for
    /// citation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vector_stores: Vec<String>,
    /// How those stores are searched (mode, top_k, the context's token budget).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retrieval: Option<RetrievalSettings>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_groups: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub input_shields: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub output_shields: Vec<String>,
    /// Shields on retrieved passages and tool results: an error drops the passage or withholds
    /// the result, a warning marks it as data for the model, a redaction replaces it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub content_shields: Vec<String>,
    /// Sampling, max_tokens, tool_choice, response_format, tool limits, context window and
    /// policy, loop limits (see `corral_agents::AgentSettings`); `max_infer_iters` above wins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<corral_agents::AgentSettings>,
}

/// `[agent.retrieval]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetrievalSettings {
    #[serde(default)]
    pub mode: corral_tools::builtin::knowledge::ModeName,
    #[serde(default = "five", deserialize_with = "lenient::value")]
    pub top_k: usize,
    /// The most retrieved context, in tokens (estimated at four characters per token).
    #[serde(default = "two_thousand", deserialize_with = "lenient::value")]
    pub max_tokens: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_score: Option<f32>,
}

fn five() -> usize {
    5
}
fn two_thousand() -> usize {
    2_000
}

impl Default for RetrievalSettings {
    fn default() -> Self {
        Self {
            mode: Default::default(),
            top_k: five(),
            max_tokens: two_thousand(),
            min_score: None,
        }
    }
}

fn ten() -> u32 {
    10
}

impl Default for AgentDefaults {
    fn default() -> Self {
        Self {
            model: None,
            instructions: None,
            max_infer_iters: ten(),
            vector_stores: Vec::new(),
            retrieval: None,
            tool_groups: Vec::new(),
            input_shields: Vec::new(),
            output_shields: Vec::new(),
            content_shields: Vec::new(),
            settings: None,
        }
    }
}

/// `[server]`: where `corral serve` listens, who may call it, and its limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    #[serde(default = "loopback")]
    pub host: String,
    #[serde(default = "port_8321", deserialize_with = "lenient::value")]
    pub port: u16,
    /// Bearer API keys, each belonging to a tenant. None: no authentication, which is allowed on
    /// a loopback address only, unless `allow_unauthenticated` says otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub api_keys: Vec<ApiKeyEntry>,
    /// Serve without API keys on a non-loopback address (anyone who can reach it may use it).
    #[serde(default, deserialize_with = "lenient::value")]
    pub allow_unauthenticated: bool,
    /// Origins browsers may call from (`*` for any); none: no CORS headers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cors_origins: Vec<String>,
    /// The largest request body, in bytes (file uploads included).
    #[serde(default = "max_body_bytes", deserialize_with = "lenient::value")]
    pub max_body_bytes: usize,
    /// The longest a request may take to start its response, in seconds (a stream then runs
    /// on, each wait bounded by its provider's timeout).
    #[serde(default = "request_timeout_secs", deserialize_with = "lenient::value")]
    pub request_timeout_secs: f64,
    /// Where the server keeps uploaded files, its vector stores and its records (SQLite);
    /// default `<data dir>/server` (`$CORRAL_DATA`, else `~/.local/share/corral`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<std::path::PathBuf>,
    /// MCP servers that the Responses API's `mcp` tools may reach: URL prefixes
    /// (`https://mcp.example.com/`), or `*` for any. None: `mcp` tools are refused, as the server
    /// would otherwise connect wherever a client asks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mcp_allowed_urls: Vec<String>,
}

/// `[[server.api_keys]]`: one key and the tenant it acts for.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyEntry {
    pub key: String,
    pub tenant: String,
}

impl std::fmt::Debug for ApiKeyEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeyEntry")
            .field("key", &"<redacted>")
            .field("tenant", &self.tenant)
            .finish()
    }
}

fn loopback() -> String {
    "127.0.0.1".into()
}
fn port_8321() -> u16 {
    8321
}
fn max_body_bytes() -> usize {
    64 << 20
}
fn request_timeout_secs() -> f64 {
    600.0
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            host: loopback(),
            port: port_8321(),
            api_keys: Vec::new(),
            allow_unauthenticated: false,
            cors_origins: Vec::new(),
            max_body_bytes: max_body_bytes(),
            request_timeout_secs: request_timeout_secs(),
            data_dir: None,
            mcp_allowed_urls: Vec::new(),
        }
    }
}

pub(crate) const BUILTIN_ORIGIN: &str = "<built-in default>";
/// With local inference compiled in, the default serves the models the test-model script fetches;
/// without it, the default declares no providers (it may only name what the build can serve).
#[cfg(feature = "local")]
const BUILTIN_TOML: &str = include_str!("default-local.toml");
#[cfg(not(feature = "local"))]
const BUILTIN_TOML: &str = include_str!("default.toml");

impl Config {
    /// Parses a config from TOML text, expanding `${env.…}` placeholders from `env`. `origin` names
    /// the text in errors (usually its path).
    pub fn from_toml_str(text: &str, origin: &str, env: &dyn Env) -> Result<Self, ConfigError> {
        let mut value: toml::Value = toml::from_str(text).map_err(|e| {
            ConfigError::new(
                origin,
                None,
                ConfigErrorKind::Syntax,
                format!("not valid TOML: {}", e.message().trim_end()),
            )
            .with_location(text, e.span())
        })?;
        interpolate::interpolate(&mut value, env).map_err(|(key, error)| match error {
            ExpandError::Missing(name) => ConfigError::new(
                origin,
                key,
                ConfigErrorKind::MissingEnv,
                format!(
                    "environment variable {name} is not set (set it, or write ${{env.{name}:=default}})"
                ),
            ),
            ExpandError::Malformed(problem) => {
                ConfigError::new(origin, key, ConfigErrorKind::BadValue, problem)
            }
        })?;
        // The version first: a file for a newer format fails on that, not on its new keys.
        if let Some(version) = value.get("version") {
            let text = match version {
                toml::Value::String(s) => s.trim().to_string(),
                other => other.to_string(),
            };
            if text != "1" {
                return Err(ConfigError::new(
                    origin,
                    "version".to_string(),
                    ConfigErrorKind::BadValue,
                    format!("unsupported version {text}; this build reads version 1"),
                ));
            }
        }
        deserialize_at(value, origin, "")
    }

    /// Parses a config from TOML text, with the process environment.
    pub fn parse(text: &str, origin: &str) -> Result<Self, ConfigError> {
        Self::from_toml_str(text, origin, &interpolate::ProcessEnv)
    }

    /// Reads and parses a config file, with the process environment.
    pub fn load(path: &std::path::Path) -> Result<Self, ConfigError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::new(
                &origin,
                None,
                ConfigErrorKind::Io,
                format!("cannot read the config file: {e}"),
            )
        })?;
        Self::parse(&text, &origin)
    }

    /// The config used when there is no file. With local inference, a Llama Guard 3 GGUF in the
    /// models directory (a file whose name contains `llama-guard`) adds it as model `llama-guard`
    /// and a `llama-guard` shield on it.
    pub fn builtin_default() -> Result<Self, ConfigError> {
        #[cfg(feature = "local")]
        if let Some(file) = corral_inference::local::hub::default_models_dir()
            .and_then(|dir| llama_guard_file(&dir))
        {
            let text = format!("{BUILTIN_TOML}\n{}", llama_guard_toml(&file));
            return Self::parse(&text, BUILTIN_ORIGIN);
        }
        Self::parse(BUILTIN_TOML, BUILTIN_ORIGIN)
    }

    /// The config as TOML, e.g. to write out the default as a starting point.
    pub fn to_toml_string(&self) -> Result<String, toml::ser::Error> {
        toml::to_string_pretty(self)
    }
}

/// The first (by name) Llama Guard GGUF file in `dir`.
#[cfg(feature = "local")]
fn llama_guard_file(dir: &std::path::Path) -> Option<String> {
    let mut found: Vec<String> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| {
            let plain: String = name
                .to_ascii_lowercase()
                .chars()
                .filter(char::is_ascii_alphanumeric)
                .collect();
            plain.contains("llamaguard") && plain.ends_with("gguf")
        })
        .collect();
    found.sort();
    found.into_iter().next()
}

/// The model and shield entries for a Llama Guard file. The 1B model was trained without S14.
#[cfg(feature = "local")]
fn llama_guard_toml(file: &str) -> String {
    let one_b = file.to_ascii_lowercase().contains("1b");
    let excluded = if one_b { r#"["S14"]"# } else { "[]" };
    let file = toml::Value::String(file.to_string());
    format!(
        "[[models]]\nid = \"llama-guard\"\nprovider = \"local\"\nprovider_model = {file}\nkind = \"chat\"\n\n\
         [[providers.safety]]\nid = \"llama-guard\"\ntype = \"llama-guard\"\n\n\
         [[shields]]\nid = \"llama-guard\"\nprovider = \"llama-guard\"\n\
         params = {{ model = \"llama-guard\", excluded_categories = {excluded} }}\n"
    )
}

impl ConfigError {
    /// Adds "line L, column C" for a byte span of `text`.
    fn with_location(mut self, text: &str, span: Option<std::ops::Range<usize>>) -> Self {
        if let Some(span) = span {
            let before = text.get(..span.start).unwrap_or(text);
            let line = before.matches('\n').count() + 1;
            let line_start = before.rfind('\n').map_or(0, |i| i + 1);
            let column = before[line_start..].chars().count() + 1;
            self.problem = format!("line {line}, column {column}: {}", self.problem);
        }
        self
    }
}

/// Deserializes `value` into `T`, turning serde's message into a [`ConfigError`] whose key is
/// `prefix` joined with the path inside `value`.
pub(crate) fn deserialize_at<T: serde::de::DeserializeOwned>(
    value: toml::Value,
    origin: &str,
    prefix: &str,
) -> Result<T, ConfigError> {
    serde_path_to_error::deserialize(value).map_err(|error| {
        let inner = error.path().to_string();
        let mut key = join(prefix, if inner == "." { "" } else { &inner });
        let message = error.into_inner().message().trim_end().to_string();
        let (kind, problem) = if let Some(field) = between(&message, "missing field `", "`") {
            key = join(&key, field);
            (
                ConfigErrorKind::MissingKey,
                "required key is missing".to_string(),
            )
        } else if message.starts_with("unknown field `") {
            // serde_path_to_error's path already ends with the unknown key.
            let expected = message
                .split_once(", expected ")
                .map(|(_, rest)| format!(" (expected {rest})"))
                .unwrap_or_default();
            (
                ConfigErrorKind::UnknownKey,
                format!("unknown key{expected}"),
            )
        } else {
            (ConfigErrorKind::BadValue, message)
        };
        ConfigError::new(origin, (!key.is_empty()).then_some(key), kind, problem)
    })
}

fn join(prefix: &str, rest: &str) -> String {
    match (prefix.is_empty(), rest.is_empty()) {
        (true, _) => rest.to_string(),
        (false, true) => prefix.to_string(),
        (false, false) if rest.starts_with('[') => format!("{prefix}{rest}"),
        (false, false) => format!("{prefix}.{rest}"),
    }
}

fn between<'a>(text: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let after = text.strip_prefix(start)?;
    after.split_once(end).map(|(inside, _)| inside)
}

#[cfg(all(test, feature = "local"))]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_llama_guard_gguf_in_the_models_dir_adds_a_model_and_a_shield() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("gemma-3-270m-q4_k_m.gguf"), b"").unwrap();
        assert_eq!(llama_guard_file(dir.path()), None);
        std::fs::write(dir.path().join("Llama-Guard-3-1B.Q4_K_M.gguf"), b"").unwrap();
        let file = llama_guard_file(dir.path()).unwrap();
        assert_eq!(file, "Llama-Guard-3-1B.Q4_K_M.gguf");

        let text = format!("{BUILTIN_TOML}\n{}", llama_guard_toml(&file));
        let config = Config::parse(&text, BUILTIN_ORIGIN).unwrap();
        let model = config
            .models
            .iter()
            .find(|m| m.id == "llama-guard")
            .unwrap();
        assert_eq!(model.provider_model.as_deref(), Some(file.as_str()));
        let shield = config
            .shields
            .iter()
            .find(|s| s.id == "llama-guard")
            .unwrap();
        assert_eq!(
            shield.params["excluded_categories"],
            toml::Value::Array(vec!["S14".into()])
        );
        // Every reference resolves (the model and shield themselves are built on first use).
        let stack =
            crate::Stack::build(config, BUILTIN_ORIGIN, &crate::Registry::builtin()).unwrap();
        assert!(stack.config().shields.iter().any(|s| s.id == "llama-guard"));

        let eight_b = llama_guard_toml("Llama-Guard-3-8B-Q4_K_M.gguf");
        assert!(eight_b.contains("excluded_categories = []"), "{eight_b}");
    }
}
