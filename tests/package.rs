//! The packages, built from the tree as a packager would: `make deb`
//! installed into a scratch root with `dpkg --root` (the maintainer
//! scripts run outside a chroot with DPKG_ROOT set, so the netevd user is
//! made in the scratch root's /etc/passwd, never the host's), its file
//! list, lintian, the configuration kept on upgrade; `make rpm` and its
//! file list.
//!
//! Needs root (dpkg --root writes root-owned files). Skips, naming the
//! package, without dpkg-deb and dpkg-shlibdeps (dpkg-dev), lintian,
//! rpmbuild (rpm). Builds the release binaries if `make` has not.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

fn have(tool: &str, package: &str) -> bool {
    let found = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()));
    if !found {
        eprintln!("skipped: {tool} is missing (apt-get install {package})");
    }
    found
}

/// Runs a command that must succeed; returns its stdout and stderr.
fn run(c: &mut Command) -> String {
    let o = c.output().unwrap();
    let text =
        String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{c:?} failed:\n{text}");
    text
}

fn make(target: &str, var: &str, out: &Path) -> String {
    run(Command::new("make")
        .arg("-s")
        .arg(target)
        .arg(format!("{var}={}", out.display()))
        .current_dir(env!("CARGO_MANIFEST_DIR")))
}

fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

/// The files and links every package must hold.
const FILES: [&str; 19] = [
    "usr/sbin/netevd",
    "usr/bin/netevctl",
    "usr/share/man/man1/netevctl.1",
    "usr/share/man/man5/netevd.yaml.5",
    "usr/share/man/man7/netevd-hooks.7",
    "usr/share/man/man8/netevd.8",
    "usr/lib/systemd/system/netevd.service",
    "usr/lib/systemd/system/netevd.socket",
    "etc/netevd/netevd.yaml",
    "etc/netevd/routable.d",
    "etc/netevd/routes.d",
    "etc/netevd/conf.d",
    "etc/iproute2/rt_protos.d/netevd.conf",
    "usr/share/bash-completion/completions/netevd",
    "usr/share/bash-completion/completions/netevctl",
    "usr/share/zsh/vendor-completions/_netevd",
    "usr/share/zsh/vendor-completions/_netevctl",
    "usr/share/fish/vendor_completions.d/netevd.fish",
    "usr/share/fish/vendor_completions.d/netevctl.fish",
];

/// A root for dpkg --root: an empty database, and the users the
/// maintainer scripts may add to.
fn scratch_root(dir: &common::Dir) -> PathBuf {
    let root = dir.join("root");
    for d in [
        "var/lib/dpkg/info",
        "var/lib/dpkg/updates",
        "var/lib/dpkg/triggers",
        "etc",
    ] {
        fs::create_dir_all(root.join(d)).unwrap();
    }
    fs::write(root.join("var/lib/dpkg/status"), "").unwrap();
    fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    fs::write(root.join("etc/group"), "root:x:0:\n").unwrap();
    fs::write(root.join("etc/shadow"), "root:*:19000:0:99999:7:::\n").unwrap();
    fs::write(root.join("etc/gshadow"), "root:*::\n").unwrap();
    root
}

fn dpkg_install(root: &Path, deb: &Path) -> String {
    // --force-depends: the scratch root has no libc6 package; confold:
    // an edited conffile is kept without asking.
    run(Command::new("dpkg")
        .arg(format!("--root={}", root.display()))
        .args([
            "--force-script-chrootless",
            "--force-depends",
            "--force-confdef",
            "--force-confold",
            "--log=/dev/null",
            "-i",
        ])
        .arg(deb))
}

/// The same package as version `v`, with `extra` appended to its shipped
/// netevd.yaml (an upstream change of the conffile).
fn repack(dir: &common::Dir, deb: &Path, v: &str, extra: &str) -> PathBuf {
    let tree = dir.join("repack");
    let _ = fs::remove_dir_all(&tree);
    run(Command::new("dpkg-deb").arg("-R").arg(deb).arg(&tree));
    let control = tree.join("DEBIAN/control");
    let text = fs::read_to_string(&control).unwrap();
    let text = text.replace(
        &format!("Version: {}\n", version()),
        &format!("Version: {v}\n"),
    );
    fs::write(&control, text).unwrap();
    let yaml = tree.join("etc/netevd/netevd.yaml");
    let mut text = fs::read_to_string(&yaml).unwrap();
    text.push_str(extra);
    fs::write(&yaml, text).unwrap();
    // md5sums must match the files again.
    let sums = run(Command::new("sh")
        .arg("-c")
        .arg("find . -path ./DEBIAN -prune -o -type f -printf '%P\\0' | sort -z | xargs -0 md5sum")
        .current_dir(&tree));
    fs::write(tree.join("DEBIAN/md5sums"), sums).unwrap();
    let out = dir.join(&format!("netevd_{v}.deb"));
    run(Command::new("dpkg-deb")
        .args(["--root-owner-group", "--build"])
        .arg(&tree)
        .arg(&out));
    out
}

#[test]
fn deb_builds_installs_and_keeps_the_config_on_upgrade() {
    common::require_root();
    if !have("dpkg-deb", "dpkg") || !have("dpkg-shlibdeps", "dpkg-dev") {
        return;
    }
    let dir = common::Dir::new();
    let out = dir.join("deb");
    make("deb", "DEB_OUT", &out);
    let arch = run(Command::new("dpkg").arg("--print-architecture"));
    let deb = out.join(format!("netevd_{}_{}.deb", version(), arch.trim()));
    assert!(deb.exists(), "no {}", deb.display());

    let info = run(Command::new("dpkg-deb").arg("-I").arg(&deb));
    assert!(info.contains("Package: netevd"), "{info}");
    assert!(info.contains("Depends: libc6"), "{info}");
    let conffiles = run(Command::new("dpkg-deb")
        .args(["-f"])
        .arg(&deb)
        .arg("Package"));
    assert_eq!(conffiles.trim(), "netevd");
    let ctl = dir.join("ctl");
    run(Command::new("dpkg-deb").arg("-e").arg(&deb).arg(&ctl));
    let conffiles = fs::read_to_string(ctl.join("conffiles")).unwrap();
    assert!(
        conffiles.lines().any(|l| l == "/etc/netevd/netevd.yaml"),
        "{conffiles}"
    );
    assert!(
        conffiles
            .lines()
            .any(|l| l == "/etc/iproute2/rt_protos.d/netevd.conf"),
        "{conffiles}"
    );

    if have("lintian", "lintian") {
        let o = Command::new("lintian")
            .args(["--tag-display-limit", "0"])
            .arg(&deb)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&o.stdout).into_owned();
        let errors: Vec<&str> = text.lines().filter(|l| l.starts_with("E:")).collect();
        assert!(errors.is_empty(), "lintian:\n{text}");
    }

    let host_passwd = fs::read_to_string("/etc/passwd").unwrap();
    let root = scratch_root(&dir);
    dpkg_install(&root, &deb);
    for f in FILES {
        let p = root.join(f);
        let gz = root.join(format!("{f}.gz"));
        assert!(p.exists() || gz.exists(), "{f} not installed");
    }
    let passwd = fs::read_to_string(root.join("etc/passwd")).unwrap();
    let user = passwd
        .lines()
        .find(|l| l.starts_with("netevd:"))
        .unwrap_or_else(|| panic!("postinst made no netevd user:\n{passwd}"));
    assert!(user.ends_with(":/nonexistent:/usr/sbin/nologin"), "{user}");
    assert_eq!(
        fs::read_to_string("/etc/passwd").unwrap(),
        host_passwd,
        "the host's users changed"
    );
    // The installed daemon accepts the installed configuration.
    let o = Command::new(root.join("usr/sbin/netevd"))
        .arg("--validate")
        .arg("--config")
        .arg(root.join("etc/netevd/netevd.yaml"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");

    // The administrator edits both conffiles; an upgrade whose own
    // netevd.yaml changed keeps them, and installs its own as .dpkg-dist.
    let yaml = root.join("etc/netevd/netevd.yaml");
    let mine = format!(
        "{}# edited by the administrator\n",
        fs::read_to_string(&yaml).unwrap()
    );
    fs::write(&yaml, &mine).unwrap();
    let protos = root.join("etc/iproute2/rt_protos.d/netevd.conf");
    let my_protos = "148\tmine\n";
    fs::write(&protos, my_protos).unwrap();
    let v2 = format!("{}+1", version());
    let deb2 = repack(&dir, &deb, &v2, "# upstream changed this file\n");
    dpkg_install(&root, &deb2);
    let status = fs::read_to_string(root.join("var/lib/dpkg/status")).unwrap();
    assert!(status.contains(&format!("Version: {v2}\n")), "{status}");
    assert_eq!(
        fs::read_to_string(&yaml).unwrap(),
        mine,
        "netevd.yaml replaced"
    );
    assert_eq!(
        fs::read_to_string(&protos).unwrap(),
        my_protos,
        "rt_protos.d replaced"
    );
    let dist = fs::read_to_string(root.join("etc/netevd/netevd.yaml.dpkg-dist")).unwrap();
    assert!(dist.ends_with("# upstream changed this file\n"), "{dist}");
    // The user is made once.
    let passwd = fs::read_to_string(root.join("etc/passwd")).unwrap();
    assert_eq!(passwd.matches("\nnetevd:").count(), 1, "{passwd}");

    // Remove, then purge: the edited config goes only with the purge.
    run(Command::new("dpkg")
        .arg(format!("--root={}", root.display()))
        .args([
            "--force-script-chrootless",
            "--log=/dev/null",
            "-r",
            "netevd",
        ]));
    assert!(!root.join("usr/sbin/netevd").exists());
    assert!(yaml.exists(), "remove took the config");
    run(Command::new("dpkg")
        .arg(format!("--root={}", root.display()))
        .args([
            "--force-script-chrootless",
            "--log=/dev/null",
            "-P",
            "netevd",
        ]));
    assert!(!yaml.exists(), "purge left the config");
}

#[test]
fn rpm_builds_with_the_same_layout() {
    if !have("rpmbuild", "rpm") {
        return;
    }
    let dir = common::Dir::new();
    let out = dir.join("rpm");
    make("rpm", "RPM_OUT", &out);
    let rpms: Vec<PathBuf> = fs::read_dir(out.join("RPMS"))
        .unwrap()
        .flat_map(|a| fs::read_dir(a.unwrap().path()).unwrap())
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(rpms.len(), 1, "{rpms:?}");
    let rpm = &rpms[0];
    let name = rpm.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        name.starts_with(&format!("netevd-{}-1.", version())),
        "{name}"
    );
    let list = run(Command::new("rpm").arg("-qlp").arg(rpm));
    for f in FILES {
        assert!(
            list.lines()
                .any(|l| l.trim_start_matches('/').starts_with(f)),
            "{f} missing from the RPM:\n{list}"
        );
    }
    let config = run(Command::new("rpm").args(["-qp", "--configfiles"]).arg(rpm));
    assert!(config.contains("/etc/netevd/netevd.yaml"), "{config}");
    assert!(
        config.contains("/etc/iproute2/rt_protos.d/netevd.conf"),
        "{config}"
    );
    let requires = run(Command::new("rpm").args(["-qp", "--requires"]).arg(rpm));
    assert!(!requires.contains("openrc"), "{requires}");
    let scripts = run(Command::new("rpm").args(["-qp", "--scripts"]).arg(rpm));
    assert!(scripts.contains("useradd -r -g netevd"), "{scripts}");
}

/// `make install` installs the binaries `make` built and builds nothing
/// (so `sudo make install` needs no toolchain and leaves no root-owned
/// files in target/); it never overwrites an edited config or
/// rt_protos.d file.
#[test]
fn make_install_builds_nothing_and_keeps_edits() {
    if !have("make", "make") {
        return;
    }
    let dir = common::Dir::new();
    let dest = dir.join("dest");
    let install = |release: &Path| {
        Command::new("make")
            .arg("install")
            .arg(format!("DESTDIR={}", dest.display()))
            .arg(format!("RELEASE={}", release.display()))
            .arg("PREFIX=/usr")
            // No cargo at all: a rebuild would fail loudly.
            .env("CARGO", "/bin/false")
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .unwrap()
    };
    let empty = dir.join("empty");
    fs::create_dir_all(&empty).unwrap();
    let o = install(&empty);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("netevd is missing: run make first (as your user, not root)"),
        "{err}"
    );

    // Stand-ins for what `make` built: installed as they are.
    let built = dir.join("built");
    dir.write("built/netevd", "#!/bin/sh\necho built netevd\n", 0o755);
    dir.write("built/netevctl", "#!/bin/sh\necho built netevctl\n", 0o755);
    let o = install(&built);
    assert!(o.status.success(), "{o:?}");
    assert_eq!(
        fs::read_to_string(dest.join("usr/sbin/netevd")).unwrap(),
        "#!/bin/sh\necho built netevd\n"
    );
    for f in FILES {
        if !f.starts_with("usr/lib/systemd") {
            assert!(dest.join(f).exists(), "{f} not installed");
        }
    }
    assert!(dest.join("lib/systemd/system/netevd.service").exists());

    let protos = dest.join("etc/iproute2/rt_protos.d/netevd.conf");
    let yaml = dest.join("etc/netevd/netevd.yaml");
    fs::write(&protos, "148\tmine\n").unwrap();
    fs::write(&yaml, "# mine\n").unwrap();
    let o = install(&built);
    assert!(o.status.success(), "{o:?}");
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(fs::read_to_string(&protos).unwrap(), "148\tmine\n");
    assert_eq!(fs::read_to_string(&yaml).unwrap(), "# mine\n");
    assert!(out.contains("keeping the edited"), "{out}");
    let new = dest.join("etc/iproute2/rt_protos.d/netevd.conf.new");
    assert!(fs::read_to_string(new).unwrap().contains("netevd"));
    // Unchanged files are installed again silently, with no .new.
    fs::remove_file(dest.join("etc/netevd/netevd.yaml.new")).unwrap();
    fs::remove_file(&yaml).unwrap();
    let o = install(&built);
    assert!(o.status.success(), "{o:?}");
    let o = install(&built);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        !out.lines()
            .any(|l| l.contains("keeping the edited") && l.contains("netevd.yaml")),
        "{out}"
    );
    assert!(!dest.join("etc/netevd/netevd.yaml.new").exists());
}

/// `make deps` names the package of a missing tool and fails, rather than
/// letting a test fail in a way that looks like a bug; as root on Debian
/// it would install it (not tried here: the test would change the
/// machine). Run as nobody, with a tool that exists nowhere.
#[test]
fn make_deps_names_missing_packages() {
    common::require_root();
    if !have("make", "make") || !have("setpriv", "util-linux") {
        return;
    }
    let o = Command::new("setpriv")
        .args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
        .args([
            "make",
            "-s",
            "deps",
            "TEST_TOOLS=sh:dash no-such-tool-x:no-such-package-x",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(
        err.contains(
            "install these Debian packages (or your system's equivalents): no-such-package-x\n"
        ),
        "{err}"
    );
    assert!(err.contains("or run make deps as root on Debian"), "{err}");
    // Nothing missing: nothing to do, as anyone.
    let o = Command::new("setpriv")
        .args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
        .args(["make", "-s", "deps", "TEST_TOOLS=sh:dash"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
}
