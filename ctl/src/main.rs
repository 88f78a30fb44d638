//! netevctl: the client of netevd's control socket.
//!
//! Sends one JSON Lines request, `{"command": ..., "args": [...]}`, and
//! prints the one terminal reply. The daemon does not serve the socket in
//! this version; this client already speaks the envelope so both sides
//! grow together.
//!
//! Exit status: 0 success, 1 daemon unreachable or request refused, 2 bad
//! options.

use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use argh::FromArgs;

/// Query and control netevd.
#[derive(FromArgs)]
struct Args {
    /// control socket (default /run/netevd/netevd.sock)
    #[argh(option, default = "PathBuf::from(\"/run/netevd/netevd.sock\")")]
    socket: PathBuf,
    /// print the daemon's JSON reply as it is
    #[argh(switch)]
    json: bool,
    /// status, interfaces, interface NAME, routes, rules, events, reload, test, history
    #[argh(positional, greedy)]
    command: Vec<String>,
}

const COMMANDS: [&str; 9] = [
    "status",
    "interfaces",
    "interface",
    "routes",
    "rules",
    "events",
    "reload",
    "test",
    "history",
];

/// Parses the command line; `--help` exits 0, bad flags exit 2 (argh's own
/// `from_env` would exit 1, which means something else here).
fn parse_args<T: FromArgs>() -> Result<T, ExitCode> {
    let all: Vec<String> = std::env::args().collect();
    let strs: Vec<&str> = all.iter().map(String::as_str).collect();
    let name = strs
        .first()
        .map(|p| p.rsplit('/').next().unwrap_or(p))
        .unwrap_or("netevctl");
    T::from_args(&[name], strs.get(1..).unwrap_or(&[])).map_err(|e| {
        if e.status.is_ok() {
            print!("{}", e.output);
            ExitCode::SUCCESS
        } else {
            eprintln!("{}", e.output.trim_end());
            ExitCode::from(2)
        }
    })
}

fn main() -> ExitCode {
    let args: Args = match parse_args() {
        Ok(a) => a,
        Err(code) => return code,
    };
    let Some(cmd) = args.command.first() else {
        eprintln!("netevctl: a command is needed: {}", COMMANDS.join(", "));
        return ExitCode::from(2);
    };
    if !COMMANDS.contains(&cmd.as_str()) {
        eprintln!(
            "netevctl: unknown command {cmd:?} (expected one of {})",
            COMMANDS.join(", ")
        );
        return ExitCode::from(2);
    }
    let req = serde_json::json!({ "command": cmd, "args": &args.command[1..] });
    match request(&args.socket, &req.to_string()) {
        Ok(reply) => {
            if args.json {
                println!("{reply}");
            } else {
                match serde_json::from_str::<serde_json::Value>(&reply) {
                    Ok(v) => println!("{}", serde_json::to_string_pretty(&v).unwrap_or(reply)),
                    Err(_) => println!("{reply}"),
                }
            }
            ExitCode::SUCCESS
        }
        // A closed stdout (netevctl ... | head) is not an error.
        Err(e) if e.kind() == ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!(
                "netevctl: cannot reach netevd at {}: {e}",
                args.socket.display()
            );
            ExitCode::from(1)
        }
    }
}

fn request(path: &PathBuf, line: &str) -> std::io::Result<String> {
    let mut s = UnixStream::connect(path)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(line.as_bytes())?;
    s.write_all(b"\n")?;
    let mut reply = String::new();
    BufReader::new(s).read_line(&mut reply)?;
    Ok(reply.trim_end().to_string())
}
