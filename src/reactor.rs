//! The one loop: a mio `Poll` over the netlink socket, the signal pipe and
//! the hooks' output pipes; hook timeouts are the poll timeout. One
//! dispatch `match` turns a token into its source. Every source is drained
//! until it would block; nothing here waits for anything but `poll`.

use std::io;
use std::path::PathBuf;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use signal_hook::consts::{SIGCHLD, SIGHUP, SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;

use crate::config::Config;
use crate::core::event::HookEvent;
use crate::core::event::PolicyView;
use crate::core::model::{Core, Settings as CoreSettings};
use crate::core::sched::Scheduler;
use crate::core::types::Input;
use crate::effect::hooks::{Runner, Settings as HookSettings};
use crate::effect::policy::{self, Policy};
use crate::source::netlink::Netlink;

const NETLINK: Token = Token(0);
const SIGNALS: Token = Token(1);
/// Hook output pipes take the tokens from here on.
const HOOKS: usize = 16;
/// How soon a dump request that could not be sent is tried again.
const RETRY: std::time::Duration = std::time::Duration::from_millis(100);

enum Source {
    Netlink,
    Signals,
    Hook(Token),
    Unknown,
}

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
    core: Core,
    sched: Scheduler,
    runner: Runner,
    policy: Policy,
    config: Config,
    opts: Options,
    inputs: Vec<Input>,
    out: Vec<HookEvent>,
    done: Vec<u32>,
}

pub fn core_settings(c: &Config) -> CoreSettings {
    CoreSettings {
        interfaces: c.interfaces.iter().map(|s| s.as_bytes().to_vec()).collect(),
        run_on_startup: c.run_on_startup,
    }
}

fn hook_settings(c: &Config, dry_run: bool) -> HookSettings {
    HookSettings {
        script_dir: c.script_dir.clone(),
        timeout: c.timeout,
        dry_run,
        backend: "kernel",
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
        let poll = Poll::new()?;
        let netlink = Netlink::open(config.netlink_rcvbuf)?;
        poll.registry()
            .register(&mut SourceFd(&netlink.fd()), NETLINK, Interest::READABLE)?;
        let mut signals = Signals::new([SIGCHLD, SIGHUP, SIGINT, SIGTERM])?;
        poll.registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)?;
        Ok(Daemon {
            poll,
            netlink,
            signals,
            core: Core::new(core_settings(&config)),
            sched: Scheduler::new(config.max_parallel),
            runner: Runner::new(hook_settings(&config, opts.dry_run), HOOKS),
            policy: Policy::new(config.policy.clone()),
            config,
            opts,
            inputs: Vec::with_capacity(256),
            out: Vec::with_capacity(64),
            done: Vec::new(),
        })
    }

    fn source(&self, t: Token) -> Source {
        match t {
            NETLINK => Source::Netlink,
            SIGNALS => Source::Signals,
            t if self.runner.owns(t) => Source::Hook(t),
            _ => Source::Unknown,
        }
    }

    /// Runs until SIGTERM or SIGINT.
    pub fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(64);
        // The first resync (the start-up dump) is requested by opening.
        self.on_netlink();
        loop {
            // Whatever the last turn queued (events, finished hooks, a
            // reload) starts here, before the loop sleeps again.
            self.dispatch(Instant::now());
            let mut timeout = self
                .runner
                .next_deadline()
                .map(|d| d.saturating_duration_since(Instant::now()));
            if self.netlink.wants_retry() {
                timeout = Some(timeout.map_or(RETRY, |t| t.min(RETRY)));
            }
            if let Some(d) = self.policy.next_deadline() {
                let t = d.saturating_duration_since(Instant::now());
                timeout = Some(timeout.map_or(t, |u| u.min(t)));
            }
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            for ev in events.iter() {
                match self.source(ev.token()) {
                    Source::Netlink => self.on_netlink(),
                    Source::Signals => {
                        if self.on_signals() {
                            self.runner.terminate_all();
                            self.log_summary();
                            return Ok(());
                        }
                    }
                    Source::Hook(t) => self.runner.output(t, self.poll.registry()),
                    // A pipe already closed can still report once.
                    Source::Unknown => {}
                }
            }
            self.runner.expire(Instant::now());
            if self.netlink.wants_retry() {
                self.on_netlink();
            }
            // A restore or retry that was held back may be due.
            self.reconcile(Instant::now());
        }
    }

    fn log_summary(&self) {
        let (n, h, p) = (self.netlink.stats, self.runner.stats, self.policy.stats());
        log::info!(
            "netevd stopping: {} netlink messages ({} undecodable), {} overruns, {} resyncs started, {} completed; \
             {} events ({} coalesced); {} hooks started, {} failed, {} timed out, {} could not start; \
             policy: {} requests, {} refused, {} rules restored",
            n.messages,
            n.decode_errors,
            n.overflows,
            n.resyncs_started,
            self.core.resyncs,
            self.core.events_emitted,
            self.sched.coalesced,
            h.started,
            h.failed,
            h.timed_out,
            h.spawn_errors,
            p.requests,
            p.refused,
            p.restored
        );
    }

    fn on_netlink(&mut self) {
        if let Err(e) = self.netlink.read(&mut self.inputs) {
            log::error!("netlink: {e}");
        }
        if self.inputs.is_empty() {
            return;
        }
        let now = now_ms();
        let instant = Instant::now();
        let was_synced = self.core.synced();
        let mut inputs = std::mem::take(&mut self.inputs);
        for i in inputs.drain(..) {
            self.policy.observe(&i, instant);
            self.core.apply(i, now, &mut self.out);
            // Policy changes go out before hooks start, so a hook for a new
            // address finds its rules in place.
            self.reconcile(instant);
            if self.out.is_empty() {
                continue;
            }
            for ev in self.out.drain(..) {
                log::debug!(
                    "event {} {} {}: {} (was {})",
                    ev.id,
                    ev.kind.as_str(),
                    ev.name_lossy(),
                    ev.dir(),
                    ev.previous.map(|p| p.as_str()).unwrap_or("-")
                );
                self.sched.submit(ev);
            }
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
                "netevd {} running: backend kernel, {} links, hooks in {}{}",
                env!("CARGO_PKG_VERSION"),
                self.core.links().count(),
                self.config.script_dir.display(),
                if self.opts.dry_run { " (dry run)" } else { "" }
            );
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
            self.reload();
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

    fn reload(&mut self) {
        let c = match Config::load(&self.opts.config_path) {
            Ok(c) => c,
            Err(e) => {
                log::error!("reload: {e}; keeping the current configuration");
                return;
            }
        };
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
        self.sched.set_max_parallel(c.max_parallel);
        self.policy.set_settings(c.policy.clone());
        self.runner
            .set_settings(hook_settings(&c, self.opts.dry_run));
        self.core
            .set_settings(core_settings(&c), now_ms(), &mut self.out);
        for ev in self.out.drain(..) {
            self.sched.submit(ev);
        }
        self.reconcile(Instant::now());
        log::info!("reloaded {}", self.opts.config_path.display());
        self.config = c;
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
        while let Some(mut ev) = self.sched.next() {
            let index = ev.index;
            ev.policy = self.policy.plan().link(index).map(|l| PolicyView {
                table: l.table,
                rules: l.rule_strings(),
                gateways: l.gateways.clone(),
            });
            if !self.runner.start(ev, self.poll.registry(), now) {
                self.sched.done(index);
            }
        }
    }
}
