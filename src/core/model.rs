//! The model of the kernel's network state (links, addresses, routes,
//! rules) and the diff that turns changes into hook events.
//!
//! Fed with decoded kernel messages and a clock value by the caller; no I/O
//! and no clock reads here. After a dump bracketed by `ResyncBegin` and
//! `ResyncEnd` whatever the dump did not mention is gone, so a resync after
//! the kernel dropped messages (ENOBUFS) ends in the same state, and the
//! same last event per link, as the lost messages would have produced.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::IpAddr;

use super::event::{Event, Kind, Origin, RouteChange};
use super::glob;
use super::state::{address_class, derive, OperState};
use super::types::*;

#[derive(Clone, Debug, Default)]
pub struct Settings {
    /// `monitoring.interfaces`: glob patterns; empty means every link.
    pub interfaces: Vec<Vec<u8>>,
    /// `scripts.run_on_startup`.
    pub run_on_startup: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Published {
    state: OperState,
    name: Vec<u8>,
    addr_gen: u64,
}

#[derive(Clone, Debug)]
pub struct Link {
    pub info: LinkInfo,
    pub addrs: BTreeMap<(IpAddr, u8), AddrInfo>,
    n_routable: u32,
    n_degraded: u32,
    /// Bumped whenever the set of usable addresses changes.
    addr_gen: u64,
    published: Option<Published>,
}

impl Link {
    fn new(info: LinkInfo) -> Self {
        Link {
            info,
            addrs: BTreeMap::new(),
            n_routable: 0,
            n_degraded: 0,
            addr_gen: 0,
            published: None,
        }
    }

    pub fn state(&self) -> OperState {
        derive(
            self.info.flags,
            self.info.operstate,
            self.n_routable,
            self.n_degraded,
        )
    }

    pub fn usable_addrs(&self) -> Vec<AddrInfo> {
        self.addrs
            .values()
            .filter(|a| a.usable())
            .cloned()
            .collect()
    }

    fn count(&mut self, a: &AddrInfo, delta: i32) {
        let n = match address_class(a) {
            Some(true) => &mut self.n_routable,
            Some(false) => &mut self.n_degraded,
            None => return,
        };
        *n = n.wrapping_add_signed(delta);
    }
}

/// The routes, with an index of the default routes (policy routing learns
/// gateways from them) and lookups by table.
#[derive(Default)]
pub struct Routes {
    /// Ordered so that the routes one replaces sit next to each other.
    all: BTreeSet<RouteInfo>,
    defaults: BTreeSet<RouteInfo>,
    /// Routes marked as netevd's own, in whatever table.
    owned: BTreeSet<RouteInfo>,
}

impl Routes {
    fn insert(&mut self, r: RouteInfo) -> bool {
        if r.is_default() {
            self.defaults.insert(r.clone());
        }
        if r.protocol == RTPROT_NETEVD {
            self.owned.insert(r.clone());
        }
        self.all.insert(r)
    }

    fn remove(&mut self, r: &RouteInfo) -> bool {
        self.defaults.remove(r);
        self.owned.remove(r);
        self.all.remove(r)
    }

    fn retain(&mut self, f: impl Fn(&RouteInfo) -> bool) {
        self.all.retain(&f);
        self.defaults.retain(&f);
        self.owned.retain(f);
    }

    pub fn contains(&self, r: &RouteInfo) -> bool {
        self.all.contains(r)
    }

    pub fn iter(&self) -> impl Iterator<Item = &RouteInfo> {
        self.all.iter()
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.all.len()
    }

    /// Default routes of every table.
    pub fn defaults(&self) -> impl Iterator<Item = &RouteInfo> {
        self.defaults.iter()
    }

    /// The routes marked as netevd's own.
    pub fn owned(&self) -> impl Iterator<Item = &RouteInfo> {
        self.owned.iter()
    }
}

/// Keys seen during a dump.
#[derive(Default)]
struct Seen {
    links: HashSet<u32>,
    addrs: HashSet<(u32, IpAddr, u8)>,
    routes: HashSet<RouteInfo>,
    rules: HashSet<RuleInfo>,
}

pub struct Core {
    links: BTreeMap<u32, Link>,
    routes: Routes,
    rules: HashSet<RuleInfo>,
    settings: Settings,
    resync: Option<Seen>,
    /// The first full dump is done.
    synced: bool,
    /// Route changes found while a dump was in progress, last one per link.
    route_changes: HashMap<u32, RouteChange>,
    next_id: u64,
    /// Events emitted since start, for status reports.
    pub events_emitted: u64,
    pub resyncs: u64,
    /// Bumped by every change policy routing depends on.
    pub policy_gen: u64,
}

impl Core {
    pub fn new(settings: Settings) -> Self {
        Core {
            links: BTreeMap::new(),
            routes: Routes::default(),
            rules: HashSet::new(),
            settings,
            resync: None,
            synced: false,
            route_changes: HashMap::new(),
            next_id: 1,
            events_emitted: 0,
            resyncs: 0,
            policy_gen: 0,
        }
    }

    pub fn links(&self) -> impl Iterator<Item = &Link> {
        self.links.values()
    }

    #[cfg(test)]
    pub fn link(&self, index: u32) -> Option<&Link> {
        self.links.get(&index)
    }

    pub fn routes(&self) -> &Routes {
        &self.routes
    }

    pub fn rules(&self) -> impl Iterator<Item = &RuleInfo> {
        self.rules.iter()
    }

    /// True while a dump is being reconciled: the model is not yet the
    /// kernel's state.
    pub fn resyncing(&self) -> bool {
        self.resync.is_some()
    }

    pub fn synced(&self) -> bool {
        self.synced
    }

    pub fn monitored(&self, name: &[u8]) -> bool {
        glob::any(&self.settings.interfaces, name)
    }

    /// New settings (on reload). Links that stop being monitored are
    /// forgotten by the diff; newly monitored ones get an event for their
    /// current state.
    pub fn set_settings(&mut self, settings: Settings, now_ms: u64, out: &mut Vec<Event>) {
        self.settings = settings;
        if !self.synced {
            return;
        }
        let idx: Vec<u32> = self.links.keys().copied().collect();
        for i in idx {
            self.publish(i, Kind::State, now_ms, out);
        }
    }

    /// Applies one kernel message; events for hooks are appended to `out`.
    pub fn apply(&mut self, input: Input, now_ms: u64, out: &mut Vec<Event>) {
        // What policy routing is planned from: links, addresses, default
        // routes, its own routes, rules.
        let for_policy = match &input {
            Input::NewRoute { route, .. } | Input::DelRoute(route) => {
                route.is_default() || route.protocol == RTPROT_NETEVD
            }
            _ => true,
        };
        if for_policy {
            self.policy_gen += 1;
        }
        match input {
            Input::NewLink(info) => {
                let index = info.index;
                if let Some(seen) = &mut self.resync {
                    seen.links.insert(index);
                }
                let going_down = match self.links.get_mut(&index) {
                    Some(l) => {
                        let was_up = l.info.flags & IFF_UP != 0;
                        l.info = info;
                        was_up && l.info.flags & IFF_UP == 0
                    }
                    None => {
                        self.links.insert(index, Link::new(info));
                        false
                    }
                };
                self.publish(index, Kind::State, now_ms, out);
                if going_down {
                    // The kernel flushes a downed link's IPv4 routes without
                    // telling anyone (fib_sync_down_dev); IPv6 reports its
                    // own. Route hooks learn of the flush from us.
                    self.drop_routes(|r| r.oif == index && r.family == 2, now_ms, out);
                }
            }
            Input::DelLink(index) => {
                if let Some(seen) = &mut self.resync {
                    seen.links.remove(&index);
                }
                self.remove_link(index, now_ms, out);
            }
            Input::NewAddr(a) => {
                if let Some(seen) = &mut self.resync {
                    seen.addrs.insert((a.index, a.ip, a.prefix));
                }
                let index = a.index;
                let Some(link) = self.links.get_mut(&index) else {
                    log::debug!("address {} for unknown link {index}", a.ip);
                    return;
                };
                let usable = a.usable();
                let old = link.addrs.insert((a.ip, a.prefix), a.clone());
                let changed = match &old {
                    Some(o) => {
                        link.count(o, -1);
                        o.usable() != usable || (usable && o.scope != a.scope)
                    }
                    None => usable,
                };
                link.count(&a, 1);
                if changed {
                    link.addr_gen += 1;
                }
                self.publish(index, Kind::State, now_ms, out);
            }
            Input::DelAddr(a) => {
                if let Some(seen) = &mut self.resync {
                    seen.addrs.remove(&(a.index, a.ip, a.prefix));
                }
                let index = a.index;
                let Some(link) = self.links.get_mut(&index) else {
                    return;
                };
                if let Some(o) = link.addrs.remove(&(a.ip, a.prefix)) {
                    link.count(&o, -1);
                    if o.usable() {
                        link.addr_gen += 1;
                    }
                }
                let v4_left = link.addrs.keys().any(|(ip, _)| ip.is_ipv4());
                self.publish(index, Kind::State, now_ms, out);
                if a.ip.is_ipv4() {
                    // More silent flushes (fib_inetaddr_event): routes whose
                    // preferred source was this address, and every IPv4
                    // route of a link left without an IPv4 address.
                    let ip = Some(a.ip);
                    self.drop_routes(
                        |r| r.family == 2 && (r.prefsrc == ip || (!v4_left && r.oif == index)),
                        now_ms,
                        out,
                    );
                }
            }
            Input::NewRoute { route, replace } => {
                if route.family != 2 && route.family != 10 {
                    return;
                }
                if let Some(seen) = &mut self.resync {
                    seen.routes.insert(route.clone());
                }
                if replace {
                    self.remove_replaced(&route);
                }
                if !self.routes.contains(&route) {
                    self.routes.insert(route.clone());
                    self.route_event(RouteChange { added: true, route }, now_ms, out);
                }
            }
            Input::DelRoute(route) => {
                if let Some(seen) = &mut self.resync {
                    seen.routes.remove(&route);
                }
                if self.routes.remove(&route) {
                    self.route_event(
                        RouteChange {
                            added: false,
                            route,
                        },
                        now_ms,
                        out,
                    );
                }
            }
            Input::NewRule(rule) => {
                if let Some(seen) = &mut self.resync {
                    seen.rules.insert(rule.clone());
                }
                self.rules.insert(rule);
            }
            Input::DelRule(rule) => {
                if let Some(seen) = &mut self.resync {
                    seen.rules.remove(&rule);
                }
                self.rules.remove(&rule);
            }
            Input::ResyncBegin => {
                self.resync = Some(Seen::default());
            }
            Input::ResyncEnd => self.end_resync(now_ms, out),
        }
    }

    fn end_resync(&mut self, now_ms: u64, out: &mut Vec<Event>) {
        let Some(seen) = self.resync.take() else {
            return;
        };
        self.resyncs += 1;
        let gone: Vec<u32> = self
            .links
            .keys()
            .filter(|i| !seen.links.contains(i))
            .copied()
            .collect();
        for i in gone {
            self.remove_link(i, now_ms, out);
        }
        for (index, link) in self.links.iter_mut() {
            let stale: Vec<AddrInfo> = link
                .addrs
                .values()
                .filter(|a| !seen.addrs.contains(&(*index, a.ip, a.prefix)))
                .cloned()
                .collect();
            for a in stale {
                link.addrs.remove(&(a.ip, a.prefix));
                link.count(&a, -1);
                if a.usable() {
                    link.addr_gen += 1;
                }
            }
        }
        self.drop_routes(|r| !seen.routes.contains(r), now_ms, out);
        self.rules.retain(|r| seen.rules.contains(r));

        let first = !self.synced;
        self.synced = true;
        let idx: Vec<u32> = self.links.keys().copied().collect();
        for i in idx {
            if first && !self.settings.run_on_startup {
                if let Some(l) = self.links.get_mut(&i) {
                    l.published = Some(Published {
                        state: l.state(),
                        name: l.info.name.clone(),
                        addr_gen: l.addr_gen,
                    });
                }
                continue;
            }
            let kind = if first { Kind::Startup } else { Kind::State };
            self.publish(i, kind, now_ms, out);
        }
        let mut changes: Vec<(u32, RouteChange)> = self.route_changes.drain().collect();
        changes.sort_by_key(|(i, _)| *i);
        if !first {
            for (_, rc) in changes {
                self.route_event(rc, now_ms, out);
            }
        }
    }

    /// Drops the routes `route` replaces: those with its replace key and
    /// another next hop. The key is a prefix of `RouteInfo`'s order, so they
    /// sit together in the set and are found without a scan.
    fn remove_replaced(&mut self, route: &RouteInfo) {
        let key = route.replace_key();
        let from = RouteInfo {
            dst: route.dst,
            dst_len: route.dst_len,
            src: route.src,
            src_len: route.src_len,
            tos: route.tos,
            priority: route.priority,
            ..RouteInfo::table_start(route.family, route.table)
        };
        let old: Vec<RouteInfo> = self
            .routes
            .all
            .range(from..)
            .take_while(|r| r.replace_key() == key)
            .filter(|r| *r != route)
            .cloned()
            .collect();
        for r in old {
            self.routes.remove(&r);
        }
    }

    /// Removes the routes `pred` selects, in the set's order, each reported
    /// to route hooks as a deletion.
    fn drop_routes(
        &mut self,
        pred: impl Fn(&RouteInfo) -> bool,
        now_ms: u64,
        out: &mut Vec<Event>,
    ) {
        let gone: Vec<RouteInfo> = self.routes.iter().filter(|r| pred(r)).cloned().collect();
        for route in gone {
            self.routes.remove(&route);
            let rc = RouteChange {
                added: false,
                route,
            };
            self.route_event(rc, now_ms, out);
        }
    }

    fn remove_link(&mut self, index: u32, now_ms: u64, out: &mut Vec<Event>) {
        let Some(link) = self.links.remove(&index) else {
            return;
        };
        self.routes.retain(|r| r.oif != index);
        self.route_changes.remove(&index);
        if let Some(p) = &link.published {
            if self.synced && self.monitored(&link.info.name) {
                let id = self.alloc_id();
                let mut ev = make_event(id, Kind::Removed, &link, Some(p.state), now_ms);
                ev.state = OperState::Off;
                ev.addrs.clear();
                out.push(ev);
            }
        }
    }

    /// An event for `netevctl test`: the link's current state, run through
    /// hook directory `dir`. None when no such link exists. A dry run
    /// shows the id the next event will have without taking it.
    pub fn test_event(
        &mut self,
        index: u32,
        dir: &'static str,
        dry_run: bool,
        now_ms: u64,
    ) -> Option<Event> {
        let previous = self.links.get(&index)?.published.as_ref().map(|p| p.state);
        let id = if dry_run { self.next_id } else { self.alloc_id() };
        let mut ev = make_event(id, Kind::Test, &self.links[&index], previous, now_ms);
        ev.origin = Origin::Control;
        ev.test_dir = Some(dir);
        Some(ev)
    }

    fn alloc_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.events_emitted += 1;
        id
    }
    /// Emits an event for the link when what hooks see of it (state, name,
    /// usable addresses) differs from what they last saw.
    fn publish(&mut self, index: u32, kind: Kind, now_ms: u64, out: &mut Vec<Event>) {
        if self.resync.is_some() || !self.synced {
            return;
        }
        let Some(link) = self.links.get(&index) else {
            return;
        };
        if !self.monitored(&link.info.name) {
            if let Some(l) = self.links.get_mut(&index) {
                l.published = None;
            }
            return;
        }
        let state = link.state();
        let unchanged = link.published.as_ref().is_some_and(|p| {
            p.state == state && p.addr_gen == link.addr_gen && p.name == link.info.name
        });
        if kind != Kind::Startup && unchanged {
            return;
        }
        let previous = link.published.as_ref().map(|p| p.state);
        let id = self.alloc_id();
        let Some(link) = self.links.get_mut(&index) else {
            return;
        };
        out.push(make_event(id, kind, link, previous, now_ms));
        link.published = Some(Published {
            state,
            name: link.info.name.clone(),
            addr_gen: link.addr_gen,
        });
    }

    fn route_event(&mut self, rc: RouteChange, now_ms: u64, out: &mut Vec<Event>) {
        // Local and broadcast routes come and go with every address; they
        // reach hooks as the address change, not as routes.
        if rc.route.table == RT_TABLE_LOCAL {
            return;
        }
        let oif = rc.route.oif;
        if !self.synced {
            return;
        }
        if self.resync.is_some() {
            self.route_changes.insert(oif, rc);
            return;
        }
        let mut ev = match self.links.get(&oif) {
            Some(l) => {
                if !self.monitored(&l.info.name) {
                    return;
                }
                let id = self.alloc_id();
                let l = &self.links[&oif];
                make_event(id, Kind::Routes, l, None, now_ms)
            }
            None => {
                if !self.settings.interfaces.is_empty() {
                    return;
                }
                let l = Link::new(LinkInfo {
                    index: oif,
                    name: Vec::new(),
                    flags: 0,
                    operstate: 0,
                    mtu: 0,
                    kind: None,
                    mac: Vec::new(),
                });
                make_event(self.alloc_id(), Kind::Routes, &l, None, now_ms)
            }
        };
        ev.route = Some(rc);
        out.push(ev);
    }
}

fn make_event(id: u64, kind: Kind, link: &Link, previous: Option<OperState>, now_ms: u64) -> Event {
    let mut ev = Event::new(
        id,
        now_ms,
        kind,
        Origin::Kernel,
        link.info.index,
        link.info.name.clone(),
        link.state(),
        previous,
    );
    ev.addrs = link.usable_addrs();
    ev.mtu = link.info.mtu;
    ev.mac = link.info.mac.clone();
    ev.link_kind = link.info.kind.clone();
    ev
}

#[cfg(test)]
mod tests {
    use super::*;

    const UP: u32 = IFF_UP | IFF_RUNNING | IFF_LOWER_UP;

    fn link(index: u32, name: &str, flags: u32, oper: u8) -> Input {
        Input::NewLink(LinkInfo {
            index,
            name: name.as_bytes().to_vec(),
            flags,
            operstate: oper,
            mtu: 1500,
            kind: Some("veth".into()),
            mac: vec![2, 0, 0, 0, 0, index as u8],
        })
    }

    fn addr(index: u32, ip: &str, prefix: u8, scope: u8, flags: u32) -> AddrInfo {
        AddrInfo {
            index,
            ip: ip.parse().unwrap(),
            prefix,
            scope,
            flags,
        }
    }

    fn route(oif: u32, dst: Option<&str>, len: u8, gw: Option<&str>, table: u32) -> RouteInfo {
        RouteInfo {
            family: 2,
            table,
            dst: dst.map(|d| d.parse().unwrap()),
            dst_len: len,
            src: None,
            src_len: 0,
            tos: 0,
            priority: 0,
            protocol: 4,
            scope: 0,
            kind: 1,
            oif,
            gateway: gw.map(|g| g.parse().unwrap()),
            prefsrc: None,
        }
    }

    fn core(startup: bool) -> Core {
        Core::new(Settings {
            interfaces: vec![],
            run_on_startup: startup,
        })
    }

    fn run(c: &mut Core, inputs: Vec<Input>) -> Vec<Event> {
        let mut out = Vec::new();
        for (t, i) in inputs.into_iter().enumerate() {
            c.apply(i, 1000 + t as u64, &mut out);
        }
        out
    }

    fn summary(
        evs: &[Event],
    ) -> Vec<(
        String,
        &'static str,
        &'static str,
        Option<&'static str>,
        String,
    )> {
        evs.iter()
            .map(|e| {
                (
                    e.name_lossy(),
                    e.kind.as_str(),
                    e.dir(),
                    e.previous.map(OperState::as_str),
                    e.addrs
                        .iter()
                        .map(|a| a.ip.to_string())
                        .collect::<Vec<_>>()
                        .join(" "),
                )
            })
            .collect()
    }

    fn synced(startup: bool) -> Core {
        let mut c = core(startup);
        run(
            &mut c,
            vec![
                Input::ResyncBegin,
                link(1, "lo", UP, 0),
                link(2, "va", IFF_UP, 2),
                Input::NewAddr(addr(1, "127.0.0.1", 8, RT_SCOPE_HOST, 0x80)),
                Input::ResyncEnd,
            ],
        );
        c
    }

    #[test]
    fn startup_replays_each_link() {
        let mut c = core(true);
        let evs = run(
            &mut c,
            vec![
                Input::ResyncBegin,
                link(1, "lo", UP, 0),
                link(2, "va", IFF_UP, 2),
                Input::NewAddr(addr(1, "127.0.0.1", 8, RT_SCOPE_HOST, 0x80)),
                Input::ResyncEnd,
            ],
        );
        assert_eq!(
            summary(&evs),
            vec![
                ("lo".into(), "startup", "carrier", None, "127.0.0.1".into()),
                ("va".into(), "startup", "no-carrier", None, "".into()),
            ]
        );
        assert!(c.synced());
    }

    #[test]
    fn no_startup_replay_when_disabled() {
        let mut c = core(false);
        let evs = run(
            &mut c,
            vec![
                Input::ResyncBegin,
                link(2, "va", IFF_UP, 2),
                Input::ResyncEnd,
            ],
        );
        assert!(evs.is_empty());
        // and later changes still diff against the dumped state
        let evs = run(&mut c, vec![link(2, "va", UP, IF_OPER_UP)]);
        assert_eq!(summary(&evs)[0].3, Some("no-carrier"));
    }

    #[test]
    fn carrier_addresses_and_removal() {
        let mut c = synced(false);
        let evs = run(
            &mut c,
            vec![
                link(2, "va", UP, IF_OPER_UP),
                Input::NewAddr(addr(2, "fe80::1", 64, RT_SCOPE_LINK, 0x80)),
                // tentative: not usable yet, no event
                Input::NewAddr(addr(2, "2001:db8::10", 64, 0, IFA_F_TENTATIVE)),
                Input::NewAddr(addr(2, "2001:db8::10", 64, 0, 0)),
                Input::NewAddr(addr(2, "192.0.2.10", 24, 0, 0x80)),
                // the same again: nothing changed, no event
                Input::NewAddr(addr(2, "192.0.2.10", 24, 0, 0x80)),
                Input::DelAddr(addr(2, "2001:db8::10", 64, 0, 0)),
                Input::DelAddr(addr(2, "192.0.2.10", 24, 0, 0x80)),
                link(2, "va", IFF_UP, 2),
                link(2, "va", 0, 2),
                Input::DelLink(2),
            ],
        );
        assert_eq!(
            summary(&evs),
            vec![
                (
                    "va".into(),
                    "state",
                    "carrier",
                    Some("no-carrier"),
                    "".into()
                ),
                (
                    "va".into(),
                    "state",
                    "degraded",
                    Some("carrier"),
                    "fe80::1".into()
                ),
                (
                    "va".into(),
                    "state",
                    "routable",
                    Some("degraded"),
                    "2001:db8::10 fe80::1".into()
                ),
                (
                    "va".into(),
                    "state",
                    "routable",
                    Some("routable"),
                    "192.0.2.10 2001:db8::10 fe80::1".into()
                ),
                (
                    "va".into(),
                    "state",
                    "routable",
                    Some("routable"),
                    "192.0.2.10 fe80::1".into()
                ),
                (
                    "va".into(),
                    "state",
                    "degraded",
                    Some("routable"),
                    "fe80::1".into()
                ),
                (
                    "va".into(),
                    "state",
                    "no-carrier",
                    Some("degraded"),
                    "fe80::1".into()
                ),
                (
                    "va".into(),
                    "state",
                    "off",
                    Some("no-carrier"),
                    "fe80::1".into()
                ),
                ("va".into(), "removed", "off", Some("off"), "".into()),
            ]
        );
        // ids increase
        assert!(evs.windows(2).all(|w| w[0].id < w[1].id));
    }

    #[test]
    fn rename_is_an_event() {
        let mut c = synced(false);
        let evs = run(&mut c, vec![link(2, "wan0", IFF_UP, 2)]);
        assert_eq!(
            summary(&evs),
            vec![(
                "wan0".into(),
                "state",
                "no-carrier",
                Some("no-carrier"),
                "".into()
            )]
        );
    }

    #[test]
    fn filter_globs() {
        let mut c = Core::new(Settings {
            interfaces: vec![b"wg*".to_vec()],
            run_on_startup: true,
        });
        let evs = run(
            &mut c,
            vec![
                Input::ResyncBegin,
                link(1, "lo", UP, 0),
                link(3, "wg0", UP, 0),
                Input::ResyncEnd,
                link(4, "eth9", UP, IF_OPER_UP),
                link(5, "wg1", UP, IF_OPER_UP),
                Input::NewRoute {
                    route: route(4, Some("10.0.0.0"), 8, None, 254),
                    replace: false,
                },
                Input::NewRoute {
                    route: route(5, Some("10.0.0.0"), 8, None, 254),
                    replace: false,
                },
            ],
        );
        let names: Vec<_> = summary(&evs).into_iter().map(|s| (s.0, s.1)).collect();
        assert_eq!(
            names,
            vec![
                ("wg0".into(), "startup"),
                ("wg1".into(), "state"),
                ("wg1".into(), "routes")
            ]
        );
    }

    #[test]
    fn routes() {
        let mut c = synced(false);
        let r = route(2, None, 0, Some("192.0.2.1"), 254);
        let evs = run(
            &mut c,
            vec![
                Input::NewRoute {
                    route: r.clone(),
                    replace: false,
                },
                // a duplicate notification changes nothing
                Input::NewRoute {
                    route: r.clone(),
                    replace: false,
                },
                // local table: reported through the address, not as a route
                Input::NewRoute {
                    route: route(2, Some("192.0.2.10"), 32, None, RT_TABLE_LOCAL),
                    replace: false,
                },
                Input::DelRoute(r.clone()),
                Input::DelRoute(r.clone()),
            ],
        );
        let acts: Vec<_> = evs
            .iter()
            .map(|e| (e.dir(), e.route.as_ref().unwrap().added))
            .collect();
        assert_eq!(acts, vec![("routes", true), ("routes", false)]);
        assert_eq!(evs[0].state, OperState::NoCarrier);
        assert_eq!(c.routes().len(), 1); // the local route stays in the model
    }

    #[test]
    fn replace_drops_the_old_next_hop() {
        let mut c = synced(false);
        let a = route(2, None, 0, Some("192.0.2.1"), 254);
        let b = route(2, None, 0, Some("192.0.2.2"), 254);
        // neighbours in the set that a replace must leave alone
        let mut other_metric = route(2, None, 0, Some("192.0.2.3"), 254);
        other_metric.priority = 100;
        let other_table = route(2, None, 0, Some("192.0.2.1"), 100);
        let other_dst = route(2, Some("0.0.0.0"), 1, Some("192.0.2.1"), 254);
        run(
            &mut c,
            vec![
                Input::NewRoute {
                    route: other_metric.clone(),
                    replace: false,
                },
                Input::NewRoute {
                    route: other_table.clone(),
                    replace: false,
                },
                Input::NewRoute {
                    route: other_dst.clone(),
                    replace: false,
                },
                Input::NewRoute {
                    route: a,
                    replace: false,
                },
                Input::NewRoute {
                    route: b.clone(),
                    replace: true,
                },
            ],
        );
        let mut want = vec![b, other_metric, other_table, other_dst];
        want.sort();
        assert_eq!(c.routes().iter().cloned().collect::<Vec<_>>(), want);
    }

    #[test]
    fn link_down_flushes_ipv4_routes_link_delete_all() {
        let mut c = synced(false);
        let mut r6 = route(2, None, 0, None, 254);
        r6.family = 10;
        let evs = run(
            &mut c,
            vec![
                link(2, "va", UP, IF_OPER_UP),
                Input::NewRoute {
                    route: route(2, None, 0, Some("192.0.2.1"), 254),
                    replace: false,
                },
                Input::NewRoute {
                    route: r6.clone(),
                    replace: false,
                },
                link(2, "va", 0, 2),
            ],
        );
        assert_eq!(c.routes().iter().cloned().collect::<Vec<_>>(), vec![r6]);
        // the flushed IPv4 route reaches route hooks as a deletion, after
        // the link's state change
        let tail: Vec<_> = evs
            .iter()
            .rev()
            .take(2)
            .map(|e| (e.dir(), e.route.as_ref().map(|r| (r.added, r.route.family))))
            .collect();
        assert_eq!(tail, vec![("routes", Some((false, 2))), ("off", None)]);
        run(&mut c, vec![Input::DelLink(2)]);
        assert_eq!(c.routes().len(), 0);
    }

    #[test]
    fn ipv4_address_removal_flushes_what_the_kernel_flushes() {
        let mut c = synced(false);
        let mut by_src = route(2, Some("198.51.100.0"), 24, Some("192.0.2.1"), 254);
        by_src.prefsrc = Some("192.0.2.10".parse().unwrap());
        let gw = route(2, None, 0, Some("192.0.2.1"), 254);
        let mut r6 = route(2, None, 0, None, 254);
        r6.family = 10;
        run(
            &mut c,
            vec![
                link(2, "va", UP, IF_OPER_UP),
                Input::NewAddr(addr(2, "192.0.2.10", 24, 0, 0x80)),
                Input::NewAddr(addr(2, "192.0.2.11", 24, 0, 0x80)),
                Input::NewRoute {
                    route: by_src,
                    replace: false,
                },
                Input::NewRoute {
                    route: gw.clone(),
                    replace: false,
                },
                Input::NewRoute {
                    route: r6.clone(),
                    replace: false,
                },
            ],
        );
        // the preferred source goes: its route goes, the rest stays
        run(
            &mut c,
            vec![Input::DelAddr(addr(2, "192.0.2.10", 24, 0, 0x80))],
        );
        let mut want = vec![gw, r6.clone()];
        want.sort();
        assert_eq!(c.routes().iter().cloned().collect::<Vec<_>>(), want);
        // the last IPv4 address goes: every IPv4 route of the link goes
        let evs = run(
            &mut c,
            vec![Input::DelAddr(addr(2, "192.0.2.11", 24, 0, 0x80))],
        );
        assert_eq!(c.routes().iter().cloned().collect::<Vec<_>>(), vec![r6]);
        assert!(evs.iter().any(|e| e
            .route
            .as_ref()
            .is_some_and(|r| !r.added && r.route.dst.is_none())));
    }

    /// After an overflow the resync's dump is the truth: links, addresses
    /// and routes it does not mention are gone, and each link gets one
    /// event for its final state.
    #[test]
    fn resync_reconciles_to_final_state() {
        let mut c = synced(false);
        run(
            &mut c,
            vec![
                link(2, "va", UP, IF_OPER_UP),
                link(3, "vb", UP, IF_OPER_UP),
                Input::NewAddr(addr(2, "192.0.2.10", 24, 0, 0)),
                Input::NewRoute {
                    route: route(2, None, 0, Some("192.0.2.1"), 254),
                    replace: false,
                },
            ],
        );
        // events were lost: 192.0.2.10 went away, 198.51.100.7 came, vb was
        // deleted and a route appeared
        let evs = run(
            &mut c,
            vec![
                Input::ResyncBegin,
                link(1, "lo", UP, 0),
                link(2, "va", UP, IF_OPER_UP),
                Input::NewAddr(addr(1, "127.0.0.1", 8, RT_SCOPE_HOST, 0x80)),
                Input::NewAddr(addr(2, "198.51.100.7", 24, 0, 0)),
                Input::NewRoute {
                    route: route(2, None, 0, Some("192.0.2.1"), 254),
                    replace: false,
                },
                Input::NewRoute {
                    route: route(2, Some("203.0.113.0"), 24, None, 254),
                    replace: false,
                },
                Input::ResyncEnd,
            ],
        );
        assert_eq!(
            summary(&evs),
            vec![
                ("vb".into(), "removed", "off", Some("carrier"), "".into()),
                (
                    "va".into(),
                    "state",
                    "routable",
                    Some("routable"),
                    "198.51.100.7".into()
                ),
                ("va".into(), "routes", "routes", None, "198.51.100.7".into()),
            ]
        );
        assert_eq!(c.links().count(), 2);
        assert_eq!(c.routes().len(), 2);
        let va = c.link(2).unwrap();
        assert_eq!(va.addrs.len(), 1);
        assert_eq!(c.resyncs, 2);
    }

    #[test]
    fn resync_with_no_change_is_silent() {
        let mut c = synced(true);
        let evs = run(
            &mut c,
            vec![
                Input::ResyncBegin,
                link(1, "lo", UP, 0),
                link(2, "va", IFF_UP, 2),
                Input::NewAddr(addr(1, "127.0.0.1", 8, RT_SCOPE_HOST, 0x80)),
                Input::ResyncEnd,
            ],
        );
        assert!(evs.is_empty(), "{:?}", summary(&evs));
    }

    #[test]
    fn rules_are_modelled() {
        let mut c = synced(false);
        let rule = RuleInfo {
            family: 2,
            priority: 1000,
            table: 100,
            action: 1,
            src: Some("192.0.2.10".parse().unwrap()),
            src_len: 32,
            dst: None,
            dst_len: 0,
            tos: 0,
            fwmark: 0,
            fwmask: 0,
            iif: vec![],
            oif: vec![],
            protocol: 0,
            extra: vec![],
        };
        let evs = run(&mut c, vec![Input::NewRule(rule.clone())]);
        assert!(evs.is_empty());
        assert_eq!(c.rules().count(), 1);
        run(&mut c, vec![Input::ResyncBegin, Input::ResyncEnd]);
        assert_eq!(c.rules().count(), 0);
    }
}
