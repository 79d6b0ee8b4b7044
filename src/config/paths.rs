//! Paths in the config: relative ones are anchored at the file's folder, and
//! folders are compared lexically (the daemon may check a config before the
//! folders exist). Also the program's one way to make a path absolute.

use super::Config;
use std::path::{Component, Path, PathBuf};

impl Config {
    pub(super) fn resolve_paths(&mut self, base: &Path) {
        self.state_dir = resolve(base, &self.state_dir);
        self.claude.shared_projects_dir = resolve(base, &self.claude.shared_projects_dir);
        // A bare name is looked up in PATH; only something path-like is a path.
        if self.claude.binary.contains('/') {
            self.claude.binary = resolve(base, Path::new(&self.claude.binary)).to_string_lossy().into_owned();
        }
        if !self.http.token_file.is_empty() {
            self.http.token_file = resolve(base, Path::new(&self.http.token_file)).to_string_lossy().into_owned();
        }
        if !self.mcp.token_file.is_empty() {
            self.mcp.token_file = resolve(base, Path::new(&self.mcp.token_file)).to_string_lossy().into_owned();
        }
        if let Some(t) = &mut self.notify.telegram {
            t.bot_token_file = resolve(base, &t.bot_token_file);
        }
        if let Some(f) = &mut self.fleet {
            for file in [&mut f.password_file, &mut f.ca_file, &mut f.cert_file, &mut f.key_file] {
                if !file.is_empty() {
                    *file = resolve(base, Path::new(file.as_str())).to_string_lossy().into_owned();
                }
            }
        }
        for a in &mut self.accounts {
            a.config_dir = resolve(base, &a.config_dir);
            if !a.api_key_file.is_empty() {
                a.api_key_file = resolve(base, Path::new(&a.api_key_file)).to_string_lossy().into_owned();
            }
        }
        for p in &mut self.projects {
            p.path = resolve(base, &p.path);
        }
    }
}

/// The file as the operator named it, made absolute. Symlinks are not
/// followed: a linked /etc/claude-failover/config.toml anchors relative paths
/// in /etc/claude-failover, where the operator sees it.
pub(crate) fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).map(|p| p.components().collect()).unwrap_or_else(|_| path.to_path_buf())
}

fn resolve(base: &Path, p: &Path) -> PathBuf {
    if p.as_os_str().is_empty() || p.is_absolute() {
        return p.to_path_buf();
    }
    // Collecting components drops "./" and interior "." without touching "..".
    base.join(p).components().collect()
}

/// Lexical: "a/./b/../c" is "a/c". Used only to compare configured folders.
pub(super) fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

pub(super) fn same_path(a: &Path, b: &Path) -> bool {
    normalize(a) == normalize(b)
}
