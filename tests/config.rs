//! The configuration file under hostile conditions, against the running
//! daemon: a reload that cannot read the file keeps the running
//! configuration and the rules it installed; nesting, FIFOs and empty
//! files are refused without freezing or crashing the loop; a relative
//! `--config` is made absolute; a missing CAP_NET_ADMIN is said once.
//!
//! Needs root, `ip` (iproute2), `mkfifo` (coreutils) and `setpriv`
//! (util-linux).

mod common;

use common::*;
use std::fs;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `h` has wan1 10.2.0.2/24 with a default route via r's 10.2.0.1.
struct Net {
    h: Ns,
    _r: Ns,
}

fn net() -> Net {
    let (h, r) = (Ns::new(), Ns::new());
    h.ip(&[
        "link", "add", "wan1", "type", "veth", "peer", "name", "up1", "netns", &r.name,
    ]);
    // No IPv6 link-local addresses: the set below is IPv4 only.
    h.ip(&["link", "set", "wan1", "addrgenmode", "none"]);
    h.ip(&["link", "set", "wan1", "up"]);
    r.ip(&["link", "set", "up1", "up"]);
    r.ip(&["addr", "add", "10.2.0.1/24", "dev", "up1"]);
    h.ip(&["addr", "add", "10.2.0.2/24", "dev", "wan1"]);
    h.ip(&[
        "route", "add", "default", "via", "10.2.0.1", "dev", "wan1", "metric", "200",
    ]);
    Net { h, _r: r }
}

fn wait(what: &str, secs: u64, mut f: impl FnMut() -> bool, log: impl Fn() -> String) {
    let end = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(
            Instant::now() < end,
            "timed out waiting for {what}; daemon log:\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// How many reloads the log reports as refused.
fn refusals(d: &Dir) -> usize {
    d.log().matches("keeping the current configuration").count()
}

/// Sends SIGHUP and waits for the `n`th refusal, which must say `why`.
fn refused(dm: &Daemon, d: &Dir, n: usize, why: &str) {
    dm.signal("HUP");
    wait(
        "the reload to be refused",
        5,
        || refusals(d) >= n,
        || d.log(),
    );
    let log = d.log();
    let line = log
        .lines()
        .filter(|l| l.contains("keeping the current configuration"))
        .nth(n - 1)
        .unwrap();
    assert!(
        line.contains(why),
        "refusal {n} does not say {why:?}: {line}"
    );
    assert!(
        line.contains("netevd.yaml"),
        "refusal names no file: {line}"
    );
}

#[test]
fn reload_that_cannot_read_the_file_keeps_the_rules() {
    let (n, d) = (net(), Dir::new());
    let dm = Daemon::start(&n.h, &d, "routing:\n  policy_rules: [wan1]\n");
    wait(
        "the rules",
        5,
        || owned_entries(&n.h).len() == 4,
        || d.log(),
    );
    let before = owned_entries(&n.h);
    assert!(
        before
            .iter()
            .any(|l| l.contains("from 10.2.0.2 lookup 1002")),
        "{before:#?}"
    );
    let cfg = d.join("netevd.yaml");
    let away = d.join("away.yaml");

    // missing
    fs::rename(&cfg, &away).unwrap();
    refused(&dm, &d, 1, "No such file");
    // empty: an editor truncated it and has not written it yet
    fs::write(&cfg, "").unwrap();
    refused(&dm, &d, 2, "empty");
    // a FIFO: open(2) must not block the loop
    fs::remove_file(&cfg).unwrap();
    run("mkfifo", &[cfg.to_str().unwrap()]);
    refused(&dm, &d, 3, "not a regular file");
    // a directory
    fs::remove_file(&cfg).unwrap();
    fs::create_dir(&cfg).unwrap();
    refused(&dm, &d, 4, "not a regular file");

    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        owned_entries(&n.h),
        before,
        "a refused reload changed the rules"
    );
    assert!(!d.log().contains("reloaded"), "{}", d.log());

    // The loop still answers: the file back, a reload takes it.
    fs::remove_dir(&cfg).unwrap();
    fs::rename(&away, &cfg).unwrap();
    dm.signal("HUP");
    wait("the reload", 5, || d.log().contains("reloaded"), || d.log());
    assert_eq!(owned_entries(&n.h), before);
    assert_eq!(dm.stop(), Some(0));
}

#[test]
fn deep_nesting_on_reload_is_refused_and_the_daemon_lives() {
    let (ns, d) = (Ns::new(), Dir::new());
    let dm = Daemon::start(&ns, &d, "");
    let cfg = d.join("netevd.yaml");
    // Deep enough to overflow a recursive parser's stack many times over.
    fs::write(&cfg, format!("{}x\n", "- ".repeat(50_000))).unwrap();
    refused(&dm, &d, 1, "nested deeper than");
    fs::write(&cfg, format!("{}\n", "[".repeat(50_000))).unwrap();
    refused(&dm, &d, 2, "nested deeper than");
    // a second document is refused too, naming its line
    fs::write(&cfg, "scripts: {}\n---\nscripts: {}\n").unwrap();
    refused(&dm, &d, 3, ":2:1: a second YAML document");
    assert_eq!(dm.stop(), Some(0));
}

/// The daemon started by hand, for what `Daemon::start` does not cover.
struct Raw {
    child: Child,
}

impl Raw {
    fn start(ns: &Ns, d: &Dir, cwd: &Path, prefix: &[&str], args: &[&str]) -> Raw {
        let log = fs::File::create(d.join("log")).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &ns.name])
            .args(prefix)
            .arg(env!("CARGO_BIN_EXE_netevd"))
            .args(["--foreground", "-v"])
            .args(args)
            .current_dir(cwd)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let r = Raw { child };
        wait(
            "the daemon to start",
            10,
            || d.log().contains("running: backend "),
            || d.log(),
        );
        r
    }

    fn signal(&self, sig: &str) {
        run("kill", &["-s", sig, &self.child.id().to_string()]);
    }
}

impl Drop for Raw {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn relative_config_path_is_made_absolute() {
    let (ns, d) = (Ns::new(), Dir::new());
    d.write(
        "netevd.yaml",
        &format!(
            "system:\n  script_dir: {}\ncontrol:\n  socket: {}\n",
            d.join("hooks").display(),
            d.join("ctl.sock").display()
        ),
        0o644,
    );
    let dm = Raw::start(&ns, &d, &d.path, &[], &["--config", "netevd.yaml"]);
    dm.signal("HUP");
    let want = format!("reloaded {}", d.join("netevd.yaml").display());
    wait("the reload", 5, || d.log().contains(&want), || d.log());
}

#[test]
fn no_cap_net_admin_is_said_once_at_start() {
    let (n, d) = (net(), Dir::new());
    d.write(
        "netevd.yaml",
        &format!(
            "system:\n  script_dir: {}\nrouting:\n  policy_rules: [wan1]\ncontrol:\n  socket: {}\n",
            d.join("hooks").display(),
            d.join("ctl.sock").display()
        ),
        0o644,
    );
    let cfg = d.join("netevd.yaml");
    // Root keeps every capability in its bounding and inheritable sets
    // across execve; dropping both leaves CAP_NET_ADMIN out of CapEff.
    let drop = [
        "setpriv",
        "--inh-caps=-net_admin",
        "--bounding-set=-net_admin",
    ];
    let _dm = Raw::start(
        &n.h,
        &d,
        &d.path,
        &drop,
        &["--config", cfg.to_str().unwrap()],
    );
    std::thread::sleep(Duration::from_millis(500));
    let log = d.log();
    let said = log.lines().filter(|l| l.contains("CAP_NET_ADMIN")).count();
    assert_eq!(said, 1, "{log}");
    assert!(!log.contains("refused"), "{log}");
    assert!(!log.contains("policy: add"), "{log}");
    assert!(owned_entries(&n.h).is_empty());
}

/// What keeps a hook from running is said at start and at each reload,
/// naming the file: a missing script_dir, a hook without the execute bit,
/// a script without `#!` (exec'd without a shell, it would fail with
/// ENOEXEC at every event).
#[test]
fn hook_problems_are_named_at_start_and_reload() {
    let ns = Ns::new();
    let d = Dir::new();
    let dm = Daemon::start(&ns, &d, "");
    let missing = format!("script_dir {} does not exist", d.join("hooks").display());
    assert!(d.log().contains(&missing), "{}", d.log());
    d.write("hooks/routable.d/10-noexec", "#!/bin/sh\necho hi\n", 0o644);
    d.write("hooks/routable.d/20-noshebang", "echo hi\n", 0o755);
    d.write("hooks/routable.d/30-fine", "#!/bin/sh\necho hi\n", 0o755);
    dm.signal("HUP");
    let noexec = format!(
        "{} is not executable",
        d.join("hooks/routable.d/10-noexec").display()
    );
    let noshebang = format!(
        "{} has no #! line",
        d.join("hooks/routable.d/20-noshebang").display()
    );
    wait(
        "the reload to name both hooks",
        5,
        || d.log().contains(&noexec) && d.log().contains(&noshebang),
        || d.log(),
    );
    assert!(!d.log().contains("30-fine"), "{}", d.log());
    // And at the next start.
    drop(dm);
    let _dm = Daemon::start(&ns, &d, "");
    let log = d.log();
    assert!(log.contains(&noexec) && log.contains(&noshebang), "{log}");
}

/// How many lines of the log contain `what`.
fn count(d: &Dir, what: &str) -> usize {
    d.log().matches(what).count()
}

/// `conf.d/*.yaml` is read with the main file, and with
/// `system.watch_config: true` (set here by an include) a change to any
/// of them reloads at once; a bad include is refused naming its file and
/// the daemon runs on; turned off, changes wait for SIGHUP.
#[test]
fn includes_and_watch_config_reload_on_change() {
    let ns = Ns::new();
    let d = Dir::new();
    d.write(
        "conf.d/10-watch.yaml",
        "system:\n  watch_config: true\nscripts:\n  max_parallel: 2\n",
        0o644,
    );
    let _dm = Daemon::start(&ns, &d, "");
    assert!(d.log().contains("watch_config: watching"), "{}", d.log());
    let changed = "(the configuration changed)";

    d.write(
        "conf.d/20-timeout.yaml",
        "scripts:\n  timeout_seconds: 7\n",
        0o644,
    );
    wait(
        "a reload for the new include",
        5,
        || d.log().contains("hook timeout: 30 s -> 7 s"),
        || d.log(),
    );
    assert!(d.log().contains(changed), "{}", d.log());

    let bad = d.write("conf.d/30-bad.yaml", "scripts:\n  max_paralel: 1\n", 0o644);
    let want = format!(
        "reload refused: {}:2:3: unknown key \"max_paralel\" in scripts",
        bad.display()
    );
    wait(
        "the bad include refused",
        5,
        || d.log().contains(&want),
        || d.log(),
    );

    // An edit of the main file, the way editors save: a new file renamed
    // over the old one.
    fs::remove_file(&bad).unwrap();
    wait(
        "the reload after the bad include went",
        5,
        || {
            d.log()
                .contains("(the configuration changed): nothing changed")
        },
        || d.log(),
    );
    let main = d.join("netevd.yaml");
    let text = fs::read_to_string(&main).unwrap() + "monitoring:\n  interfaces: [\"v*\"]\n";
    let tmp = d.write("netevd.yaml.tmp", &text, 0o644);
    fs::rename(&tmp, &main).unwrap();
    wait(
        "a reload for the renamed main file",
        5,
        || d.log().contains("monitored interfaces: [] -> [\"v*\"]"),
        || d.log(),
    );

    // Off again: the next change waits for SIGHUP.
    d.write(
        "conf.d/10-watch.yaml",
        "system:\n  watch_config: false\n",
        0o644,
    );
    wait(
        "watch_config turned off",
        5,
        || d.log().contains("watch_config: true -> false"),
        || d.log(),
    );
    let reloads = count(&d, "reloaded ");
    d.write(
        "conf.d/40-later.yaml",
        "scripts:\n  max_parallel: 5\n",
        0o644,
    );
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(count(&d, "reloaded "), reloads, "{}", d.log());
}
