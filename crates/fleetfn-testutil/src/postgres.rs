//! A throwaway PostgreSQL cluster for the tests tagged [`POSTGRES`](crate::POSTGRES): `initdb` into
//! a temporary directory, `postgres` on a free 127.0.0.1 port (password auth over TCP, trust on
//! its own Unix socket directory), fsync off. As root it runs as `nobody` (PostgreSQL refuses
//! root). A small `sh` supervisor owns it and stops it and removes the directory when its stdin
//! closes: on [`Drop`], or when the test process exits however it exits (the [`shared`] cluster).
//!
//! With [`URL_VAR`] set, its URL is used instead (a server you run; tests create and drop their
//! own databases on it).

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// An existing server to use instead of a throwaway cluster, as an admin URL
/// (`postgres://USER:PASSWORD@HOST:PORT/postgres`; the user must be able to `CREATE DATABASE`).
pub const URL_VAR: &str = "FLEETFN_TEST_POSTGRES_URL";

/// The superuser and its password in a throwaway cluster.
pub const USER: &str = "fleetfn";
pub const PASSWORD: &str = "fleetfn-test";

const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// A PostgreSQL server for tests.
#[derive(Debug)]
pub struct TestPostgres {
    admin_url: String,
    /// The supervisor of a throwaway cluster (`None` for [`URL_VAR`]'s server).
    supervisor: Option<Child>,
    /// A throwaway cluster's directory (data, socket, log), removed when it stops.
    dir: Option<PathBuf>,
}

impl TestPostgres {
    /// [`URL_VAR`]'s server, or a new throwaway cluster; `Err` says what is missing.
    pub fn start() -> Result<Self, String> {
        if let Some(url) = std::env::var(URL_VAR).ok().filter(|u| !u.is_empty()) {
            return Ok(Self {
                admin_url: url,
                supervisor: None,
                dir: None,
            });
        }
        let bin = bindir()?;
        let mut last = String::new();
        // A port picked free can be taken before postgres binds it: try another.
        for _ in 0..3 {
            match Cluster::start(&bin) {
                Ok(found) => return Ok(found),
                Err(Retry::Port(why)) => last = why,
                Err(Retry::No(why)) => return Err(why),
            }
        }
        Err(last)
    }

    /// The admin URL (database `postgres`, or [`URL_VAR`]'s).
    pub fn admin_url(&self) -> &str {
        &self.admin_url
    }

    /// A throwaway cluster's directory (data, Unix socket, `postgres.log`).
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// The URL of `database` on this server.
    pub fn url(&self, database: &str) -> String {
        with_database(&self.admin_url, database)
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        if let Some(mut child) = self.supervisor.take() {
            // Closing its stdin tells the supervisor to stop postgres and remove the directory.
            drop(child.stdin.take());
            let _ = child.wait();
        }
    }
}

/// One cluster for the whole test process, started on first use; it is stopped and removed when
/// the process exits (its supervisor's stdin closes then).
pub fn shared() -> Result<&'static TestPostgres, String> {
    static SHARED: OnceLock<Result<TestPostgres, String>> = OnceLock::new();
    SHARED
        .get_or_init(TestPostgres::start)
        .as_ref()
        .map_err(Clone::clone)
}

/// `url` with its database (the path) replaced by `database`, query kept.
pub fn with_database(url: &str, database: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("postgres", url));
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let query = tail.find('?').map_or("", |i| &tail[i..]);
    format!("{scheme}://{authority}/{database}{query}")
}

/// The directory of `initdb`, `postgres` and `pg_isready`: `PATH`'s `initdb`'s (links resolved),
/// else Debian's newest
/// `/usr/lib/postgresql/<major>/bin`.
fn bindir() -> Result<PathBuf, String> {
    // Resolved: `initdb` on PATH may be a link into the server's directory (which holds
    // `postgres` and `pg_isready` too).
    if let Ok(initdb) = crate::program("initdb")
        && let Ok(real) = std::fs::canonicalize(&initdb)
        && let Some(dir) = real.parent()
        && dir.join("pg_isready").is_file()
    {
        return Ok(dir.to_path_buf());
    }
    let mut majors: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|_| {
            "no PostgreSQL server: no `initdb` on PATH and no /usr/lib/postgresql \
             (apt-get install postgresql), and FLEETFN_TEST_POSTGRES_URL is not set"
                .to_string()
        })?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let major = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((major, bin))
        })
        .collect();
    majors.sort();
    majors
        .pop()
        .map(|(_, bin)| bin)
        .ok_or_else(|| "no initdb under /usr/lib/postgresql/*/bin".to_string())
}

enum Retry {
    /// The port was taken: another may work.
    Port(String),
    No(String),
}

/// The unprivileged account a root process runs PostgreSQL as: (uid, gid) of `nobody`.
fn nobody() -> Result<(u32, u32), String> {
    let passwd = std::fs::read_to_string("/etc/passwd").map_err(|e| format!("/etc/passwd: {e}"))?;
    passwd
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() > 3 && f[0] == "nobody")
                .then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))
        })
        .flatten()
        .ok_or_else(|| "no `nobody` user in /etc/passwd to run PostgreSQL as".to_string())
}

fn is_root() -> bool {
    // Without libc: root's /proc/self/status shows Uid 0.
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|l| l.split_whitespace().nth(1))
            == Some("0")
    })
}

fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port on 127.0.0.1: {e}"))
}

struct Cluster;

impl Cluster {
    fn start(bin: &Path) -> Result<TestPostgres, Retry> {
        static N: AtomicU32 = AtomicU32::new(0);
        let base = std::env::temp_dir().join(format!(
            "fleetfn-pg-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let no = |e: String| Retry::No(e);
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir(&base).map_err(|e| no(format!("creating {}: {e}", base.display())))?;
        let cleanup = |why: String| {
            let _ = std::fs::remove_dir_all(&base);
            why
        };
        let pwfile = base.join("pw");
        std::fs::write(&pwfile, PASSWORD).map_err(|e| no(cleanup(format!("pwfile: {e}"))))?;
        let as_user: Vec<String> = if is_root() {
            let (uid, gid) = nobody().map_err(|e| no(cleanup(e)))?;
            for p in [&base, &pwfile] {
                std::os::unix::fs::chown(p, Some(uid), Some(gid))
                    .map_err(|e| no(cleanup(format!("chown {}: {e}", p.display()))))?;
            }
            let setpriv = crate::program("setpriv").map_err(|e| {
                no(cleanup(format!(
                    "{e} (util-linux), needed to run PostgreSQL as nobody"
                )))
            })?;
            vec![
                setpriv.display().to_string(),
                format!("--reuid={uid}"),
                format!("--regid={gid}"),
                "--clear-groups".into(),
                "--".into(),
            ]
        } else {
            Vec::new()
        };
        let data = base.join("data");
        let out = command(&as_user, &bin.join("initdb"))
            .args(["-D"])
            .arg(&data)
            .args(["-U", USER, "-E", "UTF8", "--locale=C", "--no-sync"])
            .args(["--auth-local=trust", "--auth-host=scram-sha-256"])
            .arg(format!("--pwfile={}", pwfile.display()))
            .stdin(Stdio::null())
            .output()
            .map_err(|e| no(cleanup(format!("running initdb: {e}"))))?;
        if !out.status.success() {
            return Err(no(cleanup(format!(
                "initdb failed ({}): {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))));
        }
        let port = free_port().map_err(|e| no(cleanup(e)))?;
        let log = base.join("postgres.log");
        // The supervisor: postgres in the background, then wait for stdin to close; then a fast
        // shutdown (SIGINT) and the directory removed.
        let script = r#"base="$1"; log="$2"; shift 2
"$@" >"$log" 2>&1 &
pid=$!
cat >/dev/null
kill -INT "$pid" 2>/dev/null
wait "$pid"
rm -rf "$base""#;
        let mut postgres: Vec<String> = as_user.clone();
        postgres.push(bin.join("postgres").display().to_string());
        postgres.extend(
            [
                "-D",
                &data.display().to_string(),
                "-k",
                &base.display().to_string(),
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-F",
                "-c",
                "max_connections=200",
            ]
            .map(String::from),
        );
        let mut supervisor = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg("fleetfn-test-postgres")
            .arg(&base)
            .arg(&log)
            .args(&postgres)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| no(cleanup(format!("starting postgres: {e}"))))?;
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let ready = Command::new(bin.join("pg_isready"))
                .arg("-q")
                .arg("-h")
                .arg(&base)
                .args(["-p", &port.to_string(), "-U", USER])
                .stdin(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                return Ok(TestPostgres {
                    admin_url: format!("postgres://{USER}:{PASSWORD}@127.0.0.1:{port}/postgres"),
                    supervisor: Some(supervisor),
                    dir: Some(base.clone()),
                });
            }
            let mut text = String::new();
            if let Ok(mut f) = std::fs::File::open(&log) {
                let _ = f.read_to_string(&mut text);
            }
            // pg_isready's own attempts log "FATAL: the database system is starting up".
            let failed = text
                .lines()
                .any(|l| l.contains("FATAL") && !l.contains("starting up"));
            if failed || Instant::now() > deadline {
                drop(supervisor.stdin.take());
                let _ = supervisor.wait();
                let why = format!("postgres did not start on 127.0.0.1:{port}: {text}");
                return Err(
                    if text.contains("could not bind")
                        || text.contains("in use")
                        || text.contains("could not create any TCP/IP sockets")
                    {
                        Retry::Port(why)
                    } else {
                        Retry::No(why)
                    },
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn command(prefix: &[String], program: &Path) -> Command {
    match prefix.split_first() {
        Some((first, rest)) => {
            let mut c = Command::new(first);
            c.args(rest).arg(program);
            c
        }
        None => Command::new(program),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn with_database_replaces_only_the_path() {
        assert_eq!(
            with_database("postgres://u:p@127.0.0.1:5432/postgres", "t1"),
            "postgres://u:p@127.0.0.1:5432/t1"
        );
        assert_eq!(
            with_database("postgresql://u@h/db?sslmode=disable", "t2"),
            "postgresql://u@h/t2?sslmode=disable"
        );
        assert_eq!(with_database("postgres://u@h", "t3"), "postgres://u@h/t3");
    }

    mod needs_postgres {
        use super::super::*;

        /// The throwaway cluster starts, answers on its URL's port, and is gone after drop.
        #[test]
        #[ignore = "needs PostgreSQL (initdb/postgres, or FLEETFN_TEST_POSTGRES_URL); run by scripts/test (opt out: FLEETFN_TEST_OPT_OUT=postgres)"]
        fn a_cluster_starts_and_is_removed_on_drop() {
            if std::env::var(URL_VAR).is_ok_and(|u| !u.is_empty()) {
                // Nothing of ours to start or remove; the URL is the user's.
                let pg = crate::require(crate::POSTGRES, TestPostgres::start());
                assert!(pg.admin_url().starts_with("postgres"));
                return;
            }
            let pg = crate::require(crate::POSTGRES, TestPostgres::start());
            let port: u16 = pg
                .admin_url()
                .rsplit_once(':')
                .and_then(|(_, rest)| rest.split('/').next())
                .and_then(|p| p.parse().ok())
                .expect("a port in the admin URL");
            assert!(
                std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
                "nothing listens on {port}"
            );
            let base = pg
                .dir()
                .expect("a throwaway cluster's directory")
                .to_path_buf();
            assert!(base.join("postgres.log").is_file());
            drop(pg);
            assert!(!base.exists(), "{} left behind", base.display());
            assert!(
                std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
                "still listening on {port}"
            );
        }
    }
}
