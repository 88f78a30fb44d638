//! The system bus as one more source of the loop: one libdbus connection
//! whose descriptor mio watches, never a blocking call. Method calls are
//! sent with their serial kept in `calls`, and the reply is matched when
//! it arrives; signals and replies are decoded and validated here into
//! the core's manager inputs (core/managers.rs), nothing more.
//!
//! It follows the managers' bus names: `GetNameOwner` at connect and
//! `NameOwnerChanged` afterwards. A manager that appears (or restarts) has
//! its state read again inside its own resync bracket (`Begin` .. `End`);
//! one that goes away is `Gone`. When the bus itself goes away the
//! connection is dropped, every manager is `Gone`, and it is opened again
//! after a backoff from the reactor's timer heap; the kernel's events
//! flow meanwhile. A signal is taken only from the unique name that owns
//! the manager's well-known name, so another client of the bus cannot
//! speak for networkd.
//!
//! What other clients of the bus can make it do is bounded: at most
//! `IN_FLIGHT_MAX` calls out (the system bus allows 128 pending replies
//! a connection) and `QUEUED_MAX` waiting, a manager's state read at most
//! once per `RESYNC_GAP` however often its name changes hands, and
//! `REJECT_LINES` log lines a second for the messages refused.
//!
//! libdbus reads about 2 KiB per `read_write`, and mio is edge-triggered:
//! each readiness is drained to an empty read and the descriptor is then
//! registered again (`EPOLL_CTL_MOD` reports a readable socket anew), or
//! a burst of signals would wait for the next one.

pub mod names;

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::os::unix::io::RawFd;
use std::time::{Duration, Instant};

use dbus::arg::{PropMap, RefArg};
use dbus::channel::Channel;
use dbus::message::MessageType;
use dbus::Message;
use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};

use crate::core::managers::{known, nm_state, Input, Manager, Prop};
use names::*;

/// Where the system bus is when `DBUS_SYSTEM_BUS_ADDRESS` says nothing.
pub const DEFAULT_ADDRESS: &str = "unix:path=/run/dbus/system_bus_socket";

/// Inputs that may wait for their details (Describe, NetworkManager's
/// objects); past this, inputs go without them.
const HELD_MAX: usize = 4096;

/// Reads per readiness before the loop turns to its other sources.
const READS_PER_TURN: usize = 256;

/// How long a call may go unanswered: a manager that hangs must not hold
/// its resync open (and its links unclaimed) for ever.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Calls awaiting their reply at once. dbus-daemon's system bus allows a
/// connection 128 (`max_replies_per_connection`) and answers the rest
/// with LimitsExceeded: a resync that asked for every link at once lost
/// all links past the 126th. Further calls wait in `queued`.
const IN_FLIGHT_MAX: usize = 64;

/// Calls waiting their turn, at most: a link list with a million entries
/// costs this much and no more; what is past it is not read.
const QUEUED_MAX: usize = 16384;

/// Addresses kept of one NetworkManager IP configuration.
const ADDRS_MAX: usize = 256;

/// The least time between two reads of a manager's whole state. A name
/// owner that comes and goes (a crash loop, or a peer that takes and drops
/// the name on purpose) was read again at every return, every link each
/// time; now a return within this time of the last read is read once at
/// its end, whatever happened meanwhile.
const RESYNC_GAP: Duration = Duration::from_secs(1);

const BACKOFF_FIRST: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(10);

/// The answer to a call made for someone else: Ok, or the bus error's
/// name and text (made loggable).
pub type Answer = Result<(), (String, String)>;

/// Which managers to follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Want {
    One(Manager),
    /// `system.backend: auto`: the first of networkd and NetworkManager
    /// that holds its name, decided when both names were looked up.
    Auto,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    pub address: String,
    pub want: Want,
    /// `backends.systemd_networkd.emit_json`: ask for `Describe`.
    pub emit_json: bool,
}

/// What a call in flight was for.
#[derive(Clone, Debug)]
enum Call {
    Hello,
    AddMatch,
    Owner(Manager),
    /// networkd's `ListLinks`, for resync `gen`.
    ListLinks(u64),
    /// `GetAll` of a networkd link (0: the manager object).
    LinkProps(u64, u32),
    /// `Describe` for the held input at this position.
    Describe(u32),
    /// An NM object read for the held input at this position.
    Detail(u32, Detail),
    /// NetworkManager's `GetDevices`.
    Devices(u64),
    /// A call made for someone else (resolved, hostnamed): its answer is
    /// handed over in `answers`.
    Other,
    /// `GetAll` of an NM device.
    DeviceProps(u64, String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// No connection; the next attempt is at `retry_at`.
    Down,
    /// Connected, `Hello` sent.
    Hello,
    Up,
}

/// Counters for status and the metrics registry.
#[derive(Clone, Copy, Debug, Default)]
pub struct Stats {
    pub messages: u64,
    pub calls: u64,
    pub call_errors: u64,
    /// Signals dropped: wrong signature, unknown path, a value not on its
    /// list, or a sender that does not own the name.
    pub rejected: u64,
    pub connects: u64,
    pub disconnects: u64,
}

/// What one manager's side of the bus is doing.
#[derive(Default)]
struct Side {
    owner: Option<String>,
    /// Whether `GetNameOwner` was answered since connect.
    looked_up: bool,
    /// The resync in progress: its number and the replies still awaited.
    gen: u64,
    open: Option<usize>,
    /// NM: device object path to link index.
    devices: HashMap<String, u32>,
    /// When its state was last read, and a read put off (`RESYNC_GAP`).
    resynced_at: Option<Instant>,
    resync_due: Option<Instant>,
}

pub struct Bus {
    settings: Settings,
    chan: Option<Channel>,
    phase: Phase,
    registered: Option<RawFd>,
    calls: HashMap<u32, (Call, Instant)>,
    /// Calls not yet sent, in order, while `IN_FLIGHT_MAX` are out.
    queued: VecDeque<(Message, Call)>,
    sides: [Side; 2],
    /// The manager followed; None until `Want::Auto` decided or while the
    /// one asked for is not running.
    chosen: Option<Manager>,
    /// Inputs in arrival order; the front waits while its `Describe` is
    /// out, so the order of events is the order of signals.
    held: VecDeque<(u32, Input)>,
    /// NetworkManager's connection details per link.
    nm_details: HashMap<u32, NmDetails>,
    held_base: u32,
    /// networkd's own description of each link, by index.
    describe: HashMap<u32, String>,
    /// Names networkd gave its links (when the kernel's are not known).
    link_names: HashMap<u32, String>,
    /// Answers to `call_other`, by serial: Ok, or the error's name and text.
    pub answers: Vec<(u32, Answer)>,
    retry_at: Option<Instant>,
    backoff: Duration,
    last_error: String,
    /// Paces the lines that name rejected messages.
    quiet: Quiet,
    pub stats: Stats,
}

/// Lines naming rejected messages, at most, in each second.
const REJECT_LINES: u32 = 10;

/// A budget of log lines per second for what other clients of the bus
/// send. Any of them may send signals to our unique name (a unicast signal
/// passes no match rule) or call us, and every one is rejected with a
/// reason: without a budget 100,000 of them were 100,000 warnings. Past
/// the budget they are counted, and the count is said in the first line
/// of a later second.
#[derive(Debug)]
struct Quiet {
    window: Instant,
    lines: u32,
    held: u64,
}

impl Quiet {
    /// Whether a line may be written now; with the number held back since
    /// the last one written, when that is not zero.
    fn allow(&mut self, now: Instant) -> (bool, u64) {
        if now.saturating_duration_since(self.window) >= Duration::from_secs(1) {
            self.window = now;
            self.lines = 0;
        }
        if self.lines >= REJECT_LINES {
            self.held += 1;
            return (false, 0);
        }
        self.lines += 1;
        (true, std::mem::take(&mut self.held))
    }
}

fn side(m: Manager) -> usize {
    m as usize
}

impl Bus {
    pub fn new(settings: Settings, now: Instant) -> Self {
        Bus {
            settings,
            chan: None,
            phase: Phase::Down,
            registered: None,
            calls: HashMap::new(),
            queued: VecDeque::new(),
            sides: Default::default(),
            chosen: None,
            held: VecDeque::new(),
            nm_details: HashMap::new(),
            held_base: 0,
            describe: HashMap::new(),
            link_names: HashMap::new(),
            answers: Vec::new(),
            retry_at: Some(now),
            backoff: BACKOFF_FIRST,
            last_error: String::new(),
            quiet: Quiet {
                window: now,
                lines: 0,
                held: 0,
            },
            stats: Stats::default(),
        }
    }

    pub fn set_emit_json(&mut self, v: bool) {
        self.settings.emit_json = v;
        if !v {
            self.describe.clear();
        }
    }

    /// The bus address from the environment, as libdbus would take it.
    pub fn address_from_env() -> String {
        std::env::var("DBUS_SYSTEM_BUS_ADDRESS")
            .ok()
            .filter(|a| !a.is_empty())
            .unwrap_or_else(|| DEFAULT_ADDRESS.to_string())
    }

    pub fn up(&self) -> bool {
        self.phase == Phase::Up
    }

    /// The manager followed, once known.
    pub fn chosen(&self) -> Option<Manager> {
        self.chosen
    }

    /// Whether `m` holds its bus name now.
    pub fn running(&self, m: Manager) -> bool {
        self.sides[side(m)].owner.is_some()
    }

    /// Whether start-up's question is answered: the bus is down, or every
    /// name was looked up and the chosen manager (if any) was read once.
    pub fn settled(&self) -> bool {
        match self.phase {
            // An attempt failed: the kernel goes on alone for now.
            Phase::Down => return !self.last_error.is_empty(),
            Phase::Hello => return false,
            Phase::Up => {}
        }
        let wanted: &[Manager] = match self.settings.want {
            Want::One(m) => &[m][..],
            Want::Auto => &Manager::ALL,
        };
        wanted.iter().all(|&m| self.sides[side(m)].looked_up)
            && self.chosen.map_or(true, |m| {
                self.sides[side(m)].open.is_none() && self.held.is_empty()
            })
    }

    /// One line for `status`: the bus and what it carries.
    pub fn status(&self) -> String {
        match self.phase {
            Phase::Down if self.last_error.is_empty() => "connecting".into(),
            Phase::Down => format!("down ({}), reconnecting", self.last_error),
            Phase::Hello => "connecting".into(),
            Phase::Up => {
                let names: Vec<String> = Manager::ALL
                    .iter()
                    .filter(|&&m| self.watches(m))
                    .map(|&m| match &self.sides[side(m)].owner {
                        Some(o) => format!("{} {}", m.as_str(), o),
                        None => format!("{} not running", m.as_str()),
                    })
                    .collect();
                format!("up; {}", names.join(", "))
            }
        }
    }

    pub fn describe(&self, index: u32) -> Option<&str> {
        self.describe.get(&index).map(String::as_str)
    }

    /// The kernel removed link `index`: what was kept of it goes (see
    /// `Managers::forget`).
    pub fn forget(&mut self, index: u32) {
        self.describe.remove(&index);
        self.link_names.remove(&index);
        self.nm_details.remove(&index);
    }

    pub fn link_name(&self, index: u32) -> Option<&str> {
        self.link_names.get(&index).map(String::as_str)
    }

    /// When the loop should call `on_timer`: a reconnect, or the first
    /// call to time out.
    pub fn next_deadline(&self) -> Option<Instant> {
        let call = self
            .calls
            .values()
            .map(|(_, t)| *t + CALL_TIMEOUT)
            .chain(self.sides.iter().filter_map(|s| s.resync_due))
            .min();
        match (self.retry_at, call) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn watches(&self, m: Manager) -> bool {
        match self.settings.want {
            Want::One(w) => w == m,
            Want::Auto => true,
        }
    }

    /// A reconnect is due.
    pub fn on_timer(
        &mut self,
        registry: &Registry,
        token: Token,
        now: Instant,
        out: &mut Vec<Input>,
    ) {
        if self.retry_at.is_some_and(|t| t <= now) && self.phase == Phase::Down {
            self.retry_at = None;
            self.connect(now);
            self.pump(now, out);
        }
        for m in Manager::ALL {
            if self.sides[side(m)].resync_due.is_some_and(|t| t <= now) {
                self.sides[side(m)].resync_due = None;
                if self.chosen == Some(m) && self.sides[side(m)].owner.is_some() {
                    self.resync(m);
                }
            }
        }
        let late: Vec<u32> = self
            .calls
            .iter()
            .filter(|(_, (_, t))| *t + CALL_TIMEOUT <= now)
            .map(|(s, _)| *s)
            .collect();
        if !late.is_empty() {
            // A peer that let a call go unanswered this long is hung: the
            // calls still waiting their turn are given up with it, or a
            // resync of N links would take N / IN_FLIGHT_MAX timeouts.
            let waiting = std::mem::take(&mut self.queued);
            log::warn!(
                "dbus: {} call(s) had no answer in {CALL_TIMEOUT:?}; {} waiting given up",
                late.len(),
                waiting.len()
            );
            let e = (
                "timeout".to_string(),
                format!("no answer in {CALL_TIMEOUT:?}"),
            );
            for serial in late {
                if let Some((call, _)) = self.calls.remove(&serial) {
                    self.stats.call_errors += 1;
                    log::debug!("dbus: {call:?}: no answer in {CALL_TIMEOUT:?}");
                    self.on_error(call, e.clone(), now);
                }
            }
            for (_, call) in waiting {
                self.stats.call_errors += 1;
                self.on_error(call, e.clone(), now);
            }
            self.send_queued();
        }
        self.release(out);
        self.register(registry, token);
    }

    fn connect(&mut self, now: Instant) {
        let addr = self.settings.address.clone();
        // Connecting a Unix socket does not wait; authentication and
        // `Hello` go through the loop like any other exchange.
        let mut chan = match Channel::open_private(&addr) {
            Ok(c) => c,
            Err(e) => {
                self.fail(
                    format!(
                        "cannot connect to {}: {}",
                        loggable(&addr),
                        loggable(e.message().unwrap_or("?"))
                    ),
                    now,
                );
                return;
            }
        };
        chan.set_watch_enabled(true);
        self.chan = Some(chan);
        self.phase = Phase::Hello;
        self.stats.connects += 1;
        self.calls.clear();
        self.queued.clear();
        self.call(
            Message::new_method_call(
                "org.freedesktop.DBus",
                "/org/freedesktop/DBus",
                "org.freedesktop.DBus",
                "Hello",
            ),
            Call::Hello,
        );
    }

    fn fail(&mut self, why: String, now: Instant) {
        if why != self.last_error {
            log::warn!("dbus: {why}; retrying in {:?}", self.backoff);
        } else {
            log::debug!("dbus: {why}");
        }
        self.last_error = why;
        self.retry_at = Some(now + self.backoff);
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
    }

    /// The bus went away: every manager is gone until it is back.
    fn lost(&mut self, now: Instant, out: &mut Vec<Input>) {
        self.drop_channel();
        self.phase = Phase::Down;
        self.calls.clear();
        self.queued.clear();
        self.stats.disconnects += 1;
        self.flush_held(out);
        for m in Manager::ALL {
            let s = &mut self.sides[side(m)];
            if s.owner.take().is_some() || s.open.is_some() {
                out.push(Input::Gone(m));
            }
            *s = Side {
                gen: s.gen + 1,
                ..Side::default()
            };
        }
        if self.settings.want == Want::Auto {
            self.chosen = None;
        }
        self.fail("the bus closed the connection".into(), now);
    }

    /// Closing the descriptor took it out of the epoll set: a new
    /// connection that gets the same number must be registered afresh.
    fn drop_channel(&mut self) {
        self.chan = None;
        self.registered = None;
    }

    /// Keeps mio's interest in step with libdbus's wishes, and registers
    /// the descriptor again after every turn (see the module comment).
    pub fn register(&mut self, registry: &Registry, token: Token) {
        let fd = self.chan.as_ref().map(|c| c.watch().fd);
        if let Some(old) = self.registered {
            if fd != Some(old) {
                // Closed with the channel already when it was dropped.
                let _ = registry.deregister(&mut SourceFd(&old));
                self.registered = None;
            }
        }
        let Some(c) = &self.chan else {
            return;
        };
        let w = c.watch();
        let interest = if w.write || c.has_messages_to_send() {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        let r = if self.registered.is_some() {
            registry.reregister(&mut SourceFd(&w.fd), token, interest)
        } else {
            registry.register(&mut SourceFd(&w.fd), token, interest)
        };
        match r {
            Ok(()) => self.registered = Some(w.fd),
            Err(e) => log::error!("dbus: cannot watch the connection: {e}"),
        }
    }

    /// The descriptor is ready: read, write and decode until drained.
    pub fn on_ready(
        &mut self,
        registry: &Registry,
        token: Token,
        now: Instant,
        out: &mut Vec<Input>,
    ) {
        self.pump(now, out);
        self.register(registry, token);
    }

    fn pump(&mut self, now: Instant, out: &mut Vec<Input>) {
        for _ in 0..READS_PER_TURN {
            let Some(c) = &self.chan else {
                return;
            };
            if c.read_write(Some(Duration::ZERO)).is_err() || !c.is_connected() {
                self.lost(now, out);
                return;
            }
            let mut got = 0;
            while let Some(msg) = self.chan.as_ref().and_then(Channel::pop_message) {
                got += 1;
                self.stats.messages += 1;
                self.on_message(msg, now);
            }
            if got == 0 {
                break;
            }
        }
        self.release(out);
    }

    /// Sends a call for another service; None when the bus is not up or
    /// the call could not be queued. The answer comes in `answers`.
    pub fn call_other(&mut self, msg: Message) -> Option<u32> {
        if self.phase != Phase::Up {
            return None;
        }
        let before = self.stats.calls;
        let serial = self.chan.as_ref()?.send(msg).ok()?;
        self.stats.calls = before + 1;
        self.calls.insert(serial, (Call::Other, Instant::now()));
        Some(serial)
    }

    /// Sends a call, or queues it while `IN_FLIGHT_MAX` are out; false
    /// when it will never be made (no connection, or the queue is full),
    /// so that nobody waits for its answer.
    fn call(&mut self, msg: Result<Message, String>, what: Call) -> bool {
        let Ok(msg) = msg else {
            return false;
        };
        if self.chan.is_none() {
            return false;
        }
        if self.calls.len() < IN_FLIGHT_MAX && self.queued.is_empty() {
            return self.send_call(msg, what);
        }
        if self.queued.len() >= QUEUED_MAX {
            self.reject(format!(
                "a call ({what:?}): {QUEUED_MAX} calls wait already"
            ));
            return false;
        }
        self.queued.push_back((msg, what));
        true
    }

    fn send_call(&mut self, msg: Message, what: Call) -> bool {
        let Some(c) = &self.chan else {
            return false;
        };
        match c.send(msg) {
            Ok(serial) => {
                self.stats.calls += 1;
                self.calls.insert(serial, (what, Instant::now()));
                true
            }
            Err(()) => {
                log::warn!("dbus: could not queue a call (out of memory?)");
                false
            }
        }
    }

    /// A call was answered or given up: queued ones take its place. One
    /// that cannot be sent is answered with an error at once, so that
    /// what waited on it goes on.
    fn send_queued(&mut self) {
        while self.calls.len() < IN_FLIGHT_MAX {
            let Some((msg, what)) = self.queued.pop_front() else {
                return;
            };
            if !self.send_call(msg, what.clone()) {
                let e = ("unsent".to_string(), "could not be sent".to_string());
                self.on_error(what, e, Instant::now());
            }
        }
    }

    fn on_message(&mut self, mut msg: Message, now: Instant) {
        match msg.msg_type() {
            MessageType::MethodReturn | MessageType::Error => {
                let Some((call, _)) = msg.get_reply_serial().and_then(|s| self.calls.remove(&s))
                else {
                    return;
                };
                self.send_queued();
                let serial = msg.get_reply_serial().unwrap_or(0);
                if msg.msg_type() == MessageType::MethodReturn {
                    if let Call::Other = call {
                        return self.answers.push((serial, Ok(())));
                    }
                    return self.on_reply(call, &msg, now);
                }
                self.stats.call_errors += 1;
                let e = match msg.as_result() {
                    Err(e) => (
                        loggable(e.name().unwrap_or("?")),
                        loggable(e.message().unwrap_or("")),
                    ),
                    Ok(_) => ("?".into(), String::new()),
                };
                if let Call::Other = call {
                    return self.answers.push((serial, Err(e)));
                }
                self.on_error(call, e, now);
            }
            MessageType::Signal => self.on_signal(&msg, now),
            MessageType::MethodCall => {
                // Nobody should call us; answer so the caller does not wait.
                if let Some(c) = &self.chan {
                    let e = msg.error(
                        &"org.freedesktop.DBus.Error.UnknownMethod".into(),
                        c"netevd serves no methods",
                    );
                    let _ = c.send(e);
                }
            }
        }
    }

    fn on_reply(&mut self, call: Call, m: &Message, now: Instant) {
        match call {
            Call::Other => {}
            Call::Hello => {
                self.phase = Phase::Up;
                self.backoff = BACKOFF_FIRST;
                if !self.last_error.is_empty() {
                    log::info!(
                        "dbus: connected to {} again",
                        loggable(&self.settings.address)
                    );
                }
                self.last_error.clear();
                self.subscribe();
            }
            Call::AddMatch => {}
            Call::Owner(mgr) => {
                let owner = m.read1::<&str>().ok().map(str::to_string);
                let s = &mut self.sides[side(mgr)];
                s.looked_up = true;
                s.owner = owner;
                self.choose(now);
            }
            Call::ListLinks(gen) => self.on_links(gen, m),
            Call::LinkProps(gen, index) => {
                if gen == self.sides[side(Manager::Networkd)].gen {
                    match m.read1::<PropMap>() {
                        Ok(p) => {
                            if let Some(i) = self.networkd_props(index, &p) {
                                let describe = self.settings.emit_json && index != 0;
                                self.push(i, describe.then_some(index));
                            }
                        }
                        Err(e) => self.reject(format!("GetAll of link {index}: {e}")),
                    }
                    self.answered(Manager::Networkd);
                }
            }
            Call::Describe(pos) => {
                if let Some(index) = self.held_index(pos) {
                    match m.read1::<&str>() {
                        // Its own JSON; checked to be JSON before hooks get it.
                        Ok(j) if serde_json::from_str::<serde::de::IgnoredAny>(j).is_ok() => {
                            self.describe.insert(index, j.to_string());
                        }
                        _ => {
                            self.describe.remove(&index);
                            self.reject(format!("Describe of link {index}: not JSON"));
                        }
                    }
                }
                self.done_describe(pos);
            }
            Call::Devices(gen) => self.on_devices(gen, m),
            Call::Detail(pos, what) => {
                match m.read1::<PropMap>() {
                    Ok(p) => self.on_detail(pos, what, &p),
                    Err(e) => self.reject(format!("NetworkManager {what:?} properties: {e}")),
                }
                self.done_describe(pos);
            }
            Call::DeviceProps(gen, path) => {
                if gen == self.sides[side(Manager::NetworkManager)].gen {
                    match m.read1::<PropMap>() {
                        Ok(p) => self.device_props(&path, &p),
                        Err(e) => self.reject(format!("GetAll of {}: {e}", loggable(&path))),
                    }
                    self.answered(Manager::NetworkManager);
                }
            }
        }
    }

    fn on_error(&mut self, call: Call, (name, text): (String, String), now: Instant) {
        match call {
            Call::Other => {}
            Call::Hello => {
                self.drop_channel();
                self.phase = Phase::Down;
                self.fail(format!("Hello refused: {name}: {text}"), now);
            }
            Call::AddMatch => log::warn!("dbus: AddMatch refused: {name}: {text}"),
            Call::Owner(m) => {
                // NameHasNoOwner: not running (yet).
                let s = &mut self.sides[side(m)];
                s.looked_up = true;
                s.owner = None;
                self.choose(now);
            }
            Call::ListLinks(gen) | Call::Devices(gen) => {
                let m = if matches!(call, Call::ListLinks(_)) {
                    Manager::Networkd
                } else {
                    Manager::NetworkManager
                };
                if gen == self.sides[side(m)].gen {
                    log::warn!(
                        "dbus: {} did not list its links: {name}: {text}",
                        m.as_str()
                    );
                    self.answered(m);
                }
            }
            Call::LinkProps(gen, index) => {
                // The link went away between the list and the read.
                log::debug!("dbus: link {index} properties: {name}: {text}");
                if gen == self.sides[side(Manager::Networkd)].gen {
                    self.answered(Manager::Networkd);
                }
            }
            Call::DeviceProps(gen, path) => {
                log::debug!("dbus: {} properties: {name}: {text}", loggable(&path));
                if gen == self.sides[side(Manager::NetworkManager)].gen {
                    self.answered(Manager::NetworkManager);
                }
            }
            Call::Detail(pos, what) => {
                // The object went away meanwhile: the event goes without.
                log::debug!("dbus: NetworkManager {what:?}: {name}: {text}");
                self.done_describe(pos);
            }
            Call::Describe(pos) => {
                if let Some(index) = self.held_index(pos) {
                    // networkd before 247 has no Describe: the state file
                    // and the kernel's data stand in.
                    log::debug!("dbus: Describe of link {index}: {name}: {text}");
                    self.describe.remove(&index);
                }
                self.done_describe(pos);
            }
        }
    }

    /// Match rules: owner changes of the managers' names, and their
    /// signals. The sender is checked again on every signal.
    fn subscribe(&mut self) {
        let mut rules = Vec::new();
        let watched: Vec<Manager> = Manager::ALL
            .into_iter()
            .filter(|&m| self.watches(m))
            .collect();
        for &m in &watched {
            let (name, path) = match m {
                Manager::Networkd => (NETWORKD, NETWORKD_PATH),
                Manager::NetworkManager => (NM, NM_PATH),
            };
            rules.push(format!(
                "type='signal',sender='org.freedesktop.DBus',interface='org.freedesktop.DBus',\
                 member='NameOwnerChanged',arg0='{name}'"
            ));
            let member = match m {
                Manager::Networkd => {
                    "member='PropertiesChanged',interface='org.freedesktop.DBus.Properties'"
                }
                Manager::NetworkManager => {
                    "member='StateChanged',interface='org.freedesktop.NetworkManager.Device'"
                }
            };
            rules.push(format!(
                "type='signal',sender='{name}',{member},path_namespace='{path}'"
            ));
            if m == Manager::NetworkManager {
                rules.push(format!(
                    "type='signal',sender='{name}',interface='{NM}',member='DeviceRemoved',\
                     path='{NM_PATH}'"
                ));
            }
        }
        for r in rules {
            let msg = Message::new_method_call(
                "org.freedesktop.DBus",
                "/org/freedesktop/DBus",
                "org.freedesktop.DBus",
                "AddMatch",
            )
            .map(|m| m.append1(r));
            self.call(msg, Call::AddMatch);
        }
        for m in watched {
            let name = match m {
                Manager::Networkd => NETWORKD,
                Manager::NetworkManager => NM,
            };
            let msg = Message::new_method_call(
                "org.freedesktop.DBus",
                "/org/freedesktop/DBus",
                "org.freedesktop.DBus",
                "GetNameOwner",
            )
            .map(|x| x.append1(name));
            self.call(msg, Call::Owner(m));
        }
    }

    /// Decides which manager to follow once the names were looked up, and
    /// reads its state.
    fn choose(&mut self, _now: Instant) {
        let pick = match self.settings.want {
            Want::One(m) => self.running(m).then_some(m),
            Want::Auto => {
                if !Manager::ALL.iter().all(|&m| self.sides[side(m)].looked_up) {
                    return;
                }
                Manager::ALL.into_iter().find(|&m| self.running(m))
            }
        };
        if let Want::One(m) = self.settings.want {
            if pick.is_none() && self.chosen.is_none() {
                log::warn!(
                    "dbus: system.backend {} is configured but {} has no owner on the bus: \
                     kernel events go on, and {} is followed once it appears",
                    m.as_str(),
                    match m {
                        Manager::Networkd => NETWORKD,
                        Manager::NetworkManager => NM,
                    },
                    m.as_str()
                );
            }
        }
        if let Some(m) = pick {
            if self.chosen != Some(m) {
                self.chosen = Some(m);
                log::info!("dbus: following {}", m.as_str());
            }
            if self.sides[side(m)].open.is_none() {
                self.resync(m);
            }
        }
    }

    /// Reads `m`'s whole state again, inside its resync bracket.
    fn resync(&mut self, m: Manager) {
        let s = &mut self.sides[side(m)];
        s.resynced_at = Some(Instant::now());
        s.resync_due = None;
        s.gen += 1;
        let gen = s.gen;
        s.open = Some(0);
        s.devices.clear();
        log::debug!("dbus: reading {}'s state", m.as_str());
        // Filled again by the read; links gone meanwhile are forgotten.
        self.link_names.clear();
        self.describe.clear();
        self.held.push_back((0, Input::Begin(m)));
        match m {
            Manager::Networkd => {
                let msg = Message::new_method_call(
                    NETWORKD,
                    NETWORKD_PATH,
                    NETWORKD_MANAGER,
                    "ListLinks",
                );
                let n = usize::from(self.call(msg, Call::ListLinks(gen)))
                    + usize::from(self.get_all(
                        NETWORKD,
                        NETWORKD_PATH,
                        NETWORKD_MANAGER,
                        Call::LinkProps(gen, 0),
                    ));
                self.sides[side(m)].open = Some(n);
                if n == 0 {
                    self.answered_none(m);
                }
            }
            Manager::NetworkManager => {
                let msg = Message::new_method_call(NM, NM_PATH, NM, "GetDevices");
                let n = usize::from(self.call(msg, Call::Devices(gen)));
                self.sides[side(m)].open = Some(n);
                if n == 0 {
                    self.answered_none(m);
                }
            }
        }
    }

    fn get_all(&mut self, dest: &str, path: &str, iface: &str, what: Call) -> bool {
        let msg = Message::new_method_call(dest, path, "org.freedesktop.DBus.Properties", "GetAll")
            .map(|x| x.append1(iface));
        self.call(msg, what)
    }

    /// A resync none of whose calls could be made: its bracket closes
    /// empty rather than stay open for ever.
    fn answered_none(&mut self, m: Manager) {
        let s = &mut self.sides[side(m)];
        s.open = Some(1);
        self.answered(m);
    }

    /// One reply of `m`'s resync is in; the last closes the bracket.
    fn answered(&mut self, m: Manager) {
        let s = &mut self.sides[side(m)];
        if let Some(n) = s.open.as_mut() {
            *n = n.saturating_sub(1);
            if *n == 0 {
                log::debug!("dbus: read {}'s state", m.as_str());
                s.open = None;
                self.held.push_back((0, Input::End(m)));
            }
        }
    }

    fn on_links(&mut self, gen: u64, m: &Message) {
        if gen != self.sides[side(Manager::Networkd)].gen {
            return;
        }
        match m.read1::<Vec<(i32, String, dbus::Path)>>() {
            Ok(links) => {
                for (index, name, path) in links {
                    let Some(i) = u32::try_from(index).ok().filter(|&i| i > 0) else {
                        self.reject(format!("ListLinks: index {index}"));
                        continue;
                    };
                    // The path must be the one networkd's escaping makes
                    // for this index, so that nothing else is called.
                    if networkd_link_index(&path) != Some(i) {
                        self.reject(format!("ListLinks: path {} for link {i}", loggable(&path)));
                        continue;
                    }
                    match link_name(&name) {
                        Some(n) => {
                            self.link_names.insert(i, n.to_string());
                        }
                        None => {
                            self.reject(format!("ListLinks: name {} for link {i}", loggable(&name)))
                        }
                    }
                    if !self.get_all(NETWORKD, &path, NETWORKD_LINK, Call::LinkProps(gen, i)) {
                        break;
                    }
                    let s = &mut self.sides[side(Manager::Networkd)];
                    *s.open.get_or_insert(0) += 1;
                }
            }
            Err(e) => self.reject(format!("ListLinks: {e}")),
        }
        self.answered(Manager::Networkd);
    }

    fn on_devices(&mut self, gen: u64, m: &Message) {
        if gen != self.sides[side(Manager::NetworkManager)].gen {
            return;
        }
        match m.read1::<Vec<dbus::Path>>() {
            Ok(paths) => {
                for p in paths {
                    if !nm_device_path(&p) {
                        self.reject(format!("GetDevices: path {}", loggable(&p)));
                        continue;
                    }
                    let path = p.to_string();
                    if !self.get_all(NM, &path, NM_DEVICE, Call::DeviceProps(gen, path.clone())) {
                        break;
                    }
                    let s = &mut self.sides[side(Manager::NetworkManager)];
                    *s.open.get_or_insert(0) += 1;
                }
            }
            Err(e) => self.reject(format!("GetDevices: {e}")),
        }
        self.answered(Manager::NetworkManager);
    }

    /// A device's properties: its index, name and state.
    fn device_props(&mut self, path: &str, p: &PropMap) {
        // NetworkManager 1.42 has no Ifindex property: the device's
        // interface name, checked, is looked up in our namespace (the one
        // NetworkManager manages).
        let iface = p
            .get("Interface")
            .and_then(|v| v.0.as_str())
            .and_then(link_name)
            .map(str::to_string);
        let index = p
            .get("Ifindex")
            .and_then(|v| v.0.as_u64())
            .and_then(|i| u32::try_from(i).ok())
            .or_else(|| iface.as_deref().and_then(ifindex));
        let state = p
            .get("State")
            .and_then(|v| v.0.as_u64())
            .and_then(|s| u32::try_from(s).ok());
        let (Some(index), Some(state)) = (index.filter(|&i| i > 0), state) else {
            // Devices without a kernel link (Wi-Fi P2P, modems) have index 0.
            return;
        };
        let Some(name) = nm_state(state) else {
            self.reject(format!("device {} state {state}", loggable(path)));
            return;
        };
        if let Some(n) = iface {
            self.link_names.insert(index, n);
        }
        self.sides[side(Manager::NetworkManager)]
            .devices
            .insert(path.to_string(), index);
        self.push_device(
            Input::Device {
                index,
                state: name,
                reason: 0,
            },
            path,
        );
    }

    /// networkd properties as the core's input: each value must be on its
    /// property's list. None when nothing we follow is in it.
    fn networkd_props(&mut self, index: u32, p: &PropMap) -> Option<Input> {
        let mut props = Vec::new();
        for (k, v) in p {
            let Some((prop, list)) = Prop::by_name(k) else {
                continue;
            };
            let Some(s) = v.0.as_str() else {
                self.reject(format!("link {index} {k}: not a string"));
                continue;
            };
            match known(list, s) {
                Some(s) => props.push((prop, s)),
                None => self.reject(format!(
                    "link {index} {k} {:?}: not a known state",
                    loggable(s)
                )),
            }
        }
        props.sort();
        (!props.is_empty()).then_some(Input::Networkd { index, props })
    }

    fn reject(&mut self, what: String) {
        self.stats.rejected += 1;
        match self.quiet.allow(Instant::now()) {
            (false, _) => {}
            (true, 0) => log::warn!("dbus: ignored {what}"),
            (true, n) => log::warn!("dbus: ignored {what} (and {n} more, not logged)"),
        }
    }

    fn on_signal(&mut self, msg: &Message, now: Instant) {
        let (Some(iface), Some(member), Some(path)) = (msg.interface(), msg.member(), msg.path())
        else {
            return;
        };
        let sender = msg.sender().map(|s| s.to_string()).unwrap_or_default();
        if &*iface == "org.freedesktop.DBus" && &*member == "NameOwnerChanged" {
            if sender != "org.freedesktop.DBus" {
                return self.reject(format!("NameOwnerChanged from {}", loggable(&sender)));
            }
            return match msg.read3::<&str, &str, &str>() {
                Ok((name, old, new)) => self.owner_changed(name, old, new, now),
                Err(e) => self.reject(format!("NameOwnerChanged: {e}")),
            };
        }
        let m = match (&*iface, &*member) {
            ("org.freedesktop.DBus.Properties", "PropertiesChanged") => Manager::Networkd,
            (NM_DEVICE, "StateChanged") | (NM, "DeviceRemoved") => Manager::NetworkManager,
            _ => return,
        };
        if self.chosen != Some(m) {
            return;
        }
        if self.sides[side(m)].owner.as_deref() != Some(sender.as_str()) {
            return self.reject(format!(
                "{member} from {}, which does not own {}",
                loggable(&sender),
                m.as_str()
            ));
        }
        match m {
            Manager::Networkd => {
                let index = if &*path == NETWORKD_PATH {
                    0
                } else if let Some(i) = networkd_link_index(&path) {
                    i
                } else {
                    return self.reject(format!("PropertiesChanged on {}", loggable(&path)));
                };
                let (iface_arg, props) = match msg.read3::<&str, PropMap, Vec<String>>() {
                    Ok((i, p, _)) => (i.to_string(), p),
                    Err(e) => {
                        return self.reject(format!(
                            "PropertiesChanged on {} with signature {}: {e}",
                            loggable(&path),
                            signature(msg)
                        ))
                    }
                };
                let want = if index == 0 {
                    NETWORKD_MANAGER
                } else {
                    NETWORKD_LINK
                };
                if iface_arg != want {
                    return;
                }
                if let Some(i) = self.networkd_props(index, &props) {
                    let describe = self.settings.emit_json && index != 0;
                    self.push(i, describe.then_some(index));
                }
            }
            Manager::NetworkManager if &*member == "DeviceRemoved" => {
                match msg.read1::<dbus::Path>() {
                    Ok(p) => {
                        if let Some(index) = self.sides[side(m)].devices.remove(&*p) {
                            self.push(Input::DeviceGone(index), None);
                        }
                    }
                    Err(e) => self.reject(format!("DeviceRemoved: {e}")),
                }
            }
            Manager::NetworkManager => {
                let Some(&index) = self.sides[side(m)].devices.get(&*path) else {
                    // A device NM has not told us of yet: read it whole.
                    if nm_device_path(&path) {
                        let gen = self.sides[side(m)].gen;
                        let p = path.to_string();
                        self.get_all(NM, &p, NM_DEVICE, Call::DeviceProps(gen, p.clone()));
                    }
                    return;
                };
                match msg.read3::<u32, u32, u32>() {
                    Ok((new, _old, reason)) => match nm_state(new) {
                        Some(state) => self.push_device(
                            Input::Device {
                                index,
                                state,
                                reason,
                            },
                            &path,
                        ),
                        None => self.reject(format!("StateChanged of link {index} to {new}")),
                    },
                    Err(e) => self.reject(format!(
                        "StateChanged with signature {}: {e}",
                        signature(msg)
                    )),
                }
            }
        }
    }

    fn owner_changed(&mut self, name: &str, old: &str, new: &str, now: Instant) {
        let Some(m) = Manager::ALL.into_iter().find(|&m| {
            name == match m {
                Manager::Networkd => NETWORKD,
                Manager::NetworkManager => NM,
            }
        }) else {
            return;
        };
        if !self.watches(m) {
            return;
        }
        let s = &mut self.sides[side(m)];
        s.looked_up = true;
        // Within RESYNC_GAP of the last read, a flapping owner: said once.
        let storm = s.resynced_at.is_some_and(|t| now < t + RESYNC_GAP);
        if !old.is_empty() && s.owner.is_some() {
            if storm {
                log::debug!("dbus: {} left the bus ({})", m.as_str(), loggable(old));
            } else {
                log::warn!("dbus: {} left the bus ({})", m.as_str(), loggable(old));
            }
            s.owner = None;
            s.resync_due = None;
            s.open = None;
            s.gen += 1;
            if self.chosen == Some(m) {
                self.held.push_back((0, Input::Gone(m)));
            }
        }
        if !new.is_empty() {
            let s = &mut self.sides[side(m)];
            s.owner = Some(new.to_string());
            if !storm {
                log::info!("dbus: {} is on the bus as {}", m.as_str(), loggable(new));
            } else if s.resync_due.is_none() {
                log::warn!(
                    "dbus: {} is on the bus as {} again within {RESYNC_GAP:?}: its state \
                     is read once it settles",
                    m.as_str(),
                    loggable(new)
                );
            }
            if self.chosen == Some(m) {
                if storm {
                    let s = &mut self.sides[side(m)];
                    s.resync_due = s.resynced_at.map(|t| t + RESYNC_GAP);
                } else {
                    self.resync(m);
                }
            } else if self.chosen.is_none() {
                self.choose(now);
            }
        }
    }

    /// Queues an input; with `describe`, it waits for that link's
    /// `Describe` answer first.
    fn push(&mut self, i: Input, describe: Option<u32>) {
        let pos = self.held_base.wrapping_add(self.held.len() as u32);
        self.held.push_back((0, i));
        // A peer that floods signals gets no more calls than this waiting.
        let describe = describe.filter(|_| self.held.len() <= HELD_MAX);
        if let Some(index) = describe {
            let msg = Message::new_method_call(
                NETWORKD,
                networkd_link_path(index),
                NETWORKD_LINK,
                "Describe",
            );
            self.wait_on(pos, msg, Call::Describe(pos));
        }
    }

    /// Queues an NM device's state; it waits until the device's active
    /// connection and IP configuration were read.
    fn push_device(&mut self, i: Input, path: &str) {
        let pos = self.held_base.wrapping_add(self.held.len() as u32);
        self.held.push_back((0, i));
        if self.held.len() > HELD_MAX {
            return;
        }
        let msg = Message::new_method_call(NM, path, "org.freedesktop.DBus.Properties", "GetAll")
            .map(|x| x.append1(NM_DEVICE));
        self.wait_on(pos, msg, Call::Detail(pos, Detail::Device));
    }

    /// Makes the held input at `pos` wait for one more call.
    fn wait_on(&mut self, pos: u32, msg: Result<Message, String>, call: Call) {
        if self.call(msg, call) {
            let at = pos.wrapping_sub(self.held_base) as usize;
            if let Some((n, _)) = self.held.get_mut(at) {
                *n += 1;
            }
        }
    }

    /// The link index of the held input at `pos`, while it waits.
    fn held_index(&self, pos: u32) -> Option<u32> {
        let at = pos.wrapping_sub(self.held_base) as usize;
        match self.held.get(at) {
            Some((n, Input::Networkd { index, .. } | Input::Device { index, .. })) if *n > 0 => {
                Some(*index)
            }
            _ => None,
        }
    }

    /// One call the input at `pos` waited for is answered.
    fn done_describe(&mut self, pos: u32) {
        let at = pos.wrapping_sub(self.held_base) as usize;
        if let Some((n, _)) = self.held.get_mut(at) {
            *n = n.saturating_sub(1);
        }
    }

    /// Hands over the inputs whose wait is over, in order.
    fn release(&mut self, out: &mut Vec<Input>) {
        while let Some((0, _)) = self.held.front() {
            if let Some((_, i)) = self.held.pop_front() {
                out.push(i);
            }
            self.held_base = self.held_base.wrapping_add(1);
        }
    }

    /// The connection is gone: what waited for answers goes without.
    fn flush_held(&mut self, out: &mut Vec<Input>) {
        self.held_base = self.held_base.wrapping_add(self.held.len() as u32);
        out.extend(self.held.drain(..).map(|(_, i)| i));
    }

    /// NetworkManager's details of a device: which objects to read next,
    /// or the values read.
    fn on_detail(&mut self, pos: u32, what: Detail, p: &PropMap) {
        let Some(index) = self.held_index(pos) else {
            return;
        };
        let path = |k: &str| {
            p.get(k)
                .and_then(|v| v.0.as_str())
                .filter(|s| *s != "/" && s.starts_with(NM_PATH))
                .map(str::to_string)
        };
        match what {
            Detail::Device => {
                let d = self.nm_details.entry(index).or_default();
                *d = NmDetails::default();
                for (k, iface, next) in [
                    (
                        "ActiveConnection",
                        "org.freedesktop.NetworkManager.Connection.Active",
                        Detail::Active,
                    ),
                    (
                        "Ip4Config",
                        "org.freedesktop.NetworkManager.IP4Config",
                        Detail::Ip4,
                    ),
                    (
                        "Ip6Config",
                        "org.freedesktop.NetworkManager.IP6Config",
                        Detail::Ip6,
                    ),
                ] {
                    if let Some(obj) = path(k) {
                        let msg = Message::new_method_call(
                            NM,
                            obj.as_str(),
                            "org.freedesktop.DBus.Properties",
                            "GetAll",
                        )
                        .map(|x| x.append1(iface));
                        self.wait_on(pos, msg, Call::Detail(pos, next));
                    }
                }
            }
            Detail::Active => {
                let id = p.get("Id").and_then(|v| v.0.as_str()).unwrap_or("");
                let uuid = p.get("Uuid").and_then(|v| v.0.as_str()).unwrap_or("");
                let (id, uuid) = (connection_id(id), uuid_ok(uuid));
                if id.is_none() || uuid.is_none() {
                    self.reject(format!("connection of link {index}: a bad id or uuid"));
                }
                let d = self.nm_details.entry(index).or_default();
                d.id = id.unwrap_or_default().to_string();
                d.uuid = uuid.unwrap_or_default().to_string();
            }
            Detail::Ip4 | Detail::Ip6 => {
                let v6 = what == Detail::Ip6;
                let mut addrs = Vec::new();
                if let Some(list) = p.get("AddressData").and_then(|v| v.0.as_iter()) {
                    for entry in list {
                        // aa{sv}: each entry a dict, iterated as key, value.
                        let mut it = entry.as_iter().into_iter().flatten();
                        let (mut a, mut len) = (None, None);
                        while let (Some(k), Some(v)) = (it.next(), it.next()) {
                            match k.as_str() {
                                Some("address") => {
                                    a = v.as_str().and_then(|s| s.parse::<IpAddr>().ok())
                                }
                                Some("prefix") => len = v.as_u64(),
                                _ => {}
                            }
                        }
                        if let (Some(a), Some(l)) = (a, len) {
                            if a.is_ipv6() == v6
                                && l <= if v6 { 128 } else { 32 }
                                && addrs.len() < ADDRS_MAX
                            {
                                addrs.push(format!("{a}/{l}"));
                            }
                        }
                    }
                }
                let gw = p
                    .get("Gateway")
                    .and_then(|v| v.0.as_str())
                    .and_then(|s| s.parse::<IpAddr>().ok())
                    .filter(|g| g.is_ipv6() == v6)
                    .map(|g| g.to_string())
                    .unwrap_or_default();
                let mut dns = Vec::new();
                if v6 {
                    // ay per server.
                    if let Some(list) = p.get("Nameservers").and_then(|v| v.0.as_iter()) {
                        for s in list {
                            let b: Vec<u8> = s
                                .as_iter()
                                .into_iter()
                                .flatten()
                                .filter_map(|x| x.as_u64().map(|n| n as u8))
                                .collect();
                            if let Ok(o) = <[u8; 16]>::try_from(b.as_slice()) {
                                dns.push(std::net::Ipv6Addr::from(o).to_string());
                            }
                        }
                    }
                } else if let Some(list) = p.get("NameserverData").and_then(|v| v.0.as_iter()) {
                    for entry in list {
                        let mut it = entry.as_iter().into_iter().flatten();
                        while let (Some(k), Some(v)) = (it.next(), it.next()) {
                            if k.as_str() == Some("address") {
                                if let Some(a) = v.as_str().and_then(|s| s.parse::<IpAddr>().ok()) {
                                    dns.push(a.to_string());
                                }
                            }
                        }
                    }
                }
                let d = self.nm_details.entry(index).or_default();
                dns.truncate(32);
                if v6 {
                    d.ip6 = addrs;
                    d.gateway6 = gw;
                    d.dns6 = dns;
                } else {
                    d.ip4 = addrs;
                    d.gateway4 = gw;
                    d.dns4 = dns;
                }
            }
        }
    }

    /// What NetworkManager last said of link `index`'s connection.
    pub fn nm_details(&self, index: u32) -> Option<&NmDetails> {
        self.nm_details.get(&index)
    }
}

/// NetworkManager's connection and IP configuration of a device, checked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NmDetails {
    pub id: String,
    pub uuid: String,
    pub ip4: Vec<String>,
    pub ip6: Vec<String>,
    pub gateway4: String,
    pub gateway6: String,
    pub dns4: Vec<String>,
    pub dns6: Vec<String>,
}

/// Which object of NM's a detail call reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Detail {
    Device,
    Active,
    Ip4,
    Ip6,
}

/// The index of link `name` in this network namespace, if it exists.
fn ifindex(name: &str) -> Option<u32> {
    let c = std::ffi::CString::new(name).ok()?;
    // SAFETY: `c` is a NUL-terminated string that outlives the call.
    let i = unsafe { nix::libc::if_nametoindex(c.as_ptr()) };
    (i > 0).then_some(i)
}

/// A message's whole signature, for the log line that rejects it.
fn signature(msg: &Message) -> String {
    let mut i = msg.iter_init();
    let mut s = String::new();
    loop {
        s.push_str(&i.signature());
        if !i.next() {
            break;
        }
    }
    loggable(&s)
}

/// The largest state file read; networkd's are a few hundred bytes.
const STATE_MAX: u64 = 64 << 10;

/// The bytes of one state file, or why it was refused. The loop reads
/// these while it handles an event, so nothing here may wait: the file is
/// opened non-blocking (a FIFO in its place would hang open(2) until a
/// writer came) and without following a symbolic link (networkd writes
/// plain files; a link could point at /dev/zero or a FIFO elsewhere), its
/// type is checked on the open descriptor, and at most `STATE_MAX + 1`
/// bytes are read, so a file too large is refused whole rather than cut
/// in the middle of a line. None when there is no such file.
fn read_state(path: &std::path::Path) -> Option<Result<Vec<u8>, String>> {
    use std::io::Read;
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_NOCTTY | nix::libc::O_NOFOLLOW)
        .open(path);
    let f = match f {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) if e.raw_os_error() == Some(nix::libc::ELOOP) => {
            return Some(Err("a symbolic link, not networkd's file".into()))
        }
        Err(e) => return Some(Err(format!("cannot open: {e}"))),
    };
    let t = match f.metadata() {
        Ok(m) => m.file_type(),
        Err(e) => return Some(Err(format!("cannot stat: {e}"))),
    };
    if !t.is_file() {
        let what = if t.is_fifo() {
            "a FIFO"
        } else if t.is_dir() {
            "a directory"
        } else if t.is_char_device() || t.is_block_device() {
            "a device"
        } else {
            "not a regular file"
        };
        return Some(Err(format!("{what}, not networkd's file")));
    }
    let mut buf = Vec::new();
    if let Err(e) = f.take(STATE_MAX + 1).read_to_end(&mut buf) {
        return Some(Err(format!("cannot read: {e}")));
    }
    if buf.len() as u64 > STATE_MAX {
        return Some(Err(format!("larger than {STATE_MAX} bytes")));
    }
    Some(Ok(buf))
}

/// What networkd's state files say of link `index` beyond its states:
/// `<dir>/links/<index>` (DNS, DOMAINS) and `<dir>/leases/<index>`
/// (HOSTNAME). The path is made from the number alone. A file missing is
/// nothing to report; a file or value refused is logged and left out.
pub fn read_extras(dir: &std::path::Path, index: u32) -> Extras {
    let mut x = Extras::default();
    for sub in ["links", "leases"] {
        let path = dir.join(sub).join(index.to_string());
        match read_state(&path) {
            None => {}
            Some(Ok(buf)) => parse_state(&buf, &mut x),
            Some(Err(why)) => log::warn!("{}: {why}: ignored", path.display()),
        }
    }
    if !x.refused.is_empty() {
        log::warn!(
            "networkd state of link {index}: ignored {}",
            x.refused.join(", ")
        );
    }
    x
}

#[cfg(test)]
mod tests {
    use super::*;
    use dbus::arg::Variant;

    /// A bus that follows networkd, owned by `:1.5`, as after its first
    /// read; no connection (nothing is sent in these tests).
    fn following() -> Bus {
        let mut b = Bus::new(
            Settings {
                address: "unix:path=/nonexistent".into(),
                want: Want::One(Manager::Networkd),
                emit_json: false,
            },
            Instant::now(),
        );
        b.chosen = Some(Manager::Networkd);
        b.sides[side(Manager::Networkd)].owner = Some(":1.5".into());
        b
    }

    fn changed(path: &str, sender: &str, kv: &[(&str, &str)]) -> Message {
        let props: PropMap = kv
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    Variant(Box::new(v.to_string()) as Box<dyn RefArg>),
                )
            })
            .collect();
        let mut m =
            Message::new_signal(path, "org.freedesktop.DBus.Properties", "PropertiesChanged")
                .unwrap()
                .append3(NETWORKD_LINK, props, Vec::<String>::new());
        m.set_sender(Some(sender.into()));
        m
    }

    fn inputs(b: &mut Bus) -> Vec<Input> {
        let mut out = Vec::new();
        b.release(&mut out);
        out
    }

    #[test]
    fn signals_are_checked_before_they_become_inputs() {
        let mut b = following();
        let now = Instant::now();
        let link = "/org/freedesktop/network1/link/_33";
        b.on_message(
            changed(
                link,
                ":1.5",
                &[("OperationalState", "routable"), ("Bogus", "x")],
            ),
            now,
        );
        assert_eq!(
            inputs(&mut b),
            vec![Input::Networkd {
                index: 3,
                props: vec![(Prop::Oper, "routable")]
            }]
        );
        // Not on the list, not the owner, not a link path, not the
        // signature: nothing, each counted.
        b.on_message(changed(link, ":1.5", &[("OperationalState", "../x")]), now);
        b.on_message(
            changed(link, ":1.9", &[("OperationalState", "degraded")]),
            now,
        );
        b.on_message(
            changed(
                "/org/freedesktop/network1/x",
                ":1.5",
                &[("OperationalState", "degraded")],
            ),
            now,
        );
        let mut wrong =
            Message::new_signal(link, "org.freedesktop.DBus.Properties", "PropertiesChanged")
                .unwrap()
                .append2(NETWORKD_LINK, "degraded");
        wrong.set_sender(Some(":1.5".into()));
        b.on_message(wrong, now);
        assert!(inputs(&mut b).is_empty());
        assert_eq!(b.stats.rejected, 4);
        // The manager object: index 0.
        b.on_message(
            changed(NETWORKD_PATH, ":1.5", &[("OnlineState", "partial")]),
            now,
        );
        // Its properties come with the Manager interface name.
        assert!(inputs(&mut b).is_empty());
    }

    #[test]
    fn owner_changes_bracket_a_resync() {
        let mut b = following();
        let now = Instant::now();
        let mut m = Message::new_signal(
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus",
            "NameOwnerChanged",
        )
        .unwrap()
        .append3(NETWORKD, ":1.5", ":1.8");
        m.set_sender(Some("org.freedesktop.DBus".into()));
        b.on_message(m, now);
        let got = inputs(&mut b);
        assert_eq!(got[0], Input::Gone(Manager::Networkd));
        assert_eq!(got[1], Input::Begin(Manager::Networkd));
        assert_eq!(
            b.sides[side(Manager::Networkd)].owner.as_deref(),
            Some(":1.8")
        );
        // The old owner's signals are not taken any more.
        b.on_message(
            changed(
                "/org/freedesktop/network1/link/_33",
                ":1.5",
                &[("OperationalState", "off")],
            ),
            now,
        );
        assert!(inputs(&mut b).is_empty());
        // A forged owner change from a client is refused.
        let mut f = Message::new_signal(
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus",
            "NameOwnerChanged",
        )
        .unwrap()
        .append3(NETWORKD, ":1.8", ":1.66");
        f.set_sender(Some(":1.66".into()));
        b.on_message(f, now);
        assert_eq!(
            b.sides[side(Manager::Networkd)].owner.as_deref(),
            Some(":1.8")
        );
    }

    /// networkd's state directory as a hostile local user might leave it:
    /// a FIFO (open(2) used to block the loop until a writer came), a
    /// link to /dev/zero, a 100 MB file, bytes that are not UTF-8, values
    /// with shell metacharacters and an injected line. Each read returns
    /// at once, and only checked values come out.
    #[test]
    fn state_files_that_are_not_networkds_are_refused_without_waiting() {
        use std::os::unix::fs::symlink;
        let dir = std::env::temp_dir().join(format!("netevd-netif-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for sub in ["links", "leases"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        nix::unistd::mkfifo(&dir.join("links/1"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        symlink("/dev/zero", dir.join("leases/1")).unwrap();
        let big = std::fs::File::create(dir.join("links/2")).unwrap();
        big.set_len(100 << 20).unwrap();
        std::fs::write(
            dir.join("links/3"),
            b"DNS=192.0.2.53 1.1.1.1;reboot $(id) `id`\nDNS=\xff\xfe 192.0.2.9\nDOMAINS=ok.example\n\
              DNS=\n;rm -rf /\nDOMAINS=a|b\n\xc3\x28=x\n",
        )
        .unwrap();
        let words: String = (0..5000).map(|i| format!("bad;{i} ")).collect();
        std::fs::write(dir.join("links/4"), format!("DNS={words}\n")).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let d = dir.clone();
        std::thread::spawn(move || {
            let r: Vec<Extras> = (1..=4).map(|i| read_extras(&d, i)).collect();
            let _ = tx.send(r);
        });
        let r = rx
            .recv_timeout(Duration::from_secs(5))
            .expect("read_extras waited on a state file");
        assert_eq!(r[0], Extras::default());
        assert_eq!(r[1], Extras::default());
        assert_eq!(r[2].dns, vec!["192.0.2.53".to_string()]);
        assert_eq!(r[2].domains, vec!["ok.example".to_string()]);
        assert!(
            r[2].refused.iter().any(|w| w.contains("reboot")),
            "{:?}",
            r[2]
        );
        assert!(r[3].dns.is_empty());
        assert_eq!(r[3].refused.len(), 9, "{:?}", r[3].refused);
        assert_eq!(r[3].refused[8], "4992 more");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// 100,000 signals from a client that does not own networkd's name
    /// (a unicast signal passes no match rule): all counted, none an
    /// input, and at most `REJECT_LINES` warnings a second, the rest
    /// counted for the next line.
    #[test]
    fn a_flood_of_rejected_signals_is_counted_not_logged_line_by_line() {
        let mut b = following();
        let now = Instant::now();
        let link = "/org/freedesktop/network1/link/_33";
        let t = Instant::now();
        for _ in 0..100_000 {
            b.on_message(
                changed(link, ":1.9", &[("OperationalState", "routable")]),
                now,
            );
        }
        let took = t.elapsed();
        assert!(inputs(&mut b).is_empty());
        assert_eq!(b.stats.rejected, 100_000);
        if took < Duration::from_secs(1) {
            assert_eq!(b.quiet.lines, REJECT_LINES);
            assert_eq!(b.quiet.held, 100_000 - u64::from(REJECT_LINES));
        } else {
            assert!(b.quiet.held > 0);
        }
        // A later second writes again, and says how many were held back.
        b.quiet.window -= Duration::from_secs(2);
        let held = b.quiet.held;
        assert_eq!(b.quiet.allow(Instant::now()), (true, held));
        assert_eq!(b.quiet.held, 0);
    }

    /// networkd's name taken and dropped 1,000 times in a burst: one read
    /// at the first return, one more when the gap is over, not 1,000.
    #[test]
    fn a_name_owner_storm_is_read_twice_not_a_thousand_times() {
        let mut b = following();
        // No reconnect pending: the only deadline is the put-off read.
        b.retry_at = None;
        let now = Instant::now();
        let flap = |b: &mut Bus, old: &str, new: &str| {
            let mut m = Message::new_signal(
                "/org/freedesktop/DBus",
                "org.freedesktop.DBus",
                "NameOwnerChanged",
            )
            .unwrap()
            .append3(NETWORKD, old, new);
            m.set_sender(Some("org.freedesktop.DBus".into()));
            b.on_message(m, now);
        };
        let mut got = Vec::new();
        let mut owner = ":1.5".to_string();
        for i in 0..1000 {
            let next = format!(":1.{}", 100 + i);
            flap(&mut b, &owner, "");
            flap(&mut b, "", &next);
            owner = next;
            got.extend(inputs(&mut b));
        }
        let begins = |v: &[Input]| {
            v.iter()
                .filter(|i| **i == Input::Begin(Manager::Networkd))
                .count()
        };
        assert_eq!(begins(&got), 1, "one read at the first return");
        let due = b.next_deadline().expect("a read put off");
        assert!(due <= Instant::now() + RESYNC_GAP);
        let poll = mio::Poll::new().unwrap();
        let mut out = Vec::new();
        b.on_timer(poll.registry(), Token(7), due, &mut out);
        assert_eq!(begins(&out), 1, "one read once it settled: {out:?}");
        assert_eq!(out.last(), Some(&Input::End(Manager::Networkd)));
        assert_eq!(
            b.sides[side(Manager::Networkd)].owner.as_deref(),
            Some(owner.as_str())
        );
        assert_eq!(b.next_deadline(), None);
    }
}
