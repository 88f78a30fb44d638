//! Keeps the kernel at the policy-routing plan: decides which changes to
//! send now, and tracks what is in flight, what the kernel answered and
//! what someone else undid, with `Requests` doing the per-key bookkeeping.
//!
//! Level-triggered: whatever happened (an input, an answer, a refusal, a
//! foreign delete, a resync, a hold running out), the next `reconcile`
//! diffs again everything it may have changed against the model, so the
//! kernel converges to the plan after any interleaving. What it diffs
//! again is kept small: an address added or removed changes what it plans
//! and rechecks those keys; the notification of one of netevd's own
//! entries, an answer or an expired hold rechecks that one key; all
//! O(log n). A policy link's own change (up or down, its gateway's
//! default route) replans that link alone (`plan::replan_link`), and
//! links, addresses and routes that are no policy link's are not looked
//! at. Only the rarest inputs (a policy link appearing, going or renamed,
//! a replace that may push out a default or one of netevd's routes, a
//! resync, a reload) replan in full, O(n log n). So neither 10,000
//! addresses, nor 10,000 other links, nor the echo of the requests they
//! cause cost a full replan each.
//!
//! Every input must go through `observe` before the model applies it:
//! that is how own entries are indexed and foreign deletes are told from
//! netevd's own.
//!
//! Pure: no I/O, no clock reads, no logging; the caller sends, passes the
//! time in and logs what the return values say.

use crate::core::fx::FxMap;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::super::model::Core;
use super::super::requests::{Answered, Foreign, Outcome, Requests, Timing};
use super::super::types::*;
use super::plan::{self, Have, Plan, Source, Wanted};
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
    /// Plans of every policy link, and of one link alone.
    pub full_replans: u64,
    pub link_replans: u64,
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

pub struct Reconciler {
    settings: Settings,
    requests: Requests<Key, Change>,
    /// The plan, for hooks and for the log; kept current between full
    /// replans by address changes.
    pub plan: Plan,
    want: Wanted,
    have: Have,
    /// Own IPv4 routes by preferred source: the kernel drops them without
    /// a word when that address goes (the model follows; so must `have`).
    by_prefsrc: BTreeMap<IpAddr, BTreeSet<Key>>,
    /// Per link, the context a refusal is tied to: it changes whenever
    /// anything planned for the link changes.
    ctx: FxMap<u32, u64>,
    next_ctx: u64,
    /// An input that may change which links are planned came: replan in
    /// full.
    full: bool,
    /// Policy links whose own state changed: replan each alone.
    dirty: BTreeSet<u32>,
    resyncing: bool,
    /// The leases' generation last planned with: a lease's router can be
    /// a link's gateway (plan.rs).
    lease_gen: u64,
    /// Keys whose wanted or actual state changed since the last reconcile.
    touched: BTreeSet<Key>,
    pub stats: Stats,
}

impl Reconciler {
    pub fn new(settings: Settings) -> Self {
        Self::with_timing(settings, Timing::default())
    }

    pub fn with_timing(settings: Settings, timing: Timing) -> Self {
        Reconciler {
            settings,
            requests: Requests::new(timing),
            plan: Plan::default(),
            want: Wanted::new(),
            have: Have::new(),
            by_prefsrc: BTreeMap::new(),
            ctx: FxMap::default(),
            next_ctx: 0,
            full: true,
            dirty: BTreeSet::new(),
            resyncing: false,
            lease_gen: 0,
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
        let entry = match input {
            Input::NewRule(r) | Input::DelRule(r) if r.protocol == RTPROT_NETEVD => {
                Change::DelRule(r.clone())
            }
            Input::NewRoute { route, replace } if route.protocol == RTPROT_NETEVD && !replace => {
                Change::DelRoute(route.clone())
            }
            Input::DelRoute(route) if route.protocol == RTPROT_NETEVD => {
                Change::DelRoute(route.clone())
            }
            // A replacing route may silently push out one of ours (in a
            // table netevd plans) or a gateway's default route.
            Input::NewRoute {
                route,
                replace: true,
            } => {
                if route.is_default() || self.plan.tables().contains(&route.table) {
                    self.full = true;
                }
                return None;
            }
            // Other rules and routes are nothing the plan depends on,
            // but a policy link's default routes (gateways) are.
            Input::NewRule(_) | Input::DelRule(_) => return None,
            Input::NewRoute { route, .. } | Input::DelRoute(route) => {
                if route.is_default() && self.plan.link(route.oif).is_some() {
                    self.dirty.insert(route.oif);
                }
                return None;
            }
            Input::ResyncBegin => {
                self.resyncing = true;
                return None;
            }
            Input::ResyncEnd => {
                // Answers may have been lost with the notifications.
                self.requests.resynced();
                self.resyncing = false;
                self.full = true;
                return None;
            }
            Input::NewAddr(a) => {
                self.address(a, true);
                return None;
            }
            Input::DelAddr(a) => {
                self.address(a, false);
                return None;
            }
            Input::NewLink(l) => {
                match self.plan.link(l.index) {
                    Some(lp) if lp.name.as_bytes() == l.name => {
                        self.dirty.insert(l.index);
                    }
                    // Renamed away from its entry.
                    Some(_) => self.full = true,
                    None => {
                        if self
                            .settings
                            .ifaces
                            .iter()
                            .any(|i| i.name.as_bytes() == l.name)
                        {
                            self.full = true; // a policy link appears
                        }
                    }
                }
                return None;
            }
            Input::DelLink(index) => {
                if self.plan.link(*index).is_some() {
                    self.full = true;
                }
                return None;
            }
        };
        let key = entry.key();
        self.touched.insert(key.clone());
        let added = matches!(input, Input::NewRule(_) | Input::NewRoute { .. });
        if added {
            self.have_insert(key, entry);
            return None;
        }
        self.have_remove(&key);
        let ours = self.requests.in_flight(&key).is_some_and(|c| !c.is_add());
        let restore = self.want.get(&key)?.change().clone();
        if ours {
            return None;
        }
        self.stats.restored += 1;
        let f = self.requests.foreign_delete(key, now);
        Some((restore, f))
    }

    /// An address added, changed or removed: the plan of its link changes
    /// by what that address plans, O(log n), instead of a full replan.
    fn address(&mut self, a: &AddrInfo, added: bool) {
        if self.full || self.resyncing {
            return; // the full replan to come reads the model
        }
        if !added && a.ip.is_ipv4() {
            // The kernel's silent flush (fib_inetaddr_event), as the model
            // does it: own routes whose preferred source this was.
            for k in self.by_prefsrc.remove(&a.ip).unwrap_or_default() {
                self.have.remove(&k);
                self.touched.insert(k);
            }
        }
        let Some(lp) = self.plan.link_mut(a.index) else {
            return; // not a policy link
        };
        if !added
            && a.ip.is_ipv4()
            && !lp
                .addrs
                .keys()
                .any(|(ip, p)| ip.is_ipv4() && (*ip, *p) != (a.ip, a.prefix))
        {
            // Perhaps the last IPv4 address: the kernel then drops every
            // IPv4 route of the link. Rare; replan from the model.
            self.full = true;
            return;
        }
        let src = Source::Addr(a.ip, a.prefix);
        let index = lp.index;
        let gone = lp.remove_addr(a.ip, a.prefix);
        let new = if added && plan::plans_for(a) {
            lp.insert_addr(a.clone())
        } else {
            Vec::new()
        };
        if gone == new {
            return; // flags or lifetimes changed, nothing planned did
        }
        for ch in &gone {
            let k = plan::unwant(&mut self.want, src, ch);
            self.touched.insert(k);
        }
        for ch in new {
            let k = plan::want(&mut self.want, index, src, ch);
            self.touched.insert(k);
        }
        // A default route refused for an unreachable gateway may go in
        // now that the link's addresses changed: look at it again.
        if let Some(lp) = self.plan.link(index) {
            for (src, ch) in lp.gateway_changes() {
                debug_assert!(matches!(src, Source::Gateway(_)));
                self.touched.insert(ch.key());
            }
        }
        self.next_ctx += 1;
        self.ctx.insert(index, self.next_ctx);
    }

    fn have_insert(&mut self, key: Key, del: Change) {
        if let Change::DelRoute(RouteInfo {
            prefsrc: Some(p), ..
        }) = &del
        {
            self.by_prefsrc.entry(*p).or_default().insert(key.clone());
        }
        if let Some(old) = self.have.insert(key.clone(), del) {
            self.unindex(&key, &old);
        }
    }

    fn have_remove(&mut self, key: &Key) {
        if let Some(old) = self.have.remove(key) {
            self.unindex(key, &old);
        }
    }

    fn unindex(&mut self, key: &Key, old: &Change) {
        if let Change::DelRoute(RouteInfo {
            prefsrc: Some(p), ..
        }) = old
        {
            if let Some(s) = self.by_prefsrc.get_mut(p) {
                s.remove(key);
                if s.is_empty() {
                    self.by_prefsrc.remove(p);
                }
            }
        }
    }

    fn replan(&mut self, core: &Core) {
        self.stats.full_replans += 1;
        let old: HashMap<u32, u64> = self
            .plan
            .links
            .iter()
            .map(|l| (l.index, l.fingerprint()))
            .collect();
        self.plan = plan::plan(&self.settings, core);
        for l in &self.plan.links {
            let fp = l.fingerprint();
            if old.get(&l.index) != Some(&fp) || !self.ctx.contains_key(&l.index) {
                self.next_ctx += 1;
                self.ctx.insert(l.index, self.next_ctx);
            }
        }
        let planned: HashSet<u32> = self.plan.links.iter().map(|l| l.index).collect();
        self.ctx.retain(|i, _| planned.contains(i));
        self.want = plan::wanted(&self.plan);
        self.have.clear();
        self.by_prefsrc.clear();
        for (k, del) in plan::have(core) {
            self.have_insert(k, del);
        }
    }

    /// The changes to send now. Nothing while the model is not the
    /// kernel's state (before the first dump, inside a resync).
    pub fn reconcile(&mut self, core: &Core, now: Instant) -> Vec<Change> {
        self.requests.fire(now);
        if !core.synced() || core.resyncing() {
            return Vec::new();
        }
        if core.leases().generation() != self.lease_gen {
            self.lease_gen = core.leases().generation();
            self.full = true;
        }
        if !self.full {
            for index in std::mem::take(&mut self.dirty) {
                self.replan_one(core, index);
            }
        }
        let mut keys = self.requests.take_recheck();
        keys.append(&mut self.touched);
        let candidates = if self.full {
            self.full = false;
            self.dirty.clear();
            self.replan(core);
            plan::diff_keyed(&self.want, &self.have)
        } else {
            let mut c: Vec<(Change, Option<u32>)> =
                keys.iter().filter_map(|k| self.candidate(k)).collect();
            c.sort_by_key(|(ch, _)| ch.rank());
            c
        };
        candidates
            .into_iter()
            .filter(|(ch, link)| {
                let ctx = link.and_then(|l| self.ctx.get(&l).copied()).unwrap_or(0);
                self.requests.may_send(&ch.key(), ctx, now)
            })
            .map(|(ch, _)| ch)
            .collect()
    }

    /// Replans one policy link; what its plan wants differently is
    /// rechecked. A link that cannot be replanned alone (gone, renamed)
    /// makes the next reconcile replan in full.
    fn replan_one(&mut self, core: &Core, index: u32) {
        let Some(old) = plan::replan_link(&mut self.plan, &self.settings, core, index) else {
            self.full = true;
            return;
        };
        self.stats.link_replans += 1;
        let Some(new) = self.plan.link(index) else {
            return;
        };
        // The kernel flushes a downed link's IPv4 routes silently, ours in
        // its table too: read what it has there from the model again.
        let table = new.table;
        let stale: Vec<Key> = self
            .have
            .iter()
            .filter(|(_, c)| matches!(c, Change::DelRoute(r) if r.table == table))
            .map(|(k, _)| k.clone())
            .collect();
        for k in stale {
            self.have_remove(&k);
            self.touched.insert(k);
        }
        for r in core.routes().owned().filter(|r| r.table == table) {
            let k = Key::Route(super::route_key(r));
            self.have_insert(k.clone(), Change::DelRoute(r.clone()));
            self.touched.insert(k);
        }
        let Some(new) = self.plan.link(index) else {
            return;
        };
        if old == *new {
            return;
        }
        let new = new.changes();
        for (src, ch) in old.changes() {
            self.touched.insert(plan::unwant(&mut self.want, src, &ch));
        }
        for (src, ch) in new {
            self.touched
                .insert(plan::want(&mut self.want, index, src, ch));
        }
        self.next_ctx += 1;
        self.ctx.insert(index, self.next_ctx);
    }

    fn candidate(&self, k: &Key) -> Option<(Change, Option<u32>)> {
        match (self.want.get(k), self.have.get(k)) {
            (Some(w), None) => Some((w.change().clone(), Some(w.link))),
            (None, Some(del)) => Some((del.clone(), None)),
            _ => None,
        }
    }

    /// `ch` went out under sequence number `seq`.
    pub fn sent(&mut self, seq: u32, ch: Change) {
        self.stats.requests += 1;
        let key = ch.key();
        let ctx = match self.want.get(&key) {
            Some(w) if ch.is_add() => self.ctx.get(&w.link).copied().unwrap_or(0),
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
