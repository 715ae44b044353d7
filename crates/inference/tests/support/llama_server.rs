//! llama.cpp's `llama-server`, built from the `llama-cpp-python` sdist by
//! `scripts/build-llama-server.sh`, serving the Gemma 3 270M GGUF that
//! `scripts/fetch-test-models.sh` fetches: a real OpenAI-compatible server nobody here wrote.
//!
//! Found through `CORRAL_LLAMA_SERVER` and `CORRAL_TEST_GGUF`, else under `$CORRAL_CACHE` (default
//! `~/.cache/corral`). Started on a free loopback port with chat, completions and embeddings
//! (`--embeddings --pooling mean`), and stopped when dropped.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct LlamaServer {
    child: Child,
    port: u16,
    /// The model id the server reports (the GGUF path).
    pub model: String,
}

fn cache() -> PathBuf {
    std::env::var_os("CORRAL_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache/corral")))
        .unwrap_or_else(|| PathBuf::from(".cache/corral"))
}

fn binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("CORRAL_LLAMA_SERVER") {
        return Some(PathBuf::from(path));
    }
    let versions = std::fs::read_dir(cache().join("llama.cpp")).ok()?;
    versions
        .filter_map(Result::ok)
        .map(|entry| entry.path().join("bin/llama-server"))
        .find(|path| path.is_file())
}

fn gguf() -> PathBuf {
    std::env::var_os("CORRAL_TEST_GGUF")
        .map(PathBuf::from)
        .unwrap_or_else(|| cache().join("models/gemma-3-270m-q4_k_m.gguf"))
}

impl LlamaServer {
    /// Starts the server, or says why it cannot.
    pub async fn start() -> Result<Self, String> {
        Self::start_with(&[]).await
    }

    /// Starts the server with extra command-line arguments (e.g. `--chat-template gemma`).
    pub async fn start_with(extra: &[&str]) -> Result<Self, String> {
        let binary = binary().ok_or(
            "no llama-server: run scripts/build-llama-server.sh or set CORRAL_LLAMA_SERVER",
        )?;
        let model = gguf();
        if !model.is_file() {
            return Err(format!(
                "no model at {}: run scripts/fetch-test-models.sh or set CORRAL_TEST_GGUF",
                model.display()
            ));
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free port: {e}"))?
            .port();
        let child = Command::new(&binary)
            .args([
                "-m",
                &model.to_string_lossy(),
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
            ])
            .args([
                "-c",
                "2048",
                "-np",
                "1",
                "-t",
                "2",
                "--embeddings",
                "--pooling",
                "mean",
            ])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
        let mut server = Self {
            child,
            port,
            model: model.to_string_lossy().into_owned(),
        };
        server.wait_ready(Duration::from_secs(120)).await?;
        Ok(server)
    }

    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }

    /// Our remote client for this server, through the `remote::llama-cpp` preset.
    pub fn provider(&self) -> corral_inference::remote::RemoteProvider {
        use corral_inference::remote::{PRESETS, RemoteConfig, RemoteProvider};
        let preset = PRESETS
            .iter()
            .find(|p| p.name == "remote::llama-cpp")
            .expect("preset");
        let config: RemoteConfig =
            serde_json::from_value(serde_json::json!({"base_url": self.base_url()}))
                .expect("config");
        RemoteProvider::new(preset, config).expect("builds")
    }

    async fn wait_ready(&mut self, limit: Duration) -> Result<(), String> {
        let health = format!("http://127.0.0.1:{}/health", self.port);
        let client = reqwest::Client::new();
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("llama-server exited at start-up with {status}"));
            }
            if let Ok(response) = client.get(&health).send().await
                && response.status().is_success()
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Err(format!("llama-server was not ready within {limit:?}"))
    }
}

impl Drop for LlamaServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the server for a test. When it cannot be had, the test fails with what to run, unless
/// `CORRAL_SKIP_LLAMA_SERVER` is set: then it is skipped, saying so.
pub async fn for_test() -> Option<LlamaServer> {
    for_test_with(&[]).await
}

/// [`for_test`] with extra server arguments.
pub async fn for_test_with(extra: &[&str]) -> Option<LlamaServer> {
    match LlamaServer::start_with(extra).await {
        Ok(server) => Some(server),
        Err(why) if std::env::var_os("CORRAL_SKIP_LLAMA_SERVER").is_some() => {
            eprintln!("SKIPPED (CORRAL_SKIP_LLAMA_SERVER is set): llama-server test: {why}");
            None
        }
        Err(why) => panic!(
            "llama-server is needed: {why}. ./scripts/test.sh sets it up; set CORRAL_SKIP_LLAMA_SERVER=1 to skip"
        ),
    }
}
