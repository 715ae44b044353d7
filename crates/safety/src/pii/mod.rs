//! Personal data and secrets: found, and blocked, redacted or reported.
//!
//! Spans in a violation's metadata are UTF-8 byte offsets into the checked text; the matched
//! values themselves are never put in metadata or logs.

mod detect;

pub use detect::{Detector, PiiKind, PiiMatch, redact};

use async_trait::async_trait;
use corral_core::{ContentOrigin, Message, Shield, ShieldError, Violation, ViolationLevel};
use serde::Deserialize;

/// What the shield does with what it finds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PiiMode {
    /// An error-level violation: the text does not go through.
    Block,
    /// A warning with the redacted text as the replacement, which agents use instead.
    Redact,
    /// A warning with the spans; the text goes through unchanged.
    #[default]
    Report,
}

/// The `params` of a `pii` shield.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PiiConfig {
    #[serde(default)]
    pub mode: PiiMode,
    /// The kinds to look for (`email`, `phone`, `payment_card`, `iban`, `national_id`,
    /// `ip_address`, `secret`); all when absent.
    #[serde(default)]
    pub kinds: Option<Vec<String>>,
    /// Overrides the level the mode gives.
    #[serde(default)]
    pub level: Option<ViolationLevel>,
    #[serde(default)]
    pub message: Option<String>,
}

impl Default for PiiConfig {
    fn default() -> Self {
        Self {
            mode: PiiMode::Report,
            kinds: None,
            level: None,
            message: None,
        }
    }
}

/// The PII shield.
#[derive(Debug)]
pub struct Pii {
    detector: Detector,
    mode: PiiMode,
    level: ViolationLevel,
    message: String,
}

impl Pii {
    pub fn new(config: PiiConfig) -> Result<Self, ShieldError> {
        let kinds = match &config.kinds {
            None => PiiKind::ALL.to_vec(),
            Some(names) => names
                .iter()
                .map(|name| {
                    PiiKind::from_name(name).ok_or_else(|| {
                        let known: Vec<&str> = PiiKind::ALL.iter().map(|k| k.name()).collect();
                        ShieldError::InvalidRequest(format!(
                            "kinds: `{name}` is not a kind of PII; the kinds are {}",
                            known.join(", ")
                        ))
                    })
                })
                .collect::<Result<Vec<_>, _>>()?,
        };
        if kinds.is_empty() {
            return Err(ShieldError::InvalidRequest(
                "kinds is empty: the shield would find nothing".into(),
            ));
        }
        let level = config.level.unwrap_or(match config.mode {
            PiiMode::Block => ViolationLevel::Error,
            PiiMode::Redact | PiiMode::Report => ViolationLevel::Warn,
        });
        let message = config.message.unwrap_or_else(|| {
            match config.mode {
                PiiMode::Block => "That contains personal data or a secret, so I can't take it.",
                PiiMode::Redact => "Personal data and secrets were redacted.",
                PiiMode::Report => "That contains personal data or a secret.",
            }
            .into()
        });
        Ok(Self {
            detector: Detector::new(&kinds),
            mode: config.mode,
            level,
            message,
        })
    }

    pub fn detector(&self) -> &Detector {
        &self.detector
    }

    fn judge(&self, text: &str) -> Option<Violation> {
        let found = self.detector.find(text);
        if found.is_empty() {
            return None;
        }
        let mut counts = serde_json::Map::new();
        for m in &found {
            let n = counts
                .get(m.kind.name())
                .and_then(|v| v.as_u64())
                .unwrap_or(0);
            counts.insert(m.kind.name().to_string(), (n + 1).into());
        }
        let spans: Vec<serde_json::Value> = found
            .iter()
            .map(|m| {
                serde_json::json!({
                    "kind": m.kind.name(), "detail": m.detail, "start": m.start, "end": m.end,
                })
            })
            .collect();
        let mut violation = Violation::new(self.level, self.message.clone())
            .with("kinds", counts)
            .with("spans", spans);
        if self.mode == PiiMode::Redact {
            violation = violation.with_replacement(redact(text, &found));
        }
        Some(violation)
    }
}

#[async_trait]
impl Shield for Pii {
    async fn check(&self, messages: &[Message]) -> Result<Option<Violation>, ShieldError> {
        Ok(self.judge(&crate::text::judged(messages)?))
    }

    async fn check_content(
        &self,
        text: &str,
        _origin: ContentOrigin,
    ) -> Result<Option<Violation>, ShieldError> {
        Ok(self.judge(text))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[tokio::test]
    async fn redact_mode_replaces_and_reports_spans_without_values() {
        let shield = Pii::new(PiiConfig {
            mode: PiiMode::Redact,
            ..PiiConfig::default()
        })
        .unwrap();
        let text = "Write to jane.doe@example.com or call +44 20 7946 0958.";
        let v = shield
            .check(&[Message::user(text)])
            .await
            .unwrap()
            .expect("found");
        assert_eq!(v.level, ViolationLevel::Warn);
        assert_eq!(
            v.replacement.as_deref(),
            Some("Write to [EMAIL] or call [PHONE].")
        );
        assert_eq!(
            v.metadata["kinds"],
            serde_json::json!({"email": 1, "phone": 1})
        );
        assert_eq!(v.metadata["spans"][0]["start"], 9);
        assert_eq!(v.metadata["spans"][0]["end"], 29);
        let json = serde_json::to_string(&v.metadata).unwrap();
        assert!(!json.contains("jane.doe"), "{json}");
    }

    #[tokio::test]
    async fn block_mode_is_an_error_and_kinds_narrow_the_search() {
        let shield = Pii::new(PiiConfig {
            mode: PiiMode::Block,
            kinds: Some(vec!["payment_card".into()]),
            ..PiiConfig::default()
        })
        .unwrap();
        let card = [Message::user("my card is 4111 1111 1111 1111")];
        let v = shield.check(&card).await.unwrap().expect("found");
        assert_eq!(v.level, ViolationLevel::Error);
        assert!(v.replacement.is_none());
        let email = [Message::user("mail me at jane.doe@example.com")];
        assert!(shield.check(&email).await.unwrap().is_none());
    }

    #[test]
    fn an_unknown_kind_is_named() {
        let err = Pii::new(PiiConfig {
            kinds: Some(vec!["email".into(), "passport".into()]),
            ..PiiConfig::default()
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("`passport` is not a kind of PII"), "{err}");
        assert!(err.contains("payment_card"), "{err}");
    }
}
