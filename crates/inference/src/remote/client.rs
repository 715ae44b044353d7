//! The HTTP side: requests with auth and timeouts, errors classified for the wrappers, and SSE
//! streams turned into deltas.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, SystemTime};

use corral_core::{ChatError, ChatStream, ErrorKind, ProviderError, lenient};
use futures::StreamExt;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;
use serde_json::Value;

use super::presets::Auth;
use super::sse;
use super::wire::{self, ChunkContent};
use crate::stream::{self, Framing, Said};

/// A credential: deserialized from config like a string, never printed.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// Everything needed to talk to one endpoint.
pub(crate) struct Endpoint {
    /// The provider type, for error messages.
    pub provider: String,
    pub base_url: String,
    pub auth: Auth,
    pub api_key: Option<Secret>,
    /// Where the key is expected to come from, for the error when it is missing.
    pub api_key_hint: Option<String>,
    pub query: Vec<(String, String)>,
    pub headers: BTreeMap<String, String>,
    pub timeouts: Timeouts,
    /// Signs each request instead of sending a key (Bedrock's SigV4).
    pub signer: Option<Box<dyn Signer>>,
}

impl fmt::Debug for Endpoint {
    /// Header values can carry credentials (`headers = { Authorization = … }`): only names show.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("provider", &self.provider)
            .field("base_url", &self.base_url)
            .field("auth", &self.auth)
            .field("api_key", &self.api_key)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("signer", &self.signer)
            .finish_non_exhaustive()
    }
}

/// How long to wait: to connect, for any byte of an answer, for a whole non-streaming call.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    pub connect: Duration,
    pub read: Duration,
    pub request: Duration,
}

impl Timeouts {
    /// From a provider config's `connect_timeout_secs`, `read_timeout_secs` and
    /// `request_timeout_secs`, with defaults of 10, 120 and 600 seconds.
    pub fn from_config(
        connect: Option<f64>,
        read: Option<f64>,
        request: Option<f64>,
    ) -> Result<Self, String> {
        let seconds = |value: Option<f64>, default: f64, key: &str| {
            lenient::seconds(value.unwrap_or(default))
                .map_err(|problem| format!("`{key}` {problem}"))
        };
        Ok(Self {
            connect: seconds(connect, 10.0, "connect_timeout_secs")?,
            read: seconds(read, 120.0, "read_timeout_secs")?,
            request: seconds(request, 600.0, "request_timeout_secs")?,
        })
    }
}

/// Credentials that sign each request rather than travel as a header.
pub(crate) trait Signer: fmt::Debug + Send + Sync {
    /// The headers to add to a request with this method, full URL, signed headers and body.
    fn sign(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Vec<(String, String)>, String>;
}

#[derive(Debug)]
pub(crate) struct Client {
    http: reqwest::Client,
    endpoint: Endpoint,
    headers: HeaderMap,
}

impl Client {
    pub fn new(endpoint: Endpoint) -> Result<Self, String> {
        let url = reqwest::Url::parse(&endpoint.base_url)
            .map_err(|e| format!("`base_url` {:?} is not a URL: {e}", endpoint.base_url))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!(
                "`base_url` {:?} must be http or https",
                endpoint.base_url
            ));
        }
        let mut headers = HeaderMap::new();
        for (name, value) in &endpoint.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| format!("`headers` has an invalid header name {name:?}: {e}"))?;
            let mut value = HeaderValue::from_str(value)
                .map_err(|e| format!("`headers.{name}` is not a valid header value: {e}"))?;
            // Extra headers often carry credentials; keep them out of debug output.
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        if let (Some(key), auth) = (&endpoint.api_key, endpoint.auth) {
            let (name, value) = match auth {
                Auth::Bearer | Auth::BearerOptional => {
                    ("authorization", format!("Bearer {}", key.expose()))
                }
                Auth::Header(name) => (name, key.expose().to_string()),
            };
            let mut value = HeaderValue::from_str(&value)
                .map_err(|_| "the API key contains characters a header cannot carry".to_string())?;
            value.set_sensitive(true);
            headers.insert(HeaderName::from_static(name), value);
        }
        let http = reqwest::Client::builder()
            .connect_timeout(endpoint.timeouts.connect)
            .read_timeout(endpoint.timeouts.read)
            .user_agent(concat!("corral/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot set up the HTTP client: {e}"))?;
        Ok(Self {
            http,
            endpoint,
            headers,
        })
    }

    fn error(&self, kind: ErrorKind, message: impl Into<String>) -> ProviderError {
        ProviderError::new(kind, message).with_provider(self.endpoint.provider.clone())
    }

    /// An answer that is not what the API documents.
    pub fn malformed(&self, what: &str, detail: &str) -> ProviderError {
        self.error(
            ErrorKind::Permanent,
            format!("malformed {what}: {}", self.redact(detail)),
        )
    }

    /// Removes the API key from text that came back from the server (some echo it in errors).
    fn redact(&self, text: &str) -> String {
        match &self.endpoint.api_key {
            Some(key) if key.expose().len() >= 8 => text.replace(key.expose(), "[redacted]"),
            _ => text.to_string(),
        }
    }

    /// A request to `path` under the base URL, with the configured headers and query, the JSON
    /// body, and the credentials: a key header, or a signature over the exact bytes sent.
    fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<reqwest::RequestBuilder, ProviderError> {
        if self.endpoint.signer.is_none()
            && self.endpoint.api_key.is_none()
            && self.endpoint.auth.requires_key()
        {
            let hint = match &self.endpoint.api_key_hint {
                Some(var) => format!("set {var} or `api_key` in the provider's config"),
                None => "set `api_key` in the provider's config".to_string(),
            };
            return Err(self.error(ErrorKind::Auth, format!("no API key: {hint}")));
        }
        let joined = format!("{}/{path}", self.endpoint.base_url.trim_end_matches('/'));
        let mut url = reqwest::Url::parse(&joined).map_err(|e| {
            self.error(
                ErrorKind::InvalidRequest,
                format!("bad URL {joined:?}: {e}"),
            )
        })?;
        if !self.endpoint.query.is_empty() {
            url.query_pairs_mut().extend_pairs(&self.endpoint.query);
        }
        let bytes = match body {
            Some(body) => serde_json::to_vec(body).map_err(|e| {
                self.error(
                    ErrorKind::InvalidRequest,
                    format!("cannot encode the request: {e}"),
                )
            })?,
            None => Vec::new(),
        };
        let mut builder = self
            .http
            .request(method.clone(), url.clone())
            .headers(self.headers.clone());
        if body.is_some() {
            builder = builder.header("content-type", "application/json");
        }
        if let Some(signer) = &self.endpoint.signer {
            let content_type = [("content-type", "application/json")];
            let signed = if body.is_some() {
                &content_type[..]
            } else {
                &[]
            };
            let headers = signer
                .sign(method.as_str(), url.as_str(), signed, &bytes)
                .map_err(|problem| self.error(ErrorKind::Auth, problem))?;
            for (name, value) in headers {
                // The signature and the session token are credentials.
                let mut value = HeaderValue::from_str(&value).map_err(|e| {
                    self.error(
                        ErrorKind::Auth,
                        format!("the signature is not a header value: {e}"),
                    )
                })?;
                value.set_sensitive(true);
                builder = builder.header(name, value);
            }
        }
        if body.is_some() {
            builder = builder.body(bytes);
        }
        Ok(builder)
    }

    async fn send(
        &self,
        builder: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ProviderError> {
        let response = builder.send().await.map_err(|e| self.transport_error(&e))?;
        if response.status().is_success() {
            Ok(response)
        } else {
            Err(self.status_error(response).await)
        }
    }

    /// POSTs JSON and returns the response body of a 2xx answer.
    pub async fn post(&self, path: &str, body: &Value) -> Result<String, ProviderError> {
        let builder = self
            .request(reqwest::Method::POST, path, Some(body))?
            .timeout(self.endpoint.timeouts.request);
        let response = self.send(builder).await?;
        response.text().await.map_err(|e| self.transport_error(&e))
    }

    /// POSTs JSON asking for an SSE stream and turns its events into deltas.
    pub async fn stream(&self, path: &str, body: &Value) -> Result<ChatStream, ChatError> {
        self.stream_framed(path, body, Sse::default()).await
    }

    /// POSTs JSON and reads the streamed answer with the given framing.
    pub async fn stream_framed<F: Framing>(
        &self,
        path: &str,
        body: &Value,
        framing: F,
    ) -> Result<ChatStream, ChatError> {
        let builder = self.request(reqwest::Method::POST, path, Some(body))?;
        let response = self.send(builder).await?;
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        if !content_type.starts_with(framing.content_type()) {
            let body = response.text().await.unwrap_or_default();
            let snippet: String = body.chars().take(200).collect();
            let message = wire::error_message(&body).unwrap_or(snippet);
            return Err(self
                .malformed(
                    "stream",
                    &format!(
                        "expected {}, got {content_type:?}: {message}",
                        framing.content_type()
                    ),
                )
                .into());
        }
        Ok(stream::deltas(
            self.endpoint.provider.clone(),
            framing,
            response.bytes_stream().boxed(),
        ))
    }

    pub async fn embed(
        &self,
        model: &str,
        inputs: &[String],
    ) -> Result<Vec<Vec<f32>>, ProviderError> {
        if inputs.is_empty() {
            return Ok(Vec::new());
        }
        let text = self
            .post("embeddings", &wire::embeddings_body(model, inputs))
            .await?;
        wire::parse_embeddings(&text, inputs.len())
            .map_err(|e| self.malformed("embeddings response", &e))
    }

    pub async fn list_models(&self) -> Result<Vec<String>, ProviderError> {
        let builder = self
            .request(reqwest::Method::GET, "models", None)?
            .timeout(self.endpoint.timeouts.request);
        let response = self.send(builder).await?;
        let text = response
            .text()
            .await
            .map_err(|e| self.transport_error(&e))?;
        wire::parse_models(&text).map_err(|e| self.malformed("model listing", &e))
    }

    fn transport_error(&self, error: &reqwest::Error) -> ProviderError {
        let (kind, what) = if error.is_timeout() {
            (ErrorKind::Timeout, "timed out")
        } else if error.is_connect() {
            (ErrorKind::Transient, "cannot connect")
        } else if error.is_builder() {
            (ErrorKind::InvalidRequest, "cannot build the request")
        } else {
            (ErrorKind::Transient, "the connection failed")
        };
        self.error(kind, format!("{what}: {}", self.redact(&chain(error))))
    }

    async fn status_error(&self, response: reqwest::Response) -> ProviderError {
        let status = response.status();
        let retry_after = retry_after(response.headers(), SystemTime::now());
        let should_retry = response
            .headers()
            .get("x-should-retry")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.eq_ignore_ascii_case("true"));
        let body = match response.text().await {
            Ok(body) => self.redact(&body),
            Err(e) => format!("(the error body could not be read: {e})"),
        };
        let message = wire::error_message(&body).unwrap_or_else(|| {
            let reason = status.canonical_reason().unwrap_or("error");
            let snippet: String = body.chars().take(200).collect();
            if snippet.trim().is_empty() {
                reason.to_string()
            } else {
                format!("{reason}: {snippet}")
            }
        });
        let kind = if status.is_client_error() && overflows_context(&body) {
            ErrorKind::ContextLengthExceeded
        } else {
            ErrorKind::from_http_status(status.as_u16())
        };
        // `x-should-retry` only overrides whether a retry happens; the kind stays what the status
        // says otherwise (an invalid request stays one, so no fallback sends it on).
        let kind = match should_retry {
            Some(true) if !kind.is_retryable() => ErrorKind::Transient,
            Some(false) if kind.is_retryable() => ErrorKind::Permanent,
            _ => kind,
        };
        let mut error = self.error(kind, message).with_http(status.as_u16(), body);
        if let Some(wait) = retry_after {
            error = error.with_retry_after(wait);
        }
        error
    }
}

/// The error and its sources, which say what actually happened ("connection reset by peer").
pub(crate) fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        let part = inner.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = inner.source();
    }
    text
}

/// How servers word "the prompt does not fit": OpenAI's code, llama-server's type, vLLM's message.
fn overflows_context(body: &str) -> bool {
    let body = body.to_ascii_lowercase();
    [
        "context_length_exceeded",
        "exceed_context_size_error",
        "maximum context length",
        "exceeds the available context size",
        "context window",
        "input is too long",
        "too many input tokens",
    ]
    .iter()
    .any(|marker| body.contains(marker))
}

/// The wait a server asks for: `retry-after-ms` (milliseconds), else `Retry-After` as seconds or
/// as an HTTP date.
fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if let Some(ms) = header("retry-after-ms").and_then(|v| v.parse::<f64>().ok())
        && ms.is_finite()
        && ms >= 0.0
    {
        // A wait too long to represent is as good as forever: the retry policy gives up on it.
        return Some(Duration::try_from_secs_f64(ms / 1000.0).unwrap_or(Duration::MAX));
    }
    let value = header("retry-after")?;
    if let Ok(seconds) = value.parse::<f64>() {
        return (seconds.is_finite() && seconds >= 0.0)
            .then(|| Duration::try_from_secs_f64(seconds).unwrap_or(Duration::MAX));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

/// The OpenAI-compatible stream: SSE events carrying chat or completion chunks, ended by `[DONE]`.
#[derive(Default)]
struct Sse(sse::Decoder);

impl Framing for Sse {
    type Event = sse::Event;

    fn feed(&mut self, bytes: &[u8]) -> (Vec<sse::Event>, Option<String>) {
        self.0.feed(bytes)
    }

    fn content_type(&self) -> &'static str {
        "text/event-stream"
    }

    fn finish(&mut self) -> Result<Option<sse::Event>, String> {
        self.0.finish()
    }

    fn interpret(&mut self, event: sse::Event, number: usize) -> Said {
        if event.event.as_deref() == Some("error") {
            let message = wire::error_message(&event.data).unwrap_or_else(|| event.data.clone());
            return Said::Failed(
                stream_error_kind(None, &message),
                format!("the server reported an error mid-stream: {message}"),
            );
        }
        if event.data.trim() == "[DONE]" {
            return Said::Done;
        }
        match wire::parse_chunk(&event.data) {
            Ok(ChunkContent::Deltas(deltas)) => Said::Deltas(deltas),
            Ok(ChunkContent::Error(error)) => {
                let message =
                    wire::error_message(&serde_json::json!({ "error": error }).to_string())
                        .unwrap_or_else(|| error.to_string());
                Said::Failed(
                    stream_error_kind(Some(&error), &message),
                    format!("the server reported an error mid-stream: {message}"),
                )
            }
            Err(problem) => {
                let data: String = event.data.chars().take(200).collect();
                Said::Failed(
                    ErrorKind::Permanent,
                    format!("malformed stream event #{number}: {problem} (data: {data})"),
                )
            }
        }
    }
}

/// The kind of an error a server reports inside a stream: by its HTTP-like `code` (a number or a
/// numeric string), else its `type`, else its words; otherwise trouble on the server's side.
fn stream_error_kind(error: Option<&Value>, message: &str) -> ErrorKind {
    if overflows_context(message) {
        return ErrorKind::ContextLengthExceeded;
    }
    let field = |name: &str| error.and_then(|e| e.get(name));
    let code = field("code").and_then(|c| match c {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    });
    if let Some(code) = code.and_then(|c| u16::try_from(c).ok()) {
        return ErrorKind::from_http_status(code);
    }
    match field("type").and_then(Value::as_str).unwrap_or_default() {
        "exceed_context_size_error" => ErrorKind::ContextLengthExceeded,
        "invalid_request_error" => ErrorKind::InvalidRequest,
        "rate_limit_error" | "rate_limit_exceeded" | "requests" | "tokens" => {
            ErrorKind::RateLimited
        }
        "authentication_error" | "permission_error" => ErrorKind::Auth,
        _ => ErrorKind::Transient,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_takes_milliseconds_seconds_or_a_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let headers = |pairs: &[(&'static str, &str)]| {
            let mut map = HeaderMap::new();
            for (k, v) in pairs {
                map.insert(*k, HeaderValue::from_str(v).expect("valid"));
            }
            map
        };
        assert_eq!(
            retry_after(&headers(&[("retry-after", "7")]), now),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            retry_after(&headers(&[("retry-after", "1.5")]), now),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            retry_after(
                &headers(&[("retry-after", "3"), ("retry-after-ms", "250")]),
                now
            ),
            Some(Duration::from_millis(250))
        );
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(
            retry_after(&headers(&[("retry-after", &later)]), now),
            Some(Duration::from_secs(30))
        );
        let earlier = httpdate::fmt_http_date(now - Duration::from_secs(30));
        assert_eq!(
            retry_after(&headers(&[("retry-after", &earlier)]), now),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after(&headers(&[("retry-after", "soon")]), now), None);
        assert_eq!(retry_after(&headers(&[]), now), None);
    }

    #[test]
    fn context_overflows_are_recognised_in_each_servers_words() {
        assert!(overflows_context(
            r#"{"error":{"code":"context_length_exceeded"}}"#
        ));
        assert!(overflows_context(
            r#"{"error":{"type":"exceed_context_size_error"}}"#
        ));
        assert!(overflows_context(
            "This model's maximum context length is 8192 tokens"
        ));
        assert!(!overflows_context(
            r#"{"error":{"message":"invalid temperature"}}"#
        ));
    }

    #[test]
    fn secrets_do_not_print() {
        let secret = Secret::new("sk-live-123456789");
        assert_eq!(format!("{secret:?}"), "Secret([redacted])");
    }
}
