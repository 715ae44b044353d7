//! Shields: Llama Guard, prompt-injection and PII detection, rule lists (issue #7).
//!
//! Nothing is implemented here yet; the crate exists so that the workspace has its final shape and
//! dependency direction (it depends on `corral-core` only) from the start.
