//! `corral serve` driven by real, unchanged API clients over loopback, with the local models and a
//! real PDF: the official `openai` Python SDK, Llama Stack's Python client 0.2.12, and the
//! `openai` and `llama-stack-client` npm packages (`scripts/fetch-test-clients.sh` installs them
//! under the cache; `scripts/test.sh` runs that first).

mod support;

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};

use support::{cache, needed};

/// A running `corral serve`, stopped when dropped.
struct Served {
    child: Child,
    base_url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve() -> Served {
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

[server]
data_dir = "{data}"

[[providers.safety]]
id = "rules"
type = "rules"

[[shields]]
id = "rules"
provider = "rules"
params = {{ presets = ["harmful-requests"] }}
"#,
        models = models.display(),
        data = dir.path().join("data").display()
    );
    let path = dir.path().join("corral.toml");
    std::fs::write(&path, config).expect("config written");
    let mut child = Command::new(assert_cmd::cargo::cargo_bin("corral"))
        .args(["serve", "--port", "0", "--config"])
        .arg(&path)
        .current_dir(dir.path())
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("corral serve starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut first = String::new();
    BufReader::new(stdout)
        .read_line(&mut first)
        .expect("the serving line");
    let base_url = first
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no URL in {first:?}"))
        .to_string();
    Served {
        child,
        base_url,
        _dir: dir,
    }
}

/// Runs a client script from `tests/clients/` against `base`, with the models and `pdf`.
fn run_client(script: &str, base: &str, pdf: &std::path::Path) {
    let python = needed(
        cache().join("venv-clients/bin/python"),
        "scripts/fetch-test-clients.sh",
    );
    let script = format!("{}/tests/clients/{script}", env!("CARGO_MANIFEST_DIR"));
    let output = Command::new(python)
        .args([&script, base, "gemma", "minilm"])
        .arg(pdf)
        .output()
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "{script} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("all steps passed"));
}

fn pdf() -> std::path::PathBuf {
    needed(
        cache().join("pdfs/glpk-doc/cnfsat.pdf"),
        "scripts/fetch-test-pdfs.sh",
    )
}

#[test]
fn the_node_clients_work_unchanged() {
    let modules = needed(
        cache().join("npm-clients/node_modules"),
        "scripts/fetch-test-clients.sh",
    );
    let served = serve();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/clients/node_clients.mjs"
    );
    let output = Command::new("node")
        .args([script, &served.base_url, "gemma", "minilm"])
        .arg(pdf())
        .env("NODE_PATH", &modules)
        .output()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "node_clients.mjs failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("all steps passed"));
}

#[test]
fn llama_stacks_python_client_0_2_12_works_unchanged() {
    let served = serve();
    let base = served.base_url.trim_end_matches("/v1").to_string();
    run_client("llama_stack_0212.py", &base, &pdf());
}

#[test]
fn the_openai_python_sdk_works_unchanged() {
    let served = serve();
    run_client("openai_sdk.py", &served.base_url, &pdf());
}
