//! The control protocol of netevd, shared by the daemon and netevctl so
//! the two cannot drift: requests, replies, event lines and error codes,
//! and the command-line helper both binaries use.
//!
//! The wire format is JSON Lines over a Unix stream socket, documented in
//! netevctl(1), PROTOCOL. Each request is one line, one JSON object:
//! `{"command": "...", "id": ANY?, ...arguments}`. Each request gets
//! exactly one reply line, `{"v": 1, "id": ..., "ok": {...}}` or
//! `{"v": 1, "id": ..., "error": {"code": "...", "message": "..."}}`.
//! After a successful `subscribe`, the daemon writes event lines,
//! `{"v": 1, "event": {...}}`, until the client closes or falls too far
//! behind; then a last `{"v": 1, "dropped": {...}}` line says why.
//!
//! The `ok` bodies, by command (every object may gain fields within a
//! version; none changes meaning or goes away without bumping `VERSION`):
//! - status: `Status` below.
//! - interfaces: `{"interfaces": [IFACE]}`; interface: `{"interface":
//!   IFACE}` with `routes` added. IFACE = `{index, name, kind, state,
//!   operstate, mac, mtu, flags: [str], addresses: [{address, prefixlen,
//!   family, scope, flags: [str], valid_lft, preferred_lft}], policy:
//!   {table, rules: [str], gateways: [str]} | null}`; lifetimes are
//!   seconds as of the last kernel message, null for forever.
//! - routes: `{"routes": [ROUTE]}`, ROUTE = `{family, dst, gateway, table,
//!   metric, protocol, scope, type, prefsrc, ifindex, link}`.
//! - rules: `{"rules": [{family, priority, table, from, to, iif, oif,
//!   fwmark, protocol, action, own}]}`.
//! - events: `{"events": [EVENT]}`, EVENT being the JSON hooks get.
//! - history: `{"runs": [{hook, link, ifindex, event_id, state,
//!   started_ms, duration_ms, exit_code, signal, timed_out, output:
//!   [str]}]}`; `duration_ms` and the exit are null while it runs.
//! - hooks: `{"script_dir", "directories": [{state, path, exists, hooks:
//!   [str], skipped: [{name, reason}]}]}`.
//! - filters: `{"filters": [{name, action, interface, interface_pattern,
//!   event_types: [str], backend, ip_family, condition, scripts: [str] |
//!   null, hits}], "unmatched"}`: in order, `hits` the events each
//!   decided, `unmatched` those no filter matched (their hooks ran).
//! - reload: `{"reloaded": true, "changes": [str]}`.
//! - test: `{"event_id", "state", "link", "hooks": [str], "filter"}`
//!   (`filter` as below; `hooks` only those the filters let run); with
//!   `dry_run`: `{"event_id": null, "state", "link", "hooks": [{path,
//!   environment: {NAME: value}, json}]}`.
//! - subscribe: `{"subscribed": true}`, then event lines.
//! - metrics: `{"format": "prometheus-text-0.0.4", "text": str}`, the
//!   Prometheus text exposition as one string.
//! - audit (privileged): `{"path", "lines": [LINE], "truncated": bool}`,
//!   LINE being an audit log line as written (netevd.yaml(5), AUDIT LOG),
//!   oldest first; `truncated` when the files were larger than one query
//!   may read.
//!   environment: {NAME: value}, json}], "filter": {name, action, why:
//!   [str], scripts} | null, "not_matched": [{name, why}]}`: the filter
//!   that decides the event and why, and why each one before it did not
//!   match; `hooks` holds only what would run.
//! - subscribe: `{"subscribed": true}`, then event lines. `events` and
//!   `subscribe` take `link`, `kind`, `state` and `where`, a condition
//!   in the filter language (netevd.yaml(5)); a `where` that does not
//!   parse is a `bad_request` naming the column.
//!
//! No I/O here but `parse_args` printing argh's messages.

use std::fmt;
use std::process::ExitCode;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The protocol version, in every line the daemon writes.
pub const VERSION: u32 = 1;

/// The longest request line the daemon reads; longer ones get a
/// `too_long` error and are skipped up to their newline.
pub const MAX_REQUEST: usize = 16 * 1024;

/// Error codes of an `error` reply. Stable strings: scripts match on them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    /// Not JSON, not an object, a missing or mistyped argument.
    BadRequest,
    UnknownCommand,
    /// The request line is longer than `MAX_REQUEST`.
    TooLong,
    /// No such interface.
    NotFound,
    /// The peer may query but not change things (reload, test).
    PermissionDenied,
    /// `reload` refused the new file; the running configuration stays.
    InvalidConfig,
    /// The request is valid but cannot be served now (e.g. the model is
    /// still loading).
    Unavailable,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::BadRequest => "bad_request",
            Code::UnknownCommand => "unknown_command",
            Code::TooLong => "too_long",
            Code::NotFound => "not_found",
            Code::PermissionDenied => "permission_denied",
            Code::InvalidConfig => "invalid_config",
            Code::Unavailable => "unavailable",
        }
    }
}

/// A refused request: what goes into an `error` reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    pub code: Code,
    pub message: String,
}

impl Error {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Error {
            code,
            message: message.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.code.as_str())
    }
}

/// A link named by its name or its index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkRef {
    Name(String),
    Index(u32),
}

impl LinkRef {
    /// A string of digits is an index; anything else a name.
    pub fn parse(s: &str) -> LinkRef {
        match s.parse::<u32>() {
            Ok(i) if !s.starts_with('0') || s == "0" => LinkRef::Index(i),
            _ => LinkRef::Name(s.to_string()),
        }
    }

    fn from_value(v: &Value, what: &str) -> Result<LinkRef, Error> {
        match v {
            Value::String(s) if !s.is_empty() => Ok(LinkRef::parse(s)),
            Value::Number(n) => n
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .map(LinkRef::Index)
                .ok_or_else(|| bad(format!("{what}: not an interface index"))),
            _ => Err(bad(format!("{what}: expected an interface name or index"))),
        }
    }

    pub fn to_value(&self) -> Value {
        match self {
            LinkRef::Name(s) => Value::String(s.clone()),
            LinkRef::Index(i) => Value::from(*i),
        }
    }
}

impl fmt::Display for LinkRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LinkRef::Name(s) => f.write_str(s),
            LinkRef::Index(i) => write!(f, "#{i}"),
        }
    }
}

/// Which events a query or a subscription wants; every field narrows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EventFilter {
    pub link: Option<LinkRef>,
    /// startup, state, removed, routes, test, lease
    pub kind: Option<String>,
    /// The hook directory: carrier, routable, routes, ...
    pub state: Option<String>,
    /// `where` on the wire: a condition in the language of filters
    /// (netevd.yaml(5), FILTERS), such as `has_gateway && kind ==
    /// "wireguard"`. The daemon parses it once and refuses one that does
    /// not parse; `matches` does not look at it.
    pub condition: Option<String>,
}

impl EventFilter {
    /// Whether an event with these fields passes.
    pub fn matches(&self, link: &str, index: u32, kind: &str, state: &str) -> bool {
        let link_ok = match &self.link {
            None => true,
            Some(LinkRef::Name(n)) => n == link,
            Some(LinkRef::Index(i)) => *i == index,
        };
        link_ok
            && self.kind.as_deref().map_or(true, |k| k == kind)
            && self.state.as_deref().map_or(true, |s| s == state)
    }
}

/// Every request the daemon answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    Status,
    Interfaces,
    Interface(LinkRef),
    Routes {
        table: Option<u32>,
        link: Option<LinkRef>,
        /// "inet" or "inet6"
        family: Option<String>,
    },
    Rules {
        /// Every rule in the kernel, not only netevd's own.
        all: bool,
    },
    Events {
        limit: Option<usize>,
        since: Option<u64>,
        filter: EventFilter,
    },
    History {
        limit: Option<usize>,
        link: Option<LinkRef>,
    },
    Hooks,
    /// The configured filters with their hit counts.
    Filters,
    Reload,
    Test {
        state: String,
        link: LinkRef,
        dry_run: bool,
    },
    Subscribe(EventFilter),
    Metrics,
    Audit(AuditQuery),
}

/// What an `audit` request asks for; every field narrows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// Milliseconds since the epoch, inclusive.
    pub since_ms: Option<u64>,
    pub until_ms: Option<u64>,
    /// One of `AUDIT_KINDS`.
    pub kind: Option<String>,
    pub link: Option<LinkRef>,
    /// The newest this many, or with `since_ms` the first this many.
    pub limit: Option<usize>,
}

/// The kinds of audit line.
pub const AUDIT_KINDS: [&str; 6] = ["state", "hook", "control", "reload", "policy", "audit"];

/// The commands, as they are spelt on the wire and on netevctl's command
/// line.
pub const COMMANDS: [&str; 15] = [
    "status",
    "interfaces",
    "interface",
    "routes",
    "rules",
    "events",
    "history",
    "hooks",
    "filters",
    "reload",
    "test",
    "subscribe",
    "validate",
    "metrics",
    "audit",
];

/// The kinds of event.
pub const KINDS: [&str; 6] = ["startup", "state", "removed", "routes", "test", "lease"];

/// Every hook directory netevd runs, and so the ones a `test` may run:
/// the kernel's states and `routes`, then the network managers' own
/// (systemd-networkd's OperationalState and AdministrativeState,
/// NetworkManager's device states, networkd's `manager`).
pub const STATES: [&str; 29] = [
    "off",
    "no-carrier",
    "dormant",
    "carrier",
    "degraded",
    "routable",
    "routes",
    "configured",
    "configuring",
    "activated",
    "disconnected",
    "manager",
    "degraded-carrier",
    "enslaved",
    "missing",
    "pending",
    "initialized",
    "unmanaged",
    "failed",
    "linger",
    "unknown",
    "unavailable",
    "prepare",
    "config",
    "need-auth",
    "ip-config",
    "ip-check",
    "secondaries",
    "deactivating",
];

fn bad(msg: impl Into<String>) -> Error {
    Error::new(Code::BadRequest, msg)
}

/// Reads the arguments of one request, refusing any it does not know.
struct Args<'a> {
    command: &'a str,
    obj: &'a Map<String, Value>,
    used: Vec<&'static str>,
}

impl<'a> Args<'a> {
    fn get(&mut self, k: &'static str) -> Option<&'a Value> {
        self.used.push(k);
        self.obj.get(k).filter(|v| !v.is_null())
    }

    fn string(&mut self, k: &'static str) -> Result<Option<String>, Error> {
        match self.get(k) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(bad(format!("{}: {k}: expected a string", self.command))),
        }
    }

    fn uint(&mut self, k: &'static str, max: u64) -> Result<Option<u64>, Error> {
        match self.get(k) {
            None => Ok(None),
            Some(v) => match v.as_u64() {
                Some(n) if n <= max => Ok(Some(n)),
                _ => Err(bad(format!(
                    "{}: {k}: expected a whole number up to {max}",
                    self.command
                ))),
            },
        }
    }

    fn bool(&mut self, k: &'static str) -> Result<bool, Error> {
        match self.get(k) {
            None => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(_) => Err(bad(format!(
                "{}: {k}: expected true or false",
                self.command
            ))),
        }
    }

    fn link(&mut self, k: &'static str) -> Result<Option<LinkRef>, Error> {
        let command = self.command;
        self.get(k)
            .map(|v| LinkRef::from_value(v, &format!("{command}: {k}")))
            .transpose()
    }

    fn filter(&mut self) -> Result<EventFilter, Error> {
        let command = self.command;
        let one_of = |v: Option<String>, what: &str, all: &[&str]| match v {
            Some(x) if !all.contains(&x.as_str()) => Err(bad(format!(
                "{command}: {what}: {x:?} is not one of {}",
                all.join(", ")
            ))),
            v => Ok(v),
        };
        Ok(EventFilter {
            link: self.link("link")?,
            kind: one_of(self.string("kind")?, "kind", &KINDS)?,
            state: one_of(self.string("state")?, "state", &STATES)?,
            condition: match self.string("where")? {
                Some(w) if w.trim().is_empty() => {
                    return Err(bad(format!("{command}: where: an empty condition")))
                }
                w => w,
            },
        })
    }

    /// Refuses arguments nobody asked for: a typo must not be ignored.
    fn finish(self) -> Result<(), Error> {
        for k in self.obj.keys() {
            if k != "command" && k != "id" && !self.used.contains(&k.as_str()) {
                return Err(bad(format!("{}: unknown argument {k:?}", self.command)));
            }
        }
        Ok(())
    }
}

/// One parsed request line: the client's `id` (echoed in the reply) and
/// the request, or the error to answer with.
pub struct Parsed {
    pub id: Value,
    pub request: Result<Request, Error>,
}

/// Parses one request line (without its newline).
pub fn parse_request(line: &[u8]) -> Parsed {
    let v: Value = match serde_json::from_slice(line) {
        Ok(v) => v,
        Err(e) => {
            return Parsed {
                id: Value::Null,
                request: Err(bad(format!("not JSON: {e}"))),
            }
        }
    };
    let Value::Object(obj) = &v else {
        return Parsed {
            id: Value::Null,
            request: Err(bad("a request is a JSON object")),
        };
    };
    let id = obj.get("id").cloned().unwrap_or(Value::Null);
    // A number that is not a 64-bit integer would come back changed (an
    // integer beyond 64 bits as a float): refuse it rather than echo
    // something else.
    if let Value::Number(n) = &id {
        if !n.is_i64() && !n.is_u64() {
            return Parsed {
                id: Value::Null,
                request: Err(bad(
                    "id: a number must be a whole number of at most 64 bits; use a string",
                )),
            };
        }
    }
    Parsed {
        id,
        request: request_of(obj),
    }
}

fn request_of(obj: &Map<String, Value>) -> Result<Request, Error> {
    let command = match obj.get("command") {
        Some(Value::String(c)) => c.as_str(),
        Some(_) => return Err(bad("command: expected a string")),
        None => return Err(bad("missing \"command\"")),
    };
    let mut a = Args {
        command,
        obj,
        used: Vec::new(),
    };
    let r = match command {
        "status" => Request::Status,
        "interfaces" => Request::Interfaces,
        "interface" => Request::Interface(
            a.link("link")?
                .ok_or_else(|| bad("interface: missing \"link\" (a name or an index)"))?,
        ),
        "routes" => Request::Routes {
            table: a.uint("table", u32::MAX as u64)?.map(|t| t as u32),
            link: a.link("link")?,
            family: match a.string("family")? {
                None => None,
                Some(f) if f == "inet" || f == "inet6" => Some(f),
                Some(f) => {
                    return Err(bad(format!(
                        "routes: family: expected inet or inet6, not {f:?}"
                    )))
                }
            },
        },
        "rules" => Request::Rules {
            all: a.bool("all")?,
        },
        "events" => Request::Events {
            limit: a.uint("limit", 1 << 20)?.map(|n| n as usize),
            since: a.uint("since", u64::MAX)?,
            filter: a.filter()?,
        },
        "history" => Request::History {
            limit: a.uint("limit", 1 << 20)?.map(|n| n as usize),
            link: a.link("link")?,
        },
        "hooks" => Request::Hooks,
        "filters" => Request::Filters,
        "reload" => Request::Reload,
        "test" => {
            let state = a
                .string("state")?
                .ok_or_else(|| bad("test: missing \"state\""))?;
            if !STATES.contains(&state.as_str()) {
                return Err(bad(format!(
                    "test: state: {state:?} is not one of {}",
                    STATES.join(", ")
                )));
            }
            Request::Test {
                state,
                link: a
                    .link("link")?
                    .ok_or_else(|| bad("test: missing \"link\""))?,
                dry_run: a.bool("dry_run")?,
            }
        }
        "subscribe" => Request::Subscribe(a.filter()?),
        "metrics" => Request::Metrics,
        "audit" => {
            let kind = a.string("kind")?;
            if let Some(k) = kind.as_deref().filter(|k| !AUDIT_KINDS.contains(k)) {
                return Err(bad(format!(
                    "audit: kind: {k:?} is not one of {}",
                    AUDIT_KINDS.join(", ")
                )));
            }
            let q = AuditQuery {
                since_ms: a.uint("since_ms", u64::MAX)?,
                until_ms: a.uint("until_ms", u64::MAX)?,
                kind,
                link: a.link("link")?,
                limit: a.uint("limit", 1 << 20)?.map(|n| n as usize),
            };
            if let (Some(s), Some(u)) = (q.since_ms, q.until_ms) {
                if s > u {
                    return Err(bad("audit: since_ms is after until_ms"));
                }
            }
            Request::Audit(q)
        }
        other => {
            return Err(Error::new(
                Code::UnknownCommand,
                format!("unknown command {other:?}"),
            ))
        }
    };
    a.finish()?;
    Ok(r)
}

impl Request {
    /// Whether this request changes the daemon, and so needs a privileged
    /// peer (root or the socket's group).
    pub fn privileged(&self) -> bool {
        matches!(
            self,
            Request::Reload | Request::Test { .. } | Request::Audit(_)
        )
    }

    /// The command's wire name.
    pub fn command(&self) -> &'static str {
        match self {
            Request::Status => "status",
            Request::Interfaces => "interfaces",
            Request::Interface(_) => "interface",
            Request::Routes { .. } => "routes",
            Request::Rules { .. } => "rules",
            Request::Events { .. } => "events",
            Request::History { .. } => "history",
            Request::Hooks => "hooks",
            Request::Filters => "filters",
            Request::Reload => "reload",
            Request::Test { .. } => "test",
            Request::Subscribe(_) => "subscribe",
            Request::Metrics => "metrics",
            Request::Audit(_) => "audit",
        }
    }

    /// The request as one JSON line (without the newline).
    pub fn to_line(&self) -> String {
        let mut m = Map::new();
        let mut put = |k: &str, v: Value| {
            m.insert(k.to_string(), v);
        };
        let filter = |put: &mut dyn FnMut(&str, Value), f: &EventFilter| {
            if let Some(l) = &f.link {
                put("link", l.to_value());
            }
            if let Some(k) = &f.kind {
                put("kind", Value::from(k.as_str()));
            }
            if let Some(s) = &f.state {
                put("state", Value::from(s.as_str()));
            }
            if let Some(w) = &f.condition {
                put("where", Value::from(w.as_str()));
            }
        };
        let command = match self {
            Request::Status => "status",
            Request::Interfaces => "interfaces",
            Request::Interface(l) => {
                put("link", l.to_value());
                "interface"
            }
            Request::Routes {
                table,
                link,
                family,
            } => {
                if let Some(t) = table {
                    put("table", Value::from(*t));
                }
                if let Some(l) = link {
                    put("link", l.to_value());
                }
                if let Some(f) = family {
                    put("family", Value::from(f.as_str()));
                }
                "routes"
            }
            Request::Rules { all } => {
                put("all", Value::from(*all));
                "rules"
            }
            Request::Events {
                limit,
                since,
                filter: f,
            } => {
                if let Some(n) = limit {
                    put("limit", Value::from(*n));
                }
                if let Some(s) = since {
                    put("since", Value::from(*s));
                }
                filter(&mut put, f);
                "events"
            }
            Request::History { limit, link } => {
                if let Some(n) = limit {
                    put("limit", Value::from(*n));
                }
                if let Some(l) = link {
                    put("link", l.to_value());
                }
                "history"
            }
            Request::Hooks => "hooks",
            Request::Filters => "filters",
            Request::Reload => "reload",
            Request::Test {
                state,
                link,
                dry_run,
            } => {
                put("state", Value::from(state.as_str()));
                put("link", link.to_value());
                put("dry_run", Value::from(*dry_run));
                "test"
            }
            Request::Subscribe(f) => {
                filter(&mut put, f);
                "subscribe"
            }
            Request::Metrics => "metrics",
            Request::Audit(q) => {
                if let Some(v) = q.since_ms {
                    put("since_ms", Value::from(v));
                }
                if let Some(v) = q.until_ms {
                    put("until_ms", Value::from(v));
                }
                if let Some(k) = &q.kind {
                    put("kind", Value::from(k.as_str()));
                }
                if let Some(l) = &q.link {
                    put("link", l.to_value());
                }
                if let Some(n) = q.limit {
                    put("limit", Value::from(n));
                }
                "audit"
            }
        };
        m.insert("command".into(), Value::from(command));
        Value::Object(m).to_string()
    }
}

/// An `ok` reply line.
pub fn ok_line(id: &Value, body: &Value) -> String {
    format!(
        "{{\"v\":{VERSION},\"id\":{id},\"ok\":{body}}}\n",
        id = id,
        body = body
    )
}

/// An `error` reply line.
pub fn error_line(id: &Value, e: &Error) -> String {
    let body = serde_json::json!({"code": e.code.as_str(), "message": e.message});
    format!("{{\"v\":{VERSION},\"id\":{id},\"error\":{body}}}\n")
}

/// An event line of a subscription, around the event's JSON as the daemon
/// serialised it once.
pub fn event_line(event_json: &str) -> String {
    format!("{{\"v\":{VERSION},\"event\":{event_json}}}\n")
}

/// The last line a dropped subscriber gets.
pub fn dropped_line(reason: &str) -> String {
    let body = serde_json::json!({ "reason": reason });
    format!("{{\"v\":{VERSION},\"dropped\":{body}}}\n")
}

/// What one line from the daemon is.
#[derive(Debug, PartialEq)]
pub enum Reply {
    Ok(Value),
    Error { code: String, message: String },
    Event(Value),
    Dropped(String),
}

/// Reads one line from the daemon; an `Err` says what is wrong with it.
pub fn parse_reply(line: &str) -> Result<Reply, String> {
    let v: Value =
        serde_json::from_str(line).map_err(|e| format!("the daemon's reply is not JSON: {e}"))?;
    let Value::Object(mut m) = v else {
        return Err("the daemon's reply is not a JSON object".into());
    };
    if let Some(ok) = m.remove("ok") {
        return Ok(Reply::Ok(ok));
    }
    if let Some(ev) = m.remove("event") {
        return Ok(Reply::Event(ev));
    }
    if let Some(e) = m.remove("error") {
        let s = |k: &str| e.get(k).and_then(Value::as_str).map(str::to_string);
        return match (s("code"), s("message")) {
            (Some(code), Some(message)) => Ok(Reply::Error { code, message }),
            _ => Err("the daemon's error reply has no code or message".into()),
        };
    }
    if let Some(d) = m.remove("dropped") {
        let reason = d
            .get("reason")
            .and_then(Value::as_str)
            .unwrap_or("no reason given");
        return Ok(Reply::Dropped(reason.to_string()));
    }
    Err("the daemon's reply has neither ok, error, event nor dropped".into())
}

/// One reply body of `status`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Status {
    pub version: String,
    pub pid: u32,
    pub uptime_seconds: u64,
    pub backend: String,
    /// The system bus, when the backend uses it: `up; systemd-networkd
    /// :1.3`, `down (why), reconnecting`, `connecting`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bus: Option<String>,
    pub config: String,
    /// FNV-1a of the configuration in force as parsed, as 16 hex digits.
    pub config_hash: String,
    pub synced: bool,
    pub links: usize,
    pub routes: usize,
    pub rules: usize,
    pub subscribers: usize,
    pub clients: usize,
    pub counters: Counters,
    pub last_event: Option<Value>,
}

/// Everything the daemon counts since it started.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Counters {
    pub events: u64,
    pub coalesced: u64,
    pub hooks_started: u64,
    pub hooks_failed: u64,
    pub hooks_timed_out: u64,
    pub hooks_not_started: u64,
    pub hook_starts_retried: u64,
    pub hook_lines_dropped: u64,
    pub netlink_messages: u64,
    pub netlink_undecodable: u64,
    pub netlink_overruns: u64,
    pub resyncs_started: u64,
    pub resyncs_completed: u64,
    /// The netlink receive buffer as the kernel reports it now, in bytes:
    /// it grows after overruns.
    #[serde(default)]
    pub netlink_receive_buffer: u64,
    pub policy_requests: u64,
    pub policy_refused: u64,
    pub policy_restored: u64,
    pub control_requests: u64,
    pub control_errors: u64,
    pub subscribers_dropped: u64,
}

/// Parses the command line; `--help` exits 0, bad flags exit 2 (argh's
/// own `from_env` exits 1, which means something else for both
/// programs). The help is written without `print!`, which panics on a
/// full disk: a closed pipe (`--help | head -1`) still exits 0, another
/// write error exits 1.
pub fn parse_args<T: argh::FromArgs>(default_name: &str) -> Result<T, ExitCode> {
    use std::io::Write;
    let all: Vec<String> = std::env::args().collect();
    let strs: Vec<&str> = all.iter().map(String::as_str).collect();
    let name = strs
        .first()
        .map(|p| p.rsplit('/').next().unwrap_or(p))
        .unwrap_or(default_name);
    T::from_args(&[name], strs.get(1..).unwrap_or(&[])).map_err(|e| {
        if e.status.is_ok() {
            let mut o = std::io::stdout().lock();
            match o.write_all(e.output.as_bytes()).and_then(|()| o.flush()) {
                Err(err) if err.kind() != std::io::ErrorKind::BrokenPipe => {
                    let _ = writeln!(std::io::stderr(), "{name}: standard output: {err}");
                    ExitCode::from(1)
                }
                _ => ExitCode::SUCCESS,
            }
        } else {
            let _ = writeln!(std::io::stderr(), "{}", e.output.trim_end());
            ExitCode::from(2)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(s: &str) -> Result<Request, Error> {
        parse_request(s.as_bytes()).request
    }

    #[test]
    fn every_request_round_trips() {
        let all = vec![
            Request::Status,
            Request::Interfaces,
            Request::Interface(LinkRef::Name("eth0".into())),
            Request::Interface(LinkRef::Index(3)),
            Request::Routes {
                table: Some(254),
                link: Some(LinkRef::Name("wan".into())),
                family: Some("inet6".into()),
            },
            Request::Rules { all: true },
            Request::Events {
                limit: Some(5),
                since: Some(9),
                filter: EventFilter {
                    link: Some(LinkRef::Index(2)),
                    kind: Some("state".into()),
                    state: Some("routable".into()),
                    condition: Some("has_gateway && kind == \"wireguard\"".into()),
                },
            },
            Request::History {
                limit: None,
                link: None,
            },
            Request::Hooks,
            Request::Filters,
            Request::Reload,
            Request::Test {
                state: "routable".into(),
                link: LinkRef::Name("eth0".into()),
                dry_run: true,
            },
            Request::Subscribe(EventFilter::default()),
            Request::Metrics,
            Request::Audit(AuditQuery::default()),
            Request::Audit(AuditQuery {
                since_ms: Some(1),
                until_ms: Some(2),
                kind: Some("hook".into()),
                link: Some(LinkRef::Name("eth0".into())),
                limit: Some(7),
            }),
        ];
        for r in all {
            let line = r.to_line();
            let back = req(&line).unwrap();
            assert_eq!(back, r, "{line}");
            assert!(line.contains(&format!("\"command\":\"{}\"", r.command())));
            assert!(COMMANDS.contains(&r.command()));
        }
    }

    #[test]
    fn audit_requests_are_checked() {
        assert!(Request::Audit(AuditQuery::default()).privileged());
        assert!(!Request::Metrics.privileged());
        let e = req(r#"{"command":"audit","kind":"hooks"}"#).unwrap_err();
        assert!(
            e.message.contains("\"hooks\" is not one of state, hook"),
            "{e}"
        );
        let e = req(r#"{"command":"audit","since_ms":5,"until_ms":4}"#).unwrap_err();
        assert!(e.message.contains("since_ms is after until_ms"), "{e}");
        let e = req(r#"{"command":"metrics","x":1}"#).unwrap_err();
        assert!(e.message.contains("unknown argument"), "{e}");
    }

    #[test]
    fn errors_name_what_is_wrong() {
        let cases = [
            ("", Code::BadRequest, "not JSON"),
            ("[1]", Code::BadRequest, "object"),
            ("{}", Code::BadRequest, "missing \"command\""),
            ("{\"command\":1}", Code::BadRequest, "command"),
            ("{\"command\":\"nope\"}", Code::UnknownCommand, "nope"),
            (
                "{\"command\":\"status\",\"verbose\":true}",
                Code::BadRequest,
                "unknown argument \"verbose\"",
            ),
            ("{\"command\":\"interface\"}", Code::BadRequest, "link"),
            (
                "{\"command\":\"routes\",\"family\":\"ipx\"}",
                Code::BadRequest,
                "ipx",
            ),
            (
                "{\"command\":\"routes\",\"table\":-1}",
                Code::BadRequest,
                "table",
            ),
            (
                "{\"command\":\"test\",\"state\":\"up\",\"link\":\"x\"}",
                Code::BadRequest,
                "\"up\"",
            ),
            (
                "{\"command\":\"rules\",\"all\":\"yes\"}",
                Code::BadRequest,
                "all",
            ),
            (
                "{\"command\":\"events\",\"kind\":\"bogus\"}",
                Code::BadRequest,
                "\"bogus\" is not one of startup",
            ),
            (
                "{\"command\":\"subscribe\",\"state\":\"up\"}",
                Code::BadRequest,
                "\"up\" is not one of",
            ),
            (
                "{\"command\":\"subscribe\",\"where\":\" \"}",
                Code::BadRequest,
                "subscribe: where: an empty condition",
            ),
            (
                "{\"command\":\"events\",\"where\":5}",
                Code::BadRequest,
                "events: where: expected a string",
            ),
        ];
        for (line, code, needle) in cases {
            let e = req(line).unwrap_err();
            assert_eq!(e.code, code, "{line}");
            assert!(e.message.contains(needle), "{line}: {}", e.message);
        }
    }

    #[test]
    fn id_is_echoed_even_on_error() {
        let p = parse_request(br#"{"id":"a1","command":"nope"}"#);
        assert_eq!(p.id, Value::from("a1"));
        let line = error_line(&p.id, &p.request.unwrap_err());
        match parse_reply(line.trim_end()).unwrap() {
            Reply::Error { code, message } => {
                assert_eq!(code, "unknown_command");
                assert!(message.contains("nope"));
            }
            r => panic!("{r:?}"),
        }
    }

    #[test]
    fn reply_lines_parse() {
        let ok = ok_line(&Value::Null, &serde_json::json!({"a": 1}));
        assert!(ok.ends_with('\n'));
        assert_eq!(
            parse_reply(ok.trim_end()).unwrap(),
            Reply::Ok(serde_json::json!({"a": 1}))
        );
        let ev = event_line("{\"id\":4}");
        assert_eq!(
            parse_reply(ev.trim_end()).unwrap(),
            Reply::Event(serde_json::json!({"id": 4}))
        );
        assert_eq!(
            parse_reply(dropped_line("slow").trim_end()).unwrap(),
            Reply::Dropped("slow".into())
        );
        assert!(parse_reply("garbage").is_err());
        assert!(parse_reply("{}").is_err());
        assert!(parse_reply("{\"error\":{}}").is_err());
    }

    #[test]
    fn link_refs() {
        assert_eq!(LinkRef::parse("12"), LinkRef::Index(12));
        assert_eq!(LinkRef::parse("eth0"), LinkRef::Name("eth0".into()));
        // A name may be all digits with a leading zero.
        assert_eq!(LinkRef::parse("012"), LinkRef::Name("012".into()));
        let f = EventFilter {
            link: Some(LinkRef::Name("wan".into())),
            kind: None,
            state: Some("routable".into()),
            condition: None,
        };
        assert!(f.matches("wan", 3, "state", "routable"));
        assert!(!f.matches("wan", 3, "state", "carrier"));
        assert!(!f.matches("lan", 3, "state", "routable"));
    }

    /// A stable stand-in for cargo-fuzz (no nightly toolchain here): the
    /// parser is fed a corpus of valid lines, their mutations and random
    /// bytes for a bounded time, and must answer every one without
    /// panicking; a line that parses must say the same thing when written
    /// back.
    #[test]
    fn fuzz_request_parser() {
        let corpus: Vec<Vec<u8>> = [
            r#"{"command":"status"}"#,
            r#"{"command":"interface","link":"eth0","id":7}"#,
            r#"{"command":"routes","table":254,"family":"inet6","link":3}"#,
            r#"{"command":"events","limit":10,"since":4,"kind":"state","state":"routable"}"#,
            r#"{"command":"test","state":"routable","link":"wan","dry_run":true}"#,
            r#"{"command":"subscribe","link":"x"}"#,
            r#"{"command":"subscribe","where":"mtu > 1 && !has_gateway"}"#,
            r#"{"command":"filters"}"#,
            r#"{"command":"rules","all":false}"#,
            r#"{"command":"history","limit":1}"#,
            r#"{"command":"metrics"}"#,
            r#"{"command":"audit","since_ms":1,"until_ms":9,"kind":"hook","link":"eth0","limit":5}"#,
        ]
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut rnd = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let alphabet = br#"{}[]":,0123456789-.eE truefalsnl\u"#;
        let end = std::time::Instant::now() + std::time::Duration::from_millis(1500);
        let mut n = 0u64;
        while std::time::Instant::now() < end {
            let mut line = corpus[(rnd() % corpus.len() as u64) as usize].clone();
            match rnd() % 4 {
                0 => {
                    let len = (rnd() % 64) as usize;
                    line = (0..len).map(|_| rnd() as u8).collect();
                }
                1 => {
                    for _ in 0..1 + rnd() % 4 {
                        let i = (rnd() % (line.len() as u64 + 1)) as usize;
                        let c = alphabet[(rnd() % alphabet.len() as u64) as usize];
                        line.insert(i, c);
                    }
                }
                2 => {
                    for _ in 0..1 + rnd() % 4 {
                        if !line.is_empty() {
                            let i = (rnd() % line.len() as u64) as usize;
                            line[i] = rnd() as u8;
                        }
                    }
                }
                _ => {
                    let cut = (rnd() % (line.len() as u64 + 1)) as usize;
                    line.truncate(cut);
                }
            }
            let p = parse_request(&line);
            if let Ok(r) = p.request {
                assert_eq!(req(&r.to_line()).as_ref(), Ok(&r), "{line:?}");
            }
            n += 1;
        }
        assert!(n > 1000, "only {n} inputs in the time given");
    }
}
