//! Client overhead of the remote provider, against llama-server's own per-token time.
//!
//! `cargo bench -p corral-inference --bench remote_overhead` prints:
//! - per streamed token: a scripted loopback server streams N chunks as fast as it can write them,
//!   and the client turns them into deltas; the time per delta bounds our per-token overhead;
//! - per request: non-streaming requests against the same server, end to end;
//! - llama-server's own decode time per token on the Gemma 3 270M file, streamed through the same
//!   client, when `CORRAL_LLAMA_SERVER` and `CORRAL_TEST_GGUF` (or the files under
//!   `~/.cache/corral`, see `scripts/`) are there; the ratio of the two is the figure that matters.

#[path = "../tests/support/mod.rs"]
mod support;

#[path = "../tests/support/llama_server.rs"]
mod llama_server;

use std::time::{Duration, Instant};

use corral_core::{ChatModel, ChatRequest, GenerateRequest, Message, Sampling};
use corral_inference::remote::{PRESETS, RemoteConfig, RemoteProvider};
use futures::StreamExt;
use support::{Reply, ScriptedServer, completion, finish_chunk, text_chunk};

fn provider(base_url: &str) -> RemoteProvider {
    let config: RemoteConfig =
        serde_json::from_value(serde_json::json!({ "base_url": base_url })).expect("config");
    RemoteProvider::new(&PRESETS[0], config).expect("builds")
}

async fn per_streamed_token(tokens: usize, rounds: usize) -> Duration {
    let mut events: Vec<serde_json::Value> =
        (0..tokens).map(|i| text_chunk(&format!(" t{i}"))).collect();
    events.push(finish_chunk("length"));
    let server = ScriptedServer::start((0..rounds).map(|_| Reply::sse(&events)).collect()).await;
    let model = provider(&server.base_url()).chat("m");
    let request = ChatRequest::new(vec![Message::user("go")]);
    let mut best = Duration::MAX;
    for _ in 0..rounds {
        let start = Instant::now();
        let mut stream = model.stream(&request).await.expect("starts");
        let mut deltas = 0;
        while let Some(delta) = stream.next().await {
            delta.expect("delta");
            deltas += 1;
        }
        assert_eq!(deltas, tokens + 1);
        best = best.min(start.elapsed());
    }
    best / tokens as u32
}

async fn per_request(requests: usize) -> Duration {
    let server =
        ScriptedServer::start((0..requests).map(|_| Reply::ok(completion("ok"))).collect()).await;
    let model = provider(&server.base_url()).chat("m");
    let request = ChatRequest::new(vec![Message::user("go")]);
    let start = Instant::now();
    for _ in 0..requests {
        model.complete(&request).await.expect("answers");
    }
    start.elapsed() / requests as u32
}

async fn llama_server_per_token(tokens: u32) -> Option<Duration> {
    let server = match llama_server::LlamaServer::start().await {
        Ok(server) => server,
        Err(why) => {
            println!("llama-server: skipped ({why})");
            return None;
        }
    };
    let model = provider(&server.base_url()).chat("gemma");
    let request = GenerateRequest {
        prompt: "Once upon a time".into(),
        sampling: Sampling::greedy(),
        max_tokens: Some(tokens),
        stop: vec![],
    };
    let mut best = Duration::MAX;
    for _ in 0..3 {
        let mut stream = model.generate(&request).await.expect("starts");
        // Time from the first delta on: decode only, not prompt processing.
        let first = stream.next().await;
        assert!(first.is_some());
        let start = Instant::now();
        let mut count = 1;
        while let Some(delta) = stream.next().await {
            if matches!(delta.expect("delta"), corral_core::ChatDelta::Text { .. }) {
                count += 1;
            }
        }
        best = best.min(start.elapsed() / (count - 1).max(1));
    }
    Some(best)
}

fn main() {
    // `cargo test --all-targets` builds and runs bench targets too; measure only under `cargo bench`.
    if !std::env::args().any(|arg| arg == "--bench") {
        println!(
            "remote_overhead: run with `cargo bench -p corral-inference --bench remote_overhead`"
        );
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let token = per_streamed_token(2000, 5).await;
        let request = per_request(200).await;
        println!(
            "client per streamed token (scripted server): {:.2} µs",
            token.as_secs_f64() * 1e6
        );
        println!(
            "client per request, non-streaming (scripted server): {:.1} µs",
            request.as_secs_f64() * 1e6
        );
        if let Some(decode) = llama_server_per_token(128).await {
            println!(
                "llama-server decode per token (Gemma 3 270M Q4_K_M): {:.2} ms",
                decode.as_secs_f64() * 1e3
            );
            println!(
                "client overhead per token / llama-server's time per token: {:.3}% (target < 5%)",
                100.0 * token.as_secs_f64() / decode.as_secs_f64()
            );
        }
    });
}
