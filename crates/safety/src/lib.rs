//! Shields: checks on what goes into and comes out of a model, each usable on its own or as an
//! agent's input, output and content shield.
//!
//! - [`llama_guard`]: Llama Guard 3 on any chat model (local GGUF or remote), with its published
//!   prompt format and hazard taxonomy S1–S14.
//! - [`injection`]: prompt injection in a user's request (direct) and in retrieved passages and
//!   tool results (indirect): a scored heuristic detector, and optionally a classifier model.
//! - [`pii`]: e-mail addresses, phone numbers, payment cards, IBANs, national IDs, IP addresses
//!   and secrets; block, redact or report.
//! - [`rules`]: regex and keyword deny lists with allow-list exceptions.
//!
//! [`ShieldProvider`] builds each kind from a shield entry's `params` in `corral.toml`;
//! [`redteam`] measures a shield on a labelled set.

pub mod injection;
pub mod llama_guard;
pub mod pii;
pub mod redteam;
pub mod rules;

mod provider;
mod text;

pub use provider::{KINDS, ShieldProvider};
