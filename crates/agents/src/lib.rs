//! The agent loop: turns of inference, tool calls and shields, with sessions persisted in SQLite (issue #6).
//!
//! Nothing is implemented here yet; the crate exists so that the workspace has its final shape and
//! dependency direction (it depends on `corral-core` only) from the start.
