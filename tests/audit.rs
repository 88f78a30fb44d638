//! The audit log from the real daemon in its own namespace: every kind of
//! line, size-based rotation with queries across the rotated files,
//! reopening on SIGUSR1, and a full file system that must not stall the
//! daemon (a tiny tmpfs the test mounts; util-linux's mount).

mod common;

use common::*;
use serde_json::Value;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn lines(p: &Path) -> Vec<Value> {
    fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect()
}

/// Waits until the file at `p` has a line for which `pred` holds.
fn wait_line(dir: &Dir, p: &Path, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let end = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(v) = lines(p).into_iter().find(|v| pred(v)) {
            return v;
        }
        assert!(
            Instant::now() < end,
            "no {what} line in {}:\n{}\nlog:\n{}",
            p.display(),
            fs::read_to_string(p).unwrap_or_default(),
            dir.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn netevctl(dir: &Dir, args: &[&str]) -> Run {
    let sock = dir.join("ctl.sock");
    Command::new(netevctl_bin())
        .args(["--socket", sock.to_str().unwrap()])
        .args(args)
        .output()
        .unwrap()
        .into()
}

fn audit_config(path: &Path, extra: &str) -> String {
    format!(
        "audit:\n  enabled: true\n  path: {}\n{extra}scripts:\n  run_on_startup: false\n",
        path.display()
    )
}

#[test]
fn every_kind_of_line_is_written_and_queried() {
    let ns = Ns::new();
    let dir = Dir::new();
    let log = dir.join("var/audit.jsonl");
    dir.write(
        "hooks/routable.d/10-say",
        "#!/bin/sh\necho \"hello from $LINK\"\necho second line\nexit 2\n",
        0o755,
    );
    let cfg = audit_config(&log, "routing:\n  policy_rules: [au0]\n");
    let d = Daemon::start(&ns, &dir, &cfg);
    ns.ip(&["link", "add", "au0", "type", "veth", "peer", "name", "au1"]);
    for l in ["au0", "au1"] {
        ns.ip(&["link", "set", l, "addrgenmode", "none"]);
        ns.ip(&["link", "set", l, "up"]);
    }
    ns.ip(&["addr", "add", "10.82.0.2/24", "dev", "au0"]);

    let st = wait_line(&dir, &log, "state", |v| {
        v["kind"] == "state" && v["link"] == "au0" && v["state"] == "routable"
    });
    assert_eq!(st["event"], "state");
    assert_eq!(st["backend"], "kernel");
    assert!(st["ifindex"].as_u64().unwrap() > 1 && st["event_id"].as_u64().is_some());
    assert!(st["time_ms"].as_u64().unwrap() > 1_700_000_000_000);

    let h = wait_line(&dir, &log, "hook", |v| v["kind"] == "hook");
    assert_eq!(h["link"], "au0");
    assert_eq!(h["hook"], "10-say");
    assert_eq!(h["state"], "routable");
    assert_eq!(h["exit_code"], 2);
    assert_eq!(h["signal"], Value::Null);
    assert_eq!(h["timed_out"], false);
    assert!(h["duration_ms"].as_u64().is_some());
    assert_eq!(
        h["output"],
        serde_json::json!(["hello from au0", "second line"])
    );

    let p = wait_line(&dir, &log, "policy", |v| {
        v["kind"] == "policy" && v["change"].as_str().unwrap().contains("rule")
    });
    assert_eq!(p["result"], "done", "{p}");
    assert!(
        p["change"].as_str().unwrap().starts_with("add rule "),
        "{p}"
    );

    // Control requests, with the peer's credentials.
    let mut c = Ctl::connect(&dir);
    c.ok(r#"{"command":"status"}"#);
    assert_eq!(c.err(r#"{"command":"nope"}"#), "unknown_command");
    let me = std::process::id();
    let ok = wait_line(&dir, &log, "control status", |v| {
        v["kind"] == "control" && v["command"] == "status"
    });
    assert_eq!(
        (&ok["uid"], &ok["gid"], &ok["pid"], &ok["result"]),
        (
            &Value::from(0),
            &Value::from(0),
            &Value::from(me),
            &Value::from("ok")
        )
    );
    let bad = wait_line(&dir, &log, "control invalid", |v| {
        v["kind"] == "control" && v["command"] == "invalid"
    });
    assert_eq!(bad["result"], "unknown_command");
    assert!(bad["message"].as_str().unwrap().contains("nope"));

    // Reloads: by signal with what changed, by request, and one refused.
    let old_hash = c.ok(r#"{"command":"status"}"#)["config_hash"].clone();
    let cfg2 = config_text(
        &dir,
        &format!(
            "{}  timeout_seconds: 7\n",
            audit_config(&log, "routing:\n  policy_rules: [au0]\n")
        ),
    );
    dir.write("netevd.yaml", &cfg2, 0o644);
    d.signal("HUP");
    let r = wait_line(&dir, &log, "reload", |v| v["kind"] == "reload");
    assert_eq!(r["trigger"], "signal");
    assert_eq!(r["result"], "ok");
    assert_eq!(r["old_hash"], old_hash);
    assert_ne!(r["new_hash"], old_hash);
    assert_eq!(
        r["changes"],
        serde_json::json!(["hook timeout: 30 s -> 7 s"])
    );
    c.ok(r#"{"command":"reload"}"#);
    wait_line(&dir, &log, "reload by request", |v| {
        v["kind"] == "reload" && v["trigger"] == "control" && v["changes"] == serde_json::json!([])
    });
    dir.write("netevd.yaml", "system:\n  bogus: 1\n", 0o644);
    c.err(r#"{"command":"reload"}"#);
    let refused = wait_line(&dir, &log, "refused reload", |v| {
        v["kind"] == "reload" && v["result"] == "refused"
    });
    assert!(
        refused["error"].as_str().unwrap().contains("bogus"),
        "{refused}"
    );
    dir.write("netevd.yaml", &cfg2, 0o644);

    // Queries through the daemon, by kind and link, and netevctl's view.
    let q = c.ok(r#"{"command":"audit","kind":"hook"}"#);
    assert_eq!(q["path"], log.display().to_string());
    assert_eq!(q["truncated"], false);
    let hooks = q["lines"].as_array().unwrap();
    assert_eq!(hooks.len(), 1, "{q}");
    assert_eq!(hooks[0]["hook"], "10-say");
    let q = c.ok(r#"{"command":"audit","link":"au0","limit":1000}"#);
    assert!(q["lines"]
        .as_array()
        .unwrap()
        .iter()
        .all(|v| v["link"] == "au0"));
    let o = netevctl(&dir, &["audit", "--kind", "reload", "--since", "1h"]);
    assert_eq!(o.code, Some(0), "{o:?}");
    assert_eq!(o.out.lines().count(), 3, "{o:?}");
    assert!(
        o.out
            .lines()
            .all(|l| l.contains(" reload ") && l.contains(" trigger=")),
        "{o:?}"
    );
    let o = netevctl(&dir, &["audit", "--kind", "hook", "--json"]);
    let v: Value = serde_json::from_str(&o.out).unwrap();
    assert_eq!(v["lines"][0]["exit_code"], 2);
    let o = netevctl(&dir, &["audit", "--kind", "hooks"]);
    assert_eq!(o.code, Some(2), "{o:?}");
    assert!(o.err.contains("is not one of state, hook"), "{o:?}");
    let o = netevctl(&dir, &["audit", "--until", "10m", "--since", "1m"]);
    assert_eq!(o.code, Some(2), "{o:?}");

    // Only root and the control group may read it.
    let sock = dir.join("ctl.sock");
    fs::set_permissions(&sock, std::os::unix::fs::PermissionsExt::from_mode(0o666)).unwrap();
    let py = format!(
        "import socket,os\nos.setgid(65534)\nos.setuid(65534)\ns=socket.socket(socket.AF_UNIX)\n\
         s.connect({:?})\ns.sendall(b'{{\"command\":\"audit\"}}\\n')\nprint(s.makefile().readline())",
        sock.display().to_string()
    );
    let o = Command::new("python3").args(["-c", &py]).output().unwrap();
    let reply = String::from_utf8_lossy(&o.stdout);
    assert!(
        reply.contains("permission_denied") && reply.contains("read the audit log"),
        "{reply} {}",
        String::from_utf8_lossy(&o.stderr)
    );
    d.stop();
}

#[test]
fn rotates_by_size_reopens_on_sigusr1_and_queries_rotated_files() {
    let ns = Ns::new();
    let dir = Dir::new();
    let log = dir.join("audit.jsonl");
    let d = Daemon::start(
        &ns,
        &dir,
        &audit_config(&log, "  max_size: 4096\n  keep: 2\n"),
    );
    let mut c = Ctl::connect(&dir);
    for _ in 0..300 {
        c.ok(r#"{"command":"hooks"}"#);
    }
    let rotated = |n: u32| PathBuf::from(format!("{}.{n}", log.display()));
    let end = Instant::now() + Duration::from_secs(10);
    while !rotated(2).exists() {
        assert!(Instant::now() < end, "no rotation:\n{}", dir.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    // Flushed within a turn of the loop.
    std::thread::sleep(Duration::from_millis(200));
    assert!(!rotated(3).exists());
    for p in [log.clone(), rotated(1), rotated(2)] {
        let len = fs::metadata(&p).unwrap().len();
        assert!(len <= 4096 && len > 0, "{}: {len}", p.display());
        assert!(fs::read(&p).unwrap().ends_with(b"\n"));
    }
    let on_disk = lines(&log).len() + lines(&rotated(1)).len() + lines(&rotated(2)).len();
    let q = c.ok(r#"{"command":"audit","kind":"control","limit":10000}"#);
    let got = q["lines"].as_array().unwrap();
    // Everything the three files hold, plus the query itself.
    assert!(got.len() > lines(&log).len(), "{} lines", got.len());
    assert!(got.len() >= on_disk, "{} of {on_disk}", got.len());
    let times: Vec<u64> = got.iter().map(|v| v["time_ms"].as_u64().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]));
    // The oldest line, taken before the query: the query's own audit line
    // may rotate the files again.
    let oldest = lines(&rotated(2))[0].clone();
    let first = oldest["time_ms"].as_u64().unwrap();
    let q = c.ok(&format!(
        r#"{{"command":"audit","since_ms":{first},"limit":3}}"#
    ));
    let got = q["lines"].as_array().unwrap();
    assert_eq!(got.len(), 3);
    // The oldest line itself, unless the audit line of the query before
    // was flushed meanwhile and rotated it out (keep: 2): then the next.
    let t: Vec<u64> = got.iter().map(|v| v["time_ms"].as_u64().unwrap()).collect();
    assert!(
        t[0] >= first && t.windows(2).all(|w| w[0] <= w[1]),
        "{t:?} since {first}"
    );
    if !lines(&rotated(2)).is_empty() && lines(&rotated(2))[0] == oldest {
        assert_eq!(got[0], oldest);
    }

    // logrotate's way: move the file, then SIGUSR1.
    for p in [rotated(1), rotated(2)] {
        fs::remove_file(p).unwrap();
    }
    fs::rename(&log, dir.join("moved")).unwrap();
    d.signal("USR1");
    // Each status request is an audit line: the moved file could also
    // reach max_size and be rotated, which makes `path` anew; wait for the
    // reopen itself.
    let end = Instant::now() + Duration::from_secs(10);
    while !dir.log().contains("audit: reopening") {
        c.ok(r#"{"command":"status"}"#);
        assert!(Instant::now() < end, "not reopened:\n{}", dir.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    c.ok(r#"{"command":"status"}"#);
    let end = Instant::now() + Duration::from_secs(10);
    while !log.exists() {
        assert!(Instant::now() < end, "no new file:\n{}", dir.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    d.stop();
}

/// A tmpfs of `size` mounted on `path`, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(path: PathBuf, size: &str) -> Tmpfs {
        fs::create_dir_all(&path).unwrap();
        run(
            "mount",
            &[
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size}"),
                "tmpfs",
                path.to_str().unwrap(),
            ],
        );
        Tmpfs(path)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_drops_lines_counts_them_and_never_stalls() {
    let ns = Ns::new();
    let dir = Dir::new();
    let fsdir = dir.join("small");
    let _tmpfs = Tmpfs::mount(fsdir.clone(), "4m");
    // Fill it up.
    let filler = fsdir.join("filler");
    let _ = Command::new("dd")
        .args(["if=/dev/zero", &format!("of={}", filler.display()), "bs=4k"])
        .output()
        .unwrap();
    let log = fsdir.join("audit.jsonl");
    dir.recorder("routable", "50-record");
    let d = Daemon::start(&ns, &dir, &audit_config(&log, ""));
    let mut c = Ctl::connect(&dir);
    // Each unknown command is a control line of about 170 bytes: enough
    // of them overflow the 1 MiB buffer. None may wait for the disk.
    let t0 = Instant::now();
    let mut slowest = Duration::ZERO;
    for _ in 0..9000 {
        let t = Instant::now();
        assert_eq!(
            c.err(r#"{"command":"no-such-command-here"}"#),
            "unknown_command"
        );
        slowest = slowest.max(t.elapsed());
    }
    let took = t0.elapsed();
    assert!(slowest < Duration::from_secs(1), "a reply took {slowest:?}");
    // Events and hooks go on meanwhile.
    ns.ip(&["link", "add", "fd0", "type", "veth", "peer", "name", "fd1"]);
    ns.ip(&["link", "set", "fd1", "up"]);
    ns.ip(&["link", "set", "fd0", "up"]);
    ns.ip(&["addr", "add", "10.83.0.1/24", "dev", "fd0"]);
    dir.wait_for("a routable hook while the disk is full", 10, |r| {
        r.iter().any(|x| x.link == "fd0" && x.state == "routable")
    });
    let m = c.ok(r#"{"command":"metrics"}"#)["text"]
        .as_str()
        .unwrap()
        .to_string();
    let dropped: f64 = m
        .lines()
        .find_map(|l| l.strip_prefix("netevd_audit_dropped_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(dropped > 0.0, "nothing dropped:\n{m}");
    let logged = dir.log();
    assert_eq!(
        logged.matches("audit: cannot write").count()
            + logged.matches("audit: cannot open").count(),
        1,
        "the failure is logged once:\n{logged}"
    );
    assert_eq!(logged.matches("dropping lines").count(), 1, "{logged}");
    eprintln!("9000 requests against a full disk took {took:?}, slowest {slowest:?}, {dropped} lines dropped");

    // Space again: what was kept is written, and the gap is recorded.
    fs::remove_file(&filler).unwrap();
    let gap = wait_line(&dir, &log, "audit gap", |v| v["kind"] == "audit");
    // The metrics request's own line came after its reply, and was
    // dropped too.
    assert!(gap["dropped"].as_f64().unwrap() >= dropped, "{gap}");
    assert!(dir.log().contains("audit: writing to"), "{}", dir.log());
    d.stop();
}
