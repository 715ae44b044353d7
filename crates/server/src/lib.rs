//! The HTTP server: an OpenAI- and Llama-Stack-compatible API over a [`Stack`], so that existing
//! clients (OpenAI's and Llama Stack's SDKs) work unchanged. `corral serve` runs it.
//!
//! The only crate that knows our API's wire JSON ([`openai`]); handlers translate it to the
//! core vocabulary and call the stack's providers. Routes are served under `/v1` and, for
//! clients of Llama Stack 0.2 (which call its OpenAI-compatible routes there), under
//! `/v1/openai/v1` too. Errors come in OpenAI's shape ([`error`]); with API keys configured,
//! every route but `/v1/health` needs `Authorization: Bearer <key>` ([`auth`]).

pub mod auth;
pub(crate) mod conversations;
pub mod error;
mod files;
mod filters;
mod metrics;
pub mod openai;
mod openapi;
mod responses;
mod routes;
mod state;
mod vector_stores;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, Method};
use axum::routing::{get, post};
use corral_memory::EmbeddedStore;
use corral_stack::{ServerSettings, Stack};
use tower_http::cors::{AllowOrigin, Any, CorsLayer};
use tower_http::timeout::TimeoutLayer;

pub use auth::{Auth, Tenant};
pub use error::ApiError;

/// The routes served, as `(method, path)`, under `/v1` (those of OpenAI's API also under
/// `/v1/openai/v1`). `GET /v1/inspect/routes` lists them.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/v1/health"),
    ("GET", "/v1/version"),
    ("GET", "/v1/models"),
    ("GET", "/v1/models/{model_id}"),
    ("GET", "/v1/providers"),
    ("GET", "/v1/inspect/routes"),
    ("POST", "/v1/chat/completions"),
    ("POST", "/v1/completions"),
    ("POST", "/v1/embeddings"),
    ("POST", "/v1/moderations"),
    ("GET", "/v1/shields"),
    ("POST", "/v1/safety/run-shield"),
    ("GET", "/v1/tools"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
    ("POST", "/v1/files"),
    ("GET", "/v1/files"),
    ("GET", "/v1/files/{file_id}"),
    ("DELETE", "/v1/files/{file_id}"),
    ("GET", "/v1/files/{file_id}/content"),
    ("POST", "/v1/vector_stores"),
    ("GET", "/v1/vector_stores"),
    ("GET", "/v1/vector_stores/{vector_store_id}"),
    ("POST", "/v1/vector_stores/{vector_store_id}"),
    ("DELETE", "/v1/vector_stores/{vector_store_id}"),
    ("POST", "/v1/vector_stores/{vector_store_id}/search"),
    ("POST", "/v1/vector_stores/{vector_store_id}/files"),
    ("GET", "/v1/vector_stores/{vector_store_id}/files"),
    ("GET", "/v1/vector_stores/{vector_store_id}/files/{file_id}"),
    (
        "POST",
        "/v1/vector_stores/{vector_store_id}/files/{file_id}",
    ),
    (
        "DELETE",
        "/v1/vector_stores/{vector_store_id}/files/{file_id}",
    ),
    ("POST", "/v1/vector_stores/{vector_store_id}/file_batches"),
    (
        "GET",
        "/v1/vector_stores/{vector_store_id}/file_batches/{batch_id}",
    ),
];

/// What the handlers share: the stack, the server's records, and where it keeps files and
/// vector stores.
#[derive(Debug)]
pub struct App {
    pub stack: Arc<Stack>,
    records: state::Records,
    data_dir: PathBuf,
    open_stores: Mutex<HashMap<String, Arc<EmbeddedStore>>>,
    metrics: metrics::Metrics,
}

impl App {
    /// Opens (creating) the server's data directory and its records.
    pub fn open(stack: Arc<Stack>, data_dir: &Path) -> Result<Self, ServeError> {
        let problem = |e: String| ServeError::Config(format!("server.data_dir: {e}"));
        std::fs::create_dir_all(data_dir)
            .map_err(|e| problem(format!("{}: {e}", data_dir.display())))?;
        let data_dir = data_dir
            .canonicalize()
            .map_err(|e| problem(format!("{}: {e}", data_dir.display())))?;
        let records = state::Records::open(&data_dir.join("server.sqlite")).map_err(problem)?;
        Ok(Self {
            stack,
            records,
            data_dir,
            open_stores: Mutex::new(HashMap::new()),
            metrics: metrics::Metrics::default(),
        })
    }

    fn file_dir(&self, id: &str) -> PathBuf {
        self.data_dir.join("files").join(id)
    }
}

/// The prefix Llama Stack 0.2's clients put before OpenAI's routes.
pub const OPENAI_ALIAS: &str = "/v1/openai/v1";

/// Why a server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{0}")]
    Config(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the server stopped: {0}")]
    Io(#[from] std::io::Error),
}

/// The API's routes over `app`, with `auth` and the limits of `settings`.
pub fn router(app: Arc<App>, auth: Auth, settings: &ServerSettings) -> Router {
    let mut api = Router::new();
    for prefix in ["/v1", OPENAI_ALIAS] {
        api = api
            .route(&format!("{prefix}/models"), get(routes::list_models))
            .route(
                &format!("{prefix}/models/:model_id"),
                get(routes::get_model),
            )
            .route(
                &format!("{prefix}/chat/completions"),
                post(routes::chat_completions),
            )
            .route(&format!("{prefix}/completions"), post(routes::completions))
            .route(&format!("{prefix}/embeddings"), post(routes::embeddings))
            .route(&format!("{prefix}/moderations"), post(routes::moderations))
            .route(
                &format!("{prefix}/files"),
                post(files::upload).get(files::list),
            )
            .route(
                &format!("{prefix}/files/:file_id"),
                get(files::get).delete(files::delete),
            )
            .route(
                &format!("{prefix}/files/:file_id/content"),
                get(files::content),
            )
            .route(
                &format!("{prefix}/vector_stores"),
                post(vector_stores::create).get(vector_stores::list),
            )
            .route(
                &format!("{prefix}/vector_stores/:store_id"),
                get(vector_stores::get)
                    .post(vector_stores::update)
                    .delete(vector_stores::delete),
            )
            .route(
                &format!("{prefix}/vector_stores/:store_id/search"),
                post(vector_stores::search),
            )
            .route(
                &format!("{prefix}/vector_stores/:store_id/files"),
                post(vector_stores::attach_file).get(vector_stores::list_files),
            )
            .route(
                &format!("{prefix}/vector_stores/:store_id/files/:file_id"),
                get(vector_stores::get_file)
                    .post(vector_stores::update_file)
                    .delete(vector_stores::delete_file),
            )
            .route(
                &format!("{prefix}/vector_stores/:store_id/file_batches"),
                post(vector_stores::create_batch),
            )
            .route(
                &format!("{prefix}/vector_stores/:store_id/file_batches/:batch_id"),
                get(vector_stores::get_batch),
            )
            .route(&format!("{prefix}/responses"), post(responses::create))
            .route(
                &format!("{prefix}/responses/:response_id"),
                get(responses::get).delete(responses::delete),
            )
            .route(
                &format!("{prefix}/responses/:response_id/input_items"),
                get(responses::input_items),
            )
            .route(
                &format!("{prefix}/conversations"),
                post(conversations::create),
            )
            .route(
                &format!("{prefix}/conversations/:conversation_id"),
                get(conversations::get)
                    .post(conversations::update)
                    .delete(conversations::delete),
            )
            .route(
                &format!("{prefix}/conversations/:conversation_id/items"),
                post(conversations::add_items).get(conversations::list_items),
            )
            .route(
                &format!("{prefix}/conversations/:conversation_id/items/:item_id"),
                get(conversations::get_item).delete(conversations::delete_item),
            );
    }
    let api = api
        .route("/v1/version", get(routes::version))
        .route("/v1/providers", get(routes::list_providers))
        .route("/v1/inspect/routes", get(routes::inspect_routes))
        .route("/v1/shields", get(routes::list_shields))
        .route("/v1/safety/run-shield", post(routes::run_shield))
        .route("/v1/tools", get(routes::list_tools))
        .route("/metrics", get(metrics::render))
        .route("/openapi.json", get(openapi::serve))
        .fallback(routes::not_found)
        .route_layer(axum::middleware::from_fn_with_state(
            auth,
            auth::authenticate,
        ));
    let timeout = Duration::from_secs_f64(settings.request_timeout_secs);
    let mut app = Router::new()
        .route("/v1/health", get(routes::health))
        .merge(api)
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            metrics::record,
        ))
        .with_state(app)
        .layer(DefaultBodyLimit::max(settings.max_body_bytes))
        .layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::GATEWAY_TIMEOUT,
            timeout,
        ));
    if let Some(cors) = cors(&settings.cors_origins) {
        app = app.layer(cors);
    }
    app
}

fn cors(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET, Method::POST, Method::DELETE, Method::OPTIONS])
            .allow_headers(Any),
    )
}

/// Serves `stack` on `listener` until `shutdown` resolves; requests in flight (streams
/// included) are then allowed to finish.
pub async fn serve(
    stack: Arc<Stack>,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let settings = stack.config().server.clone();
    let addr = listener.local_addr()?;
    let auth = Auth::from_settings(&settings, addr.ip()).map_err(ServeError::Config)?;
    let data_dir = settings
        .data_dir
        .clone()
        .unwrap_or_else(|| corral_memory::embedded::default_data_dir().join("server"));
    let app = Arc::new(App::open(stack, &data_dir)?);
    let app = router(app, auth, &settings);
    tracing::info!(%addr, "serving");
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    // Each streamed event is a small write: without this, Nagle's algorithm holds every one
    // after the first until the client's delayed ACK (about 40 ms on Linux).
    .tcp_nodelay(true)
    .with_graceful_shutdown(shutdown)
    .await?;
    Ok(())
}

/// Binds `host:port` (from the config's `[server]` unless given).
pub async fn bind(host: &str, port: u16) -> Result<tokio::net::TcpListener, ServeError> {
    let addr = format!("{host}:{port}");
    tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })
}
