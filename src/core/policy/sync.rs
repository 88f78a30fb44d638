//! Keeps the kernel at the policy-routing plan: decides which changes to
//! send now, and tracks what is in flight, what the kernel answered and
//! what someone else undid, with `Requests` doing the per-key bookkeeping.
//!
//! Level-triggered: whatever happened (an input, an answer, a refusal, a
//! foreign delete, a resync, a hold running out), the next `reconcile`
//! diffs again everything it may have changed against the model, so the
//! kernel converges to the plan after any interleaving. What it diffs
//! again is kept small: an input the plan depends on (links, addresses,
//! gateways) replans in full, O(n log n); the notification of one of
//! netevd's own entries, an answer or an expired hold rechecks that one
//! key, O(log n). So the echo of 10,000 requests does not cost 10,000
//! full replans.
//!
//! Every input must go through `observe` before the model applies it:
//! that is how own entries are indexed and foreign deletes are told from
//! netevd's own.
//!
//! Pure: no I/O, no clock reads, no logging; the caller sends, passes the
//! time in and logs what the return values say.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use super::super::model::Core;
use super::super::requests::{Answered, Foreign, Outcome, Requests, Timing};
use super::super::types::*;
use super::plan::{self, Have, Plan, Wanted};
use super::{Change, Key, Settings};

const EEXIST: i32 = 17;
const ENOENT: i32 = 2;
const ESRCH: i32 = 3;
const EINTR: i32 = 4;
const EAGAIN: i32 = 11;
const ENOMEM: i32 = 12;
const EBUSY: i32 = 16;
const ENOBUFS: i32 = 105;

#[derive(Default, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub requests: u64,
    pub refused: u64,
    /// Own entries deleted by someone else while wanted, and put back.
    pub restored: u64,
}

/// Classes a kernel answer (0 or -errno) to `ch`.
pub fn outcome(ch: &Change, code: i32) -> Outcome {
    match -code {
        0 => Outcome::Done,
        EEXIST if ch.is_add() => Outcome::AlreadySo,
        ENOENT | ESRCH if !ch.is_add() => Outcome::AlreadySo,
        EINTR | EAGAIN | ENOMEM | EBUSY | ENOBUFS => Outcome::Transient,
        _ => Outcome::Refused,
    }
}

pub struct Sync {
    settings: Settings,
    requests: Requests<Key, Change>,
    /// The last full plan, for hooks and for the log.
    pub plan: Plan,
    want: Wanted,
    have: Have,
    /// An input the plan depends on came: replan in full.
    full: bool,
    /// Own entries whose notification came since the last reconcile.
    touched: BTreeSet<Key>,
    pub stats: Stats,
}

impl Sync {
    pub fn new(settings: Settings) -> Self {
        Self::with_timing(settings, Timing::default())
    }

    pub fn with_timing(settings: Settings, timing: Timing) -> Self {
        Sync {
            settings,
            requests: Requests::new(timing),
            plan: Plan::default(),
            want: Wanted::new(),
            have: Have::new(),
            full: true,
            touched: BTreeSet::new(),
            stats: Stats::default(),
        }
    }

    /// New settings (a reload): everything is planned again, and what was
    /// held back after refusals is tried again.
    pub fn set_settings(&mut self, s: Settings) {
        self.settings = s;
        self.full = true;
        self.requests.forgive();
    }

    /// Sees an input before the model applies it. Returns, for an own
    /// entry someone else deleted while it was wanted, the change that
    /// restores it and how long the restore waits.
    pub fn observe(&mut self, input: &Input, now: Instant) -> Option<(Change, Foreign)> {
        let (key, entry) = match input {
            Input::NewRule(r) | Input::DelRule(r) if r.protocol == RTPROT_NETEVD => {
                (Change::DelRule(r.clone()).key(), Change::DelRule(r.clone()))
            }
            Input::NewRoute { route, replace } if route.protocol == RTPROT_NETEVD && !replace => (
                Change::DelRoute(route.clone()).key(),
                Change::DelRoute(route.clone()),
            ),
            Input::DelRoute(route) if route.protocol == RTPROT_NETEVD => (
                Change::DelRoute(route.clone()).key(),
                Change::DelRoute(route.clone()),
            ),
            // A replacing route may silently push out one of ours.
            Input::NewRoute { replace: true, .. } => {
                self.full = true;
                return None;
            }
            // Other rules and routes are nothing the plan depends on,
            // but default routes (gateways) are.
            Input::NewRule(_) | Input::DelRule(_) => return None,
            Input::NewRoute { route, .. } | Input::DelRoute(route) => {
                if route.is_default() {
                    self.full = true;
                }
                return None;
            }
            Input::ResyncBegin => return None,
            Input::ResyncEnd => {
                // Answers may have been lost with the notifications.
                self.requests.resynced();
                self.full = true;
                return None;
            }
            Input::NewLink(_) | Input::DelLink(_) | Input::NewAddr(_) | Input::DelAddr(_) => {
                self.full = true;
                return None;
            }
        };
        self.touched.insert(key.clone());
        let added = matches!(input, Input::NewRule(_) | Input::NewRoute { .. });
        if added {
            self.have.insert(key, entry);
            return None;
        }
        self.have.remove(&key);
        let ours = self.requests.in_flight(&key).is_some_and(|c| !c.is_add());
        let (restore, _) = self.want.get(&key)?;
        if ours {
            return None;
        }
        self.stats.restored += 1;
        let restore = restore.clone();
        let f = self.requests.foreign_delete(key, now);
        Some((restore, f))
    }

    /// The changes to send now. Nothing while the model is not the
    /// kernel's state (before the first dump, inside a resync).
    pub fn reconcile(&mut self, core: &Core, now: Instant) -> Vec<Change> {
        self.requests.fire(now);
        if !core.synced() || core.resyncing() {
            return Vec::new();
        }
        let mut keys = self.requests.take_recheck();
        keys.append(&mut self.touched);
        let candidates = if self.full {
            self.full = false;
            self.plan = plan::plan(&self.settings, core);
            self.want = plan::wanted(&self.plan);
            self.have = plan::have(core);
            plan::diff_keyed(&self.plan, &self.want, &self.have)
        } else {
            let mut c: Vec<(Change, u64)> = keys.iter().filter_map(|k| self.candidate(k)).collect();
            c.sort_by_key(|(ch, _)| ch.rank());
            c
        };
        candidates
            .into_iter()
            .filter(|(ch, ctx)| self.requests.may_send(&ch.key(), *ctx, now))
            .map(|(ch, _)| ch)
            .collect()
    }

    fn candidate(&self, k: &Key) -> Option<(Change, u64)> {
        match (self.want.get(k), self.have.get(k)) {
            (Some((add, ctx)), None) => Some((add.clone(), *ctx)),
            (None, Some(del)) => Some((del.clone(), 0)),
            _ => None,
        }
    }

    /// `ch` went out under sequence number `seq`.
    pub fn sent(&mut self, seq: u32, ch: Change) {
        self.stats.requests += 1;
        let key = ch.key();
        let ctx = match self.want.get(&key) {
            Some((_, ctx)) if ch.is_add() => *ctx,
            _ => 0,
        };
        self.requests.sent(seq, key, ch, ctx);
    }

    /// `ch` could not be sent; returns how long until it is tried again.
    pub fn send_failed(&mut self, ch: &Change, now: Instant) -> Duration {
        self.requests.send_failed(ch.key(), now)
    }

    /// The kernel's answer (0 or -errno) to request `seq`; `None` when it
    /// is to nothing in flight.
    pub fn answer(
        &mut self,
        seq: u32,
        code: i32,
        now: Instant,
    ) -> Option<(Answered<Key, Change>, Outcome)> {
        let ch = self.requests.change_of(seq)?;
        let o = outcome(ch, code);
        if matches!(o, Outcome::Transient | Outcome::Refused) {
            self.stats.refused += 1;
        }
        self.requests.answer(seq, o, now).map(|a| (a, o))
    }

    /// When `reconcile` should next be called even if nothing happens.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.requests.next_deadline()
    }
}

#[cfg(test)]
mod tests;
