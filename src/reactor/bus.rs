//! The reactor's side of the network managers: the bus source's inputs
//! through the managers' core (core/managers.rs), the events that makes,
//! and which backend is followed. Also the one rule that keeps a change
//! from running one directory twice: for a link a manager configures, the
//! manager's events carry its state transitions, and the kernel's events
//! for those transitions run no hooks (subscribers and history still see
//! them). The kernel's route events, and its events that change no state
//! (a new address on a routable link), run as always.
//!
//! At start the kernel's dump is usually read before the bus answers, so
//! the kernel's state events wait (for hooks only) until the bus settled:
//! every name looked up and the followed manager read once, or the bus
//! unreachable, or `SETTLE_MAX` passed.

use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::config::Backend;
use crate::core::event::{Event, Kind, ManagerView, Origin};
use crate::core::managers::{Input, Manager, Out, Why};
use crate::core::state::OperState;
use crate::effect::dbus as calls;
use crate::source::dbus::{self, Bus, Want};

use super::{now_ms, token, Daemon};

/// The longest the kernel's start-up events wait for the bus.
pub const SETTLE_MAX: Duration = Duration::from_secs(3);

/// What `system.backend` asks of the bus, if anything.
pub fn want(b: &Backend) -> Option<Want> {
    match b {
        Backend::Auto => Some(Want::Auto),
        Backend::Networkd => Some(Want::One(Manager::Networkd)),
        Backend::NetworkManager => Some(Want::One(Manager::NetworkManager)),
        Backend::Kernel | Backend::Dhclient => None,
    }
}

pub fn resolve_settings(c: &crate::config::Config) -> calls::Settings {
    calls::Settings {
        use_dns: c.backends.use_dns,
        use_domain: c.backends.use_domain,
        use_hostname: c.backends.use_hostname,
    }
}

pub fn open(c: &crate::config::Config, now: Instant) -> Option<Bus> {
    want(&c.backend).map(|w| {
        Bus::new(
            dbus::Settings {
                address: Bus::address_from_env(),
                want: w,
                emit_json: c.backends.emit_json,
            },
            now,
        )
    })
}

/// Whether dhclient's lease files exist, for `system.backend: auto`.
pub fn dhclient_leases_present(c: &crate::config::Config) -> bool {
    #[cfg(feature = "dhclient")]
    return crate::source::lease::lease_files_present(&c.dhclient);
    #[cfg(not(feature = "dhclient"))]
    {
        let _ = c;
        false
    }
}

impl Daemon {
    /// The bus is ready (`ready`) or its timer is due.
    pub(super) fn on_dbus(&mut self, ready: bool) {
        self.runner.input_read();
        let now = Instant::now();
        let Some(bus) = self.bus.as_mut() else {
            return;
        };
        let reg = self.poll.registry();
        if ready {
            bus.on_ready(reg, token::DBUS, now, &mut self.mgr_inputs);
        } else {
            bus.on_timer(reg, token::DBUS, now, &mut self.mgr_inputs);
        }
        let disconnects = bus.stats.disconnects;
        let answers = std::mem::take(&mut bus.answers);
        if disconnects != self.bus_disconnects {
            // resolved and hostnamed may have lost what they were told.
            self.bus_disconnects = disconnects;
            self.resolve.reset();
        }
        for (serial, res) in answers {
            self.resolve.answer(serial, res, now);
        }
        self.apply_managers();
        self.settle(now);
        self.send_resolve(Instant::now());
    }

    /// Sends the resolved and hostnamed calls that are due.
    fn send_resolve(&mut self, now: Instant) {
        if !self.resolve.active() {
            return;
        }
        let Some(bus) = self.bus.as_mut() else {
            return;
        };
        if !bus.up() {
            return;
        }
        for (k, v) in self.resolve.due(now) {
            match calls::message(&k, &v).and_then(|m| bus.call_other(m)) {
                Some(serial) => {
                    log::debug!("{}: sent", calls::describe(&k, &v));
                    self.resolve.sent(serial, k, v);
                }
                None => self.resolve.send_failed(k, now),
            }
        }
        bus.register(self.poll.registry(), token::DBUS);
    }

    /// When the bus wants the loop back.
    pub(super) fn dbus_deadline(&self) -> Option<Instant> {
        let bus = self.bus.as_ref()?.next_deadline();
        let hold = self.held_kernel.as_ref().map(|_| self.started + SETTLE_MAX);
        [bus, hold, self.resolve.next_deadline()]
            .into_iter()
            .flatten()
            .min()
    }

    fn apply_managers(&mut self) {
        let inputs = std::mem::take(&mut self.mgr_inputs);
        let mut out = std::mem::take(&mut self.mgr_out);
        for i in inputs {
            if let Input::Networkd { index, .. } | Input::Device { index, .. } = &i {
                if !self.known_link(*index) {
                    log::warn!(
                        "dbus: ignored a report of link {index}: no such link here (or one of \
                         another name: the manager serves another network namespace)"
                    );
                    continue;
                }
            }
            self.managers.apply(i, &mut out);
        }
        let chosen = self.bus.as_ref().and_then(Bus::chosen);
        for o in out.drain(..) {
            if Some(o.manager) != chosen {
                continue;
            }
            let ev = self.manager_event(&o);
            let ev = self.seal(ev);
            self.publish(ev);
        }
        self.mgr_out = out;
        self.dispatch(Instant::now());
    }

    /// Whether link `index` exists for the kernel or in the manager's own
    /// list: a report for any other comes from an object path that names
    /// nothing, and is not kept (a peer could fill memory with them).
    ///
    /// When both know it by different names, the manager speaks of another
    /// network namespace (a host's bus seen from a container): its reports
    /// are not this namespace's links.
    fn known_link(&self, index: u32) -> bool {
        if index == 0 {
            return true;
        }
        let theirs = self.bus.as_ref().and_then(|b| b.link_name(index));
        let ours = self.core.link(index);
        match (theirs, ours) {
            (Some(t), Some(l)) => t.as_bytes() == l.info.name.as_slice(),
            (Some(_), None) | (None, Some(_)) => true,
            (None, None) => false,
        }
    }

    fn manager_event(&mut self, o: &Out) -> Event {
        let kind = match o.why {
            Why::Startup => Kind::Startup,
            Why::Change => Kind::State,
        };
        let origin = match o.manager {
            Manager::Networkd => Origin::Networkd,
            Manager::NetworkManager => Origin::NetworkManager,
        };
        let mut ev = self.core.manager_event(o.index, kind, origin, now_ms());
        let bus = self.bus.as_ref();
        if ev.name.is_empty() {
            if let Some(n) = bus.and_then(|b| b.link_name(o.index)) {
                ev.name = n.as_bytes().to_vec();
            }
        }
        let mut view = ManagerView {
            dir: o.dir,
            previous: o.previous,
            report: o.report,
            ..ManagerView::default()
        };
        if o.index != 0 {
            view.gateways = self
                .core
                .routes()
                .defaults()
                .filter(|r| r.oif == o.index && r.table == crate::core::types::RT_TABLE_MAIN)
                .filter_map(|r| r.gateway)
                .collect();
            if o.manager == Manager::Networkd {
                let x = dbus::read_extras(&self.config.backends.networkd_state_dir, o.index);
                view.dns = x.dns;
                view.domains = x.domains;
                view.hostname = x.hostname;
                if self.config.backends.emit_json {
                    view.describe = bus.and_then(|b| b.describe(o.index)).map(str::to_string);
                }
                if self.resolve.active() && view.report.managed() {
                    self.resolve
                        .set_link(o.index, &view.dns, &view.domains, &view.hostname);
                }
            }
        }
        if o.manager == Manager::NetworkManager {
            if let Some(d) = bus.and_then(|b| b.nm_details(o.index)) {
                view.connection_id = d.id.clone();
                view.connection_uuid = d.uuid.clone();
                view.ip4 = d.ip4.clone();
                view.ip6 = d.ip6.clone();
                view.ip4_gateway = d.gateway4.clone();
                view.ip6_gateway = d.gateway6.clone();
                view.dns = d.dns4.iter().chain(&d.dns6).cloned().collect();
            }
        }
        ev.manager = Some(Box::new(view));
        ev
    }

    /// Whether a kernel event is one the manager reports itself.
    pub(super) fn claimed(&self, ev: &Event) -> bool {
        ev.origin == Origin::Kernel
            && match ev.kind {
                Kind::Startup => true,
                Kind::State => ev.previous != Some(ev.state),
                _ => false,
            }
            && self.managers.claims(ev.index)
    }

    /// Whether an event runs hooks, by the rules in the module comment.
    pub(super) fn hooks_for(&mut self, ev: &Rc<Event>) -> bool {
        match ev.origin {
            Origin::Kernel => {
                if ev.kind == Kind::Removed {
                    self.kernel_told.remove(&ev.index);
                    self.resolve.link_gone(ev.index);
                    self.managers.forget(ev.index);
                    if let Some(b) = self.bus.as_mut() {
                        b.forget(ev.index);
                    }
                }
                if !matches!(ev.kind, Kind::Startup | Kind::State) {
                    return true;
                }
                if let Some(h) = self.held_kernel.as_mut() {
                    h.push(ev.clone());
                    return false;
                }
                if self.claimed(ev) {
                    log::debug!(
                        "event {}: {} reports this link's states; no hooks for the kernel's",
                        ev.id,
                        self.active.as_str()
                    );
                    return false;
                }
                if matches!(
                    self.config.backend,
                    Backend::Auto | Backend::Networkd | Backend::NetworkManager
                ) {
                    // A kernel event's directory is its state's.
                    self.kernel_told.insert(ev.index, ev.state);
                }
                true
            }
            Origin::Networkd | Origin::NetworkManager => {
                let same =
                    self.kernel_told.remove(&ev.index).map(OperState::as_str) == Some(ev.dir());
                if same {
                    log::debug!(
                        "event {}: the kernel's events ran {}.d for this link already",
                        ev.id,
                        ev.dir()
                    );
                }
                !same
            }
            // A lease is its own class of event: no manager reports it.
            Origin::Control | Origin::Dhclient => true,
        }
    }

    /// Ends start-up's wait once the bus answered (or took too long), and
    /// logs which backend `auto` chose.
    pub(super) fn settle(&mut self, now: Instant) {
        let Some(bus) = self.bus.as_ref() else {
            return;
        };
        if self.held_kernel.is_none() {
            return;
        }
        let timed_out = now >= self.started + SETTLE_MAX;
        if !bus.settled() && !timed_out {
            return;
        }
        let chosen = match bus.chosen() {
            Some(Manager::Networkd) => Backend::Networkd,
            Some(Manager::NetworkManager) => Backend::NetworkManager,
            None if self.config.backend == Backend::Auto => {
                Backend::auto(false, false, dhclient_leases_present(&self.config))
            }
            None => self.config.backend.clone(),
        };
        if self.config.backend == Backend::Auto {
            log::info!(
                "backend auto: {} ({})",
                chosen.as_str(),
                if bus.up() {
                    bus.status()
                } else if timed_out {
                    "the bus did not answer in time".to_string()
                } else {
                    "no system bus".to_string()
                }
            );
        }
        self.active = chosen;
        let held = self.held_kernel.take().unwrap_or_default();
        for ev in held {
            if self.hooks_for(&ev) {
                self.submit_hooks(ev);
            }
        }
        self.dispatch(Instant::now());
    }

    /// /health's bus and backend checks: whether each is well, and why.
    #[cfg_attr(not(feature = "http"), allow(dead_code))]
    pub(super) fn bus_health(&self) -> (bool, String, bool, String) {
        let manager = |b: &Backend| matches!(b, Backend::Networkd | Backend::NetworkManager);
        let (bus_ok, bus) = match &self.bus {
            // `auto` without a manager on the bus runs on the kernel (or
            // dhclient) as it should: a bus it does not use is no fault.
            Some(b)
                if !b.up() && !manager(&self.active) && self.config.backend == Backend::Auto =>
            {
                (
                    true,
                    format!(
                        "auto: {}; not needed by the {} backend",
                        b.status(),
                        self.active.as_str()
                    ),
                )
            }
            Some(b) => (b.up(), b.status()),
            None => (
                true,
                format!("not used by the {} backend", self.active.as_str()),
            ),
        };
        let wanted = &self.config.backend;
        let (backend_ok, backend) = if manager(wanted) && &self.active != wanted {
            (
                false,
                format!(
                    "{} was asked for and is not on the bus; running on {}",
                    wanted.as_str(),
                    self.active.as_str()
                ),
            )
        } else if *wanted == Backend::Auto {
            (true, format!("auto: {}", self.active.as_str()))
        } else {
            (true, self.active.as_str().to_string())
        };
        (bus_ok, bus, backend_ok, backend)
    }

    /// `status`'s backend: the one in force, and the bus's state.
    pub(super) fn backend_status(&self) -> (String, Option<String>) {
        // The backend in force, `auto`'s choice included; the bus line
        // says when the choice was automatic.
        let b = match self.bus.as_ref().and_then(Bus::chosen) {
            Some(Manager::Networkd) => Backend::Networkd,
            Some(Manager::NetworkManager) => Backend::NetworkManager,
            None => self.active.clone(),
        };
        let auto = if self.config.backend == Backend::Auto {
            "auto; "
        } else {
            ""
        };
        let bus = self.bus.as_ref().map(|bus| match bus.chosen() {
            Some(m) if bus.up() => format!(
                "{auto}{}; {} links reported",
                bus.status(),
                self.managers.links(m)
            ),
            _ => format!("{auto}{}", bus.status()),
        });
        (b.as_str().to_string(), bus)
    }
}

/// The dispatchers' hook trees, run beside netevd's own for their
/// manager's events, each with its own scheduler and runner:
///
/// - networkd-dispatcher's (`backends.systemd_networkd.
///   networkd_dispatcher_dir`): `<dir>/<state>.d/*` for networkd's link
///   events, with its variables (IFACE, STATE, AdministrativeState,
///   OperationalState, ESSID, IP_ADDRS, IP6_ADDRS, json) among netevd's;
/// - NetworkManager-dispatcher's (`backends.networkmanager.
///   dispatcher_dir`): every hook of `<dir>` with the interface and the
///   action (`up`, `pre-down`, `down`) as arguments and its variables
///   (NM_DISPATCHER_ACTION, CONNECTION_ID, DEVICE_IFACE, IP4_ADDRESS_N,
///   ...).
///
/// netevd's own tree is not affected.
pub struct Compat {
    parts: Vec<Part>,
    done: Vec<u32>,
}

struct Part {
    origin: Origin,
    sched: crate::core::sched::Scheduler,
    runner: crate::effect::hooks::Runner,
}

/// NetworkManager-dispatcher's arguments: the interface and the action.
fn nm_args(ev: &Event) -> Option<[std::ffi::OsString; 2]> {
    use std::os::unix::ffi::OsStringExt;
    let action = crate::core::event::nm_dispatcher_action(ev)?;
    Some([std::ffi::OsString::from_vec(ev.name.clone()), action.into()])
}

impl Compat {
    pub fn new(c: &crate::config::Config, dry_run: bool) -> Option<Compat> {
        let settings = |dir: &std::path::Path| crate::effect::hooks::Settings {
            script_dir: dir.to_path_buf(),
            timeout: c.timeout,
            dry_run,
            history: 0,
            user: c.hook_user.clone(),
        };
        let mut parts = Vec::new();
        if let Some(dir) = &c.backends.networkd_dispatcher_dir {
            // The third quarter of the hook tokens.
            let runner = crate::effect::hooks::Runner::new(
                settings(dir),
                token::HOOKS + token::HOOKS_LEN / 2,
                None,
            );
            runner.check_script_dir();
            parts.push(Part {
                origin: Origin::Networkd,
                sched: crate::core::sched::Scheduler::new(c.max_parallel),
                runner,
            });
        }
        if let Some(dir) = &c.backends.nm_dispatcher_dir {
            // The last quarter.
            let runner = crate::effect::hooks::Runner::new(
                settings(dir),
                token::HOOKS + token::HOOKS_LEN / 4 * 3,
                None,
            )
            .flat(nm_args);
            parts.push(Part {
                origin: Origin::NetworkManager,
                sched: crate::core::sched::Scheduler::new(c.max_parallel),
                runner,
            });
        }
        (!parts.is_empty()).then_some(Compat {
            parts,
            done: Vec::new(),
        })
    }

    pub fn submit(&mut self, ev: &Rc<Event>) {
        for p in &mut self.parts {
            if ev.origin == p.origin && ev.index != 0 {
                p.sched.submit(ev.clone(), None);
            }
        }
    }

    pub fn dispatch(&mut self, reg: &mio::Registry, now: Instant) {
        for p in &mut self.parts {
            while let Some(job) = p.sched.next() {
                let index = job.event.index;
                if !p.runner.start(job, reg, now) {
                    p.sched.done(index);
                }
            }
        }
    }

    /// Output of one of its hooks; false when `t` is not its own.
    pub fn output(&mut self, t: mio::Token, reg: &mio::Registry) -> bool {
        for p in &mut self.parts {
            if p.runner.owns(t) {
                p.runner.output(t, reg);
                return true;
            }
        }
        false
    }

    pub fn reap(&mut self, exited: &mut Vec<(u32, i32)>, reg: &mio::Registry, now: Instant) {
        for p in &mut self.parts {
            p.runner.reap(exited, reg, now, &mut self.done);
            for l in self.done.drain(..) {
                p.sched.done(l);
            }
        }
        self.dispatch(reg, now);
    }

    pub fn on_timer(&mut self, reg: &mio::Registry, now: Instant) {
        for p in &mut self.parts {
            p.runner.on_timer(reg, now, &mut self.done);
            for l in self.done.drain(..) {
                p.sched.done(l);
            }
        }
        self.dispatch(reg, now);
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.parts
            .iter()
            .filter_map(|p| p.runner.next_deadline())
            .min()
    }

    pub fn pending_output(&self) -> bool {
        self.parts.iter().any(|p| p.runner.pending_output())
    }

    pub fn read_pending(&mut self, reg: &mio::Registry) {
        for p in &mut self.parts {
            p.runner.read_pending(reg);
        }
    }

    pub fn shutdown(&mut self, now: Instant) {
        for p in &mut self.parts {
            p.runner.shutdown(now);
        }
    }

    pub fn stopped(&self, now: Instant) -> bool {
        self.parts.iter().all(|p| p.runner.stopped(now))
    }
}
