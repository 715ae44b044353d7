//! The behaviour every [`VectorStore`] must show, as one suite that each store's tests run
//! (feature `testing`): the embedded store always, Qdrant when a server is given.
//!
//! Vectors are small (8 dimensions) and chosen by hand, so the expected order of every search is
//! known; scores are cosine similarities for vector search.

use std::collections::BTreeSet;
use std::sync::Arc;

use async_trait::async_trait;
use corral_core::{
    Chunk, EmbeddedChunk, Filter, Fusion, PageRange, SearchHit, SearchMode, SearchQuery,
    StoredDocument, VectorStore, VectorStoreError,
};
use serde_json::json;

const DIM: usize = 8;

/// How the suite gets stores.
#[async_trait]
pub trait StoreHarness: Send + Sync {
    /// A new, empty store for `dimension`-dimensional vectors (a fresh name each call).
    async fn fresh(&self, dimension: usize) -> Arc<dyn VectorStore>;
    /// The same store opened again as a new process would, after dropping `store`.
    async fn reopen(&self, store: Arc<dyn VectorStore>) -> Arc<dyn VectorStore>;
}

/// Every check, each on a fresh store.
pub async fn run_all(harness: &dyn StoreHarness) {
    upsert_then_search_by_vector(harness).await;
    upsert_replaces_a_chunk_with_the_same_id(harness).await;
    delete_document_removes_it_from_every_mode(harness).await;
    replace_documents_swaps_all_chunks(harness).await;
    filters_agree_with_the_reference(harness).await;
    keyword_search_ranks_by_terms(harness).await;
    hybrid_finds_what_either_mode_alone_misses(harness).await;
    weighted_fusion_follows_its_weight(harness).await;
    min_score_and_top_k(harness).await;
    bad_requests_are_errors(harness).await;
    documents_are_listed(harness).await;
    data_survives_reopening(harness).await;
}

/// A unit vector along axis `i`, tilted towards axis `j` by `tilt`.
pub fn axis(i: usize, j: usize, tilt: f32) -> Vec<f32> {
    let mut v = vec![0.0; DIM];
    v[i % DIM] = 1.0;
    v[j % DIM] += tilt;
    v
}

/// A chunk of document `doc`, number `n`, with `text`, on page `page`, with metadata.
pub fn chunk(doc: &str, n: usize, text: &str, embedding: Vec<f32>) -> EmbeddedChunk {
    let mut metadata = serde_json::Map::new();
    metadata.insert("n".into(), json!(n));
    metadata.insert(
        "lang".into(),
        json!(if n.is_multiple_of(2) { "en" } else { "de" }),
    );
    if n.is_multiple_of(3) {
        metadata.insert("year".into(), json!(2000 + n));
    }
    EmbeddedChunk {
        chunk: Chunk {
            id: format!("{doc}:{n}"),
            document_id: doc.to_string(),
            text: text.to_string(),
            source: format!("docs/{doc}.pdf"),
            pages: Some(PageRange {
                start: n as u32 + 1,
                end: n as u32 + 2,
            }),
            heading_path: vec!["Intro".into(), format!("Part {n}")],
            byte_range: Some(n * 100..n * 100 + text.len()),
            content_hash: Some(format!("hash-{doc}-{n}")),
            document_hash: Some(format!("dochash-{doc}")),
            metadata,
        },
        embedding,
    }
}

fn query(mode: SearchMode, text: &str, embedding: Option<Vec<f32>>, top_k: usize) -> SearchQuery {
    SearchQuery {
        text: text.to_string(),
        embedding,
        mode,
        fusion: Fusion::default(),
        filter: None,
        top_k,
        min_score: None,
    }
}

fn ids(hits: &[SearchHit]) -> Vec<&str> {
    hits.iter().map(|h| h.chunk.id.as_str()).collect()
}

async fn search(store: &dyn VectorStore, q: &SearchQuery) -> Vec<SearchHit> {
    let hits = store
        .search(q)
        .await
        .unwrap_or_else(|e| panic!("search {q:?} failed: {e}"));
    assert!(hits.len() <= q.top_k, "more than top_k hits for {q:?}");
    for pair in hits.windows(2) {
        assert!(
            pair[0].score >= pair[1].score,
            "hits not best first for {q:?}: {:?}",
            hits.iter().map(|h| h.score).collect::<Vec<_>>()
        );
    }
    hits
}

async fn upsert(store: &dyn VectorStore, chunks: Vec<EmbeddedChunk>) {
    store.upsert(chunks).await.expect("upsert");
}

/// Eight chunks of two documents, chunk `n` pointing along axis `n`.
fn eight() -> Vec<EmbeddedChunk> {
    let words = [
        "alpha river bank",
        "bravo mountain pass",
        "charlie ocean wave",
        "delta river delta",
        "echo forest trail",
        "foxtrot desert dune",
        "golf valley river",
        "hotel glacier ice",
    ];
    (0..8)
        .map(|n| {
            let doc = if n < 4 { "a" } else { "b" };
            chunk(doc, n, words[n], axis(n, n + 1, 0.1))
        })
        .collect()
}

pub async fn upsert_then_search_by_vector(harness: &dyn StoreHarness) {
    let store = harness.fresh(DIM).await;
    let all = eight();
    upsert(&*store, all.clone()).await;
    let hits = search(
        &*store,
        &query(SearchMode::Vector, "", Some(axis(2, 3, 0.1)), 3),
    )
    .await;
    assert_eq!(hits.len(), 3);
    assert_eq!(hits[0].chunk, all[2].chunk, "the whole chunk comes back");
    assert!(
        (hits[0].score - 1.0).abs() < 1e-3,
        "cosine of equal vectors"
    );
    // Axis 3 is the tilt of chunk 2's vector, and chunk 1's tilt is towards axis 2.
    let rest: BTreeSet<&str> = ids(&hits[1..]).into_iter().collect();
    assert_eq!(rest, BTreeSet::from(["a:1", "a:3"]));
}

pub async fn upsert_replaces_a_chunk_with_the_same_id(harness: &dyn StoreHarness) {
    let store = harness.fresh(DIM).await;
    upsert(&*store, eight()).await;
    let mut changed = chunk("a", 2, "charlie changed text", axis(5, 6, 0.0));
    changed.chunk.content_hash = Some("new".into());
    upsert(&*store, vec![changed.clone()]).await;
    let hits = search(
        &*store,
        &query(SearchMode::Vector, "", Some(axis(5, 6, 0.0)), 8),
    )
    .await;
    let twos: Vec<&SearchHit> = hits.iter().filter(|h| h.chunk.id == "a:2").collect();
    assert_eq!(twos.len(), 1, "one chunk per id");
    assert_eq!(twos[0].chunk, changed.chunk);
    let keyword = search(&*store, &query(SearchMode::Keyword, "charlie", None, 8)).await;
    assert_eq!(ids(&keyword), ["a:2"]);
    assert_eq!(keyword[0].chunk.text, "charlie changed text");
    assert!(
        search(&*store, &query(SearchMode::Keyword, "ocean", None, 8))
            .await
            .is_empty(),
        "the old text is gone from the keyword index"
    );
}

pub async fn delete_document_removes_it_from_every_mode(harness: &dyn StoreHarness) {
    let store = harness.fresh(DIM).await;
    upsert(&*store, eight()).await;
    assert_eq!(store.delete_document("a").await.expect("delete"), 4);
    assert_eq!(store.delete_document("a").await.expect("delete again"), 0);
    assert_eq!(store.delete_document("nope").await.expect("delete"), 0);
    for mode in [SearchMode::Vector, SearchMode::Keyword, SearchMode::Hybrid] {
        let hits = search(&*store, &query(mode, "river", Some(axis(0, 1, 0.1)), 8)).await;
        assert!(
            hits.iter().all(|h| h.chunk.document_id == "b"),
            "{mode:?}: {:?}",
            ids(&hits)
        );
    }
    let docs = store.documents().await.expect("documents");
    assert_eq!(docs.len(), 1);
    assert_eq!(docs[0].id, "b");
}

pub async fn replace_documents_swaps_all_chunks(harness: &dyn StoreHarness) {
    let store = harness.fresh(DIM).await;
    upsert(&*store, eight()).await;
    let mut new = chunk("a", 9, "india jungle canopy", axis(0, 1, 0.1));
    new.chunk.document_hash = Some("dochash-a-v2".into());
    store
        .replace_documents(&["a".to_string()], vec![new.clone()])
        .await
        .expect("replace");
    let stray = chunk("z", 1, "of another document", axis(0, 1, 0.0));
    assert!(
        store
            .replace_documents(&["a".to_string()], vec![stray])
            .await
            .is_err(),
        "a chunk of a document not being replaced"
    );
    let hits = search(
        &*store,
        &query(SearchMode::Vector, "", Some(axis(0, 1, 0.1)), 8),
    )
    .await;
    let a: Vec<&str> = hits
        .iter()
        .filter(|h| h.chunk.document_id == "a")
        .map(|h| h.chunk.id.as_str())
        .collect();
    assert_eq!(a, ["a:9"]);
    let docs = store.documents().await.expect("documents");
    assert_eq!(
        docs[0],
        StoredDocument {
            id: "a".into(),
            source: "docs/a.pdf".into(),
            document_hash: Some("dochash-a-v2".into()),
            chunks: 1
        }
    );
}

pub async fn filters_agree_with_the_reference(harness: &dyn StoreHarness) {
    let store = harness.fresh(DIM).await;
    let all = eight();
    upsert(&*store, all.clone()).await;
    let range = |key: &str, gte, lte| Filter::Range {
        key: key.into(),
        gte,
        lte,
    };
    let filters = vec![
        Filter::eq("lang", "de"),
        Filter::eq("document_id", "b"),
        Filter::eq("source", "docs/a.pdf"),
        Filter::eq("id", "b:5"),
        Filter::eq("n", 3),
        Filter::eq("missing", 1),
        Filter::In {
            key: "n".into(),
            values: vec![json!(1), json!(6), json!(42)],
        },
        range("page", Some(3.0), Some(5.0)),
        range("year", Some(2003.0), None),
        range("n", None, Some(2.0)),
        Filter::Not {
            filter: Box::new(Filter::eq("year", 2003)),
        },
        Filter::And {
            filters: vec![Filter::eq("document_id", "a"), Filter::eq("lang", "en")],
        },
        Filter::Or {
            filters: vec![Filter::eq("n", 7), range("page", None, Some(1.0))],
        },
    ];
    for filter in filters {
        let expected: BTreeSet<String> = all
            .iter()
            .filter(|c| filter.matches(&c.chunk))
            .map(|c| c.chunk.id.clone())
            .collect();
        for mode in [SearchMode::Vector, SearchMode::Keyword, SearchMode::Hybrid] {
            // Every chunk has one of these words, so keyword search can find each of them.
            let text = "alpha bravo charlie delta echo foxtrot golf hotel";
            let mut q = query(mode, text, Some(axis(0, 1, 0.0)), 8);
            q.filter = Some(filter.clone());
            let got: BTreeSet<String> = search(&*store, &q)
                .await
                .into_iter()
                .map(|h| h.chunk.id)
                .collect();
            assert_eq!(got, expected, "{mode:?} with {filter:?}");
        }
    }
}

pub async fn keyword_search_ranks_by_terms(harness: &dyn StoreHarness) {
    let store = harness.fresh(DIM).await;
    upsert(&*store, eight()).await;
    // "delta" twice in chunk 3; "river" in chunks 0, 3 and 6.
    let hits = search(&*store, &query(SearchMode::Keyword, "delta", None, 8)).await;
    assert_eq!(ids(&hits), ["a:3"]);
    let hits = search(&*store, &query(SearchMode::Keyword, "River", None, 8)).await;
    let got: BTreeSet<&str> = ids(&hits).into_iter().collect();
    assert_eq!(
        got,
        BTreeSet::from(["a:0", "a:3", "b:6"]),
        "case-insensitive"
    );
    let hits = search(
        &*store,
        &query(SearchMode::Keyword, "glacier river", None, 8),
    )
    .await;
    assert_eq!(hits.len(), 4);
    assert!(
        search(&*store, &query(SearchMode::Keyword, "zeppelin", None, 8))
            .await
            .is_empty()
    );
    assert!(
        search(&*store, &query(SearchMode::Keyword, "  ", None, 8))
            .await
            .is_empty(),
        "a query without terms finds nothing"
    );
}

pub async fn hybrid_finds_what_either_mode_alone_misses(harness: &dyn StoreHarness) {
    let store = harness.fresh(DIM).await;
    let mut all = eight();
    // The exact term lives in a chunk whose vector points away from the query.
    all.push(chunk(
        "c",
        8,
        "error code ZX-4471 in the manual",
        axis(7, 6, 0.1),
    ));
    upsert(&*store, all).await;
    let embedding = Some(axis(0, 1, 0.1));
    let text = "what does ZX-4471 mean";

    let vector = search(
        &*store,
        &query(SearchMode::Vector, text, embedding.clone(), 2),
    )
    .await;
    assert!(
        !ids(&vector).contains(&"c:8"),
        "vector alone misses the term"
    );
    assert_eq!(vector[0].chunk.id, "a:0");
    let keyword = search(
        &*store,
        &query(SearchMode::Keyword, text, embedding.clone(), 2),
    )
    .await;
    assert_eq!(ids(&keyword), ["c:8"], "keyword alone misses the meaning");
    let hybrid = search(&*store, &query(SearchMode::Hybrid, text, embedding, 2)).await;
    let got: BTreeSet<&str> = ids(&hybrid).into_iter().collect();
    assert_eq!(got, BTreeSet::from(["a:0", "c:8"]));
}

pub async fn weighted_fusion_follows_its_weight(harness: &dyn StoreHarness) {
    let store = harness.fresh(DIM).await;
    upsert(&*store, eight()).await;
    // Vector prefers chunk 6 (its axis); keyword prefers chunk 3 ("delta" twice).
    let embedding = Some(axis(6, 7, 0.1));
    for (weight, first) in [(1.0, "b:6"), (0.0, "a:3")] {
        let mut q = query(SearchMode::Hybrid, "delta", embedding.clone(), 3);
        q.fusion = Fusion::Weighted {
            vector_weight: weight,
        };
        let hits = search(&*store, &q).await;
        assert_eq!(hits[0].chunk.id, first, "vector_weight {weight}");
    }
}

pub async fn min_score_and_top_k(harness: &dyn StoreHarness) {
    let store = harness.fresh(DIM).await;
    upsert(&*store, eight()).await;
    let mut q = query(SearchMode::Vector, "", Some(axis(4, 5, 0.1)), 8);
    q.min_score = Some(0.5);
    let hits = search(&*store, &q).await;
    assert!(hits.iter().all(|h| h.score >= 0.5));
    assert_eq!(hits[0].chunk.id, "b:4");
    assert!(hits.len() < 8, "min_score dropped the orthogonal chunks");
    let mut q = query(SearchMode::Vector, "", Some(axis(4, 5, 0.1)), 2);
    assert_eq!(search(&*store, &q).await.len(), 2);
    q.top_k = 0;
    assert!(search(&*store, &q).await.is_empty());
}

pub async fn bad_requests_are_errors(harness: &dyn StoreHarness) {
    let store = harness.fresh(DIM).await;
    let wrong = chunk("a", 0, "text", vec![1.0; DIM + 1]);
    match store.upsert(vec![wrong]).await {
        Err(VectorStoreError::DimensionMismatch { expected, got }) => {
            assert_eq!((expected, got), (DIM, DIM + 1));
        }
        other => panic!("upsert with the wrong dimension: {other:?}"),
    }
    upsert(&*store, eight()).await;
    let q = query(SearchMode::Vector, "x", Some(vec![1.0; 3]), 3);
    assert!(matches!(
        store.search(&q).await,
        Err(VectorStoreError::DimensionMismatch { .. })
    ));
    for mode in [SearchMode::Vector, SearchMode::Hybrid] {
        let q = query(mode, "river", None, 3);
        match store.search(&q).await {
            Err(VectorStoreError::InvalidRequest(message)) => {
                assert!(message.contains("embedding"), "{message}");
            }
            other => panic!("{mode:?} without an embedding: {other:?}"),
        }
    }
    // Nothing was lost by the failed calls.
    assert_eq!(store.documents().await.expect("documents").len(), 2);
}

pub async fn documents_are_listed(harness: &dyn StoreHarness) {
    let store = harness.fresh(DIM).await;
    assert!(store.documents().await.expect("documents").is_empty());
    upsert(&*store, eight()).await;
    let docs = store.documents().await.expect("documents");
    let expected: Vec<StoredDocument> = ["a", "b"]
        .iter()
        .map(|d| StoredDocument {
            id: d.to_string(),
            source: format!("docs/{d}.pdf"),
            document_hash: Some(format!("dochash-{d}")),
            chunks: 4,
        })
        .collect();
    assert_eq!(docs, expected);
}

pub async fn data_survives_reopening(harness: &dyn StoreHarness) {
    let store = harness.fresh(DIM).await;
    let mut all = eight();
    all.push(chunk("c", 8, "Grüße aus Köln — 東京 ไทย", axis(3, 4, 0.2)));
    upsert(&*store, all.clone()).await;
    store.delete_document("b").await.expect("delete");
    let store = harness.reopen(store).await;
    let docs = store.documents().await.expect("documents");
    assert_eq!(
        docs.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
        ["a", "c"]
    );
    let hits = search(
        &*store,
        &query(SearchMode::Vector, "", Some(axis(3, 4, 0.2)), 1),
    )
    .await;
    assert_eq!(hits[0].chunk, all[8].chunk);
    let hits = search(&*store, &query(SearchMode::Keyword, "köln", None, 3)).await;
    assert_eq!(ids(&hits), ["c:8"]);
    // And it still takes writes.
    upsert(
        &*store,
        vec![chunk("d", 1, "after reopening", axis(1, 2, 0.0))],
    )
    .await;
    assert_eq!(store.documents().await.expect("documents").len(), 3);
}
