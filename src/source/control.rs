//! The control socket: a Unix stream listener and its clients, I/O only.
//! Reads request lines, queues reply and event lines, and never blocks:
//! every read and write is non-blocking, every buffer has a bound, and no
//! client gets more than its share of a turn of the loop.
//!
//! - Requests are taken one line at a time (`next_line`), at most
//!   `LINES_PER_TURN` per client per turn. A client whose replies are not
//!   read (more than `LOW_WATER` queued) is not read either until they
//!   are: pipelining without reading costs the daemon one reply, not one
//!   per line.
//! - A request line longer than `MAX_REQUEST` gets a `too_long` error and
//!   is skipped up to its newline; the connection goes on.
//! - Output is queued per client and written as the socket takes it, with
//!   WRITABLE interest only while the queue is not empty. A reply may be
//!   large (a full routing table); event lines are what a subscriber can
//!   fall behind on, and one more than `max_queue` bytes behind is dropped
//!   with a last `dropped` line (written if the socket takes it within a
//!   grace period, never waited for). A drained queue gives its memory
//!   back.
//! - A client that completes no request and takes none of its output for
//!   `idle_timeout` is closed, unless it subscribed.
//! - Slots: anyone may take up to `max_clients`; root and the group have
//!   a quarter more (at least one), so others can never lock them out. At
//!   the limit, clients that hung up are reaped before anyone is refused.
//!
//! Who may change things is decided here from the peer's credentials as
//! the kernel recorded them at connect (SO_PEERCRED, SO_PEERGROUPS): root,
//! or a member of `control.group` by primary or supplementary group. The
//! socket file is changed only through a descriptor that was checked to
//! be the socket this daemon bound, never through a path that may have
//! become a symbolic link.
//!
//! Socket activation: when the service manager passes a listening socket
//! (`LISTEN_FDS`/`LISTEN_PID`, sd_listen_fds(3)), `take_listen_fds` keeps
//! it at start and `Control::open` serves it instead of binding; its
//! mode, group and removal are then the socket unit's business.

use std::fs;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mio::net::{UnixListener, UnixStream};
use mio::{Interest, Registry, Token};
use netevd_ctl::{dropped_line, error_line, Code, Error, MAX_REQUEST};

use crate::core::filter::Subscription;
use nix::libc;
use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
use nix::sys::stat::{umask, Mode};
use nix::unistd::{Gid, Group};
use serde_json::Value;

/// A listening socket passed by the service manager, until
/// `Control::open` takes it; -1 for none.
static INHERITED: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(-1);

/// The first descriptor passed by the service manager (sd_listen_fds(3)).
const SD_LISTEN_FDS_START: i32 = 3;

/// Takes the control socket passed by the service manager, if
/// `LISTEN_PID` is this process and `LISTEN_FDS` names at least one: it
/// must be a listening Unix stream socket. Removes the variables (hooks
/// and children must not think they are activated). Call at start, before
/// any fork and any thread. Returns whether one was taken, or why the one
/// passed is unusable.
pub fn take_listen_fds() -> Result<bool, String> {
    let pid = std::env::var("LISTEN_PID").ok();
    let fds = std::env::var("LISTEN_FDS").ok();
    for k in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        std::env::remove_var(k);
    }
    let (Some(pid), Some(fds)) = (pid, fds) else {
        return Ok(false);
    };
    if pid.trim().parse::<u32>().ok() != Some(std::process::id()) {
        return Ok(false);
    }
    let n: i32 = fds
        .trim()
        .parse()
        .map_err(|_| format!("LISTEN_FDS={fds:?} is not a number"))?;
    if n < 1 {
        return Ok(false);
    }
    for fd in SD_LISTEN_FDS_START..SD_LISTEN_FDS_START + n {
        // SAFETY: F_SETFD on descriptors the manager passed: none of them
        // may leak into hooks.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    if n > 1 {
        log::warn!(
            "control: {n} sockets passed (LISTEN_FDS), serving the first; the others are closed"
        );
        for fd in SD_LISTEN_FDS_START + 1..SD_LISTEN_FDS_START + n {
            // SAFETY: closing descriptors passed to us and used by no one.
            unsafe { libc::close(fd) };
        }
    }
    let fd = SD_LISTEN_FDS_START;
    // SAFETY: the descriptor is open (passed by the manager) and only
    // borrowed for these checks.
    let b = unsafe { BorrowedFd::borrow_raw(fd) };
    use nix::sys::socket::{sockopt, SockType};
    let stream =
        getsockopt(&b, sockopt::SockType).map_err(|e| format!("LISTEN_FDS: descriptor 3: {e}"))?;
    let listening = getsockopt(&b, sockopt::AcceptConn).unwrap_or(false);
    let mut domain: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: SO_DOMAIN writes one int into `domain`.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_DOMAIN,
            &mut domain as *mut libc::c_int as *mut libc::c_void,
            &mut len,
        )
    };
    if stream != SockType::Stream || !listening || r < 0 || domain != libc::AF_UNIX {
        return Err(
            "LISTEN_FDS: descriptor 3 is not a listening Unix stream socket (the socket unit \
             needs ListenStream= with a path)"
                .into(),
        );
    }
    INHERITED.store(fd, std::sync::atomic::Ordering::SeqCst);
    Ok(true)
}

/// Bytes read from a client's socket at once.
const READ_CHUNK: usize = 8192;

/// Bytes read from one client per request taken.
const READ_BUDGET: usize = 4 * READ_CHUNK;

/// Requests taken from one client per turn of the loop.
pub const LINES_PER_TURN: usize = 16;

/// Queued output above which a client's next request waits.
const LOW_WATER: usize = 64 * 1024;

/// A queue drained empty keeps at most this much memory.
const KEEP_CAPACITY: usize = 16 * 1024;

/// How long a dropped client's last line may take to leave.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Event lines wait this long to leave together: a follower hears of an
/// event within it, and a steady stream costs one write per follower per
/// window instead of one per event.
pub const FLUSH_DELAY: Duration = Duration::from_millis(5);

/// Queued event lines past this many bytes leave at once.
const FLUSH_SIZE: usize = 16 * 1024;

/// How soon accepting is tried again after running out of descriptors.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    pub path: PathBuf,
    /// The group resolved to its id (see `resolve_group`).
    pub gid: Option<u32>,
    pub mode: u32,
    pub max_clients: usize,
    pub idle_timeout: Duration,
    pub max_queue: usize,
}

/// The id of group `name`, or why it has none.
pub fn resolve_group(name: Option<&str>) -> Result<Option<u32>, String> {
    match name {
        None => Ok(None),
        Some(g) => match Group::from_name(g) {
            Ok(Some(gr)) => Ok(Some(gr.gid.as_raw())),
            Ok(None) => Err(format!("control.group: there is no group {g:?}")),
            Err(e) => Err(format!("control.group: looking up {g:?}: {e}")),
        },
    }
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
    gid: u32,
    /// The peer's pid at connect, for the audit log.
    pid: i32,
    groups: Vec<u32>,
    privileged: bool,
    /// Bytes read and not yet taken as requests.
    inbuf: Vec<u8>,
    /// Skipping the rest of a line that was too long.
    discarding: bool,
    /// The peer will send nothing more.
    eof: bool,
    out: Queue,
    writable: bool,
    /// The last complete request or the last output the peer took.
    last_active: Instant,
    subscription: Option<Subscription>,
    /// Dropped: flush what is queued, then close, by this time.
    closing: Option<Instant>,
    /// Input may be waiting: serve this client again next turn.
    more: bool,
    /// Its next request waits for its queued output to drain.
    held: bool,
}

impl Client {
    fn is_privileged(&self, gid: Option<u32>) -> bool {
        self.uid == 0 || gid.is_some_and(|g| g == self.gid || self.groups.contains(&g))
    }
}

/// One request line from a client.
pub struct Line {
    pub client: usize,
    pub privileged: bool,
    pub uid: u32,
    pub gid: u32,
    pub pid: i32,
    pub bytes: Vec<u8>,
}

pub struct Control {
    listener: UnixListener,
    path: PathBuf,
    /// The socket file this daemon bound, by device and inode.
    bound: (u64, u64),
    /// Passed by the service manager: its file is not ours to change or
    /// remove.
    activated: bool,
    settings: Settings,
    clients: Vec<Option<Client>>,
    base: usize,
    /// Clients that subscribed, dropped ones included until closed: a
    /// count, so each event costs nothing when nobody listens.
    listening: usize,
    /// Clients with event lines queued since the last `flush_queued`.
    queued: Vec<usize>,
    /// When what is queued must leave.
    flush_at: Option<Instant>,
    /// Accepting failed for want of descriptors: try again then.
    accept_retry: Option<Instant>,
    /// The last accept failed so; logged once until one succeeds.
    accept_waiting: bool,
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
        let fd = INHERITED.swap(-1, std::sync::atomic::Ordering::SeqCst);
        if fd >= 0 {
            return Control::adopt(fd, settings, reg, listener_token, client_base);
        }
        let path = settings.path.clone();
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
        let listener = bound.map_err(|e| ctx("cannot bind", &path, e))?;
        let m = fs::symlink_metadata(&path).map_err(|e| ctx("cannot look at it", &path, e))?;
        let mut c = Control {
            listener,
            path,
            bound: (m.dev(), m.ino()),
            activated: false,
            settings,
            clients: Vec::new(),
            base: client_base,
            listening: 0,
            queued: Vec::new(),
            flush_at: None,
            accept_retry: None,
            accept_waiting: false,
            stats: Stats::default(),
        };
        c.apply_mode()
            .map_err(|e| ctx("cannot set its mode and group", &c.path, e))?;
        reg.register(&mut c.listener, listener_token, Interest::READABLE)?;
        Ok(c)
    }

    /// Serves the listening socket `fd` the service manager passed.
    fn adopt(
        fd: i32,
        settings: Settings,
        reg: &Registry,
        listener_token: Token,
        client_base: usize,
    ) -> io::Result<Control> {
        use std::os::fd::FromRawFd;
        // SAFETY: `take_listen_fds` checked it is a listening Unix stream
        // socket, and nothing else owns it.
        let std_listener = unsafe { std::os::unix::net::UnixListener::from_raw_fd(fd) };
        std_listener.set_nonblocking(true)?;
        let path = std_listener
            .local_addr()
            .ok()
            .and_then(|a| a.as_pathname().map(Path::to_path_buf))
            .unwrap_or_else(|| settings.path.clone());
        let bound = fs::symlink_metadata(&path)
            .map(|m| (m.dev(), m.ino()))
            .unwrap_or((0, 0));
        log::info!(
            "control: serving {} passed by the service manager (its mode and group are the socket unit's)",
            path.display()
        );
        let mut c = Control {
            listener: UnixListener::from_std(std_listener),
            path,
            bound,
            activated: true,
            settings,
            clients: Vec::new(),
            base: client_base,
            listening: 0,
            queued: Vec::new(),
            flush_at: None,
            accept_retry: None,
            accept_waiting: false,
            stats: Stats::default(),
        };
        reg.register(&mut c.listener, listener_token, Interest::READABLE)?;
        Ok(c)
    }

    /// Gives the socket file to `uid` (before the daemon drops to that
    /// user), so that a reload may still change its mode.
    #[cfg(feature = "privsep")]
    pub fn give_to(&self, uid: u32) -> io::Result<()> {
        if self.activated {
            return Ok(());
        }
        let f = self.checked()?;
        let me = format!("/proc/self/fd/{}", f.as_raw_fd());
        nix::unistd::chown(me.as_str(), Some(nix::unistd::Uid::from_raw(uid)), None)?;
        Ok(())
    }

    /// The socket file, opened without following links and checked to be
    /// the one this daemon bound.
    fn checked(&self) -> io::Result<fs::File> {
        let f = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH | libc::O_NOFOLLOW)
            .open(&self.path)?;
        let m = f.metadata()?;
        if !m.file_type().is_socket() || (m.dev(), m.ino()) != self.bound {
            return Err(io::Error::other(
                "the path is no longer the socket this daemon bound",
            ));
        }
        Ok(f)
    }

    /// Gives the socket file its mode and group, through a descriptor
    /// checked to be the socket this daemon bound: a symbolic link put at
    /// the path, or another file, is never changed.
    fn apply_mode(&self) -> io::Result<()> {
        if self.activated {
            return Ok(());
        }
        let f = self.checked()?;
        // /proc/self/fd/N of an O_PATH descriptor names its inode itself;
        // nothing is looked up by path again.
        let me = format!("/proc/self/fd/{}", f.as_raw_fd());
        if let Some(g) = self.settings.gid {
            nix::unistd::chown(me.as_str(), None, Some(Gid::from_raw(g)))?;
        }
        fs::set_permissions(&me, fs::Permissions::from_mode(self.settings.mode))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// New bounds, mode and group; the path only changes at restart. The
    /// privilege of clients already connected follows the new group.
    pub fn set_settings(&mut self, s: Settings) {
        let same = (s.mode, s.gid) == (self.settings.mode, self.settings.gid);
        self.settings = Settings {
            path: self.settings.path.clone(),
            ..s
        };
        // As root the configured mode and group are put back at every
        // reload; after the drop to system.user only a change is tried
        // (the group may be one that user cannot give).
        if same && !nix::unistd::geteuid().is_root() {
        } else if let Err(e) = self.apply_mode() {
            log::error!(
                "control: {}: cannot set its mode and group: {e}",
                self.path.display()
            );
        }
        let gid = self.settings.gid;
        for c in self.clients.iter_mut().flatten() {
            c.privileged = c.is_privileged(gid);
        }
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

    /// Closes clients that hung up and sent nothing still to answer.
    fn reap_hung_up(&mut self, reg: &Registry) {
        for i in 0..self.clients.len() {
            let Some(Some(c)) = self.clients.get(i) else {
                continue;
            };
            let mut p = libc::pollfd {
                fd: c.stream.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd, no waiting. POLLHUP: the peer
            // closed both ways, so no reply can reach it (one that only
            // shut its writing side may still read, and stays).
            let n = unsafe { libc::poll(&mut p, 1, 0) };
            if n == 1 && p.revents & (libc::POLLHUP | libc::POLLERR) != 0 {
                self.close(i, reg);
            }
        }
    }

    /// Accepts every waiting connection.
    pub fn accept(&mut self, reg: &Registry, now: Instant) {
        self.accept_retry = None;
        loop {
            let (stream, _) = match self.listener.accept() {
                Ok(s) => {
                    self.accept_waiting = false;
                    s
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.accept_waiting = false;
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // EMFILE and the like: the connections wait in the
                    // backlog, and readiness will not be reported again
                    // for them: try again soon.
                    if !self.accept_waiting {
                        log::warn!("control: accept: {e}; trying again every 100 ms");
                        self.accept_waiting = true;
                    }
                    self.accept_retry = Some(now + ACCEPT_RETRY);
                    return;
                }
            };
            let (uid, gid, pid) = match getsockopt(&stream.as_fd(), PeerCredentials) {
                Ok(c) => (c.uid(), c.gid(), c.pid()),
                Err(e) => {
                    log::warn!("control: no peer credentials: {e}");
                    continue;
                }
            };
            let groups = peer_groups(stream.as_fd());
            let max = self.settings.max_clients;
            // Root and the group have a quarter more slots than anyone,
            // so others can never lock them out.
            let reserve = (max / 4).max(1);
            let mut c = Client {
                stream,
                uid,
                gid,
                pid,
                groups,
                privileged: false,
                inbuf: Vec::new(),
                discarding: false,
                eof: false,
                out: Queue::default(),
                writable: false,
                last_active: now,
                subscription: None,
                closing: None,
                more: true,
                held: false,
            };
            c.privileged = c.is_privileged(self.settings.gid);
            let limit = if c.privileged { max + reserve } else { max };
            if self.clients() >= limit {
                self.reap_hung_up(reg);
            }
            if self.clients() >= limit {
                self.stats.refused += 1;
                let e = Error::new(
                    Code::Unavailable,
                    format!(
                        "too many clients ({}{}); try again later",
                        self.clients(),
                        if c.privileged {
                            ""
                        } else {
                            ", the rest kept for root and control.group"
                        }
                    ),
                );
                let _ = c.stream.write(error_line(&Value::Null, &e).as_bytes());
                continue;
            }
            let slot = match self.clients.iter().position(Option::is_none) {
                Some(i) => i,
                None => {
                    self.clients.push(None);
                    self.clients.len() - 1
                }
            };
            if let Err(e) = reg.register(&mut c.stream, Token(self.base + slot), Interest::READABLE)
            {
                log::warn!("control: cannot watch a client: {e}");
                while matches!(self.clients.last(), Some(None)) {
                    self.clients.pop();
                }
                continue;
            }
            self.stats.accepted += 1;
            log::debug!("control: client {slot} connected (uid {uid}, pid {pid})");
            self.clients[slot] = Some(c);
        }
    }

    /// Client `i`'s socket has input, or hung up.
    pub fn readable(&mut self, i: usize) {
        if let Some(c) = self.clients.get_mut(i).and_then(Option::as_mut) {
            if c.closing.is_none() {
                c.more = true;
            }
        }
    }

    /// The next request line of client `i`, if one may be served now.
    /// None when it has none ready, is held back by its unread output, or
    /// was closed. Answers lines that are too long itself.
    pub fn next_line(&mut self, i: usize, reg: &Registry, now: Instant) -> Option<Line> {
        let c = self.clients.get_mut(i).and_then(Option::as_mut)?;
        if c.closing.is_some() {
            c.more = false;
            return None;
        }
        // Bytes read and lines skipped in this call are bounded too, so a
        // client sending only newlines, or one endless line, cannot keep
        // the loop here.
        let mut budget = READ_BUDGET;
        let mut skipped = 0;
        loop {
            if c.out.len() >= LOW_WATER {
                c.held = true;
                c.more = false;
                break;
            }
            if let Some(bytes) = take_line(c, &mut self.stats) {
                if bytes.iter().all(u8::is_ascii_whitespace) {
                    skipped += 1;
                    if skipped >= READ_BUDGET {
                        c.more = true;
                        break;
                    }
                    continue;
                }
                c.last_active = now;
                self.stats.requests += 1;
                return Some(Line {
                    client: i,
                    privileged: c.privileged,
                    uid: c.uid,
                    gid: c.gid,
                    pid: c.pid,
                    bytes,
                });
            }
            if c.eof {
                // Nothing more will come, and a half-written last line is
                // not a request. The client may still read what is
                // queued, and a subscriber its events (`flush` closes it
                // when that is over).
                c.more = false;
                break;
            }
            if budget == 0 {
                c.more = true;
                break;
            }
            let mut buf = [0u8; READ_CHUNK];
            match c.stream.read(&mut buf) {
                Ok(0) => c.eof = true,
                Ok(n) => {
                    budget = budget.saturating_sub(n);
                    if c.discarding {
                        match buf[..n].iter().position(|&b| b == b'\n') {
                            Some(p) => {
                                c.discarding = false;
                                c.inbuf.extend_from_slice(&buf[p + 1..n]);
                            }
                            None => continue,
                        }
                    } else {
                        c.inbuf.extend_from_slice(&buf[..n]);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    c.more = false;
                    if c.inbuf.is_empty() && c.inbuf.capacity() > KEEP_CAPACITY {
                        c.inbuf = Vec::new();
                    }
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    log::debug!("control: client {i}: {e}");
                    self.close(i, reg);
                    return None;
                }
            }
        }
        // Error replies for lines too long may be queued; and a client
        // that hung up is closed here once nothing is left for it.
        self.flush(i, reg, now);
        None
    }

    /// Client `i` used up its share of this turn (`LINES_PER_TURN`
    /// requests): it is served again next turn.
    pub fn used_turn(&mut self, i: usize) {
        if let Some(c) = self.clients.get_mut(i).and_then(Option::as_mut) {
            c.more = c.closing.is_none() && !c.held;
        }
    }

    /// Whether a client has input waiting for the next turn.
    pub fn has_more(&self) -> bool {
        self.clients.iter().flatten().any(|c| c.more)
    }

    /// Clients with input waiting for the next turn.
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
                c.out.push(line.as_bytes());
            }
        }
        self.flush(i, reg, now);
    }

    /// Makes client `i` a subscriber.
    pub fn subscribe(&mut self, i: usize, f: Subscription) {
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
    /// line is made only if one does. Lines leave by `flush_at` (within
    /// `FLUSH_DELAY`, or at once past `FLUSH_SIZE`), so a burst or a
    /// steady stream of events costs one write per subscriber per window,
    /// not one per event. A subscriber more than `max_queue` bytes behind
    /// is dropped.
    pub fn broadcast(
        &mut self,
        line: impl FnOnce() -> String,
        pass: impl Fn(&Subscription) -> bool,
        reg: &Registry,
        now: Instant,
    ) {
        let max = self.settings.max_queue;
        let mut line = Some(line);
        let mut made = String::new();
        for i in 0..self.clients.len() {
            let Some(Some(c)) = self.clients.get_mut(i) else {
                continue;
            };
            if c.closing.is_some() || !c.subscription.as_ref().is_some_and(&pass) {
                continue;
            }
            if let Some(f) = line.take() {
                made = f();
            }
            if c.out.is_empty() {
                self.queued.push(i);
            }
            c.out.push(made.as_bytes());
            if c.out.len() < FLUSH_SIZE {
                let due = now + FLUSH_DELAY;
                self.flush_at = Some(self.flush_at.map_or(due, |t| t.min(due)));
                continue;
            }
            // Enough for one write now; only what the socket does not
            // take counts against the subscriber.
            self.flush(i, reg, now);
            let Some(Some(c)) = self.clients.get_mut(i) else {
                continue;
            };
            if c.closing.is_some() || c.out.len() <= max {
                continue;
            }
            self.stats.dropped_slow += 1;
            log::warn!(
                "control: client {i} (uid {}) fell {} bytes behind; dropping it",
                c.uid,
                c.out.len()
            );
            // Keep only what finishes the line being written, then the
            // notice; the rest is freed now.
            c.out.keep_first_line();
            let notice = dropped_line(&format!("too slow: more than {max} bytes queued"));
            c.out.push(notice.as_bytes());
            c.closing = Some(now + CLOSE_GRACE);
            c.more = false;
            if !self.queued.contains(&i) {
                self.queued.push(i);
            }
            self.flush_at = Some(now);
        }
    }

    /// When `flush_queued` is due.
    pub fn flush_at(&self) -> Option<Instant> {
        self.flush_at
    }

    /// Writes what `broadcast` queued.
    pub fn flush_queued(&mut self, reg: &Registry, now: Instant) {
        self.flush_at = None;
        let queued = std::mem::take(&mut self.queued);
        for &i in &queued {
            self.flush(i, reg, now);
        }
        self.queued = queued;
        self.queued.clear();
    }

    /// The socket of client `i` can take more.
    pub fn writable(&mut self, i: usize, reg: &Registry, now: Instant) {
        self.flush(i, reg, now);
    }

    /// Writes what the socket takes.
    fn flush(&mut self, i: usize, reg: &Registry, now: Instant) {
        let Some(c) = self.clients.get_mut(i).and_then(Option::as_mut) else {
            return;
        };
        let mut gone = false;
        while !c.out.is_empty() {
            match c.stream.write(c.out.pending()) {
                Ok(0) => {
                    gone = true;
                    break;
                }
                Ok(n) => {
                    c.out.consume(n);
                    c.last_active = now;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    gone = true;
                    break;
                }
            }
        }
        let done = c.out.is_empty()
            && (c.closing.is_some() || (c.eof && c.subscription.is_none() && !has_line(&c.inbuf)));
        if gone || done {
            self.close(i, reg);
            return;
        }
        if c.out.is_empty() && c.out.capacity() > KEEP_CAPACITY {
            c.out = Queue::default();
        }
        if c.held && c.out.len() < LOW_WATER {
            // Its replies were read: its next request may be taken.
            c.held = false;
            c.more = true;
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

    /// Closes idle clients and dropped ones whose grace is over, and
    /// accepts again after running out of descriptors.
    pub fn expire(&mut self, reg: &Registry, now: Instant) {
        let idle = self.settings.idle_timeout;
        for i in 0..self.clients.len() {
            let Some(Some(c)) = self.clients.get(i) else {
                continue;
            };
            let over = match c.closing {
                Some(t) => t <= now,
                None => {
                    !idle.is_zero()
                        && c.subscription.is_none()
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
        if self.accept_retry.is_some_and(|t| t <= now) {
            self.accept(reg, now);
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
            .chain(self.accept_retry)
            .min()
    }

    /// On shutdown: the socket file goes with the daemon, if it is still
    /// the one this daemon bound.
    pub fn remove(&self) {
        if self.activated {
            return;
        }
        match fs::symlink_metadata(&self.path) {
            Ok(m) if m.file_type().is_socket() && (m.dev(), m.ino()) == self.bound => {
                let _ = fs::remove_file(&self.path);
            }
            _ => log::info!(
                "control: {} is no longer this daemon's socket; leaving it",
                self.path.display()
            ),
        }
    }
}

fn has_line(b: &[u8]) -> bool {
    b.contains(&b'\n')
}

/// Takes the next complete line out of the client's buffer; answers and
/// skips one that is too long.
fn take_line(c: &mut Client, stats: &mut Stats) -> Option<Vec<u8>> {
    match c.inbuf.iter().position(|&b| b == b'\n') {
        Some(p) if p > MAX_REQUEST => {
            c.inbuf.drain(..=p);
            too_long(c, stats);
            // Not a request; the caller looks for the next line.
            Some(Vec::new())
        }
        Some(p) => {
            let mut line: Vec<u8> = c.inbuf.drain(..=p).collect();
            line.pop();
            Some(line)
        }
        None if c.inbuf.len() > MAX_REQUEST => {
            c.inbuf.clear();
            c.discarding = true;
            too_long(c, stats);
            Some(Vec::new())
        }
        None => None,
    }
}

fn too_long(c: &mut Client, stats: &mut Stats) {
    stats.errors += 1;
    let e = Error::new(
        Code::TooLong,
        format!("request line longer than {MAX_REQUEST} bytes"),
    );
    c.out.push(error_line(&Value::Null, &e).as_bytes());
}

/// The peer's supplementary groups as the kernel recorded them at connect
/// (SO_PEERGROUPS, Linux 4.13): not read from /proc, where the pid may by
/// now belong to another process.
fn peer_groups(fd: BorrowedFd) -> Vec<u32> {
    const SO_PEERGROUPS: libc::c_int = 59;
    let mut groups = vec![0u32; 64];
    loop {
        let mut len = (groups.len() * 4) as libc::socklen_t;
        // SAFETY: the buffer holds `len` bytes; the kernel writes at most
        // that many and says how many it needs on ERANGE.
        let r = unsafe {
            libc::getsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                SO_PEERGROUPS,
                groups.as_mut_ptr().cast(),
                &mut len,
            )
        };
        if r == 0 {
            groups.truncate(len as usize / 4);
            return groups;
        }
        let e = io::Error::last_os_error();
        let need = len as usize / 4;
        if e.raw_os_error() == Some(libc::ERANGE) && need > groups.len() && need <= 65_536 {
            groups.resize(need, 0);
            continue;
        }
        log::warn!("control: no peer groups: {e}");
        return Vec::new();
    }
}

/// A client's output: bytes appended at the end (a copy, never one byte at
/// a time) and taken from the front.
#[derive(Default)]
struct Queue {
    buf: Vec<u8>,
    /// Bytes at the front already written.
    sent: usize,
}

impl Queue {
    fn len(&self) -> usize {
        self.buf.len() - self.sent
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    fn push(&mut self, b: &[u8]) {
        // What was written is dropped when it is most of the buffer, so
        // the copy is paid for by the bytes that left.
        if self.sent > 0 && self.sent >= self.buf.len() / 2 {
            self.buf.drain(..self.sent);
            self.sent = 0;
        }
        self.buf.extend_from_slice(b);
    }

    fn pending(&self) -> &[u8] {
        &self.buf[self.sent..]
    }

    fn consume(&mut self, n: usize) {
        self.sent += n;
        if self.sent == self.buf.len() {
            self.buf.clear();
            self.sent = 0;
        }
    }

    /// Keeps only what finishes the line being written, and frees the
    /// rest.
    fn keep_first_line(&mut self) {
        let end = self
            .pending()
            .iter()
            .position(|&b| b == b'\n')
            .map_or(0, |p| p + 1);
        let keep = self.pending()[..end].to_vec();
        *self = Queue { buf: keep, sent: 0 };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_keeps_order_through_partial_writes_and_compaction() {
        let mut q = Queue::default();
        let mut seen = Vec::new();
        let mut want = Vec::new();
        for i in 0..1000u32 {
            let line = format!("line {i}\n");
            want.extend_from_slice(line.as_bytes());
            q.push(line.as_bytes());
            // A socket that takes a little, sometimes nothing.
            let n = (i as usize * 7) % 13;
            let n = n.min(q.len());
            seen.extend_from_slice(&q.pending()[..n]);
            q.consume(n);
        }
        seen.extend_from_slice(q.pending());
        let n = q.len();
        q.consume(n);
        assert_eq!(seen, want);
        assert!(q.is_empty() && q.sent == 0 && q.buf.is_empty());
        q.push(b"abc\ndef\n");
        q.consume(1);
        q.keep_first_line();
        assert_eq!(q.pending(), b"bc\n");
    }
}
