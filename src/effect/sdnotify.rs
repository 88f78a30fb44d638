//! The service manager's notification protocol (sd_notify(3)) without
//! libsystemd: one datagram per state change to the `AF_UNIX` socket named
//! in `NOTIFY_SOCKET` (a path, or `@name` for the abstract namespace).
//! `READY=1` after the first dump, `RELOADING=1` + `MONOTONIC_USEC` then
//! `READY=1` around a reload, `STOPPING=1`, and `WATCHDOG=1` at half of
//! `WATCHDOG_USEC` from the loop's timer heap (`next_watchdog`), so a hung
//! loop is restarted.
//!
//! The socket is connected at start, before the drop to `system.user`:
//! the kernel checks write permission on a socket path at connect(2), so
//! the unprivileged loop can still notify through a root-only socket.
//!
//! Sends never block (a full socket drops the message, as libsystemd
//! does) and never fail the daemon: without `NOTIFY_SOCKET` every call is
//! a no-op. The variables are taken out of the environment at start, so
//! hooks do not inherit them (they start from a clean environment anyway).

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::{Duration, Instant};

pub struct Notify {
    /// The socket, and the address to send to when it could not be
    /// connected.
    sock: Option<(UnixDatagram, SocketAddr)>,
    connected: bool,
    /// Half the watchdog interval, when the manager asked for one.
    watchdog: Option<Duration>,
    next_watchdog: Option<Instant>,
}

/// The address in `NOTIFY_SOCKET`: an absolute path, or `@` for the
/// abstract namespace.
fn address(v: &str) -> Option<SocketAddr> {
    if let Some(name) = v.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        return SocketAddr::from_abstract_name(name.as_bytes()).ok();
    }
    if v.starts_with('/') {
        return SocketAddr::from_pathname(v).ok();
    }
    None
}

/// `WATCHDOG_USEC` as a duration, if it is meant for this process.
fn watchdog(usec: Option<&str>, pid: Option<&str>, me: u32) -> Option<Duration> {
    if let Some(p) = pid {
        if p.trim().parse::<u32>().ok() != Some(me) {
            return None;
        }
    }
    let us: u64 = usec?.trim().parse().ok()?;
    (us > 0).then(|| Duration::from_micros(us / 2))
}

impl Notify {
    /// Reads and removes `NOTIFY_SOCKET`, `WATCHDOG_USEC` and
    /// `WATCHDOG_PID`. Call before any thread exists (it changes the
    /// environment).
    pub fn from_env(now: Instant) -> Notify {
        let var = |k: &str| std::env::var(k).ok();
        let sock = var("NOTIFY_SOCKET").and_then(|v| {
            let addr = address(&v);
            if addr.is_none() {
                log::warn!("NOTIFY_SOCKET={v:?} is not a socket address: not notifying");
            }
            let s = UnixDatagram::unbound().ok()?;
            s.set_nonblocking(true).ok()?;
            Some((s, addr?))
        });
        let connected = sock
            .as_ref()
            .is_some_and(|(s, a)| s.connect_addr(a).is_ok());
        let wd = watchdog(
            var("WATCHDOG_USEC").as_deref(),
            var("WATCHDOG_PID").as_deref(),
            std::process::id(),
        );
        for k in ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"] {
            // Single-threaded at start (see above), so no one reads it.
            std::env::remove_var(k);
        }
        Notify {
            connected,
            watchdog: wd.filter(|_| sock.is_some()),
            next_watchdog: wd.filter(|_| sock.is_some()).map(|d| now + d),
            sock,
        }
    }

    fn send(&self, msg: &str) {
        if let Some((s, addr)) = &self.sock {
            let r = if self.connected {
                s.send(msg.as_bytes())
            } else {
                s.send_to_addr(msg.as_bytes(), addr)
            };
            if let Err(e) = r {
                log::debug!("sd_notify {msg:?}: {e}");
            }
        }
    }

    pub fn ready(&self) {
        self.send("READY=1");
    }

    pub fn stopping(&self) {
        self.send("STOPPING=1");
    }

    /// Before a reload; [`Notify::ready`] after it. `MONOTONIC_USEC` is what
    /// `Type=notify-reload` wants with it.
    pub fn reloading(&self) {
        if self.sock.is_none() {
            return;
        }
        let mut t = nix::libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes one timespec.
        unsafe { nix::libc::clock_gettime(nix::libc::CLOCK_MONOTONIC, &mut t) };
        let ts = t.tv_sec as u64 * 1_000_000 + t.tv_nsec as u64 / 1000;
        self.send(&format!("RELOADING=1\nMONOTONIC_USEC={ts}"));
    }

    /// When the next `WATCHDOG=1` is due.
    pub fn next_watchdog(&self) -> Option<Instant> {
        self.next_watchdog
    }

    /// The watchdog timer fired: ping, and arm the next.
    pub fn on_watchdog(&mut self, now: Instant) {
        if let Some(d) = self.watchdog {
            self.send("WATCHDOG=1");
            self.next_watchdog = Some(now + d);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_watchdog() {
        assert!(address("/run/systemd/notify").is_some());
        assert!(address("@abstract").is_some());
        assert!(address("relative").is_none());
        assert!(address("").is_none());
        assert_eq!(
            watchdog(Some("2000000"), None, 1),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            watchdog(Some("2000000"), Some("7"), 7),
            Some(Duration::from_secs(1))
        );
        assert_eq!(watchdog(Some("2000000"), Some("8"), 7), None);
        assert_eq!(watchdog(Some("0"), None, 7), None);
        assert_eq!(watchdog(Some("x"), None, 7), None);
        assert_eq!(watchdog(None, None, 7), None);
    }

    #[test]
    fn datagrams_arrive() {
        let p = std::env::temp_dir().join(format!("netevd-notify-{}", std::process::id()));
        let _ = std::fs::remove_file(&p);
        let rx = UnixDatagram::bind(&p).unwrap();
        let tx = UnixDatagram::unbound().unwrap();
        let n = Notify {
            sock: Some((tx, SocketAddr::from_pathname(&p).unwrap())),
            connected: false,
            watchdog: Some(Duration::from_secs(1)),
            next_watchdog: None,
        };
        n.ready();
        n.reloading();
        let mut buf = [0u8; 128];
        let k = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..k], b"READY=1");
        let k = rx.recv(&mut buf).unwrap();
        assert!(buf[..k].starts_with(b"RELOADING=1\nMONOTONIC_USEC="));
        let mut n = n;
        let t = Instant::now();
        n.on_watchdog(t);
        assert_eq!(n.next_watchdog(), Some(t + Duration::from_secs(1)));
        let k = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..k], b"WATCHDOG=1");
        std::fs::remove_file(&p).unwrap();
    }
}
