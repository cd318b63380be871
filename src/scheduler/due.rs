//! The scheduler's loop: one task that publishes what is due, in order, then sleeps until the
//! next post falls due or the schedule changes (no polling).

use std::sync::Arc;

use super::publisher::{Outcome, Publisher};

/// Posts taken from the due index at a time.
const BATCH: usize = 64;
/// More posts than this due at once are a burst: one notice sums them up.
const BURST: usize = 3;

/// Runs until `stop` resolves: reconciles what the last run left behind, then publishes due
/// posts as they fall due. A post being sent when `stop` resolves is finished first.
/// The loop beats through `beat` on every round (at least every
/// [`SCHEDULER_BEAT_SECS`](crate::vitals::SCHEDULER_BEAT_SECS)) and drops it when it ends.
pub async fn run(
    publisher: Arc<Publisher>,
    mut stop: tokio::sync::watch::Receiver<bool>,
    beat: crate::vitals::SchedulerBeat,
) {
    if let Err(error) = publisher.reconcile() {
        tracing::error!("the scheduler could not check the posts left by the last run: {error}");
    }
    let (mut planned_for, mut planned_bundle) = publisher.live.snapshot();
    let mut jobs =
        super::jobs::plan(&publisher, &planned_bundle, None, publisher.clock.now()).unwrap_or_else(|error| {
            tracing::error!("the recurring jobs cannot be planned: {error}; they will not run");
            Vec::new()
        });
    let beat_every = std::time::Duration::from_secs(crate::vitals::SCHEDULER_BEAT_SECS);
    loop {
        if *stop.borrow() {
            return;
        }
        beat.beat();
        // Changes admins asked for to published posts.
        if let Err(error) = publisher.apply_channel_ops().await {
            tracing::error!("the store failed while changing published posts: {error}");
        }
        let now = publisher.clock.now();
        // Recurring jobs whose time came, in the order of the files.
        // A reload may have changed the jobs: they are planned again, from the same snapshot
        // the loop then runs them from.
        let (version, bundle) = publisher.live.snapshot();
        if version != planned_for {
            jobs = super::jobs::plan(&publisher, &bundle, Some(&planned_bundle), now).unwrap_or_else(|error| {
                tracing::error!("the recurring jobs cannot be planned: {error}; they will not run");
                Vec::new()
            });
            (planned_for, planned_bundle) = (version, bundle.clone());
        }
        for (index, job) in bundle.jobs.iter().enumerate() {
            if let Some(Some(due)) = jobs.get(index).copied()
                && due <= now
            {
                jobs[index] = match beating(&beat, super::jobs::fire(&publisher, job, due, now)).await {
                    Ok(next) => next,
                    Err(error) => {
                        tracing::error!(job = %job.id, "the store failed while running a job: {error}");
                        super::jobs::next_after(job, now)
                    }
                };
            }
        }
        if let Ok(waiting) = publisher.store.due_count() {
            crate::telemetry::queue_length(waiting);
        }
        let due = match publisher.store.due(now, BATCH) {
            Ok(due) => due,
            Err(error) => {
                tracing::error!("the scheduler cannot read the queue: {error}; trying again in 10 s");
                tokio::select! {
                    () = tokio::time::sleep(std::time::Duration::from_secs(10)) => continue,
                    _ = stop.changed() => return,
                }
            }
        };
        if !due.is_empty() {
            // A burst (many posts due at once, or a backlog) is summed up in one notice.
            let quiet = due.len() > BURST;
            let mut published = Vec::new();
            let mut store_failed = false;
            for (at, id) in due {
                if *stop.borrow() {
                    break;
                }
                beat.beat();
                crate::telemetry::lateness(now - at);
                match beating(&beat, publisher.publish(id, quiet)).await {
                    Ok(Outcome::Published { .. }) => {
                        crate::telemetry::published("published");
                        published.push(id);
                    }
                    Ok(Outcome::Failed { .. }) => crate::telemetry::published("failed"),
                    Ok(Outcome::Unsure { .. }) => crate::telemetry::published("unsure"),
                    Ok(Outcome::Skipped) => {}
                    Err(error) => {
                        tracing::error!(post = id, "the store failed while publishing: {error}; trying again in 10 s");
                        store_failed = true;
                        break;
                    }
                }
            }
            if quiet && let Err(error) = publisher.tell_burst(&published) {
                tracing::warn!("could not sum up the published posts: {error}");
            }
            if store_failed {
                // The post is still due: wait rather than spin on a failing store.
                tokio::select! {
                    () = tokio::time::sleep(std::time::Duration::from_secs(10)) => {}
                    _ = stop.changed() => return,
                }
            }
            continue;
        }
        let next_post = match publisher.store.next_due() {
            Ok(next) => next.map(|(at, _)| at),
            Err(error) => {
                // Look again in a minute rather than sleep until a change that may never come.
                tracing::error!("the scheduler cannot read the next due time: {error}");
                Some(publisher.clock.now() + 60)
            }
        };
        let next_job = jobs.iter().flatten().min().copied();
        let next = next_post.into_iter().chain(next_job).min();
        let clock = publisher.clock.clone();
        let sleep = async move {
            match next {
                Some(at) => clock.sleep_until(at * 1000).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = sleep => {}
            () = publisher.store.schedule_changed() => {}
            // Nothing to do for a while still goes round, so the health check sees a live loop.
            () = tokio::time::sleep(beat_every) => {}
            _ = stop.changed() => return,
        }
    }
}

/// Awaits `work`, beating meanwhile: a long report or a post waiting out Telegram's rate limit
/// is work, not a stuck loop. Beyond [`LONGEST_WORK`] it stops beating, and readiness then
/// shows a loop that is stuck.
async fn beating<F: std::future::Future>(beat: &crate::vitals::SchedulerBeat, work: F) -> F::Output {
    let mut work = std::pin::pin!(work);
    let started = tokio::time::Instant::now();
    let mut every = tokio::time::interval(std::time::Duration::from_secs(crate::vitals::SCHEDULER_BEAT_SECS));
    loop {
        tokio::select! {
            done = &mut work => return done,
            _ = every.tick() => {
                if started.elapsed() < LONGEST_WORK {
                    beat.beat();
                }
            }
        }
    }
}

/// The longest one publication or job may take and still count as work in progress.
const LONGEST_WORK: std::time::Duration = std::time::Duration::from_secs(600);
