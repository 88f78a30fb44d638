//! netevd: watches the kernel's links, addresses, routes and rules over
//! rtnetlink and runs the user's hooks when they change.
//!
//! This file: flags, configuration, logging, then the reactor.
//!
//! Exit status: 0 stopped by SIGTERM/SIGINT or `--validate` passed; 1 the
//! configuration is wrong; 2 bad flags; 3 start-up failed (netlink socket,
//! signals).

mod config;
mod core;
mod effect;
mod logger;
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
    log::debug!("configured backend: {}", cfg.backend.as_str());
    for l in &cfg.inactive {
        log::warn!("not active: {l}");
    }
    let opts = reactor::Options {
        config_path,
        dry_run: args.dry_run,
        cli_level,
    };
    let mut d = match reactor::Daemon::new(cfg, opts) {
        Ok(d) => d,
        Err(e) => {
            log::error!("cannot start: {e}");
            return ExitCode::from(3);
        }
    };
    match d.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e}");
            ExitCode::from(3)
        }
    }
}
