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

    let inactive = "routing:\n  policy_rules: [eth1]\naudit:\n  enabled: true\n";
    let (code, out, _) = validate("inactive.yaml", inactive);
    assert_eq!(code, Some(0));
    assert!(!out.contains("routing"), "policy routing is built: {out}");
    assert!(out.contains("not active: audit"), "{out}");

    let reserved = "routing:\n  policy_rules:\n    - interface: eth1\n      table: 254\n";
    let (code, _, err) = validate("reserved.yaml", reserved);
    assert_eq!(code, Some(1));
    assert!(
        err.contains(":4:14: routing.policy_rules.table: table 254 is reserved"),
        "{err}"
    );
}

#[test]
fn missing_config_means_defaults() {
    let (code, out, _) = netevd(&["--validate", "--config", "/nonexistent/netevd.yaml"]);
    assert_eq!(code, Some(0), "{out}");
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
