//! The mirror of the kernel's tables: links with their addresses, routes
//! and rules, as the kernel's messages describe them.
//!
//! It says what changed (`Change`) and nothing about who was told: that is
//! the publisher's (publish.rs). After a dump bracketed by `ResyncBegin`
//! and `ResyncEnd` whatever the dump did not mention is gone, and the
//! changes reported are the ones the lost messages would have made. It also
//! follows the kernel's silent IPv4 route flushes. Pure: no I/O, no clock.
//!
//! Routes are packed (routes.rs: about 25 bytes a route, so a full
//! Internet table fits an appliance) and kept only for the tables
//! `monitoring.routes` names, plus netevd's own, which policy routing must
//! find after a restart. Links are held densely (links.rs) and found
//! by index or by name in O(1).

use std::collections::{BTreeSet, HashSet};
use std::net::IpAddr;

mod links;
mod routes;

pub use links::Addrs;
use links::Links;
use routes::{fits, Packed, View};

use super::event::RouteChange;
use super::publish::Published;
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
    pub addrs: Addrs,
    n_routable: u32,
    n_degraded: u32,
    /// What consumers were last told of the link: the publisher's
    /// (publish.rs), kept here so that it needs no map of its own.
    pub published: Option<Published>,
    /// Bumped whenever the set of usable addresses changes; compared for
    /// equality only, so it may wrap.
    pub addr_gen: u32,
}

impl Link {
    pub fn new(info: LinkInfo) -> Self {
        Link {
            info,
            addrs: Addrs::default(),
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

/// The routes, packed (routes.rs), with an index of the default routes
/// (policy routing learns gateways from them) and of netevd's own. Both
/// indexes are small: a full table has a handful of default routes.
#[derive(Default)]
pub struct Routes {
    all: Packed,
    defaults: BTreeSet<RouteInfo>,
    /// Routes marked as netevd's own, in whatever table.
    owned: BTreeSet<RouteInfo>,
}

impl Routes {
    fn insert(&mut self, r: &RouteInfo, seen: bool) -> bool {
        if !self.all.insert(r, seen) {
            return false;
        }
        if r.is_default() {
            self.defaults.insert(r.clone());
        }
        if r.protocol == RTPROT_NETEVD {
            self.owned.insert(r.clone());
        }
        true
    }

    fn remove(&mut self, r: &RouteInfo) -> bool {
        if !self.all.remove(r) {
            return false;
        }
        self.defaults.remove(r);
        self.owned.remove(r);
        true
    }

    /// Removes what `drop` selects, in order; `clear` forgets the kept
    /// routes' seen marks.
    fn extract(&mut self, drop: &dyn Fn(&View) -> bool, clear: bool) -> Vec<RouteInfo> {
        let gone = self.all.extract(drop, clear);
        for r in &gone {
            self.defaults.remove(r);
            self.owned.remove(r);
        }
        gone
    }

    /// Every route by value (they are stored packed): IPv4 first, then by
    /// table, destination, prefix length and metric.
    pub fn iter(&self) -> impl Iterator<Item = RouteInfo> + '_ {
        self.all.iter()
    }

    pub fn len(&self) -> usize {
        self.all.len()
    }

    /// Routes of `family` (2 or 10), without walking them.
    pub fn count(&self, family: u8) -> usize {
        self.all.count(family)
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

/// Keys seen during a dump; routes carry their own mark instead.
#[derive(Default)]
struct Seen {
    links: HashSet<u32>,
    addrs: HashSet<(u32, IpAddr, u8)>,
    rules: HashSet<RuleInfo>,
}

#[derive(Default)]
pub struct Mirror {
    links: Links,
    routes: Routes,
    rules: HashSet<RuleInfo>,
    resync: Option<Seen>,
    /// The first full dump is done.
    synced: bool,
    pub resyncs: u64,
    /// Which routes are kept (`monitoring.routes`).
    scope: RouteScope,
}

impl Mirror {
    /// Every link, by index.
    pub fn links(&self) -> impl Iterator<Item = &Link> {
        self.links.iter()
    }

    /// How many links there are, without listing them.
    pub fn link_count(&self) -> usize {
        self.links.count()
    }

    /// The indexes of every link, ascending.
    pub fn link_indexes(&self) -> Vec<u32> {
        self.links.indexes()
    }

    pub fn link(&self, index: u32) -> Option<&Link> {
        self.links.get(index)
    }

    /// Records what consumers were last told of a link (publish.rs).
    pub fn set_published(&mut self, index: u32, p: Option<Published>) {
        if let Some(l) = self.links.get_mut(index) {
            l.published = p;
        }
    }

    /// The link named `name`. O(1).
    pub fn link_by_name(&self, name: &[u8]) -> Option<&Link> {
        self.links.by_name(name)
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
                if !self.keeps(&route) {
                    return;
                }
                if replace {
                    self.remove_replaced(&route, out);
                }
                if self.routes.insert(&route, self.resync.is_some()) {
                    out.push(Change::Route(RouteChange { added: true, route }));
                }
            }
            Input::DelRoute(route) => {
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
            Input::ResyncBegin => {
                // A dump that begins again (the last one overran) starts
                // from no marks.
                self.routes.all.clear_seen();
                self.resync = Some(Seen::default());
            }
            Input::ResyncEnd => self.end_resync(out),
        }
    }

    fn new_link(&mut self, info: LinkInfo, out: &mut Vec<Change>) {
        let index = info.index;
        if let Some(seen) = &mut self.resync {
            seen.links.insert(index);
        }
        let going_down = self.links.upsert(info);
        out.push(Change::Link(index));
        if going_down {
            // The kernel flushes a downed link's IPv4 routes without
            // telling anyone (fib_sync_down_dev); IPv6 reports its own.
            // Route hooks learn of the flush from us.
            self.drop_routes(&|r| r.oif == index && r.family == 2, out);
        }
    }

    fn new_addr(&mut self, a: AddrInfo, out: &mut Vec<Change>) {
        if let Some(seen) = &mut self.resync {
            seen.addrs.insert((a.index, a.ip, a.prefix));
        }
        let index = a.index;
        let Some(link) = self.links.get_mut(index) else {
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
            link.addr_gen = link.addr_gen.wrapping_add(1);
        }
        out.push(Change::Link(index));
    }

    fn del_addr(&mut self, a: AddrInfo, out: &mut Vec<Change>) {
        if let Some(seen) = &mut self.resync {
            seen.addrs.remove(&(a.index, a.ip, a.prefix));
        }
        let index = a.index;
        let Some(link) = self.links.get_mut(index) else {
            return;
        };
        if let Some(o) = link.addrs.remove(&(a.ip, a.prefix)) {
            link.count(&o, -1);
            if o.usable() {
                link.addr_gen = link.addr_gen.wrapping_add(1);
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
                &|r| r.family == 2 && (r.prefsrc == ip || (!v4_left && r.oif == index)),
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
            .indexes()
            .into_iter()
            .filter(|i| !seen.links.contains(i))
            .collect();
        for i in gone {
            self.remove_link(i, out);
        }
        for link in self.links.iter_mut() {
            let index = link.info.index;
            let stale: Vec<AddrInfo> = link
                .addrs
                .values()
                .filter(|a| !seen.addrs.contains(&(index, a.ip, a.prefix)))
                .cloned()
                .collect();
            for a in stale {
                link.addrs.remove(&(a.ip, a.prefix));
                link.count(&a, -1);
                if a.usable() {
                    link.addr_gen = link.addr_gen.wrapping_add(1);
                }
            }
        }
        let gone = self.routes.extract(&|v| !v.seen, true);
        report_gone(gone, out);
        self.rules.retain(|r| seen.rules.contains(r));
        let first = !self.synced;
        self.synced = true;
        out.push(Change::Resynced { first });
    }

    /// Whether the mirror holds `route`: an IPv4 or IPv6 route whose
    /// addresses are of its family, of a kept table (`keeps`).
    fn keeps(&self, route: &RouteInfo) -> bool {
        fits(route) && keeps(&self.scope, route)
    }

    /// Drops the routes `route` replaces: those with its replace key and
    /// another next hop; they are neighbours in the packed table.
    /// The kernel sends no deletion for what a replace displaced (an
    /// `ip route replace` moving a route to another link): consumers hear
    /// of it from here.
    fn remove_replaced(&mut self, route: &RouteInfo, out: &mut Vec<Change>) {
        for r in self.routes.all.replaced_by(route) {
            self.routes.remove(&r);
            out.push(Change::Route(RouteChange {
                added: false,
                route: r,
            }));
        }
    }

    /// Removes the routes `pred` selects, in the table's order, each
    /// reported as a deletion.
    fn drop_routes(&mut self, pred: &dyn Fn(&View) -> bool, out: &mut Vec<Change>) {
        let gone = self.routes.extract(pred, false);
        report_gone(gone, out);
    }

    /// A link and its routes go; consumers hear of the link only.
    fn remove_link(&mut self, index: u32, out: &mut Vec<Change>) {
        let Some(link) = self.links.remove(index) else {
            return;
        };
        self.routes.extract(&|v| v.oif == index, false);
        out.push(Change::LinkGone(link));
    }

    /// Shrinks tables a burst left larger than they need be.
    /// (The route table shrinks as it goes.)
    pub fn shrink(&mut self) {
        self.rules.shrink_to_fit();
        self.links.shrink();
        for l in self.links.iter_mut() {
            l.addrs.shrink();
        }
    }

    /// New `monitoring.routes` (a reload): routes of tables no longer
    /// kept are forgotten without events, as if never seen. Tables newly
    /// kept fill from the next dump.
    pub fn set_route_scope(&mut self, scope: RouteScope) {
        self.scope = scope;
        let scope = &self.scope;
        self.routes.extract(
            &|v: &View| !(scope.keeps(v.table) || v.protocol == RTPROT_NETEVD),
            false,
        );
    }
}

/// A route of a table `monitoring.routes` keeps, or one of netevd's own:
/// policy routing must find those after a restart whatever the tables.
fn keeps(scope: &RouteScope, r: &RouteInfo) -> bool {
    scope.keeps(r.table) || r.protocol == RTPROT_NETEVD
}

fn report_gone(gone: Vec<RouteInfo>, out: &mut Vec<Change>) {
    out.extend(gone.into_iter().map(|route| {
        Change::Route(RouteChange {
            added: false,
            route,
        })
    }));
}
