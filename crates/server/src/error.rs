//! Errors in the OpenAI shape: `{"error": {"message", "type", "param", "code"}}` with the HTTP
//! status OpenAI's clients map to their exception types. Messages say what was wrong with the
//! request; provider failures are summarised by kind, never with their internal detail.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use corral_core::{CapabilityError, ErrorKind};
use serde_json::json;

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// The request field at fault, where there is one.
    pub param: Option<String>,
    pub code: Option<&'static str>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            param: None,
            code: None,
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// A bad value in field `param`.
    pub fn invalid_param(param: &str, message: impl Into<String>) -> Self {
        Self {
            param: Some(param.to_string()),
            ..Self::invalid(message)
        }
    }

    pub fn not_found(what: &str, id: &str) -> Self {
        Self {
            code: Some("not_found"),
            ..Self::new(StatusCode::NOT_FOUND, format!("{what} `{id}` not found"))
        }
    }

    pub fn param_of(mut self, param: &str) -> Self {
        self.param = Some(param.to_string());
        self
    }

    pub fn with_code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }

    /// A failure of a provider call, classified by its kind. Invalid requests and context
    /// limits keep their message (it is about the caller's input); others are summarised, and
    /// the full error goes to the log.
    pub fn from_capability<E: CapabilityError + std::fmt::Display>(error: &E) -> Self {
        let kind = error.kind();
        let (status, message, code) = match kind {
            ErrorKind::InvalidRequest => (StatusCode::BAD_REQUEST, error.to_string(), None),
            ErrorKind::ContextLengthExceeded => (
                StatusCode::BAD_REQUEST,
                error.to_string(),
                Some("context_length_exceeded"),
            ),
            ErrorKind::RateLimited => (
                StatusCode::TOO_MANY_REQUESTS,
                "the model provider is rate limiting; try again later".to_string(),
                Some("rate_limit_exceeded"),
            ),
            ErrorKind::Timeout => (
                StatusCode::GATEWAY_TIMEOUT,
                "the model provider did not answer in time".to_string(),
                Some("timeout"),
            ),
            ErrorKind::Transient => (
                StatusCode::SERVICE_UNAVAILABLE,
                "the model provider is unavailable; try again later".to_string(),
                Some("provider_unavailable"),
            ),
            ErrorKind::Auth => (
                StatusCode::BAD_GATEWAY,
                "the server's credentials for the model provider were refused".to_string(),
                Some("provider_auth"),
            ),
            ErrorKind::Permanent => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the provider failed; see the server log".to_string(),
                Some("provider_error"),
            ),
        };
        if status.is_server_error() || status == StatusCode::BAD_GATEWAY {
            tracing::warn!(error = %error, ?kind, "provider call failed");
        }
        Self {
            status,
            message,
            param: None,
            code,
        }
    }

    /// The `type` field OpenAI's clients read.
    fn kind(&self) -> &'static str {
        match self.status {
            StatusCode::UNAUTHORIZED => "authentication_error",
            StatusCode::FORBIDDEN => "permission_error",
            StatusCode::NOT_FOUND => "not_found_error",
            StatusCode::TOO_MANY_REQUESTS => "rate_limit_error",
            s if s.is_client_error() => "invalid_request_error",
            _ => "server_error",
        }
    }

    /// The error object, as a body or as a stream event's data.
    pub fn body(&self) -> serde_json::Value {
        json!({
            "error": {
                "message": self.message,
                "type": self.kind(),
                "param": self.param,
                "code": self.code,
            }
        })
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status.as_u16(), self.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(self.body())).into_response()
    }
}

/// A JSON body parsed with errors that name the field at fault, in the OpenAI error shape
/// (axum's own extractor answers in plain text).
#[derive(Debug)]
pub struct Body<T>(pub T);

#[axum::async_trait]
impl<T, S> axum::extract::FromRequest<S> for Body<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        let bytes = axum::body::Bytes::from_request(request, state)
            .await
            .map_err(|e| {
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "the request body is too large",
                    )
                } else {
                    ApiError::invalid(format!("the request body could not be read: {e}"))
                }
            })?;
        parse(&bytes).map(Body)
    }
}

/// Parses a JSON request body; a problem names the path of the field (`messages[2].content`).
pub fn parse<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." || path.is_empty() {
            ApiError::invalid(format!("the request body is not valid: {inner}"))
        } else {
            ApiError::invalid_param(&path, format!("`{path}`: {inner}"))
        }
    })
}
