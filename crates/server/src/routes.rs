//! The handlers: OpenAI's inference routes and Llama Stack's listing and safety routes.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::extract::{Path, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use corral_core::{ChatDelta, ChatStream, Message, Violation};
use corral_stack::{ModelKind, Route, Stack};
use futures::{Stream, StreamExt};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::{ApiError, Body};
use crate::openai::{
    self, ChatCompletionRequest, CompletionRequest, OneOrMany, WireMessage, finish_reason,
};

pub type AppState = Arc<crate::App>;

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

pub fn new_id(prefix: &str) -> String {
    format!(
        "{prefix}-{:016x}{:08x}",
        fastrand::u64(..),
        fastrand::u32(..)
    )
}

/// A list in OpenAI's paged shape (one page: everything).
pub fn page(data: Vec<Value>) -> Value {
    let first = data.first().and_then(|d| d.get("id")).cloned();
    let last = data.last().and_then(|d| d.get("id")).cloned();
    json!({"object": "list", "data": data, "first_id": first, "last_id": last, "has_more": false})
}

pub async fn health() -> Json<Value> {
    Json(json!({"status": "OK"}))
}

pub async fn version() -> Json<Value> {
    Json(json!({"version": env!("CARGO_PKG_VERSION")}))
}

/// A model as both OpenAI's and Llama Stack's clients read it.
fn model_json(route: &Route) -> Value {
    json!({
        "id": route.model,
        "object": "model",
        "created": 0,
        "owned_by": route.provider,
        "identifier": route.model,
        "provider_id": route.provider,
        "provider_resource_id": route.provider_model,
        "type": "model",
        "model_type": match route.kind {
            ModelKind::Chat => "llm",
            ModelKind::Embedding => "embedding",
        },
        "metadata": {},
    })
}

pub async fn list_models(State(app): State<AppState>) -> Json<Value> {
    let stack = &app.stack;
    let data: Vec<Value> = stack.routes().iter().map(model_json).collect();
    Json(json!({"object": "list", "data": data}))
}

pub async fn get_model(
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let stack = &app.stack;
    stack
        .routes()
        .iter()
        .find(|r| r.model == id)
        .map(|r| Json(model_json(r)))
        .ok_or_else(|| ApiError::not_found("model", &id).with_code("model_not_found"))
}

/// The configured providers, without their settings (which may hold credentials).
pub async fn list_providers(State(app): State<AppState>) -> Json<Value> {
    let stack = &app.stack;
    let providers = &stack.config().providers;
    let data: Vec<Value> = [
        ("inference", &providers.inference),
        ("vector_io", &providers.vector_io),
        ("safety", &providers.safety),
        ("tool_runtime", &providers.tool_runtime),
    ]
    .into_iter()
    .flat_map(|(api, entries)| {
        entries.iter().map(
            move |e| json!({"api": api, "provider_id": e.id, "provider_type": e.provider_type}),
        )
    })
    .collect();
    Json(json!({"data": data}))
}

pub async fn inspect_routes() -> Json<Value> {
    let data: Vec<Value> = crate::ROUTES
        .iter()
        .map(|(method, route)| json!({"route": route, "method": method, "provider_types": []}))
        .collect();
    Json(json!({"data": data}))
}

/// Checks that `model` is a configured model of `kind`, naming the field when it is not.
fn require_model(stack: &Stack, model: &str, kind: ModelKind) -> Result<(), ApiError> {
    match stack.routes().iter().find(|r| r.model == model) {
        Some(r) if r.kind == kind => Ok(()),
        Some(_) => Err(ApiError::invalid_param(
            "model",
            format!(
                "`model` = `{model}` is an {} model",
                match kind {
                    ModelKind::Chat => "embedding model, not a chat",
                    ModelKind::Embedding => "chat model, not an embedding",
                }
            ),
        )),
        None => Err(ApiError::not_found("model", model).with_code("model_not_found")),
    }
}

/// The configured chat model `id` (a 404 or 400 naming `model` when it is not one).
pub async fn chat_model(
    stack: &Stack,
    id: &str,
) -> Result<Arc<dyn corral_core::ChatModel>, ApiError> {
    require_model(stack, id, ModelKind::Chat)?;
    stack
        .chat_model(id)
        .await
        .map_err(|e| ApiError::from_capability(&e))
}

pub async fn chat_completions(
    State(app): State<AppState>,
    uri: axum::http::Uri,
    Body(request): Body<ChatCompletionRequest>,
) -> Result<Response, ApiError> {
    let stack = &app.stack;
    let model = chat_model(stack, &request.model).await?;
    let model_id = request.model.clone();
    let stream = request.stream;
    let include_usage = openai::include_usage(request.stream_options.as_ref());
    let core = request.into_core()?;
    let meter = Meter::new(&app, &model_id);
    let id = new_id("chatcmpl");
    let created = now();
    if !stream {
        let response = model.complete(&core).await.map_err(|e| meter.fail(&e))?;
        meter.usage(response.usage);
        return Ok(
            Json(openai::chat_completion(&id, created, &model_id, &response)).into_response(),
        );
    }
    let deltas = model.stream(&core).await.map_err(|e| meter.fail(&e))?;
    let chunk = move |delta: Value, finish: Option<&str>| {
        json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model_id,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": null}],
        })
    };
    let first = chunk(json!({"role": "assistant", "content": ""}), None);
    let events = sse_events(
        first,
        deltas,
        meter,
        include_usage,
        ends_with_done(&uri),
        move |delta| match delta {
            ChatDelta::Text { text } => Some(chunk(json!({"content": text}), None)),
            ChatDelta::ToolCall(call) => {
                let mut function = json!({"arguments": call.arguments});
                if let Some(name) = &call.name {
                    function["name"] = json!(name);
                }
                let mut entry = json!({"index": call.index, "function": function});
                if let Some(id) = &call.id {
                    entry["id"] = json!(id);
                    entry["type"] = json!("function");
                }
                Some(chunk(json!({"tool_calls": [entry]}), None))
            }
            ChatDelta::Finish { reason } => Some(chunk(json!({}), Some(finish_reason(*reason)))),
            ChatDelta::Usage(_) | ChatDelta::ToolCallError { .. } => None,
        },
    );
    Ok(sse(events))
}

pub async fn completions(
    State(app): State<AppState>,
    uri: axum::http::Uri,
    Body(request): Body<CompletionRequest>,
) -> Result<Response, ApiError> {
    let stack = &app.stack;
    let model = chat_model(stack, &request.model).await?;
    let model_id = request.model.clone();
    let stream = request.stream;
    let include_usage = openai::include_usage(request.stream_options.as_ref());
    let core = request.into_core()?;
    let meter = Meter::new(&app, &model_id);
    let deltas = model.generate(&core).await.map_err(|e| meter.fail(&e))?;
    let id = new_id("cmpl");
    let created = now();
    if !stream {
        let response = corral_core::StreamCollector::collect(deltas)
            .await
            .map_err(|e| meter.fail(&e))?;
        meter.usage(response.usage);
        return Ok(Json(json!({
            "id": id,
            "object": "text_completion",
            "created": created,
            "model": model_id,
            "choices": [{
                "index": 0,
                "text": response.text,
                "finish_reason": finish_reason(response.finish_reason),
                "logprobs": null,
            }],
            "usage": openai::usage(response.usage),
        }))
        .into_response());
    }
    let chunk = move |text: &str, finish: Option<&str>| {
        json!({
            "id": id,
            "object": "text_completion",
            "created": created,
            "model": model_id,
            "choices": [{"index": 0, "text": text, "finish_reason": finish, "logprobs": null}],
        })
    };
    let first = chunk("", None);
    let events = sse_events(
        first,
        deltas,
        meter,
        include_usage,
        ends_with_done(&uri),
        move |delta| match delta {
            ChatDelta::Text { text } => Some(chunk(text, None)),
            ChatDelta::Finish { reason } => Some(chunk("", Some(finish_reason(*reason)))),
            _ => None,
        },
    );
    Ok(sse(events))
}

/// Counts a model's tokens and failures into the server's metrics.
pub struct Meter {
    app: AppState,
    model: String,
    /// The provider that serves the model (the model's entry names it).
    provider: String,
}

impl Meter {
    pub fn new(app: &AppState, model: &str) -> Self {
        let provider = app
            .stack
            .config()
            .models
            .iter()
            .find(|m| m.id == model)
            .map(|m| m.provider.clone())
            .unwrap_or_default();
        Self {
            app: app.clone(),
            model: model.to_string(),
            provider,
        }
    }

    /// Records a failed call and turns it into the client's error.
    pub fn fail<E: corral_core::CapabilityError + std::fmt::Display>(&self, e: &E) -> ApiError {
        self.app
            .metrics
            .model_error(&self.model, &self.provider, e.kind());
        ApiError::from_capability(e)
    }

    pub fn usage(&self, usage: Option<corral_core::Usage>) {
        self.app.metrics.tokens(&self.model, &self.provider, usage);
    }
}

/// Whether a stream ends with `[DONE]`: as OpenAI's do, except under Llama Stack's alias, whose
/// clients (0.2) read every event as JSON and whose server sends none.
fn ends_with_done(uri: &axum::http::Uri) -> bool {
    !uri.path().starts_with(crate::OPENAI_ALIAS)
}

/// Server-sent events, with keep-alive comments while a model is quiet.
pub fn sse(events: impl Stream<Item = Event> + Send + 'static) -> Response {
    Sse::new(events.map(Ok::<_, Infallible>))
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// A stream's server-sent events: `first`, one per delta that `render` turns into a chunk, a
/// usage chunk (no choices) when asked for, then `[DONE]` when `done`. An error mid-stream becomes an error
/// event and ends the stream without `[DONE]` (OpenAI's clients raise it). Dropping the
/// response drops `deltas`, which cancels generation.
fn sse_events(
    first: Value,
    mut deltas: ChatStream,
    meter: Meter,
    include_usage: bool,
    done: bool,
    render: impl Fn(&ChatDelta) -> Option<Value> + Send + 'static,
) -> impl Stream<Item = Event> + Send + 'static {
    let data = |value: &Value| Event::default().data(value.to_string());
    async_stream::stream! {
        let mut last = first.clone();
        yield data(&first);
        let mut usage = None;
        while let Some(delta) = deltas.next().await {
            match delta {
                Ok(ChatDelta::Usage(u)) => usage = Some(u),
                Ok(delta) => {
                    if let Some(chunk) = render(&delta) {
                        yield data(&chunk);
                        last = chunk;
                    }
                }
                Err(e) => {
                    yield data(&meter.fail(&e).body());
                    return;
                }
            }
        }
        meter.usage(usage);
        if include_usage {
            last["choices"] = json!([]);
            last["usage"] = openai::usage(usage);
            yield data(&last);
        }
        if done {
            yield Event::default().data("[DONE]");
        }
    }
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct EmbeddingsRequest {
    model: String,
    input: Value,
    #[serde(default)]
    encoding_format: Option<String>,
    #[serde(default)]
    dimensions: Option<usize>,
}

pub async fn embeddings(
    State(app): State<AppState>,
    Body(request): Body<EmbeddingsRequest>,
) -> Result<Json<Value>, ApiError> {
    let stack = &app.stack;
    require_model(stack, &request.model, ModelKind::Embedding)?;
    let inputs: Vec<String> = match request.input {
        Value::String(s) => vec![s],
        Value::Array(items) if items.iter().all(Value::is_string) => items
            .into_iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        Value::Array(_) => {
            return Err(ApiError::invalid_param(
                "input",
                "`input`: token ids are not supported; send text (a string or a list of strings)",
            ));
        }
        _ => {
            return Err(ApiError::invalid_param(
                "input",
                "`input` must be a string or a list of strings",
            ));
        }
    };
    if inputs.is_empty() {
        return Err(ApiError::invalid_param("input", "`input` is empty"));
    }
    let base64 = match request.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(ApiError::invalid_param(
                "encoding_format",
                format!("`encoding_format` = `{other}`: expected float or base64"),
            ));
        }
    };
    let embedder = stack
        .embedder(&request.model)
        .await
        .map_err(|e| ApiError::from_capability(&e))?;
    if let Some(d) = request.dimensions
        && d != embedder.dimension()
    {
        return Err(ApiError::invalid_param(
            "dimensions",
            format!(
                "`dimensions` = {d}: `{}` gives {} dimensions and cannot shorten them",
                request.model,
                embedder.dimension()
            ),
        ));
    }
    let vectors = embedder
        .embed(&inputs)
        .await
        .map_err(|e| ApiError::from_capability(&e))?;
    let tokens: usize = match embedder.token_counter() {
        Some(counter) => inputs.iter().map(|t| counter.count_tokens(t)).sum(),
        None => 0,
    };
    let data: Vec<Value> = vectors
        .iter()
        .enumerate()
        .map(|(index, vector)| {
            let embedding = if base64 {
                let bytes: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
                json!(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(vector)
            };
            json!({"object": "embedding", "index": index, "embedding": embedding})
        })
        .collect();
    Ok(Json(json!({
        "object": "list",
        "data": data,
        "model": request.model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    })))
}

/// The configured shields, as Llama Stack lists them.
pub async fn list_shields(State(app): State<AppState>) -> Json<Value> {
    let stack = &app.stack;
    let data: Vec<Value> = stack
        .config()
        .shields
        .iter()
        .map(|s| {
            json!({
                "identifier": s.id,
                "provider_id": s.provider,
                "provider_resource_id": s.id,
                "type": "shield",
            })
        })
        .collect();
    Json(json!({"data": data}))
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct RunShieldRequest {
    shield_id: String,
    messages: Vec<WireMessage>,
    #[serde(default)]
    #[allow(dead_code)]
    params: Value,
}

fn violation_json(v: &Violation) -> Value {
    json!({
        "violation_level": v.level.as_str(),
        "user_message": v.user_message,
        "metadata": v.metadata,
    })
}

async fn shield(
    stack: &Stack,
    id: &str,
    param: &str,
) -> Result<Arc<dyn corral_core::Shield>, ApiError> {
    if !stack.config().shields.iter().any(|s| s.id == id) {
        return Err(ApiError::not_found("shield", id)
            .with_code("shield_not_found")
            .param_of(param));
    }
    stack
        .shield(id)
        .await
        .map_err(|e| ApiError::from_capability(&e))
}

/// Llama Stack's `run-shield`: the shield judges the conversation's last message.
pub async fn run_shield(
    State(app): State<AppState>,
    Body(request): Body<RunShieldRequest>,
) -> Result<Json<Value>, ApiError> {
    let stack = &app.stack;
    let shield = shield(stack, &request.shield_id, "shield_id").await?;
    let messages = openai::messages(request.messages)?;
    let verdict = shield
        .check(&messages)
        .await
        .map_err(|e| ApiError::from_capability(&e))?;
    Ok(Json(
        json!({"violation": verdict.as_ref().map(violation_json)}),
    ))
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct ModerationRequest {
    input: OneOrMany,
    #[serde(default)]
    model: Option<String>,
}

/// OpenAI's moderations, answered by a shield: `model` names it; without one, `llama-guard`
/// when configured, else the first shield. A blocking violation is `flagged`; its categories
/// (Llama Guard's codes, a rule's name) are the ones set.
pub async fn moderations(
    State(app): State<AppState>,
    Body(request): Body<ModerationRequest>,
) -> Result<Json<Value>, ApiError> {
    let stack = &app.stack;
    let shields = &stack.config().shields;
    let id = match &request.model {
        Some(model) => model.clone(),
        None => shields
            .iter()
            .find(|s| s.id == "llama-guard")
            .or_else(|| shields.first())
            .map(|s| s.id.clone())
            .ok_or_else(|| {
                ApiError::invalid_param("model", "no shields are configured to moderate with")
            })?,
    };
    let shield = shield(stack, &id, "model").await?;
    let mut results = Vec::new();
    for text in request.input.into_vec() {
        let verdict = shield
            .check(&[Message::user(text)])
            .await
            .map_err(|e| ApiError::from_capability(&e))?;
        let flagged = verdict
            .as_ref()
            .is_some_and(|v| v.level == corral_core::ViolationLevel::Error);
        let mut categories = serde_json::Map::new();
        let mut scores = serde_json::Map::new();
        if let Some(v) = &verdict {
            for name in violation_categories(v) {
                categories.insert(name.clone(), json!(flagged));
                scores.insert(name, json!(if flagged { 1.0 } else { 0.5 }));
            }
        }
        results.push(json!({
            "flagged": flagged,
            "categories": categories,
            "category_scores": scores,
            "user_message": verdict.as_ref().map(|v| v.user_message.clone()),
            "metadata": verdict.as_ref().map(|v| v.metadata.clone()),
        }));
    }
    Ok(Json(
        json!({"id": new_id("modr"), "model": id, "results": results}),
    ))
}

/// The categories a violation names in its metadata (`categories` as a list of strings or of
/// objects with a `code`/`name`), else the shield's single verdict `violation`.
fn violation_categories(v: &Violation) -> Vec<String> {
    let listed: Vec<String> = v
        .metadata
        .get("categories")
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(|item| match item {
                    Value::String(s) => Some(s.clone()),
                    other => other
                        .get("code")
                        .or_else(|| other.get("name"))
                        .and_then(Value::as_str)
                        .map(str::to_owned),
                })
                .collect()
        })
        .unwrap_or_default();
    if listed.is_empty() {
        vec!["violation".to_string()]
    } else {
        listed
    }
}

/// The tools of every configured tool group.
pub async fn list_tools(State(app): State<AppState>) -> Result<Json<Value>, ApiError> {
    let stack = &app.stack;
    let mut data = Vec::new();
    for group in &stack.config().tool_groups {
        let tools = stack
            .tool_group(&group.id)
            .await
            .map_err(|e| ApiError::from_capability(&e))?;
        for tool in tools {
            let spec = tool.spec();
            data.push(json!({
                "identifier": spec.name,
                "name": spec.name,
                "description": spec.description,
                "parameters": spec.parameters,
                "toolgroup_id": group.id,
                "type": "tool",
            }));
        }
    }
    Ok(Json(json!({"data": data})))
}

pub async fn not_found() -> ApiError {
    ApiError::new(axum::http::StatusCode::NOT_FOUND, "no such route").with_code("not_found")
}
