//! `cargo bench --bench grep`: the `grep` tool's in-process search against ripgrep on one large tree. Prints,
//! asserts nothing.
//!
//! The tree defaults to `~/.rustup/toolchains` (sources, docs and binaries); set `KEEL_GREP_BENCH_DIR` to use
//! another. Every figure is the median of 5 runs after one warm-up run, so the page cache is hot for both.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use keel::tool::search::grep_tree;

const RUNS: usize = 5;

fn main() {
    let dir = bench_dir();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (files, bytes) = tree_size(&dir);
    println!("keel grep benchmark ({threads} cores)");
    println!("tree: {} ({files} files, {:.0} MiB, as walked)", dir.display(), bytes as f64 / (1024.0 * 1024.0));
    let rg = rg_version();
    match &rg {
        Some(version) => println!("ripgrep: {version}"),
        None => {
            println!("ripgrep: not on PATH; install it to compare (apt-get install ripgrep, or cargo install ripgrep)")
        }
    }
    println!();
    println!("{:<44} {:>10} {:>10} {:>8} {:>14}", "case", "keel", "rg", "keel/rg", "lines keel/rg");

    let cases: [(&str, &str, usize); 3] = [
        ("rare, full scan", r"fn\s+zzqq_not_there", 100),
        ("common, capped at 100", "unsafe fn", 100),
        ("common, uncapped (full scan)", "unsafe fn", usize::MAX - 1),
    ];
    for (label, pattern, max) in cases {
        let found = grep_tree(&dir, pattern, max).unwrap().len();
        let keel = median(|| {
            let lines = grep_tree(&dir, pattern, max).unwrap();
            std::hint::black_box(lines.len());
        });
        let case = format!("{label} `{pattern}`");
        if rg.is_some() {
            let rg = median(|| run_rg(&dir, pattern));
            let lines = format!("{found}/{}", rg_count(&dir, pattern));
            let ratio = keel.as_secs_f64() / rg.as_secs_f64();
            println!("{case:<44} {:>10} {:>10} {ratio:>7.2}x {lines:>14}", ms(keel), ms(rg));
        } else {
            println!("{case:<44} {:>10} {:>10} {:>8} {found:>14}", ms(keel), "-", "-");
        }
    }
    println!();
    println!("rg runs `rg --no-messages -c PATTERN DIR` (always a full scan, counts per file).");
}

fn bench_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("KEEL_GREP_BENCH_DIR") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").expect("HOME or KEEL_GREP_BENCH_DIR must be set");
    PathBuf::from(home).join(".rustup/toolchains")
}

/// Files and bytes the search will see, with the same ignore rules.
fn tree_size(dir: &Path) -> (usize, u64) {
    let mut files = 0;
    let mut bytes = 0;
    for entry in ignore::WalkBuilder::new(dir).require_git(false).build().flatten() {
        if entry.file_type().is_some_and(|t| t.is_file()) {
            files += 1;
            bytes += entry.metadata().map_or(0, |m| m.len());
        }
    }
    (files, bytes)
}

fn rg_version() -> Option<String> {
    let out = Command::new("rg").arg("--version").output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).lines().next().unwrap_or("").to_owned())
}

fn run_rg(dir: &Path, pattern: &str) {
    // Exit status 1 means no match; only the time matters here.
    Command::new("rg")
        .args(["--no-messages", "-c", pattern])
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
}

/// Matching lines rg finds in the whole tree, to check both searched the same files.
fn rg_count(dir: &Path, pattern: &str) -> u64 {
    let out = Command::new("rg").args(["--no-messages", "-c", pattern]).arg(dir).output().unwrap();
    let counts = String::from_utf8_lossy(&out.stdout);
    counts.lines().filter_map(|l| l.rsplit_once(':')?.1.parse::<u64>().ok()).sum()
}

/// One warm-up run, then the median of `RUNS` timed runs.
fn median(mut f: impl FnMut()) -> Duration {
    f();
    let mut times: Vec<Duration> = (0..RUNS)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    times.sort();
    times[RUNS / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}
