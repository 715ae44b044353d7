//! The model a command runs: an id from the config, a local model file or directory (a `.gguf`
//! path, a MiniLM-style directory), or an ad-hoc OpenAI-compatible endpoint
//! (`--base-url URL [--api-key-env VAR] --model NAME`) for quick use without a config file.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use corral_stack::{Config, ConfigSource, ModelEntry, ModelKind, ProviderEntry, Registry, Stack};

#[derive(Debug, Args)]
pub struct ModelArgs {
    /// A model id from the config, a path to a local model (`.gguf` file or embedder directory), or
    /// with --base-url the endpoint's model name.
    #[arg(short, long)]
    pub model: String,

    /// Use an OpenAI-compatible endpoint directly, e.g. http://127.0.0.1:8080/v1.
    #[arg(long, value_name = "URL")]
    pub base_url: Option<String>,

    /// With --base-url: the environment variable holding the API key.
    #[arg(long, value_name = "VAR", requires = "base_url")]
    pub api_key_env: Option<String>,
}

const ADHOC_PROVIDER: &str = "adhoc";

/// Whether `--model` names a local file or directory rather than a configured id.
pub fn is_local_path(model: &str) -> bool {
    model.ends_with(".gguf")
        || model.contains('/') && std::path::Path::new(model).exists()
        || std::path::Path::new(model).is_file()
}

impl ModelArgs {
    /// The stack to run the model from: the configured one, or a one-provider stack for --base-url.
    pub fn stack(&self, config: Option<PathBuf>, kind: ModelKind) -> anyhow::Result<Stack> {
        let registry = Registry::builtin();
        let Some(base_url) = &self.base_url else {
            if is_local_path(&self.model) {
                return self.local_stack(config, kind, &registry);
            }
            return Ok(Stack::load(&ConfigSource::discover(config), &registry)?);
        };
        if config.is_some() {
            tracing::warn!("--base-url names the endpoint, so the --config file is not read");
        }
        let mut provider_config = toml::Table::new();
        provider_config.insert("base_url".into(), base_url.clone().into());
        if let Some(var) = &self.api_key_env {
            // The generic endpoint takes a key only if there is one; asked for one, there must be.
            if std::env::var_os(var).is_none_or(|v| v.is_empty()) {
                anyhow::bail!("--api-key-env {var}: the environment variable {var} is not set");
            }
            provider_config.insert("api_key_env".into(), var.clone().into());
        }
        self.one_model_stack(
            "remote::openai-compat",
            provider_config,
            kind,
            "--base-url",
            &registry,
        )
        .context("the --base-url endpoint")
    }

    /// A stack of one provider of `provider_type` serving `--model` and nothing else.
    fn one_model_stack(
        &self,
        provider_type: &str,
        provider_config: toml::Table,
        kind: ModelKind,
        origin: &str,
        registry: &Registry,
    ) -> anyhow::Result<Stack> {
        let mut adhoc = Config::default();
        adhoc.providers.inference.push(ProviderEntry {
            id: ADHOC_PROVIDER.into(),
            provider_type: provider_type.into(),
            config: provider_config,
            timeout_secs: None,
            retry: None,
        });
        adhoc.models.push(ModelEntry {
            id: self.model.clone(),
            provider: ADHOC_PROVIDER.into(),
            provider_model: None,
            kind,
            fallbacks: Vec::new(),
        });
        Ok(Stack::build(adhoc, origin, registry)?)
    }

    /// A one-provider stack serving the file or directory `--model` names, with the `local`
    /// provider's settings from the config when it has one.
    fn local_stack(
        &self,
        config: Option<PathBuf>,
        kind: ModelKind,
        registry: &Registry,
    ) -> anyhow::Result<Stack> {
        let mut provider_config = toml::Table::new();
        // The config (if any) still supplies the local provider's settings, so it must load.
        let configured = ConfigSource::discover(config).load()?;
        if let Some(local) = configured
            .providers
            .inference
            .iter()
            .find(|p| p.provider_type == "local")
        {
            provider_config = local.config.clone();
        }
        self.one_model_stack("local", provider_config, kind, "--model", registry)
            .with_context(|| format!("the model {}", self.model))
    }
}
