//! Sessions: the conversations an agent keeps, turn by turn, in a [`SessionStore`] — in memory
//! for tests and one-off runs, or in SQLite ([`crate::SqliteSessionStore`]) so a restarted process
//! resumes where it stopped.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use corral_core::Message;
use serde::{Deserialize, Serialize};

use crate::turn::{Millis, Turn, TurnStatus, new_id, now_millis};

/// A conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    pub id: String,
    /// A name the caller chose (e.g. the agent's), for listings.
    pub name: String,
    pub created_at: Millis,
}

impl SessionInfo {
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            id: new_id("sess"),
            name: name.into(),
            created_at: now_millis(),
        }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum SessionError {
    #[error("no session `{0}`")]
    UnknownSession(String),
    #[error("no turn `{turn}` in session `{session}`")]
    UnknownTurn { session: String, turn: String },
    /// The store could not be read or written; nothing already stored was changed.
    #[error("session store {path}: {message}")]
    Storage { path: String, message: String },
}

/// Where sessions and their turns are kept. Saving a turn is atomic: after a crash a store holds
/// every turn as it was last saved, never half of one.
#[async_trait]
pub trait SessionStore: Send + Sync {
    async fn create_session(&self, session: &SessionInfo) -> Result<(), SessionError>;

    async fn session(&self, id: &str) -> Result<Option<SessionInfo>, SessionError>;

    /// Every session, newest first.
    async fn list_sessions(&self) -> Result<Vec<SessionInfo>, SessionError>;

    /// Removes a session and its turns; `false` when there was none.
    async fn delete_session(&self, id: &str) -> Result<bool, SessionError>;

    /// The session's turns in order (`seq`). An unknown session is an error.
    async fn turns(&self, session_id: &str) -> Result<Vec<Turn>, SessionError>;

    /// What a new turn needs from the session: its position and the conversation so far. The
    /// default reads every turn with [`Self::turns`]; a store that can read less (no steps, no
    /// unfinished turns' messages) should, since every turn asks for it.
    async fn conversation(&self, session_id: &str) -> Result<Conversation, SessionError> {
        Ok(Conversation::of(&self.turns(session_id).await?))
    }

    /// Inserts the turn, or replaces the one with its id (a paused turn saved again when it
    /// resumes), with all its steps, in one transaction. Its session must exist.
    async fn save_turn(&self, turn: &Turn) -> Result<(), SessionError>;
}

/// The conversation so far, as messages: each turn's input and the messages it added.
/// Turns that did not complete (paused, failed, or cut by a crash) add nothing.
pub fn history(turns: &[Turn]) -> Vec<Message> {
    turns
        .iter()
        .filter(|turn| turn.status == TurnStatus::Completed)
        .flat_map(|turn| turn.input.iter().chain(turn.messages.iter()).cloned())
        .collect()
}

/// A session as a new turn sees it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Conversation {
    /// The `seq` the next turn takes: one past the last turn, whatever its status.
    pub next_seq: u32,
    /// [`history`] kept turn by turn (completed turns only), so the oldest whole turns can be
    /// dropped when the context is full.
    pub turns: Vec<Vec<Message>>,
}

impl Conversation {
    /// The conversation of these turns (in `seq` order).
    pub fn of(turns: &[Turn]) -> Self {
        Self {
            next_seq: turns.last().map_or(0, |t| t.seq + 1),
            turns: history_groups(turns),
        }
    }
}

/// [`history`] kept turn by turn.
pub(crate) fn history_groups(turns: &[Turn]) -> Vec<Vec<Message>> {
    turns
        .iter()
        .filter(|turn| turn.status == TurnStatus::Completed)
        .map(|turn| {
            turn.input
                .iter()
                .chain(turn.messages.iter())
                .cloned()
                .collect()
        })
        .collect()
}

/// Sessions in memory, gone when the process ends.
#[derive(Debug, Default)]
pub struct MemorySessionStore {
    inner: Mutex<BTreeMap<String, (SessionInfo, Vec<Turn>)>>,
}

impl MemorySessionStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, (SessionInfo, Vec<Turn>)>> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[async_trait]
impl SessionStore for MemorySessionStore {
    async fn create_session(&self, session: &SessionInfo) -> Result<(), SessionError> {
        self.lock()
            .entry(session.id.clone())
            .or_insert_with(|| (session.clone(), Vec::new()));
        Ok(())
    }

    async fn session(&self, id: &str) -> Result<Option<SessionInfo>, SessionError> {
        Ok(self.lock().get(id).map(|(info, _)| info.clone()))
    }

    async fn list_sessions(&self) -> Result<Vec<SessionInfo>, SessionError> {
        let mut all: Vec<SessionInfo> = self.lock().values().map(|(i, _)| i.clone()).collect();
        all.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
        Ok(all)
    }

    async fn delete_session(&self, id: &str) -> Result<bool, SessionError> {
        Ok(self.lock().remove(id).is_some())
    }

    async fn turns(&self, session_id: &str) -> Result<Vec<Turn>, SessionError> {
        self.lock()
            .get(session_id)
            .map(|(_, turns)| turns.clone())
            .ok_or_else(|| SessionError::UnknownSession(session_id.to_string()))
    }

    async fn save_turn(&self, turn: &Turn) -> Result<(), SessionError> {
        let mut sessions = self.lock();
        let (_, turns) = sessions
            .get_mut(&turn.session_id)
            .ok_or_else(|| SessionError::UnknownSession(turn.session_id.clone()))?;
        match turns.iter_mut().find(|t| t.id == turn.id) {
            Some(existing) => *existing = turn.clone(),
            None => {
                turns.push(turn.clone());
                turns.sort_by_key(|t| t.seq);
            }
        }
        Ok(())
    }
}
