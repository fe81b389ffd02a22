//! Confined file access. Paths inside the workspace are opened by the kernel relative to the workspace directory
//! with `openat2(RESOLVE_BENEATH)`, so `..`, absolute symlinks and symlinks pointing out fail however they were
//! set up, also when one is swapped in after a permission check. Paths outside the workspace are a separate
//! permission (`external_directory`) and use plain filesystem calls once allowed.
//! Writes go to a temporary file in the target's directory and are renamed over it: never half a file.

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, Mode, OFlags, ResolveFlags};

/// Where a path given to a tool points.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// Inside the workspace; relative to it, normalised, never empty.
    Inside(PathBuf),
    /// Outside the workspace: absolute and normalised.
    Outside(PathBuf),
}

impl Target {
    /// The path as the permission rules and the model see it.
    pub fn display(&self) -> String {
        match self {
            Target::Inside(rel) => rel.display().to_string(),
            Target::Outside(abs) => abs.display().to_string(),
        }
    }

    /// The absolute path (for outside targets; inside ones joined to the workspace).
    pub fn absolute(&self, root: &Path) -> PathBuf {
        match self {
            Target::Inside(rel) => root.join(rel),
            Target::Outside(abs) => abs.clone(),
        }
    }
}

/// Decides lexically whether `input` names something inside `root`; the kernel enforces it when opening.
pub fn locate(root: &Path, input: &str) -> Target {
    let input = input.trim();
    let joined = if Path::new(input).is_absolute() { PathBuf::from(input) } else { root.join(input) };
    let normal = normalize(&joined);
    match normal.strip_prefix(normalize(root)) {
        Ok(rel) if rel.as_os_str().is_empty() => Target::Inside(PathBuf::from(".")),
        Ok(rel) => Target::Inside(rel.to_path_buf()),
        Err(_) => Target::Outside(normal),
    }
}

fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    out
}

#[derive(Debug, thiserror::Error)]
pub enum FsError {
    #[error("{0} is outside the workspace (it goes through a symlink that points out, or `..`)")]
    Escapes(String),
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
}

fn io_err(path: &Path, e: impl Into<std::io::Error>) -> FsError {
    let e: std::io::Error = e.into();
    // EXDEV is how openat2 reports a path resolving outside the directory under RESOLVE_BENEATH.
    if e.raw_os_error() == Some(rustix::io::Errno::XDEV.raw_os_error()) {
        return FsError::Escapes(path.display().to_string());
    }
    FsError::Io { path: path.display().to_string(), source: e }
}

const BENEATH: ResolveFlags = ResolveFlags::BENEATH.union(ResolveFlags::NO_MAGICLINKS);

fn open_root(root: &Path) -> Result<OwnedFd, FsError> {
    rustix::fs::open(root, OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| io_err(root, e))
}

fn open_beneath(root: &Path, rel: &Path, flags: OFlags) -> Result<OwnedFd, FsError> {
    let dir = open_root(root)?;
    rustix::fs::openat2(&dir, rel, flags | OFlags::CLOEXEC, Mode::empty(), BENEATH).map_err(|e| io_err(rel, e))
}

/// Reads a whole file, refusing files larger than `max` bytes.
pub fn read(root: &Path, target: &Target, max: u64) -> Result<Vec<u8>, FsError> {
    let (file, shown) = match target {
        Target::Inside(rel) => (std::fs::File::from(open_beneath(root, rel, OFlags::RDONLY)?), rel.as_path()),
        Target::Outside(abs) => (std::fs::File::open(abs).map_err(|e| io_err(abs, e))?, abs.as_path()),
    };
    let meta = file.metadata().map_err(|e| io_err(shown, e))?;
    if meta.is_dir() {
        return Err(FsError::Io {
            path: shown.display().to_string(),
            source: std::io::Error::other("is a directory; use list"),
        });
    }
    if meta.len() > max {
        return Err(FsError::Io {
            path: shown.display().to_string(),
            source: std::io::Error::other(format!("is {} bytes, more than the {max} this tool reads", meta.len())),
        });
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(max).read_to_end(&mut bytes).map_err(|e| io_err(shown, e))?;
    Ok(bytes)
}

pub fn exists(root: &Path, target: &Target) -> bool {
    match target {
        Target::Inside(rel) => open_beneath(root, rel, OFlags::PATH).is_ok(),
        Target::Outside(abs) => abs.exists(),
    }
}

/// Replaces the file's content atomically, creating missing parent directories; keeps an existing file's mode.
pub fn write(root: &Path, target: &Target, bytes: &[u8]) -> Result<(), FsError> {
    match target {
        Target::Inside(rel) => write_beneath(root, rel, bytes),
        Target::Outside(abs) => write_outside(abs, bytes),
    }
}

fn write_beneath(root: &Path, rel: &Path, bytes: &[u8]) -> Result<(), FsError> {
    let name = rel.file_name().ok_or_else(|| io_err(rel, std::io::Error::other("not a file name")))?;
    let mut dir = open_root(root)?;
    if let Some(parent) = rel.parent() {
        for component in parent.components() {
            let Component::Normal(part) = component else { return Err(FsError::Escapes(rel.display().to_string())) };
            let flags = OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC;
            dir = match rustix::fs::openat2(&dir, part, flags, Mode::empty(), BENEATH) {
                Ok(fd) => fd,
                Err(rustix::io::Errno::NOENT) => {
                    rustix::fs::mkdirat(&dir, part, Mode::from_raw_mode(0o755)).map_err(|e| io_err(rel, e))?;
                    rustix::fs::openat2(&dir, part, flags, Mode::empty(), BENEATH).map_err(|e| io_err(rel, e))?
                }
                Err(e) => return Err(io_err(rel, e)),
            };
        }
    }
    let mode = match rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(stat) if (stat.st_mode & 0o170000) == 0o100000 => Mode::from_raw_mode(stat.st_mode & 0o7777),
        _ => Mode::from_raw_mode(0o644),
    };
    let tmp = format!(".keel-{}.tmp", uuid::Uuid::now_v7().simple());
    let fd =
        rustix::fs::openat(&dir, tmp.as_str(), OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC, mode)
            .map_err(|e| io_err(rel, e))?;
    let mut file = std::fs::File::from(fd);
    let written = file.write_all(bytes).and_then(|()| file.sync_all());
    if let Err(e) = written {
        let _ = rustix::fs::unlinkat(&dir, tmp.as_str(), AtFlags::empty());
        return Err(io_err(rel, e));
    }
    // Renaming within one directory fd replaces whatever the name is now, a symlink included, without following it.
    rustix::fs::renameat(&dir, tmp.as_str(), &dir, name).map_err(|e| {
        let _ = rustix::fs::unlinkat(&dir, tmp.as_str(), AtFlags::empty());
        io_err(rel, e)
    })
}

fn write_outside(abs: &Path, bytes: &[u8]) -> Result<(), FsError> {
    let parent = abs.parent().ok_or_else(|| io_err(abs, std::io::Error::other("no parent directory")))?;
    std::fs::create_dir_all(parent).map_err(|e| io_err(parent, e))?;
    let tmp = parent.join(format!(".keel-{}.tmp", uuid::Uuid::now_v7().simple()));
    let written = std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, abs));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(io_err(abs, e));
    }
    Ok(())
}

pub fn remove(root: &Path, target: &Target) -> Result<(), FsError> {
    match target {
        Target::Inside(rel) => {
            let name = rel.file_name().ok_or_else(|| io_err(rel, std::io::Error::other("not a file name")))?;
            let dir = match rel.parent().filter(|p| !p.as_os_str().is_empty()) {
                Some(parent) => open_beneath(root, parent, OFlags::DIRECTORY | OFlags::RDONLY)?,
                None => open_root(root)?,
            };
            rustix::fs::unlinkat(&dir, name, AtFlags::empty()).map_err(|e| io_err(rel, e))
        }
        Target::Outside(abs) => std::fs::remove_file(abs).map_err(|e| io_err(abs, e)),
    }
}

/// Serialises read-modify-write of the same files: the calls of one turn run concurrently, and two edits of one
/// file must not lose each other's change.
pub async fn lock_files(root: &Path, targets: &[&Target]) -> Vec<tokio::sync::OwnedMutexGuard<()>> {
    use std::collections::HashMap;
    use std::sync::{Arc, OnceLock};
    static LOCKS: OnceLock<parking_lot::Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>> = OnceLock::new();
    let mut paths: Vec<PathBuf> = targets.iter().map(|t| t.absolute(root)).collect();
    // A fixed order, so that two patches touching the same files cannot deadlock.
    paths.sort();
    paths.dedup();
    let mut guards = Vec::with_capacity(paths.len());
    for path in paths {
        let lock = {
            let mut locks = LOCKS.get_or_init(Default::default).lock();
            locks.retain(|_, l| Arc::strong_count(l) > 1);
            Arc::clone(locks.entry(path).or_default())
        };
        guards.push(lock.lock_owned().await);
    }
    guards
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locates_inside_and_outside() {
        let root = Path::new("/work/ws");
        assert_eq!(locate(root, "src/a.rs"), Target::Inside("src/a.rs".into()));
        assert_eq!(locate(root, "/work/ws/src/../b.rs"), Target::Inside("b.rs".into()));
        assert_eq!(locate(root, "../other/x"), Target::Outside("/work/other/x".into()));
        assert_eq!(locate(root, "/etc/passwd"), Target::Outside("/etc/passwd".into()));
        assert_eq!(locate(root, "/work/wsx/a"), Target::Outside("/work/wsx/a".into()));
    }

    #[test]
    fn symlinks_out_are_refused_by_the_kernel() {
        let ws = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), "s").unwrap();
        std::os::unix::fs::symlink(outside.path(), ws.path().join("link")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), ws.path().join("file")).unwrap();
        let read_link = read(ws.path(), &locate(ws.path(), "link/secret"), 1024);
        assert!(matches!(read_link, Err(FsError::Escapes(_))), "{read_link:?}");
        assert!(matches!(read(ws.path(), &locate(ws.path(), "file"), 1024), Err(FsError::Escapes(_))));
        assert!(matches!(write(ws.path(), &locate(ws.path(), "link/new"), b"x"), Err(FsError::Escapes(_))));
        // Writing over a symlink replaces the link; the file it pointed to is untouched.
        write(ws.path(), &locate(ws.path(), "file"), b"mine").unwrap();
        assert_eq!(std::fs::read_to_string(outside.path().join("secret")).unwrap(), "s");
        assert_eq!(std::fs::read_to_string(ws.path().join("file")).unwrap(), "mine");
        write(ws.path(), &locate(ws.path(), "deep/er/new.txt"), b"n").unwrap();
        assert_eq!(std::fs::read_to_string(ws.path().join("deep/er/new.txt")).unwrap(), "n");
    }
}
