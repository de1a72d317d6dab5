//! Slot arithmetic: the next instant a schedule runs, computed in its zone with the DST rules
//! described in the [module doc](super).
//!
//! Pure functions over chrono-tz's embedded tzdb: no clock, no I/O, so the runner, the settings
//! page's "next run" preview and the tests all use the same answer.

use chrono::{
    DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Timelike, Utc,
};
use chrono_tz::Tz;

use super::settings::{Frequency, ScheduleSettings, parse_hhmm, parse_zone};

/// The first slot strictly after `after`, in UTC; `None` when the schedule is disabled (or its
/// fields are invalid, which [`parse_schedule`](super::parse_schedule) never lets through).
pub fn next_run_after(s: &ScheduleSettings, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    if !s.enabled {
        return None;
    }
    let time = parse_hhmm(&s.time)?;
    let zone = parse_zone(&s.timezone)?;
    match s.frequency {
        Frequency::Hourly => next_hourly(zone, time.minute(), after),
        Frequency::Daily => next_on_days(zone, time, after, |_| true),
        Frequency::Weekly => {
            let day = u32::from(s.day_of_week);
            if day > 6 {
                return None;
            }
            next_on_days(zone, time, after, |d| {
                d.weekday().num_days_from_sunday() == day
            })
        }
    }
}

/// Daily and weekly: one slot per matching local date, resolved to exactly one instant.
fn next_on_days(
    zone: Tz,
    time: NaiveTime,
    after: DateTime<Utc>,
    runs_on: impl Fn(NaiveDate) -> bool,
) -> Option<DateTime<Utc>> {
    let today = after.with_timezone(&zone).date_naive();
    // Start with yesterday: its slot can land after `after` when a gap pushed it forward. Ten
    // days then cover a weekly slot whatever weekday `after` falls on. Resolved slots only grow
    // with the date, so the first one after `after` is the next.
    today
        .pred_opt()?
        .iter_days()
        .take(10)
        .filter(|d| runs_on(*d))
        .filter_map(|d| resolve_once(zone, d.and_time(time)))
        .find(|t| *t > after)
}

/// The one instant a daily or weekly slot at local time `naive` runs: that time when it exists
/// once, its first occurrence when a fall-back repeats it, and the end of the gap (the first
/// local time that exists again) when a spring-forward skips it.
fn resolve_once(zone: Tz, naive: NaiveDateTime) -> Option<DateTime<Utc>> {
    if let Some(t) = zone.from_local_datetime(&naive).earliest() {
        return Some(t.to_utc());
    }
    // Walk minute by minute to where the clocks jumped to: every transition in use today falls
    // on a whole minute, so this finds the exact instant. 48 hours is past the longest gap on
    // record (Pacific/Apia skipped a whole day in 2011).
    (1..=48 * 60)
        .map(|m| naive + Duration::minutes(m))
        .find_map(|n| zone.from_local_datetime(&n).earliest())
        .map(|t| t.to_utc())
}

/// Hourly: every instant at which the zone's wall clock reads `HH:minute`.
fn next_hourly(zone: Tz, minute: u32, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let local = after.with_timezone(&zone).naive_local();
    let this_hour = local.date().and_hms_opt(local.hour(), minute, 0)?;
    // Wall-clock readings from 4 hours before `after`'s (a fall-back shows earlier readings
    // again after `after`) to 30 hours after (past the longest gap); a reading that happens
    // twice gives two instants, one that never happens gives none. Local readings are not
    // monotonic in real time across a fall-back, hence `min` rather than the first match.
    (-4..=30)
        .map(|h| this_hour + Duration::hours(h))
        .flat_map(|naive| {
            let mapped = zone.from_local_datetime(&naive);
            [mapped.earliest(), mapped.latest()]
        })
        .flatten()
        .map(|t| t.to_utc())
        .filter(|t| *t > after)
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(frequency: Frequency, time: &str, day_of_week: u8, zone: &str) -> ScheduleSettings {
        ScheduleSettings {
            enabled: true,
            frequency,
            time: time.into(),
            day_of_week,
            timezone: zone.into(),
        }
    }

    fn daily(time: &str, zone: &str) -> ScheduleSettings {
        schedule(Frequency::Daily, time, 0, zone)
    }

    fn hourly(time: &str, zone: &str) -> ScheduleSettings {
        schedule(Frequency::Hourly, time, 0, zone)
    }

    fn weekly(day: u8, time: &str, zone: &str) -> ScheduleSettings {
        schedule(Frequency::Weekly, time, day, zone)
    }

    fn utc(rfc3339: &str) -> DateTime<Utc> {
        rfc3339.parse().expect("test instant is RFC 3339")
    }

    /// The next run as a UTC RFC 3339 string, for exact comparisons.
    fn next(s: &ScheduleSettings, after: &str) -> String {
        next_run_after(s, utc(after))
            .expect("enabled schedule has a next run")
            .format("%Y-%m-%dT%H:%M:%SZ")
            .to_string()
    }

    /// `n` consecutive runs after `after`, each shown on the schedule's wall clock with its
    /// zone abbreviation, so DST tests read like the clock on the wall.
    fn runs(s: &ScheduleSettings, after: &str, n: usize) -> Vec<String> {
        let zone = parse_zone(&s.timezone).expect("test zone is valid");
        let mut at = utc(after);
        (0..n)
            .map(|_| {
                at = next_run_after(s, at).expect("enabled schedule has a next run");
                at.with_timezone(&zone)
                    .format("%Y-%m-%d %H:%M %Z")
                    .to_string()
            })
            .collect()
    }

    #[test]
    fn disabled_schedule_has_no_next_run() {
        let mut s = daily("03:00", "UTC");
        s.enabled = false;
        assert_eq!(next_run_after(&s, utc("2025-06-10T00:00:00Z")), None);
    }

    #[test]
    fn invalid_stored_schedule_has_no_next_run_instead_of_panicking() {
        let after = utc("2025-06-10T00:00:00Z");
        assert_eq!(next_run_after(&daily("25:00", "UTC"), after), None);
        assert_eq!(
            next_run_after(&daily("03:00", "Nowhere/Special"), after),
            None
        );
        assert_eq!(next_run_after(&weekly(7, "03:00", "UTC"), after), None);
    }

    #[test]
    fn daily_just_before_the_time_runs_the_same_day() {
        assert_eq!(
            next(&daily("03:00", "UTC"), "2025-06-10T02:59:59Z"),
            "2025-06-10T03:00:00Z"
        );
    }

    #[test]
    fn daily_exactly_at_the_time_runs_the_next_day() {
        assert_eq!(
            next(&daily("03:00", "UTC"), "2025-06-10T03:00:00Z"),
            "2025-06-11T03:00:00Z"
        );
    }

    #[test]
    fn daily_just_after_the_time_runs_the_next_day() {
        assert_eq!(
            next(&daily("03:00", "UTC"), "2025-06-10T03:00:01Z"),
            "2025-06-11T03:00:00Z"
        );
    }

    #[test]
    fn daily_at_midnight_and_at_2359_cross_the_end_of_day() {
        assert_eq!(
            next(&daily("00:00", "UTC"), "2025-06-10T23:59:59Z"),
            "2025-06-11T00:00:00Z"
        );
        assert_eq!(
            next(&daily("23:59", "UTC"), "2025-06-10T23:58:00Z"),
            "2025-06-10T23:59:00Z"
        );
        assert_eq!(
            next(&daily("23:59", "UTC"), "2025-06-10T23:59:00Z"),
            "2025-06-11T23:59:00Z"
        );
    }

    #[test]
    fn daily_crosses_the_end_of_month_including_leap_day() {
        let s = daily("03:00", "UTC");
        assert_eq!(next(&s, "2025-01-31T04:00:00Z"), "2025-02-01T03:00:00Z");
        assert_eq!(next(&s, "2025-04-30T04:00:00Z"), "2025-05-01T03:00:00Z");
        assert_eq!(next(&s, "2025-02-28T04:00:00Z"), "2025-03-01T03:00:00Z");
        assert_eq!(next(&s, "2024-02-28T04:00:00Z"), "2024-02-29T03:00:00Z");
        assert_eq!(next(&s, "2024-02-29T04:00:00Z"), "2024-03-01T03:00:00Z");
    }

    #[test]
    fn daily_crosses_the_end_of_year() {
        assert_eq!(
            next(&daily("00:30", "UTC"), "2025-12-31T23:59:00Z"),
            "2026-01-01T00:30:00Z"
        );
        assert_eq!(
            next(&daily("03:00", "UTC"), "2025-12-31T03:00:00Z"),
            "2026-01-01T03:00:00Z"
        );
    }

    #[test]
    fn hourly_runs_at_the_minute_past_each_hour_ignoring_the_hour() {
        for time in ["00:15", "07:15", "23:15"] {
            let s = hourly(time, "UTC");
            assert_eq!(next(&s, "2025-06-10T10:14:59Z"), "2025-06-10T10:15:00Z");
            assert_eq!(next(&s, "2025-06-10T10:15:00Z"), "2025-06-10T11:15:00Z");
            assert_eq!(next(&s, "2025-06-10T10:15:01Z"), "2025-06-10T11:15:00Z");
        }
    }

    #[test]
    fn hourly_at_minute_zero_runs_on_the_hour() {
        let s = hourly("00:00", "UTC");
        assert_eq!(next(&s, "2025-06-10T10:00:00Z"), "2025-06-10T11:00:00Z");
        assert_eq!(next(&s, "2025-06-10T10:59:59Z"), "2025-06-10T11:00:00Z");
    }

    #[test]
    fn hourly_crosses_the_end_of_day_month_and_year() {
        let s = hourly("00:15", "UTC");
        assert_eq!(next(&s, "2025-06-10T23:20:00Z"), "2025-06-11T00:15:00Z");
        assert_eq!(next(&s, "2025-06-30T23:15:00Z"), "2025-07-01T00:15:00Z");
        assert_eq!(next(&s, "2025-12-31T23:50:00Z"), "2026-01-01T00:15:00Z");
    }

    #[test]
    fn weekly_runs_on_its_weekday_at_its_time() {
        // 2025-06-12 is a Thursday (day 4).
        let s = weekly(4, "03:00", "UTC");
        assert_eq!(next(&s, "2025-06-12T02:59:59Z"), "2025-06-12T03:00:00Z");
        assert_eq!(next(&s, "2025-06-12T03:00:00Z"), "2025-06-19T03:00:00Z");
        assert_eq!(next(&s, "2025-06-13T00:00:00Z"), "2025-06-19T03:00:00Z");
        assert_eq!(next(&s, "2025-06-11T23:00:00Z"), "2025-06-12T03:00:00Z");
    }

    #[test]
    fn weekly_wraps_from_saturday_to_sunday_and_back() {
        // 2025-06-07 is a Saturday, 2025-06-08 a Sunday.
        assert_eq!(
            next(&weekly(0, "01:00", "UTC"), "2025-06-07T23:00:00Z"),
            "2025-06-08T01:00:00Z"
        );
        assert_eq!(
            next(&weekly(6, "01:00", "UTC"), "2025-06-08T00:00:00Z"),
            "2025-06-14T01:00:00Z"
        );
        assert_eq!(
            next(&weekly(6, "01:00", "UTC"), "2025-06-07T01:00:00Z"),
            "2025-06-14T01:00:00Z"
        );
    }

    #[test]
    fn weekly_wraps_across_the_end_of_year() {
        // 2025-12-31 is a Wednesday; the next Thursday is 2026-01-01.
        assert_eq!(
            next(&weekly(4, "03:00", "UTC"), "2025-12-31T12:00:00Z"),
            "2026-01-01T03:00:00Z"
        );
        assert_eq!(
            next(&weekly(3, "03:00", "UTC"), "2025-12-31T12:00:00Z"),
            "2026-01-07T03:00:00Z"
        );
    }

    #[test]
    fn new_york_spring_forward_runs_a_missing_0230_once_at_0300() {
        // 2025-03-09: at 02:00 EST the clocks jump to 03:00 EDT, so 02:30 does not exist.
        let s = daily("02:30", "America/New_York");
        assert_eq!(
            runs(&s, "2025-03-08T00:00:00Z", 3),
            [
                "2025-03-08 02:30 EST",
                "2025-03-09 03:00 EDT",
                "2025-03-10 02:30 EDT"
            ]
        );
        assert_eq!(next(&s, "2025-03-09T06:59:59Z"), "2025-03-09T07:00:00Z");
        // From the moment it ran, the next run is the following day, not a second one today.
        assert_eq!(next(&s, "2025-03-09T07:00:00Z"), "2025-03-10T06:30:00Z");
    }

    #[test]
    fn new_york_fall_back_runs_a_repeated_0130_once_at_the_first_occurrence() {
        // 2025-11-02: at 02:00 EDT the clocks go back to 01:00 EST, so 01:30 happens twice.
        let s = daily("01:30", "America/New_York");
        assert_eq!(
            runs(&s, "2025-11-01T00:00:00Z", 3),
            [
                "2025-11-01 01:30 EDT",
                "2025-11-02 01:30 EDT",
                "2025-11-03 01:30 EST"
            ]
        );
        // Between the two occurrences the second one is not a slot.
        assert_eq!(next(&s, "2025-11-02T05:30:00Z"), "2025-11-03T06:30:00Z");
        assert_eq!(next(&s, "2025-11-02T06:00:00Z"), "2025-11-03T06:30:00Z");
    }

    #[test]
    fn london_spring_forward_runs_a_missing_0130_once_at_0200() {
        // 2025-03-30: at 01:00 GMT the clocks jump to 02:00 BST.
        let s = daily("01:30", "Europe/London");
        assert_eq!(
            runs(&s, "2025-03-29T00:00:00Z", 3),
            [
                "2025-03-29 01:30 GMT",
                "2025-03-30 02:00 BST",
                "2025-03-31 01:30 BST"
            ]
        );
        // 02:30 exists in London that day and runs as usual.
        assert_eq!(
            next(&daily("02:30", "Europe/London"), "2025-03-30T00:00:00Z"),
            "2025-03-30T01:30:00Z"
        );
    }

    #[test]
    fn london_fall_back_runs_a_repeated_0130_once() {
        // 2025-10-26: at 02:00 BST the clocks go back to 01:00 GMT.
        let s = daily("01:30", "Europe/London");
        assert_eq!(
            runs(&s, "2025-10-25T00:00:00Z", 3),
            [
                "2025-10-25 01:30 BST",
                "2025-10-26 01:30 BST",
                "2025-10-27 01:30 GMT"
            ]
        );
        assert_eq!(next(&s, "2025-10-26T00:30:00Z"), "2025-10-27T01:30:00Z");
    }

    #[test]
    fn weekly_on_a_spring_forward_day_runs_at_the_end_of_the_gap() {
        // 2025-03-09 is a Sunday.
        let s = weekly(0, "02:30", "America/New_York");
        assert_eq!(
            runs(&s, "2025-03-01T00:00:00Z", 3),
            [
                "2025-03-02 02:30 EST",
                "2025-03-09 03:00 EDT",
                "2025-03-16 02:30 EDT"
            ]
        );
    }

    #[test]
    fn hourly_across_new_york_spring_forward_skips_only_the_missing_hour() {
        assert_eq!(
            runs(
                &hourly("00:30", "America/New_York"),
                "2025-03-09T05:00:00Z",
                4
            ),
            [
                "2025-03-09 00:30 EST",
                "2025-03-09 01:30 EST",
                "2025-03-09 03:30 EDT",
                "2025-03-09 04:30 EDT"
            ]
        );
        assert_eq!(
            runs(
                &hourly("00:00", "America/New_York"),
                "2025-03-09T05:30:00Z",
                3
            ),
            [
                "2025-03-09 01:00 EST",
                "2025-03-09 03:00 EDT",
                "2025-03-09 04:00 EDT"
            ]
        );
    }

    #[test]
    fn hourly_across_new_york_fall_back_runs_once_per_real_hour() {
        assert_eq!(
            runs(
                &hourly("00:30", "America/New_York"),
                "2025-11-02T04:00:00Z",
                4
            ),
            [
                "2025-11-02 00:30 EDT",
                "2025-11-02 01:30 EDT",
                "2025-11-02 01:30 EST",
                "2025-11-02 02:30 EST"
            ]
        );
    }

    #[test]
    fn hourly_across_london_changes_runs_once_per_real_hour() {
        assert_eq!(
            runs(&hourly("00:45", "Europe/London"), "2025-03-30T00:00:00Z", 3),
            [
                "2025-03-30 00:45 GMT",
                "2025-03-30 02:45 BST",
                "2025-03-30 03:45 BST"
            ]
        );
        assert_eq!(
            runs(&hourly("00:45", "Europe/London"), "2025-10-26T00:00:00Z", 3),
            [
                "2025-10-26 01:45 BST",
                "2025-10-26 01:45 GMT",
                "2025-10-26 02:45 GMT"
            ]
        );
    }

    #[test]
    fn kolkata_half_hour_offset_is_honoured() {
        // IST is UTC+05:30 all year.
        let s = daily("03:00", "Asia/Kolkata");
        assert_eq!(next(&s, "2025-01-01T21:29:59Z"), "2025-01-01T21:30:00Z");
        assert_eq!(next(&s, "2025-01-01T21:30:00Z"), "2025-01-02T21:30:00Z");
        // The local date is already the next day in UTC terms: 2025-12-31T21:30Z is 03:00 on
        // 2026-01-01 in Kolkata.
        assert_eq!(next(&s, "2025-12-31T20:00:00Z"), "2025-12-31T21:30:00Z");
        // Hourly at :15 IST is :45 UTC.
        assert_eq!(
            next(&hourly("00:15", "Asia/Kolkata"), "2025-01-01T10:00:00Z"),
            "2025-01-01T10:45:00Z"
        );
        assert_eq!(
            next(&hourly("00:45", "Asia/Kolkata"), "2025-01-01T10:00:00Z"),
            "2025-01-01T10:15:00Z"
        );
    }

    #[test]
    fn weekly_uses_the_local_weekday_not_the_utc_one() {
        // Monday 03:00 IST is Sunday 21:30 UTC; 2025-06-08 is a Sunday.
        let s = weekly(1, "03:00", "Asia/Kolkata");
        assert_eq!(next(&s, "2025-06-08T00:00:00Z"), "2025-06-08T21:30:00Z");
        assert_eq!(
            runs(&s, "2025-06-08T00:00:00Z", 1),
            ["2025-06-09 03:00 IST"]
        );
    }

    #[test]
    fn daily_runs_exactly_once_per_local_day_for_a_whole_year_in_dst_zones() {
        for zone in ["Europe/London", "America/New_York", "Australia/Lord_Howe"] {
            for time in ["00:00", "01:30", "02:00", "02:30", "23:59"] {
                let s = daily(time, zone);
                let tz = parse_zone(zone).expect("valid");
                let mut at = utc("2024-12-31T12:00:00Z");
                let mut dates = Vec::new();
                while at < utc("2025-12-31T00:00:00Z") {
                    at = next_run_after(&s, at).expect("next run");
                    dates.push(at.with_timezone(&tz).date_naive());
                }
                let consecutive = dates.windows(2).all(|w| w[0].succ_opt() == Some(w[1]));
                assert!(
                    consecutive,
                    "{zone} {time}: one run per local date, none skipped"
                );
                assert!(
                    (365..=366).contains(&dates.len()),
                    "{zone} {time}: {}",
                    dates.len()
                );
            }
        }
    }

    #[test]
    fn hourly_runs_exactly_one_hour_apart_for_a_whole_year_in_whole_hour_dst_zones() {
        for zone in ["Europe/London", "America/New_York"] {
            let s = hourly("00:30", zone);
            let mut at = next_run_after(&s, utc("2025-01-01T00:00:00Z")).expect("next run");
            for _ in 0..365 * 24 {
                let following = next_run_after(&s, at).expect("next run");
                assert_eq!(following - at, Duration::hours(1), "{zone} after {at}");
                at = following;
            }
        }
    }
}
