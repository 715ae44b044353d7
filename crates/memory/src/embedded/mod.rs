//! The embedded vector_io provider: stores on this machine's disk, no server.

mod store;
mod tokenizer;
mod vectors;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

use async_trait::async_trait;
use corral_core::{VectorIoProvider, VectorStore, VectorStoreError};
use serde::Deserialize;

pub use store::EmbeddedStore;

/// The provider type's name in `corral.toml`.
pub const PROVIDER_TYPE: &str = "embedded";

/// `[[providers.vector_io]]` of type `embedded`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbeddedConfig {
    /// The directory stores live in, one subdirectory each; default [`default_stores_dir`].
    #[serde(default)]
    pub path: Option<PathBuf>,
}

/// `$CORRAL_DATA/stores`, else `$XDG_DATA_HOME/corral/stores`, else
/// `~/.local/share/corral/stores`.
pub fn default_stores_dir() -> PathBuf {
    default_data_dir().join("stores")
}

/// Where Corral keeps its data (stores, sessions): `$CORRAL_DATA`, else
/// `$XDG_DATA_HOME/corral`, else `~/.local/share/corral`.
pub fn default_data_dir() -> PathBuf {
    let var = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(data) = var("CORRAL_DATA") {
        return data;
    }
    if let Some(xdg) = var("XDG_DATA_HOME") {
        return xdg.join("corral");
    }
    var("HOME")
        .unwrap_or_else(|| PathBuf::from("."))
        .join(".local/share/corral")
}

/// Opens stores under one directory. A store opened twice in a process is shared.
#[derive(Debug)]
pub struct EmbeddedProvider {
    root: PathBuf,
    open: Mutex<HashMap<String, Weak<EmbeddedStore>>>,
}

impl EmbeddedProvider {
    /// Cheap: nothing is touched on disk until a store is opened.
    pub fn new(config: EmbeddedConfig) -> Self {
        Self {
            root: config.path.unwrap_or_else(default_stores_dir),
            open: Mutex::new(HashMap::new()),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory of store `name`. Names are single path components of letters, digits,
    /// `-`, `_` and `.` (not starting with a dot), so a name never escapes the root.
    pub fn store_dir(&self, name: &str) -> Result<PathBuf, VectorStoreError> {
        let ok = !name.is_empty()
            && !name.starts_with('.')
            && name
                .chars()
                .all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !ok {
            return Err(VectorStoreError::InvalidRequest(format!(
                "store name `{name}`: use letters, digits, `-`, `_` and `.`, not starting with `.`"
            )));
        }
        Ok(self.root.join(name))
    }

    /// The stores that exist under the root, by name.
    pub fn list(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return Vec::new();
        };
        let mut names: Vec<String> = entries
            .filter_map(Result::ok)
            .filter(|e| e.path().join(store::MANIFEST).is_file())
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .collect();
        names.sort();
        names
    }

    /// Opens (or creates) store `name`, sharing it with earlier callers in this process.
    pub fn open(
        &self,
        name: &str,
        dimension: usize,
    ) -> Result<Arc<EmbeddedStore>, VectorStoreError> {
        let dir = self.store_dir(name)?;
        let mut open = self
            .open
            .lock()
            .map_err(|_| VectorStoreError::InvalidRequest("the store table is poisoned".into()))?;
        if let Some(store) = open.get(name).and_then(Weak::upgrade) {
            if store.dimension() != dimension {
                return Err(VectorStoreError::DimensionMismatch {
                    expected: store.dimension(),
                    got: dimension,
                });
            }
            return Ok(store);
        }
        let store = Arc::new(EmbeddedStore::open(&dir, dimension)?);
        open.insert(name.to_string(), Arc::downgrade(&store));
        Ok(store)
    }
}

#[async_trait]
impl VectorIoProvider for EmbeddedProvider {
    async fn open_store(
        &self,
        name: &str,
        dimension: usize,
    ) -> Result<Arc<dyn VectorStore>, VectorStoreError> {
        let store: Arc<dyn VectorStore> = self.open(name, dimension)?;
        Ok(store)
    }
}
