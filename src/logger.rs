//! Logging through `log`: to stderr in the foreground, to syslog (daemon
//! facility) otherwise. The level can change at run time (reload).
//!
//! On stderr each line starts with the local time, unless stderr is
//! journald's stream (`JOURNAL_STREAM` names its device and inode), which
//! stamps lines itself. In the background without a syslog daemon, stderr
//! is kept open rather than pointed at /dev/null, so lines are not lost
//! without a word ([`daemonize`]).
//!
//! The loop must not stall on a log reader that stops reading. Syslog goes
//! through a non-blocking socket to /dev/log, and stderr, when it is a socket
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
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::Path;
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

/// A count and its noun, singular for one: `Count(1, "link")` is "1
/// link", `Count(3, "link")` "3 links". For nouns that take an `s`.
pub struct Count(pub u64, pub &'static str);

impl fmt::Display for Count {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = if self.0 == 1 { "" } else { "s" };
        write!(f, "{} {}{s}", self.0, self.1)
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

/// The syslog socket, /dev/log: a datagram socket (journald, rsyslog) or,
/// on some systems, a stream. Non-blocking either way.
enum SyslogSock {
    Dgram(UnixDatagram),
    Stream(UnixStream),
}

/// Syslog, RFC 3164 lines written here: `<30>Nov 27 09:41:07
/// netevd[812]: message`, every message sanitised first. (The syslog
/// crate formats the same line through the `time` crate, 30 KB of
/// binary for a time stamp.)
struct Syslog {
    sock: SyslogSock,
    pid: u32,
    dropped: AtomicU64,
}

/// The daemon facility (3) and the level's severity.
fn priority(l: log::Level) -> u8 {
    let severity = match l {
        log::Level::Error => 3,
        log::Level::Warn => 4,
        log::Level::Info => 6,
        log::Level::Debug | log::Level::Trace => 7,
    };
    3 * 8 + severity
}

impl Syslog {
    fn send(&self, level: log::Level, msg: &str) -> bool {
        let stamp = local_time(c"%b %e %H:%M:%S");
        let line = format!("<{}>{stamp} netevd[{}]: {msg}", priority(level), self.pid);
        match &self.sock {
            SyslogSock::Dgram(s) => matches!(s.send(line.as_bytes()), Ok(n) if n == line.len()),
            // A stream needs a delimiter; a line cut short by a full
            // socket is lost with its end, not merged with the next.
            SyslogSock::Stream(s) => {
                let flags = MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL;
                let line = line + "\n";
                matches!(send(s.as_raw_fd(), line.as_bytes(), flags), Ok(n) if n == line.len())
            }
        }
    }
}

impl Log for Syslog {
    fn enabled(&self, m: &Metadata) -> bool {
        m.level() <= log::max_level()
    }

    fn log(&self, r: &Record) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let dropped = self.dropped.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            let note = format!(
                "{} dropped: the log reader was not reading",
                Count(dropped, "log line")
            );
            if !self.send(log::Level::Warn, &note) {
                self.dropped.fetch_add(dropped, Ordering::Relaxed);
            }
        }
        let msg = r.args().to_string();
        if !self.send(r.level(), &sanitize(&msg)) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn flush(&self) {}
}

struct Stderr {
    socket: bool,
    /// Whether lines start with the time (not under journald).
    stamp: bool,
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
                "netevd: warning: {} dropped: the log reader was not reading\n",
                Count(dropped, "log line")
            ))
        {
            self.dropped.fetch_add(dropped, Ordering::Relaxed);
        }
        let msg = r.args().to_string();
        let stamp = if self.stamp {
            timestamp(std::time::SystemTime::now())
        } else {
            String::new()
        };
        let line = format!(
            "{stamp}netevd: {}: {}\n",
            level_name(r.level()),
            sanitize(&msg)
        );
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

/// The local time in strftime(3) `format`, from localtime_r(3) (the
/// zone from TZ or /etc/localtime); empty in the unlikely case that the C
/// library cannot tell.
fn local_time(format: &std::ffi::CStr) -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as nix::libc::time_t;
    format_time(secs, format)
}

fn format_time(secs: nix::libc::time_t, format: &std::ffi::CStr) -> String {
    let mut buf = [0u8; 32];
    // SAFETY: localtime_r writes only into `tm`; strftime writes at most
    // `buf.len()` bytes into `buf` and returns how many (0 on failure).
    let n = unsafe {
        let mut tm: nix::libc::tm = std::mem::zeroed();
        if nix::libc::localtime_r(&secs, &mut tm).is_null() {
            return String::new();
        }
        nix::libc::strftime(buf.as_mut_ptr().cast(), buf.len(), format.as_ptr(), &tm)
    };
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// `2026-11-27 09:41:07.123 `: the stamp of a line on stderr.
fn timestamp(t: std::time::SystemTime) -> String {
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let date = format_time(d.as_secs() as nix::libc::time_t, c"%Y-%m-%d %H:%M:%S");
    format!("{date}.{:03} ", d.subsec_millis())
}

/// Whether `JOURNAL_STREAM` (`<device>:<inode>`, set by systemd) names
/// the file on stderr: then journald reads it and stamps each line.
fn stderr_is_journal(journal_stream: Option<&str>) -> bool {
    let Some((dev, ino)) = journal_stream.and_then(|v| v.split_once(':')) else {
        return false;
    };
    // SAFETY: fd 2 stays open for the life of the process.
    let fd = unsafe { BorrowedFd::borrow_raw(2) };
    match (
        dev.parse::<nix::libc::dev_t>(),
        ino.parse::<nix::libc::ino_t>(),
        fstat(fd),
    ) {
        (Ok(d), Ok(i), Ok(st)) => st.st_dev == d && st.st_ino == i,
        _ => false,
    }
}

/// A syslog connection for the background, or None when no syslog daemon
/// listens on /dev/log. Made before going to the background, so that the
/// caller can still say so on stderr.
pub fn connect_syslog() -> Option<SyslogConn> {
    connect_syslog_at(Path::new("/dev/log"))
}

fn connect_syslog_at(path: &Path) -> Option<SyslogConn> {
    let sock = match UnixDatagram::unbound().and_then(|s| s.connect(path).map(|()| s)) {
        Ok(s) => SyslogSock::Dgram(s),
        // EPROTOTYPE: a stream socket there.
        Err(_) => SyslogSock::Stream(UnixStream::connect(path).ok()?),
    };
    let nonblocking = match &sock {
        SyslogSock::Dgram(s) => s.set_nonblocking(true),
        SyslogSock::Stream(s) => s.set_nonblocking(true),
    };
    nonblocking.ok()?;
    Some(SyslogConn(sock))
}

/// A connected syslog socket, not yet the logger.
pub struct SyslogConn(SyslogSock);

/// daemon(3): with a syslog, every standard descriptor goes to /dev/null;
/// without one, stderr stays where it was, so that log lines still reach
/// whoever started netevd.
pub fn daemonize(syslog: bool) -> nix::Result<()> {
    nix::unistd::daemon(false, !syslog)?;
    if !syslog {
        let null = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/null")
            .map_err(|e| nix::Error::from_raw(e.raw_os_error().unwrap_or(0)))?;
        for fd in [0, 1] {
            // SAFETY: dup2 onto the standard descriptors, which we own.
            if unsafe { nix::libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&null), fd) } < 0 {
                return Err(nix::Error::last());
            }
        }
    }
    Ok(())
}

/// Installs the logger: `syslog` when given (from [`connect_syslog`]),
/// stderr otherwise.
pub fn init(syslog: Option<SyslogConn>, level: LevelFilter) {
    log::set_max_level(level);
    if let Some(SyslogConn(sock)) = syslog {
        // The pid after daemon(3) forked.
        let _ = log::set_boxed_logger(Box::new(Syslog {
            sock,
            pid: std::process::id(),
            dropped: AtomicU64::new(0),
        }));
        return;
    }
    let journal = stderr_is_journal(std::env::var("JOURNAL_STREAM").ok().as_deref());
    let _ = log::set_boxed_logger(Box::new(Stderr {
        socket: stderr_is_socket(),
        stamp: !journal,
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

    #[test]
    fn counts_have_plurals() {
        assert_eq!(Count(0, "link").to_string(), "0 links");
        assert_eq!(Count(1, "link").to_string(), "1 link");
        assert_eq!(Count(2, "running hook").to_string(), "2 running hooks");
    }

    #[test]
    fn timestamps_read_as_a_date_and_time() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(1_795_772_467_089);
        let s = timestamp(t);
        // 2026-11-27 in any zone within a day of UTC; the milliseconds
        // are the zone's too.
        let b = s.as_bytes();
        assert!(s.starts_with("2026-11-2"), "{s}");
        assert_eq!(
            (b[4], b[7], b[10], b[13], b[16], b[19]),
            (b'-', b'-', b' ', b':', b':', b'.')
        );
        assert!(s.ends_with(".089 "), "{s}");
    }

    #[test]
    fn journal_stream_must_name_stderr() {
        assert!(!stderr_is_journal(None));
        assert!(!stderr_is_journal(Some("garbage")));
        assert!(!stderr_is_journal(Some("1:2")));
        // SAFETY: fd 2 is open in the test process.
        let st = fstat(unsafe { BorrowedFd::borrow_raw(2) }).unwrap();
        let ours = format!("{}:{}", st.st_dev, st.st_ino);
        assert!(stderr_is_journal(Some(&ours)));
    }

    #[test]
    fn syslog_lines_are_rfc_3164() {
        let dir = std::env::temp_dir().join(format!("netevd-log-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("log");
        let server = UnixDatagram::bind(&path).unwrap();
        let SyslogConn(sock) = connect_syslog_at(&path).unwrap();
        let l = Syslog {
            sock,
            pid: 812,
            dropped: AtomicU64::new(0),
        };
        log::set_max_level(LevelFilter::Info);
        l.log(
            &Record::builder()
                .args(format_args!("hook\nforged"))
                .level(log::Level::Warn)
                .build(),
        );
        let mut buf = [0u8; 256];
        let n = server.recv(&mut buf).unwrap();
        let line = std::str::from_utf8(&buf[..n]).unwrap();
        // <28>: daemon facility, warning; then "Nov 27 09:41:07 ".
        assert!(line.starts_with("<28>"), "{line}");
        assert_eq!(line.as_bytes()[10], b' ', "{line}");
        assert!(line.ends_with(" netevd[812]: hook\\nforged"), "{line}");
        assert_eq!(priority(log::Level::Info), 30);
        assert!(connect_syslog_at(&dir.join("none")).is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
