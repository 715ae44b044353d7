//! `/v1/vector_stores`: OpenAI's vector stores, each an embedded store of ours under the data
//! directory, owned by a tenant. Attaching a file ingests it with the memory pipeline (load,
//! chunk with the request's strategy, embed, store) before the answer; search is hybrid by
//! default and answers in OpenAI's result shape, each hit naming its file.

use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::{Extension, Json};
use corral_core::{Filter, Fusion, SearchMode, SearchQuery, VectorStore};
use corral_memory::ingest::NoProgress;
use corral_memory::{ChunkConfig, EmbeddedStore, IngestOptions, Ingestor};
use corral_stack::ModelKind;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::Tenant;
use crate::error::{ApiError, Body};
use crate::filters::AttributeFilter;
use crate::routes::{AppState, new_id, now, page};
use crate::state::{StoreFileRecord, StoreRecord};

/// A failure of ours (not the request's): logged in full, answered in summary.
pub fn internal_error(what: &str, e: impl std::fmt::Display) -> ApiError {
    tracing::error!("{what}: {e}");
    ApiError::new(
        axum::http::StatusCode::INTERNAL_SERVER_ERROR,
        format!("{what} failed; see the server log"),
    )
}

fn store_json(app: &crate::App, store: &StoreRecord) -> Result<Value, ApiError> {
    let files = app.records.store_files(&store.id)?;
    let count = |status: &str| files.iter().filter(|f| f.status == status).count();
    Ok(json!({
        "id": store.id,
        "object": "vector_store",
        "created_at": store.created_at,
        "name": store.name,
        "usage_bytes": 0,
        "file_counts": {
            "in_progress": count("in_progress"),
            "completed": count("completed"),
            "failed": count("failed"),
            "cancelled": 0,
            "total": files.len(),
        },
        "status": "completed",
        "expires_after": null,
        "expires_at": null,
        "last_active_at": store.created_at,
        "metadata": store.metadata,
        "embedding_model": store.embedding_model,
        "embedding_dimension": store.dimension,
    }))
}

fn store_file_json(store_id: &str, file: &StoreFileRecord) -> Value {
    json!({
        "id": file.file_id,
        "object": "vector_store.file",
        "created_at": file.created_at,
        "vector_store_id": store_id,
        "status": file.status,
        "last_error": file.last_error.as_ref().map(|m| json!({"code": "server_error", "message": m})),
        "usage_bytes": 0,
        "chunking_strategy": file.chunking,
        "attributes": file.attributes,
    })
}

/// OpenAI's chunking strategy as ours: `auto` (our defaults) or `static` with
/// `max_chunk_size_tokens` and `chunk_overlap_tokens`.
fn chunking(strategy: Option<&Value>) -> Result<(ChunkConfig, Value), ApiError> {
    let Some(strategy) = strategy.filter(|s| s.get("type").and_then(Value::as_str) != Some("auto"))
    else {
        let c = ChunkConfig::default();
        return Ok((c, json!({"type": "auto"})));
    };
    let bad =
        |m: &str| ApiError::invalid_param("chunking_strategy", format!("`chunking_strategy`: {m}"));
    if strategy.get("type").and_then(Value::as_str) != Some("static") {
        return Err(bad("`type` must be auto or static"));
    }
    let number = |key: &str| {
        strategy
            .pointer(&format!("/static/{key}"))
            .and_then(Value::as_u64)
            .map(|n| n as usize)
            .ok_or_else(|| bad(&format!("`static.{key}` must be a whole number")))
    };
    let config = ChunkConfig {
        max_tokens: number("max_chunk_size_tokens")?,
        overlap_tokens: number("chunk_overlap_tokens")?,
    };
    config.validate().map_err(|m| bad(&m))?;
    Ok((config, strategy.clone()))
}

impl crate::App {
    fn store_dir(&self, id: &str) -> PathBuf {
        self.data_dir.join("vector_stores").join(id)
    }

    /// The open store behind a record (opened once, then shared).
    fn open_store(&self, store: &StoreRecord) -> Result<Arc<EmbeddedStore>, ApiError> {
        let mut open = self
            .open_stores
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(s) = open.get(&store.id) {
            return Ok(s.clone());
        }
        let s = Arc::new(
            EmbeddedStore::open(&self.store_dir(&store.id), store.dimension)
                .map_err(|e| internal_error(&format!("opening vector store {}", store.id), e))?,
        );
        open.insert(store.id.clone(), s.clone());
        Ok(s)
    }
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct CreateStore {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    file_ids: Vec<String>,
    #[serde(default)]
    metadata: Option<Value>,
    #[serde(default)]
    chunking_strategy: Option<Value>,
    /// Llama Stack's extension: the embedding model (default: the config's first).
    #[serde(default)]
    embedding_model: Option<String>,
}

pub async fn create(
    State(app): State<AppState>,
    Extension(tenant): Extension<Tenant>,
    Body(request): Body<CreateStore>,
) -> Result<Json<Value>, ApiError> {
    let routes = app.stack.routes();
    let model = match &request.embedding_model {
        Some(m) => routes
            .iter()
            .find(|r| &r.model == m && r.kind == ModelKind::Embedding)
            .ok_or_else(|| {
                ApiError::invalid_param(
                    "embedding_model",
                    format!("`embedding_model` = `{m}` is not a configured embedding model"),
                )
            })?,
        None => routes
            .iter()
            .find(|r| r.kind == ModelKind::Embedding)
            .ok_or_else(|| {
                ApiError::invalid(
                    "no embedding model is configured, so no vector store can be made",
                )
            })?,
    };
    let embedder = app
        .stack
        .embedder(&model.model)
        .await
        .map_err(|e| ApiError::from_capability(&e))?;
    chunking(request.chunking_strategy.as_ref())?;
    for id in &request.file_ids {
        app.records
            .file(tenant.as_str(), id)
            .map_err(|e| e.param_of("file_ids"))?;
    }
    let record = StoreRecord {
        id: new_id("vs"),
        name: request.name.unwrap_or_default(),
        embedding_model: model.model.clone(),
        dimension: embedder.dimension(),
        metadata: request.metadata.unwrap_or_else(|| json!({})),
        created_at: now(),
    };
    app.records.add_store(tenant.as_str(), &record)?;
    for id in &request.file_ids {
        attach(
            &app,
            &tenant,
            &record,
            id,
            json!({}),
            request.chunking_strategy.as_ref(),
        )
        .await?;
    }
    Ok(Json(store_json(&app, &record)?))
}

pub async fn list(
    State(app): State<AppState>,
    Extension(tenant): Extension<Tenant>,
) -> Result<Json<Value>, ApiError> {
    let stores = app.records.stores(tenant.as_str())?;
    let data = stores
        .iter()
        .map(|s| store_json(&app, s))
        .collect::<Result<_, _>>()?;
    Ok(Json(page(data)))
}

pub async fn get(
    State(app): State<AppState>,
    Extension(tenant): Extension<Tenant>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let store = app.records.store(tenant.as_str(), &id)?;
    Ok(Json(store_json(&app, &store)?))
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct UpdateStore {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    metadata: Option<Value>,
}

pub async fn update(
    State(app): State<AppState>,
    Extension(tenant): Extension<Tenant>,
    Path(id): Path<String>,
    Body(request): Body<UpdateStore>,
) -> Result<Json<Value>, ApiError> {
    app.records.update_store(
        tenant.as_str(),
        &id,
        request.name.as_deref(),
        request.metadata.as_ref(),
    )?;
    let store = app.records.store(tenant.as_str(), &id)?;
    Ok(Json(store_json(&app, &store)?))
}

pub async fn delete(
    State(app): State<AppState>,
    Extension(tenant): Extension<Tenant>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    app.records.store(tenant.as_str(), &id)?;
    app.open_stores
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .remove(&id);
    app.records.delete_store(tenant.as_str(), &id)?;
    if let Err(e) = tokio::fs::remove_dir_all(app.store_dir(&id)).await {
        tracing::warn!("removing vector store {id}'s directory: {e}");
    }
    Ok(Json(
        json!({"id": id, "object": "vector_store.deleted", "deleted": true}),
    ))
}

/// Ingests file `file_id` into `store` and records how it went. A file that cannot be read
/// is recorded as `failed` with the loader's message; a store or embedder failure is an error.
async fn attach(
    app: &crate::App,
    tenant: &Tenant,
    store: &StoreRecord,
    file_id: &str,
    attributes: Value,
    strategy: Option<&Value>,
) -> Result<StoreFileRecord, ApiError> {
    let file = app
        .records
        .file(tenant.as_str(), file_id)
        .map_err(|e| e.param_of("file_id"))?;
    let (chunk_config, chunking) = chunking(strategy)?;
    let embedder = app
        .stack
        .embedder(&store.embedding_model)
        .await
        .map_err(|e| ApiError::from_capability(&e))?;
    let target: Arc<dyn VectorStore> = app.open_store(store)?;
    let options = IngestOptions {
        chunking: chunk_config,
        ..IngestOptions::default()
    };
    let ingestor = Ingestor::new(target, embedder, options)
        .map_err(|e| ApiError::invalid_param("chunking_strategy", e.to_string()))?;
    let path = app.file_dir(file_id).join(&file.filename);
    let report = ingestor.ingest_paths(&[path], &NoProgress).await;
    let (status, last_error, chunks) = match report {
        Ok(report) => match report.failed.first() {
            // The loader's message names our path; the client knows the file by its name.
            Some(failure) => (
                "failed",
                Some(format!("{}: {}", file.filename, failure.problem)),
                0,
            ),
            None if report.chunks == 0 && report.unchanged == 0 => (
                "failed",
                Some(format!("{}: no text could be read from it", file.filename)),
                0,
            ),
            None => ("completed", None, report.chunks as u64),
        },
        Err(e) => return Err(internal_error(&format!("ingesting {file_id}"), e)),
    };
    let record = StoreFileRecord {
        file_id: file_id.to_string(),
        status: status.to_string(),
        last_error,
        chunks,
        attributes,
        chunking,
        created_at: now(),
    };
    app.records.put_store_file(&store.id, &record)?;
    Ok(record)
}

/// Removes a file's chunks from a store and the record of it.
pub async fn detach(app: &crate::App, store: &StoreRecord, file_id: &str) -> Result<(), ApiError> {
    let file_dir = app.file_dir(file_id);
    let mut names = match tokio::fs::read_dir(&file_dir).await {
        Ok(names) => names,
        Err(e) => {
            return Err(internal_error(
                &format!("reading {}", file_dir.display()),
                e,
            ));
        }
    };
    let target = app.open_store(store)?;
    while let Ok(Some(entry)) = names.next_entry().await {
        let id = corral_memory::ingest::document_id(&entry.path());
        target
            .delete_document(&id)
            .await
            .map_err(|e| internal_error(&format!("removing {file_id} from {}", store.id), e))?;
    }
    app.records.delete_store_file(&store.id, file_id)?;
    Ok(())
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct AttachFile {
    file_id: String,
    #[serde(default)]
    attributes: Option<Value>,
    #[serde(default)]
    chunking_strategy: Option<Value>,
}

pub async fn attach_file(
    State(app): State<AppState>,
    Extension(tenant): Extension<Tenant>,
    Path(id): Path<String>,
    Body(request): Body<AttachFile>,
) -> Result<Json<Value>, ApiError> {
    let store = app.records.store(tenant.as_str(), &id)?;
    let record = attach(
        &app,
        &tenant,
        &store,
        &request.file_id,
        attributes(request.attributes, "attributes")?,
        request.chunking_strategy.as_ref(),
    )
    .await?;
    Ok(Json(store_file_json(&store.id, &record)))
}

pub async fn list_files(
    State(app): State<AppState>,
    Extension(tenant): Extension<Tenant>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let store = app.records.store(tenant.as_str(), &id)?;
    let files = app.records.store_files(&store.id)?;
    Ok(Json(page(
        files
            .iter()
            .map(|f| store_file_json(&store.id, f))
            .collect(),
    )))
}

pub async fn get_file(
    State(app): State<AppState>,
    Extension(tenant): Extension<Tenant>,
    Path((id, file_id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let store = app.records.store(tenant.as_str(), &id)?;
    let file = app.records.store_file(&store.id, &file_id)?;
    Ok(Json(store_file_json(&store.id, &file)))
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct UpdateFile {
    /// The file's new attributes (they replace the old ones).
    attributes: Value,
}

/// Replaces an attached file's attributes; searches filter on them from then on.
pub async fn update_file(
    State(app): State<AppState>,
    Extension(tenant): Extension<Tenant>,
    Path((id, file_id)): Path<(String, String)>,
    Body(request): Body<UpdateFile>,
) -> Result<Json<Value>, ApiError> {
    let store = app.records.store(tenant.as_str(), &id)?;
    let mut file = app.records.store_file(&store.id, &file_id)?;
    file.attributes = attributes(Some(request.attributes), "attributes")?;
    app.records.put_store_file(&store.id, &file)?;
    Ok(Json(store_file_json(&store.id, &file)))
}

/// OpenAI's limits on a file's attributes: an object of at most 16 keys (each up to 64
/// characters) whose values are strings (up to 512 characters), numbers or booleans.
fn attributes(value: Option<Value>, param: &str) -> Result<Value, ApiError> {
    let value = value.unwrap_or_else(|| json!({}));
    if value.is_null() {
        return Ok(json!({}));
    }
    let Some(map) = value.as_object() else {
        return Err(ApiError::invalid_param(
            param,
            format!("`{param}` must be an object"),
        ));
    };
    if map.len() > 16 {
        return Err(ApiError::invalid_param(
            param,
            format!("`{param}` has {} keys; at most 16 are allowed", map.len()),
        ));
    }
    for (key, item) in map {
        let fits = match item {
            Value::String(text) => text.chars().count() <= 512,
            Value::Number(_) | Value::Bool(_) => true,
            _ => false,
        };
        if key.chars().count() > 64 || !fits {
            return Err(ApiError::invalid_param(
                &format!("{param}.{key}"),
                format!(
                    "`{param}.{key}`: keys are up to 64 characters, values strings of up to 512 characters, numbers or booleans"
                ),
            ));
        }
    }
    Ok(value)
}

pub async fn delete_file(
    State(app): State<AppState>,
    Extension(tenant): Extension<Tenant>,
    Path((id, file_id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let store = app.records.store(tenant.as_str(), &id)?;
    app.records.store_file(&store.id, &file_id)?;
    detach(&app, &store, &file_id).await?;
    Ok(Json(
        json!({"id": file_id, "object": "vector_store.file.deleted", "deleted": true}),
    ))
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct CreateBatch {
    file_ids: Vec<String>,
    #[serde(default)]
    attributes: Option<Value>,
    #[serde(default)]
    chunking_strategy: Option<Value>,
}

fn batch_json(
    app: &crate::App,
    store_id: &str,
    id: &str,
    file_ids: &[String],
    created_at: u64,
) -> Result<Value, ApiError> {
    let files = app.records.store_files(store_id)?;
    let mine: Vec<_> = files
        .iter()
        .filter(|f| file_ids.contains(&f.file_id))
        .collect();
    let count = |status: &str| mine.iter().filter(|f| f.status == status).count();
    let in_progress = file_ids.len().saturating_sub(mine.len()) + count("in_progress");
    Ok(json!({
        "id": id,
        "object": "vector_store.file_batch",
        "created_at": created_at,
        "vector_store_id": store_id,
        "status": if in_progress > 0 { "in_progress" } else { "completed" },
        "file_counts": {
            "in_progress": in_progress,
            "completed": count("completed"),
            "failed": count("failed"),
            "cancelled": 0,
            "total": file_ids.len(),
        },
    }))
}

/// Attaches every file, one after another, then answers with the batch (complete by then).
pub async fn create_batch(
    State(app): State<AppState>,
    Extension(tenant): Extension<Tenant>,
    Path(id): Path<String>,
    Body(request): Body<CreateBatch>,
) -> Result<Json<Value>, ApiError> {
    let store = app.records.store(tenant.as_str(), &id)?;
    if request.file_ids.is_empty() {
        return Err(ApiError::invalid_param("file_ids", "`file_ids` is empty"));
    }
    let attributes = attributes(request.attributes, "attributes")?;
    for file_id in &request.file_ids {
        app.records
            .file(tenant.as_str(), file_id)
            .map_err(|e| e.param_of("file_ids"))?;
    }
    let batch_id = new_id("vsfb");
    let created_at = now();
    app.records
        .add_batch(&batch_id, &store.id, &request.file_ids, created_at)?;
    for file_id in &request.file_ids {
        attach(
            &app,
            &tenant,
            &store,
            file_id,
            attributes.clone(),
            request.chunking_strategy.as_ref(),
        )
        .await?;
    }
    Ok(Json(batch_json(
        &app,
        &store.id,
        &batch_id,
        &request.file_ids,
        created_at,
    )?))
}

pub async fn get_batch(
    State(app): State<AppState>,
    Extension(tenant): Extension<Tenant>,
    Path((id, batch_id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let store = app.records.store(tenant.as_str(), &id)?;
    let (file_ids, created_at) = app.records.batch(&store.id, &batch_id)?;
    Ok(Json(batch_json(
        &app, &store.id, &batch_id, &file_ids, created_at,
    )?))
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct Search {
    query: crate::openai::OneOrMany,
    #[serde(default)]
    max_num_results: Option<usize>,
    #[serde(default)]
    filters: Option<Value>,
    #[serde(default)]
    ranking_options: Option<Value>,
    /// Llama Stack's extension: vector, keyword or hybrid (the default).
    #[serde(default)]
    search_mode: Option<String>,
}

pub async fn search(
    State(app): State<AppState>,
    Extension(tenant): Extension<Tenant>,
    Path(id): Path<String>,
    Body(request): Body<Search>,
) -> Result<Json<Value>, ApiError> {
    let store = app.records.store(tenant.as_str(), &id)?;
    let filter = request
        .filters
        .as_ref()
        .filter(|f| !f.is_null())
        .map(|f| AttributeFilter::parse(f, "filters"))
        .transpose()
        .map_err(ApiError::from)?;
    let top_k = request.max_num_results.unwrap_or(10);
    if !(1..=50).contains(&top_k) {
        return Err(ApiError::invalid_param(
            "max_num_results",
            "`max_num_results` must be 1 to 50",
        ));
    }
    let mode = match request.search_mode.as_deref() {
        None | Some("hybrid") => SearchMode::Hybrid,
        Some("vector") => SearchMode::Vector,
        Some("keyword") => SearchMode::Keyword,
        Some(other) => {
            return Err(ApiError::invalid_param(
                "search_mode",
                format!("`search_mode` = `{other}`: expected vector, keyword or hybrid"),
            ));
        }
    };
    let min_score = request
        .ranking_options
        .as_ref()
        .and_then(|r| r.get("score_threshold"))
        .and_then(Value::as_f64)
        .map(|s| s as f32);
    let queries = request.query.into_vec();
    let text = queries.join(" ");
    if text.trim().is_empty() {
        return Err(ApiError::invalid_param("query", "`query` is empty"));
    }
    let hits = search_store(
        &app,
        &tenant,
        &store,
        &StoreSearch {
            text: &text,
            top_k,
            mode,
            min_score,
            filter: filter.as_ref(),
        },
    )
    .await?;
    let data: Vec<Value> = hits
        .into_iter()
        .map(|hit| {
            json!({
                "file_id": hit.file_id,
                "filename": hit.filename,
                "score": hit.score,
                "attributes": hit.attributes,
                "content": [{"type": "text", "text": hit.text}],
                "pages": hit.pages,
            })
        })
        .collect();
    Ok(Json(json!({
        "object": "vector_store.search_results.page",
        "search_query": queries,
        "data": data,
        "has_more": false,
        "next_page": null,
    })))
}

/// A passage found in a vector store, with the file it came from.
#[derive(Debug, Clone)]
pub struct FoundPassage {
    pub file_id: String,
    pub filename: String,
    pub score: f32,
    pub attributes: Value,
    pub text: String,
    pub pages: Option<corral_core::PageRange>,
}

/// One search of a store.
pub struct StoreSearch<'a> {
    pub text: &'a str,
    pub top_k: usize,
    pub mode: SearchMode,
    pub min_score: Option<f32>,
    /// Only passages of files whose attributes pass.
    pub filter: Option<&'a AttributeFilter>,
}

/// Searches `store` (embedding the text unless the search is by keyword).
pub async fn search_store(
    app: &crate::App,
    tenant: &Tenant,
    store: &StoreRecord,
    search: &StoreSearch<'_>,
) -> Result<Vec<FoundPassage>, ApiError> {
    let files = app.records.store_files(&store.id)?;
    // Attributes are the server's, per file: a filter becomes the list of files that pass.
    let filter = match search.filter {
        None => None,
        Some(filter) => {
            let mut sources = Vec::new();
            for file in files.iter().filter(|f| filter.matches(&f.attributes)) {
                let record = match app.records.file(tenant.as_str(), &file.file_id) {
                    Ok(record) => record,
                    // Deleted since it was attached: its passages went with it.
                    Err(e) if e.status == axum::http::StatusCode::NOT_FOUND => continue,
                    Err(e) => return Err(e),
                };
                let source = app.file_dir(&file.file_id).join(&record.filename);
                sources.push(Value::String(source.to_string_lossy().into_owned()));
            }
            if sources.is_empty() {
                return Ok(Vec::new());
            }
            Some(Filter::In {
                key: "source".to_string(),
                values: sources,
            })
        }
    };
    let embedding = if search.mode == SearchMode::Keyword {
        None
    } else {
        let embedder = app
            .stack
            .embedder(&store.embedding_model)
            .await
            .map_err(|e| ApiError::from_capability(&e))?;
        let mut vectors = embedder
            .embed(&[search.text.to_string()])
            .await
            .map_err(|e| ApiError::from_capability(&e))?;
        Some(
            vectors
                .pop()
                .ok_or_else(|| internal_error("embedding the query", "no vector"))?,
        )
    };
    let target = app.open_store(store)?;
    let hits = target
        .search(&SearchQuery {
            text: search.text.to_string(),
            embedding,
            mode: search.mode,
            fusion: Fusion::default(),
            filter,
            top_k: search.top_k,
            min_score: search.min_score,
        })
        .await
        .map_err(|e| ApiError::from_capability(&e))?;
    Ok(hits
        .into_iter()
        .map(|hit| {
            let path = std::path::Path::new(&hit.chunk.source);
            let file_id = path
                .parent()
                .and_then(|p| p.file_name())
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let filename = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let attributes = files
                .iter()
                .find(|f| f.file_id == file_id)
                .map_or_else(|| json!({}), |f| f.attributes.clone());
            FoundPassage {
                file_id,
                filename,
                score: hit.score,
                attributes,
                text: hit.chunk.text,
                pages: hit.chunk.pages,
            }
        })
        .collect())
}
