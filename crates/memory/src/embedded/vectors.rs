//! Exact vector search over the chunks of a tantivy segment, held in memory.
//!
//! tantivy's segments are immutable (only their deletions change), so each segment's vectors and
//! filterable fields are read from its doc store once, when a searcher first sees the segment,
//! and dropped when the segment is merged away. A search then scores every live chunk that passes
//! the filter: exact cosine similarity, no index to build or to lose on a crash.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use corral_core::{Chunk, Filter};
use tantivy::DocId;

/// One segment's chunks: their vectors quantized to 8 bits, and the chunk fields filters see
/// (text left out; it is read from the doc store for the hits only).
///
/// A unit vector `v` is kept as `codes = round(v * 127 / max|v|)` with `scale = max|v| / 127`,
/// a quarter of its f32 size: the scan reads 384 bytes per MiniLM chunk instead of 1,536, and
/// the memory traffic is what a scan costs. The scan's scores are close to the exact ones (an
/// error of about 1e-3), so it keeps a few more candidates than asked for and the caller scores
/// those exactly from the f32 vectors in the doc store.
#[derive(Debug)]
pub struct SegmentVectors {
    dimension: usize,
    /// `dimension` codes per doc id; zeros for a document that was deleted when loaded.
    codes: Vec<i8>,
    scales: Vec<f32>,
    /// Whether a doc id holds a chunk (apart from `metas`, so the scan reads a byte, not a chunk).
    present: Vec<bool>,
    metas: Vec<Option<Chunk>>,
}

/// A vector quantized as [`SegmentVectors`] keeps them.
#[derive(Debug, Clone)]
pub struct Quantized {
    pub codes: Vec<i8>,
    pub scale: f32,
}

impl Quantized {
    pub fn new(v: &[f32]) -> Self {
        let max = v.iter().fold(0.0f32, |m, x| m.max(x.abs()));
        if max == 0.0 || !max.is_finite() {
            return Self {
                codes: vec![0; v.len()],
                scale: 0.0,
            };
        }
        let k = 127.0 / max;
        Self {
            codes: v.iter().map(|x| (x * k).round() as i8).collect(),
            scale: max / 127.0,
        }
    }
}

impl SegmentVectors {
    pub fn new(dimension: usize, max_doc: usize) -> Self {
        Self {
            dimension,
            codes: vec![0; dimension * max_doc],
            scales: vec![0.0; max_doc],
            present: vec![false; max_doc],
            metas: vec![None; max_doc],
        }
    }

    /// Records doc `doc`'s vector (already normalised) and fields.
    pub fn set(&mut self, doc: DocId, vector: &[f32], meta: Chunk) {
        let at = doc as usize;
        let start = at * self.dimension;
        if let (Some(row), Some(scale), Some(present), Some(slot)) = (
            self.codes.get_mut(start..start + self.dimension),
            self.scales.get_mut(at),
            self.present.get_mut(at),
            self.metas.get_mut(at),
        ) && vector.len() == row.len()
        {
            let q = Quantized::new(vector);
            row.copy_from_slice(&q.codes);
            *scale = q.scale;
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

    /// The best live docs among `docs` that pass (per `mask`, from [`Self::mask`]), by their
    /// approximate scores for `query`, into `top`.
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
                    |a, b| dot_i8_avx2(simd, a, b),
                    docs,
                    query,
                    mask,
                    alive,
                    top,
                    segment,
                )
            });
        }
        self.scan_with(dot_i8, docs, query, mask, alive, top, segment);
    }

    /// [`Self::scan`] with a given dot product, inlined into the caller's SIMD context.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn scan_with(
        &self,
        dot_codes: impl Fn(&[i8], &[i8]) -> i32,
        docs: std::ops::Range<usize>,
        query: &Quantized,
        mask: Option<&[bool]>,
        alive: &dyn Fn(DocId) -> bool,
        top: &mut TopK<(u32, DocId)>,
        segment: u32,
    ) {
        let (Some(rows), Some(scales), Some(present)) = (
            self.codes
                .get(docs.start * self.dimension..docs.end * self.dimension),
            self.scales.get(docs.clone()),
            self.present.get(docs.clone()),
        ) else {
            return;
        };
        let rows = rows.chunks_exact(self.dimension).zip(scales).zip(present);
        for (i, ((row, scale), present)) in rows.enumerate() {
            let doc = (docs.start + i) as DocId;
            if !present
                || mask.is_some_and(|m| !m.get(doc as usize).copied().unwrap_or(false))
                || !alive(doc)
            {
                continue;
            }
            let score = dot_codes(&query.codes, row) as f32 * query.scale * scale;
            top.push(score, (segment, doc));
        }
    }
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
