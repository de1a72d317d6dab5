//! Scheduled backups: the admin's schedule, when it next runs, and the in-process runner that
//! enqueues a `scheduled` backup at each slot (no cron, no Celery beat, no Redis).
//!
//! Layout:
//! - [`settings`]: [`ScheduleSettings`], strict validation from raw JSON ([`parse_schedule`])
//!   and [`describe`] for people.
//! - [`next_run`]: [`next_run_after`], the pure slot arithmetic, time-zone and DST aware.
//! - [`runner`]: the [`Clock`] and [`ScheduleStore`] seams and [`spawn_scheduler`].
//!
//! # When a schedule runs
//!
//! Slots are wall-clock times in the schedule's IANA zone: `daily` at `time` every local day,
//! `weekly` at `time` on `day_of_week` (0 = Sunday), `hourly` whenever the zone's clock shows
//! the minute of `time` (the hour of `time` is ignored).
//!
//! Daylight-saving rules for `daily` and `weekly`:
//! - A slot whose local time does not exist that day (spring forward: 02:30 in New York on the
//!   March change) runs once, at the first valid instant after the gap (03:00 local).
//! - A slot whose local time happens twice (fall back: 01:30 in New York on the November change)
//!   runs once, at the first occurrence (the daylight-time one).
//!
//! `hourly` follows the clock on the wall, so across a whole-hour DST change it still runs once
//! per real hour: the hour that does not exist has no run (the run before and the run after it
//! are an hour apart), and the hour that happens twice runs in each of its two occurrences (also
//! an hour apart, so never a duplicate). Zones that shift by half an hour (Australia/Lord_Howe)
//! see one gap of 30 or 90 minutes on the change day.
//!
//! # Restarts and missed runs
//!
//! The runner persists, through [`ScheduleStore::set_last_slot`], the instant through which
//! slots have been handled. At start:
//! - nothing stored (a fresh install): no catch-up; now is recorded and the schedule starts;
//! - one or more slots fell between the stored instant and now (the server was down): exactly
//!   one catch-up backup is enqueued, however many slots were missed;
//! - the schedule is disabled: nothing runs, missed or not.
//!
//! A settings change also records now, so slots from before the change (for example while the
//! schedule was disabled) are never owed later. A scheduled backup is skipped, and the skip is
//! logged, when a scheduled one is already pending (the store decides; see
//! [`EnqueueOutcome::SkippedAlreadyPending`]).

pub mod next_run;
pub mod runner;
pub mod settings;

pub use next_run::next_run_after;
pub use runner::{Clock, EnqueueOutcome, ScheduleStore, SystemClock, TokioClock, spawn_scheduler};
pub use settings::{Frequency, ScheduleSettings, describe, parse_schedule, server_timezone};
