//! `system.watch_config`: an inotify descriptor that says when the
//! configuration may have changed, for the reactor to reload.
//!
//! It watches directories, not the file: editors replace a file by
//! renaming a new one over it, and a Kubernetes ConfigMap mount swaps the
//! `..data` symbolic link the file points through, so a watch on the file
//! itself would follow the old inode and go quiet. Watched: the main
//! file's directory (the file's name, `..data`, `conf.d` coming and
//! going) and `conf.d` (its `*.yaml` files). A change counts once it is
//! complete: a close after writing, a rename into place, a delete;
//! opening, truncating and each write do not, so that a reload does not
//! read a half-written file.
//!
//! A file that the main path reaches through a symbolic link elsewhere
//! is seen only when the link itself is replaced.
//!
//! Changes are paced, not reloaded one by one: a writer that rewrites a
//! file in a loop (a broken provisioning script, a hostile user with
//! write access to `conf.d`) would otherwise make every wakeup a reload,
//! each reading and parsing every file, telling the hook spawner and
//! writing an audit line. A reload comes [`SETTLE`] after the last change
//! seen, but no later than [`MAX_WAIT`] after the first one not yet
//! reloaded (a storm that never pauses is still followed), and never
//! within [`MIN_GAP`] of the previous reload. The last change is always
//! reloaded: a change seen after a reload starts a new wait.
//!
//! I/O only: inotify(7) through libc. The reactor registers [`Watch::fd`]
//! for reading and calls [`Watch::on_ready`] when it is ready, arms a
//! timer at [`Watch::next_reload`], and reloads when [`Watch::reload_due`]
//! says so.

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::libc;

use super::{include_dir, is_include_name};

/// Events that end a change in the main file's directory.
const DIR_MASK: u32 = libc::IN_CLOSE_WRITE
    | libc::IN_MOVED_TO
    | libc::IN_MOVED_FROM
    | libc::IN_DELETE
    | libc::IN_CREATE
    | libc::IN_ONLYDIR;

/// And in `conf.d`.
const INCLUDE_MASK: u32 = libc::IN_CLOSE_WRITE
    | libc::IN_MOVED_TO
    | libc::IN_MOVED_FROM
    | libc::IN_DELETE
    | libc::IN_ONLYDIR;

/// The fixed part of `struct inotify_event`: wd, mask, cookie, len.
const HEADER: usize = 16;

/// Quiet after the last change before it is reloaded: an edit that takes
/// a few writes (a tool writing the main file, then an include) is one
/// reload.
pub const SETTLE: Duration = Duration::from_millis(200);
/// The longest a change waits while changes keep coming.
pub const MAX_WAIT: Duration = Duration::from_secs(2);
/// The least time between two reloads from the watch.
pub const MIN_GAP: Duration = Duration::from_secs(1);

/// When changes seen but not yet reloaded are due: pure, no clock read.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pace {
    /// The first and the last change not yet reloaded.
    first: Option<Instant>,
    last: Option<Instant>,
    /// The last reload this pace allowed.
    reloaded: Option<Instant>,
}

impl Pace {
    /// A change was seen at `now`.
    pub fn saw(&mut self, now: Instant) {
        self.first.get_or_insert(now);
        self.last = Some(now);
    }

    /// When the changes seen are due to be reloaded; None when there are
    /// none.
    pub fn due(&self) -> Option<Instant> {
        let (first, last) = (self.first?, self.last?);
        let at = (last + SETTLE).min(first + MAX_WAIT);
        Some(self.reloaded.map_or(at, |r| at.max(r + MIN_GAP)))
    }

    /// True (once) when the changes seen are due at `now`: reload then.
    pub fn take(&mut self, now: Instant) -> bool {
        if self.due().is_some_and(|t| t <= now) {
            self.first = None;
            self.last = None;
            self.reloaded = Some(now);
            return true;
        }
        false
    }
}

pub struct Watch {
    fd: OwnedFd,
    dir_wd: i32,
    include_wd: Option<i32>,
    name: OsString,
    include: PathBuf,
    buf: Vec<u8>,
    pace: Pace,
}

/// What one inotify event means for the configuration.
#[derive(Debug, PartialEq, Eq)]
enum Meaning {
    Nothing,
    /// A file that is read changed: reload.
    Changed,
    /// `conf.d` appeared: watch it too, and reload.
    IncludeDirCreated,
    /// `conf.d`'s watch is gone (the directory was deleted).
    IncludeDirGone,
}

fn add_watch(fd: RawFd, dir: &Path, mask: u32) -> io::Result<i32> {
    let c = CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL in the path"))?;
    // SAFETY: fd is an inotify descriptor we own; c is a valid C string.
    let wd = unsafe { libc::inotify_add_watch(fd, c.as_ptr(), mask) };
    if wd < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(wd)
}

impl Watch {
    /// Watches the directory of `main` and its `conf.d`, if there is one.
    pub fn new(main: &Path) -> io::Result<Watch> {
        let dir = main.parent().unwrap_or(Path::new("/"));
        let name = main.file_name().unwrap_or(OsStr::new("")).to_os_string();
        // SAFETY: plain syscall; the result is checked before use.
        let raw = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: raw is a new descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let dir_wd = add_watch(raw, dir, DIR_MASK).map_err(|e| {
            io::Error::new(e.kind(), format!("cannot watch {}: {e}", dir.display()))
        })?;
        let include = include_dir(main);
        let include_wd = add_watch(raw, &include, INCLUDE_MASK).ok();
        Ok(Watch {
            fd,
            dir_wd,
            include_wd,
            name,
            include,
            buf: vec![0; 4096 + HEADER + 256],
            pace: Pace::default(),
        })
    }

    /// The descriptor is readable: reads what it says, and notes a
    /// change for [`Watch::reload_due`].
    pub fn on_ready(&mut self, now: Instant) {
        if self.changed() {
            self.pace.saw(now);
        }
    }

    /// When to call [`Watch::reload_due`] next; None while nothing changed.
    pub fn next_reload(&self) -> Option<Instant> {
        self.pace.due()
    }

    /// True (once per batch of changes) when a reload is due at `now`.
    pub fn reload_due(&mut self, now: Instant) -> bool {
        self.pace.take(now)
    }

    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    fn meaning(&self, wd: i32, mask: u32, name: &[u8]) -> Meaning {
        if Some(wd) == self.include_wd {
            if mask & libc::IN_IGNORED != 0 {
                return Meaning::IncludeDirGone;
            }
            if is_include_name(name) {
                return Meaning::Changed;
            }
            return Meaning::Nothing;
        }
        if wd != self.dir_wd {
            return Meaning::Nothing;
        }
        if name == b"conf.d" {
            if mask & (libc::IN_CREATE | libc::IN_MOVED_TO) != 0 && mask & libc::IN_ISDIR != 0 {
                return Meaning::IncludeDirCreated;
            }
            if mask & (libc::IN_DELETE | libc::IN_MOVED_FROM) != 0 {
                return Meaning::Changed;
            }
            return Meaning::Nothing;
        }
        // IN_CREATE alone is a file being written: wait for its close.
        if mask & libc::IN_CREATE != 0 {
            return Meaning::Nothing;
        }
        if name == self.name.as_bytes() || name == b"..data" {
            return Meaning::Changed;
        }
        Meaning::Nothing
    }

    /// Reads every pending event: true when a file the configuration is
    /// made of may have changed. Never blocks.
    fn changed(&mut self) -> bool {
        let mut changed = false;
        loop {
            // SAFETY: reads into our own buffer, at most its length.
            let n = unsafe {
                libc::read(
                    self.fd.as_raw_fd(),
                    self.buf.as_mut_ptr().cast(),
                    self.buf.len(),
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                match e.kind() {
                    io::ErrorKind::Interrupted => continue,
                    io::ErrorKind::WouldBlock => return changed,
                    _ => {
                        log::warn!("watch_config: reading inotify: {e}");
                        return changed;
                    }
                }
            }
            if n == 0 {
                return changed;
            }
            let mut events = Vec::new();
            let data = &self.buf[..n as usize];
            let mut at = 0;
            while at + HEADER <= data.len() {
                let word =
                    |i: usize| u32::from_ne_bytes(data[at + i..at + i + 4].try_into().unwrap());
                let (wd, mask, len) = (word(0) as i32, word(4), word(12) as usize);
                let end = (at + HEADER + len).min(data.len());
                let name = &data[at + HEADER..end];
                // The name is padded with NULs to an alignment.
                let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
                if mask & libc::IN_Q_OVERFLOW != 0 {
                    // Events were lost: assume the worst.
                    changed = true;
                } else {
                    events.push(self.meaning(wd, mask, name));
                }
                at = end;
            }
            for m in events {
                match m {
                    Meaning::Nothing => {}
                    Meaning::Changed => changed = true,
                    Meaning::IncludeDirCreated => {
                        self.include_wd =
                            add_watch(self.fd.as_raw_fd(), &self.include, INCLUDE_MASK).ok();
                        changed = true;
                    }
                    Meaning::IncludeDirGone => self.include_wd = None,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Scratch(PathBuf);

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn scratch(name: &str) -> Scratch {
        let d = std::env::temp_dir().join(format!("netevd-watch-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Scratch(d)
    }

    #[test]
    fn edits_renames_and_includes_are_changes() {
        let d = scratch("edits");
        let main = d.0.join("netevd.yaml");
        std::fs::write(&main, "scripts: {}\n").unwrap();
        let mut w = Watch::new(&main).unwrap();
        assert!(!w.changed(), "nothing happened yet");

        std::fs::write(&main, "scripts:\n  max_parallel: 2\n").unwrap();
        assert!(w.changed(), "written in place");
        assert!(!w.changed(), "read once");

        // An editor's way: a new file renamed over the old one.
        let tmp = d.0.join(".netevd.yaml.swp");
        std::fs::write(&tmp, "scripts: {}\n").unwrap();
        assert!(!w.changed(), "a hidden scratch file is not the config");
        std::fs::rename(&tmp, &main).unwrap();
        assert!(w.changed(), "renamed into place");

        std::fs::write(d.0.join("other.yaml"), "x").unwrap();
        assert!(!w.changed(), "another file in the directory");

        // conf.d made after the start is watched from then on.
        std::fs::create_dir(d.0.join("conf.d")).unwrap();
        assert!(w.changed(), "conf.d appeared");
        std::fs::write(d.0.join("conf.d/10-a.yaml"), "scripts: {}\n").unwrap();
        assert!(w.changed(), "an include written");
        std::fs::write(d.0.join("conf.d/notes.txt"), "x").unwrap();
        assert!(!w.changed(), "not an include");
        std::fs::remove_file(d.0.join("conf.d/10-a.yaml")).unwrap();
        assert!(w.changed(), "an include deleted");
        std::fs::remove_file(d.0.join("conf.d/notes.txt")).unwrap();
        assert!(!w.changed(), "not an include");
        std::fs::remove_dir(d.0.join("conf.d")).unwrap();
        assert!(w.changed(), "conf.d deleted");
        assert_eq!(w.include_wd, None);
    }

    /// A ConfigMap volume: `netevd.yaml -> ..data/netevd.yaml`, and an
    /// update swaps `..data` to a new timestamped directory by rename.
    #[test]
    fn a_configmap_swap_is_a_change() {
        use std::os::unix::fs::symlink;
        let d = scratch("configmap");
        std::fs::create_dir(d.0.join("..2026_11_27_1")).unwrap();
        std::fs::write(d.0.join("..2026_11_27_1/netevd.yaml"), "scripts: {}\n").unwrap();
        symlink("..2026_11_27_1", d.0.join("..data")).unwrap();
        symlink("..data/netevd.yaml", d.0.join("netevd.yaml")).unwrap();
        let mut w = Watch::new(&d.0.join("netevd.yaml")).unwrap();
        assert!(!w.changed());

        std::fs::create_dir(d.0.join("..2026_11_27_2")).unwrap();
        std::fs::write(
            d.0.join("..2026_11_27_2/netevd.yaml"),
            "scripts:\n  max_parallel: 3\n",
        )
        .unwrap();
        symlink("..2026_11_27_2", d.0.join("..data_tmp")).unwrap();
        std::fs::rename(d.0.join("..data_tmp"), d.0.join("..data")).unwrap();
        assert!(w.changed(), "..data swapped");
        let text = std::fs::read_to_string(d.0.join("netevd.yaml")).unwrap();
        assert!(text.contains("max_parallel: 3"));
    }

    /// Changes in a storm: one reload per [`MIN_GAP`] at most, each within
    /// [`MAX_WAIT`] of the first change it covers, and the last change
    /// always reloaded.
    #[test]
    fn a_storm_of_changes_is_paced() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut p = Pace::default();
        assert_eq!(p.due(), None);
        assert!(!p.take(ms(10_000)));
        // One edit: reloaded once it settled.
        p.saw(ms(0));
        assert_eq!(p.due(), Some(ms(200)));
        assert!(!p.take(ms(199)));
        assert!(p.take(ms(200)));
        assert!(!p.take(ms(201)), "once");
        // A change every millisecond for ten seconds.
        let mut reloads = Vec::new();
        for n in 300..10_300 {
            p.saw(ms(n));
            if p.take(ms(n)) {
                reloads.push(n);
            }
        }
        let last = reloads.last().copied();
        // then quiet: the last change is reloaded
        let due = p.due().expect("the last change is pending");
        assert!(due <= ms(10_299) + MAX_WAIT.max(MIN_GAP), "{due:?}");
        assert!(p.take(due));
        assert_eq!(p.due(), None);
        assert!(reloads.len() <= 10, "{reloads:?}");
        assert!(reloads.len() >= 4, "followed, not starved: {reloads:?}");
        for w in reloads.windows(2) {
            assert!(w[1] - w[0] >= MIN_GAP.as_millis() as u64, "{reloads:?}");
        }
        assert_eq!(reloads[0], 300 + MAX_WAIT.as_millis() as u64);
        assert!(last.is_some());
        // A lone edit just after a reload waits out the gap.
        let mut p = Pace::default();
        p.saw(ms(0));
        assert!(p.take(ms(200)));
        p.saw(ms(300));
        assert_eq!(p.due(), Some(ms(1200)));
    }

    #[test]
    fn a_missing_directory_is_an_error_naming_it() {
        let e = Watch::new(Path::new("/nonexistent/netevd/netevd.yaml"))
            .err()
            .unwrap()
            .to_string();
        assert!(e.starts_with("cannot watch /nonexistent/netevd: "), "{e}");
    }
}
