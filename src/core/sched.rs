//! Which hook run starts next: serialised per link, in parallel across
//! links up to a limit, and coalescing what waits behind a busy link.
//!
//! What waits coalesces by class: the link's state is one class, each
//! route (family, table, destination, metric) one of its own, and a test
//! one more; a newer event of a class replaces the waiting one. So every
//! route's last change reaches routes.d, even when a link going down
//! flushes hundreds at once, while a flapping link runs its state hooks
//! once for the newest state. A link's removal is a barrier: nothing that
//! comes after it (a new link may reuse the index at once) folds into it
//! or into what waited before it.
//!
//! Pure bookkeeping; the effects layer starts and reaps the processes and
//! tells this module when a link's run is over.

use crate::core::fx::FxMap;
use std::collections::{BTreeMap, VecDeque};
use std::net::IpAddr;
use std::rc::Rc;

use super::event::{Event, Kind, RunInfo};

/// One hook run to start: the shared event and what the run adds to it.
#[derive(Clone, Debug)]
pub struct Job {
    pub event: Rc<Event>,
    pub run: RunInfo,
    /// The hook files a filter lets run (`scripts:`); None for all.
    pub scripts: Option<Rc<[String]>>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Class {
    State,
    Route(u8, u32, Option<IpAddr>, u8, u32),
    /// A test of one hook directory: tests of two directories both run.
    Test(Option<&'static str>),
    /// A DHCP lease of one family: never folded into a kernel state
    /// event, which has no DHCP_* to give.
    Lease(u8),
    /// A network manager's event, by directory: networkd's `routable` and
    /// `configured` for one change both run.
    Manager(&'static str),
}

fn class(ev: &Event) -> Class {
    match (ev.kind, &ev.route) {
        (Kind::Routes, Some(rc)) => {
            let r = &rc.route;
            Class::Route(r.family, r.table, r.dst, r.dst_len, r.priority)
        }
        (Kind::Test, _) => Class::Test(ev.test_dir),
        (Kind::Lease, _) => Class::Lease(ev.lease.as_ref().map_or(0, |l| l.family())),
        _ => match ev.manager() {
            Some(m) => Class::Manager(m.dir),
            None => Class::State,
        },
    }
}

/// The coalescing key: the class within the link's current incarnation.
type Key = (u32, Class);

#[derive(Default)]
struct Slot {
    busy: bool,
    /// Bumped by each removal queued, so later events never fold into
    /// earlier ones.
    epoch: u32,
    /// Waiting jobs in arrival order, by sequence number.
    waiting: BTreeMap<u64, (Key, Job)>,
    by_key: FxMap<Key, u64>,
}

pub struct Scheduler {
    max_parallel: usize,
    running: usize,
    seq: u64,
    slots: FxMap<u32, Slot>,
    /// Links with waiting jobs and no run in progress, in arrival order.
    ready: VecDeque<u32>,
    /// Events folded into newer ones since start.
    pub coalesced: u64,
    /// Emptied slots kept for the next link that needs one: an idle
    /// link's event would otherwise allocate and free a slot's tables
    /// every time (a route burst is a million such events).
    spare: Vec<Slot>,
}

/// How many emptied slots are kept.
const SPARE: usize = 4;

impl Scheduler {
    pub fn new(max_parallel: usize) -> Self {
        Scheduler {
            max_parallel: max_parallel.max(1),
            running: 0,
            seq: 0,
            slots: FxMap::default(),
            ready: VecDeque::new(),
            coalesced: 0,
            spare: Vec::new(),
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
        self.slots.values().map(|s| s.waiting.len()).sum()
    }

    /// Queues an event. A waiting event of the same class for the same link
    /// is replaced by this newer one, which goes to the back of the link's
    /// line (so hooks always see increasing event ids); the run keeps the
    /// state the link's hooks saw before the replaced one. `scripts` is
    /// what the deciding filter lets run (the newer event's filter wins).
    pub fn submit(&mut self, event: Rc<Event>, scripts: Option<Rc<[String]>>) {
        let link = event.index;
        self.seq += 1;
        let seq = self.seq;
        let spare = &mut self.spare;
        let slot = self
            .slots
            .entry(link)
            .or_insert_with(|| spare.pop().unwrap_or_default());
        let key = (slot.epoch, class(&event));
        let mut run = RunInfo {
            previous: event.previous,
            coalesced: 0,
        };
        // Whether the link is in `ready` already: it is once anything of
        // it waits, replaced or not.
        let first = slot.waiting.is_empty();
        if let Some(old_seq) = slot.by_key.remove(&key) {
            if let Some((_, old)) = slot.waiting.remove(&old_seq) {
                run.coalesced = old.run.coalesced + 1;
                run.previous = old.run.previous;
                self.coalesced += 1;
            }
        }
        if event.kind == Kind::Removed {
            slot.epoch = slot.epoch.wrapping_add(1);
        }
        slot.by_key.insert(key.clone(), seq);
        slot.waiting.insert(
            seq,
            (
                key,
                Job {
                    event,
                    run,
                    scripts,
                },
            ),
        );
        if !slot.busy && first {
            self.ready.push_back(link);
        }
    }

    /// An event of `link` submitted now would be the next to start: the
    /// link has nothing running or waiting, nothing else waits, and a run
    /// may start. The reactor then asks the runner whether it has hooks
    /// at all before queueing it.
    pub fn starts_at_once(&self, link: u32) -> bool {
        self.running < self.max_parallel && self.ready.is_empty() && !self.slots.contains_key(&link)
    }

    /// Nothing runs and nothing waits.
    pub fn idle(&self) -> bool {
        self.running == 0 && self.slots.is_empty()
    }

    /// Shrinks the tables a burst grew: a route hook running through a
    /// full table leaves maps sized for it otherwise.
    pub fn shrink(&mut self) {
        self.slots.shrink_to_fit();
        self.spare = Vec::new();
        for s in self.slots.values_mut() {
            s.by_key.shrink_to_fit();
        }
        self.ready.shrink_to_fit();
    }

    /// The next job that may start now, if any. Its link is busy until
    /// `done` is called for it.
    pub fn next(&mut self) -> Option<Job> {
        while self.running < self.max_parallel {
            let link = self.ready.pop_front()?;
            let Some(slot) = self.slots.get_mut(&link) else {
                continue;
            };
            if slot.busy {
                continue;
            }
            let Some((_, (key, job))) = slot.waiting.pop_first() else {
                continue;
            };
            slot.by_key.remove(&key);
            slot.busy = true;
            self.running += 1;
            return Some(job);
        }
        None
    }

    /// The hooks for this link's current job are over.
    pub fn done(&mut self, link: u32) {
        let Some(slot) = self.slots.get_mut(&link) else {
            return;
        };
        if slot.busy {
            slot.busy = false;
            self.running -= 1;
        }
        if slot.waiting.is_empty() {
            if let Some(mut s) = self.slots.remove(&link) {
                if self.spare.len() < SPARE {
                    // by_key is empty with the waiting list; the epoch
                    // only has to differ within one link's keys.
                    s.epoch = 0;
                    self.spare.push(s);
                }
            }
        } else {
            self.ready.push_back(link);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::event::{Origin, RouteChange};
    use crate::core::state::OperState;
    use crate::core::types::RouteInfo;

    fn ev(id: u64, link: u32, kind: Kind, state: OperState, prev: Option<OperState>) -> Rc<Event> {
        Event::new(
            id,
            0,
            kind,
            Origin::Kernel,
            link,
            format!("l{link}").into_bytes(),
            state,
            prev,
        )
        .seal(None)
    }

    fn route_ev(id: u64, link: u32, dst: &str, added: bool) -> Rc<Event> {
        let mut e = Event::new(
            id,
            0,
            Kind::Routes,
            Origin::Kernel,
            link,
            b"l".to_vec(),
            Routable,
            None,
        );
        e.route = Some(RouteChange {
            added,
            route: RouteInfo {
                dst: Some(dst.parse().unwrap()),
                dst_len: 32,
                oif: link,
                ..RouteInfo::table_start(2, 254)
            },
        });
        e.seal(None)
    }

    use OperState::*;

    #[test]
    fn serial_per_link_parallel_across_links() {
        let mut s = Scheduler::new(2);
        s.submit(ev(1, 1, Kind::State, Carrier, None), None);
        s.submit(ev(2, 2, Kind::State, Carrier, None), None);
        s.submit(ev(3, 3, Kind::State, Carrier, None), None);
        assert_eq!(s.next().unwrap().event.id, 1);
        assert_eq!(s.next().unwrap().event.id, 2);
        assert!(s.next().is_none(), "limit of 2 reached");
        s.submit(ev(4, 1, Kind::State, Routable, Some(Carrier)), None);
        assert!(s.next().is_none());
        s.done(2);
        assert_eq!(s.next().unwrap().event.id, 3);
        s.done(1);
        assert_eq!(s.next().unwrap().event.id, 4);
        assert!(s.next().is_none());
        s.done(3);
        s.done(1);
        assert!(s.next().is_none());
        assert_eq!(s.running(), 0);
        assert_eq!(s.queued(), 0);
    }

    #[test]
    fn busy_link_coalesces_state_to_the_newest() {
        let mut s = Scheduler::new(4);
        s.submit(ev(1, 1, Kind::State, NoCarrier, Some(Carrier)), None);
        assert_eq!(s.next().unwrap().event.id, 1);
        s.submit(ev(2, 1, Kind::State, Carrier, Some(NoCarrier)), None);
        s.submit(ev(4, 1, Kind::State, Degraded, Some(Carrier)), None);
        s.submit(ev(5, 1, Kind::State, Routable, Some(Degraded)), None);
        assert!(s.next().is_none());
        assert_eq!(s.queued(), 1);
        s.done(1);
        let a = s.next().unwrap();
        assert_eq!(
            (a.event.id, a.event.state, a.run.previous, a.run.coalesced),
            (5, Routable, Some(NoCarrier), 2)
        );
        // The event itself is untouched: it says what consumers were told.
        assert_eq!(a.event.previous, Some(Degraded));
        s.done(1);
        assert!(s.next().is_none());
        assert_eq!(s.coalesced, 2);
    }

    #[test]
    fn routes_coalesce_per_route_so_each_last_change_runs() {
        let mut s = Scheduler::new(4);
        s.submit(ev(1, 1, Kind::State, Routable, None), None);
        assert_eq!(s.next().unwrap().event.id, 1);
        // A link going down flushes three routes; one of them flaps.
        s.submit(route_ev(2, 1, "10.0.0.1", true), None);
        s.submit(route_ev(3, 1, "10.0.0.2", false), None);
        s.submit(route_ev(4, 1, "10.0.0.1", false), None);
        s.submit(route_ev(5, 1, "10.0.0.3", false), None);
        assert_eq!(s.queued(), 3);
        s.done(1);
        let mut seen = Vec::new();
        while let Some(j) = s.next() {
            let rc = j.event.route.as_ref().unwrap();
            seen.push((j.event.id, rc.route.dst.unwrap().to_string(), rc.added));
            s.done(1);
        }
        assert_eq!(
            seen,
            vec![
                (3, "10.0.0.2".to_string(), false),
                (4, "10.0.0.1".to_string(), false),
                (5, "10.0.0.3".to_string(), false)
            ]
        );
    }

    #[test]
    fn removal_never_folds_into_a_link_that_reuses_the_index() {
        let mut s = Scheduler::new(4);
        s.submit(ev(1, 500, Kind::State, Off, None), None);
        assert_eq!(s.next().unwrap().event.id, 1);
        s.submit(ev(2, 500, Kind::Removed, Off, Some(Off)), None);
        s.submit(ev(3, 500, Kind::State, Off, None), None);
        s.submit(ev(4, 500, Kind::State, Carrier, Some(Off)), None);
        s.done(500);
        let a = s.next().unwrap();
        assert_eq!((a.event.id, a.event.kind), (2, Kind::Removed));
        s.done(500);
        let b = s.next().unwrap();
        assert_eq!((b.event.id, b.run.previous, b.run.coalesced), (4, None, 1));
        s.done(500);
        assert!(s.next().is_none());
    }

    #[test]
    fn a_test_does_not_replace_a_state_event() {
        let mut s = Scheduler::new(1);
        s.submit(ev(1, 1, Kind::State, Carrier, None), None);
        assert!(s.next().is_some());
        s.submit(ev(2, 1, Kind::State, Routable, Some(Carrier)), None);
        s.submit(ev(3, 1, Kind::Test, Routable, Some(Routable)), None);
        assert_eq!(s.queued(), 2);
    }

    #[test]
    fn replacing_a_waiting_event_does_not_queue_the_link_again() {
        let mut s = Scheduler::new(1);
        s.submit(ev(1, 1, Kind::State, Carrier, None), None);
        assert!(s.next().is_some());
        for id in 2..10_000 {
            s.submit(ev(id, 2, Kind::State, Carrier, None), None);
        }
        assert_eq!(s.ready.len(), 1);
        s.done(1);
        assert_eq!(s.next().unwrap().event.id, 9_999);
    }

    #[test]
    fn done_for_unknown_link_is_harmless() {
        let mut s = Scheduler::new(1);
        s.done(9);
        s.submit(ev(1, 1, Kind::State, Carrier, None), None);
        assert_eq!(s.next().unwrap().event.id, 1);
        s.done(1);
        s.done(1);
        assert_eq!(s.running(), 0);
    }
}
