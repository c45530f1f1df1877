//! Tests for parsing whole expressions and for `next_after`, including the
//! daylight saving time rules. Field syntax is tested beside `field.rs`.

use jiff::Timestamp;

use super::*;

fn schedule(expr: &str, timezone: &str) -> CronSchedule {
    CronSchedule::parse(expr, timezone).unwrap_or_else(|error| panic!("{expr:?} in {timezone}: {error}"))
}

fn error(expr: &str, timezone: &str) -> String {
    CronSchedule::parse(expr, timezone).unwrap_err().to_string()
}

/// Unix milliseconds of an RFC 3339 time such as `2026-03-29T01:55:00+01:00`.
fn ms(time: &str) -> i64 {
    time.parse::<Timestamp>().unwrap().as_millisecond()
}

/// The next `count` fire times after `after`, in the schedule's local time with its offset.
fn fires(expr: &str, timezone: &str, after: &str, count: usize) -> Vec<String> {
    let schedule = schedule(expr, timezone);
    let zone = TIME_ZONES.get(timezone).unwrap();
    let mut after = ms(after);
    let mut times = Vec::new();
    for _ in 0..count {
        after = schedule.next_after(after).unwrap_or_else(|| panic!("{expr:?} stopped firing after {after}"));
        times.push(Timestamp::from_millisecond(after).unwrap().to_zoned(zone.clone()).strftime("%F %T%:z").to_string());
    }
    times
}

fn next(expr: &str, timezone: &str, after: &str) -> String {
    fires(expr, timezone, after, 1).remove(0)
}

#[test]
fn five_fields_mean_second_zero() {
    let five = schedule("*/5 * * * *", "UTC");
    let six = schedule("0 */5 * * * *", "UTC");
    let after = ms("2026-05-05T10:02:30Z");
    assert_eq!(five.next_after(after), six.next_after(after));
    assert_eq!(next("*/5 * * * *", "UTC", "2026-05-05T10:02:30Z"), "2026-05-05 10:05:00+00:00");
}

#[test]
fn accessors_return_what_was_written() {
    let schedule = schedule("  0 0 9 * * MON-FRI ", "Europe/Berlin");
    assert_eq!(schedule.expression(), "0 0 9 * * MON-FRI");
    assert_eq!(schedule.timezone(), "Europe/Berlin");
}

#[test]
fn wrong_field_count_is_explained() {
    assert_eq!(
        error("* * * *", "UTC"),
        "cron expression \"* * * *\": expected 6 fields \"second minute hour day-of-month month day-of-week\" \
         (or 5 without the second), found 4; for example \"0 */5 * * * *\" fires every five minutes"
    );
    assert!(error("0 0 0 * * * 2026", "UTC").contains("found 7"));
    assert!(error("", "UTC").contains("found 0"));
}

#[test]
fn field_errors_name_the_expression_the_field_and_the_fix() {
    assert_eq!(
        error("60 * * * * *", "UTC"),
        "cron expression \"60 * * * * *\": second field: 60 is out of range; write a value from 0 to 59"
    );
    assert_eq!(
        error("0 0 0 1 13 *", "UTC"),
        "cron expression \"0 0 0 1 13 *\": month field: 13 is out of range; write a value from 1 to 12 or a name \
         JAN-DEC"
    );
    assert_eq!(
        error("0 */0 * * * *", "UTC"),
        "cron expression \"0 */0 * * * *\": minute field: step 0 in \"*/0\" never advances; write a step of 1 or \
         more, e.g. */5"
    );
    assert!(error("0 0 24 * * *", "UTC").contains("hour field: 24 is out of range"));
    assert!(error("0 0 0 * * 8", "UTC").contains("day-of-week field: 8 is out of range"));
    assert!(error("0 0 0 * * FUNDAY", "UTC").contains("day-of-week field: \"FUNDAY\" is not a valid value"));
}

#[test]
fn unknown_time_zone_is_explained() {
    assert_eq!(
        error("0 * * * * *", "Mars/Base"),
        "unknown time zone \"Mars/Base\"; write an IANA time zone name such as \"UTC\" or \"Europe/Berlin\""
    );
    assert!(error("0 * * * * *", "").starts_with("unknown time zone \"\""));
    assert!(CronSchedule::parse("0 * * * * *", "America/New_York").is_ok());
}

#[test]
fn days_that_never_occur_are_rejected() {
    assert_eq!(
        error("0 0 0 30 2 *", "UTC"),
        "cron expression \"0 0 0 30 2 *\": day-of-month 30 never occurs in the chosen months, so the schedule \
         would never fire; choose a day from 1 to 29"
    );
    assert!(error("0 0 0 31 APR,JUN *", "UTC").contains("day-of-month 31 never occurs"));
    assert!(CronSchedule::parse("0 0 0 31 APR,MAY *", "UTC").is_ok());
    // With both day fields restricted, the weekday alone can fire it.
    assert!(CronSchedule::parse("0 0 0 30 2 MON", "UTC").is_ok());
}

#[test]
fn next_is_strictly_after_and_on_whole_seconds() {
    let every_second = schedule("* * * * * *", "UTC");
    assert_eq!(every_second.next_after(ms("2026-01-01T12:00:00Z")), Some(ms("2026-01-01T12:00:01Z")));
    assert_eq!(every_second.next_after(ms("2026-01-01T12:00:00.999Z")), Some(ms("2026-01-01T12:00:01Z")));
    assert_eq!(every_second.next_after(ms("2026-01-01T11:59:59.001Z")), Some(ms("2026-01-01T12:00:00Z")));
    // Before 1970, milliseconds are negative and still round the right way.
    let new_year = schedule("0 0 0 1 1 *", "UTC");
    assert_eq!(new_year.next_after(-1), Some(0));
    assert_eq!(new_year.next_after(-1_000), Some(0));
    assert_eq!(new_year.next_after(0), Some(ms("1971-01-01T00:00:00Z")));
}

#[test]
fn next_crosses_minute_hour_day_month_and_year_boundaries() {
    assert_eq!(next("30 * * * * *", "UTC", "2026-01-01T12:00:45Z"), "2026-01-01 12:01:30+00:00");
    assert_eq!(next("0 15 * * * *", "UTC", "2026-01-01T12:20:00Z"), "2026-01-01 13:15:00+00:00");
    assert_eq!(next("0 30 9 * * *", "UTC", "2026-01-01T10:00:00Z"), "2026-01-02 09:30:00+00:00");
    assert_eq!(next("0 0 0 31 * *", "UTC", "2026-04-01T00:00:00Z"), "2026-05-31 00:00:00+00:00");
    assert_eq!(next("0 0 0 31 * *", "UTC", "2026-01-31T00:00:00Z"), "2026-03-31 00:00:00+00:00");
    assert_eq!(next("0 0 0 1 1 *", "UTC", "2026-12-31T23:59:59Z"), "2027-01-01 00:00:00+00:00");
    assert_eq!(next("59 59 23 31 12 *", "UTC", "2026-12-31T23:59:59Z"), "2027-12-31 23:59:59+00:00");
    assert_eq!(
        fires("0 0 12 1 JAN,jul *", "UTC", "2026-03-01T00:00:00Z", 3),
        ["2026-07-01 12:00:00+00:00", "2027-01-01 12:00:00+00:00", "2027-07-01 12:00:00+00:00"]
    );
}

#[test]
fn february_29_waits_for_a_leap_year() {
    assert_eq!(
        fires("0 0 0 29 2 *", "UTC", "2026-01-01T00:00:00Z", 2),
        ["2028-02-29 00:00:00+00:00", "2032-02-29 00:00:00+00:00"]
    );
    // 2100 is not a leap year: the next one after 2096 is 2104.
    assert_eq!(next("0 0 0 29 FEB *", "UTC", "2096-03-01T00:00:00Z"), "2104-02-29 00:00:00+00:00");
}

#[test]
fn either_day_field_matches_when_both_are_restricted() {
    // 2026-03-01 is a Sunday: Fridays are the 6th, 13th and 20th.
    assert_eq!(
        fires("0 0 0 15 * FRI", "UTC", "2026-03-07T00:00:00Z", 3),
        ["2026-03-13 00:00:00+00:00", "2026-03-15 00:00:00+00:00", "2026-03-20 00:00:00+00:00"]
    );
    assert_eq!(fires("0 0 0 15 * *", "UTC", "2026-03-07T00:00:00Z", 1), ["2026-03-15 00:00:00+00:00"]);
    assert_eq!(
        fires("0 0 0 * * MON", "UTC", "2026-03-07T00:00:00Z", 2),
        ["2026-03-09 00:00:00+00:00", "2026-03-16 00:00:00+00:00"]
    );
    // Seven is Sunday too.
    assert_eq!(next("0 0 0 * * 7", "UTC", "2026-03-02T00:00:00Z"), "2026-03-08 00:00:00+00:00");
}

#[test]
fn a_day_field_starting_with_star_requires_both() {
    // Days 1, 11, 21 and 31 that are also Mondays.
    assert_eq!(
        fires("0 0 0 */10 * MON", "UTC", "2026-01-01T00:00:00Z", 4),
        [
            "2026-05-11 00:00:00+00:00",
            "2026-06-01 00:00:00+00:00",
            "2026-08-31 00:00:00+00:00",
            "2026-09-21 00:00:00+00:00"
        ]
    );
}

#[test]
fn a_schedule_that_cannot_fire_within_eight_years_returns_none() {
    // February 29 that is also a Sunday (`*/7` on weekdays is only Sunday): 2032, then 2060.
    let leap_sunday = schedule("0 0 0 29 2 */7", "UTC");
    assert_eq!(leap_sunday.next_after(ms("2026-01-01T00:00:00Z")), Some(ms("2032-02-29T00:00:00Z")));
    assert_eq!(leap_sunday.next_after(ms("2032-03-01T00:00:00Z")), None);
    let every_second = schedule("* * * * * *", "UTC");
    assert_eq!(every_second.next_after(i64::MAX), None);
    assert_eq!(every_second.next_after(i64::MIN), None);
}

#[test]
fn fields_are_matched_in_the_schedule_time_zone() {
    assert_eq!(next("0 0 9 * * *", "Europe/Berlin", "2026-01-10T00:00:00Z"), "2026-01-10 09:00:00+01:00");
    assert_eq!(next("0 0 9 * * *", "Europe/Berlin", "2026-07-10T00:00:00Z"), "2026-07-10 09:00:00+02:00");
    assert_eq!(
        schedule("0 0 9 * * *", "America/New_York").next_after(ms("2026-01-10T00:00:00Z")),
        Some(ms("2026-01-10T14:00:00Z"))
    );
}

#[test]
fn every_five_minutes_keeps_its_cadence() {
    let schedule = schedule("0 */5 * * * *", "UTC");
    let mut previous = schedule.next_after(ms("2026-12-31T22:58:00Z")).unwrap();
    assert_eq!(previous, ms("2026-12-31T23:00:00Z"));
    for _ in 0..1_000 {
        let next = schedule.next_after(previous).unwrap();
        assert_eq!(next - previous, 5 * 60 * 1_000);
        previous = next;
    }
}

#[test]
fn spring_forward_fires_skipped_times_once_when_the_clocks_jump() {
    // Europe/Berlin, 2026-03-29: 02:00 CET becomes 03:00 CEST.
    assert_eq!(
        fires("0 30 2 * * *", "Europe/Berlin", "2026-03-27T12:00:00+01:00", 3),
        ["2026-03-28 02:30:00+01:00", "2026-03-29 03:00:00+02:00", "2026-03-30 02:30:00+02:00"]
    );
    assert_eq!(
        fires("0 */5 * * * *", "Europe/Berlin", "2026-03-29T01:50:00+01:00", 3),
        ["2026-03-29 01:55:00+01:00", "2026-03-29 03:00:00+02:00", "2026-03-29 03:05:00+02:00"]
    );
    assert_eq!(
        fires("* * * * * *", "Europe/Berlin", "2026-03-29T01:59:58+01:00", 3),
        ["2026-03-29 01:59:59+01:00", "2026-03-29 03:00:00+02:00", "2026-03-29 03:00:01+02:00"]
    );
    // Two skipped times still fire only once.
    assert_eq!(
        fires("0 15,45 2 * * *", "Europe/Berlin", "2026-03-29T00:00:00+01:00", 2),
        ["2026-03-29 03:00:00+02:00", "2026-03-30 02:15:00+02:00"]
    );
    assert_eq!(next("0 0 3 * * *", "Europe/Berlin", "2026-03-29T00:00:00+01:00"), "2026-03-29 03:00:00+02:00");
}

#[test]
fn fall_back_fires_a_repeated_time_once_at_its_first_occurrence() {
    // Europe/Berlin, 2026-10-25: 03:00 CEST becomes 02:00 CET, so 02:00-02:59 happen twice.
    assert_eq!(
        fires("0 30 2 * * *", "Europe/Berlin", "2026-10-24T12:00:00+02:00", 2),
        ["2026-10-25 02:30:00+02:00", "2026-10-26 02:30:00+01:00"]
    );
    assert_eq!(
        fires("0 */30 * * * *", "Europe/Berlin", "2026-10-25T01:00:00+02:00", 5),
        [
            "2026-10-25 01:30:00+02:00",
            "2026-10-25 02:00:00+02:00",
            "2026-10-25 02:30:00+02:00",
            "2026-10-25 03:00:00+01:00",
            "2026-10-25 03:30:00+01:00"
        ]
    );
    assert_eq!(
        fires("* * * * * *", "Europe/Berlin", "2026-10-25T02:59:58+02:00", 2),
        ["2026-10-25 02:59:59+02:00", "2026-10-25 03:00:00+01:00"]
    );
}

#[test]
fn starting_inside_the_repeated_hour_skips_to_its_end() {
    assert_eq!(next("0 */5 * * * *", "Europe/Berlin", "2026-10-25T02:10:00+01:00"), "2026-10-25 03:00:00+01:00");
    assert_eq!(next("0 0 2 * * *", "Europe/Berlin", "2026-10-25T02:00:00+01:00"), "2026-10-26 02:00:00+01:00");
    assert_eq!(next("0 0 2 * * *", "Europe/Berlin", "2026-10-25T01:59:59+02:00"), "2026-10-25 02:00:00+02:00");
    assert_eq!(
        fires("0 */5 * * * *", "Europe/Berlin", "2026-10-25T02:52:00+02:00", 2),
        ["2026-10-25 02:55:00+02:00", "2026-10-25 03:00:00+01:00"]
    );
}

#[test]
fn ten_thousand_successive_times_terminate() {
    let expressions = [
        "* * * * * *",
        "0 */5 * * * *",
        "0 30 2 * * *",
        "0 0 0 13 * FRI",
        "*/7 1-30/3 */2 1,15 JAN-JUN MON-FRI",
        "0 0 0 29 2 *",
    ];
    for expr in expressions {
        let schedule = schedule(expr, "Europe/Berlin");
        let mut after = ms("2026-01-01T00:00:00Z");
        let mut count = 0;
        while count < 10_000 {
            let Some(next) = schedule.next_after(after) else { break };
            assert!(next > after, "{expr}: {next} is not after {after}");
            after = next;
            count += 1;
        }
        // February 29 runs out of calendar (year 9999) first; every other one fires 10,000 times.
        assert!(count == 10_000 || expr == "0 0 0 29 2 *", "{expr} stopped after {count}");
    }
}

#[test]
fn clock_changes_at_midnight_move_across_days() {
    // America/Santiago, 2026-09-06: midnight -04 becomes 01:00 -03, so that day has no midnight.
    assert_eq!(
        fires("0 0 0 * * *", "America/Santiago", "2026-09-05T12:00:00-04:00", 2),
        ["2026-09-06 01:00:00-03:00", "2026-09-07 00:00:00-03:00"]
    );
    // 2026-04-05: midnight -03 becomes 23:00 -04 on the 4th, so 23:00-23:59 happen twice.
    assert_eq!(
        fires("0 30 23 * * *", "America/Santiago", "2026-04-04T12:00:00-03:00", 2),
        ["2026-04-04 23:30:00-03:00", "2026-04-05 23:30:00-04:00"]
    );
    assert_eq!(next("0 */20 * * * *", "America/Santiago", "2026-04-04T23:10:00-04:00"), "2026-04-05 00:00:00-04:00");
}
