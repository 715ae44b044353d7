//! Sessions in a SQLite file, so a restarted process resumes its conversations.
//!
//! One row per session, per turn and per step. A turn's message lists, citations, pending tool
//! calls and usage are JSON columns; its steps are rows (their `kind` is a column, so a trace can
//! be queried without parsing JSON). Saving a turn is one `BEGIN IMMEDIATE` transaction that
//! deletes the turn's previous version (its steps go with it, `ON DELETE CASCADE`) and inserts
//! the new one, so a reader or a crash sees either the old turn or the new one, never a mix.
//!
//! The file is in WAL mode with `synchronous=NORMAL`: a commit does not wait for `fsync` (a
//! killed process loses nothing it committed; a power cut may lose the last commits but never
//! corrupts the file), and readers do not block the writer. Several processes may share a file:
//! writers queue on SQLite's lock for up to [`BUSY_TIMEOUT`].
//!
//! Copying the WAL back into the database (a checkpoint) is the one step that waits for the
//! disk (two `fsync`s, tens of milliseconds on a slow disk). SQLite would do it inside whichever
//! commit crosses its threshold; a file store instead checkpoints on a thread of its own, with
//! its own connection, every [`CHECKPOINT_EVERY`] writes, so a save does not pay for it (a
//! passive checkpoint runs alongside readers and writers). Under a steady stream of writes the
//! thread makes them wait once for a complete checkpoint when the WAL reaches
//! [`RESTART_FRAMES`], so it does not grow without end; SQLite's own checkpoint stays on as a
//! backstop at [`AUTOCHECKPOINT_PAGES`].
//!
//! rusqlite is synchronous, so every operation runs on tokio's blocking pool, on the one
//! connection behind a mutex.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{self, SyncSender};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{Connection, ErrorCode, OptionalExtension, Row, TransactionBehavior, params};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::session::{Conversation, SessionError, SessionInfo, SessionStore};
use crate::turn::{Step, Turn, TurnStatus};
use corral_core::Message;

/// The layout this code writes, kept in `PRAGMA user_version`. A file with a higher number was
/// written by a newer Corral and is refused rather than misread.
const SCHEMA_VERSION: i64 = 1;

/// How long a write waits for another connection (another process) to finish its own.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Writes between two background checkpoints. A saved turn is some ten to twenty pages of WAL.
const CHECKPOINT_EVERY: u32 = 16;

/// The WAL size (in pages) at which the background thread makes writers wait for a complete
/// checkpoint, so the WAL starts over (16 MiB at 4 KiB pages).
const RESTART_FRAMES: i64 = 4000;

/// The WAL size (in pages) at which a commit checkpoints by itself, should the background
/// thread be stuck. SQLite's default is 1000.
const AUTOCHECKPOINT_PAGES: u32 = 8000;

const SCHEMA: &str = "
CREATE TABLE sessions (
    id          TEXT PRIMARY KEY NOT NULL,
    name        TEXT NOT NULL,
    created_at  INTEGER NOT NULL
) STRICT;
CREATE INDEX sessions_by_age ON sessions (created_at, id);

CREATE TABLE turns (
    id            TEXT PRIMARY KEY NOT NULL,
    session_id    TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    seq           INTEGER NOT NULL,
    status        TEXT NOT NULL,
    stop_reason   TEXT,           -- JSON; NULL until the turn ends
    answer        TEXT NOT NULL,
    input         TEXT NOT NULL,  -- JSON: [Message]
    messages      TEXT NOT NULL,  -- JSON: [Message]
    citations     TEXT NOT NULL,  -- JSON: [Citation]
    pending       TEXT NOT NULL,  -- JSON: [ToolCall]
    usage         TEXT NOT NULL,  -- JSON: Usage
    started_at    INTEGER NOT NULL,
    completed_at  INTEGER,
    UNIQUE (session_id, seq)
) STRICT;

CREATE TABLE steps (
    id            TEXT PRIMARY KEY NOT NULL,
    turn_id       TEXT NOT NULL REFERENCES turns (id) ON DELETE CASCADE,
    seq           INTEGER NOT NULL,
    kind          TEXT NOT NULL,
    details       TEXT NOT NULL,  -- JSON: StepDetails
    started_at    INTEGER NOT NULL,
    completed_at  INTEGER NOT NULL,
    UNIQUE (turn_id, seq)
) STRICT;
";

const TURN_COLUMNS: &str = "id, session_id, seq, status, stop_reason, answer, input, messages, \
                            citations, pending, usage, started_at, completed_at";

/// Sessions kept in a SQLite file (or in memory, for tests).
pub struct SqliteSessionStore {
    conn: Arc<Mutex<Connection>>,
    /// The file, as errors name it (`:memory:` for an in-memory store).
    path: Arc<str>,
    /// The background checkpoint (file stores only).
    checkpointer: Option<Checkpointer>,
}

impl fmt::Debug for SqliteSessionStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteSessionStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SqliteSessionStore {
    /// Opens the store at `path`, creating the file, its directory and the tables as needed.
    /// Fails (naming the file) when the file is not a SQLite database, is not a session store,
    /// or was written by a newer version.
    pub fn open(path: &Path) -> Result<Self, SessionError> {
        let shown = path.display().to_string();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| {
                storage(
                    &shown,
                    format!("cannot create the directory {}: {e}", parent.display()),
                )
            })?;
        }
        let conn = Connection::open(path).map_err(|e| setup_error(&shown, &e))?;
        let mut store = Self::set_up(conn, shown, true)?;
        store.checkpointer = Checkpointer::start(path, &store.path);
        if store.checkpointer.is_some() {
            let conn = store.conn.lock().unwrap_or_else(PoisonError::into_inner);
            if let Err(e) = conn.pragma_update(None, "wal_autocheckpoint", AUTOCHECKPOINT_PAGES) {
                tracing::warn!(path = %store.path, error = %e, "cannot set wal_autocheckpoint");
            }
        }
        Ok(store)
    }

    /// A store in memory, gone when it is dropped. For tests.
    pub fn in_memory() -> Result<Self, SessionError> {
        let shown = ":memory:".to_string();
        let conn = Connection::open_in_memory().map_err(|e| setup_error(&shown, &e))?;
        Self::set_up(conn, shown, false)
    }

    fn set_up(mut conn: Connection, path: String, wal: bool) -> Result<Self, SessionError> {
        let fail = |e: rusqlite::Error| setup_error(&path, &e);
        conn.busy_timeout(BUSY_TIMEOUT).map_err(fail)?;
        if wal {
            // The first statement that reads the file: a file that is not SQLite fails here.
            let mode: String = conn
                .pragma_update_and_check(None, "journal_mode", "wal", |row| row.get(0))
                .map_err(fail)?;
            if !mode.eq_ignore_ascii_case("wal") {
                tracing::warn!(path = %path, mode = %mode, "session store is not in WAL mode");
            }
        }
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(fail)?;
        conn.pragma_update(None, "foreign_keys", true)
            .map_err(fail)?;
        migrate(&mut conn, &path)?;
        tracing::debug!(path = %path, schema = SCHEMA_VERSION, "session store open");
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            path: path.into(),
            checkpointer: None,
        })
    }

    /// Counts a write, for the background checkpoint.
    fn wrote(&self) {
        if let Some(checkpointer) = &self.checkpointer {
            checkpointer.wrote();
        }
    }

    /// Runs `op` on the connection, on the blocking pool.
    async fn run<T, F>(&self, op: F) -> Result<T, SessionError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection, &str) -> Result<T, SessionError> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        let path = Arc::clone(&self.path);
        tokio::task::spawn_blocking(move || {
            let mut guard = match conn.lock() {
                Ok(guard) => guard,
                // An operation panicked while holding the connection. Its transaction rolled
                // back when it was dropped, so what the file holds is still consistent.
                Err(poisoned) => {
                    tracing::warn!(path = %path, "session store recovered after a panic");
                    conn.clear_poison();
                    poisoned.into_inner()
                }
            };
            op(&mut guard, &path)
        })
        .await
        .map_err(|e| storage(&self.path, format!("the store's worker failed: {e}")))?
    }
}

/// A thread with its own connection that checkpoints the WAL when woken. It ends when the
/// store is dropped (its channel closes).
#[derive(Debug)]
struct Checkpointer {
    wake: SyncSender<()>,
    writes: AtomicU32,
}

impl Checkpointer {
    /// `None` (SQLite then checkpoints inside commits, as usual) when the connection or the
    /// thread cannot be had.
    fn start(file: &Path, path: &str) -> Option<Self> {
        let conn = match Connection::open(file) {
            Ok(conn) => conn,
            Err(e) => {
                tracing::warn!(path = %path, error = %e, "no background checkpoints");
                return None;
            }
        };
        if let Err(e) = conn.busy_timeout(BUSY_TIMEOUT) {
            tracing::warn!(path = %path, error = %e, "no background checkpoints");
            return None;
        }
        let (wake, woken) = mpsc::sync_channel::<()>(1);
        let thread_path = path.to_string();
        let spawned = std::thread::Builder::new()
            .name("corral-sessions-checkpoint".to_string())
            .spawn(move || checkpoint_loop(&conn, &woken, &thread_path));
        match spawned {
            Ok(_) => Some(Self {
                wake,
                writes: AtomicU32::new(0),
            }),
            Err(e) => {
                tracing::warn!(path = %path, error = %e, "no background checkpoints");
                None
            }
        }
    }

    fn wrote(&self) {
        if self.writes.fetch_add(1, Ordering::Relaxed) + 1 >= CHECKPOINT_EVERY {
            self.writes.store(0, Ordering::Relaxed);
            // When the channel is full a checkpoint is already due; it takes this write too.
            let _ = self.wake.try_send(());
        }
    }
}

fn checkpoint_loop(conn: &Connection, woken: &mpsc::Receiver<()>, path: &str) {
    while woken.recv().is_ok() {
        // PASSIVE copies what it can without waiting for readers or writers.
        let frames = match checkpoint(conn, "PASSIVE") {
            Ok(frames) => frames,
            Err(e) => {
                tracing::warn!(path = %path, error = %e, "checkpoint failed");
                continue;
            }
        };
        // Under a steady stream of writes the WAL is never wholly copied at a moment when no
        // write is under way, so it is never started over and keeps growing. RESTART waits for
        // the write under way, copies the rest and makes the next write start the WAL over;
        // writes wait for it, this once.
        if frames >= RESTART_FRAMES
            && let Err(e) = checkpoint(conn, "RESTART")
        {
            tracing::warn!(path = %path, error = %e, "checkpoint failed");
        }
    }
}

/// Runs a checkpoint; the WAL's size in frames (pages) before it.
fn checkpoint(conn: &Connection, mode: &str) -> rusqlite::Result<i64> {
    let (busy, frames, copied) =
        conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, i64>(1)?,
                row.get::<_, i64>(2)?,
            ))
        })?;
    tracing::trace!(mode, busy, frames, copied, "checkpoint");
    Ok(frames)
}

/// Creates the tables in a new file; checks the version of an existing one.
fn migrate(conn: &mut Connection, path: &str) -> Result<(), SessionError> {
    let fail = |e: rusqlite::Error| setup_error(path, &e);
    // IMMEDIATE: two processes opening a new file at once must not both create the tables.
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(fail)?;
    let version: i64 = tx
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(fail)?;
    match version {
        SCHEMA_VERSION => return Ok(()),
        0 => {
            let tables: i64 = tx
                .query_row(
                    "SELECT count(*) FROM sqlite_schema WHERE type = 'table'",
                    [],
                    |row| row.get(0),
                )
                .map_err(fail)?;
            if tables > 0 {
                return Err(storage(
                    path,
                    "is a SQLite database but not a Corral session store (it has tables but no \
                     session schema version)",
                ));
            }
            tx.execute_batch(SCHEMA).map_err(fail)?;
            tx.pragma_update(None, "user_version", SCHEMA_VERSION)
                .map_err(fail)?;
            tracing::debug!(path = %path, schema = SCHEMA_VERSION, "created session tables");
        }
        v if v > SCHEMA_VERSION => {
            return Err(storage(
                path,
                format!(
                    "was written by a newer version of Corral (session schema {v}; this version \
                     reads schema {SCHEMA_VERSION}); upgrade Corral or use another file"
                ),
            ));
        }
        v => {
            return Err(storage(
                path,
                format!("has an unknown session schema version {v}"),
            ));
        }
    }
    tx.commit().map_err(fail)
}

fn storage(path: &str, message: impl Into<String>) -> SessionError {
    SessionError::Storage {
        path: path.to_string(),
        message: message.into(),
    }
}

fn setup_error(path: &str, e: &rusqlite::Error) -> SessionError {
    match e.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) => storage(
            path,
            format!("is not a SQLite database, or is encrypted or corrupt ({e})"),
        ),
        Some(ErrorCode::CannotOpen) => storage(path, format!("cannot be opened ({e})")),
        _ => storage(path, e.to_string()),
    }
}

/// Maps a SQLite error to [`SessionError::Storage`], saying what was being done.
fn sql_error(path: &str, doing: impl fmt::Display) -> impl FnOnce(rusqlite::Error) -> SessionError {
    move |e| storage(path, format!("{doing}: {e}"))
}

fn to_json(
    path: &str,
    turn_id: &str,
    column: &str,
    value: &impl Serialize,
) -> Result<String, SessionError> {
    serde_json::to_string(value).map_err(|e| {
        storage(
            path,
            format!("turn `{turn_id}`: cannot encode `{column}`: {e}"),
        )
    })
}

fn from_json<T: DeserializeOwned>(
    path: &str,
    what: &str,
    column: &str,
    text: &str,
) -> Result<T, SessionError> {
    serde_json::from_str(text)
        .map_err(|e| storage(path, format!("{what}: column `{column}` is not valid: {e}")))
}

fn status_text(path: &str, turn_id: &str, status: TurnStatus) -> Result<String, SessionError> {
    match serde_json::to_value(status) {
        Ok(serde_json::Value::String(text)) => Ok(text),
        Ok(other) => Err(storage(
            path,
            format!("turn `{turn_id}`: status encodes as {other}, not a string"),
        )),
        Err(e) => Err(storage(
            path,
            format!("turn `{turn_id}`: cannot encode its status: {e}"),
        )),
    }
}

/// A turn as its row and its steps' rows: encoded before the blocking task, so the task owns
/// plain data and the turn need not be cloned.
struct TurnRow {
    id: String,
    session_id: String,
    seq: i64,
    status: String,
    stop_reason: Option<String>,
    answer: String,
    input: String,
    messages: String,
    citations: String,
    pending: String,
    usage: String,
    started_at: i64,
    completed_at: Option<i64>,
    steps: Vec<StepRow>,
}

struct StepRow {
    id: String,
    kind: &'static str,
    details: String,
    started_at: i64,
    completed_at: i64,
}

impl TurnRow {
    fn encode(turn: &Turn, path: &str) -> Result<Self, SessionError> {
        let id = turn.id.as_str();
        let stop_reason = match &turn.stop_reason {
            Some(reason) => Some(to_json(path, id, "stop_reason", reason)?),
            None => None,
        };
        let steps = turn
            .steps
            .iter()
            .map(|step| {
                Ok(StepRow {
                    id: step.id.clone(),
                    kind: step.kind().as_str(),
                    details: to_json(path, id, "details", &step.details)?,
                    started_at: step.started_at,
                    completed_at: step.completed_at,
                })
            })
            .collect::<Result<Vec<_>, SessionError>>()?;
        Ok(Self {
            id: turn.id.clone(),
            session_id: turn.session_id.clone(),
            seq: i64::from(turn.seq),
            status: status_text(path, id, turn.status)?,
            stop_reason,
            answer: turn.answer.clone(),
            input: to_json(path, id, "input", &turn.input)?,
            messages: to_json(path, id, "messages", &turn.messages)?,
            citations: to_json(path, id, "citations", &turn.citations)?,
            pending: to_json(path, id, "pending", &turn.pending_tool_calls)?,
            usage: to_json(path, id, "usage", &turn.usage)?,
            started_at: turn.started_at,
            completed_at: turn.completed_at,
            steps,
        })
    }
}

fn write_turn(conn: &mut Connection, path: &str, row: &TurnRow) -> Result<(), SessionError> {
    let saving = format!("saving turn `{}`", row.id);
    // IMMEDIATE takes the write lock up front: a deferred transaction that reads and then
    // writes can fail at once with SQLITE_BUSY when another connection wrote in between,
    // without waiting for the busy timeout.
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sql_error(path, &saving))?;
    let session_exists = tx
        .prepare_cached("SELECT 1 FROM sessions WHERE id = ?1")
        .and_then(|mut stmt| stmt.exists([&row.session_id]))
        .map_err(sql_error(path, &saving))?;
    if !session_exists {
        return Err(SessionError::UnknownSession(row.session_id.clone()));
    }
    // The previous version of the turn, if any; its steps go with it (ON DELETE CASCADE).
    tx.prepare_cached("DELETE FROM turns WHERE id = ?1")
        .and_then(|mut stmt| stmt.execute([&row.id]))
        .map_err(sql_error(path, &saving))?;
    tx.prepare_cached(
        "INSERT INTO turns (id, session_id, seq, status, stop_reason, answer, input, messages, \
         citations, pending, usage, started_at, completed_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
    )
    .and_then(|mut stmt| {
        stmt.execute(params![
            row.id,
            row.session_id,
            row.seq,
            row.status,
            row.stop_reason,
            row.answer,
            row.input,
            row.messages,
            row.citations,
            row.pending,
            row.usage,
            row.started_at,
            row.completed_at,
        ])
    })
    .map_err(|e| {
        if is_unique_violation(&e) {
            storage(
                path,
                format!(
                    "{saving}: session `{}` already has another turn at seq {}",
                    row.session_id, row.seq
                ),
            )
        } else {
            storage(path, format!("{saving}: {e}"))
        }
    })?;
    {
        let mut insert = tx
            .prepare_cached(
                "INSERT INTO steps (id, turn_id, seq, kind, details, started_at, completed_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )
            .map_err(sql_error(path, &saving))?;
        for (seq, step) in (0_i64..).zip(&row.steps) {
            insert
                .execute(params![
                    step.id,
                    row.id,
                    seq,
                    step.kind,
                    step.details,
                    step.started_at,
                    step.completed_at,
                ])
                .map_err(|e| {
                    if is_unique_violation(&e) {
                        storage(
                            path,
                            format!("{saving}: step id `{}` is already used", step.id),
                        )
                    } else {
                        storage(path, format!("{saving}: {e}"))
                    }
                })?;
        }
    }
    tx.commit().map_err(sql_error(path, &saving))
}

fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_extended_error_code(),
        Some(rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE | rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY)
    )
}

fn read_turns(
    conn: &mut Connection,
    path: &str,
    session_id: &str,
) -> Result<Vec<Turn>, SessionError> {
    let reading = format!("reading the turns of session `{session_id}`");
    // One read transaction: the turns and their steps come from the same snapshot, even while
    // another connection writes.
    let tx = conn.transaction().map_err(sql_error(path, &reading))?;
    require_session(&tx, path, &reading, session_id)?;

    let mut turns = Vec::new();
    {
        let mut stmt = tx
            .prepare_cached(&format!(
                "SELECT {TURN_COLUMNS} FROM turns WHERE session_id = ?1 ORDER BY seq"
            ))
            .map_err(sql_error(path, &reading))?;
        let mut rows = stmt
            .query([session_id])
            .map_err(sql_error(path, &reading))?;
        while let Some(row) = rows.next().map_err(sql_error(path, &reading))? {
            turns.push(decode_turn(row, path)?);
        }
    }

    let index: HashMap<String, usize> = turns
        .iter()
        .enumerate()
        .map(|(i, turn)| (turn.id.clone(), i))
        .collect();
    {
        let mut stmt = tx
            .prepare_cached(
                "SELECT s.turn_id, s.id, s.details, s.started_at, s.completed_at \
                 FROM steps AS s JOIN turns AS t ON t.id = s.turn_id \
                 WHERE t.session_id = ?1 ORDER BY t.seq, s.seq",
            )
            .map_err(sql_error(path, &reading))?;
        let mut rows = stmt
            .query([session_id])
            .map_err(sql_error(path, &reading))?;
        while let Some(row) = rows.next().map_err(sql_error(path, &reading))? {
            let turn_id: String = row.get(0).map_err(sql_error(path, &reading))?;
            let step = decode_step(row, path, &turn_id)?;
            if let Some(&i) = index.get(&turn_id) {
                turns[i].steps.push(step);
            }
        }
    }
    tx.commit().map_err(sql_error(path, &reading))?;
    Ok(turns)
}

/// `UnknownSession` unless the session exists.
fn require_session(
    tx: &rusqlite::Transaction<'_>,
    path: &str,
    reading: &str,
    session_id: &str,
) -> Result<(), SessionError> {
    let exists = tx
        .prepare_cached("SELECT 1 FROM sessions WHERE id = ?1")
        .and_then(|mut stmt| stmt.exists([session_id]))
        .map_err(sql_error(path, reading))?;
    if exists {
        Ok(())
    } else {
        Err(SessionError::UnknownSession(session_id.to_string()))
    }
}

/// What a new turn needs: the next seq and the completed turns' messages, read without steps
/// or the columns nobody needs here.
fn read_conversation(
    conn: &mut Connection,
    path: &str,
    session_id: &str,
) -> Result<Conversation, SessionError> {
    let reading = format!("reading the conversation of session `{session_id}`");
    let tx = conn.transaction().map_err(sql_error(path, &reading))?;
    require_session(&tx, path, &reading, session_id)?;
    let completed = serde_json::to_value(TurnStatus::Completed)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    let mut conversation = Conversation::default();
    {
        let mut stmt = tx
            .prepare_cached(
                "SELECT id, seq, status, input, messages FROM turns \
                 WHERE session_id = ?1 ORDER BY seq",
            )
            .map_err(sql_error(path, &reading))?;
        let mut rows = stmt
            .query([session_id])
            .map_err(sql_error(path, &reading))?;
        while let Some(row) = rows.next().map_err(sql_error(path, &reading))? {
            let id: String = row.get(0).map_err(sql_error(path, &reading))?;
            let what = format!("turn `{id}`");
            let seq: i64 = row.get(1).map_err(sql_error(path, &reading))?;
            let seq = u32::try_from(seq)
                .map_err(|_| storage(path, format!("{what}: seq {seq} is out of range")))?;
            conversation.next_seq = seq + 1;
            let status: String = row.get(2).map_err(sql_error(path, &reading))?;
            if status != completed {
                continue;
            }
            let input: String = row.get(3).map_err(sql_error(path, &reading))?;
            let messages: String = row.get(4).map_err(sql_error(path, &reading))?;
            let mut group: Vec<Message> = from_json(path, &what, "input", &input)?;
            group.extend(from_json::<Vec<Message>>(
                path, &what, "messages", &messages,
            )?);
            conversation.turns.push(group);
        }
    }
    tx.commit().map_err(sql_error(path, &reading))?;
    Ok(conversation)
}

/// A row of `SELECT {TURN_COLUMNS}`, without its steps.
fn decode_turn(row: &Row<'_>, path: &str) -> Result<Turn, SessionError> {
    let id: String = row.get(0).map_err(sql_error(path, "reading a turn's id"))?;
    let what = format!("turn `{id}`");
    let column = |name: &str| format!("{what}: column `{name}`");
    let text = |i: usize, name: &str| -> Result<String, SessionError> {
        row.get(i).map_err(sql_error(path, column(name)))
    };

    let seq: i64 = row.get(2).map_err(sql_error(path, column("seq")))?;
    let seq = u32::try_from(seq)
        .map_err(|_| storage(path, format!("{what}: seq {seq} is out of range")))?;
    let status = text(3, "status")?;
    let status: TurnStatus = serde_json::from_value(serde_json::Value::String(status))
        .map_err(|e| storage(path, format!("{what}: column `status` is not valid: {e}")))?;
    let stop_reason: Option<String> = row.get(4).map_err(sql_error(path, column("stop_reason")))?;
    let stop_reason = match stop_reason {
        Some(json) => Some(from_json(path, &what, "stop_reason", &json)?),
        None => None,
    };

    Ok(Turn {
        session_id: text(1, "session_id")?,
        seq,
        status,
        stop_reason,
        answer: text(5, "answer")?,
        input: from_json(path, &what, "input", &text(6, "input")?)?,
        messages: from_json(path, &what, "messages", &text(7, "messages")?)?,
        steps: Vec::new(),
        citations: from_json(path, &what, "citations", &text(8, "citations")?)?,
        pending_tool_calls: from_json(path, &what, "pending", &text(9, "pending")?)?,
        usage: from_json(path, &what, "usage", &text(10, "usage")?)?,
        started_at: row.get(11).map_err(sql_error(path, column("started_at")))?,
        completed_at: row
            .get(12)
            .map_err(sql_error(path, column("completed_at")))?,
        id,
    })
}

/// A row of `SELECT turn_id, id, details, started_at, completed_at FROM steps`.
fn decode_step(row: &Row<'_>, path: &str, turn_id: &str) -> Result<Step, SessionError> {
    let id: String = row.get(1).map_err(sql_error(
        path,
        format!("turn `{turn_id}`: reading a step's id"),
    ))?;
    let what = format!("turn `{turn_id}`, step `{id}`");
    let column = |name: &str| format!("{what}: column `{name}`");
    let details: String = row.get(2).map_err(sql_error(path, column("details")))?;
    Ok(Step {
        details: from_json(path, &what, "details", &details)?,
        started_at: row.get(3).map_err(sql_error(path, column("started_at")))?,
        completed_at: row
            .get(4)
            .map_err(sql_error(path, column("completed_at")))?,
        id,
    })
}

fn decode_session(row: &Row<'_>) -> rusqlite::Result<SessionInfo> {
    Ok(SessionInfo {
        id: row.get(0)?,
        name: row.get(1)?,
        created_at: row.get(2)?,
    })
}

#[async_trait]
impl SessionStore for SqliteSessionStore {
    async fn create_session(&self, session: &SessionInfo) -> Result<(), SessionError> {
        let session = session.clone();
        self.run(move |conn, path| {
            // Like the memory store: creating a session that exists keeps the existing one.
            conn.prepare_cached(
                "INSERT INTO sessions (id, name, created_at) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (id) DO NOTHING",
            )
            .and_then(|mut stmt| {
                stmt.execute(params![session.id, session.name, session.created_at])
            })
            .map_err(sql_error(
                path,
                format!("creating session `{}`", session.id),
            ))?;
            Ok(())
        })
        .await?;
        self.wrote();
        Ok(())
    }

    async fn session(&self, id: &str) -> Result<Option<SessionInfo>, SessionError> {
        let id = id.to_string();
        self.run(move |conn, path| {
            conn.prepare_cached("SELECT id, name, created_at FROM sessions WHERE id = ?1")
                .and_then(|mut stmt| stmt.query_row([&id], decode_session).optional())
                .map_err(sql_error(path, format!("reading session `{id}`")))
        })
        .await
    }

    async fn list_sessions(&self) -> Result<Vec<SessionInfo>, SessionError> {
        self.run(|conn, path| {
            conn.prepare_cached(
                "SELECT id, name, created_at FROM sessions ORDER BY created_at DESC, id DESC",
            )
            .and_then(|mut stmt| {
                stmt.query_map([], decode_session)?
                    .collect::<rusqlite::Result<Vec<_>>>()
            })
            .map_err(sql_error(path, "listing sessions"))
        })
        .await
    }

    async fn delete_session(&self, id: &str) -> Result<bool, SessionError> {
        let id = id.to_string();
        let deleted = self
            .run(move |conn, path| {
                // One statement is one transaction; the session's turns and steps cascade with it.
                let deleted = conn
                    .prepare_cached("DELETE FROM sessions WHERE id = ?1")
                    .and_then(|mut stmt| stmt.execute([&id]))
                    .map_err(sql_error(path, format!("deleting session `{id}`")))?;
                Ok(deleted > 0)
            })
            .await?;
        self.wrote();
        Ok(deleted)
    }

    async fn turns(&self, session_id: &str) -> Result<Vec<Turn>, SessionError> {
        let session_id = session_id.to_string();
        self.run(move |conn, path| read_turns(conn, path, &session_id))
            .await
    }

    async fn conversation(&self, session_id: &str) -> Result<Conversation, SessionError> {
        let session_id = session_id.to_string();
        self.run(move |conn, path| read_conversation(conn, path, &session_id))
            .await
    }

    async fn save_turn(&self, turn: &Turn) -> Result<(), SessionError> {
        let row = TurnRow::encode(turn, &self.path)?;
        self.run(move |conn, path| write_turn(conn, path, &row))
            .await?;
        self.wrote();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::io::{BufRead, BufReader};
    use std::path::PathBuf;
    use std::process::{Child, Command, Stdio};
    use std::time::Instant;

    use corral_core::{
        ChatResponse, Citation, FinishReason, Message, PageRange, ToolCall, Usage, Violation,
        ViolationLevel,
    };
    use serde_json::json;

    use super::*;
    use crate::turn::{ShieldAction, ShieldTarget, StepDetails, StopReason, ToolResult};

    fn session(id: &str, created_at: i64) -> SessionInfo {
        SessionInfo {
            id: id.to_string(),
            name: format!("agent for {id}"),
            created_at,
        }
    }

    fn call(id: &str) -> ToolCall {
        ToolCall {
            id: id.to_string(),
            name: "search".to_string(),
            arguments: json!({ "query": format!("query {id}"), "limit": 3 }),
        }
    }

    fn citation(index: usize) -> Citation {
        Citation {
            index,
            store: "docs".to_string(),
            source: "guide.pdf".to_string(),
            pages: Some(PageRange { start: 3, end: 4 }),
            heading_path: vec!["Installation".to_string(), "Requirements".to_string()],
            document_id: "doc_1".to_string(),
            chunk_id: format!("chunk_{index}"),
            score: 0.731_f32 / index as f32,
        }
    }

    fn step(id: &str, at: i64, details: StepDetails) -> Step {
        Step {
            id: id.to_string(),
            details,
            started_at: at,
            completed_at: at + 7,
        }
    }

    /// A step of each kind, in the order `i % 4`.
    fn step_of_kind(id: &str, i: usize) -> Step {
        let at = 1_000 + i as i64 * 10;
        let details = match i % 4 {
            0 => StepDetails::Inference {
                response: ChatResponse {
                    text: "Let me look that up.".to_string(),
                    tool_calls: vec![call("call_a"), call("call_b")],
                    finish_reason: FinishReason::ToolCalls,
                    usage: Some(Usage {
                        prompt_tokens: 120,
                        completion_tokens: 30,
                    }),
                    tool_call_error: Some("trailing text after the call".to_string()),
                },
            },
            1 => StepDetails::ToolExecution {
                calls: vec![call("call_a"), call("call_b")],
                results: vec![
                    ToolResult {
                        call_id: "call_a".to_string(),
                        tool: "search".to_string(),
                        content: "three passages about «installation» ✓".to_string(),
                        error: None,
                        metadata: json!({ "hits": 3, "took_ms": 12.5 })
                            .as_object()
                            .cloned()
                            .unwrap(),
                    },
                    ToolResult {
                        call_id: "call_b".to_string(),
                        tool: "search".to_string(),
                        content: "the search failed: timeout".to_string(),
                        error: Some("timeout after 30 s".to_string()),
                        metadata: serde_json::Map::new(),
                    },
                ],
            },
            2 => StepDetails::ShieldCall {
                shield: "llama_guard".to_string(),
                target: ShieldTarget::Output,
                violation: Some(
                    Violation::new(ViolationLevel::Warn, "Be careful.")
                        .with("category", "S6")
                        .with_replacement("redacted text"),
                ),
                subject: Some("web_search (call_1)".to_string()),
                action: Some(ShieldAction::Redacted),
            },
            _ => StepDetails::Retrieval {
                query: "how do I install it?".to_string(),
                context: "[1] guide.pdf, p. 3–4: Run the installer.\n[2] …".to_string(),
                citations: vec![citation(1), citation(2)],
                left_out: 4,
            },
        };
        step(id, at, details)
    }

    fn turn(session_id: &str, seq: u32, steps: usize, status: TurnStatus) -> Turn {
        let id = format!("turn_{session_id}_{seq}");
        let completed = status == TurnStatus::Completed;
        Turn {
            steps: (0..steps)
                .map(|i| step_of_kind(&format!("step_{id}_{i}"), i))
                .collect(),
            session_id: session_id.to_string(),
            seq,
            input: vec![Message::user(format!(
                "question {seq}: how do I install it?"
            ))],
            messages: vec![
                Message::assistant_tool_calls("Let me look.", vec![call("call_a")]),
                Message::tool_result("call_a", "three passages"),
                Message::assistant(format!("answer {seq} [1]")),
            ],
            status,
            stop_reason: completed.then_some(StopReason::RepeatedToolCall {
                tool: "search".to_string(),
                times: 3,
            }),
            answer: if completed {
                format!("answer {seq} [1]")
            } else {
                String::new()
            },
            citations: vec![citation(1)],
            pending_tool_calls: if status == TurnStatus::AwaitingInput {
                vec![call("call_client")]
            } else {
                Vec::new()
            },
            usage: Usage {
                prompt_tokens: 300 + seq,
                completion_tokens: 40,
            },
            started_at: 1_000 + i64::from(seq),
            completed_at: completed.then_some(2_000 + i64::from(seq)),
            id,
        }
    }

    fn count(store: &SqliteSessionStore, sql: &str) -> i64 {
        let conn = store.conn.lock().unwrap();
        conn.query_row(sql, [], |row| row.get(0)).unwrap()
    }

    #[tokio::test]
    async fn a_turn_with_every_kind_of_step_round_trips() {
        let store = SqliteSessionStore::in_memory().unwrap();
        store.create_session(&session("s", 1)).await.unwrap();
        let saved = turn("s", 0, 8, TurnStatus::Completed);
        let kinds: std::collections::HashSet<_> = saved.steps.iter().map(Step::kind).collect();
        assert_eq!(kinds.len(), 4, "every StepDetails variant is exercised");
        store.save_turn(&saved).await.unwrap();
        let paused = turn("s", 1, 2, TurnStatus::AwaitingInput);
        store.save_turn(&paused).await.unwrap();
        let failed = Turn {
            stop_reason: Some(StopReason::Error {
                message: "provider down".to_string(),
            }),
            ..turn("s", 2, 0, TurnStatus::Failed)
        };
        store.save_turn(&failed).await.unwrap();
        let running = turn("s", 3, 1, TurnStatus::InProgress);
        store.save_turn(&running).await.unwrap();

        let turns = store.turns("s").await.unwrap();
        assert_eq!(turns, vec![saved, paused, failed, running]);
        // The kind is a column, for queries that do not parse JSON.
        assert_eq!(
            count(
                &store,
                "SELECT count(*) FROM steps WHERE kind = 'tool_execution'"
            ),
            2 + 1
        );
    }

    #[tokio::test]
    async fn saving_a_turn_again_replaces_it_and_its_steps() {
        let store = SqliteSessionStore::in_memory().unwrap();
        store.create_session(&session("s", 1)).await.unwrap();
        let paused = turn("s", 0, 2, TurnStatus::AwaitingInput);
        store.save_turn(&paused).await.unwrap();

        // Resumed: the first step is kept, the second is gone, two new ones follow.
        let mut resumed = turn("s", 0, 0, TurnStatus::Completed);
        resumed.steps = vec![
            paused.steps[0].clone(),
            step_of_kind("step_new_1", 1),
            step_of_kind("step_new_2", 3),
        ];
        store.save_turn(&resumed).await.unwrap();

        assert_eq!(store.turns("s").await.unwrap(), vec![resumed.clone()]);
        assert_eq!(count(&store, "SELECT count(*) FROM turns"), 1);
        assert_eq!(count(&store, "SELECT count(*) FROM steps"), 3);
        let old_step = format!(
            "SELECT count(*) FROM steps WHERE id = '{}'",
            paused.steps[1].id
        );
        assert_eq!(count(&store, &old_step), 0);
    }

    #[tokio::test]
    async fn turns_come_back_in_seq_order() {
        let store = SqliteSessionStore::in_memory().unwrap();
        store.create_session(&session("s", 1)).await.unwrap();
        for seq in [2, 0, 3, 1] {
            store
                .save_turn(&turn("s", seq, 3, TurnStatus::Completed))
                .await
                .unwrap();
        }
        let turns = store.turns("s").await.unwrap();
        let seqs: Vec<u32> = turns.iter().map(|t| t.seq).collect();
        assert_eq!(seqs, vec![0, 1, 2, 3]);
        for t in &turns {
            let ids: Vec<&str> = t.steps.iter().map(|s| s.id.as_str()).collect();
            let expected: Vec<String> = (0..3).map(|i| format!("step_{}_{i}", t.id)).collect();
            assert_eq!(ids, expected, "steps keep their order");
        }
    }

    #[tokio::test]
    async fn another_turn_at_a_taken_seq_is_refused() {
        let store = SqliteSessionStore::in_memory().unwrap();
        store.create_session(&session("s", 1)).await.unwrap();
        let first = turn("s", 0, 1, TurnStatus::Completed);
        store.save_turn(&first).await.unwrap();
        let clash = Turn {
            id: "turn_other".to_string(),
            steps: Vec::new(),
            ..first.clone()
        };
        let err = store.save_turn(&clash).await.unwrap_err();
        let SessionError::Storage { message, .. } = err else {
            panic!("expected a storage error, got {err:?}");
        };
        assert!(
            message.contains("already has another turn at seq 0"),
            "{message}"
        );
        assert_eq!(store.turns("s").await.unwrap(), vec![first]);
    }

    #[tokio::test]
    async fn an_unknown_session_is_an_error() {
        let store = SqliteSessionStore::in_memory().unwrap();
        let err = store
            .save_turn(&turn("nope", 0, 1, TurnStatus::Completed))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, SessionError::UnknownSession(id) if id == "nope"),
            "{err:?}"
        );
        let err = store.turns("nope").await.unwrap_err();
        assert!(
            matches!(&err, SessionError::UnknownSession(id) if id == "nope"),
            "{err:?}"
        );
        assert_eq!(store.session("nope").await.unwrap(), None);
        assert!(!store.delete_session("nope").await.unwrap());
        assert_eq!(count(&store, "SELECT count(*) FROM turns"), 0);
        assert_eq!(count(&store, "SELECT count(*) FROM steps"), 0);
    }

    #[tokio::test]
    async fn deleting_a_session_deletes_its_turns_and_steps() {
        let store = SqliteSessionStore::in_memory().unwrap();
        store.create_session(&session("a", 1)).await.unwrap();
        store.create_session(&session("b", 2)).await.unwrap();
        for seq in 0..3 {
            store
                .save_turn(&turn("a", seq, 2, TurnStatus::Completed))
                .await
                .unwrap();
        }
        let kept = turn("b", 0, 4, TurnStatus::Completed);
        store.save_turn(&kept).await.unwrap();

        assert!(store.delete_session("a").await.unwrap());
        assert_eq!(store.session("a").await.unwrap(), None);
        assert!(matches!(
            store.turns("a").await,
            Err(SessionError::UnknownSession(_))
        ));
        assert_eq!(count(&store, "SELECT count(*) FROM turns"), 1);
        assert_eq!(count(&store, "SELECT count(*) FROM steps"), 4);
        assert_eq!(store.turns("b").await.unwrap(), vec![kept]);
    }

    #[tokio::test]
    async fn the_conversation_is_what_the_turns_make() {
        let store = SqliteSessionStore::in_memory().unwrap();
        store.create_session(&session("s", 1)).await.unwrap();
        assert_eq!(
            store.conversation("s").await.unwrap(),
            Conversation::default()
        );
        for (seq, status) in [
            (0, TurnStatus::Completed),
            (1, TurnStatus::Failed),
            (2, TurnStatus::Completed),
            (3, TurnStatus::AwaitingInput),
        ] {
            store.save_turn(&turn("s", seq, 2, status)).await.unwrap();
        }
        let read = store.conversation("s").await.unwrap();
        let derived = Conversation::of(&store.turns("s").await.unwrap());
        assert_eq!(read, derived);
        assert_eq!(read.next_seq, 4);
        assert_eq!(read.turns.len(), 2, "only completed turns make history");
        assert!(matches!(
            store.conversation("nope").await,
            Err(SessionError::UnknownSession(_))
        ));
    }

    #[tokio::test]
    async fn sessions_are_listed_newest_first() {
        let store = SqliteSessionStore::in_memory().unwrap();
        for (id, at) in [("a", 1), ("c", 3), ("b", 2), ("d", 3)] {
            store.create_session(&session(id, at)).await.unwrap();
        }
        // Creating one again keeps the original, as the memory store does.
        store
            .create_session(&SessionInfo {
                name: "renamed".to_string(),
                ..session("a", 1)
            })
            .await
            .unwrap();
        let ids: Vec<String> = store
            .list_sessions()
            .await
            .unwrap()
            .into_iter()
            .map(|s| s.id)
            .collect();
        assert_eq!(ids, ["d", "c", "b", "a"]);
        assert_eq!(store.session("a").await.unwrap(), Some(session("a", 1)));
    }

    #[tokio::test]
    async fn a_new_store_on_the_same_file_reads_everything_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/dir/sessions.db");
        let mut expected = Vec::new();
        {
            let store = SqliteSessionStore::open(&path).unwrap();
            for (id, at) in [("a", 1), ("b", 2)] {
                store.create_session(&session(id, at)).await.unwrap();
                let turns = vec![
                    turn(id, 0, 4, TurnStatus::Completed),
                    turn(id, 1, 1, TurnStatus::AwaitingInput),
                ];
                for t in &turns {
                    store.save_turn(t).await.unwrap();
                }
                expected.push((session(id, at), turns));
            }
        }
        let store = SqliteSessionStore::open(&path).unwrap();
        let listed = store.list_sessions().await.unwrap();
        assert_eq!(listed, vec![session("b", 2), session("a", 1)]);
        for (info, turns) in expected {
            assert_eq!(store.session(&info.id).await.unwrap(), Some(info.clone()));
            assert_eq!(store.turns(&info.id).await.unwrap(), turns);
        }
    }

    #[tokio::test]
    async fn the_file_is_in_wal_mode_with_foreign_keys_on() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteSessionStore::open(&dir.path().join("s.db")).unwrap();
        let conn = store.conn.lock().unwrap();
        let mode: String = conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let fk: i64 = conn
            .pragma_query_value(None, "foreign_keys", |r| r.get(0))
            .unwrap();
        assert_eq!(fk, 1);
        let sync: i64 = conn
            .pragma_query_value(None, "synchronous", |r| r.get(0))
            .unwrap();
        assert_eq!(sync, 1, "NORMAL");
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
    }

    #[tokio::test]
    async fn the_wal_is_copied_into_the_database_in_the_background() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let store = SqliteSessionStore::open(&path).unwrap();
        store.create_session(&session("s", 1)).await.unwrap();
        for seq in 0..CHECKPOINT_EVERY * 2 {
            store
                .save_turn(&turn("s", seq, 4, TurnStatus::Completed))
                .await
                .unwrap();
        }
        // Commits write to the WAL only; below AUTOCHECKPOINT_PAGES only the background thread
        // copies pages into the database file.
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::fs::metadata(&path).unwrap().len() < 64 * 1024 {
            assert!(Instant::now() < deadline, "no checkpoint after 10 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn a_file_that_is_not_sqlite_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notes.db");
        let text = "These are my notes, not a database.\n".repeat(200);
        std::fs::write(&path, &text).unwrap();
        let err = SqliteSessionStore::open(&path).unwrap_err();
        let SessionError::Storage {
            path: named,
            message,
        } = &err
        else {
            panic!("expected a storage error, got {err:?}");
        };
        assert_eq!(named, &path.display().to_string());
        assert!(message.contains("not a SQLite database"), "{message}");
        assert!(err.to_string().contains("notes.db"), "{err}");
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            text,
            "left as it was"
        );
    }

    #[tokio::test]
    async fn a_sqlite_file_of_something_else_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("other.db");
        Connection::open(&path)
            .unwrap()
            .execute_batch("CREATE TABLE sessions (x INTEGER);")
            .unwrap();
        let err = SqliteSessionStore::open(&path).unwrap_err();
        assert!(
            err.to_string().contains("not a Corral session store"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_file_from_a_newer_version_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sessions.db");
        drop(SqliteSessionStore::open(&path).unwrap());
        Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        let err = SqliteSessionStore::open(&path).unwrap_err();
        let message = err.to_string();
        assert!(message.contains("newer version of Corral"), "{message}");
        assert!(message.contains("sessions.db"), "{message}");
    }

    #[tokio::test]
    async fn a_json_column_that_does_not_parse_is_an_error_naming_the_turn() {
        let store = SqliteSessionStore::in_memory().unwrap();
        store.create_session(&session("s", 1)).await.unwrap();
        let t = turn("s", 0, 2, TurnStatus::Completed);
        store.save_turn(&t).await.unwrap();

        store
            .conn
            .lock()
            .unwrap()
            .execute("UPDATE turns SET messages = '[{\"role\": \"robot\"}]'", [])
            .unwrap();
        let err = store.turns("s").await.unwrap_err();
        let message = err.to_string();
        assert!(matches!(err, SessionError::Storage { .. }), "{err:?}");
        assert!(
            message.contains(&t.id) && message.contains("messages"),
            "{message}"
        );

        store.save_turn(&t).await.unwrap();
        store
            .conn
            .lock()
            .unwrap()
            .execute("UPDATE steps SET details = '{not json' WHERE seq = 1", [])
            .unwrap();
        let message = store.turns("s").await.unwrap_err().to_string();
        assert!(
            message.contains(&t.id) && message.contains(&t.steps[1].id),
            "{message}"
        );
    }

    #[tokio::test]
    async fn a_panicking_operation_leaves_the_store_usable() {
        let store = SqliteSessionStore::in_memory().unwrap();
        store.create_session(&session("s", 1)).await.unwrap();
        let result: Result<(), SessionError> = store
            .run(|conn, _| {
                let tx = conn.transaction().unwrap();
                tx.execute("DELETE FROM sessions", []).unwrap();
                panic!("a bug mid-transaction");
            })
            .await;
        assert!(matches!(result, Err(SessionError::Storage { .. })));
        // The half-done transaction rolled back; the poisoned lock is recovered.
        assert_eq!(store.session("s").await.unwrap(), Some(session("s", 1)));
        store
            .save_turn(&turn("s", 0, 1, TurnStatus::Completed))
            .await
            .unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_stores_on_one_file_write_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shared.db");
        let first = Arc::new(SqliteSessionStore::open(&path).unwrap());
        let second = Arc::new(SqliteSessionStore::open(&path).unwrap());
        first.create_session(&session("a", 1)).await.unwrap();
        second.create_session(&session("b", 2)).await.unwrap();

        let write = |store: Arc<SqliteSessionStore>, id: &'static str| {
            tokio::spawn(async move {
                for seq in 0..40 {
                    store
                        .save_turn(&turn(id, seq, 3, TurnStatus::Completed))
                        .await?;
                    tokio::task::yield_now().await;
                }
                Ok::<_, SessionError>(())
            })
        };
        let (a, b) = tokio::join!(
            write(Arc::clone(&first), "a"),
            write(Arc::clone(&second), "b")
        );
        a.unwrap().unwrap();
        b.unwrap().unwrap();

        let reader = SqliteSessionStore::open(&path).unwrap();
        for id in ["a", "b"] {
            let turns = reader.turns(id).await.unwrap();
            assert_eq!(turns.len(), 40);
            assert_eq!(turns[39], turn(id, 39, 3, TurnStatus::Completed));
        }
    }

    /// Set in the child process of [`a_killed_writer_leaves_whole_turns`]: the file to write to.
    const CRASH_CHILD: &str = "CORRAL_SQLITE_CRASH_CHILD";
    const CRASH_SESSION: &str = "crash";

    /// The turn the crash child saves at `seq`: first paused with `1 + seq % 4` steps, then
    /// completed with two more.
    fn crash_turn(seq: u32, status: TurnStatus) -> Turn {
        let steps = 1 + seq as usize % 4;
        let steps = if status == TurnStatus::Completed {
            steps + 2
        } else {
            steps
        };
        let mut t = turn(CRASH_SESSION, seq, steps, status);
        // Bigger turns make transactions longer, so the kill lands inside one more often.
        t.answer
            .push_str(&"lorem ipsum dolor sit amet ".repeat(200));
        t
    }

    async fn crash_child(path: PathBuf) -> Result<(), SessionError> {
        let store = SqliteSessionStore::open(&path)?;
        store.create_session(&session(CRASH_SESSION, 1)).await?;
        // Turns are saved in order, so only the last can be paused (killed before its second
        // save); it is saved again from the start.
        let done = store
            .turns(CRASH_SESSION)
            .await?
            .iter()
            .filter(|t| t.status == TurnStatus::Completed)
            .count();
        let mut seq = u32::try_from(done).unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        // Bounded so an orphaned child stops by itself.
        while Instant::now() < deadline {
            store
                .save_turn(&crash_turn(seq, TurnStatus::AwaitingInput))
                .await?;
            println!("saved {seq} paused");
            store
                .save_turn(&crash_turn(seq, TurnStatus::Completed))
                .await?;
            println!("saved {seq} completed");
            seq += 1;
        }
        Ok(())
    }

    /// Kills the child if the test fails before it does.
    struct KillOnDrop(Child);

    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    #[tokio::test]
    async fn a_killed_writer_leaves_whole_turns() {
        if let Some(path) = std::env::var_os(CRASH_CHILD) {
            crash_child(PathBuf::from(path)).await.unwrap();
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("crash.db");
        // The test's name as libtest knows it: its module path without the crate's name.
        let module = module_path!()
            .split_once("::")
            .map_or(module_path!(), |(_, rest)| rest);
        let name = format!("{module}::a_killed_writer_leaves_whole_turns");

        let mut last_seen = None;
        for round in 0..8 {
            let child = Command::new(std::env::current_exe().unwrap())
                .args(["--exact", &name, "--nocapture", "--test-threads=1"])
                .env(CRASH_CHILD, &path)
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .unwrap();
            let mut child = KillOnDrop(child);
            let stdout = child.0.stdout.take().unwrap();
            let wanted = 30 + round * 7;
            let mut saves = 0;
            // Kept open until the child is dead: a closed pipe would stop it (a failed print
            // panics) before the kill.
            let mut lines = BufReader::new(stdout).lines();
            for line in lines.by_ref() {
                let line = line.unwrap();
                if let Some(rest) = line.strip_prefix("saved ") {
                    let (seq, state) = rest.split_once(' ').unwrap();
                    last_seen = Some((seq.parse::<u32>().unwrap(), state.to_string()));
                    saves += 1;
                    if saves == wanted {
                        break;
                    }
                }
            }
            assert_eq!(saves, wanted, "the child stopped early");
            std::thread::sleep(Duration::from_micros(fastrand::u64(0..3_000)));
            child.0.kill().unwrap();
            let status = child.0.wait().unwrap();
            drop(lines);
            #[cfg(unix)]
            {
                use std::os::unix::process::ExitStatusExt;
                assert_eq!(
                    status.signal(),
                    Some(9),
                    "the child ran until killed: {status}"
                );
            }
            assert!(!status.success(), "the child ran until killed: {status}");

            let store = SqliteSessionStore::open(&path).unwrap();
            let turns = store.turns(CRASH_SESSION).await.unwrap();
            let (seen_seq, seen_state) = last_seen.clone().unwrap();
            assert!(
                turns.len() > seen_seq as usize,
                "a reported save is missing"
            );
            for (i, t) in turns.iter().enumerate() {
                assert_eq!(t.seq as usize, i, "seqs have no gap");
                assert!(
                    matches!(t.status, TurnStatus::AwaitingInput | TurnStatus::Completed),
                    "{:?}",
                    t.status
                );
                let expected = crash_turn(t.seq, t.status);
                assert_eq!(
                    t.steps.len(),
                    expected.steps.len(),
                    "turn {} ({:?}) has all its steps",
                    t.seq,
                    t.status
                );
                assert!(t == &expected, "turn {} is as saved", t.seq);
                if t.seq < seen_seq || (t.seq == seen_seq && seen_state == "completed") {
                    assert_eq!(t.status, TurnStatus::Completed);
                }
            }
            let steps = turns.iter().map(|t| t.steps.len() as i64).sum::<i64>();
            assert_eq!(
                count(&store, "SELECT count(*) FROM steps"),
                steps,
                "no stray steps"
            );
        }
    }
}
