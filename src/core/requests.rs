//! Request/acknowledge bookkeeping for changes the daemon asks another
//! party to make (netlink requests for policy routing today, DBus method
//! calls tomorrow): which entry has a request in flight under which
//! sequence number, which may be sent now, and how long to hold back after
//! a refusal or after someone else undid what was done.
//!
//! Generic over the key that names an entry (`K`) and the change sent for
//! it (`C`). At most one request per key is in flight, so an add and a
//! delete of one entry never race. The caller diffs what it wants against
//! what is, asks `may_send` per candidate change, and reports what it sent
//! and what came back; every state change that may make a held change
//! sendable again puts its key on the recheck list, so nothing waits for an
//! unrelated event to be retried (the bug where an ack cleared "in flight"
//! but nobody looked at the key again).
//!
//! Pure: no I/O and no clock reads. Times are passed in; `next_deadline`
//! says when `fire` should next be called.

use crate::core::fx::FxMap;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// How an answer to a request is classed by its sender.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Done as asked.
    Done,
    /// Nothing to do: the entry already was (or already was not) there.
    /// Repeated, it means our view disagrees with the other side's; it
    /// backs off like a transient failure so it cannot become a loop.
    AlreadySo,
    /// Refused for now (out of memory, busy): retried after a short,
    /// growing delay.
    Transient,
    /// Refused as asked (bad gateway, no such device): retried when the
    /// context changes, or after a long, growing delay.
    Refused,
}

/// Delays, doubling from `first` up to `max`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    pub first: Duration,
    pub max: Duration,
}

impl Backoff {
    /// The delay before attempt number `n + 1` after `n` failures (n >= 1).
    pub fn delay(&self, n: u32) -> Duration {
        let shift = n.saturating_sub(1).min(30);
        self.first.saturating_mul(1 << shift).min(self.max)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// After a transient failure, a failed send or a repeated `AlreadySo`.
    pub transient: Backoff,
    /// After a refusal, when the context stays the same.
    pub refused: Backoff,
    /// Before restoring an entry someone else deleted again: the first
    /// restore is immediate, the second waits `first`, and so on.
    pub foreign: Backoff,
    /// A foreign delete this long after the previous one starts a new
    /// streak.
    pub quiet: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            transient: Backoff {
                first: Duration::from_millis(100),
                max: Duration::from_secs(10),
            },
            refused: Backoff {
                first: Duration::from_secs(30),
                max: Duration::from_secs(600),
            },
            foreign: Backoff {
                first: Duration::from_millis(100),
                max: Duration::from_secs(5),
            },
            quiet: Duration::from_secs(30),
        }
    }
}

#[derive(Clone, Debug)]
struct Entry<C> {
    /// The request in flight: sequence number, change, context.
    flight: Option<(u32, C, u64)>,
    /// Not before then.
    hold: Option<Instant>,
    /// The hold came from a refusal under this context: a change sent
    /// under another context may go at once.
    refused_ctx: Option<u64>,
    /// Consecutive failures (refusals, failed sends, `AlreadySo`).
    failures: u32,
    /// Consecutive foreign deletes, and when the last one was seen.
    foreign: u32,
    last_foreign: Option<Instant>,
}

impl<C> Default for Entry<C> {
    fn default() -> Self {
        Entry {
            flight: None,
            hold: None,
            refused_ctx: None,
            failures: 0,
            foreign: 0,
            last_foreign: None,
        }
    }
}

/// What an answer was to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answered<K, C> {
    pub key: K,
    pub change: C,
    /// Consecutive failures for the key, this one included (0 when done).
    pub failures: u32,
    /// When a failure holds the key back: for how long.
    pub delay: Option<Duration>,
}

/// What a foreign delete did to the key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Foreign {
    /// Deletes in a row without a quiet period, this one included.
    pub streak: u32,
    /// How long the restore waits.
    pub delay: Duration,
}

pub struct Requests<K, C> {
    timing: Timing,
    entries: FxMap<K, Entry<C>>,
    /// Sequence number -> key of the request in flight.
    pending: FxMap<u32, K>,
    /// Holds by expiry, for `next_deadline`.
    timers: BTreeSet<(Instant, K)>,
    /// Keys whose state changed since the caller last looked.
    recheck: BTreeSet<K>,
}

impl<K: Ord + Clone + std::hash::Hash, C: Clone> Requests<K, C> {
    pub fn new(timing: Timing) -> Self {
        Requests {
            timing,
            entries: FxMap::default(),
            pending: FxMap::default(),
            timers: BTreeSet::new(),
            recheck: BTreeSet::new(),
        }
    }

    /// Whether a change for `key`, planned under context `ctx` (a
    /// fingerprint of what the change was derived from), may be sent now.
    pub fn may_send(&self, key: &K, ctx: u64, now: Instant) -> bool {
        let Some(e) = self.entries.get(key) else {
            return true;
        };
        if e.flight.is_some() {
            return false;
        }
        match e.hold {
            Some(h) if h > now => e.refused_ctx.is_some_and(|c| c != ctx),
            _ => true,
        }
    }

    /// The change in flight for `key`, if any.
    pub fn in_flight(&self, key: &K) -> Option<&C> {
        self.entries
            .get(key)
            .and_then(|e| e.flight.as_ref().map(|f| &f.1))
    }

    /// The change in flight under sequence number `seq`, if any.
    pub fn change_of(&self, seq: u32) -> Option<&C> {
        self.in_flight(self.pending.get(&seq)?)
    }

    #[cfg(test)]
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// A request for `key` went out under sequence number `seq`.
    pub fn sent(&mut self, seq: u32, key: K, change: C, ctx: u64) {
        let e = self.entries.entry(key.clone()).or_default();
        if let Some((old, _, _)) = e.flight.take() {
            self.pending.remove(&old);
        }
        e.flight = Some((seq, change, ctx));
        if let Some(h) = e.hold.take() {
            self.timers.remove(&(h, key.clone()));
        }
        e.refused_ctx = None;
        self.pending.insert(seq, key);
    }

    /// A request for `key` could not be sent at all: retried after the
    /// transient backoff. Returns the delay.
    pub fn send_failed(&mut self, key: K, now: Instant) -> Duration {
        let e = self.entries.entry(key.clone()).or_default();
        e.failures = e.failures.saturating_add(1);
        let d = self.timing.transient.delay(e.failures);
        self.hold(key, now + d, None);
        d
    }

    /// The answer to request `seq`. `None` for a sequence number not in
    /// flight (late, or from before a resync).
    pub fn answer(&mut self, seq: u32, outcome: Outcome, now: Instant) -> Option<Answered<K, C>> {
        let key = self.pending.remove(&seq)?;
        let e = self.entries.get_mut(&key)?;
        let (_, change, ctx) = e.flight.take()?;
        self.recheck.insert(key.clone());
        let (hold, refused_ctx) = match outcome {
            Outcome::Done => {
                e.failures = 0;
                (None, None)
            }
            Outcome::AlreadySo | Outcome::Transient => {
                e.failures = e.failures.saturating_add(1);
                (Some(self.timing.transient.delay(e.failures)), None)
            }
            Outcome::Refused => {
                e.failures = e.failures.saturating_add(1);
                (Some(self.timing.refused.delay(e.failures)), Some(ctx))
            }
        };
        // A first `AlreadySo` is normal (a race with a dump); only a
        // repeated one is held back.
        let hold = hold.filter(|_| outcome != Outcome::AlreadySo || e.failures > 1);
        let failures = e.failures;
        match hold {
            Some(d) => self.hold(key.clone(), now + d, refused_ctx),
            None => self.prune(&key, now),
        }
        Some(Answered {
            key,
            change,
            failures,
            delay: hold,
        })
    }

    /// Someone else deleted the entry `key` names while it was wanted.
    /// The restore waits longer the more often this repeats, so two
    /// parties that disagree cannot make a storm, but it never stops.
    pub fn foreign_delete(&mut self, key: K, now: Instant) -> Foreign {
        let quiet = self.timing.quiet;
        let e = self.entries.entry(key.clone()).or_default();
        let recent = e
            .last_foreign
            .is_some_and(|t| now.saturating_duration_since(t) < quiet);
        e.foreign = if recent {
            e.foreign.saturating_add(1)
        } else {
            1
        };
        e.last_foreign = Some(now);
        let streak = e.foreign;
        let delay = if streak <= 1 {
            Duration::ZERO
        } else {
            self.timing.foreign.delay(streak - 1)
        };
        let until = now + delay;
        // Never shorten a longer hold (a refusal's); a hold for a foreign
        // delete is not lifted by a new context.
        if e.hold.map_or(true, |h| h < until) {
            self.hold(key.clone(), until, None);
        }
        self.recheck.insert(key);
        Foreign { streak, delay }
    }

    /// The answers in flight may have been lost (a resync after the
    /// socket overflowed): forget them. Holds and streaks stay, so a
    /// resync does not defeat the backoff.
    pub fn resynced(&mut self) {
        for (_, key) in self.pending.drain() {
            if let Some(e) = self.entries.get_mut(&key) {
                e.flight = None;
            }
            self.recheck.insert(key);
        }
    }

    /// When `fire` should next be called.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.timers.first().map(|(t, _)| *t)
    }

    /// Ends the holds that expired by `now`; their keys are to be
    /// rechecked.
    pub fn fire(&mut self, now: Instant) {
        while let Some((t, key)) = self.timers.first().cloned() {
            if t > now {
                break;
            }
            self.timers.pop_first();
            if let Some(e) = self.entries.get_mut(&key) {
                if e.hold == Some(t) {
                    e.hold = None;
                    e.refused_ctx = None;
                }
            }
            self.recheck.insert(key.clone());
            self.prune(&key, now);
        }
    }

    /// Keys whose state changed (answered, released, deleted by someone
    /// else) since the last call: the caller diffs them again.
    pub fn take_recheck(&mut self) -> BTreeSet<K> {
        std::mem::take(&mut self.recheck)
    }

    /// Forgets every hold and failure count (the configuration changed:
    /// what was refused may be fine now). Requests in flight stay.
    pub fn forgive(&mut self) {
        self.timers.clear();
        let keys: Vec<K> = self.entries.keys().cloned().collect();
        for k in keys {
            if let Some(e) = self.entries.get_mut(&k) {
                e.hold = None;
                e.refused_ctx = None;
                e.failures = 0;
                e.foreign = 0;
                e.last_foreign = None;
            }
            self.recheck.insert(k);
        }
        self.entries.retain(|_, e| e.flight.is_some());
    }

    fn hold(&mut self, key: K, until: Instant, refused_ctx: Option<u64>) {
        let e = self.entries.entry(key.clone()).or_default();
        if let Some(old) = e.hold.replace(until) {
            self.timers.remove(&(old, key.clone()));
        }
        e.refused_ctx = refused_ctx;
        self.timers.insert((until, key));
    }

    /// Drops an entry with nothing left to remember, so the table only
    /// holds keys in flight or in trouble.
    fn prune(&mut self, key: &K, now: Instant) {
        let quiet = self.timing.quiet;
        if let Some(e) = self.entries.get(key) {
            let streak_over = e
                .last_foreign
                .map_or(true, |t| now.saturating_duration_since(t) >= quiet);
            if e.flight.is_none() && e.hold.is_none() && e.failures == 0 && streak_over {
                self.entries.remove(key);
            }
        }
    }

    #[cfg(test)]
    pub fn tracked(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn one_request_per_key_and_answers_matched_by_sequence() {
        let t0 = Instant::now();
        let mut r: Requests<u32, &str> = Requests::new(Timing::default());
        assert!(r.may_send(&1, 0, t0));
        r.sent(10, 1, "add 1", 0);
        assert!(!r.may_send(&1, 0, t0), "in flight");
        assert!(r.may_send(&2, 0, t0));
        assert_eq!(r.in_flight(&1), Some(&"add 1"));
        assert_eq!(r.answer(99, Outcome::Done, t0), None, "unknown seq");
        let a = r.answer(10, Outcome::Done, t0).unwrap();
        assert_eq!(
            (a.key, a.change, a.failures, a.delay),
            (1, "add 1", 0, None)
        );
        assert_eq!(r.take_recheck().into_iter().collect::<Vec<_>>(), vec![1]);
        assert!(r.may_send(&1, 0, t0));
        assert_eq!(r.tracked(), 0, "nothing left to remember");
        assert_eq!(r.answer(10, Outcome::Done, t0), None, "answered once");
    }

    #[test]
    fn transient_failures_back_off_and_fire_releases() {
        let t0 = Instant::now();
        let mut r: Requests<u32, ()> = Requests::new(Timing::default());
        r.sent(1, 7, (), 0);
        let a = r.answer(1, Outcome::Transient, t0).unwrap();
        assert_eq!(a.delay, Some(ms(100)));
        assert!(!r.may_send(&7, 0, t0 + ms(99)));
        assert_eq!(r.next_deadline(), Some(t0 + ms(100)));
        r.take_recheck();
        r.fire(t0 + ms(99));
        assert!(r.take_recheck().is_empty());
        r.fire(t0 + ms(100));
        assert_eq!(r.take_recheck().len(), 1);
        assert!(r.may_send(&7, 0, t0 + ms(100)));
        assert_eq!(r.next_deadline(), None);
        // the second failure in a row waits twice as long; a failed send
        // counts too
        r.sent(2, 7, (), 0);
        assert_eq!(
            r.answer(2, Outcome::Transient, t0).unwrap().delay,
            Some(ms(200))
        );
        assert_eq!(r.send_failed(7, t0), ms(400));
        // success resets
        r.sent(3, 7, (), 0);
        r.answer(3, Outcome::Done, t0);
        r.sent(4, 7, (), 0);
        assert_eq!(
            r.answer(4, Outcome::Transient, t0).unwrap().delay,
            Some(ms(100))
        );
    }

    #[test]
    fn refusal_holds_until_the_context_changes_or_long_after() {
        let t0 = Instant::now();
        let mut r: Requests<u32, ()> = Requests::new(Timing::default());
        r.sent(1, 7, (), 42);
        let a = r.answer(1, Outcome::Refused, t0).unwrap();
        assert_eq!(a.delay, Some(Duration::from_secs(30)));
        assert!(!r.may_send(&7, 42, t0 + ms(10)));
        assert!(r.may_send(&7, 43, t0 + ms(10)), "the plan changed");
        r.fire(t0 + Duration::from_secs(30));
        assert!(
            r.may_send(&7, 42, t0 + Duration::from_secs(30)),
            "never given up"
        );
    }

    #[test]
    fn a_first_already_so_is_normal_a_repeated_one_backs_off() {
        let t0 = Instant::now();
        let mut r: Requests<u32, ()> = Requests::new(Timing::default());
        r.sent(1, 7, (), 0);
        assert_eq!(r.answer(1, Outcome::AlreadySo, t0).unwrap().delay, None);
        assert!(r.may_send(&7, 0, t0));
        r.sent(2, 7, (), 0);
        assert_eq!(
            r.answer(2, Outcome::AlreadySo, t0).unwrap().delay,
            Some(ms(200))
        );
        assert!(!r.may_send(&7, 0, t0));
    }

    #[test]
    fn foreign_deletes_back_off_in_a_streak_and_a_quiet_period_resets() {
        let t0 = Instant::now();
        let mut r: Requests<u32, ()> = Requests::new(Timing::default());
        let delays: Vec<u64> = (0..9)
            .map(|i| r.foreign_delete(7, t0 + ms(i)).delay.as_millis() as u64)
            .collect();
        assert_eq!(delays, vec![0, 100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        assert!(!r.may_send(&7, 0, t0 + ms(100)));
        let f = r.foreign_delete(7, t0 + Duration::from_secs(40));
        assert_eq!((f.streak, f.delay), (1, Duration::ZERO));
    }

    #[test]
    fn resync_forgets_flights_but_keeps_holds() {
        let t0 = Instant::now();
        let mut r: Requests<u32, ()> = Requests::new(Timing::default());
        r.sent(1, 7, (), 0);
        r.foreign_delete(8, t0);
        r.foreign_delete(8, t0);
        r.resynced();
        assert_eq!(r.pending(), 0);
        assert!(r.may_send(&7, 0, t0));
        assert!(!r.may_send(&8, 0, t0));
        assert_eq!(r.answer(1, Outcome::Done, t0), None, "late answer");
        r.forgive();
        assert!(r.may_send(&8, 0, t0));
    }
}
