//! Flags, validation and exit codes of the real binary.

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
    assert!(out.contains("not active: api"), "{out}");

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
fn missing_default_config_means_defaults() {
    if std::path::Path::new("/etc/netevd/netevd.yaml").exists() {
        eprintln!("skipped: /etc/netevd/netevd.yaml exists on this machine");
        return;
    }
    let (code, out, err) = netevd(&["--validate"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("/etc/netevd/netevd.yaml not found: using the defaults"),
        "{out}"
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
    assert!(err.contains("--no-such-flag"), "{err}");
    let (code, out, _) = netevd(&["--help"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("--dry-run"), "{out}");
}
