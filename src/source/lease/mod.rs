//! The dhclient lease watcher: inotify on the directories that hold
//! `backends.dhclient.lease_files`, and bounded reads of the files that
//! changed, parsed (parse.rs) into `core::lease::LeaseInput`s.
//!
//! Directories are watched, not files: dhclient appends to its file, but
//! other tools replace it by rename, and a file may be created after the
//! daemon started. A directory that does not exist yet is watched through
//! its parent until it appears. An inotify queue overflow reads every
//! file again.
//!
//! A file is read once it has been quiet for [`SETTLE`] (and at the
//! latest [`MAX_WAIT`] after its first change): dhclient rewrites its file
//! in place, truncating it and writing it in stdio-buffer pieces, and a
//! read between two pieces that happened to end on a block boundary would
//! parse, and make an older lease look like the newest.
//!
//! What must not reach the core: a file that does not parse (garbage, or
//! cut short while dhclient rewrites it), one that changed or was
//! replaced while it was read (its change makes another event, and it is
//! read again), one too large, and a file that suddenly holds no lease
//! (dhclient truncates before it rewrites). Each is logged and skipped,
//! and the file's last good leases stay. Only a file that is gone takes
//! its leases away.
//!
//! I/O and decoding only; what a lease means is the core's (lease.rs).

pub mod parse;

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};

use crate::config::DhclientSettings;
use crate::core::glob;
use crate::core::lease::LeaseInput;

/// Files read per call; the rest wait for the next turn (`more`).
const READS_PER_TURN: usize = 16;
/// inotify reads (4 KiB each) per call.
const EVENT_READS_PER_TURN: usize = 16;
/// How long a changed file must be quiet before it is read.
pub const SETTLE: Duration = Duration::from_millis(20);
/// The longest a file that keeps changing waits to be read.
pub const MAX_WAIT: Duration = Duration::from_millis(200);
/// Changed files waiting to be read at most.
const MAX_DIRTY: usize = 1024;
/// Files one directory may match: a glob over a directory someone filled
/// with thousands of files must not make thousands of reads.
const FILES_PER_DIR: usize = 64;

/// Counters for status and metrics (wired by the lead).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Files read and parsed into leases.
    pub reads: u64,
    /// Reads skipped: did not parse, changed while read, too large,
    /// emptied, unreadable.
    pub skipped: u64,
    /// inotify queue overflows (every file read again).
    pub overflows: u64,
}

struct Dir {
    path: PathBuf,
    /// File-name patterns (glob) in this directory.
    patterns: Vec<Vec<u8>>,
    wd: Option<WatchDescriptor>,
    /// Watching the parent for this directory to appear.
    parent_wd: Option<WatchDescriptor>,
}

pub struct LeaseWatch {
    inotify: Inotify,
    dirs: Vec<Dir>,
    /// Files to read, with when they first and last changed. Vectors,
    /// not maps, here and below: they hold a few entries, and maps cost
    /// kilobytes of code each (the binary's size is a goal).
    dirty: Vec<(PathBuf, Instant, Instant)>,
    /// Files whose leases reached the core, with how many they hold.
    known: Vec<(PathBuf, usize)>,
    /// Whether a directory's entries must be listed again.
    rescan: Vec<usize>,
    /// The inotify fd may hold more events than this turn read.
    events_left: bool,
    pub stats: Stats,
}

const DIR_MASK: AddWatchFlags = AddWatchFlags::IN_MODIFY
    .union(AddWatchFlags::IN_CLOSE_WRITE)
    .union(AddWatchFlags::IN_CREATE)
    .union(AddWatchFlags::IN_MOVED_TO)
    .union(AddWatchFlags::IN_MOVED_FROM)
    .union(AddWatchFlags::IN_DELETE)
    .union(AddWatchFlags::IN_DELETE_SELF)
    .union(AddWatchFlags::IN_MOVE_SELF)
    .union(AddWatchFlags::IN_ONLYDIR);
const PARENT_MASK: AddWatchFlags = AddWatchFlags::IN_CREATE
    .union(AddWatchFlags::IN_MOVED_TO)
    .union(AddWatchFlags::IN_ONLYDIR);

/// Splits `/var/lib/dhcp/dhclient*.leases` into its directory and its
/// file-name pattern. The config allows glob characters in the file name
/// only.
pub fn split(p: &Path) -> Option<(PathBuf, Vec<u8>)> {
    Some((
        p.parent()?.to_path_buf(),
        p.file_name()?.as_bytes().to_vec(),
    ))
}

/// The files in `dir` that match one of `patterns`, sorted, at most
/// [`FILES_PER_DIR`].
fn matching(dir: &Path, patterns: &[Vec<u8>]) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = rd
        .filter_map(Result::ok)
        .filter(|e| {
            let n = e.file_name();
            // Symbolic links are followed, as reads follow them.
            patterns.iter().any(|p| glob::matches(p, n.as_bytes())) && e.path().is_file()
        })
        .map(|e| e.path())
        .collect();
    v.sort();
    v.truncate(FILES_PER_DIR);
    v
}

/// Whether any configured lease file exists now: what `system.backend:
/// auto` asks before it picks dhclient.
pub fn lease_files_present(s: &DhclientSettings) -> bool {
    s.lease_files.iter().any(|p| match split(p) {
        Some((dir, pat)) => !matching(&dir, &[pat]).is_empty(),
        None => false,
    })
}

/// When a file that first changed at `first` and last at `last` is read.
fn due(first: Instant, last: Instant) -> Instant {
    (last + SETTLE).min(first + MAX_WAIT)
}

/// Why a read was skipped, for the log.
enum Skip {
    Gone,
    Other(String),
}

/// Reads a whole regular file, at most `parse::MAX_FILE` bytes, and
/// checks that it is the same file, unchanged, at the end.
fn read_bounded(path: &Path) -> Result<Vec<u8>, Skip> {
    let gone = |e: &io::Error| e.kind() == io::ErrorKind::NotFound;
    let f = File::options()
        .read(true)
        // A FIFO named like a lease file must not block the loop.
        .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_NOCTTY)
        .open(path)
        .map_err(|e| {
            if gone(&e) {
                Skip::Gone
            } else {
                Skip::Other(e.to_string())
            }
        })?;
    let before = f.metadata().map_err(|e| Skip::Other(e.to_string()))?;
    if !before.is_file() {
        return Err(Skip::Other("not a regular file".into()));
    }
    if before.len() > parse::MAX_FILE as u64 {
        return Err(Skip::Other(
            parse::Error::TooLarge(before.len() as usize).to_string(),
        ));
    }
    let mut buf = Vec::with_capacity(before.len() as usize);
    f.take(parse::MAX_FILE as u64 + 1)
        .read_to_end(&mut buf)
        .map_err(|e| Skip::Other(e.to_string()))?;
    let after = std::fs::metadata(path).map_err(|e| {
        if gone(&e) {
            Skip::Gone
        } else {
            Skip::Other(e.to_string())
        }
    })?;
    // File times move by the kernel's coarse clock (a jiffy), so a
    // rewrite within one tick leaves them alone: the sizes must agree too.
    let same = (before.ino(), before.dev()) == (after.ino(), after.dev())
        && before.len() == buf.len() as u64
        && after.len() == buf.len() as u64
        && (after.mtime(), after.mtime_nsec()) == (before.mtime(), before.mtime_nsec());
    if !same {
        return Err(Skip::Other(
            "it changed or was replaced while it was read; it is read again on that change".into(),
        ));
    }
    Ok(buf)
}

impl LeaseWatch {
    /// Watches the directories of `s.lease_files`; every matching file is
    /// read at the first `read`.
    pub fn open(s: &DhclientSettings) -> io::Result<LeaseWatch> {
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)?;
        let mut dirs: Vec<Dir> = Vec::new();
        for p in &s.lease_files {
            let Some((dir, pat)) = split(p) else {
                continue;
            };
            match dirs.iter_mut().find(|d| d.path == dir) {
                Some(d) => d.patterns.push(pat),
                None => dirs.push(Dir {
                    path: dir,
                    patterns: vec![pat],
                    wd: None,
                    parent_wd: None,
                }),
            }
        }
        let mut w = LeaseWatch {
            inotify,
            rescan: (0..dirs.len()).collect(),
            dirs,
            dirty: Vec::new(),
            known: Vec::new(),
            events_left: false,
            stats: Stats::default(),
        };
        for i in 0..w.dirs.len() {
            w.watch(i)?;
        }
        Ok(w)
    }

    pub fn fd(&self) -> RawFd {
        self.inotify.as_fd().as_raw_fd()
    }

    /// Watches directory `i`, or its parent while it does not exist.
    fn watch(&mut self, i: usize) -> io::Result<()> {
        let d = &mut self.dirs[i];
        match self.inotify.add_watch(&d.path, DIR_MASK) {
            Ok(wd) => {
                d.wd = Some(wd);
                if let Some(p) = d.parent_wd.take() {
                    // Shared with another directory's parent watch? Then
                    // the kernel keeps one descriptor; leave it.
                    if !self
                        .dirs
                        .iter()
                        .any(|o| o.parent_wd == Some(p) || o.wd == Some(p))
                    {
                        let _ = self.inotify.rm_watch(p);
                    }
                }
                log::info!(
                    "dhclient: watching {} for lease files",
                    self.dirs[i].path.display()
                );
                Ok(())
            }
            Err(Errno::ENOENT | Errno::ENOTDIR) => {
                let parent = d.path.parent().unwrap_or(Path::new("/")).to_path_buf();
                match self.inotify.add_watch(&parent, PARENT_MASK) {
                    Ok(wd) => d.parent_wd = Some(wd),
                    Err(e) => log::warn!(
                        "dhclient: neither {} nor {} exists ({e}); its lease files are not watched",
                        d.path.display(),
                        parent.display()
                    ),
                }
                log::info!(
                    "dhclient: {} does not exist yet; watching for it",
                    d.path.display()
                );
                Ok(())
            }
            Err(e) => Err(io::Error::other(format!(
                "inotify on {}: {e}",
                d.path.display()
            ))),
        }
    }

    /// Whether inotify or a rescan has more than this turn took.
    pub fn more(&self) -> bool {
        !self.rescan.is_empty() || self.events_left
    }

    /// When the next changed file is due to be read.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.dirty.iter().map(|&(_, f, l)| due(f, l)).min()
    }

    /// `path` changed at `now` (`first` for a file found by listing).
    fn mark(&mut self, path: PathBuf, first: Instant, now: Instant) {
        if let Some(e) = self.dirty.iter_mut().find(|e| e.0 == path) {
            e.2 = e.2.max(now);
        } else if self.dirty.len() < MAX_DIRTY {
            self.dirty.push((path, first, now));
        } else {
            // Thousands of matching names churning: list the directories
            // again instead, which reads at most FILES_PER_DIR each.
            self.rescan_all();
        }
    }

    fn rescan(&mut self, i: usize) {
        if !self.rescan.contains(&i) {
            self.rescan.push(i);
        }
    }

    fn rescan_all(&mut self) {
        self.rescan = (0..self.dirs.len()).collect();
    }

    /// Drains inotify (within a budget) and reads the files that are due
    /// (within another); what the core should hear goes to `out`.
    pub fn read(&mut self, now: Instant, out: &mut Vec<LeaseInput>) {
        self.events_left = false;
        for n in 0.. {
            if n == EVENT_READS_PER_TURN {
                self.events_left = true;
                break;
            }
            match self.inotify.read_events() {
                Ok(evs) => {
                    for e in evs {
                        self.on_event(e.wd, e.mask, e.name.as_deref(), now);
                    }
                }
                Err(Errno::EAGAIN) => break,
                Err(Errno::EINTR) => {}
                Err(e) => {
                    log::error!("dhclient: reading inotify: {e}");
                    break;
                }
            }
        }
        // What a listing finds is read at once: it did not just change.
        let long_ago = now.checked_sub(MAX_WAIT).unwrap_or(now);
        for i in std::mem::take(&mut self.rescan) {
            let d = &self.dirs[i];
            let mut found = matching(&d.path, &d.patterns);
            // And whatever was there before, to see it gone.
            found.extend(
                self.known
                    .iter()
                    .filter(|k| k.0.parent() == Some(&d.path))
                    .map(|k| k.0.clone()),
            );
            for f in found {
                if !self.dirty.iter().any(|e| e.0 == f) {
                    self.mark(f, long_ago, long_ago);
                }
            }
        }
        let (mut i, mut n) = (0, 0);
        while i < self.dirty.len() && n < READS_PER_TURN {
            let (_, first, last) = self.dirty[i];
            if due(first, last) <= now {
                let (path, ..) = self.dirty.swap_remove(i);
                self.read_file(path, out);
                n += 1;
            } else {
                i += 1;
            }
        }
    }

    fn on_event(
        &mut self,
        wd: WatchDescriptor,
        mask: AddWatchFlags,
        name: Option<&OsStr>,
        now: Instant,
    ) {
        if mask.contains(AddWatchFlags::IN_Q_OVERFLOW) {
            self.stats.overflows += 1;
            log::warn!("dhclient: inotify queue overflow; reading every lease file again");
            self.rescan_all();
            return;
        }
        for i in 0..self.dirs.len() {
            let d = &self.dirs[i];
            if d.wd == Some(wd) {
                if mask.intersects(
                    AddWatchFlags::IN_DELETE_SELF
                        | AddWatchFlags::IN_MOVE_SELF
                        | AddWatchFlags::IN_IGNORED,
                ) {
                    // The directory went: its files are gone, and it is
                    // watched for again.
                    log::info!("dhclient: {} went away", d.path.display());
                    if let Some(wd) = self.dirs[i].wd.take() {
                        let _ = self.inotify.rm_watch(wd);
                    }
                    self.rescan(i);
                    if let Err(e) = self.watch(i) {
                        log::warn!("dhclient: {e}");
                    }
                    continue;
                }
                let Some(name) = name else {
                    continue;
                };
                if d.patterns.iter().any(|p| glob::matches(p, name.as_bytes())) {
                    let path = d.path.join(name);
                    self.mark(path, now, now);
                }
            } else if d.parent_wd == Some(wd)
                && name.is_some_and(|n| Some(n) == d.path.file_name())
                && self.dirs[i].wd.is_none()
            {
                if let Err(e) = self.watch(i) {
                    log::warn!("dhclient: {e}");
                }
                self.rescan(i);
            }
        }
    }

    fn read_file(&mut self, path: PathBuf, out: &mut Vec<LeaseInput>) {
        let bytes = match read_bounded(&path) {
            Ok(b) => b,
            Err(Skip::Gone) => {
                let before = self.known.len();
                self.known.retain(|k| k.0 != path);
                if self.known.len() < before {
                    log::info!("dhclient: {} is gone", path.display());
                    out.push(LeaseInput::Gone(path));
                }
                return;
            }
            Err(Skip::Other(e)) => {
                self.skip(&path, &e);
                return;
            }
        };
        match parse::parse(&bytes) {
            Ok(p) => {
                for d in &p.dropped {
                    log::warn!("dhclient: {}: {d}", path.display());
                }
                let had = self.known.iter().find(|k| k.0 == path).map_or(0, |k| k.1);
                if p.leases.is_empty() && had > 0 {
                    // dhclient truncates its file before writing it again.
                    self.skip(&path, "it holds no lease now (cut short?)");
                    return;
                }
                self.stats.reads += 1;
                log::debug!(
                    "dhclient: {}: {} current lease(s)",
                    path.display(),
                    p.leases.len()
                );
                match self.known.iter_mut().find(|k| k.0 == path) {
                    Some(k) => k.1 = p.leases.len(),
                    None => self.known.push((path.clone(), p.leases.len())),
                }
                out.push(LeaseInput::File {
                    path,
                    leases: p.leases,
                });
            }
            Err(e) => self.skip(&path, &e.to_string()),
        }
    }

    fn skip(&mut self, path: &Path, why: &str) {
        self.stats.skipped += 1;
        log::warn!(
            "dhclient: {}: {why}; skipped, its last good leases stay",
            path.display()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Tmp(PathBuf);

    impl Drop for Tmp {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn tmp(tag: &str) -> Tmp {
        let p = std::env::temp_dir().join(format!("netevd-lease-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        Tmp(p)
    }

    const GOOD: &str = "lease {\n  interface \"e0\";\n  fixed-address 10.0.0.2;\n  option routers 10.0.0.1;\n  expire never;\n}\n";

    /// Everything the watcher reads once the files settled.
    fn drain(w: &mut LeaseWatch) -> Vec<LeaseInput> {
        let mut out = Vec::new();
        // inotify events are queued by the time the write returns.
        let now = Instant::now();
        w.read(now, &mut out);
        w.read(now + MAX_WAIT, &mut out);
        out
    }

    fn addrs(v: &[LeaseInput]) -> Vec<String> {
        v.iter()
            .map(|i| match i {
                LeaseInput::File { path, leases } => format!(
                    "{}: {}",
                    path.file_name().unwrap().to_string_lossy(),
                    leases
                        .iter()
                        .map(|l| l.address.to_string())
                        .collect::<Vec<_>>()
                        .join(" ")
                ),
                LeaseInput::Gone(p) => format!("gone {}", p.file_name().unwrap().to_string_lossy()),
            })
            .collect()
    }

    #[test]
    fn created_later_replaced_garbage_truncated_and_gone() {
        let t = tmp("watch");
        let dir = t.0.join("dhcp");
        let s = DhclientSettings {
            lease_files: vec![dir.join("dhclient*.leases")],
        };
        // The directory does not exist yet: its parent is watched.
        std::fs::create_dir_all(&t.0).unwrap();
        let mut w2 = LeaseWatch::open(&s).unwrap();
        assert!(!lease_files_present(&s));
        assert!(drain(&mut w2).is_empty());
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("dhclient.e0.leases"), GOOD).unwrap();
        std::fs::write(dir.join("other.txt"), "x").unwrap();
        assert!(lease_files_present(&s));
        assert_eq!(addrs(&drain(&mut w2)), ["dhclient.e0.leases: 10.0.0.2"]);
        // Replaced by rename.
        let f = dir.join("dhclient.e0.leases");
        std::fs::write(dir.join(".new"), GOOD.replace("10.0.0.2", "10.0.0.3")).unwrap();
        std::fs::rename(dir.join(".new"), &f).unwrap();
        assert_eq!(addrs(&drain(&mut w2)), ["dhclient.e0.leases: 10.0.0.3"]);
        // Garbage, a block cut short and an emptied file are skipped.
        std::fs::write(&f, "lease {\n garbage\x01\n").unwrap();
        assert!(drain(&mut w2).is_empty());
        std::fs::write(&f, &GOOD[..GOOD.len() - 10]).unwrap();
        assert!(drain(&mut w2).is_empty());
        std::fs::write(&f, "").unwrap();
        assert!(drain(&mut w2).is_empty());
        assert!(w2.stats.skipped >= 3, "{:?}", w2.stats);
        // Appended to, as dhclient does.
        std::fs::write(&f, GOOD).unwrap();
        {
            use std::io::Write;
            let mut a = std::fs::OpenOptions::new().append(true).open(&f).unwrap();
            a.write_all(GOOD.replace("10.0.0.2", "10.0.0.4").as_bytes())
                .unwrap();
        }
        let seen = addrs(&drain(&mut w2));
        assert_eq!(
            seen.last().unwrap(),
            "dhclient.e0.leases: 10.0.0.4",
            "{seen:?}"
        );
        std::fs::remove_file(&f).unwrap();
        assert_eq!(addrs(&drain(&mut w2)), ["gone dhclient.e0.leases"]);
    }

    /// dhclient rewrites its file in place: truncated, then written in
    /// pieces. A read between two pieces that ended on a block boundary
    /// would make an older lease look like the newest; the file is read
    /// only once it has been quiet for SETTLE, or MAX_WAIT after its first
    /// change if it never is. Time is passed in, so this is exact.
    #[test]
    fn a_file_rewritten_in_pieces_is_read_once_whole() {
        use std::io::Write;
        let t = tmp("pieces");
        std::fs::create_dir_all(&t.0).unwrap();
        let s = DhclientSettings {
            lease_files: vec![t.0.join("*.leases")],
        };
        let f = t.0.join("d.leases");
        let version = |net: u8| -> String {
            (1..=20)
                .map(|i| GOOD.replace("10.0.0.2", &format!("10.0.{net}.{i}")))
                .collect()
        };
        let (a, b) = (version(1), version(2));
        std::fs::write(&f, &a).unwrap();
        let mut w = LeaseWatch::open(&s).unwrap();
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut out = Vec::new();
        // A file found by listing is read at once.
        w.read(t0, &mut out);
        assert_eq!(addrs(&out), ["d.leases: 10.0.1.20"]);
        out.clear();
        // Truncated, and half of the new version written, up to the end of
        // its tenth block: whole blocks, the newest of them old.
        let cut = b.match_indices("}\n").nth(9).unwrap().0 + 2;
        File::create(&f)
            .unwrap()
            .write_all(&b.as_bytes()[..cut])
            .unwrap();
        w.read(t0, &mut out);
        w.read(t0 + ms(10), &mut out);
        assert!(out.is_empty(), "{:?}", addrs(&out));
        assert_eq!(w.next_deadline(), Some(t0 + SETTLE));
        // The rest comes; the file is read once it is quiet.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&f)
            .unwrap()
            .write_all(&b.as_bytes()[cut..])
            .unwrap();
        w.read(t0 + ms(15), &mut out);
        w.read(t0 + ms(30), &mut out);
        assert!(out.is_empty(), "{:?}", addrs(&out));
        w.read(t0 + ms(35), &mut out);
        assert_eq!(addrs(&out), ["d.leases: 10.0.2.20"]);
        assert_eq!(w.next_deadline(), None);
        // A file that never stops changing is still read, MAX_WAIT after
        // its first change.
        out.clear();
        let t1 = t0 + ms(1000);
        let mut at = t1;
        while at < t1 + MAX_WAIT {
            std::fs::OpenOptions::new()
                .append(true)
                .open(&f)
                .unwrap()
                .write_all(GOOD.replace("10.0.0.2", "10.0.3.1").as_bytes())
                .unwrap();
            w.read(at, &mut out);
            assert!(out.is_empty(), "read {:?} before MAX_WAIT", at - t1);
            at += ms(15);
        }
        w.read(t1 + MAX_WAIT, &mut out);
        assert_eq!(addrs(&out), ["d.leases: 10.0.3.1"]);
    }

    #[test]
    fn a_fifo_or_a_huge_file_does_not_block_or_get_read() {
        let t = tmp("fifo");
        std::fs::create_dir_all(&t.0).unwrap();
        let fifo = t.0.join("a.leases");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        assert!(matches!(read_bounded(&fifo), Err(Skip::Other(_))));
        let big = t.0.join("b.leases");
        std::fs::write(&big, vec![b' '; parse::MAX_FILE + 1]).unwrap();
        let Err(Skip::Other(e)) = read_bounded(&big) else {
            panic!("read a file over the cap")
        };
        assert!(e.contains("more than"), "{e}");
    }
}
