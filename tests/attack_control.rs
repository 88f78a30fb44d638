//! Hostile clients of the control socket, against the real daemon in a
//! namespace: floods, pipelining without reading, slow trickles, slot
//! exhaustion, privilege changes at reload. Each test states in its
//! assertion what the daemon should do.

mod common;

use common::*;
use std::io::{BufRead, Read, Write};
use std::time::{Duration, Instant};

fn sleep_ms(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

/// `n` blackhole routes in table 100, added with one `ip -batch`.
fn many_routes(ns: &Ns, d: &Dir, n: usize) {
    let script: String = (0..n)
        .map(|i| {
            format!(
                "route add blackhole 10.{}.{}.0/24 table 100\n",
                i / 256,
                i % 256
            )
        })
        .collect();
    ns.batch(&d.write("routes.batch", &script, 0o644));
}

/// How long one `status` takes on a fresh connection.
fn status_rtt(d: &Dir) -> Duration {
    let t0 = Instant::now();
    let mut c = Ctl::connect(d);
    c.ok(r#"{"command":"status"}"#);
    t0.elapsed()
}

/// The config's control section with extra keys, on the test's socket.
fn control(d: &Dir, extra: &str) -> String {
    format!(
        "control:\n  socket: {}\n{extra}",
        d.join("ctl.sock").display()
    )
}

/// Sends `line` on a fresh connection and waits at most `limit` for the
/// reply; None when none came in time.
fn answer_within(d: &Dir, line: &str, limit: Duration) -> Option<(serde_json::Value, Duration)> {
    let t0 = Instant::now();
    let s = std::os::unix::net::UnixStream::connect(d.join("ctl.sock")).unwrap();
    s.set_read_timeout(Some(limit)).unwrap();
    (&s).write_all(format!("{line}\n").as_bytes()).unwrap();
    let mut r = std::io::BufReader::new(&s);
    let mut l = String::new();
    match r.read_line(&mut l) {
        Ok(n) if n > 0 => Some((serde_json::from_str(&l).unwrap(), t0.elapsed())),
        _ => None,
    }
}

#[test]
fn a_reply_larger_than_max_queue_does_not_drop_a_client_that_reads_it() {
    let (ns, d) = (Ns::new(), Dir::new());
    many_routes(&ns, &d, 10_000);
    let _n = Daemon::start(&ns, &d, "");
    let mut c = Ctl::connect(&d);
    // The client reads each reply at once; only the reply is big
    // (about 2 MB, more than the default max_queue_bytes of 256 KiB).
    for round in 0..2 {
        c.send_raw(b"{\"command\":\"routes\",\"table\":100,\"id\":1}\n");
        let r = c.line();
        assert_eq!(
            r["ok"]["routes"].as_array().map_or(0, Vec::len),
            10_000,
            "round {round}: {:.200}",
            r.to_string()
        );
        // The daemon may already have closed: the read below says so.
        let _ = c.w.write_all(b"{\"command\":\"status\",\"id\":2}\n");
        let mut l = String::new();
        let n = c.r.read_line(&mut l).unwrap_or(0);
        assert!(
            n > 0 && l.contains("\"ok\""),
            "round {round}: a query client that reads its replies promptly must not be \
             dropped because one reply is larger than max_queue_bytes (the bound is for \
             clients that fall behind); after the routes reply the daemon sent {l:?}"
        );
        let s: serde_json::Value = serde_json::from_str(&l).unwrap();
        assert_eq!(
            s["ok"]["counters"]["subscribers_dropped"], 0,
            "nobody fell behind, so nobody should count as dropped: {s}"
        );
    }
}

#[test]
fn a_client_pipelining_heavy_queries_without_reading_does_not_block_the_loop() {
    let (ns, d) = (Ns::new(), Dir::new());
    many_routes(&ns, &d, 2_000);
    let _n = Daemon::start(&ns, &d, "");
    assert!(status_rtt(&d) < Duration::from_secs(1));
    // One write of requests (under the daemon's per-turn read budget),
    // and never a read.
    let mut hostile = Ctl::connect(&d);
    let flood = "{\"command\":\"routes\",\"table\":100}\n".repeat(60_000 / 33);
    hostile.send_raw(flood.as_bytes());
    sleep_ms(300);
    let got = answer_within(&d, r#"{"command":"status"}"#, Duration::from_secs(5));
    assert!(
        got.as_ref()
            .is_some_and(|(_, t)| *t < Duration::from_secs(1)),
        "status took {:?} (None: no answer in 5 s) while one client had pipelined {} \
         routes queries without reading: a client whose replies are not read must not \
         be served further (stop reading it while its output is queued), so the loop's \
         work for one client per turn stays bounded",
        got.map(|(_, t)| t),
        60_000 / 33
    );
    drop(hostile);
}

#[test]
fn a_client_trickling_a_line_forever_is_closed_at_the_idle_timeout() {
    let (ns, d) = (Ns::new(), Dir::new());
    let cfg = control(&d, "  idle_timeout_seconds: 1\n  max_clients: 2\n");
    let _n = Daemon::start(&ns, &d, &cfg);
    // Two clients send one byte every 200 ms and never finish a line.
    let mut trick: Vec<Ctl> = (0..2).map(|_| Ctl::connect(&d)).collect();
    let t0 = Instant::now();
    let mut closed = [false; 2];
    while t0.elapsed() < Duration::from_millis(3500) {
        for (i, t) in trick.iter_mut().enumerate() {
            if !closed[i] && t.w.write_all(b" ").is_err() {
                closed[i] = true;
            }
        }
        sleep_ms(200);
    }
    // Did the daemon close them? (a read sees EOF)
    for (i, t) in trick.iter_mut().enumerate() {
        t.r.get_ref()
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut b = [0u8; 64];
        if matches!(t.r.read(&mut b), Ok(0)) {
            closed[i] = true;
        }
    }
    let root = answer_within(&d, r#"{"command":"status"}"#, Duration::from_secs(2));
    assert!(
        closed.iter().all(|c| *c),
        "clients that sent a byte every 200 ms for 3.5 s without ever finishing a \
         request were not closed (closed: {closed:?}) although idle_timeout_seconds is 1: \
         a trickle must not count as activity, or max_clients such clients hold every slot \
         forever; root's status meanwhile got {root:?}"
    );
}

/// A client running as uid 65534 with primary group `gid` and the
/// supplementary `groups`: python3 forwards each stdin line to the socket
/// and prints each reply line.
struct Nobody {
    child: std::process::Child,
    out: std::io::BufReader<std::process::ChildStdout>,
}

impl Nobody {
    fn connect(sock: &std::path::Path, gid: u32, groups: &[u32]) -> Nobody {
        use std::os::unix::process::CommandExt;
        use std::process::{Command, Stdio};
        let py = [
            "import socket,sys",
            "s=socket.socket(socket.AF_UNIX)",
            "s.connect(sys.argv[1])",
            "f=s.makefile('rb')",
            "for l in sys.stdin:",
            "  s.sendall(l.encode())",
            "  sys.stdout.write(f.readline().decode() or 'EOF\\n')",
            "  sys.stdout.flush()",
        ]
        .join("\n");
        let groups = groups.to_vec();
        let mut child = unsafe {
            Command::new("/usr/bin/python3")
                .args(["-c", &py, sock.to_str().unwrap()])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .pre_exec(move || {
                    extern "C" {
                        fn setgroups(n: usize, g: *const u32) -> i32;
                        fn setgid(g: u32) -> i32;
                        fn setuid(u: u32) -> i32;
                    }
                    if setgroups(groups.len(), groups.as_ptr()) == 0
                        && setgid(gid) == 0
                        && setuid(65534) == 0
                    {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                })
                .spawn()
        }
        .expect("/usr/bin/python3 is needed for this test (apt-get install python3)");
        let out = std::io::BufReader::new(child.stdout.take().unwrap());
        Nobody { child, out }
    }

    fn req(&mut self, line: &str) -> String {
        let i = self.child.stdin.as_mut().unwrap();
        writeln!(i, "{line}").unwrap();
        i.flush().unwrap();
        let mut l = String::new();
        self.out.read_line(&mut l).unwrap();
        l
    }
}

impl Drop for Nobody {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The scratch directory reachable for uid 65534, the socket 0666 and
/// owned by `group`.
fn open_to_all(d: &Dir, group: &str) -> String {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&d.path, std::fs::Permissions::from_mode(0o755)).unwrap();
    control(d, &format!("  mode: \"0666\"\n  group: {group}\n"))
}

#[test]
fn group_members_by_primary_or_supplementary_gid_may_change_others_may_not() {
    let (ns, d) = (Ns::new(), Dir::new());
    // daemon is gid 1 on Debian.
    let _n = Daemon::start(&ns, &d, &open_to_all(&d, "daemon"));
    let sock = d.join("ctl.sock");
    let mut primary = Nobody::connect(&sock, 1, &[]);
    let mut supplementary = Nobody::connect(&sock, 65534, &[1]);
    let mut outsider = Nobody::connect(&sock, 65534, &[]);
    let reload = r#"{"command":"reload"}"#;
    let r = primary.req(reload);
    assert!(
        r.contains("\"reloaded\":true"),
        "primary gid in the group: {r}"
    );
    let r = supplementary.req(reload);
    assert!(r.contains("\"reloaded\":true"), "supplementary group: {r}");
    let r = outsider.req(reload);
    assert!(r.contains("permission_denied"), "not in the group: {r}");
    // Duplicate keys: the last wins, and the privilege check sees it.
    let r = outsider.req(r#"{"command":"status","command":"reload"}"#);
    assert!(
        r.contains("permission_denied"),
        "duplicate command key: {r}"
    );
    let r = outsider.req(r#"{"command":"test","state":"off","link":"lo","dry_run":true}"#);
    assert!(r.contains("permission_denied"), "a dry-run test: {r}");
}

#[test]
fn a_reload_that_removes_control_group_takes_the_privilege_from_connected_members() {
    let (ns, d) = (Ns::new(), Dir::new());
    let _n = Daemon::start(&ns, &d, &open_to_all(&d, "daemon"));
    let sock = d.join("ctl.sock");
    let mut member = Nobody::connect(&sock, 1, &[]);
    assert!(member.req(r#"{"command":"status"}"#).contains("\"ok\""));
    // The administrator revokes the group.
    let cfg = d.join("netevd.yaml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, text.replace("  group: daemon\n", "")).unwrap();
    let mut root = Ctl::connect(&d);
    root.ok(r#"{"command":"reload"}"#);
    let fresh = Nobody::connect(&sock, 1, &[]).req(r#"{"command":"reload"}"#);
    assert!(
        fresh.contains("permission_denied"),
        "a new connection: {fresh}"
    );
    let r = member.req(r#"{"command":"reload"}"#);
    assert!(
        r.contains("permission_denied"),
        "after a reload removed control.group, a connection made while the group was \
         privileged still may reload (and run test hooks): the privilege must follow the \
         configuration in force when the request arrives, not the one at connect time; got {r}"
    );
}

#[test]
fn a_reload_naming_a_group_that_does_not_exist_is_refused_and_the_old_group_loses_nothing_silently()
{
    let (ns, d) = (Ns::new(), Dir::new());
    let _n = Daemon::start(&ns, &d, &open_to_all(&d, "daemon"));
    let sock = d.join("ctl.sock");
    let cfg = d.join("netevd.yaml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        text.replace("  group: daemon\n", "  group: netevd-no-such-group\n"),
    )
    .unwrap();
    let mut root = Ctl::connect(&d);
    let r = root.req(r#"{"command":"reload"}"#);
    let old_group_still = Nobody::connect(&sock, 1, &[]).req(r#"{"command":"reload"}"#);
    assert!(
        r["error"]["code"] == "invalid_config",
        "a reload to control.group \"netevd-no-such-group\" must be refused as the start \
         would refuse it (\"no group\"), not accepted while the daemon silently keeps \
         the old group privileged; reload said {r}; a member of the old group then got {old_group_still}"
    );
}
