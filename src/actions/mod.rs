//! The action registry: named Rust actions with typed argument schemas that the config
//! compiler checks, and their implementations.

use serde_json::{Value, json};

use crate::config::Bundle;
use crate::config::bundle::{ActionErrorCode, ActionSchema, ArgKind, ArgSpec};
use crate::engine::BUILTIN_SESSION_CLEAR;
use crate::engine::event::Media;
use crate::store::{Post, PostStatus, StoreError, Turn};

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
            ArgSpec {
                name: "format",
                kind: ArgKind::Text,
                required: true,
                description: "the format id (its prompts, length and model settings)",
            },
            ArgSpec { name: "keywords", kind: ArgKind::Text, required: true, description: "the admin's keywords" },
            ArgSpec { name: "details", kind: ArgKind::Text, required: false, description: "optional extra details" },
            ArgSpec {
                name: "language",
                kind: ArgKind::Text,
                required: false,
                description: "the language to write in (default hy)",
            },
            ArgSpec {
                name: "limit",
                kind: ArgKind::Number,
                required: false,
                description: "the longest result in Telegram units (default the format's max_chars; 1024 for a caption)",
            },
        ],
    },
    ActionSchema {
        name: "ai.improve",
        description: "Rewrites a draft better, following the admin's instruction: the same shape as ai.generate.",
        args: &[
            ArgSpec {
                name: "format",
                kind: ArgKind::Text,
                required: true,
                description: "the format id (its prompts, length and model settings)",
            },
            ArgSpec { name: "text", kind: ArgKind::Text, required: true, description: "the post text (Telegram HTML)" },
            ArgSpec {
                name: "instruction",
                kind: ArgKind::Text,
                required: false,
                description: "what the admin wants changed",
            },
            ArgSpec {
                name: "limit",
                kind: ArgKind::Number,
                required: false,
                description: "the longest result in Telegram units (default the format's max_chars; 1024 for a caption)",
            },
        ],
    },
    ActionSchema {
        name: "ai.translate",
        description: "Translates a post (hy, ru, en...): the same shape as ai.generate plus `language`.",
        args: &[
            ArgSpec {
                name: "format",
                kind: ArgKind::Text,
                required: true,
                description: "the format id (its prompts, length and model settings)",
            },
            ArgSpec { name: "text", kind: ArgKind::Text, required: true, description: "the post text (Telegram HTML)" },
            ArgSpec { name: "language", kind: ArgKind::Text, required: true, description: "the target language code" },
            ArgSpec {
                name: "limit",
                kind: ArgKind::Number,
                required: false,
                description: "the longest result in Telegram units (default the format's max_chars; 1024 for a caption)",
            },
        ],
    },
    ActionSchema {
        name: "ai.analyze",
        description: "Scores a post: `{score (0-10), strengths, problems, suggestions, offline}`.",
        args: &[
            ArgSpec {
                name: "format",
                kind: ArgKind::Text,
                required: true,
                description: "the format id (its prompts, length and model settings)",
            },
            ArgSpec { name: "text", kind: ArgKind::Text, required: true, description: "the post text (Telegram HTML)" },
        ],
    },
    ActionSchema {
        name: "ai.shorten",
        description: "Shortens a post to a limit: the same shape as ai.generate.",
        args: &[
            ArgSpec {
                name: "format",
                kind: ArgKind::Text,
                required: true,
                description: "the format id (its prompts, length and model settings)",
            },
            ArgSpec { name: "text", kind: ArgKind::Text, required: true, description: "the post text (Telegram HTML)" },
            ArgSpec {
                name: "limit",
                kind: ArgKind::Number,
                required: false,
                description: "the longest result in Telegram units (default the format's max_chars; 1024 for a caption)",
            },
        ],
    },
    ActionSchema {
        name: "ai.suggest_cta",
        description: "Suggests call-to-action button labels: `{labels, offline}`.",
        args: &[
            ArgSpec {
                name: "format",
                kind: ArgKind::Text,
                required: true,
                description: "the format id (its prompts, length and model settings)",
            },
            ArgSpec { name: "text", kind: ArgKind::Text, required: true, description: "the post text (Telegram HTML)" },
        ],
    },
    ActionSchema {
        name: "draft.save",
        description: "Stores the post as a draft and returns `{id, status}`.",
        args: &[
            ArgSpec { name: "text", kind: ArgKind::Text, required: true, description: "the post text (Telegram HTML)" },
            ArgSpec { name: "format", kind: ArgKind::Text, required: false, description: "the format id" },
            ArgSpec { name: "media", kind: ArgKind::Media, required: false, description: "a media slot value" },
            ArgSpec { name: "keywords", kind: ArgKind::Text, required: false, description: "the keywords" },
            ArgSpec { name: "details", kind: ArgKind::Text, required: false, description: "the extra details" },
            ArgSpec {
                name: "desired_time",
                kind: ArgKind::Text,
                required: false,
                description: "when the admin wants it out, `YYYY-MM-DDTHH:MM`",
            },
            ArgSpec { name: "id", kind: ArgKind::Number, required: false, description: "the id of a draft to update" },
        ],
    },
    ActionSchema {
        name: "posts.list",
        description: "Lists posts, newest first, as `[{id, title, format, status, desired_time}]`.",
        args: &[
            ArgSpec {
                name: "status",
                kind: ArgKind::Text,
                required: false,
                description: "draft, scheduled, published or failed",
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
        description: "Loads one post by id.",
        args: &[ArgSpec { name: "id", kind: ArgKind::Number, required: true, description: "the post id" }],
    },
    ActionSchema {
        name: "post.delete",
        description: "Deletes a draft by id.",
        args: &[ArgSpec { name: "id", kind: ArgKind::Number, required: true, description: "the post id" }],
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
        "draft.save" => draft_save(ctx, args),
        "posts.list" => {
            let status = args.get("status").and_then(Value::as_str).unwrap_or("draft");
            let limit = args.get("limit").and_then(Value::as_u64).unwrap_or(50) as usize;
            let posts = ctx.store.posts()?;
            let listed: Vec<Value> = posts
                .iter()
                .filter(|p| status_name(p.status) == status)
                .take(limit)
                .map(|p| {
                    json!({
                        "id": p.id,
                        "title": title_of(&p.text),
                        "format": p.format,
                        "status": status_name(p.status),
                        "desired_time": p.desired_time,
                    })
                })
                .collect();
            Ok(Value::Array(listed))
        }
        "post.get" => {
            let id = id_arg(args)?;
            let post =
                ctx.store.post(id)?.ok_or_else(|| ActionError::new(ActionErrorCode::NotFound, format!("post {id}")))?;
            Ok(serde_json::to_value(post)?)
        }
        "post.delete" => {
            let id = id_arg(args)?;
            let post =
                ctx.store.post(id)?.ok_or_else(|| ActionError::new(ActionErrorCode::NotFound, format!("post {id}")))?;
            if post.status != PostStatus::Draft {
                let detail = format!("post {id} is {}", status_name(post.status));
                return Err(ActionError::new(ActionErrorCode::NotADraft, detail));
            }
            ctx.store.delete_post(id)?;
            Ok(json!({ "id": id, "deleted": true }))
        }
        other => Err(ActionError::new(ActionErrorCode::Unavailable, format!("action `{other}`"))),
    }
}

fn draft_save(ctx: &ActionContext<'_>, args: &Value) -> Result<Value, ActionError> {
    let text = str_arg(args, "text")?;
    if text.trim().is_empty() {
        return Err(ActionError::new(ActionErrorCode::EmptyText, "draft.save"));
    }
    let opt = |name: &str| args.get(name).and_then(Value::as_str).map(str::to_string).filter(|s| !s.is_empty());
    let media = match args.get("media") {
        None | Some(Value::Null) => None,
        Some(value) => Some(serde_json::from_value::<Media>(value.clone())?),
    };
    let existing = match args.get("id").and_then(Value::as_u64) {
        Some(id) => ctx.store.post(id)?,
        None => None,
    };
    let post = Post {
        id: existing.as_ref().map_or(0, |p| p.id),
        status: PostStatus::Draft,
        format: opt("format"),
        text: crate::engine::html::sanitize(text),
        media,
        keywords: opt("keywords"),
        details: opt("details"),
        desired_time: opt("desired_time"),
        created_by: existing.as_ref().map_or(ctx.user_id, |p| p.created_by),
        created_at: existing.as_ref().map_or(ctx.now, |p| p.created_at),
        updated_at: ctx.now,
    };
    let saved = ctx.store.save_post(post)?;
    Ok(json!({ "id": saved.id, "status": "draft" }))
}

fn str_arg<'v>(args: &'v Value, name: &str) -> Result<&'v str, ActionError> {
    args.get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| ActionError::new(ActionErrorCode::BadInput, format!("argument `{name}` is missing or not text")))
}

fn id_arg(args: &Value) -> Result<u64, ActionError> {
    match args.get("id") {
        Some(Value::Number(n)) => n.as_u64().or_else(|| n.as_f64().map(|f| f as u64)),
        Some(Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    }
    .ok_or_else(|| ActionError::new(ActionErrorCode::BadInput, "argument `id` is missing or not a post id"))
}

/// The lowercase name of a status, as flows and exports see it.
pub fn status_name(status: PostStatus) -> &'static str {
    match status {
        PostStatus::Draft => "draft",
        PostStatus::Scheduled => "scheduled",
        PostStatus::Publishing => "publishing",
        PostStatus::Published => "published",
        PostStatus::Failed => "failed",
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
