//! The hook runner against hostile conditions, with the real daemon in a
//! network namespace per test: events too large for the environment, no
//! processes or descriptors left to start a hook, a hook that writes without
//! pause, names that try to forge log lines, a broken hook tree, and hooks
//! that ignore SIGTERM at shutdown.

mod common;

use common::*;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn sleep_ms(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

/// The daemon started through a wrapper command (`prlimit`, a cgroup
/// move), which must `exec` what follows it so the pid stays the daemon's.
struct Netevd {
    child: Child,
}

impl Netevd {
    fn start(ns: &Ns, dir: &Dir, config: &str, wrapper: &[&str]) -> Netevd {
        let cfg = config_text(dir, config);
        let cfg_path = dir.write("netevd.yaml", &cfg, 0o644);
        let log = fs::File::create(dir.join("log")).unwrap();
        let mut cmd = Command::new(wrapper.first().copied().unwrap_or("ip"));
        if !wrapper.is_empty() {
            cmd.args(&wrapper[1..]).arg("ip");
        }
        let child = cmd
            .args(["netns", "exec", &ns.name, env!("CARGO_BIN_EXE_netevd")])
            .args(["--foreground", "-v", "--config", cfg_path.to_str().unwrap()])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut d = Netevd { child };
        let end = Instant::now() + Duration::from_secs(10);
        while !dir.log().contains("running: backend ") {
            if let Ok(Some(s)) = d.child.try_wait() {
                panic!("daemon exited ({s}) before it ran:\n{}", dir.log());
            }
            assert!(Instant::now() < end, "daemon did not start:\n{}", dir.log());
            sleep_ms(20);
        }
        d
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn signal(&self, sig: &str) {
        run("kill", &["-s", sig, &self.child.id().to_string()]);
    }

    /// SIGTERM, then how long the daemon took to exit, and its status.
    fn stop(&mut self, within: Duration) -> (Duration, Option<i32>) {
        let t = Instant::now();
        self.signal("TERM");
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return (t.elapsed(), s.code());
            }
            assert!(
                t.elapsed() < within,
                "daemon still running {within:?} after SIGTERM"
            );
            sleep_ms(20);
        }
    }
}

impl Drop for Netevd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether `pid` is a live process (a zombie is dead: it only waits for
/// its parent, here possibly a PID 1 that never reaps).
fn alive(pid: &str) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.contains(") Z "))
        .unwrap_or(false)
}

/// `n` veth pairs `<p>a<i>`/`<p>b<i>`, all up, without IPv6 link-local
/// addresses (their DAD would add events at times no test controls).
fn pairs_up(ns: &Ns, dir: &Dir, p: &str, n: usize) -> Vec<String> {
    let mut batch = String::new();
    let mut names = Vec::new();
    for i in 0..n {
        let (a, b) = (format!("{p}a{i}"), format!("{p}b{i}"));
        batch.push_str(&format!("link add {a} type veth peer name {b}\n"));
        for l in [&a, &b] {
            batch.push_str(&format!("link set {l} addrgenmode none\nlink set {l} up\n"));
        }
        names.push(a);
        names.push(b);
    }
    ns.batch(&dir.write(&format!("pairs-{p}"), &batch, 0o644));
    names
}

/// A hook for every state that appends a record (the format of
/// `common::Record`) and then holds its process for `hold` (so runs
/// overlap), without forking anything: one process per hook.
fn holding_recorder(d: &Dir, hold: &str) {
    let rec = d.join("records");
    for s in ["off", "no-carrier", "carrier", "degraded", "routable"] {
        d.write(
            &format!("hooks/{s}.d/50-record"),
            &format!(
                "#!/bin/sh\nprintf '%s|%s|%s|%s|%s|%s|||%s|50-record\\n' \"$EVENT_ID\" \"$EVENT\" \"$STATE\" \
                 \"$LINK\" \"$PREVIOUS_STATE\" \"$ADDRESSES\" \"$LINKINDEX\" >> {}\nexec sleep {hold}\n",
                rec.display()
            ),
            0o755,
        );
    }
}

/// Gives every link in `links` an address, then waits until each link's
/// last hook saw it: no link's final event may be lost.
fn every_final_hook_runs(ns: &Ns, d: &Dir, links: &[String], secs: u64) {
    let mut batch = String::new();
    for (i, l) in links.iter().enumerate() {
        batch.push_str(&format!(
            "addr add 10.9.{}.{}/32 dev {l}\n",
            i / 200,
            i % 200 + 1
        ));
    }
    ns.batch(&d.write("addrs", &batch, 0o644));
    let want = |i: usize| format!("10.9.{}.{}", i / 200, i % 200 + 1);
    let r = d.wait_for("every link's final hook", secs, |r| {
        links.iter().enumerate().all(|(i, l)| {
            last_for(r, l).is_some_and(|x| x.state == "routable" && x.addresses == want(i))
        })
    });
    assert!(!r.is_empty());
}

#[test]
fn a_link_with_2000_addresses_runs_its_hooks_with_the_whole_json() {
    let (a, d) = (Ns::new(), Dir::new());
    let out = d.join("json");
    let size = d.join("size");
    // the JSON from wherever it is, then a second hook reads it again
    d.write(
        "hooks/routable.d/10-json",
        &format!(
            "#!/bin/sh\nif [ -n \"$JSON_FILE\" ]; then cat \"$JSON_FILE\"; else printf '%s' \"$JSON\"; fi > {o}.tmp\n\
             printf '%s|%s|%s\\n' \"${{#JSON}}\" \"$TRUNCATED\" \"${{#ADDRESSES}}\" > {o}.env\nmv {o}.tmp {o}\n",
            o = out.display()
        ),
        0o755,
    );
    d.write(
        "hooks/routable.d/20-again",
        &format!(
            "#!/bin/sh\nwc -c < \"${{JSON_FILE:-/dev/null}}\" > {s}.tmp\nmv {s}.tmp {s}\n",
            s = size.display()
        ),
        0o755,
    );
    let _n = Netevd::start(&a, &d, "", &[]);
    pairs_up(&a, &d, "big", 1);
    let mut batch = String::new();
    for i in 1..=2000u32 {
        batch.push_str(&format!(
            "addr add 2001:db8::{:x}:{:x}/128 dev biga0 nodad\n",
            i >> 8,
            i & 0xff
        ));
    }
    a.batch(&d.write("batch", &batch, 0o644));
    let end = Instant::now() + Duration::from_secs(30);
    let v: serde_json::Value = loop {
        if let Ok(text) = fs::read_to_string(&out) {
            let v: serde_json::Value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("hook read bad JSON ({e}): {} bytes", text.len()));
            if v["addresses"].as_array().map(|a| a.len()) == Some(2000) {
                break v;
            }
        }
        assert!(
            Instant::now() < end,
            "no hook saw the 2000 addresses; log:\n{}",
            d.log()
        );
        sleep_ms(100);
    };
    assert_eq!(v["link"], "biga0");
    assert_eq!(v["addresses"][1999]["address"], "2001:db8::7:d0");
    let json_len = fs::read_to_string(&out).unwrap().len();
    let env = fs::read_to_string(out.with_extension("env")).unwrap();
    let f: Vec<&str> = env.trim_end().split('|').collect();
    assert_eq!(
        f[0], "0",
        "JSON must be empty when JSON_FILE is used: {env}"
    );
    assert_eq!(f[1], "ADDRESSES", "{env}");
    let addrs_len: usize = f[2].parse().unwrap();
    assert!(addrs_len > 8000 && addrs_len <= 16384, "{env}");
    // the sealed file reads the same for the next hook of the run
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        let s = fs::read_to_string(&size).unwrap_or_default();
        if s.trim().parse::<usize>().ok() == Some(json_len) {
            break;
        }
        assert!(
            Instant::now() < end,
            "second hook read {s:?}, not {json_len}"
        );
        sleep_ms(50);
    }
    assert!(!d.log().contains("cannot run"), "{}", d.log());
}

/// The daemon with 16 descriptors and 30 links whose hooks overlap: starts
/// fail with EMFILE, are retried, and every link's final hook runs.
#[test]
fn hooks_wait_for_descriptors_instead_of_being_dropped() {
    let (a, d) = (Ns::new(), Dir::new());
    holding_recorder(&d, "0.3");
    let links = pairs_up(&a, &d, "fd", 15);
    let mut n = Netevd::start(
        &a,
        &d,
        "scripts:\n  max_parallel: 64\n",
        &["prlimit", "--nofile=16:16", "--"],
    );
    every_final_hook_runs(&a, &d, &links, 40);
    let log = d.log();
    assert!(
        log.contains("Too many open files") || log.contains("os error 24"),
        "no start ran out of descriptors: the test proves nothing\n{log}"
    );
    let (_, code) = n.stop(Duration::from_secs(5));
    assert_eq!(code, Some(0));
}

/// A storm of 10,000 address changes while no hook can start (the
/// daemon's descriptors are used up): the first event waits, the rest
/// coalesce behind it, and once descriptors are free again the link's
/// hooks run twice, the last time with the final state.
#[test]
fn a_storm_while_hooks_cannot_start_coalesces_behind_the_waiting_event() {
    let (a, d) = (Ns::new(), Dir::new());
    holding_recorder(&d, "0");
    pairs_up(&a, &d, "st", 1);
    let mut n = Netevd::start(&a, &d, "scripts:\n  run_on_startup: false\n", &[]);
    // The pair's carrier comes up on its own time (linkwatch), which
    // runs a hook: wait for it, then start from no records.
    let mut c = Ctl::connect(&d);
    let end = Instant::now() + Duration::from_secs(10);
    while ["sta0", "stb0"].iter().any(|l| {
        c.ok(&format!(r#"{{"command":"interface","link":"{l}"}}"#))["interface"]["state"]
            != "carrier"
    }) {
        assert!(Instant::now() < end, "the pair never got its carrier");
        sleep_ms(50);
    }
    sleep_ms(300);
    let _ = fs::remove_file(d.join("records"));
    let pid = n.pid().to_string();
    // one descriptor more than it has open: a hook's pipe needs two
    let open = fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count();
    let limit = format!("--nofile={}:{}", open + 1, 1024);
    run("prlimit", &["--pid", &pid, &limit]);
    let mut batch = String::new();
    for i in 0..5_000u32 {
        let ip = format!("198.18.{}.{}/32", i / 250, i % 250 + 1);
        batch.push_str(&format!("addr add {ip} dev sta0\naddr del {ip} dev sta0\n"));
    }
    batch.push_str("addr add 203.0.113.9/32 dev sta0\n");
    a.batch(&d.write("storm", &batch, 0o644));
    sleep_ms(1000);
    assert!(
        d.records().is_empty(),
        "a hook started: the test proves nothing"
    );
    run("prlimit", &["--pid", &pid, "--nofile=1024:1024"]);
    let t = Instant::now();
    let r = d.wait_for("the final state", 15, |r| {
        last_for(r, "sta0").is_some_and(|x| x.addresses == "203.0.113.9")
    });
    let took = t.elapsed();
    let runs = r.iter().filter(|x| x.link == "sta0").count();
    assert!(runs <= 3, "{runs} runs for one waiting link: not coalesced");
    assert!(took < Duration::from_secs(7), "final hook {took:?} late");
    sleep_ms(500);
    assert_eq!(d.records().len(), r.len(), "runs after the final state");
    let (_, code) = n.stop(Duration::from_secs(5));
    assert_eq!(code, Some(0));
}

/// A cgroup limiting the daemon and its hooks to 3 processes: forks fail
/// with EAGAIN, are retried, and every link's final hook runs.
#[test]
fn hooks_wait_for_processes_instead_of_being_dropped() {
    // cgroup v2 unified at /sys/fs/cgroup, else the v1 pids hierarchy
    let root = if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        PathBuf::from("/sys/fs/cgroup")
    } else {
        PathBuf::from("/sys/fs/cgroup/pids")
    };
    let cg = root.join(format!("netevd-test-{}", std::process::id()));
    if let Err(e) = fs::create_dir(&cg) {
        eprintln!(
            "SKIPPED: cannot make a pids cgroup under {} ({e}): needs a writable cgroup v2 \
             or v1 pids hierarchy",
            root.display()
        );
        return;
    }
    struct Cg(PathBuf);
    impl Drop for Cg {
        fn drop(&mut self) {
            for _ in 0..50 {
                if fs::remove_dir(&self.0).is_ok() {
                    return;
                }
                sleep_ms(100);
            }
        }
    }
    let cg = Cg(cg);
    if fs::write(cg.0.join("pids.max"), "3").is_err() {
        eprintln!(
            "SKIPPED: {} has no pids controller (cgroup v2: enable +pids in the parent's \
             cgroup.subtree_control)",
            cg.0.display()
        );
        return;
    }
    let (a, d) = (Ns::new(), Dir::new());
    holding_recorder(&d, "0.3");
    let links = pairs_up(&a, &d, "pid", 5);
    let procs = cg.0.join("cgroup.procs");
    let enter = format!("echo $$ > {} && exec \"$@\"", procs.display());
    let mut n = Netevd::start(
        &a,
        &d,
        "scripts:\n  max_parallel: 16\n",
        &["sh", "-c", &enter, "sh"],
    );
    assert!(fs::read_to_string(&procs)
        .unwrap()
        .lines()
        .any(|l| l == n.pid().to_string()));
    every_final_hook_runs(&a, &d, &links, 40);
    let log = d.log();
    assert!(
        log.contains("Resource temporarily unavailable") || log.contains("os error 11"),
        "no fork failed: the test proves nothing\n{log}"
    );
    let (_, code) = n.stop(Duration::from_secs(5));
    assert_eq!(code, Some(0));
}

/// `exec yes` as a hook: killed at its timeout, other links' hooks still
/// run, SIGTERM still works, and the log stays small.
#[test]
fn a_hook_writing_without_pause_neither_starves_the_loop_nor_fills_the_log() {
    let (a, d) = (Ns::new(), Dir::new());
    let rec = d.join("records");
    d.write(
        "hooks/carrier.d/50-hook",
        &format!(
            "#!/bin/sh\ncase \"$LINK\" in chat*) exec yes 'all work and no play';; esac\n\
             printf '%s|%s|%s|%s|||||%s|50-hook\\n' \"$EVENT_ID\" \"$EVENT\" \"$STATE\" \"$LINK\" \
             \"$LINKINDEX\" >> {}\n",
            rec.display()
        ),
        0o755,
    );
    let mut n = Netevd::start(&a, &d, "scripts:\n  timeout_seconds: 2\n", &[]);
    let t0 = Instant::now();
    a.ip(&[
        "link", "add", "chat", "type", "veth", "peer", "name", "chat2",
    ]);
    a.ip(&["link", "set", "chat", "up"]);
    a.ip(&["link", "set", "chat2", "up"]);
    sleep_ms(300);
    pairs_up(&a, &d, "q", 1);
    d.wait_for("another link's hook while yes runs", 3, |r| {
        r.iter().any(|x| x.link == "qa0")
    });
    // both chatty hooks are killed at their 2 s timeout
    let end = t0 + Duration::from_secs(5);
    while !d.log().contains("50-hook for chat timed out")
        || !d.log().contains("50-hook for chat2 timed out")
    {
        assert!(Instant::now() < end, "yes was not killed at its timeout");
        sleep_ms(50);
    }
    let (took, code) = n.stop(Duration::from_secs(5));
    assert_eq!(code, Some(0));
    assert!(took < Duration::from_secs(3), "{took:?}");
    let log = d.log();
    assert!(log.len() < 200_000, "log grew to {} bytes", log.len());
    assert!(log.contains("lines of output dropped"), "{log}");
    assert!(log.contains("50-hook[chat]: all work and no play"));
}

/// A hook whose name holds a newline, link names and hook output with
/// control characters: each log line stays one line, escaped.
#[test]
fn names_and_output_cannot_forge_log_lines() {
    let (a, d) = (Ns::new(), Dir::new());
    d.write(
        "hooks/no-carrier.d/10-x\nnetevd: error: forged",
        "#!/bin/sh\nprintf 'out\\rnetevd: error: forged too\\033[2J\\n'\nexit 3\n",
        0o755,
    );
    let _n = Netevd::start(&a, &d, "", &[]);
    a.ip(&[
        "link",
        "add",
        "e\x1b[31m",
        "type",
        "veth",
        "peer",
        "name",
        "peer0",
    ]);
    a.ip(&["link", "set", "e\x1b[31m", "up"]);
    let end = Instant::now() + Duration::from_secs(5);
    while !d.log().contains("exited 3") {
        assert!(Instant::now() < end, "hook did not run:\n{}", d.log());
        sleep_ms(50);
    }
    sleep_ms(200);
    let log = d.log();
    for l in log.lines() {
        // After the time stamp ("2026-11-27 09:41:07.123 ").
        let l = l.split_once(' ').map_or(l, |(_, rest)| rest);
        let l = l.split_once(' ').map_or(l, |(_, rest)| rest);
        assert!(l.starts_with("netevd: "), "forged line {l:?} in\n{log}");
        assert!(
            !l.contains('\r') && !l.contains('\x1b'),
            "raw control in {l:?}"
        );
    }
    assert!(
        log.contains(
            "10-x\\nnetevd: error: forged[e\\x1b[31m]: out\\rnetevd: error: forged too\\x1b[2J"
        ),
        "{log}"
    );
    assert!(
        log.contains("hook 10-x\\nnetevd: error: forged for e\\x1b[31m exited 3"),
        "{log}"
    );
}

fn count(log: &str, what: &str) -> usize {
    log.lines().filter(|l| l.contains(what)).count()
}

fn wait_log(d: &Dir, what: &str, n: usize) {
    let end = Instant::now() + Duration::from_secs(5);
    while count(&d.log(), what) < n {
        assert!(Instant::now() < end, "wanted {n} x {what:?}:\n{}", d.log());
        sleep_ms(50);
    }
}

/// script_dir a symlink loop, then a file, then a tree with a hook that is
/// not executable: one warning at start and one per reload, none per event.
#[test]
fn a_broken_hook_tree_is_reported_once_at_start_and_reload() {
    let (a, d) = (Ns::new(), Dir::new());
    let hooks = d.join("hooks");
    std::os::unix::fs::symlink(&hooks, &hooks).unwrap();
    let n = Netevd::start(&a, &d, "", &[]);
    wait_log(&d, "Too many levels of symbolic links", 1);
    // events do not repeat it
    pairs_up(&a, &d, "t", 2);
    sleep_ms(500);
    let log = d.log();
    assert_eq!(count(&log, "Too many levels of symbolic links"), 1, "{log}");
    assert_eq!(count(&log, "warning: hooks:"), 1, "{log}");
    assert!(log.contains("hooks: script_dir"), "{log}");
    n.signal("HUP");
    wait_log(&d, "Too many levels of symbolic links", 2);

    fs::remove_file(&hooks).unwrap();
    n.signal("HUP");
    wait_log(&d, "does not exist: no hooks will run", 1);

    fs::write(&hooks, "not a directory").unwrap();
    n.signal("HUP");
    wait_log(&d, "is not a directory: no hooks will run", 1);

    fs::remove_file(&hooks).unwrap();
    d.write("hooks/no-carrier.d/10-noexec", "#!/bin/sh\n", 0o644);
    d.write("hooks/routes.d", "a file", 0o644);
    n.signal("HUP");
    wait_log(&d, "10-noexec is not executable: skipped", 1);
    wait_log(&d, "routes.d is not a directory", 1);
    a.ip(&["link", "set", "ta0", "down"]);
    a.ip(&["link", "set", "ta0", "up"]);
    sleep_ms(500);
    assert_eq!(count(&d.log(), "10-noexec"), 1, "{}", d.log());
}

/// A hook that ignores SIGTERM and sleeps, with a child: at shutdown both
/// get SIGTERM, then SIGKILL, and neither outlives the daemon.
#[test]
fn shutdown_kills_hooks_that_ignore_sigterm() {
    let (a, d) = (Ns::new(), Dir::new());
    let pids = d.join("pids");
    d.write(
        "hooks/no-carrier.d/10-stubborn",
        &format!(
            "#!/bin/sh\ntrap '' TERM\nsleep 300 &\necho $$ $! > {p}.tmp\nmv {p}.tmp {p}\nwait\nwait\n",
            p = pids.display()
        ),
        0o755,
    );
    let mut n = Netevd::start(&a, &d, "", &[]);
    a.ip(&["link", "add", "va", "type", "veth", "peer", "name", "vb"]);
    a.ip(&["link", "set", "va", "up"]);
    let end = Instant::now() + Duration::from_secs(5);
    while !pids.exists() {
        assert!(Instant::now() < end, "hook did not start:\n{}", d.log());
        sleep_ms(50);
    }
    let p = fs::read_to_string(&pids).unwrap();
    let p: Vec<&str> = p.split_whitespace().collect();
    // if the daemon fails to, the test still kills them (only if they are
    // still the hook's: a pid can be reused)
    struct Reaper(Vec<String>);
    impl Drop for Reaper {
        fn drop(&mut self) {
            for x in &self.0 {
                let cmd = fs::read(format!("/proc/{x}/cmdline")).unwrap_or_default();
                let cmd = String::from_utf8_lossy(&cmd);
                if alive(x) && (cmd.contains("10-stubborn") || cmd.contains("sleep\x00300")) {
                    let _ = Command::new("kill").args(["-KILL", x]).status();
                }
            }
        }
    }
    let _reaper = Reaper(p.iter().map(|x| x.to_string()).collect());
    assert!(p.iter().all(|x| alive(x)));
    let (took, code) = n.stop(Duration::from_secs(6));
    assert_eq!(code, Some(0));
    assert!(
        took >= Duration::from_millis(1500),
        "no grace period: {took:?}"
    );
    for x in &p {
        let end = Instant::now() + Duration::from_secs(1);
        while alive(x) {
            assert!(
                Instant::now() < end,
                "hook process {x} outlived the daemon:\n{}",
                d.log()
            );
            sleep_ms(20);
        }
    }
    assert!(d.log().contains("still running at shutdown"), "{}", d.log());
}
