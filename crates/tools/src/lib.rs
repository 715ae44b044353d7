//! Tools a model can call.
//!
//! - [`tool_fn`] and [`TypedTool`]: a Rust function or struct becomes a [`corral_core::Tool`] whose
//!   JSON schema is generated from its arguments type and checked before every call.
//! - [`Limited`]: a time limit and an output cap around any tool.
//! - [`builtin`]: `knowledge_search`, `calculator`, `current_time`; with the `web` feature
//!   `http_fetch` and `web_search` ([`web`]); with the `mcp` feature, any MCP server's tools ([`mcp`]).

pub mod builtin;
mod limits;
#[cfg(feature = "mcp")]
pub mod mcp;
pub mod schema;
mod typed;
#[cfg(feature = "web")]
pub mod web;

pub use limits::{Limited, Limits};
pub use schema::{ArgumentSchema, SchemaProblem};
pub use typed::{FnTool, Typed, TypedTool, parse_arguments, tool_fn};
