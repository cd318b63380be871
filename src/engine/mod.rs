//! The pure conversation engine: `step(bundle, session, event) -> (session, effects)`.
//!
//! No I/O, no clock and no randomness: time and ids arrive in events, and everything the engine
//! wants done in the world leaves as an [`Effect`].

pub mod codec;
pub mod event;
pub mod html;
pub mod post_view;
pub mod render;
pub mod session;
pub mod widgets;

use std::sync::Arc;

use chrono::{Datelike, NaiveDate, NaiveTime, Timelike};
use minijinja::Value;

use crate::config::bundle::{ArgValue, Bundle, CommandTarget, InputKind, MediaKind, SlotKind, Step, Target};
use codec::{Press, decode, encode};
use event::{ActionOutcome, Effect, Event, EventKind, InlineButton, Keyboard, Media, OutMessage};
use session::{Frame, ListItem, PendingAction, Session, View, Wait};
use widgets::WidgetWords;

/// The name of the built-in action that clears the session's slots (`with: { keep: [...] }`).
pub const BUILTIN_SESSION_CLEAR: &str = "session.clear";

/// Telegram's limits, in UTF-16 units after entity parsing.
const MAX_TEXT: usize = 4096;
const MAX_CAPTION: usize = 1024;
const MAX_TOAST: usize = 200;

/// Transitions allowed within one event before the engine assumes a loop in the flow.
const MAX_HOPS: usize = 64;
/// Notices kept while an action runs; more are dropped (the posts' lists still show them).
const MAX_NOTICES: usize = 16;
/// Flow frames on the stack; a notice that would go deeper is not shown.
const MAX_DEPTH: usize = 16;

/// Applies one event to a session and returns the new session and the effects to carry out.
pub fn step(bundle: &Bundle, session: &Session, event: &Event) -> (Session, Vec<Effect>) {
    step_owned(bundle, session.clone(), event)
}

/// [`step`] for a caller that gives up its session (saves a copy).
pub fn step_owned(bundle: &Bundle, mut session: Session, event: &Event) -> (Session, Vec<Effect>) {
    let scope = Arc::new(render::Scope::new(bundle, &mut session, event.now));
    let mut run = Run {
        bundle,
        scope_value: Value::from_dyn_object(scope.clone()),
        scope,
        s: session,
        fx: Vec::new(),
        now: event.now,
        message_id: None,
        answer: None,
        edit_in_place: false,
        failed: false,
        hops: 0,
    };
    run.s.chat_id = event.chat_id;
    run.s.user_id = event.user_id;
    run.s.updated_at = event.now;
    let step_gone = run.forget_vanished_step();
    // The admin was told their step is gone and shown the menu: what they typed or pressed
    // was meant for that step, so it is not taken as a new request.
    let meant_for_the_step =
        matches!(event.kind, EventKind::Text { .. } | EventKind::Media { .. } | EventKind::Button { .. });
    if !(step_gone && meant_for_the_step) {
        run.handle(&event.kind);
    }
    // Notices held while an action ran are shown once the chat waits for the user again.
    while !run.failed && !matches!(run.s.wait, Wait::Action { .. }) && !run.s.notices.is_empty() {
        let notice = run.s.notices.remove(0);
        run.notice(notice);
    }
    let Run { mut s, mut fx, answer, scope, .. } = run;
    s.slots = scope.take();
    if let Some(text) = answer {
        // Toasts are plain text of at most 200 characters in Telegram.
        let text = text.map(|t| html::to_plain_text(&t, false).trim().chars().take(MAX_TOAST).collect());
        fx.insert(0, Effect::Answer { text });
    }
    (s, fx)
}

struct Run<'a> {
    bundle: &'a Bundle,
    /// The slots of this event and the template context over them.
    scope: Arc<render::Scope>,
    scope_value: Value,
    s: Session,
    fx: Vec<Effect>,
    now: i64,
    /// The message whose button was pressed, for steps that edit in place.
    message_id: Option<i64>,
    /// Set for button presses: the answer (toast) to send first.
    answer: Option<Option<String>>,
    /// The press navigates a widget (pager, calendar, hours): edit the message in place.
    edit_in_place: bool,
    /// A run-time configuration error stopped this event: nothing more runs.
    failed: bool,
    hops: usize,
}

/// Why an input was refused: a text key of the menu, plus values for its template.
struct Refusal {
    key: &'static str,
    vars: Vec<(&'static str, Value)>,
}

impl Refusal {
    fn new(key: &'static str) -> Self {
        Refusal { key, vars: Vec::new() }
    }
    fn with(mut self, name: &'static str, value: impl Into<Value>) -> Self {
        self.vars.push((name, value.into()));
        self
    }
}

impl<'a> Run<'a> {
    fn handle(&mut self, kind: &EventKind) {
        match kind {
            EventKind::Command { name, .. } => self.command(name),
            EventKind::Text { text } => self.text(text),
            EventKind::Media { media } => self.media(media),
            EventKind::Button { data, message_id } => {
                self.answer = Some(None);
                self.message_id = *message_id;
                self.press(data);
            }
            EventKind::ActionResult { request_id, outcome } => self.action_result(*request_id, outcome),
            EventKind::Timer { .. } => {}
            EventKind::Notice { notice } => self.notice(notice.clone()),
            EventKind::Resume => {
                if self.s.wait == Wait::User
                    && let Some(step) = self.current_step()
                {
                    self.show(step, None);
                }
            }
        }
    }

    // ----- entry points -------------------------------------------------------------------

    fn command(&mut self, name: &str) {
        let name = name.trim_start_matches('/').split('@').next().unwrap_or("");
        let target = self.bundle.menu.commands.iter().find(|c| c.name == name).map(|c| c.target.clone());
        match target {
            Some(CommandTarget::Flow(flow)) => self.start_flow(&flow),
            Some(CommandTarget::Cancel) => self.cancel(),
            None => self.say_text("unknown_input", &[], true),
        }
    }

    fn text(&mut self, text: &str) {
        let trimmed = text.trim();
        let menu_flow =
            self.bundle.menu.reply_keyboard.iter().flatten().find(|b| b.label == trimmed).map(|b| b.flow.clone());
        if let Some(flow) = menu_flow {
            return self.start_flow(&flow);
        }
        match (self.s.wait.clone(), self.current_step()) {
            (Wait::User, Some(step)) => match &step.input {
                Some(input) => match self.parse_text(&input.kind, trimmed) {
                    Ok(value) => self.accept(step, value),
                    Err(refusal) => self.refuse(step, refusal),
                },
                None => self.refuse(step, Refusal::new("use_buttons")),
            },
            (Wait::Action { .. }, Some(_)) => self.say_text("busy", &[], false),
            _ => self.say_text("unknown_input", &[], true),
        }
    }

    fn media(&mut self, media: &Media) {
        match (self.s.wait.clone(), self.current_step()) {
            (Wait::User, Some(step)) => match step.input.as_ref().map(|i| &i.kind) {
                Some(InputKind::Media(kinds)) => {
                    if media.kinds().all(|kind| kinds.contains(&kind)) {
                        let value = serde_json::to_value(media).unwrap_or_default();
                        self.accept(step, value)
                    } else {
                        let names: Vec<&str> = kinds.iter().map(|k| k.name()).collect();
                        self.refuse(step, Refusal::new("media_expected").with("kinds", names.join(", ")))
                    }
                }
                Some(_) => self.refuse(step, Refusal::new("text_expected")),
                None => self.refuse(step, Refusal::new("use_buttons")),
            },
            (Wait::Action { .. }, Some(_)) => self.say_text("busy", &[], false),
            _ => self.say_text("unknown_input", &[], true),
        }
    }

    fn press(&mut self, data: &str) {
        let Some(callback) = decode(data) else {
            self.answer_with("invalid_button");
            self.fx.push(Effect::Warn { message: format!("undecodable callback data {data:?}") });
            return;
        };
        let step = self.current_step();
        let fresh = callback.nonce == self.s.nonce
            && self.s.view.fingerprint == self.bundle.fingerprint
            && self.s.wait == Wait::User;
        let Some(step) = step.filter(|_| fresh) else {
            if callback.press == Press::Noop {
                return;
            }
            let key = if matches!(self.s.wait, Wait::Action { .. }) { "busy" } else { "outdated" };
            self.answer_with(key);
            // Re-show the current step so the admin has working buttons again.
            if self.s.wait == Wait::User
                && let Some(step) = self.current_step()
            {
                self.message_id = None;
                self.show(step, None);
            }
            return;
        };
        match callback.press {
            Press::Noop => {}
            Press::Button(index) => match step.buttons.get(index).filter(|b| self.button_shown(b)) {
                Some(button) => {
                    if let Some(toast) = &button.toast {
                        self.answer = Some(Some(toast.clone()));
                    }
                    for (slot, expr) in &button.set {
                        if !self.set_from_expr(slot, expr) {
                            return;
                        }
                    }
                    self.reset_view();
                    match &button.target {
                        Target::Goto(next) => self.goto(next),
                        Target::Call(flow) => self.call(flow),
                        Target::End => self.finish_flow(),
                        Target::Stay => {
                            self.edit_in_place = true;
                            self.show(step, None);
                        }
                    }
                }
                None => self.answer_with("outdated"),
            },
            Press::Item(index) => match (step.list.as_ref(), self.s.view.items.get(index).cloned()) {
                (Some(list), Some(item)) => {
                    if let Some(slot) = &list.save_as {
                        self.save(slot, item.value);
                    }
                    self.advance(step);
                }
                _ => self.answer_with("outdated"),
            },
            Press::Page(page) => {
                self.edit_in_place = true;
                self.s.view.page = page;
                self.show(step, None);
            }
            Press::Skip => match step.input.as_ref() {
                Some(input) if input.skip.is_some() => {
                    if let Some(slot) = &input.save_as {
                        self.save(slot, serde_json::Value::Null);
                    }
                    self.advance(step);
                }
                _ => self.answer_with("outdated"),
            },
            Press::Day { year, month, day } => match step.input.as_ref().map(|i| &i.kind) {
                Some(InputKind::Date { allow_past }) => {
                    let date = NaiveDate::from_ymd_opt(year, month, day).unwrap_or_default();
                    if !allow_past && date < self.today() {
                        self.answer_with("date_past");
                        return;
                    }
                    self.accept(step, serde_json::Value::from(date.format("%Y-%m-%d").to_string()));
                }
                _ => self.answer_with("outdated"),
            },
            Press::Month { year, month } => {
                let earliest = match step.input.as_ref().map(|i| &i.kind) {
                    Some(InputKind::Date { allow_past }) => widgets::earliest_month(self.today(), *allow_past),
                    _ => return,
                };
                self.edit_in_place = true;
                self.s.view.month = Some(earliest.map_or((year, month), |e| e.max((year, month))));
                self.show(step, None);
            }
            Press::Hour(hour) => {
                let allowed = match step.input.as_ref().map(|i| &i.kind) {
                    Some(InputKind::Time { first_hour, last_hour, .. }) => (*first_hour..=*last_hour).contains(&hour),
                    _ => false,
                };
                if !allowed {
                    self.answer_with("time_invalid");
                    return;
                }
                self.edit_in_place = true;
                self.s.view.hour = Some(hour);
                self.show(step, None);
            }
            Press::Hours => {
                self.edit_in_place = true;
                self.s.view.hour = None;
                self.show(step, None);
            }
            Press::Time { hour, minute } => {
                let text = format!("{hour:02}:{minute:02}");
                match step.input.as_ref().map(|i| &i.kind) {
                    Some(kind @ InputKind::Time { .. }) => match self.parse_text(kind, &text) {
                        Ok(value) => self.accept(step, value),
                        Err(refusal) => self.answer = Some(self.text_of(refusal.key, &refusal.vars)),
                    },
                    _ => self.answer_with("outdated"),
                }
            }
            Press::Choice(index) => match step.input.as_ref().map(|i| &i.kind) {
                Some(InputKind::Choice(options)) if index < options.len() => {
                    self.accept(step, options[index].value.clone())
                }
                _ => self.answer_with("outdated"),
            },
        }
    }

    fn action_result(&mut self, request_id: u64, outcome: &ActionOutcome) {
        if self.s.wait != (Wait::Action { request_id }) {
            self.fx.push(Effect::Warn { message: format!("ignored the stale result of action request {request_id}") });
            return;
        }
        let Some(step) = self.current_step() else {
            return;
        };
        let Some(action) = step.action.as_ref() else {
            return;
        };
        self.s.wait = Wait::Nothing;
        self.s.pending = None;
        match outcome {
            ActionOutcome::Ok { value } => {
                if let Some(slot) = &action.save_as {
                    self.save(slot, value.clone());
                }
                self.advance(step);
            }
            ActionOutcome::Failed { code, detail } => {
                self.fx.push(Effect::Warn { message: format!("action `{}` failed ({code}): {detail}", action.name) });
                // The admin reads the menu's words for the code, never the technical detail.
                let words = self
                    .text_of(&format!("error_{code}"), &[])
                    .or_else(|| self.text_of("error_unavailable", &[]))
                    .unwrap_or_default();
                let message = html::to_plain_text(&words, false);
                self.save("error", serde_json::Value::from(message.as_str()));
                match &action.on_error {
                    Some(target) => self.goto(target),
                    None => {
                        self.say_text("action_failed", &[("error", Value::from(message.as_str()))], true);
                        self.stop();
                    }
                }
            }
        }
    }

    // ----- flow control -------------------------------------------------------------------

    fn start_flow(&mut self, flow_id: &str) {
        let Some(flow) = self.bundle.flow(flow_id) else {
            self.internal_error(format!("flow `{flow_id}` does not exist"));
            return;
        };
        self.s.stack.clear();
        self.retain_slots(|_| false);
        self.s.wait = Wait::Nothing;
        self.s.pending = None;
        self.reset_view();
        self.s.stack.push(Frame {
            flow: flow.id.clone(),
            step: flow.start.clone(),
            interrupt: false,
            shadowed: Default::default(),
        });
        self.apply_defaults(flow_id);
        self.enter();
    }

    /// Shows a notice: its flow runs on top of the conversation, which is shown again where it
    /// was when the notice's flow ends. While an action runs the notice waits its turn.
    fn notice(&mut self, notice: session::Notice) {
        let Some(flow) = self.bundle.flow(&notice.flow) else {
            return self.internal_error(format!("notice flow `{}` does not exist", notice.flow));
        };
        if matches!(self.s.wait, Wait::Action { .. }) {
            if self.s.notices.len() < MAX_NOTICES {
                self.s.notices.push(notice);
            } else {
                self.fx.push(Effect::Warn {
                    message: format!("a notice ({}) was dropped: too many waiting", notice.flow),
                });
            }
            return;
        }
        let step = notice.step.clone().filter(|s| flow.steps.contains_key(s)).unwrap_or_else(|| flow.start.clone());
        let interrupt = !self.s.stack.is_empty();
        if self.s.stack.len() >= MAX_DEPTH {
            self.fx
                .push(Effect::Warn { message: format!("a notice ({}) was dropped: too many on screen", notice.flow) });
            return;
        }
        // The notice's slots must not clobber the interrupted conversation's (another notice of
        // the same flow, say): their values are kept and given back when the notice ends.
        let shadowed = if interrupt {
            flow.slots.keys().chain(notice.slots.keys()).map(|name| (name.clone(), self.scope.get(name))).collect()
        } else {
            Default::default()
        };
        self.s.stack.push(Frame { flow: flow.id.clone(), step, interrupt, shadowed });
        self.apply_defaults(&notice.flow);
        for (slot, value) in notice.slots {
            self.save(&slot, value);
        }
        self.s.wait = Wait::Nothing;
        self.message_id = None;
        self.reset_view();
        self.enter();
    }

    fn call(&mut self, flow_id: &str) {
        let Some(flow) = self.bundle.flow(flow_id) else {
            self.internal_error(format!("flow `{flow_id}` does not exist"));
            return;
        };
        self.s.stack.push(Frame {
            flow: flow.id.clone(),
            step: flow.start.clone(),
            interrupt: false,
            shadowed: Default::default(),
        });
        self.apply_defaults(flow_id);
        self.enter();
    }

    fn cancel(&mut self) {
        self.s.stack.clear();
        self.retain_slots(|_| false);
        self.stop();
        self.say_text("cancelled", &[], true);
    }

    /// Ends the current flow: returns to the caller, or makes the session idle.
    fn finish_flow(&mut self) {
        if self.failed {
            return;
        }
        if self.leave_frame() {
            self.enter();
        }
    }

    fn stop(&mut self) {
        self.s.stack.clear();
        self.s.wait = Wait::Nothing;
        self.s.pending = None;
        self.reset_view();
        self.fx.push(Effect::End);
    }

    fn goto(&mut self, step_id: &str) {
        self.jump(step_id.to_string());
        self.enter();
    }

    /// Points the current frame at another step of its flow.
    fn jump(&mut self, step_id: String) {
        if let Some(frame) = self.s.stack.last_mut() {
            frame.step = step_id;
        }
        self.reset_view();
    }

    /// Follows the step's `next` (the first branch whose condition holds), or ends the flow.
    fn advance(&mut self, step: &Step) {
        if self.move_on(step) {
            self.enter();
        }
    }

    /// Moves past `step`: to its first `next` branch that holds, or out of its flow. False when
    /// nothing more runs in this event.
    fn move_on(&mut self, step: &Step) -> bool {
        if self.failed {
            return false;
        }
        let ctx = self.ctx(&[]);
        match self.pick_branch(step, &ctx) {
            Ok(Some(target)) => {
                self.jump(target);
                true
            }
            Ok(None) => self.leave_frame(),
            Err(err) => {
                self.internal_error(err);
                false
            }
        }
    }

    /// Runs the current step and the steps it leads to until one waits.
    fn enter(&mut self) {
        loop {
            if self.failed {
                return;
            }
            self.hops += 1;
            if self.hops > MAX_HOPS {
                // Do not flood the chat with what the loop said so far.
                self.fx.retain(|e| !matches!(e, Effect::Send { .. } | Effect::Edit { .. }));
                return self.internal_error("too many steps in one turn: the flow loops".to_string());
            }
            let Some(step) = self.current_step() else {
                return;
            };
            for (slot, expr) in &step.set {
                if !self.set_from_expr(slot, expr) {
                    return;
                }
            }
            if let Some(action) = &step.action {
                if step.say.is_some() {
                    self.show(step, None);
                }
                let ctx = self.ctx(&[]);
                let mut args = serde_json::Map::new();
                for (name, arg) in &action.args {
                    let value = match arg {
                        ArgValue::Literal(v) => Ok(v.clone()),
                        ArgValue::Expression(expr) => {
                            render::eval(self.bundle, expr, &ctx).map(|v| render::to_json(&v))
                        }
                        ArgValue::Template(name) => {
                            render::render(self.bundle, name, &ctx).map(serde_json::Value::from)
                        }
                    };
                    match value {
                        Ok(v) => {
                            args.insert(name.clone(), v);
                        }
                        Err(err) => {
                            return self.internal_error(format!("argument `{name}` of `{}`: {err}", action.name));
                        }
                    }
                }
                let args = serde_json::Value::Object(args);
                if action.name == BUILTIN_SESSION_CLEAR {
                    // A built-in action: pure, so the engine does it itself.
                    let keep: Vec<String> = args
                        .get("keep")
                        .and_then(|k| k.as_array())
                        .map(|k| k.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
                        .unwrap_or_default();
                    self.retain_slots(|name| keep.iter().any(|k| k == name));
                    if self.move_on(step) {
                        continue;
                    }
                    return;
                }
                let request_id = self.s.next_request;
                self.s.next_request += 1;
                self.s.wait = Wait::Action { request_id };
                self.s.pending = Some(PendingAction { request_id, name: action.name.clone(), args: args.clone() });
                self.fx.push(Effect::RunAction { request_id, name: action.name.clone(), args });
                return;
            }
            if step.say.is_some() || step.waits_for_user() {
                let interactive = self.show(step, None);
                // A step whose buttons are all hidden (or whose list is empty) and that asks for
                // no input moves on instead of waiting with nothing to press.
                if step.waits_for_user() && (interactive || step.input.is_some()) {
                    self.s.wait = Wait::User;
                    return;
                }
            }
            self.s.wait = Wait::Nothing;
            if let Some(flow) = &step.call {
                let Some(callee) = self.bundle.flow(flow) else {
                    return self.internal_error(format!("flow `{flow}` does not exist"));
                };
                self.s.stack.push(Frame {
                    flow: callee.id.clone(),
                    step: callee.start.clone(),
                    interrupt: false,
                    shadowed: Default::default(),
                });
                self.apply_defaults(flow);
                continue;
            }
            if step.end {
                if self.leave_frame() {
                    continue;
                }
                return;
            }
            if !self.move_on(step) {
                return;
            }
        }
    }

    /// Pops the current frame and moves the caller to its `next`; false when nothing is left
    /// to run (the session is then idle).
    fn leave_frame(&mut self) -> bool {
        self.reset_view();
        loop {
            let popped = self.s.stack.pop();
            let interrupted = popped.as_ref().is_some_and(|frame| frame.interrupt);
            for (slot, value) in popped.map(|frame| frame.shadowed).unwrap_or_default() {
                match value {
                    Some(value) => self.save(&slot, value),
                    None => self.scope.retain(|name| name != slot),
                }
            }
            let Some(caller) = self.current_step() else {
                self.stop();
                return false;
            };
            // A notice ended: the conversation it interrupted is shown where it was.
            if interrupted {
                self.message_id = None;
                self.show(caller, None);
                self.s.wait = Wait::User;
                return false;
            }
            let ctx = self.ctx(&[]);
            match self.pick_branch(caller, &ctx) {
                Ok(Some(target)) => {
                    self.jump(target);
                    return true;
                }
                // Called from a button of a step that waits: back to that step.
                Ok(None) if caller.waits_for_user() => {
                    self.message_id = None;
                    self.show(caller, None);
                    self.s.wait = Wait::User;
                    return false;
                }
                Ok(None) => continue,
                Err(err) => {
                    self.internal_error(err);
                    return false;
                }
            }
        }
    }

    fn pick_branch(&self, step: &Step, ctx: &Value) -> Result<Option<String>, String> {
        for branch in &step.next {
            let taken = match &branch.condition {
                None => true,
                Some(expr) => render::eval(self.bundle, expr, ctx)
                    .map_err(|err| format!("condition `{expr}` in step `{}`: {err}", step.id))?
                    .is_true(),
            };
            if taken {
                return Ok(Some(branch.goto.clone()));
            }
        }
        Ok(None)
    }

    // ----- inputs -------------------------------------------------------------------------

    /// Saves an accepted input and moves on.
    fn accept(&mut self, step: &Step, value: serde_json::Value) {
        if let Some(slot) = step.input.as_ref().and_then(|i| i.save_as.as_ref()) {
            self.save(slot, value);
        }
        self.advance(step);
    }

    /// Says why the input was refused and asks the same step again, in one message.
    fn refuse(&mut self, step: &Step, refusal: Refusal) {
        let custom = step.input.as_ref().and_then(|i| i.error.as_ref());
        let ctx = self.ctx(&refusal.vars);
        let reason = match custom {
            Some(template) => render::render(self.bundle, template, &ctx),
            None => self.menu_text(refusal.key, &ctx),
        };
        match reason {
            Ok(reason) => {
                self.message_id = None;
                self.show(step, Some(reason));
            }
            Err(err) => self.internal_error(err),
        }
    }

    fn parse_text(&self, kind: &InputKind, text: &str) -> Result<serde_json::Value, Refusal> {
        match kind {
            InputKind::Text { min_length, max_length, pattern } => {
                if text.is_empty() {
                    return Err(Refusal::new("text_expected"));
                }
                let length = text.chars().count() as u32;
                let limits = |key: &'static str| {
                    Refusal::new(key)
                        .with("min", min_length.map(Value::from).unwrap_or_default())
                        .with("max", max_length.map(Value::from).unwrap_or_default())
                        .with("length", length)
                };
                if min_length.is_some_and(|min| length < min) {
                    return Err(limits("text_too_short"));
                }
                if max_length.is_some_and(|max| length > max) {
                    return Err(limits("text_too_long"));
                }
                if let Some(re) = pattern.as_ref().filter(|re| !re.is_match(text)) {
                    return Err(Refusal::new("text_pattern").with("pattern", re.as_str()));
                }
                Ok(serde_json::Value::from(text))
            }
            InputKind::Number { min, max } => {
                let number: f64 = text
                    .replace([' ', '\u{a0}'], "")
                    .replace(',', ".")
                    .parse()
                    .ok()
                    .filter(|n: &f64| n.is_finite())
                    .ok_or_else(|| Refusal::new("number_invalid"))?;
                let out_of_range = min.is_some_and(|m| number < m) || max.is_some_and(|m| number > m);
                if out_of_range {
                    return Err(Refusal::new("number_range")
                        .with("min", min.map(number_value).unwrap_or_default())
                        .with("max", max.map(number_value).unwrap_or_default()));
                }
                if number.fract() == 0.0 && number.abs() < 1e15 {
                    return Ok(serde_json::Value::from(number as i64));
                }
                Ok(serde_json::Number::from_f64(number).map(serde_json::Value::Number).unwrap_or_default())
            }
            InputKind::Media(kinds) => {
                let names: Vec<&str> = kinds.iter().map(|k| k.name()).collect();
                Err(Refusal::new("media_expected").with("kinds", names.join(", ")))
            }
            InputKind::Button => match post_view::parse_link_button(text) {
                Ok(button) => Ok(serde_json::json!({ "label": button.label, "url": button.url })),
                Err(problem) => Err(Refusal::new(problem.key())),
            },
            InputKind::Url => post_view::check_url(text)
                .map(serde_json::Value::from)
                .ok_or_else(|| Refusal::new(post_view::ButtonProblem::BadUrl.key())),
            InputKind::Date { allow_past } => {
                let date = parse_date(text).ok_or_else(|| Refusal::new("date_invalid"))?;
                if !allow_past && date < self.today() {
                    return Err(Refusal::new("date_past"));
                }
                Ok(serde_json::Value::from(date.format("%Y-%m-%d").to_string()))
            }
            InputKind::Time { date_slot, minute_step, first_hour, last_hour } => {
                let time = parse_time(text).ok_or_else(|| Refusal::new("time_invalid"))?;
                let in_grid = (*first_hour..=*last_hour).contains(&time.hour()) && time.minute() % minute_step == 0;
                if !in_grid {
                    return Err(Refusal::new("time_invalid"));
                }
                if let Some(limit) = self.time_floor(date_slot.as_deref())
                    && (time.hour(), time.minute()) < limit
                {
                    return Err(Refusal::new("time_past"));
                }
                Ok(serde_json::Value::from(time.format("%H:%M").to_string()))
            }
            InputKind::Choice(options) => {
                let wanted = text.to_lowercase();
                options
                    .iter()
                    .find(|o| {
                        o.label.to_lowercase() == wanted || o.value.as_str().is_some_and(|v| v.to_lowercase() == wanted)
                    })
                    .map(|o| o.value.clone())
                    .ok_or_else(|| Refusal::new("choice_invalid"))
            }
        }
    }

    /// The earliest (hour, minute) allowed when the time's date (from `date_slot`) is today.
    fn time_floor(&self, date_slot: Option<&str>) -> Option<(u32, u32)> {
        let slot = date_slot?;
        let date = self.scope.get(slot)?.as_str().and_then(parse_date)?;
        let local = render::local_time(self.bundle, self.now);
        (date == local.date_naive())
            .then(|| (local.hour(), local.minute() + 1))
            .map(|(h, m)| if m >= 60 { (h + 1, 0) } else { (h, m) })
    }

    // ----- rendering ----------------------------------------------------------------------

    /// Shows the step's message (sending it, or editing the pressed message where the step
    /// says `edit` or a widget navigates), optionally prefixed by a refusal reason.
    /// Returns whether the message carries an inline keyboard.
    ///
    /// Telegram's limits are kept here: text that is empty once cleaned becomes "…"; a caption
    /// over 1024 UTF-16 units is sent as the media alone followed by the text; a text over 4096
    /// is split at paragraph boundaries with the keyboard on the last part; a message with media
    /// is never edited in place (Telegram cannot turn text into media).
    fn show(&mut self, step: &Step, prefix: Option<String>) -> bool {
        let ctx = self.ctx(&[]);
        if let Some(expr) = &step.post {
            match self.post_preview(expr, &ctx) {
                Ok(messages) => self.fx.extend(messages.into_iter().map(|message| Effect::Send { message })),
                Err(err) => {
                    self.internal_error(err);
                    return false;
                }
            }
        }
        let mut text = match &step.say {
            Some(template) => match render::render(self.bundle, template, &ctx) {
                Ok(text) => text,
                Err(err) => {
                    self.internal_error(err);
                    return false;
                }
            },
            None => String::new(),
        };
        let keyboard = match self.keyboard(step, &ctx, &mut text) {
            Ok(keyboard) => keyboard,
            Err(err) => {
                self.internal_error(err);
                return false;
            }
        };
        let interactive = matches!(keyboard, Keyboard::Inline(_));
        if let Some(prefix) = prefix {
            text = if text.is_empty() { prefix } else { format!("{prefix}\n\n{text}") };
        }
        let media = step
            .media_slot
            .as_ref()
            .and_then(|slot| self.scope.get(slot))
            .and_then(|value| serde_json::from_value::<Media>(value).ok());
        let mut text = html::sanitize(&text);
        let mut length = html::sanitized_utf16_len(&text);
        // An album carries neither a keyboard nor (here) a caption: it goes alone, the text after it.
        let album = media.as_ref().is_some_and(|m| !m.more.is_empty());
        // Only a short text can be blank once its tags are gone.
        let blank = length < 64 && html::to_plain_text(&text, false).trim().is_empty();
        let mut parts: Vec<OutMessage> = Vec::new();
        let mut media = media;
        if media.is_some() && (length > MAX_CAPTION || album) {
            parts.push(OutMessage {
                text: String::new(),
                media: media.take(),
                keyboard: Keyboard::None,
                ..Default::default()
            });
            if album && blank && keyboard == Keyboard::None {
                return false;
            }
        }
        if media.is_none() && blank {
            text = "…".to_string();
            length = 1;
        }
        if media.is_some() || length <= MAX_TEXT {
            parts.push(OutMessage { text, media, keyboard, ..Default::default() });
        } else {
            let chunks = html::split_for_telegram(&text, MAX_TEXT);
            let last = chunks.len().saturating_sub(1);
            for (i, chunk) in chunks.into_iter().enumerate() {
                let keyboard = if i == last { keyboard.clone() } else { Keyboard::None };
                parts.push(OutMessage { text: chunk, media: None, keyboard, ..Default::default() });
            }
        }
        let single_text = parts.len() == 1 && parts[0].media.is_none() && step.post.is_none();
        for message in parts {
            match self.message_id {
                Some(message_id) if (step.edit || self.edit_in_place) && single_text => {
                    self.fx.push(Effect::Edit { message_id, message })
                }
                _ => self.fx.push(Effect::Send { message }),
            }
        }
        interactive
    }

    /// The channel messages of the post a step shows, made by the publisher's own function.
    fn post_preview(&self, expr: &str, ctx: &Value) -> Result<Vec<OutMessage>, String> {
        let mut value = render::to_json(&render::eval(self.bundle, expr, ctx)?);
        // Slots that are not set read as null: the post's defaults apply.
        if let serde_json::Value::Object(fields) = &mut value {
            fields.retain(|_, v| !v.is_null() && v.as_str() != Some("none"));
        }
        let content: post_view::PostContent =
            serde_json::from_value(value).map_err(|e| format!("`post: {expr}` is not a post: {e}"))?;
        Ok(channel_messages(self.bundle, &content))
    }

    fn keyboard(&mut self, step: &Step, ctx: &Value, text: &mut String) -> Result<Keyboard, String> {
        if step.menu {
            return Ok(self.menu_keyboard());
        }
        let interactive = step.waits_for_user();
        if !interactive {
            return Ok(Keyboard::None);
        }
        self.s.nonce = self.s.nonce.wrapping_add(1);
        self.s.view.fingerprint = self.bundle.fingerprint;
        let nonce = self.s.nonce;
        let menu = &self.bundle.menu;
        let labels = &menu.widget_labels;
        let words = WidgetWords {
            months: &menu.months,
            weekdays: &menu.weekdays,
            today_marker: &labels.today_marker,
            prev: &labels.prev,
            next: &labels.next,
            back: &labels.back,
        };
        let mut rows: Vec<Vec<InlineButton>> = Vec::new();

        if let Some(list) = &step.list {
            let items = render::eval(self.bundle, &list.items, ctx)?;
            let mut generated = Vec::new();
            if !items.is_undefined() && !items.is_none() {
                let iter = items.try_iter().map_err(|e| format!("list items `{}`: {e}", list.items))?;
                for item in iter {
                    let item_ctx = self.ctx(&[("item", item.clone())]);
                    let label = render::render(self.bundle, &list.label, &item_ctx)?;
                    let value = match &list.value {
                        Some(expr) => render::to_json(&render::eval(self.bundle, expr, &item_ctx)?),
                        None => render::to_json(&item),
                    };
                    generated.push(ListItem { label: html::to_plain_text(&label, false).trim().to_string(), value });
                }
            }
            if generated.is_empty() {
                let empty = match &list.empty {
                    Some(t) => render::render(self.bundle, t, ctx)?,
                    None => self.menu_text("list_empty", ctx)?,
                };
                text.push_str("\n\n");
                text.push_str(&empty);
            }
            let pages = generated.len().div_ceil(list.page_size).max(1);
            let page = self.s.view.page.min(pages - 1);
            self.s.view.page = page;
            let start = page * list.page_size;
            let shown: Vec<InlineButton> = generated
                .iter()
                .enumerate()
                .skip(start)
                .take(list.page_size)
                .map(|(i, item)| InlineButton { label: item.label.clone().into(), data: encode(nonce, Press::Item(i)) })
                .collect();
            rows.extend(shown.chunks(list.columns.max(1) as usize).map(<[InlineButton]>::to_vec));
            if pages > 1 {
                rows.push(widgets::pager_row(nonce, page, pages, &words));
            }
            self.s.view.items = generated;
        }

        if let Some(input) = &step.input {
            match &input.kind {
                InputKind::Date { allow_past } => {
                    let today = self.today();
                    let month = self.s.view.month.unwrap_or((today.year(), today.month()));
                    rows.extend(widgets::calendar(nonce, month, today, *allow_past, &words));
                }
                InputKind::Time { minute_step, first_hour, last_hour, date_slot } => {
                    let floor = self.time_floor(date_slot.as_deref());
                    match self.s.view.hour {
                        Some(hour) => rows.extend(widgets::minute_grid(nonce, hour, *minute_step, floor, &words)),
                        None => rows.extend(widgets::hour_grid(nonce, *first_hour, *last_hour, floor)),
                    }
                }
                InputKind::Choice(options) => {
                    let cells: Vec<InlineButton> = options
                        .iter()
                        .enumerate()
                        .map(|(i, o)| InlineButton {
                            label: o.label.clone().into(),
                            data: encode(nonce, Press::Choice(i)),
                        })
                        .collect();
                    rows.extend(cells.chunks(step.columns.max(1) as usize).map(<[InlineButton]>::to_vec));
                }
                _ => {}
            }
            if let Some(skip) = &input.skip {
                let label = skip.clone().unwrap_or_else(|| self.bundle.menu.widget_labels.skip.clone());
                rows.push(vec![InlineButton { label: label.into(), data: encode(nonce, Press::Skip) }]);
            }
        }

        let mut statics = Vec::new();
        for (i, button) in step.buttons.iter().enumerate() {
            if let Some(cond) = &button.condition
                && !render::eval(self.bundle, cond, ctx)?.is_true()
            {
                continue;
            }
            let label = match &button.plain_label {
                Some(plain) => plain.clone(),
                None => {
                    html::to_plain_text(&render::render(self.bundle, &button.label, ctx)?, false).trim().to_string()
                }
            };
            statics.push(InlineButton { label: label.into(), data: encode(nonce, Press::Button(i)) });
        }
        rows.extend(statics.chunks(step.columns.max(1) as usize).map(<[InlineButton]>::to_vec));
        Ok(if rows.is_empty() { Keyboard::None } else { Keyboard::Inline(rows) })
    }

    /// Answers the button press with a menu text as the toast.
    fn answer_with(&mut self, key: &str) {
        self.answer = Some(self.text_of(key, &[]));
    }

    /// Whether a button is on the keyboard now (its `if:` holds): a press on a hidden button is
    /// refused even when its callback data is forged with the right nonce.
    fn button_shown(&self, button: &crate::config::bundle::Button) -> bool {
        match &button.condition {
            None => true,
            Some(cond) => render::eval(self.bundle, cond, &self.ctx(&[])).is_ok_and(|v| v.is_true()),
        }
    }

    fn menu_keyboard(&self) -> Keyboard {
        Keyboard::Reply(
            self.bundle.menu.reply_keyboard.iter().map(|row| row.iter().map(|b| b.label.clone()).collect()).collect(),
        )
    }

    /// Sends a menu text, with the main menu keyboard when `with_menu`.
    fn say_text(&mut self, key: &str, vars: &[(&str, Value)], with_menu: bool) {
        match self.text_of(key, vars) {
            Some(text) => {
                let keyboard = if with_menu { self.menu_keyboard() } else { Keyboard::None };
                self.fx.push(Effect::Send {
                    message: OutMessage { text: html::sanitize(&text), media: None, keyboard, ..Default::default() },
                });
            }
            None => self.fx.push(Effect::Warn { message: format!("menu text `{key}` could not be rendered") }),
        }
    }

    fn text_of(&self, key: &str, vars: &[(&str, Value)]) -> Option<String> {
        let ctx = self.ctx(vars);
        self.menu_text(key, &ctx).ok()
    }

    fn menu_text(&self, key: &str, ctx: &Value) -> Result<String, String> {
        let template = self.bundle.menu.texts.get(key).ok_or_else(|| format!("menu text `{key}` is not defined"))?;
        render::render(self.bundle, template, ctx)
    }

    /// A run-time configuration failure: tell the admin, log it, and go idle.
    fn internal_error(&mut self, message: String) {
        self.failed = true;
        let place = self.s.current().map(|f| format!("{}/{}", f.flow, f.step)).unwrap_or_default();
        self.fx.push(Effect::Warn { message: format!("{place}: {message}") });
        self.s.stack.clear();
        self.say_text("internal_error", &[], true);
        self.stop();
    }

    // ----- helpers ------------------------------------------------------------------------

    fn ctx(&self, extra: &[(&str, Value)]) -> Value {
        render::with_extra(&self.scope_value, extra)
    }

    /// Empties or filters the slots.
    fn retain_slots(&mut self, keep: impl Fn(&str) -> bool) {
        self.scope.retain(keep);
    }

    fn current_step(&self) -> Option<&'a Step> {
        let frame = self.s.current()?;
        self.bundle.step(&frame.flow, &frame.step)
    }

    fn today(&self) -> NaiveDate {
        render::local_time(self.bundle, self.now).date_naive()
    }

    fn reset_view(&mut self) {
        self.s.view = View { fingerprint: self.s.view.fingerprint, ..View::default() };
    }

    fn set_from_expr(&mut self, slot: &str, expr: &str) -> bool {
        let ctx = self.ctx(&[]);
        match render::eval(self.bundle, expr, &ctx) {
            Ok(value) => {
                self.save(slot, render::to_json(&value));
                true
            }
            Err(err) => {
                self.internal_error(format!("set `{slot}`: {err}"));
                false
            }
        }
    }

    fn save(&mut self, slot: &str, value: serde_json::Value) {
        let kind = render::slot_kind(self.bundle, &self.s, slot);
        if let Some(kind) = kind.filter(|k| !k.accepts(&value)) {
            let shown: String = value.to_string().chars().take(80).collect();
            return self.internal_error(format!("slot `{slot}` is `{}` but was given {shown}", kind.name()));
        }
        let html = kind == Some(SlotKind::Html);
        let value = match (html, value) {
            (true, serde_json::Value::String(text)) => serde_json::Value::String(html::sanitize(&text)),
            (_, value) => value,
        };
        self.scope.set(slot, html, value);
    }

    fn apply_defaults(&mut self, flow_id: &str) {
        if let Some(flow) = self.bundle.flow(flow_id) {
            for (name, decl) in &flow.slots {
                if let Some(default) = &decl.default
                    && !self.scope.contains(name)
                {
                    self.save(name, default.clone());
                }
            }
        }
    }

    /// After a configuration change, a session whose step vanished or changed shape (no longer
    /// waits, no longer runs the awaited action) goes idle instead of hanging.
    /// Returns whether the admin was told (a conversation was under way).
    fn forget_vanished_step(&mut self) -> bool {
        if pending_is_current(self.bundle, &self.s) && wait_matches_step(self.bundle, &self.s) {
            return false;
        }
        let told = !self.s.stack.is_empty();
        if told {
            // Mid-conversation: the admin is told, and gets the menu.
            self.say_text("config_changed", &[], true);
        }
        self.s.stack.clear();
        self.s.wait = Wait::Nothing;
        self.s.pending = None;
        self.reset_view();
        told
    }
}

/// Whether the session's awaited action (if any) is still the one its current step runs; a
/// driver must not carry out a pending action whose step changed or vanished.
pub fn pending_is_current(bundle: &Bundle, session: &Session) -> bool {
    let step = session.current().and_then(|f| bundle.step(&f.flow, &f.step));
    let frames_exist = session.stack.iter().all(|f| bundle.step(&f.flow, &f.step).is_some());
    match (&session.wait, &session.pending) {
        (Wait::Action { request_id }, Some(pending)) => {
            frames_exist
                && *request_id == pending.request_id
                && step.and_then(|s| s.action.as_ref()).is_some_and(|a| a.name == pending.name)
        }
        (Wait::Action { .. }, None) => false,
        _ => frames_exist,
    }
}

/// Whether what the session waits for still fits its current step.
fn wait_matches_step(bundle: &Bundle, session: &Session) -> bool {
    let step = session.current().and_then(|f| bundle.step(&f.flow, &f.step));
    match (&session.wait, step) {
        (Wait::User, Some(step)) => step.waits_for_user(),
        (Wait::User, None) => false,
        (Wait::Action { .. }, Some(step)) => step.action.is_some(),
        (Wait::Action { .. }, None) => false,
        (Wait::Nothing, _) => session.stack.is_empty(),
    }
}

/// A number for a message: whole numbers without ".0".
fn number_value(n: f64) -> Value {
    if n.fract() == 0.0 && n.abs() < 1e15 { Value::from(n as i64) } else { Value::from(n) }
}

/// Reads a date typed as `DD.MM.YYYY`, `D.M.YYYY`, `DD/MM/YYYY` or `YYYY-MM-DD`.
pub fn parse_date(text: &str) -> Option<NaiveDate> {
    let text = text.trim();
    ["%Y-%m-%d", "%d.%m.%Y", "%d/%m/%Y", "%d-%m-%Y"].iter().find_map(|fmt| NaiveDate::parse_from_str(text, fmt).ok())
}

/// Reads a time typed as `HH:MM`, `H:MM` or `HH.MM`.
pub fn parse_time(text: &str) -> Option<NaiveTime> {
    let text = text.trim().replace('.', ":");
    NaiveTime::parse_from_str(&text, "%H:%M").ok()
}

/// A menu text rendered outside any conversation (an adapter's refusal or warning), as clean
/// Telegram HTML; `None` if the text is missing or fails to render.
pub fn standalone_text(bundle: &Bundle, key: &str) -> Option<String> {
    standalone_text_with(bundle, key, &Value::from(()))
}

/// [`standalone_text`] with values for the template (`{{ name }}`).
pub fn standalone_text_with(bundle: &Bundle, key: &str, values: &Value) -> Option<String> {
    let template = bundle.menu.texts.get(key)?;
    render::render(bundle, template, values).ok().map(|text| html::sanitize(&text))
}

/// The messages a post becomes in the channel, with the menu's `album_buttons` text: what the
/// preview shows and the publisher sends.
pub fn channel_messages(bundle: &Bundle, content: &post_view::PostContent) -> Vec<OutMessage> {
    let album_text = standalone_text(bundle, "album_buttons").unwrap_or_else(|| "…".to_string());
    post_view::channel_messages(content, &album_text)
}

/// The media kinds an input type accepts.
pub fn media_kinds(input_type: &str) -> Option<Vec<MediaKind>> {
    Some(match input_type {
        "photo" => vec![MediaKind::Photo],
        "video" => vec![MediaKind::Video],
        "animation" => vec![MediaKind::Animation],
        "document" => vec![MediaKind::Document],
        "media" => vec![MediaKind::Photo, MediaKind::Video, MediaKind::Animation],
        _ => return None,
    })
}
