//! The hash for the daemon's own maps, keyed by interface indexes,
//! sequence numbers and route attributes.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A map with [`Fx`]; make one with `FxMap::default()`.
pub type FxMap<K, V> = HashMap<K, V, BuildHasherDefault<Fx>>;

/// A multiply-rotate hash (rustc's FxHash): every route insert looks its
/// attributes up, and every event its link's queue, and SipHash showed
/// in profiles. The keys are the
/// kernel's, not an attacker's choice of collisions worth defending.
#[derive(Default)]
pub struct Fx(u64);

impl Hasher for Fx {
    fn write(&mut self, bytes: &[u8]) {
        for c in bytes.chunks(8) {
            let mut w = [0u8; 8];
            w[..c.len()].copy_from_slice(c);
            self.write_u64(u64::from_le_bytes(w));
        }
    }

    fn write_u8(&mut self, v: u8) {
        self.write_u64(v as u64);
    }

    fn write_u16(&mut self, v: u16) {
        self.write_u64(v as u64);
    }

    fn write_u32(&mut self, v: u32) {
        self.write_u64(v as u64);
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }

    fn write_usize(&mut self, v: usize) {
        self.write_u64(v as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}
