//! The metrics postflow keeps, named in one place, and the Prometheus recorder that `/metrics`
//! renders. Recording is a no-op until [`install`] has run (as in `chat` and the tests that do
//! not serve metrics).

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Updates received from Telegram, by kind (message, press, reaction_count, other).
pub const UPDATES: &str = "postflow_updates_total";
/// The time one engine turn takes: the step, its inline actions and the commit.
pub const STEP_SECONDS: &str = "postflow_step_duration_seconds";
/// Requests to the language model, by action and outcome (ok or the error's kind).
pub const AI_REQUESTS: &str = "postflow_ai_requests_total";
/// Tokens the language model counted, by kind (prompt, completion).
pub const AI_TOKENS: &str = "postflow_ai_tokens_total";
/// How long one request to the language model took, its retries included.
pub const AI_SECONDS: &str = "postflow_ai_request_duration_seconds";
/// Scheduled publications, by outcome (published, failed, unsure).
pub const PUBLISHES: &str = "postflow_publishes_total";
/// Posts waiting in the scheduler's queue.
pub const QUEUE_LENGTH: &str = "postflow_scheduler_queue_length";
/// How late a due post started going out, from its publish time.
pub const LATENESS_SECONDS: &str = "postflow_scheduler_lateness_seconds";
/// Configuration reloads, by outcome (applied, unchanged, rejected).
pub const RELOADS: &str = "postflow_config_reloads_total";
/// Requests to tracked CTA links, by outcome (counted; not_counted: a repeat, a HEAD or a post not in the channel; not_found).
pub const CLICKS: &str = "postflow_clicks_total";
/// Always 1, with this build's version as a label.
pub const BUILD_INFO: &str = "postflow_build_info";

/// Seconds: engine turns are milliseconds; a slow store or disk shows in the upper buckets.
const STEP_BUCKETS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];
/// Seconds: model answers take seconds, retries tens of seconds.
const AI_BUCKETS: &[f64] = &[0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0];
/// Seconds: on time is under a second; a restart or a burst makes minutes.
const LATENESS_BUCKETS: &[f64] = &[1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 21600.0];

static RECORDER: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process-wide Prometheus recorder on first call and returns its handle; later
/// calls return the same handle. `None` if another recorder was installed first.
pub fn install() -> Option<PrometheusHandle> {
    RECORDER
        .get_or_init(|| {
            let built = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(STEP_SECONDS.into()), STEP_BUCKETS)
                .and_then(|b| b.set_buckets_for_metric(Matcher::Full(AI_SECONDS.into()), AI_BUCKETS))
                .and_then(|b| b.set_buckets_for_metric(Matcher::Full(LATENESS_SECONDS.into()), LATENESS_BUCKETS))
                .and_then(PrometheusBuilder::install_recorder);
            match built {
                Ok(handle) => {
                    describe();
                    gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
                    Some(handle)
                }
                Err(error) => {
                    tracing::warn!("metrics are not kept: {error}");
                    None
                }
            }
        })
        .clone()
}

fn describe() {
    describe_counter!(UPDATES, "Updates received from Telegram, by kind.");
    describe_histogram!(STEP_SECONDS, metrics::Unit::Seconds, "Time of one engine turn, commit included.");
    describe_counter!(AI_REQUESTS, "Requests to the language model, by action and outcome.");
    describe_counter!(AI_TOKENS, "Tokens counted by the language model, by kind.");
    describe_histogram!(AI_SECONDS, metrics::Unit::Seconds, "Time of one language model request, retries included.");
    describe_counter!(PUBLISHES, "Scheduled publications, by outcome.");
    describe_gauge!(QUEUE_LENGTH, "Posts waiting in the scheduler's queue.");
    describe_histogram!(LATENESS_SECONDS, metrics::Unit::Seconds, "How late due posts started going out.");
    describe_counter!(RELOADS, "Configuration reloads, by outcome.");
    describe_counter!(CLICKS, "Requests to tracked CTA links, by outcome.");
    describe_gauge!(BUILD_INFO, "Always 1; the version is a label.");
}

/// An update arrived.
pub fn update_received(kind: &'static str) {
    counter!(UPDATES, "kind" => kind).increment(1);
}

/// An engine turn finished.
pub fn step_finished(took: Duration) {
    histogram!(STEP_SECONDS).record(took.as_secs_f64());
}

/// A request to the language model finished.
pub fn ai_request(action: &str, outcome: &str, prompt_tokens: u32, completion_tokens: u32, latency_ms: u64) {
    counter!(AI_REQUESTS, "action" => action.to_string(), "outcome" => outcome.to_string()).increment(1);
    counter!(AI_TOKENS, "kind" => "prompt").increment(u64::from(prompt_tokens));
    counter!(AI_TOKENS, "kind" => "completion").increment(u64::from(completion_tokens));
    #[allow(clippy::cast_precision_loss)]
    histogram!(AI_SECONDS).record(latency_ms as f64 / 1000.0);
}

/// The scheduler finished with a due post.
pub fn published(outcome: &'static str) {
    counter!(PUBLISHES, "outcome" => outcome).increment(1);
}

/// The scheduler looked at its queue.
pub fn queue_length(posts: u64) {
    #[allow(clippy::cast_precision_loss)]
    gauge!(QUEUE_LENGTH).set(posts as f64);
}

/// A due post started going out `seconds` after its time.
pub fn lateness(seconds: i64) {
    #[allow(clippy::cast_precision_loss)]
    histogram!(LATENESS_SECONDS).record(seconds.max(0) as f64);
}

/// A reload finished.
pub fn reloaded(outcome: &'static str) {
    counter!(RELOADS, "outcome" => outcome).increment(1);
}

/// A tracked link was requested.
pub fn click(outcome: &'static str) {
    counter!(CLICKS, "outcome" => outcome).increment(1);
}
