//! A task file's contents: the checks that turn an inbox entry into a `Task` or a
//! `Rejection`, the optional TOML front matter, and the pure ordering rules.
//! Nothing here moves files; `Queue` does that with what these functions decide.

use std::cmp::Ordering;
use std::fmt;
use std::fs::{File, Metadata};
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use serde::Deserialize;

/// A task ready to hand to a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    /// File name in `inbox/`, e.g. `2026-11-25-fix-login.md`.
    pub name: String,
    /// The text to paste: the file with its front matter removed.
    pub body: String,
    /// Higher goes first; 0 without front matter.
    pub priority: i64,
    /// When set, only the session of that name may take the task.
    pub session: Option<String>,
    /// Size of the file on disk.
    pub bytes: u64,
    /// Attempts already made (carried across requeues in `inbox/.NAME.attempts`).
    /// The next lease's `attempt` is this plus one.
    pub attempts: u32,
}

/// Why an inbox entry can never become a task. It goes to `failed/` with
/// `to_string()` as its reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    NotUtf8,
    TooLarge {
        bytes: u64,
        max: u64,
    },
    Symlink,
    /// More than one name for the file: the other may be outside the project.
    HardLink {
        links: u64,
    },
    Directory,
    /// A FIFO, socket or device node.
    NotRegularFile,
    NotMarkdown,
    FrontMatter(String),
    Unreadable(String),
    /// Nothing but white space (after any front matter).
    Empty,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejection::NotUtf8 => write!(f, "the task is not valid UTF-8 text"),
            Rejection::TooLarge { bytes, max } => {
                write!(f, "the task is {bytes} bytes, over max_task_bytes ({max})")
            }
            Rejection::Symlink => write!(f, "the task is a symbolic link (never followed)"),
            Rejection::HardLink { links } => {
                write!(f, "the task file has {links} hard links; it must have only its inbox name")
            }
            Rejection::Directory => write!(f, "a directory is not a task"),
            Rejection::NotRegularFile => write!(f, "the task is not a regular file"),
            Rejection::NotMarkdown => write!(f, "the task's name does not end in .md"),
            Rejection::FrontMatter(why) => write!(f, "bad front matter: {why}"),
            Rejection::Unreadable(why) => write!(f, "the task cannot be read: {why}"),
            Rejection::Empty => write!(f, "the task has no text to send"),
        }
    }
}

/// Why `Queue::load` gave no task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadError {
    /// The entry is no longer in `inbox/` (claimed, or its writer took it back):
    /// nothing to do.
    Gone,
    /// Bad input: pass it to `Queue::reject`.
    Rejected(Rejection),
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Gone => write!(f, "the task is no longer in the inbox"),
            LoadError::Rejected(r) => r.fmt(f),
        }
    }
}

impl From<Rejection> for LoadError {
    fn from(r: Rejection) -> LoadError {
        LoadError::Rejected(r)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FrontMatter {
    #[serde(default)]
    priority: i64,
    session: Option<String>,
}

/// O_NONBLOCK (0o4000 on x86_64, aarch64, arm and riscv Linux): should the entry
/// be swapped for a FIFO between the lstat and the open, the open must not hang.
const O_NONBLOCK: i32 = 0o4000;

/// Reads and checks `path` (an inbox entry named `name`) without following a
/// symlink at any point: lstat first, then open and compare the inode, so a
/// swap between the two is caught.
pub(crate) fn load_file(path: &Path, name: &str, max_bytes: u64, attempts: u32) -> Result<Task, LoadError> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(LoadError::Gone),
        Err(e) => return Err(Rejection::Unreadable(e.to_string()).into()),
    };
    check_kind(&meta)?;
    if !name.ends_with(".md") {
        return Err(Rejection::NotMarkdown.into());
    }
    if meta.len() > max_bytes {
        return Err(Rejection::TooLarge { bytes: meta.len(), max: max_bytes }.into());
    }
    let mut file = match File::options().read(true).custom_flags(O_NONBLOCK).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(LoadError::Gone),
        Err(e) => return Err(Rejection::Unreadable(e.to_string()).into()),
    };
    let opened = file.metadata().map_err(|e| Rejection::Unreadable(e.to_string()))?;
    if opened.ino() != meta.ino() || opened.dev() != meta.dev() {
        // Replaced between lstat and open: judge what is there now.
        let now = std::fs::symlink_metadata(path).map_err(|_| LoadError::Gone)?;
        check_kind(&now)?;
        return Err(Rejection::Unreadable("the file changed while being read".into()).into());
    }
    check_kind(&opened)?;
    let mut raw = Vec::new();
    // Saturating: `Queue::active_body` reads with no limit (u64::MAX), where a
    // plain `+ 1` panics in debug builds and wraps to 0 in release, which read
    // the task as empty and sent it a second time after a restart.
    (&mut file)
        .take(max_bytes.saturating_add(1))
        .read_to_end(&mut raw)
        .map_err(|e| Rejection::Unreadable(e.to_string()))?;
    if raw.len() as u64 > max_bytes {
        // Grown since the lstat.
        return Err(Rejection::TooLarge { bytes: raw.len() as u64, max: max_bytes }.into());
    }
    let bytes = raw.len() as u64;
    let text = String::from_utf8(raw).map_err(|_| Rejection::NotUtf8)?;
    let (front, body) = split_front_matter(&text)?;
    if body.trim().is_empty() {
        return Err(Rejection::Empty.into());
    }
    Ok(Task {
        name: name.to_string(),
        body: body.to_string(),
        priority: front.priority,
        session: front.session,
        bytes,
        attempts,
    })
}

fn check_kind(meta: &Metadata) -> Result<(), Rejection> {
    let ft = meta.file_type();
    if ft.is_symlink() {
        return Err(Rejection::Symlink);
    }
    if ft.is_dir() {
        return Err(Rejection::Directory);
    }
    if !ft.is_file() {
        return Err(Rejection::NotRegularFile);
    }
    if meta.nlink() > 1 {
        return Err(Rejection::HardLink { links: meta.nlink() });
    }
    Ok(())
}

/// Splits `+++`-fenced TOML front matter from the body. Only a `+++` line at the
/// very start opens front matter; blank lines after the closing fence are dropped
/// so the pasted text starts with the task itself.
fn split_front_matter(text: &str) -> Result<(FrontMatter, &str), Rejection> {
    let Some(rest) = strip_fence_line(text) else {
        return Ok((FrontMatter::default(), text));
    };
    let mut offset = 0;
    for line in rest.split_inclusive('\n') {
        if line.trim_end_matches(['\r', '\n']) == "+++" {
            let toml_text = &rest[..offset];
            let front: FrontMatter = toml::from_str(toml_text).map_err(|e| Rejection::FrontMatter(one_line(&e)))?;
            let body = rest[offset + line.len()..].trim_start_matches(['\r', '\n']);
            return Ok((front, body));
        }
        offset += line.len();
    }
    Err(Rejection::FrontMatter("no closing +++ line after the opening one".into()))
}

fn strip_fence_line(text: &str) -> Option<&str> {
    text.strip_prefix("+++\n").or_else(|| text.strip_prefix("+++\r\n"))
}

fn one_line(e: &toml::de::Error) -> String {
    e.message().trim().replace('\n', " ")
}

/// The dispatch order of two waiting tasks, each `(priority, name)`: higher
/// priority first, then oldest first by file name.
pub fn takes_first(a: (i64, &str), b: (i64, &str)) -> Ordering {
    b.0.cmp(&a.0).then_with(|| a.1.cmp(b.1))
}

/// Whether `session` may take a task pinned (front matter `session`) to `pin`.
pub fn may_take(pin: Option<&str>, session: &str) -> bool {
    pin.is_none_or(|p| p == session)
}

fn by_priority_then_name(a: &Task, b: &Task) -> Ordering {
    takes_first((a.priority, &a.name), (b.priority, &b.name))
}

/// Dispatch order: higher priority first, then oldest first by file name.
pub fn order(mut tasks: Vec<Task>) -> Vec<Task> {
    tasks.sort_by(by_priority_then_name);
    tasks
}

/// The first task, in dispatch order, that `session` may take: unpinned tasks
/// and tasks pinned to it. `tasks` need not be sorted.
pub fn pick<'a>(tasks: &'a [Task], session: &str) -> Option<&'a Task> {
    tasks.iter().filter(|t| may_take(t.session.as_deref(), session)).min_by(|a, b| by_priority_then_name(a, b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn front_matter_cases() {
        let (f, body) = split_front_matter("+++\npriority = 5\nsession = \"s1\"\n+++\n\nDo it\n").expect("parses");
        assert_eq!((f.priority, f.session.as_deref(), body), (5, Some("s1"), "Do it\n"));

        let (f, body) = split_front_matter("just text\n+++\n").expect("no front matter");
        assert_eq!((f.priority, body), (0, "just text\n+++\n"));

        let (f, body) = split_front_matter("+++\r\npriority = -2\r\n+++\r\nX").expect("crlf");
        assert_eq!((f.priority, body), (-2, "X"));

        let (f, body) = split_front_matter("+++\n+++\nbody").expect("empty front matter");
        assert_eq!((f.priority, body), (0, "body"));

        for bad in [
            "+++\npriority = 1\n",
            "+++\npriority = \"high\"\n+++\nx",
            "+++\ncolour = 1\n+++\nx",
            "+++\nthis is not toml\n+++\nx",
            "+++\nsession = 3\n+++\nx",
        ] {
            assert!(matches!(split_front_matter(bad), Err(Rejection::FrontMatter(_))), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn no_limit_reads_the_whole_task() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("a.md");
        std::fs::write(&path, "+++\npriority = 2\n+++\nthe body\n").expect("write");
        let task = load_file(&path, "a.md", u64::MAX, 0).expect("loads");
        assert_eq!((task.body.as_str(), task.priority), ("the body\n", 2));
    }
}
