//! The transformer: Llama 3.x and Gemma 3 decoder stacks over quantized GGUF weights.
//!
//! Written for CPU inference rather than taken from candle-transformers, whose `quantized_llama`
//! ignores Llama 3's RoPE frequency scaling, caps the context at 4096, dequantizes the whole
//! token-embedding table to f32 and grows its KV cache by concatenation. Here:
//! - RoPE frequencies come from the file: `rope_freqs.weight` (Llama 3.1/3.2 scaling) divides them,
//!   `{arch}.rope.scaling.{type,factor}` (linear) scales positions;
//! - the context is the file's `{arch}.context_length`, bounded by the caller's `n_ctx`;
//! - token embeddings are looked up row by row in their quantized form;
//! - each [`KvCache`] is allocated once, for the whole request, and written in place (values
//!   rounded to f16, as llama.cpp's default cache stores them);
//! - a prompt is processed in batches of up to `n_batch` tokens, one matmul per weight per batch;
//! - attention over grouped KV heads reads the cache without copying it per query head.
//!
//! Q4_K, Q5_0, Q6_K and Q8_0 linear layers run through our own kernels over the file's blocks
//! ([`super::quant`]); other types through candle's quantized matmul kernels (`QMatMul`), which
//! pick their SIMD code at compile time (hence the x86-64-v3 default in `.cargo/config.toml`).

use std::sync::Arc;

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{D, DType, Device, Module, Tensor};

use super::gguf::{GgufFile, ModelFileError, brief};
use super::math;
use super::pages::WeightBytes;
use super::par::par_pieces;
use super::quant::{self, q4k::Q4K, q5_0::Q5_0, q6k::Q6K, q8_0::Q8_0};

/// The architectures this engine runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    Llama,
    Gemma3,
}

impl Arch {
    pub fn from_gguf_name(name: &str) -> Option<Self> {
        match name {
            "llama" => Some(Self::Llama),
            "gemma3" => Some(Self::Gemma3),
            _ => None,
        }
    }

    pub fn gguf_name(self) -> &'static str {
        match self {
            Self::Llama => "llama",
            Self::Gemma3 => "gemma3",
        }
    }
}

/// Hyperparameters read from the GGUF metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct Hparams {
    pub arch: Arch,
    pub n_layer: usize,
    pub n_embd: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim: usize,
    pub n_ff: usize,
    pub rms_eps: f64,
    pub rope_base: f64,
    /// Gemma 3's sliding-window layers use their own RoPE base.
    pub rope_base_local: f64,
    /// Positions are divided by this (linear RoPE scaling); 1.0 when absent.
    pub rope_linear_factor: f64,
    /// The context the model was trained for (`{arch}.context_length`).
    pub ctx_train: usize,
    /// Gemma 3: the window of its local layers, and every how many layers one is global.
    pub sliding_window: Option<usize>,
    pub swa_pattern: usize,
    pub vocab_size: usize,
    /// Multiplies q·k before the softmax: 1/sqrt(head_dim), except Gemma 3 27B (62 layers), whose
    /// query_pre_attn_scalar is n_embd / n_head, as llama.cpp has it.
    pub attn_scale: f64,
}

impl Hparams {
    pub fn read(file: &GgufFile) -> Result<Self, ModelFileError> {
        let arch_name = file.architecture()?;
        let arch = Arch::from_gguf_name(arch_name).ok_or_else(|| {
            file.error(format!(
                "architecture {arch_name:?} is not supported (this build runs llama and gemma3)"
            ))
        })?;
        let a = arch.gguf_name();
        let n_embd = file.required_usize(&format!("{a}.embedding_length"))?;
        let n_head = file.required_usize(&format!("{a}.attention.head_count"))?;
        let n_head_kv = file
            .optional_usize(&format!("{a}.attention.head_count_kv"))?
            .unwrap_or(n_head);
        if n_head == 0 || n_head_kv == 0 || !n_head.is_multiple_of(n_head_kv) {
            return Err(file.error(format!(
                "attention.head_count {n_head} is not a multiple of attention.head_count_kv {n_head_kv}"
            )));
        }
        let head_dim = match file.optional_usize(&format!("{a}.attention.key_length"))? {
            Some(d) => d,
            None => n_embd / n_head,
        };
        if head_dim == 0 || !head_dim.is_multiple_of(2) {
            return Err(file.error(format!(
                "head dimension {head_dim} must be even and non-zero"
            )));
        }
        let vocab_size = match file.tensor_dims("token_embd.weight") {
            Some([rows, _]) => *rows,
            Some(dims) => {
                return Err(file.error(format!(
                    "token_embd.weight should be a matrix, its shape is {dims:?}"
                )));
            }
            None => return Err(file.error("missing tensor token_embd.weight")),
        };
        let rope_linear_factor = match file.string(&format!("{a}.rope.scaling.type"))? {
            Some("linear") => file
                .float(&format!("{a}.rope.scaling.factor"))?
                .filter(|f| *f > 0.0)
                .unwrap_or(1.0),
            Some("none") | None => 1.0,
            // Llama 3's own scaling lives in rope_freqs.weight; yarn and the like are not supported.
            Some("llama3") => 1.0,
            Some(other) => {
                return Err(file.error(format!("RoPE scaling type {other:?} is not supported")));
            }
        };
        let (sliding_window, swa_pattern, rope_base_local) = match arch {
            Arch::Gemma3 => (
                file.optional_usize(&format!("{a}.attention.sliding_window"))?,
                6,
                10_000.0,
            ),
            Arch::Llama => (None, 0, 0.0),
        };
        let default_eps = match arch {
            Arch::Llama => 1e-5,
            Arch::Gemma3 => 1e-6,
        };
        let n_layer = file.required_usize(&format!("{a}.block_count"))?;
        let ctx_train = file
            .optional_usize(&format!("{a}.context_length"))?
            .unwrap_or(2048);
        if n_layer == 0 || ctx_train == 0 || sliding_window == Some(0) {
            return Err(file.error(format!(
                "block_count ({n_layer}), context_length ({ctx_train}) and attention.sliding_window must be positive"
            )));
        }
        let attn_scale = if arch == Arch::Gemma3 && n_layer == 62 {
            1.0 / ((n_embd / n_head) as f64).sqrt()
        } else {
            1.0 / (head_dim as f64).sqrt()
        };
        Ok(Self {
            attn_scale,
            arch,
            n_layer,
            n_embd,
            n_head,
            n_head_kv,
            head_dim,
            n_ff: file.required_usize(&format!("{a}.feed_forward_length"))?,
            rms_eps: file
                .float(&format!("{a}.attention.layer_norm_rms_epsilon"))?
                .unwrap_or(default_eps),
            rope_base: file
                .float(&format!("{a}.rope.freq_base"))?
                .unwrap_or(match arch {
                    Arch::Llama => 10_000.0,
                    Arch::Gemma3 => 1_000_000.0,
                }),
            rope_base_local,
            rope_linear_factor,
            ctx_train,
            sliding_window,
            swa_pattern,
            vocab_size,
        })
    }

    /// Whether layer `il` attends over a sliding window (Gemma 3: five local layers, then a global one).
    pub fn is_sliding(&self, il: usize) -> bool {
        self.sliding_window.is_some()
            && self.swa_pattern > 0
            && !(il + 1).is_multiple_of(self.swa_pattern)
    }
}

#[derive(Debug)]
struct Layer {
    attn_norm: Tensor,
    wq: Linear,
    wk: Linear,
    wv: Linear,
    wo: Linear,
    q_norm: Option<Tensor>,
    k_norm: Option<Tensor>,
    post_attn_norm: Option<Tensor>,
    ffn_norm: Tensor,
    gate: Linear,
    up: Linear,
    down: Linear,
    post_ffn_norm: Option<Tensor>,
    sliding: bool,
}

/// cos/sin tables for every position up to the context, shape (n_ctx, head_dim / 2).
#[derive(Debug)]
struct Rope {
    cos: Tensor,
    sin: Tensor,
}

impl Rope {
    fn new(
        base: f64,
        head_dim: usize,
        n_ctx: usize,
        linear_factor: f64,
        freq_factors: Option<&[f32]>,
    ) -> candle_core::Result<Self> {
        let half = head_dim / 2;
        let inv_freq: Vec<f32> = (0..half)
            .map(|i| {
                let f = 1.0 / base.powf(2.0 * i as f64 / head_dim as f64);
                let f = match freq_factors.and_then(|ff| ff.get(i)) {
                    Some(div) if *div > 0.0 => f / f64::from(*div),
                    _ => f,
                };
                (f / linear_factor) as f32
            })
            .collect();
        let inv_freq = Tensor::from_vec(inv_freq, (1, half), &Device::Cpu)?;
        let positions = Tensor::arange(0u32, n_ctx as u32, &Device::Cpu)?
            .to_dtype(DType::F32)?
            .reshape((n_ctx, 1))?;
        let angles = positions.broadcast_mul(&inv_freq)?;
        Ok(Self {
            cos: angles.cos()?.contiguous()?,
            sin: angles.sin()?.contiguous()?,
        })
    }
}

/// The weights of one model, shared (read-only) by every request.
#[derive(Debug)]
pub struct Model {
    pub hparams: Hparams,
    /// The context this instance serves: the file's, bounded by the configured `n_ctx`.
    pub n_ctx: usize,
    tok_embd: Embeddings,
    layers: Vec<Layer>,
    output_norm: Tensor,
    output: Linear,
    rope: Rope,
    rope_local: Option<Rope>,
}

fn dense(t: QTensor) -> candle_core::Result<Tensor> {
    t.dequantize(&Device::Cpu)
}

/// The weight types [`quant`] multiplies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OwnType {
    Q4K,
    Q5_0,
    Q6K,
    Q8_0,
}

/// A weight matrix's blocks exactly as the file stores them: `n` rows of `k` weights of `dtype`.
///
/// Read straight from the file into the buffer that keeps them (candle's loader reads a tensor
/// and then copies it, which for a tied Gemma 3 embedding table made a second 170 MiB at load),
/// and shared when the output projection is the embedding table.
#[derive(Debug, Clone)]
struct Blocks {
    dtype: OwnType,
    bytes: Arc<WeightBytes>,
    n: usize,
    k: usize,
}

impl Blocks {
    /// Tensor `name` (`n × k`) if it is of a type [`quant`] multiplies (Q4_K, Q5_0, Q6_K, Q8_0) in
    /// whole blocks, else `None`.
    fn read_if_ours(
        file: &mut GgufFile,
        name: &str,
        n: usize,
        k: usize,
    ) -> Result<Option<Self>, ModelFileError> {
        let dtype = match file.tensor_dtype(name) {
            Some(GgmlDType::Q4K) if quant::fits::<Q4K>(k) => OwnType::Q4K,
            Some(GgmlDType::Q5_0) if quant::fits::<Q5_0>(k) => OwnType::Q5_0,
            Some(GgmlDType::Q6K) if quant::fits::<Q6K>(k) => OwnType::Q6K,
            Some(GgmlDType::Q8_0) if quant::fits::<Q8_0>(k) => OwnType::Q8_0,
            _ => return Ok(None),
        };
        let bytes = Arc::new(file.tensor_blocks(name)?);
        Ok(Some(Self { dtype, bytes, n, k }))
    }

    /// `x · wᵀ` through [`quant::matmul`]: `x` is `(m, k)`.
    fn matmul(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (m, x_k) = x.dims2()?;
        if x_k != self.k {
            candle_core::bail!("matmul of {m}×{x_k} by a {}×{} weight", self.n, self.k);
        }
        let xs = x.flatten_all()?.to_vec1::<f32>()?;
        let (w, n, k) = (&self.bytes[..], self.n, self.k);
        let out = match self.dtype {
            OwnType::Q4K => quant::matmul::<Q4K>(w, n, k, &xs, m),
            OwnType::Q5_0 => quant::matmul::<Q5_0>(w, n, k, &xs, m),
            OwnType::Q6K => quant::matmul::<Q6K>(w, n, k, &xs, m),
            OwnType::Q8_0 => quant::matmul::<Q8_0>(w, n, k, &xs, m),
        };
        Tensor::from_vec(out, (m, n), &Device::Cpu)
    }

    /// Rows `ids`, dequantized: `(ids.len(), k)`.
    fn rows(&self, ids: &[u32]) -> candle_core::Result<Tensor> {
        match self.dtype {
            OwnType::Q4K => self.rows_of::<Q4K>(ids),
            OwnType::Q5_0 => self.rows_of::<Q5_0>(ids),
            OwnType::Q6K => self.rows_of::<Q6K>(ids),
            OwnType::Q8_0 => self.rows_of::<Q8_0>(ids),
        }
    }

    fn rows_of<K: quant::Kernel>(&self, ids: &[u32]) -> candle_core::Result<Tensor> {
        let row_bytes = self.k / K::BLOCK * K::BLOCK_BYTES;
        let mut out = Vec::with_capacity(ids.len() * self.k);
        for id in ids {
            let at = *id as usize;
            let Some(row) = self.bytes.get(at * row_bytes..(at + 1) * row_bytes) else {
                candle_core::bail!("row {id} of a table of {}", self.n);
            };
            K::dequantize(row, &mut out);
        }
        Tensor::from_vec(out, (ids.len(), self.k), &Device::Cpu)
    }
}

/// Prompt batches at least this long multiply by dequantized weights (see [`Linear`]).
const DENSE_MIN_ROWS: usize = 32;

/// A weight matrix.
///
/// Q4_K, Q5_0, Q6_K and Q8_0 (all of a Q4_K_M or Q8_0 file) run through [`quant`] on the
/// blocks as loaded, for one token and for prompt batches alike. Other types, one token at a
/// time, run candle's quantized kernels (memory-bound, where quantization pays). For a prompt
/// batch, types without candle's tiled x86 kernels (Q4_K has them) are dequantized to f32 for
/// the call and multiplied with the f32 GEMM: the batch reuses each weight many times, so
/// compute dominates, and the dot-product kernels re-read every weight block once per row. The
/// f32 copy lives only for the call.
#[derive(Debug)]
enum Linear {
    Ours(Blocks),
    /// candle's kernels, with an f32 copy for prompt batches when `dense_prefill`.
    Candle {
        w: QMatMul,
        dense_prefill: bool,
    },
}

impl Linear {
    /// Tensor `name`, which must be `n × k`: read as [`Blocks`] where our kernels take its type,
    /// else as candle's quantized tensor.
    fn load(file: &mut GgufFile, name: &str, n: usize, k: usize) -> Result<Self, ModelFileError> {
        if let Some(blocks) = Blocks::read_if_ours(file, name, n, k)? {
            return Ok(Self::Ours(blocks));
        }
        let dense_prefill = !matches!(
            file.tensor_dtype(name),
            Some(GgmlDType::Q4K | GgmlDType::Q6K)
        );
        let t = file.tensor(name)?;
        let w = QMatMul::from_qtensor(t)
            .map_err(|e| file.error(format!("tensor {name}: {}", brief(&e))))?;
        Ok(Self::Candle { w, dense_prefill })
    }

    /// The output projection: never densified (a vocabulary-sized f32 copy would be ~1 GB).
    fn never_dense(self) -> Self {
        match self {
            Self::Candle { w, .. } => Self::Candle {
                w,
                dense_prefill: false,
            },
            ours => ours,
        }
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Self::Ours(b) => b.matmul(x),
            Self::Candle {
                w: QMatMul::QTensor(q),
                dense_prefill: true,
            } if x.dim(0)? >= DENSE_MIN_ROWS => {
                let w = q.dequantize(&Device::Cpu)?;
                x.matmul(&w.t()?)
            }
            Self::Candle { w, .. } => w.forward(x),
        }
    }
}

/// The token-embedding table, looked up row by row in its quantized form.
#[derive(Debug)]
enum Embeddings {
    Ours(Blocks),
    Candle(Arc<QTensor>),
}

impl Embeddings {
    fn load(file: &mut GgufFile, n: usize, k: usize) -> Result<Self, ModelFileError> {
        let name = "token_embd.weight";
        Ok(match Blocks::read_if_ours(file, name, n, k)? {
            Some(blocks) => Self::Ours(blocks),
            None => Self::Candle(Arc::new(file.tensor(name)?)),
        })
    }

    /// The embeddings of `ids`: `(ids.len(), n_embd)`.
    fn lookup(&self, ids: &[u32]) -> candle_core::Result<Tensor> {
        match self {
            Self::Ours(b) => b.rows(ids),
            Self::Candle(t) => t.embedding(&Tensor::new(ids, &Device::Cpu)?),
        }
    }

    /// The same table as the output projection (tied embeddings), shared, not copied; never
    /// densified for prompt batches (a vocabulary-sized f32 copy would be ~1 GB).
    fn tied_output(&self) -> candle_core::Result<Linear> {
        Ok(match self {
            Self::Ours(b) => Linear::Ours(b.clone()),
            Self::Candle(t) => Linear::Candle {
                w: QMatMul::from_arc(t.clone())?,
                dense_prefill: false,
            },
        })
    }
}

/// A norm's weights, dense.
fn norm(file: &mut GgufFile, name: &str) -> Result<Tensor, ModelFileError> {
    let t = file.tensor(name)?;
    dense(t).map_err(|e| file.error(format!("tensor {name}: {}", brief(&e))))
}

/// A norm that this architecture requires (`required`) or that may be absent.
fn optional_norm(
    file: &mut GgufFile,
    name: &str,
    required: bool,
) -> Result<Option<Tensor>, ModelFileError> {
    if required || file.has_tensor(name) {
        norm(file, name).map(Some)
    } else {
        Ok(None)
    }
}

impl Model {
    /// Loads every tensor. `n_ctx` bounds the context (0 = the file's own).
    pub fn load(file: &mut GgufFile, n_ctx: usize) -> Result<Self, ModelFileError> {
        let hp = Hparams::read(file)?;
        let n_ctx = if n_ctx == 0 {
            hp.ctx_train
        } else {
            n_ctx.min(hp.ctx_train)
        };
        let cerr = |file: &GgufFile, what: &str, e: candle_core::Error| {
            file.error(format!("{what}: {}", brief(&e)))
        };
        let expect_dims = |file: &GgufFile, name: &str, want: &[usize]| match file.tensor_dims(name)
        {
            Some(dims) if dims == want => Ok(()),
            Some(dims) => Err(file.error(format!(
                "tensor {name} has shape {dims:?}, the metadata implies {want:?}"
            ))),
            None => Err(file.error(format!("missing tensor {name}"))),
        };
        expect_dims(file, "token_embd.weight", &[hp.vocab_size, hp.n_embd])?;
        let tok_embd = Embeddings::load(file, hp.vocab_size, hp.n_embd)?;
        let output_norm = file.tensor("output_norm.weight")?;
        let output_norm = dense(output_norm).map_err(|e| cerr(file, "output_norm.weight", e))?;
        let output = if file.has_tensor("output.weight") {
            expect_dims(file, "output.weight", &[hp.vocab_size, hp.n_embd])?;
            Linear::load(file, "output.weight", hp.vocab_size, hp.n_embd)?.never_dense()
        } else {
            // Tied embeddings (Llama 3.2 1B/3B, Gemma): the same quantized table, not a copy.
            tok_embd
                .tied_output()
                .map_err(|e| cerr(file, "token_embd.weight", e))?
        };
        let freq_factors = match file.tensor_if_present("rope_freqs.weight")? {
            Some(t) => Some(
                dense(t)
                    .and_then(|t| t.flatten_all()?.to_vec1::<f32>())
                    .map_err(|e| cerr(file, "rope_freqs.weight", e))?,
            ),
            None => None,
        };
        if let Some(ff) = &freq_factors
            && ff.len() != hp.head_dim / 2
        {
            return Err(file.error(format!(
                "rope_freqs.weight has {} entries, expected head_dim / 2 = {}",
                ff.len(),
                hp.head_dim / 2
            )));
        }
        let rope = Rope::new(
            hp.rope_base,
            hp.head_dim,
            n_ctx,
            hp.rope_linear_factor,
            freq_factors.as_deref(),
        )
        .map_err(|e| cerr(file, "RoPE tables", e))?;
        let rope_local = match hp.arch {
            Arch::Gemma3 => Some(
                Rope::new(hp.rope_base_local, hp.head_dim, n_ctx, 1.0, None)
                    .map_err(|e| cerr(file, "RoPE tables", e))?,
            ),
            Arch::Llama => None,
        };

        let q_dim = hp.n_head * hp.head_dim;
        let kv_dim = hp.n_head_kv * hp.head_dim;
        // Sizes come from the file: check the last layer exists before trusting block_count.
        let last = format!("blk.{}.attn_q.weight", hp.n_layer - 1);
        if !file.has_tensor(&last) {
            return Err(file.error(format!(
                "block_count is {} but there is no tensor {last}",
                hp.n_layer
            )));
        }
        let mut layers = Vec::new();
        for il in 0..hp.n_layer {
            let p = format!("blk.{il}");
            let mut take_mm = |suffix: &str, dims: [usize; 2]| -> Result<Linear, ModelFileError> {
                let name = format!("{p}.{suffix}.weight");
                expect_dims(file, &name, &dims)?;
                Linear::load(file, &name, dims[0], dims[1])
            };
            let wq = take_mm("attn_q", [q_dim, hp.n_embd])?;
            let wk = take_mm("attn_k", [kv_dim, hp.n_embd])?;
            let wv = take_mm("attn_v", [kv_dim, hp.n_embd])?;
            let wo = take_mm("attn_output", [hp.n_embd, q_dim])?;
            let gate = take_mm("ffn_gate", [hp.n_ff, hp.n_embd])?;
            let up = take_mm("ffn_up", [hp.n_ff, hp.n_embd])?;
            let down = take_mm("ffn_down", [hp.n_embd, hp.n_ff])?;
            let gemma = hp.arch == Arch::Gemma3;
            let layer = Layer {
                attn_norm: norm(file, &format!("{p}.attn_norm.weight"))?,
                ffn_norm: norm(file, &format!("{p}.ffn_norm.weight"))?,
                q_norm: optional_norm(file, &format!("{p}.attn_q_norm.weight"), gemma)?,
                k_norm: optional_norm(file, &format!("{p}.attn_k_norm.weight"), gemma)?,
                post_attn_norm: optional_norm(
                    file,
                    &format!("{p}.post_attention_norm.weight"),
                    gemma,
                )?,
                post_ffn_norm: optional_norm(file, &format!("{p}.post_ffw_norm.weight"), gemma)?,
                wq,
                wk,
                wv,
                wo,
                gate,
                up,
                down,
                sliding: hp.is_sliding(il),
            };
            layers.push(layer);
        }
        Ok(Self {
            hparams: hp,
            n_ctx,
            tok_embd,
            layers,
            output_norm,
            output,
            rope,
            rope_local,
        })
    }

    /// A KV cache for `capacity` positions (at most `n_ctx`), allocated once.
    pub fn new_cache(&self, capacity: usize) -> candle_core::Result<KvCache> {
        let capacity = capacity.clamp(1, self.n_ctx);
        let hp = &self.hparams;
        let shape = (hp.n_head_kv, capacity, hp.head_dim);
        let mut k = Vec::with_capacity(hp.n_layer);
        let mut v = Vec::with_capacity(hp.n_layer);
        for _ in 0..hp.n_layer {
            k.push(Tensor::zeros(shape, DType::F32, &Device::Cpu)?);
            v.push(Tensor::zeros(shape, DType::F32, &Device::Cpu)?);
        }
        Ok(KvCache {
            k,
            v,
            len: 0,
            capacity,
        })
    }

    /// Runs `tokens` (the positions after those already in `cache`) through the stack and returns
    /// the logits: of the last token (shape `(vocab,)`), or of every token (`(tokens, vocab)`) when
    /// `all_logits`.
    pub fn forward(
        &self,
        tokens: &[u32],
        cache: &mut KvCache,
        all_logits: bool,
    ) -> candle_core::Result<Tensor> {
        let hp = &self.hparams;
        let s = tokens.len();
        if s == 0 {
            candle_core::bail!("no tokens to run");
        }
        let pos = cache.len;
        if pos + s > cache.capacity {
            candle_core::bail!(
                "{} positions do not fit the KV cache of {}",
                pos + s,
                cache.capacity
            );
        }
        if let Some(bad) = tokens.iter().find(|t| **t as usize >= hp.vocab_size) {
            candle_core::bail!(
                "token id {bad} is outside the vocabulary of {}",
                hp.vocab_size
            );
        }
        let mut x = self.tok_embd.lookup(tokens)?;
        if hp.arch == Arch::Gemma3 {
            x = (x * (hp.n_embd as f64).sqrt())?;
        }
        let eps = hp.rms_eps as f32;
        let n_rep = hp.n_head / hp.n_head_kv;
        let hd = hp.head_dim;
        let scale = hp.attn_scale;
        let total = pos + s;
        for (il, layer) in self.layers.iter().enumerate() {
            let rope = match (&self.rope_local, layer.sliding) {
                (Some(local), true) => local,
                _ => &self.rope,
            };
            let cos = rope.cos.narrow(0, pos, s)?;
            let sin = rope.sin.narrow(0, pos, s)?;

            let h = candle_nn::ops::rms_norm(&x, &layer.attn_norm, eps)?;
            let q = layer.wq.forward(&h)?;
            let k = layer.wk.forward(&h)?;
            let v = layer.wv.forward(&h)?;
            // (s, heads * hd) -> (1, heads, s, hd)
            let q = q
                .reshape((1, s, hp.n_head, hd))?
                .transpose(1, 2)?
                .contiguous()?;
            let k = k
                .reshape((1, s, hp.n_head_kv, hd))?
                .transpose(1, 2)?
                .contiguous()?;
            let v = v
                .reshape((s, hp.n_head_kv, hd))?
                .transpose(0, 1)?
                .contiguous()?;
            let q = match &layer.q_norm {
                Some(w) => candle_nn::ops::rms_norm(&q, w, eps)?,
                None => q,
            };
            let k = match &layer.k_norm {
                Some(w) => candle_nn::ops::rms_norm(&k, w, eps)?,
                None => k,
            };
            let (q, k) = match hp.arch {
                // llama.cpp's converter permutes Llama's q/k rows so that rotated pairs are adjacent.
                Arch::Llama => (
                    candle_nn::rotary_emb::rope_i(&q, &cos, &sin)?,
                    candle_nn::rotary_emb::rope_i(&k, &cos, &sin)?,
                ),
                Arch::Gemma3 => (
                    candle_nn::rotary_emb::rope(&q, &cos, &sin)?,
                    candle_nn::rotary_emb::rope(&k, &cos, &sin)?,
                ),
            };
            // Keys and values are kept at f16 precision, as llama.cpp's default f16 cache keeps
            // them: the logits then follow llama.cpp's closely enough that greedy decoding picks
            // its tokens where two candidates are a rounding apart (Gemma 3's golden test).
            let k = k.squeeze(0)?.to_dtype(DType::F16)?.to_dtype(DType::F32)?;
            let v = v.to_dtype(DType::F16)?.to_dtype(DType::F32)?;
            cache.k[il].slice_set(&k, 1, pos)?;
            cache.v[il].slice_set(&v, 1, pos)?;

            // Keys visible to this batch: all so far, or for a sliding layer the last `window`
            // before the batch's first query (older ones are masked per query below).
            let window = if layer.sliding {
                hp.sliding_window
            } else {
                None
            };
            let start = match window {
                Some(w) => (pos + 1).saturating_sub(w),
                None => 0,
            };
            let kv_len = total - start;
            let o = if s == 1 {
                attend_one(&q, &cache.k[il], &cache.v[il], start..total, n_rep, scale)?
            } else {
                let keys = cache.k[il].narrow(1, start, kv_len)?;
                let values = cache.v[il].narrow(1, start, kv_len)?;
                // Grouped heads: the n_rep query heads of one KV head become rows of one matmul.
                let q = q.reshape((hp.n_head_kv, n_rep * s, hd))?;
                let att = (q.matmul(&keys.t()?)? * scale)?;
                let mask = attention_mask(s, pos, start, kv_len, window)?;
                let att = att
                    .reshape((hp.n_head_kv, n_rep, s, kv_len))?
                    .broadcast_add(&mask)?
                    .reshape((hp.n_head_kv, n_rep * s, kv_len))?;
                let att = candle_nn::ops::softmax_last_dim(&att)?;
                let o = att.matmul(&values)?; // (n_kv, n_rep * s, hd)
                o.reshape((hp.n_head, s, hd))?
                    .transpose(0, 1)?
                    .contiguous()?
                    .reshape((s, hp.n_head * hd))?
            };
            let o = layer.wo.forward(&o)?;
            let o = match &layer.post_attn_norm {
                Some(w) => candle_nn::ops::rms_norm(&o, w, eps)?,
                None => o,
            };
            x = (x + o)?;

            let h = candle_nn::ops::rms_norm(&x, &layer.ffn_norm, eps)?;
            let g = layer.gate.forward(&h)?;
            let u = layer.up.forward(&h)?;
            let a = match hp.arch {
                Arch::Llama => gated(&g, &u, |g, u| math::gate_in_place(g, u, math::silu))?,
                Arch::Gemma3 => gated(&g, &u, math::gate_gelu_f16_in_place)?,
            };
            let d = layer.down.forward(&a)?;
            let d = match &layer.post_ffn_norm {
                Some(w) => candle_nn::ops::rms_norm(&d, w, eps)?,
                None => d,
            };
            x = (x + d)?;
        }
        cache.len = total;
        let x = if all_logits {
            x
        } else {
            x.narrow(0, s - 1, 1)?
        };
        let x = candle_nn::ops::rms_norm(&x, &self.output_norm, eps)?;
        let logits = self.output.forward(&x)?;
        if all_logits {
            Ok(logits)
        } else {
            logits.squeeze(0)
        }
    }
}

impl Model {
    /// Runs a whole prompt in batches of `n_batch` tokens and returns the last token's logits.
    /// (The generation loop runs its own batches, to stop between them when cancelled.)
    pub fn prefill(
        &self,
        tokens: &[u32],
        cache: &mut KvCache,
        n_batch: usize,
    ) -> candle_core::Result<Tensor> {
        let mut logits = None;
        for chunk in tokens.chunks(n_batch.max(1)) {
            logits = Some(self.forward(chunk, cache, false)?);
        }
        logits.ok_or_else(|| candle_core::Error::Msg("no tokens to run".into()))
    }
}

/// The contiguous f32 values of a CPU tensor, borrowed.
fn cpu_values<'a>(
    storage: &'a candle_core::Storage,
    layout: &candle_core::Layout,
) -> candle_core::Result<&'a [f32]> {
    let candle_core::Storage::Cpu(cpu) = storage else {
        candle_core::bail!("a tensor the CPU engine reads in place is not in CPU memory");
    };
    let Some((from, to)) = layout.contiguous_offsets() else {
        candle_core::bail!("a tensor the CPU engine reads in place is not contiguous");
    };
    cpu.as_slice::<f32>()?
        .get(from..to)
        .ok_or_else(|| candle_core::Error::Msg("a tensor's layout overruns its storage".into()))
}

/// Attention for one query position (a decode step), read straight from the cache without
/// candle's matmuls, which pack their operands on every call. `q` holds the query heads (after
/// RoPE), `n_head · hd` values; `keys` and `values` are a layer's `(n_kv, capacity, hd)` cache,
/// of which positions `visible` are attended to (for one query, the range already starts
/// within a sliding window and ends at the query, so no mask is needed). The `n_rep` query heads
/// of a KV head share its keys; one head per work item. Returns `(1, n_head · hd)`.
fn attend_one(
    q: &Tensor,
    keys: &Tensor,
    values: &Tensor,
    visible: std::ops::Range<usize>,
    n_rep: usize,
    scale: f64,
) -> candle_core::Result<Tensor> {
    let (n_kv, capacity, hd) = keys.dims3()?;
    let q = q.flatten_all()?.to_vec1::<f32>()?;
    let n_head = n_kv * n_rep;
    if q.len() != n_head * hd || values.dims3()? != (n_kv, capacity, hd) || visible.end > capacity {
        candle_core::bail!(
            "attention of {} query values over a ({n_kv}, {capacity}, {hd}) cache at {visible:?}",
            q.len()
        );
    }
    let (k_store, k_layout) = keys.storage_and_layout();
    let (v_store, v_layout) = values.storage_and_layout();
    let (k_all, v_all) = (
        cpu_values(&k_store, k_layout)?,
        cpu_values(&v_store, v_layout)?,
    );
    let scale = scale as f32;
    let mut out = vec![0f32; n_head * hd];
    par_pieces(out.chunks_mut(hd).collect(), |h, out| {
        let at = (h / n_rep * capacity + visible.start) * hd;
        let span = at..at + visible.len() * hd;
        let (Some(keys), Some(values), Some(q)) = (
            k_all.get(span.clone()),
            v_all.get(span),
            q.get(h * hd..(h + 1) * hd),
        ) else {
            return;
        };
        let mut scores: Vec<f32> = keys
            .chunks_exact(hd)
            .map(|k| math::dot(q, k) * scale)
            .collect();
        math::softmax_in_place(&mut scores);
        for (p, v) in scores.iter().zip(values.chunks_exact(hd)) {
            for (o, v) in out.iter_mut().zip(v) {
                *o = p.mul_add(*v, *o);
            }
        }
    });
    Tensor::from_vec(out, (1, n_head * hd), &Device::Cpu)
}

/// A gated feed-forward unit's activation, `act(g) · u` elementwise, in one pass: `gate(g, u)`
/// overwrites `g`. A prompt batch is shared out over the kernel threads in pieces of `PIECE`.
fn gated(
    g: &Tensor,
    u: &Tensor,
    gate: impl Fn(&mut [f32], &[f32]) + Sync,
) -> candle_core::Result<Tensor> {
    /// Values per work item (and the fewest worth a hand-off to the kernel threads).
    const PIECE: usize = 16 * 1024;
    let shape = g.shape().clone();
    let mut g = g.flatten_all()?.to_vec1::<f32>()?;
    let u = u.flatten_all()?.to_vec1::<f32>()?;
    if g.len() != u.len() {
        candle_core::bail!("gate of {} values against up of {}", g.len(), u.len());
    }
    if g.len() <= PIECE {
        gate(&mut g, &u);
    } else {
        par_pieces(g.chunks_mut(PIECE).collect(), |i, piece| {
            if let Some(up) = u.get(i * PIECE..i * PIECE + piece.len()) {
                gate(piece, up);
            }
        });
    }
    Tensor::from_vec(g, shape, &Device::Cpu)
}

/// Additive mask, shape (s, kv_len): query i (at position pos + i) sees key j (at position
/// start + j) when it is not in the future and, for a sliding window, within the window.
fn attention_mask(
    s: usize,
    pos: usize,
    start: usize,
    kv_len: usize,
    window: Option<usize>,
) -> candle_core::Result<Tensor> {
    let mut mask = vec![0f32; s * kv_len];
    for i in 0..s {
        let qp = pos + i;
        for j in 0..kv_len {
            let kp = start + j;
            let visible = kp <= qp && window.is_none_or(|w| qp - kp < w);
            if !visible {
                mask[i * kv_len + j] = f32::NEG_INFINITY;
            }
        }
    }
    Tensor::from_vec(mask, (s, kv_len), &Device::Cpu)
}

/// Keys and values of every layer for one sequence, allocated once at full capacity.
#[derive(Debug)]
pub struct KvCache {
    k: Vec<Tensor>,
    v: Vec<Tensor>,
    len: usize,
    capacity: usize,
}

impl KvCache {
    /// Positions filled so far.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Forgets everything after `len` positions (the next forward overwrites them).
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }
}

/// The largest logit's index.
pub fn argmax(logits: &Tensor) -> candle_core::Result<u32> {
    logits.argmax(D::Minus1)?.to_scalar::<u32>()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One decode step's attention against the formula in f64: query head `h` attends to KV
    /// head `h / n_rep`, over the visible positions only.
    #[test]
    fn one_query_attends_to_its_kv_head_over_the_visible_positions() {
        let (n_kv, capacity, hd, n_rep) = (2, 10, 8, 3);
        let mut rng = fastrand::Rng::with_seed(7);
        let mut random = |n: usize| (0..n).map(|_| rng.f32() * 2.0 - 1.0).collect::<Vec<f32>>();
        let (q, k, v) = (
            random(n_kv * n_rep * hd),
            random(n_kv * capacity * hd),
            random(n_kv * capacity * hd),
        );
        let tensor = |v: &[f32]| Tensor::from_slice(v, (n_kv, capacity, hd), &Device::Cpu);
        let (keys, values) = (tensor(&k).expect("keys"), tensor(&v).expect("values"));
        let qt = Tensor::from_slice(&q, (1, n_kv * n_rep, 1, hd), &Device::Cpu).expect("q");
        let visible = 3..9;
        let scale = 0.35;
        let got = attend_one(&qt, &keys, &values, visible.clone(), n_rep, scale)
            .and_then(|t| t.flatten_all()?.to_vec1::<f32>())
            .expect("attention");
        for h in 0..n_kv * n_rep {
            let g = h / n_rep;
            let at = |p: usize, d: usize| (g * capacity + p) * hd + d;
            let scores: Vec<f64> = visible
                .clone()
                .map(|p| {
                    let dot: f64 = (0..hd)
                        .map(|d| f64::from(q[h * hd + d]) * f64::from(k[at(p, d)]))
                        .sum();
                    (dot * scale).exp()
                })
                .collect();
            let total: f64 = scores.iter().sum();
            for d in 0..hd {
                let want: f64 = visible
                    .clone()
                    .zip(&scores)
                    .map(|(p, s)| s / total * f64::from(v[at(p, d)]))
                    .sum();
                let got = f64::from(got[h * hd + d]);
                assert!(
                    (got - want).abs() < 1e-5,
                    "head {h}, dim {d}: {got} vs {want}"
                );
            }
        }
        let too_far = attend_one(&qt, &keys, &values, 5..11, n_rep, scale);
        assert!(too_far.is_err(), "a range past the cache is an error");
    }
}
