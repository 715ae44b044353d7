//! The BERT encoder in plain Rust, f32 on the CPU, with the weights named as Hugging Face's
//! `BertModel` saves them (with or without a `bert.` prefix).
//!
//! A batch runs without padding: the sequences' tokens are stacked into one matrix, every
//! position-wise step (the linear layers, GELU, LayerNorm) runs on all of them at once, and
//! attention runs per sequence and head over that sequence's own rows. The linear layers use the
//! packed-panel products of [`super::sgemm`]; each layer's bias, activation, residual and
//! LayerNorm are applied in one pass over the product's rows. Every step runs on candle's kernel
//! threads.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};

use super::BertError;
use super::config::{BertConfig, Pooling};
use super::sgemm::{self, Lhs, Packed, Panels};
use crate::local::math;
use crate::local::par::par_pieces;

/// `y = x Wᵀ + b`, with `W` packed for [`sgemm::matmul_into`].
#[derive(Debug)]
struct Linear {
    weight: Packed,
    bias: Vec<f32>,
}

impl Linear {
    /// `x Wᵀ + b` into `out` (rows of `bias.len()`), then `then(r, row)` on each row, all on
    /// candle's kernel threads. `product` is scratch, reused from call to call.
    fn forward<F>(&self, x: Lhs<'_>, product: &mut Panels, out: &mut [f32], then: F)
    where
        F: Fn(usize, &mut [f32]) + Sync,
    {
        sgemm::matmul_into(x, &self.weight, product);
        let product = &*product;
        par_rows(out, self.bias.len(), |r, row| {
            product.row(r, row);
            for (o, b) in row.iter_mut().zip(&self.bias) {
                *o += b;
            }
            then(r, row);
        });
    }
}

#[derive(Debug)]
struct LayerNorm {
    weight: Vec<f32>,
    bias: Vec<f32>,
    eps: f32,
}

impl LayerNorm {
    /// Adds the residual to `row`, then normalises it in place.
    fn add_and_apply(&self, row: &mut [f32], residual: &[f32]) {
        for (v, r) in row.iter_mut().zip(residual) {
            *v += r;
        }
        self.apply(row);
    }

    /// Normalises `row` in place (biased variance, as PyTorch's `LayerNorm`).
    fn apply(&self, row: &mut [f32]) {
        let n = row.len() as f32;
        let mean = math::sum(row) / n;
        let mut squares = [0.0f32; 8];
        let mut chunks = row.chunks_exact(8);
        for chunk in chunks.by_ref() {
            for (s, v) in squares.iter_mut().zip(chunk) {
                *s += (v - mean) * (v - mean);
            }
        }
        let tail: f32 = chunks
            .remainder()
            .iter()
            .map(|v| (v - mean) * (v - mean))
            .sum();
        let variance = (squares.iter().sum::<f32>() + tail) / n;
        let inv = 1.0 / (variance + self.eps).sqrt();
        for ((v, w), b) in row.iter_mut().zip(&self.weight).zip(&self.bias) {
            *v = (*v - mean) * inv * w + b;
        }
    }
}

#[derive(Debug)]
struct Layer {
    /// Query, key and value in one product: `3 · hidden` outputs.
    qkv: Linear,
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

impl Activation {
    fn apply(self, row: &mut [f32]) {
        match self {
            Self::GeluErf => math::gelu_erf_in_place(row),
            Self::GeluTanh => math::gelu_tanh_in_place(row),
        }
    }
}

/// One input sequence: token ids and token type ids, the same length.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sequence<'a> {
    pub ids: &'a [u32],
    pub type_ids: &'a [u32],
}

/// A BERT encoder with its weights loaded.
#[derive(Debug)]
pub(crate) struct BertModel {
    /// `vocab_rows × hidden`.
    word_embeddings: Vec<f32>,
    /// `max_positions × hidden`.
    position_embeddings: Vec<f32>,
    /// `type_vocab × hidden`.
    token_type_embeddings: Vec<f32>,
    embedding_norm: LayerNorm,
    layers: Vec<Layer>,
    activation: Activation,
    num_heads: usize,
    head_dim: usize,
    hidden_size: usize,
    intermediate_size: usize,
}

/// Looks tensors up by their Hugging Face names and checks their shapes.
struct Weights {
    path: PathBuf,
    tensors: HashMap<String, Tensor>,
    prefix: &'static str,
}

impl Weights {
    fn get(&mut self, name: &str, shape: &[usize]) -> Result<Vec<f32>, BertError> {
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
        tensor
            .to_dtype(DType::F32)
            .and_then(|t| t.flatten_all())
            .and_then(|t| t.to_vec1::<f32>())
            .map_err(|e| BertError::Weights {
                path: self.path.clone(),
                message: format!(
                    "tensor `{full}`: cannot convert {:?} to f32: {e}",
                    tensor.dtype()
                ),
            })
    }

    /// The weights and biases of the named linear layers, stacked into one layer (their outputs
    /// side by side, in order).
    fn linear(
        &mut self,
        names: &[&str],
        inputs: usize,
        outputs: usize,
    ) -> Result<Linear, BertError> {
        let mut weight = Vec::with_capacity(names.len() * outputs * inputs);
        let mut bias = Vec::with_capacity(names.len() * outputs);
        for name in names {
            weight.extend(self.get(&format!("{name}.weight"), &[outputs, inputs])?);
            bias.extend(self.get(&format!("{name}.bias"), &[outputs])?);
        }
        Ok(Linear {
            weight: Packed::from_rows(&weight, names.len() * outputs, inputs),
            bias,
        })
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
            eps: eps as f32,
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
        let tensors =
            candle_core::safetensors::load(path, &Device::Cpu).map_err(|e| BertError::Weights {
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
            let attention = |part: &str| format!("{p}.attention.self.{part}");
            layers.push(Layer {
                qkv: w.linear(
                    &[&attention("query"), &attention("key"), &attention("value")],
                    h,
                    h,
                )?,
                attention_out: w.linear(&[&format!("{p}.attention.output.dense")], h, h)?,
                attention_norm: w.layer_norm(&format!("{p}.attention.output.LayerNorm"), h, eps)?,
                intermediate: w.linear(
                    &[&format!("{p}.intermediate.dense")],
                    h,
                    config.intermediate_size,
                )?,
                output: w.linear(&[&format!("{p}.output.dense")], config.intermediate_size, h)?,
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
            intermediate_size: config.intermediate_size,
        })
    }

    /// Rows in the word-embedding table: every token id must be below this.
    pub(crate) fn vocab_rows(&self) -> usize {
        self.word_embeddings.len() / self.hidden_size.max(1)
    }

    /// Runs the sequences as one batch (no padding). Returns one pooled vector per sequence,
    /// L2-normalised when `normalize` is set. A token id, type id or length beyond the model's
    /// tables is an error naming the sequence.
    pub(crate) fn embed(
        &self,
        sequences: &[Sequence<'_>],
        pooling: Pooling,
        normalize: bool,
    ) -> Result<Vec<Vec<f32>>, String> {
        let (h, hd) = (self.hidden_size, self.head_dim);
        let positions = self.position_embeddings.len() / h;
        // Where each sequence's rows start, and the rows' token, type and position.
        let mut starts = Vec::with_capacity(sequences.len());
        let mut tokens: Vec<(usize, usize, usize)> = Vec::new();
        for (s, seq) in sequences.iter().enumerate() {
            if seq.ids.len() != seq.type_ids.len() || seq.ids.len() > positions {
                return Err(format!(
                    "sequence {s}: {} tokens and {} type ids (the model takes at most {positions})",
                    seq.ids.len(),
                    seq.type_ids.len()
                ));
            }
            starts.push(tokens.len());
            for (i, (&id, &type_id)) in seq.ids.iter().zip(seq.type_ids).enumerate() {
                if id as usize >= self.vocab_rows()
                    || type_id as usize >= self.token_type_embeddings.len() / h
                {
                    return Err(format!(
                        "sequence {s}: token {i} (id {id}, type {type_id}) is beyond the model's \
                         embedding tables"
                    ));
                }
                tokens.push((id as usize, type_id as usize, i));
            }
        }
        let total = tokens.len();

        let mut x = vec![0.0f32; total * h];
        par_rows(&mut x, h, |r, row| {
            let (id, type_id, position) = tokens[r];
            let word = &self.word_embeddings[id * h..(id + 1) * h];
            let pos = &self.position_embeddings[position * h..(position + 1) * h];
            let kind = &self.token_type_embeddings[type_id * h..(type_id + 1) * h];
            for (((v, a), b), c) in row.iter_mut().zip(word).zip(pos).zip(kind) {
                *v = a + b + c;
            }
            self.embedding_norm.apply(row);
        });

        // Attention jobs: one per head and sequence, each writing its rows of that head's
        // column block of the context (`heads` blocks of `total × head_dim`).
        let jobs: Vec<(usize, usize, usize)> = (0..self.num_heads)
            .flat_map(|head| {
                starts
                    .iter()
                    .zip(sequences)
                    .map(move |(&start, seq)| (head, start, seq.ids.len()))
            })
            .collect();
        let scale = 1.0 / (hd as f32).sqrt();
        let mut qkv = vec![0.0f32; total * 3 * h];
        let mut context = vec![0.0f32; total * h];
        let mut attended = vec![0.0f32; total * h];
        let mut inner = vec![0.0f32; total * self.intermediate_size];
        let mut product = Panels::default();

        for layer in &self.layers {
            let rows = |data| Lhs::row_major(data, total, h);
            layer
                .qkv
                .forward(rows(&x), &mut product, &mut qkv, |_, _| {});

            let mut pieces = Vec::with_capacity(jobs.len());
            let mut rest = context.as_mut_slice();
            for &(_, _, len) in &jobs {
                let (piece, tail) = rest.split_at_mut(len * hd);
                pieces.push(piece);
                rest = tail;
            }
            par_pieces(pieces, |j, out| {
                let (head, start, len) = jobs[j];
                attend(&qkv, h, hd, head, start, len, scale, out);
            });

            let heads = Lhs::blocks(&context, total, h, hd);
            layer
                .attention_out
                .forward(heads, &mut product, &mut attended, |r, row| {
                    layer
                        .attention_norm
                        .add_and_apply(row, &x[r * h..(r + 1) * h]);
                });
            layer
                .intermediate
                .forward(rows(&attended), &mut product, &mut inner, |_, row| {
                    self.activation.apply(row);
                });
            let expanded = Lhs::row_major(&inner, total, self.intermediate_size);
            layer
                .output
                .forward(expanded, &mut product, &mut x, |r, row| {
                    layer
                        .output_norm
                        .add_and_apply(row, &attended[r * h..(r + 1) * h]);
                });
        }

        let pooled = starts
            .iter()
            .zip(sequences)
            .map(|(&start, seq)| {
                let rows = x[start * h..(start + seq.ids.len()) * h].chunks_exact(h);
                let mut v = vec![0.0f32; h];
                match pooling {
                    Pooling::Cls => {
                        if let Some(first) = rows.clone().next() {
                            v.copy_from_slice(first);
                        }
                    }
                    Pooling::Mean => {
                        for row in rows {
                            for (s, x) in v.iter_mut().zip(row) {
                                *s += x;
                            }
                        }
                        let count = (seq.ids.len() as f32).max(1e-9);
                        v.iter_mut().for_each(|s| *s /= count);
                    }
                }
                if normalize {
                    let norm = math::dot(&v, &v).sqrt().max(1e-12);
                    v.iter_mut().for_each(|s| *s /= norm);
                }
                v
            })
            .collect();
        Ok(pooled)
    }
}

/// Runs `f(r, row)` for every `width`-wide row of `out`, on candle's kernel threads.
fn par_rows<F>(out: &mut [f32], width: usize, f: F)
where
    F: Fn(usize, &mut [f32]) + Sync,
{
    const ROWS: usize = 16;
    let pieces = out.chunks_mut(ROWS * width).collect();
    par_pieces(pieces, |i, piece| {
        for (j, row) in piece.chunks_exact_mut(width).enumerate() {
            f(i * ROWS + j, row);
        }
    });
}

/// Self-attention of one head over one sequence (rows `start .. start + len` of `qkv`, which
/// holds each row's query, key and value side by side): the context, `len` rows of `hd`.
///
/// The keys are transposed first (`hd` rows of `len`), so that a query's scores build up as
/// `len`-wide multiply-adds, one per query component, with no horizontal sums.
#[allow(clippy::too_many_arguments)]
fn attend(
    qkv: &[f32],
    h: usize,
    hd: usize,
    head: usize,
    start: usize,
    len: usize,
    scale: f32,
    out: &mut [f32],
) {
    let stride = 3 * h;
    let part = |row: usize, which: usize| {
        let at = (start + row) * stride + which * h + head * hd;
        &qkv[at..at + hd]
    };
    let mut keys = vec![0.0f32; hd * len];
    for j in 0..len {
        for (d, k) in part(j, 1).iter().enumerate() {
            keys[d * len + j] = *k;
        }
    }
    let mut scores = vec![0.0f32; len];
    for (i, out) in out.chunks_exact_mut(hd).enumerate() {
        scores.fill(0.0);
        for (q, keys) in part(i, 0).iter().zip(keys.chunks_exact(len)) {
            let q = q * scale;
            for (s, k) in scores.iter_mut().zip(keys) {
                *s += q * k;
            }
        }
        math::softmax_in_place(&mut scores);
        out.fill(0.0);
        for (j, p) in scores.iter().enumerate() {
            for (o, v) in out.iter_mut().zip(part(j, 2)) {
                *o += p * v;
            }
        }
    }
}
