//! The planner: what netevd wants in the kernel for each interface of
//! `routing.policy_rules`, and the full diff from the kernel's state (as
//! the model has it) to that plan.
//!
//! For an interface with index `i` and table `T` (its own, or
//! `table_base + i`): rules `from <addr> lookup T` and `to <addr> lookup T`
//! for each global address, IPv4 and IPv6; in `T` the connected route of
//! each address and a default route via the interface's gateway. The
//! gateway is learnt from a default route through the interface in a table
//! netevd does not own, so address first or gateway first ends the same;
//! failing that, from the router of the interface's DHCP lease.
//!
//! Cost: a full plan and a diff are O(n log n) in the addresses, routes
//! and rules; one link's plan (`replan_link`) is O(its addresses + the
//! default routes), and finding a link is O(1), by index (`Plan::link`)
//! or by name (the mirror's index); nothing here is computed per change (a per-change fingerprint
//! of the link's plan made one reconcile quadratic). An address added or
//! removed changes a link's plan in O(log n) (`insert_addr`,
//! `remove_addr`), so a burst of addresses does not replan per address;
//! the rules' text for hooks is made once per rule.
//!
//! Pure: the model in, a plan and a change list out.

use crate::core::fx::FxMap;
use std::collections::{BTreeMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::IpAddr;

use super::super::model::{Core, Link};
use super::super::types::*;
use super::{route_key, rule_key, rule_text, Change, Iface, Key, Settings};

/// IPv6 routes without a metric get 1024 from the kernel; say it, so what
/// the kernel reports back equals the plan.
const IP6_RT_PRIO_USER: u32 = 1024;
const FR_ACT_TO_TBL: u8 = 1;
const RTN_UNICAST: u8 = 1;

/// What an entry is planned for: an address of the link, or its gateway
/// of one family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Source {
    Addr(IpAddr, u8),
    Gateway(u8),
}

/// A planned rule: how many sources plan it (one IP with two prefixes
/// plans its rules twice), and its text for hooks, made once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Planned {
    pub refs: u32,
    pub text: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkPlan {
    pub index: u32,
    pub name: String,
    pub table: u32,
    pub from_priority: u32,
    pub to_priority: u32,
    pub up: bool,
    pub gateways: Vec<IpAddr>,
    /// The addresses entries are planned for: usable and global.
    pub addrs: BTreeMap<(IpAddr, u8), AddrInfo>,
    pub rules: BTreeMap<RuleInfo, Planned>,
    /// Each with the number of sources planning it.
    pub routes: BTreeMap<RouteInfo, u32>,
    /// The rules' texts as one shared list, made when first asked for
    /// after the rules changed: every event of the link shares it.
    texts: TextCache,
}

/// A cache that takes no part in a plan's equality.
#[derive(Clone, Debug, Default)]
struct TextCache(std::cell::OnceCell<std::rc::Rc<[String]>>);

impl PartialEq for TextCache {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for TextCache {}

/// Whether an address gets rules and a connected route.
pub fn plans_for(a: &AddrInfo) -> bool {
    a.usable() && a.scope == RT_SCOPE_UNIVERSE
}

impl LinkPlan {
    /// Changes whenever anything planned for the link changes.
    pub fn fingerprint(&self) -> u64 {
        let mut h = DefaultHasher::new();
        self.table.hash(&mut h);
        self.rules.keys().for_each(|r| r.hash(&mut h));
        self.routes.keys().for_each(|r| r.hash(&mut h));
        h.finish()
    }

    /// The rules as hooks see them, shared.
    pub fn rule_strings(&self) -> std::rc::Rc<[String]> {
        self.texts
            .0
            .get_or_init(|| self.rules.values().map(|p| p.text.clone()).collect())
            .clone()
    }

    /// What an address plans: its two rules, and while the link is up its
    /// connected route (none for a /32 or /128).
    pub fn addr_changes(&self, a: &AddrInfo) -> Vec<Change> {
        let mut v = vec![
            Change::AddRule(rule(a.ip, self.table, self.from_priority, true)),
            Change::AddRule(rule(a.ip, self.table, self.to_priority, false)),
        ];
        let max = if a.ip.is_ipv4() { 32 } else { 128 };
        if self.up && a.prefix < max {
            let family = if a.ip.is_ipv4() { 2 } else { 10 };
            let mut r = route(family, self.table, self.index);
            r.dst = Some(network(a.ip, a.prefix));
            r.dst_len = a.prefix;
            if family == 2 {
                r.scope = RT_SCOPE_LINK;
                r.prefsrc = Some(a.ip);
            }
            v.push(Change::AddRoute(r));
        }
        v
    }

    fn count(&mut self, ch: &Change, add: bool) {
        if matches!(ch, Change::AddRule(_)) {
            self.texts = TextCache::default();
        }
        match ch {
            Change::AddRule(r) if add => {
                self.rules
                    .entry(r.clone())
                    .or_insert_with(|| Planned {
                        refs: 0,
                        text: rule_text(r),
                    })
                    .refs += 1;
            }
            Change::AddRule(r) => {
                if let Some(p) = self.rules.get_mut(r) {
                    p.refs -= 1;
                    if p.refs == 0 {
                        self.rules.remove(r);
                    }
                }
            }
            Change::AddRoute(r) if add => *self.routes.entry(r.clone()).or_default() += 1,
            Change::AddRoute(r) => {
                if let Some(n) = self.routes.get_mut(r) {
                    *n -= 1;
                    if *n == 0 {
                        self.routes.remove(r);
                    }
                }
            }
            _ => {}
        }
    }

    /// Plans for a new or changed address; returns what it plans.
    /// O(log n).
    pub fn insert_addr(&mut self, a: AddrInfo) -> Vec<Change> {
        let v = self.addr_changes(&a);
        v.iter().for_each(|ch| self.count(ch, true));
        self.addrs.insert((a.ip, a.prefix), a);
        v
    }

    /// Takes back what an address planned, and returns it. O(log n).
    pub fn remove_addr(&mut self, ip: IpAddr, prefix: u8) -> Vec<Change> {
        let Some(a) = self.addrs.remove(&(ip, prefix)) else {
            return Vec::new();
        };
        let v = self.addr_changes(&a);
        v.iter().for_each(|ch| self.count(ch, false));
        v
    }

    /// Every planned change with its source.
    pub fn changes(&self) -> Vec<(Source, Change)> {
        let mut v = Vec::with_capacity(self.rules.len() + self.routes.len());
        for a in self.addrs.values() {
            let src = Source::Addr(a.ip, a.prefix);
            v.extend(self.addr_changes(a).into_iter().map(|c| (src, c)));
        }
        v.extend(self.gateway_changes());
        v
    }

    /// The default routes, while the link is up.
    pub fn gateway_changes(&self) -> Vec<(Source, Change)> {
        if !self.up {
            return Vec::new();
        }
        self.gateways
            .iter()
            .map(|gw| {
                let family = if gw.is_ipv4() { 2 } else { 10 };
                let mut r = route(family, self.table, self.index);
                r.gateway = Some(*gw);
                (Source::Gateway(family), Change::AddRoute(r))
            })
            .collect()
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// In the order of `routing.policy_rules`.
    pub links: Vec<LinkPlan>,
    /// Interfaces that cannot be planned, with why (a table collision).
    pub errors: Vec<String>,
    /// Position in `links` by ifindex: finding a link is O(1).
    at: FxMap<u32, usize>,
}

impl Plan {
    pub fn link(&self, index: u32) -> Option<&LinkPlan> {
        self.at.get(&index).map(|&i| &self.links[i])
    }

    pub fn link_mut(&mut self, index: u32) -> Option<&mut LinkPlan> {
        self.at.get(&index).map(|&i| &mut self.links[i])
    }

    fn push(&mut self, lp: LinkPlan) {
        self.at.insert(lp.index, self.links.len());
        self.links.push(lp);
    }

    /// The tables the plan owns.
    pub fn tables(&self) -> HashSet<u32> {
        self.links.iter().map(|l| l.table).collect()
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

/// With no default route through the link (a second uplink's
/// dhclient-script cannot add one beside the first's), its DHCP lease's
/// router is the gateway, while the link holds the leased address
/// (dhclient-script removes it when the lease runs out, and nothing
/// rewrites the lease file then).
#[cfg(feature = "dhclient")]
fn lease_gateway(core: &Core, link: &Link, family: u8) -> Option<IpAddr> {
    match (family, core.leases().gateway(&link.info.name)) {
        (2, Some((ip, gw))) if link.addrs.values().any(|a| a.ip == ip && a.usable()) => {
            Some(IpAddr::V4(gw))
        }
        _ => None,
    }
}

/// Built without the lease watcher: gateways come from the kernel only.
#[cfg(not(feature = "dhclient"))]
fn lease_gateway(_: &Core, _: &Link, _: u8) -> Option<IpAddr> {
    None
}

pub fn plan(s: &Settings, core: &Core) -> Plan {
    let mut p = Plan::default();
    // Resolve links and tables first: the gateway search must skip every
    // table netevd owns.
    let mut found: Vec<(&Iface, u32, u32)> = Vec::new();
    for iface in &s.ifaces {
        let Some(link) = core.link_by_name(iface.name.as_bytes()) else {
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
        if let Some(lp) = plan_link(s, core, iface, index, table, &owned) {
            p.push(lp);
        }
    }
    p
}

/// One link's plan: its rules and connected routes for each address, and
/// its default routes via the gateways learnt from tables outside `owned`.
/// O(addresses + default routes); None when the link is gone.
pub fn plan_link(
    s: &Settings,
    core: &Core,
    iface: &Iface,
    index: u32,
    table: u32,
    owned: &HashSet<u32>,
) -> Option<LinkPlan> {
    let link = core.link(index)?;
    let mut lp = LinkPlan {
        index,
        name: iface.name.clone(),
        table,
        from_priority: iface.from_priority.unwrap_or(s.from_priority),
        to_priority: iface.to_priority.unwrap_or(s.to_priority),
        up: link.info.flags & IFF_UP != 0,
        gateways: Vec::new(),
        addrs: BTreeMap::new(),
        rules: BTreeMap::new(),
        routes: BTreeMap::new(),
        texts: TextCache::default(),
    };
    for a in link.addrs.values().filter(|a| plans_for(a)) {
        lp.insert_addr(a.clone());
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
            .and_then(|r| r.gateway)
            .or_else(|| lease_gateway(core, link, family));
        if let Some(gw) = gw {
            lp.gateways.push(gw);
            if lp.up {
                let mut r = route(family, table, index);
                r.gateway = Some(gw);
                lp.count(&Change::AddRoute(r), true);
            }
        }
    }
    Some(lp)
}

/// Replans the link at `index` alone, in place. Returns its old plan, or
/// None when it is not planned or can no longer be (it went, or was
/// renamed: the caller replans in full).
pub fn replan_link(p: &mut Plan, s: &Settings, core: &Core, index: u32) -> Option<LinkPlan> {
    let &at = p.at.get(&index)?;
    let old = &p.links[at];
    let iface = s.ifaces.iter().find(|i| i.name == old.name)?;
    if core.link(index)?.info.name != old.name.as_bytes() {
        return None;
    }
    let owned = p.tables();
    let new = plan_link(s, core, iface, index, old.table, &owned)?;
    Some(std::mem::replace(&mut p.links[at], new))
}

/// A planned entry: the link it is planned for, and each source's version
/// of it (two addresses in one subnet plan one connected route with
/// different preferred sources); the first source's is the one sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Want {
    pub link: u32,
    pub by: BTreeMap<Source, Change>,
}

impl Want {
    pub fn change(&self) -> &Change {
        // Never empty: `unwant` drops an entry with its last source.
        self.by
            .values()
            .next()
            .expect("a wanted entry has a source")
    }
}

/// What the plan wants, by key.
pub type Wanted = BTreeMap<Key, Want>;

pub fn want(w: &mut Wanted, link: u32, src: Source, ch: Change) -> Key {
    let k = ch.key();
    w.entry(k.clone())
        .or_insert_with(|| Want {
            link,
            by: BTreeMap::new(),
        })
        .by
        .insert(src, ch);
    k
}

pub fn unwant(w: &mut Wanted, src: Source, ch: &Change) -> Key {
    let k = ch.key();
    if let Some(e) = w.get_mut(&k) {
        e.by.remove(&src);
        if e.by.is_empty() {
            w.remove(&k);
        }
    }
    k
}

pub fn wanted(plan: &Plan) -> Wanted {
    let mut w = Wanted::new();
    for l in &plan.links {
        for (src, ch) in l.changes() {
            want(&mut w, l.index, src, ch);
        }
    }
    w
}

/// netevd's own entries in the kernel, by key: the change that deletes
/// each as the kernel has it.
pub type Have = BTreeMap<Key, Change>;

pub fn have(core: &Core) -> Have {
    let mut h = Have::new();
    for r in core.rules().filter(|r| r.protocol == RTPROT_NETEVD) {
        h.insert(Key::Rule(rule_key(r)), Change::DelRule(r.clone()));
    }
    for r in core.routes().owned() {
        h.insert(Key::Route(route_key(r)), Change::DelRoute(r.clone()));
    }
    h
}

/// The changes from `have` to `want`, in the order of `Change::rank`:
/// deletions of netevd's own stale entries, then additions. Each addition
/// comes with the link it is for.
pub fn diff_keyed(want: &Wanted, have: &Have) -> Vec<(Change, Option<u32>)> {
    let mut out: Vec<(Change, Option<u32>)> = have
        .iter()
        .filter(|(k, _)| !want.contains_key(k))
        .map(|(_, del)| (del.clone(), None))
        .collect();
    out.extend(
        want.iter()
            .filter(|(k, _)| !have.contains_key(k))
            .map(|(_, w)| (w.change().clone(), Some(w.link))),
    );
    // Stable: within a rank the keys' order stays.
    out.sort_by_key(|(ch, _)| ch.rank());
    out
}

/// The changes from the kernel's state (as the model has it) to the plan.
#[cfg(test)]
pub fn diff(plan: &Plan, core: &Core) -> Vec<Change> {
    diff_keyed(&wanted(plan), &have(core))
        .into_iter()
        .map(|(c, _)| c)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::{reserved_priority, reserved_table};
    use super::*;
    use crate::core::model::Settings as CoreSettings;
    use std::collections::BTreeSet;

    const UP: u32 = IFF_UP | IFF_RUNNING | IFF_LOWER_UP;

    fn link(index: u32, name: &str) -> Input {
        Input::NewLink(LinkInfo {
            index,
            name: IfName::new(name.as_bytes()).unwrap(),
            flags: UP,
            operstate: IF_OPER_UP,
            mtu: 1500,
            kind: None,
            mac: HwAddr::default(),
        })
    }

    fn addr(index: u32, ip: &str, prefix: u8) -> Input {
        Input::NewAddr(AddrInfo {
            index,
            ip: ip.parse().unwrap(),
            prefix,
            scope: 0,
            flags: 0x80,
            valid_lft: u32::MAX,
            preferred_lft: u32::MAX,
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
                valid_lft: u32::MAX,
                preferred_lft: u32::MAX,
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
                valid_lft: u32::MAX,
                preferred_lft: u32::MAX,
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
                name: IfName::new(b"wan1").unwrap(),
                flags: 0,
                operstate: 2,
                mtu: 1500,
                kind: None,
                mac: HwAddr::default(),
            }),
            0,
            &mut out,
        );
        let p = plan(&s, &down);
        assert!(p.links[0].routes.is_empty());
        assert_eq!(p.links[0].rules.len(), 2);
        assert_eq!(
            &*p.links[0].rule_strings(),
            [
                "10000: from 10.2.0.2/32 lookup 1003",
                "10001: to 10.2.0.2/32 lookup 1003"
            ]
        );
    }

    #[test]
    fn sources_are_counted_and_the_first_source_is_sent() {
        let s = settings(&["wan1"]);
        let c = core_with(vec![link(3, "wan1"), addr(3, "10.2.0.5", 24)]);
        let mut p = plan(&s, &c);
        let mut w = wanted(&p);
        let lp = &mut p.links[0];
        let a = |ip: &str, prefix| AddrInfo {
            index: 3,
            ip: ip.parse().unwrap(),
            prefix,
            scope: 0,
            flags: 0x80,
            valid_lft: u32::MAX,
            preferred_lft: u32::MAX,
        };
        // one IP with two prefixes: its rules are planned twice, kept once
        let src16 = Source::Addr("10.2.0.5".parse().unwrap(), 16);
        for ch in lp.insert_addr(a("10.2.0.5", 16)) {
            want(&mut w, 3, src16, ch);
        }
        assert_eq!(lp.rules.len(), 2);
        assert_eq!(
            lp.rules.values().map(|p| p.refs).collect::<Vec<_>>(),
            vec![2, 2]
        );
        for ch in lp.remove_addr("10.2.0.5".parse().unwrap(), 16) {
            unwant(&mut w, src16, &ch);
        }
        assert_eq!(lp.rule_strings().len(), 2, "the /24 still plans them");
        assert_eq!(w, wanted(&p), "incremental equals planned from scratch");
        // two addresses in one subnet: one connected route, the first
        // address's preferred source
        let lp = &mut p.links[0];
        let src = Source::Addr("10.2.0.3".parse().unwrap(), 24);
        for ch in lp.insert_addr(a("10.2.0.3", 24)) {
            want(&mut w, 3, src, ch);
        }
        let conn = |w: &Wanted| {
            w.values()
                .find_map(|x| match x.change() {
                    Change::AddRoute(r) if r.dst.is_some() => r.prefsrc,
                    _ => None,
                })
                .unwrap()
        };
        assert_eq!(conn(&w), "10.2.0.3".parse::<IpAddr>().unwrap());
        assert_eq!(w, wanted(&p));
        for ch in p.links[0].remove_addr("10.2.0.3".parse().unwrap(), 24) {
            unwant(&mut w, src, &ch);
        }
        assert_eq!(conn(&w), "10.2.0.5".parse::<IpAddr>().unwrap());
        assert_eq!(w, wanted(&p));
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
