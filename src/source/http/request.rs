//! One HTTP/1.1 request head (and its small body) from the bytes a client
//! sent, with httparse. Pure: bytes in, a request or the status to refuse
//! it with out. Every bound is checked here, before anything is copied:
//! the request line and headers together (`MAX_HEAD`), the header count
//! (`MAX_HEADERS`) and the body (`MAX_BODY`).
//!
//! Only what the shim uses is kept from the headers. Anything that could
//! make two parsers disagree about where a request ends (a chunked body,
//! two different Content-Lengths) is refused, so that a proxy in front
//! cannot be made to smuggle a request past it.

/// The request line and headers, at most.
pub const MAX_HEAD: usize = 8192;

/// Headers in one request, at most.
pub const MAX_HEADERS: usize = 32;

/// A body, at most: the one POST takes none, so this only bounds what is
/// read and thrown away.
pub const MAX_BODY: usize = 16 * 1024;

/// What a client's input buffer may hold.
pub const MAX_INPUT: usize = MAX_HEAD + MAX_BODY;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    /// Any other token: answered 405.
    Other,
}

/// The parts of a request the shim acts on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    /// As sent: path and query, not yet decoded.
    pub target: String,
    /// Whether the connection stays open after the reply.
    pub keep_alive: bool,
    /// The credentials of `Authorization: Bearer ...`, if any.
    pub bearer: Option<Vec<u8>>,
    /// An Authorization header of another scheme was sent.
    pub other_auth: bool,
    /// `Accept-Encoding` allows gzip.
    pub gzip: bool,
    /// `Last-Event-ID`, for a resumed event stream.
    pub last_event_id: Option<u64>,
    /// `Sec-WebSocket-Key` of an `Upgrade: websocket` request.
    pub ws_key: Option<String>,
    /// `Sec-WebSocket-Version`.
    pub ws_version: Option<String>,
    /// `Host` and `Origin`, to refuse cross-site POSTs from a browser.
    pub host: Option<String>,
    pub origin: Option<String>,
}

/// Why a request is refused: the status and what to tell the client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub message: String,
}

fn refuse(status: u16, message: impl Into<String>) -> Refusal {
    Refusal {
        status,
        message: message.into(),
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Parse {
    /// More bytes are needed.
    Partial,
    /// A whole request, and how many bytes it took (head and body).
    Done(Request, usize),
    /// Not a request this shim serves: answer and close.
    Bad(Refusal),
}

fn token_list_has(v: &[u8], word: &str) -> bool {
    v.split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(word.as_bytes()))
}

/// Whether an Accept-Encoding value allows gzip: named without `q=0`.
fn accepts_gzip(v: &[u8]) -> bool {
    v.split(|&b| b == b',').any(|item| {
        let mut parts = item.split(|&b| b == b';');
        let name = parts.next().unwrap_or_default().trim_ascii();
        if !name.eq_ignore_ascii_case(b"gzip") && name != b"*" {
            return false;
        }
        !parts.any(|p| {
            let p = p.trim_ascii();
            p.len() >= 3
                && p[..2].eq_ignore_ascii_case(b"q=")
                && p[2..].iter().all(|&b| b == b'0' || b == b'.')
        })
    })
}

fn decimal(v: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(v.trim_ascii()).ok()?;
    if s.is_empty() || s.len() > 19 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Parses the request at the start of `buf`.
pub fn parse(buf: &[u8]) -> Parse {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            if buf.len() >= MAX_HEAD {
                return Parse::Bad(refuse(
                    431,
                    format!("the request line and headers are longer than {MAX_HEAD} bytes"),
                ));
            }
            return Parse::Partial;
        }
        Err(httparse::Error::TooManyHeaders) => {
            return Parse::Bad(refuse(
                431,
                format!("more than {MAX_HEADERS} header fields"),
            ))
        }
        Err(e) => return Parse::Bad(refuse(400, format!("malformed request: {e}"))),
    };
    if head > MAX_HEAD {
        return Parse::Bad(refuse(
            431,
            format!("the request line and headers are longer than {MAX_HEAD} bytes"),
        ));
    }
    let version = req.version.unwrap_or(1);
    let method = match req.method.unwrap_or_default() {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "POST" => Method::Post,
        _ => Method::Other,
    };
    let target = req.path.unwrap_or_default().to_string();
    if !target.starts_with('/') {
        return Parse::Bad(refuse(
            400,
            "the request target must be a path beginning with /",
        ));
    }
    let mut r = Request {
        method,
        target,
        keep_alive: version == 1,
        bearer: None,
        other_auth: false,
        gzip: false,
        last_event_id: None,
        ws_key: None,
        ws_version: None,
        host: None,
        origin: None,
    };
    let mut length: Option<u64> = None;
    let mut upgrade = false;
    for h in req.headers.iter() {
        let v = h.value;
        let name = h.name;
        if name.eq_ignore_ascii_case("content-length") {
            let Some(n) = decimal(v) else {
                return Parse::Bad(refuse(400, "Content-Length: not a decimal number"));
            };
            if length.is_some_and(|l| l != n) {
                return Parse::Bad(refuse(400, "two different Content-Length headers"));
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Parse::Bad(refuse(
                400,
                "Transfer-Encoding is not accepted; send a Content-Length",
            ));
        } else if name.eq_ignore_ascii_case("connection") {
            if token_list_has(v, "close") {
                r.keep_alive = false;
            } else if token_list_has(v, "keep-alive") {
                r.keep_alive = true;
            }
        } else if name.eq_ignore_ascii_case("authorization") {
            let v = v.trim_ascii();
            match v.get(..7) {
                Some(s) if s.eq_ignore_ascii_case(b"bearer ") => {
                    r.bearer = Some(v[7..].trim_ascii().to_vec())
                }
                _ => r.other_auth = true,
            }
        } else if name.eq_ignore_ascii_case("accept-encoding") {
            r.gzip = accepts_gzip(v);
        } else if name.eq_ignore_ascii_case("last-event-id") {
            r.last_event_id = decimal(v);
        } else if name.eq_ignore_ascii_case("upgrade") {
            upgrade = token_list_has(v, "websocket");
        } else if name.eq_ignore_ascii_case("sec-websocket-key") {
            r.ws_key = std::str::from_utf8(v).ok().map(|s| s.trim().to_string());
        } else if name.eq_ignore_ascii_case("host") {
            r.host = std::str::from_utf8(v).ok().map(|s| s.trim().to_string());
        } else if name.eq_ignore_ascii_case("origin") {
            r.origin = std::str::from_utf8(v).ok().map(|s| s.trim().to_string());
        } else if name.eq_ignore_ascii_case("sec-websocket-version") {
            r.ws_version = std::str::from_utf8(v).ok().map(|s| s.trim().to_string());
        }
    }
    if !upgrade {
        r.ws_key = None;
    }
    let body = length.unwrap_or(0);
    if body > MAX_BODY as u64 {
        return Parse::Bad(refuse(
            413,
            format!("a body of {body} bytes; at most {MAX_BODY} are read"),
        ));
    }
    let total = head + body as usize;
    if buf.len() < total {
        return Parse::Partial;
    }
    Parse::Done(r, total)
}

impl Request {
    /// Whether `Host` names this daemon by address: an IP address (with
    /// a port or not) or localhost, or no Host at all (HTTP/1.0). A DNS
    /// name is what a page uses for DNS rebinding: its own name made to
    /// resolve to this daemon, so that the browser takes the daemon's
    /// answers as the page's own origin and lets the page read them.
    pub fn host_is_address(&self) -> bool {
        let Some(h) = &self.host else {
            return true;
        };
        let port_ok = |p: &str| {
            p.is_empty()
                || p.strip_prefix(':').is_some_and(|d| {
                    !d.is_empty() && d.len() <= 5 && d.bytes().all(|b| b.is_ascii_digit())
                })
        };
        if let Some(rest) = h.strip_prefix('[') {
            return rest
                .split_once(']')
                .is_some_and(|(a, p)| a.parse::<std::net::Ipv6Addr>().is_ok() && port_ok(p));
        }
        let (name, p) = match h.find(':') {
            Some(i) => h.split_at(i),
            None => (h.as_str(), ""),
        };
        port_ok(p)
            && (name.parse::<std::net::Ipv4Addr>().is_ok()
                || name.eq_ignore_ascii_case("localhost")
                || name.eq_ignore_ascii_case("localhost."))
    }

    /// A browser's request made by a page of another site: its Origin
    /// names another host than the request's Host (a page of this
    /// daemon's own sends its own origin; curl and scripts send none).
    pub fn cross_site(&self) -> bool {
        let Some(origin) = &self.origin else {
            return false;
        };
        let authority = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"));
        match (authority, &self.host) {
            (Some(a), Some(h)) => !a.eq_ignore_ascii_case(h),
            // "null" (a sandboxed or file page) or no Host: not ours.
            _ => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done(b: &[u8]) -> (Request, usize) {
        match parse(b) {
            Parse::Done(r, n) => (r, n),
            other => panic!("{other:?}"),
        }
    }

    fn status(b: &[u8]) -> u16 {
        match parse(b) {
            Parse::Bad(r) => r.status,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn fields() {
        let b = b"GET /api/v1/status?x=1 HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer  abc \r\n\
                  Accept-Encoding: br, gzip;q=0.5\r\nLast-Event-ID: 42\r\n\r\nGET / HTTP/1.1\r\n";
        let (r, n) = done(b);
        assert_eq!(n, b.len() - 16);
        assert_eq!(r.method, Method::Get);
        assert_eq!(r.target, "/api/v1/status?x=1");
        assert!(r.keep_alive);
        assert_eq!(r.bearer.as_deref(), Some(&b"abc"[..]));
        assert!(r.gzip);
        assert_eq!(r.last_event_id, Some(42));
        assert_eq!(r.ws_key, None);
        let (r, _) = done(b"GET / HTTP/1.0\r\n\r\n");
        assert!(!r.keep_alive);
        let (r, _) = done(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n");
        assert!(r.keep_alive);
        let (r, _) =
            done(b"GET / HTTP/1.1\r\nConnection: close\r\nAccept-Encoding: gzip;q=0\r\n\r\n");
        assert!(!r.keep_alive);
        assert!(!r.gzip);
        let (r, _) = done(b"DELETE / HTTP/1.1\r\nAuthorization: Basic eA==\r\n\r\n");
        assert_eq!(r.method, Method::Other);
        assert!(r.other_auth && r.bearer.is_none());
        let (r, _) = done(
            b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        );
        assert_eq!(r.ws_key.as_deref(), Some("dGhlIHNhbXBsZSBub25jZQ=="));
        let site = |o: &str| {
            done(format!("POST / HTTP/1.1\r\nHost: 127.0.0.1:9090\r\n{o}\r\n").as_bytes())
                .0
                .cross_site()
        };
        assert!(!site(""));
        assert!(!site("Origin: http://127.0.0.1:9090\r\n"));
        assert!(site("Origin: http://evil.example\r\n"));
        assert!(site("Origin: null\r\n"));
    }

    #[test]
    fn bodies_and_bounds() {
        let (_, n) = done(b"POST /r HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcGET");
        assert_eq!(n, 42);
        assert_eq!(
            parse(b"POST /r HTTP/1.1\r\nContent-Length: 3\r\n\r\nab"),
            Parse::Partial
        );
        assert_eq!(parse(b"GET / HTTP/1.1\r\nHost:"), Parse::Partial);
        assert_eq!(
            status(b"POST / HTTP/1.1\r\nContent-Length: 99999\r\n\r\n"),
            413
        );
        assert_eq!(
            status(b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"),
            400
        );
        assert_eq!(
            status(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            400
        );
        assert_eq!(status(b"GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n"), 400);
        assert_eq!(status(b"GET http://x/ HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(status(b"\x01\x02 / HTTP/1.1\r\n\r\n"), 400);
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            many.extend_from_slice(format!("X-{i}: y\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(status(&many), 431);
        let mut long = b"GET /".to_vec();
        long.resize(MAX_HEAD + 10, b'a');
        assert_eq!(status(&long), 431);
    }

    /// Seeded mutations of valid requests: the parser never panics, never
    /// claims more bytes than it was given, a request it accepts is
    /// accepted the same when more bytes follow it (pipelining), and its
    /// target routes without panicking.
    #[test]
    fn fuzz_request_parser() {
        let seeds: [&[u8]; 5] = [
            b"GET /api/v1/status HTTP/1.1\r\nHost: x\r\n\r\n",
            b"POST /api/v1/reload HTTP/1.1\r\nContent-Length: 2\r\nAuthorization: Bearer t\r\n\r\n{}",
            b"GET /api/v1/events/stream?kind=state HTTP/1.1\r\nLast-Event-ID: 7\r\nAccept-Encoding: gzip\r\n\r\n",
            b"GET /api/v1/events/ws HTTP/1.1\r\nUpgrade: websocket\r\nSec-WebSocket-Key: a\r\n\r\n",
            b"HEAD / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        ];
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut rnd = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let interesting: [&[u8]; 8] = [
            b"\r\n",
            b":",
            b" ",
            b"\0",
            b"Content-Length: 99999999999999999999\r\n",
            b"Transfer-Encoding: chunked\r\n",
            b"\xff\xfe",
            b"%2e%2e/",
        ];
        for _ in 0..20_000 {
            let mut b = seeds[(rnd() % seeds.len() as u64) as usize].to_vec();
            for _ in 0..(rnd() % 6) {
                let at = (rnd() as usize) % (b.len() + 1);
                match rnd() % 4 {
                    0 if at < b.len() => b[at] = rnd() as u8,
                    1 if at < b.len() => {
                        b.remove(at);
                    }
                    2 => {
                        let s = interesting[(rnd() % interesting.len() as u64) as usize];
                        b.splice(at..at, s.iter().copied());
                    }
                    _ => b.truncate(at),
                }
            }
            match parse(&b) {
                Parse::Done(r, n) => {
                    assert!(n <= b.len());
                    // Whatever target got through, routing it never panics
                    // and refuses with one of its statuses.
                    if let Err(e) = super::super::route::route(r.method, &r.target, "/metrics") {
                        assert!([400, 404, 405].contains(&e.status), "{e:?}");
                    }
                    let mut more = b.clone();
                    more.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
                    assert_eq!(parse(&more), Parse::Done(r, n));
                }
                Parse::Partial => assert!(b.len() < MAX_INPUT),
                Parse::Bad(r) => assert!([400, 413, 431].contains(&r.status)),
            }
        }
    }

    #[test]
    fn host_names_versus_addresses() {
        let host = |h: &str| {
            let b = format!("GET / HTTP/1.1\r\nHost: {h}\r\n\r\n");
            done(b.as_bytes()).0.host_is_address()
        };
        for ok in [
            "127.0.0.1",
            "127.0.0.1:9090",
            "192.0.2.7:80",
            "[::1]",
            "[::1]:9090",
            "[2001:db8::1]:8080",
            "localhost",
            "LOCALHOST:9090",
            "localhost.",
        ] {
            assert!(host(ok), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:9090",
            "t",
            "127.0.0.1.evil.example",
            "localhost.evil.example",
            "[::1].evil",
            "[evil]:80",
            "127.0.0.1:",
            "127.0.0.1:port",
            "127.0.0.1:9090:1",
            "",
        ] {
            assert!(!host(bad), "{bad}");
        }
        assert!(done(b"GET / HTTP/1.0\r\n\r\n").0.host_is_address());
    }
}
