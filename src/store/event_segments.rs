//! The event log's columnar segments: every run of [`DEFAULT_SEGMENT_ROWS`] events is also kept
//! as one Parquet block, so analytics reads a million events (only the columns a pipeline uses)
//! without decoding a million JSON records. The JSON records stay the log of record; segments
//! are derived from them when a run fills up, merged [`SEGMENTS_PER_MERGE`] at a time, dropped
//! when their events are pruned, and built for older stores by the migration to schema 4.

use std::io::Cursor;

use polars::prelude::*;
use redb::{ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};

use super::{EVENTS, LoggedEvent, META, Store, StoreError};

/// Events per segment: large enough that a segment compresses and decodes in bulk, small enough
/// that sealing one (inside the turn that logs its last event) takes a moment.
pub const DEFAULT_SEGMENT_ROWS: u64 = 16_384;

/// The newest segments are merged into one when they hold this many segments' worth of events
/// (131,072 by default). Each segment costs a reader its own Parquet footer, dictionaries and
/// chunk in every column, so a million events read as 8 segments, not 61, take about a tenth
/// less time to aggregate; merging costs the turn that seals the eighth segment some 40 ms.
pub const SEGMENTS_PER_MERGE: u64 = 8;

/// The layout of a segment: what [`LoggedEvent::decode`] gives, as [`EventColumns::finish`]
/// writes it, and how segments are sized (format 2: merged, [`SEGMENTS_PER_MERGE`]). Bump it
/// when any of that changes; segments of another format are sealed again when the store is
/// opened.
const SEGMENT_FORMAT: u64 = 2;
pub(super) const FORMAT_KEY: &str = "event_segment_format";

/// A segment: its first sequence number → the events `[first, end)` as Parquet.
pub(super) const EVENT_SEGMENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("event_segments");
/// A segment's first sequence number → `end`, one past its last (read without the blocks).
pub(super) const EVENT_SEGMENT_ENDS: TableDefinition<u64, u64> = TableDefinition::new("event_segment_ends");

/// The event log as columns, built event by event. Times are Unix seconds here; analytics turns
/// them into the admins' wall clock.
#[derive(Debug, Default)]
pub struct EventColumns {
    seq: Vec<u64>,
    at: Vec<i64>,
    kind: Vec<String>,
    user: Vec<Option<i64>>,
    post: Vec<Option<u64>>,
    format: Vec<Option<String>>,
    action: Vec<Option<String>>,
    model: Vec<Option<String>>,
    prompt_tokens: Vec<Option<u64>>,
    completion_tokens: Vec<Option<u64>>,
    latency_ms: Vec<Option<u64>>,
    outcome: Vec<Option<String>>,
    data: Vec<Option<String>>,
}

impl EventColumns {
    pub fn with_capacity(rows: usize) -> Self {
        EventColumns {
            seq: Vec::with_capacity(rows),
            at: Vec::with_capacity(rows),
            kind: Vec::with_capacity(rows),
            user: Vec::with_capacity(rows),
            post: Vec::with_capacity(rows),
            format: Vec::with_capacity(rows),
            action: Vec::with_capacity(rows),
            model: Vec::with_capacity(rows),
            prompt_tokens: Vec::with_capacity(rows),
            completion_tokens: Vec::with_capacity(rows),
            latency_ms: Vec::with_capacity(rows),
            outcome: Vec::with_capacity(rows),
            data: Vec::with_capacity(rows),
        }
    }

    pub fn push(&mut self, event: LoggedEvent) {
        self.seq.push(event.seq);
        self.at.push(event.at);
        self.kind.push(event.kind);
        self.user.push(event.user);
        self.post.push(event.post);
        self.format.push(event.format);
        self.action.push(event.action);
        self.model.push(event.model);
        self.prompt_tokens.push(event.prompt_tokens);
        self.completion_tokens.push(event.completion_tokens);
        self.latency_ms.push(event.latency_ms);
        self.outcome.push(event.outcome);
        self.data.push(event.data);
    }

    pub fn is_empty(&self) -> bool {
        self.seq.is_empty()
    }

    /// The columns as a table: `seq`, `at` (Unix seconds), `kind`, `user`, `post`, `format`,
    /// `action`, `model`, `prompt_tokens`, `completion_tokens`, `latency_ms`, `outcome`, `data`.
    pub fn finish(self) -> PolarsResult<DataFrame> {
        DataFrame::new_infer_height(vec![
            Column::new("seq".into(), self.seq),
            Column::new("at".into(), self.at),
            Column::new("kind".into(), self.kind),
            Column::new("user".into(), self.user),
            Column::new("post".into(), self.post),
            Column::new("format".into(), self.format),
            Column::new("action".into(), self.action),
            Column::new("model".into(), self.model),
            Column::new("prompt_tokens".into(), self.prompt_tokens),
            Column::new("completion_tokens".into(), self.completion_tokens),
            Column::new("latency_ms".into(), self.latency_ms),
            Column::new("outcome".into(), self.outcome),
            Column::new("data".into(), self.data),
        ])
    }
}

fn damaged(what: String) -> impl FnOnce(PolarsError) -> StoreError {
    move |err| StoreError::Corrupt(format!("{what}: {err}"))
}

/// On opening: segments written in another format (or by a version without segments) are dropped
/// and the log sealed again.
pub(super) fn check_format(txn: &WriteTransaction, rows: u64) -> Result<(), StoreError> {
    let mut meta = txn.open_table(META)?;
    if meta.get(FORMAT_KEY)?.map(|v| v.value()) == Some(SEGMENT_FORMAT) {
        return Ok(());
    }
    meta.insert(FORMAT_KEY, SEGMENT_FORMAT)?;
    drop(meta);
    txn.delete_table(EVENT_SEGMENTS)?;
    txn.delete_table(EVENT_SEGMENT_ENDS)?;
    txn.open_table(EVENT_SEGMENTS)?;
    txn.open_table(EVENT_SEGMENT_ENDS)?;
    let events = redb::ReadableTableMetadata::len(&txn.open_table(EVENTS)?)?;
    if events >= rows {
        tracing::info!(events, "sealing the event log into columnar segments");
    }
    seal_full_segments(txn, rows)
}

/// Seals every full run of `rows` events after the last segment (normally none or one), merging
/// the newest segments as they fill a merged one. A long unsealed log (an older store's) is sealed
/// in merged-size segments straight away. A log that does not start at a multiple of `rows` (one
/// pruned before it was sealed, or emptied and gone on) is sealed up to the next multiple first,
/// so that the later segments end where [`super::append_event`] looks for a full run.
pub(super) fn seal_full_segments(txn: &WriteTransaction, rows: u64) -> Result<(), StoreError> {
    let rows = rows.max(1);
    let merged = rows.saturating_mul(SEGMENTS_PER_MERGE);
    loop {
        let (start, next) = {
            let events = txn.open_table(EVENTS)?;
            let Some(first) = events.first()?.map(|(seq, _)| seq.value()) else { return Ok(()) };
            let next = events.last()?.map_or(0, |(seq, _)| seq.value() + 1);
            let sealed = txn.open_table(EVENT_SEGMENT_ENDS)?.last()?.map_or(0, |(_, end)| end.value());
            (sealed.max(first), next)
        };
        let unsealed = next.saturating_sub(start);
        let to_boundary = start.next_multiple_of(rows) - start;
        let size = if to_boundary > 0 {
            to_boundary
        } else if unsealed >= merged && newest_unmerged(txn, merged)?.is_empty() {
            merged
        } else {
            rows
        };
        if unsealed < size {
            return Ok(());
        }
        seal(txn, start, start + size)?;
        merge_newest(txn, merged)?;
    }
}

/// The newest segments smaller than `merged`, oldest first, up to the first that is not (or a gap
/// in the log), and at most as many as together reach `merged` events: `(start, end)` each.
fn newest_unmerged(txn: &WriteTransaction, merged: u64) -> Result<Vec<(u64, u64)>, StoreError> {
    let ends = txn.open_table(EVENT_SEGMENT_ENDS)?;
    let mut run: Vec<(u64, u64)> = Vec::new();
    let mut events = 0;
    for entry in ends.iter()?.rev() {
        let (start, end) = entry?;
        let (start, end) = (start.value(), end.value());
        let follows = run.last().is_none_or(|&(next_start, _)| end == next_start);
        if end - start >= merged || !follows || events >= merged {
            break;
        }
        events += end - start;
        run.push((start, end));
    }
    run.reverse();
    Ok(run)
}

/// Merges the newest segments into one once they hold `merged` events together.
fn merge_newest(txn: &WriteTransaction, merged: u64) -> Result<(), StoreError> {
    let run = newest_unmerged(txn, merged)?;
    let (Some(&(start, _)), Some(&(_, end))) = (run.first(), run.last()) else { return Ok(()) };
    if run.len() < 2 || end - start < merged {
        return Ok(());
    }
    let mut blocks = Vec::with_capacity(run.len());
    {
        let segments = txn.open_table(EVENT_SEGMENTS)?;
        for &(first, last) in &run {
            let Some(block) = segments.get(first)? else {
                return Err(StoreError::Corrupt(format!("event segment {first}..{last} is missing")));
            };
            blocks.push((first, last, block.value().to_vec()));
        }
    }
    remove_segments(txn, &run)?;
    rewrite_as_one(txn, &blocks, start)
}

/// Writes the events from `from` on of `blocks` (segments in order, their entries already
/// removed) as one segment.
fn rewrite_as_one(txn: &WriteTransaction, blocks: &[(u64, u64, Vec<u8>)], from: u64) -> Result<(), StoreError> {
    let (Some(&(first, _, _)), Some(&(_, end, _))) = (blocks.first(), blocks.last()) else { return Ok(()) };
    let what = || format!("event segment {from}..{end}");
    let parts: Vec<(u64, u64, &[u8])> = blocks.iter().map(|(s, e, b)| (*s, *e, b.as_slice())).collect();
    let mut tables = decode_segments(&parts, None)?.into_iter();
    let Some(mut frame) = tables.next() else { return Ok(()) };
    for table in tables {
        frame.vstack_mut_owned(table).map_err(damaged(what()))?;
    }
    let mut frame = frame.slice(from.saturating_sub(first) as i64, end.saturating_sub(from) as usize);
    frame.rechunk_mut();
    let bytes = encode(&mut frame).map_err(damaged(what()))?;
    put_segment(txn, from, end, &bytes)
}

/// A segment's bytes: the table as Parquet.
fn encode(frame: &mut DataFrame) -> PolarsResult<Vec<u8>> {
    let mut bytes = Vec::new();
    ParquetWriter::new(&mut bytes).with_compression(ParquetCompression::Lz4Raw).finish(frame)?;
    Ok(bytes)
}

/// Stores the segment of the events `[start, end)`.
fn put_segment(txn: &WriteTransaction, start: u64, end: u64, bytes: &[u8]) -> Result<(), StoreError> {
    txn.open_table(EVENT_SEGMENTS)?.insert(start, bytes)?;
    txn.open_table(EVENT_SEGMENT_ENDS)?.insert(start, end)?;
    Ok(())
}

/// Removes the segments `(start, end)`.
fn remove_segments(txn: &WriteTransaction, ranges: &[(u64, u64)]) -> Result<(), StoreError> {
    let mut ends = txn.open_table(EVENT_SEGMENT_ENDS)?;
    let mut segments = txn.open_table(EVENT_SEGMENTS)?;
    for &(start, _) in ranges {
        ends.remove(start)?;
        segments.remove(start)?;
    }
    Ok(())
}

/// Writes the events `[start, end)` as one segment.
fn seal(txn: &WriteTransaction, start: u64, end: u64) -> Result<(), StoreError> {
    let mut columns = EventColumns::with_capacity((end - start) as usize);
    {
        let events = txn.open_table(EVENTS)?;
        for entry in events.range(start..end)? {
            let (seq, bytes) = entry?;
            columns.push(LoggedEvent::decode(seq.value(), bytes.value()));
        }
    }
    let what = || format!("event segment {start}..{end}");
    let mut frame = columns.finish().map_err(damaged(what()))?;
    let bytes = encode(&mut frame).map_err(damaged(what()))?;
    put_segment(txn, start, end, &bytes)
}

/// Drops the segments holding any event before `first_kept` (after those events were pruned);
/// what is left of the one it cuts into becomes a segment of its own, cut from the old one.
pub(super) fn drop_segments_before(txn: &WriteTransaction, first_kept: u64) -> Result<(), StoreError> {
    let stale: Vec<(u64, u64)> = txn
        .open_table(EVENT_SEGMENT_ENDS)?
        .range(..first_kept)?
        .map(|entry| entry.map(|(first, end)| (first.value(), end.value())))
        .collect::<Result<_, _>>()?;
    let cut = match stale.last() {
        Some(&(start, end)) if end > first_kept => {
            let block = txn.open_table(EVENT_SEGMENTS)?.get(start)?.map(|block| block.value().to_vec());
            block.map(|block| (start, end, block))
        }
        _ => None,
    };
    remove_segments(txn, &stale)?;
    match cut {
        Some(cut) => rewrite_as_one(txn, &[cut], first_kept),
        None => Ok(()),
    }
}

/// Where each table of [`Store::event_tables`] comes from, in order.
enum Part {
    Table(usize),
    Segment(usize),
}

/// Decodes segments on every core, each thread taking every n-th block.
fn decode_segments(blocks: &[(u64, u64, &[u8])], names: Option<&[String]>) -> Result<Vec<DataFrame>, StoreError> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, blocks.len().max(1));
    let decode = |&(start, end, block): &(u64, u64, &[u8])| {
        ParquetReader::new(Cursor::new(block))
            .with_columns(names.map(<[String]>::to_vec))
            .read_parallel(ParallelStrategy::None)
            .finish()
            .map_err(damaged(format!("event segment {start}..{end}")))
    };
    let mut results: Vec<Option<Result<DataFrame, StoreError>>> = (0..blocks.len()).map(|_| None).collect();
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|first| {
                let decode = &decode;
                scope.spawn(move || {
                    blocks
                        .iter()
                        .enumerate()
                        .skip(first)
                        .step_by(threads)
                        .map(|(i, b)| (i, decode(b)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for worker in workers {
            match worker.join() {
                Ok(done) => done.into_iter().for_each(|(i, table)| results[i] = Some(table)),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
    });
    results
        .into_iter()
        .map(|table| table.unwrap_or_else(|| Err(StoreError::Corrupt("an event segment was not read".into()))))
        .collect()
}

impl Store {
    /// Events per sealed segment of this store handle (tests use small ones).
    pub fn with_event_segment_rows(mut self, rows: u64) -> Store {
        self.segment_rows = rows.max(1);
        self
    }

    /// The whole event log as tables in sequence order, with only `columns` (all when `None`):
    /// one table per segment and one for each run of events not sealed yet. Times are Unix
    /// seconds.
    pub fn event_tables(&self, columns: Option<&[PlSmallStr]>) -> Result<Vec<DataFrame>, StoreError> {
        let names: Option<Vec<String>> = columns.map(|c| c.iter().map(|name| name.to_string()).collect());
        let txn = self.db.begin_read()?;
        let events = txn.open_table(EVENTS)?;
        let ends = txn.open_table(EVENT_SEGMENT_ENDS)?;
        let segments = txn.open_table(EVENT_SEGMENTS)?;
        let Some(first) = events.first()?.map(|(seq, _)| seq.value()) else { return Ok(Vec::new()) };
        let mut tables = Vec::new();
        let mut rows_from = first;
        let project = |frame: DataFrame| match &names {
            Some(names) => frame.select(names.iter().map(String::as_str)),
            None => Ok(frame),
        };
        let read_rows = |from: u64, to: Option<u64>, tables: &mut Vec<DataFrame>| -> Result<(), StoreError> {
            let mut columns = EventColumns::default();
            let range = match to {
                Some(to) => events.range(from..to)?,
                None => events.range(from..)?,
            };
            for entry in range {
                let (seq, bytes) = entry?;
                columns.push(LoggedEvent::decode(seq.value(), bytes.value()));
            }
            if !columns.is_empty() {
                let what = format!("events from {from}");
                tables.push(columns.finish().and_then(project).map_err(damaged(what))?);
            }
            Ok(())
        };
        // Segments are decoded on all cores (each on one); records are read here meanwhile.
        let mut blocks = Vec::new();
        let mut parts = Vec::new();
        for entry in ends.range(first..)? {
            let (start, end) = entry?;
            let (start, end) = (start.value(), end.value());
            if start > rows_from {
                let before = tables.len();
                read_rows(rows_from, Some(start), &mut tables)?;
                if tables.len() > before {
                    parts.push(Part::Table(before));
                }
            }
            let Some(block) = segments.get(start)? else {
                return Err(StoreError::Corrupt(format!("event segment {start}..{end} is missing")));
            };
            parts.push(Part::Segment(blocks.len()));
            blocks.push((start, end, block));
            rows_from = end;
        }
        let before = tables.len();
        read_rows(rows_from, None, &mut tables)?;
        if tables.len() > before {
            parts.push(Part::Table(before));
        }
        let slices: Vec<(u64, u64, &[u8])> =
            blocks.iter().map(|(start, end, block)| (*start, *end, block.value())).collect();
        let decoded = decode_segments(&slices, names.as_deref())?;
        let mut tables: Vec<Option<DataFrame>> = tables.into_iter().map(Some).collect();
        let mut decoded: Vec<Option<DataFrame>> = decoded.into_iter().map(Some).collect();
        Ok(parts
            .into_iter()
            .filter_map(|part| match part {
                Part::Table(index) => tables[index].take(),
                Part::Segment(index) => decoded[index].take(),
            })
            .collect())
    }

    /// How many segments the event log has.
    pub fn event_segment_count(&self) -> Result<u64, StoreError> {
        use redb::ReadableTableMetadata;
        let txn = self.db.begin_read()?;
        Ok(txn.open_table(EVENT_SEGMENT_ENDS)?.len()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(store: &Store, events: std::ops::Range<i64>) {
        let turn = store.begin_turn().unwrap();
        for n in events {
            let record = if n % 3 == 0 {
                serde_json::json!({ "user": 7, "format": "promo", "prompt_tokens": n, "offline": true })
            } else {
                serde_json::json!({ "post": n as u64, "reason": "x" })
            };
            turn.record_event(if n % 3 == 0 { "ai_call" } else { "post_saved" }, 100 + n, &record).unwrap();
        }
        turn.commit().unwrap();
    }

    fn whole(store: &Store, columns: Option<&[PlSmallStr]>) -> DataFrame {
        let mut tables = store.event_tables(columns).unwrap().into_iter();
        let mut frame = tables.next().unwrap();
        for table in tables {
            frame.vstack_mut(&table).unwrap();
        }
        frame
    }

    /// A store sealing every 4 events and one that never seals (its segments are 16,384 long).
    fn sealed_and_plain(dir: &tempfile::TempDir) -> (Store, Store) {
        let sealed = Store::open(&dir.path().join("a.redb")).unwrap().with_event_segment_rows(4);
        (sealed, Store::open(&dir.path().join("b.redb")).unwrap())
    }

    #[test]
    fn segments_read_back_the_same_table_as_the_records() {
        let dir = tempfile::tempdir().unwrap();
        let (sealed, plain) = sealed_and_plain(&dir);
        for store in [&sealed, &plain] {
            log(store, 0..6);
            log(store, 6..11);
        }
        assert_eq!((sealed.event_segment_count().unwrap(), plain.event_segment_count().unwrap()), (2, 0));
        assert_eq!(sealed.event_tables(None).unwrap().len(), 3, "two segments and the 3 events after them");
        let expected = whole(&plain, None);
        assert_eq!(whole(&sealed, None), expected);
        assert_eq!(expected.height(), 11);
        let data = expected.column("data").unwrap().str().unwrap();
        assert_eq!(data.get(0), Some(r#"{"offline":true}"#));
        assert_eq!(data.get(1), None);

        let wanted: Vec<PlSmallStr> = vec!["post".into(), "seq".into()];
        let projected = whole(&sealed, Some(&wanted));
        assert_eq!(projected.get_column_names(), ["post", "seq"]);
        assert_eq!(projected, expected.select(["post", "seq"]).unwrap());
    }

    fn seqs(store: &Store) -> Vec<u64> {
        whole(store, None).column("seq").unwrap().u64().unwrap().into_no_null_iter().collect()
    }

    fn segment_ranges(store: &Store) -> Vec<(u64, u64)> {
        let txn = store.db.begin_read().unwrap();
        let ends = txn.open_table(EVENT_SEGMENT_ENDS).unwrap();
        ends.iter().unwrap().map(|entry| entry.map(|(s, e)| (s.value(), e.value())).unwrap()).collect()
    }

    #[test]
    fn pruning_seals_again_what_is_left_of_a_segment_it_cuts_into() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("a.redb")).unwrap().with_event_segment_rows(4);
        log(&store, 0..13);
        assert_eq!(segment_ranges(&store), [(0, 4), (4, 8), (8, 12)]);
        let turn = store.begin_turn().unwrap();
        // Events 0..6 (at 100..106) go: the first segment entirely, the second half.
        assert_eq!(turn.prune_events(106, |_| {}).unwrap(), 6);
        turn.commit().unwrap();
        assert_eq!(segment_ranges(&store), [(6, 8), (8, 12)], "what is left of 4..8 is a segment again");
        assert_eq!(store.event_tables(None).unwrap().len(), 3, "two segments and the record of 12");
        assert_eq!(seqs(&store), (6..13).collect::<Vec<u64>>());
        // The log goes on: 12, 13, 14, 15 are the next segment.
        log(&store, 13..16);
        assert_eq!(segment_ranges(&store), [(6, 8), (8, 12), (12, 16)]);
        assert_eq!(seqs(&store), (6..16).collect::<Vec<u64>>());
    }

    #[test]
    fn the_newest_segments_are_merged_eight_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let (sealed, plain) = sealed_and_plain(&dir);
        for store in [&sealed, &plain] {
            log(store, 0..31);
        }
        assert_eq!(sealed.event_segment_count().unwrap(), 7, "seven segments wait for an eighth");
        for store in [&sealed, &plain] {
            log(store, 31..42);
        }
        assert_eq!(segment_ranges(&sealed), [(0, 32), (32, 36), (36, 40)]);
        assert_eq!(whole(&sealed, None), whole(&plain, None));
        assert_eq!(sealed.event_tables(None).unwrap().len(), 4, "three segments and the records of 40 and 41");

        // Pruning into the merged segment leaves its rest as a segment, merged again with the
        // newer ones once they hold a merged segment's worth together.
        for store in [&sealed, &plain] {
            let turn = store.begin_turn().unwrap();
            assert_eq!(turn.prune_events(110, |_| {}).unwrap(), 10);
            turn.commit().unwrap();
        }
        assert_eq!(segment_ranges(&sealed), [(10, 32), (32, 36), (36, 40)]);
        assert_eq!(whole(&sealed, None), whole(&plain, None), "the cut segment holds what the records do");
        log(&sealed, 42..72);
        let mut expected = vec![(10, 44)];
        expected.extend((44..72).step_by(4).map(|start| (start, start + 4)));
        assert_eq!(segment_ranges(&sealed), expected, "the rest and three after it make 34 events");
        assert_eq!(seqs(&sealed), (10..72).collect::<Vec<u64>>());
    }

    #[test]
    fn a_long_unsealed_log_is_sealed_in_merged_segments() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("a.redb")).unwrap().with_event_segment_rows(1 << 20);
        log(&store, 0..75);
        assert_eq!(store.event_segment_count().unwrap(), 0);
        let expected = whole(&store, None);
        let txn = store.db.begin_write().unwrap();
        seal_full_segments(&txn, 4).unwrap();
        txn.commit().unwrap();
        assert_eq!(segment_ranges(&store), [(0, 32), (32, 64), (64, 68), (68, 72)]);
        assert_eq!(whole(&store, None), expected);
    }

    #[test]
    fn a_log_that_starts_off_a_multiple_is_sealed_up_to_the_next_one_first() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("a.redb")).unwrap().with_event_segment_rows(1 << 20);
        log(&store, 0..21);
        let turn = store.begin_turn().unwrap();
        assert_eq!(turn.prune_events(106, |_| {}).unwrap(), 6);
        turn.commit().unwrap();
        let txn = store.db.begin_write().unwrap();
        seal_full_segments(&txn, 4).unwrap();
        txn.commit().unwrap();
        assert_eq!(segment_ranges(&store), [(6, 8), (8, 12), (12, 16), (16, 20)]);
        assert_eq!(seqs(&store), (6..21).collect::<Vec<u64>>());
    }

    #[test]
    fn segments_of_another_format_are_sealed_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        {
            let store = Store::open(&path).unwrap();
            log(&store, 0..(DEFAULT_SEGMENT_ROWS as i64 + 5));
            let txn = store.db.begin_write().unwrap();
            txn.open_table(EVENT_SEGMENTS).unwrap().insert(0, b"an older layout".as_slice()).unwrap();
            txn.open_table(META).unwrap().insert(FORMAT_KEY, 0).unwrap();
            txn.commit().unwrap();
            assert!(store.event_tables(None).is_err(), "the odd segment is read");
        }
        let store = Store::open(&path).unwrap();
        assert_eq!(store.event_segment_count().unwrap(), 1);
        assert_eq!(whole(&store, None).height() as u64, DEFAULT_SEGMENT_ROWS + 5);
    }

    #[test]
    fn a_version_3_store_gets_its_log_sealed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        {
            let store = Store::open(&path).unwrap();
            log(&store, 0..(DEFAULT_SEGMENT_ROWS as i64 + 5));
            let txn = store.db.begin_write().unwrap();
            txn.delete_table(EVENT_SEGMENTS).unwrap();
            txn.delete_table(EVENT_SEGMENT_ENDS).unwrap();
            txn.open_table(META).unwrap().remove(FORMAT_KEY).unwrap();
            txn.commit().unwrap();
            store.set_schema_version(3).unwrap();
        }
        let store = Store::open(&path).unwrap();
        assert_eq!(store.schema_version().unwrap(), crate::store::SCHEMA_VERSION);
        assert_eq!(store.event_segment_count().unwrap(), 1);
        assert_eq!(whole(&store, None).height() as u64, DEFAULT_SEGMENT_ROWS + 5);
    }
}
