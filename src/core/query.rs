//! Answers to the control socket's queries, built from the core's own
//! state: the mirror of the kernel's tables and policy routing's plan.
//! Pure: borrowed state in, JSON values out (the shapes netevctl(1)
//! documents and ctl/src/lib.rs lists). No copies of the model are kept.

use std::net::IpAddr;

use netevd_ctl::LinkRef;
use serde_json::Value;

use super::event::{mac_str, route_json};
use super::model::{Core, Link};
use super::policy::{rule_text, Plan};
use super::types::*;

const LINK_FLAGS: [(u32, &str); 19] = [
    (0x1, "UP"),
    (0x2, "BROADCAST"),
    (0x4, "DEBUG"),
    (0x8, "LOOPBACK"),
    (0x10, "POINTOPOINT"),
    (0x20, "NOTRAILERS"),
    (0x40, "RUNNING"),
    (0x80, "NOARP"),
    (0x100, "PROMISC"),
    (0x200, "ALLMULTI"),
    (0x400, "MASTER"),
    (0x800, "SLAVE"),
    (0x1000, "MULTICAST"),
    (0x2000, "PORTSEL"),
    (0x4000, "AUTOMEDIA"),
    (0x8000, "DYNAMIC"),
    (0x1_0000, "LOWER_UP"),
    (0x2_0000, "DORMANT"),
    (0x4_0000, "ECHO"),
];

const ADDR_FLAGS: [(u32, &str); 12] = [
    (0x01, "secondary"),
    (0x02, "nodad"),
    (0x04, "optimistic"),
    (0x08, "dadfailed"),
    (0x10, "homeaddress"),
    (0x20, "deprecated"),
    (0x40, "tentative"),
    (0x80, "permanent"),
    (0x100, "mngtmpaddr"),
    (0x200, "noprefixroute"),
    (0x400, "autojoin"),
    (0x800, "stable-privacy"),
];

fn flag_names(v: u32, table: &[(u32, &'static str)]) -> Vec<&'static str> {
    table
        .iter()
        .filter(|(b, _)| v & b != 0)
        .map(|(_, n)| *n)
        .collect()
}

/// RFC 2863 operational status as `ip link` spells it.
pub fn operstate_name(o: u8) -> &'static str {
    match o {
        1 => "NOTPRESENT",
        2 => "DOWN",
        3 => "LOWERLAYERDOWN",
        4 => "TESTING",
        5 => "DORMANT",
        6 => "UP",
        _ => "UNKNOWN",
    }
}

fn prefix(ip: Option<IpAddr>, len: u8) -> Value {
    match ip {
        Some(ip) => Value::from(format!("{ip}/{len}")),
        None if len == 0 => Value::from("all"),
        None => Value::Null,
    }
}

/// Finds a link by name or index.
pub fn find<'a>(core: &'a Core, r: &LinkRef) -> Option<&'a Link> {
    match r {
        LinkRef::Name(n) => core.link_by_name(n.as_bytes()),
        LinkRef::Index(i) => core.link(*i),
    }
}

/// Seconds as of the last kernel message; null for forever.
fn lifetime(v: u32) -> Value {
    if v == u32::MAX {
        Value::Null
    } else {
        Value::from(v)
    }
}

/// A JSON object from its members. `json!` expands each member into its
/// own `to_value(..).unwrap()` and key allocation at the call site; this
/// is one loop for every object the queries build (the smaller binary).
pub fn obj(members: &mut [(&str, Value)]) -> Value {
    let mut m = serde_json::Map::new();
    for (k, v) in members {
        m.insert(k.to_string(), v.take());
    }
    Value::Object(m)
}

/// One interface, as `interfaces` and `interface` report it.
pub fn interface(l: &Link, plan: &Plan) -> Value {
    let addrs: Vec<Value> = l
        .addrs
        .values()
        .map(|a| {
            obj(&mut [
                ("address", Value::from(a.ip.to_string())),
                ("prefixlen", Value::from(a.prefix)),
                (
                    "family",
                    Value::from(if a.ip.is_ipv4() { "inet" } else { "inet6" }),
                ),
                ("scope", Value::from(scope_name(a.scope))),
                ("flags", Value::from(flag_names(a.flags, &ADDR_FLAGS))),
                ("valid_lft", lifetime(a.valid_lft)),
                ("preferred_lft", lifetime(a.preferred_lft)),
            ])
        })
        .collect();
    let policy = plan.link(l.info.index).map(|p| {
        obj(&mut [
            ("table", Value::from(p.table)),
            ("rules", Value::from(&*p.rule_strings())),
            (
                "gateways",
                Value::from(p.gateways.iter().map(|g| g.to_string()).collect::<Vec<_>>()),
            ),
        ])
    });
    obj(&mut [
        ("index", Value::from(l.info.index)),
        ("name", Value::from(String::from_utf8_lossy(&l.info.name))),
        ("kind", Value::from(l.info.kind.as_deref())),
        ("state", Value::from(l.state().as_str())),
        ("operstate", Value::from(operstate_name(l.info.operstate))),
        ("mac", Value::from(mac_str(&l.info.mac))),
        ("mtu", Value::from(l.info.mtu)),
        ("flags", Value::from(flag_names(l.info.flags, &LINK_FLAGS))),
        ("addresses", Value::from(addrs)),
        ("policy", Value::from(policy)),
    ])
}

pub fn interfaces(core: &Core, plan: &Plan) -> Value {
    let v: Vec<Value> = core.links().map(|l| interface(l, plan)).collect();
    obj(&mut [("interfaces", Value::from(v))])
}

fn route(core: &Core, r: &RouteInfo) -> Value {
    let mut v = route_json(r);
    v["link"] = core
        .link(r.oif)
        .map(|l| Value::from(String::from_utf8_lossy(&l.info.name).into_owned()))
        .unwrap_or(Value::Null);
    v
}

/// One interface with its routes.
pub fn interface_detail(core: &Core, plan: &Plan, l: &Link) -> Value {
    let mut v = interface(l, plan);
    let index = l.info.index;
    v["routes"] = core
        .routes()
        .iter()
        .filter(|r| r.oif == index)
        .map(|r| route(core, &r))
        .collect();
    obj(&mut [("interface", v)])
}

/// The routes that pass every given filter.
pub fn routes(core: &Core, table: Option<u32>, oif: Option<u32>, family: Option<&str>) -> Value {
    let fam = family.map(|f| if f == "inet" { 2 } else { 10 });
    let v: Vec<Value> = core
        .routes()
        .iter()
        .filter(|r| table.map_or(true, |t| r.table == t))
        .filter(|r| oif.map_or(true, |i| r.oif == i))
        .filter(|r| fam.map_or(true, |f| r.family == f))
        .map(|r| route(core, &r))
        .collect();
    obj(&mut [("routes", Value::from(v))])
}

/// netevd's own rules, or every rule; by priority.
pub fn rules(core: &Core, all: bool) -> Value {
    let mut rs: Vec<&RuleInfo> = core
        .rules()
        .filter(|r| all || r.protocol == RTPROT_NETEVD)
        .collect();
    rs.sort_unstable_by(|a, b| a.priority.cmp(&b.priority).then_with(|| a.cmp(b)));
    let v: Vec<Value> = rs
        .iter()
        .map(|r| {
            obj(&mut [
                ("family", Value::from(family_name(r.family))),
                ("priority", Value::from(r.priority)),
                ("table", Value::from(r.table)),
                ("from", prefix(r.src, r.src_len)),
                ("to", prefix(r.dst, r.dst_len)),
                (
                    "iif",
                    Value::from(
                        (!r.iif.is_empty()).then(|| String::from_utf8_lossy(&r.iif).into_owned()),
                    ),
                ),
                (
                    "oif",
                    Value::from(
                        (!r.oif.is_empty()).then(|| String::from_utf8_lossy(&r.oif).into_owned()),
                    ),
                ),
                ("fwmark", Value::from(r.fwmark)),
                ("protocol", Value::from(r.protocol)),
                ("action", Value::from(r.action)),
                ("own", Value::from(r.protocol == RTPROT_NETEVD)),
                ("text", Value::from(rule_text(r))),
            ])
        })
        .collect();
    obj(&mut [("rules", Value::from(v))])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::event::Event;
    use crate::core::model::Settings;

    fn core() -> Core {
        let mut c = Core::new(Settings::default());
        let mut out: Vec<Event> = Vec::new();
        let up = IFF_UP | IFF_RUNNING | IFF_LOWER_UP;
        for i in [
            Input::ResyncBegin,
            Input::NewLink(LinkInfo {
                index: 2,
                name: IfName::new(b"wan").unwrap(),
                flags: up,
                operstate: 6,
                mtu: 1500,
                kind: LinkKind::new("veth"),
                mac: HwAddr::new(&[2, 0, 0, 0, 0, 2]).unwrap(),
            }),
            Input::NewAddr(AddrInfo {
                index: 2,
                ip: "192.0.2.2".parse().unwrap(),
                prefix: 24,
                scope: 0,
                flags: 0x80,
                valid_lft: u32::MAX,
                preferred_lft: u32::MAX,
            }),
            Input::NewRoute {
                route: RouteInfo {
                    oif: 2,
                    gateway: Some("192.0.2.1".parse().unwrap()),
                    ..RouteInfo::table_start(2, 254)
                },
                replace: false,
            },
            Input::NewRoute {
                route: RouteInfo {
                    oif: 2,
                    dst: Some("fd00::".parse().unwrap()),
                    dst_len: 8,
                    ..RouteInfo::table_start(10, 254)
                },
                replace: false,
            },
            Input::ResyncEnd,
        ] {
            c.apply(i, 0, &mut out);
        }
        c
    }

    #[test]
    fn interface_fields() {
        let c = core();
        let l = find(&c, &LinkRef::Name("wan".into())).unwrap();
        assert_eq!(find(&c, &LinkRef::Index(2)).unwrap().info.index, 2);
        assert!(find(&c, &LinkRef::Name("nope".into())).is_none());
        let v = interface_detail(&c, &Plan::default(), l);
        let i = &v["interface"];
        assert_eq!(i["name"], "wan");
        assert_eq!(i["state"], "routable");
        assert_eq!(i["operstate"], "UP");
        assert_eq!(i["mac"], "02:00:00:00:00:02");
        assert_eq!(i["flags"], serde_json::json!(["UP", "RUNNING", "LOWER_UP"]));
        assert_eq!(i["addresses"][0]["address"], "192.0.2.2");
        assert_eq!(i["addresses"][0]["flags"], serde_json::json!(["permanent"]));
        assert_eq!(i["addresses"][0]["valid_lft"], Value::Null);
        assert_eq!(i["routes"].as_array().unwrap().len(), 2);
        assert_eq!(i["routes"][0]["link"], "wan");
        assert_eq!(i["policy"], Value::Null);
    }

    #[test]
    fn route_filters() {
        let c = core();
        let n = |v: Value| v["routes"].as_array().unwrap().len();
        assert_eq!(n(routes(&c, None, None, None)), 2);
        assert_eq!(n(routes(&c, None, None, Some("inet6"))), 1);
        assert_eq!(n(routes(&c, Some(1000), None, None)), 0);
        assert_eq!(n(routes(&c, Some(254), Some(2), Some("inet"))), 1);
        assert_eq!(n(routes(&c, None, Some(3), None)), 0);
        let r = routes(&c, None, None, Some("inet"));
        assert_eq!(r["routes"][0]["dst"], "default");
        assert_eq!(r["routes"][0]["gateway"], "192.0.2.1");
    }
}
