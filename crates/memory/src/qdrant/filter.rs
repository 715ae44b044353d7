//! Our [`Filter`] as a Qdrant filter that keeps [`Filter::matches`]'s meaning.
//!
//! Each condition is matched against the payload fields laid out in [`super::payload`]: the
//! well-known keys (`id`, `document_id`, `source`, `page`) against their top-level fields, any
//! other key against `meta.<key>` (scalars) or `meta_json.<key>` (arrays, objects, huge integers,
//! as canonical JSON). Where the reference's JSON equality and Qdrant's matching differ, the
//! translation makes up for it:
//!
//! - `Eq` with a float: Qdrant has no float equality, so it is a range `[v, v]`; JSON equality
//!   tells `3.0` from `3`, so an integral float also excludes the integer.
//! - A value that can never be equal (a number for `source`, a string for `page`, an empty `In`
//!   or `Or`) is a condition that matches nothing, never a dropped condition.
//! - A missing field fails every condition on it in Qdrant as in the reference, and `Not` is a
//!   `must_not`, so `Not` of a condition on a missing field passes, as `!false` does.

use corral_core::Filter;
use qdrant_client::qdrant::{self, Condition, Range};
use serde_json::Value;

use super::payload::{
    CHUNK_ID, DOCUMENT_ID, META, META_JSON, PAGE, SOURCE, canonical_json, field_key, is_scalar,
};

/// The Qdrant filter that passes exactly the chunks `filter` passes.
pub fn to_qdrant(filter: &Filter) -> qdrant::Filter {
    qdrant::Filter::must([condition(filter)])
}

/// A condition that matches every point: a filter without conditions.
fn always() -> Condition {
    qdrant::Filter::default().into()
}

/// A condition that matches no point: the negation of [`always`].
fn never() -> Condition {
    qdrant::Filter::must_not([always()]).into()
}

fn condition(filter: &Filter) -> Condition {
    match filter {
        Filter::Eq { key, value } => equals(key, value),
        Filter::In { key, values } => any(values.iter().map(|v| equals(key, v)).collect()),
        Filter::Range { key, gte, lte } => range(key, *gte, *lte),
        Filter::And { filters } => match filters.as_slice() {
            [] => always(),
            [one] => condition(one),
            many => qdrant::Filter::must(many.iter().map(condition)).into(),
        },
        Filter::Or { filters } => any(filters.iter().map(condition).collect()),
        Filter::Not { filter } => qdrant::Filter::must_not([condition(filter)]).into(),
    }
}

/// At least one of `conditions`; none at all matches nothing (Qdrant's empty `should` would
/// match everything).
fn any(mut conditions: Vec<Condition>) -> Condition {
    match conditions.len() {
        0 => never(),
        1 => conditions.swap_remove(0),
        _ => qdrant::Filter::should(conditions).into(),
    }
}

/// Where a key's value lives.
enum Field {
    /// A top-level string field (`id`, `document_id`, `source`).
    Text(&'static str),
    /// The first page, an integer.
    Page,
    /// A metadata entry.
    Meta(String),
}

fn field(key: &str) -> Field {
    match key {
        "id" => Field::Text(CHUNK_ID),
        "document_id" => Field::Text(DOCUMENT_ID),
        "source" => Field::Text(SOURCE),
        "page" => Field::Page,
        _ => Field::Meta(field_key(key)),
    }
}

fn equals(key: &str, value: &Value) -> Condition {
    match field(key) {
        Field::Text(path) => match value {
            Value::String(s) => Condition::matches(path, s.clone()),
            _ => never(),
        },
        // A page number is a `u32`, which JSON equality only finds equal to a non-negative integer.
        Field::Page => match value.as_u64().map(u32::try_from) {
            Some(Ok(page)) => Condition::matches(PAGE, i64::from(page)),
            _ => never(),
        },
        Field::Meta(segment) if is_scalar(value) => {
            let path = format!("{META}.{segment}");
            match value {
                Value::Null => Condition::is_null(path),
                Value::Bool(b) => Condition::matches(path, *b),
                Value::String(s) => Condition::matches(path, s.clone()),
                Value::Number(n) => match (n.as_i64(), n.as_f64()) {
                    (Some(i), _) => Condition::matches(path, i),
                    (None, Some(f)) => float_equals(path, f),
                    (None, None) => never(),
                },
                Value::Array(_) | Value::Object(_) => never(),
            }
        }
        Field::Meta(segment) => {
            Condition::matches(format!("{META_JSON}.{segment}"), canonical_json(value))
        }
    }
}

/// Equality with a float: the range `[f, f]`, less the integer of the same value (JSON tells
/// `3.0` from `3`; Qdrant's range would not).
fn float_equals(path: String, f: f64) -> Condition {
    let exact = Condition::range(
        path.clone(),
        Range {
            gte: Some(f),
            lte: Some(f),
            ..Default::default()
        },
    );
    // `as` saturates; the round trip tells whether `f` is exactly an `i64`.
    let integral = f.fract() == 0.0 && (f as i64) as f64 == f && f.abs() < 9.2e18;
    if integral {
        qdrant::Filter {
            must: vec![exact],
            must_not: vec![Condition::matches(path, f as i64)],
            ..Default::default()
        }
        .into()
    } else {
        exact
    }
}

fn range(key: &str, gte: Option<f64>, lte: Option<f64>) -> Condition {
    let path = match field(key) {
        // Strings are never numbers.
        Field::Text(_) => return never(),
        Field::Page => PAGE.to_string(),
        Field::Meta(segment) => format!("{META}.{segment}"),
    };
    Condition::range(
        path,
        Range {
            gte,
            lte,
            ..Default::default()
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use qdrant_client::qdrant::condition::ConditionOneOf;
    use qdrant_client::qdrant::r#match::MatchValue;
    use serde_json::json;

    fn field_condition(c: &Condition) -> (&str, Option<&MatchValue>, Option<&Range>) {
        match &c.condition_one_of {
            Some(ConditionOneOf::Field(f)) => (
                f.key.as_str(),
                f.r#match.as_ref().and_then(|m| m.match_value.as_ref()),
                f.range.as_ref(),
            ),
            other => panic!("not a field condition: {other:?}"),
        }
    }

    fn nested(c: &Condition) -> &qdrant::Filter {
        match &c.condition_one_of {
            Some(ConditionOneOf::Filter(f)) => f,
            other => panic!("not a nested filter: {other:?}"),
        }
    }

    fn is_never(c: &Condition) -> bool {
        let f = nested(c);
        f.must.is_empty()
            && f.should.is_empty()
            && f.must_not.len() == 1
            && nested(&f.must_not[0]) == &qdrant::Filter::default()
    }

    #[test]
    fn well_known_keys_use_top_level_fields() {
        let c = condition(&Filter::eq("source", "docs/a.pdf"));
        assert_eq!(
            field_condition(&c),
            (
                "source",
                Some(&MatchValue::Keyword("docs/a.pdf".into())),
                None
            )
        );
        let c = condition(&Filter::eq("id", "c1"));
        assert_eq!(field_condition(&c).0, "chunk_id");
        let c = condition(&Filter::eq("page", 3));
        assert_eq!(
            field_condition(&c),
            ("page", Some(&MatchValue::Integer(3)), None)
        );
        // Values that can never be equal match nothing.
        assert!(is_never(&condition(&Filter::eq("source", 3))));
        assert!(is_never(&condition(&Filter::eq("page", "3"))));
        assert!(is_never(&condition(&Filter::eq("page", 3.0))));
        assert!(is_never(&condition(&Filter::eq("page", -1))));
        assert!(is_never(&condition(&Filter::Range {
            key: "document_id".into(),
            gte: None,
            lte: None
        })));
    }

    #[test]
    fn metadata_scalars_match_by_type() {
        let c = condition(&Filter::eq("lang", "de"));
        assert_eq!(
            field_condition(&c),
            ("meta.lang", Some(&MatchValue::Keyword("de".into())), None)
        );
        let c = condition(&Filter::eq("year", 2021));
        assert_eq!(field_condition(&c).1, Some(&MatchValue::Integer(2021)));
        let c = condition(&Filter::eq("draft", false));
        assert_eq!(field_condition(&c).1, Some(&MatchValue::Boolean(false)));
        let c = condition(&Filter::eq("a.b", "x"));
        assert_eq!(field_condition(&c).0, "meta.-612e62");
        let c = condition(&Filter::eq("gone", Value::Null));
        assert!(matches!(
            &c.condition_one_of,
            Some(ConditionOneOf::IsNull(n)) if n.key == "meta.gone"
        ));
    }

    #[test]
    fn float_equality_is_a_point_range_without_the_integer() {
        let c = condition(&Filter::eq("score", 2.5));
        let (key, _, range) = field_condition(&c);
        assert_eq!(key, "meta.score");
        assert_eq!(range.map(|r| (r.gte, r.lte)), Some((Some(2.5), Some(2.5))));

        let f = nested(&condition(&Filter::eq("score", 3.0))).clone();
        assert_eq!(f.must.len(), 1);
        assert_eq!(
            field_condition(&f.must_not[0]).1,
            Some(&MatchValue::Integer(3))
        );
    }

    #[test]
    fn non_scalars_match_their_canonical_json() {
        let c = condition(&Filter::eq("tags", json!(["b", "a"])));
        assert_eq!(
            field_condition(&c),
            (
                "meta_json.tags",
                Some(&MatchValue::Keyword(r#"["b","a"]"#.into())),
                None
            )
        );
        let c = condition(&Filter::eq("big", json!(u64::MAX)));
        assert_eq!(field_condition(&c).0, "meta_json.big");
    }

    #[test]
    fn boolean_structure_is_kept_and_empty_lists_match_nothing() {
        assert!(is_never(&condition(&Filter::In {
            key: "lang".into(),
            values: vec![]
        })));
        assert!(is_never(&condition(&Filter::Or { filters: vec![] })));
        assert_eq!(
            nested(&condition(&Filter::And { filters: vec![] })),
            &qdrant::Filter::default()
        );
        let c = condition(&Filter::In {
            key: "lang".into(),
            values: vec![json!("de"), json!("fr")],
        });
        assert_eq!(nested(&c).should.len(), 2);
        let c = condition(&Filter::Not {
            filter: Box::new(Filter::eq("lang", "de")),
        });
        assert_eq!(nested(&c).must_not.len(), 1);
        let c = condition(&Filter::Range {
            key: "page".into(),
            gte: Some(2.0),
            lte: None,
        });
        assert_eq!(
            field_condition(&c).2.map(|r| (r.gte, r.lte)),
            Some((Some(2.0), None))
        );
        let top = to_qdrant(&Filter::eq("lang", "de"));
        assert_eq!(top.must.len(), 1);
    }
}
