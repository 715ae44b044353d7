//! Q4_K weights against activations quantized to 8 bits per 256 ([`Q8Block`], llama.cpp's Q8_K).
//!
//! A Q4_K block holds 256 weights in 144 bytes: `d` and `dmin` (f16), twelve bytes packing
//! eight 6-bit scales and eight 6-bit mins (one each per 32 weights), and 128 bytes of 4-bit
//! values. The 32 bytes `qs[32j..32j + 32]` carry weights `64j..64j + 32` in their low nibbles
//! and `64j + 32..64j + 64` in their high ones. Weight `i` of sub-block `s` is
//! `d * scale[s] * q[i] - dmin * min[s]`.

use super::Kernel;
#[cfg(target_arch = "x86_64")]
use super::V3;

/// Weights per block.
pub const QK: usize = 256;
/// Bytes per Q4_K block.
pub const Q4K_BYTES: usize = 144;

/// 256 activations as 8-bit values with one scale, and the sums of each 32 (for the mins; at
/// most 32 × 127 in magnitude).
#[derive(Debug, Clone)]
pub struct Q8Block {
    pub(super) d: f32,
    pub(super) qs: [i8; QK],
    pub(super) sums: [i16; 8],
    /// The sums of each 16 (llama.cpp's `bsums`, for Q6_K's offset).
    pub(super) bsums: [i16; 16],
}

/// Quantizes `x` (a multiple of 256 long) to one [`Q8Block`] per 256 values, as llama.cpp does
/// (`quantize_row_q8_K`): the value of largest magnitude maps to -127, the rest round to the
/// nearest step, ties to even. Matching it keeps greedy decoding token-for-token equal to
/// llama.cpp's where two logits are close.
pub fn quantize(x: &[f32]) -> Vec<Q8Block> {
    x.chunks_exact(QK)
        .map(|block| {
            let mut q = Q8Block {
                d: 0.0,
                qs: [0; QK],
                sums: [0; 8],
                bsums: [0; 16],
            };
            let (mut amax, mut max) = (0.0f32, 0.0f32);
            for v in block {
                if v.abs() > amax {
                    amax = v.abs();
                    max = *v;
                }
            }
            if amax > 0.0 && amax.is_finite() {
                let iscale = -127.0 / max;
                for (q, v) in q.qs.iter_mut().zip(block) {
                    *q = (iscale * v).round_ties_even().clamp(-127.0, 127.0) as i8;
                }
                q.d = 1.0 / iscale;
            }
            for (sum, part) in q.sums.iter_mut().zip(q.qs.chunks_exact(32)) {
                *sum = part.iter().map(|v| i16::from(*v)).sum();
            }
            for (sum, part) in q.bsums.iter_mut().zip(q.qs.chunks_exact(16)) {
                *sum = part.iter().map(|v| i16::from(*v)).sum();
            }
            q
        })
        .collect()
}

/// The eight 6-bit scales and mins of a block, from their 12 packed bytes: bytes 0–3 hold
/// scales 0–3 (low 6 bits) and the top bits of scales 4–7; bytes 4–7 likewise for the mins;
/// bytes 8–11 the low 4 bits of scales 4–7 (low nibbles) and of mins 4–7 (high nibbles).
/// Worked on four bytes at a time.
#[inline(always)]
fn scales_mins(packed: &[u8; 12]) -> ([u8; 8], [u8; 8]) {
    const LOW6: u32 = 0x3f3f_3f3f;
    const LOW4: u32 = 0x0f0f_0f0f;
    const LOW2: u32 = 0x0303_0303;
    let (a, rest) = packed.split_at(4);
    let (b, c) = rest.split_at(4);
    let word = |w: &[u8]| u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
    let (a, b, c) = (word(a), word(b), word(c));
    let scales_lo = a & LOW6;
    let mins_lo = b & LOW6;
    let scales_hi = (c & LOW4) | (((a >> 6) & LOW2) << 4);
    let mins_hi = ((c >> 4) & LOW4) | (((b >> 6) & LOW2) << 4);
    let join = |lo: u32, hi: u32| (u64::from(hi) << 32 | u64::from(lo)).to_le_bytes();
    (join(scales_lo, scales_hi), join(mins_lo, mins_hi))
}

/// One Q4_K block's parts: `d`, `dmin`, the packed scales and the 4-bit values.
#[inline(always)]
fn parts(block: &[u8; Q4K_BYTES]) -> (f32, f32, &[u8; 12], &[u8; 128]) {
    let (head, qs) = block.split_at(16);
    let d = half::f16::from_le_bytes([head[0], head[1]]).to_f32();
    let dmin = half::f16::from_le_bytes([head[2], head[3]]).to_f32();
    let packed: &[u8; 12] = head[4..16].try_into().unwrap_or(&[0; 12]);
    let qs: &[u8; 128] = qs.try_into().unwrap_or(&[0; 128]);
    (d, dmin, packed, qs)
}

/// `row · x` for one row of Q4_K blocks and the quantized activations, in plain Rust.
///
/// Each block's products are summed exactly in integers, weighed by its scales (`sum`) and its
/// mins (`mins`); the floating-point steps are then those of llama.cpp's AVX2 Q4_K kernels
/// (`ggml_gemv_q4_K_8x8_q8_K`): per block `acc += sum · (d · y.d)` and
/// `acc_mins += mins · (dmin · y.d)`, each fused, and `acc - acc_mins` at the end. Greedy
/// decoding then picks the same token as llama.cpp even where two logits differ in the last
/// bits (Gemma 3's "the most visited city", not "the most populous"), and the AVX2 kernel
/// below gives the same bits as this one.
pub fn dot_scalar(row: &[u8], x: &[Q8Block]) -> f32 {
    let (blocks, _) = row.as_chunks::<Q4K_BYTES>();
    let (mut acc, mut acc_mins) = (0.0f32, 0.0f32);
    for (block, y) in blocks.iter().zip(x) {
        let (d, dmin, packed, qs) = parts(block);
        let (scales, mins) = scales_mins(packed);
        let mut sum = 0i32;
        for j in 0..4 {
            let bytes = &qs[32 * j..32 * j + 32];
            let (lo, hi) = y.qs[64 * j..64 * j + 64].split_at(32);
            let dot_lo: i32 = bytes
                .iter()
                .zip(lo)
                .map(|(b, y)| i32::from(b & 0x0f) * i32::from(*y))
                .sum();
            let dot_hi: i32 = bytes
                .iter()
                .zip(hi)
                .map(|(b, y)| i32::from(b >> 4) * i32::from(*y))
                .sum();
            sum += dot_lo * i32::from(scales[2 * j]) + dot_hi * i32::from(scales[2 * j + 1]);
        }
        acc = (sum as f32).mul_add(d * y.d, acc);
        acc_mins = (mins_sum(&mins, &y.sums) as f32).mul_add(dmin * y.d, acc_mins);
    }
    acc - acc_mins
}

/// `Σ min[s] · sum[s]` over a block's eight sub-blocks.
#[inline(always)]
fn mins_sum(mins: &[u8; 8], sums: &[i16; 8]) -> i32 {
    mins.iter()
        .zip(sums)
        .map(|(m, s)| i32::from(*m) * i32::from(*s))
        .sum()
}

/// `row · x` for `T` activation rows at once, in AVX2, with the same result as [`dot_scalar`]
/// to the bit. Each block's weights are unpacked once for all `T` rows: prompt batches are
/// compute-bound, and the unpacking is a third of the work of one row. `vpmaddubsw` multiplies
/// the 4-bit weights (unsigned) by the 8-bit activations (signed) 32 at a time into 16-bit
/// pairs (at most 2 × 15 × 127: no saturation), and `vpmaddwd` weighs the pairs by their
/// sub-block's scale into 32-bit sums.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub fn dot_group_avx2<const T: usize>(simd: V3, row: &[u8], xs: [&[Q8Block]; T]) -> [f32; T] {
    use std::arch::x86_64::{__m128i, __m256i};
    let (blocks, _) = row.as_chunks::<Q4K_BYTES>();
    let n_blocks = xs.iter().fold(blocks.len(), |n, x| n.min(x.len()));
    let low = simd.avx._mm256_set1_epi8(0x0f);
    let mut acc = [0.0f32; T];
    let mut acc_mins = [0.0f32; T];
    for (b, block) in blocks.iter().take(n_blocks).enumerate() {
        let ys: [&Q8Block; T] = std::array::from_fn(|t| &xs[t][b]);
        let (d, dmin, packed, qs) = parts(block);
        let (scales, mins) = scales_mins(packed);
        let (qs, _) = qs.as_chunks::<32>();
        let mut sums = [simd.avx._mm256_setzero_si256(); T];
        for j in 0..4 {
            let q: __m256i = bytemuck::cast(qs[j]);
            let q_lo = simd.avx2._mm256_and_si256(q, low);
            let q_hi = simd
                .avx2
                ._mm256_and_si256(simd.avx2._mm256_srli_epi16::<4>(q), low);
            let s_lo = simd.avx._mm256_set1_epi16(i16::from(scales[2 * j]));
            let s_hi = simd.avx._mm256_set1_epi16(i16::from(scales[2 * j + 1]));
            for (sum, y) in sums.iter_mut().zip(ys) {
                let (y_qs, _) = y.qs.as_chunks::<32>();
                let y_lo: __m256i = bytemuck::cast(y_qs[2 * j]);
                let y_hi: __m256i = bytemuck::cast(y_qs[2 * j + 1]);
                let p_lo = simd.avx2._mm256_maddubs_epi16(q_lo, y_lo);
                let p_hi = simd.avx2._mm256_maddubs_epi16(q_hi, y_hi);
                *sum = simd.avx2._mm256_add_epi32(
                    *sum,
                    simd.avx2._mm256_add_epi32(
                        simd.avx2._mm256_madd_epi16(p_lo, s_lo),
                        simd.avx2._mm256_madd_epi16(p_hi, s_hi),
                    ),
                );
            }
        }
        // The block's totals, exact: Σ scale·dot and Σ min·sum per activation row (four rows'
        // sums at once where they come in fours).
        let mins: __m128i = bytemuck::cast(mins.map(i16::from));
        let mut t = 0;
        while t + 4 <= T {
            let four: [&Q8Block; 4] = std::array::from_fn(|i| ys[t + i]);
            let sum = hsum4_i32(simd, [sums[t], sums[t + 1], sums[t + 2], sums[t + 3]]);
            let min_sum = hsum4_i32_128(
                simd,
                four.map(|y| simd.sse2._mm_madd_epi16(mins, bytemuck::cast(y.sums))),
            );
            for (i, y) in four.iter().enumerate() {
                acc[t + i] = (sum[i] as f32).mul_add(d * y.d, acc[t + i]);
                acc_mins[t + i] = (min_sum[i] as f32).mul_add(dmin * y.d, acc_mins[t + i]);
            }
            t += 4;
        }
        for (t, y) in ys.iter().enumerate().skip(t) {
            let sum = hsum_i32(simd, sums[t]);
            let prod = simd.sse2._mm_madd_epi16(mins, bytemuck::cast(y.sums));
            let min_sum = hsum_i32_128(simd, prod);
            acc[t] = (sum as f32).mul_add(d * y.d, acc[t]);
            acc_mins[t] = (min_sum as f32).mul_add(dmin * y.d, acc_mins[t]);
        }
    }
    std::array::from_fn(|t| acc[t] - acc_mins[t])
}

/// The sums of the eight 32-bit lanes of four vectors, by pairwise adds across them.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn hsum4_i32(simd: V3, v: [std::arch::x86_64::__m256i; 4]) -> [i32; 4] {
    let ab = simd.avx2._mm256_hadd_epi32(v[0], v[1]);
    let cd = simd.avx2._mm256_hadd_epi32(v[2], v[3]);
    let abcd = simd.avx2._mm256_hadd_epi32(ab, cd);
    bytemuck::cast(simd.sse2._mm_add_epi32(
        simd.avx._mm256_castsi256_si128(abcd),
        simd.avx2._mm256_extracti128_si256::<1>(abcd),
    ))
}

/// The sums of the four 32-bit lanes of four vectors.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn hsum4_i32_128(simd: V3, v: [std::arch::x86_64::__m128i; 4]) -> [i32; 4] {
    let ab = simd.ssse3._mm_hadd_epi32(v[0], v[1]);
    let cd = simd.ssse3._mm_hadd_epi32(v[2], v[3]);
    bytemuck::cast(simd.ssse3._mm_hadd_epi32(ab, cd))
}

/// The sum of eight 32-bit lanes.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn hsum_i32(simd: V3, v: std::arch::x86_64::__m256i) -> i32 {
    let half = simd.sse2._mm_add_epi32(
        simd.avx._mm256_castsi256_si128(v),
        simd.avx2._mm256_extracti128_si256::<1>(v),
    );
    hsum_i32_128(simd, half)
}

/// The sum of four 32-bit lanes.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn hsum_i32_128(simd: V3, v: std::arch::x86_64::__m128i) -> i32 {
    let v = simd
        .sse2
        ._mm_add_epi32(v, simd.sse2._mm_shuffle_epi32::<0b01_00_11_10>(v));
    let v = simd
        .sse2
        ._mm_add_epi32(v, simd.sse2._mm_shuffle_epi32::<0b10_11_00_01>(v));
    simd.sse2._mm_cvtsi128_si32(v)
}

/// Appends the weights of `row`'s blocks to `out`, as candle's dequantization reads them (the
/// same float steps, so an embedding lookup gives the same bits either way).
pub fn dequantize(row: &[u8], out: &mut Vec<f32>) {
    let (blocks, _) = row.as_chunks::<Q4K_BYTES>();
    out.reserve(blocks.len() * QK);
    for block in blocks {
        let (d, dmin, packed, qs) = parts(block);
        let (scales, mins) = scales_mins(packed);
        for j in 0..4 {
            let bytes = &qs[32 * j..32 * j + 32];
            for (s, shift) in [(2 * j, 0), (2 * j + 1, 4)] {
                let (scale, min) = (d * f32::from(scales[s]), dmin * f32::from(mins[s]));
                out.extend(
                    bytes
                        .iter()
                        .map(|b| scale * f32::from((b >> shift) & 0x0f) - min),
                );
            }
        }
    }
}

/// The Q4_K kernels for [`super::matmul`].
#[derive(Debug, Clone, Copy)]
pub struct Q4K;

impl Kernel for Q4K {
    type Act = Vec<Q8Block>;
    const BLOCK: usize = QK;
    const BLOCK_BYTES: usize = Q4K_BYTES;
    const SUB: usize = 32;
    const SIGNED: bool = false;
    // Values 0..16: 8 · 2 · 15 · 127 < 2¹⁵.
    const ADD16: usize = 8;

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
        let Ok(block) = <&[u8; Q4K_BYTES]>::try_from(block) else {
            return;
        };
        let (d, dmin, packed, qs) = parts(block);
        let (sc, mn) = scales_mins(packed);
        for (q, bytes) in q.chunks_exact_mut(64).zip(qs.chunks_exact(32)) {
            let (lo, hi) = q.split_at_mut(32);
            for ((lo, hi), b) in lo.iter_mut().zip(hi).zip(bytes) {
                *lo = b & 0x0f;
                *hi = b >> 4;
            }
        }
        for ((scale, min), (s, m)) in scales.iter_mut().zip(mins).zip(sc.iter().zip(mn)) {
            *scale = d * f32::from(*s);
            *min = dmin * f32::from(m);
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
        super::super::test_weights(GgmlDType::Q4K, n, k, seed)
    }

    /// The weights of `row` (whole Q4_K blocks) as f32: the block layout read on its own, the
    /// way the format describes it.
    #[cfg(target_arch = "x86_64")]
    fn dot_avx2(simd: V3, row: &[u8], x: &[Q8Block]) -> f32 {
        let [out] = dot_group_avx2(simd, row, [x]);
        out
    }

    #[test]
    fn dequantizing_reads_the_blocks_as_candle_does() {
        let (bytes, dense) = weights(3, 512, 1);
        assert_eq!(bytes.len(), 3 * 2 * Q4K_BYTES);
        let mut out = Vec::new();
        dequantize(&bytes, &mut out);
        assert_eq!(out, dense);
    }

    /// The packed scales and mins read four bytes at a time equal the byte-by-byte reading.
    #[test]
    fn scales_and_mins_unpack_as_the_format_says() {
        let mut rng = fastrand::Rng::with_seed(8);
        for _ in 0..1000 {
            let packed: [u8; 12] = std::array::from_fn(|_| rng.u8(..));
            let (scales, mins) = scales_mins(&packed);
            for j in 0..4 {
                assert_eq!(scales[j], packed[j] & 63);
                assert_eq!(mins[j], packed[j + 4] & 63);
                assert_eq!(
                    scales[j + 4],
                    (packed[j + 8] & 0x0f) | ((packed[j] >> 6) << 4)
                );
                assert_eq!(
                    mins[j + 4],
                    (packed[j + 8] >> 4) | ((packed[j + 4] >> 6) << 4)
                );
            }
        }
    }

    #[test]
    fn quantized_activations_round_trip_within_half_a_step() {
        let x: Vec<f32> = (0..512).map(|i| ((i as f32) * 0.37).sin() * 3.0).collect();
        let q = quantize(&x);
        assert_eq!(q.len(), 2);
        for (block, values) in q.iter().zip(x.chunks_exact(QK)) {
            for (q, v) in block.qs.iter().zip(values) {
                assert!((f32::from(*q) * block.d - v).abs() <= block.d.abs() / 2.0 + 1e-6);
            }
            let sums: Vec<i16> = block
                .qs
                .chunks_exact(32)
                .map(|c| c.iter().map(|v| i16::from(*v)).sum())
                .collect();
            assert_eq!(block.sums.as_slice(), sums);
        }
        let zeros = quantize(&[0.0; QK]);
        assert_eq!(zeros[0].d, 0.0);
        assert!(zeros[0].qs.iter().all(|q| *q == 0));
    }

    /// The dot products equal the f64 dot product of the dequantized weights with the
    /// dequantized activations, up to f32 rounding.
    #[test]
    fn dot_products_equal_the_dequantized_ones() {
        let k = 2048;
        let (bytes, dense) = weights(4, k, 2);
        let mut rng = fastrand::Rng::with_seed(9);
        let x: Vec<f32> = (0..k).map(|_| rng.f32() * 4.0 - 2.0).collect();
        let xq = quantize(&x);
        let x_deq: Vec<f64> = xq
            .iter()
            .flat_map(|b| b.qs.iter().map(move |q| f64::from(*q) * f64::from(b.d)))
            .collect();
        let row_bytes = k / QK * Q4K_BYTES;
        for r in 0..4 {
            let row = &bytes[r * row_bytes..(r + 1) * row_bytes];
            let exact: f64 = dense[r * k..(r + 1) * k]
                .iter()
                .zip(&x_deq)
                .map(|(w, x)| f64::from(*w) * x)
                .sum();
            let scalar = dot_scalar(row, &xq);
            assert!(
                (f64::from(scalar) - exact).abs() < 1e-3,
                "{scalar} vs {exact}"
            );
            #[cfg(target_arch = "x86_64")]
            if let Some(simd) = V3::try_new() {
                assert_eq!(dot_avx2(simd, row, &xq).to_bits(), scalar.to_bits());
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_grouped_kernel_equals_one_row_at_a_time() {
        let Some(simd) = V3::try_new() else {
            eprintln!("no AVX2 on this CPU: only the plain kernel runs");
            return;
        };
        let k = 1024;
        let (bytes, _) = weights(1, k, 5);
        let mut rng = fastrand::Rng::with_seed(6);
        let xs: Vec<Vec<Q8Block>> = (0..4)
            .map(|_| quantize(&(0..k).map(|_| rng.f32() * 2.0 - 1.0).collect::<Vec<_>>()))
            .collect();
        let grouped = dot_group_avx2(simd, &bytes, [&xs[0][..], &xs[1], &xs[2], &xs[3]]);
        for (x, got) in xs.iter().zip(grouped) {
            assert_eq!(got, dot_avx2(simd, &bytes, x));
        }
    }

    /// The whole product against candle's own Q4_K matmul on the same weights (which quantizes
    /// the activations to 8 bits too, so the two agree to the activations' rounding).
    #[test]
    fn matmul_agrees_with_candle() {
        super::super::check_matmul::<Q4K>(GgmlDType::Q4K, (40, 512, 7), 3);
    }
}
