//! The Bedrock provider against a scripted loopback endpoint: Converse requests as the API reference
//! documents them, responses and event-stream frames in AWS's shapes, exceptions classified, and
//! every request signed with a SigV4 signature that an independent implementation here verifies.

mod support;

use aws_smithy_eventstream::frame::write_message_to;
use aws_smithy_types::event_stream::{Header, HeaderValue, Message as Frame};
use corral_core::{
    CapabilityError, ChatError, ChatModel, ChatRequest, ContentPart, ErrorKind, FinishReason,
    Message, Sampling, StreamCollector, ToolCall, ToolChoice, ToolSpec,
};
use corral_inference::bedrock::{BedrockConfig, BedrockProvider};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use support::{Recorded, Reply, ScriptedServer};

const KEY_ID: &str = "AKIDEXAMPLE";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

fn provider(server: &ScriptedServer, extra: Value) -> BedrockProvider {
    let mut config = json!({
        "region": "us-west-2",
        "endpoint": server.base_url().trim_end_matches("/v1"),
        "access_key_id": KEY_ID,
        "secret_access_key": SECRET,
    });
    if let (Value::Object(config), Value::Object(extra)) = (&mut config, extra) {
        config.extend(extra);
    }
    let config: BedrockConfig = serde_json::from_value(config).expect("config");
    // No environment: the credentials are exactly the ones configured here.
    BedrockProvider::with_env(config, &|_| None).expect("builds")
}

fn frame(event_type: &str, payload: Value) -> Vec<u8> {
    let message = Frame::new(payload.to_string().into_bytes())
        .add_header(Header::new(
            ":message-type",
            HeaderValue::String("event".into()),
        ))
        .add_header(Header::new(
            ":event-type",
            HeaderValue::String(event_type.to_string().into()),
        ))
        .add_header(Header::new(
            ":content-type",
            HeaderValue::String("application/json".into()),
        ));
    let mut bytes = Vec::new();
    write_message_to(&message, &mut bytes).expect("encodes");
    bytes
}

fn exception(kind: &str, message: &str) -> Vec<u8> {
    let message = Frame::new(json!({"message": message}).to_string().into_bytes())
        .add_header(Header::new(
            ":message-type",
            HeaderValue::String("exception".into()),
        ))
        .add_header(Header::new(
            ":exception-type",
            HeaderValue::String(kind.to_string().into()),
        ));
    let mut bytes = Vec::new();
    write_message_to(&message, &mut bytes).expect("encodes");
    bytes
}

fn event_stream(frames: &[Vec<u8>]) -> Reply {
    Reply::Bytes {
        status: 200,
        content_type: "application/vnd.amazon.eventstream",
        body: frames.concat(),
    }
}

fn text_stream() -> Vec<Vec<u8>> {
    vec![
        frame("messageStart", json!({"role": "assistant"})),
        frame(
            "contentBlockDelta",
            json!({"delta": {"text": "Par"}, "contentBlockIndex": 0}),
        ),
        frame(
            "contentBlockDelta",
            json!({"delta": {"text": "is."}, "contentBlockIndex": 0}),
        ),
        frame("contentBlockStop", json!({"contentBlockIndex": 0})),
        frame("messageStop", json!({"stopReason": "end_turn"})),
        frame(
            "metadata",
            json!({"usage": {"inputTokens": 12, "outputTokens": 3, "totalTokens": 15}, "metrics": {"latencyMs": 310}}),
        ),
    ]
}

fn question() -> ChatRequest {
    ChatRequest::new(vec![Message::user("What is the capital of France?")])
}

/// SigV4 computed from the specification, independently of `aws-sigv4`, over the request exactly
/// as the server received it.
fn expected_signature(request: &Recorded, secret: &str) -> (String, String) {
    let authorization = request.header("authorization").expect("signed");
    let fields: Vec<&str> = authorization
        .strip_prefix("AWS4-HMAC-SHA256 ")
        .expect("SigV4 algorithm")
        .split(", ")
        .collect();
    let field = |name: &str| {
        fields
            .iter()
            .find_map(|f| f.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("{name} in {authorization}"))
    };
    let scope = field("Credential")
        .split_once('/')
        .expect("key id/scope")
        .1
        .to_string();
    let signed_headers = field("SignedHeaders");
    let (path, query) = request
        .target
        .split_once('?')
        .unwrap_or((&request.target, ""));
    // Non-S3 services sign the path encoded once more than it is sent.
    let canonical_path = path.replace('%', "%25");
    let canonical_headers: String = signed_headers
        .split(';')
        .map(|name| {
            format!(
                "{name}:{}\n",
                request.header(name).expect("signed header sent").trim()
            )
        })
        .collect();
    let canonical = format!(
        "{}\n{canonical_path}\n{query}\n{canonical_headers}\n{signed_headers}\n{}",
        request.method,
        hex::encode(Sha256::digest(request.body.as_bytes()))
    );
    let amz_date = request.header("x-amz-date").expect("x-amz-date");
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical))
    );
    let hmac = |key: &[u8], data: &str| {
        let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
        mac.update(data.as_bytes());
        mac.finalize().into_bytes().to_vec()
    };
    let mut key = format!("AWS4{secret}").into_bytes();
    for part in scope.split('/') {
        key = hmac(&key, part);
    }
    (
        hex::encode(hmac(&key, &string_to_sign)),
        field("Signature").to_string(),
    )
}

#[tokio::test]
async fn converse_requests_match_the_api_reference_and_are_signed() {
    let server = ScriptedServer::start(vec![Reply::ok(json!({
        "output": {"message": {"role": "assistant", "content": [{"text": "It is 'Elemental Hotel'."}]}},
        "stopReason": "end_turn",
        "usage": {"inputTokens": 30, "outputTokens": 8, "totalTokens": 38},
        "metrics": {"latencyMs": 1275}
    }))])
    .await;
    let top_song = ToolSpec {
        name: "top_song".into(),
        description: "Get the most popular song played on a radio station.".into(),
        parameters: json!({
            "type": "object",
            "properties": {"sign": {"type": "string", "description": "The call sign of the station, e.g. WZPZ."}},
            "required": ["sign"]
        }),
    };
    let request = ChatRequest::new(vec![
        Message::system("You are a radio assistant."),
        Message::user_parts(vec![
            ContentPart::text(
                "What song is number one on this station, and what is in the picture?",
            ),
            ContentPart::image_url("data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAE="),
        ]),
        Message::assistant_tool_calls(
            "Let me look that up.",
            vec![ToolCall {
                id: "tooluse_1".into(),
                name: "top_song".into(),
                arguments: json!({"sign": "WZPZ"}),
            }],
        ),
        Message::tool_result("tooluse_1", "Elemental Hotel, by 8 Storey Hike"),
        Message::user("Thanks. Anything else?"),
    ])
    .with_tools(vec![top_song], ToolChoice::Tool("top_song".into()))
    .with_max_tokens(512)
    .with_stop(vec!["\n\nHuman:".into()])
    .with_sampling(Sampling {
        temperature: Some(0.5),
        top_p: Some(0.9),
        ..Sampling::default()
    });

    let answer = provider(&server, json!({}))
        .chat("meta-llama/Llama-3.2-11B-Vision-Instruct")
        .complete(&request)
        .await;
    let answer = answer.expect("answers");
    assert_eq!(answer.text, "It is 'Elemental Hotel'.");
    assert_eq!(
        answer.usage.map(|u| (u.prompt_tokens, u.completion_tokens)),
        Some((30, 8))
    );

    let sent = &server.requests()[0];
    // The Llama 3.2 models are served on demand through the region's inference profile.
    assert_eq!(
        sent.target,
        "/model/us.meta.llama3-2-11b-instruct-v1%3A0/converse"
    );
    let golden = std::fs::read_to_string(format!(
        "{}/tests/golden/bedrock_converse_request.json",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("golden file");
    assert_eq!(
        sent.json(),
        serde_json::from_str::<Value>(&golden).expect("golden JSON")
    );

    let authorization = sent.header("authorization").expect("signed");
    let date = &sent.header("x-amz-date").expect("dated")[..8];
    assert!(
        authorization.starts_with(&format!("AWS4-HMAC-SHA256 Credential={KEY_ID}/{date}/us-west-2/bedrock/aws4_request, SignedHeaders=")),
        "{authorization}"
    );
    let signed_headers = authorization
        .split("SignedHeaders=")
        .nth(1)
        .and_then(|r| r.split(',').next())
        .expect("list");
    for required in ["content-type", "host", "x-amz-date"] {
        assert!(
            signed_headers.split(';').any(|h| h == required),
            "{required} not signed: {signed_headers}"
        );
    }
    let (expected, sent_signature) = expected_signature(sent, SECRET);
    assert_eq!(sent_signature.len(), 64);
    assert_eq!(sent_signature, expected, "the signature does not verify");
}

#[tokio::test]
async fn temporary_credentials_send_their_session_token_and_still_verify() {
    let server = ScriptedServer::start(vec![event_stream(&text_stream())]).await;
    let bedrock = provider(&server, json!({"session_token": "FQoGZXIvYXdzEXAMPLE"}));
    let stream = bedrock
        .chat("meta.llama3-2-3b-instruct-v1:0")
        .stream(&question())
        .await
        .expect("starts");
    StreamCollector::collect(stream).await.expect("completes");
    let sent = &server.requests()[0];
    assert_eq!(
        sent.target,
        "/model/meta.llama3-2-3b-instruct-v1%3A0/converse-stream"
    );
    assert_eq!(
        sent.header("x-amz-security-token"),
        Some("FQoGZXIvYXdzEXAMPLE")
    );
    let (expected, signature) = expected_signature(sent, SECRET);
    assert_eq!(signature, expected);
}

#[tokio::test]
async fn a_bedrock_api_key_is_sent_as_a_bearer_token_instead() {
    let server = ScriptedServer::start(vec![event_stream(&text_stream())]).await;
    let bedrock = provider(&server, json!({"api_key": "ABSKbedrock-api-key-example"}));
    let stream = bedrock
        .chat("meta.llama3-2-1b-instruct-v1:0")
        .stream(&question())
        .await
        .expect("starts");
    StreamCollector::collect(stream).await.expect("completes");
    let sent = &server.requests()[0];
    assert_eq!(
        sent.header("authorization"),
        Some("Bearer ABSKbedrock-api-key-example")
    );
    assert_eq!(sent.header("x-amz-date"), None);
}

#[tokio::test]
async fn the_event_stream_becomes_deltas() {
    let server = ScriptedServer::start(vec![event_stream(&text_stream())]).await;
    let stream = provider(&server, json!({}))
        .chat("m")
        .stream(&question())
        .await
        .expect("starts");
    let answer = StreamCollector::collect(stream).await.expect("completes");
    assert_eq!(answer.text, "Paris.");
    assert_eq!(answer.finish_reason, FinishReason::Stop);
    assert_eq!(answer.usage.map(|u| u.total_tokens()), Some(15));
}

#[tokio::test]
async fn streamed_tool_use_is_assembled() {
    let frames = vec![
        frame("messageStart", json!({"role": "assistant"})),
        frame(
            "contentBlockDelta",
            json!({"delta": {"text": "Checking."}, "contentBlockIndex": 0}),
        ),
        frame("contentBlockStop", json!({"contentBlockIndex": 0})),
        frame(
            "contentBlockStart",
            json!({"start": {"toolUse": {"toolUseId": "tooluse_7", "name": "top_song"}}, "contentBlockIndex": 1}),
        ),
        frame(
            "contentBlockDelta",
            json!({"delta": {"toolUse": {"input": "{\"sign\": "}}, "contentBlockIndex": 1}),
        ),
        frame(
            "contentBlockDelta",
            json!({"delta": {"toolUse": {"input": "\"WZPZ\"}"}}, "contentBlockIndex": 1}),
        ),
        frame("contentBlockStop", json!({"contentBlockIndex": 1})),
        frame("messageStop", json!({"stopReason": "tool_use"})),
    ];
    let server = ScriptedServer::start(vec![event_stream(&frames)]).await;
    let stream = provider(&server, json!({}))
        .chat("m")
        .stream(&question())
        .await
        .expect("starts");
    let answer = StreamCollector::collect(stream).await.expect("completes");
    assert_eq!(answer.text, "Checking.");
    assert_eq!(answer.finish_reason, FinishReason::ToolCalls);
    assert_eq!(answer.tool_calls.len(), 1);
    assert_eq!(answer.tool_calls[0].id, "tooluse_7");
    assert_eq!(answer.tool_calls[0].arguments, json!({"sign": "WZPZ"}));
}

#[tokio::test]
async fn exceptions_in_the_stream_are_classified_and_keep_the_partial_text() {
    let mut frames = text_stream()[..2].to_vec();
    frames.push(exception(
        "throttlingException",
        "Too many requests, please wait before trying again.",
    ));
    let server = ScriptedServer::start(vec![event_stream(&frames)]).await;
    let stream = provider(&server, json!({}))
        .chat("m")
        .stream(&question())
        .await
        .expect("starts");
    match StreamCollector::collect(stream).await {
        Err(ChatError::StreamInterrupted {
            partial_text,
            source,
        }) => {
            assert_eq!(partial_text, "Par");
            assert_eq!(source.kind, ErrorKind::RateLimited);
            assert!(source.message.contains("throttlingException"), "{source}");
        }
        other => panic!("expected StreamInterrupted, got {other:?}"),
    }
}

#[tokio::test]
async fn a_frame_cut_short_is_a_transient_error() {
    let mut body = text_stream()[..2].concat();
    let next = frame(
        "contentBlockDelta",
        json!({"delta": {"text": "is."}, "contentBlockIndex": 0}),
    );
    body.extend_from_slice(&next[..next.len() / 2]);
    let server = ScriptedServer::start(vec![Reply::Bytes {
        status: 200,
        content_type: "application/vnd.amazon.eventstream",
        body,
    }])
    .await;
    let stream = provider(&server, json!({}))
        .chat("m")
        .stream(&question())
        .await
        .expect("starts");
    match StreamCollector::collect(stream).await {
        Err(ChatError::StreamInterrupted {
            partial_text,
            source,
        }) => {
            assert_eq!(partial_text, "Par");
            assert_eq!(source.kind, ErrorKind::Transient, "{source}");
        }
        other => panic!("expected StreamInterrupted, got {other:?}"),
    }
}

#[tokio::test]
async fn http_errors_are_classified_like_any_provider() {
    let server = ScriptedServer::start(vec![
        Reply::status(
            429,
            r#"{"message":"Too many requests, please wait before trying again."}"#,
        )
        .with_header(
            "x-amzn-ErrorType",
            "ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/",
        ),
        Reply::status(
            400,
            r#"{"message":"Input is too long for requested model."}"#,
        ),
        Reply::status(
            403,
            r#"{"message":"The security token included in the request is invalid."}"#,
        ),
    ])
    .await;
    let model = provider(&server, json!({})).chat("m");
    let limited = model.complete(&question()).await.expect_err("throttled");
    assert_eq!(limited.kind(), ErrorKind::RateLimited);
    assert!(
        limited.to_string().contains("Too many requests"),
        "{limited}"
    );
    assert_eq!(
        model
            .complete(&question())
            .await
            .expect_err("too long")
            .kind(),
        ErrorKind::ContextLengthExceeded
    );
    assert_eq!(
        model
            .complete(&question())
            .await
            .expect_err("denied")
            .kind(),
        ErrorKind::Auth
    );
}

#[tokio::test]
async fn options_converse_has_no_field_for_are_refused_not_dropped() {
    let server = ScriptedServer::start(vec![]).await;
    let model = provider(&server, json!({})).chat("m");
    let request = question().with_sampling(Sampling {
        top_k: Some(40),
        seed: Some(1),
        ..Sampling::default()
    });
    let error = model.complete(&request).await.expect_err("refused");
    assert_eq!(error.kind(), ErrorKind::InvalidRequest);
    assert!(error.to_string().contains("top_k, seed"), "{error}");
    let by_url = ChatRequest::new(vec![Message::user_parts(vec![ContentPart::image_url(
        "https://example.com/a.png",
    )])]);
    assert!(
        model
            .complete(&by_url)
            .await
            .expect_err("refused")
            .to_string()
            .contains("inline")
    );
    assert!(server.requests().is_empty());
}

#[tokio::test]
async fn missing_credentials_fail_before_anything_is_sent() {
    let server = ScriptedServer::start(vec![]).await;
    let config: BedrockConfig = serde_json::from_value(json!({
        "region": "eu-central-1",
        "endpoint": server.base_url().trim_end_matches("/v1"),
    }))
    .expect("config");
    let bedrock = BedrockProvider::with_env(config, &|_| None).expect("builds");
    let error = bedrock
        .chat("m")
        .complete(&question())
        .await
        .expect_err("no credentials");
    assert_eq!(error.kind(), ErrorKind::Auth);
    assert!(error.to_string().contains("AWS_ACCESS_KEY_ID"), "{error}");
    assert!(server.requests().is_empty());
}

#[tokio::test]
async fn credentials_come_from_one_source() {
    let server = ScriptedServer::start(vec![
        event_stream(&text_stream()),
        event_stream(&text_stream()),
    ])
    .await;
    let endpoint = server.base_url().trim_end_matches("/v1").to_string();
    let environment = |name: &str| match name {
        "AWS_BEARER_TOKEN_BEDROCK" => Some("env-bearer-token".to_string()),
        "AWS_SESSION_TOKEN" => Some("env-session-token".to_string()),
        "AWS_REGION" => Some("eu-west-1".to_string()),
        _ => None,
    };
    // Keys in the config: SigV4 with exactly those, no token from the environment.
    let config: BedrockConfig = serde_json::from_value(json!({
        "endpoint": endpoint, "access_key_id": KEY_ID, "secret_access_key": SECRET
    }))
    .expect("config");
    let signed = BedrockProvider::with_env(config, &environment).expect("builds");
    let stream = signed
        .chat("meta-llama/Llama-3.2-1B-Instruct")
        .stream(&question())
        .await
        .expect("starts");
    StreamCollector::collect(stream).await.expect("completes");
    // Nothing in the config: the environment's bearer token.
    let config: BedrockConfig =
        serde_json::from_value(json!({"endpoint": endpoint})).expect("config");
    let bearer = BedrockProvider::with_env(config, &environment).expect("builds");
    let stream = bearer.chat("m").stream(&question()).await.expect("starts");
    StreamCollector::collect(stream).await.expect("completes");

    let requests = server.requests();
    assert_eq!(requests[0].header("x-amz-security-token"), None);
    assert!(
        requests[0]
            .header("authorization")
            .is_some_and(|a| a.contains("/eu-west-1/bedrock/"))
    );
    assert_eq!(
        requests[0].target,
        "/model/eu.meta.llama3-2-1b-instruct-v1%3A0/converse-stream"
    );
    let (expected, signature) = expected_signature(&requests[0], SECRET);
    assert_eq!(signature, expected);
    assert_eq!(
        requests[1].header("authorization"),
        Some("Bearer env-bearer-token")
    );
}

#[tokio::test]
async fn tool_choice_none_leaves_the_tools_out_or_is_refused() {
    let server = ScriptedServer::start(vec![event_stream(&text_stream())]).await;
    let model = provider(&server, json!({})).chat("m");
    let tool = ToolSpec {
        name: "f".into(),
        description: String::new(),
        parameters: json!({"type": "object"}),
    };
    let request = question().with_tools(vec![tool.clone()], ToolChoice::None);
    StreamCollector::collect(model.stream(&request).await.expect("starts"))
        .await
        .expect("completes");
    assert_eq!(server.requests()[0].json().get("toolConfig"), None);

    let history = ChatRequest::new(vec![
        Message::user("hi"),
        Message::assistant_tool_calls(
            "",
            vec![ToolCall {
                id: "t".into(),
                name: "f".into(),
                arguments: json!({}),
            }],
        ),
        Message::tool_result("t", "done"),
    ])
    .with_tools(vec![tool], ToolChoice::None);
    let error = model.complete(&history).await.expect_err("refused");
    assert_eq!(error.kind(), ErrorKind::InvalidRequest);
    let empty = ChatRequest::new(vec![Message::user("hi"), Message::assistant("")]);
    assert!(
        model
            .complete(&empty)
            .await
            .expect_err("refused")
            .to_string()
            .contains("message 1 is empty")
    );
}

#[tokio::test]
async fn malformed_model_output_and_a_body_that_is_not_a_stream_are_errors() {
    let frames = vec![
        frame(
            "contentBlockDelta",
            json!({"delta": {"text": "{\"na"}, "contentBlockIndex": 0}),
        ),
        frame("messageStop", json!({"stopReason": "malformed_tool_use"})),
    ];
    let not_a_stream = Reply::status(200, r#"{"message":"this proxy answered with JSON"}"#);
    let server = ScriptedServer::start(vec![event_stream(&frames), not_a_stream]).await;
    let model = provider(&server, json!({})).chat("m");
    let error = StreamCollector::collect(model.stream(&question()).await.expect("starts"))
        .await
        .expect_err("malformed");
    assert!(error.to_string().contains("malformed_tool_use"), "{error}");
    let error = model.stream(&question()).await.err().expect("not a stream");
    assert!(
        error.to_string().contains("this proxy answered with JSON"),
        "{error}"
    );
}
