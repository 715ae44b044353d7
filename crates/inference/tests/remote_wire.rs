//! What the client sends equals what the OpenAI API reference documents (the golden files in
//! `tests/golden/`, written by hand from the reference).

mod support;

use corral_core::{
    ChatModel, ChatRequest, ContentPart, GenerateRequest, Message, ResponseFormat, Sampling,
    StreamCollector, ToolCall, ToolChoice, ToolSpec,
};
use corral_inference::remote::{PRESETS, RemoteConfig, RemoteProvider};
use serde_json::{Value, json};
use support::{Reply, ScriptedServer, completion, finish_chunk, text_chunk};

fn golden(name: &str) -> Value {
    let path = format!("{}/tests/golden/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn provider(server: &ScriptedServer) -> RemoteProvider {
    let config: RemoteConfig =
        serde_json::from_value(json!({"base_url": server.base_url()})).expect("config");
    RemoteProvider::new(&PRESETS[0], config).expect("builds")
}

/// Sends one non-streaming request and returns the body the server received.
async fn sent(model: &str, request: ChatRequest) -> Value {
    let server = ScriptedServer::start(vec![Reply::ok(completion("ok"))]).await;
    provider(&server)
        .chat(model)
        .complete(&request)
        .await
        .expect("answers");
    server.requests()[0].json()
}

#[tokio::test]
async fn tools_tool_calls_and_tool_results() {
    let weather = ToolSpec {
        name: "get_weather".into(),
        description: "Current weather for a city".into(),
        parameters: json!({
            "type": "object",
            "properties": {"city": {"type": "string", "description": "The city name"}},
            "required": ["city"]
        }),
    };
    let request = ChatRequest::new(vec![
        Message::system("You are a weather assistant."),
        Message::user("What is the weather in Paris?"),
        Message::assistant_tool_calls(
            "",
            vec![ToolCall {
                id: "call_1".into(),
                name: "get_weather".into(),
                arguments: json!({"city": "Paris"}),
            }],
        ),
        Message::tool_result("call_1", "18°C, clear"),
    ])
    .with_tools(vec![weather], ToolChoice::Tool("get_weather".into()));
    assert_eq!(
        sent("meta-llama/Llama-3.2-3B-Instruct", request).await,
        golden("chat_tools.json")
    );
}

#[tokio::test]
async fn images_by_url_and_inline() {
    let request = ChatRequest::new(vec![Message::user_parts(vec![
        ContentPart::text("What is in these images?"),
        ContentPart::image_url("https://upload.wikimedia.org/wikipedia/commons/3/3a/Cat03.jpg"),
        ContentPart::image_url("data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAE="),
    ])])
    .with_max_tokens(300);
    assert_eq!(
        sent("meta-llama/Llama-3.2-11B-Vision-Instruct", request).await,
        golden("chat_image.json")
    );
}

#[tokio::test]
async fn json_schema_response_format() {
    let request = ChatRequest::new(vec![Message::user(
        "Which city is the capital of France? Answer as JSON.",
    )])
    .with_response_format(ResponseFormat::JsonSchema {
        name: "capital".into(),
        schema: json!({
            "type": "object",
            "properties": {"city": {"type": "string"}, "country": {"type": "string"}},
            "required": ["city", "country"],
            "additionalProperties": false
        }),
        strict: true,
    });
    assert_eq!(sent("m", request).await, golden("chat_json_schema.json"));
}

#[tokio::test]
async fn sampling_options_on_a_stream() {
    let server = ScriptedServer::start(vec![Reply::sse(&[
        text_chunk("Once"),
        finish_chunk("stop"),
    ])])
    .await;
    let request = ChatRequest::new(vec![Message::user("Tell me a story.")])
        .with_sampling(Sampling {
            temperature: Some(0.7),
            top_p: Some(0.9),
            top_k: Some(40),
            min_p: Some(0.05),
            repetition_penalty: Some(1.1),
            presence_penalty: Some(0.5),
            frequency_penalty: Some(0.25),
            seed: Some(42),
        })
        .with_max_tokens(64)
        .with_stop(vec!["\n\n".into(), "THE END".into()]);
    let stream = provider(&server)
        .chat("m")
        .stream(&request)
        .await
        .expect("starts");
    StreamCollector::collect(stream).await.expect("completes");
    assert_eq!(
        server.requests()[0].json(),
        golden("chat_sampling_stream.json")
    );
}

#[tokio::test]
async fn raw_completion_stream() {
    let chunk = json!({"id": "cmpl-1", "object": "text_completion", "choices": [{"index": 0, "text": " Paris", "finish_reason": null}]});
    let end = json!({"id": "cmpl-1", "object": "text_completion", "choices": [{"index": 0, "text": ".", "finish_reason": "stop"}]});
    let server = ScriptedServer::start(vec![Reply::sse(&[chunk, end])]).await;
    let request = GenerateRequest {
        prompt: "The capital city of France is called".into(),
        sampling: Sampling::greedy(),
        max_tokens: Some(16),
        stop: vec![],
    };
    let stream = provider(&server)
        .chat("m")
        .generate(&request)
        .await
        .expect("starts");
    let answer = StreamCollector::collect(stream).await.expect("completes");
    assert_eq!(answer.text, " Paris.");
    let sent = &server.requests()[0];
    assert_eq!(sent.target, "/v1/completions");
    assert_eq!(sent.json(), golden("completion_stream.json"));
}
