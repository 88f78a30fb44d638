//! Who may ask, and how often: the bearer token compared in constant time,
//! and a token bucket per client IP address. Pure: the caller passes the
//! time in.
//!
//! The bucket table is bounded (`MAX_BUCKETS`); when it is full, buckets
//! that have refilled (their clients went quiet) are forgotten, and if none
//! has, new addresses share one overflow bucket, so a flood from many
//! addresses costs memory once and is limited together.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::config::RateSettings;

/// Addresses whose buckets are kept, at most.
pub const MAX_BUCKETS: usize = 4096;

/// Whether `a` and `b` are equal, in a time that depends only on their
/// lengths (a guess at the token learns nothing from how long it took to
/// be refused).
pub fn same(a: &[u8], b: &[u8]) -> bool {
    let mut diff = (a.len() ^ b.len()) as u8 | ((a.len() ^ b.len()) >> 8) as u8;
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0xff);
        diff |= x ^ y;
    }
    // Keep the loop from being cut short by an optimiser that sees `diff`
    // become non-zero.
    std::hint::black_box(diff) == 0
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    /// Tokens, in thousandths.
    milli: u64,
    at: Instant,
}

/// What the limiter decided for one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    /// Refused: the client may try again after this long.
    Limited {
        retry_after: Duration,
    },
}

pub struct Limiter {
    settings: RateSettings,
    buckets: HashMap<IpAddr, Bucket>,
    overflow: Option<Bucket>,
}

impl Limiter {
    pub fn new(settings: RateSettings) -> Self {
        Limiter {
            settings,
            buckets: HashMap::new(),
            overflow: None,
        }
    }

    pub fn settings(&self) -> &RateSettings {
        &self.settings
    }

    pub fn set_settings(&mut self, s: RateSettings) {
        if s != self.settings {
            self.settings = s;
            self.buckets.clear();
            self.overflow = None;
        }
    }

    fn full(&self) -> u64 {
        self.settings.burst as u64 * 1000
    }

    fn refill(&self, b: &mut Bucket, now: Instant) {
        let ms = now.saturating_duration_since(b.at).as_millis() as u64;
        let add = ms.saturating_mul(self.settings.requests_per_second as u64);
        b.milli = (b.milli.saturating_add(add)).min(self.full());
        b.at = now;
    }

    /// Takes one token for a request from `ip`.
    pub fn check(&mut self, ip: IpAddr, now: Instant) -> Verdict {
        if self.settings.exempt_loopback && ip.is_loopback() {
            return Verdict::Pass;
        }
        if !self.buckets.contains_key(&ip) && self.buckets.len() >= MAX_BUCKETS {
            self.forget_refilled(now);
        }
        let fresh = Bucket {
            milli: self.full(),
            at: now,
        };
        let mut b = if self.buckets.len() < MAX_BUCKETS || self.buckets.contains_key(&ip) {
            *self.buckets.entry(ip).or_insert(fresh)
        } else {
            *self.overflow.get_or_insert(fresh)
        };
        self.refill(&mut b, now);
        let verdict = if b.milli >= 1000 {
            b.milli -= 1000;
            Verdict::Pass
        } else {
            let rate = self.settings.requests_per_second as u64;
            let ms = (1000 - b.milli).div_ceil(rate);
            Verdict::Limited {
                retry_after: Duration::from_millis(ms.max(1)),
            }
        };
        match self.buckets.get_mut(&ip) {
            Some(slot) => *slot = b,
            None => self.overflow = Some(b),
        }
        verdict
    }

    fn forget_refilled(&mut self, now: Instant) {
        let (full, rate) = (self.full(), self.settings.requests_per_second as u64);
        self.buckets.retain(|_, b| {
            let ms = now.saturating_duration_since(b.at).as_millis() as u64;
            b.milli.saturating_add(ms.saturating_mul(rate)) < full
        });
    }

    #[cfg(test)]
    pub fn tracked(&self) -> usize {
        self.buckets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_comparison() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"ab"));
        assert!(!same(b"", b"a"));
        assert!(same(b"", b""));
        // Lengths that differ by a multiple of 256 still differ.
        assert!(!same(&[0; 256], b""));
    }

    #[test]
    fn bucket_refills_at_the_rate() {
        let t0 = Instant::now();
        let mut l = Limiter::new(RateSettings {
            requests_per_second: 10,
            burst: 3,
            exempt_loopback: true,
        });
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..3 {
            assert_eq!(l.check(ip, t0), Verdict::Pass);
        }
        assert_eq!(
            l.check(ip, t0),
            Verdict::Limited {
                retry_after: Duration::from_millis(100)
            }
        );
        assert_eq!(l.check(ip, t0 + Duration::from_millis(100)), Verdict::Pass);
        assert!(matches!(
            l.check(ip, t0 + Duration::from_millis(150)),
            Verdict::Limited { .. }
        ));
        // Another address has its own bucket; loopback is exempt.
        assert_eq!(l.check("192.0.2.2".parse().unwrap(), t0), Verdict::Pass);
        for _ in 0..100 {
            assert_eq!(l.check("127.0.0.1".parse().unwrap(), t0), Verdict::Pass);
        }
    }

    #[test]
    fn table_is_bounded() {
        let t0 = Instant::now();
        let mut l = Limiter::new(RateSettings {
            requests_per_second: 1,
            burst: 1,
            exempt_loopback: false,
        });
        for i in 0..(MAX_BUCKETS as u32 + 100) {
            let ip = IpAddr::from((0x0a00_0000 + i).to_be_bytes());
            l.check(ip, t0);
        }
        assert_eq!(l.tracked(), MAX_BUCKETS);
        // The overflow bucket is shared: one more new address is limited.
        assert!(matches!(
            l.check("198.51.100.1".parse().unwrap(), t0),
            Verdict::Limited { .. }
        ));
        // Once the old ones refilled they are forgotten for new ones.
        let later = t0 + Duration::from_secs(5);
        assert_eq!(
            l.check("198.51.100.2".parse().unwrap(), later),
            Verdict::Pass
        );
        assert!(l.tracked() < 10);
    }
}
