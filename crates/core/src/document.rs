//! Documents, the chunks they are cut into, and the hits a search returns.

use std::ops::Range;

use serde::{Deserialize, Serialize};

/// Free-form metadata, filterable in searches.
pub type Metadata = serde_json::Map<String, serde_json::Value>;

/// A source document as ingested: a file or a URL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Document {
    pub id: String,
    /// Where it came from: a path or URL, shown in citations.
    pub source: String,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub metadata: Metadata,
}

/// Pages `start..=end`, counted from 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageRange {
    pub start: u32,
    pub end: u32,
}

/// A piece of a document, the unit that is embedded, stored and retrieved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Chunk {
    pub id: String,
    pub document_id: String,
    pub text: String,
    /// The document's source, repeated here so a hit can be cited without another lookup.
    pub source: String,
    #[serde(default)]
    pub pages: Option<PageRange>,
    /// Headings above this chunk, outermost first.
    #[serde(default)]
    pub heading_path: Vec<String>,
    /// Where the chunk's text lies in the document's extracted text.
    #[serde(default)]
    pub byte_range: Option<Range<usize>>,
    /// Hash of `text`, to tell unchanged chunks on re-ingestion.
    #[serde(default)]
    pub content_hash: Option<String>,
    /// Hash of the whole document this chunk was cut from, as it was when ingested: re-ingestion
    /// compares it to tell an unchanged document, which it then leaves alone.
    #[serde(default)]
    pub document_hash: Option<String>,
    #[serde(default)]
    pub metadata: Metadata,
}

impl Chunk {
    /// The value a filter sees for `key`: the well-known fields by name (`document_id`, `source`,
    /// `page` — the first page), anything else from [`Self::metadata`].
    pub fn field(&self, key: &str) -> Option<serde_json::Value> {
        self.field_ref(key).map(|f| match f {
            FieldRef::Str(s) => s.into(),
            FieldRef::Page(p) => p.into(),
            FieldRef::Value(v) => v.clone(),
        })
    }

    /// [`Self::field`] without copying: filters are evaluated on every chunk of a store.
    pub(crate) fn field_ref(&self, key: &str) -> Option<FieldRef<'_>> {
        match key {
            "id" => Some(FieldRef::Str(&self.id)),
            "document_id" => Some(FieldRef::Str(&self.document_id)),
            "source" => Some(FieldRef::Str(&self.source)),
            "page" => self.pages.map(|p| FieldRef::Page(p.start)),
            _ => self.metadata.get(key).map(FieldRef::Value),
        }
    }
}

/// A borrowed [`Chunk::field`] value.
#[derive(Debug, Clone, Copy)]
pub(crate) enum FieldRef<'a> {
    Str(&'a str),
    Page(u32),
    Value(&'a serde_json::Value),
}

impl FieldRef<'_> {
    /// Equal to the JSON value `other`, as `Chunk::field(..) == Some(other)` would be.
    pub(crate) fn eq_value(self, other: &serde_json::Value) -> bool {
        match self {
            Self::Str(s) => other.as_str() == Some(s),
            Self::Page(p) => other.as_u64() == Some(u64::from(p)),
            Self::Value(v) => v == other,
        }
    }

    pub(crate) fn as_f64(self) -> Option<f64> {
        match self {
            Self::Str(_) => None,
            Self::Page(p) => Some(f64::from(p)),
            Self::Value(v) => v.as_f64(),
        }
    }
}

/// A chunk found by a search, with its score (higher is better; the scale depends on the mode).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchHit {
    pub chunk: Chunk,
    pub score: f32,
}

/// A retrieved passage an answer cites as `[index]`: where it comes from, for the reader to check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Citation {
    /// The number the context and the answer use for it, from 1.
    pub index: usize,
    /// The id of the vector store it was found in.
    pub store: String,
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pages: Option<PageRange>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub heading_path: Vec<String>,
    pub document_id: String,
    pub chunk_id: String,
    /// The store's score for it (the scale depends on the search mode).
    pub score: f32,
}

impl Citation {
    /// `guide.pdf, p. 3–4 › Installation › Requirements`, as a reader would want to see it.
    pub fn label(&self) -> String {
        let mut label = self.source.clone();
        if let Some(pages) = self.pages {
            if pages.start == pages.end {
                label.push_str(&format!(", p. {}", pages.start));
            } else {
                label.push_str(&format!(", pp. {}–{}", pages.start, pages.end));
            }
        }
        for heading in &self.heading_path {
            label.push_str(" › ");
            label.push_str(heading);
        }
        label
    }
}
