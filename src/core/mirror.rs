//! The mirror of the kernel's tables: links with their addresses, routes
//! and rules, as the kernel's messages describe them.
//!
//! It says what changed (`Change`) and nothing about who was told: that is
//! the publisher's (publish.rs). After a dump bracketed by `ResyncBegin`
//! and `ResyncEnd` whatever the dump did not mention is gone, and the
//! changes reported are the ones the lost messages would have made. It also
//! follows the kernel's silent IPv4 route flushes. Pure: no I/O, no clock.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::IpAddr;

use super::event::RouteChange;
use super::state::{address_class, derive, OperState};
use super::types::*;

/// What one input changed, in the order consumers must hear of it.
#[derive(Debug)]
pub enum Change {
    /// The link's state, name or addresses may differ from before.
    Link(u32),
    /// The link is gone, with what it was.
    LinkGone(Link),
    Route(RouteChange),
    /// A dump is over: every link may differ from what consumers know.
    Resynced {
        /// The first dump since start.
        first: bool,
    },
}

#[derive(Clone, Debug)]
pub struct Link {
    pub info: LinkInfo,
    pub addrs: BTreeMap<(IpAddr, u8), AddrInfo>,
    n_routable: u32,
    n_degraded: u32,
    /// Bumped whenever the set of usable addresses changes.
    pub addr_gen: u64,
}

impl Link {
    pub fn new(info: LinkInfo) -> Self {
        Link {
            info,
            addrs: BTreeMap::new(),
            n_routable: 0,
            n_degraded: 0,
            addr_gen: 0,
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

#[derive(Default)]
pub struct Mirror {
    links: BTreeMap<u32, Link>,
    routes: Routes,
    rules: HashSet<RuleInfo>,
    resync: Option<Seen>,
    /// The first full dump is done.
    synced: bool,
    pub resyncs: u64,
}

impl Mirror {
    pub fn links(&self) -> impl Iterator<Item = &Link> {
        self.links.values()
    }

    pub fn link(&self, index: u32) -> Option<&Link> {
        self.links.get(&index)
    }

    pub fn routes(&self) -> &Routes {
        &self.routes
    }

    pub fn rules(&self) -> impl Iterator<Item = &RuleInfo> {
        self.rules.iter()
    }

    /// True while a dump is being reconciled: the mirror is not yet the
    /// kernel's state.
    pub fn resyncing(&self) -> bool {
        self.resync.is_some()
    }

    pub fn synced(&self) -> bool {
        self.synced
    }

    /// Applies one kernel message; what it changed is appended to `out`.
    pub fn apply(&mut self, input: Input, out: &mut Vec<Change>) {
        match input {
            Input::NewLink(info) => self.new_link(info, out),
            Input::DelLink(index) => {
                if let Some(seen) = &mut self.resync {
                    seen.links.remove(&index);
                }
                self.remove_link(index, out);
            }
            Input::NewAddr(a) => self.new_addr(a, out),
            Input::DelAddr(a) => self.del_addr(a, out),
            Input::NewRoute { route, replace } => {
                if route.family != 2 && route.family != 10 {
                    return;
                }
                if let Some(seen) = &mut self.resync {
                    seen.routes.insert(route.clone());
                }
                if replace {
                    self.remove_replaced(&route, out);
                }
                if !self.routes.contains(&route) {
                    self.routes.insert(route.clone());
                    out.push(Change::Route(RouteChange { added: true, route }));
                }
            }
            Input::DelRoute(route) => {
                if let Some(seen) = &mut self.resync {
                    seen.routes.remove(&route);
                }
                if self.routes.remove(&route) {
                    out.push(Change::Route(RouteChange {
                        added: false,
                        route,
                    }));
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
            Input::ResyncBegin => self.resync = Some(Seen::default()),
            Input::ResyncEnd => self.end_resync(out),
        }
    }

    fn new_link(&mut self, info: LinkInfo, out: &mut Vec<Change>) {
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
        out.push(Change::Link(index));
        if going_down {
            // The kernel flushes a downed link's IPv4 routes without
            // telling anyone (fib_sync_down_dev); IPv6 reports its own.
            // Route hooks learn of the flush from us.
            self.drop_routes(|r| r.oif == index && r.family == 2, out);
        }
    }

    fn new_addr(&mut self, a: AddrInfo, out: &mut Vec<Change>) {
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
        out.push(Change::Link(index));
    }

    fn del_addr(&mut self, a: AddrInfo, out: &mut Vec<Change>) {
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
        out.push(Change::Link(index));
        if a.ip.is_ipv4() {
            // More silent flushes (fib_inetaddr_event): routes whose
            // preferred source was this address, and every IPv4 route of a
            // link left without an IPv4 address.
            let ip = Some(a.ip);
            self.drop_routes(
                |r| r.family == 2 && (r.prefsrc == ip || (!v4_left && r.oif == index)),
                out,
            );
        }
    }

    fn end_resync(&mut self, out: &mut Vec<Change>) {
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
            self.remove_link(i, out);
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
        self.drop_routes(|r| !seen.routes.contains(r), out);
        self.rules.retain(|r| seen.rules.contains(r));
        let first = !self.synced;
        self.synced = true;
        out.push(Change::Resynced { first });
    }

    /// Drops the routes `route` replaces: those with its replace key and
    /// another next hop. The key is a prefix of `RouteInfo`'s order, so they
    /// sit together in the set and are found without a scan.
    /// The kernel sends no deletion for what a replace displaced (an
    /// `ip route replace` moving a route to another link): consumers hear
    /// of it from here.
    fn remove_replaced(&mut self, route: &RouteInfo, out: &mut Vec<Change>) {
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
            out.push(Change::Route(RouteChange {
                added: false,
                route: r,
            }));
        }
    }

    /// Removes the routes `pred` selects, in the set's order, each reported
    /// as a deletion.
    fn drop_routes(&mut self, pred: impl Fn(&RouteInfo) -> bool, out: &mut Vec<Change>) {
        let gone: Vec<RouteInfo> = self.routes.iter().filter(|r| pred(r)).cloned().collect();
        for route in gone {
            self.routes.remove(&route);
            out.push(Change::Route(RouteChange {
                added: false,
                route,
            }));
        }
    }

    /// A link and its routes go; consumers hear of the link only.
    fn remove_link(&mut self, index: u32, out: &mut Vec<Change>) {
        let Some(link) = self.links.remove(&index) else {
            return;
        };
        self.routes.retain(|r| r.oif != index);
        out.push(Change::LinkGone(link));
    }
}
