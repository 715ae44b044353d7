//! Agents from config: the `[agent]` and `[agents.<name>]` tables resolved through the stack to a
//! working agent — its model, retrieval over an embedded store, tool groups of built-in tools —
//! and the errors for references that do not resolve.

use std::sync::Arc;

use corral_agents::{MemorySessionStore, StepKind, StopReason};
use corral_core::testing::{ScriptedChatModel, Step};
use corral_core::{
    ChatError, ChatModel, Chunk, EmbedError, EmbeddedChunk, Embedder, Embedding, InferenceProvider,
    ToolCall, VectorIoProvider, async_trait,
};
use corral_stack::{AgentOverrides, Config, ProviderType, Registry, Stack};
use serde::Deserialize;
use serde_json::json;

/// Every text gets the same vector: retrieval then rests on keywords (hybrid mode).
struct OneVector;

#[async_trait]
impl Embedder for OneVector {
    fn dimension(&self) -> usize {
        2
    }
    fn max_input_tokens(&self) -> usize {
        256
    }
    async fn embed(&self, inputs: &[String]) -> Result<Vec<Embedding>, EmbedError> {
        Ok(inputs.iter().map(|_| vec![1.0, 0.0]).collect())
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
        Ok(Arc::new(OneVector))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Empty {}

fn registry(model: Arc<ScriptedChatModel>, stores: std::path::PathBuf) -> Registry {
    let mut registry = Registry::builtin();
    registry.inference.add(ProviderType::new(
        "test::scripted",
        "a scripted model",
        move |_: Empty| {
            Ok(Arc::new(Provider {
                model: model.clone(),
            }) as Arc<dyn InferenceProvider>)
        },
    ));
    registry.vector_io.add(ProviderType::new(
        "test::embedded",
        "embedded stores in a temp dir",
        move |_: Empty| {
            Ok(Arc::new(corral_memory::EmbeddedProvider::new(
                corral_memory::EmbeddedConfig {
                    path: Some(stores.clone()),
                },
            )) as Arc<dyn VectorIoProvider>)
        },
    ));
    registry
}

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

[[providers.vector_io]]
id = "disk"
type = "test::embedded"

[[vector_stores]]
id = "handbook"
provider = "disk"
embedding_model = "emb"

[[providers.tool_runtime]]
id = "calc"
type = "calculator"
config = { timeout_s = 5 }

[[providers.tool_runtime]]
id = "search"
type = "knowledge_search"

[[tool_groups]]
id = "math"
provider = "calc"

[[tool_groups]]
id = "docs"
provider = "search"
params = { vector_stores = ["handbook"], top_k = 3 }

[agent]
instructions = "Be brief."
vector_stores = ["handbook"]
retrieval = { mode = "keyword", top_k = 2 }

[agents.mathematician]
model = "chat"
tool_groups = ["math", "docs"]
max_infer_iters = 4
settings = { max_repeated_tool_calls = 2 }
"#;

fn chunk(id: &str, text: &str) -> EmbeddedChunk {
    EmbeddedChunk {
        chunk: Chunk {
            id: id.into(),
            document_id: "guide".into(),
            text: text.into(),
            source: "guide.md".into(),
            pages: None,
            heading_path: Vec::new(),
            byte_range: None,
            content_hash: None,
            document_hash: None,
            metadata: Default::default(),
        },
        embedding: vec![1.0, 0.0],
    }
}

async fn stack(model: Arc<ScriptedChatModel>, dir: &tempfile::TempDir) -> Stack {
    let config = Config::from_toml_str(CONFIG, "corral.toml", &|_: &str| None).expect("parses");
    let stack =
        Stack::build(config, "corral.toml", &registry(model, dir.path().into())).expect("builds");
    let store = stack.vector_store("handbook").await.expect("store");
    store
        .upsert(vec![
            chunk("g1", "Rotate the API keys every 90 days."),
            chunk("g2", "The office cat is called Miso."),
        ])
        .await
        .expect("upsert");
    stack
}

#[tokio::test]
async fn the_default_agent_retrieves_from_its_stores_and_cites_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = Arc::new(ScriptedChatModel::new([Step::text("Every 90 days [1].")]));
    let stack = stack(model.clone(), &dir).await;
    let agent = stack
        .agent(
            None,
            &AgentOverrides::default(),
            Arc::new(MemorySessionStore::new()),
        )
        .await
        .expect("agent");
    let session = agent.create_session("t").await.expect("session");
    let turn = agent
        .ask(&session.id, "How often are API keys rotated?")
        .await
        .expect("turn");
    assert_eq!(turn.answer, "Every 90 days [1].");
    assert_eq!(turn.steps[0].kind(), StepKind::Retrieval);
    assert_eq!(turn.citations[0].source, "guide.md");
    assert_eq!(turn.citations[0].store, "handbook");
    let request = &model.requests()[0];
    assert_eq!(request.messages[0].text(), "Be brief.");
    let prompt = request.messages[1].text();
    assert!(
        prompt.contains("[1] guide.md\nRotate the API keys"),
        "{prompt}"
    );
    assert!(request.tools.is_empty());
}

#[tokio::test]
async fn a_named_agent_gets_its_tool_groups_and_settings() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = Arc::new(ScriptedChatModel::new([
        Step::tool_calls(vec![
            ToolCall {
                id: "a".into(),
                name: "calculator".into(),
                arguments: json!({"expression": "17 * 23"}),
            },
            ToolCall {
                id: "b".into(),
                name: "knowledge_search".into(),
                arguments: json!({"query": "cat"}),
            },
        ]),
        Step::text("391, and the cat is Miso [1]."),
    ]));
    let stack = stack(model.clone(), &dir).await;
    let agent = stack
        .agent(
            Some("mathematician"),
            &AgentOverrides::default(),
            Arc::new(MemorySessionStore::new()),
        )
        .await
        .expect("agent");
    assert_eq!(agent.settings().max_infer_iters, 4);
    assert_eq!(agent.settings().max_repeated_tool_calls, 2);
    let names: Vec<&str> = agent.tool_specs().iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["calculator", "knowledge_search"]);

    let session = agent.create_session("t").await.expect("session");
    let turn = agent
        .ask(&session.id, "17*23? And the cat?")
        .await
        .expect("turn");
    assert_eq!(turn.stop_reason, Some(StopReason::EndOfTurn));
    let results = &model.requests()[1].messages;
    let n = results.len();
    assert_eq!(results[n - 2].text(), "391");
    assert!(
        results[n - 1].text().contains("Miso"),
        "{:?}",
        results[n - 1]
    );
    assert_eq!(turn.citations[0].chunk_id, "g2");

    // Overrides replace what the config says.
    let plain = stack
        .agent(
            Some("mathematician"),
            &AgentOverrides {
                tool_groups: Some(vec![]),
                ..AgentOverrides::default()
            },
            Arc::new(MemorySessionStore::new()),
        )
        .await
        .expect("agent");
    assert!(plain.tool_specs().is_empty());
}

#[tokio::test]
async fn unknown_agents_and_references_are_clear_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stack = stack(Arc::new(ScriptedChatModel::new([])), &dir).await;
    let error = stack
        .agent(
            Some("nobody"),
            &AgentOverrides::default(),
            Arc::new(MemorySessionStore::new()),
        )
        .await
        .expect_err("no such agent");
    assert!(error.to_string().contains("mathematician"), "{error}");

    let bad = CONFIG.replace(
        r#"tool_groups = ["math", "docs"]"#,
        r#"tool_groups = ["maths"]"#,
    );
    let config = Config::from_toml_str(&bad, "corral.toml", &|_: &str| None).expect("parses");
    let error = Stack::build(
        config,
        "corral.toml",
        &registry(Arc::default(), dir.path().into()),
    )
    .expect_err("unknown group");
    let text = error.to_string();
    assert!(
        text.contains("agents.mathematician.tool_groups[0]"),
        "{text}"
    );
    assert!(text.contains("maths"), "{text}");

    let bad = CONFIG.replace("top_k = 2 }", "top_k = 0 }");
    let config = Config::from_toml_str(&bad, "corral.toml", &|_: &str| None).expect("parses");
    let error = Stack::build(
        config,
        "corral.toml",
        &registry(Arc::default(), dir.path().into()),
    )
    .expect_err("bad top_k");
    assert!(error.to_string().contains("agent.retrieval"), "{error}");
}

/// An agent whose tools come from a real MCP server (`@modelcontextprotocol/server-everything`,
/// installed by scripts/fetch-mcp-servers.sh), declared in the config like any tool group.
#[cfg(feature = "mcp")]
#[tokio::test]
async fn an_agent_calls_a_real_mcp_server_from_config() {
    let cache = std::env::var_os("CORRAL_CACHE")
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".cache/corral"))
        });
    let Some(entry) = cache
        .map(|c| c.join("mcp/node_modules/@modelcontextprotocol/server-everything/dist/index.js"))
        .filter(|p| p.is_file())
    else {
        eprintln!(
            "SKIPPED an_agent_calls_a_real_mcp_server_from_config: the MCP reference server is \
             not installed; run scripts/fetch-mcp-servers.sh"
        );
        return;
    };
    let config = format!(
        r#"{CONFIG}
[[providers.tool_runtime]]
id = "everything"
type = "mcp"
config = {{ command = "node", args = ["{entry}", "stdio"], timeout_s = 20 }}

[[tool_groups]]
id = "reference"
provider = "everything"
params = {{ tools = ["echo"] }}

[agents.mcp]
model = "chat"
tool_groups = ["reference"]
"#,
        entry = entry.display()
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let model = Arc::new(ScriptedChatModel::new([
        Step::tool_calls(vec![
            ToolCall {
                id: "a".into(),
                name: "echo".into(),
                arguments: json!({"message": "hello from corral"}),
            },
            ToolCall {
                id: "b".into(),
                name: "echo".into(),
                arguments: json!({"words": "wrong field"}),
            },
        ]),
        Step::text("The server said hello."),
    ]));
    let config = Config::from_toml_str(&config, "corral.toml", &|_: &str| None).expect("parses");
    let stack = Stack::build(
        config,
        "corral.toml",
        &registry(model.clone(), dir.path().into()),
    )
    .expect("builds");
    let agent = stack
        .agent(
            Some("mcp"),
            &AgentOverrides::default(),
            Arc::new(MemorySessionStore::new()),
        )
        .await
        .expect("agent (connects to the server)");
    let names: Vec<&str> = agent.tool_specs().iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["echo"]);
    let session = agent.create_session("t").await.expect("session");
    let turn = agent.ask(&session.id, "Say hello").await.expect("turn");
    assert_eq!(turn.answer, "The server said hello.");
    let results = &model.requests()[1].messages;
    let n = results.len();
    assert!(
        results[n - 2].text().contains("hello from corral"),
        "{:?}",
        results[n - 2]
    );
    // The bad call came back to the model as an error, not as a failed turn.
    assert!(
        results[n - 1].text().starts_with("Error:"),
        "{:?}",
        results[n - 1]
    );
}

/// The scripted loopback HTTP server of the inference crate's tests.
#[cfg(feature = "remote")]
#[path = "../../inference/tests/support/mod.rs"]
mod http_support;

/// The same agent config on a remote OpenAI-compatible endpoint: tool calls arrive as OpenAI
/// `tool_calls` deltas and results go back as `tool` messages; only the provider entry differs.
#[cfg(feature = "remote")]
#[tokio::test]
async fn the_same_agent_runs_on_a_remote_endpoint_with_openai_tool_calls() {
    use http_support::{Reply, ScriptedServer};
    let chunk = |delta: serde_json::Value, finish: Option<&str>| json!({"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
    let server = ScriptedServer::start(vec![
        Reply::sse(&[
            chunk(
                json!({"role": "assistant", "content": null, "tool_calls": [{"index": 0,
                    "id": "call_a", "type": "function",
                    "function": {"name": "calculator", "arguments": "{\"expression\": "}}]}),
                None,
            ),
            chunk(
                json!({"tool_calls": [{"index": 0, "function": {"arguments": "\"17 * 23\"}"}}]}),
                None,
            ),
            chunk(json!({}), Some("tool_calls")),
        ]),
        Reply::sse(&[
            chunk(json!({"role": "assistant", "content": "It is 391."}), None),
            chunk(json!({}), Some("stop")),
        ]),
    ])
    .await;
    let config = format!(
        r#"
[[providers.inference]]
id = "endpoint"
type = "remote::openai-compat"
config = {{ base_url = "{}" }}

[[models]]
id = "chat"
provider = "endpoint"
provider_model = "m"
kind = "chat"

[[providers.tool_runtime]]
id = "calc"
type = "calculator"

[[tool_groups]]
id = "math"
provider = "calc"

[agent]
model = "chat"
tool_groups = ["math"]
"#,
        server.base_url()
    );
    let config = Config::from_toml_str(&config, "corral.toml", &|_: &str| None).expect("parses");
    let stack = Stack::build(config, "corral.toml", &Registry::builtin()).expect("builds");
    let agent = stack
        .agent(
            None,
            &AgentOverrides::default(),
            Arc::new(MemorySessionStore::new()),
        )
        .await
        .expect("agent");
    let session = agent.create_session("t").await.expect("session");
    let turn = agent
        .ask(&session.id, "What is 17 * 23?")
        .await
        .expect("turn");
    assert_eq!(turn.answer, "It is 391.");
    assert_eq!(turn.stop_reason, Some(StopReason::EndOfTurn));

    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    let first = requests[0].json();
    assert_eq!(first["tools"][0]["function"]["name"], "calculator");
    let second = requests[1].json();
    let messages = second["messages"].as_array().expect("messages");
    let call = &messages[messages.len() - 2];
    assert_eq!(call["role"], "assistant");
    assert_eq!(call["tool_calls"][0]["id"], "call_a");
    let result = &messages[messages.len() - 1];
    assert_eq!(result["role"], "tool");
    assert_eq!(result["tool_call_id"], "call_a");
    assert_eq!(result["content"], "391");
}
