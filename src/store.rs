//! The durable store on redb: every table definition, the schema version, sessions, posts,
//! users and the action log that makes retried actions idempotent.

use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::engine::event::Media;
use crate::engine::session::Session;

/// The schema this build writes. Bump it with a migration when a table changes shape.
pub const SCHEMA_VERSION: u64 = 1;

const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const SESSIONS: TableDefinition<i64, &[u8]> = TableDefinition::new("sessions");
const POSTS: TableDefinition<u64, &[u8]> = TableDefinition::new("posts");
const USERS: TableDefinition<i64, &[u8]> = TableDefinition::new("users");
/// (chat id, request id) → the JSON result of an action already carried out.
const ACTION_LOG: TableDefinition<(i64, u64), &[u8]> = TableDefinition::new("action_log");
/// Per chat, the newest Telegram update id handled and when (Unix seconds): a redelivered update
/// is not handled twice.
const SEEN_UPDATES: TableDefinition<i64, (u64, i64)> = TableDefinition::new("seen_updates");
/// The append-only event log, in order of recording: sequence number → JSON record.
const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
/// Telegram redelivers within hours; after a week without updates it may restart its update ids
/// at a random (possibly lower) number. An id not newer than the last one counts as seen only
/// within this horizon.
const REDELIVERY_HORIZON_SECS: i64 = 24 * 3600;

/// Names of every table, for backups and tests.
pub const TABLES: [&str; 7] = ["meta", "sessions", "posts", "users", "action_log", "seen_updates", "events"];

/// Store failures, worded for the operator.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "the store {0} is already open in another postflow process; stop it first (only one process may use a store file)"
    )]
    Locked(PathBuf),
    #[error(
        "the store {path} has schema version {found}, newer than this postflow supports ({supported}); upgrade postflow or restore a backup"
    )]
    NewerSchema { path: PathBuf, found: u64, supported: u64 },
    #[error("cannot create the folder for the store {path}: {source}")]
    Folder { path: PathBuf, source: std::io::Error },
    #[error("store error: {0}")]
    Redb(String),
    #[error("a record in the store is damaged: {0}")]
    Corrupt(String),
}

macro_rules! redb_errors {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(err: $t) -> Self {
                StoreError::Redb(err.to_string())
            }
        }
    )*};
}
redb_errors!(redb::TransactionError, redb::TableError, redb::StorageError, redb::CommitError, redb::DatabaseError);

/// Where a post is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PostStatus {
    Draft,
    Scheduled,
    Publishing,
    Published,
    Failed,
}

/// A post: a draft until it is scheduled or published.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Post {
    pub id: u64,
    pub status: PostStatus,
    #[serde(default)]
    pub format: Option<String>,
    /// Telegram HTML.
    pub text: String,
    #[serde(default)]
    pub media: Option<Media>,
    #[serde(default)]
    pub keywords: Option<String>,
    #[serde(default)]
    pub details: Option<String>,
    /// The time the admin asked for, as `YYYY-MM-DDTHH:MM` in the scheduler's time zone.
    #[serde(default)]
    pub desired_time: Option<String>,
    pub created_by: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

/// An authorised user the bot has seen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct User {
    pub id: i64,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    pub last_active: i64,
}

/// The store. Cloning shares the same open database.
#[derive(Clone)]
pub struct Store {
    db: std::sync::Arc<Database>,
    path: PathBuf,
}

impl Store {
    /// Opens (or creates) the store, checking the lock and the schema version.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|source| StoreError::Folder { path: path.to_path_buf(), source })?;
        }
        let db = Database::create(path).map_err(|err| match err {
            redb::DatabaseError::DatabaseAlreadyOpen => StoreError::Locked(path.to_path_buf()),
            other => StoreError::Redb(format!("cannot open {}: {other}", path.display())),
        })?;
        let store = Store { db: std::sync::Arc::new(db), path: path.to_path_buf() };
        store.check_schema()?;
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn check_schema(&self) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        {
            let mut meta = txn.open_table(META)?;
            let found = meta.get("schema_version")?.map(|v| v.value());
            match found {
                Some(found) if found > SCHEMA_VERSION => {
                    return Err(StoreError::NewerSchema { path: self.path.clone(), found, supported: SCHEMA_VERSION });
                }
                Some(_) => {}
                None => {
                    meta.insert("schema_version", SCHEMA_VERSION)?;
                }
            }
            // Create every table so that readers never meet a missing one.
            txn.open_table(SESSIONS)?;
            txn.open_table(POSTS)?;
            txn.open_table(USERS)?;
            txn.open_table(SEEN_UPDATES)?;
            txn.open_table(ACTION_LOG)?;
            txn.open_table(EVENTS)?;
        }
        txn.commit()?;
        Ok(())
    }

    /// The schema version recorded in the file.
    pub fn schema_version(&self) -> Result<u64, StoreError> {
        let txn = self.db.begin_read()?;
        let meta = txn.open_table(META)?;
        Ok(meta.get("schema_version")?.map(|v| v.value()).unwrap_or(0))
    }

    /// Writes the schema version (used by tests that simulate a store from the future).
    pub fn set_schema_version(&self, version: u64) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        txn.open_table(META)?.insert("schema_version", version)?;
        txn.commit()?;
        Ok(())
    }

    pub fn load_session(&self, chat_id: i64) -> Result<Option<Session>, StoreError> {
        let txn = self.db.begin_read()?;
        read_session(&txn.open_table(SESSIONS)?, chat_id)
    }

    /// Saves a session durably (the call returns after the commit).
    pub fn save_session(&self, session: &Session) -> Result<(), StoreError> {
        let turn = self.begin_turn()?;
        turn.save_session(session)?;
        turn.commit()
    }

    /// Inserts a post with the next id, or replaces it when `post.id` is already set.
    pub fn save_post(&self, post: Post) -> Result<Post, StoreError> {
        let turn = self.begin_turn()?;
        let post = turn.save_post(post)?;
        turn.commit()?;
        Ok(post)
    }

    pub fn post(&self, id: u64) -> Result<Option<Post>, StoreError> {
        let txn = self.db.begin_read()?;
        read_post(&txn.open_table(POSTS)?, id)
    }

    /// Every post, newest first.
    pub fn posts(&self) -> Result<Vec<Post>, StoreError> {
        let txn = self.db.begin_read()?;
        read_posts(&txn.open_table(POSTS)?)
    }

    /// Writes raw bytes as a chat's session (tests of damaged records).
    #[cfg(test)]
    pub(crate) fn write_raw_session(&self, chat_id: i64, bytes: &[u8]) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        txn.open_table(SESSIONS)?.insert(chat_id, bytes)?;
        txn.commit()?;
        Ok(())
    }

    /// Records that an authorised user was active.
    pub fn touch_user(&self, user: &User) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(user).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let txn = self.db.begin_write()?;
        txn.open_table(USERS)?.insert(user.id, bytes.as_slice())?;
        txn.commit()?;
        Ok(())
    }

    pub fn users(&self) -> Result<Vec<User>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(USERS)?;
        let mut users = Vec::new();
        for entry in table.iter()? {
            let (_, bytes) = entry?;
            users.push(serde_json::from_slice(bytes.value()).map_err(|e| StoreError::Corrupt(e.to_string()))?);
        }
        Ok(users)
    }

    /// Every recorded event, oldest first.
    pub fn events(&self) -> Result<Vec<serde_json::Value>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(EVENTS)?;
        let mut events = Vec::new();
        for entry in table.iter()? {
            let (seq, bytes) = entry?;
            events.push(decode(bytes.value(), || format!("event {}", seq.value()))?);
        }
        Ok(events)
    }

    /// Every session, for start-up work such as resuming actions that were under way.
    pub fn sessions(&self) -> Result<Vec<Session>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(SESSIONS)?;
        let mut sessions = Vec::new();
        for entry in table.iter()? {
            let (chat_id, bytes) = entry?;
            // A record that no longer decodes is left for the chat's next event to replace.
            if let Ok(session) = decode::<Session>(bytes.value(), || format!("session of chat {}", chat_id.value())) {
                sessions.push(session);
            }
        }
        Ok(sessions)
    }

    /// The recorded result of an action request, if it already ran.
    pub fn action_result(&self, chat_id: i64, request_id: u64) -> Result<Option<serde_json::Value>, StoreError> {
        let txn = self.db.begin_read()?;
        read_action(&txn.open_table(ACTION_LOG)?, chat_id, request_id)
    }
}

/// One event's writes: everything an event changes (session, posts, action log) commits in one
/// durable transaction, or not at all.
pub struct Turn {
    txn: redb::WriteTransaction,
}

impl Store {
    /// Starts a turn. Turns are serialised: one writer at a time.
    pub fn begin_turn(&self) -> Result<Turn, StoreError> {
        Ok(Turn { txn: self.db.begin_write()? })
    }
}

impl Turn {
    pub fn load_session(&self, chat_id: i64) -> Result<Option<Session>, StoreError> {
        read_session(&self.txn.open_table(SESSIONS)?, chat_id)
    }

    pub fn save_session(&self, session: &Session) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(session).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.txn.open_table(SESSIONS)?.insert(session.chat_id, bytes.as_slice())?;
        Ok(())
    }

    pub fn post(&self, id: u64) -> Result<Option<Post>, StoreError> {
        read_post(&self.txn.open_table(POSTS)?, id)
    }

    /// Every post, newest first.
    pub fn posts(&self) -> Result<Vec<Post>, StoreError> {
        read_posts(&self.txn.open_table(POSTS)?)
    }

    /// Inserts a post with the next id, or replaces it when `post.id` is already set.
    pub fn save_post(&self, mut post: Post) -> Result<Post, StoreError> {
        let mut table = self.txn.open_table(POSTS)?;
        if post.id == 0 {
            post.id = table.last()?.map(|(k, _)| k.value() + 1).unwrap_or(1);
        }
        let bytes = serde_json::to_vec(&post).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        table.insert(post.id, bytes.as_slice())?;
        Ok(post)
    }

    pub fn delete_post(&self, id: u64) -> Result<bool, StoreError> {
        Ok(self.txn.open_table(POSTS)?.remove(id)?.is_some())
    }

    pub fn action_result(&self, chat_id: i64, request_id: u64) -> Result<Option<serde_json::Value>, StoreError> {
        read_action(&self.txn.open_table(ACTION_LOG)?, chat_id, request_id)
    }

    /// The highest action request id recorded for a chat.
    pub fn last_request(&self, chat_id: i64) -> Result<Option<u64>, StoreError> {
        let table = self.txn.open_table(ACTION_LOG)?;
        let last = table.range((chat_id, 0)..=(chat_id, u64::MAX))?.next_back().transpose()?;
        Ok(last.map(|(key, _)| key.value().1))
    }

    pub fn record_action(&self, chat_id: i64, request_id: u64, result: &serde_json::Value) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(result).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.txn.open_table(ACTION_LOG)?.insert((chat_id, request_id), bytes.as_slice())?;
        Ok(())
    }

    /// Appends an event (`kind` plus the fields of `record`) to the event log.
    pub fn record_event(&self, kind: &str, at: i64, record: &serde_json::Value) -> Result<(), StoreError> {
        let mut event = serde_json::json!({ "kind": kind, "at": at });
        if let (Some(event), Some(fields)) = (event.as_object_mut(), record.as_object()) {
            event.extend(fields.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        let bytes = serde_json::to_vec(&event).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let mut table = self.txn.open_table(EVENTS)?;
        let next = table.last()?.map_or(0, |(seq, _)| seq.value() + 1);
        table.insert(next, bytes.as_slice())?;
        Ok(())
    }

    /// Records that an authorised user was active (in this turn's transaction).
    pub fn touch_user(&self, user: &User) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(user).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.txn.open_table(USERS)?.insert(user.id, bytes.as_slice())?;
        Ok(())
    }

    /// Marks a Telegram update as handled for a chat at `now`; `false` if it (or a newer one)
    /// already was, within the last day.
    pub fn first_sight_of_update(&self, chat_id: i64, update_id: u64, now: i64) -> Result<bool, StoreError> {
        let mut table = self.txn.open_table(SEEN_UPDATES)?;
        let seen = table.get(chat_id)?.map(|entry| entry.value());
        if let Some((last_id, at)) = seen
            && update_id <= last_id
            && now - at < REDELIVERY_HORIZON_SECS
        {
            return Ok(false);
        }
        table.insert(chat_id, (update_id, now))?;
        Ok(true)
    }

    /// Makes the turn durable.
    pub fn commit(self) -> Result<(), StoreError> {
        self.txn.commit()?;
        Ok(())
    }
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8], what: impl FnOnce() -> String) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(format!("{}: {e}", what())))
}

fn read_session(table: &impl ReadableTable<i64, &'static [u8]>, chat_id: i64) -> Result<Option<Session>, StoreError> {
    let Some(bytes) = table.get(chat_id)? else { return Ok(None) };
    decode(bytes.value(), || format!("session of chat {chat_id}")).map(Some)
}

fn read_post(table: &impl ReadableTable<u64, &'static [u8]>, id: u64) -> Result<Option<Post>, StoreError> {
    let Some(bytes) = table.get(id)? else { return Ok(None) };
    decode(bytes.value(), || format!("post {id}")).map(Some)
}

fn read_posts(table: &impl ReadableTable<u64, &'static [u8]>) -> Result<Vec<Post>, StoreError> {
    let mut posts = Vec::new();
    for entry in table.iter()? {
        let (id, bytes) = entry?;
        posts.push(decode(bytes.value(), || format!("post {}", id.value()))?);
    }
    posts.reverse();
    Ok(posts)
}

fn read_action(
    table: &impl ReadableTable<(i64, u64), &'static [u8]>,
    chat_id: i64,
    request_id: u64,
) -> Result<Option<serde_json::Value>, StoreError> {
    let Some(bytes) = table.get((chat_id, request_id))? else { return Ok(None) };
    decode(bytes.value(), || format!("action {request_id} of chat {chat_id}")).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn post() -> Post {
        Post {
            id: 0,
            status: PostStatus::Draft,
            format: Some("selling".into()),
            text: "<b>Héllo</b>".into(),
            media: None,
            keywords: None,
            details: None,
            desired_time: None,
            created_by: 1,
            created_at: 10,
            updated_at: 10,
        }
    }

    #[test]
    fn sessions_and_posts_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/store.redb");
        {
            let store = Store::open(&path).unwrap();
            let mut session = Session::new(7, 7);
            session.nonce = 42;
            store.save_session(&session).unwrap();
            assert_eq!(store.save_post(post()).unwrap().id, 1);
            assert_eq!(store.save_post(post()).unwrap().id, 2);
        }
        let store = Store::open(&path).unwrap();
        assert_eq!(store.load_session(7).unwrap().map(|s| s.nonce), Some(42));
        assert_eq!(store.posts().unwrap().iter().map(|p| p.id).collect::<Vec<_>>(), vec![2, 1]);
        assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    }

    #[test]
    fn a_second_open_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.redb");
        let _first = Store::open(&path).unwrap();
        let err = Store::open(&path).err().unwrap();
        assert!(matches!(err, StoreError::Locked(_)), "{err}");
        assert!(err.to_string().contains("already open in another postflow process"));
    }

    #[test]
    fn a_store_from_the_future_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.redb");
        Store::open(&path).unwrap().set_schema_version(SCHEMA_VERSION + 1).unwrap();
        let err = Store::open(&path).err().unwrap();
        assert!(matches!(err, StoreError::NewerSchema { found, .. } if found == SCHEMA_VERSION + 1), "{err}");
    }

    #[test]
    fn a_turn_commits_everything_or_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb")).unwrap();
        {
            let turn = store.begin_turn().unwrap();
            turn.save_post(post()).unwrap();
            turn.record_action(5, 3, &serde_json::json!({ "id": 1 })).unwrap();
            turn.save_session(&Session::new(5, 5)).unwrap();
            // Dropped without commit: as if the process died here.
        }
        assert!(store.posts().unwrap().is_empty());
        assert_eq!(store.action_result(5, 3).unwrap(), None);
        assert_eq!(store.load_session(5).unwrap(), None);
        let turn = store.begin_turn().unwrap();
        let saved = turn.save_post(post()).unwrap();
        turn.record_action(5, 3, &serde_json::json!({ "id": saved.id })).unwrap();
        turn.commit().unwrap();
        assert_eq!(store.action_result(5, 3).unwrap().unwrap()["id"], saved.id);
        assert_eq!(store.posts().unwrap().len(), 1);
    }
}
