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
//! Who starts the process: without `system.user` the loop itself (it is
//! root, or whoever started it); with it, the privileged spawner
//! (`effect::spawner`), asked over a socketpair, whose replies (started,
//! failed, exited) arrive as readiness like any other source. Either way
//! a hook is started as a child subreaper in its own process group, so
//! that at its timeout `tree::kill_tree` finds and kills everything it
//! started, setsid'd and double-forked descendants included, and every
//! child that ends up with netevd is reaped (`reap` waits for any pid).
//!
//! Hook files and directories that are writable by group or others, or
//! owned by anyone but root (or the user netevd runs as, when it is not
//! root), are refused with a warning naming the file: at start, at
//! reload (`check_script_dir`) and before each run (`check_hook`).
//!
//! What to run and when is decided by the core's scheduler; this module
//! only executes.

use std::ffi::{CString, OsString};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};
use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag, SealFlag};
use nix::libc;
use nix::sys::memfd::{memfd_create, MFdFlags};
use nix::sys::signal::Signal;

use std::collections::VecDeque;
use std::rc::Rc;

use crate::core::event::{environment, json_in_file, Event, JSON_FD};
use crate::core::sched::Job;
use crate::effect::hookdirs::{self, HookDirs};
use crate::effect::spawner::{Reply, Spawner};
use crate::effect::tree::kill_tree;
use crate::logger::Esc;
use crate::privs::Account;

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
pub(super) fn transient(e: &io::Error) -> bool {
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

pub(super) fn is_executable_file(p: &Path) -> bool {
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
    // One directory, so Path's order is the names' bytes; unstable (names
    // are unique) is the smaller sort, one instance for every path list.
    v.sort_unstable();
    Ok(v)
}

/// Keeps the hooks whose file names `scripts` lists (a filter's
/// `scripts:`); all of them when it is None.
pub fn restrict(hooks: &mut Vec<PathBuf>, scripts: Option<&[String]>) {
    if let Some(names) = scripts {
        hooks.retain(|p| {
            p.file_name()
                .is_some_and(|n| names.iter().any(|s| s.as_bytes() == n.as_bytes()))
        });
    }
}

/// Warns about everything in the hook tree that makes hooks silently not
/// run: `script_dir` missing, not a directory, unreadable (a symbolic link
/// loop, say); a `*.d` entry that is not a directory; a hook that is not
/// executable or cannot be read; and everything that makes a hook refused
/// (see [`check_hook`]): script_dir, a `*.d` directory or a hook writable
/// by group or others, or owned by someone but root or `owner`. One line
/// per problem; the reactor calls this at start and at every reload, never
/// per event. Returns how many problems it reported.
pub fn check_script_dir(script_dir: &Path, owner: u32) -> usize {
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
        Ok(m) => match std::fs::read_dir(script_dir) {
            Ok(rd) => {
                if let Some(why) = unsafe_mode(&m, owner) {
                    log::warn!("hooks: script_dir {shown} {why}: every hook in it is refused");
                    return 1;
                }
                rd
            }
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
    dirs.sort_unstable();
    let mut problems = 0;
    for d in dirs {
        let name = Esc(d.as_os_str().as_bytes());
        let rd = match std::fs::metadata(&d) {
            Ok(m) if m.is_dir() => match unsafe_mode(&m, owner) {
                Some(why) => {
                    log::warn!("hooks: {name} {why}: its hooks are refused");
                    problems += 1;
                    continue;
                }
                None => std::fs::read_dir(&d),
            },
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
        entries.sort_unstable();
        for p in entries {
            let name = Esc(p.as_os_str().as_bytes());
            match std::fs::metadata(&p) {
                Err(e) => log::warn!("hooks: {name}: {e}: skipped"),
                Ok(m) if !m.is_file() => log::warn!("hooks: {name} is not a regular file: skipped"),
                Ok(m) if m.permissions().mode() & 0o111 == 0 => {
                    log::warn!("hooks: {name} is not executable: skipped (chmod +x to run it)")
                }
                // Hooks are exec'd with no shell in between: a script
                // without `#!` fails with ENOEXEC at every event.
                Ok(_) if !has_interpreter_or_is_binary(&p) => log::warn!(
                    "hooks: {name} has no #! line and is not a program: it cannot be run \
                     (start it with #!/bin/sh)"
                ),
                Ok(_) => match check_hook(&p, script_dir, owner) {
                    Ok(_) => continue,
                    Err(why) => log::warn!("hooks: {why}: refused"),
                },
            }
            problems += 1;
        }
    }
    problems
}

/// Whether the file starts with `#!` or is an ELF binary. An unreadable
/// file passes: exec may still work (mode 0711), and the run reports it.
fn has_interpreter_or_is_binary(p: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 4];
    let n = match std::fs::File::open(p).and_then(|mut f| f.read(&mut head)) {
        Ok(n) => n,
        Err(_) => return true,
    };
    head[..n].starts_with(b"#!") || head[..n].starts_with(b"\x7fELF")
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
    /// None until the spawner says the hook started.
    pid: Option<u32>,
    /// The spawner's request id (0 when the loop started it itself).
    id: u64,
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
    /// What a filter lets run of the directory (`scripts:`).
    scripts: Option<Rc<[String]>>,
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
    /// `scripts.user`: who hooks run as; None for netevd's own user.
    pub user: Option<String>,
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
    /// Runs reaped since the reactor last took them (for metrics and the
    /// audit log); it drains this after every `reap`.
    pub finished: Vec<(HookRun, Duration)>,
    /// With `system.user`: who starts hooks. None: the loop does.
    spawner: Option<Spawner>,
    /// `settings.user` resolved, when the loop starts hooks itself.
    user: Option<Account>,
    /// Replies read from the spawner, reused.
    replies: Vec<(Reply, Option<OwnedFd>)>,
    /// NetworkManager-dispatcher's layout (reactor/bus.rs): every hook of
    /// `script_dir` itself, given the interface and the action as
    /// arguments.
    flat_args: Option<FlatArgs>,
    /// The hook directories' listings, cached while inotify can tell
    /// when they change (`effect::hookdirs`).
    dirs: HookDirs,
    /// Each state's hook directory's path, made at first use (`state_dir`);
    /// emptied when `script_dir` changes.
    state_dirs: Vec<(&'static str, PathBuf)>,
}

/// `scripts.user` looked up, or None with the reason logged: hooks then
/// do not run at all rather than run as the wrong user.
fn resolve_user(name: Option<&str>) -> Result<Option<Account>, String> {
    match name {
        None => Ok(None),
        Some(n) => crate::privs::account(n, "scripts.user")
            .map(Some)
            .map_err(|e| e.to_string()),
    }
}

impl Runner {
    pub fn new(settings: Settings, token_base: usize, spawner: Option<Spawner>) -> Self {
        let mut r = Runner {
            settings: settings.clone(),
            runs: Vec::new(),
            base: token_base,
            stopping: None,
            stats: Stats::default(),
            history: VecDeque::new(),
            finished: Vec::new(),
            spawner,
            user: None,
            replies: Vec::new(),
            flat_args: None,
            dirs: HookDirs::uncached(settings.script_dir.clone()),
            state_dirs: Vec::new(),
        };
        r.set_settings(settings);
        r
    }

    /// Runs the hooks of `script_dir` itself for every event, with the two
    /// arguments `args` gives (an event it gives none for runs nothing).
    #[cfg_attr(not(feature = "dbus"), allow(dead_code))]
    pub fn flat(mut self, args: FlatArgs) -> Self {
        self.flat_args = Some(args);
        self
    }

    pub fn set_settings(&mut self, s: Settings) {
        if let Some(sp) = self.spawner.as_mut() {
            // It reads the file itself: script_dir and the hook user are
            // never taken from the unprivileged loop.
            sp.reload();
        } else {
            match resolve_user(s.user.as_deref()) {
                Ok(u) => self.user = u,
                Err(e) => log::error!("hooks: {e}; hooks keep running as before"),
            }
        }
        self.dirs.set_script_dir(&s.script_dir);
        self.state_dirs.clear();
        self.settings = s;
        self.trim_history();
    }

    /// Who may own hooks: root, or netevd's own user when it starts them
    /// itself without being root.
    fn owner(&self) -> u32 {
        if self.spawner.is_some() {
            0
        } else {
            nix::unistd::geteuid().as_raw()
        }
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
        check_script_dir(&self.settings.script_dir, self.owner())
    }

    /// Caches the hook directories' listings from now on, with an inotify
    /// descriptor registered on `token`; the reactor calls
    /// [`Runner::on_dirs`] when it is readable. Without inotify (said
    /// once in the log) every event lists its directory, as before.
    pub fn watch_dirs(&mut self, reg: &Registry, token: Token) {
        let dirs = HookDirs::new(self.settings.script_dir.clone());
        let Some(fd) = dirs.fd() else {
            return;
        };
        match reg.register(&mut SourceFd(&fd), token, Interest::READABLE) {
            Ok(()) => self.dirs = dirs,
            Err(e) => log::warn!(
                "hooks: cannot poll inotify: {e}; hook directories are listed for every event"
            ),
        }
    }

    /// An input was read: the next hook lookup first reads what changed
    /// in the hook directories ([`HookDirs::input_read`]).
    pub fn input_read(&mut self) {
        self.dirs.input_read();
    }

    /// The hook directories' inotify descriptor is readable.
    pub fn on_dirs(&mut self) {
        self.dirs.on_ready();
    }

    /// How the listing cache did (for metrics).
    pub fn dirs_stats(&self) -> hookdirs::Stats {
        self.dirs.stats
    }

    pub fn owns(&self, token: Token) -> bool {
        token.0 >= self.base && token.0 < self.base + self.runs.len()
    }

    /// Whether starting `ev` now would find nothing to run (no hooks in its
    /// directory or none that `scripts` lets run, or the runner is
    /// stopping): the same lookup `start` makes, from the same cache, so
    /// the reactor can skip queueing an event that would start and end at
    /// once (every route of a burst without route hooks). False when in
    /// doubt: the directory cannot be listed now.
    pub fn nothing_to_run(&mut self, ev: &Event, scripts: Option<&[String]>) -> bool {
        if self.stopping.is_some() || self.flat_args.is_some_and(|f| f(ev).is_none()) {
            return true;
        }
        matches!(self.lookup(ev, scripts), Ok(h) if h.is_empty())
    }

    /// `ev`'s hook directory: `script_dir` itself for the flat layout.
    fn dir_of(&mut self, ev: &Event) -> &Path {
        hook_dir(
            &mut self.state_dirs,
            &self.settings.script_dir,
            self.flat_args.is_some(),
            ev.dir(),
        )
    }

    /// The hooks `ev` would run now, from the listing cache, kept to what
    /// `scripts` lets run; an event that finds none is logged (debug).
    fn lookup(&mut self, ev: &Event, scripts: Option<&[String]>) -> io::Result<Vec<PathBuf>> {
        let dir = hook_dir(
            &mut self.state_dirs,
            &self.settings.script_dir,
            self.flat_args.is_some(),
            ev.dir(),
        );
        let mut listed = self.dirs.list(dir);
        if let Ok(hooks) = &mut listed {
            restrict(hooks, scripts);
            if hooks.is_empty() && log::log_enabled!(log::Level::Debug) {
                log::debug!(
                    "event {} {} on {}: no hooks in {}",
                    ev.id,
                    ev.dir(),
                    Esc(&ev.name),
                    dir.display()
                );
            }
        }
        listed
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
        let listed = self.lookup(&ev, job.scripts.as_deref());
        if matches!(&listed, Ok(hooks) if hooks.is_empty()) {
            return false;
        }
        let dir = self.dir_of(&ev).to_path_buf();
        let link = Esc(&ev.name).to_string();
        match &listed {
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
            scripts: job.scripts,
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
                let dir = hook_dir(
                    &mut self.state_dirs,
                    &self.settings.script_dir,
                    self.flat_args.is_some(),
                    run.event.dir(),
                );
                match self.dirs.list(dir) {
                    Ok(mut h) => {
                        restrict(&mut h, run.scripts.as_deref());
                        run.hooks = Some(h);
                    }
                    Err(e) => {
                        let what = format!("cannot list {}", dir.display());
                        self.defer(slot, now, &what, &e);
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
            // NetworkManager-dispatcher's arguments, in that layout.
            let args: Vec<OsString> = self
                .flat_args
                .and_then(|f| f(&run.event))
                .map_or_else(Vec::new, |a| a.to_vec());
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
            let mut pending = Proc {
                pid: None,
                id: 0,
                pipe: None,
                readable: false,
                hook: hook.clone(),
                started: now,
                deadline: now + timeout,
                killed: false,
                line: Vec::new(),
                record,
                bucket: Bucket::new(now),
                dropped: 0,
            };
            let started = match self.spawner.as_mut() {
                // The spawner checks the file and answers later.
                Some(sp) => match sp.spawn(&path, &args, &run.env, json_fd) {
                    Ok(id) => {
                        pending.id = id;
                        run.proc = Some(pending);
                        Ok(None)
                    }
                    Err(e) => Err(e),
                },
                None => {
                    let owner = nix::unistd::geteuid().as_raw();
                    match check_hook(&path, &self.settings.script_dir, owner) {
                        Err(why) => Err(io::Error::new(io::ErrorKind::PermissionDenied, why)),
                        Ok(real) => {
                            match launch(&real, &run.env, json_fd, &args, self.user.as_ref()) {
                                Ok(started) => {
                                    run.proc = Some(pending);
                                    Ok(Some(started))
                                }
                                Err(e) => Err(e),
                            }
                        }
                    }
                }
            };
            match started {
                Ok(Some((pid, pipe))) => {
                    self.started(slot, pid, pipe, reg, now);
                    return true;
                }
                Ok(None) => return true,
                Err(e) if transient(&e) => {
                    self.defer(slot, now, &format!("cannot start {hook}"), &e);
                    return true;
                }
                Err(e) => {
                    let refused =
                        e.kind() == io::ErrorKind::PermissionDenied && e.raw_os_error().is_none();
                    self.not_started(slot, &path, &e.to_string(), refused)
                }
            }
        }
    }

    /// Hook `path` of the run in `slot` will not run: it is skipped.
    /// `refused`: for its permissions (`why` names the file).
    fn not_started(&mut self, slot: usize, path: &Path, why: &str, refused: bool) {
        let Some(run) = self.runs[slot].as_mut() else {
            return;
        };
        run.proc = None;
        run.next += 1;
        self.stats.spawn_errors += 1;
        if refused {
            log::warn!("hooks: refused for {}: {why}", run.link);
            return;
        }
        log::error!(
            "hook {} for {}: cannot run: {why}; skipped",
            Esc(path.as_os_str().as_bytes()),
            run.link
        );
    }

    /// The hook of the run in `slot` is running as `pid`, writing to
    /// `pipe`.
    fn started(&mut self, slot: usize, pid: u32, pipe: File, reg: &Registry, now: Instant) {
        let token = Token(self.base + slot);
        let Some(run) = self.runs[slot].as_mut() else {
            return;
        };
        let Some(p) = run.proc.as_mut() else {
            return;
        };
        self.stats.started += 1;
        run.next += 1;
        if let Some(r) = run.retry.take() {
            log::info!(
                "hook {} for {} started after waiting {} ms for resources",
                p.hook,
                run.link,
                now.saturating_duration_since(r.since).as_millis()
            );
        }
        let fd = pipe.as_raw_fd();
        p.pipe = match reg.register(&mut SourceFd(&fd), token, Interest::READABLE) {
            Ok(()) => Some(pipe),
            Err(e) => {
                // Unread, the pipe would fill and stall the hook until its
                // timeout; closed, its writes fail.
                log::warn!(
                    "hook {} for {}: cannot watch its output ({e}): discarded",
                    p.hook,
                    run.link
                );
                None
            }
        };
        p.pid = Some(pid);
        log::debug!(
            "hook {} for {} started, pid {pid} (event {} {})",
            p.hook,
            run.link,
            run.event.id,
            run.event.dir()
        );
    }

    /// The spawner's socket is readable: applies what it says.
    pub fn on_spawner(&mut self, reg: &Registry, now: Instant, done: &mut Vec<u32>) {
        let Some(sp) = self.spawner.as_mut() else {
            return;
        };
        let was_dead = sp.is_dead();
        let mut replies = std::mem::take(&mut self.replies);
        sp.read(&mut replies);
        let dead = sp.is_dead();
        for (r, fd) in replies.drain(..) {
            let id = match &r {
                Reply::Started { id, .. } | Reply::Failed { id, .. } | Reply::Exited { id, .. } => {
                    *id
                }
            };
            let slot = self.runs.iter().position(|r| {
                r.as_ref()
                    .and_then(|r| r.proc.as_ref())
                    .is_some_and(|p| p.id == id)
            });
            let Some(slot) = slot else {
                if let (Reply::Started { .. }, Some(sp)) = (&r, self.spawner.as_mut()) {
                    // Its run is gone (shutdown): it must not outlive it.
                    let _ = sp.kill(id, Signal::SIGKILL);
                }
                continue;
            };
            match r {
                Reply::Started { pid, .. } => match fd {
                    Some(fd) => self.started(slot, pid, File::from(fd), reg, now),
                    None => {
                        log::error!("hook spawner: no output pipe came with pid {pid}");
                        if let Some(sp) = self.spawner.as_mut() {
                            let _ = sp.kill(id, Signal::SIGKILL);
                        }
                    }
                },
                Reply::Failed { errno, why, .. } => {
                    let e = io::Error::from_raw_os_error(errno);
                    let path = self.runs[slot]
                        .as_ref()
                        .and_then(|r| r.hooks.as_ref().and_then(|h| h.get(r.next)).cloned())
                        .unwrap_or_default();
                    if transient(&e) {
                        if let Some(run) = self.runs[slot].as_mut() {
                            run.proc = None;
                        }
                        self.defer(slot, now, &format!("cannot start {}", path.display()), &e);
                    } else {
                        self.not_started(slot, &path, &why, errno == nix::libc::EPERM);
                        self.next_or_done(slot, reg, now, done);
                    }
                }
                Reply::Exited { status, .. } => self.finish(slot, status, reg, now, done),
            }
        }
        self.replies = replies;
        if dead && !was_dead {
            self.spawner_gone(reg, now, done);
        }
    }

    /// The spawner exited: what it was running is lost to us, and no hook
    /// can start any more. Every run is ended so that no link stays busy.
    fn spawner_gone(&mut self, reg: &Registry, now: Instant, done: &mut Vec<u32>) {
        if let Some(sp) = self.spawner.as_mut() {
            sp.set_dead();
        }
        log::error!("hook spawner exited: no hook can run until netevd is restarted");
        for slot in 0..self.runs.len() {
            if let Some(run) = self.runs[slot].as_mut() {
                if let Some(p) = run.proc.take() {
                    if let Some(pipe) = p.pipe {
                        let _ = reg.deregister(&mut SourceFd(&pipe.as_raw_fd()));
                    }
                    self.stats.failed += 1;
                }
                run.next = usize::MAX;
                run.retry = None;
            }
            self.next_or_done(slot, reg, now, done);
        }
    }

    fn next_or_done(&mut self, slot: usize, reg: &Registry, now: Instant, done: &mut Vec<u32>) {
        let Some(index) = self.runs[slot].as_ref().map(|r| r.event.index) else {
            return;
        };
        if !self.advance(slot, reg, now) {
            done.push(index);
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

    /// After SIGCHLD, with every child that exited (`tree::reap_all`):
    /// takes this runner's hooks (and its spawner) out of `exited`, starts
    /// the next hooks, and returns the links whose runs are over.
    pub fn reap(
        &mut self,
        exited: &mut Vec<(u32, i32)>,
        reg: &Registry,
        now: Instant,
        done: &mut Vec<u32>,
    ) {
        let mut reaped = false;
        // What is not this runner's stays for the next (the dispatchers'
        // runners share the one reap of the process).
        let mut i = 0;
        while i < exited.len() {
            let (pid, status) = exited[i];
            if self.spawner.as_ref().is_some_and(|s| s.pid() == pid) {
                exited.swap_remove(i);
                log::error!("hook spawner (pid {pid}) ended: wait status {status:#x}");
                self.on_spawner(reg, now, done);
                self.spawner_gone(reg, now, done);
                continue;
            }
            let slot = self.runs.iter().position(|r| {
                r.as_ref()
                    .and_then(|r| r.proc.as_ref())
                    .is_some_and(|p| p.pid == Some(pid) && p.id == 0)
            });
            match slot {
                Some(slot) => {
                    exited.swap_remove(i);
                    self.finish(slot, status, reg, now, done);
                    reaped = true;
                }
                None => i += 1,
            }
        }
        if reaped {
            self.retry_now(now);
        }
    }

    /// What a hook held (a process, descriptors) is free now: waiting runs
    /// try again at the next `on_timer`, not at the end of their backoff,
    /// which keeps growing if they fail again.
    fn retry_now(&mut self, now: Instant) {
        for r in self.runs.iter_mut().flatten() {
            if let Some(t) = r.retry.as_mut() {
                t.at = t.at.min(now);
            }
        }
    }

    /// The hook of the run in `slot` exited with wait status `raw`: logs
    /// and records it, and starts the run's next hook.
    fn finish(&mut self, slot: usize, raw: i32, reg: &Registry, now: Instant, done: &mut Vec<u32>) {
        let status = ExitStatus::from_raw(raw);
        let Some(run) = self.runs[slot].as_mut() else {
            return;
        };
        let Some(p) = run.proc.as_mut() else {
            return;
        };
        // What the hook left in the pipe (at most the pipe's size, unless
        // something it started keeps writing).
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
        let took = now.saturating_duration_since(p.started);
        let ms = took.as_millis();
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
        if let Some(mut p) = run.proc.take() {
            p.record.duration_ms = Some(ms as u64);
            p.record.exit_code = status.code();
            p.record.signal = status.signal();
            p.record.timed_out = p.killed;
            self.finished.push((p.record.clone(), took));
            if self.settings.history > 0 {
                self.history.push_back(p.record);
                self.trim_history();
            }
        }
        if self.spawner.is_some() {
            self.retry_now(now);
        }
        self.next_or_done(slot, reg, now, done);
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
                "hook {} for {} timed out after {:?}: killing its process group",
                p.hook,
                run.link,
                // Duration's own format: no float formatting in the binary.
                self.settings.timeout
            );
            signal_hook(&mut self.spawner, p, Signal::SIGKILL);
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
                signal_hook(&mut self.spawner, p, Signal::SIGKILL);
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
                    signal_hook(&mut self.spawner, p, Signal::SIGTERM);
                }
                None => *r = None,
            }
        }
        if n > 0 {
            log::info!(
                "stopping: SIGTERM sent to {}, SIGKILL in {} s",
                crate::logger::Count(n, "running hook"),
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

/// An event's hook directory: `<script_dir>/<state>.d`, made once per
/// state (every event looks its directory up, and joining paths showed in
/// a route burst's profile), or `script_dir` itself in the flat layout.
fn hook_dir<'a>(
    cache: &'a mut Vec<(&'static str, PathBuf)>,
    script_dir: &'a Path,
    flat: bool,
    state: &'static str,
) -> &'a Path {
    if flat {
        return script_dir;
    }
    let i = match cache.iter().position(|(s, _)| *s == state) {
        Some(i) => i,
        None => {
            cache.push((state, script_dir.join(format!("{state}.d"))));
            cache.len() - 1
        }
    };
    &cache[i].1
}

/// Sends `sig` to a hook's whole tree: itself when the loop started it,
/// through the spawner otherwise (the loop may not signal root's
/// processes).
fn signal_hook(spawner: &mut Option<Spawner>, p: &Proc, sig: Signal) {
    match spawner {
        Some(sp) if p.id != 0 => {
            if let Err(e) = sp.kill(p.id, sig) {
                log::warn!("hooks: cannot ask the spawner to signal {}: {e}", p.hook);
            }
        }
        _ => {
            if let Some(pid) = p.pid {
                kill_tree(pid, sig);
            }
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

/// Makes sure descriptor 3 ([`JSON_FD`]) is taken for the life of the
/// process (by /dev/null if nothing holds it), so that std's
/// error-report pipe, made at the lowest free numbers before each fork,
/// is never where a hook's JSON file is put.
pub fn reserve_json_fd() -> io::Result<()> {
    // SAFETY: F_GETFD on a number only asks whether it is open.
    if unsafe { libc::fcntl(JSON_FD, libc::F_GETFD) } >= 0 {
        return Ok(());
    }
    let f = std::fs::OpenOptions::new().read(true).open("/dev/null")?;
    if f.as_raw_fd() != JSON_FD {
        // SAFETY: dup3 onto a number that is free.
        if unsafe { libc::dup3(f.as_raw_fd(), JSON_FD, libc::O_CLOEXEC) } < 0 {
            return Err(io::Error::last_os_error());
        }
    } else {
        // It landed there itself: keep it open for good.
        std::mem::forget(f);
    }
    Ok(())
}

/// Starts the hook at `path` with exactly `env`, in its own process
/// group, as a child subreaper (so that what it double-forks stays in its
/// tree for `kill_tree`), with stdin on /dev/null and stdout and stderr
/// on a fresh pipe, the JSON file on descriptor 3 if there is one, and as
/// `user` if given. Returns its pid and the pipe's non-blocking read end.
/// The child is not waited for here: whoever reaps every pid does.
///
/// fork and execve by hand rather than `std::process::Command`: what the
/// child needs is a dozen system calls, std's machinery for it (its
/// environment map, pidfds, posix_spawn paths) was about 20 KB of a
/// binary that must stay within a megabyte. Everything the child touches
/// is made before the fork; between fork and execve there are only
/// async-signal-safe calls, and a failure there (execve's above all)
/// comes back as an errno through a close-on-exec pipe, as std does it.
pub fn launch<K: AsRef<std::ffi::OsStr>, V: AsRef<std::ffi::OsStr>>(
    path: &Path,
    env: &[(K, V)],
    json_fd: Option<RawFd>,
    args: &[OsString],
    user: Option<&Account>,
) -> io::Result<(u32, File)> {
    let invalid = |_| io::Error::from_raw_os_error(libc::EINVAL);
    let prog = CString::new(path.as_os_str().as_bytes()).map_err(invalid)?;
    let mut envs = Vec::with_capacity(env.len());
    for (k, v) in env {
        let mut b = k.as_ref().as_bytes().to_vec();
        b.push(b'=');
        b.extend_from_slice(v.as_ref().as_bytes());
        envs.push(CString::new(b).map_err(invalid)?);
    }
    let mut envp: Vec<*const libc::c_char> = envs.iter().map(|c| c.as_ptr()).collect();
    envp.push(std::ptr::null());
    let args = args
        .iter()
        .map(|a| CString::new(a.as_bytes()).map_err(invalid))
        .collect::<io::Result<Vec<_>>>()?;
    let argv: Vec<*const libc::c_char> = std::iter::once(prog.as_ptr())
        .chain(args.iter().map(|a| a.as_ptr()))
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(io::Error::from)?;
    fcntl(&r, FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).map_err(io::Error::from)?;
    let (report_r, report_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(io::Error::from)?;
    let null = File::open("/dev/null")?;
    let groups: Vec<libc::gid_t> = user.map(|u| u.groups.clone()).unwrap_or_default();
    let ids = user.map(|u| (u.uid, u.gid));
    // SAFETY: single-threaded; the child only makes async-signal-safe
    // calls on memory made before the fork, and ends in execve or _exit.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: see above; `child` never returns.
        unsafe {
            child(
                &prog,
                &argv,
                &envp,
                null.as_raw_fd(),
                w.as_raw_fd(),
                json_fd,
                ids,
                &groups,
                report_w.as_raw_fd(),
            )
        }
    }
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    // The child's copies are its own; ours must go so that end of file
    // comes when the hook and all it started are done.
    drop((w, report_w, null));
    let mut errno = [0u8; 4];
    let mut got = 0;
    loop {
        // SAFETY: reading into a local buffer.
        let n = unsafe {
            libc::read(
                report_r.as_raw_fd(),
                errno[got..].as_mut_ptr() as *mut libc::c_void,
                4 - got,
            )
        };
        match n {
            0 => break,
            n if n > 0 => {
                got += n as usize;
                if got == 4 {
                    break;
                }
            }
            _ if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted => {}
            _ => break,
        }
    }
    if got == 4 {
        // It never became the hook: reap it now, it is exiting.
        let mut st = 0;
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(pid, &mut st, 0) };
        return Err(io::Error::from_raw_os_error(i32::from_ne_bytes(errno)));
    }
    Ok((pid as u32, File::from(r)))
}

/// The child's side of [`launch`], from fork to execve.
///
/// # Safety
/// Only between fork and execve in a single-threaded parent.
#[allow(clippy::too_many_arguments)]
unsafe fn child(
    prog: &CString,
    argv: &[*const libc::c_char],
    envp: &[*const libc::c_char],
    null: RawFd,
    out: RawFd,
    json_fd: Option<RawFd>,
    ids: Option<(u32, u32)>,
    groups: &[libc::gid_t],
    report: RawFd,
) -> ! {
    let fail = || -> ! {
        let e = *libc::__errno_location();
        libc::write(report, &e as *const i32 as *const libc::c_void, 4);
        libc::_exit(127)
    };
    // `dup2` onto itself keeps close-on-exec: clear it instead.
    let place = |from: RawFd, to: RawFd| {
        if from == to {
            libc::fcntl(to, libc::F_SETFD, 0)
        } else {
            libc::dup2(from, to)
        }
    };
    // What the daemon ignores or blocks (std ignores SIGPIPE, the spawner
    // SIGINT, SIGTERM and SIGHUP and blocks SIGCHLD), a hook must not
    // inherit; handlers are reset by execve itself.
    for sig in [
        libc::SIGINT,
        libc::SIGTERM,
        libc::SIGHUP,
        libc::SIGPIPE,
        libc::SIGCHLD,
    ] {
        libc::signal(sig, libc::SIG_DFL);
    }
    let mut empty: libc::sigset_t = std::mem::zeroed();
    libc::sigemptyset(&mut empty);
    libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
    // Its own group, so a timeout kills what it forked too.
    if libc::setpgid(0, 0) < 0
        || place(null, 0) < 0
        || place(out, 1) < 0
        || place(out, 2) < 0
        || json_fd.is_some_and(|fd| place(fd, JSON_FD) < 0)
        || libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) < 0
        || libc::chdir(c"/".as_ptr()) < 0
    {
        fail();
    }
    if let Some((uid, gid)) = ids {
        if libc::setgroups(groups.len(), groups.as_ptr()) < 0
            || libc::setresgid(gid, gid, gid) < 0
            || libc::setresuid(uid, uid, uid) < 0
        {
            fail();
        }
    }
    libc::execve(prog.as_ptr(), argv.as_ptr(), envp.as_ptr());
    fail()
}

/// Why `m` makes a hook or hook directory unsafe: writable by group or
/// others, or owned by someone but root or `owner`.
fn unsafe_mode(m: &std::fs::Metadata, owner: u32) -> Option<String> {
    if m.uid() != 0 && m.uid() != owner {
        return Some(format!(
            "is owned by uid {}, not root{}",
            m.uid(),
            if owner != 0 { " or netevd's user" } else { "" }
        ));
    }
    if m.mode() & 0o022 != 0 {
        return Some(format!(
            "is writable by {} (mode {:04o}; chmod go-w)",
            match m.mode() & 0o022 {
                0o020 => "its group",
                0o002 => "others",
                _ => "its group and others",
            },
            m.mode() & 0o7777
        ));
    }
    None
}

/// Whether the hook at `path` may run: it must resolve (symbolic links
/// followed) to a regular file inside `script_dir`, and it, the directory
/// holding its name and every directory from script_dir down to it must
/// be owned by root (or `owner`) and writable by neither group nor others:
/// anyone who could change one of them could run code as root. Returns
/// why not, naming the file.
///
/// On success returns the name to execute: the resolved path, which holds
/// no symbolic link and runs only through directories just checked. The
/// caller must execute that and never `path` again: a symbolic link on the
/// way from `path` may sit in a directory anyone can write (only where it
/// leads is checked), and could be pointed elsewhere between this check
/// and execve(2). Through the resolved name, only root (or `owner`) can
/// change what runs.
pub fn check_hook(path: &Path, script_dir: &Path, owner: u32) -> Result<PathBuf, String> {
    let shown = |p: &Path| Esc(p.as_os_str().as_bytes()).to_string();
    let root = std::fs::canonicalize(script_dir)
        .map_err(|e| format!("script_dir {}: {e}", shown(script_dir)))?;
    let real = std::fs::canonicalize(path).map_err(|e| format!("{}: {e}", shown(path)))?;
    if !real.starts_with(&root) || real == root {
        return Err(format!(
            "{} resolves to {}, outside script_dir {}",
            shown(path),
            shown(&real),
            shown(&root)
        ));
    }
    let m = std::fs::metadata(&real).map_err(|e| format!("{}: {e}", shown(&real)))?;
    if !m.is_file() {
        return Err(format!("{} is not a regular file", shown(&real)));
    }
    if let Some(why) = unsafe_mode(&m, owner) {
        return Err(format!("{} {why}", shown(&real)));
    }
    // The directories of both the name and the file it resolves to.
    let named = path
        .parent()
        .and_then(|d| std::fs::canonicalize(d).ok())
        .unwrap_or_else(|| root.clone());
    for start in [
        named,
        real.parent().map(Path::to_path_buf).unwrap_or_default(),
    ] {
        let mut d = start.as_path();
        loop {
            if !d.starts_with(&root) {
                return Err(format!(
                    "{} is outside script_dir {}",
                    shown(d),
                    shown(&root)
                ));
            }
            let m = std::fs::metadata(d).map_err(|e| format!("{}: {e}", shown(d)))?;
            if let Some(why) = unsafe_mode(&m, owner) {
                return Err(format!("{} {why}", shown(d)));
            }
            if d == root {
                break;
            }
            match d.parent() {
                Some(p) => d = p,
                None => break,
            }
        }
    }
    Ok(real)
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
            "{}[{link}]: {} of output dropped (more than {LOG_BURST} at once or {LOG_PER_SEC} a second)",
            p.hook,
            crate::logger::Count(p.dropped, "line")
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
            Ok(m) if unsafe_mode(&m, nix::unistd::geteuid().as_raw()).is_some() => r
                .skipped
                .push((shown, "refused: writable by group or others, or not root's")),
            Ok(_) => r.hooks.push(shown),
        }
    }
    // String's order is its bytes'.
    r.hooks.sort_unstable();
    r.skipped.sort_unstable();
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

    /// A hook reached through a symbolic link in a directory anyone can
    /// write: the link is pointed at another program between the check
    /// and the start. What starts must be what was checked.
    #[test]
    fn what_runs_is_what_was_checked_even_when_a_link_is_swapped() {
        let t = std::env::temp_dir().join(format!("netevd-toctou-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&t);
        let (sd, w) = (t.join("sd"), t.join("w"));
        std::fs::create_dir_all(sd.join("up.d")).unwrap();
        std::fs::create_dir_all(sd.join("lib")).unwrap();
        std::fs::create_dir_all(&w).unwrap();
        std::fs::set_permissions(&w, std::fs::Permissions::from_mode(0o1777)).unwrap();
        let out = t.join("out");
        for (p, who) in [(sd.join("lib/good"), "good"), (w.join("evil"), "evil")] {
            std::fs::write(&p, format!("#!/bin/sh\necho {who} > {}\n", out.display())).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        std::os::unix::fs::symlink(sd.join("lib/good"), w.join("link")).unwrap();
        std::os::unix::fs::symlink(w.join("link"), sd.join("up.d/50-x")).unwrap();
        let named = sd.join("up.d/50-x");
        let real = check_hook(&named, &sd, 0).expect("the target is inside and safe");
        assert_eq!(real, std::fs::canonicalize(sd.join("lib/good")).unwrap());
        // the swap, by whoever can write `w`
        std::fs::remove_file(w.join("link")).unwrap();
        std::os::unix::fs::symlink(w.join("evil"), w.join("link")).unwrap();
        let env: [(&str, &str); 0] = [];
        let (pid, _pipe) = launch(&real, &env, None, &[], None).unwrap();
        let mut st = 0;
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(pid as i32, &mut st, 0) };
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "good\n");
        // and once swapped, the check itself refuses
        let e = check_hook(&named, &sd, 0).unwrap_err();
        assert!(e.contains("outside script_dir"), "{e}");
        // `..` out of script_dir, and a hook directory that is a link out
        std::fs::create_dir_all(sd.join("x.d")).unwrap();
        let e = check_hook(&sd.join("x.d/../../w/evil"), &sd, 0).unwrap_err();
        assert!(e.contains("outside script_dir"), "{e}");
        std::os::unix::fs::symlink(&w, sd.join("down.d")).unwrap();
        let e = check_hook(&sd.join("down.d/evil"), &sd, 0).unwrap_err();
        assert!(e.contains("outside script_dir"), "{e}");
        std::fs::remove_dir_all(&t).unwrap();
    }

    #[test]
    fn script_dir_problems_are_counted() {
        let d = std::env::temp_dir().join(format!("netevd-check-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        assert_eq!(check_script_dir(&d, 0), 1, "missing");
        std::fs::write(&d, "").unwrap();
        assert_eq!(check_script_dir(&d, 0), 1, "a file");
        std::fs::remove_file(&d).unwrap();
        std::os::unix::fs::symlink(&d, &d).unwrap();
        assert_eq!(check_script_dir(&d, 0), 1, "a loop");
        std::fs::remove_file(&d).unwrap();
        std::fs::create_dir_all(d.join("up.d")).unwrap();
        assert_eq!(check_script_dir(&d, 0), 0, "fine");
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
        assert_eq!(check_script_dir(&d, 0), 4);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
