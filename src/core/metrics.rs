//! The metrics registry: one, owned by the loop, so plain integers and no
//! locks or atomics. Counters are bumped where the thing happens (the
//! fan-out, a hook's reap, a control request, a kernel answer to a policy
//! request); gauges and the counters other modules already keep (netlink's
//! messages and overruns, the mirror's table sizes) are read at scrape
//! time from a [`Snapshot`], so they are never copied after each input.
//! [`Registry::render`] writes the Prometheus text exposition format
//! (version 0.0.4): `# HELP` and `# TYPE` per family, escaped label values,
//! `_total` on counters, seconds for durations.
//!
//! Label sets are bounded: every label value comes from a closed set (an
//! enum's names, the control commands), except `interface`, which exists
//! only with `metrics.per_interface: true` and then for at most
//! `metrics.max_interfaces` names; later ones count under
//! `interface="_other"`.
//!
//! Pure: no clock reads (the caller passes `now` and durations), no I/O.

use std::fmt::Write;
use std::time::{Duration, Instant};

/// Seconds from a source's read to the fan-out: tens of microseconds when
/// idle, milliseconds when a burst queues work.
pub const EVENT_BUCKETS: [f64; 12] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
];

/// Seconds a hook runs: a fork/exec is about a millisecond, the default
/// timeout 30 s.
pub const HOOK_BUCKETS: [f64; 13] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The kernel-derived link states, in the order `netevd_interfaces` lists
/// them (all six always, zeros included, so the series never vanish).
pub const LINK_STATES: [&str; 6] = [
    "off",
    "no-carrier",
    "dormant",
    "carrier",
    "degraded",
    "routable",
];

/// The label of interfaces past the cap.
pub const OTHER: &str = "_other";

/// `metrics.*`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// `metrics.enabled`: false refuses the `metrics` command (counting
    /// goes on: it costs next to nothing and `status` shares it).
    pub enabled: bool,
    /// An `interface` label on the per-link counters.
    pub per_interface: bool,
    /// Distinct `interface` values at most.
    pub max_interfaces: usize,
    /// `metrics.endpoint`: the HTTP path the shim serves them on (the
    /// existing netevd's key).
    pub endpoint: String,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            // A build without the exposition (cargo feature `metrics`)
            // still counts, for `status`, but does not answer `metrics`.
            enabled: cfg!(feature = "metrics"),
            per_interface: false,
            max_interfaces: 64,
            endpoint: "/metrics".to_string(),
        }
    }
}

/// How a hook run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HookResult {
    Success,
    /// Non-zero exit, or killed by a signal it was not sent by netevd.
    Failure,
    /// Killed at its timeout.
    Timeout,
}

const HOOK_RESULTS: [&str; 3] = ["success", "failure", "timeout"];

/// What became of one policy-routing request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PolicyResult {
    /// The kernel applied it.
    Done,
    /// It was already so (EEXIST on add, ENOENT on delete).
    Already,
    /// Refused for now (the link or address went away): retried.
    Transient,
    /// Refused: retried when the interface changes.
    Refused,
    /// It could not even be sent.
    SendFailed,
}

impl PolicyResult {
    pub fn as_str(self) -> &'static str {
        POLICY_RESULTS[self as usize]
    }
}

const POLICY_RESULTS: [&str; 5] = ["done", "already", "transient", "refused", "send_failed"];

/// A histogram with fixed buckets: `counts[i]` is the number of
/// observations at most `bounds[i]` and above `bounds[i - 1]`.
#[derive(Clone, Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            counts: vec![0; bounds.len()],
            sum: 0.0,
            count: 0,
        }
    }

    pub fn observe(&mut self, d: Duration) {
        let s = d.as_secs_f64();
        if let Some(i) = self.bounds.iter().position(|&b| s <= b) {
            self.counts[i] += 1;
        }
        self.sum += s;
        self.count += 1;
    }
}

/// A family another module counts (DBus calls, filter hits): the lead
/// wires these in through [`Snapshot::extra`].
#[derive(Clone, Debug)]
pub struct Family {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: Kind,
    /// Label pairs and value, one per series; bounded by whoever fills it.
    pub samples: Vec<(Vec<(&'static str, String)>, f64)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        }
    }
}

/// What the registry reads from the rest of the daemon at scrape time.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Links per state, in [`LINK_STATES`] order.
    pub interfaces: [u64; 6],
    pub routes_inet: u64,
    pub routes_inet6: u64,
    /// Rules netevd installed (its own protocol).
    pub own_rules: u64,
    pub netlink_messages: u64,
    pub netlink_undecodable: u64,
    pub netlink_overruns: u64,
    pub resyncs: u64,
    /// Hooks that could not be started at all (not found, not executable).
    pub hooks_not_started: u64,
    pub audit_lines: u64,
    pub audit_dropped: u64,
    pub subscribers: u64,
    pub extra: Vec<Family>,
}

impl Snapshot {
    /// One extra family of a single, unlabelled sample.
    pub fn one(&mut self, name: &'static str, help: &'static str, kind: Kind, v: u64) {
        self.extra.push(Family {
            name,
            help,
            kind,
            samples: vec![(Vec::new(), v as f64)],
        });
    }
}

pub struct Registry {
    settings: Settings,
    started: Instant,
    /// (kind, backend) -> events; both from closed sets.
    events: Vec<(&'static str, &'static str, u64)>,
    event_duration: Histogram,
    state_changes: u64,
    /// Per interface, when asked for: at most `max_interfaces` names, then
    /// [`OTHER`].
    state_changes_by_if: Vec<(String, u64)>,
    hook_runs: [u64; 3],
    hook_duration: Histogram,
    /// By command name (a closed set, `invalid` for what did not parse).
    control_requests: Vec<(&'static str, u64)>,
    policy_requests: [u64; 5],
}

impl Registry {
    pub fn new(settings: Settings, started: Instant) -> Self {
        Registry {
            settings,
            started,
            events: Vec::new(),
            event_duration: Histogram::new(&EVENT_BUCKETS),
            state_changes: 0,
            state_changes_by_if: Vec::new(),
            hook_runs: [0; 3],
            hook_duration: Histogram::new(&HOOK_BUCKETS),
            control_requests: Vec::new(),
            policy_requests: [0; 5],
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// New settings on reload. Turning the interface label off forgets the
    /// names; a lower cap keeps those already counted (their series must
    /// not go backwards) and sends new ones to `_other`.
    pub fn set_settings(&mut self, s: Settings) {
        if !s.per_interface {
            self.state_changes_by_if = Vec::new();
        }
        self.settings = s;
    }

    /// An event reached the fan-out, `took` after its source was read.
    pub fn event(&mut self, kind: &'static str, backend: &'static str, took: Duration) {
        match self
            .events
            .iter_mut()
            .find(|(k, b, _)| *k == kind && *b == backend)
        {
            Some(e) => e.2 += 1,
            None => self.events.push((kind, backend, 1)),
        }
        self.event_duration.observe(took);
    }

    /// A link's state changed (what consumers were last told differs).
    pub fn state_change(&mut self, link: &str) {
        self.state_changes += 1;
        if !self.settings.per_interface {
            return;
        }
        if let Some(e) = self.state_changes_by_if.iter_mut().find(|e| e.0 == link) {
            e.1 += 1;
            return;
        }
        let named = self
            .state_changes_by_if
            .iter()
            .filter(|e| e.0 != OTHER)
            .count();
        let name = if named < self.settings.max_interfaces {
            link
        } else {
            OTHER
        };
        match self.state_changes_by_if.iter_mut().find(|e| e.0 == name) {
            Some(e) => e.1 += 1,
            None => self.state_changes_by_if.push((name.to_string(), 1)),
        }
    }

    pub fn hook_run(&mut self, r: HookResult, took: Duration) {
        self.hook_runs[r as usize] += 1;
        self.hook_duration.observe(took);
    }

    /// A control request; `command` is its wire name, or `invalid`.
    pub fn control_request(&mut self, command: &'static str) {
        match self.control_requests.iter_mut().find(|e| e.0 == command) {
            Some(e) => e.1 += 1,
            None => self.control_requests.push((command, 1)),
        }
    }

    pub fn policy_request(&mut self, r: PolicyResult) {
        self.policy_requests[r as usize] += 1;
    }

    /// The exposition, as `netevctl metrics` and the HTTP shim's
    /// `/metrics` serve it.
    pub fn render(&self, now: Instant, s: &Snapshot) -> String {
        let mut w = Writer::default();
        w.family(
            "netevd_uptime_seconds",
            "Seconds since netevd started.",
            "gauge",
        );
        w.float("netevd_uptime_seconds", &[], secs(now, self.started));
        w.family(
            "netevd_build_info",
            "netevd's version; the value is always 1.",
            "gauge",
        );
        w.int(
            "netevd_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))],
            1,
        );

        w.family(
            "netevd_events_total",
            "Events published to hooks and subscribers, by kind and backend.",
            "counter",
        );
        let mut ev = self.events.clone();
        ev.sort_unstable();
        for (k, b, n) in ev {
            w.int("netevd_events_total", &[("kind", k), ("backend", b)], n);
        }
        w.histogram(
            "netevd_event_duration_seconds",
            "Seconds from the source's read to the fan-out.",
            &self.event_duration,
        );

        w.family(
            "netevd_interfaces",
            "Links the kernel has, by operational state.",
            "gauge",
        );
        for (st, n) in LINK_STATES.iter().zip(s.interfaces) {
            w.int("netevd_interfaces", &[("state", st)], n);
        }
        w.family(
            "netevd_interface_state_changes_total",
            "Changes of a link's state that were published.",
            "counter",
        );
        if self.settings.per_interface {
            let mut v: Vec<&(String, u64)> = self.state_changes_by_if.iter().collect();
            v.sort_unstable();
            for (name, n) in v {
                w.int(
                    "netevd_interface_state_changes_total",
                    &[("interface", name)],
                    *n,
                );
            }
        } else {
            w.int(
                "netevd_interface_state_changes_total",
                &[],
                self.state_changes,
            );
        }

        w.family(
            "netevd_routing_rules",
            "Policy routing rules netevd installed and the kernel has.",
            "gauge",
        );
        w.int("netevd_routing_rules", &[], s.own_rules);
        w.family(
            "netevd_routes",
            "Routes mirrored from the kernel, by family.",
            "gauge",
        );
        w.int("netevd_routes", &[("family", "inet")], s.routes_inet);
        w.int("netevd_routes", &[("family", "inet6")], s.routes_inet6);

        w.family(
            "netevd_hook_runs_total",
            "Hook runs that ended, by result; not_started: could not be executed.",
            "counter",
        );
        for (r, n) in HOOK_RESULTS.iter().zip(self.hook_runs) {
            w.int("netevd_hook_runs_total", &[("result", r)], n);
        }
        w.int(
            "netevd_hook_runs_total",
            &[("result", "not_started")],
            s.hooks_not_started,
        );
        w.histogram(
            "netevd_hook_duration_seconds",
            "Seconds a hook ran, from its start to its reaping.",
            &self.hook_duration,
        );
        w.family(
            "netevd_hook_timeouts_total",
            "Hooks killed at their timeout.",
            "counter",
        );
        w.int(
            "netevd_hook_timeouts_total",
            &[],
            self.hook_runs[HookResult::Timeout as usize],
        );

        w.family(
            "netevd_netlink_messages_total",
            "Netlink messages read from the kernel.",
            "counter",
        );
        w.int("netevd_netlink_messages_total", &[], s.netlink_messages);
        w.family(
            "netevd_netlink_undecodable_total",
            "Netlink messages that could not be decoded.",
            "counter",
        );
        w.int(
            "netevd_netlink_undecodable_total",
            &[],
            s.netlink_undecodable,
        );
        w.family(
            "netevd_netlink_overruns_total",
            "Times the kernel dropped notifications (ENOBUFS).",
            "counter",
        );
        w.int("netevd_netlink_overruns_total", &[], s.netlink_overruns);
        w.family(
            "netevd_resyncs_total",
            "Full dumps reconciled, the one at start included.",
            "counter",
        );
        w.int("netevd_resyncs_total", &[], s.resyncs);

        w.family(
            "netevd_control_requests_total",
            "Control socket requests, by command.",
            "counter",
        );
        let mut c = self.control_requests.clone();
        c.sort_unstable();
        for (cmd, n) in c {
            w.int("netevd_control_requests_total", &[("command", cmd)], n);
        }
        w.family(
            "netevd_control_subscribers",
            "Control clients following the event stream.",
            "gauge",
        );
        w.int("netevd_control_subscribers", &[], s.subscribers);
        w.family(
            "netevd_policy_requests_total",
            "Policy routing requests, by how the kernel answered.",
            "counter",
        );
        for (r, n) in POLICY_RESULTS.iter().zip(self.policy_requests) {
            w.int("netevd_policy_requests_total", &[("result", r)], n);
        }

        w.family(
            "netevd_audit_lines_total",
            "Audit log lines written.",
            "counter",
        );
        w.int("netevd_audit_lines_total", &[], s.audit_lines);
        w.family(
            "netevd_audit_dropped_total",
            "Audit log lines dropped: the buffer was full (a full disk, slow storage).",
            "counter",
        );
        w.int("netevd_audit_dropped_total", &[], s.audit_dropped);

        for f in &s.extra {
            w.family(f.name, f.help, f.kind.as_str());
            for (labels, v) in &f.samples {
                let l: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
                w.float(f.name, &l, *v);
            }
        }
        w.out
    }
}

fn secs(now: Instant, then: Instant) -> f64 {
    now.saturating_duration_since(then).as_secs_f64()
}

/// Writes the text format. Names are the caller's constants; label
/// values and help text are escaped here.
#[derive(Default)]
struct Writer {
    out: String,
}

impl Writer {
    fn family(&mut self, name: &str, help: &str, kind: &str) {
        self.out.push_str("# HELP ");
        self.out.push_str(name);
        self.out.push(' ');
        for ch in help.chars() {
            match ch {
                '\\' => self.out.push_str("\\\\"),
                '\n' => self.out.push_str("\\n"),
                c => self.out.push(c),
            }
        }
        let _ = writeln!(self.out, "\n# TYPE {name} {kind}");
    }

    fn series(&mut self, name: &str, labels: &[(&str, &str)]) {
        self.out.push_str(name);
        if labels.is_empty() {
            return;
        }
        self.out.push('{');
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            self.out.push_str(k);
            self.out.push_str("=\"");
            escape_label(&mut self.out, v);
            self.out.push('"');
        }
        self.out.push('}');
    }

    fn int(&mut self, name: &str, labels: &[(&str, &str)], v: u64) {
        self.series(name, labels);
        let _ = writeln!(self.out, " {v}");
    }

    fn float(&mut self, name: &str, labels: &[(&str, &str)], v: f64) {
        self.series(name, labels);
        self.out.push(' ');
        float(&mut self.out, v);
        self.out.push('\n');
    }

    fn histogram(&mut self, name: &str, help: &str, h: &Histogram) {
        self.family(name, help, "histogram");
        let bucket = format!("{name}_bucket");
        let mut cum = 0;
        let mut le = String::new();
        for (b, n) in h.bounds.iter().zip(&h.counts) {
            cum += n;
            le.clear();
            float(&mut le, *b);
            self.int(&bucket, &[("le", &le)], cum);
        }
        self.int(&bucket, &[("le", "+Inf")], h.count);
        self.float(&format!("{name}_sum"), &[], h.sum);
        self.int(&format!("{name}_count"), &[], h.count);
    }
}

/// Backslash, double quote and newline are the three escapes the format
/// has for label values.
fn escape_label(out: &mut String, v: &str) {
    for ch in v.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Go's float syntax as Prometheus parses it: `+Inf`, `-Inf`, `NaN`, and
/// a plain decimal to the nanosecond otherwise (every value here is a
/// count or a Duration's seconds: nothing finer exists). Written with
/// integers because `{}` of an f64 links Rust's float printing (grisu and
/// dragon, about 8 KB) for this one writer.
fn float(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
        return;
    }
    if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
        return;
    }
    let a = v.abs();
    if v < 0.0 && a >= 0.5e-9 {
        out.push('-');
    }
    if a >= 1e18 {
        // Past u64's nanoseconds: 18 significant digits and an exponent
        // (f64 holds 17). Divided down rather than through log10, which
        // was all the daemon took from libm: without it the binary does
        // not load libm (a third of a MiB resident).
        let (mut m, mut e) = (a, 0);
        while m >= 1e18 {
            m /= 10.0;
            e += 1;
        }
        let _ = write!(out, "{}e{e}", m.round() as u64);
        return;
    }
    let mut whole = a.trunc() as u64;
    let mut nanos = ((a - a.trunc()) * 1e9).round() as u64;
    if nanos == 1_000_000_000 {
        whole += 1;
        nanos = 0;
    }
    let _ = write!(out, "{whole}");
    if nanos > 0 {
        let mut frac = format!("{nanos:09}");
        while frac.ends_with('0') {
            frac.pop();
        }
        out.push('.');
        out.push_str(&frac);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(per_interface: bool, max: usize) -> (Registry, Instant) {
        let t0 = Instant::now();
        let s = Settings {
            per_interface,
            max_interfaces: max,
            ..Settings::default()
        };
        (Registry::new(s, t0), t0)
    }

    fn lines_of<'a>(text: &'a str, name: &str) -> Vec<&'a str> {
        text.lines()
            .filter(|l| {
                l.strip_prefix(name)
                    .is_some_and(|r| r.starts_with(' ') || r.starts_with('{'))
            })
            .collect()
    }

    #[test]
    fn every_family_has_help_and_type_and_counters_end_in_total() {
        let (r, t0) = reg(false, 8);
        let text = r.render(t0 + Duration::from_secs(3), &Snapshot::default());
        let mut seen = Vec::new();
        let mut lines = text.lines().peekable();
        while let Some(l) = lines.next() {
            if let Some(rest) = l.strip_prefix("# HELP ") {
                let name = rest.split(' ').next().unwrap();
                let t = lines.next().unwrap();
                let kind = t
                    .strip_prefix(&format!("# TYPE {name} "))
                    .unwrap_or_else(|| panic!("no TYPE after HELP of {name}: {t}"));
                assert!(!seen.contains(&name), "{name} twice");
                seen.push(name);
                match kind {
                    "counter" => assert!(name.ends_with("_total"), "{name}"),
                    "gauge" => assert!(!name.ends_with("_total"), "{name}"),
                    "histogram" => assert!(name.ends_with("_seconds"), "{name}"),
                    k => panic!("{name}: type {k}"),
                }
            } else {
                assert!(!l.starts_with('#'), "{l}");
                let name = l.split(['{', ' ']).next().unwrap();
                let fam = seen.last().unwrap();
                assert!(name.starts_with(fam), "{name} outside its family {fam}");
            }
        }
        assert!(text.ends_with('\n'));
        assert!(text.contains("\nnetevd_uptime_seconds 3\n"), "{text}");
        assert!(text.contains("netevd_build_info{version=\""));
        for name in [
            "netevd_events_total",
            "netevd_event_duration_seconds",
            "netevd_interfaces",
            "netevd_interface_state_changes_total",
            "netevd_routing_rules",
            "netevd_routes",
            "netevd_hook_runs_total",
            "netevd_hook_duration_seconds",
            "netevd_hook_timeouts_total",
            "netevd_netlink_messages_total",
            "netevd_netlink_overruns_total",
            "netevd_resyncs_total",
            "netevd_control_requests_total",
            "netevd_policy_requests_total",
        ] {
            assert!(seen.contains(&name), "{name} missing");
        }
    }

    #[test]
    fn counters_and_labels() {
        let (mut r, t0) = reg(false, 8);
        r.event("state", "kernel", Duration::from_micros(30));
        r.event("state", "kernel", Duration::from_micros(300));
        r.event("routes", "kernel", Duration::from_millis(2));
        r.event("test", "control", Duration::from_secs(1));
        r.hook_run(HookResult::Success, Duration::from_millis(3));
        r.hook_run(HookResult::Failure, Duration::from_millis(40));
        r.hook_run(HookResult::Timeout, Duration::from_secs(31));
        r.control_request("status");
        r.control_request("status");
        r.control_request("invalid");
        r.policy_request(PolicyResult::Done);
        r.policy_request(PolicyResult::SendFailed);
        r.state_change("eth0");
        let s = Snapshot {
            interfaces: [1, 0, 0, 2, 0, 3],
            routes_inet: 7,
            routes_inet6: 4,
            own_rules: 2,
            netlink_messages: 99,
            netlink_overruns: 1,
            resyncs: 2,
            hooks_not_started: 5,
            ..Snapshot::default()
        };
        let text = r.render(t0, &s);
        assert_eq!(
            lines_of(&text, "netevd_events_total"),
            [
                "netevd_events_total{kind=\"routes\",backend=\"kernel\"} 1",
                "netevd_events_total{kind=\"state\",backend=\"kernel\"} 2",
                "netevd_events_total{kind=\"test\",backend=\"control\"} 1",
            ]
        );
        assert_eq!(
            lines_of(&text, "netevd_hook_runs_total"),
            [
                "netevd_hook_runs_total{result=\"success\"} 1",
                "netevd_hook_runs_total{result=\"failure\"} 1",
                "netevd_hook_runs_total{result=\"timeout\"} 1",
                "netevd_hook_runs_total{result=\"not_started\"} 5",
            ]
        );
        assert_eq!(
            lines_of(&text, "netevd_hook_timeouts_total"),
            ["netevd_hook_timeouts_total 1"]
        );
        assert_eq!(
            lines_of(&text, "netevd_control_requests_total"),
            [
                "netevd_control_requests_total{command=\"invalid\"} 1",
                "netevd_control_requests_total{command=\"status\"} 2",
            ]
        );
        assert!(text.contains("netevd_policy_requests_total{result=\"done\"} 1\n"));
        assert!(text.contains("netevd_policy_requests_total{result=\"send_failed\"} 1\n"));
        assert!(text.contains("netevd_policy_requests_total{result=\"refused\"} 0\n"));
        assert!(text.contains("netevd_interfaces{state=\"routable\"} 3\n"));
        assert!(text.contains("netevd_interfaces{state=\"no-carrier\"} 0\n"));
        assert!(text.contains("netevd_routes{family=\"inet6\"} 4\n"));
        assert!(text.contains("netevd_routing_rules 2\n"));
        assert!(text.contains("netevd_netlink_messages_total 99\n"));
        assert!(text.contains("netevd_resyncs_total 2\n"));
        assert!(text.contains("\nnetevd_interface_state_changes_total 1\n"));
    }

    #[test]
    fn histogram_buckets_are_cumulative() {
        let (mut r, t0) = reg(false, 8);
        for ms in [2, 3, 40, 400, 45_000] {
            r.hook_run(HookResult::Success, Duration::from_millis(ms));
        }
        let text = r.render(t0, &Snapshot::default());
        let b = lines_of(&text, "netevd_hook_duration_seconds_bucket");
        assert_eq!(b.len(), HOOK_BUCKETS.len() + 1);
        assert_eq!(b[0], "netevd_hook_duration_seconds_bucket{le=\"0.001\"} 0");
        assert_eq!(b[1], "netevd_hook_duration_seconds_bucket{le=\"0.005\"} 2");
        assert_eq!(b[4], "netevd_hook_duration_seconds_bucket{le=\"0.05\"} 3");
        assert_eq!(b[7], "netevd_hook_duration_seconds_bucket{le=\"0.5\"} 4");
        assert_eq!(b[12], "netevd_hook_duration_seconds_bucket{le=\"30\"} 4");
        assert_eq!(b[13], "netevd_hook_duration_seconds_bucket{le=\"+Inf\"} 5");
        assert_eq!(
            lines_of(&text, "netevd_hook_duration_seconds_count"),
            ["netevd_hook_duration_seconds_count 5"]
        );
        let sum: f64 = lines_of(&text, "netevd_hook_duration_seconds_sum")[0]
            .rsplit(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!((sum - 45.445).abs() < 1e-9, "{sum}");
        // Every bucket's count is at least the one before.
        let counts: Vec<u64> = b
            .iter()
            .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
            .collect();
        assert!(counts.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn interface_label_only_when_asked_and_capped() {
        let (mut r, t0) = reg(false, 2);
        r.state_change("eth0");
        let text = r.render(t0, &Snapshot::default());
        assert!(!text.contains("interface="));

        let (mut r, t0) = reg(true, 2);
        for l in ["eth0", "eth1", "eth0", "wg0", "veth9", "eth1"] {
            r.state_change(l);
        }
        let text = r.render(t0, &Snapshot::default());
        assert_eq!(
            lines_of(&text, "netevd_interface_state_changes_total"),
            [
                "netevd_interface_state_changes_total{interface=\"_other\"} 2",
                "netevd_interface_state_changes_total{interface=\"eth0\"} 2",
                "netevd_interface_state_changes_total{interface=\"eth1\"} 2",
            ]
        );
        // Turned off on reload: the names go.
        r.set_settings(Settings::default());
        r.state_change("eth2");
        let text = r.render(t0, &Snapshot::default());
        assert!(
            text.contains("\nnetevd_interface_state_changes_total 7\n"),
            "{text}"
        );
        assert!(!text.contains("interface="));
    }

    #[test]
    fn label_values_and_help_are_escaped() {
        let (mut r, t0) = reg(true, 8);
        r.state_change("a\"b\\c\nd");
        let s = Snapshot {
            extra: vec![Family {
                name: "netevd_filter_hits_total",
                help: "Hits per filter \\ with\na newline.",
                kind: Kind::Counter,
                samples: vec![(vec![("filter", "x\"y".to_string())], 3.0)],
            }],
            ..Snapshot::default()
        };
        let text = r.render(t0, &s);
        assert!(
            text.contains(
                "netevd_interface_state_changes_total{interface=\"a\\\"b\\\\c\\nd\"} 1\n"
            ),
            "{text}"
        );
        assert!(text.contains(
            "# HELP netevd_filter_hits_total Hits per filter \\\\ with\\na newline.\n\
             # TYPE netevd_filter_hits_total counter\n\
             netevd_filter_hits_total{filter=\"x\\\"y\"} 3\n"
        ));
    }

    #[test]
    fn floats_in_go_syntax() {
        let mut s = String::new();
        for v in [
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
            0.000_05,
            30.0,
            1.5e-7,
            -2.25,
            0.999_999_999_9,
            -0.0,
            1e20,
        ] {
            float(&mut s, v);
            s.push(' ');
        }
        assert_eq!(
            s,
            "+Inf -Inf NaN 0.00005 30 0.00000015 -2.25 1 0 100000000000000000e3 "
        );
        let mut s = String::new();
        float(&mut s, f64::MAX);
        assert!(
            s.starts_with("17976931348623") && s.ends_with("e291"),
            "{s}"
        );
        assert_eq!(s.len(), "179769313486231570e291".len(), "{s}");
    }
}
