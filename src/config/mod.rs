//! `/etc/netevd/netevd.yaml`: the existing netevd schema (system,
//! monitoring, routing, backends, api, metrics, audit, filters) plus
//! `system.script_dir`, `control.*` and `scripts.*`. One function per
//! section builds the settings of the module it configures.
//!
//! Every error names the file, the line, the column and the key. Unknown
//! keys are errors. [`yaml`] holds the parser's rules (one document, no
//! duplicate keys, bounded depth, strict scalars).
//!
//! Reading is strict, because a reload must never turn "cannot read the
//! file" into "use the defaults" (that would delete every policy rule):
//! [`Config::load`] refuses a file that is missing, unreadable, empty, not
//! a regular file (a FIFO would block open(2), `/dev/zero` never ends) or
//! larger than [`MAX_SIZE`]. Only at start, and only at [`DEFAULT_PATH`],
//! does no file at all mean the defaults ([`Config::load_start`]).
//!
//! I/O here: reading the file, and `/proc/self/status` for whether the
//! process may change routing at all (CAP_NET_ADMIN).

mod yaml;

use std::fmt;
use std::fs::OpenOptions;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::core::policy;
use crate::core::types::{RouteScope, RT_TABLE_LOCAL, RT_TABLE_MAIN};
use yaml::{Ctx, Node};

pub const DEFAULT_PATH: &str = "/etc/netevd/netevd.yaml";

/// The largest configuration file read: far beyond any real one, small
/// enough that parsing it cannot stall the loop or hold much memory.
pub const MAX_SIZE: u64 = 1 << 20;

/// CAP_NET_ADMIN's bit in the capability sets.
const CAP_NET_ADMIN: u32 = 12;

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
    /// `monitoring.routes`: which routing tables the daemon mirrors.
    pub routes: RouteScope,
    /// `routing`: per-interface policy routing.
    pub policy: policy::Settings,
    /// `control`: the JSON Lines control socket.
    pub control: ControlSettings,
    pub timeout: Duration,
    pub run_on_startup: bool,
    pub max_parallel: usize,
    /// Netlink socket receive buffer in bytes.
    pub netlink_rcvbuf: usize,
    /// What the buffer may grow to after overruns.
    pub netlink_rcvbuf_max: usize,
    /// What the file asks for that this build (or this process) does not
    /// do, one line each, logged at start and at each reload.
    pub inactive: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            log_level: None,
            backend: Backend::Kernel,
            script_dir: PathBuf::from("/etc/netevd"),
            interfaces: Vec::new(),
            routes: RouteScope::All,
            policy: policy::Settings::default(),
            control: ControlSettings::default(),
            timeout: Duration::from_secs(30),
            run_on_startup: true,
            max_parallel: 4,
            netlink_rcvbuf: 4 << 20,
            netlink_rcvbuf_max: 32 << 20,
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

/// What is wrong, and where: line 0 for the file as a whole.
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

fn whole(path: &Path, msg: String) -> Error {
    Error {
        file: path.display().to_string(),
        line: 0,
        col: 0,
        msg,
    }
}

/// The file's bytes, if it is a regular file of at most [`MAX_SIZE`]
/// bytes with something in it. Opened non-blocking so that a FIFO cannot
/// hang open(2) (std adds O_CLOEXEC); the type is checked on the open
/// descriptor, so a rename in between cannot slip a FIFO in; at most
/// `MAX_SIZE + 1` bytes are read, so a file growing meanwhile is caught.
fn read(path: &Path) -> Result<Vec<u8>, Error> {
    let fail = |msg: String| whole(path, msg);
    let mut f = OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_NOCTTY)
        .open(path)
        .map_err(|e| fail(format!("cannot open: {e}")))?;
    let meta = f
        .metadata()
        .map_err(|e| fail(format!("cannot stat: {e}")))?;
    let t = meta.file_type();
    if !t.is_file() {
        let what = if t.is_dir() {
            "a directory"
        } else if t.is_fifo() {
            "a FIFO"
        } else if t.is_char_device() {
            "a character device"
        } else if t.is_block_device() {
            "a block device"
        } else if t.is_socket() {
            "a socket"
        } else {
            "of an unknown type"
        };
        return Err(fail(format!("not a regular file ({what})")));
    }
    let too_big = || fail(format!("larger than 1 MiB ({MAX_SIZE} bytes), the limit"));
    if meta.len() > MAX_SIZE {
        return Err(too_big());
    }
    let mut buf = Vec::with_capacity(meta.len() as usize + 1);
    f.by_ref()
        .take(MAX_SIZE + 1)
        .read_to_end(&mut buf)
        .map_err(|e| fail(format!("cannot read: {e}")))?;
    if buf.len() as u64 > MAX_SIZE {
        return Err(too_big());
    }
    let text = buf.strip_prefix(b"\xef\xbb\xbf").unwrap_or(&buf);
    if text.iter().all(u8::is_ascii_whitespace) {
        // Most likely caught between an editor's truncate and its write.
        return Err(fail(
            "the file is empty (a file of comments only, or `{}`, means the defaults)".into(),
        ));
    }
    Ok(buf)
}

/// Whether CapEff in a `/proc/<pid>/status` text holds `bit`.
fn cap_eff_has(status: &str, bit: u32) -> Option<bool> {
    let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
    let caps = u64::from_str_radix(hex.trim(), 16).ok()?;
    Some(caps & (1 << bit) != 0)
}

impl Config {
    /// Reads and checks `path`: anything but a readable, non-empty,
    /// well-formed file is an error, so a reload keeps what runs.
    pub fn load(path: &Path) -> Result<Config, Error> {
        let bytes = read(path)?;
        let file = path.display().to_string();
        let mut c = Config::parse(yaml::decode(&bytes, &file)?, &file)?;
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        if cap_eff_has(&status, CAP_NET_ADMIN) == Some(false) {
            c.without_net_admin();
        }
        Ok(c)
    }

    /// At start: as [`Config::load`], except that no file at all at
    /// [`DEFAULT_PATH`] means the defaults (then with `true`), so that a
    /// bare installation runs. A path given on purpose must exist.
    pub fn load_start(path: &Path) -> Result<(Config, bool), Error> {
        if path == Path::new(DEFAULT_PATH) {
            if let Err(e) = std::fs::symlink_metadata(path) {
                if e.kind() == std::io::ErrorKind::NotFound {
                    return Ok((Config::default(), true));
                }
            }
        }
        Config::load(path).map(|c| (c, false))
    }

    /// Without CAP_NET_ADMIN every rule and route would be refused, one
    /// log line per change: say it once and do no policy routing.
    fn without_net_admin(&mut self) {
        if self.policy.ifaces.is_empty() {
            return;
        }
        self.policy.ifaces.clear();
        self.inactive.push(
            "routing.policy_rules: this process lacks CAP_NET_ADMIN (CapEff in \
             /proc/self/status), so policy routing is off; run netevd as root or grant it \
             CAP_NET_ADMIN"
                .into(),
        );
    }

    /// Parses the text of a configuration file named `file`; no document
    /// at all (only comments) means the defaults.
    pub fn parse(text: &str, file: &str) -> Result<Config, Error> {
        let cx = Ctx { file };
        let mut c = Config::default();
        let Some(root) = yaml::parse(text, file)? else {
            return Ok(c);
        };
        let mut routes_at = None;
        for (k, v) in cx.map(&root, "top level")? {
            let key = cx.key(k)?;
            match key {
                "system" => c.system(&cx, v)?,
                "monitoring" => {
                    (c.interfaces, c.routes) = monitoring(&cx, v)?;
                    routes_at = Some(field(v, "routes").unwrap_or(k));
                }
                "routing" => c.policy = routing(&cx, v)?,
                "backends" => backends(&cx, v)?,
                "control" => c.control = control(&cx, v)?,
                "scripts" => c.scripts(&cx, v)?,
                "api" | "metrics" | "audit" | "filters" => {
                    if section_enabled(&cx, v, key)? {
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
                            "unknown key {other:?} (expected system, monitoring, routing, \
                             backends, control, scripts, api, metrics, audit or filters)"
                        ),
                    ))
                }
            }
        }
        if let (RouteScope::None, Some(at)) = (&c.routes, routes_at) {
            if !c.policy.ifaces.is_empty() {
                // Policy routing learns gateways from default routes and
                // finds its own routes after a restart in the mirror.
                return Err(cx.err(
                    at,
                    "monitoring.routes: none leaves routing.policy_rules without routes; \
                     use all, or list the tables with the gateways' default routes",
                ));
            }
        }
        Ok(c)
    }

    /// `system`: logging, the backend, the hooks' root, the netlink socket.
    fn system(&mut self, cx: &Ctx, v: &Node) -> Result<(), Error> {
        for (k, v) in cx.map(v, "system")? {
            match cx.key(k)? {
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
                                format!(
                                    "system.log_level: {s:?} is not one of trace, debug, info, \
                                     warn, error, off"
                                ),
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
                                format!(
                                    "system.backend: {s:?} is not one of kernel, \
                                     systemd-networkd, NetworkManager, dhclient"
                                ),
                            ))
                        }
                    };
                    if self.backend != Backend::Kernel {
                        self.inactive.push(format!(
                            "system.backend {s:?} (line {}): that backend is not built yet; \
                             running on the kernel backend",
                            v.line
                        ));
                    }
                }
                "script_dir" => self.script_dir = absolute(cx, v, "system.script_dir")?,
                "netlink_receive_buffer" => {
                    self.netlink_rcvbuf =
                        cx.uint(v, "system.netlink_receive_buffer", 4096, 1 << 30)? as usize;
                }
                "netlink_receive_buffer_max" => {
                    self.netlink_rcvbuf_max =
                        cx.uint(v, "system.netlink_receive_buffer_max", 4096, 1 << 30)? as usize;
                }
                other => return Err(unknown(cx, k, "system", other)),
            }
        }
        Ok(())
    }

    /// `scripts`: the hook runner's timeout and the scheduler's bounds.
    fn scripts(&mut self, cx: &Ctx, v: &Node) -> Result<(), Error> {
        for (k, v) in cx.map(v, "scripts")? {
            match cx.key(k)? {
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
}

/// An absolute path with no NUL in it (the parser refuses NULs).
fn absolute(cx: &Ctx, v: &Node, what: &str) -> Result<PathBuf, Error> {
    let s = cx.str(v, what)?;
    if !s.starts_with('/') {
        return Err(cx.err(v, format!("{what}: expected an absolute path")));
    }
    Ok(PathBuf::from(s))
}

/// `monitoring`: the link filter's patterns and the routes mirrored.
fn monitoring(cx: &Ctx, v: &Node) -> Result<(Vec<String>, RouteScope), Error> {
    let mut patterns = Vec::new();
    let mut routes = RouteScope::All;
    for (k, v) in cx.map(v, "monitoring")? {
        match cx.key(k)? {
            "interfaces" => {
                patterns = cx
                    .seq(v, "monitoring.interfaces")?
                    .iter()
                    .map(|p| cx.name(p, "monitoring.interfaces").map(str::to_string))
                    .collect::<Result<_, _>>()?;
            }
            "routes" => routes = route_scope(cx, v)?,
            other => return Err(unknown(cx, k, "monitoring", other)),
        }
    }
    Ok((patterns, routes))
}

/// `monitoring.routes`: `all`, `none`, or `{tables: [254, 1000, ...]}`
/// (table numbers 1 to 2^32-1; `main`, `local` and `default` as names).
fn route_scope(cx: &Ctx, v: &Node) -> Result<RouteScope, Error> {
    const WHAT: &str = "monitoring.routes";
    if let yaml::Value::Scalar(s, _) = &v.v {
        return match s.as_str() {
            "all" => Ok(RouteScope::All),
            "none" => Ok(RouteScope::None),
            other => Err(cx.err(
                v,
                format!("{WHAT}: expected all, none or {{tables: [...]}}, not {other:?}"),
            )),
        };
    }
    let yaml::Value::Map(_) = &v.v else {
        return Err(cx.err(
            v,
            format!("{WHAT}: expected all, none or {{tables: [...]}}"),
        ));
    };
    let mut tables = None;
    for (k, t) in cx.map(v, WHAT)? {
        match cx.key(k)? {
            "tables" => {
                let mut list = Vec::new();
                for n in cx.seq(t, "monitoring.routes.tables")? {
                    let id = match &n.v {
                        yaml::Value::Scalar(s, _) if s == "main" => RT_TABLE_MAIN,
                        yaml::Value::Scalar(s, _) if s == "local" => RT_TABLE_LOCAL,
                        yaml::Value::Scalar(s, _) if s == "default" => 253,
                        _ => cx.uint(n, "monitoring.routes.tables", 1, u32::MAX as u64)? as u32,
                    };
                    match list.binary_search(&id) {
                        Ok(_) => {
                            return Err(cx.err(
                                n,
                                format!("monitoring.routes.tables: table {id} is listed twice"),
                            ))
                        }
                        Err(at) => list.insert(at, id),
                    }
                }
                if list.is_empty() {
                    return Err(cx.err(
                        t,
                        "monitoring.routes.tables: empty; write `routes: none` to keep no routes",
                    ));
                }
                tables = Some(list);
            }
            other => return Err(unknown(cx, k, WHAT, other)),
        }
    }
    match tables {
        Some(t) => Ok(RouteScope::Tables(t)),
        None => Err(cx.err(v, "monitoring.routes: the mapping needs tables: [...]")),
    }
}

/// `routing`: the policy-routing planner's settings.
fn routing(cx: &Ctx, v: &Node) -> Result<policy::Settings, Error> {
    let mut p = policy::Settings::default();
    let mut list = None;
    for (k, v) in cx.map(v, "routing")? {
        match cx.key(k)? {
            "policy_rules" => list = Some(v),
            "table_base" => {
                p.table_base = cx.uint(v, "routing.table_base", 256, 1 << 31)? as u32;
            }
            "from_priority" => p.from_priority = priority(cx, v, "routing.from_priority")?,
            "to_priority" => p.to_priority = priority(cx, v, "routing.to_priority")?,
            other => return Err(unknown(cx, k, "routing", other)),
        }
    }
    if let Some(list) = list {
        let mut taken = Taken::default();
        for item in cx.seq(list, "routing.policy_rules")? {
            let iface = policy_entry(cx, item)?;
            taken.claim(cx, item, &iface)?;
            p.ifaces.push(iface);
        }
    }
    Ok(p)
}

/// Tables, priorities and names given explicitly by the entries so far,
/// with whose they are, so that a clash names both.
#[derive(Default)]
struct Taken {
    names: Vec<String>,
    tables: Vec<(u32, String)>,
    prios: Vec<(u32, String)>,
}

impl Taken {
    fn claim(&mut self, cx: &Ctx, item: &Node, i: &policy::Iface) -> Result<(), Error> {
        if self.names.contains(&i.name) {
            return Err(cx.err(
                item,
                format!("routing.policy_rules: {} is listed twice", i.name),
            ));
        }
        let clash = |list: &[(u32, String)], v: Option<u32>, key: &str, what: &str| {
            let v = v?;
            let (_, who) = list.iter().find(|(x, _)| *x == v)?;
            Some(cx.err(
                field(item, key).unwrap_or(item),
                format!("routing.policy_rules.{key}: {what} {v} is already {who}'s"),
            ))
        };
        let clashes = [
            clash(&self.tables, i.table, "table", "table"),
            clash(&self.prios, i.from_priority, "from_priority", "priority"),
            clash(&self.prios, i.to_priority, "to_priority", "priority"),
        ];
        if let Some(e) = clashes.into_iter().flatten().next() {
            return Err(e);
        }
        self.names.push(i.name.clone());
        self.tables.extend(i.table.map(|t| (t, i.name.clone())));
        for p in [i.from_priority, i.to_priority].into_iter().flatten() {
            self.prios.push((p, i.name.clone()));
        }
        Ok(())
    }
}

/// The value node of `key` in a mapping node.
fn field<'n>(n: &'n Node, key: &str) -> Option<&'n Node> {
    match &n.v {
        yaml::Value::Map(m) => m
            .iter()
            .find(|(k, _)| matches!(&k.v, yaml::Value::Scalar(s, _) if s == key))
            .map(|(_, v)| v),
        _ => None,
    }
}

/// One `routing.policy_rules` entry: a name, or a mapping with the
/// interface's own table and priorities.
fn policy_entry(cx: &Ctx, item: &Node) -> Result<policy::Iface, Error> {
    let what = |key: &str| format!("routing.policy_rules.{key}");
    let mut iface = policy::Iface {
        name: String::new(),
        table: None,
        from_priority: None,
        to_priority: None,
    };
    match &item.v {
        yaml::Value::Scalar(..) => iface.name = cx.name(item, "routing.policy_rules")?.into(),
        yaml::Value::Map(m) => {
            for (k, v) in m {
                match cx.key(k)? {
                    "interface" => iface.name = cx.name(v, &what("interface"))?.to_string(),
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
                        iface.table = Some(t);
                    }
                    "from_priority" => {
                        iface.from_priority = Some(priority(cx, v, &what("from_priority"))?)
                    }
                    "to_priority" => {
                        iface.to_priority = Some(priority(cx, v, &what("to_priority"))?)
                    }
                    other => return Err(unknown(cx, k, "routing.policy_rules", other)),
                }
            }
        }
        yaml::Value::Seq(_) => {
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
    Ok(iface)
}

/// `backends`: checked for the existing schema; nothing reads it yet.
fn backends(cx: &Ctx, v: &Node) -> Result<(), Error> {
    for (k, v) in cx.map(v, "backends")? {
        let name = cx.key(k)?;
        let keys: &[&str] = match name {
            "systemd_networkd" => &["emit_json"],
            "dhclient" => &["use_dns", "use_domain", "use_hostname"],
            "networkmanager" => &[],
            other => {
                return Err(cx.err(
                    k,
                    format!(
                        "unknown key {other:?} in backends (expected systemd_networkd, \
                         dhclient or networkmanager)"
                    ),
                ))
            }
        };
        for (k2, v2) in cx.map(v, name)? {
            let key = cx.key(k2)?;
            if !keys.contains(&key) {
                return Err(unknown(cx, k2, &format!("backends.{name}"), key));
            }
            cx.bool(v2, &format!("backends.{name}.{key}"))?;
        }
    }
    Ok(())
}

/// `control`: the control socket's settings.
fn control(cx: &Ctx, v: &Node) -> Result<ControlSettings, Error> {
    let mut c = ControlSettings::default();
    for (k, v) in cx.map(v, "control")? {
        match cx.key(k)? {
            "socket" => {
                c.socket = absolute(cx, v, "control.socket")?;
                // sun_path holds 108 bytes with the terminating NUL.
                if c.socket.as_os_str().len() > 107 {
                    return Err(cx.err(v, "control.socket: longer than 107 bytes"));
                }
            }
            "enabled" => c.enabled = cx.bool(v, "control.enabled")?,
            "group" => {
                c.group = if v.is_null() {
                    None
                } else {
                    Some(cx.str(v, "control.group")?.to_string()).filter(|s| !s.is_empty())
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
                                 (read and write bits only), not {s:?}"
                            ),
                        ))
                    }
                };
            }
            "max_clients" => c.max_clients = cx.uint(v, "control.max_clients", 1, 4096)? as usize,
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
    Ok(c)
}

/// A section of a feature not built yet counts as asked for unless it says
/// `enabled: false`; `enabled` must be a real boolean. `filters` is a list
/// in the existing schema: asked for when not empty.
fn section_enabled(cx: &Ctx, v: &Node, section: &str) -> Result<bool, Error> {
    if let yaml::Value::Seq(items) = &v.v {
        if section == "filters" {
            return Ok(!items.is_empty());
        }
    }
    for (k, v) in cx.map(v, section)? {
        if cx.key(k)? == "enabled" {
            return cx.bool(v, &format!("{section}.enabled"));
        }
    }
    Ok(true)
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
                "t.yaml:2:20: scripts.timeout_seconds: expected a number (a plain decimal integer), not \"ten\"",
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

    /// A scratch file holding `bytes`, removed on drop.
    struct Temp(PathBuf);

    impl Temp {
        fn new(name: &str, bytes: &[u8]) -> Temp {
            let p = std::env::temp_dir().join(format!("netevd-unit-{}-{name}", std::process::id()));
            std::fs::write(&p, bytes).unwrap();
            Temp(p)
        }
    }

    impl Drop for Temp {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    #[test]
    fn load_is_strict() {
        let e = Config::load(Path::new("/nonexistent/netevd.yaml")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "/nonexistent/netevd.yaml: cannot open: No such file or directory (os error 2)"
        );
        // Only the default path may be missing, and only at start.
        let e = Config::load_start(Path::new("/nonexistent/netevd.yaml")).unwrap_err();
        assert!(e.msg.starts_with("cannot open"), "{e}");
        if !Path::new(DEFAULT_PATH).exists() {
            let (c, defaults) = Config::load_start(Path::new(DEFAULT_PATH)).unwrap();
            assert!(defaults && c == Config::default());
        }
        let e = Config::load(Path::new("/dev/null"))
            .unwrap_err()
            .to_string();
        assert_eq!(e, "/dev/null: not a regular file (a character device)");
        let e = Config::load(Path::new("/")).unwrap_err().to_string();
        assert_eq!(e, "/: not a regular file (a directory)");
        for (name, text) in [
            ("empty", &b""[..]),
            ("blank", b"\n  \n"),
            ("bom", b"\xef\xbb\xbf"),
        ] {
            let t = Temp::new(name, text);
            let e = Config::load(&t.0).unwrap_err();
            assert!(e.msg.starts_with("the file is empty"), "{name}: {e}");
        }
        let t = Temp::new("comments", b"# all defaults\n");
        assert_eq!(Config::load(&t.0).unwrap(), Config::default());
    }

    #[test]
    fn load_caps_the_size() {
        let mut big = b"# ".to_vec();
        big.resize(MAX_SIZE as usize, b'x');
        big[MAX_SIZE as usize - 1] = b'\n';
        let t = Temp::new("at-cap", &big);
        assert_eq!(Config::load(&t.0).unwrap(), Config::default());
        big.push(b'\n');
        let t = Temp::new("over-cap", &big);
        let e = Config::load(&t.0).unwrap_err().to_string();
        assert!(
            e.ends_with("larger than 1 MiB (1048576 bytes), the limit"),
            "{e}"
        );
    }

    #[test]
    fn load_refuses_bad_bytes_with_their_position() {
        let cases: [(&[u8], &str); 4] = [
            (
                b"system:\n  log_level: de\0bug\n",
                "t:2:16: a NUL byte: the file must be text",
            ),
            (b"\0\0\0\0", "t:1:1: a NUL byte"),
            (
                b"system:\n  log_level: \"d\xc3\xa9\xff\"\n",
                "t:2:17: not valid UTF-8",
            ),
            (b"scripts:\n\x07", "t:2:1: the control character 0x07"),
        ];
        for (bytes, want) in cases {
            let e = yaml::decode(bytes, "t")
                .and_then(|s| Config::parse(s, "t"))
                .unwrap_err()
                .to_string();
            assert!(e.starts_with(want), "{bytes:?}: got {e:?}, want {want:?}");
        }
        // The same through load, which names the file.
        let t = Temp::new("nul", b"scripts: {}\n\0 anything after\n");
        let e = Config::load(&t.0).unwrap_err();
        assert_eq!((e.line, e.col), (2, 1), "{e}");
    }

    #[test]
    fn a_leading_bom_is_skipped() {
        let bytes = b"\xef\xbb\xbfscripts:\n  max_parallel: 2\n";
        let c = Config::parse(yaml::decode(bytes, "t").unwrap(), "t").unwrap();
        assert_eq!(c.max_parallel, 2);
        let c = parse("\u{feff}scripts:\n  max_parallel: 3\n").unwrap();
        assert_eq!(c.max_parallel, 3);
        // One only: a second is text, and an unknown key.
        let e = parse("\u{feff}\u{feff}scripts: {}\n").unwrap_err();
        assert_eq!((e.line, e.col), (1, 1), "{e}");
    }

    #[test]
    fn structure_is_strict() {
        let cases = [
            (
                "scripts: {}\n---\nsystem: {}\n",
                "t.yaml:2:1: a second YAML document",
            ),
            (
                "---\nscripts: {}\n...\n---\n",
                "t.yaml:4:1: a second YAML document",
            ),
            (
                "system:\n  log_level: info\nscripts: {}\nsystem: {}\n",
                "t.yaml:4:1: duplicate key \"system\": already given at line 1",
            ),
            (
                "scripts:\n  max_parallel: 1\n  max_parallel: 2\n",
                "t.yaml:3:3: duplicate key \"max_parallel\": already given at line 2",
            ),
            // also in sections nothing reads yet
            (
                "filters:\n  - a: 1\n    a: 2\n",
                "t.yaml:3:5: duplicate key \"a\"",
            ),
            (
                "system:\n  script_dir: \"/tmp/a\\0b\"\n",
                "t.yaml:2:15: a NUL character in a string",
            ),
            (
                "scripts:\n  max_parallel: !!int 3\n",
                "t.yaml:2:23: tags (!...) are not supported",
            ),
            (
                &format!("a: {}1\n", "[".repeat(40)),
                "t.yaml:1:35: nested deeper than 32 levels",
            ),
        ];
        for (text, want) in cases {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.starts_with(want), "{text:?}: got {e:?}, want {want:?}");
        }
        let deep = format!("{}x\n", "- ".repeat(100_000));
        let e = parse(&format!("a:\n {deep}")).unwrap_err().to_string();
        assert!(e.contains("nested deeper than 32 levels"), "{e}");
        // The top-level mapping, the key `filters`, its list: 3 nodes.
        let items = |n: usize| format!("filters: [{}]\n", vec!["a"; n].join(", "));
        parse(&items(yaml::MAX_NODES - 3)).unwrap();
        let e = parse(&items(yaml::MAX_NODES - 2)).unwrap_err().to_string();
        assert!(
            e.starts_with("t.yaml:1:30002: more than 10000 values"),
            "{e}"
        );
        // 32 levels are fine (the top level mapping is the first).
        let ok = format!("filters: {}1{}\n", "[".repeat(31), "]".repeat(31));
        let c = parse(&ok).unwrap();
        assert!(
            c.inactive[0].starts_with("filters (line 1)"),
            "{:?}",
            c.inactive
        );
        assert!(parse("filters: []\n").unwrap().inactive.is_empty());
    }

    #[test]
    fn scalars_are_strict() {
        let cases = [
            (
                "scripts:\n  max_parallel: \"5\"\n",
                "t.yaml:2:17: scripts.max_parallel: expected a number, not the string \"5\" (write it without quotes)",
            ),
            (
                "scripts:\n  max_parallel: 005\n",
                "t.yaml:2:17: scripts.max_parallel: \"005\" has a leading zero; write a plain decimal integer",
            ),
            ("scripts:\n  max_parallel: +5\n", "t.yaml:2:17: scripts.max_parallel: expected a number (a plain decimal integer), not \"+5\""),
            ("scripts:\n  max_parallel: 0x10\n", "expected a number (a plain decimal integer), not \"0x10\""),
            ("scripts:\n  max_parallel: 1_0\n", "not \"1_0\""),
            ("scripts:\n  max_parallel: 99999999999999999999999\n", "99999999999999999999999 is out of range 1..=1024"),
            ("scripts:\n  run_on_startup: yes\n", "t.yaml:2:19: scripts.run_on_startup: expected true or false, not \"yes\""),
            ("scripts:\n  run_on_startup: \"true\"\n", "expected true or false, not the string \"true\""),
            ("api:\n  enabled: maybe\n", "t.yaml:2:12: api.enabled: expected true or false, not \"maybe\""),
            ("metrics:\n  enabled: on\n", "t.yaml:2:12: metrics.enabled: expected true or false, not \"on\""),
            ("monitoring:\n  interfaces: [~, 5]\n", "t.yaml:2:16: monitoring.interfaces: expected a string, not null"),
            ("monitoring:\n  interfaces: [eth0, true]\n", "t.yaml:2:22: monitoring.interfaces: expected an interface name, not the boolean true"),
            ("monitoring:\n  interfaces: [\"\"]\n", "t.yaml:2:16: monitoring.interfaces: empty name"),
            ("routing:\n  policy_rules: [null]\n", "t.yaml:2:18: routing.policy_rules: expected a string, not null"),
            ("routing:\n  policy_rules:\n    - interface:\n", "t.yaml:3:7: routing.policy_rules.interface: expected a string, not null"),
            ("system:\n  script_dir: ~\n", "t.yaml:2:15: system.script_dir: expected a string, not null"),
            ("system:\n  log_level:\n", "t.yaml:2:3: system.log_level: expected a string, not null"),
            ("~: 1\n", "t.yaml:1:1: expected a key"),
        ];
        for (text, want) in cases {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(want), "{text:?}: got {e:?}, want {want:?}");
        }
        // A plain number is a name as written; quoted, anything is.
        let c = parse("monitoring:\n  interfaces: [5, 007, \"true\"]\n").unwrap();
        assert_eq!(c.interfaces, vec!["5", "007", "true"]);
        let c = parse("scripts:\n  max_parallel: 0\n").unwrap_err();
        assert!(c.msg.contains("0 is out of range"), "{c}");
        let c = parse("scripts:\n  run_on_startup: False\ncontrol:\n  idle_timeout_seconds: 0\n  group: ~\napi:\n  enabled: FALSE\n").unwrap();
        assert!(!c.run_on_startup && c.inactive.is_empty());
        assert_eq!(c.control.idle_timeout, Duration::ZERO);
        assert_eq!(c.control.group, None);
    }

    #[test]
    fn capabilities() {
        let status = "Name:\tnetevd\nCapInh:\t0000000000000000\nCapEff:\t000001ffffffffff\n";
        assert_eq!(cap_eff_has(status, CAP_NET_ADMIN), Some(true));
        let status = "CapEff:\t000001ffffffefff\n";
        assert_eq!(cap_eff_has(status, CAP_NET_ADMIN), Some(false));
        assert_eq!(cap_eff_has("Name: x\n", CAP_NET_ADMIN), None);

        let mut c = parse("routing:\n  policy_rules: [eth1]\n").unwrap();
        c.without_net_admin();
        assert!(c.policy.ifaces.is_empty());
        assert_eq!(c.inactive.len(), 1);
        assert!(c.inactive[0].contains("CAP_NET_ADMIN"), "{:?}", c.inactive);
        // nothing to say without policy routing
        let mut c = Config::default();
        c.without_net_admin();
        assert!(c.inactive.is_empty());
    }

    #[test]
    fn monitoring_routes() {
        assert_eq!(Config::default().routes, RouteScope::All);
        let r = |y: &str| parse(&format!("monitoring:\n  routes: {y}\n")).map(|c| c.routes);
        assert_eq!(r("all").unwrap(), RouteScope::All);
        assert_eq!(r("none").unwrap(), RouteScope::None);
        assert_eq!(
            r("{tables: [1000, main, local, 4294967295]}").unwrap(),
            RouteScope::Tables(vec![254, 255, 1000, u32::MAX])
        );
        let c = parse(
            "system:\n  netlink_receive_buffer: 4096\n  netlink_receive_buffer_max: 1048576\n",
        )
        .unwrap();
        assert_eq!((c.netlink_rcvbuf, c.netlink_rcvbuf_max), (4096, 1 << 20));
        let cases = [
            ("some", "t.yaml:2:11: monitoring.routes: expected all, none or {tables: [...]}, not \"some\""),
            ("[254]", "t.yaml:2:11: monitoring.routes: expected all, none or {tables: [...]}"),
            ("{}", "t.yaml:2:11: monitoring.routes: the mapping needs tables: [...]"),
            ("{tables: []}", "t.yaml:2:20: monitoring.routes.tables: empty; write `routes: none`"),
            ("{tables: [0]}", "t.yaml:2:21: monitoring.routes.tables: 0 is out of range 1..=4294967295"),
            ("{tables: [254, main]}", "t.yaml:2:26: monitoring.routes.tables: table 254 is listed twice"),
            ("{tables: [x]}", "monitoring.routes.tables: expected a number (a plain decimal integer), not \"x\""),
            ("{table: [1]}", "t.yaml:2:12: unknown key \"table\" in monitoring.routes"),
        ];
        for (y, want) in cases {
            let e = r(y).unwrap_err().to_string();
            assert!(e.starts_with(want) || e.contains(want), "{y}: {e}");
        }
        let e = parse("monitoring:\n  routes: none\nrouting:\n  policy_rules: [eth1]\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(
                "t.yaml:2:11: monitoring.routes: none leaves routing.policy_rules without routes"
            ),
            "{e}"
        );
    }
}
