//! Template rendering and expression evaluation over a session's slots.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeZone};
use minijinja::Value;
use minijinja::value::Serde;

use super::html;
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

/// Builds the template context: every slot (HTML slots marked safe after sanitising), the
/// clock, and `extra` names such as `item` or `min`.
pub fn context(bundle: &Bundle, session: &Session, now: i64, extra: &[(&str, Value)]) -> Value {
    let mut map: BTreeMap<&str, Value> = BTreeMap::new();
    let local = local_time(bundle, now);
    map.insert("now", Value::from(local.format("%Y-%m-%dT%H:%M:%S%:z").to_string()));
    map.insert("today", Value::from(local.format("%Y-%m-%d").to_string()));
    map.insert("user_id", Value::from(session.user_id));
    map.insert("error", Value::from(()));
    for (name, value) in &session.slots {
        let converted = match (slot_kind(bundle, session, name), value) {
            (Some(SlotKind::Html), serde_json::Value::String(text)) => Value::from_safe_string(html::sanitize(text)),
            _ => Value::from(Serde(value)),
        };
        map.insert(name.as_str(), converted);
    }
    for (name, value) in extra {
        map.insert(name, value.clone());
    }
    Value::from(map)
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
