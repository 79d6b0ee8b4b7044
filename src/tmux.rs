//! The tmux client: every call runs `tmux [-L socket] ...` with an argv (never a
//! shell string) under a deadline, so a hung tmux server cannot hang the role
//! that asked. It knows tmux's command language and nothing about Claude Code.
//!
//! Two tmux habits are defended against here rather than by callers: a `-t NAME`
//! target matches session names by prefix (so `ccl-1` would find `ccl-11`), hence
//! session targets are always sent as `=NAME`; and an argument ending in `;` is
//! read by tmux as a command separator, hence such arguments are escaped.

pub mod control;

use std::fmt;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long one tmux command may take before it is killed.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// A client for one tmux server.
#[derive(Debug, Clone)]
pub struct Tmux {
    socket_name: String,
    timeout: Duration,
    /// Never start a server (`tmux -N`): one is run for us by
    /// `claude-failover-tmux@.service`, outside the daemon's cgroup.
    external_server: bool,
}

/// A session as `list-sessions` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    pub name: String,
    /// Unix seconds.
    pub created: u64,
    /// Number of clients attached.
    pub attached: u32,
}

/// A pane as `list-panes` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaneInfo {
    /// `%N`, stable for the pane's life and usable as a target.
    pub pane_id: String,
    /// The pid of the pane's process (the launched command itself: no shell in between).
    pub pid: u32,
    /// The foreground process's name.
    pub current_command: String,
    pub dead: bool,
}

/// The pane a new session started with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spawned {
    pub pane_id: String,
    pub pid: u32,
}

/// What went wrong with one tmux command. `command` is the argv after `tmux`.
#[derive(Debug)]
pub enum TmuxError {
    /// No server listens on the socket: nothing runs there.
    NoServer { command: String },
    /// The server runs but the session (or pane/window) named does not exist.
    NoSession { command: String, target: String },
    /// `new-session` for a name already in use.
    SessionExists { command: String, name: String },
    /// The working folder for a new session does not exist.
    NoDirectory { name: String, path: String },
    /// tmux could not be started at all (not installed?).
    Spawn { command: String, error: std::io::Error },
    /// tmux ran past the deadline and was killed.
    TimedOut { command: String, after: Duration },
    /// Any other non-zero exit.
    Failed { command: String, status: Option<i32>, stderr: String },
    /// tmux answered something this client cannot read.
    BadOutput { command: String, output: String },
}

impl TmuxError {
    /// True when the session (or the whole server) is simply not there, as
    /// opposed to tmux failing.
    pub fn is_missing(&self) -> bool {
        matches!(self, TmuxError::NoServer { .. } | TmuxError::NoSession { .. })
    }
}

impl fmt::Display for TmuxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TmuxError::NoServer { command } => write!(f, "tmux {command}: no server running"),
            TmuxError::NoSession { command, target } => {
                write!(f, "tmux {command}: no such session or pane: {target}")
            }
            TmuxError::SessionExists { command, name } => {
                write!(f, "tmux {command}: session {name} already exists")
            }
            TmuxError::NoDirectory { name, path } => {
                write!(f, "tmux session {name}: working folder {path} does not exist")
            }
            TmuxError::Spawn { command, error } => {
                write!(f, "tmux {command}: cannot run tmux: {error}")
            }
            TmuxError::TimedOut { command, after } => {
                write!(f, "tmux {command}: no answer within {after:?}, killed")
            }
            TmuxError::Failed { command, status, stderr } => match status {
                Some(code) => write!(f, "tmux {command}: exit {code}: {}", stderr.trim()),
                None => write!(f, "tmux {command}: killed by a signal: {}", stderr.trim()),
            },
            TmuxError::BadOutput { command, output } => {
                write!(f, "tmux {command}: unexpected output: {output:?}")
            }
        }
    }
}

impl std::error::Error for TmuxError {}

/// The captured result of one successful tmux command.
struct Output {
    stdout: String,
}

impl Tmux {
    /// `socket_name` "" talks to the user's default server, anything else to `-L NAME`.
    pub fn new(socket_name: &str) -> Tmux {
        let external_server = std::env::var("CLAUDE_FAILOVER_TMUX_SERVER").is_ok_and(|v| v == "external");
        Tmux { socket_name: socket_name.to_string(), timeout: DEFAULT_TIMEOUT, external_server }
    }

    pub fn with_timeout(mut self, timeout: Duration) -> Tmux {
        self.timeout = timeout;
        self
    }

    pub fn socket_name(&self) -> &str {
        &self.socket_name
    }

    /// Starts a detached session running `command` directly (argv, no shell),
    /// in `cwd`, with `env` set and `unset_env` removed for this session's
    /// process only. Returns the first pane.
    #[allow(clippy::too_many_arguments)]
    pub fn new_session(
        &self,
        name: &str,
        cwd: &Path,
        width: u16,
        height: u16,
        env: &[(String, String)],
        unset_env: &[&str],
        command: &[String],
    ) -> Result<Spawned, TmuxError> {
        let mut args = spawn_args("new-session", name, cwd)?;
        args.extend(["-s".into(), name.into(), "-x".into(), width.to_string(), "-y".into(), height.to_string()]);
        push_command(&mut args, env, unset_env, command);
        let out = self.run(&args, None).map_err(|e| match e {
            TmuxError::Failed { command, stderr, .. } if stderr.contains("duplicate session") => {
                TmuxError::SessionExists { command, name: name.to_string() }
            }
            other => other,
        })?;
        let spawned = spawned_from(&args, &out.stdout)?;
        self.no_dead_panes(&session_target(name))?;
        // The server must outlive a moment with no sessions (a swap stops
        // every session before relaunching them): by default tmux exits then,
        // and a launch racing that exit fails with "no server running".
        match self.run(&["set-option".into(), "-s".into(), "exit-empty".into(), "off".into()], None) {
            Ok(_) => {}
            Err(e) if e.is_missing() => {}
            Err(e) => return Err(e),
        }
        Ok(spawned)
    }

    /// Runs `command` in a new background window of the existing session
    /// `name`, beside what runs there now (which keeps the current window).
    pub fn new_window(
        &self,
        name: &str,
        cwd: &Path,
        env: &[(String, String)],
        unset_env: &[&str],
        command: &[String],
    ) -> Result<Spawned, TmuxError> {
        let mut args = spawn_args("new-window", name, cwd)?;
        args.extend(["-t".into(), session_target(name)]);
        push_command(&mut args, env, unset_env, command);
        let out = self.run(&args, None)?;
        let spawned = spawned_from(&args, &out.stdout)?;
        self.no_dead_panes(&spawned.pane_id)?;
        Ok(spawned)
    }

    /// A user's tmux.conf may keep dead panes around; a dead session must
    /// disappear so the watcher sees it gone. The pane may already have
    /// exited, which is not an error here.
    fn no_dead_panes(&self, window: &str) -> Result<(), TmuxError> {
        match self.run(
            &["set-option".into(), "-w".into(), "-t".into(), window.into(), "remain-on-exit".into(), "off".into()],
            None,
        ) {
            Ok(_) => Ok(()),
            Err(e) if e.is_missing() => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Whether a session with exactly this name exists (false when no server runs).
    pub fn has_session(&self, name: &str) -> Result<bool, TmuxError> {
        match self.run(&["has-session".into(), "-t".into(), exact(name)], None) {
            Ok(_) => Ok(true),
            Err(e) if e.is_missing() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Every session on the server; empty when no server runs.
    pub fn list_sessions(&self) -> Result<Vec<SessionInfo>, TmuxError> {
        let args: Vec<String> = vec![
            "list-sessions".into(),
            "-F".into(),
            "#{session_created}\t#{session_attached}\t#{session_name}".into(),
        ];
        let out = match self.run(&args, None) {
            Ok(out) => out,
            Err(TmuxError::NoServer { .. }) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut sessions = Vec::new();
        for line in out.stdout.lines().filter(|l| !l.is_empty()) {
            let mut fields = line.splitn(3, '\t');
            let parsed = (|| {
                let created = fields.next()?.parse().ok()?;
                let attached = fields.next()?.parse().ok()?;
                let name = fields.next()?.to_string();
                Some(SessionInfo { name, created, attached })
            })();
            sessions.push(
                parsed.ok_or_else(|| TmuxError::BadOutput { command: describe(&args), output: line.to_string() })?,
            );
        }
        Ok(sessions)
    }

    /// Every pane of one session.
    pub fn list_panes(&self, session: &str) -> Result<Vec<PaneInfo>, TmuxError> {
        let args: Vec<String> = vec!["list-panes".into(), "-s".into(), "-t".into(), exact(session)];
        Ok(self.panes(args)?.into_iter().map(|(_, p)| p).collect())
    }

    /// Every pane of every session on the server, with its session's name:
    /// one tmux call however many sessions there are. Empty when no server runs.
    pub fn list_all_panes(&self) -> Result<Vec<(String, PaneInfo)>, TmuxError> {
        match self.panes(vec!["list-panes".into(), "-a".into()]) {
            Err(e) if e.is_missing() => Ok(Vec::new()),
            other => other,
        }
    }

    fn panes(&self, mut args: Vec<String>) -> Result<Vec<(String, PaneInfo)>, TmuxError> {
        args.push("-F".into());
        args.push("#{session_name}\t#{pane_id}\t#{pane_pid}\t#{pane_dead}\t#{pane_current_command}".into());
        let out = self.run(&args, None)?;
        let mut panes = Vec::new();
        for line in out.stdout.lines().filter(|l| !l.is_empty()) {
            let mut fields = line.splitn(5, '\t');
            let parsed = (|| {
                let session = fields.next()?.to_string();
                let pane_id = fields.next()?.to_string();
                let pid = fields.next()?.parse().ok()?;
                let dead = fields.next()? == "1";
                let current_command = fields.next().unwrap_or_default().to_string();
                Some((session, PaneInfo { pane_id, pid, current_command, dead }))
            })();
            panes.push(
                parsed.ok_or_else(|| TmuxError::BadOutput { command: describe(&args), output: line.to_string() })?,
            );
        }
        Ok(panes)
    }

    /// The visible screen of a pane (a `%N` pane id, or a session name for its
    /// current pane), wrapped lines joined, trailing blanks of each line removed.
    pub fn capture_pane(&self, target: &str) -> Result<String, TmuxError> {
        let out =
            self.run(&["capture-pane".into(), "-p".into(), "-J".into(), "-t".into(), pane_target(target)], None)?;
        let mut text = String::with_capacity(out.stdout.len());
        for line in out.stdout.lines() {
            text.push_str(line.trim_end_matches(' '));
            text.push('\n');
        }
        Ok(text)
    }

    /// The last `lines` lines of a pane's screen and scrollback, wrapped lines
    /// joined, trailing blanks of each line and blank lines at the end removed.
    pub fn capture_pane_tail(&self, target: &str, lines: usize) -> Result<Vec<String>, TmuxError> {
        let start = format!("-{lines}");
        let out = self.run(
            &["capture-pane".into(), "-p".into(), "-J".into(), "-S".into(), start, "-t".into(), pane_target(target)],
            None,
        )?;
        let mut tail: Vec<String> = out.stdout.lines().map(|l| l.trim_end_matches(' ').to_string()).collect();
        while tail.last().is_some_and(|l| l.is_empty()) {
            tail.pop();
        }
        let skip = tail.len().saturating_sub(lines);
        Ok(tail.split_off(skip))
    }

    /// Pastes `text` into the pane as one bracketed paste, through a uniquely
    /// named buffer fed on stdin (so the text never meets a command line) that
    /// is deleted after the paste.
    pub fn paste(&self, target: &str, text: &str) -> Result<(), TmuxError> {
        let buffer = unique_buffer_name();
        self.run(&["load-buffer".into(), "-b".into(), buffer.clone(), "-".into()], Some(text.as_bytes()))?;
        let pasted = self.run(
            &[
                "paste-buffer".into(),
                "-p".into(),
                "-d".into(),
                "-b".into(),
                buffer.clone(),
                "-t".into(),
                pane_target(target),
            ],
            None,
        );
        if pasted.is_err() {
            // Best effort: the paste failed, so `-d` did not remove the buffer.
            let _ = self.run(&["delete-buffer".into(), "-b".into(), buffer], None);
        }
        pasted.map(|_| ())
    }

    /// Types `text` literally (no key-name lookup).
    pub fn send_keys_literal(&self, target: &str, text: &str) -> Result<(), TmuxError> {
        self.run(&["send-keys".into(), "-t".into(), pane_target(target), "-l".into(), "--".into(), text.into()], None)
            .map(|_| ())
    }

    /// Sends named keys, e.g. `["Enter"]`, `["Escape"]`, `["C-c"]`.
    pub fn send_keys(&self, target: &str, keys: &[&str]) -> Result<(), TmuxError> {
        let mut args: Vec<String> = vec!["send-keys".into(), "-t".into(), pane_target(target)];
        args.push("--".into());
        args.extend(keys.iter().map(|k| k.to_string()));
        self.run(&args, None).map(|_| ())
    }

    pub fn kill_session(&self, name: &str) -> Result<(), TmuxError> {
        self.run(&["kill-session".into(), "-t".into(), exact(name)], None).map(|_| ())
    }

    /// Kills one pane (`%N`), and its window with it when it was the last.
    pub fn kill_pane(&self, pane_id: &str) -> Result<(), TmuxError> {
        self.run(&["kill-pane".into(), "-t".into(), pane_id.into()], None).map(|_| ())
    }

    /// Stops the server and every session on it; fine when none runs.
    pub fn kill_server(&self) -> Result<(), TmuxError> {
        match self.run(&["kill-server".into()], None) {
            Ok(_) | Err(TmuxError::NoServer { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// `tmux` with this server's socket, never starting a server when one is
    /// run for us.
    fn tmux_command(&self) -> Command {
        let mut cmd = Command::new("tmux");
        if !self.socket_name.is_empty() {
            cmd.arg("-L").arg(&self.socket_name);
        }
        if self.external_server {
            cmd.arg("-N");
        }
        cmd
    }

    /// Runs one tmux command with a deadline, feeding `stdin` if given.
    fn run(&self, args: &[String], stdin: Option<&[u8]>) -> Result<Output, TmuxError> {
        let command = describe(args);
        let mut cmd = self.tmux_command();
        cmd.args(args.iter().map(|a| escape_separator(a)));
        cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|error| TmuxError::Spawn { command: command.clone(), error })?;

        // Pipes are drained by threads so a large output (or input) cannot
        // block tmux while we wait for it to exit.
        let (tx, rx) = crossbeam_channel::bounded::<(bool, Vec<u8>)>(2);
        for (is_stdout, pipe) in [
            (true, child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>)),
            (false, child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>)),
        ] {
            let tx = tx.clone();
            if let Some(mut pipe) = pipe {
                let _ = thread::Builder::new().name("tmux-pipe".into()).spawn(move || {
                    let mut buf = Vec::new();
                    let _ = pipe.read_to_end(&mut buf);
                    let _ = tx.send((is_stdout, buf));
                });
            }
        }
        drop(tx);
        if let (Some(bytes), Some(mut pipe)) = (stdin, child.stdin.take()) {
            let bytes = bytes.to_vec();
            let _ = thread::Builder::new().name("tmux-stdin".into()).spawn(move || {
                let _ = pipe.write_all(&bytes);
            });
        }

        // tmux closes its output as it exits: wait for that (one wake per
        // pipe) rather than polling for the exit from the first millisecond.
        let deadline = Instant::now() + self.timeout;
        let mut stdout = Vec::new();
        let mut stderr = Vec::new();
        for _ in 0..2 {
            match rx.recv_deadline(deadline) {
                Ok((true, bytes)) => stdout = bytes,
                Ok((false, bytes)) => stderr = bytes,
                Err(_) => break,
            }
        }
        let mut pause = Duration::from_millis(1);
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) => {}
                Err(error) => {
                    return Err(TmuxError::Spawn { command, error });
                }
            }
            let now = Instant::now();
            if now >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(TmuxError::TimedOut { command, after: self.timeout });
            }
            thread::sleep(pause.min(deadline - now));
            pause = (pause * 2).min(Duration::from_millis(20));
        };
        let stdout = String::from_utf8_lossy(&stdout).into_owned();
        let stderr = String::from_utf8_lossy(&stderr).into_owned();
        if status.success() {
            return Ok(Output { stdout });
        }
        Err(classify(command, status.code(), stderr, args))
    }
}

/// Maps tmux's messages for "not there" onto their own variants.
fn classify(command: String, status: Option<i32>, stderr: String, args: &[String]) -> TmuxError {
    if stderr.contains("no server running")
        || stderr.contains("error connecting to")
        || stderr.contains("server exited unexpectedly")
    {
        return TmuxError::NoServer { command };
    }
    // A server with no session left (exit-empty off) answers "no current
    // target" where one with sessions says "can't find session".
    for what in ["can't find session", "can't find pane", "can't find window", "no current target"] {
        if stderr.contains(what) {
            let target = args
                .iter()
                .position(|a| a == "-t")
                .and_then(|i| args.get(i + 1))
                .map(|t| t.trim_start_matches('=').trim_end_matches(':').to_string())
                .unwrap_or_default();
            return TmuxError::NoSession { command, target };
        }
    }
    TmuxError::Failed { command, status, stderr }
}

/// The start of `new-session`/`new-window` for session `name`: in the
/// background, printing the new pane (read by [`spawned_from`]), in `cwd`.
fn spawn_args(verb: &str, name: &str, cwd: &Path) -> Result<Vec<String>, TmuxError> {
    if !cwd.is_dir() {
        return Err(TmuxError::NoDirectory { name: name.to_string(), path: cwd.display().to_string() });
    }
    let head = [verb, "-d", "-P", "-F", "#{pane_id}\t#{pane_pid}", "-c"];
    Ok(head.iter().map(|a| a.to_string()).chain([cwd.display().to_string()]).collect())
}

/// The command part of `new-session`/`new-window`: `-e` variables, then
/// `-- env -u VAR... -- command`. `env` execs the command, so the pane's pid
/// is the command's pid, and tmux sees at least two arguments, which it runs
/// with execvp rather than through `sh -c`. `-u` also removes variables the
/// tmux server's own environment would otherwise pass on.
fn push_command(args: &mut Vec<String>, env: &[(String, String)], unset_env: &[&str], command: &[String]) {
    for (key, value) in env {
        args.push("-e".into());
        args.push(format!("{key}={value}"));
    }
    args.push("--".into());
    args.push("env".into());
    for var in unset_env {
        args.push("-u".into());
        args.push((*var).to_string());
    }
    args.push("--".into());
    args.extend(command.iter().cloned());
}

/// The `#{pane_id}\t#{pane_pid}` line a spawning command printed.
fn spawned_from(args: &[String], stdout: &str) -> Result<Spawned, TmuxError> {
    let line = stdout.lines().next().unwrap_or_default();
    line.split_once('\t')
        .and_then(|(pane_id, pid)| Some(Spawned { pane_id: pane_id.to_string(), pid: pid.trim().parse().ok()? }))
        .ok_or_else(|| TmuxError::BadOutput { command: describe(args), output: stdout.to_string() })
}

/// `=NAME`: a session target that matches NAME only, never a longer name.
fn exact(name: &str) -> String {
    format!("={name}")
}

/// A window/pane-level target for a session: its current window.
fn session_target(name: &str) -> String {
    format!("={name}:")
}

/// Pane ids (`%3`) and explicit targets pass through; a bare name means that
/// session's current pane, matched exactly.
fn pane_target(target: &str) -> String {
    if target.starts_with('%') || target.starts_with('=') || target.contains(':') {
        target.to_string()
    } else {
        session_target(target)
    }
}

/// tmux reads an argument ending in `;` as the end of a command, and one ending
/// in `\;` as a literal `;`: put a backslash before a final `;`.
fn escape_separator(arg: &str) -> String {
    match arg.strip_suffix(';') {
        Some(head) => format!("{head}\\;"),
        None => arg.to_string(),
    }
}

fn describe(args: &[String]) -> String {
    let mut text = String::new();
    for (i, arg) in args.iter().enumerate() {
        if i > 0 {
            text.push(' ');
        }
        // Keep error messages short: a long literal (pasted text) is elided.
        if arg.chars().count() > 80 {
            text.extend(arg.chars().take(77));
            text.push_str("...");
        } else if arg.is_empty() || arg.contains(char::is_whitespace) {
            text.push_str(&format!("{arg:?}"));
        } else {
            text.push_str(arg);
        }
    }
    text
}

fn unique_buffer_name() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or_default();
    format!("cf-{}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed), nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailing_semicolon_is_escaped() {
        assert_eq!(escape_separator("a;"), "a\\;");
        assert_eq!(escape_separator("a\\;"), "a\\\\;");
        assert_eq!(escape_separator(";"), "\\;");
        assert_eq!(escape_separator("a;b"), "a;b");
    }

    #[test]
    fn session_names_are_matched_exactly() {
        assert_eq!(exact("ccl-1"), "=ccl-1");
        assert_eq!(pane_target("ccl-1"), "=ccl-1:");
        assert_eq!(pane_target("%4"), "%4");
        assert_eq!(pane_target("s:1.0"), "s:1.0");
    }

    #[test]
    fn missing_things_are_told_apart_from_failures() {
        let args = vec!["has-session".to_string(), "-t".into(), "=x".into()];
        let e = classify("c".into(), Some(1), "can't find session: x\n".into(), &args);
        assert!(matches!(e, TmuxError::NoSession { ref target, .. } if target == "x"));
        let e = classify(
            "c".into(),
            Some(1),
            "error connecting to /tmp/tmux-0/s (No such file or directory)\n".into(),
            &args,
        );
        assert!(matches!(e, TmuxError::NoServer { .. }));
        let e = classify("c".into(), Some(1), "unknown command: x\n".into(), &args);
        assert!(matches!(e, TmuxError::Failed { .. }));
        assert!(!e.is_missing());
    }
}
