//! The BERT encoder in candle-core operations, F32 on the CPU, with the weights named as Hugging
//! Face's `BertModel` saves them (with or without a `bert.` prefix).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{D, DType, Device, Tensor};

use super::BertError;
use super::config::{BertConfig, Pooling};

/// `y = x Wᵀ + b`, with `Wᵀ` stored ready for a plain matmul.
#[derive(Debug)]
struct Linear {
    weight_t: Tensor,
    bias: Tensor,
}

impl Linear {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        x.matmul(&self.weight_t)?.broadcast_add(&self.bias)
    }
}

#[derive(Debug)]
struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl LayerNorm {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let mean = x.mean_keepdim(D::Minus1)?;
        let centred = x.broadcast_sub(&mean)?;
        let variance = centred.sqr()?.mean_keepdim(D::Minus1)?;
        let scale = (variance + self.eps)?.sqrt()?;
        centred
            .broadcast_div(&scale)?
            .broadcast_mul(&self.weight)?
            .broadcast_add(&self.bias)
    }
}

#[derive(Debug)]
struct Layer {
    query: Linear,
    key: Linear,
    value: Linear,
    attention_out: Linear,
    attention_norm: LayerNorm,
    intermediate: Linear,
    output: Linear,
    output_norm: LayerNorm,
}

#[derive(Debug, Clone, Copy)]
enum Activation {
    /// `x·Φ(x)` with the exact normal CDF (Hugging Face's `"gelu"`).
    GeluErf,
    /// The tanh approximation (`"gelu_new"`, `"gelu_pytorch_tanh"`).
    GeluTanh,
}

/// A BERT encoder with its weights loaded.
#[derive(Debug)]
pub(crate) struct BertModel {
    word_embeddings: Tensor,
    position_embeddings: Tensor,
    token_type_embeddings: Tensor,
    embedding_norm: LayerNorm,
    layers: Vec<Layer>,
    activation: Activation,
    num_heads: usize,
    head_dim: usize,
    hidden_size: usize,
    device: Device,
}

/// Looks tensors up by their Hugging Face names and checks their shapes.
struct Weights {
    path: PathBuf,
    tensors: HashMap<String, Tensor>,
    prefix: &'static str,
}

impl Weights {
    fn get(&mut self, name: &str, shape: &[usize]) -> Result<Tensor, BertError> {
        let full = format!("{}{name}", self.prefix);
        let Some(tensor) = self.tensors.remove(&full) else {
            return Err(BertError::Weights {
                path: self.path.clone(),
                message: format!("tensor `{full}` is missing"),
            });
        };
        if tensor.dims() != shape {
            return Err(BertError::Weights {
                path: self.path.clone(),
                message: format!(
                    "tensor `{full}` has shape {:?}; config.json implies {shape:?}",
                    tensor.dims()
                ),
            });
        }
        tensor.to_dtype(DType::F32).map_err(|e| BertError::Weights {
            path: self.path.clone(),
            message: format!(
                "tensor `{full}`: cannot convert {:?} to f32: {e}",
                tensor.dtype()
            ),
        })
    }

    fn linear(&mut self, name: &str, inputs: usize, outputs: usize) -> Result<Linear, BertError> {
        let weight = self.get(&format!("{name}.weight"), &[outputs, inputs])?;
        let bias = self.get(&format!("{name}.bias"), &[outputs])?;
        let weight_t = weight
            .t()
            .and_then(|w| w.contiguous())
            .map_err(|e| BertError::Weights {
                path: self.path.clone(),
                message: format!("tensor `{}{name}.weight`: {e}", self.prefix),
            })?;
        Ok(Linear { weight_t, bias })
    }

    fn layer_norm(&mut self, name: &str, size: usize, eps: f64) -> Result<LayerNorm, BertError> {
        // Old checkpoints call these `gamma`/`beta`.
        let (weight, bias) = if self.has(&format!("{name}.gamma")) {
            ("gamma", "beta")
        } else {
            ("weight", "bias")
        };
        Ok(LayerNorm {
            weight: self.get(&format!("{name}.{weight}"), &[size])?,
            bias: self.get(&format!("{name}.{bias}"), &[size])?,
            eps,
        })
    }

    fn has(&self, name: &str) -> bool {
        self.tensors.contains_key(&format!("{}{name}", self.prefix))
    }
}

impl BertModel {
    /// Loads `model.safetensors` and checks every tensor against `config`.
    pub(crate) fn load(path: &Path, config: &BertConfig) -> Result<Self, BertError> {
        if !path.exists() {
            return Err(BertError::Io {
                path: path.to_owned(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "file not found"),
            });
        }
        let device = Device::Cpu;
        let tensors =
            candle_core::safetensors::load(path, &device).map_err(|e| BertError::Weights {
                path: path.to_owned(),
                message: format!("not a readable safetensors file: {e}"),
            })?;
        let prefix = ["", "bert.", "model."]
            .into_iter()
            .find(|p| tensors.contains_key(&format!("{p}embeddings.word_embeddings.weight")))
            .ok_or_else(|| BertError::Weights {
                path: path.to_owned(),
                message: "tensor `embeddings.word_embeddings.weight` is missing \
                          (also looked for it under `bert.` and `model.`)"
                    .to_owned(),
            })?;
        let mut w = Weights {
            path: path.to_owned(),
            tensors,
            prefix,
        };

        let h = config.hidden_size;
        let vocab_rows = w
            .tensors
            .get(&format!("{prefix}embeddings.word_embeddings.weight"))
            .map_or(0, |t| t.dims().first().copied().unwrap_or(0));
        let word_embeddings = w.get("embeddings.word_embeddings.weight", &[vocab_rows, h])?;
        let position_embeddings = w.get(
            "embeddings.position_embeddings.weight",
            &[config.max_position_embeddings, h],
        )?;
        let token_type_embeddings = w.get(
            "embeddings.token_type_embeddings.weight",
            &[config.type_vocab_size, h],
        )?;
        let eps = config.layer_norm_eps;
        let embedding_norm = w.layer_norm("embeddings.LayerNorm", h, eps)?;

        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for i in 0..config.num_hidden_layers {
            let p = format!("encoder.layer.{i}");
            layers.push(Layer {
                query: w.linear(&format!("{p}.attention.self.query"), h, h)?,
                key: w.linear(&format!("{p}.attention.self.key"), h, h)?,
                value: w.linear(&format!("{p}.attention.self.value"), h, h)?,
                attention_out: w.linear(&format!("{p}.attention.output.dense"), h, h)?,
                attention_norm: w.layer_norm(&format!("{p}.attention.output.LayerNorm"), h, eps)?,
                intermediate: w.linear(
                    &format!("{p}.intermediate.dense"),
                    h,
                    config.intermediate_size,
                )?,
                output: w.linear(&format!("{p}.output.dense"), config.intermediate_size, h)?,
                output_norm: w.layer_norm(&format!("{p}.output.LayerNorm"), h, eps)?,
            });
        }
        let activation = if config.hidden_act == "gelu" {
            Activation::GeluErf
        } else {
            Activation::GeluTanh
        };
        Ok(Self {
            word_embeddings,
            position_embeddings,
            token_type_embeddings,
            embedding_norm,
            layers,
            activation,
            num_heads: config.num_attention_heads,
            head_dim: config.head_dim(),
            hidden_size: h,
            device,
        })
    }

    /// Rows in the word-embedding table: every token id must be below this.
    pub(crate) fn vocab_rows(&self) -> usize {
        self.word_embeddings.dims().first().copied().unwrap_or(0)
    }

    /// Runs a padded batch. `ids` and `type_ids` are `batch × seq_len`, row-major; `lengths[b]`
    /// is how many of row `b`'s tokens are real (the rest is padding). Returns one pooled vector
    /// per row, L2-normalised when `normalize` is set.
    pub(crate) fn embed(
        &self,
        ids: &[u32],
        type_ids: &[u32],
        lengths: &[usize],
        seq_len: usize,
        pooling: Pooling,
        normalize: bool,
    ) -> candle_core::Result<Vec<Vec<f32>>> {
        let batch = lengths.len();
        let (h, heads, hd) = (self.hidden_size, self.num_heads, self.head_dim);
        let dev = &self.device;

        // 1 for real tokens, 0 for padding.
        let mask: Vec<f32> = lengths
            .iter()
            .flat_map(|&n| (0..seq_len).map(move |i| if i < n { 1.0 } else { 0.0 }))
            .collect();
        let mask = Tensor::from_vec(mask, (batch, seq_len), dev)?;

        // Embeddings: word + position + token type, then LayerNorm. Rows are (batch · seq_len).
        let ids = Tensor::from_slice(ids, batch * seq_len, dev)?;
        let type_ids = Tensor::from_slice(type_ids, batch * seq_len, dev)?;
        let positions: Vec<u32> = (0..batch).flat_map(|_| 0..seq_len as u32).collect();
        let positions = Tensor::from_vec(positions, batch * seq_len, dev)?;
        let x = self
            .word_embeddings
            .index_select(&ids, 0)?
            .add(&self.position_embeddings.index_select(&positions, 0)?)?
            .add(&self.token_type_embeddings.index_select(&type_ids, 0)?)?;
        let mut x = self.embedding_norm.forward(&x)?;

        // Added to attention scores: 0 for real keys, a large negative number for padding.
        let bias = ((mask.clone() - 1.0)? * 1e9)?.reshape((batch, 1, 1, seq_len))?;
        let scale = 1.0 / (hd as f64).sqrt();

        for layer in &self.layers {
            let split_heads = |t: Tensor| -> candle_core::Result<Tensor> {
                t.reshape((batch, seq_len, heads, hd))?
                    .transpose(1, 2)?
                    .contiguous()
            };
            // Scaling q (batch·seq·hidden) is cheaper than scaling the scores (batch·heads·seq²).
            let q = split_heads((layer.query.forward(&x)? * scale)?)?;
            let k = split_heads(layer.key.forward(&x)?)?;
            let v = split_heads(layer.value.forward(&x)?)?;
            let scores = q.matmul(&k.t()?)?.broadcast_add(&bias)?;
            let probs = softmax_last_dim(&scores)?;
            let context = probs
                .matmul(&v)?
                .transpose(1, 2)?
                .contiguous()?
                .reshape((batch * seq_len, h))?;
            let attended = layer
                .attention_norm
                .forward(&layer.attention_out.forward(&context)?.add(&x)?)?;
            let inner = layer.intermediate.forward(&attended)?;
            let inner = match self.activation {
                Activation::GeluErf => inner.gelu_erf()?,
                Activation::GeluTanh => inner.gelu()?,
            };
            x = layer
                .output_norm
                .forward(&layer.output.forward(&inner)?.add(&attended)?)?;
        }

        let x = x.reshape((batch, seq_len, h))?;
        let pooled = match pooling {
            Pooling::Cls => x.narrow(1, 0, 1)?.squeeze(1)?,
            Pooling::Mean => {
                let summed = x.broadcast_mul(&mask.unsqueeze(2)?)?.sum(1)?;
                let counts = mask.sum_keepdim(1)?.maximum(1e-9)?;
                summed.broadcast_div(&counts)?
            }
        };
        let pooled = if normalize {
            let norms = pooled.sqr()?.sum_keepdim(1)?.sqrt()?.maximum(1e-12)?;
            pooled.broadcast_div(&norms)?
        } else {
            pooled
        };
        pooled.to_vec2::<f32>()
    }
}

fn softmax_last_dim(x: &Tensor) -> candle_core::Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?;
    let exp = x.broadcast_sub(&max)?.exp()?;
    let sum = exp.sum_keepdim(D::Minus1)?;
    exp.broadcast_div(&sum)
}
