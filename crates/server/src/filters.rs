//! OpenAI's attribute filters (`filters` of a vector store search and of the `file_search` tool):
//! comparisons (`eq`, `ne`, `gt`, `gte`, `lt`, `lte`, `in`, `nin`) on a file's `attributes`,
//! combined with `and` / `or`.
//!
//! Attributes live in the server's records, one set per attached file, not in the chunks; so a
//! filter is evaluated here against each file's attributes, and the store is asked only for the
//! passages of the files that pass.
//!
//! Meaning, where OpenAI leaves it open: a file without the key fails every comparison, `ne` and
//! `nin` included (as SQL's NULL would); numbers compare as numbers and strings as strings, and
//! ordering a number against a string, or a boolean at all, fails the comparison.

use std::cmp::Ordering;

use serde_json::Value;

/// A parsed filter.
#[derive(Debug, Clone, PartialEq)]
pub enum AttributeFilter {
    Compare { key: String, op: Op, value: Value },
    And(Vec<AttributeFilter>),
    Or(Vec<AttributeFilter>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Gt,
    Gte,
    Lt,
    Lte,
    In,
    Nin,
}

/// Where a filter is malformed (a parameter path such as `filters.filters[1].value`) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterError {
    pub param: String,
    pub message: String,
}

impl From<FilterError> for crate::ApiError {
    fn from(e: FilterError) -> Self {
        Self::invalid_param(&e.param, e.message)
    }
}

impl AttributeFilter {
    /// Parses `value`, naming the parameter at fault relative to `param` (e.g. `filters`).
    pub fn parse(value: &Value, param: &str) -> Result<Self, FilterError> {
        let fail = |param: String, message: String| FilterError { param, message };
        let Some(object) = value.as_object() else {
            return Err(fail(
                param.to_string(),
                format!("`{param}` must be an object"),
            ));
        };
        let kind = object.get("type").and_then(Value::as_str).ok_or_else(|| {
            fail(
                format!("{param}.type"),
                format!("`{param}.type` must be a string"),
            )
        })?;
        let op = match kind {
            "and" | "or" => {
                let Some(items) = object.get("filters").and_then(Value::as_array) else {
                    return Err(fail(
                        format!("{param}.filters"),
                        format!("`{param}.filters` must be an array of filters"),
                    ));
                };
                let filters = items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| Self::parse(item, &format!("{param}.filters[{i}]")))
                    .collect::<Result<Vec<_>, _>>()?;
                return Ok(if kind == "and" {
                    Self::And(filters)
                } else {
                    Self::Or(filters)
                });
            }
            "eq" => Op::Eq,
            "ne" => Op::Ne,
            "gt" => Op::Gt,
            "gte" => Op::Gte,
            "lt" => Op::Lt,
            "lte" => Op::Lte,
            "in" => Op::In,
            "nin" => Op::Nin,
            other => {
                return Err(fail(
                    format!("{param}.type"),
                    format!(
                        "`{param}.type` = `{other}`: expected eq, ne, gt, gte, lt, lte, in, nin, and or or"
                    ),
                ));
            }
        };
        let key = object.get("key").and_then(Value::as_str).ok_or_else(|| {
            fail(
                format!("{param}.key"),
                format!("`{param}.key` must be a string"),
            )
        })?;
        let value = object.get("value").ok_or_else(|| {
            fail(
                format!("{param}.value"),
                format!("`{param}.value` is missing"),
            )
        })?;
        let scalar = |v: &Value| v.is_string() || v.is_number() || v.is_boolean();
        let fits = match op {
            Op::In | Op::Nin => value
                .as_array()
                .is_some_and(|items| items.iter().all(scalar)),
            _ => scalar(value),
        };
        if !fits {
            let expected = match op {
                Op::In | Op::Nin => "an array of strings, numbers or booleans",
                _ => "a string, a number or a boolean",
            };
            return Err(fail(
                format!("{param}.value"),
                format!("`{param}.value` must be {expected} for `{kind}`"),
            ));
        }
        Ok(Self::Compare {
            key: key.to_string(),
            op,
            value: value.clone(),
        })
    }

    /// Whether a file with these `attributes` (a JSON object) passes.
    pub fn matches(&self, attributes: &Value) -> bool {
        match self {
            Self::And(filters) => filters.iter().all(|f| f.matches(attributes)),
            Self::Or(filters) => filters.iter().any(|f| f.matches(attributes)),
            Self::Compare { key, op, value } => {
                let Some(actual) = attributes.get(key) else {
                    return false;
                };
                let equal = |v: &Value| same(actual, v);
                match op {
                    Op::Eq => equal(value),
                    Op::Ne => !equal(value),
                    Op::In => value.as_array().is_some_and(|vs| vs.iter().any(equal)),
                    Op::Nin => value.as_array().is_some_and(|vs| !vs.iter().any(equal)),
                    Op::Gt => order(actual, value) == Some(Ordering::Greater),
                    Op::Gte => matches!(
                        order(actual, value),
                        Some(Ordering::Greater | Ordering::Equal)
                    ),
                    Op::Lt => order(actual, value) == Some(Ordering::Less),
                    Op::Lte => {
                        matches!(order(actual, value), Some(Ordering::Less | Ordering::Equal))
                    }
                }
            }
        }
    }
}

/// Equality with numbers compared by value (`1` equals `1.0`).
fn same(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

/// Numbers by value, strings by their characters; nothing else is ordered.
fn order(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64()?.partial_cmp(&y.as_f64()?),
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse(filter: Value) -> AttributeFilter {
        AttributeFilter::parse(&filter, "filters").expect("a valid filter")
    }

    fn error(filter: Value) -> FilterError {
        AttributeFilter::parse(&filter, "filters").expect_err("an invalid filter")
    }

    #[test]
    fn comparisons_follow_their_operators() {
        let attrs = json!({"lang": "de", "year": 2021, "draft": false, "score": 0.5});
        let cases = [
            (json!({"type": "eq", "key": "lang", "value": "de"}), true),
            (json!({"type": "eq", "key": "lang", "value": "fr"}), false),
            (json!({"type": "ne", "key": "lang", "value": "fr"}), true),
            (json!({"type": "eq", "key": "year", "value": 2021.0}), true),
            (json!({"type": "gt", "key": "year", "value": 2020}), true),
            (json!({"type": "gt", "key": "year", "value": 2021}), false),
            (json!({"type": "gte", "key": "year", "value": 2021}), true),
            (json!({"type": "lt", "key": "score", "value": 0.75}), true),
            (json!({"type": "lte", "key": "score", "value": 0.25}), false),
            (json!({"type": "lt", "key": "lang", "value": "en"}), true),
            (json!({"type": "eq", "key": "draft", "value": false}), true),
            (
                json!({"type": "in", "key": "lang", "value": ["en", "de"]}),
                true,
            ),
            (
                json!({"type": "nin", "key": "lang", "value": ["en", "de"]}),
                false,
            ),
            (
                json!({"type": "in", "key": "year", "value": [2020, 2021]}),
                true,
            ),
        ];
        for (filter, expected) in cases {
            assert_eq!(parse(filter.clone()).matches(&attrs), expected, "{filter}");
        }
    }

    #[test]
    fn a_missing_key_or_an_unordered_pair_fails_the_comparison() {
        let attrs = json!({"year": 2021, "draft": true, "lang": "de"});
        for filter in [
            json!({"type": "eq", "key": "missing", "value": 1}),
            json!({"type": "ne", "key": "missing", "value": 1}),
            json!({"type": "nin", "key": "missing", "value": [1]}),
            json!({"type": "gt", "key": "year", "value": "2020"}),
            json!({"type": "lt", "key": "lang", "value": 3}),
            json!({"type": "gte", "key": "draft", "value": false}),
        ] {
            assert!(!parse(filter.clone()).matches(&attrs), "{filter}");
        }
    }

    #[test]
    fn compounds_nest() {
        let filter = parse(json!({
            "type": "or",
            "filters": [
                {"type": "and", "filters": [
                    {"type": "eq", "key": "lang", "value": "de"},
                    {"type": "gte", "key": "year", "value": 2020},
                ]},
                {"type": "eq", "key": "pinned", "value": true},
            ],
        }));
        assert!(filter.matches(&json!({"lang": "de", "year": 2021})));
        assert!(!filter.matches(&json!({"lang": "de", "year": 2019})));
        assert!(filter.matches(&json!({"lang": "fr", "pinned": true})));
        assert!(!filter.matches(&json!({})));
        assert!(parse(json!({"type": "and", "filters": []})).matches(&json!({})));
        assert!(!parse(json!({"type": "or", "filters": []})).matches(&json!({})));
    }

    #[test]
    fn malformed_filters_name_the_parameter_at_fault() {
        let cases = [
            (json!("lang = de"), "filters"),
            (json!({"key": "lang", "value": "de"}), "filters.type"),
            (
                json!({"type": "like", "key": "lang", "value": "d%"}),
                "filters.type",
            ),
            (json!({"type": "eq", "value": "de"}), "filters.key"),
            (json!({"type": "eq", "key": "lang"}), "filters.value"),
            (
                json!({"type": "eq", "key": "lang", "value": {"a": 1}}),
                "filters.value",
            ),
            (
                json!({"type": "in", "key": "lang", "value": "de"}),
                "filters.value",
            ),
            (json!({"type": "and"}), "filters.filters"),
            (
                json!({"type": "and", "filters": [{"type": "eq", "key": "a", "value": 1}, {"type": "or", "filters": [{"type": "gt", "key": "b"}]}]}),
                "filters.filters[1].filters[0].value",
            ),
        ];
        for (filter, param) in cases {
            let error = error(filter.clone());
            assert_eq!(error.param, param, "{filter}: {}", error.message);
            assert!(error.message.contains(param), "{}", error.message);
        }
    }
}
