//! Runs the hooks of one event at a time per link: lists
//! `<script_dir>/<dir>.d`, starts each executable in lexical order in its
//! own process group with a clean environment, captures its output line by
//! line into the log, kills the whole group at the timeout, and moves on
//! when the hook is reaped. Never waits for a child: exits are learnt from
//! SIGCHLD, output from the pipe's readiness.
//!
//! What to run and when is decided by the core's scheduler; this module
//! only executes.

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use std::collections::VecDeque;
use std::rc::Rc;

use crate::core::event::{environment, Event};
use crate::core::sched::Job;

/// Longest line kept whole in the log; longer output is split.
const MAX_LINE: usize = 4096;

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

/// The hooks in `dir`: executable regular files (symlinks followed), in
/// byte order of their names. A missing directory has none.
pub fn list(dir: &Path) -> Vec<PathBuf> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) => {
            if e.kind() != io::ErrorKind::NotFound {
                log::warn!("hooks: cannot read {}: {e}", dir.display());
            }
            return Vec::new();
        }
    };
    let mut v: Vec<PathBuf> = rd
        .filter_map(|e| e.ok())
        .filter(|e| is_hook_name(e.file_name().as_bytes()))
        .map(|e| e.path())
        .filter(|p| {
            std::fs::metadata(p)
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
        .collect();
    v.sort_by(|a, b| a.as_os_str().as_bytes().cmp(b.as_os_str().as_bytes()));
    v
}

struct Proc {
    child: Child,
    pipe: Option<File>,
    hook: String,
    started: Instant,
    deadline: Instant,
    killed: bool,
    line: Vec<u8>,
    record: HookRun,
}

struct Run {
    event: Rc<Event>,
    link: String,
    env: Vec<(&'static str, OsString)>,
    hooks: Vec<PathBuf>,
    next: usize,
    proc: Option<Proc>,
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
    pub spawn_errors: u64,
}

pub struct Runner {
    settings: Settings,
    /// Run slots; slot `i` reads its hook's output on token `base + i`.
    runs: Vec<Option<Run>>,
    base: usize,
    pub stats: Stats,
    /// Finished runs, oldest first, at most `settings.history`.
    history: VecDeque<HookRun>,
}

impl Runner {
    pub fn new(settings: Settings, token_base: usize) -> Self {
        Runner {
            settings,
            runs: Vec::new(),
            base: token_base,
            stats: Stats::default(),
            history: VecDeque::new(),
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

    pub fn owns(&self, token: Token) -> bool {
        token.0 >= self.base && token.0 < self.base + self.runs.len()
    }

    /// Starts the hooks for `ev`. Returns false when there is nothing to
    /// run (no hooks, dry run, or none could start): the link is free
    /// again at once.
    pub fn start(&mut self, job: Job, reg: &Registry, now: Instant) -> bool {
        let ev = job.event;
        let dir = self.settings.script_dir.join(format!("{}.d", ev.dir()));
        let hooks = list(&dir);
        let link = ev.name_lossy();
        if hooks.is_empty() {
            log::debug!(
                "event {} {} on {link}: no hooks in {}",
                ev.id,
                ev.dir(),
                dir.display()
            );
            return false;
        }
        if self.settings.dry_run {
            for h in &hooks {
                log::info!(
                    "dry run: would run {} for {link} (event {}, {})",
                    h.display(),
                    ev.id,
                    ev.dir()
                );
            }
            return false;
        }
        let env = environment(&ev, &job.run);
        let slot = match self.runs.iter().position(|r| r.is_none()) {
            Some(i) => i,
            None => {
                self.runs.push(None);
                self.runs.len() - 1
            }
        };
        self.runs[slot] = Some(Run {
            event: ev,
            link,
            env,
            hooks,
            next: 0,
            proc: None,
        });
        self.advance(slot, reg, now)
    }

    /// Starts the next hook of the run in `slot`; false when the run is
    /// over (and the slot freed).
    fn advance(&mut self, slot: usize, reg: &Registry, now: Instant) -> bool {
        let token = Token(self.base + slot);
        let timeout = self.settings.timeout;
        loop {
            let Some(run) = self.runs[slot].as_mut() else {
                return false;
            };
            let Some(path) = run.hooks.get(run.next).cloned() else {
                self.runs[slot] = None;
                return false;
            };
            run.next += 1;
            let hook = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            match spawn(&path, &run.env) {
                Ok((child, pipe)) => {
                    self.stats.started += 1;
                    let fd = pipe.as_raw_fd();
                    if let Err(e) = reg.register(&mut SourceFd(&fd), token, Interest::READABLE) {
                        log::warn!("hooks: cannot watch output of {hook}: {e}");
                    }
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
                        pipe: Some(pipe),
                        hook,
                        started: now,
                        deadline: now + timeout,
                        killed: false,
                        line: Vec::new(),
                        record,
                    });
                    return true;
                }
                Err(e) => {
                    self.stats.spawn_errors += 1;
                    log::error!("hook {} for {}: cannot run: {e}", path.display(), run.link);
                }
            }
        }
    }

    /// The hook's output pipe in `token`'s slot is readable.
    pub fn output(&mut self, token: Token, reg: &Registry) {
        let slot = token.0 - self.base;
        if let Some(Some(run)) = self.runs.get_mut(slot) {
            if let Some(p) = run.proc.as_mut() {
                drain(p, &run.link, reg);
            }
        }
    }

    /// After SIGCHLD: reaps the hooks that exited, starts the next ones,
    /// and returns the links whose runs are over.
    pub fn reap(&mut self, reg: &Registry, now: Instant, done: &mut Vec<u32>) {
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
            drain(p, &run.link, reg);
            flush(p, &run.link);
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
    }

    /// The earliest hook deadline.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.runs
            .iter()
            .flatten()
            .filter_map(|r| r.proc.as_ref())
            .filter(|p| !p.killed)
            .map(|p| p.deadline)
            .min()
    }

    /// Kills the process group of every hook past its deadline; they are
    /// reaped like any other exit.
    pub fn expire(&mut self, now: Instant) {
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
    }

    /// On shutdown: asks every running hook's group to stop.
    pub fn terminate_all(&mut self) {
        for run in self.runs.iter_mut().flatten() {
            if let Some(p) = run.proc.as_ref() {
                kill_group(p.child.id(), Signal::SIGTERM);
            }
        }
    }
}

fn kill_group(pid: u32, sig: Signal) {
    if let Err(e) = killpg(Pid::from_raw(pid as i32), sig) {
        if e != nix::errno::Errno::ESRCH {
            log::warn!("hooks: kill process group {pid}: {e}");
        }
    }
}

fn spawn(path: &Path, env: &[(&'static str, OsString)]) -> io::Result<(Child, File)> {
    let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(io::Error::from)?;
    fcntl(&r, FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).map_err(io::Error::from)?;
    let w2: OwnedFd = w.try_clone()?;
    let child = Command::new(path)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::from(w))
        .stderr(Stdio::from(w2))
        // Its own group, so a timeout kills what it forked too.
        .process_group(0)
        .spawn()?;
    Ok((child, File::from(r)))
}

/// Reads what the hook wrote, logging each complete line.
fn drain(p: &mut Proc, link: &str, reg: &Registry) {
    let mut buf = [0u8; 4096];
    loop {
        let Some(pipe) = p.pipe.as_mut() else {
            return;
        };
        match pipe.read(&mut buf) {
            Ok(0) => {
                // Closed by the hook and all it forked.
                let _ = reg.deregister(&mut SourceFd(&pipe.as_raw_fd()));
                p.pipe = None;
                flush(p, link);
                return;
            }
            Ok(n) => {
                for &b in &buf[..n] {
                    if b == b'\n' {
                        flush(p, link);
                    } else {
                        p.line.push(b);
                        if p.line.len() >= MAX_LINE {
                            flush(p, link);
                        }
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) => {
                log::warn!("hook {} for {link}: reading output: {e}", p.hook);
                return;
            }
        }
    }
}

fn flush(p: &mut Proc, link: &str) {
    if p.line.is_empty() {
        return;
    }
    let text = String::from_utf8_lossy(&p.line).into_owned();
    log::info!("{}[{link}]: {text}", p.hook);
    if p.record.output.len() == TAIL_LINES {
        p.record.output.pop_front();
    }
    p.record.output.push_back(text);
    p.line.clear();
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
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["10-a", "20-b", "25-link", "B"]);
        assert!(list(&d.join("missing")).is_empty());
        std::fs::remove_dir_all(&d).unwrap();
    }
}
