//! The model a command runs: an id from the config, or an ad-hoc OpenAI-compatible endpoint
//! (`--base-url URL [--api-key-env VAR] --model NAME`) for quick use without a config file.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use corral_stack::{Config, ConfigSource, ModelEntry, ModelKind, ProviderEntry, Registry, Stack};

#[derive(Debug, Args)]
pub struct ModelArgs {
    /// A model id from the config (or, with --base-url, the endpoint's model name).
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

impl ModelArgs {
    /// The stack to run the model from: the configured one, or a one-provider stack for --base-url.
    pub fn stack(&self, config: Option<PathBuf>, kind: ModelKind) -> anyhow::Result<Stack> {
        let registry = Registry::builtin();
        let Some(base_url) = &self.base_url else {
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
        let mut adhoc = Config::default();
        adhoc.providers.inference.push(ProviderEntry {
            id: ADHOC_PROVIDER.into(),
            provider_type: "remote::openai-compat".into(),
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
        Stack::build(adhoc, "--base-url", &registry).context("the --base-url endpoint")
    }
}
