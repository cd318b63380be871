//! The store as tables for pipelines: `posts`, `events`, `clicks`, `reactions` and
//! `subscribers`, with the schemas `flows/README.md` documents. Times are local date-times on
//! the scheduler's wall clock (what the admins read), without a zone.

use chrono::{Offset, TimeZone};
use polars::prelude::*;

use crate::store::{Post, Store, StoreError};

/// What the sources need besides the store.
#[derive(Debug, Clone)]
pub struct SourceContext {
    pub timezone: chrono_tz::Tz,
    /// The channel's link prefix, such as `https://t.me/time_2_shopping`; posts get a `link`.
    pub channel_link: Option<String>,
}

impl SourceContext {
    /// The link prefix for a `CHANNEL_ID` (`@name` or `-100…`).
    pub fn channel_link_for(channel_id: &str) -> Option<String> {
        use crate::scheduler::publisher::channel_link;
        let id = channel_id.trim();
        match id.strip_prefix('@') {
            Some(name) => Some(channel_link(Some(name), 0)),
            None => id.starts_with("-100").then(|| id.parse().ok()).flatten().map(|id| channel_link(None, id)),
        }
    }

    /// Unix seconds → local wall-clock milliseconds.
    fn local_ms(&self, secs: i64) -> i64 {
        let offset = match self.timezone.timestamp_opt(secs, 0).single() {
            Some(at) => at.offset().fix().local_minus_utc() as i64,
            None => 0,
        };
        (secs + offset) * 1000
    }
}

/// Why a source could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("building the `{0}` table: {1}")]
    Polars(&'static str, PolarsError),
}

/// Reads a source from the store.
pub fn load(name: &str, store: &Store, ctx: &SourceContext) -> Result<DataFrame, SourceError> {
    load_sharing(name, store, ctx, &PostsRead::default())
}

/// Reads a source from the store, taking the posts from `posts` (read from the store the first
/// time a source needs them): `posts`, `clicks` and `reactions` all need every post, and a
/// report that joins them reads the posts once instead of three times.
pub fn load_sharing(
    name: &str,
    store: &Store,
    ctx: &SourceContext,
    posts: &PostsRead,
) -> Result<DataFrame, SourceError> {
    let polars = |source: &'static str| move |err| SourceError::Polars(source, err);
    match name {
        "posts" => self::posts(posts.get(store)?, ctx).map_err(polars("posts")),
        "events" => events(store, ctx),
        "clicks" => clicks(store, posts.by_id(store)?, ctx),
        "reactions" => reactions(store, posts.by_id(store)?, ctx),
        "subscribers" => subscribers(store, ctx).map_err(polars("subscribers")),
        _ => Err(SourceError::Polars("unknown", polars_err!(ComputeError: "no source `{name}`"))),
    }
}

/// The store's posts, read at most once, for the sources of one run.
#[derive(Default)]
pub struct PostsRead {
    posts: std::cell::OnceCell<Vec<Post>>,
    by_id: std::cell::OnceCell<std::collections::HashMap<u64, usize>>,
}

impl PostsRead {
    /// Every post, newest first.
    fn get(&self, store: &Store) -> Result<&[Post], StoreError> {
        if let Some(posts) = self.posts.get() {
            return Ok(posts);
        }
        let posts = store.posts()?;
        Ok(self.posts.get_or_init(|| posts))
    }

    /// Every post by its id.
    fn by_id(&self, store: &Store) -> Result<PostsById<'_>, StoreError> {
        let posts = self.get(store)?;
        let index = self.by_id.get_or_init(|| posts.iter().enumerate().map(|(i, p)| (p.id, i)).collect());
        Ok(PostsById { posts, index })
    }
}

/// Posts looked up by id, for the sources that name posts (their format, their buttons).
struct PostsById<'a> {
    posts: &'a [Post],
    index: &'a std::collections::HashMap<u64, usize>,
}

impl<'a> PostsById<'a> {
    /// The post `id`, if the store has it.
    fn get(&self, id: &u64) -> Option<&'a Post> {
        self.index.get(id).map(|&i| &self.posts[i])
    }
}

/// An empty table with the source's columns, for checking pipelines without data.
pub fn empty(name: &str) -> Option<DataFrame> {
    let schema = schema(name)?;
    Some(DataFrame::empty_with_schema(&schema))
}

fn datetime() -> DataType {
    DataType::Datetime(TimeUnit::Milliseconds, None)
}

/// The documented columns of each source.
pub fn schema(name: &str) -> Option<Schema> {
    let fields: Vec<(&str, DataType)> = match name {
        "posts" => vec![
            ("id", DataType::UInt64),
            ("title", DataType::String),
            ("format", DataType::String),
            ("status", DataType::String),
            ("language", DataType::String),
            ("text", DataType::String),
            ("chars", DataType::UInt32),
            ("media", DataType::String),
            ("media_count", DataType::UInt32),
            ("buttons", DataType::UInt32),
            ("created_by", DataType::Int64),
            ("created_at", datetime()),
            ("updated_at", datetime()),
            ("publish_at", datetime()),
            ("published_at", datetime()),
            ("message_id", DataType::Int64),
            ("link", DataType::String),
            ("score", DataType::Float64),
            ("attempts", DataType::UInt32),
            ("last_error", DataType::String),
        ],
        "events" => vec![
            ("seq", DataType::UInt64),
            ("at", datetime()),
            ("kind", DataType::String),
            ("user", DataType::Int64),
            ("post", DataType::UInt64),
            ("format", DataType::String),
            ("action", DataType::String),
            ("model", DataType::String),
            ("prompt_tokens", DataType::UInt64),
            ("completion_tokens", DataType::UInt64),
            ("latency_ms", DataType::UInt64),
            ("outcome", DataType::String),
            ("data", DataType::String),
        ],
        "clicks" => vec![
            ("at", datetime()),
            ("post", DataType::UInt64),
            ("button", DataType::UInt32),
            ("label", DataType::String),
            ("url", DataType::String),
            ("format", DataType::String),
            ("user", DataType::Int64),
        ],
        "reactions" => vec![
            ("post", DataType::UInt64),
            ("reaction", DataType::String),
            ("count", DataType::UInt32),
            ("at", datetime()),
            ("format", DataType::String),
        ],
        "subscribers" => vec![("at", datetime()), ("date", DataType::Date), ("members", DataType::Int64)],
        _ => return None,
    };
    Some(Schema::from_iter(fields.into_iter().map(|(name, dtype)| Field::new(name.into(), dtype))))
}

fn time_column(name: &str, values: Vec<Option<i64>>) -> PolarsResult<Column> {
    Column::new(name.into(), values).cast(&datetime())
}

fn posts(posts: &[Post], ctx: &SourceContext) -> PolarsResult<DataFrame> {
    let local = |secs: Option<i64>| secs.map(|s| ctx.local_ms(s));
    let text_of = |s: &Option<String>| s.clone().filter(|s| !s.is_empty());
    let columns = vec![
        Column::new("id".into(), posts.iter().map(|p| p.id).collect::<Vec<_>>()),
        Column::new("title".into(), posts.iter().map(|p| p.display_title()).collect::<Vec<_>>()),
        Column::new("format".into(), posts.iter().map(|p| text_of(&p.format)).collect::<Vec<_>>()),
        Column::new("status".into(), posts.iter().map(|p| p.status.name()).collect::<Vec<_>>()),
        Column::new("language".into(), posts.iter().map(|p| text_of(&p.language)).collect::<Vec<_>>()),
        Column::new("text".into(), posts.iter().map(|p| p.text.as_str()).collect::<Vec<_>>()),
        Column::new("chars".into(), posts.iter().map(|p| p.text.chars().count() as u32).collect::<Vec<_>>()),
        Column::new("media".into(), posts.iter().map(|p| p.media.as_ref().map(|m| m.kind.name())).collect::<Vec<_>>()),
        Column::new(
            "media_count".into(),
            posts.iter().map(|p| p.media.as_ref().map_or(0, |m| m.kinds().count() as u32)).collect::<Vec<_>>(),
        ),
        Column::new("buttons".into(), posts.iter().map(|p| p.buttons.len() as u32).collect::<Vec<_>>()),
        Column::new("created_by".into(), posts.iter().map(|p| p.created_by).collect::<Vec<_>>()),
        time_column("created_at", posts.iter().map(|p| local(Some(p.created_at))).collect())?,
        time_column("updated_at", posts.iter().map(|p| local(Some(p.updated_at))).collect())?,
        time_column("publish_at", posts.iter().map(|p| local(p.publish_at)).collect())?,
        time_column("published_at", posts.iter().map(|p| local(p.published_at)).collect())?,
        Column::new("message_id".into(), posts.iter().map(|p| p.message_ids.first().copied()).collect::<Vec<_>>()),
        Column::new(
            "link".into(),
            posts
                .iter()
                .map(|p| {
                    let first = p.message_ids.first()?;
                    ctx.channel_link.as_ref().map(|prefix| format!("{prefix}/{first}"))
                })
                .collect::<Vec<_>>(),
        ),
        Column::new("score".into(), posts.iter().map(|p| p.score).collect::<Vec<_>>()),
        Column::new("attempts".into(), posts.iter().map(|p| p.attempts).collect::<Vec<_>>()),
        Column::new("last_error".into(), posts.iter().map(|p| p.last_error.clone()).collect::<Vec<_>>()),
    ];
    DataFrame::new_infer_height(columns)
}

fn events(store: &Store, ctx: &SourceContext) -> Result<DataFrame, SourceError> {
    events_with(store, ctx, None).map_err(|err| SourceError::Polars("events", err))
}

/// The `events` table with only `columns` (all when `None`).
fn events_with(store: &Store, ctx: &SourceContext, columns: Option<&[PlSmallStr]>) -> PolarsResult<DataFrame> {
    let tables = store.event_tables(columns).map_err(|err| polars_err!(ComputeError: "{err}"))?;
    let mut whole: Option<DataFrame> = None;
    for mut table in tables {
        localize(&mut table, ctx)?;
        match whole.as_mut() {
            Some(frame) => {
                frame.vstack_mut_owned(table)?;
            }
            None => whole = Some(table),
        }
    }
    match whole {
        Some(frame) => Ok(frame),
        None => {
            let empty = empty("events").unwrap_or_default();
            match columns {
                Some(columns) => empty.select(columns.iter().cloned()),
                None => Ok(empty),
            }
        }
    }
}

/// Turns the log's Unix seconds in `at` into the admins' wall-clock date-time.
pub fn localize(table: &mut DataFrame, ctx: &SourceContext) -> PolarsResult<()> {
    let Ok(at) = table.column("at") else { return Ok(()) };
    // Offsets change rarely: the last one found is tried first.
    let last = std::cell::Cell::new((i64::MIN, i64::MIN, 0i64));
    let local = at.i64()?.apply_values(|secs| {
        let (from, to, offset) = last.get();
        if (from..to).contains(&secs) {
            return (secs + offset) * 1000;
        }
        let hour = secs.div_euclid(3600) * 3600;
        let offset = ctx.local_ms(hour) / 1000 - hour;
        if ctx.local_ms(hour + 3599) / 1000 - (hour + 3599) != offset {
            // The offset changes within this hour.
            return ctx.local_ms(secs);
        }
        last.set((hour, hour + 3600, offset));
        (secs + offset) * 1000
    });
    let local = local.into_series().cast(&datetime())?.with_name("at".into());
    table.replace("at", local.into())?;
    Ok(())
}

/// The `events` source as a scan that reads only the columns the pipeline uses. Polars runs it
/// in its in-memory engine (`collect`); its streaming engine does not take such scans.
struct EventScan {
    store: Store,
    context: SourceContext,
}

impl AnonymousScan for EventScan {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn scan(&self, args: AnonymousScanArgs) -> PolarsResult<DataFrame> {
        let frame = events_with(&self.store, &self.context, args.with_columns.as_deref())?;
        // Polars moves a leading `limit` into the scan and does not apply it again.
        Ok(match args.n_rows {
            Some(rows) => frame.head(Some(rows)),
            None => frame,
        })
    }

    fn schema(&self, _infer_schema_length: Option<usize>) -> PolarsResult<SchemaRef> {
        schema("events").map(Arc::new).ok_or_else(|| polars_err!(ComputeError: "no events schema"))
    }

    fn allows_projection_pushdown(&self) -> bool {
        true
    }
}

/// The `events` source as a lazy table read when the pipeline runs.
pub fn events_scan(store: &Store, context: &SourceContext) -> PolarsResult<LazyFrame> {
    let scan = EventScan { store: store.clone(), context: context.clone() };
    let schema = scan.schema(None)?;
    LazyFrame::anonymous_scan(
        Arc::new(scan),
        ScanArgsAnonymous { schema: Some(schema), name: "events", ..ScanArgsAnonymous::default() },
    )
}

/// Each click, with its post's format and its button's label and URL.
fn clicks(store: &Store, posts: PostsById, ctx: &SourceContext) -> Result<DataFrame, SourceError> {
    let clicks = store.clicks()?;
    let button = |post: u64, index: u8| posts.get(&post).and_then(|p| p.buttons.get(index as usize));
    let build = || {
        DataFrame::new_infer_height(vec![
            time_column("at", clicks.iter().map(|c| Some(ctx.local_ms(c.at))).collect())?,
            Column::new("post".into(), clicks.iter().map(|c| c.post).collect::<Vec<_>>()),
            Column::new("button".into(), clicks.iter().map(|c| c.button as u32).collect::<Vec<_>>()),
            Column::new(
                "label".into(),
                clicks.iter().map(|c| button(c.post, c.button).map(|b| b.label.as_str())).collect::<Vec<_>>(),
            ),
            Column::new(
                "url".into(),
                clicks.iter().map(|c| button(c.post, c.button).map(|b| b.url.as_str())).collect::<Vec<_>>(),
            ),
            Column::new(
                "format".into(),
                clicks.iter().map(|c| posts.get(&c.post).and_then(|p| p.format.as_deref())).collect::<Vec<_>>(),
            ),
            Column::new("user".into(), clicks.iter().map(|c| c.user).collect::<Vec<_>>()),
        ])
    };
    build().map_err(|err| SourceError::Polars("clicks", err))
}

/// The latest count of each reaction on each post, with the post's format.
fn reactions(store: &Store, posts: PostsById, ctx: &SourceContext) -> Result<DataFrame, SourceError> {
    let reactions = store.reactions()?;
    let build = || {
        DataFrame::new_infer_height(vec![
            Column::new("post".into(), reactions.iter().map(|r| r.post).collect::<Vec<_>>()),
            Column::new("reaction".into(), reactions.iter().map(|r| r.reaction.as_str()).collect::<Vec<_>>()),
            Column::new("count".into(), reactions.iter().map(|r| r.count).collect::<Vec<_>>()),
            time_column("at", reactions.iter().map(|r| Some(ctx.local_ms(r.at))).collect())?,
            Column::new(
                "format".into(),
                reactions.iter().map(|r| posts.get(&r.post).and_then(|p| p.format.as_deref())).collect::<Vec<_>>(),
            ),
        ])
    };
    build().map_err(|err| SourceError::Polars("reactions", err))
}

fn subscribers(store: &Store, ctx: &SourceContext) -> PolarsResult<DataFrame> {
    let counts = store.subscribers().map_err(|e| polars_err!(ComputeError: "{e}"))?;
    let at: Vec<Option<i64>> = counts.iter().map(|(at, _)| Some(ctx.local_ms(*at))).collect();
    let days: Vec<i32> = at.iter().map(|ms| ms.unwrap_or_default().div_euclid(86_400_000) as i32).collect();
    DataFrame::new_infer_height(vec![
        time_column("at", at)?,
        Column::new("date".into(), days).cast(&DataType::Date)?,
        Column::new("members".into(), counts.iter().map(|(_, members)| *members as i64).collect::<Vec<_>>()),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn localize_follows_the_offset_across_a_change_within_an_hour() {
        // Lord Howe Island moves from UTC+10:30 to UTC+11 at 2026-10-03 15:30 UTC (Unix
        // 1791041400), half way through an hour.
        let ctx = SourceContext { timezone: chrono_tz::Australia::Lord_Howe, channel_link: None };
        let change = 1_791_041_400;
        let secs: Vec<i64> = (-7300..7300).step_by(97).map(|d| change + d).collect();
        let mut table = DataFrame::new_infer_height(vec![Column::new("at".into(), secs.clone())]).unwrap();
        localize(&mut table, &ctx).unwrap();
        let local: Vec<i64> =
            table.column("at").unwrap().cast(&DataType::Int64).unwrap().i64().unwrap().into_no_null_iter().collect();
        let expected: Vec<i64> = secs.iter().map(|s| ctx.local_ms(*s)).collect();
        assert_eq!(local, expected);
        assert_eq!(local[0], (secs[0] + 37_800) * 1000, "UTC+10:30 before");
        assert_eq!(local.last().copied(), Some((secs[secs.len() - 1] + 39_600) * 1000), "UTC+11 after");
    }
}
