//! The publisher: puts a due post in the channel exactly once from the admins' point of view.
//! Every status change is a store transaction — claimed (`publishing`) before the first send,
//! each sent message recorded as it goes, `published` at the end — so a crash leaves a post
//! either untouched, or `publishing` with what went out; such posts are never sent again
//! silently: the admins are asked. Transient failures are retried with backoff, a bounded
//! number of times; a final failure marks the post `failed` and tells the admins.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use teloxide::payloads::setters::*;
use teloxide::prelude::*;

use super::clock::Clock;
use crate::actions::posts::local;
use crate::config::Bundle;
use crate::engine::session::Notice;
use crate::store::{ChannelOp, Post, PostStatus, Store, StoreError};
use crate::telegram::outbound::{self, Retries, Telegram, is_transient, surely_unsent};
use crate::telegram::pace::Priority;

pub use crate::config::bundle::{NOTICE_FLOW, NOTICE_STEPS};

/// Tells an admin something: the adapter runs the notice in the admin's chat.
pub type Teller = Arc<dyn Fn(i64, Notice) + Send + Sync>;

/// How hard the publisher tries and how late a post may still go out.
#[derive(Debug, Clone, Copy)]
pub struct PublishPolicy {
    /// Tries per post before it is marked failed (each try already retries a few quick times
    /// inside the Telegram client).
    pub attempts: u32,
    /// The wait before the second try; each further wait is four times longer.
    pub backoff: Duration,
    /// A post whose time passed while the bot was down is still published if it is at most this
    /// late; an older one is held and the admins are asked.
    pub grace: Duration,
    /// A post published this much after its time is reported as late.
    pub late_after: Duration,
}

impl Default for PublishPolicy {
    fn default() -> Self {
        PublishPolicy {
            attempts: 3,
            backoff: Duration::from_secs(5),
            grace: Duration::from_secs(6 * 3600),
            late_after: Duration::from_secs(120),
        }
    }
}

/// What became of a due post.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Published {
        message_ids: Vec<i64>,
    },
    /// Not due any more (rescheduled, cancelled or taken meanwhile).
    Skipped,
    Failed {
        reason: String,
    },
    /// The send ended without an answer: the post may be in the channel; the admins are asked.
    Unsure {
        reason: String,
    },
}

/// Everything the publisher needs.
pub struct Publisher {
    pub tg: Telegram,
    pub store: Store,
    /// The configuration in service (a reload swaps it).
    pub live: Arc<crate::config::live::LiveBundle>,
    pub channel_id: i64,
    /// For links to published posts.
    pub channel_username: Option<String>,
    pub clock: Arc<dyn Clock>,
    pub tell: Teller,
    /// Admins who may be told (authorised users).
    pub admins: Vec<i64>,
    pub policy: PublishPolicy,
    /// This run's number: posts it claims carry it (see [`Post::claimed_by_run`]).
    pub run_id: u64,
    /// With `PUBLIC_BASE_URL`, CTA buttons point at tracked links; without it, at their address.
    pub clicks: Option<Arc<crate::http::ClickLinks>>,
}

/// The channel's link prefix: `https://t.me/<name>`, or `https://t.me/c/<id>` for a private
/// channel; a message's link adds `/<message id>`.
pub fn channel_link(username: Option<&str>, channel_id: i64) -> String {
    match username {
        Some(name) => format!("https://t.me/{name}"),
        None => format!("https://t.me/c/{}", channel_id.to_string().trim_start_matches("-100")),
    }
}

/// The longest wait between two tries of a post.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// A number for this publisher run, different from the last one's.
pub fn new_run_id(clock: &dyn Clock) -> u64 {
    (clock.now_ms() as u64).wrapping_mul(1_000_003) ^ u64::from(std::process::id())
}

impl Publisher {
    /// The bundle serving now.
    pub fn bundle(&self) -> Arc<Bundle> {
        self.live.get()
    }

    /// Publishes a due post: claims it, sends what is left to send, records it as published and
    /// tells whoever queued it (unless `quiet`: the caller sums up a burst in one notice). A
    /// post overdue by more than the grace window (the bot was down, or the machine asleep) is
    /// held and put to the admins instead. A send whose fate is unknown (a timeout, a 5xx: the
    /// message may be in the channel) is never retried: the post stays `publishing` and the
    /// admins are asked.
    pub async fn publish(&self, id: u64, quiet: bool) -> Result<Outcome, StoreError> {
        let now = self.clock.now();
        if let Some(held) = self.hold_if_missed(id, now)? {
            return Ok(held);
        }
        let Some(mut post) = self.claim(id, now)? else { return Ok(Outcome::Skipped) };
        let messages = crate::engine::channel_messages(&self.bundle(), &self.channel_content(&post));
        let mut tries = 1;
        let mut part = post.parts_sent as usize;
        while part < messages.len() {
            let sent = outbound::send_with(
                &self.tg,
                self.channel_id,
                Priority::FollowUp,
                &messages[part],
                post.options.silent,
                Retries::SurelyUnsent,
            )
            .await;
            match sent {
                Ok(ids) => {
                    part += 1;
                    let Some(updated) = self.record_part(id, part, ids)? else { return Ok(Outcome::Skipped) };
                    post = updated;
                }
                Err(error) if surely_unsent(&error) && tries < self.policy.attempts => {
                    let wait = (self.policy.backoff * 4u32.saturating_pow(tries - 1)).min(MAX_BACKOFF);
                    tracing::warn!(post = id, tries, wait_s = wait.as_secs(), "publishing failed, retrying: {error}");
                    tokio::time::sleep(wait).await;
                    tries += 1;
                    if self.count_try(id)?.is_none() {
                        return Ok(Outcome::Skipped);
                    }
                }
                Err(error) if !surely_unsent(&error) && is_transient(&error) => {
                    // Telegram may have posted it: asking beats a silent duplicate.
                    let reason = error.to_string();
                    tracing::error!(
                        post = id,
                        "a channel send ended without an answer; the admins are asked: {reason}"
                    );
                    // Let go of it: it stays `publishing`, and the admins settle it.
                    self.update(id, |post| post.claimed_by_run = None)?;
                    self.event("post_unsure", self.clock.now(), json!({ "post": id, "reason": reason }))?;
                    self.tell_admins(
                        "unsure",
                        &post,
                        json!({ "notice_parts": post.parts_sent, "notice_reason": reason }),
                    );
                    return Ok(Outcome::Unsure { reason });
                }
                Err(error) => {
                    let reason = error.to_string();
                    tracing::error!(post = id, "publishing failed for good: {reason}");
                    let Some(post) = self.fail(id, &reason, |p| p.status == PostStatus::Publishing)? else {
                        return Ok(Outcome::Skipped);
                    };
                    self.tell_admins("failed", &post, json!({ "notice_reason": reason }));
                    return Ok(Outcome::Failed { reason });
                }
            }
        }
        let pin_problem = if post.options.pin { self.pin(&post).await } else { None };
        let Some(post) = self.finish(id, pin_problem)? else { return Ok(Outcome::Skipped) };
        let lateness = self.clock.now() - post.publish_at.unwrap_or(now);
        let link = self.link(&post);
        if quiet {
            // The burst's summary says it.
        } else if lateness >= self.policy.late_after.as_secs() as i64 {
            let due = post.publish_at.map(|at| local(self.bundle().timezone, at)).unwrap_or_default();
            let minutes = (lateness + 30) / 60;
            let extra = json!({ "notice_link": link, "notice_due": due, "notice_minutes": minutes });
            self.tell_queuer("late", &post, extra);
        } else {
            self.tell_queuer("published", &post, json!({ "notice_link": link }));
        }
        Ok(Outcome::Published { message_ids: post.message_ids })
    }

    /// Tells each admin who queued posts of a burst how many went out (one notice, not dozens).
    pub fn tell_burst(&self, published: &[u64]) -> Result<(), StoreError> {
        let mut by_admin: std::collections::BTreeMap<i64, Vec<Post>> = std::collections::BTreeMap::new();
        for id in published {
            if let Some(post) = self.store.post(*id)? {
                by_admin.entry(post.queued_by.unwrap_or(post.created_by)).or_default().push(post);
            }
        }
        let reachable = self.reachable_admins();
        for (admin, posts) in by_admin {
            if let Some(last) = posts.last().filter(|_| reachable.contains(&admin)) {
                let extra = json!({ "notice_count": posts.len(), "notice_link": self.link(last) });
                self.tell_one(admin, "published_many", last, extra);
            }
        }
        Ok(())
    }

    /// Holds a scheduled post whose time passed longer ago than the grace window: marked
    /// failed ("missed") and put to the admins — checked and written in one transaction, so an
    /// admin's change at the same moment is not overwritten.
    fn hold_if_missed(&self, id: u64, now: i64) -> Result<Option<Outcome>, StoreError> {
        let grace = self.policy.grace.as_secs() as i64;
        let missed = |p: &Post| p.status == PostStatus::Scheduled && p.publish_at.is_some_and(|at| now - at > grace);
        let Some(post) = self.store.post(id)?.filter(missed) else { return Ok(None) };
        let due = post.publish_at.map(|at| local(self.bundle().timezone, at)).unwrap_or_default();
        let reason = format!("missed: it was due at {due} while the bot was not running");
        let Some(post) = self.fail(id, &reason, missed)? else { return Ok(None) };
        tracing::warn!(post = id, due, "a post missed its time by more than the grace window; held");
        self.tell_admins("missed", &post, json!({ "notice_due": due }));
        Ok(Some(Outcome::Failed { reason }))
    }

    /// At start: posts left `publishing` by a stop or crash are put to the admins (they may be
    /// in the channel already) and never sent again without an admin's word. (Posts whose time
    /// passed meanwhile are the loop's: late ones go out with a note, missed ones are held.)
    pub fn reconcile(&self) -> Result<(), StoreError> {
        self.store.set_live_run(self.run_id)?;
        let unsure = self.store.posts_with_status(PostStatus::Publishing, 0, u64::MAX)?.posts;
        for post in unsure {
            tracing::warn!(
                post = post.id,
                parts_sent = post.parts_sent,
                "a post was being published when the bot stopped"
            );
            self.tell_admins("unsure", &post, json!({ "notice_parts": post.parts_sent }));
        }
        Ok(())
    }

    /// Marks a due scheduled post `publishing`, claimed by this run; `None` if it is not due any
    /// more.
    fn claim(&self, id: u64, now: i64) -> Result<Option<Post>, StoreError> {
        let turn = self.store.begin_turn()?;
        let Some(mut post) = turn.post(id)? else { return Ok(None) };
        if post.status != PostStatus::Scheduled || post.publish_at.is_none_or(|at| at > now) {
            return Ok(None);
        }
        post.status = PostStatus::Publishing;
        post.claimed_by_run = Some(self.run_id);
        post.attempts += 1;
        post.updated_at = now;
        let post = turn.save_post(post)?;
        turn.record_event("post_publishing", now, &json!({ "post": id, "attempt": post.attempts }))?;
        turn.commit()?;
        Ok(Some(post))
    }

    /// Whether this run still holds the post it claimed.
    fn holds(&self, post: &Post) -> bool {
        post.status == PostStatus::Publishing && post.claimed_by_run == Some(self.run_id)
    }

    fn record_part(&self, id: u64, parts_sent: usize, ids: Vec<i64>) -> Result<Option<Post>, StoreError> {
        self.update(id, |post| {
            post.parts_sent = parts_sent as u32;
            post.message_ids.extend(ids);
        })
    }

    fn count_try(&self, id: u64) -> Result<Option<Post>, StoreError> {
        self.update(id, |post| post.attempts += 1)
    }

    /// Marks a post failed if `expected` still holds for it (in the same transaction).
    fn fail(&self, id: u64, reason: &str, expected: impl Fn(&Post) -> bool) -> Result<Option<Post>, StoreError> {
        let now = self.clock.now();
        let turn = self.store.begin_turn()?;
        let Some(mut post) = turn.post(id)?.filter(|p| expected(p)) else { return Ok(None) };
        post.status = PostStatus::Failed;
        post.last_error = Some(reason.to_string());
        post.claimed_by_run = None;
        post.updated_at = now;
        let post = turn.save_post(post)?;
        turn.record_event("post_failed", now, &json!({ "post": id, "reason": reason }))?;
        turn.commit()?;
        Ok(Some(post))
    }

    fn finish(&self, id: u64, pin_problem: Option<String>) -> Result<Option<Post>, StoreError> {
        let now_ms = self.clock.now_ms();
        let now = now_ms.div_euclid(1000);
        let turn = self.store.begin_turn()?;
        let Some(mut post) = turn.post(id)?.filter(|p| self.holds(p)) else { return Ok(None) };
        post.status = PostStatus::Published;
        post.published_at = Some(now);
        post.last_error = pin_problem;
        post.claimed_by_run = None;
        post.updated_at = now;
        let post = turn.save_post(post)?;
        let lateness_ms = post.publish_at.map_or(0, |at| now_ms - at * 1000);
        let record = json!({
            "post": id, "format": post.format, "message_ids": post.message_ids,
            "lateness_ms": lateness_ms, "attempts": post.attempts,
        });
        turn.record_event("post_published", now, &record)?;
        turn.commit()?;
        Ok(Some(post))
    }

    /// Changes a post this run holds; `None` if it no longer does.
    fn update(&self, id: u64, change: impl FnOnce(&mut Post)) -> Result<Option<Post>, StoreError> {
        let turn = self.store.begin_turn()?;
        let Some(mut post) = turn.post(id)?.filter(|p| self.holds(p)) else { return Ok(None) };
        change(&mut post);
        post.updated_at = self.clock.now();
        let post = turn.save_post(post)?;
        turn.commit()?;
        Ok(Some(post))
    }

    fn event(&self, kind: &str, now: i64, record: serde_json::Value) -> Result<(), StoreError> {
        let turn = self.store.begin_turn()?;
        turn.record_event(kind, now, &record)?;
        turn.commit()
    }

    /// Carries out the changes admins asked for to published posts (edit the text, delete from
    /// the channel), then tells each of them how it went. Edits and deletions are idempotent,
    /// so one interrupted by a crash is simply carried out again.
    pub async fn apply_channel_ops(&self) -> Result<(), StoreError> {
        for (id, op) in self.store.channel_ops()? {
            let Some(post) = self.store.post(id)? else {
                self.clear_op(id)?;
                continue;
            };
            let (by, done) = match &op {
                ChannelOp::Edit { text, by } => (*by, self.edit_in_channel(&post, text).await),
                ChannelOp::Delete { by } => (*by, self.delete_in_channel(&post).await),
            };
            let now = self.clock.now();
            let turn = self.store.begin_turn()?;
            // Only the change that was carried out is cleared: a newer one queued meanwhile stays.
            if turn.channel_op(id)?.as_ref() == Some(&op) {
                turn.clear_channel_op(id)?;
            }
            let mut current = turn.post(id)?;
            let step = match (&done, &op, current.as_mut()) {
                (Ok(()), ChannelOp::Edit { text, by }, Some(post)) => {
                    post.revise(text.clone(), *by, now);
                    post.updated_at = now;
                    turn.save_post(post.clone())?;
                    turn.record_event("post_edited", now, &json!({ "post": id, "user": by }))?;
                    "edited"
                }
                (Ok(()), ChannelOp::Delete { by }, Some(post)) => {
                    post.status = PostStatus::Deleted;
                    post.updated_at = now;
                    turn.save_post(post.clone())?;
                    turn.record_event("post_deleted_from_channel", now, &json!({ "post": id, "user": by }))?;
                    "deleted"
                }
                (Err(reason), _, _) => {
                    turn.record_event("post_change_failed", now, &json!({ "post": id, "reason": reason }))?;
                    "change_failed"
                }
                (Ok(()), _, None) => "change_failed",
            };
            turn.commit()?;
            let post = current.unwrap_or(post);
            let extra = json!({ "notice_link": self.link(&post), "notice_reason": done.err() });
            if self.reachable_admins().contains(&by) {
                self.tell_one(by, step, &post, extra);
            }
        }
        Ok(())
    }

    fn clear_op(&self, id: u64) -> Result<(), StoreError> {
        let turn = self.store.begin_turn()?;
        turn.clear_channel_op(id)?;
        turn.commit()
    }

    /// Replaces the text of the post's messages whose text changes (a caption is edited as a
    /// caption); the layout must stay the same (the action checked it).
    async fn edit_in_channel(&self, post: &Post, text: &str) -> Result<(), String> {
        // Old and new from one bundle, whatever a reload does meanwhile.
        let bundle = self.bundle();
        let old = crate::engine::channel_messages(&bundle, &self.channel_content(post));
        let mut content = self.channel_content(post);
        content.text = text.to_string();
        let new = crate::engine::channel_messages(&bundle, &content);
        if old.len() != new.len() {
            return Err("the new text changes the post's layout".to_string());
        }
        let chat = ChatId(self.channel_id);
        let mut ids = post.message_ids.iter().copied();
        for (before, after) in old.iter().zip(&new) {
            let files = before.media.as_ref().map_or(1, |m| m.files().count());
            let first = ids.next().ok_or("the post's message ids are incomplete")?;
            if files > 1 {
                // The album's other files.
                ids.nth(files - 2);
            }
            if before.text == after.text {
                continue;
            }
            let message_id = teloxide::types::MessageId(i32::try_from(first).map_err(|e| e.to_string())?);
            let markup = match outbound::markup(&after.keyboard) {
                Some(teloxide::types::ReplyMarkup::InlineKeyboard(markup)) => Some(markup),
                _ => None,
            };
            let result = if before.media.is_some() {
                let mut request = self.tg.bot.edit_message_caption(chat, message_id).caption(after.text.clone());
                request = request.parse_mode(teloxide::types::ParseMode::Html);
                if let Some(markup) = markup {
                    request = request.reply_markup(markup);
                }
                self.tg.call(request, "editMessageCaption").await.map(drop)
            } else {
                let mut request = self.tg.bot.edit_message_text(chat, message_id, after.text.clone());
                request = request.parse_mode(teloxide::types::ParseMode::Html);
                if let Some(markup) = markup {
                    request = request.reply_markup(markup);
                }
                self.tg.call(request, "editMessageText").await.map(drop)
            };
            match result {
                Ok(()) | Err(teloxide::RequestError::Api(teloxide::ApiError::MessageNotModified)) => {}
                Err(error) => return Err(error.to_string()),
            }
        }
        Ok(())
    }

    /// Deletes every message of the post from the channel (one already gone counts as deleted).
    async fn delete_in_channel(&self, post: &Post) -> Result<(), String> {
        for id in &post.message_ids {
            let message_id = teloxide::types::MessageId(i32::try_from(*id).map_err(|e| e.to_string())?);
            let request = self.tg.bot.delete_message(ChatId(self.channel_id), message_id);
            match self.tg.call(request, "deleteMessage").await {
                Ok(_) | Err(teloxide::RequestError::Api(teloxide::ApiError::MessageToDeleteNotFound)) => {}
                Err(error) => return Err(error.to_string()),
            }
        }
        Ok(())
    }

    /// Pins the post's first message; a refusal is reported, not fatal (the post is out).
    async fn pin(&self, post: &Post) -> Option<String> {
        let first = *post.message_ids.first()?;
        let message_id = teloxide::types::MessageId(i32::try_from(first).ok()?);
        let request =
            self.tg.bot.pin_chat_message(ChatId(self.channel_id), message_id).disable_notification(post.options.silent);
        match self.tg.call(request, "pinChatMessage").await {
            Ok(_) => None,
            Err(error) => {
                tracing::warn!(post = post.id, "the post is out but could not be pinned: {error}");
                Some(format!("not pinned: {error}"))
            }
        }
    }

    /// The post as the channel gets it: its CTA buttons through tracked links when clicks are
    /// counted (the reader sees the same label; the link goes through `/r/<token>`).
    pub fn channel_content(&self, post: &Post) -> crate::engine::post_view::PostContent {
        let mut content = post.content();
        if let Some(links) = &self.clicks {
            for (index, button) in content.buttons.iter_mut().enumerate() {
                if let Ok(index) = u8::try_from(index) {
                    button.url = links.url(post.id, index);
                }
            }
        }
        content
    }

    /// The channel's member count, from Telegram.
    pub async fn count_members(&self) -> Result<u64, String> {
        let request = self.tg.bot.get_chat_member_count(teloxide::types::ChatId(self.channel_id));
        self.tg.call(request, "getChatMemberCount").await.map(u64::from).map_err(|e| e.to_string())
    }

    /// A link to the post's first message in the channel.
    pub fn link(&self, post: &Post) -> String {
        let first = post.message_ids.first().copied().unwrap_or_default();
        format!("{}/{first}", channel_link(self.channel_username.as_deref(), self.channel_id))
    }

    fn tell_admins(&self, step: &str, post: &Post, extra: serde_json::Value) {
        for admin in self.reachable_admins() {
            self.tell_one(admin, step, post, extra.clone());
        }
    }

    /// Runs a notice in every admin's chat.
    pub fn tell_every_admin(&self, notice: Notice) {
        for admin in self.reachable_admins() {
            (self.tell)(admin, notice.clone());
        }
    }

    /// Authorised admins who have talked to the bot (Telegram lets a bot write only to them).
    fn reachable_admins(&self) -> Vec<i64> {
        let seen: Vec<i64> = match self.store.users() {
            Ok(users) => users.iter().map(|u| u.id).collect(),
            Err(error) => {
                tracing::warn!("cannot read the admins to tell: {error}");
                Vec::new()
            }
        };
        self.admins.iter().copied().filter(|a| seen.contains(a)).collect()
    }

    /// Tells the admin who queued the post (or, failing that, its creator), if they can be
    /// written to.
    fn tell_queuer(&self, step: &str, post: &Post, extra: serde_json::Value) {
        let admin = post.queued_by.unwrap_or(post.created_by);
        if self.reachable_admins().contains(&admin) {
            self.tell_one(admin, step, post, extra);
        }
    }

    fn tell_one(&self, admin: i64, step: &str, post: &Post, extra: serde_json::Value) {
        let mut slots = std::collections::BTreeMap::new();
        slots.insert("notice_post".to_string(), json!(post.id));
        slots.insert("notice_title".to_string(), json!(post.display_title()));
        if let serde_json::Value::Object(extra) = extra {
            slots.extend(extra);
        }
        (self.tell)(admin, Notice { flow: NOTICE_FLOW.to_string(), step: Some(step.to_string()), slots });
    }
}
