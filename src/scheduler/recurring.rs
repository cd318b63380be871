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
    #[error("`{expr}` is not a valid cron expression ({detail})")]
    Invalid { expr: String, detail: String },
}

/// Reads a cron expression in either form.
pub fn parse(expr: &str) -> Result<Schedule, CronProblem> {
    let fields: Vec<&str> = expr.split_whitespace().collect();
    let full = match fields.len() {
        5 => {
            let weekday = crontab_weekday(fields[4])?;
            format!("0 {} {} {} {} {weekday}", fields[0], fields[1], fields[2], fields[3])
        }
        6 | 7 => fields.join(" "),
        count => return Err(CronProblem::FieldCount { expr: expr.trim().to_string(), fields: count }),
    };
    Schedule::from_str(&full)
        .map_err(|error| CronProblem::Invalid { expr: expr.trim().to_string(), detail: error.to_string() })
}

/// The next `count` fire times after `after`, on the wall clock of `zone`. A time the clocks
/// skip (a daylight-saving gap) does not fire that day. A time they repeat fires once: the cron
/// crate fires a daily 02:30 twice on the night the clocks go back (a report sent twice, an
/// evergreen post repeated), so fires whose wall-clock time is not after the previous one's are
/// dropped.
pub fn upcoming(schedule: &Schedule, zone: Tz, after: DateTime<Utc>, count: usize) -> Vec<DateTime<Tz>> {
    let mut fires: Vec<DateTime<Tz>> = Vec::with_capacity(count);
    // Bounded: a schedule that only fires inside repeated hours must not loop for ever.
    for fire in schedule.after(&after.with_timezone(&zone)).take(count.saturating_mul(4).max(16)) {
        if fires.last().is_none_or(|last| fire.naive_local() > last.naive_local()) {
            fires.push(fire);
            if fires.len() == count {
                break;
            }
        }
    }
    fires
}

/// Crontab weekdays (0 or 7 = Sunday, 1 = Monday) as the cron crate's names, which mean the
/// same in every convention; names and `*` pass through.
fn crontab_weekday(field: &str) -> Result<String, CronProblem> {
    const NAMES: [&str; 8] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    let name = |part: &str| -> Result<String, CronProblem> {
        if part.chars().all(|c| c.is_ascii_digit()) {
            let day: usize = part.parse().map_err(|_| CronProblem::Weekday(part.to_string()))?;
            NAMES.get(day).map(|n| n.to_string()).ok_or_else(|| CronProblem::Weekday(part.to_string()))
        } else {
            Ok(part.to_string())
        }
    };
    let mut parts = Vec::new();
    for item in field.split(',') {
        let (base, step) = match item.split_once('/') {
            Some((base, step)) => (base, Some(step)),
            None => (item, None),
        };
        let base = match base.split_once('-') {
            Some((from, to)) => format!("{}-{}", name(from)?, name(to)?),
            None => name(base)?,
        };
        parts.push(match step {
            Some(step) => format!("{base}/{step}"),
            None => base,
        });
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
    fn mistakes_are_explained() {
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
