//! netevd: watches the kernel's links, addresses, routes and rules over
//! rtnetlink and runs the user's hooks when they change.
//!
//! This file: flags, configuration, logging, the pid file, privileges,
//! then the reactor.
//!
//! Start-up order, each step for a reason:
//! 1. configuration, and the users it names looked up;
//! 2. a socket passed by the service manager taken (`LISTEN_PID` is this
//!    pid only before daemon(3) forks);
//! 3. background, logging, the pid file; netevd becomes a child subreaper;
//! 4. with `system.user`: the privileged hook spawner is forked, while the
//!    process is root and has no other descriptor the spawner should hold;
//! 5. the reactor opens what needs root: the netlink socket (a forced
//!    receive buffer), the control socket in /run/netevd;
//! 6. with `system.user`: the drop (`privs::drop_to`), with one thread,
//!    before a single netlink message is read;
//! 7. the loop.
//!
//! Exit status: 0 stopped by SIGTERM/SIGINT or `--validate` passed; 1 the
//! configuration is wrong or missing; 2 bad flags; 3 start-up failed
//! (netlink socket, signals, the pid file, the privilege drop).

mod config;
mod core;
mod effect;
mod logger;
mod privs;
mod reactor;
mod source;

use std::path::PathBuf;
use std::process::ExitCode;

use argh::FromArgs;

/// Network event daemon: runs hooks in <script_dir>/<state>.d/ when links,
/// addresses and routes change.
#[derive(FromArgs)]
struct Args {
    /// configuration file (default /etc/netevd/netevd.yaml)
    #[argh(option, short = 'c', default = "PathBuf::from(config::DEFAULT_PATH)")]
    config: PathBuf,
    /// stay in the foreground and log to stderr
    #[argh(switch, short = 'f')]
    foreground: bool,
    /// check the configuration and exit
    #[argh(switch)]
    validate: bool,
    /// watch and log events, but run no hooks
    #[argh(switch, short = 'n')]
    dry_run: bool,
    /// more logging: -v debug, -v -v trace
    #[argh(switch, short = 'v')]
    verbose: u8,
    /// print the version and exit
    #[argh(switch, short = 'V')]
    version: bool,
    /// write the daemon's process id to this file (removed at exit)
    #[argh(option)]
    pidfile: Option<PathBuf>,
}

/// The flags, with `-h` as `--help` (argh knows only the long form) and
/// errors in the daemon's own voice, with the way to the help. Exits with
/// 0 after the help, 2 after a bad flag.
fn parse_args() -> Result<Args, ExitCode> {
    let all: Vec<String> = std::env::args().skip(1).collect();
    let mut strs: Vec<&str> = Vec::with_capacity(all.len());
    for (i, a) in all.iter().enumerate() {
        // Not when it is the value of an option (`--config -h` is a file).
        let value = i > 0 && matches!(all[i - 1].as_str(), "-c" | "--config" | "--pidfile");
        strs.push(if a == "-h" && !value { "--help" } else { a });
    }
    Args::from_args(&["netevd"], &strs).map_err(|e| {
        if e.status.is_ok() {
            use std::io::Write;
            // A closed pipe (`netevd --help | head -1`) is no error.
            let _ = std::io::stdout().write_all(e.output.as_bytes());
            return ExitCode::SUCCESS;
        }
        // argh says "Unrecognized argument: ..."; mid-line, lower case.
        let mut msg = e.output.trim_end().to_string();
        if let Some(first) = msg.get_mut(..1) {
            first.make_ascii_lowercase();
        }
        eprintln!("netevd: {msg}\nRun 'netevd --help' for the flags.");
        ExitCode::from(2)
    })
}

/// Writes our pid to `path` and removes it again on drop, if it still
/// names us (a second instance may have taken it over).
struct PidFile(PathBuf);

impl PidFile {
    /// `path` is absolute: made so before daemon(3) moved to /.
    fn create(path: PathBuf) -> std::io::Result<PidFile> {
        std::fs::write(&path, format!("{}\n", std::process::id()))?;
        Ok(PidFile(path))
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let ours = format!("{}\n", std::process::id());
        if std::fs::read(&self.0).is_ok_and(|s| s == ours.as_bytes()) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

fn main() -> ExitCode {
    let args: Args = match parse_args() {
        Ok(a) => a,
        Err(code) => return code,
    };
    if args.version {
        println!("netevd {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    // Absolute now: daemon(3) moves to / and a reload reads it again.
    let config_path = match std::path::absolute(&args.config) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("netevd: {}: {e}", args.config.display());
            return ExitCode::from(1);
        }
    };
    // Absolute too, before daemon(3) moves to / (an absolute one stays).
    let pidfile = match args
        .pidfile
        .as_ref()
        .map(|p| std::env::current_dir().map(|d| d.join(p)))
    {
        Some(Err(e)) => {
            eprintln!("netevd: --pidfile: {e}");
            return ExitCode::from(2);
        }
        p => p.and_then(Result::ok),
    };
    let (cfg, defaults) = match config::Config::load_start(&config_path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("netevd: {e}");
            return ExitCode::from(1);
        }
    };
    let not_found = format!("{} not found: using the defaults", config_path.display());
    if args.validate {
        if defaults {
            // Nothing was checked: say so, and fail, so that a typo in a
            // path or a missing package is not mistaken for a valid file.
            eprintln!(
                "netevd: {}: no such file: nothing to validate (netevd would start with the \
                 defaults)",
                config_path.display()
            );
            return ExitCode::from(1);
        }
        println!("{}: configuration is valid", config_path.display());
        for l in &cfg.inactive {
            println!("not active: {l}");
        }
        return ExitCode::SUCCESS;
    }
    #[cfg(feature = "privsep")]
    let user = match cfg
        .user
        .as_deref()
        .map(|u| privs::account(u, "system.user"))
    {
        None => None,
        Some(Ok(a)) if !nix::unistd::geteuid().is_root() => {
            eprintln!(
                "netevd: system.user {:?}: netevd must start as root to drop to it",
                a.name
            );
            return ExitCode::from(1);
        }
        Some(Ok(a)) => Some(a),
        Some(Err(e)) => {
            eprintln!("netevd: {e}");
            return ExitCode::from(1);
        }
    };
    #[cfg(feature = "privsep")]
    let hook_user = match cfg
        .hook_user
        .as_deref()
        .map(|u| privs::account(u, "scripts.user"))
    {
        None => None,
        Some(Ok(a)) => Some(a),
        Some(Err(e)) => {
            eprintln!("netevd: {e}");
            return ExitCode::from(1);
        }
    };
    let activated = match source::control::take_listen_fds() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("netevd: {e}");
            return ExitCode::from(3);
        }
    };
    let cli_level = match args.verbose {
        0 => None,
        1 => Some(log::LevelFilter::Debug),
        _ => Some(log::LevelFilter::Trace),
    };
    let level = cli_level
        .or(cfg.log_level)
        .unwrap_or(log::LevelFilter::Info);
    let syslog = if args.foreground {
        None
    } else {
        let s = logger::connect_syslog();
        if s.is_none() {
            // Better on the terminal or wherever stderr goes than nowhere.
            eprintln!(
                "netevd: warning: no syslog daemon at /dev/log: logging to standard error \
                 instead (run with --foreground under a supervisor)"
            );
        }
        s
    };
    if !args.foreground {
        if let Err(e) = logger::daemonize(syslog.is_some()) {
            eprintln!("netevd: cannot go to the background: {e}");
            return ExitCode::from(3);
        }
    }
    logger::init(syslog, level);
    let _pidfile = match pidfile.map(PidFile::create).transpose() {
        Ok(p) => p,
        Err(e) => {
            let path = args.pidfile.as_deref().unwrap_or(std::path::Path::new(""));
            log::error!("cannot write the pid file {}: {e}", path.display());
            return ExitCode::from(3);
        }
    };
    if defaults {
        log::info!("{not_found}");
    }
    if activated {
        log::debug!("control socket passed by the service manager (LISTEN_FDS)");
    }
    if let Err(e) = effect::hooks::reserve_json_fd() {
        log::error!("cannot start: reserving descriptor 3: {e}");
        return ExitCode::from(3);
    }
    // Orphans of hooks (a double-forked daemon) come to netevd, which
    // reaps them, rather than to an init that may not.
    if let Err(e) = privs::become_subreaper() {
        log::warn!("cannot become a child subreaper ({e}): orphans of hooks go to init");
    }
    #[cfg(not(feature = "privsep"))]
    let spawner = None;
    #[cfg(feature = "privsep")]
    let spawner = match &user {
        None => None,
        Some(_) => match effect::spawner::Spawner::fork(
            &config_path,
            cfg.script_dir.clone(),
            hook_user.clone(),
        ) {
            Ok(s) => Some(s),
            Err(e) => {
                log::error!("cannot start: forking the hook spawner: {e}");
                return ExitCode::from(3);
            }
        },
    };
    #[cfg(feature = "privsep")]
    let net_admin = privs::needs_net_admin(&cfg);
    log::debug!("configured backend: {}", cfg.backend.as_str());
    for l in &cfg.inactive {
        log::warn!("not active: {l}");
    }
    let opts = reactor::Options {
        config_path,
        dry_run: args.dry_run,
        cli_level,
        spawner,
    };
    let mut d = match reactor::Daemon::new(cfg, opts) {
        Ok(d) => d,
        Err(e) => {
            log::error!("cannot start: {e}");
            return ExitCode::from(3);
        }
    };
    #[cfg(feature = "privsep")]
    if let Some(acct) = &user {
        if let Err(e) = d.give_control_socket(acct.uid) {
            log::warn!(
                "control socket: cannot give it to {}: {e}; its mode stays as it is",
                acct.name
            );
        }
        match privs::drop_to(acct, net_admin) {
            Ok(caps) => log::info!(
                "running as {} (uid {}, gid {}), capabilities kept: {caps}; hooks run as {} through the spawner",
                acct.name,
                acct.uid,
                acct.gid,
                hook_user.as_ref().map_or("root", |u| u.name.as_str())
            ),
            Err(e) => {
                log::error!("cannot start: dropping privileges to {}: {e}", acct.name);
                return ExitCode::from(3);
            }
        }
    }
    match d.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e}");
            ExitCode::from(3)
        }
    }
}
