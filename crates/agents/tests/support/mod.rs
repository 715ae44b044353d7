//! Doubles shared by the agent tests.
#![allow(dead_code)]

use std::sync::Arc;

use corral_core::{
    Chunk, EmbedError, Embedder, Embedding, SearchHit, SearchQuery, SearchableStore,
    StoredDocument, VectorStore, VectorStoreError, async_trait,
};
use corral_tools::builtin::{KnowledgeSettings, Retriever};

/// An embedder that maps every text to the same vector, and a store that finds chunks sharing a
/// word with the query: enough to check how retrieved passages reach the model.
pub struct OneVector;

#[async_trait]
impl Embedder for OneVector {
    fn dimension(&self) -> usize {
        2
    }
    fn max_input_tokens(&self) -> usize {
        512
    }
    async fn embed(&self, inputs: &[String]) -> Result<Vec<Embedding>, EmbedError> {
        Ok(inputs.iter().map(|_| vec![1.0, 0.0]).collect())
    }
}

pub struct WordStore(pub Vec<Chunk>);

#[async_trait]
impl VectorStore for WordStore {
    async fn upsert(&self, _: Vec<corral_core::EmbeddedChunk>) -> Result<(), VectorStoreError> {
        Ok(())
    }
    async fn delete_document(&self, _: &str) -> Result<usize, VectorStoreError> {
        Ok(0)
    }
    async fn search(&self, query: &SearchQuery) -> Result<Vec<SearchHit>, VectorStoreError> {
        let words: Vec<String> = query
            .text
            .to_lowercase()
            .split_whitespace()
            .map(str::to_string)
            .collect();
        Ok(self
            .0
            .iter()
            .filter(|c| {
                words
                    .iter()
                    .any(|w| c.text.to_lowercase().contains(w.as_str()))
            })
            .take(query.top_k)
            .map(|c| SearchHit {
                chunk: c.clone(),
                score: 1.0,
            })
            .collect())
    }
    async fn documents(&self) -> Result<Vec<StoredDocument>, VectorStoreError> {
        Ok(Vec::new())
    }
}

/// A chunk of `source` with heading "Llamas".
pub fn chunk(id: &str, source: &str, text: &str) -> Chunk {
    Chunk {
        id: id.into(),
        document_id: format!("doc-{id}"),
        text: text.into(),
        source: source.into(),
        pages: None,
        heading_path: vec!["Llamas".into()],
        byte_range: None,
        content_hash: None,
        document_hash: None,
        metadata: Default::default(),
    }
}

/// A retriever over one [`WordStore`] named `docs`.
pub fn retriever(chunks: Vec<Chunk>) -> Retriever {
    let store = SearchableStore {
        id: "docs".into(),
        store: Arc::new(WordStore(chunks)),
        embedder: Arc::new(OneVector),
    };
    Retriever::new(vec![store], KnowledgeSettings::new(vec!["docs".into()]))
        .unwrap_or_else(|e| panic!("retriever: {e}"))
}
