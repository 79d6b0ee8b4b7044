//! Crash-safe file writes: a temp file beside the target, fsync, rename over
//! the target, fsync the folder. A reader sees the old content or the new,
//! never a torn file; a crash at any instant leaves one of the two.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Writes `bytes` to `path` atomically. The temp file's name starts with `.`
/// so folder scanners that skip dot-files never see it.
pub fn write(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_with(path, bytes, |_| Ok(()))
}

/// [`write`] for a file in a folder another user may own (setup running as
/// root over an account's folder): the new file keeps the old one's mode and
/// owner, or, when there was none, takes the owner of `owner_like`.
pub fn write_keeping_owner(path: &Path, bytes: &[u8], owner_like: &Path) -> io::Result<()> {
    write_with(path, bytes, |temp| {
        match fs::metadata(path) {
            Ok(old) => {
                fs::set_permissions(temp, old.permissions())?;
                let _ = std::os::unix::fs::chown(temp, Some(old.uid()), Some(old.gid()));
            }
            Err(_) => give_to_owner_of(temp, owner_like),
        }
        Ok(())
    })
}

/// Best effort: `path` gets the owner of `like` (matters when setup runs as root
/// for accounts owned by another user).
pub fn give_to_owner_of(path: &Path, like: &Path) {
    if let (Ok(like), Ok(own)) = (fs::metadata(like), fs::metadata(path)) {
        if (like.uid(), like.gid()) != (own.uid(), own.gid()) {
            let _ = std::os::unix::fs::chown(path, Some(like.uid()), Some(like.gid()));
        }
    }
}

/// The one way: temp file, `prepare` it (mode, owner), fsync, rename, fsync
/// the folder; the temp file is removed on any failure.
fn write_with(path: &Path, bytes: &[u8], prepare: impl FnOnce(&Path) -> io::Result<()>) -> io::Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().ok_or_else(|| io::Error::other(format!("{} has no file name", path.display())))?;
    let tmp = dir.join(format!(".{}.{}.tmp", name.to_string_lossy(), std::process::id()));
    let result = (|| {
        let mut f = OpenOptions::new().write(true).create(true).truncate(true).open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        prepare(&tmp)?;
        fs::rename(&tmp, path)?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Whether `name` is a temp file [`write`] left in another process: one
/// killed between creating it and its rename. Such a file is never renamed
/// now; the process that would have is gone, or another daemon's.
pub fn is_foreign_temp(name: &str) -> bool {
    let Some(stem) = name.strip_prefix('.').and_then(|n| n.strip_suffix(".tmp")) else { return false };
    stem.rsplit_once('.').and_then(|(_, pid)| pid.parse::<u32>().ok()).is_some_and(|pid| pid != std::process::id())
}

/// fsync a folder so a rename or a new entry in it survives a crash.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    #[test]
    fn replaces_content_and_leaves_no_temp_file() {
        let dir = std::env::temp_dir().join(format!("cf-atomic-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("state.json");
        super::write(&p, b"one").unwrap();
        super::write(&p, b"two").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "two");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn temp_files_of_other_processes_are_told_apart() {
        let own = format!(".fix.lease.json.{}.tmp", std::process::id());
        assert!(!super::is_foreign_temp(&own));
        assert!(super::is_foreign_temp(".fix.lease.json.1.tmp"));
        for name in ["fix.md", ".fix.md", ".fix.md.tmp", ".draft.x.tmp", "fix.lease.json.1.tmp"] {
            assert!(!super::is_foreign_temp(name), "{name}");
        }
    }
}
