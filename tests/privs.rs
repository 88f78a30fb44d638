//! Least privilege and the service manager, against the real daemon in a
//! namespace of its own: the drop to `system.user` (uid, CapEff, CapBnd,
//! one thread), hooks still run as root through the spawner, unsafe hook
//! files and directories refused, a double-forked setsid'd hook killed at
//! its timeout, no zombies with netevd as PID 1 of a PID namespace,
//! socket activation and sd_notify.
//!
//! Needs root, `unshare` and `setsid` (util-linux) and, for the socket
//! activation test, `systemd-socket-activate` (Debian package systemd).
//! The unprivileged user is `nobody`.

mod common;

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{config_text, Daemon, Dir, Ns};

/// `system.user` goes in the `system` section config_text opens.
const AS_NOBODY: &str = "  user: nobody\n";

fn status(pid: u32) -> String {
    fs::read_to_string(format!("/proc/{pid}/status")).unwrap()
}

fn field(status: &str, name: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .unwrap_or_else(|| panic!("no {name} in\n{status}"))
        .trim()
        .to_string()
}

fn nobody_uid() -> String {
    let o = Command::new("id").args(["-u", "nobody"]).output().unwrap();
    String::from_utf8(o.stdout).unwrap().trim().to_string()
}

/// The pids whose parent is `pid`, with their command names.
fn children(pid: u32) -> Vec<(u32, String)> {
    let mut v = Vec::new();
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
        let ppid: u32 = stat[close + 1..]
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        if ppid == pid {
            v.push((p, stat[open + 1..close].to_string()));
        }
    }
    v
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

/// A hook in every state directory that appends `id -u` to `uids`.
fn uid_hooks(dir: &Dir) {
    let out = dir.join("uids");
    for s in [
        "off",
        "no-carrier",
        "dormant",
        "carrier",
        "degraded",
        "routable",
    ] {
        dir.write(
            &format!("hooks/{s}.d/50-uid"),
            &format!("#!/bin/sh\nid -u >> {}\n", out.display()),
            0o755,
        );
    }
}

#[test]
fn drop_keeps_one_thread_and_net_admin_only_when_needed() {
    for policy in [false, true] {
        let ns = Ns::new();
        let dir = Dir::new();
        uid_hooks(&dir);
        let routing = if policy {
            "routing:\n  policy_rules: [nothere0]\n"
        } else {
            ""
        };
        let d = Daemon::start(&ns, &dir, &format!("{AS_NOBODY}{routing}"));
        let st = status(d.pid());
        let uid = nobody_uid();
        assert_eq!(
            field(&st, "Uid"),
            format!("{uid}\t{uid}\t{uid}\t{uid}"),
            "{st}"
        );
        assert_eq!(field(&st, "Threads"), "1");
        let want = if policy {
            "0000000000001000"
        } else {
            "0000000000000000"
        };
        assert_eq!(field(&st, "CapEff"), want, "policy {policy}");
        assert_eq!(field(&st, "CapPrm"), want, "policy {policy}");
        assert_eq!(field(&st, "CapBnd"), want, "policy {policy}");
        assert_eq!(field(&st, "CapInh"), "0000000000000000");
        assert_eq!(field(&st, "NoNewPrivs"), "1");
        // The spawner stays root.
        let kids = children(d.pid());
        let sp = kids
            .iter()
            .find(|(_, c)| c == "netevd-spawner")
            .unwrap_or_else(|| panic!("no spawner among {kids:?}"));
        assert_eq!(field(&status(sp.0), "Uid"), "0\t0\t0\t0");
        // Hooks run as root: lo's start-up event, and a new link.
        ns.ip(&["link", "add", "pv0", "type", "veth", "peer", "name", "pv1"]);
        wait_until(
            "two hook runs",
            10,
            || dir.log(),
            || {
                fs::read_to_string(dir.join("uids"))
                    .map(|s| s.lines().count() >= 2)
                    .unwrap_or(false)
            },
        );
        let uids = fs::read_to_string(dir.join("uids")).unwrap();
        assert!(uids.lines().all(|l| l == "0"), "{uids}");
        assert!(dir.log().contains("running as nobody"), "{}", dir.log());
        assert_eq!(d.stop(), Some(0), "{}", dir.log());
    }
}

#[test]
fn scripts_user_runs_hooks_as_that_user() {
    let ns = Ns::new();
    let dir = Dir::new();
    uid_hooks(&dir);
    // The hooks append to a file nobody may write.
    fs::write(dir.join("uids"), "").unwrap();
    Command::new("chown")
        .args(["nobody", dir.join("uids").to_str().unwrap()])
        .status()
        .unwrap();
    let d = Daemon::start(&ns, &dir, &format!("{AS_NOBODY}scripts:\n  user: nobody\n"));
    ns.ip(&["link", "add", "pu0", "type", "veth", "peer", "name", "pu1"]);
    wait_until(
        "a hook run",
        10,
        || dir.log(),
        || {
            fs::read_to_string(dir.join("uids"))
                .map(|s| s.lines().count() >= 2)
                .unwrap_or(false)
        },
    );
    let uids = fs::read_to_string(dir.join("uids")).unwrap();
    let want = nobody_uid();
    assert!(uids.lines().all(|l| l == want), "{uids}");
    drop(d);
}

/// A world-writable hook, and a hook in a world-writable directory, are
/// named at start and refused at run time; the safe hook beside them runs.
#[test]
fn unsafe_hooks_are_refused_and_named() {
    for user in ["", AS_NOBODY] {
        let ns = Ns::new();
        let dir = Dir::new();
        let ran = dir.join("ran");
        let hook = |name: &str, what: &str| {
            format!("#!/bin/sh\necho {name} $LINK >> {}\n{what}", ran.display())
        };
        // New veth links start down: their first event is `off`.
        dir.write("hooks/off.d/10-ok", &hook("ok", ""), 0o755);
        dir.write("hooks/off.d/20-world", &hook("world", ""), 0o757);
        dir.write("hooks/off.d/30-group", &hook("group", ""), 0o775);
        dir.write(
            "hooks/no-carrier.d/10-in-open-dir",
            &hook("opendir", ""),
            0o755,
        );
        fs::set_permissions(
            dir.join("hooks/no-carrier.d"),
            std::os::unix::fs::PermissionsExt::from_mode(0o777),
        )
        .unwrap();
        let d = Daemon::start(&ns, &dir, user);
        let log = dir.log();
        for name in ["off.d/20-world", "off.d/30-group", "no-carrier.d"] {
            assert!(
                log.lines()
                    .any(|l| l.contains(name) && l.contains("writable by")),
                "{user:?}: {name} not named at start:\n{log}"
            );
        }
        // pw0 goes off, then no-carrier when set up (its peer is down).
        ns.ip(&["link", "add", "pw0", "type", "veth", "peer", "name", "pw1"]);
        wait_until(
            "the safe hook",
            10,
            || dir.log(),
            || {
                fs::read_to_string(&ran)
                    .unwrap_or_default()
                    .contains("ok pw0")
            },
        );
        ns.ip(&["link", "set", "pw0", "up"]);
        wait_until(
            "the refusal in the open directory",
            10,
            || dir.log(),
            || {
                dir.log().lines().any(|l| {
                    l.contains("no-carrier.d") && l.contains("refused") && l.contains("pw0")
                })
            },
        );
        wait_until(
            "the refusal of 20-world",
            10,
            || dir.log(),
            || {
                dir.log()
                    .lines()
                    .any(|l| l.contains("off.d/20-world") && l.contains("pw0"))
            },
        );
        let ran_text = fs::read_to_string(&ran).unwrap_or_default();
        for bad in ["world", "group", "opendir"] {
            assert!(
                !ran_text.lines().any(|l| l.starts_with(bad)),
                "{user:?}: {bad} ran:\n{ran_text}"
            );
        }
        drop(d);
    }
}

/// The hook puts a setsid'd grandchild out of its process group (and out
/// of its session), then waits; at the one-second timeout the grandchild
/// dies with it.
#[test]
fn double_forked_setsid_hook_is_killed_at_timeout() {
    for user in ["", AS_NOBODY] {
        let ns = Ns::new();
        let dir = Dir::new();
        let pidfile = dir.join("grandchild");
        dir.write(
            "hooks/off.d/10-escape",
            &format!(
                "#!/bin/sh\n( setsid sh -c 'echo $$ > {p}.tmp; mv {p}.tmp {p}; exec sleep 300' & )\nexec sleep 300\n",
                p = pidfile.display()
            ),
            0o755,
        );
        let d = Daemon::start(
            &ns,
            &dir,
            &format!("{user}scripts:\n  timeout_seconds: 1\n"),
        );
        ns.ip(&["link", "add", "px0", "type", "veth", "peer", "name", "px1"]);
        wait_until("the grandchild", 10, || dir.log(), || pidfile.exists());
        let pid: u32 = fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let st = status(pid);
        // Really escaped: its own session.
        let sid = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let f: Vec<&str> = sid[sid.rfind(')').unwrap() + 1..]
            .split_whitespace()
            .collect();
        assert_eq!(f[3], pid.to_string(), "not a session leader: {st}");
        wait_until(
            "the timeout",
            10,
            || dir.log(),
            || dir.log().contains("timed out"),
        );
        wait_until(
            "the grandchild gone",
            5,
            || dir.log(),
            || !Path::new(&format!("/proc/{pid}")).exists(),
        );
        drop(d);
    }
}

/// The pid namespace of `pid`, as /proc names it.
fn pid_ns(pid: u32) -> Option<std::path::PathBuf> {
    fs::read_link(format!("/proc/{pid}/ns/pid")).ok()
}

/// Processes in the pid namespace `ns` in state Z.
fn zombies_in(ns: &Path) -> Vec<String> {
    let mut v = Vec::new();
    for e in fs::read_dir("/proc").unwrap().flatten() {
        let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if pid_ns(p).as_deref() != Some(ns) {
            continue;
        }
        if let Ok(stat) = fs::read_to_string(format!("/proc/{p}/stat")) {
            let state = stat[stat.rfind(')').unwrap() + 1..]
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_string();
            if state == "Z" {
                v.push(stat);
            }
        }
    }
    v
}

#[test]
fn no_zombies_as_pid_1_after_100_timed_out_hooks() {
    let ns = Ns::new();
    let dir = Dir::new();
    // Each hook leaves a short-lived orphan, a setsid'd double-forked
    // sleeper, and then sleeps past its timeout.
    dir.write(
        "hooks/off.d/10-linger",
        "#!/bin/sh\n( sleep 0.2 & )\n( setsid sleep 300 & )\nexec sleep 300\n",
        0o755,
    );
    let cfg = config_text(
        &dir,
        "scripts:\n  timeout_seconds: 1\n  max_parallel: 100\n  run_on_startup: false\n",
    );
    let cfg_path = dir.write("netevd.yaml", &cfg, 0o644);
    let log = fs::File::create(dir.join("log")).unwrap();
    let mut child = Command::new("ip")
        .args(["netns", "exec", &ns.name])
        .args(["unshare", "--pid", "--fork", "--mount-proc"])
        .arg(env!("CARGO_BIN_EXE_netevd"))
        .args(["--foreground", "-v", "--config", cfg_path.to_str().unwrap()])
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let guard = KillOnDrop(&mut child);
    wait_until(
        "the start",
        10,
        || dir.log(),
        || dir.log().contains("running: backend "),
    );
    // netevd is the child of unshare, PID 1 of the new namespace.
    let kids = children(guard.0.id());
    let unshare = kids
        .iter()
        .find(|(_, c)| c == "unshare")
        .map(|k| k.0)
        .unwrap_or(guard.0.id());
    let netevd = children(unshare)
        .into_iter()
        .find(|(_, c)| c == "netevd")
        .map(|k| k.0)
        .expect("netevd under unshare");
    let nspid = field(&status(netevd), "NSpid");
    assert!(nspid.ends_with("\t1"), "not PID 1: {nspid}");
    let pidns = pid_ns(netevd).unwrap();
    let batch = dir.join("batch");
    let mut b = String::new();
    for i in 0..50 {
        b.push_str(&format!("link add pz{i}a type veth peer name pz{i}b\n"));
    }
    fs::write(&batch, b).unwrap();
    ns.batch(&batch);
    wait_until(
        "100 timeouts",
        60,
        || dir.log(),
        || dir.log().matches("timed out after").count() >= 100,
    );
    // Give the last kills and reaps a moment, then look.
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        let z = zombies_in(&pidns);
        let procs = fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()))
            .filter(|&p| pid_ns(p).as_deref() == Some(&pidns))
            .count();
        // Only netevd itself is left in the namespace.
        if z.is_empty() && procs == 1 {
            break;
        }
        assert!(
            Instant::now() < end,
            "{} zombies, {procs} processes left: {z:#?}\nlog tail:\n{}",
            z.len(),
            dir.log()
                .lines()
                .rev()
                .take(30)
                .collect::<Vec<_>>()
                .join("\n")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(guard);
}

struct KillOnDrop<'a>(&'a mut Child);

impl Drop for KillOnDrop<'_> {
    fn drop(&mut self) {
        // SIGTERM first: unshare passes it on to netevd, which cleans up.
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let end = Instant::now() + Duration::from_secs(5);
        while Instant::now() < end {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn socket_activation_serves_the_passed_socket() {
    let Ok(o) = Command::new("systemd-socket-activate")
        .arg("--help")
        .output()
    else {
        panic!("systemd-socket-activate is missing: install the Debian package systemd");
    };
    assert!(o.status.success(), "systemd-socket-activate --help failed");
    let ns = Ns::new();
    let dir = Dir::new();
    let sock = dir.join("activated.sock");
    // The config names another path: the passed socket wins.
    let cfg = config_text(&dir, "");
    let cfg_path = dir.write("netevd.yaml", &cfg, 0o644);
    let log = fs::File::create(dir.join("log")).unwrap();
    let mut child = Command::new("systemd-socket-activate")
        .arg("-l")
        .arg(&sock)
        .args(["ip", "netns", "exec", &ns.name])
        .arg(env!("CARGO_BIN_EXE_netevd"))
        .args(["--foreground", "-v", "--config", cfg_path.to_str().unwrap()])
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let guard = KillOnDrop(&mut child);
    wait_until("the listening socket", 10, || dir.log(), || sock.exists());
    // The first connection starts netevd, which then answers on it.
    let s = UnixStream::connect(&sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    (&s).write_all(b"{\"command\":\"status\"}\n").unwrap();
    let mut line = String::new();
    BufReader::new(&s).read_line(&mut line).unwrap();
    let v: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}\n{}", dir.log()));
    assert!(v.get("ok").is_some(), "{v}");
    assert!(
        dir.log().contains("passed by the service manager"),
        "{}",
        dir.log()
    );
    // Its own path was never bound.
    assert!(!dir.join("ctl.sock").exists());
    drop(guard);
}

#[test]
fn sd_notify_ready_watchdog_reloading_stopping() {
    let ns = Ns::new();
    let dir = Dir::new();
    let nsock = dir.join("notify");
    let rx = UnixDatagram::bind(&nsock).unwrap();
    rx.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let cfg = config_text(&dir, AS_NOBODY);
    let cfg_path = dir.write("netevd.yaml", &cfg, 0o644);
    let log = fs::File::create(dir.join("log")).unwrap();
    let mut child = Command::new("ip")
        .args(["netns", "exec", &ns.name, env!("CARGO_BIN_EXE_netevd")])
        .args(["--foreground", "-v", "--config", cfg_path.to_str().unwrap()])
        .env("NOTIFY_SOCKET", &nsock)
        .env("WATCHDOG_USEC", "400000")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let pid = child.id();
    let guard = KillOnDrop(&mut child);
    let mut buf = [0u8; 256];
    let mut next = |what: &str| -> String {
        loop {
            let n = rx
                .recv(&mut buf)
                .unwrap_or_else(|e| panic!("waiting for {what}: {e}\n{}", dir.log()));
            let m = String::from_utf8_lossy(&buf[..n]).into_owned();
            if m == "WATCHDOG=1" && what != "WATCHDOG=1" {
                continue;
            }
            return m;
        }
    };
    assert_eq!(next("READY=1"), "READY=1");
    // READY=1 goes out as the first dump completes, with the log line.
    wait_until(
        "the start line",
        5,
        || dir.log(),
        || dir.log().contains("running: backend "),
    );
    // Pings at half the interval, from the unprivileged loop.
    let t = Instant::now();
    assert_eq!(next("WATCHDOG=1"), "WATCHDOG=1");
    assert_eq!(next("WATCHDOG=1"), "WATCHDOG=1");
    assert!(t.elapsed() < Duration::from_secs(2));
    Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .unwrap();
    assert!(next("RELOADING=1").starts_with("RELOADING=1\nMONOTONIC_USEC="));
    assert_eq!(next("READY=1"), "READY=1");
    Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert_eq!(next("STOPPING=1"), "STOPPING=1");
    drop(guard);
}

/// Shutdown goes through the spawner too: SIGTERM to the hook's tree,
/// SIGKILL to one that ignores it, and netevd exits 0.
#[test]
fn shutdown_through_the_spawner_kills_a_hook_that_ignores_sigterm() {
    let ns = Ns::new();
    let dir = Dir::new();
    let pidfile = dir.join("hookpid");
    dir.write(
        "hooks/off.d/10-stubborn",
        &format!(
            "#!/bin/sh\ntrap '' TERM\necho $$ > {p}.tmp; mv {p}.tmp {p}\nwhile :; do sleep 1; done\n",
            p = pidfile.display()
        ),
        0o755,
    );
    let d = Daemon::start(&ns, &dir, AS_NOBODY);
    ns.ip(&["link", "add", "ps0", "type", "veth", "peer", "name", "ps1"]);
    wait_until("the hook", 10, || dir.log(), || pidfile.exists());
    let pid: u32 = fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let t = Instant::now();
    assert_eq!(d.stop(), Some(0), "{}", dir.log());
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    wait_until(
        "the hook gone",
        5,
        || dir.log(),
        || !Path::new(&format!("/proc/{pid}")).exists(),
    );
    assert!(dir.log().contains("SIGKILL"), "{}", dir.log());
}
