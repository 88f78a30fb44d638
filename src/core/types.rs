//! Plain values the core is fed with and hands out: links, addresses,
//! routes and rules as the kernel describes them, decoded but not
//! interpreted. No I/O and no clock here.
//!
//! A link is kept for as long as it exists, and appliances have thousands:
//! its name, hardware address and kind are held inline or interned
//! (`IfName`, `HwAddr`, `LinkKind`), not as heap blocks of their own,
//! each of which would cost more in malloc's overhead than its bytes.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::ops::Deref;
use std::sync::Mutex;

/// Kernel interface flags the core looks at (`<linux/if.h>`).
pub const IFF_UP: u32 = 0x1;
pub const IFF_RUNNING: u32 = 0x40;
pub const IFF_LOWER_UP: u32 = 0x1_0000;
pub const IFF_DORMANT: u32 = 0x2_0000;

/// RFC 2863 operational states as `IFLA_OPERSTATE` carries them.
pub const IF_OPER_UNKNOWN: u8 = 0;
pub const IF_OPER_DORMANT: u8 = 5;
pub const IF_OPER_UP: u8 = 6;

/// Address flags (`<linux/if_addr.h>`).
pub const IFA_F_DADFAILED: u32 = 0x08;
pub const IFA_F_TENTATIVE: u32 = 0x40;

/// Address scopes (`<linux/rtnetlink.h>`).
pub const RT_SCOPE_UNIVERSE: u8 = 0;
pub const RT_SCOPE_SITE: u8 = 200;
pub const RT_SCOPE_LINK: u8 = 253;
pub const RT_SCOPE_HOST: u8 = 254;

/// The route and rule protocol that marks what netevd installs, so a
/// restart knows its own entries and never touches anyone else's.
/// `ip` shows it as "proto netevd" with contrib/rt_protos.d/netevd.conf.
pub const RTPROT_NETEVD: u8 = 148;

/// The kernel's own tables.
pub const RT_TABLE_MAIN: u32 = 254;
pub const RT_TABLE_LOCAL: u32 = 255;

/// A link as one `RTM_NEWLINK` describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkInfo {
    pub index: u32,
    /// The name as bytes: the kernel allows any byte but NUL, `/`, `:` and
    /// white space, and a hook must see exactly what the kernel has.
    pub name: IfName,
    pub flags: u32,
    pub operstate: u8,
    pub mtu: u32,
    /// `IFLA_INFO_KIND`, interned.
    pub kind: Option<LinkKind>,
    pub mac: HwAddr,
}

/// A link name, inline. The kernel's names are at most `IFNAMSIZ - 1`
/// (15) bytes, so sixteen bytes hold any of them with its length.
/// Compares, orders and hashes as its bytes do (it is `Borrow<[u8]>`):
/// the bytes past `len` are always zero.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct IfName {
    len: u8,
    buf: [u8; IfName::MAX],
}

impl IfName {
    /// The longest name the kernel gives a link (`IFNAMSIZ - 1`).
    pub const MAX: usize = 15;

    /// The name, or None when it is longer than any the kernel allows.
    pub fn new(name: &[u8]) -> Option<IfName> {
        let mut n = IfName::default();
        n.buf.get_mut(..name.len())?.copy_from_slice(name);
        n.len = name.len() as u8;
        Some(n)
    }

    pub fn as_slice(&self) -> &[u8] {
        self
    }
}

impl Borrow<[u8]> for IfName {
    fn borrow(&self) -> &[u8] {
        self
    }
}

impl Hash for IfName {
    fn hash<H: Hasher>(&self, h: &mut H) {
        (**self).hash(h)
    }
}

impl Ord for IfName {
    fn cmp(&self, other: &Self) -> Ordering {
        (**self).cmp(&**other)
    }
}

impl PartialOrd for IfName {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq<IfName> for &[u8] {
    fn eq(&self, other: &IfName) -> bool {
        **self == **other
    }
}

impl Deref for IfName {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.buf[..self.len as usize]
    }
}

impl PartialEq<[u8]> for IfName {
    fn eq(&self, other: &[u8]) -> bool {
        **self == *other
    }
}

impl PartialEq<&[u8]> for IfName {
    fn eq(&self, other: &&[u8]) -> bool {
        **self == **other
    }
}

impl PartialEq<Vec<u8>> for IfName {
    fn eq(&self, other: &Vec<u8>) -> bool {
        **self == **other
    }
}

impl fmt::Debug for IfName {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(self))
    }
}

/// A link-layer address, inline: up to `MAX_ADDR_LEN` (32) bytes, which
/// covers every link type (Ethernet 6, InfiniBand 20); a link without one
/// has length 0.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct HwAddr {
    len: u8,
    buf: [u8; HwAddr::MAX],
}

impl HwAddr {
    /// The kernel's `MAX_ADDR_LEN`.
    pub const MAX: usize = 32;

    /// The address, or None when it is longer than the kernel allows.
    pub fn new(addr: &[u8]) -> Option<HwAddr> {
        let mut a = HwAddr::default();
        a.buf.get_mut(..addr.len())?.copy_from_slice(addr);
        a.len = addr.len() as u8;
        Some(a)
    }
}

impl Deref for HwAddr {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.buf[..self.len as usize]
    }
}

impl fmt::Debug for HwAddr {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{:02x?}", &**self)
    }
}

/// Link kinds the kernel has, so that the usual ones cost nothing.
const KINDS: &[&str] = &[
    "veth",
    "bridge",
    "bond",
    "vlan",
    "vxlan",
    "macvlan",
    "macvtap",
    "ipvlan",
    "ipvtap",
    "tun",
    "wireguard",
    "gre",
    "gretap",
    "ip6gre",
    "ip6gretap",
    "erspan",
    "ip6erspan",
    "ipip",
    "ip6tnl",
    "sit",
    "vti",
    "vti6",
    "geneve",
    "bareudp",
    "team",
    "dummy",
    "ifb",
    "nlmon",
    "vrf",
    "macsec",
    "xfrm",
    "hsr",
    "batadv",
    "can",
    "vcan",
    "vxcan",
    "gtp",
    "ipoib",
    "netdevsim",
    "virt_wifi",
    "openvswitch",
    "amt",
    "rmnet",
    "wwan",
    "lowpan",
    "ppp",
    "netkit",
];

/// Kinds not in `KINDS`, each leaked once. The kernel has a few dozen
/// kinds in all, so this stays small; past `MAX_EXTRA_KINDS` (a kernel
/// that makes up kinds) a kind is not kept.
static EXTRA_KINDS: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());
const MAX_EXTRA_KINDS: usize = 64;

/// A link's kind (`IFLA_INFO_KIND`), interned: one byte in the link,
/// and it reads as the `&str` it stands for.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct LinkKind(u8);

impl LinkKind {
    /// `kind`'s handle; None only past `MAX_EXTRA_KINDS` unknown kinds.
    pub fn new(kind: &str) -> Option<LinkKind> {
        if let Some(i) = KINDS.iter().position(|k| *k == kind) {
            return Some(LinkKind(i as u8));
        }
        let mut extra = EXTRA_KINDS.lock().unwrap_or_else(|e| e.into_inner());
        let i = match extra.iter().position(|k| *k == kind) {
            Some(i) => i,
            None if extra.len() >= MAX_EXTRA_KINDS => return None,
            None => {
                extra.push(Box::leak(kind.into()));
                extra.len() - 1
            }
        };
        Some(LinkKind((KINDS.len() + i) as u8))
    }

    pub fn as_str(self) -> &'static str {
        let i = self.0 as usize;
        match KINDS.get(i) {
            Some(k) => k,
            None => EXTRA_KINDS.lock().unwrap_or_else(|e| e.into_inner())[i - KINDS.len()],
        }
    }
}

impl Deref for LinkKind {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Debug for LinkKind {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AddrInfo {
    pub index: u32,
    pub ip: IpAddr,
    pub prefix: u8,
    pub scope: u8,
    pub flags: u32,
    /// Seconds left as of the message (`IFA_CACHEINFO`); `u32::MAX` for
    /// forever. They change without the address changing, so they take no
    /// part in whether hooks hear of it.
    pub valid_lft: u32,
    pub preferred_lft: u32,
}

impl AddrInfo {
    /// Tentative and DAD-failed addresses cannot be used yet (or ever), so
    /// they neither count for the link's state nor reach hooks; the kernel
    /// announces the address again once DAD is over.
    pub fn usable(&self) -> bool {
        self.flags & (IFA_F_TENTATIVE | IFA_F_DADFAILED) == 0
    }
}

/// Field order matters: the replace key comes first, so routes that
/// replace each other are neighbours in an ordered set.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RouteInfo {
    pub family: u8,
    pub table: u32,
    pub dst: Option<IpAddr>,
    pub dst_len: u8,
    pub src: Option<IpAddr>,
    pub src_len: u8,
    pub tos: u8,
    pub priority: u32,
    pub protocol: u8,
    pub scope: u8,
    pub kind: u8,
    pub oif: u32,
    pub gateway: Option<IpAddr>,
    pub prefsrc: Option<IpAddr>,
}

impl RouteInfo {
    /// What the kernel itself uses to tell two routes apart when one
    /// replaces another (`NLM_F_REPLACE`): everything but the next hop.
    pub fn is_default(&self) -> bool {
        self.dst_len == 0 && self.src_len == 0
    }

    /// The smallest route of `family` in `table`, to start a range there.
    pub fn table_start(family: u8, table: u32) -> RouteInfo {
        RouteInfo {
            family,
            table,
            dst: None,
            dst_len: 0,
            src: None,
            src_len: 0,
            tos: 0,
            priority: 0,
            protocol: 0,
            scope: 0,
            kind: 0,
            oif: 0,
            gateway: None,
            prefsrc: None,
        }
    }

    pub fn replace_key(&self) -> (u8, u32, Option<IpAddr>, u8, Option<IpAddr>, u8, u8, u32) {
        (
            self.family,
            self.table,
            self.dst,
            self.dst_len,
            self.src,
            self.src_len,
            self.tos,
            self.priority,
        )
    }
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RuleInfo {
    pub family: u8,
    pub priority: u32,
    pub table: u32,
    pub action: u8,
    pub src: Option<IpAddr>,
    pub src_len: u8,
    pub dst: Option<IpAddr>,
    pub dst_len: u8,
    pub tos: u8,
    pub fwmark: u32,
    pub fwmask: u32,
    pub iif: Vec<u8>,
    pub oif: Vec<u8>,
    pub protocol: u8,
    /// Attributes the core does not interpret, kept so two rules that
    /// differ only there stay two rules.
    pub extra: Vec<u8>,
}

/// One decoded kernel message, or a marker of a full dump.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    NewLink(LinkInfo),
    DelLink(u32),
    NewAddr(AddrInfo),
    DelAddr(AddrInfo),
    NewRoute {
        route: RouteInfo,
        replace: bool,
    },
    DelRoute(RouteInfo),
    NewRule(RuleInfo),
    DelRule(RuleInfo),
    /// A full dump follows: what it does not mention is gone.
    ResyncBegin,
    ResyncEnd,
}

pub fn family_name(family: u8) -> &'static str {
    match family {
        2 => "inet",
        10 => "inet6",
        _ => "other",
    }
}

pub fn scope_name(scope: u8) -> &'static str {
    match scope {
        RT_SCOPE_UNIVERSE => "global",
        RT_SCOPE_SITE => "site",
        RT_SCOPE_LINK => "link",
        RT_SCOPE_HOST => "host",
        _ => "other",
    }
}

/// Which routing tables the mirror keeps (`monitoring.routes`). Routes of
/// other tables are neither stored nor reported to hooks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum RouteScope {
    /// Every table.
    #[default]
    All,
    /// No routes at all: the netlink source does not even subscribe.
    None,
    /// These tables, sorted and without duplicates.
    Tables(Vec<u32>),
}

impl RouteScope {
    pub fn keeps(&self, table: u32) -> bool {
        match self {
            RouteScope::All => true,
            RouteScope::None => false,
            RouteScope::Tables(t) => t.binary_search(&table).is_ok(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_up_to_ifnamsiz_are_kept_verbatim() {
        let n15 = b"abcdefghijklmno";
        let n = IfName::new(n15).unwrap();
        assert_eq!(&*n, n15);
        assert_eq!(IfName::new(b"abcdefghijklmnop"), None, "16 bytes");
        let odd = IfName::new(b"e\xff\x01 x").unwrap();
        assert_eq!(&*odd, b"e\xff\x01 x");
        assert_eq!(format!("{odd:?}"), "\"e\u{fffd}\\u{1} x\"");
        let empty = IfName::new(b"").unwrap();
        assert!(empty.is_empty());
        assert_eq!(empty, IfName::default());
        assert_eq!(std::mem::size_of::<IfName>(), 16);
    }

    #[test]
    fn names_compare_and_hash_as_their_bytes() {
        use std::collections::hash_map::DefaultHasher;
        let h = |x: &dyn Fn(&mut DefaultHasher)| {
            let mut s = DefaultHasher::new();
            x(&mut s);
            s.finish()
        };
        let (a, b) = (IfName::new(b"ab").unwrap(), IfName::new(b"b").unwrap());
        // By bytes, not by length first.
        assert!(a < b);
        assert_eq!(h(&|s| a.hash(s)), h(&|s| b"ab"[..].hash(s)));
        assert!(a == b"ab"[..] && &b"ab"[..] == a && a == b"ab".to_vec());
        let m: std::collections::HashMap<IfName, u32> = [(a, 1)].into();
        assert_eq!(m.get(&b"ab"[..]), Some(&1));
    }

    #[test]
    fn hardware_addresses_of_every_length() {
        assert!(HwAddr::default().is_empty());
        let eth = HwAddr::new(&[2, 0, 0, 0, 0, 1]).unwrap();
        assert_eq!(&*eth, &[2, 0, 0, 0, 0, 1]);
        let ib: Vec<u8> = (0..20).collect();
        assert_eq!(&*HwAddr::new(&ib).unwrap(), &ib[..]);
        let max: Vec<u8> = (0..32).collect();
        assert_eq!(&*HwAddr::new(&max).unwrap(), &max[..]);
        assert_eq!(HwAddr::new(&[0; 33]), None);
        assert_eq!(format!("{eth:?}"), "[02, 00, 00, 00, 00, 01]");
    }

    #[test]
    fn kinds_are_interned_known_or_not() {
        let v = LinkKind::new("veth").unwrap();
        assert_eq!(v, LinkKind::new("veth").unwrap());
        assert_eq!(&*v, "veth");
        let odd = LinkKind::new("made-up-kind-for-a-test").unwrap();
        assert_eq!(odd, LinkKind::new("made-up-kind-for-a-test").unwrap());
        assert_eq!(odd.as_str(), "made-up-kind-for-a-test");
        assert_ne!(odd, v);
        assert_eq!(Some(odd).as_deref(), Some("made-up-kind-for-a-test"));
        assert_eq!(format!("{v:?}"), "\"veth\"");
        assert_eq!(&*LinkKind::new("").unwrap(), "");
    }
}
