//! The in-process scheduler: one tokio task that sleeps until the next slot, enqueues a
//! `scheduled` backup through a [`ScheduleStore`], and recomputes at once when the settings
//! change.
//!
//! Time comes from a [`Clock`] so tests drive it with `tokio::time::pause` ([`TokioClock`])
//! instead of sleeping. The task never polls: between events it is parked in one
//! `select!` on shutdown, the next slot and the settings channel.

use std::sync::Arc;
use std::time::Duration as StdDuration;

use chrono::{DateTime, TimeDelta, Utc};
use futures::future::BoxFuture;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::next_run::next_run_after;
use super::settings::{ScheduleSettings, describe};
use crate::error::Result;

/// Where the scheduler reads the time and waits.
pub trait Clock: Send + Sync {
    /// The current wall-clock time.
    fn now(&self) -> DateTime<Utc>;
    /// Completes once [`Clock::now`] has reached `deadline` (at once if it already has).
    fn sleep_until(&self, deadline: DateTime<Utc>) -> BoxFuture<'_, ()>;
}

/// The real clock: `Utc::now()` and tokio timers.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

/// How long [`SystemClock`] trusts a monotonic timer before reading the wall clock again.
/// tokio's timers do not advance while the machine is suspended and ignore wall-clock steps
/// (NTP, an admin fixing the date); re-reading once a minute bounds how late a run can be after
/// either, at the cost of one wake-up a minute for a task that otherwise sleeps for hours.
const WALL_CLOCK_RECHECK: StdDuration = StdDuration::from_secs(60);

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    fn sleep_until(&self, deadline: DateTime<Utc>) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            // A negative remainder fails `to_std`: the deadline has passed.
            while let Ok(left) = (deadline - Utc::now()).to_std() {
                if left.is_zero() {
                    break;
                }
                tokio::time::sleep(left.min(WALL_CLOCK_RECHECK)).await;
            }
        })
    }
}

/// A clock that follows tokio's time: `base` plus the tokio time elapsed since it was made.
/// Under `tokio::time::pause()` it stands still until `tokio::time::advance` (or the paused
/// runtime's auto-advance) moves it, so scheduler tests cover days in microseconds.
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    base: DateTime<Utc>,
    start: tokio::time::Instant,
}

impl TokioClock {
    /// A clock that reads `base` now.
    pub fn starting_at(base: DateTime<Utc>) -> Self {
        TokioClock {
            base,
            start: tokio::time::Instant::now(),
        }
    }
}

impl Clock for TokioClock {
    fn now(&self) -> DateTime<Utc> {
        let elapsed = TimeDelta::from_std(self.start.elapsed())
            .expect("a clock does not run for the 290 million years TimeDelta holds");
        self.base + elapsed
    }

    fn sleep_until(&self, deadline: DateTime<Utc>) -> BoxFuture<'_, ()> {
        // A deadline before `base` maps to `start`, which is already past: no wait.
        let offset = (deadline - self.base).to_std().unwrap_or(StdDuration::ZERO);
        Box::pin(async move {
            match self.start.checked_add(offset) {
                Some(at) => tokio::time::sleep_until(at).await,
                // Beyond what an Instant can hold: that deadline never comes.
                None => std::future::pending().await,
            }
        })
    }
}

/// What became of a scheduled run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnqueueOutcome {
    /// A backup job with trigger `scheduled` was queued.
    Enqueued,
    /// Nothing was queued because a scheduled backup is already pending (DESIGN section 4).
    SkippedAlreadyPending,
}

/// What the scheduler needs from the rest of the engine: persistence of its progress and a way
/// to queue a backup. Object-safe (boxed futures) so the composition root can hand in an
/// `Arc<dyn ScheduleStore>` over the state DB and the job queue.
pub trait ScheduleStore: Send + Sync {
    /// The instant saved by the last [`ScheduleStore::set_last_slot`], `None` if never saved.
    fn last_slot(&self) -> BoxFuture<'_, Result<Option<DateTime<Utc>>>>;

    /// Persists the instant through which slots are handled: every slot at or before it has
    /// run, been skipped, or been folded into a catch-up. Usually the slot that just ran; the
    /// current time at start, after a settings change, or after a late wake.
    fn set_last_slot(&self, handled_through: DateTime<Utc>) -> BoxFuture<'_, Result<()>>;

    /// Queues a backup with trigger `scheduled` under the current backup settings (path,
    /// include_recordings, retention), or reports that one is already pending.
    fn enqueue_scheduled(&self) -> BoxFuture<'_, Result<EnqueueOutcome>>;
}

/// Starts the scheduler task.
///
/// At start it catches up at most once (see the [module doc](super)); then it sleeps until each
/// slot, enqueues through `store`, and recomputes immediately whenever `settings` changes. If
/// the settings sender is dropped it keeps the last schedule. It ends when `shutdown` is
/// cancelled; awaiting the handle then waits for any in-flight store call to finish.
pub fn spawn_scheduler(
    clock: Arc<dyn Clock>,
    mut settings: watch::Receiver<ScheduleSettings>,
    store: Arc<dyn ScheduleStore>,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let current = settings.borrow_and_update().clone();
        let handled_through = clock.now();
        let scheduler = Scheduler {
            clock,
            settings,
            store,
            current,
            handled_through,
        };
        scheduler.run(shutdown).await;
    })
}

/// The task's state; owned by the task, so no locks.
struct Scheduler {
    /// Time source: the system clock in production, paused tokio time in tests.
    clock: Arc<dyn Clock>,
    /// The admin's schedule; `changed()` wakes the task.
    settings: watch::Receiver<ScheduleSettings>,
    /// Persists `handled_through` and queues the backups.
    store: Arc<dyn ScheduleStore>,
    /// The schedule in force (the latest value seen on `settings`).
    current: ScheduleSettings,
    /// Every slot at or before this instant is handled; the next run is the first slot after it.
    handled_through: DateTime<Utc>,
}

/// What woke the task.
enum Wake {
    Shutdown,
    Slot(DateTime<Utc>),
    SettingsChanged,
    SettingsClosed,
}

impl Scheduler {
    async fn run(mut self, shutdown: CancellationToken) {
        if shutdown.run_until_cancelled(self.start()).await.is_none() {
            return;
        }
        let mut settings_open = true;
        loop {
            let next = next_run_after(&self.current, self.handled_through);
            let clock = Arc::clone(&self.clock);
            let wake = tokio::select! {
                // Shutdown first; a due slot before a settings change, since it was due under
                // the schedule in force when it came.
                biased;
                () = shutdown.cancelled() => Wake::Shutdown,
                slot = sleep_until_slot(clock.as_ref(), next) => Wake::Slot(slot),
                changed = self.settings.changed(), if settings_open => match changed {
                    Ok(()) => Wake::SettingsChanged,
                    Err(_) => Wake::SettingsClosed,
                },
            };
            match wake {
                Wake::Shutdown => break,
                Wake::Slot(slot) => self.on_slot(slot).await,
                Wake::SettingsChanged => self.on_settings_changed().await,
                Wake::SettingsClosed => {
                    settings_open = false;
                    tracing::debug!("schedule settings sender dropped; keeping the last schedule");
                }
            }
        }
        tracing::debug!("scheduler stopped");
    }

    /// The restart rule: catch up once if slots were missed while down, never on a fresh
    /// install, never when disabled; then record now.
    async fn start(&mut self) {
        let now = self.clock.now();
        let last = match self.store.last_slot().await {
            Ok(last) => last,
            Err(e) => {
                // Without the record we cannot tell a missed slot from a fresh install; an
                // unexpected backup is worse than one missed catch-up.
                tracing::error!(error = %e.detailed(), "could not read the last scheduled slot; not catching up");
                None
            }
        };
        match last {
            None => tracing::info!("no scheduled run recorded yet; the schedule starts now"),
            Some(last) => {
                if let Some(missed) = next_run_after(&self.current, last).filter(|s| *s <= now) {
                    tracing::info!(
                        handled_through = %last,
                        first_missed = %missed,
                        "scheduled run(s) missed while the server was down: running one catch-up backup"
                    );
                    self.enqueue(missed).await;
                }
            }
        }
        self.handled_through = now;
        self.persist().await;
        self.log_plan("scheduler started");
    }

    async fn on_slot(&mut self, slot: DateTime<Utc>) {
        if self.clock.now() < slot {
            // Woke early (the wall clock was set back): the loop recomputes and sleeps again.
            return;
        }
        self.enqueue(slot).await;
        // Normally the slot itself. After a late wake (suspend) or a slow store, further slots
        // may have passed too: this one run covers them, as the catch-up at start does.
        let now = self.clock.now();
        self.handled_through = match next_run_after(&self.current, slot) {
            Some(following) if following <= now => now,
            _ => slot,
        };
        self.persist().await;
    }

    async fn on_settings_changed(&mut self) {
        let new = self.settings.borrow_and_update().clone();
        if new == self.current {
            return;
        }
        self.current = new;
        // Slots before the change are not owed: the next run comes from the new schedule,
        // counted from now, and a restart will not catch up on, say, a disabled period.
        self.handled_through = self.handled_through.max(self.clock.now());
        self.persist().await;
        self.log_plan("schedule changed");
    }

    async fn enqueue(&self, slot: DateTime<Utc>) {
        match self.store.enqueue_scheduled().await {
            Ok(EnqueueOutcome::Enqueued) => tracing::info!(%slot, "scheduled backup enqueued"),
            Ok(EnqueueOutcome::SkippedAlreadyPending) => tracing::warn!(
                %slot,
                "scheduled backup skipped: a scheduled backup is already pending"
            ),
            // The slot still counts as handled: retrying in a loop would hammer a failing
            // store, and the next slot tries again.
            Err(e) => {
                tracing::error!(%slot, error = %e.detailed(), "could not enqueue the scheduled backup")
            }
        }
    }

    async fn persist(&self) {
        if let Err(e) = self.store.set_last_slot(self.handled_through).await {
            // The in-memory state stays right; only a restart's catch-up decision is affected.
            tracing::error!(error = %e.detailed(), "could not save the last scheduled slot");
        }
    }

    fn log_plan(&self, what: &str) {
        let schedule = describe(&self.current);
        match next_run_after(&self.current, self.handled_through) {
            Some(next) => tracing::info!(%schedule, next_run_at = %next, "{what}"),
            None if self.current.enabled => {
                tracing::warn!(%schedule, "{what}: the schedule is invalid, so nothing will run")
            }
            None => tracing::info!(%schedule, "{what}: no scheduled runs"),
        }
    }
}

/// Sleeps until `slot` and returns it; never completes when there is none (disabled).
async fn sleep_until_slot(clock: &dyn Clock, slot: Option<DateTime<Utc>>) -> DateTime<Utc> {
    match slot {
        Some(slot) => {
            clock.sleep_until(slot).await;
            slot
        }
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::Frequency;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn utc(rfc3339: &str) -> DateTime<Utc> {
        rfc3339.parse().expect("test instant is RFC 3339")
    }

    fn schedule(frequency: Frequency, time: &str) -> ScheduleSettings {
        ScheduleSettings {
            enabled: true,
            frequency,
            time: time.into(),
            day_of_week: 0,
            timezone: "UTC".into(),
        }
    }

    /// A [`TokioClock`] that also counts how often the scheduler went to sleep, to show it
    /// sleeps once per slot rather than polling.
    struct CountingClock {
        inner: TokioClock,
        sleeps: AtomicUsize,
    }

    impl Clock for CountingClock {
        fn now(&self) -> DateTime<Utc> {
            self.inner.now()
        }
        fn sleep_until(&self, deadline: DateTime<Utc>) -> BoxFuture<'_, ()> {
            self.sleeps.fetch_add(1, Ordering::SeqCst);
            self.inner.sleep_until(deadline)
        }
    }

    #[derive(Default)]
    struct FakeState {
        last_slot: Option<DateTime<Utc>>,
        /// Clock readings at each enqueue that queued a job.
        enqueued: Vec<DateTime<Utc>>,
        /// Clock readings at each enqueue skipped because one was pending.
        skipped: Vec<DateTime<Utc>>,
        /// While true, enqueue answers `SkippedAlreadyPending`.
        scheduled_pending: bool,
        /// This many enqueue calls (the first ones) take 90 minutes, like a store stuck on a lock.
        slow_enqueues: usize,
    }

    /// An in-memory store that records what the scheduler asked of it, and when.
    struct FakeStore {
        clock: Arc<dyn Clock>,
        state: Mutex<FakeState>,
    }

    impl FakeStore {
        fn state(&self) -> std::sync::MutexGuard<'_, FakeState> {
            self.state.lock().expect("fake store lock")
        }
    }

    impl ScheduleStore for FakeStore {
        fn last_slot(&self) -> BoxFuture<'_, Result<Option<DateTime<Utc>>>> {
            Box::pin(async move { Ok(self.state().last_slot) })
        }
        fn set_last_slot(&self, handled_through: DateTime<Utc>) -> BoxFuture<'_, Result<()>> {
            Box::pin(async move {
                self.state().last_slot = Some(handled_through);
                Ok(())
            })
        }
        fn enqueue_scheduled(&self) -> BoxFuture<'_, Result<EnqueueOutcome>> {
            Box::pin(async move {
                let now = self.clock.now();
                let slow = {
                    let mut state = self.state();
                    let slow = state.slow_enqueues > 0;
                    state.slow_enqueues = state.slow_enqueues.saturating_sub(1);
                    slow
                };
                if slow {
                    tokio::time::sleep(StdDuration::from_secs(90 * 60)).await;
                }
                let mut state = self.state();
                if state.scheduled_pending {
                    state.skipped.push(now);
                    Ok(EnqueueOutcome::SkippedAlreadyPending)
                } else {
                    state.enqueued.push(now);
                    Ok(EnqueueOutcome::Enqueued)
                }
            })
        }
    }

    /// A running scheduler on paused tokio time, with its fake store and settings sender.
    struct Harness {
        clock: Arc<CountingClock>,
        store: Arc<FakeStore>,
        settings: watch::Sender<ScheduleSettings>,
        shutdown: CancellationToken,
        task: JoinHandle<()>,
    }

    impl Harness {
        /// Starts at `now` with `settings`, as if `last_slot` had been saved before.
        fn start(now: &str, settings: ScheduleSettings, last_slot: Option<&str>) -> Self {
            let clock = Arc::new(CountingClock {
                inner: TokioClock::starting_at(utc(now)),
                sleeps: AtomicUsize::new(0),
            });
            let store = Arc::new(FakeStore {
                clock: clock.clone(),
                state: Mutex::new(FakeState {
                    last_slot: last_slot.map(utc),
                    ..FakeState::default()
                }),
            });
            let (tx, rx) = watch::channel(settings);
            let shutdown = CancellationToken::new();
            let task = spawn_scheduler(clock.clone(), rx, store.clone(), shutdown.clone());
            Harness {
                clock,
                store,
                settings: tx,
                shutdown,
                task,
            }
        }

        /// Lets paused time run to `at`; the runtime auto-advances through the scheduler's
        /// timers on the way, so nothing sleeps for real.
        async fn run_until(&self, at: &str) {
            self.clock.inner.sleep_until(utc(at)).await;
        }

        fn enqueued(&self) -> Vec<DateTime<Utc>> {
            self.store.state().enqueued.clone()
        }

        async fn stop(self) {
            self.shutdown.cancel();
            self.task.await.expect("scheduler task ends cleanly");
        }
    }

    fn at(times: &[&str]) -> Vec<DateTime<Utc>> {
        times.iter().map(|t| utc(t)).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn hourly_schedule_enqueues_exactly_once_per_hour() {
        let h = Harness::start(
            "2025-06-10T00:00:00Z",
            schedule(Frequency::Hourly, "00:00"),
            Some("2025-06-10T00:00:00Z"),
        );
        h.run_until("2025-06-10T05:30:00Z").await;
        assert_eq!(
            h.enqueued(),
            at(&[
                "2025-06-10T01:00:00Z",
                "2025-06-10T02:00:00Z",
                "2025-06-10T03:00:00Z",
                "2025-06-10T04:00:00Z",
                "2025-06-10T05:00:00Z",
            ])
        );
        assert_eq!(h.store.state().last_slot, Some(utc("2025-06-10T05:00:00Z")));
        // One sleep per slot plus the current one: the task waits, it does not poll.
        assert_eq!(h.clock.sleeps.load(Ordering::SeqCst), 6);
        h.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn changing_the_schedule_reschedules_immediately() {
        let h = Harness::start(
            "2025-06-10T00:00:00Z",
            schedule(Frequency::Daily, "03:00"),
            Some("2025-06-09T03:00:00Z"),
        );
        h.run_until("2025-06-10T00:10:00Z").await;
        h.settings
            .send_replace(schedule(Frequency::Hourly, "00:30"));
        h.run_until("2025-06-10T01:31:00Z").await;
        assert_eq!(
            h.enqueued(),
            at(&["2025-06-10T00:30:00Z", "2025-06-10T01:30:00Z"])
        );

        // And back to a daily run later today: the 02:30 hourly slot is no longer due.
        h.settings.send_replace(schedule(Frequency::Daily, "05:00"));
        h.run_until("2025-06-10T05:01:00Z").await;
        assert_eq!(
            h.enqueued(),
            at(&[
                "2025-06-10T00:30:00Z",
                "2025-06-10T01:30:00Z",
                "2025-06-10T05:00:00Z"
            ])
        );
        h.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn disabling_stops_runs_and_enabling_resumes_without_catch_up() {
        let h = Harness::start(
            "2025-06-10T00:00:00Z",
            schedule(Frequency::Hourly, "00:00"),
            Some("2025-06-10T00:00:00Z"),
        );
        h.run_until("2025-06-10T02:30:00Z").await;
        assert_eq!(h.enqueued().len(), 2);

        let mut off = schedule(Frequency::Hourly, "00:00");
        off.enabled = false;
        h.settings.send_replace(off);
        h.run_until("2025-06-10T10:30:00Z").await;
        assert_eq!(h.enqueued().len(), 2, "no runs while disabled");

        h.settings
            .send_replace(schedule(Frequency::Hourly, "00:00"));
        h.run_until("2025-06-10T11:30:00Z").await;
        assert_eq!(h.enqueued().last(), Some(&utc("2025-06-10T11:00:00Z")));
        assert_eq!(
            h.enqueued().len(),
            3,
            "the disabled hours are not caught up"
        );
        h.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn down_across_two_slots_catches_up_exactly_once() {
        // Last handled 01:00; down through the 02:00 and 03:00 slots; back at 03:30.
        let h = Harness::start(
            "2025-06-10T03:30:00Z",
            schedule(Frequency::Hourly, "00:00"),
            Some("2025-06-10T01:00:00Z"),
        );
        h.run_until("2025-06-10T04:30:00Z").await;
        assert_eq!(
            h.enqueued(),
            at(&["2025-06-10T03:30:00Z", "2025-06-10T04:00:00Z"])
        );
        h.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn down_for_days_on_a_daily_schedule_catches_up_exactly_once() {
        let h = Harness::start(
            "2025-06-13T12:00:00Z",
            schedule(Frequency::Daily, "03:00"),
            Some("2025-06-10T03:00:00Z"),
        );
        h.run_until("2025-06-14T04:00:00Z").await;
        assert_eq!(
            h.enqueued(),
            at(&["2025-06-13T12:00:00Z", "2025-06-14T03:00:00Z"])
        );
        h.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn enqueue_outlasting_the_next_slot_does_not_cause_a_burst_of_runs() {
        let h = Harness::start(
            "2025-06-10T00:00:00Z",
            schedule(Frequency::Hourly, "00:00"),
            Some("2025-06-10T00:00:00Z"),
        );
        h.store.state().slow_enqueues = 1;
        // The 01:00 run returns at 02:30, after the 02:00 slot: that slot is folded into it.
        h.run_until("2025-06-10T03:30:00Z").await;
        assert_eq!(
            h.enqueued(),
            at(&["2025-06-10T01:00:00Z", "2025-06-10T03:00:00Z"])
        );
        h.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn restart_without_a_missed_slot_does_not_catch_up() {
        let h = Harness::start(
            "2025-06-10T02:30:00Z",
            schedule(Frequency::Hourly, "00:00"),
            Some("2025-06-10T02:00:00Z"),
        );
        h.run_until("2025-06-10T03:30:00Z").await;
        assert_eq!(h.enqueued(), at(&["2025-06-10T03:00:00Z"]));
        h.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn first_start_records_now_and_does_not_catch_up() {
        let h = Harness::start(
            "2025-06-10T03:30:00Z",
            schedule(Frequency::Hourly, "00:00"),
            None,
        );
        h.run_until("2025-06-10T03:31:00Z").await;
        assert!(h.enqueued().is_empty());
        assert_eq!(h.store.state().last_slot, Some(utc("2025-06-10T03:30:00Z")));
        h.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn disabled_schedule_never_runs_not_even_a_catch_up() {
        let mut off = schedule(Frequency::Hourly, "00:00");
        off.enabled = false;
        let h = Harness::start("2025-06-10T03:30:00Z", off, Some("2025-06-09T00:00:00Z"));
        h.run_until("2025-06-12T00:00:00Z").await;
        assert!(h.enqueued().is_empty());
        assert_eq!(
            h.clock.sleeps.load(Ordering::SeqCst),
            0,
            "nothing to wait for"
        );
        // Start recorded now, so enabling later and restarting owes nothing for this period.
        assert_eq!(h.store.state().last_slot, Some(utc("2025-06-10T03:30:00Z")));
        h.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn run_skipped_because_one_is_pending_is_logged_and_the_schedule_goes_on() {
        let logs = CapturedLogs::default();
        let _guard = tracing::subscriber::set_default(logs.subscriber());

        let h = Harness::start(
            "2025-06-10T00:00:00Z",
            schedule(Frequency::Hourly, "00:00"),
            Some("2025-06-10T00:00:00Z"),
        );
        h.store.state().scheduled_pending = true;
        h.run_until("2025-06-10T02:30:00Z").await;
        h.store.state().scheduled_pending = false;
        h.run_until("2025-06-10T03:30:00Z").await;

        assert_eq!(
            h.store.state().skipped,
            at(&["2025-06-10T01:00:00Z", "2025-06-10T02:00:00Z"])
        );
        assert_eq!(h.enqueued(), at(&["2025-06-10T03:00:00Z"]));
        let text = logs.text();
        let skips: Vec<&str> = text
            .lines()
            .filter(|l| {
                l.contains("scheduled backup skipped: a scheduled backup is already pending")
            })
            .collect();
        assert_eq!(skips.len(), 2, "{text}");
        assert!(skips.iter().all(|l| l.contains("WARN")), "{text}");
        assert!(skips[0].contains("slot=2025-06-10 01:00:00 UTC"), "{text}");
        h.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn an_unchanged_settings_send_does_not_move_the_schedule() {
        let h = Harness::start(
            "2025-06-10T00:00:00Z",
            schedule(Frequency::Hourly, "00:00"),
            Some("2025-06-10T00:00:00Z"),
        );
        h.run_until("2025-06-10T00:59:00Z").await;
        h.settings
            .send_replace(schedule(Frequency::Hourly, "00:00"));
        h.run_until("2025-06-10T01:30:00Z").await;
        assert_eq!(h.enqueued(), at(&["2025-06-10T01:00:00Z"]));
        h.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn dropped_settings_sender_keeps_the_last_schedule() {
        let Harness {
            clock,
            store,
            settings,
            shutdown,
            task,
        } = Harness::start(
            "2025-06-10T00:00:00Z",
            schedule(Frequency::Hourly, "00:00"),
            Some("2025-06-10T00:00:00Z"),
        );
        drop(settings);
        clock.sleep_until(utc("2025-06-10T02:30:00Z")).await;
        assert_eq!(store.state().enqueued.len(), 2);
        shutdown.cancel();
        task.await.expect("scheduler task ends cleanly");
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_ends_the_task_while_it_sleeps() {
        let h = Harness::start(
            "2025-06-10T00:00:00Z",
            schedule(Frequency::Daily, "03:00"),
            Some("2025-06-09T03:00:00Z"),
        );
        h.run_until("2025-06-10T00:01:00Z").await;
        h.shutdown.cancel();
        let clock = h.clock.clone();
        h.task.await.expect("scheduler task ends cleanly");
        assert_eq!(
            clock.now(),
            utc("2025-06-10T00:01:00Z"),
            "ended without waiting for the slot"
        );
        assert!(h.store.state().enqueued.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn tokio_clock_follows_paused_time() {
        let clock = TokioClock::starting_at(utc("2025-06-10T00:00:00Z"));
        tokio::time::advance(StdDuration::from_secs(90)).await;
        assert_eq!(clock.now(), utc("2025-06-10T00:01:30Z"));
        clock.sleep_until(utc("2025-06-10T05:00:00Z")).await;
        assert_eq!(clock.now(), utc("2025-06-10T05:00:00Z"));
        // A deadline in the past returns at once.
        clock.sleep_until(utc("2025-06-09T00:00:00Z")).await;
        assert_eq!(clock.now(), utc("2025-06-10T05:00:00Z"));
    }

    #[tokio::test]
    async fn system_clock_returns_at_once_for_a_past_deadline() {
        let clock = SystemClock;
        let before = clock.now();
        clock.sleep_until(before - TimeDelta::seconds(5)).await;
        clock.sleep_until(before).await;
        assert!(clock.now() >= before);
    }

    /// Log lines captured from a plain-text `tracing_subscriber::fmt` subscriber.
    #[derive(Clone, Default)]
    struct CapturedLogs(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for CapturedLogs {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .expect("log buffer lock")
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl CapturedLogs {
        fn subscriber(&self) -> impl tracing::Subscriber + Send + Sync + use<> {
            let writer = self.clone();
            tracing_subscriber::fmt()
                .with_ansi(false)
                .without_time()
                .with_max_level(tracing::Level::DEBUG)
                .with_writer(move || writer.clone())
                .finish()
        }

        fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.lock().expect("log buffer lock")).into_owned()
        }
    }
}
