//! `corral models list`: the configured models, what each inference provider says it serves, and
//! the model files cached on this machine. `corral models pull`: fetch model files from the
//! Hugging Face Hub into that cache.

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
    /// Download model files from the Hugging Face Hub (HF_ENDPOINT and HF_TOKEN are honoured),
    /// resuming a partial download and checking the file's sha256.
    #[cfg(feature = "local")]
    Pull {
        /// Repo id, e.g. `bartowski/Llama-3.2-1B-Instruct-GGUF` or `sentence-transformers/all-MiniLM-L6-v2`.
        repo: String,
        /// Only this file (default: the repo's GGUF, Q4_K_M preferred, or its sentence-transformers set).
        #[arg(long)]
        file: Option<String>,
        /// Branch, tag or commit (default: main).
        #[arg(long)]
        revision: Option<String>,
        /// Destination root (default: the local provider's models_dir, else $CORRAL_CACHE/models or
        /// ~/.cache/corral/models).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

/// How long to wait for a provider's listing before reporting it unreachable.
const LISTING_TIMEOUT: Duration = Duration::from_secs(10);

pub async fn run(command: ModelsCommand, config: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let json = match command {
        ModelsCommand::List { json } => json,
        #[cfg(feature = "local")]
        ModelsCommand::Pull {
            repo,
            file,
            revision,
            dir,
        } => {
            let dest = match dir {
                Some(dir) => dir,
                None => crate::local_cmd::configured_models_dir(config)?,
            };
            return pull(&repo, revision.as_deref(), file.as_deref(), dest).await;
        }
    };
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
    let cached = cached_models(&stack);
    if json {
        let providers: Vec<_> = offered
            .iter()
            .map(|(id, listing)| match listing {
                Ok(models) => json!({"provider": id, "models": models}),
                Err(error) => json!({"provider": id, "error": error}),
            })
            .collect();
        let cached = cached
            .as_ref()
            .map(|(dir, files)| json!({"dir": dir.display().to_string(), "models": files}));
        outln!(
            "{:#}",
            json!({"configured": routes, "offered": providers, "cached": cached})
        )?;
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
    if let Some((dir, files)) = cached {
        outln!("\ncached in {}", dir.display())?;
        if files.is_empty() {
            outln!(
                "  (none: scripts/fetch-test-models.sh or `corral models pull` put models here)"
            )?;
        }
        for file in files {
            outln!("  {file}")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The models directory of local inference (the config's, else the default) and what is in it.
#[cfg(feature = "local")]
fn cached_models(stack: &Stack) -> Option<(PathBuf, Vec<String>)> {
    // The stack has built this config's providers already, so its local config is valid.
    let dir = crate::local_cmd::models_dir_of(stack.config())
        .unwrap_or_else(|_| corral_inference::local::default_models_dir());
    let files = corral_inference::local::list_model_files(&dir);
    Some((dir, files))
}

#[cfg(not(feature = "local"))]
fn cached_models(_stack: &Stack) -> Option<(PathBuf, Vec<String>)> {
    None
}

#[cfg(feature = "local")]
struct PullBar(indicatif::ProgressBar);

#[cfg(feature = "local")]
impl corral_inference::local::hub::PullProgress for PullBar {
    fn start(&self, file: &str, total_bytes: Option<u64>, already_have: u64) {
        let template = if total_bytes.is_some() {
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}"
        } else {
            "{spinner} {msg} {bytes} {bytes_per_sec}"
        };
        self.0.set_style(
            indicatif::ProgressStyle::with_template(template)
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        self.0.reset();
        match total_bytes {
            Some(total) => self.0.set_length(total),
            None => self.0.unset_length(),
        }
        self.0.set_position(already_have);
        self.0.set_message(file.to_owned());
    }

    fn advance(&self, bytes: u64) {
        self.0.inc(bytes);
    }

    fn finish(&self, _file: &str) {
        self.0.finish_and_clear();
    }
}

#[cfg(feature = "local")]
async fn pull(
    repo: &str,
    revision: Option<&str>,
    file: Option<&str>,
    dest: PathBuf,
) -> anyhow::Result<ExitCode> {
    use corral_inference::local::hub;
    // indicatif draws nothing when stderr is not a terminal.
    let bar = PullBar(indicatif::ProgressBar::new(0));
    let paths = hub::pull(repo, revision, file, &dest, &bar).await;
    bar.0.finish_and_clear();
    for path in paths? {
        outln!("{}", path.display())?;
    }
    Ok(ExitCode::SUCCESS)
}
