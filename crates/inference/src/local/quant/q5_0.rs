//! Q5_0 weights against activations quantized to Q8_0 (as llama.cpp pairs them).
//!
//! A Q5_0 block holds 32 weights in 22 bytes: `d` (f16), `qh` (32 fifth bits, little-endian) and
//! 16 bytes of low nibbles (weight `j` in the low half of byte `j`, weight `j + 16` in its high
//! half); weight `j` is `d * ((nibble | bit << 4) - 16)`. Gemma 3 270M's Q4_K_M file keeps most
//! of its layers in Q5_0 (their rows, 640 wide, are not whole Q4_K blocks).
//!
//! Once a block is unpacked to 32 signed bytes the dot product is [`super::q8_0`]'s, float step
//! for float step (llama.cpp's `ggml_vec_dot_q5_0_q8_0` is its Q8_0 kernel after the same
//! unpacking).

use super::Kernel;
#[cfg(target_arch = "x86_64")]
use super::V3;
#[cfg(target_arch = "x86_64")]
use super::q8_0::dot_unpacked_avx2;
use super::q8_0::{Q8Block, dot_unpacked, quantize};

/// Weights per block.
pub const QK: usize = 32;
/// Bytes per block.
pub const BLOCK_BYTES: usize = 22;

/// A block's scale, fifth bits and nibbles.
#[inline(always)]
fn parts(block: &[u8; BLOCK_BYTES]) -> (f32, u32, &[u8; 16]) {
    let (d, rest) = block.split_at(2);
    let (qh, qs) = rest.split_at(4);
    let d = half::f16::from_le_bytes([d[0], d[1]]).to_f32();
    let qh = u32::from_le_bytes([qh[0], qh[1], qh[2], qh[3]]);
    (d, qh, qs.try_into().unwrap_or(&[0; 16]))
}

/// A block's 32 weights as signed bytes (-16..=15), before the scale.
#[inline(always)]
fn unpack(qh: u32, qs: &[u8; 16]) -> [i8; QK] {
    std::array::from_fn(|j| {
        let nibble = if j < 16 {
            qs[j] & 0x0f
        } else {
            qs[j - 16] >> 4
        };
        let high = ((qh >> j) & 1) as u8;
        (i16::from(nibble | (high << 4)) - 16) as i8
    })
}

/// `row · x` in plain Rust, with the same float steps as the AVX2 kernel.
pub fn dot_scalar(row: &[u8], x: &[Q8Block]) -> f32 {
    let (blocks, _) = row.as_chunks::<BLOCK_BYTES>();
    let blocks = blocks.iter().map(|block| {
        let (d, qh, qs) = parts(block);
        (d, unpack(qh, qs))
    });
    dot_unpacked(blocks, x)
}

/// A block's 32 weights as signed bytes, in AVX2: the nibbles spread to 32 bytes, and every
/// byte whose fifth bit is clear gets `0xf0` or-ed in (that is, 16 taken off).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn unpack_avx2(simd: V3, qh: u32, qs: &[u8; 16]) -> std::arch::x86_64::__m256i {
    use std::arch::x86_64::__m128i;
    let low_mask = simd.sse2._mm_set1_epi8(0x0f);
    let packed: __m128i = bytemuck::cast(*qs);
    let low = simd.sse2._mm_and_si128(packed, low_mask);
    let high = simd
        .sse2
        ._mm_and_si128(simd.sse2._mm_srli_epi16::<4>(packed), low_mask);
    let nibbles = simd.avx._mm256_set_m128i(high, low);
    // Byte j gets byte j / 8 of qh, then keeps only its own bit j % 8.
    let spread = simd.avx2._mm256_shuffle_epi8(
        simd.avx._mm256_set1_epi32(qh as i32),
        simd.avx._mm256_set_epi64x(
            0x0303_0303_0303_0303,
            0x0202_0202_0202_0202,
            0x0101_0101_0101_0101,
            0,
        ),
    );
    let bits = simd
        .avx
        ._mm256_set1_epi64x(0x8040_2010_0804_0201_u64 as i64);
    let set = simd
        .avx2
        ._mm256_cmpeq_epi8(simd.avx2._mm256_and_si256(spread, bits), bits);
    let minus16 = simd
        .avx2
        ._mm256_andnot_si256(set, simd.avx._mm256_set1_epi8(0xf0_u8 as i8));
    simd.avx2._mm256_or_si256(nibbles, minus16)
}

/// `row · x` for `T` activation rows at once in AVX2; the same bits as [`dot_scalar`].
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub fn dot_group_avx2<const T: usize>(simd: V3, row: &[u8], xs: [&[Q8Block]; T]) -> [f32; T] {
    let (blocks, _) = row.as_chunks::<BLOCK_BYTES>();
    let blocks = blocks.iter().map(|block| {
        let (d, qh, qs) = parts(block);
        (d, unpack_avx2(simd, qh, qs))
    });
    dot_unpacked_avx2(simd, blocks, xs)
}

/// Appends the weights of `row`'s blocks to `out`, as candle reads them (`q as f32 * d`).
pub fn dequantize(row: &[u8], out: &mut Vec<f32>) {
    let (blocks, _) = row.as_chunks::<BLOCK_BYTES>();
    out.reserve(blocks.len() * QK);
    for block in blocks {
        let (d, qh, qs) = parts(block);
        out.extend(unpack(qh, qs).iter().map(|q| f32::from(*q) * d));
    }
}

/// The Q5_0 kernels for [`super::matmul`].
#[derive(Debug, Clone, Copy)]
pub struct Q5_0;

impl Kernel for Q5_0 {
    type Act = Vec<Q8Block>;
    const BLOCK: usize = QK;
    const BLOCK_BYTES: usize = BLOCK_BYTES;
    const SUB: usize = QK;
    const SIGNED: bool = false;
    // Values 0..32: 4 · 2 · 31 · 127 < 2¹⁵.
    const ADD16: usize = 4;

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
        let Ok(block) = <&[u8; BLOCK_BYTES]>::try_from(block) else {
            return;
        };
        let (d, qh, qs) = parts(block);
        for (q, v) in q.iter_mut().zip(unpack(qh, qs)) {
            *q = (v + 16) as u8;
        }
        if let (Some(scale), Some(min)) = (scales.first_mut(), mins.first_mut()) {
            *scale = d;
            *min = 16.0 * d;
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
        super::super::test_weights(GgmlDType::Q5_0, n, k, seed)
    }

    #[test]
    fn dequantizing_reads_the_blocks_as_candle_does() {
        let (bytes, dense) = weights(3, 96, 1);
        assert_eq!(bytes.len(), 3 * 3 * BLOCK_BYTES);
        let mut out = Vec::new();
        dequantize(&bytes, &mut out);
        assert_eq!(out, dense);
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_avx2_unpacking_equals_the_plain_one() {
        let Some(simd) = V3::try_new() else {
            eprintln!("no AVX2 on this CPU: the scalar kernel is the only one");
            return;
        };
        let mut rng = fastrand::Rng::with_seed(9);
        let mut cases = vec![0, u32::MAX, 0x8000_0001, 0x5555_aaaa];
        cases.extend((0..200).map(|_| rng.u32(..)));
        for qh in cases {
            let qs: [u8; 16] = std::array::from_fn(|_| rng.u8(..));
            let got: [i8; QK] = bytemuck::cast(simd.vectorize(|| unpack_avx2(simd, qh, &qs)));
            assert_eq!(got, unpack(qh, &qs), "qh {qh:#x}");
        }
    }

    #[test]
    fn dot_products_equal_the_dequantized_ones_and_agree_to_the_bit() {
        super::super::check_dot_products::<Q5_0>(GgmlDType::Q5_0, 640, |x| {
            x.iter()
                .flat_map(|b| b.qs.iter().map(move |q| f64::from(*q) * f64::from(b.d)))
                .collect()
        });
    }

    #[test]
    fn matmul_agrees_with_the_dequantized_weights() {
        super::super::check_matmul::<Q5_0>(GgmlDType::Q5_0, (37, 640, 6), 4);
    }
}
