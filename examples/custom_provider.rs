//! Plugging your own provider into a stack: register a provider type, name it in a config, and
//! call it through the same routing, retries and fallbacks as the built-in providers.
//!
//! Run with `cargo run --example custom_provider`.

use std::sync::Arc;

use corral::stack::{Config, ProviderType, Registry, Stack};
use corral::{
    ChatDelta, ChatError, ChatModel, ChatRequest, ChatStream, EmbedError, Embedder, FinishReason,
    InferenceProvider, Message, async_trait,
};
use futures::StreamExt;
use serde::Deserialize;

/// A "model" that answers every question by shouting it back.
struct Shouter {
    exclamations: usize,
}

#[async_trait]
impl ChatModel for Shouter {
    async fn stream(&self, request: &ChatRequest) -> Result<ChatStream, ChatError> {
        let question = request
            .messages
            .iter()
            .rev()
            .find(|m| matches!(m, Message::User { .. }))
            .map(Message::text)
            .ok_or_else(|| ChatError::InvalidRequest("no user message to shout".into()))?;
        let answer = format!(
            "{}{}",
            question.to_uppercase(),
            "!".repeat(self.exclamations)
        );
        let deltas = answer
            .split_inclusive(' ')
            .map(|word| {
                Ok(ChatDelta::Text {
                    text: word.to_string(),
                })
            })
            .chain([Ok(ChatDelta::Finish {
                reason: FinishReason::Stop,
            })])
            .collect::<Vec<_>>();
        Ok(futures::stream::iter(deltas).boxed())
    }
}

/// The provider: its config comes from the `config` table of its `[[providers.inference]]` entry.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ShouterConfig {
    #[serde(default = "one")]
    exclamations: usize,
}

fn one() -> usize {
    1
}

struct ShouterProvider(ShouterConfig);

#[async_trait]
impl InferenceProvider for ShouterProvider {
    async fn chat_model(&self, _name: &str) -> Result<Arc<dyn ChatModel>, ChatError> {
        Ok(Arc::new(Shouter {
            exclamations: self.0.exclamations,
        }))
    }
    async fn embedder(&self, name: &str) -> Result<Arc<dyn Embedder>, EmbedError> {
        Err(EmbedError::InvalidRequest(format!(
            "the shouter has no embedder `{name}`"
        )))
    }
}

const CONFIG: &str = r#"
[[providers.inference]]
id = "loud"
type = "example::shouter"
config = { exclamations = 3 }
retry = { max_attempts = 2 }

[[models]]
id = "shouty"
provider = "loud"
kind = "chat"
"#;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut registry = Registry::builtin();
    registry.inference.add(ProviderType::new(
        "example::shouter",
        "answers by shouting the question back",
        |config: ShouterConfig| Ok(Arc::new(ShouterProvider(config)) as Arc<dyn InferenceProvider>),
    ));
    let config = Config::parse(CONFIG, "example.toml")?;
    let stack = Stack::build(config, "example.toml", &registry)?;

    let model = stack.chat_model("shouty").await?;
    let request = ChatRequest::new(vec![Message::user("is anybody there")]);
    let mut stream = model.stream(&request).await?;
    while let Some(delta) = stream.next().await {
        if let ChatDelta::Text { text } = delta? {
            print!("{text}");
        }
    }
    println!();
    Ok(())
}
