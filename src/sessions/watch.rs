//! Wakes the sessions role the moment Claude Code writes one of the files it
//! reads: a session file (`<config_dir>/sessions/<pid>.json`, rewritten in
//! place when the status turns idle or busy) or a transcript
//! (`projects/<key>/<id>.jsonl`, appended a record at a time). A turn's end,
//! a limit record or a relaunched session's prompt is then seen within
//! milliseconds, not at the next once-a-second look, which stays as the
//! fallback for what writes no file (the screen, a process that died).
//!
//! One thread ("session-watch") blocks on the inotify descriptor and forwards
//! `Changed` for every file closed after writing or renamed in. Folders are
//! added as the role learns them; one missing now (a project's transcript
//! folder before its first prompt) is simply tried again later. Stopping
//! removes every watch, including one always held on a folder that exists
//! (the state directory), so the blocked read returns.

use crossbeam_channel::Sender;
use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask, Watches};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;

/// A file in a watched folder was written (and closed) or renamed in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Changed {
    File {
        dir: PathBuf,
        name: OsString,
    },
    /// Events were lost (queue overflow): look at everything.
    All,
}

fn mask() -> WatchMask {
    WatchMask::CLOSE_WRITE | WatchMask::MOVED_TO | WatchMask::ONLYDIR
}

#[derive(Default)]
struct Folders {
    by_wd: HashMap<i32, (WatchDescriptor, PathBuf)>,
    by_path: HashMap<PathBuf, i32>,
    stopping: bool,
}

pub struct FileWatch {
    watches: Watches,
    folders: Arc<Mutex<Folders>>,
    thread: Option<JoinHandle<()>>,
}

impl FileWatch {
    /// Starts the thread; `anchor` is a folder that exists for the watcher's
    /// whole life (it holds the watch whose removal wakes the thread at stop).
    pub fn start(anchor: &Path, out: Sender<Changed>) -> std::io::Result<FileWatch> {
        let inotify = Inotify::init()?;
        let watches = inotify.watches();
        let folders = Arc::new(Mutex::new(Folders::default()));
        let mut watch = FileWatch { watches, folders: Arc::clone(&folders), thread: None };
        watch.add(anchor)?;
        watch.thread =
            Some(std::thread::Builder::new().name("session-watch".into()).spawn(move || run(inotify, folders, out))?);
        Ok(watch)
    }

    /// Whether `dir` is watched now.
    pub fn watching(&self, dir: &Path) -> bool {
        self.folders.lock().by_path.contains_key(dir)
    }

    /// Watches `dir` (once; again after the kernel dropped it). A missing
    /// folder is an error the caller retries later.
    pub fn add(&mut self, dir: &Path) -> std::io::Result<()> {
        let mut folders = self.folders.lock();
        if folders.by_path.contains_key(dir) {
            return Ok(());
        }
        let wd = self.watches.add(dir, mask())?;
        let id = wd.get_watch_descriptor_id();
        folders.by_wd.insert(id, (wd, dir.to_path_buf()));
        folders.by_path.insert(dir.to_path_buf(), id);
        Ok(())
    }

    /// Removes every watch, which wakes the blocked read, and joins the thread.
    pub fn stop(mut self) {
        self.stop_thread();
    }

    fn stop_thread(&mut self) {
        let Some(thread) = self.thread.take() else { return };
        {
            let mut folders = self.folders.lock();
            folders.stopping = true;
            for (_, (wd, _)) in folders.by_wd.drain() {
                // Fails only for watches the kernel already dropped.
                let _ = self.watches.remove(wd);
            }
            folders.by_path.clear();
        }
        if thread.join().is_err() {
            log::error!("the session-watch thread panicked");
        }
    }
}

impl Drop for FileWatch {
    fn drop(&mut self) {
        self.stop_thread();
    }
}

fn run(mut inotify: Inotify, folders: Arc<Mutex<Folders>>, out: Sender<Changed>) {
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let mut changed = Vec::new();
        match inotify.read_events_blocking(&mut buffer) {
            Ok(events) => {
                let mut folders = folders.lock();
                if folders.stopping {
                    return;
                }
                for event in events {
                    let wd = event.wd.get_watch_descriptor_id();
                    if event.mask.contains(EventMask::Q_OVERFLOW) {
                        changed.push(Changed::All);
                    } else if event.mask.contains(EventMask::IGNORED) {
                        // The folder went away: forget it so `add` watches it anew.
                        if let Some((_, path)) = folders.by_wd.remove(&wd) {
                            folders.by_path.remove(&path);
                        }
                    } else if let (Some(name), Some((_, dir))) = (event.name, folders.by_wd.get(&wd)) {
                        let file = Changed::File { dir: dir.clone(), name: name.to_os_string() };
                        if !changed.contains(&file) {
                            changed.push(file);
                        }
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                log::error!("watching session files stopped: {e}; sessions are looked at once a second");
                return;
            }
        }
        for c in changed {
            if out.send(c).is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn reports_files_written_and_renamed_in_and_stops() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("sessions");
        let (tx, rx) = crossbeam_channel::unbounded();
        let mut watch = FileWatch::start(dir.path(), tx).unwrap();
        assert!(watch.add(&sub).is_err(), "a missing folder is an error to retry");
        std::fs::create_dir(&sub).unwrap();
        watch.add(&sub).unwrap();
        watch.add(&sub).unwrap();
        std::fs::write(sub.join("42.json"), "{}").unwrap();
        let got = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(got, Changed::File { dir: sub.clone(), name: "42.json".into() });
        std::fs::write(dir.path().join("t.tmp"), "x").unwrap();
        let _ = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        std::fs::rename(dir.path().join("t.tmp"), sub.join("id.jsonl")).unwrap();
        let got = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(got, Changed::File { dir: sub.clone(), name: "id.jsonl".into() });
        // Removed and made again: watched anew.
        std::fs::remove_dir_all(&sub).unwrap();
        let mut retried = false;
        for _ in 0..100 {
            std::fs::create_dir_all(&sub).unwrap();
            if watch.watching(&sub) {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
            watch.add(&sub).unwrap();
            retried = true;
            break;
        }
        assert!(retried, "the dropped watch was forgotten");
        std::fs::write(sub.join("7.json"), "{}").unwrap();
        let got = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(got, Changed::File { dir: sub, name: "7.json".into() });
        watch.stop();
    }
}
