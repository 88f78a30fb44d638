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

/// The local time as `2026-11-27 09:41:07.123 `, from localtime_r(3)
/// (the zone from TZ or /etc/localtime); UTC with a `Z` when that fails.
fn timestamp(t: std::time::SystemTime) -> String {
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as nix::libc::time_t;
    let ms = d.subsec_millis();
    // SAFETY: localtime_r writes only into `tm`, which outlives the call.
    let mut tm: nix::libc::tm = unsafe { std::mem::zeroed() };
    let ok = !unsafe { nix::libc::localtime_r(&secs, &mut tm) }.is_null();
    if ok {
        return format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{ms:03} ",
            tm.tm_year + 1900,
            tm.tm_mon + 1,
            tm.tm_mday,
            tm.tm_hour,
            tm.tm_min,
            tm.tm_sec
        );
    }
    let s = d.as_secs();
    let (y, m, day) = civil(s / 86400);
    format!(
        "{y:04}-{m:02}-{day:02} {:02}:{:02}:{:02}.{ms:03}Z ",
        s / 3600 % 24,
        s / 60 % 60,
        s % 60
    )
}

/// Days since 1970-01-01 to (year, month, day): Howard Hinnant's
/// `civil_from_days`, for the proleptic Gregorian calendar.
fn civil(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + u64::from(m <= 2), m, d)
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
    let f = syslog::Formatter3164 {
        facility: syslog::Facility::LOG_DAEMON,
        hostname: None,
        process: "netevd".into(),
        // Set in `init`, after daemon(3) forked.
        pid: 0,
    };
    let w = syslog::unix(f).ok()?;
    let nonblocking = match &w.backend {
        syslog::LoggerBackend::Unix(s) => s.set_nonblocking(true),
        syslog::LoggerBackend::UnixStream(s) => s.get_ref().set_nonblocking(true),
        _ => Ok(()),
    };
    nonblocking.ok()?;
    Some(SyslogConn(w))
}

/// A connected syslog socket, not yet the logger.
pub struct SyslogConn(syslog::Logger<syslog::LoggerBackend, syslog::Formatter3164>);

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
    if let Some(SyslogConn(mut w)) = syslog {
        w.formatter.pid = std::process::id();
        let _ = log::set_boxed_logger(Box::new(Syslog(syslog::BasicLogger::new(w))));
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
    fn civil_dates() {
        assert_eq!(civil(0), (1970, 1, 1));
        assert_eq!(civil(59), (1970, 3, 1));
        assert_eq!(civil(11_016), (2000, 2, 29));
        assert_eq!(civil(20_784), (2026, 11, 27));
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
        assert!(s.ends_with(".089 ") || s.ends_with(".089Z "), "{s}");
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
}
