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
//! I/O only: inotify(7) through libc. The reactor registers [`Watch::fd`]
//! for reading and calls [`Watch::changed`] when it is ready.

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

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

pub struct Watch {
    fd: OwnedFd,
    dir_wd: i32,
    include_wd: Option<i32>,
    name: OsString,
    include: PathBuf,
    buf: Vec<u8>,
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
        })
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
    pub fn changed(&mut self) -> bool {
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

    #[test]
    fn a_missing_directory_is_an_error_naming_it() {
        let e = Watch::new(Path::new("/nonexistent/netevd/netevd.yaml"))
            .err()
            .unwrap()
            .to_string();
        assert!(e.starts_with("cannot watch /nonexistent/netevd: "), "{e}");
    }
}
