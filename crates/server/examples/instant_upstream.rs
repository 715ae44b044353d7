//! An instant, scripted OpenAI-compatible upstream for the server benchmark
//! (`scripts/bench-server.sh`): both Corral and Llama Stack point their `remote::vllm` provider at
//! it, so what the benchmark measures is the server in front, not a model.
//!
//! It answers `GET /v1/models`, `POST /v1/chat/completions` (whole or streamed, the same canned
//! sentence in 16 deltas, with usage when asked), and `POST /v1/embeddings` (float or base64; a
//! deterministic unit vector per input text, so a store built through it can be searched).
//!
//! ```text
//! cargo run --release -p corral-server --example instant_upstream -- 127.0.0.1:0
//! ```
//! prints `listening on http://ADDR/v1` once bound. One thread: it should cost the measured
//! servers as little CPU as possible.

use std::fmt::Write as _;
use std::hash::{DefaultHasher, Hash, Hasher};

use axum::Router;
use axum::extract::Json;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use serde_json::{Value, json};

/// The dimension of the scripted embeddings (that of all-MiniLM-L6-v2, which Llama Stack's
/// examples register).
const DIMENSION: usize = 384;

/// The canned answer, one delta per element.
const WORDS: [&str; 16] = [
    "The",
    " answer",
    " to",
    " the",
    " question",
    " is",
    " in",
    " the",
    " second",
    " section",
    " of",
    " the",
    " attached",
    " document",
    " [1]",
    ".",
];

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".to_string());
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|e| format!("binding {addr}: {e}"))?;
    let app = Router::new()
        .route("/v1/models", get(models))
        .route("/v1/chat/completions", post(chat))
        .route("/v1/embeddings", post(embeddings));
    println!("listening on http://{}/v1", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}

async fn models() -> Json<Value> {
    let model = |id: &str| json!({"id": id, "object": "model", "created": 0, "owned_by": "bench"});
    Json(json!({"object": "list", "data": [model("instant"), model("instant-embed")]}))
}

async fn chat(Json(request): Json<Value>) -> Response {
    let model = request["model"].as_str().unwrap_or("instant").to_string();
    let prompt_tokens = serde_json::to_string(&request["messages"]).map_or(0, |s| s.len() / 4);
    let usage = json!({
        "prompt_tokens": prompt_tokens,
        "completion_tokens": WORDS.len(),
        "total_tokens": prompt_tokens + WORDS.len(),
    });
    if request["stream"].as_bool() != Some(true) {
        return Json(json!({
            "id": "chatcmpl-instant",
            "object": "chat.completion",
            "created": 0,
            "model": model,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": WORDS.concat()},
                "finish_reason": "stop",
            }],
            "usage": usage,
        }))
        .into_response();
    }
    let chunk = |delta: Value, finish: Value| {
        json!({
            "id": "chatcmpl-instant",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        })
    };
    let mut events = vec![chunk(
        json!({"role": "assistant", "content": ""}),
        Value::Null,
    )];
    events.extend(
        WORDS
            .iter()
            .map(|word| chunk(json!({"content": word}), Value::Null)),
    );
    events.push(chunk(json!({}), json!("stop")));
    if request["stream_options"]["include_usage"].as_bool() == Some(true) {
        events.push(json!({
            "id": "chatcmpl-instant",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": model,
            "choices": [],
            "usage": usage,
        }));
    }
    let mut body = String::new();
    for event in events {
        let _ = write!(body, "data: {event}\n\n");
    }
    body.push_str("data: [DONE]\n\n");
    ([(header::CONTENT_TYPE, "text/event-stream")], body).into_response()
}

async fn embeddings(Json(request): Json<Value>) -> Response {
    let inputs: Vec<String> = match &request["input"] {
        Value::String(text) => vec![text.clone()],
        Value::Array(items) => items
            .iter()
            .map(|item| {
                item.as_str()
                    .map_or_else(|| item.to_string(), str::to_string)
            })
            .collect(),
        _ => {
            let error = json!({"error": {"message": "`input` must be a string or an array"}});
            return (axum::http::StatusCode::BAD_REQUEST, Json(error)).into_response();
        }
    };
    let base64 = request["encoding_format"].as_str() == Some("base64");
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(index, text)| {
            let vector = embed(text);
            let embedding = if base64 {
                let bytes: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
                json!(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(vector)
            };
            json!({"object": "embedding", "index": index, "embedding": embedding})
        })
        .collect();
    let tokens: usize = inputs.iter().map(|text| text.len() / 4).sum();
    Json(json!({
        "object": "list",
        "model": request["model"],
        "data": data,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }))
    .into_response()
}

/// A unit vector drawn from a generator seeded by the text: the same text, the same vector.
fn embed(text: &str) -> Vec<f32> {
    let mut hasher = DefaultHasher::new();
    text.hash(&mut hasher);
    let mut state = hasher.finish() | 1;
    let mut vector: Vec<f32> = (0..DIMENSION)
        .map(|_| {
            // xorshift64
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect();
    let norm = vector
        .iter()
        .map(|x| x * x)
        .sum::<f32>()
        .sqrt()
        .max(f32::EPSILON);
    vector.iter_mut().for_each(|x| *x /= norm);
    vector
}
