//! The HTTP shim of the real daemon, each test in its own network
//! namespace (so any port is free there), spoken to by raw TCP clients
//! whose sockets are made inside that namespace: every endpoint and error
//! code, malformed, oversized, slow and pipelined requests, a thousand
//! connections, the token, the rate limit, server-sent events and the
//! WebSocket, and the dashboard in headless Chromium.
#![cfg(feature = "http")]

mod common;

use common::*;
use serde_json::Value;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::time::{Duration, Instant};

fn sleep_ms(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

/// A port of its own per test; the namespace is private anyway.
fn port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    20000 + (std::process::id() % 20000) as u16 + NEXT.fetch_add(1, Ordering::SeqCst)
}

/// Runs `f` on a thread that joined `ns`'s network namespace: sockets it
/// makes live there and keep working from any thread.
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

fn connect(ns: &Ns, port: u16) -> TcpStream {
    let s = in_ns(&ns.name, move || {
        TcpStream::connect(("127.0.0.1", port)).expect("connect to the HTTP shim")
    });
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

#[derive(Debug)]
struct Resp {
    status: u16,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    fn header(&self, k: &str) -> Option<&str> {
        self.headers
            .get(&k.to_ascii_lowercase())
            .map(String::as_str)
    }

    /// The error code of the one error shape.
    fn code(&self) -> String {
        let v = self.json();
        assert!(v["error"]["message"].is_string(), "{v}");
        v["error"]["code"].as_str().unwrap().to_string()
    }
}

/// A read that is tried again when a signal interrupts it (the harness's
/// children end meanwhile), as `read_exact` does.
fn read_some(s: &mut TcpStream, b: &mut [u8]) -> std::io::Result<usize> {
    loop {
        match s.read(b) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            r => return r,
        }
    }
}

/// Reads one response; a HEAD response has no body whatever its length.
fn read_resp(s: &mut TcpStream, head: bool) -> Resp {
    let mut buf = Vec::new();
    let mut b = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        let n = read_some(s, &mut b).expect("reading a response");
        assert!(
            n > 0,
            "closed before a response; got {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.push(b[0]);
    }
    let text = String::from_utf8(buf).unwrap();
    let mut lines = text.split("\r\n");
    let status: u16 = lines.next().unwrap()[9..12].parse().unwrap();
    let headers: HashMap<String, String> = lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (k, v) = l.split_once(':').unwrap();
            (k.to_ascii_lowercase(), v.trim().to_string())
        })
        .collect();
    let len: usize = headers
        .get("content-length")
        .map(|v| v.parse().unwrap())
        .unwrap_or(0);
    let mut body = vec![0u8; if head { 0 } else { len }];
    s.read_exact(&mut body).unwrap();
    Resp {
        status,
        headers,
        body,
    }
}

fn send(s: &mut TcpStream, method: &str, path: &str, extra: &str) {
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}\r\n"
    )
    .unwrap();
}

/// One request on a fresh connection.
fn get(ns: &Ns, port: u16, path: &str) -> Resp {
    req(ns, port, "GET", path, "")
}

fn req(ns: &Ns, port: u16, method: &str, path: &str, extra: &str) -> Resp {
    let mut s = connect(ns, port);
    send(&mut s, method, path, extra);
    read_resp(&mut s, method == "HEAD")
}

/// Whether the peer closed: reads to the end within a few seconds.
fn closed(s: &mut TcpStream) -> bool {
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).is_ok()
}

fn api(port: u16, more: &str) -> String {
    format!("api:\n  enabled: true\n  port: {port}\n{more}")
}

fn veth(ns: &Ns, x: &str, y: &str) {
    ns.ip(&["link", "add", x, "type", "veth", "peer", "name", y]);
    for l in [x, y] {
        ns.ip(&["link", "set", l, "addrgenmode", "none"]);
    }
}

#[test]
fn every_endpoint_answers_as_the_control_socket_does() {
    let (ns, d, p) = (Ns::new(), Dir::new(), port());
    d.recorder("routable", "50-rec");
    veth(&ns, "ha", "hb");
    ns.ip(&["link", "set", "ha", "up"]);
    ns.ip(&["link", "set", "hb", "up"]);
    ns.ip(&["addr", "add", "192.0.2.1/24", "dev", "ha"]);
    ns.ip(&[
        "route",
        "add",
        "198.51.100.0/24",
        "via",
        "192.0.2.9",
        "table",
        "1000",
    ]);
    let _daemon = Daemon::start(&ns, &d, &api(p, ""));
    d.wait_for("ha routable", 10, |r| r.iter().any(|x| x.link == "ha"));
    let mut c = Ctl::connect(&d);

    let s = get(&ns, p, "/api/v1/status");
    assert_eq!(s.status, 200);
    assert_eq!(s.header("content-type"), Some("application/json"));
    let v = s.json();
    assert_eq!(v["synced"], true);
    assert_eq!(v["pid"], c.ok(r#"{"command":"status"}"#)["pid"]);

    for (path, line) in [
        ("/api/v1/interfaces", r#"{"command":"interfaces"}"#),
        (
            "/api/v1/interfaces/ha",
            r#"{"command":"interface","link":"ha"}"#,
        ),
        (
            "/api/v1/routes?table=1000",
            r#"{"command":"routes","table":1000}"#,
        ),
        (
            "/api/v1/routes?interface=ha&family=inet",
            r#"{"command":"routes","link":"ha","family":"inet"}"#,
        ),
        (
            "/api/v1/rules?all=true",
            r#"{"command":"rules","all":true}"#,
        ),
        (
            "/api/v1/events?limit=2",
            r#"{"command":"events","limit":2}"#,
        ),
        (
            "/api/v1/events?interface=ha&kind=state&since=0",
            r#"{"command":"events","link":"ha","kind":"state","since":0}"#,
        ),
        ("/api/v1/hooks/runs", r#"{"command":"history"}"#),
    ] {
        let r = get(&ns, p, path);
        assert_eq!(
            r.status,
            200,
            "{path}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert_eq!(r.json(), c.ok(line), "{path}");
    }
    let runs = get(&ns, p, "/api/v1/hooks/runs?limit=1&interface=ha").json();
    assert_eq!(runs["runs"][0]["hook"], "50-rec", "{runs}");
    assert_eq!(runs["runs"][0]["exit_code"], 0, "{runs}");

    // Interfaces narrowed by state and kind.
    let names = |v: Value| -> Vec<String> {
        v["interfaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["name"].as_str().unwrap().to_string())
            .collect()
    };
    let all = names(get(&ns, p, "/api/v1/interfaces").json());
    assert!(all.contains(&"lo".to_string()) && all.contains(&"ha".to_string()));
    let routable = names(get(&ns, p, "/api/v1/interfaces?state=routable").json());
    assert!(
        routable.contains(&"ha".to_string()) && !routable.contains(&"lo".to_string()),
        "{routable:?}"
    );
    let mut veths = names(get(&ns, p, "/api/v1/interfaces?kind=veth").json());
    veths.sort();
    assert_eq!(veths, ["ha", "hb"]);

    // Health: every check passes on the kernel backend.
    let h = get(&ns, p, "/health");
    assert_eq!(h.status, 200);
    let h = h.json();
    assert_eq!(h["status"], "ok");
    for k in ["netlink", "dbus", "config", "backend"] {
        assert_eq!(h["checks"][k]["ok"], true, "{h}");
    }
    // Metrics: the registry's text, as `netevctl metrics` prints it, and
    // gzipped when asked.
    let m = get(&ns, p, "/metrics");
    assert_eq!(m.status, 200);
    assert!(
        m.header("content-type").unwrap().starts_with("text/plain"),
        "{:?}",
        m.headers
    );
    let text = String::from_utf8(m.body.clone()).unwrap();
    for family in [
        "netevd_uptime_seconds",
        "netevd_events_total",
        "netevd_http_requests_total",
    ] {
        assert!(text.contains(&format!("# TYPE {family} ")), "{text}");
    }
    let z = req(&ns, p, "GET", "/metrics", "Accept-Encoding: gzip\r\n");
    assert_eq!(
        (z.status, z.header("content-encoding")),
        (200, Some("gzip"))
    );
    assert_eq!(&z.body[..2], &[0x1f, 0x8b], "a gzip member");

    // HEAD: the same headers, no body.
    let hd = req(&ns, p, "HEAD", "/api/v1/status", "");
    assert_eq!(hd.status, 200);
    assert!(
        hd.header("content-length")
            .unwrap()
            .parse::<usize>()
            .unwrap()
            > 10
    );

    // The dashboard: one page, locked down.
    let page = get(&ns, p, "/");
    assert_eq!(page.status, 200);
    assert!(page
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
    assert!(page
        .header("content-security-policy")
        .unwrap()
        .contains("default-src 'none'"));
    let html = String::from_utf8(page.body).unwrap();
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "nothing from outside"
    );

    // POST reload answers as the control socket's reload.
    let r = req(&ns, p, "POST", "/api/v1/reload", "Content-Length: 0\r\n");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["reloaded"], true);
    // From the daemon's own page it works; from another site's, not.
    let own = "Content-Length: 0\r\nOrigin: http://127.0.0.1\r\n";
    assert_eq!(req(&ns, p, "POST", "/api/v1/reload", own).status, 200);
    let evil = "Content-Length: 0\r\nOrigin: http://evil.example\r\n";
    let r = req(&ns, p, "POST", "/api/v1/reload", evil);
    assert_eq!((r.status, r.code().as_str()), (403, "permission_denied"));
}

#[test]
fn every_error_code_in_one_shape() {
    let (ns, d, p) = (Ns::new(), Dir::new(), port());
    let _daemon = Daemon::start(&ns, &d, &api(p, "  request_timeout_seconds: 2\n"));
    let cases: [(&str, &str, &str, u16, &str); 9] = [
        ("GET", "/api/v1/nothing", "", 404, "not_found"),
        ("GET", "/api/v1/interfaces/nosuch", "", 404, "not_found"),
        ("GET", "/../../etc/passwd", "", 404, "not_found"),
        (
            "POST",
            "/api/v1/status",
            "Content-Length: 0\r\n",
            405,
            "method_not_allowed",
        ),
        ("DELETE", "/api/v1/reload", "", 405, "method_not_allowed"),
        ("GET", "/api/v1/events?limit=lots", "", 400, "bad_request"),
        ("GET", "/api/v1/routes?family=ipx", "", 400, "bad_request"),
        ("GET", "/api/v1/status?x=1", "", 400, "bad_request"),
        ("GET", "/api/v1/events/ws", "", 400, "bad_request"),
    ];
    for (m, path, extra, status, code) in cases {
        let r = req(&ns, p, m, path, extra);
        assert_eq!((r.status, r.code().as_str()), (status, code), "{m} {path}");
        assert_eq!(r.header("content-type"), Some("application/json"));
    }
    let r = req(&ns, p, "POST", "/api/v1/status", "Content-Length: 0\r\n");
    assert_eq!(r.header("allow"), Some("GET, HEAD"));
    // A bad request line: 400, then the connection closes.
    let mut s = connect(&ns, p);
    s.write_all(b"GET\x01 / HTTP/1.1\r\n\r\n").unwrap();
    let r = read_resp(&mut s, false);
    assert_eq!((r.status, r.code().as_str()), (400, "bad_request"));
    assert!(closed(&mut s));
    // Headers too large: 431.
    let mut s = connect(&ns, p);
    let big = format!("GET / HTTP/1.1\r\nX-Big: {}\r\n\r\n", "a".repeat(9000));
    let _ = s.write_all(big.as_bytes());
    let r = read_resp(&mut s, false);
    assert_eq!((r.status, r.code().as_str()), (431, "headers_too_large"));
    // Too many header fields: 431 too.
    let mut many = String::from("GET / HTTP/1.1\r\n");
    for i in 0..40 {
        many.push_str(&format!("X-{i}: y\r\n"));
    }
    many.push_str("\r\n");
    let mut s = connect(&ns, p);
    s.write_all(many.as_bytes()).unwrap();
    assert_eq!(read_resp(&mut s, false).status, 431);
    // A body too large: 413, told before it is sent.
    let mut s = connect(&ns, p);
    send(
        &mut s,
        "POST",
        "/api/v1/reload",
        "Content-Length: 1000000\r\n",
    );
    let r = read_resp(&mut s, false);
    assert_eq!((r.status, r.code().as_str()), (413, "too_long"));
    // A request one byte a second: 408 at the request timeout, and the
    // daemon serves others meanwhile.
    let mut slow = connect(&ns, p);
    let t0 = Instant::now();
    let mut timed_out = None;
    for b in b"GET /api/v1/status HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" {
        if slow.write_all(&[*b]).is_err() {
            break;
        }
        assert_eq!(get(&ns, p, "/health").status, 200);
        sleep_ms(1000);
        let mut peek = [0u8; 1];
        slow.set_nonblocking(true).unwrap();
        let got = slow.peek(&mut peek);
        slow.set_nonblocking(false).unwrap();
        if matches!(got, Ok(n) if n > 0) {
            timed_out = Some(t0.elapsed());
            break;
        }
    }
    let r = read_resp(&mut slow, false);
    assert_eq!((r.status, r.code().as_str()), (408, "timeout"));
    let t = timed_out.expect("a 408 before the request was whole");
    assert!(
        t >= Duration::from_secs(2) && t < Duration::from_secs(5),
        "{t:?}"
    );
    assert!(closed(&mut slow));
    // A half request then nothing: closed at the timeout too.
    let mut idle = connect(&ns, p);
    idle.write_all(b"GET /api").unwrap();
    assert_eq!(read_resp(&mut idle, false).status, 408);
    // A reload of a broken file: 500, and the running configuration stays.
    d.write("netevd.yaml", "system:\n  nonsense: 1\n", 0o644);
    let r = req(&ns, p, "POST", "/api/v1/reload", "Content-Length: 0\r\n");
    assert_eq!((r.status, r.code().as_str()), (500, "invalid_config"));
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("nonsense"));
    assert_eq!(get(&ns, p, "/api/v1/status").status, 200);
}

#[test]
fn keep_alive_and_pipelining() {
    let (ns, d, p) = (Ns::new(), Dir::new(), port());
    let _daemon = Daemon::start(&ns, &d, &api(p, "  idle_timeout_seconds: 2\n"));
    let mut s = connect(&ns, p);
    // Three requests in one write, answered in order on one connection.
    s.write_all(
        b"GET /health HTTP/1.1\r\n\r\nGET /api/v1/nothing HTTP/1.1\r\n\r\nGET /api/v1/status HTTP/1.1\r\n\r\n",
    )
    .unwrap();
    assert_eq!(read_resp(&mut s, false).status, 200);
    assert_eq!(read_resp(&mut s, false).status, 404);
    let last = read_resp(&mut s, false);
    assert_eq!(last.status, 200);
    assert_eq!(last.json()["synced"], true);
    // Many pipelined at once: more than one turn's share, all answered.
    let mut burst = Vec::new();
    for _ in 0..200 {
        burst.extend_from_slice(b"GET /api/v1/status HTTP/1.1\r\n\r\n");
    }
    s.write_all(&burst).unwrap();
    for _ in 0..200 {
        assert_eq!(read_resp(&mut s, false).status, 200);
    }
    // Connection: close is honoured; HTTP/1.0 closes by default.
    send(&mut s, "GET", "/health", "Connection: close\r\n");
    let r = read_resp(&mut s, false);
    assert_eq!(r.header("connection"), Some("close"));
    assert!(closed(&mut s));
    let mut s = connect(&ns, p);
    s.write_all(b"GET /health HTTP/1.0\r\n\r\n").unwrap();
    assert_eq!(read_resp(&mut s, false).status, 200);
    assert!(closed(&mut s));
    // An idle keep-alive connection is closed at idle_timeout.
    let mut s = connect(&ns, p);
    send(&mut s, "GET", "/health", "");
    assert_eq!(read_resp(&mut s, false).status, 200);
    let t0 = Instant::now();
    assert!(closed(&mut s));
    let t = t0.elapsed();
    assert!(
        t >= Duration::from_millis(1500) && t < Duration::from_secs(4),
        "{t:?}"
    );
}

#[test]
fn a_thousand_connections_at_once() {
    let (ns, d, p) = (Ns::new(), Dir::new(), port());
    let daemon = Daemon::start(&ns, &d, &api(p, "  max_clients: 1100\n"));
    let idle_rss = rss_kib(daemon.pid());
    let name = ns.name.clone();
    let mut socks: Vec<TcpStream> = in_ns(&name, move || {
        (0..1000)
            .map(|_| TcpStream::connect(("127.0.0.1", p)).unwrap())
            .collect()
    });
    for s in socks.iter_mut() {
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        send(s, "GET", "/api/v1/status", "");
    }
    for s in socks.iter_mut() {
        assert_eq!(read_resp(s, false).status, 200);
    }
    // All held open and idle: the memory they cost stays small.
    sleep_ms(200);
    let held = rss_kib(daemon.pid());
    eprintln!("RSS idle {idle_rss} KiB, with 1000 keep-alive connections {held} KiB");
    assert!(held < idle_rss + 4096, "{idle_rss} -> {held} KiB");
    // Past max_clients: the idlest keep-alive connections make room (see
    // tests/attack_managers.rs for streams, which are refused with 503).
    let name = ns.name.clone();
    let mut extra: Vec<TcpStream> = in_ns(&name, move || {
        (0..150)
            .map(|_| TcpStream::connect(("127.0.0.1", p)).unwrap())
            .collect()
    });
    for s in extra.iter_mut() {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(b"GET /health HTTP/1.1\r\n\r\n").unwrap();
        assert_eq!(read_resp(s, false).status, 200);
    }
    drop(socks);
    // Slots come back once the clients leave.
    sleep_ms(300);
    assert_eq!(get(&ns, p, "/health").status, 200);
}

#[test]
fn the_token_guards_changes_and_optionally_reads() {
    let (ns, d, p) = (Ns::new(), Dir::new(), port());
    let token = "s3cret-token-0123456789";
    let tf = d.write("token", &format!("{token}\n"), 0o600);
    let cfg = api(p, &format!("  auth_token_file: {}\n", tf.display()));
    let daemon = Daemon::start(&ns, &d, &cfg);
    let post = |extra: &str| {
        req(
            &ns,
            p,
            "POST",
            "/api/v1/reload",
            &format!("Content-Length: 0\r\n{extra}"),
        )
    };
    let r = post("");
    assert_eq!((r.status, r.code().as_str()), (401, "unauthorized"));
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer realm=\"netevd\"")
    );
    assert_eq!(
        post("Authorization: Bearer wrong-token-0123456789\r\n").status,
        401
    );
    assert_eq!(post("Authorization: Basic eDp5\r\n").status, 401);
    assert_eq!(
        post(&format!("Authorization: Bearer {token}x\r\n")).status,
        401
    );
    assert_eq!(
        post(&format!("Authorization: Bearer {token}\r\n")).status,
        200
    );
    // Reads are open without auth_required_for_reads.
    assert_eq!(get(&ns, p, "/api/v1/status").status, 200);
    // A new token is read at reload; the old one stops working.
    let new = "the-next-token-9876543210";
    d.write("token", new, 0o600);
    daemon.signal("HUP");
    let end = Instant::now() + Duration::from_secs(10);
    while post(&format!("Authorization: Bearer {new}\r\n")).status != 200 {
        assert!(Instant::now() < end, "{}", d.log());
        sleep_ms(50);
    }
    assert_eq!(
        post(&format!("Authorization: Bearer {token}\r\n")).status,
        401
    );

    // With it, everything but the page itself needs the token.
    let (ns2, d2, p2) = (Ns::new(), Dir::new(), port());
    let tf = d2.write("token", token, 0o600);
    let cfg = api(
        p2,
        &format!(
            "  auth_token_file: {}\n  auth_required_for_reads: true\n",
            tf.display()
        ),
    );
    let _daemon2 = Daemon::start(&ns2, &d2, &cfg);
    for path in [
        "/api/v1/status",
        "/health",
        "/api/v1/events/stream",
        "/metrics",
    ] {
        assert_eq!(get(&ns2, p2, path).status, 401, "{path}");
    }
    assert_eq!(get(&ns2, p2, "/").status, 200);
    let ok = req(
        &ns2,
        p2,
        "GET",
        "/api/v1/status",
        &format!("Authorization: Bearer {token}\r\n"),
    );
    assert_eq!(ok.status, 200);

    // A token file that is too short is refused at load, by name.
    let (ns3, d3) = (Ns::new(), Dir::new());
    let tf = d3.write("token", "short", 0o600);
    let cfg = config_text(
        &d3,
        &api(port(), &format!("  auth_token_file: {}\n", tf.display())),
    );
    let cfg_path = d3.write("netevd.yaml", &cfg, 0o644);
    let o = Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns3.name,
            env!("CARGO_BIN_EXE_netevd"),
            "--validate",
        ])
        .arg("--config")
        .arg(&cfg_path)
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("api.auth_token_file") && err.contains("at least 16"),
        "{err}"
    );
}

#[test]
fn the_rate_limit_answers_429_with_its_headers() {
    let (ns, d, p) = (Ns::new(), Dir::new(), port());
    let cfg = api(
        p,
        "  rate_limiting:\n    requests_per_second: 1\n    burst: 5\n    exempt_loopback: false\n",
    );
    let _daemon = Daemon::start(&ns, &d, &cfg);
    let mut s = connect(&ns, p);
    let mut statuses = Vec::new();
    for _ in 0..8 {
        send(&mut s, "GET", "/health", "");
        let r = read_resp(&mut s, false);
        if r.status == 429 {
            assert_eq!(r.code(), "rate_limited");
            let after: u64 = r.header("retry-after").unwrap().parse().unwrap();
            assert!((1..=2).contains(&after), "{after}");
            assert_eq!(r.header("ratelimit-limit"), Some("5"));
            assert_eq!(r.header("ratelimit-remaining"), Some("0"));
            assert!(r.header("ratelimit-reset").is_some());
        }
        statuses.push(r.status);
    }
    assert_eq!(statuses, [200, 200, 200, 200, 200, 429, 429, 429]);
    // The bucket refills at the rate.
    sleep_ms(1100);
    send(&mut s, "GET", "/health", "");
    assert_eq!(read_resp(&mut s, false).status, 200);

    // Loopback exempt (the default): never limited.
    let (ns2, d2, p2) = (Ns::new(), Dir::new(), port());
    let cfg = api(
        p2,
        "  rate_limiting:\n    requests_per_second: 1\n    burst: 1\n",
    );
    let _daemon2 = Daemon::start(&ns2, &d2, &cfg);
    let mut s = connect(&ns2, p2);
    for _ in 0..20 {
        send(&mut s, "GET", "/health", "");
        assert_eq!(read_resp(&mut s, false).status, 200);
    }
}

/// Reads server-sent events until one satisfies `pred`.
fn wait_sse(
    s: &mut TcpStream,
    buf: &mut String,
    pred: impl Fn(u64, &Value) -> bool,
) -> (u64, Value) {
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        while let Some(at) = buf.find("\n\n") {
            let frame: String = buf.drain(..at + 2).collect();
            let mut id = None;
            let mut data = None;
            for l in frame.lines() {
                if let Some(v) = l.strip_prefix("id: ") {
                    id = v.parse().ok();
                } else if let Some(v) = l.strip_prefix("data: ") {
                    data = Some(serde_json::from_str::<Value>(v).unwrap());
                }
            }
            if let (Some(id), Some(data)) = (id, data) {
                if pred(id, &data) {
                    return (id, data);
                }
            }
        }
        assert!(Instant::now() < end, "no such event; have {buf:?}");
        let mut b = [0u8; 4096];
        let n = read_some(s, &mut b).expect("reading the stream");
        assert!(n > 0, "the stream closed");
        buf.push_str(std::str::from_utf8(&b[..n]).unwrap());
    }
}

fn sse_open(ns: &Ns, p: u16, path: &str, extra: &str) -> (TcpStream, String) {
    let mut s = connect(ns, p);
    send(&mut s, "GET", path, extra);
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(read_some(&mut s, &mut b).unwrap(), 1);
        head.push(b[0]);
    }
    let head = String::from_utf8(head).unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("Content-Type: text/event-stream"), "{head}");
    (s, String::new())
}

#[test]
fn events_stream_live_and_resume_from_last_event_id() {
    let (ns, d, p) = (Ns::new(), Dir::new(), port());
    veth(&ns, "sa", "sb");
    let _daemon = Daemon::start(&ns, &d, &api(p, ""));
    let (mut s, mut buf) = sse_open(&ns, p, "/api/v1/events/stream?interface=sa", "");
    let (mut other, mut obuf) =
        sse_open(&ns, p, "/api/v1/events/stream?interface=sb&kind=state", "");
    // `where`, in the filter language: only sb's events.
    let (mut cond, mut cbuf) = sse_open(
        &ns,
        p,
        "/api/v1/events/stream?where=interface%20~%20%22sb%22",
        "",
    );
    // One that does not parse is refused before the stream starts.
    let bad = get(&ns, p, "/api/v1/events/stream?where=mtu%20%3E");
    assert_eq!((bad.status, bad.code().as_str()), (400, "bad_request"));
    ns.ip(&["link", "set", "sa", "up"]);
    ns.ip(&["link", "set", "sb", "up"]);
    let (first, ev) = wait_sse(&mut s, &mut buf, |_, e| e["link"] == "sa");
    assert_eq!(ev["link"], "sa");
    let (_, evb) = wait_sse(&mut other, &mut obuf, |_, e| e["link"] == "sb");
    assert_eq!(evb["event"], "state");
    let (_, evc) = wait_sse(&mut cond, &mut cbuf, |_, _| true);
    assert_eq!(
        evc["link"], "sb",
        "the where stream got another link's event"
    );
    // The same event as the control socket's history holds.
    let mut c = Ctl::connect(&d);
    let hist = c.ok(&format!(r#"{{"command":"events","since":{}}}"#, first - 1));
    assert_eq!(hist["events"][0], ev);
    // Resume: everything for sa after `first - 1`, from the ring.
    let (mut r, mut rbuf) = sse_open(
        &ns,
        p,
        "/api/v1/events/stream?interface=sa",
        &format!("Last-Event-ID: {}\r\n", first - 1),
    );
    let (id, again) = wait_sse(&mut r, &mut rbuf, |_, _| true);
    assert_eq!((id, &again), (first, &ev));
    // A WebSocket sees the next one, once sa has settled.
    wait_sse(&mut s, &mut buf, |_, e| {
        e["link"] == "sa" && e["state"] == "carrier"
    });
    let mut ws = connect(&ns, p);
    send(
        &mut ws,
        "GET",
        "/api/v1/events/ws?interface=sa",
        "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n",
    );
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(read_some(&mut ws, &mut b).unwrap(), 1);
        head.push(b[0]);
    }
    let head = String::from_utf8(head).unwrap();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
        "{head}"
    );
    ns.ip(&["link", "set", "sa", "down"]);
    let (_, down) = wait_sse(&mut s, &mut buf, |_, e| {
        e["link"] == "sa" && e["state"] == "off"
    });
    let mut fh = [0u8; 2];
    ws.read_exact(&mut fh).unwrap();
    assert_eq!(fh[0], 0x81, "a final text frame");
    let len = match fh[1] {
        126 => {
            let mut l = [0u8; 2];
            ws.read_exact(&mut l).unwrap();
            u16::from_be_bytes(l) as usize
        }
        n => n as usize,
    };
    let mut payload = vec![0u8; len];
    ws.read_exact(&mut payload).unwrap();
    let wev: Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(wev, down);
    // A masked close from the client gets a close back.
    ws.write_all(&[0x88, 0x82, 0, 0, 0, 0, 0x03, 0xe8]).unwrap();
    let mut close = [0u8; 4];
    ws.read_exact(&mut close).unwrap();
    assert_eq!(close, [0x88, 2, 0x03, 0xe8]);
}

#[test]
fn a_stream_client_that_never_reads_is_dropped_and_the_loop_goes_on() {
    let (ns, d, p) = (Ns::new(), Dir::new(), port());
    veth(&ns, "wa", "wb");
    let _daemon = Daemon::start(&ns, &d, &api(p, "  max_queue_bytes: 4096\n"));
    // A tiny receive buffer, so the daemon's queue is what fills.
    let name = ns.name.clone();
    let mut lazy = in_ns(&name, move || {
        use nix::libc;
        use std::os::fd::FromRawFd;
        // SAFETY: a new socket we own, then plain setsockopt and connect
        // with a sockaddr_in on the stack.
        unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
            assert!(fd >= 0);
            let size: libc::c_int = 2048;
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                &size as *const _ as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as u32,
            );
            let mut sa: libc::sockaddr_in = std::mem::zeroed();
            sa.sin_family = libc::AF_INET as u16;
            sa.sin_port = p.to_be();
            sa.sin_addr.s_addr = u32::from_be_bytes([127, 0, 0, 1]).to_be();
            let r = libc::connect(
                fd,
                &sa as *const _ as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_in>() as u32,
            );
            assert_eq!(r, 0, "connect: {}", std::io::Error::last_os_error());
            TcpStream::from_raw_fd(fd)
        }
    });
    send(&mut lazy, "GET", "/api/v1/events/stream", "");
    sleep_ms(200);
    // Many events: addresses on a link that is up.
    ns.ip(&["link", "set", "wa", "up"]);
    ns.ip(&["link", "set", "wb", "up"]);
    let mut batch = String::new();
    for i in 0..3000 {
        batch.push_str(&format!(
            "addr add 10.{}.{}.1/32 dev wa\n",
            i / 250,
            i % 250
        ));
    }
    let f = d.write("batch", &batch, 0o644);
    ns.batch(&f);
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let h = get(&ns, p, "/health").json();
        if h["api"]["counters"]["dropped_slow"].as_u64() >= Some(1) {
            break;
        }
        assert!(Instant::now() < end, "the lazy client was not dropped: {h}");
        sleep_ms(100);
    }
    assert!(d.log().contains("dropping event stream client"));
    assert!(closed(&mut lazy));
}

/// A minimal WebSocket client for the DevTools protocol: masked text
/// frames out, text frames in (no fragmentation, which Chromium does not
/// use for these replies).
struct Cdp {
    s: TcpStream,
    id: u64,
}

impl Cdp {
    fn connect(ns: &Ns, port: u16, path: &str) -> Cdp {
        let mut s = connect(ns, port);
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        .unwrap();
        let mut head = Vec::new();
        let mut b = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            assert_eq!(read_some(&mut s, &mut b).unwrap(), 1);
            head.push(b[0]);
        }
        assert!(
            head.starts_with(b"HTTP/1.1 101"),
            "{}",
            String::from_utf8_lossy(&head)
        );
        Cdp { s, id: 0 }
    }

    fn frame(&mut self) -> Vec<u8> {
        let mut h = [0u8; 2];
        self.s.read_exact(&mut h).unwrap();
        let len = match h[1] & 0x7f {
            126 => {
                let mut l = [0u8; 2];
                self.s.read_exact(&mut l).unwrap();
                u16::from_be_bytes(l) as usize
            }
            127 => {
                let mut l = [0u8; 8];
                self.s.read_exact(&mut l).unwrap();
                u64::from_be_bytes(l) as usize
            }
            n => n as usize,
        };
        let mut p = vec![0u8; len];
        self.s.read_exact(&mut p).unwrap();
        p
    }

    /// Sends a command and returns its result, skipping events.
    fn call(&mut self, method: &str, params: Value) -> Value {
        self.id += 1;
        let msg =
            serde_json::json!({"id": self.id, "method": method, "params": params}).to_string();
        let p = msg.as_bytes();
        let mut f = vec![0x81u8];
        if p.len() < 126 {
            f.push(0x80 | p.len() as u8);
        } else {
            f.push(0x80 | 126);
            f.extend_from_slice(&(p.len() as u16).to_be_bytes());
        }
        f.extend_from_slice(&[0, 0, 0, 0]);
        f.extend_from_slice(p);
        self.s.write_all(&f).unwrap();
        loop {
            let v: Value = serde_json::from_slice(&self.frame()).unwrap();
            if v["id"] == self.id {
                assert!(v.get("error").is_none(), "{method}: {v}");
                return v["result"].clone();
            }
        }
    }

    fn eval(&mut self, js: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            serde_json::json!({"expression": js, "returnByValue": true}),
        );
        r["result"]["value"].clone()
    }

    fn screenshot(&mut self, path: &std::path::Path) {
        let r = self.call(
            "Page.captureScreenshot",
            serde_json::json!({"format": "png"}),
        );
        std::fs::write(path, base64_decode(r["data"].as_str().unwrap())).unwrap();
    }
}

fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        _ => 63,
    };
    let b: Vec<u8> = s.bytes().filter(|&c| c != b'=').collect();
    let mut out = Vec::with_capacity(b.len() * 3 / 4);
    for c in b.chunks(4) {
        let n = c
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &x)| n | (val(x) as u32) << (18 - 6 * i));
        out.push((n >> 16) as u8);
        if c.len() > 2 {
            out.push((n >> 8) as u8);
        }
        if c.len() > 3 {
            out.push(n as u8);
        }
    }
    out
}

/// Chromium in the test's namespace; stopped on drop.
struct Browser(std::process::Child);

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(self.0.id().to_string()).status();
        let end = Instant::now() + Duration::from_secs(5);
        while Instant::now() < end {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            sleep_ms(50);
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_dashboard_shows_a_live_event_in_chromium() {
    let chromium = ["chromium", "chromium-browser"].into_iter().find(|c| {
        Command::new(c)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    });
    let Some(chromium) = chromium else {
        eprintln!("skipped: needs chromium (Debian package chromium)");
        return;
    };
    let (ns, d, p) = (Ns::new(), Dir::new(), port());
    veth(&ns, "da", "db");
    let tf = d.write("token", "dashboard-token-0123456789", 0o600);
    let cfg = api(
        p,
        &format!(
            "  auth_token_file: {}\n  auth_required_for_reads: true\n",
            tf.display()
        ),
    );
    let _daemon = Daemon::start(&ns, &d, &cfg);
    let devtools = port();
    let _browser = Browser(
        Command::new("ip")
            .args(["netns", "exec", &ns.name, chromium])
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--window-size=1280,900",
                &format!("--remote-debugging-port={devtools}"),
                &format!("--user-data-dir={}", d.join("chromium").display()),
                &format!("http://127.0.0.1:{p}/"),
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(d.join("chromium.log")).unwrap())
            .spawn()
            .unwrap(),
    );
    // The page's DevTools target, once Chromium is up.
    let end = Instant::now() + Duration::from_secs(30);
    let ws_path = loop {
        let name = ns.name.clone();
        let list = in_ns(&name, move || {
            let mut s = TcpStream::connect(("127.0.0.1", devtools)).ok()?;
            s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
            write!(s, "GET /json/list HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
            serde_json::from_slice::<Value>(&read_resp(&mut s, false).body).ok()
        });
        let page = list.as_ref().and_then(|l| {
            l.as_array()?
                .iter()
                .find(|t| t["type"] == "page")
                .and_then(|t| t["webSocketDebuggerUrl"].as_str())
                .and_then(|u| u.find("/devtools/").map(|at| u[at..].to_string()))
        });
        if let Some(path) = page {
            break path;
        }
        assert!(
            Instant::now() < end,
            "chromium did not start: {}",
            std::fs::read_to_string(d.join("chromium.log")).unwrap_or_default()
        );
        sleep_ms(200);
    };
    let mut cdp = Cdp::connect(&ns, devtools, &ws_path);
    let wait_js = |cdp: &mut Cdp, js: &str, what: &str| {
        let end = Instant::now() + Duration::from_secs(15);
        while cdp.eval(js) != Value::Bool(true) {
            assert!(
                Instant::now() < end,
                "{what}: {}",
                cdp.eval("document.body.innerText")
            );
            sleep_ms(100);
        }
    };
    // Without the token the page asks for it; with it, the cards appear.
    wait_js(
        &mut cdp,
        "document.getElementById('auth').classList.contains('show')",
        "asks for the token",
    );
    cdp.eval(
        "document.getElementById('token').value = 'dashboard-token-0123456789'; \
         document.getElementById('auth').requestSubmit(); true",
    );
    wait_js(
        &mut cdp,
        "!!document.querySelector('[data-link=\"da\"]')",
        "an interface card for da",
    );
    wait_js(
        &mut cdp,
        "document.getElementById('stream-state').textContent === '(live)'",
        "the stream is live",
    );
    assert_eq!(
        cdp.eval("!!document.querySelector('[data-live-event=\"da\"]')"),
        Value::Bool(false)
    );
    // The test changes a link; the event appears without a reload.
    ns.ip(&["link", "set", "da", "up"]);
    ns.ip(&["link", "set", "db", "up"]);
    wait_js(
        &mut cdp,
        "!!document.querySelector('[data-live-event=\"da\"]')",
        "a live event for da",
    );
    wait_js(
        &mut cdp,
        "document.querySelector('[data-link=\"da\"] .badge').textContent !== 'off'",
        "the card follows the event",
    );
    let dir = std::env::temp_dir();
    let desktop = dir.join(format!("netevd-dashboard-{}-desktop.png", ns.name));
    cdp.screenshot(&desktop);
    // Phone width: nothing wider than the screen.
    cdp.call(
        "Emulation.setDeviceMetricsOverride",
        serde_json::json!({"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": true}),
    );
    sleep_ms(300);
    assert_eq!(
        cdp.eval("document.documentElement.scrollWidth <= window.innerWidth"),
        Value::Bool(true),
        "the page scrolls sideways at phone width"
    );
    let phone = dir.join(format!("netevd-dashboard-{}-phone.png", ns.name));
    cdp.screenshot(&phone);
    for f in [&desktop, &phone] {
        let b = std::fs::read(f).unwrap();
        assert!(
            b.starts_with(b"\x89PNG") && b.len() > 10_000,
            "{}",
            f.display()
        );
        eprintln!("dashboard screenshot: {}", f.display());
    }
}

/// The metric names issue 8 gives the registry; contrib/ uses no others.
const METRICS: [&str; 20] = [
    "netevd_uptime_seconds",
    "netevd_build_info",
    "netevd_events_total",
    "netevd_event_duration_seconds_bucket",
    "netevd_interfaces",
    "netevd_interface_state_changes_total",
    "netevd_routing_rules",
    "netevd_routes",
    "netevd_hook_runs_total",
    "netevd_hook_duration_seconds_bucket",
    "netevd_hook_timeouts_total",
    "netevd_netlink_messages_total",
    "netevd_netlink_overruns_total",
    "netevd_resyncs_total",
    "netevd_dbus_calls_total",
    "netevd_dbus_errors_total",
    "netevd_dbus_up",
    "netevd_control_requests_total",
    "netevd_filter_hits_total",
    "netevd_policy_requests_total",
];

fn metric_names(expr: &str) -> Vec<String> {
    let mut v = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("netevd_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        v.push(tail[..end].to_string());
        rest = &tail[end..];
    }
    v
}

#[test]
fn contrib_grafana_and_prometheus_rules() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let dash: Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("contrib/grafana-netevd.json")).unwrap(),
    )
    .unwrap();
    let mut seen = Vec::new();
    for p in dash["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().unwrap() {
            let e = t["expr"].as_str().unwrap();
            for m in metric_names(e) {
                assert!(METRICS.contains(&m.as_str()), "{m} in {e}");
                seen.push(m);
            }
        }
    }
    for m in METRICS {
        assert!(
            seen.iter().any(|s| s == m),
            "the dashboard does not show {m}"
        );
    }
    let rules = root.join("contrib/prometheus-netevd-rules.yml");
    let text = std::fs::read_to_string(&rules).unwrap();
    for m in metric_names(&text) {
        assert!(METRICS.contains(&m.as_str()), "{m} in the rules");
    }
    for alert in [
        "NetevdDown",
        "NetevdHookFailuresRising",
        "NetevdNetlinkOverruns",
        "NetevdDbusDown",
    ] {
        assert!(text.contains(&format!("alert: {alert}")), "{alert}");
    }
    match Command::new("promtool")
        .args(["check", "rules"])
        .arg(&rules)
        .output()
    {
        Ok(o) => assert!(
            o.status.success(),
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(_) => eprintln!("skipped promtool: needs promtool (Debian package prometheus)"),
    }
}

/// `openssl` with these arguments in `dir`, which must succeed.
#[cfg(feature = "tls")]
fn openssl(dir: &Dir, args: &[&str]) {
    let o = Command::new("openssl")
        .current_dir(&dir.path)
        .args(args)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// A CA `name`, and a certificate it signs for `cn` with `ext` (an
/// openssl extension line).
#[cfg(feature = "tls")]
fn ca_and_cert(dir: &Dir, ca: &str, leaf: &str, cn: &str, ext: &str) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    if !dir.join(&format!("{ca}.pem")).exists() {
        let mut a = vec!["req", "-x509", "-days", "2", "-subj"];
        let subj = format!("/CN={ca}");
        a.push(&subj);
        a.extend_from_slice(&ec);
        let (k, c) = (format!("{ca}.key"), format!("{ca}.pem"));
        a.extend_from_slice(&["-keyout", &k, "-out", &c]);
        openssl(dir, &a);
    }
    let subj = format!("/CN={cn}");
    let (k, r, c) = (
        format!("{leaf}.key"),
        format!("{leaf}.csr"),
        format!("{leaf}.pem"),
    );
    let mut a = vec!["req", "-subj", &subj, "-keyout", &k, "-out", &r];
    a.extend_from_slice(&ec);
    openssl(dir, &a);
    dir.write(&format!("{leaf}.ext"), &format!("{ext}\n"), 0o644);
    let (cap, cak, extf) = (
        format!("{ca}.pem"),
        format!("{ca}.key"),
        format!("{leaf}.ext"),
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-days",
            "2",
            "-in",
            &r,
            "-CA",
            &cap,
            "-CAkey",
            &cak,
            "-CAcreateserial",
            "-out",
            &c,
            "-extfile",
            &extf,
        ],
    );
}

#[cfg(feature = "tls")]
#[test]
fn tls_with_client_certificates_and_reload_on_sighup() {
    if Command::new("openssl").arg("version").output().is_err()
        || Command::new("curl").arg("--version").output().is_err()
    {
        eprintln!("skipped: needs openssl and curl (Debian packages openssl, curl)");
        return;
    }
    let (ns, d, p) = (Ns::new(), Dir::new(), port());
    let server = "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth";
    let client = "extendedKeyUsage=clientAuth";
    ca_and_cert(&d, "ca1", "srv", "127.0.0.1", server);
    ca_and_cert(&d, "clients", "alice", "alice", client);
    ca_and_cert(&d, "stranger-ca", "mallory", "mallory", client);
    let cfg = api(
        p,
        &format!(
            "  tls:\n    cert_file: {}\n    key_file: {}\n    client_ca_file: {}\n",
            d.join("srv.pem").display(),
            d.join("srv.key").display(),
            d.join("clients.pem").display()
        ),
    );
    let daemon = Daemon::start(&ns, &d, &cfg);
    assert!(
        d.log()
            .contains(&format!("listening on https://127.0.0.1:{p}")),
        "{}",
        d.log()
    );
    let curl = |ca: &str, cert: Option<&str>, url: &str| -> (bool, String) {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &ns.name, "curl", "-sS", "--max-time", "10"]);
        c.arg("--cacert").arg(d.join(&format!("{ca}.pem")));
        if let Some(n) = cert {
            c.arg("--cert").arg(d.join(&format!("{n}.pem")));
            c.arg("--key").arg(d.join(&format!("{n}.key")));
        }
        let o = c.args(url.split(' ')).output().unwrap();
        (
            o.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
        )
    };
    let url = format!("https://127.0.0.1:{p}/api/v1/status");
    let (ok, out) = curl("ca1", Some("alice"), &url);
    assert!(ok, "{out}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["synced"], true);
    // Two requests on one kept connection.
    let (ok, out) = curl(
        "ca1",
        Some("alice"),
        &format!("{url} https://127.0.0.1:{p}/health"),
    );
    assert!(ok && out.contains("\"checks\""), "{out}");
    // No client certificate, or one from another CA: refused.
    assert!(!curl("ca1", None, &url).0);
    assert!(!curl("ca1", Some("mallory"), &url).0);
    // Plain HTTP to the TLS port gets no answer it could take for one.
    let mut s = connect(&ns, p);
    s.write_all(b"GET /api/v1/status HTTP/1.1\r\n\r\n").unwrap();
    let mut back = Vec::new();
    let _ = s.read_to_end(&mut back);
    assert!(!back.starts_with(b"HTTP/1.1 200"));
    // A new certificate from another CA, read at SIGHUP.
    ca_and_cert(&d, "ca2", "srv2", "127.0.0.1", server);
    std::fs::copy(d.join("srv2.pem"), d.join("srv.pem")).unwrap();
    std::fs::copy(d.join("srv2.key"), d.join("srv.key")).unwrap();
    daemon.signal("HUP");
    let end = Instant::now() + Duration::from_secs(10);
    while !d.log().contains("TLS certificates reloaded") {
        assert!(Instant::now() < end, "{}", d.log());
        sleep_ms(50);
    }
    let (ok, out) = curl("ca2", Some("alice"), &url);
    assert!(ok, "{out}");
    assert!(
        !curl("ca1", Some("alice"), &url).0,
        "the old certificate is gone"
    );
}

#[test]
fn a_port_in_use_stops_the_start_with_exit_status_3() {
    let (ns, d, p) = (Ns::new(), Dir::new(), port());
    let _first = Daemon::start(&ns, &d, &api(p, ""));
    let d2 = Dir::new();
    let cfg = config_text(&d2, &api(p, ""));
    let cfg_path = d2.write("netevd.yaml", &cfg, 0o644);
    let o = Command::new("ip")
        .args(["netns", "exec", &ns.name, env!("CARGO_BIN_EXE_netevd")])
        .args(["--foreground", "--config", cfg_path.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!("api: cannot listen on 127.0.0.1:{p}")),
        "{err}"
    );
    assert!(
        !d2.join("ctl.sock").exists(),
        "no control socket left behind"
    );
}

#[test]
fn a_client_that_pipelines_and_never_reads_costs_little_and_is_dropped() {
    let (ns, d, p) = (Ns::new(), Dir::new(), port());
    let daemon = Daemon::start(&ns, &d, &api(p, "  request_timeout_seconds: 2\n"));
    let before = rss_kib(daemon.pid());
    let mut greedy = connect(&ns, p);
    greedy.set_nonblocking(true).unwrap();
    // As many requests as the socket takes, none of the replies read.
    let one = b"GET /api/v1/interfaces HTTP/1.1\r\n\r\n";
    let mut sent = 0usize;
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(1) {
        match greedy.write(one) {
            Ok(n) => sent += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => sleep_ms(10),
            Err(_) => break,
        }
    }
    assert!(sent > 100 * one.len(), "only {sent} bytes sent");
    // Others are served meanwhile, and the daemon holds little for it.
    for _ in 0..20 {
        assert_eq!(get(&ns, p, "/api/v1/status").status, 200);
    }
    let during = rss_kib(daemon.pid());
    assert!(during < before + 2048, "{before} -> {during} KiB");
    // Dropped once its replies made no progress for the request timeout.
    greedy.set_nonblocking(false).unwrap();
    let end = Instant::now() + Duration::from_secs(10);
    let mut got = 0usize;
    let mut b = vec![0u8; 1 << 16];
    sleep_ms(3000);
    loop {
        match read_some(&mut greedy, &mut b) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
        assert!(Instant::now() < end, "not dropped");
    }
    assert!(got < sent * 50, "the daemon queued {got} bytes of replies");
    assert_eq!(get(&ns, p, "/health").status, 200);
}
