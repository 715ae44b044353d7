//! The web tools (cargo feature `web`), each a tool-runtime provider type:
//!
//! - `http_fetch` ([`HttpFetchProvider`], [`fetch`]): GET a URL and give the model its readable
//!   text, behind the address policy of [`guard`] so a model cannot reach the machine's own
//!   network (server-side request forgery).
//! - `web_search` ([`WebSearchProvider`], [`search`]): a query to Brave or Tavily, results
//!   normalised to title, URL and snippet.
//!
//! This module holds what both share: argument parsing, config checks, reading a body under a
//! size cap, and `Retry-After`.

pub mod fetch;
pub mod guard;
pub mod search;

use std::time::Duration;

use corral_core::{ErrorKind, ProviderError, ToolError};
use reqwest::header::HeaderMap;
use serde::de::DeserializeOwned;

pub use fetch::{
    DEFAULT_FETCH_MAX_CHARS, DEFAULT_MAX_BYTES, HTTP_FETCH_PROVIDER_TYPE, HttpFetch,
    HttpFetchConfig, HttpFetchProvider,
};
pub use guard::{AddressPolicy, Blocked, NameResolver, Refused, SystemResolver, classify};
pub use search::{
    SearchBackend, SearchResult, WEB_SEARCH_PROVIDER_TYPE, WebSearch, WebSearchConfig,
    WebSearchProvider,
};

/// Deserializes a tool's arguments, naming the offending field (`url`) when they do not fit.
fn parse_arguments<A: DeserializeOwned>(arguments: serde_json::Value) -> Result<A, ToolError> {
    // Models often send `null` for "no arguments"; the field errors then name what is missing.
    let arguments = if arguments.is_null() {
        serde_json::Value::Object(serde_json::Map::new())
    } else {
        arguments
    };
    serde_path_to_error::deserialize(arguments).map_err(|e| {
        let path = e.path().to_string();
        ToolError::InvalidArguments {
            field: (path != ".").then_some(path),
            message: e.into_inner().to_string(),
        }
    })
}

/// Deserializes a tool group's `params` (`null` or a table), naming the provider type and key.
fn parse_params<P: DeserializeOwned>(
    provider_type: &str,
    params: &serde_json::Value,
) -> Result<P, ToolError> {
    let params = if params.is_null() {
        serde_json::Value::Object(serde_json::Map::new())
    } else {
        params.clone()
    };
    serde_path_to_error::deserialize(params).map_err(|e| {
        let path = e.path().to_string();
        let at = if path == "." {
            String::new()
        } else {
            format!(" `{path}`")
        };
        ToolError::InvalidArguments {
            field: Some("params".into()),
            message: format!(
                "tool group params{at} for `{provider_type}`: {}",
                e.into_inner()
            ),
        }
    })
}

fn invalid_config(provider_type: &str, message: impl Into<String>) -> ProviderError {
    ProviderError::new(ErrorKind::InvalidRequest, message).with_provider(provider_type)
}

/// A positive number of seconds from the config key `key`.
fn seconds(provider_type: &str, value: f64, key: &str) -> Result<Duration, ProviderError> {
    if !(value.is_finite() && value > 0.0) {
        return Err(invalid_config(
            provider_type,
            format!("`{key}` must be a positive number of seconds, not {value}"),
        ));
    }
    Ok(Duration::try_from_secs_f64(value).unwrap_or(Duration::MAX))
}

/// `2.5 s`, `20 s`: durations in messages.
fn describe_seconds(duration: Duration) -> String {
    format!("{} s", duration.as_secs_f64())
}

/// `2.0 MiB`, `512 bytes`: sizes in messages.
fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} bytes");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = UNITS[0];
    for next in &UNITS[1..] {
        if value < 1024.0 {
            break;
        }
        value /= 1024.0;
        unit = next;
    }
    format!("{value:.1} {unit}")
}

/// Why a body could not be read whole.
#[derive(Debug)]
enum BodyError {
    /// It grew past the limit while streaming (more than `limit` bytes arrived).
    TooLarge {
        limit: u64,
    },
    Transport(reqwest::Error),
}

/// Reads a response body, stopping as soon as more than `limit` bytes have arrived, so a huge
/// or endless body costs at most `limit` bytes of memory.
async fn read_capped(mut response: reqwest::Response, limit: u64) -> Result<Vec<u8>, BodyError> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(BodyError::Transport)? {
        if (body.len() as u64).saturating_add(chunk.len() as u64) > limit {
            return Err(BodyError::TooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The first `limit` bytes of an error body, as text, for [`ProviderError::body`]: enough to
/// debug, never a whole page.
async fn error_body(response: reqwest::Response) -> String {
    const LIMIT: usize = 2048;
    let mut response = response;
    let mut body = Vec::new();
    while body.len() < LIMIT {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            Ok(None) => break,
            Err(e) => {
                tracing::debug!(error = %e, "the error body could not be read whole");
                break;
            }
        }
    }
    body.truncate(LIMIT);
    String::from_utf8_lossy(&body).into_owned()
}

/// The wait a server asks for in `Retry-After`, when it gives seconds. (The HTTP-date form is
/// not read: the search APIs and the pages fetched here send seconds when they send anything.)
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    let seconds = value.trim().parse::<f64>().ok()?;
    (seconds.is_finite() && seconds >= 0.0)
        .then(|| Duration::try_from_secs_f64(seconds).unwrap_or(Duration::MAX))
}

/// The error and its sources, which say what actually happened ("connection refused").
fn error_chain(error: &dyn std::error::Error) -> String {
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

/// The first `max_chars` characters of `text`, ended at a line break or space near the cut
/// when there is one, so the model does not read half a word.
fn truncate_chars(text: &str, max_chars: usize) -> &str {
    let Some((cut, _)) = text.char_indices().nth(max_chars) else {
        return text;
    };
    let head = &text[..cut];
    // Within the last tenth (at most 200 characters): far enough to keep nearly everything.
    let window = (max_chars / 10).min(200);
    let floor = head
        .char_indices()
        .rev()
        .nth(window)
        .map_or(0, |(index, _)| index);
    match head[floor..].rfind(['\n', ' ']) {
        Some(at) if floor + at > 0 => head[..floor + at].trim_end(),
        _ => head,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_ends_at_a_word_boundary_near_the_cut() {
        assert_eq!(truncate_chars("short", 10), "short");
        assert_eq!(truncate_chars("exactly ten", 11), "exactly ten");
        let text = "word ".repeat(100);
        let cut = truncate_chars(&text, 103);
        assert!(cut.len() <= 103 && cut.len() >= 90, "{}", cut.len());
        assert!(cut.ends_with("word"), "{cut:?}");
        // No space near the cut: cut mid-word, on a character boundary.
        assert_eq!(truncate_chars("ééééééééééé", 3), "ééé");
    }

    #[test]
    fn retry_after_reads_seconds() {
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert(reqwest::header::RETRY_AFTER, "7".parse().expect("value"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
        headers.insert(reqwest::header::RETRY_AFTER, "soon".parse().expect("value"));
        assert_eq!(retry_after(&headers), None);
    }

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(human_size(512), "512 bytes");
        assert_eq!(human_size(2 * 1024 * 1024), "2.0 MiB");
    }
}
