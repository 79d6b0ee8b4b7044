//! One project's task queue on disk (docs/queue.md): the inbox/active/done/failed/archive
//! folders, every move between them, their JSON side files and status.json. It
//! decides nothing about sessions and runs no threads; the dispatcher calls it.
//!
//! Crash safety. A task moves only by `rename(2)` inside the queue root, so it is
//! always in exactly one folder; after each move both folders are fsynced. Side
//! files are written whole (temp `.NAME.tmp`, fsync, rename, fsync the folder)
//! *before* the move they describe, and a lease is removed only *after* its task
//! has left `active/`. So the only leftovers a crash can make are:
//!
//! - a lease in `active/` whose task is still in `inbox/` (crash inside `claim`,
//!   before the rename; the task was not pasted yet, since pasting follows
//!   `claim`), or whose task already reached done/failed/inbox (crash inside
//!   `finish`/`fail`/`requeue`, after the rename). `leases()` deletes such
//!   orphans: the task is where it belongs.
//! - a result/error JSON in done/ or failed/ whose task never arrived: harmless,
//!   and a retried move picks a fresh name beside it.
//! - a stale `inbox/.NAME.attempts`: rewritten by the next requeue and removed
//!   when a task of that name leaves `active/`.
//!
//! Attempts survive requeues in `inbox/.NAME.attempts` (written before the task
//! moves back; dot-names are ignored by the scan and the watcher), and while a
//! task is active in its lease.
//!
//! Names: a task's side files use its name without `.md` (`fix.md` →
//! `fix.lease.json`). A move never overwrites: when `done/` or `failed/` already
//! holds the name, the task gets `NAME-2.md`, `NAME-3.md`, ...

pub mod recovery;
pub mod submit;
pub mod task;
pub mod watch;

use std::ffi::OsStr;
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

pub use recovery::{recover, Recovery, SessionNow};
pub use submit::{FailedTask, SubmitError, TaskWhere};
pub use task::{may_take, order, pick, takes_first, LoadError, Rejection, Task};
pub use watch::{InboxWatcher, WatchError, WatchEvent};

const INBOX: &str = "inbox";
const ACTIVE: &str = "active";
const DONE: &str = "done";
const FAILED: &str = "failed";
const ARCHIVE: &str = "archive";
const STATUS: &str = "status.json";

const LEASE_SUFFIX: &str = ".lease.json";
const RESULT_SUFFIX: &str = ".result.json";
const ERROR_SUFFIX: &str = ".error.json";

/// `active/NAME.lease.json`: who holds a task and since when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub session: String,
    pub account: String,
    /// 1 for the first try; counts across requeues and restarts.
    pub attempt: u32,
    /// RFC 3339 UTC.
    pub dispatched_at: String,
    pub claude_session_id: Option<String>,
}

/// `done/NAME.result.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskResult {
    pub session: String,
    pub account: String,
    pub attempts: u32,
    pub started_at: String,
    pub finished_at: String,
    pub last_assistant_message: Option<String>,
}

/// `failed/NAME.error.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorRecord {
    pub reason: String,
    pub attempts: u32,
    pub at: String,
}

/// Something in `inbox/` that is not a writer's dot-file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxEntry {
    pub name: String,
}

/// What a scan of `inbox/` found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InboxScan {
    /// Sorted by name.
    pub entries: Vec<InboxEntry>,
    /// Entries the scan itself moved to `failed/`: (the name there, why).
    pub rejected: Vec<(String, String)>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct QueueCounts {
    pub inbox: usize,
    pub active: usize,
    pub done: usize,
    pub failed: usize,
}

#[derive(Debug)]
pub enum QueueError {
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    /// Not a plain file name (a path, `..`, a dot-file).
    BadName {
        project: String,
        name: String,
    },
    /// The task is not in the folder the operation moves it from.
    Missing {
        path: PathBuf,
    },
    /// `active/` already holds a task of that name.
    Occupied {
        path: PathBuf,
    },
}

impl fmt::Display for QueueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QueueError::Io { action, path, source } => write!(f, "cannot {action} {}: {source}", path.display()),
            QueueError::BadName { project, name } => {
                write!(f, "project {project}: {name:?} is not a task file name")
            }
            QueueError::Missing { path } => write!(f, "{} does not exist", path.display()),
            QueueError::Occupied { path } => {
                write!(f, "{} already exists: a task of that name is being worked on", path.display())
            }
        }
    }
}

impl std::error::Error for QueueError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            QueueError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> QueueError + 'a {
    move |source| QueueError::Io { action, path: path.to_path_buf(), source }
}

/// One project's queue folder, `<project path>/<queue_dir>`.
#[derive(Debug, Clone)]
pub struct Queue {
    project: String,
    root: PathBuf,
}

impl Queue {
    /// Opens the queue at `root`, creating it and its five folders when missing.
    pub fn open(project: &str, root: PathBuf) -> Result<Queue, QueueError> {
        for dir in [INBOX, ACTIVE, DONE, FAILED, ARCHIVE] {
            let path = root.join(dir);
            fs::create_dir_all(&path).map_err(io_err("create", &path))?;
        }
        Ok(Queue { project: project.to_string(), root })
    }

    pub fn project(&self) -> &str {
        &self.project
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The folder the watcher watches.
    pub fn inbox_dir(&self) -> PathBuf {
        self.root.join(INBOX)
    }

    /// `archive/`, where the janitor files old `done/` entries by month.
    pub fn archive_dir(&self) -> PathBuf {
        self.root.join(ARCHIVE)
    }

    fn dir(&self, which: &str) -> PathBuf {
        self.root.join(which)
    }

    fn check_name(&self, name: &str) -> Result<(), QueueError> {
        if is_plain_name(name) {
            Ok(())
        } else {
            Err(QueueError::BadName { project: self.project.clone(), name: name.to_string() })
        }
    }

    /// Every entry of `inbox/` but dot-files, sorted by name. An entry whose name
    /// is not UTF-8 cannot be named by a `String`, so it is moved to `failed/`
    /// here (under its lossily decoded name) and reported in `rejected`.
    pub fn scan_inbox(&self) -> Result<InboxScan, QueueError> {
        let inbox = self.dir(INBOX);
        let mut scan = InboxScan::default();
        for entry in fs::read_dir(&inbox).map_err(io_err("read", &inbox))? {
            let entry = entry.map_err(io_err("read", &inbox))?;
            let raw = entry.file_name();
            if is_ignored_name(&raw) {
                continue;
            }
            match raw.to_str() {
                Some(name) => scan.entries.push(InboxEntry { name: name.to_string() }),
                None => {
                    let lossy = raw.to_string_lossy().into_owned();
                    let reason = "the file name is not UTF-8";
                    let slot = self.move_to_failed(&inbox.join(&raw), &lossy, reason, 0)?;
                    log::warn!("project {}: inbox entry with a non-UTF-8 name moved to failed/{slot}", self.project);
                    scan.rejected.push((slot, reason.into()));
                }
            }
        }
        scan.entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(scan)
    }

    /// Reads and checks `inbox/NAME` (see `Rejection` for what fails). Never
    /// follows a symlink. The task's earlier attempts come from its side file.
    pub fn load(&self, name: &str, max_bytes: u64) -> Result<Task, LoadError> {
        if !is_plain_name(name) {
            return Err(LoadError::Gone);
        }
        let inbox = self.dir(INBOX);
        task::load_file(&inbox.join(name), name, max_bytes, self.inbox_attempts(name))
    }

    /// The text of a task in active/ (front matter stripped), as it was pasted.
    pub fn active_body(&self, name: &str) -> Result<String, LoadError> {
        if !is_plain_name(name) {
            return Err(LoadError::Gone);
        }
        task::load_file(&self.dir(ACTIVE).join(name), name, u64::MAX, 0).map(|t| t.body)
    }

    fn inbox_attempts(&self, name: &str) -> u32 {
        fs::read_to_string(self.dir(INBOX).join(attempts_file(name)))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Moves bad input `inbox/NAME` — file, directory or anything else, as it is —
    /// to `failed/` beside `NAME.error.json`. Returns its name in `failed/`.
    pub fn reject(&self, name: &str, reason: &str, attempts: u32) -> Result<String, QueueError> {
        self.check_name(name)?;
        let inbox = self.dir(INBOX);
        let slot = self.move_to_failed(&inbox.join(name), name, reason, attempts)?;
        remove_if_present(&inbox.join(attempts_file(name)))?;
        Ok(slot)
    }

    fn move_to_failed(&self, from: &Path, name: &str, reason: &str, attempts: u32) -> Result<String, QueueError> {
        if fs::symlink_metadata(from).is_err() {
            return Err(QueueError::Missing { path: from.to_path_buf() });
        }
        let failed = self.dir(FAILED);
        let slot = free_slot(&failed, name, ERROR_SUFFIX);
        let record = ErrorRecord { reason: reason.to_string(), attempts, at: crate::time::rfc3339(SystemTime::now()) };
        write_json_atomic(&failed, &side_file(&slot, ERROR_SUFFIX), &record)?;
        move_entry(from, &failed.join(&slot))?;
        Ok(slot)
    }

    /// Claims `inbox/NAME` for a session: writes `active/NAME.lease.json`, then
    /// renames the task into `active/`.
    ///
    /// Lease first, because a crash between the two steps then leaves a lease
    /// without its task (the task still in `inbox/`, not yet pasted), which
    /// `leases()` drops; the other order would leave an active task nobody is
    /// known to hold. Either way the task is in one folder only.
    pub fn claim(&self, name: &str, lease: &Lease) -> Result<(), QueueError> {
        self.check_name(name)?;
        let inbox = self.dir(INBOX);
        let active = self.dir(ACTIVE);
        let from = inbox.join(name);
        let to = active.join(name);
        if fs::symlink_metadata(&from).is_err() {
            return Err(QueueError::Missing { path: from });
        }
        // rename(2) replaces its target; only this process writes active/, so
        // checking first is enough to never overwrite a running task.
        if fs::symlink_metadata(&to).is_ok() {
            return Err(QueueError::Occupied { path: to });
        }
        let lease_name = side_file(name, LEASE_SUFFIX);
        write_json_atomic(&active, &lease_name, lease)?;
        if let Err(e) = move_entry(&from, &to) {
            let _ = fs::remove_file(active.join(&lease_name));
            return Err(e);
        }
        // The lease now carries the count.
        remove_if_present(&inbox.join(attempts_file(name)))?;
        Ok(())
    }

    /// Rewrites an active task's lease (e.g. its session moved to another
    /// account, or its Claude session id became known).
    pub fn update_lease(&self, name: &str, lease: &Lease) -> Result<(), QueueError> {
        self.check_name(name)?;
        let active = self.dir(ACTIVE);
        if fs::symlink_metadata(active.join(name)).is_err() {
            return Err(QueueError::Missing { path: active.join(name) });
        }
        write_json_atomic(&active, &side_file(name, LEASE_SUFFIX), lease)
    }

    /// The lease of one active task.
    pub fn lease(&self, name: &str) -> Result<Option<Lease>, QueueError> {
        self.check_name(name)?;
        Ok(read_lease(&self.dir(ACTIVE).join(side_file(name, LEASE_SUFFIX))))
    }

    /// Every active task with its lease, sorted by name, after tidying what a
    /// crash can leave: a lease whose task is not in `active/` is deleted (the
    /// task is in inbox/done/failed already), and an active task without a
    /// readable lease goes back to `inbox/` with its attempt count unchanged
    /// (no session is known to have had it). A lease's temp file left by a
    /// daemon killed while writing it is removed.
    pub fn leases(&self) -> Result<Vec<(String, Lease)>, QueueError> {
        let active = self.dir(ACTIVE);
        let mut tasks = Vec::new();
        let mut lease_files = Vec::new();
        for entry in fs::read_dir(&active).map_err(io_err("read", &active))? {
            let entry = entry.map_err(io_err("read", &active))?;
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if crate::atomic::is_foreign_temp(&name) {
                log::info!("project {}: removing active/{name}, a write cut off by a crash", self.project);
                // Left for the janitor when it cannot go: the leases matter more.
                if let Err(e) = remove_if_present(&entry.path()) {
                    log::warn!("project {}: {e}", self.project);
                }
                continue;
            }
            if name.starts_with('.') {
                continue;
            }
            if name.ends_with(LEASE_SUFFIX) {
                lease_files.push(name);
            } else {
                tasks.push(name);
            }
        }
        let wanted: Vec<String> = tasks.iter().map(|t| side_file(t, LEASE_SUFFIX)).collect();
        for lease_file in &lease_files {
            if !wanted.contains(lease_file) {
                log::info!(
                    "project {}: removing lease active/{lease_file} left without its task by a crash",
                    self.project
                );
                remove_if_present(&active.join(lease_file))?;
                sync_dir(&active)?;
            }
        }
        let mut held = Vec::new();
        tasks.sort();
        for task in tasks {
            match read_lease(&active.join(side_file(&task, LEASE_SUFFIX))) {
                Some(lease) => held.push((task, lease)),
                None => {
                    let back = self.move_to_inbox(&task, None)?;
                    log::warn!(
                        "project {}: active/{task} had no readable lease; returned to inbox/{back}",
                        self.project
                    );
                }
            }
        }
        Ok(held)
    }

    /// Moves an active task to `done/` with its result. Returns its name there.
    pub fn finish(&self, name: &str, result: &TaskResult) -> Result<String, QueueError> {
        self.leave_active(name, DONE, RESULT_SUFFIX, result)
    }

    /// Gives up on an active task: `failed/` with `NAME.error.json`.
    pub fn fail(&self, name: &str, reason: &str, attempts: u32) -> Result<String, QueueError> {
        let record = ErrorRecord { reason: reason.to_string(), attempts, at: crate::time::rfc3339(SystemTime::now()) };
        self.leave_active(name, FAILED, ERROR_SUFFIX, &record)
    }

    fn leave_active<T: Serialize>(
        &self,
        name: &str,
        dest: &str,
        suffix: &str,
        record: &T,
    ) -> Result<String, QueueError> {
        self.check_name(name)?;
        let active = self.dir(ACTIVE);
        let from = active.join(name);
        if fs::symlink_metadata(&from).is_err() {
            return Err(QueueError::Missing { path: from });
        }
        let dest = self.dir(dest);
        let slot = free_slot(&dest, name, suffix);
        write_json_atomic(&dest, &side_file(&slot, suffix), record)?;
        move_entry(&from, &dest.join(&slot))?;
        self.drop_lease(name)?;
        remove_if_present(&self.dir(INBOX).join(attempts_file(name)))?;
        Ok(slot)
    }

    /// Puts an active task back in `inbox/` for another session, keeping the
    /// attempts its lease counted. Returns its inbox name (suffixed when a new
    /// task of the same name arrived meanwhile).
    pub fn requeue(&self, name: &str) -> Result<String, QueueError> {
        self.check_name(name)?;
        let attempts = self.lease(name)?.map(|l| l.attempt);
        self.move_to_inbox(name, attempts)
    }

    fn move_to_inbox(&self, name: &str, attempts: Option<u32>) -> Result<String, QueueError> {
        let active = self.dir(ACTIVE);
        let from = active.join(name);
        if fs::symlink_metadata(&from).is_err() {
            return Err(QueueError::Missing { path: from });
        }
        let inbox = self.dir(INBOX);
        let slot = free_slot(&inbox, name, "");
        let old = self.inbox_attempts(name);
        let count = attempts.unwrap_or(old);
        // Written before the move so the count can't be lost in between.
        write_atomic(&inbox, &attempts_file(&slot), count.to_string().as_bytes())?;
        move_entry(&from, &inbox.join(&slot))?;
        self.drop_lease(name)?;
        Ok(slot)
    }

    fn drop_lease(&self, name: &str) -> Result<(), QueueError> {
        let active = self.dir(ACTIVE);
        remove_if_present(&active.join(side_file(name, LEASE_SUFFIX)))?;
        sync_dir(&active)
    }

    pub fn counts(&self) -> Result<QueueCounts, QueueError> {
        Ok(QueueCounts {
            inbox: self.count(INBOX, None)?,
            active: self.count(ACTIVE, Some(LEASE_SUFFIX))?,
            done: self.count(DONE, Some(RESULT_SUFFIX))?,
            failed: self.count(FAILED, Some(ERROR_SUFFIX))?,
        })
    }

    fn count(&self, which: &str, side_suffix: Option<&str>) -> Result<usize, QueueError> {
        let dir = self.dir(which);
        let mut n = 0;
        for entry in fs::read_dir(&dir).map_err(io_err("read", &dir))? {
            let entry = entry.map_err(io_err("read", &dir))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') || side_suffix.is_some_and(|s| name.ends_with(s)) {
                continue;
            }
            n += 1;
        }
        Ok(n)
    }

    /// Replaces `status.json` at the queue root in one step.
    pub fn write_status(&self, status: &serde_json::Value) -> Result<(), QueueError> {
        write_json_atomic(&self.root, STATUS, status)
    }
}

fn is_plain_name(name: &str) -> bool {
    !name.is_empty() && !name.starts_with('.') && !name.contains(['/', '\0'])
}

/// `fix.md` → `fix` + suffix; names without `.md` keep their whole name.
fn side_file(name: &str, suffix: &str) -> String {
    format!("{}{suffix}", name.strip_suffix(".md").unwrap_or(name))
}

fn attempts_file(name: &str) -> String {
    format!(".{name}.attempts")
}

fn occupied(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok()
}

/// `name` if neither it nor its side file is in `dir`, else `stem-2.md`, `stem-3.md`...
fn free_slot(dir: &Path, name: &str, side_suffix: &str) -> String {
    let taken = |candidate: &str| {
        occupied(&dir.join(candidate))
            || (!side_suffix.is_empty() && occupied(&dir.join(side_file(candidate, side_suffix))))
    };
    if !taken(name) {
        return name.to_string();
    }
    let (stem, ext) = match name.strip_suffix(".md") {
        Some(stem) => (stem, ".md"),
        None => (name, ""),
    };
    (2u64..).map(|n| format!("{stem}-{n}{ext}")).find(|candidate| !taken(candidate)).unwrap_or_else(|| name.to_string())
}

fn read_lease(path: &Path) -> Option<Lease> {
    let text = fs::read_to_string(path).ok()?;
    match serde_json::from_str(&text) {
        Ok(lease) => Some(lease),
        Err(e) => {
            log::warn!("{}: unreadable lease: {e}", path.display());
            None
        }
    }
}

/// rename(2) then fsync both folders, so the move survives a power cut.
fn move_entry(from: &Path, to: &Path) -> Result<(), QueueError> {
    fs::rename(from, to).map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            QueueError::Missing { path: from.to_path_buf() }
        } else {
            QueueError::Io { action: "move", path: from.to_path_buf(), source: e }
        }
    })?;
    if let Some(dir) = to.parent() {
        sync_dir(dir)?;
    }
    match from.parent() {
        Some(dir) if Some(dir) != to.parent() => sync_dir(dir),
        _ => Ok(()),
    }
}

fn sync_dir(dir: &Path) -> Result<(), QueueError> {
    crate::atomic::sync_dir(dir).map_err(io_err("fsync", dir))
}

fn remove_if_present(path: &Path) -> Result<(), QueueError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            Err(QueueError::Io { action: "remove", path: path.to_path_buf(), source: e })
        }
        _ => Ok(()),
    }
}

fn write_json_atomic<T: Serialize + ?Sized>(dir: &Path, file_name: &str, value: &T) -> Result<(), QueueError> {
    let mut text = serde_json::to_vec_pretty(value).map_err(|e| QueueError::Io {
        action: "encode",
        path: dir.join(file_name),
        source: io::Error::other(e),
    })?;
    text.push(b'\n');
    write_atomic(dir, file_name, &text)
}

fn write_atomic(dir: &Path, file_name: &str, bytes: &[u8]) -> Result<(), QueueError> {
    let target = dir.join(file_name);
    crate::atomic::write(&target, bytes).map_err(io_err("write", &target))
}

/// True for names the scan and the watcher skip (writers' temp files, our side files).
pub(crate) fn is_ignored_name(name: &OsStr) -> bool {
    name.as_encoded_bytes().first() == Some(&b'.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn side_files_and_slots() {
        assert_eq!(side_file("fix.md", LEASE_SUFFIX), "fix.lease.json");
        assert_eq!(side_file("notes.txt", ERROR_SUFFIX), "notes.txt.error.json");
        let dir = tempfile::tempdir().expect("tmp");
        assert_eq!(free_slot(dir.path(), "a.md", ERROR_SUFFIX), "a.md");
        fs::write(dir.path().join("a.md"), "x").expect("w");
        fs::write(dir.path().join("a-2.error.json"), "x").expect("w");
        assert_eq!(free_slot(dir.path(), "a.md", ERROR_SUFFIX), "a-3.md");
        assert_eq!(free_slot(dir.path(), "a.md", ""), "a-2.md");
    }
}
