//! Copies of the store: a consistent snapshot into a fresh redb file (backup, restore, the copy
//! before a migration) and the same data as one JSON document (dump) and back (load).
//!
//! redb has no backup API: every table is copied from one read transaction, which sees one
//! committed state however much is written meanwhile.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, TableHandle};
use serde_json::{Value as Json, json};

use super::event_segments::{EVENT_SEGMENT_ENDS, EVENT_SEGMENTS, FORMAT_KEY};
use super::measures::{CLICKS, REACTIONS, SUBSCRIBERS};
use super::{
    ACTION_LOG, CHANNEL_OPS, EVENTS, JOBS, META, NOTES, POSTS, POSTS_BY_CREATOR, POSTS_BY_MESSAGE, POSTS_BY_STATUS,
    POSTS_DUE, SCHEMA_VERSION, SECRETS, SEEN_UPDATES, SESSIONS, StoreError, USERS,
};

/// The `postflow_dump` number of the JSON documents this build writes and reads.
pub const DUMP_FORMAT: u64 = 1;

/// How a table's values appear in a dump.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    /// Numbers, text and tuples of them, as JSON.
    Plain,
    /// Bytes holding a JSON record: the record itself.
    Json,
    /// Opaque bytes (keys): base64.
    Binary,
    /// Rebuilt from other tables when the store opens: left out of dumps.
    Derived,
}

/// What a copy or a dump held.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Rows per table, in the order of [`visit_tables`].
    pub rows: Vec<(String, u64)>,
    pub schema: u64,
}

impl Summary {
    pub fn total_rows(&self) -> u64 {
        self.rows.iter().map(|(_, n)| n).sum()
    }

    fn rows_of(&self, table: &str) -> u64 {
        self.rows.iter().find(|(name, _)| *name == table).map_or(0, |(_, n)| *n)
    }

    /// One line for the operator: schema, posts, events and the rest.
    pub fn describe(&self) -> String {
        format!(
            "schema {}, {} posts, {} events, {} rows in {} tables",
            self.schema,
            self.rows_of("posts"),
            self.rows_of("events"),
            self.total_rows(),
            self.rows.len()
        )
    }
}

/// A key or value type of a table, as JSON in a dump.
trait Field: redb::Value + 'static {
    type Owned;
    fn to_json(value: Self::SelfType<'_>, encoding: Encoding) -> Json;
    fn from_json(value: &Json, encoding: Encoding) -> Option<Self::Owned>;
    fn view(owned: &Self::Owned) -> Self::SelfType<'_>;
}

macro_rules! number_field {
    ($($t:ty),*) => {$(
        impl Field for $t {
            type Owned = $t;
            fn to_json(value: $t, _: Encoding) -> Json {
                json!(value)
            }
            fn from_json(value: &Json, _: Encoding) -> Option<$t> {
                serde_json::from_value(value.clone()).ok()
            }
            fn view(owned: &$t) -> $t {
                *owned
            }
        }
    )*};
}
number_field!(u8, u32, u64, i64);

impl Field for () {
    type Owned = ();
    fn to_json(_: (), _: Encoding) -> Json {
        Json::Null
    }
    fn from_json(value: &Json, _: Encoding) -> Option<()> {
        value.is_null().then_some(())
    }
    fn view(_: &()) {}
}

impl Field for &'static str {
    type Owned = String;
    fn to_json(value: &str, _: Encoding) -> Json {
        json!(value)
    }
    fn from_json(value: &Json, _: Encoding) -> Option<String> {
        value.as_str().map(str::to_string)
    }
    fn view(owned: &String) -> &str {
        owned
    }
}

/// A JSON record that does not parse (a damaged one) is kept byte for byte under this key.
const RAW_BYTES: &str = "$bytes_base64";

impl Field for &'static [u8] {
    type Owned = Vec<u8>;
    fn to_json(value: &[u8], encoding: Encoding) -> Json {
        let base64 = || base64::engine::general_purpose::STANDARD.encode(value);
        match encoding {
            Encoding::Json => serde_json::from_slice(value).unwrap_or_else(|_| json!({ RAW_BYTES: base64() })),
            _ => json!(base64()),
        }
    }
    fn from_json(value: &Json, encoding: Encoding) -> Option<Vec<u8>> {
        let decode = |text: &str| base64::engine::general_purpose::STANDARD.decode(text).ok();
        match (encoding, value) {
            (Encoding::Json, Json::Object(raw)) if raw.len() == 1 && raw.contains_key(RAW_BYTES) => {
                decode(raw[RAW_BYTES].as_str()?)
            }
            (Encoding::Json, record) => serde_json::to_vec(record).ok(),
            (_, Json::String(text)) => decode(text),
            _ => None,
        }
    }
    fn view(owned: &Vec<u8>) -> &[u8] {
        owned
    }
}

impl<A: Field, B: Field> Field for (A, B) {
    type Owned = (A::Owned, B::Owned);
    fn to_json(value: Self::SelfType<'_>, encoding: Encoding) -> Json {
        json!([A::to_json(value.0, encoding), B::to_json(value.1, encoding)])
    }
    fn from_json(value: &Json, encoding: Encoding) -> Option<Self::Owned> {
        match value.as_array()?.as_slice() {
            [a, b] => Some((A::from_json(a, encoding)?, B::from_json(b, encoding)?)),
            _ => None,
        }
    }
    fn view(owned: &Self::Owned) -> Self::SelfType<'_> {
        (A::view(&owned.0), B::view(&owned.1))
    }
}

impl<A: Field, B: Field, C: Field> Field for (A, B, C) {
    type Owned = (A::Owned, B::Owned, C::Owned);
    fn to_json(value: Self::SelfType<'_>, encoding: Encoding) -> Json {
        json!([A::to_json(value.0, encoding), B::to_json(value.1, encoding), C::to_json(value.2, encoding)])
    }
    fn from_json(value: &Json, encoding: Encoding) -> Option<Self::Owned> {
        match value.as_array()?.as_slice() {
            [a, b, c] => Some((A::from_json(a, encoding)?, B::from_json(b, encoding)?, C::from_json(c, encoding)?)),
            _ => None,
        }
    }
    fn view(owned: &Self::Owned) -> Self::SelfType<'_> {
        (A::view(&owned.0), B::view(&owned.1), C::view(&owned.2))
    }
}

/// Something done to every table in turn.
trait TableVisitor {
    fn visit<K: Field + redb::Key, V: Field>(
        &mut self,
        table: TableDefinition<'static, K, V>,
        encoding: Encoding,
    ) -> Result<(), StoreError>;
}

/// Every table of the store, each with how its values are dumped.
fn visit_tables(visitor: &mut impl TableVisitor) -> Result<(), StoreError> {
    visitor.visit(META, Encoding::Plain)?;
    visitor.visit(SESSIONS, Encoding::Json)?;
    visitor.visit(POSTS, Encoding::Json)?;
    visitor.visit(USERS, Encoding::Json)?;
    visitor.visit(ACTION_LOG, Encoding::Json)?;
    visitor.visit(SEEN_UPDATES, Encoding::Plain)?;
    visitor.visit(EVENTS, Encoding::Json)?;
    visitor.visit(POSTS_DUE, Encoding::Plain)?;
    visitor.visit(POSTS_BY_STATUS, Encoding::Plain)?;
    visitor.visit(POSTS_BY_CREATOR, Encoding::Plain)?;
    visitor.visit(POSTS_BY_MESSAGE, Encoding::Plain)?;
    visitor.visit(JOBS, Encoding::Plain)?;
    visitor.visit(CHANNEL_OPS, Encoding::Json)?;
    visitor.visit(CLICKS, Encoding::Binary)?;
    visitor.visit(REACTIONS, Encoding::Plain)?;
    visitor.visit(SUBSCRIBERS, Encoding::Plain)?;
    visitor.visit(SECRETS, Encoding::Binary)?;
    visitor.visit(NOTES, Encoding::Plain)?;
    visitor.visit(EVENT_SEGMENTS, Encoding::Derived)?;
    visitor.visit(EVENT_SEGMENT_ENDS, Encoding::Derived)?;
    Ok(())
}

/// `table` in `read`, or `None` if the file has no such table (an older schema).
fn open_if_present<K: redb::Key + 'static, V: redb::Value + 'static>(
    read: &redb::ReadTransaction,
    table: TableDefinition<'static, K, V>,
) -> Result<Option<redb::ReadOnlyTable<K, V>>, StoreError> {
    match read.open_table(table) {
        Ok(source) => Ok(Some(source)),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
        Err(other) => Err(other.into()),
    }
}

/// The names of every table this build knows.
pub fn table_names() -> Vec<String> {
    struct Names(Vec<String>);
    impl TableVisitor for Names {
        fn visit<K: Field + redb::Key, V: Field>(
            &mut self,
            table: TableDefinition<'static, K, V>,
            _: Encoding,
        ) -> Result<(), StoreError> {
            self.0.push(table.name().to_string());
            Ok(())
        }
    }
    let mut names = Names(Vec::new());
    let _ = visit_tables(&mut names);
    names.0
}

/// The schema version in `txn` (a newer one is refused). Tables this build does not know (left
/// behind by an early build) are not copied; they are named in the log.
fn check_source(txn: &redb::ReadTransaction, path: &Path) -> Result<u64, StoreError> {
    let known = table_names();
    let unknown: Vec<String> =
        txn.list_tables()?.map(|t| t.name().to_string()).filter(|name| !known.contains(name)).collect();
    let schema = match txn.open_table(META) {
        Ok(meta) => meta.get("schema_version")?.map_or(0, |v| v.value()),
        Err(redb::TableError::TableDoesNotExist(_)) => 0,
        Err(other) => return Err(other.into()),
    };
    if schema > SCHEMA_VERSION {
        return Err(StoreError::NewerSchema { path: path.to_path_buf(), found: schema, supported: SCHEMA_VERSION });
    }
    if !unknown.is_empty() {
        tracing::warn!(store = %path.display(), tables = %unknown.join(", "), "tables postflow does not use are left out");
    }
    Ok(schema)
}

/// Copies every table of `source` (one read transaction: one committed state) into a new redb
/// file at `target`, written beside it first and renamed into place once complete. `target`
/// must not exist.
pub(super) fn snapshot(source: &Database, source_path: &Path, target: &Path) -> Result<Summary, StoreError> {
    if target.exists() {
        return Err(StoreError::Redb(format!("{} exists already; choose another file", target.display())));
    }
    let read = source.begin_read()?;
    let schema = check_source(&read, source_path)?;
    let partial = partial_path(target);
    let _ = std::fs::remove_file(&partial);
    let copied = (|| {
        let db = Database::create(&partial)
            .map_err(|e| StoreError::Redb(format!("cannot create {}: {e}", partial.display())))?;
        let write = db.begin_write()?;
        struct Copy<'a> {
            read: &'a redb::ReadTransaction,
            write: &'a redb::WriteTransaction,
            summary: Summary,
        }
        impl TableVisitor for Copy<'_> {
            fn visit<K: Field + redb::Key, V: Field>(
                &mut self,
                table: TableDefinition<'static, K, V>,
                _: Encoding,
            ) -> Result<(), StoreError> {
                // An older schema lacks the newer tables.
                let Some(source) = open_if_present(self.read, table)? else { return Ok(()) };
                let mut target = self.write.open_table(table)?;
                let mut rows = 0;
                for entry in source.iter()? {
                    let (key, value) = entry?;
                    target.insert(key.value(), value.value())?;
                    rows += 1;
                }
                self.summary.rows.push((table.name().to_string(), rows));
                Ok(())
            }
        }
        let mut copy = Copy { read: &read, write: &write, summary: Summary { schema, ..Summary::default() } };
        visit_tables(&mut copy)?;
        let summary = copy.summary;
        write.commit()?;
        drop(db);
        Ok(summary)
    })();
    finish(copied, &partial, target)
}

/// Moves a complete `partial` file to `target` (synced first), or removes it after a failure.
fn finish(done: Result<Summary, StoreError>, partial: &Path, target: &Path) -> Result<Summary, StoreError> {
    let moved = done.and_then(|summary| {
        let io = |e: std::io::Error| StoreError::Redb(format!("cannot write {}: {e}", target.display()));
        std::fs::File::open(partial).and_then(|f| f.sync_all()).map_err(io)?;
        std::fs::rename(partial, target).map_err(io)?;
        Ok(summary)
    });
    if moved.is_err() {
        let _ = std::fs::remove_file(partial);
    }
    moved
}

/// Where a new store is built before it replaces `store`: `<store>.<what>`, cleared first.
fn staged_path(store: &Path, what: &str) -> PathBuf {
    let mut name = store.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(format!(".{what}"));
    let staged = store.with_file_name(name);
    let _ = std::fs::remove_file(&staged);
    if let Some(parent) = store.parent().filter(|p| !p.as_os_str().is_empty()) {
        let _ = std::fs::create_dir_all(parent);
    }
    staged
}

/// `store.redb` → `store.redb.partial`.
fn partial_path(target: &Path) -> PathBuf {
    let mut name = target.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".partial");
    target.with_file_name(name)
}

/// Opens a store file as it is (no migration), refusing a missing one.
fn open_as_is(path: &Path) -> Result<Database, StoreError> {
    if !path.exists() {
        return Err(StoreError::Redb(format!("there is no store at {}", path.display())));
    }
    Database::open(path).map_err(|err| match err {
        redb::DatabaseError::DatabaseAlreadyOpen => StoreError::Locked(path.to_path_buf()),
        other => StoreError::Redb(format!("cannot open {}: {other}", path.display())),
    })
}

/// What the store file at `path` holds, read as it is (no migration, nothing created): its
/// schema and the rows of each table.
pub fn inspect(path: &Path) -> Result<Summary, StoreError> {
    let db = open_as_is(path)?;
    let read = db.begin_read()?;
    let schema = check_source(&read, path)?;
    struct Count<'a> {
        read: &'a redb::ReadTransaction,
        summary: Summary,
    }
    impl TableVisitor for Count<'_> {
        fn visit<K: Field + redb::Key, V: Field>(
            &mut self,
            table: TableDefinition<'static, K, V>,
            _: Encoding,
        ) -> Result<(), StoreError> {
            let Some(source) = open_if_present(self.read, table)? else { return Ok(()) };
            let rows = redb::ReadableTableMetadata::len(&source)?;
            self.summary.rows.push((table.name().to_string(), rows));
            Ok(())
        }
    }
    let mut count = Count { read: &read, summary: Summary { schema, ..Summary::default() } };
    visit_tables(&mut count)?;
    Ok(count.summary)
}

/// Backs up the store file at `source` (not open in another process) into `target`.
pub fn backup_file(source: &Path, target: &Path) -> Result<Summary, StoreError> {
    snapshot(&open_as_is(source)?, source, target)
}

/// What `restore` and `load` do to a store file that exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overwrite {
    Refuse,
    /// Replace it, keeping the old file beside it under a dated name.
    KeepAside,
}

/// Where the replaced store goes: `postflow.redb.before-restore-<unix seconds>` (with `-2`,
/// `-3`… when that name is taken: an older copy is never overwritten).
fn aside_path(store: &Path, what: &str, now: i64) -> PathBuf {
    let named = |suffix: String| {
        let mut name = store.file_name().map(|n| n.to_os_string()).unwrap_or_default();
        name.push(format!(".before-{what}-{now}{suffix}"));
        store.with_file_name(name)
    };
    (1..).map(|n| named(if n == 1 { String::new() } else { format!("-{n}") })).find(|p| !p.exists()).unwrap_or_default()
}

/// Refuses to replace the store at `store` if a process has it open, or if it exists and the
/// operator did not say to replace it. Returns the store opened, when it opens: holding it keeps
/// a bot from opening it until the new file is in place.
fn may_replace(store: &Path, overwrite: Overwrite, what: &str) -> Result<Option<Database>, StoreError> {
    if !store.exists() {
        return Ok(None);
    }
    // A running bot holds the lock. A damaged file that does not open may be replaced: that is
    // what a restore is for.
    let held = match open_as_is(store) {
        Ok(database) => Some(database),
        Err(locked @ StoreError::Locked(_)) => return Err(locked),
        Err(_) => None,
    };
    if overwrite == Overwrite::Refuse {
        return Err(StoreError::Redb(format!(
            "the store {} exists and the {what} would replace it; run again with --force to replace it (the current file is kept beside it)",
            store.display()
        )));
    }
    Ok(held)
}

/// Puts the complete file `staged` in place as the store at `store`, keeping an existing store
/// aside. `held` is what [`may_replace`] returned when the caller checked; with nothing held
/// (there was no store, or it did not open) the check is made again, in case a bot started since.
/// Returns where the old store went.
///
/// The old store stays open (locked) until the new file has replaced it, and the replacement is
/// one rename over the old name, so a bot started meanwhile either finds the old store locked
/// and stops, or opens the new one: never a store it creates in the moment the name is free.
fn put_in_place(
    staged: &Path,
    store: &Path,
    held: Option<Database>,
    overwrite: Overwrite,
    what: &str,
    now: i64,
) -> Result<Option<PathBuf>, StoreError> {
    let placed = (|| {
        let held = match held {
            Some(database) => Some(database),
            None => may_replace(store, overwrite, what)?,
        };
        let aside = if store.exists() {
            let aside = aside_path(store, what, now);
            // A second name for the old file, then the rename over the first; where hard links
            // are not possible, the old file is moved aside first.
            let linked = std::fs::hard_link(store, &aside).is_ok();
            if !linked {
                std::fs::rename(store, &aside)
                    .map_err(|e| StoreError::Redb(format!("cannot move {} aside: {e}", store.display())))?;
            }
            Some((aside, linked))
        } else {
            if let Some(parent) = store.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent)
                    .map_err(|source| StoreError::Folder { path: store.to_path_buf(), source })?;
            }
            None
        };
        if let Err(error) = std::fs::rename(staged, store) {
            let mut problem = format!("cannot write {}: {error}", store.display());
            match &aside {
                Some((aside, true)) => {
                    let _ = std::fs::remove_file(aside);
                }
                Some((aside, false)) => {
                    if let Err(back) = std::fs::rename(aside, store) {
                        problem.push_str(&format!("; the old store is at {} ({back})", aside.display()));
                    }
                }
                None => {}
            }
            return Err(StoreError::Redb(problem));
        }
        drop(held);
        Ok(aside.map(|(aside, _)| aside))
    })();
    if placed.is_err() {
        let _ = std::fs::remove_file(staged);
    }
    placed
}

/// What a restore or a load did.
#[derive(Debug, Clone)]
pub struct Replaced {
    pub summary: Summary,
    /// Where the store that was there before went.
    pub kept_aside: Option<PathBuf>,
}

/// Restores the backup `file` as the store at `store` (the bot must be stopped). The backup is
/// checked and copied first; the store is only replaced once the copy is complete.
pub fn restore(file: &Path, store: &Path, overwrite: Overwrite, now: i64) -> Result<Replaced, StoreError> {
    let held = may_replace(store, overwrite, "restore")?;
    let backup = open_as_is(file)?;
    let staged = staged_path(store, "restoring");
    let summary = snapshot(&backup, file, &staged)?;
    let kept_aside = put_in_place(&staged, store, held, overwrite, "restore", now)?;
    Ok(Replaced { summary, kept_aside })
}

/// Every table of `db` as one JSON document. Derived tables (the event log's columnar
/// segments) are left out: they are rebuilt when a loaded store opens.
pub(super) fn dump(db: &Database, path: &Path, now: i64) -> Result<(Json, Summary), StoreError> {
    let read = db.begin_read()?;
    let schema = check_source(&read, path)?;
    struct Dump<'a> {
        read: &'a redb::ReadTransaction,
        tables: serde_json::Map<String, Json>,
        summary: Summary,
    }
    impl TableVisitor for Dump<'_> {
        fn visit<K: Field + redb::Key, V: Field>(
            &mut self,
            table: TableDefinition<'static, K, V>,
            encoding: Encoding,
        ) -> Result<(), StoreError> {
            if encoding == Encoding::Derived {
                return Ok(());
            }
            let Some(source) = open_if_present(self.read, table)? else { return Ok(()) };
            let mut rows = Vec::new();
            for entry in source.iter()? {
                let (key, value) = entry?;
                let key = K::to_json(key.value(), Encoding::Plain);
                // Which segment format is in the file is about the segments, which are not dumped.
                if table.name() == META.name() && key == json!(FORMAT_KEY) {
                    continue;
                }
                rows.push(json!({ "key": key, "value": V::to_json(value.value(), encoding) }));
            }
            self.summary.rows.push((table.name().to_string(), rows.len() as u64));
            self.tables.insert(table.name().to_string(), Json::Array(rows));
            Ok(())
        }
    }
    let mut dump =
        Dump { read: &read, tables: serde_json::Map::new(), summary: Summary { schema, ..Summary::default() } };
    visit_tables(&mut dump)?;
    let document = json!({
        "postflow_dump": DUMP_FORMAT,
        "postflow_version": env!("CARGO_PKG_VERSION"),
        "schema": schema,
        "created_at": chrono::DateTime::from_timestamp(now, 0).map(|t| t.to_rfc3339()),
        "tables": dump.tables,
    });
    Ok((document, dump.summary))
}

/// Dumps the store file at `source` (not open in another process).
pub fn dump_file(source: &Path, now: i64) -> Result<(Json, Summary), StoreError> {
    dump(&open_as_is(source)?, source, now)
}

/// Writes a dump into a new store at `store` (the bot must be stopped). The document is checked
/// whole before anything is replaced: its format, its schema (not newer than this build's), and
/// every table name, key and value. The store then opens normally, which migrates an older
/// schema and rebuilds the event log's segments.
pub fn load(document: &Json, store: &Path, overwrite: Overwrite, now: i64) -> Result<Replaced, StoreError> {
    let bad = |what: String| StoreError::Corrupt(format!("the dump {what}"));
    match document.get("postflow_dump").and_then(Json::as_u64) {
        Some(DUMP_FORMAT) => {}
        Some(other) => return Err(bad(format!("has format {other}; this postflow reads format {DUMP_FORMAT}"))),
        None => return Err(bad("is not a postflow dump (no `postflow_dump` field)".into())),
    }
    let schema = document.get("schema").and_then(Json::as_u64).ok_or_else(|| bad("names no schema".into()))?;
    if schema > SCHEMA_VERSION {
        return Err(StoreError::NewerSchema {
            path: PathBuf::from("(the dump)"),
            found: schema,
            supported: SCHEMA_VERSION,
        });
    }
    let tables = document.get("tables").and_then(Json::as_object).ok_or_else(|| bad("has no tables".into()))?;
    let known = table_names();
    let unknown: Vec<&str> = tables.keys().filter(|name| !known.contains(name)).map(String::as_str).collect();
    if !unknown.is_empty() {
        return Err(bad(format!("has tables this postflow does not know: {}", unknown.join(", "))));
    }
    let held = may_replace(store, overwrite, "load")?;
    let staged = staged_path(store, "loading");
    let written = (|| {
        let db = Database::create(&staged)
            .map_err(|e| StoreError::Redb(format!("cannot create {}: {e}", staged.display())))?;
        let write = db.begin_write()?;
        struct Load<'a> {
            tables: &'a serde_json::Map<String, Json>,
            write: &'a redb::WriteTransaction,
            summary: Summary,
        }
        impl TableVisitor for Load<'_> {
            fn visit<K: Field + redb::Key, V: Field>(
                &mut self,
                table: TableDefinition<'static, K, V>,
                encoding: Encoding,
            ) -> Result<(), StoreError> {
                let Some(rows) = self.tables.get(table.name()) else { return Ok(()) };
                let rows = rows
                    .as_array()
                    .ok_or_else(|| StoreError::Corrupt(format!("the dump's table {} is not a list", table.name())))?;
                let mut target = self.write.open_table(table)?;
                for (index, row) in rows.iter().enumerate() {
                    let wrong =
                        || StoreError::Corrupt(format!("the dump's {} row {} does not fit", table.name(), index + 1));
                    let key = K::from_json(row.get("key").ok_or_else(wrong)?, Encoding::Plain).ok_or_else(wrong)?;
                    let value = V::from_json(row.get("value").ok_or_else(wrong)?, encoding).ok_or_else(wrong)?;
                    target.insert(K::view(&key), V::view(&value))?;
                }
                self.summary.rows.push((table.name().to_string(), rows.len() as u64));
                Ok(())
            }
        }
        let mut load = Load { tables, write: &write, summary: Summary { schema, ..Summary::default() } };
        visit_tables(&mut load)?;
        let summary = load.summary;
        write.commit()?;
        drop(db);
        Ok(summary)
    })();
    let summary = match written {
        Ok(summary) => summary,
        Err(error) => {
            let _ = std::fs::remove_file(&staged);
            return Err(error);
        }
    };
    let kept_aside = put_in_place(&staged, store, held, overwrite, "load", now)?;
    Ok(Replaced { summary, kept_aside })
}

/// Rows per table of a summary, for a JSON answer.
pub fn rows_json(summary: &Summary) -> Json {
    let rows: BTreeMap<&str, u64> = summary.rows.iter().map(|(name, n)| (name.as_str(), *n)).collect();
    json!(rows)
}
