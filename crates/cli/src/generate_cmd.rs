//! `corral generate`: stream a completion, raw or as a one-message chat.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use corral_core::{ChatDelta, ChatRequest, FinishReason, GenerateRequest, Message, Sampling};
use corral_stack::ModelKind;
use futures::StreamExt;

use crate::model_args::ModelArgs;

#[derive(Debug, Args)]
pub struct GenerateArgs {
    #[command(flatten)]
    model: ModelArgs,

    /// The most tokens to generate.
    #[arg(long, default_value_t = 256)]
    max_tokens: u32,

    /// Sampling temperature; 0 is greedy.
    #[arg(long)]
    temperature: Option<f32>,

    /// Seed for sampling: the same seed gives the same output where the model supports it.
    #[arg(long)]
    seed: Option<u64>,

    /// Send the prompt as a one-message chat instead of raw text.
    #[arg(long)]
    chat: bool,

    /// The prompt.
    prompt: String,
}

pub async fn run(args: GenerateArgs, config: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let stack = args.model.stack(config, ModelKind::Chat)?;
    let model = stack.chat_model(&args.model.model).await?;
    let sampling = Sampling {
        temperature: args.temperature,
        seed: args.seed,
        ..Sampling::default()
    };
    let mut stream = if args.chat {
        let request = ChatRequest::new(vec![Message::user(args.prompt)])
            .with_max_tokens(args.max_tokens)
            .with_sampling(sampling);
        model.stream(&request).await?
    } else {
        let request = GenerateRequest {
            prompt: args.prompt,
            sampling,
            max_tokens: Some(args.max_tokens),
            stop: Vec::new(),
        };
        model.generate(&request).await?
    };
    let mut out = std::io::stdout().lock();
    let mut finish = None;
    while let Some(delta) = stream.next().await {
        match delta? {
            ChatDelta::Text { text } => {
                out.write_all(text.as_bytes())?;
                out.flush()?;
            }
            ChatDelta::Finish { reason } => finish = Some(reason),
            ChatDelta::Usage(usage) => tracing::info!(
                prompt_tokens = usage.prompt_tokens,
                completion_tokens = usage.completion_tokens,
                "usage"
            ),
            ChatDelta::ToolCall(_) => {}
            ChatDelta::ToolCallError { message } => tracing::warn!("{message}"),
        }
    }
    writeln!(out)?;
    if finish == Some(FinishReason::Length) {
        tracing::warn!("stopped at --max-tokens {}", args.max_tokens);
    }
    Ok(ExitCode::SUCCESS)
}
