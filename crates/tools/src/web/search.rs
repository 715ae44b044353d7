//! `web_search`: a query to a web search API — Brave (`GET /res/v1/web/search`) or Tavily
//! (`POST /search`) — with the results normalised to title, URL and snippet: a numbered list for
//! the model, the list as JSON for the caller.
//!
//! The API key travels only in its request header, marked sensitive; it is never logged, never
//! in a `Debug` output, and scrubbed from any response body kept in an error. The endpoint is
//! operator config, so the address policy of `http_fetch` does not apply here.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use corral_core::{
    ErrorKind, ProviderError, Tool, ToolContext, ToolError, ToolOutput, ToolRuntimeProvider,
    ToolSpec,
};
use reqwest::Url;
use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderMap, HeaderName, HeaderValue};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{
    BodyError, describe_seconds, error_body, error_chain, invalid_config, parse_arguments,
    parse_params, read_capped, retry_after, seconds,
};

/// The provider type (and tool name) in `[[providers.tool_runtime]]`.
pub const WEB_SEARCH_PROVIDER_TYPE: &str = "web_search";

/// Both APIs return at most 20 results per request.
const MAX_RESULTS_LIMIT: usize = 20;

/// A search API's answer is a few kilobytes; anything past this is not one.
const MAX_RESPONSE_BYTES: u64 = 4 * 1024 * 1024;

const BRAVE_TOKEN: HeaderName = HeaderName::from_static("x-subscription-token");

/// The search API behind the tool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SearchBackend {
    /// Brave Search API: `GET {base_url}/res/v1/web/search?q=…&count=…`, key in
    /// `X-Subscription-Token`.
    Brave,
    /// Tavily: `POST {base_url}/search` with a JSON body, key as a bearer token.
    Tavily,
}

impl SearchBackend {
    pub fn name(self) -> &'static str {
        match self {
            Self::Brave => "brave",
            Self::Tavily => "tavily",
        }
    }

    pub fn default_base_url(self) -> &'static str {
        match self {
            Self::Brave => "https://api.search.brave.com",
            Self::Tavily => "https://api.tavily.com",
        }
    }

    fn path(self) -> &'static str {
        match self {
            Self::Brave => "/res/v1/web/search",
            Self::Tavily => "/search",
        }
    }
}

impl fmt::Display for SearchBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The `config` table of a `web_search` provider.
#[derive(Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebSearchConfig {
    pub backend: SearchBackend,
    /// The API key (write `${env.BRAVE_API_KEY}` in `corral.toml`). Never logged.
    pub api_key: String,
    /// The API's base URL; by default the backend's public one.
    #[serde(default)]
    pub base_url: Option<String>,
    /// Results per search, at most 20; a call may ask for fewer.
    #[serde(default = "default_max_results")]
    pub max_results: usize,
    /// Seconds a search may take.
    #[serde(default = "default_timeout_s")]
    pub timeout_s: f64,
}

fn default_max_results() -> usize {
    5
}
fn default_timeout_s() -> f64 {
    15.0
}

impl fmt::Debug for WebSearchConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebSearchConfig")
            .field("backend", &self.backend)
            .field("api_key", &"<redacted>")
            .field("base_url", &self.base_url)
            .field("max_results", &self.max_results)
            .field("timeout_s", &self.timeout_s)
            .finish()
    }
}

impl WebSearchConfig {
    /// A config for `backend` with `api_key` and the defaults.
    pub fn new(backend: SearchBackend, api_key: impl Into<String>) -> Self {
        Self {
            backend,
            api_key: api_key.into(),
            base_url: None,
            max_results: default_max_results(),
            timeout_s: default_timeout_s(),
        }
    }
}

/// The checked config.
struct Settings {
    backend: SearchBackend,
    endpoint: Url,
    /// The header that carries the key, marked sensitive.
    auth: (HeaderName, HeaderValue),
    /// Kept only to scrub it from response bodies.
    api_key: String,
    max_results: usize,
    timeout: Duration,
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("backend", &self.backend)
            .field("endpoint", &self.endpoint.as_str())
            .field("max_results", &self.max_results)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Settings {
    /// `text` with the API key replaced, for bodies and messages that might echo it.
    fn redact(&self, text: &str) -> String {
        if self.api_key.is_empty() {
            return text.to_owned();
        }
        text.replace(&self.api_key, "[api key]")
    }
}

/// The `web_search` tool-runtime provider: one tool, `web_search`.
///
/// A tool group's `params` may lower the number of results for that group:
/// `{ max_results = 3 }` (a larger value is held to the provider's `max_results`).
#[derive(Debug)]
pub struct WebSearchProvider {
    settings: Arc<Settings>,
}

impl WebSearchProvider {
    /// Checks `config`; connects to nothing.
    pub fn new(config: WebSearchConfig) -> Result<Self, ProviderError> {
        let invalid = |message: String| invalid_config(WEB_SEARCH_PROVIDER_TYPE, message);
        let backend = config.backend;
        let api_key = config.api_key.trim().to_owned();
        if api_key.is_empty() {
            return Err(invalid(format!(
                "`api_key` is empty; the {backend} API needs a key"
            )));
        }
        let auth_value = match backend {
            SearchBackend::Brave => HeaderValue::from_str(&api_key),
            SearchBackend::Tavily => HeaderValue::from_str(&format!("Bearer {api_key}")),
        };
        // The message must not quote the key: config errors are printed.
        let mut auth_value = auth_value.map_err(|_| {
            invalid(
                "`api_key` cannot be sent in an HTTP header: it holds a line break, a control \
                 character or a non-ASCII character"
                    .into(),
            )
        })?;
        auth_value.set_sensitive(true);
        let auth_name = match backend {
            SearchBackend::Brave => BRAVE_TOKEN,
            SearchBackend::Tavily => AUTHORIZATION,
        };
        let base = config
            .base_url
            .as_deref()
            .map(str::trim)
            .unwrap_or(backend.default_base_url());
        let endpoint = endpoint(base, backend).map_err(invalid)?;
        if config.max_results == 0 || config.max_results > MAX_RESULTS_LIMIT {
            return Err(invalid(format!(
                "`max_results` must be between 1 and {MAX_RESULTS_LIMIT}, not {}",
                config.max_results
            )));
        }
        let timeout = seconds(WEB_SEARCH_PROVIDER_TYPE, config.timeout_s, "timeout_s")?;
        Ok(Self {
            settings: Arc::new(Settings {
                backend,
                endpoint,
                auth: (auth_name, auth_value),
                api_key,
                max_results: config.max_results,
                timeout,
            }),
        })
    }

    /// The tool, with the provider's result count.
    pub fn tool(&self) -> Result<WebSearch, ToolError> {
        self.tool_with_cap(self.settings.max_results)
    }

    fn tool_with_cap(&self, max_results: usize) -> Result<WebSearch, ToolError> {
        let client = reqwest::Client::builder()
            // A search API does not redirect; following one would send the key elsewhere
            // (`X-Subscription-Token` is not a header the client knows to drop).
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("corral-web-search/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ToolError::Failed(format!("cannot set up the HTTP client: {e}")))?;
        let spec = ToolSpec::for_arguments::<SearchArgs>(
            WEB_SEARCH_PROVIDER_TYPE,
            format!(
                "Search the web. Returns a numbered list of up to {max_results} results, each \
                 with its title, URL and a snippet of the page."
            ),
        );
        Ok(WebSearch {
            spec,
            client,
            settings: Arc::clone(&self.settings),
            max_results,
        })
    }
}

/// `{base}{path}`, checked: http(s), no query or fragment (the path is appended to it).
fn endpoint(base: &str, backend: SearchBackend) -> Result<Url, String> {
    let url = Url::parse(base).map_err(|e| format!("`base_url` = {base:?} is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "`base_url` = {base:?} must be an http or https URL"
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "`base_url` = {base:?} must not have a query or fragment; the API path ({}) is \
             appended to it",
            backend.path()
        ));
    }
    let joined = format!("{}{}", url.as_str().trim_end_matches('/'), backend.path());
    Url::parse(&joined).map_err(|e| format!("`base_url` = {base:?} gives no usable URL: {e}"))
}

/// A tool group's `params` for `web_search`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchParams {
    #[serde(default)]
    max_results: Option<usize>,
}

#[async_trait]
impl ToolRuntimeProvider for WebSearchProvider {
    async fn tools(
        &self,
        params: &serde_json::Value,
        _context: &dyn ToolContext,
    ) -> Result<Vec<Arc<dyn Tool>>, ToolError> {
        let params: SearchParams = parse_params(WEB_SEARCH_PROVIDER_TYPE, params)?;
        let max_results = match params.max_results {
            Some(0) => {
                return Err(ToolError::InvalidArguments {
                    field: Some("params".into()),
                    message: format!(
                        "tool group params `max_results` for `{WEB_SEARCH_PROVIDER_TYPE}` must \
                         be at least 1"
                    ),
                });
            }
            Some(n) => n.min(self.settings.max_results),
            None => self.settings.max_results,
        };
        Ok(vec![Arc::new(self.tool_with_cap(max_results)?)])
    }
}

/// The arguments of `web_search`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct SearchArgs {
    /// What to search for, as you would type it into a search engine.
    query: String,
    /// How many results to return (the tool's own cap applies too).
    #[serde(default)]
    max_results: Option<usize>,
}

/// One search result, the same for every backend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchResult {
    pub title: String,
    pub url: String,
    /// Plain text: the backend's HTML tags and entities are gone.
    pub snippet: String,
}

/// The `web_search` tool.
#[derive(Debug)]
pub struct WebSearch {
    spec: ToolSpec,
    client: reqwest::Client,
    settings: Arc<Settings>,
    max_results: usize,
}

#[async_trait]
impl Tool for WebSearch {
    fn spec(&self) -> &ToolSpec {
        &self.spec
    }

    async fn call(&self, arguments: serde_json::Value) -> Result<ToolOutput, ToolError> {
        let args: SearchArgs = parse_arguments(arguments)?;
        let query = args.query.trim();
        if query.is_empty() {
            return Err(ToolError::InvalidArguments {
                field: Some("query".into()),
                message: "the query is empty; say what to search for".into(),
            });
        }
        let count = match args.max_results {
            Some(0) => {
                return Err(ToolError::InvalidArguments {
                    field: Some("max_results".into()),
                    message: "must be at least 1".into(),
                });
            }
            Some(n) => n.min(self.max_results),
            None => self.max_results,
        };
        let backend = self.settings.backend;
        let timeout = self.settings.timeout;
        tracing::debug!(%backend, count, "searching");
        let results = match tokio::time::timeout(timeout, self.search(query, count)).await {
            Ok(results) => results?,
            Err(_) => {
                return Err(self
                    .error(
                        ErrorKind::Timeout,
                        format!(
                            "{backend} did not answer within {} (the time limit)",
                            describe_seconds(timeout)
                        ),
                    )
                    .into());
            }
        };
        tracing::debug!(%backend, results = results.len(), "searched");
        let mut metadata = serde_json::Map::new();
        metadata.insert("backend".into(), json!(backend.name()));
        metadata.insert("query".into(), json!(query));
        metadata.insert("results".into(), json!(results));
        Ok(ToolOutput {
            content: render(query, &results),
            metadata,
        })
    }
}

impl WebSearch {
    async fn search(&self, query: &str, count: usize) -> Result<Vec<SearchResult>, ProviderError> {
        let settings = &self.settings;
        let (auth_name, auth_value) = &settings.auth;
        let request = match settings.backend {
            SearchBackend::Brave => self
                .client
                .get(settings.endpoint.clone())
                .query(&[("q", query), ("count", &count.to_string())]),
            SearchBackend::Tavily => self.client.post(settings.endpoint.clone()).json(&json!({
                "query": query,
                "max_results": count,
                "search_depth": "basic",
                "include_answer": false,
                "include_raw_content": false,
                "include_images": false,
            })),
        };
        let response = request
            .header(auth_name.clone(), auth_value.clone())
            .header(ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| self.transport_error(&e))?;
        let status = response.status();
        if !status.is_success() {
            return Err(self.status_error(response).await);
        }
        let body = read_capped(response, MAX_RESPONSE_BYTES)
            .await
            .map_err(|e| match e {
                BodyError::TooLarge { limit } => self.error(
                    ErrorKind::Permanent,
                    format!(
                        "{} answered with more than {limit} bytes, which is not a search result",
                        settings.backend
                    ),
                ),
                BodyError::Transport(e) => self.transport_error(&e),
            })?;
        let mut results = parse_results(settings.backend, &body).map_err(|problem| {
            let snippet: String = String::from_utf8_lossy(&body).chars().take(500).collect();
            self.error(
                ErrorKind::Permanent,
                format!(
                    "{} answered with a body that is not its search results JSON: {problem}",
                    settings.backend
                ),
            )
            .with_http(status.as_u16(), settings.redact(&snippet))
        })?;
        results.truncate(count);
        Ok(results)
    }

    fn error(&self, kind: ErrorKind, message: String) -> ProviderError {
        ProviderError::new(kind, message).with_provider(WEB_SEARCH_PROVIDER_TYPE)
    }

    fn transport_error(&self, error: &reqwest::Error) -> ProviderError {
        let backend = self.settings.backend;
        let (kind, what) = if error.is_timeout() {
            (ErrorKind::Timeout, "timed out")
        } else if error.is_connect() {
            (ErrorKind::Transient, "cannot connect")
        } else {
            (ErrorKind::Transient, "the connection failed")
        };
        // The query is in a Brave request's URL, which the client's error may quote: fine, it
        // is the model's own. The key never is (it is a header), but the message is scrubbed
        // anyway.
        let detail = self.settings.redact(&error_chain(error));
        self.error(
            kind,
            format!("searching with {backend} failed: {what}: {detail}"),
        )
    }

    async fn status_error(&self, response: reqwest::Response) -> ProviderError {
        let backend = self.settings.backend;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = self.settings.redact(&error_body(response).await);
        let detail = api_message(&body)
            .map(|message| format!(": {}", self.settings.redact(&message)))
            .unwrap_or_default();
        let kind = ErrorKind::from_http_status(status);
        let (message, wait) = match status {
            401 | 403 => (
                format!(
                    "the {backend} API key was refused (HTTP {status}){detail}; check the \
                     `api_key` of the web_search provider"
                ),
                None,
            ),
            429 => {
                let wait = retry_after(&headers).or_else(|| match backend {
                    SearchBackend::Brave => brave_reset(&headers),
                    SearchBackend::Tavily => None,
                });
                let when = match wait {
                    Some(wait) if wait > Duration::from_secs(60) => format!(
                        "; its quota is used up until it resets in {}",
                        human_duration(wait)
                    ),
                    Some(wait) => format!("; try again in {}", describe_seconds(wait)),
                    None => "; try again later".to_owned(),
                };
                (
                    format!("{backend} rate-limited the search (HTTP 429){detail}{when}"),
                    wait,
                )
            }
            500..=599 => (
                format!(
                    "{backend} had a server error (HTTP {status}){detail}; this is usually \
                     temporary"
                ),
                retry_after(&headers),
            ),
            _ => (
                format!("{backend} rejected the search (HTTP {status}){detail}"),
                None,
            ),
        };
        tracing::debug!(%backend, status, "search failed");
        let mut error = self.error(kind, message).with_http(status, body);
        if let Some(wait) = wait {
            error = error.with_retry_after(wait);
        }
        error
    }
}

/// The wait Brave's rate-limit headers imply: one comma-separated value per window, shortest
/// first (`X-RateLimit-Remaining: 0, 1500`, `X-RateLimit-Reset: 1, 1419704`); the latest reset
/// among the windows with nothing left.
fn brave_reset(headers: &HeaderMap) -> Option<Duration> {
    let list = |name: &str| -> Option<Vec<Option<u64>>> {
        let value = headers.get(name)?.to_str().ok()?;
        Some(value.split(',').map(|v| v.trim().parse().ok()).collect())
    };
    let remaining = list("x-ratelimit-remaining")?;
    let reset = list("x-ratelimit-reset")?;
    remaining
        .iter()
        .zip(&reset)
        .filter_map(|(left, reset)| (*left == Some(0)).then_some(*reset).flatten())
        .max()
        .map(Duration::from_secs)
}

/// `3 minutes`, `5 hours`, `16 days`: long waits in messages.
fn human_duration(wait: Duration) -> String {
    let secs = wait.as_secs();
    match secs {
        0..120 => format!("{secs} s"),
        120..7200 => format!("{} minutes", secs / 60),
        7200..172_800 => format!("{} hours", secs / 3600),
        _ => format!("{} days", secs / 86_400),
    }
}

/// The human message in an API's error body: Brave's `error.detail`, Tavily's `detail.error`
/// or `detail`, or a common `message`/`error` field.
fn api_message(body: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(body).ok()?;
    let pointers = [
        "/error/detail",
        "/error/message",
        "/detail/error",
        "/detail",
        "/message",
        "/error",
    ];
    let message = pointers
        .iter()
        .find_map(|pointer| value.pointer(pointer)?.as_str())?;
    let message: String = message.trim().chars().take(300).collect();
    (!message.is_empty()).then_some(message)
}

#[derive(Deserialize)]
struct BraveResponse {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    /// Absent when nothing was found.
    #[serde(default)]
    web: Option<BraveWeb>,
}

#[derive(Deserialize)]
struct BraveWeb {
    #[serde(default)]
    results: Vec<WireResult>,
}

#[derive(Deserialize)]
struct TavilyResponse {
    results: Vec<WireResult>,
}

/// A result as either API sends it: Brave's `description`, Tavily's `content`.
#[derive(Deserialize)]
struct WireResult {
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    url: Option<String>,
    #[serde(default, alias = "content")]
    description: Option<String>,
}

fn parse_results(backend: SearchBackend, body: &[u8]) -> Result<Vec<SearchResult>, String> {
    let wire = match backend {
        SearchBackend::Brave => {
            let response: BraveResponse =
                serde_json::from_slice(body).map_err(|e| e.to_string())?;
            match response.web {
                Some(web) => web.results,
                None if response.kind.as_deref() == Some("search") => Vec::new(),
                None => {
                    return Err("it has neither `web.results` nor `\"type\": \"search\"`".into());
                }
            }
        }
        SearchBackend::Tavily => {
            let response: TavilyResponse =
                serde_json::from_slice(body).map_err(|e| e.to_string())?;
            response.results
        }
    };
    Ok(wire
        .into_iter()
        .filter_map(|result| {
            let url = result.url.map(|url| url.trim().to_owned())?;
            if url.is_empty() {
                return None;
            }
            Some(SearchResult {
                title: plain_text(result.title.as_deref().unwrap_or_default()),
                url,
                snippet: plain_text(result.description.as_deref().unwrap_or_default()),
            })
        })
        .collect())
}

/// The numbered list the model reads.
fn render(query: &str, results: &[SearchResult]) -> String {
    if results.is_empty() {
        return format!("No web results for \"{query}\".");
    }
    let mut text = format!("Web results for \"{query}\":\n");
    for (number, result) in results.iter().enumerate() {
        let title = if result.title.is_empty() {
            "(untitled)"
        } else {
            &result.title
        };
        text.push_str(&format!("\n{}. {title}\n   {}\n", number + 1, result.url));
        if !result.snippet.is_empty() {
            text.push_str(&format!("   {}\n", result.snippet));
        }
    }
    text
}

/// Text from a snippet that may hold HTML (Brave marks matches with `<strong>`): tags dropped,
/// entities decoded, whitespace collapsed.
fn plain_text(html: &str) -> String {
    let mut stripped = String::with_capacity(html.len());
    let mut rest = html;
    while let Some(open) = rest.find('<') {
        stripped.push_str(&rest[..open]);
        let tag = &rest[open..];
        let starts_tag = tag[1..]
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || matches!(c, '/' | '!' | '?'));
        match tag.find('>') {
            Some(close) if starts_tag => rest = &tag[close + 1..],
            // `a < b`, or a `<` never closed: text, not a tag.
            _ => {
                stripped.push('<');
                rest = &tag[1..];
            }
        }
    }
    stripped.push_str(rest);
    let decoded = decode_entities(&stripped);
    decoded.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Decodes numeric character references and the named entities snippets use; an unknown or
/// malformed one stays as written.
fn decode_entities(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let after = &rest[amp + 1..];
        let decoded = after
            .find(';')
            .filter(|&end| end <= 10)
            .and_then(|end| Some((entity(&after[..end])?, end)));
        match decoded {
            Some((c, end)) => {
                out.push(c);
                rest = &after[end + 1..];
            }
            None => {
                out.push('&');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

fn entity(name: &str) -> Option<char> {
    if let Some(number) = name.strip_prefix('#') {
        let code = match number.strip_prefix(['x', 'X']) {
            Some(hex) => u32::from_str_radix(hex, 16).ok()?,
            None => number.parse().ok()?,
        };
        return char::from_u32(code).filter(|c| *c != '\0');
    }
    Some(match name {
        "amp" => '&',
        "lt" => '<',
        "gt" => '>',
        "quot" => '"',
        "apos" => '\'',
        "nbsp" => ' ',
        "ndash" => '–',
        "mdash" => '—',
        "hellip" => '…',
        "lsquo" => '‘',
        "rsquo" => '’',
        "ldquo" => '“',
        "rdquo" => '”',
        "laquo" => '«',
        "raquo" => '»',
        "middot" => '·',
        "bull" => '•',
        "copy" => '©',
        "reg" => '®',
        "trade" => '™',
        "deg" => '°',
        "eacute" => 'é',
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snippets_lose_tags_and_entities() {
        assert_eq!(
            plain_text("The <strong>Rust</strong> Programming&nbsp;Language &amp; more&#8230;"),
            "The Rust Programming Language & more…"
        );
        assert_eq!(plain_text("a < b and c > d"), "a < b and c > d");
        assert_eq!(plain_text("&lt;script&gt; is text"), "<script> is text");
        assert_eq!(
            plain_text("x &unknown; y &#x1F600; &#0;"),
            "x &unknown; y 😀 &#0;"
        );
        assert_eq!(plain_text("line\n  <br/>break"), "line break");
        assert_eq!(plain_text("<b unclosed"), "<b unclosed");
    }

    #[test]
    fn brave_reset_takes_the_exhausted_window() {
        let headers = |remaining: &str, reset: &str| {
            let mut map = HeaderMap::new();
            map.insert("x-ratelimit-remaining", remaining.parse().expect("value"));
            map.insert("x-ratelimit-reset", reset.parse().expect("value"));
            map
        };
        assert_eq!(
            brave_reset(&headers("0, 1500", "1, 1419704")),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            brave_reset(&headers("0, 0", "1, 1419704")),
            Some(Duration::from_secs(1_419_704))
        );
        assert_eq!(brave_reset(&headers("3, 1500", "1, 1419704")), None);
        assert_eq!(brave_reset(&HeaderMap::new()), None);
    }

    #[test]
    fn api_messages_are_found_in_either_shape() {
        assert_eq!(
            api_message(
                r#"{"type":"ErrorResponse","error":{"code":"SUBSCRIPTION_TOKEN_INVALID","detail":"The provided subscription token is invalid.","status":422}}"#
            ),
            Some("The provided subscription token is invalid.".into())
        );
        assert_eq!(
            api_message(r#"{"detail":{"error":"Unauthorized: missing or invalid API key."}}"#),
            Some("Unauthorized: missing or invalid API key.".into())
        );
        assert_eq!(api_message("<html>oops</html>"), None);
    }

    #[test]
    fn config_is_checked_without_echoing_the_key() {
        let refused = |config: WebSearchConfig| {
            WebSearchProvider::new(config)
                .expect_err("invalid")
                .to_string()
        };
        let secret = "sk-very-secret\nkey";
        let message = refused(WebSearchConfig::new(SearchBackend::Brave, secret));
        assert!(message.contains("`api_key` cannot be sent"), "{message}");
        assert!(!message.contains("very-secret"), "{message}");
        let message = refused(WebSearchConfig::new(SearchBackend::Tavily, "  "));
        assert!(message.contains("`api_key` is empty"), "{message}");
        let message = refused(WebSearchConfig {
            max_results: 21,
            ..WebSearchConfig::new(SearchBackend::Brave, "k")
        });
        assert!(
            message.contains("`max_results` must be between 1 and 20"),
            "{message}"
        );
        let message = refused(WebSearchConfig {
            base_url: Some("ftp://example.com".into()),
            ..WebSearchConfig::new(SearchBackend::Brave, "k")
        });
        assert!(message.contains("`base_url`"), "{message}");
        let config = WebSearchConfig::new(SearchBackend::Brave, "sk-very-secret");
        assert!(!format!("{config:?}").contains("very-secret"));
        let provider = WebSearchProvider::new(config).expect("valid");
        assert!(!format!("{provider:?}").contains("very-secret"));
    }

    #[test]
    fn endpoints_append_the_api_path_to_the_base() {
        let url = |base: &str, backend| endpoint(base, backend).map(|u| u.to_string());
        assert_eq!(
            url("https://api.search.brave.com", SearchBackend::Brave),
            Ok("https://api.search.brave.com/res/v1/web/search".into())
        );
        assert_eq!(
            url("http://127.0.0.1:9/proxy/tavily/", SearchBackend::Tavily),
            Ok("http://127.0.0.1:9/proxy/tavily/search".into())
        );
        assert!(url("https://x.example/?a=b", SearchBackend::Brave).is_err());
    }
}
