//! The hook directories' listings, cached and never stale: listing
//! `<script_dir>/<state>.d` (opendir, readdir, a stat per entry, a sort)
//! for every event was a quarter of the daemon's CPU in a route burst with
//! a route hook, while the directory almost never changes.
//!
//! One inotify descriptor watches `script_dir` and every `*.d` listed so
//! far. After any input is read (the reactor calls [`HookDirs::input_read`]),
//! the first lookup reads the descriptor to empty (one `read` that usually
//! says EAGAIN), so a change made before the event that is being handled
//! is always seen, even when the loop has not polled since, and the events
//! of one read (a route burst's hundreds) share that one `read`:
//! a hook added, removed, renamed, made executable (chmod does not touch
//! the directory's mtime, but it is IN_ATTRIB on the directory's watch)
//! or written takes effect for the next event exactly as without the
//! cache. What drops what ([`Dirs::event`], pure):
//! - any event on a directory's watch drops its listing;
//! - an event on `script_dir` naming `X` drops the listing of `X` and its
//!   watch (`X` may now be another directory, or a link to one);
//! - the watch of a directory going away (deleted, moved, IN_IGNORED)
//!   drops it; `script_dir`'s going away, or a queue overflow, drops all.
//!
//! A `*.d` that does not exist (or is no directory) is cached as empty
//! only while `script_dir` is watched, which sees it appear. Entries the
//! directory's watch cannot vouch for are checked again at each lookup:
//! symbolic links (their target may change anywhere) and files with more
//! than one link (a chmod through another name is reported to the other
//! directory). Not seen: a directory above `script_dir` renamed or
//! swapped, and a single-link file linked elsewhere after it was listed
//! and then changed through that name.
//!
//! Without inotify, or when a watch cannot be added (ENOSPC: the
//! `fs.inotify.max_user_watches` limit), the directory concerned is listed
//! every time, as before, and the log says so once per directory.
//!
//! I/O: inotify(7) through nix, as the lease watcher does. The reactor
//! registers [`HookDirs::fd`] on its own token and calls
//! [`HookDirs::on_ready`], which drains to EAGAIN.

use std::io;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::libc;
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};

use super::hooks::{is_executable_file, is_hook_name, transient};

/// What every watch reports: entries coming, going, renamed, changing
/// mode or owner, written; the directory itself going away.
const MASK: u32 = libc::IN_CREATE
    | libc::IN_DELETE
    | libc::IN_MOVED_FROM
    | libc::IN_MOVED_TO
    | libc::IN_ATTRIB
    | libc::IN_CLOSE_WRITE
    | libc::IN_DELETE_SELF
    | libc::IN_MOVE_SELF
    | libc::IN_ONLYDIR;

/// The watched directory is gone or no longer at its path.
const GONE: u32 = libc::IN_DELETE_SELF | libc::IN_MOVE_SELF | libc::IN_IGNORED;

/// A watch refused for what the path is (missing, no directory, a link
/// loop, unreadable), not for want of resources: `check_script_dir` warns
/// about these, and `script_dir`'s watch sees them change.
fn path_problem(e: Errno) -> bool {
    matches!(
        e,
        Errno::ENOENT | Errno::ENOTDIR | Errno::EACCES | Errno::ELOOP | Errno::ENAMETOOLONG
    )
}

/// One candidate hook of a cached listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hook {
    pub path: PathBuf,
    /// Whether it must be checked again at each lookup (a symbolic link,
    /// a file with other names): its watch does not see all its changes.
    pub recheck: bool,
}

#[derive(Debug)]
struct Entry<W> {
    dir: PathBuf,
    /// None: no watch of its own (missing, or not a directory), cached
    /// only because `script_dir`'s watch sees it appear.
    wd: Option<W>,
    hooks: Vec<Hook>,
}

/// The cache's bookkeeping, without I/O: which listing an inotify event
/// makes stale. `W` is the watch descriptor (an integer in tests).
#[derive(Debug)]
pub struct Dirs<W> {
    root: PathBuf,
    /// `script_dir`'s watch; nothing is cached without it.
    root_wd: Option<W>,
    entries: Vec<Entry<W>>,
}

impl<W: Copy + Eq> Dirs<W> {
    pub fn new(root: PathBuf) -> Self {
        Dirs {
            root,
            root_wd: None,
            entries: Vec::new(),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn root_wd(&self) -> Option<W> {
        self.root_wd
    }

    pub fn set_root_wd(&mut self, wd: W) {
        self.root_wd = Some(wd);
    }

    pub fn get(&self, dir: &Path) -> Option<&[Hook]> {
        self.entries
            .iter()
            .find(|e| e.dir == dir)
            .map(|e| &e.hooks[..])
    }

    /// Caches `dir`'s listing, made after `wd` (its own watch, if any)
    /// was added. Refused (false) without a watch on `script_dir`, or for
    /// a directory with no watch that `script_dir`'s does not cover.
    pub fn insert(&mut self, dir: &Path, wd: Option<W>, hooks: Vec<Hook>) -> bool {
        if self.root_wd.is_none() || (wd.is_none() && dir.parent() != Some(&self.root)) {
            return false;
        }
        self.entries.retain(|e| e.dir != dir);
        self.entries.push(Entry {
            dir: dir.to_path_buf(),
            wd,
            hooks,
        });
        true
    }

    /// Drops everything; returns the watches to remove.
    pub fn clear(&mut self) -> Vec<W> {
        let mut gone: Vec<W> = self.root_wd.take().into_iter().collect();
        for e in self.entries.drain(..) {
            if let Some(w) = e.wd {
                if !gone.contains(&w) {
                    gone.push(w);
                }
            }
        }
        gone
    }

    /// Applies one inotify event (`mask` as the kernel gives it, `name`
    /// the entry it is about, if any). Returns the watches to remove.
    pub fn event(&mut self, wd: W, mask: u32, name: Option<&[u8]>) -> Vec<W> {
        if mask & libc::IN_Q_OVERFLOW != 0 {
            return self.clear();
        }
        if Some(wd) == self.root_wd && mask & GONE != 0 {
            return self.clear();
        }
        let mut gone = Vec::new();
        let child = match (Some(wd) == self.root_wd, name) {
            (true, Some(n)) if !n.is_empty() => {
                Some(self.root.join(std::ffi::OsStr::from_bytes(n)))
            }
            _ => None,
        };
        self.entries.retain(|e| {
            let hit = e.wd == Some(wd) || child.as_deref() == Some(&e.dir);
            if hit {
                if let Some(w) = e.wd {
                    // The path may now name another inode: watch anew at
                    // the next lookup. A watch shared with script_dir (the
                    // flat layout lists script_dir itself) stays.
                    if Some(w) != self.root_wd && !gone.contains(&w) {
                        gone.push(w);
                    }
                }
            }
            !hit
        });
        // Another entry may share a removed watch (a `*.d` that is a link
        // to another): it loses its listing too.
        if !gone.is_empty() {
            self.entries
                .retain(|e| !e.wd.is_some_and(|w| gone.contains(&w)));
        }
        gone
    }
}

/// Lists `dir` for the cache: the entries that may be hooks, with those
/// the watch cannot vouch for marked to be checked at each lookup.
/// Missing or unusable: none; a transient error is returned.
fn scan(dir: &Path) -> io::Result<Vec<Hook>> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if transient(&e) => return Err(e),
        Err(_) => return Ok(Vec::new()),
    };
    let mut v = Vec::new();
    for e in rd {
        let e = match e {
            Ok(e) => e,
            Err(e) if transient(&e) => return Err(e),
            Err(_) => continue,
        };
        if !is_hook_name(e.file_name().as_bytes()) {
            continue;
        }
        let path = e.path();
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_symlink() {
            v.push(Hook {
                path,
                recheck: true,
            });
            continue;
        }
        // Not followed: the entry is not a link.
        let Ok(m) = e.metadata() else { continue };
        if !m.is_file() {
            continue;
        }
        if m.nlink() > 1 {
            v.push(Hook {
                path,
                recheck: true,
            });
        } else if m.permissions().mode() & 0o111 != 0 {
            v.push(Hook {
                path,
                recheck: false,
            });
        }
    }
    v.sort_by(|a, b| {
        a.path
            .as_os_str()
            .as_bytes()
            .cmp(b.path.as_os_str().as_bytes())
    });
    Ok(v)
}

/// The hooks of a cached listing as `hooks::list` gives them.
fn resolve(hooks: &[Hook]) -> Vec<PathBuf> {
    hooks
        .iter()
        .filter(|h| !h.recheck || is_executable_file(&h.path))
        .map(|h| h.path.clone())
        .collect()
}

/// Counters for status and metrics (the lead wires them).
#[derive(Default, Debug, Clone, Copy)]
pub struct Stats {
    /// Lookups answered from the cache.
    pub hits: u64,
    /// Lookups that listed the directory.
    pub misses: u64,
    /// inotify queue overflows (everything dropped).
    pub overflows: u64,
}

pub struct HookDirs {
    /// None: inotify unavailable; every lookup lists.
    inotify: Option<Inotify>,
    dirs: Dirs<WatchDescriptor>,
    /// Directories the log already said are listed every time.
    warned: Vec<PathBuf>,
    /// The descriptor was read to empty after the last input was read
    /// (`input_read`): a lookup need not read it again.
    drained: bool,
    pub stats: Stats,
}

impl HookDirs {
    /// A cache for `script_dir`'s hook directories; without inotify (said
    /// once in the log) it lists every time.
    pub fn new(script_dir: PathBuf) -> Self {
        let inotify = match Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC) {
            Ok(i) => Some(i),
            Err(e) => {
                log::warn!("hooks: inotify: {e}; hook directories are listed for every event");
                None
            }
        };
        Self::with(inotify, script_dir)
    }

    /// A cache that never caches (for a runner the reactor does not
    /// register, whose descriptor nobody would read).
    pub fn uncached(script_dir: PathBuf) -> Self {
        Self::with(None, script_dir)
    }

    fn with(inotify: Option<Inotify>, script_dir: PathBuf) -> Self {
        HookDirs {
            inotify,
            dirs: Dirs::new(script_dir),
            warned: Vec::new(),
            drained: false,
            stats: Stats::default(),
        }
    }

    /// The descriptor to register for reading, if any.
    pub fn fd(&self) -> Option<RawFd> {
        self.inotify.as_ref().map(|i| i.as_fd().as_raw_fd())
    }

    /// A reload: every listing and watch goes, and the watches are made
    /// again as directories are listed (`script_dir` may be another, or a
    /// directory above it replaced, which no watch sees).
    pub fn set_script_dir(&mut self, script_dir: &Path) {
        let gone = self.dirs.clear();
        self.unwatch(&gone);
        self.dirs = Dirs::new(script_dir.to_path_buf());
    }

    fn unwatch(&self, wds: &[WatchDescriptor]) {
        if let Some(i) = &self.inotify {
            for w in wds {
                // EINVAL: the kernel removed it already (IN_IGNORED).
                let _ = i.rm_watch(*w);
            }
        }
    }

    /// An input (a netlink message, a bus signal, a lease, a request) was
    /// read: the next lookup reads the descriptor first, so that a change
    /// made before that input is seen. Lookups for the events of one read
    /// share one drain: a route burst costs one read(2) per batch, not per
    /// event.
    pub fn input_read(&mut self) {
        self.drained = false;
    }

    /// Reads every pending event and drops what they make stale.
    pub fn on_ready(&mut self) {
        let Some(i) = &self.inotify else { return };
        self.drained = true;
        let mut gone = Vec::new();
        loop {
            match i.read_events() {
                Ok(evs) => {
                    for ev in evs {
                        let mask = ev.mask.bits();
                        if mask & libc::IN_Q_OVERFLOW != 0 {
                            self.stats.overflows += 1;
                            log::debug!(
                                "hooks: inotify queue overflow; hook directories listed anew"
                            );
                        }
                        let name = ev.name.as_ref().map(|n| n.as_bytes());
                        gone.extend(self.dirs.event(ev.wd, mask, name));
                    }
                }
                Err(Errno::EINTR) => {}
                Err(Errno::EAGAIN) => break,
                Err(e) => {
                    // Nothing read can be trusted: drop all, list anew.
                    log::warn!("hooks: reading inotify: {e}; hook directories listed anew");
                    gone.extend(self.dirs.clear());
                    break;
                }
            }
        }
        self.unwatch(&gone);
    }

    fn add_watch(&mut self, dir: &Path) -> Result<WatchDescriptor, Errno> {
        let i = self.inotify.as_ref().ok_or(Errno::ENOSYS)?;
        i.add_watch(dir, AddWatchFlags::from_bits_retain(MASK))
    }

    fn warn_once(&mut self, dir: &Path, e: Errno) {
        if !self.warned.iter().any(|w| w == dir) {
            self.warned.push(dir.to_path_buf());
            let hint = if e == Errno::ENOSPC {
                " (fs.inotify.max_user_watches)"
            } else {
                ""
            };
            log::warn!(
                "hooks: cannot watch {}: {e}{hint}; it is listed for every event",
                dir.display()
            );
        }
    }

    /// The hooks in `dir`, as [`super::hooks::list`] would list them now.
    pub fn list(&mut self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        if self.inotify.is_none() {
            return super::hooks::list(dir);
        }
        if !self.drained {
            self.on_ready();
        }
        if let Some(h) = self.dirs.get(dir) {
            self.stats.hits += 1;
            return Ok(resolve(h));
        }
        self.stats.misses += 1;
        if self.dirs.root_wd().is_none() {
            let root = self.dirs.root().to_path_buf();
            match self.add_watch(&root) {
                Ok(w) => self.dirs.set_root_wd(w),
                // check_script_dir says why it is missing or unusable.
                Err(e) if path_problem(e) => return super::hooks::list(dir),
                Err(e) => {
                    self.warn_once(&root, e);
                    return super::hooks::list(dir);
                }
            }
        }
        // The watch comes first: a change after it is queued, and read
        // before the next lookup, so the listing below is never kept stale.
        let wd = if dir == self.dirs.root() {
            self.dirs.root_wd()
        } else {
            match self.add_watch(dir) {
                Ok(w) => Some(w),
                // script_dir's watch sees it appear or change.
                Err(e) if path_problem(e) => None,
                Err(e) => {
                    self.warn_once(dir, e);
                    return super::hooks::list(dir);
                }
            }
        };
        let hooks = match scan(dir) {
            Ok(h) => h,
            Err(e) => {
                if let Some(w) = wd.filter(|w| Some(*w) != self.dirs.root_wd()) {
                    self.unwatch(&[w]);
                }
                return Err(e);
            }
        };
        let out = resolve(&hooks);
        if !self.dirs.insert(dir, wd, hooks) {
            if let Some(w) = wd.filter(|w| Some(*w) != self.dirs.root_wd()) {
                self.unwatch(&[w]);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(p: &str) -> Vec<Hook> {
        vec![Hook {
            path: PathBuf::from(p),
            recheck: false,
        }]
    }

    /// script_dir /h watched as 1; up.d as 2, down.d as 3.
    fn cache() -> Dirs<i32> {
        let mut d = Dirs::new(PathBuf::from("/h"));
        d.set_root_wd(1);
        assert!(d.insert(Path::new("/h/up.d"), Some(2), hook("/h/up.d/a")));
        assert!(d.insert(Path::new("/h/down.d"), Some(3), hook("/h/down.d/a")));
        d
    }

    fn cached(d: &Dirs<i32>, p: &str) -> bool {
        d.get(Path::new(p)).is_some()
    }

    #[test]
    fn a_change_in_a_directory_drops_only_its_listing() {
        for mask in [
            libc::IN_CREATE,
            libc::IN_DELETE,
            libc::IN_MOVED_FROM,
            libc::IN_MOVED_TO,
            libc::IN_ATTRIB,
            libc::IN_CLOSE_WRITE,
        ] {
            let mut d = cache();
            assert_eq!(d.event(2, mask, Some(b"b")), vec![2], "mask {mask:#x}");
            assert!(!cached(&d, "/h/up.d"));
            assert!(cached(&d, "/h/down.d"));
            assert_eq!(d.root_wd(), Some(1));
        }
    }

    #[test]
    fn a_directory_gone_or_replaced_drops_it_and_its_watch() {
        let mut d = cache();
        assert_eq!(d.event(2, libc::IN_DELETE_SELF, None), vec![2]);
        assert!(!cached(&d, "/h/up.d"));
        // The IN_IGNORED that follows is about a watch no longer known.
        assert!(d.event(2, libc::IN_IGNORED, None).is_empty());
        assert!(cached(&d, "/h/down.d"));

        // Renamed over, seen from script_dir only.
        let mut d = cache();
        assert_eq!(
            d.event(1, libc::IN_MOVED_TO | libc::IN_ISDIR, Some(b"up.d")),
            vec![2]
        );
        assert!(!cached(&d, "/h/up.d"));
        assert!(cached(&d, "/h/down.d"));
        // Its mode changed: the listing may differ (it may be unreadable).
        let mut d = cache();
        assert_eq!(
            d.event(1, libc::IN_ATTRIB | libc::IN_ISDIR, Some(b"down.d")),
            vec![3]
        );
        assert!(cached(&d, "/h/up.d"));
        // Something else in script_dir: nothing cached is about it.
        let mut d = cache();
        assert!(d.event(1, libc::IN_CREATE, Some(b"README")).is_empty());
        assert!(cached(&d, "/h/up.d") && cached(&d, "/h/down.d"));
    }

    #[test]
    fn script_dir_gone_or_an_overflow_drops_everything() {
        for (wd, mask) in [
            (1, libc::IN_DELETE_SELF),
            (1, libc::IN_MOVE_SELF),
            (1, libc::IN_IGNORED),
            (-1, libc::IN_Q_OVERFLOW),
        ] {
            let mut d = cache();
            let mut gone = d.event(wd, mask, None);
            gone.sort();
            assert_eq!(gone, vec![1, 2, 3], "wd {wd} mask {mask:#x}");
            assert!(!cached(&d, "/h/up.d") && !cached(&d, "/h/down.d"));
            assert_eq!(d.root_wd(), None);
            // Nothing is cached until script_dir is watched again.
            assert!(!d.insert(Path::new("/h/up.d"), Some(4), vec![]));
        }
    }

    #[test]
    fn a_missing_directory_is_cached_only_under_script_dirs_watch() {
        let mut d: Dirs<i32> = Dirs::new(PathBuf::from("/h"));
        assert!(!d.insert(Path::new("/h/up.d"), None, vec![]));
        d.set_root_wd(1);
        assert!(d.insert(Path::new("/h/up.d"), None, vec![]));
        // Deeper than script_dir's children: its watch would not see it.
        assert!(!d.insert(Path::new("/h/x/up.d"), None, vec![]));
        assert!(d
            .event(1, libc::IN_CREATE | libc::IN_ISDIR, Some(b"up.d"))
            .is_empty());
        assert!(!cached(&d, "/h/up.d"));
    }

    #[test]
    fn the_flat_layout_shares_script_dirs_watch() {
        let mut d: Dirs<i32> = Dirs::new(PathBuf::from("/h"));
        d.set_root_wd(1);
        assert!(d.insert(Path::new("/h"), Some(1), hook("/h/a")));
        // A hook chmodded in script_dir: the listing goes, the watch stays.
        assert!(d.event(1, libc::IN_ATTRIB, Some(b"a")).is_empty());
        assert!(!cached(&d, "/h"));
        assert_eq!(d.root_wd(), Some(1));
    }

    #[test]
    fn two_names_for_one_directory_share_its_watch() {
        // down.d is a link to up.d: inotify gives the same descriptor.
        let mut d = cache();
        assert!(d.insert(Path::new("/h/down.d"), Some(2), hook("/h/down.d/a")));
        assert_eq!(d.event(2, libc::IN_CREATE, Some(b"b")), vec![2]);
        assert!(!cached(&d, "/h/up.d") && !cached(&d, "/h/down.d"));
        // Retargeting the link drops the watch both names shared.
        let mut d = cache();
        assert!(d.insert(Path::new("/h/down.d"), Some(2), hook("/h/down.d/a")));
        assert_eq!(d.event(1, libc::IN_CREATE, Some(b"down.d")), vec![2]);
        assert!(!cached(&d, "/h/up.d") && !cached(&d, "/h/down.d"));
    }

    /// The events of one read share one read of the inotify queue: a change
    /// made after that read counts from the next input on, as it would for
    /// an event read after it.
    #[test]
    fn one_read_of_the_queue_per_input_read() {
        let root = std::env::temp_dir().join(format!("netevd-hookdirs1-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let up = root.join("up.d");
        std::fs::create_dir_all(&up).unwrap();
        let mut c = HookDirs::new(root.clone());
        if c.fd().is_none() {
            eprintln!("no inotify here; skipped");
            return;
        }
        c.input_read();
        assert!(c.list(&up).unwrap().is_empty());
        std::fs::write(up.join("a"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(up.join("a"), std::fs::Permissions::from_mode(0o755)).unwrap();
        // The same read's next event: the queue is not read again.
        assert!(c.list(&up).unwrap().is_empty());
        c.input_read();
        assert_eq!(c.list(&up).unwrap(), [up.join("a")]);
        let _ = std::fs::remove_dir_all(&root);
    }

    /// Real directories: every change the brief names is seen at the next
    /// lookup after an input is read, with no poll in between.
    #[test]
    fn lookups_follow_the_directory_exactly() {
        let root = std::env::temp_dir().join(format!("netevd-hookdirs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let up = root.join("up.d");
        std::fs::create_dir_all(&up).unwrap();
        let mut c = HookDirs::new(root.clone());
        if c.fd().is_none() {
            eprintln!("no inotify here; skipped");
            return;
        }
        // Each lookup is for an event read after the change before it.
        let names = |c: &mut HookDirs, d: &Path| -> Vec<String> {
            c.input_read();
            c.list(d)
                .unwrap()
                .iter()
                .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
                .collect()
        };
        let write = |p: &Path, mode: u32| {
            std::fs::write(p, "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
        };
        assert!(names(&mut c, &up).is_empty());
        write(&up.join("10-a"), 0o755);
        assert_eq!(names(&mut c, &up), ["10-a"]);
        assert_eq!(names(&mut c, &up), ["10-a"]);
        write(&up.join("20-b"), 0o644);
        assert_eq!(names(&mut c, &up), ["10-a"]);
        std::fs::set_permissions(up.join("20-b"), std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(names(&mut c, &up), ["10-a", "20-b"]);
        std::fs::rename(up.join("10-a"), up.join("30-a")).unwrap();
        assert_eq!(names(&mut c, &up), ["20-b", "30-a"]);
        std::fs::remove_file(up.join("20-b")).unwrap();
        assert_eq!(names(&mut c, &up), ["30-a"]);
        // A missing directory appears.
        let down = root.join("down.d");
        assert!(names(&mut c, &down).is_empty());
        std::fs::create_dir(&down).unwrap();
        write(&down.join("x"), 0o755);
        assert_eq!(names(&mut c, &down), ["x"]);
        // The whole directory replaced.
        let new = root.join("new");
        std::fs::create_dir(&new).unwrap();
        write(&new.join("y"), 0o755);
        std::fs::remove_dir_all(&up).unwrap();
        std::fs::rename(&new, &up).unwrap();
        assert_eq!(names(&mut c, &up), ["y"]);
        // A symbolic link whose target is chmodded elsewhere.
        let target = root.join("target");
        write(&target, 0o644);
        std::os::unix::fs::symlink(&target, up.join("z")).unwrap();
        assert_eq!(names(&mut c, &up), ["y"]);
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(names(&mut c, &up), ["y", "z"]);
        assert!(c.stats.hits > 0 && c.stats.misses > 0);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
