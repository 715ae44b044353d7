//! The server's own records, in SQLite under its data directory: uploaded files, vector stores
//! and the files attached to them, each owned by a tenant. Every read and write names the tenant,
//! so one tenant's objects cannot be reached with another's key (they answer 404).

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use serde_json::Value;

use crate::error::ApiError;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS files (
    id TEXT PRIMARY KEY, tenant TEXT NOT NULL, filename TEXT NOT NULL, purpose TEXT NOT NULL,
    bytes INTEGER NOT NULL, created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS vector_stores (
    id TEXT PRIMARY KEY, tenant TEXT NOT NULL, name TEXT NOT NULL, embedding_model TEXT NOT NULL,
    dimension INTEGER NOT NULL, metadata TEXT NOT NULL, created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS vector_store_files (
    store_id TEXT NOT NULL, file_id TEXT NOT NULL, status TEXT NOT NULL, last_error TEXT,
    chunks INTEGER NOT NULL, attributes TEXT NOT NULL, chunking TEXT NOT NULL,
    created_at INTEGER NOT NULL, PRIMARY KEY (store_id, file_id)
);
CREATE TABLE IF NOT EXISTS responses (
    id TEXT PRIMARY KEY, tenant TEXT NOT NULL, created_at INTEGER NOT NULL, body TEXT NOT NULL,
    input_items TEXT NOT NULL, messages TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS conversations (
    id TEXT PRIMARY KEY, tenant TEXT NOT NULL, created_at INTEGER NOT NULL, metadata TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS conversation_items (
    conversation_id TEXT NOT NULL, seq INTEGER NOT NULL, id TEXT NOT NULL, item TEXT NOT NULL,
    PRIMARY KEY (conversation_id, seq)
);
CREATE TABLE IF NOT EXISTS file_batches (
    id TEXT PRIMARY KEY, store_id TEXT NOT NULL, file_ids TEXT NOT NULL, created_at INTEGER NOT NULL
);
";

#[derive(Debug)]
pub struct Records {
    db: Mutex<Connection>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FileRecord {
    pub id: String,
    pub filename: String,
    pub purpose: String,
    pub bytes: u64,
    pub created_at: u64,
}

#[derive(Debug, Clone)]
pub struct StoreRecord {
    pub id: String,
    pub name: String,
    pub embedding_model: String,
    pub dimension: usize,
    pub metadata: Value,
    pub created_at: u64,
}

#[derive(Debug, Clone)]
pub struct StoreFileRecord {
    pub file_id: String,
    pub status: String,
    pub last_error: Option<String>,
    pub chunks: u64,
    pub attributes: Value,
    pub chunking: Value,
    pub created_at: u64,
}

fn db_error(e: rusqlite::Error) -> ApiError {
    tracing::error!("server records: {e}");
    ApiError::new(
        axum::http::StatusCode::INTERNAL_SERVER_ERROR,
        "the server's records could not be read or written; see the server log",
    )
}

fn json_of(text: String) -> Value {
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

impl Records {
    pub fn open(path: &Path) -> Result<Self, String> {
        let db = Connection::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
        db.execute_batch(&format!(
            "PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 5000;{SCHEMA}"
        ))
        .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(Self { db: Mutex::new(db) })
    }

    fn db(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite consistent (each call is one statement or
        // one transaction), so the connection stays usable.
        self.db
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn add_file(&self, tenant: &str, file: &FileRecord) -> Result<(), ApiError> {
        self.db()
            .execute(
                "INSERT INTO files (id, tenant, filename, purpose, bytes, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![file.id, tenant, file.filename, file.purpose, file.bytes as i64, file.created_at as i64],
            )
            .map_err(db_error)?;
        Ok(())
    }

    fn file_of(row: &rusqlite::Row<'_>) -> rusqlite::Result<FileRecord> {
        Ok(FileRecord {
            id: row.get(0)?,
            filename: row.get(1)?,
            purpose: row.get(2)?,
            bytes: row.get::<_, i64>(3)? as u64,
            created_at: row.get::<_, i64>(4)? as u64,
        })
    }

    pub fn file(&self, tenant: &str, id: &str) -> Result<FileRecord, ApiError> {
        self.db()
            .query_row(
                "SELECT id, filename, purpose, bytes, created_at FROM files WHERE tenant = ?1 AND id = ?2",
                params![tenant, id],
                Self::file_of,
            )
            .optional()
            .map_err(db_error)?
            .ok_or_else(|| ApiError::not_found("file", id))
    }

    pub fn files(&self, tenant: &str, purpose: Option<&str>) -> Result<Vec<FileRecord>, ApiError> {
        let db = self.db();
        let mut query = db
            .prepare(
                "SELECT id, filename, purpose, bytes, created_at FROM files
                 WHERE tenant = ?1 AND (?2 IS NULL OR purpose = ?2) ORDER BY created_at DESC, id",
            )
            .map_err(db_error)?;
        let rows = query
            .query_map(params![tenant, purpose], Self::file_of)
            .map_err(db_error)?;
        rows.collect::<Result<_, _>>().map_err(db_error)
    }

    /// Removes the file's record and its attachments to stores; `false` when the tenant has none.
    pub fn delete_file(&self, tenant: &str, id: &str) -> Result<bool, ApiError> {
        let mut db = self.db();
        let tx = db.transaction().map_err(db_error)?;
        let removed = tx
            .execute(
                "DELETE FROM files WHERE tenant = ?1 AND id = ?2",
                params![tenant, id],
            )
            .map_err(db_error)?;
        if removed > 0 {
            tx.execute(
                "DELETE FROM vector_store_files WHERE file_id = ?1",
                params![id],
            )
            .map_err(db_error)?;
        }
        tx.commit().map_err(db_error)?;
        Ok(removed > 0)
    }

    pub fn add_store(&self, tenant: &str, store: &StoreRecord) -> Result<(), ApiError> {
        self.db()
            .execute(
                "INSERT INTO vector_stores (id, tenant, name, embedding_model, dimension, metadata, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    store.id, tenant, store.name, store.embedding_model, store.dimension as i64,
                    store.metadata.to_string(), store.created_at as i64
                ],
            )
            .map_err(db_error)?;
        Ok(())
    }

    fn store_of(row: &rusqlite::Row<'_>) -> rusqlite::Result<StoreRecord> {
        Ok(StoreRecord {
            id: row.get(0)?,
            name: row.get(1)?,
            embedding_model: row.get(2)?,
            dimension: row.get::<_, i64>(3)? as usize,
            metadata: json_of(row.get(4)?),
            created_at: row.get::<_, i64>(5)? as u64,
        })
    }

    pub fn store(&self, tenant: &str, id: &str) -> Result<StoreRecord, ApiError> {
        self.db()
            .query_row(
                "SELECT id, name, embedding_model, dimension, metadata, created_at FROM vector_stores
                 WHERE tenant = ?1 AND id = ?2",
                params![tenant, id],
                Self::store_of,
            )
            .optional()
            .map_err(db_error)?
            .ok_or_else(|| ApiError::not_found("vector store", id))
    }

    pub fn stores(&self, tenant: &str) -> Result<Vec<StoreRecord>, ApiError> {
        let db = self.db();
        let mut query = db
            .prepare(
                "SELECT id, name, embedding_model, dimension, metadata, created_at FROM vector_stores
                 WHERE tenant = ?1 ORDER BY created_at DESC, id",
            )
            .map_err(db_error)?;
        let rows = query
            .query_map(params![tenant], Self::store_of)
            .map_err(db_error)?;
        rows.collect::<Result<_, _>>().map_err(db_error)
    }

    pub fn update_store(
        &self,
        tenant: &str,
        id: &str,
        name: Option<&str>,
        metadata: Option<&Value>,
    ) -> Result<(), ApiError> {
        let changed = self
            .db()
            .execute(
                "UPDATE vector_stores SET name = COALESCE(?3, name), metadata = COALESCE(?4, metadata)
                 WHERE tenant = ?1 AND id = ?2",
                params![tenant, id, name, metadata.map(Value::to_string)],
            )
            .map_err(db_error)?;
        if changed == 0 {
            return Err(ApiError::not_found("vector store", id));
        }
        Ok(())
    }

    pub fn delete_store(&self, tenant: &str, id: &str) -> Result<bool, ApiError> {
        let mut db = self.db();
        let tx = db.transaction().map_err(db_error)?;
        let removed = tx
            .execute(
                "DELETE FROM vector_stores WHERE tenant = ?1 AND id = ?2",
                params![tenant, id],
            )
            .map_err(db_error)?;
        if removed > 0 {
            tx.execute(
                "DELETE FROM vector_store_files WHERE store_id = ?1",
                params![id],
            )
            .map_err(db_error)?;
            tx.execute("DELETE FROM file_batches WHERE store_id = ?1", params![id])
                .map_err(db_error)?;
        }
        tx.commit().map_err(db_error)?;
        Ok(removed > 0)
    }

    /// Records (or re-records) a file attached to a store; the caller has checked both belong
    /// to the tenant.
    pub fn put_store_file(&self, store_id: &str, file: &StoreFileRecord) -> Result<(), ApiError> {
        self.db()
            .execute(
                "INSERT OR REPLACE INTO vector_store_files
                 (store_id, file_id, status, last_error, chunks, attributes, chunking, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    store_id,
                    file.file_id,
                    file.status,
                    file.last_error,
                    file.chunks as i64,
                    file.attributes.to_string(),
                    file.chunking.to_string(),
                    file.created_at as i64
                ],
            )
            .map_err(db_error)?;
        Ok(())
    }

    fn store_file_of(row: &rusqlite::Row<'_>) -> rusqlite::Result<StoreFileRecord> {
        Ok(StoreFileRecord {
            file_id: row.get(0)?,
            status: row.get(1)?,
            last_error: row.get(2)?,
            chunks: row.get::<_, i64>(3)? as u64,
            attributes: json_of(row.get(4)?),
            chunking: json_of(row.get(5)?),
            created_at: row.get::<_, i64>(6)? as u64,
        })
    }

    pub fn store_files(&self, store_id: &str) -> Result<Vec<StoreFileRecord>, ApiError> {
        let db = self.db();
        let mut query = db
            .prepare(
                "SELECT file_id, status, last_error, chunks, attributes, chunking, created_at
                 FROM vector_store_files WHERE store_id = ?1 ORDER BY created_at DESC, file_id",
            )
            .map_err(db_error)?;
        let rows = query
            .query_map(params![store_id], Self::store_file_of)
            .map_err(db_error)?;
        rows.collect::<Result<_, _>>().map_err(db_error)
    }

    pub fn store_file(&self, store_id: &str, file_id: &str) -> Result<StoreFileRecord, ApiError> {
        self.db()
            .query_row(
                "SELECT file_id, status, last_error, chunks, attributes, chunking, created_at
                 FROM vector_store_files WHERE store_id = ?1 AND file_id = ?2",
                params![store_id, file_id],
                Self::store_file_of,
            )
            .optional()
            .map_err(db_error)?
            .ok_or_else(|| ApiError::not_found("vector store file", file_id))
    }

    pub fn delete_store_file(&self, store_id: &str, file_id: &str) -> Result<bool, ApiError> {
        let removed = self
            .db()
            .execute(
                "DELETE FROM vector_store_files WHERE store_id = ?1 AND file_id = ?2",
                params![store_id, file_id],
            )
            .map_err(db_error)?;
        Ok(removed > 0)
    }

    pub fn add_batch(
        &self,
        id: &str,
        store_id: &str,
        file_ids: &[String],
        created_at: u64,
    ) -> Result<(), ApiError> {
        self.db()
            .execute(
                "INSERT INTO file_batches (id, store_id, file_ids, created_at) VALUES (?1, ?2, ?3, ?4)",
                params![id, store_id, serde_json::to_string(file_ids).unwrap_or_default(), created_at as i64],
            )
            .map_err(db_error)?;
        Ok(())
    }

    /// A batch's files and creation time; `None` when it is not this store's.
    pub fn batch(&self, store_id: &str, id: &str) -> Result<(Vec<String>, u64), ApiError> {
        self.db()
            .query_row(
                "SELECT file_ids, created_at FROM file_batches WHERE store_id = ?1 AND id = ?2",
                params![store_id, id],
                |row| Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)? as u64)),
            )
            .optional()
            .map_err(db_error)?
            .map(|(ids, at)| (serde_json::from_str(&ids).unwrap_or_default(), at))
            .ok_or_else(|| ApiError::not_found("file batch", id))
    }

    /// Stores a response: its body as returned, the input items it was given, and the whole
    /// conversation after it (for `previous_response_id`).
    pub fn put_response(
        &self,
        tenant: &str,
        id: &str,
        created_at: u64,
        body: &Value,
        input_items: &Value,
        messages: &Value,
    ) -> Result<(), ApiError> {
        self.db()
            .execute(
                "INSERT OR REPLACE INTO responses (id, tenant, created_at, body, input_items, messages)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![id, tenant, created_at as i64, body.to_string(), input_items.to_string(), messages.to_string()],
            )
            .map_err(db_error)?;
        Ok(())
    }

    /// A stored response's body, input items and conversation.
    pub fn response(&self, tenant: &str, id: &str) -> Result<(Value, Value, Value), ApiError> {
        self.db()
            .query_row(
                "SELECT body, input_items, messages FROM responses WHERE tenant = ?1 AND id = ?2",
                params![tenant, id],
                |row| {
                    Ok((
                        json_of(row.get(0)?),
                        json_of(row.get(1)?),
                        json_of(row.get(2)?),
                    ))
                },
            )
            .optional()
            .map_err(db_error)?
            .ok_or_else(|| ApiError::not_found("response", id))
    }

    pub fn delete_response(&self, tenant: &str, id: &str) -> Result<bool, ApiError> {
        let removed = self
            .db()
            .execute(
                "DELETE FROM responses WHERE tenant = ?1 AND id = ?2",
                params![tenant, id],
            )
            .map_err(db_error)?;
        Ok(removed > 0)
    }

    pub fn add_conversation(
        &self,
        tenant: &str,
        id: &str,
        created_at: u64,
        metadata: &Value,
    ) -> Result<(), ApiError> {
        self.db()
            .execute(
                "INSERT INTO conversations (id, tenant, created_at, metadata) VALUES (?1, ?2, ?3, ?4)",
                params![id, tenant, created_at as i64, metadata.to_string()],
            )
            .map_err(db_error)?;
        Ok(())
    }

    /// A conversation's creation time and metadata.
    pub fn conversation(&self, tenant: &str, id: &str) -> Result<(u64, Value), ApiError> {
        self.db()
            .query_row(
                "SELECT created_at, metadata FROM conversations WHERE tenant = ?1 AND id = ?2",
                params![tenant, id],
                |row| Ok((row.get::<_, i64>(0)? as u64, json_of(row.get(1)?))),
            )
            .optional()
            .map_err(db_error)?
            .ok_or_else(|| ApiError::not_found("conversation", id))
    }

    pub fn update_conversation(
        &self,
        tenant: &str,
        id: &str,
        metadata: &Value,
    ) -> Result<(), ApiError> {
        let changed = self
            .db()
            .execute(
                "UPDATE conversations SET metadata = ?3 WHERE tenant = ?1 AND id = ?2",
                params![tenant, id, metadata.to_string()],
            )
            .map_err(db_error)?;
        if changed == 0 {
            return Err(ApiError::not_found("conversation", id));
        }
        Ok(())
    }

    pub fn delete_conversation(&self, tenant: &str, id: &str) -> Result<bool, ApiError> {
        let mut db = self.db();
        let tx = db.transaction().map_err(db_error)?;
        let removed = tx
            .execute(
                "DELETE FROM conversations WHERE tenant = ?1 AND id = ?2",
                params![tenant, id],
            )
            .map_err(db_error)?;
        if removed > 0 {
            tx.execute(
                "DELETE FROM conversation_items WHERE conversation_id = ?1",
                params![id],
            )
            .map_err(db_error)?;
        }
        tx.commit().map_err(db_error)?;
        Ok(removed > 0)
    }

    /// Appends items (each with its `id`) to a conversation the caller has checked.
    pub fn append_items(&self, conversation_id: &str, items: &[Value]) -> Result<(), ApiError> {
        let mut db = self.db();
        let tx = db.transaction().map_err(db_error)?;
        let next: i64 = tx
            .query_row(
                "SELECT COALESCE(MAX(seq) + 1, 0) FROM conversation_items WHERE conversation_id = ?1",
                params![conversation_id],
                |row| row.get(0),
            )
            .map_err(db_error)?;
        for (i, item) in items.iter().enumerate() {
            let id = item.get("id").and_then(Value::as_str).unwrap_or_default();
            tx.execute(
                "INSERT INTO conversation_items (conversation_id, seq, id, item) VALUES (?1, ?2, ?3, ?4)",
                params![conversation_id, next + i as i64, id, item.to_string()],
            )
            .map_err(db_error)?;
        }
        tx.commit().map_err(db_error)?;
        Ok(())
    }

    /// A conversation's items, oldest first.
    pub fn items(&self, conversation_id: &str) -> Result<Vec<Value>, ApiError> {
        let db = self.db();
        let mut query = db
            .prepare("SELECT item FROM conversation_items WHERE conversation_id = ?1 ORDER BY seq")
            .map_err(db_error)?;
        let rows = query
            .query_map(params![conversation_id], |row| Ok(json_of(row.get(0)?)))
            .map_err(db_error)?;
        rows.collect::<Result<_, _>>().map_err(db_error)
    }

    pub fn delete_item(&self, conversation_id: &str, item_id: &str) -> Result<bool, ApiError> {
        let removed = self
            .db()
            .execute(
                "DELETE FROM conversation_items WHERE conversation_id = ?1 AND id = ?2",
                params![conversation_id, item_id],
            )
            .map_err(db_error)?;
        Ok(removed > 0)
    }
}
