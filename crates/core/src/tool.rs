//! Tools a model can call: a name, a description, a JSON-schema for the arguments, and an async call.

use std::sync::Arc;

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::ToolError;

/// What the model is told about a tool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolSpec {
    pub name: String,
    pub description: String,
    /// JSON schema of the arguments object.
    pub parameters: serde_json::Value,
}

impl ToolSpec {
    /// A spec whose parameter schema is generated from the arguments type, so it never drifts from
    /// the code that reads the arguments.
    pub fn for_arguments<A: JsonSchema>(
        name: impl Into<String>,
        description: impl Into<String>,
    ) -> Self {
        let schema = schemars::schema_for!(A);
        Self {
            name: name.into(),
            description: description.into(),
            parameters: schema.to_value(),
        }
    }
}

/// What a tool call returns to the model.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ToolOutput {
    /// The text the model reads.
    pub content: String,
    /// Structured extras for the caller (citations, raw results); not shown to the model.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub metadata: serde_json::Map<String, serde_json::Value>,
}

impl ToolOutput {
    pub fn text(content: impl Into<String>) -> Self {
        Self {
            content: content.into(),
            metadata: serde_json::Map::new(),
        }
    }
}

#[async_trait]
pub trait Tool: Send + Sync {
    fn spec(&self) -> &ToolSpec;

    /// Runs the tool. Errors are fed back to the model; they do not end the agent's turn.
    async fn call(&self, arguments: serde_json::Value) -> Result<ToolOutput, ToolError>;
}

#[async_trait]
impl<T: Tool + ?Sized> Tool for Arc<T> {
    fn spec(&self) -> &ToolSpec {
        (**self).spec()
    }
    async fn call(&self, arguments: serde_json::Value) -> Result<ToolOutput, ToolError> {
        (**self).call(arguments).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize, JsonSchema)]
    #[allow(dead_code)]
    struct WeatherArgs {
        /// The city to look up.
        city: String,
        days: Option<u8>,
    }

    #[test]
    fn schema_comes_from_the_arguments_type() {
        let spec = ToolSpec::for_arguments::<WeatherArgs>("weather", "Forecast for a city");
        assert_eq!(spec.parameters["type"], "object");
        assert_eq!(spec.parameters["properties"]["city"]["type"], "string");
        assert_eq!(
            spec.parameters["properties"]["city"]["description"],
            "The city to look up."
        );
        assert_eq!(spec.parameters["required"], serde_json::json!(["city"]));
    }
}
