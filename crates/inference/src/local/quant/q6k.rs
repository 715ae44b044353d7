//! Q6_K weights against activations quantized to 8 bits per 256 ([`Q8Block`], as for Q4_K).
//!
//! A Q6_K block holds 256 weights in 210 bytes: `ql` (128 bytes of low nibbles), `qh` (64 bytes
//! of 2-bit high parts), sixteen signed 8-bit scales (one per 16 weights) and `d` (f16). Each
//! half of the block (128 weights) takes 64 bytes of `ql` and 32 of `qh`: weight `32k + b` of
//! the half (`k` in 0..4, `b` in 0..32) has its low nibble in `ql[b + 32·(k & 1)]` (low half of
//! the byte for `k < 2`, high half else), its top two bits at bit `2k` of `qh[b]`, and the
//! value `d · scale · (q − 32)`. Llama 3 Q4_K_M files keep their output matrix (the largest
//! tensor) and half of `attn_v` and `ffn_down` in Q6_K.
//!
//! The dot product follows llama.cpp's `ggml_vec_dot_q6_K_q8_K` (AVX2): the unsigned 6-bit
//! values meet the activations in `vpmaddubsw`, the pairs are weighed by their scales into eight
//! 32-bit lanes (exact); the offset comes off at the end of the block, lane `l` taking
//! `32 · Σ scale · Σa` of the 16-weight runs `2l` and `2l + 1`; then each block adds its lanes
//! into eight float lanes (`d · y.d`, fused), summed pairwise at the end. Which lane the offset
//! comes off decides the rounding, and so whether greedy decoding picks llama.cpp's tokens
//! (Gemma 3's "the most visited city", not "the most populous").

use super::Kernel;
#[cfg(target_arch = "x86_64")]
use super::V3;
use super::q4k::{Q8Block, quantize};
use super::q8_0::hsum8;

/// Weights per block.
pub const QK: usize = 256;
/// Bytes per Q6_K block.
pub const Q6K_BYTES: usize = 210;

/// One Q6_K block's parts: the low nibbles, the high bits, the scales (as bytes: the AVX2
/// kernel loads all sixteen at once) and `d`.
#[inline(always)]
fn parts(block: &[u8; Q6K_BYTES]) -> (&[u8; 128], &[u8; 64], &[u8; 16], f32) {
    let (ql, rest) = block.split_at(128);
    let (qh, rest) = rest.split_at(64);
    let (scales, d) = rest.split_at(16);
    let ql: &[u8; 128] = ql.try_into().unwrap_or(&[0; 128]);
    let qh: &[u8; 64] = qh.try_into().unwrap_or(&[0; 64]);
    let scales: &[u8; 16] = scales.try_into().unwrap_or(&[0; 16]);
    (
        ql,
        qh,
        scales,
        half::f16::from_le_bytes([d[0], d[1]]).to_f32(),
    )
}

/// The 6-bit value (0..64, before the offset of 32) of weight `32k + b` of half `h`.
#[inline(always)]
fn value(ql: &[u8; 128], qh: &[u8; 64], h: usize, k: usize, b: usize) -> u8 {
    let low = ql[64 * h + 32 * (k & 1) + b];
    let low = if k < 2 { low & 0x0f } else { low >> 4 };
    let high = (qh[32 * h + b] >> (2 * k)) & 3;
    low | high << 4
}

/// `row · x` in plain Rust, with the same float steps as the AVX2 kernel: lane `l` of a block
/// holds the scaled products of bytes `4l..4l + 4` of each of its eight 32-weight runs, less
/// the offset of 16-weight runs `2l` and `2l + 1`.
pub fn dot_scalar(row: &[u8], x: &[Q8Block]) -> f32 {
    let (blocks, _) = row.as_chunks::<Q6K_BYTES>();
    let mut acc = [0.0f32; 8];
    for (block, y) in blocks.iter().zip(x) {
        let (ql, qh, scales, d) = parts(block);
        let mut lanes = [0i32; 8];
        for h in 0..2 {
            for k in 0..4 {
                let ys = &y.qs[128 * h + 32 * k..][..32];
                for (lane, sum) in lanes.iter_mut().enumerate() {
                    let scale = i32::from(scales[8 * h + 2 * k + lane / 4] as i8);
                    let part: i32 = (4 * lane..4 * lane + 4)
                        .map(|b| i32::from(value(ql, qh, h, k, b)) * i32::from(ys[b]))
                        .sum();
                    *sum += scale * part;
                }
            }
        }
        for (lane, sum) in lanes.iter_mut().enumerate() {
            let offset: i32 = (2 * lane..2 * lane + 2)
                .map(|s| i32::from(scales[s] as i8) * i32::from(y.bsums[s]))
                .sum();
            *sum -= 32 * offset;
        }
        let scale = y.d * d;
        for (acc, lane) in acc.iter_mut().zip(lanes) {
            *acc = scale.mul_add(lane as f32, *acc);
        }
    }
    hsum8(acc)
}

/// `row · x` for `T` activation rows at once, in AVX2, with the same result as [`dot_scalar`]
/// to the bit. Each 32-weight run is unpacked once for all `T` rows.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub fn dot_group_avx2<const T: usize>(simd: V3, row: &[u8], xs: [&[Q8Block]; T]) -> [f32; T] {
    use std::arch::x86_64::{__m128i, __m256i};
    let (blocks, _) = row.as_chunks::<Q6K_BYTES>();
    let n_blocks = xs.iter().fold(blocks.len(), |n, x| n.min(x.len()));
    let low = simd.avx._mm256_set1_epi8(0x0f);
    let two_bits = simd.avx._mm256_set1_epi8(3);
    let mut acc = [simd.avx._mm256_setzero_ps(); T];
    for (b, block) in blocks.iter().take(n_blocks).enumerate() {
        let ys: [&Q8Block; T] = std::array::from_fn(|t| &xs[t][b]);
        let (ql, qh, scales, d) = parts(block);
        let (ql, _) = ql.as_chunks::<32>();
        let (qh, _) = qh.as_chunks::<32>();
        let scales: __m128i = bytemuck::cast(*scales);
        let mut sums = [simd.avx._mm256_setzero_si256(); T];
        for h in 0..2 {
            let high: __m256i = bytemuck::cast(qh[h]);
            for k in 0..4 {
                let nibbles: __m256i = bytemuck::cast(ql[2 * h + (k & 1)]);
                let nibbles = if k < 2 {
                    simd.avx2._mm256_and_si256(nibbles, low)
                } else {
                    simd.avx2
                        ._mm256_and_si256(simd.avx2._mm256_srli_epi16::<4>(nibbles), low)
                };
                let top = match k {
                    0 => high,
                    1 => simd.avx2._mm256_srli_epi16::<2>(high),
                    2 => simd.avx2._mm256_srli_epi16::<4>(high),
                    _ => simd.avx2._mm256_srli_epi16::<6>(high),
                };
                let top = simd
                    .avx2
                    ._mm256_slli_epi16::<4>(simd.avx2._mm256_and_si256(top, two_bits));
                let q = simd.avx2._mm256_or_si256(nibbles, top);
                // The run's two scales, each spread over the eight 16-bit pairs it weighs.
                let s = 8 * h + 2 * k;
                let pick = simd.sse2._mm_set_epi64x(
                    i64::from_le_bytes([(s + 1) as u8; 8]),
                    i64::from_le_bytes([s as u8; 8]),
                );
                let scale = simd
                    .avx2
                    ._mm256_cvtepi8_epi16(simd.ssse3._mm_shuffle_epi8(scales, pick));
                for (sum, y) in sums.iter_mut().zip(ys) {
                    let (y_qs, _) = y.qs.as_chunks::<32>();
                    let a: __m256i = bytemuck::cast(y_qs[4 * h + k]);
                    let pairs = simd.avx2._mm256_maddubs_epi16(q, a);
                    *sum = simd
                        .avx2
                        ._mm256_add_epi32(*sum, simd.avx2._mm256_madd_epi16(scale, pairs));
                }
            }
        }
        let scales16 = simd.avx2._mm256_cvtepi8_epi16(scales);
        for (sum, y) in sums.iter_mut().zip(ys) {
            let offset = simd
                .avx2
                ._mm256_madd_epi16(bytemuck::cast(y.bsums), scales16);
            *sum = simd
                .avx2
                ._mm256_sub_epi32(*sum, simd.avx2._mm256_slli_epi32::<5>(offset));
        }
        for ((acc, sum), y) in acc.iter_mut().zip(sums).zip(ys) {
            *acc = simd.fma._mm256_fmadd_ps(
                simd.avx._mm256_set1_ps(y.d * d),
                simd.avx._mm256_cvtepi32_ps(sum),
                *acc,
            );
        }
    }
    acc.map(|a| hsum8(bytemuck::cast(a)))
}

/// Appends the weights of `row`'s blocks to `out`, as candle's dequantization reads them
/// (`d · scale · (q − 32)`, in that order).
pub fn dequantize(row: &[u8], out: &mut Vec<f32>) {
    let (blocks, _) = row.as_chunks::<Q6K_BYTES>();
    out.reserve(blocks.len() * QK);
    for block in blocks {
        let (ql, qh, scales, d) = parts(block);
        for h in 0..2 {
            for k in 0..4 {
                out.extend((0..32).map(|b| {
                    let scale = f32::from(scales[8 * h + 2 * k + b / 16] as i8);
                    d * scale * f32::from(value(ql, qh, h, k, b) as i8 - 32)
                }));
            }
        }
    }
}

/// The Q6_K kernels for [`super::matmul`].
#[derive(Debug, Clone, Copy)]
pub struct Q6K;

impl Kernel for Q6K {
    type Act = Vec<Q8Block>;
    const BLOCK: usize = QK;
    const BLOCK_BYTES: usize = Q6K_BYTES;
    const SUB: usize = 16;
    const SIGNED: bool = false;
    // Values 0..64: 2 · 2 · 63 · 127 < 2¹⁵.
    const ADD16: usize = 2;
    const SUB16: bool = true;

    fn quantize(x: &[f32]) -> Vec<Q8Block> {
        quantize(x)
    }

    fn dot(row: &[u8], x: &Vec<Q8Block>) -> f32 {
        dot_scalar(row, x)
    }

    fn dequantize(row: &[u8], out: &mut Vec<f32>) {
        dequantize(row, out)
    }

    fn unpack(block: &[u8], q: &mut [u8], scales: &mut [f32], mins: &mut [f32]) {
        let Ok(block) = <&[u8; Q6K_BYTES]>::try_from(block) else {
            return;
        };
        let (ql, qh, sc, d) = parts(block);
        for (i, q) in q.iter_mut().enumerate().take(QK) {
            *q = value(ql, qh, i / 128, i % 128 / 32, i % 32);
        }
        for ((scale, min), s) in scales.iter_mut().zip(mins).zip(sc) {
            *scale = d * f32::from(*s as i8);
            *min = 32.0 * *scale;
        }
    }

    fn unpack_sub16(block: &[u8], q: &mut [u8], subs: &mut [i8]) -> Option<(f32, u8)> {
        let block = <&[u8; Q6K_BYTES]>::try_from(block).ok()?;
        let (ql, qh, sc, d) = parts(block);
        for (i, q) in q.iter_mut().enumerate().take(QK) {
            *q = value(ql, qh, i / 128, i % 128 / 32, i % 32);
        }
        for (sub, s) in subs.iter_mut().zip(sc) {
            *sub = *s as i8;
        }
        Some((d, 32))
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
        super::super::test_weights(GgmlDType::Q6K, n, k, seed)
    }

    #[test]
    fn dequantizing_reads_the_blocks_as_candle_does() {
        let (bytes, dense) = weights(3, 512, 1);
        assert_eq!(bytes.len(), 3 * 2 * Q6K_BYTES);
        let mut out = Vec::new();
        dequantize(&bytes, &mut out);
        assert_eq!(out, dense);
    }

    /// `value` against the format's own description, written out byte by byte: for weight
    /// `l` of a 128-weight half, `ql[l]`/`ql[l + 32]` low nibbles for `l < 64`, high nibbles
    /// after, and bits `2·(l / 32)` of `qh[l % 32]` on top.
    #[test]
    fn six_bit_values_unpack_as_the_format_says() {
        let mut rng = fastrand::Rng::with_seed(3);
        let ql: [u8; 128] = std::array::from_fn(|_| rng.u8(..));
        let qh: [u8; 64] = std::array::from_fn(|_| rng.u8(..));
        for h in 0..2 {
            for l in 0..128 {
                let byte = ql[64 * h + l % 64];
                let nibble = if l < 64 { byte & 15 } else { byte >> 4 };
                let top = (qh[32 * h + l % 32] >> (2 * (l / 32))) & 3;
                assert_eq!(
                    value(&ql, &qh, h, l / 32, l % 32),
                    nibble | top << 4,
                    "{h} {l}"
                );
            }
        }
    }

    /// The dot products equal the f64 dot product of the dequantized weights with the
    /// dequantized activations, up to f32 rounding; AVX2 and plain agree to the bit, one row
    /// or four at a time.
    #[test]
    fn dot_products_equal_the_dequantized_ones_and_agree_to_the_bit() {
        super::super::check_dot_products::<Q6K>(GgmlDType::Q6K, 2048, |x| {
            x.iter()
                .flat_map(|b| b.qs.iter().map(move |q| f64::from(*q) * f64::from(b.d)))
                .collect()
        });
    }

    /// Extreme blocks: every 6-bit value at 0 and at 63, scales at ±127/-128, activations at
    /// ±127: the 16-bit pairs stay within range (2 · 63 · 127 < 2¹⁵) and the offset is exact.
    #[test]
    fn extreme_blocks_do_not_saturate() {
        for (fill, scale, act) in [(0u8, -128i8, 127i8), (0xff, 127, -127), (0xff, -128, 127)] {
            let mut block = [fill; Q6K_BYTES];
            block[192..208].fill(scale as u8);
            block[208..210].copy_from_slice(&half::f16::from_f32(0.5).to_le_bytes());
            let x = vec![Q8Block {
                d: 1.0,
                qs: [act; QK],
                sums: [0; 8],
                bsums: [16 * i16::from(act); 16],
            }];
            let mut deq = Vec::new();
            dequantize(&block, &mut deq);
            let exact: f64 = deq.iter().map(|w| f64::from(*w) * f64::from(act)).sum();
            let scalar = dot_scalar(&block, &x);
            assert!(
                (f64::from(scalar) - exact).abs() <= exact.abs() * 1e-6,
                "{scalar} vs {exact}"
            );
            #[cfg(target_arch = "x86_64")]
            if let Some(simd) = V3::try_new() {
                let [avx] = dot_group_avx2(simd, &block, [&x[..]]);
                assert_eq!(avx.to_bits(), scalar.to_bits());
            }
        }
    }

    #[test]
    fn matmul_agrees_with_the_dequantized_weights() {
        super::super::check_matmul::<Q6K>(GgmlDType::Q6K, (37, 512, 7), 3);
    }
}
