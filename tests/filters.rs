//! Event filters with the real daemon, each test in its own network
//! namespace: `ignore` stops a link's hooks while others run, a reload
//! changes the filters for the next event, `scripts` restricts the files
//! run, `log` logs and runs, the hit counts move (control socket and
//! `netevctl filters`), `test --dry-run` explains the decision, and a
//! subscriber's `where` narrows its own stream.

mod common;

use common::*;
use std::process::Command;
use std::time::Duration;

fn sleep_ms(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

/// A veth pair without IPv6 link-local addresses (no DAD noise), both
/// ends up: each end gets a carrier event.
fn veth_up(ns: &Ns, x: &str, y: &str) {
    ns.ip(&["link", "add", x, "type", "veth", "peer", "name", y]);
    for l in [x, y] {
        ns.ip(&["link", "set", l, "addrgenmode", "none"]);
        ns.ip(&["link", "set", l, "up"]);
    }
}

/// The hit count of filter `name` in a `filters` reply.
fn hits(body: &serde_json::Value, name: &str) -> u64 {
    body["filters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == name)
        .unwrap_or_else(|| panic!("no filter {name} in {body}"))["hits"]
        .as_u64()
        .unwrap()
}

#[test]
fn ignore_veth_stops_their_hooks_while_others_run() {
    let (ns, d) = (Ns::new(), Dir::new());
    d.record_all();
    let n = Daemon::start(
        &ns,
        &d,
        "filters:\n  - name: no-veth\n    interface_pattern: \"veth*\"\n    action: ignore\n",
    );
    veth_up(&ns, "veth0", "lan0");
    veth_up(&ns, "veth1", "lan1");
    d.wait_for("carrier hooks of lan0 and lan1", 10, |r| {
        ["lan0", "lan1"]
            .iter()
            .all(|l| r.iter().any(|x| x.link == *l && x.state == "carrier"))
    });
    // The veth ends changed at the same time; give them a moment more.
    sleep_ms(300);
    let r = d.records();
    assert!(
        r.iter().all(|x| !x.link.starts_with("veth")),
        "veth* is ignored: {r:#?}"
    );
    // Subscribers and the history still see the ignored events.
    let mut c = Ctl::connect(&d);
    let ev = c.ok(r#"{"command":"events","link":"veth0"}"#);
    assert!(
        !ev["events"].as_array().unwrap().is_empty(),
        "history keeps ignored events: {ev}"
    );
    let f = c.ok(r#"{"command":"filters"}"#);
    assert!(hits(&f, "no-veth") >= 4, "{f}");
    assert!(f["unmatched"].as_u64().unwrap() >= 4, "{f}");
    assert!(d.log().contains("filter no-veth ignores it"), "{}", d.log());
    drop(n);
}

#[test]
fn a_reload_changes_the_filters_for_the_next_event() {
    let (ns, d) = (Ns::new(), Dir::new());
    d.record_all();
    let _n = Daemon::start(
        &ns,
        &d,
        "filters:\n  - name: quiet\n    interface_pattern: \"fa*\"\n    action: ignore\n",
    );
    veth_up(&ns, "fa0", "fb0");
    d.wait_for("fb0's carrier hook", 10, |r| {
        r.iter().any(|x| x.link == "fb0" && x.state == "carrier")
    });
    sleep_ms(200);
    assert!(d.records().iter().all(|x| x.link != "fa0"));

    // Now fb* is ignored and fa* runs.
    let cfg = d.join("netevd.yaml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, text.replace("\"fa*\"", "\"fb*\"")).unwrap();
    let mut c = Ctl::connect(&d);
    let r = c.ok(r#"{"command":"reload"}"#);
    let changes = r["changes"].to_string();
    assert!(changes.contains("filters: [quiet] -> [quiet]"), "{r}");
    // The filter kept its name, and so its count (2: fa0 at its creation
    // and at carrier, at least).
    let before = hits(&c.ok(r#"{"command":"filters"}"#), "quiet");
    assert!(before >= 2, "{before}");

    ns.ip(&["addr", "add", "192.0.2.1/24", "dev", "fa0"]);
    ns.ip(&["addr", "add", "192.0.2.2/24", "dev", "fb0"]);
    d.wait_for("fa0 routable", 10, |r| {
        r.iter().any(|x| x.link == "fa0" && x.state == "routable")
    });
    sleep_ms(300);
    let r = d.records();
    assert!(
        !r.iter().any(|x| x.link == "fb0" && x.state == "routable"),
        "fb0 is ignored after the reload: {r:#?}"
    );
    let after = hits(&c.ok(r#"{"command":"filters"}"#), "quiet");
    assert!(after > before, "{before} -> {after}");

    // A file whose filters do not parse is refused, and the running ones
    // stay.
    std::fs::write(
        &cfg,
        text.replace("\"fa*\"", "\"fb*\"\n    condition: \"mtu >\""),
    )
    .unwrap();
    let r = c.req(r#"{"command":"reload"}"#);
    assert_eq!(r["error"]["code"], "invalid_config", "{r}");
    let msg = r["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("filters[1] (quiet): condition: mtu is compared with a number"),
        "{msg}"
    );
    let f = c.ok(r#"{"command":"filters"}"#);
    assert_eq!(f["filters"][0]["interface_pattern"], "fb*", "{f}");
}

#[test]
fn scripts_restrict_the_files_run_and_log_runs_them() {
    let (ns, d) = (Ns::new(), Dir::new());
    d.recorder("carrier", "10-a");
    d.recorder("carrier", "20-b");
    let _n = Daemon::start(
        &ns,
        &d,
        "filters:\n  - name: only-b\n    interface: sa\n    event_types: [carrier]\n    action: log\n    scripts: [20-b]\n",
    );
    veth_up(&ns, "sa", "sb");
    d.wait_for("both hooks for sb, 20-b for sa", 10, |r| {
        let has = |l: &str, h: &str| r.iter().any(|x| x.link == l && x.hook == h);
        has("sb", "10-a") && has("sb", "20-b") && has("sa", "20-b")
    });
    sleep_ms(300);
    let r = d.records();
    assert!(
        !r.iter().any(|x| x.link == "sa" && x.hook == "10-a"),
        "scripts: [20-b] keeps 10-a from running for sa: {r:#?}"
    );
    let log = d.log();
    assert!(
        log.contains("filter only-b: event") && log.contains("carrier on sa"),
        "{log}"
    );
}

#[test]
fn netevctl_filters_counts_hits_and_test_dry_run_explains() {
    let (ns, d) = (Ns::new(), Dir::new());
    d.record_all();
    let _n = Daemon::start(
        &ns,
        &d,
        "filters:\n  - name: vpn\n    interface_pattern: \"wg*\"\n    action: execute\n  - name: no-tx\n    condition: 'kind == \"veth\" && !has_address'\n    action: ignore\n",
    );
    let sock = d.join("ctl.sock");
    let ctl = |args: &[&str]| -> Run {
        Command::new(netevctl_bin())
            .arg("--socket")
            .arg(&sock)
            .args(args)
            .output()
            .unwrap()
            .into()
    };
    let json = |args: &[&str]| -> serde_json::Value {
        let r = ctl(args);
        assert_eq!(r.code, Some(0), "{args:?}: {}", r.err);
        serde_json::from_str(&r.out).unwrap()
    };
    let before = json(&["filters", "--json"]);
    assert_eq!(hits(&before, "no-tx"), 0, "{before}");
    veth_up(&ns, "ta", "tb");
    let mut after = before.clone();
    for _ in 0..100 {
        after = json(&["filters", "--json"]);
        if hits(&after, "no-tx") >= 4 {
            break;
        }
        sleep_ms(50);
    }
    assert!(hits(&after, "no-tx") >= 4, "{after}");
    assert_eq!(hits(&after, "vpn"), 0, "{after}");
    let text = ctl(&["filters"]);
    assert_eq!(text.code, Some(0), "{}", text.err);
    let lines: Vec<&str> = text.out.lines().collect();
    assert!(lines[0].starts_with("NAME"), "{}", text.out);
    assert!(
        lines[2].starts_with("no-tx") && lines[2].contains("ignore"),
        "{}",
        text.out
    );
    assert!(
        lines[2].contains("condition=kind == \"veth\" && !has_address"),
        "{}",
        text.out
    );

    // Dry run: which filter decides, and why the ones before did not.
    let r = json(&[
        "test",
        "--state",
        "carrier",
        "--link",
        "ta",
        "--dry-run",
        "--json",
    ]);
    assert_eq!(r["filter"]["name"], "no-tx", "{r}");
    assert_eq!(r["filter"]["action"], "ignore", "{r}");
    assert_eq!(
        r["filter"]["why"][0], "condition \"kind == \\\"veth\\\" && !has_address\" is true",
        "{r}"
    );
    assert_eq!(r["not_matched"][0]["name"], "vpn", "{r}");
    assert_eq!(
        r["not_matched"][0]["why"],
        "interface_pattern \"wg*\" does not match \"ta\""
    );
    assert_eq!(r["hooks"], serde_json::json!([]), "ignored: nothing runs");
    // A dry run is not a hit.
    let again = json(&["filters", "--json"]);
    assert_eq!(hits(&again, "no-tx"), hits(&after, "no-tx"));
    let text = ctl(&["test", "--state", "carrier", "--link", "ta", "--dry-run"]);
    assert!(
        text.out.contains("filter no-tx (ignore):")
            && text.out.contains("not filter vpn: interface_pattern"),
        "{}",
        text.out
    );
    // With an address the condition no longer holds: no filter matches.
    ns.ip(&["addr", "add", "192.0.2.7/24", "dev", "ta"]);
    d.wait_for("ta routable", 10, |r| {
        r.iter().any(|x| x.link == "ta" && x.state == "routable")
    });
    let r = json(&[
        "test",
        "--state",
        "carrier",
        "--link",
        "ta",
        "--dry-run",
        "--json",
    ]);
    assert_eq!(r["filter"], serde_json::Value::Null, "{r}");
    assert_eq!(r["hooks"].as_array().unwrap().len(), 1, "{r}");
}

#[test]
fn a_subscribers_where_filters_its_stream() {
    let (ns, d) = (Ns::new(), Dir::new());
    let _n = Daemon::start(&ns, &d, "");
    let mut c = Ctl::connect(&d);
    // A condition that does not parse is refused, with its column.
    let message = |c: &mut Ctl, line: &str| -> String {
        let r = c.req(line);
        assert_eq!(r["error"]["code"], "bad_request", "{r}");
        r["error"]["message"].as_str().unwrap().to_string()
    };
    let e = message(&mut c, r#"{"command":"subscribe","where":"mtu >= \"x\""}"#);
    assert!(
        e.contains("subscribe: where: column 8: mtu is compared with a number"),
        "{e}"
    );
    let e = message(&mut c, r#"{"command":"events","where":"has_gatway"}"#);
    assert!(e.contains("unknown term \"has_gatway\""), "{e}");
    // The connection goes on and subscribes.
    c.ok(r#"{"command":"subscribe","where":"interface ~ \"wa*\" && state == \"carrier\" && mtu == 1400"}"#);
    ns.ip(&["link", "add", "wb0", "type", "veth", "peer", "name", "wa0"]);
    for l in ["wa0", "wb0"] {
        ns.ip(&["link", "set", l, "addrgenmode", "none"]);
        ns.ip(&["link", "set", l, "mtu", "1400"]);
        ns.ip(&["link", "set", l, "up"]);
    }
    let e = c.line();
    assert_eq!(e["event"]["link"], "wa0", "{e}");
    assert_eq!(e["event"]["state"], "carrier", "{e}");
    // The past, with the same language.
    let mut q = Ctl::connect(&d);
    let past = q.ok(r#"{"command":"events","where":"interface == \"wb0\" && !has_address"}"#);
    let evs = past["events"].as_array().unwrap();
    assert!(
        !evs.is_empty() && evs.iter().all(|e| e["link"] == "wb0"),
        "{past}"
    );

    // netevctl events --follow --where: the same, from the command line.
    let sock = d.join("ctl.sock");
    let mut child = Command::new(netevctl_bin())
        .arg("--socket")
        .arg(&sock)
        .args([
            "events",
            "--follow",
            "--json",
            "--where",
            "interface == \"wc0\"",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    sleep_ms(300);
    veth_up(&ns, "wc0", "wd0");
    let mut out = child.stdout.take().unwrap();
    let mut first = String::new();
    {
        use std::io::BufRead;
        let mut r = std::io::BufReader::new(&mut out);
        r.read_line(&mut first).unwrap();
    }
    let _ = child.kill();
    let _ = child.wait();
    let v: serde_json::Value = serde_json::from_str(&first).unwrap();
    assert_eq!(v["link"], "wc0", "{first}");
    let bad = Command::new(netevctl_bin())
        .arg("--socket")
        .arg(&sock)
        .args(["events", "--where", "mtu >"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(1));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("where: column 6"), "{err}");
}
