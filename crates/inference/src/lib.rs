//! Inference providers: chat models and embedders behind `corral-core`'s traits.
//!
//! - [`remote`] (feature `remote`): every OpenAI-compatible endpoint — Together, Fireworks, Groq,
//!   NVIDIA NIM, vLLM, Ollama, llama.cpp's `llama-server`, … — through one client and a table of
//!   presets.
//! - [`bedrock`] (feature `bedrock`): AWS Bedrock's Converse API, signed with SigV4.
//! - [`local`] (feature `local`): GGUF chat models (Llama 3.x, Gemma 3) and BERT sentence
//!   embedders on CPU, with candle.

#[cfg(feature = "bedrock")]
pub mod bedrock;
#[cfg(feature = "local")]
pub mod local;
#[cfg(feature = "remote")]
pub mod remote;
#[cfg(feature = "remote")]
mod stream;
