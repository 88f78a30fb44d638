//! Flags, validation and exit codes of the real binary.

mod common;

use std::process::Command;

fn netevd(args: &[&str]) -> (Option<i32>, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_netevd"))
        .args(args)
        .output()
        .unwrap();
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn temp(name: &str, text: &str) -> std::path::PathBuf {
    let p = std::env::temp_dir().join(format!("netevd-cli-{}-{name}", std::process::id()));
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn version() {
    let (code, out, _) = netevd(&["--version"]);
    assert_eq!(code, Some(0));
    assert_eq!(out.trim(), format!("netevd {}", env!("CARGO_PKG_VERSION")));
}

/// `netevd --validate` on a file holding `text`.
fn validate(name: &str, text: &str) -> (Option<i32>, String, String) {
    let p = temp(name, text);
    let r = netevd(&["--validate", "--config", p.to_str().unwrap()]);
    let _ = std::fs::remove_file(p);
    r
}

#[test]
fn validate_good_and_bad() {
    let good = "system:\n  backend: kernel\nscripts:\n  timeout_seconds: 3\n";
    let (code, out, _) = validate("good.yaml", good);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("configuration is valid"));

    let bad = "system:\n  backend: kernel\nscripts:\n  timeout_secs: 3\n";
    let (code, _, err) = validate("bad.yaml", bad);
    assert_eq!(code, Some(1));
    assert!(
        err.contains(":4:3: unknown key \"timeout_secs\" in scripts"),
        "{err}"
    );

    let inactive = "routing:\n  policy_rules: [eth1]\napi:\n  enabled: true\n";
    let (code, out, _) = validate("inactive.yaml", inactive);
    assert_eq!(code, Some(0));
    assert!(!out.contains("routing"), "policy routing is built: {out}");
    if cfg!(feature = "http") {
        assert!(!out.contains("not active"), "the HTTP shim is built: {out}");
    } else {
        assert!(out.contains("not active: api"), "{out}");
    }
    // What this process cannot do is reported too: policy routing without
    // CAP_NET_ADMIN (dropped from the bounding set, so not effective).
    let p = temp("nocap.yaml", inactive);
    let o = Command::new("setpriv")
        .args(["--bounding-set", "-net_admin", "--"])
        .arg(env!("CARGO_BIN_EXE_netevd"))
        .args(["--validate", "--config", p.to_str().unwrap()])
        .output();
    let _ = std::fs::remove_file(&p);
    match o {
        Err(e) => {
            eprintln!("skipped the CAP_NET_ADMIN case: setpriv: {e} (Debian package util-linux)")
        }
        Ok(o) => {
            let out = String::from_utf8_lossy(&o.stdout);
            assert_eq!(o.status.code(), Some(0), "{out}");
            assert!(
                out.contains("not active: routing.policy_rules: this process lacks CAP_NET_ADMIN"),
                "{out}"
            );
        }
    }

    let reserved = "routing:\n  policy_rules:\n    - interface: eth1\n      table: 254\n";
    let (code, _, err) = validate("reserved.yaml", reserved);
    assert_eq!(code, Some(1));
    assert!(
        err.contains(":4:14: routing.policy_rules.table: table 254 is reserved"),
        "{err}"
    );
}

#[test]
fn missing_config_given_is_an_error() {
    let (code, _, err) = netevd(&["--validate", "--config", "/nonexistent/netevd.yaml"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("/nonexistent/netevd.yaml: cannot open: No such file"),
        "{err}"
    );
}

#[test]
fn validate_without_the_default_file_fails_and_says_so() {
    if std::path::Path::new("/etc/netevd/netevd.yaml").exists() {
        eprintln!("skipped: /etc/netevd/netevd.yaml exists on this machine");
        return;
    }
    let (code, out, err) = netevd(&["--validate"]);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(
        err.contains("netevd: /etc/netevd/netevd.yaml: no such file: nothing to validate"),
        "{err}"
    );
}

/// Runs netevd with `args` under a shell `prefix` (for ulimit), killing it
/// if it has not finished within 10 s: returns the exit code (None: it
/// hung or died of a signal) and stderr.
fn bounded(prefix: &str, args: &[&str]) -> (Option<i32>, String) {
    let mut c = Command::new("sh");
    c.arg("-c")
        .arg(format!("{prefix} exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_netevd"))
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let mut child = c.spawn().unwrap();
    let end = std::time::Instant::now() + std::time::Duration::from_secs(10);
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
        if std::time::Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            return (None, "hung: killed after 10 s".into());
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn config_that_is_not_a_regular_file_is_refused_at_once() {
    let fifo = std::env::temp_dir().join(format!("netevd-cli-{}-fifo", std::process::id()));
    let _ = std::fs::remove_file(&fifo);
    let ok = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(ok.success(), "mkfifo (coreutils) failed");
    let (code, err) = bounded("", &["--validate", "--config", fifo.to_str().unwrap()]);
    let _ = std::fs::remove_file(&fifo);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("not a regular file (a FIFO)"), "{err}");

    // At most 1 GB of address space: reading /dev/zero to the end would
    // die here rather than take the machine's memory.
    let (code, err) = bounded(
        "ulimit -v 1000000;",
        &["--validate", "--config", "/dev/zero"],
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("/dev/zero: not a regular file (a character device)"),
        "{err}"
    );

    let (code, err) = bounded("", &["--validate", "--config", "/tmp"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("not a regular file (a directory)"), "{err}");
}

#[test]
fn config_size_is_capped() {
    let line = format!("#{}\n", "x".repeat(1022));
    let at_cap = line.repeat(1024);
    assert_eq!(at_cap.len(), 1 << 20);
    let (code, _, err) = validate("cap.yaml", &at_cap);
    assert_eq!(code, Some(0), "{err}");
    let (code, _, err) = validate("over.yaml", &format!("{at_cap}#"));
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("larger than 1 MiB"), "{err}");
    let (code, _, err) = validate("empty.yaml", "");
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("empty.yaml: the file is empty"), "{err}");
}

#[test]
fn deep_nesting_is_refused_not_a_crash() {
    for (name, text) in [
        ("block.yaml", format!("{}x\n", "- ".repeat(50_000))),
        ("flow.yaml", format!("a: {}\n", "[".repeat(50_000))),
        ("map.yaml", format!("{}1\n", "{a: ".repeat(50_000))),
    ] {
        let p = temp(name, &text);
        let (code, err) = bounded("", &["--validate", "--config", p.to_str().unwrap()]);
        let _ = std::fs::remove_file(p);
        assert_eq!(code, Some(1), "{name}: {err}");
        assert!(err.contains(":1:"), "{name}: no position: {err}");
        assert!(
            err.contains("nested deeper than 32 levels"),
            "{name}: {err}"
        );
    }
}

#[test]
fn no_cap_net_admin_is_reported() {
    let p = temp("nocap.yaml", "routing:\n  policy_rules: [eth1]\n");
    let o = Command::new("setpriv")
        .args(["--inh-caps=-net_admin", "--bounding-set=-net_admin"])
        .arg(env!("CARGO_BIN_EXE_netevd"))
        .args(["--validate", "--config", p.to_str().unwrap()])
        .output()
        .expect("setpriv (util-linux) is needed");
    let _ = std::fs::remove_file(p);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(out.contains("CAP_NET_ADMIN"), "{out}");
}

#[test]
fn bad_flag_is_a_usage_error() {
    let (code, _, err) = netevd(&["--no-such-flag"]);
    assert_eq!(code, Some(2), "{err}");
    assert_eq!(
        err,
        "netevd: unrecognized argument: --no-such-flag\nRun 'netevd --help' for the flags.\n"
    );
    let (code, _, err) = netevd(&["--config"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.starts_with("netevd: "), "{err}");
    assert!(err.contains("--help"), "{err}");
    let (code, out, _) = netevd(&["--help"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("--dry-run"), "{out}");
    assert!(out.contains("--pidfile"), "{out}");
}

#[test]
fn short_help_works() {
    let (code, out, err) = netevd(&["-h"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.starts_with("Usage: netevd"), "{out}");
    // As the value of --config it is a file name, not a flag.
    let (code, _, err) = netevd(&["--validate", "--config", "-h"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("-h: cannot open"), "{err}");
}

#[test]
fn numbers_and_unknown_keys_read_as_people_write_them() {
    let (code, _, err) = validate("range.yaml", "scripts:\n  timeout_seconds: 0\n");
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(
            ":2:20: scripts.timeout_seconds: 0 is out of range: it must be between 1 and 86400"
        ),
        "{err}"
    );
    let (code, _, err) = validate("typo.yaml", "scripts:\n  timeout: 5\n");
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(
            ":2:3: unknown key \"timeout\" in scripts (expected timeout_seconds, run_on_startup, max_parallel or user)"
        ),
        "{err}"
    );
    let (code, _, err) = validate("ctl.yaml", "control:\n  sock: /run/x\n");
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("(expected socket, enabled, group, mode,"),
        "{err}"
    );
}

/// The example hook, run by hand with the environment netevd gives it.
fn print_event(env: &[(&str, &str)]) -> String {
    let hook = concat!(env!("CARGO_MANIFEST_DIR"), "/contrib/hooks/print-event");
    let o = Command::new(hook)
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    String::from_utf8(o.stdout).unwrap()
}

#[test]
fn the_example_hook_reads_well() {
    let route = print_event(&[
        ("STATE", "routes"),
        ("LINK", "eth0"),
        ("LINKINDEX", "2"),
        ("ROUTE_ACTION", "add"),
        ("ROUTE_DST", "10.0.0.0/24"),
        ("ROUTE_GATEWAY", "192.0.2.1"),
        ("ROUTE_TABLE", "254"),
    ]);
    assert_eq!(
        route,
        "route 10.0.0.0/24 via 192.0.2.1 added on eth0 (table 254)\n"
    );
    let gone = print_event(&[
        ("STATE", "routes"),
        ("LINK", "eth0"),
        ("ROUTE_ACTION", "del"),
        ("ROUTE_DST", "default"),
        ("ROUTE_TABLE", "254"),
    ]);
    assert_eq!(gone, "route default deleted on eth0 (table 254)\n");
    let renamed = print_event(&[
        ("STATE", "carrier"),
        ("EVENT", "state"),
        ("EVENT_ID", "4"),
        ("LINK", "wan0"),
        ("LINKINDEX", "3"),
        ("PREVIOUS_STATE", "carrier"),
        ("PREVIOUS_LINK", "eth1"),
    ]);
    assert_eq!(
        renamed,
        "event 4: wan0 (index 3) is carrier (was carrier), renamed from eth1 [state] addresses: none\n"
    );
}

/// Runs the daemon in a namespace of its own until it logs that it runs,
/// then stops it with SIGTERM: returns what it wrote on stderr. With
/// `journal`, JOURNAL_STREAM names the stderr file, as systemd does.
/// Checks `--pidfile` on the way: the pid while it runs, gone after.
fn run_briefly(journal: bool) -> String {
    use std::os::unix::fs::MetadataExt;
    let ns = common::Ns::new();
    let dir = common::Dir::new();
    let cfg = dir.write(
        "netevd.yaml",
        &format!(
            "system:\n  script_dir: {}\ncontrol:\n  enabled: false\n",
            dir.join("hooks").display()
        ),
        0o644,
    );
    let pidfile = dir.join("netevd.pid");
    let err_path = dir.join("stderr");
    let f = std::fs::File::create(&err_path).unwrap();
    let m = f.metadata().unwrap();
    let mut c = Command::new("ip");
    c.args(["netns", "exec", &ns.name, env!("CARGO_BIN_EXE_netevd")])
        .args(["--foreground", "--config"])
        .arg(&cfg)
        .arg("--pidfile")
        .arg(&pidfile)
        .env_remove("JOURNAL_STREAM")
        .stderr(f);
    if journal {
        c.env("JOURNAL_STREAM", format!("{}:{}", m.dev(), m.ino()));
    }
    let mut child = c.spawn().unwrap();
    let end = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let log = || std::fs::read_to_string(&err_path).unwrap_or_default();
    while !log().contains("running: backend kernel") {
        if std::time::Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            panic!("daemon did not start:\n{}", log());
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // `ip netns exec` execs netevd: the same process.
    let pid = std::fs::read_to_string(&pidfile).unwrap();
    assert_eq!(pid, format!("{}\n", child.id()));
    common::run("kill", &["-s", "TERM", &child.id().to_string()]);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{}", log());
    assert!(!pidfile.exists(), "pid file left behind");
    log()
}

#[test]
fn foreground_lines_carry_the_time_and_a_pidfile_is_kept() {
    let err = run_briefly(false);
    // "2026-11-27 09:41:07.123 netevd: info: ..."
    for l in err.lines() {
        let b = l.as_bytes();
        assert!(
            b.len() > 24 && b[4] == b'-' && b[10] == b' ' && b[13] == b':' && b[19] == b'.',
            "no time stamp: {l:?}"
        );
        assert!(l.contains(" netevd: "), "{l:?}");
    }
    assert!(err.contains("running: backend kernel, 1 link,"), "{err}");
}

/// Under systemd, stderr is journald's and JOURNAL_STREAM names it:
/// journald stamps the lines itself.
#[test]
fn no_time_stamp_when_stderr_is_the_journal() {
    let err = run_briefly(true);
    assert!(!err.is_empty());
    for l in err.lines() {
        assert!(l.starts_with("netevd: "), "{l:?}");
    }
}

/// In the background with no syslog daemon, lines are not thrown away:
/// a warning says so before netevd leaves, and the log goes to stderr.
#[test]
fn background_without_syslog_keeps_the_log() {
    if std::path::Path::new("/dev/log").exists() {
        eprintln!("skipped: a syslog daemon listens on /dev/log here");
        return;
    }
    let ns = common::Ns::new();
    let dir = common::Dir::new();
    let cfg = dir.write(
        "netevd.yaml",
        &format!(
            "system:\n  script_dir: {}\ncontrol:\n  enabled: false\n",
            dir.join("hooks").display()
        ),
        0o644,
    );
    let pidfile = dir.join("netevd.pid");
    let err_path = dir.join("stderr");
    let status = Command::new("ip")
        .args(["netns", "exec", &ns.name, env!("CARGO_BIN_EXE_netevd")])
        .arg("--config")
        .arg(&cfg)
        // Relative: made absolute before daemon(3) moves to /.
        .args(["--pidfile", "netevd.pid"])
        .current_dir(&dir.path)
        .stderr(std::fs::File::create(&err_path).unwrap())
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(0));
    let log = || std::fs::read_to_string(&err_path).unwrap_or_default();
    let end = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !log().contains("running: backend kernel") {
        assert!(std::time::Instant::now() < end, "no log:\n{}", log());
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(
        log().starts_with("netevd: warning: no syslog daemon at /dev/log"),
        "{}",
        log()
    );
    let pid = std::fs::read_to_string(&pidfile).unwrap();
    common::run("kill", &["-s", "TERM", pid.trim()]);
    while pidfile.exists() {
        assert!(std::time::Instant::now() < end, "still running:\n{}", log());
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(log().contains("netevd stopping"), "{}", log());
}
