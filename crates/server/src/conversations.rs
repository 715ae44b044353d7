//! `/v1/conversations`: stored lists of items (messages, function calls and their outputs,
//! file searches) that `POST /v1/responses` with `conversation` reads as its history and
//! appends its input and output to. A conversation belongs to its tenant.

use axum::extract::{Path, Query, State};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::Tenant;
use crate::error::{ApiError, Body};
use crate::routes::{AppState, new_id, now, page};

fn conversation_json(id: &str, created_at: u64, metadata: &Value) -> Value {
    json!({"id": id, "object": "conversation", "created_at": created_at, "metadata": metadata})
}

/// Items as stored: each with an `id` and a `type` (a bare `{role, content}` is a message), and
/// a string `content` made a list of parts.
pub fn normalise_items(items: &Value, at: &str) -> Result<Vec<Value>, ApiError> {
    let items = items
        .as_array()
        .ok_or_else(|| ApiError::invalid_param(at, format!("`{at}` must be a list of items")))?;
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let mut item = item.clone();
            let Some(object) = item.as_object_mut() else {
                return Err(ApiError::invalid_param(
                    &format!("{at}[{i}]"),
                    format!("`{at}[{i}]` must be an object"),
                ));
            };
            object.entry("type").or_insert_with(|| json!("message"));
            if object.get("type") == Some(&json!("message")) {
                let role = object
                    .get("role")
                    .and_then(Value::as_str)
                    .unwrap_or("user")
                    .to_string();
                if let Some(Value::String(text)) = object.get("content").cloned() {
                    let kind = if role == "assistant" {
                        "output_text"
                    } else {
                        "input_text"
                    };
                    object.insert("content".into(), json!([{"type": kind, "text": text}]));
                }
            }
            object.entry("id").or_insert_with(|| json!(new_id("item")));
            Ok(item)
        })
        .collect()
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct Create {
    #[serde(default)]
    items: Option<Value>,
    #[serde(default)]
    metadata: Option<Value>,
}

pub async fn create(
    State(app): State<AppState>,
    Extension(tenant): Extension<Tenant>,
    Body(request): Body<Create>,
) -> Result<Json<Value>, ApiError> {
    let items = match &request.items {
        Some(items) => normalise_items(items, "items")?,
        None => Vec::new(),
    };
    let id = new_id("conv");
    let created_at = now();
    let metadata = request.metadata.unwrap_or_else(|| json!({}));
    app.records
        .add_conversation(tenant.as_str(), &id, created_at, &metadata)?;
    app.records.append_items(&id, &items)?;
    Ok(Json(conversation_json(&id, created_at, &metadata)))
}

pub async fn get(
    State(app): State<AppState>,
    Extension(tenant): Extension<Tenant>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let (created_at, metadata) = app.records.conversation(tenant.as_str(), &id)?;
    Ok(Json(conversation_json(&id, created_at, &metadata)))
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct Update {
    metadata: Value,
}

pub async fn update(
    State(app): State<AppState>,
    Extension(tenant): Extension<Tenant>,
    Path(id): Path<String>,
    Body(request): Body<Update>,
) -> Result<Json<Value>, ApiError> {
    app.records
        .update_conversation(tenant.as_str(), &id, &request.metadata)?;
    let (created_at, metadata) = app.records.conversation(tenant.as_str(), &id)?;
    Ok(Json(conversation_json(&id, created_at, &metadata)))
}

pub async fn delete(
    State(app): State<AppState>,
    Extension(tenant): Extension<Tenant>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    if !app.records.delete_conversation(tenant.as_str(), &id)? {
        return Err(ApiError::not_found("conversation", &id));
    }
    Ok(Json(
        json!({"id": id, "object": "conversation.deleted", "deleted": true}),
    ))
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct AddItems {
    items: Value,
}

pub async fn add_items(
    State(app): State<AppState>,
    Extension(tenant): Extension<Tenant>,
    Path(id): Path<String>,
    Body(request): Body<AddItems>,
) -> Result<Json<Value>, ApiError> {
    app.records.conversation(tenant.as_str(), &id)?;
    let items = normalise_items(&request.items, "items")?;
    app.records.append_items(&id, &items)?;
    Ok(Json(page(items)))
}

#[derive(Debug, Deserialize)]
pub struct ListItems {
    #[serde(default)]
    order: Option<String>,
}

pub async fn list_items(
    State(app): State<AppState>,
    Extension(tenant): Extension<Tenant>,
    Path(id): Path<String>,
    Query(query): Query<ListItems>,
) -> Result<Json<Value>, ApiError> {
    app.records.conversation(tenant.as_str(), &id)?;
    let mut items = app.records.items(&id)?;
    // OpenAI lists the newest first unless asked otherwise.
    if query.order.as_deref() != Some("asc") {
        items.reverse();
    }
    Ok(Json(page(items)))
}

pub async fn get_item(
    State(app): State<AppState>,
    Extension(tenant): Extension<Tenant>,
    Path((id, item_id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    app.records.conversation(tenant.as_str(), &id)?;
    app.records
        .items(&id)?
        .into_iter()
        .find(|item| item.get("id").and_then(Value::as_str) == Some(item_id.as_str()))
        .map(Json)
        .ok_or_else(|| ApiError::not_found("item", &item_id))
}

pub async fn delete_item(
    State(app): State<AppState>,
    Extension(tenant): Extension<Tenant>,
    Path((id, item_id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let (created_at, metadata) = app.records.conversation(tenant.as_str(), &id)?;
    if !app.records.delete_item(&id, &item_id)? {
        return Err(ApiError::not_found("item", &item_id));
    }
    Ok(Json(conversation_json(&id, created_at, &metadata)))
}
