//! Hybrid search: merging a vector ranking and a keyword ranking into one.

use std::collections::HashMap;
use std::hash::Hash;

use corral_core::Fusion;

/// How many candidates each side of a hybrid search contributes before fusing: enough that a
/// chunk ranked well by one side but poorly by the other still takes part.
pub fn candidates(top_k: usize) -> usize {
    (top_k * 4).max(50)
}

/// Fuses two rankings (best first, each `(key, score)`) into one, best first.
///
/// - `Rrf { k }`: each list adds `1 / (k + rank)`, ranks counted from 1.
/// - `Weighted { vector_weight }`: each list's scores are min-max normalised to `[0, 1]` (a list
///   whose scores are all equal normalises to 1), a key missing from a list counts 0 there, and
///   the two are mixed as `w * vector + (1 - w) * keyword`.
///
/// Ties keep the order of first appearance (vector list first), so results are deterministic.
pub fn fuse<K: Clone + Eq + Hash>(
    vector: &[(K, f32)],
    keyword: &[(K, f32)],
    fusion: Fusion,
) -> Vec<(K, f32)> {
    let mut order: Vec<K> = Vec::new();
    let mut scores: HashMap<K, f32> = HashMap::new();
    let mut add = |list: &[(K, f32)], weight: f32, score_of: &dyn Fn(usize, f32) -> f32| {
        for (rank, (key, score)) in list.iter().enumerate() {
            let add = weight * score_of(rank, *score);
            match scores.get_mut(key) {
                Some(total) => *total += add,
                None => {
                    scores.insert(key.clone(), add);
                    order.push(key.clone());
                }
            }
        }
    };
    match fusion {
        Fusion::Rrf { k } => {
            let rrf = |rank: usize, _: f32| 1.0 / (k + rank as f32 + 1.0);
            add(vector, 1.0, &rrf);
            add(keyword, 1.0, &rrf);
        }
        Fusion::Weighted { vector_weight } => {
            let w = vector_weight.clamp(0.0, 1.0);
            let v = normaliser(vector);
            let kw = normaliser(keyword);
            add(vector, w, &|_, s| v(s));
            add(keyword, 1.0 - w, &|_, s| kw(s));
        }
    }
    let mut fused: Vec<(usize, K, f32)> = order
        .into_iter()
        .enumerate()
        .map(|(i, key)| {
            let score = scores.get(&key).copied().unwrap_or_default();
            (i, key, score)
        })
        .collect();
    fused.sort_by(|a, b| b.2.total_cmp(&a.2).then(a.0.cmp(&b.0)));
    fused
        .into_iter()
        .map(|(_, key, score)| (key, score))
        .collect()
}

/// Min-max normalisation over one list's scores.
fn normaliser<K>(list: &[(K, f32)]) -> impl Fn(f32) -> f32 + use<K> {
    let min = list.iter().map(|(_, s)| *s).fold(f32::INFINITY, f32::min);
    let max = list
        .iter()
        .map(|(_, s)| *s)
        .fold(f32::NEG_INFINITY, f32::max);
    move |s| {
        if max > min {
            (s - min) / (max - min)
        } else {
            1.0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rrf_adds_reciprocal_ranks() {
        let vector = [("a", 0.9), ("b", 0.8), ("c", 0.1)];
        let keyword = [("c", 12.0), ("a", 3.0)];
        let fused = fuse(&vector, &keyword, Fusion::Rrf { k: 60.0 });
        let expect = |parts: &[f32]| parts.iter().map(|r| 1.0 / (60.0 + r)).sum::<f32>();
        assert_eq!(fused[0].0, "a");
        assert!((fused[0].1 - expect(&[1.0, 2.0])).abs() < 1e-7);
        assert_eq!(fused[1].0, "c");
        assert!((fused[1].1 - expect(&[3.0, 1.0])).abs() < 1e-7);
        assert_eq!(fused[2].0, "b");
        assert!((fused[2].1 - expect(&[2.0])).abs() < 1e-7);
    }

    #[test]
    fn weighted_normalises_each_list() {
        let vector = [("a", 0.9), ("b", 0.5), ("c", 0.1)];
        let keyword = [("c", 10.0), ("b", 5.0)];
        let fused = fuse(&vector, &keyword, Fusion::Weighted { vector_weight: 0.5 });
        // a: 0.5*1 + 0; b: 0.5*0.5 + 0.5*0; c: 0.5*0 + 0.5*1.
        let keys: Vec<&str> = fused.iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, ["a", "c", "b"], "ties keep first appearance");
        for ((_, got), want) in fused.iter().zip([0.5, 0.5, 0.25]) {
            assert!((got - want).abs() < 1e-6, "{fused:?}");
        }
        let only_keyword = fuse(&vector, &keyword, Fusion::Weighted { vector_weight: 0.0 });
        assert_eq!(only_keyword[0], ("c", 1.0));
        // A single hit normalises to 1, not to 0/0.
        let single = fuse(&[("x", 0.3)], &[], Fusion::Weighted { vector_weight: 1.0 });
        assert_eq!(single, [("x", 1.0)]);
    }
}
