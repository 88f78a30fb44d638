//! The privileged hook spawner: a child forked from netevd before it drops
//! to `system.user`, staying root, that starts hooks on the loop's behalf.
//! The loop (unprivileged, non-blocking) and the spawner talk over a
//! `SOCK_SEQPACKET` socketpair, one message per datagram:
//!
//! - loop -> spawner: `Spawn` (a hook path and its environment, the JSON
//!   file as an `SCM_RIGHTS` descriptor), `Kill` (a hook's tree, by request
//!   id), `Reload` (read the configuration file again).
//! - spawner -> loop: `Started` (the pid, the output pipe's read end as an
//!   `SCM_RIGHTS` descriptor), `Failed` (an errno and why), `Exited` (the
//!   raw wait status).
//!
//! What the spawner trusts: nothing the loop says but a path to check and
//! an environment of the variables hooks are documented to get
//! ([`HOOK_ENV`], with `PATH` exactly [`HOOK_PATH`]): a loop taken over
//! must not hand a root hook `LD_PRELOAD`, `BASH_ENV`, `IFS` or a `PATH`
//! through a directory it can write, each of which runs its code as root
//! in whatever the hook starts. `script_dir` and `scripts.user` come from the root-owned
//! configuration file, read by the spawner itself at start and on
//! `Reload`, never from the loop: a loop taken over can at worst run the
//! hooks an administrator installed. Each path must resolve inside
//! script_dir, and it and every directory from script_dir down to it must
//! be owned by root and writable by neither group nor others
//! (`hooks::check_hook`, the rule OpenSSH applies to its files).
//!
//! The spawner is a child subreaper and reaps every child; hooks are
//! killed with their whole tree (`effect::tree`). The spawner blocks (poll
//! on the socket and a signalfd for SIGCHLD); the loop never waits for it.
//!
//! The wire format's one home is [`Request`]/[`Reply`] encode and decode,
//! fuzzed below.
//!
//! Built with the `privsep` feature (default). Without it `Spawner` is a
//! type with no values: the runner's spawner paths compile away, and
//! `system.user` is reported as not active.

// Without `privsep` only the wire format and its tests remain.
#![cfg_attr(not(feature = "privsep"), allow(dead_code, unused_imports))]

use std::ffi::OsString;
use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use crate::effect::tree::{kill_tree, reap_all};
use crate::privs::Account;
use nix::errno::Errno;
use nix::libc;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::socket::{
    recvmsg, sendmsg, setsockopt, socketpair, sockopt, AddressFamily, ControlMessage,
    ControlMessageOwned, MsgFlags, SockFlag, SockType,
};

/// The largest message: a hook's environment is bounded (the JSON at 64
/// KiB, each list at 16 KiB, see `core::event`), far below this.
pub const MAX_MESSAGE: usize = 512 * 1024;

/// The longest reason a `Failed` reply carries; the loop's receive buffer
/// holds any reply with it. A reply cut short would be lost, and its run
/// would keep its link busy for ever.
const MAX_WHY: usize = 8 * 1024;
/// The most arguments a hook is given (NetworkManager-dispatcher's two).
const MAX_ARGS: usize = 8;
const REPLY_BUF: usize = MAX_WHY + 64;

/// The variables a hook may get: those `core::event::environment` sets
/// (a test below reads them out of its source, so a new one cannot be
/// forgotten here), and those of the systemd-networkd backend, which
/// hooks written for the existing netevd expect. Values are data to a
/// hook; only names could change what code runs.
pub const HOOK_ENV: &[&str] = &[
    "PATH",
    "LINK",
    "LINKINDEX",
    "STATE",
    "OPERSTATE",
    "PREVIOUS_STATE",
    "PREVIOUS_LINK",
    "COALESCED",
    "EVENT",
    "EVENT_ID",
    "BACKEND",
    "ADDRESSES",
    "JSON",
    "JSON_FILE",
    "POLICY_TABLE",
    "POLICY_RULES",
    "ROUTE_ACTION",
    "ROUTE_FAMILY",
    "ROUTE_DST",
    "ROUTE_GATEWAY",
    "ROUTE_TABLE",
    "ROUTE_METRIC",
    "DHCP_ADDRESS",
    "DHCP_SUBNET_MASK",
    "DHCP_GATEWAY",
    "DHCP_DNS",
    "DHCP_DOMAIN",
    "DHCP_HOSTNAME",
    "DHCP_LEASE",
    "TRUNCATED",
    "OPER_STATE",
    "CARRIER_STATE",
    "ADDRESS_STATE",
    "ONLINE_STATE",
    "ADMIN_STATE",
    "DNS",
    "DOMAINS",
    "GATEWAY",
    "HOSTNAME",
    "IPV4_ADDRESS_STATE",
    "IPV6_ADDRESS_STATE",
    "DEVICE_STATE",
    "DEVICE_STATE_REASON",
    "DEVICE_IFACE",
    "DEVICE_IP_IFACE",
    "CONNECTION_ID",
    "CONNECTION_UUID",
    "NM_DISPATCHER_ACTION",
    "IP4_ADDRESSES",
    "IP4_NUM_ADDRESSES",
    "IP4_GATEWAY",
    "IP4_NAMESERVERS",
    "IP6_ADDRESSES",
    "IP6_NUM_ADDRESSES",
    "IP6_GATEWAY",
    "IP6_NAMESERVERS",
    "IFACE",
    "ESSID",
    "IP_ADDRS",
    "IP6_ADDRS",
];

/// NetworkManager-dispatcher's numbered variables, `IP4_ADDRESS_<n>` and
/// `IP6_ADDRESS_<n>`, n below this.
const NUMBERED_MAX: u32 = 16;

/// Whether `name` is one netevd gives hooks: in [`HOOK_ENV`], or
/// numbered as NetworkManager-dispatcher numbers its addresses.
pub fn hook_env_name(name: &[u8]) -> bool {
    if HOOK_ENV.iter().any(|n| name == n.as_bytes()) {
        return true;
    }
    [&b"IP4_ADDRESS_"[..], &b"IP6_ADDRESS_"[..]]
        .iter()
        .any(|p| {
            name.strip_prefix(*p).is_some_and(|n| {
                !n.is_empty()
                    && n.len() <= 2
                    && n.iter().all(u8::is_ascii_digit)
                    && (n.len() == 1 || n[0] != b'0')
                    && std::str::from_utf8(n)
                        .ok()
                        .and_then(|n| n.parse::<u32>().ok())
                        .is_some_and(|n| n < NUMBERED_MAX)
            })
        })
}

/// The one `PATH` a hook gets: system directories only, writable by root
/// alone on any sane system.
pub const HOOK_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Whether `env` is an environment netevd gives hooks: only names in
/// [`HOOK_ENV`], each once, `PATH` exactly [`HOOK_PATH`]. Returns why
/// not, naming the variable.
pub fn check_env(env: &[(OsString, OsString)]) -> Result<(), String> {
    for (i, (k, v)) in env.iter().enumerate() {
        let name = k.to_string_lossy();
        if !hook_env_name(k.as_bytes()) {
            return Err(format!(
                "environment variable {name:?} is not one netevd gives hooks"
            ));
        }
        if env[..i].iter().any(|(k2, _)| k2 == k) {
            return Err(format!("environment variable {name:?} given twice"));
        }
        if name == "PATH" && v.as_bytes() != HOOK_PATH.as_bytes() {
            return Err(format!(
                "PATH {:?} is not netevd's {HOOK_PATH:?}",
                v.to_string_lossy()
            ));
        }
    }
    Ok(())
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    Spawn {
        id: u64,
        path: PathBuf,
        /// Arguments after the path (NetworkManager-dispatcher's layout).
        args: Vec<OsString>,
        env: Vec<(OsString, OsString)>,
        /// A descriptor for the JSON file comes with the message.
        json_fd: bool,
    },
    Kill {
        id: u64,
        signal: i32,
    },
    Reload,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// The output pipe's read end comes with the message.
    Started {
        id: u64,
        pid: u32,
    },
    Failed {
        id: u64,
        errno: i32,
        why: String,
    },
    Exited {
        id: u64,
        status: i32,
    },
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err(format!(
                "truncated: {} bytes left, {n} wanted",
                self.0.len()
            ));
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }
    fn i32(&mut self) -> Result<i32, String> {
        Ok(i32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }
    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().unwrap()))
    }
    fn bytes(&mut self) -> Result<&'a [u8], String> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    fn end(&self) -> Result<(), String> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(format!("{} bytes after the message", self.0.len()))
        }
    }
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

impl Request {
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.clear();
        match self {
            Request::Spawn {
                id,
                path,
                args,
                env,
                json_fd,
            } => {
                out.push(b'S');
                out.extend_from_slice(&id.to_le_bytes());
                out.push(*json_fd as u8);
                put_bytes(out, path.as_os_str().as_bytes());
                out.extend_from_slice(&(args.len() as u32).to_le_bytes());
                for a in args {
                    put_bytes(out, a.as_bytes());
                }
                out.extend_from_slice(&(env.len() as u32).to_le_bytes());
                for (k, v) in env {
                    put_bytes(out, k.as_bytes());
                    put_bytes(out, v.as_bytes());
                }
            }
            Request::Kill { id, signal } => {
                out.push(b'K');
                out.extend_from_slice(&id.to_le_bytes());
                out.extend_from_slice(&signal.to_le_bytes());
            }
            Request::Reload => out.push(b'R'),
        }
    }

    pub fn decode(b: &[u8]) -> Result<Request, String> {
        let mut r = Reader(b);
        let req = match r.u8()? {
            b'S' => {
                let id = r.u64()?;
                let json_fd = match r.u8()? {
                    0 => false,
                    1 => true,
                    x => return Err(format!("json flag {x}")),
                };
                let path = PathBuf::from(OsString::from_vec(r.bytes()?.to_vec()));
                let n = r.u32()? as usize;
                if n > MAX_ARGS {
                    return Err(format!("{n} arguments (at most {MAX_ARGS})"));
                }
                let mut args = Vec::with_capacity(n);
                for _ in 0..n {
                    let a = r.bytes()?;
                    if a.contains(&0) {
                        return Err("NUL in an argument".into());
                    }
                    args.push(OsString::from_vec(a.to_vec()));
                }
                let n = r.u32()? as usize;
                // Each entry takes at least 8 bytes: no allocation beyond
                // what the message could hold.
                if n > r.0.len() / 8 {
                    return Err(format!("{n} environment entries cannot fit"));
                }
                let mut env = Vec::with_capacity(n);
                for _ in 0..n {
                    let k = r.bytes()?;
                    let v = r.bytes()?;
                    if k.is_empty() || k.contains(&b'=') || k.contains(&0) || v.contains(&0) {
                        return Err("bad environment entry".into());
                    }
                    env.push((
                        OsString::from_vec(k.to_vec()),
                        OsString::from_vec(v.to_vec()),
                    ));
                }
                if path.as_os_str().as_bytes().contains(&0) {
                    return Err("NUL in the path".into());
                }
                Request::Spawn {
                    id,
                    path,
                    args,
                    env,
                    json_fd,
                }
            }
            b'K' => Request::Kill {
                id: r.u64()?,
                signal: r.i32()?,
            },
            b'R' => Request::Reload,
            t => return Err(format!("unknown request type {t}")),
        };
        r.end()?;
        Ok(req)
    }
}

impl Reply {
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.clear();
        match self {
            Reply::Started { id, pid } => {
                out.push(b's');
                out.extend_from_slice(&id.to_le_bytes());
                out.extend_from_slice(&pid.to_le_bytes());
            }
            Reply::Failed { id, errno, why } => {
                out.push(b'f');
                out.extend_from_slice(&id.to_le_bytes());
                out.extend_from_slice(&errno.to_le_bytes());
                let mut end = why.len().min(MAX_WHY);
                while !why.is_char_boundary(end) {
                    end -= 1;
                }
                put_bytes(out, &why.as_bytes()[..end]);
            }
            Reply::Exited { id, status } => {
                out.push(b'x');
                out.extend_from_slice(&id.to_le_bytes());
                out.extend_from_slice(&status.to_le_bytes());
            }
        }
    }

    pub fn decode(b: &[u8]) -> Result<Reply, String> {
        let mut r = Reader(b);
        let rep = match r.u8()? {
            b's' => Reply::Started {
                id: r.u64()?,
                pid: r.u32()?,
            },
            b'f' => Reply::Failed {
                id: r.u64()?,
                errno: r.i32()?,
                why: String::from_utf8_lossy(r.bytes()?).into_owned(),
            },
            b'x' => Reply::Exited {
                id: r.u64()?,
                status: r.i32()?,
            },
            t => return Err(format!("unknown reply type {t}")),
        };
        r.end()?;
        Ok(rep)
    }
}

/// Sends one message with at most one descriptor. EAGAIN comes back as
/// `WouldBlock` for the caller to try again later.
fn send(sock: RawFd, msg: &[u8], fd: Option<RawFd>) -> io::Result<()> {
    let iov = [IoSlice::new(msg)];
    let fds;
    let cmsg: &[ControlMessage] = match fd {
        Some(f) => {
            fds = [f];
            &[ControlMessage::ScmRights(&fds)]
        }
        None => &[],
    };
    loop {
        match sendmsg::<()>(sock, &iov, cmsg, MsgFlags::MSG_NOSIGNAL, None) {
            Ok(_) => return Ok(()),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Receives one message and the descriptor that came with it. `Ok(None)`
/// at end of file.
fn recv(sock: RawFd, buf: &mut [u8]) -> io::Result<Option<(usize, Option<OwnedFd>)>> {
    let mut space = nix::cmsg_space!([RawFd; 2]);
    loop {
        let mut iov = [IoSliceMut::new(buf)];
        let r = recvmsg::<()>(sock, &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC);
        let msg = match r {
            Ok(m) => m,
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        };
        let mut fd = None;
        for c in msg.cmsgs().into_iter().flatten() {
            if let ControlMessageOwned::ScmRights(fds) = c {
                for f in fds {
                    // SAFETY: the kernel just gave us this descriptor.
                    let owned = unsafe { OwnedFd::from_raw_fd(f) };
                    if fd.is_none() {
                        fd = Some(owned);
                    }
                }
            }
        }
        let truncated = msg.flags.contains(MsgFlags::MSG_TRUNC);
        let n = msg.bytes;
        if n == 0 && fd.is_none() {
            return Ok(None);
        }
        if truncated {
            return Err(io::Error::other("message larger than the buffer"));
        }
        return Ok(Some((n, fd)));
    }
}

/// Without `privsep` there is never a spawner: `Option<Spawner>` is
/// always None, and the compiler drops every path that uses one.
#[cfg(not(feature = "privsep"))]
pub enum Spawner {}

#[cfg(not(feature = "privsep"))]
impl Spawner {
    pub fn fd(&self) -> RawFd {
        match *self {}
    }
    pub fn pid(&self) -> u32 {
        match *self {}
    }
    pub fn is_dead(&self) -> bool {
        match *self {}
    }
    pub fn set_dead(&mut self) {
        match *self {}
    }
    pub fn spawn(
        &mut self,
        _: &Path,
        _: &[OsString],
        _: &[(&'static str, OsString)],
        _: Option<RawFd>,
    ) -> io::Result<u64> {
        match *self {}
    }
    pub fn kill(&mut self, _: u64, _: Signal) -> io::Result<()> {
        match *self {}
    }
    pub fn reload(&mut self) {
        match *self {}
    }
    pub fn read(&mut self, _: &mut Vec<(Reply, Option<OwnedFd>)>) {
        match *self {}
    }
}

/// The loop's end of the socketpair.
#[cfg(feature = "privsep")]
pub struct Spawner {
    sock: OwnedFd,
    pid: u32,
    next_id: u64,
    buf: Vec<u8>,
    /// Set once the spawner is known to be gone.
    dead: bool,
}

#[cfg(feature = "privsep")]
impl Spawner {
    /// Forks the spawner. Call as root, before the drop and before any
    /// thread or other descriptor the spawner should not hold exists.
    /// `script_dir` and `hook_user` are what the configuration says now;
    /// the spawner reads `config_path` again at each `Reload`.
    pub fn fork(
        config_path: &Path,
        script_dir: PathBuf,
        hook_user: Option<Account>,
    ) -> io::Result<Spawner> {
        let (a, b) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )?;
        for s in [&a, &b] {
            // Root may force buffers past wmem_max: one message is one
            // hook's whole environment.
            let _ = setsockopt(s, sockopt::SndBufForce, &(2 * MAX_MESSAGE))
                .or_else(|_| setsockopt(s, sockopt::SndBuf, &(2 * MAX_MESSAGE)));
        }
        // SAFETY: single-threaded here (main checks before the drop, and
        // nothing has started a thread yet); the child runs only its own
        // loop and exits without returning.
        match unsafe { nix::unistd::fork() }? {
            nix::unistd::ForkResult::Child => {
                drop(a);
                let code = match serve(b, config_path, script_dir, hook_user) {
                    Ok(()) => 0,
                    Err(e) => {
                        log::error!("hook spawner: {e}");
                        1
                    }
                };
                // No destructors, no atexit handlers of the parent's.
                // SAFETY: _exit is always safe.
                unsafe { libc::_exit(code) }
            }
            nix::unistd::ForkResult::Parent { child } => {
                drop(b);
                nix::fcntl::fcntl(
                    &a,
                    nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
                )?;
                Ok(Spawner {
                    sock: a,
                    pid: child.as_raw() as u32,
                    next_id: 1,
                    buf: Vec::with_capacity(4096),
                    dead: false,
                })
            }
        }
    }

    pub fn fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn is_dead(&self) -> bool {
        self.dead
    }

    pub fn set_dead(&mut self) {
        self.dead = true;
    }

    /// Asks for a hook to start; returns the request's id. `WouldBlock`
    /// when the socket is full (try again later).
    pub fn spawn(
        &mut self,
        path: &Path,
        args: &[OsString],
        env: &[(&'static str, OsString)],
        json_fd: Option<RawFd>,
    ) -> io::Result<u64> {
        if self.dead {
            return Err(io::Error::other("the hook spawner is gone"));
        }
        let id = self.next_id;
        let req = Request::Spawn {
            id,
            path: path.to_path_buf(),
            args: args.to_vec(),
            env: env
                .iter()
                .map(|(k, v)| (OsString::from(k), v.clone()))
                .collect(),
            json_fd: json_fd.is_some(),
        };
        req.encode(&mut self.buf);
        if self.buf.len() > MAX_MESSAGE {
            return Err(io::Error::from_raw_os_error(libc::E2BIG));
        }
        send(self.sock.as_raw_fd(), &self.buf, json_fd)?;
        self.next_id += 1;
        Ok(id)
    }

    /// Asks for hook `id`'s whole tree to get `sig`. Best effort: a full
    /// socket is logged, and the next timer tries again.
    pub fn kill(&mut self, id: u64, sig: Signal) -> io::Result<()> {
        if self.dead {
            return Ok(());
        }
        Request::Kill {
            id,
            signal: sig as i32,
        }
        .encode(&mut self.buf);
        send(self.sock.as_raw_fd(), &self.buf, None)
    }

    pub fn reload(&mut self) {
        if self.dead {
            return;
        }
        Request::Reload.encode(&mut self.buf);
        if let Err(e) = send(self.sock.as_raw_fd(), &self.buf, None) {
            log::error!("hook spawner: cannot ask it to reload: {e}");
        }
    }

    /// Reads every reply waiting, without blocking. A reply that does not
    /// decode is logged and skipped; end of file marks the spawner dead.
    pub fn read(&mut self, out: &mut Vec<(Reply, Option<OwnedFd>)>) {
        let mut buf = [0u8; REPLY_BUF];
        loop {
            match recv(self.sock.as_raw_fd(), &mut buf) {
                Ok(Some((n, fd))) => match Reply::decode(&buf[..n]) {
                    Ok(r) => out.push((r, fd)),
                    Err(e) => log::error!("hook spawner: undecodable reply: {e}"),
                },
                Ok(None) => {
                    self.dead = true;
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    log::error!("hook spawner: reading its replies: {e}");
                    return;
                }
            }
        }
    }
}

/// The spawner's own state.
#[cfg(feature = "privsep")]
struct Serve {
    sock: OwnedFd,
    config_path: PathBuf,
    script_dir: PathBuf,
    user: Option<Account>,
    /// Running hooks: request id and pid (a handful: a list is smaller
    /// than a map, in code too).
    running: Vec<(u64, u32)>,
    out: Vec<u8>,
}

#[cfg(feature = "privsep")]
fn serve(
    sock: OwnedFd,
    config_path: &Path,
    script_dir: PathBuf,
    user: Option<Account>,
) -> io::Result<()> {
    // SAFETY: PR_SET_NAME with a NUL-terminated string of at most 16 bytes.
    unsafe {
        libc::prctl(
            libc::PR_SET_NAME,
            c"netevd-spawner".as_ptr() as libc::c_ulong,
            0,
            0,
            0,
        );
    }
    crate::privs::become_subreaper()?;
    // Signals meant for the daemon (a terminal's ^C, a unit's SIGTERM to
    // the whole cgroup) must not take the spawner away while the loop
    // still winds its hooks down; it ends when the loop's end closes.
    for s in [
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGPIPE,
    ] {
        // SAFETY: SIG_IGN installs no handler.
        unsafe {
            let _ = nix::sys::signal::signal(s, nix::sys::signal::SigHandler::SigIgn);
        }
    }
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGCHLD);
    mask.thread_block()?;
    let sigfd = nix::sys::signalfd::SignalFd::with_flags(
        &mask,
        nix::sys::signalfd::SfdFlags::SFD_CLOEXEC | nix::sys::signalfd::SfdFlags::SFD_NONBLOCK,
    )?;
    crate::effect::hooks::reserve_json_fd()?;
    let mut s = Serve {
        sock,
        config_path: config_path.to_path_buf(),
        script_dir,
        user,
        running: Vec::new(),
        out: Vec::with_capacity(256),
    };
    let mut buf = vec![0u8; MAX_MESSAGE];
    loop {
        let (sock_ready, sig_ready) = {
            let mut fds = [
                libc::pollfd {
                    fd: s.sock.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: sigfd.as_fd().as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            // SAFETY: poll on two valid pollfd structs.
            if unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) } < 0 {
                match Errno::last() {
                    Errno::EINTR => continue,
                    e => return Err(e.into()),
                }
            }
            (fds[0].revents != 0, fds[1].revents != 0)
        };
        if sig_ready {
            while let Ok(Some(_)) = sigfd.read_signal() {}
            s.reap()?;
        }
        if sock_ready {
            match recv(s.sock.as_raw_fd(), &mut buf) {
                Ok(Some((n, fd))) => match Request::decode(&buf[..n]) {
                    Ok(r) => s.handle(r, fd)?,
                    Err(e) => log::error!("hook spawner: undecodable request: {e}"),
                },
                // The loop is gone: so is the reason to be.
                Ok(None) => return Ok(()),
                Err(e) => log::error!("hook spawner: reading a request: {e}"),
            }
        }
    }
}

#[cfg(feature = "privsep")]
impl Serve {
    fn reply(&mut self, r: Reply, fd: Option<RawFd>) -> io::Result<()> {
        r.encode(&mut self.out);
        match send(self.sock.as_raw_fd(), &self.out, fd) {
            Ok(()) => Ok(()),
            // The loop closed its end: `serve` sees end of file next.
            Err(e) if e.raw_os_error() == Some(libc::EPIPE) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn reap(&mut self) -> io::Result<()> {
        for (pid, status) in reap_all() {
            if let Some(i) = self.running.iter().position(|r| r.1 == pid) {
                let (id, _) = self.running.swap_remove(i);
                self.reply(Reply::Exited { id, status }, None)?;
            }
        }
        Ok(())
    }

    fn handle(&mut self, r: Request, fd: Option<OwnedFd>) -> io::Result<()> {
        match r {
            Request::Spawn {
                id,
                path,
                args,
                env,
                json_fd,
            } => {
                let json = if json_fd { fd } else { None };
                if json_fd && json.is_none() {
                    return self.reply(
                        Reply::Failed {
                            id,
                            errno: libc::EINVAL,
                            why: "the JSON file's descriptor did not come".into(),
                        },
                        None,
                    );
                }
                if let Err(why) = check_env(&env) {
                    return self.reply(
                        Reply::Failed {
                            id,
                            errno: libc::EPERM,
                            why,
                        },
                        None,
                    );
                }
                // What runs is the checked, resolved name, never `path`
                // again (see `check_hook`).
                let real = match crate::effect::hooks::check_hook(&path, &self.script_dir, 0) {
                    Ok(real) => real,
                    Err(why) => {
                        return self.reply(
                            Reply::Failed {
                                id,
                                errno: libc::EPERM,
                                why,
                            },
                            None,
                        )
                    }
                };
                let started = crate::effect::hooks::launch(
                    &real,
                    &env,
                    json.as_ref().map(|f| f.as_raw_fd()),
                    &args,
                    self.user.as_ref(),
                );
                match started {
                    Ok((pid, pipe)) => {
                        self.running.push((id, pid));
                        self.reply(Reply::Started { id, pid }, Some(pipe.as_raw_fd()))
                    }
                    Err(e) => self.reply(
                        Reply::Failed {
                            id,
                            errno: e.raw_os_error().unwrap_or(libc::EIO),
                            why: e.to_string(),
                        },
                        None,
                    ),
                }
            }
            Request::Kill { id, signal } => {
                let pid = self.running.iter().find(|r| r.0 == id).map(|r| r.1);
                if let (Some(pid), Ok(sig)) = (pid, Signal::try_from(signal)) {
                    kill_tree(pid, sig);
                }
                Ok(())
            }
            Request::Reload => {
                match crate::config::Config::load(&self.config_path) {
                    Ok(c) => {
                        let user = match c.hook_user.as_deref() {
                            None => Ok(None),
                            Some(n) => crate::privs::account(n, "scripts.user").map(Some),
                        };
                        match user {
                            Ok(u) => {
                                self.user = u;
                                self.script_dir = c.script_dir;
                            }
                            Err(e) => log::error!(
                                "hook spawner: reload: {e}; keeping the current hook user"
                            ),
                        }
                    }
                    Err(e) => log::error!("hook spawner: reload: {e}"),
                }
                Ok(())
            }
        }
    }
}

/// A socketpair like the spawner's (tests).
#[cfg(test)]
fn pair() -> (std::fs::File, std::fs::File) {
    let (a, b) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .unwrap();
    (std::fs::File::from(a), std::fs::File::from(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spawn_req() -> Request {
        Request::Spawn {
            id: 7,
            path: PathBuf::from("/etc/netevd/routable.d/50-x"),
            args: vec!["eth0".into(), "up".into()],
            env: vec![
                ("LINK".into(), "eth0".into()),
                ("JSON".into(), "{\"a\":1}".into()),
                ("EMPTY".into(), "".into()),
            ],
            json_fd: true,
        }
    }

    fn corpus() -> Vec<Vec<u8>> {
        let mut v = Vec::new();
        let mut b = Vec::new();
        for r in [
            spawn_req(),
            Request::Kill { id: 9, signal: 9 },
            Request::Reload,
        ] {
            r.encode(&mut b);
            v.push(b.clone());
        }
        for r in [
            Reply::Started { id: 1, pid: 4242 },
            Reply::Failed {
                id: 2,
                errno: 1,
                why: "world-writable".into(),
            },
            Reply::Exited { id: 3, status: 256 },
        ] {
            r.encode(&mut b);
            v.push(b.clone());
        }
        v
    }

    #[test]
    fn messages_round_trip_with_fixed_bytes() {
        let mut b = Vec::new();
        Request::Kill { id: 1, signal: 15 }.encode(&mut b);
        assert_eq!(b, [b'K', 1, 0, 0, 0, 0, 0, 0, 0, 15, 0, 0, 0]);
        Reply::Exited { id: 2, status: 9 }.encode(&mut b);
        assert_eq!(b, [b'x', 2, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0]);
        let r = spawn_req();
        r.encode(&mut b);
        assert_eq!(Request::decode(&b).unwrap(), r);
        assert!(Request::decode(&b[..b.len() - 1]).is_err());
        b.push(0);
        assert!(Request::decode(&b)
            .unwrap_err()
            .contains("after the message"));
        let bad_key = Request::Spawn {
            id: 1,
            path: "/x".into(),
            args: Vec::new(),
            env: vec![("A=B".into(), "c".into())],
            json_fd: false,
        };
        bad_key.encode(&mut b);
        assert!(Request::decode(&b).is_err());
        let many_args = Request::Spawn {
            id: 1,
            path: "/x".into(),
            args: vec!["a".into(); MAX_ARGS + 1],
            env: Vec::new(),
            json_fd: false,
        };
        many_args.encode(&mut b);
        assert!(Request::decode(&b).unwrap_err().contains("arguments"));
        assert!(Request::decode(&[]).is_err());
        assert!(Reply::decode(b"z").is_err());
        // the longest reason still fits the loop's buffer
        Reply::Failed {
            id: 1,
            errno: 1,
            why: "é".repeat(MAX_WHY),
        }
        .encode(&mut b);
        assert!(b.len() <= REPLY_BUF);
        assert!(Reply::decode(&b).is_ok());
    }

    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    #[test]
    fn fuzz_decoder_and_round_trip() {
        let corpus = corpus();
        let mut rng = Rng(0x5eed_0011);
        for _ in 0..200_000 {
            let mut m = corpus[rng.below(corpus.len())].clone();
            for _ in 0..1 + rng.below(4) {
                match rng.below(4) {
                    0 if !m.is_empty() => {
                        let i = rng.below(m.len());
                        m[i] = rng.next() as u8;
                    }
                    1 if !m.is_empty() => {
                        m.truncate(rng.below(m.len()));
                    }
                    2 => m.push(rng.next() as u8),
                    _ => {
                        // a length field blown up
                        if m.len() > 13 {
                            let i = 10 + rng.below(m.len() - 13);
                            m[i..i + 4].copy_from_slice(&(rng.next() as u32).to_le_bytes());
                        }
                    }
                }
            }
            // Whatever decodes must encode back to the same bytes.
            let mut again = Vec::new();
            if let Ok(r) = Request::decode(&m) {
                r.encode(&mut again);
                assert_eq!(again, m, "{r:?}");
            }
            if let Ok(r) = Reply::decode(&m) {
                r.encode(&mut again);
                // a lossy reason may differ; the rest must not
                if !matches!(r, Reply::Failed { .. }) {
                    assert_eq!(again, m, "{r:?}");
                }
            }
        }
    }

    /// What a loop taken over could hand a root hook to run its own
    /// code: refused by name. Every variable `core::event::environment`
    /// sets passes (read from its source, so none is forgotten).
    #[test]
    fn only_the_hook_environment_passes() {
        let e = |pairs: &[(&str, &str)]| -> Vec<(OsString, OsString)> {
            pairs.iter().map(|(k, v)| (k.into(), v.into())).collect()
        };
        assert!(check_env(&e(&[("PATH", HOOK_PATH), ("LINK", "eth0"), ("JSON", "{}")])).is_ok());
        for (k, v) in [
            ("LD_PRELOAD", "/tmp/x.so"),
            ("LD_LIBRARY_PATH", "/tmp"),
            ("BASH_ENV", "/tmp/x"),
            ("ENV", "/tmp/x"),
            ("IFS", "/"),
            ("BASH_FUNC_ls%%", "() { id; }"),
            ("GCONV_PATH", "/tmp"),
            ("link", "lower case"),
        ] {
            let why = check_env(&e(&[("LINK", "eth0"), (k, v)])).unwrap_err();
            assert!(why.contains(&format!("{k:?}")), "{why}");
        }
        let why = check_env(&e(&[("PATH", "/tmp/evil:/usr/bin")])).unwrap_err();
        assert!(why.contains("/tmp/evil"), "{why}");
        assert!(check_env(&e(&[("LINK", "a"), ("LINK", "b")])).is_err());
        assert!(check_env(&e(&[("IP4_ADDRESS_15", "a"), ("IP6_ADDRESS_0", "b")])).is_ok());
        for bad in [
            "IP4_ADDRESS_16",
            "IP4_ADDRESS_01",
            "IP4_ADDRESS_",
            "IP6_ADDRESS_1x",
        ] {
            assert!(check_env(&e(&[(bad, "a")])).is_err(), "{bad}");
        }
        // Every upper-case literal of event.rs's code (not its tests) is a
        // variable it may set.
        let src = include_str!("../core/event.rs");
        let code = &src[..src.find("#[cfg(test)]").unwrap_or(src.len())];
        let mut names = Vec::new();
        for part in code.split('"').skip(1).step_by(2) {
            if !part.is_empty()
                && part.bytes().next().is_some_and(|b| b.is_ascii_uppercase())
                && part
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
            {
                names.push(part);
            }
        }
        assert!(names.len() >= 20, "{names:?}");
        for n in names {
            assert!(
                hook_env_name(n.as_bytes()),
                "{n} is set for hooks but not in HOOK_ENV"
            );
        }
        assert!(
            code.contains(HOOK_PATH),
            "PATH in event.rs is not HOOK_PATH"
        );
    }

    #[test]
    fn descriptors_travel_with_messages() {
        let (a, b) = pair();
        let (r, w) = nix::unistd::pipe().unwrap();
        send(a.as_raw_fd(), b"hello", Some(w.as_raw_fd())).unwrap();
        drop(w);
        let mut buf = [0u8; 16];
        let (n, fd) = recv(b.as_raw_fd(), &mut buf).unwrap().unwrap();
        assert_eq!(&buf[..n], b"hello");
        let fd = fd.expect("a descriptor");
        nix::unistd::write(&fd, b"x").unwrap();
        drop(fd);
        let mut got = [0u8; 1];
        assert_eq!(nix::unistd::read(&r, &mut got).unwrap(), 1);
        drop(a);
        assert!(
            recv(b.as_raw_fd(), &mut buf).unwrap().is_none(),
            "end of file"
        );
    }
}
