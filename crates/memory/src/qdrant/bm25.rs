//! BM25 as sparse vectors: we turn text into term weights, Qdrant multiplies in the IDF.
//!
//! A chunk's sparse vector holds, for each distinct term, BM25's term-frequency part
//! `tf · (k1 + 1) / (tf + k1 · (1 − b + b · len / avg_len))`; a query's holds weight 1 for each
//! distinct term. The collection's sparse vector is created with Qdrant's IDF modifier, so the
//! server scores `Σ idf(t) · weight(t)` with `idf(t) = ln(1 + (N − n(t) + 0.5) / (n(t) + 0.5))`
//! over the collection's current counts: together that is BM25.
//!
//! Three things are fixed here and must not change under a stored collection (the weights are
//! stored; change one and old chunks score differently until re-ingested):
//!
//! - **Terms**: the embedded store's: Unicode words (UAX #29), lowercased, words over 64 bytes
//!   dropped. Ideographs and Thai split into single characters, so they can match a query at
//!   all; splitting on every non-alphanumeric character would keep a line of Chinese as one term.
//! - **Term ids**: FNV-1a (32-bit) of the term's UTF-8 bytes. Qdrant's sparse indices are `u32`;
//!   two terms that collide share their statistics, which only blurs the score a little.
//! - **The average length** [`AVG_LEN`]: BM25 needs the collection's average chunk length, which
//!   keeps changing while the weights are stored once. We assume 256 terms (a chunk of about 350
//!   tokens of English prose); a chunk of that length gets the plain saturation
//!   `tf · 2.2 / (tf + 1.2)`.
//!
//! Changing any of them means a new layout version (`LAYOUT_VERSION` in `store.rs`), which makes
//! old collections refuse to open rather than score wrongly.

use std::collections::BTreeMap;

use unicode_segmentation::UnicodeSegmentation;

/// BM25's term-frequency saturation.
pub const K1: f32 = 1.2;
/// BM25's length normalisation.
pub const B: f32 = 0.75;
/// The chunk length, in terms, assumed to be the collection's average.
pub const AVG_LEN: f32 = 256.0;

/// Longest term kept, in bytes (as the embedded store): longer "words" are hashes or base64.
const MAX_TERM_BYTES: usize = 64;

/// The terms of `text`: its Unicode words, lowercased; no stemming and no stop words.
pub fn tokenize(text: &str) -> impl Iterator<Item = String> + '_ {
    text.unicode_words()
        .filter(|word| word.len() <= MAX_TERM_BYTES)
        .map(str::to_lowercase)
}

/// The sparse index of a term: FNV-1a, 32-bit, over its UTF-8 bytes.
pub fn term_id(term: &str) -> u32 {
    const OFFSET: u32 = 0x811c_9dc5;
    const PRIME: u32 = 0x0100_0193;
    term.bytes().fold(OFFSET, |hash, byte| {
        (hash ^ u32::from(byte)).wrapping_mul(PRIME)
    })
}

/// A sparse vector: indices ascending and distinct, one weight each.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SparseVector {
    pub indices: Vec<u32>,
    pub values: Vec<f32>,
}

impl SparseVector {
    pub fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }

    fn from_map(weights: BTreeMap<u32, f32>) -> Self {
        let (indices, values) = weights.into_iter().unzip();
        Self { indices, values }
    }
}

/// A chunk's vector: BM25's term-frequency part for each distinct term.
pub fn document_vector(text: &str) -> SparseVector {
    let mut counts: BTreeMap<u32, u32> = BTreeMap::new();
    let mut len = 0u32;
    for term in tokenize(text) {
        *counts.entry(term_id(&term)).or_default() += 1;
        len += 1;
    }
    let norm = K1 * (1.0 - B + B * len as f32 / AVG_LEN);
    SparseVector::from_map(
        counts
            .into_iter()
            .map(|(id, tf)| {
                let tf = tf as f32;
                (id, tf * (K1 + 1.0) / (tf + norm))
            })
            .collect(),
    )
}

/// A query's vector: weight 1 for each distinct term.
pub fn query_vector(text: &str) -> SparseVector {
    SparseVector::from_map(tokenize(text).map(|term| (term_id(&term), 1.0)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenizes_into_lowercased_unicode_words() {
        let terms: Vec<String> = tokenize("Error ZX-4471: Grüße aus Köln, über-fast!").collect();
        assert_eq!(
            terms,
            [
                "error", "zx", "4471", "grüße", "aus", "köln", "über", "fast"
            ]
        );
        let cjk: Vec<String> = tokenize("東京タワー").collect();
        assert!(cjk.len() > 1, "ideographs are not one term: {cjk:?}");
        assert_eq!(tokenize("  ,;- ").count(), 0);
        assert_eq!(tokenize(&"x".repeat(65)).count(), 0);
    }

    #[test]
    fn term_ids_are_fnv1a_and_stable() {
        // Published FNV-1a 32-bit test vectors: these ids are stored, so they must never change.
        assert_eq!(term_id(""), 0x811c_9dc5);
        assert_eq!(term_id("a"), 0xe40c_292c);
        assert_eq!(term_id("foobar"), 0xbf9c_f968);
        assert_ne!(term_id("rust"), term_id("Rust"));
    }

    #[test]
    fn document_weights_saturate_and_normalise_by_length() {
        // A chunk of exactly the assumed average length: norm = k1.
        let mut text = "alpha alpha alpha ".to_string();
        text.push_str(&"filler ".repeat(AVG_LEN as usize - 3));
        let v = document_vector(&text);
        assert_eq!(v.indices.len(), 2);
        let alpha = v.indices.iter().position(|&i| i == term_id("alpha"));
        let weight = alpha.map(|p| v.values[p]);
        let expected = 3.0 * (K1 + 1.0) / (3.0 + K1);
        assert!(
            weight.is_some_and(|w| (w - expected).abs() < 1e-6),
            "{weight:?}"
        );

        // Shorter chunks weigh a term more; repeats saturate below k1 + 1.
        let short = document_vector("alpha beta");
        let long = document_vector(&format!("alpha {}", "beta ".repeat(500)));
        assert!(short.values[0] > long.values[0]);
        let many = document_vector(&"alpha ".repeat(1000));
        assert!(many.values[0] < K1 + 1.0);
    }

    #[test]
    fn vectors_have_sorted_distinct_indices() {
        let v = document_vector("b a c a b a");
        assert!(v.indices.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(v.indices.len(), 3);
        let q = query_vector("Rust rust RUST memory");
        assert_eq!(q.indices.len(), 2);
        assert!(q.values.iter().all(|&w| w == 1.0));
        assert!(query_vector("...").is_empty());
        assert!(document_vector("").is_empty());
    }
}
