//! PostgreSQL for the store's tests: a fresh database per test, on the server named by `KEEL_TEST_POSTGRES` (CI) or
//! else on a throwaway cluster this test process starts on first use and stops when it exits.

use std::hash::{BuildHasher, RandomState};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

/// A fresh, empty database on a throwaway PostgreSQL cluster, as a connection URL
/// (`postgres://USER@127.0.0.1:PORT/DBNAME`) that keel will get via `--store URL`; or None when this machine has no
/// PostgreSQL (then the caller skips). With KEEL_REQUIRE_POSTGRES=1 set, no PostgreSQL is a panic instead of None.
pub fn fresh_database() -> Option<String> {
    let admin = match std::env::var("KEEL_TEST_POSTGRES") {
        Ok(url) => url,
        Err(_) => {
            let (Some(initdb), Some(pg_ctl)) = (find_tool("initdb"), find_tool("pg_ctl")) else {
                assert!(
                    std::env::var_os("KEEL_REQUIRE_POSTGRES").is_none(),
                    "KEEL_REQUIRE_POSTGRES is set but no initdb was found (apt-get install postgresql)"
                );
                return None;
            };
            match CLUSTER.get_or_init(|| Cluster::start(&initdb, pg_ctl)) {
                Ok(cluster) => cluster.admin_url.clone(),
                Err(e) => panic!("{e}"),
            }
        }
    };
    let name = unique_name();
    psql(&admin, &format!("CREATE DATABASE {name}"));
    Some(with_database(&admin, &name))
}

/// Runs `sql` with psql on the database at `url` and returns its unaligned, tuples-only output.
pub fn psql(url: &str, sql: &str) -> String {
    let psql = find_tool("psql").expect("psql is missing (apt-get install postgresql-client)");
    let out = Command::new(psql).args(["-X", "-q", "-tA", "-d", url, "-c", sql]).output().expect("cannot run psql");
    assert!(out.status.success(), "psql `{sql}` on {url} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// One cluster per test process; the error is kept so that every test reports it, not just the first.
static CLUSTER: OnceLock<Result<Cluster, String>> = OnceLock::new();

struct Cluster {
    admin_url: String,
    /// Holds the data directory, the log and the socket.
    dir: PathBuf,
    pg_ctl: PathBuf,
    /// Never written: its closing, however this process ends, is the watchdog's cue.
    _watchdog: ChildStdin,
}

impl Cluster {
    fn start(initdb: &Path, pg_ctl: PathBuf) -> Result<Self, String> {
        let tmp = tempfile::Builder::new().prefix("keel-pg-").tempdir().map_err(|e| e.to_string())?;
        let dir = tmp.path().to_owned();
        let data = dir.join("data");
        if as_root() {
            // initdb and postgres refuse to run as root.
            run(Command::new("chown").arg("postgres:").arg(&dir))?;
        }
        let mut init = postgres_user(initdb, &dir);
        init.arg("-D").arg(&data).args(["--auth=trust", "-U", "keel", "-E", "UTF8", "--no-sync"]);
        run(&mut init)?;

        // The atexit hook below covers a normal exit; this covers a test process killed by a signal, which leaves
        // pg_ctl's detached postmaster running otherwise.
        let stop = stop_command(&pg_ctl, &dir);
        let mut watchdog = Command::new("sh")
            .args(["-c", r#"read -r _; "$@" >/dev/null 2>&1; rm -rf "$0""#])
            .arg(&dir)
            .arg(stop.get_program())
            .args(stop.get_args())
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Not in the terminal's process group: Ctrl-C must not kill it before it has done its job.
            .process_group(0)
            .spawn()
            .map_err(|e| format!("cannot start the cluster's watchdog: {e}"))?;
        let watchdog = watchdog.stdin.take().expect("piped stdin");

        // Another process may take the free port before postgres binds it: then try another.
        let mut attempts = 0;
        let port = loop {
            let port = free_port()?;
            let options = format!(
                "-F -p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
                dir.display()
            );
            let started = run(postgres_user(&pg_ctl, &dir)
                .arg("-D")
                .arg(&data)
                .arg("-l")
                .arg(dir.join("log"))
                .args(["-o", &options, "-w", "start"]));
            attempts += 1;
            match started {
                Ok(()) => break port,
                Err(e) => {
                    // pg_ctl may have given up waiting on a postmaster that is still there.
                    let _ = stop_command(&pg_ctl, &dir).output();
                    if attempts == 3 {
                        let log = std::fs::read_to_string(dir.join("log")).unwrap_or_default();
                        return Err(format!("{e}\n{log}"));
                    }
                }
            }
        };
        let cluster = Self {
            admin_url: format!("postgres://keel@127.0.0.1:{port}/postgres"),
            dir: tmp.keep(),
            pg_ctl,
            _watchdog: watchdog,
        };
        // SAFETY: registers a plain function that takes no arguments, as atexit expects.
        unsafe { libc::atexit(stop_cluster) };
        Ok(cluster)
    }
}

/// Stops the cluster before the process exits, so that nothing of it outlives the tests.
extern "C" fn stop_cluster() {
    if let Some(Ok(cluster)) = CLUSTER.get() {
        let _ = stop_command(&cluster.pg_ctl, &cluster.dir).output();
        let _ = std::fs::remove_dir_all(&cluster.dir);
    }
}

/// `pg_ctl stop -m immediate`: nothing in a throwaway cluster is worth a checkpoint.
fn stop_command(pg_ctl: &Path, dir: &Path) -> Command {
    let mut cmd = postgres_user(pg_ctl, dir);
    cmd.arg("-D").arg(dir.join("data")).args(["stop", "-m", "immediate"]);
    cmd
}

fn as_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// `program`, as the `postgres` user when this process is root, run in `dir` (the user may not reach our cwd).
fn postgres_user(program: &Path, dir: &Path) -> Command {
    let mut cmd = if as_root() {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--"]).arg(program);
        cmd
    } else {
        Command::new(program)
    };
    cmd.current_dir(dir);
    cmd
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd.stdin(Stdio::null()).output().map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{cmd:?} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr)))
    }
}

fn free_port() -> Result<u16, String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(listener.local_addr().map_err(|e| e.to_string())?.port())
}

/// `name` on PATH, else in the newest `/usr/lib/postgresql/VERSION/bin` (where Debian puts the server's tools).
fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    if let Some(found) = std::env::split_paths(&path).map(|dir| dir.join(name)).find(|p| p.is_file()) {
        return Some(found);
    }
    let version = |dir: &Path| -> Vec<u32> {
        let name = dir.file_name().unwrap_or_default().to_string_lossy().into_owned();
        name.split('.').map(|part| part.parse().unwrap_or(0)).collect()
    };
    let mut versions: Vec<PathBuf> =
        std::fs::read_dir("/usr/lib/postgresql").ok()?.flatten().map(|e| e.path()).collect();
    versions.sort_by_key(|dir| std::cmp::Reverse(version(dir)));
    versions.into_iter().map(|dir| dir.join("bin").join(name)).find(|p| p.is_file())
}

/// Unique across threads (counter), test processes (pid) and earlier runs against the same server (random).
fn unique_name() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let random = RandomState::new().hash_one(n) as u32;
    format!("keel_test_{}_{n}_{random:08x}", std::process::id())
}

/// `url` with its database (the path) replaced by `name`, keeping any query.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, ""), |(base, query)| (base, query));
    let authority = base.find("://").map_or(0, |i| i + 3);
    let end = base[authority..].find('/').map_or(base.len(), |i| authority + i);
    let query = if query.is_empty() { String::new() } else { format!("?{query}") };
    format!("{}/{name}{query}", &base[..end])
}
