//! Every config in `examples/configs/` parses and builds with this build's providers, so the
//! examples cannot drift from the format.

use corral::stack::{Config, Registry, Stack};

#[test]
fn every_example_config_builds() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/configs");
    let env = |name: &str| match name {
        "AZURE_OPENAI_RESOURCE" => Some("example".to_string()),
        "AZURE_OPENAI_DEPLOYMENT" => Some("gpt-4o".to_string()),
        _ => None,
    };
    let mut built = 0;
    for entry in std::fs::read_dir(dir).expect("examples/configs exists") {
        let path = entry.expect("readable").path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(&path).expect("readable");
        let config = Config::from_toml_str(&text, &origin, &env).unwrap_or_else(|e| panic!("{e}"));
        let stack =
            Stack::build(config, &origin, &Registry::builtin()).unwrap_or_else(|e| panic!("{e}"));
        assert!(!stack.routes().is_empty(), "{origin} declares no models");
        built += 1;
    }
    assert!(built >= 5, "only {built} example configs found in {dir}");
}
