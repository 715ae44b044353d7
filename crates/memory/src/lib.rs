//! Documents in, chunks out, and the stores that hold them: loaders (PDF, text, Markdown, HTML, a
//! directory walker), token-aware chunking, the ingestion pipeline, the embedded store (tantivy +
//! vectors) and Qdrant.

pub mod chunk;
#[cfg(any(test, feature = "testing"))]
pub mod conformance;
pub mod embedded;
pub mod eval;
pub mod fusion;
pub mod ingest;
pub mod load;
#[cfg(feature = "qdrant")]
pub mod qdrant;
pub mod text;

pub use chunk::{ApproxTokenCounter, ChunkConfig, Piece, chunk};
pub use embedded::{EmbeddedConfig, EmbeddedProvider, EmbeddedStore};
pub use ingest::{IngestError, IngestOptions, IngestReport, Ingestor, Progress, TextDocument};
pub use text::{Extracted, Section};
