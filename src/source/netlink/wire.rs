//! The rtnetlink wire format, and its only home: splitting a datagram
//! into messages, decoding the messages the core needs into its plain
//! values, and encoding the requests the daemon sends (route and rule
//! add/delete, dumps).
//!
//! Pure: bytes in, values out, and back; no socket, no policy types. The
//! decoder reads only the fields the core needs and checks every length
//! before it reads: bad input is an error naming what was wrong, never a
//! panic (the fuzz harness below replays fixtures, mutations of them and
//! random bytes to hold it to that). Integers are in host byte order, as
//! netlink has them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

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
const RTM_F_CLONED: u32 = 0x200;
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;
pub const RTM_GETLINK: u16 = 18;
pub const RTM_GETADDR: u16 = 22;
pub const RTM_GETROUTE: u16 = 26;
pub const RTM_GETRULE: u16 = 34;

pub const NLM_F_REQUEST: u16 = 0x1;
pub const NLM_F_ACK: u16 = 0x4;
pub const NLM_F_EXCL: u16 = 0x200;
pub const NLM_F_CREATE: u16 = 0x400;
pub const NLM_F_DUMP: u16 = 0x300;
pub const NLM_F_DUMP_INTR: u16 = 0x10;

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
        name: IfName::default(),
        flags,
        operstate: IF_OPER_UNKNOWN,
        mtu: 0,
        kind: None,
        mac: HwAddr::default(),
    };
    for (ty, v) in attrs(&p[16..]) {
        match ty {
            // IFLA_ADDRESS
            1 => {
                l.mac = HwAddr::new(v)
                    .ok_or_else(|| format!("link {index}: hardware address of {} bytes", v.len()))?
            }
            // IFLA_IFNAME
            3 => {
                let name = cstr(v);
                l.name = IfName::new(&name).ok_or_else(|| {
                    format!(
                        "link {index}: name of {} bytes, longer than IFNAMSIZ",
                        name.len()
                    )
                })?
            }
            4 => l.mtu = u32_of(v).unwrap_or(0), // IFLA_MTU
            16 => l.operstate = v.first().copied().unwrap_or(0), // IFLA_OPERSTATE
            18 => {
                // IFLA_LINKINFO / IFLA_INFO_KIND
                for (t, k) in attrs(v) {
                    if t == 1 {
                        l.kind = LinkKind::new(&String::from_utf8_lossy(&cstr(k)));
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
    let (mut preferred_lft, mut valid_lft) = (u32::MAX, u32::MAX);
    for (ty, v) in attrs(&p[8..]) {
        match ty {
            1 => address = ip_of(family, v),         // IFA_ADDRESS
            2 => local = ip_of(family, v),           // IFA_LOCAL
            8 => flags = u32_of(v).unwrap_or(flags), // IFA_FLAGS
            // IFA_CACHEINFO: struct ifa_cacheinfo { ifa_prefered,
            // ifa_valid, cstamp, tstamp }.
            6 if v.len() >= 8 => {
                preferred_lft = u32_of(&v[0..4]).unwrap_or(u32::MAX);
                valid_lft = u32_of(&v[4..8]).unwrap_or(u32::MAX);
            }
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
        valid_lft,
        preferred_lft,
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

/// Whether a request adds or deletes its entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Add,
    Delete,
}

/// A message under construction: header, fixed part, attributes, each
/// padded to 4 bytes; the length is filled in by `finish`.
struct Builder(Vec<u8>);

impl Builder {
    fn new(ty: u16, flags: u16, fixed: &[u8]) -> Self {
        let mut b = Vec::with_capacity(128);
        b.extend_from_slice(&0u32.to_ne_bytes()); // length, set by finish
        b.extend_from_slice(&ty.to_ne_bytes());
        b.extend_from_slice(&flags.to_ne_bytes());
        b.extend_from_slice(&0u32.to_ne_bytes()); // seq, set by the socket
        b.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel fills it
        b.extend_from_slice(fixed);
        Builder(b)
    }

    fn attr(&mut self, ty: u16, v: &[u8]) -> &mut Self {
        self.0
            .extend_from_slice(&((4 + v.len()) as u16).to_ne_bytes());
        self.0.extend_from_slice(&ty.to_ne_bytes());
        self.0.extend_from_slice(v);
        while self.0.len() % 4 != 0 {
            self.0.push(0);
        }
        self
    }

    fn u32(&mut self, ty: u16, v: u32) -> &mut Self {
        self.attr(ty, &v.to_ne_bytes())
    }

    fn ip(&mut self, ty: u16, ip: IpAddr) -> &mut Self {
        match ip {
            IpAddr::V4(a) => self.attr(ty, &a.octets()),
            IpAddr::V6(a) => self.attr(ty, &a.octets()),
        }
    }

    fn finish(&mut self) -> Vec<u8> {
        let len = self.0.len() as u32;
        self.0[0..4].copy_from_slice(&len.to_ne_bytes());
        std::mem::take(&mut self.0)
    }
}

/// Sets the sequence number of an encoded request (the socket numbers
/// what it sends).
pub fn set_seq(msg: &mut [u8], seq: u32) {
    if let Some(b) = msg.get_mut(8..12) {
        b.copy_from_slice(&seq.to_ne_bytes());
    }
}

fn request_flags(op: Op) -> u16 {
    match op {
        // EXCL: a second add of the same entry is an error, never a
        // duplicate.
        Op::Add => NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        Op::Delete => NLM_F_REQUEST | NLM_F_ACK,
    }
}

/// Tables above 255 travel in RTA_TABLE / FRA_TABLE; the header then says
/// RT_TABLE_COMPAT.
fn header_table(t: u32) -> u8 {
    if t < 256 {
        t as u8
    } else {
        252
    }
}

/// An `RTM_NEWROUTE` / `RTM_DELROUTE` request for `r`, asking for an
/// answer. Sequence number 0: see `set_seq`.
pub fn route_request(op: Op, r: &RouteInfo) -> Vec<u8> {
    let ty = match op {
        Op::Add => RTM_NEWROUTE,
        Op::Delete => RTM_DELROUTE,
    };
    // struct rtmsg
    let fixed = [
        r.family,
        r.dst_len,
        r.src_len,
        r.tos,
        header_table(r.table),
        r.protocol,
        r.scope,
        r.kind,
        0,
        0,
        0,
        0,
    ];
    let mut b = Builder::new(ty, request_flags(op), &fixed);
    b.u32(15, r.table); // RTA_TABLE
    if let Some(d) = r.dst {
        b.ip(1, d); // RTA_DST
    }
    if let Some(s) = r.src {
        b.ip(2, s); // RTA_SRC
    }
    if let Some(g) = r.gateway {
        b.ip(5, g); // RTA_GATEWAY
    }
    if let Some(p) = r.prefsrc {
        b.ip(7, p); // RTA_PREFSRC
    }
    if r.oif != 0 {
        b.u32(4, r.oif); // RTA_OIF
    }
    b.u32(6, r.priority); // RTA_PRIORITY
    b.finish()
}

/// An `RTM_NEWRULE` / `RTM_DELRULE` request for `r`, asking for an
/// answer. `extra` (attributes the core does not interpret) is not sent.
pub fn rule_request(op: Op, r: &RuleInfo) -> Vec<u8> {
    let ty = match op {
        Op::Add => RTM_NEWRULE,
        Op::Delete => RTM_DELRULE,
    };
    // struct fib_rule_hdr
    let fixed = [
        r.family,
        r.dst_len,
        r.src_len,
        r.tos,
        header_table(r.table),
        0,
        0,
        r.action,
        0,
        0,
        0,
        0,
    ];
    let mut b = Builder::new(ty, request_flags(op), &fixed);
    b.u32(15, r.table); // FRA_TABLE
    b.u32(6, r.priority); // FRA_PRIORITY
    if let Some(a) = r.src {
        b.ip(2, a); // FRA_SRC
    }
    if let Some(a) = r.dst {
        b.ip(1, a); // FRA_DST
    }
    if !r.iif.is_empty() {
        b.attr(3, &[&r.iif[..], &[0]].concat()); // FRA_IIFNAME
    }
    if !r.oif.is_empty() {
        b.attr(17, &[&r.oif[..], &[0]].concat()); // FRA_OIFNAME
    }
    if r.fwmark != 0 {
        b.u32(10, r.fwmark); // FRA_FWMARK
    }
    if r.fwmask != 0 {
        b.u32(16, r.fwmask); // FRA_FWMASK
    }
    b.attr(21, &[r.protocol]); // FRA_PROTOCOL
    b.finish()
}

/// A dump request of `ty` (`RTM_GETLINK`, ...), every family.
pub fn dump_request(ty: u16) -> Vec<u8> {
    // The fixed part the kernel expects: ifinfomsg 16, ifaddrmsg 8,
    // rtmsg 12, fib_rule_hdr 12 bytes, all zero for "everything".
    let fixed_len = match ty {
        RTM_GETLINK => 16,
        RTM_GETADDR => 8,
        _ => 12,
    };
    let mut b = Builder::new(ty, NLM_F_REQUEST | NLM_F_DUMP, &vec![0; fixed_len]);
    if ty == RTM_GETLINK {
        // Any extension mask makes the kernel size the dump's buffers for
        // its largest link: without one, a link larger than a dump part (a
        // few hundred long alternative names: 67 KiB) is left out of the
        // dump without a word. Skipping the statistics, which netevd does
        // not read, also makes every link's entry smaller.
        b.u32(IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS);
    }
    b.finish()
}

/// `IFLA_EXT_MASK` and the mask bit that leaves statistics out.
const IFLA_EXT_MASK: u16 = 29;
const RTEXT_FILTER_SKIP_STATS: u32 = 1 << 3;

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds a netlink message: header, fixed part, attributes.
    pub(crate) fn msg(ty: u16, flags: u16, fixed: &[u8], attrs: &[(u16, &[u8])]) -> Vec<u8> {
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
                name: IfName::new(b"e$(id>q)").unwrap(),
                flags: 0x11043,
                operstate: 6,
                mtu: 1500,
                kind: LinkKind::new("veth"),
                mac: HwAddr::new(&[2, 0, 0, 0, 0, 1]).unwrap(),
            }))
        );
        // a name that is not UTF-8 goes through as bytes
        let m = msg(RTM_NEWLINK, 0, &ifinfo(0, 5, 0), &[(3, b"e\xff\0")]);
        match one(&m) {
            Some(Input::NewLink(l)) => assert_eq!(&*l.name, b"e\xff"),
            other => panic!("{other:?}"),
        }
        // the longest name there is, an InfiniBand address, no address
        let ib: Vec<u8> = (1..=20).collect();
        let m = msg(
            RTM_NEWLINK,
            0,
            &ifinfo(0, 5, 0),
            &[(3, b"abcdefghijklmno\0"), (1, &ib)],
        );
        match one(&m) {
            Some(Input::NewLink(l)) => {
                assert_eq!(&*l.name, b"abcdefghijklmno");
                assert_eq!(&*l.mac, &ib[..]);
                assert_eq!(l.kind, None);
            }
            other => panic!("{other:?}"),
        }
        // longer than the kernel allows: an error naming what, not a panic
        let decode_one = |m: &[u8]| {
            let (h, p) = split(m).next().unwrap().unwrap();
            decode(&h, p)
        };
        let m = msg(
            RTM_NEWLINK,
            0,
            &ifinfo(0, 5, 0),
            &[(3, b"abcdefghijklmnop\0")],
        );
        assert_eq!(
            decode_one(&m).unwrap_err(),
            "link 5: name of 16 bytes, longer than IFNAMSIZ"
        );
        let m = msg(RTM_NEWLINK, 0, &ifinfo(0, 5, 0), &[(1, &[0; 33])]);
        assert_eq!(
            decode_one(&m).unwrap_err(),
            "link 5: hardware address of 33 bytes"
        );
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
        let mut cache = Vec::new();
        for v in [1800u32, 3600, 7, 9] {
            cache.extend_from_slice(&v.to_ne_bytes());
        }
        let m = msg(
            RTM_NEWADDR,
            0,
            &fixed,
            &[(1, &ip.octets()), (8, &0x40u32.to_ne_bytes()), (6, &cache)],
        );
        assert_eq!(
            one(&m),
            Some(Input::NewAddr(AddrInfo {
                index: 3,
                ip: IpAddr::V6(ip),
                prefix: 64,
                scope: 0,
                flags: 0x40,
                valid_lft: 3600,
                preferred_lft: 1800,
            }))
        );
        // a short IFA_CACHEINFO is ignored, not read past its end
        let m = msg(
            RTM_NEWADDR,
            0,
            &fixed,
            &[(1, &ip.octets()), (6, &cache[..6])],
        );
        match one(&m) {
            Some(Input::NewAddr(a)) => assert_eq!(a.valid_lft, u32::MAX),
            other => panic!("{other:?}"),
        }
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

    fn v4_rule() -> RuleInfo {
        RuleInfo {
            family: AF_INET,
            priority: 10000,
            table: 1003,
            action: 1,
            src: Some(IpAddr::from([10, 2, 0, 2])),
            src_len: 32,
            dst: None,
            dst_len: 0,
            tos: 0,
            fwmark: 0,
            fwmask: 0,
            iif: vec![],
            oif: vec![],
            protocol: RTPROT_NETEVD,
            extra: vec![],
        }
    }

    fn le(v: &[u32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_ne_bytes()).collect()
    }

    /// An add of `from 10.2.0.2 lookup 1003 pref 10000 proto 148`, byte by
    /// byte as `<linux/netlink.h>` and `<linux/fib_rules.h>` lay it out.
    #[test]
    fn rule_request_bytes() {
        let got = rule_request(Op::Add, &v4_rule());
        let mut want = Vec::new();
        want.extend(le(&[60]));
        want.extend(RTM_NEWRULE.to_ne_bytes());
        want.extend((NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL).to_ne_bytes());
        want.extend(le(&[0, 0])); // seq, port
        want.extend([AF_INET, 0, 32, 0, 252, 0, 0, 1, 0, 0, 0, 0]); // fib_rule_hdr
        want.extend([8, 0, 15, 0]);
        want.extend(le(&[1003])); // FRA_TABLE
        want.extend([8, 0, 6, 0]);
        want.extend(le(&[10000])); // FRA_PRIORITY
        want.extend([8, 0, 2, 0, 10, 2, 0, 2]); // FRA_SRC
        want.extend([5, 0, 21, 0, 148, 0, 0, 0]); // FRA_PROTOCOL, padded
        assert_eq!(got, want);
        // the delete differs in type and flags only
        let del = rule_request(Op::Delete, &v4_rule());
        assert_eq!(u16::from_ne_bytes([del[4], del[5]]), RTM_DELRULE);
        assert_eq!(
            u16::from_ne_bytes([del[6], del[7]]),
            NLM_F_REQUEST | NLM_F_ACK
        );
        assert_eq!(del[8..], got[8..]);
        let mut numbered = got.clone();
        set_seq(&mut numbered, 0x0102_0304);
        assert_eq!(numbered[8..12], 0x0102_0304u32.to_ne_bytes());
    }

    #[test]
    fn route_request_bytes() {
        let r = RouteInfo {
            gateway: Some(IpAddr::from([10, 2, 0, 1])),
            oif: 3,
            protocol: RTPROT_NETEVD,
            kind: 1,
            ..RouteInfo::table_start(AF_INET, 1003)
        };
        let got = route_request(Op::Add, &r);
        let mut want = Vec::new();
        want.extend(le(&[60]));
        want.extend(RTM_NEWROUTE.to_ne_bytes());
        want.extend(0x605u16.to_ne_bytes());
        want.extend(le(&[0, 0]));
        want.extend([AF_INET, 0, 0, 0, 252, 148, 0, 1, 0, 0, 0, 0]); // rtmsg
        want.extend([8, 0, 15, 0]);
        want.extend(le(&[1003])); // RTA_TABLE
        want.extend([8, 0, 5, 0, 10, 2, 0, 1]); // RTA_GATEWAY
        want.extend([8, 0, 4, 0]);
        want.extend(le(&[3])); // RTA_OIF
        want.extend([8, 0, 6, 0]);
        want.extend(le(&[0])); // RTA_PRIORITY
        assert_eq!(got, want);
    }

    #[test]
    fn dump_requests() {
        for (ty, fixed) in [
            (RTM_GETLINK, 16),
            (RTM_GETADDR, 8),
            (RTM_GETROUTE, 12),
            (RTM_GETRULE, 12),
        ] {
            let m = dump_request(ty);
            // Links ask for an extension mask (one 8-byte attribute).
            let ext = if ty == RTM_GETLINK { 8 } else { 0 };
            assert_eq!(m.len(), 16 + fixed + ext);
            let (h, p) = split(&m).next().unwrap().unwrap();
            assert_eq!(
                h,
                Header {
                    ty,
                    flags: NLM_F_REQUEST | NLM_F_DUMP,
                    seq: 0
                }
            );
            assert!(p[..fixed].iter().all(|&b| b == 0));
            if ty == RTM_GETLINK {
                assert_eq!(&p[fixed..fixed + 2], &8u16.to_ne_bytes());
                assert_eq!(&p[fixed + 2..fixed + 4], &29u16.to_ne_bytes());
                assert_eq!(&p[fixed + 4..], &8u32.to_ne_bytes());
            }
        }
    }

    /// Requests decode back to what was asked: the kernel's notification
    /// of the change will compare equal to the plan.
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
        let mut rule = v4_rule();
        rule.family = AF_INET6;
        rule.src = None;
        rule.src_len = 0;
        rule.dst = Some("2001:db8:2::2".parse().unwrap());
        rule.dst_len = 128;
        assert_eq!(
            one(&route_request(Op::Add, &route)),
            Some(Input::NewRoute {
                route: route.clone(),
                replace: false
            })
        );
        assert_eq!(
            one(&route_request(Op::Delete, &conn6)),
            Some(Input::DelRoute(conn6.clone()))
        );
        assert_eq!(
            one(&rule_request(Op::Add, &rule)),
            Some(Input::NewRule(rule.clone()))
        );
    }

    /// xorshift64*, seeded: the fuzz harness must be repeatable.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            self.0 = x;
            x.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
        fn byte(&mut self) -> u8 {
            self.next() as u8
        }
    }

    fn random_ip(rng: &mut Rng, family: u8) -> IpAddr {
        if family == AF_INET {
            IpAddr::from((rng.next() as u32).to_be_bytes())
        } else {
            IpAddr::from(((rng.next() as u128) << 64 | rng.next() as u128).to_be_bytes())
        }
    }

    fn random_route(rng: &mut Rng) -> RouteInfo {
        let family = if rng.next() & 1 == 0 {
            AF_INET
        } else {
            AF_INET6
        };
        let max = if family == AF_INET { 33 } else { 129 };
        let opt = |rng: &mut Rng| (rng.next() & 1 == 0).then(|| random_ip(rng, family));
        RouteInfo {
            family,
            table: rng.next() as u32,
            dst: opt(rng),
            dst_len: rng.below(max) as u8,
            src: opt(rng),
            src_len: rng.below(max) as u8,
            tos: rng.byte(),
            priority: rng.next() as u32,
            protocol: rng.byte(),
            scope: rng.byte(),
            kind: rng.byte(),
            oif: rng.next() as u32,
            gateway: opt(rng),
            prefsrc: opt(rng),
        }
    }

    fn random_name(rng: &mut Rng) -> Vec<u8> {
        (0..rng.below(16))
            .map(|_| b"abcdefghijklmnopqrstuvwxyz0123456789.-_"[rng.below(39)])
            .collect()
    }

    fn random_rule(rng: &mut Rng) -> RuleInfo {
        let family = if rng.next() & 1 == 0 {
            AF_INET
        } else {
            AF_INET6
        };
        let max = if family == AF_INET { 33 } else { 129 };
        let opt = |rng: &mut Rng| (rng.next() & 1 == 0).then(|| random_ip(rng, family));
        RuleInfo {
            family,
            priority: rng.next() as u32,
            table: rng.next() as u32,
            action: rng.byte(),
            src: opt(rng),
            src_len: rng.below(max) as u8,
            dst: opt(rng),
            dst_len: rng.below(max) as u8,
            tos: rng.byte(),
            fwmark: rng.next() as u32,
            fwmask: rng.next() as u32,
            iif: random_name(rng),
            oif: random_name(rng),
            protocol: rng.byte(),
            extra: vec![],
        }
    }

    /// Real kernel messages: the datagrams of a dump of this host's links,
    /// addresses, routes and rules (read only; none if the socket cannot
    /// be had).
    fn recorded() -> Vec<Vec<u8>> {
        use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
        let mut out = Vec::new();
        let Ok(mut sock) = Socket::new(NETLINK_ROUTE) else {
            return out;
        };
        // Non-blocking: the kernel makes each dump part inside send and
        // recv, so nothing read here is ever waited for.
        if sock.bind(&SocketAddr::new(0, 0)).is_err() || sock.set_non_blocking(true).is_err() {
            return out;
        }
        for ty in [RTM_GETLINK, RTM_GETADDR, RTM_GETROUTE, RTM_GETRULE] {
            if sock.send(&dump_request(ty), 0).is_err() {
                continue;
            }
            // A dump ends with NLMSG_DONE; a few datagrams per table are
            // plenty of seeds.
            for _ in 0..16 {
                let mut buf = vec![0u8; 64 * 1024];
                let Ok(n) = sock.recv(&mut &mut buf[..], 0) else {
                    break;
                };
                buf.truncate(n);
                let done = split(&buf).flatten().any(|(h, _)| h.ty == NLMSG_DONE);
                out.push(buf);
                if done {
                    break;
                }
            }
        }
        out
    }

    /// The corpus: every fixture above, each request kind, an error and a
    /// done message, a datagram of several messages, and real messages
    /// from a dump of this host.
    fn corpus() -> Vec<Vec<u8>> {
        let mut c = recorded();
        assert!(!c.is_empty(), "no dump of this host to seed from");
        let mut linkinfo = Vec::new();
        linkinfo.extend_from_slice(&9u16.to_ne_bytes());
        linkinfo.extend_from_slice(&1u16.to_ne_bytes());
        linkinfo.extend_from_slice(b"veth\0\0\0\0");
        c.push(msg(
            RTM_NEWLINK,
            0,
            &ifinfo(0, 5, 0x11043),
            &[
                (3, b"eth0\0"),
                (4, &1500u32.to_ne_bytes()),
                (16, &[6]),
                (1, &[2, 0, 0, 0, 0, 1]),
                (18 | 0x8000, &linkinfo),
            ],
        ));
        let mut fixed = vec![AF_INET6, 64, 0, 0];
        fixed.extend_from_slice(&3u32.to_ne_bytes());
        c.push(msg(
            RTM_NEWADDR,
            0,
            &fixed,
            &[
                (
                    1,
                    &[0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10],
                ),
                (8, &0x40u32.to_ne_bytes()),
            ],
        ));
        let mut multipath = vec![16, 0, 0, 0];
        multipath.extend_from_slice(&2u32.to_ne_bytes());
        multipath.extend_from_slice(&[8, 0, 5, 0, 192, 0, 2, 1]);
        c.push(msg(
            RTM_NEWROUTE,
            NLM_F_REPLACE,
            &[AF_INET, 0, 0, 0, 252, 4, 0, 1, 0, 0, 0, 0],
            &[
                (15, &1000u32.to_ne_bytes()),
                (9, &multipath),
                (6, &100u32.to_ne_bytes()),
            ],
        ));
        c.push(msg(
            RTM_NEWRULE,
            0,
            &[AF_INET, 0, 32, 0, 100, 0, 0, 1, 0, 0, 0, 0],
            &[
                (2, &[192, 0, 2, 10]),
                (6, &1000u32.to_ne_bytes()),
                (21, &[4]),
                (20, &[0; 8]),
                (3, b"eth0\0"),
            ],
        ));
        c.push(msg(NLMSG_ERROR, 0, &(-17i32).to_ne_bytes(), &[]));
        c.push(msg(NLMSG_DONE, 0, &0i32.to_ne_bytes(), &[]));
        c.push(rule_request(Op::Add, &v4_rule()));
        let mut rng = Rng(7);
        for _ in 0..4 {
            c.push(route_request(Op::Add, &random_route(&mut rng)));
            c.push(rule_request(Op::Delete, &random_rule(&mut rng)));
        }
        let all: Vec<u8> = c.concat();
        c.push(all);
        c
    }

    /// Decodes every message of a datagram, flipping the type through
    /// every kind the decoder knows so each decoder sees each payload.
    fn decode_all(buf: &[u8]) {
        for (mut h, p) in split(buf).flatten() {
            for ty in [h.ty, RTM_NEWLINK, RTM_NEWADDR, RTM_DELROUTE, RTM_NEWRULE] {
                h.ty = ty;
                let _ = decode(&h, p);
            }
        }
    }

    fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
        let mut m = seed.to_vec();
        for _ in 0..1 + rng.below(4) {
            let n = m.len().max(1);
            match rng.below(6) {
                0 if !m.is_empty() => {
                    let i = rng.below(n);
                    m[i] ^= 1 << rng.below(8);
                }
                1 if !m.is_empty() => {
                    let i = rng.below(n);
                    m[i] = [0, 0xff, 0x7f, 0x80, 4, 3][rng.below(6)];
                }
                2 => m.truncate(rng.below(n + 1)),
                3 => {
                    // a length field (message or attribute) made wrong
                    let i = rng.below(n) & !3;
                    if i + 2 <= m.len() {
                        let v = (rng.next() as u16).to_ne_bytes();
                        m[i..i + 2].copy_from_slice(&v);
                    }
                }
                4 => {
                    let i = rng.below(n + 1).min(m.len());
                    let extra: Vec<u8> = (0..rng.below(12)).map(|_| rng.byte()).collect();
                    m.splice(i..i, extra);
                }
                _ => {
                    let i = rng.below(n).min(m.len());
                    let j = (i + rng.below(16)).min(m.len());
                    m.drain(i..j);
                }
            }
        }
        m
    }

    /// A stable stand-in for a cargo-fuzz target (no nightly here): for
    /// about 1.5 s, decode the corpus, mutations of it and random bytes;
    /// nothing may panic (every read is checked, or this would). Then
    /// random valid routes and rules must round-trip through the encoder
    /// and the decoder.
    #[test]
    fn fuzz_decoder_and_round_trip() {
        let corpus = corpus();
        let mut rng = Rng(0x5eed);
        let start = std::time::Instant::now();
        let mut runs = 0u64;
        while start.elapsed() < std::time::Duration::from_millis(1500) {
            for _ in 0..256 {
                let input = match rng.below(8) {
                    0 => (0..rng.below(96)).map(|_| rng.byte()).collect(),
                    1 => {
                        // a valid header around random payload
                        let body: Vec<u8> = (0..rng.below(80)).map(|_| rng.byte()).collect();
                        let ty = [16u16, 17, 20, 21, 24, 25, 32, 33, 2, 3][rng.below(10)];
                        msg(ty, rng.next() as u16, &body, &[])
                    }
                    _ => {
                        let seed = &corpus[rng.below(corpus.len())];
                        mutate(&mut rng, seed)
                    }
                };
                decode_all(&input);
                runs += 1;
            }
        }
        assert!(runs > 1000, "only {runs} inputs");
        for _ in 0..2000 {
            let r = random_route(&mut rng);
            let want = Input::NewRoute {
                route: r.clone(),
                replace: false,
            };
            assert_eq!(one(&route_request(Op::Add, &r)), Some(want), "{r:?}");
            assert_eq!(
                one(&route_request(Op::Delete, &r)),
                Some(Input::DelRoute(r))
            );
            let r = random_rule(&mut rng);
            assert_eq!(
                one(&rule_request(Op::Add, &r)),
                Some(Input::NewRule(r.clone()))
            );
            assert_eq!(one(&rule_request(Op::Delete, &r)), Some(Input::DelRule(r)));
        }
    }
}
