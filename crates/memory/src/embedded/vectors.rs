//! Vector search over the chunks of a tantivy segment, held in memory.
//!
//! tantivy's segments are immutable (only their deletions change), so each segment's vectors and
//! filterable fields are read from its doc store once, when a searcher first sees the segment,
//! and dropped when the segment is merged away. A search then scores every live chunk that passes
//! the filter (coarsely, then its best candidates finely; see [`SegmentVectors`]): no index to
//! build or to lose on a crash.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use corral_core::{Chunk, Filter};
use tantivy::DocId;

/// One segment's chunks: their vectors quantized to 4 and to 8 bits, and the chunk fields
/// filters see (text left out; it is read from the doc store for the hits only).
///
/// A unit vector `v` is kept twice:
/// - as 4-bit codes `round(v * 7 / max|v|)`, two to a byte: 192 bytes per MiniLM chunk, which
///   the scan reads for every live chunk (its cost is the memory traffic);
/// - as 8-bit codes `round(v * 127 / max|v|)` (384 bytes), read only for the best few hundred
///   of the 4-bit pass, whose scores are coarse (an error of about 1e-2) but rank the true
///   neighbours near the top.
///
/// The 8-bit scores are close to the exact ones (an error of about 1e-3), so the scan keeps a
/// few more candidates than asked for and the caller scores those exactly from the f32 vectors
/// in the doc store.
#[derive(Debug)]
pub struct SegmentVectors {
    dimension: usize,
    /// `dimension` codes per doc id; zeros for a document that was deleted when loaded.
    codes: Vec<i8>,
    scales: Vec<f32>,
    /// [`nibble_bytes`]`(dimension)` bytes per doc id, laid out as [`dot_u4`] reads them.
    nibbles: Vec<u8>,
    nibble_scales: Vec<f32>,
    /// Whether a doc id holds a chunk (apart from `metas`, so the scan reads a byte, not a chunk).
    present: Vec<bool>,
    metas: Vec<Option<Chunk>>,
}

/// Rows the scan sorts into passing and not before it scores those that pass.
const SCAN_BATCH: usize = 64;
/// How many passing rows ahead the scan asks for a row's memory.
const PREFETCH_AHEAD: usize = 8;

/// Asks for `row`'s cache lines ahead of use (a hint: it never faults, and the pointers are
/// only ever read by the CPU's prefetcher).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn prefetch(simd: pulp::x86::V3, row: &[u8]) {
    const T0: i32 = 3; // _MM_HINT_T0: into every cache level
    let base = row.as_ptr().cast::<i8>();
    for offset in (0..row.len()).step_by(64).chain(row.len().checked_sub(1)) {
        simd.sse._mm_prefetch::<T0>(base.wrapping_add(offset));
    }
}

/// Candidates the 4-bit pass keeps for every one the 8-bit scores are asked for.
const WIDEN: usize = 8;

/// Bytes of 4-bit codes per vector: 32 bytes for each 64 dimensions (the last 64 padded).
pub fn nibble_bytes(dimension: usize) -> usize {
    dimension.div_ceil(64) * 32
}

/// `v`'s 4-bit codes (each offset by 8, so stored in 1..=15; padding holds 8, a zero) in
/// [`dot_u4`]'s layout, and their scale.
fn nibbles_of(v: &[f32]) -> (Vec<u8>, f32) {
    let mut out = vec![0x88u8; nibble_bytes(v.len())];
    let max = v.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    if max == 0.0 || !max.is_finite() {
        return (out, 0.0);
    }
    let k = 7.0 / max;
    for (i, x) in v.iter().enumerate() {
        let code = ((x * k).round() as i32).clamp(-7, 7) + 8;
        let (block, at) = (i / 64, i % 64);
        if let Some(byte) = out.get_mut(block * 32 + at % 32) {
            *byte = if at < 32 {
                (*byte & 0xf0) | code as u8
            } else {
                (*byte & 0x0f) | ((code as u8) << 4)
            };
        }
    }
    (out, max / 7.0)
}

/// A vector quantized as [`SegmentVectors`] keeps them.
/// A query keeps its codes zero-padded to a multiple of 64 (what [`dot_u4`] reads) and their sum
/// (which takes the 4-bit codes' offset of 8 back out).
#[derive(Debug, Clone)]
pub struct Quantized {
    pub codes: Vec<i8>,
    pub scale: f32,
    padded: Vec<i8>,
    sum: i32,
}

/// `v`'s 8-bit codes and their scale (see [`SegmentVectors`]).
fn eight_bit_codes(v: &[f32]) -> (Vec<i8>, f32) {
    let max = v.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    if max == 0.0 || !max.is_finite() {
        return (vec![0; v.len()], 0.0);
    }
    let k = 127.0 / max;
    (
        v.iter().map(|x| (x * k).round() as i8).collect(),
        max / 127.0,
    )
}

impl Quantized {
    pub fn new(v: &[f32]) -> Self {
        let (codes, scale) = eight_bit_codes(v);
        let mut padded = codes.clone();
        padded.resize(v.len().div_ceil(64) * 64, 0);
        let sum = codes.iter().map(|c| i32::from(*c)).sum();
        Self {
            codes,
            scale,
            padded,
            sum,
        }
    }
}

impl SegmentVectors {
    pub fn new(dimension: usize, max_doc: usize) -> Self {
        Self {
            dimension,
            codes: vec![0; dimension * max_doc],
            scales: vec![0.0; max_doc],
            nibbles: vec![0x88; nibble_bytes(dimension) * max_doc],
            nibble_scales: vec![0.0; max_doc],
            present: vec![false; max_doc],
            metas: vec![None; max_doc],
        }
    }

    /// Records doc `doc`'s vector (already normalised) and fields.
    pub fn set(&mut self, doc: DocId, vector: &[f32], meta: Chunk) {
        let at = doc as usize;
        let start = at * self.dimension;
        let width = nibble_bytes(self.dimension);
        if let (
            Some(row),
            Some(scale),
            Some(nibbles),
            Some(nibble_scale),
            Some(present),
            Some(slot),
        ) = (
            self.codes.get_mut(start..start + self.dimension),
            self.scales.get_mut(at),
            self.nibbles.get_mut(at * width..(at + 1) * width),
            self.nibble_scales.get_mut(at),
            self.present.get_mut(at),
            self.metas.get_mut(at),
        ) && vector.len() == row.len()
        {
            let (codes, s) = eight_bit_codes(vector);
            row.copy_from_slice(&codes);
            *scale = s;
            let (codes, s) = nibbles_of(vector);
            nibbles.copy_from_slice(&codes);
            *nibble_scale = s;
            *present = true;
            *slot = Some(meta);
        }
    }

    /// Live docs, as `(doc, meta)`.
    pub fn docs<'a>(
        &'a self,
        alive: &'a dyn Fn(DocId) -> bool,
    ) -> impl Iterator<Item = (DocId, &'a Chunk)> + 'a {
        self.metas.iter().enumerate().filter_map(move |(i, m)| {
            let doc = i as DocId;
            m.as_ref().filter(|_| alive(doc)).map(|m| (doc, m))
        })
    }

    /// Doc ids `0..len()`.
    pub fn len(&self) -> usize {
        self.metas.len()
    }

    /// Which docs pass `filter` (by doc id).
    pub fn mask(&self, filter: &Filter) -> Vec<bool> {
        self.metas
            .iter()
            .map(|m| m.as_ref().is_some_and(|m| filter.matches(m)))
            .collect()
    }

    /// How many 4-bit candidates to keep for `pool` 8-bit ones (see [`Self::scan`]).
    pub fn coarse_pool(pool: usize) -> usize {
        pool.saturating_mul(WIDEN).max(256)
    }

    /// The best live docs among `docs` that pass (per `mask`, from [`Self::mask`]), by their
    /// 4-bit scores for `query`, into `top` (whose size should be [`Self::coarse_pool`] of the
    /// candidates wanted); [`rescore`] then ranks those more finely.
    pub fn scan(
        &self,
        docs: std::ops::Range<usize>,
        query: &Quantized,
        mask: Option<&[bool]>,
        alive: &dyn Fn(DocId) -> bool,
        top: &mut TopK<(u32, DocId)>,
        segment: u32,
    ) {
        #[cfg(target_arch = "x86_64")]
        if let Some(simd) = pulp::x86::V3::try_new() {
            return simd.vectorize(|| {
                self.scan_with(
                    |a, b| dot_u4_avx2(simd, a, b),
                    |row| prefetch(simd, row),
                    docs,
                    query,
                    mask,
                    alive,
                    top,
                    segment,
                )
            });
        }
        self.scan_with(dot_u4, |_| (), docs, query, mask, alive, top, segment);
    }

    /// [`Self::scan`] with a given dot product, inlined into the caller's SIMD context.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn scan_with(
        &self,
        dot_codes: impl Fn(&[u8], &[i8]) -> i32,
        prefetch: impl Fn(&[u8]),
        docs: std::ops::Range<usize>,
        query: &Quantized,
        mask: Option<&[bool]>,
        alive: &dyn Fn(DocId) -> bool,
        top: &mut TopK<(u32, DocId)>,
        segment: u32,
    ) {
        let width = nibble_bytes(self.dimension);
        let (Some(rows), Some(scales), Some(present)) = (
            self.nibbles.get(docs.start * width..docs.end * width),
            self.nibble_scales.get(docs.clone()),
            self.present.get(docs.clone()),
        ) else {
            return;
        };
        // Rows are taken a batch at a time: first which pass, then their scores, each row's
        // memory asked for a few rows ahead (the rows that pass a filter lie scattered, where
        // the hardware's own prefetching does not reach).
        let passes = |i: usize| {
            let doc = (docs.start + i) as DocId;
            present.get(i).copied().unwrap_or(false)
                && mask.is_none_or(|m| m.get(doc as usize).copied().unwrap_or(false))
                && alive(doc)
        };
        let row_of = |i: usize| rows.get(i * width..(i + 1) * width);
        let mut picked = [0usize; SCAN_BATCH];
        let mut start = 0;
        while start < present.len() {
            let end = (start + SCAN_BATCH).min(present.len());
            let mut count = 0;
            for i in start..end {
                if passes(i)
                    && let Some(slot) = picked.get_mut(count)
                {
                    *slot = i;
                    count += 1;
                }
            }
            let picked = picked.get(..count).unwrap_or(&[]);
            for &i in picked.iter().take(PREFETCH_AHEAD) {
                row_of(i).map(&prefetch);
            }
            for (c, &i) in picked.iter().enumerate() {
                if let Some(&ahead) = picked.get(c + PREFETCH_AHEAD) {
                    row_of(ahead).map(&prefetch);
                }
                let (Some(row), Some(scale)) = (row_of(i), scales.get(i)) else {
                    continue;
                };
                let raw = dot_codes(row, &query.padded) - 8 * query.sum;
                top.push(
                    raw as f32 * query.scale * scale,
                    (segment, (docs.start + i) as DocId),
                );
            }
            start = end;
        }
    }

    /// Doc `doc`'s 8-bit codes and their scale.
    fn codes_of(&self, doc: DocId) -> Option<(&[i8], f32)> {
        let at = doc as usize;
        let row = self
            .codes
            .get(at * self.dimension..(at + 1) * self.dimension)?;
        Some((row, *self.scales.get(at)?))
    }
}

/// The 8-bit scores of `candidates` (`(segment, doc)`: an index into `segments`, a doc id) for
/// `query`, into `top`. The candidates' rows lie scattered, so each is asked for a few
/// candidates ahead.
pub fn rescore<S: std::borrow::Borrow<SegmentVectors>>(
    segments: &[S],
    candidates: &[(u32, DocId)],
    query: &Quantized,
    top: &mut TopK<(u32, DocId)>,
) {
    let codes = |(segment, doc): (u32, DocId)| {
        segments
            .get(segment as usize)
            .and_then(|s| s.borrow().codes_of(doc))
    };
    let run = |dot: &dyn Fn(&[i8], &[i8]) -> i32, prefetch: &dyn Fn(&[u8]), top: &mut TopK<_>| {
        for (c, &item) in candidates.iter().enumerate() {
            if let Some((row, _)) = candidates.get(c + PREFETCH_AHEAD).and_then(|a| codes(*a)) {
                prefetch(bytemuck::cast_slice(row));
            }
            if let Some((row, scale)) = codes(item) {
                top.push(dot(&query.codes, row) as f32 * query.scale * scale, item);
            }
        }
    };
    #[cfg(target_arch = "x86_64")]
    if let Some(simd) = pulp::x86::V3::try_new() {
        return simd.vectorize(|| {
            run(
                &|a, b| dot_i8_avx2(simd, a, b),
                &|row| prefetch(simd, row),
                top,
            )
        });
    }
    run(&dot_i8, &|_| (), top);
}

/// The dot product of 4-bit codes (`nibbles`, as [`nibbles_of`] lays them out, without their
/// offset taken out) with a query's 8-bit codes (`q`, padded to a multiple of 64): byte `j` of
/// each 32-byte block holds dimension `j` of its 64 in its low half and `32 + j` in its high.
pub fn dot_u4(nibbles: &[u8], q: &[i8]) -> i32 {
    let mut acc = [0i32; 32];
    for (block, qs) in nibbles.chunks_exact(32).zip(q.chunks_exact(64)) {
        let (low, high) = qs.split_at(32);
        for (j, lane) in acc.iter_mut().enumerate() {
            *lane += i32::from(block[j] & 0x0f) * i32::from(low[j])
                + i32::from(block[j] >> 4) * i32::from(high[j]);
        }
    }
    acc.iter().sum()
}

/// [`dot_u4`] in AVX2: the two halves of 32 bytes are masked out into 64 unsigned values, which
/// is the operand `vpmaddubsw` wants unsigned; a pair's sum, at most 2 × 15 × 127, and two such
/// added, fit the 16 bits.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub fn dot_u4_avx2(simd: pulp::x86::V3, nibbles: &[u8], q: &[i8]) -> i32 {
    use std::arch::x86_64::__m256i;
    let (blocks, _) = nibbles.as_chunks::<32>();
    let (qs, _) = q.as_chunks::<64>();
    let low_mask = simd.avx._mm256_set1_epi8(0x0f);
    let ones = simd.avx._mm256_set1_epi16(1);
    let mut acc = simd.avx._mm256_setzero_si256();
    for (block, q) in blocks.iter().zip(qs) {
        let v: __m256i = bytemuck::cast(*block);
        let low = simd.avx2._mm256_and_si256(v, low_mask);
        let high = simd
            .avx2
            ._mm256_and_si256(simd.avx2._mm256_srli_epi16::<4>(v), low_mask);
        let (q_low, q_high) = q.split_at(32);
        let q_low: [i8; 32] = q_low.try_into().unwrap_or([0; 32]);
        let q_high: [i8; 32] = q_high.try_into().unwrap_or([0; 32]);
        let pairs = simd.avx2._mm256_add_epi16(
            simd.avx2._mm256_maddubs_epi16(low, bytemuck::cast(q_low)),
            simd.avx2._mm256_maddubs_epi16(high, bytemuck::cast(q_high)),
        );
        acc = simd
            .avx2
            ._mm256_add_epi32(acc, simd.avx2._mm256_madd_epi16(pairs, ones));
    }
    let lanes: [i32; 8] = bytemuck::cast(acc);
    lanes.iter().sum()
}

/// [`dot_i8`] in AVX2: `vpmaddubsw` multiplies 32 byte pairs at once, which needs one operand
/// unsigned, so `|a|` meets `b` with `a`'s sign moved onto it (`vpsignb`). The codes lie in
/// -127..=127 (see [`Quantized`]), so a pair's sum, at most 2 × 127², fits the 16 bits.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub fn dot_i8_avx2(simd: pulp::x86::V3, a: &[i8], b: &[i8]) -> i32 {
    use std::arch::x86_64::__m256i;
    let (a_blocks, a_tail) = a.as_chunks::<32>();
    let (b_blocks, b_tail) = b[..b.len().min(a.len())].as_chunks::<32>();
    let ones = simd.avx._mm256_set1_epi16(1);
    let mut acc = simd.avx._mm256_setzero_si256();
    for (x, y) in a_blocks.iter().zip(b_blocks) {
        let x: __m256i = bytemuck::cast(*x);
        let y: __m256i = bytemuck::cast(*y);
        let pairs = simd.avx2._mm256_maddubs_epi16(
            simd.avx2._mm256_sign_epi8(x, x),
            simd.avx2._mm256_sign_epi8(y, x),
        );
        acc = simd
            .avx2
            ._mm256_add_epi32(acc, simd.avx2._mm256_madd_epi16(pairs, ones));
    }
    let lanes: [i32; 8] = bytemuck::cast(acc);
    lanes.iter().sum::<i32>() + dot_i8(a_tail, b_tail)
}

/// Dot product of 8-bit codes in 16 lanes of 32-bit sums (the shape compilers turn into
/// `pmaddwd`); the scan uses [`dot_i8_avx2`] where the CPU has AVX2.
pub fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
    const LANES: usize = 16;
    let mut acc = [0i32; LANES];
    let main = a.len() - a.len() % LANES;
    let (a_main, a_tail) = a.split_at(main);
    let (b_main, b_tail) = b.split_at(b.len().min(main));
    for (x, y) in a_main.chunks_exact(LANES).zip(b_main.chunks_exact(LANES)) {
        for l in 0..LANES {
            acc[l] += i32::from(x[l]) * i32::from(y[l]);
        }
    }
    let tail: i32 = a_tail
        .iter()
        .zip(b_tail)
        .map(|(x, y)| i32::from(*x) * i32::from(*y))
        .sum();
    acc.iter().sum::<i32>() + tail
}

/// Scales `v` to unit length (a zero vector stays zero).
pub fn normalise(v: &mut [f32]) {
    let norm = dot(v, v).sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
}

/// Dot product, in 16 independent lanes so the compiler keeps it in SIMD registers.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    const LANES: usize = 16;
    let mut acc = [0.0f32; LANES];
    let (a_main, a_tail) = a.split_at(a.len() - a.len() % LANES);
    let (b_main, b_tail) = b.split_at(b.len().min(a_main.len()));
    for (x, y) in a_main.chunks_exact(LANES).zip(b_main.chunks_exact(LANES)) {
        for l in 0..LANES {
            acc[l] = x[l].mul_add(y[l], acc[l]);
        }
    }
    let tail: f32 = a_tail.iter().zip(b_tail).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f32>() + tail
}

/// The `k` highest-scoring items seen, kept in a min-heap.
#[derive(Debug)]
pub struct TopK<T> {
    k: usize,
    heap: BinaryHeap<Scored<T>>,
}

impl<T: Ord> TopK<T> {
    pub fn new(k: usize) -> Self {
        Self {
            k,
            heap: BinaryHeap::with_capacity(k + 1),
        }
    }

    pub fn push(&mut self, score: f32, item: T) {
        if self.k == 0 {
            return;
        }
        if self.heap.len() < self.k {
            self.heap.push(Scored(score, item));
        } else if score > self.threshold()
            && let Some(mut worst) = self.heap.peek_mut()
        {
            *worst = Scored(score, item);
        }
    }

    /// The score a new item must beat to get in: the worst kept once full.
    pub fn threshold(&self) -> f32 {
        match self.heap.peek() {
            Some(worst) if self.heap.len() >= self.k => worst.0,
            _ => f32::MIN,
        }
    }

    /// Best first; equal scores in item order.
    pub fn into_sorted(self) -> Vec<(f32, T)> {
        let mut items: Vec<(f32, T)> = self.heap.into_iter().map(|s| (s.0, s.1)).collect();
        items.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        items
    }
}

/// Ordered so that the heap's top is the worst (lowest score; then the greatest item).
#[derive(Debug)]
struct Scored<T>(f32, T);

impl<T: Ord> Ord for Scored<T> {
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .0
            .total_cmp(&self.0)
            .then_with(|| self.1.cmp(&other.1))
    }
}

impl<T: Ord> PartialOrd for Scored<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<T: Ord> PartialEq for Scored<T> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl<T: Ord> Eq for Scored<T> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_matches_the_plain_sum() {
        for n in [0, 1, 15, 16, 17, 384, 385] {
            let a: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..n).map(|i| (i as f32 * 0.11).cos()).collect();
            let plain: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            assert!((dot(&a, &b) - plain).abs() < 1e-4, "n = {n}");
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_avx2_dot_product_equals_the_plain_one() {
        let Some(simd) = pulp::x86::V3::try_new() else {
            eprintln!("no AVX2 on this CPU: the scalar dot product is the only one");
            return;
        };
        let mut rng = fastrand::Rng::with_seed(5);
        for n in [0, 1, 31, 32, 33, 64, 384, 385, 1536] {
            for _ in 0..20 {
                let a: Vec<i8> = (0..n).map(|_| rng.i8(-127..=127)).collect();
                let b: Vec<i8> = (0..n).map(|_| rng.i8(-127..=127)).collect();
                let plain: i32 = a
                    .iter()
                    .zip(&b)
                    .map(|(x, y)| i32::from(*x) * i32::from(*y))
                    .sum();
                assert_eq!(dot_i8_avx2(simd, &a, &b), plain, "n = {n}");
                assert_eq!(dot_i8(&a, &b), plain, "n = {n}");
            }
            // The ends of the code range: a pair's sum is at its largest and saturates nothing.
            let max = vec![127i8; n];
            let min = vec![-127i8; n];
            assert_eq!(dot_i8_avx2(simd, &max, &min), -(127 * 127) * n as i32);
            assert_eq!(dot_i8_avx2(simd, &min, &min), 127 * 127 * n as i32);
        }
    }

    #[test]
    fn quantized_scores_stay_close_to_exact_ones() {
        let mut rng = fastrand::Rng::with_seed(3);
        for n in [1, 15, 16, 17, 384] {
            for _ in 0..50 {
                let mut a: Vec<f32> = (0..n).map(|_| rng.f32() - 0.5).collect();
                let mut b: Vec<f32> = (0..n).map(|_| rng.f32() - 0.5).collect();
                normalise(&mut a);
                normalise(&mut b);
                let (qa, qb) = (Quantized::new(&a), Quantized::new(&b));
                let approx = dot_i8(&qa.codes, &qb.codes) as f32 * qa.scale * qb.scale;
                assert!((approx - dot(&a, &b)).abs() < 0.02, "n = {n}");
            }
        }
        assert_eq!(Quantized::new(&[0.0, 0.0]).scale, 0.0);
    }

    /// The 4-bit score of `v` against `query`, through a one-doc segment and [`dot_u4`].
    fn four_bit_score(v: &[f32], query: &Quantized) -> f32 {
        let (codes, scale) = nibbles_of(v);
        (dot_u4(&codes, &query.padded) - 8 * query.sum) as f32 * query.scale * scale
    }

    #[test]
    fn four_bit_codes_sit_where_the_layout_says() {
        // Dimension i holds the value i - 7 (within -7..=7 after scaling by 7 / max = 1).
        let v: Vec<f32> = (0..130).map(|i| ((i % 15) as f32) - 7.0).collect();
        let (codes, scale) = nibbles_of(&v);
        assert_eq!(codes.len(), 3 * 32);
        assert_eq!(scale, 1.0);
        for (i, x) in v.iter().enumerate() {
            let byte = codes[i / 64 * 32 + i % 32];
            let nibble = if i % 64 < 32 { byte & 0x0f } else { byte >> 4 };
            assert_eq!(i32::from(nibble) - 8, *x as i32, "dimension {i}");
        }
        // Padding past dimension 130 holds a zero.
        assert!(codes[2 * 32 + 2..].iter().all(|b| *b == 0x88));
        assert_eq!(codes[2 * 32] & 0x0f, ((128 % 15) as u8) + 1);
        assert_eq!(nibbles_of(&[0.0; 3]), (vec![0x88; 32], 0.0));
    }

    #[test]
    fn four_bit_scores_stay_near_exact_ones() {
        let mut rng = fastrand::Rng::with_seed(6);
        for n in [1, 63, 64, 65, 384] {
            for _ in 0..50 {
                let mut a: Vec<f32> = (0..n).map(|_| rng.f32() - 0.5).collect();
                let mut b: Vec<f32> = (0..n).map(|_| rng.f32() - 0.5).collect();
                normalise(&mut a);
                normalise(&mut b);
                let approx = four_bit_score(&b, &Quantized::new(&a));
                assert!((approx - dot(&a, &b)).abs() < 0.1, "n = {n}: {approx}");
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_avx2_four_bit_dot_equals_the_plain_one() {
        let Some(simd) = pulp::x86::V3::try_new() else {
            eprintln!("no AVX2 on this CPU: the scalar dot product is the only one");
            return;
        };
        let mut rng = fastrand::Rng::with_seed(7);
        for n in [1, 64, 65, 384, 1536] {
            for _ in 0..20 {
                let nibbles: Vec<u8> = (0..nibble_bytes(n)).map(|_| rng.u8(..)).collect();
                let mut q: Vec<i8> = (0..n).map(|_| rng.i8(-127..=127)).collect();
                q.resize(n.div_ceil(64) * 64, 0);
                let plain: i32 = (0..q.len())
                    .map(|i| {
                        let byte = nibbles[i / 64 * 32 + i % 32];
                        let code = if i % 64 < 32 { byte & 0x0f } else { byte >> 4 };
                        i32::from(code) * i32::from(q[i])
                    })
                    .sum();
                assert_eq!(dot_u4(&nibbles, &q), plain, "n = {n}");
                assert_eq!(dot_u4_avx2(simd, &nibbles, &q), plain, "n = {n}");
            }
            // The ends of both ranges: the 16-bit pair sums saturate nothing.
            let full = vec![0xffu8; nibble_bytes(n)];
            let q = vec![127i8; n.div_ceil(64) * 64];
            assert_eq!(dot_u4_avx2(simd, &full, &q), 15 * 127 * q.len() as i32);
            let q = vec![-128i8; n.div_ceil(64) * 64];
            assert_eq!(dot_u4_avx2(simd, &full, &q), -15 * 128 * q.len() as i32);
        }
    }

    #[test]
    fn the_scan_finds_the_nearest_through_both_passes() {
        let (dim, n) = (384, 2000);
        let mut rng = fastrand::Rng::with_seed(8);
        let mut vectors = SegmentVectors::new(dim, n);
        let mut rows = Vec::new();
        for doc in 0..n {
            let mut v: Vec<f32> = (0..dim).map(|_| rng.f32() - 0.5).collect();
            normalise(&mut v);
            let meta = crate::conformance::chunk("d", doc, "", Vec::new()).chunk;
            vectors.set(doc as DocId, &v, meta);
            rows.push(v);
        }
        // A query near doc 1234, and the exact top 10 by f32 cosine.
        let mut query: Vec<f32> = rows[1234]
            .iter()
            .map(|x| x + (rng.f32() - 0.5) * 0.05)
            .collect();
        normalise(&mut query);
        let mut exact = TopK::new(10);
        for (doc, v) in rows.iter().enumerate() {
            exact.push(dot(&query, v), doc as DocId);
        }
        let exact: Vec<DocId> = exact.into_sorted().into_iter().map(|(_, d)| d).collect();
        let q = Quantized::new(&query);
        let mut coarse = TopK::new(SegmentVectors::coarse_pool(10));
        vectors.scan(0..n, &q, None, &|_| true, &mut coarse, 0);
        let coarse: Vec<(u32, DocId)> = coarse.into_sorted().into_iter().map(|(_, c)| c).collect();
        let mut fine = TopK::new(10);
        rescore(&[&vectors], &coarse, &q, &mut fine);
        let fine: Vec<DocId> = fine
            .into_sorted()
            .into_iter()
            .map(|(_, (_, d))| d)
            .collect();
        assert_eq!(fine[0], 1234);
        let found = exact.iter().filter(|d| fine.contains(d)).count();
        assert!(
            found >= 9,
            "{found} of the exact top 10: {fine:?} vs {exact:?}"
        );
        // A mask and deletions keep docs out of both passes.
        let mask: Vec<bool> = (0..n).map(|d| d != 1234).collect();
        let mut coarse = TopK::new(SegmentVectors::coarse_pool(10));
        vectors.scan(0..n, &q, Some(&mask), &|d| d % 2 == 0, &mut coarse, 0);
        let kept = coarse.into_sorted();
        assert!(kept.iter().all(|(_, (_, d))| *d != 1234 && d % 2 == 0));
        assert_eq!(kept.len(), SegmentVectors::coarse_pool(10));
    }

    #[test]
    fn top_k_keeps_the_best_in_order() {
        let mut top = TopK::new(3);
        for (score, item) in [(0.1, 1), (0.9, 2), (0.5, 3), (0.9, 0), (0.2, 4)] {
            top.push(score, item);
        }
        assert_eq!(top.into_sorted(), [(0.9, 0), (0.9, 2), (0.5, 3)]);
        let mut none = TopK::new(0);
        none.push(1.0, 1);
        assert!(none.into_sorted().is_empty());
    }
}
