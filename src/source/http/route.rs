//! The URL space: a method and a request target in, the endpoint (most of
//! them a control-socket `Request`, so both answer from the same code)
//! or the refusal out. Pure. Nothing here touches the file system: paths
//! name endpoints, never files, so there is nothing to traverse to.
//!
//! Query parameters are strict like control requests: an unknown one, one
//! given twice or one out of its range is a 400 naming it.

use netevd_ctl::{EventFilter, LinkRef, Request, KINDS, STATES};

use super::request::{Method, Refusal};

/// The link states an interface may be in (`?state=`).
pub const LINK_STATES: [&str; 6] = [
    "off",
    "no-carrier",
    "dormant",
    "carrier",
    "degraded",
    "routable",
];

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// The dashboard page.
    Dashboard,
    Health,
    Metrics,
    /// A control-socket query or action.
    Query(Request),
    /// `interfaces`, narrowed by state and kind.
    Interfaces {
        state: Option<String>,
        kind: Option<String>,
    },
    /// Server-sent events.
    Stream(EventFilter),
    /// A WebSocket of events.
    WebSocket(EventFilter),
}

fn bad(message: impl Into<String>) -> Refusal {
    Refusal {
        status: 400,
        message: message.into(),
    }
}

fn not_found(path: &str) -> Refusal {
    Refusal {
        status: 404,
        message: format!("no endpoint {path:?}; see /api/v1/status, /health, /metrics"),
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-decodes `s` (and `+` as a space in a query); refuses a bad
/// escape or bytes that are not UTF-8.
pub fn decode(s: &str, query: bool) -> Result<String, Refusal> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let v = b
                    .get(i + 1)
                    .and_then(|&h| hex(h))
                    .zip(b.get(i + 2).and_then(|&l| hex(l)))
                    .ok_or_else(|| bad("a bad percent escape in the URL"))?;
                out.push(v.0 << 4 | v.1);
                i += 3;
            }
            b'+' if query => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| bad("the URL is not UTF-8 once decoded"))
}

/// The query's parameters, read one by one; what is left unread at the
/// end is an error.
struct Query {
    path: String,
    pairs: Vec<(String, String)>,
}

impl Query {
    fn parse(path: &str, q: &str) -> Result<Query, Refusal> {
        let mut pairs: Vec<(String, String)> = Vec::new();
        for p in q.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let k = decode(k, true)?;
            if pairs.iter().any(|(x, _)| *x == k) {
                return Err(bad(format!("{path}: parameter {k:?} given twice")));
            }
            pairs.push((k, decode(v, true)?));
        }
        Ok(Query {
            path: path.to_string(),
            pairs,
        })
    }

    fn take(&mut self, k: &str) -> Option<String> {
        let i = self.pairs.iter().position(|(x, _)| x == k)?;
        Some(self.pairs.remove(i).1).filter(|v| !v.is_empty())
    }

    fn uint(&mut self, k: &str, max: u64) -> Result<Option<u64>, Refusal> {
        match self.take(k) {
            None => Ok(None),
            Some(v) => match v.parse::<u64>() {
                Ok(n) if n <= max && v.bytes().all(|b| b.is_ascii_digit()) => Ok(Some(n)),
                _ => Err(bad(format!(
                    "{}: {k}: expected a whole number up to {max}, not {v:?}",
                    self.path
                ))),
            },
        }
    }

    fn one_of(&mut self, k: &str, all: &[&str]) -> Result<Option<String>, Refusal> {
        match self.take(k) {
            Some(v) if !all.contains(&v.as_str()) => Err(bad(format!(
                "{}: {k}: {v:?} is not one of {}",
                self.path,
                all.join(", ")
            ))),
            v => Ok(v),
        }
    }

    fn bool(&mut self, k: &str) -> Result<bool, Refusal> {
        match self.take(k).as_deref() {
            None | Some("false") | Some("0") => Ok(false),
            Some("true") | Some("1") => Ok(true),
            Some(v) => Err(bad(format!(
                "{}: {k}: expected true or false, not {v:?}",
                self.path
            ))),
        }
    }

    fn link(&mut self, k: &str) -> Option<LinkRef> {
        self.take(k).map(|v| LinkRef::parse(&v))
    }

    fn filter(&mut self) -> Result<EventFilter, Refusal> {
        Ok(EventFilter {
            link: self.link("interface"),
            kind: self.one_of("kind", &KINDS)?,
            state: self.one_of("state", &STATES)?,
            condition: self.take("where"),
        })
    }

    fn finish(self) -> Result<(), Refusal> {
        match self.pairs.first() {
            Some((k, _)) => Err(bad(format!("{}: unknown parameter {k:?}", self.path))),
            None => Ok(()),
        }
    }
}

/// Which endpoint `target` names, for `method`; the metrics are served
/// at `metrics` (`metrics.endpoint`, /metrics by default).
pub fn route(method: Method, target: &str, metrics: &str) -> Result<Endpoint, Refusal> {
    let (raw_path, raw_query) = target.split_once('?').unwrap_or((target, ""));
    let path = decode(raw_path, false)?;
    let mut q = Query::parse(&path, raw_query)?;
    let get = matches!(method, Method::Get | Method::Head);
    let allow = |want_post: bool| -> Result<(), Refusal> {
        if want_post == (method == Method::Post) && (want_post || get) {
            Ok(())
        } else {
            Err(Refusal {
                status: 405,
                message: format!(
                    "{path}: method not allowed; use {}",
                    if want_post { "POST" } else { "GET" }
                ),
            })
        }
    };
    let e = match path.as_str() {
        p if p == metrics => {
            allow(false)?;
            Endpoint::Metrics
        }
        "/" | "/index.html" => {
            allow(false)?;
            Endpoint::Dashboard
        }
        "/health" => {
            allow(false)?;
            Endpoint::Health
        }
        "/api/v1/status" => {
            allow(false)?;
            Endpoint::Query(Request::Status)
        }
        "/api/v1/interfaces" => {
            allow(false)?;
            Endpoint::Interfaces {
                state: q.one_of("state", &LINK_STATES)?,
                kind: q.take("kind"),
            }
        }
        "/api/v1/routes" => {
            allow(false)?;
            Endpoint::Query(Request::Routes {
                link: q.link("interface"),
                table: q.uint("table", u32::MAX as u64)?.map(|t| t as u32),
                family: match q.take("family").as_deref() {
                    None => None,
                    Some("inet" | "ipv4" | "4") => Some("inet".into()),
                    Some("inet6" | "ipv6" | "6") => Some("inet6".into()),
                    Some(f) => {
                        return Err(bad(format!(
                            "{path}: family: expected inet or inet6, not {f:?}"
                        )))
                    }
                },
            })
        }
        "/api/v1/rules" => {
            allow(false)?;
            Endpoint::Query(Request::Rules {
                all: q.bool("all")?,
            })
        }
        "/api/v1/events" => {
            allow(false)?;
            Endpoint::Query(Request::Events {
                limit: q.uint("limit", 1 << 20)?.map(|n| n as usize),
                since: q.uint("since", u64::MAX)?,
                filter: q.filter()?,
            })
        }
        // A stream has no end, so no HEAD: its headers would be all.
        "/api/v1/events/stream" | "/api/v1/events/ws" if method == Method::Head => {
            return Err(Refusal {
                status: 405,
                message: format!("{path}: method not allowed; use GET"),
            })
        }
        "/api/v1/events/stream" => {
            allow(false)?;
            Endpoint::Stream(q.filter()?)
        }
        "/api/v1/events/ws" => {
            allow(false)?;
            Endpoint::WebSocket(q.filter()?)
        }
        "/api/v1/hooks/runs" => {
            allow(false)?;
            Endpoint::Query(Request::History {
                limit: q.uint("limit", 1 << 20)?.map(|n| n as usize),
                link: q.link("interface"),
            })
        }
        "/api/v1/reload" => {
            allow(true)?;
            Endpoint::Query(Request::Reload)
        }
        p => match p.strip_prefix("/api/v1/interfaces/") {
            // A name has no slash (the kernel refuses one), so neither
            // may this.
            Some(name) if !name.is_empty() && !name.contains('/') => {
                allow(false)?;
                Endpoint::Query(Request::Interface(LinkRef::parse(name)))
            }
            _ => return Err(not_found(p)),
        },
    };
    q.finish()?;
    Ok(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(m: Method, t: &str) -> Endpoint {
        route(m, t, "/metrics").unwrap_or_else(|e| panic!("{t}: {e:?}"))
    }

    fn err(m: Method, t: &str) -> (u16, String) {
        let e = route(m, t, "/metrics").unwrap_err();
        (e.status, e.message)
    }

    #[test]
    fn endpoints() {
        use Method::*;
        assert_eq!(ok(Get, "/"), Endpoint::Dashboard);
        assert_eq!(ok(Head, "/health"), Endpoint::Health);
        assert_eq!(ok(Get, "/api/v1/status"), Endpoint::Query(Request::Status));
        assert_eq!(
            ok(Get, "/api/v1/interfaces?state=routable&kind=veth"),
            Endpoint::Interfaces {
                state: Some("routable".into()),
                kind: Some("veth".into())
            }
        );
        assert_eq!(
            ok(Get, "/api/v1/interfaces/eth%30"),
            Endpoint::Query(Request::Interface(LinkRef::Name("eth0".into())))
        );
        assert_eq!(
            ok(Get, "/api/v1/interfaces/7"),
            Endpoint::Query(Request::Interface(LinkRef::Index(7)))
        );
        assert_eq!(
            ok(Get, "/api/v1/routes?interface=wan&table=1000&family=ipv6"),
            Endpoint::Query(Request::Routes {
                table: Some(1000),
                link: Some(LinkRef::Name("wan".into())),
                family: Some("inet6".into())
            })
        );
        assert_eq!(
            ok(
                Get,
                "/api/v1/events?limit=5&since=9&kind=state&interface=a+b"
            ),
            Endpoint::Query(Request::Events {
                limit: Some(5),
                since: Some(9),
                filter: EventFilter {
                    link: Some(LinkRef::Name("a b".into())),
                    kind: Some("state".into()),
                    state: None,
                    condition: None,
                }
            })
        );
        // `where` is the filter language, passed on to be parsed once.
        assert_eq!(
            ok(
                Get,
                "/api/v1/events/stream?where=has_gateway+%26%26+mtu+%3E+1400"
            ),
            Endpoint::Stream(EventFilter {
                condition: Some("has_gateway && mtu > 1400".into()),
                ..EventFilter::default()
            })
        );
        // The metrics are where `metrics.endpoint` says, and only there.
        assert_eq!(route(Get, "/m", "/m").unwrap(), Endpoint::Metrics);
        assert_eq!(route(Get, "/metrics", "/m").unwrap_err().status, 404);
        assert_eq!(ok(Post, "/api/v1/reload"), Endpoint::Query(Request::Reload));
        assert!(matches!(
            ok(Get, "/api/v1/events/stream?state=routable"),
            Endpoint::Stream(_)
        ));
    }

    #[test]
    fn refusals() {
        use Method::*;
        assert_eq!(err(Get, "/etc/passwd").0, 404);
        assert_eq!(err(Get, "/api/v1/../../etc/passwd").0, 404);
        assert_eq!(err(Get, "/api/v1/interfaces/a%2fb").0, 404);
        assert_eq!(err(Get, "/api/v1/interfaces/").0, 404);
        assert_eq!(err(Post, "/api/v1/status").0, 405);
        assert_eq!(err(Get, "/api/v1/reload").0, 405);
        assert_eq!(err(Other, "/health").0, 405);
        assert_eq!(err(Head, "/api/v1/events/stream").0, 405);
        let (s, m) = err(Get, "/api/v1/status?verbose=1");
        assert_eq!(s, 400);
        assert!(m.contains("unknown parameter \"verbose\""), "{m}");
        assert_eq!(err(Get, "/api/v1/events?limit=x").0, 400);
        assert_eq!(err(Get, "/api/v1/events?limit=1&limit=2").0, 400);
        assert_eq!(err(Get, "/api/v1/events?kind=nope").0, 400);
        assert_eq!(err(Get, "/api/v1/interfaces?state=up").0, 400);
        assert_eq!(err(Get, "/api/v1/routes?family=x").0, 400);
        assert_eq!(err(Get, "/api/v1/status%zz").0, 400);
        assert_eq!(err(Get, "/%ff").0, 400);
    }
}
