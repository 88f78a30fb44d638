//! The kernel source: one rtnetlink socket subscribed to links, IPv4/IPv6
//! addresses, routes and rules; dumps to (re)synchronise; decoding of the
//! messages into the core's values.
//!
//! Decoding is ours and reads only the fields the core needs, checking
//! every length before it reads; requests are built with
//! netlink-packet-route. This module does I/O on its socket and nothing
//! else: it never interprets what it decodes.
//!
//! Resynchronisation: subscribe first, then dump (iproute2's rtmon). On
//! ENOBUFS the kernel has dropped notifications: drain the socket, then
//! dump everything again between `ResyncBegin` and `ResyncEnd`, and the
//! core reconciles. A dump starts only after the socket was drained, so
//! nothing read inside the bracket predates the dump request.

use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, RawFd};

use netlink_packet_core::{
    NetlinkMessage, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REQUEST,
};
use netlink_packet_route::{
    address::AddressMessage,
    link::LinkMessage,
    route::{RouteAddress, RouteAttribute, RouteMessage, RouteProtocol, RouteScope, RouteType},
    rule::{RuleAction, RuleAttribute, RuleMessage},
    AddressFamily, RouteNetlinkMessage,
};

use crate::core::policy::Change;
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

use crate::core::types::*;

pub const NLMSG_NOOP: u16 = 1;
pub const NLMSG_ERROR: u16 = 2;
pub const NLMSG_DONE: u16 = 3;
pub const NLMSG_OVERRUN: u16 = 4;
pub const RTM_NEWLINK: u16 = 16;
pub const RTM_DELLINK: u16 = 17;
pub const RTM_NEWADDR: u16 = 20;
pub const RTM_DELADDR: u16 = 21;
pub const RTM_NEWROUTE: u16 = 24;
pub const RTM_DELROUTE: u16 = 25;
pub const RTM_NEWRULE: u16 = 32;
pub const RTM_DELRULE: u16 = 33;

const NLM_F_REPLACE: u16 = 0x100;
const NLM_F_DUMP_INTR: u16 = 0x10;
const RTM_F_CLONED: u32 = 0x200;
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;

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

#[derive(Debug, PartialEq, Eq)]
pub struct Header {
    pub ty: u16,
    pub flags: u16,
    pub seq: u32,
}

/// Splits a datagram into netlink messages. A message whose length does
/// not fit ends the datagram with an error.
pub fn split(mut buf: &[u8]) -> impl Iterator<Item = Result<(Header, &[u8]), String>> {
    std::iter::from_fn(move || {
        if buf.is_empty() {
            return None;
        }
        if buf.len() < 16 {
            let n = buf.len();
            buf = &[];
            return Some(Err(format!("truncated netlink header ({n} bytes)")));
        }
        let len = u32::from_ne_bytes(buf[0..4].try_into().unwrap()) as usize;
        if len < 16 || len > buf.len() {
            let n = buf.len();
            buf = &[];
            return Some(Err(format!(
                "netlink message length {len} with {n} bytes left"
            )));
        }
        let h = Header {
            ty: u16::from_ne_bytes(buf[4..6].try_into().unwrap()),
            flags: u16::from_ne_bytes(buf[6..8].try_into().unwrap()),
            seq: u32::from_ne_bytes(buf[8..12].try_into().unwrap()),
        };
        let payload = &buf[16..len];
        buf = buf.get((len + 3) & !3..).unwrap_or(&[]);
        Some(Ok((h, payload)))
    })
}

/// Route attributes: (type without the nested/byte-order bits, value).
fn attrs(mut buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if buf.len() < 4 {
            return None;
        }
        let len = u16::from_ne_bytes([buf[0], buf[1]]) as usize;
        let ty = u16::from_ne_bytes([buf[2], buf[3]]) & 0x3fff;
        if len < 4 || len > buf.len() {
            return None;
        }
        let v = &buf[4..len];
        buf = buf.get((len + 3) & !3..).unwrap_or(&[]);
        Some((ty, v))
    })
}

fn u32_of(v: &[u8]) -> Option<u32> {
    Some(u32::from_ne_bytes(v.get(..4)?.try_into().ok()?))
}

fn ip_of(family: u8, v: &[u8]) -> Option<IpAddr> {
    match family {
        AF_INET => Some(IpAddr::V4(Ipv4Addr::from(
            <[u8; 4]>::try_from(v.get(..4)?).ok()?,
        ))),
        AF_INET6 => Some(IpAddr::V6(Ipv6Addr::from(
            <[u8; 16]>::try_from(v.get(..16)?).ok()?,
        ))),
        _ => None,
    }
}

fn cstr(v: &[u8]) -> Vec<u8> {
    let end = v.iter().position(|&b| b == 0).unwrap_or(v.len());
    v[..end].to_vec()
}

fn need(p: &[u8], n: usize, what: &str) -> Result<(), String> {
    if p.len() < n {
        Err(format!("{what} message of {} bytes, need {n}", p.len()))
    } else {
        Ok(())
    }
}

fn decode_link(p: &[u8]) -> Result<Option<LinkInfo>, String> {
    need(p, 16, "link")?;
    // Bridge-port notifications (AF_BRIDGE) describe the port, not the link.
    if p[0] != 0 {
        return Ok(None);
    }
    let index = u32::from_ne_bytes(p[4..8].try_into().unwrap());
    let flags = u32::from_ne_bytes(p[8..12].try_into().unwrap());
    let mut l = LinkInfo {
        index,
        name: Vec::new(),
        flags,
        operstate: IF_OPER_UNKNOWN,
        mtu: 0,
        kind: None,
        mac: Vec::new(),
    };
    for (ty, v) in attrs(&p[16..]) {
        match ty {
            1 => l.mac = v.to_vec(),                             // IFLA_ADDRESS
            3 => l.name = cstr(v),                               // IFLA_IFNAME
            4 => l.mtu = u32_of(v).unwrap_or(0),                 // IFLA_MTU
            16 => l.operstate = v.first().copied().unwrap_or(0), // IFLA_OPERSTATE
            18 => {
                // IFLA_LINKINFO / IFLA_INFO_KIND
                for (t, k) in attrs(v) {
                    if t == 1 {
                        l.kind = Some(String::from_utf8_lossy(&cstr(k)).into_owned());
                    }
                }
            }
            _ => {}
        }
    }
    Ok(Some(l))
}

fn decode_addr(p: &[u8]) -> Result<Option<AddrInfo>, String> {
    need(p, 8, "address")?;
    let family = p[0];
    if family != AF_INET && family != AF_INET6 {
        return Ok(None);
    }
    let (mut local, mut address) = (None, None);
    let mut flags = p[2] as u32;
    for (ty, v) in attrs(&p[8..]) {
        match ty {
            1 => address = ip_of(family, v),         // IFA_ADDRESS
            2 => local = ip_of(family, v),           // IFA_LOCAL
            8 => flags = u32_of(v).unwrap_or(flags), // IFA_FLAGS
            _ => {}
        }
    }
    // On point-to-point links IFA_ADDRESS is the peer; IFA_LOCAL is ours.
    let Some(ip) = local.or(address) else {
        return Err("address message without an address".into());
    };
    Ok(Some(AddrInfo {
        index: u32::from_ne_bytes(p[4..8].try_into().unwrap()),
        ip,
        prefix: p[1],
        scope: p[3],
        flags,
    }))
}

fn decode_route(p: &[u8]) -> Result<Option<RouteInfo>, String> {
    need(p, 12, "route")?;
    let family = p[0];
    let rflags = u32::from_ne_bytes(p[8..12].try_into().unwrap());
    if (family != AF_INET && family != AF_INET6) || rflags & RTM_F_CLONED != 0 {
        return Ok(None);
    }
    let mut r = RouteInfo {
        family,
        table: p[4] as u32,
        dst: None,
        dst_len: p[1],
        src: None,
        src_len: p[2],
        tos: p[3],
        priority: 0,
        protocol: p[5],
        scope: p[6],
        kind: p[7],
        oif: 0,
        gateway: None,
        prefsrc: None,
    };
    for (ty, v) in attrs(&p[12..]) {
        match ty {
            1 => r.dst = ip_of(family, v),
            2 => r.src = ip_of(family, v),
            4 => r.oif = u32_of(v).unwrap_or(0),
            5 => r.gateway = ip_of(family, v),
            6 => r.priority = u32_of(v).unwrap_or(0),
            7 => r.prefsrc = ip_of(family, v),
            // RTA_MULTIPATH: rtnexthop { len u16, flags u8, hops u8,
            // ifindex i32 } + attributes. The route is attributed to the
            // first hop's link.
            9 if r.oif == 0 && v.len() >= 8 => {
                r.oif = u32::from_ne_bytes(v[4..8].try_into().unwrap());
                let len = (u16::from_ne_bytes([v[0], v[1]]) as usize).clamp(8, v.len());
                for (t, g) in attrs(&v[8..len]) {
                    if t == 5 && r.gateway.is_none() {
                        r.gateway = ip_of(family, g);
                    }
                }
            }
            15 => r.table = u32_of(v).unwrap_or(r.table), // RTA_TABLE: the header says 252 above 255
            _ => {}
        }
    }
    Ok(Some(r))
}

fn decode_rule(p: &[u8]) -> Result<Option<RuleInfo>, String> {
    need(p, 12, "rule")?;
    let family = p[0];
    if family != AF_INET && family != AF_INET6 {
        return Ok(None);
    }
    let mut r = RuleInfo {
        family,
        priority: 0,
        table: p[4] as u32,
        action: p[7],
        src: None,
        src_len: p[2],
        dst: None,
        dst_len: p[1],
        tos: p[3],
        fwmark: 0,
        fwmask: 0,
        iif: Vec::new(),
        oif: Vec::new(),
        protocol: 0,
        extra: Vec::new(),
    };
    for (ty, v) in attrs(&p[12..]) {
        match ty {
            1 => r.dst = ip_of(family, v),
            2 => r.src = ip_of(family, v),
            3 => r.iif = cstr(v),
            6 => r.priority = u32_of(v).unwrap_or(0),
            10 => r.fwmark = u32_of(v).unwrap_or(0),
            15 => r.table = u32_of(v).unwrap_or(r.table),
            16 => r.fwmask = u32_of(v).unwrap_or(0),
            17 => r.oif = cstr(v),
            21 => r.protocol = v.first().copied().unwrap_or(0),
            _ => {
                r.extra.extend_from_slice(&ty.to_ne_bytes());
                r.extra.extend_from_slice(v);
            }
        }
    }
    Ok(Some(r))
}

/// Decodes one rtnetlink message into the core's input. `Ok(None)` for
/// messages of no interest (other families, cached routes, other types).
pub fn decode(h: &Header, p: &[u8]) -> Result<Option<Input>, String> {
    Ok(match h.ty {
        RTM_NEWLINK => decode_link(p)?.map(Input::NewLink),
        RTM_DELLINK => decode_link(p)?.map(|l| Input::DelLink(l.index)),
        RTM_NEWADDR => decode_addr(p)?.map(Input::NewAddr),
        RTM_DELADDR => decode_addr(p)?.map(Input::DelAddr),
        RTM_NEWROUTE => decode_route(p)?.map(|route| Input::NewRoute {
            route,
            replace: h.flags & NLM_F_REPLACE != 0,
        }),
        RTM_DELROUTE => decode_route(p)?.map(Input::DelRoute),
        RTM_NEWRULE => decode_rule(p)?.map(Input::NewRule),
        RTM_DELRULE => decode_rule(p)?.map(Input::DelRule),
        _ => None,
    })
}

pub fn type_name(ty: u16) -> &'static str {
    match ty {
        RTM_NEWLINK => "RTM_NEWLINK",
        RTM_DELLINK => "RTM_DELLINK",
        RTM_NEWADDR => "RTM_NEWADDR",
        RTM_DELADDR => "RTM_DELADDR",
        RTM_NEWROUTE => "RTM_NEWROUTE",
        RTM_DELROUTE => "RTM_DELROUTE",
        RTM_NEWRULE => "RTM_NEWRULE",
        RTM_DELRULE => "RTM_DELRULE",
        _ => "other",
    }
}

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
        loop {
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
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
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
                        if self.queue.is_empty() {
                            out.push(Input::ResyncEnd);
                        } else {
                            self.next_dump();
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
        let payload = match d {
            Dump::Links => RouteNetlinkMessage::GetLink(LinkMessage::default()),
            Dump::Addrs => RouteNetlinkMessage::GetAddress(AddressMessage::default()),
            Dump::Routes => RouteNetlinkMessage::GetRoute(RouteMessage::default()),
            Dump::Rules => RouteNetlinkMessage::GetRule(RuleMessage::default()),
        };
        let mut msg = NetlinkMessage::from(payload);
        msg.header.flags = NLM_F_REQUEST | NLM_F_DUMP;
        msg.header.sequence_number = self.seq;
        msg.finalize();
        let mut req = vec![0u8; msg.buffer_len()];
        msg.serialize(&mut req);
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
    /// Sends one change to the kernel, asking for an answer; returns its
    /// sequence number. The answer arrives in `acks`, after the
    /// notification of what changed.
    pub fn request(&mut self, ch: &Change) -> io::Result<u32> {
        self.seq = self.seq.wrapping_add(1);
        let (payload, add) = match ch {
            Change::AddRoute(r) => (RouteNetlinkMessage::NewRoute(route_msg(r)), true),
            Change::DelRoute(r) => (RouteNetlinkMessage::DelRoute(route_msg(r)), false),
            Change::AddRule(r) => (RouteNetlinkMessage::NewRule(rule_msg(r)), true),
            Change::DelRule(r) => (RouteNetlinkMessage::DelRule(rule_msg(r)), false),
        };
        let mut msg = NetlinkMessage::from(payload);
        msg.header.flags = NLM_F_REQUEST | NLM_F_ACK;
        if add {
            // EXCL: a second add of the same entry is an error, never a
            // duplicate.
            msg.header.flags |= NLM_F_CREATE | NLM_F_EXCL;
        }
        msg.header.sequence_number = self.seq;
        msg.finalize();
        let mut req = vec![0u8; msg.buffer_len()];
        msg.serialize(&mut req);
        self.sock.send(&req, 0)?;
        Ok(self.seq)
    }
}

fn route_addr(ip: IpAddr) -> RouteAddress {
    match ip {
        IpAddr::V4(a) => RouteAddress::Inet(a),
        IpAddr::V6(a) => RouteAddress::Inet6(a),
    }
}

/// Tables above 255 travel in RTA_TABLE; the header then says
/// RT_TABLE_COMPAT.
fn header_table(t: u32) -> u8 {
    if t < 256 {
        t as u8
    } else {
        252
    }
}

fn route_msg(r: &RouteInfo) -> RouteMessage {
    let mut m = RouteMessage::default();
    m.header.address_family = AddressFamily::from(r.family);
    m.header.destination_prefix_length = r.dst_len;
    m.header.source_prefix_length = r.src_len;
    m.header.tos = r.tos;
    m.header.table = header_table(r.table);
    m.header.protocol = RouteProtocol::from(r.protocol);
    m.header.scope = RouteScope::from(r.scope);
    m.header.kind = RouteType::from(r.kind);
    m.attributes.push(RouteAttribute::Table(r.table));
    if let Some(d) = r.dst {
        m.attributes
            .push(RouteAttribute::Destination(route_addr(d)));
    }
    if let Some(g) = r.gateway {
        m.attributes.push(RouteAttribute::Gateway(route_addr(g)));
    }
    if let Some(p) = r.prefsrc {
        m.attributes.push(RouteAttribute::PrefSource(route_addr(p)));
    }
    if r.oif != 0 {
        m.attributes.push(RouteAttribute::Oif(r.oif));
    }
    m.attributes.push(RouteAttribute::Priority(r.priority));
    m
}

fn rule_msg(r: &RuleInfo) -> RuleMessage {
    let mut m = RuleMessage::default();
    m.header.family = AddressFamily::from(r.family);
    m.header.src_len = r.src_len;
    m.header.dst_len = r.dst_len;
    m.header.tos = r.tos;
    m.header.table = header_table(r.table);
    m.header.action = RuleAction::from(r.action);
    m.attributes.push(RuleAttribute::Table(r.table));
    m.attributes.push(RuleAttribute::Priority(r.priority));
    if let Some(a) = r.src {
        m.attributes.push(RuleAttribute::Source(a));
    }
    if let Some(a) = r.dst {
        m.attributes.push(RuleAttribute::Destination(a));
    }
    m.attributes
        .push(RuleAttribute::Protocol(RouteProtocol::from(r.protocol)));
    m
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
    use super::*;

    /// Builds a netlink message: header, fixed part, attributes.
    fn msg(ty: u16, flags: u16, fixed: &[u8], attrs: &[(u16, &[u8])]) -> Vec<u8> {
        let mut body = fixed.to_vec();
        for (t, v) in attrs {
            let len = 4 + v.len();
            body.extend_from_slice(&(len as u16).to_ne_bytes());
            body.extend_from_slice(&t.to_ne_bytes());
            body.extend_from_slice(v);
            while body.len() % 4 != 0 {
                body.push(0);
            }
        }
        let mut m = Vec::new();
        m.extend_from_slice(&((16 + body.len()) as u32).to_ne_bytes());
        m.extend_from_slice(&ty.to_ne_bytes());
        m.extend_from_slice(&flags.to_ne_bytes());
        m.extend_from_slice(&7u32.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(&body);
        m
    }

    fn one(buf: &[u8]) -> Option<Input> {
        let mut it = split(buf);
        let (h, p) = it.next().unwrap().unwrap();
        assert!(it.next().is_none());
        decode(&h, p).unwrap()
    }

    fn ifinfo(family: u8, index: u32, flags: u32) -> Vec<u8> {
        let mut f = vec![family, 0, 1, 0];
        f.extend_from_slice(&index.to_ne_bytes());
        f.extend_from_slice(&flags.to_ne_bytes());
        f.extend_from_slice(&0u32.to_ne_bytes());
        f
    }

    #[test]
    fn link_fixture() {
        let mut linkinfo = Vec::new();
        linkinfo.extend_from_slice(&9u16.to_ne_bytes());
        linkinfo.extend_from_slice(&1u16.to_ne_bytes());
        linkinfo.extend_from_slice(b"veth\0\0\0\0");
        let m = msg(
            RTM_NEWLINK,
            0,
            &ifinfo(0, 5, 0x11043),
            &[
                (3, b"e$(id>q)\0"),
                (4, &1500u32.to_ne_bytes()),
                (16, &[6]),
                (1, &[2, 0, 0, 0, 0, 1]),
                (18 | 0x8000, &linkinfo[..9]),
            ],
        );
        assert_eq!(
            one(&m),
            Some(Input::NewLink(LinkInfo {
                index: 5,
                name: b"e$(id>q)".to_vec(),
                flags: 0x11043,
                operstate: 6,
                mtu: 1500,
                kind: Some("veth".into()),
                mac: vec![2, 0, 0, 0, 0, 1],
            }))
        );
        // a name that is not UTF-8 goes through as bytes
        let m = msg(RTM_NEWLINK, 0, &ifinfo(0, 5, 0), &[(3, b"e\xff\0")]);
        match one(&m) {
            Some(Input::NewLink(l)) => assert_eq!(l.name, b"e\xff"),
            other => panic!("{other:?}"),
        }
        // bridge port notifications are not about the link itself
        let m = msg(RTM_DELLINK, 0, &ifinfo(7, 5, 0), &[]);
        assert_eq!(one(&m), None);
        let m = msg(RTM_DELLINK, 0, &ifinfo(0, 5, 0), &[]);
        assert_eq!(one(&m), Some(Input::DelLink(5)));
    }

    #[test]
    fn address_fixtures() {
        let mut fixed = vec![AF_INET6, 64, 0, 0];
        fixed.extend_from_slice(&3u32.to_ne_bytes());
        let ip: Ipv6Addr = "2001:db8::10".parse().unwrap();
        let m = msg(
            RTM_NEWADDR,
            0,
            &fixed,
            &[(1, &ip.octets()), (8, &0x40u32.to_ne_bytes())],
        );
        assert_eq!(
            one(&m),
            Some(Input::NewAddr(AddrInfo {
                index: 3,
                ip: IpAddr::V6(ip),
                prefix: 64,
                scope: 0,
                flags: 0x40,
            }))
        );
        // IPv4 point-to-point: IFA_LOCAL is ours, IFA_ADDRESS the peer
        let mut fixed = vec![AF_INET, 32, 0x80, 0];
        fixed.extend_from_slice(&4u32.to_ne_bytes());
        let m = msg(
            RTM_DELADDR,
            0,
            &fixed,
            &[(1, &[10, 0, 0, 2]), (2, &[10, 0, 0, 1])],
        );
        match one(&m) {
            Some(Input::DelAddr(a)) => {
                assert_eq!(a.ip, IpAddr::from([10, 0, 0, 1]));
                assert_eq!(a.flags, 0x80);
            }
            other => panic!("{other:?}"),
        }
        // no address at all is an error, not a panic
        let m = msg(RTM_NEWADDR, 0, &fixed, &[]);
        let (h, p) = split(&m).next().unwrap().unwrap();
        assert!(decode(&h, p).is_err());
    }

    #[test]
    fn route_fixture_reads_table_attribute() {
        // table 1000: the header carries RT_TABLE_COMPAT (252)
        let fixed = [AF_INET, 0, 0, 0, 252, 4, 0, 1, 0, 0, 0, 0];
        let m = msg(
            RTM_NEWROUTE,
            NLM_F_REPLACE,
            &fixed,
            &[
                (15, &1000u32.to_ne_bytes()),
                (5, &[192, 0, 2, 1]),
                (4, &2u32.to_ne_bytes()),
                (6, &100u32.to_ne_bytes()),
            ],
        );
        match one(&m) {
            Some(Input::NewRoute { route, replace }) => {
                assert!(replace);
                assert_eq!(route.table, 1000);
                assert_eq!(route.gateway, Some(IpAddr::from([192, 0, 2, 1])));
                assert_eq!(
                    (route.oif, route.priority, route.dst, route.protocol),
                    (2, 100, None, 4)
                );
            }
            other => panic!("{other:?}"),
        }
        // cached clones are not routes
        let fixed = [AF_INET6, 128, 0, 0, 254, 0, 0, 1, 0, 2, 0, 0];
        let m = msg(RTM_NEWROUTE, 0, &fixed, &[]);
        assert_eq!(one(&m), None);
    }

    #[test]
    fn rule_fixture() {
        let fixed = [AF_INET, 0, 32, 0, 100, 0, 0, 1, 0, 0, 0, 0];
        let m = msg(
            RTM_NEWRULE,
            0,
            &fixed,
            &[
                (2, &[192, 0, 2, 10]),
                (6, &1000u32.to_ne_bytes()),
                (21, &[4]),
                (20, &[0; 8]),
            ],
        );
        match one(&m) {
            Some(Input::NewRule(r)) => {
                assert_eq!(
                    (r.priority, r.table, r.src_len, r.protocol),
                    (1000, 100, 32, 4)
                );
                assert_eq!(r.src, Some(IpAddr::from([192, 0, 2, 10])));
                assert_eq!(r.extra.len(), 10);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        assert!(split(&[1, 2, 3]).next().unwrap().is_err());
        let mut m = msg(RTM_NEWLINK, 0, &ifinfo(0, 1, 0), &[]);
        m[0] = 200; // longer than the buffer
        assert!(split(&m).next().unwrap().is_err());
        // a short fixed part
        let m = msg(RTM_NEWROUTE, 0, &[2, 0, 0], &[]);
        let (h, p) = split(&m).next().unwrap().unwrap();
        assert!(decode(&h, p).is_err());
        // an attribute whose length overruns is ignored
        let mut m = msg(RTM_NEWLINK, 0, &ifinfo(0, 1, 0), &[(3, b"ab\0")]);
        let l = m.len();
        m[l - 8] = 0xff;
        let (h, p) = split(&m).next().unwrap().unwrap();
        assert!(decode(&h, p).is_ok());
        // every prefix of a valid message decodes or errs, never panics
        let m = msg(
            RTM_NEWLINK,
            0,
            &ifinfo(0, 1, 0),
            &[(3, b"eth0\0"), (16, &[6])],
        );
        for n in 0..m.len() {
            for (h, p) in split(&m[..n]).flatten() {
                let _ = decode(&h, p);
            }
        }
    }

    /// Requests built for policy routing decode back to what was asked:
    /// the kernel's notification of the change will compare equal.
    #[test]
    fn requests_round_trip_through_the_decoder() {
        let route = RouteInfo {
            gateway: Some(IpAddr::from([10, 2, 0, 1])),
            oif: 3,
            protocol: RTPROT_NETEVD,
            kind: 1,
            ..RouteInfo::table_start(AF_INET, 1003)
        };
        let mut conn6 = RouteInfo::table_start(AF_INET6, 70000);
        conn6.dst = Some("2001:db8:2::".parse().unwrap());
        conn6.dst_len = 64;
        conn6.priority = 1024;
        conn6.oif = 3;
        let rule = RuleInfo {
            family: AF_INET6,
            priority: 10001,
            table: 1003,
            action: 1,
            src: None,
            src_len: 0,
            dst: Some("2001:db8:2::2".parse().unwrap()),
            dst_len: 128,
            tos: 0,
            fwmark: 0,
            fwmask: 0,
            iif: vec![],
            oif: vec![],
            protocol: RTPROT_NETEVD,
            extra: vec![],
        };
        for (msg, want) in [
            (
                RouteNetlinkMessage::NewRoute(route_msg(&route)),
                Input::NewRoute {
                    route: route.clone(),
                    replace: false,
                },
            ),
            (
                RouteNetlinkMessage::NewRoute(route_msg(&conn6)),
                Input::NewRoute {
                    route: conn6.clone(),
                    replace: false,
                },
            ),
            (
                RouteNetlinkMessage::NewRule(rule_msg(&rule)),
                Input::NewRule(rule.clone()),
            ),
        ] {
            let mut m = NetlinkMessage::from(msg);
            m.finalize();
            let mut buf = vec![0u8; m.buffer_len()];
            m.serialize(&mut buf);
            assert_eq!(one(&buf), Some(want));
        }
        // the header carries RT_TABLE_COMPAT above 255
        let m = rule_msg(&rule);
        assert_eq!(m.header.table, 252);
    }

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

    #[test]
    fn two_messages_in_one_datagram() {
        let mut buf = msg(RTM_DELLINK, 0, &ifinfo(0, 1, 0), &[]);
        buf.extend(msg(RTM_DELLINK, 0, &ifinfo(0, 2, 0), &[]));
        let v: Vec<_> = split(&buf)
            .map(|r| {
                let (h, p) = r.unwrap();
                decode(&h, p).unwrap()
            })
            .collect();
        assert_eq!(v, vec![Some(Input::DelLink(1)), Some(Input::DelLink(2))]);
    }
}
