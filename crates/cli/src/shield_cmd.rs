//! `corral shield`: check a text with one configured shield. Exit status 0 when it is allowed (a
//! warning or a redaction still allows it), 1 when it is blocked, 2 when the shield could not
//! decide or the command failed.

use std::io::Read as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::{Args, ValueEnum};
use corral_core::{ContentOrigin, Message, Violation, ViolationLevel};

#[derive(Debug, Args)]
pub struct ShieldArgs {
    /// The shield's id in the config (`corral config check` lists them).
    shield: String,
    /// The text to check; or use --file.
    #[arg(conflicts_with = "file", required_unless_present = "file")]
    text: Option<String>,
    /// Read the text from this file (`-` for standard input).
    #[arg(long, value_name = "FILE")]
    file: Option<PathBuf>,
    /// What the text is: a user's request, a model's answer, a retrieved passage or a tool's
    /// result. Shields judge them differently (injected instructions are expected in none of the
    /// last two).
    #[arg(long = "as", value_enum, default_value = "input")]
    role: CheckAs,
    /// Print the verdict as JSON, with the violation's metadata.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum CheckAs {
    Input,
    Output,
    Retrieved,
    ToolResult,
}

/// Blocked: the text does not go through.
const BLOCKED: u8 = 1;
/// The shield could not decide, or the command failed.
const FAILED: u8 = 2;

pub async fn run(args: ShieldArgs, config: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    match check(&args, config).await {
        Ok(code) => Ok(code),
        Err(error) => {
            eprintln!("error: {error:#}");
            Ok(ExitCode::from(FAILED))
        }
    }
}

async fn check(args: &ShieldArgs, config: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let text = match (&args.text, &args.file) {
        (Some(text), _) => text.clone(),
        (None, Some(path)) if path.as_os_str() == "-" => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("cannot read standard input")?;
            text
        }
        (None, Some(path)) => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?,
        (None, None) => bail!("give the text to check, or --file"),
    };
    let stack = crate::memory_cmd::stack(config)?;
    let shield = stack
        .shield(&args.shield)
        .await
        .with_context(|| format!("shield `{}`", args.shield))?;
    let started = std::time::Instant::now();
    let verdict = match args.role {
        CheckAs::Input => shield.check(&[Message::user(&text)]).await,
        CheckAs::Output => shield.check(&[Message::assistant(&text)]).await,
        CheckAs::Retrieved => shield.check_content(&text, ContentOrigin::Retrieved).await,
        CheckAs::ToolResult => shield.check_content(&text, ContentOrigin::ToolResult).await,
    }
    .with_context(|| format!("shield `{}` could not decide", args.shield))?;
    tracing::debug!(shield = %args.shield, elapsed = ?started.elapsed(), "checked");
    let blocked = verdict
        .as_ref()
        .is_some_and(|v| v.level == ViolationLevel::Error);
    if args.json {
        let json = serde_json::json!({
            "shield": args.shield,
            "allowed": !blocked,
            "violation": verdict,
        });
        outln!("{}", serde_json::to_string_pretty(&json)?)?;
    } else {
        print_verdict(verdict.as_ref(), blocked)?;
    }
    Ok(if blocked {
        ExitCode::from(BLOCKED)
    } else {
        ExitCode::SUCCESS
    })
}

fn print_verdict(verdict: Option<&Violation>, blocked: bool) -> std::io::Result<()> {
    let Some(v) = verdict else {
        return outln!("allowed");
    };
    let head = if blocked { "blocked" } else { "allowed" };
    outln!("{head} ({}): {}", v.level.as_str(), v.user_message)?;
    for (key, value) in &v.metadata {
        let value = match value {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        outln!("  {key}: {value}")?;
    }
    if let Some(replacement) = &v.replacement {
        outln!("redacted:\n{replacement}")?;
    }
    Ok(())
}
