//! `claude-failover setup`: prepares every account folder once, before the daemon
//! runs. It makes `<config_dir>/projects` a symlink to the one shared transcript
//! tree (moving what was there into it) and installs the hook and statusline
//! commands of docs/claude-code.md#hooks-and-status-line into `<config_dir>/settings.json`.
//!
//! It never deletes or overwrites a transcript: a file moves into the shared tree
//! only by a no-clobber link, an identical copy is dropped only after a byte
//! comparison, and a different file with the same name is kept beside the other
//! as `<name>.conflict-<account>`. The folder being emptied is first renamed to
//! `projects.setup-<unix>` so an interrupted run is finished by the next one.
//! `settings.json` keeps every key and hook the user had, is backed up before it
//! changes, and a second run changes nothing.

use crate::claude::mcp_servers::{self, Registration};
use crate::claude::settings::{merge_mcp_allow, merge_settings, settings_path, shell_quote, AllowEdit};
pub use crate::claude::settings::{StatusLineAction, HOOK_EVENTS};
use crate::config::{absolute, Config};
use crate::hook;
use serde_json::{Map, Value};
use std::fmt;
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// Prefix of the folder an account's old `projects/` is renamed to while it is merged.
const MERGING_PREFIX: &str = "projects.setup-";

/// What `setup` did, account by account.
#[derive(Debug, Clone)]
pub struct SetupReport {
    pub shared_projects_dir: PathBuf,
    pub created_shared_dir: bool,
    /// The hook command installed everywhere.
    pub hook_command: String,
    pub accounts: Vec<AccountReport>,
}

#[derive(Debug, Clone)]
pub struct AccountReport {
    pub account: String,
    pub config_dir: PathBuf,
    pub created_config_dir: bool,
    pub projects: ProjectsAction,
    pub merge: MergeStats,
    pub settings: SettingsChange,
    /// The MCP server in `.claude.json`, when `[mcp] register` asks for it.
    pub mcp: Option<Registration>,
}

/// What happened to `<config_dir>/projects`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProjectsAction {
    /// There was none; the symlink was made.
    Linked,
    /// A real folder was there; its content went into the shared tree and it
    /// was replaced by the symlink.
    Replaced,
    /// Already a symlink to the shared tree (or the shared tree itself).
    AlreadyLinked,
    /// Not done because of an error reported separately.
    Skipped,
}

/// Files moved from an account's old `projects/` into the shared tree.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MergeStats {
    /// Files and folders moved in under their own path.
    pub moved: usize,
    /// Files dropped because a byte-identical file was already in the shared tree.
    pub deduplicated: usize,
    /// Where files whose path was taken by a different file were put instead.
    pub kept_both: Vec<PathBuf>,
    /// Things that could not be moved (special files) and stay where they were.
    pub left_behind: Vec<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingsChange {
    pub path: PathBuf,
    /// The copy made before changing the file; None when nothing changed or it
    /// did not exist.
    pub backup: Option<PathBuf>,
    pub hooks_added: Vec<String>,
    /// Our hook entries that pointed at another binary or spool and were corrected.
    pub hooks_updated: Vec<String>,
    pub status_line: StatusLineAction,
    /// `[mcp] register`: the server's tools allowed without asking
    /// (`permissions.allow`), and those taken out (their tier no longer offered).
    pub mcp_allowed: Vec<String>,
    pub mcp_disallowed: Vec<String>,
}

/// One thing setup could not do, naming the account and path concerned.
#[derive(Debug)]
pub enum SetupError {
    Io {
        account: Option<String>,
        path: PathBuf,
        doing: &'static str,
        error: io::Error,
    },
    /// `projects` is a symlink somewhere other than the shared tree.
    ForeignSymlink {
        account: String,
        path: PathBuf,
        target: PathBuf,
        shared: PathBuf,
    },
    /// `projects` (or the config folder) exists but is not a folder.
    NotAFolder {
        account: String,
        path: PathBuf,
    },
    /// `settings.json` is not a JSON object of the expected shape; left untouched.
    BadSettings {
        account: String,
        path: PathBuf,
        why: String,
    },
}

impl fmt::Display for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SetupError::Io { account, path, doing, error } => {
                if let Some(account) = account {
                    write!(f, "account {account}: ")?;
                }
                write!(f, "{}: cannot {doing}: {error}", path.display())
            }
            SetupError::ForeignSymlink { account, path, target, shared } => write!(
                f,
                "account {account}: {} is a symlink to {}, not to the shared tree {}; \
                 move it aside and run setup again",
                path.display(),
                target.display(),
                shared.display()
            ),
            SetupError::NotAFolder { account, path } => {
                write!(f, "account {account}: {} is not a folder", path.display())
            }
            SetupError::BadSettings { account, path, why } => {
                write!(f, "account {account}: {}: {why}; left unchanged", path.display())
            }
        }
    }
}

impl std::error::Error for SetupError {}

impl fmt::Display for SetupReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let created = if self.created_shared_dir { " (created)" } else { "" };
        writeln!(f, "shared transcripts: {}{created}", self.shared_projects_dir.display())?;
        for a in &self.accounts {
            write!(f, "{}", a)?;
        }
        Ok(())
    }
}

impl fmt::Display for AccountReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let created = if self.created_config_dir { " (created)" } else { "" };
        writeln!(f, "account {}: {}{created}", self.account, self.config_dir.display())?;
        let projects = match self.projects {
            ProjectsAction::Linked => "linked to the shared tree",
            ProjectsAction::Replaced => "merged into the shared tree and linked",
            ProjectsAction::AlreadyLinked => "already linked",
            ProjectsAction::Skipped => "not changed (see errors)",
        };
        writeln!(f, "  projects/: {projects}")?;
        let m = &self.merge;
        if m.moved + m.deduplicated > 0 || !m.kept_both.is_empty() {
            writeln!(
                f,
                "  transcripts: {} moved, {} identical dropped, {} kept beside a different file",
                m.moved,
                m.deduplicated,
                m.kept_both.len()
            )?;
        }
        for p in &m.kept_both {
            writeln!(f, "    kept as {}", p.display())?;
        }
        for p in &m.left_behind {
            writeln!(f, "    left in place: {}", p.display())?;
        }
        let s = &self.settings;
        if !s.hooks_added.is_empty() {
            writeln!(f, "  hooks added: {}", s.hooks_added.join(", "))?;
        }
        if !s.hooks_updated.is_empty() {
            writeln!(f, "  hooks updated: {}", s.hooks_updated.join(", "))?;
        }
        let status = match &s.status_line {
            StatusLineAction::Installed => "installed".to_string(),
            StatusLineAction::Wrapped { original } => format!("wrapping {original:?}"),
            StatusLineAction::Updated => "updated".into(),
            StatusLineAction::Unchanged => "unchanged".into(),
            StatusLineAction::Skipped => "not changed (see errors)".into(),
        };
        writeln!(f, "  statusLine: {status}")?;
        if let Some(mcp) = self.mcp {
            let what = match mcp {
                Registration::Added => "registered",
                Registration::Updated => "registration updated",
                Registration::Unchanged => "already registered",
            };
            writeln!(f, "  MCP server {}: {what} in .claude.json", crate::mcp::SERVER_NAME)?;
        }
        if !s.mcp_allowed.is_empty() {
            writeln!(f, "  MCP tools allowed without asking: {}", s.mcp_allowed.join(", "))?;
        }
        if !s.mcp_disallowed.is_empty() {
            writeln!(f, "  MCP tools no longer allowed (tier not offered): {}", s.mcp_disallowed.join(", "))?;
        }
        if let Some(backup) = &s.backup {
            writeln!(f, "  settings.json backed up to {}", backup.display())?;
        }
        Ok(())
    }
}

/// Prepares every account of `config`. `exe` is the claude-failover binary the
/// hooks will run (normally `std::env::current_exe()`).
pub fn run(config: &Config, exe: &Path) -> Result<SetupReport, Vec<SetupError>> {
    let mut errors = Vec::new();
    let shared = absolute(&config.claude.shared_projects_dir);
    let spool = absolute(&hook::spool_dir(&config.state_dir));
    let hook_command = format!(
        "{} hook --spool {}",
        shell_quote(&absolute(exe).to_string_lossy()),
        shell_quote(&spool.to_string_lossy())
    );

    let created_shared_dir = !shared.exists();
    let shared_ready = match fs::create_dir_all(&shared) {
        Ok(()) => {
            if created_shared_dir {
                // Under sudo, the tree must still be writable by the accounts' owner.
                if let Some(first) = config.accounts.first() {
                    crate::atomic::give_to_owner_of(&shared, &first.config_dir);
                }
            }
            true
        }
        Err(error) => {
            errors.push(SetupError::Io {
                account: None,
                path: shared.clone(),
                doing: "create the shared transcript folder",
                error,
            });
            false
        }
    };
    if let Err(error) = fs::create_dir_all(&spool) {
        errors.push(SetupError::Io {
            account: None,
            path: spool.clone(),
            doing: "create the hook spool folder",
            error,
        });
    }

    let mut accounts = Vec::new();
    for account in &config.accounts {
        let name = account.name.as_str();
        let config_dir = absolute(&account.config_dir);
        let mut report = AccountReport {
            account: name.to_string(),
            config_dir: config_dir.clone(),
            created_config_dir: false,
            mcp: None,
            projects: ProjectsAction::Skipped,
            merge: MergeStats::default(),
            settings: SettingsChange {
                path: settings_path(&config_dir),
                backup: None,
                hooks_added: Vec::new(),
                hooks_updated: Vec::new(),
                status_line: StatusLineAction::Skipped,
                mcp_allowed: Vec::new(),
                mcp_disallowed: Vec::new(),
            },
        };
        match fs::symlink_metadata(&config_dir) {
            Ok(_) if config_dir.is_dir() => {}
            Ok(_) => {
                errors.push(SetupError::NotAFolder { account: name.to_string(), path: config_dir.clone() });
                accounts.push(report);
                continue;
            }
            Err(_) => match fs::create_dir_all(&config_dir) {
                Ok(()) => report.created_config_dir = true,
                Err(error) => {
                    errors.push(SetupError::Io {
                        account: Some(name.to_string()),
                        path: config_dir.clone(),
                        doing: "create the account folder",
                        error,
                    });
                    accounts.push(report);
                    continue;
                }
            },
        }
        if shared_ready {
            match link_projects(name, &config_dir, &shared, &mut report.merge, &mut errors) {
                Ok(action) => report.projects = action,
                Err(e) => errors.push(e),
            }
        }
        let mcp_tools = config.mcp.register.then(|| crate::mcp::claude_names(config));
        match install_hooks(name, &config_dir, &hook_command, mcp_tools.as_deref()) {
            Ok(change) => report.settings = change,
            Err(e) => errors.push(e),
        }
        if config.mcp.register {
            match register_mcp(name, &config_dir, exe, &config.source) {
                Ok(done) => report.mcp = Some(done),
                Err(e) => errors.push(e),
            }
        }
        log::info!("setup: {}", report.to_string().trim_end());
        accounts.push(report);
    }

    if errors.is_empty() {
        Ok(SetupReport { shared_projects_dir: shared, created_shared_dir, hook_command, accounts })
    } else {
        Err(errors)
    }
}

/// Makes `<config_dir>/projects` the shared tree, then merges any old folder
/// left from this run or an interrupted earlier one.
fn link_projects(
    account: &str,
    config_dir: &Path,
    shared: &Path,
    merge: &mut MergeStats,
    errors: &mut Vec<SetupError>,
) -> Result<ProjectsAction, SetupError> {
    let link = crate::claude::projects_dir(config_dir);
    let io = |path: &Path, doing: &'static str| {
        let account = account.to_string();
        let path = path.to_path_buf();
        move |error| SetupError::Io { account: Some(account), path, doing, error }
    };
    let shared_real = fs::canonicalize(shared).map_err(io(shared, "resolve"))?;

    let action = match fs::symlink_metadata(&link) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            make_link(shared, &link, config_dir).map_err(io(&link, "create the symlink"))?;
            ProjectsAction::Linked
        }
        Err(e) => return Err(io(&link, "inspect")(e)),
        Ok(meta) if meta.file_type().is_symlink() => {
            let target = fs::read_link(&link).map_err(io(&link, "read the symlink"))?;
            if fs::canonicalize(&link).ok().as_deref() != Some(shared_real.as_path()) {
                return Err(SetupError::ForeignSymlink {
                    account: account.to_string(),
                    path: link,
                    target,
                    shared: shared.to_path_buf(),
                });
            }
            ProjectsAction::AlreadyLinked
        }
        Ok(meta) if meta.is_dir() => {
            if fs::canonicalize(&link).ok().as_deref() == Some(shared_real.as_path()) {
                // The shared tree was configured inside this account: it is already shared.
                ProjectsAction::AlreadyLinked
            } else {
                // Rename first and link at once, so a Claude Code that writes
                // meanwhile writes into the shared tree; the merge comes after.
                let aside = free_name(config_dir, &format!("{MERGING_PREFIX}{}", unix_secs()));
                fs::rename(&link, &aside).map_err(io(&link, "move the old folder aside"))?;
                if let Err(error) = make_link(shared, &link, config_dir) {
                    let _ = fs::rename(&aside, &link);
                    return Err(io(&link, "create the symlink")(error));
                }
                ProjectsAction::Replaced
            }
        }
        Ok(_) => return Err(SetupError::NotAFolder { account: account.to_string(), path: link }),
    };

    let entries = fs::read_dir(config_dir).map_err(io(config_dir, "list"))?;
    let mut old_folders: Vec<PathBuf> = entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(MERGING_PREFIX))
        .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
        .map(|e| e.path())
        .collect();
    old_folders.sort();
    for old in old_folders {
        let mut merger = Merger { account, stats: merge, errors };
        merger.merge_dir(&old, shared);
        if !remove_empty_tree(&old) {
            merger.stats.left_behind.push(old);
        }
    }
    Ok(action)
}

fn make_link(shared: &Path, link: &Path, config_dir: &Path) -> io::Result<()> {
    std::os::unix::fs::symlink(shared, link)?;
    if let Ok(meta) = fs::metadata(config_dir) {
        let _ = std::os::unix::fs::lchown(link, Some(meta.uid()), Some(meta.gid()));
    }
    Ok(())
}

struct Merger<'a> {
    account: &'a str,
    stats: &'a mut MergeStats,
    errors: &'a mut Vec<SetupError>,
}

impl Merger<'_> {
    fn fail(&mut self, path: &Path, doing: &'static str, error: io::Error) {
        self.errors.push(SetupError::Io {
            account: Some(self.account.to_string()),
            path: path.to_path_buf(),
            doing,
            error,
        });
    }

    /// Moves everything under `src` to the same relative place under `dst`.
    fn merge_dir(&mut self, src: &Path, dst: &Path) {
        let entries = match fs::read_dir(src) {
            Ok(entries) => entries,
            Err(e) => return self.fail(src, "list", e),
        };
        let mut entries: Vec<_> = entries.flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let from = entry.path();
            let to = dst.join(entry.file_name());
            let Ok(kind) = entry.file_type() else {
                self.stats.left_behind.push(from);
                continue;
            };
            if kind.is_dir() {
                self.merge_subdir(&from, &to);
            } else if kind.is_file() || kind.is_symlink() {
                self.merge_file(&from, &to);
            } else {
                self.stats.left_behind.push(from);
            }
        }
    }

    fn merge_subdir(&mut self, from: &Path, to: &Path) {
        match fs::symlink_metadata(to) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // A whole project folder new to the shared tree moves in one rename.
                if fs::rename(from, to).is_ok() {
                    self.stats.moved += 1;
                    return;
                }
                if let Err(e) = fs::create_dir(to) {
                    return self.fail(to, "create folder", e);
                }
                self.merge_dir(from, to);
            }
            Ok(meta) if meta.is_dir() => self.merge_dir(from, to),
            Ok(_) => {
                // A file holds the folder's name: keep the folder beside it
                // (or in the one a previous run made).
                let mut n = 1;
                loop {
                    let aside = numbered_conflict(to, self.account, n);
                    match fs::symlink_metadata(&aside) {
                        Ok(meta) if meta.is_dir() => return self.merge_dir(from, &aside),
                        Ok(_) => n += 1,
                        Err(_) => {
                            if let Err(e) = fs::create_dir(&aside) {
                                return self.fail(&aside, "create folder", e);
                            }
                            self.stats.kept_both.push(aside.clone());
                            return self.merge_dir(from, &aside);
                        }
                    }
                }
            }
            Err(e) => self.fail(to, "inspect", e),
        }
    }

    /// Tries `to`, then `to.conflict-<account>`, `-2`...: the first free
    /// name takes the file, the first identical file there makes it a duplicate.
    fn merge_file(&mut self, from: &Path, to: &Path) {
        let mut n = 0;
        loop {
            let target = if n == 0 { to.to_path_buf() } else { numbered_conflict(to, self.account, n) };
            match move_no_clobber(from, &target) {
                Ok(()) if n == 0 => self.stats.moved += 1,
                Ok(()) => self.stats.kept_both.push(target),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => match same_content(from, &target) {
                    Ok(true) => match fs::remove_file(from) {
                        Ok(()) => self.stats.deduplicated += 1,
                        Err(e) => self.fail(from, "remove a duplicate", e),
                    },
                    Ok(false) => {
                        n += 1;
                        continue;
                    }
                    Err(e) => self.fail(&target, "compare", e),
                },
                Err(e) => self.fail(from, "move into the shared tree", e),
            }
            return;
        }
    }
}

/// `<name>.conflict-<account>` for n = 1, then `...-2`, `-3`...
fn numbered_conflict(to: &Path, account: &str, n: u32) -> PathBuf {
    let mut name = to.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".conflict-{account}"));
    if n > 1 {
        name.push(format!("-{n}"));
    }
    to.with_file_name(name)
}

/// Moves a file or symlink to `to` unless something is there (AlreadyExists).
/// A hard link cannot replace an existing file, unlike rename; across
/// filesystems the file is copied to a temp name, synced, and linked in.
fn move_no_clobber(from: &Path, to: &Path) -> io::Result<()> {
    match fs::hard_link(from, to) {
        Ok(()) => return fs::remove_file(from),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Err(e),
        Err(e) if e.raw_os_error() != Some(18) => return Err(e), // 18: EXDEV
        Err(_) => {}
    }
    let meta = fs::symlink_metadata(from)?;
    let temp = to.with_file_name(format!(
        ".{}.setup-tmp-{}",
        to.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ));
    let _ = fs::remove_file(&temp);
    if meta.file_type().is_symlink() {
        std::os::unix::fs::symlink(fs::read_link(from)?, &temp)?;
    } else {
        fs::copy(from, &temp)?;
        fs::File::open(&temp)?.sync_all()?;
    }
    let linked = fs::hard_link(&temp, to);
    let _ = fs::remove_file(&temp);
    linked?;
    fs::remove_file(from)
}

fn same_content(a: &Path, b: &Path) -> io::Result<bool> {
    let (ma, mb) = (fs::symlink_metadata(a)?, fs::symlink_metadata(b)?);
    if ma.file_type().is_symlink() || mb.file_type().is_symlink() {
        return Ok(ma.file_type().is_symlink()
            && mb.file_type().is_symlink()
            && fs::read_link(a)? == fs::read_link(b)?);
    }
    if !ma.is_file() || !mb.is_file() || ma.len() != mb.len() {
        return Ok(false);
    }
    let (mut fa, mut fb) = (fs::File::open(a)?, fs::File::open(b)?);
    let (mut ba, mut bb) = (vec![0u8; 64 * 1024], vec![0u8; 64 * 1024]);
    loop {
        let n = read_full(&mut fa, &mut ba)?;
        let m = read_full(&mut fb, &mut bb)?;
        if n != m || ba[..n] != bb[..m] {
            return Ok(false);
        }
        if n == 0 {
            return Ok(true);
        }
    }
}

fn read_full(file: &mut fs::File, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Removes `dir` and its subfolders if they hold no files; never removes a file.
/// Returns whether `dir` is gone.
fn remove_empty_tree(dir: &Path) -> bool {
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                remove_empty_tree(&entry.path());
            }
        }
    }
    fs::remove_dir(dir).is_ok()
}

/// Adds or corrects our hook entries and statusLine in `<config_dir>/settings.json`.
fn install_hooks(
    account: &str,
    config_dir: &Path,
    hook_command: &str,
    mcp_tools: Option<&[String]>,
) -> Result<SettingsChange, SetupError> {
    let path = settings_path(config_dir);
    let bad = |why: String| SetupError::BadSettings { account: account.to_string(), path: path.clone(), why };
    let io = |doing: &'static str, p: &Path| {
        let account = account.to_string();
        let p = p.to_path_buf();
        move |error| SetupError::Io { account: Some(account), path: p, doing, error }
    };

    let old_text = match fs::read_to_string(&path) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(io("read", &path)(e)),
    };
    let old: Value = match old_text.as_deref().map(str::trim) {
        None | Some("") => Value::Object(Map::new()),
        Some(text) => serde_json::from_str(text).map_err(|e| bad(format!("not valid JSON: {e}")))?,
    };
    let mut settings = old.clone();
    let edit = merge_settings(&mut settings, hook_command).map_err(bad)?;
    let allowed = match mcp_tools {
        Some(tools) => merge_mcp_allow(&mut settings, crate::mcp::SERVER_NAME, tools).map_err(bad)?,
        None => AllowEdit::default(),
    };

    let mut change = SettingsChange {
        path: path.clone(),
        backup: None,
        hooks_added: edit.hooks_added,
        hooks_updated: edit.hooks_updated,
        status_line: edit.status_line,
        mcp_allowed: allowed.added,
        mcp_disallowed: allowed.removed,
    };
    if settings == old && old_text.is_some() {
        return Ok(change);
    }
    if old_text.is_some() {
        let backup = free_name(config_dir, &format!("settings.json.bak-{}", unix_secs()));
        fs::copy(&path, &backup).map_err(io("back up", &path))?;
        change.backup = Some(backup);
    }
    let mut text = serde_json::to_string_pretty(&settings).map_err(|e| bad(e.to_string()))?;
    text.push('\n');
    crate::atomic::write_keeping_owner(&path, text.as_bytes(), config_dir).map_err(io("write", &path))?;
    Ok(change)
}

/// Registers `claude-failover mcp --config <this config>` as a user-scope
/// MCP server of the account (docs/mcp.md#registering).
fn register_mcp(account: &str, config_dir: &Path, exe: &Path, config: &Path) -> Result<Registration, SetupError> {
    let path = mcp_servers::user_config_path(config_dir);
    let bad = |why: String| SetupError::BadSettings { account: account.to_string(), path: path.clone(), why };
    let io = |doing: &'static str| {
        let (account, path) = (account.to_string(), path.clone());
        move |error| SetupError::Io { account: Some(account), path, doing, error }
    };
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(io("read")(e)),
    };
    let mut state: Value = match text.trim() {
        "" => Value::Object(Map::new()),
        text => serde_json::from_str(text).map_err(|e| bad(format!("not valid JSON: {e}")))?,
    };
    let args = vec!["mcp".to_string(), "--config".into(), absolute(config).to_string_lossy().into_owned()];
    let done = mcp_servers::register(&mut state, crate::mcp::SERVER_NAME, &absolute(exe).to_string_lossy(), &args)
        .map_err(bad)?;
    if done != Registration::Unchanged {
        let text = serde_json::to_string_pretty(&state).map_err(|e| bad(e.to_string()))?;
        crate::atomic::write_keeping_owner(&path, text.as_bytes(), config_dir).map_err(io("write"))?;
    }
    Ok(done)
}

/// `dir/base`, or `dir/base-2`, `-3`... whichever does not exist yet.
fn free_name(dir: &Path, base: &str) -> PathBuf {
    let mut candidate = dir.join(base);
    let mut n = 2;
    while fs::symlink_metadata(&candidate).is_ok() {
        candidate = dir.join(format!("{base}-{n}"));
        n += 1;
    }
    candidate
}

fn unix_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflict_names_count_up() {
        let to = Path::new("/s/p/a.jsonl");
        assert_eq!(numbered_conflict(to, "beta", 1), PathBuf::from("/s/p/a.jsonl.conflict-beta"));
        assert_eq!(numbered_conflict(to, "beta", 2), PathBuf::from("/s/p/a.jsonl.conflict-beta-2"));
    }
}
