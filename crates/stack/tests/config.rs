//! `corral.toml`: every error names the file and the key; interpolation; the built-in default.

use corral_stack::{Config, ConfigError, ConfigErrorKind, ConfigSource, Registry, Stack};

fn no_env(_: &str) -> Option<String> {
    None
}

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::from_toml_str(text, "corral.toml", &no_env)
}

/// Parses and builds with the built-in registry.
fn build(text: &str) -> Result<Stack, ConfigError> {
    Stack::build(parse(text)?, "corral.toml", &Registry::builtin())
}

#[track_caller]
fn assert_error(
    result: Result<impl std::fmt::Debug, ConfigError>,
    kind: ConfigErrorKind,
    key: &str,
) -> ConfigError {
    let error = result.expect_err("the config must be rejected");
    assert_eq!(error.kind, kind, "{error}");
    assert_eq!(error.key.as_deref(), Some(key), "{error}");
    assert_eq!(error.origin, "corral.toml");
    let shown = error.to_string();
    assert!(
        shown.starts_with(&format!("corral.toml: {key}: ")),
        "{shown}"
    );
    error
}

#[test]
fn syntax_errors_give_the_line() {
    let error = parse("version = 1\n[server\nport = 1\n").expect_err("bad TOML");
    assert_eq!(error.kind, ConfigErrorKind::Syntax);
    assert!(error.to_string().contains("line 2"), "{error}");
}

#[test]
fn missing_keys_are_named() {
    assert_error(
        parse("[[models]]\nprovider = \"p\"\nkind = \"chat\"\n"),
        ConfigErrorKind::MissingKey,
        "models[0].id",
    );
    assert_error(
        parse("[[providers.inference]]\nid = \"p\"\n"),
        ConfigErrorKind::MissingKey,
        "providers.inference[0].type",
    );
}

#[test]
fn unknown_keys_are_named_not_ignored() {
    let error = assert_error(
        parse("[[models]]\nid = \"m\"\nprovdier = \"p\"\nkind = \"chat\"\n"),
        ConfigErrorKind::UnknownKey,
        "models[0].provdier",
    );
    assert!(
        error.problem.contains("provider"),
        "lists the expected keys: {error}"
    );
    assert_error(
        parse("[sever]\nport = 1\n"),
        ConfigErrorKind::UnknownKey,
        "sever",
    );
}

#[test]
fn bad_values_are_named() {
    assert_error(
        parse("[server]\nport = \"eighty\"\n"),
        ConfigErrorKind::BadValue,
        "server.port",
    );
    assert_error(
        parse("[server]\nport = 70000\n"),
        ConfigErrorKind::BadValue,
        "server.port",
    );
    assert_error(
        parse("[[models]]\nid = \"m\"\nprovider = \"p\"\nkind = \"vision\"\n"),
        ConfigErrorKind::BadValue,
        "models[0].kind",
    );
    assert_error(build("version = 2\n"), ConfigErrorKind::BadValue, "version");
    // A newer format's new keys are not what is reported: the version is.
    let error = assert_error(
        parse("version = 2\n[telemetry]\nenabled = true\n"),
        ConfigErrorKind::BadValue,
        "version",
    );
    assert!(error.problem.contains("unsupported version 2"), "{error}");
    assert!(parse("version = \"${env.V:=1}\"\n").is_ok());
    assert_error(
        build("[agent]\nmax_infer_iters = 0\n"),
        ConfigErrorKind::BadValue,
        "agent.max_infer_iters",
    );
}

#[test]
fn an_unknown_provider_type_is_rejected_with_what_the_build_supports() {
    let error = assert_error(
        build("[[providers.inference]]\nid = \"x\"\ntype = \"remote::nonexistent\"\n"),
        ConfigErrorKind::UnknownProviderType,
        "providers.inference[0].type",
    );
    assert!(error.problem.contains("remote::nonexistent"), "{error}");
}

#[test]
fn references_to_undeclared_ids_are_rejected() {
    let error = assert_error(
        build("[[models]]\nid = \"m\"\nprovider = \"nowhere\"\nkind = \"chat\"\n"),
        ConfigErrorKind::UnknownReference,
        "models[0].provider",
    );
    assert!(
        error
            .problem
            .contains("unknown inference provider `nowhere`"),
        "{error}"
    );
    assert_error(
        build("[agent]\nmodel = \"ghost\"\n"),
        ConfigErrorKind::UnknownReference,
        "agent.model",
    );
    assert_error(
        build("[agent]\ninput_shields = [\"pii\"]\n"),
        ConfigErrorKind::UnknownReference,
        "agent.input_shields[0]",
    );
}

#[test]
fn a_missing_environment_variable_names_the_key_and_the_variable() {
    let error = assert_error(
        parse("[agent]\ninstructions = \"${env.CORRAL_TEST_SURELY_UNSET}\"\n"),
        ConfigErrorKind::MissingEnv,
        "agent.instructions",
    );
    assert!(
        error.problem.contains("CORRAL_TEST_SURELY_UNSET"),
        "{error}"
    );
    assert_error(
        parse("[agent]\ninstructions = \"${HOME}\"\n"),
        ConfigErrorKind::BadValue,
        "agent.instructions",
    );
}

#[test]
fn environment_values_and_defaults_fill_strings_and_numbers() {
    let env = |name: &str| match name {
        "CORRAL_PORT" => Some("9000".to_string()),
        "CORRAL_HOST" => Some("0.0.0.0".to_string()),
        _ => None,
    };
    let config = Config::from_toml_str(
        r#"
        [agent]
        instructions = "Answer in ${env.LANGUAGE_UNSET:=English}."
        max_infer_iters = "${env.ITERS_UNSET:=4}"
        [server]
        host = "${env.CORRAL_HOST}"
        port = "${env.CORRAL_PORT:=8321}"
        "#,
        "corral.toml",
        &env,
    )
    .expect("valid");
    assert_eq!(
        config.agent.instructions.as_deref(),
        Some("Answer in English.")
    );
    assert_eq!(config.agent.max_infer_iters, 4);
    assert_eq!(config.server.host, "0.0.0.0");
    assert_eq!(config.server.port, 9000);
}

#[test]
fn the_builtin_default_builds_and_round_trips() {
    let default = Config::builtin_default().expect("the built-in default parses");
    Stack::build(default.clone(), "<built-in default>", &Registry::builtin()).expect("and builds");
    let text = default.to_toml_string().expect("serializes");
    assert_eq!(parse(&text).expect("reparses"), default);
    assert_eq!(default.server.port, 8321);
    assert_eq!(default.server.host, "127.0.0.1");
}

#[test]
fn a_missing_file_is_an_io_error_naming_the_file() {
    let error =
        Config::load(std::path::Path::new("/nonexistent/corral.toml")).expect_err("no file");
    assert_eq!(error.kind, ConfigErrorKind::Io);
    assert_eq!(error.origin, "/nonexistent/corral.toml");
}

#[test]
fn the_config_source_prefers_an_explicit_file() {
    let explicit = ConfigSource::discover(Some("site.toml".into()));
    assert_eq!(explicit, ConfigSource::File("site.toml".into()));
    assert_eq!(explicit.origin(), "site.toml");
    assert_eq!(ConfigSource::BuiltIn.origin(), "<built-in default>");
}

#[test]
fn server_keys_and_limits_are_checked() {
    let key = |key: &str, tenant: &str| {
        format!("[[server.api_keys]]\nkey = \"{key}\"\ntenant = \"{tenant}\"\n")
    };
    assert_error(
        build(&key("", "a")),
        ConfigErrorKind::BadValue,
        "server.api_keys[0].key",
    );
    assert_error(
        build(&key("k", " ")),
        ConfigErrorKind::BadValue,
        "server.api_keys[0].tenant",
    );
    assert_error(
        build(&format!("{}{}", key("k", "a"), key("k", "b"))),
        ConfigErrorKind::Duplicate,
        "server.api_keys[1].key",
    );
    assert_error(
        build("[server]\nrequest_timeout_secs = 0\n"),
        ConfigErrorKind::BadValue,
        "server.request_timeout_secs",
    );
    assert_error(
        build("[server]\nmax_body_bytes = 0\n"),
        ConfigErrorKind::BadValue,
        "server.max_body_bytes",
    );
    for bad in ["mcp.example.com", "https://mcp.example.com"] {
        assert_error(
            build(&format!(
                "[server]\nmcp_allowed_urls = [\"*\", \"{bad}\"]\n"
            )),
            ConfigErrorKind::BadValue,
            "server.mcp_allowed_urls[1]",
        );
    }
    let allowed = build("[server]\nmcp_allowed_urls = [\"*\", \"https://mcp.example.com/\"]\n")
        .expect("URL prefixes and * build");
    assert_eq!(allowed.config().server.mcp_allowed_urls.len(), 2);
    let stack = build(&format!("{}{}", key("k1", "a"), key("k2", "b"))).expect("two keys build");
    assert_eq!(stack.config().server.api_keys.len(), 2);
    // A key never shows in debug output.
    assert!(!format!("{:?}", stack.config().server).contains("k1"));
}
