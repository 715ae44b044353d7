//! The HTTP server: an OpenAI- and Llama-Stack-compatible API over a [`Stack`], so that existing
//! clients (OpenAI's and Llama Stack's SDKs) work unchanged. `corral serve` runs it.
//!
//! The only crate that knows our API's wire JSON ([`openai`]); handlers translate it to the
//! core vocabulary and call the stack's providers. Routes are served under `/v1` and, for
//! clients of Llama Stack 0.2 (which call its OpenAI-compatible routes there), under
//! `/v1/openai/v1` too. Errors come in OpenAI's shape ([`error`]); with API keys configured,
//! every route but `/v1/health` needs `Authorization: Bearer <key>` ([`auth`]).

pub mod auth;
pub mod error;
pub mod openai;
mod routes;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, Method};
use axum::routing::{get, post};
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
];

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

/// The API's routes over `stack`, with `auth` and the limits of `settings`.
pub fn router(stack: Arc<Stack>, auth: Auth, settings: &ServerSettings) -> Router {
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
            .route(&format!("{prefix}/moderations"), post(routes::moderations));
    }
    let api = api
        .route("/v1/version", get(routes::version))
        .route("/v1/providers", get(routes::list_providers))
        .route("/v1/inspect/routes", get(routes::inspect_routes))
        .route("/v1/shields", get(routes::list_shields))
        .route("/v1/safety/run-shield", post(routes::run_shield))
        .route("/v1/tools", get(routes::list_tools))
        .fallback(routes::not_found)
        .route_layer(axum::middleware::from_fn_with_state(
            auth,
            auth::authenticate,
        ));
    let timeout = Duration::from_secs_f64(settings.request_timeout_secs);
    let mut app = Router::new()
        .route("/v1/health", get(routes::health))
        .merge(api)
        .with_state(stack)
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
    let app = router(stack, auth, &settings);
    tracing::info!(%addr, "serving");
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
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
