//! The Converse API's JSON, and the events of ConverseStream, mapped to and from `corral-core`
//! types. Shapes follow the Amazon Bedrock API reference (Converse, ConverseStream, ContentBlock,
//! ToolConfiguration, ConverseStreamOutput).

use corral_core::{
    ChatDelta, ChatRequest, ChatResponse, ContentPart, FinishReason, ImageSource, Message,
    ResponseFormat, ToolCall, ToolCallDelta, ToolChoice, Usage,
};
use serde_json::{Map, Value, json};

use crate::remote::wire::float;

/// The body of `POST /model/{modelId}/converse` (and `converse-stream`). Options the Converse API
/// has no field for are refused rather than dropped.
pub(crate) fn converse_body(request: &ChatRequest) -> Result<Value, String> {
    let sampling = &request.sampling;
    let unsupported: Vec<&str> = [
        ("top_k", sampling.top_k.is_some()),
        ("min_p", sampling.min_p.is_some()),
        ("repetition_penalty", sampling.repetition_penalty.is_some()),
        ("presence_penalty", sampling.presence_penalty.is_some()),
        ("frequency_penalty", sampling.frequency_penalty.is_some()),
        ("seed", sampling.seed.is_some()),
    ]
    .into_iter()
    .filter_map(|(name, set)| set.then_some(name))
    .collect();
    if !unsupported.is_empty() {
        return Err(format!(
            "Bedrock's Converse API has no {}; leave them unset for this provider",
            unsupported.join(", ")
        ));
    }
    if let ResponseFormat::JsonSchema { .. } = request.response_format {
        return Err("Bedrock's Converse API has no JSON-schema response format".into());
    }

    let mut system = Vec::new();
    let mut messages: Vec<(&str, Vec<Value>)> = Vec::new();
    for (position, message) in request.messages.iter().enumerate() {
        if message_is_empty(message) {
            return Err(format!(
                "message {position} is empty; Bedrock refuses empty messages"
            ));
        }
        let (role, blocks) = match message {
            Message::System { content } => {
                system.push(json!({"text": content}));
                continue;
            }
            Message::User { content } => (
                "user",
                content
                    .iter()
                    .map(content_block)
                    .collect::<Result<_, _>>()?,
            ),
            Message::Assistant {
                content,
                tool_calls,
            } => {
                let mut blocks = Vec::new();
                if !content.is_empty() {
                    blocks.push(json!({"text": content}));
                }
                for call in tool_calls {
                    let input = match &call.arguments {
                        Value::Object(_) => call.arguments.clone(),
                        // Converse wants the input as a JSON object; a malformed call from the model
                        // goes back as the text it was.
                        other => json!({"raw": other}),
                    };
                    blocks.push(json!({"toolUse": {"toolUseId": call.id, "name": call.name, "input": input}}));
                }
                ("assistant", blocks)
            }
            // Tool results are user content in Converse.
            Message::Tool {
                tool_call_id,
                content,
            } => (
                "user",
                vec![
                    json!({"toolResult": {"toolUseId": tool_call_id, "content": [{"text": content}]}}),
                ],
            ),
        };
        // Converse wants roles to alternate: consecutive messages of one role become one message.
        match messages.last_mut() {
            Some((last, existing)) if *last == role => existing.extend(blocks),
            _ => messages.push((role, blocks)),
        }
    }

    let mut body = Map::new();
    body.insert(
        "messages".into(),
        messages
            .into_iter()
            .map(|(role, content)| json!({"role": role, "content": content}))
            .collect(),
    );
    if !system.is_empty() {
        body.insert("system".into(), system.into());
    }
    let mut inference = Map::new();
    if let Some(max) = request.max_tokens {
        inference.insert("maxTokens".into(), max.into());
    }
    if let Some(t) = sampling.temperature {
        inference.insert("temperature".into(), float(t));
    }
    if let Some(p) = sampling.top_p {
        inference.insert("topP".into(), float(p));
    }
    if !request.stop.is_empty() {
        inference.insert("stopSequences".into(), request.stop.clone().into());
    }
    if !inference.is_empty() {
        body.insert("inferenceConfig".into(), inference.into());
    }
    let tool_history = request.messages.iter().any(|m| match m {
        Message::Tool { .. } => true,
        Message::Assistant { tool_calls, .. } => !tool_calls.is_empty(),
        _ => false,
    });
    let choice = match &request.tool_choice {
        _ if request.tools.is_empty() => None,
        ToolChoice::Auto => Some(None),
        ToolChoice::Required => Some(Some(json!({"any": {}}))),
        ToolChoice::Tool(name) => Some(Some(json!({"tool": {"name": name}}))),
        // Converse has no "none": leaving the tools out is the way, but Bedrock refuses that once
        // the conversation holds tool calls.
        ToolChoice::None if tool_history => {
            return Err(
                "Bedrock's Converse API cannot forbid tool calls in a conversation that \
                        already has them (it has no tool_choice \"none\")"
                    .into(),
            );
        }
        ToolChoice::None => None,
    };
    if let Some(choice) = choice {
        let tools: Vec<Value> = request
            .tools
            .iter()
            .map(|t| {
                let mut spec = json!({"name": t.name, "inputSchema": {"json": t.parameters}});
                // Bedrock wants a description of at least one character, or none.
                if !t.description.is_empty() {
                    spec["description"] = t.description.clone().into();
                }
                json!({ "toolSpec": spec })
            })
            .collect();
        let mut config = json!({ "tools": tools });
        if let Some(choice) = choice {
            config["toolChoice"] = choice;
        }
        body.insert("toolConfig".into(), config);
    }
    Ok(Value::Object(body))
}

fn message_is_empty(message: &Message) -> bool {
    match message {
        Message::System { content } | Message::Tool { content, .. } => content.trim().is_empty(),
        Message::User { content } => content
            .iter()
            .all(|part| matches!(part, ContentPart::Text { text } if text.trim().is_empty())),
        Message::Assistant {
            content,
            tool_calls,
        } => content.trim().is_empty() && tool_calls.is_empty(),
    }
}

fn content_block(part: &ContentPart) -> Result<Value, String> {
    match part {
        ContentPart::Text { text } => Ok(json!({"text": text})),
        ContentPart::Image {
            image: ImageSource::Base64 { media_type, data },
        } => {
            let format = match media_type.as_str() {
                "image/png" => "png",
                "image/jpeg" | "image/jpg" => "jpeg",
                "image/gif" => "gif",
                "image/webp" => "webp",
                other => {
                    return Err(format!(
                        "Bedrock takes PNG, JPEG, GIF and WebP images, not {other}"
                    ));
                }
            };
            Ok(json!({"image": {"format": format, "source": {"bytes": data}}}))
        }
        ContentPart::Image {
            image: ImageSource::Url { url },
        } => Err(format!(
            "Bedrock takes images inline, not by URL ({url}): send a data: URL with the image bytes"
        )),
    }
}

/// Why the model stopped; an error when it stopped because its own output was malformed.
pub(crate) fn finish_reason(stop: &str) -> Result<FinishReason, String> {
    match stop {
        "end_turn" | "stop_sequence" => Ok(FinishReason::Stop),
        "max_tokens" | "model_context_window_exceeded" => Ok(FinishReason::Length),
        "tool_use" => Ok(FinishReason::ToolCalls),
        "guardrail_intervened" | "content_filtered" => Ok(FinishReason::ContentFilter),
        "malformed_model_output" | "malformed_tool_use" => Err(format!(
            "the model's output was malformed (stopReason {stop})"
        )),
        other => {
            tracing::warn!(
                stop_reason = other,
                "unknown Bedrock stopReason; taken as a normal stop"
            );
            Ok(FinishReason::Stop)
        }
    }
}

fn usage(value: &Value) -> Option<Usage> {
    let count = |key: &str| {
        value
            .get(key)
            .and_then(Value::as_u64)
            .and_then(|n| u32::try_from(n).ok())
    };
    Some(Usage {
        prompt_tokens: count("inputTokens")?,
        completion_tokens: count("outputTokens")?,
    })
}

/// A string field a tool-use block must have: the next turn's tool result refers to it.
fn required(block: &Value, name: &str) -> Result<String, String> {
    block
        .get(name)
        .and_then(Value::as_str)
        .filter(|v| !v.is_empty())
        .map(str::to_string)
        .ok_or_else(|| format!("a toolUse block without `{name}`"))
}

/// A Converse response.
pub(crate) fn parse_response(body: &str) -> Result<ChatResponse, String> {
    let value: Value = serde_json::from_str(body).map_err(|e| e.to_string())?;
    let blocks = value
        .pointer("/output/message/content")
        .and_then(Value::as_array)
        .ok_or("the response has no output.message.content")?;
    let mut text = String::new();
    let mut tool_calls = Vec::new();
    for block in blocks {
        if let Some(t) = block.get("text").and_then(Value::as_str) {
            text.push_str(t);
        } else if let Some(tool) = block.get("toolUse") {
            tool_calls.push(ToolCall {
                id: required(tool, "toolUseId")?,
                name: required(tool, "name")?,
                arguments: tool.get("input").cloned().unwrap_or_else(|| json!({})),
            });
        }
    }
    let stop = value
        .get("stopReason")
        .and_then(Value::as_str)
        .ok_or("the response has no stopReason")?;
    let finish_reason = finish_reason(stop)?;
    Ok(ChatResponse {
        text,
        tool_calls,
        finish_reason,
        usage: value.get("usage").and_then(usage),
        tool_call_error: None,
    })
}

/// The deltas one ConverseStream event (by its `:event-type`) carries.
pub(crate) fn stream_event(event_type: &str, payload: &[u8]) -> Result<Vec<ChatDelta>, String> {
    let value: Value = serde_json::from_slice(payload).map_err(|e| e.to_string())?;
    let index = value
        .get("contentBlockIndex")
        .and_then(Value::as_u64)
        .unwrap_or(0) as usize;
    let mut deltas = Vec::new();
    match event_type {
        "contentBlockStart" => {
            if let Some(tool) = value.pointer("/start/toolUse") {
                deltas.push(ChatDelta::ToolCall(ToolCallDelta {
                    index,
                    id: Some(required(tool, "toolUseId")?),
                    name: Some(required(tool, "name")?),
                    arguments: String::new(),
                }));
            }
        }
        "contentBlockDelta" => {
            let delta = value
                .get("delta")
                .ok_or("contentBlockDelta without delta")?;
            if let Some(text) = delta.get("text").and_then(Value::as_str) {
                deltas.push(ChatDelta::Text {
                    text: text.to_string(),
                });
            } else if let Some(input) = delta.pointer("/toolUse/input").and_then(Value::as_str) {
                deltas.push(ChatDelta::ToolCall(ToolCallDelta {
                    index,
                    id: None,
                    name: None,
                    arguments: input.to_string(),
                }));
            }
        }
        "messageStop" => {
            let stop = value
                .get("stopReason")
                .and_then(Value::as_str)
                .ok_or("messageStop without stopReason")?;
            deltas.push(ChatDelta::Finish {
                reason: finish_reason(stop)?,
            });
        }
        "metadata" => {
            if let Some(usage) = value.get("usage").and_then(usage) {
                deltas.push(ChatDelta::Usage(usage));
            }
        }
        // messageStart, contentBlockStop, and events added to the API later carry nothing we use.
        _ => {}
    }
    Ok(deltas)
}
