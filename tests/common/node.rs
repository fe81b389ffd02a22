//! Node.js for the tests that drive npm packages (the editors' suites): `node` on PATH, and each package's modules
//! installed from its lock file when missing.

use std::path::Path;

/// Panics with `why` when `node` cannot run; runs `npm ci` in each `(dir, probe)` whose `node_modules/probe` is
/// missing.
pub async fn ensure_packages(why: &str, packages: &[(&Path, &str)]) {
    match tokio::process::Command::new("node").arg("--version").output().await {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!("`node --version` failed: {}", String::from_utf8_lossy(&out.stderr)),
        Err(e) => panic!("{why} need Node.js (v20 or later) on PATH: cannot run `node` ({e})"),
    }
    for (dir, probe) in packages {
        if dir.join("node_modules").join(probe).exists() {
            continue;
        }
        let out = tokio::process::Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(dir)
            .output()
            .await
            .expect("node_modules is missing and `npm` cannot run");
        assert!(out.status.success(), "npm ci in {} failed: {}", dir.display(), String::from_utf8_lossy(&out.stderr));
    }
}
