//! The embedded store at scale: query latency per search mode at 10k and 100k chunks, recall of
//! vector search against a brute-force reference, and size on disk per chunk.
//!
//! Synthetic data at MiniLM's shape: 384-dimensional unit vectors in clusters (as real
//! embeddings are), chunk texts of ~120 words drawn from a Zipf-distributed vocabulary (as real
//! text is), queries that are perturbed chunk vectors plus three of the chunk's words. Query
//! embedding time is not included (it is the embedder's, measured by `corral bench embed`).
//!
//! `cargo bench -p corral-memory --bench store [-- 10000 100000]`

use std::time::{Duration, Instant};

use corral_core::{Chunk, EmbeddedChunk, Fusion, SearchMode, SearchQuery, VectorStore};
use corral_memory::EmbeddedStore;

const DIM: usize = 384;
const QUERIES: usize = 300;
const VOCABULARY: usize = 30_000;
const CLUSTERS: usize = 200;

fn main() {
    // `cargo test --all-targets` builds and runs bench targets too; measure only under `cargo bench`.
    if !std::env::args().any(|arg| arg == "--bench") {
        println!("store: run with `cargo bench -p corral-memory --bench store`");
        return;
    }
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![10_000, 100_000]
    } else {
        sizes
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    for n in sizes {
        runtime.block_on(bench(n));
    }
}

struct Data {
    rng: fastrand::Rng,
    centroids: Vec<Vec<f32>>,
    /// Cumulative Zipf weights over the vocabulary.
    zipf: Vec<f64>,
}

impl Data {
    fn new() -> Self {
        let mut rng = fastrand::Rng::with_seed(7);
        let centroids = (0..CLUSTERS).map(|_| unit(&mut rng, None, 1.0)).collect();
        let mut total = 0.0;
        let zipf = (1..=VOCABULARY)
            .map(|r| {
                total += 1.0 / r as f64;
                total
            })
            .collect();
        Self {
            rng,
            centroids,
            zipf,
        }
    }

    fn word(&mut self) -> String {
        let last = self.zipf.last().copied().unwrap_or(1.0);
        let x = self.rng.f64() * last;
        let rank = self.zipf.partition_point(|&c| c < x);
        format!("w{rank}")
    }

    fn vector(&mut self) -> Vec<f32> {
        let c = self.rng.usize(..CLUSTERS);
        let centroid = self.centroids[c].clone();
        unit(&mut self.rng, Some(&centroid), 0.6)
    }
}

/// A random unit vector, or one near `around` (noise of scale `spread`).
fn unit(rng: &mut fastrand::Rng, around: Option<&[f32]>, spread: f32) -> Vec<f32> {
    let mut v: Vec<f32> = (0..DIM)
        .map(|i| {
            let noise = (rng.f32() - 0.5) * 2.0 * spread / (DIM as f32).sqrt() * 3.0;
            around.map_or(0.0, |a| a[i]) + noise
        })
        .collect();
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter_mut().for_each(|x| *x /= norm);
    v
}

fn dir_size(path: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or_default()
}

async fn bench(n: usize) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = EmbeddedStore::open(&tmp.path().join("bench"), DIM).expect("open");
    let mut data = Data::new();
    let mut vectors = Vec::with_capacity(n);
    let mut texts = Vec::with_capacity(n);
    let started = Instant::now();
    let batch = 5_000;
    let mut doc = 0;
    while doc * batch < n {
        let chunks: Vec<EmbeddedChunk> = (doc * batch..((doc + 1) * batch).min(n))
            .map(|i| {
                let words: Vec<String> = (0..120).map(|_| data.word()).collect();
                let text = words.join(" ");
                let embedding = data.vector();
                vectors.push(embedding.clone());
                texts.push(words);
                let mut metadata = serde_json::Map::new();
                metadata.insert("shard".into(), (i % 10).into());
                EmbeddedChunk {
                    chunk: Chunk {
                        id: format!("c{i}"),
                        document_id: format!("d{}", i / 20),
                        text,
                        source: format!("/docs/file{}.pdf", i / 20),
                        pages: Some(corral_core::PageRange {
                            start: (i % 20) as u32 + 1,
                            end: (i % 20) as u32 + 1,
                        }),
                        heading_path: vec![],
                        byte_range: None,
                        content_hash: None,
                        document_hash: None,
                        metadata,
                    },
                    embedding,
                }
            })
            .collect();
        store.upsert(chunks).await.expect("upsert");
        doc += 1;
    }
    let insert = started.elapsed();
    if let Some(secs) = std::env::var("CORRAL_BENCH_SETTLE")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        std::thread::sleep(Duration::from_secs(secs));
    }
    let size = dir_size(tmp.path());

    // Queries: near a random chunk's vector, with three of its words.
    let mut rng = fastrand::Rng::with_seed(11);
    let queries: Vec<(String, Vec<f32>)> = (0..QUERIES)
        .map(|_| {
            let i = rng.usize(..n);
            let words = &texts[i];
            let text = (0..3)
                .map(|_| words[rng.usize(..words.len())].clone())
                .collect::<Vec<_>>()
                .join(" ");
            (text, unit(&mut rng, Some(&vectors[i]), 0.3))
        })
        .collect();

    // The first search loads the segments into memory; time it apart.
    let warm = Instant::now();
    let first = SearchQuery {
        text: queries[0].0.clone(),
        embedding: Some(queries[0].1.clone()),
        mode: SearchMode::Vector,
        fusion: Fusion::default(),
        filter: None,
        top_k: 10,
        min_score: None,
    };
    store.search(&first).await.expect("search");
    let warm = warm.elapsed();

    println!(
        "{n} chunks: inserted in {:.1} s ({:.0} chunks/s), {:.0} bytes on disk per chunk, first search (loads vectors) {:.0} ms",
        insert.as_secs_f64(),
        n as f64 / insert.as_secs_f64(),
        size as f64 / n as f64,
        warm.as_secs_f64() * 1e3
    );
    // `CORRAL_BENCH_ONLY=hybrid` (or vector, keyword) times one mode alone, e.g. under a profiler.
    let only = std::env::var("CORRAL_BENCH_ONLY").ok();
    for mode in [SearchMode::Vector, SearchMode::Keyword, SearchMode::Hybrid] {
        let name = format!("{mode:?}").to_lowercase();
        if only.as_ref().is_some_and(|only| *only != name) {
            continue;
        }
        for filtered in [false, true] {
            let mut times = Vec::with_capacity(QUERIES);
            for (text, embedding) in &queries {
                let q = query(text, embedding, mode, filtered);
                let t = Instant::now();
                store.search(&q).await.expect("search");
                times.push(t.elapsed());
            }
            times.sort();
            println!(
                "  {name:<8} {:<12} p50 {:>6.2} ms  p99 {:>6.2} ms",
                if filtered { "(filtered)" } else { "" },
                percentile(&times, 0.5).as_secs_f64() * 1e3,
                percentile(&times, 0.99).as_secs_f64() * 1e3
            );
        }
    }
    // Recall, apart from the timings: the brute force would evict the store from the caches.
    let mut recall_hits = 0usize;
    for (text, embedding) in &queries {
        let q = query(text, embedding, SearchMode::Vector, false);
        let hits = store.search(&q).await.expect("search");
        let exact = brute_force(&vectors, embedding, 10);
        recall_hits += hits
            .iter()
            .filter(|h| {
                let i: usize = h.chunk.id[1..].parse().unwrap_or(usize::MAX);
                exact.contains(&i)
            })
            .count();
    }
    println!(
        "  vector recall@10 against brute force: {:.4}",
        recall_hits as f64 / (QUERIES * 10) as f64
    );
}

fn query(text: &str, embedding: &[f32], mode: SearchMode, filtered: bool) -> SearchQuery {
    SearchQuery {
        text: text.to_owned(),
        embedding: Some(embedding.to_vec()),
        mode,
        fusion: Fusion::default(),
        filter: filtered.then(|| corral_core::Filter::eq("shard", 3)),
        top_k: 10,
        min_score: None,
    }
}

/// The exact top `k` by cosine, in f64.
fn brute_force(vectors: &[Vec<f32>], query: &[f32], k: usize) -> Vec<usize> {
    let qn = query
        .iter()
        .map(|x| f64::from(*x).powi(2))
        .sum::<f64>()
        .sqrt();
    let mut scored: Vec<(f64, usize)> = vectors
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let dot: f64 = v
                .iter()
                .zip(query)
                .map(|(a, b)| f64::from(*a) * f64::from(*b))
                .sum();
            let vn = v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
            (dot / (qn * vn), i)
        })
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
    scored.into_iter().take(k).map(|(_, i)| i).collect()
}
