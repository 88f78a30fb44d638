//! netevctl against the real daemon in a network namespace: every command
//! in both output forms, `events --follow` seeing a link change, a refused
//! reload, `test --dry-run`, and who may do what on the socket. Each test
//! starts netevd with `control.socket` in its scratch directory.

mod common;

use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{netevctl_bin, Daemon, Dir, Ns, Run};
use serde_json::Value;

impl Run {
    #[track_caller]
    fn ok(self) -> Run {
        assert_eq!(self.code, Some(0), "{self:?}");
        self
    }

    #[track_caller]
    fn json(self) -> Value {
        let r = self.ok();
        assert_eq!(r.out.lines().count(), 1, "--json is one line: {r:?}");
        serde_json::from_str(&r.out).unwrap_or_else(|e| panic!("{e}: {r:?}"))
    }
}

/// A daemon in its namespace with the control socket in its directory,
/// recorder hooks in every state directory.
struct Setup {
    // Fields drop in this order: the daemon goes before its namespace
    // and its directory.
    daemon: Daemon,
    ns: Ns,
    dir: Dir,
    sock: PathBuf,
}

impl Setup {
    fn new(extra_control: &str) -> Setup {
        let ns = Ns::new();
        let dir = Dir::new();
        dir.record_all();
        let sock = dir.join("ctl.sock");
        let config = format!("control:\n  socket: {}\n{extra_control}", sock.display());
        let daemon = Daemon::start(&ns, &dir, &config);
        let s = Setup {
            dir,
            ns,
            daemon,
            sock,
        };
        s.wait_ready();
        s
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(netevctl_bin());
        c.arg("--socket").arg(&self.sock).args(args);
        c.stdin(Stdio::null());
        c
    }

    fn run(&self, args: &[&str]) -> Run {
        self.cmd(args).output().unwrap().into()
    }

    /// The control socket answers once the daemon has set it up.
    fn wait_ready(&self) {
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            let r = self.run(&["status", "--json"]);
            if r.code == Some(0) {
                return;
            }
            assert!(
                Instant::now() < end,
                "the control socket never answered: {r:?}\ndaemon log:\n{}",
                self.dir.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A veth pair ve0/ve1, both up, 192.0.2.1/24 on ve0; returns once
    /// ve0's routable hooks ran.
    fn veth(&self) {
        self.ns
            .ip(&["link", "add", "ve0", "type", "veth", "peer", "name", "ve1"]);
        self.ns.ip(&["addr", "add", "192.0.2.1/24", "dev", "ve0"]);
        self.ns.ip(&["link", "set", "ve0", "up"]);
        self.ns.ip(&["link", "set", "ve1", "up"]);
        self.dir.wait_for("ve0 routable", 15, |r| {
            r.iter().any(|x| x.link == "ve0" && x.state == "routable")
        });
    }

    fn status(&self) -> Value {
        self.run(&["status", "--json"]).json()
    }

    /// Polls `args --json` until `pred` holds for the body.
    fn wait_json(&self, args: &[&str], what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let mut a = args.to_vec();
        a.push("--json");
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            let v = self.run(&a).json();
            if pred(&v) {
                return v;
            }
            assert!(
                Instant::now() < end,
                "timed out waiting for {what}: {v:#}\ndaemon log:\n{}",
                self.dir.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn arr<'a>(v: &'a Value, k: &str) -> &'a Vec<Value> {
    v[k].as_array()
        .unwrap_or_else(|| panic!("{k} is not an array in {v:#}"))
}

#[track_caller]
fn has_line(out: &str, pred: impl Fn(&str) -> bool, what: &str) {
    assert!(out.lines().any(pred), "no line with {what} in:\n{out}");
}

#[test]
fn every_command_in_both_forms() {
    let s = Setup::new("");
    s.veth();
    let pid = s.daemon.pid();

    // status
    let v = s.status();
    assert_eq!(v["pid"], pid, "{v:#}");
    assert_eq!(v["backend"], "kernel");
    assert_eq!(v["synced"], true);
    assert!(v["links"].as_u64().unwrap() >= 3, "lo, ve0, ve1: {v:#}");
    assert!(v["counters"]["events"].as_u64().unwrap() >= 1, "{v:#}");
    let r = s.run(&["status"]).ok();
    has_line(&r.out, |l| l == format!("pid: {pid}"), "the pid");
    has_line(&r.out, |l| l == "backend: kernel", "the backend");
    has_line(&r.out, |l| l == "counters:", "the counters");

    // interfaces
    let v = s.run(&["interfaces", "--json"]).json();
    let ve0 = arr(&v, "interfaces")
        .iter()
        .find(|i| i["name"] == "ve0")
        .unwrap_or_else(|| panic!("no ve0: {v:#}"));
    assert_eq!(ve0["state"], "routable", "{ve0:#}");
    assert!(
        arr(ve0, "addresses")
            .iter()
            .any(|a| a["address"] == "192.0.2.1" && a["prefixlen"] == 24),
        "{ve0:#}"
    );
    let index = ve0["index"].as_u64().unwrap();
    let r = s.run(&["interfaces"]).ok();
    assert!(
        r.out.starts_with("INDEX  NAME"),
        "the table's header: {r:?}"
    );
    has_line(
        &r.out,
        |l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.first() == Some(&index.to_string().as_str())
                && f.get(1) == Some(&"ve0")
                && f.get(2) == Some(&"routable")
                && l.contains("192.0.2.1/24")
        },
        "ve0",
    );

    // interface, by name and by index
    for link in ["ve0".to_string(), index.to_string()] {
        let v = s.run(&["interface", &link, "--json"]).json();
        assert_eq!(v["interface"]["name"], "ve0", "{v:#}");
        assert!(
            arr(&v["interface"], "routes")
                .iter()
                .any(|r| r["dst"] == "192.0.2.0/24"),
            "{v:#}"
        );
    }
    let r = s.run(&["interface", "ve0"]).ok();
    has_line(&r.out, |l| l == "name: ve0", "the name");
    has_line(
        &r.out,
        |l| l.trim_start().starts_with("192.0.2.1/24"),
        "the address",
    );
    has_line(&r.out, |l| l.contains("192.0.2.0/24"), "the prefix route");
    let r = s.run(&["interface", "nope0"]);
    assert_eq!(r.code, Some(1), "{r:?}");
    assert!(r.err.contains("(not_found)"), "{r:?}");

    // routes
    let v = s
        .run(&["routes", "--link", "ve0", "--family", "inet", "--json"])
        .json();
    let routes = arr(&v, "routes");
    assert!(routes.iter().any(|r| r["dst"] == "192.0.2.0/24"), "{v:#}");
    assert!(
        routes
            .iter()
            .all(|r| r["family"] == "inet" && r["ifindex"] == index),
        "{v:#}"
    );
    let v = s.run(&["routes", "--table", "255", "--json"]).json();
    assert!(!arr(&v, "routes").is_empty(), "the local table: {v:#}");
    assert!(arr(&v, "routes").iter().all(|r| r["table"] == 255), "{v:#}");
    let r = s.run(&["routes", "--link", "ve0"]).ok();
    assert!(r.out.starts_with("FAMILY  DST"), "{r:?}");
    has_line(
        &r.out,
        |l| l.starts_with("inet ") && l.contains("192.0.2.0/24") && l.contains("ve0"),
        "the prefix route",
    );

    // rules: none of netevd's own without policy routing; every kernel
    // rule with --all.
    let v = s.run(&["rules", "--json"]).json();
    assert!(arr(&v, "rules").is_empty(), "{v:#}");
    let v = s.run(&["rules", "--all", "--json"]).json();
    assert!(
        arr(&v, "rules")
            .iter()
            .any(|r| r["priority"] == 32766 && r["own"] == false),
        "the main table's rule: {v:#}"
    );
    let r = s.run(&["rules", "--all"]).ok();
    assert!(r.out.starts_with("PRIORITY  FAMILY"), "{r:?}");
    has_line(&r.out, |l| l.starts_with("32766 "), "the main rule");

    // events
    let v = s.run(&["events", "--link", "ve0", "--json"]).json();
    let evs = arr(&v, "events");
    assert!(
        evs.iter().any(|e| e["state"] == "routable"),
        "ve0 became routable: {v:#}"
    );
    assert!(evs.iter().all(|e| e["link"] == "ve0"), "{v:#}");
    let v = s
        .run(&["events", "--limit", "1", "--kind", "state", "--json"])
        .json();
    assert_eq!(arr(&v, "events").len(), 1, "{v:#}");
    assert_eq!(v["events"][0]["event"], "state", "{v:#}");
    let r = s.run(&["events", "--link", "ve0"]).ok();
    assert!(r.out.starts_with("ID  TIME"), "{r:?}");
    has_line(
        &r.out,
        |l| l.contains(" ve0 ") && l.contains("routable") && l.contains("192.0.2.1/24"),
        "ve0 routable",
    );

    // history: the recorder's runs, once they have finished.
    let v = s.wait_json(&["history", "--link", "ve0"], "ve0's hook runs", |v| {
        arr(v, "runs")
            .iter()
            .any(|r| r["state"] == "routable" && r["exit_code"] == 0)
    });
    assert!(
        arr(&v, "runs")
            .iter()
            .all(|r| r["link"] == "ve0" && r["hook"].as_str().unwrap().contains("50-record")),
        "{v:#}"
    );
    let v = s.run(&["history", "--limit", "1", "--json"]).json();
    assert_eq!(arr(&v, "runs").len(), 1, "{v:#}");
    let r = s.run(&["history", "--link", "ve0"]).ok();
    assert!(r.out.starts_with("STARTED"), "{r:?}");
    has_line(
        &r.out,
        |l| l.contains("ve0") && l.contains("50-record") && l.ends_with("exit 0"),
        "a finished run",
    );

    // hooks
    let v = s.run(&["hooks", "--json"]).json();
    assert_eq!(
        v["script_dir"],
        s.dir.join("hooks").to_str().unwrap(),
        "{v:#}"
    );
    let routable = arr(&v, "directories")
        .iter()
        .find(|d| d["state"] == "routable")
        .unwrap_or_else(|| panic!("no routable directory: {v:#}"));
    assert_eq!(routable["exists"], true);
    assert!(
        arr(routable, "hooks")
            .iter()
            .any(|h| h.as_str().unwrap().ends_with("50-record")),
        "{v:#}"
    );
    let r = s.run(&["hooks"]).ok();
    has_line(
        &r.out,
        |l| l.starts_with("routable ") && l.contains("routable.d/50-record") && l.ends_with("runs"),
        "the routable hook",
    );

    // reload of the unchanged file
    let v = s.run(&["reload", "--json"]).json();
    assert_eq!(v["reloaded"], true, "{v:#}");
    let r = s.run(&["reload"]).ok();
    assert!(r.out.starts_with("reloaded"), "{r:?}");

    // test: the hooks really run, with EVENT=test.
    let v = s
        .run(&["test", "--state", "carrier", "--link", "ve0", "--json"])
        .json();
    assert!(v["event_id"].as_u64().is_some(), "{v:#}");
    assert_eq!(v["state"], "carrier");
    assert!(!arr(&v, "hooks").is_empty(), "{v:#}");
    s.dir.wait_for("the test event's hook", 10, |r| {
        r.iter()
            .any(|x| x.link == "ve0" && x.state == "carrier" && x.event == "test")
    });
    let r = s.run(&["test", "--state", "carrier", "--link", "ve0"]).ok();
    assert!(r.out.starts_with("event "), "{r:?}");
    has_line(
        &r.out,
        |l| l.starts_with("hook ") && l.contains("carrier.d/50-record"),
        "the hook",
    );
    let r = s.run(&["test", "--state", "carrier", "--link", "nope0"]);
    assert_eq!(r.code, Some(1), "{r:?}");
    assert!(r.err.contains("(not_found)"), "{r:?}");
}

#[test]
fn test_dry_run_prints_each_hook_with_its_environment() {
    let s = Setup::new("");
    s.veth();
    let v = s
        .run(&[
            "test",
            "--state",
            "routable",
            "--link",
            "ve0",
            "--dry-run",
            "--json",
        ])
        .json();
    assert!(v["event_id"].is_null(), "{v:#}");
    let hooks = arr(&v, "hooks");
    assert_eq!(hooks.len(), 1, "{v:#}");
    let h = &hooks[0];
    assert!(
        h["path"]
            .as_str()
            .unwrap()
            .ends_with("routable.d/50-record"),
        "{h:#}"
    );
    assert_eq!(h["environment"]["LINK"], "ve0", "{h:#}");
    assert_eq!(h["environment"]["STATE"], "routable", "{h:#}");
    assert!(
        h["environment"]["ADDRESSES"]
            .as_str()
            .unwrap()
            .contains("192.0.2.1"),
        "{h:#}"
    );

    let r = s
        .run(&["test", "--state", "routable", "--link", "ve0", "--dry-run"])
        .ok();
    assert!(r.out.starts_with("dry run: routable on ve0\n"), "{r:?}");
    has_line(
        &r.out,
        |l| l.starts_with("hook ") && l.ends_with("routable.d/50-record"),
        "the hook",
    );
    has_line(&r.out, |l| l == "  LINK=ve0", "LINK");
    has_line(&r.out, |l| l == "  STATE=routable", "STATE");
    has_line(&r.out, |l| l.starts_with("  JSON="), "JSON");

    // Nothing ran for a test event (other hooks may, as ve0 and ve1 get
    // their IPv6 link-local addresses).
    std::thread::sleep(Duration::from_millis(500));
    let tests: Vec<_> = s
        .dir
        .records()
        .into_iter()
        .filter(|r| r.event == "test")
        .collect();
    assert!(tests.is_empty(), "{tests:#?}");
}

/// Reads a follower's stdout lines on a thread.
fn lines_of(child: &mut Child) -> mpsc::Receiver<String> {
    let out = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines() {
            let Ok(l) = l else { return };
            if tx.send(l).is_err() {
                return;
            }
        }
    });
    rx
}

/// Waits for a line that `pred` accepts.
fn wait_line(rx: &mpsc::Receiver<String>, what: &str, pred: impl Fn(&str) -> bool) -> String {
    let end = Instant::now() + Duration::from_secs(10);
    let mut seen = Vec::new();
    loop {
        let left = end.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) if pred(&l) => return l,
            Ok(l) => seen.push(l),
            Err(_) => panic!("no line with {what}; saw:\n{}", seen.join("\n")),
        }
    }
}

#[test]
fn events_follow_sees_a_link_change() {
    let s = Setup::new("");
    s.veth();
    let mut json = s
        .cmd(&["events", "--follow", "--link", "ve0", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut human = s
        .cmd(&["events", "--follow", "--link", "ve0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let json_lines = lines_of(&mut json);
    let human_lines = lines_of(&mut human);
    // Both subscriptions are in place before the change.
    s.wait_json(&["status"], "two subscribers", |v| v["subscribers"] == 2);

    // ve1 down takes ve0's carrier away.
    s.ns.ip(&["link", "set", "ve1", "down"]);
    let l = wait_line(&json_lines, "ve0 no-carrier", |l| {
        let v: Value = serde_json::from_str(l).unwrap();
        v["link"] == "ve0" && v["state"] == "no-carrier"
    });
    let v: Value = serde_json::from_str(&l).unwrap();
    assert_eq!(v["event"], "state", "{v:#}");
    assert_eq!(v["previous_state"], "routable", "{v:#}");
    wait_line(&human_lines, "ve0 no-carrier", |l| {
        l.contains(" state ve0 routable->no-carrier")
    });
    // Nothing for other links came through the filter.
    s.ns.ip(&["link", "set", "ve1", "up"]);
    let l = wait_line(&json_lines, "ve0 back", |l| {
        let v: Value = serde_json::from_str(l).unwrap();
        v["state"] != "no-carrier"
    });
    let v: Value = serde_json::from_str(&l).unwrap();
    assert_eq!(v["link"], "ve0", "{v:#}");

    // The daemon stopping ends the stream: exit 1, and it says so.
    s.daemon.signal("TERM");
    for (child, name) in [(json, "json"), (human, "human")] {
        let o = wait_exit(child);
        assert_eq!(o.code, Some(1), "{name}: {o:?}");
        assert!(
            o.err.contains("closed the subscription") || o.err.contains("dropped the subscription"),
            "{name}: {o:?}"
        );
    }
}

/// Waits up to 10 s for a child to exit; kills it if it does not.
fn wait_exit(mut child: Child) -> Run {
    let end = Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > end {
            let _ = child.kill();
            panic!(
                "netevctl did not exit: {:?}",
                child.wait_with_output().map(Run::from)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap().into()
}

#[test]
fn reload_of_an_invalid_file_is_refused_with_the_daemons_message() {
    let s = Setup::new("");
    let cfg = s.dir.join("netevd.yaml");
    let good = fs::read_to_string(&cfg).unwrap();
    let hash = s.status()["config_hash"].clone();
    fs::write(&cfg, format!("{good}scripts:\n  timeout_secs: 3\n")).unwrap();
    for json in [false, true] {
        let r = s.run(if json {
            &["reload", "--json"]
        } else {
            &["reload"]
        });
        assert_eq!(r.code, Some(1), "{r:?}");
        assert!(r.out.is_empty(), "{r:?}");
        assert!(r.err.contains("unknown key \"timeout_secs\""), "{r:?}");
        assert!(r.err.trim_end().ends_with("(invalid_config)"), "{r:?}");
    }
    // The running configuration stays, and the daemon still answers.
    assert_eq!(s.status()["config_hash"], hash);

    // Put right, the reload goes through and names the change.
    fs::write(&cfg, format!("{good}scripts:\n  timeout_seconds: 3\n")).unwrap();
    let v = s.run(&["reload", "--json"]).json();
    assert_eq!(v["reloaded"], true, "{v:#}");
    assert_ne!(s.status()["config_hash"], hash);
}

/// The name of a group that exists and that uid 65534's own group is not,
/// for `control.group`.
fn other_group() -> (String, u32) {
    let groups = fs::read_to_string("/etc/group").unwrap();
    groups
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some((f.first()?.to_string(), f.get(2)?.parse::<u32>().ok()?))
        })
        .find(|(_, gid)| *gid != 0 && *gid != 65534)
        .expect("a group other than root and nogroup in /etc/group")
}

/// netevctl as uid 65534 with primary group `gid` and no others.
fn as_uid_65534(s: &Setup, gid: u32, args: &[&str]) -> Run {
    let mut c = s.cmd(args);
    // SAFETY: only async-signal-safe system calls between fork and exec.
    unsafe {
        c.pre_exec(move || {
            nix::unistd::setgroups(&[])?;
            nix::unistd::setgid(nix::unistd::Gid::from_raw(gid))?;
            nix::unistd::setuid(nix::unistd::Uid::from_raw(65534))?;
            Ok(())
        });
    }
    c.output().unwrap().into()
}

#[test]
fn anyone_who_connects_may_query_only_the_group_may_change() {
    common::require_root();
    let (group, gid) = other_group();
    let s = Setup::new(&format!("  group: {group}\n"));
    // uid 65534 must get through the directories to the socket.
    fs::set_permissions(&s.dir.path, fs::Permissions::from_mode(0o755)).unwrap();

    let md = fs::metadata(&s.sock).unwrap();
    assert_eq!(md.mode() & 0o777, 0o660, "the socket's mode");
    assert_eq!(md.gid(), gid, "the socket's group");

    // Not in the group: cannot even connect, and is told which to join.
    let r = as_uid_65534(&s, 65534, &["status"]);
    assert_eq!(r.code, Some(1), "{r:?}");
    assert!(
        r.err
            .contains(&format!("permission denied on {}", s.sock.display()))
            && r.err.contains(&format!("join group {group}")),
        "{r:?}"
    );

    // A member may query and change.
    let v = as_uid_65534(&s, gid, &["status", "--json"]).json();
    assert_eq!(v["backend"], "kernel");
    let r = as_uid_65534(&s, gid, &["reload"]);
    assert_eq!(r.code, Some(0), "{r:?}");

    // The administrator opens the socket to everyone: a non-member may
    // query, but not reload or test.
    fs::set_permissions(&s.sock, fs::Permissions::from_mode(0o666)).unwrap();
    let v = as_uid_65534(&s, 65534, &["status", "--json"]).json();
    assert_eq!(v["backend"], "kernel");
    as_uid_65534(&s, 65534, &["interfaces"]).ok();
    for args in [
        &["reload"][..],
        &["test", "--state", "carrier", "--link", "lo"],
        &["test", "--state", "carrier", "--link", "lo", "--dry-run"],
    ] {
        let r = as_uid_65534(&s, 65534, args);
        assert_eq!(r.code, Some(1), "{args:?}: {r:?}");
        assert!(
            r.err.trim_end().ends_with("(permission_denied)"),
            "{args:?}: {r:?}"
        );
    }
    // Root may.
    s.run(&["reload"]).ok();
}
