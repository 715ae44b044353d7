//! Documents in, chunks out, and the stores that hold them: loaders (PDF, text, Markdown, HTML, a
//! directory walker), token-aware chunking, the ingestion pipeline, the embedded store (tantivy +
//! vectors) and Qdrant.

pub mod text;

pub use text::{Extracted, Section};
