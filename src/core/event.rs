//! The one immutable event: made by the core, sealed once with the policy
//! view and its JSON, then shared (`Rc<Event>`) by every consumer: the
//! hook scheduler, the control socket's subscribers and history, and
//! later the audit log and the HTTP stream. No consumer changes it; what a
//! hook run adds (the previous state that run's hooks last saw, how many
//! events were folded into it) belongs to the run, and reaches hooks as
//! environment variables, not as event fields.
//!
//! Also the pure function that turns an event and its run into a hook's
//! environment.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::os::unix::ffi::OsStringExt;

use serde_json::Value;

use super::managers::Report;
use super::state::OperState;
use super::types::*;

/// Bumped whenever a field of the JSON changes meaning or goes away.
/// 2: `coalesced` left the JSON (it is the run's, in `COALESCED`), and
/// `previous_state` is what every consumer was told before this event.
pub const JSON_VERSION: u32 = 2;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The current state, replayed when the daemon starts.
    Startup,
    /// The link's state, name or usable addresses changed.
    State,
    /// The link is gone; its state is `off`.
    Removed,
    /// A route through the link was added or deleted.
    Routes,
    /// Asked for by `netevctl test`: the link's current state, run
    /// through the hook directory the request named.
    Test,
    /// A new DHCP lease from dhclient's lease file: runs `routable.d`,
    /// whatever the link's kernel state (`OPERSTATE` has that).
    #[cfg_attr(not(feature = "dhclient"), allow(dead_code))]
    Lease,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Startup => "startup",
            Kind::State => "state",
            Kind::Removed => "removed",
            Kind::Routes => "routes",
            Kind::Test => "test",
            Kind::Lease => "lease",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteChange {
    pub added: bool,
    pub route: RouteInfo,
}

/// What policy routing installed for the link, when it is listed in
/// `routing.policy_rules`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyView {
    pub table: u32,
    pub rules: std::rc::Rc<[String]>,
    pub gateways: Vec<std::net::IpAddr>,
}

/// Where an event came from: the source of the input that caused it.
/// The lease watcher adds its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(not(feature = "dbus"), allow(dead_code))]
pub enum Origin {
    Kernel,
    /// `netevctl test`.
    Control,
    /// dhclient's lease files.
    #[cfg_attr(not(feature = "dhclient"), allow(dead_code))]
    Dhclient,
    /// systemd-networkd over DBus.
    Networkd,
    /// NetworkManager over DBus.
    NetworkManager,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Kernel => "kernel",
            Origin::Control => "control",
            Origin::Dhclient => "dhclient",
            Origin::Networkd => "systemd-networkd",
            Origin::NetworkManager => "NetworkManager",
        }
    }
}

/// What a network manager said of the link when it made the event. Every
/// string in it was validated by the source: states are names from the
/// lists in core/managers.rs, addresses were parsed, names checked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ManagerView {
    /// The hook directory: a manager state name, or `manager`.
    pub dir: &'static str,
    /// The directory the link's manager hooks were told before.
    pub previous: Option<&'static str>,
    pub report: Report,
    /// From networkd's state file: name servers, search domains, and the
    /// host name a DHCP lease gave.
    pub dns: Vec<String>,
    pub domains: Vec<String>,
    pub hostname: String,
    /// The link's default gateways, from the kernel's routes.
    pub gateways: Vec<std::net::IpAddr>,
    /// networkd's own JSON description of the link (`Describe`), when
    /// `backends.systemd_networkd.emit_json` asks for it and it came.
    pub describe: Option<String>,
    /// NetworkManager: the active connection and its IP configuration.
    pub connection_id: String,
    pub connection_uuid: String,
    pub ip4: Vec<String>,
    pub ip6: Vec<String>,
    pub ip4_gateway: String,
    pub ip6_gateway: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub id: u64,
    /// Milliseconds since the epoch, from the clock the caller passed.
    pub time_ms: u64,
    pub kind: Kind,
    pub origin: Origin,
    pub index: u32,
    pub name: Vec<u8>,
    /// The link's name consumers were last told, when this event is the
    /// first since a rename (`PREVIOUS_LINK`).
    pub previous_name: Option<Vec<u8>>,
    pub state: OperState,
    /// What consumers were told of this link before this event.
    pub previous: Option<OperState>,
    pub addrs: Vec<AddrInfo>,
    pub mtu: u32,
    pub mac: Vec<u8>,
    pub link_kind: Option<String>,
    pub route: Option<RouteChange>,
    /// For a `Test` event: the hook directory asked for.
    pub test_dir: Option<&'static str>,
    /// Policy routing's view of the link when the event was sealed.
    pub policy: Option<PolicyView>,
    /// For a `Lease` event: the new lease.
    pub lease: Option<Box<super::lease::Lease>>,
    /// For an event a network manager made: what it reported.
    pub manager: Option<Box<ManagerView>>,
    /// The versioned JSON, made once, when the first consumer asks: an
    /// event nobody reads (coalesced away, no subscriber) costs none.
    json: std::cell::OnceCell<String>,
}

impl Event {
    /// A new event with no policy view; `seal` completes it.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: u64,
        time_ms: u64,
        kind: Kind,
        origin: Origin,
        index: u32,
        name: Vec<u8>,
        state: OperState,
        previous: Option<OperState>,
    ) -> Self {
        Event {
            id,
            time_ms,
            kind,
            origin,
            index,
            name,
            previous_name: None,
            state,
            previous,
            addrs: Vec::new(),
            mtu: 0,
            mac: Vec::new(),
            link_kind: None,
            route: None,
            test_dir: None,
            policy: None,
            lease: None,
            manager: None,
            json: std::cell::OnceCell::new(),
        }
    }

    /// Completes the event with policy routing's view; from here on it is
    /// shared and never changed.
    pub fn seal(mut self, policy: Option<PolicyView>) -> std::rc::Rc<Event> {
        self.policy = policy;
        std::rc::Rc::new(self)
    }

    /// The versioned JSON, serialised on first use and kept.
    pub fn json(&self) -> &str {
        self.json.get_or_init(|| to_json(self))
    }

    /// About how many bytes the event holds with its JSON, for bounds on
    /// what keeps events. The same whether or not the JSON was made yet.
    pub fn weight(&self) -> usize {
        // An address is about 80 bytes of JSON.
        512 + self.name.len() * 2 + self.addrs.len() * (std::mem::size_of::<AddrInfo>() + 80)
    }

    /// What a network manager reported, for its events. Always None in a
    /// build without the `dbus` feature, which leaves the code that reads
    /// it out of the kernel-only binary.
    pub fn manager(&self) -> Option<&ManagerView> {
        #[cfg(feature = "dbus")]
        return self.manager.as_deref();
        #[cfg(not(feature = "dbus"))]
        return None;
    }

    /// The hook directory, `<state>.d`, without the suffix.
    pub fn dir(&self) -> &'static str {
        match (self.kind, self.test_dir) {
            (Kind::Test, Some(d)) => d,
            (Kind::Routes, _) => "routes",
            (Kind::Lease, _) => "routable",
            _ => match self.manager() {
                Some(m) => m.dir,
                None => self.state.as_str(),
            },
        }
    }

    pub fn name_lossy(&self) -> String {
        String::from_utf8_lossy(&self.name).into_owned()
    }
}

pub fn mac_str(mac: &[u8]) -> String {
    let mut s = String::with_capacity(mac.len() * 3);
    for (i, b) in mac.iter().enumerate() {
        if i > 0 {
            s.push(':');
        }
        let _ = write!(s, "{b:02x}");
    }
    s
}

fn route_dst(r: &RouteInfo) -> String {
    match r.dst {
        Some(ip) => format!("{ip}/{}", r.dst_len),
        None if r.dst_len == 0 => "default".to_string(),
        None => format!("/{}", r.dst_len),
    }
}

pub fn route_json(r: &RouteInfo) -> Value {
    super::query::obj(&mut [
        ("family", Value::from(family_name(r.family))),
        ("dst", Value::from(route_dst(r))),
        ("gateway", Value::from(r.gateway.map(|g| g.to_string()))),
        ("table", Value::from(r.table)),
        ("metric", Value::from(r.priority)),
        ("protocol", Value::from(r.protocol)),
        ("scope", Value::from(r.scope)),
        ("type", Value::from(r.kind)),
        ("prefsrc", Value::from(r.prefsrc.map(|g| g.to_string()))),
        ("ifindex", Value::from(r.oif)),
    ])
}

/// Writes one JSON object's members, commas and escaping included, into
/// a string: the event is written in one pass, with no tree of values
/// built first (it is made for every event a subscriber or hook reads).
struct Obj<'a> {
    out: &'a mut String,
    first: bool,
}

impl<'a> Obj<'a> {
    fn open(out: &'a mut String) -> Self {
        out.push('{');
        Obj { out, first: true }
    }

    fn key(&mut self, k: &str) -> &mut String {
        if !self.first {
            self.out.push(',');
        }
        self.first = false;
        self.out.push('"');
        self.out.push_str(k);
        self.out.push_str("\":");
        self.out
    }

    fn str(&mut self, k: &str, v: &str) {
        let o = self.key(k);
        escape(o, v);
    }

    fn opt_str(&mut self, k: &str, v: Option<&str>) {
        match v {
            Some(v) => self.str(k, v),
            None => self.key(k).push_str("null"),
        }
    }

    fn num(&mut self, k: &str, v: impl std::fmt::Display) {
        let o = self.key(k);
        let _ = write!(o, "{v}");
    }

    /// A value written by `f` as it is (an object or an array).
    fn raw(&mut self, k: &str, f: impl FnOnce(&mut String)) {
        f(self.key(k));
    }

    fn close(self) {
        self.out.push('}');
    }
}

/// `v` as a JSON string.
fn escape(out: &mut String, v: &str) {
    out.push('"');
    for c in v.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn list<T>(
    out: &mut String,
    items: impl IntoIterator<Item = T>,
    mut f: impl FnMut(&mut String, T),
) {
    out.push('[');
    for (i, x) in items.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        f(out, x);
    }
    out.push(']');
}

/// The whole event, versioned. Field names are stable; new ones may be
/// added within a version. Members are in the order of their names.
fn to_json(ev: &Event) -> String {
    let mut s = String::with_capacity(256 + ev.addrs.len() * 96);
    let mut o = Obj::open(&mut s);
    o.raw("addresses", |out| {
        list(out, &ev.addrs, |out, a| {
            let mut x = Obj::open(out);
            let _ = write!(x.key("address"), "\"{}\"", a.ip);
            x.str("family", family_name(if a.ip.is_ipv4() { 2 } else { 10 }));
            x.num("flags", a.flags);
            x.num("prefixlen", a.prefix);
            x.str("scope", scope_name(a.scope));
            x.close();
        })
    });
    o.str("backend", ev.origin.as_str());
    #[cfg(feature = "dhclient")]
    if let Some(l) = &ev.lease {
        o.raw("dhcp", |out| lease_json(out, l));
    }
    o.str("event", ev.kind.as_str());
    o.num("id", ev.id);
    o.num("ifindex", ev.index);
    o.opt_str("kind", ev.link_kind.as_deref());
    o.str("link", &String::from_utf8_lossy(&ev.name));
    o.str("mac", &mac_str(&ev.mac));
    if let Some(m) = ev.manager() {
        o.raw("manager", |out| manager_json(out, m));
    }
    o.num("mtu", ev.mtu);
    o.str("operstate", ev.state.as_str());
    if let Some(p) = &ev.policy {
        o.raw("policy", |out| {
            let mut x = Obj::open(out);
            x.raw("gateways", |out| {
                list(out, &p.gateways, |out, g| {
                    let _ = write!(out, "\"{g}\"");
                })
            });
            x.raw("rules", |out| {
                list(out, p.rules.iter(), |out, r| escape(out, r))
            });
            x.num("table", p.table);
            x.close();
        });
    }
    if let Some(old) = &ev.previous_name {
        o.str("previous_link", &String::from_utf8_lossy(old));
    }
    o.opt_str("previous_state", ev.previous.map(OperState::as_str));
    if let Some(rc) = &ev.route {
        let r = &rc.route;
        o.raw("route", |out| {
            let mut x = Obj::open(out);
            x.str("action", if rc.added { "add" } else { "del" });
            x.str("dst", &route_dst(r));
            x.str("family", family_name(r.family));
            x.opt_str("gateway", r.gateway.map(|g| g.to_string()).as_deref());
            x.num("ifindex", r.oif);
            x.num("metric", r.priority);
            x.opt_str("prefsrc", r.prefsrc.map(|g| g.to_string()).as_deref());
            x.num("protocol", r.protocol);
            x.num("scope", r.scope);
            x.num("table", r.table);
            x.num("type", r.kind);
            x.close();
        });
    }
    o.str("state", ev.dir());
    o.num("time_ms", ev.time_ms);
    o.num("version", JSON_VERSION);
    o.close();
    s
}

/// A lease's members, in the order of their names.
#[cfg(feature = "dhclient")]
fn lease_json(out: &mut String, l: &super::lease::Lease) {
    let mut x = Obj::open(out);
    let _ = write!(x.key("address"), "\"{}\"", l.address);
    x.raw("dns", |out| {
        list(out, &l.dns, |out, a| {
            let _ = write!(out, "\"{a}\"");
        })
    });
    x.opt_str("domain", l.domain.as_deref());
    match l.expires {
        Some(e) => x.num("expires", e),
        None => x.key("expires").push_str("null"),
    }
    x.raw("gateway", |out| {
        list(out, &l.routers, |out, a| {
            let _ = write!(out, "\"{a}\"");
        })
    });
    x.opt_str("hostname", l.hostname.as_deref());
    match l.lease_secs {
        Some(n) => x.num("lease_time", n),
        None => x.key("lease_time").push_str("null"),
    }
    x.opt_str(
        "subnet_mask",
        l.subnet_mask.map(|m| m.to_string()).as_deref(),
    );
    x.close();
}

/// The DHCP_* variables of a lease, with the existing netevd's names and
/// formats: lists separated by spaces, the mask dotted, a variable the
/// lease has no value for left unset. `DHCP_LEASE` is the lease time in
/// seconds.
#[cfg(feature = "dhclient")]
fn lease_env(l: &super::lease::Lease, env: &mut Vec<(&'static str, OsString)>) {
    let join = |v: Vec<String>| OsString::from(v.join(" "));
    env.push(("DHCP_ADDRESS", OsString::from(l.address.to_string())));
    if let Some(m) = l.subnet_mask {
        env.push(("DHCP_SUBNET_MASK", OsString::from(m.to_string())));
    }
    if !l.routers.is_empty() {
        env.push((
            "DHCP_GATEWAY",
            join(l.routers.iter().map(|r| r.to_string()).collect()),
        ));
    }
    if !l.dns.is_empty() {
        env.push((
            "DHCP_DNS",
            join(l.dns.iter().map(|r| r.to_string()).collect()),
        ));
    }
    if let Some(d) = &l.domain {
        env.push(("DHCP_DOMAIN", OsString::from(d)));
    }
    if let Some(h) = &l.hostname {
        env.push(("DHCP_HOSTNAME", OsString::from(h)));
    }
    if let Some(n) = l.lease_secs {
        env.push(("DHCP_LEASE", OsString::from(n.to_string())));
    }
}

/// A manager's report, members in name order; empty states are null.
fn manager_json(out: &mut String, m: &ManagerView) {
    let strs = |out: &mut String, v: &[String]| list(out, v, |out, x| escape(out, x));
    let r = &m.report;
    let mut x = Obj::open(out);
    let opt = |s: &'static str| (!s.is_empty()).then_some(s);
    x.opt_str("address_state", opt(r.address));
    x.opt_str("admin_state", opt(r.admin));
    x.opt_str("carrier_state", opt(r.carrier));
    if !m.connection_uuid.is_empty() {
        x.str("connection_id", &m.connection_id);
        x.str("connection_uuid", &m.connection_uuid);
    }
    x.opt_str("device_state", opt(r.device));
    x.raw("dns", |o| strs(o, &m.dns));
    x.raw("domains", |o| strs(o, &m.domains));
    x.raw("gateways", |out| {
        list(out, &m.gateways, |out, g| {
            let _ = write!(out, "\"{g}\"");
        })
    });
    x.opt_str("hostname", opt_string(&m.hostname));
    if !r.device.is_empty() {
        x.raw("ip4", |o| strs(o, &m.ip4));
        x.raw("ip6", |o| strs(o, &m.ip6));
    }
    x.opt_str("ipv4_address_state", opt(r.ipv4_address));
    x.opt_str("ipv6_address_state", opt(r.ipv6_address));
    x.opt_str("online_state", opt(r.online));
    x.opt_str("oper_state", opt(r.oper));
    x.opt_str("previous_state", m.previous);
    if !r.device.is_empty() {
        x.num("reason", r.reason);
    }
    x.close();
}

fn opt_string(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

/// What one hook run adds to its event.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunInfo {
    /// The state this link's hooks last saw (older than the event's own
    /// `previous` when events were folded together while hooks ran).
    pub previous: Option<OperState>,
    /// Events folded into this run's event while the link was busy.
    pub coalesced: u32,
}

/// Largest `JSON` passed in the environment. The kernel refuses an exec
/// whose environment holds any one string over 128 KiB (MAX_ARG_STRLEN),
/// which a link with about 1,500 addresses reaches; a larger JSON is
/// passed in a sealed memory file on descriptor [`JSON_FD`] instead, named
/// by `JSON_FILE`, and `JSON` is empty.
pub const JSON_ENV_MAX: usize = 64 * 1024;

/// Largest value of any other variable. Lists (`ADDRESSES`,
/// `POLICY_RULES`) are cut after the last whole item that fits, anything
/// else at this many bytes, and the variable is named in `TRUNCATED`. With
/// `JSON` at most [`JSON_ENV_MAX`] the whole environment stays under the
/// kernel's smallest limit for all of it (128 KiB).
pub const VALUE_MAX: usize = 16 * 1024;

/// The descriptor on which a hook inherits a JSON too large for `JSON`.
pub const JSON_FD: i32 = 3;

/// Whether this event's JSON goes to the hook in a file rather than in
/// `JSON`.
pub fn json_in_file(json: &str) -> bool {
    json.len() > JSON_ENV_MAX
}

/// `items` joined by `sep`, as many whole items as fit in [`VALUE_MAX`]
/// bytes; true when some were left out.
fn bounded_list<I: IntoIterator<Item = String>>(items: I, sep: &str) -> (String, bool) {
    let mut out = String::new();
    for item in items {
        let extra = if out.is_empty() { 0 } else { sep.len() };
        if out.len() + extra + item.len() > VALUE_MAX {
            return (out, true);
        }
        if extra > 0 {
            out.push_str(sep);
        }
        out.push_str(&item);
    }
    (out, false)
}

/// NetworkManager-dispatcher's numbered address variables, IPv4 and IPv6;
/// the first 16 addresses of each are given.
const ADDRESS_N: [(&str, &str); 16] = [
    ("IP4_ADDRESS_0", "IP6_ADDRESS_0"),
    ("IP4_ADDRESS_1", "IP6_ADDRESS_1"),
    ("IP4_ADDRESS_2", "IP6_ADDRESS_2"),
    ("IP4_ADDRESS_3", "IP6_ADDRESS_3"),
    ("IP4_ADDRESS_4", "IP6_ADDRESS_4"),
    ("IP4_ADDRESS_5", "IP6_ADDRESS_5"),
    ("IP4_ADDRESS_6", "IP6_ADDRESS_6"),
    ("IP4_ADDRESS_7", "IP6_ADDRESS_7"),
    ("IP4_ADDRESS_8", "IP6_ADDRESS_8"),
    ("IP4_ADDRESS_9", "IP6_ADDRESS_9"),
    ("IP4_ADDRESS_10", "IP6_ADDRESS_10"),
    ("IP4_ADDRESS_11", "IP6_ADDRESS_11"),
    ("IP4_ADDRESS_12", "IP6_ADDRESS_12"),
    ("IP4_ADDRESS_13", "IP6_ADDRESS_13"),
    ("IP4_ADDRESS_14", "IP6_ADDRESS_14"),
    ("IP4_ADDRESS_15", "IP6_ADDRESS_15"),
];

/// The hook's whole environment. It starts empty: nothing of the daemon's
/// own environment leaks into hooks but `PATH`. Values go through as
/// bytes, unquoted and unfiltered; no shell ever sees them. Their size is
/// bounded (see [`VALUE_MAX`], [`JSON_ENV_MAX`]) so that no event is too
/// large to run its hooks; what was cut is named in `TRUNCATED`, and the
/// JSON, which is never cut, says everything.
pub fn environment(ev: &Event, run: &RunInfo) -> Vec<(&'static str, OsString)> {
    let json = ev.json();
    let s = |v: String| OsString::from(v);
    let mut truncated: Vec<&'static str> = Vec::new();
    let (addresses, cut) = bounded_list(ev.addrs.iter().map(|a| a.ip.to_string()), " ");
    if cut {
        truncated.push("ADDRESSES");
    }
    let mut env = vec![
        (
            "PATH",
            s("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()),
        ),
        ("LINK", OsString::from_vec(ev.name.clone())),
        ("LINKINDEX", s(ev.index.to_string())),
        ("STATE", s(ev.dir().into())),
        ("OPERSTATE", s(ev.state.as_str().into())),
        (
            "PREVIOUS_STATE",
            s(run.previous.map(OperState::as_str).unwrap_or("").into()),
        ),
        ("COALESCED", s(run.coalesced.to_string())),
        ("EVENT", s(ev.kind.as_str().into())),
        ("EVENT_ID", s(ev.id.to_string())),
        ("BACKEND", s(ev.origin.as_str().into())),
        ("ADDRESSES", s(addresses)),
    ];
    if let Some(old) = &ev.previous_name {
        env.push(("PREVIOUS_LINK", OsString::from_vec(old.clone())));
    }
    // The existing netevd's `emit_json`: networkd's own description of
    // the link, which its users' hooks parse, in place of netevd's event.
    let describe = ev.manager().and_then(|m| m.describe.as_deref());
    if let Some(d) = describe.filter(|d| !json_in_file(d)) {
        env.push(("JSON", s(d.into())));
    } else if json_in_file(json) {
        env.push(("JSON", OsString::new()));
        env.push(("JSON_FILE", s(format!("/dev/fd/{JSON_FD}"))));
    } else {
        env.push(("JSON", s(json.into())));
    }
    if let Some(m) = ev.manager() {
        manager_env(ev, m, &mut env);
    }
    if let Some(p) = &ev.policy {
        env.push(("POLICY_TABLE", s(p.table.to_string())));
        let (rules, cut) = bounded_list(p.rules.iter().cloned(), ", ");
        if cut {
            truncated.push("POLICY_RULES");
        }
        env.push(("POLICY_RULES", s(rules)));
    }
    if let Some(rc) = &ev.route {
        let r = &rc.route;
        env.push((
            "ROUTE_ACTION",
            s(if rc.added { "add" } else { "del" }.into()),
        ));
        env.push(("ROUTE_FAMILY", s(family_name(r.family).into())));
        env.push(("ROUTE_DST", s(route_dst(r))));
        env.push((
            "ROUTE_GATEWAY",
            s(r.gateway.map(|g| g.to_string()).unwrap_or_default()),
        ));
        env.push(("ROUTE_TABLE", s(r.table.to_string())));
        env.push(("ROUTE_METRIC", s(r.priority.to_string())));
    }
    #[cfg(feature = "dhclient")]
    if let Some(l) = &ev.lease {
        lease_env(l, &mut env);
    }
    // Whatever else grows one day is bounded too.
    for (k, v) in env.iter_mut() {
        if *k != "JSON" && v.len() > VALUE_MAX {
            let mut b = std::mem::take(v).into_vec();
            b.truncate(VALUE_MAX);
            *v = OsString::from_vec(b);
            truncated.push(k);
        }
    }
    if !truncated.is_empty() {
        env.push(("TRUNCATED", s(truncated.join(" "))));
    }
    env
}

/// The existing netevd's variables for a manager's event: networkd's
/// states by its own names, NetworkManager's device and connection.
fn manager_env(ev: &Event, m: &ManagerView, env: &mut Vec<(&'static str, OsString)>) {
    let s = |v: &str| OsString::from(v);
    let r = &m.report;
    if let Some(p) = m.previous {
        for (k, v) in env.iter_mut() {
            if *k == "PREVIOUS_STATE" {
                *v = s(p);
            }
        }
    }
    let gateways = m
        .gateways
        .iter()
        .map(|g| g.to_string())
        .collect::<Vec<_>>()
        .join(" ");
    if r.device.is_empty() {
        env.push(("OPER_STATE", s(r.oper)));
        env.push(("CARRIER_STATE", s(r.carrier)));
        env.push(("ADDRESS_STATE", s(r.address)));
        env.push(("IPV4_ADDRESS_STATE", s(r.ipv4_address)));
        env.push(("IPV6_ADDRESS_STATE", s(r.ipv6_address)));
        env.push(("ONLINE_STATE", s(r.online)));
        env.push(("ADMIN_STATE", s(r.admin)));
        env.push(("DNS", s(&m.dns.join(" "))));
        env.push(("DOMAINS", s(&m.domains.join(" "))));
        env.push(("GATEWAY", s(&gateways)));
        env.push(("HOSTNAME", s(&m.hostname)));
        // networkd-dispatcher's own names, so that its scripts run
        // unchanged (`backends.systemd_networkd.networkd_dispatcher_dir`).
        let ips = |v4: bool| {
            ev.addrs
                .iter()
                .filter(|a| a.ip.is_ipv4() == v4)
                .map(|a| a.ip.to_string())
                .collect::<Vec<_>>()
                .join(" ")
        };
        env.push(("IFACE", OsString::from_vec(ev.name.clone())));
        env.push(("AdministrativeState", s(r.admin)));
        env.push(("OperationalState", s(r.oper)));
        // Wireless networks are not read from networkd.
        env.push(("ESSID", OsString::new()));
        env.push(("IP_ADDRS", s(&ips(true))));
        env.push(("IP6_ADDRS", s(&ips(false))));
        env.push((
            "json",
            s(m.describe.as_deref().unwrap_or_else(|| ev.json())),
        ));
    } else {
        env.push(("DEVICE_STATE", s(r.device)));
        env.push(("DEVICE_STATE_REASON", s(&r.reason.to_string())));
        env.push(("CONNECTION_ID", s(&m.connection_id)));
        env.push(("CONNECTION_UUID", s(&m.connection_uuid)));
        env.push(("IP4_ADDRESSES", s(&m.ip4.join(" "))));
        env.push(("IP6_ADDRESSES", s(&m.ip6.join(" "))));
        env.push(("IP4_GATEWAY", s(&m.ip4_gateway)));
        env.push(("IP6_GATEWAY", s(&m.ip6_gateway)));
        env.push(("DNS", s(&m.dns.join(" "))));
        env.push(("GATEWAY", s(&gateways)));
        // NetworkManager-dispatcher's own names, so that its scripts run
        // unchanged (`backends.networkmanager.dispatcher_dir`).
        env.push((
            "NM_DISPATCHER_ACTION",
            s(nm_dispatcher_action(ev).unwrap_or("")),
        ));
        env.push(("DEVICE_IFACE", OsString::from_vec(ev.name.clone())));
        env.push(("DEVICE_IP_IFACE", OsString::from_vec(ev.name.clone())));
        let servers = |v4: bool| {
            m.dns
                .iter()
                .filter(|d| {
                    d.parse::<std::net::IpAddr>()
                        .is_ok_and(|a| a.is_ipv4() == v4)
                })
                .cloned()
                .collect::<Vec<_>>()
                .join(" ")
        };
        env.push(("IP4_NAMESERVERS", s(&servers(true))));
        env.push(("IP6_NAMESERVERS", s(&servers(false))));
        env.push((
            "IP4_NUM_ADDRESSES",
            s(&m.ip4.len().min(ADDRESS_N.len()).to_string()),
        ));
        env.push((
            "IP6_NUM_ADDRESSES",
            s(&m.ip6.len().min(ADDRESS_N.len()).to_string()),
        ));
        for (i, a) in m.ip4.iter().take(ADDRESS_N.len()).enumerate() {
            env.push((ADDRESS_N[i].0, s(&format!("{a} {}", m.ip4_gateway))));
        }
        for (i, a) in m.ip6.iter().take(ADDRESS_N.len()).enumerate() {
            env.push((ADDRESS_N[i].1, s(&format!("{a} {}", m.ip6_gateway))));
        }
    }
}

/// The action NetworkManager-dispatcher would run its scripts with for a
/// NetworkManager event: `up` when the device is activated, `pre-down` as
/// it deactivates, `down` when it is disconnected after either; None for
/// the states on the way.
pub fn nm_dispatcher_action(ev: &Event) -> Option<&'static str> {
    let m = ev.manager()?;
    if m.report.device.is_empty() {
        return None;
    }
    match (m.dir, m.previous) {
        ("activated", _) => Some("up"),
        ("deactivating", _) => Some("pre-down"),
        ("disconnected", Some("activated" | "deactivating")) => Some("down"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStrExt;

    fn ev() -> Event {
        Event {
            addrs: vec![
                AddrInfo {
                    index: 3,
                    ip: "192.0.2.10".parse().unwrap(),
                    prefix: 24,
                    scope: 0,
                    flags: 0,
                    valid_lft: u32::MAX,
                    preferred_lft: u32::MAX,
                },
                AddrInfo {
                    index: 3,
                    ip: "2001:db8::1".parse().unwrap(),
                    prefix: 64,
                    scope: 0,
                    flags: 0x80,
                    valid_lft: u32::MAX,
                    preferred_lft: u32::MAX,
                },
            ],
            mtu: 1500,
            mac: vec![2, 0, 0, 0, 0, 0x1a],
            link_kind: Some("veth".into()),
            ..Event::new(
                7,
                1_000,
                Kind::State,
                Origin::Kernel,
                3,
                b"e$(id>q)".to_vec(),
                OperState::Routable,
                Some(OperState::Carrier),
            )
        }
    }

    const RUN: RunInfo = RunInfo {
        previous: Some(OperState::Carrier),
        coalesced: 0,
    };

    fn get<'a>(env: &'a [(&str, OsString)], k: &str) -> &'a [u8] {
        env.iter().find(|(n, _)| *n == k).unwrap().1.as_bytes()
    }

    #[test]
    #[cfg(feature = "dbus")]
    fn a_managers_event_carries_its_states() {
        let mut e = ev();
        e.origin = Origin::Networkd;
        e.manager = Some(Box::new(ManagerView {
            dir: "configured",
            previous: Some("configuring"),
            report: Report {
                oper: "routable",
                carrier: "carrier",
                address: "routable",
                online: "online",
                admin: "configured",
                ..Report::default()
            },
            dns: vec!["192.0.2.53".into(), "2001:db8::53".into()],
            domains: vec!["example.test".into()],
            gateways: vec!["192.0.2.1".parse().unwrap()],
            ..ManagerView::default()
        }));
        let e = e.seal(None);
        assert_eq!(e.dir(), "configured");
        let env = environment(&e, &RUN);
        assert_eq!(get(&env, "STATE"), b"configured");
        assert_eq!(get(&env, "BACKEND"), b"systemd-networkd");
        assert_eq!(get(&env, "OPER_STATE"), b"routable");
        assert_eq!(get(&env, "CARRIER_STATE"), b"carrier");
        assert_eq!(get(&env, "ADDRESS_STATE"), b"routable");
        assert_eq!(get(&env, "ONLINE_STATE"), b"online");
        assert_eq!(get(&env, "ADMIN_STATE"), b"configured");
        assert_eq!(get(&env, "PREVIOUS_STATE"), b"configuring");
        assert_eq!(get(&env, "DNS"), b"192.0.2.53 2001:db8::53");
        assert_eq!(get(&env, "DOMAINS"), b"example.test");
        assert_eq!(get(&env, "GATEWAY"), b"192.0.2.1");
        assert_eq!(get(&env, "HOSTNAME"), b"");
        let v: Value = serde_json::from_str(e.json()).unwrap();
        assert_eq!(v["backend"], "systemd-networkd");
        assert_eq!(v["state"], "configured");
        assert_eq!(v["manager"]["oper_state"], "routable");
        assert_eq!(v["manager"]["dns"][1], "2001:db8::53");
        assert_eq!(v["manager"]["hostname"], Value::Null);
        // With Describe's JSON, hooks get networkd's own.
        let mut d = ev();
        d.manager = Some(Box::new(ManagerView {
            dir: "routable",
            describe: Some("{\"Index\":3}".into()),
            ..ManagerView::default()
        }));
        let d = d.seal(None);
        assert_eq!(get(&environment(&d, &RUN), "JSON"), b"{\"Index\":3}");
    }

    #[test]
    fn environment_is_verbatim() {
        let e = ev().seal(None);
        let env = environment(&e, &RUN);
        assert_eq!(get(&env, "LINK"), b"e$(id>q)");
        assert_eq!(get(&env, "LINKINDEX"), b"3");
        assert_eq!(get(&env, "STATE"), b"routable");
        assert_eq!(get(&env, "PREVIOUS_STATE"), b"carrier");
        assert!(
            env.iter().all(|(k, _)| *k != "PREVIOUS_LINK"),
            "not renamed"
        );
        let mut renamed = ev();
        renamed.previous_name = Some(b"eth\xff0".to_vec());
        let env = environment(&renamed.seal(None), &RUN);
        assert_eq!(get(&env, "PREVIOUS_LINK"), b"eth\xff0");
        assert_eq!(get(&env, "COALESCED"), b"0");
        assert_eq!(get(&env, "EVENT"), b"state");
        assert_eq!(get(&env, "EVENT_ID"), b"7");
        assert_eq!(get(&env, "BACKEND"), b"kernel");
        assert_eq!(get(&env, "ADDRESSES"), b"192.0.2.10 2001:db8::1");
        assert!(env
            .iter()
            .all(|(k, _)| !k.starts_with("ROUTE_") && !k.starts_with("POLICY_")));
    }

    #[test]
    fn policy_view() {
        let e = ev().seal(Some(PolicyView {
            table: 1003,
            rules: vec![
                "10000: from 192.0.2.10/32 lookup 1003".into(),
                "10001: to 192.0.2.10/32 lookup 1003".into(),
            ]
            .into(),
            gateways: vec!["192.0.2.1".parse().unwrap()],
        }));
        let env = environment(&e, &RUN);
        let json = e.json();
        assert_eq!(get(&env, "POLICY_TABLE"), b"1003");
        assert_eq!(
            get(&env, "POLICY_RULES"),
            b"10000: from 192.0.2.10/32 lookup 1003, 10001: to 192.0.2.10/32 lookup 1003"
        );
        let v: Value = serde_json::from_str(json).unwrap();
        assert_eq!(v["policy"]["table"], 1003);
        assert_eq!(v["policy"]["gateways"][0], "192.0.2.1");
        assert_eq!(
            v["policy"]["rules"][1],
            "10001: to 192.0.2.10/32 lookup 1003"
        );
    }

    #[test]
    fn non_utf8_name_reaches_env_exactly() {
        let mut e = ev();
        e.name = vec![b'e', 0xff, b'x'];
        let env = environment(&e.seal(None), &RUN);
        assert_eq!(get(&env, "LINK"), &[b'e', 0xff, b'x']);
    }

    fn many_addrs(n: u32) -> Vec<AddrInfo> {
        (0..n)
            .map(|i| AddrInfo {
                index: 3,
                ip: std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, (i >> 16) as u16, i as u16)
                    .into(),
                prefix: 128,
                scope: 0,
                flags: 0x80,
                valid_lft: u32::MAX,
                preferred_lft: u32::MAX,
            })
            .collect()
    }

    #[test]
    fn small_events_need_no_file_and_cut_nothing() {
        let e = ev().seal(None);
        let json = e.json();
        assert!(!json_in_file(json));
        let env = environment(&e, &RUN);
        assert_eq!(get(&env, "JSON"), json.as_bytes());
        assert!(env
            .iter()
            .all(|(k, _)| *k != "JSON_FILE" && *k != "TRUNCATED"));
    }

    #[test]
    fn large_events_are_bounded_and_the_json_goes_to_a_file() {
        let mut e = ev();
        e.addrs = many_addrs(2000);
        let e = e.seal(Some(PolicyView {
            table: 1003,
            rules: (0..2000)
                .map(|i| format!("{}: from 2001:db8::{i:x}/128 lookup 1003", 10000 + i))
                .collect(),
            gateways: vec![],
        }));
        let json = e.json();
        assert!(json.len() > JSON_ENV_MAX && json_in_file(json));
        let env = environment(&e, &RUN);
        assert_eq!(get(&env, "JSON"), b"");
        assert_eq!(get(&env, "JSON_FILE"), b"/dev/fd/3");
        assert_eq!(get(&env, "TRUNCATED"), b"ADDRESSES POLICY_RULES");
        let addrs = std::str::from_utf8(get(&env, "ADDRESSES")).unwrap();
        assert!(addrs.len() <= VALUE_MAX && addrs.len() > VALUE_MAX - 40);
        // whole addresses only, in order
        let listed: Vec<&str> = addrs.split(' ').collect();
        for (i, a) in listed.iter().enumerate() {
            assert_eq!(*a, e.addrs[i].ip.to_string());
        }
        let rules = std::str::from_utf8(get(&env, "POLICY_RULES")).unwrap();
        assert!(rules.len() <= VALUE_MAX);
        assert!(
            rules.ends_with("lookup 1003"),
            "{}",
            &rules[rules.len() - 30..]
        );
        // the kernel's limit for the whole environment is never reached
        let total: usize = env.iter().map(|(k, v)| k.len() + v.len() + 2).sum();
        assert!(total < 128 * 1024, "{total}");
    }

    #[test]
    fn a_list_that_just_fits_is_not_cut() {
        let (l, cut) = bounded_list(["a".repeat(VALUE_MAX)], " ");
        assert!(!cut && l.len() == VALUE_MAX);
        let (l, cut) = bounded_list(["a".repeat(VALUE_MAX - 2), "b".into()], " ");
        assert!(!cut && l.len() == VALUE_MAX);
        let (l, cut) = bounded_list(["a".repeat(VALUE_MAX - 1), "b".into()], " ");
        assert!(cut && l.len() == VALUE_MAX - 1);
    }

    #[test]
    fn json_fields() {
        let v: Value = serde_json::from_str(ev().seal(None).json()).unwrap();
        assert_eq!(v["version"], JSON_VERSION);
        assert!(v.get("coalesced").is_none(), "the run's, not the event's");
        assert_eq!(v["link"], "e$(id>q)");
        assert_eq!(v["state"], "routable");
        assert_eq!(v["previous_state"], "carrier");
        assert_eq!(v["addresses"][1]["address"], "2001:db8::1");
        assert_eq!(v["addresses"][1]["family"], "inet6");
        assert_eq!(v["addresses"][0]["prefixlen"], 24);
        assert_eq!(v["mac"], "02:00:00:00:00:1a");
    }

    #[test]
    fn route_event() {
        let mut e = ev();
        e.kind = Kind::Routes;
        e.route = Some(RouteChange {
            added: false,
            route: RouteInfo {
                family: 2,
                table: 254,
                dst: None,
                dst_len: 0,
                src: None,
                src_len: 0,
                tos: 0,
                priority: 0,
                protocol: 3,
                scope: 0,
                kind: 1,
                oif: 3,
                gateway: Some("192.0.2.1".parse().unwrap()),
                prefsrc: None,
            },
        });
        let e = e.seal(None);
        let env = environment(&e, &RUN);
        let json = e.json();
        assert_eq!(get(&env, "STATE"), b"routes");
        assert_eq!(get(&env, "OPERSTATE"), b"routable");
        assert_eq!(get(&env, "ROUTE_ACTION"), b"del");
        assert_eq!(get(&env, "ROUTE_DST"), b"default");
        assert_eq!(get(&env, "ROUTE_GATEWAY"), b"192.0.2.1");
        let v: Value = serde_json::from_str(json).unwrap();
        assert_eq!(v["route"]["action"], "del");
        assert_eq!(v["route"]["table"], 254);
    }

    #[test]
    #[cfg(feature = "dhclient")]
    fn lease_event_environment_and_json() {
        let mut e = ev();
        e.kind = Kind::Lease;
        e.origin = Origin::Dhclient;
        e.state = OperState::Degraded;
        e.lease = Some(Box::new(crate::core::lease::Lease {
            interface: b"e0".to_vec(),
            subnet_mask: Some("255.255.255.0".parse().unwrap()),
            routers: vec!["192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap()],
            dns: vec!["192.0.2.53".parse().unwrap(), "192.0.2.54".parse().unwrap()],
            domain: Some("example.test".into()),
            hostname: Some("h1".into()),
            lease_secs: Some(120),
            expires: Some(1795771771),
            ..crate::core::lease::Lease::empty("192.0.2.116".parse().unwrap())
        }));
        let e = e.seal(None);
        let env = environment(&e, &RUN);
        assert_eq!(get(&env, "STATE"), b"routable");
        assert_eq!(get(&env, "OPERSTATE"), b"degraded");
        assert_eq!(get(&env, "BACKEND"), b"dhclient");
        assert_eq!(get(&env, "EVENT"), b"lease");
        assert_eq!(get(&env, "DHCP_ADDRESS"), b"192.0.2.116");
        assert_eq!(get(&env, "DHCP_SUBNET_MASK"), b"255.255.255.0");
        assert_eq!(get(&env, "DHCP_GATEWAY"), b"192.0.2.1 192.0.2.2");
        assert_eq!(get(&env, "DHCP_DNS"), b"192.0.2.53 192.0.2.54");
        assert_eq!(get(&env, "DHCP_DOMAIN"), b"example.test");
        assert_eq!(get(&env, "DHCP_HOSTNAME"), b"h1");
        assert_eq!(get(&env, "DHCP_LEASE"), b"120");
        let v: Value = serde_json::from_str(e.json()).unwrap();
        assert_eq!(v["backend"], "dhclient");
        assert_eq!(v["state"], "routable");
        assert_eq!(v["dhcp"]["gateway"][1], "192.0.2.2");
        assert_eq!(v["dhcp"]["lease_time"], 120);
        assert_eq!(e.json(), v.to_string());
        // A lease with nothing but an address sets nothing else.
        let mut bare = ev();
        bare.kind = Kind::Lease;
        bare.lease = Some(Box::new(crate::core::lease::Lease::empty(
            "2001:db8::7".parse().unwrap(),
        )));
        let env = environment(&bare.seal(None), &RUN);
        let dhcp: Vec<&str> = env
            .iter()
            .map(|(k, _)| *k)
            .filter(|k| k.starts_with("DHCP_"))
            .collect();
        assert_eq!(dhcp, ["DHCP_ADDRESS"]);
    }

    #[test]
    fn json_escapes_and_parses_back() {
        let mut e = ev();
        e.name = b"q\"\\\n\r\t\x01\xffz".to_vec();
        e.link_kind = None;
        e.route = Some(RouteChange {
            added: true,
            route: RouteInfo {
                dst: Some("198.51.100.0".parse().unwrap()),
                dst_len: 24,
                gateway: Some("192.0.2.1".parse().unwrap()),
                ..RouteInfo::table_start(2, 254)
            },
        });
        let e = e.seal(Some(PolicyView {
            table: 7,
            rules: vec!["10000: from \"x\"".to_string()].into(),
            gateways: vec!["2001:db8::1".parse().unwrap()],
        }));
        let v: Value = serde_json::from_str(e.json()).unwrap();
        assert_eq!(v["link"], "q\"\\\n\r\t\u{1}\u{fffd}z");
        assert_eq!(v["kind"], Value::Null);
        assert_eq!(v["route"]["dst"], "198.51.100.0/24");
        assert_eq!(v["route"]["gateway"], "192.0.2.1");
        assert_eq!(v["route"]["prefsrc"], Value::Null);
        assert_eq!(v["route"]["action"], "add");
        assert_eq!(v["policy"]["rules"][0], "10000: from \"x\"");
        assert_eq!(v["policy"]["gateways"][0], "2001:db8::1");
        assert_eq!(v["addresses"].as_array().unwrap().len(), 2);
        assert_eq!(v["addresses"][1]["scope"], "global");
        // Members in the order of their names, as serde_json writes maps.
        assert_eq!(e.json(), v.to_string());
    }
}
