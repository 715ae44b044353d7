//! Vector stores: chunks with their embeddings, searched by vector, keyword or both.

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::document::{Chunk, SearchHit};
use crate::embed::Embedding;
use crate::error::VectorStoreError;

/// A chunk ready to store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmbeddedChunk {
    pub chunk: Chunk,
    pub embedding: Embedding,
}

/// How to find chunks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum SearchMode {
    /// Nearest embeddings.
    Vector,
    /// BM25 over the chunk text.
    Keyword,
    /// Both, fused.
    #[default]
    Hybrid,
}

/// How hybrid search merges the vector and keyword rankings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Fusion {
    /// Reciprocal rank fusion: each list adds `1 / (k + rank)`.
    Rrf { k: f32 },
    /// Normalised scores mixed as `vector_weight * vector + (1 - vector_weight) * keyword`.
    Weighted { vector_weight: f32 },
}

impl Default for Fusion {
    fn default() -> Self {
        Self::Rrf { k: 60.0 }
    }
}

/// A condition on chunk fields (see [`Chunk::field`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Filter {
    Eq {
        key: String,
        value: serde_json::Value,
    },
    In {
        key: String,
        values: Vec<serde_json::Value>,
    },
    /// A numeric field within `[gte, lte]`; a missing bound is open.
    Range {
        key: String,
        gte: Option<f64>,
        lte: Option<f64>,
    },
    And {
        filters: Vec<Filter>,
    },
    Or {
        filters: Vec<Filter>,
    },
    Not {
        filter: Box<Filter>,
    },
}

impl Filter {
    pub fn eq(key: impl Into<String>, value: impl Into<serde_json::Value>) -> Self {
        Self::Eq {
            key: key.into(),
            value: value.into(),
        }
    }

    /// Whether a chunk passes. This is the reference meaning of a filter: stores that filter
    /// elsewhere (in a query language, on a server) must agree with it.
    pub fn matches(&self, chunk: &Chunk) -> bool {
        match self {
            Self::Eq { key, value } => chunk.field_ref(key).is_some_and(|f| f.eq_value(value)),
            Self::In { key, values } => chunk
                .field_ref(key)
                .is_some_and(|f| values.iter().any(|v| f.eq_value(v))),
            Self::Range { key, gte, lte } => chunk
                .field_ref(key)
                .and_then(|f| f.as_f64())
                .is_some_and(|v| gte.is_none_or(|lo| v >= lo) && lte.is_none_or(|hi| v <= hi)),
            Self::And { filters } => filters.iter().all(|f| f.matches(chunk)),
            Self::Or { filters } => filters.iter().any(|f| f.matches(chunk)),
            Self::Not { filter } => !filter.matches(chunk),
        }
    }
}

/// A search. Vector and hybrid modes need `embedding` (the query text embedded by the store's
/// embedder); keyword and hybrid modes use `text`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchQuery {
    pub text: String,
    #[serde(default)]
    pub embedding: Option<Embedding>,
    #[serde(default)]
    pub mode: SearchMode,
    #[serde(default)]
    pub fusion: Fusion,
    #[serde(default)]
    pub filter: Option<Filter>,
    pub top_k: usize,
    /// Hits scoring below this are dropped.
    #[serde(default)]
    pub min_score: Option<f32>,
}

/// A document as a store holds it, summed up from its chunks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredDocument {
    pub id: String,
    pub source: String,
    /// [`Chunk::document_hash`] of its chunks (`None` when they carry none).
    pub document_hash: Option<String>,
    pub chunks: usize,
}

#[async_trait]
pub trait VectorStore: Send + Sync {
    /// Inserts chunks, replacing any with the same id.
    async fn upsert(&self, chunks: Vec<EmbeddedChunk>) -> Result<(), VectorStoreError>;

    /// Removes every chunk of a document; returns how many there were.
    async fn delete_document(&self, document_id: &str) -> Result<usize, VectorStoreError>;

    /// The best hits, best first, at most `top_k`.
    async fn search(&self, query: &SearchQuery) -> Result<Vec<SearchHit>, VectorStoreError>;

    /// Removes every chunk of the documents `document_ids` and inserts `chunks` (which belong to
    /// those documents) in their place: re-ingesting changed documents, or pruning them with no
    /// chunks. A store that can does it atomically, so a reader or a crash never sees a document
    /// half replaced; this default deletes and then inserts.
    async fn replace_documents(
        &self,
        document_ids: &[String],
        chunks: Vec<EmbeddedChunk>,
    ) -> Result<(), VectorStoreError> {
        check_replacement(document_ids, &chunks)?;
        for id in document_ids {
            self.delete_document(id).await?;
        }
        self.upsert(chunks).await
    }

    /// Every document the store holds, ordered by id.
    async fn documents(&self) -> Result<Vec<StoredDocument>, VectorStoreError>;
}

/// The check [`VectorStore::replace_documents`] makes before changing anything: every chunk
/// belongs to one of the documents replaced.
pub fn check_replacement(
    document_ids: &[String],
    chunks: &[EmbeddedChunk],
) -> Result<(), VectorStoreError> {
    match chunks
        .iter()
        .find(|c| !document_ids.contains(&c.chunk.document_id))
    {
        Some(stray) => Err(VectorStoreError::InvalidRequest(format!(
            "chunk `{}` belongs to document `{}`, which is not among those replaced",
            stray.chunk.id, stray.chunk.document_id
        ))),
        None => Ok(()),
    }
}

#[async_trait]
impl<S: VectorStore + ?Sized> VectorStore for Arc<S> {
    async fn upsert(&self, chunks: Vec<EmbeddedChunk>) -> Result<(), VectorStoreError> {
        (**self).upsert(chunks).await
    }
    async fn delete_document(&self, document_id: &str) -> Result<usize, VectorStoreError> {
        (**self).delete_document(document_id).await
    }
    async fn search(&self, query: &SearchQuery) -> Result<Vec<SearchHit>, VectorStoreError> {
        (**self).search(query).await
    }
    async fn replace_documents(
        &self,
        document_ids: &[String],
        chunks: Vec<EmbeddedChunk>,
    ) -> Result<(), VectorStoreError> {
        (**self).replace_documents(document_ids, chunks).await
    }
    async fn documents(&self) -> Result<Vec<StoredDocument>, VectorStoreError> {
        (**self).documents().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::document::PageRange;
    use serde_json::json;

    fn chunk() -> Chunk {
        let mut metadata = serde_json::Map::new();
        metadata.insert("lang".into(), json!("de"));
        metadata.insert("year".into(), json!(2021));
        Chunk {
            id: "c1".into(),
            document_id: "d1".into(),
            text: "Hallo".into(),
            source: "docs/a.pdf".into(),
            pages: Some(PageRange { start: 3, end: 4 }),
            heading_path: vec![],
            byte_range: None,
            content_hash: None,
            document_hash: None,
            metadata,
        }
    }

    #[test]
    fn filters_see_well_known_fields_and_metadata() {
        let c = chunk();
        assert!(Filter::eq("lang", "de").matches(&c));
        assert!(Filter::eq("source", "docs/a.pdf").matches(&c));
        assert!(!Filter::eq("lang", "fr").matches(&c));
        assert!(
            Filter::In {
                key: "lang".into(),
                values: vec![json!("fr"), json!("de")]
            }
            .matches(&c)
        );
        let range = |gte, lte| Filter::Range {
            key: "year".into(),
            gte,
            lte,
        };
        assert!(range(Some(2020.0), Some(2021.0)).matches(&c));
        assert!(!range(None, Some(2020.0)).matches(&c));
        assert!(
            Filter::Range {
                key: "page".into(),
                gte: Some(3.0),
                lte: None
            }
            .matches(&c)
        );
        // A missing field fails every condition on it, and `Not` inverts.
        assert!(!Filter::eq("missing", 1).matches(&c));
        assert!(
            Filter::Not {
                filter: Box::new(Filter::eq("missing", 1))
            }
            .matches(&c)
        );
        assert!(
            Filter::And {
                filters: vec![Filter::eq("lang", "de"), range(Some(2000.0), None)]
            }
            .matches(&c)
        );
    }
}
