//! Tools: typed tools from Rust functions, the built-ins, and MCP servers as tool groups (issue #6).
//!
//! Nothing is implemented here yet; the crate exists so that the workspace has its final shape and
//! dependency direction (it depends on `corral-core` only) from the start.
