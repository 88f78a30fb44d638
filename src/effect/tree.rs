//! Process trees: reaping every child, and killing a hook with
//! everything it started. No knowledge of hooks here: pids in, signals
//! out.
//!
//! A hook is started as a child subreaper (the attribute survives
//! execve), so its double-forked, setsid'd descendants stay below it while
//! it runs, where [`kill_tree`] finds them by walking /proc; netevd (and
//! the spawner) are subreapers too, so whatever a hook leaves behind when
//! it exits is theirs to reap ([`reap_all`]).

use std::os::unix::ffi::OsStrExt;

use nix::errno::Errno;
use nix::libc;
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

/// Reaps every child that has exited, hooks or not: the pid and the raw
/// wait status of each.
pub fn reap_all() -> Vec<(u32, i32)> {
    let mut v = Vec::new();
    loop {
        let mut status = 0;
        // SAFETY: waitpid with a valid status pointer.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid > 0 {
            v.push((pid as u32, status));
            continue;
        }
        if pid < 0 && Errno::last() == Errno::EINTR {
            continue;
        }
        return v;
    }
}

/// Whether /proc is this PID namespace's: under `unshare --pid` without
/// `--mount-proc`, /proc shows another namespace's processes, and their
/// pids must never be signalled.
fn proc_is_ours() -> bool {
    std::fs::read_link("/proc/self")
        .map(|p| p.as_os_str().as_bytes() == std::process::id().to_string().as_bytes())
        .unwrap_or(false)
}

/// The parent of every process in /proc.
fn parents() -> Vec<(u32, u32)> {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut v = Vec::new();
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if let Ok(stat) = std::fs::read(e.path().join("stat")) {
            if let Some(ppid) = stat_ppid(&stat) {
                v.push((pid, ppid));
            }
        }
    }
    v
}

/// The parent pid in a /proc/<pid>/stat line: the fourth field, counted
/// after the command name's closing parenthesis (the name may hold
/// spaces and parentheses itself).
fn stat_ppid(stat: &[u8]) -> Option<u32> {
    let close = stat.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(&stat[close + 1..]).ok()?;
    rest.split_ascii_whitespace().nth(1)?.parse().ok()
}

/// Every process below `root` in `tree` (pid, parent pid), root excluded.
fn descendants(root: u32, tree: &[(u32, u32)]) -> Vec<u32> {
    let mut out = Vec::new();
    let mut frontier = vec![root];
    while let Some(p) = frontier.pop() {
        for &(c, pp) in tree {
            if pp == p && c != root && !out.contains(&c) {
                out.push(c);
                frontier.push(c);
            }
        }
    }
    out
}

/// Sends `sig` to a hook and everything it started, wherever it went:
/// its process group, and every descendant found in /proc (a setsid'd
/// child has left the group, but a hook is a subreaper, so a
/// double-forked grandchild is still below it while it runs). For SIGKILL
/// the tree is first frozen with SIGSTOP, round after round until a scan
/// finds nothing new, so nothing forks its way out between scan and kill.
pub fn kill_tree(root: u32, sig: Signal) {
    let pid = |p: u32| Pid::from_raw(p as i32);
    let mut all: Vec<u32> = Vec::new();
    if proc_is_ours() {
        let stop = sig == Signal::SIGKILL;
        if stop {
            let _ = kill(pid(root), Signal::SIGSTOP);
        }
        for _ in 0..64 {
            let found = descendants(root, &parents());
            let new: Vec<u32> = found.into_iter().filter(|p| !all.contains(p)).collect();
            if new.is_empty() {
                break;
            }
            for &p in &new {
                let _ = kill(pid(p), if stop { Signal::SIGSTOP } else { sig });
            }
            all.extend(new);
            if !stop {
                break;
            }
        }
    }
    if let Err(e) = killpg(pid(root), sig) {
        if e != Errno::ESRCH {
            log::warn!("hooks: kill process group {root}: {e}");
        }
    }
    let _ = kill(pid(root), sig);
    for p in all {
        let _ = kill(pid(p), sig);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines() {
        assert_eq!(stat_ppid(b"42 (sh) S 7 42 42 0"), Some(7));
        assert_eq!(stat_ppid(b"42 (a) b) (c) R 9 1"), Some(9));
        assert_eq!(stat_ppid(b"42 sh S 7"), None);
        let tree = [(2, 1), (3, 2), (4, 3), (5, 1), (6, 4)];
        let mut d = descendants(2, &tree);
        d.sort();
        assert_eq!(d, vec![3, 4, 6]);
        assert!(descendants(5, &tree).is_empty());
    }
}
