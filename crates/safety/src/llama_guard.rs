//! Llama Guard 3 on any chat model.
//!
//! The conversation is rendered into Llama Guard 3's published prompt (task, the S1–S14 hazard
//! categories less the excluded ones, the conversation with `User:` / `Agent:` turns, and the
//! instructions) and sent as one user message; the model's chat template does the rest, so the
//! same shield runs on a local GGUF or a remote endpoint. The verdict is `safe`, or `unsafe` with
//! a line of category codes. Anything else is an unparseable verdict, which is never read as safe:
//! by default it is an error (the caller fails closed); `on_unparseable` can block or allow it,
//! and an allowed one is still reported as a warning.

use std::sync::Arc;

use async_trait::async_trait;
use corral_core::{
    ChatModel, ChatRequest, Message, Role, Sampling, Shield, ShieldError, Violation, ViolationLevel,
};
use serde::Deserialize;

/// Llama Guard 3's hazard taxonomy (MLCommons), with the names its prompt uses. The 1B model was
/// trained on S1–S13; exclude S14 for it.
pub const CATEGORIES: [(&str, &str); 14] = [
    ("S1", "Violent Crimes"),
    ("S2", "Non-Violent Crimes"),
    ("S3", "Sex Crimes"),
    ("S4", "Child Exploitation"),
    ("S5", "Defamation"),
    ("S6", "Specialized Advice"),
    ("S7", "Privacy"),
    ("S8", "Intellectual Property"),
    ("S9", "Indiscriminate Weapons"),
    ("S10", "Hate"),
    ("S11", "Self-Harm"),
    ("S12", "Sexual Content"),
    ("S13", "Elections"),
    ("S14", "Code Interpreter Abuse"),
];

/// Whose messages are judged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GuardRole {
    /// The role of the last message: `Agent` after an answer, `User` otherwise.
    #[default]
    Auto,
    User,
    Agent,
}

/// What an unparseable verdict becomes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnUnparseable {
    /// A [`ShieldError::UnparseableVerdict`]; an agent's turn fails (fail closed).
    #[default]
    Error,
    /// An error-level violation (fail closed, the user sees the shield's message).
    Block,
    /// A warning-level violation (fail open, but reported).
    Allow,
}

/// The `params` of a `llama-guard` shield.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LlamaGuardConfig {
    /// The id of the chat model that is Llama Guard 3 (`[[models]]` in `corral.toml`).
    pub model: String,
    /// Category codes (`S1`…`S14`) left out of the prompt and ignored in verdicts.
    #[serde(default)]
    pub excluded_categories: Vec<String>,
    #[serde(default)]
    pub role: GuardRole,
    #[serde(default)]
    pub on_unparseable: OnUnparseable,
    /// What the user is told when the shield blocks.
    #[serde(default = "default_message")]
    pub message: String,
    /// The level of an unsafe verdict.
    #[serde(default = "default_level")]
    pub level: ViolationLevel,
}

fn default_message() -> String {
    "I can't help with that: it goes against the safety policy.".into()
}

fn default_level() -> ViolationLevel {
    ViolationLevel::Error
}

impl LlamaGuardConfig {
    pub fn new(model: impl Into<String>) -> Self {
        Self {
            model: model.into(),
            excluded_categories: Vec::new(),
            role: GuardRole::Auto,
            on_unparseable: OnUnparseable::Error,
            message: default_message(),
            level: default_level(),
        }
    }
}

/// What the model answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Safe,
    /// The violated category codes, as given (possibly none).
    Unsafe(Vec<String>),
}

/// A Llama Guard 3 shield.
pub struct LlamaGuard {
    model: Arc<dyn ChatModel>,
    config: LlamaGuardConfig,
    /// The categories in the prompt: all less the excluded.
    categories: Vec<(&'static str, &'static str)>,
}

impl std::fmt::Debug for LlamaGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlamaGuard")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl LlamaGuard {
    pub fn new(model: Arc<dyn ChatModel>, config: LlamaGuardConfig) -> Result<Self, ShieldError> {
        for code in &config.excluded_categories {
            if !CATEGORIES.iter().any(|(c, _)| c == code) {
                return Err(ShieldError::InvalidRequest(format!(
                    "excluded_categories: `{code}` is not a Llama Guard 3 category (S1 to S14)"
                )));
            }
        }
        let categories: Vec<_> = CATEGORIES
            .iter()
            .copied()
            .filter(|(code, _)| !config.excluded_categories.iter().any(|c| c == code))
            .collect();
        if categories.is_empty() {
            return Err(ShieldError::InvalidRequest(
                "excluded_categories leaves no category: the shield would pass everything".into(),
            ));
        }
        Ok(Self {
            model,
            config,
            categories,
        })
    }

    /// The prompt for `messages`: the one user message sent to the model. System and tool
    /// messages are left out; Llama Guard judges user and agent turns.
    pub fn prompt(&self, messages: &[Message]) -> Result<String, ShieldError> {
        let turns: Vec<(&str, String)> = messages
            .iter()
            .filter_map(|m| match m.role() {
                Role::User => Some(("User", m.text())),
                Role::Assistant => Some(("Agent", m.text())).filter(|(_, t)| !t.is_empty()),
                Role::System | Role::Tool => None,
            })
            .collect();
        let Some((last, _)) = turns.last() else {
            return Err(ShieldError::InvalidRequest(
                "Llama Guard needs at least one user or assistant message".into(),
            ));
        };
        let role = match self.config.role {
            GuardRole::Auto => *last,
            GuardRole::User => "User",
            GuardRole::Agent => "Agent",
        };
        let categories: Vec<String> = self
            .categories
            .iter()
            .map(|(code, name)| format!("{code}: {name}."))
            .collect();
        let conversation: Vec<String> = turns
            .iter()
            .map(|(speaker, text)| format!("{speaker}: {text}"))
            .collect();
        Ok(format!(
            "Task: Check if there is unsafe content in '{role}' messages in conversations according \
             our safety policy with the below categories.\n\
             \n\
             <BEGIN UNSAFE CONTENT CATEGORIES>\n\
             {categories}\n\
             <END UNSAFE CONTENT CATEGORIES>\n\
             \n\
             <BEGIN CONVERSATION>\n\
             \n\
             {conversation}\n\
             \n\
             <END CONVERSATION>\n\
             \n\
             Provide your safety assessment for ONLY THE LAST {role} message in the above \
             conversation:\n \
             - First line must read 'safe' or 'unsafe'.\n \
             - If unsafe, a second line must include a comma-separated list of violated categories.",
            categories = categories.join("\n"),
            conversation = conversation.join("\n\n"),
        ))
    }

    /// Reads the model's answer: `safe`, or `unsafe` and optionally a line of codes (`S1,S10`).
    /// Case and surrounding white space are forgiven; anything else is an error.
    pub fn parse_verdict(answer: &str) -> Result<Verdict, ShieldError> {
        let unparseable = || ShieldError::UnparseableVerdict(answer.to_string());
        let mut lines = answer.lines().map(str::trim).filter(|l| !l.is_empty());
        let first = lines.next().ok_or_else(unparseable)?;
        let verdict = if first.eq_ignore_ascii_case("safe") {
            Verdict::Safe
        } else if first.eq_ignore_ascii_case("unsafe") {
            let codes = match lines.next() {
                None => Vec::new(),
                Some(line) => line
                    .split(',')
                    .map(|code| {
                        let code = code.trim().to_ascii_uppercase();
                        CATEGORIES
                            .iter()
                            .any(|(c, _)| *c == code)
                            .then_some(code)
                            .ok_or_else(unparseable)
                    })
                    .collect::<Result<_, _>>()?,
            };
            Verdict::Unsafe(codes)
        } else {
            return Err(unparseable());
        };
        if lines.next().is_some() {
            return Err(unparseable());
        }
        Ok(verdict)
    }

    fn excluded(&self, code: &str) -> bool {
        self.config.excluded_categories.iter().any(|c| c == code)
    }

    fn unparseable(&self, answer: String) -> Result<Option<Violation>, ShieldError> {
        tracing::warn!(verdict = %answer, "Llama Guard's verdict could not be read");
        let violation = |level| {
            Violation::new(level, self.config.message.clone())
                .with("unparseable_verdict", answer.clone())
        };
        match self.config.on_unparseable {
            OnUnparseable::Error => Err(ShieldError::UnparseableVerdict(answer)),
            OnUnparseable::Block => Ok(Some(violation(ViolationLevel::Error))),
            OnUnparseable::Allow => Ok(Some(violation(ViolationLevel::Warn))),
        }
    }
}

#[async_trait]
impl Shield for LlamaGuard {
    async fn check(&self, messages: &[Message]) -> Result<Option<Violation>, ShieldError> {
        let prompt = self.prompt(messages)?;
        let request = ChatRequest::new(vec![Message::user(prompt)])
            .with_sampling(Sampling::greedy())
            .with_max_tokens(20);
        let answer = self
            .model
            .complete(&request)
            .await
            .map_err(|e| crate::text::model_failed(&self.config.model, e))?;
        let codes = match Self::parse_verdict(&answer.text) {
            Ok(Verdict::Safe) => return Ok(None),
            Ok(Verdict::Unsafe(codes)) => codes,
            Err(_) => return self.unparseable(answer.text),
        };
        if !codes.is_empty() && codes.iter().all(|code| self.excluded(code)) {
            tracing::debug!(?codes, "Llama Guard flagged only excluded categories");
            return Ok(None);
        }
        let names: Vec<&str> = codes
            .iter()
            .filter_map(|code| CATEGORIES.iter().find(|(c, _)| c == code))
            .map(|(_, name)| *name)
            .collect();
        Ok(Some(
            Violation::new(self.config.level, self.config.message.clone())
                .with("categories", codes)
                .with("category_names", names),
        ))
    }
}
