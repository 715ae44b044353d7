//! Limits every tool runs under, whoever wrote it: a time limit per call and a cap on the output
//! the model is given (a tool that returns a whole web page must not fill the context).

use std::time::Duration;

use async_trait::async_trait;
use corral_core::{Tool, ToolError, ToolOutput, ToolSpec};
use serde::{Deserialize, Serialize};

/// Per-call limits.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Seconds a call may take before it fails with [`ToolError::Timeout`].
    #[serde(default = "default_timeout_s")]
    pub timeout_s: f64,
    /// Characters of output the model is given; longer output is cut with a note saying so.
    #[serde(default = "default_max_output_chars")]
    pub max_output_chars: usize,
}

fn default_timeout_s() -> f64 {
    60.0
}
fn default_max_output_chars() -> usize {
    16_000
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            timeout_s: default_timeout_s(),
            max_output_chars: default_max_output_chars(),
        }
    }
}

impl Limits {
    /// Checks the values; `origin` names where they came from in the error.
    pub fn validate(&self, origin: &str) -> Result<(), String> {
        if !(self.timeout_s.is_finite() && self.timeout_s > 0.0) {
            return Err(format!(
                "{origin}: `timeout_s` must be a positive number of seconds, not {}",
                self.timeout_s
            ));
        }
        if self.max_output_chars == 0 {
            return Err(format!("{origin}: `max_output_chars` must be at least 1"));
        }
        Ok(())
    }

    pub fn timeout(&self) -> Duration {
        Duration::try_from_secs_f64(self.timeout_s).unwrap_or(Duration::MAX)
    }
}

/// A tool that runs under [`Limits`].
pub struct Limited<T> {
    inner: T,
    limits: Limits,
}

impl<T: Tool> std::fmt::Debug for Limited<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limited")
            .field("tool", &self.inner.spec().name)
            .field("limits", &self.limits)
            .finish()
    }
}

impl<T: Tool> Limited<T> {
    pub fn new(inner: T, limits: Limits) -> Self {
        Self { inner, limits }
    }
}

#[async_trait]
impl<T: Tool> Tool for Limited<T> {
    fn spec(&self) -> &ToolSpec {
        self.inner.spec()
    }

    async fn call(&self, arguments: serde_json::Value) -> Result<ToolOutput, ToolError> {
        let timeout = self.limits.timeout();
        let mut output = tokio::time::timeout(timeout, self.inner.call(arguments))
            .await
            .map_err(|_| ToolError::Timeout(timeout))??;
        truncate(&mut output, self.limits.max_output_chars);
        Ok(output)
    }
}

/// Cuts the content at a character boundary and says so, in the text the model reads and in the
/// metadata (`truncated_from_chars`).
fn truncate(output: &mut ToolOutput, max_chars: usize) {
    let Some((cut, _)) = output.content.char_indices().nth(max_chars) else {
        return;
    };
    let total = output.content.chars().count();
    output.content.truncate(cut);
    output.content.push_str(&format!(
        "\n[output cut: {max_chars} of {total} characters shown]"
    ));
    output
        .metadata
        .insert("truncated_from_chars".into(), total.into());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tool_fn;
    use serde::Deserialize;
    use serde_json::json;

    #[derive(Deserialize, schemars::JsonSchema)]
    struct Args {
        text: String,
        wait_ms: u64,
    }

    fn echo() -> impl Tool {
        tool_fn("echo", "Echoes after a wait", |args: Args| async move {
            tokio::time::sleep(Duration::from_millis(args.wait_ms)).await;
            Ok(ToolOutput::text(args.text))
        })
        .expect("tool")
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_call_times_out() {
        let limits = Limits {
            timeout_s: 1.0,
            ..Limits::default()
        };
        let tool = Limited::new(echo(), limits);
        let fast = tool.call(json!({"text": "hi", "wait_ms": 500})).await;
        assert_eq!(fast.expect("fast call").content, "hi");
        match tool.call(json!({"text": "hi", "wait_ms": 5_000})).await {
            Err(ToolError::Timeout(after)) => assert_eq!(after, Duration::from_secs(1)),
            other => panic!("expected a timeout, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn long_output_is_cut_at_a_character_boundary_with_a_note() {
        let limits = Limits {
            max_output_chars: 3,
            ..Limits::default()
        };
        let tool = Limited::new(echo(), limits);
        let out = tool
            .call(json!({"text": "héllo wörld", "wait_ms": 0}))
            .await
            .expect("runs");
        assert!(out.content.starts_with("hél\n"), "{}", out.content);
        assert!(
            out.content.contains("3 of 11 characters"),
            "{}",
            out.content
        );
        assert_eq!(out.metadata["truncated_from_chars"], json!(11));
        let short = tool
            .call(json!({"text": "hé", "wait_ms": 0}))
            .await
            .expect("runs");
        assert_eq!(short.content, "hé");
    }

    #[test]
    fn nonsense_limits_are_refused() {
        let bad = Limits {
            timeout_s: -1.0,
            ..Limits::default()
        };
        assert!(bad.validate("tool group `x`").is_err());
    }
}
