//! The control socket of the real daemon, spoken to over the real socket
//! by raw clients: queries, actions, bad input, floods, slow subscribers,
//! privileges and the socket's own life cycle.

mod common;

use common::*;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::{Duration, Instant};

fn sleep_ms(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

fn veth(ns: &Ns, x: &str, y: &str) {
    ns.ip(&["link", "add", x, "type", "veth", "peer", "name", y]);
    for l in [x, y] {
        ns.ip(&["link", "set", l, "addrgenmode", "none"]);
    }
}

#[test]
fn every_query_answers_from_the_model() {
    let (ns, d) = (Ns::new(), Dir::new());
    d.recorder("routable", "50-rec");
    d.write("hooks/routable.d/60-noexec", "#!/bin/sh\n", 0o644);
    d.write("hooks/routable.d/.hidden", "#!/bin/sh\n", 0o755);
    veth(&ns, "ca", "cb");
    ns.ip(&["link", "set", "ca", "up"]);
    ns.ip(&["link", "set", "cb", "up"]);
    ns.ip(&["addr", "add", "192.0.2.1/24", "dev", "ca"]);
    ns.ip(&[
        "addr",
        "add",
        "203.0.113.5/24",
        "dev",
        "ca",
        "valid_lft",
        "300",
        "preferred_lft",
        "200",
    ]);
    ns.ip(&[
        "route",
        "add",
        "198.51.100.0/24",
        "via",
        "192.0.2.9",
        "table",
        "7",
    ]);
    let n = Daemon::start(&ns, &d, "");
    let mut c = Ctl::connect(&d);

    let s = c.ok(r#"{"command":"status","id":"x"}"#);
    assert_eq!(s["pid"], n.pid());
    assert_eq!(s["backend"], "kernel");
    assert_eq!(s["synced"], true);
    assert!(s["links"].as_u64().unwrap() >= 3, "{s}");
    assert!(s["counters"]["events"].as_u64().unwrap() >= 3, "{s}");
    assert_eq!(s["config_hash"].as_str().unwrap().len(), 16);
    assert_eq!(s["clients"], 1);
    let r = c.req(r#"{"command":"status","id":[1,2]}"#);
    assert_eq!(r["id"], serde_json::json!([1, 2]), "the id is echoed");

    let all = c.ok(r#"{"command":"interfaces"}"#);
    let names: Vec<&str> = all["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"ca") && names.contains(&"lo"), "{all}");

    let one = c.ok(r#"{"command":"interface","link":"ca"}"#)["interface"].clone();
    assert_eq!(one["state"], "routable");
    assert_eq!(one["kind"], "veth");
    assert_eq!(one["mtu"], 1500);
    assert!(one["flags"].as_array().unwrap().contains(&"UP".into()));
    assert_eq!(one["addresses"][0]["address"], "192.0.2.1");
    assert_eq!(one["addresses"][0]["prefixlen"], 24);
    assert_eq!(one["addresses"][0]["valid_lft"], serde_json::Value::Null);
    let timed = &one["addresses"][1];
    assert_eq!(timed["address"], "203.0.113.5");
    let (valid, preferred) = (
        timed["valid_lft"].as_u64().unwrap(),
        timed["preferred_lft"].as_u64().unwrap(),
    );
    assert!(
        valid <= 300 && valid > 250 && preferred <= 200 && preferred > 150,
        "{timed}"
    );
    let idx = one["index"].as_u64().unwrap();
    let by_index = c.ok(&format!(r#"{{"command":"interface","link":{idx}}}"#));
    assert_eq!(by_index["interface"]["name"], "ca");
    assert!(one["routes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["dst"] == "198.51.100.0/24" && r["table"] == 7));
    assert_eq!(
        c.err(r#"{"command":"interface","link":"nope"}"#),
        "not_found"
    );

    let t7 = c.ok(r#"{"command":"routes","table":7}"#);
    assert_eq!(t7["routes"].as_array().unwrap().len(), 1, "{t7}");
    assert_eq!(t7["routes"][0]["gateway"], "192.0.2.9");
    assert_eq!(t7["routes"][0]["link"], "ca");
    let v6 = c.ok(r#"{"command":"routes","family":"inet6","table":7}"#);
    assert!(v6["routes"].as_array().unwrap().is_empty());

    let own = c.ok(r#"{"command":"rules"}"#);
    assert!(
        own["rules"].as_array().unwrap().is_empty(),
        "no policy rules: {own}"
    );
    let every = c.ok(r#"{"command":"rules","all":true}"#);
    assert!(every["rules"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["priority"] == 32766 && r["table"] == 254));

    let ev = c.ok(r#"{"command":"events","link":"ca","limit":1}"#);
    let evs = ev["events"].as_array().unwrap();
    assert_eq!(evs.len(), 1);
    assert_eq!(evs[0]["link"], "ca");
    assert_eq!(evs[0]["state"], "routable");
    let last = evs[0]["id"].as_u64().unwrap();
    let since = c.ok(&format!(r#"{{"command":"events","since":{last}}}"#));
    assert!(since["events"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["id"].as_u64().unwrap() > last));

    let hooks = c.ok(r#"{"command":"hooks"}"#);
    let routable = hooks["directories"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["state"] == "routable")
        .unwrap()
        .clone();
    assert_eq!(routable["exists"], true);
    assert_eq!(routable["hooks"], serde_json::json!(["50-rec"]));
    let skipped = routable["skipped"].to_string();
    assert!(skipped.contains("60-noexec") && skipped.contains("not executable"));
    assert!(skipped.contains(".hidden"));

    // A test runs the directory for the link's current state.
    let dry = c.ok(r#"{"command":"test","state":"routable","link":"ca","dry_run":true}"#);
    assert_eq!(dry["hooks"].as_array().unwrap().len(), 1);
    let env = &dry["hooks"][0]["environment"];
    assert_eq!(env["LINK"], "ca");
    assert_eq!(env["STATE"], "routable");
    assert_eq!(env["EVENT"], "test");
    assert_eq!(env["ADDRESSES"], "192.0.2.1 203.0.113.5");
    let json: serde_json::Value =
        serde_json::from_str(dry["hooks"][0]["json"].as_str().unwrap()).unwrap();
    assert_eq!(json["link"], "ca");
    let before = d.records().len();
    let t = c.ok(r#"{"command":"test","state":"routable","link":"ca"}"#);
    let id = t["event_id"].as_u64().unwrap();
    let recs = d.wait_for("the test's hook", 5, |r| r.iter().any(|x| x.id == id));
    assert_eq!(recs.len(), before + 1);
    let rec = recs.iter().find(|x| x.id == id).unwrap();
    assert_eq!((rec.event.as_str(), rec.link.as_str()), ("test", "ca"));
    assert_eq!(
        c.err(r#"{"command":"test","state":"routable","link":"zz"}"#),
        "not_found"
    );

    // Its run shows up in the history, with its output and exit.
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        let h = c.ok(r#"{"command":"history","link":"ca"}"#);
        let done = h["runs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["event_id"] == id && r["exit_code"] == 0 && r["hook"] == "50-rec");
        if done {
            break;
        }
        assert!(Instant::now() < end, "no finished run for event {id}: {h}");
        sleep_ms(50);
    }
}

#[test]
fn bad_input_gets_an_error_and_the_connection_goes_on() {
    let (ns, d) = (Ns::new(), Dir::new());
    let _n = Daemon::start(&ns, &d, "");
    let mut c = Ctl::connect(&d);
    for (line, code) in [
        ("garbage", "bad_request"),
        ("[1,2]", "bad_request"),
        (r#"{"command":"fly"}"#, "unknown_command"),
        (r#"{"command":"status","extra":1}"#, "bad_request"),
        (r#"{"command":"routes","table":"x"}"#, "bad_request"),
        ("\u{0}\u{1}\u{2}", "bad_request"),
        (&"[".repeat(5000), "bad_request"),
    ] {
        assert_eq!(c.err(line), code, "{line:.40}");
    }
    // Oversized lines, one in pieces: an error each, then normal service.
    let big = format!(
        "{{\"command\":\"status\",\"pad\":\"{}\"}}\n",
        "x".repeat(40_000)
    );
    c.send_raw(big.as_bytes());
    assert_eq!(c.line()["error"]["code"], "too_long");
    for chunk in big.as_bytes().chunks(7000) {
        c.send_raw(chunk);
        sleep_ms(5);
    }
    assert_eq!(c.line()["error"]["code"], "too_long");
    // A line written in pieces is one request.
    c.send_raw(b"{\"comm");
    sleep_ms(50);
    c.send_raw(b"and\":\"status\"}\n");
    assert!(c.line().get("ok").is_some());
    // Invalid UTF-8 in a string.
    c.send_raw(b"{\"command\":\"st\xffatus\"}\n");
    assert!(c.line().get("error").is_some());
    // Many requests in one write: one reply each, in order.
    let many: String = (0..200)
        .map(|i| format!("{{\"command\":\"status\",\"id\":{i}}}\n"))
        .collect();
    c.send_raw(many.as_bytes());
    for i in 0..200 {
        assert_eq!(c.line()["id"], i);
    }
    // A client that leaves with half a line does no harm.
    let mut half = Ctl::connect(&d);
    half.send_raw(b"{\"command\":\"sta");
    drop(half);
    assert!(c.ok(r#"{"command":"status"}"#)["synced"] == true);
}

#[test]
fn a_thousand_connections_opened_and_dropped() {
    let (ns, d) = (Ns::new(), Dir::new());
    let n = Daemon::start(
        &ns,
        &d,
        "control:\n  socket: CTL\n  max_clients: 64\n"
            .replace("CTL", d.join("ctl.sock").to_str().unwrap())
            .as_str(),
    );
    let mut c = Ctl::connect(&d);
    let base = rss_kib(n.pid());
    for round in 0..20 {
        let mut held: Vec<Ctl> = (0..50).map(|_| Ctl::connect(&d)).collect();
        if round % 2 == 0 {
            // Some may already have been refused (the last round's are
            // still closing): a failed write is fine here.
            for h in held.iter_mut().step_by(5) {
                let _ = h.w.write_all(b"{\"command\":\"status\"}\n");
            }
        }
        drop(held);
    }
    // All of them gone: the daemon counts only this client again.
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        let s = c.ok(r#"{"command":"status"}"#);
        if s["clients"] == 1 {
            break;
        }
        assert!(Instant::now() < end, "clients left over: {s}");
        sleep_ms(50);
    }
    // Root may use the 16 slots kept for root and control.group beyond
    // max_clients; the 81st client at once is told why and closed.
    let held: Vec<Ctl> = (0..79).map(|_| Ctl::connect(&d)).collect();
    let mut extra = Ctl::connect(&d);
    let r = extra.line();
    assert_eq!(r["error"]["code"], "unavailable", "{r}");
    assert!(r["error"]["message"]
        .as_str()
        .unwrap()
        .contains("too many clients"));
    drop(held);
    assert!(
        rss_kib(n.pid()) < base + 2048,
        "RSS grew from {base} KiB to {} KiB",
        rss_kib(n.pid())
    );
}

#[test]
fn idle_clients_time_out_but_subscribers_stay() {
    let (ns, d) = (Ns::new(), Dir::new());
    let cfg = format!(
        "control:\n  socket: {}\n  idle_timeout_seconds: 1\n",
        d.join("ctl.sock").display()
    );
    let _n = Daemon::start(&ns, &d, &cfg);
    let mut idle = Ctl::connect(&d);
    let mut sub = Ctl::connect(&d);
    assert_eq!(sub.ok(r#"{"command":"subscribe"}"#)["subscribed"], true);
    sleep_ms(1800);
    use std::io::BufRead;
    let mut l = String::new();
    assert_eq!(
        idle.r.read_line(&mut l).unwrap(),
        0,
        "idle client was not closed"
    );
    veth(&ns, "ia", "ib");
    let ev = sub.line();
    assert!(ev.get("event").is_some(), "{ev}");
}

#[test]
fn subscribers_see_every_event_in_order_through_reloads() {
    let (ns, d) = (Ns::new(), Dir::new());
    let n = Daemon::start(&ns, &d, "");
    let mut sub = Ctl::connect(&d);
    sub.ok(r#"{"command":"subscribe"}"#);
    let mut only = Ctl::connect(&d);
    only.ok(r#"{"command":"subscribe","link":"sx3","kind":"removed"}"#);
    let mut admin = Ctl::connect(&d);
    let script: String = (0..40)
        .map(|i| format!("link add sx{i} type veth peer name sy{i}\nlink del sx{i}\n"))
        .collect();
    let f = d.write("batch", &script, 0o644);
    let t = std::thread::spawn({
        let ns_name = ns.name.clone();
        move || {
            let o = Command::new("ip")
                .args(["-n", &ns_name, "-batch", f.to_str().unwrap()])
                .output()
                .unwrap();
            assert!(o.status.success());
        }
    });
    for _ in 0..10 {
        let r = admin.ok(r#"{"command":"reload"}"#);
        assert_eq!(r["reloaded"], true);
    }
    t.join().unwrap();
    // 40 links made and removed, each end: at least 160 events.
    let mut ids = Vec::new();
    while ids.len() < 160 {
        let l = sub.line();
        ids.push(l["event"]["id"].as_u64().unwrap());
    }
    assert!(
        ids.windows(2).all(|w| w[1] == w[0] + 1),
        "a subscriber sees every event, in order: {ids:?}"
    );
    let e = only.line();
    assert_eq!(e["event"]["link"], "sx3");
    assert_eq!(e["event"]["event"], "removed");
    let s = admin.ok(r#"{"command":"status"}"#);
    assert_eq!(s["subscribers"], 2);
    drop(n);
}

#[test]
fn a_slow_subscriber_is_dropped_with_a_notice_and_never_stalls_the_loop() {
    let (ns, d) = (Ns::new(), Dir::new());
    let cfg = format!(
        "control:\n  socket: {}\n  max_queue_bytes: 65536\n",
        d.join("ctl.sock").display()
    );
    let n = Daemon::start(&ns, &d, &cfg);
    // Fifty addresses, then the same one added and removed many times:
    // events enough to fill the socket and the queue many times over,
    // with a model that stays the same size.
    let grow: String = (0..50)
        .map(|i| format!("address add 10.0.{i}.1/32 dev lo\n"))
        .collect();
    ns.batch(&d.write("grow", &grow, 0o644));
    let mut fast = Ctl::connect(&d);
    fast.ok(r#"{"command":"status"}"#);
    let base = rss_kib(n.pid());
    let mut slow = Ctl::connect(&d);
    slow.ok(r#"{"command":"subscribe"}"#);
    let script: String = (0..1500)
        .map(|_| "address add 10.9.0.1/32 dev lo\naddress del 10.9.0.1/32 dev lo\n")
        .collect();
    let f = d.write("batch", &script, 0o644);
    ns.batch(&f);
    let t0 = Instant::now();
    let s = fast.ok(r#"{"command":"status"}"#);
    assert!(
        t0.elapsed() < Duration::from_secs(2),
        "status took {:?}",
        t0.elapsed()
    );
    // The slow one is gone: its last line says why.
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let s = fast.ok(r#"{"command":"status"}"#);
        if s["counters"]["subscribers_dropped"] == 1 {
            break;
        }
        assert!(Instant::now() < end, "not dropped: {s}");
        sleep_ms(50);
    }
    let mut last = serde_json::Value::Null;
    loop {
        use std::io::BufRead;
        let mut l = String::new();
        if slow.r.read_line(&mut l).unwrap_or(0) == 0 {
            break;
        }
        last = serde_json::from_str(&l).unwrap();
    }
    assert!(
        last["dropped"]["reason"]
            .as_str()
            .unwrap_or("")
            .contains("too slow"),
        "last line: {last}"
    );
    assert!(s["synced"] == true);
    assert!(
        rss_kib(n.pid()) < base + 4096,
        "RSS grew from {base} KiB to {} KiB",
        rss_kib(n.pid())
    );
    assert!(d.log().contains("fell") && d.log().contains("dropping it"));
}

#[test]
fn reload_reports_changes_and_refuses_a_bad_file() {
    let (ns, d) = (Ns::new(), Dir::new());
    let _n = Daemon::start(&ns, &d, "scripts:\n  timeout_seconds: 5\n");
    let mut c = Ctl::connect(&d);
    let cfg = d.join("netevd.yaml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        text.replace("timeout_seconds: 5", "timeout_seconds: 7"),
    )
    .unwrap();
    let r = c.ok(r#"{"command":"reload"}"#);
    assert_eq!(
        r["changes"],
        serde_json::json!(["hook timeout: 5 s -> 7 s"])
    );
    let hash = c.ok(r#"{"command":"status"}"#)["config_hash"].clone();
    std::fs::write(&cfg, "scripts:\n  timeout_seconds: banana\n").unwrap();
    let r = c.req(r#"{"command":"reload"}"#);
    assert_eq!(r["error"]["code"], "invalid_config", "{r}");
    let msg = r["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("timeout_seconds") && msg.contains("2:"),
        "{msg}"
    );
    assert_eq!(c.ok(r#"{"command":"status"}"#)["config_hash"], hash);
}

/// Runs a client as uid/gid 65534 (nobody) with python3, sending `line`.
fn as_nobody(sock: &std::path::Path, line: &str) -> String {
    let py = "import socket,sys\ns=socket.socket(socket.AF_UNIX)\ns.connect(sys.argv[1])\n\
              s.sendall(sys.argv[2].encode()+b'\\n')\nprint(s.makefile().readline(),end='')\n";
    let o = unsafe {
        Command::new("/usr/bin/python3")
            .args(["-c", py, sock.to_str().unwrap(), line])
            .pre_exec(|| {
                if nix_setid() {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            })
            .output()
    }
    .expect("/usr/bin/python3 is needed for this test (apt-get install python3)");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap()
}

fn nix_setid() -> bool {
    extern "C" {
        fn setgroups(n: usize, g: *const u32) -> i32;
        fn setgid(g: u32) -> i32;
        fn setuid(u: u32) -> i32;
    }
    unsafe { setgroups(0, std::ptr::null()) == 0 && setgid(65534) == 0 && setuid(65534) == 0 }
}

#[test]
fn anyone_may_query_but_only_root_or_the_group_may_change_things() {
    let (ns, d) = (Ns::new(), Dir::new());
    // The scratch directory must be reachable for uid 65534.
    std::fs::set_permissions(&d.path, std::fs::Permissions::from_mode(0o755)).unwrap();
    let sock = d.join("ctl.sock");
    let cfg = format!("control:\n  socket: {}\n  mode: \"0666\"\n", sock.display());
    let _n = Daemon::start(&ns, &d, &cfg);
    let meta = std::fs::metadata(&sock).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o666);
    let status = as_nobody(&sock, r#"{"command":"status"}"#);
    assert!(status.contains("\"ok\""), "{status}");
    for req in [
        r#"{"command":"reload"}"#,
        r#"{"command":"test","state":"off","link":"lo"}"#,
    ] {
        let r = as_nobody(&sock, req);
        assert!(
            r.contains("permission_denied") && r.contains("uid 65534"),
            "{r}"
        );
    }
    // Root may.
    let mut c = Ctl::connect(&d);
    assert_eq!(c.ok(r#"{"command":"reload"}"#)["reloaded"], true);
}

#[test]
fn default_mode_is_0660_and_a_group_is_applied() {
    let (ns, d) = (Ns::new(), Dir::new());
    let sock = d.join("ctl.sock");
    let cfg = format!("control:\n  socket: {}\n  group: nogroup\n", sock.display());
    let _n = Daemon::start(&ns, &d, &cfg);
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(&sock).unwrap();
    assert_eq!(m.permissions().mode() & 0o777, 0o660);
    assert_eq!(m.gid(), 65534, "nogroup");
}

#[test]
fn a_stale_socket_is_replaced_and_a_live_one_refused() {
    let (ns, d) = (Ns::new(), Dir::new());
    let sock = d.join("ctl.sock");
    // Left behind by a daemon that died: bound, nobody listening.
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    assert!(sock.exists());
    let _n = Daemon::start(&ns, &d, "");
    let mut c = Ctl::connect(&d);
    c.ok(r#"{"command":"status"}"#);
    // A second daemon on the same socket refuses to start.
    let o = Command::new(env!("CARGO_BIN_EXE_netevd"))
        .args([
            "--foreground",
            "--config",
            d.join("netevd.yaml").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("another netevd is serving it"), "{err}");
    // The first one still answers.
    c.ok(r#"{"command":"status"}"#);
    // A path that is not a socket is never replaced.
    let file = d.write("plain", "keep me", 0o644);
    let cfg = format!("control:\n  socket: {}\n", file.display());
    let p = d.write("other.yaml", &cfg, 0o644);
    let o = Command::new(env!("CARGO_BIN_EXE_netevd"))
        .args(["--foreground", "--config", p.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not a socket"));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep me");
}

#[test]
fn the_socket_goes_away_with_the_daemon() {
    let (ns, d) = (Ns::new(), Dir::new());
    let n = Daemon::start(&ns, &d, "");
    assert!(d.join("ctl.sock").exists());
    assert_eq!(n.stop(), Some(0));
    assert!(!d.join("ctl.sock").exists());
    let _ = std::io::stdout().flush();
}

/// A flood of kernel messages is read within a budget per turn: queries
/// are answered while it lasts, not after.
#[test]
fn queries_are_answered_during_a_netlink_flood() {
    let (ns, d) = (Ns::new(), Dir::new());
    let _n = Daemon::start(&ns, &d, "  netlink_receive_buffer: 33554432\n");
    let mut c = Ctl::connect(&d);
    let script: String = (0..60_000)
        .map(|i| {
            let a = format!("10.{}.{}.{}/32", i / 62_500, (i / 250) % 250, i % 250 + 1);
            format!("address add {a} dev lo\naddress del {a} dev lo\n")
        })
        .collect();
    let f = d.write("flood", &script, 0o644);
    let t = std::thread::spawn({
        let ns_name = ns.name.clone();
        move || {
            Command::new("ip")
                .args(["-n", &ns_name, "-batch", f.to_str().unwrap()])
                .output()
                .unwrap()
        }
    });
    sleep_ms(300);
    let mut worst = Duration::ZERO;
    let mut during = 0;
    while !t.is_finished() {
        let t0 = Instant::now();
        let s = c.ok(r#"{"command":"status"}"#);
        worst = worst.max(t0.elapsed());
        if s["counters"]["netlink_messages"].as_u64().unwrap() < 200_000 {
            during += 1;
        }
        sleep_ms(20);
    }
    assert!(t.join().unwrap().status.success());
    assert!(during > 0, "the flood was over before the first query");
    assert!(
        worst < Duration::from_millis(500),
        "a status took {worst:?} during the flood"
    );
}

/// A client that writes nothing but newlines as fast as it can gets a
/// share of each turn like any other: the others are still answered.
#[test]
fn a_flood_of_empty_lines_does_not_hold_the_loop() {
    let (ns, d) = (Ns::new(), Dir::new());
    let _n = Daemon::start(&ns, &d, "");
    let sock = d.join("ctl.sock");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flooder = std::os::unix::net::UnixStream::connect(sock).unwrap();
    let mut s = flooder.try_clone().unwrap();
    let t = std::thread::spawn({
        let stop = stop.clone();
        move || {
            let block = vec![b'\n'; 1 << 20];
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if s.write_all(&block).is_err() {
                    break;
                }
            }
        }
    });
    sleep_ms(300);
    let mut c = Ctl::connect(&d);
    let mut worst = Duration::ZERO;
    for _ in 0..20 {
        let t0 = Instant::now();
        c.ok(r#"{"command":"status"}"#);
        worst = worst.max(t0.elapsed());
        sleep_ms(50);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = flooder.shutdown(std::net::Shutdown::Both);
    t.join().unwrap();
    assert!(worst < Duration::from_millis(500), "status took {worst:?}");
}

/// A client that shuts its writing side after subscribing (as `nc -N`
/// does) still gets its events; one that asked for a reply gets all of
/// it.
#[test]
fn a_client_that_stops_writing_still_reads() {
    let (ns, d) = (Ns::new(), Dir::new());
    let _n = Daemon::start(&ns, &d, "");
    let mut sub = Ctl::connect(&d);
    sub.send_raw(b"{\"command\":\"subscribe\"}\n");
    sub.w.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(sub.line()["ok"]["subscribed"], true);
    ns.ip(&["link", "add", "sa", "type", "veth", "peer", "name", "sb"]);
    let ev = sub.line();
    assert!(ev.get("event").is_some(), "{ev}");
    let many: String = (0..2000)
        .map(|i| format!("route add 10.{}.{}.0/24 dev lo table 9\n", i / 250, i % 250))
        .collect();
    ns.batch(&d.write("routes", &many, 0o644));
    let mut q = Ctl::connect(&d);
    let end = Instant::now() + Duration::from_secs(10);
    while q.ok(r#"{"command":"routes","table":9}"#)["routes"]
        .as_array()
        .unwrap()
        .len()
        < 2000
    {
        assert!(Instant::now() < end, "the routes never all arrived");
        sleep_ms(50);
    }
    let mut q = Ctl::connect(&d);
    q.send_raw(b"{\"command\":\"routes\",\"table\":9}\n");
    q.w.shutdown(std::net::Shutdown::Write).unwrap();
    let r = q.line();
    assert_eq!(r["ok"]["routes"].as_array().unwrap().len(), 2000);
}
