//! The daemon on the kernel backend, in network namespaces made by each
//! test, asserting what real hooks saw.

mod common;

use common::*;
use std::fs;
use std::time::Duration;

fn sleep_ms(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

/// va in the test's namespace, its peer vb in a second one: carrier on va
/// then follows vb's admin state (through the kernel's linkwatch). No
/// kernel-made IPv6 link-local address on va: its DAD, and its loss with
/// the carrier, would add events at times no test controls.
fn pair(a: &Ns, b: &Ns) {
    a.ip(&[
        "link", "add", "va", "type", "veth", "peer", "name", "vb", "netns", &b.name,
    ]);
    a.ip(&["link", "set", "va", "addrgenmode", "none"]);
}

/// A veth pair in one namespace, both ends up, with no kernel-made IPv6
/// link-local addresses: they finish DAD a second or two later and would
/// add events at a time no test controls.
fn quiet_pair_up(a: &Ns, x: &str, y: &str) {
    a.ip(&["link", "add", x, "type", "veth", "peer", "name", y]);
    for l in [x, y] {
        a.ip(&["link", "set", l, "addrgenmode", "none"]);
        a.ip(&["link", "set", l, "up"]);
    }
}

#[test]
fn carrier_loss_and_return() {
    let (a, b, d) = (Ns::new(), Ns::new(), Dir::new());
    d.record_all();
    let _n = Daemon::start(&a, &d, "");
    pair(&a, &b);
    a.ip(&["link", "set", "va", "up"]);
    d.wait_for("va no-carrier", 5, |r| {
        r.iter().any(|x| x.link == "va" && x.state == "no-carrier")
    });
    b.ip(&["link", "set", "vb", "up"]);
    d.wait_for("va carrier", 5, |r| {
        last_for(r, "va").is_some_and(|x| x.state == "carrier")
    });
    sleep_ms(1100); // linkwatch: one carrier change a second
    b.ip(&["link", "set", "vb", "down"]);
    let r = d.wait_for("va carrier loss", 15, |r| {
        last_for(r, "va").is_some_and(|x| x.state == "no-carrier" && !x.previous.is_empty())
    });
    let last = last_for(&r, "va").unwrap();
    assert_eq!(last.previous, "carrier", "{last:?}");
    sleep_ms(1100);
    b.ip(&["link", "set", "vb", "up"]);
    d.wait_for("va carrier return", 5, |r| {
        last_for(r, "va").is_some_and(|x| x.state == "carrier")
    });
}

#[test]
fn addresses_v4_v6_add_and_remove() {
    let (a, d) = (Ns::new(), Dir::new());
    d.record_all();
    quiet_pair_up(&a, "va", "vb");
    a.ip(&["addr", "add", "fe80::1/64", "dev", "va", "nodad"]);
    let _n = Daemon::start(&a, &d, "");
    a.ip(&["addr", "add", "192.0.2.10/24", "dev", "va"]);
    d.wait_for("routable with IPv4", 5, |r| {
        last_for(r, "va")
            .is_some_and(|x| x.state == "routable" && x.addresses.contains("192.0.2.10"))
    });
    a.ip(&["addr", "add", "2001:db8::10/64", "dev", "va", "nodad"]);
    d.wait_for("IPv6 added", 5, |r| {
        last_for(r, "va").is_some_and(|x| {
            x.state == "routable"
                && x.addresses.contains("2001:db8::10")
                && x.addresses.contains("192.0.2.10")
        })
    });
    a.ip(&["addr", "del", "192.0.2.10/24", "dev", "va"]);
    d.wait_for("IPv4 removed", 5, |r| {
        last_for(r, "va")
            .is_some_and(|x| x.state == "routable" && !x.addresses.contains("192.0.2.10"))
    });
    a.ip(&["addr", "del", "2001:db8::10/64", "dev", "va"]);
    let r = d.wait_for("back to degraded", 5, |r| {
        last_for(r, "va").is_some_and(|x| x.state == "degraded")
    });
    let last = last_for(&r, "va").unwrap();
    assert_eq!(last.previous, "routable");
    assert!(!last.addresses.contains("2001:db8::10"));
    assert!(last.addresses.contains("fe80::"), "{last:?}");
    // a tentative address is not announced until DAD is over
    a.ip(&["addr", "add", "2001:db8::77/64", "dev", "va"]);
    sleep_ms(300);
    assert!(!d
        .records()
        .iter()
        .any(|x| x.addresses.contains("2001:db8::77")));
    d.wait_for("address after DAD", 8, |r| {
        last_for(r, "va").is_some_and(|x| x.addresses.contains("2001:db8::77"))
    });
}

#[test]
fn route_changes_run_routes_hooks() {
    let (a, d) = (Ns::new(), Dir::new());
    d.recorder("routes", "50-record");
    quiet_pair_up(&a, "va", "vb");
    a.ip(&["addr", "add", "192.0.2.10/24", "dev", "va"]);
    a.ip(&["addr", "add", "2001:db8::10/64", "dev", "va", "nodad"]);
    let _n = Daemon::start(&a, &d, "");
    a.ip(&["route", "add", "198.51.100.0/24", "via", "192.0.2.1"]);
    a.ip(&["route", "add", "default", "via", "2001:db8::1"]);
    a.ip(&["route", "del", "198.51.100.0/24", "via", "192.0.2.1"]);
    let r = d.wait_for("three route hooks", 5, |r| r.len() >= 3);
    let seen: Vec<(String, String, String)> = r
        .iter()
        .map(|x| (x.route_action.clone(), x.route_dst.clone(), x.link.clone()))
        .collect();
    assert_eq!(
        seen,
        vec![
            ("add".into(), "198.51.100.0/24".into(), "va".into()),
            ("add".into(), "default".into(), "va".into()),
            ("del".into(), "198.51.100.0/24".into(), "va".into()),
        ]
    );
    assert!(r.iter().all(|x| x.state == "routes"));
}

#[test]
fn startup_replays_current_state() {
    let (a, d) = (Ns::new(), Dir::new());
    d.record_all();
    quiet_pair_up(&a, "va", "vb");
    a.ip(&["addr", "add", "192.0.2.10/24", "dev", "va"]);
    let _n = Daemon::start(&a, &d, "");
    let r = d.wait_for("a startup hook per link", 5, |r| {
        ["lo", "va", "vb"]
            .iter()
            .all(|l| r.iter().any(|x| x.link == *l && x.event == "startup"))
    });
    let va = r.iter().find(|x| x.link == "va").unwrap();
    assert_eq!(
        (va.state.as_str(), va.addresses.as_str()),
        ("routable", "192.0.2.10")
    );
    assert_eq!(r.iter().find(|x| x.link == "lo").unwrap().state, "carrier");
}

#[test]
fn startup_replay_can_be_disabled_and_filters_apply() {
    let (a, d) = (Ns::new(), Dir::new());
    d.record_all();
    a.ip(&["link", "add", "wg0", "type", "veth", "peer", "name", "xx0"]);
    let n = Daemon::start(
        &a,
        &d,
        "monitoring:\n  interfaces: [\"wg*\"]\nscripts:\n  run_on_startup: false\n",
    );
    a.ip(&["link", "set", "xx0", "up"]);
    a.ip(&["link", "set", "wg0", "up"]);
    let r = d.wait_for("wg0 hook", 5, |r| r.iter().any(|x| x.link == "wg0"));
    sleep_ms(300);
    let r2 = d.records();
    assert!(r2.iter().all(|x| x.link == "wg0"), "{r2:#?}");
    assert!(r.iter().all(|x| x.event != "startup"));
    assert_eq!(n.stop(), Some(0));
}

#[test]
fn odd_link_names_reach_hooks_verbatim() {
    let (a, d) = (Ns::new(), Dir::new());
    d.record_all();
    let _n = Daemon::start(&a, &d, "");
    let name = "e$(id>q)";
    a.ip(&[
        "link", "add", name, "type", "veth", "peer", "name", "e'\"`;x",
    ]);
    a.ip(&["link", "set", name, "up"]);
    d.wait_for("odd names", 5, |r| {
        r.iter().any(|x| x.link == name && x.state == "no-carrier")
            && r.iter().any(|x| x.link == "e'\"`;x")
    });
    assert!(
        !std::path::Path::new("/q").exists(),
        "a shell expanded the name"
    );
}

#[test]
fn hook_order_skips_and_environment() {
    let (a, d) = (Ns::new(), Dir::new());
    d.recorder("no-carrier", "20-second");
    d.recorder("no-carrier", "10-first");
    d.recorder("no-carrier", "30-third~");
    d.recorder("no-carrier", "40-x.dpkg-old");
    d.recorder("no-carrier", ".hidden");
    d.write(
        "hooks/no-carrier.d/15-notexec",
        "#!/bin/sh\nexit 0\n",
        0o644,
    );
    let env_dump = d.join("env");
    d.write(
        "hooks/no-carrier.d/50-env",
        &format!("#!/bin/sh\nenv > {}\n", env_dump.display()),
        0o755,
    );
    let _n = Daemon::start(&a, &d, "");
    a.ip(&["link", "add", "va", "type", "veth", "peer", "name", "vb"]);
    a.ip(&["link", "set", "va", "up"]);
    let r = d.wait_for("two hooks for va", 5, |r| {
        r.iter().filter(|x| x.link == "va").count() >= 2
    });
    sleep_ms(300);
    let hooks: Vec<String> = r
        .iter()
        .filter(|x| x.link == "va")
        .map(|x| x.hook.clone())
        .collect();
    assert_eq!(hooks, vec!["10-first", "20-second"]);
    let env = fs::read_to_string(&env_dump).unwrap();
    let keys: Vec<&str> = env.lines().filter_map(|l| l.split('=').next()).collect();
    for k in [
        "LINK",
        "LINKINDEX",
        "STATE",
        "OPERSTATE",
        "PREVIOUS_STATE",
        "EVENT",
        "EVENT_ID",
        "BACKEND",
        "ADDRESSES",
        "JSON",
        "PATH",
    ] {
        assert!(keys.contains(&k), "{k} missing from {env}");
    }
    assert!(env.contains("BACKEND=kernel"));
    let json = env.lines().find_map(|l| l.strip_prefix("JSON=")).unwrap();
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    assert_eq!(v["version"], 2);
    assert_eq!(v["link"], "va");
    assert_eq!(v["state"], "no-carrier");
    // nothing of the daemon's own environment leaks in
    assert!(!keys.contains(&"HOME") && !keys.contains(&"RUST_BACKTRACE"));
}

#[test]
fn timeout_kills_the_whole_process_group_and_the_next_hook_runs() {
    let (a, d) = (Ns::new(), Dir::new());
    let pidfile = d.join("bg.pid");
    d.write(
        "hooks/no-carrier.d/10-hang",
        &format!(
            "#!/bin/sh\nsleep 300 &\necho $! > {}\necho started background child\nsleep 300\n",
            pidfile.display()
        ),
        0o755,
    );
    d.recorder("no-carrier", "20-after");
    let _n = Daemon::start(&a, &d, "scripts:\n  timeout_seconds: 1\n");
    a.ip(&["link", "add", "va", "type", "veth", "peer", "name", "vb"]);
    a.ip(&["link", "set", "va", "up"]);
    let r = d.wait_for("the hook after the hung one", 6, |r| {
        r.iter().any(|x| x.link == "va")
    });
    assert_eq!(r.iter().find(|x| x.link == "va").unwrap().hook, "20-after");
    let pid = fs::read_to_string(&pidfile).unwrap().trim().to_string();
    sleep_ms(200);
    let alive = fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.contains(") Z "))
        .unwrap_or(false);
    assert!(!alive, "background child {pid} survived the timeout");
    let log = d.log();
    assert!(log.contains("10-hang for va timed out"), "{log}");
    assert!(
        log.contains("10-hang[va]: started background child"),
        "{log}"
    );
}

#[test]
fn busy_link_coalesces_to_the_newest_state() {
    let (a, d) = (Ns::new(), Dir::new());
    for s in ["off", "no-carrier", "carrier", "degraded", "routable"] {
        d.recorder(s, "10-record");
        d.write(
            &format!("hooks/{s}.d/20-slow"),
            "#!/bin/sh\nsleep 0.5\n",
            0o755,
        );
    }
    let _n = Daemon::start(&a, &d, "");
    quiet_pair_up(&a, "va", "vb");
    let mut batch = String::new();
    for i in 1..=50 {
        batch.push_str(&format!("addr add 10.0.0.{i}/32 dev va\n"));
    }
    let f = d.write("batch", &batch, 0o644);
    a.batch(&f);
    let r = d.wait_for("the final address set", 10, |r| {
        last_for(r, "va").is_some_and(|x| {
            x.addresses
                .split(' ')
                .filter(|a| a.starts_with("10.0.0."))
                .count()
                == 50
        })
    });
    let va: Vec<&Record> = r.iter().filter(|x| x.link == "va").collect();
    assert!(
        va.len() < 20,
        "{} runs for 52 changes: not coalesced",
        va.len()
    );
    // ids only grow
    assert!(va.windows(2).all(|w| w[0].id < w[1].id));
    sleep_ms(1200);
    assert_eq!(
        d.records().iter().filter(|x| x.link == "va").count(),
        va.len()
    );
}

/// 100,000 address events against a small receive buffer: the kernel drops
/// notifications (ENOBUFS), the daemon resynchronises, and the last hook
/// for the link sees the final state.
#[test]
fn overflow_resync_ends_in_the_right_state() {
    let (a, d) = (Ns::new(), Dir::new());
    d.record_all();
    quiet_pair_up(&a, "la", "lb");
    let n = Daemon::start(&a, &d, "  netlink_receive_buffer: 4096\n");
    let mut batch = String::with_capacity(4 << 20);
    for i in 0..50_000u32 {
        let ip = format!("198.18.{}.{}/32", (i / 250) % 250, i % 250 + 1);
        batch.push_str(&format!("addr add {ip} dev la\naddr del {ip} dev la\n"));
    }
    batch.push_str("addr add 203.0.113.77/32 dev la\naddr add 203.0.113.78/32 dev la\naddr del 203.0.113.77/32 dev la\n");
    let f = d.write("batch", &batch, 0o644);
    a.batch(&f);
    let r = d.wait_for("la's final state", 30, |r| {
        last_for(r, "la").is_some_and(|x| x.addresses == "203.0.113.78")
    });
    let last = last_for(&r, "la").unwrap();
    assert_eq!(last.state, "routable");
    assert!(!last.addresses.contains("198.18."), "{last:?}");
    assert!(!last.addresses.contains("203.0.113.77"), "{last:?}");
    let log = d.log();
    assert!(
        log.contains("receive buffer overrun"),
        "no overflow happened: the test proves nothing"
    );
    // settled: nothing more runs for la after the final state
    sleep_ms(1000);
    assert_eq!(last_for(&d.records(), "la"), Some(last));
    assert_eq!(n.stop(), Some(0));
    let log = d.log();
    let summary = log
        .lines()
        .find(|l| l.contains("netevd stopping:"))
        .expect("no summary");
    assert!(!summary.contains(" 0 overruns"), "{summary}");
    assert!(!summary.contains(", 0 completed"), "{summary}");
}

#[test]
fn sighup_reloads_and_bad_config_keeps_the_old_one() {
    let (a, d) = (Ns::new(), Dir::new());
    d.record_all();
    let n = Daemon::start(&a, &d, "monitoring:\n  interfaces: [\"va\"]\n");
    a.ip(&["link", "add", "va", "type", "veth", "peer", "name", "vb"]);
    d.wait_for("va", 5, |r| r.iter().any(|x| x.link == "va"));
    // widen the filter: vb gets an event for its current state
    let cfg = d.join("netevd.yaml");
    let text = fs::read_to_string(&cfg)
        .unwrap()
        .replace("[\"va\"]", "[\"v*\"]");
    fs::write(&cfg, &text).unwrap();
    n.signal("HUP");
    d.wait_for("vb after reload", 5, |r| r.iter().any(|x| x.link == "vb"));
    fs::write(&cfg, "monitoring:\n  interfacs: []\n").unwrap();
    n.signal("HUP");
    let end = std::time::Instant::now() + Duration::from_secs(5);
    while !d.log().contains("keeping the current configuration") {
        assert!(std::time::Instant::now() < end, "{}", d.log());
        sleep_ms(50);
    }
    assert!(
        d.log().contains("unknown key \"interfacs\" in monitoring"),
        "{}",
        d.log()
    );
    a.ip(&["link", "set", "vb", "up"]);
    d.wait_for("still running after a bad reload", 5, |r| {
        r.iter().any(|x| x.link == "vb" && x.state == "no-carrier")
    });
    assert_eq!(n.stop(), Some(0));
}

/// With stderr a socket nobody reads (journald stalled), the daemon keeps
/// running hooks; once the reader reads again, it says how many log lines
/// it had to drop.
#[test]
fn a_stalled_log_socket_never_stalls_the_daemon() {
    use std::io::Read;
    use std::os::unix::net::UnixStream;
    use std::process::{Command, Stdio};
    let (a, d) = (Ns::new(), Dir::new());
    d.recorder("routable", "50-record");
    let cfg = d.write(
        "netevd.yaml",
        &format!("system:\n  script_dir: {}\n", d.join("hooks").display()),
        0o644,
    );
    quiet_pair_up(&a, "la", "lb");
    let (mut reader, writer) = UnixStream::pair().unwrap();
    let mut child = Command::new("ip")
        .args(["netns", "exec", &a.name, env!("CARGO_BIN_EXE_netevd")])
        .args(["--foreground", "-v", "--config", cfg.to_str().unwrap()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::os::fd::OwnedFd::from(writer)))
        .spawn()
        .unwrap();
    sleep_ms(500);
    // far more debug lines than the socket holds
    let mut batch = String::new();
    for i in 0..20_000u32 {
        let ip = format!("198.18.{}.{}/32", i / 250, i % 250 + 1);
        batch.push_str(&format!("addr add {ip} dev la\naddr del {ip} dev la\n"));
    }
    batch.push_str("addr add 203.0.113.5/32 dev la\n");
    a.batch(&d.write("batch", &batch, 0o644));
    let r = d.wait_for("the final state despite the full log", 20, |r| {
        last_for(r, "la").is_some_and(|x| x.addresses == "203.0.113.5")
    });
    assert!(!r.is_empty());
    // read what is there, then make one more event: its log line comes
    // after the count of the dropped ones
    reader.set_nonblocking(true).unwrap();
    let mut buf = vec![0u8; 1 << 16];
    while reader.read(&mut buf).map(|n| n > 0).unwrap_or(false) {}
    a.ip(&["addr", "add", "203.0.113.6/32", "dev", "la"]);
    d.wait_for("one more hook", 5, |r| {
        last_for(r, "la").is_some_and(|x| x.addresses.contains("203.0.113.6"))
    });
    sleep_ms(200);
    let mut text = Vec::new();
    loop {
        match reader.read(&mut buf) {
            Ok(n) if n > 0 => text.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    let text = String::from_utf8_lossy(&text);
    assert!(text.contains("log lines dropped"), "{text}");
    let _ = child.kill();
    let _ = child.wait();
}

/// A link going down flushes its IPv4 routes at once, silently; route
/// hooks are slow, so the flush lands behind a running hook. Each route's
/// last change still reaches routes.d: routes coalesce per route, not per
/// link.
#[test]
fn every_flushed_route_reaches_route_hooks() {
    let (a, d) = (Ns::new(), Dir::new());
    d.recorder("routes", "10-record");
    d.write("hooks/routes.d/20-slow", "#!/bin/sh\nsleep 0.3\n", 0o755);
    quiet_pair_up(&a, "va", "vb");
    a.ip(&["addr", "add", "192.0.2.10/24", "dev", "va"]);
    let _n = Daemon::start(&a, &d, "scripts:\n  run_on_startup: false\n");
    let mut batch = String::new();
    for i in 1..=20 {
        batch.push_str(&format!("route add 198.51.100.{i}/32 via 192.0.2.1\n"));
    }
    a.batch(&d.write("batch", &batch, 0o644));
    a.ip(&["link", "set", "va", "down"]);
    let r = d.wait_for("a deletion for each of the 20 routes", 30, |r| {
        (1..=20).all(|i| {
            r.iter()
                .any(|x| x.route_action == "del" && x.route_dst == format!("198.51.100.{i}/32"))
        })
    });
    // The last word on each route is its deletion.
    for i in 1..=20 {
        let dst = format!("198.51.100.{i}/32");
        let last = r.iter().rev().find(|x| x.route_dst == dst).unwrap();
        assert_eq!(last.route_action, "del", "{dst}: {r:#?}");
    }
}

/// A link deleted while its hooks run, and a new link that takes its index
/// at once: the hooks still hear of the old link's removal, by its name.
#[test]
fn a_removal_never_folds_into_a_link_reusing_the_index() {
    let (a, d) = (Ns::new(), Dir::new());
    d.record_all();
    for s in ["off", "no-carrier", "carrier", "degraded", "routable"] {
        d.write(
            &format!("hooks/{s}.d/20-slow"),
            "#!/bin/sh\nsleep 1\n",
            0o755,
        );
    }
    let _n = Daemon::start(&a, &d, "");
    a.ip(&["link", "add", "rx", "index", "500", "type", "ifb"]);
    sleep_ms(200);
    a.ip(&["link", "del", "rx"]);
    a.ip(&["link", "add", "ry", "index", "500", "type", "ifb"]);
    let r = d.wait_for("rx removed and ry seen", 10, |r| {
        r.iter().any(|x| x.link == "rx" && x.event == "removed") && r.iter().any(|x| x.link == "ry")
    });
    let rx_removed = r
        .iter()
        .position(|x| x.link == "rx" && x.event == "removed")
        .unwrap();
    let ry_first = r.iter().position(|x| x.link == "ry").unwrap();
    assert!(rx_removed < ry_first, "{r:#?}");
    assert_eq!(r[rx_removed].index, "500");
}

/// A link with as many alternative names as the kernel allows (its
/// notifications are many times a usual one's size) is followed through
/// the batched reads: every state change reaches hooks, and none is cut
/// short into a resync.
#[test]
fn a_link_with_the_most_alternative_names_is_followed_without_a_resync() {
    let (a, d) = (Ns::new(), Dir::new());
    d.record_all();
    quiet_pair_up(&a, "va", "vb");
    a.ip(&["link", "set", "va", "down"]);
    let names = d.join("altnames");
    let lines: String = (0..1000)
        .map(|i| format!("link property add dev va altname va-alternative-name-{i:04}\n"))
        .collect();
    fs::write(&names, lines).unwrap();
    // The kernel refuses names past its limit (496 of these on Linux
    // 6.18); -force goes on past each refusal.
    let _ = std::process::Command::new("ip")
        .args(["-n", &a.name, "-force", "-batch", names.to_str().unwrap()])
        .stderr(std::process::Stdio::null())
        .status();
    let shown = a.output(&["link", "show", "va"]);
    assert!(shown.len() > 10_000, "altnames were not added: {shown}");
    let n = Daemon::start(&a, &d, "");
    for _ in 0..3 {
        a.ip(&["link", "set", "va", "up"]);
        d.wait_for("va up", 5, |r| {
            last_for(r, "va").is_some_and(|x| x.state == "carrier" || x.state == "degraded")
        });
        a.ip(&["link", "set", "va", "down"]);
        d.wait_for("va down", 5, |r| {
            last_for(r, "va").is_some_and(|x| x.state == "off")
        });
    }
    let s = Ctl::connect(&d).ok(r#"{"command":"status"}"#);
    let c = &s["counters"];
    assert_eq!(c["netlink_undecodable"], 0, "{c}");
    assert_eq!(c["resyncs_started"], 1, "only the start-up dump: {c}");
    drop(n);
}

/// A burst of routes is read at a pace (the socket leaves the poll set
/// while messages keep coming): every route is counted, and once the burst
/// is over the socket is polled again, so a lone change afterwards runs
/// its hooks at once.
#[test]
fn after_a_paced_burst_a_lone_change_is_seen_at_once() {
    let (a, d) = (Ns::new(), Dir::new());
    d.record_all();
    quiet_pair_up(&a, "va", "vb");
    a.ip(&["addr", "add", "192.0.2.10/24", "dev", "va"]);
    a.ip(&["link", "add", "vc", "type", "veth", "peer", "name", "vd"]);
    a.ip(&["link", "set", "vc", "addrgenmode", "none"]);
    let n = Daemon::start(&a, &d, "");
    let mut ctl = Ctl::connect(&d);
    let before = ctl.ok(r#"{"command":"status"}"#)["routes"]
        .as_u64()
        .unwrap();
    let batch = d.join("routes.batch");
    let lines: String = (0..20_000u32)
        .map(|i| format!("route add 10.{}.{}.0/24 via 192.0.2.1\n", i >> 8, i & 255))
        .collect();
    fs::write(&batch, lines).unwrap();
    a.batch(&batch);
    let end = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let s = ctl.ok(r#"{"command":"status"}"#);
        if s["routes"].as_u64().unwrap() == before + 20_000 {
            assert_eq!(s["counters"]["netlink_overruns"], 0, "{s}");
            break;
        }
        assert!(std::time::Instant::now() < end, "routes: {s}");
        sleep_ms(50);
    }
    sleep_ms(100);
    let t = std::time::Instant::now();
    a.ip(&["link", "set", "vc", "up"]);
    d.wait_for("vc after the burst", 2, |r| {
        r.iter().any(|x| x.link == "vc" && x.state == "no-carrier")
    });
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    drop(n);
}

/// A link with as many alternative names as the kernel allows, each as
/// long as it allows (127 bytes): its notifications and its dump entry are
/// larger than a 64 KiB read slot (66,968 bytes for this veth on Linux
/// 6.18). The daemon must know the link, follow its state changes and not
/// resync for them (`ip link show`, a dump, lists it). (Found by a hostile
/// run of the batched reads: slots were a fixed 64 KiB.)
#[test]
fn a_link_with_the_longest_alternative_names_is_followed() {
    let (a, d) = (Ns::new(), Dir::new());
    d.record_all();
    a.ip(&["link", "add", "vl", "type", "veth", "peer", "name", "vm"]);
    for l in ["vl", "vm"] {
        a.ip(&["link", "set", l, "addrgenmode", "none"]);
    }
    a.ip(&["link", "set", "vm", "up"]);
    let names = d.join("altnames");
    let lines: String = (0..1000)
        .map(|i| {
            format!(
                "link property add dev vl altname n{i:04}{}\n",
                "x".repeat(122)
            )
        })
        .collect();
    fs::write(&names, lines).unwrap();
    // The kernel refuses names past its limit (496); -force goes on.
    let _ = std::process::Command::new("ip")
        .args(["-n", &a.name, "-force", "-batch", names.to_str().unwrap()])
        .stderr(std::process::Stdio::null())
        .status();
    let shown = a.output(&["link", "show", "vl"]);
    assert!(
        shown.len() > 65_536,
        "altnames were not added: {}",
        shown.len()
    );
    let n = Daemon::start(&a, &d, "");
    let mut ctl = Ctl::connect(&d);
    let i = ctl.req(r#"{"command":"interface","link":"vl"}"#);
    eprintln!("vl after the start-up dump: {i}");
    for _ in 0..2 {
        a.ip(&["link", "set", "vl", "up"]);
        d.wait_for("vl up", 5, |r| {
            last_for(r, "vl").is_some_and(|x| x.state == "carrier" || x.state == "degraded")
        });
        a.ip(&["link", "set", "vl", "down"]);
        d.wait_for("vl down", 5, |r| {
            last_for(r, "vl").is_some_and(|x| x.state == "off")
        });
    }
    let s = ctl.ok(r#"{"command":"status"}"#);
    let c = &s["counters"];
    eprintln!("counters: {c}");
    assert_eq!(c["netlink_undecodable"], 0, "{c}");
    assert_eq!(c["resyncs_started"], 1, "only the start-up dump: {c}");
    assert!(
        i.get("ok").is_some(),
        "the start-up dump lost vl: {i}\nlog:\n{}",
        d.log()
    );
    drop(n);
}
