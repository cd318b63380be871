//! The durable store on redb: every table definition, the schema version, sessions, posts,
//! users and the action log that makes retried actions idempotent.

use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::engine::event::Media;
use crate::engine::post_view::{LinkButton, PostContent, PostOptions};
use crate::engine::session::Session;

pub mod backup;
mod event_segments;
mod measures;

pub use event_segments::{DEFAULT_SEGMENT_ROWS, EventColumns};
use event_segments::{EVENT_SEGMENT_ENDS, EVENT_SEGMENTS};
use measures::{CLICKS, REACTIONS, SUBSCRIBERS};
pub use measures::{Click, LoggedEvent, ReactionCount};

/// A media file id naming a report file in [`Store::exports_dir`] (sent by upload).
pub const EXPORT_PREFIX: &str = "export:";

/// The schema this build writes. Bump it with a migration when a table changes shape.
/// 2: post indexes (due, by status, by creator) and the fuller post record.
/// 3: channel messages → posts (for reaction counts), secrets, clicks, reactions, subscribers.
/// 4: the event log also as columnar segments.
pub const SCHEMA_VERSION: u64 = 4;

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
/// Scheduled posts by when they fall due: (publish_at, post id).
const POSTS_DUE: TableDefinition<(i64, u64), ()> = TableDefinition::new("posts_due");
/// Posts by status: (status code, post id).
const POSTS_BY_STATUS: TableDefinition<(u8, u64), ()> = TableDefinition::new("posts_by_status");
/// Posts by the admin who created them: (user id, post id).
const POSTS_BY_CREATOR: TableDefinition<(i64, u64), ()> = TableDefinition::new("posts_by_creator");
/// Channel message id → the post it belongs to (every message of a post).
const POSTS_BY_MESSAGE: TableDefinition<i64, u64> = TableDefinition::new("posts_by_message");
/// Keys the store keeps for itself, such as the one that signs click links.
const SECRETS: TableDefinition<&str, &[u8]> = TableDefinition::new("secrets");
/// What the bot learned at run time and reports use later, such as the channel's link.
const NOTES: TableDefinition<&str, &str> = TableDefinition::new("notes");
/// Recurring jobs: job id → its next fire time (Unix seconds), so a restart neither repeats a
/// fire nor forgets one.
const JOBS: TableDefinition<&str, i64> = TableDefinition::new("jobs");
/// Changes to published posts waiting for the publisher: post id → JSON [`ChannelOp`].
const CHANNEL_OPS: TableDefinition<u64, &[u8]> = TableDefinition::new("channel_ops");
/// Telegram redelivers within hours; after a week without updates it may restart its update ids
/// at a random (possibly lower) number. An id not newer than the last one counts as seen only
/// within this horizon.
const REDELIVERY_HORIZON_SECS: i64 = 24 * 3600;

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

/// Where a post is in its life: draft → scheduled → publishing → published | failed, or
/// cancelled (a scheduled post called off) or deleted (removed from the channel).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PostStatus {
    Draft,
    Scheduled,
    Publishing,
    Published,
    Failed,
    Cancelled,
    Deleted,
}

impl PostStatus {
    pub const ALL: [PostStatus; 7] = [
        PostStatus::Draft,
        PostStatus::Scheduled,
        PostStatus::Publishing,
        PostStatus::Published,
        PostStatus::Failed,
        PostStatus::Cancelled,
        PostStatus::Deleted,
    ];

    /// The lowercase name flows, the CLI and exports use.
    pub fn name(self) -> &'static str {
        match self {
            PostStatus::Draft => "draft",
            PostStatus::Scheduled => "scheduled",
            PostStatus::Publishing => "publishing",
            PostStatus::Published => "published",
            PostStatus::Failed => "failed",
            PostStatus::Cancelled => "cancelled",
            PostStatus::Deleted => "deleted",
        }
    }

    pub fn from_name(name: &str) -> Option<PostStatus> {
        PostStatus::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Whether the post never reached the channel and waits for nothing: it may still be
    /// edited, scheduled or published now.
    pub fn not_yet_out(self) -> bool {
        matches!(self, PostStatus::Draft | PostStatus::Scheduled | PostStatus::Failed | PostStatus::Cancelled)
    }

    /// The key in the status index: fixed numbers, never reordered.
    fn code(self) -> u8 {
        match self {
            PostStatus::Draft => 0,
            PostStatus::Scheduled => 1,
            PostStatus::Publishing => 2,
            PostStatus::Published => 3,
            PostStatus::Failed => 4,
            PostStatus::Cancelled => 5,
            PostStatus::Deleted => 6,
        }
    }
}

/// One earlier version of a post's text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Revision {
    pub at: i64,
    pub by: i64,
    /// The text as it was before this change.
    pub text: String,
}

/// The most earlier versions kept per post.
pub const MAX_REVISIONS: usize = 20;

/// A post. Fields missing in a record written by an older postflow take their defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Post {
    pub id: u64,
    pub status: PostStatus,
    /// A short name for lists (the first line of the text unless the admin named it).
    #[serde(default)]
    pub title: String,
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
    #[serde(default)]
    pub language: Option<String>,
    #[serde(default)]
    pub buttons: Vec<LinkButton>,
    #[serde(default)]
    pub options: PostOptions,
    /// When it goes out (Unix seconds, UTC); shown in the scheduler's time zone.
    #[serde(default)]
    pub publish_at: Option<i64>,
    /// The time a draft's admin wished for, as `YYYY-MM-DDTHH:MM` (no commitment).
    #[serde(default)]
    pub desired_time: Option<String>,
    pub created_by: i64,
    pub created_at: i64,
    pub updated_at: i64,
    /// The channel messages the post became, in order (several for an album or a split text).
    #[serde(default)]
    pub message_ids: Vec<i64>,
    #[serde(default)]
    pub published_at: Option<i64>,
    #[serde(default)]
    pub last_error: Option<String>,
    /// Publishing attempts made.
    #[serde(default)]
    pub attempts: u32,
    /// How many of the post's channel messages went out in the current attempt (a retry goes
    /// on from there; `message_ids` holds their ids).
    #[serde(default)]
    pub parts_sent: u32,
    /// The publisher run that claimed it (while `publishing`): a post claimed by the running
    /// publisher is being sent right now and cannot be settled by hand.
    #[serde(default)]
    pub claimed_by_run: Option<u64>,
    /// The admin who scheduled it or asked to publish it now (told when it is out).
    #[serde(default)]
    pub queued_by: Option<i64>,
    /// The last quality score the AI gave (0–10).
    #[serde(default)]
    pub score: Option<f64>,
    /// Earlier versions of the text, oldest first.
    #[serde(default)]
    pub revisions: Vec<Revision>,
}

impl Post {
    /// An empty draft by `created_by` at `now`.
    pub fn draft(text: impl Into<String>, created_by: i64, now: i64) -> Post {
        Post {
            id: 0,
            status: PostStatus::Draft,
            title: String::new(),
            format: None,
            text: text.into(),
            media: None,
            keywords: None,
            details: None,
            language: None,
            buttons: Vec::new(),
            options: PostOptions::default(),
            publish_at: None,
            desired_time: None,
            created_by,
            created_at: now,
            updated_at: now,
            message_ids: Vec::new(),
            published_at: None,
            last_error: None,
            attempts: 0,
            parts_sent: 0,
            claimed_by_run: None,
            queued_by: None,
            score: None,
            revisions: Vec::new(),
        }
    }

    /// What the channel shows of this post.
    pub fn content(&self) -> PostContent {
        PostContent {
            text: self.text.clone(),
            media: self.media.clone(),
            buttons: self.buttons.clone(),
            options: self.options.clone(),
        }
    }

    /// Replaces the text, keeping the old one in the revision history.
    pub fn revise(&mut self, text: String, by: i64, now: i64) {
        if text == self.text {
            return;
        }
        let old = std::mem::replace(&mut self.text, text);
        self.revisions.push(Revision { at: now, by, text: old });
        if self.revisions.len() > MAX_REVISIONS {
            self.revisions.remove(0);
        }
    }

    /// The title for lists.
    pub fn display_title(&self) -> String {
        if self.title.trim().is_empty() { title_of(&self.text) } else { self.title.clone() }
    }
}

/// The first line of a post as plain text, shortened for a button label.
pub fn title_of(html: &str) -> String {
    let plain = crate::engine::html::to_plain_text(html, false);
    let line = plain.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("…");
    let mut title: String = line.chars().take(40).collect();
    if line.chars().count() > 40 {
        title.push('…');
    }
    title
}

/// A change to a post that is already in the channel, carried out by the publisher.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ChannelOp {
    /// Replace the text (or caption) of the post's messages.
    Edit { text: String, by: i64 },
    /// Delete the post's messages from the channel.
    Delete { by: i64 },
}

/// A page of posts and how many there are in all.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub posts: Vec<Post>,
    pub total: u64,
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
    /// Signalled after a commit that changed when a post falls due (the scheduler sleeps on it).
    schedule_changed: std::sync::Arc<tokio::sync::Notify>,
    /// Events per columnar segment of the event log.
    segment_rows: u64,
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
        backup_before_migrating(&db, path)?;
        let store = Store {
            db: std::sync::Arc::new(db),
            path: path.to_path_buf(),
            schedule_changed: std::sync::Arc::new(tokio::sync::Notify::new()),
            segment_rows: DEFAULT_SEGMENT_ROWS,
        };
        store.check_schema()?;
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Copies the store as it is now (one committed state, whatever is written meanwhile) into a
    /// new redb file at `target`.
    pub fn backup_to(&self, target: &Path) -> Result<backup::Summary, StoreError> {
        backup::snapshot(&self.db, &self.path, target)
    }

    /// Every table as one JSON document (see [`backup::load`]).
    pub fn dump(&self, now: i64) -> Result<(serde_json::Value, backup::Summary), StoreError> {
        backup::dump(&self.db, &self.path, now)
    }

    /// Where report files are written: `exports/` beside the store file.
    pub fn exports_dir(&self) -> PathBuf {
        self.path.parent().map(|p| p.join("exports")).unwrap_or_else(|| PathBuf::from("exports"))
    }

    /// Wakes the scheduler's loop to look at its queue and jobs again (after a reload).
    pub fn wake_scheduler(&self) {
        self.schedule_changed.notify_one();
    }

    /// Resolves after a commit that scheduled, rescheduled or unscheduled a post (or at once if
    /// one happened since the last wait): one waiter, the scheduler.
    pub async fn schedule_changed(&self) {
        self.schedule_changed.notified().await
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
                Some(SCHEMA_VERSION) => {}
                Some(older) => {
                    tracing::info!(from = older, to = SCHEMA_VERSION, "migrating the store");
                    meta.insert("schema_version", SCHEMA_VERSION)?;
                    drop(meta);
                    migrate(&txn, older)?;
                }
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
            txn.open_table(POSTS_DUE)?;
            txn.open_table(POSTS_BY_STATUS)?;
            txn.open_table(POSTS_BY_CREATOR)?;
            txn.open_table(JOBS)?;
            txn.open_table(CHANNEL_OPS)?;
            txn.open_table(CLICKS)?;
            txn.open_table(REACTIONS)?;
            txn.open_table(SUBSCRIBERS)?;
            txn.open_table(POSTS_BY_MESSAGE)?;
            txn.open_table(SECRETS)?;
            txn.open_table(NOTES)?;
            txn.open_table(EVENT_SEGMENTS)?;
            txn.open_table(EVENT_SEGMENT_ENDS)?;
        }
        event_segments::check_format(&txn, self.segment_rows)?;
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

    /// Posts with a status, newest first: `limit` of them after skipping `offset`.
    pub fn posts_with_status(&self, status: PostStatus, offset: u64, limit: u64) -> Result<Page, StoreError> {
        let txn = self.db.begin_read()?;
        page_by_status(&txn.open_table(POSTS_BY_STATUS)?, &txn.open_table(POSTS)?, status, offset, limit)
    }

    /// How many posts have each status.
    pub fn status_counts(&self) -> Result<Vec<(PostStatus, u64)>, StoreError> {
        let txn = self.db.begin_read()?;
        count_by_status(&txn.open_table(POSTS_BY_STATUS)?)
    }

    /// A creator's posts, newest first, at most `limit`.
    pub fn posts_by(&self, creator: i64, limit: usize) -> Result<Vec<Post>, StoreError> {
        let txn = self.db.begin_read()?;
        let index = txn.open_table(POSTS_BY_CREATOR)?;
        let posts = txn.open_table(POSTS)?;
        let mut found = Vec::new();
        for entry in index.range((creator, 0)..=(creator, u64::MAX))?.rev().take(limit) {
            let id = entry?.0.value().1;
            found.extend(read_post(&posts, id)?);
        }
        Ok(found)
    }

    /// The first scheduled post to fall due: (publish_at, id).
    pub fn next_due(&self) -> Result<Option<(i64, u64)>, StoreError> {
        let txn = self.db.begin_read()?;
        let index = txn.open_table(POSTS_DUE)?;
        let first = index.first()?;
        Ok(first.map(|(key, _)| key.value()))
    }

    /// How many posts wait in the scheduler's queue.
    pub fn due_count(&self) -> Result<u64, StoreError> {
        let txn = self.db.begin_read()?;
        Ok(txn.open_table(POSTS_DUE)?.len()?)
    }

    /// Scheduled posts due at or before `until`, earliest first, at most `limit`.
    pub fn due(&self, until: i64, limit: usize) -> Result<Vec<(i64, u64)>, StoreError> {
        let txn = self.db.begin_read()?;
        read_due(&txn.open_table(POSTS_DUE)?, until, limit)
    }

    /// Records the publisher run now live (`0`: none).
    pub fn set_live_run(&self, run: u64) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        txn.open_table(META)?.insert("live_run", run)?;
        txn.commit()?;
        Ok(())
    }

    /// Changes to published posts waiting to be carried out, oldest post first.
    pub fn channel_ops(&self) -> Result<Vec<(u64, ChannelOp)>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(CHANNEL_OPS)?;
        let mut ops = Vec::new();
        for entry in table.iter()? {
            let (id, bytes) = entry?;
            ops.push((id.value(), decode(bytes.value(), || format!("channel change of post {}", id.value()))?));
        }
        Ok(ops)
    }

    /// A recurring job's next fire time as last recorded.
    pub fn job_next(&self, id: &str) -> Result<Option<i64>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(JOBS)?;
        Ok(table.get(id)?.map(|at| at.value()))
    }

    /// Records a recurring job's next fire time.
    pub fn set_job_next(&self, id: &str, at: i64) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        txn.open_table(JOBS)?.insert(id, at)?;
        txn.commit()?;
        Ok(())
    }

    /// How many posts are scheduled.
    pub fn queue_length(&self) -> Result<u64, StoreError> {
        let txn = self.db.begin_read()?;
        Ok(txn.open_table(POSTS_DUE)?.len()?)
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
    /// The store the turn writes, for reads of committed data beside it (reports).
    store: Store,
    schedule_changed: std::sync::Arc<tokio::sync::Notify>,
    /// A post's due time changed in this turn: the scheduler is told after the commit.
    touched_schedule: std::cell::Cell<bool>,
}

impl Store {
    /// Starts a turn. Turns are serialised: one writer at a time.
    pub fn begin_turn(&self) -> Result<Turn, StoreError> {
        Ok(Turn {
            txn: self.db.begin_write()?,
            store: self.clone(),
            schedule_changed: self.schedule_changed.clone(),
            touched_schedule: std::cell::Cell::new(false),
        })
    }
}

impl Turn {
    /// The store this turn writes to; its reads see what was committed before the turn.
    pub fn store(&self) -> &Store {
        &self.store
    }

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

    /// Inserts a post with the next id, or replaces it when `post.id` is already set; the
    /// indexes follow.
    pub fn save_post(&self, mut post: Post) -> Result<Post, StoreError> {
        let mut table = self.txn.open_table(POSTS)?;
        if post.id == 0 {
            // Ids are never reused: an old notice or an open view naming a deleted post must
            // not reach a newer one.
            let mut meta = self.txn.open_table(META)?;
            let counted = meta.get("next_post_id")?.map(|v| v.value()).unwrap_or(1);
            let after_last = table.last()?.map(|(k, _)| k.value() + 1).unwrap_or(1);
            post.id = counted.max(after_last);
            meta.insert("next_post_id", post.id + 1)?;
        }
        let old = read_post(&table, post.id)?;
        let bytes = serde_json::to_vec(&post).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        table.insert(post.id, bytes.as_slice())?;
        drop(table);
        if let Some(old) = &old {
            self.unindex(old)?;
        }
        self.index(&post)?;
        if old.as_ref().and_then(due_key) != due_key(&post) {
            self.touched_schedule.set(true);
        }
        Ok(post)
    }

    /// Removes a post record and its index entries.
    pub fn delete_post(&self, id: u64) -> Result<bool, StoreError> {
        let Some(old) = self.post(id)? else { return Ok(false) };
        self.txn.open_table(POSTS)?.remove(id)?;
        self.unindex(&old)?;
        if due_key(&old).is_some() {
            self.touched_schedule.set(true);
        }
        Ok(true)
    }

    fn index(&self, post: &Post) -> Result<(), StoreError> {
        self.txn.open_table(POSTS_BY_STATUS)?.insert((post.status.code(), post.id), ())?;
        self.txn.open_table(POSTS_BY_CREATOR)?.insert((post.created_by, post.id), ())?;
        if let Some(key) = due_key(post) {
            self.txn.open_table(POSTS_DUE)?.insert(key, ())?;
        }
        let mut by_message = self.txn.open_table(POSTS_BY_MESSAGE)?;
        for message in &post.message_ids {
            by_message.insert(*message, post.id)?;
        }
        Ok(())
    }

    fn unindex(&self, post: &Post) -> Result<(), StoreError> {
        self.txn.open_table(POSTS_BY_STATUS)?.remove((post.status.code(), post.id))?;
        self.txn.open_table(POSTS_BY_CREATOR)?.remove((post.created_by, post.id))?;
        if let Some(key) = due_key(post) {
            self.txn.open_table(POSTS_DUE)?.remove(key)?;
        }
        let mut by_message = self.txn.open_table(POSTS_BY_MESSAGE)?;
        for message in &post.message_ids {
            by_message.remove(*message)?;
        }
        Ok(())
    }

    /// Posts with a status, newest first: `limit` of them after skipping `offset`.
    pub fn posts_with_status(&self, status: PostStatus, offset: u64, limit: u64) -> Result<Page, StoreError> {
        page_by_status(&self.txn.open_table(POSTS_BY_STATUS)?, &self.txn.open_table(POSTS)?, status, offset, limit)
    }

    /// The publisher run now live, if any.
    pub fn live_run(&self) -> Result<Option<u64>, StoreError> {
        let meta = self.txn.open_table(META)?;
        Ok(meta.get("live_run")?.map(|v| v.value()).filter(|run| *run != 0))
    }

    /// Queues a change to a published post (replacing one already queued) and wakes the
    /// publisher after the commit.
    pub fn queue_channel_op(&self, id: u64, op: &ChannelOp) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(op).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.txn.open_table(CHANNEL_OPS)?.insert(id, bytes.as_slice())?;
        self.touched_schedule.set(true);
        Ok(())
    }

    /// The change queued for a post, if any.
    pub fn channel_op(&self, id: u64) -> Result<Option<ChannelOp>, StoreError> {
        let table = self.txn.open_table(CHANNEL_OPS)?;
        let Some(bytes) = table.get(id)? else { return Ok(None) };
        decode(bytes.value(), || format!("channel change of post {id}")).map(Some)
    }

    /// Drops the change queued for a post (done, or given up).
    pub fn clear_channel_op(&self, id: u64) -> Result<(), StoreError> {
        self.txn.open_table(CHANNEL_OPS)?.remove(id)?;
        Ok(())
    }

    /// Scheduled posts due at or before `until`, earliest first, at most `limit`.
    pub fn due(&self, until: i64, limit: usize) -> Result<Vec<(i64, u64)>, StoreError> {
        read_due(&self.txn.open_table(POSTS_DUE)?, until, limit)
    }

    /// How many posts have each status.
    pub fn status_counts(&self) -> Result<Vec<(PostStatus, u64)>, StoreError> {
        count_by_status(&self.txn.open_table(POSTS_BY_STATUS)?)
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
    /// The well-known fields (`user`, `post`, `format`, ...) are read back typed by
    /// [`LoggedEvent`].
    pub fn record_event(&self, kind: &str, at: i64, record: &serde_json::Value) -> Result<(), StoreError> {
        append_event(&self.txn, kind, at, record, self.store.segment_rows)
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

    /// Makes the turn durable (and wakes the scheduler if a due time changed).
    pub fn commit(self) -> Result<(), StoreError> {
        self.txn.commit()?;
        if self.touched_schedule.get() {
            self.schedule_changed.notify_one();
        }
        Ok(())
    }
}

/// A post's place in the due index: scheduled posts with a time only.
fn due_key(post: &Post) -> Option<(i64, u64)> {
    match (post.status, post.publish_at) {
        (PostStatus::Scheduled, Some(at)) => Some((at, post.id)),
        _ => None,
    }
}

fn read_due(
    index: &impl ReadableTable<(i64, u64), ()>,
    until: i64,
    limit: usize,
) -> Result<Vec<(i64, u64)>, StoreError> {
    let mut due = Vec::new();
    for entry in index.range((i64::MIN, 0)..=(until, u64::MAX))?.take(limit) {
        due.push(entry?.0.value());
    }
    Ok(due)
}

fn count_by_status(index: &impl ReadableTable<(u8, u64), ()>) -> Result<Vec<(PostStatus, u64)>, StoreError> {
    let mut counts = Vec::new();
    for status in PostStatus::ALL {
        let code = status.code();
        counts.push((status, index.range((code, 0)..=(code, u64::MAX))?.count() as u64));
    }
    Ok(counts)
}

fn page_by_status(
    index: &impl ReadableTable<(u8, u64), ()>,
    posts: &impl ReadableTable<u64, &'static [u8]>,
    status: PostStatus,
    offset: u64,
    limit: u64,
) -> Result<Page, StoreError> {
    let code = status.code();
    let range = index.range((code, 0)..=(code, u64::MAX))?;
    let mut found = Vec::new();
    let mut total = 0;
    for entry in range.rev() {
        let id = entry?.0.value().1;
        if total >= offset && total < offset.saturating_add(limit) {
            found.extend(read_post(posts, id)?);
        }
        total += 1;
    }
    Ok(Page { posts: found, total })
}

/// Brings a store written by an older postflow up to [`SCHEMA_VERSION`] inside `txn`.
/// Before a store of an older schema is migrated, it is copied beside itself as
/// `<file>.schema<N>-backup-<unix seconds>`; no copy, no migration.
fn backup_before_migrating(db: &Database, path: &Path) -> Result<(), StoreError> {
    let found = {
        let txn = db.begin_read()?;
        match txn.open_table(META) {
            Ok(meta) => meta.get("schema_version")?.map(|v| v.value()),
            Err(redb::TableError::TableDoesNotExist(_)) => None,
            Err(other) => return Err(other.into()),
        }
    };
    let Some(older) = found.filter(|found| *found < SCHEMA_VERSION) else { return Ok(()) };
    let mut prefix = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    prefix.push_str(&format!(".schema{older}-backup-"));
    // A migration that failed is tried again at each start: the first copy is the one to keep.
    let folder = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let taken = std::fs::read_dir(folder).ok().and_then(|entries| {
        entries.flatten().map(|e| e.path()).find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(&prefix) && !n.to_string_lossy().ends_with(".partial"))
        })
    });
    if let Some(copy) = taken {
        tracing::warn!(from = older, to = SCHEMA_VERSION, backup = %copy.display(), "migrating the store; the copy taken before is kept");
        return Ok(());
    }
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let copy = path.with_file_name(format!("{prefix}{now}"));
    let summary = backup::snapshot(db, path, &copy).map_err(|error| {
        StoreError::Redb(format!(
            "the store has schema {older} and needs migrating to {SCHEMA_VERSION}, but the copy taken first failed, so nothing was changed: {error}"
        ))
    })?;
    tracing::warn!(
        from = older,
        to = SCHEMA_VERSION,
        backup = %copy.display(),
        "migrating the store; the store as it was is kept: {}",
        summary.describe()
    );
    Ok(())
}

fn migrate(txn: &redb::WriteTransaction, from: u64) -> Result<(), StoreError> {
    if from < 2 {
        // Version 2 added the post indexes; older post records decode with defaults.
        let posts = read_posts(&txn.open_table(POSTS)?)?;
        let mut by_status = txn.open_table(POSTS_BY_STATUS)?;
        let mut by_creator = txn.open_table(POSTS_BY_CREATOR)?;
        let mut due = txn.open_table(POSTS_DUE)?;
        for post in &posts {
            by_status.insert((post.status.code(), post.id), ())?;
            by_creator.insert((post.created_by, post.id), ())?;
            if let Some(key) = due_key(post) {
                due.insert(key, ())?;
            }
        }
    }
    if from < 3 {
        // Version 3 indexes posts by their channel messages (the new tables are created empty).
        let posts = read_posts(&txn.open_table(POSTS)?)?;
        let mut by_message = txn.open_table(POSTS_BY_MESSAGE)?;
        for post in &posts {
            for message in &post.message_ids {
                by_message.insert(*message, post.id)?;
            }
        }
    }
    // Version 4 keeps the event log also as columnar segments: the existing log is sealed by
    // `event_segments::check_format`, which runs on every opening.
    Ok(())
}

/// The sequence number the next event takes when the log is empty, kept when pruning empties it.
const NEXT_EVENT_KEY: &str = "next_event_seq";

/// Appends `kind`, `at` and the fields of `record` to the event log inside `txn`, sealing a
/// columnar segment when the events since the last one fill it.
fn append_event(
    txn: &redb::WriteTransaction,
    kind: &str,
    at: i64,
    record: &serde_json::Value,
    segment_rows: u64,
) -> Result<(), StoreError> {
    let mut event = serde_json::json!({ "kind": kind, "at": at });
    if let (Some(event), Some(fields)) = (event.as_object_mut(), record.as_object()) {
        event.extend(fields.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    let bytes = serde_json::to_vec(&event).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    {
        let mut table = txn.open_table(EVENTS)?;
        let next = match table.last()? {
            Some((seq, _)) => seq.value() + 1,
            // An emptied log goes on after the last number it had (archives are named by them).
            None => txn.open_table(META)?.get(NEXT_EVENT_KEY)?.map_or(0, |next| next.value()),
        };
        table.insert(next, bytes.as_slice())?;
        // Runs are sealed as the log passes a multiple of the segment size (one after pruning
        // may wait for the next multiple); other appends skip the look at the segments.
        if (next + 1) % segment_rows.max(1) != 0 {
            return Ok(());
        }
    }
    event_segments::seal_full_segments(txn, segment_rows)
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
        let mut post = Post::draft("<b>Héllo</b>", 1, 10);
        post.format = Some("selling".into());
        post
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
    fn the_indexes_follow_every_change_of_status_time_and_creator() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb")).unwrap();
        let mut ids = Vec::new();
        for (i, at) in [300, 100, 200].into_iter().enumerate() {
            let mut p = post();
            p.created_by = if i == 0 { 7 } else { 8 };
            p.status = PostStatus::Scheduled;
            p.publish_at = Some(at);
            ids.push(store.save_post(p).unwrap().id);
        }
        assert_eq!(store.next_due().unwrap(), Some((100, ids[1])));
        assert_eq!(store.due(200, 10).unwrap(), vec![(100, ids[1]), (200, ids[2])]);
        // Published: out of the due index, into another status.
        let mut first = store.post(ids[1]).unwrap().unwrap();
        first.status = PostStatus::Published;
        store.save_post(first).unwrap();
        assert_eq!(store.next_due().unwrap(), Some((200, ids[2])));
        // Rescheduled: the old time is gone from the index.
        let mut later = store.post(ids[2]).unwrap().unwrap();
        later.publish_at = Some(400);
        store.save_post(later).unwrap();
        assert_eq!(store.due(1000, 10).unwrap(), vec![(300, ids[0]), (400, ids[2])]);
        assert_eq!(store.queue_length().unwrap(), 2);
        let scheduled = store.posts_with_status(PostStatus::Scheduled, 0, 10).unwrap();
        assert_eq!(
            (scheduled.total, scheduled.posts.iter().map(|p| p.id).collect::<Vec<_>>()),
            (2, vec![ids[2], ids[0]])
        );
        let page = store.posts_with_status(PostStatus::Scheduled, 1, 10).unwrap();
        assert_eq!(page.posts.iter().map(|p| p.id).collect::<Vec<_>>(), vec![ids[0]]);
        assert_eq!(store.posts_by(8, 10).unwrap().len(), 2);
        let turn = store.begin_turn().unwrap();
        turn.delete_post(ids[0]).unwrap();
        turn.commit().unwrap();
        assert_eq!(store.due(1000, 10).unwrap(), vec![(400, ids[2])]);
        assert_eq!(store.posts_by(7, 10).unwrap(), Vec::new());
        let counts = store.status_counts().unwrap();
        assert!(counts.contains(&(PostStatus::Scheduled, 1)) && counts.contains(&(PostStatus::Published, 1)));
    }

    #[test]
    fn a_version_1_store_is_migrated_with_its_posts_indexed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.redb");
        {
            // A store as postflow 0.1 wrote it: schema 1, posts without the new fields, no indexes.
            let db = Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            txn.open_table(META).unwrap().insert("schema_version", 1).unwrap();
            let old = serde_json::json!({
                "id": 1, "status": "draft", "format": "selling", "text": "Old", "media": null,
                "keywords": "k", "details": null, "desired_time": "2026-12-01T10:00",
                "created_by": 5, "created_at": 1, "updated_at": 2
            });
            let bytes = serde_json::to_vec(&old).unwrap();
            txn.open_table(POSTS).unwrap().insert(1, bytes.as_slice()).unwrap();
            txn.commit().unwrap();
        }
        let store = Store::open(&path).unwrap();
        assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
        let drafts = store.posts_with_status(PostStatus::Draft, 0, 10).unwrap();
        assert_eq!(drafts.total, 1);
        assert_eq!(drafts.posts[0].desired_time.as_deref(), Some("2026-12-01T10:00"));
        assert_eq!(drafts.posts[0].display_title(), "Old");
        assert_eq!(store.posts_by(5, 10).unwrap().len(), 1);
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
