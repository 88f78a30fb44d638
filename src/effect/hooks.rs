//! Runs the hooks of one event at a time per link: lists
//! `<script_dir>/<dir>.d`, starts each executable in lexical order in its
//! own process group with a clean environment, captures its output line by
//! line into the log, kills the whole group at the timeout, and moves on
//! when the hook is reaped. Never waits for a child: exits are learnt from
//! SIGCHLD, output from the pipe's readiness.
//!
//! Nothing a hook or the system does may lose an event or hold the loop:
//! - A hook that cannot start for want of resources (EAGAIN, EMFILE,
//!   ENFILE, ENOMEM: a pids cgroup, an fd limit) keeps its run in its slot
//!   with a retry deadline (50 ms doubling to 5 s); the link stays busy, so
//!   newer events coalesce behind it in the scheduler. Only a permanent
//!   error (ENOENT, EACCES, ENOEXEC, ...) skips that one hook.
//! - A JSON too large for the environment goes in a sealed memfd on
//!   descriptor 3 (see `core::event::JSON_FD`).
//! - Output is read at most `READ_BUDGET` bytes per pipe per turn; a pipe
//!   left readable is marked, and `pending_output` makes the reactor come
//!   back at once. Lines reach the log through a per-hook token bucket;
//!   the ones over it are dropped and counted.
//! - Names and output are escaped (`logger::Esc`) in every line.
//! - At shutdown every running hook's group gets SIGTERM, then SIGKILL
//!   after `GRACE`.
//!
//! What to run and when is decided by the core's scheduler; this module
//! only executes.

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};
use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag, SealFlag};
use nix::libc;
use nix::sys::memfd::{memfd_create, MFdFlags};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use std::collections::VecDeque;
use std::rc::Rc;

use crate::core::event::{environment, json_in_file, Event, JSON_FD};
use crate::core::sched::Job;
use crate::logger::Esc;

/// Longest line kept whole in the log; longer output is split.
const MAX_LINE: usize = 4096;
/// Bytes read from one hook's output in one go. A hook that writes without
/// pause (`exec yes`) would otherwise hold the loop for ever: no timer, no
/// signal, no other hook.
const READ_BUDGET: usize = 64 * 1024;
/// Output lines of one hook that reach the log at once, and per second
/// after that; the others are dropped and counted, so a chatty hook cannot
/// fill the disk through syslog.
pub const LOG_BURST: u64 = 100;
pub const LOG_PER_SEC: u64 = 10;
/// Waits before a hook that could not start for want of resources is tried
/// again: the first, doubled each time up to the longest.
const RETRY_FIRST: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_secs(5);
/// At shutdown, how long hooks have between SIGTERM and SIGKILL.
pub const GRACE: Duration = Duration::from_secs(2);
/// After SIGKILL, how long shutdown waits to reap them (a process stuck in
/// the kernel may never die).
const KILL_WAIT: Duration = Duration::from_secs(1);

/// Whether a directory entry is a hook: not hidden, not a package
/// manager's or an editor's leftover.
pub fn is_hook_name(name: &[u8]) -> bool {
    !(name.is_empty()
        || name[0] == b'.'
        || name.ends_with(b"~")
        || contains(name, b".dpkg-")
        || contains(name, b".rpmnew")
        || contains(name, b".rpmsave")
        || contains(name, b".rpmorig")
        || name.ends_with(b".swp"))
}

fn contains(h: &[u8], n: &[u8]) -> bool {
    h.windows(n.len()).any(|w| w == n)
}

/// Errors that say "not now" rather than "never": the system is short of
/// processes, descriptors or memory, and the same call may work later.
fn transient(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(
            libc::EAGAIN
                | libc::EMFILE
                | libc::ENFILE
                | libc::ENOMEM
                | libc::ENOBUFS
                | libc::ENOSPC
                | libc::EINTR
        )
    )
}

fn is_executable_file(p: &Path) -> bool {
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// The hooks in `dir`: executable regular files (symlinks followed), in
/// byte order of their names. A directory that is missing or unusable has
/// none (`check_script_dir` says why, once); the error is returned only
/// when it is transient, so that the caller tries again.
pub fn list(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if transient(&e) => return Err(e),
        Err(_) => return Ok(Vec::new()),
    };
    let mut v = Vec::new();
    for e in rd {
        let e = match e {
            Ok(e) => e,
            Err(e) if transient(&e) => return Err(e),
            Err(_) => continue,
        };
        if is_hook_name(e.file_name().as_bytes()) && is_executable_file(&e.path()) {
            v.push(e.path());
        }
    }
    v.sort_by(|a, b| a.as_os_str().as_bytes().cmp(b.as_os_str().as_bytes()));
    Ok(v)
}

/// Warns about everything in the hook tree that makes hooks silently not
/// run: `script_dir` missing, not a directory, unreadable (a symbolic link
/// loop, say); a `*.d` entry that is not a directory; a hook that is not
/// executable or cannot be read. One line per problem; the reactor calls
/// this at start and at every reload, never per event. Returns how many
/// problems it reported.
pub fn check_script_dir(script_dir: &Path) -> usize {
    let shown = script_dir.display();
    let rd = match std::fs::metadata(script_dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            log::warn!("hooks: script_dir {shown} does not exist: no hooks will run");
            return 1;
        }
        Err(e) => {
            log::warn!("hooks: script_dir {shown}: {e}: no hooks will run");
            return 1;
        }
        Ok(m) if !m.is_dir() => {
            log::warn!("hooks: script_dir {shown} is not a directory: no hooks will run");
            return 1;
        }
        Ok(_) => match std::fs::read_dir(script_dir) {
            Ok(rd) => rd,
            Err(e) => {
                log::warn!("hooks: script_dir {shown}: {e}: no hooks will run");
                return 1;
            }
        },
    };
    let mut dirs: Vec<PathBuf> = rd
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().as_bytes().ends_with(b".d"))
        .map(|e| e.path())
        .collect();
    dirs.sort();
    let mut problems = 0;
    for d in dirs {
        let name = Esc(d.as_os_str().as_bytes());
        let rd = match std::fs::metadata(&d) {
            Ok(m) if m.is_dir() => std::fs::read_dir(&d),
            Ok(_) => {
                log::warn!("hooks: {name} is not a directory: its hooks will not run");
                problems += 1;
                continue;
            }
            Err(e) => Err(e),
        };
        let rd = match rd {
            Ok(rd) => rd,
            Err(e) => {
                log::warn!("hooks: {name}: {e}: its hooks will not run");
                problems += 1;
                continue;
            }
        };
        let mut entries: Vec<PathBuf> = rd
            .filter_map(|e| e.ok())
            .filter(|e| is_hook_name(e.file_name().as_bytes()))
            .map(|e| e.path())
            .collect();
        entries.sort();
        for p in entries {
            let name = Esc(p.as_os_str().as_bytes());
            match std::fs::metadata(&p) {
                Err(e) => log::warn!("hooks: {name}: {e}: skipped"),
                Ok(m) if !m.is_file() => log::warn!("hooks: {name} is not a regular file: skipped"),
                Ok(m) if m.permissions().mode() & 0o111 == 0 => {
                    log::warn!("hooks: {name} is not executable: skipped (chmod +x to run it)")
                }
                Ok(_) => continue,
            }
            problems += 1;
        }
    }
    problems
}

/// A token bucket in thousandths of a line.
struct Bucket {
    credit: u64,
    at: Instant,
}

impl Bucket {
    fn new(now: Instant) -> Self {
        Bucket {
            credit: LOG_BURST * 1000,
            at: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let ms = now.saturating_duration_since(self.at).as_millis() as u64;
        if ms > 0 {
            self.credit = (self.credit + ms * LOG_PER_SEC).min(LOG_BURST * 1000);
            self.at = now;
        }
    }

    fn take(&mut self) -> bool {
        if self.credit >= 1000 {
            self.credit -= 1000;
            true
        } else {
            false
        }
    }
}

struct Proc {
    child: Child,
    pipe: Option<File>,
    /// The pipe was left with data in it: read again without waiting for
    /// readiness (edge-triggered, there will be none).
    readable: bool,
    /// The hook's file name, escaped for the log.
    hook: String,
    started: Instant,
    deadline: Instant,
    killed: bool,
    line: Vec<u8>,
    record: HookRun,
    bucket: Bucket,
    /// Lines dropped since the last one logged.
    dropped: u64,
}

struct Retry {
    at: Instant,
    wait: Duration,
    /// The first failure.
    since: Instant,
}

struct Run {
    event: Rc<Event>,
    /// The link's name, escaped for the log.
    link: String,
    env: Vec<(&'static str, OsString)>,
    /// A JSON too large for the environment, until it is in `json_fd`.
    json: Option<String>,
    json_fd: Option<OwnedFd>,
    /// None until the directory could be listed.
    hooks: Option<Vec<PathBuf>>,
    next: usize,
    proc: Option<Proc>,
    /// Set while the next hook waits to be tried again.
    retry: Option<Retry>,
}

struct Stopping {
    kill_at: Instant,
    /// When SIGKILL went out, and shutdown stops waiting.
    give_up: Option<Instant>,
}

#[derive(Clone, Debug)]
pub struct Settings {
    pub script_dir: PathBuf,
    pub timeout: Duration,
    pub dry_run: bool,
    /// Hook runs kept for `history` queries.
    pub history: usize,
}

/// Output lines kept per hook run for `history`.
const TAIL_LINES: usize = 10;

/// One hook's run, as `history` reports it.
#[derive(Clone, Debug)]
pub struct HookRun {
    pub hook: String,
    pub link: String,
    pub index: u32,
    pub event_id: u64,
    pub state: &'static str,
    /// Milliseconds since the epoch.
    pub started_ms: u64,
    pub duration_ms: Option<u64>,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub timed_out: bool,
    pub output: VecDeque<String>,
}

/// Counters for status and metrics.
#[derive(Default, Debug, Clone, Copy)]
pub struct Stats {
    pub started: u64,
    pub failed: u64,
    pub timed_out: u64,
    /// Hooks skipped for a permanent error (not found, not executable).
    pub spawn_errors: u64,
    /// Starts that failed for want of resources and were tried again.
    pub retries: u64,
    /// Output lines not logged (rate limit, or left in the pipe).
    pub lines_dropped: u64,
}

/// The two arguments a flat tree's hooks get for an event, or None when
/// the event runs none of them.
pub type FlatArgs = fn(&Event) -> Option<[OsString; 2]>;

pub struct Runner {
    settings: Settings,
    /// Run slots; slot `i` reads its hook's output on token `base + i`.
    runs: Vec<Option<Run>>,
    base: usize,
    stopping: Option<Stopping>,
    pub stats: Stats,
    /// Finished runs, oldest first, at most `settings.history`.
    history: VecDeque<HookRun>,
    /// NetworkManager-dispatcher's layout (reactor/bus.rs): every hook of
    /// `script_dir` itself, given the interface and the action as
    /// arguments.
    flat_args: Option<FlatArgs>,
}

impl Runner {
    pub fn new(settings: Settings, token_base: usize) -> Self {
        Runner {
            settings,
            runs: Vec::new(),
            base: token_base,
            stopping: None,
            stats: Stats::default(),
            history: VecDeque::new(),
            flat_args: None,
        }
    }

    /// Runs the hooks of `script_dir` itself for every event, with the two
    /// arguments `args` gives (an event it gives none for runs nothing).
    #[cfg_attr(not(feature = "dbus"), allow(dead_code))]
    pub fn flat(mut self, args: FlatArgs) -> Self {
        self.flat_args = Some(args);
        self
    }

    fn dir_of(&self, ev: &Event) -> PathBuf {
        match self.flat_args {
            Some(_) => self.settings.script_dir.clone(),
            None => hook_dir(&self.settings.script_dir, ev),
        }
    }

    pub fn set_settings(&mut self, s: Settings) {
        self.settings = s;
        self.trim_history();
    }

    fn trim_history(&mut self) {
        while self.history.len() > self.settings.history {
            self.history.pop_front();
        }
    }

    /// Finished runs (oldest first), then those still running.
    pub fn history(&self) -> impl Iterator<Item = &HookRun> {
        self.history.iter().chain(
            self.runs
                .iter()
                .flatten()
                .filter_map(|r| r.proc.as_ref().map(|p| &p.record)),
        )
    }

    /// Warns once about the hook tree (see [`check_script_dir`]).
    pub fn check_script_dir(&self) -> usize {
        check_script_dir(&self.settings.script_dir)
    }

    pub fn owns(&self, token: Token) -> bool {
        token.0 >= self.base && token.0 < self.base + self.runs.len()
    }

    /// Starts the hooks for `ev`. Returns false when there is nothing to
    /// run (no hooks, dry run, shutting down): the link is free again at
    /// once. True means the link stays busy until `reap` or `on_timer`
    /// report it done, even when its first hook could not start yet.
    pub fn start(&mut self, job: Job, reg: &Registry, now: Instant) -> bool {
        let ev = job.event;
        if self.stopping.is_some() {
            return false;
        }
        if self.flat_args.is_some_and(|f| f(&ev).is_none()) {
            return false;
        }
        let dir = self.dir_of(&ev);
        let link = Esc(&ev.name).to_string();
        let listed = list(&dir);
        match &listed {
            Ok(hooks) if hooks.is_empty() => {
                log::debug!(
                    "event {} {} on {link}: no hooks in {}",
                    ev.id,
                    ev.dir(),
                    dir.display()
                );
                return false;
            }
            Ok(hooks) if self.settings.dry_run => {
                for h in hooks {
                    log::info!(
                        "dry run: would run {} for {link} (event {}, {})",
                        Esc(h.as_os_str().as_bytes()),
                        ev.id,
                        ev.dir()
                    );
                }
                return false;
            }
            Err(e) if self.settings.dry_run => {
                log::info!("dry run: cannot list {}: {e}", dir.display());
                return false;
            }
            _ => {}
        }
        let env = environment(&ev, &job.run);
        let slot = match self.runs.iter().position(|r| r.is_none()) {
            Some(i) => i,
            None => {
                self.runs.push(None);
                self.runs.len() - 1
            }
        };
        let (hooks, error) = match listed {
            Ok(h) => (Some(h), None),
            Err(e) => (None, Some(e)),
        };
        let json = json_in_file(ev.json()).then(|| ev.json().to_string());
        self.runs[slot] = Some(Run {
            event: ev,
            link,
            env,
            json,
            json_fd: None,
            hooks,
            next: 0,
            proc: None,
            retry: None,
        });
        match error {
            None => self.advance(slot, reg, now),
            Some(e) => {
                self.defer(slot, now, &format!("cannot list {}", dir.display()), &e);
                true
            }
        }
    }

    /// Puts the run in `slot` on hold after a transient failure: it keeps
    /// its slot and its link, and is tried again at its deadline.
    fn defer(&mut self, slot: usize, now: Instant, what: &str, e: &io::Error) {
        let Some(run) = self.runs[slot].as_mut() else {
            return;
        };
        self.stats.retries += 1;
        let wait = run
            .retry
            .as_ref()
            .map_or(RETRY_FIRST, |r| (r.wait * 2).min(RETRY_MAX));
        if run.retry.is_none() {
            log::warn!(
                "hooks for {} (event {} {}): {what}: {e}; trying again in {} ms, newer events wait",
                run.link,
                run.event.id,
                run.event.dir(),
                wait.as_millis()
            );
        } else {
            log::debug!(
                "hooks for {} (event {}): {what}: {e}; trying again in {} ms",
                run.link,
                run.event.id,
                wait.as_millis()
            );
        }
        let since = run.retry.as_ref().map_or(now, |r| r.since);
        run.retry = Some(Retry {
            at: now + wait,
            wait,
            since,
        });
    }

    /// Starts the next hook of the run in `slot`; false when the run is
    /// over (and the slot freed). A hook that cannot start now leaves the
    /// run waiting for its retry (true).
    fn advance(&mut self, slot: usize, reg: &Registry, now: Instant) -> bool {
        let token = Token(self.base + slot);
        let timeout = self.settings.timeout;
        loop {
            if self.stopping.is_some() {
                self.runs[slot] = None;
                return false;
            }
            let Some(run) = self.runs[slot].as_mut() else {
                return false;
            };
            if run.hooks.is_none() {
                let dir = match self.flat_args {
                    Some(_) => self.settings.script_dir.clone(),
                    None => hook_dir(&self.settings.script_dir, &run.event),
                };
                match list(&dir) {
                    Ok(h) => run.hooks = Some(h),
                    Err(e) => {
                        self.defer(slot, now, &format!("cannot list {}", dir.display()), &e);
                        return true;
                    }
                }
            }
            let Some(path) = run.hooks.as_ref().and_then(|h| h.get(run.next)).cloned() else {
                self.runs[slot] = None;
                return false;
            };
            let hook = Esc(path.file_name().map(|n| n.as_bytes()).unwrap_or_default()).to_string();
            if run.json_fd.is_none() {
                if let Some(json) = &run.json {
                    match json_file(json) {
                        Ok(fd) => {
                            run.json_fd = Some(fd);
                            run.json = None;
                        }
                        Err(e) if transient(&e) => {
                            self.defer(slot, now, "cannot make the JSON file", &e);
                            return true;
                        }
                        Err(e) => {
                            log::error!(
                                "hooks for {} (event {}): cannot make the JSON file: {e}; its hooks do not run",
                                run.link,
                                run.event.id
                            );
                            self.stats.spawn_errors += 1;
                            self.runs[slot] = None;
                            return false;
                        }
                    }
                }
            }
            let json_fd = run.json_fd.as_ref().map(|f| f.as_raw_fd());
            let args = self.flat_args.and_then(|f| f(&run.event));
            match spawn(&path, &run.env, json_fd, args.as_ref()) {
                Ok((child, pipe)) => {
                    self.stats.started += 1;
                    run.next += 1;
                    if let Some(r) = run.retry.take() {
                        log::info!(
                            "hook {hook} for {} started after waiting {} ms for resources",
                            run.link,
                            now.saturating_duration_since(r.since).as_millis()
                        );
                    }
                    let fd = pipe.as_raw_fd();
                    let pipe = match reg.register(&mut SourceFd(&fd), token, Interest::READABLE) {
                        Ok(()) => Some(pipe),
                        Err(e) => {
                            // Unread, the pipe would fill and stall the hook
                            // until its timeout; closed, its writes fail.
                            log::warn!(
                                "hook {hook} for {}: cannot watch its output ({e}): discarded",
                                run.link
                            );
                            None
                        }
                    };
                    log::debug!(
                        "hook {hook} for {} started, pid {} (event {} {})",
                        run.link,
                        child.id(),
                        run.event.id,
                        run.event.dir()
                    );
                    let record = HookRun {
                        hook: hook.clone(),
                        link: run.link.clone(),
                        index: run.event.index,
                        event_id: run.event.id,
                        state: run.event.dir(),
                        started_ms: wall_ms(),
                        duration_ms: None,
                        exit_code: None,
                        signal: None,
                        timed_out: false,
                        output: VecDeque::new(),
                    };
                    run.proc = Some(Proc {
                        child,
                        pipe,
                        readable: false,
                        hook,
                        started: now,
                        deadline: now + timeout,
                        killed: false,
                        line: Vec::new(),
                        record,
                        bucket: Bucket::new(now),
                        dropped: 0,
                    });
                    return true;
                }
                Err(e) if transient(&e) => {
                    self.defer(slot, now, &format!("cannot start {hook}"), &e);
                    return true;
                }
                Err(e) => {
                    run.next += 1;
                    self.stats.spawn_errors += 1;
                    log::error!(
                        "hook {} for {}: cannot run: {e}; skipped",
                        Esc(path.as_os_str().as_bytes()),
                        run.link
                    );
                }
            }
        }
    }

    /// The hook's output pipe in `token`'s slot is readable.
    pub fn output(&mut self, token: Token, reg: &Registry) {
        let now = Instant::now();
        let slot = token.0 - self.base;
        if let Some(Some(run)) = self.runs.get_mut(slot) {
            if let Some(p) = run.proc.as_mut() {
                drain(p, &run.link, reg, now, READ_BUDGET, &mut self.stats);
            }
        }
    }

    /// Whether a pipe was left with output to read: the reactor must not
    /// sleep, and calls [`Runner::read_pending`] on its next turn.
    pub fn pending_output(&self) -> bool {
        self.runs
            .iter()
            .flatten()
            .filter_map(|r| r.proc.as_ref())
            .any(|p| p.readable && p.pipe.is_some())
    }

    /// Reads on from every pipe left readable, each within its budget.
    pub fn read_pending(&mut self, reg: &Registry) {
        let now = Instant::now();
        for run in self.runs.iter_mut().flatten() {
            if let Some(p) = run.proc.as_mut().filter(|p| p.readable) {
                drain(p, &run.link, reg, now, READ_BUDGET, &mut self.stats);
            }
        }
    }

    /// After SIGCHLD: reaps the hooks that exited, starts the next ones,
    /// and returns the links whose runs are over.
    pub fn reap(&mut self, reg: &Registry, now: Instant, done: &mut Vec<u32>) {
        let mut reaped = false;
        for slot in 0..self.runs.len() {
            let Some(run) = self.runs[slot].as_mut() else {
                continue;
            };
            let Some(p) = run.proc.as_mut() else {
                continue;
            };
            let status = match p.child.try_wait() {
                Ok(Some(s)) => s,
                Ok(None) => continue,
                Err(e) => {
                    log::error!("hooks: waiting for {}: {e}", p.hook);
                    continue;
                }
            };
            // What the hook left in the pipe (at most the pipe's size,
            // unless something it started keeps writing).
            drain(p, &run.link, reg, now, 2 * READ_BUDGET, &mut self.stats);
            if p.pipe.is_some() && p.readable {
                log::warn!(
                    "{}[{}]: more output after the hook exited, not read",
                    p.hook,
                    run.link
                );
            }
            flush(p, &run.link, &mut self.stats);
            report_dropped(p, &run.link);
            if let Some(pipe) = p.pipe.take() {
                let _ = reg.deregister(&mut SourceFd(&pipe.as_raw_fd()));
            }
            let ms = now.saturating_duration_since(p.started).as_millis();
            if p.killed {
                self.stats.timed_out += 1;
            } else if status.success() {
                log::debug!("hook {} for {} exited 0 after {ms} ms", p.hook, run.link);
            } else {
                self.stats.failed += 1;
                match (status.code(), status.signal()) {
                    (Some(c), _) => {
                        log::warn!("hook {} for {} exited {c} after {ms} ms", p.hook, run.link)
                    }
                    (_, Some(s)) => log::warn!(
                        "hook {} for {} killed by signal {s} after {ms} ms",
                        p.hook,
                        run.link
                    ),
                    _ => {}
                }
            }
            reaped = true;
            let index = run.event.index;
            if let Some(mut p) = run.proc.take() {
                p.record.duration_ms = Some(ms as u64);
                p.record.exit_code = status.code();
                p.record.signal = status.signal();
                p.record.timed_out = p.killed;
                if self.settings.history > 0 {
                    self.history.push_back(p.record);
                    self.trim_history();
                }
            }
            if !self.advance(slot, reg, now) {
                done.push(index);
            }
        }
        if reaped {
            // What that hook held (a process, descriptors) is free now:
            // waiting runs try again at the next `on_timer`, not at the end
            // of their backoff, which keeps growing if they fail again.
            for r in self.runs.iter_mut().flatten() {
                if let Some(t) = r.retry.as_mut() {
                    t.at = t.at.min(now);
                }
            }
        }
    }

    /// The earliest time `on_timer` has something to do: a hook's
    /// timeout, a retry, or the next step of a shutdown.
    pub fn next_deadline(&self) -> Option<Instant> {
        let runs = self
            .runs
            .iter()
            .flatten()
            .filter_map(|r| match (&r.proc, &r.retry) {
                (Some(p), _) if !p.killed => Some(p.deadline),
                (None, Some(t)) => Some(t.at),
                _ => None,
            });
        let stop = self
            .stopping
            .as_ref()
            .map(|s| s.give_up.unwrap_or(s.kill_at));
        runs.chain(stop).min()
    }

    /// Kills the process group of every hook past its deadline (they are
    /// reaped like any other exit), starts the hooks whose retry is due,
    /// and moves a shutdown on. Pushes the links whose runs are over.
    pub fn on_timer(&mut self, reg: &Registry, now: Instant, done: &mut Vec<u32>) {
        for run in self.runs.iter_mut().flatten() {
            let Some(p) = run.proc.as_mut() else {
                continue;
            };
            if p.killed || p.deadline > now {
                continue;
            }
            p.killed = true;
            log::warn!(
                "hook {} for {} timed out after {} s: killing its process group",
                p.hook,
                run.link,
                self.settings.timeout.as_secs_f32()
            );
            kill_group(p.child.id(), Signal::SIGKILL);
        }
        for slot in 0..self.runs.len() {
            let due = self.runs[slot]
                .as_ref()
                .filter(|r| r.proc.is_none())
                .and_then(|r| r.retry.as_ref().map(|t| (t.at <= now, r.event.index)));
            if let Some((true, index)) = due {
                if !self.advance(slot, reg, now) {
                    done.push(index);
                }
            }
        }
        if let Some(s) = self.stopping.as_mut() {
            if s.give_up.is_none() && now >= s.kill_at {
                s.give_up = Some(now + KILL_WAIT);
                self.kill_all();
            }
        }
    }

    fn kill_all(&mut self) {
        for run in self.runs.iter_mut().flatten() {
            if let Some(p) = run.proc.as_mut() {
                log::warn!(
                    "hook {} for {} still running at shutdown: killing its process group",
                    p.hook,
                    run.link
                );
                p.killed = true;
                kill_group(p.child.id(), Signal::SIGKILL);
            }
        }
    }

    /// Begins the shutdown: runs waiting to start are dropped, every
    /// running hook's group gets SIGTERM, and SIGKILL follows after
    /// [`GRACE`] (at once if asked a second time). Nothing starts any more.
    pub fn shutdown(&mut self, now: Instant) {
        if let Some(s) = self.stopping.as_mut() {
            if s.give_up.is_none() {
                s.give_up = Some(now + KILL_WAIT);
                self.kill_all();
            }
            return;
        }
        self.stopping = Some(Stopping {
            kill_at: now + GRACE,
            give_up: None,
        });
        let mut n = 0;
        for r in self.runs.iter_mut() {
            match r.as_ref().and_then(|r| r.proc.as_ref()) {
                Some(p) => {
                    n += 1;
                    kill_group(p.child.id(), Signal::SIGTERM);
                }
                None => *r = None,
            }
        }
        if n > 0 {
            log::info!(
                "stopping: SIGTERM sent to {n} running hooks, SIGKILL in {} s",
                GRACE.as_secs()
            );
        }
    }

    /// After [`Runner::shutdown`]: true once every hook was reaped, or
    /// SIGKILL went out and they had their time to die.
    pub fn stopped(&self, now: Instant) -> bool {
        let Some(s) = &self.stopping else {
            return false;
        };
        let running = self.runs.iter().flatten().any(|r| r.proc.is_some());
        !running || s.give_up.is_some_and(|t| now >= t)
    }
}

fn hook_dir(script_dir: &Path, ev: &Event) -> PathBuf {
    script_dir.join(format!("{}.d", ev.dir()))
}

fn kill_group(pid: u32, sig: Signal) {
    if let Err(e) = killpg(Pid::from_raw(pid as i32), sig) {
        if e != Errno::ESRCH {
            log::warn!("hooks: kill process group {pid}: {e}");
        }
    }
}

/// A sealed, unlinked file holding `json`, for a JSON too large for the
/// environment. A memfd where the kernel has them, else an `O_TMPFILE` in
/// the temporary directory. Sealed so that no hook can change what the
/// hooks after it read.
fn json_file(json: &str) -> io::Result<OwnedFd> {
    let fd = match memfd_create(
        c"netevd-json",
        MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING,
    ) {
        Ok(fd) => fd,
        Err(Errno::ENOSYS | Errno::EINVAL | Errno::EPERM) => std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_TMPFILE | libc::O_CLOEXEC)
            .mode(0o400)
            .open(std::env::temp_dir())?
            .into(),
        Err(e) => return Err(e.into()),
    };
    let mut f = File::from(fd);
    f.write_all(json.as_bytes())?;
    let seals = SealFlag::F_SEAL_SEAL
        | SealFlag::F_SEAL_SHRINK
        | SealFlag::F_SEAL_GROW
        | SealFlag::F_SEAL_WRITE;
    // A temporary file takes no seals (EINVAL): it does without.
    let _ = fcntl(&f, FcntlArg::F_ADD_SEALS(seals));
    Ok(f.into())
}

fn spawn(
    path: &Path,
    env: &[(&'static str, OsString)],
    json_fd: Option<RawFd>,
    args: Option<&[OsString; 2]>,
) -> io::Result<(Child, File)> {
    let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(io::Error::from)?;
    fcntl(&r, FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).map_err(io::Error::from)?;
    let w2: OwnedFd = w.try_clone()?;
    let mut cmd = Command::new(path);
    if let Some(a) = args {
        cmd.args(a);
    }
    cmd.env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::from(w))
        .stderr(Stdio::from(w2))
        // Its own group, so a timeout kills what it forked too.
        .process_group(0);
    if let Some(fd) = json_fd {
        // Only when there is a JSON file: a pre_exec closure turns off
        // std's faster posix_spawn. Descriptor 3 is always one of the
        // daemon's own (its first file, open for its whole life), so std's
        // error-report pipe, made at the lowest free numbers, is never
        // there to be overwritten.
        // SAFETY: between fork and exec only async-signal-safe calls.
        unsafe {
            cmd.pre_exec(move || {
                let r = if fd == JSON_FD {
                    libc::fcntl(fd, libc::F_SETFD, 0)
                } else {
                    libc::dup2(fd, JSON_FD)
                };
                if r < 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let child = cmd.spawn()?;
    Ok((child, File::from(r)))
}

/// Reads what the hook wrote, at most `budget` bytes, logging each
/// complete line. Leaves `readable` set when it stopped before the pipe
/// was empty.
fn drain(p: &mut Proc, link: &str, reg: &Registry, now: Instant, budget: usize, stats: &mut Stats) {
    let mut buf = [0u8; 4096];
    let mut read = 0;
    p.bucket.refill(now);
    loop {
        let Some(pipe) = p.pipe.as_mut() else {
            p.readable = false;
            return;
        };
        if read >= budget {
            p.readable = true;
            return;
        }
        match pipe.read(&mut buf) {
            Ok(0) => {
                // Closed by the hook and all it forked.
                let _ = reg.deregister(&mut SourceFd(&pipe.as_raw_fd()));
                p.pipe = None;
                p.readable = false;
                flush(p, link, stats);
                return;
            }
            Ok(n) => {
                read += n;
                for &b in &buf[..n] {
                    if b == b'\n' {
                        flush(p, link, stats);
                    } else {
                        p.line.push(b);
                        if p.line.len() >= MAX_LINE {
                            flush(p, link, stats);
                        }
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                p.readable = false;
                return;
            }
            Err(e) => {
                log::warn!("hook {} for {link}: reading output: {e}", p.hook);
                p.readable = false;
                return;
            }
        }
    }
}

/// Logs the line collected so far, if the hook's bucket allows.
fn flush(p: &mut Proc, link: &str, stats: &mut Stats) {
    if p.line.is_empty() {
        return;
    }
    if p.bucket.take() {
        report_dropped(p, link);
        let text = Esc(&p.line).to_string();
        log::info!("{}[{link}]: {text}", p.hook);
        if p.record.output.len() == TAIL_LINES {
            p.record.output.pop_front();
        }
        p.record.output.push_back(text);
    } else {
        p.dropped += 1;
        stats.lines_dropped += 1;
    }
    p.line.clear();
}

fn report_dropped(p: &mut Proc, link: &str) {
    if p.dropped > 0 {
        log::warn!(
            "{}[{link}]: {} lines of output dropped (more than {LOG_BURST} at once or {LOG_PER_SEC} a second)",
            p.hook,
            p.dropped
        );
        p.dropped = 0;
    }
}

fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// What a hook directory holds, for the `hooks` query: the hooks that
/// would run, in order, and every other entry with the reason it is
/// skipped.
pub struct Inspection {
    pub exists: bool,
    pub hooks: Vec<String>,
    pub skipped: Vec<(String, &'static str)>,
}

/// Entries looked at per directory; a directory holding more is reported
/// as cut short rather than read without a bound.
const MAX_ENTRIES: usize = 4096;

pub fn inspect(dir: &Path) -> Inspection {
    let mut r = Inspection {
        exists: false,
        hooks: Vec::new(),
        skipped: Vec::new(),
    };
    let Ok(rd) = std::fs::read_dir(dir) else {
        return r;
    };
    r.exists = true;
    for e in rd.filter_map(|e| e.ok()).take(MAX_ENTRIES) {
        let name = e.file_name();
        let shown = name.to_string_lossy().into_owned();
        if !is_hook_name(name.as_bytes()) {
            r.skipped
                .push((shown, "hidden or a package manager's leftover"));
            continue;
        }
        match std::fs::metadata(e.path()) {
            Err(_) => r.skipped.push((shown, "dangling link or unreadable")),
            Ok(m) if m.is_dir() => r.skipped.push((shown, "directory")),
            Ok(m) if !m.is_file() => r.skipped.push((shown, "not a regular file")),
            Ok(m) if m.permissions().mode() & 0o111 == 0 => {
                r.skipped.push((shown, "not executable"))
            }
            Ok(_) => r.hooks.push(shown),
        }
    }
    r.hooks.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    r.skipped.sort();
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["01-up", "routes.sh", "a~b", "x.dpkg"] {
            assert!(is_hook_name(ok.as_bytes()), "{ok}");
        }
        for bad in [
            ".hidden",
            "01-up~",
            "01-up.dpkg-old",
            "01-up.dpkg-dist",
            "01-up.rpmnew",
            "01-up.rpmsave",
            "01-up.rpmorig",
            ".01-up.swp",
            "",
        ] {
            assert!(!is_hook_name(bad.as_bytes()), "{bad}");
        }
    }

    #[test]
    fn listing_is_executable_files_in_byte_order() {
        let d = std::env::temp_dir().join(format!("netevd-list-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("sub")).unwrap();
        for (n, mode) in [
            ("20-b", 0o755),
            ("10-a", 0o700),
            ("B", 0o755),
            ("30-noexec", 0o644),
            ("40-x~", 0o755),
            (".50", 0o755),
        ] {
            let p = d.join(n);
            std::fs::write(&p, "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        std::os::unix::fs::symlink(d.join("20-b"), d.join("25-link")).unwrap();
        std::os::unix::fs::symlink(d.join("nope"), d.join("26-dangling")).unwrap();
        let names: Vec<String> = list(&d)
            .unwrap()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["10-a", "20-b", "25-link", "B"]);
        assert!(list(&d.join("missing")).unwrap().is_empty());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn only_resource_shortages_are_retried() {
        for e in [libc::EAGAIN, libc::EMFILE, libc::ENFILE, libc::ENOMEM] {
            assert!(transient(&io::Error::from_raw_os_error(e)), "{e}");
        }
        for e in [
            libc::ENOENT,
            libc::EACCES,
            libc::ENOEXEC,
            libc::E2BIG,
            libc::ELOOP,
        ] {
            assert!(!transient(&io::Error::from_raw_os_error(e)), "{e}");
        }
    }

    #[test]
    fn output_bucket_allows_a_burst_then_a_rate() {
        let t0 = Instant::now();
        let mut b = Bucket::new(t0);
        assert_eq!((0..1000).filter(|_| b.take()).count() as u64, LOG_BURST);
        b.refill(t0 + Duration::from_millis(999));
        assert_eq!((0..1000).filter(|_| b.take()).count(), 9);
        // the 0.99 line left over counts too
        b.refill(t0 + Duration::from_secs(2));
        assert_eq!((0..1000).filter(|_| b.take()).count(), 11);
        b.refill(t0 + Duration::from_secs(3600));
        assert_eq!((0..1000).filter(|_| b.take()).count() as u64, LOG_BURST);
    }

    #[test]
    fn json_file_holds_the_json_and_is_sealed() {
        let json = "{\"x\":1}".repeat(10_000);
        let fd = json_file(&json).unwrap();
        let path = format!("/proc/self/fd/{}", fd.as_raw_fd());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), json);
        // read twice: each open starts at the beginning
        assert_eq!(std::fs::read_to_string(&path).unwrap().len(), json.len());
        let mut w = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        assert!(w.write_all(b"changed").is_err(), "not sealed");
    }

    #[test]
    fn script_dir_problems_are_counted() {
        let d = std::env::temp_dir().join(format!("netevd-check-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        assert_eq!(check_script_dir(&d), 1, "missing");
        std::fs::write(&d, "").unwrap();
        assert_eq!(check_script_dir(&d), 1, "a file");
        std::fs::remove_file(&d).unwrap();
        std::os::unix::fs::symlink(&d, &d).unwrap();
        assert_eq!(check_script_dir(&d), 1, "a loop");
        std::fs::remove_file(&d).unwrap();
        std::fs::create_dir_all(d.join("up.d")).unwrap();
        assert_eq!(check_script_dir(&d), 0, "fine");
        for (n, mode) in [("10-ok", 0o755), ("20-noexec", 0o644), ("30-x~", 0o644)] {
            let p = d.join("up.d").join(n);
            std::fs::write(&p, "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        std::os::unix::fs::symlink(d.join("nope"), d.join("up.d/40-dangling")).unwrap();
        std::fs::create_dir(d.join("up.d/50-dir")).unwrap();
        std::fs::write(d.join("routes.d"), "").unwrap();
        std::fs::write(d.join("netevd.yaml"), "").unwrap();
        // 20-noexec, 40-dangling, 50-dir, routes.d; not 30-x~ (not a hook
        // name) nor netevd.yaml (not a *.d)
        assert_eq!(check_script_dir(&d), 4);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
