//! One store, one Qdrant collection: creating or checking it, writing chunks, searching.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use corral_core::vector::check_replacement;
use corral_core::{
    Chunk, EmbeddedChunk, Fusion, SearchHit, SearchMode, SearchQuery, StoredDocument, VectorStore,
    VectorStoreError, async_trait,
};
use qdrant_client::qdrant::value::Kind;
use qdrant_client::qdrant::{
    self, Condition, CountPoints, CreateCollection, CreateFieldIndexCollection, DeleteCollection,
    DeletePoints, Distance, FieldType, GetCollectionInfoRequest, Modifier, NamedVectors,
    PayloadIncludeSelector, PointId, PointStruct, PointsSelector, PointsUpdateOperation,
    PrefetchQuery, Query, QueryBatchPoints, QueryPoints, Rrf, ScoredPoint, ScrollPoints,
    SparseVectorConfig, SparseVectorParams, UpdateBatchPoints, UpsertPoints, Vector, VectorParams,
    VectorParamsMap, Vectors, VectorsConfig, WithPayloadSelector, points_selector,
    points_update_operation, query, vectors_config, with_payload_selector,
};
use tonic::Code;

use super::error::{corrupt, invalid, is_already_exists, store_error};
use super::payload::{
    CHUNK, CHUNK_ID, DOCUMENT_HASH, DOCUMENT_ID, META, PAGE, SOURCE, chunk_from_payload, field_key,
    point_id, string_field, to_payload,
};
use super::{Client, DENSE_VECTOR, MetadataIndex, SPARSE_VECTOR, Settings, bm25, filter, rrf};
use crate::fusion;

/// Points per page when listing documents.
const SCROLL_PAGE: u32 = 1024;

/// Bumped when the payload or vectors are laid out differently (or BM25's terms, ids or
/// constants change); kept in the collection's metadata under [`LAYOUT_KEY`] and checked on open.
const LAYOUT_VERSION: i64 = 1;
const LAYOUT_KEY: &str = "corral_layout";

/// A Qdrant collection as a [`VectorStore`].
#[derive(Debug, Clone)]
pub struct QdrantStore {
    client: Client,
    settings: Arc<Settings>,
    collection: String,
    dimension: usize,
}

impl QdrantStore {
    pub(crate) async fn open(
        client: Client,
        settings: Arc<Settings>,
        collection: String,
        dimension: usize,
    ) -> Result<Self, VectorStoreError> {
        let store = Self {
            client,
            settings,
            collection,
            dimension,
        };
        let info = match store.info().await? {
            Some(info) => info,
            None => {
                store.create().await?;
                store.info().await?.ok_or_else(|| {
                    corrupt(format!(
                        "Qdrant collection `{}` is missing right after it was created",
                        store.collection
                    ))
                })?
            }
        };
        store.check(&info)?;
        store.ensure_indexes(&info).await?;
        Ok(store)
    }

    /// The collection's name on the server.
    pub fn collection(&self) -> &str {
        &self.collection
    }

    /// The length of the vectors it holds.
    pub fn dimension(&self) -> usize {
        self.dimension
    }

    fn doing(&self, what: &str) -> String {
        format!("{what} Qdrant collection `{}`", self.collection)
    }

    /// The collection's description, or `None` when there is no such collection.
    async fn info(&self) -> Result<Option<qdrant::CollectionInfo>, VectorStoreError> {
        let request = GetCollectionInfoRequest {
            collection_name: self.collection.clone(),
        };
        match self.client.0.collection_info(request).await {
            Ok(response) => Ok(response.result),
            Err(qdrant_client::QdrantError::ResponseError { status })
                if status.code() == Code::NotFound =>
            {
                Ok(None)
            }
            Err(e) => Err(store_error(&self.doing("reading"), e)),
        }
    }

    async fn create(&self) -> Result<(), VectorStoreError> {
        let dense = VectorParams {
            size: self.dimension as u64,
            distance: Distance::Cosine.into(),
            ..Default::default()
        };
        let sparse = SparseVectorParams {
            modifier: Some(Modifier::Idf.into()),
            ..Default::default()
        };
        let mut metadata = HashMap::new();
        metadata.insert(LAYOUT_KEY.to_string(), LAYOUT_VERSION.into());
        metadata.insert(
            "corral_bm25".to_string(),
            format!(
                "terms: UAX#29 words lowercased, at most 64 bytes; ids: FNV-1a 32; k1={}, b={}, avg_len={}",
                bm25::K1,
                bm25::B,
                bm25::AVG_LEN
            )
            .into(),
        );
        let request = CreateCollection {
            collection_name: self.collection.clone(),
            vectors_config: Some(VectorsConfig {
                config: Some(vectors_config::Config::ParamsMap(VectorParamsMap {
                    map: HashMap::from([(DENSE_VECTOR.to_string(), dense)]),
                })),
            }),
            sparse_vectors_config: Some(SparseVectorConfig {
                map: HashMap::from([(SPARSE_VECTOR.to_string(), sparse)]),
            }),
            shard_number: self.settings.shard_number,
            replication_factor: self.settings.replication_factor,
            metadata,
            ..Default::default()
        };
        match self.client.0.create_collection(request).await {
            Ok(_) => Ok(()),
            // Another process made it meanwhile: it is checked like any existing collection.
            Err(e) if is_already_exists(&e) => Ok(()),
            Err(e) => Err(store_error(&self.doing("creating"), e)),
        }
    }

    /// An existing collection must have our two vectors, the dense one of our dimension, and (when
    /// it says) our layout.
    fn check(&self, info: &qdrant::CollectionInfo) -> Result<(), VectorStoreError> {
        let params = info.config.as_ref().and_then(|c| c.params.as_ref());
        let dense = params
            .and_then(|p| p.vectors_config.as_ref())
            .and_then(|v| v.config.as_ref())
            .and_then(|c| match c {
                vectors_config::Config::ParamsMap(map) => map.map.get(DENSE_VECTOR),
                vectors_config::Config::Params(_) => None,
            });
        let Some(dense) = dense else {
            return Err(invalid(format!(
                "Qdrant collection `{}` was not made by Corral: it has no dense vector named `{DENSE_VECTOR}`",
                self.collection
            )));
        };
        if dense.size != self.dimension as u64 {
            return Err(invalid(format!(
                "Qdrant collection `{}` holds {}-dimensional vectors; this store's embedder makes {}-dimensional ones",
                self.collection, dense.size, self.dimension
            )));
        }
        let layout = info
            .config
            .as_ref()
            .and_then(|c| c.metadata.get(LAYOUT_KEY))
            .and_then(|v| v.kind.as_ref());
        if let Some(layout) = layout
            && *layout != Kind::IntegerValue(LAYOUT_VERSION)
        {
            let found = match layout {
                Kind::IntegerValue(v) => v.to_string(),
                other => format!("{other:?}"),
            };
            return Err(invalid(format!(
                "Qdrant collection `{}` was written by another version of Corral (layout {found}, this one reads {LAYOUT_VERSION}); re-ingest it into a new store",
                self.collection
            )));
        }
        let sparse = params
            .and_then(|p| p.sparse_vectors_config.as_ref())
            .and_then(|s| s.map.get(SPARSE_VECTOR));
        if sparse.is_none_or(|s| s.modifier != Some(Modifier::Idf.into())) {
            return Err(invalid(format!(
                "Qdrant collection `{}` was not made by Corral: it has no sparse vector `{SPARSE_VECTOR}` with the IDF modifier",
                self.collection
            )));
        }
        Ok(())
    }

    /// Creates the payload indexes the collection lacks (all of them when it is new; any added
    /// to the config since).
    async fn ensure_indexes(&self, info: &qdrant::CollectionInfo) -> Result<(), VectorStoreError> {
        let mut wanted: Vec<(String, FieldType)> = vec![
            (CHUNK_ID.to_string(), FieldType::Keyword),
            (DOCUMENT_ID.to_string(), FieldType::Keyword),
            (SOURCE.to_string(), FieldType::Keyword),
            (PAGE.to_string(), FieldType::Integer),
        ];
        for (key, kind) in &self.settings.metadata_indexes {
            let field_type = match kind {
                MetadataIndex::Keyword => FieldType::Keyword,
                MetadataIndex::Integer => FieldType::Integer,
                MetadataIndex::Float => FieldType::Float,
                MetadataIndex::Bool => FieldType::Bool,
            };
            wanted.push((format!("{META}.{}", field_key(key)), field_type));
        }
        for (field_name, field_type) in wanted {
            if info.payload_schema.contains_key(&field_name) {
                continue;
            }
            let request = CreateFieldIndexCollection {
                collection_name: self.collection.clone(),
                wait: Some(true),
                field_name: field_name.clone(),
                field_type: Some(field_type.into()),
                ..Default::default()
            };
            self.client
                .0
                .create_field_index(request)
                .await
                .map_err(|e| store_error(&self.doing(&format!("indexing `{field_name}` in")), e))?;
        }
        Ok(())
    }

    fn check_dimension(&self, got: usize) -> Result<(), VectorStoreError> {
        if got == self.dimension {
            Ok(())
        } else {
            Err(VectorStoreError::DimensionMismatch {
                expected: self.dimension,
                got,
            })
        }
    }

    fn point(&self, embedded: &EmbeddedChunk) -> Result<PointStruct, VectorStoreError> {
        let payload = to_payload(&embedded.chunk).map_err(|e| {
            invalid(format!(
                "chunk `{}` for Qdrant collection `{}` cannot be written: {e}",
                embedded.chunk.id, self.collection
            ))
        })?;
        let mut vectors: HashMap<String, Vector> =
            HashMap::from([(DENSE_VECTOR.to_string(), embedded.embedding.clone().into())]);
        let sparse = bm25::document_vector(&embedded.chunk.text);
        // A chunk without terms has no sparse vector at all: keyword search never finds it.
        if !sparse.is_empty() {
            let pairs: Vec<(u32, f32)> = sparse.indices.into_iter().zip(sparse.values).collect();
            vectors.insert(SPARSE_VECTOR.to_string(), pairs.into());
        }
        Ok(PointStruct {
            id: Some(PointId::from(point_id(&embedded.chunk.id).to_string())),
            payload,
            vectors: Some(Vectors::from(NamedVectors { vectors })),
        })
    }

    fn with_chunk() -> WithPayloadSelector {
        WithPayloadSelector {
            selector_options: Some(with_payload_selector::SelectorOptions::Include(
                PayloadIncludeSelector {
                    fields: vec![CHUNK.to_string()],
                },
            )),
        }
    }

    fn hit(&self, point: &ScoredPoint) -> Result<SearchHit, VectorStoreError> {
        let chunk = chunk_from_payload(&point.payload).map_err(|e| {
            corrupt(format!(
                "a point in Qdrant collection `{}` cannot be read: {e}",
                self.collection
            ))
        })?;
        Ok(SearchHit {
            chunk,
            score: point.score,
        })
    }

    /// One nearest-neighbour query on `using` (dense or sparse).
    fn nearest(
        &self,
        query: Query,
        using: &str,
        filter: Option<&qdrant::Filter>,
        limit: usize,
        min_score: Option<f32>,
    ) -> QueryPoints {
        QueryPoints {
            collection_name: self.collection.clone(),
            query: Some(query),
            using: Some(using.to_string()),
            filter: filter.cloned(),
            limit: Some(limit as u64),
            score_threshold: min_score,
            with_payload: Some(Self::with_chunk()),
            ..Default::default()
        }
    }

    async fn query(&self, request: QueryPoints) -> Result<Vec<ScoredPoint>, VectorStoreError> {
        self.client
            .0
            .query(request)
            .await
            .map(|r| r.result)
            .map_err(|e| store_error(&self.doing("searching"), e))
    }

    /// Hits best first, equal scores by chunk id (Qdrant leaves ties in any order).
    fn hits(&self, points: &[ScoredPoint]) -> Result<Vec<SearchHit>, VectorStoreError> {
        let mut hits = points
            .iter()
            .map(|p| self.hit(p))
            .collect::<Result<Vec<_>, _>>()?;
        sort_hits(&mut hits);
        Ok(hits)
    }

    async fn hybrid(
        &self,
        q: &SearchQuery,
        dense: Vec<f32>,
        filter: Option<&qdrant::Filter>,
    ) -> Result<Vec<SearchHit>, VectorStoreError> {
        // As many candidates from each side as the embedded store takes, so both fuse alike.
        let candidates = fusion::candidates(q.top_k);
        let sparse = sparse_query(&q.text);
        if let Fusion::Rrf { k } = q.fusion
            && let Some(server_k) = rrf::server_k(k)
        {
            let prefetch = |query: Query, using: &str, threshold: Option<f32>| PrefetchQuery {
                query: Some(query),
                using: Some(using.to_string()),
                filter: filter.cloned(),
                limit: Some(candidates as u64),
                score_threshold: threshold,
                ..Default::default()
            };
            let mut prefetches = vec![prefetch(Query::from(dense), DENSE_VECTOR, None)];
            if let Some(sparse) = sparse {
                prefetches.push(prefetch(sparse, SPARSE_VECTOR, Some(KEYWORD_THRESHOLD)));
            }
            let request = QueryPoints {
                collection_name: self.collection.clone(),
                prefetch: prefetches,
                query: Some(Query {
                    variant: Some(query::Variant::Rrf(Rrf { k: Some(server_k) })),
                }),
                filter: filter.cloned(),
                limit: Some(q.top_k as u64),
                score_threshold: q.min_score,
                with_payload: Some(Self::with_chunk()),
                ..Default::default()
            };
            let points = self.query(request).await?;
            return self.hits(&points);
        }

        // Fused here: both rankings in one round trip.
        let mut requests =
            vec![self.nearest(Query::from(dense), DENSE_VECTOR, filter, candidates, None)];
        if let Some(sparse) = sparse {
            requests.push(self.nearest(
                sparse,
                SPARSE_VECTOR,
                filter,
                candidates,
                Some(KEYWORD_THRESHOLD),
            ));
        }
        let batch = QueryBatchPoints {
            collection_name: self.collection.clone(),
            query_points: requests,
            ..Default::default()
        };
        let results = self
            .client
            .0
            .query_batch(batch)
            .await
            .map_err(|e| store_error(&self.doing("searching"), e))?
            .result;
        let mut lists = results.into_iter().map(|r| r.result);
        let vector = self.hits(&lists.next().unwrap_or_default())?;
        let keyword = self.hits(&lists.next().unwrap_or_default())?;
        let mut chunks: HashMap<String, Chunk> = HashMap::new();
        let mut ranking = |hits: Vec<SearchHit>| -> Vec<(String, f32)> {
            hits.into_iter()
                .map(|h| {
                    let id = h.chunk.id.clone();
                    chunks.entry(id.clone()).or_insert(h.chunk);
                    (id, h.score)
                })
                .collect()
        };
        let vector = ranking(vector);
        let keyword = ranking(keyword);
        Ok(fusion::fuse(&vector, &keyword, q.fusion)
            .into_iter()
            .filter(|(_, score)| q.min_score.is_none_or(|min| *score >= min))
            .take(q.top_k)
            .filter_map(|(id, score)| chunks.remove(&id).map(|chunk| SearchHit { chunk, score }))
            .collect())
    }

    /// Writes `points` in batches; `first` goes with the first batch, in the same request.
    async fn write(
        &self,
        first: Option<PointsUpdateOperation>,
        points: Vec<PointStruct>,
    ) -> Result<(), VectorStoreError> {
        let mut batches = points.chunks(self.settings.upsert_batch_size);
        if let Some(first) = first {
            let mut operations = vec![first];
            if let Some(batch) = batches.next() {
                operations.push(PointsUpdateOperation {
                    operation: Some(points_update_operation::Operation::Upsert(
                        points_update_operation::PointStructList {
                            points: batch.to_vec(),
                            ..Default::default()
                        },
                    )),
                });
            }
            let request = UpdateBatchPoints {
                collection_name: self.collection.clone(),
                wait: Some(true),
                operations,
                ..Default::default()
            };
            self.client
                .0
                .update_points_batch(request)
                .await
                .map_err(|e| store_error(&self.doing("replacing documents in"), e))?;
        }
        for batch in batches {
            let request = UpsertPoints {
                collection_name: self.collection.clone(),
                wait: Some(true),
                points: batch.to_vec(),
                ..Default::default()
            };
            self.client
                .0
                .upsert_points(request)
                .await
                .map_err(|e| store_error(&self.doing("upserting into"), e))?;
        }
        Ok(())
    }

    /// Checks every chunk, then makes its point; nothing is written unless all are good.
    fn points(&self, chunks: &[EmbeddedChunk]) -> Result<Vec<PointStruct>, VectorStoreError> {
        for c in chunks {
            self.check_dimension(c.embedding.len())?;
        }
        chunks.iter().map(|c| self.point(c)).collect()
    }
}

/// Keyword hits must share a term with the query: a sparse score of 0 is no match.
const KEYWORD_THRESHOLD: f32 = f32::MIN_POSITIVE;

/// The sparse query for `text`, or `None` when it has no terms.
fn sparse_query(text: &str) -> Option<Query> {
    let sparse = bm25::query_vector(text);
    if sparse.is_empty() {
        return None;
    }
    let pairs: Vec<(u32, f32)> = sparse.indices.into_iter().zip(sparse.values).collect();
    Some(Query::from(pairs))
}

fn sort_hits(hits: &mut [SearchHit]) {
    hits.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then_with(|| a.chunk.id.cmp(&b.chunk.id))
    });
}

/// A filter on one top-level string field.
fn document_filter(document_id: &str) -> qdrant::Filter {
    qdrant::Filter::must([Condition::matches(DOCUMENT_ID, document_id.to_string())])
}

pub(crate) async fn delete_collection(
    client: &Client,
    collection: &str,
) -> Result<bool, VectorStoreError> {
    let request = DeleteCollection {
        collection_name: collection.to_string(),
        ..Default::default()
    };
    client
        .0
        .delete_collection(request)
        .await
        .map(|r| r.result)
        .map_err(|e| store_error(&format!("deleting Qdrant collection `{collection}`"), e))
}

#[async_trait]
impl VectorStore for QdrantStore {
    async fn upsert(&self, chunks: Vec<EmbeddedChunk>) -> Result<(), VectorStoreError> {
        let points = self.points(&chunks)?;
        self.write(None, points).await
    }

    /// The delete and the first batch of points go in one update request, which Qdrant applies
    /// in order; more points than a batch follow in further requests.
    async fn replace_documents(
        &self,
        document_ids: &[String],
        chunks: Vec<EmbeddedChunk>,
    ) -> Result<(), VectorStoreError> {
        check_replacement(document_ids, &chunks)?;
        let points = self.points(&chunks)?;
        if document_ids.is_empty() {
            return Ok(());
        }
        let delete = PointsUpdateOperation {
            operation: Some(points_update_operation::Operation::DeletePoints(
                points_update_operation::DeletePoints {
                    points: Some(PointsSelector {
                        points_selector_one_of: Some(points_selector::PointsSelectorOneOf::Filter(
                            qdrant::Filter::must([Condition::matches(
                                DOCUMENT_ID,
                                document_ids.to_vec(),
                            )]),
                        )),
                    }),
                    ..Default::default()
                },
            )),
        };
        self.write(Some(delete), points).await
    }

    /// Counts, then deletes by filter: a chunk of the document written between the two by
    /// another writer is deleted but not counted.
    async fn delete_document(&self, document_id: &str) -> Result<usize, VectorStoreError> {
        let count = CountPoints {
            collection_name: self.collection.clone(),
            filter: Some(document_filter(document_id)),
            exact: Some(true),
            ..Default::default()
        };
        let counted = self
            .client
            .0
            .count(count)
            .await
            .map_err(|e| store_error(&self.doing("counting in"), e))?
            .result
            .map_or(0, |r| r.count);
        if counted == 0 {
            return Ok(0);
        }
        let delete = DeletePoints {
            collection_name: self.collection.clone(),
            wait: Some(true),
            points: Some(PointsSelector {
                points_selector_one_of: Some(points_selector::PointsSelectorOneOf::Filter(
                    document_filter(document_id),
                )),
            }),
            ..Default::default()
        };
        self.client
            .0
            .delete_points(delete)
            .await
            .map_err(|e| store_error(&self.doing("deleting from"), e))?;
        Ok(usize::try_from(counted).unwrap_or(usize::MAX))
    }

    async fn search(&self, q: &SearchQuery) -> Result<Vec<SearchHit>, VectorStoreError> {
        if q.top_k == 0 {
            return Ok(Vec::new());
        }
        let filter = q.filter.as_ref().map(filter::to_qdrant);
        let dense = match q.mode {
            SearchMode::Keyword => None,
            SearchMode::Vector | SearchMode::Hybrid => {
                let Some(embedding) = &q.embedding else {
                    return Err(invalid(format!(
                        "{:?} search in Qdrant collection `{}` needs the query's embedding",
                        q.mode, self.collection
                    )));
                };
                self.check_dimension(embedding.len())?;
                Some(embedding.clone())
            }
        };
        match (q.mode, dense) {
            (SearchMode::Keyword, _) => {
                let Some(sparse) = sparse_query(&q.text) else {
                    return Ok(Vec::new());
                };
                let threshold = q
                    .min_score
                    .map_or(KEYWORD_THRESHOLD, |m| m.max(KEYWORD_THRESHOLD));
                let request = self.nearest(
                    sparse,
                    SPARSE_VECTOR,
                    filter.as_ref(),
                    q.top_k,
                    Some(threshold),
                );
                let points = self.query(request).await?;
                self.hits(&points)
            }
            (SearchMode::Vector, Some(dense)) => {
                let request = self.nearest(
                    Query::from(dense),
                    DENSE_VECTOR,
                    filter.as_ref(),
                    q.top_k,
                    q.min_score,
                );
                let points = self.query(request).await?;
                self.hits(&points)
            }
            (SearchMode::Hybrid, Some(dense)) => self.hybrid(q, dense, filter.as_ref()).await,
            (_, None) => Ok(Vec::new()),
        }
    }

    async fn documents(&self) -> Result<Vec<StoredDocument>, VectorStoreError> {
        let mut documents: BTreeMap<String, StoredDocument> = BTreeMap::new();
        let mut offset: Option<PointId> = None;
        loop {
            let request = ScrollPoints {
                collection_name: self.collection.clone(),
                offset: offset.take(),
                limit: Some(SCROLL_PAGE),
                with_payload: Some(WithPayloadSelector {
                    selector_options: Some(with_payload_selector::SelectorOptions::Include(
                        PayloadIncludeSelector {
                            fields: vec![
                                DOCUMENT_ID.to_string(),
                                SOURCE.to_string(),
                                DOCUMENT_HASH.to_string(),
                            ],
                        },
                    )),
                }),
                ..Default::default()
            };
            let page = self
                .client
                .0
                .scroll(request)
                .await
                .map_err(|e| store_error(&self.doing("listing"), e))?;
            for point in &page.result {
                let Some(id) = string_field(&point.payload, DOCUMENT_ID) else {
                    return Err(corrupt(format!(
                        "a point in Qdrant collection `{}` has no `{DOCUMENT_ID}`",
                        self.collection
                    )));
                };
                let doc = documents
                    .entry(id.to_string())
                    .or_insert_with(|| StoredDocument {
                        id: id.to_string(),
                        source: string_field(&point.payload, SOURCE)
                            .unwrap_or_default()
                            .to_string(),
                        document_hash: None,
                        chunks: 0,
                    });
                doc.chunks += 1;
                if doc.document_hash.is_none() {
                    doc.document_hash =
                        string_field(&point.payload, DOCUMENT_HASH).map(str::to_string);
                }
            }
            match page.next_page_offset {
                Some(next) => offset = Some(next),
                None => break,
            }
        }
        Ok(documents.into_values().collect())
    }
}
