//! JSON text as Python's `json.dumps(..., ensure_ascii=False)` writes it, which is what Meta's prompt
//! documents and Hugging Face's `tojson` filter produce: `", "` and `": "` between items when compact,
//! one item per line when indented.

use serde_json::Value;

/// How object keys are ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyOrder {
    /// The map's own order.
    Map,
    /// JSON-schema objects as Meta's documents print them: `type`, `function`, `name`,
    /// `description`, `parameters`, `required`, `properties`, … first, the rest in map order. The
    /// names inside `properties` keep map order. (Our `serde_json` maps do not keep insertion order,
    /// so a fixed conventional order is the only deterministic one.)
    Schema,
}

const SCHEMA_KEYS: &[&str] = &[
    "type",
    "function",
    "name",
    "description",
    "parameters",
    "required",
    "properties",
    "items",
    "enum",
    "default",
];

/// Python-style JSON: compact (`indent = None`) or one item per line indented by `indent` spaces.
pub(crate) fn dumps(value: &Value, indent: Option<usize>, order: KeyOrder) -> String {
    let mut out = String::new();
    write(&mut out, value, indent, 0, order);
    out
}

/// A JSON string literal (quotes and escapes as both Python and `serde_json` write them).
pub(crate) fn quote(text: &str) -> String {
    // Serializing a `&str` cannot fail; the fallback keeps this total anyway.
    serde_json::to_string(text).unwrap_or_else(|_| format!("\"{text}\""))
}

fn write(out: &mut String, value: &Value, indent: Option<usize>, level: usize, order: KeyOrder) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => out.push_str(&quote(s)),
        Value::Array(items) => {
            if items.is_empty() {
                out.push_str("[]");
                return;
            }
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                separator(out, i, indent, level + 1);
                write(out, item, indent, level + 1, order);
            }
            close(out, indent, level);
            out.push(']');
        }
        Value::Object(map) => {
            if map.is_empty() {
                out.push_str("{}");
                return;
            }
            let mut keys: Vec<&String> = map.keys().collect();
            if order == KeyOrder::Schema {
                let rank = |k: &str| {
                    SCHEMA_KEYS
                        .iter()
                        .position(|s| *s == k)
                        .unwrap_or(usize::MAX)
                };
                keys.sort_by_key(|k| rank(k)); // stable: unknown keys keep map order
            }
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                separator(out, i, indent, level + 1);
                out.push_str(&quote(key));
                out.push_str(": ");
                let Some(child) = map.get(key) else { continue };
                match (order, key.as_str()) {
                    (KeyOrder::Schema, "properties") => {
                        write_properties(out, child, indent, level + 1)
                    }
                    (KeyOrder::Schema, "default" | "enum" | "const" | "examples") => {
                        write(out, child, indent, level + 1, KeyOrder::Map)
                    }
                    _ => write(out, child, indent, level + 1, order),
                }
            }
            close(out, indent, level);
            out.push('}');
        }
    }
}

/// A `properties` map: parameter names in map order, each value a schema.
fn write_properties(out: &mut String, value: &Value, indent: Option<usize>, level: usize) {
    let Value::Object(map) = value else {
        write(out, value, indent, level, KeyOrder::Schema);
        return;
    };
    if map.is_empty() {
        out.push_str("{}");
        return;
    }
    out.push('{');
    for (i, (key, child)) in map.iter().enumerate() {
        separator(out, i, indent, level + 1);
        out.push_str(&quote(key));
        out.push_str(": ");
        write(out, child, indent, level + 1, KeyOrder::Schema);
    }
    close(out, indent, level);
    out.push('}');
}

fn separator(out: &mut String, index: usize, indent: Option<usize>, level: usize) {
    match indent {
        Some(width) => {
            if index > 0 {
                out.push(',');
            }
            out.push('\n');
            out.push_str(&" ".repeat(width * level));
        }
        None => {
            if index > 0 {
                out.push_str(", ");
            }
        }
    }
}

fn close(out: &mut String, indent: Option<usize>, level: usize) {
    if let Some(width) = indent {
        out.push('\n');
        out.push_str(&" ".repeat(width * level));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn compact_and_indented_like_python() {
        let v = json!({"b": [1, 2.5, null], "a": {"x": true}, "e": [], "s": "é\"\n"});
        assert_eq!(
            dumps(&v, None, KeyOrder::Map),
            r#"{"a": {"x": true}, "b": [1, 2.5, null], "e": [], "s": "é\"\n"}"#
        );
        assert_eq!(
            dumps(&json!({"a": [1, {}]}), Some(2), KeyOrder::Map),
            "{\n  \"a\": [\n    1,\n    {}\n  ]\n}"
        );
    }

    #[test]
    fn schema_order_puts_type_first_and_keeps_property_names() {
        let v = json!({"properties": {"type": {"type": "string", "description": "d"}, "a": {}},
                       "required": ["a"], "type": "object"});
        assert_eq!(
            dumps(&v, None, KeyOrder::Schema),
            r#"{"type": "object", "required": ["a"], "properties": {"a": {}, "type": {"type": "string", "description": "d"}}}"#
        );
    }
}
