//! `/etc/netevd/netevd.yaml`: the existing netevd schema (system,
//! monitoring, routing, backends, api, metrics, audit, filters) plus
//! `system.script_dir`, `control.socket` and `scripts.*`.
//!
//! The file is parsed into a tree that remembers where each node stood, so
//! every error names the key, its line and its column. Unknown keys are
//! errors. No I/O here but reading the file.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::core::policy;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

pub const DEFAULT_PATH: &str = "/etc/netevd/netevd.yaml";

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Backend {
    Kernel,
    Networkd,
    NetworkManager,
    Dhclient,
}

impl Backend {
    pub fn as_str(&self) -> &'static str {
        match self {
            Backend::Kernel => "kernel",
            Backend::Networkd => "systemd-networkd",
            Backend::NetworkManager => "NetworkManager",
            Backend::Dhclient => "dhclient",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub log_level: Option<log::LevelFilter>,
    pub backend: Backend,
    pub script_dir: PathBuf,
    /// `monitoring.interfaces`: glob patterns, empty for all links.
    pub interfaces: Vec<String>,
    /// `routing`: per-interface policy routing.
    pub policy: policy::Settings,
    /// `control`: the JSON Lines control socket.
    pub control: ControlSettings,
    pub timeout: Duration,
    pub run_on_startup: bool,
    pub max_parallel: usize,
    /// Netlink socket receive buffer in bytes.
    pub netlink_rcvbuf: usize,
    /// What the file asks for that this build does not do yet, one line
    /// each, logged at start.
    pub inactive: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            log_level: None,
            backend: Backend::Kernel,
            script_dir: PathBuf::from("/etc/netevd"),
            interfaces: Vec::new(),
            policy: policy::Settings::default(),
            control: ControlSettings::default(),
            timeout: Duration::from_secs(30),
            run_on_startup: true,
            max_parallel: 4,
            netlink_rcvbuf: 4 << 20,
            inactive: Vec::new(),
        }
    }
}

/// `control.*`: where the control socket lives, who may change things
/// through it, and the bounds on what it keeps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControlSettings {
    /// The socket's path; `enabled: false` serves none.
    pub socket: PathBuf,
    pub enabled: bool,
    /// The socket's group (mode 0660): its members may reload and run
    /// tests. None: root only.
    pub group: Option<String>,
    /// The socket's mode: 0660 lets root and the group connect; 0666 lets
    /// anyone query while only root and the group may change things.
    pub mode: u32,
    pub max_clients: usize,
    /// A client that sends nothing for this long is closed (subscribers
    /// are exempt). Zero: never.
    pub idle_timeout: Duration,
    /// Bytes queued for one client before it is dropped as too slow.
    pub max_queue: usize,
    /// Events kept for `events` queries.
    pub event_history: usize,
    /// Hook runs kept for `history` queries.
    pub hook_history: usize,
}

impl Default for ControlSettings {
    fn default() -> Self {
        ControlSettings {
            socket: PathBuf::from("/run/netevd/netevd.sock"),
            enabled: true,
            group: None,
            mode: 0o660,
            max_clients: 32,
            idle_timeout: Duration::from_secs(60),
            max_queue: 256 << 10,
            event_history: 256,
            hook_history: 64,
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub struct Error {
    pub file: String,
    pub line: usize,
    pub col: usize,
    pub msg: String,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.msg)
        } else {
            write!(f, "{}:{}:{}: {}", self.file, self.line, self.col, self.msg)
        }
    }
}

#[derive(Debug, Clone)]
enum Value {
    Scalar(String, bool), // text, quoted
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

#[derive(Debug, Clone)]
struct Node {
    v: Value,
    line: usize,
    col: usize,
}

/// Builds the tree from the parser's events.
#[derive(Default)]
struct Builder {
    stack: Vec<(Node, Option<Node>)>, // container, pending map key
    root: Option<Node>,
    error: Option<(Marker, String)>,
}

impl Builder {
    fn push_value(&mut self, n: Node) {
        match self.stack.last_mut() {
            None => self.root = Some(n),
            Some((parent, key)) => match &mut parent.v {
                Value::Seq(v) => v.push(n),
                Value::Map(m) => match key.take() {
                    None => *key = Some(n),
                    Some(k) => m.push((k, n)),
                },
                Value::Scalar(..) => unreachable!(),
            },
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let (line, col) = (mark.line(), mark.col() + 1);
        match ev {
            Event::Scalar(s, style, _, _) => self.push_value(Node {
                v: Value::Scalar(s, style != TScalarStyle::Plain),
                line,
                col,
            }),
            Event::SequenceStart(..) => self.stack.push((
                Node {
                    v: Value::Seq(Vec::new()),
                    line,
                    col,
                },
                None,
            )),
            Event::MappingStart(..) => self.stack.push((
                Node {
                    v: Value::Map(Vec::new()),
                    line,
                    col,
                },
                None,
            )),
            Event::SequenceEnd | Event::MappingEnd => {
                if let Some((n, _)) = self.stack.pop() {
                    self.push_value(n);
                }
            }
            Event::Alias(_) => {
                if self.error.is_none() {
                    self.error = Some((mark, "aliases are not supported".into()));
                }
                self.push_value(Node {
                    v: Value::Scalar(String::new(), false),
                    line,
                    col,
                });
            }
            _ => {}
        }
    }
}

struct Ctx<'a> {
    file: &'a str,
}

impl Ctx<'_> {
    fn err(&self, n: &Node, msg: impl Into<String>) -> Error {
        Error {
            file: self.file.to_string(),
            line: n.line,
            col: n.col,
            msg: msg.into(),
        }
    }

    fn map<'n>(&self, n: &'n Node, what: &str) -> Result<&'n [(Node, Node)], Error> {
        match &n.v {
            Value::Map(m) => Ok(m),
            // `key:` with nothing after it is an empty section.
            Value::Scalar(s, false) if s.is_empty() || s == "~" || s == "null" => Ok(&[]),
            _ => Err(self.err(n, format!("{what}: expected a mapping"))),
        }
    }

    fn str<'n>(&self, n: &'n Node, what: &str) -> Result<&'n str, Error> {
        match &n.v {
            Value::Scalar(s, _) => Ok(s),
            _ => Err(self.err(n, format!("{what}: expected a string"))),
        }
    }

    fn bool(&self, n: &Node, what: &str) -> Result<bool, Error> {
        match &n.v {
            Value::Scalar(s, false) => match s.as_str() {
                "true" | "True" | "TRUE" | "yes" | "on" => Ok(true),
                "false" | "False" | "FALSE" | "no" | "off" => Ok(false),
                _ => Err(self.err(n, format!("{what}: expected true or false, not {s:?}"))),
            },
            _ => Err(self.err(n, format!("{what}: expected true or false"))),
        }
    }

    fn uint(&self, n: &Node, what: &str, min: u64, max: u64) -> Result<u64, Error> {
        let s = match &n.v {
            Value::Scalar(s, false) => s,
            _ => return Err(self.err(n, format!("{what}: expected a number"))),
        };
        match s.parse::<u64>() {
            Ok(v) if (min..=max).contains(&v) => Ok(v),
            Ok(v) => Err(self.err(n, format!("{what}: {v} is out of range {min}..={max}"))),
            Err(_) => Err(self.err(n, format!("{what}: expected a number, not {s:?}"))),
        }
    }

    fn strings(&self, n: &Node, what: &str) -> Result<Vec<String>, Error> {
        match &n.v {
            Value::Seq(v) => v
                .iter()
                .map(|i| self.str(i, what).map(str::to_string))
                .collect(),
            Value::Scalar(s, false) if s.is_empty() || s == "~" || s == "null" => Ok(Vec::new()),
            _ => Err(self.err(n, format!("{what}: expected a list"))),
        }
    }
}

impl Config {
    /// Reads `path`. A missing file means the defaults.
    pub fn load(path: &Path) -> Result<Config, Error> {
        let file = path.display().to_string();
        match std::fs::read_to_string(path) {
            Ok(text) => Config::parse(&text, &file),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
            Err(e) => Err(Error {
                file,
                line: 0,
                col: 0,
                msg: format!("cannot read: {e}"),
            }),
        }
    }

    pub fn parse(text: &str, file: &str) -> Result<Config, Error> {
        let cx = Ctx { file };
        let mut b = Builder::default();
        let mut parser = Parser::new_from_str(text);
        if let Err(e) = parser.load(&mut b, false) {
            let m = e.marker();
            return Err(Error {
                file: file.into(),
                line: m.line(),
                col: m.col() + 1,
                msg: format!("YAML syntax: {}", e.info()),
            });
        }
        if let Some((m, msg)) = b.error {
            return Err(Error {
                file: file.into(),
                line: m.line(),
                col: m.col() + 1,
                msg,
            });
        }
        let mut c = Config::default();
        let Some(root) = b.root else {
            return Ok(c); // an empty file
        };
        for (k, v) in cx.map(&root, "top level")? {
            let key = cx.str(k, "key")?;
            match key {
                "system" => c.system(&cx, v)?,
                "monitoring" => {
                    for (k2, v2) in cx.map(v, "monitoring")? {
                        match cx.str(k2, "key")? {
                            "interfaces" => {
                                c.interfaces = cx.strings(v2, "monitoring.interfaces")?;
                                for (i, p) in c.interfaces.iter().enumerate() {
                                    if p.is_empty() {
                                        let n = match &v2.v {
                                            Value::Seq(s) => &s[i],
                                            _ => v2,
                                        };
                                        return Err(
                                            cx.err(n, "monitoring.interfaces: empty pattern")
                                        );
                                    }
                                }
                            }
                            other => return Err(unknown(&cx, k2, "monitoring", other)),
                        }
                    }
                }
                "routing" => c.routing(&cx, v)?,
                "backends" => c.backends(&cx, v)?,
                "control" => c.control(&cx, v)?,
                "scripts" => c.scripts(&cx, v)?,
                "api" | "metrics" | "audit" | "filters" => {
                    let m = cx.map(v, key)?;
                    if section_enabled(&cx, m) {
                        c.inactive.push(format!(
                            "{key} (line {}): accepted but not built yet; it has no effect",
                            k.line
                        ));
                    }
                }
                other => {
                    return Err(cx.err(
                        k,
                        format!(
                        "unknown key {other:?} (expected system, monitoring, routing, backends, \
                             control, scripts, api, metrics, audit or filters)"
                    ),
                    ))
                }
            }
        }
        Ok(c)
    }

    fn system(&mut self, cx: &Ctx, v: &Node) -> Result<(), Error> {
        for (k, v) in cx.map(v, "system")? {
            match cx.str(k, "key")? {
                "log_level" => {
                    let s = cx.str(v, "system.log_level")?;
                    self.log_level = Some(match s.to_ascii_lowercase().as_str() {
                        "trace" => log::LevelFilter::Trace,
                        "debug" => log::LevelFilter::Debug,
                        "info" => log::LevelFilter::Info,
                        "warn" | "warning" => log::LevelFilter::Warn,
                        "error" => log::LevelFilter::Error,
                        "off" => log::LevelFilter::Off,
                        _ => {
                            return Err(cx.err(
                                v,
                                format!("system.log_level: {s:?} is not one of trace, debug, info, warn, error, off"),
                            ))
                        }
                    });
                }
                "backend" => {
                    let s = cx.str(v, "system.backend")?;
                    self.backend = match s {
                        "kernel" => Backend::Kernel,
                        "systemd-networkd" | "networkd" => Backend::Networkd,
                        "NetworkManager" | "networkmanager" => Backend::NetworkManager,
                        "dhclient" => Backend::Dhclient,
                        _ => {
                            return Err(cx.err(
                                v,
                                format!("system.backend: {s:?} is not one of kernel, systemd-networkd, NetworkManager, dhclient"),
                            ))
                        }
                    };
                    if self.backend != Backend::Kernel {
                        self.inactive.push(format!(
                            "system.backend {s:?} (line {}): that backend is not built yet; running on the kernel backend",
                            v.line
                        ));
                    }
                }
                "script_dir" => {
                    let s = cx.str(v, "system.script_dir")?;
                    if !s.starts_with('/') {
                        return Err(cx.err(v, "system.script_dir: expected an absolute path"));
                    }
                    self.script_dir = PathBuf::from(s);
                }
                "netlink_receive_buffer" => {
                    self.netlink_rcvbuf =
                        cx.uint(v, "system.netlink_receive_buffer", 4096, 1 << 30)? as usize;
                }
                other => return Err(unknown(cx, k, "system", other)),
            }
        }
        Ok(())
    }

    fn routing(&mut self, cx: &Ctx, v: &Node) -> Result<(), Error> {
        let p = &mut self.policy;
        let mut list = None;
        for (k, v) in cx.map(v, "routing")? {
            match cx.str(k, "key")? {
                "policy_rules" => list = Some(v),
                "table_base" => {
                    p.table_base = cx.uint(v, "routing.table_base", 256, 1 << 31)? as u32;
                }
                "from_priority" => p.from_priority = priority(cx, v, "routing.from_priority")?,
                "to_priority" => p.to_priority = priority(cx, v, "routing.to_priority")?,
                other => return Err(unknown(cx, k, "routing", other)),
            }
        }
        let Some(list) = list else {
            return Ok(());
        };
        let items: &[Node] = match &list.v {
            Value::Seq(s) => s,
            Value::Scalar(s, false) if s.is_empty() || s == "~" || s == "null" => &[],
            _ => return Err(cx.err(list, "routing.policy_rules: expected a list")),
        };
        // Explicit values, with where they were given, to refuse clashes.
        let mut tables: Vec<(u32, String)> = Vec::new();
        let mut prios: Vec<(u32, String)> = Vec::new();
        for item in items {
            let mut iface = policy::Iface {
                name: String::new(),
                table: None,
                from_priority: None,
                to_priority: None,
            };
            match &item.v {
                Value::Scalar(s, _) => iface.name = s.clone(),
                Value::Map(m) => {
                    for (k, v) in m {
                        let what = |key: &str| format!("routing.policy_rules.{key}");
                        match cx.str(k, "key")? {
                            "interface" => iface.name = cx.str(v, &what("interface"))?.to_string(),
                            "table" => {
                                let t = cx.uint(v, &what("table"), 1, u32::MAX as u64)? as u32;
                                if policy::reserved_table(t) {
                                    return Err(cx.err(
                                        v,
                                        format!(
                                            "{}: table {t} is reserved by the kernel (0, 252-255)",
                                            what("table")
                                        ),
                                    ));
                                }
                                if let Some((_, who)) = tables.iter().find(|(x, _)| *x == t) {
                                    return Err(cx.err(
                                        v,
                                        format!("{}: table {t} is already {who}'s", what("table")),
                                    ));
                                }
                                iface.table = Some(t);
                            }
                            key @ ("from_priority" | "to_priority") => {
                                let pr = priority(cx, v, &what(key))?;
                                if let Some((_, who)) = prios.iter().find(|(x, _)| *x == pr) {
                                    return Err(cx.err(
                                        v,
                                        format!("{}: priority {pr} is already {who}'s", what(key)),
                                    ));
                                }
                                if key == "from_priority" {
                                    iface.from_priority = Some(pr);
                                } else {
                                    iface.to_priority = Some(pr);
                                }
                            }
                            other => return Err(unknown(cx, k, "routing.policy_rules", other)),
                        }
                    }
                }
                _ => {
                    return Err(cx.err(
                        item,
                        "routing.policy_rules: expected an interface name or a mapping",
                    ))
                }
            }
            if iface.name.is_empty() {
                return Err(cx.err(
                    item,
                    "routing.policy_rules: an entry without an interface name",
                ));
            }
            if p.ifaces.iter().any(|i| i.name == iface.name) {
                return Err(cx.err(
                    item,
                    format!("routing.policy_rules: {} is listed twice", iface.name),
                ));
            }
            for pr in [iface.from_priority, iface.to_priority]
                .into_iter()
                .flatten()
            {
                prios.push((pr, iface.name.clone()));
            }
            if let Some(t) = iface.table {
                tables.push((t, iface.name.clone()));
            }
            p.ifaces.push(iface);
        }
        Ok(())
    }

    fn scripts(&mut self, cx: &Ctx, v: &Node) -> Result<(), Error> {
        for (k, v) in cx.map(v, "scripts")? {
            match cx.str(k, "key")? {
                "timeout_seconds" => {
                    self.timeout =
                        Duration::from_secs(cx.uint(v, "scripts.timeout_seconds", 1, 86400)?);
                }
                "run_on_startup" => self.run_on_startup = cx.bool(v, "scripts.run_on_startup")?,
                "max_parallel" => {
                    self.max_parallel = cx.uint(v, "scripts.max_parallel", 1, 1024)? as usize;
                }
                other => return Err(unknown(cx, k, "scripts", other)),
            }
        }
        Ok(())
    }

    fn backends(&mut self, cx: &Ctx, v: &Node) -> Result<(), Error> {
        for (k, v) in cx.map(v, "backends")? {
            let name = cx.str(k, "key")?;
            let keys: &[&str] = match name {
                "systemd_networkd" => &["emit_json"],
                "dhclient" => &["use_dns", "use_domain", "use_hostname"],
                "networkmanager" => &[],
                other => {
                    return Err(cx.err(
                        k,
                        format!("unknown key {other:?} in backends (expected systemd_networkd, dhclient or networkmanager)"),
                    ))
                }
            };
            for (k2, v2) in cx.map(v, name)? {
                let key = cx.str(k2, "key")?;
                if !keys.contains(&key) {
                    return Err(unknown(cx, k2, &format!("backends.{name}"), key));
                }
                cx.bool(v2, &format!("backends.{name}.{key}"))?;
            }
        }
        Ok(())
    }
}

/// A section of a feature not built yet counts as asked for unless it says
/// `enabled: false`.
impl Config {
    fn control(&mut self, cx: &Ctx, v: &Node) -> Result<(), Error> {
        let c = &mut self.control;
        for (k, v) in cx.map(v, "control")? {
            match cx.str(k, "key")? {
                "socket" => {
                    let s = cx.str(v, "control.socket")?;
                    if !s.starts_with('/') {
                        return Err(cx.err(v, "control.socket: expected an absolute path"));
                    }
                    // sun_path holds 108 bytes with the terminating NUL.
                    if s.len() > 107 {
                        return Err(cx.err(v, "control.socket: longer than 107 bytes"));
                    }
                    c.socket = PathBuf::from(s);
                }
                "enabled" => c.enabled = cx.bool(v, "control.enabled")?,
                "group" => {
                    let s = cx.str(v, "control.group")?;
                    c.group = if s.is_empty() {
                        None
                    } else {
                        Some(s.to_string())
                    };
                }
                "mode" => {
                    let s = cx.str(v, "control.mode")?;
                    c.mode = match u32::from_str_radix(s, 8) {
                        Ok(m) if s.len() == 4 && s.starts_with('0') && m & !0o666 == 0 => m,
                        _ => {
                            return Err(cx.err(
                                v,
                                format!(
                                    "control.mode: expected an octal mode such as 0660 or 0666 \
                                     (read and write bits only), \
                                     not {s:?}"
                                ),
                            ))
                        }
                    };
                }
                "max_clients" => {
                    c.max_clients = cx.uint(v, "control.max_clients", 1, 4096)? as usize
                }
                "idle_timeout_seconds" => {
                    c.idle_timeout =
                        Duration::from_secs(cx.uint(v, "control.idle_timeout_seconds", 0, 86400)?)
                }
                "max_queue_bytes" => {
                    c.max_queue = cx.uint(v, "control.max_queue_bytes", 4096, 64 << 20)? as usize
                }
                "event_history" => {
                    c.event_history = cx.uint(v, "control.event_history", 0, 100_000)? as usize
                }
                "hook_history" => {
                    c.hook_history = cx.uint(v, "control.hook_history", 0, 100_000)? as usize
                }
                other => return Err(unknown(cx, k, "control", other)),
            }
        }
        Ok(())
    }
}

fn section_enabled(cx: &Ctx, m: &[(Node, Node)]) -> bool {
    !m.iter().any(|(k, v)| {
        matches!(cx.str(k, "key"), Ok("enabled")) && matches!(cx.bool(v, "enabled"), Ok(false))
    })
}

fn priority(cx: &Ctx, v: &Node, what: &str) -> Result<u32, Error> {
    let p = cx.uint(v, what, 1, u32::MAX as u64)? as u32;
    if policy::reserved_priority(p) {
        return Err(cx.err(
            v,
            format!("{what}: priority {p} is the kernel's own (0, 32766, 32767)"),
        ));
    }
    Ok(p)
}

fn unknown(cx: &Ctx, k: &Node, section: &str, key: &str) -> Error {
    cx.err(k, format!("unknown key {key:?} in {section}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Config, Error> {
        Config::parse(s, "t.yaml")
    }

    #[test]
    fn empty_and_defaults() {
        assert_eq!(parse("").unwrap(), Config::default());
        assert_eq!(parse("# nothing\n").unwrap(), Config::default());
        let c = Config::default();
        assert_eq!(c.backend, Backend::Kernel);
        assert_eq!(c.timeout, Duration::from_secs(30));
        assert!(c.run_on_startup);
    }

    #[test]
    fn existing_schema_is_accepted() {
        let c = parse(
            r#"
system:
  log_level: "debug"
  backend: "systemd-networkd"
monitoring:
  interfaces:
    - eth0
    - "wg*"
routing:
  policy_rules:
    - eth1
backends:
  systemd_networkd:
    emit_json: true
  dhclient:
    use_dns: false
    use_domain: false
    use_hostname: false
  networkmanager: {}
api:
  enabled: true
  bind_address: 127.0.0.1
metrics:
  enabled: false
"#,
        )
        .unwrap();
        assert_eq!(c.log_level, Some(log::LevelFilter::Debug));
        assert_eq!(c.backend, Backend::Networkd);
        assert_eq!(c.interfaces, vec!["eth0", "wg*"]);
        assert_eq!(c.policy.ifaces.len(), 1);
        assert_eq!(c.policy.ifaces[0].name, "eth1");
        assert_eq!(c.policy.ifaces[0].table, None);
        // backend and api are reported as not active; metrics is disabled,
        // so it is not
        assert_eq!(c.inactive.len(), 2, "{:?}", c.inactive);
        assert!(c.inactive[0].contains("systemd-networkd"));
        assert!(c.inactive[1].starts_with("api"));
    }

    #[test]
    fn own_keys() {
        let c = parse(
            "system:\n  script_dir: /tmp/h\n  netlink_receive_buffer: 65536\ncontrol:\n  socket: /tmp/s.sock\nscripts:\n  timeout_seconds: 5\n  run_on_startup: false\n  max_parallel: 2\n",
        )
        .unwrap();
        assert_eq!(c.script_dir, PathBuf::from("/tmp/h"));
        assert_eq!(c.control.socket, PathBuf::from("/tmp/s.sock"));
        assert_eq!(c.timeout, Duration::from_secs(5));
        assert!(!c.run_on_startup);
        assert_eq!(c.max_parallel, 2);
        assert_eq!(c.netlink_rcvbuf, 65536);
        assert!(c.inactive.is_empty());
    }

    #[test]
    fn errors_name_key_line_and_column() {
        let cases = [
            (
                "system:\n  log_levl: debug\n",
                "t.yaml:2:3: unknown key \"log_levl\" in system",
            ),
            ("sytem: {}\n", "t.yaml:1:1: unknown key \"sytem\""),
            (
                "scripts:\n  timeout_seconds: ten\n",
                "t.yaml:2:20: scripts.timeout_seconds: expected a number, not \"ten\"",
            ),
            (
                "scripts:\n  timeout_seconds: 0\n",
                "t.yaml:2:20: scripts.timeout_seconds: 0 is out of range",
            ),
            (
                "scripts:\n  run_on_startup: maybe\n",
                "t.yaml:2:19: scripts.run_on_startup: expected true or false",
            ),
            (
                "monitoring:\n  interfaces: eth0\n",
                "t.yaml:2:15: monitoring.interfaces: expected a list",
            ),
            (
                "system:\n  backend: systemd\n",
                "t.yaml:2:12: system.backend: \"systemd\" is not one of",
            ),
            (
                "system:\n  script_dir: hooks\n",
                "t.yaml:2:15: system.script_dir: expected an absolute path",
            ),
            (
                "backends:\n  dhclient:\n    use_dsn: true\n",
                "t.yaml:3:5: unknown key \"use_dsn\" in backends.dhclient",
            ),
            ("system: [\n", "t.yaml:2:1: YAML syntax"),
            ("a: &x 1\nb: *x\n", "aliases are not supported"),
            ("- 1\n", "t.yaml:1:1: top level: expected a mapping"),
        ];
        for (text, want) in cases {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(want), "{text:?}: got {e:?}, want {want:?}");
        }
    }

    #[test]
    fn routing_tables_and_priorities() {
        let c = parse(
            "routing:\n  table_base: 2000\n  from_priority: 100\n  to_priority: 101\n  policy_rules:\n    - eth1\n    - interface: eth2\n      table: 3000\n      from_priority: 200\n      to_priority: 201\n",
        )
        .unwrap();
        let p = &c.policy;
        assert_eq!(
            (p.table_base, p.from_priority, p.to_priority),
            (2000, 100, 101)
        );
        assert_eq!(
            p.ifaces[1],
            policy::Iface {
                name: "eth2".into(),
                table: Some(3000),
                from_priority: Some(200),
                to_priority: Some(201),
            }
        );
        let refused = [
            ("routing:\n  policy_rules:\n    - interface: eth1\n      table: 253\n", "t.yaml:4:14: routing.policy_rules.table: table 253 is reserved"),
            ("routing:\n  policy_rules:\n    - interface: eth1\n      table: 0\n", "table: 0 is out of range"),
            (
                "routing:\n  policy_rules:\n    - interface: eth1\n      table: 1000\n    - interface: eth2\n      table: 1000\n",
                "t.yaml:6:14: routing.policy_rules.table: table 1000 is already eth1's",
            ),
            ("routing:\n  from_priority: 32766\n", "t.yaml:2:18: routing.from_priority: priority 32766 is the kernel's own"),
            (
                "routing:\n  policy_rules:\n    - interface: eth1\n      from_priority: 50\n    - interface: eth2\n      to_priority: 50\n",
                "t.yaml:6:20: routing.policy_rules.to_priority: priority 50 is already eth1's",
            ),
            ("routing:\n  policy_rules: [eth1, eth1]\n", "eth1 is listed twice"),
            ("routing:\n  table_base: 200\n", "routing.table_base: 200 is out of range 256"),
            ("routing:\n  policy_rules:\n    - table: 5000\n", "an entry without an interface name"),
            ("routing:\n  policy_rules:\n    - interface: eth1\n      tabel: 5\n", "unknown key \"tabel\" in routing.policy_rules"),
        ];
        for (text, want) in refused {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(want), "{text:?}: got {e:?}, want {want:?}");
        }
    }

    #[test]
    fn missing_file_is_defaults() {
        let c = Config::load(Path::new("/nonexistent/netevd.yaml")).unwrap();
        assert_eq!(c, Config::default());
    }
}
