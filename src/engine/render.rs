//! Template rendering and expression evaluation over a session's slots.

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};

use chrono::{DateTime, TimeZone};
use minijinja::Value;

use super::session::Session;
use crate::config::bundle::{Bundle, SlotKind};

/// Names every template can read besides the slots.
pub const GLOBALS: &[&str] = &["formats", "now", "today", "user_id", "error"];

/// The local date-time of `now` (unix seconds) in the bundle's time zone.
pub fn local_time(bundle: &Bundle, now: i64) -> DateTime<chrono_tz::Tz> {
    let utc = DateTime::from_timestamp(now, 0).unwrap_or_default();
    bundle.timezone.from_utc_datetime(&utc.naive_utc())
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
        let utc = DateTime::from_timestamp(now, 0).unwrap_or_default();
        let local = timezone.from_utc_datetime(&utc.naive_utc());
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

/// The template context of one event: every slot (HTML slots marked safe — they are cleaned
/// when saved), the clock and the user. Slots are converted once and updated one by one as the
/// engine saves them; the clock is formatted only if a template reads it.
#[derive(Debug)]
pub struct Scope {
    names: Mutex<BTreeMap<String, Value>>,
    clock: OnceLock<Clock>,
    timezone: chrono_tz::Tz,
    now: i64,
}

impl Scope {
    /// A context value over the session's slots.
    pub fn value(bundle: &Bundle, session: &Session, now: i64) -> Value {
        let scope =
            Scope { names: Mutex::new(BTreeMap::new()), clock: OnceLock::new(), timezone: bundle.timezone, now };
        scope.reset(bundle, session);
        Value::from_object(scope)
    }

    /// Converts every slot again (after slots were cleared or filtered).
    pub fn reset(&self, bundle: &Bundle, session: &Session) {
        let mut names = self.names.lock().unwrap_or_else(|e| e.into_inner());
        names.clear();
        names.insert("user_id".into(), Value::from(session.user_id));
        names.insert("error".into(), Value::from(()));
        for (name, value) in &session.slots {
            names.insert(name.clone(), slot_value(slot_kind(bundle, session, name), value));
        }
    }

    /// Updates one slot.
    pub fn set(&self, name: &str, kind: Option<SlotKind>, value: &serde_json::Value) {
        let mut names = self.names.lock().unwrap_or_else(|e| e.into_inner());
        names.insert(name.to_string(), slot_value(kind, value));
    }
}

impl minijinja::value::Object for Scope {
    fn get_value(self: &std::sync::Arc<Self>, key: &Value) -> Option<Value> {
        key.as_str().and_then(|key| self.get_value_by_str(key))
    }

    fn get_value_by_str(self: &std::sync::Arc<Self>, key: &str) -> Option<Value> {
        match key {
            "now" | "today" => {
                let clock = self.clock.get_or_init(|| Clock::at(self.timezone, self.now));
                Some(if key == "now" { clock.now.clone() } else { clock.today.clone() })
            }
            _ => self.names.lock().unwrap_or_else(|e| e.into_inner()).get(key).cloned(),
        }
    }
}

fn slot_value(kind: Option<SlotKind>, value: &serde_json::Value) -> Value {
    match (kind, value) {
        (Some(SlotKind::Html), serde_json::Value::String(text)) => Value::from_safe_string(text.clone()),
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
    let tmpl = bundle.templates.get_template(template).map_err(|e| describe(&e))?;
    tmpl.render(ctx).map_err(|e| describe(&e))
}

/// Evaluates an expression.
pub fn eval(bundle: &Bundle, expr: &str, ctx: &Value) -> Result<Value, String> {
    let compiled = bundle.templates.compile_expression(expr).map_err(|e| describe(&e))?;
    compiled.eval(ctx).map_err(|e| describe(&e))
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
