//! How netevctl shows the daemon's `ok` bodies to people: aligned tables
//! and `key: value` lines. Pure: a JSON body in, text out; no I/O and no
//! clock, so every layout is unit-tested here.
//!
//! The bodies are read loosely on purpose: a field that is missing or of
//! another type shows as `-` instead of failing, because a newer daemon
//! may add or extend fields within a protocol version (see lib.rs) and an
//! older client should still print what it knows. Strings from the daemon
//! (interface names, hook output) can hold any bytes a user chose; control
//! characters are escaped so they cannot drive the terminal.

use std::fmt::Write as _;

use serde_json::{Map, Value};

/// What an absent or null field shows as.
const NONE: &str = "-";

/// A table: one header row, then rows of cells, columns separated by two
/// spaces and padded to the widest cell; the last column is not padded so
/// lines carry no trailing blanks.
pub struct Table {
    head: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(head: &[&'static str]) -> Table {
        Table {
            head: head.to_vec(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.head.len());
        self.rows.push(cells);
    }

    /// The table with every line prefixed by `indent`.
    pub fn render(&self, indent: &str) -> String {
        let width = |s: &str| s.chars().count();
        let mut w: Vec<usize> = self.head.iter().map(|h| width(h)).collect();
        for r in &self.rows {
            for (i, c) in r.iter().enumerate() {
                w[i] = w[i].max(width(c));
            }
        }
        let mut out = String::new();
        let mut line = |cells: &mut dyn Iterator<Item = &str>| {
            let mut l = String::from(indent);
            for (i, c) in cells.enumerate() {
                if i > 0 {
                    l.push_str("  ");
                }
                l.push_str(c);
                if i + 1 < w.len() {
                    l.extend(std::iter::repeat(' ').take(w[i] - width(c)));
                }
            }
            out.push_str(l.trim_end());
            out.push('\n');
        };
        line(&mut self.head.iter().copied());
        for r in &self.rows {
            line(&mut r.iter().map(String::as_str));
        }
        out
    }
}

/// Escapes control characters in text that goes to a terminal.
pub fn clean(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_string();
    }
    let mut o = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => o.push_str("\\n"),
            '\t' => o.push_str("\\t"),
            '\r' => o.push_str("\\r"),
            c if c.is_control() => {
                let _ = write!(o, "\\u{{{:x}}}", c as u32);
            }
            c => o.push(c),
        }
    }
    o
}

/// One JSON value as a table cell: strings as they are, null as `-`,
/// arrays joined by commas, objects as compact JSON.
pub fn cell(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => NONE.to_string(),
        Some(Value::String(s)) if s.is_empty() => NONE.to_string(),
        Some(Value::String(s)) => clean(s),
        Some(Value::Bool(b)) => if *b { "yes" } else { "no" }.to_string(),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Array(a)) if a.is_empty() => NONE.to_string(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| cell(Some(x)))
            .collect::<Vec<_>>()
            .join(","),
        Some(o @ Value::Object(_)) => clean(&o.to_string()),
    }
}

fn field(v: &Value, k: &str) -> String {
    cell(v.get(k))
}

fn list<'a>(v: &'a Value, k: &str) -> &'a [Value] {
    v.get(k)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// A number the daemon passes on from rtnetlink, shown by the name
/// `ip route` and `ip rule` give it; a number without one stays a number.
/// `--json` keeps the numbers.
fn named(v: Option<&Value>, name: fn(u64) -> Option<&'static str>) -> String {
    match v.and_then(Value::as_u64).and_then(name) {
        Some(n) => n.to_string(),
        None => cell(v),
    }
}

/// RTPROT_* (linux/rtnetlink.h), and netevd's own 148
/// (contrib/rt_protos.d/netevd.conf).
fn protocol_name(n: u64) -> Option<&'static str> {
    Some(match n {
        0 => "unspec",
        1 => "redirect",
        2 => "kernel",
        3 => "boot",
        4 => "static",
        9 => "ra",
        11 => "zebra",
        12 => "bird",
        16 => "dhcp",
        18 => "keepalived",
        42 => "babel",
        148 => "netevd",
        186 => "bgp",
        187 => "isis",
        188 => "ospf",
        189 => "rip",
        _ => return None,
    })
}

/// RT_SCOPE_* as /etc/iproute2/rt_scopes names them.
fn scope_name(n: u64) -> Option<&'static str> {
    Some(match n {
        0 => "global",
        200 => "site",
        253 => "link",
        254 => "host",
        255 => "nowhere",
        _ => return None,
    })
}

/// RTN_* route types.
fn type_name(n: u64) -> Option<&'static str> {
    Some(match n {
        1 => "unicast",
        2 => "local",
        3 => "broadcast",
        4 => "anycast",
        5 => "multicast",
        6 => "blackhole",
        7 => "unreachable",
        8 => "prohibit",
        9 => "throw",
        10 => "nat",
        _ => return None,
    })
}

/// FR_ACT_* rule actions (linux/fib_rules.h).
fn action_name(n: u64) -> Option<&'static str> {
    Some(match n {
        1 => "lookup",
        2 => "goto",
        3 => "nop",
        6 => "blackhole",
        7 => "unreachable",
        8 => "prohibit",
        _ => return None,
    })
}

/// Milliseconds since the Unix epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC:
/// the client has no time zone database and must not guess one).
pub fn time_ms(ms: u64) -> String {
    let secs = ms / 1000;
    let days = (secs / 86400) as i64;
    let rem = secs % 86400;
    // Howard Hinnant's civil_from_days, for days since 1970-01-01.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        ms % 1000
    )
}

fn time_cell(v: Option<&Value>) -> String {
    match v.and_then(Value::as_u64) {
        Some(ms) => time_ms(ms),
        None => cell(v),
    }
}

/// Seconds as `1d 2h 3m 4s`, leaving out leading zero units.
pub fn duration(secs: u64) -> String {
    let parts = [
        (secs / 86400, "d"),
        (secs / 3600 % 24, "h"),
        (secs / 60 % 60, "m"),
        (secs % 60, "s"),
    ];
    let mut out = Vec::new();
    for (n, u) in parts {
        if n > 0 || !out.is_empty() || u == "s" {
            out.push(format!("{n}{u}"));
        }
    }
    out.join(" ")
}

fn millis(v: Option<&Value>) -> String {
    match v.and_then(Value::as_u64) {
        Some(ms) if ms < 10_000 => format!("{ms} ms"),
        Some(ms) => format!("{:.1} s", ms as f64 / 1000.0),
        None => cell(v),
    }
}

/// `key: value` lines for the fields of an object: `order` first, then
/// any others the daemon sent, sorted, so nothing new is hidden. Nested
/// objects become indented blocks.
fn key_values(out: &mut String, obj: &Map<String, Value>, order: &[&str], indent: &str) {
    let rest = obj.keys().filter(|k| !order.contains(&k.as_str()));
    let keys: Vec<&str> = order
        .iter()
        .copied()
        .filter(|k| obj.contains_key(*k))
        .chain(rest.map(String::as_str))
        .collect();
    for k in keys {
        let v = &obj[k];
        match v {
            Value::Object(m) if !m.is_empty() => {
                let _ = writeln!(out, "{indent}{}:", clean(k));
                key_values(out, m, &[], &format!("{indent}  "));
            }
            _ => {
                let _ = writeln!(out, "{indent}{}: {}", clean(k), cell(Some(v)));
            }
        }
    }
}

/// `status`: `key: value` lines, counters indented under `counters:`.
pub fn status(body: &Value) -> String {
    let Some(obj) = body.as_object() else {
        return format!("{}\n", cell(Some(body)));
    };
    let mut obj = obj.clone();
    let mut out = String::new();
    // People read uptime and the last event better as text than as raw
    // numbers and a JSON object.
    if let Some(s) = obj.get("uptime_seconds").and_then(Value::as_u64) {
        obj.remove("uptime_seconds");
        obj.insert("uptime".into(), Value::from(duration(s)));
    }
    let last = obj.remove("last_event");
    let order = [
        "version",
        "pid",
        "uptime",
        "backend",
        "bus",
        "config",
        "config_hash",
        "synced",
        "links",
        "routes",
        "rules",
        "clients",
        "subscribers",
    ];
    let counters = obj.remove("counters");
    key_values(&mut out, &obj, &order, "");
    match last {
        Some(ev @ Value::Object(_)) => {
            let _ = writeln!(out, "last_event: {}", event_summary(&ev));
        }
        Some(v) => {
            let _ = writeln!(out, "last_event: {}", cell(Some(&v)));
        }
        None => {}
    }
    if let Some(Value::Object(c)) = counters {
        out.push_str("counters:\n");
        key_values(&mut out, &c, &[], "  ");
    }
    out
}

fn addresses(iface: &Value) -> String {
    let a: Vec<String> = list(iface, "addresses")
        .iter()
        .map(|a| match (a.get("address"), a.get("prefixlen")) {
            (Some(Value::String(ad)), Some(p)) if !p.is_null() => {
                format!("{}/{}", clean(ad), cell(Some(p)))
            }
            (ad, _) => cell(ad),
        })
        .collect();
    if a.is_empty() {
        NONE.to_string()
    } else {
        a.join(" ")
    }
}

/// `interfaces`: INDEX NAME STATE OPER MTU MAC ADDRESSES.
pub fn interfaces(body: &Value) -> String {
    let mut t = Table::new(&["INDEX", "NAME", "STATE", "OPER", "MTU", "MAC", "ADDRESSES"]);
    for i in list(body, "interfaces") {
        t.row(vec![
            field(i, "index"),
            field(i, "name"),
            field(i, "state"),
            field(i, "operstate"),
            field(i, "mtu"),
            field(i, "mac"),
            addresses(i),
        ]);
    }
    t.render("")
}

fn lifetime(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "forever".to_string(),
        Some(v) => match v.as_u64() {
            Some(s) => format!("{s}s"),
            None => cell(Some(v)),
        },
    }
}

/// `interface NAME`: its fields, then its addresses and routes as
/// indented tables.
pub fn interface(body: &Value) -> String {
    let i = body.get("interface").unwrap_or(&Value::Null);
    let Some(obj) = i.as_object() else {
        return format!("interface: {}\n", cell(Some(i)));
    };
    let mut out = String::new();
    let mut rest = obj.clone();
    let addrs = rest.remove("addresses");
    let routes_v = rest.remove("routes");
    let policy = rest.remove("policy");
    let order = [
        "name",
        "index",
        "kind",
        "state",
        "operstate",
        "mtu",
        "mac",
        "flags",
    ];
    key_values(&mut out, &rest, &order, "");
    match policy {
        Some(p @ Value::Object(_)) => {
            let _ = writeln!(out, "policy: table {}", field(&p, "table"));
            for r in list(&p, "rules") {
                let _ = writeln!(out, "  rule {}", cell(Some(r)));
            }
            for g in list(&p, "gateways") {
                let _ = writeln!(out, "  gateway {}", cell(Some(g)));
            }
        }
        _ => out.push_str("policy: -\n"),
    }
    let addrs = addrs.unwrap_or(Value::Null);
    let addrs = addrs.as_array().map_or(&[][..], Vec::as_slice);
    if addrs.is_empty() {
        out.push_str("addresses: -\n");
    } else {
        out.push_str("addresses:\n");
        let mut t = Table::new(&["ADDRESS", "FAMILY", "SCOPE", "VALID", "PREFERRED", "FLAGS"]);
        for a in addrs {
            let addr = match (a.get("address"), a.get("prefixlen")) {
                (Some(ad), Some(p)) if !p.is_null() => {
                    format!("{}/{}", cell(Some(ad)), cell(Some(p)))
                }
                (ad, _) => cell(ad),
            };
            t.row(vec![
                addr,
                field(a, "family"),
                field(a, "scope"),
                lifetime(a.get("valid_lft")),
                lifetime(a.get("preferred_lft")),
                field(a, "flags"),
            ]);
        }
        out.push_str(&t.render("  "));
    }
    let routes_v = routes_v.unwrap_or(Value::Null);
    let rs = routes_v.as_array().map_or(&[][..], Vec::as_slice);
    if rs.is_empty() {
        out.push_str("routes: -\n");
    } else {
        out.push_str("routes:\n");
        out.push_str(&route_table(rs, false).render("  "));
    }
    out
}

fn route_table(routes: &[Value], with_link: bool) -> Table {
    let mut head = vec!["FAMILY", "DST", "GATEWAY"];
    if with_link {
        head.push("LINK");
    }
    head.extend(["TABLE", "METRIC", "PROTOCOL", "SCOPE", "TYPE", "PREFSRC"]);
    let mut t = Table::new(&head);
    for r in routes {
        let mut row = vec![field(r, "family"), field(r, "dst"), field(r, "gateway")];
        if with_link {
            // A route to a link the daemon does not know by name still
            // has its index.
            row.push(match r.get("link") {
                Some(Value::String(s)) if !s.is_empty() => clean(s),
                _ => match r.get("ifindex") {
                    Some(i) if !i.is_null() => format!("#{}", cell(Some(i))),
                    _ => NONE.to_string(),
                },
            });
        }
        row.extend([
            field(r, "table"),
            field(r, "metric"),
            named(r.get("protocol"), protocol_name),
            named(r.get("scope"), scope_name),
            named(r.get("type"), type_name),
            field(r, "prefsrc"),
        ]);
        t.row(row);
    }
    t
}

/// `routes`: one row per route.
pub fn routes(body: &Value) -> String {
    route_table(list(body, "routes"), true).render("")
}

/// `rules`: one row per rule; OWN marks netevd's own.
pub fn rules(body: &Value) -> String {
    let mut t = Table::new(&[
        "PRIORITY", "FAMILY", "FROM", "TO", "IIF", "OIF", "FWMARK", "TABLE", "ACTION", "PROTOCOL",
        "OWN",
    ]);
    for r in list(body, "rules") {
        t.row(vec![
            field(r, "priority"),
            field(r, "family"),
            field(r, "from"),
            field(r, "to"),
            field(r, "iif"),
            field(r, "oif"),
            field(r, "fwmark"),
            field(r, "table"),
            named(r.get("action"), action_name),
            named(r.get("protocol"), protocol_name),
            field(r, "own"),
        ]);
    }
    t.render("")
}

/// What an event says beyond its link and state: the route for route
/// events, the addresses otherwise.
fn event_detail(ev: &Value) -> String {
    if let Some(r) = ev.get("route").filter(|r| r.is_object()) {
        let mut s = format!("{} {}", field(r, "action"), field(r, "dst"));
        if let Some(g) = r.get("gateway").filter(|g| !g.is_null()) {
            let _ = write!(s, " via {}", cell(Some(g)));
        }
        let _ = write!(s, " table {}", field(r, "table"));
        return s;
    }
    addresses(ev)
}

fn transition(ev: &Value) -> String {
    match ev.get("previous_state").filter(|p| !p.is_null()) {
        Some(p) => format!("{}->{}", cell(Some(p)), field(ev, "state")),
        None => field(ev, "state"),
    }
}

/// One event as one line, for `events --follow` and `status`.
pub fn event_summary(ev: &Value) -> String {
    format!(
        "{} #{} {} {} {} {}",
        time_cell(ev.get("time_ms")),
        field(ev, "id"),
        field(ev, "event"),
        field(ev, "link"),
        transition(ev),
        event_detail(ev)
    )
}

/// `events`: ID TIME EVENT LINK STATE DETAIL.
pub fn events(body: &Value) -> String {
    let mut t = Table::new(&["ID", "TIME", "EVENT", "LINK", "STATE", "DETAIL"]);
    for e in list(body, "events") {
        t.row(vec![
            field(e, "id"),
            time_cell(e.get("time_ms")),
            field(e, "event"),
            field(e, "link"),
            transition(e),
            event_detail(e),
        ]);
    }
    t.render("")
}

fn run_result(r: &Value) -> String {
    if r.get("timed_out").and_then(Value::as_bool) == Some(true) {
        return "timed out".into();
    }
    if let Some(s) = r.get("signal").filter(|s| !s.is_null()) {
        return format!("signal {}", cell(Some(s)));
    }
    match r.get("exit_code") {
        Some(c) if !c.is_null() => format!("exit {}", cell(Some(c))),
        _ if r.get("duration_ms").map_or(true, Value::is_null) => "running".into(),
        _ => NONE.into(),
    }
}

/// `history`: one row per hook run, its captured output indented below.
pub fn history(body: &Value) -> String {
    let runs = list(body, "runs");
    let mut t = Table::new(&[
        "STARTED", "EVENT", "LINK", "STATE", "HOOK", "DURATION", "RESULT",
    ]);
    for r in runs {
        t.row(vec![
            time_cell(r.get("started_ms")),
            field(r, "event_id"),
            field(r, "link"),
            field(r, "state"),
            field(r, "hook"),
            millis(r.get("duration_ms")),
            run_result(r),
        ]);
    }
    // The output lines go under their row, so the table is split by hand:
    // render it once for the widths, then interleave.
    let rendered = t.render("");
    let mut lines = rendered.lines();
    let mut out = String::new();
    if let Some(h) = lines.next() {
        out.push_str(h);
        out.push('\n');
    }
    for (line, r) in lines.zip(runs) {
        out.push_str(line);
        out.push('\n');
        for o in list(r, "output") {
            let _ = writeln!(out, "    | {}", cell(Some(o)));
        }
    }
    out
}

/// `metrics`: the exposition text as the daemon made it.
pub fn metrics(body: &Value) -> String {
    body.get("text")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// `audit`: one line per audit line, its time and kind first, then its
/// other fields as `key=value`.
pub fn audit(body: &Value) -> String {
    let lines = list(body, "lines");
    let mut out = String::new();
    for l in lines {
        let _ = write!(out, "{} {}", time_cell(l.get("time_ms")), field(l, "kind"));
        if let Some(m) = l.as_object() {
            for (k, v) in m {
                if k == "time_ms" || k == "kind" {
                    continue;
                }
                let _ = write!(out, " {}={}", clean(k), cell(Some(v)));
            }
        }
        out.push('\n');
    }
    if lines.is_empty() {
        out.push_str("no audit lines match\n");
    }
    if body.get("truncated").and_then(Value::as_bool) == Some(true) {
        out.push_str(
            "(the audit files are larger than one query reads: older lines were not searched; \
             narrow it with --since)\n",
        );
    }
    out
}

/// `hooks`: the script directory, then one row per hook (or per missing
/// or empty directory) and why a file there is skipped.
pub fn hooks(body: &Value) -> String {
    let mut out = format!("script_dir: {}\n", field(body, "script_dir"));
    let mut t = Table::new(&["STATE", "HOOK", "STATUS"]);
    for d in list(body, "directories") {
        let state = field(d, "state");
        let dir = field(d, "path");
        let path_of = |name: &Value| {
            let n = cell(Some(name));
            if n.starts_with('/') {
                n
            } else {
                format!("{}/{n}", dir.trim_end_matches('/'))
            }
        };
        if d.get("exists").and_then(Value::as_bool) == Some(false) {
            t.row(vec![state, dir.clone(), "no directory".into()]);
            continue;
        }
        let hooks = list(d, "hooks");
        let skipped = list(d, "skipped");
        if hooks.is_empty() && skipped.is_empty() {
            t.row(vec![state.clone(), dir.clone(), "empty".into()]);
        }
        for h in hooks {
            t.row(vec![state.clone(), path_of(h), "runs".into()]);
        }
        for s in skipped {
            t.row(vec![
                state.clone(),
                path_of(s.get("name").unwrap_or(&Value::Null)),
                format!("skipped: {}", field(s, "reason")),
            ]);
        }
    }
    out.push_str(&t.render(""));
    out
}

/// `filters`: one row per filter, in the order they are checked, with
/// what it matches and its hits; then the events no filter matched.
pub fn filters(body: &Value) -> String {
    let fs = list(body, "filters");
    let mut out = String::new();
    if fs.is_empty() {
        out.push_str("no filters: every event runs its hooks\n");
    } else {
        let mut t = Table::new(&["NAME", "ACTION", "HITS", "SCRIPTS", "MATCH"]);
        for f in fs {
            let mut m = Vec::new();
            for k in ["interface", "interface_pattern", "backend", "ip_family"] {
                if let Some(v) = f.get(k).filter(|v| !v.is_null()) {
                    m.push(format!("{k}={}", cell(Some(v))));
                }
            }
            let types = list(f, "event_types");
            if !types.is_empty() {
                let t: Vec<String> = types.iter().map(|v| cell(Some(v))).collect();
                m.push(format!("event_types={}", t.join(",")));
            }
            if let Some(c) = f.get("condition").filter(|v| !v.is_null()) {
                m.push(format!("condition={}", cell(Some(c))));
            }
            if m.is_empty() {
                m.push("every event".into());
            }
            let scripts = match f.get("scripts") {
                Some(Value::Array(a)) => {
                    let v: Vec<String> = a.iter().map(|v| cell(Some(v))).collect();
                    v.join(",")
                }
                _ => "all".into(),
            };
            t.row(vec![
                field(f, "name"),
                field(f, "action"),
                field(f, "hits"),
                scripts,
                m.join(" "),
            ]);
        }
        out.push_str(&t.render(""));
    }
    let _ = writeln!(out, "unmatched: {}", field(body, "unmatched"));
    out
}

/// `reload`: whether it reloaded, and what changed.
pub fn reload(body: &Value) -> String {
    let changes = list(body, "changes");
    if changes.is_empty() {
        return "reloaded: no changes\n".into();
    }
    let mut out = String::from("reloaded:\n");
    for c in changes {
        let _ = writeln!(out, "  {}", cell(Some(c)));
    }
    out
}

/// A shell word that reads back as `s`: bare when it is safe, single
/// quoted otherwise, control characters escaped (it is for reading, not
/// for `eval`).
fn shell_word(s: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "-_./:,+=@%".contains(c);
    if !s.is_empty() && s.chars().all(safe) {
        return s.to_string();
    }
    format!("'{}'", clean(&s.replace('\'', "'\\''")))
}

/// `test`: the event it queued and the hooks it runs; with `--dry-run`,
/// each hook with the environment it would get.
pub fn test(body: &Value) -> String {
    let mut out = String::new();
    let head = format!("{} on {}", field(body, "state"), field(body, "link"));
    match body.get("event_id").filter(|e| !e.is_null()) {
        Some(id) => {
            let _ = writeln!(out, "event {} queued: {head}", cell(Some(id)));
        }
        None => {
            let _ = writeln!(out, "dry run: {head}");
        }
    }
    if body.get("event_id").is_some_and(Value::is_null) {
        match body.get("filter").filter(|f| !f.is_null()) {
            Some(f) => {
                let _ = writeln!(out, "filter {} ({}):", field(f, "name"), field(f, "action"));
                for w in list(f, "why") {
                    let _ = writeln!(out, "  {}", cell(Some(w)));
                }
            }
            None if body.get("filter").is_some() => {
                out.push_str("no filter matches: the hooks run\n");
            }
            None => {}
        }
        for n in list(body, "not_matched") {
            let _ = writeln!(out, "not filter {}: {}", field(n, "name"), field(n, "why"));
        }
    }
    let hooks = list(body, "hooks");
    if hooks.is_empty() {
        out.push_str("no hooks\n");
    }
    for h in hooks {
        let Some(obj) = h.as_object() else {
            let _ = writeln!(out, "hook {}", cell(Some(h)));
            continue;
        };
        let _ = writeln!(out, "hook {}", field(h, "path"));
        let env = obj.get("environment").and_then(Value::as_object);
        if let Some(env) = env {
            // Map keys are sorted, which is how people look names up.
            for (k, v) in env {
                let v = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                let _ = writeln!(out, "  {}={}", clean(k), shell_word(&v));
            }
        }
        // The JSON is in the environment as JSON already; show it only
        // when it is not.
        if env.map_or(true, |e| !e.contains_key("JSON")) {
            if let Some(j) = obj.get("json").filter(|j| !j.is_null()) {
                let j = match j {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                let _ = writeln!(out, "  json: {}", clean(&j));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn filters_table() {
        let body = json!({"filters": [
            {"name": "no-veth", "action": "ignore", "interface": null,
             "interface_pattern": "veth*", "event_types": [], "backend": null,
             "ip_family": null, "condition": null, "scripts": null, "hits": 12},
            {"name": "vpn", "action": "execute", "interface": "wg0",
             "interface_pattern": null, "event_types": ["routable", "routes"],
             "backend": "kernel", "ip_family": "ipv6",
             "condition": "has_gateway && mtu >= 1280", "scripts": ["50-up", "60-dns"],
             "hits": 3},
            {"name": "rest", "action": "log", "event_types": [], "scripts": null, "hits": 0}
        ], "unmatched": 4});
        assert_eq!(
            filters(&body),
            "NAME     ACTION   HITS  SCRIPTS       MATCH\n\
             no-veth  ignore   12    all           interface_pattern=veth*\n\
             vpn      execute  3     50-up,60-dns  interface=wg0 backend=kernel ip_family=ipv6 event_types=routable,routes condition=has_gateway && mtu >= 1280\n\
             rest     log      0     all           every event\n\
             unmatched: 4\n"
        );
        assert_eq!(
            filters(&json!({"filters": [], "unmatched": 0})),
            "no filters: every event runs its hooks\nunmatched: 0\n"
        );
    }

    #[test]
    fn test_dry_run_shows_the_filter() {
        let body = json!({"event_id": null, "state": "carrier", "link": "veth1", "hooks": [],
            "filter": {"name": "no-veth", "action": "ignore",
                       "why": ["interface_pattern \"veth*\" matches \"veth1\""], "scripts": null},
            "not_matched": [{"name": "vpn", "why": "interface \"wg0\" is not \"veth1\""}]});
        assert_eq!(
            test(&body),
            "dry run: carrier on veth1\n\
             filter no-veth (ignore):\n  interface_pattern \"veth*\" matches \"veth1\"\n\
             not filter vpn: interface \"wg0\" is not \"veth1\"\n\
             no hooks\n"
        );
        let body = json!({"event_id": null, "state": "carrier", "link": "x", "hooks": [],
            "filter": null, "not_matched": []});
        assert_eq!(
            test(&body),
            "dry run: carrier on x\nno filter matches: the hooks run\nno hooks\n"
        );
    }

    #[test]
    fn table_aligns_and_has_no_trailing_blanks() {
        let mut t = Table::new(&["A", "LONGER", "C"]);
        t.row(vec!["wide cell".into(), "x".into(), "".into()]);
        t.row(vec!["y".into(), "z".into(), "last".into()]);
        assert_eq!(
            t.render(""),
            "A          LONGER  C\nwide cell  x\ny          z       last\n"
        );
        assert_eq!(
            t.render("  ").lines().next(),
            Some("  A          LONGER  C")
        );
    }

    #[test]
    fn cells() {
        assert_eq!(cell(None), "-");
        assert_eq!(cell(Some(&json!(null))), "-");
        assert_eq!(cell(Some(&json!(""))), "-");
        assert_eq!(cell(Some(&json!([]))), "-");
        assert_eq!(cell(Some(&json!(["UP", "LOWER_UP"]))), "UP,LOWER_UP");
        assert_eq!(cell(Some(&json!(true))), "yes");
        assert_eq!(cell(Some(&json!(1500))), "1500");
        assert_eq!(cell(Some(&json!("e\x1b[2Jx"))), "e\\u{1b}[2Jx");
        assert_eq!(clean("a\\b\nc"), "a\\b\\nc");
    }

    #[test]
    fn times_and_durations() {
        assert_eq!(time_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(time_ms(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(time_ms(1_795_765_420_456), "2026-11-27T07:43:40.456Z");
        assert_eq!(duration(0), "0s");
        assert_eq!(duration(61), "1m 1s");
        assert_eq!(duration(90_061), "1d 1h 1m 1s");
        assert_eq!(duration(3600), "1h 0m 0s");
        assert_eq!(millis(Some(&json!(12))), "12 ms");
        assert_eq!(millis(Some(&json!(12_345))), "12.3 s");
    }

    #[test]
    fn status_lines() {
        let s = status(&json!({
            "version": "0.1.0", "pid": 42, "uptime_seconds": 3725, "backend": "kernel",
            "config": "/etc/netevd/netevd.yaml", "config_hash": "00ff", "synced": true,
            "links": 3, "routes": 9, "rules": 4, "subscribers": 1, "clients": 2,
            "counters": {"events": 5, "hooks_started": 2},
            "last_event": {"id": 5, "time_ms": 0, "event": "state", "link": "eth0",
                           "state": "routable", "previous_state": "carrier",
                           "addresses": [{"address": "192.0.2.1", "prefixlen": 24}]},
            "future_field": "x"
        }));
        assert_eq!(
            s,
            "version: 0.1.0\npid: 42\nuptime: 1h 2m 5s\nbackend: kernel\n\
             config: /etc/netevd/netevd.yaml\nconfig_hash: 00ff\nsynced: yes\nlinks: 3\n\
             routes: 9\nrules: 4\nclients: 2\nsubscribers: 1\nfuture_field: x\n\
             last_event: 1970-01-01T00:00:00.000Z #5 state eth0 carrier->routable 192.0.2.1/24\n\
             counters:\n  events: 5\n  hooks_started: 2\n"
        );
    }

    #[test]
    fn interface_table() {
        let s = interfaces(&json!({"interfaces": [
            {"index": 1, "name": "lo", "state": "carrier", "operstate": "unknown", "mtu": 65536,
             "mac": "00:00:00:00:00:00", "addresses": [{"address": "127.0.0.1", "prefixlen": 8},
             {"address": "::1", "prefixlen": 128}]},
            {"index": 12, "name": "veth-a", "state": "no-carrier", "operstate": "down",
             "mtu": 1500, "mac": null, "addresses": []}
        ]}));
        assert_eq!(
            s,
            "INDEX  NAME    STATE       OPER     MTU    MAC                ADDRESSES\n\
             1      lo      carrier     unknown  65536  00:00:00:00:00:00  127.0.0.1/8 ::1/128\n\
             12     veth-a  no-carrier  down     1500   -                  -\n"
        );
    }

    #[test]
    fn one_interface() {
        let s = interface(&json!({"interface": {
            "index": 3, "name": "eth0", "kind": "veth", "state": "routable", "operstate": "up",
            "mac": "02:00:00:00:00:01", "mtu": 1500, "flags": ["UP", "LOWER_UP"],
            "addresses": [{"address": "192.0.2.10", "prefixlen": 24, "family": "inet",
                           "scope": "global", "flags": ["permanent"], "valid_lft": null,
                           "preferred_lft": 30}],
            "policy": {"table": 1003, "rules": ["10000: from 192.0.2.10/32 lookup 1003"],
                       "gateways": ["192.0.2.1"]},
            "routes": [{"family": "inet", "dst": "default", "gateway": "192.0.2.1",
                        "table": 254, "metric": 0, "protocol": "boot", "scope": "universe",
                        "type": "unicast", "prefsrc": null, "ifindex": 3, "link": "eth0"}]
        }}));
        assert_eq!(
            s,
            "name: eth0\nindex: 3\nkind: veth\nstate: routable\noperstate: up\nmtu: 1500\n\
             mac: 02:00:00:00:00:01\nflags: UP,LOWER_UP\npolicy: table 1003\n\
             \x20 rule 10000: from 192.0.2.10/32 lookup 1003\n  gateway 192.0.2.1\n\
             addresses:\n\
             \x20 ADDRESS        FAMILY  SCOPE   VALID    PREFERRED  FLAGS\n\
             \x20 192.0.2.10/24  inet    global  forever  30s        permanent\n\
             routes:\n\
             \x20 FAMILY  DST      GATEWAY    TABLE  METRIC  PROTOCOL  SCOPE     TYPE     PREFSRC\n\
             \x20 inet    default  192.0.2.1  254    0       boot      universe  unicast  -\n"
        );
        let bare = interface(&json!({"interface": {"name": "x", "policy": null}}));
        assert_eq!(bare, "name: x\npolicy: -\naddresses: -\nroutes: -\n");
    }

    #[test]
    fn route_and_rule_tables() {
        let s = routes(&json!({"routes": [
            {"family": "inet6", "dst": "2001:db8::/64", "gateway": null, "table": 254,
             "metric": 256, "protocol": "kernel", "scope": "universe", "type": "unicast",
             "prefsrc": null, "ifindex": 9, "link": null}
        ]}));
        assert_eq!(
            s,
            "FAMILY  DST            GATEWAY  LINK  TABLE  METRIC  PROTOCOL  SCOPE     TYPE     PREFSRC\n\
             inet6   2001:db8::/64  -        #9    254    256     kernel    universe  unicast  -\n"
        );
        let s = rules(&json!({"rules": [
            {"family": "inet", "priority": 10000, "table": 1003, "from": "192.0.2.10/32",
             "to": null, "iif": null, "oif": null, "fwmark": null, "protocol": "netevd",
             "action": "lookup", "own": true}
        ]}));
        assert_eq!(
            s,
            "PRIORITY  FAMILY  FROM           TO  IIF  OIF  FWMARK  TABLE  ACTION  PROTOCOL  OWN\n\
             10000     inet    192.0.2.10/32  -   -    -    -       1003   lookup  netevd    yes\n"
        );
    }

    #[test]
    fn rtnetlink_numbers_get_their_names() {
        let s = routes(&json!({"routes": [
            {"family": "inet", "dst": "192.0.2.0/24", "gateway": null, "table": 1003,
             "metric": 0, "protocol": 148, "scope": 253, "type": 1, "prefsrc": "192.0.2.1",
             "ifindex": 3, "link": "ve0"},
            {"family": "inet", "dst": "198.51.100.0/24", "gateway": null, "table": 254,
             "metric": 0, "protocol": 77, "scope": 0, "type": 6, "prefsrc": null,
             "ifindex": null, "link": null}
        ]}));
        assert_eq!(
            s,
            "FAMILY  DST              GATEWAY  LINK  TABLE  METRIC  PROTOCOL  SCOPE   TYPE       PREFSRC\n\
             inet    192.0.2.0/24     -        ve0   1003   0       netevd    link    unicast    192.0.2.1\n\
             inet    198.51.100.0/24  -        -     254    0       77        global  blackhole  -\n"
        );
        let s = rules(
            &json!({"rules": [{"family": "inet6", "priority": 32766, "table": 254,
            "from": "all", "to": "all", "iif": null, "oif": null, "fwmark": 0, "protocol": 2,
            "action": 1, "own": false}]}),
        );
        assert!(
            s.ends_with(
                "32766     inet6   all   all  -    -    0       254    lookup  kernel    no\n"
            ),
            "{s}"
        );
    }

    #[test]
    fn event_table_and_summary() {
        let body = json!({"events": [
            {"id": 7, "time_ms": 1000, "event": "state", "link": "eth0", "state": "routable",
             "previous_state": "carrier", "addresses": [{"address": "192.0.2.10", "prefixlen": 24}]},
            {"id": 8, "time_ms": 2000, "event": "routes", "link": "eth0", "state": "routes",
             "previous_state": null, "addresses": [],
             "route": {"action": "add", "dst": "default", "gateway": "192.0.2.1", "table": 254}}
        ]});
        assert_eq!(
            events(&body),
            "ID  TIME                      EVENT   LINK  STATE              DETAIL\n\
             7   1970-01-01T00:00:01.000Z  state   eth0  carrier->routable  192.0.2.10/24\n\
             8   1970-01-01T00:00:02.000Z  routes  eth0  routes             add default via 192.0.2.1 table 254\n"
        );
        assert_eq!(
            event_summary(&body["events"][1]),
            "1970-01-01T00:00:02.000Z #8 routes eth0 routes add default via 192.0.2.1 table 254"
        );
    }

    #[test]
    fn history_with_output() {
        let s = history(&json!({"runs": [
            {"hook": "/h/routable.d/50-a", "link": "eth0", "ifindex": 3, "event_id": 7,
             "state": "routable", "started_ms": 0, "duration_ms": 15, "exit_code": 0,
             "signal": null, "timed_out": false, "output": ["hello", "world"]},
            {"hook": "/h/routable.d/60-b", "link": "eth0", "ifindex": 3, "event_id": 7,
             "state": "routable", "started_ms": 20, "duration_ms": null, "exit_code": null,
             "signal": null, "timed_out": false, "output": []},
            {"hook": "/h/carrier.d/10-c", "link": "eth1", "ifindex": 4, "event_id": 9,
             "state": "carrier", "started_ms": 30, "duration_ms": 30000, "exit_code": null,
             "signal": 9, "timed_out": true, "output": []}
        ]}));
        assert_eq!(
            s,
            "STARTED                   EVENT  LINK  STATE     HOOK                DURATION  RESULT\n\
             1970-01-01T00:00:00.000Z  7      eth0  routable  /h/routable.d/50-a  15 ms     exit 0\n\
             \x20   | hello\n    | world\n\
             1970-01-01T00:00:00.020Z  7      eth0  routable  /h/routable.d/60-b  -         running\n\
             1970-01-01T00:00:00.030Z  9      eth1  carrier   /h/carrier.d/10-c   30.0 s    timed out\n"
        );
    }

    #[test]
    fn hook_directories() {
        let s = hooks(&json!({"script_dir": "/h", "directories": [
            {"state": "carrier", "path": "/h/carrier.d", "exists": true, "hooks": ["50-a"],
             "skipped": [{"name": "README", "reason": "not executable"}]},
            {"state": "routable", "path": "/h/routable.d", "exists": false, "hooks": [],
             "skipped": []},
            {"state": "routes", "path": "/h/routes.d", "exists": true, "hooks": [], "skipped": []}
        ]}));
        assert_eq!(
            s,
            "script_dir: /h\n\
             STATE     HOOK                 STATUS\n\
             carrier   /h/carrier.d/50-a    runs\n\
             carrier   /h/carrier.d/README  skipped: not executable\n\
             routable  /h/routable.d        no directory\n\
             routes    /h/routes.d          empty\n"
        );
    }

    #[test]
    fn reload_and_test() {
        assert_eq!(
            reload(&json!({"reloaded": true, "changes": []})),
            "reloaded: no changes\n"
        );
        assert_eq!(
            reload(&json!({"reloaded": true, "changes": ["scripts.timeout_seconds: 30 -> 5"]})),
            "reloaded:\n  scripts.timeout_seconds: 30 -> 5\n"
        );
        assert_eq!(
            test(&json!({"event_id": 12, "state": "routable", "link": "eth0",
                         "hooks": ["/h/routable.d/50-a"]})),
            "event 12 queued: routable on eth0\nhook /h/routable.d/50-a\n"
        );
        assert_eq!(
            test(&json!({"event_id": null, "state": "carrier", "link": "eth0", "hooks": [
                {"path": "/h/carrier.d/50-a",
                 "environment": {"LINK": "eth0", "ADDRESSES": "192.0.2.1 2001:db8::1",
                                 "JSON": "{\"id\":0}", "Q": "it's"},
                 "json": "{\"id\":0}"}
            ]})),
            "dry run: carrier on eth0\nhook /h/carrier.d/50-a\n  ADDRESSES='192.0.2.1 2001:db8::1'\n  \
             JSON='{\"id\":0}'\n  LINK=eth0\n  Q='it'\\''s'\n"
        );
        assert_eq!(
            test(
                &json!({"event_id": null, "state": "carrier", "link": "x", "hooks": [
                {"path": "/p", "environment": {}, "json": {"id": 0}}]})
            ),
            "dry run: carrier on x\nhook /p\n  json: {\"id\":0}\n"
        );
        assert_eq!(
            test(&json!({"event_id": 3, "state": "carrier", "link": "x", "hooks": []})),
            "event 3 queued: carrier on x\nno hooks\n"
        );
    }
}
