//! `/v1/responses`: OpenAI's Responses API, one model turn per request.
//!
//! - Input is a string or a list of items (messages, `function_call`, `function_call_output`);
//!   `previous_response_id` continues a stored conversation, `instructions` lead it.
//! - `file_search` tools search their vector stores (the tenant's own) for the last user text
//!   before the model answers: the passages go to the model numbered, the output holds a
//!   `file_search_call` item with the results, and the answer's `[n]` markers become
//!   `file_citation` annotations on the message.
//! - `function` tools go to the model; its calls come back as `function_call` items for the
//!   client to run and answer with `function_call_output` items and `previous_response_id`.
//! - With `stream`, the answer comes as server-sent events (`response.created`, …,
//!   `response.output_text.delta`, `response.function_call_arguments.delta`, …,
//!   `response.completed`).
//! - `store` (default true) keeps the response for `GET`, `input_items` and continuation.

use axum::extract::{Path, State};
use axum::response::sse::Event;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use corral_core::{
    ChatDelta, ChatRequest, ChatResponse, FinishReason, Message, Sampling, SearchMode, ToolCall,
    ToolSpec,
};
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::Tenant;
use crate::error::{ApiError, Body};
use crate::filters::AttributeFilter;
use crate::routes::{AppState, new_id, now};
use crate::vector_stores::{FoundPassage, StoreSearch, search_store};

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct CreateResponse {
    model: String,
    input: Value,
    #[serde(default)]
    instructions: Option<String>,
    #[serde(default)]
    tools: Vec<Value>,
    #[serde(default)]
    previous_response_id: Option<String>,
    /// A conversation's id (or `{"id": …}`): its items are the history, and this turn's input
    /// and output are appended to it.
    #[serde(default)]
    conversation: Option<Value>,
    #[serde(default)]
    stream: bool,
    #[serde(default)]
    store: Option<bool>,
    #[serde(default)]
    temperature: Option<f32>,
    #[serde(default)]
    top_p: Option<f32>,
    #[serde(default)]
    max_output_tokens: Option<u32>,
    #[serde(default)]
    metadata: Option<Value>,
}

/// The text of an input item's `content`: a string, or parts with `text`.
fn content_text(content: &Value, at: &str) -> Result<String, ApiError> {
    match content {
        Value::String(s) => Ok(s.clone()),
        Value::Array(parts) => Ok(parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("")),
        _ => Err(ApiError::invalid_param(
            at,
            format!("`{at}` must be a string or a list of parts"),
        )),
    }
}

/// Input items as messages. In a stored `history`, items that carry no conversation (file
/// searches, reasoning) are passed over; in new input they are refused by name.
fn input_messages(input: &Value, history: bool) -> Result<Vec<Message>, ApiError> {
    let items = match input {
        Value::String(text) => return Ok(vec![Message::user(text.clone())]),
        Value::Array(items) => items,
        _ => {
            return Err(ApiError::invalid_param(
                "input",
                "`input` must be a string or a list of items",
            ));
        }
    };
    let mut messages: Vec<Message> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let at = format!("input[{i}]");
        let field = |name: &str| {
            item.get(name)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| ApiError::invalid_param(&at, format!("`{at}.{name}` is missing")))
        };
        match item
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("message")
        {
            "message" => {
                let role = field("role")?;
                let text = content_text(
                    item.get("content").unwrap_or(&Value::Null),
                    &format!("{at}.content"),
                )?;
                messages.push(match role.as_str() {
                    "user" => Message::user(text),
                    "system" | "developer" => Message::system(text),
                    "assistant" => Message::assistant(text),
                    other => {
                        return Err(ApiError::invalid_param(&at, format!("`{at}.role` = `{other}`: expected user, system, developer or assistant")));
                    }
                });
            }
            "function_call" => {
                let arguments = field("arguments")?;
                let call = ToolCall {
                    id: field("call_id")?,
                    name: field("name")?,
                    arguments: serde_json::from_str(&arguments).unwrap_or(Value::String(arguments)),
                };
                // Calls of one turn join the assistant message before them.
                match messages.last_mut() {
                    Some(Message::Assistant { tool_calls, .. }) => tool_calls.push(call),
                    _ => messages.push(Message::assistant_tool_calls("", vec![call])),
                }
            }
            "function_call_output" => {
                messages.push(Message::tool_result(field("call_id")?, field("output")?));
            }
            _ if history => {}
            other => {
                return Err(ApiError::invalid_param(
                    &at,
                    format!("`{at}.type` = `{other}` is not supported"),
                ));
            }
        }
    }
    if messages.is_empty() && !history {
        return Err(ApiError::invalid_param("input", "`input` is empty"));
    }
    Ok(messages)
}

struct Tools {
    functions: Vec<ToolSpec>,
    file_search: Option<FileSearch>,
}

/// A `file_search` tool: its stores, result count and attribute filter.
struct FileSearch {
    stores: Vec<String>,
    max: usize,
    filter: Option<AttributeFilter>,
}

fn tools(tools: &[Value]) -> Result<Tools, ApiError> {
    let mut out = Tools {
        functions: Vec::new(),
        file_search: None,
    };
    for (i, tool) in tools.iter().enumerate() {
        let at = format!("tools[{i}]");
        match tool.get("type").and_then(Value::as_str) {
            Some("function") => out.functions.push(ToolSpec {
                name: tool
                    .get("name")
                    .and_then(Value::as_str)
                    .ok_or_else(|| ApiError::invalid_param(&at, format!("`{at}.name` is missing")))?
                    .to_string(),
                description: tool
                    .get("description")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                parameters: tool
                    .get("parameters")
                    .cloned()
                    .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
            }),
            Some("file_search") => {
                let ids: Vec<String> = tool
                    .get("vector_store_ids")
                    .and_then(Value::as_array)
                    .map(|ids| {
                        ids.iter()
                            .filter_map(Value::as_str)
                            .map(str::to_owned)
                            .collect()
                    })
                    .unwrap_or_default();
                if ids.is_empty() {
                    return Err(ApiError::invalid_param(
                        &at,
                        format!("`{at}.vector_store_ids` is empty"),
                    ));
                }
                let max = tool
                    .get("max_num_results")
                    .and_then(Value::as_u64)
                    .unwrap_or(5)
                    .clamp(1, 50) as usize;
                let filter = tool
                    .get("filters")
                    .filter(|f| !f.is_null())
                    .map(|f| AttributeFilter::parse(f, &format!("{at}.filters")))
                    .transpose()
                    .map_err(|e| ApiError::invalid_param(&e.param, e.message))?;
                out.file_search = Some(FileSearch {
                    stores: ids,
                    max,
                    filter,
                });
            }
            other => {
                return Err(ApiError::invalid_param(
                    &format!("{at}.type"),
                    format!(
                        "`{at}.type` = `{}`: function and file_search tools are supported",
                        other.unwrap_or("?")
                    ),
                ));
            }
        }
    }
    Ok(out)
}

/// The passages as the model reads them, numbered for citation.
fn context(passages: &[FoundPassage]) -> String {
    let mut text = String::from(
        "Answer from these passages. Cite each passage you use with its number in brackets, like [1].\n\n",
    );
    for (i, p) in passages.iter().enumerate() {
        text.push_str(&format!(
            "[{}] {}\n{}\n\n",
            i + 1,
            p.filename,
            p.text.trim()
        ));
    }
    text
}

/// `file_citation` annotations for the `[n]` markers in `text` (character offsets).
fn citations(text: &str, passages: &[FoundPassage]) -> Vec<Value> {
    let mut out = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '['
            && let Some(close) = chars[i + 1..].iter().position(|c| *c == ']')
        {
            let inner: String = chars[i + 1..i + 1 + close].iter().collect();
            if let Ok(n) = inner.trim().parse::<usize>()
                && let Some(p) = n.checked_sub(1).and_then(|k| passages.get(k))
            {
                out.push(json!({"type": "file_citation", "index": i, "file_id": p.file_id, "filename": p.filename}));
            }
            i += close + 1;
        }
        i += 1;
    }
    out
}

fn message_item(id: &str, text: &str, passages: &[FoundPassage]) -> Value {
    json!({
        "id": id,
        "type": "message",
        "role": "assistant",
        "status": "completed",
        "content": [{"type": "output_text", "text": text, "annotations": citations(text, passages)}],
    })
}

fn function_item(call: &ToolCall) -> Value {
    json!({
        "id": format!("fc_{}", call.id),
        "type": "function_call",
        "call_id": call.id,
        "name": call.name,
        "arguments": match &call.arguments {
            Value::String(raw) => raw.clone(),
            other => other.to_string(),
        },
        "status": "completed",
    })
}

fn search_item(id: &str, query: &str, passages: &[FoundPassage]) -> Value {
    let results: Vec<Value> = passages
        .iter()
        .map(|p| json!({"file_id": p.file_id, "filename": p.filename, "score": p.score, "text": p.text, "attributes": p.attributes}))
        .collect();
    json!({"id": id, "type": "file_search_call", "status": "completed", "queries": [query], "results": results})
}

/// What one request turns into before the model runs.
struct Prepared {
    id: String,
    created_at: u64,
    model: String,
    conversation: Vec<Message>,
    new_input: Value,
    request: ChatRequest,
    passages: Vec<FoundPassage>,
    search: Option<Value>,
    store: bool,
    conversation_id: Option<String>,
    echo: Value,
}

async fn prepare(
    app: &crate::App,
    tenant: &Tenant,
    request: CreateResponse,
) -> Result<Prepared, ApiError> {
    let tools = tools(&request.tools)?;
    if request.conversation.is_some() && request.previous_response_id.is_some() {
        return Err(ApiError::invalid_param(
            "conversation",
            "give `conversation` or `previous_response_id`, not both",
        ));
    }
    let mut conversation = match &request.previous_response_id {
        Some(previous) => {
            let (_, _, messages) = app
                .records
                .response(tenant.as_str(), previous)
                .map_err(|e| e.param_of("previous_response_id"))?;
            serde_json::from_value(messages)
                .map_err(|e| crate::vector_stores::internal_error("reading a stored response", e))?
        }
        None => Vec::new(),
    };
    let conversation_id = match &request.conversation {
        None => None,
        Some(Value::String(id)) => Some(id.clone()),
        Some(v) => Some(
            v.get("id")
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    ApiError::invalid_param(
                        "conversation",
                        "`conversation` must be an id or {\"id\": …}",
                    )
                })?
                .to_string(),
        ),
    };
    if let Some(id) = &conversation_id {
        app.records
            .conversation(tenant.as_str(), id)
            .map_err(|e| e.param_of("conversation"))?;
        let items = Value::Array(app.records.items(id)?);
        conversation.extend(input_messages(&items, true)?);
    }
    let new = input_messages(&request.input, false)?;
    conversation.extend(new);
    let mut messages = Vec::new();
    if let Some(instructions) = &request.instructions {
        messages.push(Message::system(instructions.clone()));
    }
    messages.extend(conversation.iter().cloned());
    let mut passages = Vec::new();
    let mut search = None;
    if let Some(file_search) = &tools.file_search {
        let max = file_search.max;
        let query = conversation
            .iter()
            .rev()
            .find(|m| matches!(m, Message::User { .. }))
            .map(Message::text)
            .unwrap_or_default();
        let store_search = StoreSearch {
            text: &query,
            top_k: max,
            mode: SearchMode::Hybrid,
            min_score: None,
            filter: file_search.filter.as_ref(),
        };
        for id in &file_search.stores {
            let store = app
                .records
                .store(tenant.as_str(), id)
                .map_err(|e| e.param_of("tools"))?;
            passages.extend(search_store(app, tenant, &store, &store_search).await?);
        }
        passages.sort_by(|a, b| b.score.total_cmp(&a.score));
        passages.truncate(max);
        search = Some(search_item(&new_id("fs"), &query, &passages));
        if !passages.is_empty() {
            // The passages go just before the last user message.
            let at = messages
                .iter()
                .rposition(|m| matches!(m, Message::User { .. }))
                .unwrap_or(messages.len());
            messages.insert(at, Message::system(context(&passages)));
        }
    }
    let echo = json!({
        "instructions": request.instructions,
        "tools": request.tools,
        "previous_response_id": request.previous_response_id,
        "conversation": conversation_id.as_ref().map(|id| json!({"id": id})),
        "temperature": request.temperature,
        "top_p": request.top_p,
        "max_output_tokens": request.max_output_tokens,
        "metadata": request.metadata.unwrap_or_else(|| json!({})),
    });
    Ok(Prepared {
        id: new_id("resp"),
        created_at: now(),
        model: request.model,
        conversation,
        new_input: request.input,
        request: ChatRequest {
            messages,
            sampling: Sampling {
                temperature: request.temperature,
                top_p: request.top_p,
                ..Sampling::default()
            },
            max_tokens: request.max_output_tokens,
            tools: tools.functions,
            ..ChatRequest::default()
        },
        passages,
        search,
        store: request.store.unwrap_or(true),
        conversation_id,
        echo,
    })
}

impl Prepared {
    /// The response object for `answer`, and the conversation after it.
    fn finish(&self, answer: &ChatResponse, message_id: &str) -> (Value, Vec<Message>) {
        let mut output: Vec<Value> = self.search.iter().cloned().collect();
        if !answer.text.is_empty() || answer.tool_calls.is_empty() {
            output.push(message_item(message_id, &answer.text, &self.passages));
        }
        output.extend(answer.tool_calls.iter().map(function_item));
        let usage = answer.usage.unwrap_or_default();
        let mut body = json!({
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": if answer.finish_reason == FinishReason::Length { "incomplete" } else { "completed" },
            "incomplete_details": if answer.finish_reason == FinishReason::Length { json!({"reason": "max_output_tokens"}) } else { Value::Null },
            "error": null,
            "model": self.model,
            "output": output,
            "parallel_tool_calls": true,
            "tool_choice": "auto",
            "store": self.store,
            "usage": {
                "input_tokens": usage.prompt_tokens,
                "output_tokens": usage.completion_tokens,
                "total_tokens": usage.total_tokens(),
            },
        });
        if let (Some(body), Some(echo)) = (body.as_object_mut(), self.echo.as_object()) {
            body.extend(echo.clone());
        }
        let mut conversation = self.conversation.clone();
        conversation.push(answer.to_message());
        (body, conversation)
    }

    /// Keeps the response (unless `store` is false) and appends the turn to its conversation.
    fn save(
        &self,
        app: &crate::App,
        tenant: &Tenant,
        body: &Value,
        conversation: &[Message],
    ) -> Result<(), ApiError> {
        // The input as items, each with an id and a type, as conversations and `input_items`
        // give them back.
        let input = match &self.new_input {
            Value::String(text) => json!([{"role": "user", "content": text}]),
            other => other.clone(),
        };
        let items = crate::conversations::normalise_items(&input, "input")?;
        if let Some(id) = &self.conversation_id {
            let mut turn = items.clone();
            turn.extend(body["output"].as_array().cloned().unwrap_or_default());
            app.records.append_items(id, &turn)?;
        }
        if !self.store {
            return Ok(());
        }
        let messages = serde_json::to_value(conversation)
            .map_err(|e| crate::vector_stores::internal_error("storing a response", e))?;
        app.records.put_response(
            tenant.as_str(),
            &self.id,
            self.created_at,
            body,
            &Value::Array(items),
            &messages,
        )
    }
}

pub async fn create(
    State(app): State<AppState>,
    Extension(tenant): Extension<Tenant>,
    Body(request): Body<CreateResponse>,
) -> Result<Response, ApiError> {
    let model = crate::routes::chat_model(&app.stack, &request.model).await?;
    let stream = request.stream;
    let prepared = prepare(&app, &tenant, request).await?;
    let meter = crate::routes::Meter::new(&app, &prepared.model);
    let message_id = new_id("msg");
    if !stream {
        let answer = model
            .complete(&prepared.request)
            .await
            .map_err(|e| meter.fail(&e))?;
        meter.usage(answer.usage);
        let (body, conversation) = prepared.finish(&answer, &message_id);
        prepared.save(&app, &tenant, &body, &conversation)?;
        return Ok(Json(body).into_response());
    }
    let mut deltas = model
        .stream(&prepared.request)
        .await
        .map_err(|e| meter.fail(&e))?;
    let events = async_stream::stream! {
        let mut sequence = 0u64;
        let mut event = |kind: &str, mut data: Value| {
            data["type"] = json!(kind);
            data["sequence_number"] = json!(sequence);
            sequence += 1;
            Event::default().event(kind).data(data.to_string())
        };
        let pending = json!({"id": prepared.id, "object": "response", "created_at": prepared.created_at, "status": "in_progress", "model": prepared.model, "output": []});
        yield event("response.created", json!({"response": pending}));
        yield event("response.in_progress", json!({"response": pending}));
        let mut index = 0usize;
        if let Some(search) = &prepared.search {
            yield event("response.output_item.added", json!({"output_index": index, "item": search}));
            yield event("response.output_item.done", json!({"output_index": index, "item": search}));
            index += 1;
        }
        let message_index = index;
        let mut collector = corral_core::StreamCollector::default();
        let mut text_started = false;
        let mut call_items: Vec<(usize, String)> = Vec::new();
        while let Some(delta) = deltas.next().await {
            let delta = match delta {
                Ok(delta) => delta,
                Err(e) => {
                    let error = meter.fail(&e);
                    yield event("error", json!({"code": error.code, "message": error.message, "param": null}));
                    return;
                }
            };
            match &delta {
                ChatDelta::Text { text } if !text.is_empty() => {
                    if !text_started {
                        text_started = true;
                        let item = json!({"id": message_id, "type": "message", "role": "assistant", "status": "in_progress", "content": []});
                        yield event("response.output_item.added", json!({"output_index": message_index, "item": item}));
                        yield event("response.content_part.added", json!({"item_id": message_id, "output_index": message_index, "content_index": 0, "part": {"type": "output_text", "text": "", "annotations": []}}));
                    }
                    yield event("response.output_text.delta", json!({"item_id": message_id, "output_index": message_index, "content_index": 0, "delta": text}));
                }
                ChatDelta::ToolCall(call) => {
                    let position = match call_items.iter().position(|(i, _)| *i == call.index) {
                        Some(p) => p,
                        None => {
                            let call_id = call.id.clone().unwrap_or_else(|| format!("call_{}", call.index));
                            call_items.push((call.index, call_id.clone()));
                            let output_index = message_index + usize::from(text_started) + call_items.len() - 1;
                            let item = json!({"id": format!("fc_{call_id}"), "type": "function_call", "call_id": call_id, "name": call.name, "arguments": "", "status": "in_progress"});
                            yield event("response.output_item.added", json!({"output_index": output_index, "item": item}));
                            call_items.len() - 1
                        }
                    };
                    if !call.arguments.is_empty() {
                        let output_index = message_index + usize::from(text_started) + position;
                        let item_id = format!("fc_{}", call_items[position].1);
                        yield event("response.function_call_arguments.delta", json!({"item_id": item_id, "output_index": output_index, "delta": call.arguments}));
                    }
                }
                _ => {}
            }
            collector.push(delta);
        }
        let answer = collector.finish();
        meter.usage(answer.usage);
        let (body, conversation) = prepared.finish(&answer, &message_id);
        let output = body["output"].as_array().cloned().unwrap_or_default();
        for (i, item) in output.iter().enumerate().skip(message_index) {
            match item["type"].as_str() {
                Some("message") if text_started => {
                    let part = &item["content"][0];
                    yield event("response.output_text.done", json!({"item_id": message_id, "output_index": i, "content_index": 0, "text": part["text"]}));
                    yield event("response.content_part.done", json!({"item_id": message_id, "output_index": i, "content_index": 0, "part": part}));
                }
                Some("function_call") => {
                    yield event("response.function_call_arguments.done", json!({"item_id": item["id"], "output_index": i, "arguments": item["arguments"]}));
                }
                _ => {}
            }
            yield event("response.output_item.done", json!({"output_index": i, "item": item}));
        }
        if let Err(e) = prepared.save(&app, &tenant, &body, &conversation) {
            yield event("error", json!({"code": e.code, "message": e.message, "param": null}));
            return;
        }
        yield event("response.completed", json!({"response": body}));
    };
    Ok(crate::routes::sse(events))
}

pub async fn get(
    State(app): State<AppState>,
    Extension(tenant): Extension<Tenant>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(app.records.response(tenant.as_str(), &id)?.0))
}

pub async fn delete(
    State(app): State<AppState>,
    Extension(tenant): Extension<Tenant>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    if !app.records.delete_response(tenant.as_str(), &id)? {
        return Err(ApiError::not_found("response", &id));
    }
    Ok(Json(
        json!({"id": id, "object": "response", "deleted": true}),
    ))
}

pub async fn input_items(
    State(app): State<AppState>,
    Extension(tenant): Extension<Tenant>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let (_, items, _) = app.records.response(tenant.as_str(), &id)?;
    let items = items.as_array().cloned().unwrap_or_default();
    Ok(Json(crate::routes::page(items)))
}
