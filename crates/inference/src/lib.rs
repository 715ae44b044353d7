//! Inference providers: chat models and embedders behind `corral-core`'s traits.
//!
//! - [`remote`] (feature `remote`): every OpenAI-compatible endpoint — Together, Fireworks, Groq,
//!   NVIDIA NIM, vLLM, Ollama, llama.cpp's `llama-server`, … — through one client and a table of
//!   presets.
//! - [`bedrock`] (feature `bedrock`): AWS Bedrock's Converse API, signed with SigV4.
//! - Local GGUF models on CPU (feature `local`) arrive with issue #3.

#[cfg(feature = "bedrock")]
pub mod bedrock;
#[cfg(feature = "remote")]
pub mod remote;
#[cfg(feature = "remote")]
mod stream;
