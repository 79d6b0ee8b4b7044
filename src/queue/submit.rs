//! Tasks arriving through the control plane (`POST /projects/{p}/tasks`,
//! docs/http.md) and the lookup of one task by name. A submitted task is
//! written into `inbox/` exactly as a person's file would be: a dot-named temp
//! file, fsynced, checked with the very checks the dispatcher makes
//! (`task::load_file`), then renamed in. A name already in the queue is
//! refused, never overwritten or renamed: the caller chose it and will look
//! the task up by it.

use super::task::{self, LoadError, Rejection};
use super::{
    is_plain_name, side_file, sync_dir, ErrorRecord, Lease, Queue, QueueError, TaskResult, ACTIVE, ARCHIVE, DONE,
    ERROR_SUFFIX, FAILED, INBOX, LEASE_SUFFIX, RESULT_SUFFIX,
};
use serde::Serialize;
use std::fmt;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The folders a task name is looked for in, in the order a task passes them.
const FOLDERS: [&str; 4] = [INBOX, ACTIVE, DONE, FAILED];

/// A task in `failed/` and why it failed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FailedTask {
    pub task: String,
    /// `reason`, `attempts`, `at` of its side file.
    #[serde(flatten)]
    pub error: Option<ErrorRecord>,
}

/// Why a submitted task was not put in the inbox.
#[derive(Debug)]
pub enum SubmitError {
    /// Not a usable task file name.
    BadName(String),
    /// The queue already holds a task of that name (in `folder`).
    Exists {
        name: String,
        folder: String,
    },
    /// The text fails the inbox's own checks (docs/queue.md#failure-reasons).
    Rejected(Rejection),
    Io(QueueError),
}

impl fmt::Display for SubmitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SubmitError::BadName(why) => f.write_str(why),
            SubmitError::Exists { name, folder } => {
                write!(f, "a task named {name} is already in the queue ({folder}/): choose another name")
            }
            SubmitError::Rejected(r) => write!(f, "task rejected: {r}"),
            SubmitError::Io(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for SubmitError {}

/// Where a task is now, with its side file.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TaskWhere {
    pub project: String,
    pub task: String,
    /// `inbox`, `active`, `done`, `failed`, or `archive/YYYY-MM`.
    pub folder: String,
    /// Deliveries made so far (a task waiting in `inbox/` after a requeue).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease: Option<Lease>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<TaskResult>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorRecord>,
}

/// One submit at a time per process: the name check and the rename must not
/// interleave with another submit of the same name.
static SUBMITTING: parking_lot::Mutex<()> = parking_lot::Mutex::new(());

impl Queue {
    /// Writes `text` as `inbox/NAME` (NAME made from the text when `None`).
    /// `known_session` says whether a `session = "X"` pin names a session of
    /// this project. Returns the name written.
    pub fn submit(
        &self,
        name: Option<&str>,
        text: &str,
        max_bytes: u64,
        now: std::time::SystemTime,
        known_session: impl Fn(&str) -> bool,
    ) -> Result<String, SubmitError> {
        if let Some(name) = name {
            check_name(name)?;
        }
        if text.len() as u64 > max_bytes {
            return Err(SubmitError::Rejected(Rejection::TooLarge { bytes: text.len() as u64, max: max_bytes }));
        }
        let inbox = self.dir(INBOX);
        let temp = inbox.join(temp_name());
        let written = write_synced(&temp, text.as_bytes());
        if let Err(source) = written {
            let _ = fs::remove_file(&temp);
            return Err(SubmitError::Io(QueueError::Io { action: "write", path: temp, source }));
        }
        let result = self.submit_checked(&temp, name, max_bytes, now, known_session);
        if result.is_err() {
            let _ = fs::remove_file(&temp);
        }
        result
    }

    fn submit_checked(
        &self,
        temp: &Path,
        name: Option<&str>,
        max_bytes: u64,
        now: std::time::SystemTime,
        known_session: impl Fn(&str) -> bool,
    ) -> Result<String, SubmitError> {
        // Checked under the name it will have; only the name's ending matters.
        let task = match task::load_file(temp, name.unwrap_or("task.md"), max_bytes, 0) {
            Ok(task) => task,
            Err(LoadError::Rejected(r)) => return Err(SubmitError::Rejected(r)),
            Err(LoadError::Gone) => {
                let why = std::io::Error::other("the temp file vanished");
                return Err(SubmitError::Io(QueueError::Io { action: "read", path: temp.into(), source: why }));
            }
        };
        if let Some(pin) = task.session.as_deref().filter(|pin| !known_session(pin)) {
            return Err(SubmitError::Rejected(Rejection::FrontMatter(format!(
                "session = \"{pin}\" names no session of project {}",
                self.project
            ))));
        }
        let _one_at_a_time = SUBMITTING.lock();
        let name = match name {
            Some(name) => {
                if let Some(folder) = self.holder(name) {
                    return Err(SubmitError::Exists { name: name.to_string(), folder });
                }
                name.to_string()
            }
            None => {
                let base = generated_name(now, &task.body);
                let stem = base.trim_end_matches(".md").to_string();
                std::iter::once(base)
                    .chain((2u32..).map(|n| format!("{stem}-{n}.md")))
                    .find(|candidate| self.holder(candidate).is_none())
                    .unwrap_or_default()
            }
        };
        let inbox = self.dir(INBOX);
        let dest = inbox.join(&name);
        fs::rename(temp, &dest)
            .map_err(|source| SubmitError::Io(QueueError::Io { action: "rename", path: dest, source }))?;
        sync_dir(&inbox).map_err(SubmitError::Io)?;
        Ok(name)
    }

    /// The folder that holds a task named `name` (or its side file), if any.
    fn holder(&self, name: &str) -> Option<String> {
        FOLDERS.into_iter().find(|folder| self.dir(folder).join(name).symlink_metadata().is_ok()).map(String::from)
    }

    /// The tasks in `failed/` with their error records (`None` while a side
    /// file is missing or unreadable), newest failure first, at most `limit`.
    pub fn failed_tasks(&self, limit: usize) -> Result<Vec<FailedTask>, QueueError> {
        let dir = self.dir(FAILED);
        let mut tasks = Vec::new();
        for entry in
            fs::read_dir(&dir).map_err(|source| QueueError::Io { action: "read", path: dir.clone(), source })?
        {
            let entry = entry.map_err(|source| QueueError::Io { action: "read", path: dir.clone(), source })?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || name.ends_with(ERROR_SUFFIX) {
                continue;
            }
            let error: Option<ErrorRecord> = read_side(&dir.join(side_file(&name, ERROR_SUFFIX)));
            tasks.push(FailedTask { task: name, error });
        }
        // RFC 3339 UTC times sort as text; tasks without a record go last.
        let at = |t: &FailedTask| t.error.as_ref().map(|e| e.at.clone());
        tasks.sort_by(|a, b| at(b).cmp(&at(a)).then_with(|| a.task.cmp(&b.task)));
        tasks.truncate(limit);
        Ok(tasks)
    }

    /// Where the task `name` is: inbox, active, done, failed, or a month of
    /// the archive (newest first); `None` when nowhere.
    pub fn find(&self, name: &str) -> Result<Option<TaskWhere>, QueueError> {
        if !is_plain_name(name) {
            return Ok(None);
        }
        let mut found = TaskWhere {
            project: self.project.clone(),
            task: name.to_string(),
            folder: String::new(),
            attempts: None,
            lease: None,
            result: None,
            error: None,
        };
        if let Some(folder) = self.holder(name) {
            match folder.as_str() {
                INBOX => found.attempts = Some(self.inbox_attempts(name)),
                ACTIVE => found.lease = read_side(&self.dir(ACTIVE).join(side_file(name, LEASE_SUFFIX))),
                DONE => found.result = read_side(&self.dir(DONE).join(side_file(name, RESULT_SUFFIX))),
                _ => found.error = read_side(&self.dir(FAILED).join(side_file(name, ERROR_SUFFIX))),
            }
            found.folder = folder;
            return Ok(Some(found));
        }
        let archive = self.dir(ARCHIVE);
        let mut months: Vec<PathBuf> = match fs::read_dir(&archive) {
            Ok(entries) => entries.filter_map(|e| e.ok()).map(|e| e.path()).collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(source) => return Err(QueueError::Io { action: "read", path: archive, source }),
        };
        months.sort();
        for month in months.iter().rev() {
            if month.join(name).symlink_metadata().is_ok() {
                found.result = read_side(&month.join(side_file(name, RESULT_SUFFIX)));
                let month = month.file_name().map(|m| m.to_string_lossy().into_owned()).unwrap_or_default();
                found.folder = format!("{ARCHIVE}/{month}");
                return Ok(Some(found));
            }
        }
        Ok(None)
    }
}

/// A side file, if it is there and parses (a task caught between two
/// writes may briefly have none).
fn read_side<T: serde::de::DeserializeOwned>(path: &Path) -> Option<T> {
    serde_json::from_str(&fs::read_to_string(path).ok()?).ok()
}

fn check_name(name: &str) -> Result<(), SubmitError> {
    let bad = |why: String| Err(SubmitError::BadName(why));
    if !is_plain_name(name) {
        return bad(format!("{name:?} is not a task file name: no '/', not starting with '.'"));
    }
    if !name.ends_with(".md") || name == ".md" {
        return bad(format!("{name:?} does not end in .md"));
    }
    if name.len() > 200 {
        return bad(format!("{name:?} is longer than 200 bytes"));
    }
    if name.chars().any(char::is_control) {
        return bad(format!("{name:?} holds a control character"));
    }
    Ok(())
}

fn temp_name() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(".submit-{}-{}.tmp", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = fs::OpenOptions::new().write(true).create_new(true).open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// `2026-11-25T16-00-00Z-fix-the-login.md`: the time first, so that names
/// sort oldest first as the queue's order wants, then words of the first line.
fn generated_name(now: std::time::SystemTime, body: &str) -> String {
    let stamp = crate::time::rfc3339(now).replace(':', "-");
    let first = body.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("task");
    let mut slug = String::new();
    for c in first.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() {
            slug.push(c);
        } else if !slug.ends_with('-') && !slug.is_empty() {
            slug.push('-');
        }
        if slug.len() >= 40 {
            break;
        }
    }
    let slug = slug.trim_end_matches('-');
    if slug.is_empty() {
        format!("{stamp}-task.md")
    } else {
        format!("{stamp}-{slug}.md")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn queue() -> (tempfile::TempDir, Queue) {
        let dir = tempfile::tempdir().expect("tmp");
        let q = Queue::open("p", dir.path().join("q")).expect("open");
        (dir, q)
    }

    #[test]
    fn a_submitted_task_lands_in_the_inbox_under_its_name() {
        let (_dir, q) = queue();
        let now = UNIX_EPOCH + Duration::from_secs(1_764_086_400);
        let name = q.submit(Some("fix.md"), "Fix it\n", 100, now, |_| true).expect("submit");
        assert_eq!(name, "fix.md");
        assert_eq!(fs::read_to_string(q.inbox_dir().join("fix.md")).unwrap(), "Fix it\n");
        let found = q.find("fix.md").unwrap().expect("found");
        assert_eq!((found.folder.as_str(), found.attempts), ("inbox", Some(0)));
        // No temp file is left behind, whatever happened.
        let again = q.submit(Some("fix.md"), "Other\n", 100, now, |_| true);
        assert!(matches!(again, Err(SubmitError::Exists { ref folder, .. }) if folder == "inbox"), "{again:?}");
        for bad in ["", "+++\npriority = \"x\"\n+++\nx", "   \n"] {
            assert!(matches!(q.submit(None, bad, 100, now, |_| true), Err(SubmitError::Rejected(_))), "{bad:?}");
        }
        let pinned = q.submit(None, "+++\nsession = \"nope\"\n+++\nx", 100, now, |_| false);
        assert!(pinned.unwrap_err().to_string().contains("names no session of project p"));
        assert!(matches!(q.submit(None, &"x".repeat(101), 100, now, |_| true), Err(SubmitError::Rejected(_))));
        let names: Vec<String> =
            fs::read_dir(q.inbox_dir()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        assert_eq!(names, ["fix.md"]);
    }

    #[test]
    fn generated_names_sort_by_time_and_never_collide() {
        let (_dir, q) = queue();
        let now = UNIX_EPOCH + Duration::from_secs(1_764_086_400);
        let a = q.submit(None, "+++\npriority = 1\n+++\n\n  Fix the *login* loop!\nmore", 1000, now, |_| true).unwrap();
        assert_eq!(a, "2025-11-25T16-00-00Z-fix-the-login-loop.md");
        let b = q.submit(None, "Fix the login loop", 1000, now, |_| true).unwrap();
        assert_eq!(b, "2025-11-25T16-00-00Z-fix-the-login-loop-2.md");
        for bad in ["a/b.md", ".x.md", "x.txt", ".md", "a\u{7}.md"] {
            assert!(matches!(q.submit(Some(bad), "x", 100, now, |_| true), Err(SubmitError::BadName(_))), "{bad:?}");
        }
    }

    #[test]
    fn find_reads_the_side_file_of_each_folder() {
        let (_dir, q) = queue();
        assert_eq!(q.find("none.md").unwrap(), None);
        assert_eq!(q.find("../x.md").unwrap(), None);
        fs::write(q.dir(FAILED).join("bad.md"), "x").unwrap();
        fs::write(q.dir(FAILED).join("bad.error.json"), r#"{"reason":"r","attempts":0,"at":"t"}"#).unwrap();
        let found = q.find("bad.md").unwrap().unwrap();
        assert_eq!((found.folder.as_str(), found.error.unwrap().reason.as_str()), ("failed", "r"));
        fs::write(q.dir(FAILED).join("newer.md"), "x").unwrap();
        fs::write(q.dir(FAILED).join("newer.error.json"), r#"{"reason":"n","attempts":2,"at":"u"}"#).unwrap();
        fs::write(q.dir(FAILED).join("bare.md"), "x").unwrap();
        let failed = q.failed_tasks(10).unwrap();
        let listed: Vec<(&str, Option<&str>)> =
            failed.iter().map(|f| (f.task.as_str(), f.error.as_ref().map(|e| e.reason.as_str()))).collect();
        assert_eq!(listed, vec![("newer.md", Some("n")), ("bad.md", Some("r")), ("bare.md", None)]);
        assert_eq!(q.failed_tasks(1).unwrap().len(), 1);
        let month = q.dir(ARCHIVE).join("2026-01");
        fs::create_dir_all(&month).unwrap();
        fs::write(month.join("old.md"), "x").unwrap();
        assert_eq!(q.find("old.md").unwrap().unwrap().folder, "archive/2026-01");
    }
}
