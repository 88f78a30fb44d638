//! Test harness: a network namespace per test, the real daemon binary in
//! it, and hooks that record what they saw. Everything is removed in
//! `Drop`, so a failing test cleans up too. Needs root (CI runs as root).

#![allow(dead_code)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

static SEQ: AtomicUsize = AtomicUsize::new(0);

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::SeqCst)
    )
}

pub fn require_root() {
    assert!(
        nix_is_root(),
        "integration tests create network namespaces and must run as root"
    );
}

fn nix_is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

pub struct Ns {
    pub name: String,
}

impl Ns {
    pub fn new() -> Ns {
        require_root();
        let name = unique("nvt");
        run("ip", &["netns", "add", &name]);
        let ns = Ns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// `ip -n NS ARGS...`, which must succeed.
    pub fn ip(&self, args: &[&str]) {
        let mut a = vec!["-n", &self.name];
        a.extend_from_slice(args);
        run("ip", &a);
    }

    /// `ip -n NS -batch FILE`.
    pub fn batch(&self, file: &Path) {
        run("ip", &["-n", &self.name, "-batch", file.to_str().unwrap()]);
    }

    pub fn output(&self, args: &[&str]) -> String {
        let mut a = vec!["-n", &self.name];
        a.extend_from_slice(args);
        let o = Command::new("ip").args(&a).output().unwrap();
        assert!(
            o.status.success(),
            "ip {a:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

pub fn run(cmd: &str, args: &[&str]) {
    let o = Command::new(cmd).args(args).output().unwrap();
    assert!(
        o.status.success(),
        "{cmd} {args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// A scratch directory for hooks, config and records.
pub struct Dir {
    pub path: PathBuf,
}

impl Dir {
    pub fn new() -> Dir {
        let path = std::env::temp_dir().join(unique("netevd-test"));
        fs::create_dir_all(&path).unwrap();
        Dir { path }
    }

    pub fn join(&self, p: &str) -> PathBuf {
        self.path.join(p)
    }

    pub fn write(&self, rel: &str, text: &str, mode: u32) -> PathBuf {
        let p = self.path.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, text).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    /// A hook in `<state>.d/<name>` that appends one record line per run
    /// to `records`.
    pub fn recorder(&self, state: &str, name: &str) {
        let rec = self.join("records");
        let script = format!(
            "#!/bin/sh\nprintf '%s|%s|%s|%s|%s|%s|%s|%s|%s|%s\\n' \"$EVENT_ID\" \"$EVENT\" \"$STATE\" \"$LINK\" \
             \"$PREVIOUS_STATE\" \"$ADDRESSES\" \"$ROUTE_ACTION\" \"$ROUTE_DST\" \"$LINKINDEX\" \"{name}\" >> {}\n",
            rec.display()
        );
        self.write(&format!("hooks/{state}.d/{name}"), &script, 0o755);
    }

    /// Recorders in every state directory and routes.d.
    pub fn record_all(&self) {
        for s in [
            "off",
            "no-carrier",
            "dormant",
            "carrier",
            "degraded",
            "routable",
            "routes",
        ] {
            self.recorder(s, "50-record");
        }
    }

    pub fn records(&self) -> Vec<Record> {
        fs::read_to_string(self.join("records"))
            .unwrap_or_default()
            .lines()
            .map(Record::parse)
            .collect()
    }

    /// Waits until `pred` holds for the records, or panics with them.
    pub fn wait_for(&self, what: &str, secs: u64, pred: impl Fn(&[Record]) -> bool) -> Vec<Record> {
        let end = Instant::now() + Duration::from_secs(secs);
        loop {
            let r = self.records();
            if pred(&r) {
                return r;
            }
            if Instant::now() > end {
                let log = fs::read_to_string(self.join("log")).unwrap_or_default();
                panic!("timed out waiting for {what}; records:\n{r:#?}\ndaemon log:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.join("log")).unwrap_or_default()
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub id: u64,
    pub event: String,
    pub state: String,
    pub link: String,
    pub previous: String,
    pub addresses: String,
    pub route_action: String,
    pub route_dst: String,
    pub index: String,
    pub hook: String,
}

impl Record {
    fn parse(l: &str) -> Record {
        let f: Vec<&str> = l.split('|').collect();
        let g = |i: usize| f.get(i).copied().unwrap_or("").to_string();
        Record {
            id: g(0).parse().unwrap_or(0),
            event: g(1),
            state: g(2),
            link: g(3),
            previous: g(4),
            addresses: g(5),
            route_action: g(6),
            route_dst: g(7),
            index: g(8),
            hook: g(9),
        }
    }
}

/// A test's configuration: its hooks under `dir`, and its own control
/// socket `<dir>/ctl.sock` unless `config` sets one.
pub fn config_text(dir: &Dir, config: &str) -> String {
    let control = if config.contains("control:") {
        String::new()
    } else {
        format!("control:\n  socket: {}\n", dir.join("ctl.sock").display())
    };
    format!(
        "system:\n  script_dir: {}\n{config}\n{control}",
        dir.join("hooks").display()
    )
}

/// The daemon running in a namespace; killed and reaped on drop.
pub struct Daemon {
    child: Child,
}

impl Daemon {
    /// Starts netevd in `ns` with `config` (YAML, script_dir is set to the
    /// test's hooks), logging at debug to `<dir>/log`.
    pub fn start(ns: &Ns, dir: &Dir, config: &str) -> Daemon {
        let cfg = config_text(dir, config);
        let cfg_path = dir.write("netevd.yaml", &cfg, 0o644);
        let log = fs::File::create(dir.join("log")).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &ns.name, env!("CARGO_BIN_EXE_netevd")])
            .args(["--foreground", "-v", "--config", cfg_path.to_str().unwrap()])
            // `system.backend: auto` (the default) must not find the
            // machine's own bus and its managers: the tests that want a
            // bus start their own (tests/common/peers.rs).
            .env(
                "DBUS_SYSTEM_BUS_ADDRESS",
                "unix:path=/nonexistent/netevd-tests-no-bus",
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let d = Daemon { child };
        // Ready once the start-up dump is done.
        let end = Instant::now() + Duration::from_secs(10);
        while !dir.log().contains("running: backend ") {
            assert!(Instant::now() < end, "daemon did not start:\n{}", dir.log());
            std::thread::sleep(Duration::from_millis(20));
        }
        d
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, sig: &str) {
        run("kill", &["-s", sig, &self.child.id().to_string()]);
    }

    /// Stops the daemon with SIGTERM and returns its exit code.
    pub fn stop(mut self) -> Option<i32> {
        self.signal("TERM");
        let end = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s.code();
            }
            assert!(Instant::now() < end, "daemon ignored SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The last record for `link`.
pub fn last_for<'a>(r: &'a [Record], link: &str) -> Option<&'a Record> {
    r.iter()
        .rev()
        .find(|x| x.link == link && x.event != "routes")
}

/// A raw client of the daemon's control socket (`<dir>/ctl.sock`).
pub struct Ctl {
    pub r: std::io::BufReader<std::os::unix::net::UnixStream>,
    pub w: std::os::unix::net::UnixStream,
}

impl Ctl {
    pub fn connect(dir: &Dir) -> Ctl {
        Ctl::connect_to(&dir.join("ctl.sock"))
    }

    pub fn connect_to(path: &Path) -> Ctl {
        let s = std::os::unix::net::UnixStream::connect(path)
            .unwrap_or_else(|e| panic!("connect {}: {e}", path.display()));
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Ctl {
            w: s.try_clone().unwrap(),
            r: std::io::BufReader::new(s),
        }
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        use std::io::Write;
        self.w.write_all(bytes).unwrap();
    }

    /// The next line from the daemon, parsed.
    pub fn line(&mut self) -> serde_json::Value {
        use std::io::BufRead;
        let mut l = String::new();
        let n = self
            .r
            .read_line(&mut l)
            .expect("reading the daemon's reply");
        assert!(n > 0, "the daemon closed the connection");
        serde_json::from_str(&l).unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}"))
    }

    /// Sends one request line and returns the reply.
    pub fn req(&mut self, line: &str) -> serde_json::Value {
        self.send_raw(format!("{line}\n").as_bytes());
        self.line()
    }

    /// The `ok` body of a request that must succeed.
    pub fn ok(&mut self, line: &str) -> serde_json::Value {
        let r = self.req(line);
        assert_eq!(r["v"], 1, "{r}");
        assert!(r.get("ok").is_some(), "{line} failed: {r}");
        r["ok"].clone()
    }

    /// The error code of a request that must fail.
    pub fn err(&mut self, line: &str) -> String {
        let r = self.req(line);
        assert!(r.get("error").is_some(), "{line} did not fail: {r}");
        r["error"]["code"].as_str().unwrap().to_string()
    }
}

/// VmRSS of `pid` in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

/// netevctl is a binary of the `ctl` workspace member, so cargo gives
/// this package no `CARGO_BIN_EXE_netevctl`: build it once into the same
/// target directory as netevd (cargo has released its lock by the time
/// tests run), so the test never runs a stale binary.
pub fn netevctl_bin() -> &'static Path {
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        let netevd = Path::new(env!("CARGO_BIN_EXE_netevd"));
        let profile = netevd.parent().unwrap();
        let mut c = Command::new(env!("CARGO"));
        c.args(["build", "--offline", "-p", "netevctl", "--bin", "netevctl"])
            .arg("--target-dir")
            .arg(profile.parent().unwrap())
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        if profile.file_name().is_some_and(|n| n == "release") {
            c.arg("--release");
        }
        let o = c.output().expect("running cargo to build netevctl");
        assert!(
            o.status.success(),
            "building netevctl failed:\n{}",
            String::from_utf8_lossy(&o.stderr)
        );
        profile.join("netevctl")
    })
}

pub struct Run {
    pub code: Option<i32>,
    pub out: String,
    pub err: String,
}

impl From<std::process::Output> for Run {
    fn from(o: std::process::Output) -> Run {
        Run {
            code: o.status.code(),
            out: String::from_utf8_lossy(&o.stdout).into_owned(),
            err: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.out, self.err
        )
    }
}

/// `ip [-6] rule` and `ip [-6] route show table all` lines in `h` with
/// netevd's protocol (148, or `netevd` with the rt_protos.d file).
pub fn owned_entries(h: &Ns) -> Vec<String> {
    let mut v = Vec::new();
    for fam in ["-4", "-6"] {
        for what in [&["rule"][..], &["route", "show", "table", "all"][..]] {
            let mut args = vec![fam];
            args.extend_from_slice(what);
            v.extend(
                h.output(&args)
                    .lines()
                    .filter(|l| l.contains("proto 148") || l.contains("proto netevd"))
                    .map(|l| l.trim().to_string()),
            );
        }
    }
    v.sort();
    v
}
