//! Carries out policy routing: the thin shell around the pure
//! `core::policy::sync::Reconciler` that encodes its changes for the netlink
//! socket and logs what it decided. The reactor does the sending:
//!
//! ```text
//! for ch in policy.reconcile(&core, now) {
//!     match netlink.send(&mut policy::encode(&ch)) {
//!         Ok(seq) => policy.sent(seq, ch),
//!         Err(e) => policy.send_failed(ch, e, now),
//!     }
//! }
//! ```
//!
//! No request storms: a refused change waits until its interface's plan
//! changes or a long backoff runs out; an entry someone else keeps
//! deleting is restored after a growing delay, with a warning, and never
//! given up.

use std::io;
use std::time::{Duration, Instant};

use crate::core::model::Core;
use crate::core::policy::sync::{Reconciler, Stats};
use crate::core::policy::{self, Change, Plan};
use crate::core::requests::Outcome;
use crate::core::types::Input;
use crate::source::netlink::wire::{self, Op};

/// The request bytes for `ch` (sequence number 0; the socket sets it).
pub fn encode(ch: &Change) -> Vec<u8> {
    match ch {
        Change::AddRoute(r) => wire::route_request(Op::Add, r),
        Change::DelRoute(r) => wire::route_request(Op::Delete, r),
        Change::AddRule(r) => wire::rule_request(Op::Add, r),
        Change::DelRule(r) => wire::rule_request(Op::Delete, r),
    }
}

pub struct Policy {
    sync: Reconciler,
}

impl Policy {
    pub fn new(settings: policy::Settings) -> Self {
        Policy {
            sync: Reconciler::new(settings),
        }
    }

    pub fn set_settings(&mut self, s: policy::Settings) {
        self.sync.set_settings(s);
    }

    /// The last plan, for hooks.
    pub fn plan(&self) -> &Plan {
        &self.sync.plan
    }

    pub fn stats(&self) -> Stats {
        self.sync.stats
    }

    /// Every input, before the model applies it.
    pub fn observe(&mut self, input: &Input, now: Instant) {
        let Some((ch, f)) = self.sync.observe(input, now) else {
            return;
        };
        let what = match &ch {
            Change::AddRule(r) => format!("rule {}", policy::rule_text(r)),
            Change::AddRoute(r) => policy::route_text(r),
            other => other.to_string(),
        };
        if f.streak == 1 {
            let rule = matches!(ch, Change::AddRule(_));
            // Routes also go with a link going down, before the link says
            // so; rules only ever go by someone's request.
            let msg = format!(
                "policy: {what} was deleted by another program; restoring it. systemd-networkd \
                 does this unless ManageForeignRoutingPolicyRules=no (rules) and \
                 ManageForeignRoutes=no (routes) are set in networkd.conf"
            );
            if rule {
                log::warn!("{msg}");
            } else {
                log::info!("{msg}");
            }
        } else if f.streak.is_power_of_two() {
            // Logged at 2, 4, 8, ... deletes in a row: it goes on, and so
            // do the restores, without flooding the log.
            log::warn!(
                "policy: {what} was deleted by another program {} times in a row; still \
                 restoring it, each time later (now after {})",
                f.streak,
                secs(f.delay)
            );
        } else {
            log::debug!(
                "policy: {what} deleted again ({} in a row); restoring it after {}",
                f.streak,
                secs(f.delay)
            );
        }
    }

    /// The changes to send now (nothing when nothing is due).
    pub fn reconcile(&mut self, core: &Core, now: Instant) -> Vec<Change> {
        let before = self.sync.plan.errors.clone();
        let out = self.sync.reconcile(core, now);
        for e in &self.sync.plan.errors {
            if !before.contains(e) {
                log::error!("policy: {e}");
            }
        }
        out
    }

    pub fn sent(&mut self, seq: u32, ch: Change) {
        log::info!("policy: {ch}");
        self.sync.sent(seq, ch);
    }

    pub fn send_failed(&mut self, ch: Change, e: io::Error, now: Instant) {
        let d = self.sync.send_failed(&ch, now);
        log::error!("policy: {ch}: {e}; retrying in {}", secs(d));
    }

    /// The kernel answered request `seq` with `code` (0 or -errno).
    /// Returns the change and how it was classed, when it was one of ours
    /// in flight (for metrics and the audit log).
    pub fn answer(&mut self, seq: u32, code: i32, now: Instant) -> Option<(Change, Outcome)> {
        let (a, o) = self.sync.answer(seq, code, now)?;
        let err = io::Error::from_raw_os_error(-code);
        let delay = a.delay.map(secs).unwrap_or_default();
        match o {
            Outcome::Done => {}
            Outcome::AlreadySo => log::debug!("policy: {}: {err}; nothing to do", a.change),
            Outcome::Transient if a.failures.is_power_of_two() => log::warn!(
                "policy: {} failed: {err}; retrying in {delay} ({} in a row)",
                a.change,
                a.failures
            ),
            Outcome::Transient => {}
            Outcome::Refused => log::warn!(
                "policy: {} refused: {err}; retried when the interface changes, or in {delay}",
                a.change
            ),
        }
        Some((a.change, o))
    }

    /// When `reconcile` is due even if nothing happens (a restore or a
    /// retry held back).
    pub fn next_deadline(&self) -> Option<Instant> {
        self.sync.next_deadline()
    }
}

/// Tenths of a second, rounded, in integers: `{:.1}` of a float would
/// link float formatting (about 5 KB) for this one message.
fn secs(d: Duration) -> String {
    let tenths = (d.as_millis() + 50) / 100;
    format!("{}.{} s", tenths / 10, tenths % 10)
}
