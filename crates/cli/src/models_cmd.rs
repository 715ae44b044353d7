//! `corral models list`: the configured models, and what each inference provider says it serves.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Subcommand;
use corral_stack::{ConfigSource, Registry, Stack};
use serde_json::json;

#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// List configured models and the models each provider offers (when it can be reached).
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// How long to wait for a provider's listing before reporting it unreachable.
const LISTING_TIMEOUT: Duration = Duration::from_secs(10);

pub async fn run(command: ModelsCommand, config: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let ModelsCommand::List { json } = command;
    let stack = Stack::load(&ConfigSource::discover(config), &Registry::builtin())?;
    let mut offered = Vec::new();
    for provider in &stack.config().providers.inference {
        let listing =
            match tokio::time::timeout(LISTING_TIMEOUT, stack.list_provider_models(&provider.id))
                .await
            {
                Ok(Ok(Some(models))) => Ok(Some(models)),
                Ok(Ok(None)) => Ok(None),
                Ok(Err(error)) => Err(error.to_string()),
                Err(_) => Err(format!("no answer within {LISTING_TIMEOUT:?}")),
            };
        offered.push((provider.id.clone(), listing));
    }
    let routes = stack.routes();
    if json {
        let providers: Vec<_> = offered
            .iter()
            .map(|(id, listing)| match listing {
                Ok(models) => json!({"provider": id, "models": models}),
                Err(error) => json!({"provider": id, "error": error}),
            })
            .collect();
        outln!("{:#}", json!({"configured": routes, "offered": providers}))?;
        return Ok(ExitCode::SUCCESS);
    }
    outln!("configured")?;
    if routes.is_empty() {
        outln!("  (none)")?;
    }
    let width = routes.iter().map(|r| r.model.len()).max().unwrap_or(0);
    for route in &routes {
        outln!(
            "  {:width$}  {:9}  {} → {}",
            route.model,
            route.kind,
            route.provider,
            route.provider_model
        )?;
    }
    for (provider, listing) in offered {
        match listing {
            Ok(Some(models)) => {
                outln!("\noffered by {provider}")?;
                for model in models {
                    outln!("  {model}")?;
                }
            }
            Ok(None) => {}
            Err(error) => outln!("\noffered by {provider}: unreachable ({error})")?,
        }
    }
    Ok(ExitCode::SUCCESS)
}
