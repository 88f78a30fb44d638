//! The route table in little memory: a full Internet table (a million
//! IPv4 routes) must fit an appliance, so no route has a heap allocation
//! of its own.
//!
//! Each family's routes are fixed-size records (`Rec`) in sorted blocks of
//! at most `BLOCK` records: a one-level B-tree whose leaves are plain
//! vectors. The record keeps the table, destination, prefix length, metric
//! and output link inline; everything else (source prefix, TOS, protocol,
//! scope, type, gateway, preferred source) is one id into `Interner`,
//! since a full table has a handful of distinct next hops, not a million.
//! An IPv4 route costs 24 bytes, an IPv6 route 36, before block slack.
//!
//! Blocks are allocated at their full size once and never grow, so there
//! is no doubling slack; ascending inserts (a dump, an `ip -batch` of a
//! sorted table), also those that land before other routes, fill blocks
//! completely; random ones about three quarters.
//! Emptied blocks are freed and thin ones merged, so memory comes back
//! after a burst (the reactor's trim timer then hands pages back).
//!
//! A dump's bookkeeping is a bit per record (`SEEN`), not a second set.
//! Only IPv4 and IPv6 routes whose addresses are all of their family are
//! held (`fits`); the decoder makes no others. Pure: no I/O.

use std::cmp::Ordering;
use std::net::IpAddr;

use super::super::fx::FxMap;
use super::super::types::RouteInfo;

/// Records per block: a block is 12 KiB (IPv4) or 18 KiB (IPv6), small
/// enough that an insert's shift is cheap and a freed block's pages are
/// reusable, large enough that the block index stays small.
const BLOCK: usize = 512;

/// `Rec::flags`: the route has a destination address (a default route
/// has none; `0.0.0.0/0` with one is kept apart from it).
const HAS_DST: u8 = 1;
/// `Rec::flags`: the current dump mentioned the route.
const SEEN: u8 = 2;

/// What routes share: everything but the table, destination, metric and
/// link. Interned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Attrs {
    src: Option<IpAddr>,
    src_len: u8,
    tos: u8,
    protocol: u8,
    scope: u8,
    kind: u8,
    gateway: Option<IpAddr>,
    prefsrc: Option<IpAddr>,
}

impl Attrs {
    fn of(r: &RouteInfo) -> Attrs {
        Attrs {
            src: r.src,
            src_len: r.src_len,
            tos: r.tos,
            protocol: r.protocol,
            scope: r.scope,
            kind: r.kind,
            gateway: r.gateway,
            prefsrc: r.prefsrc,
        }
    }
}

/// Interned attribute sets with reference counts; a set no route uses
/// any more is dropped and its id reused.
#[derive(Default)]
struct Interner {
    vals: Vec<Attrs>,
    refs: Vec<u32>,
    ids: FxMap<Attrs, u32>,
    free: Vec<u32>,
}

impl Interner {
    fn find(&self, a: &Attrs) -> Option<u32> {
        self.ids.get(a).copied()
    }

    /// Takes a reference to `a`, interning it if new.
    fn take(&mut self, a: Attrs) -> u32 {
        if let Some(&id) = self.ids.get(&a) {
            self.refs[id as usize] += 1;
            return id;
        }
        let id = match self.free.pop() {
            Some(id) => {
                self.vals[id as usize] = a;
                self.refs[id as usize] = 1;
                id
            }
            None => {
                self.vals.push(a);
                self.refs.push(1);
                (self.vals.len() - 1) as u32
            }
        };
        self.ids.insert(a, id);
        id
    }

    fn release(&mut self, id: u32) {
        let n = &mut self.refs[id as usize];
        *n -= 1;
        if *n == 0 {
            self.ids.remove(&self.vals[id as usize]);
            self.free.push(id);
            if self.ids.is_empty() {
                // The last route went: give everything back.
                *self = Interner::default();
            } else if self.ids.capacity() > 64 && self.ids.len() * 4 < self.ids.capacity() {
                self.ids.shrink_to_fit();
            }
        }
    }

    fn get(&self, id: u32) -> &Attrs {
        &self.vals[id as usize]
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.ids.len()
    }
}

/// A destination address as a record stores it: ordered as the address.
trait Addr: Copy + Ord + Default {
    const FAMILY: u8;
    fn from_ip(ip: IpAddr) -> Option<Self>;
    fn to_ip(self) -> IpAddr;
}

impl Addr for u32 {
    const FAMILY: u8 = 2;
    fn from_ip(ip: IpAddr) -> Option<u32> {
        match ip {
            IpAddr::V4(a) => Some(a.into()),
            IpAddr::V6(_) => None,
        }
    }
    fn to_ip(self) -> IpAddr {
        IpAddr::from(self.to_be_bytes())
    }
}

/// Bytes, not `u128`: a `u128` would align the record to 16 bytes.
impl Addr for [u8; 16] {
    const FAMILY: u8 = 10;
    fn from_ip(ip: IpAddr) -> Option<[u8; 16]> {
        match ip {
            IpAddr::V6(a) => Some(a.octets()),
            IpAddr::V4(_) => None,
        }
    }
    fn to_ip(self) -> IpAddr {
        IpAddr::from(self)
    }
}

/// One route. Ordered by (table, destination, prefix length, metric):
/// the kernel's replace key but for the source prefix and TOS, which sit
/// in `attrs`, so the routes one replaces are neighbours.
#[derive(Clone, Copy, Debug)]
struct Rec<A> {
    table: u32,
    dst: A,
    priority: u32,
    oif: u32,
    attrs: u32,
    dst_len: u8,
    flags: u8,
}

impl<A: Addr> Rec<A> {
    /// The part of the order up to the metric.
    fn head(&self) -> (u32, u8, A, u8, u32) {
        (
            self.table,
            self.flags & HAS_DST,
            self.dst,
            self.dst_len,
            self.priority,
        )
    }

    fn cmp_key(&self, o: &Self) -> Ordering {
        self.head()
            .cmp(&o.head())
            .then(self.attrs.cmp(&o.attrs))
            .then(self.oif.cmp(&o.oif))
    }
}

/// One family's records in sorted blocks, each allocated at `BLOCK`
/// records and never grown. No block is empty.
struct Table<A> {
    blocks: Vec<Vec<Rec<A>>>,
    /// Each block's last record, side by side: finding a record's block
    /// searches this (a few cache lines) rather than following every
    /// block's pointer (a cache miss each at a full table).
    lasts: Vec<Rec<A>>,
    len: usize,
}

impl<A> Default for Table<A> {
    fn default() -> Self {
        Table {
            blocks: Vec::new(),
            lasts: Vec::new(),
            len: 0,
        }
    }
}

impl<A: Addr> Table<A> {
    fn new_block() -> Vec<Rec<A>> {
        Vec::with_capacity(BLOCK)
    }

    /// The block `r` belongs in: the first whose last record is not below
    /// it, or the last block.
    fn block_of(&self, r: &Rec<A>) -> usize {
        let i = self
            .lasts
            .partition_point(|l| l.cmp_key(r) == Ordering::Less);
        i.min(self.blocks.len().saturating_sub(1))
    }

    /// `lasts` from block `i` on, after blocks came, went or changed there.
    fn relast(&mut self, i: usize) {
        self.lasts.truncate(i);
        self.lasts.extend(
            self.blocks[i.min(self.blocks.len())..]
                .iter()
                .map(|b| *b.last().expect("no empty block")),
        );
    }

    fn find(&self, r: &Rec<A>) -> Option<(usize, usize)> {
        if self.blocks.is_empty() {
            return None;
        }
        let b = self.block_of(r);
        let i = self.blocks[b].binary_search_by(|x| x.cmp_key(r)).ok()?;
        Some((b, i))
    }

    /// Inserts `r`; false (and nothing changed) if it is there already,
    /// but the stored one's flags take `r`'s `SEEN`.
    #[inline(never)]
    fn insert(&mut self, r: Rec<A>) -> bool {
        if self.blocks.is_empty() {
            let mut b = Self::new_block();
            b.push(r);
            self.blocks.push(b);
            self.lasts = vec![r];
            self.len = 1;
            return true;
        }
        let bi = self.block_of(&r);
        let pos = match self.blocks[bi].binary_search_by(|x| x.cmp_key(&r)) {
            Ok(i) => {
                self.blocks[bi][i].flags |= r.flags & SEEN;
                return false;
            }
            Err(i) => i,
        };
        self.len += 1;
        let b = &mut self.blocks[bi];
        if b.len() < BLOCK {
            b.insert(pos, r);
            if pos + 1 == b.len() {
                self.lasts[bi] = r;
            }
            return true;
        }
        // Full. At either end a new block takes the record alone, so a
        // sorted stream fills every block. Near an end the block splits
        // where the record goes: a sorted stream that lands just before
        // other records (a table's routes before the local table's) then
        // fills the left part and continues in it. Elsewhere the block
        // splits in half.
        if pos == BLOCK {
            let mut n = Self::new_block();
            n.push(r);
            self.blocks.insert(bi + 1, n);
        } else if pos == 0 {
            if bi > 0 && self.blocks[bi - 1].len() < BLOCK {
                self.blocks[bi - 1].push(r);
            } else {
                let mut n = Self::new_block();
                n.push(r);
                self.blocks.insert(bi, n);
            }
        } else if pos >= BLOCK * 3 / 4 {
            let mut tail = Self::new_block();
            tail.extend(b.drain(pos..));
            b.push(r);
            self.blocks.insert(bi + 1, tail);
        } else if pos <= BLOCK / 4 {
            let mut tail = Self::new_block();
            tail.push(r);
            tail.extend(b.drain(pos..));
            self.blocks.insert(bi + 1, tail);
        } else {
            let mut tail = Self::new_block();
            tail.extend(b.drain(BLOCK / 2..));
            if pos <= BLOCK / 2 {
                b.insert(pos, r);
            } else {
                tail.insert(pos - BLOCK / 2, r);
            }
            self.blocks.insert(bi + 1, tail);
        }
        self.relast(bi.saturating_sub(1));
        true
    }

    /// Removes the record equal to `r`, returning it.
    #[inline(never)]
    fn remove(&mut self, r: &Rec<A>) -> Option<Rec<A>> {
        let (b, i) = self.find(r)?;
        let old = self.blocks[b].remove(i);
        self.len -= 1;
        self.settle(b);
        Some(old)
    }

    /// After a removal from block `b`: an empty block goes, a thin one
    /// merges into its successor when both fit in half a block.
    fn settle(&mut self, b: usize) {
        let n = self.blocks[b].len();
        if n == 0 {
            self.blocks.remove(b);
            self.lasts.remove(b);
        } else if n < BLOCK / 4
            && b + 1 < self.blocks.len()
            && n + self.blocks[b + 1].len() <= BLOCK / 2
        {
            let next = self.blocks.remove(b + 1);
            self.blocks[b].extend(next);
            self.lasts.remove(b);
        } else {
            self.lasts[b] = *self.blocks[b].last().expect("not empty");
        }
        self.shrink_index();
    }

    fn shrink_index(&mut self) {
        if self.blocks.is_empty() {
            self.blocks = Vec::new();
            self.lasts = Vec::new();
        } else {
            if self.blocks.capacity() > 16 && self.blocks.len() * 4 < self.blocks.capacity() {
                self.blocks.shrink_to(self.blocks.len() * 2);
            }
            if self.lasts.capacity() > 16 && self.lasts.len() * 4 < self.lasts.capacity() {
                self.lasts.shrink_to(self.lasts.len() * 2);
            }
        }
    }

    /// Keeps the records `keep` accepts (it may change their flags);
    /// the others are appended to `gone` in order. Blocks are repacked
    /// when they thinned out.
    fn retain(&mut self, keep: &mut dyn FnMut(&mut Rec<A>) -> bool, gone: &mut Vec<Rec<A>>) {
        let before = gone.len();
        for b in &mut self.blocks {
            b.retain_mut(|r| {
                let k = keep(r);
                if !k {
                    gone.push(*r);
                }
                k
            });
        }
        self.len -= gone.len() - before;
        if gone.len() == before {
            return;
        }
        self.blocks.retain(|b| !b.is_empty());
        if self.len * 2 < self.blocks.len() * BLOCK {
            self.repack();
        }
        self.relast(0);
        self.shrink_index();
    }

    /// Rewrites the blocks three quarters full, freeing the rest.
    fn repack(&mut self) {
        let fill = BLOCK * 3 / 4;
        let mut out: Vec<Vec<Rec<A>>> = Vec::with_capacity(self.len.div_ceil(fill));
        for b in std::mem::take(&mut self.blocks) {
            for r in b {
                match out.last_mut() {
                    Some(o) if o.len() < fill => o.push(r),
                    _ => {
                        let mut n = Self::new_block();
                        n.push(r);
                        out.push(n);
                    }
                }
            }
        }
        self.blocks = out;
    }

    fn iter(&self) -> impl Iterator<Item = &Rec<A>> + '_ {
        self.blocks.iter().flatten()
    }

    /// The records from the first not below `r`, in order.
    fn iter_from<'a>(&'a self, r: &Rec<A>) -> impl Iterator<Item = &'a Rec<A>> + 'a {
        let (b, i) = if self.blocks.is_empty() {
            (0, 0)
        } else {
            let b = self.block_of(r);
            (
                b,
                self.blocks[b].partition_point(|x| x.cmp_key(r) == Ordering::Less),
            )
        };
        self.blocks[b.min(self.blocks.len())..]
            .iter()
            .enumerate()
            .flat_map(move |(n, blk)| blk[if n == 0 { i } else { 0 }..].iter())
    }

    fn clear_seen(&mut self) {
        for b in &mut self.blocks {
            for r in b {
                r.flags &= !SEEN;
            }
        }
    }

    /// Bytes held, block slack included.
    #[cfg(test)]
    fn bytes(&self) -> usize {
        self.blocks.capacity() * std::mem::size_of::<Vec<Rec<A>>>()
            + self.lasts.capacity() * std::mem::size_of::<Rec<A>>()
            + self.blocks.len() * BLOCK * std::mem::size_of::<Rec<A>>()
    }
}

/// What a scan may select routes by, read without decoding the route:
/// flushes and dumps go over a full table.
#[derive(Clone, Copy, Debug)]
pub struct View {
    pub family: u8,
    pub table: u32,
    pub oif: u32,
    pub protocol: u8,
    pub prefsrc: Option<IpAddr>,
    /// The current dump mentioned the route.
    pub seen: bool,
}

/// Every route of both families, with the defaults and netevd's own
/// routes indexed apart (few; policy routing reads them).
#[derive(Default)]
pub struct Packed {
    v4: Table<u32>,
    v6: Table<[u8; 16]>,
    attrs: Interner,
}

/// A route as its family's table holds it.
enum Enc {
    V4(Rec<u32>),
    V6(Rec<[u8; 16]>),
}

fn rec<A: Addr>(r: &RouteInfo, attrs: u32) -> Option<Rec<A>> {
    let dst = match r.dst {
        Some(ip) => A::from_ip(ip)?,
        None => A::default(),
    };
    Some(Rec {
        table: r.table,
        dst,
        priority: r.priority,
        oif: r.oif,
        attrs,
        dst_len: r.dst_len,
        flags: if r.dst.is_some() { HAS_DST } else { 0 },
    })
}

/// Whether `r` can be held: IPv4 or IPv6, every address of its family.
pub fn fits(r: &RouteInfo) -> bool {
    let v4 = match r.family {
        2 => true,
        10 => false,
        _ => return false,
    };
    [r.dst, r.src, r.gateway, r.prefsrc]
        .iter()
        .all(|a| a.map_or(true, |ip| ip.is_ipv4() == v4))
}

impl Packed {
    /// Encodes `r` (which `fits`) with attribute id `attrs`.
    fn enc(r: &RouteInfo, attrs: u32) -> Enc {
        let e = if r.family == 2 {
            rec(r, attrs).map(Enc::V4)
        } else {
            rec(r, attrs).map(Enc::V6)
        };
        e.expect("a route that fits encodes")
    }

    fn dec<A: Addr>(&self, x: &Rec<A>) -> RouteInfo {
        dec_with(&self.attrs, x)
    }

    pub fn len(&self) -> usize {
        self.v4.len + self.v6.len
    }

    /// Routes of `family` (2 or 10), counted as they are kept.
    pub fn count(&self, family: u8) -> usize {
        match family {
            2 => self.v4.len,
            10 => self.v6.len,
            _ => 0,
        }
    }

    #[cfg(test)]
    pub fn contains(&self, r: &RouteInfo) -> bool {
        if !fits(r) {
            return false;
        }
        let Some(id) = self.attrs.find(&Attrs::of(r)) else {
            return false;
        };
        match Self::enc(r, id) {
            Enc::V4(x) => self.v4.find(&x).is_some(),
            Enc::V6(x) => self.v6.find(&x).is_some(),
        }
    }

    /// Adds `r` (which must `fit`), marked seen when `seen`; false if it
    /// was there (then it is marked seen too when `seen`).
    // Not inlined: each is generic over two families, and copies at
    // every call site cost the minimal build more than a call.
    #[inline(never)]
    pub fn insert(&mut self, r: &RouteInfo, seen: bool) -> bool {
        debug_assert!(fits(r));
        let id = self.attrs.take(Attrs::of(r));
        let mark = if seen { SEEN } else { 0 };
        let added = match Self::enc(r, id) {
            Enc::V4(mut x) => {
                x.flags |= mark;
                self.v4.insert(x)
            }
            Enc::V6(mut x) => {
                x.flags |= mark;
                self.v6.insert(x)
            }
        };
        if !added {
            self.attrs.release(id);
        }
        added
    }

    #[inline(never)]
    pub fn remove(&mut self, r: &RouteInfo) -> bool {
        if !fits(r) {
            return false;
        }
        let Some(id) = self.attrs.find(&Attrs::of(r)) else {
            return false;
        };
        let found = match Self::enc(r, id) {
            Enc::V4(x) => self.v4.remove(&x).is_some(),
            Enc::V6(x) => self.v6.remove(&x).is_some(),
        };
        if found {
            self.attrs.release(id);
        }
        found
    }

    /// Every route, IPv4 first, each family in the table's order.
    pub fn iter(&self) -> impl Iterator<Item = RouteInfo> + '_ {
        self.v4
            .iter()
            .map(|x| self.dec(x))
            .chain(self.v6.iter().map(|x| self.dec(x)))
    }

    /// The routes `r` replaces (`NLM_F_REPLACE`): same replace key
    /// (`RouteInfo::replace_key`), not `r` itself. They are neighbours, so
    /// this reads only them.
    #[inline(never)]
    pub fn replaced_by(&self, r: &RouteInfo) -> Vec<RouteInfo> {
        if !fits(r) {
            return Vec::new();
        }
        let key = r.replace_key();
        let same = |o: &RouteInfo| o.replace_key() == key && o != r;
        // Attribute id 0 and link 0 make the smallest record of this head.
        match Self::enc(r, 0) {
            Enc::V4(mut x) => {
                x.oif = 0;
                let head = x.head();
                self.v4
                    .iter_from(&x)
                    .take_while(|o| o.head() == head)
                    .map(|o| self.dec(o))
                    .filter(same)
                    .collect()
            }
            Enc::V6(mut x) => {
                x.oif = 0;
                let head = x.head();
                self.v6
                    .iter_from(&x)
                    .take_while(|o| o.head() == head)
                    .map(|o| self.dec(o))
                    .filter(same)
                    .collect()
            }
        }
    }

    /// Removes the routes `drop` selects and returns them in order, IPv4
    /// first; only those are decoded. `clear` also clears every kept
    /// route's seen mark.
    #[inline(never)]
    /// `drop` is a trait object: one copy of the scan, not one per caller.
    pub fn extract(&mut self, drop: &dyn Fn(&View) -> bool, clear: bool) -> Vec<RouteInfo> {
        let mut g4 = Vec::new();
        let mut g6 = Vec::new();
        let attrs = &self.attrs;
        self.v4
            .retain(&mut |x| keep(attrs, x, drop, clear), &mut g4);
        self.v6
            .retain(&mut |x| keep(attrs, x, drop, clear), &mut g6);
        let mut out = Vec::with_capacity(g4.len() + g6.len());
        out.extend(g4.iter().map(|x| self.dec(x)));
        out.extend(g6.iter().map(|x| self.dec(x)));
        for id in g4.iter().map(|x| x.attrs).chain(g6.iter().map(|x| x.attrs)) {
            self.attrs.release(id);
        }
        out
    }

    /// Forgets every seen mark (a dump begins).
    pub fn clear_seen(&mut self) {
        self.v4.clear_seen();
        self.v6.clear_seen();
    }

    /// Heap bytes the records hold, block slack included.
    #[cfg(test)]
    pub fn bytes(&self) -> usize {
        self.v4.bytes() + self.v6.bytes()
    }

    /// Distinct attribute sets interned.
    #[cfg(test)]
    pub fn interned(&self) -> usize {
        self.attrs.len()
    }
}

fn keep<A: Addr>(
    attrs: &Interner,
    x: &mut Rec<A>,
    drop: &dyn Fn(&View) -> bool,
    clear: bool,
) -> bool {
    let a = attrs.get(x.attrs);
    let v = View {
        family: A::FAMILY,
        table: x.table,
        oif: x.oif,
        protocol: a.protocol,
        prefsrc: a.prefsrc,
        seen: x.flags & SEEN != 0,
    };
    let k = !drop(&v);
    if k && clear {
        x.flags &= !SEEN;
    }
    k
}

fn dec_with<A: Addr>(attrs: &Interner, x: &Rec<A>) -> RouteInfo {
    let a = attrs.get(x.attrs);
    RouteInfo {
        family: A::FAMILY,
        table: x.table,
        dst: (x.flags & HAS_DST != 0).then(|| x.dst.to_ip()),
        dst_len: x.dst_len,
        src: a.src,
        src_len: a.src_len,
        tos: a.tos,
        priority: x.priority,
        protocol: a.protocol,
        scope: a.scope,
        kind: a.kind,
        oif: x.oif,
        gateway: a.gateway,
        prefsrc: a.prefsrc,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// xorshift64*: seeded and repeatable, no crate needed.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    fn v4(table: u32, dst: Option<&str>, len: u8, metric: u32) -> RouteInfo {
        RouteInfo {
            dst: dst.map(|d| d.parse().unwrap()),
            dst_len: len,
            priority: metric,
            kind: 1,
            oif: 2,
            ..RouteInfo::table_start(2, table)
        }
    }

    fn v6(table: u32, dst: Option<&str>, len: u8, metric: u32) -> RouteInfo {
        RouteInfo {
            family: 10,
            ..v4(table, dst, len, metric)
        }
    }

    fn all(p: &Packed) -> Vec<RouteInfo> {
        p.iter().collect()
    }

    #[test]
    fn records_are_small() {
        assert_eq!(std::mem::size_of::<Rec<u32>>(), 24);
        assert_eq!(std::mem::size_of::<Rec<[u8; 16]>>(), 36);
    }

    #[test]
    fn every_family_length_table_and_metric_edge_round_trips() {
        let mut p = Packed::default();
        let mut want = BTreeSet::new();
        for table in [0, 1, 253, 254, 255, 256, 1000, u32::MAX] {
            for metric in [0, 1, 255, 256, 1024, u32::MAX] {
                for len in 0..=32u8 {
                    let d = Some("255.255.255.255").filter(|_| len > 0);
                    for r in [
                        v4(table, d, len, metric),
                        v4(table, Some("0.0.0.0"), len, metric),
                    ] {
                        assert!(p.insert(&r, false), "{r:?}");
                        want.insert(r);
                    }
                }
                for len in 0..=128u8 {
                    let d = Some("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff").filter(|_| len > 0);
                    for r in [
                        v6(table, d, len, metric),
                        v6(table, Some("::"), len, metric),
                    ] {
                        assert!(p.insert(&r, false), "{r:?}");
                        want.insert(r);
                    }
                }
            }
        }
        assert_eq!(p.len(), want.len());
        for f in [2, 10] {
            let n = want.iter().filter(|r| r.family == f).count();
            assert_eq!(p.count(f), n, "family {f}");
        }
        assert_eq!(p.count(7), 0);
        for r in &want {
            assert!(p.contains(r), "{r:?}");
            assert!(!p.insert(r, false), "a duplicate is refused: {r:?}");
        }
        // A default route without RTA_DST and 0.0.0.0/0 with one are two.
        assert!(p.contains(&v4(254, None, 0, 0)));
        assert!(p.contains(&v4(254, Some("0.0.0.0"), 0, 0)));
        let got: BTreeSet<RouteInfo> = p.iter().collect();
        assert_eq!(got, want);
        for r in &want {
            assert!(p.remove(r), "{r:?}");
            assert!(!p.remove(r));
        }
        assert_eq!(p.len(), 0);
        assert_eq!(p.bytes(), 0, "every block is freed");
        assert_eq!(p.interned(), 0);
    }

    #[test]
    fn every_attribute_round_trips_and_is_interned() {
        let mut p = Packed::default();
        let r = RouteInfo {
            family: 10,
            table: u32::MAX,
            dst: Some("2001:db8::".parse().unwrap()),
            dst_len: 32,
            src: Some("fd00::".parse().unwrap()),
            src_len: 8,
            tos: 255,
            priority: u32::MAX,
            protocol: 255,
            scope: 255,
            kind: 255,
            oif: u32::MAX,
            gateway: Some("fe80::1".parse().unwrap()),
            prefsrc: Some("2001:db8::1".parse().unwrap()),
        };
        p.insert(&r, false);
        let mut r2 = r.clone();
        r2.dst = Some("2001:db9::".parse().unwrap());
        p.insert(&r2, false);
        assert_eq!(all(&p), vec![r.clone(), r2.clone()]);
        assert_eq!(p.interned(), 1, "one attribute set for both");
        // Addresses of the other family are not held.
        let mut bad = r.clone();
        bad.gateway = Some("192.0.2.1".parse().unwrap());
        assert!(!fits(&bad));
        assert!(!p.contains(&bad));
        assert!(!p.remove(&bad));
        let mut other = r.clone();
        other.family = 7;
        assert!(!fits(&other));
    }

    #[test]
    fn replace_finds_only_the_same_key() {
        let mut p = Packed::default();
        let a = RouteInfo {
            oif: 3,
            gateway: Some("192.0.2.1".parse().unwrap()),
            ..v4(254, Some("10.0.0.0"), 8, 5)
        };
        let b = RouteInfo {
            oif: 4,
            ..a.clone()
        };
        let other_metric = RouteInfo {
            priority: 6,
            ..a.clone()
        };
        let other_tos = RouteInfo {
            tos: 4,
            ..a.clone()
        };
        for r in [&a, &other_metric, &other_tos] {
            p.insert(r, false);
        }
        assert_eq!(p.replaced_by(&b), vec![a.clone()]);
        assert_eq!(p.replaced_by(&a), vec![]);
    }

    #[test]
    fn seen_marks_select_what_a_dump_missed() {
        let mut p = Packed::default();
        let rs: Vec<RouteInfo> = (0..1000)
            .map(|i| v4(254, Some(&format!("10.{}.{}.0", i / 256, i % 256)), 24, 0))
            .collect();
        for r in &rs {
            p.insert(r, false);
        }
        for r in rs.iter().step_by(2) {
            assert!(!p.insert(r, true));
        }
        let gone = p.extract(&|v| !v.seen, true);
        assert_eq!(
            gone,
            rs.iter().skip(1).step_by(2).cloned().collect::<Vec<_>>()
        );
        // Marks are cleared: a second pass drops everything.
        assert_eq!(p.extract(&|v| !v.seen, true).len(), 500);
        assert_eq!(p.bytes(), 0);
    }

    /// A burst is packed tight and its memory comes back, also when it
    /// lands before other routes (the local table sorts after main).
    #[test]
    fn sorted_inserts_fill_blocks_and_deletes_free_them() {
        let mut p = Packed::default();
        for i in 0..5u8 {
            p.insert(&v4(255, Some(&format!("127.0.0.{i}")), 32, 0), false);
        }
        let n = 100_000u32;
        let r = |i: u32| RouteInfo {
            dst: Some(IpAddr::from((0x0a00_0000 + i).to_be_bytes())),
            ..v4(254, None, 32, 0)
        };
        for i in 0..n {
            p.insert(&r(i), false);
        }
        let per = p.bytes() as f64 / n as f64;
        assert!(per < 26.0, "{per} bytes per route");
        for i in 0..n {
            assert!(p.remove(&r(i)));
        }
        assert_eq!(p.len(), 5);
        // One block, and at most 16 entries of slack in the block list and
        // in the list of each block's last record.
        assert!(p.bytes() <= BLOCK * 24 + 2 * 16 * 24, "{}", p.bytes());
        // Descending, the same.
        for i in (0..n).rev() {
            p.insert(&r(i), false);
        }
        let per = p.bytes() as f64 / n as f64;
        assert!(per < 26.0, "{per} bytes per route, descending");
    }

    /// The straightforward model: a set of routes, with the kernel's
    /// replace.
    #[derive(Default)]
    struct Plain(BTreeSet<RouteInfo>);

    fn random_route(rng: &mut Rng) -> RouteInfo {
        let family = if rng.below(3) == 0 { 10 } else { 2 };
        let ip = |rng: &mut Rng| -> IpAddr {
            // Few distinct values, so deletes and replaces hit.
            let x = rng.below(6) as u8;
            if family == 2 {
                IpAddr::from([10, 0, x, 0])
            } else {
                IpAddr::from([0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, x])
            }
        };
        let pick = |rng: &mut Rng, v: &[u32]| v[rng.below(v.len() as u64) as usize];
        RouteInfo {
            family,
            table: pick(rng, &[0, 254, 255, 1000, u32::MAX]),
            dst: (rng.below(4) != 0).then(|| ip(rng)),
            dst_len: pick(rng, &[0, 8, 24, 32, 128]) as u8,
            src: (rng.below(6) == 0).then(|| ip(rng)),
            src_len: pick(rng, &[0, 8]) as u8,
            tos: pick(rng, &[0, 0, 0, 255]) as u8,
            priority: pick(rng, &[0, 255, 1024, u32::MAX]),
            protocol: pick(rng, &[2, 4, 148, 255]) as u8,
            scope: pick(rng, &[0, 253]) as u8,
            kind: 1,
            oif: pick(rng, &[0, 1, 2, u32::MAX]),
            gateway: (rng.below(2) == 0).then(|| ip(rng)),
            prefsrc: (rng.below(4) == 0).then(|| ip(rng)),
        }
    }

    #[test]
    fn property_same_contents_as_a_plain_set() {
        for seed in 1..=20u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
            let mut p = Packed::default();
            let mut m = Plain::default();
            let mut live: Vec<RouteInfo> = Vec::new();
            for step in 0..4000 {
                match rng.below(10) {
                    0..=4 => {
                        let r = random_route(&mut rng);
                        assert_eq!(p.insert(&r, false), m.0.insert(r.clone()), "{seed}/{step}");
                        live.push(r);
                    }
                    5 => {
                        let r = random_route(&mut rng);
                        let key = r.replace_key();
                        let mut want: Vec<RouteInfo> =
                            m.0.iter()
                                .filter(|o| o.replace_key() == key && **o != r)
                                .cloned()
                                .collect();
                        let mut got = p.replaced_by(&r);
                        want.sort();
                        got.sort();
                        assert_eq!(got, want, "{seed}/{step}");
                        for o in &got {
                            assert!(p.remove(o));
                            m.0.remove(o);
                        }
                        assert_eq!(p.insert(&r, false), m.0.insert(r));
                    }
                    6..=8 if !live.is_empty() => {
                        let r = live.swap_remove(rng.below(live.len() as u64) as usize);
                        assert_eq!(p.remove(&r), m.0.remove(&r), "{seed}/{step}");
                    }
                    _ => {
                        // A flush of one link's routes of one family.
                        let oif = [0, 1, 2, u32::MAX][rng.below(4) as usize];
                        let mut got = p.extract(&|v| v.oif == oif && v.family == 2, false);
                        let mut want: Vec<RouteInfo> =
                            m.0.iter()
                                .filter(|r| r.oif == oif && r.family == 2)
                                .cloned()
                                .collect();
                        m.0.retain(|r| !(r.oif == oif && r.family == 2));
                        got.sort();
                        want.sort();
                        assert_eq!(got, want, "{seed}/{step}");
                    }
                }
                assert_eq!(p.len(), m.0.len(), "{seed}/{step}");
            }
            let got: BTreeSet<RouteInfo> = p.iter().collect();
            assert_eq!(got, m.0, "seed {seed}");
            for r in &m.0 {
                assert!(p.contains(r));
            }
            // Iteration is in table order within each family.
            let v: Vec<RouteInfo> = p.iter().collect();
            assert!(v
                .windows(2)
                .all(|w| (w[0].family, w[0].table) <= (w[1].family, w[1].table)));
        }
    }

    /// Many more routes than a block, in random order, through every
    /// split and merge path.
    #[test]
    fn property_large_random_stream() {
        let mut rng = Rng(0x5eed);
        let mut p = Packed::default();
        let mut m = BTreeSet::new();
        for _ in 0..60_000 {
            let i = rng.below(20_000) as u32;
            let r = RouteInfo {
                dst: Some(IpAddr::from((0x0a00_0000 + i * 256).to_be_bytes())),
                priority: (i % 3) * 100,
                ..v4(254, None, 24, 0)
            };
            if rng.below(3) == 0 {
                assert_eq!(p.remove(&r), m.remove(&r));
            } else {
                assert_eq!(p.insert(&r, false), m.insert(r));
            }
        }
        assert_eq!(
            p.iter().collect::<Vec<_>>(),
            m.iter().cloned().collect::<Vec<_>>()
        );
        for r in &m {
            assert!(p.remove(r));
        }
        assert_eq!(p.bytes(), 0);
    }
}
