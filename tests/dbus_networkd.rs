//! netevd against the real systemd-networkd on a private system bus, in a
//! namespace of the test's own: a veth end networkd configures, its states
//! in hooks with networkd's names and variables, a restart of networkd and
//! of the bus itself with no state change lost, and nothing run twice in
//! one directory.

#![cfg(feature = "dbus")]

mod common;
#[path = "common/peers.rs"]
mod peers;

use std::time::Duration;

use common::{Dir, Ns};
use peers::*;

const NETWORK: &str = "[Match]\nName=nd0\n[Network]\nAddress=192.0.2.10/24\nGateway=192.0.2.1\n\
DNS=192.0.2.53\nDomains=example.test\nIPv6AcceptRA=no\nLinkLocalAddressing=no\n";

const STATES: &[&str] = &[
    "no-carrier",
    "carrier",
    "degraded",
    "routable",
    "off",
    "configuring",
    "configured",
    "unmanaged",
    "manager",
    "routes",
];

fn index(ns: &Ns, link: &str) -> u32 {
    let o = ns.output(&["-o", "link", "show", link]);
    o.split(':').next().unwrap().trim().parse().unwrap()
}

fn count(r: &[Vec<String>], backend: &str, state: &str, link: &str) -> usize {
    r.iter().filter(|x| is(x, backend, state, link)).count()
}

/// No change reached one directory twice: two runs in a row of one
/// directory for a link, by the kernel and networkd or by networkd twice,
/// with the same addresses. (The kernel's event for an address that went
/// away while the state stayed is a change of its own.)
fn no_doubles(r: &[Vec<String>], link: &str) {
    let mine: Vec<&Vec<String>> = r
        .iter()
        .filter(|x| x.get(1).map(String::as_str) != Some("routes"))
        .filter(|x| x.get(2).map(String::as_str) == Some(link))
        .collect();
    for w in mine.windows(2) {
        assert!(
            w[0][1] != w[1][1] || w[0][10] != w[1][10],
            "{}.d ran twice in a row for {link}: {:?} then {:?}\nall: {r:?}",
            w[0][1],
            w[0],
            w[1]
        );
    }
}

#[test]
fn networkd_states_restarts_and_bus_loss() {
    if skip_without_networkd() {
        return;
    }
    let ns = Ns::new();
    let peer = Ns::new();
    let dir = Dir::new();
    let mut bus = Bus::start(&dir);
    let mut nd = Networkd::start(&ns, &dir, &bus, NETWORK);
    bus_recorder(&dir, STATES);
    // networkd-dispatcher's tree, run unchanged beside netevd's own.
    let compat = dir.join("compat-records");
    for s in ["routable", "configured", "no-carrier"] {
        dir.write(
            &format!("networkd-dispatcher/{s}.d/50-compat"),
            &format!(
                "#!/bin/sh\nprintf '%s|%s|%s|%s|%s|%s|%s\\n' \"$IFACE\" \"$STATE\" \
                 \"$AdministrativeState\" \"$OperationalState\" \"$IP_ADDRS\" \"$IP6_ADDRS\" \
                 \"$(printf %s \"$json\" | head -c 8)\" >> {}\n",
                compat.display()
            ),
            0o755,
        );
    }
    let config = format!(
        "  backend: systemd-networkd\nbackends:\n  systemd_networkd:\n    state_dir: {}\n    \
         networkd_dispatcher_dir: {}\n    emit_json: true\n",
        nd.state.display(),
        dir.join("networkd-dispatcher").display()
    );
    // `system:` is opened by the harness; the backend goes under it.
    let _netevd = Netevd::start(&ns, &dir, &bus, &config);
    // Created after networkd owns its name, so every change is signalled.
    ns.ip(&[
        "link", "add", "nd0", "type", "veth", "peer", "name", "nd1", "netns", &peer.name,
    ]);
    let idx = index(&ns, "nd0");
    nd.wait_line(idx, "OPER_STATE=no-carrier", 15);
    wait_records(&dir, "no-carrier.d from networkd", 10, |r| {
        r.iter()
            .any(|x| is(x, "systemd-networkd", "no-carrier", "nd0"))
    });

    peer.ip(&["link", "set", "nd1", "up"]);
    peer.ip(&["addr", "add", "192.0.2.1/24", "dev", "nd1"]);
    nd.wait_line(idx, "ADMIN_STATE=configured", 40);
    let r = wait_records(&dir, "routable.d and configured.d from networkd", 10, |r| {
        r.iter()
            .any(|x| is(x, "systemd-networkd", "routable", "nd0"))
            && r.iter()
                .any(|x| is(x, "systemd-networkd", "configured", "nd0"))
    });
    let routable = r
        .iter()
        .find(|x| is(x, "systemd-networkd", "routable", "nd0"))
        .unwrap();
    assert_eq!(routable[3], "routable", "OPER_STATE");
    assert_eq!(routable[5], "carrier", "CARRIER_STATE");
    let configured = r
        .iter()
        .find(|x| is(x, "systemd-networkd", "configured", "nd0"))
        .unwrap();
    assert_eq!(configured[4], "configured", "ADMIN_STATE");
    assert_eq!(configured[7], "192.0.2.53", "DNS from the state file");
    assert_eq!(configured[8], "example.test", "DOMAINS from the state file");
    assert_eq!(
        count(&r, "kernel", "routable", "nd0"),
        0,
        "the kernel's routable for a link networkd configures must not run too:\n{r:?}"
    );
    assert!(
        r.iter().any(|x| is(x, "systemd-networkd", "manager", "")),
        "manager.d runs for networkd's own state: {r:?}"
    );
    // The kernel's route events run under every backend: networkd's
    // default route.
    wait_records(&dir, "routes.d from the kernel", 10, |r| {
        r.iter().any(|x| is(x, "kernel", "routes", "nd0"))
    });

    let end = std::time::Instant::now() + Duration::from_secs(5);
    let compat_lines = loop {
        let t = std::fs::read_to_string(&compat).unwrap_or_default();
        if t.lines().any(|l| l.starts_with("nd0|configured|")) || std::time::Instant::now() > end {
            break t;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        compat_lines.lines().any(|l| l
            == "nd0|routable|configuring|routable|192.0.2.10||{\"Index\""
            || l == "nd0|routable|configured|routable|192.0.2.10||{\"Index\""),
        "networkd-dispatcher's routable.d with its variables, json from networkd's \
         Describe (emit_json):\n{compat_lines}"
    );
    assert!(
        compat_lines
            .lines()
            .any(|l| l.starts_with("nd0|configured|configured|routable|")),
        "{compat_lines}"
    );
    let status = common::Ctl::connect(&dir).ok(r#"{"command":"status"}"#);
    assert_eq!(status["backend"], "systemd-networkd", "{status}");
    let b = status["bus"].as_str().unwrap_or_default();
    assert!(b.starts_with("up; systemd-networkd :"), "{status}");
    assert!(b.ends_with("; 2 links reported"), "lo and nd0: {status}");

    // networkd restarts; the link loses its carrier meanwhile. The
    // kernel reports it while networkd is away; networkd's resync then
    // finds the same state and runs nothing again.
    nd.stop();
    std::thread::sleep(Duration::from_millis(1100));
    peer.ip(&["link", "set", "nd1", "down"]);
    wait_records(&dir, "no-carrier.d while networkd is away", 10, |r| {
        r.iter()
            .filter(|x| x[1] == "no-carrier" && x[2] == "nd0")
            .count()
            >= 2
    });
    nd.restart(&bus);
    nd.wait_line(idx, "OPER_STATE=no-carrier", 15);
    // Back: carrier returns and networkd reports it.
    std::thread::sleep(Duration::from_millis(1100));
    peer.ip(&["link", "set", "nd1", "up"]);
    wait_records(&dir, "routable.d again after networkd's restart", 20, |r| {
        r.iter()
            .filter(|x| x[1] == "routable" && x[2] == "nd0")
            .count()
            >= 2
    });

    // The bus itself goes away; status says so.
    bus.stop();
    let mut ctl = common::Ctl::connect(&dir);
    let end = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let s = ctl.ok(r#"{"command":"status"}"#);
        if s["bus"].as_str().unwrap_or_default().starts_with("down") {
            break;
        }
        assert!(std::time::Instant::now() < end, "bus still up: {s}");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Back: netevd reconnects and rereads networkd (which must be
    // restarted: it does not reconnect).
    bus.restart();
    nd.restart(&bus);
    std::thread::sleep(Duration::from_millis(1100));
    peer.ip(&["link", "set", "nd1", "down"]);
    let r = wait_records(&dir, "no-carrier.d after the bus came back", 20, |r| {
        r.iter()
            .filter(|x| x[1] == "no-carrier" && x[2] == "nd0")
            .count()
            >= 3
    });
    assert!(
        r.iter()
            .rev()
            .find(|x| x[2] == "nd0" && x[1] == "no-carrier")
            .is_some(),
        "{r:?}"
    );
    no_doubles(&r, "nd0");
    let log = dir.log();
    assert!(log.contains("dbus: connected to"), "reconnected:\n{log}");
    assert!(!log.contains("panicked"), "{log}");
}
