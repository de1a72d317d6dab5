//! The schedule as the admin saves it (`settings.schedule` in DESIGN section 6), its strict
//! validation from raw JSON, and a plain-words description for the UI.
//!
//! Validation reads the raw [`serde_json::Value`] rather than deserializing, so that every bad
//! field gets its own message and all of them come back together in one
//! [`Error::fields`](crate::Error::fields) (serde would stop at the first).

use std::collections::BTreeMap;
use std::fmt;

use chrono::{NaiveTime, Timelike};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// How often a scheduled backup runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Frequency {
    /// Every hour, at the minute of [`ScheduleSettings::time`].
    Hourly,
    /// Every day at [`ScheduleSettings::time`].
    #[default]
    Daily,
    /// Once a week, on [`ScheduleSettings::day_of_week`] at [`ScheduleSettings::time`].
    Weekly,
}

impl Frequency {
    /// The JSON spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Frequency::Hourly => "hourly",
            Frequency::Daily => "daily",
            Frequency::Weekly => "weekly",
        }
    }

    fn from_json_str(s: &str) -> Option<Self> {
        match s {
            "hourly" => Some(Frequency::Hourly),
            "daily" => Some(Frequency::Daily),
            "weekly" => Some(Frequency::Weekly),
            _ => None,
        }
    }
}

impl fmt::Display for Frequency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// When scheduled backups run. Values that came from a client must go through
/// [`parse_schedule`]; the serde derive is for storage and the wire, and fills missing fields
/// from [`Default`] so rows saved by older versions still load.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ScheduleSettings {
    /// Off means no scheduled runs at all, including catch-up runs.
    pub enabled: bool,
    /// Hourly, daily or weekly.
    pub frequency: Frequency,
    /// Local time of day as two-digit `HH:MM`; for hourly only the minute is used.
    pub time: String,
    /// 0 (Sunday) to 6 (Saturday); used by weekly, kept (and validated) for the others.
    pub day_of_week: u8,
    /// IANA zone name in which `time` and `day_of_week` are read, e.g. `Europe/London`.
    pub timezone: String,
}

impl Default for ScheduleSettings {
    /// Disabled, daily at 03:00, day 0 (Sunday), in the server's zone (else UTC).
    fn default() -> Self {
        ScheduleSettings {
            enabled: false,
            frequency: Frequency::Daily,
            time: "03:00".to_owned(),
            day_of_week: 0,
            timezone: server_timezone(),
        }
    }
}

/// The server's IANA zone: `TZ` when it names one (as in most containers), else the system
/// setting (`/etc/localtime` and friends), else `"UTC"`. Names chrono-tz does not know (it
/// embeds its own tzdb) fall through to the next source.
pub fn server_timezone() -> String {
    let from_env = std::env::var("TZ")
        .ok()
        .map(|tz| tz.trim_start_matches(':').to_owned());
    from_env
        .into_iter()
        .chain(iana_time_zone::get_timezone().ok())
        .find(|name| parse_zone(name).is_some())
        .unwrap_or_else(|| "UTC".to_owned())
}

const FIELD_ENABLED: &str = "schedule.enabled";
const FIELD_FREQUENCY: &str = "schedule.frequency";
const FIELD_TIME: &str = "schedule.time";
const FIELD_DAY_OF_WEEK: &str = "schedule.day_of_week";
const FIELD_TIMEZONE: &str = "schedule.timezone";
const KEYS: [&str; 5] = ["enabled", "frequency", "time", "day_of_week", "timezone"];

/// Validates a schedule from raw JSON (the `schedule` object of a settings PUT).
///
/// Strict: every field is required, with its exact JSON type (`"3"` is not a day, `3.0` is
/// not a whole number), `time` must be two-digit `HH:MM` from `00:00` to `23:59`, `timezone`
/// an exact IANA name, and unknown keys are refused (a typo must not be silently ignored).
/// On failure the error is [`Error::fields`] with one message per bad field, keyed
/// `schedule.<field>`, all fields checked at once.
pub fn parse_schedule(value: &Value) -> Result<ScheduleSettings> {
    let Some(obj) = value.as_object() else {
        let mut errors = BTreeMap::new();
        errors.insert(
            "schedule".to_owned(),
            "must be an object with enabled, frequency, time, day_of_week and timezone".to_owned(),
        );
        return Err(Error::fields(errors));
    };

    let mut errors = BTreeMap::new();
    for key in obj.keys().filter(|k| !KEYS.contains(&k.as_str())) {
        errors.insert(
            format!("schedule.{key}"),
            "is not a schedule setting".to_owned(),
        );
    }
    let enabled = field(obj, "enabled", FIELD_ENABLED, &mut errors, |v| {
        v.as_bool()
            .ok_or_else(|| "must be true or false".to_owned())
    });
    let frequency = field(
        obj,
        "frequency",
        FIELD_FREQUENCY,
        &mut errors,
        |v| match v.as_str() {
            Some(s) => Frequency::from_json_str(s)
                .ok_or_else(|| format!("unknown frequency \"{s}\": use hourly, daily or weekly")),
            None => Err("must be one of \"hourly\", \"daily\" or \"weekly\"".to_owned()),
        },
    );
    let time = field(obj, "time", FIELD_TIME, &mut errors, |v| match v.as_str() {
        Some(s) if parse_hhmm(s).is_some() => Ok(s.to_owned()),
        Some(s) => Err(time_message(s)),
        None => Err("must be a time of day as \"HH:MM\", from 00:00 to 23:59".to_owned()),
    });
    let day_of_week = field(obj, "day_of_week", FIELD_DAY_OF_WEEK, &mut errors, |v| {
        v.as_u64()
            .filter(|d| *d <= 6)
            .and_then(|d| u8::try_from(d).ok())
            .ok_or_else(|| "must be a whole number from 0 (Sunday) to 6 (Saturday)".to_owned())
    });
    let timezone = field(obj, "timezone", FIELD_TIMEZONE, &mut errors, |v| {
        match v.as_str() {
            Some(s) if parse_zone(s).is_some() => Ok(s.to_owned()),
            Some(s) if !s.is_empty() => Err(format!(
                "unknown time zone \"{s}\": use an IANA name such as Europe/London or UTC"
            )),
            _ => Err("must be an IANA time zone name such as Europe/London or UTC".to_owned()),
        }
    });

    match (enabled, frequency, time, day_of_week, timezone) {
        (Some(enabled), Some(frequency), Some(time), Some(day_of_week), Some(timezone))
            if errors.is_empty() =>
        {
            Ok(ScheduleSettings {
                enabled,
                frequency,
                time,
                day_of_week,
                timezone,
            })
        }
        _ => Err(Error::fields(errors)),
    }
}

/// Reads one required field, recording a message under `name` when it is missing or bad.
fn field<T>(
    obj: &Map<String, Value>,
    key: &str,
    name: &str,
    errors: &mut BTreeMap<String, String>,
    parse: impl FnOnce(&Value) -> std::result::Result<T, String>,
) -> Option<T> {
    let Some(value) = obj.get(key) else {
        errors.insert(name.to_owned(), "is required".to_owned());
        return None;
    };
    parse(value)
        .map_err(|message| errors.insert(name.to_owned(), message))
        .ok()
}

fn time_message(s: &str) -> String {
    // "7:5" is the common slip: say how to write it rather than only that it is wrong.
    let loose = s.split_once(':').and_then(|(h, m)| {
        let short = |p: &str| (1..=2).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit());
        (short(h) && short(m)).then(|| (h.parse::<u32>().ok(), m.parse::<u32>().ok()))
    });
    match loose {
        Some((Some(h), Some(m))) if h < 24 && m < 60 => {
            format!("must be two-digit HH:MM, for example \"{h:02}:{m:02}\"")
        }
        _ => format!("\"{s}\" is not a time of day: use HH:MM from 00:00 to 23:59"),
    }
}

/// Parses exactly two-digit `HH:MM` (00:00 to 23:59).
pub(crate) fn parse_hhmm(s: &str) -> Option<NaiveTime> {
    let b = s.as_bytes();
    let digit = |i: usize| {
        b.get(i)
            .filter(|c| c.is_ascii_digit())
            .map(|c| u32::from(c - b'0'))
    };
    if b.len() != 5 || b[2] != b':' {
        return None;
    }
    let hour = digit(0)? * 10 + digit(1)?;
    let minute = digit(3)? * 10 + digit(4)?;
    NaiveTime::from_hms_opt(hour, minute, 0)
}

/// Parses an exact (case-sensitive) IANA zone name from chrono-tz's embedded tzdb.
pub(crate) fn parse_zone(s: &str) -> Option<Tz> {
    s.parse::<Tz>().ok()
}

const WEEKDAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

/// The schedule in plain words for the settings card: "Daily at 03:00 Europe/London",
/// "Hourly at :15", "Weekly on Thursday at 03:00 UTC", "Disabled".
pub fn describe(s: &ScheduleSettings) -> String {
    if !s.enabled {
        return "Disabled".to_owned();
    }
    match s.frequency {
        Frequency::Hourly => match parse_hhmm(&s.time) {
            Some(t) => format!("Hourly at :{:02}", t.minute()),
            None => format!("Hourly at {}", s.time),
        },
        Frequency::Daily => format!("Daily at {} {}", s.time, s.timezone),
        Frequency::Weekly => {
            let day = WEEKDAYS
                .get(usize::from(s.day_of_week))
                .copied()
                .unwrap_or("an unknown day");
            format!("Weekly on {day} at {} {}", s.time, s.timezone)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;
    use serde_json::json;

    fn valid() -> Value {
        json!({
            "enabled": true,
            "frequency": "weekly",
            "time": "03:00",
            "day_of_week": 4,
            "timezone": "Europe/London",
        })
    }

    fn with(key: &str, value: Value) -> Value {
        let mut v = valid();
        v[key] = value;
        v
    }

    /// Parses and returns the field errors, failing the test if parsing succeeded.
    fn field_errors(v: &Value) -> BTreeMap<String, String> {
        let err = parse_schedule(v).expect_err("input should be rejected");
        assert_eq!(err.kind(), ErrorKind::Invalid);
        err.field_errors().clone()
    }

    fn only_error(v: &Value) -> (String, String) {
        let errors = field_errors(v);
        assert_eq!(
            errors.len(),
            1,
            "expected exactly one field error, got {errors:?}"
        );
        errors.into_iter().next().expect("one error")
    }

    #[test]
    fn valid_schedule_parses_to_its_fields() {
        let s = parse_schedule(&valid()).expect("valid");
        assert_eq!(
            s,
            ScheduleSettings {
                enabled: true,
                frequency: Frequency::Weekly,
                time: "03:00".into(),
                day_of_week: 4,
                timezone: "Europe/London".into(),
            }
        );
    }

    #[test]
    fn boundary_values_are_accepted() {
        for (time, day, zone) in [("00:00", 0, "UTC"), ("23:59", 6, "Asia/Kolkata")] {
            let mut v = with("time", json!(time));
            v["day_of_week"] = json!(day);
            v["timezone"] = json!(zone);
            let s = parse_schedule(&v).expect("boundary values are valid");
            assert_eq!(
                (s.time.as_str(), s.day_of_week, s.timezone.as_str()),
                (time, day, zone)
            );
        }
        for frequency in ["hourly", "daily", "weekly"] {
            let s = parse_schedule(&with("frequency", json!(frequency))).expect("valid");
            assert_eq!(s.frequency.as_str(), frequency);
        }
    }

    #[test]
    fn hour_25_is_rejected_as_a_time_error() {
        let (field, message) = only_error(&with("time", json!("25:00")));
        assert_eq!(field, "schedule.time");
        assert!(message.contains("HH:MM"), "{message}");
    }

    #[test]
    fn out_of_range_times_are_rejected() {
        for bad in [
            "24:00", "12:60", "99:99", "", "03:00:00", "03-00", " 3:00", "03:00 ", "ab:cd",
        ] {
            let (field, _) = only_error(&with("time", json!(bad)));
            assert_eq!(field, "schedule.time", "time {bad:?}");
        }
    }

    #[test]
    fn single_digit_time_is_rejected_with_the_two_digit_spelling() {
        let (field, message) = only_error(&with("time", json!("7:5")));
        assert_eq!(field, "schedule.time");
        assert_eq!(message, "must be two-digit HH:MM, for example \"07:05\"");
    }

    #[test]
    fn day_of_week_7_is_rejected() {
        let (field, message) = only_error(&with("day_of_week", json!(7)));
        assert_eq!(field, "schedule.day_of_week");
        assert_eq!(
            message,
            "must be a whole number from 0 (Sunday) to 6 (Saturday)"
        );
    }

    #[test]
    fn negative_fractional_and_string_days_are_rejected() {
        for bad in [
            json!(-1),
            json!(3.0),
            json!(2.5),
            json!("3"),
            json!(null),
            json!(256),
        ] {
            let (field, _) = only_error(&with("day_of_week", bad.clone()));
            assert_eq!(field, "schedule.day_of_week", "day {bad}");
        }
    }

    #[test]
    fn unknown_time_zone_is_rejected_and_named() {
        let (field, message) = only_error(&with("timezone", json!("Mars/Olympus_Mons")));
        assert_eq!(field, "schedule.timezone");
        assert!(message.contains("\"Mars/Olympus_Mons\""), "{message}");
    }

    #[test]
    fn time_zone_names_are_exact() {
        for bad in ["europe/london", "Europe/London ", "", "+01:00", "BST"] {
            let (field, _) = only_error(&with("timezone", json!(bad)));
            assert_eq!(field, "schedule.timezone", "zone {bad:?}");
        }
    }

    #[test]
    fn unknown_frequency_is_rejected() {
        let (field, message) = only_error(&with("frequency", json!("monthly")));
        assert_eq!(field, "schedule.frequency");
        assert_eq!(
            message,
            "unknown frequency \"monthly\": use hourly, daily or weekly"
        );
        let (field, _) = only_error(&with("frequency", json!("Daily")));
        assert_eq!(field, "schedule.frequency");
    }

    #[test]
    fn wrong_json_types_are_rejected_per_field() {
        let cases = [
            ("enabled", json!("true"), "schedule.enabled"),
            ("enabled", json!(1), "schedule.enabled"),
            ("frequency", json!(1), "schedule.frequency"),
            ("time", json!(300), "schedule.time"),
            ("time", json!(["03:00"]), "schedule.time"),
            ("timezone", json!(0), "schedule.timezone"),
            ("timezone", json!({"name": "UTC"}), "schedule.timezone"),
        ];
        for (key, value, expected) in cases {
            let (field, _) = only_error(&with(key, value.clone()));
            assert_eq!(field, expected, "{key} = {value}");
        }
    }

    #[test]
    fn unknown_keys_are_rejected_by_name() {
        let (field, message) = only_error(&with("cron", json!("0 3 * * *")));
        assert_eq!(field, "schedule.cron");
        assert_eq!(message, "is not a schedule setting");
    }

    #[test]
    fn missing_fields_are_each_required() {
        let errors = field_errors(&json!({}));
        let expected: Vec<String> = KEYS.iter().map(|k| format!("schedule.{k}")).collect();
        assert_eq!(errors.keys().cloned().collect::<Vec<_>>(), {
            let mut e = expected;
            e.sort();
            e
        });
        assert!(errors.values().all(|m| m == "is required"));
    }

    #[test]
    fn non_object_is_rejected_as_a_whole() {
        for bad in [json!(null), json!("daily"), json!([1])] {
            let (field, _) = only_error(&bad);
            assert_eq!(field, "schedule");
        }
    }

    #[test]
    fn all_field_errors_are_reported_together() {
        let v = json!({
            "enabled": "yes",
            "frequency": "monthly",
            "time": "25:00",
            "day_of_week": 7,
            "timezone": "Nowhere/Special",
            "cron": "* * * * *",
        });
        let errors = field_errors(&v);
        assert_eq!(
            errors.keys().map(String::as_str).collect::<Vec<_>>(),
            [
                "schedule.cron",
                "schedule.day_of_week",
                "schedule.enabled",
                "schedule.frequency",
                "schedule.time",
                "schedule.timezone",
            ]
        );
    }

    #[test]
    fn serialized_settings_parse_back_unchanged() {
        let s = parse_schedule(&valid()).expect("valid");
        let wire = serde_json::to_value(&s).expect("serializes");
        assert_eq!(wire, valid());
        assert_eq!(parse_schedule(&wire).expect("round trip"), s);
    }

    #[test]
    fn default_is_disabled_daily_at_three_in_a_known_zone() {
        let d = ScheduleSettings::default();
        assert!(!d.enabled);
        assert_eq!(
            (d.frequency, d.time.as_str(), d.day_of_week),
            (Frequency::Daily, "03:00", 0)
        );
        assert!(
            parse_zone(&d.timezone).is_some(),
            "default zone {} must be valid",
            d.timezone
        );
        let v = serde_json::to_value(&d).expect("serializes");
        assert_eq!(parse_schedule(&v).expect("the default is valid input"), d);
    }

    #[test]
    fn stored_settings_missing_fields_load_with_defaults() {
        let s: ScheduleSettings =
            serde_json::from_value(json!({"enabled": true, "frequency": "hourly"})).expect("loads");
        assert!(s.enabled);
        assert_eq!(s.frequency, Frequency::Hourly);
        assert_eq!(s.time, "03:00");
    }

    #[test]
    fn describe_uses_plain_words() {
        let mut s = parse_schedule(&valid()).expect("valid");
        assert_eq!(describe(&s), "Weekly on Thursday at 03:00 Europe/London");
        s.timezone = "UTC".into();
        assert_eq!(describe(&s), "Weekly on Thursday at 03:00 UTC");
        s.frequency = Frequency::Daily;
        s.timezone = "Europe/London".into();
        assert_eq!(describe(&s), "Daily at 03:00 Europe/London");
        s.frequency = Frequency::Hourly;
        s.time = "07:15".into();
        assert_eq!(describe(&s), "Hourly at :15");
        s.day_of_week = 0;
        s.frequency = Frequency::Weekly;
        assert_eq!(describe(&s), "Weekly on Sunday at 07:15 Europe/London");
        s.enabled = false;
        assert_eq!(describe(&s), "Disabled");
    }
}
