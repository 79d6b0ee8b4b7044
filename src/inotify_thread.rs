//! The life cycle both folder watchers share (the inbox watcher in `queue`,
//! the session-file watcher in `sessions`): one named thread blocks on an
//! inotify descriptor, hands each batch of events to the watcher's own
//! [`WatchState`] under a lock, and sends what that makes of them.
//!
//! Stopping needs no timer: [`InotifyThread::stop`] marks the state stopping
//! and removes every watch; the kernel then queues IN_IGNORED, the blocked
//! read returns, the thread sees the mark and exits. Each watcher therefore
//! always holds one watch on a folder that exists. What a watch means, and
//! which folders are watched, is the watcher's business, not this module's.

use crossbeam_channel::Sender;
use inotify::{EventMask, Inotify};
use parking_lot::{MappedMutexGuard, Mutex, MutexGuard};
use std::ffi::OsString;
use std::io;
use std::sync::Arc;
use std::thread::JoinHandle;

/// An inotify event reduced to what a watcher needs, so tests can feed it
/// events the kernel is hard to make produce (an overflow).
#[derive(Debug, Clone)]
pub(crate) struct RawEvent {
    pub wd: i32,
    pub mask: EventMask,
    pub name: Option<OsString>,
}

/// What a watcher keeps behind the lock the thread and its handle share.
pub(crate) trait WatchState: Send + 'static {
    type Event: Send + 'static;
    /// The read buffer's size in bytes.
    const BUFFER: usize;
    /// Adds to `out` what `event` means.
    fn handle(&mut self, event: RawEvent, out: &mut Vec<Self::Event>);
    /// Removes every watch (a watch the kernel already dropped is no error).
    fn unwatch_all(&mut self);
    /// Says in the log that watching stopped because the descriptor failed.
    fn read_failed(error: &io::Error);
}

struct Shared<F> {
    folders: F,
    stopping: bool,
}

/// Handle on one watcher's thread. Dropping it stops the thread too.
pub(crate) struct InotifyThread<F: WatchState> {
    shared: Arc<Mutex<Shared<F>>>,
    name: &'static str,
    thread: Option<JoinHandle<()>>,
}

impl<F: WatchState> InotifyThread<F> {
    /// Starts the thread `name` reading `inotify`, whose watches `folders`
    /// already holds.
    pub fn start(name: &'static str, inotify: Inotify, folders: F, out: Sender<F::Event>) -> io::Result<Self> {
        let shared = Arc::new(Mutex::new(Shared { folders, stopping: false }));
        let theirs = Arc::clone(&shared);
        let thread = std::thread::Builder::new().name(name.into()).spawn(move || run(inotify, &theirs, &out))?;
        Ok(InotifyThread { shared, name, thread: Some(thread) })
    }

    /// The watcher's state, locked against the thread.
    pub fn lock(&self) -> MappedMutexGuard<'_, F> {
        MutexGuard::map(self.shared.lock(), |s| &mut s.folders)
    }

    /// Removes every watch, which wakes the blocked read, and joins the thread.
    pub fn stop(mut self) {
        self.stop_thread();
    }

    fn stop_thread(&mut self) {
        let Some(thread) = self.thread.take() else { return };
        {
            let mut shared = self.shared.lock();
            shared.stopping = true;
            shared.folders.unwatch_all();
        }
        if thread.join().is_err() {
            log::error!("the {} thread panicked", self.name);
        }
    }
}

impl<F: WatchState> Drop for InotifyThread<F> {
    fn drop(&mut self) {
        self.stop_thread();
    }
}

fn run<F: WatchState>(mut inotify: Inotify, shared: &Mutex<Shared<F>>, out: &Sender<F::Event>) {
    let mut buffer = vec![0u8; F::BUFFER];
    loop {
        let raw: Vec<RawEvent> = match inotify.read_events_blocking(&mut buffer) {
            Ok(batch) => batch
                .map(|e| RawEvent {
                    wd: e.wd.get_watch_descriptor_id(),
                    mask: e.mask,
                    name: e.name.map(OsString::from),
                })
                .collect(),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                F::read_failed(&e);
                return;
            }
        };
        let mut events = Vec::new();
        {
            let mut shared = shared.lock();
            if shared.stopping {
                return;
            }
            for event in raw {
                shared.folders.handle(event, &mut events);
            }
        }
        for event in events {
            if out.send(event).is_err() {
                return;
            }
        }
    }
}
