//! A hostile user against what the last merges built: the privileged hook
//! spawner, the audit log and `system.watch_config`, each against the
//! real daemon in a namespace of its own. What each test once broke is
//! said above it.
//!
//! Needs root, `ip` (iproute2), `mkfifo` and `sh` (coreutils, dash); the
//! unprivileged user is `nobody`.

mod common;

use common::*;
use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn netevctl(dir: &Dir, args: &[&str]) -> Run {
    let sock = dir.join("ctl.sock");
    Command::new(netevctl_bin())
        .args(["--socket", sock.to_str().unwrap()])
        .args(args)
        .output()
        .unwrap()
        .into()
}

fn wait_until(what: &str, secs: u64, log: impl Fn() -> String, f: impl Fn() -> bool) {
    let end = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(
            Instant::now() < end,
            "timed out waiting for {what}; log:\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `netevctl status` answers within a few seconds (the loop is alive).
fn answers(dir: &Dir) {
    let t = Instant::now();
    let r = netevctl(dir, &["status"]);
    assert_eq!(r.code, Some(0), "{r:?}\nlog:\n{}", dir.log());
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
}

/// A FIFO planted at `audit.path`: the first audit line (the control
/// request below) used to block the loop in open(2) for ever, waiting
/// for a reader. Now it is refused as not a regular file, and the loop
/// runs on.
#[test]
fn a_fifo_at_the_audit_path_does_not_stop_the_loop() {
    let ns = Ns::new();
    let dir = Dir::new();
    let fifo = dir.join("audit.jsonl");
    let ok = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(ok.success(), "mkfifo (coreutils) failed");
    let cfg = format!(
        "audit:\n  enabled: true\n  path: {}\nscripts:\n  run_on_startup: false\n",
        fifo.display()
    );
    let _d = Daemon::start(&ns, &dir, &cfg);
    answers(&dir);
    wait_until(
        "the audit error",
        5,
        || dir.log(),
        || dir.log().contains("not a regular file"),
    );
    // Still answering, and still seeing the kernel.
    ns.ip(&["link", "add", "af0", "type", "veth", "peer", "name", "af1"]);
    wait_until(
        "af0 in interfaces",
        5,
        || dir.log(),
        || netevctl(&dir, &["interfaces"]).out.contains("af0"),
    );
}

/// The pid of the daemon's child named `netevd-spawner`.
fn spawner_of(pid: u32) -> Option<u32> {
    for e in fs::read_dir("/proc").unwrap().flatten() {
        let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(format!("/proc/{p}/stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let ppid: Option<u32> = stat[close + 1..]
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok());
        if ppid == Some(pid) && &stat[open + 1..close] == "netevd-spawner" {
            return Some(p);
        }
    }
    None
}

/// The spawner killed by hand: the loop says so, and netlink and the
/// control socket carry on (hooks cannot run until a restart). Held
/// before this branch; kept as a regression test.
#[test]
fn the_spawner_killed_by_hand_is_noticed_and_the_loop_runs_on() {
    let ns = Ns::new();
    let dir = Dir::new();
    dir.record_all();
    let d = Daemon::start(&ns, &dir, "  user: nobody\n");
    // `ip netns exec` execs netevd: its pid is the daemon's.
    let end = Instant::now() + Duration::from_secs(5);
    let spawner = loop {
        if let Some(s) = spawner_of(d.pid()) {
            break s;
        }
        assert!(Instant::now() < end, "no spawner:\n{}", dir.log());
        std::thread::sleep(Duration::from_millis(50));
    };
    run("kill", &["-9", &spawner.to_string()]);
    wait_until(
        "the loop to notice",
        5,
        || dir.log(),
        || dir.log().contains("hook spawner exited"),
    );
    answers(&dir);
    ns.ip(&["link", "add", "sk0", "type", "veth", "peer", "name", "sk1"]);
    wait_until(
        "sk0 in interfaces",
        5,
        || dir.log(),
        || netevctl(&dir, &["interfaces"]).out.contains("sk0"),
    );
}

/// A write storm on a watched include: thousands of complete writes in a
/// couple of seconds. Every one used to be a reload (the file read and
/// parsed, the spawner told, an audit line). Now changes are coalesced:
/// a reload at most every second, and the last write is always applied.
#[test]
fn a_write_storm_on_a_watched_file_is_coalesced() {
    let ns = Ns::new();
    let d = Dir::new();
    d.write(
        "conf.d/10-watch.yaml",
        "system:\n  watch_config: true\n",
        0o644,
    );
    let _dm = Daemon::start(&ns, &d, "");
    assert!(d.log().contains("watch_config: watching"), "{}", d.log());
    let storm = d.join("conf.d/20-storm.yaml");
    let t = Instant::now();
    let mut n = 0;
    while t.elapsed() < Duration::from_secs(2) {
        fs::write(
            &storm,
            format!("scripts:\n  timeout_seconds: {}\n", 10 + n % 40),
        )
        .unwrap();
        n += 1;
    }
    fs::write(&storm, "scripts:\n  timeout_seconds: 77\n").unwrap();
    let took = t.elapsed().as_secs() + 1;
    wait_until(
        "the last write applied",
        5,
        || d.log(),
        || d.log().contains("-> 77 s"),
    );
    std::thread::sleep(Duration::from_millis(1500));
    let reloads = d.log().matches("(the configuration changed)").count() as u64;
    eprintln!("{n} writes in {took} s: {reloads} reloads");
    assert!(n > 500, "only {n} writes");
    assert!(
        reloads <= took + 3,
        "{reloads} reloads for {n} writes in {took} s"
    );
    answers(&d);
}

/// Processes whose command line holds `tag`.
fn with_tag(tag: &str) -> usize {
    fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|s| s.parse::<u32>().is_ok())
        })
        .filter(|e| {
            fs::read(e.path().join("cmdline"))
                .is_ok_and(|c| c.windows(tag.len()).any(|w| w == tag.as_bytes()))
        })
        .count()
}

/// A hook that starts 1,000 children, each holding its output pipe open,
/// and never exits: at its timeout all of them are gone, and the loop
/// answered meanwhile. `system`: the lines for the `system` section
/// (empty: netevd runs hooks itself, as root).
fn thousand_children(system: &str, tag: &str) {
    let ns = Ns::new();
    let dir = Dir::new();
    let marker = dir.join("started");
    dir.write(
        "hooks/off.d/10-fork",
        &format!(
            "#!/bin/sh\ni=0\nwhile [ $i -lt 1000 ]; do sleep {tag} & i=$((i+1)); done\n\
             echo ok > {m}.tmp; mv {m}.tmp {m}\nexec sleep {tag}\n",
            m = marker.display()
        ),
        0o755,
    );
    let cfg = format!("{system}scripts:\n  timeout_seconds: 15\n");
    let _d = Daemon::start(&ns, &dir, &cfg);
    ns.ip(&["link", "add", "tk0", "type", "veth", "peer", "name", "tk1"]);
    wait_until("1,000 children", 60, || dir.log(), || marker.exists());
    assert!(with_tag(tag) >= 1000, "{}", with_tag(tag));
    answers(&dir);
    wait_until(
        "every child killed at the timeout",
        30,
        || format!("{} left\n{}", with_tag(tag), dir.log()),
        || with_tag(tag) == 0,
    );
    assert!(dir.log().contains("timed out"), "{}", dir.log());
    answers(&dir);
}

#[test]
fn a_hook_with_1000_children_is_killed_whole_by_the_loop() {
    thousand_children("", "1000.4242");
}

#[test]
fn a_hook_with_1000_children_is_killed_whole_by_the_spawner() {
    thousand_children("  user: nobody\n", "1000.4343");
}

/// Link names are chosen by whoever may create links: a quote, a
/// backslash, bytes that are not UTF-8. With `metrics.per_interface` they
/// become label values, which must stay one well-formed series each
/// (promtool, Debian package prometheus, checks when installed).
#[test]
fn hostile_link_names_are_escaped_in_metrics_labels() {
    use std::os::unix::ffi::OsStrExt;
    let ns = Ns::new();
    let dir = Dir::new();
    let _d = Daemon::start(
        &ns,
        &dir,
        "metrics:\n  per_interface: true\n  max_interfaces: 8\nscripts:\n  run_on_startup: false\n",
    );
    let quote = "q\"\\x";
    let bad = std::ffi::OsStr::from_bytes(b"e\xffz");
    ns.ip(&["link", "add", quote, "type", "veth", "peer", "name", "ml1"]);
    let ok = Command::new("ip")
        .args(["-n", &ns.name, "link", "add"])
        .arg(bad)
        .args(["type", "veth", "peer", "name", "ml2"])
        .status()
        .unwrap();
    assert!(ok.success());
    for l in [quote, "ml1"] {
        ns.ip(&["link", "set", l, "up"]);
    }
    let metrics = || {
        let body = Ctl::connect(&dir).ok(r#"{"command":"metrics"}"#);
        body["text"].as_str().unwrap().to_string()
    };
    let want = "{interface=\"q\\\"\\\\x\"}";
    wait_until(
        "the quoted name in a label",
        10,
        || format!("{}\n{}", metrics(), dir.log()),
        || metrics().contains(want),
    );
    let text = metrics();
    eprintln!(
        "{}",
        text.lines()
            .filter(|l| l.contains("interface="))
            .collect::<Vec<_>>()
            .join("\n")
    );
    for l in text.lines().filter(|l| l.contains("interface=")) {
        // one series a line: name{labels} value
        let close = l.rfind('}').unwrap();
        assert!(l[close + 1..].trim().parse::<f64>().is_ok(), "{l}");
    }
    if Command::new("promtool").arg("--version").output().is_err() {
        eprintln!("SKIPPED promtool: not installed (Debian package prometheus)");
        return;
    }
    let mut p = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    p.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let r: Run = p.wait_with_output().unwrap().into();
    assert_eq!(r.code, Some(0), "promtool check metrics:\n{r:?}\n{text}");
}

/// `netevd --validate --config PATH`, killed if it takes 10 s: the exit
/// code (None when it hung) and stderr.
fn validate(path: &Path) -> (Option<i32>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_netevd"))
        .args(["--validate", "--config"])
        .arg(path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            let mut err = String::new();
            use std::io::Read;
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            return (s.code(), err);
        }
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            return (None, "hung: killed after 10 s".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Includes that are not what they seem: a link to /dev/zero, a link
/// loop, a link back to the main file (includes do not nest, so it is
/// read once more, not for ever), and a conf.d of 10,000 files. Each is
/// refused at once, naming the file or directory, or read once. Held.
#[test]
fn hostile_includes_are_refused_at_once() {
    use std::os::unix::fs::symlink;
    let d = Dir::new();
    let main = d.write("netevd.yaml", "scripts:\n  max_parallel: 2\n", 0o644);
    fs::create_dir_all(d.join("conf.d")).unwrap();
    let zero = d.join("conf.d/10-zero.yaml");
    symlink("/dev/zero", &zero).unwrap();
    let (code, err) = validate(&main);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("10-zero.yaml") && err.contains("character device"),
        "{err}"
    );
    fs::remove_file(&zero).unwrap();

    let looped = d.join("conf.d/20-loop.yaml");
    symlink(&looped, &looped).unwrap();
    let (code, err) = validate(&main);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("20-loop.yaml"), "{err}");
    fs::remove_file(&looped).unwrap();

    symlink(&main, d.join("conf.d/30-self.yaml")).unwrap();
    let (code, err) = validate(&main);
    assert_eq!(code, Some(0), "{err}");
    fs::remove_file(d.join("conf.d/30-self.yaml")).unwrap();

    for i in 0..10_000 {
        fs::write(d.join(&format!("conf.d/{i:05}.yaml")), "scripts: {}\n").unwrap();
    }
    let t = Instant::now();
    let (code, err) = validate(&main);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("10000 files, more than 64"), "{err}");
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
}

/// A flood of SIGUSR1 (logrotate's reopen) while lines are written: the
/// loop answers, and the file holds only whole lines. Held.
#[test]
fn a_sigusr1_flood_keeps_the_audit_log_whole() {
    let ns = Ns::new();
    let dir = Dir::new();
    let log = dir.join("var/audit.jsonl");
    let cfg = format!(
        "audit:\n  enabled: true\n  path: {}\nscripts:\n  run_on_startup: false\n",
        log.display()
    );
    let d = Daemon::start(&ns, &dir, &cfg);
    let pid = d.pid().to_string();
    let flood = std::process::Command::new("sh")
        .args([
            "-c",
            "i=0; while [ $i -lt 5000 ]; do kill -USR1 $0 || exit 1; i=$((i+1)); done",
            &pid,
        ])
        .spawn()
        .unwrap();
    let mut requests = 0;
    let mut flood = flood;
    while flood.try_wait().unwrap().is_none() {
        answers(&dir);
        requests += 1;
    }
    assert!(flood.wait().unwrap().success(), "kill failed: daemon gone?");
    answers(&dir);
    // every control request is a line; all of them whole
    wait_until(
        "the lines written",
        5,
        || dir.log(),
        || fs::read_to_string(&log).unwrap_or_default().lines().count() > requests,
    );
    for l in fs::read_to_string(&log).unwrap().lines() {
        serde_json::from_str::<serde_json::Value>(l).unwrap_or_else(|e| panic!("{e}: {l:?}"));
    }
}

const LEASE: &str = "lease {\n  interface \"lw0\";\n  fixed-address 10.9.0.2;\n  option subnet-mask 255.255.255.0;\n  option routers 10.9.0.1;\n  renew 5 2099/11/27 09:28:24;\n  rebind 5 2099/11/27 09:29:16;\n  expire 5 2099/11/27 09:29:31;\n}\n";

/// Lease files that are not files (a FIFO, a link loop, a link to
/// /dev/zero), a 10 GB sparse one, a storm of 30,000 files made and
/// removed (about 90,000 inotify events, past the kernel's default queue
/// of 16,384), and the directory deleted and made again: the loop answers
/// throughout, and a good lease written afterwards is read. Held.
#[test]
fn hostile_lease_files_and_an_event_storm_leave_the_watcher_working() {
    use std::os::unix::fs::symlink;
    let ns = Ns::new();
    let dir = Dir::new();
    let leases = dir.join("leases");
    fs::create_dir_all(&leases).unwrap();
    let cfg = format!(
        "  backend: dhclient\nbackends:\n  dhclient:\n    lease_files: [{}/*.leases]\n",
        leases.display()
    );
    let _d = Daemon::start(&ns, &dir, &cfg);
    let ok = Command::new("mkfifo")
        .arg(leases.join("a.leases"))
        .status()
        .unwrap();
    assert!(ok.success(), "mkfifo (coreutils) failed");
    symlink(leases.join("b.leases"), leases.join("b.leases")).unwrap();
    symlink("/dev/zero", leases.join("d.leases")).unwrap();
    let sparse = fs::File::create(leases.join("c.leases")).unwrap();
    sparse.set_len(10 << 30).unwrap();
    drop(sparse);
    wait_until(
        "the sparse file skipped",
        10,
        || dir.log(),
        || dir.log().contains("c.leases"),
    );
    answers(&dir);
    let cpu0 = cpu_ticks(_d.pid());
    let t = Instant::now();
    for i in 0..30_000 {
        let p = leases.join(format!("s{i}.leases"));
        fs::write(&p, "x").unwrap();
        fs::remove_file(&p).unwrap();
    }
    eprintln!(
        "storm of 30,000 files took {:?}, netevd used {} ticks of CPU",
        t.elapsed(),
        cpu_ticks(_d.pid()) - cpu0
    );
    answers(&dir);
    fs::remove_dir_all(&leases).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    fs::create_dir_all(&leases).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    fs::write(leases.join("lw0.leases"), LEASE).unwrap();
    wait_until(
        "the good lease read after all that",
        15,
        || dir.log(),
        || dir.log().contains("lw0.leases: 1 current lease(s)"),
    );
    answers(&dir);
    let log = dir.log();
    eprintln!(
        "overflows logged: {}",
        log.matches("inotify queue overflow").count()
    );
}

/// utime + stime of `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

/// 2,000 links with `metrics.per_interface` (each changing state), then
/// 32 clients asking for metrics as fast as they can: the interface
/// series stay within `max_interfaces` plus the one for the rest, every
/// request is answered, and the daemon's memory after the flood is back
/// near where it was. Held.
#[test]
fn metrics_with_2000_links_and_a_request_flood() {
    let ns = Ns::new();
    let dir = Dir::new();
    let d = Daemon::start(
        &ns,
        &dir,
        "metrics:\n  per_interface: true\n  max_interfaces: 64\nscripts:\n  run_on_startup: false\n",
    );
    let mut batch = String::new();
    for i in 0..1000 {
        batch.push_str(&format!("link add mf{i}a type veth peer name mf{i}b\n"));
    }
    for i in 0..1000 {
        batch.push_str(&format!("link set mf{i}a up\nlink set mf{i}b up\n"));
    }
    let file = dir.write("batch", &batch, 0o644);
    ns.batch(&file);
    let metrics = |ctl: &mut Ctl| -> String {
        ctl.ok(r#"{"command":"metrics"}"#)["text"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let series = |t: &str| {
        t.lines()
            .filter(|l| l.starts_with("netevd_interface_state_changes_total{"))
            .count()
    };
    let c = std::cell::RefCell::new(Ctl::connect(&dir));
    wait_until(
        "the links counted",
        30,
        || dir.log(),
        || metrics(&mut c.borrow_mut()).contains("interface=\"_other\""),
    );
    let mut c = c.into_inner();
    let text = metrics(&mut c);
    assert_eq!(series(&text), 65, "{text}");
    let rss0 = rss_kib(d.pid());
    let t = Instant::now();
    let workers: Vec<_> = (0..32)
        .map(|_| {
            let dir_path = dir.join("ctl.sock");
            std::thread::spawn(move || {
                let mut c = Ctl::connect_to(&dir_path);
                let mut n = 0;
                let end = Instant::now() + Duration::from_secs(3);
                while Instant::now() < end {
                    let r = c.req(r#"{"command":"metrics"}"#);
                    assert!(r.get("ok").is_some(), "{r}");
                    n += 1;
                }
                n
            })
        })
        .collect();
    let total: u32 = workers.into_iter().map(|w| w.join().unwrap()).sum();
    std::thread::sleep(Duration::from_millis(500));
    let rss1 = rss_kib(d.pid());
    eprintln!(
        "{total} metrics requests from 32 clients in {:?}; RSS {rss0} KiB before, {rss1} KiB after",
        t.elapsed()
    );
    assert!(total > 100, "{total}");
    assert!(rss1 < rss0 + 4096, "RSS {rss0} -> {rss1} KiB");
    answers(&dir);
}

/// A hook that exits but leaves a child holding its output pipe open for
/// ever: the run ends when the hook exits, and the next hook of the link
/// runs at once. Held.
#[test]
fn a_child_holding_the_output_pipe_does_not_hold_the_link() {
    let ns = Ns::new();
    let dir = Dir::new();
    let tag = "1000.5151";
    dir.write(
        "hooks/off.d/10-leave",
        &format!("#!/bin/sh\nsleep {tag} &\necho left a child\nexit 0\n"),
        0o755,
    );
    dir.recorder("off", "20-record");
    let _d = Daemon::start(&ns, &dir, "scripts:\n  timeout_seconds: 60\n");
    let t = Instant::now();
    ns.ip(&["link", "add", "lp0", "type", "veth", "peer", "name", "lp1"]);
    dir.wait_for("the next hook", 10, |r| r.iter().any(|x| x.link == "lp0"));
    let took = t.elapsed();
    // the child is still there, holding the pipe
    assert!(with_tag(tag) >= 1, "the child went away by itself");
    assert!(took < Duration::from_secs(5), "{took:?}");
    answers(&dir);
    for e in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(c) = fs::read(e.path().join("cmdline")) else {
            continue;
        };
        if c.windows(tag.len()).any(|w| w == tag.as_bytes()) {
            run("kill", &[e.file_name().to_str().unwrap()]);
        }
    }
}

/// A flood of events through the spawner: 1,000 links appear at once,
/// each with a hook to run. Spawn requests stay within
/// `scripts.max_parallel` (the rest wait per link), every link's hook
/// runs, and the spawner is alive at the end. Held.
#[test]
fn a_flood_of_events_through_the_spawner_runs_every_hook() {
    let ns = Ns::new();
    let dir = Dir::new();
    dir.recorder("off", "50-record");
    let _d = Daemon::start(
        &ns,
        &dir,
        "  user: nobody\nscripts:\n  max_parallel: 8\n  run_on_startup: false\n",
    );
    let mut batch = String::new();
    for i in 0..500 {
        batch.push_str(&format!("link add sf{i}a type veth peer name sf{i}b\n"));
    }
    let file = dir.write("batch", &batch, 0o644);
    let t = Instant::now();
    ns.batch(&file);
    let r = dir.wait_for("a hook run for each of 1,000 links", 120, |r| {
        let mut links: Vec<&str> = r.iter().map(|x| x.link.as_str()).collect();
        links.sort_unstable();
        links.dedup();
        links.len() >= 1000
    });
    eprintln!("{} hook runs for 1,000 links in {:?}", r.len(), t.elapsed());
    assert!(!dir.log().contains("hook spawner exited"), "{}", dir.log());
    answers(&dir);
}

/// A subscriber's `where` as long and as deep as allowed: a chain of
/// 585 `&&` (the longest that fits 4,096 bytes, the parser's limit), and
/// one past the limits. The first is evaluated for each event without
/// exhausting the stack, the others refused with a reason. Held.
#[test]
fn the_longest_and_deepest_subscribe_conditions() {
    let ns = Ns::new();
    let dir = Dir::new();
    let _d = Daemon::start(&ns, &dir, "scripts:\n  run_on_startup: false\n");
    let chain = vec!["mtu>0"; 585].join("&&");
    assert!(chain.len() <= 4096, "{}", chain.len());
    let mut c = Ctl::connect(&dir);
    c.ok(&serde_json::json!({"command": "subscribe", "where": chain}).to_string());
    ns.ip(&["link", "add", "wd0", "type", "veth", "peer", "name", "wd1"]);
    let ev = c.line();
    assert!(ev.to_string().contains("wd"), "{ev}");
    for bad in [
        format!("{}mtu>0", "!".repeat(65)),
        vec!["mtu>0"; 700].join("&&"),
        format!("{}mtu>0{}", "(".repeat(65), ")".repeat(65)),
    ] {
        let mut c = Ctl::connect(&dir);
        let r = c.req(&serde_json::json!({"command": "subscribe", "where": bad}).to_string());
        assert!(r.get("error").is_some(), "{r}");
    }
    answers(&dir);
}

/// The audit log of a daemon that dropped to `nobody`, in a directory
/// nobody owns, reached through a link root made (as /var/run -> /run):
/// written and queried. Then a daemon running as root whose audit path
/// runs through a link that nobody made: not followed, so nothing is
/// written where it leads (before, it was: this machine has
/// fs.protected_symlinks off).
#[test]
fn audit_as_nobody_follows_roots_links_only() {
    use std::os::unix::fs::symlink;
    let ns = Ns::new();
    let dir = Dir::new();
    let real = dir.join("real");
    fs::create_dir_all(&real).unwrap();
    run("chown", &["nobody", real.to_str().unwrap()]);
    symlink(&real, dir.join("run")).unwrap();
    let path = dir.join("run/audit.jsonl");
    let cfg = format!(
        "  user: nobody\naudit:\n  enabled: true\n  path: {}\nscripts:\n  run_on_startup: false\n",
        path.display()
    );
    let _d = Daemon::start(&ns, &dir, &cfg);
    answers(&dir);
    wait_until(
        "a line through root's link",
        5,
        || dir.log(),
        || fs::read_to_string(real.join("audit.jsonl")).is_ok_and(|t| t.contains("\"control\"")),
    );
    let q = netevctl(&dir, &["audit", "--json"]);
    assert_eq!(q.code, Some(0), "{q:?}");
    assert!(q.out.contains("control"), "{q:?}");

    // nobody's directory with nobody's link in it; where it leads is
    // world-writable, to show that the link stops it, not permissions
    let ns2 = Ns::new();
    let dir2 = Dir::new();
    let open = dir2.join("open");
    fs::create_dir_all(&open).unwrap();
    run("chmod", &["0777", open.to_str().unwrap()]);
    let home = dir2.join("home");
    fs::create_dir_all(&home).unwrap();
    run("chown", &["nobody", home.to_str().unwrap()]);
    run(
        "ln",
        &[
            "-s",
            open.to_str().unwrap(),
            home.join("logs").to_str().unwrap(),
        ],
    );
    run(
        "chown",
        &["-h", "65534", home.join("logs").to_str().unwrap()],
    );
    let cfg = format!(
        "  user: root\naudit:\n  enabled: true\n  path: {}/logs/audit.jsonl\nscripts:\n  run_on_startup: false\n",
        home.display()
    );
    let _d2 = Daemon::start(&ns2, &dir2, &cfg);
    answers(&dir2);
    wait_until(
        "the link refused",
        5,
        || dir2.log(),
        || dir2.log().contains("symbolic link owned by uid 65534"),
    );
    assert_eq!(fs::read_dir(&open).unwrap().count(), 0);
}
