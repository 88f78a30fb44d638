//! Policy routing for multi-homed hosts: what netevd wants in the kernel
//! for each interface of `routing.policy_rules`, and the changes that get
//! the kernel there.
//!
//! For an interface with index `i` and table `T` (its own, or
//! `table_base + i`): rules `from <addr> lookup T` and `to <addr> lookup T`
//! for each global address, IPv4 and IPv6; in `T` the connected route of
//! each address and a default route via the interface's gateway. The
//! gateway is learnt from a default route through the interface in a table
//! netevd does not own, so address first or gateway first ends the same.
//! Everything planned carries `RTPROT_NETEVD`; only entries with it are
//! ever deleted.
//!
//! Pure: the model in, a plan and a change list out.

use std::collections::{BTreeSet, HashSet};
use std::fmt;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::IpAddr;

use super::model::Core;
use super::types::*;

/// IPv6 routes without a metric get 1024 from the kernel; say it, so what
/// the kernel reports back equals the plan.
const IP6_RT_PRIO_USER: u32 = 1024;
const FR_ACT_TO_TBL: u8 = 1;
const RTN_UNICAST: u8 = 1;

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

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkPlan {
    pub index: u32,
    pub name: String,
    pub table: u32,
    pub gateways: Vec<IpAddr>,
    pub rules: Vec<RuleInfo>,
    /// Connected routes first: a gateway must be reachable when its default
    /// route goes in.
    pub routes: Vec<RouteInfo>,
}

impl LinkPlan {
    /// Changes whenever anything planned for the link changes.
    pub fn fingerprint(&self) -> u64 {
        let mut h = DefaultHasher::new();
        (self.table, &self.rules, &self.routes).hash(&mut h);
        h.finish()
    }

    /// The rules as hooks see them.
    pub fn rule_strings(&self) -> Vec<String> {
        self.rules.iter().map(rule_text).collect()
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub links: Vec<LinkPlan>,
    /// Interfaces that cannot be planned, with why (a table collision).
    pub errors: Vec<String>,
}

impl Plan {
    pub fn link(&self, index: u32) -> Option<&LinkPlan> {
        self.links.iter().find(|l| l.index == index)
    }
}

fn network(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(a) => {
            let m = if prefix == 0 {
                0
            } else {
                u32::MAX << (32 - prefix.min(32))
            };
            IpAddr::from((u32::from(a) & m).to_be_bytes())
        }
        IpAddr::V6(a) => {
            let m = if prefix == 0 {
                0
            } else {
                u128::MAX << (128 - prefix.min(128))
            };
            IpAddr::from((u128::from(a) & m).to_be_bytes())
        }
    }
}

fn route(family: u8, table: u32, oif: u32) -> RouteInfo {
    RouteInfo {
        family,
        table,
        priority: if family == 10 { IP6_RT_PRIO_USER } else { 0 },
        protocol: RTPROT_NETEVD,
        kind: RTN_UNICAST,
        oif,
        ..RouteInfo::table_start(family, table)
    }
}

fn rule(ip: IpAddr, table: u32, priority: u32, from: bool) -> RuleInfo {
    let (family, len) = if ip.is_ipv4() { (2, 32) } else { (10, 128) };
    RuleInfo {
        family,
        priority,
        table,
        action: FR_ACT_TO_TBL,
        src: from.then_some(ip),
        src_len: if from { len } else { 0 },
        dst: (!from).then_some(ip),
        dst_len: if from { 0 } else { len },
        tos: 0,
        fwmark: 0,
        fwmask: 0,
        iif: Vec::new(),
        oif: Vec::new(),
        protocol: RTPROT_NETEVD,
        extra: Vec::new(),
    }
}

pub fn plan(s: &Settings, core: &Core) -> Plan {
    let mut p = Plan::default();
    // Resolve links and tables first: the gateway search must skip every
    // table netevd owns.
    let mut found: Vec<(&Iface, u32, u32)> = Vec::new();
    for iface in &s.ifaces {
        let Some(link) = core.links().find(|l| l.info.name == iface.name.as_bytes()) else {
            continue; // picked up when it appears
        };
        let index = link.info.index;
        let table = iface.table.unwrap_or(s.table_base.saturating_add(index));
        if let Some((other, _, _)) = found.iter().find(|(_, _, t)| *t == table) {
            p.errors.push(format!(
                "{}: table {table} is already {}'s; no policy routing for {}",
                iface.name, other.name, iface.name
            ));
            continue;
        }
        found.push((iface, index, table));
    }
    let owned: HashSet<u32> = found.iter().map(|f| f.2).collect();
    for (iface, index, table) in found {
        let link = core.links().find(|l| l.info.index == index).unwrap();
        let from_pri = iface.from_priority.unwrap_or(s.from_priority);
        let to_pri = iface.to_priority.unwrap_or(s.to_priority);
        let mut lp = LinkPlan {
            index,
            name: iface.name.clone(),
            table,
            gateways: Vec::new(),
            rules: Vec::new(),
            routes: Vec::new(),
        };
        let up = link.info.flags & IFF_UP != 0;
        let addrs: Vec<&AddrInfo> = link
            .addrs
            .values()
            .filter(|a| a.usable() && a.scope == RT_SCOPE_UNIVERSE)
            .collect();
        for a in &addrs {
            lp.rules.push(rule(a.ip, table, from_pri, true));
            lp.rules.push(rule(a.ip, table, to_pri, false));
            let max = if a.ip.is_ipv4() { 32 } else { 128 };
            if up && a.prefix < max {
                let family = if a.ip.is_ipv4() { 2 } else { 10 };
                let mut r = route(family, table, index);
                r.dst = Some(network(a.ip, a.prefix));
                r.dst_len = a.prefix;
                if family == 2 {
                    r.scope = RT_SCOPE_LINK;
                    r.prefsrc = Some(a.ip);
                }
                lp.routes.push(r);
            }
        }
        for family in [2u8, 10] {
            let gw = core
                .routes()
                .defaults()
                .filter(|r| {
                    r.family == family
                        && r.oif == index
                        && r.protocol != RTPROT_NETEVD
                        && !owned.contains(&r.table)
                        && r.gateway.is_some()
                })
                .min_by_key(|r| (r.priority, r.table != RT_TABLE_MAIN))
                .and_then(|r| r.gateway);
            if let Some(gw) = gw {
                lp.gateways.push(gw);
                if up {
                    let mut r = route(family, table, index);
                    r.gateway = Some(gw);
                    lp.routes.push(r);
                }
            }
        }
        lp.rules.sort();
        lp.rules.dedup();
        lp.routes.dedup();
        p.links.push(lp);
    }
    p
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
        let verb = match self {
            Change::AddRoute(_) | Change::AddRule(_) => "add",
            Change::DelRoute(_) | Change::DelRule(_) => "delete",
        };
        match self {
            Change::AddRoute(r) | Change::DelRoute(r) => {
                match r.dst {
                    Some(d) => write!(f, "{verb} route {d}/{}", r.dst_len)?,
                    None => write!(f, "{verb} route default")?,
                }
                if let Some(g) = r.gateway {
                    write!(f, " via {g}")?;
                }
                write!(f, " dev #{} table {} metric {}", r.oif, r.table, r.priority)
            }
            Change::AddRule(r) | Change::DelRule(r) => write!(f, "{verb} rule {}", rule_text(r)),
        }
    }
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

impl Change {
    /// The entry a change is about, as a comparable key.
    pub fn key(&self) -> (bool, Option<RouteKey>, Option<RuleKey>) {
        match self {
            Change::AddRoute(r) => (true, Some(route_key(r)), None),
            Change::DelRoute(r) => (false, Some(route_key(r)), None),
            Change::AddRule(r) => (true, None, Some(rule_key(r))),
            Change::DelRule(r) => (false, None, Some(rule_key(r))),
        }
    }
}

/// The changes from the kernel's state (as the model has it) to the plan:
/// deletions of netevd's own stale entries first (a default route whose
/// gateway changed must go before its successor comes), then additions,
/// connected routes before default routes.
pub fn diff(plan: &Plan, core: &Core) -> Vec<Change> {
    let want_routes: BTreeSet<RouteKey> = plan
        .links
        .iter()
        .flat_map(|l| l.routes.iter().map(route_key))
        .collect();
    let want_rules: BTreeSet<RuleKey> = plan
        .links
        .iter()
        .flat_map(|l| l.rules.iter().map(rule_key))
        .collect();
    let have_routes: BTreeSet<RouteKey> = core.routes().owned().map(route_key).collect();
    let have_rules: BTreeSet<RuleKey> = core
        .rules()
        .filter(|r| r.protocol == RTPROT_NETEVD)
        .map(rule_key)
        .collect();
    let mut out = Vec::new();
    let mut stale_rules: Vec<&RuleInfo> = core
        .rules()
        .filter(|r| r.protocol == RTPROT_NETEVD && !want_rules.contains(&rule_key(r)))
        .collect();
    stale_rules.sort();
    out.extend(stale_rules.into_iter().cloned().map(Change::DelRule));
    out.extend(
        core.routes()
            .owned()
            .filter(|r| !want_routes.contains(&route_key(r)))
            .cloned()
            .map(Change::DelRoute),
    );
    for l in &plan.links {
        for r in &l.rules {
            if !have_rules.contains(&rule_key(r)) {
                out.push(Change::AddRule(r.clone()));
            }
        }
        for r in &l.routes {
            if !have_routes.contains(&route_key(r)) {
                out.push(Change::AddRoute(r.clone()));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::model::Settings as CoreSettings;

    const UP: u32 = IFF_UP | IFF_RUNNING | IFF_LOWER_UP;

    fn link(index: u32, name: &str) -> Input {
        Input::NewLink(LinkInfo {
            index,
            name: name.as_bytes().to_vec(),
            flags: UP,
            operstate: IF_OPER_UP,
            mtu: 1500,
            kind: None,
            mac: vec![],
        })
    }

    fn addr(index: u32, ip: &str, prefix: u8) -> Input {
        Input::NewAddr(AddrInfo {
            index,
            ip: ip.parse().unwrap(),
            prefix,
            scope: 0,
            flags: 0x80,
        })
    }

    fn default_via(oif: u32, gw: &str, table: u32, metric: u32) -> RouteInfo {
        let ip: IpAddr = gw.parse().unwrap();
        RouteInfo {
            gateway: Some(ip),
            oif,
            priority: metric,
            protocol: 16,
            kind: 1,
            ..RouteInfo::table_start(if ip.is_ipv4() { 2 } else { 10 }, table)
        }
    }

    fn core_with(inputs: Vec<Input>) -> Core {
        let mut c = Core::new(CoreSettings::default());
        let mut out = Vec::new();
        c.apply(Input::ResyncBegin, 0, &mut out);
        for i in inputs {
            c.apply(i, 0, &mut out);
        }
        c.apply(Input::ResyncEnd, 0, &mut out);
        c
    }

    fn settings(names: &[&str]) -> Settings {
        Settings {
            ifaces: names
                .iter()
                .map(|n| Iface {
                    name: n.to_string(),
                    table: None,
                    from_priority: None,
                    to_priority: None,
                })
                .collect(),
            ..Settings::default()
        }
    }

    /// Applies the changes as the kernel would report them back.
    fn apply(c: &mut Core, changes: &[Change]) {
        let mut out = Vec::new();
        for ch in changes {
            let i = match ch.clone() {
                Change::AddRoute(route) => Input::NewRoute {
                    route,
                    replace: false,
                },
                Change::DelRoute(r) => Input::DelRoute(r),
                Change::AddRule(r) => Input::NewRule(r),
                Change::DelRule(r) => Input::DelRule(r),
            };
            c.apply(i, 0, &mut out);
        }
    }

    fn describe(ch: &[Change]) -> Vec<String> {
        ch.iter().map(Change::to_string).collect()
    }

    #[test]
    fn address_then_gateway_and_gateway_then_address_end_the_same() {
        let s = settings(&["wan1"]);
        let gw = default_via(3, "10.2.0.1", 254, 200);
        let a = core_with(vec![link(3, "wan1"), addr(3, "10.2.0.2", 24)]);
        let first = diff(&plan(&s, &a), &a);
        assert_eq!(
            describe(&first),
            vec![
                "add rule 10000: from 10.2.0.2/32 lookup 1003",
                "add rule 10001: to 10.2.0.2/32 lookup 1003",
                "add route 10.2.0.0/24 dev #3 table 1003 metric 0",
            ]
        );
        let mut a = a;
        apply(&mut a, &first);
        let mut out = Vec::new();
        a.apply(
            Input::NewRoute {
                route: gw.clone(),
                replace: false,
            },
            0,
            &mut out,
        );
        let second = diff(&plan(&s, &a), &a);
        assert_eq!(
            describe(&second),
            vec!["add route default via 10.2.0.1 dev #3 table 1003 metric 0"]
        );
        apply(&mut a, &second);
        assert!(diff(&plan(&s, &a), &a).is_empty(), "converged");

        // the other order
        let mut b = core_with(vec![
            link(3, "wan1"),
            Input::NewRoute {
                route: gw,
                replace: false,
            },
        ]);
        let ch = diff(&plan(&s, &b), &b);
        apply(&mut b, &ch);
        b.apply(addr(3, "10.2.0.2", 24), 0, &mut out);
        let ch = diff(&plan(&s, &b), &b);
        apply(&mut b, &ch);
        assert!(diff(&plan(&s, &b), &b).is_empty());
        let owned = |c: &Core| {
            (
                c.rules()
                    .filter(|r| r.protocol == RTPROT_NETEVD)
                    .map(rule_key)
                    .collect::<BTreeSet<_>>(),
                c.routes().owned().map(route_key).collect::<BTreeSet<_>>(),
            )
        };
        assert_eq!(owned(&a), owned(&b));
    }

    #[test]
    fn ipv6_and_removal() {
        let s = settings(&["wan1"]);
        let mut c = core_with(vec![
            link(3, "wan1"),
            addr(3, "2001:db8:2::2", 64),
            Input::NewAddr(AddrInfo {
                index: 3,
                ip: "fe80::2".parse().unwrap(),
                prefix: 64,
                scope: RT_SCOPE_LINK,
                flags: 0x80,
            }),
            Input::NewRoute {
                route: default_via(3, "fe80::1", 254, 1024),
                replace: false,
            },
        ]);
        let ch = diff(&plan(&s, &c), &c);
        assert_eq!(
            describe(&ch),
            vec![
                "add rule 10000: from 2001:db8:2::2/128 lookup 1003",
                "add rule 10001: to 2001:db8:2::2/128 lookup 1003",
                "add route 2001:db8:2::/64 dev #3 table 1003 metric 1024",
                "add route default via fe80::1 dev #3 table 1003 metric 1024",
            ]
        );
        apply(&mut c, &ch);
        // the address goes: its rules and connected route go; the default
        // route stays while the gateway does
        let mut out = Vec::new();
        c.apply(
            Input::DelAddr(AddrInfo {
                index: 3,
                ip: "2001:db8:2::2".parse().unwrap(),
                prefix: 64,
                scope: 0,
                flags: 0x80,
            }),
            0,
            &mut out,
        );
        let ch = diff(&plan(&s, &c), &c);
        assert_eq!(
            describe(&ch),
            vec![
                "delete rule 10000: from 2001:db8:2::2/128 lookup 1003",
                "delete rule 10001: to 2001:db8:2::2/128 lookup 1003",
                "delete route 2001:db8:2::/64 dev #3 table 1003 metric 1024",
            ]
        );
        apply(&mut c, &ch);
        // dropped from the configuration: everything of its goes
        let ch = diff(&plan(&settings(&[]), &c), &c);
        assert_eq!(
            describe(&ch),
            vec!["delete route default via fe80::1 dev #3 table 1003 metric 1024"]
        );
    }

    #[test]
    fn foreign_entries_are_never_touched_and_own_stale_ones_go() {
        let s = settings(&["wan1"]);
        let mut foreign = rule("10.2.0.2".parse().unwrap(), 1003, 10000, true);
        foreign.protocol = 4; // someone else's, identical otherwise
        let stale = rule("10.9.9.9".parse().unwrap(), 1003, 10000, true);
        let c = core_with(vec![
            link(3, "wan1"),
            addr(3, "10.2.0.2", 24),
            Input::NewRule(foreign),
            Input::NewRule(stale),
        ]);
        let d = describe(&diff(&plan(&s, &c), &c));
        assert_eq!(d[0], "delete rule 10000: from 10.9.9.9/32 lookup 1003");
        assert!(
            d.iter().filter(|x| x.starts_with("del")).count() == 1,
            "{d:?}"
        );
        assert!(d.contains(&"add rule 10000: from 10.2.0.2/32 lookup 1003".to_string()));
    }

    #[test]
    fn tables_explicit_default_and_collisions() {
        let mut s = settings(&["wan1", "wan2"]);
        s.ifaces[1].table = Some(1003); // what wan1 gets by default
        let c = core_with(vec![link(3, "wan1"), link(4, "wan2")]);
        let p = plan(&s, &c);
        assert_eq!(p.links.len(), 1);
        assert_eq!(
            p.errors,
            vec!["wan2: table 1003 is already wan1's; no policy routing for wan2"]
        );
        s.ifaces[1].table = Some(2000);
        s.ifaces[1].from_priority = Some(500);
        let p = plan(&s, &c);
        assert_eq!(
            p.links.iter().map(|l| l.table).collect::<Vec<_>>(),
            vec![1003, 2000]
        );
        assert!(p.errors.is_empty());
        // a listed interface that does not exist yet is simply not planned
        let p = plan(&settings(&["wan9"]), &c);
        assert!(p.links.is_empty() && p.errors.is_empty());
        assert!(reserved_table(253) && reserved_table(0) && !reserved_table(1000));
        assert!(reserved_priority(32766) && !reserved_priority(10000));
    }

    #[test]
    fn gateway_from_lowest_metric_never_from_own_tables_and_down_links_get_no_routes() {
        let s = settings(&["wan1"]);
        let mut own = default_via(3, "10.2.0.99", 1003, 0);
        own.protocol = RTPROT_NETEVD;
        let c = core_with(vec![
            link(3, "wan1"),
            Input::NewRoute {
                route: default_via(3, "10.2.0.7", 50, 300),
                replace: false,
            },
            Input::NewRoute {
                route: default_via(3, "10.2.0.1", 254, 200),
                replace: false,
            },
            Input::NewRoute {
                route: own,
                replace: false,
            },
        ]);
        assert_eq!(
            plan(&s, &c).links[0].gateways,
            vec!["10.2.0.1".parse::<IpAddr>().unwrap()]
        );
        let mut down = core_with(vec![link(3, "wan1"), addr(3, "10.2.0.2", 24)]);
        let mut out = Vec::new();
        down.apply(
            Input::NewLink(LinkInfo {
                index: 3,
                name: b"wan1".to_vec(),
                flags: 0,
                operstate: 2,
                mtu: 1500,
                kind: None,
                mac: vec![],
            }),
            0,
            &mut out,
        );
        let p = plan(&s, &down);
        assert!(p.links[0].routes.is_empty());
        assert_eq!(p.links[0].rules.len(), 2);
        assert_eq!(
            p.links[0].rule_strings(),
            vec![
                "10000: from 10.2.0.2/32 lookup 1003",
                "10001: to 10.2.0.2/32 lookup 1003"
            ]
        );
    }

    #[test]
    fn networks() {
        assert_eq!(
            network("10.2.0.77".parse().unwrap(), 24),
            "10.2.0.0".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            network("2001:db8::1".parse().unwrap(), 64),
            "2001:db8::".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            network("10.2.0.77".parse().unwrap(), 0),
            "0.0.0.0".parse::<IpAddr>().unwrap()
        );
    }
}
