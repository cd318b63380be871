//! Template rendering and expression evaluation over a session's slots.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, OnceLock};

use chrono::{DateTime, TimeZone};
use minijinja::Value;

use super::session::Session;
use crate::config::bundle::{Bundle, SlotKind};

/// Names every template can read besides the slots.
pub const GLOBALS: &[&str] = &["formats", "now", "today", "user_id", "error"];

/// The local date-time of `now` (unix seconds) in the bundle's time zone.
pub fn local_time(bundle: &Bundle, now: i64) -> DateTime<chrono_tz::Tz> {
    local_in(bundle.timezone, now)
}

fn local_in(timezone: chrono_tz::Tz, now: i64) -> DateTime<chrono_tz::Tz> {
    let utc = DateTime::from_timestamp(now, 0).unwrap_or_default();
    timezone.from_utc_datetime(&utc.naive_utc())
}

/// Looks up the declared kind of a slot in the flows on the session's stack.
pub fn slot_kind(bundle: &Bundle, session: &Session, slot: &str) -> Option<SlotKind> {
    session
        .stack
        .iter()
        .rev()
        .filter_map(|frame| bundle.flow(&frame.flow))
        .find_map(|flow| flow.slots.get(slot).map(|decl| decl.kind))
}

/// The clock values templates see.
#[derive(Debug)]
pub struct Clock {
    pub now: Value,
    pub today: Value,
}

impl Clock {
    pub fn at(timezone: chrono_tz::Tz, now: i64) -> Self {
        use chrono::{Datelike, Offset, Timelike};
        let local = local_in(timezone, now);
        let offset = local.offset().fix().local_minus_utc();
        let sign = if offset < 0 { '-' } else { '+' };
        let (hours, minutes) = (offset.abs() / 3600, offset.abs() % 3600 / 60);
        let today = format!("{:04}-{:02}-{:02}", local.year(), local.month(), local.day());
        let now = format!(
            "{today}T{:02}:{:02}:{:02}{sign}{hours:02}:{minutes:02}",
            local.hour(),
            local.minute(),
            local.second()
        );
        Clock { now: Value::from(now), today: Value::from(today) }
    }
}

/// The template context of one event. It holds the session's slots for the duration of the
/// event (the engine reads and writes them through it) and converts a slot to a template value
/// only when a template reads it; the clock is formatted only if a template reads it.
#[derive(Debug)]
pub struct Scope {
    slots: Mutex<BTreeMap<String, serde_json::Value>>,
    converted: Mutex<BTreeMap<String, Value>>,
    /// Slots declared `html` in a flow on the stack: shown unescaped (after cleaning).
    html: Mutex<BTreeSet<String>>,
    user_id: i64,
    clock: OnceLock<Clock>,
    timezone: chrono_tz::Tz,
    now: i64,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Scope {
    /// Takes the session's slots into a new scope (give them back with [`Scope::take`]).
    pub fn new(bundle: &Bundle, session: &mut Session, now: i64) -> Self {
        let html = session
            .stack
            .iter()
            .filter_map(|frame| bundle.flow(&frame.flow))
            .flat_map(|flow| flow.slots.iter().filter(|(_, d)| d.kind == SlotKind::Html).map(|(n, _)| n.clone()))
            .collect();
        Scope {
            slots: Mutex::new(std::mem::take(&mut session.slots)),
            converted: Mutex::new(BTreeMap::new()),
            html: Mutex::new(html),
            user_id: session.user_id,
            clock: OnceLock::new(),
            timezone: bundle.timezone,
            now,
        }
    }

    pub fn get(&self, name: &str) -> Option<serde_json::Value> {
        lock(&self.slots).get(name).cloned()
    }

    pub fn contains(&self, name: &str) -> bool {
        lock(&self.slots).contains_key(name)
    }

    /// Saves a slot; `html` says whether it is an HTML slot.
    pub fn set(&self, name: &str, html: bool, value: serde_json::Value) {
        lock(&self.converted).remove(name);
        let mut names = lock(&self.html);
        if html {
            names.insert(name.to_string());
        } else {
            names.remove(name);
        }
        lock(&self.slots).insert(name.to_string(), value);
    }

    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        lock(&self.slots).retain(|name, _| keep(name));
        lock(&self.converted).clear();
    }

    /// Gives the slots back.
    pub fn take(&self) -> BTreeMap<String, serde_json::Value> {
        lock(&self.converted).clear();
        std::mem::take(&mut *lock(&self.slots))
    }
}

impl minijinja::value::Object for Scope {
    fn get_value(self: &std::sync::Arc<Self>, key: &Value) -> Option<Value> {
        key.as_str().and_then(|key| self.get_value_by_str(key))
    }

    fn get_value_by_str(self: &std::sync::Arc<Self>, key: &str) -> Option<Value> {
        if let Some(value) = lock(&self.converted).get(key) {
            return Some(value.clone());
        }
        let value = match (key, lock(&self.slots).get(key)) {
            (_, Some(json)) => {
                let html = lock(&self.html).contains(key);
                slot_value(html, json)
            }
            ("now" | "today", None) => {
                let clock = self.clock.get_or_init(|| Clock::at(self.timezone, self.now));
                if key == "now" { clock.now.clone() } else { clock.today.clone() }
            }
            ("user_id", None) => Value::from(self.user_id),
            ("error", None) => Value::from(()),
            _ => return None,
        };
        lock(&self.converted).insert(key.to_string(), value.clone());
        Some(value)
    }
}

/// An HTML slot is cleaned again when shown (cleaning is idempotent), so a value saved as plain
/// text by another flow can never reach Telegram unescaped.
fn slot_value(html: bool, value: &serde_json::Value) -> Value {
    match (html, value) {
        (true, serde_json::Value::String(text)) => Value::from_safe_string(crate::engine::html::sanitize(text)),
        _ => json_value(value),
    }
}

/// Converts JSON to a template value (faster than going through serde).
pub fn json_value(value: &serde_json::Value) -> Value {
    match value {
        serde_json::Value::Null => Value::from(()),
        serde_json::Value::Bool(b) => Value::from(*b),
        serde_json::Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Value::from(i),
            (None, Some(u)) => Value::from(u),
            _ => Value::from(n.as_f64().unwrap_or(0.0)),
        },
        serde_json::Value::String(s) => Value::from(s.as_str()),
        serde_json::Value::Array(items) => Value::from(items.iter().map(json_value).collect::<Vec<_>>()),
        serde_json::Value::Object(fields) => {
            Value::from(fields.iter().map(|(k, v)| (k.clone(), json_value(v))).collect::<BTreeMap<String, Value>>())
        }
    }
}

/// A context with a few extra names (such as `item` or `min`) over a base context, without
/// copying the base.
#[derive(Debug)]
struct Overlay {
    base: Value,
    extra: Vec<(String, Value)>,
}

impl minijinja::value::Object for Overlay {
    fn get_value(self: &std::sync::Arc<Self>, key: &Value) -> Option<Value> {
        key.as_str().and_then(|key| self.get_value_by_str(key))
    }

    fn get_value_by_str(self: &std::sync::Arc<Self>, key: &str) -> Option<Value> {
        match self.extra.iter().find(|(name, _)| name == key) {
            Some((_, value)) => Some(value.clone()),
            None => self.base.get_attr(key).ok().filter(|v| !v.is_undefined()),
        }
    }
}

/// Adds `extra` names to a base context.
pub fn with_extra(base: &Value, extra: &[(&str, Value)]) -> Value {
    if extra.is_empty() {
        return base.clone();
    }
    let extra = extra.iter().map(|(name, value)| ((*name).to_string(), value.clone())).collect();
    Value::from_object(Overlay { base: base.clone(), extra })
}

/// Renders a named template.
pub fn render(bundle: &Bundle, template: &str, ctx: &Value) -> Result<String, String> {
    if let Some(text) = bundle.literal_texts.get(template) {
        return Ok(text.clone());
    }
    let tmpl = bundle.templates.get_template(template).map_err(|e| describe(&e))?;
    tmpl.render(ctx).map_err(|e| describe(&e))
}

/// Evaluates an expression.
pub fn eval(bundle: &Bundle, expr: &str, ctx: &Value) -> Result<Value, String> {
    // Most expressions are a name or a dotted path (`formats`, `item.id`): look them up directly.
    // Globals such as `formats` are not in the context: those take the general path.
    if is_dotted_path(expr) {
        let mut parts = expr.split('.');
        let first = parts.next().map(|name| ctx.get_attr(name));
        if let Some(Ok(mut value)) = first.filter(|v| v.as_ref().is_ok_and(|v| !v.is_undefined())) {
            for part in parts {
                value = value.get_attr(part).map_err(|e| describe(&e))?;
            }
            return Ok(value);
        }
    }
    let name = format!("{}{expr}", crate::config::compile::EXPRESSION_PREFIX);
    if let Ok(template) = bundle.templates.get_template(&name) {
        let captured = template.render_captured(ctx).map_err(|e| describe(&e))?;
        return Ok(captured.state().lookup("result").unwrap_or_default());
    }
    let compiled = bundle.templates.compile_expression(expr).map_err(|e| describe(&e))?;
    compiled.eval(ctx).map_err(|e| describe(&e))
}

/// `name` or `name.field.field`, with identifiers only (and not the literals `true`, `none`…).
fn is_dotted_path(expr: &str) -> bool {
    const LITERALS: [&str; 6] = ["true", "false", "none", "True", "False", "None"];
    !expr.is_empty()
        && !LITERALS.contains(&expr)
        && expr.split('.').all(|part| {
            let mut chars = part.chars();
            chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
}

/// Converts a template value to JSON (undefined becomes null).
pub fn to_json(value: &Value) -> serde_json::Value {
    if value.is_undefined() {
        return serde_json::Value::Null;
    }
    serde_json::to_value(value).unwrap_or(serde_json::Value::Null)
}

/// An error description with the template name and line when known.
pub fn describe(error: &minijinja::Error) -> String {
    let mut text = error.to_string();
    if let (Some(name), Some(line)) = (error.name(), error.line()) {
        text = format!("{text} (in {name}, line {line})");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::is_dotted_path;

    #[test]
    fn only_plain_paths_take_the_fast_path() {
        for yes in ["formats", "item.id", "generated.text", "_x.y_2"] {
            assert!(is_dotted_path(yes), "{yes}");
        }
        for no in ["", "true", "none", "a.", ".a", "a..b", "a + b", "a[0]", "x|length", "2x", "a.0"] {
            assert!(!is_dotted_path(no), "{no}");
        }
    }
}
