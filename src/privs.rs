//! Least privilege: the one-way drop from root to `system.user`, keeping
//! CAP_NET_ADMIN only when something the configuration asks for needs it
//! (policy routing today), and making the process a child subreaper.
//!
//! Order matters and is checked, not hoped for:
//! - The drop happens before the loop reads its first netlink message and
//!   after everything that needs root was opened (the netlink socket with
//!   its forced receive buffer, the control socket in /run/netevd, the
//!   spawner's socketpair).
//! - Capabilities are per thread (capset(2) changes the caller's thread
//!   only), so the drop refuses to run unless /proc/self/status says
//!   `Threads: 1`.
//! - The bounding set is cut first (PR_CAPBSET_DROP needs CAP_SETPCAP,
//!   which the uid change takes away), then the groups, gid and uid with
//!   PR_SET_KEEPCAPS so the permitted set survives setresuid(2), then
//!   capset(2) leaves permitted = effective = {CAP_NET_ADMIN} or nothing.
//!   Inheritable and ambient stay empty: the loop never executes anything
//!   (hooks are the spawner's), and PR_SET_NO_NEW_PRIVS says so.
//!
//! The drop itself is built with the `privsep` feature; looking users up
//! and the subreaper are always there.
//!
//! No crate wraps capset(2) small enough to be worth it; the two structs
//! below are the kernel's ABI (linux/capability.h, version 3).

use std::ffi::CString;
use std::fmt;
use std::io;

use nix::libc;
#[cfg(feature = "privsep")]
use nix::unistd::Uid;
use nix::unistd::{Gid, User};

/// CAP_NET_ADMIN's bit in the capability sets.
#[cfg(feature = "privsep")]
pub const CAP_NET_ADMIN: u32 = 12;

#[cfg(feature = "privsep")]
const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

#[cfg(feature = "privsep")]
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[cfg(feature = "privsep")]
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

#[cfg(feature = "privsep")]
/// Whether the loop needs CAP_NET_ADMIN after the drop: for policy
/// routing's rules and routes (resolved and hostnamed calls go over DBus
/// and need it from polkit's view only when they come).
pub fn needs_net_admin(c: &crate::config::Config) -> bool {
    !c.policy.ifaces.is_empty()
}

/// A user to become: resolved once, at start.
#[derive(Clone, Debug)]
pub struct Account {
    // Named in the drop's log line.
    #[cfg_attr(not(feature = "privsep"), allow(dead_code))]
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups from the group database (initgroups(3)).
    pub groups: Vec<u32>,
}

#[derive(Debug)]
pub struct Error(String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn fail(what: &str, e: impl fmt::Display) -> Error {
    Error(format!("{what}: {e}"))
}

/// Looks `name` up in the user database, with its groups.
pub fn account(name: &str, what: &str) -> Result<Account, Error> {
    let u = match User::from_name(name) {
        Ok(Some(u)) => u,
        Ok(None) => {
            return Err(Error(format!(
                "{what}: there is no user {name:?} (create it, e.g. useradd --system {name})"
            )))
        }
        Err(e) => return Err(fail(&format!("{what}: looking up {name:?}"), e)),
    };
    let cname = CString::new(name).map_err(|e| fail(what, e))?;
    let groups = nix::unistd::getgrouplist(&cname, u.gid)
        .map(|g| g.into_iter().map(Gid::as_raw).collect())
        .unwrap_or_else(|_| vec![u.gid.as_raw()]);
    Ok(Account {
        name: name.to_string(),
        uid: u.uid.as_raw(),
        gid: u.gid.as_raw(),
        groups,
    })
}

/// The value of `field` (e.g. `Threads`, `CapEff`) in a
/// /proc/<pid>/status text.
#[cfg(any(feature = "privsep", test))]
pub fn status_field<'a>(status: &'a str, field: &str) -> Option<&'a str> {
    status.lines().find_map(|l| {
        l.strip_prefix(field)
            .and_then(|r| r.strip_prefix(':'))
            .map(str::trim)
    })
}

#[cfg(feature = "privsep")]
fn threads() -> Result<u64, Error> {
    let s = std::fs::read_to_string("/proc/self/status")
        .map_err(|e| fail("reading /proc/self/status", e))?;
    status_field(&s, "Threads")
        .and_then(|t| t.parse().ok())
        .ok_or_else(|| Error("/proc/self/status has no Threads line".into()))
}

#[cfg(feature = "privsep")]
/// The highest capability this kernel knows.
fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
}

fn prctl(op: libc::c_int, arg: libc::c_ulong) -> io::Result<()> {
    // SAFETY: prctl with integer arguments only.
    if unsafe {
        libc::prctl(
            op,
            arg,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    } < 0
    {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Makes this process a child subreaper: orphans of its descendants
/// (a hook's double-forked daemon) become its children, so it can reap
/// them, instead of going to an init that may never do so.
pub fn become_subreaper() -> io::Result<()> {
    prctl(libc::PR_SET_CHILD_SUBREAPER, 1)
}

#[cfg(feature = "privsep")]
fn capset(bits: u64) -> io::Result<()> {
    let mut hdr = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let data = [
        CapData {
            effective: bits as u32,
            permitted: bits as u32,
            inheritable: 0,
        },
        CapData {
            effective: (bits >> 32) as u32,
            permitted: (bits >> 32) as u32,
            inheritable: 0,
        },
    ];
    // SAFETY: the header and two data structs are the v3 ABI; the kernel
    // only reads them.
    let r = unsafe { libc::syscall(libc::SYS_capset, &mut hdr as *mut CapHeader, data.as_ptr()) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(feature = "privsep")]
/// Becomes `acct` for good, keeping CAP_NET_ADMIN (effective and
/// permitted) only if `net_admin`, and nothing else in any set, the
/// bounding set included. Returns the capabilities kept, for the log.
pub fn drop_to(acct: &Account, net_admin: bool) -> Result<&'static str, Error> {
    match threads()? {
        1 => {}
        n => {
            return Err(Error(format!(
                "cannot drop privileges with {n} threads running (capabilities are per thread)"
            )))
        }
    }
    let keep = if net_admin { 1u64 << CAP_NET_ADMIN } else { 0 };
    for cap in 0..=last_cap() {
        if keep & (1 << cap) != 0 {
            continue;
        }
        match prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong) {
            Ok(()) => {}
            // A capability this kernel does not have.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
            Err(e) => {
                return Err(fail(
                    &format!("dropping capability {cap} from the bounding set"),
                    e,
                ))
            }
        }
    }
    prctl(libc::PR_SET_KEEPCAPS, 1).map_err(|e| fail("PR_SET_KEEPCAPS", e))?;
    let groups: Vec<Gid> = acct.groups.iter().map(|&g| Gid::from_raw(g)).collect();
    nix::unistd::setgroups(&groups).map_err(|e| fail("setgroups", e))?;
    let gid = Gid::from_raw(acct.gid);
    nix::unistd::setresgid(gid, gid, gid).map_err(|e| fail("setresgid", e))?;
    let uid = Uid::from_raw(acct.uid);
    nix::unistd::setresuid(uid, uid, uid).map_err(|e| fail("setresuid", e))?;
    capset(keep).map_err(|e| fail("capset", e))?;
    prctl(libc::PR_SET_KEEPCAPS, 0).map_err(|e| fail("PR_SET_KEEPCAPS", e))?;
    prctl(libc::PR_SET_NO_NEW_PRIVS, 1).map_err(|e| fail("PR_SET_NO_NEW_PRIVS", e))?;
    // Check, do not trust: a uid 0 left anywhere undoes everything.
    let (r, e, s) = (
        nix::unistd::getuid(),
        nix::unistd::geteuid(),
        nix::unistd::getresuid()
            .map(|r| r.saved)
            .unwrap_or(Uid::from_raw(0)),
    );
    if acct.uid != 0 && (r.is_root() || e.is_root() || s.is_root()) {
        return Err(Error("still uid 0 after setresuid".into()));
    }
    Ok(if net_admin { "CAP_NET_ADMIN" } else { "none" })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_fields() {
        let s =
            "Name:\tnetevd\nThreads:\t1\nCapEff:\t0000000000001000\nCapBnd:\t0000000000001000\n";
        assert_eq!(status_field(s, "Threads"), Some("1"));
        assert_eq!(status_field(s, "CapEff"), Some("0000000000001000"));
        assert_eq!(status_field(s, "Cap"), None);
        assert_eq!(status_field(s, "Uid"), None);
    }

    #[test]
    fn accounts() {
        let root = account("root", "system.user").unwrap();
        assert_eq!((root.uid, root.gid), (0, 0));
        assert!(root.groups.contains(&0));
        let e = account("no-such-user-netevd", "system.user").unwrap_err();
        assert!(e.to_string().contains("there is no user"), "{e}");
    }
}
