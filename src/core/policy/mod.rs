//! Policy routing for multi-homed hosts: what netevd wants in the kernel
//! for each interface of `routing.policy_rules` (`plan`), and the
//! bookkeeping that gets the kernel there and keeps it there (`sync`).
//!
//! This file holds what both share: the settings, a change to the kernel
//! (`Change`), and the key that names the entry a change is about.
//! Everything planned carries `RTPROT_NETEVD`; only entries with it are
//! ever deleted.
//!
//! Pure: the model in, plans and change lists out; no I/O, no clock.

use std::fmt;
use std::net::IpAddr;

use super::types::*;

pub mod plan;
pub mod sync;

pub use plan::Plan;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Iface {
    pub name: String,
    pub table: Option<u32>,
    pub from_priority: Option<u32>,
    pub to_priority: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    pub ifaces: Vec<Iface>,
    pub table_base: u32,
    pub from_priority: u32,
    pub to_priority: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            ifaces: Vec::new(),
            table_base: 1000,
            from_priority: 10000,
            to_priority: 10001,
        }
    }
}

/// Tables the kernel reserves: unspec, compat, default, main, local.
pub fn reserved_table(t: u32) -> bool {
    t == 0 || (252..=255).contains(&t)
}

/// Rule priorities the kernel's own rules use: local, main, default.
pub fn reserved_priority(p: u32) -> bool {
    p == 0 || p == 32766 || p == 32767
}

/// One change to the kernel's state.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Change {
    AddRoute(RouteInfo),
    DelRoute(RouteInfo),
    AddRule(RuleInfo),
    DelRule(RuleInfo),
}

/// A rule as the log and hooks show it: `10000: from 10.2.0.2/32 lookup 1003`.
pub fn rule_text(r: &RuleInfo) -> String {
    let sel = match (r.src, r.dst) {
        (Some(a), _) => format!("from {a}/{}", r.src_len),
        (_, Some(a)) => format!("to {a}/{}", r.dst_len),
        _ => "from all".into(),
    };
    format!("{}: {sel} lookup {}", r.priority, r.table)
}

impl fmt::Display for Change {
    /// As the log shows it: `add rule 10000: from 10.2.0.2/32 lookup 1003`.
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let verb = if self.is_add() { "add" } else { "delete" };
        match self {
            Change::AddRoute(r) | Change::DelRoute(r) => {
                write!(f, "{verb} {}", route_text(r))
            }
            Change::AddRule(r) | Change::DelRule(r) => write!(f, "{verb} rule {}", rule_text(r)),
        }
    }
}

/// A route as the log shows it:
/// `route default via 10.2.0.1 dev #3 table 1003 metric 0`.
pub fn route_text(r: &RouteInfo) -> String {
    let mut s = match r.dst {
        Some(d) => format!("route {d}/{}", r.dst_len),
        None => "route default".to_string(),
    };
    if let Some(g) = r.gateway {
        s += &format!(" via {g}");
    }
    s + &format!(" dev #{} table {} metric {}", r.oif, r.table, r.priority)
}

/// What tells two routes apart for netevd: the fields it sets.
pub type RouteKey = (u8, u32, Option<IpAddr>, u8, u32, u32, Option<IpAddr>);
pub type RuleKey = (u8, u32, u32, Option<IpAddr>, u8, Option<IpAddr>, u8);

pub fn route_key(r: &RouteInfo) -> RouteKey {
    (
        r.family, r.table, r.dst, r.dst_len, r.priority, r.oif, r.gateway,
    )
}

pub fn rule_key(r: &RuleInfo) -> RuleKey {
    (
        r.family, r.priority, r.table, r.src, r.src_len, r.dst, r.dst_len,
    )
}

/// The entry a change is about, whatever the direction: at most one
/// request per key is in flight. Rules order before routes.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Key {
    Rule(RuleKey),
    Route(RouteKey),
}

impl Change {
    pub fn key(&self) -> Key {
        match self {
            Change::AddRoute(r) | Change::DelRoute(r) => Key::Route(route_key(r)),
            Change::AddRule(r) | Change::DelRule(r) => Key::Rule(rule_key(r)),
        }
    }

    pub fn is_add(&self) -> bool {
        matches!(self, Change::AddRoute(_) | Change::AddRule(_))
    }

    /// The order changes go out in: deletions first (a default route whose
    /// gateway changed must go before its successor comes), then rules,
    /// connected routes, default routes (a gateway must be reachable when
    /// its default route goes in).
    pub fn rank(&self) -> u8 {
        match self {
            Change::DelRule(_) => 0,
            Change::DelRoute(_) => 1,
            Change::AddRule(_) => 2,
            Change::AddRoute(r) if r.dst.is_some() => 3,
            Change::AddRoute(_) => 4,
        }
    }
}
