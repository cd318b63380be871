//! What analytics reads from the store: the event log as typed records, CTA clicks, the latest
//! reaction counts per post and the channel's subscriber counts.

use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use serde::Deserialize;

use super::{EVENTS, META, NEXT_EVENT_KEY, NOTES, POSTS_BY_MESSAGE, SECRETS, Store, StoreError, Turn, event_segments};

/// CTA clicks, in order of arrival: sequence number → [`Click`] (17 bytes).
pub(super) const CLICKS: TableDefinition<u64, &[u8]> = TableDefinition::new("clicks");
/// The latest count of each reaction on each channel message: (message id, reaction) →
/// (count, at, post id). A post of several messages (an album and its buttons, a split text)
/// sums its messages.
pub(super) const REACTIONS: TableDefinition<(i64, &str), (u32, i64, u64)> = TableDefinition::new("reaction_counts");
/// The channel's member count: when it was read (Unix seconds) → members.
pub(super) const SUBSCRIBERS: TableDefinition<i64, u64> = TableDefinition::new("subscribers");

/// One entry of the event log with its well-known fields typed. The record's other fields
/// (kind-specific ones) are kept as JSON in `data`. Sealed segments hold what this decoded:
/// a change to its fields or their meaning must bump `event_segments::SEGMENT_FORMAT`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct LoggedEvent {
    #[serde(skip)]
    pub seq: u64,
    /// Unix seconds.
    pub at: i64,
    pub kind: String,
    /// The admin behind it (`user_id` in records of older versions).
    #[serde(default, alias = "user_id")]
    pub user: Option<i64>,
    #[serde(default)]
    pub post: Option<u64>,
    #[serde(default)]
    pub format: Option<String>,
    /// The AI task of an `ai_call` (generate, improve, translate, analyse...).
    #[serde(default)]
    pub action: Option<String>,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub prompt_tokens: Option<u64>,
    #[serde(default)]
    pub completion_tokens: Option<u64>,
    #[serde(default)]
    pub latency_ms: Option<u64>,
    /// `ok` or why an AI call failed; the reason of a failure.
    #[serde(default, alias = "reason")]
    pub outcome: Option<String>,
    /// The record's other fields as a JSON object, or `None` when it has none.
    #[serde(skip)]
    pub data: Option<String>,
    #[serde(flatten)]
    rest: serde_json::Map<String, serde_json::Value>,
}

impl LoggedEvent {
    /// Reads a stored record. Never fails: a record whose well-known fields do not fit (an older
    /// or odd writer) still counts, with its time and kind if it has usable ones; the rest of it
    /// (all of it, if it is not a JSON object) goes to `data`.
    pub fn decode(seq: u64, bytes: &[u8]) -> LoggedEvent {
        use serde_json::Value;
        let mut event: LoggedEvent = match serde_json::from_slice(bytes) {
            Ok(event) => event,
            Err(_) => match serde_json::from_slice::<serde_json::Map<String, Value>>(bytes) {
                Ok(mut rest) => {
                    let at = rest.get("at").and_then(Value::as_i64);
                    if at.is_some() {
                        rest.shift_remove("at");
                    }
                    let kind = rest.get("kind").and_then(Value::as_str).map(str::to_string);
                    if kind.is_some() {
                        rest.shift_remove("kind");
                    }
                    let kind = kind.unwrap_or_else(|| "unknown".to_string());
                    LoggedEvent { at: at.unwrap_or_default(), kind, rest, ..LoggedEvent::default() }
                }
                Err(_) => LoggedEvent {
                    kind: "unknown".to_string(),
                    data: Some(String::from_utf8_lossy(bytes).into_owned()),
                    ..LoggedEvent::default()
                },
            },
        };
        event.seq = seq;
        if !event.rest.is_empty() {
            let rest = std::mem::take(&mut event.rest);
            event.data = Some(serde_json::Value::Object(rest).to_string());
        }
        event
    }
}

/// A tap on a CTA button of a channel post: when, which post, which button, and who only when
/// the reader came through a deep link into the bot (they then gave Telegram's id themselves).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Click {
    pub at: i64,
    pub post: u64,
    /// The button's index under the post, from 0.
    pub button: u8,
    /// The reader's Telegram id, for a click through a deep link into the bot (a click through
    /// the web redirect knows nobody).
    pub user: Option<i64>,
}

impl Click {
    /// Time, post and button; then the reader's Telegram id when it is known (deep links).
    fn encode(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(25);
        bytes.extend_from_slice(&self.at.to_le_bytes());
        bytes.extend_from_slice(&self.post.to_le_bytes());
        bytes.push(self.button);
        if let Some(user) = self.user {
            bytes.extend_from_slice(&user.to_le_bytes());
        }
        bytes
    }

    fn decode(bytes: &[u8]) -> Option<Click> {
        let at = i64::from_le_bytes(bytes.get(..8)?.try_into().ok()?);
        let post = u64::from_le_bytes(bytes.get(8..16)?.try_into().ok()?);
        let user = match bytes.len() {
            17 => None,
            25 => Some(i64::from_le_bytes(bytes.get(17..25)?.try_into().ok()?)),
            _ => return None,
        };
        Some(Click { at, post, button: *bytes.get(16)?, user })
    }
}

/// Adds a click after the last one.
fn append_click(table: &mut redb::Table<u64, &[u8]>, click: Click) -> Result<(), StoreError> {
    let next = table.last()?.map_or(0, |(seq, _)| seq.value() + 1);
    table.insert(next, click.encode().as_slice())?;
    Ok(())
}

/// The latest count of one reaction on one post.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReactionCount {
    pub post: u64,
    /// An emoji, or `custom:<id>` for a custom emoji, or `paid`.
    pub reaction: String,
    pub count: u32,
    /// When Telegram reported it (Unix seconds).
    pub at: i64,
}

impl Store {
    /// The post a channel message belongs to.
    pub fn post_of_message(&self, message_id: i64) -> Result<Option<u64>, StoreError> {
        let txn = self.db.begin_read()?;
        Ok(txn.open_table(POSTS_BY_MESSAGE)?.get(message_id)?.map(|v| v.value()))
    }

    /// Remembers the channel's link prefix (`https://t.me/name`), for links in reports.
    pub fn set_channel_link(&self, link: &str) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        txn.open_table(NOTES)?.insert("channel_link", link)?;
        txn.commit()?;
        Ok(())
    }

    /// The channel's link prefix, once a run has seen the channel.
    pub fn channel_link(&self) -> Result<Option<String>, StoreError> {
        let txn = self.db.begin_read()?;
        Ok(txn.open_table(NOTES)?.get("channel_link")?.map(|v| v.value().to_string()))
    }

    /// Whether click links were ever made (their key exists): old posts' buttons then need the
    /// redirect even if `PUBLIC_BASE_URL` was unset since.
    pub fn has_click_secret(&self) -> Result<bool, StoreError> {
        let txn = self.db.begin_read()?;
        Ok(txn.open_table(SECRETS)?.get("click_links")?.is_some())
    }

    /// The key that signs click links: made at random the first time, then kept (so links in
    /// old posts keep working after a restart, a backup or a move).
    pub fn click_secret(&self) -> Result<Vec<u8>, StoreError> {
        let txn = self.db.begin_write()?;
        let secret = {
            let mut table = txn.open_table(SECRETS)?;
            let existing = table.get("click_links")?.map(|v| v.value().to_vec());
            match existing {
                Some(secret) => secret,
                None => {
                    let secret: [u8; 32] = rand::random();
                    table.insert("click_links", secret.as_slice())?;
                    secret.to_vec()
                }
            }
        };
        txn.commit()?;
        Ok(secret)
    }

    /// Calls `each` for every event of the log, oldest first.
    pub fn for_each_event(&self, mut each: impl FnMut(LoggedEvent)) -> Result<(), StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(EVENTS)?;
        for entry in table.iter()? {
            let (seq, bytes) = entry?;
            each(LoggedEvent::decode(seq.value(), bytes.value()));
        }
        Ok(())
    }

    /// Number of events in the log.
    pub fn event_count(&self) -> Result<u64, StoreError> {
        use redb::ReadableTableMetadata;
        let txn = self.db.begin_read()?;
        Ok(txn.open_table(EVENTS)?.len()?)
    }

    /// Records a click in its own transaction.
    pub fn record_click(&self, click: Click) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        {
            append_click(&mut txn.open_table(CLICKS)?, click)?;
        }
        txn.commit()?;
        Ok(())
    }

    /// Records a reader's click unless the same reader's click on the same button is among the
    /// clicks of the last `window_secs` (an update delivered again after a restart); whether it
    /// was recorded.
    pub fn record_click_once(&self, click: Click, window_secs: i64) -> Result<bool, StoreError> {
        let txn = self.db.begin_write()?;
        let recorded = {
            let mut table = txn.open_table(CLICKS)?;
            let mut seen = false;
            for entry in table.iter()?.rev() {
                let (_, bytes) = entry?;
                let Some(earlier) = Click::decode(bytes.value()) else { continue };
                if earlier.at < click.at - window_secs {
                    break;
                }
                if (earlier.post, earlier.button, earlier.user) == (click.post, click.button, click.user) {
                    seen = true;
                    break;
                }
            }
            if !seen {
                append_click(&mut table, click)?;
            }
            !seen
        };
        txn.commit()?;
        Ok(recorded)
    }

    /// Every click, oldest first.
    pub fn clicks(&self) -> Result<Vec<Click>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(CLICKS)?;
        let mut clicks = Vec::new();
        for entry in table.iter()? {
            let (seq, bytes) = entry?;
            let click = Click::decode(bytes.value()).ok_or_else(|| {
                StoreError::Corrupt(format!("click {} is {} bytes", seq.value(), bytes.value().len()))
            })?;
            clicks.push(click);
        }
        Ok(clicks)
    }

    /// Replaces the reaction counts of one channel message of `post` with Telegram's latest (a
    /// reaction no longer listed has gone to zero), and logs the snapshot.
    pub fn set_reactions(&self, post: u64, message: i64, counts: &[(String, u32)], at: i64) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        {
            let mut table = txn.open_table(REACTIONS)?;
            let old: Vec<String> = table
                .range((message, "")..)?
                .map_while(|entry| entry.ok().filter(|(key, _)| key.value().0 == message))
                .map(|(key, _)| key.value().1.to_string())
                .collect();
            for reaction in old {
                table.remove((message, reaction.as_str()))?;
            }
            for (reaction, count) in counts.iter().filter(|(_, count)| *count > 0) {
                table.insert((message, reaction.as_str()), (*count, at, post))?;
            }
        }
        let snapshot: serde_json::Map<String, serde_json::Value> =
            counts.iter().map(|(reaction, count)| (reaction.clone(), serde_json::Value::from(*count))).collect();
        let record = serde_json::json!({ "post": post, "message": message, "counts": snapshot });
        super::append_event(&txn, "reactions", at, &record, self.segment_rows)?;
        txn.commit()?;
        Ok(())
    }

    /// The latest count of every reaction on every post (its messages added up), by post and
    /// reaction.
    pub fn reactions(&self) -> Result<Vec<ReactionCount>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(REACTIONS)?;
        let mut by_post: std::collections::BTreeMap<(u64, String), (u32, i64)> = std::collections::BTreeMap::new();
        for entry in table.iter()? {
            let (key, value) = entry?;
            let ((_, reaction), (count, at, post)) = (key.value(), value.value());
            let total = by_post.entry((post, reaction.to_string())).or_insert((0, at));
            total.0 = total.0.saturating_add(count);
            total.1 = total.1.max(at);
        }
        Ok(by_post
            .into_iter()
            .map(|((post, reaction), (count, at))| ReactionCount { post, reaction, count, at })
            .collect())
    }

    /// Records the channel's member count at `at`.
    pub fn record_subscribers(&self, at: i64, members: u64) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        txn.open_table(SUBSCRIBERS)?.insert(at, members)?;
        super::append_event(&txn, "subscribers", at, &serde_json::json!({ "members": members }), self.segment_rows)?;
        txn.commit()?;
        Ok(())
    }

    /// Every member count read, oldest first: (Unix seconds, members).
    pub fn subscribers(&self) -> Result<Vec<(i64, u64)>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(SUBSCRIBERS)?;
        let mut out = Vec::new();
        for entry in table.iter()? {
            let (at, members) = entry?;
            out.push((at.value(), members.value()));
        }
        Ok(out)
    }
}
impl Turn {
    /// Deletes events older than `before` (Unix seconds), calling `keep` with each first (to
    /// archive it); returns how many went. The log is in time order, so this stops at the first
    /// newer event.
    pub fn prune_events(&self, before: i64, mut keep: impl FnMut(&LoggedEvent)) -> Result<u64, StoreError> {
        let mut table = self.txn.open_table(EVENTS)?;
        let mut old = Vec::new();
        for entry in table.iter()? {
            let (seq, bytes) = entry?;
            let event = LoggedEvent::decode(seq.value(), bytes.value());
            if event.at >= before {
                break;
            }
            keep(&event);
            old.push(seq.value());
        }
        for seq in &old {
            table.remove(*seq)?;
        }
        if let Some(last) = old.last() {
            let emptied = redb::ReadableTableMetadata::is_empty(&table)?;
            drop(table);
            if emptied {
                self.txn.open_table(META)?.insert(NEXT_EVENT_KEY, last + 1)?;
            }
            event_segments::drop_segments_before(&self.txn, last + 1)?;
        }
        Ok(old.len() as u64)
    }

    /// Drops the reader's Telegram id from clicks older than `before` (Unix seconds); the
    /// clicks stay, as a web redirect's would be. Returns how many clicks were changed.
    pub fn forget_click_readers(&self, before: i64) -> Result<u64, StoreError> {
        let mut table = self.txn.open_table(CLICKS)?;
        let mut known = Vec::new();
        for entry in table.iter()? {
            let (seq, bytes) = entry?;
            if let Some(click) = Click::decode(bytes.value())
                && click.at < before
                && click.user.is_some()
            {
                known.push((seq.value(), Click { user: None, ..click }));
            }
        }
        for (seq, click) in &known {
            table.insert(*seq, click.encode().as_slice())?;
        }
        Ok(known.len() as u64)
    }

    /// Records a click inside this turn (used by tests and fixtures that write many at once).
    pub fn record_click(&self, click: Click) -> Result<(), StoreError> {
        append_click(&mut self.txn.open_table(CLICKS)?, click)
    }

    /// Records a member count inside this turn.
    pub fn record_subscribers(&self, at: i64, members: u64) -> Result<(), StoreError> {
        self.txn.open_table(SUBSCRIBERS)?.insert(at, members)?;
        Ok(())
    }

    /// Sets one reaction count of one channel message of `post` inside this turn.
    pub fn set_reaction(&self, post: u64, message: i64, reaction: &str, count: u32, at: i64) -> Result<(), StoreError> {
        self.txn.open_table(REACTIONS)?.insert((message, reaction), (count, at, post))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clicks_reactions_and_members_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb")).unwrap();
        store.record_click(Click { at: 10, post: 7, button: 1, user: None }).unwrap();
        store.record_click(Click { at: 11, post: 7, button: 0, user: Some(-42) }).unwrap();
        assert_eq!(store.clicks().unwrap()[0], Click { at: 10, post: 7, button: 1, user: None });
        assert_eq!(store.clicks().unwrap()[1], Click { at: 11, post: 7, button: 0, user: Some(-42) });
        // A reader's click seen within the window is not recorded again; after it, or on
        // another button, or by another reader, it is.
        let reader = Click { at: 20, post: 7, button: 0, user: Some(-42) };
        assert!(!store.record_click_once(reader, 30).unwrap());
        assert!(store.record_click_once(Click { user: Some(5), ..reader }, 30).unwrap());
        assert!(store.record_click_once(Click { button: 1, ..reader }, 30).unwrap());
        assert!(store.record_click_once(Click { at: 42, ..reader }, 30).unwrap());
        assert_eq!(store.clicks().unwrap().len(), 5);
        // Readers are forgotten from clicks older than a time; the clicks stay.
        let turn = store.begin_turn().unwrap();
        assert_eq!(turn.forget_click_readers(21).unwrap(), 3);
        turn.commit().unwrap();
        let users: Vec<Option<i64>> = store.clicks().unwrap().iter().map(|c| c.user).collect();
        assert_eq!(users, [None, None, None, None, Some(-42)]);

        store.set_reactions(7, 70, &[("x".into(), 3), ("y".into(), 1)], 20).unwrap();
        store.set_reactions(8, 80, &[("x".into(), 2)], 20).unwrap();
        store.set_reactions(7, 70, &[("x".into(), 4)], 30).unwrap();
        // The post's second message (the buttons under its album) adds up with the first.
        store.set_reactions(7, 71, &[("x".into(), 1)], 25).unwrap();
        let reactions = store.reactions().unwrap();
        assert_eq!(
            reactions,
            vec![
                ReactionCount { post: 7, reaction: "x".into(), count: 5, at: 30 },
                ReactionCount { post: 8, reaction: "x".into(), count: 2, at: 20 },
            ]
        );

        store.record_subscribers(100, 1500).unwrap();
        store.record_subscribers(200, 1502).unwrap();
        assert_eq!(store.subscribers().unwrap(), vec![(100, 1500), (200, 1502)]);
        let mut kinds = Vec::new();
        store.for_each_event(|e| kinds.push(e.kind)).unwrap();
        assert_eq!(kinds, ["reactions", "reactions", "reactions", "reactions", "subscribers", "subscribers"]);
    }

    #[test]
    fn events_decode_typed_fields_and_older_user_ids() {
        let event = LoggedEvent::decode(
            3,
            br#"{"kind":"ai_call","at":5,"user_id":9,"format":"sale","prompt_tokens":12,"x":1}"#,
        );
        assert_eq!((event.seq, event.user, event.prompt_tokens), (3, Some(9), Some(12)));
        assert_eq!(event.format.as_deref(), Some("sale"));
        assert_eq!(event.data.as_deref(), Some(r#"{"x":1}"#), "only the fields without a column");
        let plain = LoggedEvent::decode(5, br#"{"kind":"post_saved","at":5,"user":9,"post":2}"#);
        assert_eq!(plain.data, None);
        let odd = LoggedEvent::decode(4, br#"{"kind":"x","at":6,"user":1,"user_id":2,"post":"seven"}"#);
        assert_eq!((odd.kind.as_str(), odd.at, odd.post), ("x", 6, None));
        assert_eq!(odd.data.as_deref(), Some(r#"{"user":1,"user_id":2,"post":"seven"}"#), "an odd record keeps all");
        let bad_time = LoggedEvent::decode(6, br#"{"kind":7,"at":"noon","x":1}"#);
        assert_eq!((bad_time.kind.as_str(), bad_time.at), ("unknown", 0));
        assert_eq!(bad_time.data.as_deref(), Some(r#"{"kind":7,"at":"noon","x":1}"#), "unusable fields kept");
        let garbage = LoggedEvent::decode(7, b"\xff not json");
        assert_eq!((garbage.seq, garbage.kind.as_str()), (7, "unknown"));
        assert_eq!(garbage.data.as_deref(), Some("\u{fffd} not json"));
    }

    #[test]
    fn a_version_2_store_gets_its_posts_indexed_by_channel_message() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        {
            let store = Store::open(&path).unwrap();
            let mut post = crate::store::Post::draft("x", 1, 0);
            post.message_ids = vec![41, 42];
            let turn = store.begin_turn().unwrap();
            let id = turn.save_post(post).unwrap().id;
            turn.commit().unwrap();
            assert_eq!(store.post_of_message(42).unwrap(), Some(id));
            // As version 2 left it: no message index.
            let txn = store.db.begin_write().unwrap();
            txn.delete_table(POSTS_BY_MESSAGE).unwrap();
            txn.commit().unwrap();
            store.set_schema_version(2).unwrap();
        }
        let store = Store::open(&path).unwrap();
        assert_eq!(store.schema_version().unwrap(), crate::store::SCHEMA_VERSION);
        assert_eq!((store.post_of_message(41).unwrap(), store.post_of_message(43).unwrap()), (Some(1), None));
        let secret = store.click_secret().unwrap();
        assert_eq!(secret.len(), 32);
        assert_eq!(store.click_secret().unwrap(), secret, "kept");
    }

    #[test]
    fn pruning_stops_at_the_first_newer_event() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb")).unwrap();
        let turn = store.begin_turn().unwrap();
        for at in [1, 2, 3, 10, 11] {
            turn.record_event("x", at, &serde_json::json!({})).unwrap();
        }
        turn.commit().unwrap();
        let mut archived = Vec::new();
        let turn = store.begin_turn().unwrap();
        assert_eq!(turn.prune_events(10, |e| archived.push(e.at)).unwrap(), 3);
        turn.commit().unwrap();
        assert_eq!(archived, [1, 2, 3]);
        assert_eq!(store.event_count().unwrap(), 2);
        // Emptied, the log goes on with new numbers (archives are named by them).
        let turn = store.begin_turn().unwrap();
        assert_eq!(turn.prune_events(100, |_| {}).unwrap(), 2);
        turn.record_event("y", 200, &serde_json::json!({})).unwrap();
        turn.commit().unwrap();
        let mut seqs = Vec::new();
        store.for_each_event(|e| seqs.push(e.seq)).unwrap();
        assert_eq!(seqs, [5]);
    }
}
