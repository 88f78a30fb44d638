//! The files in contrib/ that other programs read: the systemd unit's
//! hardening score, shellcheck on the init scripts, the example hook and
//! the package scripts, and the shell completions (syntax, what they
//! offer, and that they know every netevctl command).
//!
//! Each test needs a tool and skips, naming its Debian package, when the
//! machine lacks it: systemd (systemd-analyze), shellcheck, bash, zsh,
//! fish. `make deps EXTRA=1` installs them.

mod common;

use std::path::Path;
use std::process::Command;

fn contrib(p: &str) -> String {
    format!("{}/contrib/{p}", env!("CARGO_MANIFEST_DIR"))
}

/// Whether `tool` runs; if not, says which package to install.
fn have(tool: &str, package: &str) -> bool {
    let found = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()));
    if !found {
        eprintln!("skipped: {tool} is missing (apt-get install {package})");
    }
    found
}

fn output(c: &mut Command) -> (bool, String) {
    let o = c.output().unwrap();
    let text =
        String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
    (o.status.success(), text)
}

#[test]
fn service_is_hardened_to_at_most_3_0() {
    if !have("systemd-analyze", "systemd") {
        return;
    }
    let (_, out) = output(
        Command::new("systemd-analyze")
            .args(["security", "--offline=yes", "--no-pager"])
            .arg(contrib("systemd/netevd.service")),
    );
    let line = out
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("no score in:\n{out}"));
    let score: f64 = line
        .split(": ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("cannot read the score in {line:?}"));
    assert!(score <= 3.0, "exposure {score} > 3.0:\n{out}");
    // The figure the unit's own comment and the README give.
    let unit = std::fs::read_to_string(contrib("systemd/netevd.service")).unwrap();
    assert!(
        unit.contains(&format!("rates this unit {score:.1}")),
        "the comment does not say {score:.1}"
    );
    for key in [
        "Type=notify",
        "WatchdogSec=",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "RestrictAddressFamilies=AF_UNIX AF_NETLINK AF_INET AF_INET6",
        "SystemCallFilter=",
        "CapabilityBoundingSet=",
    ] {
        assert!(unit.contains(key), "{key} missing");
    }
}

/// `systemd-analyze verify` on both units: no unknown keys or sections.
/// The binary and the man pages are not installed here: those complaints
/// are expected and left out.
#[test]
fn units_verify() {
    if !have("systemd-analyze", "systemd") {
        return;
    }
    let (_, out) = output(
        Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(contrib("systemd/netevd.socket"))
            .arg(contrib("systemd/netevd.service")),
    );
    let bad: Vec<&str> = out
        .lines()
        .filter(|l| !l.contains("is not executable") && !l.trim().is_empty())
        .collect();
    assert!(bad.is_empty(), "{out}");
}

#[test]
fn shell_scripts_pass_shellcheck() {
    if !have("shellcheck", "shellcheck") {
        return;
    }
    let scripts = [
        "openrc/netevd",
        "openwrt/netevd",
        "hooks/print-event",
        "debian/postinst",
        "debian/postrm",
        "completions/netevd.bash",
        "completions/netevctl.bash",
    ];
    for s in scripts {
        let (ok, out) = output(Command::new("shellcheck").arg(contrib(s)));
        assert!(ok, "shellcheck {s}:\n{out}");
    }
    // openrc-run and rc.common scripts name their interpreter first.
    let first = |p: &str| {
        std::fs::read_to_string(contrib(p))
            .unwrap()
            .lines()
            .next()
            .unwrap()
            .to_string()
    };
    assert_eq!(first("openrc/netevd"), "#!/sbin/openrc-run");
    assert_eq!(first("openwrt/netevd"), "#!/bin/sh /etc/rc.common");
    let openwrt = std::fs::read_to_string(contrib("openwrt/netevd")).unwrap();
    for key in ["USE_PROCD=1", "procd_set_param respawn", "reload_service()"] {
        assert!(openwrt.contains(key), "openwrt: {key} missing");
    }
}

/// The commands `netevctl --help` lists.
fn netevctl_commands() -> Vec<String> {
    let o = Command::new(common::netevctl_bin())
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&o.stdout).into_owned();
    let list = help
        .split("Commands:\n")
        .nth(1)
        .unwrap_or_else(|| panic!("no Commands: in\n{help}"));
    list.lines()
        .filter(|l| l.starts_with("  ") && !l.starts_with("    "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

#[test]
fn completions_parse_and_know_every_command() {
    let commands = netevctl_commands();
    assert!(commands.len() >= 10, "{commands:?}");
    for f in ["netevctl.bash", "_netevctl", "netevctl.fish"] {
        let text = std::fs::read_to_string(contrib(&format!("completions/{f}"))).unwrap();
        for c in &commands {
            assert!(
                text.split(|ch: char| !ch.is_ascii_alphanumeric() && ch != '-')
                    .any(|w| w == c),
                "{f} does not offer the command {c}"
            );
        }
    }
    let syntax = [
        ("bash", "bash", "netevd.bash"),
        ("bash", "bash", "netevctl.bash"),
        ("zsh", "zsh", "_netevd"),
        ("zsh", "zsh", "_netevctl"),
        ("fish", "fish", "netevd.fish"),
        ("fish", "fish", "netevctl.fish"),
    ];
    for (shell, package, f) in syntax {
        if !have(shell, package) {
            continue;
        }
        let (ok, out) = output(
            Command::new(shell)
                .arg("-n")
                .arg(contrib(&format!("completions/{f}"))),
        );
        assert!(ok, "{shell} -n {f}:\n{out}");
    }
}

/// Bash: what the functions offer for a few command lines.
#[test]
fn bash_completion_offers_commands_flags_and_states() {
    if !have("bash", "bash") {
        return;
    }
    let cases = [
        (
            "netevctl.bash",
            "_netevctl",
            "netevctl --socket /x ev",
            "events",
        ),
        (
            "netevctl.bash",
            "_netevctl",
            "netevctl events --fo",
            "--follow",
        ),
        (
            "netevctl.bash",
            "_netevctl",
            "netevctl test --state rou",
            "routable routes",
        ),
        ("netevd.bash", "_netevd", "netevd --pid", "--pidfile"),
        ("netevd.bash", "_netevd", "netevd --val", "--validate"),
    ];
    for (file, func, line, want) in cases {
        let script = format!(
            "source {}; COMP_WORDS=({line}); COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1)); {func}; \
             echo \"${{COMPREPLY[*]}}\"",
            contrib(&format!("completions/{file}"))
        );
        let (ok, out) = output(Command::new("bash").arg("-c").arg(&script));
        assert!(ok, "{out}");
        assert_eq!(out.trim(), want, "{line:?}");
    }
}

/// Fish: the same through `complete -C`.
#[test]
fn fish_completion_offers_commands_and_flags() {
    if !have("fish", "fish") {
        return;
    }
    let cases = [
        ("netevctl.fish", "netevctl ev", "events"),
        (
            "netevctl.fish",
            "netevctl test --state rou",
            "routable\nroutes",
        ),
        ("netevd.fish", "netevd --val", "--validate"),
    ];
    for (file, line, want) in cases {
        let script = format!(
            "source {}; complete -C '{line}'",
            contrib(&format!("completions/{file}"))
        );
        let (ok, out) = output(Command::new("fish").arg("-c").arg(&script));
        assert!(ok, "{out}");
        let got: Vec<&str> = out.lines().map(|l| l.split('\t').next().unwrap()).collect();
        assert_eq!(got.join("\n"), want, "{line:?}");
    }
}

/// The netevd completions offer every flag `netevd --help` lists.
#[test]
fn netevd_completions_know_every_flag() {
    let o = Command::new(env!("CARGO_BIN_EXE_netevd"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&o.stdout).into_owned();
    let flags: Vec<&str> = help
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|w| w.starts_with("--"))
        .collect();
    assert!(flags.contains(&"--pidfile"), "{help}");
    for f in ["netevd.bash", "_netevd", "netevd.fish"] {
        let text = std::fs::read_to_string(contrib(&format!("completions/{f}"))).unwrap();
        for flag in &flags {
            let bare = flag.trim_start_matches('-');
            assert!(
                text.contains(flag) || text.contains(&format!("-l {bare}")),
                "{f} lacks {flag}"
            );
        }
    }
    assert!(Path::new(&contrib("systemd/netevd.socket")).exists());
}
