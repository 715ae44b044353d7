//! f32 matrix products for the BERT encoder, on candle's kernel threads.
//!
//! A linear layer's weights are constant, so they are packed once, at load time, into panels of
//! [`NR`] output columns (`k` rows of 16 values each): a micro-tile of [`MR`] activation rows
//! meets a panel with two AVX loads and twelve fused multiply-adds per step of `k`, the twelve
//! accumulators staying in registers for the whole of `k`. The product is written panel by panel
//! ([`Panels`]), so that each work item (one panel × one block of rows) owns a contiguous piece of
//! the output; the caller's epilogue (bias, GELU, residual and LayerNorm) reads it back row by row.
//!
//! Activations come as a [`Lhs`]: row-major, or in column blocks (attention writes each head's
//! context as its own block, so that heads can run in parallel on contiguous memory).
//!
//! The widest of AVX-512 (12 rows × one 16-lane accumulator each), AVX2 (6 rows × two 8-lane
//! accumulators) and plain Rust runs, picked at run time; the SIMD versions go through `pulp`'s
//! safe intrinsics. All three do the same sums (the plain loop without fused multiply-adds, so
//! not to the bit), and the tests hold each of them to f64 products.

use crate::local::par::par_pieces;

#[cfg(target_arch = "x86_64")]
use pulp::x86::{V3, V4};

/// Output columns per panel: two AVX vectors.
pub(super) const NR: usize = 16;
/// Activation rows per micro-tile: 6 × 2 accumulators, 2 weight vectors and a broadcast fill
/// 15 of AVX2's 16 registers.
const MR: usize = 6;
/// Activation rows per work item (a multiple of `MR`).
const ROW_BLOCK: usize = 8 * MR;

/// A weight matrix `W` (`n` outputs × `k` inputs, PyTorch's `Linear` layout) packed for `x · Wᵀ`.
#[derive(Debug)]
pub(super) struct Packed {
    n: usize,
    k: usize,
    /// Panel `p`, input `i`: the weights of outputs `16p .. 16p + 16` for input `i`, at
    /// `p * k + i`. Outputs past `n` (in the last panel) are zero.
    panels: Vec<[f32; NR]>,
}

impl Packed {
    /// Packs `w`, given as `n` rows of `k`.
    pub(super) fn from_rows(w: &[f32], n: usize, k: usize) -> Self {
        let mut panels = vec![[0.0; NR]; n.div_ceil(NR) * k];
        for (j, row) in w.chunks_exact(k).take(n).enumerate() {
            let (p, c) = (j / NR, j % NR);
            for (slot, &v) in panels[p * k..(p + 1) * k].iter_mut().zip(row) {
                slot[c] = v;
            }
        }
        Self { n, k, panels }
    }

    fn panel(&self, p: usize) -> &[[f32; NR]] {
        &self.panels[p * self.k..(p + 1) * self.k]
    }
}

/// `rows × k` activations stored in column blocks of `width`: element `(r, c)` is at
/// `(c / width) · rows · width + r · width + c % width`. Row-major is a single block.
#[derive(Debug, Clone, Copy)]
pub(super) struct Lhs<'a> {
    data: &'a [f32],
    rows: usize,
    k: usize,
    width: usize,
}

impl<'a> Lhs<'a> {
    /// `data` as `rows` rows of `k`, row after row.
    pub(super) fn row_major(data: &'a [f32], rows: usize, k: usize) -> Self {
        Self::blocks(data, rows, k, k)
    }

    /// `data` as `rows` rows of `k` in column blocks of `width` (which divides `k`).
    pub(super) fn blocks(data: &'a [f32], rows: usize, k: usize, width: usize) -> Self {
        assert!(
            width > 0 && k.is_multiple_of(width) && data.len() >= rows * k,
            "an activation matrix of {rows} × {k} in blocks of {width} needs {} values, has {}",
            rows * k,
            data.len()
        );
        Self {
            data,
            rows,
            k,
            width,
        }
    }

    /// Row `r`'s values in column block `b`.
    fn block_row(&self, b: usize, r: usize) -> &'a [f32] {
        let start = b * self.rows * self.width + r * self.width;
        &self.data[start..start + self.width]
    }
}

/// `x · Wᵀ` stored panel by panel: element `(r, c)` at `(c / 16) · rows_padded · 16 + r · 16 +
/// c % 16`. One value is reused from product to product ([`matmul_into`]), so that its memory is
/// not handed back to the system and faulted in again each time.
#[derive(Debug, Default)]
pub(super) struct Panels {
    data: Vec<f32>,
    rows_padded: usize,
    n: usize,
}

impl Panels {
    /// Row `r` of the product, `n` values.
    pub(super) fn row(&self, r: usize, out: &mut [f32]) {
        let at = |p: usize| (p * self.rows_padded + r) * NR;
        let (full, tail) = out[..self.n].as_chunks_mut::<NR>();
        for (p, chunk) in full.iter_mut().enumerate() {
            if let Some(values) = self.data[at(p)..].first_chunk::<NR>() {
                *chunk = *values;
            }
        }
        if !tail.is_empty() {
            let start = at(full.len());
            tail.copy_from_slice(&self.data[start..start + tail.len()]);
        }
    }
}

/// The instruction set a product runs in.
#[derive(Clone, Copy)]
pub(super) enum Isa {
    Plain,
    #[cfg(target_arch = "x86_64")]
    Avx2(V3),
    #[cfg(target_arch = "x86_64")]
    Avx512(V4),
}

impl std::fmt::Debug for Isa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Plain => "plain",
            #[cfg(target_arch = "x86_64")]
            Self::Avx2(_) => "AVX2",
            #[cfg(target_arch = "x86_64")]
            Self::Avx512(_) => "AVX-512",
        })
    }
}

impl Isa {
    /// The widest this CPU has.
    pub(super) fn best() -> Self {
        Self::available().last().copied().unwrap_or(Self::Plain)
    }

    /// Every instruction set this CPU runs, narrowest first.
    pub(super) fn available() -> Vec<Self> {
        let mut all = vec![Self::Plain];
        #[cfg(target_arch = "x86_64")]
        {
            all.extend(V3::try_new().map(Self::Avx2));
            all.extend(V4::try_new().map(Self::Avx512));
        }
        all
    }
}

/// `x · Wᵀ` (no bias) into `out`, whose buffer is reused.
pub(super) fn matmul_into(x: Lhs<'_>, w: &Packed, out: &mut Panels) {
    matmul_in(Isa::best(), x, w, out)
}

/// [`matmul_into`] in `isa`.
pub(super) fn matmul_in(isa: Isa, x: Lhs<'_>, w: &Packed, out: &mut Panels) {
    assert_eq!(
        x.k, w.k,
        "activations have {} columns, weights {}",
        x.k, w.k
    );
    let m = x.rows;
    let row_blocks = m.div_ceil(ROW_BLOCK);
    let rows_padded = row_blocks * ROW_BLOCK;
    // Every value a caller reads is written below; padding rows are never read.
    out.data.resize(w.n.div_ceil(NR) * rows_padded * NR, 0.0);
    out.rows_padded = rows_padded;
    out.n = w.n;
    // Piece `i` is panel `i / row_blocks`, rows `ROW_BLOCK · (i % row_blocks)` onwards: items
    // next to each other share a panel, which stays in cache while the rows go by.
    let pieces = out.data.chunks_mut(ROW_BLOCK * NR).collect();
    par_pieces(pieces, |i, out| {
        let (p, rb) = (i / row_blocks, i % row_blocks);
        let panel = w.panel(p);
        let first = rb * ROW_BLOCK;
        let rows = first..m.min(first + ROW_BLOCK);
        match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512(simd) => pulp::Simd::vectorize(
                simd,
                Avx512Block {
                    simd,
                    x,
                    rows,
                    panel,
                    out,
                },
            ),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2(simd) => simd.vectorize(|| {
                for r0 in rows.clone().step_by(MR) {
                    let out = &mut out[(r0 - first) * NR..];
                    match rows.end - r0 {
                        1 => tile_avx2::<1>(simd, x, r0, panel, out),
                        2 => tile_avx2::<2>(simd, x, r0, panel, out),
                        3 => tile_avx2::<3>(simd, x, r0, panel, out),
                        4 => tile_avx2::<4>(simd, x, r0, panel, out),
                        5 => tile_avx2::<5>(simd, x, r0, panel, out),
                        _ => tile_avx2::<MR>(simd, x, r0, panel, out),
                    }
                }
            }),
            Isa::Plain => {
                for r0 in rows.clone().step_by(MR) {
                    let out = &mut out[(r0 - first) * NR..];
                    match rows.end - r0 {
                        1 => tile_plain::<1>(x, r0, panel, out),
                        2 => tile_plain::<2>(x, r0, panel, out),
                        3 => tile_plain::<3>(x, r0, panel, out),
                        4 => tile_plain::<4>(x, r0, panel, out),
                        5 => tile_plain::<5>(x, r0, panel, out),
                        _ => tile_plain::<MR>(x, r0, panel, out),
                    }
                }
            }
        }
    });
}

/// Activation rows per AVX-512 micro-tile: 12 accumulators of 16 lanes (a multiple of it is
/// [`ROW_BLOCK`]).
#[cfg(target_arch = "x86_64")]
const MR_512: usize = 12;

/// One work item's rows against one panel in AVX-512. A `WithSimd` whose body is inlined into
/// pulp's AVX-512 context (a closure is not reliably inlined there, and its intrinsics then run
/// as calls).
#[cfg(target_arch = "x86_64")]
struct Avx512Block<'a, 'o> {
    simd: V4,
    x: Lhs<'a>,
    rows: std::ops::Range<usize>,
    panel: &'a [[f32; NR]],
    out: &'o mut [f32],
}

#[cfg(target_arch = "x86_64")]
impl pulp::WithSimd for Avx512Block<'_, '_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        let Self {
            simd,
            x,
            rows,
            panel,
            out,
        } = self;
        for r0 in rows.clone().step_by(MR_512) {
            let out = &mut out[(r0 - rows.start) * NR..];
            match rows.end - r0 {
                1 => tile_avx512::<1>(simd, x, r0, panel, out),
                2 => tile_avx512::<2>(simd, x, r0, panel, out),
                3 => tile_avx512::<3>(simd, x, r0, panel, out),
                4 => tile_avx512::<4>(simd, x, r0, panel, out),
                5 => tile_avx512::<5>(simd, x, r0, panel, out),
                6 => tile_avx512::<6>(simd, x, r0, panel, out),
                7 => tile_avx512::<7>(simd, x, r0, panel, out),
                8 => tile_avx512::<8>(simd, x, r0, panel, out),
                9 => tile_avx512::<9>(simd, x, r0, panel, out),
                10 => tile_avx512::<10>(simd, x, r0, panel, out),
                11 => tile_avx512::<11>(simd, x, r0, panel, out),
                _ => tile_avx512::<MR_512>(simd, x, r0, panel, out),
            }
        }
    }
}

/// Rows `r0 .. r0 + R` of `x` against one panel in AVX-512, into `out` (`R` rows of 16): one
/// accumulator of 16 lanes per row.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn tile_avx512<const R: usize>(
    simd: V4,
    x: Lhs<'_>,
    r0: usize,
    panel: &[[f32; NR]],
    out: &mut [f32],
) {
    let mut acc = [simd.avx512f._mm512_setzero_ps(); R];
    let width = x.width;
    for b in 0..x.k / width {
        let rows: [&[f32]; R] = std::array::from_fn(|i| x.block_row(b, r0 + i));
        let weights = &panel[b * width..(b + 1) * width];
        for (c, w) in weights.iter().enumerate() {
            let w: std::arch::x86_64::__m512 = bytemuck::cast(*w);
            for (acc, row) in acc.iter_mut().zip(rows) {
                let a = simd.avx512f._mm512_set1_ps(row[c]);
                *acc = simd.avx512f._mm512_fmadd_ps(a, w, *acc);
            }
        }
    }
    for (acc, out) in acc.iter().zip(out.chunks_exact_mut(NR)) {
        out.copy_from_slice(&bytemuck::cast::<_, [f32; NR]>(*acc));
    }
}

/// Rows `r0 .. r0 + R` of `x` against one panel, into `out` (`R` rows of 16).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn tile_avx2<const R: usize>(
    simd: V3,
    x: Lhs<'_>,
    r0: usize,
    panel: &[[f32; NR]],
    out: &mut [f32],
) {
    let mut acc = [[simd.avx._mm256_setzero_ps(); 2]; R];
    let width = x.width;
    for b in 0..x.k / width {
        let rows: [&[f32]; R] = std::array::from_fn(|i| x.block_row(b, r0 + i));
        let weights = &panel[b * width..(b + 1) * width];
        for (c, w) in weights.iter().enumerate() {
            let [w0, w1]: [std::arch::x86_64::__m256; 2] = bytemuck::cast(*w);
            for (acc, row) in acc.iter_mut().zip(rows) {
                let a = simd.avx._mm256_set1_ps(row[c]);
                acc[0] = simd.fma._mm256_fmadd_ps(a, w0, acc[0]);
                acc[1] = simd.fma._mm256_fmadd_ps(a, w1, acc[1]);
            }
        }
    }
    for (acc, out) in acc.iter().zip(out.chunks_exact_mut(NR)) {
        out.copy_from_slice(&bytemuck::cast::<_, [f32; NR]>(*acc));
    }
}

/// [`tile_avx2`] in plain Rust.
fn tile_plain<const R: usize>(x: Lhs<'_>, r0: usize, panel: &[[f32; NR]], out: &mut [f32]) {
    let mut acc = [[0.0f32; NR]; R];
    let width = x.width;
    for b in 0..x.k / width {
        let rows: [&[f32]; R] = std::array::from_fn(|i| x.block_row(b, r0 + i));
        let weights = &panel[b * width..(b + 1) * width];
        for (c, w) in weights.iter().enumerate() {
            for (acc, row) in acc.iter_mut().zip(rows) {
                let a = row[c];
                for (s, w) in acc.iter_mut().zip(w) {
                    *s += a * w;
                }
            }
        }
    }
    for (acc, out) in acc.iter().zip(out.chunks_exact_mut(NR)) {
        out.copy_from_slice(acc);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random(len: usize, seed: u64) -> Vec<f32> {
        let mut rng = fastrand::Rng::with_seed(seed);
        (0..len).map(|_| rng.f32() * 2.0 - 1.0).collect()
    }

    /// `x · Wᵀ` in f64, `x` row-major.
    fn reference(x: &[f32], w: &[f32], m: usize, n: usize, k: usize) -> Vec<f64> {
        let mut out = vec![0.0; m * n];
        for r in 0..m {
            for c in 0..n {
                out[r * n + c] = (0..k)
                    .map(|i| f64::from(x[r * k + i]) * f64::from(w[c * k + i]))
                    .sum();
            }
        }
        out
    }

    fn check(m: usize, n: usize, k: usize, width: usize, seed: u64) {
        let x = random(m * k, seed);
        let w = random(n * k, seed + 1);
        // The same matrix in column blocks of `width`.
        let mut blocked = vec![0.0; m * k];
        for r in 0..m {
            for c in 0..k {
                blocked[(c / width) * m * width + r * width + c % width] = x[r * k + c];
            }
        }
        let packed = Packed::from_rows(&w, n, k);
        let want = reference(&x, &w, m, n, k);
        for isa in Isa::available() {
            let mut got = Panels::default();
            matmul_in(isa, Lhs::blocks(&blocked, m, k, width), &packed, &mut got);
            let mut row = vec![0.0; n];
            for r in 0..m {
                got.row(r, &mut row);
                for c in 0..n {
                    let diff = (f64::from(row[c]) - want[r * n + c]).abs();
                    assert!(
                        diff < 1e-4 * (k as f64).sqrt(),
                        "{isa:?}, {m}×{n}×{k} (blocks of {width}) at ({r}, {c}): {} against {}",
                        row[c],
                        want[r * n + c]
                    );
                }
            }
        }
    }

    #[test]
    fn products_match_f64_for_every_tile_remainder() {
        // Rows 1..=13 cover every micro-tile remainder; 50 and 97 cross row blocks; 40 and 24
        // outputs leave a partial panel.
        for m in (1..=13).chain([50, 97]) {
            check(m, 40, 64, 64, m as u64);
        }
        check(29, 24, 96, 96, 7);
    }

    #[test]
    fn column_blocks_read_like_row_major() {
        check(31, 48, 384, 32, 11);
        check(6, 16, 64, 16, 12);
    }
}

/// `cargo test --release -p corral-inference --lib -- --ignored --nocapture sgemm_speed`:
/// GFLOP/s of [`matmul`] on all-MiniLM-L6-v2's shapes (932 rows: a batch of 32 short texts).
#[cfg(test)]
#[test]
#[ignore = "prints a speed figure; run by hand"]
fn sgemm_speed() {
    let m = 932;
    for (n, k) in [(1152, 384), (384, 384), (1536, 384), (384, 1536)] {
        let x: Vec<f32> = (0..m * k).map(|i| (i % 7) as f32 * 0.1).collect();
        let w: Vec<f32> = (0..n * k).map(|i| (i % 5) as f32 * 0.1).collect();
        let packed = Packed::from_rows(&w, n, k);
        let lhs = Lhs::row_major(&x, m, k);
        let mut out = Panels::default();
        for isa in Isa::available() {
            matmul_in(isa, lhs, &packed, &mut out);
            let runs = 20;
            let start = std::time::Instant::now();
            for _ in 0..runs {
                matmul_in(isa, lhs, &packed, &mut out);
                std::hint::black_box(&out);
            }
            let seconds = start.elapsed().as_secs_f64() / f64::from(runs);
            println!(
                "{m} × {k} · {k} × {n}, {isa:?}: {:.1} GFLOP/s",
                2.0 * (m * n * k) as f64 / seconds / 1e9
            );
        }
    }
}
