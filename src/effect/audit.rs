//! The audit log: one JSON object a line, appended to `audit.path`, for
//! state changes, hook runs, control requests, reloads and policy-routing
//! changes. This module formats lines into a bounded buffer, writes them
//! out from the loop, rotates the file by size, reopens it on SIGUSR1, and
//! answers `audit` queries from the file and its rotated copies.
//!
//! The loop must never wait for the disk, and O_NONBLOCK means nothing to
//! a regular file, so the bound is on the work instead:
//! - A line goes into a buffer of at most [`BUFFER`] bytes; when it is
//!   full, the line is dropped and counted (`netevd_audit_dropped_total`),
//!   and the log says so once per episode, not once per line.
//! - At most [`CHUNK`] bytes are written per turn of the loop, in one
//!   write(2), ending at a line's end; what is left waits for the next
//!   turn (the reactor's `Again` timer).
//! - A failed write (ENOSPC, EIO, a file that cannot be opened) keeps the
//!   bytes, logs once, and tries again [`RETRY`] later; meanwhile new lines
//!   fill the buffer and are then dropped. When writing works again, one
//!   `{"kind":"audit","dropped":N}` line records the gap.
//!
//! Rotation is netevd's own, so no other program needs to take part:
//! before a write would take the file past `audit.max_size`, `path.N`
//! moves to `path.N+1` (up to `audit.keep`), `path` to `path.1`, and a new
//! `path` is opened; rotated files older than `audit.retention_days` are
//! removed then. For logrotate, SIGUSR1 makes netevd reopen `path`.
//!
//! Queries read at most [`QUERY_BYTES`] of files per request, newest file
//! first when asking for the newest lines, so the usual short query reads
//! only the current file.
//!
//! A build without the cargo feature `audit` keeps this type and its
//! calls, but every entry point returns at once (`cfg!` checks the
//! optimiser folds), so none of the writing, rotating or reading is in
//! the binary; the config reports an enabled `audit` section as not
//! active.

use std::ffi::{CString, OsString};
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use nix::libc;
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;

use crate::config::AuditSettings;

/// Bytes of lines waiting to be written, at most (one line may pass it).
pub const BUFFER: usize = 1 << 20;
/// Bytes written per turn of the loop, at most (a longer single line is
/// written whole).
pub const CHUNK: usize = 64 << 10;
/// How soon a failed write or open is tried again.
pub const RETRY: Duration = Duration::from_secs(1);
/// Bytes of audit files one query may read.
pub const QUERY_BYTES: u64 = 16 << 20;
/// Lines one query may return.
pub const QUERY_LIMIT: usize = 10_000;
/// A line longer than this in a file is skipped by queries.
const MAX_LINE: usize = 1 << 20;

#[derive(Default, Debug, Clone, Copy)]
pub struct Stats {
    /// Lines taken into the buffer.
    pub lines: u64,
    /// Lines dropped because the buffer was full.
    pub dropped: u64,
    pub write_errors: u64,
    pub rotations: u64,
}

pub struct Audit {
    settings: AuditSettings,
    file: Option<File>,
    /// The open file's size, as far as this process wrote it.
    size: u64,
    buf: Vec<u8>,
    /// `buf[head..]` is still to be written.
    head: usize,
    /// The last write ended inside a line: no rotation until it is whole.
    mid_line: bool,
    /// Nothing is tried before this, after a failure.
    blocked_until: Option<Instant>,
    /// The failure being reported, so it is logged once.
    failing: bool,
    /// Lines dropped since writing last worked.
    dropping: u64,
    pub stats: Stats,
}

/// One line being written into the buffer; [`LineWriter::end`] closes it.
pub struct LineWriter<'a> {
    buf: &'a mut Vec<u8>,
}

impl LineWriter<'_> {
    fn key(&mut self, k: &str) {
        self.buf.extend_from_slice(b",\"");
        self.buf.extend_from_slice(k.as_bytes());
        self.buf.extend_from_slice(b"\":");
    }

    pub fn str(self, k: &str, v: &str) -> Self {
        let mut s = self;
        s.key(k);
        // Writing JSON to a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *s.buf, v);
        s
    }

    pub fn opt_str(self, k: &str, v: Option<&str>) -> Self {
        match v {
            Some(v) => self.str(k, v),
            None => self.raw(k, "null"),
        }
    }

    /// A number, formatted in place (no allocation: this runs per event).
    pub fn num(self, k: &str, v: impl Into<i64>) -> Self {
        let mut s = self;
        s.key(k);
        let _ = write!(s.buf, "{}", v.into());
        s
    }

    /// An unsigned number that may not fit an i64 (ids, times).
    pub fn unum(self, k: &str, v: u64) -> Self {
        let mut s = self;
        s.key(k);
        let _ = write!(s.buf, "{v}");
        s
    }

    pub fn opt_num(self, k: &str, v: Option<impl Into<i64>>) -> Self {
        match v {
            Some(v) => self.num(k, v),
            None => self.raw(k, "null"),
        }
    }

    /// A string known to need no escaping (the daemon's own names).
    pub fn name(self, k: &str, v: &'static str) -> Self {
        debug_assert!(v
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\'));
        let mut s = self;
        s.key(k);
        s.buf.push(b'"');
        s.buf.extend_from_slice(v.as_bytes());
        s.buf.push(b'"');
        s
    }

    pub fn bool(self, k: &str, v: bool) -> Self {
        self.raw(k, if v { "true" } else { "false" })
    }

    pub fn strs<'s>(self, k: &str, v: impl IntoIterator<Item = &'s str>) -> Self {
        let mut s = self;
        s.key(k);
        s.buf.push(b'[');
        for (i, x) in v.into_iter().enumerate() {
            if i > 0 {
                s.buf.push(b',');
            }
            let _ = serde_json::to_writer(&mut *s.buf, x);
        }
        s.buf.push(b']');
        s
    }

    /// `v` must be valid JSON.
    fn raw(self, k: &str, v: &str) -> Self {
        let mut s = self;
        s.key(k);
        s.buf.extend_from_slice(v.as_bytes());
        s
    }

    pub fn end(self) {
        self.buf.extend_from_slice(b"}\n");
    }
}

/// What an `audit` query asks for; every field narrows.
#[derive(Clone, Debug, Default)]
pub struct Query {
    /// Milliseconds since the epoch, inclusive.
    pub since_ms: Option<u64>,
    pub until_ms: Option<u64>,
    pub kind: Option<String>,
    /// A link's name, or its index.
    pub link: Option<netevd_ctl::LinkRef>,
    pub limit: usize,
}

impl Query {
    fn matches(&self, v: &Value) -> bool {
        let t = v.get("time_ms").and_then(Value::as_u64).unwrap_or(0);
        if self.since_ms.is_some_and(|s| t < s) || self.until_ms.is_some_and(|u| t > u) {
            return false;
        }
        if let Some(k) = &self.kind {
            if v.get("kind").and_then(Value::as_str) != Some(k) {
                return false;
            }
        }
        match &self.link {
            None => true,
            Some(netevd_ctl::LinkRef::Name(n)) => {
                v.get("link").and_then(Value::as_str) == Some(n.as_str())
            }
            Some(netevd_ctl::LinkRef::Index(i)) => {
                v.get("ifindex").and_then(Value::as_u64) == Some(*i as u64)
            }
        }
    }
}

/// A query's answer: the lines in time order, and whether the byte budget
/// stopped it before it had looked at everything.
pub struct Answer {
    pub lines: Vec<Value>,
    pub truncated: bool,
}

impl Audit {
    pub fn new(settings: AuditSettings) -> Self {
        Audit {
            settings,
            file: None,
            size: 0,
            buf: Vec::new(),
            head: 0,
            mid_line: false,
            blocked_until: None,
            failing: false,
            dropping: 0,
            stats: Stats::default(),
        }
    }

    pub fn enabled(&self) -> bool {
        cfg!(feature = "audit") && self.settings.enabled
    }

    pub fn path(&self) -> &Path {
        &self.settings.path
    }

    /// New settings on reload: a new path is opened at the next write;
    /// turned off, what is buffered is still written (one chunk now, the
    /// rest by the usual flushes), then the file is closed.
    pub fn set_settings(&mut self, s: AuditSettings) {
        if s.path != self.settings.path || !s.enabled {
            self.finish_pending();
        }
        if s.path != self.settings.path {
            self.file = None;
            self.blocked_until = None;
        }
        if !s.enabled && self.pending() == 0 {
            // Off: the file is not held open (logrotate may remove it).
            self.file = None;
        }
        self.settings = s;
    }

    /// Writes what is buffered for the old path before it changes, within
    /// the usual bound; the rest goes to the new path.
    fn finish_pending(&mut self) {
        if self.pending() > 0 {
            self.flush(Instant::now());
        }
    }

    /// Starts a line of `kind` at `time_ms`, or None when the log is off
    /// or the buffer is full (then the line is counted as dropped).
    pub fn line(&mut self, kind: &'static str, time_ms: u64) -> Option<LineWriter<'_>> {
        if !self.enabled() {
            return None;
        }
        if self.pending() >= BUFFER {
            self.stats.dropped += 1;
            if self.dropping == 0 {
                log::warn!(
                    "audit: {} bytes wait to be written to {}; dropping lines until it takes \
                     them (counted in netevd_audit_dropped_total)",
                    self.pending(),
                    self.settings.path.display()
                );
            }
            self.dropping += 1;
            return None;
        }
        self.stats.lines += 1;
        let _ = write!(self.buf, "{{\"time_ms\":{time_ms}");
        let w = LineWriter { buf: &mut self.buf };
        Some(w.name("kind", kind))
    }

    /// Bytes waiting to be written.
    pub fn pending(&self) -> usize {
        self.buf.len() - self.head
    }

    /// When the reactor should call [`Audit::flush`]: now when lines wait,
    /// later after a failure, never when nothing waits.
    pub fn next_flush(&self, now: Instant) -> Option<Instant> {
        if self.pending() == 0 {
            return None;
        }
        Some(self.blocked_until.map_or(now, |t| t.max(now)))
    }

    /// At shutdown: writes what is buffered, a chunk at a time, until it
    /// is all out or a write fails.
    pub fn flush_all(&mut self) {
        let now = Instant::now();
        self.blocked_until = None;
        for _ in 0..=BUFFER / CHUNK + 1 {
            if self.pending() == 0 || self.blocked_until.is_some() {
                break;
            }
            self.flush(now);
        }
    }

    /// Reopens the file (SIGUSR1: logrotate moved it away).
    pub fn reopen(&mut self) {
        if self.file.take().is_some() {
            log::info!("audit: reopening {}", self.settings.path.display());
        }
        self.blocked_until = None;
    }

    /// Writes at most [`CHUNK`] bytes, ending at a line's end.
    pub fn flush(&mut self, now: Instant) {
        if !cfg!(feature = "audit")
            || self.pending() == 0
            || self.blocked_until.is_some_and(|t| t > now)
        {
            return;
        }
        self.blocked_until = None;
        if self.file.is_none() {
            if let Err(e) = self.open() {
                self.fail(
                    now,
                    format!("cannot open {}: {e}", self.settings.path.display()),
                );
                return;
            }
        }
        let end = self.chunk_end();
        let len = (end - self.head) as u64;
        if !self.mid_line && self.size > 0 && self.size + len > self.settings.max_size {
            if let Err(e) = self.rotate() {
                self.fail(
                    now,
                    format!("cannot rotate {}: {e}", self.settings.path.display()),
                );
                return;
            }
        }
        let Some(f) = self.file.as_mut() else {
            return;
        };
        match f.write(&self.buf[self.head..end]) {
            Ok(0) => self.fail(now, "write took nothing".into()),
            Ok(n) => {
                self.head += n;
                self.size += n as u64;
                self.mid_line = self.buf[self.head - 1] != b'\n';
                self.recovered();
                self.compact();
                if !self.settings.enabled && self.pending() == 0 {
                    self.file = None;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => self.fail(
                now,
                format!("cannot write {}: {e}", self.settings.path.display()),
            ),
        }
    }

    /// The end of this turn's chunk: the last newline within [`CHUNK`],
    /// or the end of a line longer than that.
    fn chunk_end(&self) -> usize {
        let limit = (self.head + CHUNK).min(self.buf.len());
        let window = &self.buf[self.head..limit];
        match window.iter().rposition(|&b| b == b'\n') {
            Some(i) => self.head + i + 1,
            None => self.buf[limit..]
                .iter()
                .position(|&b| b == b'\n')
                .map_or(self.buf.len(), |i| limit + i + 1),
        }
    }

    fn compact(&mut self) {
        if self.head == self.buf.len() {
            self.buf.clear();
            self.head = 0;
            if self.buf.capacity() > 4 * CHUNK {
                // A burst is over: give its memory back.
                self.buf = Vec::new();
            }
        } else if self.head > self.buf.len() / 2 {
            self.buf.drain(..self.head);
            self.head = 0;
        }
    }

    fn fail(&mut self, now: Instant, what: String) {
        self.stats.write_errors += 1;
        self.blocked_until = Some(now + RETRY);
        // The file may be gone or broken: open it again next time.
        self.file = None;
        if !self.failing {
            self.failing = true;
            log::error!(
                "audit: {what}; keeping up to {} KiB of lines and trying again every {} s",
                BUFFER >> 10,
                RETRY.as_secs()
            );
        }
    }

    fn recovered(&mut self) {
        if !self.failing && self.dropping == 0 {
            return;
        }
        let dropped = self.dropping;
        log::info!(
            "audit: writing to {} again{}",
            self.settings.path.display(),
            if dropped > 0 {
                format!("; {dropped} lines were dropped meanwhile")
            } else {
                String::new()
            }
        );
        self.failing = false;
        self.dropping = 0;
        if dropped > 0 {
            if let Some(l) = self.line("audit", wall_ms()) {
                l.unum("dropped", dropped).end();
            }
        }
    }

    fn open(&mut self) -> io::Result<()> {
        let (f, len) = AuditDir::open(&self.settings.path, true)?.open_file(0, true)?;
        self.size = len;
        self.file = Some(f);
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.file = None;
        let path = self.settings.path.clone();
        let keep = self.settings.keep;
        let dir = AuditDir::open(&path, true)?;
        if keep == 0 {
            dir.unlink(0).or_else(not_found_ok)?;
        } else {
            for i in (1..keep).rev() {
                dir.rename(i, i + 1).or_else(not_found_ok)?;
            }
            dir.rename(0, 1)?;
        }
        // Numbers past `keep` (left by a larger `keep` before a reload).
        let mut i = keep + 1;
        while dir.unlink(i).is_ok() {
            i += 1;
        }
        if let Some(days) = self.settings.retention_days {
            let max_age = Duration::from_secs(u64::from(days) * 86400);
            for i in 1..=keep {
                let old = dir
                    .mtime(i)
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age > max_age);
                if old {
                    let _ = dir.unlink(i);
                }
            }
        }
        self.stats.rotations += 1;
        log::info!("audit: rotated {}", path.display());
        self.open()
    }

    /// Answers a query from the rotated files, the current one and what
    /// is not written yet.
    pub fn query(&self, q: &Query) -> Answer {
        if !cfg!(feature = "audit") {
            return Answer {
                lines: Vec::new(),
                truncated: false,
            };
        }
        let limit = q.limit.clamp(1, QUERY_LIMIT);
        // Oldest first: path.keep .. path.1, then path (0).
        let mut files: Vec<u32> = (1..=self.settings.keep).rev().collect();
        files.push(0);
        // No directory (yet), or one reached through a link no one
        // trusted made: the files are not read, what is buffered is.
        let dir = AuditDir::open(&self.settings.path, false).ok();
        let pending = &self.buf[self.head..];
        let mut budget = QUERY_BYTES;
        let mut truncated = false;
        if q.since_ms.is_some() {
            // The first `limit` lines from `since` on: oldest file first,
            // skipping files last written before `since`.
            let mut out = Vec::new();
            for &n in files.iter().filter(|_| dir.is_some()) {
                let Some(dir) = dir.as_ref() else { break };
                if out.len() >= limit {
                    break;
                }
                let stale = dir
                    .mtime(n)
                    .is_some_and(|t| ms_of(t) < q.since_ms.unwrap_or(0));
                if stale {
                    continue;
                }
                if let Ok((f, _)) = dir.open_file(n, false) {
                    truncated |= scan(f, q, limit, &mut budget, &mut out, false);
                }
            }
            if out.len() < limit {
                scan(pending, q, limit, &mut budget, &mut out, false);
            }
            out.truncate(limit);
            return Answer {
                lines: out,
                truncated,
            };
        }
        // The newest `limit`: the newest file first, each scanned forward
        // keeping its last matches.
        let mut parts: Vec<Vec<Value>> = Vec::new();
        let mut have = 0;
        let mut part = Vec::new();
        scan(pending, q, limit, &mut budget, &mut part, true);
        have += part.len();
        parts.push(part);
        for &n in files.iter().rev() {
            let Some(dir) = dir.as_ref() else { break };
            if have >= limit {
                break;
            }
            let Ok((f, len)) = dir.open_file(n, false) else {
                continue;
            };
            // The newest lines are a file's last: a file larger than what
            // is left to read is read from that far before its end (the
            // line cut there skipped), not from its start.
            let f = match tail(f, len, budget) {
                Ok((f, cut)) => {
                    truncated |= cut;
                    f
                }
                Err(_) => continue,
            };
            let mut part = Vec::new();
            truncated |= scan(f, q, limit - have, &mut budget, &mut part, true);
            have += part.len();
            parts.push(part);
            if truncated {
                break;
            }
        }
        let lines = parts.into_iter().rev().flatten().collect();
        Answer { lines, truncated }
    }
}

/// `f` (of `len` bytes) positioned at its last `budget` bytes, from the
/// first whole line there; true when something before was left out.
fn tail(mut f: File, len: u64, budget: u64) -> io::Result<(BufReader<File>, bool)> {
    use std::io::{Seek, SeekFrom};
    if len <= budget {
        return Ok((BufReader::with_capacity(64 << 10, f), false));
    }
    f.seek(SeekFrom::Start(len - budget))?;
    let mut rd = BufReader::with_capacity(64 << 10, f);
    // The line cut by the seek, discarded without keeping it (it may be
    // megabytes long).
    loop {
        let buf = rd.fill_buf()?;
        if buf.is_empty() {
            break;
        }
        match buf.iter().position(|&b| b == b'\n') {
            Some(i) => {
                rd.consume(i + 1);
                break;
            }
            None => {
                let n = buf.len();
                rd.consume(n);
            }
        }
    }
    Ok((rd, true))
}

/// Reads `r` line by line within `budget` bytes, appending the matches to
/// `out`: the first ones until `out` holds `limit`, or with `last` the
/// last `limit` of them. True when the budget ran out first.
fn scan(
    r: impl Read,
    q: &Query,
    limit: usize,
    budget: &mut u64,
    out: &mut Vec<Value>,
    last: bool,
) -> bool {
    let mut rd = BufReader::with_capacity(64 << 10, r.take(*budget + 1));
    let mut line = Vec::new();
    let needle = q.kind.as_ref().map(|k| format!("\"kind\":\"{k}\""));
    let mut ring = std::collections::VecDeque::new();
    let mut read = 0u64;
    loop {
        line.clear();
        let n = match rd.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        read += n as u64;
        if read > *budget {
            *budget = 0;
            out.extend(ring);
            return true;
        }
        if line.len() > MAX_LINE || line.last() != Some(&b'\n') {
            continue;
        }
        // Most lines are not of the kind asked for: skip them unparsed.
        if let Some(nd) = &needle {
            if !line.windows(nd.len()).any(|w| w == nd.as_bytes()) {
                continue;
            }
        }
        let Ok(v) = serde_json::from_slice::<Value>(&line) else {
            continue;
        };
        if !q.matches(&v) {
            continue;
        }
        if last {
            if ring.len() == limit {
                ring.pop_front();
            }
            ring.push_back(v);
        } else {
            out.push(v);
            if out.len() >= limit {
                break;
            }
        }
    }
    *budget -= read.min(*budget);
    out.extend(ring);
    false
}

/// The directory of `audit.path`, held open, and the file's name in it:
/// every audit file is opened, renamed and removed relative to it. The
/// directory may be one others can write (`audit.path` is the
/// administrator's choice, and fs.protected_symlinks may be off), and
/// netevd must never follow a symbolic link it did not make into writing
/// somewhere else. So:
/// - the directory is reached one component at a time from `/`, each
///   opened with O_NOFOLLOW; a symbolic link on the way is followed only
///   if root or netevd's own user owns it (as /var/run -> /run), checked
///   on a descriptor of the link itself, so it cannot be swapped between
///   the check and the use; missing directories are made (mode 0750)
///   when writing;
/// - a file is opened only if it is a regular file with one name there:
///   not a symbolic link (O_NOFOLLOW: /etc/shadow), not a FIFO, whose
///   open(2) would wait for the other end for ever and stop the loop
///   (O_NONBLOCK, then the type checked on the descriptor), not a second
///   name of another file (a hard link, where fs.protected_hardlinks is
///   off).
struct AuditDir {
    fd: OwnedFd,
    name: OsString,
}

/// The most symbolic links followed on the way to the directory.
const MAX_LINKS: u32 = 40;

fn cstr(b: &[u8]) -> io::Result<CString> {
    CString::new(b).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL in the path"))
}

fn fstat(fd: RawFd) -> io::Result<libc::stat> {
    // SAFETY: fstat fills a zeroed struct from a descriptor we hold.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(fd, &mut st) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st)
}

/// openat(2) returning an owned descriptor.
fn openat(dir: RawFd, name: &CString, flags: i32, mode: libc::mode_t) -> io::Result<OwnedFd> {
    // SAFETY: a valid C string; the result is checked before use.
    let fd = unsafe { libc::openat(dir, name.as_ptr(), flags | libc::O_CLOEXEC, mode) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

impl AuditDir {
    fn open(path: &Path, create: bool) -> io::Result<AuditDir> {
        let bad = |what: &str| io::Error::other(format!("{}: {what}", path.display()));
        let name = path
            .file_name()
            .ok_or_else(|| bad("no file name"))?
            .to_os_string();
        let dir = path
            .parent()
            .filter(|d| d.is_absolute())
            .ok_or_else(|| bad("not absolute"))?;
        // SAFETY: geteuid cannot fail.
        let me = unsafe { libc::geteuid() };
        let root = cstr(b"/")?;
        let mut fd = openat(libc::AT_FDCWD, &root, libc::O_PATH | libc::O_DIRECTORY, 0)?;
        let mut todo: std::collections::VecDeque<OsString> =
            dir.iter().skip(1).map(|c| c.to_os_string()).collect();
        let mut links = 0;
        while let Some(c) = todo.pop_front() {
            let cname = cstr(c.as_bytes())?;
            let f = match openat(fd.as_raw_fd(), &cname, libc::O_PATH | libc::O_NOFOLLOW, 0) {
                Err(e) if create && e.kind() == io::ErrorKind::NotFound => {
                    // SAFETY: a valid C string relative to a directory we hold.
                    if unsafe { libc::mkdirat(fd.as_raw_fd(), cname.as_ptr(), 0o750) } < 0 {
                        let e = io::Error::last_os_error();
                        if e.kind() != io::ErrorKind::AlreadyExists {
                            return Err(e);
                        }
                    }
                    todo.push_front(c);
                    continue;
                }
                r => r?,
            };
            let st = fstat(f.as_raw_fd())?;
            match st.st_mode & libc::S_IFMT {
                libc::S_IFDIR => fd = f,
                libc::S_IFLNK => {
                    if st.st_uid != 0 && st.st_uid != me {
                        return Err(bad(&format!(
                            "{} on the way is a symbolic link owned by uid {}, not root: not followed",
                            c.to_string_lossy(),
                            st.st_uid
                        )));
                    }
                    links += 1;
                    if links > MAX_LINKS {
                        return Err(bad("too many symbolic links on the way"));
                    }
                    let mut buf = vec![0u8; libc::PATH_MAX as usize];
                    // SAFETY: readlinkat on the link's own O_PATH
                    // descriptor (empty name) into our buffer.
                    let n = unsafe {
                        libc::readlinkat(
                            f.as_raw_fd(),
                            c"".as_ptr(),
                            buf.as_mut_ptr().cast(),
                            buf.len(),
                        )
                    };
                    if n < 0 {
                        return Err(io::Error::last_os_error());
                    }
                    buf.truncate(n as usize);
                    let target = PathBuf::from(OsString::from_vec(buf));
                    let mut parts: Vec<OsString> = target
                        .iter()
                        .filter(|p| *p != "/")
                        .map(|p| p.to_os_string())
                        .collect();
                    if target.is_absolute() {
                        fd = openat(libc::AT_FDCWD, &root, libc::O_PATH | libc::O_DIRECTORY, 0)?;
                    }
                    while let Some(p) = parts.pop() {
                        todo.push_front(p);
                    }
                }
                _ => {
                    return Err(bad(&format!(
                        "{} on the way is not a directory",
                        c.to_string_lossy()
                    )))
                }
            }
        }
        Ok(AuditDir { fd, name })
    }

    /// The file's name (0) or that of its rotated copy `n`.
    fn name(&self, n: u32) -> io::Result<CString> {
        let mut b = self.name.as_bytes().to_vec();
        if n > 0 {
            b.extend_from_slice(format!(".{n}").as_bytes());
        }
        cstr(&b)
    }

    /// Opens file `n` to append (made if missing) or to read; returns it
    /// and its size.
    fn open_file(&self, n: u32, write: bool) -> io::Result<(File, u64)> {
        let how = if write {
            libc::O_WRONLY | libc::O_APPEND | libc::O_CREAT
        } else {
            libc::O_RDONLY
        };
        let flags = how | libc::O_NOCTTY | libc::O_NOFOLLOW | libc::O_NONBLOCK;
        let f = openat(self.fd.as_raw_fd(), &self.name(n)?, flags, 0o640).map_err(|e| {
            match e.raw_os_error() {
                Some(libc::ELOOP) => io::Error::other("is a symbolic link, not followed"),
                // What a FIFO with no reader (or a device with none
                // behind it) answers a non-blocking open for writing.
                Some(libc::ENXIO) => io::Error::other("not a regular file (a FIFO or a device)"),
                _ => e,
            }
        })?;
        let st = fstat(f.as_raw_fd())?;
        if st.st_mode & libc::S_IFMT != libc::S_IFREG {
            return Err(io::Error::other("not a regular file"));
        }
        if st.st_nlink > 1 {
            return Err(io::Error::other(format!(
                "has {} names (a hard link to another file?), not used",
                st.st_nlink
            )));
        }
        Ok((File::from(f), st.st_size as u64))
    }

    fn rename(&self, from: u32, to: u32) -> io::Result<()> {
        let (a, b) = (self.name(from)?, self.name(to)?);
        let d = self.fd.as_raw_fd();
        // SAFETY: valid C strings relative to a directory we hold.
        if unsafe { libc::renameat(d, a.as_ptr(), d, b.as_ptr()) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn unlink(&self, n: u32) -> io::Result<()> {
        let a = self.name(n)?;
        // SAFETY: a valid C string relative to a directory we hold.
        if unsafe { libc::unlinkat(self.fd.as_raw_fd(), a.as_ptr(), 0) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// When file `n` was last written (the link's own time for a link).
    fn mtime(&self, n: u32) -> Option<SystemTime> {
        let a = self.name(n).ok()?;
        // SAFETY: fstatat fills a zeroed struct; a valid C string.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        let r = unsafe {
            libc::fstatat(
                self.fd.as_raw_fd(),
                a.as_ptr(),
                &mut st,
                libc::AT_SYMLINK_NOFOLLOW,
            )
        };
        if r < 0 {
            return None;
        }
        let secs = Duration::new(st.st_mtime.max(0) as u64, st.st_mtime_nsec as u32);
        Some(SystemTime::UNIX_EPOCH + secs)
    }
}

fn not_found_ok(e: io::Error) -> io::Result<()> {
    if e.kind() == io::ErrorKind::NotFound {
        Ok(())
    } else {
        Err(e)
    }
}

/// `path.N`.
#[cfg(all(test, feature = "audit"))]
fn numbered(path: &Path, n: u32) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

fn ms_of(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn wall_ms() -> u64 {
    ms_of(SystemTime::now())
}

#[cfg(all(test, feature = "audit"))]
mod tests {
    use super::*;
    use std::fs;

    struct Tmp(PathBuf);

    impl Tmp {
        fn new(tag: &str) -> Tmp {
            let d = std::env::temp_dir().join(format!(
                "netevd-audit-{tag}-{}-{:?}",
                std::process::id(),
                std::thread::current().id()
            ));
            let _ = fs::remove_dir_all(&d);
            fs::create_dir_all(&d).unwrap();
            Tmp(d)
        }
    }

    impl Drop for Tmp {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn settings(path: &Path) -> AuditSettings {
        AuditSettings {
            enabled: true,
            path: path.to_path_buf(),
            max_size: 1 << 20,
            keep: 2,
            retention_days: None,
        }
    }

    fn drain(a: &mut Audit) {
        let now = Instant::now();
        while a.pending() > 0 {
            a.flush(now);
            assert!(a.blocked_until.is_none(), "a write failed");
        }
    }

    fn read_lines(p: &Path) -> Vec<Value> {
        fs::read_to_string(p)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn lines_are_json_with_every_field() {
        let t = Tmp::new("json");
        let path = t.0.join("sub/audit.jsonl");
        let mut a = Audit::new(settings(&path));
        a.line("hook", 7)
            .unwrap()
            .str("link", "e\"th\n0")
            .num("ifindex", 3u32)
            .opt_num("exit_code", Some(-1i32))
            .opt_num("signal", None::<i32>)
            .opt_str("previous", None)
            .bool("timed_out", true)
            .strs("output", ["a", "b\\"])
            .end();
        assert!(a.next_flush(Instant::now()).is_some());
        drain(&mut a);
        assert_eq!(a.next_flush(Instant::now()), None);
        let v = read_lines(&path);
        assert_eq!(
            v,
            [
                serde_json::json!({"time_ms": 7, "kind": "hook", "link": "e\"th\n0", "ifindex": 3,
                "exit_code": -1, "signal": null, "previous": null, "timed_out": true,
                "output": ["a", "b\\"]})
            ]
        );
        assert_eq!(a.stats.lines, 1);
        // The directory was made for it.
        assert!(path.parent().unwrap().is_dir());
    }

    #[test]
    fn off_writes_nothing() {
        let t = Tmp::new("off");
        let mut s = settings(&t.0.join("a"));
        s.enabled = false;
        let mut a = Audit::new(s);
        assert!(a.line("state", 1).is_none());
        assert_eq!(a.pending(), 0);
        assert_eq!(a.stats.dropped, 0);
    }

    #[test]
    fn chunks_end_at_a_line_and_are_bounded() {
        let t = Tmp::new("chunk");
        let path = t.0.join("a");
        let mut a = Audit::new(settings(&path));
        let long = "x".repeat(1000);
        for i in 0..300u64 {
            a.line("state", i).unwrap().str("link", &long).end();
        }
        let total = a.pending();
        a.flush(Instant::now());
        let written = fs::metadata(&path).unwrap().len() as usize;
        assert!(written <= CHUNK && written > CHUNK - 1100, "{written}");
        assert_eq!(total - a.pending(), written);
        assert!(fs::read(&path).unwrap().ends_with(b"\n"));
        drain(&mut a);
        assert_eq!(read_lines(&path).len(), 300);
        // A line longer than a chunk goes whole.
        let huge = "y".repeat(CHUNK + 10);
        a.line("hook", 1).unwrap().str("output", &huge).end();
        a.flush(Instant::now());
        assert_eq!(a.pending(), 0);
        assert_eq!(read_lines(&path).len(), 301);
    }

    #[test]
    fn rotates_by_size_and_keeps_n() {
        let t = Tmp::new("rotate");
        let path = t.0.join("audit.jsonl");
        let mut s = settings(&path);
        s.max_size = 4096;
        s.keep = 2;
        let mut a = Audit::new(s);
        for i in 0..400u64 {
            a.line("state", i).unwrap().str("link", "eth0").end();
            drain(&mut a);
        }
        assert!(a.stats.rotations >= 3, "{:?}", a.stats);
        for p in [&path, &numbered(&path, 1), &numbered(&path, 2)] {
            let len = fs::metadata(p).unwrap().len();
            assert!(len <= 4096, "{} is {len} bytes", p.display());
        }
        assert!(!numbered(&path, 3).exists());
        // Every file holds whole lines, and the newest are in `path`.
        let newest = read_lines(&path);
        assert_eq!(newest.last().unwrap()["time_ms"], 399);
        let older = read_lines(&numbered(&path, 1));
        assert_eq!(
            older.last().unwrap()["time_ms"].as_u64().unwrap() + 1,
            newest[0]["time_ms"].as_u64().unwrap()
        );
        // keep: 0 starts the file afresh.
        let mut s = settings(&path);
        s.max_size = 4096;
        s.keep = 0;
        a.set_settings(s);
        for i in 0..100u64 {
            a.line("state", i).unwrap().str("link", "eth0").end();
            drain(&mut a);
        }
        assert!(!numbered(&path, 1).exists() && !numbered(&path, 2).exists());
    }

    #[test]
    fn reopen_follows_a_moved_file() {
        let t = Tmp::new("reopen");
        let path = t.0.join("a");
        let mut a = Audit::new(settings(&path));
        a.line("state", 1).unwrap().end();
        drain(&mut a);
        fs::rename(&path, t.0.join("a.old")).unwrap();
        a.reopen();
        a.line("state", 2).unwrap().end();
        drain(&mut a);
        assert_eq!(read_lines(&path)[0]["time_ms"], 2);
        assert_eq!(read_lines(&t.0.join("a.old")).len(), 1);
    }

    /// Runs `f` on a thread and gives up after a few seconds: what is
    /// tested here used to block in open(2) for ever.
    fn within<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(f());
        });
        rx.recv_timeout(Duration::from_secs(5))
            .unwrap_or_else(|_| panic!("{what}: still blocked after 5 s"))
    }

    fn mkfifo(p: &Path) {
        nix::unistd::mkfifo(p, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    }

    /// What someone else put where the audit files go (a FIFO, a symbolic
    /// link, a second name of another file) is neither written, nor read,
    /// nor waited for.
    #[test]
    fn files_netevd_did_not_make_are_refused_not_followed_nor_waited_for() {
        let t = Tmp::new("hostile");
        let path = t.0.join("audit.jsonl");
        let secret = t.0.join("secret");
        let line = "{\"time_ms\":5,\"kind\":\"state\",\"link\":\"secret\"}\n";
        fs::write(&secret, line).unwrap();
        // A FIFO at the path: a write must not wait for a reader.
        mkfifo(&path);
        let p = path.clone();
        let (errors, written) = within("writing to a FIFO", move || {
            let mut a = Audit::new(settings(&p));
            a.line("state", 1).unwrap().end();
            a.flush(Instant::now());
            (a.stats.write_errors, a.pending() == 0)
        });
        assert_eq!((errors, written), (1, false));
        fs::remove_file(&path).unwrap();
        // A hard link to another file: not appended to.
        fs::hard_link(&secret, &path).unwrap();
        let mut a = Audit::new(settings(&path));
        a.line("state", 1).unwrap().end();
        a.flush(Instant::now());
        assert_eq!(a.stats.write_errors, 1);
        assert_eq!(fs::read_to_string(&secret).unwrap(), line);
        fs::remove_file(&path).unwrap();
        // A symbolic link: not written through.
        std::os::unix::fs::symlink(&secret, &path).unwrap();
        let mut a = Audit::new(settings(&path));
        a.line("state", 1).unwrap().end();
        a.flush(Instant::now());
        assert_eq!(a.stats.write_errors, 1);
        assert_eq!(fs::read_to_string(&secret).unwrap(), line);
        // Queries: a link and a hard link are not read, a FIFO not waited
        // for (a fresh log: nothing buffered to answer from).
        let a = Audit::new(settings(&path));
        std::os::unix::fs::symlink(&secret, numbered(&path, 1)).unwrap();
        fs::hard_link(&secret, numbered(&path, 2)).unwrap();
        let q = Query {
            limit: 100,
            ..Query::default()
        };
        assert!(a.query(&q).lines.is_empty(), "read through a link");
        let q2 = Query {
            since_ms: Some(0),
            ..q.clone()
        };
        assert!(a.query(&q2).lines.is_empty(), "read through a link");
        fs::remove_file(&path).unwrap();
        mkfifo(&path);
        let n = within("querying a FIFO", move || {
            (a.query(&q).lines.len(), a.query(&q2).lines.len())
        });
        assert_eq!(n, (0, 0));
    }

    /// A directory on the way to `audit.path` swapped for a symbolic link
    /// by someone else (fs.protected_symlinks is off on some machines):
    /// not followed, nothing made or written where it leads. One that
    /// root made (as /var/run -> /run) is followed.
    #[test]
    fn a_directory_link_someone_else_made_is_not_followed() {
        use std::os::unix::fs::symlink;
        let t = Tmp::new("dirlink");
        let target = t.0.join("etc");
        fs::create_dir(&target).unwrap();
        let public = t.0.join("pub");
        fs::create_dir(&public).unwrap();
        symlink(&target, public.join("logs")).unwrap();
        // owned by nobody, as if nobody had made it
        let link = CString::new(public.join("logs").as_os_str().as_bytes()).unwrap();
        // SAFETY: a valid C string.
        assert_eq!(unsafe { libc::lchown(link.as_ptr(), 65534, 65534) }, 0);
        for path in [
            public.join("logs/audit.jsonl"),
            public.join("logs/sub/audit.jsonl"),
        ] {
            let mut a = Audit::new(settings(&path));
            a.line("state", 1).unwrap().end();
            a.flush(Instant::now());
            assert_eq!(a.stats.write_errors, 1, "{}", path.display());
            assert_eq!(
                fs::read_dir(&target).unwrap().count(),
                0,
                "made or wrote in etc"
            );
            fs::write(
                target.join("audit.jsonl"),
                "{\"time_ms\":1,\"kind\":\"x\"}\n",
            )
            .unwrap();
            let fresh = Audit::new(settings(&path));
            let q = Query {
                limit: 10,
                ..Query::default()
            };
            assert!(fresh.query(&q).lines.is_empty(), "read through the link");
            fs::remove_file(target.join("audit.jsonl")).unwrap();
        }
        // root's own link: followed, rotation included
        let real = t.0.join("real");
        fs::create_dir(&real).unwrap();
        symlink(&real, t.0.join("run")).unwrap();
        let path = t.0.join("run/audit.jsonl");
        let mut s = settings(&path);
        s.max_size = 4096;
        let mut a = Audit::new(s);
        for i in 0..100 {
            a.line("state", i)
                .unwrap()
                .str("pad", &"x".repeat(100))
                .end();
            drain(&mut a);
        }
        assert!(real.join("audit.jsonl.1").exists());
        let q = Query {
            limit: 1,
            ..Query::default()
        };
        assert_eq!(a.query(&q).lines[0]["time_ms"], 99);
    }

    /// A current file larger than a query may read (`audit.max_size` is
    /// up to a TiB, or the file was there before): the newest lines are
    /// its last ones, and those are what a query for the newest returns.
    #[test]
    fn the_newest_lines_of_a_huge_file_are_its_last() {
        let t = Tmp::new("huge");
        let path = t.0.join("audit.jsonl");
        let mut text = String::new();
        let mut n = 0u64;
        while (text.len() as u64) < QUERY_BYTES + (QUERY_BYTES >> 2) {
            text.push_str(&format!(
                "{{\"time_ms\":{n},\"kind\":\"state\",\"pad\":\"{}\"}}\n",
                "x".repeat(200)
            ));
            n += 1;
        }
        fs::write(&path, &text).unwrap();
        let a = Audit::new(settings(&path));
        let ans = a.query(&Query {
            limit: 3,
            ..Query::default()
        });
        let times: Vec<u64> = ans
            .lines
            .iter()
            .map(|v| v["time_ms"].as_u64().unwrap())
            .collect();
        assert_eq!(times, [n - 3, n - 2, n - 1]);
        // More than the newest budget's worth: cut, and said so.
        let ans = a.query(&Query {
            limit: QUERY_LIMIT,
            kind: Some("nothing".into()),
            ..Query::default()
        });
        assert!(ans.lines.is_empty() && ans.truncated);
    }

    #[test]
    fn a_failing_file_keeps_then_drops_and_says_so() {
        let t = Tmp::new("fail");
        fs::write(t.0.join("file"), "").unwrap();
        // Its parent is a file: every open fails (ENOTDIR).
        let bad = t.0.join("file/audit");
        let mut a = Audit::new(settings(&bad));
        let now = Instant::now();
        a.line("state", 1).unwrap().end();
        a.flush(now);
        assert_eq!(a.stats.write_errors, 1);
        assert_eq!(a.next_flush(now), Some(now + RETRY));
        // Retried no sooner than RETRY.
        a.flush(now);
        assert_eq!(a.stats.write_errors, 1);
        let line = "z".repeat(1000);
        let mut taken = 1;
        while a
            .line("state", 2)
            .map(|l| l.str("x", &line).end())
            .is_some()
        {
            taken += 1;
        }
        assert!(a.pending() >= BUFFER && a.pending() < BUFFER + 2000);
        for _ in 0..9 {
            assert!(a.line("state", 3).is_none());
        }
        assert_eq!(a.stats.dropped, 10);
        assert_eq!(a.stats.lines, taken);
        // Pointed somewhere that works, it writes what it kept and one
        // line for the gap.
        let good = t.0.join("good");
        let mut s = settings(&good);
        s.max_size = 1 << 30;
        a.set_settings(s);
        drain(&mut a);
        let v = read_lines(&good);
        assert_eq!(v.len() as u64, taken + 1);
        let last = v.last().unwrap();
        assert_eq!(last["kind"], "audit");
        assert_eq!(last["dropped"], 10);
        assert!(netevd_ctl::AUDIT_KINDS.contains(&"audit"));
    }

    #[test]
    fn queries_read_rotated_files_and_the_buffer() {
        let t = Tmp::new("query");
        let path = t.0.join("audit.jsonl");
        let mut s = settings(&path);
        s.max_size = 8192;
        s.keep = 5;
        let mut a = Audit::new(s);
        for i in 0..300u64 {
            let (kind, link) = if i % 3 == 0 {
                ("hook", "eth1")
            } else {
                ("state", "eth0")
            };
            a.line(kind, 1000 + i)
                .unwrap()
                .str("link", link)
                .num("ifindex", if link == "eth0" { 2u32 } else { 3 })
                .end();
            drain(&mut a);
        }
        // Two more, not written yet.
        a.line("reload", 2000).unwrap().end();
        a.line("reload", 2001).unwrap().end();
        assert!(numbered(&path, 2).exists());
        let times = |ans: &Answer| -> Vec<u64> {
            ans.lines
                .iter()
                .map(|v| v["time_ms"].as_u64().unwrap())
                .collect()
        };
        let q = |f: &dyn Fn(&mut Query)| {
            let mut q = Query {
                limit: 5,
                ..Query::default()
            };
            f(&mut q);
            a.query(&q)
        };
        assert_eq!(times(&q(&|_| {})), [1297, 1298, 1299, 2000, 2001]);
        assert_eq!(
            times(&q(&|q| q.kind = Some("hook".into()))),
            [1285, 1288, 1291, 1294, 1297]
        );
        assert_eq!(
            times(&q(&|q| q.link = Some(netevd_ctl::LinkRef::Index(3)))),
            [1285, 1288, 1291, 1294, 1297]
        );
        assert_eq!(
            times(&q(
                &|q| q.link = Some(netevd_ctl::LinkRef::Name("eth0".into()))
            )),
            [1293, 1295, 1296, 1298, 1299]
        );
        // Since: the first ones from then on, across files.
        let first = times(&q(&|q| q.since_ms = Some(1000)));
        let oldest_kept = first[0];
        assert_eq!(first, (oldest_kept..oldest_kept + 5).collect::<Vec<_>>());
        assert_eq!(
            times(&q(&|q| {
                q.since_ms = Some(1297);
                q.limit = 100
            })),
            [1297, 1298, 1299, 2000, 2001]
        );
        assert_eq!(
            times(&q(&|q| {
                q.until_ms = Some(1150);
                q.limit = 2
            })),
            [1149, 1150]
        );
        // Everything kept, oldest first, in order.
        let all = times(&q(&|q| q.limit = QUERY_LIMIT));
        assert!(all.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(*all.last().unwrap(), 2001);
        assert!(!q(&|_| {}).truncated);
    }
}

/// The repo's fuzz convention: a seeded, repeatable mutation test of the
/// one parser here, the query's scan of audit files (which another program
/// or a crash may have left torn or garbled).
#[cfg(all(test, feature = "audit"))]
mod fuzz {
    use super::*;

    #[test]
    fn fuzz_scan_of_damaged_files() {
        let corpus = [
            r#"{"time_ms":5,"kind":"hook","link":"eth0","ifindex":2,"output":["a"]}"#,
            r#"{"time_ms":6,"kind":"state","link":"e\"x","ifindex":3,"previous":null}"#,
            r#"{"time_ms":7,"kind":"control","uid":0,"gid":0,"pid":1,"command":"status"}"#,
            r#"{"time_ms":18446744073709551615,"kind":"audit","dropped":3}"#,
        ];
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut rnd = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let alphabet = br#"{}[]":,0123456789\ntruefalsnl\u"#;
        let end = Instant::now() + Duration::from_millis(1000);
        let mut n = 0u64;
        while Instant::now() < end {
            let mut file = Vec::new();
            for _ in 0..1 + rnd() % 8 {
                let mut line = corpus[(rnd() % corpus.len() as u64) as usize]
                    .as_bytes()
                    .to_vec();
                for _ in 0..rnd() % 4 {
                    let i = (rnd() % (line.len() as u64 + 1)) as usize;
                    match rnd() % 3 {
                        0 => line.insert(i, alphabet[(rnd() % alphabet.len() as u64) as usize]),
                        1 if i < line.len() => {
                            line.remove(i);
                        }
                        _ => line.truncate(i),
                    }
                }
                file.extend_from_slice(&line);
                if rnd() % 8 != 0 {
                    file.push(b'\n');
                }
            }
            let kinds = [None, Some("hook"), Some("state")];
            let q = Query {
                since_ms: (rnd() % 2 == 0).then(|| rnd() % 10),
                until_ms: (rnd() % 2 == 0).then(|| rnd() % 20),
                kind: kinds[(rnd() % 3) as usize].map(str::to_string),
                link: None,
                limit: 1 + (rnd() % 4) as usize,
            };
            let mut budget = rnd() % 2048;
            let before = budget;
            let mut out = Vec::new();
            let last = rnd() % 2 == 0;
            scan(&file[..], &q, q.limit, &mut budget, &mut out, last);
            assert!(budget <= before);
            assert!(out.len() <= q.limit, "{out:?}");
            assert!(out.iter().all(|v| q.matches(v)));
            n += 1;
        }
        assert!(n > 1000, "only {n} runs");
    }
}
