//! DHCP leases as dhclient's lease files report them: the current lease
//! of each interface and family, chosen among every watched file, and
//! which of them are new (a new lease runs `routable.d` with
//! BACKEND=dhclient and the DHCP_* variables; see event.rs).
//!
//! Fed with what each file holds now (the source parses; a file that did
//! not parse never gets here, so the last good leases stay) and the time.
//! A lease is new when its terms differ from the current one's: address,
//! mask, routers, name servers, domain, host name or lease time. A renewal
//! that changes only the times is not new, and a lease that ran out or
//! was released (dhclient appends an already expired block) is simply no
//! longer current: it runs no hook, and its gateway stops feeding policy
//! routing. Expiry is judged when a file is read.
//!
//! Pure: no I/O, no clock reads.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

/// One lease, its values checked by the parser.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    /// The interface name as the file has it.
    pub interface: Vec<u8>,
    /// `fixed-address`, or the first `iaaddr` of a DHCPv6 lease.
    pub address: IpAddr,
    pub subnet_mask: Option<Ipv4Addr>,
    /// `option routers`; DHCPv6 has none (routers come from RAs).
    pub routers: Vec<Ipv4Addr>,
    pub dns: Vec<IpAddr>,
    /// `domain-name` (IPv4) or `dhcp6.domain-search` (IPv6), several
    /// separated by spaces, trailing dots dropped.
    pub domain: Option<String>,
    pub hostname: Option<String>,
    /// `dhcp-lease-time`, or the address's `max-life` for DHCPv6.
    pub lease_secs: Option<u32>,
    /// Seconds since the epoch when it runs out; None for never.
    pub expires: Option<u64>,
}

impl Lease {
    /// A lease of `address`'s family with nothing else known yet.
    pub fn empty(address: IpAddr) -> Lease {
        Lease {
            interface: Vec::new(),
            address,
            subnet_mask: None,
            routers: Vec::new(),
            dns: Vec::new(),
            domain: None,
            hostname: None,
            lease_secs: None,
            expires: None,
        }
    }

    /// 2 (IPv4) or 10 (IPv6), as the kernel numbers families.
    pub fn family(&self) -> u8 {
        if self.address.is_ipv4() {
            2
        } else {
            10
        }
    }

    pub fn expired(&self, now_s: u64) -> bool {
        self.expires.is_some_and(|e| e <= now_s)
    }

    /// The same lease as far as hooks are concerned: all but the times.
    pub fn same_terms(&self, o: &Lease) -> bool {
        Lease {
            expires: None,
            ..self.clone()
        } == Lease {
            expires: None,
            ..o.clone()
        }
    }
}

/// What the lease watcher reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeaseInput {
    /// The leases a file holds now: the newest per interface and family.
    File { path: PathBuf, leases: Vec<Lease> },
    /// The file is gone (deleted or moved away).
    Gone(PathBuf),
}

/// An interface name and a family.
pub type Key = (Vec<u8>, u8);

/// The current leases are few (one or two per interface): plain vectors,
/// searched, cost far less code than maps (the binary's size is a goal).
#[derive(Debug, Default)]
pub struct Leases {
    /// Each file's leases, as last read.
    files: Vec<(PathBuf, Vec<Lease>)>,
    /// The current lease of each interface and family, in key order.
    current: Vec<Lease>,
    /// New leases whose link the kernel has not shown yet, or that came
    /// before the first dump was over.
    pending: Vec<Key>,
    /// Changes whenever a current lease's routers change, so policy
    /// routing knows to plan again.
    generation: u64,
}

/// Whether `a` runs out later than `b` (never is the latest).
fn later(a: Option<u64>, b: Option<u64>) -> bool {
    match (a, b) {
        (None, Some(_)) => true,
        (Some(x), Some(y)) => x > y,
        _ => false,
    }
}

fn same_key(a: &Lease, b: &Lease) -> bool {
    a.interface == b.interface && a.family() == b.family()
}

fn has_key(l: &Lease, k: &Key) -> bool {
    l.interface == k.0 && l.family() == k.1
}

impl Leases {
    /// Applies what the watcher saw; returns the keys whose lease is new,
    /// in key order.
    pub fn apply(&mut self, input: LeaseInput, now_ms: u64) -> Vec<Key> {
        match input {
            LeaseInput::File { path, leases } => {
                match self.files.iter_mut().find(|f| f.0 == path) {
                    Some(f) => f.1 = leases,
                    None => self.files.push((path, leases)),
                }
            }
            LeaseInput::Gone(path) => self.files.retain(|f| f.0 != path),
        }
        let now_s = now_ms / 1000;
        // Among files, the lease that runs out last wins; each file's own
        // newest was chosen by the parser.
        let mut win: Vec<&Lease> = Vec::new();
        for l in self.files.iter().flat_map(|f| &f.1) {
            if l.expired(now_s) {
                continue;
            }
            match win.iter_mut().find(|o| same_key(o, l)) {
                Some(o) if later(l.expires, o.expires) => *o = l,
                Some(_) => {}
                None => win.push(l),
            }
        }
        // Keys are unique here (`same_key` above), so unstable is exact.
        win.sort_unstable_by(|a, b| (&a.interface, a.family()).cmp(&(&b.interface, b.family())));
        let new: Vec<Key> = win
            .iter()
            .filter(|l| {
                !self
                    .current
                    .iter()
                    .any(|c| same_key(c, l) && c.same_terms(l))
            })
            .map(|l| (l.interface.clone(), l.family()))
            .collect();
        // Both in key order: the routers changed unless they pair up.
        let same_routers = win.len() == self.current.len()
            && win
                .iter()
                .zip(&self.current)
                .all(|(a, b)| same_key(a, b) && a.routers == b.routers);
        if !same_routers {
            self.generation += 1;
        }
        self.current = win.into_iter().cloned().collect();
        let current = &self.current;
        self.pending
            .retain(|k| current.iter().any(|l| has_key(l, k)));
        new
    }

    pub fn get(&self, key: &Key) -> Option<&Lease> {
        self.current.iter().find(|l| has_key(l, key))
    }

    /// The current leases, in key order.
    #[cfg(test)]
    pub fn iter(&self) -> impl Iterator<Item = &Lease> {
        self.current.iter()
    }

    /// The interface's current IPv4 lease's address and first router.
    pub fn gateway(&self, name: &[u8]) -> Option<(IpAddr, Ipv4Addr)> {
        self.current
            .iter()
            .find(|l| l.interface == name && l.address.is_ipv4())
            .and_then(|l| Some((l.address, *l.routers.first()?)))
    }

    /// An address came or went: if a current lease has it, what policy
    /// routing planned from the leases may change (a lease's gateway is
    /// used only while its link holds its address).
    pub fn address_changed(&mut self, ip: IpAddr) {
        if self.current.iter().any(|l| l.address == ip) {
            self.generation += 1;
        }
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Holds a new lease until its link is known.
    pub fn defer(&mut self, key: Key) {
        if !self.pending.contains(&key) {
            self.pending.push(key);
        }
    }

    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// The held leases of link `name`, no longer held.
    pub fn take_pending(&mut self, name: &[u8]) -> Vec<Key> {
        let (mine, rest) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|k| k.0 == name);
        self.pending = rest;
        mine
    }

    /// Every held lease, no longer held.
    pub fn take_all_pending(&mut self) -> Vec<Key> {
        std::mem::take(&mut self.pending)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(iface: &str, ip: &str, router: Option<&str>, expires: Option<u64>) -> Lease {
        Lease {
            interface: iface.as_bytes().to_vec(),
            routers: router.map(|r| r.parse().unwrap()).into_iter().collect(),
            expires,
            lease_secs: Some(600),
            ..Lease::empty(ip.parse().unwrap())
        }
    }

    fn file(p: &str, leases: Vec<Lease>) -> LeaseInput {
        LeaseInput::File {
            path: p.into(),
            leases,
        }
    }

    fn keys(k: &[Key]) -> Vec<String> {
        k.iter()
            .map(|(n, f)| format!("{}/{f}", String::from_utf8_lossy(n)))
            .collect()
    }

    const NOW: u64 = 1_000_000_000;

    #[test]
    fn new_renewed_changed_and_expired() {
        let mut l = Leases::default();
        let a = lease("eth0", "10.0.0.2", Some("10.0.0.1"), Some(NOW / 1000 + 600));
        let g0 = l.generation();
        // A first lease is new, and its router feeds policy routing.
        assert_eq!(keys(&l.apply(file("/f", vec![a.clone()]), NOW)), ["eth0/2"]);
        assert_eq!(
            l.gateway(b"eth0"),
            Some((a.address, Ipv4Addr::new(10, 0, 0, 1)))
        );
        // Its address coming or going may change the plan; another not.
        let g = l.generation();
        l.address_changed("10.0.0.9".parse().unwrap());
        assert_eq!(l.generation(), g);
        l.address_changed(a.address);
        assert_ne!(l.generation(), g);
        assert_ne!(l.generation(), g0);
        // A renewal (only the times moved) is not new.
        let g1 = l.generation();
        let mut renewed = a.clone();
        renewed.expires = Some(NOW / 1000 + 1200);
        assert!(l.apply(file("/f", vec![renewed]), NOW + 300_000).is_empty());
        assert_eq!(l.generation(), g1);
        // A different address is.
        let b = lease(
            "eth0",
            "10.0.0.3",
            Some("10.0.0.1"),
            Some(NOW / 1000 + 2000),
        );
        assert_eq!(keys(&l.apply(file("/f", vec![b.clone()]), NOW)), ["eth0/2"]);
        assert_eq!(l.generation(), g1, "the same router");
        // Released: dhclient appends an expired block; nothing is new and
        // the gateway is gone.
        let released = lease("eth0", "10.0.0.3", Some("10.0.0.1"), Some(NOW / 1000));
        assert!(l.apply(file("/f", vec![released]), NOW).is_empty());
        assert_eq!(l.gateway(b"eth0"), None);
        assert_ne!(l.generation(), g1);
        // The same lease again after that is new again.
        assert_eq!(keys(&l.apply(file("/f", vec![b]), NOW)), ["eth0/2"]);
    }

    #[test]
    fn files_and_families() {
        let mut l = Leases::default();
        let v4 = lease("eth0", "10.0.0.2", Some("10.0.0.1"), None);
        let v6 = lease("eth0", "2001:db8::2", None, Some(NOW / 1000 + 60));
        let other = lease("eth1", "10.1.0.2", Some("10.1.0.1"), Some(NOW / 1000 + 60));
        let new = l.apply(file("/a", vec![v4.clone(), v6]), NOW);
        assert_eq!(keys(&new), ["eth0/2", "eth0/10"]);
        // The same lease in a second file changes nothing.
        assert_eq!(keys(&l.apply(file("/b", vec![v4, other]), NOW)), ["eth1/2"]);
        assert_eq!(l.iter().count(), 3);
        // Of two files, the lease that runs out later wins.
        let longer = lease(
            "eth1",
            "10.1.0.9",
            Some("10.1.0.1"),
            Some(NOW / 1000 + 6000),
        );
        assert_eq!(keys(&l.apply(file("/c", vec![longer]), NOW)), ["eth1/2"]);
        assert_eq!(
            l.get(&(b"eth1".to_vec(), 2)).unwrap().address.to_string(),
            "10.1.0.9"
        );
        // A file that goes takes its leases with it; no hook for that.
        assert_eq!(
            keys(&l.apply(LeaseInput::Gone("/c".into()), NOW)),
            ["eth1/2"]
        );
        assert_eq!(
            l.get(&(b"eth1".to_vec(), 2)).unwrap().address.to_string(),
            "10.1.0.2"
        );
        assert!(l.apply(LeaseInput::Gone("/b".into()), NOW).is_empty());
        assert!(l.apply(LeaseInput::Gone("/a".into()), NOW).is_empty());
        assert_eq!(l.iter().count(), 0);
    }

    #[test]
    fn pending_until_the_link_is_known() {
        let mut l = Leases::default();
        let new = l.apply(file("/a", vec![lease("wan", "10.0.0.2", None, None)]), NOW);
        for k in new {
            l.defer(k);
        }
        assert!(l.has_pending());
        assert!(l.take_pending(b"lan").is_empty());
        assert_eq!(keys(&l.take_pending(b"wan")), ["wan/2"]);
        assert!(!l.has_pending());
        // A held lease that stops being current is no longer held.
        l.defer((b"wan".to_vec(), 2));
        l.apply(LeaseInput::Gone("/a".into()), NOW);
        assert!(!l.has_pending());
    }
}
