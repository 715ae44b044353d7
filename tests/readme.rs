//! README.md's config example stays a config that builds: same keys, same shapes, real provider
//! types.

use corral::stack::{Config, Registry, Stack};

#[test]
fn the_readme_config_example_builds() {
    let readme = include_str!("../README.md");
    let start = readme.find("```toml\n").expect("README has a TOML example") + "```toml\n".len();
    let end = start + readme[start..].find("```").expect("the example ends");
    let env = |name: &str| (name == "TOGETHER_API_KEY").then(|| "sk-test".to_string());
    let config = Config::from_toml_str(&readme[start..end], "README.md", &env)
        .unwrap_or_else(|e| panic!("README's example is not a valid config: {e}"));
    assert_eq!(config.models[0].fallbacks, ["llama3.2-3b-local"]);
    assert_eq!(config.server.port, 8321);
    let stack = Stack::build(config, "README.md", &Registry::builtin())
        .unwrap_or_else(|e| panic!("README's example does not build: {e}"));
    let routes = stack.routes();
    assert_eq!(routes[0].provider_type, "remote::together");
    // The same agent on Together and on this machine: one line apart.
    assert_eq!(routes[1].provider_type, "local");
}
