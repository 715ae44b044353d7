//! Corral: agentic RAG with pluggable providers.
//!
//! This crate is a facade. The vocabulary and provider traits of [`corral_core`] are re-exported at
//! the top level (`corral::ChatModel`, `corral::Message`, …); each workspace crate is re-exported as
//! a module. Start with [`stack::Stack`], which turns a `corral.toml` into providers you can call.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use corral::stack::{ConfigSource, Registry, Stack};
//! use corral::{ChatModel, ChatRequest, Message};
//!
//! let stack = Stack::load(&ConfigSource::discover(None), &Registry::builtin())?;
//! let model = stack.chat_model("llama3.2-1b").await?;
//! let answer = model
//!     .complete(&ChatRequest::new(vec![Message::user("Hello!")]))
//!     .await?;
//! println!("{}", answer.text);
//! # Ok(()) }
//! ```

pub use corral_core::*;

pub use corral_agents as agents;
pub use corral_inference as inference;
pub use corral_memory as memory;
pub use corral_safety as safety;
#[cfg(feature = "server")]
pub use corral_server as server;
pub use corral_stack as stack;
pub use corral_tools as tools;

/// README.md's Rust examples, compiled as doc tests so that they stay true.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
