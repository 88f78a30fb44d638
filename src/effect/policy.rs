//! Carries out the policy-routing plan over the daemon's own netlink
//! socket: sends the changes the core's diff asks for, remembers which are
//! in flight so none is sent twice, and matches the kernel's answers.
//!
//! A change the kernel refused is not retried until what is planned for
//! its interface changes, so a bad gateway cannot make a request storm.

use std::collections::{HashMap, HashSet};

use crate::core::model::Core;
use crate::core::policy::{self, Change, Plan};
use crate::core::types::{RuleInfo, RTPROT_NETEVD};
use crate::source::netlink::Netlink;

type Key = (bool, Option<policy::RouteKey>, Option<policy::RuleKey>);

#[derive(Default, Debug, Clone, Copy)]
pub struct Stats {
    pub requests: u64,
    pub refused: u64,
    /// Own rules deleted by someone else and put back.
    pub restored: u64,
}

pub struct Policy {
    settings: policy::Settings,
    /// Sequence number -> the change and the fingerprint of its
    /// interface's plan when it was sent.
    pending: HashMap<u32, (Change, u64)>,
    inflight: HashSet<Key>,
    failed: HashMap<Key, u64>,
    last_gen: Option<u64>,
    pub plan: Plan,
    pub stats: Stats,
}

impl Policy {
    pub fn new(settings: policy::Settings) -> Self {
        Policy {
            settings,
            pending: HashMap::new(),
            inflight: HashSet::new(),
            failed: HashMap::new(),
            last_gen: None,
            plan: Plan::default(),
            stats: Stats::default(),
        }
    }

    pub fn set_settings(&mut self, s: policy::Settings) {
        self.settings = s;
        self.failed.clear();
        self.last_gen = None;
    }

    /// Brings the kernel towards the plan, when anything the plan depends
    /// on changed since the last call. Only while the model is the
    /// kernel's state: never in the middle of a resync.
    pub fn reconcile(&mut self, core: &Core, nl: &mut Netlink) {
        if !core.synced() || core.resyncing() || self.last_gen == Some(core.policy_gen) {
            return;
        }
        self.last_gen = Some(core.policy_gen);
        let plan = policy::plan(&self.settings, core);
        for e in &plan.errors {
            if !self.plan.errors.contains(e) {
                log::error!("policy: {e}");
            }
        }
        for ch in policy::diff(&plan, core) {
            let key = ch.key();
            if self.inflight.contains(&key) {
                continue;
            }
            let fp = match &ch {
                Change::AddRoute(r) => plan.links.iter().find(|l| l.index == r.oif),
                Change::AddRule(r) => plan.links.iter().find(|l| l.table == r.table),
                _ => None,
            }
            .map(|l| l.fingerprint())
            .unwrap_or(0);
            if self.failed.get(&key) == Some(&fp) {
                continue;
            }
            match nl.request(&ch) {
                Ok(seq) => {
                    self.stats.requests += 1;
                    log::info!("policy: {ch}");
                    self.pending.insert(seq, (ch, fp));
                    self.inflight.insert(key);
                }
                Err(e) => log::error!("policy: {}: {e}", ch),
            }
        }
        self.plan = plan;
    }

    /// The kernel answered a request.
    pub fn ack(&mut self, seq: u32, code: i32) {
        let Some((ch, fp)) = self.pending.remove(&seq) else {
            return;
        };
        let key = ch.key();
        self.inflight.remove(&key);
        let add = key.0;
        let fine = code == 0
            || (add && code == -nix::libc::EEXIST)
            || (!add && (code == -nix::libc::ESRCH || code == -nix::libc::ENOENT));
        if fine {
            self.failed.remove(&key);
            return;
        }
        self.stats.refused += 1;
        log::warn!(
            "policy: {} refused: {}; not retried until the interface changes",
            ch,
            std::io::Error::from_raw_os_error(-code)
        );
        self.failed.insert(key, fp);
        // The model did not change, but the next change must retry what
        // became possible.
        self.last_gen = None;
    }

    /// Answers may have been lost with the notifications: forget what was
    /// in flight and plan from the dump.
    pub fn resynced(&mut self) {
        self.pending.clear();
        self.inflight.clear();
        self.last_gen = None;
    }

    /// Called with a rule deletion before the model applies it: one of our
    /// own rules that we did not delete means another program removed it.
    pub fn rule_deleted(&mut self, r: &RuleInfo) {
        if r.protocol != RTPROT_NETEVD {
            return;
        }
        let key = Change::DelRule(r.clone()).key();
        if self.inflight.contains(&key) {
            return;
        }
        self.stats.restored += 1;
        log::warn!(
            "policy: rule {} was deleted by another program; restoring it. systemd-networkd \
             does this unless ManageForeignRoutingPolicyRules=no is set in networkd.conf",
            policy::rule_text(r)
        );
    }
}
