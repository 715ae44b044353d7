//! Measuring a shield on a labelled set: detection rate on the examples it should flag, false
//! positives on the ones it should not.
//!
//! The set is JSON lines: `{"id", "text", "label": "harmful" | "injection" | "benign", "category",
//! "origin": "input" | "document" | "tool_result"}`. The crate ships one in `data/redteam.jsonl`
//! ([`BUNDLED`]).

use std::path::Path;

use corral_core::{ContentOrigin, Message, Shield, ShieldError};
use serde::Deserialize;

/// The red-team set committed with the crate; the heuristics' weights and thresholds were chosen
/// on it.
pub const BUNDLED: &str = include_str!("../data/redteam.jsonl");

/// A second set of injections and look-alikes, written without sight of the detector or of
/// [`BUNDLED`] and never tuned on: its rates are the out-of-sample estimate.
pub const HELDOUT: &str = include_str!("../data/heldout.jsonl");

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Label {
    Harmful,
    Injection,
    Benign,
}

/// Where the text would reach a model from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// A user's request: checked with [`Shield::check`].
    Input,
    /// A retrieved document: checked with [`Shield::check_content`].
    Document,
    /// A tool's result: checked with [`Shield::check_content`].
    ToolResult,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Example {
    pub id: String,
    pub text: String,
    pub label: Label,
    pub category: String,
    pub origin: Origin,
}

/// Reads a set; a bad line is reported with its number.
pub fn parse(source: &str, jsonl: &str) -> Result<Vec<Example>, String> {
    jsonl
        .lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| serde_json::from_str(line).map_err(|e| format!("{source}:{}: {e}", i + 1)))
        .collect()
}

pub fn load(path: &Path) -> Result<Vec<Example>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    parse(&path.display().to_string(), &text)
}

/// Whether `shield` flags `example` (any violation, at any level).
pub async fn flags(shield: &dyn Shield, example: &Example) -> Result<bool, ShieldError> {
    let verdict = match example.origin {
        Origin::Input => shield.check(&[Message::user(&example.text)]).await?,
        Origin::Document => {
            shield
                .check_content(&example.text, ContentOrigin::Retrieved)
                .await?
        }
        Origin::ToolResult => {
            shield
                .check_content(&example.text, ContentOrigin::ToolResult)
                .await?
        }
    };
    Ok(verdict.is_some())
}

/// A shield's rates on a set.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rates {
    /// Examples the shield should flag, and how many it did.
    pub positives: usize,
    pub detected: usize,
    /// Examples it should pass, and how many it flagged anyway.
    pub negatives: usize,
    pub false_positives: usize,
    /// The ids it got wrong.
    pub missed: Vec<String>,
    pub wrongly_flagged: Vec<String>,
}

impl Rates {
    pub fn detection_rate(&self) -> f64 {
        ratio(self.detected, self.positives)
    }

    pub fn false_positive_rate(&self) -> f64 {
        ratio(self.false_positives, self.negatives)
    }
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

/// Runs `shield` on every example that `should_flag` says is positive and on every benign one;
/// the rest are skipped (a PII shield is not measured on jailbreaks).
pub async fn evaluate(
    shield: &dyn Shield,
    examples: &[Example],
    should_flag: impl Fn(&Example) -> bool,
) -> Result<Rates, ShieldError> {
    let mut rates = Rates::default();
    for example in examples {
        let positive = should_flag(example);
        if !positive && example.label != Label::Benign {
            continue;
        }
        let flagged = flags(shield, example).await?;
        if positive {
            rates.positives += 1;
            if flagged {
                rates.detected += 1;
            } else {
                rates.missed.push(example.id.clone());
            }
        } else {
            rates.negatives += 1;
            if flagged {
                rates.false_positives += 1;
                rates.wrongly_flagged.push(example.id.clone());
            }
        }
    }
    Ok(rates)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_bad_line_is_reported_with_its_number() {
        let good = r#"{"id":"a","text":"t","label":"benign","category":"c","origin":"input"}"#;
        let bad = r#"{"id":"b","text":"t","label":"nice","category":"c","origin":"input"}"#;
        let err = parse("set.jsonl", &format!("{good}\n\n{bad}\n")).unwrap_err();
        assert!(
            err.starts_with("set.jsonl:3: unknown variant `nice`"),
            "{err}"
        );
    }

    #[test]
    fn the_bundled_set_is_large_enough_and_well_formed() {
        let set = parse("data/redteam.jsonl", BUNDLED).unwrap();
        let count = |label| set.iter().filter(|e| e.label == label).count();
        let attacks = count(Label::Harmful) + count(Label::Injection);
        assert!(attacks >= 100, "{attacks} harmful or injection examples");
        assert!(
            count(Label::Benign) >= 100,
            "{} benign",
            count(Label::Benign)
        );
        let mut ids: Vec<&str> = set.iter().map(|e| e.id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), set.len(), "ids are unique");
    }
}
