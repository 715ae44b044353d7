//! `corral config check`: load and build the config, then show the resolved stack.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;
use corral_stack::{ConfigError, ConfigSource, Registry, Route, Stack};
use serde::Serialize;
use serde_json::json;

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the config and print the resolved stack: providers, models and their routes,
    /// stores, shields, tool groups. Exits 1 when the config is invalid.
    Check {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(command: ConfigCommand, config: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let ConfigCommand::Check { json } = command;
    let source = ConfigSource::discover(config);
    let stack = match Stack::load(&source, &Registry::builtin()) {
        Ok(stack) => stack,
        Err(error) => return Ok(report_invalid(&error, json)),
    };
    if json {
        outln!("{}", serde_json::to_string_pretty(&summary(&stack))?)?;
    } else {
        print_summary(&stack)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn report_invalid(error: &ConfigError, json: bool) -> ExitCode {
    if json {
        let report = json!({
            "valid": false,
            "error": {
                "origin": error.origin,
                "key": error.key,
                "kind": format!("{:?}", error.kind),
                "problem": error.problem,
            }
        });
        // The exit code and the message on stderr carry the verdict even if stdout is gone.
        let _ = outln!("{report:#}");
    }
    eprintln!("error: {error}");
    ExitCode::FAILURE
}

#[derive(Serialize)]
struct ProviderRow<'a> {
    api: &'static str,
    id: &'a str,
    #[serde(rename = "type")]
    provider_type: &'a str,
}

fn provider_rows(stack: &Stack) -> Vec<ProviderRow<'_>> {
    let providers = &stack.config().providers;
    [
        ("inference", &providers.inference),
        ("vector_io", &providers.vector_io),
        ("safety", &providers.safety),
        ("tool_runtime", &providers.tool_runtime),
    ]
    .into_iter()
    .flat_map(|(api, entries)| {
        entries.iter().map(move |e| ProviderRow {
            api,
            id: &e.id,
            provider_type: &e.provider_type,
        })
    })
    .collect()
}

fn summary(stack: &Stack) -> serde_json::Value {
    let config = stack.config();
    json!({
        "valid": true,
        "origin": stack.origin(),
        "providers": provider_rows(stack),
        "routes": stack.routes(),
        "vector_stores": config.vector_stores,
        // Ids and providers only: params can hold credentials once `${env…}` is filled in.
        "shields": config.shields.iter().map(|e| json!({"id": e.id, "provider": e.provider})).collect::<Vec<_>>(),
        "tool_groups": config.tool_groups.iter().map(|e| json!({"id": e.id, "provider": e.provider})).collect::<Vec<_>>(),
        "agent": config.agent,
        "server": config.server,
    })
}

fn print_summary(stack: &Stack) -> std::io::Result<()> {
    let config = stack.config();
    outln!("{}: valid", stack.origin())?;

    outln!("\nproviders")?;
    let rows = provider_rows(stack);
    if rows.is_empty() {
        outln!("  (none)")?;
    }
    let id_width = rows.iter().map(|r| r.id.len()).max().unwrap_or(0);
    for row in &rows {
        outln!(
            "  {:12}  {:id_width$}  {}",
            row.api,
            row.id,
            row.provider_type
        )?;
    }

    outln!("\nmodels")?;
    let routes = stack.routes();
    if routes.is_empty() {
        outln!("  (none)")?;
    }
    let width = routes.iter().map(|r| r.model.len()).max().unwrap_or(0);
    for Route {
        model,
        kind,
        provider,
        provider_model,
        fallbacks,
        ..
    } in &routes
    {
        let fallbacks = if fallbacks.is_empty() {
            String::new()
        } else {
            format!("  (falls back to {})", fallbacks.join(", "))
        };
        outln!("  {model:width$}  {kind:9}  {provider} → {provider_model}{fallbacks}")?;
    }

    if !config.vector_stores.is_empty() {
        outln!("\nvector stores")?;
        for store in &config.vector_stores {
            outln!(
                "  {}  on {}, embedded by {}",
                store.id,
                store.provider,
                store.embedding_model
            )?;
        }
    }
    for (title, entries) in [
        ("shields", &config.shields),
        ("tool groups", &config.tool_groups),
    ] {
        if !entries.is_empty() {
            outln!("\n{title}")?;
            for entry in entries {
                outln!("  {}  on {}", entry.id, entry.provider)?;
            }
        }
    }

    let agent = &config.agent;
    outln!("\nagent")?;
    outln!(
        "  model            {}",
        agent.model.as_deref().unwrap_or("(none)")
    )?;
    outln!("  max_infer_iters  {}", agent.max_infer_iters)?;
    for (name, list) in [
        ("vector_stores", &agent.vector_stores),
        ("tool_groups", &agent.tool_groups),
        ("input_shields", &agent.input_shields),
        ("output_shields", &agent.output_shields),
    ] {
        if !list.is_empty() {
            outln!("  {name:15}  {}", list.join(", "))?;
        }
    }

    outln!("\nserver\n  {}:{}", config.server.host, config.server.port)?;
    Ok(())
}
