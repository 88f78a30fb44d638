//! Logging through `log`: to stderr in the foreground, to syslog (daemon
//! facility) otherwise. The level can change at run time (reload).
//!
//! The loop must not stall on a log reader that stops reading. Syslog goes
//! through a non-blocking datagram socket, and stderr, when it is a socket
//! (journald's stream under systemd), is written with `MSG_DONTWAIT`; a
//! line that finds the reader full is dropped and counted, and the next
//! line that gets through says how many were lost. A terminal, a pipe or a
//! file on stderr is written as usual.
//!
//! No log line can carry a raw control character: a newline in a hook's
//! file name, an escape sequence in a link name or a carriage return in a
//! hook's output would otherwise forge lines or rewrite a terminal. Callers
//! wrap untrusted bytes (names, hook output) in [`Esc`], which makes them
//! unambiguous; as a last line of defence the logger itself escapes any
//! control character left in a message.

use std::borrow::Cow;
use std::fmt;
use std::io::Write;
use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicU64, Ordering};

use log::{LevelFilter, Log, Metadata, Record};
use nix::sys::socket::{send, MsgFlags};
use nix::sys::stat::{fstat, SFlag};

/// Untrusted bytes made safe for one log line: `\\`, `\n`, `\r`, `\t`,
/// other control characters as `\xNN` (or `\u{NNNN}` beyond Latin-1), and
/// bytes that are not UTF-8 as `\xNN`. Printable text, non-ASCII letters
/// included, goes through unchanged. Backslashes are doubled so that the
/// escaped form cannot be confused with what a hook printed.
pub struct Esc<'a>(pub &'a [u8]);

impl fmt::Display for Esc<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for chunk in self.0.utf8_chunks() {
            for c in chunk.valid().chars() {
                match c {
                    '\\' => f.write_str("\\\\")?,
                    c => write_char(f, c)?,
                }
            }
            for b in chunk.invalid() {
                write!(f, "\\x{b:02x}")?;
            }
        }
        Ok(())
    }
}

/// Whether `c` must not reach a log line as is: C0 and C1 controls, DEL,
/// and the Unicode line and paragraph separators.
fn is_unsafe(c: char) -> bool {
    c.is_control() || c == '\u{2028}' || c == '\u{2029}'
}

fn write_char(f: &mut impl fmt::Write, c: char) -> fmt::Result {
    match c {
        '\n' => f.write_str("\\n"),
        '\r' => f.write_str("\\r"),
        '\t' => f.write_str("\\t"),
        c if is_unsafe(c) && (c as u32) < 0x100 => write!(f, "\\x{:02x}", c as u32),
        c if is_unsafe(c) => write!(f, "\\u{{{:04x}}}", c as u32),
        c => f.write_char(c),
    }
}

/// The message with every control character escaped (backslashes are left
/// alone: the message is the daemon's own text, and the untrusted parts in
/// it were already escaped with [`Esc`]).
pub fn sanitize(msg: &str) -> Cow<'_, str> {
    if !msg.chars().any(is_unsafe) {
        return Cow::Borrowed(msg);
    }
    let mut s = String::with_capacity(msg.len() + 16);
    for c in msg.chars() {
        let _ = write_char(&mut s, c);
    }
    Cow::Owned(s)
}

/// Syslog with every message sanitised first.
struct Syslog(syslog::BasicLogger);

impl Log for Syslog {
    fn enabled(&self, m: &Metadata) -> bool {
        self.0.enabled(m)
    }

    fn log(&self, r: &Record) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let msg = r.args().to_string();
        let msg = sanitize(&msg);
        self.0.log(
            &Record::builder()
                .args(format_args!("{msg}"))
                .level(r.level())
                .target(r.target())
                .build(),
        );
    }

    fn flush(&self) {
        self.0.flush()
    }
}

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
        let msg = r.args().to_string();
        let line = format!("netevd: {}: {}\n", level_name(r.level()), sanitize(&msg));
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
                let _ = log::set_boxed_logger(Box::new(Syslog(syslog::BasicLogger::new(w))));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn esc_makes_untrusted_bytes_one_unambiguous_line() {
        let cases: [(&[u8], &str); 9] = [
            (b"eth0", "eth0"),
            (
                b"10-a\nnetevd: error: forged",
                "10-a\\nnetevd: error: forged",
            ),
            (b"a\rb\tc", "a\\rb\\tc"),
            (b"\x1b[31mred", "\\x1b[31mred"),
            (b"del\x7f", "del\\x7f"),
            (b"back\\slash\\n", "back\\\\slash\\\\n"),
            (b"e\xffx", "e\\xffx"),
            ("caf\u{e9} \u{85}".as_bytes(), "caf\u{e9} \\x85"),
            ("a\u{2028}b".as_bytes(), "a\\u{2028}b"),
        ];
        for (raw, want) in cases {
            let got = Esc(raw).to_string();
            assert_eq!(got, want, "{raw:?}");
            assert!(!got.chars().any(is_unsafe), "{got:?}");
        }
    }

    #[test]
    fn sanitize_escapes_controls_only() {
        assert!(matches!(sanitize("plain \\ text"), Cow::Borrowed(_)));
        assert_eq!(sanitize("a\nb\x00c"), "a\\nb\\x00c");
        assert_eq!(sanitize("\u{9b}2J"), "\\x9b2J");
    }
}
