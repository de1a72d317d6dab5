//! Shared by the fuzz targets (`fuzz_*.rs`): the case count, a counting allocator that
//! measures a case's peak heap, and a watchdog that turns a hang into a failure.
//!
//! Each target includes this module and installs [`Counting`] as its global allocator.
#![allow(dead_code)] // each target uses part of it

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use proptest::test_runner::Config;

/// The proptest configuration: `default_cases` unless `PROPTEST_CASES` says otherwise (the
/// long run), no shrinking budget beyond proptest's default.
pub fn config(default_cases: u32) -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default_cases);
    Config {
        cases,
        // Regressions are kept in proptest-regressions/ next to the target.
        ..Config::default()
    }
}

/// For slow targets: `default_cases`, or `PROPTEST_CASES / divisor` in a long run.
pub fn config_divided(default_cases: u32, divisor: u32) -> Config {
    let mut c = config(default_cases);
    if std::env::var_os("PROPTEST_CASES").is_some() {
        c.cases = (c.cases / divisor).max(1);
    }
    c
}

/// The system allocator, counting live bytes per thread (a case runs on one thread; cargo
/// test runs targets on several, which must not see each other's allocations).
pub struct Counting;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn count(delta: isize) {
    // try_with: the allocator is also called while thread-locals are torn down.
    let _ = LIVE.try_with(|live| {
        let now = live.get() + delta;
        live.set(now);
        let _ = PEAK.try_with(|p| {
            if now > p.get() {
                p.set(now);
            }
        });
    });
}

// SAFETY: every call is forwarded unchanged to the system allocator; the counting touches
// only const-initialized thread-locals without destructors, which never allocate.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            count(layout.size() as isize);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            count(layout.size() as isize);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.dealloc(ptr, layout) };
        count(-(layout.size() as isize));
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            count(new_size as isize - layout.size() as isize);
        }
        p
    }
}

/// Runs `f` and returns its result with the most heap bytes it held at once (beyond what the
/// thread held before).
pub fn peak_heap<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = LIVE.with(|l| l.get());
    PEAK.with(|p| p.set(base));
    let out = f();
    let peak = PEAK.with(|p| p.get());
    (out, (peak - base).max(0) as usize)
}

/// Cases being watched: thread -> (deadline, what, input kept for a report).
type Watched = HashMap<std::thread::ThreadId, (Instant, String, Vec<u8>)>;
static WATCHED: Mutex<Option<Watched>> = Mutex::new(None);

/// Deregisters its case on drop.
pub struct Watch;

impl Drop for Watch {
    fn drop(&mut self) {
        if let Ok(mut w) = WATCHED.lock()
            && let Some(map) = w.as_mut()
        {
            map.remove(&std::thread::current().id());
        }
    }
}

/// Watches the case running on this thread until the returned guard drops: if it runs past
/// `limit`, the watchdog writes `input` to a file, says which target hung, and aborts the
/// process (a hang cannot be unwound from another thread; the file is the reproducer).
pub fn watch(limit: Duration, what: &str, input: &[u8]) -> Watch {
    static START: std::sync::Once = std::sync::Once::new();
    START.call_once(|| {
        std::thread::spawn(|| {
            loop {
                std::thread::sleep(Duration::from_millis(500));
                let w = WATCHED.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(map) = w.as_ref()
                    && let Some((_, what, input)) = map
                        .values()
                        .find(|(deadline, ..)| Instant::now() > *deadline)
                {
                        let file = std::env::temp_dir().join("backstop-fuzz-hang.bin");
                        let _ = std::fs::write(&file, input);
                        eprintln!(
                            "fuzz watchdog: a case of {what} ran past its time limit (a hang); its input is in {}",
                            file.display()
                        );
                        std::process::abort();
                }
            }
        });
    });
    let mut w = WATCHED.lock().unwrap_or_else(|e| e.into_inner());
    w.get_or_insert_with(HashMap::new).insert(
        std::thread::current().id(),
        (Instant::now() + limit, what.to_owned(), input.to_vec()),
    );
    Watch
}
