//! Logging through `log`: to stderr in the foreground, to syslog (daemon
//! facility) otherwise. The level can change at run time (reload).

use std::io::Write;

use log::{LevelFilter, Log, Metadata, Record};

struct Stderr;

impl Log for Stderr {
    fn enabled(&self, m: &Metadata) -> bool {
        m.level() <= log::max_level()
    }

    fn log(&self, r: &Record) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let lvl = match r.level() {
            log::Level::Error => "error",
            log::Level::Warn => "warning",
            log::Level::Info => "info",
            log::Level::Debug => "debug",
            log::Level::Trace => "trace",
        };
        // One write per line, so lines from several sources never mix.
        let line = format!("netevd: {lvl}: {}\n", r.args());
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {}
}

pub fn init(foreground: bool, level: LevelFilter) {
    log::set_max_level(level);
    if !foreground {
        let f = syslog::Formatter3164 {
            facility: syslog::Facility::LOG_DAEMON,
            hostname: None,
            process: "netevd".into(),
            pid: std::process::id(),
        };
        if let Ok(w) = syslog::unix(f) {
            let _ = log::set_boxed_logger(Box::new(syslog::BasicLogger::new(w)));
            return;
        }
    }
    let _ = log::set_logger(&Stderr);
}

pub fn set_level(level: LevelFilter) {
    log::set_max_level(level);
}
