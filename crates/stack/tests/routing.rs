//! A stack built from a config routes ids to providers and applies the resilience wrappers the
//! config asks for. Providers here are scripted; the registry is the same one real providers use.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use corral_core::testing::{ScriptedChatModel, Step};
use corral_core::{
    CapabilityError, ChatError, ChatModel, ChatRequest, EmbedError, Embedder, Embedding, ErrorKind,
    InferenceProvider, Message, ProviderError, VectorIoProvider, VectorStore, VectorStoreError,
    async_trait,
};
use corral_stack::{
    Config, ConfigError, ConfigErrorKind, ModelKind, ProviderType, Registry, Stack,
};
use serde::Deserialize;

/// An inference provider that hands out scripted models by name and counts what it was asked for.
#[derive(Default)]
struct ScriptedProvider {
    models: HashMap<String, Arc<ScriptedChatModel>>,
    asked: Mutex<Vec<String>>,
    /// Embedder builds that fail (transiently) before one succeeds.
    embedder_failures: Mutex<u32>,
    /// Chat model builds that fail (transiently) before one succeeds.
    chat_failures: Mutex<u32>,
}

#[async_trait]
impl InferenceProvider for ScriptedProvider {
    async fn chat_model(&self, name: &str) -> Result<Arc<dyn ChatModel>, ChatError> {
        self.asked.lock().expect("lock").push(name.to_string());
        {
            let mut failures = self.chat_failures.lock().expect("lock");
            if *failures > 0 {
                *failures -= 1;
                return Err(ProviderError::new(ErrorKind::Transient, "loading failed").into());
            }
        }
        match self.models.get(name) {
            Some(model) => Ok(model.clone()),
            None => Err(ChatError::InvalidRequest(format!(
                "no scripted model `{name}`"
            ))),
        }
    }
    async fn embedder(&self, name: &str) -> Result<Arc<dyn Embedder>, EmbedError> {
        if name == "down" {
            return Err(ProviderError::new(ErrorKind::Transient, "provider is down").into());
        }
        {
            let mut failures = self.embedder_failures.lock().expect("lock");
            if *failures > 0 {
                *failures -= 1;
                return Err(ProviderError::new(ErrorKind::Transient, "probe failed").into());
            }
        }
        let dimension = name
            .parse()
            .map_err(|_| EmbedError::InvalidRequest(format!("`{name}` is not a dimension")))?;
        Ok(Arc::new(FixedEmbedder { dimension }))
    }
}

struct FixedEmbedder {
    dimension: usize,
}

#[async_trait]
impl Embedder for FixedEmbedder {
    fn dimension(&self) -> usize {
        self.dimension
    }
    fn max_input_tokens(&self) -> usize {
        512
    }
    async fn embed(&self, inputs: &[String]) -> Result<Vec<Embedding>, EmbedError> {
        Ok(inputs.iter().map(|_| vec![0.0; self.dimension]).collect())
    }
}

/// The scripted provider's own config, parsed by the stack.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScriptedConfig {
    /// Which of the test's providers this entry is.
    name: String,
    #[serde(default)]
    threads: Option<u32>,
}

/// A vector_io provider that records the dimension stores are opened with.
#[derive(Default)]
struct RecordingVectorIo {
    opened: Mutex<Vec<(String, usize)>>,
}

#[async_trait]
impl VectorIoProvider for RecordingVectorIo {
    async fn open_store(
        &self,
        name: &str,
        dimension: usize,
    ) -> Result<Arc<dyn VectorStore>, VectorStoreError> {
        self.opened
            .lock()
            .expect("lock")
            .push((name.to_string(), dimension));
        Err(VectorStoreError::InvalidRequest("recording only".into()))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Empty {}

struct Fixture {
    registry: Registry,
    providers: HashMap<String, Arc<ScriptedProvider>>,
    vector_io: Arc<RecordingVectorIo>,
}

impl Fixture {
    /// Providers `a` and `b`, each serving the given scripted models.
    fn new(models: &[(&str, &str, Vec<Step>)]) -> Self {
        let mut providers: HashMap<String, ScriptedProvider> = ["a", "b"]
            .into_iter()
            .map(|p| (p.to_string(), ScriptedProvider::default()))
            .collect();
        for (provider, model, steps) in models {
            providers
                .entry(provider.to_string())
                .or_default()
                .models
                .insert(
                    model.to_string(),
                    Arc::new(ScriptedChatModel::new(steps.clone())),
                );
        }
        let providers: HashMap<String, Arc<ScriptedProvider>> = providers
            .into_iter()
            .map(|(k, v)| (k, Arc::new(v)))
            .collect();
        let mut registry = Registry::empty();
        let table = providers.clone();
        registry.inference.add(ProviderType::new(
            "test::scripted",
            "scripted models for tests",
            move |config: ScriptedConfig| {
                if config.threads == Some(0) {
                    return Err("threads must be at least 1".to_string());
                }
                table
                    .get(&config.name)
                    .map(|p| p.clone() as Arc<dyn InferenceProvider>)
                    .ok_or_else(|| format!("no scripted provider named `{}`", config.name))
            },
        ));
        let vector_io = Arc::new(RecordingVectorIo::default());
        let recording = vector_io.clone();
        registry.vector_io.add(ProviderType::new(
            "test::recording",
            "records opens",
            move |_: Empty| Ok(recording.clone() as Arc<dyn VectorIoProvider>),
        ));
        Self {
            registry,
            providers,
            vector_io,
        }
    }

    fn build(&self, text: &str) -> Result<Stack, ConfigError> {
        let config = Config::from_toml_str(text, "corral.toml", &|_: &str| None)?;
        Stack::build(config, "corral.toml", &self.registry)
    }

    fn model(&self, provider: &str, model: &str) -> Arc<ScriptedChatModel> {
        self.providers[provider].models[model].clone()
    }
}

const TWO_PROVIDERS: &str = r#"
[[providers.inference]]
id = "a"
type = "test::scripted"
config = { name = "a" }

[[providers.inference]]
id = "b"
type = "test::scripted"
config = { name = "b", threads = 4 }
"#;

fn request() -> ChatRequest {
    ChatRequest::new(vec![Message::user("hi")])
}

fn transient() -> Step {
    Step::Fail(ProviderError::new(ErrorKind::Transient, "overloaded").into())
}

#[tokio::test]
async fn a_model_id_routes_to_its_provider_under_the_provider_model_name() {
    let fixture = Fixture::new(&[
        ("a", "llama-3.2-1b.gguf", vec![Step::text("from a")]),
        ("b", "fast", vec![Step::text("from b")]),
    ]);
    let stack = fixture
        .build(&format!(
            "{TWO_PROVIDERS}
            [[models]]
            id = \"small\"
            provider = \"a\"
            provider_model = \"llama-3.2-1b.gguf\"
            kind = \"chat\"
            [[models]]
            id = \"fast\"
            provider = \"b\"
            kind = \"llm\"
            "
        ))
        .expect("builds");
    let routes = stack.routes();
    assert_eq!(routes.len(), 2);
    assert_eq!(
        (
            routes[0].provider.as_str(),
            routes[0].provider_model.as_str()
        ),
        ("a", "llama-3.2-1b.gguf")
    );
    assert_eq!(routes[0].provider_type, "test::scripted");
    assert_eq!(routes[1].kind, ModelKind::Chat);

    let small = stack.chat_model("small").await.expect("routes");
    assert_eq!(
        small.complete(&request()).await.expect("answers").text,
        "from a"
    );
    let fast = stack.chat_model("fast").await.expect("routes");
    assert_eq!(
        fast.complete(&request()).await.expect("answers").text,
        "from b"
    );

    // Built once, then shared.
    let again = stack.chat_model("small").await.expect("routes");
    assert!(Arc::ptr_eq(&small, &again));
    assert_eq!(fixture.providers["a"].asked.lock().expect("lock").len(), 1);
}

#[tokio::test]
async fn unknown_ids_and_wrong_kinds_are_invalid_requests() {
    let fixture = Fixture::new(&[("a", "m", vec![])]);
    let stack = fixture
        .build(&format!("{TWO_PROVIDERS}\n[[models]]\nid = \"m\"\nprovider = \"a\"\nkind = \"chat\"\n[[models]]\nid = \"e\"\nprovider = \"a\"\nprovider_model = \"384\"\nkind = \"embedding\"\n"))
        .expect("builds");
    let error = stack.chat_model("nope").await.err().expect("unknown");
    assert_eq!(error.kind(), ErrorKind::InvalidRequest);
    assert_eq!(
        error.to_string(),
        "invalid request: unknown chat model `nope`; declared: m"
    );
    let error = stack.chat_model("e").await.err().expect("wrong kind");
    assert!(
        error
            .to_string()
            .contains("`e` is a model of kind embedding, not chat"),
        "{error}"
    );
    assert_eq!(
        stack.embedder("e").await.expect("embedder").dimension(),
        384
    );
}

#[tokio::test(start_paused = true)]
async fn retry_and_timeout_come_from_the_provider_config() {
    let fixture = Fixture::new(&[
        (
            "a",
            "m",
            vec![transient(), Step::Stall, Step::text("third time")],
        ),
        ("b", "m", vec![transient(), Step::text("never")]),
    ]);
    let stack = fixture
        .build(
            r#"
            [[providers.inference]]
            id = "a"
            type = "test::scripted"
            config = { name = "a" }
            timeout_secs = 2
            retry = { max_attempts = 3, initial_backoff_ms = 100, jitter = false }

            [[providers.inference]]
            id = "b"
            type = "test::scripted"
            config = { name = "b" }

            [[models]]
            id = "resilient"
            provider = "a"
            provider_model = "m"
            kind = "chat"

            [[models]]
            id = "fragile"
            provider = "b"
            provider_model = "m"
            kind = "chat"
            "#,
        )
        .expect("builds");
    let start = tokio::time::Instant::now();
    let answer = stack
        .chat_model("resilient")
        .await
        .expect("routes")
        .complete(&request())
        .await;
    assert_eq!(
        answer
            .expect("retried past a transient error and a timeout")
            .text,
        "third time"
    );
    // 100 ms backoff, a 2 s timeout, then 200 ms backoff.
    assert_eq!(start.elapsed(), Duration::from_millis(2300));
    assert_eq!(fixture.model("a", "m").calls(), 3);

    let error = stack
        .chat_model("fragile")
        .await
        .expect("routes")
        .complete(&request())
        .await
        .expect_err("no retry configured");
    assert_eq!(error.kind(), ErrorKind::Transient);
    assert_eq!(fixture.model("b", "m").calls(), 1);
}

#[tokio::test]
async fn fallbacks_come_from_the_model_config() {
    let fixture = Fixture::new(&[
        ("a", "primary", vec![transient()]),
        ("b", "backup", vec![Step::text("from backup")]),
    ]);
    let stack = fixture
        .build(&format!(
            "{TWO_PROVIDERS}
            [[models]]
            id = \"primary\"
            provider = \"a\"
            kind = \"chat\"
            fallbacks = [\"backup\"]
            [[models]]
            id = \"backup\"
            provider = \"b\"
            kind = \"chat\"
            "
        ))
        .expect("builds");
    let answer = stack
        .chat_model("primary")
        .await
        .expect("routes")
        .complete(&request())
        .await;
    assert_eq!(answer.expect("falls back").text, "from backup");
}

#[test]
fn provider_config_errors_name_the_key_inside_the_provider_config() {
    let fixture = Fixture::new(&[("a", "m", vec![])]);
    let error = fixture
        .build("[[providers.inference]]\nid = \"a\"\ntype = \"test::scripted\"\nconfig = { name = \"a\", threads = \"many\" }\n")
        .expect_err("bad threads");
    assert_eq!(
        error.key.as_deref(),
        Some("providers.inference[0].config.threads")
    );
    assert_eq!(error.kind, ConfigErrorKind::BadValue);

    let error = fixture
        .build("[[providers.inference]]\nid = \"a\"\ntype = \"test::scripted\"\nconfig = { name = \"a\", treads = 2 }\n")
        .expect_err("typo");
    assert_eq!(
        error.key.as_deref(),
        Some("providers.inference[0].config.treads")
    );
    assert_eq!(error.kind, ConfigErrorKind::UnknownKey);

    let error = fixture
        .build("[[providers.inference]]\nid = \"a\"\ntype = \"test::scripted\"\n")
        .expect_err("no name");
    assert_eq!(
        error.key.as_deref(),
        Some("providers.inference[0].config.name")
    );
    assert_eq!(error.kind, ConfigErrorKind::MissingKey);

    // The provider's own check, reported at its config.
    let error = fixture
        .build("[[providers.inference]]\nid = \"a\"\ntype = \"test::scripted\"\nconfig = { name = \"a\", threads = 0 }\n")
        .expect_err("zero threads");
    assert_eq!(error.key.as_deref(), Some("providers.inference[0].config"));
    assert_eq!(
        error.to_string(),
        "corral.toml: providers.inference[0].config: threads must be at least 1"
    );
}

#[test]
fn structural_mistakes_name_their_key() {
    let fixture = Fixture::new(&[("a", "m", vec![])]);
    let cases: &[(&str, ConfigErrorKind, &str)] = &[
        (
            "[[models]]\nid = \"m\"\nprovider = \"a\"\nkind = \"chat\"\n[[models]]\nid = \"m\"\nprovider = \"b\"\nkind = \"chat\"\n",
            ConfigErrorKind::Duplicate,
            "models[1].id",
        ),
        (
            "[[models]]\nid = \"m\"\nprovider = \"a\"\nkind = \"chat\"\nfallbacks = [\"m\"]\n",
            ConfigErrorKind::BadValue,
            "models[0].fallbacks[0]",
        ),
        (
            "[[models]]\nid = \"m\"\nprovider = \"a\"\nkind = \"chat\"\nfallbacks = [\"e\"]\n[[models]]\nid = \"e\"\nprovider = \"a\"\nkind = \"embedding\"\n",
            ConfigErrorKind::UnknownReference,
            "models[0].fallbacks[0]",
        ),
        (
            "[[models]]\nid = \"m\"\nprovider = \"a\"\nkind = \"chat\"\n[[providers.vector_io]]\nid = \"v\"\ntype = \"test::recording\"\n[[vector_stores]]\nid = \"docs\"\nprovider = \"v\"\nembedding_model = \"m\"\n",
            ConfigErrorKind::UnknownReference,
            "vector_stores[0].embedding_model",
        ),
        (
            "[[providers.vector_io]]\nid = \"v\"\ntype = \"test::recording\"\nretry = { max_attempts = 2 }\n",
            ConfigErrorKind::UnknownKey,
            "providers.vector_io[0].retry",
        ),
        (
            "[[providers.inference]]\nid = \"x\"\ntype = \"test::scripted\"\nconfig = { name = \"a\" }\ntimeout_secs = -1\n",
            ConfigErrorKind::BadValue,
            "providers.inference[2].timeout_secs",
        ),
        (
            "[[providers.inference]]\nid = \"x\"\ntype = \"test::scripted\"\nconfig = { name = \"a\" }\nretry = { max_attempts = 0 }\n",
            ConfigErrorKind::BadValue,
            "providers.inference[2].retry.max_attempts",
        ),
        (
            "[[shields]]\nid = \"pii\"\nprovider = \"nobody\"\n",
            ConfigErrorKind::UnknownReference,
            "shields[0].provider",
        ),
        (
            "[[tool_groups]]\nid = \"web\"\nprovider = \"nobody\"\n",
            ConfigErrorKind::UnknownReference,
            "tool_groups[0].provider",
        ),
        (
            "[[providers.safety]]\nid = \"s\"\ntype = \"inline::nothing\"\n",
            ConfigErrorKind::UnknownProviderType,
            "providers.safety[0].type",
        ),
    ];
    for (body, kind, key) in cases {
        let text = format!("{TWO_PROVIDERS}\n{body}");
        let error = fixture.build(&text).expect_err(body);
        assert_eq!(
            (error.kind, error.key.as_deref()),
            (*kind, Some(*key)),
            "{error}\n--- for:\n{body}"
        );
    }
}

#[tokio::test]
async fn a_vector_store_opens_with_its_embedding_models_dimension() {
    let fixture = Fixture::new(&[("a", "m", vec![])]);
    let stack = fixture
        .build(
            "[[providers.inference]]\nid = \"a\"\ntype = \"test::scripted\"\nconfig = { name = \"a\" }\n\
             [[providers.vector_io]]\nid = \"v\"\ntype = \"test::recording\"\n\
             [[models]]\nid = \"minilm\"\nprovider = \"a\"\nprovider_model = \"384\"\nkind = \"embedding\"\n\
             [[vector_stores]]\nid = \"docs\"\nprovider = \"v\"\nembedding_model = \"minilm\"\n",
        )
        .expect("builds");
    let error = stack
        .vector_store("docs")
        .await
        .err()
        .expect("recording store refuses");
    assert_eq!(error.to_string(), "invalid request: recording only");
    assert_eq!(
        *fixture.vector_io.opened.lock().expect("lock"),
        vec![("docs".to_string(), 384)]
    );
    let error = stack.vector_store("nope").await.err().expect("unknown");
    assert_eq!(
        error.to_string(),
        "invalid request: unknown vector store `nope`; declared: docs"
    );
}

#[test]
fn a_full_config_round_trips_through_toml() {
    let fixture = Fixture::new(&[("a", "m", vec![])]);
    let text = format!(
        "{TWO_PROVIDERS}
        [[providers.vector_io]]
        id = \"v\"
        type = \"test::recording\"
        [[models]]
        id = \"m\"
        provider = \"a\"
        kind = \"chat\"
        fallbacks = [\"n\"]
        [[models]]
        id = \"n\"
        provider = \"b\"
        provider_model = \"remote-name\"
        kind = \"chat\"
        [[models]]
        id = \"e\"
        provider = \"a\"
        kind = \"embedding\"
        [[vector_stores]]
        id = \"docs\"
        provider = \"v\"
        embedding_model = \"e\"
        [agent]
        model = \"m\"
        instructions = \"Be brief.\"
        vector_stores = [\"docs\"]
        [server]
        port = 9999
        "
    );
    let stack = fixture.build(&text).expect("builds");
    let config = stack.config().clone();
    let written = config.to_toml_string().expect("serializes");
    let reread =
        Config::from_toml_str(&written, "written.toml", &|_: &str| None).expect("reparses");
    assert_eq!(reread, config, "{written}");
}

#[tokio::test]
async fn a_chain_member_that_cannot_be_built_now_is_left_out() {
    let fixture = Fixture::new(&[]);
    let stack = fixture
        .build(&format!(
            "{TWO_PROVIDERS}
            [[models]]
            id = \"primary\"
            provider = \"a\"
            provider_model = \"down\"
            kind = \"embedding\"
            fallbacks = [\"backup\"]
            [[models]]
            id = \"backup\"
            provider = \"b\"
            provider_model = \"384\"
            kind = \"embedding\"
            fallbacks = [\"primary\"]
            "
        ))
        .expect("builds");
    // The primary's provider is down: the fallback serves.
    assert_eq!(
        stack
            .embedder("primary")
            .await
            .expect("falls back")
            .dimension(),
        384
    );
    // The fallback's provider is down: the primary still serves.
    assert_eq!(
        stack.embedder("backup").await.expect("serves").dimension(),
        384
    );
}

#[tokio::test]
async fn a_model_none_of_whose_members_can_be_built_reports_the_first_error() {
    let fixture = Fixture::new(&[]);
    let stack = fixture
        .build(&format!(
            "{TWO_PROVIDERS}\n[[models]]\nid = \"e\"\nprovider = \"a\"\nprovider_model = \"down\"\nkind = \"embedding\"\n"
        ))
        .expect("builds");
    let error = stack.embedder("e").await.err().expect("down");
    assert_eq!(error.kind(), ErrorKind::Transient);
    assert!(error.to_string().contains("provider is down"), "{error}");
}

#[tokio::test(start_paused = true)]
async fn building_a_model_gets_the_providers_retries_too() {
    let fixture = Fixture::new(&[]);
    *fixture.providers["a"]
        .embedder_failures
        .lock()
        .expect("lock") = 2;
    let stack = fixture
        .build(
            "[[providers.inference]]\nid = \"a\"\ntype = \"test::scripted\"\nconfig = { name = \"a\" }\n\
             retry = { max_attempts = 3, initial_backoff_ms = 100, jitter = false }\n\
             [[models]]\nid = \"e\"\nprovider = \"a\"\nprovider_model = \"8\"\nkind = \"embedding\"\n",
        )
        .expect("builds");
    assert_eq!(stack.embedder("e").await.expect("third try").dimension(), 8);
}

#[tokio::test(start_paused = true)]
async fn a_member_left_out_comes_back_once_its_provider_does() {
    let fixture = Fixture::new(&[
        ("a", "m", vec![Step::text("from a")]),
        (
            "b",
            "m",
            vec![Step::text("from b"), Step::text("from b again")],
        ),
    ]);
    *fixture.providers["a"].chat_failures.lock().expect("lock") = 1;
    let stack = fixture
        .build(&format!(
            "{TWO_PROVIDERS}
            [[models]]
            id = \"primary\"
            provider = \"a\"
            provider_model = \"m\"
            kind = \"chat\"
            fallbacks = [\"backup\"]
            [[models]]
            id = \"backup\"
            provider = \"b\"
            provider_model = \"m\"
            kind = \"chat\"
            "
        ))
        .expect("builds");
    let ask = || async {
        stack
            .chat_model("primary")
            .await
            .expect("serves")
            .complete(&request())
            .await
            .expect("answers")
            .text
    };
    // The primary's provider fails to load it: the backup serves, and keeps serving for a while.
    assert_eq!(ask().await, "from b");
    tokio::time::advance(corral_stack::REBUILD_AFTER / 2).await;
    assert_eq!(ask().await, "from b again");
    // Then the chain is built again, and the primary is back.
    tokio::time::advance(corral_stack::REBUILD_AFTER).await;
    assert_eq!(ask().await, "from a");
    assert_eq!(fixture.providers["a"].asked.lock().expect("lock").len(), 2);
}
