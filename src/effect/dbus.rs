//! Calls to systemd-resolved and systemd-hostnamed for `use_dns`,
//! `use_domain` and `use_hostname`: a link's name servers
//! (`SetLinkDNS`), its search and routing domains (`SetLinkDomains`), and
//! the host name (`SetStaticHostname`, `SetHostname`).
//!
//! What is wanted is compared with what the other side acknowledged, and a
//! difference is sent through the same request/acknowledge bookkeeping as
//! policy routing (core/requests.rs): one call per key in flight, the
//! answer matched by serial. A refused call is logged with the bus's error
//! and not sent again until the value changes, so a refusal never turns
//! into a loop. Values arrive validated (addresses parsed, names checked
//! by source/dbus/names.rs); this module builds the messages and keeps
//! the books, and the bus source sends them.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use dbus::Message;

use crate::core::requests::{Backoff, Outcome, Requests, Timing};

/// Which value a call sets.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Key {
    Dns(u32),
    Domains(u32),
    StaticHostname,
    Hostname,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Value {
    Dns(Vec<IpAddr>),
    /// (domain, routing only)
    Domains(Vec<(String, bool)>),
    Hostname(String),
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    pub use_dns: bool,
    pub use_domain: bool,
    pub use_hostname: bool,
}

/// Counters for the metrics registry.
#[derive(Clone, Copy, Debug, Default)]
pub struct Stats {
    pub calls: u64,
    pub refused: u64,
}

pub struct Resolve {
    settings: Settings,
    want: BTreeMap<Key, Value>,
    /// What the other side acknowledged.
    done: BTreeMap<Key, Value>,
    requests: Requests<Key, Value>,
    pub stats: Stats,
}

fn fingerprint(v: &Value) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    v.hash(&mut h);
    h.finish()
}

/// A refusal holds the key until its value changes: the hold outlasts any
/// real run, and a new value (a new context) lifts it at once.
fn timing() -> Timing {
    let forever = Duration::from_secs(100 * 365 * 86400);
    Timing {
        refused: Backoff {
            first: forever,
            max: forever,
        },
        ..Timing::default()
    }
}

impl Resolve {
    pub fn new(settings: Settings) -> Self {
        Resolve {
            settings,
            want: BTreeMap::new(),
            done: BTreeMap::new(),
            requests: Requests::new(timing()),
            stats: Stats::default(),
        }
    }

    pub fn set_settings(&mut self, s: Settings) {
        self.settings = s;
    }

    pub fn active(&self) -> bool {
        self.settings.use_dns || self.settings.use_domain || self.settings.use_hostname
    }

    /// What a link's manager says now: its name servers, domains (a `~`
    /// marks a routing-only one) and host name.
    pub fn set_link(&mut self, index: u32, dns: &[String], domains: &[String], hostname: &str) {
        if self.settings.use_dns {
            let v: Vec<IpAddr> = dns.iter().filter_map(|d| d.parse().ok()).collect();
            self.want.insert(Key::Dns(index), Value::Dns(v));
        }
        if self.settings.use_domain {
            let v = domains
                .iter()
                .map(|d| match d.strip_prefix('~') {
                    Some(r) => (if r.is_empty() { "." } else { r }.to_string(), true),
                    None => (d.clone(), false),
                })
                .collect();
            self.want.insert(Key::Domains(index), Value::Domains(v));
        }
        // A host name is set when a link brings one; a link without one
        // leaves it as it is.
        if self.settings.use_hostname && !hostname.is_empty() && hostname.len() <= 64 {
            for k in [Key::StaticHostname, Key::Hostname] {
                self.want.insert(k, Value::Hostname(hostname.to_string()));
            }
        }
    }

    /// A link is gone: resolved forgets it by itself.
    pub fn link_gone(&mut self, index: u32) {
        for k in [Key::Dns(index), Key::Domains(index)] {
            self.want.remove(&k);
            self.done.remove(&k);
        }
    }

    /// The bus or the service went away: what it acknowledged may be gone
    /// with it, and answers in flight are lost.
    pub fn reset(&mut self) {
        self.done.clear();
        self.requests.resynced();
    }

    /// The calls due now.
    pub fn due(&mut self, now: Instant) -> Vec<(Key, Value)> {
        self.requests.fire(now);
        // Every key is diffed below anyway.
        self.requests.take_recheck();
        self.want
            .iter()
            .filter(|(k, v)| self.done.get(k) != Some(v))
            .filter(|(k, v)| self.requests.in_flight(k) != Some(v))
            .filter(|(k, v)| self.requests.may_send(k, fingerprint(v), now))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    pub fn sent(&mut self, serial: u32, key: Key, value: Value) {
        self.stats.calls += 1;
        let ctx = fingerprint(&value);
        self.requests.sent(serial, key, value, ctx);
    }

    pub fn send_failed(&mut self, key: Key, now: Instant) {
        self.requests.send_failed(key, now);
    }

    /// The answer to call `serial`: Ok, or the bus error's name and text.
    pub fn answer(&mut self, serial: u32, res: Result<(), (String, String)>, now: Instant) {
        let outcome = match &res {
            Ok(()) => Outcome::Done,
            Err(_) => Outcome::Refused,
        };
        let Some(a) = self.requests.answer(serial, outcome, now) else {
            return;
        };
        match res {
            Ok(()) => {
                log::info!("{}: done", describe(&a.key, &a.change));
                self.done.insert(a.key, a.change);
            }
            Err((name, text)) => {
                self.stats.refused += 1;
                log::warn!(
                    "{}: refused: {name}: {text}; sent again when the value changes",
                    describe(&a.key, &a.change)
                );
            }
        }
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.requests.next_deadline()
    }
}

/// One line naming a call and its value, for the log.
pub fn describe(k: &Key, v: &Value) -> String {
    match (k, v) {
        (Key::Dns(i), Value::Dns(a)) => format!(
            "resolved SetLinkDNS link {i} [{}]",
            a.iter()
                .map(|x| x.to_string())
                .collect::<Vec<_>>()
                .join(" ")
        ),
        (Key::Domains(i), Value::Domains(d)) => format!(
            "resolved SetLinkDomains link {i} [{}]",
            d.iter()
                .map(|(d, r)| if *r { format!("~{d}") } else { d.clone() })
                .collect::<Vec<_>>()
                .join(" ")
        ),
        (Key::StaticHostname, Value::Hostname(h)) => format!("hostnamed SetStaticHostname {h}"),
        (Key::Hostname, Value::Hostname(h)) => format!("hostnamed SetHostname {h}"),
        _ => format!("{k:?}"),
    }
}

/// The method call for a key and its value.
pub fn message(k: &Key, v: &Value) -> Option<Message> {
    const R: (&str, &str, &str) = (
        "org.freedesktop.resolve1",
        "/org/freedesktop/resolve1",
        "org.freedesktop.resolve1.Manager",
    );
    const H: (&str, &str, &str) = (
        "org.freedesktop.hostname1",
        "/org/freedesktop/hostname1",
        "org.freedesktop.hostname1",
    );
    let call = |(d, p, i): (&str, &str, &str), m: &str| Message::new_method_call(d, p, i, m).ok();
    match (k, v) {
        (Key::Dns(i), Value::Dns(a)) => {
            // a(iay): address family and the address's bytes.
            let list: Vec<(i32, Vec<u8>)> = a
                .iter()
                .map(|ip| match ip {
                    IpAddr::V4(x) => (2, x.octets().to_vec()),
                    IpAddr::V6(x) => (10, x.octets().to_vec()),
                })
                .collect();
            Some(call(R, "SetLinkDNS")?.append2(*i as i32, list))
        }
        (Key::Domains(i), Value::Domains(d)) => {
            Some(call(R, "SetLinkDomains")?.append2(*i as i32, d.clone()))
        }
        (Key::StaticHostname, Value::Hostname(h)) => {
            Some(call(H, "SetStaticHostname")?.append2(h.as_str(), false))
        }
        (Key::Hostname, Value::Hostname(h)) => {
            Some(call(H, "SetHostname")?.append2(h.as_str(), false))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Settings {
        Settings {
            use_dns: true,
            use_domain: true,
            use_hostname: true,
        }
    }

    #[test]
    fn sends_differences_once_and_a_refusal_waits_for_a_new_value() {
        let t0 = Instant::now();
        let mut r = Resolve::new(all());
        r.set_link(
            3,
            &["192.0.2.53".into()],
            &["example.test".into(), "~corp.test".into()],
            "node-1",
        );
        let due = r.due(t0);
        assert_eq!(due.len(), 4, "{due:?}");
        for (serial, (k, v)) in due.into_iter().enumerate() {
            assert!(message(&k, &v).is_some());
            r.sent(serial as u32 + 10, k, v);
        }
        assert!(r.due(t0).is_empty(), "one call per key in flight");
        r.answer(10, Ok(()), t0);
        r.answer(11, Ok(()), t0);
        r.answer(
            12,
            Err((
                "org.freedesktop.DBus.Error.AccessDenied".into(),
                "no".into(),
            )),
            t0,
        );
        r.answer(13, Ok(()), t0);
        // The same values again: nothing to send, the refused one neither,
        // not even much later.
        r.set_link(
            3,
            &["192.0.2.53".into()],
            &["example.test".into(), "~corp.test".into()],
            "node-1",
        );
        assert!(r.due(t0 + Duration::from_secs(3600)).is_empty());
        assert_eq!(r.stats.refused, 1);
        // A new value goes at once, refused key included.
        r.set_link(
            3,
            &["192.0.2.54".into()],
            &["example.test".into(), "~corp.test".into()],
            "node-2",
        );
        let keys: Vec<Key> = r.due(t0).into_iter().map(|(k, _)| k).collect();
        assert!(keys.contains(&Key::Dns(3)));
        assert!(keys.contains(&Key::StaticHostname) && keys.contains(&Key::Hostname));
        assert!(!keys.contains(&Key::Domains(3)));
    }

    #[test]
    fn domains_and_settings() {
        let mut r = Resolve::new(Settings {
            use_domain: true,
            ..Settings::default()
        });
        r.set_link(
            2,
            &["192.0.2.53".into()],
            &["~.".into(), "a.test".into()],
            "h",
        );
        let due = r.due(Instant::now());
        assert_eq!(
            due,
            vec![(
                Key::Domains(2),
                Value::Domains(vec![(".".into(), true), ("a.test".into(), false)])
            )]
        );
        r.reset();
        r.link_gone(2);
        assert!(r.due(Instant::now()).is_empty());
    }
}
