//! `corral ask` and `corral chat` as a user runs them: real documents embedded by the real MiniLM,
//! answered by the real Gemma 3 270M GGUF on this CPU, sessions kept in SQLite across processes.
#![cfg(feature = "local")]

use std::fs;

use predicates::prelude::*;
use tempfile::TempDir;

mod support;

use support::{cache, corral, needed};

/// A directory with a config (local Gemma and MiniLM, one embedded store under the directory),
/// a `docs/` folder, and `data/` for sessions.
fn workspace() -> TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let models = needed(cache().join("models"), "scripts/fetch-test-models.sh");
    needed(
        models.join("gemma-3-270m-q4_k_m.gguf"),
        "scripts/fetch-test-models.sh",
    );
    let config = format!(
        r#"version = 1

[[providers.inference]]
id = "local"
type = "local"
config = {{ models_dir = "{models}", threads = 2 }}

[[models]]
id = "gemma"
provider = "local"
provider_model = "gemma-3-270m-q4_k_m.gguf"
kind = "chat"

[[models]]
id = "minilm"
provider = "local"
provider_model = "all-MiniLM-L6-v2"
kind = "embedding"

[[providers.vector_io]]
id = "embedded"
type = "embedded"
config = {{ path = "{stores}" }}

[[vector_stores]]
id = "docs"
provider = "embedded"
embedding_model = "minilm"

[[providers.tool_runtime]]
id = "calculator"
type = "calculator"

[[tool_groups]]
id = "math"
provider = "calculator"

[agent]
model = "gemma"
instructions = "Answer from the passages."
vector_stores = ["docs"]
retrieval = {{ top_k = 2 }}

[agent.settings]
max_tokens = 24
sampling = {{ temperature = 0.0 }}
"#,
        models = models.display(),
        stores = dir.path().join("stores").display(),
    );
    fs::write(dir.path().join("corral.toml"), config).expect("config");
    let docs = dir.path().join("docs");
    fs::create_dir_all(&docs).expect("docs");
    fs::write(
        docs.join("rotation.md"),
        "# Operations\n\n## Key rotation\n\nRotate the signing keys every 90 days with \
         `vaultctl rotate --all`. The old keys stay valid for a grace period of 7 days.\n",
    )
    .expect("md");
    fs::write(
        docs.join("lunch.txt"),
        "The canteen serves lentil soup on Tuesdays and fish on Fridays.\n",
    )
    .expect("txt");
    dir
}

fn json(output: &[u8]) -> serde_json::Value {
    serde_json::from_slice(output).expect("JSON output")
}

#[test]
fn ask_ingests_retrieves_and_answers_with_citations() {
    let dir = workspace();
    let output = corral(dir.path())
        .args([
            "ask",
            "How often are the signing keys rotated?",
            "--docs",
            "docs",
            "--json",
        ])
        .env("CORRAL_DATA", dir.path().join("data"))
        .assert()
        .success()
        .stderr(predicate::str::contains("2 added"))
        .get_output()
        .stdout
        .clone();
    let answer = json(&output);
    assert!(
        !answer["answer"]
            .as_str()
            .unwrap_or_default()
            .trim()
            .is_empty(),
        "{answer}"
    );
    let citations = answer["citations"].as_array().expect("citations");
    assert!(!citations.is_empty(), "{answer}");
    assert_eq!(citations[0]["index"], 1);
    assert!(
        citations[0]["source"]
            .as_str()
            .unwrap_or_default()
            .ends_with("rotation.md"),
        "the best passage is the one about keys: {answer}"
    );
    assert_eq!(citations[0]["store"], "docs");
    assert!(
        answer["usage"]["prompt_tokens"].as_u64().unwrap_or(0) > 20,
        "{answer}"
    );

    // Again, as people read it: the documents are unchanged, so nothing is re-embedded.
    corral(dir.path())
        .args(["ask", "When is fish served?", "--docs", "docs"])
        .env("CORRAL_DATA", dir.path().join("data"))
        .assert()
        .success()
        .stderr(predicate::str::contains("2 unchanged"))
        .stdout(predicate::str::contains("Sources:"))
        .stdout(predicate::str::contains("[1] docs/lunch.txt"));
}

#[test]
fn ask_without_a_store_or_with_an_unknown_model_says_so() {
    let dir = workspace();
    corral(dir.path())
        .args(["ask", "anything", "--model", "gpt-17"])
        .env("CORRAL_DATA", dir.path().join("data"))
        .assert()
        .failure()
        .stderr(predicate::str::contains("gpt-17"));
    corral(dir.path())
        .args(["ask", "anything", "--store", "nope"])
        .env("CORRAL_DATA", dir.path().join("data"))
        .assert()
        .failure()
        .stderr(predicate::str::contains("nope"));
}

#[test]
fn chat_keeps_the_session_across_processes() {
    let dir = workspace();
    let data = dir.path().join("data");
    let first = corral(dir.path())
        .args(["chat", "Hello, my name is Ada."])
        .env("CORRAL_DATA", &data)
        .assert()
        .success()
        .get_output()
        .clone();
    let stderr = String::from_utf8_lossy(&first.stderr);
    let session = stderr
        .lines()
        .find_map(|l| l.strip_prefix("session "))
        .expect("the session id is printed")
        .trim()
        .to_string();
    assert!(session.starts_with("sess_"), "{stderr}");

    // A second process continues it; --events prints every step as JSON lines.
    let events = corral(dir.path())
        .args([
            "chat",
            "--session",
            &session,
            "--events",
            "What is my name?",
        ])
        .env("CORRAL_DATA", &data)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let events: Vec<serde_json::Value> = String::from_utf8_lossy(&events)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(events[0]["event"], "turn_started");
    assert_eq!(events[0]["session_id"], session.as_str());
    let last = events.last().expect("events");
    assert_eq!(last["event"], "turn_completed");
    assert_eq!(last["turn"]["seq"], 1, "the second turn of the session");
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "step_completed" && e["step"]["kind"] == "retrieval")
    );

    corral(dir.path())
        .args(["chat", "--sessions"])
        .env("CORRAL_DATA", &data)
        .assert()
        .success()
        .stdout(predicate::str::contains(session.as_str()))
        .stdout(predicate::str::contains("2 turns"))
        .stdout(predicate::str::contains("Hello, my name is Ada."));

    corral(dir.path())
        .args(["chat", "--session", "sess_nope", "hi"])
        .env("CORRAL_DATA", &data)
        .assert()
        .failure()
        .stderr(predicate::str::contains("no session `sess_nope`"));
}

#[test]
fn chat_reads_messages_from_stdin_when_not_a_terminal() {
    let dir = workspace();
    corral(dir.path())
        .args(["chat", "--tools", "math"])
        .env("CORRAL_DATA", dir.path().join("data"))
        .write_stdin("First question?\n\nSecond question?\n")
        .assert()
        .success();
    corral(dir.path())
        .args(["chat", "--sessions"])
        .env("CORRAL_DATA", dir.path().join("data"))
        .assert()
        .success()
        .stdout(predicate::str::contains("2 turns"));
    corral(dir.path())
        .args(["chat", "--tools", "maths", "hi"])
        .env("CORRAL_DATA", dir.path().join("data"))
        .assert()
        .failure()
        .stderr(predicate::str::contains("maths"));
}

/// Llama Guard's prompt and verdict parsing run end to end on a real local model. Gemma 3 270M is
/// not Llama Guard: its free text is not a verdict, so the shield must fail closed (exit 2), or,
/// with `on_unparseable = "allow"`, pass with a warning that carries what the model said.
#[test]
fn a_llama_guard_shield_on_a_model_that_is_not_llama_guard_fails_closed() {
    let dir = workspace();
    let config = dir.path().join("corral.toml");
    let mut text = fs::read_to_string(&config).expect("config");
    text.push_str(
        r#"
[[providers.safety]]
id = "llama-guard"
type = "llama-guard"

[[shields]]
id = "guard"
provider = "llama-guard"
params = { model = "gemma" }

[[shields]]
id = "guard-open"
provider = "llama-guard"
params = { model = "gemma", on_unparseable = "allow" }
"#,
    );
    fs::write(&config, text).expect("config");
    corral(dir.path())
        .args(["shield", "guard", "How do I bake sourdough bread?"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "shield `guard` could not decide: the shield's verdict could not be read",
        ));
    corral(dir.path())
        .args([
            "shield",
            "guard-open",
            "--json",
            "How do I bake sourdough bread?",
        ])
        .assert()
        .success()
        .stdout(predicate::str::contains(r#""level": "warn""#))
        .stdout(predicate::str::contains("unparseable_verdict"));
}
