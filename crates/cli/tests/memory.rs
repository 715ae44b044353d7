//! `corral ingest`, `search`, `stores` and `eval retrieval` as a user runs them: real files (a
//! real PDF from Debian's glpk-doc, Markdown, HTML, text, and bad files) embedded by the real
//! MiniLM into an embedded store in a temporary directory.
#![cfg(feature = "local")]

use std::fs;
use std::path::Path;

use predicates::prelude::*;
use tempfile::TempDir;

mod support;

use support::{cache, corral, needed};

/// A directory with a config (local MiniLM, one embedded store under the directory) and a
/// `docs/` folder of real files, some of them bad.
fn workspace() -> TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let models = needed(
        cache().join("models/all-MiniLM-L6-v2"),
        "scripts/fetch-test-models.sh",
    );
    let config = format!(
        r#"version = 1

[[providers.inference]]
id = "local"
type = "local"
config = {{ models_dir = "{models}" }}

[[models]]
id = "minilm"
provider = "local"
provider_model = "all-MiniLM-L6-v2"
kind = "embedding"

[[providers.vector_io]]
id = "embedded"
type = "embedded"
config = {{ path = "{stores}" }}

[[vector_stores]]
id = "docs"
provider = "embedded"
embedding_model = "minilm"
chunking = {{ max_tokens = 200, overlap_tokens = 40 }}
"#,
        models = models.parent().expect("models dir").display(),
        stores = dir.path().join("stores").display(),
    );
    fs::write(dir.path().join("corral.toml"), config).expect("config");
    let docs = dir.path().join("docs");
    fs::create_dir_all(docs.join("notes")).expect("docs");
    let pdf = needed(
        cache().join("pdfs/glpk-doc/graphs.pdf"),
        "scripts/fetch-test-pdfs.sh",
    );
    fs::copy(pdf, docs.join("graphs.pdf")).expect("copy the PDF");
    fs::write(
        docs.join("notes/rotation.md"),
        "# Operations\n\n## Key rotation\n\nRotate the signing keys every 90 days with \
         `vaultctl rotate --all`. The old keys stay valid for a grace period of 7 days.\n",
    )
    .expect("md");
    fs::write(
        docs.join("notes/lunch.html"),
        "<html><head><title>Canteen</title><script>var x = 'zebra';</script></head>\
         <body><h1>Menu</h1><p>On Fridays the canteen serves pumpkin soup.</p></body></html>",
    )
    .expect("html");
    fs::write(
        docs.join("notes/plain.txt"),
        "The backup server is called saltmarsh and runs at 3 am.",
    )
    .expect("txt");
    fs::write(
        docs.join("broken.pdf"),
        b"%PDF-1.7\n garbage that is not a PDF",
    )
    .expect("pdf");
    fs::write(docs.join("notes/binary.txt"), b"ab\0\x01\x02cd").expect("bin");
    fs::write(docs.join("notes/latin1.txt"), b"caf\xe9 cr\xe8me").expect("latin1");
    dir
}

fn ingest(dir: &Path, extra: &[&str]) -> serde_json::Value {
    let out = corral(dir)
        .args(["ingest", "docs", "--json"])
        .args(extra)
        .output()
        .expect("run corral ingest");
    assert!(
        out.status.success(),
        "ingest failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("a JSON report")
}

fn search(dir: &Path, args: &[&str]) -> Vec<serde_json::Value> {
    let out = corral(dir)
        .args(["search", "--json"])
        .args(args)
        .output()
        .expect("run corral search");
    assert!(
        out.status.success(),
        "search failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON hits")
}

#[test]
fn ingest_search_reingest_and_prune() {
    let dir = workspace();
    let root = dir.path();

    let report = ingest(root, &[]);
    assert_eq!(report["added"], 4, "{report:#}");
    assert_eq!(report["replaced"], 0);
    assert!(report["pages"].as_u64().expect("pages") > 10, "{report:#}");
    assert!(
        report["chunks"].as_u64().expect("chunks") > 20,
        "{report:#}"
    );
    assert_eq!(report["chunking"]["max_tokens"], 200);
    let failed: Vec<String> = report["failed"]
        .as_array()
        .expect("failed")
        .iter()
        .map(|f| format!("{} {}", f["path"], f["problem"]))
        .collect();
    assert_eq!(failed.len(), 3, "{failed:?}");
    for (name, problem) in [
        ("broken.pdf", "PDF"),
        ("binary.txt", "binary"),
        ("latin1.txt", "UTF-8"),
    ] {
        assert!(
            failed
                .iter()
                .any(|f| f.contains(name) && f.contains(problem)),
            "{name}: {failed:?}"
        );
    }

    // Each mode finds what it should; hits carry source, page and heading path.
    let hits = search(
        root,
        &["how often are signing keys rotated", "--top-k", "3"],
    );
    assert!(
        hits[0]["chunk"]["source"]
            .as_str()
            .expect("source")
            .ends_with("rotation.md"),
        "{hits:#?}"
    );
    // The note is one chunk, starting under its first heading.
    assert_eq!(
        hits[0]["chunk"]["heading_path"],
        serde_json::json!(["Operations"])
    );
    let hits = search(root, &["saltmarsh", "--mode", "keyword"]);
    assert!(
        hits[0]["chunk"]["text"]
            .as_str()
            .expect("text")
            .contains("saltmarsh")
    );
    let hits = search(root, &["zebra", "--mode", "keyword"]);
    assert!(hits.is_empty(), "script text is not indexed: {hits:#?}");
    let hits = search(
        root,
        &[
            "shortest path",
            "--mode",
            "vector",
            "--filter",
            "format=pdf",
        ],
    );
    assert!(!hits.is_empty());
    for hit in &hits {
        assert!(hit["chunk"]["pages"]["start"].as_u64().expect("page") >= 1);
        assert_eq!(hit["chunk"]["metadata"]["format"], "pdf");
    }

    // Re-ingesting unchanged files does nothing; a changed one is replaced whole.
    let report = ingest(root, &[]);
    assert_eq!(
        (&report["added"], &report["replaced"], &report["unchanged"]),
        (
            &serde_json::json!(0),
            &serde_json::json!(0),
            &serde_json::json!(4)
        ),
        "{report:#}"
    );
    fs::write(
        root.join("docs/notes/plain.txt"),
        "The backup server was renamed to mudflat.",
    )
    .expect("change");
    let report = ingest(root, &[]);
    assert_eq!(report["replaced"], 1, "{report:#}");
    assert!(search(root, &["saltmarsh", "--mode", "keyword"]).is_empty());
    assert!(!search(root, &["mudflat", "--mode", "keyword"]).is_empty());

    // A file that is gone stays until --prune.
    fs::remove_file(root.join("docs/notes/lunch.html")).expect("remove");
    let report = ingest(root, &[]);
    assert_eq!(report["pruned"], serde_json::json!([]));
    assert!(!search(root, &["pumpkin", "--mode", "keyword"]).is_empty());
    let report = ingest(root, &["--prune"]);
    assert_eq!(report["pruned"].as_array().expect("pruned").len(), 1);
    assert!(search(root, &["pumpkin", "--mode", "keyword"]).is_empty());

    corral(root)
        .args(["stores"])
        .assert()
        .success()
        .stdout(predicate::str::contains("docs").and(predicate::str::contains("3 documents")));
}

#[test]
fn human_output_names_sources_and_pages() {
    let dir = workspace();
    corral(dir.path())
        .args(["ingest", "docs"])
        .assert()
        .success()
        .stdout(
            predicate::str::contains("4 added")
                .and(predicate::str::contains("broken.pdf"))
                .and(predicate::str::contains("failed (3)")),
        );
    corral(dir.path())
        .args(["search", "minimum cost flow", "--filter", "page>=1"])
        .assert()
        .success()
        .stdout(predicate::str::contains("docs/graphs.pdf, page"));
    corral(dir.path())
        .args(["search", "x", "--filter", "page>=many"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("needs a number"));
    corral(dir.path())
        .args(["search", "x", "--store", "nope"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("unknown vector store `nope`"));
}

#[test]
fn eval_retrieval_scores_a_beir_dataset() {
    let dir = workspace();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../memory/tests/fixtures/beir");
    let out = corral(dir.path())
        .args(["eval", "retrieval", "--json", "--corpus"])
        .arg(fixtures.join("corpus.jsonl"))
        .arg("--queries")
        .arg(fixtures.join("queries.jsonl"))
        .arg("--qrels")
        .arg(fixtures.join("qrels.tsv"))
        .output()
        .expect("run corral eval");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let metrics: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    for mode in ["vector", "keyword", "hybrid"] {
        let m = &metrics[mode];
        for key in ["ndcg@10", "recall@10", "recall@100", "mrr@100"] {
            let v = m[key].as_f64().expect("a number");
            assert!((0.0..=1.0).contains(&v), "{mode} {key} = {v}");
        }
        // Vector search ranks every document of the tiny corpus, so each relevant one is in
        // its top 100; keyword search only finds documents that share a word with the query.
        if mode != "keyword" {
            assert_eq!(m["recall@100"], 1.0, "{mode}: {m}");
        }
    }
}
