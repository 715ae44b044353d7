//! The ingestion pipeline on real files with a deterministic embedder double: what is added,
//! replaced, left alone, pruned, and what a bad file costs (only itself).

use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use corral_core::{EmbedError, Embedder, Embedding, SearchMode, SearchQuery, VectorStore};
use corral_memory::ingest::{IngestOptions, Ingestor, NoProgress, TextDocument};
use corral_memory::{ChunkConfig, EmbeddedStore};

/// Bag-of-words vectors: each word adds 1 to a hashed coordinate. Counts its calls.
#[derive(Default)]
struct Words {
    calls: AtomicUsize,
    texts: AtomicUsize,
}

const DIM: usize = 64;

#[async_trait]
impl Embedder for Words {
    fn dimension(&self) -> usize {
        DIM
    }
    fn max_input_tokens(&self) -> usize {
        100
    }
    async fn embed(&self, inputs: &[String]) -> Result<Vec<Embedding>, EmbedError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.texts.fetch_add(inputs.len(), Ordering::SeqCst);
        Ok(inputs
            .iter()
            .map(|text| {
                let mut v = vec![0.0; DIM];
                for word in text.split_whitespace() {
                    let h = word
                        .to_lowercase()
                        .bytes()
                        .fold(7usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize));
                    v[h % DIM] += 1.0;
                }
                v
            })
            .collect())
    }
}

fn setup() -> (tempfile::TempDir, Arc<EmbeddedStore>, Arc<Words>, Ingestor) {
    let dir = tempfile::tempdir().expect("tempdir");
    let docs = dir.path().join("docs");
    fs::create_dir_all(docs.join("sub")).expect("docs");
    fs::write(
        docs.join("a.md"),
        "# Alpha\n\nThe alpha document talks about rivers.\n",
    )
    .expect("a");
    // Long enough for several chunks of at most 100 (capped from 512) tokens.
    let long: String = (0..400).map(|i| format!("word{i} ")).collect();
    fs::write(docs.join("sub/long.txt"), &long).expect("long");
    fs::write(docs.join("sub/bad.txt"), b"ok\xff\xfe").expect("bad");
    fs::write(docs.join("ignored.bin"), b"\0\0").expect("bin");
    let store = Arc::new(EmbeddedStore::open(&dir.path().join("store"), DIM).expect("store"));
    let embedder = Arc::new(Words::default());
    let ingestor = Ingestor::new(
        store.clone(),
        embedder.clone(),
        IngestOptions {
            embed_batch: 4,
            commit_chunks: 3,
            ..IngestOptions::default()
        },
    )
    .expect("ingestor");
    (dir, store, embedder, ingestor)
}

async fn keyword(store: &EmbeddedStore, text: &str) -> usize {
    store
        .search(&SearchQuery {
            text: text.into(),
            embedding: None,
            mode: SearchMode::Keyword,
            fusion: Default::default(),
            filter: None,
            top_k: 100,
            min_score: None,
        })
        .await
        .expect("search")
        .len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingests_incrementally_and_prunes() {
    let (dir, store, embedder, ingestor) = setup();
    let root = dir.path().join("docs");
    assert_eq!(
        ingestor.options().chunking,
        ChunkConfig {
            max_tokens: 100,
            overlap_tokens: 25
        },
        "capped at the embedder's input length, overlap in proportion"
    );

    let report = ingestor
        .ingest_paths(std::slice::from_ref(&root), &NoProgress)
        .await
        .expect("ingest");
    assert_eq!((report.added, report.replaced, report.unchanged), (2, 0, 0));
    assert_eq!(report.failed.len(), 1, "{:?}", report.failed);
    assert!(report.failed[0].to_string().contains("bad.txt"));
    assert!(report.failed[0].to_string().contains("UTF-8"));
    assert_eq!(report.skipped.len(), 1, "{:?}", report.skipped);
    assert!(report.chunks >= 6, "{} chunks", report.chunks);
    assert_eq!(embedder.texts.load(Ordering::SeqCst), report.chunks);
    let docs = store.documents().await.expect("documents");
    assert_eq!(docs.len(), 2);
    assert_eq!(docs.iter().map(|d| d.chunks).sum::<usize>(), report.chunks);
    assert_eq!(keyword(&store, "rivers").await, 1);

    // Unchanged: nothing embedded, nothing written.
    let calls = embedder.calls.load(Ordering::SeqCst);
    let report = ingestor
        .ingest_paths(std::slice::from_ref(&root), &NoProgress)
        .await
        .expect("again");
    assert_eq!((report.added, report.replaced, report.unchanged), (0, 0, 2));
    assert_eq!(embedder.calls.load(Ordering::SeqCst), calls);

    // Changed: replaced whole. Broken: the old version stays.
    fs::write(root.join("a.md"), "# Alpha\n\nNow about mountains.\n").expect("change");
    fs::write(root.join("sub/long.txt"), b"\xff broken now").expect("break");
    let report = ingestor
        .ingest_paths(std::slice::from_ref(&root), &NoProgress)
        .await
        .expect("changed");
    assert_eq!((report.added, report.replaced, report.unchanged), (0, 1, 0));
    assert_eq!(report.failed.len(), 2);
    assert_eq!(keyword(&store, "rivers").await, 0);
    assert_eq!(keyword(&store, "mountains").await, 1);
    assert!(
        keyword(&store, "word7").await >= 1,
        "the broken file's old chunks are kept"
    );

    // Gone: kept until prune.
    fs::remove_file(root.join("a.md")).expect("remove");
    let report = ingestor
        .ingest_paths(std::slice::from_ref(&root), &NoProgress)
        .await
        .expect("gone");
    assert!(report.pruned.is_empty());
    assert_eq!(keyword(&store, "mountains").await, 1);
    let pruning = Ingestor::new(
        store.clone(),
        embedder.clone(),
        IngestOptions {
            prune: true,
            ..IngestOptions::default()
        },
    )
    .expect("ingestor");
    let report = pruning
        .ingest_paths(std::slice::from_ref(&root), &NoProgress)
        .await
        .expect("prune");
    assert_eq!(report.pruned.len(), 1);
    assert!(report.pruned[0].ends_with("a.md"));
    assert_eq!(keyword(&store, "mountains").await, 0);
    assert_eq!(store.documents().await.expect("documents").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_documents_keep_their_ids() {
    let (_dir, store, _embedder, ingestor) = setup();
    let docs = vec![
        TextDocument {
            id: "d1".into(),
            source: "corpus:d1".into(),
            title: Some("Tides".into()),
            text: "Tides rise twice a day.".into(),
            metadata: Default::default(),
        },
        TextDocument {
            id: "d2".into(),
            source: "corpus:d2".into(),
            title: None,
            text: "   ".into(),
            metadata: Default::default(),
        },
    ];
    let report = ingestor
        .ingest_texts(docs, &NoProgress)
        .await
        .expect("ingest");
    assert_eq!(report.added, 1);
    assert_eq!(report.failed.len(), 1, "an empty text is reported");
    let stored = store.documents().await.expect("documents");
    assert_eq!(stored[0].id, "d1");
    assert_eq!(stored[0].source, "corpus:d1");
    assert!(Path::new(&stored[0].source).is_relative());
}

#[test]
fn bad_settings_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(EmbeddedStore::open(dir.path(), DIM).expect("store"));
    let bad = IngestOptions {
        chunking: ChunkConfig {
            max_tokens: 10,
            overlap_tokens: 10,
        },
        ..IngestOptions::default()
    };
    let err = Ingestor::new(store, Arc::new(Words::default()), bad).expect_err("refused");
    assert!(err.to_string().contains("overlap_tokens"), "{err}");
}
