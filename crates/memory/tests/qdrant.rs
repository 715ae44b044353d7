//! The Qdrant store against a real Qdrant server: the shared behaviour suite, filters on awkward
//! metadata checked against `Filter::matches`, server-side RRF checked against our fusion, and
//! the errors a user meets first.
//!
//! Runs only when `QDRANT_URL` names a Qdrant gRPC endpoint (e.g. `http://127.0.0.1:6334`);
//! otherwise each test says it was skipped. Collections are named `corral_test_*` and deleted
//! at the end of each test that passes.
#![cfg(feature = "qdrant")]

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use corral_core::error::CapabilityError;
use corral_core::{
    Chunk, EmbeddedChunk, ErrorKind, Filter, Fusion, SearchMode, SearchQuery, VectorStore,
    VectorStoreError,
};
use corral_memory::conformance::{self, StoreHarness};
use corral_memory::fusion;
use corral_memory::qdrant::{QdrantConfig, QdrantProvider};
use serde_json::{Value, json};

/// The server's URL, or `None` (and a note on stderr) when the tests are to be skipped.
fn server(test: &str) -> Option<String> {
    match std::env::var("QDRANT_URL") {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            eprintln!("{test}: skipped: QDRANT_URL is not set");
            None
        }
    }
}

/// A provider for the test server, with payload indexes on `metadata_indexes`; small upsert
/// batches, so that the suite's writes span several.
fn provider_with(url: &str, metadata_indexes: Value) -> QdrantProvider {
    let config: QdrantConfig = serde_json::from_value(json!({
        "url": url,
        "api_key": std::env::var("QDRANT_API_KEY").ok(),
        "collection_prefix": "corral_test_",
        "upsert_batch_size": 3,
        "metadata_indexes": metadata_indexes,
    }))
    .expect("config");
    QdrantProvider::new(config).expect("provider")
}

fn provider(url: &str) -> QdrantProvider {
    provider_with(url, json!({}))
}

/// The suite's metadata, indexed as a user would: Qdrant may then answer filters from the
/// indexes, which must not change what they match.
fn suite_provider(url: &str) -> QdrantProvider {
    provider_with(
        url,
        json!({ "lang": "keyword", "n": "integer", "year": "integer" }),
    )
}

/// A store name no other run uses.
fn unique_name(what: &str) -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{what}_{}_{nanos}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

struct Harness {
    url: String,
    provider: Mutex<Arc<QdrantProvider>>,
    /// Each store handed out, by the address of its `Arc`, with its name and dimension.
    stores: Mutex<Vec<(usize, String, usize)>>,
}

impl Harness {
    fn new(url: String) -> Self {
        Self {
            provider: Mutex::new(Arc::new(suite_provider(&url))),
            url,
            stores: Mutex::new(Vec::new()),
        }
    }

    fn remember(&self, store: &Arc<dyn VectorStore>, name: String, dimension: usize) {
        let address = Arc::as_ptr(store) as *const () as usize;
        self.stores
            .lock()
            .expect("lock")
            .push((address, name, dimension));
    }

    async fn delete_all(&self) {
        let names: BTreeSet<String> = self
            .stores
            .lock()
            .expect("lock")
            .iter()
            .map(|(_, name, _)| name.clone())
            .collect();
        let provider = self.provider.lock().expect("lock").clone();
        for name in names {
            provider.delete_store(&name).await.expect("delete a store");
        }
    }
}

#[async_trait]
impl StoreHarness for Harness {
    async fn fresh(&self, dimension: usize) -> Arc<dyn VectorStore> {
        let name = unique_name("suite");
        let provider = self.provider.lock().expect("lock").clone();
        let store: Arc<dyn VectorStore> = Arc::new(
            provider
                .open(&name, dimension)
                .await
                .expect("open a fresh store"),
        );
        self.remember(&store, name, dimension);
        store
    }

    async fn reopen(&self, store: Arc<dyn VectorStore>) -> Arc<dyn VectorStore> {
        let address = Arc::as_ptr(&store) as *const () as usize;
        drop(store);
        let (name, dimension) = self
            .stores
            .lock()
            .expect("lock")
            .iter()
            .rev()
            .find(|(a, _, _)| *a == address)
            .map(|(_, name, dimension)| (name.clone(), *dimension))
            .expect("a store this harness opened");
        // A new provider and client, as a new process would have.
        let provider = Arc::new(suite_provider(&self.url));
        *self.provider.lock().expect("lock") = provider.clone();
        let store: Arc<dyn VectorStore> =
            Arc::new(provider.open(&name, dimension).await.expect("reopen"));
        self.remember(&store, name, dimension);
        store
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behaves_like_every_store() {
    let Some(url) = server("behaves_like_every_store") else {
        return;
    };
    let harness = Harness::new(url);
    conformance::run_all(&harness).await;
    harness.delete_all().await;
}

fn embedded(
    id: &str,
    doc: &str,
    text: &str,
    embedding: Vec<f32>,
    metadata: Value,
) -> EmbeddedChunk {
    let Value::Object(metadata) = metadata else {
        panic!("metadata must be an object");
    };
    EmbeddedChunk {
        chunk: Chunk {
            id: id.to_string(),
            document_id: doc.to_string(),
            text: text.to_string(),
            source: format!("{doc}.md"),
            pages: None,
            heading_path: Vec::new(),
            byte_range: None,
            content_hash: None,
            document_hash: None,
            metadata,
        },
        embedding,
    }
}

/// Metadata whose JSON equality and Qdrant's matching part ways unless the mapping is careful.
fn awkward() -> Vec<EmbeddedChunk> {
    let rows = [
        (
            "int3",
            json!({ "x": 3, "tags": ["a", "b"], "a.b": "dot", "flag": true }),
        ),
        ("float3", json!({ "x": 3.0, "tags": ["a"], "flag": false })),
        (
            "float2_5",
            json!({ "x": 2.5, "tags": "a", "nested": { "k": [1, 2], "j": null } }),
        ),
        ("str3", json!({ "x": "3", "tags": [], "empty": "" })),
        ("null", json!({ "x": null, "big": u64::MAX })),
        ("none", json!({})),
        (
            "neg",
            json!({ "x": -7, "nested": { "j": null, "k": [1, 2] }, "ключ": "значение" }),
        ),
    ];
    rows.iter()
        .enumerate()
        .map(|(i, (id, metadata))| {
            let mut v = vec![0.1; 4];
            v[i % 4] = 1.0;
            embedded(id, "awkward", "common words here", v, metadata.clone())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_agree_with_the_reference_on_awkward_metadata() {
    let Some(url) = server("filters_agree_with_the_reference_on_awkward_metadata") else {
        return;
    };
    // Without metadata indexes, and with indexes on the keys whose values share one type.
    let indexed =
        json!({ "flag": "bool", "empty": "keyword", "a.b": "keyword", "ключ": "keyword" });
    for indexes in [json!({}), indexed] {
        filters_agree(&provider_with(&url, indexes)).await;
    }
}

async fn filters_agree(provider: &QdrantProvider) {
    let name = unique_name("filters");
    let store = provider.open(&name, 4).await.expect("open");
    let all = awkward();
    store.upsert(all.clone()).await.expect("upsert");
    let eq = |k: &str, v: Value| Filter::Eq {
        key: k.into(),
        value: v,
    };
    let range = |k: &str, gte, lte| Filter::Range {
        key: k.into(),
        gte,
        lte,
    };
    let not = |f: Filter| Filter::Not {
        filter: Box::new(f),
    };
    let filters = vec![
        eq("x", json!(3)),
        eq("x", json!(3.0)),
        eq("x", json!(2.5)),
        eq("x", json!("3")),
        eq("x", json!(null)),
        eq("x", json!(-7)),
        not(eq("x", json!(null))),
        not(eq("x", json!(3))),
        eq("tags", json!("a")),
        eq("tags", json!(["a", "b"])),
        eq("tags", json!(["b", "a"])),
        eq("tags", json!([])),
        eq("nested", json!({ "k": [1, 2], "j": null })),
        eq("a.b", json!("dot")),
        eq("ключ", json!("значение")),
        eq("big", json!(u64::MAX)),
        eq("flag", json!(false)),
        eq("empty", json!("")),
        eq("page", json!(1)),
        eq("source", json!("awkward.md")),
        eq("source", json!(1)),
        Filter::In {
            key: "x".into(),
            values: vec![json!(3.0), json!("3"), json!(null)],
        },
        Filter::In {
            key: "x".into(),
            values: vec![],
        },
        range("x", Some(2.5), Some(3.0)),
        range("x", None, None),
        range("x", Some(-10.0), Some(0.0)),
        range("tags", None, None),
        not(range("x", Some(3.0), None)),
        range("page", None, None),
        Filter::And { filters: vec![] },
        Filter::Or { filters: vec![] },
        not(Filter::Or { filters: vec![] }),
        Filter::Or {
            filters: vec![eq("flag", json!(true)), not(eq("missing", json!(1)))],
        },
        Filter::And {
            filters: vec![not(eq("x", json!(3))), not(eq("x", json!(3.0)))],
        },
    ];
    let mut disagreements = Vec::new();
    for filter in &filters {
        let expected: BTreeSet<String> = all
            .iter()
            .filter(|c| filter.matches(&c.chunk))
            .map(|c| c.chunk.id.clone())
            .collect();
        for mode in [SearchMode::Vector, SearchMode::Keyword, SearchMode::Hybrid] {
            let q = SearchQuery {
                text: "common".into(),
                embedding: Some(vec![0.5; 4]),
                mode,
                fusion: Fusion::default(),
                filter: Some(filter.clone()),
                top_k: 20,
                min_score: None,
            };
            let got: BTreeSet<String> = store
                .search(&q)
                .await
                .unwrap_or_else(|e| panic!("{mode:?} with {filter:?}: {e}"))
                .into_iter()
                .map(|h| h.chunk.id)
                .collect();
            if got != expected {
                disagreements.push(format!(
                    "{mode:?} {filter:?}: expected {expected:?}, got {got:?}"
                ));
            }
        }
    }
    provider.delete_store(&name).await.expect("delete");
    assert!(disagreements.is_empty(), "{}", disagreements.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hybrid_scores_are_our_fusion_of_both_rankings() {
    let Some(url) = server("hybrid_scores_are_our_fusion_of_both_rankings") else {
        return;
    };
    let provider = provider(&url);
    let name = unique_name("fusion");
    let store = provider.open(&name, 4).await.expect("open");
    // No two chunks tie in either ranking (a tie's order is up to the store, and it moves
    // ranks, hence fused scores): the keyword scores differ by term frequency or length.
    let texts = [
        "river bank river",
        "mountain river pass",
        "ocean wave",
        "river delta",
        "forest trail by the river",
        "desert dune",
        "valley river river river",
    ];
    let chunks: Vec<EmbeddedChunk> = texts
        .iter()
        .enumerate()
        .map(|(i, text)| {
            let mut v = vec![0.05 * i as f32; 4];
            v[i % 4] += 1.0;
            embedded(&format!("c{i}"), "d", text, v, json!({}))
        })
        .collect();
    store.upsert(chunks).await.expect("upsert");
    let embedding = vec![1.0, 0.3, 0.2, 0.1];
    let search = |mode: SearchMode, fusion: Fusion, top_k: usize| {
        let store = &store;
        let embedding = embedding.clone();
        async move {
            let q = SearchQuery {
                text: "river".into(),
                embedding: Some(embedding),
                mode,
                fusion,
                filter: None,
                top_k,
                min_score: None,
            };
            store.search(&q).await.expect("search")
        }
    };
    let n = fusion::candidates(3);
    let ranking = |hits: Vec<corral_core::SearchHit>| -> Vec<(String, f32)> {
        hits.into_iter().map(|h| (h.chunk.id, h.score)).collect()
    };
    let vector = ranking(search(SearchMode::Vector, Fusion::default(), n).await);
    let keyword = ranking(search(SearchMode::Keyword, Fusion::default(), n).await);
    assert_eq!(keyword.len(), 5, "five chunks say river: {keyword:?}");
    for list in [&vector, &keyword] {
        assert!(
            list.windows(2).all(|w| w[0].1 > w[1].1),
            "a tie in {list:?}"
        );
    }
    // k = 60 is fused by the server, k = 59.5 and weighted fusion here: all must be ours.
    for f in [
        Fusion::Rrf { k: 60.0 },
        Fusion::Rrf { k: 59.5 },
        Fusion::Weighted { vector_weight: 0.3 },
    ] {
        let expected: Vec<(String, f32)> = fusion::fuse(&vector, &keyword, f)
            .into_iter()
            .take(3)
            .collect();
        let got = ranking(search(SearchMode::Hybrid, f, 3).await);
        assert_eq!(got.len(), expected.len(), "{f:?}");
        for ((gi, gs), (ei, es)) in got.iter().zip(&expected) {
            assert!(
                (gs - es).abs() < 1e-6,
                "{f:?}: got {got:?}, expected {expected:?}"
            );
            // Equal scores may come in either order; different ones may not.
            if gi != ei {
                assert!(
                    expected
                        .iter()
                        .any(|(i, s)| i == gi && (s - gs).abs() < 1e-6),
                    "{f:?}: got {got:?}, expected {expected:?}"
                );
            }
        }
    }
    provider.delete_store(&name).await.expect("delete");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collection_of_another_dimension_is_refused_by_name() {
    let Some(url) = server("a_collection_of_another_dimension_is_refused_by_name") else {
        return;
    };
    let provider = provider(&url);
    let name = unique_name("dims");
    provider.open(&name, 8).await.expect("create with 8");
    provider.open(&name, 8).await.expect("open again with 8");
    let error = provider
        .open(&name, 4)
        .await
        .expect_err("open with 4 must fail");
    assert_eq!(error.kind(), ErrorKind::InvalidRequest);
    let message = error.to_string();
    assert!(
        message.contains(&provider.collection_name(&name)) && message.contains('8'),
        "{message}"
    );
    assert!(provider.delete_store(&name).await.expect("delete"));
    assert!(!provider.delete_store(&name).await.expect("delete again"));
}

/// Needs no server: nothing listens on port 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_is_a_transient_error_that_names_the_collection() {
    let config: QdrantConfig = serde_json::from_value(json!({
        "url": "http://127.0.0.1:1",
        "api_key": "sekrit-key-123",
        "connect_timeout_secs": 2,
    }))
    .expect("config");
    let provider = QdrantProvider::new(config).expect("building makes no connection");
    let error = provider
        .open("docs", 8)
        .await
        .expect_err("nothing listens on port 1");
    assert_eq!(error.kind(), ErrorKind::Transient, "{error:?}");
    let shown = format!("{error} {error:?}");
    assert!(shown.contains("corral_docs"), "{shown}");
    assert!(!shown.contains("sekrit"), "{shown}");
    assert!(matches!(error, VectorStoreError::Provider(_)));
}

/// Runs when the server wants a key (`QDRANT_API_KEY` set beside `QDRANT_URL`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_api_key_is_an_auth_error_that_does_not_show_it() {
    let Some(url) = server("a_wrong_api_key_is_an_auth_error_that_does_not_show_it") else {
        return;
    };
    if std::env::var("QDRANT_API_KEY").is_err() {
        eprintln!(
            "a_wrong_api_key_is_an_auth_error_that_does_not_show_it: skipped: QDRANT_API_KEY is not set"
        );
        return;
    }
    let config: QdrantConfig = serde_json::from_value(json!({
        "url": url,
        "api_key": "wrong-sekrit-key",
        "collection_prefix": "corral_test_",
    }))
    .expect("config");
    let provider = QdrantProvider::new(config).expect("provider");
    let error = provider
        .open(&unique_name("auth"), 4)
        .await
        .expect_err("a wrong key is refused");
    assert_eq!(error.kind(), ErrorKind::Auth, "{error:?}");
    let shown = format!("{error} {error:?}");
    assert!(!shown.contains("sekrit"), "{shown}");
    assert!(shown.contains("corral_test_auth"), "{shown}");
}
