//! The one loop: a mio `Poll` over the netlink socket, the signal pipe,
//! the control socket and its clients, and the hooks' output pipes, with
//! one timer heap for everything that waits. One dispatch `match` turns a
//! token into its source (token.rs); nothing here waits for anything but
//! `poll`.
//!
//! Events flow one way: a source decodes, the core applies and emits
//! events, policy routing's changes go out, then each event is sealed
//! (made immutable, serialised once) and handed to every consumer at one
//! fan-out point, `publish`: the history ring, the control socket's
//! subscribers (each through its own `where`), the HTTP shim's event
//! streams, the hook scheduler (through the configured filters,
//! core/filter.rs), the metrics registry and the audit log.
//!
//! The metrics registry (`core::metrics`) is owned here and counted where
//! things happen: at the fan-out (events, state changes), after a reap
//! (hook runs), per control request, per kernel answer to a policy
//! request. Audit lines are formatted at the same points and written
//! by `Timer::Audit`, a bounded chunk per turn (effect/audit.rs).

mod answer;
#[cfg(feature = "dbus")]
mod bus;
#[cfg(feature = "http")]
mod http;
mod timers;
mod token;

use std::collections::VecDeque;
use std::io;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll};
use signal_hook::consts::{SIGCHLD, SIGHUP, SIGINT, SIGTERM, SIGUSR1};
use signal_hook_mio::v1_0::Signals;

use crate::config::Backend;
use crate::config::Config;
use crate::core::event::{Event, Kind, PolicyView};
use crate::core::filter::{Action, FilterSet};
use crate::core::managers::Managers;
use crate::core::metrics::{self, HookResult, PolicyResult, Registry};
use crate::core::model::{Core, Settings as CoreSettings};
use crate::core::policy::Change;
use crate::core::requests::Outcome;
use crate::core::sched::Scheduler;
use crate::core::types::RTPROT_NETEVD;
use crate::core::types::{Input, RouteScope};
use crate::effect::audit::Audit;
use crate::effect::hooks::{Runner, Settings as HookSettings};
use crate::effect::policy::{self, Policy};
use crate::effect::sdnotify::Notify;
use crate::effect::spawner::Spawner;
use crate::source::control::{self, Control, Settings as ControlSettings};
#[cfg(feature = "dhclient")]
use crate::source::lease::{self, LeaseWatch};
use crate::source::netlink::{Netlink, Settings as NetlinkSettings};

use timers::{Timer, Timers};
use token::Source;

/// The most the event history may hold, whatever its count: a link with
/// thousands of addresses makes large events.
const HISTORY_BYTES: usize = 1 << 20;

/// Inputs after which the end of a burst gives memory back.
const TRIM_AFTER: u64 = 1000;

/// How long after the last input a burst counts as over.
const TRIM_QUIET: Duration = Duration::from_millis(500);

/// How soon a dump request that could not be sent is tried again.
const RETRY: Duration = Duration::from_millis(100);

/// How often a burst of kernel messages is read (`Daemon::pace`): the
/// loop's timers have millisecond resolution.
const PACE: Duration = Duration::from_millis(1);

pub struct Options {
    pub config_path: PathBuf,
    pub dry_run: bool,
    /// The level `-v` asked for, which a reload must not lower.
    pub cli_level: Option<log::LevelFilter>,
    /// With `system.user`: the privileged hook spawner, forked at start.
    pub spawner: Option<Spawner>,
}

pub struct Daemon {
    poll: Poll,
    netlink: Netlink,
    signals: Signals,
    control: Option<Control>,
    /// `system.watch_config`: the configuration's directories, watched.
    watch: Option<crate::config::Watch>,
    /// dhclient's lease files, with `system.backend: dhclient`.
    #[cfg(feature = "dhclient")]
    lease: Option<LeaseWatch>,
    /// The HTTP shim, when `api.enabled`.
    #[cfg(feature = "http")]
    http: Option<crate::source::http::Http>,
    core: Core,
    sched: Scheduler,
    /// `filters:`, with their hit counts: which events run which hooks.
    filters: FilterSet,
    runner: Runner,
    policy: Policy,
    config: Config,
    opts: Options,
    timers: Timers,
    started: Instant,
    inputs: Vec<Input>,
    out: Vec<Event>,
    done: Vec<u32>,
    /// The newest events, for `events` queries; the newest is last.
    history: VecDeque<Rc<Event>>,
    /// What `history` holds, by `Event::weight`.
    history_bytes: usize,
    last_event: Option<Rc<Event>>,
    /// Of the configuration in force, for `status`; made at load.
    config_hash: u64,
    /// Inputs since memory was last given back.
    since_trim: u64,
    /// When the last netlink read that brought input began.
    netlink_input: Option<Instant>,
    /// The netlink socket is out of the poll set while a burst is read
    /// at `PACE` (see `pace`).
    netlink_paced: bool,
    /// SIGTERM or SIGINT came: no new hooks, and the loop ends once the
    /// running ones exited or were killed (`Runner::shutdown`).
    stopping: bool,
    metrics: Registry,
    audit: Audit,
    /// When the input being handled was read: an event's time to the
    /// fan-out is measured from here.
    input_at: Instant,
    /// The service manager's notification socket (Type=notify).
    notify: Notify,
    /// The system bus, when the backend is a network manager or `auto`.
    #[cfg(feature = "dbus")]
    bus: Option<crate::source::dbus::Bus>,
    /// What the managers report per link (core/managers.rs).
    managers: Managers,
    #[cfg(feature = "dbus")]
    mgr_inputs: Vec<crate::core::managers::Input>,
    #[cfg(feature = "dbus")]
    mgr_out: Vec<crate::core::managers::Out>,
    /// The kernel's state events held from hooks at start until the bus
    /// answered (reactor/bus.rs); None once released.
    #[cfg(feature = "dbus")]
    held_kernel: Option<Vec<Rc<Event>>>,
    /// The backend in force: `auto` resolved, once known.
    active: Backend,
    /// The state whose directory the kernel's events last ran for a link
    /// while no manager claimed it: a manager back from a restart does not
    /// run it again (reactor/bus.rs). Kept only where a manager may report
    /// links (`auto`, `networkd`, `networkmanager`); one state a byte.
    #[cfg(feature = "dbus")]
    kernel_told: crate::core::fx::FxMap<u32, crate::core::state::OperState>,
    /// resolved and hostnamed calls (`use_dns`, `use_domain`,
    /// `use_hostname`), and the bus's disconnects they were reset for.
    #[cfg(feature = "dbus")]
    resolve: crate::effect::dbus::Resolve,
    #[cfg(feature = "dbus")]
    bus_disconnects: u64,
    /// networkd-dispatcher's tree, when configured (reactor/bus.rs).
    #[cfg(feature = "dbus")]
    compat: Option<bus::Compat>,
}

pub fn core_settings(c: &Config) -> CoreSettings {
    CoreSettings {
        interfaces: c.interfaces.iter().map(|s| s.as_bytes().to_vec()).collect(),
        run_on_startup: c.run_on_startup,
    }
}

fn netlink_settings(c: &Config) -> NetlinkSettings {
    NetlinkSettings {
        rcvbuf: c.netlink_rcvbuf,
        rcvbuf_max: c.netlink_rcvbuf_max,
        routes: c.routes != RouteScope::None,
    }
}

fn hook_settings(c: &Config, dry_run: bool) -> HookSettings {
    HookSettings {
        script_dir: c.script_dir.clone(),
        user: c.hook_user.clone(),
        timeout: c.timeout,
        dry_run,
        history: c.control.hook_history,
    }
}

fn control_settings(c: &Config, gid: Option<u32>) -> ControlSettings {
    ControlSettings {
        path: c.control.socket.clone(),
        gid,
        mode: c.control.mode,
        max_clients: c.control.max_clients,
        idle_timeout: c.control.idle_timeout,
        max_queue: c.control.max_queue,
    }
}

/// The watch `system.watch_config` asks for, registered; None when it is
/// off, or (said in the log) when inotify refuses: the daemon runs on,
/// reloading on SIGHUP only.
fn open_watch(c: &Config, opts: &Options, poll: &Poll) -> Option<crate::config::Watch> {
    if !c.watch_config {
        return None;
    }
    let w = crate::config::Watch::new(&opts.config_path).and_then(|w| {
        poll.registry()
            .register(
                &mut SourceFd(&w.fd()),
                token::CONFIG_WATCH,
                Interest::READABLE,
            )
            .map(|()| w)
    });
    match w {
        Ok(w) => {
            log::debug!(
                "watch_config: watching {} and its conf.d",
                opts.config_path.display()
            );
            Some(w)
        }
        Err(e) => {
            log::warn!("watch_config: {e}; reloads come from SIGHUP only");
            None
        }
    }
}

/// Gives the memory a burst freed back to the system: glibc keeps freed
/// heap pages otherwise, and RSS would stay at the burst's peak.
fn trim() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases free memory.
    unsafe {
        nix::libc::malloc_trim(0);
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Daemon {
    pub fn new(config: Config, mut opts: Options) -> io::Result<Self> {
        let config_hash = answer::config_hash(&config);
        let started = Instant::now();
        let poll = Poll::new()?;
        let netlink = Netlink::open(netlink_settings(&config))?;
        poll.registry().register(
            &mut SourceFd(&netlink.fd()),
            token::NETLINK,
            Interest::READABLE,
        )?;
        let mut signals = Signals::new([SIGCHLD, SIGHUP, SIGINT, SIGTERM, SIGUSR1])?;
        let spawner = opts.spawner.take();
        if let Some(sp) = &spawner {
            poll.registry().register(
                &mut SourceFd(&sp.fd()),
                token::SPAWNER,
                Interest::READABLE,
            )?;
        }
        poll.registry()
            .register(&mut signals, token::SIGNALS, Interest::READABLE)?;
        // Before the control socket, whose file a failure here would
        // leave behind.
        #[cfg(feature = "http")]
        let http = http::open(&config, poll.registry())?;
        let control = if config.control.enabled {
            let gid = control::resolve_group(config.control.group.as_deref())
                .map_err(io::Error::other)?;
            Some(Control::open(
                control_settings(&config, gid),
                poll.registry(),
                token::CONTROL,
                token::CLIENTS,
            )?)
        } else {
            None
        };
        let watch = open_watch(&config, &opts, &poll);
        #[cfg(feature = "dhclient")]
        let lease = open_lease(&config, &poll)?;
        #[cfg(feature = "dbus")]
        let bus = bus::open(&config, Instant::now());
        #[cfg(feature = "dbus")]
        let held_kernel = bus.as_ref().map(|_| Vec::new());
        let active = match config.backend {
            Backend::Auto => Backend::Kernel,
            ref b => b.clone(),
        };
        Ok(Daemon {
            #[cfg(feature = "dbus")]
            bus,
            managers: Managers::new(config.run_on_startup),
            #[cfg(feature = "dbus")]
            mgr_inputs: Vec::new(),
            #[cfg(feature = "dbus")]
            mgr_out: Vec::new(),
            #[cfg(feature = "dbus")]
            held_kernel,
            active,
            #[cfg(feature = "dbus")]
            kernel_told: Default::default(),
            #[cfg(feature = "dbus")]
            resolve: crate::effect::dbus::Resolve::new(bus::resolve_settings(&config)),
            #[cfg(feature = "dbus")]
            bus_disconnects: 0,
            #[cfg(feature = "dbus")]
            compat: bus::Compat::new(&config, opts.dry_run),
            poll,
            netlink,
            signals,
            control,
            watch,
            #[cfg(feature = "dhclient")]
            lease,
            #[cfg(feature = "http")]
            http,
            core: {
                let mut core = Core::new(core_settings(&config));
                core.set_route_scope(config.routes.clone());
                core
            },
            sched: Scheduler::new(config.max_parallel),
            filters: FilterSet::new(config.filters.clone()),
            runner: Runner::new(hook_settings(&config, opts.dry_run), token::HOOKS, spawner),
            policy: Policy::new(config.policy.clone()),
            metrics: Registry::new(config.metrics.clone(), started),
            audit: Audit::new(config.audit.clone()),
            input_at: started,
            config,
            opts,
            timers: Timers::default(),
            started,
            inputs: Vec::with_capacity(256),
            out: Vec::with_capacity(64),
            done: Vec::new(),
            history: VecDeque::new(),
            history_bytes: 0,
            last_event: None,
            config_hash,
            since_trim: 0,
            netlink_input: None,
            netlink_paced: false,
            stopping: false,
            notify: Notify::from_env(Instant::now()),
        })
    }

    /// Before the drop to `system.user`: the control socket becomes that
    /// user's, so that a reload can still set its mode.
    #[cfg(feature = "privsep")]
    pub fn give_control_socket(&self, uid: u32) -> io::Result<()> {
        match &self.control {
            Some(c) => c.give_to(uid),
            None => Ok(()),
        }
    }

    /// Runs until SIGTERM or SIGINT, then until the hooks still running
    /// have exited or been killed.
    pub fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(64);
        self.runner.check_script_dir();
        self.runner
            .watch_dirs(self.poll.registry(), token::HOOK_DIRS);
        // The first resync (the start-up dump) is requested by opening.
        self.on_netlink();
        // The lease files there are now: held by the core until the
        // first dump shows their links.
        self.on_lease();
        loop {
            // Whatever the last turn queued (events, finished hooks, a
            // reload) starts here, before the loop sleeps again.
            let now = Instant::now();
            if !self.stopping {
                self.dispatch(now);
            }
            self.arm_timers(now);
            let timeout = self.timers.timeout(now);
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            for ev in events.iter() {
                match token::source(ev.token()) {
                    Source::Netlink if self.stopping => {}
                    Source::Netlink => self.on_netlink(),
                    Source::Signals => {
                        if self.on_signals() && !self.stopping {
                            self.stopping = true;
                            self.notify.stopping();
                            self.runner.shutdown(Instant::now());
                            #[cfg(feature = "dbus")]
                            if let Some(c) = self.compat.as_mut() {
                                c.shutdown(Instant::now());
                            }
                        }
                    }
                    Source::ControlListener => {
                        if let Some(c) = self.control.as_mut() {
                            c.accept(self.poll.registry(), Instant::now());
                        }
                    }
                    Source::Spawner => {
                        self.runner.on_spawner(
                            self.poll.registry(),
                            Instant::now(),
                            &mut self.done,
                        );
                        for l in self.done.drain(..) {
                            self.sched.done(l);
                        }
                    }
                    // Paced: the reload comes at Timer::ConfigWatch.
                    Source::ConfigWatch => {
                        if let Some(w) = self.watch.as_mut() {
                            w.on_ready(Instant::now());
                        }
                    }
                    Source::Client(i) => self.on_client(i, ev.is_readable(), ev.is_writable()),
                    Source::HookDirs => self.runner.on_dirs(),
                    Source::Lease if self.stopping => {}
                    Source::Lease => self.on_lease(),
                    #[cfg(feature = "http")]
                    Source::HttpListener => self.on_http_listener(),
                    #[cfg(feature = "http")]
                    Source::HttpClient(i) => {
                        self.on_http_client(i, ev.is_readable(), ev.is_writable())
                    }
                    #[cfg(feature = "dbus")]
                    Source::Dbus if !self.stopping => self.on_dbus(true),
                    Source::Dbus => {}
                    Source::Hook(t) => {
                        if self.runner.owns(t) {
                            self.runner.output(t, self.poll.registry())
                        }
                        #[cfg(feature = "dbus")]
                        if let Some(c) = self.compat.as_mut() {
                            c.output(t, self.poll.registry());
                        }
                    }
                    // A build without the shim registers no HTTP token.
                    #[cfg(not(feature = "http"))]
                    Source::HttpListener | Source::HttpClient(_) => {}
                    // A pipe or client already closed can still report once.
                    Source::Unknown => {}
                }
            }
            let now = Instant::now();
            while let Some(t) = self.timers.pop_due(now) {
                match t {
                    Timer::Hooks => {
                        self.runner
                            .on_timer(self.poll.registry(), now, &mut self.done);
                        for l in self.done.drain(..) {
                            self.sched.done(l);
                        }
                        #[cfg(feature = "dbus")]
                        if let Some(c) = self.compat.as_mut() {
                            c.on_timer(self.poll.registry(), now);
                        }
                    }
                    // A restore or retry that was held back is due.
                    Timer::Policy => self.reconcile(now),
                    Timer::NetlinkRetry if self.stopping => {}
                    Timer::NetlinkRetry => self.on_netlink(),
                    Timer::NetlinkPace if self.stopping => self.pace(false, now),
                    Timer::NetlinkPace => self.on_netlink(),
                    Timer::Control => {
                        if let Some(c) = self.control.as_mut() {
                            c.expire(self.poll.registry(), now);
                        }
                    }
                    Timer::Again => self.on_leftovers(),
                    Timer::Lease if self.stopping => {}
                    Timer::Lease => self.on_lease(),
                    Timer::Flush => {
                        if let Some(c) = self.control.as_mut() {
                            c.flush_queued(self.poll.registry(), now);
                        }
                    }
                    #[cfg(feature = "http")]
                    Timer::Http => self.http_expire(now),
                    #[cfg(not(feature = "http"))]
                    Timer::Http => {}
                    // Hooks still working through a burst's events allocate
                    // as they go: give memory back once they are done too.
                    Timer::Trim if !self.sched.idle() => {
                        self.timers.arm(Timer::Trim, Some(now + TRIM_QUIET));
                    }
                    Timer::Trim => {
                        self.since_trim = 0;
                        self.shrink();
                        trim();
                    }
                    Timer::Audit => self.audit.flush(now),
                    Timer::ConfigWatch => {
                        if self.watch.as_mut().is_some_and(|w| w.reload_due(now)) {
                            self.reload_and_log("watch", "the configuration changed");
                        }
                    }
                    Timer::Watchdog => self.notify.on_watchdog(now),
                    #[cfg(feature = "dbus")]
                    Timer::Dbus if !self.stopping => self.on_dbus(false),
                    Timer::Dbus => {}
                }
            }
            #[cfg(feature = "dbus")]
            let compat_stopped = self
                .compat
                .as_ref()
                .map_or(true, |c| c.stopped(Instant::now()));
            #[cfg(not(feature = "dbus"))]
            let compat_stopped = true;
            if self.stopping && self.runner.stopped(Instant::now()) && compat_stopped {
                self.stop();
                return Ok(());
            }
        }
    }

    /// `now`: the turn's clock, read before `dispatch` (which starts
    /// processes and may take a while): a deadline computed from it is at
    /// worst early, and a timer that fires early finds nothing due.
    fn arm_timers(&mut self, now: Instant) {
        let flush = self.control.as_ref().and_then(Control::flush_at);
        self.timers.arm(Timer::Flush, flush);
        let hooks = self.runner.next_deadline();
        #[cfg(feature = "dbus")]
        let hooks = match (
            hooks,
            self.compat.as_ref().and_then(bus::Compat::next_deadline),
        ) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.timers.arm(Timer::Hooks, hooks);
        // Armed once when the need arises, not moved every turn: a loop
        // woken often must still retry.
        // A backoff's deadline is fixed by the source, so re-arming with
        // it does not move it.
        match self.netlink.retry_at(now, RETRY) {
            None => self.timers.arm(Timer::NetlinkRetry, None),
            Some(at) if !self.timers.armed(Timer::NetlinkRetry) => {
                self.timers.arm(Timer::NetlinkRetry, Some(at))
            }
            Some(_) => {}
        }
        self.timers.arm(Timer::Policy, self.policy.next_deadline());
        self.timers.arm(Timer::Audit, self.audit.next_flush(now));
        self.timers
            .arm(Timer::Watchdog, self.notify.next_watchdog());
        self.timers.arm(Timer::Lease, self.lease_deadline());
        #[cfg(feature = "dbus")]
        self.timers.arm(Timer::Dbus, self.dbus_deadline());
        let reload = self.watch.as_ref().and_then(|w| w.next_reload());
        self.timers.arm(Timer::ConfigWatch, reload);
        let control = self.control.as_ref().and_then(Control::next_deadline);
        self.timers.arm(Timer::Control, control);
        #[cfg(feature = "http")]
        let http_more = {
            let h = self.http.as_ref();
            self.timers.arm(
                Timer::Http,
                h.and_then(crate::source::http::Http::next_deadline),
            );
            h.is_some_and(crate::source::http::Http::has_more)
        };
        #[cfg(not(feature = "http"))]
        let http_more = false;
        // A source left readable for want of budget gives no new
        // readiness (edge-triggered): look again without sleeping.
        #[cfg(feature = "dbus")]
        let compat_output = self
            .compat
            .as_ref()
            .is_some_and(bus::Compat::pending_output);
        #[cfg(not(feature = "dbus"))]
        let compat_output = false;
        let again = (self.runner.pending_output()
            || compat_output
            || (self.netlink.more() && !self.stopping)
            || (self.lease_more() && !self.stopping)
            || self.control.as_ref().is_some_and(Control::has_more)
            || http_more)
            .then_some(now);
        self.timers.arm(Timer::Again, again);
    }

    /// Sources whose budget ran out last turn get another.
    fn on_leftovers(&mut self) {
        self.runner.read_pending(self.poll.registry());
        #[cfg(feature = "dbus")]
        if let Some(c) = self.compat.as_mut() {
            c.read_pending(self.poll.registry());
        }
        if self.netlink.more() && !self.stopping {
            self.on_netlink();
        }
        if self.lease_more() && !self.stopping {
            self.on_lease();
        }
        let more = self.control.as_ref().map(Control::more).unwrap_or_default();
        let now = Instant::now();
        for i in more {
            self.serve(i, now);
        }
        #[cfg(feature = "http")]
        self.http_leftovers();
    }

    fn stop(&mut self) {
        if let Some(c) = &self.control {
            c.remove();
        }
        self.audit.flush_all();
        self.log_summary();
    }

    fn counters(&self) -> netevd_ctl::Counters {
        let (n, h, p) = (self.netlink.stats, self.runner.stats, self.policy.stats());
        let c = self.control.as_ref().map(|c| c.stats).unwrap_or_default();
        netevd_ctl::Counters {
            events: self.core.events_emitted(),
            coalesced: self.sched.coalesced,
            hooks_started: h.started,
            hooks_failed: h.failed,
            hooks_timed_out: h.timed_out,
            hooks_not_started: h.spawn_errors,
            hook_starts_retried: h.retries,
            hook_lines_dropped: h.lines_dropped,
            netlink_messages: n.messages,
            netlink_undecodable: n.decode_errors,
            netlink_overruns: n.overflows,
            resyncs_started: n.resyncs_started,
            resyncs_completed: self.core.resyncs(),
            netlink_receive_buffer: n.rcvbuf,
            policy_requests: p.requests,
            policy_refused: p.refused,
            policy_restored: p.restored,
            control_requests: c.requests,
            control_errors: c.errors,
            subscribers_dropped: c.dropped_slow,
        }
    }

    fn log_summary(&self) {
        use crate::logger::Count;
        let c = self.counters();
        log::info!(
            "netevd stopping: {} ({} undecodable), {}, {} started, {} completed; \
             {} ({} coalesced); {} started, {} failed, {} timed out, {} could not start, \
             {} retried, {} dropped; \
             policy: {}, {} refused, {} restored; control: {}, {}, {} dropped",
            Count(c.netlink_messages, "netlink message"),
            c.netlink_undecodable,
            Count(c.netlink_overruns, "overrun"),
            Count(c.resyncs_started, "resync"),
            c.resyncs_completed,
            Count(c.events, "event"),
            c.coalesced,
            Count(c.hooks_started, "hook"),
            c.hooks_failed,
            c.hooks_timed_out,
            c.hooks_not_started,
            Count(c.hook_starts_retried, "start"),
            Count(c.hook_lines_dropped, "output line"),
            Count(c.policy_requests, "request"),
            c.policy_refused,
            Count(c.policy_restored, "rule"),
            Count(c.control_requests, "request"),
            Count(c.control_errors, "error"),
            Count(c.subscribers_dropped, "subscriber"),
        );
    }

    fn on_netlink(&mut self) {
        // One clock read for the whole read: a burst is hundreds of
        // inputs, each read in microseconds.
        let instant = Instant::now();
        if let Err(e) = self.netlink.read(&mut self.inputs, instant) {
            log::error!("netlink: {e}");
        }
        if self.inputs.is_empty() {
            self.pace(false, instant);
            return;
        }
        // Input again within PACE of the last, or while paced: a burst.
        let burst = self.netlink_paced
            || self
                .netlink_input
                .is_some_and(|t| instant.saturating_duration_since(t) < PACE);
        self.netlink_input = Some(instant);
        self.runner.input_read();
        let now = now_ms();
        self.input_at = instant;
        let was_synced = self.core.synced();
        let mut inputs = std::mem::take(&mut self.inputs);
        self.since_trim += inputs.len() as u64;
        if self.since_trim >= TRIM_AFTER {
            // Moves out while the burst goes on.
            self.timers.arm(Timer::Trim, Some(instant + TRIM_QUIET));
        }
        for i in inputs.drain(..) {
            self.policy.observe(&i, instant);
            self.core.apply(i, now, &mut self.out);
            if self.out.is_empty() {
                continue;
            }
            // Policy changes go out before hooks start, so a hook for a new
            // address finds its rules in place; inputs that make no event
            // are reconciled together at the end of the read.
            self.reconcile(instant);
            self.publish_out();
            // An idle link starts its hooks now; only what arrives while
            // they run waits and coalesces, even within one read.
            self.dispatch(instant);
        }
        self.inputs = inputs;
        for (seq, code) in self.netlink.acks.drain(..) {
            if let Some((ch, o)) = self.policy.answer(seq, code, instant) {
                let r = match o {
                    Outcome::Done => PolicyResult::Done,
                    Outcome::AlreadySo => PolicyResult::Already,
                    Outcome::Transient => PolicyResult::Transient,
                    Outcome::Refused => PolicyResult::Refused,
                };
                policy_done(&mut self.metrics, &mut self.audit, &ch, r, code);
            }
        }
        // An answer may make a change due (the next in line for its entry).
        self.reconcile(instant);
        if !was_synced && self.core.synced() {
            self.notify.ready();
            log::info!(
                "netevd {} running: backend {}, {}, hooks in {}{}{}",
                env!("CARGO_PKG_VERSION"),
                // `auto` runs on the kernel until the bus answered.
                self.active.as_str(),
                crate::logger::Count(self.core.link_count() as u64, "link"),
                self.config.script_dir.display(),
                match &self.control {
                    Some(c) => format!(", control socket {}", c.path().display()),
                    None => String::new(),
                },
                if self.opts.dry_run { " (dry run)" } else { "" }
            );
        }
        self.pace(burst, instant);
    }

    /// Reads a burst of kernel messages at `PACE` instead of waking for
    /// every one: while messages keep coming within `PACE` of each other,
    /// the socket leaves the poll set and a timer reads whatever arrived
    /// meanwhile, all at once; the first read that finds nothing puts the
    /// socket back. A route every 18 us otherwise woke the loop for two
    /// routes at a time, half a million sleeps for a full table, each with
    /// its poll, read and hook-listing check. The first message after a
    /// quiet spell is read at once, so an event's hooks are not delayed;
    /// within a burst, by at most `PACE` (the loop's clock is in
    /// milliseconds). Never while dumping: a dump's parts come one per
    /// read. The receive buffer holds far more than `PACE` of messages,
    /// and an overrun meanwhile is read at the timer.
    fn pace(&mut self, burst: bool, now: Instant) {
        // A read that stopped at its budget is continued by
        // `on_leftovers`, paced or not.
        let on = burst && !self.stopping && !self.netlink.dumping();
        if on != self.netlink_paced {
            let fd = self.netlink.fd();
            let reg = self.poll.registry();
            let r = if on {
                reg.deregister(&mut SourceFd(&fd))
            } else {
                // What arrived meanwhile is reported by the next poll.
                reg.register(&mut SourceFd(&fd), token::NETLINK, Interest::READABLE)
            };
            match r {
                Ok(()) => self.netlink_paced = on,
                Err(e) => log::warn!("netlink: cannot change the socket's polling: {e}"),
            }
        }
        let at = self.netlink_paced.then_some(now + PACE);
        self.timers.arm(Timer::NetlinkPace, at);
    }

    /// Seals what the core emitted and hands it to every consumer.
    fn publish_out(&mut self) {
        let mut out = std::mem::take(&mut self.out);
        for ev in out.drain(..) {
            let ev = self.seal(ev);
            self.publish(ev);
        }
        self.out = out;
    }

    fn seal(&self, ev: Event) -> Rc<Event> {
        let view = self.policy.plan().link(ev.index).map(|l| PolicyView {
            table: l.table,
            rules: l.rule_strings(),
            gateways: l.gateways.clone(),
        });
        ev.seal(view)
    }

    /// The one fan-out point: every consumer sees the same event, and none
    /// changes it.
    fn publish(&mut self, ev: Rc<Event>) {
        let took = Instant::now().saturating_duration_since(self.input_at);
        self.metrics
            .event(ev.kind.as_str(), ev.origin.as_str(), took);
        if matches!(ev.kind, Kind::State | Kind::Removed) {
            let name = String::from_utf8_lossy(&ev.name);
            if ev.previous != Some(ev.state) {
                self.metrics.state_change(&name);
            }
            if let Some(l) = self.audit.line("state", ev.time_ms) {
                let l = l
                    .str("link", &name)
                    .num("ifindex", ev.index)
                    .name("state", ev.state.as_str());
                let l = match ev.previous {
                    Some(p) => l.name("previous", p.as_str()),
                    None => l.opt_str("previous", None),
                };
                l.name("event", ev.kind.as_str())
                    .unum("event_id", ev.id)
                    .name("backend", ev.origin.as_str())
                    .end();
            }
        }
        log::debug!(
            "event {} {} {}: {} (was {})",
            ev.id,
            ev.kind.as_str(),
            ev.name_lossy(),
            ev.dir(),
            ev.previous.map(|p| p.as_str()).unwrap_or("-")
        );
        // Here, not where leases are read: a lease held until its link
        // appeared comes out of a netlink read.
        #[cfg(feature = "dhclient")]
        if let Some(l) = &ev.lease {
            log::info!(
                "dhclient: new lease on {}: {}{}",
                ev.name_lossy(),
                l.address,
                match l.routers.first() {
                    Some(r) => format!(" via {r}"),
                    None => String::new(),
                }
            );
        }
        self.remember(&ev);
        if let Some(c) = self.control.as_mut() {
            if c.listening() {
                let core = &self.core;
                c.broadcast(
                    || netevd_ctl::event_line(ev.json()),
                    |s| s.matches(&ev, core),
                    self.poll.registry(),
                    Instant::now(),
                );
            }
        }
        #[cfg(feature = "http")]
        self.http_publish(&ev);
        self.last_event = Some(ev.clone());
        #[cfg(feature = "dbus")]
        {
            if let Some(c) = self.compat.as_mut() {
                c.submit(&ev);
            }
            if !self.hooks_for(&ev) {
                return;
            }
        }
        self.submit_hooks(ev);
    }

    /// Hands an event to the hook scheduler through the configured
    /// filters (the first that matches decides).
    fn submit_hooks(&mut self, ev: Rc<Event>) {
        // Filters decide for hooks only: subscribers and the history saw
        // the event above whatever they say.
        let scripts = match self.filters.decide(&ev, &self.core) {
            None => None,
            Some(f) => match f.action {
                Action::Ignore => {
                    log::debug!(
                        "event {} {} on {}: filter {} ignores it; no hooks",
                        ev.id,
                        ev.dir(),
                        ev.name_lossy(),
                        f.name
                    );
                    return;
                }
                Action::Log => {
                    log::info!(
                        "filter {}: event {} {} {} on {} (was {})",
                        f.name,
                        ev.id,
                        ev.kind.as_str(),
                        ev.dir(),
                        ev.name_lossy(),
                        ev.previous.map(|p| p.as_str()).unwrap_or("-")
                    );
                    f.scripts.clone()
                }
                Action::Execute => f.scripts.clone(),
            },
        };
        // What would start at once and find no hooks is not queued: the
        // lookup is the one `start` makes.
        if self.sched.starts_at_once(ev.index)
            && self.runner.nothing_to_run(&ev, scripts.as_deref())
        {
            return;
        }
        self.sched.submit(ev, scripts);
    }

    /// Keeps the event for `events` queries, within the count the config
    /// gives and `HISTORY_BYTES`.
    fn remember(&mut self, ev: &Rc<Event>) {
        let keep = self.config.control.event_history;
        if keep == 0 {
            return;
        }
        self.history_bytes += ev.weight();
        self.history.push_back(ev.clone());
        self.trim_history(keep);
    }

    fn trim_history(&mut self, keep: usize) {
        while self.history.len() > keep || self.history_bytes > HISTORY_BYTES {
            match self.history.pop_front() {
                Some(old) => self.history_bytes -= old.weight(),
                None => break,
            }
        }
    }

    fn on_client(&mut self, i: usize, readable: bool, writable: bool) {
        self.runner.input_read();
        let Some(c) = self.control.as_mut() else {
            return;
        };
        if c.owns(mio::Token(token::CLIENTS + i)).is_none() {
            return;
        }
        let now = Instant::now();
        if writable {
            c.writable(i, self.poll.registry(), now);
        }
        if readable {
            c.readable(i);
        }
        self.serve(i, now);
    }

    /// Answers client `i`'s requests, up to its share of this turn, each
    /// before the next is taken.
    fn serve(&mut self, i: usize, now: Instant) {
        for _ in 0..control::LINES_PER_TURN {
            let Some(c) = self.control.as_mut() else {
                return;
            };
            let Some(line) = c.next_line(i, self.poll.registry(), now) else {
                return;
            };
            self.answer(line);
        }
        if let Some(c) = self.control.as_mut() {
            c.used_turn(i);
        }
    }

    /// Returns true when the daemon should stop.
    fn on_signals(&mut self) -> bool {
        let mut stop = false;
        let mut reload = false;
        let mut child = false;
        for s in self.signals.pending() {
            match s {
                SIGCHLD => child = true,
                SIGHUP => reload = true,
                SIGINT | SIGTERM => stop = true,
                SIGUSR1 => self.audit.reopen(),
                _ => {}
            }
        }
        if child {
            self.reap();
        }
        if reload {
            self.reload_and_log("signal", "SIGHUP");
        }
        stop
    }

    /// Reloads (on SIGHUP, or when `system.watch_config` saw a change)
    /// and says how it went.
    fn reload_and_log(&mut self, trigger: &str, why: &str) {
        match self.reload(trigger) {
            Ok(changes) if changes.is_empty() => log::info!(
                "reloaded {} ({why}): nothing changed",
                self.opts.config_path.display()
            ),
            Ok(changes) => log::info!(
                "reloaded {} ({why}): {}",
                self.opts.config_path.display(),
                changes.join("; ")
            ),
            Err(e) => log::error!("reload refused: {e}; keeping the current configuration"),
        }
    }

    /// Starts or stops watching the configuration when a reload turned
    /// `system.watch_config` on or off.
    fn sync_watch(&mut self) {
        match (self.config.watch_config, self.watch.is_some()) {
            (true, false) => self.watch = open_watch(&self.config, &self.opts, &self.poll),
            (false, true) => {
                if let Some(w) = self.watch.take() {
                    let _ = self.poll.registry().deregister(&mut SourceFd(&w.fd()));
                }
            }
            _ => {}
        }
    }

    fn reap(&mut self) {
        // One reap of every child, netevd being a subreaper; each runner
        // takes its own.
        let mut exited = crate::effect::tree::reap_all();
        self.runner.reap(
            &mut exited,
            self.poll.registry(),
            Instant::now(),
            &mut self.done,
        );
        for l in self.done.drain(..) {
            self.sched.done(l);
        }
        #[cfg(feature = "dbus")]
        if let Some(c) = self.compat.as_mut() {
            c.reap(&mut exited, self.poll.registry(), Instant::now());
        }
        for (pid, status) in exited {
            log::debug!("reaped pid {pid} (wait status {status:#x}), left behind by a hook");
        }
        for (r, took) in self.runner.finished.drain(..) {
            let result = if r.timed_out {
                HookResult::Timeout
            } else if r.exit_code == Some(0) {
                HookResult::Success
            } else {
                HookResult::Failure
            };
            self.metrics.hook_run(result, took);
            if let Some(l) = self.audit.line("hook", now_ms()) {
                l.str("link", &r.link)
                    .num("ifindex", r.index)
                    .str("hook", &r.hook)
                    .name("state", r.state)
                    .unum("event_id", r.event_id)
                    .unum("started_ms", r.started_ms)
                    .opt_num(
                        "duration_ms",
                        r.duration_ms.map(|d| d.min(i64::MAX as u64) as i64),
                    )
                    .opt_num("exit_code", r.exit_code)
                    .opt_num("signal", r.signal)
                    .bool("timed_out", r.timed_out)
                    .strs("output", r.output.iter().map(String::as_str))
                    .end();
            }
        }
    }

    /// The metrics exposition: the registry's counters with the gauges
    /// read now. The control socket's `metrics` and the HTTP shim's
    /// `/metrics` both serve this.
    pub(crate) fn metrics_text(&self, now: Instant) -> String {
        // Without the feature `metrics.enabled` is always false (config):
        // this is never called, and the check lets the optimiser drop the
        // exposition (about 26 KB).
        if !cfg!(feature = "metrics") {
            return String::new();
        }
        let mut s = metrics::Snapshot::default();
        for l in self.core.links() {
            let st = l.state().as_str();
            if let Some(i) = metrics::LINK_STATES.iter().position(|x| *x == st) {
                s.interfaces[i] += 1;
            }
        }
        // Counted as kept: a scrape must not walk a full table.
        s.routes_inet = self.core.routes().count(2) as u64;
        s.routes_inet6 = self.core.routes().count(10) as u64;
        s.own_rules = self
            .core
            .rules()
            .filter(|r| r.protocol == RTPROT_NETEVD)
            .count() as u64;
        let n = self.netlink.stats;
        s.netlink_messages = n.messages;
        s.netlink_undecodable = n.decode_errors;
        s.netlink_overruns = n.overflows;
        s.resyncs = self.core.resyncs();
        s.hooks_not_started = self.runner.stats.spawn_errors;
        s.audit_lines = self.audit.stats.lines;
        s.audit_dropped = self.audit.stats.dropped;
        s.subscribers = self.control.as_ref().map_or(0, |c| c.subscribers()) as u64;
        // Figures other modules keep go in as extra families. One series
        // per configured filter: the config bounds their number.
        let pol = self.policy.stats();
        let dirs = self.runner.dirs_stats();
        for (name, help, kind, v) in [
            (
                "netevd_resyncs_started_total",
                "Resynchronisations from a fresh dump started (netevd_resyncs_total counts those completed).",
                metrics::Kind::Counter,
                n.resyncs_started,
            ),
            (
                "netevd_netlink_receive_buffer_bytes",
                "The netlink socket's receive buffer as the kernel reports it; the first overrun grows it to system.netlink_receive_buffer_max.",
                metrics::Kind::Gauge,
                n.rcvbuf,
            ),
            (
                "netevd_policy_replans_total",
                "Policy routing plans made for every policy link at once.",
                metrics::Kind::Counter,
                pol.full_replans,
            ),
            (
                "netevd_policy_link_replans_total",
                "Policy routing plans made for one link alone.",
                metrics::Kind::Counter,
                pol.link_replans,
            ),
            (
                "netevd_hook_dir_cached_total",
                "Hook directory lookups answered from the cached listing.",
                metrics::Kind::Counter,
                dirs.hits,
            ),
            (
                "netevd_hook_dir_listed_total",
                "Hook directory lookups that read the directory (first use, or after a change).",
                metrics::Kind::Counter,
                dirs.misses,
            ),
        ] {
            s.one(name, help, kind, v);
        }
        #[cfg(feature = "dbus")]
        if let Some(b) = &self.bus {
            let st = b.stats;
            let r = &self.resolve.stats;
            for (name, help, kind, v) in [
                (
                    "netevd_dbus_calls_total",
                    "DBus method calls sent: the managers' reads, resolved and hostnamed.",
                    metrics::Kind::Counter,
                    st.calls + r.calls,
                ),
                (
                    "netevd_dbus_errors_total",
                    "DBus calls answered with an error or not at all, resolved's and hostnamed's refusals included.",
                    metrics::Kind::Counter,
                    st.call_errors + r.refused,
                ),
                (
                    "netevd_dbus_messages_total",
                    "DBus messages read.",
                    metrics::Kind::Counter,
                    st.messages,
                ),
                (
                    "netevd_dbus_signals_rejected_total",
                    "DBus signals dropped: wrong signature, unknown path, a value not on its list, or a sender that does not own the name.",
                    metrics::Kind::Counter,
                    st.rejected,
                ),
                (
                    "netevd_dbus_connects_total",
                    "Connections made to the system bus.",
                    metrics::Kind::Counter,
                    st.connects,
                ),
                (
                    "netevd_dbus_disconnects_total",
                    "Connections to the system bus lost.",
                    metrics::Kind::Counter,
                    st.disconnects,
                ),
                (
                    "netevd_dbus_up",
                    "1 while the system bus is connected.",
                    metrics::Kind::Gauge,
                    b.up() as u64,
                ),
            ] {
                s.one(name, help, kind, v);
            }
        }
        #[cfg(feature = "http")]
        if let Some(h) = &self.http {
            let st = h.stats;
            for (name, help, v) in [
                (
                    "netevd_http_connections_total",
                    "HTTP connections accepted.",
                    st.accepted,
                ),
                (
                    "netevd_http_connections_refused_total",
                    "HTTP connections refused at api.max_clients.",
                    st.refused,
                ),
                (
                    "netevd_http_requests_total",
                    "HTTP requests answered.",
                    st.requests,
                ),
                (
                    "netevd_http_errors_total",
                    "HTTP answers with a 4xx or 5xx status.",
                    st.errors,
                ),
                (
                    "netevd_http_unauthorized_total",
                    "HTTP requests refused for a missing or wrong token.",
                    st.unauthorized,
                ),
                (
                    "netevd_http_rate_limited_total",
                    "HTTP requests answered 429.",
                    st.rate_limited,
                ),
                (
                    "netevd_http_timeouts_total",
                    "HTTP connections closed for a request that did not arrive in time.",
                    st.timed_out,
                ),
                (
                    "netevd_http_stream_clients_dropped_total",
                    "Event stream clients dropped for not reading.",
                    st.dropped_slow,
                ),
                (
                    "netevd_http_connections_evicted_total",
                    "Idle or trickling HTTP connections closed to make room for a new one at api.max_clients.",
                    st.evicted,
                ),
            ] {
                s.one(name, help, metrics::Kind::Counter, v);
            }
        }
        #[cfg(feature = "dhclient")]
        if let Some(w) = &self.lease {
            for (name, help, v) in [
                (
                    "netevd_lease_reads_total",
                    "Lease files read and parsed.",
                    w.stats.reads,
                ),
                (
                    "netevd_lease_reads_skipped_total",
                    "Lease file reads skipped: unparsable, changed while read, too large, emptied.",
                    w.stats.skipped,
                ),
                (
                    "netevd_lease_watch_overflows_total",
                    "inotify queue overflows on the lease directories (every file read again).",
                    w.stats.overflows,
                ),
            ] {
                s.one(name, help, metrics::Kind::Counter, v);
            }
        }
        s.extra.push(metrics::Family {
            name: "netevd_filter_hits_total",
            help: "Events a filter decided (the first filter that matched them).",
            kind: metrics::Kind::Counter,
            samples: self
                .filters
                .iter()
                .map(|(f, hits)| (vec![("filter", f.name.clone())], hits as f64))
                .collect(),
        });
        s.one(
            "netevd_hook_output_lines_dropped_total",
            "Lines of hook output not logged (rate limit, or left in the pipe).",
            metrics::Kind::Counter,
            self.runner.stats.lines_dropped,
        );
        s.one(
            "netevd_control_clients",
            "Clients connected to the control socket.",
            metrics::Kind::Gauge,
            self.control.as_ref().map_or(0, |c| c.clients()) as u64,
        );
        self.metrics.render(now, &s)
    }

    /// Reads and validates the file, then swaps it in with the model kept.
    /// Returns what changed, or why the file was refused; either way the
    /// audit log gets a line, `trigger` saying who asked, and the service
    /// manager is told (RELOADING=1, then READY=1 whether or not it was
    /// refused).
    fn reload(&mut self, trigger: &str) -> Result<Vec<String>, String> {
        self.input_at = Instant::now();
        let old = self.config_hash;
        self.notify.reloading();
        let r = self.reload_config();
        self.notify.ready();
        if let Some(l) = self.audit.line("reload", now_ms()) {
            let l = l
                .str("trigger", trigger)
                .str("old_hash", &format!("{old:016x}"));
            match &r {
                Ok(changes) => l
                    .str("result", "ok")
                    .str("new_hash", &format!("{:016x}", self.config_hash))
                    .strs("changes", changes.iter().map(String::as_str))
                    .end(),
                Err(e) => l.str("result", "refused").str("error", e).end(),
            }
        }
        r
    }

    /// Returns what changed, or why the file was refused.
    fn reload_config(&mut self) -> Result<Vec<String>, String> {
        let c = Config::load(&self.opts.config_path).map_err(|e| e.to_string())?;
        let gid = control::resolve_group(c.control.group.as_deref())?;
        let changes = answer::config_changes(&self.config, &c);
        let level = self
            .opts
            .cli_level
            .or(c.log_level)
            .unwrap_or(log::LevelFilter::Info);
        crate::logger::set_level(level);
        for l in &c.inactive {
            log::warn!("not active: {l}");
        }
        if c.user != self.config.user {
            log::warn!("reload: system.user takes effect at the next start");
        }
        if c.netlink_rcvbuf != self.config.netlink_rcvbuf {
            log::warn!("reload: system.netlink_receive_buffer takes effect at the next start");
        }
        if c.backend != self.config.backend || c.dhclient != self.config.dhclient {
            log::warn!(
                "reload: system.backend and backends.dhclient.lease_files take effect at the next start"
            );
        }
        if let Err(e) = self.netlink.set_settings(netlink_settings(&c)) {
            log::warn!("reload: monitoring.routes: cannot change the route subscription: {e}");
        }
        if c.routes != self.config.routes {
            self.core.set_route_scope(c.routes.clone());
        }
        if c.control.socket != self.config.control.socket
            || c.control.enabled != self.config.control.enabled
        {
            log::warn!("reload: control.socket and control.enabled take effect at the next start");
        }
        if let Some(ctl) = self.control.as_mut() {
            ctl.set_settings(control_settings(&c, gid));
        }
        #[cfg(feature = "http")]
        self.http_reload(&c);
        self.trim_history(c.control.event_history);
        self.sched.set_max_parallel(c.max_parallel);
        self.managers.set_run_on_startup(c.run_on_startup);
        if c.backend != self.config.backend {
            log::warn!("reload: system.backend takes effect at the next start");
        }
        #[cfg(feature = "dbus")]
        {
            if let Some(b) = self.bus.as_mut() {
                b.set_emit_json(c.backends.emit_json);
            }
            self.resolve.set_settings(bus::resolve_settings(&c));
        }
        self.policy.set_settings(c.policy.clone());
        self.metrics.set_settings(c.metrics.clone());
        self.audit.set_settings(c.audit.clone());
        // From the next event on; what is queued keeps its decision.
        self.filters.replace(c.filters.clone());
        self.runner
            .set_settings(hook_settings(&c, self.opts.dry_run));
        self.runner.check_script_dir();
        self.config_hash = answer::config_hash(&c);
        self.config = c;
        self.sync_watch();
        self.core
            .set_settings(core_settings(&self.config), now_ms(), &mut self.out);
        self.reconcile(Instant::now());
        self.publish_out();
        Ok(changes)
    }

    /// A burst is over: containers sized for it shrink back, so that
    /// `trim` has whole pages to hand back (a resync that drops a full
    /// table leaves buffers of a million entries otherwise).
    fn shrink(&mut self) {
        self.core.shrink();
        self.sched.shrink();
        #[cfg(feature = "dbus")]
        self.kernel_told.shrink_to_fit();
        self.inputs = Vec::with_capacity(256);
        self.out = Vec::with_capacity(64);
    }

    /// Sends the policy-routing changes that are due.
    fn reconcile(&mut self, now: Instant) {
        for ch in self.policy.reconcile(&self.core, now) {
            match self.netlink.send(&mut policy::encode(&ch)) {
                Ok(seq) => self.policy.sent(seq, ch),
                Err(e) => {
                    let code = -e.raw_os_error().unwrap_or(0);
                    let r = PolicyResult::SendFailed;
                    policy_done(&mut self.metrics, &mut self.audit, &ch, r, code);
                    self.policy.send_failed(ch, e, now);
                }
            }
        }
    }

    /// Starts whatever the scheduler lets start.
    fn dispatch(&mut self, now: Instant) {
        while let Some(job) = self.sched.next() {
            let index = job.event.index;
            if !self.runner.start(job, self.poll.registry(), now) {
                self.sched.done(index);
            }
        }
        #[cfg(feature = "dbus")]
        if let Some(c) = self.compat.as_mut() {
            c.dispatch(self.poll.registry(), now);
        }
    }
}

/// Counts a policy-routing request's end and writes its audit line;
/// `code` is the kernel's answer (0 or -errno).
fn policy_done(m: &mut Registry, a: &mut Audit, ch: &Change, r: PolicyResult, code: i32) {
    m.policy_request(r);
    if let Some(l) = a.line("policy", now_ms()) {
        let l = l.str("change", &ch.to_string()).name("result", r.as_str());
        if code < 0 {
            l.str(
                "error",
                &std::io::Error::from_raw_os_error(-code).to_string(),
            )
            .end();
        } else {
            l.end();
        }
    }
}

/// The lease watcher, registered with the loop, when the backend is
/// dhclient.
#[cfg(feature = "dhclient")]
fn open_lease(config: &Config, poll: &Poll) -> io::Result<Option<LeaseWatch>> {
    // `auto` picks dhclient only when there are lease files; the watcher
    // is opened then, and its leases count once no manager claims the
    // links (`on_lease`).
    let auto = config.backend == Backend::Auto && lease::lease_files_present(&config.dhclient);
    if config.backend != Backend::Dhclient && !auto {
        return Ok(None);
    }
    if !lease::lease_files_present(&config.dhclient) {
        log::info!(
            "dhclient: no lease file yet ({}); waiting for one",
            config
                .dhclient
                .lease_files
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let w = LeaseWatch::open(&config.dhclient)?;
    poll.registry()
        .register(&mut SourceFd(&w.fd()), token::LEASE, Interest::READABLE)?;
    Ok(Some(w))
}

/// The lease watcher's part of the loop (`--features dhclient`).
#[cfg(feature = "dhclient")]
impl Daemon {
    /// Reads the lease files that changed; a new lease is an event, and a
    /// lease's router may change a link's policy-routing gateway.
    fn on_lease(&mut self) {
        let Some(w) = self.lease.as_mut() else {
            return;
        };
        let mut got = Vec::new();
        w.read(Instant::now(), &mut got);
        self.runner.input_read();
        if got.is_empty() {
            return;
        }
        // Under `auto`, a network manager found on the bus owns the links.
        if matches!(self.active, Backend::Networkd | Backend::NetworkManager) {
            log::debug!(
                "dhclient: {} lease update(s) left alone: {} manages the links",
                got.len(),
                self.active.as_str()
            );
            return;
        }
        self.input_at = Instant::now();
        let now = now_ms();
        for i in got {
            self.core.apply_lease(i, now, &mut self.out);
        }
        self.reconcile(Instant::now());
        self.publish_out();
        self.dispatch(Instant::now());
    }

    fn lease_more(&self) -> bool {
        self.lease.as_ref().is_some_and(LeaseWatch::more)
    }

    fn lease_deadline(&self) -> Option<Instant> {
        self.lease.as_ref().and_then(LeaseWatch::next_deadline)
    }
}

/// Built without DBus: no bus, and a manager backend is not built.
#[cfg(all(not(feature = "dbus"), feature = "http"))]
impl Daemon {
    fn bus_health(&self) -> (bool, String, bool, String) {
        let b = &self.config.backend;
        if matches!(b, Backend::Networkd | Backend::NetworkManager) {
            let why = format!(
                "{} needs DBus, which this build does not speak (cargo feature dbus)",
                b.as_str()
            );
            return (false, why.clone(), false, why);
        }
        (
            true,
            "not built (cargo feature dbus)".into(),
            true,
            self.active.as_str().to_string(),
        )
    }
}

/// Built without the lease watcher: no lease file is ever read.
#[cfg(not(feature = "dhclient"))]
impl Daemon {
    fn on_lease(&mut self) {}

    fn lease_more(&self) -> bool {
        false
    }

    fn lease_deadline(&self) -> Option<Instant> {
        None
    }
}
