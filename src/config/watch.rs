//! Watches the directories that hold config files and the credential store, and says when one of those files may
//! have changed. Directories are watched, not files: editors and keel itself replace files by renaming a new one
//! over them, which a watch on the old file would not see.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use notify::{EventKind, RecursiveMode, Watcher as _};
use parking_lot::Mutex;
use tokio::sync::mpsc;

/// The names whose changes matter: config files of every layer, the credential store and the imported catalog.
const NAMES: &[&str] = &[
    "config.jsonc",
    "config.json",
    "keel.jsonc",
    "keel.json",
    "opencode.jsonc",
    "opencode.json",
    "auth.json",
    "models.json",
];

pub struct Watcher {
    inner: Mutex<notify::RecommendedWatcher>,
    watched: Mutex<BTreeSet<PathBuf>>,
}

impl Watcher {
    /// A watcher that sends on `changed` for every event about a file that matters (`extra`: more file names,
    /// such as `KEEL_CONFIG`'s). The receiver debounces.
    pub fn new(changed: mpsc::UnboundedSender<()>, extra: Vec<String>) -> Result<Self, notify::Error> {
        let inner = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            let Ok(event) = event else { return };
            // Reads are not changes, and keel reads these files all the time.
            if matches!(event.kind, EventKind::Access(_)) {
                return;
            }
            let matters = event.paths.iter().any(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| NAMES.contains(&n) || extra.iter().any(|e| e == n))
                    || p.file_name().is_some_and(|n| n == ".keel")
            });
            if matters {
                let _ = changed.send(());
            }
        })?;
        Ok(Self { inner: Mutex::new(inner), watched: Mutex::new(BTreeSet::new()) })
    }

    /// Watches `dir` (not its subdirectories); a directory that does not exist is skipped.
    pub fn watch_dir(&self, dir: &Path) {
        if !dir.is_dir() || !self.watched.lock().insert(dir.to_owned()) {
            return;
        }
        if let Err(e) = self.inner.lock().watch(dir, RecursiveMode::NonRecursive) {
            tracing::warn!("cannot watch {} for config changes: {e}", dir.display());
            self.watched.lock().remove(dir);
        }
    }

    /// Watches every directory whose files are layers of a project in `cwd`.
    pub fn watch_project(&self, cwd: &Path) {
        // The root itself may become a repository later: its parent would then stop being part of the project,
        // which the next load sees; watching the chain as it is now is enough to notice edits in it.
        for dir in super::paths::project_chain(cwd) {
            self.watch_dir(&dir);
            self.watch_dir(&dir.join(".keel"));
        }
    }
}
