//! `/v1/files`: uploads kept under the data directory, one directory per file id, with their
//! records in SQLite. A file belongs to the tenant whose key uploaded it.

use axum::Extension;
use axum::Json;
use axum::body::Bytes;
use axum::extract::multipart::{Multipart, MultipartRejection};
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::Tenant;
use crate::error::ApiError;
use crate::routes::{AppState, new_id, now};
use crate::state::FileRecord;

const PURPOSES: &[&str] = &[
    "assistants",
    "batch",
    "fine-tune",
    "vision",
    "user_data",
    "evals",
];

pub fn file_json(file: &FileRecord) -> Value {
    json!({
        "id": file.id,
        "object": "file",
        "bytes": file.bytes,
        "created_at": file.created_at,
        "expires_at": null,
        "filename": file.filename,
        "purpose": file.purpose,
        "status": "processed",
    })
}

/// The name a file is kept under: its last path component, checked.
fn safe_name(name: &str) -> Result<String, ApiError> {
    let last = name.rsplit(['/', '\\']).next().unwrap_or_default().trim();
    if last.is_empty() || last == "." || last == ".." || last.len() > 255 || last.contains('\0') {
        return Err(ApiError::invalid_param(
            "file",
            format!("`file`: the file name {name:?} cannot be used"),
        ));
    }
    Ok(last.to_string())
}

pub async fn upload(
    State(app): State<AppState>,
    Extension(tenant): Extension<Tenant>,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Json<Value>, ApiError> {
    let mut multipart = multipart
        .map_err(|e| ApiError::invalid(format!("the upload is not a multipart form: {e}")))?;
    let (mut content, mut filename, mut purpose) = (None::<Bytes>, None, None);
    while let Some(field) = multipart.next_field().await.map_err(|e| {
        if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                e.status(),
                "the file is larger than the server's max_body_bytes",
            )
        } else {
            ApiError::invalid(format!("the upload could not be read: {e}"))
        }
    })? {
        match field.name() {
            Some("file") => {
                filename = Some(safe_name(field.file_name().unwrap_or("upload"))?);
                content = Some(field.bytes().await.map_err(|e| {
                    ApiError::new(e.status(), format!("the file could not be read: {e}"))
                })?);
            }
            Some("purpose") => {
                purpose =
                    Some(field.text().await.map_err(|e| {
                        ApiError::invalid_param("purpose", format!("`purpose`: {e}"))
                    })?);
            }
            _ => {}
        }
    }
    let (Some(content), Some(filename)) = (content, filename) else {
        return Err(ApiError::invalid_param(
            "file",
            "`file` is missing from the form",
        ));
    };
    let purpose = purpose
        .ok_or_else(|| ApiError::invalid_param("purpose", "`purpose` is missing from the form"))?;
    if !PURPOSES.contains(&purpose.as_str()) {
        return Err(ApiError::invalid_param(
            "purpose",
            format!(
                "`purpose` = `{purpose}`: expected one of {}",
                PURPOSES.join(", ")
            ),
        ));
    }
    let record = FileRecord {
        id: new_id("file"),
        filename,
        purpose,
        bytes: content.len() as u64,
        created_at: now(),
    };
    let dir = app.file_dir(&record.id);
    let write = async {
        tokio::fs::create_dir_all(&dir).await?;
        tokio::fs::write(dir.join(&record.filename), &content).await
    };
    write.await.map_err(|e| {
        tracing::error!("storing upload {} in {}: {e}", record.id, dir.display());
        ApiError::new(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "the file could not be stored; see the server log",
        )
    })?;
    app.records.add_file(tenant.as_str(), &record)?;
    Ok(Json(file_json(&record)))
}

#[derive(Debug, Deserialize)]
pub struct ListFiles {
    purpose: Option<String>,
}

pub async fn list(
    State(app): State<AppState>,
    Extension(tenant): Extension<Tenant>,
    Query(query): Query<ListFiles>,
) -> Result<Json<Value>, ApiError> {
    let files = app
        .records
        .files(tenant.as_str(), query.purpose.as_deref())?;
    Ok(Json(crate::routes::page(
        files.iter().map(file_json).collect(),
    )))
}

pub async fn get(
    State(app): State<AppState>,
    Extension(tenant): Extension<Tenant>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(file_json(&app.records.file(tenant.as_str(), &id)?)))
}

pub async fn content(
    State(app): State<AppState>,
    Extension(tenant): Extension<Tenant>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let file = app.records.file(tenant.as_str(), &id)?;
    let bytes = tokio::fs::read(app.file_dir(&id).join(&file.filename))
        .await
        .map_err(|e| {
            tracing::error!("reading file {id}: {e}");
            ApiError::new(
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                "the file's content could not be read; see the server log",
            )
        })?;
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response())
}

pub async fn delete(
    State(app): State<AppState>,
    Extension(tenant): Extension<Tenant>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    app.records.file(tenant.as_str(), &id)?;
    // Its chunks leave the tenant's stores first, so nothing cites a file that is gone.
    for store in app.records.stores(tenant.as_str())? {
        if app.records.store_file(&store.id, &id).is_ok() {
            crate::vector_stores::detach(&app, &store, &id).await?;
        }
    }
    app.records.delete_file(tenant.as_str(), &id)?;
    if let Err(e) = tokio::fs::remove_dir_all(app.file_dir(&id)).await {
        tracing::warn!("removing file {id}'s bytes: {e}");
    }
    Ok(Json(json!({"id": id, "object": "file", "deleted": true})))
}
