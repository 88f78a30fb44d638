//! The mirror's links, dense: one `Vec` of links in no particular order,
//! found by index and by name through two hash indexes of 32-bit
//! positions (`Index`), and each link's addresses in a sorted `Vec`.
//!
//! Why not a `BTreeMap<u32, Link>`: links arrive with rising indexes, and
//! a B-tree filled in order leaves its nodes half empty, which doubled
//! what a link cost. A `BTreeMap` of addresses costs a 700-byte node for a
//! link's single address. Here a link costs its own size plus about 13
//! bytes of indexes (measured in model.rs's `memory` test). Pure: no I/O.

use std::net::IpAddr;

use super::Link;
use crate::core::types::{AddrInfo, LinkInfo, IFF_UP};

#[derive(Default)]
pub struct Links {
    all: Vec<Link>,
    /// Positions in `all` by index.
    at: Index,
    /// Positions in `all` by name. During a rename two links may briefly
    /// claim one name: both are in it, and a lookup finds either.
    by_name: Index,
}

fn index_hash(index: u32) -> u64 {
    mix(index as u64)
}

/// FNV-1a, then mixed: names are at most 15 bytes and set by root.
fn name_hash(name: &[u8]) -> u64 {
    mix(name.iter().fold(0xcbf2_9ce4_8422_2325, |h: u64, b| {
        (h ^ *b as u64).wrapping_mul(0x0100_0000_01b3)
    }))
}

/// Spreads any bits over the high half, which `Index` uses.
fn mix(x: u64) -> u64 {
    (x ^ (x >> 29)).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

const EMPTY: u32 = u32::MAX;

/// A hash index of positions in `Links::all`, four bytes a slot: open
/// addressing with linear probing, at most three quarters full, with
/// backward-shift deletion (no tombstones). The key is not stored: the
/// caller passes a hash and says which position is the one sought, and
/// rehashes a position when slots move. A `HashMap<u32, u32>` costs
/// about 15 bytes a link; this about 6.
#[derive(Default)]
struct Index {
    /// A power of two long, or empty.
    slots: Vec<u32>,
    len: usize,
}

impl Index {
    fn home(&self, h: u64) -> usize {
        (h >> 32) as usize & (self.slots.len() - 1)
    }

    /// The slot holding the position `is` accepts among those of hash `h`.
    fn find(&self, h: u64, is: impl Fn(u32) -> bool) -> Option<usize> {
        if self.slots.is_empty() {
            return None;
        }
        let mask = self.slots.len() - 1;
        let mut i = self.home(h);
        loop {
            match self.slots[i] {
                EMPTY => return None,
                v if is(v) => return Some(i),
                _ => i = (i + 1) & mask,
            }
        }
    }

    fn get(&self, h: u64, is: impl Fn(u32) -> bool) -> Option<u32> {
        self.find(h, is).map(|i| self.slots[i])
    }

    fn put(&mut self, h: u64, pos: u32) {
        let mask = self.slots.len() - 1;
        let mut i = self.home(h);
        while self.slots[i] != EMPTY {
            i = (i + 1) & mask;
        }
        self.slots[i] = pos;
    }

    fn insert(&mut self, h: u64, pos: u32, hash: impl Fn(u32) -> u64) {
        if (self.len + 1) * 4 > self.slots.len() * 3 {
            self.resize((self.slots.len() * 2).max(8), &hash);
        }
        self.put(h, pos);
        self.len += 1;
    }

    /// Rebuilds with `n` slots.
    fn resize(&mut self, n: usize, hash: &impl Fn(u32) -> u64) {
        let old = std::mem::replace(&mut self.slots, vec![EMPTY; n]);
        for v in old.into_iter().filter(|v| *v != EMPTY) {
            self.put(hash(v), v);
        }
    }

    /// Empties slot `i`, moving later entries of its run back so that
    /// every entry stays reachable from its home slot.
    fn remove_at(&mut self, i: usize, hash: impl Fn(u32) -> u64) {
        let mask = self.slots.len() - 1;
        let (mut hole, mut j) = (i, i);
        loop {
            j = (j + 1) & mask;
            let v = self.slots[j];
            if v == EMPTY {
                break;
            }
            // v may fill the hole if its home is not within (hole, j].
            let home = self.home(hash(v));
            if (j.wrapping_sub(home) & mask) >= (j.wrapping_sub(hole) & mask) {
                self.slots[hole] = v;
                hole = j;
            }
        }
        self.slots[hole] = EMPTY;
        self.len -= 1;
    }

    /// Turns the slot holding `from` into `to` (a link moved in `all`).
    fn repoint(&mut self, h: u64, from: u32, to: u32) {
        if let Some(i) = self.find(h, |v| v == from) {
            self.slots[i] = to;
        }
    }

    fn shrink(&mut self, hash: impl Fn(u32) -> u64) {
        let mut n = 8;
        while self.len * 4 > n * 3 {
            n *= 2;
        }
        if self.len == 0 {
            self.slots = Vec::new();
        } else if n < self.slots.len() {
            self.resize(n, &hash);
        }
    }
}

impl Links {
    fn pos(&self, index: u32) -> Option<usize> {
        let all = &self.all;
        self.at
            .get(index_hash(index), |p| all[p as usize].info.index == index)
            .map(|p| p as usize)
    }

    pub fn get(&self, index: u32) -> Option<&Link> {
        self.pos(index).map(|p| &self.all[p])
    }

    pub fn get_mut(&mut self, index: u32) -> Option<&mut Link> {
        self.pos(index).map(|p| &mut self.all[p])
    }

    pub fn by_name(&self, name: &[u8]) -> Option<&Link> {
        let all = &self.all;
        self.by_name
            .get(name_hash(name), |p| all[p as usize].info.name == name)
            .map(|p| &all[p as usize])
    }

    /// Every link, by index (queries and events list them in that order).
    pub fn iter(&self) -> impl Iterator<Item = &Link> {
        let mut v: Vec<&Link> = self.all.iter().collect();
        v.sort_unstable_by_key(|l| l.info.index);
        v.into_iter()
    }

    pub fn count(&self) -> usize {
        self.all.len()
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
        let Some(p) = self.pos(info.index) else {
            let p = self.all.len() as u32;
            let (ih, nh) = (index_hash(info.index), name_hash(&info.name));
            self.all.push(Link::new(info));
            let all = &self.all;
            self.at
                .insert(ih, p, |v| index_hash(all[v as usize].info.index));
            self.by_name
                .insert(nh, p, |v| name_hash(&all[v as usize].info.name));
            return false;
        };
        if self.all[p].info.name != info.name {
            let all = &self.all;
            let rehash = |v: u32| name_hash(&all[v as usize].info.name);
            if let Some(i) = self
                .by_name
                .find(name_hash(&all[p].info.name), |v| v == p as u32)
            {
                self.by_name.remove_at(i, rehash);
            }
            self.all[p].info.name = info.name;
            let all = &self.all;
            self.by_name.insert(name_hash(&info.name), p as u32, |v| {
                name_hash(&all[v as usize].info.name)
            });
        }
        let l = &mut self.all[p];
        let was_up = l.info.flags & IFF_UP != 0;
        l.info = info;
        was_up && l.info.flags & IFF_UP == 0
    }

    pub fn remove(&mut self, index: u32) -> Option<Link> {
        let p = self.pos(index)?;
        let all = &self.all;
        let (ih, nh) = (index_hash(index), name_hash(&all[p].info.name));
        if let Some(i) = self.at.find(ih, |v| v as usize == p) {
            self.at
                .remove_at(i, |v| index_hash(all[v as usize].info.index));
        }
        if let Some(i) = self.by_name.find(nh, |v| v as usize == p) {
            self.by_name
                .remove_at(i, |v| name_hash(&all[v as usize].info.name));
        }
        // The last link takes the hole: its slots say where it went.
        let last = (self.all.len() - 1) as u32;
        if p as u32 != last {
            let moved = &self.all[last as usize].info;
            self.at.repoint(index_hash(moved.index), last, p as u32);
            self.by_name.repoint(name_hash(&moved.name), last, p as u32);
        }
        Some(self.all.swap_remove(p))
    }

    /// Gives back what a burst of links left.
    pub fn shrink(&mut self) {
        self.all.shrink_to_fit();
        let all = &self.all;
        self.at.shrink(|v| index_hash(all[v as usize].info.index));
        self.by_name
            .shrink(|v| name_hash(&all[v as usize].info.name));
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
    fn an_index_whose_keys_all_collide_still_finds_each() {
        // Every entry in one run, wrapping past the end of the slots:
        // removal must move the rest back so each stays reachable.
        let hash = |v: u32| (61 + (v % 3) as u64) << 32;
        let mut ix = Index::default();
        for v in 0..40 {
            ix.insert(hash(v), v, hash);
        }
        for v in (0..40).step_by(4) {
            let i = ix.find(hash(v), |x| x == v).unwrap();
            ix.remove_at(i, hash);
        }
        ix.shrink(hash);
        for v in 0..40 {
            assert_eq!(ix.get(hash(v), |x| x == v).is_some(), v % 4 != 0, "{v}");
        }
        assert_eq!(ix.len, 30);
        assert!(ix.slots.len() >= 40 && ix.slots.len() <= 64);
        for v in (0..40).filter(|v| v % 4 != 0) {
            let i = ix.find(hash(v), |x| x == v).unwrap();
            ix.remove_at(i, hash);
        }
        ix.shrink(hash);
        assert!(ix.slots.is_empty());
        assert_eq!(ix.get(hash(1), |_| true), None);
    }

    #[test]
    fn ten_thousand_links_come_and_go_in_any_order() {
        let mut l = Links::default();
        let n = 10_000u32;
        for i in 1..=n {
            l.upsert(info(i, format!("l{i}").as_bytes()));
        }
        // Every other one, from the middle outwards and back.
        let mut order: Vec<u32> = (1..=n).filter(|i| i % 2 == 0).collect();
        order.sort_by_key(|i| (i.abs_diff(n / 2), *i));
        for i in &order {
            assert!(l.remove(*i).is_some());
        }
        l.shrink();
        for i in 1..=n {
            let want = (i % 2 == 1).then_some(i);
            assert_eq!(l.get(i).map(|k| k.info.index), want);
            let name = format!("l{i}");
            assert_eq!(l.by_name(name.as_bytes()).map(|k| k.info.index), want);
        }
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
