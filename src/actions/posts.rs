//! The post actions: saving drafts, scheduling, publishing now, cancelling, resolving posts the
//! publisher could not finish, listing and the scheduler's status. Each runs inside the event's
//! store transaction, so a status change commits with the conversation or not at all.

use chrono::{DateTime, TimeZone, Utc};
use serde_json::{Value, json};

use super::{ActionContext, ActionError, id_arg, str_arg};
use crate::config::bundle::ActionErrorCode;
use crate::engine::event::Media;
use crate::engine::post_view::{self, Layout, LinkButton};
use crate::engine::{parse_date, parse_time};
use crate::scheduler::local_time::{self, Refused, Resolved};
use crate::store::{ChannelOp, Post, PostStatus};

/// Telegram lets a bot delete a channel message for 48 hours; a little is kept back for the
/// time the publisher takes to get to it.
pub const DELETE_WINDOW_SECS: i64 = 48 * 3600 - 300;

/// Saves a new draft, or updates a draft or a scheduled post (keeping its status and time).
pub fn draft_save(ctx: &ActionContext<'_>, args: &Value) -> Result<Value, ActionError> {
    let text = str_arg(args, "text")?;
    if text.trim().is_empty() {
        return Err(ActionError::new(ActionErrorCode::EmptyText, "draft.save"));
    }
    let existing = match args.get("id").and_then(super::as_id) {
        Some(id) => Some(load(ctx, id)?),
        None => None,
    };
    let mut post = match existing {
        Some(post) => {
            if !post.status.not_yet_out() {
                return Err(wrong_status(&post, "edited as a draft"));
            }
            post
        }
        None => Post::draft(String::new(), ctx.user_id, ctx.now),
    };
    let text = crate::engine::html::sanitize(text);
    let created = post.id == 0;
    if created {
        post.text = text;
    } else {
        post.revise(text, ctx.user_id, ctx.now);
    }
    let opt = |name: &str| args.get(name).and_then(Value::as_str).map(str::to_string).filter(|s| !s.is_empty());
    if args.get("format").is_some() {
        post.format = opt("format");
    }
    if let Some(media) = args.get("media") {
        post.media = match media {
            Value::Null => None,
            Value::String(s) if s.is_empty() || s == "none" => None,
            value => Some(serde_json::from_value::<Media>(value.clone())?),
        };
    }
    for (name, field) in
        [("keywords", &mut post.keywords), ("details", &mut post.details), ("language", &mut post.language)]
    {
        if args.get(name).is_some() {
            *field = opt(name);
        }
    }
    if args.get("desired_time").is_some() {
        post.desired_time = opt("desired_time");
    }
    if let Some(title) = opt("title") {
        post.title = title;
    }
    if let Some(buttons) = args.get("buttons") {
        post.buttons = buttons_arg(buttons)?;
    }
    if let Some(layout) = opt("layout") {
        post.options.layout = match layout.as_str() {
            "caption" => Layout::Caption,
            "separate" => Layout::Separate,
            "link_preview" => Layout::LinkPreview,
            other => return Err(ActionError::new(ActionErrorCode::BadInput, format!("unknown layout `{other}`"))),
        };
    }
    if args.get("link_url").is_some() {
        post.options.link_url = match opt("link_url") {
            None => None,
            Some(url) => Some(
                post_view::check_url(&url)
                    .ok_or_else(|| ActionError::new(ActionErrorCode::BadButton, format!("link `{url}`")))?,
            ),
        };
    }
    for (name, field) in [
        ("silent", &mut post.options.silent),
        ("pin", &mut post.options.pin),
        ("link_preview", &mut post.options.link_preview),
    ] {
        if let Some(value) = args.get(name).and_then(flag) {
            *field = value;
        }
    }
    if let Some(score) = args.get("score").and_then(number) {
        post.score = Some(score);
    }
    post.updated_at = ctx.now;
    let saved = ctx.store.save_post(post)?;
    ctx.store.record_event(
        if created { "post_created" } else { "post_saved" },
        ctx.now,
        &json!({ "post": saved.id, "user": ctx.user_id, "format": saved.format }),
    )?;
    Ok(json!({ "id": saved.id, "status": saved.status.name() }))
}

/// Schedules a post for a date and time on the scheduler's wall clock.
pub fn schedule(ctx: &ActionContext<'_>, args: &Value) -> Result<Value, ActionError> {
    let mut post = load(ctx, id_arg(args)?)?;
    if !post.status.not_yet_out() {
        return Err(wrong_status(&post, "scheduled"));
    }
    let date = parse_date(str_arg(args, "date")?)
        .ok_or_else(|| ActionError::new(ActionErrorCode::BadInput, "argument `date` is not a date"))?;
    let time = parse_time(str_arg(args, "time")?)
        .ok_or_else(|| ActionError::new(ActionErrorCode::BadInput, "argument `time` is not a time"))?;
    let zone = ctx.bundle.timezone;
    let now = Utc.timestamp_opt(ctx.now, 0).single().unwrap_or_default();
    let resolved = local_time::resolve_future(zone, date, time, now).map_err(|refused| match refused {
        Refused::Past => ActionError::new(ActionErrorCode::PastTime, format!("{date} {time} has passed in {zone}")),
        Refused::Unresolvable => {
            ActionError::new(ActionErrorCode::BadInput, format!("{date} {time} does not exist in {zone}"))
        }
    })?;
    let at = resolved.at();
    let rescheduled = post.status == PostStatus::Scheduled;
    post.status = PostStatus::Scheduled;
    post.publish_at = Some(at.timestamp());
    post.queued_by = Some(ctx.user_id).filter(|id| *id != 0);
    post.last_error = None;
    post.attempts = 0;
    post.updated_at = ctx.now;
    let saved = ctx.store.save_post(post)?;
    let kind = if rescheduled { "post_rescheduled" } else { "post_scheduled" };
    ctx.store.record_event(
        kind,
        ctx.now,
        &json!({ "post": saved.id, "user": ctx.user_id, "publish_at": at.timestamp() }),
    )?;
    let (adjusted, note) = match resolved {
        Resolved::Exact(_) => (Value::Null, Value::Null),
        Resolved::SkippedForward { shown_as, .. } => (json!("gap"), json!(shown_as.format("%H:%M").to_string())),
        Resolved::Ambiguous { later, .. } => (json!("overlap"), json!(local(zone, later.timestamp()))),
    };
    Ok(json!({
        "id": saved.id,
        "status": "scheduled",
        "publish_at": at.timestamp(),
        "local": local(zone, at.timestamp()),
        "adjusted": adjusted,
        "note": note,
    }))
}

/// Puts a post first in the queue: the scheduler publishes it at once.
pub fn publish_now(ctx: &ActionContext<'_>, args: &Value) -> Result<Value, ActionError> {
    let mut post = load(ctx, id_arg(args)?)?;
    if !post.status.not_yet_out() {
        return Err(wrong_status(&post, "published"));
    }
    post.status = PostStatus::Scheduled;
    post.publish_at = Some(ctx.now);
    post.queued_by = Some(ctx.user_id).filter(|id| *id != 0);
    post.last_error = None;
    post.attempts = 0;
    post.updated_at = ctx.now;
    let saved = ctx.store.save_post(post)?;
    ctx.store.record_event("post_queued", ctx.now, &json!({ "post": saved.id, "user": ctx.user_id }))?;
    Ok(json!({ "id": saved.id, "status": "scheduled", "publish_at": ctx.now }))
}

/// Calls off a scheduled (or failed) post; it can be scheduled again later.
pub fn cancel(ctx: &ActionContext<'_>, args: &Value) -> Result<Value, ActionError> {
    let mut post = load(ctx, id_arg(args)?)?;
    if !matches!(post.status, PostStatus::Scheduled | PostStatus::Failed) {
        return Err(wrong_status(&post, "cancelled"));
    }
    post.status = PostStatus::Cancelled;
    post.updated_at = ctx.now;
    let saved = ctx.store.save_post(post)?;
    ctx.store.record_event("post_cancelled", ctx.now, &json!({ "post": saved.id, "user": ctx.user_id }))?;
    Ok(json!({ "id": saved.id, "status": "cancelled" }))
}

/// Settles a post the publisher could not finish (it was being sent when the bot stopped):
/// `mark_published` (the admin saw it in the channel), `publish_again` or `draft`.
pub fn resolve(ctx: &ActionContext<'_>, args: &Value) -> Result<Value, ActionError> {
    let mut post = load(ctx, id_arg(args)?)?;
    let choice = str_arg(args, "choice")?;
    if !matches!(post.status, PostStatus::Publishing | PostStatus::Failed) {
        return Err(wrong_status(&post, "settled"));
    }
    // Claimed by the publisher that runs now: it is being sent this moment, not left behind.
    if post.status == PostStatus::Publishing
        && post.claimed_by_run.is_some()
        && post.claimed_by_run == ctx.store.live_run()?
    {
        return Err(ActionError::new(
            ActionErrorCode::WrongStatus,
            format!("post {} is being sent right now", post.id),
        ));
    }
    match choice {
        "mark_published" => {
            post.status = PostStatus::Published;
            post.published_at = Some(ctx.now);
        }
        // Messages recorded as sent are in the channel: the publisher goes on after them.
        "publish_again" => {
            post.status = PostStatus::Scheduled;
            post.publish_at = Some(ctx.now);
            post.queued_by = Some(ctx.user_id).filter(|id| *id != 0);
            post.attempts = 0;
        }
        "draft" => {
            post.status = PostStatus::Draft;
            post.publish_at = None;
            post.message_ids.clear();
            post.parts_sent = 0;
        }
        other => return Err(ActionError::new(ActionErrorCode::BadInput, format!("unknown choice `{other}`"))),
    }
    post.last_error = None;
    post.updated_at = ctx.now;
    let saved = ctx.store.save_post(post)?;
    ctx.store.record_event(
        "post_resolved",
        ctx.now,
        &json!({ "post": saved.id, "user": ctx.user_id, "choice": choice }),
    )?;
    Ok(json!({ "id": saved.id, "status": saved.status.name() }))
}

/// Copies a post as a new draft.
pub fn duplicate(ctx: &ActionContext<'_>, args: &Value) -> Result<Value, ActionError> {
    let original = load(ctx, id_arg(args)?)?;
    let mut copy = Post::draft(original.text.clone(), ctx.user_id, ctx.now);
    copy.title = original.title.clone();
    copy.format = original.format.clone();
    copy.media = original.media.clone();
    copy.keywords = original.keywords.clone();
    copy.details = original.details.clone();
    copy.language = original.language.clone();
    copy.buttons = original.buttons.clone();
    copy.options = original.options.clone();
    let saved = ctx.store.save_post(copy)?;
    ctx.store.record_event(
        "post_duplicated",
        ctx.now,
        &json!({ "post": saved.id, "from": original.id, "user": ctx.user_id }),
    )?;
    Ok(json!({ "id": saved.id, "status": "draft" }))
}

/// Deletes a post that never reached the channel (draft, cancelled or failed).
pub fn delete(ctx: &ActionContext<'_>, args: &Value) -> Result<Value, ActionError> {
    let post = load(ctx, id_arg(args)?)?;
    if !matches!(post.status, PostStatus::Draft | PostStatus::Cancelled | PostStatus::Failed) {
        let detail = format!("post {} is {}", post.id, post.status.name());
        return Err(ActionError::new(ActionErrorCode::NotADraft, detail));
    }
    ctx.store.delete_post(post.id)?;
    ctx.store.record_event("post_deleted", ctx.now, &json!({ "post": post.id, "user": ctx.user_id }))?;
    Ok(json!({ "id": post.id, "deleted": true }))
}

/// Lists posts with a status (or several, comma-separated), newest first; scheduled posts
/// earliest first.
pub fn list(ctx: &ActionContext<'_>, args: &Value) -> Result<Value, ActionError> {
    let wanted = args.get("status").and_then(Value::as_str).unwrap_or("draft");
    let limit = args.get("limit").and_then(number).map_or(50, |n| n.max(0.0) as u64);
    let mut listed = Vec::new();
    for name in wanted.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let status = PostStatus::from_name(name)
            .ok_or_else(|| ActionError::new(ActionErrorCode::BadInput, format!("unknown status `{name}`")))?;
        let page = if status == PostStatus::Scheduled {
            // Soonest first, from the due index.
            let mut posts = Vec::new();
            for (_, id) in ctx.store.due(i64::MAX, limit as usize)? {
                posts.extend(ctx.store.post(id)?);
            }
            posts
        } else {
            ctx.store.posts_with_status(status, 0, limit)?.posts
        };
        listed.extend(page.iter().map(|post| summary(ctx, post)));
    }
    listed.truncate(limit as usize);
    Ok(Value::Array(listed))
}

/// One post, with its times on the scheduler's wall clock.
pub fn get(ctx: &ActionContext<'_>, args: &Value) -> Result<Value, ActionError> {
    let post = load(ctx, id_arg(args)?)?;
    let mut value = serde_json::to_value(&post)?;
    value["status"] = json!(post.status.name());
    value["title"] = json!(post.display_title());
    value["publish_local"] = post.publish_at.map_or(Value::Null, |at| json!(local(ctx.bundle.timezone, at)));
    value["deletable"] = json!(
        post.status == PostStatus::Published && post.published_at.is_some_and(|at| ctx.now - at <= DELETE_WINDOW_SECS)
    );
    value["published_local"] = post.published_at.map_or(Value::Null, |at| json!(local(ctx.bundle.timezone, at)));
    Ok(value)
}

fn summary(ctx: &ActionContext<'_>, post: &Post) -> Value {
    json!({
        "id": post.id,
        "title": post.display_title(),
        "format": post.format,
        "status": post.status.name(),
        "desired_time": post.desired_time,
        "publish_local": post.publish_at.map(|at| local(ctx.bundle.timezone, at)),
        "published_local": post.published_at.map(|at| local(ctx.bundle.timezone, at)),
        "last_error": post.last_error,
        "media": post.media.is_some(),
    })
}

/// `YYYY-MM-DD HH:MM` on the wall clock of `zone`.
pub fn local(zone: chrono_tz::Tz, at: i64) -> String {
    DateTime::<Utc>::from_timestamp(at, 0).unwrap_or_default().with_timezone(&zone).format("%Y-%m-%d %H:%M").to_string()
}

fn load(ctx: &ActionContext<'_>, id: u64) -> Result<Post, ActionError> {
    ctx.store.post(id)?.ok_or_else(|| ActionError::new(ActionErrorCode::NotFound, format!("post {id}")))
}

fn wrong_status(post: &Post, wanted: &str) -> ActionError {
    ActionError::new(
        ActionErrorCode::WrongStatus,
        format!("post {} is {} and cannot be {wanted}", post.id, post.status.name()),
    )
}

fn flag(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(b) => Some(*b),
        Value::String(s) => match s.trim() {
            "true" | "yes" | "1" => Some(true),
            "false" | "no" | "0" | "" => Some(false),
            _ => None,
        },
        Value::Number(n) => Some(n.as_f64() != Some(0.0)),
        _ => None,
    }
}

fn number(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Buttons given as `[{label, url}]`, each checked as a button an admin typed would be.
fn buttons_arg(value: &Value) -> Result<Vec<LinkButton>, ActionError> {
    let items = match value {
        Value::Null => return Ok(Vec::new()),
        Value::String(s) if s.is_empty() => return Ok(Vec::new()),
        Value::Array(items) => items,
        _ => return Err(ActionError::new(ActionErrorCode::BadInput, "argument `buttons` is not a list")),
    };
    items
        .iter()
        .map(|item| {
            let label = item.get("label").and_then(Value::as_str).unwrap_or_default();
            let url = item.get("url").and_then(Value::as_str).unwrap_or_default();
            post_view::parse_link_button(&format!("{label} {url}"))
                .map_err(|problem| ActionError::new(ActionErrorCode::BadButton, format!("{label}: {}", problem.key())))
        })
        .collect()
}

/// Replaces the text of a published post in the channel (queued for the publisher, which tells
/// the admin when it is done). The new text must keep the post's layout: the same messages, a
/// caption still within 1024.
pub fn channel_edit(ctx: &ActionContext<'_>, args: &Value) -> Result<Value, ActionError> {
    let post = load(ctx, id_arg(args)?)?;
    if post.status != PostStatus::Published {
        return Err(wrong_status(&post, "edited in the channel"));
    }
    let text = crate::engine::html::sanitize(str_arg(args, "text")?);
    if crate::engine::html::to_plain_text(&text, false).trim().is_empty() {
        return Err(ActionError::new(ActionErrorCode::EmptyText, "post.channel_edit"));
    }
    let shape = |content: &post_view::PostContent| -> Vec<(bool, usize)> {
        crate::engine::channel_messages(ctx.bundle, content)
            .iter()
            .map(|m| (m.text.is_empty(), m.media.as_ref().map_or(0, |media| media.files().count())))
            .collect()
    };
    let mut edited = post.content();
    edited.text = text.clone();
    if shape(&edited) != shape(&post.content()) {
        let detail = format!("post {}: the new text would change the published post's messages", post.id);
        return Err(ActionError::new(ActionErrorCode::NoFit, detail));
    }
    ctx.store.queue_channel_op(post.id, &ChannelOp::Edit { text, by: ctx.user_id })?;
    Ok(json!({ "id": post.id, "queued": "edit" }))
}

/// Deletes a published post from the channel (queued for the publisher); Telegram allows it for
/// 48 hours after publishing.
pub fn channel_delete(ctx: &ActionContext<'_>, args: &Value) -> Result<Value, ActionError> {
    let post = load(ctx, id_arg(args)?)?;
    if post.status != PostStatus::Published {
        return Err(wrong_status(&post, "deleted from the channel"));
    }
    if post.published_at.is_some_and(|at| ctx.now - at > DELETE_WINDOW_SECS) {
        return Err(ActionError::new(
            ActionErrorCode::TooOld,
            format!("post {} was published over 48 hours ago", post.id),
        ));
    }
    ctx.store.queue_channel_op(post.id, &ChannelOp::Delete { by: ctx.user_id })?;
    Ok(json!({ "id": post.id, "queued": "delete" }))
}

/// Drafts nobody touched for `older_than_days` (default 30) are archived: cancelled, with the
/// reason kept. `{archived}`.
pub fn archive_drafts(ctx: &ActionContext<'_>, args: &Value) -> Result<Value, ActionError> {
    let days = args.get("older_than_days").and_then(number).unwrap_or(30.0).max(0.0);
    let before = ctx.now - (days * 86_400.0) as i64;
    let reason = format!("archived: untouched for {days} days");
    let archived = retire(ctx, PostStatus::Draft, before, &reason)?;
    ctx.store.record_event("drafts_archived", ctx.now, &json!({ "count": archived, "older_than_days": days }))?;
    Ok(json!({ "archived": archived }))
}

/// Failed posts older than `older_than_days` (default 7) are cleared from the queue of
/// troubles: cancelled, with the reason kept. `{cleaned}`.
pub fn cleanup_failed(ctx: &ActionContext<'_>, args: &Value) -> Result<Value, ActionError> {
    let days = args.get("older_than_days").and_then(number).unwrap_or(7.0).max(0.0);
    let before = ctx.now - (days * 86_400.0) as i64;
    let cleaned = retire(ctx, PostStatus::Failed, before, "cleaned up after failing")?;
    ctx.store.record_event("failed_cleaned", ctx.now, &json!({ "count": cleaned, "older_than_days": days }))?;
    Ok(json!({ "cleaned": cleaned }))
}

/// Cancels the posts of `status` last changed before `before`.
fn retire(ctx: &ActionContext<'_>, status: PostStatus, before: i64, reason: &str) -> Result<u64, ActionError> {
    let posts = ctx.store.posts_with_status(status, 0, u64::MAX)?.posts;
    let mut count = 0;
    for mut post in posts.into_iter().filter(|p| p.updated_at < before) {
        post.status = PostStatus::Cancelled;
        post.last_error = Some(reason.to_string());
        post.updated_at = ctx.now;
        ctx.store.save_post(post)?;
        count += 1;
    }
    Ok(count)
}

/// Publishes a copy of a post now (an evergreen post repeated): `{id, from}`.
pub fn repeat(ctx: &ActionContext<'_>, args: &Value) -> Result<Value, ActionError> {
    let copy = duplicate(ctx, args)?;
    let id = copy["id"].as_u64().unwrap_or_default();
    publish_now(ctx, &json!({ "id": id }))?;
    Ok(json!({ "id": id, "from": id_arg(args)?, "status": "scheduled" }))
}

/// What the scheduler holds: `{queue, next: [{id, title, local}], counts: {status: n},
/// last_published, failed}`.
pub fn scheduler_status(ctx: &ActionContext<'_>, args: &Value) -> Result<Value, ActionError> {
    let show = args.get("limit").and_then(number).map_or(5, |n| n.max(0.0) as usize);
    let next: Vec<Value> = ctx
        .store
        .due(i64::MAX, show)?
        .into_iter()
        .map(|(at, id)| {
            let title = ctx.store.post(id).ok().flatten().map(|p| p.display_title()).unwrap_or_default();
            json!({ "id": id, "title": title, "local": local(ctx.bundle.timezone, at), "overdue": at <= ctx.now })
        })
        .collect();
    let counts: serde_json::Map<String, Value> =
        ctx.store.status_counts()?.into_iter().map(|(status, n)| (status.name().to_string(), json!(n))).collect();
    let recent = ctx.store.posts_with_status(PostStatus::Published, 0, 20)?.posts;
    let last = recent.iter().filter_map(|p| p.published_at).max();
    Ok(json!({
        "queue": counts["scheduled"],
        "next": next,
        "counts": counts,
        "failed": counts["failed"],
        "last_published": last.map(|at| local(ctx.bundle.timezone, at)),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    fn bundle_in(zone: chrono_tz::Tz) -> crate::config::Bundle {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        crate::config::load(root, crate::actions::CATALOGUE, zone).result.unwrap_or_else(|_| panic!("shipped config"))
    }

    fn schedule_at(
        bundle: &crate::config::Bundle,
        store: &Store,
        id: u64,
        date: &str,
        time: &str,
        now: i64,
    ) -> Result<Value, ActionError> {
        let turn = store.begin_turn().unwrap();
        let ctx = ActionContext { bundle, store: &turn, chat_id: 1, user_id: 1, request_id: 0, now };
        let result = schedule(&ctx, &json!({ "id": id, "date": date, "time": time }));
        turn.commit().unwrap();
        result
    }

    #[test]
    fn scheduling_across_daylight_saving_changes_is_explicit_and_the_past_is_refused() {
        let bundle = bundle_in(chrono_tz::Europe::Berlin);
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb")).unwrap();
        let id = store.save_post(Post::draft("Spring", 1, 0)).unwrap().id;
        let now = 1_795_672_800; // 2026-11-26
        // 02:30 does not exist on 2027-03-28 in Berlin: it goes at 03:00, and says so.
        let gap = schedule_at(&bundle, &store, id, "2027-03-28", "02:30", now).unwrap();
        assert_eq!(
            (gap["adjusted"].as_str(), gap["note"].as_str(), gap["local"].as_str()),
            (Some("gap"), Some("03:00"), Some("2027-03-28 03:00"))
        );
        assert_eq!(gap["publish_at"], 1_806_195_600, "01:00 UTC");
        // 02:30 happens twice on 2027-10-31: the first one (CEST, 00:30 UTC), and says so.
        let overlap = schedule_at(&bundle, &store, id, "2027-10-31", "02:30", now).unwrap();
        assert_eq!(overlap["adjusted"].as_str(), Some("overlap"));
        assert_eq!(overlap["publish_at"], 1_824_942_600);
        let exact = schedule_at(&bundle, &store, id, "2026-12-01", "10:00", now).unwrap();
        assert_eq!(exact["adjusted"], Value::Null);
        let past = schedule_at(&bundle, &store, id, "2026-11-26", "06:59", now).unwrap_err();
        assert_eq!(past.code, ActionErrorCode::PastTime);
        assert_eq!(
            store.post(id).unwrap().unwrap().publish_at,
            Some(exact["publish_at"].as_i64().unwrap()),
            "a refused time changes nothing"
        );
    }

    #[test]
    fn a_post_being_published_cannot_be_rescheduled_cancelled_or_edited() {
        let bundle = bundle_in(chrono_tz::Asia::Yerevan);
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb")).unwrap();
        let mut post = Post::draft("Firing", 1, 0);
        post.status = PostStatus::Publishing;
        post.publish_at = Some(1_795_672_800);
        let id = store.save_post(post).unwrap().id;
        let now = 1_795_672_801;
        let refused = schedule_at(&bundle, &store, id, "2026-12-01", "10:00", now).unwrap_err();
        assert_eq!(refused.code, ActionErrorCode::WrongStatus);
        let turn = store.begin_turn().unwrap();
        let ctx = ActionContext { bundle: &bundle, store: &turn, chat_id: 1, user_id: 1, request_id: 0, now };
        assert_eq!(cancel(&ctx, &json!({ "id": id })).unwrap_err().code, ActionErrorCode::WrongStatus);
        assert_eq!(
            draft_save(&ctx, &json!({ "id": id, "text": "new" })).unwrap_err().code,
            ActionErrorCode::WrongStatus
        );
        assert_eq!(publish_now(&ctx, &json!({ "id": id })).unwrap_err().code, ActionErrorCode::WrongStatus);
        drop(turn);
        assert_eq!(store.post(id).unwrap().unwrap().status, PostStatus::Publishing);
    }

    #[test]
    fn editing_keeps_the_old_text_in_the_history_and_checks_buttons() {
        let bundle = bundle_in(chrono_tz::Asia::Yerevan);
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb")).unwrap();
        let turn = store.begin_turn().unwrap();
        let ctx = ActionContext { bundle: &bundle, store: &turn, chat_id: 1, user_id: 5, request_id: 0, now: 100 };
        let id = draft_save(&ctx, &json!({ "text": "First" })).unwrap()["id"].as_u64().unwrap();
        draft_save(&ctx, &json!({ "id": id, "text": "Second" })).unwrap();
        let bad = json!({ "id": id, "text": "Second", "buttons": [{ "label": "Buy", "url": "javascript:alert(1)" }] });
        assert_eq!(draft_save(&ctx, &bad).unwrap_err().code, ActionErrorCode::BadButton);
        let post = turn.post(id).unwrap().unwrap();
        assert_eq!(post.text, "Second");
        assert_eq!(post.revisions.iter().map(|r| r.text.as_str()).collect::<Vec<_>>(), vec!["First"]);
        assert_eq!(post.revisions[0].by, 5);
    }
}
