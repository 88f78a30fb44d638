//! Answers control requests inside the loop: queries borrow the core's
//! state (no locks, no copies of the model), actions (reload, test) run
//! through the same paths as SIGHUP and kernel events.

use std::os::unix::ffi::OsStrExt;
use std::time::Instant;

use netevd_ctl::{
    error_line, ok_line, parse_request, Code, Error, LinkRef, Request, Status, STATES,
};
use serde_json::{Map, Value};

use super::{now_ms, Daemon};
use crate::config::Config;
use std::rc::Rc;

use crate::core::event::{environment, Event, RunInfo};
use crate::core::filter::{Action, Subscription};
use crate::core::query::{self, obj};
use crate::effect::{audit, hooks};
use crate::source::control::Line;

/// Largest `limit` honoured for events and history; larger asks get this.
const MAX_LIMIT: usize = 100_000;

/// FNV-1a, for a short fingerprint of the configuration in force.
fn fnv1a(b: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &x in b {
        h ^= x as u64;
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    h
}

/// A fingerprint of the configuration as parsed: it changes when a
/// setting does, not with comments or layout.
pub fn config_hash(c: &Config) -> u64 {
    fnv1a(format!("{c:?}").as_bytes())
}

/// What a reload changes, in words, for the reply and the log.
pub fn config_changes(old: &Config, new: &Config) -> Vec<String> {
    let mut v = Vec::new();
    let names =
        |c: &Config| -> Vec<String> { c.policy.ifaces.iter().map(|i| i.name.clone()).collect() };
    let (a, b) = (names(old), names(new));
    for n in b.iter().filter(|n| !a.contains(n)) {
        v.push(format!("policy routing added for {n}"));
    }
    for n in a.iter().filter(|n| !b.contains(n)) {
        v.push(format!("policy routing removed from {n}"));
    }
    if old.policy != new.policy && v.is_empty() {
        v.push("policy routing settings changed".into());
    }
    if old.interfaces != new.interfaces {
        v.push(format!(
            "monitored interfaces: {:?} -> {:?}",
            old.interfaces, new.interfaces
        ));
    }
    if old.script_dir != new.script_dir {
        v.push(format!(
            "script_dir: {} -> {}",
            old.script_dir.display(),
            new.script_dir.display()
        ));
    }
    if old.hook_user != new.hook_user {
        let u = |c: &Config| c.hook_user.clone().unwrap_or_else(|| "root".into());
        v.push(format!("hooks run as {} -> {}", u(old), u(new)));
    }
    if old.timeout != new.timeout {
        v.push(format!(
            "hook timeout: {} s -> {} s",
            old.timeout.as_secs(),
            new.timeout.as_secs()
        ));
    }
    if old.watch_config != new.watch_config {
        v.push(format!(
            "watch_config: {} -> {}",
            old.watch_config, new.watch_config
        ));
    }
    if old.max_parallel != new.max_parallel {
        v.push(format!(
            "max_parallel: {} -> {}",
            old.max_parallel, new.max_parallel
        ));
    }
    if old.run_on_startup != new.run_on_startup {
        v.push(format!(
            "run_on_startup: {} -> {} (applies at the next start)",
            old.run_on_startup, new.run_on_startup
        ));
    }
    if old.log_level != new.log_level {
        v.push(format!(
            "log level: {:?} -> {:?}",
            old.log_level, new.log_level
        ));
    }
    if old.control != new.control {
        v.push("control settings changed".into());
    }
    if old.filters != new.filters {
        let names = |c: &Config| {
            c.filters
                .iter()
                .map(|f| f.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        v.push(format!(
            "filters: [{}] -> [{}] (from the next event)",
            names(old),
            names(new)
        ));
    }
    if old.netlink_rcvbuf != new.netlink_rcvbuf {
        v.push("netlink_receive_buffer changed (applies at the next start)".into());
    }
    if old.metrics != new.metrics {
        v.push("metrics settings changed".into());
    }
    if old.audit.enabled != new.audit.enabled {
        v.push(format!(
            "audit log {}",
            if new.audit.enabled { "on" } else { "off" }
        ));
    }
    if old.audit.path != new.audit.path {
        v.push(format!(
            "audit.path: {} -> {}",
            old.audit.path.display(),
            new.audit.path.display()
        ));
    }
    if (old.audit.max_size, old.audit.keep, old.audit.retention_days)
        != (new.audit.max_size, new.audit.keep, new.audit.retention_days)
    {
        v.push("audit rotation settings changed".into());
    }
    v
}

fn limit(n: Option<usize>) -> usize {
    n.unwrap_or(MAX_LIMIT).min(MAX_LIMIT)
}

impl Daemon {
    /// Answers one request line; a subscription turns the connection into
    /// an event stream.
    pub(super) fn answer(&mut self, line: Line) {
        self.input_at = Instant::now();
        let parsed = parse_request(&line.bytes);
        let command = parsed.request.as_ref().map_or("invalid", Request::command);
        self.metrics.control_request(command);
        let reply = match parsed.request {
            Err(e) => Err(e),
            Ok(r) if r.privileged() && !line.privileged => Err(Error::new(
                Code::PermissionDenied,
                format!(
                    "uid {} may query but not {}: run as root or join {}",
                    line.uid,
                    if matches!(r, Request::Audit(_)) {
                        "read the audit log"
                    } else {
                        "change netevd"
                    },
                    match &self.config.control.group {
                        Some(g) => format!("group {g:?}"),
                        None => "a group set as control.group".to_string(),
                    }
                ),
            )),
            Ok(Request::Subscribe(f)) => match Subscription::new(f) {
                Ok(s) => {
                    if let Some(c) = self.control.as_mut() {
                        c.subscribe(line.client, s);
                    }
                    Ok(obj(&mut [("subscribed", Value::from(true))]))
                }
                Err(e) => Err(Error::new(Code::BadRequest, format!("subscribe: {e}"))),
            },
            Ok(r) => self.query(r),
        };
        if let Some(l) = self.audit.line("control", now_ms()) {
            let l = l
                .num("uid", line.uid)
                .num("gid", line.gid)
                .num("pid", line.pid)
                .str("command", command);
            match &reply {
                Ok(_) => l.str("result", "ok").end(),
                Err(e) => l
                    .str("result", e.code.as_str())
                    .str("message", &e.message)
                    .end(),
            }
        }
        let text = match &reply {
            Ok(body) => ok_line(&parsed.id, body),
            Err(e) => {
                if let Some(c) = self.control.as_mut() {
                    c.stats.errors += 1;
                }
                error_line(&parsed.id, e)
            }
        };
        if let Some(c) = self.control.as_mut() {
            c.send(line.client, &text, self.poll.registry(), Instant::now());
        }
    }

    fn link_index(&self, r: &LinkRef) -> Result<u32, Error> {
        query::find(&self.core, r)
            .map(|l| l.info.index)
            .ok_or_else(|| Error::new(Code::NotFound, format!("no interface {r}")))
    }

    pub(super) fn query(&mut self, r: Request) -> Result<Value, Error> {
        let plan = self.policy.plan();
        match r {
            Request::Status => Ok(self.status()),
            Request::Interfaces => Ok(query::interfaces(&self.core, plan)),
            Request::Interface(l) => {
                let link = query::find(&self.core, &l)
                    .ok_or_else(|| Error::new(Code::NotFound, format!("no interface {l}")))?;
                Ok(query::interface_detail(&self.core, plan, link))
            }
            Request::Routes {
                table,
                link,
                family,
            } => {
                let oif = link.map(|l| self.link_index(&l)).transpose()?;
                Ok(query::routes(&self.core, table, oif, family.as_deref()))
            }
            Request::Rules { all } => Ok(query::rules(&self.core, all)),
            Request::Events {
                limit: n,
                since,
                filter,
            } => {
                let sub = Subscription::new(filter)
                    .map_err(|e| Error::new(Code::BadRequest, format!("events: {e}")))?;
                let core = &self.core;
                let pass =
                    |e: &&Rc<Event>| since.map_or(true, |s| e.id > s) && sub.matches(e, core);
                let json = |e: &Rc<Event>| {
                    serde_json::from_slice(e.json().as_bytes()).unwrap_or(Value::Null)
                };
                // With `since`, the next ones after it (a client pages
                // forward); without, the newest.
                let v: Vec<Value> = if since.is_some() {
                    self.history
                        .iter()
                        .filter(pass)
                        .take(limit(n))
                        .map(json)
                        .collect()
                } else {
                    let mut v: Vec<Value> = self
                        .history
                        .iter()
                        .rev()
                        .filter(pass)
                        .take(limit(n))
                        .map(json)
                        .collect();
                    v.reverse();
                    v
                };
                Ok(obj(&mut [("events", Value::from(v))]))
            }
            Request::History { limit: n, link } => {
                let index = link.map(|l| self.link_index(&l)).transpose()?;
                let mut v: Vec<Value> = self
                    .runner
                    .history()
                    .filter(|h| index.map_or(true, |i| h.index == i))
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .take(limit(n))
                    .map(|h| {
                        obj(&mut [
                            ("hook", Value::from(h.hook.as_str())),
                            ("link", Value::from(h.link.as_str())),
                            ("ifindex", Value::from(h.index)),
                            ("event_id", Value::from(h.event_id)),
                            ("state", Value::from(h.state)),
                            ("started_ms", Value::from(h.started_ms)),
                            ("duration_ms", Value::from(h.duration_ms)),
                            ("exit_code", Value::from(h.exit_code)),
                            ("signal", Value::from(h.signal)),
                            ("timed_out", Value::from(h.timed_out)),
                            (
                                "output",
                                h.output.iter().map(String::as_str).collect::<Value>(),
                            ),
                        ])
                    })
                    .collect();
                v.reverse();
                Ok(obj(&mut [("runs", Value::from(v))]))
            }
            Request::Hooks => {
                let root = &self.config.script_dir;
                let dirs: Vec<Value> = STATES
                    .iter()
                    .map(|s| {
                        let path = root.join(format!("{s}.d"));
                        let i = hooks::inspect(&path);
                        obj(&mut [
                            ("state", Value::from(*s)),
                            ("path", Value::from(path.display().to_string())),
                            ("exists", Value::from(i.exists)),
                            ("hooks", Value::from(i.hooks)),
                            (
                                "skipped",
                                Value::from(
                                    i.skipped
                                        .iter()
                                        .map(|(n, r)| {
                                            obj(&mut [
                                                ("name", Value::from(n.as_str())),
                                                ("reason", Value::from(*r)),
                                            ])
                                        })
                                        .collect::<Vec<_>>(),
                                ),
                            ),
                        ])
                    })
                    .collect();
                Ok(obj(&mut [
                    ("script_dir", Value::from(root.display().to_string())),
                    ("directories", Value::from(dirs)),
                ]))
            }
            Request::Filters => Ok(self.filters_list()),
            Request::Reload => match self.reload("control") {
                Ok(changes) => {
                    log::info!(
                        "reloaded {} on request: {}",
                        self.opts.config_path.display(),
                        if changes.is_empty() {
                            "nothing changed".to_string()
                        } else {
                            changes.join("; ")
                        }
                    );
                    Ok(obj(&mut [
                        ("reloaded", Value::from(true)),
                        ("changes", Value::from(changes)),
                    ]))
                }
                Err(e) => {
                    log::error!("reload refused: {e}; keeping the current configuration");
                    Err(Error::new(
                        Code::InvalidConfig,
                        format!("{e}; the running configuration is kept"),
                    ))
                }
            },
            Request::Test {
                state,
                link,
                dry_run,
            } => self.test(&state, &link, dry_run),
            Request::Subscribe(_) => unreachable!("answered by the caller"),
            Request::Metrics => {
                if !self.metrics.settings().enabled {
                    return Err(Error::new(
                        Code::Unavailable,
                        if cfg!(feature = "metrics") {
                            "metrics are off (metrics.enabled: false)"
                        } else {
                            "this netevd was built without the metrics exposition (cargo \
                             feature metrics)"
                        },
                    ));
                }
                let text = self.metrics_text(Instant::now());
                Ok(obj(&mut [
                    ("format", Value::from("prometheus-text-0.0.4")),
                    ("text", Value::from(text)),
                ]))
            }
            Request::Audit(q) => {
                if !self.audit.enabled() {
                    return Err(Error::new(
                        Code::Unavailable,
                        if cfg!(feature = "audit") {
                            "the audit log is off (audit.enabled: false)"
                        } else {
                            "this netevd was built without the audit log (cargo feature audit)"
                        },
                    ));
                }
                let a = self.audit.query(&audit::Query {
                    since_ms: q.since_ms,
                    until_ms: q.until_ms,
                    kind: q.kind,
                    link: q.link,
                    limit: q.limit.unwrap_or(100),
                });
                Ok(obj(&mut [
                    ("path", Value::from(self.audit.path().display().to_string())),
                    ("lines", Value::from(a.lines)),
                    ("truncated", Value::from(a.truncated)),
                ]))
            }
        }
    }

    fn status(&self) -> Value {
        #[cfg(feature = "dbus")]
        let (backend, bus) = self.backend_status();
        #[cfg(not(feature = "dbus"))]
        let (backend, bus) = (self.config.backend.as_str().to_string(), None);
        let s = Status {
            version: env!("CARGO_PKG_VERSION").to_string(),
            pid: std::process::id(),
            uptime_seconds: self.started.elapsed().as_secs(),
            backend,
            bus,
            config: self.opts.config_path.display().to_string(),
            config_hash: format!("{:016x}", self.config_hash),
            synced: self.core.synced(),
            links: self.core.link_count(),
            routes: self.core.routes().len(),
            rules: self.core.rules().count(),
            subscribers: self.control.as_ref().map_or(0, |c| c.subscribers()),
            clients: self.control.as_ref().map_or(0, |c| c.clients()),
            counters: self.counters(),
            last_event: self
                .last_event
                .as_ref()
                .and_then(|e| serde_json::from_slice(e.json().as_bytes()).ok()),
        };
        serde_json::to_value(s).unwrap_or(Value::Null)
    }

    /// `filters`: each filter as configured, with its hit count.
    fn filters_list(&self) -> Value {
        let lossy =
            |b: &Option<Vec<u8>>| b.as_ref().map(|b| String::from_utf8_lossy(b).into_owned());
        let v: Vec<Value> = self
            .filters
            .iter()
            .map(|(f, hits)| {
                obj(&mut [
                    ("name", Value::from(f.name.as_str())),
                    ("action", Value::from(f.action.as_str())),
                    ("interface", Value::from(lossy(&f.interface))),
                    (
                        "interface_pattern",
                        Value::from(lossy(&f.interface_pattern)),
                    ),
                    (
                        "event_types",
                        Value::from(f.event_types.iter().map(|t| t.as_str()).collect::<Vec<_>>()),
                    ),
                    ("backend", Value::from(f.backend.as_deref())),
                    ("ip_family", Value::from(f.ip_family.map(|x| x.as_str()))),
                    (
                        "condition",
                        Value::from(f.condition.as_ref().map(|c| c.text.as_str())),
                    ),
                    ("scripts", Value::from(f.scripts.as_deref())),
                    ("hits", Value::from(hits)),
                ])
            })
            .collect();
        obj(&mut [
            ("filters", Value::from(v)),
            ("unmatched", Value::from(self.filters.unmatched)),
        ])
    }

    /// For `test --dry-run`: the filter that would decide `ev` and why,
    /// why each before it did not match, and the scripts it allows (None:
    /// all) or that nothing runs (Some of an empty list).
    fn explain_filters(&self, ev: &Event) -> (Value, Value, Option<Vec<String>>) {
        let mut not = Vec::new();
        for (f, _) in self.filters.iter() {
            match f.explain(ev, &self.core) {
                Err(why) => not.push(obj(&mut [
                    ("name", Value::from(f.name.as_str())),
                    ("why", Value::from(why)),
                ])),
                Ok(why) => {
                    let scripts = match f.action {
                        Action::Ignore => Some(Vec::new()),
                        _ => f.scripts.as_ref().map(|s| s.to_vec()),
                    };
                    let m = obj(&mut [
                        ("name", Value::from(f.name.as_str())),
                        ("action", Value::from(f.action.as_str())),
                        ("why", Value::from(why)),
                        ("scripts", Value::from(f.scripts.as_deref())),
                    ]);
                    return (m, Value::from(not), scripts);
                }
            }
        }
        (Value::Null, Value::from(not), None)
    }

    fn test(&mut self, state: &str, link: &LinkRef, dry_run: bool) -> Result<Value, Error> {
        let dir = STATES
            .iter()
            .copied()
            .find(|s| *s == state)
            .ok_or_else(|| Error::new(Code::BadRequest, format!("no hook directory {state:?}")))?;
        if !self.core.synced() {
            return Err(Error::new(
                Code::Unavailable,
                "the start-up dump is not over yet",
            ));
        }
        let index = self.link_index(link)?;
        let ev = self
            .core
            .test_event(index, dir, dry_run, now_ms())
            .ok_or_else(|| Error::new(Code::NotFound, format!("no interface {link}")))?;
        let ev = self.seal(ev);
        let path = self.config.script_dir.join(format!("{dir}.d"));
        let mut found = hooks::list(&path).map_err(|e| {
            Error::new(
                Code::Unavailable,
                format!("cannot list {}: {e}", path.display()),
            )
        })?;
        let name = ev.name_lossy();
        // What the filters will decide when the event is published; only
        // the hooks they let run are listed.
        let (matched, not_matched, scripts) = self.explain_filters(&ev);
        hooks::restrict(&mut found, scripts.as_deref());
        if dry_run {
            let run = RunInfo {
                previous: ev.previous,
                coalesced: 0,
            };
            let hooks: Vec<Value> = found
                .iter()
                .map(|p| {
                    let env: Map<String, Value> = environment(&ev, &run)
                        .into_iter()
                        .map(|(k, v)| {
                            (
                                k.to_string(),
                                Value::from(String::from_utf8_lossy(v.as_bytes()).into_owned()),
                            )
                        })
                        .collect();
                    obj(&mut [
                        ("path", Value::from(p.display().to_string())),
                        ("environment", Value::from(env)),
                        ("json", Value::from(ev.json())),
                    ])
                })
                .collect();
            return Ok(obj(&mut [
                ("event_id", Value::Null),
                ("state", Value::from(dir)),
                ("link", Value::from(name)),
                ("hooks", Value::from(hooks)),
                ("filter", matched),
                ("not_matched", not_matched),
            ]));
        }
        let names: Vec<String> = found.iter().map(|p| p.display().to_string()).collect();
        let id = ev.id;
        log::info!("test: running {dir}.d for {name} (event {id}) on request");
        self.publish(ev);
        Ok(obj(&mut [
            ("event_id", Value::from(id)),
            ("state", Value::from(dir)),
            ("link", Value::from(name)),
            ("hooks", Value::from(names)),
            ("filter", matched),
        ]))
    }
}
