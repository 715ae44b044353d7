//! The embedded store: one directory, one tantivy index holding each chunk's text (BM25), its
//! fields and its vector; exact vector search over segments cached in memory.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use corral_core::vector;
use corral_core::{
    Chunk, EmbeddedChunk, ErrorKind, Filter, ProviderError, SearchHit, SearchMode, SearchQuery,
    StoredDocument, VectorStore, VectorStoreError,
};
use serde::{Deserialize, Serialize};
use tantivy::collector::{Collector, Count, SegmentCollector};
use tantivy::directory::error::LockError;
use tantivy::index::SegmentId;
use tantivy::query::{BooleanQuery, Occur, Query, TermQuery, Weight};
use tantivy::schema::{
    Field, IndexRecordOption, STORED, STRING, Schema, TantivyDocument, TextFieldIndexing,
    TextOptions, Value,
};
use tantivy::{
    DocAddress, DocId, Index, IndexReader, IndexWriter, ReloadPolicy, Score, SegmentOrdinal,
    SegmentReader, TantivyError, Term,
};

use super::tokenizer::{self, WordTokenizer};
use super::vectors::{Quantized, SegmentVectors, TopK, dot, normalise, rescore};
use crate::fusion;

const PROVIDER: &str = "embedded";
/// The store's own description of itself, next to the index.
pub(super) const MANIFEST: &str = "corral-store.json";
const FORMAT_VERSION: u32 = 1;
/// Memory the index writer buffers before it writes a segment.
const WRITER_MEMORY: usize = 64 << 20;

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Manifest {
    format_version: u32,
    dimension: usize,
    distance: String,
}

#[derive(Debug, Clone, Copy)]
struct Fields {
    id: Field,
    document_id: Field,
    text: Field,
    /// The chunk as JSON, without its text.
    meta: Field,
    /// The unit vector, little-endian f32s.
    vector: Field,
}

/// A vector store in a directory of its own. Cheap to clone; clones share the index.
#[derive(Clone)]
pub struct EmbeddedStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("dir", &self.inner.dir)
            .field("dimension", &self.inner.dimension)
            .finish()
    }
}

struct Inner {
    dir: PathBuf,
    dimension: usize,
    index: Index,
    reader: IndexReader,
    fields: Fields,
    /// Taken on the first write and kept: it holds the index's writer lock.
    writer: Mutex<Option<IndexWriter>>,
    segments: Mutex<HashMap<SegmentId, Arc<SegmentVectors>>>,
    /// Which docs of a segment pass a filter, by segment and the filter's JSON: evaluating a
    /// filter on every chunk costs more than scoring it, and an application tends to repeat its
    /// filters.
    masks: Mutex<HashMap<(SegmentId, String), Mask>>,
}

/// Which docs of one segment pass a filter, by doc id.
type Mask = Arc<Vec<bool>>;

/// Filter masks kept before the cache starts afresh.
const MASKS_KEPT: usize = 64;

fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let text_options = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer(tokenizer::NAME)
            .set_index_option(IndexRecordOption::WithFreqsAndPositions),
    );
    let fields = Fields {
        id: b.add_text_field("id", STRING),
        document_id: b.add_text_field("document_id", STRING),
        text: b.add_text_field("text", text_options | STORED),
        meta: b.add_text_field("meta", STORED),
        vector: b.add_bytes_field("vector", STORED),
    };
    (b.build(), fields)
}

fn error(kind: ErrorKind, dir: &Path, message: impl std::fmt::Display) -> VectorStoreError {
    VectorStoreError::Provider(
        ProviderError::new(kind, format!("store {}: {message}", dir.display()))
            .with_provider(PROVIDER),
    )
}

/// tantivy's errors: a held lock is someone else's writer; I/O and corruption are permanent.
fn tantivy_error(dir: &Path, e: TantivyError) -> VectorStoreError {
    match e {
        TantivyError::LockFailure(LockError::LockBusy, _) => error(
            ErrorKind::Permanent,
            dir,
            "another process is writing to this store (its index writer lock is held); \
             wait for it to finish",
        ),
        other => error(ErrorKind::Permanent, dir, other),
    }
}

impl EmbeddedStore {
    /// Opens the store in `dir`, creating it for `dimension`-dimensional vectors if the directory
    /// holds none. An existing store of another dimension is an error.
    pub fn open(dir: &Path, dimension: usize) -> Result<Self, VectorStoreError> {
        if dimension == 0 {
            return Err(VectorStoreError::InvalidRequest(format!(
                "store {}: dimension must be positive",
                dir.display()
            )));
        }
        std::fs::create_dir_all(dir)
            .map_err(|e| error(ErrorKind::Permanent, dir, format!("cannot create it: {e}")))?;
        let manifest_path = dir.join(MANIFEST);
        let index_dir = dir.join("index");
        let (schema, fields) = schema();
        let manifest = read_manifest(&manifest_path)?;
        let index = match manifest {
            Some(m) => {
                if m.dimension != dimension {
                    return Err(VectorStoreError::DimensionMismatch {
                        expected: m.dimension,
                        got: dimension,
                    });
                }
                if m.format_version != FORMAT_VERSION {
                    return Err(error(
                        ErrorKind::Permanent,
                        dir,
                        format!(
                            "format version {} is not {FORMAT_VERSION}, the one this build reads",
                            m.format_version
                        ),
                    ));
                }
                let index = Index::open_in_dir(&index_dir).map_err(|e| tantivy_error(dir, e))?;
                if index.schema() != schema {
                    return Err(error(
                        ErrorKind::Permanent,
                        dir,
                        "its index has another schema than this build writes",
                    ));
                }
                index
            }
            None => {
                // The index first, then the manifest: a crash in between leaves a directory
                // without a manifest, which the next open creates afresh.
                if index_dir.exists() {
                    std::fs::remove_dir_all(&index_dir).map_err(|e| {
                        error(ErrorKind::Permanent, dir, format!("cannot reset it: {e}"))
                    })?;
                }
                std::fs::create_dir_all(&index_dir).map_err(|e| {
                    error(ErrorKind::Permanent, dir, format!("cannot create it: {e}"))
                })?;
                let index =
                    Index::create_in_dir(&index_dir, schema).map_err(|e| tantivy_error(dir, e))?;
                write_manifest(
                    &manifest_path,
                    &Manifest {
                        format_version: FORMAT_VERSION,
                        dimension,
                        distance: "cosine".into(),
                    },
                )?;
                index
            }
        };
        index.tokenizers().register(tokenizer::NAME, WordTokenizer);
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::OnCommitWithDelay)
            .try_into()
            .map_err(|e| tantivy_error(dir, e))?;
        Ok(Self {
            inner: Arc::new(Inner {
                dir: dir.to_path_buf(),
                dimension,
                index,
                reader,
                fields,
                writer: Mutex::new(None),
                segments: Mutex::new(HashMap::new()),
                masks: Mutex::new(HashMap::new()),
            }),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    pub fn dimension(&self) -> usize {
        self.inner.dimension
    }

    /// Runs blocking index work off the async runtime.
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Inner) -> Result<T, VectorStoreError> + Send + 'static,
    ) -> Result<T, VectorStoreError> {
        let inner = Arc::clone(&self.inner);
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => handle
                .spawn_blocking(move || work(&inner))
                .await
                .map_err(|e| error(ErrorKind::Permanent, &self.inner.dir, format!("{e}")))?,
            Err(_) => work(&inner),
        }
    }
}

fn read_manifest(path: &Path) -> Result<Option<Manifest>, VectorStoreError> {
    let dir = path.parent().unwrap_or(path);
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            error(
                ErrorKind::Permanent,
                dir,
                format!("{} is not a store manifest: {e}", path.display()),
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(error(
            ErrorKind::Permanent,
            dir,
            format!("cannot read {}: {e}", path.display()),
        )),
    }
}

/// Written to a temporary file and renamed, so a crash never leaves half a manifest.
fn write_manifest(path: &Path, manifest: &Manifest) -> Result<(), VectorStoreError> {
    let dir = path.parent().unwrap_or(path);
    let fail = |e: &dyn std::fmt::Display| {
        error(
            ErrorKind::Permanent,
            dir,
            format!("cannot write {}: {e}", path.display()),
        )
    };
    let json = serde_json::to_vec_pretty(manifest).map_err(|e| fail(&e))?;
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, json).map_err(|e| fail(&e))?;
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(|e| fail(&e))?;
    std::fs::rename(&tmp, path).map_err(|e| fail(&e))
}

impl Inner {
    fn writer(&self) -> Result<MutexGuard<'_, Option<IndexWriter>>, VectorStoreError> {
        let mut guard = self
            .writer
            .lock()
            .map_err(|_| error(ErrorKind::Permanent, &self.dir, "a writer panicked"))?;
        if guard.is_none() {
            let writer = self
                .index
                .writer_with_num_threads(1, WRITER_MEMORY)
                .map_err(|e| tantivy_error(&self.dir, e))?;
            *guard = Some(writer);
        }
        Ok(guard)
    }

    /// Runs `stage` (deletes and adds) and commits it as one transaction: readers and a crash
    /// see all of it or none. Writes in this process are serialised by the writer's mutex, and
    /// other processes are kept out by the index's writer lock.
    fn transaction<T>(
        &self,
        stage: impl FnOnce(&mut IndexWriter) -> Result<T, VectorStoreError>,
    ) -> Result<T, VectorStoreError> {
        let mut guard = self.writer()?;
        let Some(writer) = guard.as_mut() else {
            return Err(error(ErrorKind::Permanent, &self.dir, "no index writer"));
        };
        let staged = stage(writer);
        let result = match staged {
            Ok(value) => writer
                .commit()
                .map(|_| value)
                .map_err(|e| tantivy_error(&self.dir, e)),
            Err(e) => Err(e),
        };
        if result.is_err() {
            // Leave nothing half-staged for the next commit.
            let _ = writer.rollback();
            return result;
        }
        self.reader
            .reload()
            .map_err(|e| tantivy_error(&self.dir, e))?;
        result
    }

    /// Deletes the docs with these terms and adds `docs`, in one transaction.
    fn write(&self, delete: Vec<Term>, docs: Vec<TantivyDocument>) -> Result<(), VectorStoreError> {
        self.transaction(|writer| {
            for term in delete {
                writer.delete_term(term);
            }
            for doc in docs {
                writer
                    .add_document(doc)
                    .map_err(|e| tantivy_error(&self.dir, e))?;
            }
            Ok(())
        })
    }

    /// Checked before anything is staged, so a bad chunk fails the call and changes nothing.
    fn documents_of(
        &self,
        chunks: Vec<EmbeddedChunk>,
    ) -> Result<Vec<TantivyDocument>, VectorStoreError> {
        chunks.into_iter().map(|c| self.document(c)).collect()
    }

    fn document(&self, c: EmbeddedChunk) -> Result<TantivyDocument, VectorStoreError> {
        if c.embedding.len() != self.dimension {
            return Err(VectorStoreError::DimensionMismatch {
                expected: self.dimension,
                got: c.embedding.len(),
            });
        }
        if c.embedding.iter().any(|x| !x.is_finite()) {
            return Err(VectorStoreError::InvalidRequest(format!(
                "chunk `{}` has a vector with NaN or infinite values",
                c.chunk.id
            )));
        }
        let mut vector = c.embedding;
        normalise(&mut vector);
        let mut chunk = c.chunk;
        let text = std::mem::take(&mut chunk.text);
        let meta = serde_json::to_string(&chunk)
            .map_err(|e| VectorStoreError::InvalidRequest(format!("chunk `{}`: {e}", chunk.id)))?;
        let mut doc = TantivyDocument::default();
        doc.add_text(self.fields.id, &chunk.id);
        doc.add_text(self.fields.document_id, &chunk.document_id);
        doc.add_text(self.fields.text, &text);
        doc.add_text(self.fields.meta, &meta);
        let bytes: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
        doc.add_bytes(self.fields.vector, &bytes);
        Ok(doc)
    }

    fn count(&self, term: Term) -> Result<usize, VectorStoreError> {
        let searcher = self.reader.searcher();
        searcher
            .search(&TermQuery::new(term, IndexRecordOption::Basic), &Count)
            .map_err(|e| tantivy_error(&self.dir, e))
    }

    /// The cached vectors of every segment `searcher` sees, loading new ones; segments it no
    /// longer sees are dropped from the cache.
    fn segment_vectors(
        &self,
        searcher: &tantivy::Searcher,
    ) -> Result<Vec<Arc<SegmentVectors>>, VectorStoreError> {
        let mut cache = self
            .segments
            .lock()
            .map_err(|_| error(ErrorKind::Permanent, &self.dir, "a search panicked"))?;
        let mut out = Vec::new();
        for reader in searcher.segment_readers() {
            let id = reader.segment_id();
            let vectors = match cache.get(&id) {
                Some(v) => Arc::clone(v),
                None => {
                    let v = Arc::new(self.load_segment(reader)?);
                    cache.insert(id, Arc::clone(&v));
                    v
                }
            };
            out.push(vectors);
        }
        if cache.len() > out.len() {
            let live: Vec<SegmentId> = searcher
                .segment_readers()
                .iter()
                .map(SegmentReader::segment_id)
                .collect();
            cache.retain(|id, _| live.contains(id));
        }
        Ok(out)
    }

    fn load_segment(&self, reader: &SegmentReader) -> Result<SegmentVectors, VectorStoreError> {
        let corrupt = |doc: DocId, what: &str| {
            error(
                ErrorKind::Permanent,
                &self.dir,
                format!(
                    "segment {} doc {doc}: {what}",
                    reader.segment_id().short_uuid_string()
                ),
            )
        };
        let mut vectors = SegmentVectors::new(self.dimension, reader.max_doc() as usize);
        let store = reader
            .get_store_reader(1)
            .map_err(|e| error(ErrorKind::Permanent, &self.dir, e))?;
        for (doc, stored) in (0..).zip(store.iter::<TantivyDocument>(None)) {
            if reader.is_deleted(doc) {
                continue;
            }
            let stored = stored.map_err(|e| tantivy_error(&self.dir, e))?;
            let meta = stored
                .get_first(self.fields.meta)
                .and_then(|v| v.as_str())
                .ok_or_else(|| corrupt(doc, "no chunk fields"))?;
            let meta: Chunk =
                serde_json::from_str(meta).map_err(|e| corrupt(doc, &e.to_string()))?;
            let vector = self.vector_of(&stored, doc)?;
            vectors.set(doc, &vector, meta);
        }
        Ok(vectors)
    }

    /// The chunk at `address`, text included.
    fn chunk(
        &self,
        searcher: &tantivy::Searcher,
        address: DocAddress,
    ) -> Result<Chunk, VectorStoreError> {
        let doc: TantivyDocument = searcher
            .doc(address)
            .map_err(|e| tantivy_error(&self.dir, e))?;
        let corrupt = |what: &str| {
            error(
                ErrorKind::Permanent,
                &self.dir,
                format!("doc {address:?}: {what}"),
            )
        };
        let meta = doc
            .get_first(self.fields.meta)
            .and_then(|v| v.as_str())
            .ok_or_else(|| corrupt("no chunk fields"))?;
        let mut chunk: Chunk = serde_json::from_str(meta).map_err(|e| corrupt(&e.to_string()))?;
        chunk.text = doc
            .get_first(self.fields.text)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string();
        Ok(chunk)
    }

    /// For each segment, which docs pass `filter` (`None` without a filter).
    fn masks(
        &self,
        searcher: &tantivy::Searcher,
        segments: &[Arc<SegmentVectors>],
        filter: Option<&Filter>,
    ) -> Result<Vec<Option<Mask>>, VectorStoreError> {
        let Some(filter) = filter else {
            return Ok(vec![None; segments.len()]);
        };
        let key = serde_json::to_string(filter)
            .map_err(|e| VectorStoreError::InvalidRequest(format!("filter {filter:?}: {e}")))?;
        let mut cache = self
            .masks
            .lock()
            .map_err(|_| error(ErrorKind::Permanent, &self.dir, "a search panicked"))?;
        if cache.len() > MASKS_KEPT {
            cache.clear();
        }
        Ok(segments
            .iter()
            .zip(searcher.segment_readers())
            .map(|(vectors, reader)| {
                let mask = cache
                    .entry((reader.segment_id(), key.clone()))
                    .or_insert_with(|| Arc::new(vectors.mask(filter)));
                Some(Arc::clone(mask))
            })
            .collect())
    }

    fn vector_ranking(
        &self,
        searcher: &tantivy::Searcher,
        segments: &[Arc<SegmentVectors>],
        embedding: &[f32],
        masks: &[Option<Mask>],
        k: usize,
        exact: bool,
    ) -> Result<Vec<(DocAddress, f32)>, VectorStoreError> {
        let mut query = embedding.to_vec();
        normalise(&mut query);
        let quantized = Quantized::new(&query);
        // Exact scores: enough approximate candidates that the exact top k is among them.
        let pool = if exact {
            k.saturating_mul(2).saturating_add(16)
        } else {
            k
        };
        // The rows of all segments, cut into one share per thread.
        let total: usize = segments.iter().map(|v| v.len()).sum();
        let threads = scan_threads(total);
        let share = total.div_ceil(threads.max(1)).max(1);
        let mut shares: Vec<Vec<(usize, std::ops::Range<usize>)>> = vec![Vec::new(); threads];
        let mut at = 0;
        for (ord, vectors) in segments.iter().enumerate() {
            let mut start = 0;
            while start < vectors.len() {
                let thread = (at / share).min(threads - 1);
                let room = share - at % share;
                let end = (start + room).min(vectors.len());
                shares[thread].push((ord, start..end));
                at += end - start;
                start = end;
            }
        }
        let readers = searcher.segment_readers();
        // Each thread: the 4-bit pass over its share, then its best candidates by 8-bit codes.
        let scan = |work: &[(usize, std::ops::Range<usize>)]| {
            let mut coarse = TopK::new(SegmentVectors::coarse_pool(pool));
            for (ord, docs) in work {
                let (Some(vectors), Some(reader)) = (segments.get(*ord), readers.get(*ord)) else {
                    continue;
                };
                let alive = |doc: DocId| !reader.is_deleted(doc);
                let mask = masks
                    .get(*ord)
                    .and_then(|m| m.as_deref())
                    .map(Vec::as_slice);
                vectors.scan(
                    docs.clone(),
                    &quantized,
                    mask,
                    &alive,
                    &mut coarse,
                    *ord as u32,
                );
            }
            let coarse: Vec<(u32, DocId)> =
                coarse.into_sorted().into_iter().map(|(_, c)| c).collect();
            let mut top = TopK::new(pool);
            rescore(segments, &coarse, &quantized, &mut top);
            top
        };
        let mut candidates = TopK::new(pool);
        let parts: Vec<TopK<(u32, DocId)>> = if threads == 1 {
            vec![scan(&shares[0])]
        } else {
            std::thread::scope(|scope| {
                let handles: Vec<_> = shares[1..]
                    .iter()
                    .map(|work| scope.spawn(|| scan(work)))
                    .collect();
                let mut parts = vec![scan(&shares[0])];
                parts.extend(handles.into_iter().map(|h| {
                    h.join()
                        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
                }));
                parts
            })
        };
        for part in parts {
            for (score, item) in part.into_sorted() {
                candidates.push(score, item);
            }
        }
        if !exact {
            return Ok(candidates
                .into_sorted()
                .into_iter()
                .map(|(score, (seg, doc))| (DocAddress::new(seg, doc), score))
                .collect());
        }
        // The exact scores, from the f32 vectors in the doc store.
        let mut top = TopK::new(k);
        for (_, (seg, doc)) in candidates.into_sorted() {
            let address = DocAddress::new(seg, doc);
            let stored: TantivyDocument = searcher
                .doc(address)
                .map_err(|e| tantivy_error(&self.dir, e))?;
            let exact = self.vector_of(&stored, doc)?;
            top.push(dot(&query, &exact), (seg, doc));
        }
        Ok(top
            .into_sorted()
            .into_iter()
            .map(|(score, (seg, doc))| (DocAddress::new(seg, doc), score))
            .collect())
    }

    /// The stored unit vector of a document.
    fn vector_of(
        &self,
        stored: &TantivyDocument,
        doc: DocId,
    ) -> Result<Vec<f32>, VectorStoreError> {
        let bytes = stored
            .get_first(self.fields.vector)
            .and_then(|v| v.as_bytes())
            .filter(|b| b.len() == self.dimension * 4)
            .ok_or_else(|| {
                error(
                    ErrorKind::Permanent,
                    &self.dir,
                    format!("doc {doc}: no vector of {} dimensions", self.dimension),
                )
            })?;
        Ok(bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect())
    }

    fn keyword_ranking(
        &self,
        searcher: &tantivy::Searcher,
        text: &str,
        masks: &[Option<Mask>],
        k: usize,
    ) -> Result<Vec<(DocAddress, f32)>, VectorStoreError> {
        let terms = tokenizer::query_terms(text);
        if terms.is_empty() || k == 0 {
            return Ok(Vec::new());
        }
        let clauses: Vec<(Occur, Box<dyn Query>)> = terms
            .iter()
            .map(|t| {
                let term = Term::from_field_text(self.fields.text, t);
                let query: Box<dyn Query> =
                    Box::new(TermQuery::new(term, IndexRecordOption::WithFreqs));
                (Occur::Should, query)
            })
            .collect();
        let query = BooleanQuery::new(clauses);
        let masks: HashMap<SegmentId, Mask> = searcher
            .segment_readers()
            .iter()
            .zip(masks)
            .filter_map(|(reader, mask)| Some((reader.segment_id(), Arc::clone(mask.as_ref()?))))
            .collect();
        let collector = FilteredTop {
            k,
            masks: (!masks.is_empty()).then_some(&masks),
        };
        searcher
            .search(&query, &collector)
            .map_err(|e| tantivy_error(&self.dir, e))
    }

    fn search(&self, q: &SearchQuery) -> Result<Vec<SearchHit>, VectorStoreError> {
        let embedding = match q.mode {
            SearchMode::Keyword => None,
            SearchMode::Vector | SearchMode::Hybrid => {
                let Some(e) = q.embedding.as_deref() else {
                    return Err(VectorStoreError::InvalidRequest(format!(
                        "{:?} search needs the query's embedding",
                        q.mode
                    )));
                };
                if e.len() != self.dimension {
                    return Err(VectorStoreError::DimensionMismatch {
                        expected: self.dimension,
                        got: e.len(),
                    });
                }
                Some(e)
            }
        };
        if q.top_k == 0 {
            return Ok(Vec::new());
        }
        let searcher = self.reader.searcher();
        // A keyword search needs the segments' fields only to filter, and their vectors not at
        // all: without a filter it does not load them.
        let segments = if q.mode == SearchMode::Keyword && q.filter.is_none() {
            Vec::new()
        } else {
            self.segment_vectors(&searcher)?
        };
        let masks = self.masks(&searcher, &segments, q.filter.as_ref())?;
        let ranked = match (q.mode, embedding) {
            (SearchMode::Vector, Some(e)) => {
                self.vector_ranking(&searcher, &segments, e, &masks, q.top_k, true)?
            }
            (SearchMode::Hybrid, Some(e)) => {
                let n = fusion::candidates(q.top_k);
                // Fusion needs ranks (and, weighted, scores to 1e-3): the scan's own suffice.
                // The keyword side runs beside the scan: the scan mostly waits on memory.
                let (vector, keyword) = std::thread::scope(|scope| {
                    let keyword =
                        scope.spawn(|| self.keyword_ranking(&searcher, &q.text, &masks, n));
                    let vector = self.vector_ranking(&searcher, &segments, e, &masks, n, false);
                    let keyword = keyword
                        .join()
                        .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
                    (vector, keyword)
                });
                fusion::fuse(&vector?, &keyword?, q.fusion)
            }
            _ => self.keyword_ranking(&searcher, &q.text, &masks, q.top_k)?,
        };
        ranked
            .into_iter()
            .filter(|(_, score)| q.min_score.is_none_or(|min| *score >= min))
            .take(q.top_k)
            .map(|(address, score)| {
                Ok(SearchHit {
                    chunk: self.chunk(&searcher, address)?,
                    score,
                })
            })
            .collect()
    }

    fn documents(&self) -> Result<Vec<StoredDocument>, VectorStoreError> {
        let searcher = self.reader.searcher();
        let segments = self.segment_vectors(&searcher)?;
        let mut docs: BTreeMap<String, StoredDocument> = BTreeMap::new();
        for (vectors, reader) in segments.iter().zip(searcher.segment_readers()) {
            let alive = |doc: DocId| !reader.is_deleted(doc);
            for (_, meta) in vectors.docs(&alive) {
                docs.entry(meta.document_id.clone())
                    .or_insert_with(|| StoredDocument {
                        id: meta.document_id.clone(),
                        source: meta.source.clone(),
                        document_hash: meta.document_hash.clone(),
                        chunks: 0,
                    })
                    .chunks += 1;
            }
        }
        Ok(docs.into_values().collect())
    }
}

/// Threads for one vector scan: one per 16k rows (spawning costs more than it saves below
/// that), at most the machine's cores.
fn scan_threads(rows: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    (rows / 16_384).clamp(1, cores.min(8))
}

/// BM25's top `k` among the chunks that pass the filter (per segment masks; `None`: no filter).
struct FilteredTop<'a> {
    k: usize,
    masks: Option<&'a HashMap<SegmentId, Mask>>,
}

struct FilteredTopSegment {
    ord: SegmentOrdinal,
    /// `None`: no filter; an empty mask: nothing passes.
    mask: Option<Mask>,
    top: TopK<(u32, DocId)>,
}

impl FilteredTopSegment {
    fn passes(&self, doc: DocId) -> bool {
        self.mask
            .as_ref()
            .is_none_or(|m| m.get(doc as usize).copied().unwrap_or(false))
    }
}

impl Collector for FilteredTop<'_> {
    type Fruit = Vec<(DocAddress, f32)>;
    type Child = FilteredTopSegment;

    fn for_segment(
        &self,
        ord: SegmentOrdinal,
        reader: &SegmentReader,
    ) -> tantivy::Result<FilteredTopSegment> {
        Ok(FilteredTopSegment {
            ord,
            mask: self
                .masks
                .map(|masks| masks.get(&reader.segment_id()).cloned().unwrap_or_default()),
            top: TopK::new(self.k),
        })
    }

    fn requires_scoring(&self) -> bool {
        true
    }

    /// As tantivy's own top-docs collector does, through `for_each_pruning`: once `k` hits are
    /// in, the scorer skips blocks of documents that cannot beat the worst (block-max WAND).
    fn collect_segment(
        &self,
        weight: &dyn Weight,
        ord: SegmentOrdinal,
        reader: &SegmentReader,
    ) -> tantivy::Result<Vec<(f32, (u32, DocId))>> {
        let mut segment = self.for_segment(ord, reader)?;
        let alive = reader.alive_bitset();
        weight.for_each_pruning(Score::MIN, reader, &mut |doc, score| {
            if alive.is_none_or(|a| a.is_alive(doc)) && segment.passes(doc) {
                segment.top.push(score, (ord, doc));
            }
            segment.top.threshold()
        })?;
        let top = segment.top;
        Ok(top.into_sorted())
    }

    fn merge_fruits(&self, fruits: Vec<Vec<(f32, (u32, DocId))>>) -> tantivy::Result<Self::Fruit> {
        let mut top = TopK::new(self.k);
        for (score, item) in fruits.into_iter().flatten() {
            top.push(score, item);
        }
        Ok(top
            .into_sorted()
            .into_iter()
            .map(|(score, (seg, doc))| (DocAddress::new(seg, doc), score))
            .collect())
    }
}

impl SegmentCollector for FilteredTopSegment {
    type Fruit = Vec<(f32, (u32, DocId))>;

    fn collect(&mut self, doc: DocId, score: Score) {
        if self.passes(doc) {
            self.top.push(score, (self.ord, doc));
        }
    }

    fn harvest(self) -> Self::Fruit {
        self.top.into_sorted()
    }
}

#[async_trait]
impl VectorStore for EmbeddedStore {
    async fn upsert(&self, chunks: Vec<EmbeddedChunk>) -> Result<(), VectorStoreError> {
        if chunks.is_empty() {
            return Ok(());
        }
        self.blocking(move |inner| {
            let delete = chunks
                .iter()
                .map(|c| Term::from_field_text(inner.fields.id, &c.chunk.id))
                .collect();
            let docs = inner.documents_of(chunks)?;
            inner.write(delete, docs)
        })
        .await
    }

    async fn delete_document(&self, document_id: &str) -> Result<usize, VectorStoreError> {
        let document_id = document_id.to_string();
        self.blocking(move |inner| {
            let term = Term::from_field_text(inner.fields.document_id, &document_id);
            // Counted inside the transaction: no other write can come between.
            inner.transaction(|writer| {
                let n = inner.count(term.clone())?;
                if n > 0 {
                    writer.delete_term(term);
                }
                Ok(n)
            })
        })
        .await
    }

    async fn replace_documents(
        &self,
        document_ids: &[String],
        chunks: Vec<EmbeddedChunk>,
    ) -> Result<(), VectorStoreError> {
        vector::check_replacement(document_ids, &chunks)?;
        let document_ids = document_ids.to_vec();
        self.blocking(move |inner| {
            let delete = document_ids
                .iter()
                .map(|id| Term::from_field_text(inner.fields.document_id, id))
                .collect();
            let docs = inner.documents_of(chunks)?;
            inner.write(delete, docs)
        })
        .await
    }

    async fn search(&self, query: &SearchQuery) -> Result<Vec<SearchHit>, VectorStoreError> {
        let query = query.clone();
        self.blocking(move |inner| inner.search(&query)).await
    }

    async fn documents(&self) -> Result<Vec<StoredDocument>, VectorStoreError> {
        self.blocking(|inner| inner.documents()).await
    }
}
