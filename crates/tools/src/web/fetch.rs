//! `http_fetch`: GET one http(s) URL and give the model its readable text — the visible text and
//! title of an HTML page (extracted by `corral-memory`'s HTML loader), or the text of a plain-text
//! or JSON response in the charset its `Content-Type` declares — cut to a character cap.
//!
//! Every connection goes through the address policy of [`super::guard`]; the body is read under
//! a byte cap and the whole download under one time limit; other content types are refused
//! before their body is read.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use corral_core::{
    ErrorKind, ProviderError, Tool, ToolContext, ToolError, ToolOutput, ToolRuntimeProvider,
    ToolSpec,
};
use corral_memory::load::{Format, LoadOptions, LoadProblem};
use encoding_rs::Encoding;
use reqwest::Url;
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, HeaderValue, LOCATION};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;

use super::guard::{AddressPolicy, GuardedResolver, NameResolver, Refused, SystemResolver};
use super::{
    BodyError, describe_seconds, error_body, error_chain, human_size, invalid_config,
    parse_arguments, parse_params, read_capped, retry_after, seconds, truncate_chars,
};

/// The provider type (and tool name) in `[[providers.tool_runtime]]`.
pub const HTTP_FETCH_PROVIDER_TYPE: &str = "http_fetch";
/// 2 MiB: the default [`HttpFetchConfig::max_bytes`].
pub const DEFAULT_MAX_BYTES: u64 = 2 * 1024 * 1024;
/// The default [`HttpFetchConfig::max_chars`].
pub const DEFAULT_FETCH_MAX_CHARS: usize = 20_000;

/// What `http_fetch` asks for: pages first, then text and JSON, then anything (which it refuses
/// by type when it arrives, with a message naming the type).
const ACCEPT_VALUE: &str = "text/html,application/xhtml+xml;q=0.9,text/plain;q=0.9,\
                            application/json;q=0.8,text/*;q=0.7,*/*;q=0.1";

/// The `config` table of an `http_fetch` provider.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpFetchConfig {
    /// Networks (`10.0.0.0/8`), addresses (`127.0.0.1`), host names (`intranet.example`) and
    /// domains (`*.corp.example`) that may be fetched although they are not public.
    #[serde(default)]
    pub allow: Vec<String>,
    /// Larger bodies are refused: up front when `Content-Length` says so, else while streaming.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: u64,
    /// The most characters of text the model is given; a call may ask for fewer.
    #[serde(default = "default_max_chars")]
    pub max_chars: usize,
    /// Seconds for the whole download: connecting, redirects and the body.
    #[serde(default = "default_timeout_s")]
    pub timeout_s: f64,
    /// Redirects followed before giving up; 0 follows none.
    #[serde(default = "default_max_redirects")]
    pub max_redirects: usize,
    /// The `User-Agent` header; by default `corral-http-fetch/<version>`.
    #[serde(default)]
    pub user_agent: Option<String>,
}

fn default_max_bytes() -> u64 {
    DEFAULT_MAX_BYTES
}
fn default_max_chars() -> usize {
    DEFAULT_FETCH_MAX_CHARS
}
fn default_timeout_s() -> f64 {
    20.0
}
fn default_max_redirects() -> usize {
    5
}

impl Default for HttpFetchConfig {
    fn default() -> Self {
        Self {
            allow: Vec::new(),
            max_bytes: default_max_bytes(),
            max_chars: default_max_chars(),
            timeout_s: default_timeout_s(),
            max_redirects: default_max_redirects(),
            user_agent: None,
        }
    }
}

/// The checked config.
#[derive(Debug)]
struct Settings {
    policy: Arc<AddressPolicy>,
    max_bytes: u64,
    max_chars: usize,
    timeout: Duration,
    max_redirects: usize,
    user_agent: HeaderValue,
}

/// The `http_fetch` tool-runtime provider: one tool, `http_fetch`.
///
/// A tool group's `params` may lower the character cap for that group: `{ max_chars = 5000 }`
/// (a larger value is held to the provider's `max_chars`).
pub struct HttpFetchProvider {
    settings: Arc<Settings>,
    resolver: Arc<dyn NameResolver>,
}

impl fmt::Debug for HttpFetchProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpFetchProvider")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl HttpFetchProvider {
    /// Checks `config`; connects to nothing.
    pub fn new(config: HttpFetchConfig) -> Result<Self, ProviderError> {
        let invalid = |message: String| invalid_config(HTTP_FETCH_PROVIDER_TYPE, message);
        let policy = AddressPolicy::new(&config.allow).map_err(invalid)?;
        let timeout = seconds(HTTP_FETCH_PROVIDER_TYPE, config.timeout_s, "timeout_s")?;
        if config.max_bytes == 0 {
            return Err(invalid("`max_bytes` must be at least 1".into()));
        }
        if config.max_chars == 0 {
            return Err(invalid("`max_chars` must be at least 1".into()));
        }
        let user_agent = match config.user_agent {
            Some(agent) if agent.trim().is_empty() => {
                return Err(invalid(
                    "`user_agent` is empty; leave it out for the default".into(),
                ));
            }
            Some(agent) => HeaderValue::from_str(agent.trim()).map_err(|_| {
                invalid(format!(
                    "`user_agent` = {agent:?} cannot be an HTTP header value (it holds a control \
                     or non-ASCII character)"
                ))
            })?,
            None => {
                HeaderValue::from_static(concat!("corral-http-fetch/", env!("CARGO_PKG_VERSION")))
            }
        };
        Ok(Self {
            settings: Arc::new(Settings {
                policy: Arc::new(policy),
                max_bytes: config.max_bytes,
                max_chars: config.max_chars,
                timeout,
                max_redirects: config.max_redirects,
                user_agent,
            }),
            resolver: Arc::new(SystemResolver),
        })
    }

    /// Resolves host names with `resolver` instead of the system's (its answers are still
    /// checked against the policy).
    pub fn with_resolver(mut self, resolver: Arc<dyn NameResolver>) -> Self {
        self.resolver = resolver;
        self
    }

    /// The tool, with the provider's character cap.
    pub fn tool(&self) -> Result<HttpFetch, ToolError> {
        self.tool_with_cap(self.settings.max_chars)
    }

    fn tool_with_cap(&self, max_chars: usize) -> Result<HttpFetch, ToolError> {
        let settings = &self.settings;
        let resolver =
            GuardedResolver::new(Arc::clone(&settings.policy), Arc::clone(&self.resolver));
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static(ACCEPT_VALUE));
        let client = reqwest::Client::builder()
            // A proxy would connect for us, to whatever address it resolves: no check would see it.
            .no_proxy()
            .dns_resolver(Arc::new(resolver))
            .redirect(Arc::clone(&settings.policy).redirect_policy(settings.max_redirects))
            .referer(false)
            .user_agent(settings.user_agent.clone())
            .default_headers(headers)
            .build()
            .map_err(|e| ToolError::Failed(format!("cannot set up the HTTP client: {e}")))?;
        let spec = ToolSpec::for_arguments::<FetchArgs>(
            HTTP_FETCH_PROVIDER_TYPE,
            format!(
                "Fetch a web page or document by its http(s) URL and read it as text: the page \
                 title, the final URL after redirects, and the visible text of an HTML page (or \
                 the text of a plain-text or JSON response). Text longer than {max_chars} \
                 characters is cut. Only public internet addresses can be fetched."
            ),
        );
        Ok(HttpFetch {
            spec,
            client,
            settings: Arc::clone(settings),
            max_chars,
        })
    }
}

/// A tool group's `params` for `http_fetch`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FetchParams {
    /// Lowers the provider's character cap for this group.
    #[serde(default)]
    max_chars: Option<usize>,
}

#[async_trait]
impl ToolRuntimeProvider for HttpFetchProvider {
    async fn tools(
        &self,
        params: &serde_json::Value,
        _context: &dyn ToolContext,
    ) -> Result<Vec<Arc<dyn Tool>>, ToolError> {
        let params: FetchParams = parse_params(HTTP_FETCH_PROVIDER_TYPE, params)?;
        let max_chars = match params.max_chars {
            Some(0) => {
                return Err(ToolError::InvalidArguments {
                    field: Some("params".into()),
                    message: format!(
                        "tool group params `max_chars` for `{HTTP_FETCH_PROVIDER_TYPE}` must be \
                         at least 1"
                    ),
                });
            }
            Some(n) => n.min(self.settings.max_chars),
            None => self.settings.max_chars,
        };
        Ok(vec![Arc::new(self.tool_with_cap(max_chars)?)])
    }
}

/// The arguments of `http_fetch`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct FetchArgs {
    /// The http or https URL to fetch.
    url: String,
    /// Return at most this many characters of text (the tool's own cap applies too).
    #[serde(default)]
    max_chars: Option<usize>,
}

/// The `http_fetch` tool.
pub struct HttpFetch {
    spec: ToolSpec,
    client: reqwest::Client,
    settings: Arc<Settings>,
    max_chars: usize,
}

impl fmt::Debug for HttpFetch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpFetch")
            .field("settings", &self.settings)
            .field("max_chars", &self.max_chars)
            .finish_non_exhaustive()
    }
}

/// A downloaded body and what the response said about it.
struct Download {
    final_url: Url,
    status: u16,
    content_type: ContentType,
    body: Vec<u8>,
}

#[async_trait]
impl Tool for HttpFetch {
    fn spec(&self) -> &ToolSpec {
        &self.spec
    }

    async fn call(&self, arguments: serde_json::Value) -> Result<ToolOutput, ToolError> {
        let args: FetchArgs = parse_arguments(arguments)?;
        let url = parse_url(&args.url)?;
        let max_chars = match args.max_chars {
            Some(0) => {
                return Err(ToolError::InvalidArguments {
                    field: Some("max_chars".into()),
                    message: "must be at least 1".into(),
                });
            }
            Some(n) => n.min(self.max_chars),
            None => self.max_chars,
        };
        self.settings
            .policy
            .check_url(&url)
            .map_err(|refused| refusal(&url, &refused))?;
        tracing::debug!(%url, "fetching");
        let timeout = self.settings.timeout;
        let download = match tokio::time::timeout(timeout, self.download(&url)).await {
            Ok(download) => download?,
            Err(_) => {
                tracing::debug!(%url, ?timeout, "fetch timed out");
                return Err(ProviderError::new(
                    ErrorKind::Timeout,
                    format!(
                        "{url} did not finish downloading within {} (the time limit)",
                        describe_seconds(timeout)
                    ),
                )
                .with_provider(HTTP_FETCH_PROVIDER_TYPE)
                .into());
            }
        };
        let final_url = download.final_url.clone();
        let status = download.status;
        let content_type = download.content_type.clone();
        let readable = tokio::task::spawn_blocking(move || readable_text(download))
            .await
            .map_err(|e| {
                ToolError::Failed(format!("reading the text of {final_url} failed: {e}"))
            })??;
        let total = readable.text.chars().count();
        let shown = truncate_chars(&readable.text, max_chars);
        let truncated = shown.len() < readable.text.len();
        let mut content = String::new();
        if let Some(title) = &readable.title {
            content.push_str(&format!("Title: {title}\n"));
        }
        content.push_str(&format!("URL: {final_url}\n"));
        if final_url != url {
            content.push_str(&format!("(redirected from {url})\n"));
        }
        content.push('\n');
        content.push_str(shown);
        if truncated {
            content.push_str(&format!(
                "\n\n[Cut here: this is the first {} of {total} characters of text.]",
                shown.chars().count()
            ));
        }
        tracing::debug!(%url, %final_url, total, truncated, "fetched");
        let mut metadata = serde_json::Map::new();
        metadata.insert("url".into(), json!(url.as_str()));
        metadata.insert("final_url".into(), json!(final_url.as_str()));
        metadata.insert("status".into(), json!(status));
        metadata.insert("content_type".into(), json!(content_type.essence));
        metadata.insert("title".into(), json!(readable.title));
        metadata.insert("characters".into(), json!(total));
        metadata.insert("truncated".into(), json!(truncated));
        Ok(ToolOutput { content, metadata })
    }
}

impl HttpFetch {
    /// Sends the request and reads the body under the byte cap; refuses a failed status or a
    /// content type it cannot read before reading the body.
    async fn download(&self, url: &Url) -> Result<Download, ToolError> {
        let response = self
            .client
            .get(url.clone())
            .send()
            .await
            .map_err(|e| transport_error(url, &e))?;
        let final_url = response.url().clone();
        let status = response.status();
        if status.is_redirection() {
            // The client hands back a redirect it cannot follow (a `Location` that is no http
            // URL, such as `file:///etc/passwd`) instead of asking the redirect policy.
            return Err(self.unfollowed_redirect(&final_url, response.headers()));
        }
        if !status.is_success() {
            let wait = retry_after(response.headers());
            let reason = status.canonical_reason().unwrap_or("error");
            let body = error_body(response).await;
            let mut error = ProviderError::new(
                ErrorKind::from_http_status(status.as_u16()),
                format!("{final_url} answered HTTP {} {reason}", status.as_u16()),
            )
            .with_provider(HTTP_FETCH_PROVIDER_TYPE)
            .with_http(status.as_u16(), body);
            if let Some(wait) = wait {
                error = error.with_retry_after(wait);
            }
            return Err(error.into());
        }
        let content_type = ContentType::from_headers(response.headers());
        if content_type.kind() == Kind::Unsupported {
            return Err(ToolError::Failed(format!(
                "{final_url} is `{}`, which http_fetch cannot read; it reads HTML pages, plain \
                 text and JSON",
                content_type.essence.as_deref().unwrap_or_default()
            )));
        }
        let limit = self.settings.max_bytes;
        if let Some(length) = response.content_length()
            && length > limit
        {
            return Err(too_large(&final_url, Some(length), limit));
        }
        let body = read_capped(response, limit).await.map_err(|e| match e {
            BodyError::TooLarge { limit } => too_large(&final_url, None, limit),
            BodyError::Transport(e) => transport_error(&final_url, &e),
        })?;
        Ok(Download {
            final_url,
            status: status.as_u16(),
            content_type,
            body,
        })
    }

    fn unfollowed_redirect(&self, url: &Url, headers: &HeaderMap) -> ToolError {
        let location = headers
            .get(LOCATION)
            .and_then(|value| value.to_str().ok())
            .map(str::trim)
            .filter(|location| !location.is_empty());
        let Some(location) = location else {
            return ToolError::Failed(format!(
                "{url} answered with a redirect that has no `Location` to follow"
            ));
        };
        match url.join(location) {
            Ok(next) => match self.settings.policy.check_url(&next) {
                Err(refused) => refusal(
                    url,
                    &Refused::from_message(format!(
                        "it redirected to {next}, which is refused: {refused}"
                    )),
                ),
                Ok(()) => ToolError::Failed(format!(
                    "{url} redirected to {next}, which could not be followed"
                )),
            },
            Err(e) => ToolError::Failed(format!(
                "{url} redirected to `{location}`, which is not a URL: {e}"
            )),
        }
    }
}

/// The URL argument, parsed; a wrong scheme or a credential is the model's to fix.
fn parse_url(text: &str) -> Result<Url, ToolError> {
    let invalid = |message: String| ToolError::InvalidArguments {
        field: Some("url".into()),
        message,
    };
    let url = Url::parse(text.trim())
        .map_err(|e| invalid(format!("`{text}` is not an absolute URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid(format!(
            "`{text}` is a `{}:` URL; only http and https URLs can be fetched",
            url.scheme()
        )));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid(
            "URLs with a user name or password are not fetched; leave them out".into(),
        ));
    }
    Ok(url)
}

fn refusal(url: &Url, refused: &Refused) -> ToolError {
    tracing::info!(%url, %refused, "refused a fetch");
    ToolError::Failed(format!("refused to fetch {url}: {refused}"))
}

fn too_large(url: &Url, length: Option<u64>, limit: u64) -> ToolError {
    let size = match length {
        Some(length) => format!("{} (its Content-Length)", human_size(length)),
        None => "more than that".to_owned(),
    };
    ToolError::Failed(format!(
        "{url} is too large to fetch: the limit is {}, and it is {size}",
        human_size(limit)
    ))
}

fn transport_error(url: &Url, error: &reqwest::Error) -> ToolError {
    if let Some(refused) = Refused::find(error) {
        return refusal(url, refused);
    }
    let (kind, what) = if error.is_timeout() {
        (ErrorKind::Timeout, "timed out")
    } else if error.is_connect() {
        (ErrorKind::Transient, "cannot connect")
    } else if error.is_redirect() {
        (ErrorKind::Permanent, "a redirect failed")
    } else {
        (ErrorKind::Transient, "the connection failed")
    };
    tracing::debug!(%url, error = %error_chain(error), "fetch failed");
    ProviderError::new(
        kind,
        format!("fetching {url} failed: {what}: {}", error_chain(error)),
    )
    .with_provider(HTTP_FETCH_PROVIDER_TYPE)
    .into()
}

/// How a body is read, by its media type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Html,
    Text,
    /// No `Content-Type`: decided by looking at the body.
    Unknown,
    Unsupported,
}

/// A parsed `Content-Type`: the media type, lower case, and the charset it names, if known.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ContentType {
    essence: Option<String>,
    charset: Option<&'static Encoding>,
}

/// Media types read as text besides `text/*`, `*/*+json` and `*/*+xml`.
const TEXT_TYPES: &[&str] = &[
    "application/json",
    "application/xml",
    "application/javascript",
    "application/x-javascript",
    "application/ecmascript",
    "application/x-ndjson",
    "application/yaml",
    "application/x-yaml",
    "application/toml",
    "application/x-sh",
];

impl ContentType {
    fn from_headers(headers: &HeaderMap) -> Self {
        let Some(value) = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
            return Self {
                essence: None,
                charset: None,
            };
        };
        Self::parse(value)
    }

    fn parse(value: &str) -> Self {
        let mut parts = value.split(';');
        let essence = parts
            .next()
            .map(|essence| essence.trim().to_ascii_lowercase())
            .filter(|essence| !essence.is_empty());
        let charset = parts.find_map(|param| {
            let (key, label) = param.split_once('=')?;
            if !key.trim().eq_ignore_ascii_case("charset") {
                return None;
            }
            let label = label.trim().trim_matches(|c| c == '"' || c == '\'');
            let encoding = Encoding::for_label(label.as_bytes());
            if encoding.is_none() {
                tracing::debug!(label, "unknown charset in Content-Type; reading as UTF-8");
            }
            encoding
        });
        Self { essence, charset }
    }

    fn kind(&self) -> Kind {
        let Some(essence) = self.essence.as_deref() else {
            return Kind::Unknown;
        };
        match essence {
            "text/html" | "application/xhtml+xml" => Kind::Html,
            _ if essence.starts_with("text/")
                || essence.ends_with("+json")
                || essence.ends_with("+xml")
                || TEXT_TYPES.contains(&essence) =>
            {
                Kind::Text
            }
            // Servers that do not know say this; the body decides.
            "application/octet-stream" | "application/unknown" | "unknown/unknown" => Kind::Unknown,
            _ => Kind::Unsupported,
        }
    }
}

/// The text the model reads.
#[derive(Debug)]
struct Readable {
    title: Option<String>,
    text: String,
}

/// Decodes and extracts the text of a download (CPU work: runs on a blocking thread).
fn readable_text(download: Download) -> Result<Readable, ToolError> {
    let Download {
        final_url,
        content_type,
        body,
        ..
    } = download;
    let format = match content_type.kind() {
        Kind::Html => Format::Html,
        Kind::Unknown if looks_like_html(&body) => Format::Html,
        Kind::Text | Kind::Unknown | Kind::Unsupported => Format::Text,
    };
    let body = transcode(body, content_type.charset).map_err(|encoding| {
        ToolError::Failed(format!(
            "{final_url} is not valid {encoding} text, which its Content-Type declares; it \
             cannot be read without guessing"
        ))
    })?;
    let extracted = corral_memory::load::extract(format, body, &LoadOptions::default())
        .map_err(|problem| unreadable(&final_url, &problem))?;
    let title = extracted
        .title
        .map(|title| title.trim().to_owned())
        .filter(|title| !title.is_empty());
    Ok(Readable {
        title,
        text: extracted.text,
    })
}

/// Bytes the extractors read: UTF-8 as it came (they strip a UTF-8 BOM, and the HTML one falls
/// back to a `<meta charset>`); any other charset — from a byte-order mark first, as browsers
/// do, then from the `Content-Type` — decoded strictly to UTF-8. Invalid bytes are an error
/// naming the charset: replacing them would hand the model text that is not what the page says.
fn transcode(body: Vec<u8>, declared: Option<&'static Encoding>) -> Result<Vec<u8>, &'static str> {
    let (encoding, bom) = match Encoding::for_bom(&body) {
        Some((encoding, bom)) => (Some(encoding), bom),
        None => (declared, 0),
    };
    match encoding {
        None => Ok(body),
        Some(encoding) if encoding == encoding_rs::UTF_8 => Ok(body),
        Some(encoding) => body
            .get(bom..)
            .and_then(|rest| encoding.decode_without_bom_handling_and_without_replacement(rest))
            .map(|text| text.into_owned().into_bytes())
            .ok_or(encoding.name()),
    }
}

/// Whether a body without a `Content-Type` is HTML: it starts (after whitespace and a BOM) with
/// a doctype, `<html`, or a comment or `<head>` as pages do.
fn looks_like_html(body: &[u8]) -> bool {
    let head = body.get(..512).unwrap_or(body);
    let head = head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(head);
    let start = head
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(head.len());
    let lower = head.get(start..).unwrap_or_default().to_ascii_lowercase();
    [
        "<!doctype html",
        "<html",
        "<head",
        "<!--",
        "<body",
        "<title",
    ]
    .iter()
    .any(|tag| lower.starts_with(tag.as_bytes()))
}

fn unreadable(url: &Url, problem: &LoadProblem) -> ToolError {
    ToolError::Failed(match problem {
        LoadProblem::Binary { offset } => {
            format!("{url} is binary data, not text (a NUL byte at offset {offset})")
        }
        LoadProblem::InvalidUtf8 { offset } => format!(
            "{url} is not valid UTF-8 text (an invalid byte at offset {offset}) and declares no \
             other charset"
        ),
        LoadProblem::Empty => format!(
            "{url} has no readable text (a page that builds its content with JavaScript shows \
             none here: http_fetch does not run scripts)"
        ),
        other => format!("cannot read {url}: {other}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_decide_how_a_body_is_read() {
        let kind = |value: &str| ContentType::parse(value).kind();
        assert_eq!(kind("text/html; charset=utf-8"), Kind::Html);
        assert_eq!(kind("TEXT/HTML"), Kind::Html);
        assert_eq!(kind("application/xhtml+xml"), Kind::Html);
        assert_eq!(kind("text/plain"), Kind::Text);
        assert_eq!(kind("text/markdown"), Kind::Text);
        assert_eq!(kind("application/json"), Kind::Text);
        assert_eq!(kind("application/problem+json"), Kind::Text);
        assert_eq!(kind("application/rss+xml"), Kind::Text);
        assert_eq!(kind("application/octet-stream"), Kind::Unknown);
        assert_eq!(kind("application/pdf"), Kind::Unsupported);
        assert_eq!(kind("image/png"), Kind::Unsupported);
    }

    #[test]
    fn charsets_come_from_the_content_type() {
        let charset = |value: &str| ContentType::parse(value).charset.map(Encoding::name);
        assert_eq!(
            charset("text/plain; charset=ISO-8859-1"),
            Some("windows-1252")
        );
        assert_eq!(
            charset("text/plain;charset=\"shift_jis\""),
            Some("Shift_JIS")
        );
        assert_eq!(charset("text/html; Charset=UTF-8"), Some("UTF-8"));
        assert_eq!(charset("text/html; charset=no-such-thing"), None);
        assert_eq!(charset("text/html"), None);
    }

    #[test]
    fn transcoding_is_strict_and_honours_a_bom() {
        let latin1 = encoding_rs::WINDOWS_1252;
        assert_eq!(
            transcode(b"caf\xe9".to_vec(), Some(latin1)),
            Ok("café".as_bytes().to_vec())
        );
        // UTF-8 is left to the extractor, which reports an offset.
        assert_eq!(
            transcode(b"caf\xe9".to_vec(), None),
            Ok(b"caf\xe9".to_vec())
        );
        // A BOM wins over the header.
        let utf16: Vec<u8> = b"\xFF\xFEh\0i\0".to_vec();
        assert_eq!(transcode(utf16, Some(latin1)), Ok(b"hi".to_vec()));
        assert_eq!(
            transcode(b"\x82\xa0\xff".to_vec(), Some(encoding_rs::SHIFT_JIS)),
            Err("Shift_JIS")
        );
    }

    #[test]
    fn html_is_recognised_without_a_content_type() {
        assert!(looks_like_html(b"  <!DOCTYPE html><html></html>"));
        assert!(looks_like_html(b"\xEF\xBB\xBF<html lang=en>"));
        assert!(!looks_like_html(b"{\"a\": 1}"));
        assert!(!looks_like_html(b"plain words"));
    }

    #[test]
    fn config_errors_name_the_key() {
        let refused = |config: HttpFetchConfig| {
            HttpFetchProvider::new(config)
                .expect_err("invalid")
                .to_string()
        };
        let message = refused(HttpFetchConfig {
            timeout_s: 0.0,
            ..HttpFetchConfig::default()
        });
        assert!(message.starts_with("http_fetch: `timeout_s`"), "{message}");
        let message = refused(HttpFetchConfig {
            allow: vec!["10.0.0.0/8".into(), "http://x".into()],
            ..HttpFetchConfig::default()
        });
        assert!(message.contains("`allow[1]`"), "{message}");
        let message = refused(HttpFetchConfig {
            user_agent: Some("bad\nagent".into()),
            ..HttpFetchConfig::default()
        });
        assert!(message.contains("`user_agent`"), "{message}");
        let message = refused(HttpFetchConfig {
            max_bytes: 0,
            ..HttpFetchConfig::default()
        });
        assert!(message.contains("`max_bytes`"), "{message}");
    }

    #[test]
    fn unknown_config_keys_are_errors() {
        let error = serde_json::from_value::<HttpFetchConfig>(json!({"alow": []}))
            .expect_err("unknown key");
        assert!(
            error.to_string().contains("unknown field `alow`"),
            "{error}"
        );
    }

    #[test]
    fn url_arguments_are_checked_before_anything_is_sent() {
        let field_error = |text: &str| match parse_url(text) {
            Err(ToolError::InvalidArguments { field, message }) => {
                assert_eq!(field.as_deref(), Some("url"));
                message
            }
            other => panic!("{text}: {other:?}"),
        };
        assert!(field_error("example.com/page").contains("not an absolute URL"));
        assert!(field_error("file:///etc/passwd").contains("`file:` URL"));
        assert!(field_error("gopher://example.com/").contains("`gopher:` URL"));
        assert!(field_error("https://me:secret@example.com/").contains("user name or password"));
        assert!(parse_url("https://example.com/a?b=c").is_ok());
    }
}
