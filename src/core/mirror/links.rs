//! The mirror's links, dense: one `Vec` of links in no particular order,
//! found by index and by name through two maps of 32-bit integers, and
//! each link's addresses in a sorted `Vec`.
//!
//! Why not a `BTreeMap<u32, Link>`: links arrive with rising indexes, and
//! a B-tree filled in order leaves its nodes half empty, which doubled
//! what a link cost. A `BTreeMap` of addresses costs a 700-byte node for a
//! link's single address. Here a link costs its own size plus about 30
//! bytes of maps (measured in model.rs's `memory` test). Pure: no I/O.

use std::collections::HashMap;
use std::net::IpAddr;

use super::Link;
use crate::core::types::{AddrInfo, LinkInfo};

#[derive(Default)]
pub struct Links {
    all: Vec<Link>,
    /// Index → position in `all`.
    at: HashMap<u32, u32>,
    /// `name_key(name)` → index. Two names may share a key: the lookup
    /// checks the name and scans in that rare case (so does a rename,
    /// while two links briefly claim one name).
    by_name: HashMap<u32, u32>,
}

/// FNV-1a: names are at most 15 bytes and set by root, so a fast hash
/// with rare collisions is all that is wanted.
fn name_key(name: &[u8]) -> u32 {
    name.iter().fold(0x811c_9dc5, |h: u32, b| {
        (h ^ *b as u32).wrapping_mul(0x0100_0193)
    })
}

impl Links {
    pub fn get(&self, index: u32) -> Option<&Link> {
        self.at.get(&index).map(|&p| &self.all[p as usize])
    }

    pub fn get_mut(&mut self, index: u32) -> Option<&mut Link> {
        self.at.get(&index).map(|&p| &mut self.all[p as usize])
    }

    pub fn by_name(&self, name: &[u8]) -> Option<&Link> {
        match self.by_name.get(&name_key(name)).and_then(|i| self.get(*i)) {
            Some(l) if l.info.name == name => Some(l),
            _ => self.all.iter().find(|l| l.info.name == name),
        }
    }

    /// Every link, by index (queries and events list them in that order).
    pub fn iter(&self) -> impl Iterator<Item = &Link> {
        let mut v: Vec<&Link> = self.all.iter().collect();
        v.sort_unstable_by_key(|l| l.info.index);
        v.into_iter()
    }

    /// Every link, in no particular order.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut Link> {
        self.all.iter_mut()
    }

    /// The indexes, ascending.
    pub fn indexes(&self) -> Vec<u32> {
        let mut v: Vec<u32> = self.all.iter().map(|l| l.info.index).collect();
        v.sort_unstable();
        v
    }

    /// A new link, or new facts about a known one (whose addresses stay).
    /// Returns whether it went down.
    pub fn upsert(&mut self, info: LinkInfo) -> bool {
        let index = info.index;
        let key = name_key(&info.name);
        match self.at.get(&index) {
            Some(&p) => {
                let l = &mut self.all[p as usize];
                if l.info.name != info.name {
                    let old = name_key(&l.info.name);
                    if self.by_name.get(&old) == Some(&index) {
                        self.by_name.remove(&old);
                    }
                    self.by_name.insert(key, index);
                }
                let was_up = l.info.flags & crate::core::types::IFF_UP != 0;
                l.info = info;
                was_up && l.info.flags & crate::core::types::IFF_UP == 0
            }
            None => {
                self.at.insert(index, self.all.len() as u32);
                self.all.push(Link::new(info));
                self.by_name.insert(key, index);
                false
            }
        }
    }

    pub fn remove(&mut self, index: u32) -> Option<Link> {
        let p = self.at.remove(&index)? as usize;
        let link = self.all.swap_remove(p);
        if let Some(moved) = self.all.get(p) {
            self.at.insert(moved.info.index, p as u32);
        }
        let key = name_key(&link.info.name);
        if self.by_name.get(&key) == Some(&index) {
            self.by_name.remove(&key);
        }
        Some(link)
    }

    /// Gives back what a burst of links left.
    pub fn shrink(&mut self) {
        self.all.shrink_to_fit();
        self.at.shrink_to_fit();
        self.by_name.shrink_to_fit();
    }
}

/// A link's addresses, sorted by address and prefix length; a link has a
/// few, and a sorted `Vec` holds them in their own size.
#[derive(Clone, Debug, Default)]
pub struct Addrs(Vec<((IpAddr, u8), AddrInfo)>);

impl Addrs {
    fn find(&self, key: &(IpAddr, u8)) -> Result<usize, usize> {
        self.0.binary_search_by(|(k, _)| k.cmp(key))
    }

    /// Adds or replaces; returns what was replaced.
    pub fn insert(&mut self, key: (IpAddr, u8), a: AddrInfo) -> Option<AddrInfo> {
        match self.find(&key) {
            Ok(i) => Some(std::mem::replace(&mut self.0[i].1, a)),
            Err(i) => {
                self.0.insert(i, (key, a));
                None
            }
        }
    }

    pub fn remove(&mut self, key: &(IpAddr, u8)) -> Option<AddrInfo> {
        let i = self.find(key).ok()?;
        let a = self.0.remove(i).1;
        if self.0.len() * 4 < self.0.capacity() {
            self.0.shrink_to_fit();
        }
        Some(a)
    }

    /// In address order, as a `BTreeMap` would give them.
    pub fn values(&self) -> impl Iterator<Item = &AddrInfo> {
        self.0.iter().map(|(_, a)| a)
    }

    pub fn keys(&self) -> impl Iterator<Item = &(IpAddr, u8)> {
        self.0.iter().map(|(k, _)| k)
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn shrink(&mut self) {
        self.0.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::types::{HwAddr, IfName};

    fn info(index: u32, name: &[u8]) -> LinkInfo {
        LinkInfo {
            index,
            name: IfName::new(name).unwrap(),
            flags: 0,
            operstate: 0,
            mtu: 1500,
            kind: None,
            mac: HwAddr::default(),
        }
    }

    fn addr(ip: &str, prefix: u8) -> AddrInfo {
        AddrInfo {
            index: 1,
            ip: ip.parse().unwrap(),
            prefix,
            scope: 0,
            flags: 0,
            valid_lft: u32::MAX,
            preferred_lft: u32::MAX,
        }
    }

    #[test]
    fn removal_keeps_every_other_link_found() {
        let mut l = Links::default();
        for i in 1..=50 {
            l.upsert(info(i, format!("l{i}").as_bytes()));
        }
        for i in (1..=50).step_by(3) {
            assert_eq!(l.remove(i).unwrap().info.index, i);
        }
        assert!(l.remove(1).is_none());
        for i in 1..=50u32 {
            let kept = (i - 1) % 3 != 0;
            assert_eq!(l.get(i).map(|k| k.info.index), kept.then_some(i), "{i}");
            let by_name = l.by_name(format!("l{i}").as_bytes()).map(|k| k.info.index);
            assert_eq!(by_name, kept.then_some(i), "l{i}");
        }
        let want: Vec<u32> = (1..=50).filter(|i| (i - 1) % 3 != 0).collect();
        assert_eq!(l.indexes(), want);
        let listed: Vec<u32> = l.iter().map(|k| k.info.index).collect();
        assert_eq!(listed, want);
    }

    #[test]
    fn renames_and_names_shared_for_a_moment() {
        let mut l = Links::default();
        l.upsert(info(1, b"a"));
        l.upsert(info(2, b"b"));
        // 2 takes "a" before 1 is renamed away from it.
        l.upsert(info(2, b"a"));
        assert!(l.by_name(b"a").is_some());
        l.upsert(info(1, b"c"));
        assert_eq!(l.by_name(b"a").unwrap().info.index, 2);
        assert_eq!(l.by_name(b"c").unwrap().info.index, 1);
        assert!(l.by_name(b"b").is_none());
        l.remove(2);
        assert!(l.by_name(b"a").is_none());
    }

    #[test]
    fn colliding_names_are_still_found() {
        // Brute-force two names of one FNV key.
        let mut seen = HashMap::new();
        let (x, y) = (0u32..)
            .find_map(|i| {
                let n = format!("n{i}");
                seen.insert(name_key(n.as_bytes()), n.clone())
                    .map(|o| (o, n))
            })
            .unwrap();
        let mut l = Links::default();
        l.upsert(info(1, x.as_bytes()));
        l.upsert(info(2, y.as_bytes()));
        assert_eq!(l.by_name(x.as_bytes()).unwrap().info.index, 1);
        assert_eq!(l.by_name(y.as_bytes()).unwrap().info.index, 2);
        l.remove(2);
        assert_eq!(l.by_name(x.as_bytes()).unwrap().info.index, 1);
    }

    #[test]
    fn addresses_stay_sorted_like_a_map() {
        let mut a = Addrs::default();
        assert!(a.is_empty());
        assert!(a
            .insert(("10.0.0.2".parse().unwrap(), 24), addr("10.0.0.2", 24))
            .is_none());
        assert!(a
            .insert(("fe80::1".parse().unwrap(), 64), addr("fe80::1", 64))
            .is_none());
        assert!(a
            .insert(("10.0.0.1".parse().unwrap(), 8), addr("10.0.0.1", 8))
            .is_none());
        let mut again = addr("10.0.0.2", 24);
        again.scope = 253;
        let old = a.insert(("10.0.0.2".parse().unwrap(), 24), again).unwrap();
        assert_eq!(old.scope, 0);
        let order: Vec<String> = a
            .values()
            .map(|x| format!("{}/{}", x.ip, x.prefix))
            .collect();
        assert_eq!(order, ["10.0.0.1/8", "10.0.0.2/24", "fe80::1/64"]);
        assert_eq!(a.len(), 3);
        assert!(a.remove(&("10.0.0.2".parse().unwrap(), 8)).is_none());
        assert_eq!(
            a.remove(&("10.0.0.2".parse().unwrap(), 24)).unwrap().scope,
            253
        );
        assert_eq!(a.keys().count(), 2);
    }
}
