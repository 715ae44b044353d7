//! How a chunk lies in a Qdrant point: its id, and the payload that holds it.
//!
//! The payload has the chunk twice over, for two readers:
//!
//! - `chunk`: the whole [`Chunk`] as a JSON string, which gives it back exactly (a payload
//!   object would pass through protobuf `Value`s, which lose integers above `i64::MAX`);
//! - the fields filters look at: `chunk_id`, `document_id`, `source`, `page` (the first page, an
//!   integer) and `document_hash` at the top, and each metadata entry under `meta` (scalars:
//!   strings, booleans, nulls, numbers that fit `i64` or are floats) or `meta_json` (anything else,
//!   as canonical JSON text). Keeping arrays out of `meta` matters: Qdrant matches a condition
//!   against any element of an array, while [`corral_core::Filter::matches`] compares the whole
//!   value.
//!
//! Metadata keys become one JSON-path segment each ([`field_key`]), since a key may hold dots,
//! brackets or quotes that Qdrant's paths cannot escape.

use std::collections::HashMap;
use std::fmt::Write as _;

use corral_core::Chunk;
use qdrant_client::qdrant::value::Kind;
use qdrant_client::qdrant::{Struct, Value as QValue};
use serde_json::Value;
use uuid::Uuid;

pub const CHUNK: &str = "chunk";
pub const CHUNK_ID: &str = "chunk_id";
pub const DOCUMENT_ID: &str = "document_id";
pub const SOURCE: &str = "source";
pub const PAGE: &str = "page";
pub const DOCUMENT_HASH: &str = "document_hash";
pub const META: &str = "meta";
pub const META_JSON: &str = "meta_json";

/// Point ids are UUIDv5 of the chunk id in this namespace (itself UUIDv5 of `corral.chunk` in
/// the DNS namespace), so the same chunk always lands on the same point.
const NAMESPACE: Uuid = Uuid::from_u128(0x514f_4c5b_d05e_54b6_ba93_11dd_1ae6_13bc);

/// The point id of a chunk: a UUID derived from its id alone.
pub fn point_id(chunk_id: &str) -> Uuid {
    Uuid::new_v5(&NAMESPACE, chunk_id.as_bytes())
}

/// One path segment for a metadata key: the key itself when it is plain ASCII letters, digits
/// and `_`; otherwise `-` and the key's UTF-8 bytes in hex (`-` never occurs in a plain key, so
/// two keys never share a segment).
pub fn field_key(key: &str) -> String {
    if !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return key.to_string();
    }
    let mut out = String::with_capacity(1 + 2 * key.len());
    out.push('-');
    for b in key.bytes() {
        // Writing to a String cannot fail.
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// Whether a metadata value is kept under `meta` (as itself) rather than under `meta_json`.
pub fn is_scalar(value: &Value) -> bool {
    match value {
        Value::Null | Value::Bool(_) | Value::String(_) => true,
        Value::Number(n) => n.is_i64() || n.is_f64(),
        Value::Array(_) | Value::Object(_) => false,
    }
}

/// JSON text with object keys sorted at every level, so equal values have equal text.
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(item, out);
            }
            out.push('}');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// A scalar JSON value as a Qdrant value (see [`is_scalar`]).
pub fn scalar_value(value: &Value) -> Option<QValue> {
    let kind = match value {
        Value::Null => Kind::NullValue(0),
        Value::Bool(b) => Kind::BoolValue(*b),
        Value::String(s) => Kind::StringValue(s.clone()),
        Value::Number(n) => match (n.as_i64(), n.is_f64()) {
            (Some(i), _) => Kind::IntegerValue(i),
            (None, true) => Kind::DoubleValue(n.as_f64()?),
            (None, false) => return None,
        },
        Value::Array(_) | Value::Object(_) => return None,
    };
    Some(QValue { kind: Some(kind) })
}

fn string(value: impl Into<String>) -> QValue {
    QValue {
        kind: Some(Kind::StringValue(value.into())),
    }
}

fn object(fields: HashMap<String, QValue>) -> QValue {
    QValue {
        kind: Some(Kind::StructValue(Struct { fields })),
    }
}

/// The payload of a chunk's point.
pub fn to_payload(chunk: &Chunk) -> Result<HashMap<String, QValue>, serde_json::Error> {
    let mut payload = HashMap::new();
    payload.insert(CHUNK.to_string(), string(serde_json::to_string(chunk)?));
    payload.insert(CHUNK_ID.to_string(), string(&chunk.id));
    payload.insert(DOCUMENT_ID.to_string(), string(&chunk.document_id));
    payload.insert(SOURCE.to_string(), string(&chunk.source));
    if let Some(pages) = chunk.pages {
        payload.insert(PAGE.to_string(), i64::from(pages.start).into());
    }
    if let Some(hash) = &chunk.document_hash {
        payload.insert(DOCUMENT_HASH.to_string(), string(hash));
    }
    let mut meta = HashMap::new();
    let mut meta_json = HashMap::new();
    for (key, value) in &chunk.metadata {
        match scalar_value(value) {
            Some(v) => meta.insert(field_key(key), v),
            None => meta_json.insert(field_key(key), string(canonical_json(value))),
        };
    }
    payload.insert(META.to_string(), object(meta));
    payload.insert(META_JSON.to_string(), object(meta_json));
    Ok(payload)
}

/// A string field of a payload.
pub fn string_field<'a>(payload: &'a HashMap<String, QValue>, key: &str) -> Option<&'a str> {
    match payload.get(key)?.kind.as_ref()? {
        Kind::StringValue(s) => Some(s),
        _ => None,
    }
}

/// The chunk a payload holds.
pub fn chunk_from_payload(payload: &HashMap<String, QValue>) -> Result<Chunk, String> {
    let text = string_field(payload, CHUNK).ok_or("the payload has no `chunk` string")?;
    serde_json::from_str(text).map_err(|e| format!("the payload's `chunk` is not a chunk: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use corral_core::PageRange;
    use serde_json::json;

    #[test]
    fn point_ids_are_stable_uuids_of_the_chunk_id() {
        let a = point_id("doc-1#0");
        assert_eq!(a, point_id("doc-1#0"));
        assert_ne!(a, point_id("doc-1#1"));
        assert_eq!(a.get_version_num(), 5);
        // Pinned (Python: uuid5(uuid5(NAMESPACE_DNS, "corral.chunk"), "doc-1#0")): these ids are
        // stored, so the derivation must never change.
        assert_eq!(a.to_string(), "39152532-f807-5223-bbe1-4cfbf23d221a");
        assert_eq!(
            NAMESPACE,
            Uuid::new_v5(&Uuid::NAMESPACE_DNS, b"corral.chunk"),
        );
    }

    #[test]
    fn field_keys_are_single_plain_path_segments() {
        assert_eq!(field_key("lang"), "lang");
        assert_eq!(field_key("year_2"), "year_2");
        assert_eq!(field_key("a.b"), "-612e62");
        assert_eq!(field_key("é"), "-c3a9");
        assert_eq!(field_key(""), "-");
        assert_eq!(field_key("a\"b"), "-612262");
        assert_ne!(field_key("-61"), field_key("a"));
    }

    #[test]
    fn scalars_and_others_are_told_apart() {
        assert!(is_scalar(&json!("x")));
        assert!(is_scalar(&json!(null)));
        assert!(is_scalar(&json!(-3)));
        assert!(is_scalar(&json!(2.5)));
        assert!(!is_scalar(&json!(u64::MAX)));
        assert!(!is_scalar(&json!(["a"])));
        assert!(!is_scalar(&json!({"a": 1})));
        assert_eq!(
            canonical_json(&json!({"b": [1, {"d": 2, "c": "x"}], "a": null})),
            r#"{"a":null,"b":[1,{"c":"x","d":2}]}"#
        );
        assert_ne!(canonical_json(&json!(1)), canonical_json(&json!(1.0)));
    }

    #[test]
    fn the_payload_gives_the_chunk_back() {
        let mut metadata = serde_json::Map::new();
        metadata.insert("lang".into(), json!("de"));
        metadata.insert("big".into(), json!(u64::MAX));
        metadata.insert("tags".into(), json!(["a", "b"]));
        metadata.insert("a.b".into(), json!(1.5));
        let chunk = Chunk {
            id: "c1".into(),
            document_id: "d1".into(),
            text: "Hallo Welt".into(),
            source: "docs/a.pdf".into(),
            pages: Some(PageRange { start: 3, end: 4 }),
            heading_path: vec!["Intro".into()],
            byte_range: Some(10..20),
            content_hash: Some("abc".into()),
            document_hash: Some("def".into()),
            metadata,
        };
        let payload = to_payload(&chunk).expect("serializable");
        assert_eq!(chunk_from_payload(&payload), Ok(chunk));
        assert_eq!(string_field(&payload, CHUNK_ID), Some("c1"));
        assert_eq!(
            payload.get(PAGE).and_then(|v| v.kind.clone()),
            Some(Kind::IntegerValue(3))
        );
        let Some(Kind::StructValue(meta)) = payload.get(META).and_then(|v| v.kind.clone()) else {
            panic!("no meta object");
        };
        assert_eq!(meta.fields.len(), 2);
        assert!(meta.fields.contains_key("-612e62"));
        let Some(Kind::StructValue(json)) = payload.get(META_JSON).and_then(|v| v.kind.clone())
        else {
            panic!("no meta_json object");
        };
        assert_eq!(
            json.fields.get("tags").and_then(|v| v.kind.clone()),
            Some(Kind::StringValue(r#"["a","b"]"#.into()))
        );
    }
}
