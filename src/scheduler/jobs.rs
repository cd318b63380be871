//! Recurring jobs at run time: when each fires next (kept in the store, so a restart neither
//! repeats a fire nor forgets one; a fire missed while the bot was down runs once if it is
//! within the grace window), and firing one: its action, then its notice to every admin.

use chrono::DateTime;
use serde_json::json;

use super::publisher::Publisher;
use super::recurring;
use crate::actions::{self, ActionContext};
use crate::config::Bundle;
use crate::config::bundle::Job;
use crate::engine::session::Notice;
use crate::store::StoreError;

/// The next fire time of each job of the bundle (`None`: disabled, or never again).
pub fn plan(
    publisher: &Publisher,
    bundle: &Bundle,
    previous: Option<&Bundle>,
    now: i64,
) -> Result<Vec<Option<i64>>, StoreError> {
    let grace = publisher.policy.grace.as_secs() as i64;
    let mut plan = Vec::new();
    for job in &bundle.jobs {
        if !job.enabled {
            plan.push(None);
            continue;
        }
        // A job whose schedule a reload changed is planned from its new schedule.
        let rescheduled = previous
            .and_then(|old| old.jobs.iter().find(|old| old.id == job.id))
            .is_some_and(|old| old.cron != job.cron || old.timezone != job.timezone);
        let recorded = if rescheduled { None } else { publisher.store.job_next(&job.id)? };
        let next = match recorded {
            // Missed while down, recently enough: it fires once, now.
            Some(at) if at <= now && now - at <= grace => Some(at),
            Some(at) if at > now => Some(at),
            Some(at) => {
                tracing::warn!(job = %job.id, missed = at, "a recurring job's fire was missed long ago; skipped");
                next_after(job, now)
            }
            None => next_after(job, now),
        };
        if let Some(at) = next
            && recorded != Some(at)
        {
            publisher.store.set_job_next(&job.id, at)?;
        }
        plan.push(next);
    }
    Ok(plan)
}

/// The action that reads the channel's member count: it needs Telegram, so the job runner
/// carries it out itself.
pub const COUNT_MEMBERS: &str = "channel.count_members";

/// The job's first fire time after `now`.
pub fn next_after(job: &Job, now: i64) -> Option<i64> {
    let after = DateTime::from_timestamp(now, 0)?;
    recurring::upcoming(&job.schedule, job.timezone, after, 1).first().map(|at| at.timestamp())
}

/// Fires a job: records its next time first (a crash while it runs does not run it twice),
/// runs its action, tells the admins. Returns the next fire time.
pub async fn fire(publisher: &Publisher, job: &Job, due: i64, now: i64) -> Result<Option<i64>, StoreError> {
    let next = next_after(job, now.max(due));
    if let Some(at) = next {
        publisher.store.set_job_next(&job.id, at)?;
    }
    let result = match &job.action {
        None => json!(null),
        Some((name, _)) if name == COUNT_MEMBERS => match publisher.count_members().await {
            Ok(members) => {
                publisher.store.record_subscribers(now, members)?;
                let turn = publisher.store.begin_turn()?;
                turn.record_event("job_run", now, &json!({ "job": job.id, "action": name, "result": members }))?;
                turn.commit()?;
                json!({ "members": members })
            }
            Err(error) => {
                tracing::warn!(job = %job.id, "the channel's member count could not be read: {error}");
                let turn = publisher.store.begin_turn()?;
                let record = json!({ "job": job.id, "action": name, "error": "unavailable", "detail": error });
                turn.record_event("job_failed", now, &record)?;
                turn.commit()?;
                json!({ "error": "unavailable" })
            }
        },
        Some((name, args)) => {
            let turn = publisher.store.begin_turn()?;
            let ctx =
                ActionContext { bundle: &publisher.bundle(), store: &turn, chat_id: 0, user_id: 0, request_id: 0, now };
            match actions::run(&ctx, name, args) {
                Ok(value) => {
                    turn.record_event("job_run", now, &json!({ "job": job.id, "action": name, "result": value }))?;
                    turn.commit()?;
                    value
                }
                Err(error) => {
                    drop(turn);
                    tracing::warn!(job = %job.id, code = error.code.code(), "a recurring job's action failed: {}", error.detail);
                    let turn = publisher.store.begin_turn()?;
                    let record =
                        json!({ "job": job.id, "action": name, "error": error.code.code(), "detail": error.detail });
                    turn.record_event("job_failed", now, &record)?;
                    turn.commit()?;
                    json!({ "error": error.code.code() })
                }
            }
        }
    };
    tracing::info!(job = %job.id, "recurring job fired");
    if let Some(flow) = &job.notify {
        let mut slots = std::collections::BTreeMap::new();
        slots.insert("job_id".to_string(), json!(job.id));
        slots.insert("job_result".to_string(), result);
        publisher.tell_every_admin(Notice { flow: flow.clone(), step: None, slots });
    }
    Ok(next)
}
