//! Cron schedules: parse a cron expression in a time zone, then find the next
//! time it fires.
//!
//! # Syntax
//!
//! Six fields, `second minute hour day-of-month month day-of-week`, such as
//! `0 */5 * * * *` (every five minutes). The standard five-field form without
//! seconds is accepted too and fires at second 0. Each field is a comma
//! separated list of `*`, a value `7`, a range `1-5`, or a step over either,
//! `*/5`, `1-30/3` or `5/15` (from 5 to the end of the range). Months take the
//! names `JAN`-`DEC` and days of the week `SUN`-`SAT`, in any case; day-of-week
//! 0 and 7 are both Sunday.
//!
//! # Day-of-month and day-of-week
//!
//! As in Vixie cron: when both day fields are restricted, a day matches if
//! *either* matches (`0 0 0 13 * FRI` fires on every 13th and every Friday).
//! A field that starts with `*` (`*` or `*/2`) counts as unrestricted, and then
//! a day must match both fields (`0 0 0 */10 * MON` fires on the 1st, 11th,
//! 21st and 31st when those are Mondays).
//!
//! # Daylight saving time
//!
//! Fields are matched against the wall-clock time of the schedule's time zone.
//! When the clocks change:
//!
//! * Spring forward (a gap): local times that do not exist that day fire once,
//!   at the instant the clocks jump, however many of them the gap swallowed.
//!   This is Vixie cron's rule for jobs at a fixed time: a daily job at 02:30 in
//!   Europe/Berlin runs at 03:00 CEST on 2026-03-29 instead of skipping a day.
//!   `0 */5 * * * *` fires at 01:55 CET and then 03:00, 03:05 CEST.
//! * Fall back (a fold): a local time that occurs twice fires once, at its
//!   first occurrence. Nothing fires during the repeated hour, so
//!   `0 */5 * * * *` fires at 02:55 CEST and next at 03:00 CET, an hour later.
//!
//! # Cost
//!
//! [`CronSchedule::next_after`] advances field by field (month, day, hour,
//! minute, second), so each call costs at most a few thousand small steps
//! even for a schedule that fires once in years.

mod field;
#[cfg(test)]
mod tests;

use std::sync::LazyLock;

use jiff::Timestamp;
use jiff::civil::{Date, DateTime};
use jiff::tz::{AmbiguousOffset, TimeZone, TimeZoneDatabase};

use field::{Field, ParsedField, ValueSet, parse_field};

/// How far ahead [`CronSchedule::next_after`] looks, in years. Eight rather
/// than five so that a schedule for February 29 always finds one, even across
/// 2100, which is not a leap year.
const SEARCH_YEARS: i32 = 8;

/// The time zone database compiled into the binary, so a schedule fires at the
/// same instants whatever the machine's `/usr/share/zoneinfo` holds.
static TIME_ZONES: LazyLock<TimeZoneDatabase> = LazyLock::new(TimeZoneDatabase::bundled);

/// A parsed cron expression with a seconds field and a time zone.
///
/// ```
/// use nimbus_cron::CronSchedule;
///
/// let every_five_minutes = CronSchedule::parse("0 */5 * * * *", "Europe/Berlin")?;
/// // 2026-01-01T00:02:00Z is followed by 2026-01-01T00:05:00Z.
/// assert_eq!(every_five_minutes.next_after(1_767_225_720_000), Some(1_767_225_900_000));
/// # Ok::<(), nimbus_cron::CronError>(())
/// ```
#[derive(Debug, Clone)]
pub struct CronSchedule {
    expression: String,
    timezone: String,
    zone: TimeZone,
    seconds: ValueSet,
    minutes: ValueSet,
    hours: ValueSet,
    days_of_month: ValueSet,
    months: ValueSet,
    /// Sunday is 0.
    days_of_week: ValueSet,
    /// True when a day must match both day fields; false when either will do.
    days_match_both: bool,
}

/// Why a cron expression or time zone was rejected: what is wrong and what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct CronError {
    message: String,
}

impl CronError {
    fn in_expression(expression: &str, problem: impl std::fmt::Display) -> Self {
        CronError { message: format!("cron expression {expression:?}: {problem}") }
    }
}

impl CronSchedule {
    /// Parses `expr` and resolves `timezone`.
    ///
    /// `expr` has 6 fields, "sec min hour day-of-month month day-of-week"
    /// (e.g. `"0 */5 * * * *"`), or the standard 5 fields without seconds, which
    /// fire at second 0; see the [module documentation](self) for the syntax.
    /// `timezone` is an IANA name such as `"Europe/Berlin"` or `"UTC"`.
    pub fn parse(expr: &str, timezone: &str) -> Result<Self, CronError> {
        let expression = expr.trim();
        let texts: Vec<&str> = expression.split_whitespace().collect();
        let texts = match texts.as_slice() {
            [_, _, _, _, _, _] => texts,
            [_, _, _, _, _] => std::iter::once("0").chain(texts).collect(),
            _ => {
                return Err(CronError::in_expression(
                    expression,
                    format_args!(
                        "expected 6 fields \"second minute hour day-of-month month day-of-week\" \
                         (or 5 without the second), found {}; for example \"0 */5 * * * *\" fires every five minutes",
                        texts.len()
                    ),
                ));
            }
        };
        let mut parsed = [ParsedField::default(); 6];
        for ((slot, field), text) in parsed.iter_mut().zip(Field::ALL).zip(texts) {
            *slot = parse_field(field, text).map_err(|problem| CronError::in_expression(expression, problem))?;
        }
        let [seconds, minutes, hours, days_of_month, months, days_of_week] = parsed;
        let zone = TIME_ZONES.get(timezone).map_err(|_| CronError {
            message: format!(
                "unknown time zone {timezone:?}; write an IANA time zone name such as \"UTC\" or \"Europe/Berlin\""
            ),
        })?;
        let schedule = CronSchedule {
            expression: expression.to_owned(),
            timezone: timezone.to_owned(),
            zone,
            seconds: seconds.values,
            minutes: minutes.values,
            hours: hours.values,
            days_of_month: days_of_month.values,
            months: months.values,
            days_of_week: days_of_week.values,
            days_match_both: days_of_month.starts_with_star || days_of_week.starts_with_star,
        };
        schedule.check_days_exist()?;
        Ok(schedule)
    }

    /// The expression as written, without surrounding whitespace.
    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// The time zone name as written.
    pub fn timezone(&self) -> &str {
        &self.timezone
    }

    /// The first fire time strictly after `after_ms`, both in Unix milliseconds.
    ///
    /// Fire times are whole seconds. Returns `None` when the schedule does not
    /// fire within the next eight years, or the time is beyond the supported
    /// calendar (years -9999 to 9999).
    pub fn next_after(&self, after_ms: i64) -> Option<i64> {
        let earliest = Timestamp::from_second(after_ms.div_euclid(1000).checked_add(1)?).ok()?;
        let mut from = self.zone.to_datetime(earliest);
        let last_year = i32::from(from.year()) + SEARCH_YEARS;
        // Each turn either returns or moves `from` forward past a repeated hour.
        loop {
            let local = self.next_local_match(from, last_year)?;
            let fires_at = match self.zone.to_ambiguous_timestamp(local).offset() {
                AmbiguousOffset::Unambiguous { offset } => offset.to_timestamp(local).ok()?,
                // `local` was skipped by the clocks: fire at the instant they jumped.
                AmbiguousOffset::Gap { after, .. } => self.transition_after(after.to_timestamp(local).ok()?)?,
                AmbiguousOffset::Fold { before, .. } => {
                    let first = before.to_timestamp(local).ok()?;
                    if first >= earliest {
                        first
                    } else {
                        // `earliest` is in the repeated hour, so every local time of
                        // that hour has had its first occurrence: resume where it ends.
                        from = before.to_datetime(self.transition_after(first)?);
                        continue;
                    }
                }
            };
            if fires_at >= earliest {
                return Some(fires_at.as_millisecond());
            }
            // Not reached for real time zones: the clock only runs backwards in a fold.
            from = local.checked_add(jiff::SignedDuration::from_secs(1)).ok()?;
        }
    }

    /// The first offset change strictly after `instant`.
    fn transition_after(&self, instant: Timestamp) -> Option<Timestamp> {
        self.zone.following(instant).next().map(|transition| transition.timestamp())
    }

    /// The first local date and time at or after `from` that matches every
    /// field, in a year no later than `last_year`.
    ///
    /// Each field that does not match moves to its next allowed value and
    /// resets the smaller fields; a field with no allowed value left carries
    /// into the next larger one (minute 60 is the next hour, and so on).
    fn next_local_match(&self, from: DateTime, last_year: i32) -> Option<DateTime> {
        let mut year = i32::from(from.year());
        let [mut month, mut day, mut hour, mut minute, mut second] =
            [from.month(), from.day(), from.hour(), from.minute(), from.second()].map(|part| part.unsigned_abs());
        while year <= last_year {
            match self.months.first_from(month) {
                Some(next) if next == month => {}
                Some(next) => (month, day, hour, minute, second) = (next, 1, 0, 0, 0),
                None => {
                    (year, month, day, hour, minute, second) = (year + 1, 1, 1, 0, 0, 0);
                    continue;
                }
            }
            match (day..=days_in_month(year, month)).find(|&day| self.day_matches(year, month, day)) {
                Some(next) if next == day => {}
                Some(next) => (day, hour, minute, second) = (next, 0, 0, 0),
                None => {
                    (month, day, hour, minute, second) = (month + 1, 1, 0, 0, 0);
                    continue;
                }
            }
            match self.hours.first_from(hour) {
                Some(next) if next == hour => {}
                Some(next) => (hour, minute, second) = (next, 0, 0),
                None => {
                    (day, hour, minute, second) = (day + 1, 0, 0, 0);
                    continue;
                }
            }
            match self.minutes.first_from(minute) {
                Some(next) if next == minute => {}
                Some(next) => (minute, second) = (next, 0),
                None => {
                    (hour, minute, second) = (hour + 1, 0, 0);
                    continue;
                }
            }
            match self.seconds.first_from(second) {
                Some(next) => second = next,
                None => {
                    (minute, second) = (minute + 1, 0);
                    continue;
                }
            }
            let [month, day, hour, minute, second] = [month, day, hour, minute, second].map(|part| part as i8);
            return DateTime::new(i16::try_from(year).ok()?, month, day, hour, minute, second, 0).ok();
        }
        None
    }

    /// Whether the day fields allow this date, combining them the cron way.
    fn day_matches(&self, year: i32, month: u8, day: u8) -> bool {
        let Some(date) = i16::try_from(year).ok().and_then(|year| Date::new(year, month as i8, day as i8).ok()) else {
            return false;
        };
        let by_month_day = self.days_of_month.contains(day);
        let by_weekday = self.days_of_week.contains(date.weekday().to_sunday_zero_offset().unsigned_abs());
        if self.days_match_both { by_month_day && by_weekday } else { by_month_day || by_weekday }
    }

    /// Rejects schedules whose day-of-month never occurs in the chosen months,
    /// such as `0 0 0 30 2 *`, which would otherwise never fire.
    fn check_days_exist(&self) -> Result<(), CronError> {
        let longest_month = (1..=12).filter(|&month| self.months.contains(month)).map(longest_month).max();
        let earliest_day = self.days_of_month.first_from(1);
        match (longest_month, earliest_day) {
            (Some(longest), Some(day)) if self.days_match_both && day > longest => Err(CronError::in_expression(
                &self.expression,
                format_args!(
                    "day-of-month {day} never occurs in the chosen months, so the schedule would never fire; \
                     choose a day from 1 to {longest}"
                ),
            )),
            _ => Ok(()),
        }
    }
}

/// The number of days in `month` of `year` (proleptic Gregorian calendar).
fn days_in_month(year: i32, month: u8) -> u8 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// The most days `month` can have, in any year.
fn longest_month(month: u8) -> u8 {
    days_in_month(2000, month)
}
