//! Runs the engine against the store and the actions: one event in, visible effects out.
//! Shared by `postflow chat`, `postflow test` and (later) the Telegram adapter.

use std::sync::Arc;

use crate::actions::{self, ActionContext};
use crate::config::Bundle;
use crate::engine::event::{ActionOutcome, Effect, Event, EventKind};
use crate::engine::session::{Session, Wait};
use crate::engine::{self};
use crate::store::{Store, StoreError};

/// The engine, its configuration and its store.
pub struct Driver {
    pub bundle: Arc<Bundle>,
    pub store: Store,
}

impl Driver {
    pub fn new(bundle: Arc<Bundle>, store: Store) -> Self {
        Driver { bundle, store }
    }

    /// The session of a chat as stored (a fresh one if the chat is new).
    pub fn session(&self, chat_id: i64, user_id: i64) -> Result<Session, StoreError> {
        Ok(self.store.load_session(chat_id)?.unwrap_or_else(|| Session::new(chat_id, user_id)))
    }

    /// Handles one event: every engine step is committed before its effects are carried out;
    /// actions run inline and their results are fed back as events. Returns the effects the
    /// adapter must show (sends, edits, answers, ends), in order.
    pub fn handle(&self, event: Event) -> Result<Vec<Effect>, StoreError> {
        let mut session = self.session(event.chat_id, event.user_id)?;
        let mut shown = Vec::new();
        // A crash may have left an action requested but not carried out: finish it first.
        if let (Wait::Action { request_id }, Some(pending)) = (&session.wait, &session.pending)
            && *request_id == pending.request_id
        {
            let outcome = self.run_action(&event, pending.request_id, &pending.name, &pending.args)?;
            let resume =
                Event { kind: EventKind::ActionResult { request_id: pending.request_id, outcome }, ..event.clone() };
            session = self.apply(session, resume, &mut shown)?;
        }
        self.apply(session, event, &mut shown)?;
        Ok(shown)
    }

    fn apply(&self, mut session: Session, event: Event, shown: &mut Vec<Effect>) -> Result<Session, StoreError> {
        let mut queue = vec![event];
        while let Some(event) = queue.pop() {
            let (next, effects) = engine::step(&self.bundle, &session, &event);
            self.store.save_session(&next)?;
            session = next;
            for effect in effects {
                match effect {
                    Effect::RunAction { request_id, name, args } => {
                        let outcome = self.run_action(&event, request_id, &name, &args)?;
                        queue.push(Event { kind: EventKind::ActionResult { request_id, outcome }, ..event.clone() });
                    }
                    Effect::Warn { message } => {
                        tracing::warn!(chat_id = event.chat_id, "{message}");
                    }
                    other => shown.push(other),
                }
            }
        }
        Ok(session)
    }

    /// Runs an action once per (chat, request): a replay returns the recorded result.
    fn run_action(
        &self,
        event: &Event,
        request_id: u64,
        name: &str,
        args: &serde_json::Value,
    ) -> Result<ActionOutcome, StoreError> {
        if let Some(recorded) = self.store.action_result(event.chat_id, request_id)? {
            tracing::info!(chat_id = event.chat_id, request_id, action = name, "replaying a recorded action result");
            return Ok(outcome_from_record(recorded));
        }
        let ctx = ActionContext {
            bundle: &self.bundle,
            store: &self.store,
            chat_id: event.chat_id,
            user_id: event.user_id,
            request_id,
            now: event.now,
        };
        let started = std::time::Instant::now();
        let result = actions::run(&ctx, name, args);
        let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
        let outcome = match result {
            Ok(value) => {
                tracing::debug!(chat_id = event.chat_id, action = name, elapsed_ms, "action done");
                ActionOutcome::Ok { value }
            }
            Err(message) => {
                tracing::warn!(chat_id = event.chat_id, action = name, elapsed_ms, "action failed: {message}");
                ActionOutcome::Failed { message }
            }
        };
        // draft.save records itself in the same transaction as the post; record the rest here.
        if self.store.action_result(event.chat_id, request_id)?.is_none() {
            let record = match &outcome {
                ActionOutcome::Ok { value } => serde_json::json!({ "ok": value }),
                ActionOutcome::Failed { message } => serde_json::json!({ "failed": message }),
            };
            self.store.record_action(event.chat_id, request_id, &record)?;
        }
        Ok(outcome)
    }
}

fn outcome_from_record(recorded: serde_json::Value) -> ActionOutcome {
    if let Some(message) = recorded.get("failed").and_then(|m| m.as_str()) {
        return ActionOutcome::Failed { message: message.to_string() };
    }
    match recorded.get("ok") {
        Some(value) => ActionOutcome::Ok { value: value.clone() },
        // Actions that record themselves store their result directly.
        None => ActionOutcome::Ok { value: recorded },
    }
}
