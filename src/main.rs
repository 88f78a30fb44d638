//! netevd: watches the kernel's links, addresses, routes and rules over
//! rtnetlink and runs the user's hooks when they change.
//!
//! This file: flags, configuration, logging, privileges, then the reactor.
//!
//! Start-up order, each step for a reason:
//! 1. configuration, and the users it names looked up;
//! 2. a socket passed by the service manager taken (`LISTEN_PID` is this
//!    pid only before daemon(3) forks);
//! 3. background, logging; netevd becomes a child subreaper;
//! 4. with `system.user`: the privileged hook spawner is forked, while the
//!    process is root and has no other descriptor the spawner should hold;
//! 5. the reactor opens what needs root: the netlink socket (a forced
//!    receive buffer), the control socket in /run/netevd;
//! 6. with `system.user`: the drop (`privs::drop_to`), with one thread,
//!    before a single netlink message is read;
//! 7. the loop.
//!
//! Exit status: 0 stopped by SIGTERM/SIGINT or `--validate` passed; 1 the
//! configuration is wrong; 2 bad flags; 3 start-up failed (netlink socket,
//! signals, the privilege drop).

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
}

fn main() -> ExitCode {
    let args: Args = match netevd_ctl::parse_args("netevd") {
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
            println!("{not_found}");
        } else {
            println!("{}: configuration is valid", config_path.display());
        }
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
    if !args.foreground {
        if let Err(e) = nix::unistd::daemon(false, false) {
            eprintln!("netevd: cannot go to the background: {e}");
            return ExitCode::from(3);
        }
    }
    logger::init(args.foreground, level);
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
