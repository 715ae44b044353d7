//! Local sentence embeddings with BERT-family models (all-MiniLM-L6-v2 and its relatives) on the
//! CPU, with candle.
//!
//! [`LocalEmbedder::load`] reads a model directory as sentence-transformers ships it:
//!
//! - `config.json`: the encoder's shape (Hugging Face `BertConfig`);
//! - `model.safetensors`: the weights (F32 or F16/BF16, computed in F32);
//! - `tokenizer.json`: a Hugging Face tokenizer, read by our own WordPiece implementation
//!   ([`WordPieceTokenizer`]), which refuses component kinds it does not reproduce;
//! - `modules.json`, `1_Pooling/config.json`: mean or CLS pooling, and whether a `Normalize`
//!   module L2-normalises the result;
//! - `sentence_bert_config.json`: `max_seq_length`, the truncation length (256 word pieces for
//!   all-MiniLM-L6-v2, special tokens included).
//!
//! Inputs run in batches of [`LocalEmbedderOptions::batch_size`] without padding: a batch's
//! tokens are stacked into one matrix for the linear layers, and attention runs per sequence, so
//! a short text never pays for a long one beside it. The encoder is our own code
//! (`model.rs`, with the matrix products of `sgemm.rs`); candle only reads the safetensors file.
//!
//! # Threads
//!
//! Every step runs on candle's kernel threads (the calling thread and `n - 1` workers), `n`
//! being `CANDLE_NUM_THREADS`, else `RAYON_NUM_THREADS`, else the number of physical cores, read
//! once at first use. The async [`Embedder::embed`] runs the computation in
//! `tokio::task::spawn_blocking`, so it never blocks the async workers.

mod config;
mod model;
mod sgemm;
mod tokenizer;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use corral_core::{
    EmbedError, Embedder, Embedding, ErrorKind, ProviderError, TokenCounter, async_trait,
};

pub use config::Pooling;
pub use tokenizer::{Encoding, WordPieceTokenizer};

use config::{BertConfig, Pipeline};
use model::{BertModel, Sequence};

/// The provider name put on errors this module reports through [`EmbedError`].
const PROVIDER: &str = "local-bert";

/// Errors from loading or running a local BERT embedder. Each names the file (and key or tensor)
/// it is about.
#[derive(Debug, thiserror::Error)]
pub enum BertError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A JSON file is malformed, or asks for something this implementation does not support.
    #[error("{}: {message}", path.display())]
    Config { path: PathBuf, message: String },
    /// `model.safetensors` is unreadable or does not match `config.json`.
    #[error("{}: {message}", path.display())]
    Weights { path: PathBuf, message: String },
    /// The options passed to [`LocalEmbedder::load`] are unusable.
    #[error("invalid option {option}: {message}")]
    Options {
        option: &'static str,
        message: String,
    },
    /// An input is longer than the model takes, and truncation is switched off.
    #[error("input {index} has {tokens} tokens; the embedder takes at most {limit}")]
    InputTooLong {
        index: usize,
        tokens: usize,
        limit: usize,
    },
    /// The tensor computation failed (a bug or an exhausted machine, not bad input).
    #[error("model {}: computation failed: {message}", dir.display())]
    Compute { dir: PathBuf, message: String },
}

impl From<BertError> for EmbedError {
    fn from(error: BertError) -> Self {
        match error {
            BertError::InputTooLong {
                index,
                tokens,
                limit,
            } => EmbedError::InputTooLong {
                index,
                tokens,
                limit,
            },
            BertError::Options { .. } => EmbedError::InvalidRequest(error.to_string()),
            other => EmbedError::Provider(
                ProviderError::new(ErrorKind::Permanent, other.to_string()).with_provider(PROVIDER),
            ),
        }
    }
}

/// How a [`LocalEmbedder`] runs.
#[derive(Debug, Clone)]
pub struct LocalEmbedderOptions {
    /// Inputs per forward pass (default 32). Larger batches are faster per text up to a point,
    /// and use memory in proportion to the batch's tokens (about 21 KiB per token for
    /// all-MiniLM-L6-v2).
    pub batch_size: usize,
    /// Truncation length in tokens, special tokens included. Default: `sentence_bert_config.json`'s
    /// `max_seq_length`, else `tokenizer.json`'s truncation, else the model's position limit.
    /// Never more than the model's `max_position_embeddings`.
    pub max_length: Option<usize>,
    /// Cut inputs that are too long (default, as sentence-transformers does), rather than fail
    /// with [`BertError::InputTooLong`].
    pub truncate: bool,
}

impl Default for LocalEmbedderOptions {
    fn default() -> Self {
        Self {
            batch_size: 32,
            max_length: None,
            truncate: true,
        }
    }
}

/// A sentence embedder running a BERT-family model on the CPU. Cheap to clone (shared weights).
#[derive(Debug, Clone)]
pub struct LocalEmbedder {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    tokenizer: WordPieceTokenizer,
    model: BertModel,
    pipeline: Pipeline,
    max_length: usize,
    dimension: usize,
    options: LocalEmbedderOptions,
}

impl LocalEmbedder {
    /// Loads the model directory `dir` (see the module documentation for the files it needs).
    pub fn load(dir: &Path, options: LocalEmbedderOptions) -> Result<Self, BertError> {
        if options.batch_size == 0 {
            return Err(BertError::Options {
                option: "batch_size",
                message: "must be at least 1".to_owned(),
            });
        }
        if !dir.is_dir() {
            return Err(BertError::Io {
                path: dir.to_owned(),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "model directory not found",
                ),
            });
        }
        let config = BertConfig::load(&dir.join("config.json"))?;
        let pipeline = Pipeline::load(dir, config.hidden_size)?;
        let tokenizer_path = dir.join("tokenizer.json");
        let tokenizer = WordPieceTokenizer::load(&tokenizer_path)?;

        let max_length = options
            .max_length
            .or(pipeline.max_seq_length)
            .or(tokenizer.file_max_length())
            .unwrap_or(config.max_position_embeddings)
            .min(config.max_position_embeddings);
        if max_length <= tokenizer.num_special_tokens() {
            return Err(BertError::Options {
                option: "max_length",
                message: format!(
                    "{max_length} leaves no room for text beside the {} special tokens",
                    tokenizer.num_special_tokens()
                ),
            });
        }

        let model = BertModel::load(&dir.join("model.safetensors"), &config)?;
        if let Some(id) = tokenizer.max_token_id()
            && id as usize >= model.vocab_rows()
        {
            return Err(BertError::Config {
                path: tokenizer_path,
                message: format!(
                    "token id {id} is beyond the model's {} word embeddings",
                    model.vocab_rows()
                ),
            });
        }
        if let Some(type_id) = tokenizer.max_type_id()
            && type_id as usize >= config.type_vocab_size
        {
            return Err(BertError::Config {
                path: tokenizer_path,
                message: format!(
                    "post_processor: type id {type_id} is beyond config.json's type_vocab_size {}",
                    config.type_vocab_size
                ),
            });
        }

        Ok(Self {
            inner: Arc::new(Inner {
                dir: dir.to_owned(),
                tokenizer,
                model,
                pipeline,
                max_length,
                dimension: config.hidden_size,
                options,
            }),
        })
    }

    /// Length of every vector (`hidden_size`: 384 for all-MiniLM-L6-v2).
    pub fn dimension(&self) -> usize {
        self.inner.dimension
    }

    /// Truncation length in tokens, special tokens included (256 for all-MiniLM-L6-v2).
    pub fn max_length(&self) -> usize {
        self.inner.max_length
    }

    /// The pooling the model directory asks for.
    pub fn pooling(&self) -> Pooling {
        self.inner.pipeline.pooling
    }

    /// Whether vectors are L2-normalised (a `Normalize` module in `modules.json`).
    pub fn normalizes(&self) -> bool {
        self.inner.pipeline.normalize
    }

    /// The tokenizer, for counting tokens.
    pub fn tokenizer(&self) -> &WordPieceTokenizer {
        &self.inner.tokenizer
    }

    /// Token ids for `text` as the model sees it: special tokens added, truncated to
    /// [`max_length`](Self::max_length).
    pub fn encode(&self, text: &str) -> Encoding {
        self.inner.tokenizer.encode(text, self.inner.max_length)
    }

    /// Embeds `texts` on the calling thread; one vector per text, in order.
    pub fn embed_batch(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, BertError> {
        self.inner.embed_batch(texts)
    }
}

impl Inner {
    fn embed_batch(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, BertError> {
        let limit = self.max_length - self.tokenizer.num_special_tokens();
        let mut encodings = Vec::with_capacity(texts.len());
        for (index, text) in texts.iter().enumerate() {
            let encoding = self.tokenizer.encode(text, self.max_length);
            if !self.options.truncate && encoding.untruncated_len > limit {
                return Err(BertError::InputTooLong {
                    index,
                    tokens: encoding.untruncated_len,
                    limit,
                });
            }
            encodings.push(encoding);
        }

        let mut out = Vec::with_capacity(texts.len());
        for chunk in encodings.chunks(self.options.batch_size) {
            let sequences: Vec<Sequence<'_>> = chunk
                .iter()
                .map(|e| Sequence {
                    ids: &e.ids,
                    type_ids: &e.type_ids,
                })
                .collect();
            let vectors = self
                .model
                .embed(&sequences, self.pipeline.pooling, self.pipeline.normalize)
                .map_err(|message| BertError::Compute {
                    dir: self.dir.clone(),
                    message,
                })?;
            out.extend(vectors);
        }
        Ok(out)
    }
}

/// Counts with the embedder's own WordPiece tokenizer.
struct WordPieces(Arc<Inner>);

impl TokenCounter for WordPieces {
    fn count_tokens(&self, text: &str) -> usize {
        self.0.tokenizer.count(text)
    }
}

#[async_trait]
impl Embedder for LocalEmbedder {
    fn dimension(&self) -> usize {
        self.inner.dimension
    }

    /// Word pieces of text that fit without truncation (the special tokens are not counted).
    fn max_input_tokens(&self) -> usize {
        self.inner.max_length - self.inner.tokenizer.num_special_tokens()
    }

    fn token_counter(&self) -> Option<Arc<dyn TokenCounter>> {
        Some(Arc::new(WordPieces(Arc::clone(&self.inner))))
    }

    async fn embed(&self, inputs: &[String]) -> Result<Vec<Embedding>, EmbedError> {
        if inputs.is_empty() {
            return Ok(Vec::new());
        }
        let inner = Arc::clone(&self.inner);
        let inputs = inputs.to_vec();
        let run = move || {
            let texts: Vec<&str> = inputs.iter().map(String::as_str).collect();
            inner.embed_batch(&texts)
        };
        let result = match tokio::runtime::Handle::try_current() {
            Ok(handle) => handle.spawn_blocking(run).await.map_err(|e| {
                EmbedError::Provider(
                    ProviderError::new(
                        ErrorKind::Permanent,
                        format!("the embedding task failed: {e}"),
                    )
                    .with_provider(PROVIDER),
                )
            })?,
            // Not inside a tokio runtime: there is no blocking pool to hand the work to.
            Err(_) => run(),
        };
        result.map_err(EmbedError::from)
    }
}
