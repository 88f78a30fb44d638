//! Real DBus peers for the tests: a private system-type dbus-daemon on a
//! socket in the test's scratch directory, and the distribution's
//! systemd-networkd run standalone inside the test's namespace. The
//! recipes are those of tests/peers/*.sh (copied from the project's
//! testbed), done from Rust so that `Drop` stops every process, also when
//! a test fails.
//!
//! A test whose program is missing skips with the Debian package to
//! install (`skip_unless`).

#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{config_text, Dir, Ns};

/// Whether `prog` exists; if not, prints why the test is skipped.
pub fn skip_unless(prog: &str, package: &str) -> bool {
    if Path::new(prog).exists() {
        return false;
    }
    eprintln!("SKIP: {prog} is missing (Debian: apt-get install {package})");
    true
}

/// Skips unless dbus-daemon, busctl and systemd-networkd are here.
pub fn skip_without_networkd() -> bool {
    skip_unless("/usr/bin/dbus-daemon", "dbus-daemon")
        || skip_unless("/usr/bin/busctl", "systemd")
        || skip_unless("/lib/systemd/systemd-networkd", "systemd")
}

fn wait(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A private system bus: `address` is for DBUS_SYSTEM_BUS_ADDRESS.
pub struct Bus {
    pub dir: PathBuf,
    pub address: String,
    /// A passwd and group for the daemon to resolve service users by
    /// (dbus-daemon drops connections from uids it cannot resolve).
    passwd: Option<(PathBuf, PathBuf)>,
    child: Option<Child>,
}

impl Bus {
    /// Starts dbus-daemon with a permissive policy under `<dir>/bus`.
    /// Every directory on the way to the socket must be traversable by
    /// the services' users.
    pub fn start(dir: &Dir) -> Bus {
        Bus::start_with(dir, None)
    }

    /// As `start`, with the daemon seeing `passwd` and `group` as
    /// /etc/passwd and /etc/group.
    pub fn start_with(dir: &Dir, passwd: Option<(PathBuf, PathBuf)>) -> Bus {
        let d = dir.join("bus");
        fs::create_dir_all(&d).unwrap();
        chmod_path(&d);
        let sock = d.join("system_bus_socket");
        let conf = format!(
            r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_type="method_call"/>
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
  </policy>
  <policy user="root">
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Monitoring"/>
  </policy>
</busconfig>
"#,
            sock.display()
        );
        fs::write(d.join("bus.conf"), conf).unwrap();
        let mut b = Bus {
            address: format!("unix:path={}", sock.display()),
            dir: d,
            passwd,
            child: None,
        };
        b.restart();
        b
    }

    /// Starts the daemon (again), on the same socket.
    pub fn restart(&mut self) {
        self.stop();
        let sock = self.dir.join("system_bus_socket");
        let _ = fs::remove_file(&sock);
        let log = fs::File::create(self.dir.join("bus.log")).unwrap();
        let mut cmd = match &self.passwd {
            Some((p, g)) => {
                let mut c = Command::new("unshare");
                c.args(["-m", "--propagation", "private", "sh", "-c"])
                    .arg("mount --bind \"$1\" /etc/passwd && mount --bind \"$2\" /etc/group && shift 2 && exec \"$@\"")
                    .arg("sh")
                    .arg(p)
                    .arg(g)
                    .arg("dbus-daemon");
                c
            }
            None => Command::new("dbus-daemon"),
        };
        let child = cmd
            .arg(format!(
                "--config-file={}",
                self.dir.join("bus.conf").display()
            ))
            .args(["--nofork", "--nopidfile", "--nosyslog"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        wait("dbus-daemon's socket", 10, || sock.exists());
        wait("dbus-daemon to answer", 10, || {
            self.has("org.freedesktop.DBus")
        });
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Whether `name` has an owner on the bus.
    pub fn has(&self, name: &str) -> bool {
        Command::new("busctl")
            .arg(format!("--address={}", self.address))
            .args(["status", name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// `busctl --address=... ARGS`, which must succeed.
    pub fn busctl(&self, args: &[&str]) -> String {
        let o = Command::new("busctl")
            .arg(format!("--address={}", self.address))
            .args(args)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "busctl {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }
}

impl Drop for Bus {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `chmod o+x` on `p` and every parent: services drop to their own users
/// and must reach the bus socket and their state directory.
fn chmod_path(p: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mut cur = Some(p);
    while let Some(d) = cur {
        if let Ok(m) = fs::metadata(d) {
            let mode = m.permissions().mode();
            if mode & 0o011 != 0o011 {
                let _ = fs::set_permissions(d, fs::Permissions::from_mode(mode | 0o011));
            }
        }
        cur = d.parent();
    }
}

/// systemd-networkd in `ns`, its own mount namespace with a read-only
/// /sys (else it waits for udev forever) and a tmpfs over /run/systemd;
/// its state files are in `state` (`/run/systemd/netif` inside), its
/// .network files in `<dir>/network`.
pub struct Networkd {
    pub state: PathBuf,
    dir: PathBuf,
    ns: String,
    address: String,
    child: Option<Child>,
}

impl Networkd {
    pub fn start(ns: &Ns, dir: &Dir, bus: &Bus, network: &str) -> Networkd {
        let d = dir.join("networkd");
        fs::create_dir_all(d.join("network")).unwrap();
        fs::create_dir_all(d.join("netif")).unwrap();
        chmod_path(&d);
        fs::write(d.join("network/50-test.network"), network).unwrap();
        crate::common::run(
            "chown",
            &[
                "systemd-network:systemd-network",
                d.join("netif").to_str().unwrap(),
            ],
        );
        let script = format!(
            "#!/bin/sh\nset -e\nmount -o remount,bind,ro /sys\n\
             mount -t tmpfs -o mode=755 netevd-test /run/systemd\n\
             mkdir -p /run/systemd/netif /run/systemd/network\n\
             mount --bind {d}/netif /run/systemd/netif\n\
             mount --bind {d}/network /run/systemd/network\n\
             export DBUS_SYSTEM_BUS_ADDRESS='{a}' SYSTEMD_LOG_LEVEL=debug SYSTEMD_LOG_TARGET=console\n\
             exec /lib/systemd/systemd-networkd\n",
            d = d.display(),
            a = bus.address
        );
        dir.write("networkd/run.sh", &script, 0o755);
        let mut n = Networkd {
            state: d.join("netif"),
            dir: d,
            ns: ns.name.clone(),
            address: bus.address.clone(),
            child: None,
        };
        n.restart(bus);
        n
    }

    pub fn restart(&mut self, bus: &Bus) {
        self.stop();
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("networkd.log"))
            .unwrap();
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.ns,
                "unshare",
                "-m",
                "--propagation",
                "private",
            ])
            .arg(self.dir.join("run.sh"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        wait("networkd on the bus", 15, || {
            bus.has("org.freedesktop.network1")
        });
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Waits until networkd's state file for link `index` has `line`.
    pub fn wait_line(&self, index: u32, line: &str, secs: u64) {
        let f = self.state.join("links").join(index.to_string());
        let end = Instant::now() + Duration::from_secs(secs);
        loop {
            let t = fs::read_to_string(&f).unwrap_or_default();
            if t.lines().any(|l| l == line) {
                return;
            }
            assert!(
                Instant::now() < end,
                "timed out waiting for {line} in {}:\n{t}\nnetworkd log tail:\n{}",
                f.display(),
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log_tail(&self) -> String {
        let t = fs::read_to_string(self.dir.join("networkd.log")).unwrap_or_default();
        let lines: Vec<&str> = t.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for Networkd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// netevd in `ns` on the private bus, logging at debug to `<dir>/log`.
pub struct Netevd {
    child: Child,
}

impl Netevd {
    pub fn start(ns: &Ns, dir: &Dir, bus: &Bus, config: &str) -> Netevd {
        let cfg = config_text(dir, config);
        let cfg_path = dir.write("netevd.yaml", &cfg, 0o644);
        let log = fs::File::create(dir.join("log")).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &ns.name, env!("CARGO_BIN_EXE_netevd")])
            .args(["--foreground", "-v", "--config", cfg_path.to_str().unwrap()])
            .env("DBUS_SYSTEM_BUS_ADDRESS", &bus.address)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let d = Netevd { child };
        let end = Instant::now() + Duration::from_secs(10);
        while !dir.log().contains("running: backend") {
            assert!(Instant::now() < end, "daemon did not start:\n{}", dir.log());
            std::thread::sleep(Duration::from_millis(20));
        }
        d
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Netevd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A hook in `<state>.d/50-bus` recording, one line per run:
/// `BACKEND|STATE|LINK|OPER_STATE|ADMIN_STATE|CARRIER_STATE|ONLINE_STATE|DNS|DOMAINS|EVENT|ADDRESSES`.
pub fn bus_recorder(dir: &Dir, states: &[&str]) {
    let rec = dir.join("bus-records");
    for s in states {
        let script = format!(
            "#!/bin/sh\nprintf '%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s\\n' \"$BACKEND\" \"$STATE\" \"$LINK\" \
             \"$OPER_STATE\" \"$ADMIN_STATE\" \"$CARRIER_STATE\" \"$ONLINE_STATE\" \"$DNS\" \"$DOMAINS\" \
             \"$EVENT\" \"$ADDRESSES\" >> {}\n",
            rec.display()
        );
        dir.write(&format!("hooks/{s}.d/50-bus"), &script, 0o755);
    }
}

/// The lines `bus_recorder` wrote, split into fields.
pub fn bus_records(dir: &Dir) -> Vec<Vec<String>> {
    fs::read_to_string(dir.join("bus-records"))
        .unwrap_or_default()
        .lines()
        .map(|l| l.split('|').map(str::to_string).collect())
        .collect()
}

/// Waits until `pred` holds for the records, or panics with them and the
/// daemon's log.
pub fn wait_records(
    dir: &Dir,
    what: &str,
    secs: u64,
    pred: impl Fn(&[Vec<String>]) -> bool,
) -> Vec<Vec<String>> {
    let end = Instant::now() + Duration::from_secs(secs);
    loop {
        let r = bus_records(dir);
        if pred(&r) {
            return r;
        }
        if Instant::now() > end {
            panic!(
                "timed out waiting for {what}; records:\n{}\ndaemon log:\n{}",
                r.iter().map(|x| x.join("|")).collect::<Vec<_>>().join("\n"),
                dir.log()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether a record is `backend` running `state` for `link`.
pub fn is(r: &[String], backend: &str, state: &str, link: &str) -> bool {
    r.len() >= 3 && r[0] == backend && r[1] == state && r[2] == link
}

/// Where .ci/run unpacks the systemd-resolved package of the installed
/// systemd's version (installing it would take over the machine's
/// resolv.conf).
pub const RESOLVED_ROOT: &str = "/var/cache/netevd-tests/resolved-root";

/// Skips unless an unpacked systemd-resolved is at `RESOLVED_ROOT`.
pub fn skip_without_resolved() -> bool {
    skip_unless(
        &format!("{RESOLVED_ROOT}/lib/systemd/systemd-resolved"),
        "systemd-resolved, unpacked, not installed: apt-get download systemd-resolved=<systemd's \
         version> && dpkg-deb -x systemd-resolved_*.deb /var/cache/netevd-tests/resolved-root \
         (as .ci/run does)",
    ) || skip_unless("/lib/systemd/systemd-hostnamed", "systemd")
}

/// A passwd and group with a systemd-resolve user (resolved refuses to
/// run without one), for the bus and resolved's /etc.
pub fn passwd_with_resolve(dir: &Dir) -> (PathBuf, PathBuf) {
    let mut p = fs::read_to_string("/etc/passwd").unwrap();
    let mut g = fs::read_to_string("/etc/group").unwrap();
    if !p.lines().any(|l| l.starts_with("systemd-resolve:")) {
        p.push_str("systemd-resolve:x:990:990:systemd Resolver:/:/usr/sbin/nologin\n");
    }
    if !g.lines().any(|l| l.starts_with("systemd-resolve:")) {
        g.push_str("systemd-resolve:x:990:\n");
    }
    let pp = dir.write("etc/passwd", &p, 0o644);
    let gp = dir.write("etc/group", &g, 0o644);
    (pp, gp)
}

/// A service in its own mount namespace (and network namespace `ns`, if
/// given) started by `script`; killed on drop.
pub struct Service {
    child: Option<Child>,
    pub log: PathBuf,
}

impl Service {
    pub fn start(
        dir: &Dir,
        name: &str,
        ns: Option<&Ns>,
        unshare: &[&str],
        script: &str,
    ) -> Service {
        let path = dir.write(&format!("{name}/run.sh"), script, 0o755);
        let log = dir.join(&format!("{name}/{name}.log"));
        let out = fs::File::create(&log).unwrap();
        let mut c = match ns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", &ns.name, "unshare"]);
                c
            }
            None => Command::new("unshare"),
        };
        let child = c
            .args(unshare)
            .args(["--propagation", "private"])
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        Service {
            child: Some(child),
            log,
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.stop();
    }
}

/// systemd-resolved in `ns` on `bus`: an overlay /etc with the given
/// passwd and no name servers of its own, its runtime directory in
/// `<dir>/resolved/resolve`.
pub fn resolved(dir: &Dir, ns: &Ns, bus: &Bus, passwd: &(PathBuf, PathBuf)) -> Service {
    let d = dir.join("resolved");
    for sub in ["upper/systemd", "work", "resolve"] {
        fs::create_dir_all(d.join(sub)).unwrap();
    }
    chmod_path(&d.join("resolve"));
    fs::copy(&passwd.0, d.join("upper/passwd")).unwrap();
    fs::copy(&passwd.1, d.join("upper/group")).unwrap();
    fs::write(
        d.join("upper/systemd/resolved.conf"),
        "[Resolve]\nDNS=\nFallbackDNS=\nDNSStubListener=no\nLLMNR=no\nMulticastDNS=no\n",
    )
    .unwrap();
    fs::write(d.join("upper/resolv.conf"), "# empty, netevd test\n").unwrap();
    crate::common::run("chown", &["990:990", d.join("resolve").to_str().unwrap()]);
    let script = format!(
        "#!/bin/sh\nset -e\n\
         mount -t overlay netevd-etc -o lowerdir=/etc,upperdir={d}/upper,workdir={d}/work /etc\n\
         mount -t tmpfs -o mode=755 netevd-run /run/systemd\n\
         mkdir -p /run/systemd/resolve\n\
         mount --bind {d}/resolve /run/systemd/resolve\n\
         export DBUS_SYSTEM_BUS_ADDRESS='{a}' SYSTEMD_LOG_LEVEL=debug SYSTEMD_LOG_TARGET=console\n\
         exec {RESOLVED_ROOT}/lib/systemd/systemd-resolved\n",
        d = d.display(),
        a = bus.address
    );
    let s = Service::start(dir, "resolved", Some(ns), &["-m"], &script);
    wait("resolved on the bus", 15, || {
        bus.has("org.freedesktop.resolve1")
    });
    s
}

/// systemd-hostnamed on `bus` in its own mount and UTS namespaces, with an
/// overlay /etc whose hostname file is `<dir>/hostnamed/upper/hostname`.
pub fn hostnamed(dir: &Dir, bus: &Bus) -> Service {
    let d = dir.join("hostnamed");
    for sub in ["upper", "work"] {
        fs::create_dir_all(d.join(sub)).unwrap();
    }
    fs::write(d.join("upper/hostname"), "netevd-old-name\n").unwrap();
    let script = format!(
        "#!/bin/sh\nset -e\n\
         mount -t overlay netevd-etc -o lowerdir=/etc,upperdir={d}/upper,workdir={d}/work /etc\n\
         hostname netevd-transient\n\
         export DBUS_SYSTEM_BUS_ADDRESS='{a}' SYSTEMD_LOG_LEVEL=debug SYSTEMD_LOG_TARGET=console\n\
         exec /lib/systemd/systemd-hostnamed\n",
        d = d.display(),
        a = bus.address
    );
    let s = Service::start(dir, "hostnamed", None, &["-m", "-u"], &script);
    wait("hostnamed on the bus", 15, || {
        bus.has("org.freedesktop.hostname1")
    });
    s
}
