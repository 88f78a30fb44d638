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
//! subscribers and the hook scheduler.

mod answer;
mod timers;
mod token;

use std::collections::VecDeque;
use std::io;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll};
use signal_hook::consts::{SIGCHLD, SIGHUP, SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;

use crate::config::Config;
use crate::core::event::{Event, PolicyView};
use crate::core::model::{Core, Settings as CoreSettings};
use crate::core::sched::Scheduler;
use crate::core::types::{Input, RouteScope};
use crate::effect::hooks::{Runner, Settings as HookSettings};
use crate::effect::policy::{self, Policy};
use crate::source::control::{self, Control, Settings as ControlSettings};
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

pub struct Options {
    pub config_path: PathBuf,
    pub dry_run: bool,
    /// The level `-v` asked for, which a reload must not lower.
    pub cli_level: Option<log::LevelFilter>,
}

pub struct Daemon {
    poll: Poll,
    netlink: Netlink,
    signals: Signals,
    control: Option<Control>,
    core: Core,
    sched: Scheduler,
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
    /// SIGTERM or SIGINT came: no new hooks, and the loop ends once the
    /// running ones exited or were killed (`Runner::shutdown`).
    stopping: bool,
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
    pub fn new(config: Config, opts: Options) -> io::Result<Self> {
        let config_hash = answer::config_hash(&config);
        let poll = Poll::new()?;
        let netlink = Netlink::open(netlink_settings(&config))?;
        poll.registry().register(
            &mut SourceFd(&netlink.fd()),
            token::NETLINK,
            Interest::READABLE,
        )?;
        let mut signals = Signals::new([SIGCHLD, SIGHUP, SIGINT, SIGTERM])?;
        poll.registry()
            .register(&mut signals, token::SIGNALS, Interest::READABLE)?;
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
        Ok(Daemon {
            poll,
            netlink,
            signals,
            control,
            core: {
                let mut core = Core::new(core_settings(&config));
                core.set_route_scope(config.routes.clone());
                core
            },
            sched: Scheduler::new(config.max_parallel),
            runner: Runner::new(hook_settings(&config, opts.dry_run), token::HOOKS),
            policy: Policy::new(config.policy.clone()),
            config,
            opts,
            timers: Timers::default(),
            started: Instant::now(),
            inputs: Vec::with_capacity(256),
            out: Vec::with_capacity(64),
            done: Vec::new(),
            history: VecDeque::new(),
            history_bytes: 0,
            last_event: None,
            config_hash,
            since_trim: 0,
            stopping: false,
        })
    }

    /// Runs until SIGTERM or SIGINT, then until the hooks still running
    /// have exited or been killed.
    pub fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(64);
        self.runner.check_script_dir();
        // The first resync (the start-up dump) is requested by opening.
        self.on_netlink();
        loop {
            // Whatever the last turn queued (events, finished hooks, a
            // reload) starts here, before the loop sleeps again.
            let now = Instant::now();
            if !self.stopping {
                self.dispatch(now);
            }
            self.arm_timers();
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
                            self.runner.shutdown(Instant::now());
                        }
                    }
                    Source::ControlListener => {
                        if let Some(c) = self.control.as_mut() {
                            c.accept(self.poll.registry(), Instant::now());
                        }
                    }
                    Source::Client(i) => self.on_client(i, ev.is_readable(), ev.is_writable()),
                    Source::Hook(t) => {
                        if self.runner.owns(t) {
                            self.runner.output(t, self.poll.registry())
                        }
                    }
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
                    }
                    // A restore or retry that was held back is due.
                    Timer::Policy => self.reconcile(now),
                    Timer::NetlinkRetry if self.stopping => {}
                    Timer::NetlinkRetry => self.on_netlink(),
                    Timer::Control => {
                        if let Some(c) = self.control.as_mut() {
                            c.expire(self.poll.registry(), now);
                        }
                    }
                    Timer::Again => self.on_leftovers(),
                    Timer::Flush => {
                        if let Some(c) = self.control.as_mut() {
                            c.flush_queued(self.poll.registry(), now);
                        }
                    }
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
                }
            }
            if self.stopping && self.runner.stopped(Instant::now()) {
                self.stop();
                return Ok(());
            }
        }
    }

    fn arm_timers(&mut self) {
        let now = Instant::now();
        let flush = self.control.as_ref().and_then(Control::flush_at);
        self.timers.arm(Timer::Flush, flush);
        self.timers.arm(Timer::Hooks, self.runner.next_deadline());
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
        let control = self.control.as_ref().and_then(Control::next_deadline);
        self.timers.arm(Timer::Control, control);
        // A source left readable for want of budget gives no new
        // readiness (edge-triggered): look again without sleeping.
        let again = (self.runner.pending_output()
            || (self.netlink.more() && !self.stopping)
            || self.control.as_ref().is_some_and(Control::has_more))
        .then_some(now);
        self.timers.arm(Timer::Again, again);
    }

    /// Sources whose budget ran out last turn get another.
    fn on_leftovers(&mut self) {
        self.runner.read_pending(self.poll.registry());
        if self.netlink.more() && !self.stopping {
            self.on_netlink();
        }
        let more = self.control.as_ref().map(Control::more).unwrap_or_default();
        let now = Instant::now();
        for i in more {
            self.serve(i, now);
        }
    }

    fn stop(&mut self) {
        if let Some(c) = &self.control {
            c.remove();
        }
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
        let c = self.counters();
        log::info!(
            "netevd stopping: {} netlink messages ({} undecodable), {} overruns, {} resyncs started, {} completed; \
             {} events ({} coalesced); {} hooks started, {} failed, {} timed out, {} could not start, \
             {} starts retried, {} output lines dropped; \
             policy: {} requests, {} refused, {} rules restored; control: {} requests, {} errors, {} subscribers dropped",
            c.netlink_messages,
            c.netlink_undecodable,
            c.netlink_overruns,
            c.resyncs_started,
            c.resyncs_completed,
            c.events,
            c.coalesced,
            c.hooks_started,
            c.hooks_failed,
            c.hooks_timed_out,
            c.hooks_not_started,
            c.hook_starts_retried,
            c.hook_lines_dropped,
            c.policy_requests,
            c.policy_refused,
            c.policy_restored,
            c.control_requests,
            c.control_errors,
            c.subscribers_dropped,
        );
    }

    fn on_netlink(&mut self) {
        if let Err(e) = self.netlink.read(&mut self.inputs, Instant::now()) {
            log::error!("netlink: {e}");
        }
        if self.inputs.is_empty() {
            return;
        }
        let now = now_ms();
        let instant = Instant::now();
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
            self.dispatch(Instant::now());
        }
        self.inputs = inputs;
        for (seq, code) in self.netlink.acks.drain(..) {
            self.policy.answer(seq, code, instant);
        }
        // An answer may make a change due (the next in line for its entry).
        self.reconcile(instant);
        if !was_synced && self.core.synced() {
            log::info!(
                "netevd {} running: backend kernel, {} links, hooks in {}{}{}",
                env!("CARGO_PKG_VERSION"),
                self.core.links().count(),
                self.config.script_dir.display(),
                match &self.control {
                    Some(c) => format!(", control socket {}", c.path().display()),
                    None => String::new(),
                },
                if self.opts.dry_run { " (dry run)" } else { "" }
            );
        }
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
        log::debug!(
            "event {} {} {}: {} (was {})",
            ev.id,
            ev.kind.as_str(),
            ev.name_lossy(),
            ev.dir(),
            ev.previous.map(|p| p.as_str()).unwrap_or("-")
        );
        self.remember(&ev);
        if let Some(c) = self.control.as_mut() {
            if c.listening() {
                let name = String::from_utf8_lossy(&ev.name);
                let (index, kind, dir) = (ev.index, ev.kind.as_str(), ev.dir());
                c.broadcast(
                    || netevd_ctl::event_line(ev.json()),
                    |f| f.matches(&name, index, kind, dir),
                    self.poll.registry(),
                    Instant::now(),
                );
            }
        }
        self.last_event = Some(ev.clone());
        self.sched.submit(ev);
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
                _ => {}
            }
        }
        if child {
            self.reap();
        }
        if reload {
            match self.reload() {
                Ok(changes) if changes.is_empty() => log::info!(
                    "reloaded {}: nothing changed",
                    self.opts.config_path.display()
                ),
                Ok(changes) => log::info!(
                    "reloaded {}: {}",
                    self.opts.config_path.display(),
                    changes.join("; ")
                ),
                Err(e) => log::error!("reload refused: {e}; keeping the current configuration"),
            }
        }
        stop
    }

    fn reap(&mut self) {
        self.runner
            .reap(self.poll.registry(), Instant::now(), &mut self.done);
        for l in self.done.drain(..) {
            self.sched.done(l);
        }
    }

    /// Reads and validates the file, then swaps it in with the model kept.
    /// Returns what changed, or why the file was refused.
    fn reload(&mut self) -> Result<Vec<String>, String> {
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
        if c.netlink_rcvbuf != self.config.netlink_rcvbuf {
            log::warn!("reload: system.netlink_receive_buffer takes effect at the next start");
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
        self.trim_history(c.control.event_history);
        self.sched.set_max_parallel(c.max_parallel);
        self.policy.set_settings(c.policy.clone());
        self.runner
            .set_settings(hook_settings(&c, self.opts.dry_run));
        self.runner.check_script_dir();
        self.config_hash = answer::config_hash(&c);
        self.config = c;
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
        self.inputs = Vec::with_capacity(256);
        self.out = Vec::with_capacity(64);
    }

    /// Sends the policy-routing changes that are due.
    fn reconcile(&mut self, now: Instant) {
        for ch in self.policy.reconcile(&self.core, now) {
            match self.netlink.send(&mut policy::encode(&ch)) {
                Ok(seq) => self.policy.sent(seq, ch),
                Err(e) => self.policy.send_failed(ch, e, now),
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
    }
}
