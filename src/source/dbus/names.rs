//! The checks every string from the bus passes before it goes anywhere:
//! object paths to link indexes, interface names, state file contents
//! (name servers, domains, host name), and what may be logged. Nothing
//! here trusts the peer: networkd-dispatcher's CVE-2022-29799 and -29800
//! (Nimbuspwn) came from a state string taken as a path component, and a
//! bus peer is only as trustworthy as whoever owns the name.
//!
//! Pure functions over bytes and strings; no I/O.

use std::net::IpAddr;

pub const NETWORKD: &str = "org.freedesktop.network1";
pub const NETWORKD_PATH: &str = "/org/freedesktop/network1";
pub const NETWORKD_MANAGER: &str = "org.freedesktop.network1.Manager";
pub const NETWORKD_LINK: &str = "org.freedesktop.network1.Link";
pub const LINK_PREFIX: &str = "/org/freedesktop/network1/link/";

pub const NM: &str = "org.freedesktop.NetworkManager";
pub const NM_PATH: &str = "/org/freedesktop/NetworkManager";
pub const NM_DEVICE: &str = "org.freedesktop.NetworkManager.Device";
pub const NM_DEVICES: &str = "/org/freedesktop/NetworkManager/Devices/";

/// The link index in a networkd link path, `/org/freedesktop/network1/
/// link/_3<digits>`: sd-bus escapes a label's leading digit as `_3x`
/// (its hex code) and keeps the rest, so ifindex 12 is `_312`. Anything
/// else (another escape, a zero, a number past u32, more path) is None.
pub fn networkd_link_index(path: &str) -> Option<u32> {
    let label = path.strip_prefix(LINK_PREFIX)?;
    let digits = label.strip_prefix("_3")?;
    if digits.is_empty() || digits.len() > 10 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // Escaping made the first digit `_3d`: the rest may not lead with 0
    // either, or one index would have two paths.
    if digits.starts_with('0') {
        return None;
    }
    digits.parse::<u32>().ok().filter(|&i| i > 0)
}

/// The path of networkd's link object for `index`.
pub fn networkd_link_path(index: u32) -> String {
    format!("{LINK_PREFIX}_3{index}")
}

/// Whether `path` names an NM device object: `/org/freedesktop/
/// NetworkManager/Devices/<digits>`.
pub fn nm_device_path(path: &str) -> bool {
    path.strip_prefix(NM_DEVICES)
        .is_some_and(|n| !n.is_empty() && n.len() <= 10 && n.bytes().all(|b| b.is_ascii_digit()))
}

/// A link name as the kernel allows it (`dev_valid_name`): 1 to 15 bytes,
/// not `.` or `..`, no `/`, `:`, NUL or white space. Control characters
/// are refused too: a name from the bus may be logged.
pub fn link_name(s: &str) -> Option<&str> {
    let ok = !s.is_empty()
        && s.len() <= 15
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b > b' ' && b != b'/' && b != b':' && b != 0x7f);
    ok.then_some(s)
}

/// A DNS name as a search domain or host name may be: labels of letters,
/// digits, `-` and `_`, dot-separated, at most 253 bytes; a trailing dot
/// is allowed. `~` alone or before a domain is networkd's routing-only
/// marker and kept.
pub fn domain(s: &str) -> Option<&str> {
    let body = s.strip_prefix('~').unwrap_or(s);
    if body == "." && s.starts_with('~') {
        return Some(s);
    }
    let body = body.strip_suffix('.').unwrap_or(body);
    let ok = !body.is_empty()
        && body.len() <= 253
        && body.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    ok.then_some(s)
}

/// A name server as networkd writes it: an address, maybe followed by
/// `:port`, `%ifname` or `#server-name` in newer versions; the address
/// alone is kept.
pub fn name_server(s: &str) -> Option<IpAddr> {
    let s = s.split(['#', '%']).next()?;
    if let Ok(ip) = s.parse() {
        return Some(ip);
    }
    // [v6]:port or v4:port
    let s = s
        .strip_prefix('[')
        .map_or(s, |r| r.split(']').next().unwrap_or(r));
    let s = if s.matches(':').count() == 1 {
        s.split(':').next()?
    } else {
        s
    };
    s.parse().ok()
}

/// A NetworkManager connection id as hooks may get it: any text a user
/// named the connection with, but no control characters and at most 255
/// bytes. (It reaches hooks as a value, never as a path or a command.)
pub fn connection_id(s: &str) -> Option<&str> {
    (s.len() <= 255 && !s.chars().any(char::is_control)).then_some(s)
}

/// A connection uuid: 36 characters of hex digits and dashes, or none.
pub fn uuid_ok(s: &str) -> Option<&str> {
    let ok = s.is_empty()
        || (s.len() == 36
            && s.bytes().enumerate().all(|(i, b)| match i {
                8 | 13 | 18 | 23 => b == b'-',
                _ => b.is_ascii_hexdigit(),
            }));
    ok.then_some(s)
}

/// What networkd's state files say of a link beyond its states.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Extras {
    pub dns: Vec<String>,
    pub domains: Vec<String>,
    pub hostname: String,
    /// What was refused, `KEY value` each, for one log line.
    pub refused: Vec<String>,
}

/// Reads `KEY=value` lines of `/run/systemd/netif/links/<N>` (DNS,
/// DOMAINS) and of `leases/<N>` (HOSTNAME). networkd says of these files
/// "Do not parse": they are the fallback when `Describe` is not asked for
/// or not answered, so every value is checked and a bad one dropped and
/// named.
pub fn parse_state(text: &[u8], out: &mut Extras) {
    for line in text.split(|&b| b == b'\n') {
        let Ok(line) = std::str::from_utf8(line) else {
            continue;
        };
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        match k {
            "DNS" => {
                for w in v.split_ascii_whitespace() {
                    match name_server(w) {
                        Some(ip) => out.dns.push(ip.to_string()),
                        None => out.refused.push(format!("DNS {}", loggable(w))),
                    }
                }
            }
            "DOMAINS" | "ROUTE_DOMAINS" => {
                for w in v.split_ascii_whitespace() {
                    match domain(w) {
                        Some(d) => {
                            let d = if k == "ROUTE_DOMAINS" && !d.starts_with('~') {
                                format!("~{d}")
                            } else {
                                d.to_string()
                            };
                            if !out.domains.contains(&d) {
                                out.domains.push(d);
                            }
                        }
                        None => out.refused.push(format!("{k} {}", loggable(w))),
                    }
                }
            }
            "HOSTNAME" => match domain(v) {
                Some(h) if !h.starts_with('~') => out.hostname = h.to_string(),
                _ => out.refused.push(format!("HOSTNAME {}", loggable(v))),
            },
            _ => {}
        }
    }
    out.dns.truncate(64);
    out.domains.truncate(64);
    // A file full of bad words would make one log line of 64 KiB.
    if out.refused.len() > REFUSED_NAMED {
        let more = out.refused.len() - REFUSED_NAMED;
        out.refused.truncate(REFUSED_NAMED);
        out.refused.push(format!("{more} more"));
    }
}

/// Refused values named in the log line; the rest are counted.
const REFUSED_NAMED: usize = 8;

/// A string from the bus as it may appear in a log line: control
/// characters and quotes escaped, at most 120 characters.
pub fn loggable(s: &str) -> String {
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i == 120 {
            out.push_str("...");
            break;
        }
        out.extend(c.escape_debug());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_paths() {
        assert_eq!(
            networkd_link_index("/org/freedesktop/network1/link/_32"),
            Some(2)
        );
        assert_eq!(
            networkd_link_index("/org/freedesktop/network1/link/_312"),
            Some(12)
        );
        assert_eq!(
            networkd_link_path(12),
            "/org/freedesktop/network1/link/_312"
        );
        for bad in [
            "/org/freedesktop/network1/link/_3",
            "/org/freedesktop/network1/link/_30",
            "/org/freedesktop/network1/link/_3012",
            "/org/freedesktop/network1/link/_34294967296",
            "/org/freedesktop/network1/link/_32/x",
            "/org/freedesktop/network1/link/_3_2e_2e",
            "/org/freedesktop/network1/link/2",
            "/org/freedesktop/network1/link/_3-1",
            "/org/freedesktop/network1",
            "/org/freedesktop/network1/link/_3..%2f",
        ] {
            assert_eq!(networkd_link_index(bad), None, "{bad}");
        }
        assert!(nm_device_path("/org/freedesktop/NetworkManager/Devices/3"));
        assert!(!nm_device_path("/org/freedesktop/NetworkManager/Devices/"));
        assert!(!nm_device_path(
            "/org/freedesktop/NetworkManager/Devices/3/x"
        ));
    }

    #[test]
    fn names() {
        assert_eq!(link_name("eth0"), Some("eth0"));
        for bad in [
            "",
            "..",
            ".",
            "a/b",
            "a:b",
            "a b",
            "x\n",
            "0123456789abcdef",
        ] {
            assert_eq!(link_name(bad), None, "{bad:?}");
        }
        assert!(domain("example.test").is_some());
        assert!(domain("~corp.test").is_some());
        assert!(domain("~.").is_some());
        assert!(domain("host-1.example.").is_some());
        for bad in ["", ".", "../etc", "a..b", "a b", "$(id)", "a/b"] {
            assert_eq!(domain(bad), None, "{bad:?}");
        }
        assert_eq!(name_server("192.0.2.53").unwrap().to_string(), "192.0.2.53");
        assert_eq!(
            name_server("192.0.2.53:53").unwrap().to_string(),
            "192.0.2.53"
        );
        assert_eq!(
            name_server("fe80::1%3#dns.test").unwrap().to_string(),
            "fe80::1"
        );
        assert_eq!(
            name_server("[2001:db8::53]:53").unwrap().to_string(),
            "2001:db8::53"
        );
        assert!(name_server("../x").is_none());
        assert_eq!(loggable("a\"b\nc"), "a\\\"b\\nc");
        assert_eq!(
            connection_id("Wired connection 1"),
            Some("Wired connection 1")
        );
        assert_eq!(connection_id("a\nb"), None);
        assert!(uuid_ok("5f0d8d2c-1c1a-4f2e-9a57-2b8f0e2d0a01").is_some());
        assert!(uuid_ok("5f0d8d2c-1c1a-4f2e-9a57-2b8f0e2d0a0/").is_none());
        assert!(uuid_ok("../../etc").is_none());
    }

    /// A state file as networkd 252 wrote it in testbed/networkd.sh, with
    /// values of the kinds that must be refused added.
    const STATE: &[u8] = b"# This is private data. Do not parse.\n\
ADMIN_STATE=configured\n\
OPER_STATE=routable\n\
DNS=192.0.2.53 2001:db8::53 ../../etc/x\n\
DOMAINS=example.test $(reboot)\n\
ROUTE_DOMAINS=corp.test\n\
HOSTNAME=node-1.example.test\n\
\xff\xfe=binary\n";

    #[test]
    fn state_file() {
        let mut x = Extras::default();
        parse_state(STATE, &mut x);
        assert_eq!(x.dns, ["192.0.2.53", "2001:db8::53"]);
        assert_eq!(x.domains, ["example.test", "~corp.test"]);
        assert_eq!(x.hostname, "node-1.example.test");
        assert_eq!(x.refused, ["DNS ../../etc/x", "DOMAINS $(reboot)"]);
    }

    /// Seeded mutations of the fixture: the parser never panics, and what
    /// it keeps is always valid.
    #[test]
    fn fuzz_state_file() {
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..20_000 {
            let mut b = STATE.to_vec();
            for _ in 0..(next() % 8) {
                let i = (next() as usize) % b.len();
                match next() % 3 {
                    0 => b[i] = next() as u8,
                    1 => {
                        b.remove(i);
                    }
                    _ => b.insert(i, b"/.=\n ~%#:[]"[(next() % 11) as usize]),
                }
            }
            let mut x = Extras::default();
            parse_state(&b, &mut x);
            assert!(x.dns.iter().all(|d| d.parse::<IpAddr>().is_ok()));
            assert!(x
                .domains
                .iter()
                .all(|d| domain(d).is_some() && !d.contains('/')));
            assert!(x.hostname.is_empty() || domain(&x.hostname).is_some());
        }
    }
}
