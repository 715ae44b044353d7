//! `calculator`: arithmetic the model should not do in its head, with exmex — a parser and
//! evaluator for floating-point expressions that has no variables, no assignment and no I/O, so
//! whatever the model sends can only compute a number or fail.

use async_trait::async_trait;
use corral_core::{ToolError, ToolOutput};
use schemars::JsonSchema;
use serde::Deserialize;

use crate::TypedTool;

pub const NAME: &str = "calculator";

/// The longest expression accepted; it also bounds how deeply parentheses can nest, so a hostile
/// expression cannot exhaust the parser's stack.
const MAX_CHARS: usize = 500;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CalculatorArgs {
    /// The expression, e.g. `(3.5 + 2) * 4^2 / sqrt(2)`.
    pub expression: String,
}

/// Evaluates arithmetic expressions.
#[derive(Debug, Clone, Copy, Default)]
pub struct Calculator;

#[async_trait]
impl TypedTool for Calculator {
    type Args = CalculatorArgs;

    fn name(&self) -> String {
        NAME.into()
    }

    fn description(&self) -> String {
        "Evaluates an arithmetic expression exactly as written and returns the number. Operators: \
         + - * / ^ and parentheses. Functions: sqrt, cbrt, exp, ln (natural log), log10, log2, abs, \
         floor, ceil, round, trunc, sin, cos, tan, asin, acos, atan (radians). Constants: PI, E."
            .into()
    }

    async fn run(&self, args: CalculatorArgs) -> Result<ToolOutput, ToolError> {
        let value = evaluate(&args.expression)?;
        let mut output = ToolOutput::text(format_number(value));
        output
            .metadata
            .insert("value".into(), serde_json::json!(value));
        Ok(output)
    }
}

/// The expression's value, or an error the model can act on.
pub fn evaluate(expression: &str) -> Result<f64, ToolError> {
    let invalid = |message: String| ToolError::InvalidArguments {
        field: Some("expression".into()),
        message,
    };
    let trimmed = expression.trim();
    if trimmed.is_empty() {
        return Err(invalid("the expression is empty".into()));
    }
    if trimmed.chars().count() > MAX_CHARS {
        return Err(invalid(format!(
            "the expression is longer than {MAX_CHARS} characters"
        )));
    }
    let value = exmex::eval_str::<f64>(trimmed)
        .map_err(|e| invalid(format!("cannot evaluate `{trimmed}`: {}", e.msg())))?;
    if !value.is_finite() {
        return Err(invalid(format!(
            "`{trimmed}` has no finite value (division by zero or overflow)"
        )));
    }
    Ok(value)
}

/// Whole numbers without a fraction part; others with up to 12 significant decimals, so
/// `0.1 + 0.2` reads `0.3`.
fn format_number(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        return format!("{value:.0}");
    }
    let text = format!("{value:.12}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "0" || text == "-0" {
        // Too small for 12 decimals: scientific notation keeps it.
        format!("{value:e}")
    } else {
        text.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evaluates_arithmetic_and_functions() {
        let cases = [
            ("1 + 2 * 3", 7.0),
            ("(1 + 2) * 3", 9.0),
            ("2^10", 1024.0),
            ("7 / 2", 3.5),
            ("sqrt(16) + abs(-2)", 6.0),
            ("-3 + 1", -2.0),
        ];
        for (expression, expected) in cases {
            let value = evaluate(expression).expect(expression);
            assert!((value - expected).abs() < 1e-12, "{expression} = {value}");
        }
        assert!((evaluate("2 * PI").expect("pi") - std::f64::consts::TAU).abs() < 1e-12);
    }

    #[test]
    fn formats_numbers_for_reading() {
        assert_eq!(format_number(0.1 + 0.2), "0.3");
        assert_eq!(format_number(42.0), "42");
        assert_eq!(format_number(-2.5), "-2.5");
        assert_eq!(format_number(1e-20), "1e-20");
    }

    #[test]
    fn bad_expressions_are_errors_naming_the_expression() {
        for bad in ["", "2 +", "foo(3)", "1 / 0", "x + 1", "10^400", "(((1)"] {
            match evaluate(bad) {
                Err(ToolError::InvalidArguments { field, message }) => {
                    assert_eq!(field.as_deref(), Some("expression"));
                    assert!(!message.is_empty());
                }
                other => panic!("`{bad}` should be refused, got {other:?}"),
            }
        }
    }

    #[test]
    fn deep_nesting_and_long_input_do_not_crash() {
        let deep = format!("{}1{}", "(".repeat(240), ")".repeat(240));
        assert_eq!(evaluate(&deep).expect("nested"), 1.0);
        let long = "1+".repeat(400) + "1";
        assert!(evaluate(&long).is_err());
    }

    #[tokio::test]
    async fn runs_as_a_tool() {
        use corral_core::Tool;
        let tool = crate::Typed::new(Calculator).expect("tool");
        let out = tool
            .call(serde_json::json!({"expression": "1.5 * 4"}))
            .await
            .expect("runs");
        assert_eq!(out.content, "6");
    }
}
