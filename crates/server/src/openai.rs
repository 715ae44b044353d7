//! OpenAI's wire format for chat, completions and embeddings, and its translation to and from
//! `corral-core`'s types. Unknown fields are ignored (clients send many); fields whose meaning we
//! cannot honour (`n > 1`, `logprobs`) are refused with a message naming them.

use corral_core::{
    ChatRequest, ChatResponse, ContentPart, FinishReason, GenerateRequest, Message, ResponseFormat,
    Sampling, ToolCall, ToolChoice, ToolSpec, Usage,
};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::ApiError;

/// A string or a list of strings (`stop`, `input`, `prompt`).
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            Self::One(s) => vec![s],
            Self::Many(v) => v,
        }
    }
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct ChatCompletionRequest {
    pub model: String,
    pub messages: Vec<WireMessage>,
    #[serde(default)]
    pub stream: bool,
    #[serde(default)]
    pub stream_options: Option<StreamOptions>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub top_k: Option<u32>,
    pub min_p: Option<f32>,
    pub presence_penalty: Option<f32>,
    pub frequency_penalty: Option<f32>,
    pub repetition_penalty: Option<f32>,
    pub seed: Option<u64>,
    pub max_tokens: Option<u32>,
    pub max_completion_tokens: Option<u32>,
    pub stop: Option<OneOrMany>,
    pub n: Option<u32>,
    #[serde(default)]
    pub logprobs: Option<bool>,
    #[serde(default)]
    pub tools: Vec<WireTool>,
    pub tool_choice: Option<Value>,
    pub response_format: Option<Value>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: bool,
}

/// Whether a stream ends with a usage chunk.
pub fn include_usage(options: Option<&StreamOptions>) -> bool {
    options.is_some_and(|o| o.include_usage)
}

/// A message as OpenAI's clients send it.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(tag = "role", rename_all = "lowercase")]
pub enum WireMessage {
    System {
        content: WireContent,
    },
    Developer {
        content: WireContent,
    },
    User {
        content: WireContent,
    },
    Assistant {
        #[serde(default)]
        content: Option<WireContent>,
        #[serde(default)]
        tool_calls: Vec<WireToolCall>,
    },
    Tool {
        tool_call_id: String,
        content: WireContent,
    },
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum WireContent {
    Text(String),
    Parts(Vec<WirePart>),
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum WirePart {
    Text { text: String },
    ImageUrl { image_url: WireImageUrl },
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct WireImageUrl {
    pub url: String,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct WireToolCall {
    pub id: String,
    pub function: WireFunctionCall,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct WireFunctionCall {
    pub name: String,
    /// JSON text.
    pub arguments: String,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct WireTool {
    #[serde(rename = "type")]
    pub kind: String,
    pub function: WireFunction,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct WireFunction {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub parameters: Option<Value>,
}

impl WireContent {
    /// The text of the content; `at` names the field if it holds an image where only text may.
    fn text(self, at: &str) -> Result<String, ApiError> {
        match self {
            Self::Text(text) => Ok(text),
            Self::Parts(parts) => parts
                .into_iter()
                .map(|part| match part {
                    WirePart::Text { text } => Ok(text),
                    WirePart::ImageUrl { .. } => Err(ApiError::invalid_param(
                        at,
                        format!("`{at}`: only user messages may hold images"),
                    )),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(|texts| texts.join("")),
        }
    }

    fn parts(self) -> Vec<ContentPart> {
        match self {
            Self::Text(text) => vec![ContentPart::text(text)],
            Self::Parts(parts) => parts
                .into_iter()
                .map(|part| match part {
                    WirePart::Text { text } => ContentPart::text(text),
                    WirePart::ImageUrl { image_url } => ContentPart::image_url(image_url.url),
                })
                .collect(),
        }
    }
}

/// Messages in our vocabulary; `developer` is OpenAI's newer name for `system`.
pub fn messages(wire: Vec<WireMessage>) -> Result<Vec<Message>, ApiError> {
    if wire.is_empty() {
        return Err(ApiError::invalid_param(
            "messages",
            "`messages` must hold at least one message",
        ));
    }
    wire.into_iter()
        .enumerate()
        .map(|(i, message)| {
            let at = format!("messages[{i}].content");
            Ok(match message {
                WireMessage::System { content } | WireMessage::Developer { content } => {
                    Message::system(content.text(&at)?)
                }
                WireMessage::User { content } => Message::user_parts(content.parts()),
                WireMessage::Assistant {
                    content,
                    tool_calls,
                } => {
                    let text = content
                        .map(|c| c.text(&at))
                        .transpose()?
                        .unwrap_or_default();
                    let calls = tool_calls
                        .into_iter()
                        .map(|call| ToolCall {
                            id: call.id,
                            name: call.function.name,
                            // Arguments that are not JSON stay as the text the model wrote.
                            arguments: serde_json::from_str(&call.function.arguments)
                                .unwrap_or(Value::String(call.function.arguments)),
                        })
                        .collect();
                    Message::assistant_tool_calls(text, calls)
                }
                WireMessage::Tool {
                    tool_call_id,
                    content,
                } => Message::tool_result(tool_call_id, content.text(&at)?),
            })
        })
        .collect()
}

fn sampling(
    temperature: Option<f32>,
    top_p: Option<f32>,
    seed: Option<u64>,
    request: Option<&ChatCompletionRequest>,
) -> Sampling {
    Sampling {
        temperature,
        top_p,
        top_k: request.and_then(|r| r.top_k),
        min_p: request.and_then(|r| r.min_p),
        repetition_penalty: request.and_then(|r| r.repetition_penalty),
        presence_penalty: request.and_then(|r| r.presence_penalty),
        frequency_penalty: request.and_then(|r| r.frequency_penalty),
        seed,
    }
}

fn single_choice(n: Option<u32>) -> Result<(), ApiError> {
    match n {
        None | Some(1) => Ok(()),
        Some(n) => Err(ApiError::invalid_param(
            "n",
            format!("`n` = {n}: only one choice per request is supported"),
        )),
    }
}

impl ChatCompletionRequest {
    /// Our request, and whether to stream with a usage chunk.
    pub fn into_core(self) -> Result<ChatRequest, ApiError> {
        single_choice(self.n)?;
        if self.logprobs == Some(true) {
            return Err(ApiError::invalid_param(
                "logprobs",
                "`logprobs` is not supported",
            ));
        }
        let tools = self
            .tools
            .iter()
            .enumerate()
            .map(|(i, tool)| {
                if tool.kind != "function" {
                    return Err(ApiError::invalid_param(
                        &format!("tools[{i}].type"),
                        format!(
                            "`tools[{i}].type` = `{}`: only `function` tools are supported here",
                            tool.kind
                        ),
                    ));
                }
                Ok(ToolSpec {
                    name: tool.function.name.clone(),
                    description: tool.function.description.clone().unwrap_or_default(),
                    parameters: tool
                        .function
                        .parameters
                        .clone()
                        .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let tool_choice = match &self.tool_choice {
            None => ToolChoice::Auto,
            Some(Value::String(s)) => match s.as_str() {
                "auto" => ToolChoice::Auto,
                "none" => ToolChoice::None,
                "required" => ToolChoice::Required,
                other => {
                    return Err(ApiError::invalid_param(
                        "tool_choice",
                        format!(
                            "`tool_choice` = `{other}`: expected auto, none, required or a function"
                        ),
                    ));
                }
            },
            Some(v) => match v.pointer("/function/name").and_then(Value::as_str) {
                Some(name) => ToolChoice::Tool(name.to_string()),
                None => {
                    return Err(ApiError::invalid_param(
                        "tool_choice",
                        "`tool_choice`: expected {\"type\": \"function\", \"function\": {\"name\": …}}",
                    ));
                }
            },
        };
        let response_format = match &self.response_format {
            None => ResponseFormat::Text,
            Some(v) => match v.get("type").and_then(Value::as_str) {
                Some("text") => ResponseFormat::Text,
                Some("json_object") => ResponseFormat::JsonSchema {
                    name: "json_object".into(),
                    schema: json!({"type": "object"}),
                    strict: false,
                },
                Some("json_schema") => {
                    let spec = v.get("json_schema").ok_or_else(|| {
                        ApiError::invalid_param(
                            "response_format.json_schema",
                            "`response_format.json_schema` is missing",
                        )
                    })?;
                    ResponseFormat::JsonSchema {
                        name: spec
                            .get("name")
                            .and_then(Value::as_str)
                            .unwrap_or("response")
                            .to_string(),
                        schema: spec.get("schema").cloned().unwrap_or(json!({})),
                        strict: spec.get("strict").and_then(Value::as_bool).unwrap_or(false),
                    }
                }
                _ => {
                    return Err(ApiError::invalid_param(
                        "response_format.type",
                        "`response_format.type`: expected text, json_object or json_schema",
                    ));
                }
            },
        };
        let sampling = sampling(self.temperature, self.top_p, self.seed, Some(&self));
        let stop = self.stop.map(OneOrMany::into_vec).unwrap_or_default();
        let max_tokens = self.max_completion_tokens.or(self.max_tokens);
        Ok(ChatRequest {
            messages: messages(self.messages)?,
            sampling,
            max_tokens,
            stop,
            tools,
            tool_choice,
            response_format,
        })
    }
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct CompletionRequest {
    pub model: String,
    pub prompt: OneOrMany,
    #[serde(default)]
    pub stream: bool,
    #[serde(default)]
    pub stream_options: Option<StreamOptions>,
    pub max_tokens: Option<u32>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub seed: Option<u64>,
    pub stop: Option<OneOrMany>,
    pub n: Option<u32>,
    #[serde(default)]
    pub echo: bool,
    pub logprobs: Option<Value>,
}

impl CompletionRequest {
    pub fn into_core(self) -> Result<GenerateRequest, ApiError> {
        single_choice(self.n)?;
        if self.echo {
            return Err(ApiError::invalid_param("echo", "`echo` is not supported"));
        }
        if self.logprobs.as_ref().is_some_and(|v| !v.is_null()) {
            return Err(ApiError::invalid_param(
                "logprobs",
                "`logprobs` is not supported",
            ));
        }
        let mut prompts = self.prompt.into_vec();
        if prompts.len() != 1 {
            return Err(ApiError::invalid_param(
                "prompt",
                format!(
                    "`prompt` holds {} prompts; send one per request",
                    prompts.len()
                ),
            ));
        }
        Ok(GenerateRequest {
            prompt: prompts.remove(0),
            sampling: sampling(self.temperature, self.top_p, self.seed, None),
            max_tokens: self.max_tokens,
            stop: self.stop.map(OneOrMany::into_vec).unwrap_or_default(),
        })
    }
}

pub fn finish_reason(reason: FinishReason) -> &'static str {
    match reason {
        FinishReason::Stop => "stop",
        FinishReason::Length => "length",
        FinishReason::ToolCalls => "tool_calls",
        FinishReason::ContentFilter => "content_filter",
    }
}

pub fn usage(usage: Option<Usage>) -> Value {
    let usage = usage.unwrap_or_default();
    json!({
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens(),
    })
}

pub fn tool_calls(calls: &[ToolCall]) -> Value {
    Value::Array(
        calls
            .iter()
            .map(|call| {
                json!({
                    "id": call.id,
                    "type": "function",
                    "function": {
                        "name": call.name,
                        "arguments": match &call.arguments {
                            Value::String(raw) => raw.clone(),
                            other => other.to_string(),
                        },
                    }
                })
            })
            .collect(),
    )
}

/// A whole chat completion.
pub fn chat_completion(id: &str, created: u64, model: &str, response: &ChatResponse) -> Value {
    let mut message = json!({
        "role": "assistant",
        "content": if response.text.is_empty() && !response.tool_calls.is_empty() {
            Value::Null
        } else {
            Value::String(response.text.clone())
        },
    });
    if !response.tool_calls.is_empty() {
        message["tool_calls"] = tool_calls(&response.tool_calls);
    }
    json!({
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{
            "index": 0,
            "message": message,
            "finish_reason": finish_reason(response.finish_reason),
            "logprobs": null,
        }],
        "usage": usage(response.usage),
    })
}
