//! The ISC dhclient lease file format, and its only home: the bytes of a
//! `dhclient.leases` file in, the newest lease per interface and family
//! out (core::lease::Lease).
//!
//! dhclient writes `lease { ... }` (IPv4) and `lease6 { ... }` (IPv6)
//! blocks, appending one each time it binds, renews or releases, and
//! rewrites the whole file now and then (common/parse.c and
//! client/dhclient.c, `write_client_lease`, `write_client6_lease`). The
//! last block of an interface in the file is therefore its newest; a
//! release appends a block that has already expired.
//!
//! Pure: no file access, no clock. Bounded: the input size, the number of
//! blocks, statements per block, words per statement, a word's length and
//! the nesting depth all have limits, and bad input is an error naming
//! the line, never a panic (the fuzz test below holds it to that). A file
//! with any error is refused as a whole: half a file could make an older
//! lease look like the newest. Values are checked before they are kept:
//! addresses parse as addresses, names hold only what a domain name may.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::core::lease::Lease;

/// The largest lease file read. dhclient rewrites its file after 20
/// appends, so a real one holds a few dozen blocks: a few KiB.
pub const MAX_FILE: usize = 256 * 1024;
/// Top-level blocks in one file.
pub const MAX_BLOCKS: usize = 1024;
/// Statements inside one block, nested ones included.
pub const MAX_STATEMENTS: usize = 256;
/// Words of one statement (an option with a long list of addresses).
pub const MAX_WORDS: usize = 256;
/// Bytes of one word or quoted string (a client id of 255 bytes written
/// as hex with colons is 765).
pub const MAX_WORD: usize = 1024;
/// `lease6 { ia-na { iaaddr { } } }` is three deep.
pub const MAX_DEPTH: usize = 4;
/// Addresses kept per list (routers, name servers).
pub const MAX_LIST: usize = 16;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    TooLarge(usize),
    /// What was wrong, at which line (1-based).
    Syntax {
        line: usize,
        msg: String,
    },
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            Error::TooLarge(n) => write!(f, "{n} bytes, more than the {MAX_FILE} read"),
            Error::Syntax { line, msg } => write!(f, "line {line}: {msg}"),
        }
    }
}

fn err<T>(line: usize, msg: impl Into<String>) -> Result<T, Error> {
    Err(Error::Syntax {
        line,
        msg: msg.into(),
    })
}

/// What a file holds: the newest lease of each interface and family, in
/// the order of their interfaces' last blocks, and values that were
/// dropped because they were not valid (to be logged).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Parsed {
    pub leases: Vec<Lease>,
    pub dropped: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Tok {
    /// A bare word (`option`, `192.0.2.1,`, `2026/11/27`).
    Word(Vec<u8>),
    /// A quoted string, escapes decoded.
    Str(Vec<u8>),
    Open,
    Close,
    Semi,
}

struct Lexer<'a> {
    b: &'a [u8],
    pos: usize,
    line: usize,
}

impl<'a> Lexer<'a> {
    /// The next token and its line; None at the end.
    fn next(&mut self) -> Result<Option<(Tok, usize)>, Error> {
        loop {
            let Some(&c) = self.b.get(self.pos) else {
                return Ok(None);
            };
            match c {
                b'\n' => {
                    self.line += 1;
                    self.pos += 1;
                }
                b' ' | b'\t' | b'\r' => self.pos += 1,
                b'#' => {
                    while self.b.get(self.pos).is_some_and(|&c| c != b'\n') {
                        self.pos += 1;
                    }
                }
                _ => break,
            }
        }
        let line = self.line;
        let c = self.b[self.pos];
        self.pos += 1;
        let tok = match c {
            b'{' => Tok::Open,
            b'}' => Tok::Close,
            b';' => Tok::Semi,
            b'"' => Tok::Str(self.string(line)?),
            c if c.is_ascii_graphic() => {
                let start = self.pos - 1;
                while self
                    .b
                    .get(self.pos)
                    .is_some_and(|&c| c.is_ascii_graphic() && !b"{};\"#".contains(&c))
                {
                    self.pos += 1;
                }
                if self.pos - start > MAX_WORD {
                    return err(line, format!("a word longer than {MAX_WORD} bytes"));
                }
                Tok::Word(self.b[start..self.pos].to_vec())
            }
            c => return err(line, format!("unexpected byte 0x{c:02x}")),
        };
        Ok(Some((tok, line)))
    }

    /// The rest of a quoted string, as dhclient escapes it: `\"`, `\\`,
    /// and `\ooo` (octal) for any byte that is not printable.
    fn string(&mut self, line: usize) -> Result<Vec<u8>, Error> {
        let mut out = Vec::new();
        loop {
            let Some(&c) = self.b.get(self.pos) else {
                return err(line, "a quoted string is not closed");
            };
            self.pos += 1;
            match c {
                b'"' => return Ok(out),
                b'\n' => return err(line, "a quoted string runs past the end of its line"),
                b'\\' => {
                    let Some(&e) = self.b.get(self.pos) else {
                        return err(line, "a quoted string is not closed");
                    };
                    if (b'0'..=b'7').contains(&e) {
                        let digits = &self.b[self.pos..(self.pos + 3).min(self.b.len())];
                        if digits.len() < 3 || !digits.iter().all(|d| (b'0'..=b'7').contains(d)) {
                            return err(line, "an octal escape needs three digits");
                        }
                        let v = digits.iter().fold(0u32, |a, d| a * 8 + (d - b'0') as u32);
                        if v > 255 {
                            return err(line, "an octal escape above \\377");
                        }
                        out.push(v as u8);
                        self.pos += 3;
                    } else {
                        out.push(match e {
                            b'n' => b'\n',
                            b't' => b'\t',
                            b'r' => b'\r',
                            other => other,
                        });
                        self.pos += 1;
                    }
                }
                c => out.push(c),
            }
            if out.len() > MAX_WORD {
                return err(
                    line,
                    format!("a quoted string longer than {MAX_WORD} bytes"),
                );
            }
        }
    }
}

/// One statement: its words, and its block if it has one.
#[derive(Debug)]
struct Stmt {
    line: usize,
    words: Vec<Tok>,
    block: Option<Vec<Stmt>>,
}

struct Parser<'a> {
    lex: Lexer<'a>,
    /// Statements in the current top-level block.
    count: usize,
}

impl Parser<'_> {
    fn next(&mut self) -> Result<Option<(Tok, usize)>, Error> {
        self.lex.next()
    }

    /// Statements up to a `}` (depth > 0) or the end of input (depth 0).
    fn block(&mut self, depth: usize, open_line: usize) -> Result<Vec<Stmt>, Error> {
        let mut out = Vec::new();
        loop {
            let Some((tok, line)) = self.next()? else {
                if depth > 0 {
                    return err(
                        self.lex.line,
                        format!("the end of the file inside the block opened at line {open_line}"),
                    );
                }
                return Ok(out);
            };
            match tok {
                Tok::Close if depth > 0 => return Ok(out),
                Tok::Close => return err(line, "a `}` with no block to close"),
                Tok::Semi => continue, // an empty statement
                Tok::Open => return err(line, "a block with no statement before it"),
                first => {
                    if depth == 0 {
                        self.count = 0;
                        if out.len() >= MAX_BLOCKS {
                            return err(line, format!("more than {MAX_BLOCKS} top-level entries"));
                        }
                    } else {
                        self.count += 1;
                        if self.count > MAX_STATEMENTS {
                            return err(
                                line,
                                format!("more than {MAX_STATEMENTS} statements in one lease"),
                            );
                        }
                    }
                    out.push(self.statement(first, line, depth)?);
                }
            }
        }
    }

    fn statement(&mut self, first: Tok, line: usize, depth: usize) -> Result<Stmt, Error> {
        let mut words = vec![first];
        loop {
            let Some((tok, l)) = self.next()? else {
                return err(
                    self.lex.line,
                    format!("the statement at line {line} has no `;`"),
                );
            };
            match tok {
                Tok::Semi => {
                    return Ok(Stmt {
                        line,
                        words,
                        block: None,
                    })
                }
                Tok::Open => {
                    if depth + 1 >= MAX_DEPTH {
                        return err(l, format!("blocks nested more than {MAX_DEPTH} deep"));
                    }
                    let block = self.block(depth + 1, l)?;
                    return Ok(Stmt {
                        line,
                        words,
                        block: Some(block),
                    });
                }
                Tok::Close => {
                    return err(l, format!("the statement at line {line} has no `;`"));
                }
                w => {
                    if words.len() >= MAX_WORDS {
                        return err(l, format!("more than {MAX_WORDS} words in one statement"));
                    }
                    words.push(w);
                }
            }
        }
    }
}

fn word(t: &Tok) -> Option<&str> {
    match t {
        Tok::Word(w) => std::str::from_utf8(w).ok(),
        _ => None,
    }
}

/// The words of an option's value, commas split off: `a, b` and `a,b`.
fn list(words: &[Tok]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for w in words {
        let (Tok::Word(b) | Tok::Str(b)) = w else {
            continue;
        };
        for part in b.split(|&c| c == b',') {
            if !part.is_empty() {
                out.push(part.to_vec());
            }
        }
    }
    out
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// A time as dhclient writes it: `W YYYY/MM/DD HH:MM:SS` in UTC (the
/// default `db-time-format`), `epoch N` (`db-time-format local`), or
/// `never`. Seconds since the epoch; None for never.
fn time(words: &[Tok], line: usize) -> Result<Option<u64>, Error> {
    let w: Vec<&str> = words.iter().map(|t| word(t).unwrap_or("")).collect();
    match w.as_slice() {
        ["never"] => Ok(None),
        ["epoch", n] => match n.parse::<u64>() {
            Ok(n) => Ok(Some(n)),
            Err(_) => err(line, format!("{n:?} is not a time in seconds")),
        },
        [_weekday, date, clock] => {
            let d: Vec<i64> = date.split('/').filter_map(|x| x.parse().ok()).collect();
            let t: Vec<i64> = clock.split(':').filter_map(|x| x.parse().ok()).collect();
            let ok = d.len() == 3
                && t.len() == 3
                && (1970..=9999).contains(&d[0])
                && (1..=12).contains(&d[1])
                && (1..=31).contains(&d[2])
                && (0..24).contains(&t[0])
                && (0..60).contains(&t[1])
                && (0..=60).contains(&t[2]);
            if !ok {
                return err(line, format!("{date} {clock} is not a date and time"));
            }
            let s = days_from_civil(d[0], d[1], d[2]) * 86400 + t[0] * 3600 + t[1] * 60 + t[2];
            Ok(Some(s as u64))
        }
        _ => err(
            line,
            "a time is `N YYYY/MM/DD HH:MM:SS`, `epoch N` or `never`",
        ),
    }
}

/// Names as a domain name may have them, several separated by spaces
/// (`domain-name` may list more than one): letters, digits, `-`, `.`,
/// `_`. Anything else (a `/`, a `$`, a control byte) is refused: the value
/// reaches hooks' environments and logs.
fn valid_names(v: &[u8]) -> bool {
    !v.is_empty()
        && v.len() <= 1024
        && v.iter()
            .all(|&c| c.is_ascii_alphanumeric() || b"-._ ".contains(&c))
        && !v.starts_with(b" ")
}

/// An interface name as the kernel allows it: 1 to 15 bytes, no `/`, `:`,
/// white space or NUL.
fn valid_ifname(v: &[u8]) -> bool {
    !v.is_empty()
        && v.len() < 16
        && v != b"."
        && v != b".."
        && v.iter()
            .all(|&c| c.is_ascii_graphic() && c != b'/' && c != b':')
}

struct Fields<'a> {
    dropped: &'a mut Vec<String>,
}

impl Fields<'_> {
    fn addrs<T: std::str::FromStr>(&mut self, what: &str, s: &Stmt, words: &[Tok]) -> Vec<T> {
        let mut out = Vec::new();
        for w in list(words) {
            match std::str::from_utf8(&w).ok().and_then(|x| x.parse().ok()) {
                Some(a) if out.len() < MAX_LIST => out.push(a),
                Some(_) => {}
                None => self.dropped.push(format!(
                    "line {}: {what} {:?} is not an address; left out",
                    s.line,
                    String::from_utf8_lossy(&w)
                )),
            }
        }
        out
    }

    fn names(&mut self, what: &str, s: &Stmt, words: &[Tok]) -> Option<String> {
        // One quoted string, or for domain-search a list of them.
        let parts: Vec<Vec<u8>> = words
            .iter()
            .filter_map(|w| match w {
                Tok::Str(b) => Some(b.clone()),
                Tok::Word(b) if b == b"," => None,
                Tok::Word(b) => Some(b.strip_suffix(b",").unwrap_or(b).to_vec()),
                _ => None,
            })
            .collect();
        let joined: Vec<u8> = parts
            .iter()
            .map(|p| p.strip_suffix(b".").unwrap_or(p))
            .collect::<Vec<_>>()
            .join(&b' ');
        if valid_names(&joined) {
            Some(String::from_utf8(joined).expect("checked ASCII"))
        } else {
            self.dropped.push(format!(
                "line {}: {what} {:?} is not a domain name; left out",
                s.line,
                String::from_utf8_lossy(&joined)
            ));
            None
        }
    }
}

fn interface(s: &Stmt) -> Result<Vec<u8>, Error> {
    match s.words.as_slice() {
        [_, Tok::Str(n)] if valid_ifname(n) => Ok(n.clone()),
        [_, Tok::Str(n)] => err(
            s.line,
            format!(
                "interface {:?} is not an interface name",
                String::from_utf8_lossy(n)
            ),
        ),
        _ => err(s.line, "interface takes one quoted name"),
    }
}

fn uint(s: &Stmt, w: Option<&Tok>, what: &str) -> Result<u32, Error> {
    match w.and_then(word).map(str::parse::<u32>) {
        Some(Ok(n)) => Ok(n),
        _ => err(s.line, format!("{what} takes a number of seconds")),
    }
}

/// An IPv4 `lease { ... }` block.
fn lease4(block: &[Stmt], line: usize, f: &mut Fields) -> Result<Lease, Error> {
    let mut iface = None;
    let mut addr = None;
    let mut l = Lease::empty(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let mut expire_seen = false;
    for s in block {
        let key = word(&s.words[0]).unwrap_or("");
        if s.block.is_some() {
            // `option space` blocks and the like: nothing netevd reads.
            continue;
        }
        match key {
            "interface" => iface = Some(interface(s)?),
            "fixed-address" => match s.words.get(1).and_then(word).map(str::parse::<Ipv4Addr>) {
                Some(Ok(a)) if s.words.len() == 2 => match not_unicast(a) {
                    None => addr = Some(a),
                    Some(what) => {
                        return err(s.line, format!("fixed-address {a} is {what}, not a host's"))
                    }
                },
                _ => return err(s.line, "fixed-address takes one IPv4 address"),
            },
            "expire" => {
                l.expires = time(&s.words[1..], s.line)?;
                expire_seen = true;
            }
            "renew" | "rebind" => {
                time(&s.words[1..], s.line)?;
            }
            "option" => {
                let Some(name) = s.words.get(1).and_then(word) else {
                    return err(s.line, "option takes a name");
                };
                let v = &s.words[2..];
                match name {
                    "subnet-mask" => {
                        l.subnet_mask = f.addrs::<Ipv4Addr>("subnet-mask", s, v).first().copied()
                    }
                    "routers" => {
                        l.routers = f.addrs("routers", s, v);
                        l.routers.retain(|&r| match not_unicast(r) {
                            None => true,
                            Some(what) => {
                                f.dropped.push(format!(
                                    "line {}: router {r} is {what}; left out",
                                    s.line
                                ));
                                false
                            }
                        });
                    }
                    "domain-name-servers" => {
                        l.dns = f
                            .addrs::<Ipv4Addr>("domain-name-servers", s, v)
                            .into_iter()
                            .map(IpAddr::V4)
                            .collect()
                    }
                    "domain-name" => l.domain = f.names("domain-name", s, v),
                    "host-name" => l.hostname = f.names("host-name", s, v),
                    "dhcp-lease-time" => {
                        l.lease_secs = Some(uint(s, v.first(), "dhcp-lease-time")?)
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
    let Some(iface) = iface else {
        return err(line, "the lease has no interface");
    };
    let Some(addr) = addr else {
        return err(line, "the lease has no fixed-address");
    };
    if !expire_seen {
        return err(line, "the lease has no expire time");
    }
    // A gateway that is our own address would route through ourselves:
    // the kernel refuses it, at every planning of policy routing.
    if l.routers.contains(&addr) {
        f.dropped.push(format!(
            "line {line}: router {addr} is the lease's own address; left out"
        ));
        l.routers.retain(|&r| r != addr);
    }
    l.interface = iface;
    l.address = IpAddr::V4(addr);
    Ok(l)
}

/// What makes `a` no host's address or gateway, if anything: dhclient
/// never writes these for a bound lease, and each would reach policy
/// routing (a rule from 0.0.0.0, a route via a multicast group).
fn not_unicast(a: Ipv4Addr) -> Option<&'static str> {
    if a.is_unspecified() {
        Some("unspecified")
    } else if a.is_broadcast() {
        Some("the broadcast address")
    } else if a.is_multicast() {
        Some("multicast")
    } else if a.is_loopback() {
        Some("loopback")
    } else {
        None
    }
}

/// An IPv6 `lease6 { ... }` block: the first `iaaddr` of its first
/// `ia-na` is the address; it runs out at its `starts` plus `max-life`.
fn lease6(block: &[Stmt], line: usize, f: &mut Fields) -> Result<Lease, Error> {
    let mut iface = None;
    let mut addr: Option<(Ipv6Addr, Option<u64>, u32)> = None;
    let mut l = Lease::empty(IpAddr::V6(Ipv6Addr::UNSPECIFIED));
    for s in block {
        let key = word(&s.words[0]).unwrap_or("");
        match (key, &s.block) {
            ("interface", None) => iface = Some(interface(s)?),
            ("ia-na", Some(ia)) => {
                for a in ia {
                    let k = word(&a.words[0]).unwrap_or("");
                    match (k, &a.block) {
                        ("iaaddr", Some(inner)) => {
                            let Some(Ok(ip)) = a.words.get(1).and_then(word).map(str::parse) else {
                                return err(a.line, "iaaddr takes one IPv6 address");
                            };
                            let mut starts = None;
                            let mut life = None;
                            for x in inner {
                                match word(&x.words[0]).unwrap_or("") {
                                    "starts" => {
                                        starts = Some(uint(x, x.words.get(1), "starts")? as u64)
                                    }
                                    "max-life" => life = Some(uint(x, x.words.get(1), "max-life")?),
                                    "preferred-life" => {
                                        uint(x, x.words.get(1), "preferred-life")?;
                                    }
                                    _ => {}
                                }
                            }
                            let Some(life) = life else {
                                return err(a.line, "iaaddr has no max-life");
                            };
                            if addr.is_none() {
                                addr = Some((ip, starts, life));
                            }
                        }
                        ("starts" | "renew" | "rebind", None) => {
                            uint(a, a.words.get(1), k)?;
                        }
                        _ => {}
                    }
                }
            }
            ("option", None) => {
                let Some(name) = s.words.get(1).and_then(word) else {
                    return err(s.line, "option takes a name");
                };
                let v = &s.words[2..];
                match name {
                    "dhcp6.name-servers" => {
                        l.dns = f
                            .addrs::<Ipv6Addr>("dhcp6.name-servers", s, v)
                            .into_iter()
                            .map(IpAddr::V6)
                            .collect()
                    }
                    "dhcp6.domain-search" => l.domain = f.names("dhcp6.domain-search", s, v),
                    _ => {}
                }
            }
            _ => {}
        }
    }
    let Some(iface) = iface else {
        return err(line, "the lease6 has no interface");
    };
    let Some((ip, starts, life)) = addr else {
        return err(line, "the lease6 has no ia-na address");
    };
    l.interface = iface;
    l.address = IpAddr::V6(ip);
    l.lease_secs = Some(life);
    // An infinite lifetime (0xffffffff) never runs out.
    l.expires = match (starts, life) {
        (_, u32::MAX) => None,
        (Some(s), life) => Some(s + life as u64),
        (None, _) => return err(line, "the lease6's iaaddr has no starts time"),
    };
    Ok(l)
}

/// Parses a whole lease file.
pub fn parse(bytes: &[u8]) -> Result<Parsed, Error> {
    if bytes.len() > MAX_FILE {
        return Err(Error::TooLarge(bytes.len()));
    }
    let mut p = Parser {
        lex: Lexer {
            b: bytes,
            pos: 0,
            line: 1,
        },
        count: 0,
    };
    let top = p.block(0, 0)?;
    let mut out = Parsed::default();
    let mut f = Fields {
        dropped: &mut out.dropped,
    };
    let mut leases: Vec<Lease> = Vec::new();
    for s in &top {
        let key = word(&s.words[0]).unwrap_or("");
        let lease = match (key, &s.block) {
            ("lease", Some(b)) if s.words.len() == 1 => lease4(b, s.line, &mut f)?,
            ("lease6", Some(b)) if s.words.len() == 1 => lease6(b, s.line, &mut f)?,
            // The client's DUID, kept for DHCPv6; and what older
            // versions wrote for an address they had tried.
            ("default-duid" | "server-duid", None) => continue,
            _ => {
                return err(
                    s.line,
                    format!(
                        "{:?} is not a lease file entry (expected lease, lease6 or default-duid)",
                        String::from_utf8_lossy(match &s.words[0] {
                            Tok::Word(w) | Tok::Str(w) => w,
                            _ => b"",
                        })
                    ),
                )
            }
        };
        // The later block of an interface and family is the newer.
        leases.retain(|o| !(o.interface == lease.interface && o.family() == lease.family()));
        leases.push(lease);
    }
    out.leases = leases;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const V4: &[u8] = include_bytes!("../../../tests/fixtures/lease-dhclient4-release.leases");
    const V6: &[u8] = include_bytes!("../../../tests/fixtures/lease-dhclient6.leases");

    #[test]
    fn dhclient4_fixture_last_block_wins() {
        let p = parse(V4).unwrap();
        assert!(p.dropped.is_empty(), "{:?}", p.dropped);
        assert_eq!(p.leases.len(), 1);
        let l = &p.leases[0];
        assert_eq!(l.interface, b"dc0");
        assert_eq!(l.address, "192.0.2.116".parse::<IpAddr>().unwrap());
        assert_eq!(l.subnet_mask, Some(Ipv4Addr::new(255, 255, 255, 0)));
        assert_eq!(l.routers, vec![Ipv4Addr::new(192, 0, 2, 1)]);
        assert_eq!(l.dns, vec!["192.0.2.1".parse::<IpAddr>().unwrap()]);
        assert_eq!(l.domain.as_deref(), Some("example.test"));
        assert_eq!(l.hostname.as_deref(), Some("tb-dhcp-client"));
        assert_eq!(l.lease_secs, Some(120));
        // The release's block, written last: expired at 2026/11/27 09:27:32.
        assert_eq!(l.expires, Some(1795771652));
        // The first block, on its own, is the bound lease.
        let first_end = V4.windows(2).position(|w| w == b"}\n").unwrap() + 2;
        let p = parse(&V4[..first_end]).unwrap();
        assert_eq!(p.leases[0].expires, Some(1795771652 + 119));
    }

    #[test]
    fn dhclient6_fixture() {
        let p = parse(V6).unwrap();
        assert!(p.dropped.is_empty(), "{:?}", p.dropped);
        assert_eq!(p.leases.len(), 1);
        let l = &p.leases[0];
        assert_eq!(l.interface, b"dc0");
        assert_eq!(l.address, "2001:db8:1::136".parse::<IpAddr>().unwrap());
        assert_eq!(l.subnet_mask, None);
        assert!(l.routers.is_empty());
        assert_eq!(l.dns, vec!["2001:db8:1::1".parse::<IpAddr>().unwrap()]);
        assert_eq!(l.domain.as_deref(), Some("example.test"));
        assert_eq!(l.lease_secs, Some(120));
        assert_eq!(l.expires, Some(1795771652 + 120));
    }

    #[test]
    fn dates_epochs_and_never() {
        // 2026/11/27 09:27:32 UTC, checked with `date -u -d @1795771652`.
        let t = |s: &str| {
            let file =
                format!("lease {{ interface \"e0\"; fixed-address 10.0.0.2; expire {s}; }}\n");
            parse(file.as_bytes()).map(|p| p.leases[0].expires)
        };
        assert_eq!(t("5 2026/11/27 09:27:32"), Ok(Some(1795771652)));
        assert_eq!(t("4 2000/02/29 00:00:00"), Ok(Some(951782400)));
        assert_eq!(t("epoch 1795771652"), Ok(Some(1795771652)));
        assert_eq!(t("never"), Ok(None));
        assert!(t("5 2026/13/27 09:27:32").is_err());
        assert!(t("soon").is_err());
    }

    #[test]
    fn newest_per_interface_and_family() {
        let f = b"lease { interface \"a\"; fixed-address 10.0.0.1; expire never; }
lease { interface \"b\"; fixed-address 10.0.1.1; expire never; }
lease { interface \"a\"; fixed-address 10.0.0.2; expire never; }
lease6 { interface \"a\"; ia-na 1 { iaaddr 2001:db8::5 { starts 1; max-life 4294967295; } } }
";
        let p = parse(f).unwrap();
        let got: Vec<(String, String)> = p
            .leases
            .iter()
            .map(|l| {
                (
                    String::from_utf8_lossy(&l.interface).into(),
                    l.address.to_string(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("b".into(), "10.0.1.1".into()),
                ("a".into(), "10.0.0.2".into()),
                ("a".into(), "2001:db8::5".into())
            ]
        );
        assert_eq!(p.leases[2].expires, None);
    }

    #[test]
    fn errors_name_the_line() {
        let cases: &[(&[u8], &str)] = &[
            (
                b"lease {\n  interface \"e0\";\n  fixed-address 10.0.0.300;\n}\n",
                "line 3: fixed-address",
            ),
            (
                b"lease {\n interface \"e0\"\n}\n",
                "line 3: the statement at line 2 has no `;`",
            ),
            (
                b"lease {\n  interface \"e0\";\n",
                "line 3: the end of the file inside the block opened at line 1",
            ),
            (b"\n\ngarbage\x01\n", "line 3: unexpected byte 0x01"),
            (
                b"hello world;\n",
                "line 1: \"hello\" is not a lease file entry",
            ),
            (
                b"lease { fixed-address 10.0.0.2; expire never; }",
                "line 1: the lease has no interface",
            ),
            (
                b"lease { interface \"a/b\"; }",
                "line 1: interface \"a/b\" is not an interface name",
            ),
            (
                b"lease { interface \"e0; }\n",
                "line 1: a quoted string runs past",
            ),
            (b"}\n", "line 1: a `}` with no block"),
            (
                b"a { b { c { d { e; } } } }",
                "line 1: blocks nested more than 4 deep",
            ),
        ];
        for (input, want) in cases {
            let e = parse(input).unwrap_err().to_string();
            assert!(
                e.starts_with(want),
                "{:?}: {e}",
                String::from_utf8_lossy(input)
            );
        }
        assert_eq!(
            parse(&vec![b' '; MAX_FILE + 1]),
            Err(Error::TooLarge(MAX_FILE + 1))
        );
        let many = "lease { interface \"e\"; fixed-address 10.0.0.1; expire never; }\n"
            .repeat(MAX_BLOCKS + 1);
        assert!(parse(many.as_bytes())
            .unwrap_err()
            .to_string()
            .contains("top-level entries"));
    }

    #[test]
    fn hostile_values_are_left_out_not_passed_on() {
        let f = b"lease {
  interface \"e0\";
  fixed-address 10.0.0.2;
  option routers 10.0.0.1, evil;
  option host-name \"$(reboot)\";
  option domain-name \"a\\012b\";
  option domain-name-servers 10.0.0.53,10.0.0.54;
  expire never;
}
";
        let p = parse(f).unwrap();
        let l = &p.leases[0];
        assert_eq!(l.routers, vec![Ipv4Addr::new(10, 0, 0, 1)]);
        assert_eq!(l.hostname, None);
        assert_eq!(l.domain, None);
        assert_eq!(l.dns.len(), 2);
        assert_eq!(p.dropped.len(), 3, "{:?}", p.dropped);
        assert!(
            p.dropped[1].starts_with("line 5: host-name"),
            "{:?}",
            p.dropped
        );
    }

    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            // xorshift64*: repeatable, no crate.
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
        let mut v = seed.to_vec();
        for _ in 0..1 + rng.below(8) {
            let at = if v.is_empty() { 0 } else { rng.below(v.len()) };
            match rng.below(6) {
                0 if !v.is_empty() => v[at] = rng.next() as u8,
                1 => v.insert(at, b"{};\"#\\\n 0:/.,"[rng.below(13)]),
                2 if !v.is_empty() => {
                    v.remove(at);
                }
                3 => v.truncate(at),
                4 => {
                    // a slice of the file repeated: deep or long inputs
                    let end = (at + rng.below(64)).min(v.len());
                    let piece = v[at..end].to_vec();
                    for _ in 0..rng.below(40) {
                        v.splice(at..at, piece.iter().copied());
                    }
                }
                _ => v.extend_from_slice(&seed[..rng.below(seed.len())]),
            }
        }
        v
    }

    /// Seeded and repeatable: fixtures, mutations of them and random
    /// bytes must parse or fail with an error, never panic, and every
    /// lease that comes out holds only checked values.
    #[test]
    fn fuzz_parser() {
        let corpus: [&[u8]; 3] = [V4, V6, b"lease6 { interface \"x\"; ia-na 1 { iaaddr ::1 { starts 5; max-life 7; } } option dhcp6.domain-search \"a.\", \"b.\"; }\n"];
        let mut rng = Rng(0x1ea5e);
        let start = std::time::Instant::now();
        let (mut runs, mut ok) = (0u64, 0u64);
        while start.elapsed() < std::time::Duration::from_millis(1500) {
            for _ in 0..256 {
                let input: Vec<u8> = if rng.below(8) == 0 {
                    (0..rng.below(200)).map(|_| rng.next() as u8).collect()
                } else {
                    let seed = corpus[rng.below(corpus.len())];
                    mutate(&mut rng, seed)
                };
                runs += 1;
                if let Ok(p) = parse(&input) {
                    ok += 1;
                    for l in &p.leases {
                        assert!(valid_ifname(&l.interface));
                        assert!(l.routers.len() <= MAX_LIST && l.dns.len() <= MAX_LIST);
                        for n in l.domain.iter().chain(&l.hostname) {
                            assert!(valid_names(n.as_bytes()), "{n:?}");
                        }
                    }
                }
            }
        }
        assert!(runs > 1000 && ok > 10, "{runs} inputs, {ok} parsed");
    }

    /// Gateways no host could route through are left out and named; an
    /// address no host could have refuses the file.
    #[test]
    fn gateways_and_addresses_that_are_not_a_hosts() {
        let f = |addr: &str, routers: &str| {
            let file = format!(
                "lease {{ interface \"e0\"; fixed-address {addr}; option routers {routers}; \
                 expire never; }}\n"
            );
            parse(file.as_bytes())
        };
        let p = f(
            "10.0.0.2",
            "10.0.0.2,0.0.0.0,224.0.0.1,255.255.255.255,127.0.0.1,10.0.0.1",
        )
        .unwrap();
        assert_eq!(p.leases[0].routers, vec![Ipv4Addr::new(10, 0, 0, 1)]);
        assert_eq!(p.dropped.len(), 5, "{:?}", p.dropped);
        for want in [
            "router 0.0.0.0 is unspecified",
            "router 224.0.0.1 is multicast",
            "router 255.255.255.255 is the broadcast address",
            "router 127.0.0.1 is loopback",
            "router 10.0.0.2 is the lease's own address",
        ] {
            assert!(
                p.dropped.iter().any(|d| d.contains(want)),
                "{want}: {:?}",
                p.dropped
            );
        }
        // Only its own address as the gateway: no gateway at all.
        assert!(f("10.0.0.2", "10.0.0.2").unwrap().leases[0]
            .routers
            .is_empty());
        for bad in ["0.0.0.0", "239.1.2.3", "255.255.255.255", "127.0.0.2"] {
            let e = f(bad, "10.0.0.1").unwrap_err().to_string();
            assert!(e.contains("not a host's"), "{bad}: {e}");
        }
    }
}
