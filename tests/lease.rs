//! dhclient's lease files driving the real daemon (`system.backend:
//! dhclient`), each test in namespaces of its own:
//!
//! - dnsmasq serves DHCPv4 and DHCPv6 in one namespace and ISC dhclient,
//!   in another (and in a mount namespace of its own with an overlay on
//!   /etc, so its script cannot touch the machine's resolv.conf), writes
//!   real lease files (`lease` and `lease6` blocks): routable.d sees
//!   BACKEND=dhclient and the DHCP_* variables.
//! - Lease files written by hand: garbage, a block cut short, an emptied
//!   file and files replaced by rename; the last good lease stays and the
//!   daemon goes on.
//! - Policy routing takes its gateway from the lease when no default
//!   route goes through the interface.
//!
//! Needs dnsmasq (Debian package dnsmasq-base) and dhclient (package
//! isc-dhcp-client) for the first two tests, which say so and skip when
//! one is missing.

#![cfg(feature = "dhclient")]

mod common;

use common::*;
use std::fs;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A routable.d hook that appends its DHCP environment, one line a run.
const ENV_HOOK: &str = "#!/bin/sh\nprintf '%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s\\n' \
\"$EVENT\" \"$STATE\" \"$BACKEND\" \"$LINK\" \"$DHCP_ADDRESS\" \"$DHCP_SUBNET_MASK\" \
\"$DHCP_GATEWAY\" \"$DHCP_DNS\" \"$DHCP_DOMAIN\" \"$DHCP_HOSTNAME\" \"$DHCP_LEASE\" \"${DHCP_ADDRESS+set}\" >> ";

fn env_hook(dir: &Dir) {
    let script = format!("{ENV_HOOK}{}\n", dir.join("dhcp").display());
    dir.write("hooks/routable.d/50-dhcp", &script, 0o755);
}

/// The hook's lines of lease events.
fn dhcp_runs(dir: &Dir) -> Vec<Vec<String>> {
    fs::read_to_string(dir.join("dhcp"))
        .unwrap_or_default()
        .lines()
        .map(|l| l.split('|').map(str::to_string).collect::<Vec<_>>())
        .filter(|f| f[0] == "lease")
        .collect()
}

fn wait_runs(dir: &Dir, what: &str, secs: u64, n: usize) -> Vec<Vec<String>> {
    let end = Instant::now() + Duration::from_secs(secs);
    loop {
        let r = dhcp_runs(dir);
        if r.len() >= n {
            return r;
        }
        assert!(
            Instant::now() < end,
            "timed out waiting for {what}; runs: {r:?}\ndaemon log:\n{}",
            dir.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn wait_log(dir: &Dir, what: &str, needle: &str, count: usize) {
    let end = Instant::now() + Duration::from_secs(10);
    while dir.log().matches(needle).count() < count {
        assert!(
            Instant::now() < end,
            "timed out waiting for {what}:\n{}",
            dir.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn have(prog: &str) -> bool {
    ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
        .iter()
        .any(|d| Path::new(d).join(prog).exists())
}

/// The daemon's config: the dhclient backend watching `<dir>/leases`.
fn config(dir: &Dir, extra: &str) -> String {
    // Continues config_text's `system:` map.
    format!(
        "  backend: dhclient\nbackends:\n  dhclient:\n    lease_files: [{}/*.leases]\n{extra}",
        dir.join("leases").display()
    )
}

/// Kills and reaps a helper process on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// dnsmasq serving DHCPv4 and DHCPv6 (with router advertisements) on ds0
/// in one namespace, and the daemon in another on dc0, its peer; None
/// (the test is skipped) when a program is missing.
struct Dhcp {
    // Dropped in this order: the processes first, the namespaces last.
    procs: Vec<Proc>,
    dir: Dir,
    cli: Ns,
    _srv: Ns,
}

fn dhcp() -> Option<Dhcp> {
    require_root();
    for (prog, pkg) in [("dnsmasq", "dnsmasq-base"), ("dhclient", "isc-dhcp-client")] {
        if !have(prog) {
            eprintln!("SKIP: {prog} is missing; install the Debian package {pkg}");
            return None;
        }
    }
    let (srv, cli) = (Ns::new(), Ns::new());
    let dir = Dir::new();
    fs::create_dir_all(dir.join("leases")).unwrap();
    env_hook(&dir);
    srv.ip(&[
        "link", "add", "ds0", "type", "veth", "peer", "name", "dc0", "netns", &cli.name,
    ]);
    srv.ip(&["addr", "add", "192.0.2.1/24", "dev", "ds0"]);
    srv.ip(&["addr", "add", "2001:db8:1::1/64", "dev", "ds0", "nodad"]);
    srv.ip(&["link", "set", "ds0", "up"]);
    let dnsmasq = Proc(
        Command::new("ip")
            .args(["netns", "exec", &srv.name, "dnsmasq", "--no-daemon"])
            .args(["--conf-file=/dev/null", "--bind-interfaces"])
            .args(["--interface=ds0", "--except-interface=lo", "--port=0"])
            .arg("--dhcp-authoritative")
            .arg("--dhcp-range=192.0.2.100,192.0.2.150,255.255.255.0,2m")
            .arg("--dhcp-range=2001:db8:1::100,2001:db8:1::1ff,64,2m")
            .arg("--enable-ra")
            .arg("--dhcp-option=option:router,192.0.2.1")
            .arg("--dhcp-option=option:dns-server,192.0.2.53,192.0.2.54")
            .arg("--dhcp-option=option:domain-name,example.test")
            .arg("--dhcp-option=option6:dns-server,[2001:db8:1::53]")
            .arg("--dhcp-option=option6:domain-search,example.test")
            .arg(format!(
                "--dhcp-leasefile={}",
                dir.join("dnsmasq.leases").display()
            ))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // dhclient's script writes resolv.conf and more under /etc and
    // /run/systemd: an overlay and a tmpfs in its own mount namespace take
    // that, and its own UTS namespace the host name it sends.
    for d in ["etc-upper", "etc-work"] {
        fs::create_dir_all(dir.join(d)).unwrap();
    }
    dir.write(
        "wrap.sh",
        &format!(
            "#!/bin/sh\nset -e\nmount -t overlay nvt-etc -o lowerdir=/etc,upperdir={},workdir={} /etc\n\
             mount -t tmpfs nvt-run /run/systemd 2>/dev/null || true\nhostname nvt-client\nexec \"$@\"\n",
            dir.join("etc-upper").display(),
            dir.join("etc-work").display()
        ),
        0o755,
    );
    Some(Dhcp {
        procs: vec![dnsmasq],
        dir,
        cli,
        _srv: srv,
    })
}

impl Dhcp {
    /// Runs `dhclient -4` or `-6` on dc0, its lease file in the watched
    /// directory; returns the lease file.
    fn dhclient(&mut self, family: &str) -> std::path::PathBuf {
        let lease_file = self
            .dir
            .join(&format!("leases/dhclient{family}.dc0.leases"));
        let log = fs::File::create(self.dir.join(&format!("dhclient{family}.log"))).unwrap();
        self.procs.push(Proc(
            Command::new("ip")
                .args(["netns", "exec", &self.cli.name, "unshare", "-m", "-u"])
                .args(["--propagation", "private"])
                .arg(self.dir.join("wrap.sh"))
                .args(["dhclient", family, "-d", "-lf"])
                .arg(&lease_file)
                .arg("-pf")
                .arg(self.dir.join(&format!("dhclient{family}.pid")))
                .arg("dc0")
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap(),
        ));
        lease_file
    }
}

#[test]
fn dhclient_lease_runs_routable_with_the_dhcp_variables() {
    let Some(mut net) = dhcp() else {
        return;
    };
    let d = Daemon::start(&net.cli, &net.dir, &config(&net.dir, ""));
    net.cli.ip(&["link", "set", "dc0", "up"]);
    let lease_file = net.dhclient("-4");
    let dir = &net.dir;
    let runs = wait_runs(dir, "routable.d for the lease", 30, 1);
    let r = &runs[0];
    assert_eq!(&r[..4], ["lease", "routable", "dhclient", "dc0"], "{r:?}");
    assert!(r[4].starts_with("192.0.2.1"), "DHCP_ADDRESS {r:?}");
    let granted = fs::read_to_string(&lease_file).unwrap();
    assert!(
        granted.contains(&format!("fixed-address {};", r[4])),
        "{granted}"
    );
    assert_eq!(r[5], "255.255.255.0", "DHCP_SUBNET_MASK");
    assert_eq!(r[6], "192.0.2.1", "DHCP_GATEWAY");
    assert_eq!(r[7], "192.0.2.53 192.0.2.54", "DHCP_DNS");
    assert_eq!(r[8], "example.test", "DHCP_DOMAIN");
    assert_eq!(r[10], "120", "DHCP_LEASE");
    // dnsmasq gives back the name the client sent, when it sent one.
    assert!(
        r[9].is_empty() || r[9] == "nvt-client",
        "DHCP_HOSTNAME {r:?}"
    );
    // The host's resolv.conf is untouched: the script wrote the overlay.
    assert!(!fs::read_to_string("/etc/resolv.conf")
        .unwrap_or_default()
        .contains("192.0.2.53"));
    assert!(
        dir.log().contains("dhclient: new lease on dc0"),
        "{}",
        dir.log()
    );
    // A renewal with the same terms (about every 60 s) runs nothing; the
    // test does not wait for one. The daemon stops cleanly.
    assert_eq!(d.stop(), Some(0));
}

#[test]
fn dhclient6_lease_runs_routable_with_the_dhcp_variables() {
    let Some(mut net) = dhcp() else {
        return;
    };
    let d = Daemon::start(&net.cli, &net.dir, &config(&net.dir, ""));
    net.cli.ip(&["link", "set", "dc0", "up"]);
    // dhclient -6 needs a link-local address that is no longer tentative.
    let end = Instant::now() + Duration::from_secs(10);
    while net
        .cli
        .output(&["-6", "addr", "show", "dev", "dc0", "scope", "link"])
        .contains("tentative")
        || !net
            .cli
            .output(&["-6", "addr", "show", "dev", "dc0", "scope", "link"])
            .contains("fe80")
    {
        assert!(
            Instant::now() < end,
            "dc0's link-local address stays tentative"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let lease_file = net.dhclient("-6");
    let dir = &net.dir;
    let runs = wait_runs(dir, "routable.d for the DHCPv6 lease", 30, 1);
    let r = &runs[0];
    assert_eq!(&r[..4], ["lease", "routable", "dhclient", "dc0"], "{r:?}");
    assert!(r[4].starts_with("2001:db8:1::1"), "DHCP_ADDRESS {r:?}");
    let granted = fs::read_to_string(&lease_file).unwrap();
    assert!(
        granted.contains(&format!("iaaddr {} {{", r[4])),
        "{granted}"
    );
    assert_eq!(r[5], "", "no DHCP_SUBNET_MASK in DHCPv6");
    assert_eq!(r[6], "", "no DHCP_GATEWAY in DHCPv6");
    assert_eq!(r[7], "2001:db8:1::53", "DHCP_DNS");
    assert_eq!(r[8], "example.test", "DHCP_DOMAIN");
    assert_eq!(r[10], "120", "DHCP_LEASE");
    assert_eq!(d.stop(), Some(0));
}

const GOOD: &str = "lease {\n  interface \"lz0\";\n  fixed-address 10.9.0.2;\n  option subnet-mask 255.255.255.0;\n  option routers 10.9.0.1;\n  option domain-name-servers 10.9.0.53;\n  option dhcp-lease-time 600;\n  renew 5 2099/11/27 09:28:24;\n  rebind 5 2099/11/27 09:29:16;\n  expire 5 2099/11/27 09:29:31;\n}\n";

/// Writes `text` to a new file and renames it over `path`, as tools that
/// replace lease files atomically do.
fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, text).unwrap();
    fs::rename(&tmp, path).unwrap();
}

#[test]
fn bad_lease_files_keep_the_last_good_lease_and_the_daemon_running() {
    let ns = Ns::new();
    let dir = Dir::new();
    fs::create_dir_all(dir.join("leases")).unwrap();
    env_hook(&dir);
    dir.recorder("carrier", "50-record");
    dir.recorder("no-carrier", "50-record");
    ns.ip(&["link", "add", "lz0", "type", "veth", "peer", "name", "lz1"]);
    ns.ip(&["link", "set", "lz0", "up"]);
    let d = Daemon::start(&ns, &dir, &config(&dir, ""));
    let f = dir.join("leases/dhclient.lz0.leases");
    // A file created after the start is seen.
    fs::write(&f, GOOD).unwrap();
    let r = wait_runs(&dir, "the first lease", 10, 1);
    assert_eq!(r[0][4], "10.9.0.2");
    assert_eq!(r[0][6], "10.9.0.1");
    let skipped = "skipped, its last good leases stay";
    // Garbage, a block cut short, an emptied file: each skipped and logged
    // with what was wrong, and no hook runs.
    fs::write(
        &f,
        "lease {\n  interface \"lz0\";\n  fixed-address 10.9.0.7;\n  \x01garbage\n}\n",
    )
    .unwrap();
    wait_log(&dir, "garbage skipped", skipped, 1);
    assert!(
        dir.log().contains("line 4: unexpected byte 0x01"),
        "{}",
        dir.log()
    );
    fs::write(&f, &GOOD.replace("10.9.0.2", "10.9.0.8")[..GOOD.len() / 2]).unwrap();
    wait_log(&dir, "a truncated file skipped", skipped, 2);
    fs::write(&f, "").unwrap();
    wait_log(&dir, "an emptied file skipped", skipped, 3);
    // A file replaced by rename: a good one is a new lease ...
    replace(&f, &GOOD.replace("10.9.0.2", "10.9.0.3"));
    let r = wait_runs(&dir, "the replacing lease", 10, 2);
    assert_eq!(r[1][4], "10.9.0.3", "{r:?}");
    // ... a garbage one is skipped, and the same good lease again is not
    // new: the last good lease stayed.
    replace(&f, "}}}");
    wait_log(&dir, "a garbage replacement skipped", skipped, 4);
    replace(&f, &GOOD.replace("10.9.0.2", "10.9.0.3"));
    // The daemon still runs kernel hooks, and the lease came through
    // once: the carrier hook's run comes after the file was read.
    std::thread::sleep(Duration::from_millis(300));
    ns.ip(&["link", "set", "lz1", "up"]);
    dir.wait_for("carrier after the bad files", 10, |r| {
        r.iter().any(|x| x.link == "lz0" && x.state == "carrier")
    });
    assert_eq!(dhcp_runs(&dir).len(), 2, "{:?}", dhcp_runs(&dir));
    // The file goes: no hook; a new one later is new.
    fs::remove_file(&f).unwrap();
    wait_log(&dir, "the file gone", "is gone", 1);
    fs::write(&f, GOOD).unwrap();
    let r = wait_runs(&dir, "a lease after the file went", 10, 3);
    assert_eq!(r[2][4], "10.9.0.2");
    assert_eq!(d.stop(), Some(0));
}

#[test]
fn policy_routing_takes_the_gateway_from_the_lease() {
    let (h, r) = (Ns::new(), Ns::new());
    let dir = Dir::new();
    fs::create_dir_all(dir.join("leases")).unwrap();
    h.ip(&[
        "link", "add", "wan1", "type", "veth", "peer", "name", "up1", "netns", &r.name,
    ]);
    h.ip(&["link", "set", "wan1", "addrgenmode", "none"]);
    h.ip(&["link", "set", "wan1", "up"]);
    r.ip(&["link", "set", "up1", "up"]);
    r.ip(&["addr", "add", "10.2.0.1/24", "dev", "up1"]);
    h.ip(&["addr", "add", "10.2.0.2/24", "dev", "wan1"]);
    let _d = Daemon::start(
        &h,
        &dir,
        &config(
            &dir,
            "routing:\n  policy_rules:\n    - interface: wan1\n      table: 1077\n",
        ),
    );
    let table = || h.output(&["route", "show", "table", "1077"]);
    let wait = |what: &str, pred: &dyn Fn(&str) -> bool| {
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            let t = table();
            if pred(&t) {
                return;
            }
            assert!(
                Instant::now() < end,
                "timed out waiting for {what}; table 1077:\n{t}\nlog:\n{}",
                dir.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    wait("the connected route", &|t| {
        t.contains("10.2.0.0/24 dev wan1")
    });
    // No default route through wan1 anywhere: no gateway yet.
    assert!(!table().contains("default"), "{}", table());
    fs::write(
        dir.join("leases/dhclient.wan1.leases"),
        GOOD.replace("lz0", "wan1")
            .replace("10.9.0.2", "10.2.0.2")
            .replace("10.9.0.1", "10.2.0.1"),
    )
    .unwrap();
    wait("the lease's gateway", &|t| {
        t.contains("default via 10.2.0.1 dev wan1 proto 148")
    });
    // Released (dhclient appends an expired block): the gateway goes.
    let mut released = fs::read_to_string(dir.join("leases/dhclient.wan1.leases")).unwrap();
    released.push_str(&GOOD.replace("lz0", "wan1").replace("2099", "2001"));
    fs::write(dir.join("leases/dhclient.wan1.leases"), released).unwrap();
    wait("the gateway to go", &|t| !t.contains("default"));
}
