//! MCP's streamable-HTTP transport over our reqwest 0.12 client.
//!
//! rmcp runs the transport (sessions, the SSE stream for server messages, reconnects); it asks an
//! [`StreamableHttpClient`] only to send one POST, GET or DELETE. Its own reqwest client is built
//! on reqwest 0.13, and the workspace is on 0.12, so this is that client written for 0.12: the
//! same status handling as rmcp's (202 accepted, 404 expired session, 401/403 challenges,
//! 429/5xx as status errors, JSON-RPC errors in error bodies) and the same byte limits on
//! responses, so a misbehaving server cannot make us buffer without end.

use std::collections::HashMap;
use std::sync::Arc;

use futures::stream::BoxStream;
use futures::{Stream, StreamExt, TryStreamExt};
use reqwest::StatusCode;
use reqwest::header::{
    ACCEPT, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE,
};
use rmcp::model::{ClientJsonRpcMessage, JsonRpcMessage, ServerJsonRpcMessage};
use rmcp::transport::common::http_header::{
    EVENT_STREAM_MIME_TYPE, HEADER_LAST_EVENT_ID, HEADER_SESSION_ID, JSON_MIME_TYPE,
};
use rmcp::transport::streamable_http_client::{
    AuthRequiredError, HttpStatusError, InsufficientScopeError, SseError, StreamableHttpClient,
    StreamableHttpError, StreamableHttpPostResponse, StreamableHttpResponseLimits,
};
use sse_stream::{Sse, SseStream};

/// rmcp's default limit on one server-sent event, used where rmcp passes no limit.
const DEFAULT_MAX_SSE_EVENT_SIZE: usize = 16 * 1024 * 1024;

type Error = StreamableHttpError<reqwest::Error>;

/// A reqwest 0.12 client speaking MCP's streamable HTTP. The configured headers (such as
/// `Authorization`) are the client's default headers, so every request carries them.
#[derive(Clone, Debug)]
pub(super) struct HttpClient {
    client: reqwest::Client,
}

impl HttpClient {
    pub(super) fn new(client: reqwest::Client) -> Self {
        Self { client }
    }

    fn request(
        &self,
        builder: reqwest::RequestBuilder,
        session_id: Option<&str>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> reqwest::RequestBuilder {
        let mut builder = builder.header(
            ACCEPT,
            format!("{EVENT_STREAM_MIME_TYPE}, {JSON_MIME_TYPE}"),
        );
        if let Some(session_id) = session_id {
            builder = builder.header(HEADER_SESSION_ID, session_id);
        }
        if let Some(token) = auth_header {
            builder = builder.bearer_auth(token);
        }
        // rmcp's own headers: the negotiated protocol version and the standard request headers.
        for (name, value) in custom_headers {
            builder = builder.header(name, value);
        }
        builder
    }
}

impl StreamableHttpClient for HttpClient {
    type Error = reqwest::Error;

    async fn post_message(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<StreamableHttpPostResponse, Error> {
        self.post_message_with_response_limits(
            uri,
            message,
            session_id,
            auth_header,
            custom_headers,
            StreamableHttpResponseLimits::default(),
        )
        .await
    }

    async fn post_message_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> Result<StreamableHttpPostResponse, Error> {
        let mut limits = StreamableHttpResponseLimits::default();
        limits.max_sse_event_size = max_sse_event_size;
        self.post_message_with_response_limits(
            uri,
            message,
            session_id,
            auth_header,
            custom_headers,
            limits,
        )
        .await
    }

    async fn post_message_with_response_limits(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        limits: StreamableHttpResponseLimits,
    ) -> Result<StreamableHttpPostResponse, Error> {
        let session_attached = session_id.is_some();
        let response = self
            .request(
                self.client.post(uri.as_ref()),
                session_id.as_deref(),
                auth_header,
                custom_headers,
            )
            .json(&message)
            .send()
            .await
            .map_err(client_error)?;
        let status = response.status();
        check_challenge(status, response.headers())?;
        if matches!(status, StatusCode::ACCEPTED | StatusCode::NO_CONTENT) {
            return Ok(StreamableHttpPostResponse::Accepted);
        }
        if status == StatusCode::NOT_FOUND && session_attached {
            return Err(StreamableHttpError::SessionExpired);
        }
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned());
        let is_json = content_type
            .as_deref()
            .is_some_and(|value| media_type_is(value, JSON_MIME_TYPE));
        let is_sse = content_type
            .as_deref()
            .is_some_and(|value| media_type_is(value, EVENT_STREAM_MIME_TYPE));
        let new_session_id = response
            .headers()
            .get(HEADER_SESSION_ID)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        // A notification or a reply leaves nothing outstanding: nothing in the answer matters.
        let awaits_no_response = !matches!(message, ClientJsonRpcMessage::Request(_));
        let content_length = response.content_length();

        if !status.is_success() {
            let status_error = status_error(status, response.headers());
            if is_json && status != StatusCode::TOO_MANY_REQUESTS {
                let error = read_bounded(
                    response.bytes_stream(),
                    content_length,
                    limits.max_json_response_size,
                )
                .await
                .ok()
                .and_then(|body| serde_json::from_slice::<ServerJsonRpcMessage>(&body).ok());
                if let Some(JsonRpcMessage::Error(error)) = error {
                    let request_id = match &message {
                        ClientJsonRpcMessage::Request(request) => Some(&request.id),
                        _ => None,
                    };
                    // A JSON-RPC error for this request is the answer to it.
                    if request_id.is_some() && error.id.as_ref() == request_id {
                        return Ok(StreamableHttpPostResponse::Json(
                            JsonRpcMessage::Error(error),
                            new_session_id,
                        ));
                    }
                    // An error for no request in particular would leave the request waiting
                    // forever. Sent back for a session we named, it means the server does not know
                    // the session (the reference servers answer 400 where the spec says 404, e.g.
                    // after a restart); rmcp then starts a new session and sends the request again.
                    if session_attached
                        && matches!(status, StatusCode::BAD_REQUEST | StatusCode::NOT_FOUND)
                    {
                        tracing::debug!(
                            "HTTP {status} for our session ({}); taking it as expired",
                            error.error.message
                        );
                        return Err(StreamableHttpError::SessionExpired);
                    }
                    if let Some(error) = status_error {
                        return Err(error.into());
                    }
                    return Err(StreamableHttpError::UnexpectedServerResponse(
                        format!("HTTP {status}: {}", error.error.message).into(),
                    ));
                }
                return Err(status_error.map(Into::into).unwrap_or_else(|| {
                    StreamableHttpError::UnexpectedServerResponse(
                        format!("HTTP {status} with a JSON body that is not a JSON-RPC error")
                            .into(),
                    )
                }));
            }
            if let Some(error) = status_error {
                return Err(error.into());
            }
            let body = read_prefix(response.bytes_stream(), limits.max_error_response_size).await;
            return Err(StreamableHttpError::UnexpectedServerResponse(
                format!("HTTP {status}: {}", String::from_utf8_lossy(&body).trim()).into(),
            ));
        }

        if is_sse {
            return Ok(StreamableHttpPostResponse::Sse(
                bounded_sse(response.bytes_stream(), limits.max_sse_event_size),
                new_session_id,
            ));
        }
        if is_json {
            if awaits_no_response && content_length == Some(0) {
                return Ok(StreamableHttpPostResponse::Accepted);
            }
            let body = read_bounded(
                response.bytes_stream(),
                content_length,
                limits.max_json_response_size,
            )
            .await?;
            return match serde_json::from_slice::<ServerJsonRpcMessage>(&body) {
                Ok(parsed) => Ok(StreamableHttpPostResponse::Json(parsed, new_session_id)),
                Err(e) if awaits_no_response => {
                    tracing::debug!("ignoring an unreadable answer to a notification: {e}");
                    Ok(StreamableHttpPostResponse::Accepted)
                }
                Err(e) => Err(StreamableHttpError::UnexpectedServerResponse(
                    format!(
                        "the answer is not a JSON-RPC message ({e}): {}",
                        String::from_utf8_lossy(&body[..body.len().min(256)])
                    )
                    .into(),
                )),
            };
        }
        // Some servers answer a notification with an empty 200 and no content type.
        if awaits_no_response {
            return Ok(StreamableHttpPostResponse::Accepted);
        }
        Err(StreamableHttpError::UnexpectedContentType(content_type))
    }

    async fn delete_session(
        &self,
        uri: Arc<str>,
        session_id: Arc<str>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<(), Error> {
        let response = self
            .request(
                self.client.delete(uri.as_ref()),
                Some(&session_id),
                auth_header,
                custom_headers,
            )
            .send()
            .await
            .map_err(client_error)?;
        let status = response.status();
        // A server need not let clients end sessions (the spec allows 405).
        if status.is_success() || status == StatusCode::METHOD_NOT_ALLOWED {
            return Ok(());
        }
        Err(StreamableHttpError::UnexpectedServerResponse(
            format!("ending the session answered HTTP {status}").into(),
        ))
    }

    async fn get_stream(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<BoxStream<'static, Result<Sse, SseError>>, Error> {
        self.get_stream_with_max_sse_event_size(
            uri,
            session_id,
            last_event_id,
            auth_header,
            custom_headers,
            DEFAULT_MAX_SSE_EVENT_SIZE,
        )
        .await
    }

    async fn get_stream_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> Result<BoxStream<'static, Result<Sse, SseError>>, Error> {
        let mut builder = self.request(
            self.client.get(uri.as_ref()),
            session_id.as_deref(),
            auth_header,
            custom_headers,
        );
        if let Some(last_event_id) = last_event_id {
            builder = builder.header(HEADER_LAST_EVENT_ID, last_event_id);
        }
        let response = builder.send().await.map_err(client_error)?;
        let status = response.status();
        if status == StatusCode::METHOD_NOT_ALLOWED {
            return Err(StreamableHttpError::ServerDoesNotSupportSse);
        }
        check_challenge(status, response.headers())?;
        if let Some(error) = status_error(status, response.headers()) {
            return Err(error.into());
        }
        if !status.is_success() {
            return Err(StreamableHttpError::UnexpectedServerResponse(
                format!("opening the event stream answered HTTP {status}").into(),
            ));
        }
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned());
        match content_type.as_deref() {
            Some(value)
                if media_type_is(value, EVENT_STREAM_MIME_TYPE)
                    || media_type_is(value, JSON_MIME_TYPE) =>
            {
                Ok(bounded_sse(response.bytes_stream(), max_sse_event_size))
            }
            _ => Err(StreamableHttpError::UnexpectedContentType(content_type)),
        }
    }
}

/// reqwest's error without the URL, whose query may hold a credential.
fn client_error(error: reqwest::Error) -> Error {
    StreamableHttpError::Client(error.without_url())
}

/// A 401 or 403 with a `WWW-Authenticate` challenge, as rmcp's errors for them.
fn check_challenge(status: StatusCode, headers: &HeaderMap) -> Result<(), Error> {
    let Some(challenge) = headers.get(WWW_AUTHENTICATE) else {
        return Ok(());
    };
    let challenge = || String::from_utf8_lossy(challenge.as_bytes()).into_owned();
    match status {
        StatusCode::UNAUTHORIZED => Err(StreamableHttpError::AuthRequired(AuthRequiredError::new(
            challenge(),
        ))),
        StatusCode::FORBIDDEN => Err(StreamableHttpError::InsufficientScope(
            InsufficientScopeError::new(challenge(), None),
        )),
        _ => Ok(()),
    }
}

/// Rate limits and server errors keep only their status and `Retry-After`.
fn status_error(status: StatusCode, headers: &HeaderMap) -> Option<HttpStatusError> {
    if status != StatusCode::TOO_MANY_REQUESTS && !status.is_server_error() {
        return None;
    }
    let retry_after = headers
        .get(RETRY_AFTER)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    Some(HttpStatusError::new(status.as_u16(), retry_after))
}

/// Whether a `Content-Type` value names `expected`, ignoring case and parameters.
fn media_type_is(value: &str, expected: &str) -> bool {
    value
        .split(';')
        .next()
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case(expected))
}

/// A whole body of at most `max` bytes.
async fn read_bounded(
    body: impl Stream<Item = reqwest::Result<bytes::Bytes>>,
    content_length: Option<u64>,
    max: usize,
) -> Result<Vec<u8>, Error> {
    if content_length.is_some_and(|length| length > max as u64) {
        return Err(StreamableHttpError::ResponseBodyTooLarge { max_size: max });
    }
    let mut body = std::pin::pin!(body);
    let mut bytes = Vec::new();
    while let Some(chunk) = body.try_next().await.map_err(client_error)? {
        if chunk.len() > max - bytes.len() {
            return Err(StreamableHttpError::ResponseBodyTooLarge { max_size: max });
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

/// The first `max` bytes of a body, for an error message; a broken body gives what arrived.
async fn read_prefix(
    body: impl Stream<Item = reqwest::Result<bytes::Bytes>>,
    max: usize,
) -> Vec<u8> {
    let mut body = std::pin::pin!(body);
    let mut bytes = Vec::new();
    while bytes.len() < max {
        let Ok(Some(chunk)) = body.try_next().await else {
            break;
        };
        let take = chunk.len().min(max - bytes.len());
        bytes.extend_from_slice(&chunk[..take]);
    }
    bytes
}

/// Server-sent events from a body, failing once one event grows past `max_event_size` bytes.
fn bounded_sse(
    body: impl Stream<Item = reqwest::Result<bytes::Bytes>> + Send + 'static,
    max_event_size: usize,
) -> BoxStream<'static, Result<Sse, SseError>> {
    let mut limit = EventSizeLimit::new(max_event_size);
    let mut failed = false;
    let checked = body
        .map(move |chunk| match chunk {
            Ok(chunk) if limit.admit(&chunk) => Ok(chunk),
            Ok(_) => Err(SseBodyError::EventTooLarge(max_event_size)),
            Err(e) => Err(SseBodyError::Http(e.without_url())),
        })
        // After an error, the rest of the body is not events we could trust to be framed right.
        .take_while(move |item| {
            let go_on = !failed;
            failed |= item.is_err();
            std::future::ready(go_on)
        })
        .boxed();
    SseStream::from_bytes_stream(checked).boxed()
}

#[derive(Debug, thiserror::Error)]
enum SseBodyError {
    #[error(transparent)]
    Http(reqwest::Error),
    #[error("a server-sent event grew past {0} bytes")]
    EventTooLarge(usize),
}

/// Counts the bytes of the event being received; an empty line ends an event. Comment lines
/// (`:`) do not count, as the parser drops them, but a comment line is still bounded by `max`.
#[derive(Debug)]
struct EventSizeLimit {
    max: usize,
    event: usize,
    line: usize,
    line_is_comment: bool,
    after_cr: bool,
}

impl EventSizeLimit {
    fn new(max: usize) -> Self {
        Self {
            max,
            event: 0,
            line: 0,
            line_is_comment: false,
            after_cr: false,
        }
    }

    /// Whether the event being received is still within the limit after `chunk`.
    fn admit(&mut self, chunk: &[u8]) -> bool {
        for &byte in chunk {
            let after_cr = std::mem::take(&mut self.after_cr);
            match byte {
                // "\r\n" is one line end.
                b'\n' if after_cr => {}
                b'\r' | b'\n' => {
                    self.after_cr = byte == b'\r';
                    if self.line == 0 {
                        self.event = 0;
                    } else if !self.line_is_comment {
                        // The parser joins data lines with a newline.
                        self.event = self.event.saturating_add(self.line + 1);
                    }
                    self.line = 0;
                    self.line_is_comment = false;
                }
                _ => {
                    if self.line == 0 {
                        self.line_is_comment = byte == b':';
                    }
                    self.line += 1;
                }
            }
            if self.event.saturating_add(self.line) > self.max {
                return false;
            }
        }
        true
    }
}

/// The error of a request that never produced a response, for messages: reqwest's own text plus
/// what lies under it ("connection refused").
pub(super) fn describe_reqwest_error(error: &reqwest::Error) -> String {
    let mut message = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !message.contains(&cause_text) {
            message.push_str(": ");
            message.push_str(&cause_text);
        }
        source = cause.source();
    }
    message
}

/// Whether the content-type check and the limits behave as rmcp's own client's do.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_types_ignore_case_and_parameters() {
        assert!(media_type_is(
            "Application/JSON; charset=utf-8",
            JSON_MIME_TYPE
        ));
        assert!(media_type_is("text/event-stream", EVENT_STREAM_MIME_TYPE));
        assert!(!media_type_is("application/jsonl", JSON_MIME_TYPE));
    }

    #[test]
    fn one_event_may_not_grow_past_the_limit_but_many_small_ones_may_pass() {
        let mut limit = EventSizeLimit::new(16);
        for _ in 0..100 {
            assert!(limit.admit(b"data: 0123456\r\n\r\n"));
        }
        assert!(limit.admit(b": comment 12345\n"));
        assert!(
            limit.admit(b"data: 01234\n"),
            "a finished comment does not count"
        );
        assert!(
            !limit.admit(b"data: 01234\n"),
            "two data lines of one event"
        );
        let mut limit = EventSizeLimit::new(16);
        assert!(
            !limit.admit(b"data: 0123456789abcdef"),
            "an unterminated line"
        );
    }

    #[tokio::test]
    async fn an_event_stream_is_parsed_and_cut_at_an_oversized_event() {
        let chunks: Vec<reqwest::Result<bytes::Bytes>> = vec![
            Ok(bytes::Bytes::from_static(b"id: 1\ndata: {\"a\":1}\n\n")),
            Ok(bytes::Bytes::from_static(
                b"data: 0123456789012345678901234567890\n\n",
            )),
            Ok(bytes::Bytes::from_static(b"data: never seen\n\n")),
        ];
        let events: Vec<Result<Sse, SseError>> = bounded_sse(futures::stream::iter(chunks), 24)
            .collect()
            .await;
        let first = events[0].as_ref().expect("first event");
        assert_eq!(first.data.as_deref(), Some("{\"a\":1}"));
        assert_eq!(first.id.as_deref(), Some("1"));
        assert!(events[1].is_err(), "{events:?}");
        assert_eq!(events.len(), 2, "{events:?}");
    }
}
