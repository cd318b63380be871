//! The publisher: puts a due post in the channel exactly once from the admins' point of view.
//! Every status change is a store transaction — claimed (`publishing`) before the first send,
//! each sent message recorded as it goes, `published` at the end — so a crash leaves a post
//! either untouched, or `publishing` with what went out; such posts are never sent again
//! silently: the admins are asked. Transient failures are retried with backoff, a bounded
//! number of times; a final failure marks the post `failed` and tells the admins.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use teloxide::RequestError;
use teloxide::payloads::setters::*;
use teloxide::prelude::*;

use super::clock::Clock;
use crate::actions::posts::local;
use crate::config::Bundle;
use crate::engine::post_view;
use crate::engine::session::Notice;
use crate::store::{Post, PostStatus, Store, StoreError};
use crate::telegram::outbound::{self, Telegram, is_transient};
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
}

/// Everything the publisher needs.
pub struct Publisher {
    pub tg: Telegram,
    pub store: Store,
    pub bundle: Arc<Bundle>,
    pub channel_id: i64,
    /// For links to published posts.
    pub channel_username: Option<String>,
    pub clock: Arc<dyn Clock>,
    pub tell: Teller,
    /// Admins who may be told (authorised users).
    pub admins: Vec<i64>,
    pub policy: PublishPolicy,
}

impl Publisher {
    /// Publishes a due post: claims it, sends what is left to send, records it as published and
    /// tells its creator (unless `quiet`: the caller sums up a burst in one notice). A post
    /// overdue by more than the grace window (the bot was down, or the machine asleep) is held
    /// and put to the admins instead.
    pub async fn publish(&self, id: u64, quiet: bool) -> Result<Outcome, StoreError> {
        let now = self.clock.now();
        if let Some(held) = self.hold_if_missed(id, now)? {
            return Ok(held);
        }
        let Some(mut post) = self.claim(id, now)? else { return Ok(Outcome::Skipped) };
        let album_text = crate::engine::standalone_text(&self.bundle, "album_buttons").unwrap_or_else(|| "…".into());
        let messages = post_view::channel_messages(&post.content(), &album_text);
        let mut tries = 1;
        let mut part = post.parts_sent as usize;
        while part < messages.len() {
            match outbound::send_with(
                &self.tg,
                self.channel_id,
                Priority::FollowUp,
                &messages[part],
                post.options.silent,
            )
            .await
            {
                Ok(ids) => {
                    part += 1;
                    post = self.record_part(id, part, ids)?;
                }
                Err(error) if retryable(&error) && tries < self.policy.attempts => {
                    let wait = self.policy.backoff * 4u32.saturating_pow(tries - 1);
                    tracing::warn!(post = id, tries, wait_s = wait.as_secs(), "publishing failed, retrying: {error}");
                    tokio::time::sleep(wait).await;
                    tries += 1;
                    self.count_try(id)?;
                }
                Err(error) => {
                    let reason = error.to_string();
                    tracing::error!(post = id, "publishing failed for good: {reason}");
                    let post = self.fail(id, &reason)?;
                    self.tell_admins("failed", &post, json!({ "notice_reason": reason }));
                    return Ok(Outcome::Failed { reason });
                }
            }
        }
        let pin_problem = if post.options.pin { self.pin(&post).await } else { None };
        let post = self.finish(id, pin_problem)?;
        let lateness = self.clock.now() - post.publish_at.unwrap_or(now);
        let link = self.link(&post);
        if lateness >= self.policy.late_after.as_secs() as i64 {
            let due = post.publish_at.map(|at| local(self.bundle.timezone, at)).unwrap_or_default();
            self.tell_admins("late", &post, json!({ "notice_link": link, "notice_due": due }));
        } else if !quiet {
            self.tell_one(post.created_by, "published", &post, json!({ "notice_link": link }));
        }
        Ok(Outcome::Published { message_ids: post.message_ids })
    }

    /// Tells each creator how many of their posts a burst published (one notice, not dozens).
    pub fn tell_burst(&self, published: &[u64]) -> Result<(), StoreError> {
        let mut by_creator: std::collections::BTreeMap<i64, Vec<Post>> = std::collections::BTreeMap::new();
        for id in published {
            if let Some(post) = self.store.post(*id)? {
                by_creator.entry(post.created_by).or_default().push(post);
            }
        }
        for (creator, posts) in by_creator {
            if let Some(last) = posts.last() {
                let extra = json!({ "notice_count": posts.len(), "notice_link": self.link(last) });
                self.tell_one(creator, "published_many", last, extra);
            }
        }
        Ok(())
    }

    /// Holds a scheduled post whose time passed longer ago than the grace window: marked
    /// failed ("missed") and put to the admins.
    fn hold_if_missed(&self, id: u64, now: i64) -> Result<Option<Outcome>, StoreError> {
        let grace = self.policy.grace.as_secs() as i64;
        let Some(post) = self.store.post(id)? else { return Ok(None) };
        let Some(at) = post.publish_at.filter(|at| post.status == PostStatus::Scheduled && now - at > grace) else {
            return Ok(None);
        };
        let due = local(self.bundle.timezone, at);
        let reason = format!("missed: it was due at {due} while the bot was not running");
        let post = self.fail(id, &reason)?;
        tracing::warn!(post = id, due, "a post missed its time by more than the grace window; held");
        self.tell_admins("missed", &post, json!({ "notice_due": due }));
        Ok(Some(Outcome::Failed { reason }))
    }

    /// At start: posts left `publishing` by a stop or crash are put to the admins (they may be
    /// in the channel already); posts whose time passed longer ago than the grace window are
    /// held as failed and put to the admins. Posts missed by less are left for the loop.
    pub fn reconcile(&self) -> Result<(), StoreError> {
        let now = self.clock.now();
        let unsure = self.store.posts_with_status(PostStatus::Publishing, 0, u64::MAX)?.posts;
        for post in unsure {
            tracing::warn!(
                post = post.id,
                parts_sent = post.parts_sent,
                "a post was being published when the bot stopped"
            );
            self.tell_admins("unsure", &post, json!({ "notice_parts": post.parts_sent }));
        }
        let grace = self.policy.grace.as_secs() as i64;
        for (at, id) in self.store.due(now - grace - 1, usize::MAX)? {
            let due = local(self.bundle.timezone, at);
            let reason = format!("missed: it was due at {due} while the bot was not running");
            let post = self.fail(id, &reason)?;
            tracing::warn!(post = id, due, "a post missed its time by more than the grace window; held");
            self.tell_admins("missed", &post, json!({ "notice_due": due }));
        }
        Ok(())
    }

    /// Marks a due scheduled post `publishing`; `None` if it is not due any more.
    fn claim(&self, id: u64, now: i64) -> Result<Option<Post>, StoreError> {
        let turn = self.store.begin_turn()?;
        let Some(mut post) = turn.post(id)? else { return Ok(None) };
        if post.status != PostStatus::Scheduled || post.publish_at.is_none_or(|at| at > now) {
            return Ok(None);
        }
        post.status = PostStatus::Publishing;
        post.attempts += 1;
        post.updated_at = now;
        let post = turn.save_post(post)?;
        turn.record_event("post_publishing", now, &json!({ "post": id, "attempt": post.attempts }))?;
        turn.commit()?;
        Ok(Some(post))
    }

    fn record_part(&self, id: u64, parts_sent: usize, ids: Vec<i64>) -> Result<Post, StoreError> {
        self.update(id, |post| {
            post.parts_sent = parts_sent as u32;
            post.message_ids.extend(ids);
        })
    }

    fn count_try(&self, id: u64) -> Result<Post, StoreError> {
        self.update(id, |post| post.attempts += 1)
    }

    fn fail(&self, id: u64, reason: &str) -> Result<Post, StoreError> {
        let now = self.clock.now();
        let post = self.update(id, |post| {
            post.status = PostStatus::Failed;
            post.last_error = Some(reason.to_string());
        })?;
        self.event("post_failed", now, json!({ "post": id, "reason": reason }))?;
        Ok(post)
    }

    fn finish(&self, id: u64, pin_problem: Option<String>) -> Result<Post, StoreError> {
        let now_ms = self.clock.now_ms();
        let now = now_ms.div_euclid(1000);
        let turn = self.store.begin_turn()?;
        let mut post = turn.post(id)?.ok_or_else(|| StoreError::Corrupt(format!("post {id} vanished")))?;
        post.status = PostStatus::Published;
        post.published_at = Some(now);
        post.last_error = pin_problem;
        post.updated_at = now;
        let post = turn.save_post(post)?;
        let lateness_ms = post.publish_at.map_or(0, |at| now_ms - at * 1000);
        let record = json!({
            "post": id, "format": post.format, "message_ids": post.message_ids,
            "lateness_ms": lateness_ms, "attempts": post.attempts,
        });
        turn.record_event("post_published", now, &record)?;
        turn.commit()?;
        Ok(post)
    }

    fn update(&self, id: u64, change: impl FnOnce(&mut Post)) -> Result<Post, StoreError> {
        let turn = self.store.begin_turn()?;
        let mut post = turn.post(id)?.ok_or_else(|| StoreError::Corrupt(format!("post {id} vanished")))?;
        change(&mut post);
        post.updated_at = self.clock.now();
        let post = turn.save_post(post)?;
        turn.commit()?;
        Ok(post)
    }

    fn event(&self, kind: &str, now: i64, record: serde_json::Value) -> Result<(), StoreError> {
        let turn = self.store.begin_turn()?;
        turn.record_event(kind, now, &record)?;
        turn.commit()
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

    /// A link to the post's first message in the channel.
    pub fn link(&self, post: &Post) -> String {
        let first = post.message_ids.first().copied().unwrap_or_default();
        match &self.channel_username {
            Some(name) => format!("https://t.me/{name}/{first}"),
            None => {
                let internal = self.channel_id.to_string().trim_start_matches("-100").to_string();
                format!("https://t.me/c/{internal}/{first}")
            }
        }
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

/// Failures worth another try: the network, Telegram's 5xx, a 429 that outlasted the client.
fn retryable(error: &RequestError) -> bool {
    is_transient(error) || matches!(error, RequestError::RetryAfter(_))
}
