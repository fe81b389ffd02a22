//! What a child process may do: the files it may write and read and whether it may open TCP connections
//! (Landlock, on Linux), and the environment it starts with (never a credential). `bash` runs under it; anything
//! else that starts processes for the model goes through the same `Policy`.
//!
//! The approval rules decide whether a command runs; the sandbox bounds what it does once it runs, whatever the
//! rules allowed. The file tools are confined by `tool::fs` (openat2) instead.

pub mod env;
mod landlock;

use std::path::{Path, PathBuf};
use std::sync::Once;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use env::{EnvPolicy, Inherit};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Writes only to the workspace, temporary directories and `writableRoots`; reads anything but keel's own
    /// state (database, auth store, outputs, global config).
    #[default]
    WorkspaceWrite,
    /// Writes nowhere (but to devices such as `/dev/null`).
    ReadOnly,
    /// No kernel confinement; the approval rules alone decide.
    Off,
}

/// `sandbox` in config, top-level and per agent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SandboxSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<Mode>,
    /// `false` denies TCP connections and binds (kernels with Landlock ABI 4 or later). Default `true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<bool>,
    /// More directories commands may write to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub writable_roots: Vec<String>,
}

/// Everything a child process is started with, fixed per tool call.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub mode: Mode,
    pub deny_network: bool,
    pub workspace: PathBuf,
    pub writable_roots: Vec<PathBuf>,
    /// Never readable or writable: keel's data and config directories.
    pub hidden: Vec<PathBuf>,
    pub env: EnvPolicy,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot set up the sandbox: {0}")]
pub struct SandboxError(#[from] std::io::Error);

/// Keeps the ruleset open until the child has started; drop it after `spawn`.
pub struct Armed(#[allow(dead_code)] Option<landlock::Ruleset>);

/// Whether this kernel confines commands (Landlock is built in and enabled).
pub fn landlock_available() -> bool {
    landlock::abi().is_some()
}

/// Directories that temporary files go to.
fn temp_dirs() -> Vec<PathBuf> {
    let mut dirs = vec![PathBuf::from("/tmp"), PathBuf::from("/var/tmp"), PathBuf::from("/dev/shm")];
    dirs.extend(std::env::var_os("TMPDIR").map(PathBuf::from));
    dirs
}

/// Devices that ordinary commands write to and that touch no file.
const DEVICES: &[&str] =
    &["/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty", "/dev/ptmx", "/dev/pts"];

impl Policy {
    /// The policy of `agent`'s commands in `workspace`: the agent's `sandbox`, else the top-level one.
    pub fn for_agent(
        config: &crate::config::Config,
        agent: &str,
        workspace: &Path,
        paths: &crate::config::Paths,
    ) -> Self {
        let settings = config.agents.get(agent).and_then(|a| a.sandbox.clone()).or_else(|| config.sandbox.clone());
        let settings = settings.unwrap_or_default();
        Self {
            mode: settings.mode.unwrap_or_default(),
            deny_network: settings.network == Some(false),
            workspace: workspace.to_owned(),
            writable_roots: settings.writable_roots.iter().map(|r| workspace.join(r)).collect(),
            hidden: vec![paths.data_dir.clone(), paths.config_dir.clone()],
            env: config.shell_environment.clone().unwrap_or_default(),
        }
    }

    /// Gives `cmd` its environment and, where the kernel has Landlock, its confinement.
    pub fn apply(&self, cmd: &mut tokio::process::Command) -> Result<Armed, SandboxError> {
        cmd.env_clear();
        cmd.envs(self.env.child_environment(std::env::vars_os()));
        if self.mode == Mode::Off {
            return Ok(Armed(None));
        }
        let Some(abi) = landlock::abi() else {
            static WARNED: Once = Once::new();
            WARNED.call_once(|| {
                tracing::warn!("this kernel has no Landlock: commands run unconfined, under the approval rules only");
            });
            return Ok(Armed(None));
        };
        let ruleset = self.ruleset(abi)?;
        let fd = ruleset.raw_fd();
        // SAFETY: the closure only makes system calls (prctl, landlock_restrict_self) on a descriptor that
        // `Armed` keeps open until the child has exec'd; nothing in it allocates or takes a lock.
        unsafe {
            cmd.pre_exec(move || landlock::enforce(fd));
        }
        Ok(Armed(Some(ruleset)))
    }

    fn ruleset(&self, abi: u32) -> Result<landlock::Ruleset, SandboxError> {
        let mut ruleset = landlock::Ruleset::new(abi, self.deny_network)?;
        let all = ruleset.handled();
        // Directory listings everywhere (names only), contents everywhere but keel's own state.
        ruleset.allow(Path::new("/"), landlock::READ_DIR)?;
        let hidden: Vec<PathBuf> = self.hidden.iter().map(|h| h.canonicalize().unwrap_or_else(|_| h.clone())).collect();
        for root in roots_except(Path::new("/"), &hidden) {
            ruleset.allow(&root, landlock::READ_FILE | landlock::EXECUTE | landlock::READ_DIR)?;
        }
        for device in DEVICES {
            ruleset.allow(Path::new(device), landlock::READ_FILE | landlock::WRITE_FILE | (1 << 15))?;
        }
        if self.mode == Mode::WorkspaceWrite {
            let roots = std::iter::once(self.workspace.clone()).chain(temp_dirs()).chain(self.writable_roots.clone());
            for root in roots {
                // A temporary directory that holds keel's home (as in tests) is writable around it, not in it.
                let root = root.canonicalize().unwrap_or(root);
                for writable in roots_except(&root, &hidden) {
                    ruleset.allow(&writable, all)?;
                }
            }
        } else {
            ruleset.allow(&self.workspace, landlock::READ_FILE | landlock::EXECUTE | landlock::READ_DIR)?;
        }
        Ok(ruleset)
    }
}

/// The largest directories (and files) under `root` that hold nothing hidden: `root` itself when it holds nothing
/// hidden, else its entries, descending only along the way to each hidden path. A hidden path that holds `root`
/// does not hide it: the workspace may live inside keel's home.
fn roots_except(root: &Path, hidden: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        if hidden.contains(&dir) {
            continue;
        }
        if !hidden.iter().any(|h| h.starts_with(&dir)) {
            out.push(dir);
            continue;
        }
        if let Ok(entries) = std::fs::read_dir(&dir) {
            stack.extend(entries.flatten().map(|e| e.path()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readable_roots_leave_out_exactly_the_hidden_paths() {
        let root = tempfile::tempdir().unwrap();
        let base = root.path().canonicalize().unwrap();
        for dir in ["a/keel", "a/other", "b"] {
            std::fs::create_dir_all(base.join(dir)).unwrap();
        }
        std::fs::write(base.join("a/file"), "x").unwrap();
        let roots = roots_except(Path::new("/"), &[base.join("a/keel")]);
        for readable in ["a/other", "a/file", "b"] {
            assert!(roots.contains(&base.join(readable)), "{readable} in {roots:?}");
        }
        assert!(!roots.iter().any(|r| base.join("a/keel").starts_with(r)), "{roots:?}");
        assert_eq!(roots_except(&base.join("a/keel/ws"), &[base.join("a/keel")]), [base.join("a/keel/ws")]);
    }
}
