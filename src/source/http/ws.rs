//! /api/v1/events/ws (feature `ws`): a small RFC 6455 server, send-only
//! for data. The handshake's accept key (SHA-1 and base64, both here so
//! the shim needs no crate for them), unmasked text frames out, and of
//! what the client sends only control frames are acted on: a ping gets
//! its pong, a close gets a close and the connection ends. Client data
//! frames are read and discarded within a bound; a frame that breaks the
//! protocol (unmasked, a control frame over 125 bytes, a reserved bit or
//! opcode) closes the connection with status 1002.

use std::io;
use std::time::Instant;

use crate::core::filter::Subscription;
use mio::Registry;

use super::{Http, Mode};

/// RFC 6455 section 1.3.
const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Input kept for a partial client frame, at most.
const MAX_FRAME_INPUT: usize = 4096;

fn sha1(msg: &[u8]) -> [u8; 20] {
    let mut h: [u32; 5] = [
        0x6745_2301,
        0xEFCD_AB89,
        0x98BA_DCFE,
        0x1032_5476,
        0xC3D2_E1F0,
    ];
    let mut data = msg.to_vec();
    data.push(0x80);
    while data.len() % 64 != 56 {
        data.push(0);
    }
    data.extend_from_slice(&((msg.len() as u64) * 8).to_be_bytes());
    for block in data.chunks(64) {
        let mut w = [0u32; 80];
        for (i, c) in block.chunks(4).enumerate() {
            w[i] = u32::from_be_bytes([c[0], c[1], c[2], c[3]]);
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = h;
        for (i, &wi) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5A82_7999),
                20..=39 => (b ^ c ^ d, 0x6ED9_EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1B_BCDC),
                _ => (b ^ c ^ d, 0xCA62_C1D6),
            };
            let t = a
                .rotate_left(5)
                .wrapping_add(f)
                .wrapping_add(e)
                .wrapping_add(k)
                .wrapping_add(wi);
            e = d;
            d = c;
            c = b.rotate_left(30);
            b = a;
            a = t;
        }
        for (x, y) in h.iter_mut().zip([a, b, c, d, e]) {
            *x = x.wrapping_add(y);
        }
    }
    let mut out = [0u8; 20];
    for (i, x) in h.iter().enumerate() {
        out[i * 4..i * 4 + 4].copy_from_slice(&x.to_be_bytes());
    }
    out
}

fn base64(b: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::with_capacity(b.len().div_ceil(3) * 4);
    for c in b.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for j in 0..4 {
            if j <= c.len() {
                s.push(A[(n >> (18 - 6 * j) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

/// Sec-WebSocket-Accept for a client's key.
pub fn accept_key(key: &str) -> String {
    let mut m = key.as_bytes().to_vec();
    m.extend_from_slice(GUID);
    base64(&sha1(&m))
}

fn frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8]) {
    out.push(0x80 | opcode);
    match payload.len() {
        n if n < 126 => out.push(n as u8),
        n if n <= 0xffff => {
            out.push(126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
}

pub fn text_frame(out: &mut Vec<u8>, payload: &[u8]) {
    frame(out, 0x1, payload);
}

pub fn ping_frame(out: &mut Vec<u8>) {
    frame(out, 0x9, b"");
}

/// One client frame at the start of `b`.
#[derive(Debug, PartialEq, Eq)]
enum In {
    Partial,
    /// Opcode, unmasked payload (control frames only; data is skipped),
    /// bytes taken.
    Frame(u8, Vec<u8>, usize),
    /// A protocol error: close with 1002.
    Bad,
}

fn parse_frame(b: &[u8]) -> In {
    if b.len() < 2 {
        return In::Partial;
    }
    let (op, rsv) = (b[0] & 0x0f, b[0] & 0x70);
    let masked = b[1] & 0x80 != 0;
    let mut len = (b[1] & 0x7f) as u64;
    let mut at = 2;
    if rsv != 0 || !masked || !matches!(op, 0x0..=0x2 | 0x8..=0xa) {
        return In::Bad;
    }
    if len == 126 {
        let Some(x) = b.get(2..4) else {
            return In::Partial;
        };
        len = u16::from_be_bytes([x[0], x[1]]) as u64;
        at = 4;
    } else if len == 127 {
        let Some(x) = b.get(2..10) else {
            return In::Partial;
        };
        len = u64::from_be_bytes(x.try_into().unwrap_or([0xff; 8]));
        at = 10;
    }
    if op >= 0x8 && (len > 125 || b[0] & 0x80 == 0) {
        return In::Bad;
    }
    let Some(mask) = b.get(at..at + 4) else {
        return In::Partial;
    };
    let start = at + 4;
    if op < 0x8 {
        // Data is not wanted: report its length so the caller skips it
        // without holding it.
        return In::Frame(op, Vec::new(), start.saturating_add(len as usize));
    }
    let Some(p) = b.get(start..start + len as usize) else {
        return In::Partial;
    };
    let payload = p.iter().enumerate().map(|(i, x)| x ^ mask[i % 4]).collect();
    In::Frame(op, payload, start + len as usize)
}

impl Http {
    /// Answers the handshake and turns client `i` into an event socket.
    pub fn start_ws(
        &mut self,
        i: usize,
        key: &str,
        filter: Subscription,
        reg: &Registry,
        now: Instant,
    ) {
        let Some(Some(c)) = self.clients.get_mut(i) else {
            return;
        };
        let head = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {}\r\n\r\n",
            accept_key(key)
        );
        c.out.extend_from_slice(head.as_bytes());
        c.mode = Mode::WebSocket(filter);
        c.input.clear();
        self.flush(i, reg, now);
    }

    /// Reads what a WebSocket client sent and acts on its control frames.
    pub(super) fn ws_input(&mut self, i: usize, reg: &Registry) {
        let now = Instant::now();
        let Some(Some(c)) = self.clients.get_mut(i) else {
            return;
        };
        // Bytes of a data frame still to be skipped.
        let mut buf = [0u8; 4096];
        loop {
            match c.read(&mut buf) {
                Ok(0) => {
                    self.close(i, reg);
                    return;
                }
                Ok(n) => c.input.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    self.close(i, reg);
                    return;
                }
            }
            loop {
                match parse_frame(&c.input) {
                    In::Partial => break,
                    In::Bad => {
                        frame(&mut c.out, 0x8, &1002u16.to_be_bytes());
                        c.closing = true;
                        c.input.clear();
                        self.flush(i, reg, now);
                        return;
                    }
                    In::Frame(op, payload, n) => {
                        if n > c.input.len() {
                            // A data frame longer than what has arrived:
                            // drop what is here and the rest as it comes
                            // (bounded below).
                            if n > MAX_FRAME_INPUT * 16 {
                                frame(&mut c.out, 0x8, &1009u16.to_be_bytes());
                                c.closing = true;
                                c.input.clear();
                                self.flush(i, reg, now);
                                return;
                            }
                            break;
                        }
                        c.input.drain(..n);
                        match op {
                            0x8 => {
                                let code = payload.get(..2).unwrap_or(&[0x03, 0xe8]).to_vec();
                                frame(&mut c.out, 0x8, &code);
                                c.closing = true;
                                c.input.clear();
                                self.flush(i, reg, now);
                                return;
                            }
                            0x9 => frame(&mut c.out, 0xa, &payload),
                            _ => {}
                        }
                    }
                }
            }
            if c.input.len() > MAX_FRAME_INPUT * 16 {
                self.close(i, reg);
                return;
            }
        }
        self.flush(i, reg, now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshake_key_from_the_rfc() {
        // RFC 6455 section 1.3's example.
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
    }

    #[test]
    fn frames() {
        let mut o = Vec::new();
        text_frame(&mut o, b"hi");
        assert_eq!(o, [0x81, 2, b'h', b'i']);
        let mut o = Vec::new();
        text_frame(&mut o, &[0; 300]);
        assert_eq!(&o[..4], &[0x81, 126, 1, 44]);
        // A masked ping "ab" with mask 1,2,3,4.
        let ping = [0x89, 0x82, 1, 2, 3, 4, b'a' ^ 1, b'b' ^ 2];
        assert_eq!(parse_frame(&ping), In::Frame(9, b"ab".to_vec(), 8));
        assert_eq!(parse_frame(&ping[..5]), In::Partial);
        // Unmasked, reserved bits, a long control frame: refused.
        assert_eq!(parse_frame(&[0x89, 0x00]), In::Bad);
        assert_eq!(parse_frame(&[0xc1, 0x80, 0, 0, 0, 0]), In::Bad);
        assert_eq!(parse_frame(&[0x89, 0xfe, 0, 200]), In::Bad);
        // A data frame is skipped by its length.
        assert_eq!(
            parse_frame(&[0x81, 0x83, 0, 0, 0, 0, 1]),
            In::Frame(1, Vec::new(), 9)
        );
    }
}
