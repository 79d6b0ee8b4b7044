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
//! folder before its first prompt) is simply tried again later. The thread's
//! life and its stop are `crate::inotify_thread`'s; the watch always held on
//! a folder that exists (the state directory) lets the stop wake it.

use crate::inotify_thread::{InotifyThread, RawEvent, WatchState};
use crossbeam_channel::Sender;
use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask, Watches};
use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

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

struct Folders {
    watches: Watches,
    by_wd: HashMap<i32, (WatchDescriptor, PathBuf)>,
    by_path: HashMap<PathBuf, i32>,
}

pub struct FileWatch {
    thread: InotifyThread<Folders>,
}

impl FileWatch {
    /// Starts the thread; `anchor` is a folder that exists for the watcher's
    /// whole life (it holds the watch whose removal wakes the thread at stop).
    pub fn start(anchor: &Path, out: Sender<Changed>) -> std::io::Result<FileWatch> {
        let inotify = Inotify::init()?;
        let mut folders = Folders { watches: inotify.watches(), by_wd: HashMap::new(), by_path: HashMap::new() };
        folders.add(anchor)?;
        Ok(FileWatch { thread: InotifyThread::start("session-watch", inotify, folders, out)? })
    }

    /// Whether `dir` is watched now.
    pub fn watching(&self, dir: &Path) -> bool {
        self.thread.lock().by_path.contains_key(dir)
    }

    /// Watches `dir` (once; again after the kernel dropped it). A missing
    /// folder is an error the caller retries later.
    pub fn add(&mut self, dir: &Path) -> std::io::Result<()> {
        self.thread.lock().add(dir)
    }

    /// Removes every watch, which wakes the blocked read, and joins the thread.
    pub fn stop(self) {
        self.thread.stop();
    }
}

impl Folders {
    fn add(&mut self, dir: &Path) -> std::io::Result<()> {
        if self.by_path.contains_key(dir) {
            return Ok(());
        }
        let wd = self.watches.add(dir, mask())?;
        let id = wd.get_watch_descriptor_id();
        self.by_wd.insert(id, (wd, dir.to_path_buf()));
        self.by_path.insert(dir.to_path_buf(), id);
        Ok(())
    }
}

impl WatchState for Folders {
    type Event = Changed;
    const BUFFER: usize = 16 * 1024;

    fn handle(&mut self, event: RawEvent, changed: &mut Vec<Changed>) {
        if event.mask.contains(EventMask::Q_OVERFLOW) {
            changed.push(Changed::All);
        } else if event.mask.contains(EventMask::IGNORED) {
            // The folder went away: forget it so `add` watches it anew.
            if let Some((_, path)) = self.by_wd.remove(&event.wd) {
                self.by_path.remove(&path);
            }
        } else if let (Some(name), Some((_, dir))) = (event.name, self.by_wd.get(&event.wd)) {
            let file = Changed::File { dir: dir.clone(), name };
            if !changed.contains(&file) {
                changed.push(file);
            }
        }
    }

    fn unwatch_all(&mut self) {
        for (_, (wd, _)) in self.by_wd.drain() {
            // Fails only for watches the kernel already dropped.
            let _ = self.watches.remove(wd);
        }
        self.by_path.clear();
    }

    fn read_failed(error: &std::io::Error) {
        log::error!("watching session files stopped: {error}; sessions are looked at once a second");
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
