//! The built-in tools, each a tool-runtime provider type that a config names:
//! `knowledge_search`, `calculator`, `current_time` (and, behind the `web` feature, `http_fetch`
//! and `web_search`). A provider's `config` table holds its [`Limits`]; a tool group's `params`
//! hold what differs per group (which stores `knowledge_search` searches).

pub mod calculator;
pub mod knowledge;
pub mod time;

use std::sync::Arc;

use async_trait::async_trait;
use corral_core::{Tool, ToolContext, ToolError, ToolRuntimeProvider};

use crate::{Limited, Limits, Typed, TypedTool};

pub use calculator::Calculator;
pub use knowledge::{KnowledgeSearch, KnowledgeSettings, Retrieved, Retriever};
pub use time::CurrentTime;

/// The tool-runtime provider types of this module, by name.
pub const CALCULATOR: &str = calculator::NAME;
pub const CURRENT_TIME: &str = time::NAME;
pub const KNOWLEDGE_SEARCH: &str = knowledge::NAME;

/// A built-in provider: one tool kind under the provider's limits.
#[derive(Debug, Clone)]
pub struct BuiltinProvider {
    kind: &'static str,
    limits: Limits,
}

impl BuiltinProvider {
    /// `kind` is one of [`CALCULATOR`], [`CURRENT_TIME`], [`KNOWLEDGE_SEARCH`].
    pub fn new(kind: &'static str, limits: Limits) -> Result<Self, String> {
        limits.validate(kind)?;
        if ![CALCULATOR, CURRENT_TIME, KNOWLEDGE_SEARCH].contains(&kind) {
            return Err(format!("`{kind}` is not a built-in tool"));
        }
        Ok(Self { kind, limits })
    }

    fn limited<T: TypedTool>(&self, tool: T) -> Result<Arc<dyn Tool>, ToolError> {
        Ok(Arc::new(Limited::new(Typed::new(tool)?, self.limits)))
    }
}

fn invalid_params(kind: &str, problem: impl std::fmt::Display) -> ToolError {
    ToolError::InvalidArguments {
        field: Some("params".into()),
        message: format!("tool group params for `{kind}`: {problem}"),
    }
}

fn no_params(kind: &str, params: &serde_json::Value) -> Result<(), ToolError> {
    match params {
        serde_json::Value::Null => Ok(()),
        serde_json::Value::Object(map) if map.is_empty() => Ok(()),
        serde_json::Value::Object(map) => Err(invalid_params(
            kind,
            format!(
                "takes none, but got {}",
                map.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        )),
        other => Err(invalid_params(
            kind,
            format!("expected a table, got {other}"),
        )),
    }
}

#[async_trait]
impl ToolRuntimeProvider for BuiltinProvider {
    async fn tools(
        &self,
        params: &serde_json::Value,
        context: &dyn ToolContext,
    ) -> Result<Vec<Arc<dyn Tool>>, ToolError> {
        match self.kind {
            CALCULATOR => {
                no_params(self.kind, params)?;
                Ok(vec![self.limited(Calculator)?])
            }
            CURRENT_TIME => {
                no_params(self.kind, params)?;
                Ok(vec![self.limited(CurrentTime)?])
            }
            _ => {
                let settings: KnowledgeSettings = serde_path_to_error::deserialize(params)
                    .map_err(|e| invalid_params(self.kind, e))?;
                settings
                    .validate()
                    .map_err(|e| invalid_params(self.kind, e))?;
                let mut stores = Vec::with_capacity(settings.vector_stores.len());
                for id in &settings.vector_stores {
                    stores.push(
                        context
                            .searchable_store(id)
                            .await
                            .map_err(|e| ToolError::Failed(format!("{}: {e}", self.kind)))?,
                    );
                }
                let retriever =
                    Retriever::new(stores, settings).map_err(|e| invalid_params(self.kind, e))?;
                Ok(vec![self.limited(KnowledgeSearch::new(retriever))?])
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use corral_core::NoToolContext;
    use serde_json::json;

    #[tokio::test]
    async fn builds_each_builtin_and_checks_params() {
        let calc = BuiltinProvider::new(CALCULATOR, Limits::default()).expect("provider");
        let tools = calc.tools(&json!({}), &NoToolContext).await.expect("tools");
        assert_eq!(tools[0].spec().name, "calculator");
        assert!(calc.tools(&json!({"x": 1}), &NoToolContext).await.is_err());

        let search = BuiltinProvider::new(KNOWLEDGE_SEARCH, Limits::default()).expect("provider");
        let error = search
            .tools(&json!({"vector_stores": ["nope"]}), &NoToolContext)
            .await
            .err()
            .expect("no such store");
        assert!(error.to_string().contains("nope"), "{error}");
        let error = search
            .tools(&json!({"vector_store": ["typo"]}), &NoToolContext)
            .await
            .err()
            .expect("unknown field");
        assert!(error.to_string().contains("vector_store"), "{error}");
        assert!(BuiltinProvider::new("teleport", Limits::default()).is_err());
    }
}
