//! Vector memory: document loaders, chunking, the ingestion pipeline, the embedded store and Qdrant (issue #5).
//!
//! Nothing is implemented here yet; the crate exists so that the workspace has its final shape and
//! dependency direction (it depends on `corral-core` only) from the start.
