//! `exp`, GELU, SiLU and softmax for whole slices, in arithmetic the compiler turns into AVX2 (the
//! C library's `expf`, `tanhf` and `erff` are called one value at a time).

use std::f32::consts::{FRAC_1_SQRT_2, LN_2, LOG2_E};

/// `e^r`'s Taylor coefficients to r⁷ (the remainder is below 5e-9 relative for |r| ≤ 0.35).
const EXP_TAYLOR: [f32; 8] = [
    1.0,
    1.0,
    1.0 / 2.0,
    1.0 / 6.0,
    1.0 / 24.0,
    1.0 / 120.0,
    1.0 / 720.0,
    1.0 / 5040.0,
];

/// Numerical Recipes' Chebyshev fit for `erfcc`, constant term first.
const ERFC_FIT: [f32; 10] = [
    -1.265_512_2,
    1.000_023_7,
    0.374_091_96,
    0.096_784_18,
    -0.186_288_06,
    0.278_868_07,
    -1.135_204,
    1.488_515_9,
    -0.822_152_23,
    0.170_872_77,
];

/// `c[0] + x·(c[1] + x·(…))` in fused multiply-adds.
#[inline(always)]
fn horner<const N: usize>(x: f32, c: &[f32; N]) -> f32 {
    c.iter().rev().fold(0.0, |acc, &c| acc.mul_add(x, c))
}

/// `e^x` within a few ulp (4e-7 relative) for `x` in [-87, 88] (inputs beyond are clamped).
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    // e^x = 2^n · e^r with n = round(x / ln 2), |r| ≤ ln 2 / 2; ln 2 split in two so that
    // `n · LN2_HI` is exact.
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = LN_2 - LN2_HI;
    let x = x.clamp(-87.0, 88.0);
    let n = (x * LOG2_E + 0.5).floor();
    let r = (-n).mul_add(LN2_LO, (-n).mul_add(LN2_HI, x));
    let p = horner(r, &EXP_TAYLOR);
    // n is within [-126, 127], so 2^n is a normal float built from its exponent bits.
    p * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

/// The sum of `v` in eight lanes (so that it vectorizes).
pub(crate) fn sum(v: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let mut chunks = v.chunks_exact(8);
    for chunk in chunks.by_ref() {
        for (s, x) in lanes.iter_mut().zip(chunk) {
            *s += x;
        }
    }
    lanes.iter().sum::<f32>() + chunks.remainder().iter().sum::<f32>()
}

/// `a · b` in eight lanes.
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let (a8, a_tail) = a.as_chunks::<8>();
    let (b8, b_tail) = b.as_chunks::<8>();
    for (x, y) in a8.iter().zip(b8) {
        for ((s, x), y) in lanes.iter_mut().zip(x).zip(y) {
            *s += x * y;
        }
    }
    let tail: f32 = a_tail.iter().zip(b_tail).map(|(x, y)| x * y).sum();
    lanes.iter().sum::<f32>() + tail
}

/// `erfc(z)` for `z ≥ 0`, within 1.2e-7 relative (the Chebyshev fit of Numerical Recipes'
/// `erfcc`).
#[inline(always)]
fn erfc_nonneg(z: f32) -> f32 {
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = horner(t, &ERFC_FIT);
    t * exp((-z).mul_add(z, poly))
}

/// GELU with the exact normal CDF, `x · Φ(x)`, for every value of `v`, in place.
pub(crate) fn gelu_erf_in_place(v: &mut [f32]) {
    for x in v {
        let tail = 0.5 * erfc_nonneg(x.abs() * FRAC_1_SQRT_2); // Φ(-|x|)
        let cdf = if *x >= 0.0 { 1.0 - tail } else { tail };
        *x *= cdf;
    }
}

/// GELU's tanh approximation (`"gelu_new"`, `gelu_pytorch_tanh`).
#[inline(always)]
pub(crate) fn gelu_tanh(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    let u = SQRT_2_OVER_PI * (x + 0.044_715 * x * x * x);
    // 0.5 · (1 + tanh u) = 1 / (1 + e^(-2u))
    x / (1.0 + exp(-2.0 * u))
}

/// [`gelu_tanh`] as llama.cpp's CPU backend computes it, one value at a time: the tests' twin of
/// [`gate_gelu_f16_in_place`].
#[cfg(test)]
fn gelu_tanh_f16(x: f32) -> f32 {
    use half::f16;
    if x <= -10.0 {
        0.0
    } else if x >= 10.0 {
        x
    } else {
        f16::from_f32(gelu_tanh(f16::from_f32(x).to_f32())).to_f32()
    }
}

/// [`gate_in_place`] with GELU as llama.cpp's CPU backend computes it (its `GGML_GELU_FP16`
/// table): [`gelu_tanh`] at the input rounded to f16, the result rounded to f16; 0 at or below
/// -10, `x` at or above 10. Gemma 3's greedy tokens follow llama.cpp's only with these roundings
/// (its golden test has two candidates a rounding apart). The roundings are done a block at a
/// time by half's vectorized slice conversions (F16C) and the clamps are selects, so that the
/// whole pass vectorizes.
pub(crate) fn gate_gelu_f16_in_place(gate: &mut [f32], up: &[f32]) {
    use half::slice::HalfFloatSliceExt;
    const BLOCK: usize = 256;
    let mut halves = [half::f16::ZERO; BLOCK];
    let mut x = [0f32; BLOCK];
    for (g, u) in gate.chunks_mut(BLOCK).zip(up.chunks(BLOCK)) {
        let (halves, x) = (&mut halves[..g.len()], &mut x[..g.len()]);
        halves.convert_from_f32_slice(g);
        halves.convert_to_f32_slice(x);
        for (x, g) in x.iter_mut().zip(g.iter()) {
            let y = gelu_tanh(*x);
            *x = if *g <= -10.0 { 0.0 } else { y };
        }
        halves.convert_from_f32_slice(x);
        halves.convert_to_f32_slice(x);
        for ((g, y), u) in g.iter_mut().zip(x.iter()).zip(u) {
            *g = if *g >= 10.0 { *g } else { *y } * u;
        }
    }
}

/// SiLU, `x · σ(x)`.
#[inline(always)]
pub(crate) fn silu(x: f32) -> f32 {
    x / (1.0 + exp(-x))
}

/// [`gelu_tanh`] for every value of `v`, in place.
pub(crate) fn gelu_tanh_in_place(v: &mut [f32]) {
    for x in v {
        *x = gelu_tanh(*x);
    }
}

/// A gated unit's activation in place: `gate[i] = act(gate[i]) · up[i]`.
#[inline(always)]
pub(crate) fn gate_in_place(gate: &mut [f32], up: &[f32], act: impl Fn(f32) -> f32) {
    for (g, u) in gate.iter_mut().zip(up) {
        *g = act(*g) * u;
    }
}

/// `softmax(v)` in place: `e^(v - max)`, normalized to sum 1.
pub(crate) fn softmax_in_place(v: &mut [f32]) {
    let max = v.iter().fold(f32::NEG_INFINITY, |m, x| m.max(*x));
    for x in v.iter_mut() {
        *x = exp(*x - max);
    }
    let inv = 1.0 / sum(v);
    for x in v {
        *x *= inv;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> impl Iterator<Item = f32> {
        (-200_000..=200_000).map(|i| i as f32 * 1e-4 * 3.0)
    }

    #[test]
    fn exp_is_within_a_few_ulp() {
        for x in samples()
            .map(|x| x * 1.45)
            .chain([-87.0, 88.0, 0.0, -1e-30])
        {
            let want = f64::from(x).exp();
            let got = f64::from(exp(x));
            assert!(
                ((got - want) / want).abs() < 4e-7,
                "exp({x}) = {got}, want {want}"
            );
        }
        assert!(exp(-1000.0) < 1e-37 && exp(-1000.0) >= 0.0);
    }

    /// `apply` against `want` (in f64) on ±12 in steps of 6e-5, within 1e-6 relative.
    fn check_gelu(name: &str, apply: fn(&mut [f32]), want: impl Fn(f64) -> f64) {
        let xs: Vec<f32> = samples().map(|x| x / 5.0).collect();
        let mut got = xs.clone();
        apply(&mut got);
        for (x, g) in xs.iter().zip(got) {
            let x64 = f64::from(*x);
            let want = want(x64);
            assert!(
                (f64::from(g) - want).abs() < 1e-6 * x64.abs().max(1e-3),
                "{name}({x}) = {g}, want {want}"
            );
        }
    }

    #[test]
    fn gelu_matches_the_exact_form() {
        check_gelu("gelu", gelu_erf_in_place, |x| {
            0.5 * x * (1.0 + candle_core::cpu::erf::erf_f64(x / 2f64.sqrt()))
        });
    }

    #[test]
    fn gelu_f16_is_the_rounded_formula() {
        for x in samples().map(|x| x / 2.0) {
            let got = gelu_tanh_f16(x);
            let x16 = f64::from(half::f16::from_f32(x).to_f32());
            let inner = (2.0 / std::f64::consts::PI).sqrt() * (x16 + 0.044715 * x16.powi(3));
            let exact = 0.5 * x16 * (1.0 + inner.tanh());
            let want = match x {
                ..=-10.0 => 0.0,
                10.0.. => f64::from(x),
                _ => exact,
            };
            // Within half an f16 step of the formula at the rounded input.
            assert!(
                (f64::from(got) - want).abs() <= want.abs() * 2f64.powi(-11) + 1e-7,
                "gelu_f16({x}) = {got}, want {want}"
            );
        }
    }

    #[test]
    fn gelu_f16_by_blocks_gives_the_same_bits() {
        let gate: Vec<f32> = samples().map(|x| x / 2.0).collect();
        let up: Vec<f32> = gate.iter().map(|x| 1.5 - x / 9.0).collect();
        let mut blocks = gate.clone();
        gate_gelu_f16_in_place(&mut blocks, &up);
        let mut one_by_one = gate.clone();
        gate_in_place(&mut one_by_one, &up, gelu_tanh_f16);
        for ((x, a), b) in gate.iter().zip(&blocks).zip(&one_by_one) {
            assert_eq!(a.to_bits(), b.to_bits(), "at {x}: {a} against {b}");
        }
    }

    #[test]
    fn silu_matches_its_formula() {
        let mut got: Vec<f32> = samples().map(|x| x / 5.0).collect();
        let up: Vec<f32> = got.iter().map(|x| 1.0 - x / 7.0).collect();
        let xs = got.clone();
        gate_in_place(&mut got, &up, silu);
        for ((x, u), g) in xs.iter().zip(&up).zip(got) {
            let (x, u) = (f64::from(*x), f64::from(*u));
            let want = x / (1.0 + (-x).exp()) * u;
            assert!(
                (f64::from(g) - want).abs() < 1e-6 * want.abs().max(1e-3),
                "silu({x}) · {u} = {g}, want {want}"
            );
        }
    }

    #[test]
    fn softmax_sums_to_one_and_keeps_ratios() {
        let mut v = vec![1.0f32, 2.0, -3.0, 80.0, 79.0, -1e30];
        softmax_in_place(&mut v);
        let want = [
            0.0,
            0.0,
            0.0,
            1.0 / (1.0 + (-1f64).exp()),
            (-1f64).exp() / (1.0 + (-1f64).exp()),
            0.0,
        ];
        for (g, w) in v.iter().zip(want) {
            assert!((f64::from(*g) - w).abs() < 1e-6, "{v:?}");
        }
        assert!((v.iter().sum::<f32>() - 1.0).abs() < 1e-6);
    }

    #[test]
    fn gelu_tanh_matches_its_formula() {
        check_gelu("gelu_tanh", gelu_tanh_in_place, |x| {
            let inner = (2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x.powi(3));
            0.5 * x * (1.0 + inner.tanh())
        });
    }
}
