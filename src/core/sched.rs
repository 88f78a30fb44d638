//! Which hook run starts next: serialised per link, in parallel across
//! links up to a limit, and coalescing what waits behind a busy link.
//!
//! Pure bookkeeping; the effects layer starts and reaps the processes and
//! tells this module when a link's run is over.

use std::collections::{HashMap, VecDeque};

use super::event::HookEvent;

#[derive(Default)]
struct Slot {
    busy: bool,
    /// Waiting events, at most one per class (state, routes), oldest first.
    pending: Vec<HookEvent>,
}

pub struct Scheduler {
    max_parallel: usize,
    running: usize,
    slots: HashMap<u32, Slot>,
    /// Links with pending events and no run in progress, in arrival order.
    ready: VecDeque<u32>,
    /// Events folded into newer ones since start.
    pub coalesced: u64,
}

impl Scheduler {
    pub fn new(max_parallel: usize) -> Self {
        Scheduler {
            max_parallel: max_parallel.max(1),
            running: 0,
            slots: HashMap::new(),
            ready: VecDeque::new(),
            coalesced: 0,
        }
    }

    pub fn set_max_parallel(&mut self, n: usize) {
        self.max_parallel = n.max(1);
    }

    #[cfg(test)]
    pub fn running(&self) -> usize {
        self.running
    }

    #[cfg(test)]
    pub fn queued(&self) -> usize {
        self.slots.values().map(|s| s.pending.len()).sum()
    }

    /// Queues an event. A waiting event of the same class for the same link
    /// is replaced by this newer one, which goes to the back of the link's
    /// line (so hooks always see increasing event ids) and counts the
    /// replaced one as coalesced.
    pub fn submit(&mut self, mut ev: HookEvent) {
        let link = ev.index;
        let slot = self.slots.entry(link).or_default();
        if let Some(pos) = slot.pending.iter().position(|p| p.class() == ev.class()) {
            let old = slot.pending.remove(pos);
            ev.coalesced += old.coalesced + 1;
            if ev.class() == 0 {
                // Hooks last saw the state before the replaced event.
                ev.previous = old.previous;
            }
            self.coalesced += 1;
            slot.pending.push(ev);
            return;
        }
        slot.pending.push(ev);
        if !slot.busy && slot.pending.len() == 1 {
            self.ready.push_back(link);
        }
    }

    /// The next event whose hooks may start now, if any. Its link is busy
    /// until `done` is called for it.
    pub fn next(&mut self) -> Option<HookEvent> {
        while self.running < self.max_parallel {
            let link = self.ready.pop_front()?;
            let Some(slot) = self.slots.get_mut(&link) else {
                continue;
            };
            if slot.busy || slot.pending.is_empty() {
                continue;
            }
            slot.busy = true;
            self.running += 1;
            return Some(slot.pending.remove(0));
        }
        None
    }

    /// The hooks for this link's current event are over.
    pub fn done(&mut self, link: u32) {
        let Some(slot) = self.slots.get_mut(&link) else {
            return;
        };
        if slot.busy {
            slot.busy = false;
            self.running -= 1;
        }
        if slot.pending.is_empty() {
            self.slots.remove(&link);
        } else {
            self.ready.push_back(link);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::event::Kind;
    use crate::core::state::OperState;

    fn ev(id: u64, link: u32, kind: Kind, state: OperState, prev: Option<OperState>) -> HookEvent {
        HookEvent {
            id,
            time_ms: 0,
            kind,
            index: link,
            name: format!("l{link}").into_bytes(),
            state,
            previous: prev,
            addrs: vec![],
            mtu: 0,
            mac: vec![],
            link_kind: None,
            route: None,
            coalesced: 0,
            policy: None,
        }
    }

    use OperState::*;

    #[test]
    fn serial_per_link_parallel_across_links() {
        let mut s = Scheduler::new(2);
        s.submit(ev(1, 1, Kind::State, Carrier, None));
        s.submit(ev(2, 2, Kind::State, Carrier, None));
        s.submit(ev(3, 3, Kind::State, Carrier, None));
        assert_eq!(s.next().unwrap().id, 1);
        assert_eq!(s.next().unwrap().id, 2);
        assert!(s.next().is_none(), "limit of 2 reached");
        s.submit(ev(4, 1, Kind::State, Routable, Some(Carrier)));
        assert!(s.next().is_none());
        s.done(2);
        assert_eq!(s.next().unwrap().id, 3);
        s.done(1);
        assert_eq!(s.next().unwrap().id, 4);
        assert!(s.next().is_none());
        s.done(3);
        s.done(1);
        assert!(s.next().is_none());
        assert_eq!(s.running(), 0);
        assert_eq!(s.queued(), 0);
    }

    #[test]
    fn busy_link_coalesces_to_newest_per_class() {
        let mut s = Scheduler::new(4);
        s.submit(ev(1, 1, Kind::State, NoCarrier, Some(Carrier)));
        assert_eq!(s.next().unwrap().id, 1);
        s.submit(ev(2, 1, Kind::State, Carrier, Some(NoCarrier)));
        s.submit(ev(3, 1, Kind::Routes, Carrier, Some(Carrier)));
        s.submit(ev(4, 1, Kind::State, Degraded, Some(Carrier)));
        s.submit(ev(5, 1, Kind::State, Routable, Some(Degraded)));
        s.submit(ev(6, 1, Kind::Routes, Routable, Some(Routable)));
        assert!(s.next().is_none());
        assert_eq!(s.queued(), 2);
        s.done(1);
        let a = s.next().unwrap();
        assert_eq!(
            (a.id, a.state, a.previous, a.coalesced),
            (5, Routable, Some(NoCarrier), 2)
        );
        s.done(1);
        let b = s.next().unwrap();
        assert_eq!((b.id, b.kind, b.coalesced), (6, Kind::Routes, 1));
        s.done(1);
        assert!(s.next().is_none());
        assert_eq!(s.coalesced, 3);
    }

    #[test]
    fn done_for_unknown_link_is_harmless() {
        let mut s = Scheduler::new(1);
        s.done(9);
        s.submit(ev(1, 1, Kind::State, Carrier, None));
        assert_eq!(s.next().unwrap().id, 1);
        s.done(1);
        s.done(1);
        assert_eq!(s.running(), 0);
    }
}
