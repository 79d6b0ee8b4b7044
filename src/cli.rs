//! The command line (docs/cli.md): parses arguments by hand (no parser crate) and
//! maps each command to its exit status.

use crate::config::Config;
use std::path::PathBuf;

/// EX_USAGE from sysexits.h.
pub const EXIT_USAGE: i32 = 64;
/// EX_UNAVAILABLE: no daemon answered.
pub const EXIT_UNAVAILABLE: i32 = 69;

const HELP: &str = "\
claude-failover — keeps a pool of Claude Code sessions working across several accounts

USAGE:
    claude-failover <COMMAND> [--config PATH]

COMMANDS:
    run                  the daemon, in the foreground (what systemd runs)
    check-config         load and validate the config, print every problem
    status [--json]      ask the running daemon for its status
    failover [--to NAME] ask the daemon to swap accounts now
    pause | resume       stop / restart handing out tasks
    setup                prepare accounts: shared transcripts, hooks, statusline
    hook                 called by Claude Code (statusline and hooks); reads JSON on stdin

OPTIONS:
    --config PATH        config file (default: $CLAUDE_FAILOVER_CONFIG, else /etc/claude-failover/config.toml)
    --version, --help

Logs go to stderr; RUST_LOG sets the level (default info).
";

#[derive(Debug, PartialEq)]
pub enum Command {
    Run,
    CheckConfig,
    Status { json: bool },
    Failover { to: Option<String> },
    Pause,
    Resume,
    Setup,
    Hook(Vec<String>),
    Version,
    Help,
}

#[derive(Debug, PartialEq)]
pub struct Invocation {
    pub command: Command,
    pub config: Option<PathBuf>,
}

/// Parses `args` (without the program name).
pub fn parse(args: &[String]) -> Result<Invocation, String> {
    let Some(first) = args.first() else {
        return Err("no command given".into());
    };
    if first == "hook" {
        // Everything after `hook` belongs to the hook; it must stay fast.
        return Ok(Invocation { command: Command::Hook(args[1..].to_vec()), config: None });
    }
    let mut config = None;
    let mut json = false;
    let mut to = None;
    let mut command = None;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--config" => config = Some(PathBuf::from(it.next().ok_or("--config needs a path")?)),
            "--json" => json = true,
            "--to" => to = Some(it.next().ok_or("--to needs an account name")?.clone()),
            "--version" | "-V" => return Ok(Invocation { command: Command::Version, config }),
            "--help" | "-h" | "help" => return Ok(Invocation { command: Command::Help, config }),
            a if a.starts_with("--config=") => config = Some(PathBuf::from(&a["--config=".len()..])),
            a if a.starts_with("--to=") => to = Some(a["--to=".len()..].to_string()),
            a if a.starts_with('-') => return Err(format!("unknown option {a}")),
            a if command.is_none() => command = Some(a.to_string()),
            a => return Err(format!("unexpected argument {a}")),
        }
    }
    let name = command.ok_or("no command given")?;
    let command = match name.as_str() {
        "run" => Command::Run,
        "check-config" => Command::CheckConfig,
        "status" => Command::Status { json },
        "failover" => Command::Failover { to: to.take() },
        "pause" => Command::Pause,
        "resume" => Command::Resume,
        "setup" => Command::Setup,
        other => return Err(format!("unknown command {other}")),
    };
    if json && !matches!(command, Command::Status { .. }) {
        return Err("--json goes with status".into());
    }
    if to.is_some() {
        return Err("--to goes with failover".into());
    }
    Ok(Invocation { command, config })
}

pub fn main(args: Vec<String>) -> i32 {
    let invocation = match parse(&args[1.min(args.len())..]) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("claude-failover: {e}\n\n{HELP}");
            return EXIT_USAGE;
        }
    };
    let config_path = || crate::config::config_path(invocation.config.as_deref());
    match invocation.command {
        Command::Version => {
            println!("claude-failover {}", env!("CARGO_PKG_VERSION"));
            0
        }
        Command::Help => {
            print!("{HELP}");
            0
        }
        Command::Hook(args) => crate::hook::run(&args),
        Command::CheckConfig => check_config(&config_path()),
        Command::Run => {
            crate::logging::init();
            crate::runtime::run(&config_path(), crate::systemd::supervisor_from_env())
        }
        Command::Setup => setup(&config_path()),
        Command::Status { json } => status(&config_path(), json),
        Command::Failover { to } => {
            let body = match to {
                Some(to) => serde_json::json!({ "to": to }).to_string(),
                None => "{}".into(),
            };
            post(&config_path(), "/failover", &body)
        }
        Command::Pause => post(&config_path(), "/dispatch/pause", "{}"),
        Command::Resume => post(&config_path(), "/dispatch/resume", "{}"),
    }
}

fn check_config(path: &std::path::Path) -> i32 {
    match Config::load(path) {
        Ok(c) => {
            println!(
                "{}: valid ({} accounts, {} projects, {} sessions)",
                c.source.display(),
                c.accounts.len(),
                c.projects.len(),
                c.sessions.len()
            );
            0
        }
        Err(err) => {
            eprintln!("{err}");
            crate::runtime::EXIT_CONFIG
        }
    }
}

fn load_or_exit(path: &std::path::Path) -> Result<Config, i32> {
    Config::load(path).map_err(|err| {
        eprintln!("{err}");
        crate::runtime::EXIT_CONFIG
    })
}

fn setup(path: &std::path::Path) -> i32 {
    let config = match load_or_exit(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("claude-failover"));
    match crate::setup::run(&config, &exe) {
        Ok(report) => {
            println!("{report}");
            0
        }
        Err(errors) => {
            for e in errors {
                eprintln!("setup: {e}");
            }
            1
        }
    }
}

fn status(path: &std::path::Path, json: bool) -> i32 {
    let config = match load_or_exit(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match crate::client::request(&config, "GET", "/status", None) {
        Ok((200, body)) if json => {
            println!("{body}");
            0
        }
        Ok((200, body)) => match serde_json::from_str::<crate::status::Status>(&body) {
            Ok(status) => {
                print!("{}", crate::client::render_status_table(&status));
                0
            }
            Err(e) => {
                eprintln!("claude-failover: the daemon's /status did not parse: {e}");
                1
            }
        },
        Ok((code, body)) => {
            eprintln!("claude-failover: daemon answered {code}: {}", error_text(&body));
            1
        }
        Err(e) => unavailable(e),
    }
}

fn post(path: &std::path::Path, route: &str, body: &str) -> i32 {
    let config = match load_or_exit(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match crate::client::request(&config, "POST", route, Some(body)) {
        Ok((code, body)) if (200..300).contains(&code) => {
            println!("{body}");
            0
        }
        Ok((code, body)) => {
            eprintln!("claude-failover: refused ({code}): {}", error_text(&body));
            1
        }
        Err(e) => unavailable(e),
    }
}

fn unavailable(e: impl std::fmt::Display) -> i32 {
    eprintln!("claude-failover: no daemon answered: {e}");
    EXIT_UNAVAILABLE
}

/// The `error` field of a JSON error body, or the body itself.
fn error_text(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
        .unwrap_or_else(|| body.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn parses_every_command_and_rejects_misuse() {
        let ok = |s: &str| parse(&args(s)).unwrap();
        assert_eq!(ok("run").command, Command::Run);
        assert_eq!(ok("run --config /x.toml").config, Some(PathBuf::from("/x.toml")));
        assert_eq!(ok("--config /x.toml check-config").command, Command::CheckConfig);
        assert_eq!(ok("status --json").command, Command::Status { json: true });
        assert_eq!(ok("failover --to beta").command, Command::Failover { to: Some("beta".into()) });
        assert_eq!(ok("hook --spool /s").command, Command::Hook(args("--spool /s")));
        assert_eq!(ok("--version").command, Command::Version);
        for bad in ["", "frobnicate", "run --json", "pause --to x", "run --config", "status extra"] {
            assert!(parse(&args(bad)).is_err(), "{bad:?} should be refused");
        }
    }
}
