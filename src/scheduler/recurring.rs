//! Cron expressions of recurring jobs: the cron crate's syntax (seconds first, optional year
//! last, day-of-week 1 = Sunday), plus the familiar five-field crontab form (minute hour day
//! month weekday, weekday 0 or 7 = Sunday) translated for it, with errors in plain words.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use cron::Schedule;

/// Why an expression is not a schedule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CronProblem {
    #[error(
        "a cron expression has 5 fields (minute hour day month weekday), or 6–7 with seconds first and an optional year last; `{expr}` has {fields}"
    )]
    FieldCount { expr: String, fields: usize },
    #[error("weekday `{0}` is not a crontab weekday (0–7, 0 and 7 are Sunday, or a name such as Mon)")]
    Weekday(String),
    #[error(
        "`{0}` names both a day of the month and a weekday; crontab would fire on either, this scheduler on both: write two jobs"
    )]
    DayAndWeekday(String),
    #[error("`{expr}` is not a valid cron expression: {detail}")]
    Invalid { expr: String, detail: String },
}

/// Reads a cron expression in either form.
pub fn parse(expr: &str) -> Result<Schedule, CronProblem> {
    let fields: Vec<&str> = expr.split_whitespace().collect();
    let full = match fields.len() {
        5 => {
            // Crontab fires when either the day of month or the weekday matches; the crate
            // needs both. Rather than fire on fewer days than meant, say so.
            let restricted = |field: &str| field != "*" && field != "?";
            if restricted(fields[2]) && restricted(fields[4]) {
                return Err(CronProblem::DayAndWeekday(expr.trim().to_string()));
            }
            let weekday = crontab_weekday(fields[4])?;
            format!("0 {} {} {} {} {weekday}", fields[0], fields[1], fields[2], fields[3])
        }
        6 | 7 => fields.join(" "),
        count => return Err(CronProblem::FieldCount { expr: expr.trim().to_string(), fields: count }),
    };
    Schedule::from_str(&full)
        .map_err(|error| CronProblem::Invalid { expr: expr.trim().to_string(), detail: explain(&error.to_string()) })
}

/// The crate's error in a line of our own: it repeats the expression with a caret over several
/// lines and words ranges oddly ("Hours must be less than 23" when 23 is allowed).
fn explain(error: &str) -> String {
    let last = error.lines().map(str::trim).rfind(|l| !l.is_empty()).unwrap_or(error).trim_end_matches('.');
    const RANGES: [(&str, &str); 7] = [
        ("Seconds", "seconds are 0–59"),
        ("Minutes", "minutes are 0–59"),
        ("Hours", "hours are 0–23"),
        ("Days of Month", "days of the month are 1–31"),
        ("Months", "months are 1–12 or Jan–Dec"),
        ("Days of Week", "weekdays are 1–7 with 1 = Sunday, or Sun–Sat"),
        ("Years", "years are 1970–2099"),
    ];
    let given = last.rsplit_once("('").and_then(|(_, rest)| rest.split_once("' specified")).map(|(value, _)| value);
    match (RANGES.iter().find(|(field, _)| last.starts_with(field)), given) {
        (Some((_, range)), Some(value)) if last.contains(" must be ") => format!("{range}; `{value}` is out of range"),
        _ => last.trim_end_matches(')').trim_start_matches('(').to_string(),
    }
}

/// The next `count` fire times after `after`, on the wall clock of `zone`. A time the clocks
/// skip (a daylight-saving gap) does not fire that day. A time they repeat fires once, at its
/// first occurrence: the cron crate fires a daily 02:30 twice on the night the clocks go back
/// (a report sent twice, an evergreen post repeated).
pub fn upcoming(schedule: &Schedule, zone: Tz, after: DateTime<Utc>, count: usize) -> Vec<DateTime<Tz>> {
    use chrono::TimeZone;
    // The crate walks the wall clock: inside a repeated hour it can offer a fire that is
    // already past, and it offers a repeated time twice. Only first occurrences after `after`.
    schedule
        .after(&after.with_timezone(&zone))
        // Bounded, yet past a repeated hour of a job that fires every second.
        .take(count.saturating_add(2 * 3600))
        .filter(|fire| fire.with_timezone(&Utc) > after)
        .filter(|fire| zone.from_local_datetime(&fire.naive_local()).earliest().as_ref() == Some(fire))
        .take(count)
        .collect()
}

/// Crontab weekdays (0 or 7 = Sunday, 1 = Monday; ranges and steps as crontab reads them) as
/// the cron crate's names, which mean the same in every convention. Items written with names,
/// `*` and `?` pass through.
fn crontab_weekday(field: &str) -> Result<String, CronProblem> {
    const NAMES: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    let number = |text: &str| -> Result<u32, CronProblem> {
        text.parse::<u32>().ok().filter(|day| *day <= 7).ok_or_else(|| CronProblem::Weekday(text.to_string()))
    };
    let mut parts = Vec::new();
    for item in field.split(',') {
        let (base, step) = match item.split_once('/') {
            Some((base, step)) => (base, Some(step)),
            None => (item, None),
        };
        let numeric = base.split('-').all(|end| !end.is_empty() && end.chars().all(|c| c.is_ascii_digit()));
        let starred_step = base == "*" && step.is_some();
        if !(numeric || starred_step) {
            parts.push(item.to_string());
            continue;
        }
        // Spell the days out: crontab's 0–7 ranges (`6-7`, `0-7/2`) have no equal in the
        // crate's 1–7 numbering, where Sunday comes first.
        let (from, to) = match base.split_once('-') {
            _ if base == "*" => (0, 7),
            Some((from, to)) => (number(from)?, number(to)?),
            None if step.is_some() => (number(base)?, 7),
            None => (number(base)?, number(base)?),
        };
        if from > to {
            return Err(CronProblem::Weekday(item.to_string()));
        }
        let step = match step {
            Some(step) => {
                step.parse::<usize>().ok().filter(|s| *s > 0).ok_or_else(|| CronProblem::Weekday(item.to_string()))?
            }
            None => 1,
        };
        let mut days: Vec<u32> = (from..=to).step_by(step).map(|day| day % 7).collect();
        days.sort_unstable();
        days.dedup();
        parts.extend(days.into_iter().map(|day| NAMES[day as usize].to_string()));
    }
    Ok(parts.join(","))
}

#[cfg(test)]
mod tests {
    use chrono::{Datelike, Timelike, Weekday};

    use super::*;

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    const YEREVAN: Tz = chrono_tz::Asia::Yerevan;
    /// A Sunday, 10:00 in Yerevan.
    const SUNDAY: &str = "2026-11-29T06:00:00Z";

    #[test]
    fn the_crontab_form_means_what_crontab_means() {
        let monday = parse("0 9 * * 1").unwrap();
        let next = upcoming(&monday, YEREVAN, utc(SUNDAY), 2);
        assert_eq!(next[0].weekday(), Weekday::Mon);
        assert_eq!((next[0].hour(), next[0].minute(), next[0].second()), (9, 0, 0));
        assert_eq!(next[1].weekday(), Weekday::Mon);
        for sunday in ["0 9 * * 0", "0 9 * * 7", "0 9 * * Sun"] {
            let next = upcoming(&parse(sunday).unwrap(), YEREVAN, utc(SUNDAY), 1);
            assert_eq!(next[0].weekday(), Weekday::Sun, "{sunday}");
            assert_eq!(next[0].day(), 6, "{sunday}: 10:00 is past 09:00, so next Sunday");
        }
        let workdays: Vec<Weekday> =
            upcoming(&parse("30 8 * * 1-5").unwrap(), YEREVAN, utc(SUNDAY), 5).iter().map(|t| t.weekday()).collect();
        assert_eq!(workdays, [Weekday::Mon, Weekday::Tue, Weekday::Wed, Weekday::Thu, Weekday::Fri]);
    }

    #[test]
    fn the_crates_own_form_keeps_its_seconds_and_year() {
        let every_quarter = parse("0 */15 * * * *").unwrap();
        let next = upcoming(&every_quarter, YEREVAN, utc(SUNDAY), 3);
        let minutes: Vec<u32> = next.iter().map(|t| t.minute()).collect();
        assert_eq!(minutes, [15, 30, 45]);
        assert!(parse("0 0 9 1 1 * 2027").is_ok());
    }

    #[test]
    fn crontab_weekday_ranges_and_steps_mean_the_same_days() {
        let cases = [
            ("6-7", "Sun,Sat"),
            ("1-7", "Sun,Mon,Tue,Wed,Thu,Fri,Sat"),
            ("0-7/2", "Sun,Tue,Thu,Sat"),
            ("*/2", "Sun,Tue,Thu,Sat"),
            ("1-5/2", "Mon,Wed,Fri"),
            ("0-6", "Sun,Mon,Tue,Wed,Thu,Fri,Sat"),
            ("1/2", "Mon,Wed,Fri,Sun"),
            ("5,0", "Fri,Sun"),
            ("Mon-Fri", "Mon-Fri"),
            ("*", "*"),
            ("?", "?"),
        ];
        for (crontab, crate_form) in cases {
            let mut want: Vec<&str> = crate_form.split(',').collect();
            let got_string = crontab_weekday(crontab).unwrap();
            let mut got: Vec<&str> = got_string.split(',').collect();
            want.sort_unstable();
            got.sort_unstable();
            assert_eq!(got, want, "{crontab}");
            assert!(parse(&format!("0 9 * * {crontab}")).is_ok(), "{crontab}");
        }
        assert_eq!(crontab_weekday("5-1"), Err(CronProblem::Weekday("5-1".into())));
    }

    #[test]
    fn upcoming_never_offers_a_past_time_inside_a_repeated_hour() {
        let berlin = chrono_tz::Europe::Berlin;
        // 01:10Z is 02:10 CET, inside the repeated hour; 02:30 CEST (00:30Z) is past.
        let next = upcoming(&parse("30 2 * * *").unwrap(), berlin, utc("2026-10-25T01:10:00Z"), 1);
        assert_eq!(next[0].to_rfc3339(), "2026-10-26T02:30:00+01:00");
    }

    #[test]
    fn mistakes_are_explained() {
        assert!(matches!(parse("0 9 1 * 1"), Err(CronProblem::DayAndWeekday(_))));
        assert!(matches!(parse("* * * *"), Err(CronProblem::FieldCount { fields: 4, .. })));
        assert!(matches!(parse("0 0 0 * * * * *"), Err(CronProblem::FieldCount { fields: 8, .. })));
        assert_eq!(parse("0 9 * * 8"), Err(CronProblem::Weekday("8".into())));
        let problem = parse("61 * * * *").unwrap_err();
        assert!(matches!(problem, CronProblem::Invalid { .. }), "{problem}");
        assert!(problem.to_string().starts_with("`61 * * * *` is not a valid cron expression"), "{problem}");
    }

    #[test]
    fn a_skipped_wall_clock_time_does_not_fire_and_a_repeated_one_fires_once() {
        let berlin = chrono_tz::Europe::Berlin;
        let daily = parse("30 2 * * *").unwrap();
        // 2026-03-29 has no 02:30 in Berlin.
        let spring: Vec<String> =
            upcoming(&daily, berlin, utc("2026-03-27T12:00:00Z"), 3).iter().map(|t| t.to_rfc3339()).collect();
        assert_eq!(spring, ["2026-03-28T02:30:00+01:00", "2026-03-30T02:30:00+02:00", "2026-03-31T02:30:00+02:00"]);
        // 2026-10-25 has 02:30 twice.
        let autumn: Vec<String> =
            upcoming(&daily, berlin, utc("2026-10-24T12:00:00Z"), 3).iter().map(|t| t.to_rfc3339()).collect();
        assert_eq!(autumn, ["2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00", "2026-10-27T02:30:00+01:00"]);
        // Every quarter hour through the repeated hour: its wall-clock times fire once.
        let quarterly = parse("*/15 * * * *").unwrap();
        let night: Vec<String> = upcoming(&quarterly, berlin, utc("2026-10-24T23:50:00Z"), 6)
            .iter()
            .map(|t| t.format("%H:%M%z").to_string())
            .collect();
        assert_eq!(night, ["02:00+0200", "02:15+0200", "02:30+0200", "02:45+0200", "03:00+0100", "03:15+0100"]);
    }
}
