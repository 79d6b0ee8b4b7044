//! `claude-failover hook`: what Claude Code runs as a hook or statusline command.
//! It copies the one JSON document on stdin into the spool folder (temp file +
//! rename, so the daemon never reads half a file) and gets out of the way.
//!
//! It must never slow or fail a Claude Code session: it prints nothing (except a
//! wrapped statusline's own output, `--then`), always exits 0, gives up on stdin
//! after [`READ_BUDGET`], and with `--spool` never touches the config file. It
//! does not talk to the daemon; the daemon watches the spool folder.

use crate::config::Config;
use serde::de::IgnoredAny;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The largest document taken from stdin; more is not spooled.
pub const MAX_INPUT: usize = 1 << 20;
/// How long stdin may take to deliver its document before the hook gives up.
pub const READ_BUDGET: Duration = Duration::from_millis(40);
/// With `--then`, how long to wait for the rest of stdin (the wrapped command
/// gets every byte Claude Code sent, not only the first document).
const THEN_READ_BUDGET: Duration = Duration::from_secs(1);

/// `<state_dir>/spool`, the folder hook documents land in; named where
/// every state file is (sessions::role and the tests still call it here).
pub use crate::state_dir::spool_dir;

/// Runs `hook` with the arguments that follow the subcommand
/// (`[--spool DIR] [--then CMD] [--config PATH]`). Returns the exit status: 0.
pub fn run(args: &[String]) -> i32 {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    run_with(args, std::io::stdin(), &mut out)
}

/// [`run`] with stdin and stdout supplied, for tests.
pub fn run_with<R: Read + Send + 'static>(args: &[String], input: R, out: &mut dyn Write) -> i32 {
    let started = Instant::now();
    let options = Options::parse(args);
    let mut input = Input::start(input);

    input.collect_until(started + READ_BUDGET, true);
    if let Some(doc) = first_document(&input.bytes) {
        if let Some(dir) = options.spool_dir() {
            spool(&dir, doc);
        }
    }

    if let Some(command) = &options.then {
        input.collect_until(started + THEN_READ_BUDGET, false);
        run_wrapped(command, &input.bytes, out);
    }
    0
}

#[derive(Debug, Default)]
struct Options {
    spool: Option<PathBuf>,
    then: Option<String>,
    config: Option<PathBuf>,
}

impl Options {
    /// Unknown arguments are ignored: a hook never fails on its command line.
    fn parse(args: &[String]) -> Options {
        let mut options = Options::default();
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            let (flag, inline) = match arg.split_once('=') {
                Some((flag, value)) if flag.starts_with("--") => (flag, Some(value.to_string())),
                _ => (arg.as_str(), None),
            };
            let mut value = || inline.clone().or_else(|| args.next().cloned());
            match flag {
                "--spool" => options.spool = value().map(PathBuf::from),
                "--then" => options.then = value(),
                "--config" => options.config = value().map(PathBuf::from),
                _ => {}
            }
        }
        options
    }

    /// `--spool`, else `<state_dir>/spool` of the config (`--config`,
    /// `CLAUDE_FAILOVER_CONFIG`, the default path, in that order).
    fn spool_dir(&self) -> Option<PathBuf> {
        if let Some(dir) = &self.spool {
            return Some(dir.clone());
        }
        let path = crate::config::config_path(self.config.as_deref());
        Config::load(&path).ok().map(|config| spool_dir(&config.state_dir))
    }
}

/// Stdin read by a thread, so that a writer that never closes it cannot hold
/// the hook past its deadline: the thread is simply abandoned at exit.
struct Input {
    chunks: crossbeam_channel::Receiver<Vec<u8>>,
    bytes: Vec<u8>,
    ended: bool,
}

impl Input {
    fn start<R: Read + Send + 'static>(mut reader: R) -> Input {
        let (tx, rx) = crossbeam_channel::unbounded();
        let spawned = thread::Builder::new().name("hook-stdin".into()).spawn(move || {
            let mut total = 0;
            let mut buf = vec![0u8; 64 * 1024];
            // One byte past the cap is enough to know the input is too big.
            while total <= MAX_INPUT {
                match reader.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        total += n;
                        if tx.send(buf[..n].to_vec()).is_err() {
                            break;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
        });
        Input { chunks: rx, bytes: Vec::new(), ended: spawned.is_err() }
    }

    /// Gathers stdin until it ends, `deadline` passes, the cap is passed, or
    /// (with `stop_at_document`) a whole JSON object has arrived.
    fn collect_until(&mut self, deadline: Instant, stop_at_document: bool) {
        while !self.ended && self.bytes.len() <= MAX_INPUT {
            if stop_at_document && first_document(&self.bytes).is_some() {
                return;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            match self.chunks.recv_timeout(left) {
                Ok(chunk) => self.bytes.extend_from_slice(&chunk),
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => return,
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => self.ended = true,
            }
        }
    }
}

/// The bytes of the JSON object at the start of `bytes`, if a whole, valid one
/// is there and within the cap; trailing bytes after it are not part of it.
fn first_document(bytes: &[u8]) -> Option<&[u8]> {
    if bytes.len() > MAX_INPUT {
        return None;
    }
    let start = bytes.iter().position(|b| !b.is_ascii_whitespace())?;
    let body = &bytes[start..];
    // Cheap pre-checks before parsing: an object, and (while it is still
    // arriving) nothing can be complete unless a `}` has been seen.
    if body.first() != Some(&b'{') || !body.contains(&b'}') {
        return None;
    }
    let mut stream = serde_json::Deserializer::from_slice(body).into_iter::<IgnoredAny>();
    match stream.next() {
        Some(Ok(_)) => Some(&body[..stream.byte_offset()]),
        _ => None,
    }
}

/// Writes `doc` as `<dir>/<unix_nanos>-<pid>.json` by way of a dot-named temp
/// file. No fsync: a document lost to a power cut is as good as one never sent,
/// and the hook has to be fast. Every failure is swallowed.
fn spool(dir: &Path, doc: &[u8]) {
    if write_spool_file(dir, doc).is_err() {
        // The folder may not exist yet (daemon never started): make it once.
        if std::fs::create_dir_all(dir).is_ok() {
            let _ = write_spool_file(dir, doc);
        }
    }
}

fn write_spool_file(dir: &Path, doc: &[u8]) -> std::io::Result<()> {
    let pid = std::process::id();
    let mut nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or_default();
    let temp = dir.join(format!(".{nanos}-{pid}.json.tmp"));
    let written = std::fs::File::create(&temp).and_then(|mut f| f.write_all(doc));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&temp);
        return Err(e);
    }
    // Names are unique per process by time; a second document from the same
    // process within one nanosecond tick must not replace the first.
    let mut target = dir.join(format!("{nanos}-{pid}.json"));
    while target.exists() {
        nanos += 1;
        target = dir.join(format!("{nanos}-{pid}.json"));
    }
    std::fs::rename(&temp, &target).inspect_err(|_| {
        let _ = std::fs::remove_file(&temp);
    })
}

/// Runs the user's own statusline command through `sh -c` with the same stdin
/// and passes its output on. Its stderr goes where ours goes; its failure is
/// not ours.
fn run_wrapped(command: &str, input: &[u8], out: &mut dyn Write) {
    let child = Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn();
    let Ok(mut child) = child else { return };
    if let Some(mut stdin) = child.stdin.take() {
        let input = input.to_vec();
        // A command that does not read its stdin must not block us on a full pipe.
        let _ = thread::Builder::new().name("hook-then-stdin".into()).spawn(move || {
            let _ = stdin.write_all(&input);
        });
    }
    if let Some(mut stdout) = child.stdout.take() {
        let mut printed = Vec::new();
        let _ = stdout.read_to_end(&mut printed);
        let _ = out.write_all(&printed);
        let _ = out.flush();
    }
    let _ = child.wait();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|a| a.to_string()).collect()
    }

    #[test]
    fn options_take_both_spellings_and_ignore_strangers() {
        let o = Options::parse(&strings(&["--spool", "/s", "--then", "echo hi", "--x"]));
        assert_eq!(o.spool, Some(PathBuf::from("/s")));
        assert_eq!(o.then.as_deref(), Some("echo hi"));
        let o = Options::parse(&strings(&["--spool=/t", "--then=a=b"]));
        assert_eq!(o.spool, Some(PathBuf::from("/t")));
        assert_eq!(o.then.as_deref(), Some("a=b"));
        let o = Options::parse(&strings(&["--spool"]));
        assert_eq!(o.spool, None);
    }

    #[test]
    fn the_first_document_is_cut_out_of_what_arrived() {
        assert_eq!(first_document(b"  {\"a\":1}\n"), Some(&b"{\"a\":1}"[..]));
        assert_eq!(first_document(b"{\"a\":1} trailing"), Some(&b"{\"a\":1}"[..]));
        assert_eq!(first_document(b"{\"a\":\"}\""), None);
        assert_eq!(first_document(b"{\"a\":"), None);
        assert_eq!(first_document(b"[1,2]"), None);
        assert_eq!(first_document(b"garbage}"), None);
        assert_eq!(first_document(b""), None);
    }
}
