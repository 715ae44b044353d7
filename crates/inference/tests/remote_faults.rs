//! The remote client against a scripted server that misbehaves on purpose: rate limits, server
//! errors, resets, stalls, streams that break off or carry garbage, bad credentials. Retries here
//! come from `corral-core`'s `Retrying`, the same wrapper the stack applies from config.

mod support;

use std::time::{Duration, Instant};

use corral_core::{
    CapabilityError, ChatError, ChatModel, ChatRequest, ErrorKind, InferenceProvider, Message,
    RetryPolicy, Retrying, StreamCollector,
};
use corral_inference::remote::{PRESETS, RemoteConfig, RemoteProvider};
use serde_json::json;
use support::{Cut, Reply, ScriptedServer, completion, finish_chunk, text_chunk, usage_chunk};

fn provider(preset: &str, config: serde_json::Value) -> RemoteProvider {
    let preset = PRESETS
        .iter()
        .find(|p| p.name == preset)
        .expect("preset exists");
    let config: RemoteConfig = serde_json::from_value(config).expect("valid config");
    RemoteProvider::new(preset, config).expect("provider builds")
}

fn compat(server: &ScriptedServer) -> RemoteProvider {
    provider(
        "remote::openai-compat",
        json!({"base_url": server.base_url(), "api_key": "sk-test-0123456789", "read_timeout_secs": 1}),
    )
}

fn request() -> ChatRequest {
    ChatRequest::new(vec![Message::user("What is the capital of France?")])
}

fn quick_retries() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_secs(5),
        jitter: false,
    }
}

#[tokio::test]
async fn a_completion_sends_the_key_and_reads_the_answer() {
    let server = ScriptedServer::start(vec![Reply::ok(completion("Paris."))]).await;
    let model = compat(&server).chat("gemma-3-270m");
    let answer = model.complete(&request()).await.expect("answers");
    assert_eq!(answer.text, "Paris.");
    assert_eq!(answer.usage.map(|u| u.total_tokens()), Some(11));
    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(
        (requests[0].method.as_str(), requests[0].target.as_str()),
        ("POST", "/v1/chat/completions")
    );
    assert_eq!(
        requests[0].header("authorization"),
        Some("Bearer sk-test-0123456789")
    );
    assert_eq!(requests[0].json()["model"], "gemma-3-270m");
    assert_eq!(requests[0].json().get("stream"), None);
}

#[tokio::test]
async fn a_stream_delivers_text_usage_and_finish() {
    let server = ScriptedServer::start(vec![Reply::sse(&[
        text_chunk("Par"),
        text_chunk("is."),
        finish_chunk("stop"),
        usage_chunk(9, 2),
    ])])
    .await;
    let model = compat(&server).chat("m");
    let answer = StreamCollector::collect(model.stream(&request()).await.expect("starts"))
        .await
        .expect("completes");
    assert_eq!(answer.text, "Paris.");
    assert_eq!(answer.usage.map(|u| u.completion_tokens), Some(2));
    let body = server.requests()[0].json();
    assert_eq!(body["stream"], true);
    assert_eq!(body["stream_options"], json!({"include_usage": true}));
}

#[tokio::test]
async fn parallel_tool_calls_streamed_in_fragments_are_assembled() {
    let chunk = |delta: serde_json::Value| json!({"choices": [{"index": 0, "delta": delta, "finish_reason": null}]});
    let server = ScriptedServer::start(vec![Reply::sse(&[
        chunk(json!({"role": "assistant", "content": null, "tool_calls": [
            {"index": 0, "id": "call_a", "type": "function", "function": {"name": "weather", "arguments": ""}}]})),
        chunk(json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"city\": \"Pa"}}]})),
        chunk(json!({"tool_calls": [{"index": 1, "id": "call_b", "type": "function", "function": {"name": "time", "arguments": "{\"tz\":"}}]})),
        chunk(json!({"tool_calls": [{"index": 0, "function": {"arguments": "ris\"}"}}]})),
        chunk(json!({"tool_calls": [{"index": 1, "function": {"arguments": " \"CET\"}"}}]})),
        finish_chunk("tool_calls"),
    ])])
    .await;
    let answer = StreamCollector::collect(
        compat(&server)
            .chat("m")
            .stream(&request())
            .await
            .expect("starts"),
    )
    .await
    .expect("completes");
    assert_eq!(answer.tool_calls.len(), 2);
    assert_eq!(
        (
            answer.tool_calls[0].id.as_str(),
            answer.tool_calls[0].name.as_str()
        ),
        ("call_a", "weather")
    );
    assert_eq!(answer.tool_calls[0].arguments, json!({"city": "Paris"}));
    assert_eq!(answer.tool_calls[1].arguments, json!({"tz": "CET"}));
}

#[tokio::test]
async fn rate_limits_are_retried_after_the_wait_the_server_asks_for() {
    let server = ScriptedServer::start(vec![
        Reply::status(
            429,
            r#"{"error":{"message":"Rate limit reached","type":"requests"}}"#,
        )
        .with_header("retry-after", "1"),
        Reply::ok(completion("Paris.")),
    ])
    .await;
    let model = Retrying::new(compat(&server).chat("m"), quick_retries());
    let start = Instant::now();
    assert_eq!(
        model
            .complete(&request())
            .await
            .expect("second attempt")
            .text,
        "Paris."
    );
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    let waited = requests[1].at - requests[0].at;
    assert!(
        waited >= Duration::from_secs(1),
        "retried after {waited:?}, before Retry-After"
    );
    assert!(start.elapsed() >= Duration::from_secs(1));
}

#[tokio::test]
async fn rate_limit_errors_carry_status_body_and_wait() {
    let server = ScriptedServer::start(vec![
        Reply::status(429, r#"{"error":{"message":"Rate limit reached"}}"#)
            .with_header("retry-after-ms", "1500"),
    ])
    .await;
    let error = compat(&server)
        .chat("m")
        .complete(&request())
        .await
        .expect_err("limited");
    assert_eq!(error.kind(), ErrorKind::RateLimited);
    assert_eq!(error.retry_after(), Some(Duration::from_millis(1500)));
    let ChatError::Provider(detail) = &error else {
        panic!("{error:?}")
    };
    assert_eq!(detail.status, Some(429));
    assert_eq!(
        detail.body.as_deref(),
        Some(r#"{"error":{"message":"Rate limit reached"}}"#)
    );
    assert_eq!(
        error.to_string(),
        "remote::openai-compat: Rate limit reached (HTTP 429)"
    );
}

#[tokio::test]
async fn server_errors_are_retried_then_succeed() {
    let server = ScriptedServer::start(vec![
        Reply::status(500, r#"{"error":{"message":"internal error"}}"#),
        Reply::status(503, "<html>Service Unavailable</html>"),
        Reply::ok(completion("Paris.")),
    ])
    .await;
    let model = Retrying::new(compat(&server).chat("m"), quick_retries());
    assert_eq!(
        model
            .complete(&request())
            .await
            .expect("third attempt")
            .text,
        "Paris."
    );
    let requests = server.requests();
    assert_eq!(requests.len(), 3);
    // Backoff doubles: 20 ms, then 40 ms.
    assert!(requests[1].at - requests[0].at >= Duration::from_millis(20));
    assert!(requests[2].at - requests[1].at >= Duration::from_millis(40));
}

#[tokio::test]
async fn a_reset_connection_is_transient_and_retried() {
    let server = ScriptedServer::start(vec![
        Reply::Reset,
        Reply::Reset,
        Reply::ok(completion("Paris.")),
    ])
    .await;
    let error = compat(&server)
        .chat("m")
        .complete(&request())
        .await
        .expect_err("reset");
    assert_eq!(error.kind(), ErrorKind::Transient, "{error}");
    let model = Retrying::new(compat(&server).chat("m"), quick_retries());
    assert_eq!(
        model.complete(&request()).await.expect("retried").text,
        "Paris."
    );
    assert_eq!(server.requests().len(), 3);
}

#[tokio::test]
async fn slow_headers_time_out_and_the_retry_gets_through() {
    let slow = Reply::After(
        Duration::from_secs(3),
        Box::new(Reply::ok(completion("late"))),
    );
    let server = ScriptedServer::start(vec![slow, Reply::ok(completion("Paris."))]).await;
    let start = Instant::now();
    let model = Retrying::new(compat(&server).chat("m"), quick_retries());
    assert_eq!(
        model
            .complete(&request())
            .await
            .expect("second attempt")
            .text,
        "Paris."
    );
    // The first attempt was given up at the 1 s read timeout, not after the server's 3 s.
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(server.requests().len(), 2);

    let slow = Reply::After(
        Duration::from_secs(3),
        Box::new(Reply::ok(completion("late"))),
    );
    let server = ScriptedServer::start(vec![slow]).await;
    let error = compat(&server)
        .chat("m")
        .complete(&request())
        .await
        .expect_err("times out");
    assert_eq!(error.kind(), ErrorKind::Timeout, "{error}");
}

#[tokio::test]
async fn a_stream_cut_mid_way_is_an_error_carrying_the_partial_text() {
    for cut in [Cut::Close, Cut::Reset] {
        let server = ScriptedServer::start(vec![
            Reply::Sse {
                events: vec![
                    text_chunk("The capital ").to_string(),
                    text_chunk("is Par").to_string(),
                ],
                cut: Some(cut),
            },
            Reply::ok(completion("never asked")),
        ])
        .await;
        // Retrying does not repeat a stream that has started: the caller has seen its text.
        let model = Retrying::new(compat(&server).chat("m"), quick_retries());
        let stream = model.stream(&request()).await.expect("starts");
        match StreamCollector::collect(stream).await {
            Err(ChatError::StreamInterrupted {
                partial_text,
                source,
            }) => {
                assert_eq!(partial_text, "The capital is Par", "{cut:?}");
                assert_eq!(source.kind, ErrorKind::Transient, "{cut:?}: {source}");
            }
            other => panic!("{cut:?}: expected StreamInterrupted, got {other:?}"),
        }
        assert_eq!(server.requests().len(), 1, "{cut:?}");
    }
}

#[tokio::test]
async fn a_stream_that_fails_before_any_text_is_retried() {
    let server = ScriptedServer::start(vec![
        Reply::Sse {
            events: vec![],
            cut: Some(Cut::Reset),
        },
        Reply::sse(&[text_chunk("Paris."), finish_chunk("stop")]),
    ])
    .await;
    let model = Retrying::new(compat(&server).chat("m"), quick_retries());
    let answer = StreamCollector::collect(
        model
            .stream(&request())
            .await
            .expect("second attempt starts"),
    )
    .await
    .expect("completes");
    assert_eq!(answer.text, "Paris.");
    assert_eq!(server.requests().len(), 2);
}

#[tokio::test]
async fn malformed_json_is_an_error_that_says_where() {
    let server = ScriptedServer::start(vec![Reply::Sse {
        events: vec![
            text_chunk("Paris").to_string(),
            "{\"choices\": [oops".to_string(),
        ],
        cut: None,
    }])
    .await;
    let stream = compat(&server)
        .chat("m")
        .stream(&request())
        .await
        .expect("starts");
    let error = StreamCollector::collect(stream).await.expect_err("garbled");
    assert!(
        error.to_string().contains("malformed stream event #2"),
        "{error}"
    );
    assert_eq!(error.kind(), ErrorKind::Permanent);

    let server = ScriptedServer::start(vec![Reply::status(200, "{\"choices\": ")]).await;
    let error = compat(&server)
        .chat("m")
        .complete(&request())
        .await
        .expect_err("garbled");
    assert!(
        error.to_string().contains("malformed chat completion"),
        "{error}"
    );
}

#[tokio::test]
async fn bad_credentials_are_not_retried_and_the_key_is_never_shown() {
    let echo = r#"{"error":{"message":"Incorrect API key provided: sk-test-0123456789","type":"invalid_request_error","code":"invalid_api_key"}}"#;
    let server = ScriptedServer::start(vec![
        Reply::status(401, echo),
        Reply::ok(completion("never")),
    ])
    .await;
    let model = Retrying::new(compat(&server).chat("m"), quick_retries());
    let error = model.complete(&request()).await.expect_err("unauthorised");
    assert_eq!(error.kind(), ErrorKind::Auth);
    assert_eq!(server.requests().len(), 1, "401 is not retried");
    let shown = format!("{error} {error:?}");
    assert!(
        !shown.contains("sk-test-0123456789"),
        "the key leaked: {shown}"
    );
    assert!(
        error
            .to_string()
            .contains("Incorrect API key provided: [redacted]"),
        "{error}"
    );
}

#[tokio::test]
async fn other_client_errors_are_permanent_and_context_overflows_are_named() {
    let overflow = r#"{"error":{"code":400,"message":"request (13392 tokens) exceeds the available context size (8192 tokens), try increasing it","type":"exceed_context_size_error","n_prompt_tokens":13392,"n_ctx":8192}}"#;
    let server = ScriptedServer::start(vec![
        Reply::status(400, overflow),
        Reply::status(404, r#"{"error":{"message":"model not found"}}"#),
    ])
    .await;
    let model = Retrying::new(compat(&server).chat("m"), quick_retries());
    let error = model.complete(&request()).await.expect_err("too long");
    assert_eq!(error.kind(), ErrorKind::ContextLengthExceeded);
    let error = model.complete(&request()).await.expect_err("unknown model");
    assert_eq!(error.kind(), ErrorKind::InvalidRequest);
    assert_eq!(server.requests().len(), 2, "neither is retried");
}

#[tokio::test]
async fn a_hosted_preset_without_a_key_fails_before_sending_anything() {
    let server = ScriptedServer::start(vec![Reply::ok(completion("never"))]).await;
    let together = provider(
        "remote::together",
        json!({"base_url": server.base_url(), "api_key_env": "CORRAL_TEST_KEY_THAT_IS_NOT_SET"}),
    );
    let error = together
        .chat("meta-llama/Llama-3.2-3B-Instruct")
        .complete(&request())
        .await
        .expect_err("no key");
    assert_eq!(error.kind(), ErrorKind::Auth);
    assert!(
        error
            .to_string()
            .contains("set CORRAL_TEST_KEY_THAT_IS_NOT_SET"),
        "{error}"
    );
    assert!(server.requests().is_empty());
}

#[tokio::test]
async fn presets_map_model_names_and_send_keys_their_way() {
    let server =
        ScriptedServer::start(vec![Reply::ok(completion("a")), Reply::ok(completion("b"))]).await;
    let together = provider(
        "remote::together",
        json!({"base_url": server.base_url(), "api_key": "tk-1"}),
    );
    together
        .chat("meta-llama/Llama-3.2-3B-Instruct")
        .complete(&request())
        .await
        .expect("answers");
    let azure = provider(
        "remote::azure-openai",
        json!({"base_url": format!("{}/deployments/gpt", server.base_url()), "api_key": "az-1"}),
    );
    azure
        .chat("gpt-4o")
        .complete(&request())
        .await
        .expect("answers");
    let requests = server.requests();
    assert_eq!(
        requests[0].json()["model"],
        "meta-llama/Llama-3.2-3B-Instruct-Turbo"
    );
    assert_eq!(requests[0].header("authorization"), Some("Bearer tk-1"));
    assert_eq!(
        requests[1].target,
        "/v1/deployments/gpt/chat/completions?api-version=2024-10-21"
    );
    assert_eq!(requests[1].header("api-key"), Some("az-1"));
    assert_eq!(requests[1].header("authorization"), None);
}

#[tokio::test]
async fn embeddings_are_batched_and_keep_input_order() {
    let vector = |x: f32| json!([x, x + 1.0, x + 2.0]);
    let data = |items: &[(usize, f32)]| json!({"object": "list", "data": items.iter().map(|(i, x)| json!({"object": "embedding", "index": i, "embedding": vector(*x)})).collect::<Vec<_>>()});
    let server = ScriptedServer::start(vec![
        Reply::ok(data(&[(0, 0.0)])),
        Reply::ok(data(&[(1, 2.0), (0, 1.0)])),
        Reply::ok(data(&[(0, 3.0), (1, 4.0)])),
        Reply::ok(data(&[(0, 5.0)])),
    ])
    .await;
    let provider = provider(
        "remote::openai-compat",
        json!({"base_url": server.base_url(), "embedding_batch_size": "2"}),
    );
    let embedder = provider
        .embedder("minilm")
        .await
        .expect("probes the dimension");
    assert_eq!(embedder.dimension(), 3);
    let inputs: Vec<String> = ["a", "b", "c", "d", "e"].map(String::from).to_vec();
    let vectors = embedder.embed(&inputs).await.expect("embeds");
    let firsts: Vec<f32> = vectors.iter().map(|v| v[0]).collect();
    assert_eq!(firsts, [1.0, 2.0, 3.0, 4.0, 5.0]);
    let requests = server.requests();
    assert_eq!(requests.len(), 4, "a probe, then batches of 2, 2 and 1");
    assert_eq!(
        requests[3].json(),
        json!({"model": "minilm", "input": ["e"]})
    );
    assert_eq!(
        requests[1].header("authorization"),
        None,
        "no key configured, none sent"
    );
}

#[tokio::test]
async fn model_listings_come_from_get_models() {
    let server = ScriptedServer::start(vec![Reply::ok(json!({"object": "list", "data": [
        {"id": "gemma-3-270m", "object": "model", "owned_by": "llamacpp"},
        {"id": "minilm", "object": "model"}
    ]}))])
    .await;
    let models = compat(&server).list_models().await.expect("lists");
    assert_eq!(
        models,
        Some(vec!["gemma-3-270m".to_string(), "minilm".to_string()])
    );
    assert_eq!(server.requests()[0].method, "GET");
}

fn raw_sse(body: &str) -> Reply {
    Reply::Bytes {
        status: 200,
        content_type: "text/event-stream",
        body: body.as_bytes().to_vec(),
    }
}

#[tokio::test]
async fn a_stream_that_says_done_before_finishing_is_not_a_complete_answer() {
    let events = format!("data: {}\n\ndata: [DONE]\n\n", text_chunk("Par"));
    let server = ScriptedServer::start(vec![raw_sse(&events)]).await;
    let stream = compat(&server)
        .chat("m")
        .stream(&request())
        .await
        .expect("starts");
    match StreamCollector::collect(stream).await {
        Err(ChatError::StreamInterrupted {
            partial_text,
            source,
        }) => {
            assert_eq!(partial_text, "Par");
            assert_eq!(source.kind, ErrorKind::Transient);
        }
        other => panic!("expected StreamInterrupted, got {other:?}"),
    }
}

#[tokio::test]
async fn errors_reported_inside_a_stream_are_classified() {
    let cases = [
        (
            r#"event: error
data: {"error":{"message":"upstream overloaded","type":"server_error","code":null}}

"#
            .to_string(),
            ErrorKind::Transient,
        ),
        (
            format!(
                "data: {}\n\n",
                json!({"error": {"message": "slow down", "type": "rate_limit_error"}})
            ),
            ErrorKind::RateLimited,
        ),
        (
            format!(
                "data: {}\n\n",
                json!({"error": {"message": "request (9000 tokens) exceeds the available context size (8192 tokens)", "code": "400"}})
            ),
            ErrorKind::ContextLengthExceeded,
        ),
        (
            format!(
                "data: {}\n\n",
                json!({"error": {"message": "bad", "code": 400}})
            ),
            ErrorKind::InvalidRequest,
        ),
    ];
    for (body, kind) in cases {
        let server = ScriptedServer::start(vec![raw_sse(&body)]).await;
        let stream = compat(&server)
            .chat("m")
            .stream(&request())
            .await
            .expect("starts");
        let error = StreamCollector::collect(stream)
            .await
            .expect_err("reported");
        assert_eq!(error.kind(), kind, "{body}: {error}");
        assert!(error.to_string().contains("mid-stream"), "{error}");
    }
}

#[tokio::test]
async fn trouble_after_the_finish_reason_does_not_fail_a_complete_answer() {
    let body = format!(
        "data: {}\n\ndata: {}\n\ndata: {{\"usage\": garbage",
        text_chunk("Paris."),
        finish_chunk("stop")
    );
    let server = ScriptedServer::start(vec![raw_sse(&body)]).await;
    let stream = compat(&server)
        .chat("m")
        .stream(&request())
        .await
        .expect("starts");
    let answer = StreamCollector::collect(stream)
        .await
        .expect("complete despite the torn tail");
    assert_eq!(answer.text, "Paris.");
}

#[tokio::test]
async fn x_should_retry_flips_retrying_but_keeps_the_kind_of_fault() {
    let server = ScriptedServer::start(vec![
        Reply::status(400, r#"{"error":{"message":"bad"}}"#).with_header("x-should-retry", "false"),
        Reply::status(409, r#"{"error":{"message":"conflict, try again"}}"#)
            .with_header("x-should-retry", "true"),
        Reply::status(503, r#"{"error":{"message":"busy"}}"#)
            .with_header("x-should-retry", "false"),
    ])
    .await;
    let model = compat(&server).chat("m");
    assert_eq!(
        model.complete(&request()).await.expect_err("400").kind(),
        ErrorKind::InvalidRequest
    );
    assert_eq!(
        model.complete(&request()).await.expect_err("409").kind(),
        ErrorKind::Transient
    );
    assert_eq!(
        model.complete(&request()).await.expect_err("503").kind(),
        ErrorKind::Permanent
    );
}

#[tokio::test]
async fn an_absurd_retry_after_is_not_waited_for_and_does_not_panic() {
    let server = ScriptedServer::start(vec![
        Reply::status(429, r#"{"error":{"message":"later"}}"#).with_header("retry-after", "1e20"),
        Reply::ok(completion("never")),
    ])
    .await;
    let model = Retrying::new(compat(&server).chat("m"), quick_retries());
    let error = model.complete(&request()).await.expect_err("gives up");
    assert_eq!(error.kind(), ErrorKind::RateLimited);
    assert_eq!(server.requests().len(), 1);
}
