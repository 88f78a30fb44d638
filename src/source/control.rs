//! The control socket: a Unix stream listener and its clients, I/O only.
//! Reads request lines, queues reply and event lines, and never blocks:
//! every read and write is non-blocking, every buffer has a bound.
//!
//! - A request line longer than `MAX_REQUEST` gets a `too_long` error and
//!   is skipped up to its newline; the connection goes on.
//! - A client is read for at most `READ_BUDGET` bytes per turn of the
//!   loop, so one that floods requests cannot starve the others; it is
//!   marked and read again on the next turn.
//! - Output is queued per client and written as the socket takes it, with
//!   WRITABLE interest only while the queue is not empty. A client whose
//!   queue passes `max_queue` is dropped: a subscriber with a last
//!   `dropped` line (written if the socket takes it, never waited for).
//! - A client that sends nothing for `idle_timeout` is closed, unless it
//!   subscribed.
//!
//! What requests mean is decided by the reactor; this module only says
//! who sent which line and whether the peer is privileged (root, or a
//! member of the socket's group, by SO_PEERCRED).

use std::collections::VecDeque;
use std::fs;
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mio::net::{UnixListener, UnixStream};
use mio::{Interest, Registry, Token};
use netevd_ctl::{dropped_line, error_line, Code, Error, EventFilter, MAX_REQUEST};
use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
use nix::sys::stat::{umask, Mode};
use nix::unistd::{chown, Gid, Group};
use serde_json::Value;

/// Bytes read from one client per turn of the loop.
const READ_BUDGET: usize = 64 * 1024;

/// How long a dropped client's last line may take to leave.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    pub path: PathBuf,
    pub group: Option<String>,
    pub mode: u32,
    pub max_clients: usize,
    pub idle_timeout: Duration,
    pub max_queue: usize,
}

#[derive(Default, Debug, Clone, Copy)]
pub struct Stats {
    pub accepted: u64,
    pub refused: u64,
    pub requests: u64,
    pub errors: u64,
    pub dropped_slow: u64,
    pub idle_closed: u64,
}

struct Client {
    stream: UnixStream,
    uid: u32,
    privileged: bool,
    inbuf: Vec<u8>,
    /// Skipping the rest of a line that was too long.
    discarding: bool,
    out: VecDeque<u8>,
    writable: bool,
    last_active: Instant,
    subscription: Option<EventFilter>,
    /// Dropped: flush what is queued, then close, by this time.
    closing: Option<Instant>,
    /// More input may be waiting (the read budget ran out).
    more: bool,
}

/// One request line from a client.
pub struct Line {
    pub client: usize,
    pub privileged: bool,
    pub uid: u32,
    pub bytes: Vec<u8>,
}

pub struct Control {
    listener: UnixListener,
    path: PathBuf,
    settings: Settings,
    group_gid: Option<u32>,
    clients: Vec<Option<Client>>,
    base: usize,
    /// Clients that subscribed, dropped ones included until closed: a
    /// count, so each event costs nothing when nobody listens.
    listening: usize,
    pub stats: Stats,
}

/// Why the socket could not be served.
fn ctx(what: &str, path: &Path, e: impl std::fmt::Display) -> io::Error {
    io::Error::other(format!("control socket {}: {what}: {e}", path.display()))
}

impl Control {
    /// Binds the socket. A stale socket (nobody answers) is replaced; one
    /// that answers belongs to another netevd and is refused, as is a
    /// path that is not a socket.
    pub fn open(
        settings: Settings,
        reg: &Registry,
        listener_token: Token,
        client_base: usize,
    ) -> io::Result<Control> {
        let path = settings.path.clone();
        let group_gid = match &settings.group {
            None => None,
            Some(g) => match Group::from_name(g) {
                Ok(Some(gr)) => Some(gr.gid.as_raw()),
                Ok(None) => return Err(ctx("control.group", &path, format!("no group {g:?}"))),
                Err(e) => return Err(ctx("control.group", &path, e)),
            },
        };
        if let Some(dir) = path.parent() {
            if !dir.exists() {
                fs::create_dir_all(dir)
                    .map_err(|e| ctx("cannot create its directory", &path, e))?;
                let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o755));
            }
        }
        match fs::symlink_metadata(&path) {
            Ok(m) if m.file_type().is_socket() => {
                match std::os::unix::net::UnixStream::connect(&path) {
                    Ok(_) => {
                        return Err(ctx(
                            "in use",
                            &path,
                            "another netevd is serving it (stop it, or set control.socket)",
                        ))
                    }
                    Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                        fs::remove_file(&path)
                            .map_err(|e| ctx("cannot remove the stale socket", &path, e))?;
                    }
                    Err(e) => return Err(ctx("cannot check the existing socket", &path, e)),
                }
            }
            Ok(_) => return Err(ctx("exists", &path, "it is not a socket; not replacing it")),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(ctx("cannot look at it", &path, e)),
        }
        // No moment in which the socket is more open than asked for.
        let old = umask(Mode::from_bits_truncate(0o177));
        let bound = UnixListener::bind(&path);
        umask(old);
        let mut listener = bound.map_err(|e| ctx("cannot bind", &path, e))?;
        if let Some(gid) = group_gid {
            chown(&path, None, Some(Gid::from_raw(gid)))
                .map_err(|e| ctx("cannot give it to control.group", &path, e))?;
        }
        fs::set_permissions(&path, fs::Permissions::from_mode(settings.mode))
            .map_err(|e| ctx("cannot set its mode", &path, e))?;
        reg.register(&mut listener, listener_token, Interest::READABLE)?;
        Ok(Control {
            listener,
            path,
            settings,
            group_gid,
            clients: Vec::new(),
            base: client_base,
            listening: 0,
            stats: Stats::default(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// New bounds and group; the path only changes at restart.
    pub fn set_settings(&mut self, s: Settings) {
        if let Some(g) = &s.group {
            if let Ok(Some(gr)) = Group::from_name(g) {
                self.group_gid = Some(gr.gid.as_raw());
                let _ = chown(&self.path, None, Some(gr.gid));
            }
        } else {
            self.group_gid = None;
        }
        let _ = fs::set_permissions(&self.path, fs::Permissions::from_mode(s.mode));
        self.settings = Settings {
            path: self.settings.path.clone(),
            ..s
        };
    }

    pub fn owns(&self, t: Token) -> Option<usize> {
        let i = t.0.checked_sub(self.base)?;
        (i < self.clients.len()).then_some(i)
    }

    pub fn clients(&self) -> usize {
        self.clients.iter().flatten().count()
    }

    pub fn subscribers(&self) -> usize {
        self.clients
            .iter()
            .flatten()
            .filter(|c| c.subscription.is_some() && c.closing.is_none())
            .count()
    }

    /// Accepts every waiting connection.
    pub fn accept(&mut self, reg: &Registry, now: Instant) {
        loop {
            let (mut stream, _) = match self.listener.accept() {
                Ok(s) => s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // EMFILE and the like: the connection waits in the
                    // backlog; the next readiness or turn tries again.
                    log::warn!("control: accept: {e}");
                    return;
                }
            };
            if self.clients() >= self.settings.max_clients {
                self.stats.refused += 1;
                let e = Error::new(
                    Code::Unavailable,
                    format!(
                        "too many clients ({}); try again later",
                        self.settings.max_clients
                    ),
                );
                let _ = stream.write(error_line(&Value::Null, &e).as_bytes());
                continue;
            }
            let (uid, gid, pid) = match getsockopt(&stream.as_fd(), PeerCredentials) {
                Ok(c) => (c.uid(), c.gid(), c.pid()),
                Err(e) => {
                    log::warn!("control: no peer credentials: {e}");
                    continue;
                }
            };
            let privileged = uid == 0
                || self
                    .group_gid
                    .is_some_and(|g| g == gid || supplementary(pid).contains(&g));
            let slot = match self.clients.iter().position(Option::is_none) {
                Some(i) => i,
                None => {
                    self.clients.push(None);
                    self.clients.len() - 1
                }
            };
            if let Err(e) = reg.register(&mut stream, Token(self.base + slot), Interest::READABLE) {
                log::warn!("control: cannot watch a client: {e}");
                continue;
            }
            self.stats.accepted += 1;
            log::debug!("control: client {slot} connected (uid {uid}, pid {pid})");
            self.clients[slot] = Some(Client {
                stream,
                uid,
                privileged,
                inbuf: Vec::new(),
                discarding: false,
                out: VecDeque::new(),
                writable: false,
                last_active: now,
                subscription: None,
                closing: None,
                more: false,
            });
        }
    }

    /// Reads what client `i` sent, within the budget, and appends its
    /// complete request lines to `out`. Lines too long are answered here.
    pub fn read(&mut self, i: usize, reg: &Registry, now: Instant, out: &mut Vec<Line>) {
        let Some(c) = self.clients.get_mut(i).and_then(Option::as_mut) else {
            return;
        };
        if c.closing.is_some() {
            return;
        }
        let mut buf = [0u8; 8192];
        let mut budget = READ_BUDGET;
        let mut eof = false;
        c.more = false;
        while budget > 0 {
            match c.stream.read(&mut buf) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => {
                    budget = budget.saturating_sub(n);
                    c.last_active = now;
                    let mut rest = &buf[..n];
                    while let Some(nl) = rest.iter().position(|&b| b == b'\n') {
                        let (line, tail) = rest.split_at(nl);
                        rest = &tail[1..];
                        if c.discarding {
                            c.discarding = false;
                            continue;
                        }
                        if c.inbuf.len() + line.len() > MAX_REQUEST {
                            c.inbuf = Vec::new();
                            too_long(c, &mut self.stats);
                            continue;
                        }
                        c.inbuf.extend_from_slice(line);
                        let bytes = std::mem::take(&mut c.inbuf);
                        if bytes.iter().all(u8::is_ascii_whitespace) {
                            continue;
                        }
                        self.stats.requests += 1;
                        out.push(Line {
                            client: i,
                            privileged: c.privileged,
                            uid: c.uid,
                            bytes,
                        });
                    }
                    if !c.discarding {
                        c.inbuf.extend_from_slice(rest);
                        if c.inbuf.len() > MAX_REQUEST {
                            c.inbuf = Vec::new();
                            c.discarding = true;
                            too_long(c, &mut self.stats);
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    log::debug!("control: client {i}: {e}");
                    eof = true;
                    break;
                }
            }
        }
        if budget == 0 {
            c.more = true;
        }
        if eof {
            // A half-written last line without its newline is not a
            // request: the client went away before finishing it.
            self.close(i, reg);
            return;
        }
        self.flush(i, reg, now);
    }

    /// Whether a client's read budget ran out last turn.
    pub fn has_more(&self) -> bool {
        self.clients.iter().flatten().any(|c| c.more)
    }

    /// Clients whose read budget ran out and that may have more.
    pub fn more(&self) -> Vec<usize> {
        self.clients
            .iter()
            .enumerate()
            .filter(|(_, c)| c.as_ref().is_some_and(|c| c.more))
            .map(|(i, _)| i)
            .collect()
    }

    /// Queues `line` for client `i` and writes what the socket takes.
    pub fn send(&mut self, i: usize, line: &str, reg: &Registry, now: Instant) {
        if let Some(c) = self.clients.get_mut(i).and_then(Option::as_mut) {
            if c.closing.is_none() {
                push(c, line.as_bytes());
            }
        }
        self.flush(i, reg, now);
    }

    /// Makes client `i` a subscriber.
    pub fn subscribe(&mut self, i: usize, f: EventFilter) {
        if let Some(c) = self.clients.get_mut(i).and_then(Option::as_mut) {
            if c.subscription.is_none() {
                self.listening += 1;
            }
            c.subscription = Some(f);
        }
    }

    /// Whether any client subscribed.
    pub fn listening(&self) -> bool {
        self.listening > 0
    }

    /// Queues an event line for every subscriber whose filter passes; the
    /// line is made only if one does.
    pub fn broadcast(
        &mut self,
        line: impl FnOnce() -> String,
        pass: impl Fn(&EventFilter) -> bool,
        reg: &Registry,
        now: Instant,
    ) {
        let mut line = Some(line);
        let mut made = String::new();
        for i in 0..self.clients.len() {
            let Some(c) = self.clients[i].as_mut() else {
                continue;
            };
            if c.closing.is_some() || !c.subscription.as_ref().is_some_and(&pass) {
                continue;
            }
            if let Some(f) = line.take() {
                made = f();
            }
            push(c, made.as_bytes());
            self.flush(i, reg, now);
        }
    }

    /// The socket of client `i` can take more.
    pub fn writable(&mut self, i: usize, reg: &Registry, now: Instant) {
        self.flush(i, reg, now);
    }

    /// Writes what the socket takes; drops a client past its bound.
    fn flush(&mut self, i: usize, reg: &Registry, now: Instant) {
        let max = self.settings.max_queue;
        let Some(c) = self.clients.get_mut(i).and_then(Option::as_mut) else {
            return;
        };
        let mut gone = false;
        while !c.out.is_empty() {
            let (a, _) = c.out.as_slices();
            match c.stream.write(a) {
                Ok(0) => {
                    gone = true;
                    break;
                }
                Ok(n) => {
                    c.out.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    gone = true;
                    break;
                }
            }
        }
        if gone || (c.closing.is_some() && c.out.is_empty()) {
            self.close(i, reg);
            return;
        }
        if c.closing.is_none() && c.out.len() > max {
            self.stats.dropped_slow += 1;
            log::warn!(
                "control: client {i} (uid {}) fell {} bytes behind; dropping it",
                c.uid,
                c.out.len()
            );
            // Keep only what finishes the line being written, then the
            // notice; the rest is freed now.
            let end = c.out.iter().position(|&b| b == b'\n').map_or(0, |p| p + 1);
            c.out.truncate(end);
            c.out.shrink_to_fit();
            push(
                c,
                dropped_line(&format!("too slow: more than {max} bytes queued")).as_bytes(),
            );
            c.closing = Some(now + CLOSE_GRACE);
            // Falls through: the notice leaves as the socket takes it.
        }
        let want = !c.out.is_empty();
        if want != c.writable {
            let interest = if want {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            if reg
                .reregister(&mut c.stream, Token(self.base + i), interest)
                .is_ok()
            {
                c.writable = want;
            }
        }
    }

    fn close(&mut self, i: usize, reg: &Registry) {
        if let Some(mut c) = self.clients.get_mut(i).and_then(Option::take) {
            if c.subscription.is_some() {
                self.listening -= 1;
            }
            let _ = reg.deregister(&mut c.stream);
            log::debug!("control: client {i} closed");
        }
        // Shrink the slab when its tail is free, so memory comes back.
        while matches!(self.clients.last(), Some(None)) {
            self.clients.pop();
        }
        if self.clients.is_empty() {
            self.clients.shrink_to_fit();
        }
    }

    /// Closes idle clients and dropped ones whose grace is over.
    pub fn expire(&mut self, reg: &Registry, now: Instant) {
        let idle = self.settings.idle_timeout;
        for i in 0..self.clients.len() {
            let Some(c) = self.clients[i].as_ref() else {
                continue;
            };
            let over = match c.closing {
                Some(t) => t <= now,
                None => {
                    !idle.is_zero()
                        && c.subscription.is_none()
                        && c.out.is_empty()
                        && now.saturating_duration_since(c.last_active) >= idle
                }
            };
            if over {
                if c.closing.is_none() {
                    self.stats.idle_closed += 1;
                    log::debug!("control: client {i} idle for {} s; closing", idle.as_secs());
                }
                self.close(i, reg);
            }
        }
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        let idle = self.settings.idle_timeout;
        self.clients
            .iter()
            .flatten()
            .filter_map(|c| match c.closing {
                Some(t) => Some(t),
                None if !idle.is_zero() && c.subscription.is_none() => Some(c.last_active + idle),
                None => None,
            })
            .min()
    }

    /// On shutdown: the socket file goes with the daemon.
    pub fn remove(&self) {
        let _ = fs::remove_file(&self.path);
    }
}

fn too_long(c: &mut Client, stats: &mut Stats) {
    stats.errors += 1;
    let e = Error::new(
        Code::TooLong,
        format!("request line longer than {MAX_REQUEST} bytes"),
    );
    push(c, error_line(&Value::Null, &e).as_bytes());
}

fn push(c: &mut Client, bytes: &[u8]) {
    c.out.extend(bytes);
}

/// The supplementary groups of process `pid`, from /proc (bounded read).
fn supplementary(pid: i32) -> Vec<u32> {
    let Ok(f) = fs::File::open(format!("/proc/{pid}/status")) else {
        return Vec::new();
    };
    let mut s = String::new();
    if f.take(64 * 1024).read_to_string(&mut s).is_err() {
        return Vec::new();
    }
    s.lines()
        .find_map(|l| l.strip_prefix("Groups:"))
        .map(|g| {
            g.split_whitespace()
                .filter_map(|n| n.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}
