//! The janitor role: every `janitor.interval_secs` it moves old `done/` tasks
//! to `archive/YYYY-MM/`, prunes old checkpoints, consumed hook-spool files and
//! stray temp files. It never moves or deletes a task outside `done/`: stale
//! leases in `active/` go back to `inbox/` through the dispatcher, not here.
//!
//! The work is [`sweep`], a function of an injected `now` so tests drive it
//! with a fake clock; the thread only calls it on a tick and beats meanwhile.

use crate::config::{Config, JanitorConfig, ProjectConfig};
use crate::heartbeat::Beat;
use crate::metrics::Metrics;
use crossbeam_channel::{select, tick, Receiver, Sender};
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Hook-spool files older than this were consumed long ago (the session role
/// reads them within seconds) or never will be.
pub const SPOOL_MAX_AGE: Duration = Duration::from_secs(3600);
/// A `.NAME.tmp` file not written to for this long belongs to a writer that died.
pub const TEMP_MAX_AGE: Duration = Duration::from_secs(3600);

/// Queue folders (relative to the queue root, "" being the root itself) in
/// which stray temp files are removed. Archive month folders are written only
/// by rename, so they never hold one.
const TEMP_FOLDERS: &[&str] = &["", "inbox", "active", "done", "failed", "archive"];

/// A result file bigger than this is not read for its `finished_at`.
const MAX_RESULT_BYTES: u64 = 1 << 20;

/// Checkpoint folders are searched this deep (files directly in
/// `checkpoints/` are depth 1).
const CHECKPOINT_DEPTH: usize = 3;

/// What one sweep did. Paths are where things went (archive) or what was removed.
#[derive(Debug, Default)]
pub struct SweepReport {
    /// The archived tasks, by their new `NAME.md` path (or the result file's
    /// path when only that was left in `done/`).
    pub archived: Vec<PathBuf>,
    pub checkpoints_pruned: Vec<PathBuf>,
    pub spool_removed: Vec<PathBuf>,
    pub temp_removed: Vec<PathBuf>,
    pub errors: Vec<JanitorError>,
}

impl SweepReport {
    pub fn actions(&self) -> usize {
        self.archived.len() + self.checkpoints_pruned.len() + self.spool_removed.len() + self.temp_removed.len()
    }
}

#[derive(Debug)]
pub enum JanitorError {
    List {
        dir: PathBuf,
        source: io::Error,
    },
    Move {
        from: PathBuf,
        to: PathBuf,
        source: io::Error,
    },
    Remove {
        path: PathBuf,
        source: io::Error,
    },
    /// No free name in the archive month folder for this task.
    NoArchiveName {
        task: PathBuf,
    },
}

impl fmt::Display for JanitorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JanitorError::List { dir, source } => {
                write!(f, "cannot list {}: {source}", dir.display())
            }
            JanitorError::Move { from, to, source } => {
                write!(f, "cannot move {} to {}: {source}", from.display(), to.display())
            }
            JanitorError::Remove { path, source } => {
                write!(f, "cannot remove {}: {source}", path.display())
            }
            JanitorError::NoArchiveName { task } => {
                write!(f, "cannot archive {}: every suffixed name is taken in its archive folder", task.display())
            }
        }
    }
}

impl std::error::Error for JanitorError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            JanitorError::List { source, .. }
            | JanitorError::Move { source, .. }
            | JanitorError::Remove { source, .. } => Some(source),
            JanitorError::NoArchiveName { .. } => None,
        }
    }
}

/// The label of `claude_failover_janitor_actions_total{action}` per action.
const ARCHIVE_DONE: &str = "archive_done";
const PRUNE_CHECKPOINT: &str = "prune_checkpoint";
const REMOVE_SPOOL: &str = "remove_spool";
const REMOVE_TEMP: &str = "remove_temp";

/// One pass over every project's queue and the state folder, as of `now`.
pub fn sweep(
    projects: &[ProjectConfig],
    state_dir: &Path,
    cfg: &JanitorConfig,
    now: SystemTime,
    metrics: &Metrics,
) -> SweepReport {
    let mut report = SweepReport::default();
    let archive_after = Duration::from_secs(cfg.archive_done_after_secs);
    for project in projects {
        let root = project.queue_root();
        archive_done(&root, archive_after, now, &mut report);
        for folder in TEMP_FOLDERS {
            let dir = if folder.is_empty() { root.clone() } else { root.join(folder) };
            remove_old_temps(&dir, now, &mut report);
        }
    }
    prune_checkpoints(
        &crate::state_dir::checkpoints_dir(state_dir),
        Duration::from_secs(cfg.prune_checkpoints_after_secs),
        now,
        CHECKPOINT_DEPTH,
        &mut report,
    );
    let spool = crate::state_dir::spool_dir(state_dir);
    remove_old_spool(&spool, now, &mut report);
    remove_old_temps(&spool, now, &mut report);

    for (action, n) in [
        (ARCHIVE_DONE, report.archived.len()),
        (PRUNE_CHECKPOINT, report.checkpoints_pruned.len()),
        (REMOVE_SPOOL, report.spool_removed.len()),
        (REMOVE_TEMP, report.temp_removed.len()),
    ] {
        if n > 0 {
            metrics.add("claude_failover_janitor_actions_total", &[("action", action)], n as u64);
        }
    }
    report
}

/// A folder's regular files (no symlinks, no folders) as (name, path, metadata).
/// A missing folder is empty: projects need not have every queue folder yet.
fn regular_files(dir: &Path, report: &mut SweepReport) -> Vec<(String, PathBuf, fs::Metadata)> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Vec::new(),
        Err(source) => {
            report.errors.push(JanitorError::List { dir: dir.to_path_buf(), source });
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let Ok(meta) = entry.metadata() else { continue };
        if !meta.is_file() {
            continue;
        }
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        out.push((name, entry.path(), meta));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// True when `t` lies more than `max_age` before `now` (a time in the future
/// is never old).
fn older_than(t: SystemTime, max_age: Duration, now: SystemTime) -> bool {
    now.duration_since(t).is_ok_and(|age| age > max_age)
}

fn remove(path: &Path, report: &mut SweepReport) -> bool {
    match fs::remove_file(path) {
        Ok(()) => true,
        // Someone else (the session role, a writer) got there first.
        Err(e) if e.kind() == io::ErrorKind::NotFound => false,
        Err(source) => {
            report.errors.push(JanitorError::Remove { path: path.to_path_buf(), source });
            false
        }
    }
}

#[derive(Default)]
struct DoneEntry {
    md: Option<(PathBuf, fs::Metadata)>,
    result: Option<(PathBuf, fs::Metadata)>,
}

fn archive_done(root: &Path, max_age: Duration, now: SystemTime, report: &mut SweepReport) {
    let mut tasks: std::collections::BTreeMap<String, DoneEntry> = Default::default();
    for (name, path, meta) in regular_files(&root.join("done"), report) {
        if name.starts_with('.') {
            continue;
        }
        if let Some(stem) = name.strip_suffix(".result.json") {
            tasks.entry(stem.to_string()).or_default().result = Some((path, meta));
        } else if let Some(stem) = name.strip_suffix(".md") {
            tasks.entry(stem.to_string()).or_default().md = Some((path, meta));
        }
    }
    for (stem, entry) in tasks {
        let Some(finished) = finished_at(&entry) else {
            continue;
        };
        if !older_than(finished, max_age, now) {
            continue;
        }
        let month_dir = root.join("archive").join(crate::time::year_month(finished));
        if let Err(source) = fs::create_dir_all(&month_dir) {
            report.errors.push(JanitorError::Move {
                from: root.join("done").join(format!("{stem}.md")),
                to: month_dir,
                source,
            });
            continue;
        }
        archive_task(&stem, &entry, &month_dir, report);
    }
}

/// When the task finished: `finished_at` from its result file, else the later
/// of the file's mtime and ctime. A rename into `done/` keeps the mtime the
/// writer gave it (possibly long ago) but sets the ctime, so the ctime keeps a
/// task that just arrived without its result file from looking old.
fn finished_at(entry: &DoneEntry) -> Option<SystemTime> {
    if let Some((path, meta)) = &entry.result {
        if meta.len() <= MAX_RESULT_BYTES {
            let parsed = fs::read(path)
                .ok()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                .and_then(|v| v.get("finished_at")?.as_str().and_then(crate::time::parse_rfc3339));
            if parsed.is_some() {
                return parsed;
            }
        }
    }
    let (_, meta) = entry.md.as_ref().or(entry.result.as_ref())?;
    Some(latest_change(meta))
}

fn latest_change(meta: &fs::Metadata) -> SystemTime {
    use std::os::unix::fs::MetadataExt;
    let mtime = meta.modified().unwrap_or(UNIX_EPOCH);
    let ctime = UNIX_EPOCH + Duration::new(meta.ctime().max(0) as u64, meta.ctime_nsec() as u32);
    mtime.max(ctime)
}

/// Moves the task's files under `month_dir`, under a name none of them has
/// there yet (`NAME.md`, else `NAME-1.md`, ...), `.md` first. A result file
/// left behind by an interrupted move finds its `.md` already archived and
/// joins it under the same name.
fn archive_task(stem: &str, entry: &DoneEntry, month_dir: &Path, report: &mut SweepReport) {
    let files: Vec<(&PathBuf, &str)> = [(&entry.md, ".md"), (&entry.result, ".result.json")]
        .into_iter()
        .filter_map(|(f, ext)| f.as_ref().map(|(p, _)| (p, ext)))
        .collect();
    let taken = |p: &Path| fs::symlink_metadata(p).is_ok();
    let mut chosen = None;
    for n in 0..1000 {
        let name = if n == 0 { stem.to_string() } else { format!("{stem}-{n}") };
        let targets: Vec<PathBuf> = files.iter().map(|(_, ext)| month_dir.join(format!("{name}{ext}"))).collect();
        if !targets.iter().any(|t| taken(t)) {
            chosen = Some(targets);
            break;
        }
    }
    let Some(targets) = chosen else {
        report.errors.push(JanitorError::NoArchiveName { task: files[0].0.clone() });
        return;
    };
    for ((from, _), to) in files.iter().zip(&targets) {
        if let Err(source) = fs::rename(from, to) {
            report.errors.push(JanitorError::Move { from: from.to_path_buf(), to: to.clone(), source });
            return;
        }
    }
    report.archived.push(targets[0].clone());
}

fn is_temp_name(name: &str) -> bool {
    name.len() > ".tmp".len() + 1 && name.starts_with('.') && name.ends_with(".tmp")
}

fn remove_old_temps(dir: &Path, now: SystemTime, report: &mut SweepReport) {
    for (name, path, meta) in regular_files(dir, report) {
        let mtime = meta.modified().unwrap_or(now);
        if is_temp_name(&name) && older_than(mtime, TEMP_MAX_AGE, now) && remove(&path, report) {
            report.temp_removed.push(path);
        }
    }
}

fn remove_old_spool(dir: &Path, now: SystemTime, report: &mut SweepReport) {
    for (name, path, meta) in regular_files(dir, report) {
        let mtime = meta.modified().unwrap_or(now);
        if !name.starts_with('.') && older_than(mtime, SPOOL_MAX_AGE, now) && remove(&path, report) {
            report.spool_removed.push(path);
        }
    }
}

fn prune_checkpoints(dir: &Path, max_age: Duration, now: SystemTime, depth: usize, report: &mut SweepReport) {
    if depth == 0 {
        return;
    }
    for (_, path, meta) in regular_files(dir, report) {
        let mtime = meta.modified().unwrap_or(now);
        if older_than(mtime, max_age, now) && remove(&path, report) {
            report.checkpoints_pruned.push(path);
        }
    }
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        // file_type() does not follow symlinks: a linked folder is not ours.
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            prune_checkpoints(&entry.path(), max_age, now, depth - 1, report);
        }
    }
}

/// Handle of the janitor thread; dropping it (or `join`) stops the thread.
pub struct JanitorHandle {
    config: Sender<Arc<Config>>,
    thread: JoinHandle<()>,
}

impl JanitorHandle {
    /// A reloaded configuration: new projects, ages and interval apply from
    /// the next tick.
    pub fn reconfigure(&self, config: Arc<Config>) {
        let _ = self.config.send(config);
    }

    pub fn join(self) {
        drop(self.config);
        if self.thread.join().is_err() {
            log::error!("the janitor thread panicked");
        }
    }
}

/// Starts the janitor thread ("janitor"): one sweep right away (a daemon that
/// restarts often would otherwise never sweep), then one every
/// `janitor.interval_secs`, beating when asked meanwhile.
pub fn spawn(config: Arc<Config>, metrics: Metrics, beat: Beat) -> io::Result<JanitorHandle> {
    let (tx, rx) = crossbeam_channel::unbounded();
    let janitor = Janitor { config, metrics, beat };
    let thread = std::thread::Builder::new().name("janitor".into()).spawn(move || janitor.run(rx))?;
    Ok(JanitorHandle { config: tx, thread })
}

struct Janitor {
    config: Arc<Config>,
    metrics: Metrics,
    beat: Beat,
}

impl Janitor {
    fn interval(&self) -> Duration {
        Duration::from_secs(self.config.janitor.interval_secs.max(1))
    }

    fn run(mut self, reconfigure: Receiver<Arc<Config>>) {
        let asks = self.beat.asks();
        let mut interval = self.interval();
        let mut sweep_every = tick(interval);
        self.sweep_now();
        loop {
            select! {
                recv(reconfigure) -> config => match config {
                    Ok(config) => {
                        self.config = config;
                        if self.interval() != interval {
                            interval = self.interval();
                            sweep_every = tick(interval);
                        }
                    }
                    Err(_) => return,
                },
                recv(sweep_every) -> _ => self.sweep_now(),
                recv(asks) -> _ => {},
            }
            self.beat.beat();
        }
    }

    fn sweep_now(&self) {
        let c = &self.config;
        let report = sweep(&c.projects, &c.state_dir, &c.janitor, SystemTime::now(), &self.metrics);
        for error in &report.errors {
            log::warn!("janitor: {error}");
        }
        if report.actions() > 0 {
            log::info!(
                "janitor: archived {} done task(s), pruned {} checkpoint(s), removed {} spool and {} temp file(s)",
                report.archived.len(),
                report.checkpoints_pruned.len(),
                report.spool_removed.len(),
                report.temp_removed.len()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_names_are_dot_name_dot_tmp() {
        for (name, want) in
            [(".task.md.tmp", true), (".x.tmp", true), (".tmp", false), ("task.tmp", false), (".task.md", false)]
        {
            assert_eq!(is_temp_name(name), want, "{name}");
        }
    }
}
