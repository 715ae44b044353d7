//! README.md's config example stays a valid config: same keys, same shapes.

use corral::stack::Config;

#[test]
fn the_readme_config_example_parses() {
    let readme = include_str!("../README.md");
    let start = readme.find("```toml\n").expect("README has a TOML example") + "```toml\n".len();
    let end = start + readme[start..].find("```").expect("the example ends");
    let env = |name: &str| (name == "TOGETHER_API_KEY").then(|| "sk-test".to_string());
    let config = Config::from_toml_str(&readme[start..end], "README.md", &env)
        .unwrap_or_else(|e| panic!("README's example is not a valid config: {e}"));
    assert_eq!(config.models[0].fallbacks, ["llama3.2-3b-local"]);
    assert_eq!(config.server.port, 8321);
    assert_eq!(
        config.providers.inference[0].config["api_key"].as_str(),
        Some("sk-test")
    );
}
