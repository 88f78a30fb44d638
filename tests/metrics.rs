//! Metrics from the real daemon in its own namespace: the counters move as
//! hooks run, fail and time out; `netevctl metrics` prints the exposition,
//! which `promtool check metrics` accepts when promtool is installed
//! (Debian package `prometheus`).

mod common;

use common::*;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The value of the series `series` (name and labels as printed).
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.parse().unwrap())
}

fn metrics(dir: &Dir) -> String {
    let body = Ctl::connect(dir).ok(r#"{"command":"metrics"}"#);
    assert_eq!(body["format"], "prometheus-text-0.0.4");
    body["text"].as_str().unwrap().to_string()
}

/// Waits until `pred` holds for the exposition, or panics with it.
fn wait_metrics(dir: &Dir, what: &str, pred: impl Fn(&str) -> bool) -> String {
    let end = Instant::now() + Duration::from_secs(15);
    loop {
        let t = metrics(dir);
        if pred(&t) {
            return t;
        }
        assert!(
            Instant::now() < end,
            "timed out waiting for {what}:\n{t}\nlog:\n{}",
            dir.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A veth pair in `ns` whose `a` end becomes routable.
fn routable(ns: &Ns, a: &str, b: &str, addr: &str) {
    ns.ip(&["link", "add", a, "type", "veth", "peer", "name", b]);
    ns.ip(&["link", "set", a, "addrgenmode", "none"]);
    ns.ip(&["link", "set", b, "addrgenmode", "none"]);
    ns.ip(&["link", "set", b, "up"]);
    ns.ip(&["link", "set", a, "up"]);
    ns.ip(&["addr", "add", addr, "dev", a]);
}

#[test]
fn counters_move_as_hooks_run_fail_and_time_out() {
    let ns = Ns::new();
    let dir = Dir::new();
    dir.write("hooks/routable.d/10-ok", "#!/bin/sh\nexit 0\n", 0o755);
    dir.write("hooks/routable.d/20-fail", "#!/bin/sh\nexit 3\n", 0o755);
    dir.write(
        "hooks/routable.d/30-slow",
        "#!/bin/sh\nexec sleep 30\n",
        0o755,
    );
    let _d = Daemon::start(
        &ns,
        &dir,
        "scripts:\n  run_on_startup: false\n  timeout_seconds: 1\n",
    );
    let before = metrics(&dir);
    assert_eq!(
        value(&before, "netevd_hook_runs_total{result=\"success\"}"),
        Some(0.0)
    );
    assert_eq!(value(&before, "netevd_resyncs_total"), Some(1.0));
    assert!(value(&before, "netevd_netlink_messages_total").unwrap() > 0.0);
    routable(&ns, "mt0", "mt1", "10.77.0.1/24");
    let t = wait_metrics(&dir, "three hook runs", |t| {
        value(t, "netevd_hook_duration_seconds_count") == Some(3.0)
    });
    let get = |s: &str| value(&t, s).unwrap_or_else(|| panic!("no {s} in\n{t}"));
    assert_eq!(get("netevd_hook_runs_total{result=\"success\"}"), 1.0);
    assert_eq!(get("netevd_hook_runs_total{result=\"failure\"}"), 1.0);
    assert_eq!(get("netevd_hook_runs_total{result=\"timeout\"}"), 1.0);
    assert_eq!(get("netevd_hook_runs_total{result=\"not_started\"}"), 0.0);
    assert_eq!(get("netevd_hook_timeouts_total"), 1.0);
    // The slow one ran about a second: its bucket is above 0.5 s.
    assert_eq!(
        get("netevd_hook_duration_seconds_bucket{le=\"0.5\"}"),
        2.0,
        "{t}"
    );
    assert_eq!(get("netevd_hook_duration_seconds_bucket{le=\"+Inf\"}"), 3.0);
    assert!(get("netevd_hook_duration_seconds_sum") >= 1.0);
    assert!(get("netevd_events_total{kind=\"state\",backend=\"kernel\"}") >= 1.0);
    assert!(get("netevd_event_duration_seconds_count") >= 1.0);
    assert!(get("netevd_interface_state_changes_total") >= 1.0);
    assert!(get("netevd_interfaces{state=\"routable\"}") >= 1.0);
    // lo, mt0 and mt1 are the namespace's links.
    let links: f64 = metrics_states().iter().map(|s| get(s)).sum();
    assert!(links >= 3.0, "{t}");
    assert!(get("netevd_routes{family=\"inet\"}") >= 1.0);
    assert_eq!(get("netevd_routing_rules"), 0.0);
    assert!(get("netevd_control_requests_total{command=\"metrics\"}") >= 2.0);
    // A request that does not parse counts as `invalid`.
    let mut c = Ctl::connect(&dir);
    assert_eq!(c.err(r#"{"command":"nope"}"#), "unknown_command");
    assert_eq!(c.err("not json"), "bad_request");
    let t = metrics(&dir);
    assert_eq!(
        value(&t, "netevd_control_requests_total{command=\"invalid\"}"),
        Some(2.0)
    );
    // A hook that cannot run at all counts as not started.
    dir.write(
        "hooks/routes.d/10-gone",
        "#!/nonexistent/interpreter\n",
        0o755,
    );
    ns.ip(&["route", "add", "10.78.0.0/24", "dev", "mt0"]);
    wait_metrics(&dir, "a hook that could not start", |t| {
        value(t, "netevd_hook_runs_total{result=\"not_started\"}") == Some(1.0)
    });
}

fn metrics_states() -> Vec<String> {
    [
        "off",
        "no-carrier",
        "dormant",
        "carrier",
        "degraded",
        "routable",
    ]
    .iter()
    .map(|s| format!("netevd_interfaces{{state=\"{s}\"}}"))
    .collect()
}

#[test]
fn netevctl_metrics_prints_the_exposition_and_promtool_accepts_it() {
    let ns = Ns::new();
    let dir = Dir::new();
    dir.write("hooks/routable.d/10-ok", "#!/bin/sh\nexit 0\n", 0o755);
    let _d = Daemon::start(
        &ns,
        &dir,
        "metrics:\n  per_interface: true\n  max_interfaces: 2\n",
    );
    routable(&ns, "pm0", "pm1", "10.79.0.1/24");
    wait_metrics(&dir, "a hook run", |t| {
        value(t, "netevd_hook_runs_total{result=\"success\"}") == Some(1.0)
    });
    let sock = dir.join("ctl.sock");
    let o: Run = Command::new(netevctl_bin())
        .args(["--socket", sock.to_str().unwrap(), "metrics"])
        .output()
        .unwrap()
        .into();
    assert_eq!(o.code, Some(0), "{o:?}");
    assert!(o.out.starts_with("# HELP netevd_uptime_seconds "), "{o:?}");
    assert!(
        o.out
            .contains("netevd_interface_state_changes_total{interface=\"pm0\"}"),
        "{o:?}"
    );
    assert!(o.err.is_empty(), "{o:?}");
    let j: Run = Command::new(netevctl_bin())
        .args(["--socket", sock.to_str().unwrap(), "metrics", "--json"])
        .output()
        .unwrap()
        .into();
    let v: serde_json::Value = serde_json::from_str(&j.out).unwrap();
    assert!(v["text"]
        .as_str()
        .unwrap()
        .contains("# TYPE netevd_events_total counter"));

    let promtool = Command::new("promtool").arg("--version").output();
    if promtool.is_err() {
        eprintln!(
            "SKIPPED: promtool is not installed (Debian package prometheus): \
             the exposition was not checked by it"
        );
        return;
    }
    let mut p = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    p.stdin.take().unwrap().write_all(o.out.as_bytes()).unwrap();
    let r: Run = p.wait_with_output().unwrap().into();
    assert_eq!(r.code, Some(0), "promtool check metrics:\n{r:?}\n{}", o.out);
    assert!(r.out.trim().is_empty() && r.err.trim().is_empty(), "{r:?}");
}

#[test]
fn interface_label_is_capped_and_metrics_can_be_off() {
    let ns = Ns::new();
    let dir = Dir::new();
    let _d = Daemon::start(
        &ns,
        &dir,
        "metrics:\n  per_interface: true\n  max_interfaces: 1\n",
    );
    routable(&ns, "ca0", "ca1", "10.80.0.1/24");
    routable(&ns, "cb0", "cb1", "10.81.0.1/24");
    let t = wait_metrics(&dir, "both links routable", |t| {
        value(t, "netevd_interfaces{state=\"routable\"}") == Some(2.0)
    });
    let labelled: Vec<&str> = t
        .lines()
        .filter(|l| l.starts_with("netevd_interface_state_changes_total{"))
        .collect();
    assert_eq!(labelled.len(), 2, "{t}");
    assert!(
        labelled.iter().any(|l| l.contains("interface=\"_other\"")),
        "{t}"
    );

    // Off by reload: the command is refused, the daemon goes on.
    let cfg = config_text(&dir, "metrics:\n  enabled: false\n");
    dir.write("netevd.yaml", &cfg, 0o644);
    let mut c = Ctl::connect(&dir);
    let r = c.ok(r#"{"command":"reload"}"#);
    assert!(
        r["changes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x == "metrics settings changed"),
        "{r}"
    );
    assert_eq!(c.err(r#"{"command":"metrics"}"#), "unavailable");
    c.ok(r#"{"command":"status"}"#);
}
