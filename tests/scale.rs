//! Routes at scale: 100,000 routes added in one `ip -batch` are all
//! counted, cost little memory, and the memory comes back once they are
//! deleted; with a route hook running through the load too (10,000
//! routes there: every route is a hook run of its own). The million-route
//! figures are the bench's (`make bench-scale`).
//!
//! Needs root and iproute2 (Debian: iproute2).

mod common;

use std::time::{Duration, Instant};

use common::*;

/// The daemon's `status` counts.
fn status(dir: &Dir) -> serde_json::Value {
    Ctl::connect(dir).ok(r#"{"command":"status"}"#)
}

fn wait_routes(dir: &Dir, want: u64, secs: u64) {
    let end = Instant::now() + Duration::from_secs(secs);
    loop {
        let n = status(dir)["routes"].as_u64().unwrap();
        if n == want {
            return;
        }
        assert!(
            Instant::now() < end,
            "the daemon holds {n} routes, not {want}\n{}",
            dir.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// CPU seconds `pid` used so far.
fn cpu_s(pid: u32) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let f: Vec<&str> = s.rsplit_once(')').unwrap().1.split_whitespace().collect();
    (f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()) as f64 / 100.0
}

/// Until `pid` used no CPU for a second, and then the trim that follows
/// a burst (500 ms after the last input) has run.
fn settle(pid: u32) {
    let end = Instant::now() + Duration::from_secs(300);
    let mut last = cpu_s(pid);
    let mut still = Instant::now();
    while still.elapsed() < Duration::from_secs(1) {
        assert!(Instant::now() < end, "the daemon did not settle");
        std::thread::sleep(Duration::from_millis(100));
        let c = cpu_s(pid);
        if c != last {
            last = c;
            still = Instant::now();
        }
    }
    std::thread::sleep(Duration::from_millis(700));
}

fn setup() -> Ns {
    let ns = Ns::new();
    // No IPv6 link-local addresses, whose routes would come while the
    // routes are counted.
    for k in ["all", "default"] {
        run(
            "ip",
            &[
                "netns",
                "exec",
                &ns.name,
                "sysctl",
                "-qw",
                &format!("net.ipv6.conf.{k}.disable_ipv6=1"),
            ],
        );
    }
    ns.ip(&["link", "add", "va", "type", "veth", "peer", "name", "vb"]);
    ns.ip(&["link", "set", "va", "up"]);
    ns.ip(&["link", "set", "vb", "up"]);
    ns.ip(&["addr", "add", "10.0.0.1/24", "dev", "va"]);
    ns
}

/// `route add|del` lines for `n` /24s through va, sorted.
fn batch(dir: &Dir, name: &str, verb: &str, n: u32) -> std::path::PathBuf {
    let mut s = String::with_capacity(n as usize * 48);
    for i in 0..n {
        let a = 0x0b00_0000u32 + (i << 8);
        s += &format!(
            "route {verb} {}.{}.{}.0/24 via 10.0.0.2 dev va\n",
            a >> 24,
            (a >> 16) & 255,
            (a >> 8) & 255
        );
    }
    dir.write(name, &s, 0o644)
}

/// Until every event has had its hook run or was folded into a newer one
/// (one hook, in routes.d, and route events only): a starved hook can
/// leave the daemon without CPU for a second while events still wait.
fn drained(dir: &Dir) {
    let end = Instant::now() + Duration::from_secs(300);
    loop {
        let c = status(dir)["counters"].clone();
        let n = |k: &str| c[k].as_u64().unwrap();
        if n("events") == n("hooks_started") + n("coalesced") {
            return;
        }
        assert!(Instant::now() < end, "hooks did not catch up: {c}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Adds and deletes `n` routes; returns (idle, loaded, after) RSS in KiB.
/// Idle is taken once 300 routes came and went: the event and hook-run
/// histories (bounded rings, 256 events and 64 runs by default) are full
/// then, as they are in a daemon that has run for a while, and what they
/// hold is not what a burst left behind.
fn load(ns: &Ns, dir: &Dir, d: &Daemon, n: u32, hook: bool) -> (u64, u64, u64) {
    let settle = |pid| {
        if hook {
            drained(dir);
        }
        settle(pid)
    };
    let mut warm = String::new();
    for verb in ["add", "del"] {
        for i in 0..300 {
            warm += &format!(
                "route {verb} 12.{}.{}.0/24 via 10.0.0.2 dev va\n",
                i >> 8,
                i & 255
            );
        }
    }
    ns.batch(&dir.write("warm", &warm, 0o644));
    settle(d.pid());
    let base = status(dir)["routes"].as_u64().unwrap();
    let kernel = || {
        ns.output(&["route", "show", "table", "all"])
            .lines()
            .count() as u64
    };
    let kernel_base = kernel();
    let idle = rss_kib(d.pid());
    ns.batch(&batch(dir, "add", "add", n));
    wait_routes(dir, base + n as u64, 300);
    // The kernel gained as many as the daemon counted.
    assert_eq!(kernel(), kernel_base + n as u64);
    settle(d.pid());
    let loaded = rss_kib(d.pid());
    ns.batch(&batch(dir, "del", "del", n));
    wait_routes(dir, base, 300);
    settle(d.pid());
    (idle, loaded, rss_kib(d.pid()))
}

#[test]
fn hundred_thousand_routes_are_counted_and_their_memory_comes_back() {
    let ns = setup();
    let dir = Dir::new();
    let d = Daemon::start(&ns, &dir, "scripts:\n  run_on_startup: false\n");
    let n = 100_000;
    let (idle, loaded, after) = load(&ns, &dir, &d, n, false);
    let per = (loaded.saturating_sub(idle) * 1024) as f64 / n as f64;
    eprintln!("{n} routes: idle {idle} KiB, loaded {loaded} KiB ({per:.1} bytes a route), after {after} KiB");
    // The counters say whether an overrun (and a resync's held changes)
    // came into it.
    assert!(
        per <= 48.0,
        "{per:.1} bytes a route; {}",
        status(&dir)["counters"]
    );
    assert!(
        after as f64 <= idle as f64 * 1.2,
        "RSS {after} KiB after deletion, {idle} KiB idle"
    );
    let c = &status(&dir)["counters"];
    assert_eq!(c["resyncs_started"], c["resyncs_completed"], "{c}");
    assert!(
        c["netlink_receive_buffer"].as_u64().unwrap() >= 4 << 20,
        "{c}"
    );
    d.stop();
}

#[test]
fn memory_comes_back_after_a_route_hook_ran_through_the_load() {
    let ns = setup();
    let dir = Dir::new();
    dir.write("hooks/routes.d/50-noop", "#!/bin/sh\nexit 0\n", 0o755);
    let d = Daemon::start(&ns, &dir, "scripts:\n  run_on_startup: false\n");
    let n = 10_000;
    let (idle, loaded, after) = load(&ns, &dir, &d, n, true);
    let c = status(&dir)["counters"].clone();
    eprintln!(
        "{n} routes with a hook: idle {idle} KiB, loaded {loaded} KiB, after {after} KiB; {} runs, {} coalesced",
        c["hooks_started"], c["coalesced"]
    );
    assert!(c["hooks_started"].as_u64().unwrap() > 0, "{c}");
    // The goal is 1.2x (issue 11; `make bench-scale` measures it on the
    // release build: 1.14x). This debug build, with 10,000 hook runs'
    // allocations behind it, has measured 1.16x to 1.22x on a loaded
    // machine: the bound here catches memory that stays, not the last
    // few hundred KiB of a fragmented heap.
    assert!(
        after as f64 <= idle as f64 * 1.3,
        "RSS {after} KiB after deletion, {idle} KiB idle"
    );
    d.stop();
}

/// `monitoring.routes: none`: no route is kept, and memory does not move.
#[test]
fn without_route_monitoring_a_table_costs_nothing() {
    let ns = setup();
    let dir = Dir::new();
    let d = Daemon::start(
        &ns,
        &dir,
        "scripts:\n  run_on_startup: false\nmonitoring:\n  routes: none\n",
    );
    settle(d.pid());
    let idle = rss_kib(d.pid());
    let n = 50_000;
    ns.batch(&batch(&dir, "add", "add", n));
    settle(d.pid());
    assert_eq!(status(&dir)["routes"], 0);
    let loaded = rss_kib(d.pid());
    eprintln!("{n} routes unmonitored: idle {idle} KiB, loaded {loaded} KiB");
    assert!(
        loaded as f64 <= idle as f64 * 1.1,
        "RSS {loaded} KiB with {n} routes, {idle} KiB idle"
    );
    d.stop();
}

/// Every shared library a process maps is resident memory of its own
/// (the kernel maps 64 KiB around each page touched): the daemon loads
/// libc, libgcc_s (unwinding) and the loader, nothing else. libm came in
/// for one log10 once, and cost a third of a MiB.
#[test]
fn the_daemon_loads_no_library_but_libc_and_libgcc() {
    let out = match std::process::Command::new("readelf")
        .args(["-dW", env!("CARGO_BIN_EXE_netevd")])
        .output()
    {
        Ok(o) => o,
        Err(e) => {
            eprintln!("readelf: {e}: skipped (Debian: binutils)");
            return;
        }
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let needed: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("(NEEDED)"))
        .filter_map(|l| l.split('[').nth(1)?.split(']').next())
        .collect();
    assert!(!needed.is_empty(), "{text}");
    for lib in &needed {
        assert!(
            lib.starts_with("libc.so")
                || lib.starts_with("libgcc_s.so")
                || lib.starts_with("ld-linux"),
            "the daemon needs {lib}: {needed:?}"
        );
    }
}
