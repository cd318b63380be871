//! Runs the engine against the store and the actions: one event in, visible effects out.
//! Shared by `postflow chat`, `postflow test` and (later) the Telegram adapter.

use std::sync::Arc;

use crate::actions::{self, ActionContext};
use crate::ai::{Ai, AiCall, Completed};
use crate::config::Bundle;
use crate::config::live::LiveBundle;
use crate::engine::event::{ActionOutcome, Effect, Event, EventKind};
use crate::engine::session::{Session, Wait};
use crate::engine::{self};
use crate::store::{Store, StoreError, Turn};

/// What handling one event produced: the effects to show and the session as committed.
pub struct Handled {
    pub effects: Vec<Effect>,
    pub session: Session,
    /// The slow (AI) action the session now waits for, when the adapter runs those itself
    /// ([`Driver::handle_update`]): the adapter starts it unless it already runs.
    pub waiting_on: Option<Launch>,
}

/// A slow action for the adapter to run outside the store's turn.
#[derive(Debug, Clone, PartialEq)]
pub struct Launch {
    pub chat_id: i64,
    pub user_id: i64,
    pub request_id: u64,
    pub name: String,
    pub args: serde_json::Value,
}

/// Whether slow actions run inside the turn (terminal, tests) or are left to the adapter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slow {
    Inline,
    Deferred,
}

/// The engine, its configuration (swapped whole on reload), its store and its language model.
pub struct Driver {
    pub live: Arc<LiveBundle>,
    pub store: Store,
    pub ai: Arc<Ai>,
}

impl Driver {
    /// A driver whose AI runs offline.
    pub fn new(bundle: Arc<Bundle>, store: Store) -> Self {
        Driver::with_ai(bundle, store, Arc::new(Ai::offline()))
    }

    pub fn with_ai(bundle: Arc<Bundle>, store: Store, ai: Arc<Ai>) -> Self {
        Driver::with_live(LiveBundle::new(bundle), store, ai)
    }

    /// A driver serving whatever bundle `live` holds at each turn.
    pub fn with_live(live: Arc<LiveBundle>, store: Store, ai: Arc<Ai>) -> Self {
        Driver { live, store, ai }
    }

    /// The bundle serving now (a turn keeps the one it started with).
    pub fn bundle(&self) -> Arc<Bundle> {
        self.live.get()
    }

    /// Whether an adapter that runs slow actions itself gets this one: a model's actions, not
    /// the offline generator's (it answers in microseconds, inside the turn).
    pub fn deferred(&self, action: &str) -> bool {
        Ai::handles(action) && !self.ai.llm().is_offline()
    }

    /// The session of a chat as stored (a fresh one if the chat is new).
    pub fn session(&self, chat_id: i64, user_id: i64) -> Result<Session, StoreError> {
        Ok(self.store.load_session(chat_id)?.unwrap_or_else(|| Session::new(chat_id, user_id)))
    }

    /// Handles one event and returns the effects the adapter must show (sends, edits, answers,
    /// ends), in order, with the session as committed. Actions run inline and their results are fed back as events.
    ///
    /// Everything the event changes — the session, posts written by actions, the action log —
    /// commits in one durable transaction before anything is returned. If the process dies
    /// earlier, the store still holds the state before the event, so the event can simply be
    /// handled again; nothing is half-done and nothing is done twice.
    pub fn handle(&self, event: Event) -> Result<Handled, StoreError> {
        let turn = self.store.begin_turn()?;
        self.handle_in(turn, event, &mut |_| {}, Slow::Inline)
    }

    /// Like [`Driver::handle`], for an adapter that delivers updates at least once: an update
    /// already handled for its chat returns `None` and changes nothing; the user's profile is
    /// recorded in the same transaction; `progress` sees every button answer and action start
    /// as soon as the engine produces it (before the action runs), so the adapter can answer
    /// the press and show "typing…" at once. Slow (AI) actions are not run here: the session
    /// is committed waiting for one, [`Handled::waiting_on`] names it, and the adapter runs it
    /// and hands the result to [`Driver::finish_action`]; meanwhile the chat stays responsive.
    pub fn handle_update(
        &self,
        event: Event,
        delivery: &Delivery,
        progress: &mut dyn FnMut(&Effect),
    ) -> Result<Option<Handled>, StoreError> {
        let started = std::time::Instant::now();
        let handled = self.handle_update_timed(event, delivery, progress);
        crate::telemetry::step_finished(started.elapsed());
        handled
    }

    fn handle_update_timed(
        &self,
        event: Event,
        delivery: &Delivery,
        progress: &mut dyn FnMut(&Effect),
    ) -> Result<Option<Handled>, StoreError> {
        let turn = self.store.begin_turn()?;
        if let Some(update_id) = delivery.update_id
            && !turn.first_sight_of_update(event.chat_id, update_id, event.now)?
        {
            return Ok(None);
        }
        if let Some(user) = &delivery.user {
            turn.touch_user(user)?;
        }
        self.handle_in(turn, event, progress, Slow::Deferred).map(Some)
    }

    /// Hands a slow action's result to the engine: its model calls are recorded, and the flow
    /// moves on (a result the session no longer waits for — the admin cancelled — is recorded
    /// and otherwise ignored). `None` if this result was already handled.
    pub fn finish_action(
        &self,
        launch: &Launch,
        completed: Completed,
        now: i64,
        progress: &mut dyn FnMut(&Effect),
    ) -> Result<Option<Handled>, StoreError> {
        let turn = self.store.begin_turn()?;
        if turn.action_result(launch.chat_id, launch.request_id)?.is_some() {
            return Ok(None);
        }
        let base = Event { chat_id: launch.chat_id, user_id: launch.user_id, now, kind: EventKind::Resume };
        // A result for a request the session no longer has (cancelled, or a fresh session that
        // reuses the id for another action) must not be recorded under that id: only its model
        // calls are kept, for accounting.
        let pending = match turn.load_session(launch.chat_id) {
            Ok(session) => session.and_then(|s| s.pending),
            // A record that no longer decodes waits for nothing.
            Err(StoreError::Corrupt(_)) => None,
            Err(other) => return Err(other),
        };
        let current = pending
            .is_some_and(|p| p.request_id == launch.request_id && p.name == launch.name && p.args == launch.args);
        if !current {
            for call in &completed.calls {
                record_ai_call(&turn, &base, call)?;
            }
            turn.commit()?;
            tracing::info!(chat_id = launch.chat_id, request_id = launch.request_id, "a stale AI result was dropped");
            return Ok(None);
        }
        let outcome = record_outcome(&turn, &base, launch.request_id, &launch.name, completed)?;
        let event = Event { kind: EventKind::ActionResult { request_id: launch.request_id, outcome }, ..base };
        self.handle_in(turn, event, progress, Slow::Deferred).map(Some)
    }

    fn handle_in(
        &self,
        turn: Turn,
        event: Event,
        progress: &mut dyn FnMut(&Effect),
        slow: Slow,
    ) -> Result<Handled, StoreError> {
        let mut session = match turn.load_session(event.chat_id) {
            Ok(Some(session)) => session,
            Ok(None) => Session::new(event.chat_id, event.user_id),
            // A record that no longer decodes must not lock the chat out: start afresh, with
            // request ids past every recorded action (so no old result is replayed) and a
            // nonce that outdates every old button.
            Err(StoreError::Corrupt(problem)) => {
                tracing::warn!(chat_id = event.chat_id, "starting a fresh session: {problem}");
                let mut fresh = Session::new(event.chat_id, event.user_id);
                fresh.next_request = turn.last_request(event.chat_id)?.map_or(0, |last| last + 1);
                fresh.nonce = (event.now as u32) | 1;
                fresh
            }
            Err(other) => return Err(other),
        };
        let bundle = self.live.get();
        let (flow, step) = session.stack.last().map_or(("", ""), |frame| (frame.flow.as_str(), frame.step.as_str()));
        let step_span = tracing::info_span!("step", chat_id = event.chat_id, flow, step).entered();
        let mut shown = Vec::new();
        // A session saved while waiting for an action (a crash, or an adapter that runs slow
        // actions outside the turn) gets the action carried out first — unless the adapter runs
        // slow actions itself and this one is slow.
        let is_event_result = matches!(event.kind, EventKind::ActionResult { .. });
        if let (Wait::Action { .. }, Some(pending)) = (&session.wait, &session.pending)
            && engine::pending_is_current(&bundle, &session)
            && !(slow == Slow::Deferred && self.deferred(&pending.name))
            && !is_event_result
        {
            let (request_id, name, args) = (pending.request_id, pending.name.clone(), pending.args.clone());
            let outcome = self.run_action(&bundle, &turn, &event, request_id, &name, &args, slow)?;
            let resume = Event { kind: EventKind::ActionResult { request_id, outcome }, ..event.clone() };
            session = self.apply(&bundle, &turn, session, resume, &mut shown, progress, slow)?;
        }
        let session = self.apply(&bundle, &turn, session, event, &mut shown, progress, slow)?;
        turn.save_session(&session)?;
        turn.commit()?;
        let (flow, step) = session.stack.last().map_or(("", ""), |frame| (frame.flow.as_str(), frame.step.as_str()));
        tracing::debug!(to_flow = flow, to_step = step, effects = shown.len(), "step done");
        drop(step_span);
        let waiting_on = match (&session.wait, &session.pending) {
            (Wait::Action { request_id }, Some(pending))
                if pending.request_id == *request_id && self.deferred(&pending.name) && slow == Slow::Deferred =>
            {
                Some(Launch {
                    chat_id: session.chat_id,
                    user_id: session.user_id,
                    request_id: *request_id,
                    name: pending.name.clone(),
                    args: pending.args.clone(),
                })
            }
            _ => None,
        };
        Ok(Handled { effects: shown, session, waiting_on })
    }

    /// Runs the engine until no action is left.
    #[allow(clippy::too_many_arguments)]
    fn apply(
        &self,
        bundle: &Bundle,
        turn: &Turn,
        mut session: Session,
        event: Event,
        shown: &mut Vec<Effect>,
        progress: &mut dyn FnMut(&Effect),
        slow: Slow,
    ) -> Result<Session, StoreError> {
        let mut queue = vec![event];
        while let Some(event) = queue.pop() {
            let (next, effects) = engine::step_owned(bundle, session, &event);
            session = next;
            // Answers first: a press is answered before the action it starts runs.
            effects.iter().filter(|e| matches!(e, Effect::Answer { .. })).for_each(&mut *progress);
            for effect in effects {
                match effect {
                    Effect::RunAction { request_id, name, args } => {
                        if slow == Slow::Deferred && self.deferred(&name) {
                            // The adapter runs it (see `Handled::waiting_on`).
                            continue;
                        }
                        progress(&Effect::RunAction { request_id, name: name.clone(), args: serde_json::Value::Null });
                        let outcome = self.run_action(bundle, turn, &event, request_id, &name, &args, slow)?;
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
    #[allow(clippy::too_many_arguments)]
    fn run_action(
        &self,
        bundle: &Bundle,
        turn: &Turn,
        event: &Event,
        request_id: u64,
        name: &str,
        args: &serde_json::Value,
        slow: Slow,
    ) -> Result<ActionOutcome, StoreError> {
        if let Some(recorded) = turn.action_result(event.chat_id, request_id)? {
            tracing::info!(chat_id = event.chat_id, request_id, action = name, "replaying a recorded action result");
            return Ok(outcome_from_record(recorded));
        }
        if Ai::handles(name) {
            debug_assert!(slow == Slow::Inline || !self.deferred(name), "slow actions are deferred to the adapter");
            let completed = self.ai.run_blocking(bundle, name, args);
            return record_outcome(turn, event, request_id, name, completed);
        }
        let ctx = ActionContext {
            bundle,
            store: turn,
            chat_id: event.chat_id,
            user_id: event.user_id,
            request_id,
            now: event.now,
        };
        let started = std::time::Instant::now();
        let result = actions::run(&ctx, name, args);
        let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
        tracing::debug!(chat_id = event.chat_id, action = name, elapsed_ms, "action done");
        record_outcome(turn, event, request_id, name, Completed { result, calls: Vec::new() })
    }
}

/// Records an action's result (so it is never carried out twice) and its model calls, and
/// returns the outcome for the engine.
fn record_outcome(
    turn: &Turn,
    event: &Event,
    request_id: u64,
    name: &str,
    completed: Completed,
) -> Result<ActionOutcome, StoreError> {
    for call in &completed.calls {
        record_ai_call(turn, event, call)?;
    }
    let (outcome, record) = match completed.result {
        Ok(value) => (ActionOutcome::Ok { value: value.clone() }, serde_json::json!({ "ok": value })),
        Err(error) => {
            let (code, detail) = (error.code.code().to_string(), error.detail);
            tracing::warn!(chat_id = event.chat_id, action = name, code, "action failed: {detail}");
            let record = serde_json::json!({ "failed": { "code": code, "detail": detail } });
            (ActionOutcome::Failed { code, detail }, record)
        }
    };
    turn.record_action(event.chat_id, request_id, &record)?;
    Ok(outcome)
}

fn record_ai_call(turn: &Turn, event: &Event, call: &AiCall) -> Result<(), StoreError> {
    let mut record = serde_json::to_value(call).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    record["chat_id"] = serde_json::Value::from(event.chat_id);
    record["user"] = serde_json::Value::from(event.user_id);
    turn.record_event("ai_call", event.now, &record)
}

/// What an adapter knows about how an event reached it.
#[derive(Debug, Clone, Default)]
pub struct Delivery {
    /// The Telegram update id, for adapters that may see an update twice.
    pub update_id: Option<u64>,
    /// The authorised user behind the event, recorded with their last activity.
    pub user: Option<crate::store::User>,
}

fn outcome_from_record(recorded: serde_json::Value) -> ActionOutcome {
    if let Some(failed) = recorded.get("failed") {
        let field = |name: &str| failed.get(name).and_then(|v| v.as_str()).unwrap_or_default().to_string();
        return ActionOutcome::Failed { code: field("code"), detail: field("detail") };
    }
    ActionOutcome::Ok { value: recorded.get("ok").cloned().unwrap_or(serde_json::Value::Null) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_update_is_handled_once_and_restarted_update_ids_are_not_mistaken_for_old_ones() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb")).unwrap();
        let turn = store.begin_turn().unwrap();
        let day = 24 * 3600;
        assert!(turn.first_sight_of_update(5, 900, 1000).unwrap());
        assert!(!turn.first_sight_of_update(5, 900, 1060).unwrap(), "a redelivery is seen");
        assert!(!turn.first_sight_of_update(5, 899, 1060).unwrap(), "an older one too");
        assert!(turn.first_sight_of_update(6, 899, 1060).unwrap(), "another chat is separate");
        assert!(turn.first_sight_of_update(5, 12, 1000 + 8 * day).unwrap(), "ids restarted after a quiet week");
        turn.commit().unwrap();
    }

    #[test]
    fn a_damaged_session_record_starts_afresh_without_replaying_old_actions() {
        let loaded = crate::config::load(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")),
            crate::actions::CATALOGUE,
            chrono_tz::Asia::Yerevan,
        );
        let bundle = Arc::new(loaded.result.unwrap_or_else(|_| panic!("shipped config")));
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb")).unwrap();
        {
            let turn = store.begin_turn().unwrap();
            turn.record_action(9, 4, &serde_json::json!({ "ok": { "id": 77 } })).unwrap();
            turn.commit().unwrap();
        }
        store.write_raw_session(9, b"{ not json").unwrap();
        let driver = Driver::new(bundle, store);
        let text = |text: &str| Event {
            chat_id: 9,
            user_id: 9,
            now: 1_795_672_800,
            kind: EventKind::Text { text: text.into() },
        };
        let new_post = driver.bundle().menu.reply_keyboard[0][0].label.clone();
        let handled = driver.handle(text(&new_post)).unwrap();
        assert!(!handled.effects.is_empty(), "the chat is not locked out");
        let session = driver.session(9, 9).unwrap();
        assert_eq!(session, handled.session);
        assert_eq!(session.next_request, 5, "request ids continue after the recorded ones");
        assert_eq!(session.current().map(|f| f.flow.as_str()), Some("create_post"));
    }
}
