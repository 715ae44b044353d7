//! The HTTP server: an OpenAI- and Llama-Stack-compatible API over a stack (issue #8).
//!
//! Nothing is implemented here yet; the crate exists so that the workspace has its final shape and
//! dependency direction from the start. Like `corral-stack` and the CLI, it will assemble: it is one
//! of the three crates allowed to depend on the provider crates.
