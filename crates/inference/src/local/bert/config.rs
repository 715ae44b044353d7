//! The JSON files of a sentence-transformers model directory, read and checked.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::BertError;

/// `config.json`: the encoder's shape. Only the keys we use; the rest of Hugging Face's config is ignored.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct BertConfig {
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub max_position_embeddings: usize,
    #[serde(default = "default_type_vocab_size")]
    pub type_vocab_size: usize,
    #[serde(default = "default_layer_norm_eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "default_hidden_act")]
    pub hidden_act: String,
    #[serde(default)]
    pub position_embedding_type: Option<String>,
}

fn default_type_vocab_size() -> usize {
    2
}
fn default_layer_norm_eps() -> f64 {
    1e-12
}
fn default_hidden_act() -> String {
    "gelu".to_owned()
}

impl BertConfig {
    pub(crate) fn load(path: &Path) -> Result<Self, BertError> {
        let config: Self = read_json(path)?;
        let bad = |key: &str, problem: String| BertError::Config {
            path: path.to_owned(),
            message: format!("{key}: {problem}"),
        };
        for (key, value) in [
            ("hidden_size", config.hidden_size),
            ("num_hidden_layers", config.num_hidden_layers),
            ("num_attention_heads", config.num_attention_heads),
            ("intermediate_size", config.intermediate_size),
            ("max_position_embeddings", config.max_position_embeddings),
            ("type_vocab_size", config.type_vocab_size),
        ] {
            if value == 0 {
                return Err(bad(key, "must be at least 1".to_owned()));
            }
        }
        if !config
            .hidden_size
            .is_multiple_of(config.num_attention_heads)
        {
            return Err(bad(
                "hidden_size",
                format!(
                    "{} is not a multiple of num_attention_heads ({})",
                    config.hidden_size, config.num_attention_heads
                ),
            ));
        }
        // Hugging Face's "gelu" is the exact (erf) form; "gelu_new"/"gelu_pytorch_tanh" are the tanh form.
        if !matches!(
            config.hidden_act.as_str(),
            "gelu" | "gelu_new" | "gelu_pytorch_tanh"
        ) {
            return Err(bad(
                "hidden_act",
                format!(
                    "{:?} is not supported (only \"gelu\", \"gelu_new\", \"gelu_pytorch_tanh\")",
                    config.hidden_act
                ),
            ));
        }
        if let Some(kind) = &config.position_embedding_type
            && kind != "absolute"
        {
            return Err(bad(
                "position_embedding_type",
                format!("{kind:?} is not supported (only \"absolute\")"),
            ));
        }
        if !(config.layer_norm_eps.is_finite() && config.layer_norm_eps > 0.0) {
            return Err(bad(
                "layer_norm_eps",
                format!("{} must be a positive number", config.layer_norm_eps),
            ));
        }
        Ok(config)
    }

    pub(crate) fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }
}

/// How token vectors become one sentence vector (`1_Pooling/config.json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// Mean over the non-padding tokens (`pooling_mode_mean_tokens`).
    Mean,
    /// The first token's (`[CLS]`) vector (`pooling_mode_cls_token`).
    Cls,
}

#[derive(Debug, Deserialize)]
struct PoolingConfig {
    #[serde(default)]
    word_embedding_dimension: Option<usize>,
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
    #[serde(default)]
    pooling_mode_max_tokens: bool,
    #[serde(default)]
    pooling_mode_mean_sqrt_len_tokens: bool,
    #[serde(default)]
    pooling_mode_weightedmean_tokens: bool,
    #[serde(default)]
    pooling_mode_lasttoken: bool,
}

#[derive(Debug, Deserialize)]
struct ModuleEntry {
    #[serde(default)]
    path: String,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Debug, Deserialize)]
struct SentenceBertConfig {
    #[serde(default)]
    max_seq_length: Option<usize>,
}

/// What sentence-transformers' own files say about the pipeline after the encoder.
#[derive(Debug, Clone)]
pub(crate) struct Pipeline {
    pub pooling: Pooling,
    pub normalize: bool,
    /// `sentence_bert_config.json`'s `max_seq_length`, when the file says.
    pub max_seq_length: Option<usize>,
}

impl Pipeline {
    /// Reads `modules.json`, the pooling config it points at, and `sentence_bert_config.json`.
    /// A directory without `modules.json` is a plain Hugging Face model: mean pooling, no normalising.
    pub(crate) fn load(dir: &Path, hidden_size: usize) -> Result<Self, BertError> {
        let modules_path = dir.join("modules.json");
        let (pooling_path, normalize) = if modules_path.exists() {
            let modules: Vec<ModuleEntry> = read_json(&modules_path)?;
            let mut pooling_path = None;
            let mut normalize = false;
            for (index, module) in modules.iter().enumerate() {
                match module.kind.rsplit('.').next().unwrap_or_default() {
                    "Transformer" => {}
                    "Pooling" => pooling_path = Some(dir.join(&module.path).join("config.json")),
                    "Normalize" => normalize = true,
                    other => {
                        return Err(BertError::Config {
                            path: modules_path.clone(),
                            message: format!(
                                "[{index}].type: module {other:?} is not supported \
                                 (only Transformer, Pooling, Normalize)"
                            ),
                        });
                    }
                }
            }
            (pooling_path, normalize)
        } else {
            let default = dir.join("1_Pooling").join("config.json");
            (default.exists().then_some(default), false)
        };

        let pooling = match pooling_path {
            None => Pooling::Mean,
            Some(path) => {
                let config: PoolingConfig = read_json(&path)?;
                let bad = |message: String| BertError::Config {
                    path: path.clone(),
                    message,
                };
                if let Some(dim) = config.word_embedding_dimension
                    && dim != hidden_size
                {
                    return Err(bad(format!(
                        "word_embedding_dimension: {dim} differs from config.json's hidden_size {hidden_size}"
                    )));
                }
                let unsupported = [
                    ("pooling_mode_max_tokens", config.pooling_mode_max_tokens),
                    (
                        "pooling_mode_mean_sqrt_len_tokens",
                        config.pooling_mode_mean_sqrt_len_tokens,
                    ),
                    (
                        "pooling_mode_weightedmean_tokens",
                        config.pooling_mode_weightedmean_tokens,
                    ),
                    ("pooling_mode_lasttoken", config.pooling_mode_lasttoken),
                ];
                if let Some((key, _)) = unsupported.iter().find(|(_, on)| *on) {
                    return Err(bad(format!(
                        "{key}: not supported (only mean or CLS pooling)"
                    )));
                }
                match (
                    config.pooling_mode_mean_tokens,
                    config.pooling_mode_cls_token,
                ) {
                    (true, false) => Pooling::Mean,
                    (false, true) => Pooling::Cls,
                    (true, true) => {
                        return Err(bad(
                            "pooling_mode_mean_tokens and pooling_mode_cls_token are both on; \
                             concatenated pooling is not supported"
                                .to_owned(),
                        ));
                    }
                    (false, false) => {
                        return Err(bad("no pooling mode is switched on".to_owned()));
                    }
                }
            }
        };

        let st_path = dir.join("sentence_bert_config.json");
        let max_seq_length = if st_path.exists() {
            let config: SentenceBertConfig = read_json(&st_path)?;
            if config.max_seq_length == Some(0) {
                return Err(BertError::Config {
                    path: st_path,
                    message: "max_seq_length: must be at least 1".to_owned(),
                });
            }
            config.max_seq_length
        } else {
            None
        };

        Ok(Self {
            pooling,
            normalize,
            max_seq_length,
        })
    }
}

/// Reads and parses one JSON file, naming the file and the offending key on failure.
pub(crate) fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T, BertError> {
    let text = std::fs::read_to_string(path).map_err(|source| BertError::Io {
        path: path.to_owned(),
        source,
    })?;
    parse_json(path, &text)
}

pub(crate) fn parse_json<T: DeserializeOwned>(path: &Path, text: &str) -> Result<T, BertError> {
    let mut de = serde_json::Deserializer::from_str(text);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let key = e.path().to_string();
        let message = if key == "." || key.is_empty() {
            e.inner().to_string()
        } else {
            format!("{key}: {}", e.inner())
        };
        BertError::Config {
            path: PathBuf::from(path),
            message,
        }
    })
}
