//! Llama-3.2-shaped models with random weights, written by our own code: GGUF files (as llama.cpp's
//! converter lays them out) and the same weights as Hugging Face safetensors. For tests that compare
//! our engine with a reference implementation, and for benchmarks at real sizes without downloads.

use std::collections::HashMap;
use std::io::BufWriter;
use std::path::Path;

use candle_core::quantized::gguf_file::Value;
use candle_core::quantized::{GgmlDType, QTensor, gguf_file};
use candle_core::{Device, Tensor};

use super::tokenizer::Vocab;

/// The dimensions of a Llama model.
#[derive(Debug, Clone, PartialEq)]
pub struct LlamaShape {
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    pub n_ff: usize,
    pub vocab_size: usize,
    pub ctx: usize,
    pub rope_base: f32,
    /// Llama 3 RoPE scaling: (factor, low_freq_factor, high_freq_factor, original context).
    pub rope_scaling: Option<(f32, f32, f32, usize)>,
    pub rms_eps: f32,
}

impl LlamaShape {
    /// Llama 3.2 1B's dimensions (tied embeddings, GQA 32/8, llama3 RoPE scaling).
    pub fn llama32_1b() -> Self {
        Self {
            n_embd: 2048,
            n_layer: 16,
            n_head: 32,
            n_head_kv: 8,
            n_ff: 8192,
            vocab_size: 128_256,
            ctx: 131_072,
            rope_base: 500_000.0,
            rope_scaling: Some((32.0, 1.0, 4.0, 8192)),
            rms_eps: 1e-5,
        }
    }

    /// A tiny model with the same features (GQA, tied embeddings, llama3 RoPE scaling) for tests.
    pub fn tiny(vocab_size: usize) -> Self {
        Self {
            n_embd: 64,
            n_layer: 2,
            n_head: 4,
            n_head_kv: 2,
            n_ff: 128,
            vocab_size,
            ctx: 256,
            rope_base: 500_000.0,
            // A short original context so that the scaling changes frequencies a 256 context uses.
            rope_scaling: Some((8.0, 1.0, 4.0, 64)),
            rms_eps: 1e-5,
        }
    }

    pub fn head_dim(&self) -> usize {
        self.n_embd / self.n_head
    }

    /// Llama 3's frequency divisors, one per rotated pair, as llama.cpp stores them in
    /// `rope_freqs.weight`.
    pub fn rope_freq_factors(&self) -> Option<Vec<f32>> {
        let (factor, low, high, original) = self.rope_scaling?;
        let d = self.head_dim();
        let low_wavelen = original as f32 / low;
        let high_wavelen = original as f32 / high;
        Some(
            (0..d / 2)
                .map(|i| {
                    let freq = 1.0 / self.rope_base.powf(2.0 * i as f32 / d as f32);
                    let wavelen = 2.0 * std::f32::consts::PI / freq;
                    if wavelen < high_wavelen {
                        1.0
                    } else if wavelen > low_wavelen {
                        factor
                    } else {
                        let smooth = (original as f32 / wavelen - low) / (high - low);
                        1.0 / ((1.0 - smooth) / factor + smooth)
                    }
                })
                .collect(),
        )
    }
}

/// How the weight matrices are stored in the GGUF.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quant {
    F32,
    F16,
    Q8_0,
    Q4_0,
    /// llama.cpp's Q4_K_M mix: Q6_K for the embeddings and for attn_v / ffn_down in the first and
    /// last eighth of the layers and every third layer between, Q4_K elsewhere.
    Q4KM,
}

impl Quant {
    pub fn parse(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "f32" => Some(Self::F32),
            "f16" => Some(Self::F16),
            "q8_0" => Some(Self::Q8_0),
            "q4_0" => Some(Self::Q4_0),
            "q4_k_m" => Some(Self::Q4KM),
            _ => None,
        }
    }

    fn file_type(self) -> u32 {
        match self {
            Self::F32 => 0,
            Self::F16 => 1,
            Self::Q4_0 => 2,
            Self::Q8_0 => 7,
            Self::Q4KM => 15,
        }
    }

    fn matrix_type(self, name: &str, layer: Option<usize>, n_layer: usize) -> GgmlDType {
        match self {
            Self::F32 => GgmlDType::F32,
            Self::F16 => GgmlDType::F16,
            Self::Q8_0 => GgmlDType::Q8_0,
            Self::Q4_0 => GgmlDType::Q4_0,
            Self::Q4KM => {
                let more_bits = |i: usize| {
                    i < n_layer / 8 || i >= 7 * n_layer / 8 || (i - n_layer / 8) % 3 == 2
                };
                match (name, layer) {
                    ("token_embd", _) => GgmlDType::Q6K,
                    ("attn_v" | "ffn_down", Some(i)) if more_bits(i) => GgmlDType::Q6K,
                    _ => GgmlDType::Q4K,
                }
            }
        }
    }
}

/// Random weights in Hugging Face layout and names (`model.layers.0.self_attn.q_proj.weight`, …).
pub fn random_weights(
    shape: &LlamaShape,
    seed: u64,
) -> candle_core::Result<HashMap<String, Tensor>> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut w = HashMap::new();
    fn matrix(
        rng: &mut fastrand::Rng,
        rows: usize,
        cols: usize,
        scale: f32,
    ) -> candle_core::Result<Tensor> {
        let data: Vec<f32> = (0..rows * cols)
            .map(|_| (rng.f32() * 2.0 - 1.0) * scale)
            .collect();
        Tensor::from_vec(data, (rows, cols), &Device::Cpu)
    }
    let rng = &mut rng;
    let hd = shape.head_dim();
    let e = shape.n_embd;
    let scale = 1.0 / (e as f32).sqrt();
    w.insert(
        "model.embed_tokens.weight".into(),
        matrix(rng, shape.vocab_size, e, 0.1)?,
    );
    for i in 0..shape.n_layer {
        let p = format!("model.layers.{i}");
        w.insert(
            format!("{p}.self_attn.q_proj.weight"),
            matrix(rng, shape.n_head * hd, e, scale)?,
        );
        w.insert(
            format!("{p}.self_attn.k_proj.weight"),
            matrix(rng, shape.n_head_kv * hd, e, scale)?,
        );
        w.insert(
            format!("{p}.self_attn.v_proj.weight"),
            matrix(rng, shape.n_head_kv * hd, e, scale)?,
        );
        w.insert(
            format!("{p}.self_attn.o_proj.weight"),
            matrix(rng, e, shape.n_head * hd, scale)?,
        );
        w.insert(
            format!("{p}.mlp.gate_proj.weight"),
            matrix(rng, shape.n_ff, e, scale)?,
        );
        w.insert(
            format!("{p}.mlp.up_proj.weight"),
            matrix(rng, shape.n_ff, e, scale)?,
        );
        w.insert(
            format!("{p}.mlp.down_proj.weight"),
            matrix(rng, e, shape.n_ff, 1.0 / (shape.n_ff as f32).sqrt())?,
        );
        w.insert(format!("{p}.input_layernorm.weight"), norm(e, rng)?);
        w.insert(
            format!("{p}.post_attention_layernorm.weight"),
            norm(e, rng)?,
        );
    }
    w.insert("model.norm.weight".into(), norm(e, rng)?);
    Ok(w)
}

fn norm(n: usize, rng: &mut fastrand::Rng) -> candle_core::Result<Tensor> {
    let data: Vec<f32> = (0..n).map(|_| 0.8 + 0.4 * rng.f32()).collect();
    Tensor::from_vec(data, n, &Device::Cpu)
}

/// The Hugging Face `config.json` for these weights (as candle-transformers' `LlamaConfig` reads it).
pub fn hf_config(shape: &LlamaShape) -> serde_json::Value {
    let mut config = serde_json::json!({
        "architectures": ["LlamaForCausalLM"],
        "hidden_size": shape.n_embd,
        "intermediate_size": shape.n_ff,
        "vocab_size": shape.vocab_size,
        "num_hidden_layers": shape.n_layer,
        "num_attention_heads": shape.n_head,
        "num_key_value_heads": shape.n_head_kv,
        "rms_norm_eps": shape.rms_eps,
        "rope_theta": shape.rope_base,
        "max_position_embeddings": shape.ctx,
        "tie_word_embeddings": true,
        "bos_token_id": 128000,
        "eos_token_id": 128009,
    });
    if let Some((factor, low, high, original)) = shape.rope_scaling {
        config["rope_scaling"] = serde_json::json!({
            "rope_type": "llama3",
            "factor": factor,
            "low_freq_factor": low,
            "high_freq_factor": high,
            "original_max_position_embeddings": original,
        });
    }
    config
}

/// llama.cpp's converter reorders q/k rows so each rotated pair is adjacent (HF rotates halves).
fn permute_for_gguf(w: &Tensor, n_head: usize) -> candle_core::Result<Tensor> {
    let (rows, cols) = w.dims2()?;
    w.reshape((n_head, 2, rows / n_head / 2, cols))?
        .transpose(1, 2)?
        .contiguous()?
        .reshape((rows, cols))
}

/// Writes the weights as a GGUF file the way llama.cpp's converter does, with `vocab`'s tokenizer
/// (without one, the file holds only the model: enough for [`super::model::Model`], not for chat).
pub fn write_gguf(
    path: &Path,
    shape: &LlamaShape,
    weights: &HashMap<String, Tensor>,
    quant: Quant,
    vocab: Option<&Vocab>,
    name: &str,
) -> candle_core::Result<()> {
    let get = |k: &str| {
        weights
            .get(k)
            .ok_or_else(|| candle_core::Error::Msg(format!("no weight {k}")))
    };
    let mut tensors: Vec<(String, QTensor)> = Vec::new();
    let mut add = |name: String, t: &Tensor, dtype: GgmlDType| -> candle_core::Result<()> {
        tensors.push((name, QTensor::quantize(t, dtype)?));
        Ok(())
    };
    let n = shape.n_layer;
    add(
        "token_embd.weight".into(),
        get("model.embed_tokens.weight")?,
        quant.matrix_type("token_embd", None, n),
    )?;
    add(
        "output_norm.weight".into(),
        get("model.norm.weight")?,
        GgmlDType::F32,
    )?;
    if let Some(factors) = shape.rope_freq_factors() {
        let len = factors.len();
        add(
            "rope_freqs.weight".into(),
            &Tensor::from_vec(factors, len, &Device::Cpu)?,
            GgmlDType::F32,
        )?;
    }
    for i in 0..n {
        let p = format!("model.layers.{i}");
        let b = format!("blk.{i}");
        let q = permute_for_gguf(get(&format!("{p}.self_attn.q_proj.weight"))?, shape.n_head)?;
        let k = permute_for_gguf(
            get(&format!("{p}.self_attn.k_proj.weight"))?,
            shape.n_head_kv,
        )?;
        add(
            format!("{b}.attn_q.weight"),
            &q,
            quant.matrix_type("attn_q", Some(i), n),
        )?;
        add(
            format!("{b}.attn_k.weight"),
            &k,
            quant.matrix_type("attn_k", Some(i), n),
        )?;
        for (hf, gg) in [
            ("self_attn.v_proj", "attn_v"),
            ("self_attn.o_proj", "attn_output"),
            ("mlp.gate_proj", "ffn_gate"),
            ("mlp.up_proj", "ffn_up"),
            ("mlp.down_proj", "ffn_down"),
        ] {
            add(
                format!("{b}.{gg}.weight"),
                get(&format!("{p}.{hf}.weight"))?,
                quant.matrix_type(gg, Some(i), n),
            )?;
        }
        add(
            format!("{b}.attn_norm.weight"),
            get(&format!("{p}.input_layernorm.weight"))?,
            GgmlDType::F32,
        )?;
        add(
            format!("{b}.ffn_norm.weight"),
            get(&format!("{p}.post_attention_layernorm.weight"))?,
            GgmlDType::F32,
        )?;
    }

    let u32v = |v: usize| Value::U32(v as u32);
    let mut metadata: Vec<(String, Value)> = vec![
        ("general.architecture".into(), Value::String("llama".into())),
        ("general.name".into(), Value::String(name.into())),
        ("general.file_type".into(), Value::U32(quant.file_type())),
        ("general.quantization_version".into(), Value::U32(2)),
        ("llama.block_count".into(), u32v(shape.n_layer)),
        ("llama.context_length".into(), u32v(shape.ctx)),
        ("llama.embedding_length".into(), u32v(shape.n_embd)),
        ("llama.feed_forward_length".into(), u32v(shape.n_ff)),
        ("llama.attention.head_count".into(), u32v(shape.n_head)),
        (
            "llama.attention.head_count_kv".into(),
            u32v(shape.n_head_kv),
        ),
        ("llama.rope.freq_base".into(), Value::F32(shape.rope_base)),
        (
            "llama.attention.layer_norm_rms_epsilon".into(),
            Value::F32(shape.rms_eps),
        ),
        ("llama.attention.key_length".into(), u32v(shape.head_dim())),
        (
            "llama.attention.value_length".into(),
            u32v(shape.head_dim()),
        ),
        ("llama.rope.dimension_count".into(), u32v(shape.head_dim())),
        ("llama.vocab_size".into(), u32v(shape.vocab_size)),
    ];
    if let Some(vocab) = vocab {
        metadata.extend(vocab.to_gguf());
    }
    let file = std::fs::File::create(path)?;
    let mut out = BufWriter::new(file);
    let md: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let ts: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    gguf_file::write(&mut out, &md, &ts)?;
    std::io::Write::flush(&mut out)?;
    Ok(())
}

/// Writes the weights as `model.safetensors` plus `config.json` in `dir` (Hugging Face layout).
pub fn write_safetensors(
    dir: &Path,
    shape: &LlamaShape,
    weights: &HashMap<String, Tensor>,
) -> candle_core::Result<()> {
    std::fs::create_dir_all(dir)?;
    candle_core::safetensors::save(weights, dir.join("model.safetensors"))?;
    let config = serde_json::to_string_pretty(&hf_config(shape))
        .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
    std::fs::write(dir.join("config.json"), config)?;
    Ok(())
}
