//! A hostile user against the managers' side of netevd: the HTTP shim's
//! connection slots, networkd's state files, DBus peers and dhclient's
//! lease files. Each test is one attack, run on the real daemon in its own
//! network namespace (tests/common), and asserts what must hold: the
//! daemon keeps answering, memory and work stay bounded, nothing hostile
//! reaches a hook.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::time::Duration;

/// A port of its own per test; the namespace is private anyway.
#[allow(dead_code)]
fn port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    40000 + (std::process::id() % 20000) as u16 + NEXT.fetch_add(1, Ordering::SeqCst)
}

/// Runs `f` on a thread inside `ns`'s network namespace: the sockets it
/// makes live there.
#[allow(dead_code)]
fn in_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let f_ns = std::fs::File::open(&path).unwrap();
        // SAFETY: setns on this thread only, with a descriptor we own.
        let r = unsafe { nix::libc::setns(f_ns.as_raw_fd(), nix::libc::CLONE_NEWNET) };
        assert_eq!(r, 0, "setns {path}: {}", std::io::Error::last_os_error());
        f()
    })
    .join()
    .unwrap()
}

#[allow(dead_code)]
fn connect_n(ns: &Ns, port: u16, n: usize) -> Vec<TcpStream> {
    in_ns(&ns.name, move || {
        (0..n)
            .map(|_| {
                let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
                s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                s
            })
            .collect()
    })
}

/// The status code of the first response on `s`, or None when the
/// daemon closed the connection without one.
#[allow(dead_code)]
fn status_of(s: &mut TcpStream) -> Option<u16> {
    let mut buf = Vec::new();
    let mut b = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        match s.read(&mut b) {
            Ok(0) => return None,
            Ok(_) => buf.push(b[0]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return None,
            Err(e) => panic!(
                "reading a response after {:?}: {e}",
                String::from_utf8_lossy(&buf)
            ),
        }
    }
    let text = String::from_utf8_lossy(&buf);
    text.get(9..12).and_then(|c| c.parse().ok())
}

/// Slowloris: every slot held by connections that send nothing or a byte
/// now and then. Before the fix a legitimate request got 503 for the
/// whole `idle_timeout` (60 s); now it displaces the idlest of them.
#[cfg(feature = "http")]
#[test]
fn slowloris_at_max_clients_does_not_shut_out_a_real_client() {
    let (ns, d, p) = (Ns::new(), Dir::new(), port());
    let _daemon = Daemon::start(
        &ns,
        &d,
        &format!("api:\n  enabled: true\n  port: {p}\n  max_clients: 16\n"),
    );
    // Half say nothing at all, half begin a request and trickle.
    let mut slow = connect_n(&ns, p, 16);
    for s in slow.iter_mut().skip(8) {
        s.write_all(b"GET /api/v1/sta").unwrap();
    }
    std::thread::sleep(Duration::from_millis(300));
    for s in slow.iter_mut().skip(8) {
        s.write_all(b"t").unwrap();
    }
    // Legitimate clients, one after another, each on a new connection
    // kept open (keep-alive) so that every one needs a slot.
    let mut real = Vec::new();
    for _ in 0..20 {
        let mut s = connect_n(&ns, p, 1).pop().unwrap();
        s.write_all(b"GET /api/v1/status HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        assert_eq!(status_of(&mut s), Some(200), "a real client at max_clients");
        real.push(s);
    }
    // All sixteen slow ones were closed to make room, without an answer.
    for (i, s) in slow.iter_mut().enumerate() {
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        assert_eq!(status_of(s), None, "slow connection {i} still open");
    }
}

/// When every slot is an event stream, there is nobody to displace: the
/// newcomer is told 503 at once, not left hanging.
#[cfg(feature = "http")]
#[test]
fn max_clients_of_streams_still_answers_503() {
    let (ns, d, p) = (Ns::new(), Dir::new(), port());
    let _daemon = Daemon::start(
        &ns,
        &d,
        &format!("api:\n  enabled: true\n  port: {p}\n  max_clients: 4\n"),
    );
    let mut streams = connect_n(&ns, p, 4);
    for s in streams.iter_mut() {
        s.write_all(b"GET /api/v1/events/stream HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        assert_eq!(status_of(s), Some(200));
    }
    let mut s = connect_n(&ns, p, 1).pop().unwrap();
    let _ = s.write_all(b"GET /health HTTP/1.1\r\n\r\n");
    assert_eq!(status_of(&mut s), Some(503));
    drop(streams);
    std::thread::sleep(Duration::from_millis(300));
    let mut s = connect_n(&ns, p, 1).pop().unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\n\r\n").unwrap();
    assert_eq!(status_of(&mut s), Some(200));
}
