//! Matrix products over quantized weights in the form the GGUF file stores them.
//!
//! candle 0.11 multiplies Q4_K on x86 through tiles it repacks each matrix into on first use
//! (f32 scales, 6 bits a weight instead of 4.5) and keeps beside the original: a third more bytes
//! read per decoded token and a third more memory resident. For Q8_0 it has no batched kernel on
//! AVX2. Here the activations are quantized to 8 bits per block (as llama.cpp does for the same
//! weight type) and:
//!
//! - one token, and batches shorter than [`tiled::MIN_ROWS`], take a dot product per output
//!   over the file's own blocks, with llama.cpp's floating-point steps (its `ggml_vec_dot_*`),
//!   so that greedy decoding picks the tokens llama.cpp picks even where two logits differ in
//!   the last bits; weight rows are shared out over candle's kernel threads, in tiles of `TILE`
//!   rows run against every activation row, `GROUP` activation rows at a time;
//! - longer prompt batches (AVX2 or AVX-512) go through [`tiled`]: eight weight rows at a time
//!   are unpacked to bytes and interleaved in a per-thread buffer (two such tiles side by side
//!   in AVX-512), and met by every activation row;
//!   these results agree with the dot products to rounding, not to the bit;
//! - AVX2 runs through `pulp`'s safe intrinsics behind a run-time check (no `unsafe` in this
//!   crate), else plain Rust; the dot-product kernels' two versions give the same bits.
//!
//! [`q4k`]: Q4_K (most of a Q4_K_M file); [`q6k`]: Q6_K (a Llama Q4_K_M file's output matrix
//! and half of its `attn_v` and `ffn_down`); [`q5_0`]: Q5_0 (where rows are not whole Q4_K
//! blocks, as in Gemma 3 270M); [`q8_0`]: Q8_0.

pub mod q4k;
pub mod q5_0;
pub mod q6k;
pub mod q8_0;
#[cfg(target_arch = "x86_64")]
pub mod tiled;

use std::sync::atomic::{AtomicU32, Ordering};

#[cfg(target_arch = "x86_64")]
pub use pulp::x86::{V3, V4};

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
    /// Weights per run that shares one scale (and min), as [`Self::unpack`] gives them: 16
    /// or 32.
    const SUB: usize;
    /// Whether [`Self::unpack`] gives signed values and no mins (else unsigned values and a
    /// min per run).
    const SIGNED: bool;
    /// How many `vpmaddubsw` results of [`Self::unpack`]'s values (against activations within
    /// ±127) sum within 16 bits: `ADD16 · 2 · max|q| · 127 < 2¹⁵`.
    const ADD16: usize;
    /// Quantizes one activation row (a multiple of [`Self::BLOCK`] long).
    fn quantize(x: &[f32]) -> Self::Act;
    /// `row · x` in plain Rust.
    fn dot(row: &[u8], x: &Self::Act) -> f32;
    /// Appends the weights of `row` (whole blocks) to `out`, bit for bit as candle reads them.
    fn dequantize(row: &[u8], out: &mut Vec<f32>);
    /// One block (`BLOCK_BYTES` long) as `BLOCK` values `q` (the bits of an `i8` where
    /// [`Self::SIGNED`], else unsigned), and per run of [`Self::SUB`] its scale and min (left
    /// alone where signed): weight `i` is `scale · q[i] − min`.
    fn unpack(block: &[u8], q: &mut [u8], scales: &mut [f32], mins: &mut [f32]);
    /// Whether each 16 weights carry an 8-bit integer scale under one float scale per block,
    /// with a fixed offset (Q6_K: `d · scale · (q − 32)`); such types implement
    /// [`Self::unpack_sub16`].
    const SUB16: bool = false;
    /// For [`Self::SUB16`] types: one block as unsigned values `q` and its integer scales
    /// (`BLOCK / 16`), returning the float scale and the offset. `None` for other types.
    fn unpack_sub16(_block: &[u8], _q: &mut [u8], _subs: &mut [i8]) -> Option<(f32, u8)> {
        None
    }
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
    #[cfg(target_arch = "x86_64")]
    if m >= tiled::MIN_ROWS && tiled::fits::<K>() {
        if let Some(simd) = V4::try_new() {
            return tiled::matmul_avx512::<K>(simd, w, n, k, x, m);
        }
        if let Some(simd) = V3::try_new() {
            return tiled::matmul::<K>(simd, w, n, k, x, m);
        }
    }
    dot_matmul::<K>(w, n, k, x, m)
}

/// [`matmul`] through the dot-product kernels whatever `m` is (llama.cpp's floating-point
/// steps for every output).
pub fn dot_matmul<K: Kernel>(w: &[u8], n: usize, k: usize, x: &[f32], m: usize) -> Vec<f32> {
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

/// `K`'s dot products on three random rows of `k` weights and four activation rows: within 1e-3
/// of the f64 product of the dequantized weights with the dequantized activations
/// (`act_values`), and in AVX2, one activation row or four at a time, the plain kernel's bits.
#[cfg(test)]
fn check_dot_products<K: Kernel>(
    dtype: candle_core::quantized::GgmlDType,
    k: usize,
    act_values: impl Fn(&K::Act) -> Vec<f64>,
) {
    let (bytes, dense) = test_weights(dtype, 3, k, 1);
    let mut rng = fastrand::Rng::with_seed(2);
    let xs: Vec<K::Act> = (0..4)
        .map(|_| K::quantize(&(0..k).map(|_| rng.f32() * 4.0 - 2.0).collect::<Vec<_>>()))
        .collect();
    let row_bytes = k / K::BLOCK * K::BLOCK_BYTES;
    for (r, row) in bytes.chunks_exact(row_bytes).enumerate() {
        for x in &xs {
            let exact: f64 = dense[r * k..(r + 1) * k]
                .iter()
                .zip(act_values(x))
                .map(|(w, x)| f64::from(*w) * x)
                .sum();
            let scalar = K::dot(row, x);
            assert!(
                (f64::from(scalar) - exact).abs() < 1e-3,
                "{dtype:?} row {r}: {scalar} vs {exact}"
            );
            #[cfg(target_arch = "x86_64")]
            if let Some(simd) = V3::try_new() {
                let [one] = simd.vectorize(|| K::dot_simd(simd, row, [x]));
                assert_eq!(one.to_bits(), scalar.to_bits(), "{dtype:?} row {r}");
            }
        }
        #[cfg(target_arch = "x86_64")]
        if let Some(simd) = V3::try_new() {
            let four = simd.vectorize(|| K::dot_simd(simd, row, [&xs[0], &xs[1], &xs[2], &xs[3]]));
            for (x, got) in xs.iter().zip(four) {
                assert_eq!(got.to_bits(), K::dot(row, x).to_bits(), "{dtype:?} row {r}");
            }
        }
    }
}

/// [`matmul`] of `m` random activation rows by a random `n × k` matrix of `K`'s type (random
/// from `seed`): every output within 0.05 of the f32 product with the dequantized weights.
#[cfg(test)]
fn check_matmul<K: Kernel>(
    dtype: candle_core::quantized::GgmlDType,
    (n, k, m): (usize, usize, usize),
    seed: u64,
) {
    let (bytes, dense) = test_weights(dtype, n, k, seed);
    let mut rng = fastrand::Rng::with_seed(seed + 1);
    let x: Vec<f32> = (0..m * k).map(|_| rng.f32() - 0.5).collect();
    let ours = matmul::<K>(&bytes, n, k, &x, m);
    assert_eq!(ours.len(), m * n);
    for t in 0..m {
        for r in 0..n {
            let exact: f32 = dense[r * k..(r + 1) * k]
                .iter()
                .zip(&x[t * k..(t + 1) * k])
                .map(|(w, x)| w * x)
                .sum();
            let got = ours[t * n + r];
            assert!(
                (got - exact).abs() < 0.05,
                "{dtype:?} [{t}, {r}]: {got} vs {exact}"
            );
        }
    }
}
