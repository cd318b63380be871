//! Keyboard widgets configured from YAML: the calendar, the time picker and the list pager.

use std::borrow::Cow;

/// The label of an empty cell. Telegram refuses a button whose text is blank once trimmed, so
/// this is U+2800 (Braille blank): invisible, but not whitespace.
pub const BLANK: &str = "\u{2800}";

use chrono::{Datelike, NaiveDate};

use super::codec::{Press, encode};
use super::event::InlineButton;

/// Words and labels the widgets show (from the menu file's `locale` and `texts`).
pub struct WidgetWords<'a> {
    pub months: &'a [String],
    pub weekdays: &'a [String],
    pub today_marker: &'a str,
    pub prev: &'a str,
    pub next: &'a str,
    pub back: &'a str,
}

/// Day-of-month labels, so the calendar does not format them each time.
const DAY_LABELS: [&str; 32] = [
    "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15", "16", "17", "18", "19", "20",
    "21", "22", "23", "24", "25", "26", "27", "28", "29", "30", "31",
];

/// Hour labels of the time picker.
const HOUR_LABELS: [&str; 24] = [
    "00", "01", "02", "03", "04", "05", "06", "07", "08", "09", "10", "11", "12", "13", "14", "15", "16", "17", "18",
    "19", "20", "21", "22", "23",
];

fn button(nonce: u32, label: impl Into<Cow<'static, str>>, press: Press) -> InlineButton {
    InlineButton { label: label.into(), data: encode(nonce, press) }
}

fn shift_month(year: i32, month: u32, delta: i32) -> (i32, u32) {
    let index = year * 12 + month as i32 - 1 + delta;
    (index.div_euclid(12), (index.rem_euclid(12) + 1) as u32)
}

/// The first month the calendar may show.
pub fn earliest_month(today: NaiveDate, allow_past: bool) -> Option<(i32, u32)> {
    (!allow_past).then(|| (today.year(), today.month()))
}

/// A month grid, Monday first: navigation row, weekday row, then weeks. Past days are disabled
/// unless `allow_past`; today is marked.
pub fn calendar(
    nonce: u32,
    (year, month): (i32, u32),
    today: NaiveDate,
    allow_past: bool,
    words: &WidgetWords<'_>,
) -> Vec<Vec<InlineButton>> {
    let mut rows = Vec::with_capacity(8);
    let month_name = words.months.get(month as usize - 1).map(String::as_str).unwrap_or("?");
    let (prev_year, prev_month) = shift_month(year, month, -1);
    let (next_year, next_month) = shift_month(year, month, 1);
    let can_go_back = allow_past || (prev_year, prev_month) >= (today.year(), today.month());
    rows.push(vec![
        if can_go_back {
            button(nonce, words.prev.to_string(), Press::Month { year: prev_year, month: prev_month })
        } else {
            button(nonce, BLANK, Press::Noop)
        },
        button(nonce, format!("{month_name} {year}"), Press::Noop),
        button(nonce, words.next.to_string(), Press::Month { year: next_year, month: next_month }),
    ]);
    rows.push(words.weekdays.iter().map(|d| button(nonce, d.clone(), Press::Noop)).collect());

    let Some(first) = NaiveDate::from_ymd_opt(year, month, 1) else {
        return rows;
    };
    let lead = first.weekday().num_days_from_monday() as usize;
    let mut week: Vec<InlineButton> = (0..lead).map(|_| button(nonce, BLANK, Press::Noop)).collect();
    let mut day = first;
    while day.month() == month {
        let label: Cow<'static, str> = if day == today {
            Cow::Owned(format!("{}{}", words.today_marker, day.day()))
        } else {
            Cow::Borrowed(DAY_LABELS[day.day() as usize % DAY_LABELS.len()])
        };
        let cell = if !allow_past && day < today {
            button(nonce, "·", Press::Noop)
        } else {
            button(nonce, label, Press::Day { year, month, day: day.day() })
        };
        week.push(cell);
        if week.len() == 7 {
            rows.push(std::mem::take(&mut week));
        }
        match day.succ_opt() {
            Some(next) => day = next,
            None => break,
        }
    }
    if !week.is_empty() {
        while week.len() < 7 {
            week.push(button(nonce, BLANK, Press::Noop));
        }
        rows.push(week);
    }
    rows
}

/// The hour grid: `first..=last`, six per row; hours before `not_before` (hour, minute) are disabled.
pub fn hour_grid(nonce: u32, first: u32, last: u32, not_before: Option<(u32, u32)>) -> Vec<Vec<InlineButton>> {
    let cells: Vec<InlineButton> = (first..=last.min(23))
        .map(|hour| {
            let open = not_before.is_none_or(|(h, _)| hour >= h);
            if open {
                button(nonce, HOUR_LABELS[hour as usize % HOUR_LABELS.len()], Press::Hour(hour))
            } else {
                button(nonce, "·", Press::Noop)
            }
        })
        .collect();
    cells.chunks(6).map(<[InlineButton]>::to_vec).collect()
}

/// The minute grid for one hour in `step`-minute steps, four per row, then a back button.
pub fn minute_grid(
    nonce: u32,
    hour: u32,
    step: u32,
    not_before: Option<(u32, u32)>,
    words: &WidgetWords<'_>,
) -> Vec<Vec<InlineButton>> {
    let step = step.clamp(1, 60);
    let cells: Vec<InlineButton> = (0..60)
        .step_by(step as usize)
        .map(|minute| {
            let open = not_before.is_none_or(|(h, m)| (hour, minute) >= (h, m));
            if open {
                button(nonce, format!("{hour:02}:{minute:02}"), Press::Time { hour, minute })
            } else {
                button(nonce, "·", Press::Noop)
            }
        })
        .collect();
    let mut rows: Vec<Vec<InlineButton>> = cells.chunks(4).map(<[InlineButton]>::to_vec).collect();
    rows.push(vec![button(nonce, words.back.to_string(), Press::Hours)]);
    rows
}

/// The pager row under a long list: previous, "page/pages", next.
pub fn pager_row(nonce: u32, page: usize, pages: usize, words: &WidgetWords<'_>) -> Vec<InlineButton> {
    let prev = if page > 0 {
        button(nonce, words.prev.to_string(), Press::Page(page - 1))
    } else {
        button(nonce, BLANK, Press::Noop)
    };
    let next = if page + 1 < pages {
        button(nonce, words.next.to_string(), Press::Page(page + 1))
    } else {
        button(nonce, BLANK, Press::Noop)
    };
    vec![prev, button(nonce, format!("{}/{}", page + 1, pages), Press::Noop), next]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Placeholder words: the real ones come from the menu file (the conversation scripts check
    /// the Armenian calendar end to end).
    fn words() -> (Vec<String>, Vec<String>) {
        ((1..=12).map(|m| format!("month-{m}")).collect(), (1..=7).map(|d| format!("day-{d}")).collect())
    }

    #[test]
    fn november_2026_starts_on_sunday_and_disables_the_past() {
        let (months, weekdays) = words();
        let w =
            WidgetWords {
                months: &months, weekdays: &weekdays, today_marker: "•", prev: "◀", next: "▶", back: "↩"
            };
        let today = NaiveDate::from_ymd_opt(2026, 11, 26).unwrap_or_default();
        let rows = calendar(5, (2026, 11), today, false, &w);
        assert_eq!(rows[0][1].label, "month-11 2026");
        assert_eq!(rows[1][0].label, "day-1", "Monday first");
        assert_eq!(rows[0][0].label, BLANK, "cannot go before the current month");
        assert_eq!(rows[1].len(), 7);
        // 1 November 2026 is a Sunday: six blanks then "·" (past).
        assert_eq!(rows[2][5].label, BLANK);
        assert_eq!(rows[2][6].label, "·");
        let labels: Vec<&str> = rows.iter().flatten().map(|b| b.label.as_ref()).collect();
        assert!(labels.contains(&"•26"));
        assert!(labels.contains(&"30"));
        assert!(!labels.contains(&"25"));
        assert!(rows.iter().all(|r| r.len() <= 8));
    }

    #[test]
    fn month_shift_wraps_years() {
        assert_eq!(shift_month(2026, 12, 1), (2027, 1));
        assert_eq!(shift_month(2026, 1, -1), (2025, 12));
    }

    #[test]
    fn minute_grid_respects_not_before() {
        let (months, weekdays) = words();
        let w =
            WidgetWords {
                months: &months, weekdays: &weekdays, today_marker: "•", prev: "◀", next: "▶", back: "↩"
            };
        let rows = minute_grid(1, 10, 15, Some((10, 20)), &w);
        let labels: Vec<&str> = rows.iter().flatten().map(|b| b.label.as_ref()).collect();
        assert_eq!(labels, vec!["·", "·", "10:30", "10:45", "↩"]);
    }
}
