//! tmux control mode: a long-lived `tmux -C attach-session` client that
//! tmux pushes a session's news to — a pane drew something, a window came
//! or went, the session ended, the server went away — read on its own
//! thread ("tmux-control") and turned into [`Notice`]s. A watcher then
//! learns of a change within milliseconds without asking tmux over and over.
//!
//! tmux sends `%output` only for panes of the client's own session, hence
//! one client per watched session. The client is attached ignoring size
//! (`-f ignore-size`, tmux ≥ 3.2): it never resizes its window. It is not
//! attached `read-only`: tmux 3.3a (Debian 12) crashed — every session with
//! it — about one start in twenty with read-only control clients attached
//! while sessions were being created (seen under systemd, then reproduced
//! alone: 10 crashes in 180 starts with the flag, none in 180 without). It
//! never types into the session anyway: it sends no command (the only
//! reply block is the one the attach itself produces), and it never starts
//! a server (`-N`). It ends when its session or the server ends (`%exit`,
//! then end of file), when it is dropped (killed), and when the thread that
//! started it dies (the parent-death signal): a client left behind by a
//! killed daemon was seen to keep its tmux server from exiting on
//! `kill-server`.

use super::{exact, Tmux};
use crossbeam_channel::Sender;
use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdin, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// What a control client heard, named by the session it follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// A pane of the session drew something. Sent once until
    /// [`Follower::output_seen`] says it was taken, however much is drawn.
    Output { session: String },
    /// Windows or panes came or went (a pane exited, a window was added).
    Layout { session: String },
    /// The client ended: the session or the server is gone, or tmux could
    /// not attach. `follower` tells this client from a later one.
    Ended { session: String, follower: u64 },
}

/// One running control client, stopped (killed) when dropped.
pub struct Follower {
    id: u64,
    child: Child,
    /// Held open: a control client exits when its stdin closes.
    _stdin: Option<ChildStdin>,
    output_pending: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Follower {
    /// Attaches a control client to `session` and starts reading it. `id`
    /// comes back in [`Notice::Ended`].
    pub fn attach(tmux: &Tmux, session: &str, id: u64, out: Sender<Notice>) -> std::io::Result<Follower> {
        let mut cmd = tmux.tmux_command();
        if !tmux.external_server {
            cmd.arg("-N");
        }
        cmd.args(["-C", "attach-session", "-f", "ignore-size", "-t", &exact(session)]);
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::null());
        die_with_parent(&mut cmd);
        let mut child = cmd.spawn()?;
        let stdin = child.stdin.take();
        let Some(stdout) = child.stdout.take() else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(std::io::Error::other("tmux control client without stdout"));
        };
        let output_pending = Arc::new(AtomicBool::new(false));
        let pending = Arc::clone(&output_pending);
        let name = session.to_string();
        let spawned = std::thread::Builder::new()
            .name("tmux-control".into())
            .spawn(move || read(BufReader::new(stdout), &name, id, &pending, &out));
        let thread = match spawned {
            Ok(t) => t,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(e);
            }
        };
        Ok(Follower { id, child, _stdin: stdin, output_pending, thread: Some(thread) })
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    /// The last `Output` notice was taken: the next drawing sends another.
    pub fn output_seen(&self) {
        self.output_pending.store(false, Ordering::Release);
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(thread) = self.thread.take() {
            // The kill closed its stdout: the reader returns.
            let _ = thread.join();
        }
    }
}

/// Has the kernel kill the child when the thread that spawned it dies
/// (`PR_SET_PDEATHSIG`), so a SIGKILLed daemon leaves no client behind.
fn die_with_parent(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    extern "C" {
        fn prctl(option: i32, ...) -> i32;
    }
    const PR_SET_PDEATHSIG: i32 = 1;
    const SIGKILL: u64 = 9;
    // SAFETY: runs in the forked child before exec; prctl is a plain system
    // call (async-signal-safe), touching no memory of ours.
    unsafe {
        cmd.pre_exec(|| {
            if prctl(PR_SET_PDEATHSIG, SIGKILL) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// What one line of control-mode output means for the watcher.
#[derive(Debug, PartialEq, Eq)]
enum Line {
    Output,
    Layout,
    /// The client now shows this session (at attach, or moved elsewhere
    /// when its own was destroyed with `detach-on-destroy off`).
    Session(String),
    Exit,
    BlockStart,
    BlockEnd,
    Other,
}

fn classify(line: &[u8]) -> Line {
    let word = line.split(|b| *b == b' ').next().unwrap_or_default();
    match word {
        b"%output" | b"%extended-output" => Line::Output,
        b"%window-add"
        | b"%window-close"
        | b"%unlinked-window-add"
        | b"%unlinked-window-close"
        | b"%window-pane-changed"
        | b"%pane-mode-changed"
        | b"%sessions-changed" => Line::Layout,
        b"%session-changed" => {
            // `%session-changed $ID NAME`
            let text = String::from_utf8_lossy(line);
            let name = text.splitn(3, ' ').nth(2).unwrap_or_default().trim_end().to_string();
            Line::Session(name)
        }
        b"%exit" => Line::Exit,
        b"%begin" => Line::BlockStart,
        b"%end" | b"%error" => Line::BlockEnd,
        _ => Line::Other,
    }
}

fn read(
    mut stdout: BufReader<std::process::ChildStdout>,
    session: &str,
    id: u64,
    pending: &AtomicBool,
    out: &Sender<Notice>,
) {
    let mut line = Vec::with_capacity(4096);
    let mut in_block = false;
    loop {
        line.clear();
        match stdout.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        let what = classify(&line);
        if in_block {
            in_block = what != Line::BlockEnd;
            continue;
        }
        let notice = match what {
            Line::Output => {
                if pending.swap(true, Ordering::AcqRel) {
                    continue;
                }
                Notice::Output { session: session.to_string() }
            }
            Line::Layout => Notice::Layout { session: session.to_string() },
            Line::Session(name) if name != session => {
                log::debug!("{session}: its control client moved to session {name}; ending it");
                break;
            }
            Line::Exit => break,
            Line::BlockStart => {
                in_block = true;
                continue;
            }
            Line::Session(_) | Line::BlockEnd | Line::Other => continue,
        };
        if out.send(notice).is_err() {
            return;
        }
    }
    let _ = out.send(Notice::Ended { session: session.to_string(), follower: id });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_lines_are_read_by_their_first_word() {
        assert_eq!(classify(b"%output %0 hi\\015\\012"), Line::Output);
        assert_eq!(classify(b"%extended-output %0 12 : hi"), Line::Output);
        assert_eq!(classify(b"%window-close @3"), Line::Layout);
        assert_eq!(classify(b"%unlinked-window-close @1"), Line::Layout);
        assert_eq!(classify(b"%sessions-changed"), Line::Layout);
        assert_eq!(classify(b"%session-changed $0 ccl 1"), Line::Session("ccl 1".into()));
        assert_eq!(classify(b"%exit"), Line::Exit);
        assert_eq!(classify(b"%exit detached"), Line::Exit);
        assert_eq!(classify(b"%begin 1796178247 263 0"), Line::BlockStart);
        assert_eq!(classify(b"%error 1796178247 263 0"), Line::BlockEnd);
        assert_eq!(classify(b"%layout-change @0 b25d,80x24,0,0,0"), Line::Other);
        assert_eq!(classify(b"%outputs"), Line::Other);
    }
}
