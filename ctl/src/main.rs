//! netevctl: the client of netevd's control socket.
//!
//! Owns the command line, the connection (connect, one request line, one
//! reply line, or the event stream of `events --follow`), telling apart
//! why a daemon could not be reached, and writing the result. The wire
//! types come from the library (lib.rs), shared with the daemon; the
//! layout for people from render.rs. `validate` needs no daemon: it runs
//! `netevd --validate`.
//!
//! Exit status (netevctl(1), EXIT STATUS): 0 success, also when standard
//! output is closed early (`netevctl events | head`); 1 the daemon cannot
//! be reached, refused the request, answered with something that is not
//! a reply, or standard output cannot be written (`> /dev/full`), or
//! `validate` found the file invalid; 2 bad usage.
//!
//! Nothing here uses `println!`/`eprintln!`: they panic when the stream
//! fails, and Rust ignores SIGPIPE, so a closed pipe comes back as EPIPE
//! from a write and must be handled as a normal end.

mod render;

use std::io::{self, ErrorKind, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command as Process, ExitCode};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use argh::FromArgs;
use netevd_ctl::{
    parse_reply, AuditQuery, EventFilter, LinkRef, Reply, Request, AUDIT_KINDS, MAX_REQUEST, STATES,
};
use serde_json::Value;

/// Where the daemon listens unless `control.socket` says otherwise.
const DEFAULT_SOCKET: &str = "/run/netevd/netevd.sock";

/// The largest reply line read before giving up: the biggest honest
/// reply (a full routing table) is far below this, and a hostile or
/// broken server must not make the client eat memory.
const MAX_REPLY: usize = 64 << 20;

/// The longest `--timeout`, a day: longer is a mistake, and a deadline
/// must not overflow the clock.
const MAX_TIMEOUT: u64 = 86400;

/// Query and control netevd through its control socket.
#[derive(FromArgs)]
#[argh(help_triggers("-h", "--help", "help"))]
struct Args {
    /// the control socket (default /run/netevd/netevd.sock)
    #[argh(option, default = "PathBuf::from(DEFAULT_SOCKET)")]
    socket: PathBuf,
    /// seconds to wait for a whole reply (default 10)
    #[argh(option, default = "10")]
    timeout: u64,
    /// print the daemon's reply as one line of JSON
    #[argh(switch)]
    json: bool,
    /// print the version and exit
    #[argh(switch)]
    version: bool,
    #[argh(subcommand)]
    command: Option<Command>,
}

#[derive(FromArgs)]
#[argh(subcommand)]
enum Command {
    Status(Status),
    Interfaces(Interfaces),
    Interface(Interface),
    Routes(Routes),
    Rules(Rules),
    Events(Events),
    History(History),
    Hooks(Hooks),
    Filters(Filters),
    Reload(Reload),
    Test(Test),
    Validate(Validate),
    Metrics(Metrics),
    Audit(Audit),
}

/// The daemon's version, uptime, configuration, table sizes and counters.
#[derive(FromArgs)]
#[argh(subcommand, name = "status", help_triggers("-h", "--help", "help"))]
struct Status {
    /// print JSON
    #[argh(switch)]
    json: bool,
}

/// Every link with its state, MTU, MAC and addresses.
#[derive(FromArgs)]
#[argh(subcommand, name = "interfaces", help_triggers("-h", "--help", "help"))]
struct Interfaces {
    /// print JSON
    #[argh(switch)]
    json: bool,
}

/// One link in detail: addresses, routes, policy routing.
#[derive(FromArgs)]
#[argh(subcommand, name = "interface", help_triggers("-h", "--help", "help"))]
struct Interface {
    /// the link's name or index
    #[argh(positional)]
    link: String,
    /// print JSON
    #[argh(switch)]
    json: bool,
}

/// The routes netevd mirrors from the kernel.
#[derive(FromArgs)]
#[argh(subcommand, name = "routes", help_triggers("-h", "--help", "help"))]
struct Routes {
    /// only this routing table
    #[argh(option)]
    table: Option<u32>,
    /// only routes through this link (name or index)
    #[argh(option)]
    link: Option<String>,
    /// only inet or inet6
    #[argh(option)]
    family: Option<String>,
    /// print JSON
    #[argh(switch)]
    json: bool,
}

/// The policy routing rules netevd installed.
#[derive(FromArgs)]
#[argh(subcommand, name = "rules", help_triggers("-h", "--help", "help"))]
struct Rules {
    /// every rule in the kernel, not only netevd's own
    #[argh(switch)]
    all: bool,
    /// print JSON
    #[argh(switch)]
    json: bool,
}

/// Recent events, or new ones as they happen.
#[derive(FromArgs)]
#[argh(subcommand, name = "events", help_triggers("-h", "--help", "help"))]
struct Events {
    /// at most this many, the newest
    #[argh(option)]
    limit: Option<usize>,
    /// only events of this link (name or index)
    #[argh(option)]
    link: Option<String>,
    /// only this kind: startup, state, removed, routes, test, lease
    #[argh(option)]
    kind: Option<String>,
    /// only events for this hook directory (carrier, routable, routes...)
    #[argh(option)]
    state: Option<String>,
    /// only events for which this condition holds, in the language of
    /// filters (netevd.yaml(5)), e.g. 'has_gateway && kind == "wireguard"'
    #[argh(option, long = "where")]
    where_: Option<String>,
    /// wait for new events and print each as it comes
    #[argh(switch)]
    follow: bool,
    /// print JSON
    #[argh(switch)]
    json: bool,
}

/// Recent hook runs: when, how long, how they ended, their output.
#[derive(FromArgs)]
#[argh(subcommand, name = "history", help_triggers("-h", "--help", "help"))]
struct History {
    /// at most this many, the newest
    #[argh(option)]
    limit: Option<usize>,
    /// only runs for this link (name or index)
    #[argh(option)]
    link: Option<String>,
    /// print JSON
    #[argh(switch)]
    json: bool,
}

/// The hook directories and which files in them run.
#[derive(FromArgs)]
#[argh(subcommand, name = "hooks", help_triggers("-h", "--help", "help"))]
struct Hooks {
    /// print JSON
    #[argh(switch)]
    json: bool,
}

/// The configured filters in order, with how many events each decided.
#[derive(FromArgs)]
#[argh(subcommand, name = "filters", help_triggers("-h", "--help", "help"))]
struct Filters {
    /// print JSON
    #[argh(switch)]
    json: bool,
}

/// Make the daemon reread its configuration file (privileged).
#[derive(FromArgs)]
#[argh(subcommand, name = "reload", help_triggers("-h", "--help", "help"))]
struct Reload {
    /// print JSON
    #[argh(switch)]
    json: bool,
}

/// Run a state's hooks for a link now, as if it had changed (privileged).
#[derive(FromArgs)]
#[argh(subcommand, name = "test", help_triggers("-h", "--help", "help"))]
struct Test {
    /// the hook directory to run: carrier, routable, routes...
    #[argh(option)]
    state: String,
    /// the link (name or index)
    #[argh(option)]
    link: String,
    /// only show which hooks would run, with their environment
    #[argh(switch)]
    dry_run: bool,
    /// print JSON
    #[argh(switch)]
    json: bool,
}

/// The daemon's metrics in the Prometheus text format.
#[derive(FromArgs)]
#[argh(subcommand, name = "metrics", help_triggers("-h", "--help", "help"))]
struct Metrics {
    /// print JSON (the text as one string)
    #[argh(switch)]
    json: bool,
}

/// Lines of the audit log, the rotated files included (privileged).
#[derive(FromArgs)]
#[argh(subcommand, name = "audit", help_triggers("-h", "--help", "help"))]
struct Audit {
    /// from this time on: Unix seconds, or an age such as 90s, 10m, 2h, 1d
    #[argh(option)]
    since: Option<String>,
    /// up to this time: Unix seconds, or an age such as 10m
    #[argh(option)]
    until: Option<String>,
    /// only this kind: state, hook, control, reload, policy, audit
    #[argh(option)]
    kind: Option<String>,
    /// only lines about this link (name or index)
    #[argh(option)]
    link: Option<String>,
    /// at most this many (default 100): the newest, or with --since the
    /// first
    #[argh(option)]
    limit: Option<usize>,
    /// print JSON
    #[argh(switch)]
    json: bool,
}

/// Check a configuration file with netevd --validate; no daemon needed.
#[derive(FromArgs)]
#[argh(subcommand, name = "validate", help_triggers("-h", "--help", "help"))]
struct Validate {
    /// the configuration file
    #[argh(positional)]
    file: PathBuf,
    /// print JSON
    #[argh(switch)]
    json: bool,
}

/// Why netevctl stops before finishing its work.
#[derive(Debug)]
enum Fail {
    /// Standard output was closed by its reader: a normal end, status 0.
    Quiet,
    /// Bad usage: the message, status 2.
    Usage(String),
    /// The message, status 1.
    Exit(String),
}

fn fail<T>(msg: impl Into<String>) -> Result<T, Fail> {
    Err(Fail::Exit(msg.into()))
}

/// A line on standard error; a failing stderr is ignored, as nobody could
/// be told anyway.
fn warn(msg: &str) {
    let _ = writeln!(io::stderr().lock(), "netevctl: {msg}");
}

/// Writes to standard output and flushes, so an error shows now and not
/// in a silent flush at exit.
fn out(text: &str) -> Result<(), Fail> {
    let mut o = io::stdout().lock();
    o.write_all(text.as_bytes())
        .and_then(|()| o.flush())
        .map_err(|e| match e.kind() {
            ErrorKind::BrokenPipe => Fail::Quiet,
            _ => Fail::Exit(format!("cannot write to standard output: {e}")),
        })
}

fn main() -> ExitCode {
    let args: Args = match netevd_ctl::parse_args("netevctl") {
        Ok(a) => a,
        Err(code) => return code,
    };
    let r = if args.version {
        out(&format!("netevctl {}\n", env!("CARGO_PKG_VERSION")))
    } else {
        run(&args)
    };
    match r {
        Ok(()) | Err(Fail::Quiet) => ExitCode::SUCCESS,
        Err(Fail::Usage(m)) => {
            warn(&m);
            ExitCode::from(2)
        }
        Err(Fail::Exit(m)) => {
            warn(&m);
            ExitCode::from(1)
        }
    }
}

const COMMAND_LIST: &str = "status, interfaces, interface, routes, rules, events, history, hooks, \
     reload, test, validate, metrics, audit";

fn run(args: &Args) -> Result<(), Fail> {
    let Some(cmd) = &args.command else {
        return Err(Fail::Usage(format!(
            "a command is needed: {COMMAND_LIST} (netevctl --help says more)"
        )));
    };
    if !(1..=MAX_TIMEOUT).contains(&args.timeout) {
        return Err(Fail::Usage(format!(
            "--timeout: 1 to {MAX_TIMEOUT} seconds, not {}",
            args.timeout
        )));
    }
    let json = args.json || cmd.json();
    if let Command::Validate(v) = cmd {
        return validate(&v.file, json);
    }
    let request = request_of(cmd)?;
    let line = request.to_line();
    if line.len() > MAX_REQUEST {
        return Err(Fail::Usage(format!(
            "the request is longer than {} KiB: an argument is too long",
            MAX_REQUEST >> 10
        )));
    }
    let timeout = Duration::from_secs(args.timeout);
    let deadline = Instant::now() + timeout;
    let mut conn = Conn::open(&args.socket, deadline, args.timeout)?;
    if let Request::Subscribe(_) = request {
        return follow(&mut conn, &line, deadline, json);
    }
    let body = conn.ask(&line, deadline, cmd.name())?;
    let text = if json {
        format!("{body}\n")
    } else {
        match cmd {
            Command::Status(_) => render::status(&body),
            Command::Interfaces(_) => render::interfaces(&body),
            Command::Interface(_) => render::interface(&body),
            Command::Routes(_) => render::routes(&body),
            Command::Rules(_) => render::rules(&body),
            Command::Events(_) => render::events(&body),
            Command::History(_) => render::history(&body),
            Command::Hooks(_) => render::hooks(&body),
            Command::Filters(_) => render::filters(&body),
            Command::Reload(_) => render::reload(&body),
            Command::Test(_) => render::test(&body),
            Command::Metrics(_) => render::metrics(&body),
            Command::Audit(_) => render::audit(&body),
            Command::Validate(_) => unreachable!("validate is handled above"),
        }
    };
    out(&text)
}

impl Command {
    fn json(&self) -> bool {
        match self {
            Command::Status(c) => c.json,
            Command::Interfaces(c) => c.json,
            Command::Interface(c) => c.json,
            Command::Routes(c) => c.json,
            Command::Rules(c) => c.json,
            Command::Events(c) => c.json,
            Command::History(c) => c.json,
            Command::Hooks(c) => c.json,
            Command::Filters(c) => c.json,
            Command::Reload(c) => c.json,
            Command::Test(c) => c.json,
            Command::Validate(c) => c.json,
            Command::Metrics(c) => c.json,
            Command::Audit(c) => c.json,
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Command::Status(_) => "status",
            Command::Interfaces(_) => "interfaces",
            Command::Interface(_) => "interface",
            Command::Routes(_) => "routes",
            Command::Rules(_) => "rules",
            Command::Events(_) => "events",
            Command::History(_) => "history",
            Command::Hooks(_) => "hooks",
            Command::Filters(_) => "filters",
            Command::Reload(_) => "reload",
            Command::Test(_) => "test",
            Command::Validate(_) => "validate",
            Command::Metrics(_) => "metrics",
            Command::Audit(_) => "audit",
        }
    }
}

/// A time on the command line, as milliseconds since the epoch: Unix
/// seconds, or an age (`90s`, `10m`, `2h`, `1d`) before `now_ms`.
fn time_arg(s: &str, now_ms: u64) -> Result<u64, String> {
    let digits = |d: &str| -> Result<u64, String> {
        if d.is_empty() || !d.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!(
                "{s:?} is neither Unix seconds nor an age such as 90s, 10m, 2h, 1d"
            ));
        }
        d.parse::<u64>().map_err(|_| format!("{s:?} is too large"))
    };
    let unit = match s.as_bytes().last() {
        Some(b's') => 1,
        Some(b'm') => 60,
        Some(b'h') => 3600,
        Some(b'd') => 86400,
        _ => {
            let secs = digits(s)?;
            return secs
                .checked_mul(1000)
                .ok_or_else(|| format!("{s:?} is too large"));
        }
    };
    let n = digits(&s[..s.len() - 1])?;
    let ago = n
        .checked_mul(unit * 1000)
        .ok_or_else(|| format!("{s:?} is too large"))?;
    Ok(now_ms.saturating_sub(ago))
}

fn link_arg(what: &str, s: &str) -> Result<LinkRef, Fail> {
    if s.is_empty() {
        return Err(Fail::Usage(format!("{what}: an interface name or index")));
    }
    Ok(LinkRef::parse(s))
}

/// The request a command sends; arguments the daemon would refuse are
/// usage errors here, before connecting.
fn request_of(cmd: &Command) -> Result<Request, Fail> {
    let opt_link = |l: &Option<String>| l.as_deref().map(|l| link_arg("--link", l)).transpose();
    Ok(match cmd {
        Command::Status(_) => Request::Status,
        Command::Interfaces(_) => Request::Interfaces,
        Command::Interface(c) => Request::Interface(link_arg("interface", &c.link)?),
        Command::Routes(c) => {
            if let Some(f) = c
                .family
                .as_deref()
                .filter(|f| *f != "inet" && *f != "inet6")
            {
                return Err(Fail::Usage(format!(
                    "routes: --family: inet or inet6, not {f:?}"
                )));
            }
            Request::Routes {
                table: c.table,
                link: opt_link(&c.link)?,
                family: c.family.clone(),
            }
        }
        Command::Rules(c) => Request::Rules { all: c.all },
        Command::Events(c) => {
            let filter = EventFilter {
                link: opt_link(&c.link)?,
                kind: c.kind.clone(),
                state: c.state.clone(),
                condition: match c.where_.as_deref() {
                    Some(w) if w.trim().is_empty() => {
                        return Err(Fail::Usage("events: --where: an empty condition".into()))
                    }
                    w => w.map(str::to_string),
                },
            };
            if c.follow {
                if c.limit.is_some() {
                    return Err(Fail::Usage(
                        "events: --limit is for past events, not with --follow".into(),
                    ));
                }
                Request::Subscribe(filter)
            } else {
                Request::Events {
                    limit: c.limit,
                    since: None,
                    filter,
                }
            }
        }
        Command::History(c) => Request::History {
            limit: c.limit,
            link: opt_link(&c.link)?,
        },
        Command::Hooks(_) => Request::Hooks,
        Command::Metrics(_) => Request::Metrics,
        Command::Audit(c) => {
            if let Some(k) = c.kind.as_deref().filter(|k| !AUDIT_KINDS.contains(k)) {
                return Err(Fail::Usage(format!(
                    "audit: --kind: {k:?} is not one of {}",
                    AUDIT_KINDS.join(", ")
                )));
            }
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            let when = |flag: &str, v: &Option<String>| {
                v.as_deref()
                    .map(|s| {
                        time_arg(s, now).map_err(|e| Fail::Usage(format!("audit: {flag}: {e}")))
                    })
                    .transpose()
            };
            let q = AuditQuery {
                since_ms: when("--since", &c.since)?,
                until_ms: when("--until", &c.until)?,
                kind: c.kind.clone(),
                link: opt_link(&c.link)?,
                limit: Some(c.limit.unwrap_or(100)),
            };
            if let (Some(a), Some(b)) = (q.since_ms, q.until_ms) {
                if a > b {
                    return Err(Fail::Usage("audit: --since is after --until".into()));
                }
            }
            Request::Audit(q)
        }
        Command::Filters(_) => Request::Filters,
        Command::Reload(_) => Request::Reload,
        Command::Test(c) => {
            if !STATES.contains(&c.state.as_str()) {
                return Err(Fail::Usage(format!(
                    "test: --state: {:?} is not one of {}",
                    c.state,
                    STATES.join(", ")
                )));
            }
            Request::Test {
                state: c.state.clone(),
                link: link_arg("test: --link", &c.link)?,
                dry_run: c.dry_run,
            }
        }
        Command::Validate(_) => unreachable!("validate sends no request"),
    })
}

/// One connection to the daemon and the bytes read from it but not yet
/// returned as lines.
struct Conn {
    stream: UnixStream,
    buf: Vec<u8>,
    /// How much of `buf` is known to hold no newline.
    scanned: usize,
    /// What each read fills, reused for every line of a stream.
    chunk: Box<[u8]>,
    timeout_secs: u64,
}

/// Why no line came.
enum ReadError {
    /// End of stream; `partial` when a line had begun.
    Closed {
        partial: bool,
    },
    Deadline,
    TooLong,
    Io(io::Error),
}

impl Conn {
    /// Connects within the deadline. A Unix `connect` blocks while the
    /// listener's backlog is full (a daemon that stopped accepting), so it
    /// runs on a thread that is abandoned when time is up.
    fn open(path: &Path, deadline: Instant, timeout_secs: u64) -> Result<Conn, Fail> {
        let (tx, rx) = mpsc::channel();
        let p = path.to_path_buf();
        std::thread::spawn(move || {
            let _ = tx.send(UnixStream::connect(p));
        });
        let stream = match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return fail(connect_error(path, &e)),
            Err(_) => {
                return fail(format!(
                    "{} accepts no connection within {timeout_secs} s (is the daemon stuck?)",
                    path.display()
                ))
            }
        };
        Ok(Conn {
            stream,
            buf: Vec::new(),
            scanned: 0,
            chunk: vec![0; 64 << 10].into_boxed_slice(),
            timeout_secs,
        })
    }

    /// Sends one request line and returns the `ok` body of its reply.
    fn ask(&mut self, line: &str, deadline: Instant, command: &str) -> Result<Value, Fail> {
        self.send(line, deadline)?;
        let text = self.reply_line(deadline)?;
        match parse_reply(&text) {
            Ok(Reply::Ok(body)) => Ok(body),
            Ok(Reply::Error { code, message }) => fail(format!("{command}: {message} ({code})")),
            Ok(Reply::Dropped(reason)) => {
                fail(format!("the daemon dropped the connection: {reason}"))
            }
            Ok(Reply::Event(_)) => fail(format!(
                "bad reply from the daemon: an event line where the reply to {command} was due"
            )),
            Err(e) => fail(format!(
                "bad reply from the daemon: {e}: {}",
                excerpt(&text)
            )),
        }
    }

    /// Writes the request. If the daemon has already closed, its reason
    /// (an error line) may still be waiting to be read, so a failed write
    /// is not reported by itself.
    fn send(&mut self, line: &str, deadline: Instant) -> Result<(), Fail> {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut msg = Vec::with_capacity(line.len() + 1);
        msg.extend_from_slice(line.as_bytes());
        msg.push(b'\n');
        let r = self
            .stream
            .set_write_timeout(Some(left.max(Duration::from_millis(1))))
            .and_then(|()| self.stream.write_all(&msg));
        match r {
            Ok(()) => Ok(()),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                fail(self.deadline_message())
            }
            Err(e) if matches!(e.kind(), ErrorKind::BrokenPipe | ErrorKind::ConnectionReset) => {
                Ok(())
            }
            Err(e) => fail(format!("cannot send the request: {e}")),
        }
    }

    fn deadline_message(&self) -> String {
        format!(
            "no complete reply from the daemon within {} s (--timeout changes this)",
            self.timeout_secs
        )
    }

    /// The next line, as text, with what went wrong said for people.
    fn reply_line(&mut self, deadline: Instant) -> Result<String, Fail> {
        match self.line(Some(deadline)) {
            Ok(l) => Ok(l),
            Err(e) => fail(self.read_error(e)),
        }
    }

    fn read_error(&self, e: ReadError) -> String {
        match e {
            ReadError::Closed { partial: false } => "the daemon closed without answering".into(),
            ReadError::Closed { partial: true } => {
                "the daemon closed the connection in the middle of a line".into()
            }
            ReadError::Deadline => self.deadline_message(),
            ReadError::TooLong => format!(
                "a line from the daemon is longer than {} MiB; giving up",
                MAX_REPLY >> 20
            ),
            ReadError::Io(e) if e.kind() == ErrorKind::ConnectionReset => {
                "the daemon closed without answering (connection reset)".into()
            }
            ReadError::Io(e) => format!("cannot read from the daemon: {e}"),
        }
    }

    /// Reads up to the next newline. `deadline` bounds the whole line,
    /// not each read, so a server that trickles a byte at a time cannot
    /// hold the client forever.
    fn line(&mut self, deadline: Option<Instant>) -> Result<String, ReadError> {
        loop {
            if let Some(i) = self.buf[self.scanned..].iter().position(|&b| b == b'\n') {
                let end = self.scanned + i;
                let mut line: Vec<u8> = self.buf.drain(..=end).collect();
                line.pop();
                self.scanned = 0;
                // Invalid UTF-8 is a bad line, reported by the JSON parser
                // with the rest of what is wrong.
                return Ok(String::from_utf8_lossy(&line).into_owned());
            }
            self.scanned = self.buf.len();
            if self.buf.len() > MAX_REPLY {
                return Err(ReadError::TooLong);
            }
            let timeout = match deadline {
                None => None,
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(ReadError::Deadline);
                    }
                    Some(left)
                }
            };
            self.stream
                .set_read_timeout(timeout)
                .map_err(ReadError::Io)?;
            match self.stream.read(&mut self.chunk) {
                Ok(0) => {
                    return Err(ReadError::Closed {
                        partial: !self.buf.is_empty(),
                    })
                }
                Ok(n) => self.buf.extend_from_slice(&self.chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::Interrupted | ErrorKind::WouldBlock | ErrorKind::TimedOut
                    ) => {}
                Err(e) => return Err(ReadError::Io(e)),
            }
        }
    }
}

/// The start of a bad line, safe to print.
fn excerpt(line: &str) -> String {
    if line.is_empty() {
        return "(an empty line)".into();
    }
    let mut s: String = line.chars().take(80).collect();
    if s.len() < line.len() {
        s.push_str("...");
    }
    format!("{:?}", s)
}

/// `events --follow`: the subscription's reply, then every event line as
/// it arrives, until the daemon ends the stream or stdout is closed.
fn follow(conn: &mut Conn, line: &str, deadline: Instant, json: bool) -> Result<(), Fail> {
    conn.ask(line, deadline, "events --follow")?;
    loop {
        // No deadline: events may be hours apart. The line cap still
        // holds.
        let text = match conn.line(None) {
            Ok(t) => t,
            Err(ReadError::Closed { partial: false }) => {
                return fail("the daemon closed the subscription")
            }
            Err(e) => return fail(conn.read_error(e)),
        };
        match parse_reply(&text) {
            Ok(Reply::Event(ev)) => {
                if json {
                    out(&format!("{ev}\n"))?
                } else {
                    out(&format!("{}\n", render::event_summary(&ev)))?
                }
            }
            Ok(Reply::Dropped(reason)) => {
                return fail(format!("the daemon dropped the subscription: {reason}"))
            }
            Ok(Reply::Error { code, message }) => {
                return fail(format!("events --follow: {message} ({code})"))
            }
            Ok(Reply::Ok(_)) => {
                return fail("bad line from the daemon: a second reply in an event stream")
            }
            Err(e) => return fail(format!("bad line from the daemon: {e}: {}", excerpt(&text))),
        }
    }
}

/// Says why `connect` failed in the terms of what to do about it.
fn connect_error(path: &Path, e: &io::Error) -> String {
    let p = path.display();
    match e.kind() {
        ErrorKind::NotFound => {
            format!("no socket at {p} (is netevd running? is control.socket set?)")
        }
        // The file is there but nobody listens: a socket left behind by a
        // daemon that died without removing it.
        ErrorKind::ConnectionRefused => match std::fs::metadata(path) {
            Ok(m) if !m.file_type().is_socket() => format!(
                "{p} is not a socket but {}: is --socket right? (control.socket in \
                 netevd.yaml says where netevd serves it)",
                if m.is_dir() {
                    "a directory"
                } else if m.is_file() {
                    "a regular file"
                } else {
                    "another kind of file"
                }
            ),
            _ => format!(
                "nothing listens on {p}: the daemon is not running (the socket is left from an \
                 earlier run)"
            ),
        },
        ErrorKind::PermissionDenied => format!("permission denied on {p} ({})", access_hint(path)),
        _ => format!("cannot connect to {p}: {e}"),
    }
}

/// What the socket's owner, group and mode say about who may connect.
fn access_hint(path: &Path) -> String {
    let md = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == ErrorKind::PermissionDenied => {
            return "a directory above it is closed to you".into()
        }
        Err(e) => return format!("and it cannot be examined: {e}"),
    };
    let mode = md.mode() & 0o7777;
    let owner = name_of("/etc/passwd", md.uid());
    if mode & 0o020 != 0 && md.gid() != 0 {
        let group = name_of("/etc/group", md.gid());
        format!("mode {mode:04o}, group {group}: join group {group} or run as root")
    } else if mode & 0o020 != 0 {
        format!(
            "mode {mode:04o}, group root: only root may connect; control.group in \
             netevd.yaml lets a group in"
        )
    } else if md.uid() == 0 {
        format!("mode {mode:04o}, owner {owner}: only root may connect")
    } else {
        format!("mode {mode:04o}, owner {owner}: only {owner} and root may connect")
    }
}

/// The name of a uid or gid from `/etc/passwd` or `/etc/group` (both
/// `name:x:id:...`), or the number when it has none there.
fn name_of(db: &str, id: u32) -> String {
    let text = std::fs::read_to_string(db).unwrap_or_default();
    text.lines()
        .find_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            f.next()?;
            (f.next()?.parse::<u32>().ok()? == id).then(|| name.to_string())
        })
        .unwrap_or_else(|| id.to_string())
}

/// Where the daemon's binary is: `$NETEVD`, next to netevctl, in the
/// `sbin` beside netevctl's `bin` (`make install` splits them), in
/// `PATH`, then the usual system directories.
fn find_netevd() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("NETEVD").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(format!("NETEVD={} is not a file", p.display()))
        };
    }
    let mut places = Vec::new();
    if let Ok(me) = std::env::current_exe() {
        if let Some(dir) = me.parent() {
            places.push(dir.to_path_buf());
            if let Some(prefix) = dir.parent() {
                places.push(prefix.join("sbin"));
            }
        }
    }
    if let Some(path) = std::env::var_os("PATH") {
        places.extend(std::env::split_paths(&path));
    }
    places.extend(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from));
    places
        .iter()
        .map(|d| d.join("netevd"))
        .find(|p| {
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.mode() & 0o111 != 0)
        })
        .ok_or_else(|| {
            "cannot find the netevd binary (looked next to netevctl, in PATH and in \
             /usr/local/sbin, /usr/sbin, /sbin); set NETEVD to its path"
                .into()
        })
}

/// `validate FILE`: runs `netevd --validate --config FILE` and passes on
/// its verdict. A missing file is an error here, although the daemon
/// starts with defaults without one: asking to check a file that is not
/// there is a mistake.
fn validate(file: &Path, json: bool) -> Result<(), Fail> {
    if let Err(e) = std::fs::metadata(file) {
        return fail(format!("{}: {e}", file.display()));
    }
    let netevd = find_netevd().or_else(fail)?;
    let o = Process::new(&netevd)
        .arg("--validate")
        .arg("--config")
        .arg(file)
        .output()
        .or_else(|e| fail(format!("cannot run {}: {e}", netevd.display())))?;
    let valid = o.status.success();
    let stdout = String::from_utf8_lossy(&o.stdout);
    let stderr = String::from_utf8_lossy(&o.stderr);
    if json {
        let v = serde_json::json!({
            "file": file.to_string_lossy(),
            "valid": valid,
            "output": stdout.lines().collect::<Vec<_>>(),
            "errors": stderr.lines().collect::<Vec<_>>(),
        });
        out(&format!("{v}\n"))?;
    } else {
        out(&stdout)?;
        let _ = io::stderr().lock().write_all(stderr.as_bytes());
    }
    if valid {
        return Ok(());
    }
    match o.status.code() {
        // netevd has said what is wrong.
        Some(1) => Err(Fail::Exit(format!("{} is not valid", file.display()))),
        Some(c) => fail(format!(
            "{} --validate exited with status {c}",
            netevd.display()
        )),
        None => fail(format!(
            "{} --validate was killed ({})",
            netevd.display(),
            o.status
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::time_arg;

    #[test]
    fn times_on_the_command_line() {
        let now = 1_000_000_000_000;
        assert_eq!(time_arg("1700000000", now), Ok(1_700_000_000_000));
        assert_eq!(time_arg("90s", now), Ok(now - 90_000));
        assert_eq!(time_arg("10m", now), Ok(now - 600_000));
        assert_eq!(time_arg("2h", now), Ok(now - 7_200_000));
        assert_eq!(time_arg("1d", now), Ok(now - 86_400_000));
        assert_eq!(time_arg("100000d", 5), Ok(0));
        for bad in ["", "m", "-5m", "5x", "1.5h", "99999999999999999999"] {
            assert!(time_arg(bad, now).is_err(), "{bad}");
        }
    }
}
