//! Checking a tool call's arguments against the tool's JSON schema before the tool runs, so a bad
//! call becomes an error the model can read and fix (which field, what was expected) instead of a
//! failure inside the tool.

use corral_core::ToolError;
use jsonschema::error::ValidationErrorKind;
use serde_json::Value;

/// A tool's parameter schema, compiled once.
pub struct ArgumentSchema {
    validator: jsonschema::Validator,
}

impl std::fmt::Debug for ArgumentSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArgumentSchema").finish_non_exhaustive()
    }
}

impl ArgumentSchema {
    /// Compiles `schema`; `tool` names the tool in the error when the schema itself is invalid.
    pub fn compile(tool: &str, schema: &Value) -> Result<Self, ToolError> {
        let validator = jsonschema::validator_for(schema).map_err(|e| {
            ToolError::Failed(format!(
                "tool `{tool}` has an invalid parameter schema: {e}"
            ))
        })?;
        Ok(Self { validator })
    }

    /// Checks one call's arguments. The error names the first offending field (as a dotted path,
    /// `items.0.name`) and says what was expected; the other problems are listed after it.
    pub fn check(&self, arguments: &Value) -> Result<(), ToolError> {
        if let Value::String(raw) = arguments {
            // The chat layer keeps arguments that were not JSON as a string (see `ToolCall`).
            return Err(ToolError::InvalidArguments {
                field: None,
                message: format!("the arguments are not a JSON object: {}", excerpt(raw)),
            });
        }
        self.validate(arguments)
            .map_err(|problem| ToolError::InvalidArguments {
                field: problem.field,
                message: problem.message,
            })
    }

    /// Checks any JSON value against the schema (an answer in a response format, say).
    pub fn validate(&self, value: &Value) -> Result<(), SchemaProblem> {
        let mut problems = self.validator.iter_errors(value).map(|error| {
            let mut path: Vec<String> = error
                .instance_path()
                .as_str()
                .split('/')
                .skip(1)
                .map(|s| s.replace("~1", "/").replace("~0", "~"))
                .collect();
            let message = match error.kind() {
                ValidationErrorKind::Required { property } => {
                    let name = property
                        .as_str()
                        .map_or_else(|| property.to_string(), str::to_owned);
                    path.push(name);
                    "this required field is missing".to_string()
                }
                ValidationErrorKind::AdditionalProperties { unexpected } => {
                    format!("unexpected field(s): {}", unexpected.join(", "))
                }
                _ => error.to_string(),
            };
            let field = (!path.is_empty()).then(|| path.join("."));
            (field, message)
        });
        let Some((field, message)) = problems.next() else {
            return Ok(());
        };
        let others: Vec<String> = problems
            .take(4)
            .map(|(field, message)| match field {
                Some(field) => format!("`{field}`: {message}"),
                None => message,
            })
            .collect();
        let message = if others.is_empty() {
            message
        } else {
            format!("{message} (also: {})", others.join("; "))
        };
        Err(SchemaProblem { field, message })
    }
}

/// Why a value does not match a schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaProblem {
    /// The first offending field as a dotted path; `None` for the value as a whole.
    pub field: Option<String>,
    pub message: String,
}

impl std::fmt::Display for SchemaProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.field {
            Some(field) => write!(f, "`{field}`: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

fn excerpt(text: &str) -> String {
    const MAX: usize = 200;
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{:?}…", &text[..cut]),
        None => format!("{text:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> ArgumentSchema {
        ArgumentSchema::compile(
            "weather",
            &json!({
                "type": "object",
                "properties": {
                    "city": {"type": "string"},
                    "days": {"type": "integer", "minimum": 1, "maximum": 14},
                    "stops": {"type": "array", "items": {"type": "object",
                        "properties": {"name": {"type": "string"}}, "required": ["name"]}}
                },
                "required": ["city"],
                "additionalProperties": false
            }),
        )
        .expect("compiles")
    }

    fn invalid(arguments: Value) -> (Option<String>, String) {
        match schema().check(&arguments) {
            Err(ToolError::InvalidArguments { field, message }) => (field, message),
            other => panic!("expected invalid arguments for {arguments}, got {other:?}"),
        }
    }

    #[test]
    fn valid_arguments_pass() {
        schema()
            .check(&json!({"city": "Paris", "days": 3}))
            .expect("valid");
    }

    #[test]
    fn errors_name_the_field_and_what_was_expected() {
        let (field, message) = invalid(json!({}));
        assert_eq!(field.as_deref(), Some("city"));
        assert!(message.contains("missing"), "{message}");

        let (field, message) = invalid(json!({"city": 7}));
        assert_eq!(field.as_deref(), Some("city"));
        assert!(message.contains("string"), "{message}");

        let (field, message) = invalid(json!({"city": "Paris", "days": 40}));
        assert_eq!(field.as_deref(), Some("days"));
        assert!(message.contains("14"), "{message}");

        let (field, _) = invalid(json!({"city": "Paris", "stops": [{"name": "a"}, {}]}));
        assert_eq!(field.as_deref(), Some("stops.1.name"));

        let (field, message) = invalid(json!({"city": "Paris", "colour": "red"}));
        assert_eq!(field, None);
        assert!(message.contains("colour"), "{message}");
    }

    #[test]
    fn arguments_that_were_not_json_are_reported_as_such() {
        let (field, message) = invalid(Value::String("{city: Paris".into()));
        assert_eq!(field, None);
        assert!(message.contains("not a JSON object"), "{message}");
    }

    #[test]
    fn an_invalid_schema_is_an_error_naming_the_tool() {
        let error = ArgumentSchema::compile("broken", &json!({"type": "no-such-type"}))
            .expect_err("invalid schema");
        assert!(error.to_string().contains("`broken`"), "{error}");
    }
}
