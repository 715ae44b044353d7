//! Vector stores in a Qdrant cluster, over gRPC, for collections that outgrow one machine.
//!
//! Each store is one collection, `<collection_prefix><name>`, holding one point per chunk:
//!
//! - a named dense vector `dense` (the embedder's dimension, cosine distance);
//! - a named sparse vector `bm25` with Qdrant's IDF modifier, whose weights we compute
//!   (module `bm25`): keyword search is BM25 with the IDF taken from the collection on the server;
//! - a payload that holds the whole chunk and the fields filters look at (module `payload`), with
//!   payload indexes on `document_id`, `source`, `page` and any metadata keys the config names.
//!
//! Point ids are UUIDv5 of the chunk id, so upserting a chunk again replaces it. Search modes map
//! onto Qdrant's Query API: vector and keyword are single queries; hybrid with RRF prefetches
//! both and fuses on the server when our `k` is an integer (module `rrf`), and otherwise fuses
//! here, as weighted fusion does, with the embedded store's [`crate::fusion`]. Filters become
//! Qdrant filters with [`corral_core::Filter::matches`]'s meaning (module `filter`).
//!
//! Building the provider parses the config and makes no connection (the stack builds every
//! provider to check a config); the first `open_store` talks to the server.

mod bm25;
mod error;
mod filter;
mod payload;
mod rrf;
mod store;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use corral_core::{VectorIoProvider, VectorStore, VectorStoreError, async_trait, lenient};
use qdrant_client::Qdrant;
use serde::Deserialize;

pub use store::QdrantStore;

/// The provider type name in `corral.toml` (`[[providers.vector_io]] type = "remote::qdrant"`).
pub const PROVIDER_TYPE: &str = "remote::qdrant";

/// The name of the dense vector in each collection.
pub const DENSE_VECTOR: &str = "dense";
/// The name of the BM25 sparse vector in each collection.
pub const SPARSE_VECTOR: &str = "bm25";

/// An API key that never shows in debug output or errors.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct ApiKey(String);

impl ApiKey {
    pub fn new(key: impl Into<String>) -> Self {
        Self(key.into())
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey([redacted])")
    }
}

/// The payload index to keep on a metadata key, for filters on it to stay fast at scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetadataIndex {
    Keyword,
    Integer,
    Float,
    Bool,
}

/// The `config` table of a `remote::qdrant` provider.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QdrantConfig {
    /// Qdrant's gRPC URL, e.g. `http://127.0.0.1:6334` (`https://` for TLS).
    pub url: String,
    /// The API key, when the server wants one. Prefer `${env.QDRANT_API_KEY}` here; an empty
    /// value means none.
    #[serde(default)]
    pub api_key: Option<ApiKey>,
    /// Put before each store's name to make its collection's name (default `corral_`).
    #[serde(default = "default_prefix")]
    pub collection_prefix: String,
    /// Shards of a new collection (default: the server's).
    #[serde(default, deserialize_with = "lenient::option")]
    pub shard_number: Option<u32>,
    /// Copies of each shard in a new collection (default: the server's).
    #[serde(default, deserialize_with = "lenient::option")]
    pub replication_factor: Option<u32>,
    /// Seconds a request may take (default 30).
    #[serde(default, deserialize_with = "lenient::option")]
    pub timeout_secs: Option<f64>,
    /// Seconds to establish a connection (default 10).
    #[serde(default, deserialize_with = "lenient::option")]
    pub connect_timeout_secs: Option<f64>,
    /// Points per upsert request (default 256).
    #[serde(default, deserialize_with = "lenient::option")]
    pub upsert_batch_size: Option<usize>,
    /// Payload indexes on metadata keys, e.g. `{ lang = "keyword", year = "integer" }`. Each key
    /// should hold values of that type only: Qdrant may answer a filter from the index alone.
    #[serde(default)]
    pub metadata_indexes: BTreeMap<String, MetadataIndex>,
}

fn default_prefix() -> String {
    "corral_".to_string()
}

/// The settings every store of a provider shares.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub prefix: String,
    pub shard_number: Option<u32>,
    pub replication_factor: Option<u32>,
    pub upsert_batch_size: usize,
    pub metadata_indexes: BTreeMap<String, MetadataIndex>,
}

/// The Qdrant client, which has no `Debug` of its own (its config holds the API key).
#[derive(Clone)]
pub(crate) struct Client(pub Arc<Qdrant>);

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("url", &self.0.config.uri)
            .finish_non_exhaustive()
    }
}

/// A Qdrant server or cluster as a place for vector stores.
#[derive(Debug, Clone)]
pub struct QdrantProvider {
    client: Client,
    settings: Arc<Settings>,
}

impl QdrantProvider {
    /// Checks the config and sets up the client; cheap, no connection. Errors name the key.
    pub fn new(config: QdrantConfig) -> Result<Self, String> {
        let url = config.url.trim();
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(format!(
                "`url` must be Qdrant's gRPC URL, http:// or https:// (e.g. http://127.0.0.1:6334), not `{url}`"
            ));
        }
        let seconds = |key: &str, value: Option<f64>, default: u64| match value {
            None => Ok(Duration::from_secs(default)),
            Some(v) => lenient::seconds(v).map_err(|e| format!("`{key}` {e}")),
        };
        let timeout = seconds("timeout_secs", config.timeout_secs, 30)?;
        let connect_timeout = seconds("connect_timeout_secs", config.connect_timeout_secs, 10)?;
        let upsert_batch_size = config.upsert_batch_size.unwrap_or(256);
        if upsert_batch_size == 0 {
            return Err("`upsert_batch_size` must be at least 1".into());
        }
        if config.shard_number == Some(0) {
            return Err("`shard_number` must be at least 1".into());
        }
        if config.replication_factor == Some(0) {
            return Err("`replication_factor` must be at least 1".into());
        }
        check_collection_name(&config.collection_prefix, "x")
            .map_err(|e| format!("`collection_prefix`: {e}"))?;
        let api_key = config.api_key.map(|k| k.0).filter(|k| !k.is_empty());
        // The compatibility check would connect at once; we do not, and Qdrant reports an
        // incompatible request itself.
        let client = Qdrant::from_url(url)
            .api_key(api_key)
            .timeout(timeout)
            .connect_timeout(connect_timeout)
            .skip_compatibility_check()
            .build()
            .map_err(|e| format!("`url` `{url}`: {e}"))?;
        Ok(Self {
            client: Client(Arc::new(client)),
            settings: Arc::new(Settings {
                prefix: config.collection_prefix,
                shard_number: config.shard_number,
                replication_factor: config.replication_factor,
                upsert_batch_size,
                metadata_indexes: config.metadata_indexes,
            }),
        })
    }

    /// The collection that holds the store `name`.
    pub fn collection_name(&self, name: &str) -> String {
        format!("{}{name}", self.settings.prefix)
    }

    /// Opens the store `name`, creating its collection for `dimension`-dimensional vectors if
    /// it is new; an existing collection must have been made for the same dimension.
    pub async fn open(
        &self,
        name: &str,
        dimension: usize,
    ) -> Result<QdrantStore, VectorStoreError> {
        check_collection_name(&self.settings.prefix, name).map_err(error::invalid)?;
        if dimension == 0 {
            return Err(error::invalid(format!(
                "Qdrant collection `{}`: the dimension must be at least 1",
                self.collection_name(name)
            )));
        }
        QdrantStore::open(
            self.client.clone(),
            self.settings.clone(),
            self.collection_name(name),
            dimension,
        )
        .await
    }

    /// Deletes the store `name` and everything in it; `false` when there was none.
    pub async fn delete_store(&self, name: &str) -> Result<bool, VectorStoreError> {
        check_collection_name(&self.settings.prefix, name).map_err(error::invalid)?;
        store::delete_collection(&self.client, &self.collection_name(name)).await
    }
}

#[async_trait]
impl VectorIoProvider for QdrantProvider {
    async fn open_store(
        &self,
        name: &str,
        dimension: usize,
    ) -> Result<Arc<dyn VectorStore>, VectorStoreError> {
        Ok(Arc::new(self.open(name, dimension).await?))
    }
}

/// Qdrant refuses collection names with path-like or control characters, and long ones; say so
/// before asking it.
fn check_collection_name(prefix: &str, name: &str) -> Result<(), String> {
    let full = format!("{prefix}{name}");
    if name.is_empty() {
        return Err("a store name must not be empty".into());
    }
    if full.len() > 255 {
        return Err(format!(
            "collection name `{full}` is longer than Qdrant's 255 bytes"
        ));
    }
    if let Some(c) = full
        .chars()
        .find(|c| c.is_control() || "<>:\"/\\|?*".contains(*c))
    {
        return Err(format!(
            "collection name `{}` holds {c:?}, which Qdrant does not allow",
            full.escape_debug()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(toml_like: serde_json::Value) -> Result<QdrantConfig, serde_json::Error> {
        serde_json::from_value(toml_like)
    }

    #[test]
    fn config_defaults_and_unknown_keys() {
        let c = config(serde_json::json!({ "url": "http://127.0.0.1:6334" })).expect("valid");
        assert_eq!(c.collection_prefix, "corral_");
        assert!(c.api_key.is_none());
        let e = config(serde_json::json!({ "url": "http://x:6334", "colection_prefix": "a" }));
        assert!(e.is_err_and(|e| e.to_string().contains("colection_prefix")));
        let c = config(serde_json::json!({
            "url": "http://x:6334",
            "shard_number": "2",
            "timeout_secs": "2.5",
            "metadata_indexes": { "lang": "keyword", "year": "integer" }
        }))
        .expect("valid");
        assert_eq!(c.shard_number, Some(2));
        assert_eq!(
            c.metadata_indexes.get("year"),
            Some(&MetadataIndex::Integer)
        );
    }

    #[test]
    fn building_checks_the_config_without_connecting() {
        let build = |v: serde_json::Value| QdrantProvider::new(config(v).expect("parses"));
        // Nothing listens on port 1: building must still succeed.
        let p = build(serde_json::json!({ "url": "http://127.0.0.1:1", "api_key": "k" }))
            .expect("cheap");
        assert_eq!(p.collection_name("docs"), "corral_docs");
        assert!(
            build(serde_json::json!({ "url": "127.0.0.1:6334" }))
                .is_err_and(|e| e.contains("`url`"))
        );
        assert!(
            build(serde_json::json!({ "url": "http://x:6334", "timeout_secs": 0 }))
                .is_err_and(|e| e.contains("`timeout_secs`"))
        );
        assert!(
            build(serde_json::json!({ "url": "http://x:6334", "upsert_batch_size": 0 }))
                .is_err_and(|e| e.contains("`upsert_batch_size`"))
        );
        assert!(
            build(serde_json::json!({ "url": "http://x:6334", "collection_prefix": "a/" }))
                .is_err_and(|e| e.contains("`collection_prefix`"))
        );
    }

    #[test]
    fn the_api_key_never_shows() {
        let p = QdrantProvider::new(
            config(serde_json::json!({ "url": "http://127.0.0.1:1", "api_key": "sekrit-123" }))
                .expect("parses"),
        )
        .expect("builds");
        assert!(!format!("{p:?}").contains("sekrit"));
        let c = config(serde_json::json!({ "url": "http://x:1", "api_key": "sekrit-123" }))
            .expect("parses");
        assert!(!format!("{c:?}").contains("sekrit"));
    }

    #[test]
    fn collection_names_are_checked_before_asking_qdrant() {
        assert!(check_collection_name("corral_", "docs").is_ok());
        assert!(check_collection_name("corral_", "").is_err());
        assert!(check_collection_name("corral_", "a/b").is_err());
        assert!(check_collection_name("corral_", &"x".repeat(300)).is_err());
    }
}
