//! The action registry: named Rust actions with typed argument schemas that the config
//! compiler checks, and their implementations.

pub mod posts;
pub mod reports;

use serde_json::Value;

use crate::config::Bundle;
use crate::config::bundle::{ActionErrorCode, ActionSchema, ArgKind, ArgSpec};
use crate::engine::BUILTIN_SESSION_CLEAR;
use crate::store::{StoreError, Turn};

/// The post an action works on.
const POST_ID: ArgSpec = ArgSpec { name: "id", kind: ArgKind::Number, required: true, description: "the post id" };
/// The format whose prompts, length and model settings an AI action uses.
const FORMAT: ArgSpec = ArgSpec {
    name: "format",
    kind: ArgKind::Text,
    required: true,
    description: "the format id (its prompts, length and model settings)",
};
const POST_TEXT: ArgSpec =
    ArgSpec { name: "text", kind: ArgKind::Text, required: true, description: "the post text (Telegram HTML)" };
const AI_LIMIT: ArgSpec = ArgSpec {
    name: "limit",
    kind: ArgKind::Number,
    required: false,
    description: "the longest result in Telegram units (default the format's max_chars; 1024 for a caption)",
};

/// A report's pipeline and the parameters a flow or job may give it (each optional; an empty
/// value means "no filter").
const REPORT_ARGS: [ArgSpec; 7] = [
    ArgSpec { name: "pipeline", kind: ArgKind::Text, required: true, description: "the pipeline id" },
    ArgSpec {
        name: "period", kind: ArgKind::Text, required: false, description: "today, week, last_month, 7d, all…"
    },
    ArgSpec { name: "from", kind: ArgKind::Text, required: false, description: "first day of a custom period" },
    ArgSpec { name: "to", kind: ArgKind::Text, required: false, description: "last day of a custom period" },
    ArgSpec { name: "format", kind: ArgKind::Text, required: false, description: "a post format id" },
    ArgSpec { name: "status", kind: ArgKind::Text, required: false, description: "a post status" },
    ArgSpec { name: "kind", kind: ArgKind::Text, required: false, description: "an event kind" },
];
const REPORT_FILE_ARGS: [ArgSpec; 8] = [
    REPORT_ARGS[0],
    REPORT_ARGS[1],
    REPORT_ARGS[2],
    REPORT_ARGS[3],
    REPORT_ARGS[4],
    REPORT_ARGS[5],
    REPORT_ARGS[6],
    ArgSpec { name: "as", kind: ArgKind::Text, required: false, description: "csv (default), json or parquet" },
];

/// Every action a flow may call.
pub const CATALOGUE: &[ActionSchema] = &[
    ActionSchema {
        name: BUILTIN_SESSION_CLEAR,
        description: "Clears the session's slots (built into the engine).",
        args: &[ArgSpec {
            name: "keep",
            kind: ArgKind::List,
            required: false,
            description: "a list of slot names to keep",
        }],
    },
    ActionSchema {
        name: "ai.generate",
        description: "Writes a post draft for a format from keywords: `{text, length, limit, fits, shortened, words, offline, model}`.",
        args: &[
            FORMAT,
            ArgSpec { name: "keywords", kind: ArgKind::Text, required: true, description: "the admin's keywords" },
            ArgSpec { name: "details", kind: ArgKind::Text, required: false, description: "optional extra details" },
            ArgSpec {
                name: "language",
                kind: ArgKind::Text,
                required: false,
                description: "the language to write in (default hy)",
            },
            AI_LIMIT,
        ],
    },
    ActionSchema {
        name: "ai.improve",
        description: "Rewrites a draft better, following the admin's instruction: the same shape as ai.generate.",
        args: &[
            FORMAT,
            POST_TEXT,
            ArgSpec {
                name: "instruction",
                kind: ArgKind::Text,
                required: false,
                description: "what the admin wants changed",
            },
            AI_LIMIT,
        ],
    },
    ActionSchema {
        name: "ai.translate",
        description: "Translates a post (hy, ru, en...): the same shape as ai.generate plus `language`.",
        args: &[
            FORMAT,
            POST_TEXT,
            ArgSpec { name: "language", kind: ArgKind::Text, required: true, description: "the target language code" },
            AI_LIMIT,
        ],
    },
    ActionSchema {
        name: "ai.analyze",
        description: "Scores a post: `{score (0-10), strengths, problems, suggestions, offline}`.",
        args: &[FORMAT, POST_TEXT],
    },
    ActionSchema {
        name: "ai.shorten",
        description: "Shortens a post to a limit: the same shape as ai.generate.",
        args: &[FORMAT, POST_TEXT, AI_LIMIT],
    },
    ActionSchema {
        name: "ai.suggest_cta",
        description: "Suggests call-to-action button labels: `{labels, offline}`.",
        args: &[FORMAT, POST_TEXT],
    },
    ActionSchema {
        name: "draft.save",
        description: "Stores a new draft, or updates a draft or scheduled post (`id`), and returns `{id, status}`; a text change keeps the old text in the post's history.",
        args: &[
            POST_TEXT,
            ArgSpec { name: "format", kind: ArgKind::Text, required: false, description: "the format id" },
            ArgSpec { name: "media", kind: ArgKind::Media, required: false, description: "a media slot value" },
            ArgSpec { name: "keywords", kind: ArgKind::Text, required: false, description: "the keywords" },
            ArgSpec { name: "details", kind: ArgKind::Text, required: false, description: "the extra details" },
            ArgSpec { name: "language", kind: ArgKind::Text, required: false, description: "the post's language code" },
            ArgSpec { name: "title", kind: ArgKind::Text, required: false, description: "a name for lists" },
            ArgSpec {
                name: "desired_time",
                kind: ArgKind::Text,
                required: false,
                description: "when the admin wants it out, `YYYY-MM-DDTHH:MM` (a wish, not a schedule)",
            },
            ArgSpec {
                name: "buttons",
                kind: ArgKind::List,
                required: false,
                description: "call-to-action buttons `[{label, url}]` (addresses are checked)",
            },
            ArgSpec {
                name: "layout",
                kind: ArgKind::Text,
                required: false,
                description: "caption, separate or link_preview (media with a long text)",
            },
            ArgSpec {
                name: "link_url",
                kind: ArgKind::Text,
                required: false,
                description: "the page shown large above the text in the link_preview layout",
            },
            ArgSpec {
                name: "silent",
                kind: ArgKind::Text,
                required: false,
                description: "true: no notification sound",
            },
            ArgSpec { name: "pin", kind: ArgKind::Text, required: false, description: "true: pin it in the channel" },
            ArgSpec {
                name: "link_preview",
                kind: ArgKind::Text,
                required: false,
                description: "true: show a preview of the first link",
            },
            ArgSpec { name: "score", kind: ArgKind::Number, required: false, description: "the AI's quality score" },
            ArgSpec { name: "id", kind: ArgKind::Number, required: false, description: "the id of a post to update" },
        ],
    },
    ActionSchema {
        name: "post.schedule",
        description: "Schedules a post for a date and time in SCHEDULER_TIMEZONE: `{id, status, publish_at, local, adjusted (gap|overlap|null), note}`; a past time fails with past_time.",
        args: &[
            POST_ID,
            ArgSpec { name: "date", kind: ArgKind::Text, required: true, description: "`YYYY-MM-DD`" },
            ArgSpec { name: "time", kind: ArgKind::Text, required: true, description: "`HH:MM`" },
        ],
    },
    ActionSchema {
        name: "post.publish",
        description: "Queues a post to be published at once: `{id, status}`; the admin is told when it is out.",
        args: &[POST_ID],
    },
    ActionSchema {
        name: "post.cancel",
        description: "Calls off a scheduled or failed post: `{id, status}`.",
        args: &[POST_ID],
    },
    ActionSchema {
        name: "post.resolve",
        description: "Settles a post left publishing or failed: `choice` mark_published, publish_again or draft.",
        args: &[
            POST_ID,
            ArgSpec {
                name: "choice",
                kind: ArgKind::Text,
                required: true,
                description: "mark_published, publish_again or draft",
            },
        ],
    },
    ActionSchema {
        name: "post.duplicate",
        description: "Copies a post as a new draft: `{id, status}`.",
        args: &[POST_ID],
    },
    ActionSchema {
        name: "posts.list",
        description: "Lists posts, newest first (scheduled: soonest first), as `[{id, title, format, status, desired_time, publish_local, published_local, last_error, media}]`.",
        args: &[
            ArgSpec {
                name: "status",
                kind: ArgKind::Text,
                required: false,
                description: "draft, scheduled, publishing, published, failed, cancelled, deleted, or several comma-separated",
            },
            ArgSpec {
                name: "limit",
                kind: ArgKind::Number,
                required: false,
                description: "at most this many (default 50)",
            },
        ],
    },
    ActionSchema {
        name: "post.get",
        description: "Loads one post by id (with `publish_local` and `published_local`).",
        args: &[POST_ID],
    },
    ActionSchema {
        name: "post.channel_edit",
        description: "Replaces the text of a published post in the channel (the publisher does it and tells the admin): `{id, queued}`; fails with no_fit when the new text would change the post's layout.",
        args: &[
            POST_ID,
            ArgSpec { name: "text", kind: ArgKind::Text, required: true, description: "the new text (Telegram HTML)" },
        ],
    },
    ActionSchema {
        name: "post.channel_delete",
        description: "Deletes a published post from the channel (the publisher does it and tells the admin): `{id, queued}`; fails with too_old after 48 hours.",
        args: &[POST_ID],
    },
    ActionSchema {
        name: "post.repeat",
        description: "Publishes a copy of a post now (an evergreen post repeated): `{id, from, status}`.",
        args: &[ArgSpec { name: "id", kind: ArgKind::Number, required: true, description: "the post to repeat" }],
    },
    ActionSchema {
        name: "drafts.archive",
        description: "Archives (cancels, keeping the reason) drafts untouched for a number of days: `{archived}`.",
        args: &[ArgSpec {
            name: "older_than_days",
            kind: ArgKind::Number,
            required: false,
            description: "days without a change (default 30)",
        }],
    },
    ActionSchema {
        name: "posts.cleanup_failed",
        description: "Clears failed posts older than a number of days from the troubles list (cancelled, reason kept): `{cleaned}`.",
        args: &[ArgSpec {
            name: "older_than_days",
            kind: ArgKind::Number,
            required: false,
            description: "days since the failure (default 7)",
        }],
    },
    ActionSchema {
        name: "report.show",
        description: "Runs an analytics pipeline: `{title, table (Telegram HTML), rows, empty, pipeline, period, from, to, ...}`.",
        args: &REPORT_ARGS,
    },
    ActionSchema {
        name: "report.export",
        description: "Runs an analytics pipeline into a file for a step's `media:`: `{media, file_name, bytes, rows, title, ...}`.",
        args: &REPORT_FILE_ARGS,
    },
    ActionSchema {
        name: "report.chart",
        description: "Draws an analytics pipeline's chart as a PNG for a step's `media:` (a photo): `{media, file_name, rows, title, ...}`.",
        args: &REPORT_ARGS,
    },
    ActionSchema {
        name: "events.archive",
        description: "Moves events older than a number of days from the store into a Parquet file under exports/archive/: `{archived, file}`.",
        args: &[ArgSpec {
            name: "older_than_days",
            kind: ArgKind::Number,
            required: true,
            description: "archive events older than this many days",
        }],
    },
    ActionSchema {
        name: "clicks.forget_readers",
        description: "Drops the readers' Telegram ids (deep-link clicks) from clicks older than a number of days; the clicks stay counted: `{forgotten}`.",
        args: &[ArgSpec {
            name: "older_than_days",
            kind: ArgKind::Number,
            required: true,
            description: "forget who clicked longer ago than this many days",
        }],
    },
    ActionSchema {
        name: crate::scheduler::jobs::COUNT_MEMBERS,
        description: "Reads the channel's member count for the subscribers report (jobs only: it needs Telegram): `{members}`.",
        args: &[],
    },
    ActionSchema {
        name: "scheduler.status",
        description: "The scheduler's state: `{queue, next: [{id, title, local, overdue}], counts, failed, last_published}`.",
        args: &[ArgSpec {
            name: "limit",
            kind: ArgKind::Number,
            required: false,
            description: "how many upcoming posts to list (default 5)",
        }],
    },
    ActionSchema {
        name: "post.delete",
        description: "Deletes a post that never reached the channel (draft, cancelled or failed).",
        args: &[POST_ID],
    },
];

/// What an action may use.
pub struct ActionContext<'a> {
    pub bundle: &'a Bundle,
    /// The event's store transaction: what an action writes commits with the session.
    pub store: &'a Turn,
    pub chat_id: i64,
    pub user_id: i64,
    pub request_id: u64,
    pub now: i64,
}

/// Why an action failed: a code the menu words for the admin, and a detail for the logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionError {
    pub code: ActionErrorCode,
    pub detail: String,
}

impl ActionError {
    pub fn new(code: ActionErrorCode, detail: impl Into<String>) -> Self {
        ActionError { code, detail: detail.into() }
    }
}

impl From<StoreError> for ActionError {
    fn from(err: StoreError) -> Self {
        ActionError::new(ActionErrorCode::StoreFailed, err.to_string())
    }
}

impl From<serde_json::Error> for ActionError {
    fn from(err: serde_json::Error) -> Self {
        ActionError::new(ActionErrorCode::BadInput, err.to_string())
    }
}

/// Runs an action by name.
pub fn run(ctx: &ActionContext<'_>, name: &str, args: &Value) -> Result<Value, ActionError> {
    match name {
        "draft.save" => posts::draft_save(ctx, args),
        "post.schedule" => posts::schedule(ctx, args),
        "post.publish" => posts::publish_now(ctx, args),
        "post.cancel" => posts::cancel(ctx, args),
        "post.resolve" => posts::resolve(ctx, args),
        "post.duplicate" => posts::duplicate(ctx, args),
        "posts.list" => posts::list(ctx, args),
        "post.get" => posts::get(ctx, args),
        "post.delete" => posts::delete(ctx, args),
        "post.repeat" => posts::repeat(ctx, args),
        "post.channel_edit" => posts::channel_edit(ctx, args),
        "post.channel_delete" => posts::channel_delete(ctx, args),
        "drafts.archive" => posts::archive_drafts(ctx, args),
        "posts.cleanup_failed" => posts::cleanup_failed(ctx, args),
        "scheduler.status" => posts::scheduler_status(ctx, args),
        "report.show" => reports::show(ctx, args),
        crate::scheduler::jobs::COUNT_MEMBERS => Err(ActionError::new(
            ActionErrorCode::Unavailable,
            "channel.count_members runs from a recurring job (it needs Telegram)",
        )),
        "report.export" => reports::export(ctx, args),
        "report.chart" => reports::chart(ctx, args),
        "events.archive" => reports::archive_events(ctx, args),
        "clicks.forget_readers" => reports::forget_click_readers(ctx, args),
        other => Err(ActionError::new(ActionErrorCode::Unavailable, format!("action `{other}`"))),
    }
}

fn str_arg<'v>(args: &'v Value, name: &str) -> Result<&'v str, ActionError> {
    args.get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| ActionError::new(ActionErrorCode::BadInput, format!("argument `{name}` is missing or not text")))
}

fn id_arg(args: &Value) -> Result<u64, ActionError> {
    args.get("id")
        .and_then(as_id)
        .ok_or_else(|| ActionError::new(ActionErrorCode::BadInput, "argument `id` is missing or not a post id"))
}

/// A post id given as a number or as text (templates render numbers as text); ids start at 1.
fn as_id(value: &Value) -> Option<u64> {
    match value {
        Value::Number(n) => n.as_u64().or_else(|| n.as_f64().filter(|f| *f >= 1.0).map(|f| f as u64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .filter(|id| *id > 0)
}
