//! Policy routing on a host with two uplinks, in namespaces made by each
//! test: real rules and routes installed by the daemon, real traffic.
//!
//! ```text
//!   host: wan0 10.1.0.2/24 2001:db8:1::2/64 ---- r1: 10.1.0.1 2001:db8:1::1
//!         wan1 10.2.0.2/24 2001:db8:2::2/64 ---- r2: 10.2.0.1 2001:db8:2::1
//!                                                    198.51.100.1, 2001:db8:99::1 on lo
//! ```
//! The main table's defaults go by wan0 (metric 100); wan1 has a default of
//! metric 200. The target addresses exist only on r2, so a ping from wan1's
//! address to them answers only if it leaves by wan1.

mod common;

use common::*;
use std::process::Command;
use std::time::{Duration, Instant};

const P: &str = "148"; // netevd's protocol number

struct Net {
    h: Ns,
    _r1: Ns,
    r2: Ns,
}

fn net() -> Net {
    let (h, r1, r2) = (Ns::new(), Ns::new(), Ns::new());
    h.ip(&[
        "link", "add", "wan0", "type", "veth", "peer", "name", "up0", "netns", &r1.name,
    ]);
    h.ip(&[
        "link", "add", "wan1", "type", "veth", "peer", "name", "up1", "netns", &r2.name,
    ]);
    for l in ["wan0", "wan1"] {
        h.ip(&["link", "set", l, "addrgenmode", "none"]);
        h.ip(&["link", "set", l, "up"]);
    }
    r1.ip(&["link", "set", "up0", "up"]);
    r2.ip(&["link", "set", "up1", "up"]);
    r1.ip(&["addr", "add", "10.1.0.1/24", "dev", "up0"]);
    r1.ip(&["addr", "add", "2001:db8:1::1/64", "dev", "up0", "nodad"]);
    r2.ip(&["addr", "add", "10.2.0.1/24", "dev", "up1"]);
    r2.ip(&["addr", "add", "2001:db8:2::1/64", "dev", "up1", "nodad"]);
    r2.ip(&["addr", "add", "198.51.100.1/32", "dev", "lo"]);
    r2.ip(&["addr", "add", "2001:db8:99::1/128", "dev", "lo"]);
    h.ip(&["addr", "add", "10.1.0.2/24", "dev", "wan0"]);
    h.ip(&["addr", "add", "2001:db8:1::2/64", "dev", "wan0", "nodad"]);
    h.ip(&[
        "route", "add", "default", "via", "10.1.0.1", "metric", "100",
    ]);
    h.ip(&[
        "-6",
        "route",
        "add",
        "default",
        "via",
        "2001:db8:1::1",
        "metric",
        "100",
    ]);
    Net { h, _r1: r1, r2 }
}

fn wan1_address(h: &Ns) {
    h.ip(&["addr", "add", "10.2.0.2/24", "dev", "wan1"]);
    h.ip(&["addr", "add", "2001:db8:2::2/64", "dev", "wan1", "nodad"]);
}

fn wan1_gateway(h: &Ns) {
    h.ip(&[
        "route", "add", "default", "via", "10.2.0.1", "dev", "wan1", "metric", "200",
    ]);
    h.ip(&[
        "-6",
        "route",
        "add",
        "default",
        "via",
        "2001:db8:2::1",
        "dev",
        "wan1",
        "metric",
        "200",
    ]);
}

fn ping(h: &Ns, v6: bool, from: &str, to: &str) -> bool {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", &h.name, "ping"]);
    if v6 {
        c.arg("-6");
    }
    c.args(["-c", "1", "-W", "1", "-I", from, to])
        .output()
        .unwrap()
        .status
        .success()
}

fn wait(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The complete set for wan1 (ifindex 3 in a fresh namespace: lo, wan0,
/// wan1), in `ip` output form.
fn full_set(h: &Ns) -> bool {
    let o = owned_entries(h).join("\n");
    [
        "10000:\tfrom 10.2.0.2 lookup 1003",
        "10001:\tfrom all to 10.2.0.2 lookup 1003",
        "10000:\tfrom 2001:db8:2::2 lookup 1003",
        "10001:\tfrom all to 2001:db8:2::2 lookup 1003",
        "default via 10.2.0.1 dev wan1 table 1003",
        "10.2.0.0/24 dev wan1 table 1003",
        "default via 2001:db8:2::1 dev wan1 table 1003",
        "2001:db8:2::/64 dev wan1 table 1003",
    ]
    .iter()
    .all(|want| o.contains(want))
        && owned_entries(h).len() == 8
}

const CONFIG: &str = "routing:\n  policy_rules: [wan1]\n";

/// wan1 with its addresses and gateway, and the daemon once it has
/// installed the full set.
fn running(n: &Net, d: &Dir) -> Daemon {
    wan1_address(&n.h);
    wan1_gateway(&n.h);
    let dm = Daemon::start(&n.h, d, CONFIG);
    wait("the full set", 5, || full_set(&n.h));
    dm
}

#[test]
fn replies_leave_by_the_secondary_uplink_v4_and_v6() {
    let (n, d) = (net(), Dir::new());
    wan1_address(&n.h);
    wan1_gateway(&n.h);
    // without policy routing the main table sends it out by wan0: no answer
    assert!(!ping(&n.h, false, "10.2.0.2", "198.51.100.1"));
    let _dm = Daemon::start(&n.h, &d, CONFIG);
    wait("the full set", 5, || full_set(&n.h));
    assert!(
        ping(&n.h, false, "10.2.0.2", "198.51.100.1"),
        "IPv4 from wan1 did not get through"
    );
    assert!(
        ping(&n.h, true, "2001:db8:2::2", "2001:db8:99::1"),
        "IPv6 from wan1 did not get through"
    );
    // the primary is untouched: from wan0's address it still goes by wan0
    assert!(!ping(&n.h, false, "10.1.0.2", "198.51.100.1"));
    // the rules are there from r2's point of view too: it sees wan1's address
    assert!(n.r2.output(&["neigh"]).contains("10.2.0.2"));
}

#[test]
fn gateway_after_address_ends_the_same() {
    let (n, d) = (net(), Dir::new());
    let _dm = Daemon::start(&n.h, &d, CONFIG);
    wan1_address(&n.h);
    wait("rules and connected routes", 5, || {
        owned_entries(&n.h).len() == 6
    });
    assert!(!owned_entries(&n.h).iter().any(|l| l.starts_with("default")));
    wan1_gateway(&n.h);
    wait("the default routes", 5, || full_set(&n.h));
    assert!(ping(&n.h, false, "10.2.0.2", "198.51.100.1"));
}

#[test]
fn restart_leaves_no_duplicates_and_removes_stale_own_entries_only() {
    let (n, d) = (net(), Dir::new());
    let dm = running(&n, &d);
    assert_eq!(dm.stop(), Some(0));
    // while it is down: a stale rule of its own, and a foreign rule that
    // looks like one of its own but for the protocol
    n.h.ip(&[
        "rule", "add", "from", "10.9.9.9", "lookup", "1003", "pref", "10000", "proto", P,
    ]);
    n.h.ip(&[
        "rule", "add", "from", "10.2.0.2", "lookup", "1003", "pref", "10000", "proto", "static",
    ]);
    n.h.ip(&[
        "rule", "add", "from", "10.8.8.8", "lookup", "77", "pref", "500",
    ]);
    // the log starts afresh with the new daemon
    let _dm = Daemon::start(&n.h, &d, CONFIG);
    wait("the stale rule removed", 5, || {
        !n.h.output(&["rule"]).contains("10.9.9.9")
    });
    assert!(full_set(&n.h), "{:#?}", owned_entries(&n.h));
    let rules = n.h.output(&["rule"]);
    assert!(
        rules.contains("from 10.8.8.8 lookup 77"),
        "foreign rule touched:\n{rules}"
    );
    assert!(
        rules.contains("from 10.2.0.2 lookup 1003 proto static"),
        "foreign rule touched:\n{rules}"
    );
    // nothing was added again: only the stale rule's deletion was requested
    let log = d.log();
    let requests: Vec<&str> = log.lines().filter(|l| l.contains("policy: ")).collect();
    assert_eq!(requests.len(), 1, "{requests:#?}");
    assert!(
        requests[0].contains("delete rule 10000: from 10.9.9.9/32"),
        "{requests:#?}"
    );
}

#[test]
fn cleanup_on_address_removal_link_deletion_and_reload() {
    let (n, d) = (net(), Dir::new());
    let dm = running(&n, &d);
    n.h.ip(&["addr", "del", "10.2.0.2/24", "dev", "wan1"]);
    wait("IPv4 entries gone", 5, || {
        !owned_entries(&n.h).iter().any(|l| l.contains("10.2.0."))
    });
    assert_eq!(owned_entries(&n.h).len(), 4, "{:#?}", owned_entries(&n.h)); // IPv6 stays
                                                                            // dropped from the configuration on reload: the rest goes
    let cfg = d.join("netevd.yaml");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("[wan1]", "[]");
    std::fs::write(&cfg, text).unwrap();
    dm.signal("HUP");
    wait("everything gone after reload", 5, || {
        owned_entries(&n.h).is_empty()
    });
    // listed again, then the link goes away
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("policy_rules: []", "policy_rules: [wan1]");
    std::fs::write(&cfg, text).unwrap();
    dm.signal("HUP");
    wait("IPv6 entries back", 5, || owned_entries(&n.h).len() == 4);
    n.h.ip(&["link", "del", "wan1"]);
    wait("everything gone with the link", 5, || {
        owned_entries(&n.h).is_empty()
    });
}

#[test]
fn an_own_rule_deleted_by_hand_is_restored() {
    let (n, d) = (net(), Dir::new());
    let _dm = running(&n, &d);
    n.h.ip(&["rule", "del", "pref", "10000", "from", "10.2.0.2"]);
    wait("the rule restored", 5, || full_set(&n.h));
    assert!(
        d.log()
            .contains("was deleted by another program; restoring it"),
        "{}",
        d.log()
    );
    // routes of its own too
    n.h.ip(&[
        "route", "del", "default", "via", "10.2.0.1", "table", "1003",
    ]);
    n.h.ip(&["-6", "route", "del", "2001:db8:2::/64", "table", "1003"]);
    wait("the routes restored", 5, || full_set(&n.h));
    assert!(ping(&n.h, false, "10.2.0.2", "198.51.100.1"));
    assert!(ping(&n.h, true, "2001:db8:2::2", "2001:db8:99::1"));
}

#[test]
fn an_interface_that_appears_later_is_picked_up_and_hooks_see_the_table() {
    let (h, d) = (Ns::new(), Dir::new());
    let env_dump = d.join("env");
    d.write(
        "hooks/routable.d/50-env",
        &format!(
            "#!/bin/sh\n[ \"$LINK\" = late0 ] && env > {}\nexit 0\n",
            env_dump.display()
        ),
        0o755,
    );
    let _dm = Daemon::start(
        &h,
        &d,
        "routing:\n  policy_rules:\n    - interface: late0\n      table: 4242\n      from_priority: 700\n      to_priority: 701\n",
    );
    h.ip(&[
        "link", "add", "late0", "type", "veth", "peer", "name", "late1",
    ]);
    for l in ["late0", "late1"] {
        h.ip(&["link", "set", l, "addrgenmode", "none"]);
        h.ip(&["link", "set", l, "up"]);
    }
    h.ip(&["addr", "add", "192.0.2.10/24", "dev", "late0"]);
    wait("rules in table 4242", 5, || {
        let r = h.output(&["rule"]);
        r.contains("700:\tfrom 192.0.2.10 lookup 4242")
            && r.contains("701:\tfrom all to 192.0.2.10 lookup 4242")
    });
    wait("the hook", 5, || env_dump.exists());
    std::thread::sleep(Duration::from_millis(100));
    let env = std::fs::read_to_string(&env_dump).unwrap();
    assert!(env.contains("POLICY_TABLE=4242"), "{env}");
    assert!(
        env.contains(
            "POLICY_RULES=700: from 192.0.2.10/32 lookup 4242, 701: to 192.0.2.10/32 lookup 4242"
        ),
        "{env}"
    );
}

/// The reported bug: a program that deletes netevd's entries the moment
/// they appear (systemd-networkd does this to foreign rules and routes)
/// left them missing for good once it stopped, while the log said
/// "restoring". The restores back off while it runs, say so, and the
/// entries come back once it stops; one more deletion by hand after it is
/// restored too.
#[test]
fn entries_deleted_as_fast_as_they_appear_come_back_once_the_deleter_stops() {
    let (n, d) = (net(), Dir::new());
    let _dm = running(&n, &d);
    // Reacts to every notification of an entry of ours, as networkd does,
    // for 1.5 s, starting with one rule deleted by hand; prints how many
    // times it struck.
    let deleter = format!(
        "(sleep 0.2; ip rule del pref 10001 to 10.2.0.2) & \
         n=0; timeout 1.5 ip monitor rule route | {{ \
           while read -r l; do \
             case \"$l\" in Deleted*) ;; *\"proto {P}\"*|*\"proto netevd\"*) \
               ip rule flush protocol {P}; ip -6 rule flush protocol {P}; \
               ip route flush table all proto {P}; ip -6 route flush table all proto {P}; \
               n=$((n+1));; esac; \
           done; echo $n; }}"
    );
    let o = Command::new("ip")
        .args(["netns", "exec", &n.h.name, "sh", "-c", &deleter])
        .output()
        .unwrap();
    let passes: u32 = String::from_utf8_lossy(&o.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    assert!(
        passes > 5,
        "the deleter struck {passes} times: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    wait("the full set after the deleter", 15, || full_set(&n.h));
    // and once more by hand, as in the report
    n.h.ip(&["rule", "del", "pref", "10000", "from", "10.2.0.2"]);
    n.h.ip(&[
        "route", "del", "default", "via", "10.2.0.1", "table", "1003",
    ]);
    wait("the rule and the default route back", 15, || full_set(&n.h));
    assert!(ping(&n.h, false, "10.2.0.2", "198.51.100.1"));
    let log = d.log();
    // backed off: far fewer requests than the deleter's passes times the
    // eight entries
    let requests = log.lines().filter(|l| l.contains("policy: add ")).count();
    assert!(
        requests < 8 * 15,
        "{requests} add requests against {passes} deleter passes"
    );
    assert!(
        log.contains("was deleted by another program")
            && log.contains("times in a row; still restoring it"),
        "no warning about the repeated deletes:\n{log}"
    );
}
