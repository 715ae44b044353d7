//! `/v1/responses`: OpenAI's Responses API.
//!
//! - Input is a string or a list of items (messages, `function_call`, `function_call_output`);
//!   `previous_response_id` continues a stored conversation, `instructions` lead it.
//! - `file_search` tools search their vector stores (the tenant's own), and `web_search` tools
//!   the configured web search, for the last user text before the model answers: the passages go
//!   to the model numbered, the output holds a `file_search_call` / `web_search_call` item, and
//!   the answer's `[n]` markers become `file_citation` / `url_citation` annotations.
//! - `mcp` tools: the server lists an MCP server's tools, offers them to the model and runs its
//!   calls (`mcp_call` items), turn after turn, until the model answers (at most [`MAX_ROUNDS`]).
//! - `function` tools go to the model; its calls come back as `function_call` items for the
//!   client to run and answer with `function_call_output` items and `previous_response_id`.
//! - With `stream`, the answer comes as server-sent events (`response.created`, …,
//!   `response.output_text.delta`, `response.function_call_arguments.delta`,
//!   `response.mcp_call.completed`, …, `response.completed`); without, the same turn is run and
//!   only its end is sent.
//! - `store` (default true) keeps the response for `GET`, `input_items` and continuation.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::sse::Event;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use corral_core::{
    ChatDelta, ChatModel, ChatRequest, ChatResponse, FinishReason, Message, Sampling, SearchMode,
    Tool, ToolCall, ToolSpec, Usage,
};
use corral_stack::ServerSettings;
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
    web_search: bool,
    mcp: Vec<McpServer>,
}

/// A `file_search` tool: its stores, result count and attribute filter.
struct FileSearch {
    stores: Vec<String>,
    max: usize,
    filter: Option<AttributeFilter>,
}

/// An `mcp` tool: a streamable-HTTP MCP server whose tools the server runs for the model.
struct McpServer {
    label: String,
    url: String,
    headers: BTreeMap<String, String>,
    /// `allowed_tools`: only these of its tools (all when `None`).
    allowed: Option<Vec<String>>,
    at: String,
}

/// The tool types that search the web before the model answers.
const WEB_SEARCH_TYPES: [&str; 4] = [
    "web_search",
    "web_search_preview",
    "web_search_2025_08_26",
    "web_search_preview_2025_03_11",
];

fn tools(tools: &[Value], settings: &ServerSettings) -> Result<Tools, ApiError> {
    let mut out = Tools {
        functions: Vec::new(),
        file_search: None,
        web_search: false,
        mcp: Vec::new(),
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
                    .map_err(ApiError::from)?;
                out.file_search = Some(FileSearch {
                    stores: ids,
                    max,
                    filter,
                });
            }
            Some(kind) if WEB_SEARCH_TYPES.contains(&kind) => out.web_search = true,
            Some("mcp") => out.mcp.push(mcp_server(tool, &at, settings)?),
            other => {
                return Err(ApiError::invalid_param(
                    &format!("{at}.type"),
                    format!(
                        "`{at}.type` = `{}`: function, file_search, web_search and mcp tools are supported",
                        other.unwrap_or("?")
                    ),
                ));
            }
        }
    }
    Ok(out)
}

fn mcp_server(tool: &Value, at: &str, settings: &ServerSettings) -> Result<McpServer, ApiError> {
    let text = |name: &str| {
        tool.get(name)
            .and_then(Value::as_str)
            .filter(|s| !s.trim().is_empty())
            .map(str::to_owned)
            .ok_or_else(|| {
                ApiError::invalid_param(
                    &format!("{at}.{name}"),
                    format!("`{at}.{name}` must be a non-empty string"),
                )
            })
    };
    let label = text("server_label")?;
    if tool.get("connector_id").is_some() {
        return Err(ApiError::invalid_param(
            &format!("{at}.connector_id"),
            format!("`{at}.connector_id`: connectors are OpenAI's own; give `server_url`"),
        ));
    }
    let url = text("server_url")?;
    // Compared in its parsed form, so that `http://allowed.host:1@elsewhere/` (a user name and
    // password before another host) or an upper-case host cannot slip past a prefix.
    let parsed = url::Url::parse(&url).ok().filter(|u| {
        matches!(u.scheme(), "http" | "https") && u.username().is_empty() && u.password().is_none()
    });
    let Some(parsed) = parsed else {
        return Err(ApiError::invalid_param(
            &format!("{at}.server_url"),
            format!("`{at}.server_url` = `{url}` is not an http(s) URL without credentials"),
        ));
    };
    let allowed = settings
        .mcp_allowed_urls
        .iter()
        .any(|prefix| prefix == "*" || parsed.as_str().starts_with(prefix.as_str()));
    if !allowed {
        return Err(ApiError::invalid_param(
            &format!("{at}.server_url"),
            format!(
                "`{at}.server_url` = `{url}` is not among the MCP servers this server may reach \
                 (its operator lists them in `server.mcp_allowed_urls`)"
            ),
        ));
    }
    match tool.get("require_approval") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) if s == "never" => {}
        Some(_) => {
            return Err(ApiError::invalid_param(
                &format!("{at}.require_approval"),
                format!(
                    "`{at}.require_approval`: approvals are not supported; the server runs the \
                     tools it lists (give \"never\", or leave it out)"
                ),
            ));
        }
    }
    let mut headers = BTreeMap::new();
    match tool.get("headers") {
        None | Some(Value::Null) => {}
        Some(Value::Object(map)) => {
            for (name, value) in map {
                let value = value.as_str().ok_or_else(|| {
                    ApiError::invalid_param(
                        &format!("{at}.headers.{name}"),
                        format!("`{at}.headers.{name}` must be a string"),
                    )
                })?;
                headers.insert(name.clone(), value.to_string());
            }
        }
        Some(_) => {
            return Err(ApiError::invalid_param(
                &format!("{at}.headers"),
                format!("`{at}.headers` must be an object of strings"),
            ));
        }
    }
    let names = |list: &Value| {
        list.as_array().and_then(|names| {
            names
                .iter()
                .map(|n| n.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
        })
    };
    let allowed = match tool.get("allowed_tools") {
        None | Some(Value::Null) => None,
        Some(list @ Value::Array(_)) => names(list),
        Some(Value::Object(filter)) => filter.get("tool_names").and_then(names),
        Some(_) => None,
    };
    if tool.get("allowed_tools").is_some_and(|v| !v.is_null()) && allowed.is_none() {
        return Err(ApiError::invalid_param(
            &format!("{at}.allowed_tools"),
            format!(
                "`{at}.allowed_tools` must be a list of tool names or {{\"tool_names\": [...]}}"
            ),
        ));
    }
    Ok(McpServer {
        label,
        url: parsed.into(),
        headers,
        allowed,
        at: at.to_string(),
    })
}

/// A passage the model is given to cite: from a vector store, or a web search result.
#[derive(Debug, Clone)]
enum Source {
    File(FoundPassage),
    Web {
        title: String,
        url: String,
        snippet: String,
    },
}

/// The passages as the model reads them, numbered for citation.
fn context(sources: &[Source]) -> String {
    let mut text = String::from(
        "Answer from these passages. Cite each passage you use with its number in brackets, like [1].\n\n",
    );
    for (i, source) in sources.iter().enumerate() {
        match source {
            Source::File(p) => {
                text.push_str(&format!(
                    "[{}] {}\n{}\n\n",
                    i + 1,
                    p.filename,
                    p.text.trim()
                ));
            }
            Source::Web {
                title,
                url,
                snippet,
            } => {
                text.push_str(&format!(
                    "[{}] {title} ({url})\n{}\n\n",
                    i + 1,
                    snippet.trim()
                ));
            }
        }
    }
    text
}

/// Annotations for the `[n]` markers in `text` (character offsets): `file_citation` for a
/// vector store's passage, `url_citation` for a web result.
fn citations(text: &str, sources: &[Source]) -> Vec<Value> {
    let mut out = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '['
            && let Some(close) = chars[i + 1..].iter().position(|c| *c == ']')
        {
            let inner: String = chars[i + 1..i + 1 + close].iter().collect();
            if let Ok(n) = inner.trim().parse::<usize>()
                && let Some(source) = n.checked_sub(1).and_then(|k| sources.get(k))
            {
                out.push(match source {
                    Source::File(p) => {
                        json!({"type": "file_citation", "index": i, "file_id": p.file_id, "filename": p.filename})
                    }
                    Source::Web { title, url, .. } => json!({
                        "type": "url_citation",
                        "start_index": i,
                        "end_index": i + close + 2,
                        "url": url,
                        "title": title,
                    }),
                });
            }
            i += close + 1;
        }
        i += 1;
    }
    out
}

fn message_item(id: &str, text: &str, sources: &[Source]) -> Value {
    json!({
        "id": id,
        "type": "message",
        "role": "assistant",
        "status": "completed",
        "content": [{"type": "output_text", "text": text, "annotations": citations(text, sources)}],
    })
}

fn arguments_text(call: &ToolCall) -> String {
    match &call.arguments {
        Value::String(raw) => raw.clone(),
        other => other.to_string(),
    }
}

fn function_item(call: &ToolCall) -> Value {
    json!({
        "id": format!("fc_{}", call.id),
        "type": "function_call",
        "call_id": call.id,
        "name": call.name,
        "arguments": arguments_text(call),
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

/// Runs the configured web search (the first tool group of a `web_search` provider) for `query`.
async fn web_search(app: &crate::App, query: &str) -> Result<Vec<Source>, ApiError> {
    let config = app.stack.config();
    let group = config.tool_groups.iter().find(|group| {
        config
            .providers
            .tool_runtime
            .iter()
            .any(|p| p.id == group.provider && p.provider_type == "web_search")
    });
    let Some(group) = group else {
        return Err(ApiError::invalid_param(
            "tools",
            "a `web_search` tool needs a web search tool group in the server's config \
             ([[providers.tool_runtime]] type = \"web_search\"); none is configured",
        ));
    };
    let tools = app
        .stack
        .tool_group(&group.id)
        .await
        .map_err(|e| ApiError::from_capability(&e))?;
    let Some(tool) = tools.iter().find(|t| t.spec().name == "web_search") else {
        return Err(crate::vector_stores::internal_error(
            "searching the web",
            format!("tool group `{}` has no web_search tool", group.id),
        ));
    };
    let output = tool
        .call(json!({"query": query}))
        .await
        .map_err(|e| ApiError::from_capability(&e))?;
    let results = output
        .metadata
        .get("results")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let field = |r: &Value, name: &str| r[name].as_str().unwrap_or_default().to_string();
    Ok(results
        .iter()
        .map(|r| Source::Web {
            title: field(r, "title"),
            url: field(r, "url"),
            snippet: field(r, "snippet"),
        })
        .collect())
}

/// The tools of the request's MCP servers, and an `mcp_list_tools` item per server.
async fn mcp_tools(
    app: &crate::App,
    servers: &[McpServer],
    taken: &[ToolSpec],
) -> Result<(Vec<McpTool>, Vec<Value>), ApiError> {
    let mut tools: Vec<McpTool> = Vec::new();
    let mut items = Vec::new();
    for server in servers {
        let listed = corral_stack::mcp_tools_over_http(
            &server.url,
            server.headers.clone(),
            &*app.stack,
        )
        .await
        .map_err(|e| {
            tracing::warn!(server = %server.label, error = %e, "listing an MCP server's tools");
            ApiError {
                param: Some(format!("{}.server_url", server.at)),
                ..ApiError::new(
                    StatusCode::FAILED_DEPENDENCY,
                    format!(
                        "could not list the tools of MCP server `{}`: {e}",
                        server.label
                    ),
                )
            }
        })?;
        let mut described = Vec::new();
        for tool in listed {
            let name = tool.spec().name.clone();
            if server.allowed.as_ref().is_some_and(|a| !a.contains(&name)) {
                continue;
            }
            let clash = taken.iter().any(|f| f.name == name)
                || tools.iter().any(|t| t.tool.spec().name == name);
            if clash {
                return Err(ApiError::invalid_param(
                    &server.at,
                    format!(
                        "MCP server `{}` has a tool `{name}`, a name another tool of this request has",
                        server.label
                    ),
                ));
            }
            described.push(json!({
                "name": name,
                "description": tool.spec().description,
                "input_schema": tool.spec().parameters,
                "annotations": null,
            }));
            tools.push(McpTool {
                label: server.label.clone(),
                tool,
            });
        }
        items.push(json!({
            "id": new_id("mcpl"),
            "type": "mcp_list_tools",
            "server_label": server.label,
            "tools": described,
        }));
    }
    Ok((tools, items))
}

/// A tool of an MCP server, with its server's label.
struct McpTool {
    label: String,
    tool: Arc<dyn Tool>,
}

/// What one request turns into before the model runs.
struct Prepared {
    id: String,
    created_at: u64,
    model: String,
    conversation: Vec<Message>,
    new_input: Value,
    request: ChatRequest,
    sources: Vec<Source>,
    /// The items that come before the model's: searches, MCP tool listings.
    lead: Vec<Value>,
    mcp: Vec<McpTool>,
    store: bool,
    conversation_id: Option<String>,
    echo: Value,
}

async fn prepare(
    app: &crate::App,
    tenant: &Tenant,
    request: CreateResponse,
) -> Result<Prepared, ApiError> {
    let tools = tools(&request.tools, &app.stack.config().server)?;
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
    let query = conversation
        .iter()
        .rev()
        .find(|m| matches!(m, Message::User { .. }))
        .map(Message::text)
        .unwrap_or_default();
    let mut sources = Vec::new();
    let mut lead = Vec::new();
    if let Some(file_search) = &tools.file_search {
        let mut passages = Vec::new();
        let store_search = StoreSearch {
            text: &query,
            top_k: file_search.max,
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
        passages.truncate(file_search.max);
        lead.push(search_item(&new_id("fs"), &query, &passages));
        sources.extend(passages.into_iter().map(Source::File));
    }
    if tools.web_search {
        sources.extend(web_search(app, &query).await?);
        lead.push(json!({
            "id": new_id("ws"),
            "type": "web_search_call",
            "status": "completed",
            "action": {"type": "search", "query": query},
        }));
    }
    if !sources.is_empty() {
        // The passages go just before the last user message.
        let at = messages
            .iter()
            .rposition(|m| matches!(m, Message::User { .. }))
            .unwrap_or(messages.len());
        messages.insert(at, Message::system(context(&sources)));
    }
    let (mcp, listings) = mcp_tools(app, &tools.mcp, &tools.functions).await?;
    lead.extend(listings);
    let mut specs = tools.functions;
    specs.extend(mcp.iter().map(|t| t.tool.spec().clone()));
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
            tools: specs,
            ..ChatRequest::default()
        },
        sources,
        lead,
        mcp,
        store: request.store.unwrap_or(true),
        conversation_id,
        echo,
    })
}

/// The most model calls one response makes while the model calls MCP tools.
const MAX_ROUNDS: usize = 8;

/// What the turn's runner yields: events for a stream, then the finished response or an error.
enum Step {
    Event(&'static str, Value),
    Done(Value),
    Failed(ApiError),
}

impl Prepared {
    /// The response object for `output`, after the model's last `answer`.
    fn body(&self, output: Vec<Value>, answer: &ChatResponse, usage: Usage, cut: bool) -> Value {
        let incomplete = if answer.finish_reason == FinishReason::Length {
            json!({"reason": "max_output_tokens"})
        } else if cut {
            json!({"reason": "max_tool_calls"})
        } else {
            Value::Null
        };
        let mut body = json!({
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": if incomplete.is_null() { "completed" } else { "incomplete" },
            "incomplete_details": incomplete,
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
        body
    }

    /// Runs an MCP tool call; the `mcp_call` item and what the model reads back.
    async fn run_mcp(&self, call: &ToolCall, item_id: &str) -> (Value, String) {
        let tool = self.mcp_tool(&call.name);
        let arguments = match &call.arguments {
            Value::String(raw) => {
                serde_json::from_str(raw).map_err(|e| corral_core::ToolError::InvalidArguments {
                    field: None,
                    message: format!("the arguments are not JSON: {e}"),
                })
            }
            other => Ok(other.clone()),
        };
        let result = match (arguments, tool) {
            (Ok(arguments), Some(tool)) => tool.tool.call(arguments).await,
            (Err(e), _) => Err(e),
            (Ok(_), None) => Err(corral_core::ToolError::Failed(format!(
                "no tool `{}`",
                call.name
            ))),
        };
        let (output, error, read_back) = match result {
            Ok(output) => (json!(output.content), Value::Null, output.content),
            Err(e) => (Value::Null, json!(e.to_string()), format!("error: {e}")),
        };
        let item = json!({
            "id": item_id,
            "type": "mcp_call",
            "server_label": tool.map(|t| t.label.as_str()),
            "name": call.name,
            "arguments": arguments_text(call),
            "output": output,
            "error": error,
            "status": if error.is_null() { "completed" } else { "failed" },
        });
        (item, read_back)
    }

    /// The MCP tool the model calls by `name`, if it is one.
    fn mcp_tool(&self, name: &str) -> Option<&McpTool> {
        self.mcp.iter().find(|t| t.tool.spec().name == name)
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

/// A tool call being streamed: where its item sits and what it is.
struct StreamedCall {
    index: usize,
    output_index: usize,
    item_id: Option<String>,
    mcp: bool,
    /// Argument fragments that came before the call's name.
    pending: String,
}

impl StreamedCall {
    /// The event that carries a fragment of this call's arguments.
    fn arguments_event(&self) -> &'static str {
        if self.mcp {
            "response.mcp_call_arguments.delta"
        } else {
            "response.function_call_arguments.delta"
        }
    }
}

/// Runs the turn: the model's answer streamed from `first`, then, while it calls MCP tools,
/// the calls and the next answer, up to [`MAX_ROUNDS`]. Yields the stream's events and, last,
/// the response (kept as `save` says) or the error that ended it.
fn run(
    app: AppState,
    tenant: Tenant,
    prepared: Prepared,
    model: Arc<dyn ChatModel>,
    meter: crate::routes::Meter,
    first: corral_core::ChatStream,
) -> impl futures::Stream<Item = Step> + Send + 'static {
    async_stream::stream! {
        let pending = json!({"id": prepared.id, "object": "response", "created_at": prepared.created_at, "status": "in_progress", "model": prepared.model, "output": []});
        yield Step::Event("response.created", json!({"response": pending}));
        yield Step::Event("response.in_progress", json!({"response": pending}));
        let mut output: Vec<Value> = Vec::new();
        for item in &prepared.lead {
            yield Step::Event("response.output_item.added", json!({"output_index": output.len(), "item": item}));
            yield Step::Event("response.output_item.done", json!({"output_index": output.len(), "item": item}));
            output.push(item.clone());
        }
        let mut request = prepared.request.clone();
        let mut conversation = prepared.conversation.clone();
        let mut usage = Usage::default();
        let mut deltas = first;
        let mut round = 1;
        loop {
            let message_id = new_id("msg");
            let mut message_index = None;
            let mut calls: Vec<StreamedCall> = Vec::new();
            let mut next_index = output.len();
            let mut collector = corral_core::StreamCollector::default();
            while let Some(delta) = deltas.next().await {
                let delta = match delta {
                    Ok(delta) => delta,
                    Err(e) => {
                        yield Step::Failed(meter.fail(&e));
                        return;
                    }
                };
                match &delta {
                    ChatDelta::Text { text } if !text.is_empty() => {
                        let index = match message_index {
                            Some(index) => index,
                            None => {
                                let index = next_index;
                                next_index += 1;
                                message_index = Some(index);
                                let item = json!({"id": message_id, "type": "message", "role": "assistant", "status": "in_progress", "content": []});
                                yield Step::Event("response.output_item.added", json!({"output_index": index, "item": item}));
                                yield Step::Event("response.content_part.added", json!({"item_id": message_id, "output_index": index, "content_index": 0, "part": {"type": "output_text", "text": "", "annotations": []}}));
                                index
                            }
                        };
                        yield Step::Event("response.output_text.delta", json!({"item_id": message_id, "output_index": index, "content_index": 0, "delta": text}));
                    }
                    ChatDelta::ToolCall(fragment) => {
                        let position = match calls.iter().position(|c| c.index == fragment.index) {
                            Some(p) => p,
                            None => {
                                calls.push(StreamedCall { index: fragment.index, output_index: 0, item_id: None, mcp: false, pending: String::new() });
                                calls.len() - 1
                            }
                        };
                        let call = &mut calls[position];
                        if call.item_id.is_none() {
                            match &fragment.name {
                                // Not yet known whose call it is: keep its arguments for later.
                                None => call.pending.push_str(&fragment.arguments),
                                Some(name) => {
                                    let call_id = fragment.id.clone().unwrap_or_else(|| format!("call_{}", fragment.index));
                                    call.mcp = prepared.mcp_tool(name).is_some();
                                    call.output_index = next_index;
                                    next_index += 1;
                                    let item = if call.mcp {
                                        let id = format!("mcp_{call_id}");
                                        call.item_id = Some(id.clone());
                                        json!({"id": id, "type": "mcp_call", "server_label": prepared.mcp_tool(name).map(|t| t.label.as_str()), "name": name, "arguments": "", "status": "in_progress"})
                                    } else {
                                        let id = format!("fc_{call_id}");
                                        call.item_id = Some(id.clone());
                                        json!({"id": id, "type": "function_call", "call_id": call_id, "name": name, "arguments": "", "status": "in_progress"})
                                    };
                                    yield Step::Event("response.output_item.added", json!({"output_index": call.output_index, "item": item}));
                                    call.pending.push_str(&fragment.arguments);
                                    let text = std::mem::take(&mut call.pending);
                                    if !text.is_empty() {
                                        let kind = call.arguments_event();
                                        yield Step::Event(kind, json!({"item_id": call.item_id, "output_index": call.output_index, "delta": text}));
                                    }
                                }
                            }
                        } else if !fragment.arguments.is_empty() {
                            let kind = call.arguments_event();
                            yield Step::Event(kind, json!({"item_id": call.item_id, "output_index": call.output_index, "delta": fragment.arguments}));
                        }
                    }
                    _ => {}
                }
                collector.push(delta);
            }
            let answer = collector.finish();
            meter.usage(answer.usage);
            if let Some(u) = answer.usage {
                usage.prompt_tokens = usage.prompt_tokens.saturating_add(u.prompt_tokens);
                usage.completion_tokens = usage.completion_tokens.saturating_add(u.completion_tokens);
            }
            // This round's items, in the order they were announced.
            let mut round_items: Vec<(usize, Value)> = Vec::new();
            if !answer.text.is_empty() || answer.tool_calls.is_empty() {
                let index = match message_index {
                    Some(index) => index,
                    None => {
                        let index = next_index;
                        next_index += 1;
                        index
                    }
                };
                let item = message_item(&message_id, &answer.text, &prepared.sources);
                if message_index.is_some() {
                    let part = &item["content"][0];
                    yield Step::Event("response.output_text.done", json!({"item_id": message_id, "output_index": index, "content_index": 0, "text": part["text"]}));
                    yield Step::Event("response.content_part.done", json!({"item_id": message_id, "output_index": index, "content_index": 0, "part": part}));
                }
                round_items.push((index, item));
            }
            conversation.push(answer.to_message());
            request.messages.push(answer.to_message());
            let mut ran_mcp = false;
            let mut client_calls = false;
            for (k, call) in answer.tool_calls.iter().enumerate() {
                let streamed = calls.get(k);
                let index = match streamed {
                    Some(s) if s.item_id.is_some() => s.output_index,
                    _ => {
                        let index = next_index;
                        next_index += 1;
                        index
                    }
                };
                if prepared.mcp_tool(&call.name).is_some() {
                    let item_id = format!("mcp_{}", call.id);
                    yield Step::Event("response.mcp_call_arguments.done", json!({"item_id": item_id, "output_index": index, "arguments": arguments_text(call)}));
                    yield Step::Event("response.mcp_call.in_progress", json!({"item_id": item_id, "output_index": index}));
                    let (item, read_back) = prepared.run_mcp(call, &item_id).await;
                    let done = if item["error"].is_null() { "response.mcp_call.completed" } else { "response.mcp_call.failed" };
                    yield Step::Event(done, json!({"item_id": item_id, "output_index": index}));
                    conversation.push(Message::tool_result(call.id.clone(), read_back.clone()));
                    request.messages.push(Message::tool_result(call.id.clone(), read_back));
                    round_items.push((index, item));
                    ran_mcp = true;
                } else {
                    let item = function_item(call);
                    yield Step::Event("response.function_call_arguments.done", json!({"item_id": item["id"], "output_index": index, "arguments": item["arguments"]}));
                    round_items.push((index, item));
                    client_calls = true;
                }
            }
            round_items.sort_by_key(|(index, _)| *index);
            for (index, item) in round_items {
                yield Step::Event("response.output_item.done", json!({"output_index": index, "item": item}));
                output.push(item);
            }
            let go_on = ran_mcp && !client_calls;
            if go_on && round < MAX_ROUNDS {
                round += 1;
                deltas = match model.stream(&request).await {
                    Ok(deltas) => deltas,
                    Err(e) => {
                        yield Step::Failed(meter.fail(&e));
                        return;
                    }
                };
                continue;
            }
            let body = prepared.body(output, &answer, usage, go_on);
            if let Err(e) = prepared.save(&app, &tenant, &body, &conversation) {
                yield Step::Failed(e);
                return;
            }
            yield Step::Done(body);
            return;
        }
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
    // The first answer is started here, so that a model that cannot start is an HTTP error.
    let first = model
        .stream(&prepared.request)
        .await
        .map_err(|e| meter.fail(&e))?;
    let steps = run(app.clone(), tenant, prepared, model, meter, first);
    if !stream {
        let mut steps = std::pin::pin!(steps);
        while let Some(step) = steps.next().await {
            match step {
                Step::Event(..) => {}
                Step::Done(body) => return Ok(Json(body).into_response()),
                Step::Failed(e) => return Err(e),
            }
        }
        return Err(crate::vector_stores::internal_error(
            "answering",
            "the turn ended without a response",
        ));
    }
    let mut sequence = 0u64;
    let events = steps.map(move |step| {
        let (kind, mut data) = match step {
            Step::Event(kind, data) => (kind, data),
            Step::Done(body) => ("response.completed", json!({"response": body})),
            Step::Failed(e) => (
                "error",
                json!({"code": e.code, "message": e.message, "param": null}),
            ),
        };
        data["type"] = json!(kind);
        data["sequence_number"] = json!(sequence);
        sequence += 1;
        Event::default().event(kind).data(data.to_string())
    });
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
