//! `corral serve`: the OpenAI- and Llama-Stack-compatible HTTP API over the configured stack.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Args;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The address to listen on (default: the config's `server.host`, else 127.0.0.1).
    #[arg(long)]
    host: Option<String>,
    /// The port to listen on (default: the config's `server.port`, else 8321; 0 picks a free one).
    #[arg(long)]
    port: Option<u16>,
}

pub async fn run(args: ServeArgs, config: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let stack = Arc::new(crate::memory_cmd::stack(config)?);
    let settings = &stack.config().server;
    let host = args.host.unwrap_or_else(|| settings.host.clone());
    let port = args.port.unwrap_or(settings.port);
    let listener = corral_server::bind(&host, port).await?;
    let addr = listener.local_addr().context("the listening address")?;
    // Printed for scripts and tests that start the server on port 0.
    println!("corral serving on http://{addr}/v1 ({})", stack.origin());
    let shutdown = async {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(term) => term,
                    Err(e) => {
                        tracing::warn!("cannot listen for SIGTERM: {e}");
                        let _ = ctrl_c.await;
                        return;
                    }
                };
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        tracing::info!("shutting down; letting requests in flight finish");
    };
    corral_server::serve(stack, listener, shutdown).await?;
    Ok(ExitCode::SUCCESS)
}
