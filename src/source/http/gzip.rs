//! gzip (RFC 1952) of a response body, for /metrics when the client asks:
//! deflate (RFC 1951) with one fixed-Huffman block and a small greedy
//! LZ77 (one hash head per 3-byte prefix, a 32 KiB window). Far from the
//! best ratio, but Prometheus' text repeats metric names line after line,
//! which this catches, and it costs a few hundred lines of no crate.

/// CRC-32 (IEEE), as gzip's trailer wants it.
fn crc32(b: &[u8]) -> u32 {
    let mut c = !0u32;
    for &x in b {
        c ^= x as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0xEDB8_8320
            } else {
                c >> 1
            };
        }
    }
    !c
}

struct Bits {
    out: Vec<u8>,
    acc: u64,
    n: u32,
}

impl Bits {
    /// Writes `len` bits of `v`, least significant first.
    fn put(&mut self, v: u32, len: u32) {
        self.acc |= (v as u64) << self.n;
        self.n += len;
        while self.n >= 8 {
            self.out.push(self.acc as u8);
            self.acc >>= 8;
            self.n -= 8;
        }
    }

    /// Writes a Huffman code, which deflate stores most significant bit
    /// first.
    fn code(&mut self, code: u32, len: u32) {
        let rev = code.reverse_bits() >> (32 - len);
        self.put(rev, len);
    }

    fn finish(mut self) -> Vec<u8> {
        if self.n > 0 {
            self.out.push(self.acc as u8);
        }
        self.out
    }
}

/// A literal or length symbol in the fixed code (RFC 1951 3.2.6).
fn symbol(b: &mut Bits, s: u32) {
    match s {
        0..=143 => b.code(0x30 + s, 8),
        144..=255 => b.code(0x190 + s - 144, 9),
        256..=279 => b.code(s - 256, 7),
        _ => b.code(0xc0 + s - 280, 8),
    }
}

const LEN_BASE: [u16; 29] = [
    3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131,
    163, 195, 227, 258,
];
const LEN_EXTRA: [u8; 29] = [
    0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
];
const DIST_BASE: [u16; 30] = [
    1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537,
    2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577,
];
const DIST_EXTRA: [u8; 30] = [
    0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13,
    13,
];

fn emit_match(b: &mut Bits, len: usize, dist: usize) {
    let li = LEN_BASE
        .iter()
        .rposition(|&x| x as usize <= len)
        .unwrap_or(0);
    symbol(b, 257 + li as u32);
    b.put((len - LEN_BASE[li] as usize) as u32, LEN_EXTRA[li] as u32);
    let di = DIST_BASE
        .iter()
        .rposition(|&x| x as usize <= dist)
        .unwrap_or(0);
    b.code(di as u32, 5);
    b.put(
        (dist - DIST_BASE[di] as usize) as u32,
        DIST_EXTRA[di] as u32,
    );
}

const WINDOW: usize = 32 * 1024;
const HASH_BITS: u32 = 14;

fn deflate(data: &[u8], b: &mut Bits) {
    // BFINAL = 1, BTYPE = 01 (fixed Huffman).
    b.put(1, 1);
    b.put(1, 2);
    let mut head = vec![usize::MAX; 1 << HASH_BITS];
    let hash = |i: usize| {
        let v = u32::from_le_bytes([data[i], data[i + 1], data[i + 2], 0]);
        (v.wrapping_mul(2_654_435_761) >> (32 - HASH_BITS)) as usize
    };
    let mut i = 0;
    while i < data.len() {
        let mut best = 0;
        let mut dist = 0;
        if i + 3 <= data.len() {
            let h = hash(i);
            let cand = head[h];
            head[h] = i;
            if cand != usize::MAX && i - cand <= WINDOW {
                let max = (data.len() - i).min(258);
                let n = data[cand..]
                    .iter()
                    .zip(&data[i..i + max])
                    .take_while(|(x, y)| x == y)
                    .count();
                if n >= 3 {
                    best = n;
                    dist = i - cand;
                }
            }
        }
        if best >= 3 {
            emit_match(b, best, dist);
            // Index the positions the match covers, so later repeats of
            // them are found.
            for j in i + 1..(i + best).min(data.len().saturating_sub(2)) {
                head[hash(j)] = j;
            }
            i += best;
        } else {
            symbol(b, data[i] as u32);
            i += 1;
        }
    }
    symbol(b, 256);
}

/// `data` as a gzip member.
pub fn compress(data: &[u8]) -> Vec<u8> {
    let mut b = Bits {
        // Magic, deflate, no flags, no time, no extra flags, OS unknown.
        out: vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255],
        acc: 0,
        n: 0,
    };
    deflate(data, &mut b);
    let mut out = b.finish();
    out.extend_from_slice(&crc32(data).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::process::{Command, Stdio};

    #[test]
    fn crc_of_the_check_string() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    /// Round trips through the system's gzip(1), which is everywhere
    /// Debian is (package gzip, essential).
    #[test]
    fn gzip_reads_it_back() {
        let mut text = String::new();
        for i in 0..2000 {
            text.push_str(&format!(
                "netevd_hooks_started_total{{state=\"routable\",link=\"eth{}\"}} {}\n",
                i % 7,
                i * 31
            ));
        }
        let mut x: u32 = 1;
        let noise: Vec<u8> = (0..5000)
            .map(|_| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                (x >> 16) as u8
            })
            .collect();
        for data in [
            &b""[..],
            b"a",
            b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            text.as_bytes(),
            &noise,
        ] {
            let z = compress(data);
            let mut child = Command::new("gzip")
                .arg("-dc")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .expect("gzip(1) (Debian package gzip)");
            child.stdin.take().unwrap().write_all(&z).unwrap();
            let out = child.wait_with_output().unwrap();
            assert!(out.status.success());
            assert_eq!(out.stdout, data);
            if data.len() > 10_000 {
                assert!(z.len() * 5 < data.len(), "{} -> {}", data.len(), z.len());
            }
        }
    }
}
