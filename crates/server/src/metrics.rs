//! `GET /metrics`: Prometheus' text format, kept in memory by the server itself.
//!
//! - `corral_requests_total{method, route, status}` and `corral_request_duration_seconds`
//!   (a histogram by route): every request, by its route template (never the raw path, so ids
//!   do not explode the label space);
//! - `corral_tokens_total{model, provider, kind}`: prompt and completion tokens the models
//!   reported;
//! - `corral_model_errors_total{model, provider, kind}`: failed model calls by error kind.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

#[derive(Debug, Default)]
struct Histogram {
    /// Counts per bucket (not cumulative), and one past the last for `+Inf`.
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

#[derive(Debug, Default)]
struct Inner {
    requests: BTreeMap<(String, String, u16), u64>,
    durations: BTreeMap<String, Histogram>,
    /// By model, its provider, and prompt or completion.
    tokens: BTreeMap<(String, String, &'static str), u64>,
    /// By model, its provider, and error kind.
    errors: BTreeMap<(String, String, String), u64>,
}

#[derive(Debug, Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

/// A label value, escaped as the text format asks.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Metrics {
    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn request(&self, method: &str, route: &str, status: u16, seconds: f64) {
        let mut inner = self.inner();
        *inner
            .requests
            .entry((method.to_string(), route.to_string(), status))
            .or_default() += 1;
        let histogram = inner.durations.entry(route.to_string()).or_default();
        if histogram.counts.is_empty() {
            histogram.counts = vec![0; BUCKETS.len() + 1];
        }
        let bucket = BUCKETS
            .iter()
            .position(|b| seconds <= *b)
            .unwrap_or(BUCKETS.len());
        histogram.counts[bucket] += 1;
        histogram.sum += seconds;
        histogram.count += 1;
    }

    pub fn tokens(&self, model: &str, provider: &str, usage: Option<corral_core::Usage>) {
        let Some(usage) = usage else { return };
        let mut inner = self.inner();
        for (kind, n) in [
            ("prompt", usage.prompt_tokens),
            ("completion", usage.completion_tokens),
        ] {
            *inner
                .tokens
                .entry((model.to_string(), provider.to_string(), kind))
                .or_default() += u64::from(n);
        }
    }

    pub fn model_error(&self, model: &str, provider: &str, kind: corral_core::ErrorKind) {
        *self
            .inner()
            .errors
            .entry((model.to_string(), provider.to_string(), format!("{kind:?}")))
            .or_default() += 1;
    }

    /// Everything, in Prometheus' text format.
    pub fn render(&self) -> String {
        let inner = self.inner();
        let mut out = String::new();
        out.push_str("# HELP corral_requests_total HTTP requests served.\n# TYPE corral_requests_total counter\n");
        for ((method, route, status), n) in &inner.requests {
            let _ = writeln!(
                out,
                "corral_requests_total{{method=\"{}\",route=\"{}\",status=\"{status}\"}} {n}",
                label(method),
                label(route)
            );
        }
        out.push_str("# HELP corral_request_duration_seconds Time to the response head.\n# TYPE corral_request_duration_seconds histogram\n");
        for (route, h) in &inner.durations {
            let route = label(route);
            let mut cumulative = 0;
            for (i, bound) in BUCKETS.iter().enumerate() {
                cumulative += h.counts[i];
                let _ = writeln!(
                    out,
                    "corral_request_duration_seconds_bucket{{route=\"{route}\",le=\"{bound}\"}} {cumulative}"
                );
            }
            let _ = writeln!(
                out,
                "corral_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "corral_request_duration_seconds_sum{{route=\"{route}\"}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "corral_request_duration_seconds_count{{route=\"{route}\"}} {}",
                h.count
            );
        }
        out.push_str("# HELP corral_tokens_total Tokens the models reported.\n# TYPE corral_tokens_total counter\n");
        for ((model, provider, kind), n) in &inner.tokens {
            let _ = writeln!(
                out,
                "corral_tokens_total{{model=\"{}\",provider=\"{}\",kind=\"{kind}\"}} {n}",
                label(model),
                label(provider)
            );
        }
        out.push_str("# HELP corral_model_errors_total Failed model calls, by error kind.\n# TYPE corral_model_errors_total counter\n");
        for ((model, provider, kind), n) in &inner.errors {
            let _ = writeln!(
                out,
                "corral_model_errors_total{{model=\"{}\",provider=\"{}\",kind=\"{}\"}} {n}",
                label(model),
                label(provider),
                label(kind)
            );
        }
        out
    }
}

/// Middleware: counts and times every request by its route template.
pub async fn record(
    State(app): State<crate::routes::AppState>,
    request: Request,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let method = request.method().to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    app.metrics.request(
        &method,
        &route,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

pub async fn render(State(app): State<crate::routes::AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        app.metrics.render(),
    )
        .into_response()
}
