//! The ingestion pipeline: find files → load → chunk → embed in batches → store.
//!
//! Idempotent and incremental: a document's id comes from its path and its hash from its bytes
//! (and the chunking settings), so re-ingesting an unchanged file costs one read and a hash; a
//! changed file is replaced as a whole in one store transaction; with `prune`, documents whose
//! files are gone are removed. A file that cannot be loaded is reported and passed over — what
//! the store holds for it stays — and the run goes on.
//!
//! Loading and chunking run on blocking threads, `parallel_files` at a time, while the embedder
//! works on the chunks before them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use corral_core::document::Metadata;
use corral_core::{
    Chunk, EmbedError, EmbeddedChunk, Embedder, TokenCounter, VectorStore, VectorStoreError,
};
use futures::StreamExt;
use sha2::{Digest, Sha256};

use crate::chunk::{ApproxTokenCounter, ChunkConfig, chunk};
use crate::load::{self, Format, LoadError, LoadOptions, LoadProblem, Skipped, WalkOptions};
use crate::text::Extracted;

/// Knobs for a run.
#[derive(Debug, Clone)]
pub struct IngestOptions {
    pub chunking: ChunkConfig,
    pub load: LoadOptions,
    pub walk: WalkOptions,
    /// Chunks per call to the embedder. Default 32.
    pub embed_batch: usize,
    /// Chunks written per store transaction (whole documents; a larger document is written
    /// alone). Default 256.
    pub commit_chunks: usize,
    /// Files loaded and chunked at the same time. Default 2.
    pub parallel_files: usize,
    /// Remove documents under the given roots whose files are gone.
    pub prune: bool,
}

impl Default for IngestOptions {
    fn default() -> Self {
        Self {
            chunking: ChunkConfig::default(),
            load: LoadOptions::default(),
            walk: WalkOptions::default(),
            embed_batch: 32,
            commit_chunks: 256,
            parallel_files: 2,
            prune: false,
        }
    }
}

/// What went wrong that stops a run (a file's own problems don't: see [`IngestReport::failed`]).
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("invalid ingestion settings: {0}")]
    Config(String),
    #[error("embedding failed: {0}")]
    Embed(#[from] EmbedError),
    #[error("the store failed: {0}")]
    Store(#[from] VectorStoreError),
    #[error("the embedder returned {got} vectors for {expected} inputs")]
    EmbedCount { expected: usize, got: usize },
}

/// What happened to one document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Added,
    Replaced,
    Unchanged,
}

/// Told about a run as it goes (the CLI draws progress bars from it).
pub trait Progress: Send + Sync {
    /// The run will look at `documents` documents.
    fn start(&self, _documents: usize) {}
    /// One document is done: stored, unchanged, or failed.
    fn document(&self, _source: &str, _result: Result<Outcome, &LoadError>) {}
    /// `chunks` more chunks were embedded.
    fn embedded(&self, _chunks: usize) {}
}

/// No progress reporting.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl Progress for NoProgress {}

/// Time spent in each stage; `load` and `chunk` add up across the threads that ran them.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Timings {
    pub load: Duration,
    pub chunk: Duration,
    pub embed: Duration,
    pub store: Duration,
    pub total: Duration,
}

/// What a run did.
#[derive(Debug, Default)]
pub struct IngestReport {
    pub added: usize,
    pub replaced: usize,
    pub unchanged: usize,
    /// Sources of the documents removed because their files are gone.
    pub pruned: Vec<String>,
    /// Files that could not be loaded; what the store held for them is kept.
    pub failed: Vec<LoadError>,
    /// Paths the directory walk passed over, and why.
    pub skipped: Vec<Skipped>,
    /// Pages left out of documents that were otherwise loaded (`<path>: page N left out: …`).
    pub unreadable_pages: Vec<String>,
    /// Chunks written (of added and replaced documents).
    pub chunks: usize,
    /// Pages of the PDFs loaded.
    pub pages: usize,
    pub timings: Timings,
    /// The chunking settings used (`max_tokens` is capped at what the embedder takes).
    pub chunking: ChunkConfig,
}

/// A document given as text rather than as a file (e.g. a BEIR corpus line).
#[derive(Debug, Clone)]
pub struct TextDocument {
    pub id: String,
    pub source: String,
    pub title: Option<String>,
    pub text: String,
    pub metadata: Metadata,
}

/// Ingests documents into one store with one embedder.
pub struct Ingestor {
    store: Arc<dyn VectorStore>,
    embedder: Arc<dyn Embedder>,
    counter: Arc<dyn TokenCounter>,
    options: IngestOptions,
}

impl std::fmt::Debug for Ingestor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ingestor")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// One unit of work for the loading stage.
enum Source {
    File(PathBuf, Format),
    Text(TextDocument),
}

/// A document after loading and chunking.
struct Prepared {
    id: String,
    source: String,
    result: Result<Ready, LoadError>,
    /// Pages of it that could not be read (the rest was).
    unreadable: Vec<String>,
    load: Duration,
    chunk: Duration,
}

enum Ready {
    Unchanged,
    Chunks {
        chunks: Vec<Chunk>,
        pages: usize,
        replaces: bool,
    },
}

impl Ingestor {
    /// Checks the settings; `max_tokens` above what the embedder takes is lowered to it (and the
    /// overlap in proportion), since the embedder would otherwise cut each chunk short.
    pub fn new(
        store: Arc<dyn VectorStore>,
        embedder: Arc<dyn Embedder>,
        mut options: IngestOptions,
    ) -> Result<Self, IngestError> {
        options.chunking.validate().map_err(IngestError::Config)?;
        if options.embed_batch == 0 || options.commit_chunks == 0 || options.parallel_files == 0 {
            return Err(IngestError::Config(
                "embed_batch, commit_chunks and parallel_files must be positive".into(),
            ));
        }
        let limit = embedder.max_input_tokens();
        let c = &mut options.chunking;
        if limit > 0 && c.max_tokens > limit {
            let overlap = c.overlap_tokens * limit / c.max_tokens;
            tracing::info!(
                max_tokens = c.max_tokens,
                limit,
                "chunks capped at the embedder's input length"
            );
            c.max_tokens = limit;
            c.overlap_tokens = overlap;
        }
        let counter = embedder.token_counter().unwrap_or_else(|| {
            tracing::info!("the embedder does not count tokens; chunk sizes are estimated");
            Arc::new(ApproxTokenCounter)
        });
        Ok(Self {
            store,
            embedder,
            counter,
            options,
        })
    }

    pub fn options(&self) -> &IngestOptions {
        &self.options
    }

    /// Ingests the files under `roots` (files or directories).
    pub async fn ingest_paths(
        &self,
        roots: &[PathBuf],
        progress: &dyn Progress,
    ) -> Result<IngestReport, IngestError> {
        let walk_options = self.options.walk.clone();
        let walk_roots = roots.to_vec();
        let walked = blocking(move || load::walk(&walk_roots, &walk_options)).await;
        let walked = walked.map_err(|e| IngestError::Config(format!("walking the paths: {e}")))?;
        let sources = walked
            .files
            .into_iter()
            .map(|(path, format)| Source::File(path, format))
            .collect();
        let mut report = self.run(sources, progress).await?;
        report.skipped = walked.skipped;
        if self.options.prune {
            report.pruned = self.prune(roots).await?;
        }
        Ok(report)
    }

    /// Ingests documents given as text; ids are the caller's.
    pub async fn ingest_texts(
        &self,
        documents: Vec<TextDocument>,
        progress: &dyn Progress,
    ) -> Result<IngestReport, IngestError> {
        self.run(documents.into_iter().map(Source::Text).collect(), progress)
            .await
    }

    async fn run(
        &self,
        sources: Vec<Source>,
        progress: &dyn Progress,
    ) -> Result<IngestReport, IngestError> {
        let started = Instant::now();
        let stored: Arc<HashMap<String, Option<String>>> = Arc::new(
            self.store
                .documents()
                .await?
                .into_iter()
                .map(|d| (d.id, d.document_hash))
                .collect(),
        );
        progress.start(sources.len());
        let mut report = IngestReport {
            chunking: self.options.chunking,
            ..IngestReport::default()
        };
        let settings = Arc::new(Settings {
            chunking: self.options.chunking,
            load: self.options.load.clone(),
            counter: Arc::clone(&self.counter),
        });
        let mut prepared = futures::stream::iter(sources)
            .map(|source| {
                let stored = Arc::clone(&stored);
                let settings = Arc::clone(&settings);
                blocking(move || prepare(source, &stored, &settings))
            })
            .buffered(self.options.parallel_files);

        let mut batch = Batch::default();
        while let Some(next) = prepared.next().await {
            let doc =
                next.map_err(|e| IngestError::Config(format!("a loading task failed: {e}")))?;
            report.timings.load += doc.load;
            report.timings.chunk += doc.chunk;
            for warning in &doc.unreadable {
                tracing::warn!("{warning}");
            }
            report.unreadable_pages.extend(doc.unreadable);
            match doc.result {
                Err(e) => {
                    tracing::warn!("{e}");
                    progress.document(&doc.source, Err(&e));
                    report.failed.push(e);
                }
                Ok(Ready::Unchanged) => {
                    report.unchanged += 1;
                    progress.document(&doc.source, Ok(Outcome::Unchanged));
                }
                Ok(Ready::Chunks {
                    chunks,
                    pages,
                    replaces,
                }) => {
                    report.pages += pages;
                    batch.push(doc.id, doc.source, replaces, chunks);
                    if batch.chunks.len() >= self.options.commit_chunks {
                        self.flush(&mut batch, &mut report, progress).await?;
                    }
                }
            }
        }
        self.flush(&mut batch, &mut report, progress).await?;
        report.timings.total = started.elapsed();
        Ok(report)
    }

    /// Embeds the batch's chunks and writes its documents in one transaction.
    async fn flush(
        &self,
        batch: &mut Batch,
        report: &mut IngestReport,
        progress: &dyn Progress,
    ) -> Result<(), IngestError> {
        if batch.documents.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(batch);
        let mut embedded = Vec::with_capacity(batch.chunks.len());
        let started = Instant::now();
        for group in batch.chunks.chunks(self.options.embed_batch) {
            let texts: Vec<String> = group.iter().map(|c| c.text.clone()).collect();
            let vectors = self.embedder.embed(&texts).await?;
            if vectors.len() != texts.len() {
                return Err(IngestError::EmbedCount {
                    expected: texts.len(),
                    got: vectors.len(),
                });
            }
            progress.embedded(group.len());
            embedded.extend(
                group
                    .iter()
                    .cloned()
                    .zip(vectors)
                    .map(|(chunk, embedding)| EmbeddedChunk { chunk, embedding }),
            );
        }
        report.timings.embed += started.elapsed();
        let started = Instant::now();
        let ids: Vec<String> = batch.documents.iter().map(|d| d.0.clone()).collect();
        self.store.replace_documents(&ids, embedded).await?;
        report.timings.store += started.elapsed();
        report.chunks += batch.chunks.len();
        for (_, source, replaces) in &batch.documents {
            let outcome = if *replaces {
                report.replaced += 1;
                Outcome::Replaced
            } else {
                report.added += 1;
                Outcome::Added
            };
            progress.document(source, Ok(outcome));
        }
        Ok(())
    }

    /// Removes the documents stored from files under `roots` that no longer exist.
    async fn prune(&self, roots: &[PathBuf]) -> Result<Vec<String>, IngestError> {
        let roots: Vec<PathBuf> = roots
            .iter()
            .map(|r| std::path::absolute(r).unwrap_or_else(|_| r.clone()))
            .collect();
        let gone: Vec<(String, String)> = self
            .store
            .documents()
            .await?
            .into_iter()
            .filter(|d| {
                let path = Path::new(&d.source);
                path.is_absolute() && roots.iter().any(|r| path.starts_with(r)) && !path.exists()
            })
            .map(|d| (d.id, d.source))
            .collect();
        if gone.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<String> = gone.iter().map(|(id, _)| id.clone()).collect();
        self.store.replace_documents(&ids, Vec::new()).await?;
        for (_, source) in &gone {
            tracing::info!(source, "pruned: the file is gone");
        }
        Ok(gone.into_iter().map(|(_, source)| source).collect())
    }
}

/// Documents waiting to be embedded and written together.
#[derive(Default)]
struct Batch {
    /// `(id, source, replaces an older version)`.
    documents: Vec<(String, String, bool)>,
    chunks: Vec<Chunk>,
}

impl Batch {
    fn push(&mut self, id: String, source: String, replaces: bool, chunks: Vec<Chunk>) {
        self.documents.push((id, source, replaces));
        self.chunks.extend(chunks);
    }
}

struct Settings {
    chunking: ChunkConfig,
    load: LoadOptions,
    counter: Arc<dyn TokenCounter>,
}

/// The id of the document stored from `path`: a hash of its absolute path.
pub fn document_id(path: &Path) -> String {
    hex(&Sha256::digest(path.to_string_lossy().as_bytes())[..8])
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The document hash: its bytes and the chunking settings, so changing either re-ingests it.
fn document_hash(content: &[u8], chunking: &ChunkConfig) -> String {
    let mut h = Sha256::new();
    h.update(content);
    h.update(
        format!(
            "|chunks {} {}",
            chunking.max_tokens, chunking.overlap_tokens
        )
        .as_bytes(),
    );
    hex(&h.finalize()[..16])
}

/// Loads (unless unchanged) and chunks one document.
fn prepare(
    source: Source,
    stored: &HashMap<String, Option<String>>,
    settings: &Settings,
) -> Prepared {
    let started = Instant::now();
    let mut unreadable = Vec::new();
    let (id, source_name, loaded) = match source {
        Source::File(path, format) => {
            let path = std::path::absolute(&path).unwrap_or(path);
            let id = document_id(&path);
            let name = path.to_string_lossy().into_owned();
            let fail = |problem| LoadError {
                path: path.clone(),
                problem,
            };
            let loaded = read(&path, settings.load.max_file_bytes)
                .map_err(fail)
                .and_then(|bytes| {
                    let hash = document_hash(&bytes, &settings.chunking);
                    if stored.get(&id).is_some_and(|h| h.as_deref() == Some(&hash)) {
                        return Ok(None);
                    }
                    let loaded = load::load_bytes(&path, bytes, &settings.load)?;
                    for page in &loaded.unreadable_pages {
                        unreadable.push(format!(
                            "{}: page {} left out: {}",
                            path.display(),
                            page.page,
                            page.problem
                        ));
                    }
                    let extracted = loaded.extracted;
                    let mut metadata = Metadata::new();
                    metadata.insert("format".into(), format.id().into());
                    if let Some(title) = &extracted.title {
                        metadata.insert("title".into(), title.clone().into());
                    }
                    Ok(Some((extracted, hash, metadata)))
                });
            (id, name, loaded)
        }
        Source::Text(doc) => {
            let hash = document_hash(doc.text.as_bytes(), &settings.chunking);
            let loaded = if stored
                .get(&doc.id)
                .is_some_and(|h| h.as_deref() == Some(&hash))
            {
                Ok(None)
            } else {
                let mut metadata = doc.metadata;
                let mut extracted = Extracted::plain(doc.text);
                if let Some(title) = doc.title.filter(|t| !t.is_empty()) {
                    metadata.insert("title".into(), title.clone().into());
                    extracted.title = Some(title);
                }
                Ok(Some((extracted, hash, metadata)))
            };
            (doc.id, doc.source, loaded)
        }
    };
    let load = started.elapsed();
    let started = Instant::now();
    let result = loaded.map(|loaded| match loaded {
        None => Ready::Unchanged,
        Some((extracted, hash, metadata)) => {
            let pieces = chunk(&extracted, &*settings.counter, &settings.chunking);
            let pages = extracted
                .sections
                .iter()
                .filter_map(|s| s.page)
                .max()
                .unwrap_or(0) as usize;
            let chunks = pieces
                .into_iter()
                .enumerate()
                .map(|(i, piece)| {
                    let text = extracted.text.get(piece.range.clone()).unwrap_or_default();
                    Chunk {
                        id: format!("{id}:{i}"),
                        document_id: id.clone(),
                        text: text.to_string(),
                        source: source_name.clone(),
                        pages: piece.pages,
                        heading_path: piece.heading_path,
                        byte_range: Some(piece.range),
                        content_hash: Some(hex(&Sha256::digest(text.as_bytes())[..16])),
                        document_hash: Some(hash.clone()),
                        metadata: metadata.clone(),
                    }
                })
                .filter(|c| !c.text.trim().is_empty())
                .collect::<Vec<_>>();
            Ready::Chunks {
                chunks,
                pages,
                replaces: stored.contains_key(&id),
            }
        }
    });
    let result = match result {
        Ok(Ready::Chunks { chunks, .. }) if chunks.is_empty() => Err(LoadError {
            path: PathBuf::from(&source_name),
            problem: LoadProblem::Empty,
        }),
        other => other,
    };
    Prepared {
        id,
        source: source_name,
        result,
        unreadable,
        load,
        chunk: started.elapsed(),
    }
}

/// Reads a file the walk found, refusing one that has grown past the limit since.
fn read(path: &Path, limit: u64) -> Result<Vec<u8>, LoadProblem> {
    let size = std::fs::metadata(path)
        .map_err(|e| LoadProblem::io(&e))?
        .len();
    if size > limit {
        return Err(LoadProblem::TooLarge { size, limit });
    }
    std::fs::read(path).map_err(|e| LoadProblem::io(&e))
}

/// Runs `work` on the blocking pool (inline when there is no tokio runtime).
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => handle.spawn_blocking(work).await.map_err(|e| e.to_string()),
        Err(_) => Ok(work()),
    }
}
