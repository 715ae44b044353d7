//! The safety provider types: one per kind of shield.

use std::sync::Arc;

use async_trait::async_trait;
use corral_core::{SafetyProvider, Shield, ShieldContext, ShieldError};

use crate::injection::{InjectionConfig, PromptInjection};
use crate::llama_guard::{LlamaGuard, LlamaGuardConfig};
use crate::pii::{Pii, PiiConfig};
use crate::rules::{Rules, RulesConfig};
use crate::text::params;

/// The kinds of shield, as `type` names of `[[providers.safety]]`, with a one-line summary.
pub const KINDS: [(&str, &str); 4] = [
    (
        "llama-guard",
        "Llama Guard 3 on any configured chat model (params: model, excluded_categories, role, on_unparseable)",
    ),
    (
        "prompt-injection",
        "Instructions aimed at the model in requests, retrieved passages and tool results (scored heuristics; optional classifier model)",
    ),
    (
        "pii",
        "E-mail addresses, phones, payment cards, IBANs, national IDs, IP addresses, secrets (mode: block, redact or report)",
    ),
    (
        "rules",
        "Regex and keyword deny lists with allow-list exceptions (params: deny, deny_keywords, allow)",
    ),
];

/// Builds shields of one kind from their `params`.
#[derive(Debug, Clone, Copy)]
pub struct ShieldProvider {
    kind: &'static str,
}

impl ShieldProvider {
    /// The provider of the kind named `kind` (one of [`KINDS`]).
    pub fn new(kind: &str) -> Result<Self, String> {
        KINDS
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(k, _)| Self { kind: k })
            .ok_or_else(|| {
                let known: Vec<&str> = KINDS.iter().map(|(k, _)| *k).collect();
                format!(
                    "`{kind}` is not a kind of shield; the kinds are {}",
                    known.join(", ")
                )
            })
    }
}

#[async_trait]
impl SafetyProvider for ShieldProvider {
    async fn shield(
        &self,
        name: &str,
        params_value: &serde_json::Value,
        context: &dyn ShieldContext,
    ) -> Result<Arc<dyn Shield>, ShieldError> {
        let named = |e: ShieldError| match e {
            ShieldError::InvalidRequest(problem) if !problem.starts_with("shield `") => {
                ShieldError::InvalidRequest(format!("shield `{name}` ({}): {problem}", self.kind))
            }
            other => other,
        };
        let model = |id: String| async move {
            context.chat_model(&id).await.map_err(|e| {
                ShieldError::InvalidRequest(format!("shield `{name}` needs model `{id}`: {e}"))
            })
        };
        let shield: Arc<dyn Shield> = match self.kind {
            "llama-guard" => {
                let config: LlamaGuardConfig = params(name, self.kind, params_value)?;
                let chat = model(config.model.clone()).await?;
                Arc::new(LlamaGuard::new(chat, config).map_err(named)?)
            }
            "prompt-injection" => {
                let config: InjectionConfig = params(name, self.kind, params_value)?;
                let classifier = match &config.classifier {
                    Some(c) => Some(model(c.model.clone()).await?),
                    None => None,
                };
                Arc::new(PromptInjection::new(config, classifier).map_err(named)?)
            }
            "pii" => {
                let config: PiiConfig = params(name, self.kind, params_value)?;
                Arc::new(Pii::new(config).map_err(named)?)
            }
            _ => {
                let config: RulesConfig = params(name, self.kind, params_value)?;
                Arc::new(Rules::new(config).map_err(named)?)
            }
        };
        Ok(shield)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use corral_core::NoShieldContext;
    use serde_json::json;

    use super::*;

    async fn error(kind: &str, name: &str, params: serde_json::Value) -> String {
        match ShieldProvider::new(kind)
            .unwrap()
            .shield(name, &params, &NoShieldContext)
            .await
        {
            Ok(_) => panic!("shield `{name}` was built from {params}"),
            Err(e) => e.to_string(),
        }
    }

    #[tokio::test]
    async fn a_bad_param_is_named_with_its_shield_and_path() {
        let err = error("pii", "pii", json!({"mode": "shout"})).await;
        assert!(
            err.contains("shield `pii` (pii): bad params at `mode`"),
            "{err}"
        );
        let err = error("rules", "house-rules", json!({"deny": ["("]})).await;
        assert!(
            err.contains("shield `house-rules` (rules): deny[0]"),
            "{err}"
        );
        let err = error("rules", "r", json!({"presets": ["nice"]})).await;
        assert!(err.contains("`nice` is not a preset"), "{err}");
    }

    #[tokio::test]
    async fn llama_guard_needs_its_model_from_the_context() {
        let err = error("llama-guard", "guard", json!({"model": "lg3"})).await;
        assert!(err.contains("shield `guard` needs model `lg3`"), "{err}");
        assert!(
            ShieldProvider::new("llamaguard")
                .unwrap_err()
                .contains("llama-guard")
        );
    }

    #[tokio::test]
    async fn every_kind_builds_with_no_params_but_llama_guard() {
        for (kind, _) in KINDS {
            let built = ShieldProvider::new(kind)
                .unwrap()
                .shield(kind, &serde_json::Value::Null, &NoShieldContext)
                .await;
            assert_eq!(built.is_ok(), kind != "llama-guard", "{kind}");
        }
    }
}
