//! netevctl against a fake control socket served by the test itself: the
//! request line of every command, both output forms of every reply,
//! refused and broken replies, servers that trickle or never answer,
//! every way of not reaching a daemon, and closed or full standard
//! output. `validate` runs the real netevd. No daemon and no namespace
//! are needed; the permission test drops to uid 65534, so it needs root.

mod common;

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{netevctl_bin, Dir, Run};
use netevd_ctl::{parse_request, EventFilter, LinkRef, Request};
use serde_json::{json, Value};

fn cmd(sock: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(netevctl_bin());
    c.arg("--socket").arg(sock).args(args).stdin(Stdio::null());
    c
}

fn ctl(sock: &Path, args: &[&str]) -> Run {
    cmd(sock, args).output().unwrap().into()
}

/// A fake daemon: a listener on `<dir>/ctl.sock` whose one connection is
/// handed, with the request line already read, to `serve`.
struct Fake {
    dir: Dir,
    sock: PathBuf,
    request: mpsc::Receiver<String>,
}

impl Fake {
    fn new(serve: impl FnOnce(&mut UnixStream, &str) + Send + 'static) -> Fake {
        let dir = Dir::new();
        let sock = dir.join("ctl.sock");
        let listener = UnixListener::bind(&sock).unwrap();
        let (tx, request) = mpsc::channel();
        std::thread::spawn(move || {
            let Ok((mut s, _)) = listener.accept() else {
                return;
            };
            s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            let mut line = String::new();
            let _ = BufReader::new(s.try_clone().unwrap()).read_line(&mut line);
            let line = line.trim_end_matches('\n').to_string();
            serve(&mut s, &line);
            let _ = tx.send(line);
        });
        Fake { dir, sock, request }
    }

    /// A fake that answers with exactly these bytes and closes.
    fn replying(bytes: impl Into<Vec<u8>>) -> Fake {
        let bytes = bytes.into();
        Fake::new(move |s, _| {
            let _ = s.write_all(&bytes);
        })
    }

    /// A fake that answers `ok` with this body.
    fn ok(body: &Value) -> Fake {
        Fake::replying(format!("{{\"v\":1,\"id\":null,\"ok\":{body}}}\n"))
    }

    fn run(&self, args: &[&str]) -> Run {
        ctl(&self.sock, args)
    }

    /// The request line the client sent.
    fn request(&self) -> String {
        self.request
            .recv_timeout(Duration::from_secs(10))
            .expect("the client sent no request")
    }
}

#[test]
fn every_command_sends_the_request_lib_rs_defines() {
    let eth0 = || LinkRef::Name("eth0".into());
    let cases: Vec<(Vec<&str>, Request)> = vec![
        (vec!["status"], Request::Status),
        (vec!["interfaces"], Request::Interfaces),
        (vec!["interface", "eth0"], Request::Interface(eth0())),
        (
            vec!["interface", "7"],
            Request::Interface(LinkRef::Index(7)),
        ),
        (
            vec!["routes"],
            Request::Routes {
                table: None,
                link: None,
                family: None,
            },
        ),
        (
            vec![
                "routes", "--table", "1003", "--link", "eth0", "--family", "inet6",
            ],
            Request::Routes {
                table: Some(1003),
                link: Some(eth0()),
                family: Some("inet6".into()),
            },
        ),
        (vec!["rules"], Request::Rules { all: false }),
        (vec!["rules", "--all"], Request::Rules { all: true }),
        (
            vec!["events"],
            Request::Events {
                limit: None,
                since: None,
                filter: EventFilter::default(),
            },
        ),
        (
            vec![
                "events", "--limit", "5", "--link", "3", "--kind", "state", "--state", "routable",
            ],
            Request::Events {
                limit: Some(5),
                since: None,
                filter: EventFilter {
                    link: Some(LinkRef::Index(3)),
                    kind: Some("state".into()),
                    state: Some("routable".into()),
                    condition: None,
                },
            },
        ),
        (
            vec!["history", "--limit", "2", "--link", "eth0"],
            Request::History {
                limit: Some(2),
                link: Some(eth0()),
            },
        ),
        (
            vec!["history"],
            Request::History {
                limit: None,
                link: None,
            },
        ),
        (vec!["hooks"], Request::Hooks),
        (vec!["reload"], Request::Reload),
        (
            vec!["test", "--state", "routable", "--link", "eth0"],
            Request::Test {
                state: "routable".into(),
                link: eth0(),
                dry_run: false,
            },
        ),
        (
            vec!["test", "--state", "carrier", "--link", "eth0", "--dry-run"],
            Request::Test {
                state: "carrier".into(),
                link: eth0(),
                dry_run: true,
            },
        ),
        (
            vec!["events", "--follow", "--link", "eth0", "--kind", "routes"],
            Request::Subscribe(EventFilter {
                link: Some(eth0()),
                kind: Some("routes".into()),
                state: None,
                condition: None,
            }),
        ),
        (
            vec!["events", "--follow", "--where", "mtu > 1 && has_gateway"],
            Request::Subscribe(EventFilter {
                condition: Some("mtu > 1 && has_gateway".into()),
                ..EventFilter::default()
            }),
        ),
        (vec!["filters"], Request::Filters),
    ];
    for (args, want) in cases {
        let fake = Fake::ok(&json!({}));
        let r = fake.run(&args);
        let line = fake.request();
        assert_eq!(line, want.to_line(), "{args:?}");
        assert_eq!(parse_request(line.as_bytes()).request, Ok(want), "{args:?}");
        if args.contains(&"--follow") {
            // The fake closes after the reply: the stream ended.
            assert_eq!(r.code, Some(1), "{args:?}: {r:?}");
            assert!(r.err.contains("closed the subscription"), "{r:?}");
        } else {
            assert_eq!(r.code, Some(0), "{args:?}: {r:?}");
        }
    }
}

/// A canned `ok` body per command, and lines its table must hold.
fn canned() -> Vec<(Vec<&'static str>, Value, Vec<&'static str>)> {
    let iface = json!({"index": 3, "name": "eth0", "kind": "veth", "state": "routable",
        "operstate": "up", "mac": "02:00:00:00:00:01", "mtu": 1500, "flags": ["UP"],
        "addresses": [{"address": "192.0.2.10", "prefixlen": 24, "family": "inet",
            "scope": "global", "flags": [], "valid_lft": null, "preferred_lft": null}],
        "policy": null});
    let mut one = iface.clone();
    one["routes"] = json!([{"family": "inet", "dst": "default", "gateway": "192.0.2.1",
        "table": 254, "metric": 0, "protocol": "boot", "scope": "universe",
        "type": "unicast", "prefsrc": null, "ifindex": 3, "link": "eth0"}]);
    let event = json!({"version": 1, "id": 7, "time_ms": 1000, "event": "state",
        "link": "eth0", "ifindex": 3, "state": "routable", "operstate": "up",
        "previous_state": "carrier", "addresses": [{"address": "192.0.2.10", "prefixlen": 24}]});
    vec![
        (
            vec!["status"],
            json!({"version": "0.1.0", "pid": 42, "uptime_seconds": 61, "backend": "kernel",
                "config": "/etc/netevd/netevd.yaml", "config_hash": "0123456789abcdef",
                "synced": true, "links": 2, "routes": 5, "rules": 0, "subscribers": 0,
                "clients": 1, "counters": {"events": 3}, "last_event": null}),
            vec!["pid: 42", "uptime: 1m 1s", "synced: yes", "  events: 3"],
        ),
        (
            vec!["interfaces"],
            json!({"interfaces": [iface]}),
            vec![
                "INDEX  NAME  STATE     OPER  MTU   MAC                ADDRESSES",
                "3      eth0  routable  up    1500  02:00:00:00:00:01  192.0.2.10/24",
            ],
        ),
        (
            vec!["interface", "eth0"],
            json!({"interface": one}),
            vec![
                "name: eth0",
                "  192.0.2.10/24  inet    global  forever  forever    -",
                "  inet    default  192.0.2.1  254    0       boot      universe  unicast  -",
            ],
        ),
        (
            vec!["routes"],
            json!({"routes": one["routes"]}),
            vec!["inet    default  192.0.2.1  eth0  254    0       boot      universe  unicast  -"],
        ),
        (
            vec!["rules", "--all"],
            json!({"rules": [{"family": "inet", "priority": 0, "table": 255, "from": null,
                "to": null, "iif": null, "oif": null, "fwmark": null, "protocol": "kernel",
                "action": "lookup", "own": false}]}),
            vec!["0         inet    -     -   -    -    -       255    lookup  kernel    no"],
        ),
        (
            vec!["events"],
            json!({"events": [event]}),
            vec!["7   1970-01-01T00:00:01.000Z  state  eth0  carrier->routable  192.0.2.10/24"],
        ),
        (
            vec!["history"],
            json!({"runs": [{"hook": "/h/routable.d/50-a", "link": "eth0", "ifindex": 3,
                "event_id": 7, "state": "routable", "started_ms": 1000, "duration_ms": 4,
                "exit_code": 3, "signal": null, "timed_out": false, "output": ["oops"]}]}),
            vec![
                "1970-01-01T00:00:01.000Z  7      eth0  routable  /h/routable.d/50-a  4 ms      exit 3",
                "    | oops",
            ],
        ),
        (
            vec!["hooks"],
            json!({"script_dir": "/h", "directories": [{"state": "routable",
                "path": "/h/routable.d", "exists": true, "hooks": ["50-a"], "skipped": []}]}),
            vec!["script_dir: /h", "routable  /h/routable.d/50-a  runs"],
        ),
        (
            vec!["reload"],
            json!({"reloaded": true, "changes": ["scripts.timeout_seconds: 30 -> 5"]}),
            vec!["reloaded:", "  scripts.timeout_seconds: 30 -> 5"],
        ),
        (
            vec!["test", "--state", "routable", "--link", "eth0"],
            json!({"event_id": 9, "state": "routable", "link": "eth0",
                "hooks": ["/h/routable.d/50-a"]}),
            vec!["event 9 queued: routable on eth0", "hook /h/routable.d/50-a"],
        ),
        (
            vec!["test", "--state", "routable", "--link", "eth0", "--dry-run"],
            json!({"event_id": null, "state": "routable", "link": "eth0", "hooks": [
                {"path": "/h/routable.d/50-a", "environment": {"LINK": "eth0",
                    "ADDRESSES": "192.0.2.10"}, "json": "{}"}]}),
            vec![
                "dry run: routable on eth0",
                "hook /h/routable.d/50-a",
                "  ADDRESSES=192.0.2.10",
                "  LINK=eth0",
            ],
        ),
    ]
}

#[test]
fn every_command_prints_a_table_or_one_json_line() {
    for (args, body, lines) in canned() {
        let r = Fake::ok(&body).run(&args);
        assert_eq!(r.code, Some(0), "{args:?}: {r:?}");
        assert!(r.err.is_empty(), "{args:?}: {r:?}");
        for l in lines {
            assert!(
                r.out.lines().any(|x| x == l),
                "{args:?}: no line {l:?} in\n{}",
                r.out
            );
        }

        // --json after the command, and before it.
        let mut with_json = args.clone();
        with_json.push("--json");
        for a in [with_json, [&["--json"][..], &args].concat()] {
            let r = Fake::ok(&body).run(&a);
            assert_eq!(r.code, Some(0), "{a:?}: {r:?}");
            assert_eq!(r.out.lines().count(), 1, "{a:?}: {r:?}");
            let printed: Value = serde_json::from_str(&r.out).unwrap();
            assert_eq!(printed, body, "{a:?}");
        }
    }
}

#[test]
fn a_refused_request_exits_1_with_the_message_and_code() {
    let fake = Fake::replying(
        "{\"v\":1,\"id\":null,\"error\":{\"code\":\"invalid_config\",\
         \"message\":\"/etc/netevd/netevd.yaml:4:3: unknown key \\\"x\\\" in scripts\"}}\n",
    );
    let r = fake.run(&["reload"]);
    assert_eq!(r.code, Some(1), "{r:?}");
    assert!(r.out.is_empty(), "{r:?}");
    assert_eq!(
        r.err.trim_end(),
        "netevctl: reload: /etc/netevd/netevd.yaml:4:3: unknown key \"x\" in scripts (invalid_config)"
    );

    let fake = Fake::replying(
        "{\"v\":1,\"id\":null,\"error\":{\"code\":\"not_found\",\"message\":\"no interface \\\"nope\\\"\"}}\n",
    );
    let r = fake.run(&["test", "--state", "carrier", "--link", "nope", "--json"]);
    assert_eq!(r.code, Some(1), "{r:?}");
    assert!(r.out.is_empty(), "{r:?}");
    assert!(r.err.contains("no interface \"nope\" (not_found)"), "{r:?}");
}

#[test]
fn a_reply_that_is_not_a_reply_exits_1() {
    let cases: [(&[u8], &str); 8] = [
        (b"\n", "not JSON"),
        (b"hello\n", "not JSON"),
        (b"[1,2]\n", "not a JSON object"),
        (b"{\"v\":1}\n", "neither ok, error"),
        (b"{\"v\":1,\"error\":{\"code\":1}}\n", "no code or message"),
        (
            b"{\"v\":1,\"event\":{\"id\":1}}\n",
            "an event line where the reply",
        ),
        (b"", "the daemon closed without answering"),
        (b"{\"v\":1,\"ok\":", "in the middle of a line"),
    ];
    for (reply, needle) in cases {
        for json in [false, true] {
            let fake = Fake::replying(reply);
            let r = fake.run(if json {
                &["status", "--json"]
            } else {
                &["status"]
            });
            assert_eq!(r.code, Some(1), "{reply:?}: {r:?}");
            assert!(r.out.is_empty(), "{reply:?}: {r:?}");
            assert!(r.err.contains(needle), "{reply:?}: {r:?}");
            assert!(!r.err.contains("panicked"), "{r:?}");
        }
    }
    // A dropped line where a reply was due: the daemon gave up on us.
    let r = Fake::replying("{\"v\":1,\"dropped\":{\"reason\":\"too slow\"}}\n").run(&["status"]);
    assert_eq!(r.code, Some(1), "{r:?}");
    assert!(r.err.contains("dropped the connection: too slow"), "{r:?}");
}

#[test]
fn a_trickling_or_silent_server_hits_the_deadline() {
    // One byte every 100 ms never makes a line: a per-read timeout would
    // wait forever, the overall deadline does not.
    let trickle = Fake::new(|s, _| {
        for _ in 0..100 {
            if s.write_all(b" ").is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let silent = Fake::new(|s, _| {
        // Hold the connection until the client gives up.
        let _ = std::io::Read::read(s, &mut [0u8; 1]);
    });
    for fake in [trickle, silent] {
        let t = Instant::now();
        let r = fake.run(&["--timeout", "1", "status"]);
        let took = t.elapsed();
        assert_eq!(r.code, Some(1), "{r:?}");
        assert!(
            r.err
                .contains("no complete reply from the daemon within 1 s"),
            "{r:?}"
        );
        assert!(
            took >= Duration::from_millis(900) && took < Duration::from_secs(6),
            "took {took:?}"
        );
    }
    for t in ["0", "86401", "18446744073709551615"] {
        let r = ctl(Path::new("/nonexistent"), &["--timeout", t, "status"]);
        assert_eq!(r.code, Some(2), "{t}: {r:?}");
        assert!(r.err.contains("--timeout: 1 to 86400 seconds"), "{r:?}");
    }
}

#[test]
fn a_reply_beyond_the_cap_is_refused() {
    let fake = Fake::new(|s, _| {
        let chunk = vec![b'x'; 1 << 20];
        for _ in 0..80 {
            if s.write_all(&chunk).is_err() {
                return;
            }
        }
    });
    let r = fake.run(&["status"]);
    assert_eq!(r.code, Some(1), "{r:?}");
    assert!(r.err.contains("longer than 64 MiB"), "{r:?}");
}

#[test]
fn no_socket_and_a_stale_socket() {
    let dir = Dir::new();
    let sock = dir.join("ctl.sock");
    let r = ctl(&sock, &["status"]);
    assert_eq!(r.code, Some(1), "{r:?}");
    assert_eq!(
        r.err.trim_end(),
        format!(
            "netevctl: no socket at {} (is netevd running? is control.socket set?)",
            sock.display()
        )
    );

    // Bound, then the listener is gone: the file stays, nobody listens.
    drop(UnixListener::bind(&sock).unwrap());
    assert!(sock.exists());
    let r = ctl(&sock, &["status", "--json"]);
    assert_eq!(r.code, Some(1), "{r:?}");
    assert!(
        r.err.contains(&format!(
            "nothing listens on {}: the daemon is not running",
            sock.display()
        )),
        "{r:?}"
    );
}

/// netevctl as uid/gid 65534 with no supplementary groups.
fn as_nobody(sock: &Path, args: &[&str]) -> Run {
    let mut c = cmd(sock, args);
    // SAFETY: only async-signal-safe system calls between fork and exec.
    unsafe {
        c.pre_exec(|| {
            nix::unistd::setgroups(&[])?;
            nix::unistd::setgid(nix::unistd::Gid::from_raw(65534))?;
            nix::unistd::setuid(nix::unistd::Uid::from_raw(65534))?;
            Ok(())
        });
    }
    c.output().unwrap().into()
}

fn group_name(gid: u32) -> String {
    fs::read_to_string("/etc/group")
        .unwrap()
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.get(2)? == &gid.to_string()).then(|| f[0].to_string())
        })
        .unwrap_or_else(|| gid.to_string())
}

#[test]
fn permission_denied_names_the_group_to_join() {
    common::require_root();
    let fake = Fake::ok(&json!({}));
    let sock = &fake.sock;
    // The directory must let uid 65534 through for the socket's own mode
    // to be what refuses.
    fs::set_permissions(&fake.dir.path, fs::Permissions::from_mode(0o755)).unwrap();

    fs::set_permissions(sock, fs::Permissions::from_mode(0o600)).unwrap();
    let r = as_nobody(sock, &["status"]);
    assert_eq!(r.code, Some(1), "{r:?}");
    assert_eq!(
        r.err.trim_end(),
        format!(
            "netevctl: permission denied on {} (mode 0600, owner root: only root may connect)",
            sock.display()
        )
    );

    // The daemon's way: 0660 and a group (gid 1 is not nobody's).
    std::os::unix::fs::chown(sock, Some(0), Some(1)).unwrap();
    fs::set_permissions(sock, fs::Permissions::from_mode(0o660)).unwrap();
    let g = group_name(1);
    let r = as_nobody(sock, &["status"]);
    assert_eq!(r.code, Some(1), "{r:?}");
    assert_eq!(
        r.err.trim_end(),
        format!(
            "netevctl: permission denied on {} (mode 0660, group {g}: join group {g} or run as root)",
            sock.display()
        )
    );

    // A closed directory on the way.
    fs::set_permissions(&fake.dir.path, fs::Permissions::from_mode(0o700)).unwrap();
    let r = as_nobody(sock, &["status"]);
    assert_eq!(r.code, Some(1), "{r:?}");
    assert!(
        r.err.contains("a directory above it is closed to you"),
        "{r:?}"
    );

    // Root gets through, and the fake answers.
    let r = fake.run(&["status", "--json"]);
    assert_eq!(r.code, Some(0), "{r:?}");
}

/// A fake that answers only once told to, so the test can close the
/// client's stdout first.
fn gated(reply: String) -> (Fake, mpsc::Sender<()>) {
    let (go, wait) = mpsc::channel::<()>();
    let fake = Fake::new(move |s, _| {
        let _ = wait.recv_timeout(Duration::from_secs(10));
        let _ = s.write_all(reply.as_bytes());
    });
    (fake, go)
}

#[test]
fn a_closed_stdout_ends_quietly_with_status_0() {
    let big = json!({"interfaces": (0..2000).map(|i| json!({"index": i, "name": format!("veth{i}")}))
        .collect::<Vec<_>>()});
    let follow = format!(
        "{{\"v\":1,\"id\":null,\"ok\":{{\"subscribed\":true}}}}\n{}",
        "{\"v\":1,\"event\":{\"id\":1,\"event\":\"state\",\"link\":\"a\"}}\n".repeat(100)
    );
    let cases: Vec<(Vec<&str>, String)> = vec![
        (
            vec!["status"],
            format!("{{\"v\":1,\"ok\":{}}}\n", json!({"pid": 1})),
        ),
        (vec!["interfaces"], format!("{{\"v\":1,\"ok\":{big}}}\n")),
        (
            vec!["interfaces", "--json"],
            format!("{{\"v\":1,\"ok\":{big}}}\n"),
        ),
        (vec!["events", "--follow"], follow.clone()),
        (vec!["events", "--follow", "--json"], follow),
    ];
    for (args, reply) in cases {
        let (fake, go) = gated(reply);
        let mut child = cmd(&fake.sock, &args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        go.send(()).unwrap();
        let r: Run = child.wait_with_output().unwrap().into();
        assert_eq!(r.code, Some(0), "{args:?}: {r:?}");
        assert!(r.err.is_empty(), "{args:?}: {r:?}");
    }
    // --help and --version too.
    for a in ["--help", "--version", "-h"] {
        let mut child = Command::new(netevctl_bin())
            .arg(a)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let r: Run = child.wait_with_output().unwrap().into();
        assert_eq!(r.code, Some(0), "{a}: {r:?}");
        assert!(r.err.is_empty(), "{a}: {r:?}");
    }
}

#[test]
fn a_full_stdout_is_an_error_not_a_panic() {
    let full = || {
        fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .expect("/dev/full")
    };
    let reply = format!("{{\"v\":1,\"ok\":{}}}\n", json!({"pid": 1}));
    for args in [&["status"][..], &["status", "--json"]] {
        let fake = Fake::replying(reply.clone());
        let r: Run = cmd(&fake.sock, args)
            .stdout(full())
            .output()
            .unwrap()
            .into();
        assert_eq!(r.code, Some(1), "{r:?}");
        assert!(
            r.err
                .contains("cannot write to standard output: No space left on device"),
            "{r:?}"
        );
        assert!(!r.err.contains("panicked"), "{r:?}");
    }
    for a in ["--help", "--version"] {
        let r: Run = Command::new(netevctl_bin())
            .arg(a)
            .stdout(full())
            .output()
            .unwrap()
            .into();
        assert_eq!(r.code, Some(1), "{a}: {r:?}");
        assert!(r.err.contains("No space left on device"), "{a}: {r:?}");
        assert!(!r.err.contains("panicked"), "{a}: {r:?}");
    }
}

#[test]
fn follow_prints_each_event_until_dropped() {
    let stream = "{\"v\":1,\"id\":null,\"ok\":{\"subscribed\":true}}\n\
        {\"v\":1,\"event\":{\"id\":4,\"time_ms\":0,\"event\":\"state\",\"link\":\"eth0\",\
        \"state\":\"carrier\",\"previous_state\":\"no-carrier\",\"addresses\":[]}}\n\
        {\"v\":1,\"event\":{\"id\":5,\"time_ms\":1,\"event\":\"routes\",\"link\":\"eth0\",\
        \"state\":\"routes\",\"previous_state\":null,\"addresses\":[],\
        \"route\":{\"action\":\"add\",\"dst\":\"default\",\"gateway\":\"192.0.2.1\",\"table\":254}}}\n\
        {\"v\":1,\"dropped\":{\"reason\":\"client too slow: 262144 bytes queued\"}}\n";
    let r = Fake::replying(stream).run(&["events", "--follow"]);
    assert_eq!(r.code, Some(1), "{r:?}");
    assert_eq!(
        r.out,
        "1970-01-01T00:00:00.000Z #4 state eth0 no-carrier->carrier -\n\
         1970-01-01T00:00:00.001Z #5 routes eth0 routes add default via 192.0.2.1 table 254\n"
    );
    assert_eq!(
        r.err.trim_end(),
        "netevctl: the daemon dropped the subscription: client too slow: 262144 bytes queued"
    );

    let r = Fake::replying(stream).run(&["events", "--follow", "--json"]);
    assert_eq!(r.code, Some(1), "{r:?}");
    let lines: Vec<Value> = r
        .out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{r:?}");
    assert_eq!(lines[0]["id"], 4);
    assert_eq!(lines[1]["route"]["gateway"], "192.0.2.1");

    // A refused subscription.
    let r = Fake::replying(
        "{\"v\":1,\"error\":{\"code\":\"bad_request\",\"message\":\"subscribe: kind: x\"}}\n",
    )
    .run(&["events", "--follow", "--kind", "x"]);
    assert_eq!(r.code, Some(1), "{r:?}");
    assert!(r.err.contains("subscribe: kind: x (bad_request)"), "{r:?}");

    // --limit is for the past only.
    let r = ctl(
        Path::new("/nonexistent"),
        &["events", "--follow", "--limit", "3"],
    );
    assert_eq!(r.code, Some(2), "{r:?}");
}

#[test]
fn usage_errors_exit_2_before_connecting() {
    let dir = Dir::new();
    let sock = dir.join("never.sock");
    for args in [
        &["--no-such-flag", "status"][..],
        &[],
        &["frobnicate"],
        &["routes", "--family", "ipx"],
        &["routes", "--table", "-1"],
        &["test", "--state", "up", "--link", "eth0"],
        &["test", "--state", "carrier"],
        &["interface"],
        &["events", "--limit", "many"],
    ] {
        let r = ctl(&sock, args);
        assert_eq!(r.code, Some(2), "{args:?}: {r:?}");
        assert!(!r.err.is_empty(), "{args:?}: {r:?}");
        assert!(!r.err.contains("no socket"), "{args:?} connected: {r:?}");
    }
    let long = "x".repeat(20_000);
    let r = ctl(&sock, &["interface", &long]);
    assert_eq!(r.code, Some(2), "{r:?}");
    assert!(r.err.contains("longer than 16 KiB"), "{r:?}");
}

#[test]
fn help_and_version() {
    for h in ["-h", "--help", "help"] {
        let r: Run = Command::new(netevctl_bin()).arg(h).output().unwrap().into();
        assert_eq!(r.code, Some(0), "{h}: {r:?}");
        // Every command but `subscribe`, which is `events --follow`.
        for c in netevd_ctl::COMMANDS.iter().filter(|c| **c != "subscribe") {
            assert!(
                r.out
                    .lines()
                    .any(|l| l.trim_start().starts_with(&format!("{c} "))),
                "{h}: {c} is not listed:\n{}",
                r.out
            );
        }
    }
    let r: Run = Command::new(netevctl_bin())
        .args(["events", "-h"])
        .output()
        .unwrap()
        .into();
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(r.out.contains("--follow"), "{r:?}");
    let r: Run = Command::new(netevctl_bin())
        .arg("--version")
        .output()
        .unwrap()
        .into();
    assert_eq!(r.code, Some(0));
    assert_eq!(r.out, format!("netevctl {}\n", env!("CARGO_PKG_VERSION")));
}

#[test]
fn validate_runs_the_daemon_binary() {
    let dir = Dir::new();
    let good = dir.write(
        "good.yaml",
        "system:\n  backend: kernel\ncontrol:\n  socket: /run/x.sock\n",
        0o644,
    );
    let bad = dir.write(
        "bad.yaml",
        "system:\n  backend: kernel\nscripts:\n  timeout_secs: 3\n",
        0o644,
    );
    let validate = |file: &Path, json: bool, netevd: Option<&str>| -> Run {
        let mut c = Command::new(netevctl_bin());
        c.arg("validate").arg(file);
        if json {
            c.arg("--json");
        }
        match netevd {
            Some(p) => c.env("NETEVD", p),
            None => c.env_remove("NETEVD"),
        };
        c.output().unwrap().into()
    };
    let netevd = env!("CARGO_BIN_EXE_netevd");
    // Found through NETEVD, and next to netevctl in the target directory.
    for how in [Some(netevd), None] {
        let r = validate(&good, false, how);
        assert_eq!(r.code, Some(0), "{how:?}: {r:?}");
        assert!(r.out.contains("configuration is valid"), "{r:?}");

        let r = validate(&bad, false, how);
        assert_eq!(r.code, Some(1), "{r:?}");
        assert!(
            r.err
                .contains(":4:3: unknown key \"timeout_secs\" in scripts"),
            "{r:?}"
        );
        assert!(r.err.contains("is not valid"), "{r:?}");
    }
    let r = validate(&good, true, Some(netevd));
    assert_eq!(r.code, Some(0), "{r:?}");
    let v: Value = serde_json::from_str(&r.out).unwrap();
    assert_eq!(v["valid"], true);
    let r = validate(&bad, true, Some(netevd));
    assert_eq!(r.code, Some(1), "{r:?}");
    let v: Value = serde_json::from_str(&r.out).unwrap();
    assert_eq!(v["valid"], false);
    assert!(
        v["errors"][0].as_str().unwrap().contains("timeout_secs"),
        "{v}"
    );

    // A file that is not there is an error, though the daemon would start
    // with defaults.
    let r = validate(&dir.join("missing.yaml"), false, Some(netevd));
    assert_eq!(r.code, Some(1), "{r:?}");
    assert!(r.err.contains("missing.yaml: No such file"), "{r:?}");

    let r = validate(&good, false, Some("/nonexistent/netevd"));
    assert_eq!(r.code, Some(1), "{r:?}");
    assert!(
        r.err.contains("NETEVD=/nonexistent/netevd is not a file"),
        "{r:?}"
    );

    // netevctl alone, nothing in PATH: it says so.
    let alone = dir.join("bin/netevctl");
    fs::create_dir_all(alone.parent().unwrap()).unwrap();
    fs::copy(netevctl_bin(), &alone).unwrap();
    let installed = ["/usr/local/sbin", "/usr/sbin", "/sbin"]
        .iter()
        .any(|d| Path::new(d).join("netevd").exists());
    if !installed {
        let r: Run = Command::new(&alone)
            .arg("validate")
            .arg(&good)
            .env_remove("NETEVD")
            .env("PATH", "/nonexistent")
            .output()
            .unwrap()
            .into();
        assert_eq!(r.code, Some(1), "{r:?}");
        assert!(r.err.contains("cannot find the netevd binary"), "{r:?}");
    }
}

#[test]
fn the_man_page_documents_every_command_option_and_error_code() {
    let page = fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/man/netevctl.1")).unwrap();
    let help = |args: &[&str]| -> String {
        let o = Command::new(netevctl_bin()).args(args).output().unwrap();
        assert!(o.status.success(), "{args:?}");
        String::from_utf8(o.stdout).unwrap()
    };
    // The long options in argh's help: "  --name ..." lines.
    let options = |text: &str| -> Vec<String> {
        text.lines()
            .filter_map(|l| l.trim_start().strip_prefix("--"))
            .map(|l| l.split_whitespace().next().unwrap().to_string())
            .collect()
    };
    for o in options(&help(&["--help"])) {
        assert!(
            page.contains(&format!(".It Fl Fl {o}")),
            "--{o} is not described in netevctl(1)"
        );
    }
    let top = help(&["--help"]);
    let commands: Vec<&str> = top
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(commands.len(), 12, "{top}");
    for c in commands {
        assert!(
            page.contains(&format!(".It Ic {c}")),
            "{c} is not described in netevctl(1)"
        );
        for o in options(&help(&[c, "--help"])) {
            assert!(
                o == "json" || page.contains(&format!("Fl Fl {o}")),
                "{c} --{o} is not described in netevctl(1)"
            );
        }
    }
    for code in [
        "bad_request",
        "unknown_command",
        "too_long",
        "not_found",
        "permission_denied",
        "invalid_config",
        "unavailable",
    ] {
        assert!(
            page.contains(&format!(".It Li {code}")),
            "error code {code} is not in netevctl(1) PROTOCOL"
        );
    }
    for key in [
        "control.max_queue_bytes",
        "control.idle_timeout_seconds",
        "control.max_clients",
        "control.group",
        "control.mode",
    ] {
        assert!(page.contains(key), "{key} is not in netevctl(1)");
    }
}

#[test]
fn a_daemon_that_accepts_nothing_hits_the_deadline_too() {
    use nix::sys::socket::{
        bind, connect, listen, socket, AddressFamily, Backlog, SockFlag, SockType, UnixAddr,
    };
    let dir = Dir::new();
    let sock = dir.join("ctl.sock");
    let addr = UnixAddr::new(&sock).unwrap();
    let listener = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::empty(),
        None,
    )
    .unwrap();
    bind(std::os::fd::AsRawFd::as_raw_fd(&listener), &addr).unwrap();
    listen(&listener, Backlog::new(1).unwrap()).unwrap();
    // Fill the backlog: a blocking connect would now wait forever.
    let mut held = Vec::new();
    loop {
        let s = socket(
            AddressFamily::Unix,
            SockType::Stream,
            SockFlag::SOCK_NONBLOCK,
            None,
        )
        .unwrap();
        match connect(std::os::fd::AsRawFd::as_raw_fd(&s), &addr) {
            Ok(()) => held.push(s),
            Err(nix::errno::Errno::EAGAIN) => break,
            Err(e) => panic!("filling the backlog: {e}"),
        }
        assert!(held.len() < 100, "the backlog never filled");
    }
    let t = Instant::now();
    let r = ctl(&sock, &["--timeout", "1", "status"]);
    assert_eq!(r.code, Some(1), "{r:?}");
    assert!(r.err.contains("accepts no connection within 1 s"), "{r:?}");
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
}

/// A --socket that names a directory or a plain file is said to be the
/// wrong path, not a daemon that died.
#[test]
fn a_socket_path_that_is_no_socket_is_named_so() {
    let d = Dir::new();
    let file = d.write("plain", "x", 0o644);
    for (path, what) in [(d.path.clone(), "a directory"), (file, "a regular file")] {
        let o = cmd(&path, &["status"]).output().unwrap();
        let r = Run::from(o);
        assert_eq!(r.code, Some(1), "{r:?}");
        assert!(
            r.err.contains("is not a socket but") && r.err.contains(what),
            "{r:?}"
        );
    }
}
