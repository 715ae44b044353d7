//! The embedded store: the shared behaviour suite, plus what only a store on disk has — a
//! writer lock, readers during writes, and recovery after a killed writer.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use corral_core::VectorStore;
use corral_memory::conformance::{self, StoreHarness};
use corral_memory::{EmbeddedConfig, EmbeddedProvider};

struct Harness {
    root: tempfile::TempDir,
    provider: Mutex<Arc<EmbeddedProvider>>,
    last: Mutex<Option<(String, usize)>>,
}

impl Harness {
    fn new() -> Self {
        let root = tempfile::tempdir().expect("tempdir");
        let provider = EmbeddedProvider::new(EmbeddedConfig {
            path: Some(root.path().to_path_buf()),
        });
        Self {
            root,
            provider: Mutex::new(Arc::new(provider)),
            last: Mutex::new(None),
        }
    }

    fn root(&self) -> PathBuf {
        self.root.path().to_path_buf()
    }
}

#[async_trait]
impl StoreHarness for Harness {
    async fn fresh(&self, dimension: usize) -> Arc<dyn VectorStore> {
        let mut last = self.last.lock().expect("lock");
        let n = self.root().read_dir().map(|d| d.count()).unwrap_or(0);
        let name = format!("store-{n}");
        *last = Some((name.clone(), dimension));
        let provider = self.provider.lock().expect("lock").clone();
        provider.open(&name, dimension).expect("open a fresh store")
    }

    async fn reopen(&self, store: Arc<dyn VectorStore>) -> Arc<dyn VectorStore> {
        drop(store);
        let (name, dimension) = self.last.lock().expect("lock").clone().expect("a store");
        // A new provider, as a new process would have.
        let provider = Arc::new(EmbeddedProvider::new(EmbeddedConfig {
            path: Some(self.root()),
        }));
        *self.provider.lock().expect("lock") = provider.clone();
        provider.open(&name, dimension).expect("reopen")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behaves_like_every_store() {
    conformance::run_all(&Harness::new()).await;
}

/// The vectors and chunks of document `d`: `CHUNKS` chunks, all written in one transaction.
const CHUNKS: usize = 20;

fn document(d: usize) -> Vec<corral_core::EmbeddedChunk> {
    (0..CHUNKS)
        .map(|n| {
            conformance::chunk(
                &format!("doc{d:05}"),
                n,
                &format!("document {d} part {n} lorem ipsum"),
                conformance::axis(d + n, n, 0.5),
            )
        })
        .collect()
}

const CHILD_STORE: &str = "CORRAL_TEST_CHILD_STORE";

/// Not a test of its own: `a_killed_writer_leaves_its_last_commit` runs it as a child process,
/// which writes documents, one transaction each, printing each one's number once committed,
/// until it is killed.
#[test]
#[ignore = "a child process of a_killed_writer_leaves_its_last_commit"]
fn child_writer() {
    use std::io::Write;
    let Some(dir) = std::env::var_os(CHILD_STORE) else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let store = corral_memory::EmbeddedStore::open(std::path::Path::new(&dir), 8).expect("open");
    for d in 0.. {
        let id = format!("doc{d:05}");
        runtime
            .block_on(store.replace_documents(&[id], document(d)))
            .expect("write");
        let mut out = std::io::stdout().lock();
        writeln!(out, "committed {d}").expect("stdout");
        out.flush().expect("stdout");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_writer_leaves_its_last_commit() {
    use std::io::BufRead;
    let root = tempfile::tempdir().expect("tempdir");
    let dir = root.path().join("crash");
    let mut child = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "child_writer",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_STORE, &dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn the writer");
    let stdout = child.stdout.take().expect("stdout");
    let mut committed = 0;
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line.expect("a line");
        if let Some(d) = line.strip_prefix("committed ") {
            committed = d.parse::<usize>().expect("a number") + 1;
            if committed >= 25 {
                break;
            }
        }
    }
    // Kill it at some point of its next write.
    std::thread::sleep(std::time::Duration::from_millis(fastrand::u64(0..40)));
    child.kill().expect("kill");
    child.wait().expect("wait");
    assert!(
        committed >= 25,
        "the child wrote only {committed} documents"
    );

    let store = corral_memory::EmbeddedStore::open(&dir, 8).expect("the store opens after a crash");
    let docs = store.documents().await.expect("documents");
    assert!(docs.len() >= committed, "{} < {committed}", docs.len());
    for doc in &docs {
        assert_eq!(doc.chunks, CHUNKS, "{} is whole", doc.id);
    }
    let ids: Vec<String> = docs.iter().map(|d| d.id.clone()).collect();
    let expected: Vec<String> = (0..docs.len()).map(|d| format!("doc{d:05}")).collect();
    assert_eq!(
        ids, expected,
        "the documents committed, in order, none missing"
    );
    // It takes writes again: the dead writer's lock went with it.
    let next = docs.len();
    store
        .replace_documents(&[format!("doc{next:05}")], document(next))
        .await
        .expect("a write after recovery");
    assert_eq!(store.documents().await.expect("documents").len(), next + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_writer_at_a_time_and_readers_meanwhile() {
    let root = tempfile::tempdir().expect("tempdir");
    let dir = root.path().join("shared");
    let writer = corral_memory::EmbeddedStore::open(&dir, 8).expect("open");
    writer.upsert(document(0)).await.expect("first write");
    // A second handle on the same directory, as another process would have.
    let other = corral_memory::EmbeddedStore::open(&dir, 8).expect("open again");
    let err = other
        .upsert(document(1))
        .await
        .expect_err("a second writer is refused");
    assert!(
        err.to_string().contains("another process is writing"),
        "{err}"
    );

    // The other handle reads while the writer commits, and sees whole documents only.
    let writing = {
        let writer = writer.clone();
        tokio::spawn(async move {
            for d in 1..30 {
                let id = format!("doc{d:05}");
                writer
                    .replace_documents(&[id], document(d))
                    .await
                    .expect("write");
            }
        })
    };
    let query = corral_core::SearchQuery {
        text: "lorem".into(),
        embedding: Some(conformance::axis(1, 2, 0.0)),
        mode: corral_core::SearchMode::Hybrid,
        fusion: Default::default(),
        filter: None,
        top_k: 5,
        min_score: None,
    };
    let mut reads = 0;
    while !writing.is_finished() {
        other.search(&query).await.expect("a search during writes");
        for doc in other.documents().await.expect("documents during writes") {
            assert_eq!(doc.chunks, CHUNKS, "{} seen half written", doc.id);
        }
        reads += 1;
    }
    writing.await.expect("the writer task");
    assert!(reads > 0);
    // The reader catches up with the last commit (it reloads on a short delay).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let n = other.documents().await.expect("documents").len();
        if n == 30 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "reader stuck at {n} documents"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[test]
fn opening_with_another_dimension_is_refused() {
    let root = tempfile::tempdir().expect("tempdir");
    let dir = root.path().join("dims");
    drop(corral_memory::EmbeddedStore::open(&dir, 8).expect("open"));
    let err = corral_memory::EmbeddedStore::open(&dir, 16).expect_err("another dimension");
    assert!(
        matches!(
            err,
            corral_core::VectorStoreError::DimensionMismatch {
                expected: 8,
                got: 16
            }
        ),
        "{err}"
    );
    // A name that would leave the root is refused.
    let provider = EmbeddedProvider::new(EmbeddedConfig {
        path: Some(root.path().to_path_buf()),
    });
    for bad in ["../x", "a/b", "", ".hidden"] {
        assert!(provider.open(bad, 8).is_err(), "{bad:?}");
    }
}
