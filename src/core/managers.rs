//! What the network managers (systemd-networkd, NetworkManager) report
//! per link, and which hook directories that makes run. Each manager is a
//! source of its own with its own resync bracket: after a reconnect, or a
//! restart of the manager (its bus name changed owner), its state is read
//! again between `Begin` and `End`, and only what differs from what hooks
//! were last told makes events, so nothing is lost and nothing doubled.
//!
//! Every state here is one of a fixed list of names and is kept as a
//! `&'static str` from that list: a string from the bus that is not on the
//! list never becomes a hook directory, an environment value or a log
//! line (networkd-dispatcher's CVE-2022-29799 took a state string with
//! `../` as a path component). The source validates with [`known`] before
//! anything reaches this module.
//!
//! Pure: decoded inputs in, events out; no I/O and no clock.

// The kernel-only build (no `dbus` feature) keeps this pure module and
// its tests, with nothing feeding it.
#![cfg_attr(not(feature = "dbus"), allow(dead_code))]

use std::collections::{BTreeMap, BTreeSet};

/// A network manager, as hooks see it in `BACKEND`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Manager {
    Networkd,
    NetworkManager,
}

impl Manager {
    pub fn as_str(self) -> &'static str {
        match self {
            Manager::Networkd => "systemd-networkd",
            Manager::NetworkManager => "NetworkManager",
        }
    }

    pub const ALL: [Manager; 2] = [Manager::Networkd, Manager::NetworkManager];
}

/// networkd's OperationalState names (systemd 252, `networkctl(1)`).
pub const OPER: &[&str] = &[
    "missing",
    "off",
    "no-carrier",
    "dormant",
    "degraded-carrier",
    "carrier",
    "degraded",
    "enslaved",
    "routable",
];
/// CarrierState.
pub const CARRIER: &[&str] = &[
    "off",
    "no-carrier",
    "dormant",
    "degraded-carrier",
    "carrier",
    "enslaved",
];
/// AddressState, IPv4AddressState, IPv6AddressState.
pub const ADDRESS: &[&str] = &["off", "degraded", "routable"];
/// OnlineState; networkd reports an empty one for links it does not manage.
pub const ONLINE: &[&str] = &["", "offline", "partial", "online"];
/// AdministrativeState (the link's setup state).
pub const ADMIN: &[&str] = &[
    "pending",
    "initialized",
    "configuring",
    "configured",
    "unmanaged",
    "failed",
    "linger",
];

/// NetworkManager's `NMDeviceState` values and the names hooks see
/// (`nmcli`'s names without the parenthesised detail).
pub const NM_STATES: &[(u32, &str)] = &[
    (0, "unknown"),
    (10, "unmanaged"),
    (20, "unavailable"),
    (30, "disconnected"),
    (40, "prepare"),
    (50, "config"),
    (60, "need-auth"),
    (70, "ip-config"),
    (80, "ip-check"),
    (90, "secondaries"),
    (100, "activated"),
    (110, "deactivating"),
    (120, "failed"),
];

/// The directory-safe name for an NM device state, if it is one.
pub fn nm_state(v: u32) -> Option<&'static str> {
    NM_STATES.iter().find(|(n, _)| *n == v).map(|(_, s)| *s)
}

/// `s` as the list's own `&'static str`, or None when it is not on it.
pub fn known(list: &'static [&'static str], s: &str) -> Option<&'static str> {
    list.iter().copied().find(|k| *k == s)
}

/// One property of a networkd link or of its manager object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Prop {
    Oper,
    Carrier,
    Address,
    Ipv4Address,
    Ipv6Address,
    Online,
    Admin,
}

impl Prop {
    /// The DBus property name, and the list its values must be on.
    pub const ALL: [(Prop, &'static str, &'static [&'static str]); 7] = [
        (Prop::Oper, "OperationalState", OPER),
        (Prop::Carrier, "CarrierState", CARRIER),
        (Prop::Address, "AddressState", ADDRESS),
        (Prop::Ipv4Address, "IPv4AddressState", ADDRESS),
        (Prop::Ipv6Address, "IPv6AddressState", ADDRESS),
        (Prop::Online, "OnlineState", ONLINE),
        (Prop::Admin, "AdministrativeState", ADMIN),
    ];

    pub fn by_name(name: &str) -> Option<(Prop, &'static [&'static str])> {
        Prop::ALL
            .iter()
            .find(|(_, n, _)| *n == name)
            .map(|(p, _, l)| (*p, *l))
    }
}

/// What a manager reports of one link (or, at index 0, of itself). An
/// empty string is "not reported".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub oper: &'static str,
    pub carrier: &'static str,
    pub address: &'static str,
    pub ipv4_address: &'static str,
    pub ipv6_address: &'static str,
    pub online: &'static str,
    pub admin: &'static str,
    /// NetworkManager's device state name.
    pub device: &'static str,
    /// NetworkManager's reason number for the last state change.
    pub reason: u32,
}

impl Report {
    fn set(&mut self, p: Prop, v: &'static str) {
        match p {
            Prop::Oper => self.oper = v,
            Prop::Carrier => self.carrier = v,
            Prop::Address => self.address = v,
            Prop::Ipv4Address => self.ipv4_address = v,
            Prop::Ipv6Address => self.ipv6_address = v,
            Prop::Online => self.online = v,
            Prop::Admin => self.admin = v,
        }
    }

    /// Whether the manager configures the link (and so owns its states).
    pub fn managed(&self) -> bool {
        match self.device {
            "" => !matches!(self.admin, "" | "unmanaged"),
            d => !matches!(d, "unknown" | "unmanaged"),
        }
    }
}

/// One decoded, validated report from a manager.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// The manager's state is read again from here; links not reported
    /// before `End` are gone.
    Begin(Manager),
    End(Manager),
    /// The bus or the manager went away: its links are forgotten, without
    /// events, until it is back (the kernel's own events go on).
    Gone(Manager),
    /// networkd: properties of link `index` (0: the manager object).
    Networkd {
        index: u32,
        props: Vec<(Prop, &'static str)>,
    },
    /// NetworkManager: device `index` is now in `state` for `reason`.
    Device {
        index: u32,
        state: &'static str,
        reason: u32,
    },
    /// NetworkManager: a device object is gone.
    DeviceGone(u32),
}

/// Why an event was made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Why {
    /// The first read of the manager's state at start.
    Startup,
    Change,
}

/// An event a manager's report makes: run `dir` for link `index`
/// (0 and `manager.d` for networkd's own state).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Out {
    pub manager: Manager,
    pub index: u32,
    pub dir: &'static str,
    pub why: Why,
    pub report: Report,
    /// The directory this link's manager hooks were told before, if any.
    pub previous: Option<&'static str>,
}

/// What hooks were last told of a link by its manager.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Told {
    /// The link's state directory (networkd's oper state, NM's device
    /// state; `manager` for the manager object).
    state: &'static str,
    admin: &'static str,
    /// The manager object's report, for `manager.d`: any change runs it.
    whole: Report,
}

#[derive(Default)]
struct Side {
    /// Between `Begin` and `End`.
    resyncing: bool,
    /// Once a first resync ended: until then, nothing was told.
    synced: bool,
    /// Whether a resync ever ended since start: the first one is the
    /// start-up replay.
    ever: bool,
    reports: BTreeMap<u32, Report>,
    told: BTreeMap<u32, Told>,
    /// Indexes reported since `Begin`.
    seen: BTreeSet<u32>,
}

pub struct Managers {
    sides: [Side; 2],
    run_on_startup: bool,
    /// Reports that carried nothing new, and reports for devices of an
    /// unknown index: for status.
    pub ignored: u64,
}

fn side(m: Manager) -> usize {
    m as usize
}

impl Managers {
    pub fn new(run_on_startup: bool) -> Self {
        Managers {
            sides: Default::default(),
            run_on_startup,
            ignored: 0,
        }
    }

    pub fn set_run_on_startup(&mut self, v: bool) {
        self.run_on_startup = v;
    }

    /// What `m` last reported of link `index`.
    #[cfg(test)]
    pub fn report(&self, m: Manager, index: u32) -> Option<&Report> {
        self.sides[side(m)].reports.get(&index)
    }

    /// Whether link `index`'s states come from a manager now: then the
    /// kernel's own state events for it do not run hooks (they would run
    /// the same directory twice).
    pub fn claims(&self, index: u32) -> bool {
        Manager::ALL.iter().any(|&m| {
            let s = &self.sides[side(m)];
            s.synced && s.reports.get(&index).is_some_and(Report::managed)
        })
    }

    /// The kernel removed link `index`: what the managers said of it, and
    /// what hooks were told, go with it. Kept, a link that later gets the
    /// same index (moved in from another namespace, or made with `index
    /// N`) was claimed by the gone link's report, so its own kernel
    /// events ran nothing, and its first state equal to the old link's
    /// last made no event; and every link ever seen stayed in memory.
    pub fn forget(&mut self, index: u32) {
        if index == 0 {
            return;
        }
        for s in &mut self.sides {
            s.reports.remove(&index);
            s.told.remove(&index);
            s.seen.remove(&index);
        }
    }

    /// Links `m` reports, for status.
    pub fn links(&self, m: Manager) -> usize {
        self.sides[side(m)]
            .reports
            .keys()
            .filter(|&&i| i != 0)
            .count()
    }

    pub fn apply(&mut self, input: Input, out: &mut Vec<Out>) {
        match input {
            Input::Begin(m) => {
                let s = &mut self.sides[side(m)];
                s.resyncing = true;
                s.seen.clear();
            }
            Input::End(m) => self.end(m, out),
            Input::Gone(m) => {
                // What hooks were told is kept: when the manager is back, a
                // link in the same state makes no event, and one whose state
                // changed meanwhile makes exactly one.
                let s = &mut self.sides[side(m)];
                s.resyncing = false;
                s.synced = false;
                s.reports.clear();
                s.seen.clear();
            }
            Input::Networkd { index, props } => {
                let m = Manager::Networkd;
                let s = &mut self.sides[side(m)];
                let r = s.reports.entry(index).or_default();
                let before = *r;
                for (p, v) in props {
                    r.set(p, v);
                }
                let after = *r;
                if s.resyncing {
                    s.seen.insert(index);
                } else if s.synced {
                    if before == after {
                        self.ignored += 1;
                    }
                    self.tell(m, index, Why::Change, out);
                }
            }
            Input::Device {
                index,
                state,
                reason,
            } => {
                let m = Manager::NetworkManager;
                let s = &mut self.sides[side(m)];
                let r = s.reports.entry(index).or_default();
                r.device = state;
                r.reason = reason;
                if s.resyncing {
                    s.seen.insert(index);
                } else if s.synced {
                    self.tell(m, index, Why::Change, out);
                }
            }
            Input::DeviceGone(index) => {
                let s = &mut self.sides[side(Manager::NetworkManager)];
                s.reports.remove(&index);
                s.told.remove(&index);
                s.seen.remove(&index);
            }
        }
    }

    fn end(&mut self, m: Manager, out: &mut Vec<Out>) {
        let s = &mut self.sides[side(m)];
        if !s.resyncing {
            return;
        }
        s.resyncing = false;
        s.synced = true;
        let first = !s.ever;
        s.ever = true;
        let seen = std::mem::take(&mut s.seen);
        s.reports.retain(|i, _| seen.contains(i));
        s.told.retain(|i, _| seen.contains(i));
        if first && !self.run_on_startup {
            // Told without running anything: later changes run hooks.
            let s = &mut self.sides[side(m)];
            let idx: Vec<u32> = s.reports.keys().copied().collect();
            for i in idx {
                let r = s.reports[&i];
                s.told.insert(i, told_of(m, i, &r));
            }
            return;
        }
        let why = if first { Why::Startup } else { Why::Change };
        for i in seen {
            self.tell(m, i, why, out);
        }
    }

    /// Events for what link `index`'s report says that hooks were not yet
    /// told: its state directory first, then networkd's setup state.
    fn tell(&mut self, m: Manager, index: u32, why: Why, out: &mut Vec<Out>) {
        let s = &mut self.sides[side(m)];
        let Some(&report) = s.reports.get(&index) else {
            return;
        };
        let told = s.told.entry(index).or_default();
        let now = told_of(m, index, &report);
        let previous = (!told.state.is_empty()).then_some(told.state);
        let mut push = |dir: &'static str| {
            out.push(Out {
                manager: m,
                index,
                dir,
                why,
                report,
                previous,
            })
        };
        if index == 0 && m == Manager::Networkd {
            if told.whole != now.whole {
                push("manager");
            }
        } else {
            // A link the manager leaves alone has the kernel's states
            // (the kernel's events run for it); only its setup state is
            // the manager's to tell.
            if report.managed() && !now.state.is_empty() && now.state != told.state {
                push(now.state);
            }
            if !now.admin.is_empty() && now.admin != told.admin {
                push(now.admin);
            }
        }
        *told = now;
    }
}

fn told_of(m: Manager, index: u32, r: &Report) -> Told {
    match m {
        Manager::Networkd if index == 0 => Told {
            state: "manager",
            admin: "",
            whole: *r,
        },
        Manager::Networkd => Told {
            state: r.oper,
            admin: r.admin,
            whole: Report::default(),
        },
        Manager::NetworkManager => Told {
            state: r.device,
            admin: "",
            whole: Report::default(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every directory a manager's event can run is one `netevctl test`,
    /// `netevctl hooks` and filters' `event_types` know.
    #[test]
    fn every_manager_directory_is_a_known_state() {
        let dirs = OPER
            .iter()
            .chain(ADMIN)
            .chain(NM_STATES.iter().map(|(_, s)| s))
            .chain(&["manager"]);
        for d in dirs {
            assert!(netevd_ctl::STATES.contains(d), "{d} is not in STATES");
        }
    }
    use Prop::*;

    fn nd(index: u32, props: &[(Prop, &'static str)]) -> Input {
        Input::Networkd {
            index,
            props: props.to_vec(),
        }
    }

    fn run(m: &mut Managers, inputs: Vec<Input>) -> Vec<(u32, &'static str, Why)> {
        let mut out = Vec::new();
        for i in inputs {
            m.apply(i, &mut out);
        }
        out.iter().map(|o| (o.index, o.dir, o.why)).collect()
    }

    fn started(m: &mut Managers) -> Vec<(u32, &'static str, Why)> {
        run(
            m,
            vec![
                Input::Begin(Manager::Networkd),
                nd(0, &[(Oper, "routable"), (Online, "online")]),
                nd(2, &[(Oper, "routable"), (Admin, "configured")]),
                nd(3, &[(Oper, "off"), (Admin, "unmanaged")]),
                Input::End(Manager::Networkd),
            ],
        )
    }

    #[test]
    fn startup_replays_each_link_and_the_manager() {
        let mut m = Managers::new(true);
        assert!(!m.claims(2), "nothing is claimed before the first read");
        assert_eq!(
            started(&mut m),
            vec![
                (0, "manager", Why::Startup),
                (2, "routable", Why::Startup),
                (2, "configured", Why::Startup),
                (3, "unmanaged", Why::Startup),
            ]
        );
        assert!(m.claims(2));
        assert!(!m.claims(3), "an unmanaged link keeps the kernel's events");
        assert!(!m.claims(9));
        assert_eq!(m.links(Manager::Networkd), 2);
    }

    #[test]
    fn without_startup_replay_only_changes_run() {
        let mut m = Managers::new(false);
        assert!(started(&mut m).is_empty());
        assert_eq!(
            run(&mut m, vec![nd(2, &[(Oper, "degraded")])]),
            vec![(2, "degraded", Why::Change)]
        );
    }

    #[test]
    fn changes_run_their_directory_once() {
        let mut m = Managers::new(true);
        started(&mut m);
        let out = run(
            &mut m,
            vec![
                // Carrier alone changes no directory.
                nd(2, &[(Carrier, "carrier")]),
                nd(2, &[(Oper, "no-carrier"), (Carrier, "no-carrier")]),
                nd(2, &[(Oper, "no-carrier")]),
                nd(2, &[(Admin, "configuring")]),
                nd(2, &[(Oper, "routable"), (Admin, "configured")]),
                nd(0, &[(Online, "partial")]),
                nd(0, &[(Online, "partial")]),
            ],
        );
        assert_eq!(
            out,
            vec![
                (2, "no-carrier", Why::Change),
                (2, "configuring", Why::Change),
                (2, "routable", Why::Change),
                (2, "configured", Why::Change),
                (0, "manager", Why::Change),
            ]
        );
    }

    #[test]
    fn a_restart_resyncs_only_what_differs() {
        let mut m = Managers::new(true);
        started(&mut m);
        let mut out = Vec::new();
        m.apply(Input::Gone(Manager::Networkd), &mut out);
        assert!(
            !m.claims(2),
            "the kernel's events run while networkd is away"
        );
        // Changes while it restarts are read at its return, once.
        let got = run(
            &mut m,
            vec![
                Input::Begin(Manager::Networkd),
                nd(0, &[(Oper, "routable"), (Online, "online")]),
                nd(2, &[(Oper, "degraded"), (Admin, "configured")]),
                // An update inside the bracket is folded in.
                nd(2, &[(Oper, "routable")]),
                nd(4, &[(Oper, "carrier"), (Admin, "configuring")]),
                Input::End(Manager::Networkd),
            ],
        );
        assert_eq!(
            got,
            vec![(4, "carrier", Why::Change), (4, "configuring", Why::Change)],
            "link 2 ended where it was; link 3 is gone without an event"
        );
        assert!(m.report(Manager::Networkd, 3).is_none());
        assert!(m.claims(2));
    }

    #[test]
    fn a_change_lost_in_a_restart_runs_once() {
        let mut m = Managers::new(true);
        started(&mut m);
        let got = run(
            &mut m,
            vec![
                Input::Gone(Manager::Networkd),
                Input::Begin(Manager::Networkd),
                nd(2, &[(Oper, "no-carrier"), (Admin, "configured")]),
                Input::End(Manager::Networkd),
                nd(2, &[(Oper, "no-carrier")]),
            ],
        );
        assert_eq!(got, vec![(2, "no-carrier", Why::Change)]);
    }

    #[test]
    fn network_manager_devices() {
        let mut m = Managers::new(true);
        let dev = |index, state| Input::Device {
            index,
            state,
            reason: 40,
        };
        let got = run(
            &mut m,
            vec![
                Input::Begin(Manager::NetworkManager),
                dev(5, "unavailable"),
                dev(6, "unmanaged"),
                Input::End(Manager::NetworkManager),
                dev(5, "disconnected"),
                dev(5, "activated"),
                dev(5, "activated"),
                Input::DeviceGone(5),
            ],
        );
        assert_eq!(
            got,
            vec![
                (5, "unavailable", Why::Startup),
                (5, "disconnected", Why::Change),
                (5, "activated", Why::Change),
            ]
        );
        assert!(!m.claims(5) && !m.claims(6));
        assert_eq!(nm_state(100), Some("activated"));
        assert_eq!(nm_state(101), None);
    }

    #[test]
    fn only_listed_names_pass() {
        assert_eq!(known(OPER, "routable"), Some("routable"));
        for bad in ["../../tmp/x", "routable/..", "", "Routable", "routable\n"] {
            assert_eq!(known(OPER, bad), None, "{bad:?}");
        }
        assert_eq!(known(ONLINE, ""), Some(""));
        assert_eq!(Prop::by_name("OnlineState").map(|p| p.0), Some(Online));
        assert!(Prop::by_name("Bogus").is_none());
    }

    #[test]
    fn previous_is_what_hooks_were_told() {
        let mut m = Managers::new(true);
        started(&mut m);
        let mut out = Vec::new();
        m.apply(nd(2, &[(Oper, "degraded")]), &mut out);
        assert_eq!(out[0].previous, Some("routable"));
        assert_eq!(out[0].report.admin, "configured");
    }

    #[test]
    fn an_index_that_comes_back_is_a_new_link() {
        let mut m = Managers::new(true);
        started(&mut m);
        assert!(m.claims(2));
        m.forget(2);
        assert!(!m.claims(2), "the gone link's report claims nothing");
        assert!(m.report(Manager::Networkd, 2).is_none());
        // Another link with index 2, in the state the old one was in:
        // its hooks are told, as for any new link.
        let got = run(
            &mut m,
            vec![nd(2, &[(Oper, "routable"), (Admin, "configured")])],
        );
        assert_eq!(
            got,
            vec![(2, "routable", Why::Change), (2, "configured", Why::Change)]
        );
        // The manager object is not a link.
        m.forget(0);
        assert!(m.report(Manager::Networkd, 0).is_some());
    }
}
