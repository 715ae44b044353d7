//! Q8_0 weights against activations quantized the same way.
//!
//! A Q8_0 block holds 32 weights in 34 bytes: `d` (f16) and 32 signed bytes; weight `i` is
//! `d * q[i]`. The activations are quantized as llama.cpp's `quantize_row_q8_0` does (the scale
//! `max|x| / 127` kept as f16, values rounded to nearest, ties to even), and the dot product
//! follows `ggml_vec_dot_q8_0_q8_0` (AVX2): per block, eight lanes of four products each, weighed
//! by the two scales into eight float lanes, summed pairwise at the end.

use super::Kernel;
#[cfg(target_arch = "x86_64")]
use super::V3;

/// Weights per block.
pub const QK: usize = 32;
/// Bytes per block.
pub const BLOCK_BYTES: usize = 34;

/// 32 activations as 8-bit values (within ±127) and their scale (as f16, widened).
#[derive(Debug, Clone)]
pub struct Q8Block {
    pub(super) d: f32,
    pub(super) qs: [i8; QK],
}

/// Quantizes `x` (a multiple of 32 long) to one [`Q8Block`] per 32 values.
pub fn quantize(x: &[f32]) -> Vec<Q8Block> {
    x.chunks_exact(QK)
        .map(|block| {
            let amax = block.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
            let mut qs = [0i8; QK];
            for (q, v) in qs.iter_mut().zip(block) {
                *q = (v * id).round_ties_even().clamp(-127.0, 127.0) as i8;
            }
            Q8Block {
                d: half::f16::from_f32(amax / 127.0).to_f32(),
                qs,
            }
        })
        .collect()
}

/// A block's scale and values.
#[inline(always)]
fn parts(block: &[u8; BLOCK_BYTES]) -> (f32, &[u8; QK]) {
    let (d, qs) = block.split_at(2);
    let d = half::f16::from_le_bytes([d[0], d[1]]).to_f32();
    (d, qs.try_into().unwrap_or(&[0; QK]))
}

/// The sum of eight float lanes in llama.cpp's order (`hsum_float_8`).
#[inline(always)]
pub(super) fn hsum8(a: [f32; 8]) -> f32 {
    ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7]))
}

/// `row · x` in plain Rust, with the same float steps as the AVX2 kernel.
pub fn dot_scalar(row: &[u8], x: &[Q8Block]) -> f32 {
    let (blocks, _) = row.as_chunks::<BLOCK_BYTES>();
    let blocks = blocks.iter().map(|block| {
        let (d, qs) = parts(block);
        (d, qs.map(|q| q as i8))
    });
    dot_unpacked(blocks, x)
}

/// `row · x` for `T` activation rows at once in AVX2; the same bits as [`dot_scalar`].
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub fn dot_group_avx2<const T: usize>(simd: V3, row: &[u8], xs: [&[Q8Block]; T]) -> [f32; T] {
    let (blocks, _) = row.as_chunks::<BLOCK_BYTES>();
    let blocks = blocks.iter().map(|block| {
        let (d, qs) = parts(block);
        (d, bytemuck::cast(*qs))
    });
    dot_unpacked_avx2(simd, blocks, xs)
}

/// The dot product of a weight row, given block by block as a scale and 32 signed weights, with
/// Q8_0 activations: per block, eight lanes of four products each, weighed by the two scales;
/// the lanes summed as llama.cpp's `hsum_float_8` does. Q8_0 and Q5_0 differ only in how a
/// block unpacks.
#[inline(always)]
pub(super) fn dot_unpacked(blocks: impl Iterator<Item = (f32, [i8; QK])>, x: &[Q8Block]) -> f32 {
    let mut acc = [0.0f32; 8];
    for ((d, w), y) in blocks.zip(x) {
        let scale = d * y.d;
        for (lane, (w, a)) in acc
            .iter_mut()
            .zip(w.chunks_exact(4).zip(y.qs.chunks_exact(4)))
        {
            let sum: i32 = w
                .iter()
                .zip(a)
                .map(|(w, a)| i32::from(*w) * i32::from(*a))
                .sum();
            *lane = scale.mul_add(sum as f32, *lane);
        }
    }
    hsum8(acc)
}

/// [`dot_unpacked`] for `T` activation rows at once in AVX2 (the same bits), each block's
/// weights unpacked once for all of them. `vpmaddubsw` needs one operand unsigned: `|w|` meets
/// `a` with `w`'s sign moved onto it.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(super) fn dot_unpacked_avx2<const T: usize>(
    simd: V3,
    blocks: impl Iterator<Item = (f32, std::arch::x86_64::__m256i)>,
    xs: [&[Q8Block]; T],
) -> [f32; T] {
    use std::arch::x86_64::__m256i;
    let n_blocks = xs.iter().map(|x| x.len()).min().unwrap_or(0);
    let ones = simd.avx._mm256_set1_epi16(1);
    let mut acc = [simd.avx._mm256_setzero_ps(); T];
    for (b, (d, w)) in blocks.take(n_blocks).enumerate() {
        let w_abs = simd.avx2._mm256_sign_epi8(w, w);
        for (acc, x) in acc.iter_mut().zip(xs) {
            let y = &x[b];
            let a: __m256i = bytemuck::cast(y.qs);
            let pairs = simd
                .avx2
                ._mm256_maddubs_epi16(w_abs, simd.avx2._mm256_sign_epi8(a, w));
            let sums = simd
                .avx
                ._mm256_cvtepi32_ps(simd.avx2._mm256_madd_epi16(ones, pairs));
            *acc = simd
                .fma
                ._mm256_fmadd_ps(simd.avx._mm256_set1_ps(d * y.d), sums, *acc);
        }
    }
    acc.map(|a| hsum8(bytemuck::cast(a)))
}

/// Appends the weights of `row`'s blocks to `out` (`d * q`, as candle reads them).
pub fn dequantize(row: &[u8], out: &mut Vec<f32>) {
    let (blocks, _) = row.as_chunks::<BLOCK_BYTES>();
    out.reserve(blocks.len() * QK);
    for block in blocks {
        let (d, qs) = parts(block);
        out.extend(qs.iter().map(|q| d * f32::from(*q as i8)));
    }
}

/// The Q8_0 kernels for [`super::matmul`].
#[derive(Debug, Clone, Copy)]
pub struct Q8_0;

impl Kernel for Q8_0 {
    type Act = Vec<Q8Block>;
    const BLOCK: usize = QK;
    const BLOCK_BYTES: usize = BLOCK_BYTES;
    const SUB: usize = QK;
    const SIGNED: bool = true;
    // 2 · 128 · 127 < 2¹⁵ once; two would overflow.
    const ADD16: usize = 1;

    fn quantize(x: &[f32]) -> Vec<Q8Block> {
        quantize(x)
    }

    fn dot(row: &[u8], x: &Vec<Q8Block>) -> f32 {
        dot_scalar(row, x)
    }

    fn dequantize(row: &[u8], out: &mut Vec<f32>) {
        dequantize(row, out)
    }

    fn unpack(block: &[u8], q: &mut [u8], scales: &mut [f32], _: &mut [f32]) {
        let Ok(block) = <&[u8; BLOCK_BYTES]>::try_from(block) else {
            return;
        };
        let (d, qs) = parts(block);
        q.copy_from_slice(qs);
        if let Some(scale) = scales.first_mut() {
            *scale = d;
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    fn dot_simd<const T: usize>(simd: V3, row: &[u8], xs: [&Vec<Q8Block>; T]) -> [f32; T] {
        dot_group_avx2(simd, row, xs.map(|x| x.as_slice()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::GgmlDType;

    fn weights(n: usize, k: usize, seed: u64) -> (Vec<u8>, Vec<f32>) {
        super::super::test_weights(GgmlDType::Q8_0, n, k, seed)
    }

    #[test]
    fn dequantizing_reads_the_blocks_as_candle_does() {
        let (bytes, dense) = weights(3, 96, 1);
        let mut out = Vec::new();
        dequantize(&bytes, &mut out);
        assert_eq!(out, dense);
    }

    #[test]
    fn activations_round_trip_within_half_a_step() {
        let x: Vec<f32> = (0..64).map(|i| ((i as f32) * 0.7).cos() * 5.0).collect();
        for (block, values) in quantize(&x).iter().zip(x.chunks_exact(QK)) {
            for (q, v) in block.qs.iter().zip(values) {
                assert!((f32::from(*q) * block.d - v).abs() <= block.d * 0.51);
            }
        }
        assert!(quantize(&[0.0; QK])[0].qs.iter().all(|q| *q == 0));
    }

    #[test]
    fn dot_products_equal_the_dequantized_ones_and_agree_to_the_bit() {
        super::super::check_dot_products::<Q8_0>(GgmlDType::Q8_0, 1024, |x| {
            x.iter()
                .flat_map(|b| b.qs.iter().map(move |q| f64::from(*q) * f64::from(b.d)))
                .collect()
        });
    }

    #[test]
    fn matmul_agrees_with_the_dequantized_weights() {
        super::super::check_matmul::<Q8_0>(GgmlDType::Q8_0, (33, 256, 6), 3);
    }
}
