//! The kernel source: one rtnetlink socket subscribed to links, IPv4/IPv6
//! addresses, routes and rules; dumps to (re)synchronise; sending the
//! requests it is handed as bytes.
//!
//! The format lives in `wire` (splitting, decoding, encoding); this module
//! does I/O on its socket and the dump bookkeeping, and nothing else: it
//! never interprets what it decodes or sends.
//!
//! Resynchronisation: subscribe first, then dump (iproute2's rtmon). On
//! ENOBUFS the kernel has dropped notifications: drain the socket, then
//! dump everything again between `ResyncBegin` and `ResyncEnd`, and the
//! core reconciles. A dump starts only after the socket was drained, so
//! nothing read inside the bracket predates the dump request.
//!
//! Overflow with backoff: an ENOBUFS grows the receive buffer to its
//! largest at once (with SO_RCVBUFFORCE, `system.netlink_receive_buffer_max`):
//! the size is a limit, not memory the kernel sets aside, so it costs only
//! what is queued, while each overrun costs a full dump. And a
//! resync that overflows again (during the resync, or within a second of
//! the last overrun) waits before dumping again, 50 ms doubling to 5 s;
//! a quiet second resets the wait. A sustained burst would otherwise start
//! a resync per overrun (3,710 in 2.8 s were seen), each dump adding to
//! the flood it is trying to recover from. The caller owns the clock:
//! `read` and `retry_at` take `now`, and the reactor's timer heap wakes
//! the loop when the wait is over.
//!
//! Without route monitoring (`monitoring.routes: none`) the socket joins
//! no route group and dumps no routes: a full table costs nothing.

pub mod wire;

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

use crate::core::types::*;
use wire::*;

// rtnetlink multicast groups (`enum rtnetlink_groups`).
const RTNLGRP_LINK: u32 = 1;
const RTNLGRP_IPV4_IFADDR: u32 = 5;
const RTNLGRP_IPV4_ROUTE: u32 = 7;
const RTNLGRP_IPV4_RULE: u32 = 8;
const RTNLGRP_IPV6_IFADDR: u32 = 9;
const RTNLGRP_IPV6_ROUTE: u32 = 11;
const RTNLGRP_IPV6_RULE: u32 = 19;

/// One datagram's room at first: a dump part is at most 32 KiB in
/// practice, and a notification is one message. A link with the most and
/// longest alternative names the kernel allows is larger (67 KiB): a
/// datagram that does not fit grows the slots to the next power of two
/// that holds it, up to `SLOT_MAX`.
const SLOT: usize = 64 * 1024;
const SLOT_MAX: usize = 1 << 20;

/// Outside dumps one recvmmsg(2) fills as many of `SLOTS` slots as there
/// are datagrams waiting: a notification is one datagram, so a burst costs
/// one system call per `SLOTS` messages, and a call that fills fewer slots
/// says the socket is empty without the extra call that returns EAGAIN.
/// The buffer is allocated once and zeroed lazily by the kernel: a slot's
/// pages become resident only as far as datagrams reach into them (a
/// notification touches one page of its slot). A datagram larger than its
/// slot arrives cut short, which the kernel flags: it counts as lost, the
/// slots grow to hold its size, and the tables are dumped again. Dumps read
/// into the first slot alone, each part's size looked at first (MSG_PEEK),
/// so a dump is never cut.
const SLOTS: usize = 4;

/// Datagrams read per turn of the loop: a flood of kernel messages must
/// not keep signals, timers and other sources waiting. What is left is
/// read on the next turn (`more`).
const READ_BUDGET: usize = 256;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dump {
    Links,
    Addrs,
    Routes,
    Rules,
}

const ALL_DUMPS: [Dump; 4] = [Dump::Links, Dump::Addrs, Dump::Routes, Dump::Rules];

/// The first wait before a resync that overflowed again, and the longest.
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// An overrun this long after the last one starts afresh: at once.
const QUIET: Duration = Duration::from_secs(1);

/// Counters for status and metrics.
#[derive(Default, Debug, Clone, Copy)]
pub struct Stats {
    pub messages: u64,
    pub overflows: u64,
    pub decode_errors: u64,
    pub resyncs_started: u64,
    /// The receive buffer the kernel reports (it doubles the request for
    /// its bookkeeping), in bytes.
    pub rcvbuf: u64,
}

/// How the socket is set up: the receive buffer's first and largest size,
/// and whether routes are followed at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    pub rcvbuf: usize,
    pub rcvbuf_max: usize,
    pub routes: bool,
}

/// One datagram of a `recv_slots` batch.
#[derive(Clone, Copy, Default)]
struct Got {
    len: usize,
    /// Larger than its slot (MSG_TRUNC): its end was dropped.
    cut: bool,
    /// From the kernel (port 0), the only sender this socket listens to.
    kernel: bool,
}

pub struct Netlink {
    sock: Socket,
    buf: Vec<u8>,
    /// The size of each of the `SLOTS` slots `buf` is cut into.
    slot: usize,
    got: [Got; SLOTS],
    seq: u32,
    /// The dump in flight and its sequence number.
    dumping: Option<(Dump, u32)>,
    /// The dumps still to send in the current resync.
    queue: VecDeque<Dump>,
    /// Notifications were lost, or a dump was interrupted: resync again.
    resync_wanted: bool,
    /// The read budget ran out before the socket was empty.
    more: bool,
    /// A dump of the current resync failed: the bracket stays open and
    /// starts over, so the core never reconciles against a partial dump.
    dump_failed: bool,
    /// Answers to our change requests: (sequence number, 0 or -errno).
    pub acks: Vec<(u32, i32)>,
    pub stats: Stats,
    settings: Settings,
    /// The receive buffer last asked for.
    rcvbuf: usize,
    /// A resync bracket is open (ResyncBegin sent, ResyncEnd not yet).
    in_resync: bool,
    /// Overruns in a row (each within `QUIET` of the last, or during a
    /// resync); each doubles the wait.
    failures: u32,
    last_overrun: Option<Instant>,
    /// No resync starts before this.
    not_before: Option<Instant>,
}

impl Netlink {
    /// Opens and subscribes. The receive buffer may exceed
    /// `net.core.rmem_max` as root (SO_RCVBUFFORCE).
    pub fn open(settings: Settings) -> io::Result<Self> {
        let mut sock = Socket::new(NETLINK_ROUTE)?;
        sock.bind(&SocketAddr::new(0, 0))?;
        for g in [
            RTNLGRP_LINK,
            RTNLGRP_IPV4_IFADDR,
            RTNLGRP_IPV6_IFADDR,
            RTNLGRP_IPV4_RULE,
            RTNLGRP_IPV6_RULE,
        ] {
            sock.add_membership(g)?;
        }
        sock.set_non_blocking(true)?;
        let mut nl = Netlink {
            sock,
            buf: vec![0; SLOT * SLOTS],
            slot: SLOT,
            got: [Got::default(); SLOTS],
            seq: 0,
            dumping: None,
            queue: VecDeque::new(),
            resync_wanted: true,
            more: false,
            dump_failed: false,
            acks: Vec::new(),
            stats: Stats::default(),
            settings: Settings {
                routes: false,
                ..settings
            },
            rcvbuf: settings.rcvbuf,
            in_resync: false,
            failures: 0,
            last_overrun: None,
            not_before: None,
        };
        nl.set_routes(settings.routes)?;
        nl.stats.rcvbuf = set_rcvbuf(nl.fd(), nl.rcvbuf);
        Ok(nl)
    }

    /// New settings (a reload): routes are followed or dropped at once
    /// (following them again resyncs); the buffer takes the new bounds
    /// at the next overrun, or at once if it is now above the largest.
    pub fn set_settings(&mut self, s: Settings) -> io::Result<()> {
        self.set_routes(s.routes)?;
        self.settings = s;
        if self.rcvbuf > s.rcvbuf_max.max(s.rcvbuf) {
            self.rcvbuf = s.rcvbuf_max.max(s.rcvbuf);
            self.stats.rcvbuf = set_rcvbuf(self.fd(), self.rcvbuf);
        }
        Ok(())
    }

    /// Joins or leaves the route groups. Joining resyncs, so that routes
    /// made meanwhile are known.
    fn set_routes(&mut self, on: bool) -> io::Result<()> {
        if on == self.settings.routes {
            return Ok(());
        }
        for g in [RTNLGRP_IPV4_ROUTE, RTNLGRP_IPV6_ROUTE] {
            if on {
                self.sock.add_membership(g)?;
            } else {
                self.sock.drop_membership(g)?;
            }
        }
        self.settings.routes = on;
        if on {
            self.resync_wanted = true;
        }
        Ok(())
    }

    pub fn fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }

    /// Reads until the socket is empty; decoded inputs are appended to
    /// `out`. Starts a resync when one is wanted, none is running and no
    /// backoff holds it (`now` is the caller's clock).
    pub fn read(&mut self, out: &mut Vec<Input>, now: Instant) -> io::Result<()> {
        self.more = true;
        let mut budget = READ_BUDGET;
        while budget > 0 {
            // A dump's parts (up to 32 KiB each) one at a time; otherwise
            // up to SLOTS notifications and acks at once.
            let batch = self.dumping.is_none();
            let r = if batch {
                self.recv_slots()
            } else {
                self.recv_one()
            };
            match r {
                Ok(got) => {
                    budget = budget.saturating_sub(got.max(1));
                    let mut cut = 0;
                    for i in 0..got {
                        let g = self.got[i];
                        if !g.kernel {
                            // Only the kernel speaks on this socket.
                        } else if g.cut {
                            cut = cut.max(g.len);
                        } else {
                            let at = i * self.slot;
                            self.datagram(at..at + g.len, out);
                        }
                    }
                    // After the batch: growing replaces the buffer.
                    if cut > 0 {
                        self.cut_short(cut);
                    }
                    if batch && got < SLOTS {
                        // Fewer datagrams than slots: the socket is empty.
                        self.more = false;
                        break;
                    }
                }
                Err(e) if e.raw_os_error() == Some(nix::libc::ENOBUFS) => {
                    budget -= 1;
                    self.overrun(now);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.more = false;
                    break;
                }
                Err(e) => {
                    self.more = false;
                    return Err(e);
                }
            }
        }
        if self.more {
            return Ok(());
        }
        if (self.resync_wanted || self.dump_failed)
            && self.dumping.is_none()
            && self.not_before.map_or(true, |t| now >= t)
        {
            // Everything queued before this point has been read, so nothing
            // read inside the bracket predates the dump. A second
            // ResyncBegin in an open bracket starts its marks afresh.
            self.resync_wanted = false;
            self.dump_failed = false;
            self.not_before = None;
            self.stats.resyncs_started += 1;
            self.in_resync = true;
            out.push(Input::ResyncBegin);
            let routes = self.settings.routes;
            self.queue = ALL_DUMPS
                .into_iter()
                .filter(|d| routes || *d != Dump::Routes)
                .collect();
            self.next_dump();
        }
        Ok(())
    }

    /// The kernel dropped notifications: grow the buffer, and resync,
    /// after a wait if a resync was already under way.
    fn overrun(&mut self, now: Instant) {
        self.stats.overflows += 1;
        self.resync_wanted = true;
        let max = self.settings.rcvbuf_max.max(self.settings.rcvbuf);
        if self.rcvbuf < max {
            self.rcvbuf = max;
            self.stats.rcvbuf = set_rcvbuf(self.fd(), self.rcvbuf);
        }
        let recent = self.last_overrun.is_some_and(|t| now < t + QUIET);
        self.last_overrun = Some(now);
        if !recent {
            self.failures = 0;
        }
        if (self.in_resync || recent) && self.not_before.is_none() {
            self.failures = self.failures.saturating_add(1);
            let wait = BACKOFF_MIN
                .saturating_mul(1 << (self.failures - 1).min(16))
                .min(BACKOFF_MAX);
            self.not_before = Some(now + wait);
            log::warn!(
                "netlink: receive buffer overrun again while resynchronising; \
                 next dump in {} ms (buffer {} bytes)",
                wait.as_millis(),
                self.stats.rcvbuf
            );
        } else if self.not_before.is_none() {
            log::warn!(
                "netlink: receive buffer overrun, events were lost; resynchronising (buffer {} bytes)",
                self.stats.rcvbuf
            );
        }
    }

    /// When `read` must be called again though no message may come: a
    /// resync is owed and no dump request is out (sending one failed, or
    /// a backoff holds it). None: nothing owed.
    pub fn retry_at(&self, now: Instant, retry: Duration) -> Option<Instant> {
        if !self.wants_retry() {
            return None;
        }
        Some(self.not_before.unwrap_or(now + retry))
    }

    /// A resync's dumps are under way (or owed): their parts come one per
    /// read, so reads must not wait.
    pub fn dumping(&self) -> bool {
        self.dumping.is_some() || !self.queue.is_empty() || self.in_resync
    }

    /// The last `read` stopped at its budget: call it again soon, since
    /// the socket will not report readiness for what it already holds.
    pub fn more(&self) -> bool {
        self.more
    }

    /// A resync is owed but no dump request is out (sending one failed):
    /// the caller retries `read` after a short while, since no message may
    /// come to wake it.
    pub fn wants_retry(&self) -> bool {
        self.dumping.is_none() && (self.resync_wanted || self.dump_failed)
    }

    /// Reads up to `SLOTS` datagrams into the slots of the buffer, without
    /// waiting: how many (at least one), each described in `got`.
    fn recv_slots(&mut self) -> io::Result<usize> {
        use nix::libc;
        // SAFETY: plain C structs, all-zero is a valid value.
        let mut names: [libc::sockaddr_nl; SLOTS] = unsafe { std::mem::zeroed() };
        let mut iov: [libc::iovec; SLOTS] = unsafe { std::mem::zeroed() };
        let mut msgs: [libc::mmsghdr; SLOTS] = unsafe { std::mem::zeroed() };
        let base = self.buf.as_mut_ptr();
        let slot = self.slot;
        for i in 0..SLOTS {
            iov[i] = libc::iovec {
                // SAFETY: self.buf.len() == SLOTS * self.slot.
                iov_base: unsafe { base.add(i * slot) }.cast(),
                iov_len: slot,
            };
            msgs[i].msg_hdr.msg_name = (&mut names[i] as *mut libc::sockaddr_nl).cast();
            msgs[i].msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_nl>() as u32;
            msgs[i].msg_hdr.msg_iov = &mut iov[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: every pointer above is into live arrays or self.buf, each
        // iovec within its slot; MSG_DONTWAIT: never blocks, and returns
        // what was there once the socket is empty; MSG_TRUNC: a datagram's
        // length is its whole length, also when it was cut.
        let n = unsafe {
            libc::recvmmsg(
                self.fd(),
                msgs.as_mut_ptr(),
                SLOTS as u32,
                libc::MSG_DONTWAIT | libc::MSG_TRUNC,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = (n as usize).min(SLOTS);
        for i in 0..n {
            let len = msgs[i].msg_len as usize;
            self.got[i] = Got {
                len,
                cut: len > slot || msgs[i].msg_hdr.msg_flags & libc::MSG_TRUNC != 0,
                kernel: names[i].nl_pid == 0,
            };
        }
        Ok(n)
    }

    /// Reads one datagram into the first slot, without waiting, after
    /// growing the slots to hold it if it would not fit.
    fn recv_one(&mut self) -> io::Result<usize> {
        use nix::libc;
        let mut probe = [0u8; 1];
        // SAFETY: a one-byte buffer on the stack. MSG_PEEK leaves the
        // datagram queued; MSG_TRUNC returns its whole length.
        let whole = unsafe {
            libc::recv(
                self.fd(),
                probe.as_mut_ptr().cast(),
                probe.len(),
                libc::MSG_PEEK | libc::MSG_TRUNC | libc::MSG_DONTWAIT,
            )
        };
        if whole < 0 {
            return Err(io::Error::last_os_error());
        }
        self.fit(whole as usize);
        let mut slice = &mut self.buf[..self.slot];
        let (n, from) = self.sock.recv_from(&mut slice, libc::MSG_TRUNC)?;
        self.got[0] = Got {
            len: n,
            cut: n > self.slot,
            kernel: from.port_number() == 0,
        };
        Ok(1)
    }

    /// Grows the slots to hold a datagram of `len` bytes, up to
    /// `SLOT_MAX`; false when it cannot be held.
    fn fit(&mut self, len: usize) -> bool {
        if len <= self.slot {
            return true;
        }
        if len > SLOT_MAX {
            return false;
        }
        self.slot = len.next_power_of_two();
        // Zeroed lazily by the kernel, as the first buffer was.
        self.buf = vec![0; self.slot * SLOTS];
        log::info!(
            "netlink: a message of {len} bytes; reading with {} KiB buffers from now on",
            self.slot / 1024
        );
        true
    }

    /// A datagram did not fit its slot: it is lost, the slots grow to hold
    /// its size next time, and the tables are dumped again as after an
    /// overrun. One larger than `SLOT_MAX` is only counted and logged: a
    /// dump would lose it again.
    fn cut_short(&mut self, len: usize) {
        self.stats.decode_errors += 1;
        if self.fit(len) {
            self.resync_wanted = true;
            log::warn!(
                "netlink: a message of {len} bytes did not fit the read buffer and was lost; \
                 resynchronising"
            );
        } else {
            log::warn!(
                "netlink: a message of {len} bytes is larger than the {} KiB netevd reads; \
                 it was lost",
                SLOT_MAX / 1024
            );
        }
    }

    fn datagram(&mut self, range: std::ops::Range<usize>, out: &mut Vec<Input>) {
        // Borrow the buffer out so `self` stays usable for dump bookkeeping.
        let buf = std::mem::take(&mut self.buf);
        for m in split(&buf[range]) {
            let (h, p) = match m {
                Ok(m) => m,
                Err(e) => {
                    self.stats.decode_errors += 1;
                    log::warn!("netlink: {e}; rest of datagram skipped");
                    break;
                }
            };
            match h.ty {
                NLMSG_DONE | NLMSG_ERROR => {
                    let ours = self.dumping.map(|(_, s)| s) == Some(h.seq);
                    // Both carry an errno: NLMSG_DONE says whether the dump
                    // ended complete (a dump that failed part way ends with
                    // DONE and a negative errno).
                    let code = p
                        .get(..4)
                        .map(|b| i32::from_ne_bytes(b.try_into().unwrap()))
                        .unwrap_or(0);
                    if !ours && h.ty == NLMSG_ERROR {
                        // The answer to a change request.
                        self.acks.push((h.seq, code));
                        continue;
                    }
                    if code != 0 {
                        // ENOBUFS here: the socket was too full to start the
                        // dump; EBUSY: an earlier dump still runs. Either way
                        // the resync starts over once the socket is drained.
                        log::debug!(
                            "netlink: dump request {} failed: {}",
                            h.seq,
                            io::Error::from_raw_os_error(-code)
                        );
                        if ours {
                            self.dumping = None;
                            self.dump_failed = true;
                            self.queue.clear();
                        }
                    } else if ours {
                        self.dumping = None;
                        if !self.queue.is_empty() {
                            self.next_dump();
                        } else if self.resync_wanted {
                            // Interrupted (NLM_F_DUMP_INTR) or overrun while
                            // dumping: what was dumped may miss entries, so
                            // the bracket stays open and the dumps start
                            // over; reconciling now would delete what the
                            // dump missed and add it back next time.
                            log::debug!("netlink: the dump was interrupted; dumping again");
                            self.dump_failed = true;
                        } else {
                            self.in_resync = false;
                            out.push(Input::ResyncEnd);
                        }
                    }
                }
                NLMSG_NOOP | NLMSG_OVERRUN => {}
                _ => {
                    self.stats.messages += 1;
                    if h.flags & NLM_F_DUMP_INTR != 0 {
                        // The kernel's tables changed under the dump.
                        self.resync_wanted = true;
                    }
                    match decode(&h, p) {
                        Ok(Some(i)) => out.push(i),
                        Ok(None) => {}
                        Err(e) => {
                            self.stats.decode_errors += 1;
                            log::warn!("netlink: bad {} message: {e}", type_name(h.ty));
                        }
                    }
                }
            }
        }
        self.buf = buf;
    }

    /// Sends the next dump request of the resync. If it cannot be sent, the
    /// resync starts over later (see `wants_retry`): the bracket stays open.
    fn next_dump(&mut self) {
        let Some(d) = self.queue.pop_front() else {
            return;
        };
        self.seq = self.seq.wrapping_add(1);
        let mut req = dump_request(match d {
            Dump::Links => RTM_GETLINK,
            Dump::Addrs => RTM_GETADDR,
            Dump::Routes => RTM_GETROUTE,
            Dump::Rules => RTM_GETRULE,
        });
        set_seq(&mut req, self.seq);
        if let Err(e) = self.sock.send(&req, 0) {
            log::warn!("netlink: cannot request a dump: {e}; retrying");
            self.queue.clear();
            self.dump_failed = true;
            return;
        }
        self.dumping = Some((d, self.seq));
        log::debug!("netlink: dumping {d:?} (seq {})", self.seq);
    }
}

impl Netlink {
    /// Sends one request encoded by `wire` (its sequence number is set
    /// here) and returns the sequence number. The answer arrives in
    /// `acks`, after the notification of what changed.
    pub fn send(&mut self, req: &mut [u8]) -> io::Result<u32> {
        self.seq = self.seq.wrapping_add(1);
        set_seq(req, self.seq);
        self.sock.send(req, 0)?;
        Ok(self.seq)
    }
}

/// Asks for a receive buffer of `size` bytes, forced past
/// `net.core.rmem_max` when privileged; returns what the kernel granted.
fn set_rcvbuf(fd: RawFd, size: usize) -> u64 {
    use nix::sys::socket::{getsockopt, setsockopt, sockopt};
    use std::os::fd::BorrowedFd;
    // SAFETY: fd is the socket owned by the caller for this whole call.
    let bfd = unsafe { BorrowedFd::borrow_raw(fd) };
    if setsockopt(&bfd, sockopt::RcvBufForce, &size).is_err() {
        if let Err(e) = setsockopt(&bfd, sockopt::RcvBuf, &size) {
            log::warn!("netlink: cannot set receive buffer to {size}: {e}");
        }
    }
    getsockopt(&bfd, sockopt::RcvBuf).map_or(0, |n| n as u64)
}

#[cfg(test)]
mod tests {
    use super::wire::tests::msg;
    use super::*;

    const SETTINGS: Settings = Settings {
        rcvbuf: 1 << 16,
        rcvbuf_max: 1 << 20,
        routes: true,
    };

    fn feed(nl: &mut Netlink, m: &[u8]) -> Vec<Input> {
        let mut out = Vec::new();
        nl.buf[..m.len()].copy_from_slice(m);
        nl.datagram(0..m.len(), &mut out);
        out
    }

    fn done(ty: u16, seq: u32, errno: i32) -> Vec<u8> {
        let mut m = msg(ty, 0, &errno.to_ne_bytes(), &[]);
        m[8..12].copy_from_slice(&seq.to_ne_bytes());
        m
    }

    /// A dump that ends with an error, or is refused, never closes the
    /// resync: the core must not reconcile against a partial dump. Answers
    /// to change requests go to `acks`.
    #[test]
    fn dump_endings_and_acks() {
        let mut nl = Netlink::open(SETTINGS).unwrap();
        nl.resync_wanted = false;
        nl.dumping = Some((Dump::Rules, 9));
        // DONE with an errno: failed part way
        assert_eq!(feed(&mut nl, &done(NLMSG_DONE, 9, -4)), vec![]);
        assert!(nl.dump_failed && nl.dumping.is_none() && nl.wants_retry());
        // refused (EBUSY)
        nl.dump_failed = false;
        nl.dumping = Some((Dump::Rules, 10));
        assert_eq!(feed(&mut nl, &done(NLMSG_ERROR, 10, -16)), vec![]);
        assert!(nl.dump_failed);
        // a clean end of the last dump closes the bracket
        nl.dump_failed = false;
        nl.dumping = Some((Dump::Rules, 11));
        assert_eq!(
            feed(&mut nl, &done(NLMSG_DONE, 11, 0)),
            vec![Input::ResyncEnd]
        );
        assert!(!nl.wants_retry());
        // answers to requests, good and bad; a late DONE of an old dump is
        // ignored
        feed(&mut nl, &done(NLMSG_ERROR, 12, 0));
        feed(&mut nl, &done(NLMSG_ERROR, 13, -17));
        assert_eq!(feed(&mut nl, &done(NLMSG_DONE, 3, 0)), vec![]);
        assert_eq!(nl.acks, vec![(12, 0), (13, -17)]);
    }

    /// An overrun grows the buffer to the largest allowed; one during a
    /// resync, or soon after the last, waits 50 ms doubling to 5 s; a
    /// quiet second starts afresh. Nothing is dumped while a wait holds.
    #[test]
    fn overruns_grow_the_buffer_and_back_off() {
        let mut nl = Netlink::open(Settings {
            rcvbuf: 4096,
            rcvbuf_max: 65536,
            routes: false,
        })
        .unwrap();
        let first = nl.stats.rcvbuf;
        assert!(first >= 4096, "{first}");
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        // The start-up resync, then the socket is quiet: it is requested.
        let mut out = Vec::new();
        nl.read(&mut out, t0).unwrap();
        assert_eq!(out, vec![Input::ResyncBegin]);
        let begun = |out: &[Input]| out.contains(&Input::ResyncBegin);
        assert_eq!(nl.stats.resyncs_started, 1);
        // Routes are not followed: links, addresses, rules only.
        assert!(!nl.queue.contains(&Dump::Routes));
        // An overrun during that resync: the next one waits 50 ms.
        nl.overrun(ms(10));
        assert_eq!(nl.rcvbuf, 65536);
        assert!(nl.stats.rcvbuf > first, "{}", nl.stats.rcvbuf);
        assert_eq!(nl.not_before, Some(ms(60)));
        nl.dumping = None;
        assert_eq!(nl.retry_at(ms(10), RETRY), Some(ms(60)));
        let mut out = Vec::new();
        nl.read(&mut out, ms(20)).unwrap();
        assert!(!begun(&out), "held back: {out:?}");
        assert_eq!(nl.stats.resyncs_started, 1);
        nl.dumping = None;
        nl.read(&mut out, ms(60)).unwrap();
        assert!(begun(&out));
        assert_eq!(nl.stats.resyncs_started, 2);
        // Again and again: 100, 200, 400 ms ... at most 5 s; the buffer
        // stops at its largest.
        let mut t = 100;
        let mut waits = Vec::new();
        for _ in 0..10 {
            nl.not_before = None;
            nl.overrun(ms(t));
            waits.push((nl.not_before.unwrap() - ms(t)).as_millis());
            t += 500;
        }
        assert_eq!(waits[..4], [100, 200, 400, 800]);
        assert_eq!(*waits.last().unwrap(), 5000);
        assert_eq!(nl.rcvbuf, 65536);
        // The resync completes; an overrun after a quiet second resyncs
        // at once.
        nl.in_resync = false;
        nl.not_before = None;
        nl.overrun(ms(t + 2000));
        assert_eq!(nl.not_before, None);
        assert_eq!(nl.failures, 0);
        assert_eq!(nl.stats.overflows, 12);
    }

    const RETRY: Duration = Duration::from_millis(100);
}
