//! `corral providers`: the provider types compiled into this build.

use std::process::ExitCode;

use corral_stack::{Api, Registry};

pub fn run(json: bool) -> anyhow::Result<ExitCode> {
    let registry = Registry::builtin();
    let catalogue = registry.catalogue();
    if json {
        outln!("{}", serde_json::to_string_pretty(&catalogue)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    for api in Api::ALL {
        outln!("{api}")?;
        let types: Vec<_> = catalogue.iter().filter(|t| t.api == api).collect();
        if types.is_empty() {
            outln!("  (none in this build)")?;
        }
        let width = types.iter().map(|t| t.name.len()).max().unwrap_or(0);
        for t in types {
            outln!("  {:width$}  {}", t.name, t.summary)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
