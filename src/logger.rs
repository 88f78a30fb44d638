//! Logging through `log`: to stderr in the foreground, to syslog (daemon
//! facility) otherwise. The level can change at run time (reload).
//!
//! The loop must not stall on a log reader that stops reading. Syslog goes
//! through a non-blocking datagram socket, and stderr, when it is a socket
//! (journald's stream under systemd), is written with `MSG_DONTWAIT`; a
//! line that finds the reader full is dropped and counted, and the next
//! line that gets through says how many were lost. A terminal, a pipe or a
//! file on stderr is written as usual.

use std::io::Write;
use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicU64, Ordering};

use log::{LevelFilter, Log, Metadata, Record};
use nix::sys::socket::{send, MsgFlags};
use nix::sys::stat::{fstat, SFlag};

struct Stderr {
    socket: bool,
    dropped: AtomicU64,
}

fn level_name(l: log::Level) -> &'static str {
    match l {
        log::Level::Error => "error",
        log::Level::Warn => "warning",
        log::Level::Info => "info",
        log::Level::Debug => "debug",
        log::Level::Trace => "trace",
    }
}

impl Stderr {
    /// One write per line, so lines from several sources never mix.
    fn write_line(&self, line: &str) -> bool {
        if !self.socket {
            return std::io::stderr().lock().write_all(line.as_bytes()).is_ok();
        }
        let flags = MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL;
        matches!(send(2, line.as_bytes(), flags), Ok(n) if n == line.len())
    }
}

impl Log for Stderr {
    fn enabled(&self, m: &Metadata) -> bool {
        m.level() <= log::max_level()
    }

    fn log(&self, r: &Record) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let dropped = self.dropped.swap(0, Ordering::Relaxed);
        if dropped > 0
            && !self.write_line(&format!(
                "netevd: warning: {dropped} log lines dropped: the log reader was not reading\n"
            ))
        {
            self.dropped.fetch_add(dropped, Ordering::Relaxed);
        }
        let line = format!("netevd: {}: {}\n", level_name(r.level()), r.args());
        if !self.write_line(&line) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn flush(&self) {}
}

fn stderr_is_socket() -> bool {
    // SAFETY: fd 2 stays open for the life of the process.
    let fd = unsafe { BorrowedFd::borrow_raw(2) };
    fstat(fd)
        .map(|st| SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFSOCK)
        .unwrap_or(false)
}

pub fn init(foreground: bool, level: LevelFilter) {
    log::set_max_level(level);
    if !foreground {
        let f = syslog::Formatter3164 {
            facility: syslog::Facility::LOG_DAEMON,
            hostname: None,
            process: "netevd".into(),
            pid: std::process::id(),
        };
        if let Ok(w) = syslog::unix(f) {
            let nonblocking = match &w.backend {
                syslog::LoggerBackend::Unix(s) => s.set_nonblocking(true),
                syslog::LoggerBackend::UnixStream(s) => s.get_ref().set_nonblocking(true),
                _ => Ok(()),
            };
            if nonblocking.is_ok() {
                let _ = log::set_boxed_logger(Box::new(syslog::BasicLogger::new(w)));
                return;
            }
        }
    }
    let _ = log::set_boxed_logger(Box::new(Stderr {
        socket: stderr_is_socket(),
        dropped: AtomicU64::new(0),
    }));
}

pub fn set_level(level: LevelFilter) {
    log::set_max_level(level);
}
