//! Chat completion: the request a caller builds, the answer a model gives, whole or streamed.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};

use crate::error::ChatError;
use crate::message::{Message, ToolCall};
use crate::tool::ToolSpec;

/// A chat completion request: the conversation so far and how to continue it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatRequest {
    pub messages: Vec<Message>,
    #[serde(default)]
    pub sampling: Sampling,
    /// The most tokens to generate; `None` leaves it to the provider (up to the context's end).
    #[serde(default)]
    pub max_tokens: Option<u32>,
    /// Generation stops before any of these strings; they are not part of the answer.
    #[serde(default)]
    pub stop: Vec<String>,
    #[serde(default)]
    pub tools: Vec<ToolSpec>,
    #[serde(default)]
    pub tool_choice: ToolChoice,
    #[serde(default)]
    pub response_format: ResponseFormat,
}

impl ChatRequest {
    pub fn new(messages: Vec<Message>) -> Self {
        Self {
            messages,
            ..Self::default()
        }
    }

    pub fn with_max_tokens(mut self, max_tokens: u32) -> Self {
        self.max_tokens = Some(max_tokens);
        self
    }

    pub fn with_sampling(mut self, sampling: Sampling) -> Self {
        self.sampling = sampling;
        self
    }

    pub fn with_tools(mut self, tools: Vec<ToolSpec>, choice: ToolChoice) -> Self {
        self.tools = tools;
        self.tool_choice = choice;
        self
    }

    pub fn with_stop(mut self, stop: Vec<String>) -> Self {
        self.stop = stop;
        self
    }

    pub fn with_response_format(mut self, format: ResponseFormat) -> Self {
        self.response_format = format;
        self
    }
}

/// How to pick each next token. `None` everywhere means the provider's defaults; `temperature = 0`
/// means greedy.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Sampling {
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub top_k: Option<u32>,
    pub min_p: Option<f32>,
    pub repetition_penalty: Option<f32>,
    pub presence_penalty: Option<f32>,
    pub frequency_penalty: Option<f32>,
    /// The same seed with the same request gives the same output, where the provider supports it.
    pub seed: Option<u64>,
}

impl Sampling {
    /// Always the most likely token.
    pub fn greedy() -> Self {
        Self {
            temperature: Some(0.0),
            ..Self::default()
        }
    }
}

/// A raw text continuation: the prompt goes to the model as it is, with no chat template.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GenerateRequest {
    pub prompt: String,
    #[serde(default)]
    pub sampling: Sampling,
    #[serde(default)]
    pub max_tokens: Option<u32>,
    #[serde(default)]
    pub stop: Vec<String>,
}

impl GenerateRequest {
    pub fn new(prompt: impl Into<String>) -> Self {
        Self {
            prompt: prompt.into(),
            ..Self::default()
        }
    }
}

/// Whether and how the model may call tools.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToolChoice {
    /// The model decides.
    #[default]
    Auto,
    /// The model must call at least one tool.
    Required,
    /// The model must not call tools.
    None,
    /// The model must call this tool.
    Tool(String),
}

/// The shape the answer must take.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ResponseFormat {
    #[default]
    Text,
    /// A JSON value that validates against `schema`.
    JsonSchema {
        name: String,
        schema: serde_json::Value,
        #[serde(default)]
        strict: bool,
    },
}

/// Token counts for one call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
}

impl Usage {
    pub fn total_tokens(&self) -> u32 {
        self.prompt_tokens.saturating_add(self.completion_tokens)
    }
}

/// Why the model stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// The model ended its turn, or a stop string was reached.
    Stop,
    /// `max_tokens` or the end of the context was reached.
    Length,
    /// The model asked for tool calls.
    ToolCalls,
    /// The provider withheld the content.
    ContentFilter,
}

/// A complete answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatResponse {
    pub text: String,
    #[serde(default)]
    pub tool_calls: Vec<ToolCall>,
    pub finish_reason: FinishReason,
    /// Token counts, when the provider reports them.
    #[serde(default)]
    pub usage: Option<Usage>,
    /// Set when the model's output looked like a tool call that could not be parsed (the output
    /// is in `text`); see [`ChatDelta::ToolCallError`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_error: Option<String>,
}

impl ChatResponse {
    /// The answer as the assistant message to append to the conversation.
    pub fn to_message(&self) -> Message {
        Message::assistant_tool_calls(self.text.clone(), self.tool_calls.clone())
    }
}

/// One piece of a streamed answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ChatDelta {
    Text {
        text: String,
    },
    /// A fragment of the tool call at `index`: the id and name come once, the arguments in pieces.
    ToolCall(ToolCallDelta),
    Usage(Usage),
    /// The model tried to call a tool but its output could not be read as a call. The output is
    /// kept as text; this message says what was wrong, so an agent can tell the model and retry.
    ToolCallError {
        message: String,
    },
    Finish {
        reason: FinishReason,
    },
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCallDelta {
    pub index: usize,
    pub id: Option<String>,
    pub name: Option<String>,
    /// A fragment of the arguments' JSON text, to be appended to the fragments before it.
    pub arguments: String,
}

/// A streamed answer. Dropping it cancels generation.
pub type ChatStream = BoxStream<'static, Result<ChatDelta, ChatError>>;

/// A chat model, local or remote.
#[async_trait]
pub trait ChatModel: Send + Sync {
    /// Streams the answer as it is generated.
    async fn stream(&self, request: &ChatRequest) -> Result<ChatStream, ChatError>;

    /// The whole answer at once. The default collects [`Self::stream`]; providers with a cheaper
    /// non-streaming path override it.
    async fn complete(&self, request: &ChatRequest) -> Result<ChatResponse, ChatError> {
        StreamCollector::collect(self.stream(request).await?).await
    }

    /// Streams a raw continuation of `request.prompt` (text, usage and finish deltas). Models that
    /// only chat (most hosted endpoints) keep the default, which says so.
    async fn generate(&self, request: &GenerateRequest) -> Result<ChatStream, ChatError> {
        let _ = request;
        Err(ChatError::InvalidRequest(
            "this model takes chat messages only, not raw prompts".into(),
        ))
    }
}

#[async_trait]
impl<M: ChatModel + ?Sized> ChatModel for Arc<M> {
    async fn stream(&self, request: &ChatRequest) -> Result<ChatStream, ChatError> {
        (**self).stream(request).await
    }
    async fn complete(&self, request: &ChatRequest) -> Result<ChatResponse, ChatError> {
        (**self).complete(request).await
    }
    async fn generate(&self, request: &GenerateRequest) -> Result<ChatStream, ChatError> {
        (**self).generate(request).await
    }
}

#[async_trait]
impl<M: ChatModel + ?Sized> ChatModel for Box<M> {
    async fn stream(&self, request: &ChatRequest) -> Result<ChatStream, ChatError> {
        (**self).stream(request).await
    }
    async fn complete(&self, request: &ChatRequest) -> Result<ChatResponse, ChatError> {
        (**self).complete(request).await
    }
    async fn generate(&self, request: &GenerateRequest) -> Result<ChatStream, ChatError> {
        (**self).generate(request).await
    }
}

/// Assembles streamed deltas into a [`ChatResponse`]: text appended, tool-call fragments joined by
/// index and their arguments parsed once complete.
#[derive(Debug, Default)]
pub struct StreamCollector {
    text: String,
    tool_calls: BTreeMap<usize, ToolCallDelta>,
    usage: Option<Usage>,
    finish_reason: Option<FinishReason>,
    tool_call_error: Option<String>,
}

impl StreamCollector {
    /// Reads a whole stream. An error mid-stream after some text becomes
    /// [`ChatError::StreamInterrupted`] carrying that text.
    pub async fn collect(mut stream: ChatStream) -> Result<ChatResponse, ChatError> {
        let mut collector = Self::default();
        while let Some(delta) = stream.next().await {
            match delta {
                Ok(delta) => collector.push(delta),
                Err(ChatError::Provider(source)) if !collector.text.is_empty() => {
                    return Err(ChatError::StreamInterrupted {
                        partial_text: collector.text,
                        source,
                    });
                }
                Err(e) => return Err(e),
            }
        }
        Ok(collector.finish())
    }

    pub fn push(&mut self, delta: ChatDelta) {
        match delta {
            ChatDelta::Text { text } => self.text.push_str(&text),
            ChatDelta::ToolCall(fragment) => {
                let call = self
                    .tool_calls
                    .entry(fragment.index)
                    .or_insert_with(|| ToolCallDelta {
                        index: fragment.index,
                        ..ToolCallDelta::default()
                    });
                if fragment.id.is_some() {
                    call.id = fragment.id;
                }
                if let Some(name) = fragment.name {
                    call.name.get_or_insert_with(String::new).push_str(&name);
                }
                call.arguments.push_str(&fragment.arguments);
            }
            ChatDelta::Usage(usage) => self.usage = Some(usage),
            ChatDelta::ToolCallError { message } => self.tool_call_error = Some(message),
            ChatDelta::Finish { reason } => self.finish_reason = Some(reason),
        }
    }

    /// The text received so far.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The assembled answer. A stream that ended without saying why ended on its own: `Stop`, or
    /// `ToolCalls` when it carried tool calls.
    pub fn finish(self) -> ChatResponse {
        let tool_calls: Vec<ToolCall> = self
            .tool_calls
            .into_values()
            .map(|call| ToolCall {
                id: call.id.unwrap_or_else(|| format!("call_{}", call.index)),
                name: call.name.unwrap_or_default(),
                arguments: parse_arguments(&call.arguments),
            })
            .collect();
        let finish_reason = self.finish_reason.unwrap_or(if tool_calls.is_empty() {
            FinishReason::Stop
        } else {
            FinishReason::ToolCalls
        });
        ChatResponse {
            text: self.text,
            tool_calls,
            finish_reason,
            usage: self.usage,
            tool_call_error: self.tool_call_error,
        }
    }
}

/// Tool-call arguments as JSON; empty means no arguments, and text that is not JSON is kept as a
/// JSON string so the caller can report it to the model.
fn parse_arguments(raw: &str) -> serde_json::Value {
    if raw.trim().is_empty() {
        return serde_json::Value::Object(serde_json::Map::new());
    }
    serde_json::from_str(raw).unwrap_or_else(|_| serde_json::Value::String(raw.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{ErrorKind, ProviderError};
    use futures::stream;

    fn text(t: &str) -> Result<ChatDelta, ChatError> {
        Ok(ChatDelta::Text { text: t.into() })
    }

    fn call(index: usize, id: Option<&str>, name: Option<&str>, args: &str) -> ChatDelta {
        ChatDelta::ToolCall(ToolCallDelta {
            index,
            id: id.map(Into::into),
            name: name.map(Into::into),
            arguments: args.into(),
        })
    }

    #[tokio::test]
    async fn collector_joins_text_and_tool_call_fragments() {
        let deltas = vec![
            text("Let me "),
            text("check."),
            Ok(call(0, Some("a"), Some("weather"), "{\"ci")),
            Ok(call(1, Some("b"), Some("time"), "")),
            Ok(call(0, None, None, "ty\": \"Paris\"}")),
            Ok(ChatDelta::Usage(Usage {
                prompt_tokens: 10,
                completion_tokens: 5,
            })),
        ];
        let response = StreamCollector::collect(stream::iter(deltas).boxed())
            .await
            .expect("collects");
        assert_eq!(response.text, "Let me check.");
        assert_eq!(response.finish_reason, FinishReason::ToolCalls);
        assert_eq!(response.tool_calls.len(), 2);
        assert_eq!(response.tool_calls[0].name, "weather");
        assert_eq!(response.tool_calls[0].arguments["city"], "Paris");
        assert_eq!(response.tool_calls[1].arguments, serde_json::json!({}));
        assert_eq!(response.usage.map(|u| u.total_tokens()), Some(15));
    }

    #[tokio::test]
    async fn malformed_arguments_are_kept_as_text() {
        let deltas = vec![Ok(call(0, Some("a"), Some("f"), "{not json"))];
        let response = StreamCollector::collect(stream::iter(deltas).boxed())
            .await
            .expect("collects");
        assert_eq!(response.tool_calls[0].arguments, "{not json");
    }

    #[tokio::test]
    async fn a_stream_broken_after_text_keeps_the_text() {
        let broken = ProviderError::new(ErrorKind::Transient, "connection reset");
        let deltas = vec![text("Paris is"), Err(ChatError::Provider(broken))];
        match StreamCollector::collect(stream::iter(deltas).boxed()).await {
            Err(ChatError::StreamInterrupted { partial_text, .. }) => {
                assert_eq!(partial_text, "Paris is")
            }
            other => panic!("expected StreamInterrupted, got {other:?}"),
        }
    }
}
