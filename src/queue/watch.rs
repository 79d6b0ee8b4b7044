//! Seeing tasks arrive in every project's `inbox/` through inotify, without
//! polling. One thread ("inbox-watch") blocks on the inotify descriptor and
//! forwards `WatchEvent`s; it never reads a task or moves a file.
//!
//! Start-up order: start the watcher first, then scan each inbox, and dedupe
//! by name. A file written between the two is then reported twice (once by the
//! scan, once as `Arrived`) instead of never; a repeated name is harmless
//! because `Queue::load` of a claimed task answers `Gone`.
//!
//! A project's inbox that does not exist (yet, or any more) is watched through
//! its nearest existing ancestor folder, one level at a time, until the inbox
//! appears; then the inbox itself is watched and `Rescan` is sent, since files
//! may have landed before the watch did. The same happens when the inbox is
//! deleted or moved away and made again. A queue overflow loses events, so it
//! asks every project for a `Rescan`.
//!
//! Limit: moving away an ancestor of a watched inbox (not the inbox itself)
//! keeps the watch on the moved folder; the kernel reports nothing for it.
//!
//! The thread's life and its stop are `crate::inotify_thread`'s; a watch on
//! `/` is always held so there is a watch to remove even when no inbox is
//! watched.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fmt;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use crossbeam_channel::Sender;
use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask, Watches};

use super::is_ignored_name;
pub(crate) use crate::inotify_thread::RawEvent;
use crate::inotify_thread::{InotifyThread, WatchState};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEvent {
    /// `name` was written in place (closed after writing), renamed in, or is
    /// something that will never be written (a directory, a link) and must be
    /// rejected.
    Arrived { project: String, name: String },
    /// Events may have been missed: scan this project's inbox again.
    Rescan { project: String },
}

#[derive(Debug)]
pub enum WatchError {
    Init(io::Error),
    Spawn(io::Error),
}

impl fmt::Display for WatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WatchError::Init(e) => write!(f, "cannot start inotify for the task inboxes: {e}"),
            WatchError::Spawn(e) => write!(f, "cannot start the inbox-watch thread: {e}"),
        }
    }
}

impl std::error::Error for WatchError {}

fn mask() -> WatchMask {
    WatchMask::CLOSE_WRITE
        | WatchMask::MOVED_TO
        | WatchMask::CREATE
        | WatchMask::DELETE_SELF
        | WatchMask::MOVE_SELF
        | WatchMask::ONLYDIR
}

/// Handle on the watching thread. Dropping it stops the thread too.
pub struct InboxWatcher {
    thread: InotifyThread<Tracker>,
}

impl InboxWatcher {
    /// Watches each `(project, inbox folder)` and sends what happens to `events`.
    /// The watches are in place when this returns: scan the inboxes after it.
    pub fn start(inboxes: Vec<(String, PathBuf)>, events: Sender<WatchEvent>) -> Result<InboxWatcher, WatchError> {
        let inotify = Inotify::init().map_err(WatchError::Init)?;
        let mut tracker = Tracker::new(inotify.watches());
        tracker.hold_wake_watch().map_err(WatchError::Init)?;
        let mut out = Vec::new();
        for (project, inbox) in inboxes {
            tracker.add_project(project, inbox, &mut out);
        }
        let thread = InotifyThread::start("inbox-watch", inotify, tracker, events).map_err(WatchError::Spawn)?;
        Ok(InboxWatcher { thread })
    }

    /// Watches one more project (e.g. after a config reload). Scan its inbox
    /// after this returns.
    pub fn add(&self, project: &str, inbox: PathBuf) {
        let mut out = Vec::new();
        self.thread.lock().add_project(project.to_string(), inbox, &mut out);
    }

    /// Removes every watch, which wakes the blocked read, and joins the thread.
    pub fn stop(self) {
        self.thread.stop();
    }
}

impl WatchState for Tracker {
    type Event = WatchEvent;
    const BUFFER: usize = 64 * 1024;

    fn handle(&mut self, event: RawEvent, out: &mut Vec<WatchEvent>) {
        Tracker::handle(self, event, out);
    }

    fn unwatch_all(&mut self) {
        for (_, watched) in self.by_wd.drain() {
            // Fails only for watches the kernel already dropped.
            let _ = self.watches.remove(watched.wd);
        }
    }

    fn read_failed(error: &io::Error) {
        log::error!("inbox watching stopped: cannot read inotify events: {error}");
    }
}

struct Project {
    name: String,
    inbox: PathBuf,
    /// The watch holding this project now, if any.
    at: Option<i32>,
    /// Whether `at` is the inbox itself (else an ancestor of it).
    on_inbox: bool,
}

struct Watched {
    wd: WatchDescriptor,
    path: PathBuf,
    projects: Vec<usize>,
    wake: bool,
}

/// Which folder each project is watched through, and what an event means.
pub(crate) struct Tracker {
    watches: Watches,
    projects: Vec<Project>,
    by_wd: HashMap<i32, Watched>,
}

impl Tracker {
    pub(crate) fn new(watches: Watches) -> Tracker {
        Tracker { watches, projects: Vec::new(), by_wd: HashMap::new() }
    }

    fn hold_wake_watch(&mut self) -> io::Result<()> {
        let wd = self.watches.add("/", mask())?;
        let id = wd.get_watch_descriptor_id();
        self.by_wd
            .entry(id)
            .or_insert_with(|| Watched { wd, path: PathBuf::from("/"), projects: Vec::new(), wake: false })
            .wake = true;
        Ok(())
    }

    /// Starts watching a project; `Rescan`s are only sent for inboxes that
    /// appear later, the caller scans the ones there now.
    pub(crate) fn add_project(&mut self, name: String, inbox: PathBuf, out: &mut Vec<WatchEvent>) {
        let inbox = crate::config::absolute(&inbox);
        let index = self.projects.len();
        self.projects.push(Project { name, inbox, at: None, on_inbox: false });
        self.resolve(index, false, out);
    }

    pub(crate) fn handle(&mut self, event: RawEvent, out: &mut Vec<WatchEvent>) {
        if event.mask.contains(EventMask::Q_OVERFLOW) {
            for index in 0..self.projects.len() {
                if !self.projects[index].on_inbox {
                    self.resolve(index, false, out);
                }
                let project = self.projects[index].name.clone();
                push_unique(out, WatchEvent::Rescan { project });
            }
            return;
        }
        let Some(watched) = self.by_wd.get(&event.wd) else {
            return;
        };
        let holders = watched.projects.clone();
        let dir = watched.path.clone();
        if event.mask.contains(EventMask::IGNORED) {
            // The kernel dropped the watch: the folder was deleted or unmounted.
            self.by_wd.remove(&event.wd);
            for index in holders {
                self.projects[index].at = None;
                self.resolve(index, true, out);
            }
            return;
        }
        if event.mask.contains(EventMask::MOVE_SELF) {
            // The watch follows the inode to its new path; we care about the old path.
            if let Some(watched) = self.by_wd.remove(&event.wd) {
                let _ = self.watches.remove(watched.wd);
                if watched.wake {
                    let _ = self.hold_wake_watch();
                }
            }
            for index in holders {
                self.projects[index].at = None;
                self.resolve(index, true, out);
            }
            return;
        }
        let Some(name) = event.name else {
            return;
        };
        for index in holders {
            let project = &self.projects[index];
            if project.on_inbox {
                // Writers' temp files and our own side files.
                if name.is_empty() || is_ignored_name(&name) {
                    continue;
                }
                if let Some(arrival) = inbox_event(project, &dir, event.mask, &name) {
                    push_unique(out, arrival);
                }
            } else if event.mask.intersects(EventMask::CREATE | EventMask::MOVED_TO)
                && next_component(&dir, &project.inbox).as_deref() == Some(name.as_os_str())
            {
                self.resolve(index, true, out);
            }
        }
    }

    /// Watches the project's inbox, or its nearest existing ancestor while the
    /// inbox is missing. `announce`: send `Rescan` when the inbox is reached.
    fn resolve(&mut self, index: usize, announce: bool, out: &mut Vec<WatchEvent>) {
        // Each turn either descends one level or follows a folder that vanished
        // under us; the bound only guards against a pathological churn.
        for _ in 0..64 {
            let inbox = self.projects[index].inbox.clone();
            let Some(target) = nearest_dir(&inbox) else {
                log::warn!("{}: no existing folder to watch", inbox.display());
                self.detach(index);
                return;
            };
            let wd = match self.watches.add(&target, mask()) {
                Ok(wd) => wd,
                Err(e) if matches!(e.raw_os_error(), Some(2) | Some(20)) => continue, // ENOENT, ENOTDIR
                Err(e) => {
                    log::warn!(
                        "project {}: cannot watch {}: {e}; its new tasks will be seen only at start-up",
                        self.projects[index].name,
                        target.display()
                    );
                    self.detach(index);
                    return;
                }
            };
            let id = wd.get_watch_descriptor_id();
            if self.projects[index].at != Some(id) {
                self.detach(index);
                self.by_wd
                    .entry(id)
                    .or_insert_with(|| Watched { wd, path: target.clone(), projects: Vec::new(), wake: false })
                    .projects
                    .push(index);
                self.projects[index].at = Some(id);
            }
            if target == inbox {
                let project = &mut self.projects[index];
                project.on_inbox = true;
                if announce {
                    push_unique(out, WatchEvent::Rescan { project: project.name.clone() });
                }
                return;
            }
            self.projects[index].on_inbox = false;
            // The next level may have been made between the lookup and the watch.
            match next_component(&target, &inbox) {
                Some(next) if target.join(&next).is_dir() => continue,
                _ => return,
            }
        }
        log::warn!("project {}: its inbox path keeps changing; watching stopped", self.projects[index].name);
    }

    /// Lets go of the project's current watch, removing it when nobody else uses it.
    fn detach(&mut self, index: usize) {
        let Some(id) = self.projects[index].at.take() else {
            return;
        };
        self.projects[index].on_inbox = false;
        let Some(watched) = self.by_wd.get_mut(&id) else {
            return;
        };
        watched.projects.retain(|&p| p != index);
        if watched.projects.is_empty() && !watched.wake {
            if let Some(watched) = self.by_wd.remove(&id) {
                let _ = self.watches.remove(watched.wd);
            }
        }
    }
}

fn inbox_event(project: &Project, dir: &Path, mask: EventMask, name: &std::ffi::OsStr) -> Option<WatchEvent> {
    let settled = if mask.intersects(EventMask::CLOSE_WRITE | EventMask::MOVED_TO) {
        true
    } else if mask.contains(EventMask::CREATE) {
        // A plain new file is reported when its writer closes it. A directory,
        // symlink or extra hard link will see no CLOSE_WRITE, so report it now
        // (it is bad input and goes to failed/).
        match std::fs::symlink_metadata(dir.join(name)) {
            Ok(meta) => !meta.file_type().is_file() || meta.nlink() > 1,
            Err(_) => false,
        }
    } else {
        false
    };
    if !settled {
        return None;
    }
    let project = project.name.clone();
    Some(match name.to_str() {
        Some(name) => WatchEvent::Arrived { project, name: name.to_string() },
        // Only the scan can deal with a name a String cannot hold.
        None => WatchEvent::Rescan { project },
    })
}

fn push_unique(out: &mut Vec<WatchEvent>, event: WatchEvent) {
    if !out.contains(&event) {
        out.push(event);
    }
}

/// `path` itself when it is a folder, else its closest ancestor that is.
fn nearest_dir(path: &Path) -> Option<PathBuf> {
    path.ancestors().find(|p| p.is_dir()).map(Path::to_path_buf)
}

/// The name under `dir` on the way down to `inbox`.
fn next_component(dir: &Path, inbox: &Path) -> Option<OsString> {
    match inbox.strip_prefix(dir).ok()?.components().next()? {
        Component::Normal(name) => Some(name.to_os_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overflow_asks_every_project_to_rescan() {
        let dir = tempfile::tempdir().expect("tmp");
        let a = dir.path().join("a/inbox");
        std::fs::create_dir_all(&a).expect("mkdir");
        let b = dir.path().join("b/not-yet/inbox");
        let inotify = Inotify::init().expect("inotify");
        let mut tracker = Tracker::new(inotify.watches());
        let mut out = Vec::new();
        tracker.add_project("a".into(), a, &mut out);
        tracker.add_project("b".into(), b.clone(), &mut out);
        assert!(out.is_empty(), "start-up sends nothing: {out:?}");

        // b's inbox appears while events are being lost.
        std::fs::create_dir_all(&b).expect("mkdir");
        let overflow = RawEvent { wd: -1, mask: EventMask::Q_OVERFLOW, name: None };
        tracker.handle(overflow, &mut out);
        assert_eq!(out, vec![WatchEvent::Rescan { project: "a".into() }, WatchEvent::Rescan { project: "b".into() },]);
        assert!(tracker.projects.iter().all(|p| p.on_inbox), "b now watched on its inbox");
        tracker.unwatch_all();
    }

    #[test]
    fn a_dot_named_folder_on_the_way_to_the_inbox_is_followed() {
        let dir = tempfile::tempdir().expect("tmp");
        let inbox = dir.path().join(".agent-queue/inbox");
        let inotify = Inotify::init().expect("inotify");
        let mut tracker = Tracker::new(inotify.watches());
        let mut out = Vec::new();
        tracker.add_project("p".into(), inbox.clone(), &mut out);
        let wd = tracker.projects[0].at.expect("watching the temp dir");
        std::fs::create_dir_all(&inbox).expect("mkdir");
        let created = RawEvent { wd, mask: EventMask::CREATE | EventMask::ISDIR, name: Some(".agent-queue".into()) };
        tracker.handle(created, &mut out);
        assert_eq!(out, vec![WatchEvent::Rescan { project: "p".into() }]);
        assert!(tracker.projects[0].on_inbox);
        tracker.unwatch_all();
    }

    #[test]
    fn next_component_walks_down() {
        let inbox = Path::new("/srv/p/.agent-queue/inbox");
        assert_eq!(next_component(Path::new("/srv"), inbox).as_deref(), Some(std::ffi::OsStr::new("p")));
        assert_eq!(next_component(inbox, inbox), None);
        assert_eq!(next_component(Path::new("/other"), inbox), None);
    }
}
