//! `corral generate`, `corral embed` and `corral models list` against a real llama.cpp
//! `llama-server`, through the ad-hoc `--base-url` flags and through a config file.

#[path = "../../inference/tests/support/llama_server.rs"]
mod llama_server;

use assert_cmd::Command;
use predicates::prelude::*;

fn corral() -> Command {
    let mut cmd = Command::cargo_bin("corral").expect("built");
    cmd.env_remove("CORRAL_CONFIG").env_remove("RUST_LOG");
    cmd
}

#[tokio::test(flavor = "multi_thread")]
async fn generate_embed_and_list_against_llama_server() {
    let Some(server) = llama_server::for_test().await else {
        return;
    };
    let base_url = server.base_url();

    corral()
        .args([
            "generate",
            "--base-url",
            &base_url,
            "-m",
            "gemma",
            "--temperature",
            "0",
            "--max-tokens",
            "8",
        ])
        .arg("The capital city of France is called")
        .assert()
        .success()
        .stdout(predicate::str::starts_with(" Paris"));

    let output = corral()
        .args([
            "embed",
            "--base-url",
            &base_url,
            "-m",
            "gemma",
            "first text",
            "second text",
        ])
        .output()
        .expect("runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let vectors: Vec<Vec<f32>> =
        serde_json::from_slice(&output.stdout).expect("a JSON array of vectors");
    assert_eq!(vectors.len(), 2);
    assert_eq!(vectors[0].len(), 640);

    let dir = tempfile::TempDir::new().expect("tempdir");
    let config = dir.path().join("corral.toml");
    std::fs::write(
        &config,
        format!(
            "[[providers.inference]]\nid = \"local-server\"\ntype = \"remote::llama-cpp\"\nconfig = {{ base_url = \"{base_url}\" }}\n\
             [[models]]\nid = \"gemma\"\nprovider = \"local-server\"\nkind = \"chat\"\n"
        ),
    )
    .expect("write config");
    corral()
        .args(["generate", "-c"])
        .arg(&config)
        .args([
            "-m",
            "gemma",
            "--temperature",
            "0",
            "--max-tokens",
            "8",
            "The capital city of France is called",
        ])
        .assert()
        .success()
        .stdout(predicate::str::starts_with(" Paris"));
    corral()
        .args(["models", "list", "-c"])
        .arg(&config)
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "gemma  chat       local-server → gemma",
        ))
        .stdout(predicate::str::contains(format!(
            "offered by local-server\n  {}",
            server.model
        )));
}

/// `corral chat` on the same endpoint through the ad-hoc flags: the agent runs unchanged on a
/// remote model, and the session goes to the SQLite store under `$CORRAL_DATA`.
#[tokio::test(flavor = "multi_thread")]
async fn chat_runs_an_agent_on_an_endpoint_given_by_base_url() {
    let Some(server) = llama_server::for_test().await else {
        return;
    };
    let data = tempfile::tempdir().expect("tempdir");
    let output = corral()
        .args([
            "chat",
            "--base-url",
            &server.base_url(),
            "--model",
            "gemma",
            "--max-tokens",
            "8",
            "--events",
            "The capital city of France is called",
        ])
        .env("CORRAL_DATA", data.path())
        .output()
        .expect("runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let last: serde_json::Value = String::from_utf8_lossy(&output.stdout)
        .lines()
        .last()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .expect("events");
    assert_eq!(last["event"], "turn_completed");
    assert!(
        !last["turn"]["answer"]
            .as_str()
            .unwrap_or_default()
            .is_empty(),
        "{last}"
    );
    assert!(data.path().join("sessions.sqlite").is_file());
}

#[test]
fn an_unreachable_endpoint_is_a_clear_error() {
    corral()
        .args([
            "generate",
            "--base-url",
            "http://127.0.0.1:9/v1",
            "-m",
            "x",
            "hello",
        ])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "remote::openai-compat: cannot connect",
        ));
    corral()
        .args(["generate", "-m", "nope", "hello"])
        .current_dir(std::env::temp_dir())
        .assert()
        .code(1)
        .stderr(predicate::str::contains("unknown chat model `nope`"));
}
