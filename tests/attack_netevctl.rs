//! netevctl against hostile servers: a fake control socket in the test
//! that sends endless or trickled lines, invalid UTF-8, the wrong kind of
//! line, floods of events, or closes at awkward moments. netevctl must
//! end with a clear message and exit status, within its deadline, and
//! with bounded memory.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{netevctl_bin, Dir};

/// A fake daemon: accepts one connection, reads the request line, then
/// runs `act` on the stream. Returns the socket path.
fn fake(d: &Dir, act: impl FnOnce(UnixStream) + Send + 'static) -> PathBuf {
    let path = d.join("fake.sock");
    let l = UnixListener::bind(&path).unwrap();
    std::thread::spawn(move || {
        let (s, _) = l.accept().unwrap();
        let mut r = BufReader::new(s.try_clone().unwrap());
        let mut line = String::new();
        let _ = r.read_line(&mut line);
        act(s);
    });
    path
}

fn netevctl(sock: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(netevctl_bin());
    c.arg("--socket").arg(sock).args(args);
    c
}

/// Runs netevctl, killing it after `limit`; returns its output and how
/// long it ran.
fn run_for(mut c: Command, limit: Duration) -> (Output, Duration) {
    let t0 = Instant::now();
    let mut child = c
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    while child.try_wait().unwrap().is_none() && t0.elapsed() < limit {
        std::thread::sleep(Duration::from_millis(10));
    }
    let took = t0.elapsed();
    let _ = child.kill();
    let mut o = child.wait_with_output().unwrap();
    o.stdout = reader.join().unwrap();
    (o, took)
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

const OK_SUB: &[u8] = b"{\"v\":1,\"id\":null,\"ok\":{\"subscribed\":true}}\n";

fn event(id: u64) -> String {
    format!(
        "{{\"v\":1,\"event\":{{\"id\":{id},\"event\":\"state\",\"link\":\"x{id}\",\"state\":\"carrier\"}}}}\n"
    )
}

#[test]
fn an_endless_line_without_newline_ends_at_the_deadline_or_the_cap() {
    let d = Dir::new();
    let sock = fake(&d, |mut s| {
        let junk = vec![b'x'; 1 << 16];
        while s.write_all(&junk).is_ok() {}
    });
    let (o, took) = run_for(
        netevctl(&sock, &["--timeout", "3", "status"]),
        Duration::from_secs(10),
    );
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    assert!(took < Duration::from_secs(5), "took {took:?}");
    let e = err(&o);
    assert!(
        e.contains("longer than") || e.contains("no complete reply"),
        "{e}"
    );
}

#[test]
fn a_server_trickling_one_byte_at_a_time_cannot_hold_netevctl_past_its_timeout() {
    let d = Dir::new();
    let sock = fake(&d, |mut s| loop {
        if s.write_all(b" ").is_err() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    });
    let (o, took) = run_for(
        netevctl(&sock, &["--timeout", "2", "status"]),
        Duration::from_secs(10),
    );
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    assert!(took < Duration::from_secs(3), "took {took:?}");
    assert!(
        err(&o).contains("no complete reply from the daemon within 2 s"),
        "{}",
        err(&o)
    );
}

#[test]
fn bad_lines_from_the_server_are_named_and_never_printed_raw() {
    for (line, want) in [
        (
            &b"{\"v\":1,\"ok\":\"\xff\xfe\x1b[2J\"}\n"[..],
            "bad reply from the daemon",
        ),
        (b"\x1b]0;owned\x07\n", "bad reply from the daemon"),
        (b"{\"v\":1,\"event\":{}}\n", "an event line where the reply"),
        (b"{\"v\":1,\"error\":{\"code\":5}}\n", "no code or message"),
        (
            b"{\"v\":1,\"dropped\":{\"reason\":\"bye\"}}\n",
            "dropped the connection: bye",
        ),
        (b"{\"v\":1,\"ok\":{}", "in the middle of a line"),
        (b"", "closed without answering"),
    ] {
        let d = Dir::new();
        let line = line.to_vec();
        let sock = fake(&d, move |mut s| {
            let _ = s.write_all(&line);
        });
        let (o, _) = run_for(netevctl(&sock, &["status"]), Duration::from_secs(10));
        let e = err(&o);
        assert_eq!(o.status.code(), Some(1), "{e}");
        assert!(e.contains(want), "wanted {want:?}: {e}");
        assert!(
            !e.contains('\u{1b}'),
            "an escape reached the terminal: {e:?}"
        );
    }
}

#[test]
fn follow_prints_events_then_says_why_the_stream_ended() {
    for (end, code, want) in [
        (
            &b"{\"v\":1,\"dropped\":{\"reason\":\"too slow\"}}\n"[..],
            1,
            "dropped the subscription: too slow",
        ),
        (b"", 1, "closed the subscription"),
        (b"{\"v\":1,\"event\":", 1, "in the middle of a line"),
        (b"{\"v\":1,\"ok\":{}}\n", 1, "a second reply"),
    ] {
        let d = Dir::new();
        let end = end.to_vec();
        let sock = fake(&d, move |mut s| {
            let _ = s.write_all(OK_SUB);
            let _ = s.write_all(event(1).as_bytes());
            let _ = s.write_all(event(2).as_bytes());
            let _ = s.write_all(&end);
        });
        let (o, _) = run_for(
            netevctl(&sock, &["events", "--follow", "--json"]),
            Duration::from_secs(10),
        );
        let out = String::from_utf8_lossy(&o.stdout);
        assert_eq!(out.lines().count(), 2, "{out}");
        assert_eq!(o.status.code(), Some(code), "{}", err(&o));
        assert!(err(&o).contains(want), "wanted {want:?}: {}", err(&o));
    }
}

#[test]
fn follow_with_its_reader_gone_exits_quietly_at_the_next_event() {
    let d = Dir::new();
    let sock = fake(&d, |mut s| {
        let _ = s.write_all(OK_SUB);
        for i in 0.. {
            if s.write_all(event(i).as_bytes()).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    let mut child = netevctl(&sock, &["events", "--follow"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut r = BufReader::new(child.stdout.take().unwrap());
    let mut l = String::new();
    r.read_line(&mut l).unwrap();
    drop(r);
    let t0 = Instant::now();
    while child.try_wait().unwrap().is_none() && t0.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0), "like `| head -1`: {}", err(&o));
    assert!(err(&o).is_empty(), "{}", err(&o));
}

#[test]
fn follow_keeps_up_with_a_flood_of_events() {
    let d = Dir::new();
    const N: u64 = 200_000;
    let sock = fake(&d, |s| {
        let mut w = std::io::BufWriter::with_capacity(1 << 16, s);
        let _ = w.write_all(OK_SUB);
        for i in 0..N {
            if w.write_all(event(i).as_bytes()).is_err() {
                return;
            }
        }
    });
    let (o, took) = run_for(
        netevctl(&sock, &["events", "--follow", "--json"]),
        Duration::from_secs(60),
    );
    let lines = o.stdout.iter().filter(|&&b| b == b'\n').count() as u64;
    assert_eq!(lines, N, "{}", err(&o));
    eprintln!("netevctl read {N} events in {took:?}");
}

#[test]
fn follow_whose_output_stalls_is_dropped_by_the_real_daemon_and_says_so() {
    use common::{Ctl, Daemon, Ns};
    let (ns, d) = (Ns::new(), Dir::new());
    let sock = d.join("ctl.sock");
    let cfg = format!(
        "control:\n  socket: {}\n  max_queue_bytes: 65536\n",
        sock.display()
    );
    let _n = Daemon::start(&ns, &d, &cfg);
    // Nobody reads netevctl's output until the burst is over: its
    // stdout pipe fills, then its socket, then the daemon's queue.
    let mut child = netevctl(&sock, &["events", "--follow", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut c = Ctl::connect(&d);
    let end = Instant::now() + Duration::from_secs(5);
    while c.ok(r#"{"command":"status"}"#)["subscribers"] != 1 {
        assert!(Instant::now() < end, "netevctl never subscribed");
        std::thread::sleep(Duration::from_millis(20));
    }
    let script: String = (0..3000)
        .map(|_| "address add 10.9.0.1/32 dev lo\naddress del 10.9.0.1/32 dev lo\n")
        .collect();
    ns.batch(&d.write("flood", &script, 0o644));
    let end = Instant::now() + Duration::from_secs(10);
    while c.ok(r#"{"command":"status"}"#)["counters"]["subscribers_dropped"] != 1 {
        assert!(
            Instant::now() < end,
            "the stalled follower was never dropped"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Now its output is read: the events it had, then the reason.
    let mut out = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let t0 = Instant::now();
    while child.try_wait().unwrap().is_none() && t0.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let mut o = child.wait_with_output().unwrap();
    o.stdout = reader.join().unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.lines().count() > 10, "{} lines", text.lines().count());
    assert!(
        text.lines()
            .all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok()),
        "every line printed is a whole event"
    );
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    assert!(
        err(&o).contains("dropped the subscription: too slow"),
        "{}",
        err(&o)
    );
}
