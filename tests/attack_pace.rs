//! Hostile runs of the burst pace (the netlink socket leaves the poll set
//! while kernel messages keep coming, and a 1 ms timer reads it), the
//! batched reads (recvmmsg into four slots, the buffer grown at once on
//! an overrun) and the cached hook listings, each in namespaces made by
//! the test: long bursts with link flaps, a tiny receive buffer, signals
//! and control requests in the middle of a burst, a hook added during one.

mod common;

use common::*;
use std::fs;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn sleep_ms(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

/// A veth pair in one namespace, both ends up, no kernel-made link-local
/// addresses (their DAD would add events at times no test controls), and
/// 192.0.2.10/24 on `x` as the routes' gateway subnet.
fn gateway_pair(a: &Ns, x: &str, y: &str) {
    a.ip(&["link", "add", x, "type", "veth", "peer", "name", y]);
    for l in [x, y] {
        a.ip(&["link", "set", l, "addrgenmode", "none"]);
        a.ip(&["link", "set", l, "up"]);
    }
    a.ip(&["addr", "add", "192.0.2.10/24", "dev", x]);
}

/// `ip -n NS -batch FILE` started in the background.
fn batch_bg(ns: &Ns, file: &std::path::Path) -> Child {
    Command::new("ip")
        .args(["-n", &ns.name, "-batch", file.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn finish(mut c: Child) {
    let o = c.wait().unwrap();
    assert!(o.success(), "ip -batch failed");
}

/// `count` /32 routes via 192.0.2.1, numbered from `from`, inside `net`
/// (the first octet).
fn routes(net: u32, from: u32, count: u32) -> String {
    (from..from + count)
        .map(|i| {
            format!(
                "route add {net}.{}.{}.{}/32 via 192.0.2.1\n",
                (i >> 16) & 255,
                (i >> 8) & 255,
                i & 255
            )
        })
        .collect()
}

fn status(ctl: &mut Ctl) -> serde_json::Value {
    ctl.ok(r#"{"command":"status"}"#)
}

/// Waits until the daemon counts `want` routes, or panics with its status
/// and log.
fn wait_routes(ctl: &mut Ctl, d: &Dir, want: u64, secs: u64) -> serde_json::Value {
    let end = Instant::now() + Duration::from_secs(secs);
    loop {
        let s = status(ctl);
        if s["routes"].as_u64().unwrap() == want {
            return s;
        }
        if Instant::now() > end {
            let log = d.log();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            panic!("routes never reached {want}: {s}\nlog tail (newest first):\n{tail:#?}");
        }
        sleep_ms(50);
    }
}

fn kernel_up(ns: &Ns, link: &str) -> bool {
    let j: serde_json::Value =
        serde_json::from_str(&ns.output(&["-j", "link", "show", "dev", link])).unwrap();
    j[0]["flags"].as_array().unwrap().iter().any(|f| f == "UP")
}

fn daemon_up(ctl: &mut Ctl, link: &str) -> bool {
    let i = ctl.ok(&format!(r#"{{"command":"interface","link":"{link}"}}"#));
    i["interface"]["flags"]
        .as_array()
        .unwrap_or_else(|| panic!("{i}"))
        .iter()
        .any(|f| f == "UP")
}

/// After a burst the socket must be back in the poll set: a lone change
/// to `link` (a veth whose peer is down: no-carrier once up) runs its
/// hooks within a second.
fn lone_event_is_prompt(ns: &Ns, d: &Dir, link: &str) {
    sleep_ms(100);
    let t = Instant::now();
    ns.ip(&["link", "set", link, "up"]);
    d.wait_for("the lone change after the burst", 3, |r| {
        r.iter().any(|x| x.link == link && x.state == "no-carrier")
    });
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "a lone change after the burst took {:?}",
        t.elapsed()
    );
}

/// A spare veth (down, peer down) for `lone_event_is_prompt`.
fn spare(ns: &Ns, x: &str, y: &str) {
    ns.ip(&["link", "add", x, "type", "veth", "peer", "name", y]);
    ns.ip(&["link", "set", x, "addrgenmode", "none"]);
}

/// 200,000 routes in one batch with ifb links flapped every 5,000
/// routes: the daemon ends with the kernel's admin state for every link
/// and the kernel's route count, every resync it started is completed,
/// and the socket is polled again afterwards.
#[test]
fn a_long_burst_with_link_flaps_ends_in_the_kernels_state() {
    let (a, d) = (Ns::new(), Dir::new());
    d.recorder("no-carrier", "50-record");
    gateway_pair(&a, "va", "vb");
    spare(&a, "vc", "vd");
    let dummies = ["du0", "du1", "du2", "du3"];
    for l in dummies {
        a.ip(&["link", "add", l, "type", "ifb"]);
        a.ip(&["link", "set", l, "addrgenmode", "none"]);
    }
    let n = Daemon::start(&a, &d, "scripts:\n  run_on_startup: false\n");
    let mut ctl = Ctl::connect(&d);
    let before = status(&mut ctl)["routes"].as_u64().unwrap();
    let mut script = String::new();
    let total = 200_000u32;
    for k in 0..total / 5000 {
        script.push_str(&routes(10, k * 5000, 5000));
        let l = dummies[(k % 4) as usize];
        let up = if (k / 4) % 2 == 0 { "up" } else { "down" };
        script.push_str(&format!("link set {l} {up}\n"));
    }
    // Last words differ per link: du0 and du2 end up, du1 and du3 down.
    script.push_str("link set du0 up\nlink set du1 down\nlink set du2 up\nlink set du3 down\n");
    a.batch(&d.write("burst", &script, 0o644));
    // Each ifb link up also has the kernel's IPv6 multicast route
    // (ff00::/8 in table local): du0 and du2 end up.
    let s = wait_routes(&mut ctl, &d, before + total as u64 + 2, 120);
    let c = &s["counters"];
    for l in dummies {
        let end = Instant::now() + Duration::from_secs(5);
        while daemon_up(&mut ctl, l) != kernel_up(&a, l) {
            assert!(
                Instant::now() < end,
                "{l}: the daemon's admin state is not the kernel's"
            );
            sleep_ms(50);
        }
    }
    assert!(kernel_up(&a, "du0") && !kernel_up(&a, "du1"));
    let s = status(&mut ctl);
    let c2 = &s["counters"];
    assert_eq!(
        c2["resyncs_started"], c2["resyncs_completed"],
        "every resync completes: {c2}"
    );
    assert_eq!(c2["netlink_undecodable"], 0, "{c2}");
    eprintln!("200k burst counters: {c}");
    lone_event_is_prompt(&a, &d, "vc");
    drop(n);
}

/// A receive buffer of 4 KiB (grown to 8 MiB at the first overrun) under a
/// paced burst: the overrun costs one resync or few, the daemon ends with
/// the kernel's route count, no resync is left open, and the socket is
/// polled again afterwards.
#[test]
fn a_burst_against_a_tiny_buffer_converges_with_few_resyncs() {
    let (a, d) = (Ns::new(), Dir::new());
    d.recorder("no-carrier", "50-record");
    d.write(
        "conf.d/10-buffer.yaml",
        "system:\n  netlink_receive_buffer: 4096\n  netlink_receive_buffer_max: 8388608\n",
        0o644,
    );
    gateway_pair(&a, "va", "vb");
    spare(&a, "vc", "vd");
    let n = Daemon::start(&a, &d, "scripts:\n  run_on_startup: false\n");
    let mut ctl = Ctl::connect(&d);
    let s0 = status(&mut ctl);
    let before = s0["routes"].as_u64().unwrap();
    let total = 50_000u32;
    a.batch(&d.write("burst", &routes(10, 0, total), 0o644));
    let s = wait_routes(&mut ctl, &d, before + total as u64, 60);
    // A resync may still be closing when the count is right: let it end.
    let end = Instant::now() + Duration::from_secs(10);
    let s = loop {
        let c = &s["counters"];
        let now = status(&mut ctl);
        let cn = &now["counters"];
        if cn["resyncs_started"] == cn["resyncs_completed"] {
            break now;
        }
        assert!(Instant::now() < end, "a resync never completed: {c} / {cn}");
        sleep_ms(50);
    };
    let c = &s["counters"];
    assert_eq!(s["routes"].as_u64().unwrap(), before + total as u64, "{s}");
    let started = c["resyncs_started"].as_u64().unwrap();
    let overruns = c["netlink_overruns"].as_u64().unwrap();
    eprintln!("tiny buffer counters: {c}");
    assert!(
        c["netlink_receive_buffer"].as_u64().unwrap() >= 8 << 20 || overruns == 0,
        "the buffer grows at the first overrun: {c}"
    );
    // The start-up dump, then at most a few: the buffer is 8 MiB after
    // the first overrun.
    assert!(started <= 4, "too many resyncs for one burst: {c}");
    lone_event_is_prompt(&a, &d, "vc");
    drop(n);
}

/// SIGHUP (reload) three times while a burst is read at the pace: the
/// daemon keeps reading, counts every route, and polls the socket again.
#[test]
fn reloads_in_a_paced_burst_lose_nothing() {
    let (a, d) = (Ns::new(), Dir::new());
    d.recorder("no-carrier", "50-record");
    gateway_pair(&a, "va", "vb");
    spare(&a, "vc", "vd");
    let n = Daemon::start(&a, &d, "scripts:\n  run_on_startup: false\n");
    let mut ctl = Ctl::connect(&d);
    let before = status(&mut ctl)["routes"].as_u64().unwrap();
    let total = 60_000u32;
    let f = d.write("burst", &routes(10, 0, total), 0o644);
    let child = batch_bg(&a, &f);
    for _ in 0..3 {
        sleep_ms(150);
        n.signal("HUP");
    }
    finish(child);
    wait_routes(&mut ctl, &d, before + total as u64, 60);
    let log = d.log();
    assert!(
        log.matches("reload").count() >= 3,
        "three reloads are logged:\n{log}"
    );
    lone_event_is_prompt(&a, &d, "vc");
    // Answers at once after all that.
    let t = Instant::now();
    status(&mut ctl);
    assert!(t.elapsed() < Duration::from_secs(1));
    drop(n);
}

/// SIGTERM while a burst is read at the pace: the daemon exits cleanly
/// (code 0) within its grace, though messages keep coming.
#[test]
fn sigterm_in_a_paced_burst_exits_cleanly() {
    let (a, d) = (Ns::new(), Dir::new());
    gateway_pair(&a, "va", "vb");
    let n = Daemon::start(&a, &d, "scripts:\n  run_on_startup: false\n");
    let mut ctl = Ctl::connect(&d);
    let before = status(&mut ctl)["routes"].as_u64().unwrap();
    let f = d.write("burst", &routes(10, 0, 150_000), 0o644);
    let child = batch_bg(&a, &f);
    // Wait until the daemon is in the burst (routes are coming in).
    let end = Instant::now() + Duration::from_secs(20);
    while status(&mut ctl)["routes"].as_u64().unwrap() < before + 2000 {
        assert!(Instant::now() < end, "the burst never reached the daemon");
        sleep_ms(5);
    }
    drop(ctl);
    let t = Instant::now();
    let code = n.stop();
    let took = t.elapsed();
    finish(child);
    assert_eq!(code, Some(0), "log:\n{}", d.log());
    assert!(took < Duration::from_secs(3), "stopping took {took:?}");
}

/// A hook added to routes.d in the middle of a paced burst (written, made
/// executable, renamed into place): every route added by a command started
/// after that runs it.
#[test]
fn a_route_hook_added_in_a_burst_runs_for_every_later_route() {
    hook_added_in_a_burst(true);
}

/// The same, with routes.d itself made in the middle of the burst (its
/// absence was cached as an empty listing under script_dir's watch).
#[test]
fn a_route_hook_directory_made_in_a_burst_is_followed() {
    hook_added_in_a_burst(false);
}

fn hook_added_in_a_burst(dir_exists: bool) {
    let (a, d) = (Ns::new(), Dir::new());
    // routes.d exists, empty, or not at all: either is cached as empty.
    if dir_exists {
        fs::create_dir_all(d.join("hooks/routes.d")).unwrap();
    } else {
        d.write("hooks/off.d/.keep", "", 0o644);
    }
    gateway_pair(&a, "va", "vb");
    a.ip(&["link", "add", "du0", "type", "ifb"]);
    let _n = Daemon::start(&a, &d, "scripts:\n  run_on_startup: false\n");
    // Routes, then addresses on a link that is down (no routes, no route
    // hooks): the pace goes on while the hook comes and the later routes
    // are added.
    let mut script = routes(10, 0, 2000);
    for i in 0..20_000u32 {
        script.push_str(&format!(
            "address add 10.99.{}.{}/32 dev du0\n",
            i >> 8,
            i & 255
        ));
    }
    let mut first = batch_bg(&a, &d.write("burst1", &script, 0o644));
    sleep_ms(30);
    if !dir_exists {
        fs::create_dir(d.join("hooks/routes.d")).unwrap();
        sleep_ms(10);
    }
    let rec = d.join("routes-seen");
    let tmp = d.write(
        "hook.tmp",
        &format!(
            "#!/bin/sh\n[ \"$ROUTE_ACTION\" = add ] && echo \"$ROUTE_DST\" >> {}\nexit 0\n",
            rec.display()
        ),
        0o755,
    );
    fs::rename(&tmp, d.join("hooks/routes.d/10-seen")).unwrap();
    // Every route of this batch is added after the hook is in place.
    let later = 300u32;
    a.batch(&d.write("burst2", &routes(172, 0, later), 0o644));
    let overlapped = first.try_wait().unwrap().is_none();
    finish(first);
    eprintln!("the first burst was still going after the later routes: {overlapped}");
    let want: Vec<String> = (0..later)
        .map(|i| format!("172.0.{}.{}/32", i >> 8, i & 255))
        .collect();
    let end = Instant::now() + Duration::from_secs(90);
    loop {
        let seen = fs::read_to_string(&rec).unwrap_or_default();
        let seen: std::collections::HashSet<&str> = seen.lines().collect();
        let missing: Vec<&String> = want.iter().filter(|w| !seen.contains(w.as_str())).collect();
        if missing.is_empty() {
            break;
        }
        if Instant::now() > end {
            panic!(
                "{} routes added after the hook never ran it, e.g. {:?}",
                missing.len(),
                &missing[..missing.len().min(5)]
            );
        }
        sleep_ms(200);
    }
}

/// Control requests during a paced burst with link flaps: status and
/// interfaces answer promptly every time, and a subscriber sees every
/// event id, in order, with no gap.
#[test]
fn control_answers_and_subscribers_keep_up_in_a_paced_burst() {
    let (a, d) = (Ns::new(), Dir::new());
    gateway_pair(&a, "va", "vb");
    for l in ["du0", "du1"] {
        a.ip(&["link", "add", l, "type", "ifb"]);
        a.ip(&["link", "set", l, "addrgenmode", "none"]);
    }
    let n = Daemon::start(&a, &d, "scripts:\n  run_on_startup: false\n");
    let mut sub = Ctl::connect(&d);
    sub.ok(r#"{"command":"subscribe"}"#);
    let mut ctl = Ctl::connect(&d);
    let before = status(&mut ctl)["routes"].as_u64().unwrap();
    let mut script = String::new();
    let total = 80_000u32;
    for k in 0..total / 2000 {
        script.push_str(&routes(10, k * 2000, 2000));
        let up = if k % 2 == 0 { "up" } else { "down" };
        script.push_str(&format!("link set du{} {up}\n", k % 4 / 2));
    }
    let f = d.write("burst", &script, 0o644);
    // The subscriber is read on its own thread, raw and in large reads
    // (parsed at the end), so it never backs up.
    let reader = std::thread::spawn(move || {
        use std::io::Read;
        let mut all = Vec::new();
        let mut buf = vec![0u8; 1 << 20];
        sub.w
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        all.extend_from_slice(sub.r.buffer());
        let mut s = sub.r.into_inner();
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => all.extend_from_slice(&buf[..n]),
            }
        }
        String::from_utf8(all)
            .unwrap()
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                v["event"]["id"].as_u64().unwrap_or(u64::MAX)
            })
            .collect::<Vec<u64>>()
    });
    let child = batch_bg(&a, &f);
    let mut worst = Duration::ZERO;
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(4) {
        for q in [r#"{"command":"status"}"#, r#"{"command":"interfaces"}"#] {
            let t = Instant::now();
            ctl.ok(q);
            worst = worst.max(t.elapsed());
        }
        sleep_ms(20);
    }
    finish(child);
    wait_routes(&mut ctl, &d, before + total as u64, 60);
    let dropped = status(&mut ctl)["counters"]["subscribers_dropped"].clone();
    // The bound is for a loop that is stuck, not a slow one: this is the
    // debug build, and the file's other tests burst beside it on 2 cores.
    // Alone the slowest answer was 60 to 760 ms here, over 2 s once with the
    // others; the release build, the same burst alone: p50 0.1 ms, slowest
    // 2.0 ms.
    assert!(worst < Duration::from_secs(5), "a request took {worst:?}");
    // The reader stops after 5 s of silence.
    let ids = reader.join().unwrap();
    assert_eq!(dropped, 0, "the subscriber was dropped");
    assert!(!ids.contains(&u64::MAX), "a line that is no event");
    assert!(ids.len() >= 80, "too few events: {}", ids.len());
    assert!(
        ids.windows(2).all(|w| w[1] == w[0] + 1),
        "a subscriber sees every event in order: first gap at {:?}",
        ids.windows(2).find(|w| w[1] != w[0] + 1)
    );
    eprintln!(
        "subscriber saw {} events; worst request {worst:?}",
        ids.len()
    );
    drop(n);
}

/// `monitoring.routes` turned off and on again by reloads in the middle of
/// a paced burst: turning it on again resyncs, and the daemon ends with
/// the kernel's route count and polls the socket again.
#[test]
fn route_monitoring_toggled_by_reloads_in_a_burst_resyncs_to_the_kernel() {
    let (a, d) = (Ns::new(), Dir::new());
    d.recorder("no-carrier", "50-record");
    gateway_pair(&a, "va", "vb");
    spare(&a, "vc", "vd");
    let n = Daemon::start(&a, &d, "scripts:\n  run_on_startup: false\n");
    let mut ctl = Ctl::connect(&d);
    let before = status(&mut ctl)["routes"].as_u64().unwrap();
    let total = 60_000u32;
    let child = batch_bg(&a, &d.write("burst", &routes(10, 0, total), 0o644));
    sleep_ms(150);
    d.write(
        "conf.d/20-routes.yaml",
        "monitoring:\n  routes: false\n",
        0o644,
    );
    n.signal("HUP");
    sleep_ms(150);
    fs::remove_file(d.join("conf.d/20-routes.yaml")).unwrap();
    n.signal("HUP");
    finish(child);
    wait_routes(&mut ctl, &d, before + total as u64, 60);
    lone_event_is_prompt(&a, &d, "vc");
    drop(n);
}

/// Policy routing while a burst is read at the pace: an uplink's address
/// and gateway added, removed and added again in the middle of it; the
/// daemon's rules and routes (proto 148) still converge to the full set
/// once its requests are answered.
#[test]
fn policy_rules_converge_through_a_paced_burst() {
    let (a, d) = (Ns::new(), Dir::new());
    gateway_pair(&a, "va", "vb");
    a.ip(&["link", "add", "wan1", "type", "veth", "peer", "name", "up1"]);
    for l in ["wan1", "up1"] {
        a.ip(&["link", "set", l, "addrgenmode", "none"]);
        a.ip(&["link", "set", l, "up"]);
    }
    let _n = Daemon::start(&a, &d, "routing:\n  policy_rules: [wan1]\n");
    let uplink = |on: bool| {
        let v = if on { "add" } else { "del" };
        a.ip(&["addr", v, "10.2.0.2/24", "dev", "wan1"]);
        if on {
            a.ip(&[
                "route", "add", "default", "via", "10.2.0.1", "dev", "wan1", "metric", "200",
            ]);
        }
    };
    let child = batch_bg(&a, &d.write("burst", &routes(10, 0, 60_000), 0o644));
    sleep_ms(100);
    uplink(true);
    sleep_ms(100);
    uplink(false);
    sleep_ms(50);
    uplink(true);
    finish(child);
    let full = || {
        let o = owned_entries(&a);
        let j = o.join("\n");
        o.len() == 4
            && j.contains("from 10.2.0.2 lookup")
            && j.contains("to 10.2.0.2 lookup")
            && j.contains("default via 10.2.0.1 dev wan1 table")
            && j.contains("10.2.0.0/24 dev wan1 table")
    };
    let end = Instant::now() + Duration::from_secs(30);
    while !full() {
        assert!(
            Instant::now() < end,
            "policy never converged: {:#?}\nlog:\n{}",
            owned_entries(&a),
            d.log()
        );
        sleep_ms(100);
    }
}

/// A receive buffer that cannot grow (4 KiB, and 4 KiB at most) under a
/// paced burst with a link flapped in it: overrun after overrun, each
/// resync backed off; once the burst is over the daemon still ends with
/// the kernel's routes and the link's admin state, no resync is left
/// open, and the socket is polled again.
#[test]
fn a_burst_against_a_buffer_that_cannot_grow_still_converges() {
    let (a, d) = (Ns::new(), Dir::new());
    d.recorder("no-carrier", "50-record");
    d.write(
        "conf.d/10-buffer.yaml",
        "system:\n  netlink_receive_buffer: 4096\n  netlink_receive_buffer_max: 4096\n",
        0o644,
    );
    gateway_pair(&a, "va", "vb");
    spare(&a, "vc", "vd");
    a.ip(&["link", "add", "du0", "type", "ifb"]);
    a.ip(&["link", "set", "du0", "addrgenmode", "none"]);
    let n = Daemon::start(&a, &d, "scripts:\n  run_on_startup: false\n");
    let mut ctl = Ctl::connect(&d);
    let before = status(&mut ctl)["routes"].as_u64().unwrap();
    let total = 30_000u32;
    let mut script = String::new();
    for k in 0..total / 3000 {
        script.push_str(&routes(10, k * 3000, 3000));
        let up = if k % 2 == 0 { "up" } else { "down" };
        script.push_str(&format!("link set du0 {up}\n"));
    }
    // du0 ends up: its ff00::/8 route in table local counts too.
    script.push_str("link set du0 up\n");
    a.batch(&d.write("burst", &script, 0o644));
    wait_routes(&mut ctl, &d, before + total as u64 + 1, 90);
    // A resync cut short by an overrun is started again: resyncs_started
    // counts attempts, resyncs_completed the dumps that completed. Settled:
    // synced, no new attempt for 2 s, the kernel's routes and du0 up.
    let end = Instant::now() + Duration::from_secs(20);
    let mut last = (u64::MAX, Instant::now());
    loop {
        let s = status(&mut ctl);
        let c = &s["counters"];
        let started = c["resyncs_started"].as_u64().unwrap();
        if started != last.0 {
            last = (started, Instant::now());
        }
        if s["synced"] == true
            && last.1.elapsed() > Duration::from_secs(2)
            && s["routes"].as_u64().unwrap() == before + total as u64 + 1
            && daemon_up(&mut ctl, "du0")
        {
            eprintln!("stuck buffer counters: {c}");
            break;
        }
        assert!(Instant::now() < end, "never settled: {s}");
        sleep_ms(100);
    }
    lone_event_is_prompt(&a, &d, "vc");
    drop(n);
}

/// SIGTERM while a burst is read at the pace, a route hook that ignores
/// SIGTERM running and the burst's routes queued behind it (one hook at a
/// time per link): the daemon kills them after its grace
/// (2 s) and exits cleanly, well within 5 s, starting nothing new.
#[test]
fn sigterm_in_a_paced_burst_with_stubborn_hooks_exits_within_the_grace() {
    let (a, d) = (Ns::new(), Dir::new());
    let started = d.join("started");
    d.write(
        "hooks/routes.d/10-stubborn",
        &format!(
            "#!/bin/sh\ntrap '' TERM\necho $ROUTE_DST >> {}\nsleep 30\n",
            started.display()
        ),
        0o755,
    );
    gateway_pair(&a, "va", "vb");
    let n = Daemon::start(&a, &d, "scripts:\n  run_on_startup: false\n");
    let child = batch_bg(&a, &d.write("burst", &routes(10, 0, 100_000), 0o644));
    let end = Instant::now() + Duration::from_secs(20);
    while fs::read_to_string(&started)
        .unwrap_or_default()
        .lines()
        .count()
        < 1
    {
        assert!(Instant::now() < end, "no route hook started:\n{}", d.log());
        sleep_ms(10);
    }
    let t = Instant::now();
    let code = n.stop();
    let took = t.elapsed();
    let runs = fs::read_to_string(&started)
        .unwrap_or_default()
        .lines()
        .count();
    sleep_ms(300);
    let after = fs::read_to_string(&started)
        .unwrap_or_default()
        .lines()
        .count();
    finish(child);
    assert_eq!(code, Some(0), "log:\n{}", d.log());
    assert!(
        took >= Duration::from_millis(1500),
        "the grace was not given: {took:?}"
    );
    assert!(took < Duration::from_secs(4), "stopping took {took:?}");
    assert_eq!(runs, after, "a hook started after the daemon stopped");
}

/// The daemon stopped (SIGSTOP) while a burst overruns its socket, then
/// continued once the burst is over: its first read after the quiet spell
/// (not paced) meets the overrun, resyncs, and ends with the kernel's
/// route count; the socket is polled again afterwards.
#[test]
fn a_burst_that_overruns_a_stopped_daemon_is_resynced_on_continue() {
    let (a, d) = (Ns::new(), Dir::new());
    d.recorder("no-carrier", "50-record");
    d.write(
        "conf.d/10-buffer.yaml",
        "system:\n  netlink_receive_buffer: 65536\n  netlink_receive_buffer_max: 65536\n",
        0o644,
    );
    gateway_pair(&a, "va", "vb");
    spare(&a, "vc", "vd");
    let n = Daemon::start(&a, &d, "scripts:\n  run_on_startup: false\n");
    let mut ctl = Ctl::connect(&d);
    let before = status(&mut ctl)["routes"].as_u64().unwrap();
    let total = 20_000u32;
    n.signal("STOP");
    a.batch(&d.write("burst", &routes(10, 0, total), 0o644));
    sleep_ms(100);
    n.signal("CONT");
    let s = wait_routes(&mut ctl, &d, before + total as u64, 30);
    let c = &s["counters"];
    assert!(c["netlink_overruns"].as_u64().unwrap() >= 1, "{c}");
    lone_event_is_prompt(&a, &d, "vc");
    drop(n);
}
