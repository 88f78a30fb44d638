//! The HTTP shim (feature `http`): a TCP listener and its clients on the
//! reactor's one `Poll`, I/O and HTTP framing only. What a request means
//! is the reactor's business (src/reactor/http.rs answers from the same
//! code as the control socket); this module refuses everything that never
//! reaches it: malformed, oversized or slow requests, wrong methods,
//! unknown paths, a missing or wrong token, and clients over their rate.
//!
//! - HTTP/1.1 with keep-alive and pipelining: requests are taken one at a
//!   time from a bounded input buffer (`request::MAX_INPUT`), at most
//!   `REQUESTS_PER_TURN` per client per turn; a client whose replies are
//!   not read (more than `LOW_WATER` queued) is not read either.
//! - Output is queued per client and written as the socket takes it,
//!   WRITABLE interest only while something is queued.
//! - Deadlines (one timer in the reactor's heap, the earliest of these):
//!   a request must arrive whole within `request_timeout` of its first
//!   byte (else 408 and close); output that makes no progress for
//!   `request_timeout` drops the client; a connection with nothing going
//!   on for `idle_timeout` is closed; an event stream gets a comment line
//!   every `KEEPALIVE` so that dead peers are found.
//! - At `max_clients`, a newcomer displaces the plain HTTP client idle or
//!   trickling the longest (`evict_idlest`); only when every client is a
//!   stream or owed output is it refused with 503.
//! - An event-stream client more than `max_queue` bytes behind is dropped:
//!   a slow reader never holds memory without bound or stalls the loop.
//!
//! Counters for the metrics registry are in `Stats`.

pub mod gzip;
pub mod limit;
pub mod request;
pub mod route;
#[cfg(feature = "tls")]
pub mod tls;
#[cfg(feature = "ws")]
pub mod ws;

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use crate::core::filter::Subscription;
use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry, Token};

use crate::config::{ApiSettings, Secret};
use limit::{Limiter, Verdict};
use request::{Method, Parse, Refusal};
use route::Endpoint;

/// Bytes read from a socket at once.
const READ_CHUNK: usize = 8192;

/// Requests taken from one client per turn of the loop.
pub const REQUESTS_PER_TURN: usize = 16;

/// Queued output above which a client's next request waits.
const LOW_WATER: usize = 64 * 1024;

/// A queue drained empty keeps at most this much memory.
const KEEP_CAPACITY: usize = 8 * 1024;

/// How long a closing client's last reply may take to leave.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// An event stream with nothing to say gets a comment this often.
const KEEPALIVE: Duration = Duration::from_secs(15);

/// How soon accepting is tried again after running out of descriptors.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// The listener's and the clients' settings, from `api.*`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    pub addr: SocketAddr,
    pub request_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_clients: usize,
    pub max_queue: usize,
    pub token: Option<Secret>,
    pub auth_reads: bool,
    /// `metrics.endpoint`: where /metrics is served.
    pub metrics_path: String,
}

impl Settings {
    pub fn of(a: &ApiSettings, metrics_path: &str) -> Settings {
        Settings {
            addr: SocketAddr::new(a.bind_address, a.port),
            request_timeout: a.request_timeout,
            idle_timeout: a.idle_timeout,
            max_clients: a.max_clients,
            max_queue: a.max_queue,
            token: a.auth_token.clone(),
            auth_reads: a.auth_required_for_reads,
            metrics_path: metrics_path.to_string(),
        }
    }
}

/// Plain counters, for the metrics registry to read.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct Stats {
    pub accepted: u64,
    /// Refused at `max_clients`: every client was an event stream or
    /// owed output.
    pub refused: u64,
    /// Idle or trickling clients closed at `max_clients` to make room.
    pub evicted: u64,
    pub requests: u64,
    /// Answers with a 4xx or 5xx status.
    pub errors: u64,
    pub unauthorized: u64,
    pub rate_limited: u64,
    /// Closed for a request that did not arrive in time.
    pub timed_out: u64,
    /// Stream clients dropped for not reading.
    pub dropped_slow: u64,
}

/// A reply: status, type, body and any further headers.
#[derive(Clone, Debug)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    pub headers: Vec<(&'static str, String)>,
}

impl Response {
    pub fn json(status: u16, v: &serde_json::Value) -> Response {
        let mut body = v.to_string().into_bytes();
        body.push(b'\n');
        Response {
            status,
            content_type: "application/json",
            body,
            headers: Vec::new(),
        }
    }

    /// The one error shape, the control socket's:
    /// `{"error": {"code": ..., "message": ...}}`.
    pub fn error(status: u16, code: &str, message: &str) -> Response {
        Response::json(
            status,
            &serde_json::json!({"error": {"code": code, "message": message}}),
        )
    }

    fn refusal(r: &Refusal) -> Response {
        Response::error(r.status, code_of(r.status), &r.message)
    }
}

/// The error code a status carries when no more exact one applies.
pub fn code_of(status: u16) -> &'static str {
    match status {
        400 => "bad_request",
        401 => "unauthorized",
        403 => "permission_denied",
        404 => "not_found",
        405 => "method_not_allowed",
        408 => "timeout",
        413 => "too_long",
        429 => "rate_limited",
        431 => "headers_too_large",
        503 => "unavailable",
        _ => "internal",
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// The bytes of `r` on the wire; `head` leaves the body out (HEAD).
pub fn encode(r: &Response, keep_alive: bool, head: bool, out: &mut Vec<u8>) {
    use std::fmt::Write as _;
    let mut h = String::with_capacity(256);
    let _ = write!(
        h,
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n",
        r.status,
        reason(r.status),
        r.content_type,
        r.body.len()
    );
    if !keep_alive {
        h.push_str("Connection: close\r\n");
    }
    for (k, v) in &r.headers {
        let _ = write!(h, "{k}: {v}\r\n");
    }
    h.push_str("\r\n");
    out.extend_from_slice(h.as_bytes());
    if !head {
        out.extend_from_slice(&r.body);
    }
}

/// What a connection has become.
#[derive(Debug)]
enum Mode {
    Http,
    /// Server-sent events, with its filter and `where` condition.
    Stream(Subscription),
    /// A WebSocket of events.
    #[cfg(feature = "ws")]
    WebSocket(Subscription),
}

struct Client {
    sock: TcpStream,
    peer: IpAddr,
    input: Vec<u8>,
    out: Vec<u8>,
    /// Bytes of `out` already written.
    sent: usize,
    mode: Mode,
    /// When the request in progress began arriving.
    started: Option<Instant>,
    /// The last request completed or output taken.
    active: Instant,
    /// The last time output made progress or the queue became non-empty.
    progress: Instant,
    /// WRITABLE interest is registered.
    writing: bool,
    /// The socket may hold more to read (edge-triggered readiness).
    unread: bool,
    /// The peer closed its side.
    eof: bool,
    /// Closes once `out` is written.
    closing: bool,
    /// The TLS session, with HTTPS.
    #[cfg(feature = "tls")]
    tls: Option<Box<rustls::ServerConnection>>,
}

impl Client {
    fn pending(&self) -> usize {
        self.out.len() - self.sent
    }

    /// Output queued here or, with TLS, still held by rustls.
    fn has_output(&self) -> bool {
        #[cfg(feature = "tls")]
        if self.tls.as_ref().is_some_and(|t| t.wants_write()) {
            return true;
        }
        self.pending() > 0
    }

    /// Plaintext from the peer.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        #[cfg(feature = "tls")]
        if let Some(t) = self.tls.as_mut() {
            return tls::read(t, &mut self.sock, buf);
        }
        self.sock.read(buf)
    }

    /// Writes from `out`; returns how much was taken.
    fn write_out(&mut self) -> io::Result<usize> {
        #[cfg(feature = "tls")]
        if let Some(t) = self.tls.as_mut() {
            return tls::write(t, &mut self.sock, &self.out[self.sent..]);
        }
        self.sock.write(&self.out[self.sent..])
    }

    /// With TLS: sends what rustls holds.
    fn flush_tls(&mut self) -> io::Result<()> {
        #[cfg(feature = "tls")]
        if let Some(t) = self.tls.as_mut() {
            return tls::flush(t, &mut self.sock);
        }
        Ok(())
    }

    fn deadline(&self, s: &Settings) -> Instant {
        if self.closing {
            return self.active.max(self.progress) + CLOSE_GRACE;
        }
        if self.has_output() {
            return self.progress + s.request_timeout;
        }
        if let Some(t) = self.started {
            return t + s.request_timeout;
        }
        match self.mode {
            Mode::Http => self.active + s.idle_timeout,
            _ => self.progress + KEEPALIVE,
        }
    }
}

/// A request the reactor answers.
#[derive(Debug)]
pub struct Incoming {
    pub client: usize,
    pub endpoint: Endpoint,
    pub head: bool,
    pub keep_alive: bool,
    pub gzip: bool,
    pub last_event_id: Option<u64>,
    pub ws_key: Option<String>,
    pub ws_version: Option<String>,
}

pub struct Http {
    listener: TcpListener,
    base: usize,
    settings: Settings,
    limiter: Option<Limiter>,
    clients: Vec<Option<Client>>,
    free: Vec<usize>,
    count: usize,
    /// Clients whose turn ran out with requests left.
    more: Vec<usize>,
    /// Accepting is paused (out of descriptors) until then.
    accept_at: Option<Instant>,
    /// With HTTPS: the configuration new connections get.
    #[cfg(feature = "tls")]
    tls: Option<std::sync::Arc<rustls::ServerConfig>>,
    pub stats: Stats,
}

impl Http {
    pub fn open(
        settings: Settings,
        rate: Option<crate::config::RateSettings>,
        reg: &Registry,
        listener_token: Token,
        base: usize,
    ) -> io::Result<Http> {
        let mut listener = TcpListener::bind(settings.addr).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("api: cannot listen on {}: {e}", settings.addr),
            )
        })?;
        reg.register(&mut listener, listener_token, Interest::READABLE)?;
        Ok(Http {
            listener,
            base,
            settings,
            limiter: rate.map(Limiter::new),
            clients: Vec::new(),
            free: Vec::new(),
            count: 0,
            more: Vec::new(),
            accept_at: None,
            #[cfg(feature = "tls")]
            tls: None,
            stats: Stats::default(),
        })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// New limits, token and rate; the address needs a restart.
    pub fn set_settings(&mut self, s: Settings, rate: Option<crate::config::RateSettings>) {
        self.settings = Settings {
            addr: self.settings.addr,
            ..s
        };
        match (&mut self.limiter, rate) {
            (Some(l), Some(r)) => l.set_settings(r),
            (l, r) => *l = r.map(Limiter::new),
        }
    }

    /// Serves HTTPS with `cfg` from the next connection on (None: plain
    /// HTTP).
    #[cfg(feature = "tls")]
    pub fn set_tls(&mut self, cfg: Option<std::sync::Arc<rustls::ServerConfig>>) {
        self.tls = cfg;
    }

    pub fn clients(&self) -> usize {
        self.count
    }

    pub fn owns(&self, i: usize) -> bool {
        self.clients.get(i).is_some_and(Option::is_some)
    }

    /// Event-stream clients (server-sent events and WebSockets).
    pub fn streams(&self) -> usize {
        self.clients
            .iter()
            .flatten()
            .filter(|c| !matches!(c.mode, Mode::Http))
            .count()
    }

    pub fn accept(&mut self, reg: &Registry, now: Instant) {
        if self.accept_at.is_some_and(|t| now < t) {
            return;
        }
        self.accept_at = None;
        loop {
            match self.listener.accept() {
                Ok((mut sock, peer)) => {
                    if self.count >= self.settings.max_clients && !self.evict_idlest(reg) {
                        // Told in plain words, then closed: the socket is
                        // new, so this small write does not block.
                        self.stats.refused += 1;
                        // A TLS client could not read a plain answer.
                        #[cfg(feature = "tls")]
                        if self.tls.is_some() {
                            continue;
                        }
                        let mut b = Vec::new();
                        encode(
                            &Response::error(503, "unavailable", "too many clients; try again"),
                            false,
                            false,
                            &mut b,
                        );
                        let _ = sock.write(&b);
                        continue;
                    }
                    let _ = sock.set_nodelay(true);
                    #[cfg(feature = "tls")]
                    let tls = match self.tls.as_ref().map(tls::accept).transpose() {
                        Ok(t) => t,
                        Err(e) => {
                            log::warn!("api: TLS for a client: {e}");
                            continue;
                        }
                    };
                    let i = self.free.pop().unwrap_or_else(|| {
                        self.clients.push(None);
                        self.clients.len() - 1
                    });
                    if let Err(e) =
                        reg.register(&mut sock, Token(self.base + i), Interest::READABLE)
                    {
                        log::warn!("api: cannot watch a client: {e}");
                        self.free.push(i);
                        continue;
                    }
                    self.stats.accepted += 1;
                    self.count += 1;
                    self.clients[i] = Some(Client {
                        sock,
                        peer: peer.ip(),
                        input: Vec::new(),
                        out: Vec::new(),
                        sent: 0,
                        mode: Mode::Http,
                        started: None,
                        active: now,
                        progress: now,
                        writing: false,
                        unread: true,
                        eof: false,
                        closing: false,
                        #[cfg(feature = "tls")]
                        tls,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => {}
                Err(e) => {
                    // EMFILE and the like: the pending connection stays
                    // queued; try again soon rather than spin.
                    log::warn!("api: accept: {e}");
                    self.accept_at = Some(now + ACCEPT_RETRY);
                    return;
                }
            }
        }
    }

    /// Readiness for client `i`.
    pub fn ready(
        &mut self,
        i: usize,
        readable: bool,
        writable: bool,
        reg: &Registry,
        now: Instant,
    ) {
        if writable {
            self.flush(i, reg, now);
        }
        if let Some(Some(c)) = self.clients.get_mut(i) {
            if readable {
                c.unread = true;
            }
        }
        if readable && self.is_stream(i) {
            self.drain_stream_input(i, reg);
        }
    }

    fn is_stream(&self, i: usize) -> bool {
        matches!(self.clients.get(i), Some(Some(c)) if !matches!(c.mode, Mode::Http))
    }

    /// A stream client sends nothing we act on (a WebSocket's frames are
    /// handled by `ws`); read and discard so that a close is seen.
    fn drain_stream_input(&mut self, i: usize, reg: &Registry) {
        #[cfg(feature = "ws")]
        if matches!(self.clients.get(i), Some(Some(c)) if matches!(c.mode, Mode::WebSocket(_))) {
            self.ws_input(i, reg);
            return;
        }
        let Some(Some(c)) = self.clients.get_mut(i) else {
            return;
        };
        let mut buf = [0u8; 1024];
        loop {
            match c.read(&mut buf) {
                Ok(0) => {
                    self.close(i, reg);
                    return;
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => {
                    self.close(i, reg);
                    return;
                }
            }
        }
    }

    /// Reads what fits into the input buffer. Returns whether anything
    /// new arrived.
    fn fill(c: &mut Client) -> io::Result<bool> {
        let mut got = false;
        let mut buf = [0u8; READ_CHUNK];
        while c.unread && c.input.len() < request::MAX_INPUT {
            let room = (request::MAX_INPUT - c.input.len()).min(READ_CHUNK);
            match c.read(&mut buf[..room]) {
                Ok(0) => {
                    c.eof = true;
                    c.unread = false;
                }
                Ok(n) => {
                    c.input.extend_from_slice(&buf[..n]);
                    got = true;
                    if got && n < room {
                        // Most likely drained; the next read would say
                        // WouldBlock, so take what there is first.
                        continue;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => c.unread = false,
                Err(e) => return Err(e),
            }
        }
        Ok(got)
    }

    /// The next request of client `i` that the reactor must answer; the
    /// ones refused here are answered here. None when there is none (yet)
    /// or the client must first read its replies.
    pub fn next(&mut self, i: usize, reg: &Registry, now: Instant) -> Option<Incoming> {
        loop {
            let c = self.clients.get_mut(i)?.as_mut()?;
            if !matches!(c.mode, Mode::Http) || c.closing || c.pending() > LOW_WATER {
                return None;
            }
            let parsed = request::parse(&c.input);
            match parsed {
                Parse::Partial => {
                    match Self::fill(c) {
                        Ok(true) => {
                            if c.started.is_none() {
                                c.started = Some(now);
                            }
                            continue;
                        }
                        Ok(false) => {}
                        Err(_) => {
                            self.close(i, reg);
                            return None;
                        }
                    }
                    if c.has_output() {
                        // A TLS handshake's replies, or a reply to go.
                        self.flush(i, reg, now);
                        let c = self.clients.get_mut(i)?.as_mut()?;
                        if c.eof && c.pending() == 0 {
                            self.close(i, reg);
                        }
                        return None;
                    }
                    if c.eof {
                        // Half a request and a hang-up: nothing to answer.
                        if c.pending() == 0 {
                            self.close(i, reg);
                        } else {
                            c.closing = true;
                        }
                    } else if c.input.is_empty() {
                        c.started = None;
                    }
                    return None;
                }
                Parse::Bad(r) => {
                    self.stats.requests += 1;
                    self.reply(i, &Response::refusal(&r), false, false, reg, now);
                    return None;
                }
                Parse::Done(req, n) => {
                    c.input.drain(..n);
                    c.started = (!c.input.is_empty()).then_some(now);
                    c.active = now;
                    if c.input.capacity() > KEEP_CAPACITY && c.input.is_empty() {
                        c.input = Vec::new();
                    }
                    self.stats.requests += 1;
                    let peer = c.peer;
                    let keep_alive = req.keep_alive;
                    let head = req.method == Method::Head;
                    if let Some(Verdict::Limited { retry_after }) =
                        self.limiter.as_mut().map(|l| l.check(peer, now))
                    {
                        self.stats.rate_limited += 1;
                        let l = self
                            .limiter
                            .as_ref()
                            .map(|l| l.settings().clone())
                            .unwrap_or_default();
                        let secs = retry_after.as_secs_f64().ceil().max(1.0) as u64;
                        let mut r = Response::error(
                            429,
                            "rate_limited",
                            &format!(
                                "more than {} requests a second (bursts of {}) from {peer}; retry in {secs} s",
                                l.requests_per_second, l.burst
                            ),
                        );
                        r.headers.push(("Retry-After", secs.to_string()));
                        r.headers.push(("RateLimit-Limit", l.burst.to_string()));
                        r.headers.push(("RateLimit-Remaining", "0".into()));
                        r.headers.push(("RateLimit-Reset", secs.to_string()));
                        r.headers.push((
                            "RateLimit-Policy",
                            format!("{};w=1;burst={}", l.requests_per_second, l.burst),
                        ));
                        self.reply(i, &r, keep_alive, head, reg, now);
                        continue;
                    }
                    let endpoint =
                        match route::route(req.method, &req.target, &self.settings.metrics_path) {
                            Ok(e) => e,
                            Err(r) => {
                                let mut resp = Response::refusal(&r);
                                if r.status == 405 {
                                    let allow = if req.target.starts_with("/api/v1/reload") {
                                        "POST"
                                    } else {
                                        "GET, HEAD"
                                    };
                                    resp.headers.push(("Allow", allow.into()));
                                }
                                self.reply(i, &resp, keep_alive, head, reg, now);
                                continue;
                            }
                        };
                    if req.method == Method::Post && req.cross_site() {
                        // A page of another site cannot make this daemon
                        // reload, token or not (a form POST needs no
                        // preflight).
                        let r = Response::error(
                            403,
                            "permission_denied",
                            "a cross-site request (its Origin is not this host) may not change netevd",
                        );
                        self.reply(i, &r, keep_alive, head, reg, now);
                        continue;
                    }
                    if !req.host_is_address()
                        && endpoint != Endpoint::Dashboard
                        && !self.bearer_ok(&req)
                    {
                        // DNS rebinding: see `Request::host_is_address`.
                        // The page itself holds no data; what it fetches
                        // carries the token.
                        self.stats.unauthorized += 1;
                        let r = Response::error(
                            403,
                            "permission_denied",
                            "Host names this daemon by a DNS name: without the bearer token \
                             (api.auth_token_file) only requests to an IP address or localhost \
                             are answered, as a web page can point a name of its own here",
                        );
                        self.reply(i, &r, keep_alive, head, reg, now);
                        continue;
                    }
                    if let Err(r) = self.authorize(&req, &endpoint) {
                        self.stats.unauthorized += 1;
                        self.reply(i, &r, keep_alive, head, reg, now);
                        continue;
                    }
                    return Some(Incoming {
                        client: i,
                        endpoint,
                        head,
                        keep_alive,
                        gzip: req.gzip,
                        last_event_id: req.last_event_id,
                        ws_key: req.ws_key,
                        ws_version: req.ws_version,
                    });
                }
            }
        }
    }

    /// Whether the request carries the configured bearer token.
    fn bearer_ok(&self, req: &request::Request) -> bool {
        self.settings
            .token
            .as_ref()
            .is_some_and(|t| req.bearer.as_deref().is_some_and(|b| limit::same(b, &t.0)))
    }

    /// The token check: POST always needs it, reads when configured. The
    /// dashboard page itself holds no data and is served to anyone, so a
    /// browser can load it and then be asked for the token.
    fn authorize(&self, req: &request::Request, e: &Endpoint) -> Result<(), Response> {
        let Some(token) = &self.settings.token else {
            return Ok(());
        };
        let needed =
            req.method == Method::Post || (self.settings.auth_reads && *e != Endpoint::Dashboard);
        if !needed {
            return Ok(());
        }
        let ok = req
            .bearer
            .as_deref()
            .is_some_and(|b| limit::same(b, &token.0));
        if ok {
            return Ok(());
        }
        let msg = if req.bearer.is_some() {
            "the bearer token is wrong"
        } else if req.other_auth {
            "only Authorization: Bearer <token> is accepted"
        } else {
            "this needs Authorization: Bearer <token> (api.auth_token_file)"
        };
        let mut r = Response::error(401, "unauthorized", msg);
        r.headers
            .push(("WWW-Authenticate", "Bearer realm=\"netevd\"".into()));
        Err(r)
    }

    /// Queues a reply to client `i`; without keep-alive the connection
    /// closes once it is written.
    pub fn reply(
        &mut self,
        i: usize,
        r: &Response,
        keep_alive: bool,
        head: bool,
        reg: &Registry,
        now: Instant,
    ) {
        if r.status >= 400 {
            self.stats.errors += 1;
        }
        let Some(Some(c)) = self.clients.get_mut(i) else {
            return;
        };
        encode(r, keep_alive, head, &mut c.out);
        if !keep_alive {
            c.closing = true;
        }
        self.flush(i, reg, now);
    }

    /// Turns client `i` into an event stream: the headers, then `replay`
    /// (the history after Last-Event-ID), then whatever `broadcast` sends.
    pub fn start_stream<'a>(
        &mut self,
        i: usize,
        filter: Subscription,
        replay: impl Iterator<Item = (u64, &'a str)>,
        reg: &Registry,
        now: Instant,
    ) {
        let Some(Some(c)) = self.clients.get_mut(i) else {
            return;
        };
        c.out.extend_from_slice(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\n\
              X-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n: netevd events\n\n",
        );
        c.mode = Mode::Stream(filter);
        c.input = Vec::new();
        for (id, json) in replay {
            sse_frame(&mut c.out, id, json);
        }
        self.flush(i, reg, now);
    }

    /// Whether any client takes events.
    pub fn listening(&self) -> bool {
        self.clients
            .iter()
            .flatten()
            .any(|c| !matches!(c.mode, Mode::Http))
    }

    /// Sends one event to every stream client whose filter `pass`es it;
    /// one too far behind is dropped.
    pub fn broadcast(
        &mut self,
        id: u64,
        json: &str,
        pass: impl Fn(&Subscription) -> bool,
        reg: &Registry,
        now: Instant,
    ) {
        for i in 0..self.clients.len() {
            let Some(c) = self.clients[i].as_mut() else {
                continue;
            };
            match &c.mode {
                Mode::Http => continue,
                Mode::Stream(f) if pass(f) => sse_frame(&mut c.out, id, json),
                #[cfg(feature = "ws")]
                Mode::WebSocket(f) if pass(f) => ws::text_frame(&mut c.out, json.as_bytes()),
                _ => continue,
            }
            if c.pending() > self.settings.max_queue {
                log::warn!(
                    "api: dropping event stream client {} ({} bytes unread)",
                    c.peer,
                    c.pending()
                );
                self.stats.dropped_slow += 1;
                self.close(i, reg);
                continue;
            }
            self.flush(i, reg, now);
        }
    }

    fn flush(&mut self, i: usize, reg: &Registry, now: Instant) {
        let Some(Some(c)) = self.clients.get_mut(i) else {
            return;
        };
        let was_empty_before = c.sent == 0 && !c.writing;
        if was_empty_before && c.pending() > 0 && c.progress < c.active {
            c.progress = now;
        }
        while c.pending() > 0 {
            match c.write_out() {
                Ok(0) => break,
                Ok(n) => {
                    c.sent += n;
                    c.progress = now;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    self.close(i, reg);
                    return;
                }
            }
        }
        if c.flush_tls().is_err() {
            self.close(i, reg);
            return;
        }
        if !c.has_output() {
            c.out.clear();
            c.sent = 0;
            if c.out.capacity() > KEEP_CAPACITY {
                c.out = Vec::new();
            }
            if c.closing || (c.eof && c.input.is_empty()) {
                self.close(i, reg);
                return;
            }
            c.active = now;
        } else if c.sent > LOW_WATER {
            c.out.drain(..c.sent);
            c.sent = 0;
        }
        let want = c.has_output();
        if want != c.writing {
            let interest = if want {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            if reg
                .reregister(&mut c.sock, Token(self.base + i), interest)
                .is_err()
            {
                self.close(i, reg);
                return;
            }
            c.writing = want;
            if want {
                c.progress = now;
            }
        }
    }

    /// At `max_clients`, makes room for a newcomer by closing the plain
    /// HTTP client that has waited longest with nothing owed to it: a
    /// request still trickling in, or a keep-alive connection between
    /// requests. Without this, `max_clients` connections that send
    /// nothing (or a byte now and then) shut everyone else out until
    /// their timeouts; with it, such a client lasts only until
    /// `max_clients` newer ones arrived, and a legitimate request, quick
    /// by comparison, gets through. Event streams and clients with output
    /// queued are never chosen. False when no client qualifies.
    fn evict_idlest(&mut self, reg: &Registry) -> bool {
        let victim = self
            .clients
            .iter()
            .enumerate()
            .filter_map(|(i, c)| Some((i, c.as_ref()?)))
            .filter(|(_, c)| matches!(c.mode, Mode::Http) && !c.closing && !c.has_output())
            .min_by_key(|(_, c)| c.started.unwrap_or(c.active))
            .map(|(i, _)| i);
        let Some(i) = victim else {
            return false;
        };
        self.stats.evicted += 1;
        self.close(i, reg);
        true
    }

    fn close(&mut self, i: usize, reg: &Registry) {
        if let Some(mut c) = self.clients.get_mut(i).and_then(Option::take) {
            let _ = reg.deregister(&mut c.sock);
            self.count -= 1;
            self.free.push(i);
        }
    }

    /// Called once per turn of the client's requests: whether it has more
    /// waiting, so that the reactor comes back without sleeping.
    pub fn used_turn(&mut self, i: usize) {
        if self.owns(i) && !self.more.contains(&i) {
            self.more.push(i);
        }
    }

    pub fn has_more(&self) -> bool {
        !self.more.is_empty()
    }

    pub fn take_more(&mut self) -> Vec<usize> {
        std::mem::take(&mut self.more)
    }

    /// Closes clients past their deadline: 408 for a request that did not
    /// arrive in time, a keep-alive comment for a quiet stream.
    pub fn expire(&mut self, reg: &Registry, now: Instant) {
        for i in 0..self.clients.len() {
            let Some(c) = self.clients[i].as_mut() else {
                continue;
            };
            if c.deadline(&self.settings) > now {
                continue;
            }
            if c.closing || c.has_output() {
                if !matches!(c.mode, Mode::Http) {
                    self.stats.dropped_slow += 1;
                }
                self.close(i, reg);
            } else if c.started.is_some() {
                self.stats.timed_out += 1;
                let r = Response::error(
                    408,
                    "timeout",
                    &format!(
                        "the request did not arrive within {} s",
                        self.settings.request_timeout.as_secs()
                    ),
                );
                c.started = None;
                c.input = Vec::new();
                self.reply(i, &r, false, false, reg, now);
            } else {
                match &c.mode {
                    Mode::Http => self.close(i, reg),
                    Mode::Stream(_) => {
                        c.out.extend_from_slice(b": keep-alive\n\n");
                        c.progress = now;
                        self.flush(i, reg, now);
                    }
                    #[cfg(feature = "ws")]
                    Mode::WebSocket(_) => {
                        ws::ping_frame(&mut c.out);
                        c.progress = now;
                        self.flush(i, reg, now);
                    }
                }
            }
        }
    }

    /// The earliest client deadline.
    pub fn next_deadline(&self) -> Option<Instant> {
        let mut t = self
            .clients
            .iter()
            .flatten()
            .map(|c| c.deadline(&self.settings))
            .min();
        if let Some(a) = self.accept_at {
            t = Some(t.map_or(a, |t| t.min(a)));
        }
        t
    }

    /// Whether accepting was paused and is due again.
    pub fn accept_due(&self, now: Instant) -> bool {
        self.accept_at.is_some_and(|t| t <= now)
    }
}

/// One server-sent event: its id (for Last-Event-ID) and the event's JSON
/// on one data line (the JSON has no raw newlines).
fn sse_frame(out: &mut Vec<u8>, id: u64, json: &str) {
    out.extend_from_slice(b"id: ");
    out.extend_from_slice(id.to_string().as_bytes());
    out.extend_from_slice(b"\ndata: ");
    out.extend_from_slice(json.as_bytes());
    out.extend_from_slice(b"\n\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding() {
        let mut b = Vec::new();
        let mut r = Response::error(429, "rate_limited", "slow down <b>");
        r.headers.push(("Retry-After", "1".into()));
        encode(&r, false, false, &mut b);
        let s = String::from_utf8(b).unwrap();
        assert!(s.starts_with("HTTP/1.1 429 Too Many Requests\r\n"), "{s}");
        assert!(s.contains("Content-Type: application/json\r\n"));
        assert!(s.contains("Connection: close\r\n"));
        assert!(s.contains("Retry-After: 1\r\n"));
        let body = s.split("\r\n\r\n").nth(1).unwrap();
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["error"]["code"], "rate_limited");
        assert_eq!(v["error"]["message"], "slow down <b>");
        assert!(s.contains(&format!("Content-Length: {}\r\n", body.len())));
        let mut h = Vec::new();
        encode(
            &Response::json(200, &serde_json::json!({})),
            true,
            true,
            &mut h,
        );
        let s = String::from_utf8(h).unwrap();
        assert!(s.ends_with("\r\n\r\n") && s.contains("Content-Length: 3\r\n"));
        let mut f = Vec::new();
        sse_frame(&mut f, 7, "{\"a\":1}");
        assert_eq!(f, b"id: 7\ndata: {\"a\":1}\n\n");
    }
}
