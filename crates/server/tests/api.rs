//! The API end to end over loopback HTTP: a real server on a free port, driven with reqwest, with
//! scripted models behind it. Shapes are checked field by field as OpenAI's and Llama Stack's
//! clients read them.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use base64::Engine as _;
use corral_core::testing::{ScriptedChatModel, Step};
use corral_core::{
    ChatError, ChatModel, EmbedError, Embedder, Embedding, InferenceProvider, Message, ToolCall,
    async_trait,
};
use corral_stack::{Config, ProviderType, Registry, Stack};
use serde::Deserialize;
use serde_json::{Value, json};

/// Each text becomes `[length, 1, 0]`.
struct Lengths;

#[async_trait]
impl Embedder for Lengths {
    fn dimension(&self) -> usize {
        3
    }
    fn max_input_tokens(&self) -> usize {
        256
    }
    async fn embed(&self, inputs: &[String]) -> Result<Vec<Embedding>, EmbedError> {
        Ok(inputs
            .iter()
            .map(|t| vec![t.len() as f32, 1.0, 0.0])
            .collect())
    }
}

struct Provider {
    model: Arc<ScriptedChatModel>,
}

#[async_trait]
impl InferenceProvider for Provider {
    async fn chat_model(&self, _: &str) -> Result<Arc<dyn ChatModel>, ChatError> {
        Ok(self.model.clone())
    }
    async fn embedder(&self, _: &str) -> Result<Arc<dyn Embedder>, EmbedError> {
        Ok(Arc::new(Lengths))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Empty {}

const CONFIG: &str = r#"
[[providers.inference]]
id = "p"
type = "test::scripted"

[[models]]
id = "chat"
provider = "p"
kind = "chat"

[[models]]
id = "emb"
provider = "p"
kind = "embedding"

[[providers.safety]]
id = "rules"
type = "rules"

[[shields]]
id = "rules"
provider = "rules"
params = { deny_keywords = ["forbidden-word"] }
"#;

/// Keys for two tenants, `a` and `b`.
const TWO_TENANTS: &str = r#"
[[server.api_keys]]
key = "key-a"
tenant = "a"

[[server.api_keys]]
key = "key-b"
tenant = "b"
"#;

struct Server {
    base: String,
    client: reqwest::Client,
    model: Arc<ScriptedChatModel>,
    _shutdown: tokio::sync::oneshot::Sender<()>,
    _data: tempfile::TempDir,
}

async fn start(steps: Vec<Step>, extra: &str) -> Server {
    let model = Arc::new(ScriptedChatModel::new(steps));
    let mut registry = Registry::builtin();
    let scripted = model.clone();
    registry.inference.add(ProviderType::new(
        "test::scripted",
        "a scripted model",
        move |_: Empty| {
            Ok(Arc::new(Provider {
                model: scripted.clone(),
            }) as Arc<dyn corral_core::InferenceProvider>)
        },
    ));
    let data = tempfile::tempdir().unwrap();
    let text = format!(
        "{CONFIG}\n[server]\ndata_dir = {:?}\n{extra}",
        data.path().display().to_string()
    );
    let config = Config::from_toml_str(&text, "corral.toml", &|_: &str| None).unwrap();
    let stack = Arc::new(Stack::build(config, "corral.toml", &registry).unwrap());
    let listener = corral_server::bind("127.0.0.1", 0).await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(corral_server::serve(stack, listener, async {
        let _ = rx.await;
    }));
    Server {
        base,
        client: reqwest::Client::new(),
        model,
        _shutdown: tx,
        _data: data,
    }
}

impl Server {
    /// A request with `key` as its Bearer token, when given.
    fn with_key(
        &self,
        request: reqwest::RequestBuilder,
        key: Option<&str>,
    ) -> reqwest::RequestBuilder {
        match key {
            Some(key) => request.bearer_auth(key),
            None => request,
        }
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        key: Option<&str>,
    ) -> (u16, Value) {
        let url = format!("{}{path}", self.base);
        let request = match method {
            "GET" => self.client.get(url),
            "DELETE" => self.client.delete(url),
            _ => self.client.post(url),
        };
        let request = match body {
            Some(body) => request.json(&body),
            None => request,
        };
        let r = self.with_key(request, key).send().await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    async fn upload(
        &self,
        name: &str,
        bytes: &[u8],
        purpose: &str,
        key: Option<&str>,
    ) -> (u16, Value) {
        let form = reqwest::multipart::Form::new()
            .text("purpose", purpose.to_string())
            .part(
                "file",
                reqwest::multipart::Part::bytes(bytes.to_vec()).file_name(name.to_string()),
            );
        let request = self
            .client
            .post(format!("{}/v1/files", self.base))
            .multipart(form);
        let r = self.with_key(request, key).send().await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let r = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .client
            .post(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    /// The `data:` payloads of a streamed answer.
    async fn stream(&self, path: &str, body: Value) -> Vec<String> {
        let r = self
            .client
            .post(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/event-stream")
        );
        let text = r.text().await.unwrap();
        text.lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .map(str::to_owned)
            .collect()
    }
}

#[tokio::test]
async fn models_are_listed_for_openai_and_llama_stack_clients() {
    let server = start(vec![], "").await;
    let (status, body) = server.get("/v1/models").await;
    assert_eq!(status, 200);
    assert_eq!(body["object"], "list");
    let chat = &body["data"][0];
    assert_eq!(chat["id"], "chat");
    assert_eq!(chat["object"], "model");
    assert_eq!(chat["owned_by"], "p");
    assert_eq!(chat["identifier"], "chat");
    assert_eq!(chat["model_type"], "llm");
    assert_eq!(body["data"][1]["model_type"], "embedding");
    let (status, one) = server.get("/v1/models/emb").await;
    assert_eq!((status, one["id"].as_str()), (200, Some("emb")));
    let (status, missing) = server.get("/v1/models/nope").await;
    assert_eq!(status, 404);
    assert_eq!(missing["error"]["type"], "not_found_error");
    assert_eq!(missing["error"]["code"], "model_not_found");
    // Llama Stack 0.2's prefix for the same routes.
    let (status, alias) = server.get("/v1/openai/v1/models").await;
    assert_eq!(
        (status, alias["data"].as_array().map(Vec::len)),
        (200, Some(2))
    );
    let (status, health) = server.get("/v1/health").await;
    assert_eq!((status, health["status"].as_str()), (200, Some("OK")));
    let (_, version) = server.get("/v1/version").await;
    assert_eq!(version["version"], env!("CARGO_PKG_VERSION"));
    let (_, providers) = server.get("/v1/providers").await;
    assert!(
        providers["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["api"] == "inference"
                && p["provider_id"] == "p"
                && p["provider_type"] == "test::scripted"
                && p.get("config").is_none())
    );
    let (_, routes) = server.get("/v1/inspect/routes").await;
    assert!(
        routes["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["route"] == "/v1/chat/completions" && r["method"] == "POST")
    );
    let (status, unknown) = server.get("/v1/nowhere").await;
    assert_eq!(
        (status, unknown["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
}

#[tokio::test]
async fn a_chat_completion_translates_messages_and_answers_in_openai_shape() {
    let server = start(vec![Step::text("Paris.")], "").await;
    let (status, body) = server
        .post(
            "/v1/chat/completions",
            json!({
                "model": "chat",
                "messages": [
                    {"role": "developer", "content": "Be brief."},
                    {"role": "user", "content": [
                        {"type": "text", "text": "Capital of "},
                        {"type": "text", "text": "France?"},
                        {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}
                    ]}
                ],
                "temperature": 0,
                "max_completion_tokens": 7,
                "stop": "\n",
                "seed": 3,
                "user": "ignored-field"
            }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["object"], "chat.completion");
    assert!(body["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(body["model"], "chat");
    assert_eq!(body["choices"][0]["message"]["role"], "assistant");
    assert_eq!(body["choices"][0]["message"]["content"], "Paris.");
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert_eq!(body["usage"]["total_tokens"], 0);
    let request = &server.model.requests()[0];
    assert_eq!(request.messages[0], Message::system("Be brief."));
    let Message::User { content } = &request.messages[1] else {
        panic!("{:?}", request.messages[1]);
    };
    assert_eq!(content.len(), 3);
    assert_eq!(request.max_tokens, Some(7));
    assert_eq!(request.stop, ["\n"]);
    assert_eq!(request.sampling.temperature, Some(0.0));
    assert_eq!(request.sampling.seed, Some(3));
}

#[tokio::test]
async fn tools_go_in_and_tool_calls_come_out() {
    let call = ToolCall {
        id: "call_1".into(),
        name: "weather".into(),
        arguments: json!({"city": "Oslo"}),
    };
    let server = start(
        vec![
            Step::tool_calls(vec![call.clone()]),
            Step::tool_calls(vec![call]),
        ],
        "",
    )
    .await;
    let body = json!({
        "model": "chat",
        "messages": [
            {"role": "user", "content": "Weather in Oslo?"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_0", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Bergen\"}"}}
            ]},
            {"role": "tool", "tool_call_id": "call_0", "content": "rain"}
        ],
        "tools": [{"type": "function", "function": {
            "name": "weather", "description": "Weather by city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}
        }}],
        "tool_choice": {"type": "function", "function": {"name": "weather"}}
    });
    let (status, answer) = server.post("/v1/chat/completions", body.clone()).await;
    assert_eq!(status, 200, "{answer}");
    let message = &answer["choices"][0]["message"];
    assert_eq!(message["content"], Value::Null);
    assert_eq!(message["tool_calls"][0]["id"], "call_1");
    assert_eq!(message["tool_calls"][0]["type"], "function");
    assert_eq!(message["tool_calls"][0]["function"]["name"], "weather");
    let arguments: Value = serde_json::from_str(
        message["tool_calls"][0]["function"]["arguments"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(arguments, json!({"city": "Oslo"}));
    assert_eq!(answer["choices"][0]["finish_reason"], "tool_calls");
    let request = &server.model.requests()[0];
    assert_eq!(request.tools[0].name, "weather");
    assert_eq!(
        request.tool_choice,
        corral_core::ToolChoice::Tool("weather".into())
    );
    assert_eq!(
        request.messages[1],
        Message::assistant_tool_calls(
            "",
            vec![ToolCall {
                id: "call_0".into(),
                name: "weather".into(),
                arguments: json!({"city": "Bergen"}),
            }]
        )
    );
    assert_eq!(request.messages[2], Message::tool_result("call_0", "rain"));

    // Streamed: the call's id and name come first, then its arguments.
    let mut streamed = body;
    streamed["stream"] = json!(true);
    let events = server.stream("/v1/chat/completions", streamed).await;
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    let calls: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"].get("tool_calls"))
        .collect();
    assert_eq!(calls[0][0]["id"], "call_1");
    assert_eq!(calls[0][0]["function"]["name"], "weather");
    let arguments: String = calls
        .iter()
        .map(|c| c[0]["function"]["arguments"].as_str().unwrap())
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&arguments).unwrap(),
        json!({"city": "Oslo"})
    );
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "tool_calls"
    );
}

#[tokio::test]
async fn a_streamed_chat_sends_chunks_usage_and_done() {
    let server = start(vec![Step::text("Hello there, friend.")], "").await;
    let events = server
        .stream(
            "/v1/chat/completions",
            json!({
                "model": "chat",
                "messages": [{"role": "user", "content": "Hi"}],
                "stream": true,
                "stream_options": {"include_usage": true}
            }),
        )
        .await;
    assert_eq!(events.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    assert!(
        chunks
            .iter()
            .all(|c| c["object"] == "chat.completion.chunk")
    );
    assert!(chunks.iter().all(|c| c["id"] == chunks[0]["id"]));
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "Hello there, friend.");
    let finish = &chunks[chunks.len() - 2];
    assert_eq!(finish["choices"][0]["finish_reason"], "stop");
    let usage = chunks.last().unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert!(usage["usage"]["total_tokens"].is_number());
}

#[tokio::test]
async fn a_provider_failure_mid_stream_becomes_an_error_event() {
    let server = start(
        vec![Step::Stream(vec![
            Ok(corral_core::ChatDelta::Text { text: "par".into() }),
            Err(ChatError::Provider(corral_core::ProviderError::new(
                corral_core::ErrorKind::Transient,
                "upstream reset: secret-internal-host:9999",
            ))),
        ])],
        "",
    )
    .await;
    let events = server
        .stream(
            "/v1/chat/completions",
            json!({"model": "chat", "messages": [{"role": "user", "content": "Hi"}], "stream": true}),
        )
        .await;
    let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert_eq!(last["error"]["type"], "server_error");
    assert_eq!(last["error"]["code"], "provider_unavailable");
    assert!(!events.iter().any(|e| e == "[DONE]"));
    assert!(
        !events.concat().contains("secret-internal-host"),
        "no internal detail leaks"
    );
}

#[tokio::test]
async fn bad_requests_get_openai_errors_that_name_the_field() {
    let server = start(vec![], "").await;
    let cases = [
        (json!({"model": "chat"}), "messages", 400),
        (json!({"model": "chat", "messages": []}), "messages", 400),
        (
            json!({"model": "chat", "messages": [{"role": "pilot", "content": "x"}]}),
            "messages[0]",
            400,
        ),
        (
            json!({"model": "chat", "messages": [{"role": "user", "content": "x"}], "n": 2}),
            "n",
            400,
        ),
        (
            json!({"model": "chat", "messages": [{"role": "user", "content": "x"}], "temperature": "hot"}),
            "temperature",
            400,
        ),
        (
            json!({"model": "chat", "messages": [{"role": "user", "content": "x"}], "tool_choice": "sometimes"}),
            "tool_choice",
            400,
        ),
        (
            json!({"model": "emb", "messages": [{"role": "user", "content": "x"}]}),
            "model",
            400,
        ),
        (
            json!({"model": "nope", "messages": [{"role": "user", "content": "x"}]}),
            "",
            404,
        ),
    ];
    for (body, param, status) in cases {
        let (got, error) = server.post("/v1/chat/completions", body.clone()).await;
        assert_eq!(got, status, "{body} → {error}");
        let message = error["error"]["message"].as_str().unwrap();
        assert!(message.contains(param), "{body}: {message}");
        if status == 400 {
            assert_eq!(error["error"]["type"], "invalid_request_error");
        }
    }
    let response = server
        .client
        .post(format!("{}/v1/chat/completions", server.base))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["type"], "invalid_request_error");
    let (status, error) = server
        .post(
            "/v1/completions",
            json!({"model": "chat", "prompt": ["a", "b"]}),
        )
        .await;
    assert_eq!(
        (status, error["error"]["param"].as_str()),
        (400, Some("prompt"))
    );
}

#[tokio::test]
async fn raw_completions_continue_the_prompt_whole_or_streamed() {
    let server = start(
        vec![Step::text(" upon a time"), Step::text(" there was")],
        "",
    )
    .await;
    let (status, body) = server
        .post(
            "/v1/completions",
            json!({"model": "chat", "prompt": "Once", "max_tokens": 4}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["object"], "text_completion");
    assert_eq!(body["choices"][0]["text"], " upon a time");
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert_eq!(server.model.prompts(), ["Once"]);
    let events = server
        .stream(
            "/v1/completions",
            json!({"model": "chat", "prompt": "Once upon a time", "stream": true}),
        )
        .await;
    assert_eq!(events.last().unwrap(), "[DONE]");
    let text: String = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str::<Value>(e).unwrap())
        .filter_map(|c| c["choices"][0]["text"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(text, " there was");
}

#[tokio::test]
async fn embeddings_come_as_floats_or_base64() {
    let server = start(vec![], "").await;
    let (status, body) = server
        .post(
            "/v1/embeddings",
            json!({"model": "emb", "input": ["ab", "abcd"]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["object"], "list");
    assert_eq!(body["data"][1]["index"], 1);
    assert_eq!(body["data"][1]["embedding"], json!([4.0, 1.0, 0.0]));
    let (_, encoded) = server
        .post(
            "/v1/embeddings",
            json!({"model": "emb", "input": "abc", "encoding_format": "base64"}),
        )
        .await;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded["data"][0]["embedding"].as_str().unwrap())
        .unwrap();
    let floats: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    assert_eq!(floats, [3.0, 1.0, 0.0]);
    for (body, param) in [
        (json!({"model": "emb", "input": [[1, 2]]}), "input"),
        (json!({"model": "emb", "input": []}), "input"),
        (
            json!({"model": "emb", "input": "x", "dimensions": 2}),
            "dimensions",
        ),
        (
            json!({"model": "emb", "input": "x", "encoding_format": "hex"}),
            "encoding_format",
        ),
        (json!({"model": "chat", "input": "x"}), "model"),
    ] {
        let (status, error) = server.post("/v1/embeddings", body.clone()).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(error["error"]["param"], param, "{body}: {error}");
    }
}

#[tokio::test]
async fn shields_run_as_llama_stack_and_openai_moderation() {
    let server = start(vec![], "").await;
    let (_, shields) = server.get("/v1/shields").await;
    assert_eq!(shields["data"][0]["identifier"], "rules");
    let (status, clean) = server
        .post(
            "/v1/safety/run-shield",
            json!({"shield_id": "rules", "messages": [{"role": "user", "content": "hello"}], "params": {}}),
        )
        .await;
    assert_eq!((status, &clean["violation"]), (200, &Value::Null));
    let (_, blocked) = server
        .post(
            "/v1/safety/run-shield",
            json!({"shield_id": "rules", "messages": [{"role": "user", "content": "say forbidden-word"}]}),
        )
        .await;
    assert_eq!(blocked["violation"]["violation_level"], "error");
    let (status, moderated) = server
        .post(
            "/v1/moderations",
            json!({"input": ["fine", "a forbidden-word here"]}),
        )
        .await;
    assert_eq!(status, 200, "{moderated}");
    assert_eq!(moderated["model"], "rules");
    assert_eq!(moderated["results"][0]["flagged"], false);
    assert_eq!(moderated["results"][1]["flagged"], true);
    assert!(
        !moderated["results"][1]["categories"]
            .as_object()
            .unwrap()
            .is_empty()
    );
    let (status, missing) = server
        .post(
            "/v1/safety/run-shield",
            json!({"shield_id": "nope", "messages": []}),
        )
        .await;
    assert_eq!(
        (status, missing["error"]["param"].as_str()),
        (404, Some("shield_id"))
    );
}

#[tokio::test]
async fn api_keys_admit_their_tenants_and_nobody_else() {
    let server = start(
        vec![],
        r#"
[[server.api_keys]]
key = "key-a"
tenant = "a"
"#,
    )
    .await;
    let url = format!("{}/v1/models", server.base);
    let none = server.client.get(&url).send().await.unwrap();
    assert_eq!(none.status(), 401);
    let error: Value = none.json().await.unwrap();
    assert_eq!(error["error"]["type"], "authentication_error");
    let wrong = server
        .client
        .get(&url)
        .bearer_auth("key-b")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let right = server
        .client
        .get(&url)
        .bearer_auth("key-a")
        .send()
        .await
        .unwrap();
    assert_eq!(right.status(), 200);
    // Health stays open for load balancers.
    let (status, _) = server.get("/v1/health").await;
    assert_eq!(status, 200);
}

#[test]
fn no_keys_is_refused_off_loopback_unless_allowed() {
    let mut settings = corral_stack::ServerSettings::default();
    let public: std::net::IpAddr = "0.0.0.0".parse().unwrap();
    let error = corral_server::Auth::from_settings(&settings, public).unwrap_err();
    assert!(error.contains("server.api_keys"), "{error}");
    assert!(corral_server::Auth::from_settings(&settings, "127.0.0.1".parse().unwrap()).is_ok());
    assert!(corral_server::Auth::from_settings(&settings, "::1".parse().unwrap()).is_ok());
    settings.allow_unauthenticated = true;
    assert!(corral_server::Auth::from_settings(&settings, public).is_ok());
}

const GUIDE: &str = "# Pets\n\nKittens sleep sixteen hours a day and purr when content.\n\n# Plants\n\nFerns like shade and damp soil.\n";

#[tokio::test]
async fn files_are_uploaded_attached_to_a_store_searched_and_deleted() {
    let server = start(vec![], "").await;
    let (status, file) = server
        .upload("../guide.md", GUIDE.as_bytes(), "assistants", None)
        .await;
    assert_eq!(status, 200, "{file}");
    assert_eq!(file["object"], "file");
    assert_eq!(
        file["filename"], "guide.md",
        "the path part of the name is dropped"
    );
    assert_eq!(file["bytes"], GUIDE.len());
    let file_id = file["id"].as_str().unwrap().to_string();
    let content = server
        .client
        .get(format!("{}/v1/files/{file_id}/content", server.base))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(&content[..], GUIDE.as_bytes());
    let (_, files) = server.call("GET", "/v1/files", None, None).await;
    assert_eq!(files["data"][0]["id"], file_id.as_str());

    let (status, store) = server
        .call(
            "POST",
            "/v1/vector_stores",
            Some(json!({"name": "handbook", "metadata": {"team": "a"}})),
            None,
        )
        .await;
    assert_eq!(status, 200, "{store}");
    assert_eq!(store["object"], "vector_store");
    assert_eq!(store["embedding_model"], "emb");
    let store_id = store["id"].as_str().unwrap().to_string();
    let (status, attached) = server
        .call(
            "POST",
            &format!("/v1/vector_stores/{store_id}/files"),
            Some(json!({"file_id": file_id, "attributes": {"kind": "guide"},
                        "chunking_strategy": {"type": "static", "static": {"max_chunk_size_tokens": 100, "chunk_overlap_tokens": 20}}})),
            None,
        )
        .await;
    assert_eq!(status, 200, "{attached}");
    assert_eq!(attached["status"], "completed");
    assert_eq!(
        attached["chunking_strategy"]["static"]["max_chunk_size_tokens"],
        100
    );
    let (_, store) = server
        .call("GET", &format!("/v1/vector_stores/{store_id}"), None, None)
        .await;
    assert_eq!(store["file_counts"]["completed"], 1);

    let (status, found) = server
        .call(
            "POST",
            &format!("/v1/vector_stores/{store_id}/search"),
            Some(json!({"query": "kittens purr", "max_num_results": 3})),
            None,
        )
        .await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["object"], "vector_store.search_results.page");
    let hit = &found["data"][0];
    assert_eq!(hit["file_id"], file_id.as_str());
    assert_eq!(hit["filename"], "guide.md");
    assert_eq!(hit["attributes"]["kind"], "guide");
    assert!(
        hit["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("Kittens"),
        "{hit}"
    );

    // A batch of a second file; a file that holds no text is recorded as failed.
    let (_, binary) = server
        .upload("blob.bin", &[0, 159, 146, 150, 0, 1], "assistants", None)
        .await;
    let binary_id = binary["id"].as_str().unwrap();
    let (status, batch) = server
        .call(
            "POST",
            &format!("/v1/vector_stores/{store_id}/file_batches"),
            Some(json!({"file_ids": [binary_id]})),
            None,
        )
        .await;
    assert_eq!(status, 200, "{batch}");
    assert_eq!(batch["status"], "completed");
    assert_eq!(batch["file_counts"]["failed"], 1);
    let (_, again) = server
        .call(
            "GET",
            &format!(
                "/v1/vector_stores/{store_id}/file_batches/{}",
                batch["id"].as_str().unwrap()
            ),
            None,
            None,
        )
        .await;
    assert_eq!(again["file_counts"], batch["file_counts"]);
    let (_, failed) = server
        .call(
            "GET",
            &format!("/v1/vector_stores/{store_id}/files/{binary_id}"),
            None,
            None,
        )
        .await;
    assert_eq!(failed["status"], "failed");
    assert!(
        failed["last_error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("blob.bin"),
        "{failed}"
    );

    // Deleting the file takes its chunks out of the store.
    let (status, deleted) = server
        .call("DELETE", &format!("/v1/files/{file_id}"), None, None)
        .await;
    assert_eq!((status, &deleted["deleted"]), (200, &json!(true)));
    let (_, found) = server
        .call(
            "POST",
            &format!("/v1/vector_stores/{store_id}/search"),
            Some(json!({"query": "kittens purr"})),
            None,
        )
        .await;
    assert_eq!(found["data"], json!([]), "{found}");
    let (status, _) = server
        .call("GET", &format!("/v1/files/{file_id}"), None, None)
        .await;
    assert_eq!(status, 404);
    let (status, _) = server
        .call(
            "DELETE",
            &format!("/v1/vector_stores/{store_id}"),
            None,
            None,
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = server
        .call("GET", &format!("/v1/vector_stores/{store_id}"), None, None)
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn attribute_filters_narrow_searches_and_file_search() {
    let server = start(vec![Step::text("Kätzchen schlafen viel [1].")], "").await;
    let (_, store) = server
        .call(
            "POST",
            "/v1/vector_stores",
            Some(json!({"name": "pets"})),
            None,
        )
        .await;
    let store_id = store["id"].as_str().unwrap().to_string();
    let mut ids = Vec::new();
    for (name, text, attributes) in [
        ("en.md", GUIDE, json!({"lang": "en", "year": 2024})),
        (
            "de.md",
            "# Haustiere\n\nKittens (Kätzchen) sleep much and purr.\n",
            json!({"lang": "de", "year": 2019}),
        ),
        (
            "fr.md",
            "# Animaux\n\nKittens (chatons) sleep and purr.\n",
            json!({"lang": "fr"}),
        ),
    ] {
        let (_, file) = server
            .upload(name, text.as_bytes(), "assistants", None)
            .await;
        let id = file["id"].as_str().unwrap().to_string();
        let (status, attached) = server
            .call(
                "POST",
                &format!("/v1/vector_stores/{store_id}/files"),
                Some(json!({"file_id": id, "attributes": attributes})),
                None,
            )
            .await;
        assert_eq!(status, 200, "{attached}");
        ids.push(id);
    }
    let search = |filters: Value| {
        let server = &server;
        let store_id = &store_id;
        async move {
            let (status, found) = server
                .call(
                    "POST",
                    &format!("/v1/vector_stores/{store_id}/search"),
                    Some(json!({"query": "kittens purr", "filters": filters})),
                    None,
                )
                .await;
            assert_eq!(status, 200, "{found}");
            let mut files: Vec<String> = found["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|hit| hit["filename"].as_str().unwrap().to_string())
                .collect();
            files.sort();
            files.dedup();
            files
        }
    };
    assert_eq!(search(Value::Null).await, ["de.md", "en.md", "fr.md"]);
    assert_eq!(
        search(json!({"type": "eq", "key": "lang", "value": "de"})).await,
        ["de.md"]
    );
    assert_eq!(
        search(json!({"type": "ne", "key": "lang", "value": "de"})).await,
        ["en.md", "fr.md"]
    );
    assert_eq!(
        search(json!({"type": "gt", "key": "year", "value": 2020})).await,
        ["en.md"]
    );
    assert_eq!(
        search(json!({"type": "or", "filters": [
            {"type": "lt", "key": "year", "value": 2020},
            {"type": "in", "key": "lang", "value": ["fr", "it"]},
        ]}))
        .await,
        ["de.md", "fr.md"]
    );
    assert!(
        search(json!({"type": "eq", "key": "lang", "value": "it"}))
            .await
            .is_empty()
    );
    // Attributes changed after attaching are the ones filtered on.
    let (status, _) = server
        .call(
            "POST",
            &format!("/v1/vector_stores/{store_id}/files/{}", ids[2]),
            Some(json!({"attributes": {"lang": "de"}})),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        search(json!({"type": "eq", "key": "lang", "value": "de"})).await,
        ["de.md", "fr.md"]
    );

    let (status, error) = server
        .call(
            "POST",
            &format!("/v1/vector_stores/{store_id}/search"),
            Some(json!({"query": "kittens", "filters": {"type": "and", "filters": [{"type": "like", "key": "lang", "value": "d%"}]}})),
            None,
        )
        .await;
    assert_eq!(status, 400, "{error}");
    assert_eq!(error["error"]["param"], "filters.filters[0].type");

    // The file_search tool takes the same filters.
    let (status, response) = server
        .call(
            "POST",
            "/v1/responses",
            Some(json!({
                "model": "chat",
                "input": "Do kittens purr?",
                "tools": [{"type": "file_search", "vector_store_ids": [store_id],
                           "filters": {"type": "eq", "key": "year", "value": 2019}}]
            })),
            None,
        )
        .await;
    assert_eq!(status, 200, "{response}");
    let results = response["output"][0]["results"].as_array().unwrap();
    assert!(!results.is_empty(), "{response}");
    assert!(
        results.iter().all(|r| r["file_id"] == ids[1].as_str()),
        "{response}"
    );
    let (status, error) = server
        .call(
            "POST",
            "/v1/responses",
            Some(json!({
                "model": "chat",
                "input": "Do kittens purr?",
                "tools": [{"type": "file_search", "vector_store_ids": [store_id],
                           "filters": {"type": "gt", "key": "year"}}]
            })),
            None,
        )
        .await;
    assert_eq!(status, 400, "{error}");
    assert_eq!(error["error"]["param"], "tools[0].filters.value");
}

#[tokio::test]
async fn uploads_and_stores_refuse_bad_input_by_name() {
    let server = start(vec![], "").await;
    let (status, error) = server.upload("a.md", b"hi", "wishful", None).await;
    assert_eq!(
        (status, error["error"]["param"].as_str()),
        (400, Some("purpose"))
    );
    let (status, error) = server
        .call(
            "POST",
            "/v1/vector_stores",
            Some(json!({"file_ids": ["file-nope"]})),
            None,
        )
        .await;
    assert_eq!(
        (status, error["error"]["param"].as_str()),
        (404, Some("file_ids"))
    );
    let (_, store) = server
        .call("POST", "/v1/vector_stores", Some(json!({})), None)
        .await;
    let store_id = store["id"].as_str().unwrap();
    for (body, param) in [
        (
            json!({"query": "x", "max_num_results": 0}),
            "max_num_results",
        ),
        (
            json!({"query": "x", "filters": {"type": "eq", "key": "a", "value": [1]}}),
            "filters.value",
        ),
        (
            json!({"query": "x", "search_mode": "psychic"}),
            "search_mode",
        ),
        (json!({"query": " "}), "query"),
    ] {
        let (status, error) = server
            .call(
                "POST",
                &format!("/v1/vector_stores/{store_id}/search"),
                Some(body.clone()),
                None,
            )
            .await;
        assert_eq!(
            (status, error["error"]["param"].as_str()),
            (400, Some(param)),
            "{body}"
        );
    }
    let (_, file) = server
        .upload("a.md", b"hello there", "assistants", None)
        .await;
    let (status, error) = server
        .call(
            "POST",
            &format!("/v1/vector_stores/{store_id}/files"),
            Some(json!({"file_id": file["id"], "chunking_strategy": {"type": "static", "static": {"max_chunk_size_tokens": 10, "chunk_overlap_tokens": 50}}})),
            None,
        )
        .await;
    assert_eq!(
        (status, error["error"]["param"].as_str()),
        (400, Some("chunking_strategy")),
        "{error}"
    );
    for (attributes, param) in [
        (json!(["draft"]), "attributes"),
        (json!({"tags": ["a", "b"]}), "attributes.tags"),
        (json!({"note": "x".repeat(513)}), "attributes.note"),
    ] {
        let (status, error) = server
            .call(
                "POST",
                &format!("/v1/vector_stores/{store_id}/files"),
                Some(json!({"file_id": file["id"], "attributes": attributes})),
                None,
            )
            .await;
        assert_eq!(
            (status, error["error"]["param"].as_str()),
            (400, Some(param)),
            "{error}"
        );
    }
    let (status, files) = server
        .call(
            "GET",
            &format!("/v1/vector_stores/{store_id}/files"),
            None,
            None,
        )
        .await;
    assert_eq!(
        (status, &files["data"]),
        (200, &json!([])),
        "nothing attached"
    );
}

#[tokio::test]
async fn a_tenant_cannot_see_or_touch_another_tenants_objects() {
    let server = start(vec![], TWO_TENANTS).await;
    let (a, b) = (Some("key-a"), Some("key-b"));
    let (_, file) = server
        .upload("guide.md", GUIDE.as_bytes(), "assistants", a)
        .await;
    let file_id = file["id"].as_str().unwrap().to_string();
    let (_, store) = server
        .call(
            "POST",
            "/v1/vector_stores",
            Some(json!({"file_ids": [file_id]})),
            a,
        )
        .await;
    let store_id = store["id"].as_str().unwrap().to_string();
    assert_eq!(store["file_counts"]["completed"], 1, "{store}");

    // B sees none of it: lists are empty, and every object answers 404 as if it did not exist.
    let (_, files) = server.call("GET", "/v1/files", None, b).await;
    assert_eq!(files["data"], json!([]));
    let (_, stores) = server.call("GET", "/v1/vector_stores", None, b).await;
    assert_eq!(stores["data"], json!([]));
    for (method, path, body) in [
        ("GET", format!("/v1/files/{file_id}"), None),
        ("GET", format!("/v1/files/{file_id}/content"), None),
        ("DELETE", format!("/v1/files/{file_id}"), None),
        ("GET", format!("/v1/vector_stores/{store_id}"), None),
        (
            "POST",
            format!("/v1/vector_stores/{store_id}"),
            Some(json!({"name": "mine"})),
        ),
        (
            "POST",
            format!("/v1/vector_stores/{store_id}/search"),
            Some(json!({"query": "kittens"})),
        ),
        ("GET", format!("/v1/vector_stores/{store_id}/files"), None),
        (
            "GET",
            format!("/v1/vector_stores/{store_id}/files/{file_id}"),
            None,
        ),
        (
            "DELETE",
            format!("/v1/vector_stores/{store_id}/files/{file_id}"),
            None,
        ),
        (
            "POST",
            format!("/v1/vector_stores/{store_id}/files"),
            Some(json!({"file_id": file_id})),
        ),
        ("DELETE", format!("/v1/vector_stores/{store_id}"), None),
    ] {
        let (status, error) = server.call(method, &path, body, b).await;
        assert_eq!(status, 404, "{method} {path}: {error}");
        assert!(!error.to_string().contains("tenant"), "{error}");
    }
    // Nor can B attach A's file to its own store.
    let (_, own) = server
        .call("POST", "/v1/vector_stores", Some(json!({})), b)
        .await;
    let (status, _) = server
        .call(
            "POST",
            &format!("/v1/vector_stores/{}/files", own["id"].as_str().unwrap()),
            Some(json!({"file_id": file_id})),
            b,
        )
        .await;
    assert_eq!(status, 404);
    // A's objects are all still there.
    let (status, found) = server
        .call(
            "POST",
            &format!("/v1/vector_stores/{store_id}/search"),
            Some(json!({"query": "kittens"})),
            a,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(found["data"][0]["file_id"], file_id.as_str());
}

/// The `(event, data)` pairs of a streamed response.
async fn events(server: &Server, path: &str, body: Value) -> Vec<(String, Value)> {
    let text = server
        .client
        .post(format!("{}{path}", server.base))
        .json(&body)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut out = Vec::new();
    let mut kind = String::new();
    for line in text.lines() {
        if let Some(k) = line.strip_prefix("event: ") {
            kind = k.to_string();
        } else if let Some(data) = line.strip_prefix("data: ") {
            out.push((kind.clone(), serde_json::from_str(data).unwrap()));
        }
    }
    out
}

#[tokio::test]
async fn a_response_with_file_search_cites_the_file() {
    let server = start(vec![Step::text("Kittens sleep sixteen hours [1].")], "").await;
    let (_, file) = server
        .upload("guide.md", GUIDE.as_bytes(), "assistants", None)
        .await;
    let file_id = file["id"].as_str().unwrap().to_string();
    let (_, store) = server
        .call(
            "POST",
            "/v1/vector_stores",
            Some(json!({"file_ids": [file_id]})),
            None,
        )
        .await;
    let (status, response) = server
        .call(
            "POST",
            "/v1/responses",
            Some(json!({
                "model": "chat",
                "input": "How long do kittens sleep?",
                "instructions": "Be brief.",
                "tools": [{"type": "file_search", "vector_store_ids": [store["id"]]}]
            })),
            None,
        )
        .await;
    assert_eq!(status, 200, "{response}");
    assert_eq!(response["object"], "response");
    assert_eq!(response["status"], "completed");
    let search = &response["output"][0];
    assert_eq!(search["type"], "file_search_call");
    assert_eq!(search["queries"][0], "How long do kittens sleep?");
    assert_eq!(search["results"][0]["file_id"], file_id.as_str());
    let message = &response["output"][1];
    assert_eq!(message["type"], "message");
    let text = &message["content"][0];
    assert_eq!(text["type"], "output_text");
    assert_eq!(text["text"], "Kittens sleep sixteen hours [1].");
    let citation = &text["annotations"][0];
    assert_eq!(citation["type"], "file_citation");
    assert_eq!(citation["file_id"], file_id.as_str());
    assert_eq!(citation["filename"], "guide.md");
    // The position (in characters) of the marker, as OpenAI's citations give it.
    assert_eq!(
        citation["index"],
        "Kittens sleep sixteen hours ".chars().count()
    );
    // The model read the instructions, then the numbered passages, then the question.
    let request = &server.model.requests()[0];
    assert_eq!(request.messages[0], Message::system("Be brief."));
    let context = request.messages[1].text();
    assert!(
        context.contains("[1] guide.md") && context.contains("Kittens sleep"),
        "{context}"
    );
    assert_eq!(
        request.messages[2],
        Message::user("How long do kittens sleep?")
    );
    // Stored: readable again, with its input items.
    let id = response["id"].as_str().unwrap();
    let (_, again) = server
        .call("GET", &format!("/v1/responses/{id}"), None, None)
        .await;
    assert_eq!(again, response);
    let (_, items) = server
        .call(
            "GET",
            &format!("/v1/responses/{id}/input_items"),
            None,
            None,
        )
        .await;
    assert_eq!(
        items["data"][0]["content"][0]["text"],
        "How long do kittens sleep?"
    );
    let (status, _) = server
        .call("DELETE", &format!("/v1/responses/{id}"), None, None)
        .await;
    assert_eq!(status, 200);
    let (status, _) = server
        .call("GET", &format!("/v1/responses/{id}"), None, None)
        .await;
    assert_eq!(status, 404);
}

/// A Tavily-shaped search API on loopback that answers every search with one result.
async fn search_api() -> String {
    use axum::routing::post;
    let app = axum::Router::new().route(
        "/search",
        post(|axum::Json(body): axum::Json<Value>| async move {
            axum::Json(json!({
                "query": body["query"],
                "results": [{
                    "title": "How long kittens sleep",
                    "url": "https://example.org/kittens",
                    "content": "Kittens sleep up to twenty hours a day.",
                    "score": 0.9,
                }],
            }))
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    base
}

#[tokio::test]
async fn web_search_answers_with_url_citations_and_mcp_servers_must_be_allowed() {
    let api = search_api().await;
    let server = start(
        vec![Step::text("Up to twenty hours [1].")],
        &format!(
            r#"mcp_allowed_urls = ["https://mcp.example.com/"]

[[providers.tool_runtime]]
id = "web"
type = "web_search"
config = {{ backend = "tavily", api_key = "tvly-test", base_url = "{api}" }}

[[tool_groups]]
id = "search"
provider = "web"
"#
        ),
    )
    .await;
    let (status, response) = server
        .call(
            "POST",
            "/v1/responses",
            Some(json!({
                "model": "chat",
                "input": "How long do kittens sleep?",
                "tools": [{"type": "web_search_preview"}]
            })),
            None,
        )
        .await;
    assert_eq!(status, 200, "{response}");
    let call = &response["output"][0];
    assert_eq!(call["type"], "web_search_call");
    assert_eq!(call["action"]["query"], "How long do kittens sleep?");
    let text = &response["output"][1]["content"][0];
    assert_eq!(text["text"], "Up to twenty hours [1].");
    let citation = &text["annotations"][0];
    assert_eq!(citation["type"], "url_citation");
    assert_eq!(citation["url"], "https://example.org/kittens");
    assert_eq!(citation["title"], "How long kittens sleep");
    let marker = "Up to twenty hours ".chars().count();
    assert_eq!(
        (&citation["start_index"], &citation["end_index"]),
        (&json!(marker), &json!(marker + 3))
    );
    let context = server.model.requests()[0].messages[0].text();
    assert!(
        context.contains("[1] How long kittens sleep (https://example.org/kittens)")
            && context.contains("twenty hours a day"),
        "{context}"
    );

    for (tool, param) in [
        (
            json!({"type": "mcp", "server_label": "x", "server_url": "http://10.0.0.1/mcp"}),
            "tools[0].server_url",
        ),
        (
            // A user name and password that look like the allowed host, before another host.
            json!({"type": "mcp", "server_label": "x", "server_url": "https://mcp.example.com:443@10.0.0.1/mcp"}),
            "tools[0].server_url",
        ),
        (
            json!({"type": "mcp", "server_label": "x", "server_url": "https://mcp.example.com/mcp", "require_approval": "always"}),
            "tools[0].require_approval",
        ),
        (
            json!({"type": "mcp", "server_url": "https://mcp.example.com/mcp"}),
            "tools[0].server_label",
        ),
        (
            json!({"type": "mcp", "server_label": "x", "server_url": "https://mcp.example.com/mcp", "allowed_tools": "echo"}),
            "tools[0].allowed_tools",
        ),
        (json!({"type": "code_interpreter"}), "tools[0].type"),
    ] {
        let (status, error) = server
            .call(
                "POST",
                "/v1/responses",
                Some(json!({"model": "chat", "input": "hi", "tools": [tool]})),
                None,
            )
            .await;
        assert_eq!(
            (status, error["error"]["param"].as_str()),
            (400, Some(param)),
            "{error}"
        );
    }
    // Without a web search tool group, `web_search` says what is missing.
    let bare = start(vec![], "").await;
    let (status, error) = bare
        .call(
            "POST",
            "/v1/responses",
            Some(json!({"model": "chat", "input": "hi", "tools": [{"type": "web_search"}]})),
            None,
        )
        .await;
    assert_eq!(status, 400, "{error}");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("type = \"web_search\""),
        "{error}"
    );
}

/// The MCP reference server (`@modelcontextprotocol/server-everything`, from
/// scripts/fetch-mcp-servers.sh) in streamable-HTTP mode, killed on drop; `None` when it or
/// `node` is missing, with a line saying so.
struct Everything(std::process::Child, u16);

impl Everything {
    async fn start(test: &str) -> Option<Self> {
        let cache = std::env::var_os("CORRAL_CACHE")
            .map(std::path::PathBuf::from)
            .or_else(|| {
                std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".cache/corral"))
            })?;
        let entry =
            cache.join("mcp/node_modules/@modelcontextprotocol/server-everything/dist/index.js");
        if !entry.is_file() {
            eprintln!(
                "SKIPPED {test}: the MCP reference server is not at {}; run scripts/fetch-mcp-servers.sh",
                entry.display()
            );
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let Ok(child) = std::process::Command::new("node")
            .arg(&entry)
            .arg("streamableHttp")
            .env("PORT", port.to_string())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
        else {
            eprintln!("SKIPPED {test}: `node` could not be started");
            return None;
        };
        let server = Self(child, port);
        for _ in 0..150 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Some(server);
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("the MCP reference server did not listen on {port} within 15 s");
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/mcp", self.1)
    }
}

impl Drop for Everything {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn mcp_tools_run_on_the_server_until_the_model_answers() {
    let Some(mcp) = Everything::start("mcp_tools_run_on_the_server_until_the_model_answers").await
    else {
        return;
    };
    let call = |id: &str, name: &str, arguments: Value| {
        Step::tool_calls(vec![ToolCall {
            id: id.into(),
            name: name.into(),
            arguments,
        }])
    };
    let server = start(
        vec![
            call("c1", "echo", json!({"message": "hi"})),
            call("c2", "get-sum", json!({"a": 1.5, "b": 2})),
            Step::text("It echoed hi; the sum is 3.5."),
            // The streamed turn: a failing call (no `message`), then the answer.
            call("c3", "echo", json!({})),
            Step::text("The echo failed."),
        ],
        r#"mcp_allowed_urls = ["http://127.0.0.1:"]"#,
    )
    .await;
    let tool = json!({
        "type": "mcp",
        "server_label": "everything",
        "server_url": mcp.url(),
        "allowed_tools": ["echo", "get-sum"],
        "require_approval": "never",
    });
    let (status, response) = server
        .call(
            "POST",
            "/v1/responses",
            Some(
                json!({"model": "chat", "input": "Echo hi, then add 1.5 and 2.", "tools": [tool]}),
            ),
            None,
        )
        .await;
    assert_eq!(status, 200, "{response}");
    let output = response["output"].as_array().unwrap();
    let kinds: Vec<&str> = output.iter().map(|i| i["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["mcp_list_tools", "mcp_call", "mcp_call", "message"]);
    let mut listed: Vec<&str> = output[0]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    listed.sort_unstable();
    assert_eq!(
        listed,
        ["echo", "get-sum"],
        "allowed_tools narrows the list"
    );
    assert_eq!(output[0]["server_label"], "everything");
    assert!(output[0]["tools"][0]["input_schema"].is_object());
    assert_eq!(
        (
            &output[1]["name"],
            &output[1]["output"],
            &output[1]["error"]
        ),
        (&json!("echo"), &json!("Echo: hi"), &Value::Null)
    );
    assert_eq!(output[2]["output"], "The sum of 1.5 and 2 is 3.5.");
    assert_eq!(output[2]["server_label"], "everything");
    assert_eq!(
        output[3]["content"][0]["text"],
        "It echoed hi; the sum is 3.5."
    );
    // Each round the model read the tool results so far; it was offered the allowed tools only.
    let requests = server.model.requests();
    assert_eq!(requests.len(), 3);
    let mut offered: Vec<&str> = requests[0].tools.iter().map(|t| t.name.as_str()).collect();
    offered.sort_unstable();
    assert_eq!(offered, ["echo", "get-sum"]);
    let last = requests[2].messages.last().unwrap();
    assert_eq!(
        last,
        &Message::tool_result("c2", "The sum of 1.5 and 2 is 3.5.")
    );
    assert_eq!(
        requests[1].messages.last().unwrap(),
        &Message::tool_result("c1", "Echo: hi")
    );

    // Streamed: a failed call is an item with its error, fed back to the model.
    let events = events(
        &server,
        "/v1/responses",
        json!({"model": "chat", "input": "Echo nothing.", "tools": [tool], "stream": true}),
    )
    .await;
    let names: Vec<&str> = events.iter().map(|(name, _)| name.as_str()).collect();
    for expected in [
        "response.mcp_call_arguments.delta",
        "response.mcp_call_arguments.done",
        "response.mcp_call.in_progress",
        "response.mcp_call.failed",
        "response.output_text.delta",
        "response.completed",
    ] {
        assert!(names.contains(&expected), "no {expected} in {names:?}");
    }
    let (_, completed) = events.last().unwrap();
    let output = completed["response"]["output"].as_array().unwrap();
    let failed = &output[1];
    assert_eq!(
        (&failed["type"], &failed["status"]),
        (&json!("mcp_call"), &json!("failed"))
    );
    assert!(
        failed["error"].as_str().unwrap().contains("message"),
        "{failed}"
    );
    assert_eq!(output[2]["content"][0]["text"], "The echo failed.");
    let read_back = server.model.requests()[4].messages.last().unwrap().text();
    assert!(read_back.starts_with("error:"), "{read_back}");
    // Sequence numbers count up from zero without gaps.
    for (i, (_, data)) in events.iter().enumerate() {
        assert_eq!(data["sequence_number"], i, "{data}");
    }

    // An allowed server that is not there: 424, naming the server.
    drop(mcp);
    let (status, error) = server
        .call(
            "POST",
            "/v1/responses",
            Some(json!({"model": "chat", "input": "hi", "tools": [tool]})),
            None,
        )
        .await;
    assert_eq!(status, 424, "{error}");
    assert_eq!(error["error"]["param"], "tools[0].server_url");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("MCP server `everything`"),
        "{error}"
    );
}

#[tokio::test]
async fn function_calls_round_trip_through_previous_response_id() {
    let call = ToolCall {
        id: "call_7".into(),
        name: "weather".into(),
        arguments: json!({"city": "Oslo"}),
    };
    let server = start(
        vec![
            Step::tool_calls(vec![call]),
            Step::text("It rains in Oslo."),
        ],
        "",
    )
    .await;
    let tool = json!({"type": "function", "name": "weather", "description": "Weather by city",
                      "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}});
    let (status, first) = server
        .call(
            "POST",
            "/v1/responses",
            Some(json!({"model": "chat", "input": "Weather in Oslo?", "tools": [tool]})),
            None,
        )
        .await;
    assert_eq!(status, 200, "{first}");
    let item = &first["output"][0];
    assert_eq!(item["type"], "function_call");
    assert_eq!(item["call_id"], "call_7");
    assert_eq!(item["name"], "weather");
    assert_eq!(
        serde_json::from_str::<Value>(item["arguments"].as_str().unwrap()).unwrap(),
        json!({"city": "Oslo"})
    );
    assert_eq!(server.model.requests()[0].tools[0].name, "weather");
    let (status, second) = server
        .call(
            "POST",
            "/v1/responses",
            Some(json!({
                "model": "chat",
                "previous_response_id": first["id"],
                "input": [{"type": "function_call_output", "call_id": "call_7", "output": "rain"}],
                "tools": [tool]
            })),
            None,
        )
        .await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(
        second["output"][0]["content"][0]["text"],
        "It rains in Oslo."
    );
    assert_eq!(second["previous_response_id"], first["id"]);
    let messages = &server.model.requests()[1].messages;
    assert_eq!(messages[0], Message::user("Weather in Oslo?"));
    assert!(
        matches!(&messages[1], Message::Assistant { tool_calls, .. } if tool_calls[0].id == "call_7")
    );
    assert_eq!(messages[2], Message::tool_result("call_7", "rain"));
    // Not stored: nothing to read back.
    let server = start(vec![Step::text("ok")], "").await;
    let (_, unstored) = server
        .call(
            "POST",
            "/v1/responses",
            Some(json!({"model": "chat", "input": "hi", "store": false})),
            None,
        )
        .await;
    let (status, _) = server
        .call(
            "GET",
            &format!("/v1/responses/{}", unstored["id"].as_str().unwrap()),
            None,
            None,
        )
        .await;
    assert_eq!(status, 404);
    for (body, param) in [
        (json!({"model": "chat", "input": 5}), "input"),
        (
            json!({"model": "chat", "input": [{"type": "reasoning"}]}),
            "input[0]",
        ),
        (
            json!({"model": "chat", "input": "x", "tools": [{"type": "computer_use_preview"}]}),
            "tools[0].type",
        ),
        (
            json!({"model": "chat", "input": "x", "tools": [{"type": "file_search", "vector_store_ids": []}]}),
            "tools[0]",
        ),
        (
            json!({"model": "chat", "input": "x", "previous_response_id": "resp_nope"}),
            "previous_response_id",
        ),
    ] {
        let (status, error) = server
            .call("POST", "/v1/responses", Some(body.clone()), None)
            .await;
        assert!(status == 400 || status == 404, "{body}: {status}");
        assert_eq!(error["error"]["param"], param, "{body}: {error}");
    }
}

#[tokio::test]
async fn a_streamed_response_sends_the_events_clients_expect() {
    let server = start(vec![Step::text("Hello there.")], "").await;
    let events = events(
        &server,
        "/v1/responses",
        json!({"model": "chat", "input": "Hi", "stream": true}),
    )
    .await;
    let kinds: Vec<&str> = events.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(kinds[..2], ["response.created", "response.in_progress"]);
    assert_eq!(kinds.last(), Some(&"response.completed"));
    for expected in [
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
    ] {
        assert!(kinds.contains(&expected), "{expected} in {kinds:?}");
    }
    let numbers: Vec<u64> = events
        .iter()
        .map(|(_, d)| d["sequence_number"].as_u64().unwrap())
        .collect();
    assert!(numbers.windows(2).all(|w| w[1] == w[0] + 1), "{numbers:?}");
    assert!(events.iter().all(|(k, d)| d["type"] == k.as_str()));
    let text: String = events
        .iter()
        .filter(|(k, _)| k == "response.output_text.delta")
        .map(|(_, d)| d["delta"].as_str().unwrap())
        .collect();
    assert_eq!(text, "Hello there.");
    let done = &events.last().unwrap().1["response"];
    assert_eq!(done["output"][0]["content"][0]["text"], "Hello there.");
    let (status, stored) = server
        .call(
            "GET",
            &format!("/v1/responses/{}", done["id"].as_str().unwrap()),
            None,
            None,
        )
        .await;
    assert_eq!((status, &stored), (200, done));
}

#[tokio::test]
async fn another_tenant_cannot_read_or_continue_a_response() {
    let server = start(vec![Step::text("Secret plans.")], TWO_TENANTS).await;
    let (_, response) = server
        .call(
            "POST",
            "/v1/responses",
            Some(json!({"model": "chat", "input": "plans?"})),
            Some("key-a"),
        )
        .await;
    let id = response["id"].as_str().unwrap();
    for (method, path) in [
        ("GET", format!("/v1/responses/{id}")),
        ("GET", format!("/v1/responses/{id}/input_items")),
        ("DELETE", format!("/v1/responses/{id}")),
    ] {
        let (status, _) = server.call(method, &path, None, Some("key-b")).await;
        assert_eq!(status, 404, "{method} {path}");
    }
    let (status, error) = server
        .call(
            "POST",
            "/v1/responses",
            Some(json!({"model": "chat", "input": "more", "previous_response_id": id})),
            Some("key-b"),
        )
        .await;
    assert_eq!(
        (status, error["error"]["param"].as_str()),
        (404, Some("previous_response_id"))
    );
    let (status, _) = server
        .call("GET", &format!("/v1/responses/{id}"), None, Some("key-a"))
        .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn streams_under_llama_stacks_alias_end_without_done() {
    let server = start(vec![Step::text("Hi.")], "").await;
    let events = server
        .stream(
            "/v1/openai/v1/chat/completions",
            json!({"model": "chat", "messages": [{"role": "user", "content": "Hi"}], "stream": true}),
        )
        .await;
    // Llama Stack's 0.2 clients parse every event as JSON.
    assert!(
        events
            .iter()
            .all(|e| serde_json::from_str::<Value>(e).is_ok()),
        "{events:?}"
    );
    let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert_eq!(last["choices"][0]["finish_reason"], "stop");
}

#[tokio::test]
async fn metrics_count_requests_tokens_and_model_errors() {
    let answer = corral_core::ChatResponse {
        text: "Hi.".into(),
        tool_calls: Vec::new(),
        finish_reason: corral_core::FinishReason::Stop,
        usage: Some(corral_core::Usage {
            prompt_tokens: 12,
            completion_tokens: 3,
        }),
        tool_call_error: None,
    };
    let server = start(vec![Step::Reply(answer)], "").await;
    let chat = json!({"model": "chat", "messages": [{"role": "user", "content": "Hi"}]});
    let (status, _) = server.post("/v1/chat/completions", chat.clone()).await;
    assert_eq!(status, 200);
    // The script is used up: the model fails, and the failure is counted by kind.
    let (status, _) = server.post("/v1/chat/completions", chat).await;
    assert_eq!(status, 400);
    server
        .get("/v1/models/some-id-that-must-not-become-a-label")
        .await;
    let text = server
        .client
        .get(format!("{}/metrics", server.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        r#"corral_requests_total{method="POST",route="/v1/chat/completions",status="200"} 1"#,
        r#"corral_requests_total{method="POST",route="/v1/chat/completions",status="400"} 1"#,
        r#"corral_requests_total{method="GET",route="/v1/models/:model_id",status="404"} 1"#,
        r#"corral_request_duration_seconds_count{route="/v1/chat/completions"} 2"#,
        r#"corral_request_duration_seconds_bucket{route="/v1/chat/completions",le="+Inf"} 2"#,
        r#"corral_tokens_total{model="chat",provider="p",kind="prompt"} 12"#,
        r#"corral_tokens_total{model="chat",provider="p",kind="completion"} 3"#,
        r#"corral_model_errors_total{model="chat",provider="p",kind="InvalidRequest"} 1"#,
        "# TYPE corral_request_duration_seconds histogram",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} in:\n{text}");
    }
    assert!(!text.contains("some-id-that-must-not-become-a-label"));
}

#[tokio::test]
async fn a_conversation_carries_history_between_responses() {
    let server = start(
        vec![
            Step::text("Nice to meet you, Ada."),
            Step::text("You are Ada."),
        ],
        TWO_TENANTS,
    )
    .await;
    let (a, b) = (Some("key-a"), Some("key-b"));
    let (status, conversation) = server
        .call(
            "POST",
            "/v1/conversations",
            Some(json!({"items": [{"role": "system", "content": "Be kind."}], "metadata": {"topic": "names"}})),
            a,
        )
        .await;
    assert_eq!(status, 200, "{conversation}");
    assert_eq!(conversation["object"], "conversation");
    let id = conversation["id"].as_str().unwrap().to_string();
    for input in ["I am Ada.", "Who am I?"] {
        let (status, response) = server
            .call(
                "POST",
                "/v1/responses",
                Some(json!({"model": "chat", "input": input, "conversation": id})),
                a,
            )
            .await;
        assert_eq!(status, 200, "{response}");
        assert_eq!(response["conversation"]["id"], id.as_str());
    }
    // The second turn saw the whole conversation.
    let messages = &server.model.requests()[1].messages;
    assert_eq!(
        messages,
        &[
            Message::system("Be kind."),
            Message::user("I am Ada."),
            Message::assistant("Nice to meet you, Ada."),
            Message::user("Who am I?"),
        ]
    );
    let (_, items) = server
        .call(
            "GET",
            &format!("/v1/conversations/{id}/items?order=asc"),
            None,
            a,
        )
        .await;
    let texts: Vec<&str> = items["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["content"][0]["text"].as_str().unwrap())
        .collect();
    assert_eq!(
        texts,
        [
            "Be kind.",
            "I am Ada.",
            "Nice to meet you, Ada.",
            "Who am I?",
            "You are Ada."
        ]
    );
    let (_, newest_first) = server
        .call("GET", &format!("/v1/conversations/{id}/items"), None, a)
        .await;
    assert_eq!(
        newest_first["data"][0]["content"][0]["text"],
        "You are Ada."
    );
    let first_id = items["data"][0]["id"].as_str().unwrap();
    let (status, item) = server
        .call(
            "GET",
            &format!("/v1/conversations/{id}/items/{first_id}"),
            None,
            a,
        )
        .await;
    assert_eq!((status, item["role"].as_str()), (200, Some("system")));

    // Tenant B can neither read the conversation nor use it.
    for (method, path) in [
        ("GET", format!("/v1/conversations/{id}")),
        ("GET", format!("/v1/conversations/{id}/items")),
        ("GET", format!("/v1/conversations/{id}/items/{first_id}")),
        ("DELETE", format!("/v1/conversations/{id}/items/{first_id}")),
        ("DELETE", format!("/v1/conversations/{id}")),
    ] {
        let (status, _) = server.call(method, &path, None, b).await;
        assert_eq!(status, 404, "{method} {path}");
    }
    let (status, error) = server
        .call(
            "POST",
            "/v1/responses",
            Some(json!({"model": "chat", "input": "hi", "conversation": id})),
            b,
        )
        .await;
    assert_eq!(
        (status, error["error"]["param"].as_str()),
        (404, Some("conversation"))
    );
    let (status, error) = server
        .call(
            "POST",
            "/v1/responses",
            Some(json!({"model": "chat", "input": "hi", "conversation": id, "previous_response_id": "resp_x"})),
            a,
        )
        .await;
    assert_eq!(
        (status, error["error"]["param"].as_str()),
        (400, Some("conversation"))
    );

    let (status, _) = server
        .call(
            "DELETE",
            &format!("/v1/conversations/{id}/items/{first_id}"),
            None,
            a,
        )
        .await;
    assert_eq!(status, 200);
    let (_, updated) = server
        .call(
            "POST",
            &format!("/v1/conversations/{id}"),
            Some(json!({"metadata": {"topic": "ada"}})),
            a,
        )
        .await;
    assert_eq!(updated["metadata"]["topic"], "ada");
    let (status, deleted) = server
        .call("DELETE", &format!("/v1/conversations/{id}"), None, a)
        .await;
    assert_eq!((status, &deleted["deleted"]), (200, &json!(true)));
    let (status, _) = server
        .call("GET", &format!("/v1/conversations/{id}"), None, a)
        .await;
    assert_eq!(status, 404);
}

/// `st` (schemathesis), from the virtualenv `scripts/fetch-test-clients.sh` fills.
fn schemathesis() -> std::path::PathBuf {
    let cache = std::env::var_os("CORRAL_CACHE")
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".cache/corral"))
        })
        .unwrap();
    let st = cache.join("venv-clients/bin/st");
    assert!(
        st.exists(),
        "no {}: run scripts/fetch-test-clients.sh",
        st.display()
    );
    st
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fuzzing_from_the_openapi_document_finds_no_server_errors() {
    let st = schemathesis();
    let server = start(
        vec![],
        r#"
[[server.api_keys]]
key = "fuzz-key"
tenant = "fuzz"
"#,
    )
    .await;
    // The document itself: every route, its aliases, request schemas from the handlers' types.
    let document: Value = server
        .client
        .get(format!("{}/openapi.json", server.base))
        .bearer_auth("fuzz-key")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(document["openapi"], "3.0.3");
    let paths = document["paths"].as_object().unwrap();
    for (method, route) in corral_server::ROUTES {
        let entry = &paths[*route][method.to_lowercase()];
        assert!(entry.is_object(), "{method} {route} described");
    }
    let chat = &paths["/v1/chat/completions"]["post"]["requestBody"]["content"]["application/json"]
        ["schema"];
    assert!(
        chat["$ref"]
            .as_str()
            .unwrap()
            .ends_with("ChatCompletionRequest"),
        "{chat}"
    );
    assert!(paths.contains_key("/v1/openai/v1/chat/completions"));
    // Schemathesis, bounded: no 5xx and no crash on anything the schemas allow (or nearly so).
    let url = format!("{}/openapi.json", server.base);
    // Schemathesis keeps a cache where it runs: somewhere that goes away.
    let scratch = tempfile::tempdir().unwrap();
    let cwd = scratch.path().to_path_buf();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(st)
            .current_dir(cwd)
            .args([
                "run",
                &url,
                "--checks",
                "not_a_server_error",
                "--max-examples",
                "12",
                "--seed",
                "7",
            ])
            .args([
                "--header",
                "Authorization: Bearer fuzz-key",
                "--request-timeout",
                "30",
                "--workers",
                "2",
            ])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "schemathesis found failures:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn shutting_down_lets_a_stream_in_flight_finish_and_takes_no_new_requests() {
    let slow = Step::Delayed(
        std::time::Duration::from_millis(300),
        Box::new(Step::text("Finished anyway.")),
    );
    let server = start(vec![slow], "").await;
    let Server {
        base,
        client,
        model,
        _shutdown: shutdown,
        _data,
    } = server;
    let url = format!("{base}/v1/chat/completions");
    let request = client.post(&url).json(&json!({
        "model": "chat",
        "messages": [{"role": "user", "content": "Hi"}],
        "stream": true
    }));
    let in_flight =
        tokio::spawn(async move { request.send().await.unwrap().text().await.unwrap() });
    // Shut down once the model is working on the request (it answers 300 ms later).
    for _ in 0..1000 {
        if model.calls() > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(model.calls(), 1);
    drop(shutdown);
    let body = in_flight.await.unwrap();
    let text: String = body
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(text, "Finished anyway.");
    assert!(body.trim_end().ends_with("data: [DONE]"), "{body}");
    // The listener is closed: a new connection is refused.
    let fresh = reqwest::Client::new();
    assert!(fresh.get(format!("{base}/v1/health")).send().await.is_err());
}
