//! The publisher: what consumers were last told of each link, and the
//! events that tell them what changed since. Event ids are allocated
//! here, so they grow by one with each event. What was told of a link
//! (`Published`) is kept in the mirror's link, so a link costs no map
//! entry here; the publisher alone writes it.
//!
//! It hears the mirror's changes (mirror.rs) and reads the mirror for the
//! link's current state; a link whose state, name and usable addresses are
//! what consumers last saw makes no event. While a dump is reconciled,
//! nothing is published: links are compared once it is over, and route
//! changes seen meanwhile are held, the last one per route. Pure: no I/O,
//! no clock (the time is passed in).

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::event::{Event, Kind, Origin, RouteChange};
use super::glob;
use super::mirror::{Change, Link, Mirror};
use super::state::OperState;
use super::types::*;

#[derive(Clone, Debug, Default)]
pub struct Settings {
    /// `monitoring.interfaces`: glob patterns; empty means every link.
    pub interfaces: Vec<Vec<u8>>,
    /// `scripts.run_on_startup`.
    pub run_on_startup: bool,
}

/// What consumers last saw of a link. It is kept in the mirror's link
/// (`Link::published`), where it costs no map entry of its own, and goes
/// with the link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Published {
    state: OperState,
    name: IfName,
    addr_gen: u32,
}

type RouteKey = (u8, u32, Option<IpAddr>, u8, u32);

pub struct Publisher {
    settings: Settings,
    /// Route changes seen while a dump was reconciled, the last per route.
    held: BTreeMap<RouteKey, RouteChange>,
    next_id: u64,
    /// Events emitted since start, for status reports.
    pub emitted: u64,
}

impl Publisher {
    pub fn new(settings: Settings) -> Self {
        Publisher {
            settings,
            held: BTreeMap::new(),
            next_id: 1,
            emitted: 0,
        }
    }

    pub fn monitored(&self, name: &[u8]) -> bool {
        glob::any(&self.settings.interfaces, name)
    }

    /// New settings (on reload): links that stop being monitored are
    /// forgotten; newly monitored ones get an event for their current
    /// state.
    pub fn set_settings(
        &mut self,
        settings: Settings,
        m: &mut Mirror,
        now_ms: u64,
        out: &mut Vec<Event>,
    ) {
        self.settings = settings;
        if !m.synced() {
            return;
        }
        let idx = m.link_indexes();
        for i in idx {
            self.publish(m, i, Kind::State, now_ms, out);
        }
    }

    /// The state consumers last saw of a link.
    pub fn previous(m: &Mirror, index: u32) -> Option<OperState> {
        m.link(index)?.published.as_ref().map(|p| p.state)
    }

    pub fn next_id(&self) -> u64 {
        self.next_id
    }

    pub fn alloc_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.emitted += 1;
        id
    }

    /// Tells consumers what one change of the mirror means for them.
    pub fn on(&mut self, m: &mut Mirror, change: Change, now_ms: u64, out: &mut Vec<Event>) {
        match change {
            Change::Link(index) => self.publish(m, index, Kind::State, now_ms, out),
            Change::LinkGone(link) => self.removed(m, &link, now_ms, out),
            Change::Route(rc) => self.route(m, rc, now_ms, out),
            Change::Resynced { first } => self.resynced(m, first, now_ms, out),
        }
    }

    fn resynced(&mut self, m: &mut Mirror, first: bool, now_ms: u64, out: &mut Vec<Event>) {
        let idx = m.link_indexes();
        for i in idx {
            if first && !self.settings.run_on_startup {
                if let Some(l) = m.link(i) {
                    if self.monitored(&l.info.name) {
                        let p = published(l);
                        m.set_published(i, Some(p));
                    }
                }
                continue;
            }
            let kind = if first { Kind::Startup } else { Kind::State };
            self.publish(m, i, kind, now_ms, out);
        }
        let held = std::mem::take(&mut self.held);
        if !first {
            for (_, rc) in held {
                self.route(m, rc, now_ms, out);
            }
        }
    }

    fn removed(&mut self, m: &Mirror, link: &Link, now_ms: u64, out: &mut Vec<Event>) {
        let index = link.info.index;
        self.held.retain(|_, rc| rc.route.oif != index);
        let Some(p) = &link.published else {
            return;
        };
        if m.synced() && self.monitored(&link.info.name) {
            let id = self.alloc_id();
            let mut ev = make_event(id, Kind::Removed, link, Some(p.state), now_ms);
            ev.state = OperState::Off;
            ev.addrs.clear();
            out.push(ev);
        }
    }

    /// Emits an event for the link when what consumers see of it (state,
    /// name, usable addresses) differs from what they last saw.
    fn publish(
        &mut self,
        m: &mut Mirror,
        index: u32,
        kind: Kind,
        now_ms: u64,
        out: &mut Vec<Event>,
    ) {
        if m.resyncing() || !m.synced() {
            return;
        }
        let Some(link) = m.link(index) else {
            return;
        };
        if !self.monitored(&link.info.name) {
            m.set_published(index, None);
            return;
        }
        let now = published(link);
        let last = link.published.as_ref();
        if kind != Kind::Startup && last == Some(&now) {
            return;
        }
        let previous = last.map(|p| p.state);
        let renamed = last.filter(|p| p.name != now.name).map(|p| p.name.to_vec());
        let id = self.alloc_id();
        let mut ev = make_event(id, kind, link, previous, now_ms);
        ev.previous_name = renamed;
        out.push(ev);
        m.set_published(index, Some(now));
    }

    fn route(&mut self, m: &Mirror, rc: RouteChange, now_ms: u64, out: &mut Vec<Event>) {
        // Local and broadcast routes come and go with every address; they
        // reach hooks as the address change, not as routes.
        if rc.route.table == RT_TABLE_LOCAL || !m.synced() {
            return;
        }
        if m.resyncing() {
            let r = &rc.route;
            self.held
                .insert((r.family, r.table, r.dst, r.dst_len, r.priority), rc);
            return;
        }
        let oif = rc.route.oif;
        let mut ev = match m.link(oif) {
            Some(l) => {
                if !self.monitored(&l.info.name) {
                    return;
                }
                let id = self.alloc_id();
                make_event(id, Kind::Routes, l, None, now_ms)
            }
            None => {
                if !self.settings.interfaces.is_empty() {
                    return;
                }
                let l = Link::new(LinkInfo {
                    index: oif,
                    name: IfName::default(),
                    flags: 0,
                    operstate: 0,
                    mtu: 0,
                    kind: None,
                    mac: HwAddr::default(),
                });
                make_event(self.alloc_id(), Kind::Routes, &l, None, now_ms)
            }
        };
        ev.route = Some(rc);
        out.push(ev);
    }
}

fn published(l: &Link) -> Published {
    Published {
        state: l.state(),
        name: l.info.name,
        addr_gen: l.addr_gen,
    }
}

pub fn make_event(
    id: u64,
    kind: Kind,
    link: &Link,
    previous: Option<OperState>,
    now_ms: u64,
) -> Event {
    let mut ev = Event::new(
        id,
        now_ms,
        kind,
        Origin::Kernel,
        link.info.index,
        link.info.name.to_vec(),
        link.state(),
        previous,
    );
    ev.addrs = link.usable_addrs();
    ev.mtu = link.info.mtu;
    ev.mac = link.info.mac.to_vec();
    ev.link_kind = link.info.kind.map(|k| k.as_str().to_owned());
    ev
}
