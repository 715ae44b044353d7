//! `corral embed`: print embeddings as JSON.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::ensure;
use clap::Args;
use corral_stack::ModelKind;

use crate::model_args::ModelArgs;

#[derive(Debug, Args)]
pub struct EmbedArgs {
    #[command(flatten)]
    model: ModelArgs,

    /// The texts to embed.
    #[arg(required = true)]
    texts: Vec<String>,
}

pub async fn run(args: EmbedArgs, config: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let stack = args.model.stack(config, ModelKind::Embedding)?;
    let embedder = stack.embedder(&args.model.model).await?;
    let vectors = embedder.embed(&args.texts).await?;
    ensure!(
        vectors.len() == args.texts.len(),
        "the embedder returned {} vectors for {} texts",
        vectors.len(),
        args.texts.len()
    );
    outln!("{}", serde_json::to_string(&vectors)?)?;
    Ok(ExitCode::SUCCESS)
}
