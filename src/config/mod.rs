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

mod watch;
mod yaml;

pub use watch::Watch;

use std::fmt;
use std::fs::OpenOptions;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::core::filter::{self, Action, Condition, EventType, Family, Filter};
use crate::core::types::{RouteScope, RT_TABLE_LOCAL, RT_TABLE_MAIN};
use crate::core::{metrics, policy};
use yaml::{Ctx, Node};

pub const DEFAULT_PATH: &str = "/etc/netevd/netevd.yaml";

/// The largest configuration file read: far beyond any real one, small
/// enough that parsing it cannot stall the loop or hold much memory.
pub const MAX_SIZE: u64 = 1 << 20;

/// CAP_NET_ADMIN's bit in the capability sets.
const CAP_NET_ADMIN: u32 = 12;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Backend {
    /// The default: systemd-networkd if it holds its bus name, else
    /// NetworkManager, else dhclient if lease files exist, else the kernel.
    Auto,
    Kernel,
    Networkd,
    NetworkManager,
    Dhclient,
}

impl Backend {
    pub fn as_str(&self) -> &'static str {
        match self {
            Backend::Auto => "auto",
            Backend::Kernel => "kernel",
            Backend::Networkd => "systemd-networkd",
            Backend::NetworkManager => "NetworkManager",
            Backend::Dhclient => "dhclient",
        }
    }

    #[cfg_attr(not(feature = "dbus"), allow(dead_code))]
    /// What `auto` picks, in this order: networkd holding its bus name,
    /// NetworkManager holding its, dhclient when its lease files exist,
    /// else the kernel alone.
    pub fn auto(networkd: bool, network_manager: bool, dhclient_leases: bool) -> Backend {
        if networkd {
            Backend::Networkd
        } else if network_manager {
            Backend::NetworkManager
        } else if dhclient_leases {
            Backend::Dhclient
        } else {
            Backend::Kernel
        }
    }
}

/// `backends.*` that this build reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendSettings {
    /// `backends.systemd_networkd.emit_json`: networkd's `Describe` JSON
    /// in the hooks' `JSON`.
    pub emit_json: bool,
    /// `backends.systemd_networkd.state_dir`: where networkd writes its
    /// state files (`links/<N>`, `leases/<N>`), read for DNS, DOMAINS and
    /// HOSTNAME.
    pub networkd_state_dir: PathBuf,
    /// `backends.dhclient.use_dns`, `use_domain`, `use_hostname` (the
    /// existing schema's place for them): hand the link's name servers,
    /// domains and host name to systemd-resolved and systemd-hostnamed.
    pub use_dns: bool,
    pub use_domain: bool,
    pub use_hostname: bool,
    /// `backends.systemd_networkd.networkd_dispatcher_dir`: also run
    /// networkd-dispatcher's hook tree (compatibility mode).
    pub networkd_dispatcher_dir: Option<PathBuf>,
    /// `backends.networkmanager.dispatcher_dir`: also run
    /// NetworkManager-dispatcher's scripts (compatibility mode).
    pub nm_dispatcher_dir: Option<PathBuf>,
}

impl Default for BackendSettings {
    fn default() -> Self {
        BackendSettings {
            emit_json: false,
            networkd_state_dir: PathBuf::from("/run/systemd/netif"),
            use_dns: false,
            use_domain: false,
            use_hostname: false,
            networkd_dispatcher_dir: None,
            nm_dispatcher_dir: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub log_level: Option<log::LevelFilter>,
    pub backend: Backend,
    pub backends: BackendSettings,
    pub script_dir: PathBuf,
    /// `monitoring.interfaces`: glob patterns, empty for all links.
    pub interfaces: Vec<String>,
    /// `monitoring.routes`: which routing tables the daemon mirrors.
    pub routes: RouteScope,
    /// `routing`: per-interface policy routing.
    pub policy: policy::Settings,
    /// `control`: the JSON Lines control socket.
    pub control: ControlSettings,
    /// `filters`: which events run which hooks, first match first.
    pub filters: Vec<Filter>,
    /// `api`: the HTTP shim.
    pub api: ApiSettings,
    pub timeout: Duration,
    pub run_on_startup: bool,
    pub max_parallel: usize,
    /// Netlink socket receive buffer in bytes.
    pub netlink_rcvbuf: usize,
    /// `metrics`: the registry's label bounds.
    pub metrics: metrics::Settings,
    /// `audit`: the audit log.
    pub audit: AuditSettings,
    /// `system.user`: the user the loop drops to at start, a privileged
    /// spawner staying behind for the hooks. None: stay as started.
    pub user: Option<String>,
    /// `scripts.user`: the user hooks run as. None: root (or, without
    /// privileges, the daemon's own user).
    pub hook_user: Option<String>,
    /// `backends.dhclient`: the lease files watched.
    pub dhclient: DhclientSettings,
    /// What the buffer may grow to after overruns.
    pub netlink_rcvbuf_max: usize,
    /// What the file asks for that this build (or this process) does not
    /// do, one line each, logged at start and at each reload.
    pub inactive: Vec<String>,
    /// `system.watch_config`: reload when the file or `conf.d` changes.
    pub watch_config: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            log_level: None,
            backend: Backend::Auto,
            backends: BackendSettings::default(),
            script_dir: PathBuf::from("/etc/netevd"),
            interfaces: Vec::new(),
            routes: RouteScope::All,
            policy: policy::Settings::default(),
            control: ControlSettings::default(),
            filters: Vec::new(),
            api: ApiSettings::default(),
            timeout: Duration::from_secs(30),
            run_on_startup: true,
            max_parallel: 4,
            netlink_rcvbuf: 4 << 20,
            metrics: metrics::Settings::default(),
            audit: AuditSettings::default(),
            user: None,
            hook_user: None,
            dhclient: DhclientSettings::default(),
            netlink_rcvbuf_max: 32 << 20,
            inactive: Vec::new(),
            watch_config: false,
        }
    }
}

/// `audit.*`: where the audit log goes and how big it may grow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditSettings {
    pub enabled: bool,
    /// `audit.path`, or `audit.log_path` as the existing netevd spelt it.
    pub path: PathBuf,
    /// The file is rotated before it grows past this many bytes.
    pub max_size: u64,
    /// Rotated files kept: `path.1` (the newest) to `path.<keep>`.
    pub keep: u32,
    /// `audit.retention_days`: rotated files older than this are removed
    /// at the next rotation. None: kept until `keep` pushes them out.
    pub retention_days: Option<u32>,
}

impl Default for AuditSettings {
    fn default() -> Self {
        AuditSettings {
            enabled: false,
            path: PathBuf::from("/var/log/netevd/audit.jsonl"),
            max_size: 10 << 20,
            keep: 5,
            retention_days: None,
        }
    }
}

/// `backends.dhclient.*` that the lease watcher reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DhclientSettings {
    /// Absolute paths; the file name may be a glob (`*`, `?`, `[...]`).
    pub lease_files: Vec<PathBuf>,
}

/// Where Debian (`dhclient.leases`, `dhclient.<iface>.leases`,
/// `dhclient6.leases`) and Fedora (`dhclient-<uuid>-<iface>.lease`,
/// `dhclient.leases`) keep dhclient's leases.
pub const DEFAULT_LEASE_FILES: [&str; 3] = [
    "/var/lib/dhcp/dhclient*.leases",
    "/var/lib/dhclient/*.lease",
    "/var/lib/dhclient/*.leases",
];

/// Lease file patterns at most.
pub const MAX_LEASE_FILES: usize = 32;

impl Default for DhclientSettings {
    fn default() -> Self {
        DhclientSettings {
            lease_files: DEFAULT_LEASE_FILES.iter().map(PathBuf::from).collect(),
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

/// `api.*`: the HTTP shim (feature `http`). Nothing listens unless
/// `enabled` is true.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiSettings {
    pub enabled: bool,
    pub bind_address: std::net::IpAddr,
    pub port: u16,
    /// How long one request may take to arrive, from its first byte to its
    /// last: a slower one gets 408 and the connection is closed.
    pub request_timeout: Duration,
    /// A keep-alive connection with no request and no output taken for
    /// this long is closed.
    pub idle_timeout: Duration,
    pub max_clients: usize,
    /// Bytes queued for one client before it is dropped as too slow.
    pub max_queue: usize,
    /// The bearer token, read from `auth_token_file` at load.
    pub auth_token: Option<Secret>,
    pub auth_token_file: Option<PathBuf>,
    /// With a token: reads need it too, not only POST.
    pub auth_required_for_reads: bool,
    /// `api.rate_limiting`; None when disabled.
    pub rate: Option<RateSettings>,
    /// `api.tls`; None for plain HTTP.
    pub tls: Option<TlsSettings>,
}

impl Default for ApiSettings {
    fn default() -> Self {
        ApiSettings {
            enabled: false,
            bind_address: std::net::IpAddr::from([127, 0, 0, 1]),
            port: 9090,
            request_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_clients: 1024,
            max_queue: 1 << 20,
            auth_token: None,
            auth_token_file: None,
            auth_required_for_reads: false,
            rate: Some(RateSettings::default()),
            tls: None,
        }
    }
}

/// `api.rate_limiting`: a token bucket per client IP address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateSettings {
    /// Tokens added per second.
    pub requests_per_second: u32,
    /// The bucket's size: the burst a client may send at once.
    pub burst: u32,
    /// Loopback clients are not limited.
    pub exempt_loopback: bool,
}

impl Default for RateSettings {
    fn default() -> Self {
        RateSettings {
            requests_per_second: 50,
            burst: 100,
            exempt_loopback: true,
        }
    }
}

/// `api.tls`: certificate and key (PEM), and a CA whose client
/// certificates are required when given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsSettings {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub client_ca_file: Option<PathBuf>,
}

/// A secret read from a file: its Debug form (which the configuration's
/// fingerprint and logs see) shows only a fingerprint, never the bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub Vec<u8>);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for &x in &self.0 {
            h ^= x as u64;
            h = h.wrapping_mul(0x100_0000_01b3);
        }
        write!(f, "Secret({} bytes, {h:016x})", self.0.len())
    }
}

/// The largest token file read.
#[cfg(feature = "http")]
pub const MAX_TOKEN_FILE: u64 = 4096;

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

/// The most files `conf.d/` may hold; more is an error, not a silent cut.
pub const MAX_INCLUDES: usize = 64;

/// `conf.d` next to the main file: its `*.yaml` files are read after it.
pub fn include_dir(main: &Path) -> PathBuf {
    main.parent().unwrap_or(Path::new("/")).join("conf.d")
}

/// Whether a file in `conf.d` is read: `*.yaml`, not hidden (editors'
/// swap files, a ConfigMap's `..data`).
pub fn is_include_name(name: &[u8]) -> bool {
    name.ends_with(b".yaml") && !name.starts_with(b".") && name.len() > 5
}

/// The `conf.d/*.yaml` files in byte order of their names; none when the
/// directory does not exist.
fn includes(dir: &Path) -> Result<Vec<PathBuf>, Error> {
    use std::os::unix::ffi::OsStrExt;
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(whole(dir, format!("cannot read the directory: {e}"))),
    };
    let mut files = Vec::new();
    for e in rd {
        let e = e.map_err(|e| whole(dir, format!("cannot read the directory: {e}")))?;
        if is_include_name(e.file_name().as_bytes()) {
            files.push(e.path());
        }
    }
    if files.len() > MAX_INCLUDES {
        return Err(whole(
            dir,
            format!("{} files, more than {MAX_INCLUDES}, the limit", files.len()),
        ));
    }
    // One directory: paths compare by their last component's bytes.
    // Unstable: no two are equal, and it is the instance hooks.rs uses.
    files.sort_unstable();
    Ok(files)
}

impl Config {
    /// Reads and checks `path` and then `conf.d/*.yaml` next to it:
    /// anything but readable, non-empty, well-formed files is an error, so
    /// a reload keeps what runs.
    pub fn load(path: &Path) -> Result<Config, Error> {
        let mut texts = vec![(path.display().to_string(), read(path)?)];
        for p in includes(&include_dir(path))? {
            let bytes = read(&p)?;
            texts.push((p.display().to_string(), bytes));
        }
        let mut c = Config::parse_files(&texts)?;
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
    #[cfg(test)]
    pub fn parse(text: &str, file: &str) -> Result<Config, Error> {
        let root = yaml::parse(text, file)?;
        Config::build(root, &Ctx { file, files: &[] })
    }

    /// Parses several files (name, bytes), each laid over the ones before
    /// it ([`yaml::merge`]): the main file first, then `conf.d/*.yaml`.
    /// Every error names the file it is in.
    fn parse_files(texts: &[(String, Vec<u8>)]) -> Result<Config, Error> {
        let mut root: Option<yaml::Node> = None;
        for (i, (file, bytes)) in texts.iter().enumerate() {
            let Some(tree) = yaml::parse_nth(yaml::decode(bytes, file)?, file, i)? else {
                continue;
            };
            if !matches!(tree.v, yaml::Value::Map(_)) {
                // As the one-file case says it, with this file's name.
                let cx = Ctx { file, files: &[] };
                cx.map(&tree, "top level")?;
            }
            match root.as_mut() {
                Some(r) => yaml::merge(r, tree),
                None => root = Some(tree),
            }
        }
        let names: Vec<String> = texts.iter().map(|(f, _)| f.clone()).collect();
        let main = texts.first().map_or("", |(f, _)| f.as_str());
        Config::build(
            root,
            &Ctx {
                file: main,
                files: &names,
            },
        )
    }

    /// The configuration a parsed tree describes.
    fn build(root: Option<yaml::Node>, cx: &Ctx) -> Result<Config, Error> {
        let mut c = Config::default();
        let Some(root) = root else {
            return Ok(c);
        };
        let mut routes_at = None;
        for (k, v) in cx.map(&root, "top level")? {
            let key = cx.key(k)?;
            match key {
                "system" => c.system(cx, v)?,
                "monitoring" => {
                    (c.interfaces, c.routes) = monitoring(cx, v)?;
                    routes_at = Some(field(v, "routes").unwrap_or(k));
                }
                "routing" => c.policy = routing(cx, v)?,
                "backends" => (c.backends, c.dhclient) = backends(cx, v)?,
                "control" => c.control = control(cx, v)?,
                "scripts" => c.scripts(cx, v)?,
                "metrics" => {
                    c.metrics = metrics_section(cx, v, &mut c.inactive)?;
                    // As `api`: the section counts as asked for unless it
                    // says `enabled: false`.
                    if c.metrics.enabled && !cfg!(feature = "metrics") {
                        c.metrics.enabled = false;
                        c.inactive.push(format!(
                            "metrics (line {}): this netevd was built without the metrics \
                             exposition (cargo feature metrics); `metrics` and /metrics \
                             answer that it is off",
                            k.line
                        ));
                    }
                }
                "audit" => {
                    c.audit = audit(cx, v)?;
                    if c.audit.enabled && !cfg!(feature = "audit") {
                        c.audit.enabled = false;
                        c.inactive.push(format!(
                            "audit (line {}): this netevd was built without the audit log \
                             (cargo feature audit); nothing is written",
                            k.line
                        ));
                    }
                }
                "filters" => c.filters = filters(cx, v)?,
                // A build without the shim (the minimal, kernel-only one)
                // treats the section as the others it lacks, and carries
                // no code to read it.
                #[cfg(not(feature = "http"))]
                "api" => {
                    if section_enabled(cx, v, key)? {
                        c.inactive.push(format!(
                            "api (line {}): this netevd was built without the HTTP shim \
                             (cargo feature http); nothing listens",
                            k.line
                        ));
                    }
                }
                #[cfg(feature = "http")]
                "api" => {
                    c.api = api(cx, v)?;
                    if c.api.enabled && c.api.tls.is_some() && !cfg!(feature = "tls") {
                        return Err(cx.err(
                            k,
                            "api.tls: this netevd was built without TLS (cargo feature tls); \
                             refusing to serve plain HTTP where HTTPS was asked for",
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
                        "auto" => Backend::Auto,
                        "kernel" => Backend::Kernel,
                        "systemd-networkd" | "networkd" => Backend::Networkd,
                        "NetworkManager" | "networkmanager" => Backend::NetworkManager,
                        "dhclient" => Backend::Dhclient,
                        _ => {
                            return Err(cx.err(
                                v,
                                format!(
                                    "system.backend: {s:?} is not one of auto, kernel, \
                                     systemd-networkd, NetworkManager, dhclient"
                                ),
                            ))
                        }
                    };
                    let dbus = matches!(self.backend, Backend::Networkd | Backend::NetworkManager);
                    if self.backend == Backend::Dhclient && !cfg!(feature = "dhclient") {
                        self.inactive.push(format!(
                            "system.backend {s:?} (line {}): this build has no dhclient \
                             backend (cargo feature dhclient); running on the kernel backend",
                            v.line
                        ));
                    } else if dbus && !cfg!(feature = "dbus") {
                        self.inactive.push(format!(
                            "system.backend {s:?} (line {}): built without the dbus feature; \
                             running on the kernel backend",
                            v.line
                        ));
                    }
                }
                "script_dir" => self.script_dir = absolute(cx, v, "system.script_dir")?,
                "user" => {
                    self.user = user_name(cx, v, "system.user")?;
                    if cfg!(not(feature = "privsep")) && self.user.is_some() {
                        self.inactive.push(format!(
                            "system.user (line {}): this build has no privilege separation \
                             (feature privsep); netevd keeps running as it was started",
                            v.line
                        ));
                    }
                }
                "netlink_receive_buffer" => {
                    self.netlink_rcvbuf =
                        cx.uint(v, "system.netlink_receive_buffer", 4096, 1 << 30)? as usize;
                }
                "watch_config" => self.watch_config = cx.bool(v, "system.watch_config")?,
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
                "user" => self.hook_user = user_name(cx, v, "scripts.user")?,
                "max_parallel" => {
                    self.max_parallel = cx.uint(v, "scripts.max_parallel", 1, 1024)? as usize;
                }
                other => return Err(unknown(cx, k, "scripts", other)),
            }
        }
        Ok(())
    }
}

/// A user name as useradd(8) allows them (letters, digits, `_`, `-`,
/// `.`, a trailing `$`, at most 32 bytes, not all digits), or a null or
/// empty string for none. Whether the user exists is checked at start,
/// when it is needed: a file may be validated on another machine.
fn user_name(cx: &Ctx, v: &Node, what: &str) -> Result<Option<String>, Error> {
    if v.is_null() {
        return Ok(None);
    }
    let s = cx.str(v, what)?;
    if s.is_empty() {
        return Ok(None);
    }
    let body = s.strip_suffix('$').unwrap_or(s);
    let ok = s.len() <= 32
        && !body.is_empty()
        && !body.starts_with('-')
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        && !body.bytes().all(|b| b.is_ascii_digit());
    if !ok {
        return Err(cx.err(
            v,
            format!(
                "{what}: {s:?} is not a user name (letters, digits, '_', '-', '.', at most 32 \
                 bytes, not a number)"
            ),
        ));
    }
    Ok(Some(s.to_string()))
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

/// `backends`: the existing schema, networkd's state directory, the
/// dispatchers' trees, and the lease files the lease watcher reads.
fn backends(cx: &Ctx, v: &Node) -> Result<(BackendSettings, DhclientSettings), Error> {
    let mut b = BackendSettings::default();
    let mut dhclient = DhclientSettings::default();
    for (k, v) in cx.map(v, "backends")? {
        let name = cx.key(k)?;
        let keys = match name {
            "systemd_networkd" | "dhclient" | "networkmanager" => {
                section_keys(&format!("backends.{name}"))
            }
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
            match (name, key) {
                ("systemd_networkd", "state_dir") => {
                    b.networkd_state_dir = absolute(cx, v2, "backends.systemd_networkd.state_dir")?;
                }
                ("systemd_networkd", "networkd_dispatcher_dir") => {
                    b.networkd_dispatcher_dir = if v2.is_null() {
                        None
                    } else {
                        Some(absolute(
                            cx,
                            v2,
                            "backends.systemd_networkd.networkd_dispatcher_dir",
                        )?)
                    };
                }
                ("networkmanager", "dispatcher_dir") => {
                    b.nm_dispatcher_dir = if v2.is_null() {
                        None
                    } else {
                        Some(absolute(cx, v2, "backends.networkmanager.dispatcher_dir")?)
                    };
                }
                ("systemd_networkd", "emit_json") => {
                    b.emit_json = cx.bool(v2, "backends.systemd_networkd.emit_json")?;
                }
                ("dhclient", "use_dns") => b.use_dns = cx.bool(v2, "backends.dhclient.use_dns")?,
                ("dhclient", "use_domain") => {
                    b.use_domain = cx.bool(v2, "backends.dhclient.use_domain")?;
                }
                ("dhclient", "use_hostname") => {
                    b.use_hostname = cx.bool(v2, "backends.dhclient.use_hostname")?;
                }
                ("dhclient", "lease_files") => dhclient.lease_files = lease_files(cx, v2)?,
                _ => {
                    cx.bool(v2, &format!("backends.{name}.{key}"))?;
                }
            }
        }
    }
    Ok((b, dhclient))
}

/// `backends.dhclient.lease_files`: absolute paths, a glob allowed in the
/// file name only (the watcher watches directories, which must be named).
fn lease_files(cx: &Ctx, v: &Node) -> Result<Vec<PathBuf>, Error> {
    const WHAT: &str = "backends.dhclient.lease_files";
    let items = cx.seq(v, WHAT)?;
    if items.is_empty() {
        return Err(cx.err(
            v,
            format!("{WHAT}: an empty list; leave the key out for the default paths"),
        ));
    }
    if items.len() > MAX_LEASE_FILES {
        return Err(cx.err(v, format!("{WHAT}: more than {MAX_LEASE_FILES} entries")));
    }
    let mut out = Vec::new();
    for item in items {
        let p = absolute(cx, item, WHAT)?;
        let s = p.to_string_lossy();
        let name = p.file_name().map(|n| n.to_string_lossy().into_owned());
        let dir = p.parent().map(|d| d.to_string_lossy().into_owned());
        match (name, dir) {
            (Some(n), Some(d)) if !n.is_empty() && !s.ends_with('/') => {
                if d.contains(['*', '?', '[']) {
                    return Err(cx.err(
                        item,
                        format!(
                            "{WHAT}: {s:?}: a glob is allowed in the file name only, \
                             not in the directory"
                        ),
                    ));
                }
                if d.split('/').any(|c| c == "..") {
                    return Err(cx.err(item, format!("{WHAT}: {s:?}: \"..\" in the path")));
                }
            }
            _ => return Err(cx.err(item, format!("{WHAT}: {s:?} names no file"))),
        }
        out.push(p);
    }
    Ok(out)
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

/// `metrics`: whether `metrics` answers, and the label bounds.
fn metrics_section(
    cx: &Ctx,
    v: &Node,
    inactive: &mut Vec<String>,
) -> Result<metrics::Settings, Error> {
    let mut m = metrics::Settings {
        enabled: true,
        ..metrics::Settings::default()
    };
    for (k, v) in cx.map(v, "metrics")? {
        match cx.key(k)? {
            "enabled" => m.enabled = cx.bool(v, "metrics.enabled")?,
            "per_interface" => m.per_interface = cx.bool(v, "metrics.per_interface")?,
            // The existing netevd served metrics on a listener of their own.
            "port" => {
                cx.uint(v, "metrics.port", 1, 65535)?;
                inactive.push(format!(
                    "metrics.port (line {}): /metrics is served by the HTTP interface, \
                     on api.port at metrics.endpoint, not on a port of its own",
                    v.line
                ));
            }
            "max_interfaces" => {
                m.max_interfaces = cx.uint(v, "metrics.max_interfaces", 1, 4096)? as usize
            }
            "endpoint" => {
                let e = cx.str(v, "metrics.endpoint")?;
                if !e.starts_with('/') || e.len() > 256 || e.bytes().any(|b| b <= b' ' || b == 0x7f)
                {
                    return Err(cx.err(
                        v,
                        format!(
                            "metrics.endpoint: expected an HTTP path such as /metrics (a \
                             leading /, no spaces, at most 256 bytes), not {e:?}"
                        ),
                    ));
                }
                m.endpoint = e.to_string();
            }
            other => return Err(unknown(cx, k, "metrics", other)),
        }
    }
    Ok(m)
}

#[cfg(feature = "http")]
/// `api`: the HTTP shim's listener, limits, token and rate limit.
fn api(cx: &Ctx, v: &Node) -> Result<ApiSettings, Error> {
    let mut a = ApiSettings::default();
    let mut token_node = None;
    for (k, v) in cx.map(v, "api")? {
        match cx.key(k)? {
            "enabled" => a.enabled = cx.bool(v, "api.enabled")?,
            // `address` is the existing netevd's spelling.
            "bind_address" | "address" => {
                let s = cx.str(v, "api.bind_address")?;
                a.bind_address = s.parse().map_err(|_| {
                    cx.err(
                        v,
                        format!("api.bind_address: {s:?} is not an IPv4 or IPv6 address"),
                    )
                })?;
            }
            "port" => a.port = cx.uint(v, "api.port", 1, 65535)? as u16,
            "request_timeout_seconds" => {
                a.request_timeout =
                    Duration::from_secs(cx.uint(v, "api.request_timeout_seconds", 1, 3600)?)
            }
            "idle_timeout_seconds" => {
                a.idle_timeout =
                    Duration::from_secs(cx.uint(v, "api.idle_timeout_seconds", 1, 86400)?)
            }
            "max_clients" => a.max_clients = cx.uint(v, "api.max_clients", 1, 65536)? as usize,
            "max_queue_bytes" => {
                a.max_queue = cx.uint(v, "api.max_queue_bytes", 4096, 64 << 20)? as usize
            }
            "auth_token_file" => {
                a.auth_token_file = Some(absolute(cx, v, "api.auth_token_file")?);
                token_node = Some(v);
            }
            "auth_required_for_reads" => {
                a.auth_required_for_reads = cx.bool(v, "api.auth_required_for_reads")?
            }
            "rate_limiting" => a.rate = rate_limiting(cx, v)?,
            "tls" => a.tls = tls(cx, v)?,
            other => return Err(unknown(cx, k, "api", other)),
        }
    }
    if let (Some(path), Some(n)) = (&a.auth_token_file, token_node) {
        a.auth_token = Some(
            read_token(path)
                .map_err(|e| cx.err(n, format!("api.auth_token_file: {}: {e}", path.display())))?,
        );
    }
    if a.auth_required_for_reads && a.auth_token.is_none() {
        return Err(Error {
            file: cx.file.to_string(),
            line: 0,
            col: 0,
            msg: "api.auth_required_for_reads: no api.auth_token_file to check against".into(),
        });
    }
    Ok(a)
}

#[cfg(feature = "http")]
/// The token: the file's first line without surrounding white space, from
/// a regular file of at most [`MAX_TOKEN_FILE`] bytes; at least 16 bytes
/// of printable ASCII, so that it fits a header and is not guessable by
/// accident.
fn read_token(path: &Path) -> Result<Secret, String> {
    // Opened without waiting (a FIFO swapped in would hold the loop at a
    // reload), then judged by what was opened, not by the name.
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_NOCTTY)
        .open(path)
        .map_err(|e| format!("cannot read: {e}"))?;
    let meta = f.metadata().map_err(|e| format!("cannot read: {e}"))?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    if meta.len() > MAX_TOKEN_FILE {
        return Err(format!("larger than {MAX_TOKEN_FILE} bytes"));
    }
    let mut buf = Vec::new();
    f.take(MAX_TOKEN_FILE + 1)
        .read_to_end(&mut buf)
        .map_err(|e| format!("cannot read: {e}"))?;
    if buf.len() as u64 > MAX_TOKEN_FILE {
        return Err(format!("larger than {MAX_TOKEN_FILE} bytes"));
    }
    let line = buf.split(|&b| b == b'\n').next().unwrap_or_default();
    let t = line.trim_ascii();
    if t.len() < 16 {
        return Err("the token must be at least 16 characters".into());
    }
    if !t.iter().all(|b| b.is_ascii_graphic()) {
        return Err("the token must be printable ASCII without spaces".into());
    }
    Ok(Secret(t.to_vec()))
}

#[cfg(feature = "http")]
/// `api.rate_limiting`; `enabled: false` turns it off.
fn rate_limiting(cx: &Ctx, v: &Node) -> Result<Option<RateSettings>, Error> {
    let mut r = RateSettings::default();
    let mut enabled = true;
    for (k, v) in cx.map(v, "api.rate_limiting")? {
        match cx.key(k)? {
            "enabled" => enabled = cx.bool(v, "api.rate_limiting.enabled")?,
            "requests_per_second" => {
                r.requests_per_second =
                    cx.uint(v, "api.rate_limiting.requests_per_second", 1, 1_000_000)? as u32
            }
            "burst" => r.burst = cx.uint(v, "api.rate_limiting.burst", 1, 1_000_000)? as u32,
            "exempt_loopback" => {
                r.exempt_loopback = cx.bool(v, "api.rate_limiting.exempt_loopback")?
            }
            other => return Err(unknown(cx, k, "api.rate_limiting", other)),
        }
    }
    Ok(enabled.then_some(r))
}

#[cfg(feature = "http")]
/// `api.tls`: both files or nothing.
fn tls(cx: &Ctx, v: &Node) -> Result<Option<TlsSettings>, Error> {
    if v.is_null() {
        return Ok(None);
    }
    let (mut cert, mut key, mut ca, mut enabled) = (None, None, None, true);
    for (k, v) in cx.map(v, "api.tls")? {
        match cx.key(k)? {
            "enabled" => enabled = cx.bool(v, "api.tls.enabled")?,
            // An empty string is the existing netevd's way to give none.
            "cert_file" => cert = file_or_none(cx, v, "api.tls.cert_file")?,
            "key_file" => key = file_or_none(cx, v, "api.tls.key_file")?,
            "client_ca_file" => ca = file_or_none(cx, v, "api.tls.client_ca_file")?,
            other => return Err(unknown(cx, k, "api.tls", other)),
        }
    }
    if !enabled || (cert.is_none() && key.is_none() && ca.is_none()) {
        return Ok(None);
    }
    match (cert, key) {
        (Some(cert_file), Some(key_file)) => Ok(Some(TlsSettings {
            cert_file,
            key_file,
            client_ca_file: ca,
        })),
        _ => Err(cx.err(v, "api.tls: needs both cert_file and key_file")),
    }
}

/// An absolute path, or None for an empty string or null.
#[cfg(feature = "http")]
fn file_or_none(cx: &Ctx, v: &Node, what: &str) -> Result<Option<PathBuf>, Error> {
    if v.is_null() || matches!(&v.v, yaml::Value::Scalar(s, _) if s.is_empty()) {
        return Ok(None);
    }
    absolute(cx, v, what).map(Some)
}

/// `audit`: the audit log's file, size and rotation. `log_path` and
/// `retention_days` are the existing netevd's spelling and are honoured.
fn audit(cx: &Ctx, v: &Node) -> Result<AuditSettings, Error> {
    let mut a = AuditSettings::default();
    let mut path_key: Option<&Node> = None;
    for (k, v) in cx.map(v, "audit")? {
        match cx.key(k)? {
            "enabled" => a.enabled = cx.bool(v, "audit.enabled")?,
            key @ ("path" | "log_path") => {
                if let Some(first) = path_key {
                    return Err(cx.err(
                        k,
                        format!(
                            "audit.{key}: the path is already given on line {} (path and \
                             log_path are the same setting)",
                            first.line
                        ),
                    ));
                }
                path_key = Some(k);
                a.path = absolute(cx, v, &format!("audit.{key}"))?;
                if a.path.as_os_str().len() > 4000 {
                    return Err(cx.err(v, format!("audit.{key}: longer than 4000 bytes")));
                }
            }
            "max_size" => a.max_size = cx.uint(v, "audit.max_size", 4096, 1 << 40)?,
            "keep" => a.keep = cx.uint(v, "audit.keep", 0, 100)? as u32,
            "retention_days" => {
                a.retention_days = Some(cx.uint(v, "audit.retention_days", 1, 36500)? as u32)
            }
            other => return Err(unknown(cx, k, "audit", other)),
        }
    }
    Ok(a)
}

/// A section of a feature not built yet counts as asked for unless it says
/// `enabled: false`; `enabled` must be a real boolean.
#[cfg(not(feature = "http"))]
fn section_enabled(cx: &Ctx, v: &Node, section: &str) -> Result<bool, Error> {
    for (k, v) in cx.map(v, section)? {
        if cx.key(k)? == "enabled" {
            return cx.bool(v, &format!("{section}.enabled"));
        }
    }
    Ok(true)
}

/// The keys that say what a filter matches: beside `action` in the list
/// form, under `match_rule` in the existing netevd's form.
const MATCH_KEYS: [&str; 7] = [
    "interface",
    "interface_pattern",
    "event_types",
    "event_type",
    "backend",
    "ip_family",
    "condition",
];

/// `filters`: the whole list, each entry checked; an error names the
/// entry (counted from 1, and its name when it has one), the key, the
/// line and the column.
fn filters(cx: &Ctx, v: &Node) -> Result<Vec<Filter>, Error> {
    let mut out: Vec<Filter> = Vec::new();
    for (i, item) in cx.seq(v, "filters")?.iter().enumerate() {
        let f = filter_entry(cx, item, i + 1)?;
        if let Some(j) = out.iter().position(|o| o.name == f.name) {
            let at = field(item, "name").unwrap_or(item);
            return Err(cx.err(
                at,
                format!(
                    "filters[{}] ({}): name: already the name of filters[{}]",
                    i + 1,
                    f.name,
                    j + 1
                ),
            ));
        }
        out.push(f);
    }
    Ok(out)
}

/// One `filters` entry, in the list form (`name`, the match keys,
/// `action`, `scripts`) or the existing netevd's (`match_rule: {...}`,
/// `action`, `scripts`, `name` optional).
fn filter_entry(cx: &Ctx, item: &Node, n: usize) -> Result<Filter, Error> {
    let m = match &item.v {
        yaml::Value::Map(m) => m,
        _ => {
            return Err(cx.err(
                item,
                format!("filters[{n}]: expected a mapping (name, action, ...)"),
            ))
        }
    };
    // The label every error of this entry starts with.
    let label = match field(item, "name") {
        Some(v) => match &v.v {
            yaml::Value::Scalar(s, _) if !v.is_null() => format!("filters[{n}] ({s})"),
            _ => format!("filters[{n}]"),
        },
        None => format!("filters[{n}]"),
    };
    let what = |key: &str| format!("{label}: {key}");
    let rule = field(item, "match_rule");
    // A block mapping's own mark can sit past its first key; point at it.
    let start = m.first().map_or(item, |(k, _)| k);
    let mut f = Filter::new(String::new());
    let mut action = None;
    for (k, v) in m {
        let key = cx.key(k)?;
        match key {
            "name" => {
                let s = cx.str(v, &what("name"))?;
                let ok = !s.is_empty()
                    && s.len() <= 64
                    && s
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
                if !ok {
                    return Err(cx.err(
                        v,
                        format!(
                            "{}: {s:?} is not a name: 1 to 64 letters, digits, -, _ or .",
                            what("name")
                        ),
                    ));
                }
                f.name = s.to_string();
            }
            "action" => {
                let s = cx.str(v, &what("action"))?;
                action = Some(Action::parse(s).ok_or_else(|| {
                    cx.err(
                        v,
                        format!("{}: {s:?} is not one of execute, ignore, log", what("action")),
                    )
                })?);
            }
            "scripts" => {
                let mut names = Vec::new();
                for s in cx.seq(v, &what("scripts"))? {
                    let name = cx.str(s, &what("scripts"))?;
                    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
                        return Err(cx.err(
                            s,
                            format!(
                                "{}: {name:?} is not a file name (a hook in the state's directory, without a path)",
                                what("scripts")
                            ),
                        ));
                    }
                    names.push(name.to_string());
                }
                f.scripts = Some(names.into());
            }
            "match_rule" => {
                for (k2, v2) in cx.map(v, &what("match_rule"))? {
                    let key2 = cx.key(k2)?;
                    if !MATCH_KEYS.contains(&key2) || key2 == "event_types" {
                        return Err(cx.err(
                            k2,
                            format!(
                                "{}: unknown key {key2:?} (expected interface, interface_pattern, event_type, ip_family, backend or condition)",
                                what("match_rule")
                            ),
                        ));
                    }
                    match_key(cx, &mut f, key2, v2, &label)?;
                }
            }
            k2 if MATCH_KEYS.contains(&k2) && k2 != "event_type" => {
                if rule.is_some() {
                    return Err(cx.err(
                        k,
                        format!(
                            "{}: {k2} is given beside match_rule (line {}): put every match key under match_rule, or use none",
                            label,
                            rule_key_line(m)
                        ),
                    ));
                }
                match_key(cx, &mut f, k2, v, &label)?;
            }
            other => {
                return Err(cx.err(
                    k,
                    format!(
                        "{label}: unknown key {other:?} (expected name, interface, interface_pattern, event_types, backend, ip_family, condition, action, scripts or match_rule)"
                    ),
                ))
            }
        }
    }
    if f.name.is_empty() {
        if rule.is_none() {
            return Err(cx.err(start, format!("{label}: missing name")));
        }
        // The existing netevd's entries have none.
        f.name = format!("filter-{n}");
    }
    let label = format!("filters[{n}] ({})", f.name);
    f.action = action.ok_or_else(|| {
        cx.err(
            start,
            format!("{label}: missing action (execute, ignore or log)"),
        )
    })?;
    if f.action == Action::Ignore && f.scripts.is_some() {
        let at = field(item, "scripts").unwrap_or(item);
        return Err(cx.err(
            at,
            format!("{label}: scripts: with action ignore no hook runs; drop one of the two"),
        ));
    }
    if f.interface.is_some() && f.interface_pattern.is_some() {
        let at = field(item, "interface_pattern")
            .or_else(|| rule.and_then(|r| field(r, "interface_pattern")))
            .unwrap_or(item);
        return Err(cx.err(
            at,
            format!("{label}: interface_pattern: give interface or interface_pattern, not both"),
        ));
    }
    Ok(f)
}

/// The line of an entry's `match_rule` key.
fn rule_key_line(m: &[(Node, Node)]) -> usize {
    m.iter()
        .find(|(k, _)| matches!(&k.v, yaml::Value::Scalar(s, _) if s == "match_rule"))
        .map_or(0, |(k, _)| k.line)
}

/// One key of what a filter matches.
fn match_key(cx: &Ctx, f: &mut Filter, key: &str, v: &Node, label: &str) -> Result<(), Error> {
    let what = format!("{label}: {key}");
    let event_type = |n: &Node| -> Result<EventType, Error> {
        let s = cx.str(n, &what)?;
        EventType::parse(s).ok_or_else(|| {
            cx.err(
                n,
                format!(
                    "{what}: {s:?} is not one of {}",
                    filter::EVENT_TYPES.join(", ")
                ),
            )
        })
    };
    match key {
        "interface" => f.interface = Some(cx.name(v, &what)?.as_bytes().to_vec()),
        "interface_pattern" => f.interface_pattern = Some(cx.name(v, &what)?.as_bytes().to_vec()),
        "event_type" => f.event_types = [event_type(v)?].into_iter().collect(),
        "event_types" => {
            let items = cx.seq(v, &what)?;
            if items.is_empty() {
                return Err(cx.err(
                    v,
                    format!("{what}: an empty list matches nothing; leave the key out to match every type"),
                ));
            }
            f.event_types = items.iter().map(event_type).collect::<Result<_, _>>()?;
        }
        "backend" => {
            let s = cx.str(v, &what)?;
            // The spellings system.backend takes.
            let b = match s {
                "networkd" => "systemd-networkd",
                "networkmanager" => "NetworkManager",
                s => s,
            };
            if !filter::BACKENDS.contains(&b) {
                return Err(cx.err(
                    v,
                    format!(
                        "{what}: {s:?} is not one of {}",
                        filter::BACKENDS.join(", ")
                    ),
                ));
            }
            f.backend = Some(b.to_string());
        }
        "ip_family" => {
            let s = cx.str(v, &what)?;
            f.ip_family = Some(Family::parse(s).ok_or_else(|| {
                cx.err(v, format!("{what}: {s:?} is not one of ipv4, ipv6, any"))
            })?);
        }
        "condition" => {
            let s = cx.str(v, &what)?;
            f.condition = Some(Condition::parse(s).map_err(|e| {
                // Where in the line: a quoted scalar starts one column
                // after its quote. (Escapes and folded lines shift it.)
                let quote = usize::from(matches!(&v.v, yaml::Value::Scalar(_, false)));
                Error {
                    file: cx.file.to_string(),
                    line: v.line,
                    col: v.col + quote + e.at,
                    msg: format!("{what}: {} (in {s:?})", e.msg),
                }
            })?);
        }
        _ => unreachable!("only match keys are passed"),
    }
    Ok(())
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

/// An unknown key, with the keys its section takes, so that a typo needs
/// no trip to the manual.
fn unknown(cx: &Ctx, k: &Node, section: &str, key: &str) -> Error {
    let valid = section_keys(section);
    let expected = match valid {
        [] => "it takes no keys".to_string(),
        [one] => format!("expected {one}"),
        [init @ .., last] => format!("expected {} or {last}", init.join(", ")),
    };
    cx.err(k, format!("unknown key {key:?} in {section} ({expected})"))
}

/// The keys each section takes, as the functions above read them; a new
/// key goes in both places (the `every_section_lists_its_keys` test
/// checks each listed key is accepted).
fn section_keys(section: &str) -> &'static [&'static str] {
    match section {
        "system" => &[
            "log_level",
            "backend",
            "script_dir",
            "netlink_receive_buffer",
            "netlink_receive_buffer_max",
            "user",
            "watch_config",
        ],
        "scripts" => &["timeout_seconds", "run_on_startup", "max_parallel", "user"],
        "monitoring" => &["interfaces", "routes"],
        "routing" => &["policy_rules", "table_base", "from_priority", "to_priority"],
        "routing.policy_rules" => &["interface", "table", "from_priority", "to_priority"],
        "control" => &[
            "socket",
            "enabled",
            "group",
            "mode",
            "max_clients",
            "idle_timeout_seconds",
            "max_queue_bytes",
            "event_history",
            "hook_history",
        ],
        "backends.systemd_networkd" => &["emit_json", "state_dir", "networkd_dispatcher_dir"],
        "backends.networkmanager" => &["dispatcher_dir"],
        "backends.dhclient" => &["use_dns", "use_domain", "use_hostname", "lease_files"],
        "metrics" => &[
            "enabled",
            "per_interface",
            "max_interfaces",
            "endpoint",
            "port",
        ],
        "audit" => &[
            "enabled",
            "path",
            "log_path",
            "max_size",
            "keep",
            "retention_days",
        ],
        "api" => &[
            "enabled",
            "bind_address",
            "address",
            "port",
            "request_timeout_seconds",
            "idle_timeout_seconds",
            "max_clients",
            "max_queue_bytes",
            "auth_token_file",
            "auth_required_for_reads",
            "rate_limiting",
            "tls",
        ],
        "api.rate_limiting" => &["enabled", "requests_per_second", "burst", "exempt_loopback"],
        "api.tls" => &["enabled", "cert_file", "key_file", "client_ca_file"],
        _ => &[],
    }
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
        assert_eq!(c.backend, Backend::Auto);
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
        assert!(c.backends.emit_json);
        // Everything in it is built in a default build; what a build
        // leaves out is reported as not active.
        let missing = [
            (!cfg!(feature = "dbus"), "system.backend"),
            (!cfg!(feature = "http"), "api"),
        ];
        let want: Vec<&str> = missing.iter().filter(|m| m.0).map(|m| m.1).collect();
        assert_eq!(c.inactive.len(), want.len(), "{:?}", c.inactive);
        for (line, w) in c.inactive.iter().zip(want) {
            assert!(line.starts_with(w), "{line}");
        }
        assert_eq!(c.api.enabled, cfg!(feature = "http"));
    }

    #[cfg(feature = "http")]
    #[test]
    fn api_section() {
        let dir = std::env::temp_dir().join(format!("netevd-api-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let tok = dir.join("token");
        std::fs::write(&tok, "  0123456789abcdefXYZ  \nsecond line\n").unwrap();
        let c = parse(&format!(
            "api:\n  enabled: true\n  address: \"::1\"\n  port: 8080\n  request_timeout_seconds: 3\n  \
             idle_timeout_seconds: 9\n  max_clients: 7\n  max_queue_bytes: 8192\n  \
             auth_token_file: {}\n  auth_required_for_reads: true\n  rate_limiting:\n    \
             requests_per_second: 5\n    burst: 6\n    exempt_loopback: false\n",
            tok.display()
        ))
        .unwrap();
        let a = &c.api;
        assert!(a.enabled);
        assert_eq!(a.bind_address.to_string(), "::1");
        assert_eq!(a.port, 8080);
        assert_eq!(a.request_timeout, Duration::from_secs(3));
        assert_eq!(a.idle_timeout, Duration::from_secs(9));
        assert_eq!((a.max_clients, a.max_queue), (7, 8192));
        assert_eq!(a.auth_token, Some(Secret(b"0123456789abcdefXYZ".to_vec())));
        assert!(
            !format!("{c:?}").contains("0123456789abcdef"),
            "the token never shows"
        );
        assert!(a.auth_required_for_reads);
        assert_eq!(
            a.rate,
            Some(RateSettings {
                requests_per_second: 5,
                burst: 6,
                exempt_loopback: false
            })
        );
        let off = parse("api:\n  rate_limiting:\n    enabled: false\n  tls:\n    enabled: false\n")
            .unwrap();
        assert_eq!(
            (off.api.rate, off.api.tls, off.api.enabled),
            (None, None, false)
        );
        std::fs::write(&tok, "short\n").unwrap();
        let cases = [
            (
                format!("api:\n  auth_token_file: {}\n", tok.display()),
                "at least 16 characters",
            ),
            (
                "api:\n  auth_token_file: /nonexistent/t\n".to_string(),
                "cannot read",
            ),
            (
                "api:\n  auth_token_file: relative\n".to_string(),
                "absolute path",
            ),
            (
                "api:\n  port: 0\n".to_string(),
                "api.port: 0 is out of range",
            ),
            (
                "api:\n  bind_address: localhost\n".to_string(),
                "not an IPv4 or IPv6 address",
            ),
            (
                "api:\n  auth_required_for_reads: true\n".to_string(),
                "no api.auth_token_file",
            ),
            (
                "api:\n  rate_limiting:\n    burst: 0\n".to_string(),
                "api.rate_limiting.burst",
            ),
            (
                "api:\n  tls:\n    cert_file: /c.pem\n".to_string(),
                "needs both cert_file and key_file",
            ),
            (
                "api:\n  nope: 1\n".to_string(),
                "unknown key \"nope\" in api",
            ),
        ];
        for (text, want) in cases {
            let e = parse(&text).unwrap_err().to_string();
            assert!(e.contains(want), "{text:?}: {e}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The existing netevd's published example: a metrics port of its own
    /// and empty TLS file names are accepted, the port reported as not
    /// used here.
    #[cfg(feature = "http")]
    #[test]
    fn existing_netevd_example_spellings() {
        let c = parse(
            "metrics:\n  enabled: true\n  port: 9091\napi:\n  enabled: false\n  tls:\n    cert_file: \"\"\n    key_file: \"\"\n",
        )
        .unwrap();
        assert_eq!(c.api.tls, None);
        assert!(
            c.inactive
                .iter()
                .any(|l| l.starts_with("metrics.port (line 3)")),
            "{:?}",
            c.inactive
        );
        let e = parse("metrics:\n  port: 0\n").unwrap_err().to_string();
        assert!(e.contains("metrics.port: 0 is out of range"), "{e}");
        let e = parse("api:\n  tls:\n    cert_file: /c.pem\n    key_file: \"\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("needs both cert_file and key_file"), "{e}");
    }

    #[test]
    fn backends() {
        let c = parse(
            "system:\n  backend: auto\nbackends:\n  systemd_networkd:\n    state_dir: /tmp/netif\n",
        )
        .unwrap();
        assert_eq!(c.backend, Backend::Auto);
        assert_eq!(c.backends.networkd_state_dir, PathBuf::from("/tmp/netif"));
        assert!(!c.backends.emit_json);
        let e = parse("backends:\n  systemd_networkd:\n    state_dir: run/x\n").unwrap_err();
        assert!(
            e.to_string()
                .contains("backends.systemd_networkd.state_dir"),
            "{e}"
        );
        let e = parse("backends:\n  systemd_networkd:\n    emit_json: 1\n").unwrap_err();
        assert!(
            e.to_string()
                .contains("backends.systemd_networkd.emit_json"),
            "{e}"
        );
        assert_eq!(Backend::auto(true, true, true), Backend::Networkd);
        assert_eq!(Backend::auto(false, true, true), Backend::NetworkManager);
        assert_eq!(Backend::auto(false, false, true), Backend::Dhclient);
        assert_eq!(Backend::auto(false, false, false), Backend::Kernel);
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
        assert_eq!((c.user, c.hook_user), (None, None));
    }

    #[test]
    fn users() {
        let c = parse("system:\n  user: netevd\nscripts:\n  user: nobody\n").unwrap();
        assert_eq!(c.user.as_deref(), Some("netevd"));
        assert_eq!(c.hook_user.as_deref(), Some("nobody"));
        let c = parse("system:\n  user: ~\nscripts:\n  user: \"\"\n").unwrap();
        assert_eq!((c.user, c.hook_user), (None, None));
        for (text, msg) in [
            (
                "system:\n  user: 1000\n",
                "t.yaml:2:9: system.user: \"1000\" is not a user name",
            ),
            (
                "system:\n  user: a/b\n",
                "system.user: \"a/b\" is not a user name",
            ),
            (
                "scripts:\n  user: -x\n",
                "t.yaml:2:9: scripts.user: \"-x\" is not a user name",
            ),
            ("scripts:\n  user: [a]\n", "scripts.user: expected a string"),
            (
                "system:\n  user: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n",
                "is not a user name",
            ),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(msg), "{text:?}: {e}");
        }
        assert!(parse("system:\n  user: machine$\n").is_ok());
    }

    #[test]
    fn errors_name_key_line_and_column() {
        let cases = [
            (
                "system:\n  log_levl: debug\n",
                "t.yaml:2:3: unknown key \"log_levl\" in system (expected log_level, backend, \
                 script_dir, netlink_receive_buffer, netlink_receive_buffer_max, user or watch_config)",
            ),
            ("sytem: {}\n", "t.yaml:1:1: unknown key \"sytem\""),
            (
                "scripts:\n  timeout_seconds: ten\n",
                "t.yaml:2:20: scripts.timeout_seconds: expected a number (a plain decimal integer), not \"ten\"",
            ),
            (
                "scripts:\n  timeout_seconds: 0\n",
                "t.yaml:2:20: scripts.timeout_seconds: 0 is out of range: it must be between 1 and 86400",
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
    fn every_section_lists_its_keys() {
        let sections = [
            "system",
            "scripts",
            "monitoring",
            "routing",
            "routing.policy_rules",
            "control",
            "backends.systemd_networkd",
            "backends.dhclient",
            "backends.networkmanager",
            "metrics",
            "audit",
            #[cfg(feature = "http")]
            "api",
            #[cfg(feature = "http")]
            "api.rate_limiting",
            #[cfg(feature = "http")]
            "api.tls",
        ];
        for section in sections {
            for key in section_keys(section) {
                // A value no key takes: the error must be about the value.
                let text = match section.split_once('.') {
                    Some(("routing", _)) => {
                        format!("routing:\n  policy_rules:\n    - {key}: [[]]\n")
                    }
                    Some((a, b)) => format!("{a}:\n  {b}:\n    {key}: [[]]\n"),
                    None => format!("{section}:\n  {key}: [[]]\n"),
                };
                if let Err(e) = parse(&text) {
                    assert!(!e.msg.contains("unknown key"), "{section}.{key}: {e}");
                }
            }
        }
        let e = parse("backends:\n  networkmanager:\n    x: 1\n").unwrap_err();
        assert!(
            e.msg
                .ends_with("in backends.networkmanager (expected dispatcher_dir)"),
            "{e}"
        );
        let e = parse("monitoring:\n  iface: []\n").unwrap_err();
        assert!(
            e.msg
                .ends_with("in monitoring (expected interfaces or routes)"),
            "{e}"
        );
    }

    #[test]
    fn dhclient_lease_files() {
        let c = parse("system:\n  backend: dhclient\n").unwrap();
        assert_eq!(c.backend, Backend::Dhclient);
        if cfg!(feature = "dhclient") {
            assert!(c.inactive.is_empty(), "{:?}", c.inactive);
        } else {
            assert!(
                c.inactive[0].contains("cargo feature dhclient"),
                "{:?}",
                c.inactive
            );
        }
        assert_eq!(c.dhclient, DhclientSettings::default());
        let c = parse(
            "backends:\n  dhclient:\n    use_dns: true\n    lease_files:\n      - /run/dh/*.leases\n      - /var/lib/x/dhclient.leases\n",
        )
        .unwrap();
        assert_eq!(
            c.dhclient.lease_files,
            vec![
                PathBuf::from("/run/dh/*.leases"),
                PathBuf::from("/var/lib/x/dhclient.leases")
            ]
        );
        for (text, want) in [
            (
                "backends:\n  dhclient:\n    lease_files: [dhclient.leases]\n",
                "t.yaml:3:19: backends.dhclient.lease_files: expected an absolute path",
            ),
            (
                "backends:\n  dhclient:\n    lease_files: [/var/*/x.leases]\n",
                "t.yaml:3:19: backends.dhclient.lease_files: \"/var/*/x.leases\": a glob is allowed in the file name only",
            ),
            (
                "backends:\n  dhclient:\n    lease_files: []\n",
                "t.yaml:3:18: backends.dhclient.lease_files: an empty list",
            ),
            (
                "backends:\n  dhclient:\n    lease_files: /var/lib/dhcp/x\n",
                "t.yaml:3:18: backends.dhclient.lease_files",
            ),
            (
                "backends:\n  dhclient:\n    lease_files: [/var/lib/]\n",
                "names no file",
            ),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(want), "{text:?}: {e}");
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
            ("routing:\n  table_base: 200\n", "routing.table_base: 200 is out of range: it must be between 256 and 2147483648"),
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

    /// A scratch directory with a main file and `conf.d`, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str, main: &str, includes: &[(&str, &str)]) -> TempDir {
            let d = std::env::temp_dir().join(format!("netevd-unit-{}-{name}", std::process::id()));
            let _ = std::fs::remove_dir_all(&d);
            std::fs::create_dir_all(d.join("conf.d")).unwrap();
            std::fs::write(d.join("netevd.yaml"), main).unwrap();
            for (n, text) in includes {
                std::fs::write(d.join("conf.d").join(n), text).unwrap();
            }
            TempDir(d)
        }

        fn main(&self) -> PathBuf {
            self.0.join("netevd.yaml")
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn includes_are_merged_in_byte_order() {
        let t = TempDir::new(
            "incl",
            "scripts:\n  timeout_seconds: 5\n  max_parallel: 2\nmonitoring:\n  interfaces: [eth0]\n",
            &[
                // B sorts before a: byte order, not the locale's.
                ("b.yaml", "scripts:\n  max_parallel: 7\n"),
                ("B.yaml", "scripts:\n  max_parallel: 3\n  run_on_startup: false\n"),
                ("c.yaml", "monitoring:\n  interfaces: [wan*]\nsystem:\n"),
                (".hidden.yaml", "nonsense: 1\n"),
                ("notes.txt", "nonsense: 1\n"),
                ("empty-ish.yaml", "# nothing yet\n"),
            ],
        );
        let c = Config::load(&t.main()).unwrap();
        assert_eq!(c.timeout, Duration::from_secs(5), "main file kept");
        assert_eq!(c.max_parallel, 7, "b.yaml after B.yaml");
        assert!(
            !c.run_on_startup,
            "B.yaml's key merged, not the section replaced"
        );
        assert_eq!(c.interfaces, vec!["wan*"], "a list is replaced whole");
    }

    #[test]
    fn include_errors_name_their_file() {
        let t = TempDir::new(
            "incl-err",
            "scripts:\n  max_parallel: 2\n",
            &[
                ("10-ok.yaml", "system:\n  log_level: debug\n"),
                ("20-bad.yaml", "\nscripts:\n  max_paralel: 3\n"),
            ],
        );
        let e = Config::load(&t.main()).unwrap_err();
        let bad = t.0.join("conf.d/20-bad.yaml");
        assert_eq!(e.file, bad.display().to_string(), "{e}");
        assert_eq!((e.line, e.col), (3, 3), "{e}");
        // A bad value laid over a good one is the later file's error.
        std::fs::write(&bad, "scripts:\n  max_parallel: 0\n").unwrap();
        let e = Config::load(&t.main()).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!(
                "{}:2:17: scripts.max_parallel: 0 is out of range",
                bad.display()
            )),
            "{e}"
        );
        std::fs::write(&bad, "- a list\n").unwrap();
        let e = Config::load(&t.main()).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!(
                "{}:1:1: top level: expected a mapping",
                bad.display()
            )),
            "{e}"
        );
        std::fs::write(&bad, "").unwrap();
        let e = Config::load(&t.main()).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("{}: the file is empty", bad.display())),
            "{e}"
        );
        // The main file's own errors still name it.
        std::fs::remove_file(&bad).unwrap();
        std::fs::write(t.main(), "scripts:\n  max_parallel: x\n").unwrap();
        let e = Config::load(&t.main()).unwrap_err();
        assert_eq!(e.file, t.main().display().to_string());
    }

    #[test]
    fn includes_are_bounded() {
        let many: Vec<(String, &str)> = (0..=MAX_INCLUDES)
            .map(|i| (format!("{i:03}.yaml"), "scripts: {}\n"))
            .collect();
        let refs: Vec<(&str, &str)> = many.iter().map(|(n, t)| (n.as_str(), *t)).collect();
        let t = TempDir::new("incl-many", "scripts: {}\n", &refs);
        let e = Config::load(&t.main()).unwrap_err().to_string();
        assert!(e.ends_with("65 files, more than 64, the limit"), "{e}");
        std::fs::remove_file(t.0.join("conf.d/000.yaml")).unwrap();
        Config::load(&t.main()).unwrap();
        // No conf.d at all is no include.
        std::fs::remove_dir_all(t.0.join("conf.d")).unwrap();
        Config::load(&t.main()).unwrap();
    }

    #[test]
    fn watch_config_is_a_boolean() {
        assert!(!Config::default().watch_config);
        assert!(
            parse("system:\n  watch_config: true\n")
                .unwrap()
                .watch_config
        );
        let e = parse("system:\n  watch_config: 1\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("system.watch_config: expected true or false"),
            "{e}"
        );
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
        // The top-level mapping, the key `monitoring`, its mapping, the
        // key `interfaces`, its list: 5 nodes.
        let items = |n: usize| {
            format!(
                "monitoring: {{interfaces: [{}]}}\n",
                vec!["a"; n].join(", ")
            )
        };
        parse(&items(yaml::MAX_NODES - 5)).unwrap();
        let e = parse(&items(yaml::MAX_NODES - 4)).unwrap_err().to_string();
        assert!(
            e.starts_with("t.yaml:1:30012: more than 10000 values"),
            "{e}"
        );
        // 32 levels are fine (the top level mapping is the first): the
        // nesting is refused for what it holds, not for its depth.
        let ok = format!(
            "monitoring: {{interfaces: {}1{}}}\n",
            "[".repeat(30),
            "]".repeat(30)
        );
        let e = parse(&ok).unwrap_err().to_string();
        assert!(!e.contains("nested deeper"), "{e}");
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
            ("scripts:\n  max_parallel: 99999999999999999999999\n", "99999999999999999999999 is out of range: it must be between 1 and 1024"),
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

    fn ty(s: &str) -> EventType {
        EventType::parse(s).unwrap()
    }

    #[test]
    fn filters_both_forms() {
        let c = parse(
            r#"
filters:
  - name: no-veth
    interface_pattern: "veth*"
    action: ignore
  - name: vpn.up
    interface: wg0
    event_types: [routable, address]
    backend: kernel
    ip_family: ipv6
    condition: 'has_gateway && kind == "wireguard"'
    action: log
    scripts: [50-vpn, 60-dns]
  - match_rule:
      interface_pattern: "docker*"
      event_type: routable
      ip_family: any
      backend: networkd
      condition: "dns_count >= 1"
    action: execute
    scripts: [only-this]
"#,
        )
        .unwrap();
        assert!(c.inactive.is_empty(), "{:?}", c.inactive);
        let f = &c.filters;
        assert_eq!(f.len(), 3);
        assert_eq!(f[0].name, "no-veth");
        assert_eq!(f[0].interface_pattern.as_deref(), Some(&b"veth*"[..]));
        assert_eq!(f[0].action, Action::Ignore);
        assert_eq!(f[1].interface.as_deref(), Some(&b"wg0"[..]));
        assert_eq!(
            f[1].event_types.iter().collect::<Vec<_>>(),
            vec![ty("routable"), ty("address")]
        );
        assert_eq!(f[1].ip_family, Some(Family::Ipv6));
        assert_eq!(f[1].action, Action::Log);
        assert_eq!(
            f[1].condition.as_ref().unwrap().text,
            "has_gateway && kind == \"wireguard\""
        );
        assert_eq!(f[1].scripts.as_deref().unwrap(), ["50-vpn", "60-dns"]);
        assert_eq!(f[2].name, "filter-3");
        assert_eq!(f[2].backend.as_deref(), Some("systemd-networkd"));
        assert_eq!(
            f[2].event_types.iter().collect::<Vec<_>>(),
            vec![ty("routable")]
        );
        assert_eq!(f[2].ip_family, Some(Family::Any));
        assert!(parse("filters: []\n").unwrap().filters.is_empty());
        assert!(parse("filters:\n").unwrap().filters.is_empty());
    }

    #[test]
    fn filter_errors_name_entry_key_line_and_column() {
        let cases = [
            ("filters: {a: 1}\n", "t.yaml:1:10: filters: expected a list"),
            ("filters: [x]\n", "t.yaml:1:11: filters[1]: expected a mapping"),
            (
                "filters:\n  - action: ignore\n",
                "t.yaml:2:5: filters[1]: missing name",
            ),
            (
                "filters:\n  - name: a\n",
                "t.yaml:2:5: filters[1] (a): missing action (execute, ignore or log)",
            ),
            (
                "filters:\n  - name: a\n    action: drop\n",
                "t.yaml:3:13: filters[1] (a): action: \"drop\" is not one of execute, ignore, log",
            ),
            (
                "filters:\n  - name: a b\n    action: log\n",
                "t.yaml:2:11: filters[1] (a b): name: \"a b\" is not a name",
            ),
            (
                "filters:\n  - name: a\n    action: log\n  - name: a\n    action: log\n",
                "t.yaml:4:11: filters[2] (a): name: already the name of filters[1]",
            ),
            (
                "filters:\n  - name: a\n    action: log\n    interfce: x\n",
                "t.yaml:4:5: filters[1] (a): unknown key \"interfce\"",
            ),
            (
                "filters:\n  - name: v\n    action: log\n    condition: has_gateway && mtu >\n",
                "t.yaml:4:36: filters[1] (v): condition: mtu is compared with a number, not the end",
            ),
            (
                "filters:\n  - name: v\n    action: log\n    condition: \"kind == wg\"\n",
                "t.yaml:4:25: filters[1] (v): condition: kind is compared with a string",
            ),
            (
                "filters:\n  - name: v\n    action: log\n    event_types: [routable, up]\n",
                "t.yaml:4:29: filters[1] (v): event_types: \"up\" is not one of off",
            ),
            (
                "filters:\n  - name: v\n    action: log\n    event_types: []\n",
                "t.yaml:4:18: filters[1] (v): event_types: an empty list matches nothing",
            ),
            (
                "filters:\n  - name: v\n    action: log\n    backend: systemd\n",
                "t.yaml:4:14: filters[1] (v): backend: \"systemd\" is not one of kernel",
            ),
            (
                "filters:\n  - name: v\n    action: log\n    ip_family: ip4\n",
                "t.yaml:4:16: filters[1] (v): ip_family: \"ip4\" is not one of ipv4, ipv6, any",
            ),
            (
                "filters:\n  - name: v\n    action: ignore\n    scripts: [a]\n",
                "t.yaml:4:14: filters[1] (v): scripts: with action ignore no hook runs",
            ),
            (
                "filters:\n  - name: v\n    action: log\n    scripts: [../x]\n",
                "t.yaml:4:15: filters[1] (v): scripts: \"../x\" is not a file name",
            ),
            (
                "filters:\n  - name: v\n    action: log\n    interface: a\n    interface_pattern: b*\n",
                "t.yaml:5:24: filters[1] (v): interface_pattern: give interface or interface_pattern, not both",
            ),
            (
                "filters:\n  - name: v\n    action: log\n    interface: true\n",
                "t.yaml:4:16: filters[1] (v): interface: expected an interface name, not the boolean",
            ),
            (
                "filters:\n  - match_rule:\n      interface: a\n    interface_pattern: b\n    action: log\n",
                "t.yaml:4:5: filters[1]: interface_pattern is given beside match_rule (line 2)",
            ),
            (
                "filters:\n  - match_rule:\n      event_types: [a]\n    action: log\n",
                "t.yaml:3:7: filters[1]: match_rule: unknown key \"event_types\"",
            ),
            (
                "filters:\n  - match_rule:\n      event_type: routable\n      condition: \"has_gateway &&\"\n    action: execute\n",
                "t.yaml:4:33: filters[1]: condition: expected a term",
            ),
            (
                "filters:\n  - match_rule: []\n    action: log\n",
                "t.yaml:2:17: filters[1]: match_rule: expected a mapping",
            ),
        ];
        for (text, want) in cases {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.starts_with(want), "{text:?}:\n got {e:?}\nwant {want:?}");
        }
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
    fn metrics_and_audit_sections() {
        let c = parse(
            "metrics:\n  enabled: true\n  per_interface: true\n  max_interfaces: 8\naudit:\n  enabled: true\n  path: /tmp/a.jsonl\n  max_size: 65536\n  keep: 3\n  retention_days: 7\n",
        )
        .unwrap();
        // A build without the metrics exposition or the audit log parses
        // their sections as strictly, then reports them as not active and
        // leaves them off.
        let (metrics, audit) = (cfg!(feature = "metrics"), cfg!(feature = "audit"));
        let want: Vec<&str> = [
            (!metrics, "metrics (line 1): "),
            (!audit, "audit (line 5): "),
        ]
        .iter()
        .filter(|w| w.0)
        .map(|w| w.1)
        .collect();
        assert_eq!(c.inactive.len(), want.len(), "{:?}", c.inactive);
        for (line, w) in c.inactive.iter().zip(want) {
            assert!(line.starts_with(w), "{line}");
        }
        assert!(c.metrics.enabled == metrics && c.metrics.per_interface);
        assert_eq!(c.metrics.max_interfaces, 8);
        assert_eq!(c.metrics.endpoint, "/metrics");
        let m = parse("metrics:\n  enabled: true\n  endpoint: \"/m\"\n").unwrap();
        assert_eq!(m.metrics.endpoint, "/m");
        assert_eq!(
            c.audit,
            AuditSettings {
                enabled: audit,
                path: PathBuf::from("/tmp/a.jsonl"),
                max_size: 65536,
                keep: 3,
                retention_days: Some(7),
            }
        );
        // The existing netevd's spelling.
        let c = parse("audit:\n  enabled: true\n  log_path: /var/log/netevd/audit.log\n").unwrap();
        assert_eq!(c.audit.path, PathBuf::from("/var/log/netevd/audit.log"));
        let d = Config::default();
        assert!(!d.audit.enabled && d.metrics.enabled == metrics && !d.metrics.per_interface);
        let off = parse("metrics:\n  enabled: false\n").unwrap();
        assert!(!off.metrics.enabled && off.inactive.is_empty());
        assert_eq!(d.audit.path, PathBuf::from("/var/log/netevd/audit.jsonl"));
        let cases = [
            (
                "audit:\n  path: /a\n  log_path: /b\n",
                "t.yaml:3:3: audit.log_path: the path is already given on line 2 (path and log_path are the same setting)",
            ),
            ("audit:\n  path: rel\n", "t.yaml:2:9: audit.path: expected an absolute path"),
            ("audit:\n  max_size: 10\n", "t.yaml:2:13: audit.max_size: 10 is out of range"),
            ("audit:\n  keep: 101\n", "t.yaml:2:9: audit.keep: 101 is out of range"),
            ("audit:\n  rotate: 1\n", "t.yaml:2:3: unknown key \"rotate\" in audit"),
            ("metrics:\n  per_interface: 1\n", "t.yaml:2:18: metrics.per_interface: expected true or false, not \"1\""),
            ("metrics:\n  max_interfaces: 0\n", "t.yaml:2:19: metrics.max_interfaces: 0 is out of range"),
            ("metrics:\n  prot: 9090\n", "t.yaml:2:3: unknown key \"prot\" in metrics"),
            ("metrics:\n  endpoint: metrics\n", "t.yaml:2:13: metrics.endpoint: expected an HTTP path"),
        ];
        for (text, want) in cases {
            let got = parse(text).unwrap_err().to_string();
            assert!(got.starts_with(want), "{text}: {got}");
        }
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
            ("{tables: [0]}", "t.yaml:2:21: monitoring.routes.tables: 0 is out of range: it must be between 1 and 4294967295"),
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
