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
    let polars = |source: &'static str| move |err| SourceError::Polars(source, err);
    match name {
        "posts" => posts(&store.posts()?, ctx).map_err(polars("posts")),
        "events" => events(store, ctx),
        "clicks" => clicks(store, ctx),
        "reactions" => reactions(store, ctx),
        "subscribers" => subscribers(store, ctx).map_err(polars("subscribers")),
        _ => Err(SourceError::Polars("unknown", polars_err!(ComputeError: "no source `{name}`"))),
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
    let mut columns = EventColumns::with_capacity(store.event_count()? as usize);
    store.for_each_event(|event| columns.push(event, ctx))?;
    columns.finish().map_err(|err| SourceError::Polars("events", err))
}

/// The `events` table built row by row (from the store, or from events being archived).
pub struct EventColumns {
    seq: Vec<u64>,
    at: Vec<Option<i64>>,
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
    data: Vec<String>,
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

    pub fn push(&mut self, event: crate::store::LoggedEvent, ctx: &SourceContext) {
        self.seq.push(event.seq);
        self.at.push(Some(ctx.local_ms(event.at)));
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
        self.data.push(event.raw);
    }

    pub fn len(&self) -> usize {
        self.seq.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seq.is_empty()
    }

    pub fn finish(self) -> PolarsResult<DataFrame> {
        DataFrame::new_infer_height(vec![
            Column::new("seq".into(), self.seq),
            time_column("at", self.at)?,
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

/// A post's format and buttons, by id, for the sources that name posts.
fn post_facts(store: &Store) -> Result<std::collections::HashMap<u64, Post>, StoreError> {
    Ok(store.posts()?.into_iter().map(|p| (p.id, p)).collect())
}

fn clicks(store: &Store, ctx: &SourceContext) -> Result<DataFrame, SourceError> {
    let clicks = store.clicks()?;
    let posts = post_facts(store)?;
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
        ])
    };
    build().map_err(|err| SourceError::Polars("clicks", err))
}

fn reactions(store: &Store, ctx: &SourceContext) -> Result<DataFrame, SourceError> {
    let reactions = store.reactions()?;
    let posts = post_facts(store)?;
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
