//! The signals role: turns SIGTERM/SIGINT/SIGHUP into coordinator events.
//!
//! Handlers only set a flag and write a byte to a socket pair; this thread
//! blocks reading that socket, woken by a signal, a heartbeat ask or the
//! stop (each writes a byte too). SIGHUP re-reads the config file here, so the coordinator gets
//! a parsed config (or the problems) and does no file I/O for it.

use crate::config::{Config, ConfigError};
use crate::heartbeat::Beat;
use crossbeam_channel::{Receiver, Sender, TryRecvError};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

pub enum SignalEvent {
    /// SIGTERM or SIGINT: stop cleanly.
    Stop(&'static str),
    /// SIGHUP: the file as re-read (boxed: a Config is large).
    Reload(Box<Result<Config, ConfigError>>),
}

pub struct SignalsHandle {
    stop: Sender<()>,
    wake: UnixStream,
    thread: JoinHandle<()>,
}

impl SignalsHandle {
    pub fn shutdown(mut self) {
        drop(self.stop);
        let _ = self.wake.write(&[0]);
        let _ = self.thread.join();
    }
}

pub fn spawn(config_path: PathBuf, out: Sender<SignalEvent>, beat: Beat) -> std::io::Result<SignalsHandle> {
    let (mut wake, wake_writer) = UnixStream::pair()?;
    // Never blocks the asker: a full socket already holds a wake.
    wake_writer.set_nonblocking(true)?;
    let flags: Vec<(i32, Arc<AtomicBool>)> =
        [SIGTERM, SIGINT, SIGHUP].into_iter().map(|sig| (sig, Arc::new(AtomicBool::new(false)))).collect();
    for (sig, flag) in &flags {
        signal_hook::flag::register(*sig, Arc::clone(flag))?;
        signal_hook::low_level::pipe::register(*sig, wake_writer.try_clone()?)?;
    }
    let asker = wake_writer.try_clone()?;
    beat.woken_by(move || {
        let _ = (&asker).write(&[0]);
    });
    let (stop, stopped) = crossbeam_channel::bounded::<()>(0);
    let thread = std::thread::Builder::new().name("signals".into()).spawn(move || {
        run(&mut wake, &flags, &config_path, &out, &stopped, &beat);
    })?;
    Ok(SignalsHandle { stop, wake: wake_writer, thread })
}

fn run(
    wake: &mut UnixStream,
    flags: &[(i32, Arc<AtomicBool>)],
    config_path: &std::path::Path,
    out: &Sender<SignalEvent>,
    stopped: &Receiver<()>,
    beat: &Beat,
) {
    let mut buf = [0u8; 64];
    loop {
        beat.beat();
        if !matches!(stopped.try_recv(), Err(TryRecvError::Empty)) {
            return;
        }
        // A signal's, an ask's or the stop's byte: look at the flags.
        let _ = wake.read(&mut buf);
        for (sig, flag) in flags {
            if !flag.swap(false, Ordering::SeqCst) {
                continue;
            }
            let event = match *sig {
                SIGHUP => {
                    log::info!("SIGHUP: re-reading {}", config_path.display());
                    SignalEvent::Reload(Box::new(Config::load(config_path)))
                }
                SIGTERM => SignalEvent::Stop("SIGTERM"),
                _ => SignalEvent::Stop("SIGINT"),
            };
            if out.send(event).is_err() {
                return;
            }
        }
    }
}
