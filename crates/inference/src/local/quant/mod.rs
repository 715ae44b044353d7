//! Matrix products over quantized weights in the form the GGUF file stores them.
//!
//! candle 0.11 multiplies Q4_K on x86 through tiles it repacks each matrix into on first use
//! (f32 scales, 6 bits a weight instead of 4.5) and keeps beside the original: a third more bytes
//! read per decoded token and a third more memory resident. For Q8_0 it has no batched kernel on
//! AVX2. Here the activations are quantized to 8 bits per block (as llama.cpp does for the same
//! weight type) and each output is a dot product over the file's own blocks:
//!
//! - in AVX2 where the CPU has it, through `pulp`'s safe intrinsics behind a run-time check (no
//!   `unsafe` in this crate), else in plain Rust; the two give the same bits;
//! - with llama.cpp's floating-point steps, so that greedy decoding picks the tokens llama.cpp
//!   picks even where two logits differ in the last bits;
//! - weight rows shared out over candle's kernel threads, in tiles of `TILE` rows run against
//!   every activation row, `GROUP` activation rows at a time (a prompt batch reuses each
//!   unpacked weight block four times).
//!
//! [`q4k`]: Q4_K (most of a Q4_K_M file); [`q5_0`]: Q5_0 (where rows are not whole Q4_K
//! blocks, as in Gemma 3 270M); [`q8_0`]: Q8_0.

pub mod q4k;
pub mod q5_0;
pub mod q8_0;

use std::sync::atomic::{AtomicU32, Ordering};

#[cfg(target_arch = "x86_64")]
pub use pulp::x86::V3;

/// Weight rows multiplied against every activation row before the next rows are read.
const TILE: usize = 16;
/// Activation rows that share one unpacking of the weights.
const GROUP: usize = 4;

/// One weight type's kernels.
pub trait Kernel {
    /// One activation row, quantized.
    type Act: Sync;
    /// Weights per block.
    const BLOCK: usize;
    /// Bytes per block.
    const BLOCK_BYTES: usize;
    /// Quantizes one activation row (a multiple of [`Self::BLOCK`] long).
    fn quantize(x: &[f32]) -> Self::Act;
    /// `row · x` in plain Rust.
    fn dot(row: &[u8], x: &Self::Act) -> f32;
    /// Appends the weights of `row` (whole blocks) to `out`, bit for bit as candle reads them.
    fn dequantize(row: &[u8], out: &mut Vec<f32>);
    /// `row · x` for `T` activation rows, in AVX2; the same bits as [`Self::dot`].
    #[cfg(target_arch = "x86_64")]
    fn dot_simd<const T: usize>(simd: V3, row: &[u8], xs: [&Self::Act; T]) -> [f32; T];
}

/// Whether a `n × k` weight of this kernel's type can run here (`k` a whole number of blocks).
pub fn fits<K: Kernel>(k: usize) -> bool {
    k > 0 && k.is_multiple_of(K::BLOCK)
}

/// `x · wᵀ`: `x` is `m` rows of `k` activations, `w` is `n` rows of `k` weights in `K`'s blocks
/// (`k` a multiple of `K::BLOCK`); returns `m` rows of `n`.
pub fn matmul<K: Kernel>(w: &[u8], n: usize, k: usize, x: &[f32], m: usize) -> Vec<f32> {
    let row_bytes = k / K::BLOCK * K::BLOCK_BYTES;
    let xq: Vec<K::Act> = x.chunks_exact(k).take(m).map(K::quantize).collect();
    // Each output is written once, by the thread that owns its weight row.
    let out: Vec<AtomicU32> = (0..m * n).map(|_| AtomicU32::new(0)).collect();
    let store = |t: usize, r: usize, v: f32| {
        if let Some(o) = out.get(t * n + r) {
            o.store(v.to_bits(), Ordering::Relaxed);
        }
    };
    let row_of = |r: usize| w.get(r * row_bytes..(r + 1) * row_bytes);
    candle_core::utils::barrier_pool().execute_chunked(n, |rows| {
        #[cfg(target_arch = "x86_64")]
        if let Some(simd) = V3::try_new() {
            return simd.vectorize(|| {
                for tile in rows.step_by(TILE).map(|r| r..(r + TILE).min(n)) {
                    let mut groups = xq.chunks_exact(GROUP);
                    let mut t = 0;
                    for group in groups.by_ref() {
                        let xs: [&K::Act; GROUP] = std::array::from_fn(|i| &group[i]);
                        for r in tile.clone() {
                            let Some(row) = row_of(r) else { continue };
                            for (i, v) in K::dot_simd(simd, row, xs).into_iter().enumerate() {
                                store(t + i, r, v);
                            }
                        }
                        t += GROUP;
                    }
                    for (i, x) in groups.remainder().iter().enumerate() {
                        for r in tile.clone() {
                            if let Some(row) = row_of(r) {
                                let [v] = K::dot_simd(simd, row, [x]);
                                store(t + i, r, v);
                            }
                        }
                    }
                }
            });
        }
        for tile in rows.step_by(TILE).map(|r| r..(r + TILE).min(n)) {
            for (t, x) in xq.iter().enumerate() {
                for r in tile.clone() {
                    if let Some(row) = row_of(r) {
                        store(t, r, K::dot(row, x));
                    }
                }
            }
        }
    });
    out.into_iter()
        .map(|v| f32::from_bits(v.into_inner()))
        .collect()
}

/// A random `n × k` matrix quantized to `dtype` by candle: its bytes, and its dequantized form.
#[cfg(test)]
fn test_weights(
    dtype: candle_core::quantized::GgmlDType,
    n: usize,
    k: usize,
    seed: u64,
) -> (Vec<u8>, Vec<f32>) {
    use candle_core::{Device, Tensor, quantized::QTensor};
    let mut rng = fastrand::Rng::with_seed(seed);
    let values: Vec<f32> = (0..n * k).map(|_| rng.f32() * 2.0 - 1.0).collect();
    let t = Tensor::from_vec(values, (n, k), &Device::Cpu).expect("tensor");
    let q = QTensor::quantize(&t, dtype).expect("quantize");
    let bytes = q.data().expect("data").into_owned();
    let dense = q
        .dequantize(&Device::Cpu)
        .and_then(|t| t.flatten_all()?.to_vec1::<f32>())
        .expect("dequantize");
    (bytes, dense)
}
