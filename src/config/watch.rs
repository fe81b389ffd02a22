//! Watches the directories that hold config files and the credential store, and says when one of those files may
//! have changed. Directories are watched, not files: editors and keel itself replace files by renaming a new one
//! over them, which a watch on the old file would not see.
//!
//! On inotify directly, for its event mask: a file counts as changed when it is closed after writing, moved in or
//! out, created or deleted, never on each write. keel's home holds its database too, and a watch that woke on every
//! write of the WAL would cost every append a wake-up of this thread.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use inotify::{Inotify, WatchMask, Watches};
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

fn mask() -> WatchMask {
    WatchMask::CLOSE_WRITE
        | WatchMask::MOVED_TO
        | WatchMask::MOVED_FROM
        | WatchMask::CREATE
        | WatchMask::DELETE
        | WatchMask::DELETE_SELF
}

pub struct Watcher {
    watches: Mutex<Watches>,
    watched: Mutex<BTreeSet<PathBuf>>,
}

impl Watcher {
    /// A watcher that sends on `changed` for every event about a file that matters (`extra`: more file names,
    /// such as `KEEL_CONFIG`'s). The receiver debounces.
    pub fn new(changed: mpsc::UnboundedSender<()>, extra: Vec<String>) -> std::io::Result<Self> {
        let mut inotify = Inotify::init()?;
        let watches = inotify.watches();
        std::thread::Builder::new().name("keel-config-watch".into()).spawn(move || {
            let mut buffer = [0u8; 4096];
            loop {
                let Ok(events) = inotify.read_events_blocking(&mut buffer) else { return };
                let matters = events.into_iter().any(|event| {
                    event.mask.contains(inotify::EventMask::DELETE_SELF)
                        || event
                            .name
                            .and_then(|n| n.to_str())
                            .is_some_and(|n| NAMES.contains(&n) || n == ".keel" || extra.iter().any(|e| e == n))
                });
                if matters && changed.send(()).is_err() {
                    return;
                }
            }
        })?;
        Ok(Self { watches: Mutex::new(watches), watched: Mutex::new(BTreeSet::new()) })
    }

    /// Watches `dir` (not its subdirectories); a directory that does not exist is skipped.
    pub fn watch_dir(&self, dir: &Path) {
        if !dir.is_dir() || !self.watched.lock().insert(dir.to_owned()) {
            return;
        }
        if let Err(e) = self.watches.lock().add(dir, mask()) {
            tracing::warn!("cannot watch {} for config changes: {e}", dir.display());
            self.watched.lock().remove(dir);
        }
    }

    /// Watches every directory whose files are layers of a project in `cwd`.
    pub fn watch_project(&self, cwd: &Path) {
        for dir in super::paths::project_chain(cwd) {
            self.watch_dir(&dir);
            self.watch_dir(&dir.join(".keel"));
        }
    }
}
