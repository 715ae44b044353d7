//! Prompt batches in tiles of eight weight rows (AVX2), or sixteen (AVX-512).
//!
//! The dot-product kernels pay, for every 32 products, a widening, a conversion and a fused
//! multiply-add of their own, and each output ends in a horizontal sum. Here eight weight rows
//! are first unpacked to signed bytes (with a float scale, and a min where the type has one,
//! per run of [`Kernel::SUB`] weights) and interleaved four values at a time: 32 bytes hold
//! the same four positions of all eight rows. Four activation values broadcast against that
//! vector give, in one `vpmaddubsw` + `vpmaddwd`, four products for each of the eight rows.
//! The sums stay in integers for a whole run; each run then costs one conversion and one
//! fused multiply-add per activation row, for eight outputs at once. A tile is packed once
//! (in a per-thread buffer, from the file's own blocks) and then meets every activation row
//! of the batch, [`GROUP`] rows at a time; the file's layout, and decoding, are unchanged.
//!
//! Where the CPU has AVX-512 (F and BW), two packed tiles are joined into one of sixteen rows,
//! each 64-byte vector holding the first tile's 32 bytes and then the second's, so that one
//! 512-bit `vpmaddubsw` does the work of two ([`matmul_avx512`]). AVX-512 has no `vpsignb`: for
//! Q8_0 a masked subtraction from zero gives each activation the weights' signs. This runs
//! through pulp's `V4`
//! as a `WithSimd` whose body is inlined into the AVX-512 context (a closure is not reliably
//! inlined there, and then each intrinsic runs as a function call).
//!
//! The activations are quantized per 32 values by llama.cpp's Q8_0 rule, whatever the weight
//! type. The results round differently from the dot-product kernels (one float lane per
//! output instead of eight summed pairwise), so a batch agrees with token-at-a-time decoding
//! to rounding, not to the bit; short batches ([`MIN_ROWS`]) keep to the dot-product kernels.

use std::sync::atomic::{AtomicU32, Ordering};

use super::{Kernel, V3, V4};

/// Weight rows in one tile.
pub const ROWS: usize = 8;
/// Activation rows that share one pass over a tile.
const GROUP: usize = 4;
/// The fewest activation rows that take the tiled path (packing a tile pays for itself over
/// many rows).
pub const MIN_ROWS: usize = 16;

/// One activation row, quantized per 32 values: the values four to an `i32` (as the kernel
/// broadcasts them), each 32's scale, and `scale · Σq` over each 16 and each 32 (for the
/// weights' mins).
#[derive(Debug, Clone)]
pub struct Act {
    quads: Vec<i32>,
    d: Vec<f32>,
    dsum16: Vec<f32>,
    dsum32: Vec<f32>,
    /// Per 32: the sums of its two 16s, as two 16-bit lanes (low first).
    sums16: Vec<i32>,
}

/// Quantizes `x` (a multiple of 32 long) as [`super::q8_0::quantize`] does.
pub fn quantize(x: &[f32]) -> Act {
    let blocks = super::q8_0::quantize(x);
    let mut act = Act {
        quads: Vec::with_capacity(x.len() / 4),
        d: Vec::with_capacity(blocks.len()),
        dsum16: Vec::with_capacity(2 * blocks.len()),
        dsum32: Vec::with_capacity(blocks.len()),
        sums16: Vec::with_capacity(blocks.len()),
    };
    for block in &blocks {
        let (quads, _) = block.qs.as_chunks::<4>();
        act.quads
            .extend(quads.iter().map(|q| i32::from_le_bytes(q.map(|v| v as u8))));
        act.d.push(block.d);
        let (lo, hi) = block.qs.split_at(16);
        let sum = |half: &[i8]| half.iter().map(|v| i32::from(*v)).sum::<i32>();
        let (lo, hi) = (sum(lo), sum(hi));
        act.dsum16.push(block.d * lo as f32);
        act.dsum16.push(block.d * hi as f32);
        act.dsum32.push(block.d * (lo + hi) as f32);
        // Each within 16 · 127 in magnitude.
        act.sums16
            .push(i32::from(lo as i16 as u16) | i32::from(hi as i16 as u16) << 16);
    }
    act
}

/// 32 bytes, aligned for a whole-vector load.
type Quad = std::arch::x86_64::__m256i;

/// Eight weight rows, unpacked and interleaved: `quads[v]` holds values `4v..4v + 4` of rows
/// 0..8 in turn; `scales[s]` and `mins[s]` the eight rows' scale and min of run `s`.
#[derive(Debug, Default)]
struct Tile {
    quads: Vec<Quad>,
    /// `|quads|` bytewise, for signed types.
    abs: Vec<Quad>,
    scales: Vec<[f32; ROWS]>,
    mins: Vec<[f32; ROWS]>,
    /// For types with 16-weight integer scales ([`Kernel::SUB16`]), per run of 32: each row's
    /// scale of the first 16 in both of its 16-bit lanes, of the second likewise, and the two
    /// side by side times the type's offset.
    sub_first: Vec<Quad>,
    sub_second: Vec<Quad>,
    sub_offset: Vec<Quad>,
    /// One row unpacked, before interleaving.
    row: Vec<u8>,
    row_scales: Vec<f32>,
    row_mins: Vec<f32>,
    row_subs: Vec<i8>,
}

impl Tile {
    /// Packs `rows` (at most [`ROWS`], each `k` weights in `K`'s blocks); missing rows are zero.
    fn pack<K: Kernel>(&mut self, rows: &[&[u8]], k: usize) {
        if K::SUB16 {
            return self.pack_sub16::<K>(rows, k);
        }
        let runs = k / K::SUB;
        self.reset(k, runs);
        self.mins.resize(runs, [0.0; ROWS]);
        self.row_mins.resize(runs, 0.0);
        let per_block = K::BLOCK / K::SUB;
        for (r, bytes) in rows.iter().enumerate().take(ROWS) {
            let blocks = bytes.chunks_exact(K::BLOCK_BYTES);
            let values = self.row.chunks_exact_mut(K::BLOCK);
            let scales = self.row_scales.chunks_exact_mut(per_block);
            let mins = self.row_mins.chunks_exact_mut(per_block);
            for (((block, q), s), m) in blocks.zip(values).zip(scales).zip(mins) {
                K::unpack(block, q, s, m);
            }
            self.place_row(r);
            for (s, v) in self.mins.iter_mut().zip(&self.row_mins) {
                s[r] = *v;
            }
        }
        if K::SIGNED {
            let abs = |q: &Quad| {
                let bytes: [u8; 32] = bytemuck::cast(*q);
                bytemuck::cast::<[u8; 32], Quad>(bytes.map(|v| (v as i8).unsigned_abs()))
            };
            self.abs.extend(self.quads.iter().map(abs));
        }
    }

    /// Empties the tile for `k` weights a row in `runs` runs, and sizes the one-row buffers.
    fn reset(&mut self, k: usize, runs: usize) {
        self.quads.clear();
        self.quads.resize(k / 4, bytemuck::Zeroable::zeroed());
        self.scales.clear();
        self.scales.resize(runs, [0.0; ROWS]);
        self.mins.clear();
        self.abs.clear();
        self.row.resize(k, 0);
        self.row_scales.resize(runs, 0.0);
    }

    /// Interleaves the unpacked row (`row`, `row_scales`) as row `r` of the tile.
    fn place_row(&mut self, r: usize) {
        for (quad, values) in self.quads.iter_mut().zip(self.row.chunks_exact(4)) {
            bytemuck::cast_mut::<Quad, [u8; 32]>(quad)[4 * r..4 * r + 4].copy_from_slice(values);
        }
        for (s, v) in self.scales.iter_mut().zip(&self.row_scales) {
            s[r] = *v;
        }
    }

    /// [`Self::pack`] for types with 16-weight integer scales, in runs of 32.
    fn pack_sub16<K: Kernel>(&mut self, rows: &[&[u8]], k: usize) {
        let runs = k / 32;
        self.reset(k, runs);
        let zero: [i16; 16] = [0; 16];
        let mut first = vec![zero; runs];
        let mut second = vec![zero; runs];
        let mut offset = vec![zero; runs];
        self.row_subs.resize(k / 16, 0);
        let mut offsets = [0u8; ROWS];
        for (r, bytes) in rows.iter().enumerate().take(ROWS) {
            let blocks = bytes.chunks_exact(K::BLOCK_BYTES);
            let values = self.row.chunks_exact_mut(K::BLOCK);
            let scales = self.row_scales.chunks_exact_mut(K::BLOCK / 32);
            let subs = self.row_subs.chunks_exact_mut(K::BLOCK / 16);
            for (((block, q), s), sub) in blocks.zip(values).zip(scales).zip(subs) {
                if let Some((d, off)) = K::unpack_sub16(block, q, sub) {
                    s.fill(d);
                    offsets[r] = off;
                }
            }
            self.place_row(r);
            let pairs = self.row_subs.chunks_exact(2);
            for (run, pair) in pairs.enumerate() {
                let (a, b) = (i16::from(pair[0]), i16::from(pair[1]));
                let off = i16::from(offsets[r]);
                first[run][2 * r..2 * r + 2].fill(a);
                second[run][2 * r..2 * r + 2].fill(b);
                offset[run][2 * r] = a * off;
                offset[run][2 * r + 1] = b * off;
            }
        }
        let quads = |v: Vec<[i16; 16]>| v.into_iter().map(bytemuck::cast::<[i16; 16], Quad>);
        self.sub_first = quads(first).collect();
        self.sub_second = quads(second).collect();
        self.sub_offset = quads(offset).collect();
    }
}

/// The tile's eight rows against `T` activation rows for a type with 16-weight integer scales
/// ([`Tile::pack_sub16`]): each run of 32 sums in integers, its two scales and the offset
/// applied there (`vpmaddwd` by the scales in place of ones), then one float step per run.
#[inline(always)]
fn tile_dot_sub16<const T: usize>(simd: V3, tile: &Tile, acts: [&Act; T]) -> [[f32; ROWS]; T] {
    let zero = simd.avx._mm256_setzero_si256();
    let mut acc = [simd.avx._mm256_setzero_ps(); T];
    let (runs, _) = tile.quads.as_chunks::<8>();
    let act_runs: [&[[i32; 8]]; T] = acts.map(|a| a.quads.as_chunks::<8>().0);
    let per_run = tile
        .scales
        .iter()
        .zip(&tile.sub_first)
        .zip(&tile.sub_second)
        .zip(&tile.sub_offset);
    for (s, (run, (((scales, first), second), offset))) in runs.iter().zip(per_run).enumerate() {
        let mut wide = [zero; T];
        for t in 0..T {
            let a_run = act_runs[t].get(s).unwrap_or(&[0; 8]);
            // Two products in 16 bits at a time (values below 64: 2 · 2 · 63 · 127 < 2¹⁵).
            for (i, (quads, acts)) in run.chunks_exact(2).zip(a_run.chunks_exact(2)).enumerate() {
                let mut narrow = zero;
                for (w, a) in quads.iter().zip(acts) {
                    let a = simd.avx._mm256_set1_epi32(*a);
                    narrow = simd
                        .avx2
                        ._mm256_add_epi16(narrow, simd.avx2._mm256_maddubs_epi16(*w, a));
                }
                let scale = if i < 2 { *first } else { *second };
                wide[t] = simd
                    .avx2
                    ._mm256_add_epi32(wide[t], simd.avx2._mm256_madd_epi16(narrow, scale));
            }
            let sums = acts[t].sums16.get(s).copied().unwrap_or(0);
            let offset = simd
                .avx2
                ._mm256_madd_epi16(*offset, simd.avx._mm256_set1_epi32(sums));
            wide[t] = simd.avx2._mm256_sub_epi32(wide[t], offset);
        }
        let scales = bytemuck::cast(*scales);
        for t in 0..T {
            let d = acts[t].d.get(s).copied().unwrap_or(0.0);
            acc[t] = simd.fma._mm256_fmadd_ps(
                simd.avx._mm256_cvtepi32_ps(wide[t]),
                simd.avx._mm256_mul_ps(scales, simd.avx._mm256_set1_ps(d)),
                acc[t],
            );
        }
    }
    acc.map(bytemuck::cast)
}

/// The tile's eight rows against `T` activation rows: `[t][r]`. `Q` quads make a run (`SUB /
/// 4`); `SIGNED` and `ADD16` are the weight type's ([`Kernel`]).
#[inline(always)]
fn tile_dot<const T: usize, const Q: usize, const SIGNED: bool, const ADD16: usize>(
    simd: V3,
    tile: &Tile,
    acts: [&Act; T],
) -> [[f32; ROWS]; T] {
    let ones = simd.avx._mm256_set1_epi16(1);
    let zero = simd.avx._mm256_setzero_si256();
    let mut acc = [simd.avx._mm256_setzero_ps(); T];
    let (runs, _) = tile.quads.as_chunks::<Q>();
    let (abs_runs, _) = tile.abs.as_chunks::<Q>();
    let act_runs: [&[[i32; Q]]; T] = acts.map(|a| a.quads.as_chunks::<Q>().0);
    let dsums: [&[f32]; T] = acts.map(|a| if Q == 4 { &a.dsum16[..] } else { &a.dsum32[..] });
    for (s, ((run, scales), mins)) in runs.iter().zip(&tile.scales).zip(&tile.mins).enumerate() {
        let a_runs: [&[i32; Q]; T] = act_runs.map(|a| a.get(s).unwrap_or(&[0; Q]));
        // Activation row by activation row: the run's weights come again from L1 for each,
        // which keeps every value in a register (row-inner order spills).
        let mut wide = [zero; T];
        for t in 0..T {
            let mut narrow = zero;
            for (i, (quad, abs)) in run.iter().zip(abs_runs.get(s).unwrap_or(run)).enumerate() {
                let w = *quad;
                let a = simd.avx._mm256_set1_epi32(a_runs[t][i]);
                let pairs = if SIGNED {
                    simd.avx2
                        ._mm256_maddubs_epi16(*abs, simd.avx2._mm256_sign_epi8(a, w))
                } else {
                    simd.avx2._mm256_maddubs_epi16(w, a)
                };
                if ADD16 == 1 {
                    wide[t] = simd
                        .avx2
                        ._mm256_add_epi32(wide[t], simd.avx2._mm256_madd_epi16(pairs, ones));
                } else {
                    narrow = simd.avx2._mm256_add_epi16(narrow, pairs);
                    if (i + 1) % ADD16 == 0 || i + 1 == Q {
                        wide[t] = simd
                            .avx2
                            ._mm256_add_epi32(wide[t], simd.avx2._mm256_madd_epi16(narrow, ones));
                        narrow = zero;
                    }
                }
            }
        }
        let scales = bytemuck::cast(*scales);
        let block = s * Q / 8;
        for t in 0..T {
            let d = acts[t].d.get(block).copied().unwrap_or(0.0);
            acc[t] = simd.fma._mm256_fmadd_ps(
                simd.avx._mm256_cvtepi32_ps(wide[t]),
                simd.avx._mm256_mul_ps(scales, simd.avx._mm256_set1_ps(d)),
                acc[t],
            );
        }
        if !SIGNED {
            let mins = bytemuck::cast(*mins);
            for t in 0..T {
                let dsum = dsums[t].get(s).copied().unwrap_or(0.0);
                acc[t] = simd
                    .fma
                    ._mm256_fnmadd_ps(mins, simd.avx._mm256_set1_ps(dsum), acc[t]);
            }
        }
    }
    acc.map(bytemuck::cast)
}

/// [`tile_dot`] for weight type `K`.
#[inline(always)]
fn tile_dot_for<K: Kernel, const T: usize>(
    simd: V3,
    tile: &Tile,
    acts: [&Act; T],
) -> [[f32; ROWS]; T] {
    if K::SUB16 {
        return tile_dot_sub16::<T>(simd, tile, acts);
    }
    // `fits` allows runs of 16 or 32 only; fewer 16-bit sums than allowed are always safe.
    match (K::SUB, K::SIGNED, K::ADD16) {
        (32, true, _) => tile_dot::<T, 8, true, 1>(simd, tile, acts),
        (_, true, _) => tile_dot::<T, 4, true, 1>(simd, tile, acts),
        (32, false, a) if a >= 8 => tile_dot::<T, 8, false, 8>(simd, tile, acts),
        (32, false, a) if a >= 4 => tile_dot::<T, 8, false, 4>(simd, tile, acts),
        (32, false, _) => tile_dot::<T, 8, false, 1>(simd, tile, acts),
        (_, false, a) if a >= 2 => tile_dot::<T, 4, false, 2>(simd, tile, acts),
        _ => tile_dot::<T, 4, false, 1>(simd, tile, acts),
    }
}

/// Whether weight type `K` can run tiled (runs of 16 or 32 weights, mins weighed by
/// activation sums of the same length).
pub fn fits<K: Kernel>() -> bool {
    matches!(K::SUB, 16 | 32) && K::BLOCK.is_multiple_of(K::SUB) && K::BLOCK.is_multiple_of(32)
}

/// The batch's `m × n` outputs, each written once, by the thread that owns its tile of `W`
/// weight rows: `run(tiles, store)` computes tiles `tiles` (tile `i` is rows `W·i ..`) and hands
/// activation row `t`'s results for rows `r0 .. r0 + rows` to `store(t, r0, rows, values)`.
fn by_tiles<const W: usize, F>(n: usize, m: usize, run: F) -> Vec<f32>
where
    F: Fn(std::ops::Range<usize>, &(dyn Fn(usize, usize, usize, [f32; W]) + Sync)) + Sync,
{
    let out: Vec<AtomicU32> = (0..m * n).map(|_| AtomicU32::new(0)).collect();
    let store = |t: usize, r0: usize, rows: usize, v: [f32; W]| {
        let Some(dst) = out.get(t * n + r0..t * n + r0 + rows) else {
            return;
        };
        for (o, v) in dst.iter().zip(v) {
            o.store(v.to_bits(), Ordering::Relaxed);
        }
    };
    candle_core::utils::barrier_pool().execute_chunked(n.div_ceil(W), |tiles| run(tiles, &store));
    out.into_iter()
        .map(|v| f32::from_bits(v.into_inner()))
        .collect()
}

/// Weight rows `r0 .. r0 + count` (fewer at the end of the matrix), each `row_bytes` long.
fn rows_at(w: &[u8], row_bytes: usize, r0: usize, count: usize, n: usize) -> Vec<&[u8]> {
    (r0..(r0 + count).min(n))
        .filter_map(|r| w.get(r * row_bytes..(r + 1) * row_bytes))
        .collect()
}

/// `x · wᵀ` as [`super::matmul`], in tiles of [`ROWS`] (AVX2; for `K` that [`fits`]).
pub fn matmul<K: Kernel>(simd: V3, w: &[u8], n: usize, k: usize, x: &[f32], m: usize) -> Vec<f32> {
    let row_bytes = k / K::BLOCK * K::BLOCK_BYTES;
    let acts: Vec<Act> = x.chunks_exact(k).take(m).map(quantize).collect();
    by_tiles::<ROWS, _>(n, m, |tiles, store| {
        simd.vectorize(|| {
            let mut tile = Tile::default();
            for r0 in tiles.map(|t| t * ROWS) {
                let rows = rows_at(w, row_bytes, r0, ROWS, n);
                tile.pack::<K>(&rows, k);
                let mut groups = acts.chunks_exact(GROUP);
                let mut t = 0;
                for group in groups.by_ref() {
                    let four: [&Act; GROUP] = std::array::from_fn(|i| &group[i]);
                    for (i, v) in tile_dot_for::<K, GROUP>(simd, &tile, four)
                        .into_iter()
                        .enumerate()
                    {
                        store(t + i, r0, rows.len(), v);
                    }
                    t += GROUP;
                }
                for (i, act) in groups.remainder().iter().enumerate() {
                    let [v] = tile_dot_for::<K, 1>(simd, &tile, [act]);
                    store(t + i, r0, rows.len(), v);
                }
            }
        })
    })
}

/// Weight rows in one AVX-512 tile: two eight-row tiles side by side.
pub const WIDE: usize = 2 * ROWS;

/// 64 bytes, aligned for a whole-vector load.
type Quad512 = std::arch::x86_64::__m512i;

/// Two packed [`Tile`]s joined for AVX-512: every vector holds the first tile's 32 bytes in its
/// low half and the second's in its high half, so that one `vpmaddubsw` meets sixteen rows.
#[derive(Debug, Default)]
struct Wide {
    quads: Vec<Quad512>,
    /// For signed types: `|quads|` bytewise, and per vector a bit for each negative byte.
    abs: Vec<Quad512>,
    negative: Vec<u64>,
    scales: Vec<[f32; WIDE]>,
    mins: Vec<[f32; WIDE]>,
    sub_first: Vec<Quad512>,
    sub_second: Vec<Quad512>,
    sub_offset: Vec<Quad512>,
}

impl Wide {
    /// `lo` (rows 0..8) and `hi` (rows 8..16), packed for the same `k` and type.
    fn join(&mut self, lo: &Tile, hi: &Tile) {
        fn halves(into: &mut Vec<Quad512>, lo: &[Quad], hi: &[Quad]) {
            into.clear();
            into.extend(lo.iter().zip(hi).map(|(a, b)| {
                let mut both = [0u8; 64];
                let (l, h) = both.split_at_mut(32);
                l.copy_from_slice(bytemuck::bytes_of(a));
                h.copy_from_slice(bytemuck::bytes_of(b));
                bytemuck::cast::<[u8; 64], Quad512>(both)
            }));
        }
        fn floats(into: &mut Vec<[f32; WIDE]>, lo: &[[f32; ROWS]], hi: &[[f32; ROWS]]) {
            into.clear();
            into.extend(lo.iter().zip(hi).map(|(a, b)| {
                let mut both = [0.0; WIDE];
                both[..ROWS].copy_from_slice(a);
                both[ROWS..].copy_from_slice(b);
                both
            }));
        }
        halves(&mut self.quads, &lo.quads, &hi.quads);
        halves(&mut self.abs, &lo.abs, &hi.abs);
        self.negative.clear();
        if !self.abs.is_empty() {
            self.negative.extend(self.quads.iter().map(|q| {
                let bytes: [u8; 64] = bytemuck::cast(*q);
                (0..64).fold(0u64, |bits, i| bits | u64::from(bytes[i] >> 7) << i)
            }));
        }
        floats(&mut self.scales, &lo.scales, &hi.scales);
        floats(&mut self.mins, &lo.mins, &hi.mins);
        halves(&mut self.sub_first, &lo.sub_first, &hi.sub_first);
        halves(&mut self.sub_second, &lo.sub_second, &hi.sub_second);
        halves(&mut self.sub_offset, &lo.sub_offset, &hi.sub_offset);
    }
}

/// [`tile_dot_sub16`] on a [`Wide`] tile in AVX-512: sixteen rows.
#[inline(always)]
fn wide_dot_sub16<const T: usize>(simd: V4, wide: &Wide, acts: [&Act; T]) -> [[f32; WIDE]; T] {
    let (f, bw) = (simd.avx512f, simd.avx512bw);
    let zero = f._mm512_setzero_si512();
    let mut acc = [f._mm512_setzero_ps(); T];
    let (runs, _) = wide.quads.as_chunks::<8>();
    let act_runs: [&[[i32; 8]]; T] = acts.map(|a| a.quads.as_chunks::<8>().0);
    let per_run = wide
        .scales
        .iter()
        .zip(&wide.sub_first)
        .zip(&wide.sub_second)
        .zip(&wide.sub_offset);
    for (s, (run, (((scales, first), second), offset))) in runs.iter().zip(per_run).enumerate() {
        let mut sums = [zero; T];
        for t in 0..T {
            let a_run = act_runs[t].get(s).unwrap_or(&[0; 8]);
            for (i, (quads, acts)) in run.chunks_exact(2).zip(a_run.chunks_exact(2)).enumerate() {
                let mut narrow = zero;
                for (w, a) in quads.iter().zip(acts) {
                    let a = f._mm512_set1_epi32(*a);
                    narrow = bw._mm512_add_epi16(narrow, bw._mm512_maddubs_epi16(*w, a));
                }
                let scale = if i < 2 { *first } else { *second };
                sums[t] = f._mm512_add_epi32(sums[t], bw._mm512_madd_epi16(narrow, scale));
            }
            let act_sums = acts[t].sums16.get(s).copied().unwrap_or(0);
            let offset = bw._mm512_madd_epi16(*offset, f._mm512_set1_epi32(act_sums));
            sums[t] = f._mm512_sub_epi32(sums[t], offset);
        }
        let scales = bytemuck::cast(*scales);
        for t in 0..T {
            let d = acts[t].d.get(s).copied().unwrap_or(0.0);
            acc[t] = f._mm512_fmadd_ps(
                f._mm512_cvtepi32_ps(sums[t]),
                f._mm512_mul_ps(scales, f._mm512_set1_ps(d)),
                acc[t],
            );
        }
    }
    acc.map(bytemuck::cast)
}

/// [`tile_dot`] on a [`Wide`] tile in AVX-512: sixteen rows. AVX-512 has no `vpsignb`; for
/// signed types each broadcast activation takes the weights' signs by a masked subtraction from
/// zero, and meets `|w|`.
#[inline(always)]
fn wide_dot<const T: usize, const Q: usize, const SIGNED: bool, const ADD16: usize>(
    simd: V4,
    wide: &Wide,
    acts: [&Act; T],
) -> [[f32; WIDE]; T] {
    let (f, bw) = (simd.avx512f, simd.avx512bw);
    let ones = f._mm512_set1_epi16(1);
    let zero = f._mm512_setzero_si512();
    let mut acc = [f._mm512_setzero_ps(); T];
    let (runs, _) = wide.quads.as_chunks::<Q>();
    let act_runs: [&[[i32; Q]]; T] = acts.map(|a| a.quads.as_chunks::<Q>().0);
    let dsums: [&[f32]; T] = acts.map(|a| if Q == 4 { &a.dsum16[..] } else { &a.dsum32[..] });
    let (abs_runs, _) = wide.abs.as_chunks::<Q>();
    let (negative_runs, _) = wide.negative.as_chunks::<Q>();
    for (s, ((run, scales), mins)) in runs.iter().zip(&wide.scales).zip(&wide.mins).enumerate() {
        let a_runs: [&[i32; Q]; T] = act_runs.map(|a| a.get(s).unwrap_or(&[0; Q]));
        let (abs, negative) = (abs_runs.get(s), negative_runs.get(s));
        let mut sums = [zero; T];
        for t in 0..T {
            let mut narrow = zero;
            for (i, w) in run.iter().enumerate() {
                let a = f._mm512_set1_epi32(a_runs[t][i]);
                let pairs = match (SIGNED, abs, negative) {
                    (true, Some(abs), Some(negative)) => bw._mm512_maddubs_epi16(
                        abs[i],
                        bw._mm512_mask_sub_epi8(a, negative[i], zero, a),
                    ),
                    _ => bw._mm512_maddubs_epi16(*w, a),
                };
                if ADD16 == 1 {
                    sums[t] = f._mm512_add_epi32(sums[t], bw._mm512_madd_epi16(pairs, ones));
                } else {
                    narrow = bw._mm512_add_epi16(narrow, pairs);
                    if (i + 1) % ADD16 == 0 || i + 1 == Q {
                        sums[t] = f._mm512_add_epi32(sums[t], bw._mm512_madd_epi16(narrow, ones));
                        narrow = zero;
                    }
                }
            }
        }
        let (scales, mins) = (bytemuck::cast(*scales), bytemuck::cast(*mins));
        let block = s * Q / 8;
        for t in 0..T {
            let d = acts[t].d.get(block).copied().unwrap_or(0.0);
            let dsum = dsums[t].get(s).copied().unwrap_or(0.0);
            acc[t] = f._mm512_fmadd_ps(
                f._mm512_cvtepi32_ps(sums[t]),
                f._mm512_mul_ps(scales, f._mm512_set1_ps(d)),
                acc[t],
            );
            if !SIGNED {
                acc[t] = f._mm512_fnmadd_ps(mins, f._mm512_set1_ps(dsum), acc[t]);
            }
        }
    }
    acc.map(bytemuck::cast)
}

/// [`wide_dot`] for weight type `K` (as [`tile_dot_for`] picks [`tile_dot`]'s parameters).
#[inline(always)]
fn wide_dot_for<K: Kernel, const T: usize>(
    simd: V4,
    wide: &Wide,
    acts: [&Act; T],
) -> [[f32; WIDE]; T] {
    if K::SUB16 {
        return wide_dot_sub16::<T>(simd, wide, acts);
    }
    match (K::SUB, K::SIGNED, K::ADD16) {
        (32, true, _) => wide_dot::<T, 8, true, 1>(simd, wide, acts),
        (_, true, _) => wide_dot::<T, 4, true, 1>(simd, wide, acts),
        (32, false, a) if a >= 8 => wide_dot::<T, 8, false, 8>(simd, wide, acts),
        (32, false, a) if a >= 4 => wide_dot::<T, 8, false, 4>(simd, wide, acts),
        (32, false, _) => wide_dot::<T, 8, false, 1>(simd, wide, acts),
        (_, false, a) if a >= 2 => wide_dot::<T, 4, false, 2>(simd, wide, acts),
        _ => wide_dot::<T, 4, false, 1>(simd, wide, acts),
    }
}

/// `x · wᵀ` as [`matmul`], in AVX-512 tiles of [`WIDE`] rows (for `K` that [`fits`]).
pub fn matmul_avx512<K: Kernel>(
    simd: V4,
    w: &[u8],
    n: usize,
    k: usize,
    x: &[f32],
    m: usize,
) -> Vec<f32> {
    let acts: Vec<Act> = x.chunks_exact(k).take(m).map(quantize).collect();
    by_tiles::<WIDE, _>(n, m, |tiles, store| {
        let job = WideTiles::<K> {
            simd,
            w,
            n,
            k,
            acts: &acts,
            tiles,
            store,
            kernel: std::marker::PhantomData,
        };
        pulp::Simd::vectorize(simd, job)
    })
}

/// One thread's share of [`matmul_avx512`]. A `WithSimd` (whose body pulp inlines into its
/// AVX-512 context) rather than a closure, which is not reliably inlined there, leaving every
/// intrinsic a function call.
struct WideTiles<'a, K> {
    simd: V4,
    w: &'a [u8],
    n: usize,
    k: usize,
    acts: &'a [Act],
    tiles: std::ops::Range<usize>,
    store: &'a (dyn Fn(usize, usize, usize, [f32; WIDE]) + Sync),
    kernel: std::marker::PhantomData<K>,
}

impl<K: Kernel> pulp::WithSimd for WideTiles<'_, K> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        let Self {
            simd,
            w,
            n,
            k,
            acts,
            tiles,
            store,
            ..
        } = self;
        let row_bytes = k / K::BLOCK * K::BLOCK_BYTES;
        let (mut lo, mut hi, mut wide) = (Tile::default(), Tile::default(), Wide::default());
        for r0 in tiles.map(|t| t * WIDE) {
            let rows = rows_at(w, row_bytes, r0, WIDE, n);
            let (first, second) = rows.split_at(rows.len().min(ROWS));
            lo.pack::<K>(first, k);
            hi.pack::<K>(second, k);
            wide.join(&lo, &hi);
            let mut groups = acts.chunks_exact(GROUP);
            let mut t = 0;
            for group in groups.by_ref() {
                let four: [&Act; GROUP] = std::array::from_fn(|i| &group[i]);
                for (i, v) in wide_dot_for::<K, GROUP>(simd, &wide, four)
                    .into_iter()
                    .enumerate()
                {
                    store(t + i, r0, rows.len(), v);
                }
                t += GROUP;
            }
            for (i, act) in groups.remainder().iter().enumerate() {
                let [v] = wide_dot_for::<K, 1>(simd, &wide, [act]);
                store(t + i, r0, rows.len(), v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::local::quant::{q4k::Q4K, q5_0::Q5_0, q6k::Q6K, q8_0::Q8_0};
    use candle_core::quantized::GgmlDType;

    /// The tiled product against the dequantized weights times the dequantized activations
    /// (in f64), for a row count that leaves a partial tile and a batch that leaves a partial
    /// group.
    fn agrees_with_the_dequantized_product<K: Kernel>(dtype: GgmlDType) {
        let Some(simd) = V3::try_new() else {
            eprintln!("no AVX2 on this CPU: the tiled kernel does not run");
            return;
        };
        // 37 rows: two whole AVX-512 tiles and a partial one (five rows, all in its low half).
        let (n, k, m) = (37, 512, 19);
        let (bytes, dense) = super::super::test_weights(dtype, n, k, 11);
        let mut rng = fastrand::Rng::with_seed(12);
        let x: Vec<f32> = (0..m * k).map(|_| rng.f32() * 2.0 - 1.0).collect();
        let mut runs = vec![("AVX2", matmul::<K>(simd, &bytes, n, k, &x, m))];
        match V4::try_new() {
            Some(simd) => runs.push(("AVX-512", matmul_avx512::<K>(simd, &bytes, n, k, &x, m))),
            None => eprintln!("no AVX-512 on this CPU: its tiles are not tested here"),
        }
        for (isa, ours) in runs {
            agrees(isa, dtype, (n, k, m), &dense, &x, &ours);
        }
    }

    fn agrees(
        isa: &str,
        dtype: GgmlDType,
        (n, k, m): (usize, usize, usize),
        dense: &[f32],
        x: &[f32],
        ours: &[f32],
    ) {
        assert_eq!(ours.len(), m * n);
        for t in 0..m {
            let act = super::super::q8_0::quantize(&x[t * k..(t + 1) * k]);
            let x_deq: Vec<f64> = act
                .iter()
                .flat_map(|b| b.qs.iter().map(move |q| f64::from(*q) * f64::from(b.d)))
                .collect();
            for r in 0..n {
                let exact: f64 = dense[r * k..(r + 1) * k]
                    .iter()
                    .zip(&x_deq)
                    .map(|(w, x)| f64::from(*w) * x)
                    .sum();
                let got = f64::from(ours[t * n + r]);
                assert!(
                    (got - exact).abs() < 1e-3,
                    "{isa} {dtype:?} [{t}, {r}]: {got} vs {exact}"
                );
            }
        }
    }

    #[test]
    fn q8_0_tiles_agree_with_the_dequantized_product() {
        agrees_with_the_dequantized_product::<Q8_0>(GgmlDType::Q8_0);
    }

    #[test]
    fn q5_0_tiles_agree_with_the_dequantized_product() {
        agrees_with_the_dequantized_product::<Q5_0>(GgmlDType::Q5_0);
    }

    #[test]
    fn q4k_tiles_agree_with_the_dequantized_product() {
        agrees_with_the_dequantized_product::<Q4K>(GgmlDType::Q4K);
    }

    #[test]
    fn q6k_tiles_agree_with_the_dequantized_product() {
        agrees_with_the_dequantized_product::<Q6K>(GgmlDType::Q6K);
    }

    /// Interleaving puts value `4v + j` of row `r` at byte `4r + j` of vector `v`, and a row
    /// past the end of the matrix is zero.
    #[test]
    fn packing_interleaves_four_values_of_each_row() {
        let (n, k) = (3, 64);
        let (bytes, _) = super::super::test_weights(GgmlDType::Q8_0, n, k, 13);
        let row_bytes = k / 32 * 34;
        let rows: Vec<&[u8]> = bytes.chunks_exact(row_bytes).collect();
        let mut tile = Tile::default();
        tile.pack::<Q8_0>(&rows, k);
        assert_eq!(tile.quads.len(), k / 4);
        assert_eq!(tile.scales.len(), k / 32);
        for (r, row) in rows.iter().enumerate() {
            for pos in 0..k {
                let block = &row[pos / 32 * 34..];
                let quad: [u8; 32] = bytemuck::cast(tile.quads[pos / 4]);
                assert_eq!(quad[4 * r + pos % 4], block[2 + pos % 32]);
            }
            let d = half::f16::from_le_bytes([row[0], row[1]]).to_f32();
            assert_eq!(tile.scales[0][r], d);
        }
        assert!(tile.quads.iter().all(|q| {
            let q: [u8; 32] = bytemuck::cast(*q);
            q[4 * n..].iter().all(|v| *v == 0)
        }));
    }
}
