//! Sign-in throttling: three budgets checked and reserved together, before any password is
//! hashed, and a gate that caps how many argon2 hashes run at once.
//!
//! Every sign-in attempt must win a slot in three token buckets at the same moment (one
//! mutex, so 30 parallel guesses cannot all slip past a check that has not recorded
//! anything yet):
//!
//! | budget | key | burst | refill | why |
//! |---|---|---|---|---|
//! | pair | client address + username | 5 | 1 per 10 min | a person who mistypes gets 5 tries; a guesser from one address gets 6 an hour |
//! | address | client address | 20 | 1 per 2 min | stops one address spraying many usernames (30 an hour in all) |
//! | username | username | 30 | 1 per 2 min | caps guesses at one account from everywhere: 30 at once, then 30 an hour (at most 750 a day) |
//!
//! The username budget refills faster than one address can drain it (one address gets at
//! most 6 tries an hour at one account, the account regains 30), so a single address can
//! lock an account out from its own address only, never from everywhere: emptying the
//! account's budget takes at least six addresses working together. Even then an address
//! the account has signed in from before (since the server started) skips the username
//! budget, keeping only its pair and address budgets, so the admin's usual machine still
//! gets in.
//!
//! What settles a reservation: a wrong password keeps it (it was a guess); a right password
//! clears the pair (the mistyping person starts over) and gives its slot back to the
//! address and username budgets (a sign-in is not a guess), but never touches another
//! address's counters; an attempt that was never checked (the hash gate was full, the
//! database failed) gives every slot back. An attempt whose client went away mid-check
//! stays counted.
//!
//! The pair and username keys include a fingerprint of the account's current password hash,
//! so `backstop user reset-password NAME` (which needs no sign-in and is never throttled)
//! also starts the account on fresh budgets: the locked-out admin's way back in without a
//! restart. Unknown usernames share one fingerprint, so they are throttled the same way and
//! answers do not reveal which names exist.
//!
//! Memory is bounded: each table holds at most [`MAX_KEYS`] keys. A full bucket carries no
//! information and is dropped first; when the table is still full, the entries closest to
//! being full again (the least debt) go, never the most indebted, so an attacker cannot
//! reset their own counter by spraying new keys without spending as many attempts as the
//! table holds. Usernames in keys are cut to 64 characters (longer names cannot exist) and
//! IPv6 clients are keyed by their /64 (one host usually owns the whole prefix).

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::{Error, ErrorKind, Result};

/// Most keys one budget table holds (about 100 bytes each: a few MB at most).
pub const MAX_KEYS: usize = 10_000;

/// Addresses remembered per account as "signed in from here before" (see the module doc).
const TRUSTED_PER_ACCOUNT: usize = 8;

/// Accounts whose trusted addresses are remembered (only a right password adds one).
const TRUSTED_ACCOUNTS: usize = 1_000;

/// A token bucket's shape: `burst` attempts at once, then one more every `refill`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub burst: u32,
    pub refill: Duration,
}

/// The three budgets of the module doc.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginLimits {
    pub pair: Budget,
    pub address: Budget,
    pub username: Budget,
}

impl Default for LoginLimits {
    fn default() -> Self {
        LoginLimits {
            pair: Budget {
                burst: 5,
                refill: Duration::from_secs(600),
            },
            address: Budget {
                burst: 20,
                refill: Duration::from_secs(120),
            },
            username: Budget {
                burst: 30,
                refill: Duration::from_secs(120),
            },
        }
    }
}

/// Which budget refused an attempt (decides the message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Pair,
    Address,
    Username,
}

/// An attempt that was refused, and how long until it may be tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    pub by: Refusal,
    pub retry_after: Duration,
}

/// The typed source of a rate-limited or busy sign-in error: carries the wait for the
/// `Retry-After` header (see [`super::retry_after`]).
#[derive(Debug, Clone, Copy)]
pub struct Throttled {
    pub retry_after: Duration,
}

impl std::fmt::Display for Throttled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "retry after {} s", self.retry_after.as_secs())
    }
}

impl std::error::Error for Throttled {}

/// The slots one attempt holds until it is settled.
#[derive(Debug)]
#[must_use = "settle the reservation with the attempt's outcome"]
pub struct Reservation {
    pair: String,
    address: String,
    /// `None` when a trusted address skipped the username budget.
    username: Option<String>,
    trusted_key: (String, String),
}

/// How a reserved attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The right password.
    Success,
    /// A wrong password or unknown user: the slots stay spent.
    Failure,
    /// The password was never checked (busy, database error): every slot comes back.
    NotChecked,
}

/// One budget's table: key -> GCRA "theoretical arrival time", the instant at which the
/// bucket is full again. A key whose time has passed is a full bucket, the same as absent.
#[derive(Default)]
struct Table {
    tat: HashMap<String, Instant>,
}

impl Table {
    /// The wait before `key` may spend a slot, or `None` if it may now.
    fn wait(&self, key: &str, budget: Budget, now: Instant) -> Option<Duration> {
        let tat = self.tat.get(key).copied().unwrap_or(now).max(now);
        let next = tat + budget.refill;
        let allowed = budget.refill * budget.burst;
        let debt = next - now;
        (debt > allowed).then(|| debt - allowed)
    }

    fn spend(&mut self, key: &str, budget: Budget, now: Instant) {
        if !self.tat.contains_key(key) && self.tat.len() >= MAX_KEYS {
            self.make_room(now);
        }
        let tat = self.tat.entry(key.to_owned()).or_insert(now);
        *tat = (*tat).max(now) + budget.refill;
    }

    /// Gives one slot back (a refund never makes a bucket fuller than full).
    fn refund(&mut self, key: &str, budget: Budget, now: Instant) {
        if let Some(tat) = self.tat.get_mut(key) {
            match tat.checked_sub(budget.refill) {
                Some(t) if t > now => *tat = t,
                _ => {
                    self.tat.remove(key);
                }
            }
        }
    }

    fn clear(&mut self, key: &str) {
        self.tat.remove(key);
    }

    /// Drops full buckets (no information lost); if the table is still full, drops the
    /// entries with the least debt down to 90% of the cap (amortized: this runs once per
    /// MAX_KEYS/10 new keys at most).
    fn make_room(&mut self, now: Instant) {
        self.tat.retain(|_, tat| *tat > now);
        if self.tat.len() < MAX_KEYS {
            return;
        }
        let keep = MAX_KEYS * 9 / 10;
        let mut by_debt: Vec<(Instant, String)> =
            self.tat.iter().map(|(k, t)| (*t, k.clone())).collect();
        by_debt.sort_unstable();
        for (_, key) in by_debt.into_iter().take(self.tat.len() - keep) {
            self.tat.remove(&key);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.tat.len()
    }
}

#[derive(Default)]
struct Tables {
    pair: Table,
    address: Table,
    username: Table,
    /// username key -> addresses it signed in from, most recent last.
    trusted: HashMap<String, VecDeque<String>>,
}

/// The sign-in limiter (one per server process; see the module doc for the numbers).
/// In memory: a restart forgets every counter, which keeps attacker-chosen names out of
/// the state DB and is one more way back in for a locked-out admin.
pub struct LoginLimiter {
    limits: LoginLimits,
    tables: Mutex<Tables>,
}

impl Default for LoginLimiter {
    fn default() -> Self {
        Self::new(LoginLimits::default())
    }
}

/// The address key: IPv4 as is (IPv4-mapped IPv6 too), IPv6 by its /64 prefix.
pub fn client_key(client: &str) -> String {
    match client.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => v4.to_string(),
        Ok(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
        Err(_) => client.chars().take(64).collect(),
    }
}

/// The username key: lowercased, cut to 64 characters (the longest valid username).
fn username_key(username: &str) -> String {
    username.chars().take(64).collect::<String>().to_lowercase()
}

impl LoginLimiter {
    pub fn new(limits: LoginLimits) -> Self {
        LoginLimiter {
            limits,
            tables: Mutex::new(Tables::default()),
        }
    }

    pub fn limits(&self) -> LoginLimits {
        self.limits
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tables> {
        // The tables stay consistent even if a holder panicked (every update is one insert).
        self.tables.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reserves one attempt by `client` at `username`, or says which budget refuses and
    /// for how long. `epoch` fingerprints the account's current password (see the module
    /// doc). All three budgets are checked before any is spent, under one lock.
    pub fn reserve(
        &self,
        client: &str,
        username: &str,
        epoch: &str,
        now: Instant,
    ) -> std::result::Result<Reservation, Refused> {
        let address = client_key(client);
        let user = format!("{}\u{0}{epoch}", username_key(username));
        let pair = format!("{address}\u{0}{user}");
        let trusted_key = (username_key(username), address.clone());
        let limits = self.limits;
        let mut t = self.lock();
        let trusted = t
            .trusted
            .get(&trusted_key.0)
            .is_some_and(|list| list.contains(&trusted_key.1));
        let mut refused: Option<Refused> = None;
        let mut note = |by, wait: Option<Duration>| {
            if let Some(w) = wait
                && refused.is_none_or(|r| w > r.retry_after)
            {
                refused = Some(Refused { by, retry_after: w });
            }
        };
        note(Refusal::Pair, t.pair.wait(&pair, limits.pair, now));
        note(
            Refusal::Address,
            t.address.wait(&address, limits.address, now),
        );
        if !trusted {
            note(
                Refusal::Username,
                t.username.wait(&user, limits.username, now),
            );
        }
        if let Some(r) = refused {
            return Err(r);
        }
        t.pair.spend(&pair, limits.pair, now);
        t.address.spend(&address, limits.address, now);
        if !trusted {
            t.username.spend(&user, limits.username, now);
        }
        Ok(Reservation {
            pair,
            address,
            username: (!trusted).then_some(user),
            trusted_key,
        })
    }

    /// Settles a reservation (see [`Outcome`]).
    pub fn settle(&self, r: Reservation, outcome: Outcome, now: Instant) {
        let limits = self.limits;
        let mut t = self.lock();
        match outcome {
            Outcome::Failure => {}
            Outcome::Success => {
                t.pair.clear(&r.pair);
                t.address.refund(&r.address, limits.address, now);
                if let Some(u) = &r.username {
                    t.username.refund(u, limits.username, now);
                }
                let (user, address) = r.trusted_key;
                if !t.trusted.contains_key(&user) && t.trusted.len() >= TRUSTED_ACCOUNTS {
                    // Only right passwords get here, so this is a real account count; drop
                    // an arbitrary one rather than grow without bound.
                    if let Some(k) = t.trusted.keys().next().cloned() {
                        t.trusted.remove(&k);
                    }
                }
                let list = t.trusted.entry(user).or_default();
                list.retain(|a| *a != address);
                list.push_back(address);
                while list.len() > TRUSTED_PER_ACCOUNT {
                    list.pop_front();
                }
            }
            Outcome::NotChecked => {
                t.pair.refund(&r.pair, limits.pair, now);
                t.address.refund(&r.address, limits.address, now);
                if let Some(u) = &r.username {
                    t.username.refund(u, limits.username, now);
                }
            }
        }
    }
}

/// The cap on concurrent argon2 hashes. Each default argon2id hash holds 19 MiB and a core
/// for tens of milliseconds, so unthrottled sign-ins are a memory and CPU sink; two permits
/// match the two cores this runs on. A sign-in waits at most [`HashGate::wait`] and only
/// [`HashGate::max_waiting`] may wait at once; past either it is answered 503 with
/// `Retry-After` instead of piling up. The permit moves into the blocking task, so a
/// request that goes away does not free it before the hash really ends.
pub struct HashGate {
    permits: Arc<Semaphore>,
    waiting: AtomicUsize,
    max_waiting: usize,
    wait: Duration,
}

impl HashGate {
    /// Concurrent hashes allowed.
    pub const PERMITS: usize = 2;
    /// Sign-ins that may queue for a permit (at ~50 ms a hash, 32 waiters clear in < 1 s).
    pub const MAX_WAITING: usize = 32;
    /// Longest a sign-in waits for a permit.
    pub const WAIT: Duration = Duration::from_secs(3);

    pub fn new(permits: usize, max_waiting: usize, wait: Duration) -> Self {
        HashGate {
            permits: Arc::new(Semaphore::new(permits)),
            waiting: AtomicUsize::new(0),
            max_waiting,
            wait,
        }
    }

    /// The process-wide gate every argon2 hash goes through.
    pub fn global() -> &'static HashGate {
        static GATE: std::sync::LazyLock<HashGate> = std::sync::LazyLock::new(|| {
            HashGate::new(HashGate::PERMITS, HashGate::MAX_WAITING, HashGate::WAIT)
        });
        &GATE
    }

    pub fn max_waiting(&self) -> usize {
        self.max_waiting
    }

    pub fn wait(&self) -> Duration {
        self.wait
    }

    /// A permit within the wait, or an `Unavailable` error with a [`Throttled`] source.
    pub async fn permit(&self) -> Result<OwnedSemaphorePermit> {
        if let Ok(p) = self.permits.clone().try_acquire_owned() {
            return Ok(p);
        }
        let busy = || {
            Error::new(
                ErrorKind::Unavailable,
                "the server is busy checking other sign-ins; try again in a few seconds",
            )
            .with_source(Throttled {
                retry_after: Duration::from_secs(5),
            })
        };
        struct Waiting<'a>(&'a AtomicUsize);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        if self.waiting.fetch_add(1, Ordering::SeqCst) >= self.max_waiting {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            return Err(busy());
        }
        let _waiting = Waiting(&self.waiting);
        match tokio::time::timeout(self.wait, self.permits.clone().acquire_owned()).await {
            Ok(Ok(p)) => Ok(p),
            Ok(Err(_)) => Err(Error::new(
                ErrorKind::Internal,
                "the password check gate is closed",
            )),
            Err(_) => Err(busy()),
        }
    }

    /// A permit, waiting as long as it takes (account management, not the sign-in path).
    pub async fn permit_unbounded(&self) -> Result<OwnedSemaphorePermit> {
        self.permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| Error::internal("the password check gate is closed", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    fn limiter() -> LoginLimiter {
        LoginLimiter::default()
    }

    /// Spends `n` failed attempts; returns how many were admitted.
    fn fail_n(l: &LoginLimiter, client: &str, user: &str, n: usize, now: Instant) -> usize {
        let mut ok = 0;
        for _ in 0..n {
            if let Ok(r) = l.reserve(client, user, "e", now) {
                l.settle(r, Outcome::Failure, now);
                ok += 1;
            }
        }
        ok
    }

    #[test]
    fn pair_budget_admits_its_burst_then_refuses_until_one_refill() {
        let l = limiter();
        let t0 = Instant::now();
        assert_eq!(fail_n(&l, "10.0.0.1", "admin", 5, t0), 5);
        let r = l.reserve("10.0.0.1", "admin", "e", t0).unwrap_err();
        assert_eq!(r.by, Refusal::Pair);
        assert_eq!(r.retry_after, 10 * MIN);
        // Just before the refill: still refused; at it: exactly one more.
        assert!(
            l.reserve(
                "10.0.0.1",
                "admin",
                "e",
                t0 + 10 * MIN - Duration::from_secs(1)
            )
            .is_err()
        );
        assert_eq!(fail_n(&l, "10.0.0.1", "admin", 3, t0 + 10 * MIN), 1);
    }

    #[test]
    fn reservations_are_counted_before_they_are_settled() {
        // 30 attempts in flight at once (none settled yet): only the burst gets a slot.
        let l = limiter();
        let t0 = Instant::now();
        let held: Vec<_> = (0..30)
            .filter_map(|_| l.reserve("10.0.0.1", "admin", "e", t0).ok())
            .collect();
        assert_eq!(held.len(), 5);
        for r in held {
            l.settle(r, Outcome::Failure, t0);
        }
    }

    #[test]
    fn a_locked_pair_does_not_lock_the_account_from_another_address() {
        let l = limiter();
        let t0 = Instant::now();
        assert_eq!(fail_n(&l, "10.0.0.1", "admin", 10, t0), 5);
        assert!(l.reserve("10.0.0.1", "admin", "e", t0).is_err());
        let r = l
            .reserve("10.0.0.2", "admin", "e", t0)
            .expect("other address");
        l.settle(r, Outcome::Success, t0);
        // The success from .2 does not clear .1's counter.
        assert_eq!(
            l.reserve("10.0.0.1", "admin", "e", t0).unwrap_err().by,
            Refusal::Pair
        );
    }

    #[test]
    fn success_clears_its_own_pair_and_refunds_the_shared_budgets() {
        let l = limiter();
        let t0 = Instant::now();
        assert_eq!(fail_n(&l, "10.0.0.1", "admin", 4, t0), 4);
        let r = l.reserve("10.0.0.1", "admin", "e", t0).unwrap();
        l.settle(r, Outcome::Success, t0);
        // Pair cleared: five fresh tries.
        assert_eq!(fail_n(&l, "10.0.0.1", "admin", 5, t0), 5);
        // The address budget counted 9 failures, not 10: 11 more usernames fit.
        let spray: usize = (0..20)
            .map(|i| fail_n(&l, "10.0.0.1", &format!("u{i}"), 1, t0))
            .sum();
        assert_eq!(spray, 11);
    }

    #[test]
    fn address_budget_stops_a_username_spray_and_refills() {
        let l = limiter();
        let t0 = Instant::now();
        let admitted: usize = (0..50)
            .map(|i| fail_n(&l, "10.0.0.9", &format!("user{i}"), 1, t0))
            .sum();
        assert_eq!(admitted, 20);
        let r = l.reserve("10.0.0.9", "fresh-name", "e", t0).unwrap_err();
        assert_eq!(r.by, Refusal::Address);
        assert_eq!(r.retry_after, 2 * MIN);
        // Another address is unaffected.
        assert_eq!(fail_n(&l, "10.0.0.10", "fresh-name", 1, t0), 1);
        // One refill later, one more username.
        assert_eq!(fail_n(&l, "10.0.0.9", "another", 2, t0 + 2 * MIN), 1);
    }

    #[test]
    fn username_budget_caps_guesses_from_many_addresses() {
        let l = limiter();
        let t0 = Instant::now();
        // 100 addresses, one guess each, at one account: the account's burst (30) passes.
        let admitted: usize = (0..100)
            .map(|i| fail_n(&l, &format!("192.0.2.{i}"), "admin", 1, t0))
            .sum();
        assert_eq!(admitted, 30);
        let r = l.reserve("198.51.100.1", "admin", "e", t0).unwrap_err();
        assert_eq!(r.by, Refusal::Username);
        // Other accounts are unaffected.
        assert!(l.reserve("198.51.100.1", "viewer", "e", t0).is_ok());
        // It refills: one more guess every 2 minutes.
        assert_eq!(fail_n(&l, "198.51.100.2", "admin", 2, t0 + 2 * MIN), 1);
    }

    #[test]
    fn one_address_cannot_drain_the_username_budget() {
        // A single address guessing at its pair rate for a whole day never empties the
        // account's budget, so the account stays reachable from everywhere else.
        let l = limiter();
        let t0 = Instant::now();
        for minute in 0..(24 * 60) {
            let now = t0 + MIN * minute;
            fail_n(&l, "203.0.113.7", "admin", 10, now);
            if minute % 60 == 0 {
                assert!(
                    l.reserve("198.51.100.1", "admin", "e", now)
                        .map(|r| l.settle(r, Outcome::Failure, now))
                        .is_ok(),
                    "minute {minute}"
                );
            }
        }
    }

    #[test]
    fn a_trusted_address_skips_an_exhausted_username_budget() {
        let l = limiter();
        let t0 = Instant::now();
        let r = l.reserve("10.0.0.1", "admin", "e", t0).unwrap();
        l.settle(r, Outcome::Success, t0);
        let admitted: usize = (0..100)
            .map(|i| fail_n(&l, &format!("192.0.2.{i}"), "admin", 1, t0))
            .sum();
        assert_eq!(admitted, 30);
        assert_eq!(
            l.reserve("198.51.100.1", "admin", "e", t0).unwrap_err().by,
            Refusal::Username
        );
        // The admin's usual address still gets in, limited by its own pair budget.
        assert_eq!(fail_n(&l, "10.0.0.1", "admin", 10, t0), 5);
    }

    #[test]
    fn a_new_password_epoch_starts_fresh_budgets() {
        let l = limiter();
        let t0 = Instant::now();
        assert_eq!(fail_n(&l, "10.0.0.1", "admin", 10, t0), 5);
        // After `user reset-password` the hash (and so the epoch) changes.
        let r = l
            .reserve("10.0.0.1", "admin", "new-epoch", t0)
            .expect("fresh");
        l.settle(r, Outcome::Success, t0);
    }

    #[test]
    fn not_checked_attempts_give_every_slot_back() {
        let l = limiter();
        let t0 = Instant::now();
        for _ in 0..50 {
            let r = l.reserve("10.0.0.1", "admin", "e", t0).unwrap();
            l.settle(r, Outcome::NotChecked, t0);
        }
        assert_eq!(fail_n(&l, "10.0.0.1", "admin", 10, t0), 5);
    }

    #[test]
    fn usernames_are_case_folded_and_ipv6_is_keyed_by_prefix() {
        let l = limiter();
        let t0 = Instant::now();
        assert_eq!(fail_n(&l, "2001:db8::1", "Admin", 3, t0), 3);
        assert_eq!(fail_n(&l, "2001:db8::ffff", "ADMIN", 5, t0), 2);
        assert_eq!(client_key("::ffff:192.0.2.1"), "192.0.2.1");
        assert_eq!(client_key("2001:db8:1:2:3:4:5:6"), "2001:db8:1:2::/64");
        let long = "a".repeat(10_000);
        assert_eq!(username_key(&long).len(), 64);
    }

    #[test]
    fn tables_stay_bounded_and_evict_the_least_indebted_first() {
        let l = limiter();
        let t0 = Instant::now();
        // The attacker's own pair is deeply in debt (locked).
        assert_eq!(fail_n(&l, "10.0.0.1", "admin", 10, t0), 5);
        // A spray of 3 * MAX_KEYS one-off keys from many addresses.
        for i in 0..(3 * MAX_KEYS) {
            let client = format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255);
            fail_n(&l, &client, &format!("u{i}"), 1, t0);
        }
        let t = l.lock();
        assert!(t.pair.len() <= MAX_KEYS);
        assert!(t.address.len() <= MAX_KEYS);
        assert!(t.username.len() <= MAX_KEYS);
        drop(t);
        // Eviction dropped entries with one failure, not the locked one.
        assert_eq!(
            l.reserve("10.0.0.1", "admin", "e", t0).unwrap_err().by,
            Refusal::Pair
        );
    }

    #[test]
    fn full_buckets_are_dropped_without_losing_anything() {
        let mut table = Table::default();
        let b = Budget {
            burst: 2,
            refill: MIN,
        };
        let t0 = Instant::now();
        table.spend("hot", b, t0);
        table.spend("hot", b, t0);
        for i in 1..MAX_KEYS {
            table.spend(&format!("k{i}"), b, t0);
        }
        assert_eq!(table.len(), MAX_KEYS);
        // 90 s later every k* bucket is full again; "hot" still owes 30 s. A new key drops
        // exactly the full ones.
        let later = t0 + Duration::from_secs(90);
        table.spend("new", b, later);
        assert_eq!(table.len(), 2);
        assert_eq!(table.tat.get("hot"), Some(&(t0 + 2 * MIN)));
    }

    #[tokio::test(start_paused = true)]
    async fn hash_gate_caps_concurrent_hashes_and_refuses_past_its_queue() {
        let gate = HashGate::new(2, 1, Duration::from_secs(3));
        let a = gate.permit().await.unwrap();
        let _b = gate.permit().await.unwrap();
        // Third: waits, then is refused with a Retry-After.
        let e = gate.permit().await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unavailable);
        assert!(super::super::retry_after(&e).is_some());
        // A waiter gets the permit as soon as one is released.
        let waiter = async { gate.permit().await.map(|_| ()) };
        let release = async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            drop(a);
        };
        let (got, ()) = tokio::join!(waiter, release);
        assert!(got.is_ok());
        // With one waiter already queued, the next is refused at once.
        let _a = gate.permit().await.unwrap();
        let first = gate.permit();
        let second = async {
            tokio::task::yield_now().await;
            let t = tokio::time::Instant::now();
            let r = gate.permit().await;
            (r.map(|_| ()), t.elapsed())
        };
        let (_, (second, waited)) = tokio::join!(first, second);
        assert_eq!(second.unwrap_err().kind(), ErrorKind::Unavailable);
        assert_eq!(waited, Duration::ZERO);
    }
}
