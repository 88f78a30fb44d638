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
