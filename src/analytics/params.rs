//! A pipeline's parameter values: checked against their types, periods turned into `from`/`to`
//! local date-times, and written into SQL expressions in place of `:name` as safe literals.

use std::collections::BTreeMap;

use chrono::{Datelike, Days, Months, NaiveDate, NaiveDateTime, NaiveTime};

use crate::config::bundle::POST_STATUSES;
use crate::config::pipeline::{PERIODS, ParamKind, Pipeline};

/// A parameter value as SQL sees it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(untagged)]
pub enum Literal {
    Null,
    Text(String),
    Int(i64),
    Date(NaiveDate),
    Timestamp(NaiveDateTime),
}

impl Literal {
    /// The value as SQL source text.
    pub fn sql(&self) -> String {
        match self {
            Literal::Null => "NULL".to_string(),
            Literal::Text(text) => format!("'{}'", text.replace('\'', "''")),
            Literal::Int(n) => format!("({n})"),
            Literal::Date(date) => format!("DATE '{}'", date.format("%Y-%m-%d")),
            Literal::Timestamp(at) => format!("TIMESTAMP '{}'", at.format("%Y-%m-%d %H:%M:%S")),
        }
    }

    /// The value for people (file names, messages).
    pub fn display(&self) -> String {
        match self {
            Literal::Null => String::new(),
            Literal::Text(text) => text.clone(),
            Literal::Int(n) => n.to_string(),
            Literal::Date(date) => date.format("%Y-%m-%d").to_string(),
            Literal::Timestamp(at) => at.format("%Y-%m-%d %H:%M").to_string(),
        }
    }
}

/// Every name a pipeline's expressions may use after `:`, with its value.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Values(pub BTreeMap<String, Literal>);

/// A parameter value that cannot be used, worded for the person who gave it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParamError(pub String);

/// The names `:name` may take in a pipeline: its parameters, plus `from` and `to` with a period.
pub fn names(pipeline: &Pipeline) -> Vec<String> {
    let mut names: Vec<String> = pipeline.params.iter().map(|p| p.name.clone()).collect();
    if pipeline.params.iter().any(|p| p.kind == ParamKind::Period) {
        names.extend(["from".to_string(), "to".to_string()]);
    }
    names
}

/// Checks `given` (name → text, as typed in the CLI or chosen in the bot) and fills defaults.
/// `from` and `to` (dates, inclusive) make the period `custom`. `today` is the local date.
pub fn resolve(
    pipeline: &Pipeline,
    given: &BTreeMap<String, String>,
    formats: &[String],
    today: NaiveDate,
) -> Result<Values, ParamError> {
    for name in given.keys() {
        let known = pipeline.param(name).is_some()
            || (matches!(name.as_str(), "from" | "to") && pipeline.params.iter().any(|p| p.kind == ParamKind::Period));
        if !known {
            let list = names(pipeline);
            let takes = if list.is_empty() { "no parameters".to_string() } else { list.join(", ") };
            return Err(ParamError(format!("`{}` has no parameter `{name}`; it takes {takes}", pipeline.id)));
        }
    }
    let mut values = BTreeMap::new();
    for param in &pipeline.params {
        let text = given.get(&param.name).cloned().or_else(|| param.default.clone()).filter(|t| !t.trim().is_empty());
        let bad = |expected: String| {
            ParamError(format!(
                "`{}` is not a valid value for `{}`: expected {expected}",
                text.clone().unwrap_or_default(),
                param.name
            ))
        };
        let value = match (&param.kind, text.as_deref().map(str::trim)) {
            (ParamKind::Period, period) => {
                let custom = given.contains_key("from") || given.contains_key("to");
                if custom && given.get(&param.name).is_some_and(|p| p != "custom") {
                    return Err(ParamError(format!("give either `{}` or `from`/`to` dates, not both", param.name)));
                }
                let period = match period {
                    Some(p) if given.contains_key(&param.name) || !custom => p,
                    _ if custom => "custom",
                    _ => "all",
                };
                let (from, to) = period_bounds(period, given, today)?;
                values.insert("from".to_string(), Literal::Timestamp(from));
                values.insert("to".to_string(), Literal::Timestamp(to));
                Literal::Text(period.to_string())
            }
            (_, None) => Literal::Null,
            (ParamKind::Format, Some(format)) => {
                if !formats.iter().any(|f| f == format) {
                    return Err(bad(format!("one of {}", formats.join(", "))));
                }
                Literal::Text(format.to_string())
            }
            (ParamKind::Status, Some(status)) => {
                if !POST_STATUSES.contains(&status) {
                    return Err(bad(format!("one of {}", POST_STATUSES.join(", "))));
                }
                Literal::Text(status.to_string())
            }
            (ParamKind::Choice(options), Some(choice)) => {
                if !options.iter().any(|o| o == choice) {
                    return Err(bad(format!("one of {}", options.join(", "))));
                }
                Literal::Text(choice.to_string())
            }
            (ParamKind::Int, Some(n)) => Literal::Int(n.parse().map_err(|_| bad("a whole number".to_string()))?),
            (ParamKind::Date, Some(date)) => {
                Literal::Date(parse_date(date).ok_or_else(|| bad("a date such as 2026-11-01".into()))?)
            }
            (ParamKind::Text, Some(text)) => Literal::Text(text.to_string()),
        };
        values.insert(param.name.clone(), value);
    }
    Ok(Values(values))
}

fn parse_date(text: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d").ok()
}

fn midnight(date: NaiveDate) -> NaiveDateTime {
    date.and_time(NaiveTime::MIN)
}

/// The local date-times [from, to) of a period, `today` being the local date.
pub fn period_bounds(
    period: &str,
    given: &BTreeMap<String, String>,
    today: NaiveDate,
) -> Result<(NaiveDateTime, NaiveDateTime), ParamError> {
    let day = |d: NaiveDate, n: u64| d.checked_add_days(Days::new(n)).unwrap_or(d);
    let back = |d: NaiveDate, n: u64| d.checked_sub_days(Days::new(n)).unwrap_or(d);
    let monday = back(today, today.weekday().num_days_from_monday() as u64);
    let first = today.with_day(1).unwrap_or(today);
    let next_month = |d: NaiveDate| d.checked_add_months(Months::new(1)).unwrap_or(d);
    let (from, to) = match period {
        "today" => (today, day(today, 1)),
        "yesterday" => (back(today, 1), today),
        "week" => (monday, day(monday, 7)),
        "last_week" => (back(monday, 7), monday),
        "month" => (first, next_month(first)),
        "last_month" => (first.checked_sub_months(Months::new(1)).unwrap_or(first), first),
        "7d" => (back(today, 6), day(today, 1)),
        "30d" => (back(today, 29), day(today, 1)),
        "year" => {
            let jan1 = NaiveDate::from_ymd_opt(today.year(), 1, 1).unwrap_or(today);
            (jan1, jan1.checked_add_months(Months::new(12)).unwrap_or(jan1))
        }
        "all" => {
            (NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or(today), NaiveDate::from_ymd_opt(3000, 1, 1).unwrap_or(today))
        }
        "custom" => {
            let date = |key: &str| -> Result<NaiveDate, ParamError> {
                let text = given.get(key).ok_or_else(|| {
                    ParamError(format!("a custom period needs both `from` and `to`; `{key}` is missing"))
                })?;
                parse_date(text)
                    .ok_or_else(|| ParamError(format!("`{key}` must be a date such as 2026-11-01, not `{text}`")))
            };
            let (from, to) = (date("from")?, date("to")?);
            if to < from {
                return Err(ParamError(format!("the period ends ({to}) before it starts ({from})")));
            }
            (from, day(to, 1))
        }
        other => {
            return Err(ParamError(format!("`{other}` is not a period: expected one of {}", PERIODS.join(", "))));
        }
    };
    Ok((midnight(from), midnight(to)))
}

/// Writes the values into `sql` in place of `:name` (outside quotes; `::` casts are left alone).
/// Names without a value are returned as the error.
pub fn substitute(sql: &str, values: &Values) -> Result<String, Vec<String>> {
    let mut out = String::with_capacity(sql.len());
    let mut unknown = Vec::new();
    let chars: Vec<char> = sql.chars().collect();
    let mut quote: Option<char> = None;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if let Some(q) = quote {
            out.push(c);
            if c == q {
                quote = None;
            }
            i += 1;
            continue;
        }
        if c == '\'' || c == '"' {
            quote = Some(c);
            out.push(c);
            i += 1;
            continue;
        }
        // Comments are copied as they are: a quote or `:name` inside one means nothing.
        let comment_end = match (c, chars.get(i + 1)) {
            ('-', Some('-')) => Some(chars[i..].iter().position(|c| *c == '\n').map_or(chars.len(), |p| i + p)),
            ('/', Some('*')) => {
                Some(chars[i + 2..].windows(2).position(|w| w == ['*', '/']).map_or(chars.len(), |p| i + 2 + p + 2))
            }
            _ => None,
        };
        if let Some(end) = comment_end {
            out.extend(&chars[i..end]);
            i = end;
            continue;
        }
        let starts_name = c == ':'
            && chars.get(i + 1).is_some_and(|n| n.is_ascii_lowercase() || *n == '_')
            && (i == 0 || chars[i - 1] != ':');
        if !starts_name {
            out.push(c);
            i += 1;
            continue;
        }
        let start = i + 1;
        let mut end = start;
        while end < chars.len() && (chars[end].is_ascii_alphanumeric() || chars[end] == '_') {
            end += 1;
        }
        let name: String = chars[start..end].iter().collect();
        match values.0.get(&name) {
            Some(value) => out.push_str(&value.sql()),
            None => {
                unknown.push(name.clone());
                out.push_str("NULL");
            }
        }
        i = end;
    }
    if unknown.is_empty() { Ok(out) } else { Err(unknown) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(pairs: &[(&str, Literal)]) -> Values {
        Values(pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect())
    }

    #[test]
    fn substitution_quotes_texts_and_leaves_strings_and_casts_alone() {
        let v = values(&[("format", Literal::Text("it's".into())), ("n", Literal::Int(3))]);
        assert_eq!(
            substitute("format = :format AND x::INT > :n AND y = ':format'", &v).unwrap(),
            "format = 'it''s' AND x::INT > (3) AND y = ':format'"
        );
        assert_eq!(
            substitute("a = :n -- it's :n\n/* ' :n */ b = :format", &v).unwrap(),
            "a = (3) -- it's :n\n/* ' :n */ b = 'it''s'"
        );
        assert_eq!(substitute("a = :nope", &v).unwrap_err(), vec!["nope".to_string()]);
    }

    #[test]
    fn periods_follow_the_calendar() {
        let today = NaiveDate::from_ymd_opt(2026, 11, 26).unwrap(); // a Thursday
        let none = BTreeMap::new();
        let show = |p: &str| {
            let (from, to) = period_bounds(p, &none, today).unwrap();
            format!("{} {}", from.date(), to.date())
        };
        assert_eq!(show("today"), "2026-11-26 2026-11-27");
        assert_eq!(show("week"), "2026-11-23 2026-11-30");
        assert_eq!(show("last_week"), "2026-11-16 2026-11-23");
        assert_eq!(show("month"), "2026-11-01 2026-12-01");
        assert_eq!(show("last_month"), "2026-10-01 2026-11-01");
        assert_eq!(show("7d"), "2026-11-20 2026-11-27");
        let custom: BTreeMap<String, String> =
            [("from".to_string(), "2026-01-05".to_string()), ("to".to_string(), "2026-01-04".to_string())].into();
        assert!(period_bounds("custom", &custom, today).unwrap_err().0.contains("before it starts"));
    }
}
