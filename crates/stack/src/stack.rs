//! The resolved config: built providers, checked references, and routes from ids to providers.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use corral_core::{
    CapabilityError, ChatError, ChatModel, EmbedError, Embedder, Fallback, InferenceProvider,
    ProviderError, Retrying, SafetyProvider, Shield, ShieldError, Timeout, Tool, ToolError,
    ToolRuntimeProvider, VectorIoProvider, VectorStore, VectorStoreError,
};
use serde::Serialize;
use tokio::sync::OnceCell;

use crate::config::{BUILTIN_ORIGIN, Config, ModelEntry, ModelKind, ProviderEntry};
use crate::error::{ConfigError, ConfigErrorKind};
use crate::registry::{Api, ProviderTable, Registry};

/// Where a config comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    File(PathBuf),
    BuiltIn,
}

impl ConfigSource {
    /// The file named explicitly, else the one `$CORRAL_CONFIG` names (when set and not empty), else
    /// `./corral.toml` when anything is there (a broken link or a directory then fails to load,
    /// rather than being passed over), else the built-in default.
    pub fn discover(explicit: Option<PathBuf>) -> Self {
        let from_env = || {
            std::env::var_os("CORRAL_CONFIG")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        match explicit.or_else(from_env) {
            Some(path) => Self::File(path),
            None if Path::new("corral.toml").symlink_metadata().is_ok() => {
                Self::File("corral.toml".into())
            }
            None => Self::BuiltIn,
        }
    }

    pub fn load(&self) -> Result<Config, ConfigError> {
        match self {
            Self::File(path) => Config::load(path),
            Self::BuiltIn => Config::builtin_default(),
        }
    }

    /// The name errors and listings use for it.
    pub fn origin(&self) -> String {
        match self {
            Self::File(path) => path.display().to_string(),
            Self::BuiltIn => BUILTIN_ORIGIN.to_string(),
        }
    }
}

/// A model id and where its calls go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Route {
    pub model: String,
    pub kind: ModelKind,
    pub provider: String,
    pub provider_type: String,
    pub provider_model: String,
    pub fallbacks: Vec<String>,
}

struct Built<P: ?Sized> {
    entry: ProviderEntry,
    provider: Arc<P>,
}

type Cells<T> = HashMap<String, OnceCell<T>>;

/// Built model chains by id. A chain built without some member (its provider was down) is kept
/// only for [`REBUILD_AFTER`]; then the next call builds it again, so the member comes back.
type Chains<M> = HashMap<String, tokio::sync::Mutex<Option<Chain<M>>>>;

/// How long a chain that had to leave a member out is used before the stack tries again.
pub const REBUILD_AFTER: std::time::Duration = std::time::Duration::from_secs(30);

struct Chain<M: ?Sized> {
    model: Arc<M>,
    /// Every member was built.
    whole: bool,
    built: tokio::time::Instant,
}

fn chains<'a, M: ?Sized>(ids: impl IntoIterator<Item = &'a str>) -> Chains<M> {
    ids.into_iter()
        .map(|id| (id.to_string(), tokio::sync::Mutex::new(None)))
        .collect()
}

/// The chain in `slot`, built by `build` when there is none yet, or when the one there is not
/// whole and [`REBUILD_AFTER`] has passed. A failed rebuild keeps serving the chain it had.
async fn cached_chain<M: ?Sized, E: CapabilityError, Fut>(
    slot: &tokio::sync::Mutex<Option<Chain<M>>>,
    build: impl FnOnce() -> Fut,
) -> Result<Arc<M>, E>
where
    Fut: std::future::Future<Output = Result<(Arc<M>, bool), E>>,
{
    let mut slot = slot.lock().await;
    if let Some(chain) = slot.as_ref()
        && (chain.whole || chain.built.elapsed() < REBUILD_AFTER)
    {
        return Ok(chain.model.clone());
    }
    match build().await {
        Ok((model, whole)) => {
            *slot = Some(Chain {
                model: model.clone(),
                whole,
                built: tokio::time::Instant::now(),
            });
            Ok(model)
        }
        Err(error) => match slot.as_mut() {
            Some(chain) => {
                tracing::warn!(%error, "rebuilding a model chain failed; still using the one without it");
                chain.built = tokio::time::Instant::now();
                Ok(chain.model.clone())
            }
            None => Err(error),
        },
    }
}

/// A model's chain as built: the first member that could be built, then the rest in order, each
/// with the config of the provider it came from, and whether every member was built.
type Member<'a, M> = (
    (Arc<M>, &'a ProviderEntry),
    Vec<(Arc<M>, &'a ProviderEntry)>,
    bool,
);

/// Wraps a built `(model, provider entry)` in the timeout and retries the provider's config asks
/// for. A macro rather than a function: each wrapper must be coerced to the capability's own trait
/// object (`Arc<dyn ChatModel>`, `Arc<dyn Embedder>`).
macro_rules! resilient {
    ($member:expr) => {{
        let (mut model, provider) = $member;
        if let Some(limit) = provider.timeout() {
            model = Arc::new(Timeout::new(model, limit));
        }
        if let Some(retry) = &provider.retry {
            model = Arc::new(Retrying::new(model, retry.policy()));
        }
        model
    }};
}

/// Providers built from a config, with routes from model, store, shield and tool-group ids to them.
/// Models, stores, shields and tool groups are built on first use and then shared.
pub struct Stack {
    config: Config,
    origin: String,
    inference: BTreeMap<String, Built<dyn InferenceProvider>>,
    vector_io: BTreeMap<String, Built<dyn VectorIoProvider>>,
    safety: BTreeMap<String, Built<dyn SafetyProvider>>,
    tool_runtime: BTreeMap<String, Built<dyn ToolRuntimeProvider>>,
    chat_models: Chains<dyn ChatModel>,
    embedders: Chains<dyn Embedder>,
    vector_stores: Cells<Arc<dyn VectorStore>>,
    shields: Cells<Arc<dyn Shield>>,
    tool_groups: Cells<Vec<Arc<dyn Tool>>>,
}

impl std::fmt::Debug for Stack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the config: after interpolation it holds credentials.
        f.debug_struct("Stack")
            .field("origin", &self.origin)
            .field(
                "models",
                &self
                    .chat_models
                    .keys()
                    .chain(self.embedders.keys())
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl Stack {
    /// Loads the config from `source` and builds it with the provider types in `registry`.
    pub fn load(source: &ConfigSource, registry: &Registry) -> Result<Self, ConfigError> {
        Self::build(source.load()?, &source.origin(), registry)
    }

    /// Builds every provider of `config` and checks every reference; `origin` names the config in
    /// errors.
    pub fn build(config: Config, origin: &str, registry: &Registry) -> Result<Self, ConfigError> {
        let check = Checker { origin };
        if config.version != 1 {
            return Err(check.error(
                "version",
                ConfigErrorKind::BadValue,
                format!(
                    "unsupported version {}; this build reads version 1",
                    config.version
                ),
            ));
        }
        let providers = &config.providers;
        let inference =
            check.providers(Api::Inference, &providers.inference, &registry.inference)?;
        let vector_io =
            check.providers(Api::VectorIo, &providers.vector_io, &registry.vector_io)?;
        let safety = check.providers(Api::Safety, &providers.safety, &registry.safety)?;
        let tool_runtime = check.providers(
            Api::ToolRuntime,
            &providers.tool_runtime,
            &registry.tool_runtime,
        )?;

        check.unique("models", config.models.iter().map(|m| m.id.as_str()))?;
        let models_of = |kind: ModelKind| -> Vec<&str> {
            config
                .models
                .iter()
                .filter(|m| m.kind == kind)
                .map(|m| m.id.as_str())
                .collect()
        };
        let inference_ids: Vec<&str> = inference.keys().map(String::as_str).collect();
        for (i, model) in config.models.iter().enumerate() {
            let key = format!("models[{i}]");
            check.reference(
                &format!("{key}.provider"),
                "inference provider",
                &model.provider,
                &inference_ids,
            )?;
            for (j, fallback) in model.fallbacks.iter().enumerate() {
                let at = format!("{key}.fallbacks[{j}]");
                let same_kind = models_of(model.kind);
                check.reference(&at, &format!("{} model", model.kind), fallback, &same_kind)?;
                if fallback == &model.id {
                    return Err(check.error(
                        &at,
                        ConfigErrorKind::BadValue,
                        "a model cannot be its own fallback",
                    ));
                }
            }
        }

        check.unique(
            "vector_stores",
            config.vector_stores.iter().map(|s| s.id.as_str()),
        )?;
        let vector_io_ids: Vec<&str> = vector_io.keys().map(String::as_str).collect();
        let embedding_models = models_of(ModelKind::Embedding);
        for (i, store) in config.vector_stores.iter().enumerate() {
            let key = format!("vector_stores[{i}]");
            check.reference(
                &format!("{key}.provider"),
                "vector_io provider",
                &store.provider,
                &vector_io_ids,
            )?;
            check.reference(
                &format!("{key}.embedding_model"),
                "embedding model",
                &store.embedding_model,
                &embedding_models,
            )?;
            if let Some(chunking) = &store.chunking {
                chunking.validate().map_err(|problem| {
                    check.error(
                        &format!("{key}.chunking"),
                        ConfigErrorKind::BadValue,
                        problem,
                    )
                })?;
            }
        }

        let safety_ids: Vec<&str> = safety.keys().map(String::as_str).collect();
        let tool_runtime_ids: Vec<&str> = tool_runtime.keys().map(String::as_str).collect();
        for (list, entries, what, providers) in [
            ("shields", &config.shields, "safety provider", &safety_ids),
            (
                "tool_groups",
                &config.tool_groups,
                "tool_runtime provider",
                &tool_runtime_ids,
            ),
        ] {
            check.unique(list, entries.iter().map(|e| e.id.as_str()))?;
            for (i, entry) in entries.iter().enumerate() {
                check.reference(
                    &format!("{list}[{i}].provider"),
                    what,
                    &entry.provider,
                    providers,
                )?;
            }
        }

        let agents = std::iter::once(("agent".to_string(), &config.agent)).chain(
            config
                .agents
                .iter()
                .map(|(name, agent)| (format!("agents.{name}"), agent)),
        );
        for (at, agent) in agents {
            check.agent(&at, agent, &config, &models_of(ModelKind::Chat))?;
        }
        check.server(&config.server)?;
        Ok(Self {
            chat_models: chains(models_of(ModelKind::Chat)),
            embedders: chains(models_of(ModelKind::Embedding)),
            vector_stores: cells(config.vector_stores.iter().map(|s| s.id.as_str())),
            shields: cells(config.shields.iter().map(|s| s.id.as_str())),
            tool_groups: cells(config.tool_groups.iter().map(|t| t.id.as_str())),
            config,
            origin: origin.to_string(),
            inference,
            vector_io,
            safety,
            tool_runtime,
        })
    }

    /// The config this stack was built from, after interpolation.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The file the config came from, or `<built-in default>`.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Every model id with the provider its calls go to.
    pub fn routes(&self) -> Vec<Route> {
        self.config
            .models
            .iter()
            .map(|m| Route {
                model: m.id.clone(),
                kind: m.kind,
                provider: m.provider.clone(),
                provider_type: self.inference[&m.provider].entry.provider_type.clone(),
                provider_model: m.provider_model().to_string(),
                fallbacks: m.fallbacks.clone(),
            })
            .collect()
    }

    /// What the inference provider with this id says it serves (see
    /// [`InferenceProvider::list_models`]).
    pub async fn list_provider_models(
        &self,
        provider_id: &str,
    ) -> Result<Option<Vec<String>>, ChatError> {
        match self.inference.get(provider_id) {
            Some(built) => built.provider.list_models().await,
            None => Err(ChatError::InvalidRequest(format!(
                "unknown inference provider `{provider_id}`"
            ))),
        }
    }

    fn model(&self, id: &str, kind: ModelKind) -> Result<&ModelEntry, String> {
        match self.config.models.iter().find(|m| m.id == id) {
            Some(m) if m.kind == kind => Ok(m),
            Some(m) => Err(format!("`{id}` is a model of kind {}, not {kind}", m.kind)),
            None => {
                let known: Vec<&str> = self
                    .config
                    .models
                    .iter()
                    .filter(|m| m.kind == kind)
                    .map(|m| m.id.as_str())
                    .collect();
                Err(format!("unknown {kind} model `{id}`; {}", declared(&known)))
            }
        }
    }

    /// The chat model with this id, built on first use, wrapped in the timeout, retries and
    /// fallbacks its config asks for.
    pub async fn chat_model(&self, id: &str) -> Result<Arc<dyn ChatModel>, ChatError> {
        let entry = self
            .model(id, ModelKind::Chat)
            .map_err(ChatError::InvalidRequest)?;
        cached_chain(&self.chat_models[&entry.id], || async {
            let (primary, rest, whole) = self
                .members(entry, |provider, name| async move {
                    provider.chat_model(&name).await
                })
                .await?;
            let primary: Arc<dyn ChatModel> = resilient!(primary);
            if rest.is_empty() {
                return Ok((primary, whole));
            }
            let rest: Vec<Arc<dyn ChatModel>> = rest.into_iter().map(|m| resilient!(m)).collect();
            Ok((
                Arc::new(Fallback::new(primary, rest)) as Arc<dyn ChatModel>,
                whole,
            ))
        })
        .await
    }

    /// The embedding model with this id, built on first use, wrapped like [`Self::chat_model`].
    /// A model and its fallbacks must give vectors of one length.
    pub async fn embedder(&self, id: &str) -> Result<Arc<dyn Embedder>, EmbedError> {
        let entry = self
            .model(id, ModelKind::Embedding)
            .map_err(EmbedError::InvalidRequest)?;
        cached_chain(&self.embedders[&entry.id], || async {
            let (primary, rest, whole) = self
                .members(entry, |provider, name| async move { provider.embedder(&name).await })
                .await?;
            let dimension = primary.0.dimension();
            if let Some((odd, _)) = rest.iter().find(|(e, _)| e.dimension() != dimension) {
                return Err(EmbedError::InvalidRequest(format!(
                    "embedding model `{id}` and its fallbacks give vectors of different lengths ({dimension} and {})",
                    odd.dimension()
                )));
            }
            let primary: Arc<dyn Embedder> = resilient!(primary);
            if rest.is_empty() {
                return Ok((primary, whole));
            }
            let rest: Vec<Arc<dyn Embedder>> = rest.into_iter().map(|e| resilient!(e)).collect();
            Ok((Arc::new(Fallback::new(primary, rest)) as Arc<dyn Embedder>, whole))
        })
        .await
    }

    /// Builds a model and its fallbacks, each through its provider, under that provider's timeout
    /// and retries (building can mean a request: a remote embedder asks for its dimension). A
    /// member that cannot be built now for a reason another provider does not share (an outage,
    /// a rate limit) is left out with a warning, so one provider's trouble does not take the
    /// model down (the stack builds the chain again after [`REBUILD_AFTER`]); if none can be
    /// built, the first error is returned. A member that is wrong in
    /// itself (an invalid request: a model the provider does not have) is an error.
    async fn members<M: ?Sized, E: CapabilityError, B, Fut>(
        &self,
        entry: &ModelEntry,
        build: B,
    ) -> Result<Member<'_, M>, E>
    where
        B: Fn(Arc<dyn InferenceProvider>, String) -> Fut,
        Fut: std::future::Future<Output = Result<Arc<M>, E>>,
    {
        let chain = std::iter::once(entry).chain(
            entry
                .fallbacks
                .iter()
                .filter_map(|id| self.config.models.iter().find(|m| &m.id == id)),
        );
        let mut members = Vec::new();
        let mut first_error = None;
        for model in chain {
            let built = &self.inference[&model.provider];
            let attempt = || async {
                let call = build(built.provider.clone(), model.provider_model().to_string());
                match built.entry.timeout() {
                    Some(limit) => tokio::time::timeout(limit, call)
                        .await
                        .unwrap_or_else(|_| Err(E::timed_out(limit))),
                    None => call.await,
                }
            };
            let result = match &built.entry.retry {
                Some(retry) => retry.policy().run(attempt).await,
                None => attempt().await,
            };
            match result {
                Ok(member) => members.push((member, &built.entry)),
                Err(error) if error.kind().other_provider_may_help() => {
                    tracing::warn!(model = %model.id, %error, "model unavailable; leaving it out of the chain for now");
                    first_error.get_or_insert(error);
                }
                Err(error) => return Err(error),
            }
        }
        let whole = first_error.is_none();
        let mut members = members.into_iter();
        match (members.next(), first_error) {
            (Some(primary), _) => Ok((primary, members.collect(), whole)),
            (None, Some(error)) => Err(error),
            (None, None) => {
                unreachable!("a model is its own first member, so it was built or failed")
            }
        }
    }

    /// The vector store with this id, opened on first use with its embedding model's dimension.
    pub async fn vector_store(&self, id: &str) -> Result<Arc<dyn VectorStore>, VectorStoreError> {
        let Some(entry) = self.config.vector_stores.iter().find(|s| s.id == id) else {
            let known: Vec<&str> = self
                .config
                .vector_stores
                .iter()
                .map(|s| s.id.as_str())
                .collect();
            return Err(VectorStoreError::InvalidRequest(format!(
                "unknown vector store `{id}`; {}",
                declared(&known)
            )));
        };
        self.vector_stores[id]
            .get_or_try_init(|| async {
                let embedder = self.embedder(&entry.embedding_model).await.map_err(|e| {
                    VectorStoreError::Provider(ProviderError::new(
                        e.kind(),
                        format!(
                            "vector store `{id}` needs embedding model `{}`: {e}",
                            entry.embedding_model
                        ),
                    ))
                })?;
                let built = &self.vector_io[&entry.provider];
                built.provider.open_store(id, embedder.dimension()).await
            })
            .await
            .cloned()
    }

    /// The shield with this id, built on first use.
    pub async fn shield(&self, id: &str) -> Result<Arc<dyn Shield>, ShieldError> {
        let Some(entry) = self.config.shields.iter().find(|s| s.id == id) else {
            let known: Vec<&str> = self.config.shields.iter().map(|s| s.id.as_str()).collect();
            return Err(ShieldError::InvalidRequest(format!(
                "unknown shield `{id}`; {}",
                declared(&known)
            )));
        };
        self.shields[id]
            .get_or_try_init(|| async {
                let params = params_json(&entry.params).map_err(ShieldError::InvalidRequest)?;
                self.safety[&entry.provider]
                    .provider
                    .shield(id, &params, self)
                    .await
            })
            .await
            .cloned()
    }

    /// The tools of the tool group with this id, built on first use.
    pub async fn tool_group(&self, id: &str) -> Result<Vec<Arc<dyn Tool>>, ToolError> {
        let Some(entry) = self.config.tool_groups.iter().find(|t| t.id == id) else {
            let known: Vec<&str> = self
                .config
                .tool_groups
                .iter()
                .map(|t| t.id.as_str())
                .collect();
            return Err(ToolError::Failed(format!(
                "unknown tool group `{id}`; {}",
                declared(&known)
            )));
        };
        self.tool_groups[id]
            .get_or_try_init(|| async {
                let params =
                    params_json(&entry.params).map_err(|problem| ToolError::InvalidArguments {
                        field: None,
                        message: problem,
                    })?;
                self.tool_runtime[&entry.provider]
                    .provider
                    .tools(&params, self)
                    .await
            })
            .await
            .cloned()
    }
}

#[corral_core::async_trait]
impl corral_core::ShieldContext for Stack {
    async fn chat_model(&self, id: &str) -> Result<Arc<dyn ChatModel>, ChatError> {
        Stack::chat_model(self, id).await
    }
}

#[corral_core::async_trait]
impl corral_core::ToolContext for Stack {
    async fn searchable_store(
        &self,
        id: &str,
    ) -> Result<corral_core::SearchableStore, VectorStoreError> {
        let store = self.vector_store(id).await?;
        let entry = self
            .config
            .vector_stores
            .iter()
            .find(|s| s.id == id)
            .ok_or_else(|| {
                VectorStoreError::InvalidRequest(format!("unknown vector store `{id}`"))
            })?;
        let embedder = self.embedder(&entry.embedding_model).await.map_err(|e| {
            VectorStoreError::InvalidRequest(format!(
                "vector store `{id}` needs embedding model `{}`: {e}",
                entry.embedding_model
            ))
        })?;
        Ok(corral_core::SearchableStore {
            id: id.to_string(),
            store,
            embedder,
        })
    }
}

fn cells<'a, T>(ids: impl IntoIterator<Item = &'a str>) -> Cells<T> {
    ids.into_iter()
        .map(|id| (id.to_string(), OnceCell::new()))
        .collect()
}

fn params_json(params: &toml::Table) -> Result<serde_json::Value, String> {
    serde_json::to_value(params)
        .map_err(|e| format!("parameters are not representable as JSON: {e}"))
}

fn declared(known: &[&str]) -> String {
    if known.is_empty() {
        "none are declared".to_string()
    } else {
        format!("declared: {}", known.join(", "))
    }
}

/// Checks on a config, producing errors that name its origin.
struct Checker<'a> {
    origin: &'a str,
}

impl Checker<'_> {
    /// An `[agent]` or `[agents.<name>]` table (`at`): its references and values.
    fn agent(
        &self,
        at: &str,
        agent: &crate::config::AgentDefaults,
        config: &Config,
        chat_models: &[&str],
    ) -> Result<(), ConfigError> {
        if let Some(model) = &agent.model {
            self.reference(&format!("{at}.model"), "chat model", model, chat_models)?;
        }
        if agent.max_infer_iters == 0 {
            return Err(self.error(
                &format!("{at}.max_infer_iters"),
                ConfigErrorKind::BadValue,
                "must be at least 1",
            ));
        }
        if let Some(retrieval) = &agent.retrieval {
            let mut settings = corral_tools::builtin::KnowledgeSettings::new(vec!["-".into()]);
            settings.top_k = retrieval.top_k;
            settings.max_tokens = retrieval.max_tokens;
            settings.validate().map_err(|problem| {
                self.error(
                    &format!("{at}.retrieval"),
                    ConfigErrorKind::BadValue,
                    problem,
                )
            })?;
        }
        if let Some(settings) = &agent.settings {
            settings
                .tool_limits
                .validate(&format!("{at}.settings.tool_limits"))
                .map_err(|problem| {
                    self.error(
                        &format!("{at}.settings"),
                        ConfigErrorKind::BadValue,
                        problem,
                    )
                })?;
        }
        let ids = |entries: &[crate::config::ServiceEntry]| -> Vec<String> {
            entries.iter().map(|e| e.id.clone()).collect()
        };
        let store_ids: Vec<String> = config.vector_stores.iter().map(|s| s.id.clone()).collect();
        for (list, refs, what, known) in [
            (
                "vector_stores",
                &agent.vector_stores,
                "vector store",
                store_ids,
            ),
            (
                "tool_groups",
                &agent.tool_groups,
                "tool group",
                ids(&config.tool_groups),
            ),
            (
                "input_shields",
                &agent.input_shields,
                "shield",
                ids(&config.shields),
            ),
            (
                "output_shields",
                &agent.output_shields,
                "shield",
                ids(&config.shields),
            ),
            (
                "content_shields",
                &agent.content_shields,
                "shield",
                ids(&config.shields),
            ),
        ] {
            let known: Vec<&str> = known.iter().map(String::as_str).collect();
            for (i, id) in refs.iter().enumerate() {
                self.reference(&format!("{at}.{list}[{i}]"), what, id, &known)?;
            }
        }
        Ok(())
    }

    /// `[server]`: keys and tenants present, no key given twice, limits positive.
    fn server(&self, server: &crate::config::ServerSettings) -> Result<(), ConfigError> {
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (i, entry) in server.api_keys.iter().enumerate() {
            let at = format!("server.api_keys[{i}]");
            if entry.key.trim().is_empty() {
                return Err(self.error(
                    &format!("{at}.key"),
                    ConfigErrorKind::BadValue,
                    "an API key cannot be empty (is its environment variable set?)",
                ));
            }
            if entry.tenant.trim().is_empty() {
                return Err(self.error(
                    &format!("{at}.tenant"),
                    ConfigErrorKind::BadValue,
                    "a tenant cannot be empty",
                ));
            }
            if let Some(first) = seen.insert(entry.key.as_str(), i) {
                return Err(self.error(
                    &format!("{at}.key"),
                    ConfigErrorKind::Duplicate,
                    format!("the same key as server.api_keys[{first}]"),
                ));
            }
        }
        if !(server.request_timeout_secs.is_finite() && server.request_timeout_secs > 0.0) {
            return Err(self.error(
                "server.request_timeout_secs",
                ConfigErrorKind::BadValue,
                "must be a positive number of seconds",
            ));
        }
        if server.max_body_bytes == 0 {
            return Err(self.error(
                "server.max_body_bytes",
                ConfigErrorKind::BadValue,
                "must be at least 1",
            ));
        }
        for (i, url) in server.mcp_allowed_urls.iter().enumerate() {
            let at = format!("server.mcp_allowed_urls[{i}]");
            if url == "*" {
                continue;
            }
            let Some(rest) = url
                .strip_prefix("http://")
                .or_else(|| url.strip_prefix("https://"))
            else {
                return Err(self.error(
                    &at,
                    ConfigErrorKind::BadValue,
                    format!("`{url}` is neither `*` nor an http:// or https:// URL prefix"),
                ));
            };
            // `https://mcp.example.com` would also let in `https://mcp.example.com.evil.net/`.
            if !(rest.contains('/') || rest.ends_with(':')) {
                return Err(self.error(
                    &at,
                    ConfigErrorKind::BadValue,
                    format!(
                        "`{url}` ends inside the host name, so it would match other hosts too; \
                         end it with `/` (or with `:` to allow any port)"
                    ),
                ));
            }
        }
        Ok(())
    }

    fn error(&self, key: &str, kind: ConfigErrorKind, problem: impl Into<String>) -> ConfigError {
        ConfigError::new(self.origin, key.to_string(), kind, problem)
    }

    /// Ids must be non-empty and unique within `list`.
    fn unique<'i>(
        &self,
        list: &str,
        ids: impl Iterator<Item = &'i str>,
    ) -> Result<(), ConfigError> {
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (i, id) in ids.enumerate() {
            let key = format!("{list}[{i}].id");
            if id.trim().is_empty() {
                return Err(self.error(&key, ConfigErrorKind::BadValue, "an id cannot be empty"));
            }
            if let Some(first) = seen.insert(id, i) {
                return Err(self.error(
                    &key,
                    ConfigErrorKind::Duplicate,
                    format!("duplicate id `{id}` (first declared at {list}[{first}])"),
                ));
            }
        }
        Ok(())
    }

    fn reference(
        &self,
        key: &str,
        what: &str,
        id: &str,
        known: &[&str],
    ) -> Result<(), ConfigError> {
        if known.contains(&id) {
            return Ok(());
        }
        Err(self.error(
            key,
            ConfigErrorKind::UnknownReference,
            format!("unknown {what} `{id}`; {}", declared(known)),
        ))
    }

    fn providers<P: ?Sized + 'static>(
        &self,
        api: Api,
        entries: &[ProviderEntry],
        table: &ProviderTable<P>,
    ) -> Result<BTreeMap<String, Built<P>>, ConfigError> {
        let list = format!("providers.{api}");
        self.unique(&list, entries.iter().map(|e| e.id.as_str()))?;
        let mut built = BTreeMap::new();
        for (i, entry) in entries.iter().enumerate() {
            let key = format!("{list}[{i}]");
            let Some(provider_type) = table.get(&entry.provider_type) else {
                let known = table.names();
                let supported = if known.is_empty() {
                    format!("this build has no {api} provider types")
                } else {
                    format!("this build supports: {}", known.join(", "))
                };
                return Err(self.error(
                    &format!("{key}.type"),
                    ConfigErrorKind::UnknownProviderType,
                    format!(
                        "unknown {api} provider type `{}`; {supported}",
                        entry.provider_type
                    ),
                ));
            };
            self.resilience(api, &key, entry)?;
            let provider =
                provider_type.build(entry.config.clone(), self.origin, &format!("{key}.config"))?;
            built.insert(
                entry.id.clone(),
                Built {
                    entry: entry.clone(),
                    provider,
                },
            );
        }
        Ok(built)
    }

    /// Timeouts and retries wrap models, so they belong to inference providers only.
    fn resilience(&self, api: Api, key: &str, entry: &ProviderEntry) -> Result<(), ConfigError> {
        let only_inference = |setting: &str| {
            self.error(
                &format!("{key}.{setting}"),
                ConfigErrorKind::UnknownKey,
                format!("`{setting}` applies to inference providers only"),
            )
        };
        if let Some(seconds) = entry.timeout_secs {
            if api != Api::Inference {
                return Err(only_inference("timeout_secs"));
            }
            if let Err(problem) = corral_core::lenient::seconds(seconds) {
                return Err(self.error(
                    &format!("{key}.timeout_secs"),
                    ConfigErrorKind::BadValue,
                    problem,
                ));
            }
        }
        if let Some(retry) = &entry.retry {
            if api != Api::Inference {
                return Err(only_inference("retry"));
            }
            if retry.max_attempts == 0 {
                return Err(self.error(
                    &format!("{key}.retry.max_attempts"),
                    ConfigErrorKind::BadValue,
                    "must be at least 1 (1 means no retries)",
                ));
            }
            if retry.initial_backoff_ms > retry.max_backoff_ms {
                return Err(self.error(
                    &format!("{key}.retry.initial_backoff_ms"),
                    ConfigErrorKind::BadValue,
                    format!("must not exceed max_backoff_ms ({})", retry.max_backoff_ms),
                ));
            }
        }
        Ok(())
    }
}
