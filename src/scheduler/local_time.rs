//! A publish time as the admin means it: a date and a time on the wall clock of
//! `SCHEDULER_TIMEZONE`, turned into one UTC instant with daylight-saving gaps and overlaps
//! resolved explicitly (and reported, so the admin can be told), and refused when it is past.

use chrono::{DateTime, Duration, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;

/// A wall-clock time resolved to an instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolved {
    /// The time exists once: the usual case.
    Exact(DateTime<Utc>),
    /// The clocks jumped over the time (spring forward): it does not exist. The post goes out
    /// at the first moment after the gap, which the admin sees as `shown_as`.
    SkippedForward { at: DateTime<Utc>, shown_as: NaiveDateTime },
    /// The clocks went back over the time (fall back): it happens twice. The first occurrence
    /// is taken; `later` is the other one.
    Ambiguous { at: DateTime<Utc>, later: DateTime<Utc> },
}

impl Resolved {
    /// The instant the post is due.
    pub fn at(self) -> DateTime<Utc> {
        match self {
            Resolved::Exact(at) | Resolved::SkippedForward { at, .. } | Resolved::Ambiguous { at, .. } => at,
        }
    }
}

/// Why a wall-clock time cannot be scheduled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("the time is in the past")]
    Past,
    #[error("the time cannot be resolved in this time zone")]
    Unresolvable,
}

/// Resolves `date` `time` on the wall clock of `zone`.
pub fn resolve(zone: Tz, date: NaiveDate, time: NaiveTime) -> Result<Resolved, Refused> {
    let local = date.and_time(time);
    match zone.from_local_datetime(&local) {
        LocalResult::Single(at) => Ok(Resolved::Exact(at.with_timezone(&Utc))),
        LocalResult::Ambiguous(first, second) => {
            let (a, b) = (first.with_timezone(&Utc), second.with_timezone(&Utc));
            Ok(Resolved::Ambiguous { at: a.min(b), later: a.max(b) })
        }
        LocalResult::None => {
            // Gaps are whole minutes (usually an hour, at most a few): walk forward a minute at
            // a time to the first wall-clock time that exists.
            let mut probe = local;
            for _ in 0..(24 * 60) {
                probe += Duration::minutes(1);
                if let LocalResult::Single(at) | LocalResult::Ambiguous(at, _) = zone.from_local_datetime(&probe) {
                    let at = at.with_timezone(&Utc);
                    return Ok(Resolved::SkippedForward { at, shown_as: at.with_timezone(&zone).naive_local() });
                }
            }
            Err(Refused::Unresolvable)
        }
    }
}

/// Like [`resolve`], refusing a time that is not after `now`.
pub fn resolve_future(zone: Tz, date: NaiveDate, time: NaiveTime, now: DateTime<Utc>) -> Result<Resolved, Refused> {
    let resolved = resolve(zone, date, time)?;
    if resolved.at() <= now { Err(Refused::Past) } else { Ok(resolved) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    fn time(h: u32, m: u32) -> NaiveTime {
        NaiveTime::from_hms_opt(h, m, 0).unwrap()
    }

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn yerevan_has_no_daylight_saving_and_is_four_hours_ahead() {
        let resolved = resolve(chrono_tz::Asia::Yerevan, date(2026, 3, 29), time(2, 30)).unwrap();
        assert_eq!(resolved, Resolved::Exact(utc("2026-03-28T22:30:00Z")));
    }

    #[test]
    fn a_time_in_the_spring_gap_moves_to_the_end_of_the_gap() {
        // Berlin, 2026-03-29: 02:00 CET jumps to 03:00 CEST.
        let resolved = resolve(chrono_tz::Europe::Berlin, date(2026, 3, 29), time(2, 30)).unwrap();
        assert_eq!(
            resolved,
            Resolved::SkippedForward {
                at: utc("2026-03-29T01:00:00Z"),
                shown_as: date(2026, 3, 29).and_time(time(3, 0)),
            }
        );
    }

    #[test]
    fn a_time_in_the_autumn_overlap_takes_the_first_occurrence() {
        // Berlin, 2026-10-25: 03:00 CEST goes back to 02:00 CET; 02:30 happens twice.
        let resolved = resolve(chrono_tz::Europe::Berlin, date(2026, 10, 25), time(2, 30)).unwrap();
        assert_eq!(
            resolved,
            Resolved::Ambiguous { at: utc("2026-10-25T00:30:00Z"), later: utc("2026-10-25T01:30:00Z") }
        );
    }

    #[test]
    fn times_around_the_changes_are_exact() {
        let berlin = chrono_tz::Europe::Berlin;
        assert_eq!(
            resolve(berlin, date(2026, 3, 29), time(1, 59)).unwrap(),
            Resolved::Exact(utc("2026-03-29T00:59:00Z"))
        );
        assert_eq!(
            resolve(berlin, date(2026, 3, 29), time(3, 0)).unwrap(),
            Resolved::Exact(utc("2026-03-29T01:00:00Z"))
        );
        assert_eq!(
            resolve(berlin, date(2026, 10, 25), time(3, 0)).unwrap(),
            Resolved::Exact(utc("2026-10-25T02:00:00Z"))
        );
    }

    #[test]
    fn every_minute_of_the_change_days_resolves_to_what_the_wall_clock_says() {
        let days = [
            (chrono_tz::Europe::Berlin, date(2026, 3, 29)),
            (chrono_tz::Europe::Berlin, date(2026, 10, 25)),
            (chrono_tz::America::New_York, date(2026, 3, 8)),
            (chrono_tz::America::New_York, date(2026, 11, 1)),
            (chrono_tz::Australia::Lord_Howe, date(2026, 4, 5)), // back half an hour
            (chrono_tz::Australia::Lord_Howe, date(2026, 10, 4)), // forward half an hour
        ];
        let mut kinds = [0; 3];
        for (zone, day) in days {
            for minute in 0..24 * 60 {
                let wanted = day.and_time(time(minute / 60, minute % 60));
                match resolve(zone, wanted.date(), wanted.time()).unwrap() {
                    Resolved::Exact(at) => {
                        kinds[0] += 1;
                        assert_eq!(at.with_timezone(&zone).naive_local(), wanted);
                    }
                    Resolved::SkippedForward { at, shown_as } => {
                        kinds[1] += 1;
                        assert!(shown_as > wanted && shown_as - wanted <= Duration::hours(1), "{zone} {wanted}");
                        assert_eq!(at.with_timezone(&zone).naive_local(), shown_as);
                        // Nothing between the wanted time and the one taken exists.
                        let before = shown_as - Duration::minutes(1);
                        assert!(matches!(zone.from_local_datetime(&before), LocalResult::None), "{zone} {wanted}");
                    }
                    Resolved::Ambiguous { at, later } => {
                        kinds[2] += 1;
                        assert!(at < later);
                        assert_eq!(at.with_timezone(&zone).naive_local(), wanted);
                        assert_eq!(later.with_timezone(&zone).naive_local(), wanted);
                    }
                }
            }
        }
        assert_eq!(kinds[1], 60 + 60 + 30, "the gaps: Berlin and New York an hour, Lord Howe half an hour");
        assert_eq!(kinds[2], 60 + 60 + 30, "the overlaps, likewise");
    }

    #[test]
    fn a_past_time_is_refused_and_now_counts_as_past() {
        let zone = chrono_tz::Asia::Yerevan;
        let now = utc("2026-11-26T10:00:00Z"); // 14:00 in Yerevan
        assert_eq!(resolve_future(zone, date(2026, 11, 26), time(13, 59), now), Err(Refused::Past));
        assert_eq!(resolve_future(zone, date(2026, 11, 26), time(14, 0), now), Err(Refused::Past));
        assert!(resolve_future(zone, date(2026, 11, 26), time(14, 1), now).is_ok());
    }
}
