//! The OpenAI chat-completions, completions, embeddings and models JSON, and its mapping to and
//! from `corral-core` types. Nothing outside this provider sees these shapes.
//!
//! Requests are built as the OpenAI API reference documents them. Responses are read tolerantly:
//! unknown fields are ignored and optional ones may be missing or `null`, since every
//! "OpenAI-compatible" server differs a little.

use corral_core::{
    ChatDelta, ChatRequest, ChatResponse, ContentPart, FinishReason, GenerateRequest, Message,
    ResponseFormat, Sampling, ToolCall, ToolCallDelta, ToolChoice, Usage,
};
use serde::Deserialize;
use serde_json::{Map, Value, json};

/// The body of `POST /chat/completions`.
pub(crate) fn chat_body(model: &str, request: &ChatRequest, stream: bool) -> Value {
    let mut body = Map::new();
    body.insert("model".into(), model.into());
    body.insert(
        "messages".into(),
        request.messages.iter().map(message).collect(),
    );
    sampling(
        &mut body,
        &request.sampling,
        request.max_tokens,
        &request.stop,
    );
    if !request.tools.is_empty() {
        let tools = request
            .tools
            .iter()
            .map(|tool| {
                json!({
                    "type": "function",
                    "function": {
                        "name": tool.name,
                        "description": tool.description,
                        "parameters": tool.parameters,
                    }
                })
            })
            .collect();
        body.insert("tools".into(), tools);
        let choice = match &request.tool_choice {
            ToolChoice::Auto => json!("auto"),
            ToolChoice::Required => json!("required"),
            ToolChoice::None => json!("none"),
            ToolChoice::Tool(name) => json!({"type": "function", "function": {"name": name}}),
        };
        body.insert("tool_choice".into(), choice);
    }
    if let ResponseFormat::JsonSchema {
        name,
        schema,
        strict,
    } = &request.response_format
    {
        body.insert(
            "response_format".into(),
            json!({
                "type": "json_schema",
                "json_schema": {"name": name, "schema": schema, "strict": strict}
            }),
        );
    }
    stream_fields(&mut body, stream);
    Value::Object(body)
}

/// The body of `POST /completions`.
pub(crate) fn completion_body(model: &str, request: &GenerateRequest, stream: bool) -> Value {
    let mut body = Map::new();
    body.insert("model".into(), model.into());
    body.insert("prompt".into(), request.prompt.clone().into());
    sampling(
        &mut body,
        &request.sampling,
        request.max_tokens,
        &request.stop,
    );
    stream_fields(&mut body, stream);
    Value::Object(body)
}

/// The body of `POST /embeddings`.
pub(crate) fn embeddings_body(model: &str, inputs: &[String]) -> Value {
    json!({"model": model, "input": inputs})
}

fn stream_fields(body: &mut Map<String, Value>, stream: bool) {
    if stream {
        body.insert("stream".into(), true.into());
        body.insert("stream_options".into(), json!({"include_usage": true}));
    }
}

/// Sampling settings. `top_k`, `min_p` and `repetition_penalty` are not OpenAI parameters but vLLM,
/// llama-server, Together and Fireworks take them; they are sent only when set.
fn sampling(body: &mut Map<String, Value>, s: &Sampling, max_tokens: Option<u32>, stop: &[String]) {
    let mut put = |key: &str, value: Option<Value>| {
        if let Some(value) = value {
            body.insert(key.into(), value);
        }
    };
    put("temperature", s.temperature.map(float));
    put("top_p", s.top_p.map(float));
    put("top_k", s.top_k.map(Into::into));
    put("min_p", s.min_p.map(float));
    put("repetition_penalty", s.repetition_penalty.map(float));
    put("presence_penalty", s.presence_penalty.map(float));
    put("frequency_penalty", s.frequency_penalty.map(float));
    put("seed", s.seed.map(Into::into));
    put("max_tokens", max_tokens.map(Into::into));
    put("stop", (!stop.is_empty()).then(|| stop.into()));
}

/// An `f32` as the decimal a person wrote (0.7, not 0.699999988079071, which is what widening to
/// `f64` gives).
pub(crate) fn float(x: f32) -> Value {
    x.to_string()
        .parse::<f64>()
        .map_or(Value::Null, Value::from)
}

fn message(message: &Message) -> Value {
    match message {
        Message::System { content } => json!({"role": "system", "content": content}),
        Message::User { content } => {
            let content = match content.as_slice() {
                [ContentPart::Text { text }] => json!(text),
                parts => parts
                    .iter()
                    .map(|part| match part {
                        ContentPart::Text { text } => json!({"type": "text", "text": text}),
                        ContentPart::Image { image } => {
                            json!({"type": "image_url", "image_url": {"url": image.to_url()}})
                        }
                    })
                    .collect(),
            };
            json!({"role": "user", "content": content})
        }
        Message::Assistant {
            content,
            tool_calls,
        } => {
            let mut out = json!({"role": "assistant", "content": content});
            if !tool_calls.is_empty() {
                if content.is_empty() {
                    out["content"] = Value::Null;
                }
                out["tool_calls"] = tool_calls
                    .iter()
                    .map(|call| {
                        json!({
                            "id": call.id,
                            "type": "function",
                            "function": {"name": call.name, "arguments": arguments_text(&call.arguments)},
                        })
                    })
                    .collect();
            }
            out
        }
        Message::Tool {
            tool_call_id,
            content,
        } => json!({"role": "tool", "tool_call_id": tool_call_id, "content": content}),
    }
}

/// Arguments go over the wire as JSON text; arguments kept as raw text (the model's malformed
/// output) go back as that text.
fn arguments_text(arguments: &Value) -> String {
    match arguments {
        Value::String(raw) => raw.clone(),
        other => other.to_string(),
    }
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct WireUsage {
    #[serde(default)]
    prompt_tokens: u32,
    #[serde(default)]
    completion_tokens: u32,
}

impl From<WireUsage> for Usage {
    fn from(u: WireUsage) -> Self {
        Usage {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
        }
    }
}

#[derive(Debug, Deserialize)]
struct Completion {
    #[serde(default)]
    choices: Vec<CompletionChoice>,
    usage: Option<WireUsage>,
}

#[derive(Debug, Deserialize)]
struct CompletionChoice {
    message: Option<AssistantMessage>,
    finish_reason: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct AssistantMessage {
    content: Option<Value>,
    tool_calls: Option<Vec<WireToolCall>>,
}

#[derive(Debug, Deserialize)]
struct WireToolCall {
    id: Option<String>,
    function: Option<WireFunction>,
}

#[derive(Debug, Default, Deserialize)]
struct WireFunction {
    name: Option<String>,
    /// JSON text per the API; a few servers send the object itself.
    arguments: Option<Value>,
}

/// Text from a `content` that is a string, `null`, or an array of text parts.
fn content_text(content: Option<Value>) -> String {
    match content {
        Some(Value::String(text)) => text,
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect(),
        _ => String::new(),
    }
}

fn parse_arguments(arguments: Option<Value>) -> Value {
    match arguments {
        None => json!({}),
        Some(Value::String(text)) if text.trim().is_empty() => json!({}),
        Some(Value::String(text)) => serde_json::from_str(&text).unwrap_or(Value::String(text)),
        Some(object) => object,
    }
}

pub(crate) fn finish_reason(reason: &str) -> FinishReason {
    match reason {
        "length" => FinishReason::Length,
        "tool_calls" | "function_call" => FinishReason::ToolCalls,
        "content_filter" => FinishReason::ContentFilter,
        _ => FinishReason::Stop,
    }
}

/// A non-streaming chat completion.
pub(crate) fn parse_chat_response(body: &str) -> Result<ChatResponse, String> {
    let completion: Completion = serde_json::from_str(body).map_err(|e| e.to_string())?;
    let choice = completion
        .choices
        .into_iter()
        .next()
        .ok_or("the response has no choices")?;
    let message = choice.message.unwrap_or_default();
    let tool_calls: Vec<ToolCall> = message
        .tool_calls
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(i, call)| {
            let function = call.function.unwrap_or_default();
            ToolCall {
                id: call.id.unwrap_or_else(|| format!("call_{i}")),
                name: function.name.unwrap_or_default(),
                arguments: parse_arguments(function.arguments),
            }
        })
        .collect();
    let finish = match choice.finish_reason.as_deref() {
        Some(reason) => finish_reason(reason),
        None if !tool_calls.is_empty() => FinishReason::ToolCalls,
        None => FinishReason::Stop,
    };
    Ok(ChatResponse {
        text: content_text(message.content),
        tool_calls,
        finish_reason: finish,
        usage: completion.usage.map(Into::into),
        tool_call_error: None,
    })
}

#[derive(Debug, Deserialize)]
struct Chunk {
    choices: Option<Vec<ChunkChoice>>,
    usage: Option<WireUsage>,
    error: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct ChunkChoice {
    delta: Option<ChunkDelta>,
    /// Set by `/completions` streams instead of `delta`.
    text: Option<String>,
    finish_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ChunkDelta {
    content: Option<Value>,
    tool_calls: Option<Vec<ToolCallFragment>>,
}

#[derive(Debug, Deserialize)]
struct ToolCallFragment {
    index: Option<usize>,
    id: Option<String>,
    function: Option<FunctionFragment>,
}

#[derive(Debug, Deserialize)]
struct FunctionFragment {
    name: Option<String>,
    arguments: Option<Value>,
}

/// What one streamed event says.
#[derive(Debug, PartialEq)]
pub(crate) enum ChunkContent {
    Deltas(Vec<ChatDelta>),
    /// The server reported an error inside the stream.
    Error(Value),
}

/// One event of a chat-completions or completions stream.
pub(crate) fn parse_chunk(data: &str) -> Result<ChunkContent, String> {
    let chunk: Chunk = serde_json::from_str(data).map_err(|e| e.to_string())?;
    if chunk.choices.is_none() && chunk.usage.is_none() && chunk.error.is_none() {
        return Err("the event has none of `choices`, `usage` or `error`".into());
    }
    if let Some(error) = chunk.error {
        return Ok(ChunkContent::Error(error));
    }
    let mut deltas = Vec::new();
    for choice in chunk.choices.unwrap_or_default() {
        if let Some(text) = choice.text.filter(|t| !t.is_empty()) {
            deltas.push(ChatDelta::Text { text });
        }
        if let Some(delta) = choice.delta {
            let text = content_text(delta.content);
            if !text.is_empty() {
                deltas.push(ChatDelta::Text { text });
            }
            for (position, fragment) in delta.tool_calls.unwrap_or_default().into_iter().enumerate()
            {
                let function = fragment.function;
                let (name, arguments) = match function {
                    Some(f) => (f.name, f.arguments),
                    None => (None, None),
                };
                let arguments = match arguments {
                    Some(Value::String(text)) => text,
                    Some(Value::Null) | None => String::new(),
                    Some(object) => object.to_string(),
                };
                deltas.push(ChatDelta::ToolCall(ToolCallDelta {
                    index: fragment.index.unwrap_or(position),
                    id: fragment.id,
                    name,
                    arguments,
                }));
            }
        }
        if let Some(reason) = choice.finish_reason {
            deltas.push(ChatDelta::Finish {
                reason: finish_reason(&reason),
            });
        }
    }
    if let Some(usage) = chunk.usage {
        deltas.push(ChatDelta::Usage(usage.into()));
    }
    Ok(ChunkContent::Deltas(deltas))
}

#[derive(Debug, Deserialize)]
struct Embeddings {
    data: Vec<EmbeddingItem>,
}

#[derive(Debug, Deserialize)]
struct EmbeddingItem {
    index: Option<usize>,
    embedding: Vec<f32>,
}

/// `POST /embeddings`, in input order: by each item's `index` when the server gives them (each of
/// 0..n exactly once), else in the order received.
pub(crate) fn parse_embeddings(body: &str, expected: usize) -> Result<Vec<Vec<f32>>, String> {
    let response: Embeddings = serde_json::from_str(body).map_err(|e| e.to_string())?;
    if response.data.len() != expected {
        return Err(format!(
            "asked for {expected} embeddings, got {}",
            response.data.len()
        ));
    }
    let indexed = response
        .data
        .iter()
        .filter(|item| item.index.is_some())
        .count();
    if indexed == 0 {
        return Ok(response
            .data
            .into_iter()
            .map(|item| item.embedding)
            .collect());
    }
    if indexed != expected {
        return Err("some embeddings have an `index` and some do not".into());
    }
    let mut slots: Vec<Option<Vec<f32>>> = vec![None; expected];
    for item in response.data {
        let index = item.index.unwrap_or(usize::MAX);
        match slots.get_mut(index) {
            Some(slot @ None) => *slot = Some(item.embedding),
            Some(Some(_)) => return Err(format!("index {index} appears twice")),
            None => {
                return Err(format!(
                    "index {index} is out of range for {expected} inputs"
                ));
            }
        }
    }
    slots
        .into_iter()
        .enumerate()
        .map(|(i, slot)| slot.ok_or_else(|| format!("no embedding for index {i}")))
        .collect()
}

#[derive(Debug, Deserialize)]
struct Models {
    data: Vec<ModelItem>,
}

#[derive(Debug, Deserialize)]
struct ModelItem {
    id: String,
}

/// `GET /models`.
pub(crate) fn parse_models(body: &str) -> Result<Vec<String>, String> {
    let models: Models = serde_json::from_str(body).map_err(|e| e.to_string())?;
    Ok(models.data.into_iter().map(|m| m.id).collect())
}

/// The human-readable message in an OpenAI-style error body (`{"error": {"message": …}}`,
/// `{"error": "…"}`, `{"message": …}` or `{"detail": …}`), if any.
pub(crate) fn error_message(body: &str) -> Option<String> {
    let value: Value = serde_json::from_str(body).ok()?;
    let error = value.get("error").unwrap_or(&value);
    let text = match error {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o
            .get("message")
            .or_else(|| o.get("Message"))
            .or_else(|| o.get("detail"))
            .and_then(Value::as_str)
            .map(str::to_string),
        _ => None,
    }?;
    Some(text).filter(|t| !t.trim().is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tolerates_missing_and_null_fields_and_ignores_unknown_ones() {
        let response = parse_chat_response(
            r#"{"id":"x","object":"chat.completion","created":1,"system_fingerprint":null,
                "choices":[{"index":0,"message":{"role":"assistant","content":"Paris.","refusal":null,"tool_calls":null},"logprobs":null,"finish_reason":"stop"}],
                "timings":{"predicted_ms":1.0}}"#,
        )
        .expect("parses");
        assert_eq!(response.text, "Paris.");
        assert_eq!(response.usage, None);
        assert_eq!(response.finish_reason, FinishReason::Stop);
    }

    #[test]
    fn tool_calls_parse_with_arguments_as_text_or_object() {
        let response = parse_chat_response(
            r#"{"choices":[{"message":{"content":null,"tool_calls":[
                {"id":"a","type":"function","function":{"name":"weather","arguments":"{\"city\":\"Paris\"}"}},
                {"id":"b","type":"function","function":{"name":"time","arguments":{"tz":"UTC"}}},
                {"type":"function","function":{"name":"bad","arguments":"{oops"}}]},
                "finish_reason":"tool_calls"}],"usage":{"prompt_tokens":5,"completion_tokens":7,"total_tokens":12}}"#,
        )
        .expect("parses");
        assert_eq!(response.text, "");
        assert_eq!(response.tool_calls[0].arguments, json!({"city": "Paris"}));
        assert_eq!(response.tool_calls[1].arguments, json!({"tz": "UTC"}));
        assert_eq!(response.tool_calls[2].arguments, json!("{oops"));
        assert_eq!(response.tool_calls[2].id, "call_2");
        assert_eq!(
            response.usage,
            Some(Usage {
                prompt_tokens: 5,
                completion_tokens: 7
            })
        );
    }

    #[test]
    fn stream_chunks_become_deltas() {
        let text = parse_chunk(
            r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":"Par"},"finish_reason":null}]}"#,
        );
        assert_eq!(
            text,
            Ok(ChunkContent::Deltas(vec![ChatDelta::Text {
                text: "Par".into()
            }]))
        );
        let call = parse_chunk(
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"c","type":"function","function":{"name":"f","arguments":""}}]}}]}"#,
        );
        assert_eq!(
            call,
            Ok(ChunkContent::Deltas(vec![ChatDelta::ToolCall(
                ToolCallDelta {
                    index: 1,
                    id: Some("c".into()),
                    name: Some("f".into()),
                    arguments: String::new(),
                }
            )]))
        );
        let usage =
            parse_chunk(r#"{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2}}"#);
        assert_eq!(
            usage,
            Ok(ChunkContent::Deltas(vec![ChatDelta::Usage(Usage {
                prompt_tokens: 3,
                completion_tokens: 2
            })]))
        );
        let raw =
            parse_chunk(r#"{"choices":[{"text":" Paris","index":0,"finish_reason":"length"}]}"#);
        assert_eq!(
            raw,
            Ok(ChunkContent::Deltas(vec![
                ChatDelta::Text {
                    text: " Paris".into()
                },
                ChatDelta::Finish {
                    reason: FinishReason::Length
                }
            ]))
        );
        assert!(matches!(
            parse_chunk(r#"{"error":{"message":"boom"}}"#),
            Ok(ChunkContent::Error(_))
        ));
        assert!(parse_chunk("{not json").is_err());
        assert!(parse_chunk(r#"{"message":"upstream timeout"}"#).is_err());
    }

    #[test]
    fn embeddings_come_back_in_input_order() {
        let vectors = parse_embeddings(
            r#"{"object":"list","data":[{"index":1,"embedding":[0.5]},{"index":0,"embedding":[0.25]}],"model":"m"}"#,
            2,
        )
        .expect("parses");
        assert_eq!(vectors, vec![vec![0.25], vec![0.5]]);
        assert!(parse_embeddings(r#"{"data":[]}"#, 1).is_err());
        let unindexed =
            parse_embeddings(r#"{"data":[{"embedding":[1.0]},{"embedding":[2.0]}]}"#, 2);
        assert_eq!(unindexed, Ok(vec![vec![1.0], vec![2.0]]));
        for bad in [
            r#"{"data":[{"index":0,"embedding":[1.0]},{"index":0,"embedding":[2.0]}]}"#,
            r#"{"data":[{"index":0,"embedding":[1.0]},{"index":2,"embedding":[2.0]}]}"#,
            r#"{"data":[{"index":0,"embedding":[1.0]},{"embedding":[2.0]}]}"#,
        ] {
            assert!(parse_embeddings(bad, 2).is_err(), "{bad}");
        }
    }

    #[test]
    fn error_messages_are_found_in_the_usual_places() {
        assert_eq!(
            error_message(r#"{"error":{"message":"bad key","type":"auth"}}"#).as_deref(),
            Some("bad key")
        );
        assert_eq!(
            error_message(r#"{"error":"overloaded"}"#).as_deref(),
            Some("overloaded")
        );
        assert_eq!(
            error_message(r#"{"detail":"not found"}"#).as_deref(),
            Some("not found")
        );
        assert_eq!(error_message("<html>502</html>"), None);
    }
}
