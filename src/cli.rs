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
    status [--json] [--fleet]
                         ask the running daemon for its status (--fleet: every host of its fleet)
    failover [--to NAME] ask the daemon to swap accounts now
    pause | resume       stop / restart handing out tasks
    enqueue PROJECT FILE|- [--name NAME]
                         queue a task file (or stdin) through the daemon
    task PROJECT NAME    where a queued task is, with its lease, result or error
    mcp                  an MCP server on stdin/stdout for Claude Code and other clients
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
    /// `--fleet`: the `fleet` section (`[fleet]`), not this host's table.
    Status {
        json: bool,
        fleet: bool,
    },
    Failover {
        to: Option<String>,
    },
    Pause,
    Resume,
    Setup,
    Enqueue {
        project: String,
        file: String,
        name: Option<String>,
    },
    Task {
        project: String,
        name: String,
    },
    Mcp,
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
    let mut fleet = false;
    let mut to = None;
    let mut task_name = None;
    let mut command = None;
    let mut operands = Vec::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--config" => config = Some(PathBuf::from(it.next().ok_or("--config needs a path")?)),
            "--json" => json = true,
            "--fleet" => fleet = true,
            "--to" => to = Some(it.next().ok_or("--to needs an account name")?.clone()),
            "--name" => task_name = Some(it.next().ok_or("--name needs a task file name")?.clone()),
            "-" if command.is_some() => operands.push(arg.clone()),
            "--version" | "-V" => return Ok(Invocation { command: Command::Version, config }),
            "--help" | "-h" | "help" => return Ok(Invocation { command: Command::Help, config }),
            a if a.starts_with("--config=") => config = Some(PathBuf::from(&a["--config=".len()..])),
            a if a.starts_with("--to=") => to = Some(a["--to=".len()..].to_string()),
            a if a.starts_with("--name=") => task_name = Some(a["--name=".len()..].to_string()),
            a if a.starts_with('-') => return Err(format!("unknown option {a}")),
            a if command.is_none() => command = Some(a.to_string()),
            a => operands.push(a.to_string()),
        }
    }
    let name = command.ok_or("no command given")?;
    let takes = match name.as_str() {
        "enqueue" => &["PROJECT", "FILE (or - for stdin)"][..],
        "task" => &["PROJECT", "NAME"][..],
        _ => &[][..],
    };
    if operands.len() > takes.len() {
        return Err(format!("unexpected argument {}", operands[takes.len()]));
    }
    if let Some(missing) = takes.get(operands.len()) {
        return Err(format!("{name} needs {missing}"));
    }
    let mut operands = operands.into_iter();
    let mut operand = || operands.next().unwrap_or_default();
    let command = match name.as_str() {
        "run" => Command::Run,
        "check-config" => Command::CheckConfig,
        "status" => Command::Status { json, fleet },
        "failover" => Command::Failover { to: to.take() },
        "pause" => Command::Pause,
        "resume" => Command::Resume,
        "setup" => Command::Setup,
        "enqueue" => Command::Enqueue { project: operand(), file: operand(), name: task_name.take() },
        "task" => Command::Task { project: operand(), name: operand() },
        "mcp" => Command::Mcp,
        other => return Err(format!("unknown command {other}")),
    };
    if task_name.is_some() {
        return Err("--name goes with enqueue".into());
    }
    if fleet && !matches!(command, Command::Status { .. }) {
        return Err("--fleet goes with status".into());
    }
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
        Command::Status { json, fleet } => status(&config_path(), json, fleet),
        Command::Failover { to } => {
            let body = match to {
                Some(to) => serde_json::json!({ "to": to }).to_string(),
                None => "{}".into(),
            };
            post(&config_path(), "/failover", &body)
        }
        Command::Enqueue { project, file, name } => enqueue(&config_path(), &project, &file, name.as_deref()),
        Command::Task { project, name } => task(&config_path(), &project, &name),
        Command::Mcp => crate::mcp::main(&config_path()),
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
            for note in c.notes() {
                eprintln!("{note}");
            }
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

fn status(path: &std::path::Path, json: bool, fleet: bool) -> i32 {
    let config = match load_or_exit(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match crate::client::request(&config, "GET", "/status", None) {
        Ok((200, body)) if json && !fleet => {
            println!("{body}");
            0
        }
        Ok((200, body)) => match serde_json::from_str::<crate::status::Status>(&body) {
            Ok(status) if fleet => match &status.fleet {
                None => {
                    eprintln!("claude-failover: this daemon runs without [fleet]");
                    1
                }
                Some(f) if json => {
                    println!("{}", serde_json::to_string_pretty(f).unwrap_or_default());
                    0
                }
                Some(f) => {
                    print!("{}", crate::client::render_fleet_table(f));
                    0
                }
            },
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

/// `enqueue`: the file (or stdin) as the body of `POST /projects/{p}/tasks`,
/// named by `--name`, else by the file's own name, else by the daemon.
fn enqueue(path: &std::path::Path, project: &str, file: &str, name: Option<&str>) -> i32 {
    let config = match load_or_exit(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let text = if file == "-" {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text).map(|_| text)
    } else {
        std::fs::read_to_string(file)
    };
    let text = match text {
        Ok(t) => t,
        Err(e) => {
            eprintln!("claude-failover: cannot read {file}: {e}");
            return 1;
        }
    };
    let from_file = (file != "-")
        .then(|| std::path::Path::new(file).file_name().and_then(|n| n.to_str()).map(str::to_string))
        .flatten();
    let mut route = format!("/projects/{}/tasks", encode(project));
    if let Some(name) = name.map(str::to_string).or(from_file) {
        route.push_str(&format!("?name={}", encode(&name)));
    }
    let call = crate::client::Call {
        method: "POST",
        path: &route,
        body: Some(&text),
        content_type: "text/markdown; charset=utf-8",
        token: config.http.token.as_ref(),
        headers: &[],
    };
    answer(crate::client::send(&config, &call))
}

/// `task`: `GET /projects/{p}/tasks/{name}`.
fn task(path: &std::path::Path, project: &str, name: &str) -> i32 {
    let config = match load_or_exit(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let route = format!("/projects/{}/tasks/{}", encode(project), encode(name));
    answer(crate::client::request(&config, "GET", &route, None))
}

/// Prints a 2xx answer (0), a refusal (1), or that no daemon answered (69).
fn answer(sent: Result<(u16, String), crate::client::ClientError>) -> i32 {
    match sent {
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

/// Percent-encodes a path segment or query value.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
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
        assert_eq!(ok("status --json").command, Command::Status { json: true, fleet: false });
        assert_eq!(ok("failover --to beta").command, Command::Failover { to: Some("beta".into()) });
        assert_eq!(ok("hook --spool /s").command, Command::Hook(args("--spool /s")));
        assert_eq!(ok("--version").command, Command::Version);
        assert_eq!(
            ok("enqueue proj - --name a.md").command,
            Command::Enqueue { project: "proj".into(), file: "-".into(), name: Some("a.md".into()) }
        );
        assert_eq!(ok("task proj a.md").command, Command::Task { project: "proj".into(), name: "a.md".into() });
        assert_eq!(ok("mcp --config /x.toml").command, Command::Mcp);
        for bad in [
            "",
            "frobnicate",
            "run --json",
            "pause --to x",
            "run --config",
            "status extra",
            "enqueue proj",
            "task proj",
            "task proj a.md b.md",
            "status --name x",
            "mcp extra",
        ] {
            assert!(parse(&args(bad)).is_err(), "{bad:?} should be refused");
        }
    }
}
