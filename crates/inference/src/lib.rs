//! Inference providers: local GGUF models on CPU and remote OpenAI-compatible endpoints, as chat models and embedders (issues #3, #4).
//!
//! Nothing is implemented here yet; the crate exists so that the workspace has its final shape and
//! dependency direction (it depends on `corral-core` only) from the start.
