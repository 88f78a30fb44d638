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

pub mod wire;

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, RawFd};

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

/// One receive buffer, reused: a dump part is at most 32 KiB in practice.
const RECV_BUF: usize = 64 * 1024;

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

/// Counters for status and metrics.
#[derive(Default, Debug, Clone, Copy)]
pub struct Stats {
    pub messages: u64,
    pub overflows: u64,
    pub decode_errors: u64,
    pub resyncs_started: u64,
}

pub struct Netlink {
    sock: Socket,
    buf: Vec<u8>,
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
}

impl Netlink {
    /// Opens and subscribes. `rcvbuf` is the socket receive buffer in
    /// bytes; as root it may exceed `net.core.rmem_max`.
    pub fn open(rcvbuf: usize) -> io::Result<Self> {
        let mut sock = Socket::new(NETLINK_ROUTE)?;
        sock.bind(&SocketAddr::new(0, 0))?;
        for g in [
            RTNLGRP_LINK,
            RTNLGRP_IPV4_IFADDR,
            RTNLGRP_IPV6_IFADDR,
            RTNLGRP_IPV4_ROUTE,
            RTNLGRP_IPV6_ROUTE,
            RTNLGRP_IPV4_RULE,
            RTNLGRP_IPV6_RULE,
        ] {
            sock.add_membership(g)?;
        }
        set_rcvbuf(sock.as_raw_fd(), rcvbuf);
        sock.set_non_blocking(true)?;
        Ok(Netlink {
            sock,
            buf: vec![0; RECV_BUF],
            seq: 0,
            dumping: None,
            queue: VecDeque::new(),
            resync_wanted: true,
            more: false,
            dump_failed: false,
            acks: Vec::new(),
            stats: Stats::default(),
        })
    }

    pub fn fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }

    /// Reads until the socket is empty; decoded inputs are appended to
    /// `out`. Starts a resync when one is wanted and none is running.
    pub fn read(&mut self, out: &mut Vec<Input>) -> io::Result<()> {
        self.more = true;
        for _ in 0..READ_BUDGET {
            let mut slice = &mut self.buf[..];
            match self.sock.recv_from(&mut slice, 0) {
                Ok((n, from)) => {
                    // Only the kernel speaks on this socket.
                    if from.port_number() != 0 {
                        continue;
                    }
                    let n = n.min(RECV_BUF);
                    self.datagram(n, out);
                }
                Err(e) if e.raw_os_error() == Some(nix::libc::ENOBUFS) => {
                    self.stats.overflows += 1;
                    self.resync_wanted = true;
                    log::warn!(
                        "netlink: receive buffer overrun, events were lost; resynchronising"
                    );
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
        if (self.resync_wanted || self.dump_failed) && self.dumping.is_none() {
            // Everything queued before this point has been read, so nothing
            // read inside the bracket predates the dump. A second
            // ResyncBegin in an open bracket starts its marks afresh.
            self.resync_wanted = false;
            self.dump_failed = false;
            self.stats.resyncs_started += 1;
            out.push(Input::ResyncBegin);
            self.queue = ALL_DUMPS.into_iter().collect();
            self.next_dump();
        }
        Ok(())
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

    fn datagram(&mut self, n: usize, out: &mut Vec<Input>) {
        // Borrow the buffer out so `self` stays usable for dump bookkeeping.
        let buf = std::mem::take(&mut self.buf);
        for m in split(&buf[..n]) {
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

fn set_rcvbuf(fd: RawFd, size: usize) {
    use nix::sys::socket::{setsockopt, sockopt};
    use std::os::fd::BorrowedFd;
    // SAFETY: fd is the socket owned by the caller for this whole call.
    let bfd = unsafe { BorrowedFd::borrow_raw(fd) };
    if setsockopt(&bfd, sockopt::RcvBufForce, &size).is_err() {
        if let Err(e) = setsockopt(&bfd, sockopt::RcvBuf, &size) {
            log::warn!("netlink: cannot set receive buffer to {size}: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::wire::tests::msg;
    use super::*;

    fn feed(nl: &mut Netlink, m: &[u8]) -> Vec<Input> {
        let mut out = Vec::new();
        nl.buf[..m.len()].copy_from_slice(m);
        nl.datagram(m.len(), &mut out);
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
        let mut nl = Netlink::open(1 << 16).unwrap();
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
}
