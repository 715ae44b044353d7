//! Resilience applied by config, end to end: a `corral.toml` whose remote provider sits behind a
//! failing scripted server gets retries and fallbacks from the config alone.

#[path = "../crates/inference/tests/support/mod.rs"]
mod support;

use std::time::Duration;

use corral::stack::{Config, Registry, Stack};
use corral::{CapabilityError, ChatModel, ChatRequest, ErrorKind, Message};
use support::{Reply, ScriptedServer, completion};

fn stack(toml: &str) -> Stack {
    let config = Config::from_toml_str(toml, "corral.toml", &|_: &str| None).expect("valid config");
    Stack::build(config, "corral.toml", &Registry::builtin()).expect("builds")
}

fn request() -> ChatRequest {
    ChatRequest::new(vec![Message::user("What is the capital of France?")])
}

#[tokio::test]
async fn retries_and_fallbacks_come_from_the_config() {
    let primary = ScriptedServer::start(vec![
        Reply::status(503, r#"{"error":{"message":"overloaded"}}"#),
        Reply::ok(completion("Paris, after a retry.")),
        Reply::status(503, r#"{"error":{"message":"overloaded"}}"#),
        Reply::status(503, r#"{"error":{"message":"still overloaded"}}"#),
    ])
    .await;
    let backup =
        ScriptedServer::start(vec![Reply::ok(completion("Paris, from the backup."))]).await;
    let stack = stack(&format!(
        r#"
        [[providers.inference]]
        id = "primary"
        type = "remote::openai-compat"
        config = {{ base_url = "{}" }}
        retry = {{ max_attempts = 2, initial_backoff_ms = 10, jitter = false }}

        [[providers.inference]]
        id = "backup"
        type = "remote::openai-compat"
        config = {{ base_url = "{}" }}

        [[models]]
        id = "llama"
        provider = "primary"
        provider_model = "llama-3.2-3b"
        kind = "chat"
        fallbacks = ["llama-backup"]

        [[models]]
        id = "llama-backup"
        provider = "backup"
        kind = "chat"
        "#,
        primary.base_url(),
        backup.base_url()
    ));
    let model = stack.chat_model("llama").await.expect("routes");
    // First call: a 503, retried by the primary's retry policy.
    assert_eq!(
        model.complete(&request()).await.expect("retried").text,
        "Paris, after a retry."
    );
    // Second call: the primary fails twice, its retries are spent, the fallback answers.
    assert_eq!(
        model.complete(&request()).await.expect("fell back").text,
        "Paris, from the backup."
    );
    assert_eq!(primary.requests().len(), 4);
    assert_eq!(primary.requests()[0].json()["model"], "llama-3.2-3b");
    assert_eq!(backup.requests().len(), 1);
    assert_eq!(backup.requests()[0].json()["model"], "llama-backup");
}

#[tokio::test]
async fn a_configured_timeout_cuts_a_stalled_provider() {
    let stalled = Reply::After(
        Duration::from_secs(5),
        Box::new(Reply::ok(completion("too late"))),
    );
    let server = ScriptedServer::start(vec![stalled]).await;
    let stack = stack(&format!(
        r#"
        [[providers.inference]]
        id = "slow"
        type = "remote::openai-compat"
        config = {{ base_url = "{}" }}
        timeout_secs = 0.5

        [[models]]
        id = "m"
        provider = "slow"
        kind = "chat"
        "#,
        server.base_url()
    ));
    let start = std::time::Instant::now();
    let error = stack
        .chat_model("m")
        .await
        .expect("routes")
        .complete(&request())
        .await
        .expect_err("times out");
    assert_eq!(error.kind(), ErrorKind::Timeout);
    assert!(start.elapsed() < Duration::from_secs(5));
}
