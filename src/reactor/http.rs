//! Answers HTTP requests inside the loop (feature `http`). Every query is
//! a control-socket `Request` answered by the same `query` as the control
//! socket (answer.rs), so both speak the same JSON from the same borrowed
//! state; only the envelope differs (the body is the `ok` value, errors
//! are `{"error": {"code", "message"}}` with an HTTP status). Event
//! streams are fed from the one fan-out point, `publish`.

use std::rc::Rc;
use std::time::Instant;

use mio::Registry;
use netevd_ctl::{Code, Error, Request};
use serde_json::{json, Value};

use super::{token, Daemon};
use crate::config::Config;
use crate::core::event::Event;
use crate::core::filter::Subscription;
use crate::core::query;
use crate::source::http::route::Endpoint;
use crate::source::http::{self, Http, Incoming, Response};

/// The dashboard: one self-contained page, nothing fetched from outside.
const DASHBOARD: &str = include_str!("../source/http/dashboard.html");

/// What the dashboard may do: its own inline script and style, requests
/// to this origin, nothing else (no frames, no forms elsewhere).
const DASHBOARD_CSP: &str = "default-src 'none'; script-src 'unsafe-inline'; \
     style-src 'unsafe-inline'; connect-src 'self'; img-src data:; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// Opens the listener when `api.enabled` asks for one.
pub(super) fn open(c: &Config, reg: &Registry) -> std::io::Result<Option<Http>> {
    if !c.api.enabled {
        return Ok(None);
    }
    #[cfg_attr(not(feature = "tls"), allow(unused_mut))]
    let mut h = Http::open(
        http::Settings::of(&c.api, &c.metrics.endpoint),
        c.api.rate.clone(),
        reg,
        token::HTTP,
        token::HTTP_CLIENTS,
    )?;
    #[cfg(feature = "tls")]
    if let Some(t) = &c.api.tls {
        h.set_tls(Some(http::tls::load(t).map_err(std::io::Error::other)?));
    }
    log::info!(
        "api: listening on {}://{}{}",
        if c.api.tls.is_some() { "https" } else { "http" },
        h.local_addr()?,
        if c.api.auth_token.is_some() {
            " (bearer token required for POST)"
        } else {
            ""
        }
    );
    Ok(Some(h))
}

/// The HTTP status for a control-socket error code.
fn status_of(code: Code) -> u16 {
    match code {
        Code::BadRequest => 400,
        Code::UnknownCommand | Code::NotFound => 404,
        Code::TooLong => 413,
        Code::PermissionDenied => 403,
        Code::InvalidConfig => 500,
        Code::Unavailable => 503,
    }
}

fn error_response(e: &Error) -> Response {
    Response::error(status_of(e.code), e.code.as_str(), &e.message)
}

/// The metrics registry's text exposition, as `netevctl metrics` prints
/// it; refused, like the control socket's `metrics`, when
/// `metrics.enabled` is false.
fn metrics_text(d: &Daemon) -> Result<String, Error> {
    if !d.config.metrics.enabled {
        return Err(Error::new(
            Code::Unavailable,
            "metrics are turned off (metrics.enabled: false)",
        ));
    }
    Ok(d.metrics_text(Instant::now()))
}

impl Daemon {
    pub(super) fn on_http_listener(&mut self) {
        if let Some(h) = self.http.as_mut() {
            h.accept(self.poll.registry(), Instant::now());
        }
    }

    pub(super) fn on_http_client(&mut self, i: usize, readable: bool, writable: bool) {
        self.runner.input_read();
        let Some(h) = self.http.as_mut() else {
            return;
        };
        if !h.owns(i) {
            return;
        }
        let now = Instant::now();
        h.ready(i, readable, writable, self.poll.registry(), now);
        self.serve_http(i, now);
    }

    /// Answers client `i`'s requests, up to its share of this turn.
    pub(super) fn serve_http(&mut self, i: usize, now: Instant) {
        for _ in 0..http::REQUESTS_PER_TURN {
            let Some(h) = self.http.as_mut() else {
                return;
            };
            let Some(req) = h.next(i, self.poll.registry(), now) else {
                return;
            };
            self.http_answer(req, now);
        }
        if let Some(h) = self.http.as_mut() {
            h.used_turn(i);
        }
    }

    /// Clients whose turn ran out get another.
    pub(super) fn http_leftovers(&mut self) {
        let more = self.http.as_mut().map(Http::take_more).unwrap_or_default();
        let now = Instant::now();
        if self.http.as_ref().is_some_and(|h| h.accept_due(now)) {
            self.on_http_listener();
        }
        for i in more {
            self.serve_http(i, now);
        }
    }

    pub(super) fn http_expire(&mut self, now: Instant) {
        if self.http.as_ref().is_some_and(|h| h.accept_due(now)) {
            self.on_http_listener();
        }
        if let Some(h) = self.http.as_mut() {
            h.expire(self.poll.registry(), now);
        }
    }

    fn http_answer(&mut self, req: Incoming, now: Instant) {
        let i = req.client;
        let r = match req.endpoint {
            Endpoint::Dashboard => {
                let mut r = Response {
                    status: 200,
                    content_type: "text/html; charset=utf-8",
                    body: DASHBOARD.as_bytes().to_vec(),
                    headers: Vec::new(),
                };
                r.headers
                    .push(("Content-Security-Policy", DASHBOARD_CSP.into()));
                r.headers.push(("Referrer-Policy", "no-referrer".into()));
                r
            }
            Endpoint::Health => {
                let (ok, v) = self.health();
                Response::json(if ok { 200 } else { 503 }, &v)
            }
            Endpoint::Metrics => match metrics_text(self) {
                Ok(text) => {
                    let mut r = Response {
                        status: 200,
                        content_type: "text/plain; version=0.0.4; charset=utf-8",
                        body: text.into_bytes(),
                        headers: Vec::new(),
                    };
                    if req.gzip {
                        r.body = http::gzip::compress(&r.body);
                        r.headers.push(("Content-Encoding", "gzip".into()));
                    }
                    r.headers.push(("Vary", "Accept-Encoding".into()));
                    r
                }
                Err(e) => error_response(&e),
            },
            Endpoint::Interfaces { state, kind } => {
                let plan = self.policy.plan();
                let v: Vec<Value> = self
                    .core
                    .links()
                    .filter(|l| state.as_deref().map_or(true, |s| l.state().as_str() == s))
                    .filter(|l| {
                        kind.as_deref()
                            .map_or(true, |k| l.info.kind.as_deref() == Some(k))
                    })
                    .map(|l| query::interface(l, plan))
                    .collect();
                Response::json(200, &json!({ "interfaces": v }))
            }
            Endpoint::Query(q) => {
                let reload = q == Request::Reload;
                match self.query(q) {
                    Ok(v) => {
                        if reload {
                            log::info!("api: reloaded on request from the HTTP shim");
                        }
                        Response::json(200, &v)
                    }
                    Err(e) => error_response(&e),
                }
            }
            // `where` is parsed once, when the stream starts.
            Endpoint::Stream(filter) => match Subscription::new(filter) {
                Err(e) => Response::error(400, "bad_request", &e),
                Ok(sub) => {
                    let after = req.last_event_id;
                    let core = &self.core;
                    let replay = self
                        .history
                        .iter()
                        .filter(|e| after.is_some_and(|a| e.id > a) && sub.matches(e, core));
                    let replay = replay.map(|e| (e.id, e.json()));
                    if let Some(h) = self.http.as_mut() {
                        h.start_stream(i, sub.clone(), replay, self.poll.registry(), now);
                    }
                    return;
                }
            },
            Endpoint::WebSocket(filter) => match (req.ws_key, req.ws_version.as_deref()) {
                #[cfg(feature = "ws")]
                (Some(key), Some("13")) => match Subscription::new(filter) {
                    Err(e) => Response::error(400, "bad_request", &e),
                    Ok(sub) => {
                        if let Some(h) = self.http.as_mut() {
                            h.start_ws(i, &key, sub, self.poll.registry(), now);
                        }
                        return;
                    }
                },
                (Some(_), _) if cfg!(feature = "ws") => {
                    let mut r =
                        Response::error(400, "bad_request", "only WebSocket version 13 is spoken");
                    r.headers.push(("Sec-WebSocket-Version", "13".into()));
                    r
                }
                _ if !cfg!(feature = "ws") => {
                    let _ = filter;
                    Response::error(
                        404,
                        "not_found",
                        "this netevd was built without WebSockets (cargo feature ws); \
                         use /api/v1/events/stream",
                    )
                }
                _ => Response::error(
                    400,
                    "bad_request",
                    "expected a WebSocket upgrade (Upgrade: websocket, Sec-WebSocket-Key)",
                ),
            },
        };
        if let Some(h) = self.http.as_mut() {
            h.reply(i, &r, req.keep_alive, req.head, self.poll.registry(), now);
        }
    }

    /// Each check with its detail; healthy when all pass.
    fn health(&self) -> (bool, Value) {
        let synced = self.core.synced();
        let retrying = self.netlink.wants_retry();
        let netlink = json!({
            "ok": synced && !retrying,
            "detail": if !synced {
                "the start-up dump (or a resync) is not over"
            } else if retrying {
                "a dump request could not be sent and is being retried"
            } else {
                "in sync with the kernel"
            },
        });
        let (bus_ok, bus_detail, backend_ok, backend_detail) = self.bus_health();
        let dbus = json!({ "ok": bus_ok, "detail": bus_detail });
        let config = json!({
            "ok": true,
            "detail": format!("{} (config_hash {:016x})", self.opts.config_path.display(), self.config_hash),
            "inactive": self.config.inactive,
        });
        let backend = json!({ "ok": backend_ok, "detail": backend_detail });
        let ok = [&netlink, &dbus, &config, &backend]
            .iter()
            .all(|c| c["ok"] == true);
        let api = self.http.as_ref().map(
            |h| json!({ "clients": h.clients(), "streams": h.streams(), "counters": h.stats }),
        );
        (
            ok,
            json!({
                "status": if ok { "ok" } else { "fail" },
                "checks": { "netlink": netlink, "dbus": dbus, "config": config, "backend": backend },
                "api": api,
            }),
        )
    }

    /// Hands a published event to the event streams.
    pub(super) fn http_publish(&mut self, ev: &Rc<Event>) {
        let Some(h) = self.http.as_mut() else {
            return;
        };
        if !h.listening() {
            return;
        }
        let core = &self.core;
        h.broadcast(
            ev.id,
            ev.json(),
            |s| s.matches(ev, core),
            self.poll.registry(),
            Instant::now(),
        );
    }

    /// A reload's new limits, token and rate; the address and `enabled`
    /// take effect at the next start.
    pub(super) fn http_reload(&mut self, c: &Config) {
        if c.api.enabled != self.config.api.enabled
            || c.api.bind_address != self.config.api.bind_address
            || c.api.port != self.config.api.port
        {
            log::warn!(
                "reload: api.enabled, api.bind_address and api.port take effect at the next start"
            );
        }
        if let Some(h) = self.http.as_mut() {
            h.set_settings(
                http::Settings::of(&c.api, &c.metrics.endpoint),
                c.api.rate.clone(),
            );
            // Certificates are read again at each reload; a file that
            // cannot be loaded keeps the ones in use.
            #[cfg(feature = "tls")]
            match c.api.tls.as_ref().map(http::tls::load).transpose() {
                Ok(cfg) => {
                    if cfg.is_some() != self.config.api.tls.is_some() {
                        log::warn!("reload: api.tls switched; new connections follow it");
                    }
                    if cfg.is_some() {
                        log::info!("api: TLS certificates reloaded");
                    }
                    h.set_tls(cfg);
                }
                Err(e) => log::error!("reload: {e}; keeping the certificates in use"),
            }
        }
    }
}
