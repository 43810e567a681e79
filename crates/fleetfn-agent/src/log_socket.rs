//! The log streams of a Python runtime's worker processes, as AWS gives them: awslambdaric in
//! multi-concurrent mode forks `AWS_LAMBDA_MAX_CONCURRENCY` workers, and each connects twice
//! to the Unix stream socket named by `_LAMBDA_TELEMETRY_LOG_FD_PROVIDER_SOCKET` and puts the
//! connections on its stdout and stderr. Every worker then writes to streams of its own, so
//! concurrent invokes' lines never run together, however long they are and however the
//! function writes them.
//!
//! The socket is a file of the environment's directory (mode `0600`; a sandboxing launcher
//! gives it to the environment's uid and binds it read-only at [`SANDBOX_PATH`]). When that
//! path is too long for a socket address (108 bytes), it is bound, and reached by processes
//! of the agent's user, through the agent's descriptor of the directory
//! (`/proc/<agent pid>/fd/<n>/logs.sock`), so nothing lives outside the directory. Each
//! accepted connection is read exactly like the runtime's own stdout and stderr
//! ([`crate::logs::pump`]). A worker's first connection is its stdout, its second its stderr
//! (told apart by the peer's pid). At most [`max_connections`] are read at once (later ones
//! are closed at once); accepting ends when the environment does.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UnixListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::logs::{InFlightIds, LogSink};

/// The variable awslambdaric reads the socket's path from (reserved: a function cannot set it).
pub const SOCKET_ENV: &str = "_LAMBDA_TELEMETRY_LOG_FD_PROVIDER_SOCKET";

/// The socket's file in the environment's directory.
const SOCKET_FILE: &str = "logs.sock";

/// Longest path a Unix socket address holds (`sun_path` is 108 bytes with its NUL).
const MAX_SOCKET_PATH: usize = 107;

/// Where a sandbox with its own mount namespace has the socket.
pub const SANDBOX_PATH: &str = "/var/runtime/fleetfn-logs.sock";

/// Pause after a failed `accept` (out of file descriptors), so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Connections read at once for an environment of `max_concurrency` workers: two per
/// worker, and a few for processes the function starts itself.
pub(crate) fn max_connections(max_concurrency: u32) -> usize {
    2 * max_concurrency.max(1) as usize + 4
}

/// Where an environment's log socket is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SocketPaths {
    /// Its file (what a sandbox binds).
    pub host: PathBuf,
    /// What a process of the agent's user connects to: the file, or a path through the
    /// agent's descriptor of its directory when the file's path is too long.
    pub connect: PathBuf,
}

/// An environment's log socket, bound and not yet served.
#[derive(Debug)]
pub(crate) struct LogSocket {
    listener: UnixListener,
    paths: SocketPaths,
    /// The directory, open while the socket is served, when `/proc` paths reach the socket.
    _dir: Option<std::fs::File>,
}

impl LogSocket {
    /// Binds `<env_dir>/logs.sock` (replacing a leftover file), readable and writable by its
    /// owner only. Needs a Tokio runtime.
    pub(crate) fn bind(env_dir: &Path) -> io::Result<Self> {
        use std::os::fd::AsRawFd;
        use std::os::unix::ffi::OsStrExt;
        use std::os::unix::fs::PermissionsExt;
        let host = env_dir.join(SOCKET_FILE);
        match std::fs::remove_file(&host) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let (listener, connect, dir) = if host.as_os_str().as_bytes().len() <= MAX_SOCKET_PATH {
            (UnixListener::bind(&host)?, host.clone(), None)
        } else {
            let dir = std::fs::File::open(env_dir)?;
            let fd = dir.as_raw_fd();
            let listener = UnixListener::bind(format!("/proc/self/fd/{fd}/{SOCKET_FILE}"))?;
            let connect = PathBuf::from(format!(
                "/proc/{}/fd/{fd}/{SOCKET_FILE}",
                std::process::id()
            ));
            (listener, connect, Some(dir))
        };
        std::fs::set_permissions(&host, std::fs::Permissions::from_mode(0o600))?;
        Ok(Self {
            listener,
            paths: SocketPaths { host, connect },
            _dir: dir,
        })
    }

    /// Where the socket is.
    pub(crate) fn paths(&self) -> &SocketPaths {
        &self.paths
    }

    /// Accepts connections until `stop`, reading each into `sink` as a `stdout` or `stderr`
    /// stream; then waits for the open ones to end (the caller bounds that wait).
    pub(crate) async fn serve(
        self,
        max_connections: usize,
        sink: LogSink,
        in_flight: Arc<InFlightIds>,
        telemetry: Option<fleetfn_runtime_api::Telemetry>,
        stop: CancellationToken,
    ) {
        let mut streams = JoinSet::new();
        // Connections seen per peer pid: the first is the worker's stdout, the second its stderr.
        let mut seen: HashMap<i32, u32> = HashMap::new();
        let mut warned = false;
        loop {
            tokio::select! {
                biased;
                () = stop.cancelled() => break,
                Some(_) = streams.join_next(), if !streams.is_empty() => {}
                accepted = self.listener.accept() => {
                    let stream = match accepted {
                        Ok((s, _)) => s,
                        Err(e) => {
                            tracing::debug!(error = %e, "accepting a log stream failed");
                            tokio::time::sleep(ACCEPT_BACKOFF).await;
                            continue;
                        }
                    };
                    if streams.len() >= max_connections {
                        if !std::mem::replace(&mut warned, true) {
                            tracing::warn!(max_connections, "too many log streams; closing the new ones");
                        }
                        continue;
                    }
                    if seen.len() > 4 * max_connections {
                        seen.clear();
                    }
                    let pid = stream.peer_cred().ok().and_then(|c| c.pid()).unwrap_or(0);
                    let n = seen.entry(pid).or_insert(0);
                    *n += 1;
                    let name = if *n % 2 == 1 { "stdout" } else { "stderr" };
                    streams.spawn(crate::logs::pump(
                        stream,
                        name,
                        sink.clone(),
                        Arc::clone(&in_flight),
                        None,
                        telemetry.clone(),
                    ));
                }
            }
        }
        drop(self.listener);
        drop(self._dir);
        while streams.join_next().await.is_some() {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[test]
    fn two_streams_per_worker_and_a_few_more() {
        assert_eq!(max_connections(0), 6);
        assert_eq!(max_connections(4), 12);
    }

    #[tokio::test]
    async fn a_long_environment_path_is_reached_through_the_agents_descriptor() {
        let dir = tempfile::tempdir().unwrap();
        let env_dir = dir.path().join("e".repeat(120));
        std::fs::create_dir_all(&env_dir).unwrap();
        let sock = LogSocket::bind(&env_dir).unwrap();
        let paths = sock.paths().clone();
        assert_eq!(paths.host, env_dir.join(SOCKET_FILE));
        assert!(paths.host.exists());
        assert!(
            paths
                .connect
                .starts_with(format!("/proc/{}/fd/", std::process::id())),
            "{}",
            paths.connect.display()
        );
        tokio::net::UnixStream::connect(&paths.connect)
            .await
            .unwrap();
        drop(sock);
        assert!(
            tokio::net::UnixStream::connect(&paths.connect)
                .await
                .is_err()
        );
        // A short enough path is the file's.
        let sock = LogSocket::bind(dir.path()).unwrap();
        assert_eq!(sock.paths().connect, dir.path().join(SOCKET_FILE));
    }

    #[tokio::test]
    async fn streams_are_read_until_stop_and_extra_ones_closed() {
        let dir = tempfile::tempdir().unwrap();
        let sock = LogSocket::bind(dir.path()).unwrap();
        let path = sock.paths().connect.clone();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let logs = dir.path().join("logs");
        let (sink, writer) = LogSink::open(logs.clone(), "e-1".into(), Default::default());
        let stop = CancellationToken::new();
        let served = tokio::spawn(sock.serve(
            2,
            sink.clone(),
            Arc::new(InFlightIds::default()),
            None,
            stop.clone(),
        ));
        let mut out = tokio::net::UnixStream::connect(&path).await.unwrap();
        let mut err = tokio::net::UnixStream::connect(&path).await.unwrap();
        // Over the bound: closed at once (its read sees EOF).
        let mut extra = tokio::net::UnixStream::connect(&path).await.unwrap();
        let mut b = [0u8; 1];
        let n = tokio::io::AsyncReadExt::read(&mut extra, &mut b)
            .await
            .unwrap();
        assert_eq!(n, 0);
        out.write_all(b"to out\n").await.unwrap();
        err.write_all(b"to err\n").await.unwrap();
        drop((out, err));
        stop.cancel();
        served.await.unwrap();
        assert!(
            tokio::net::UnixStream::connect(&path).await.is_err(),
            "no longer accepting"
        );
        sink.flush().await;
        drop(sink);
        writer.await.unwrap();
        let text: String = std::fs::read_dir(&logs)
            .unwrap()
            .flatten()
            .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
            .collect();
        let recs: Vec<serde_json::Value> = text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        let stream_of = |m: &str| {
            recs.iter()
                .find(|r| r["message"] == m)
                .map(|r| r["stream"].clone())
        };
        assert_eq!(stream_of("to out"), Some("stdout".into()), "{recs:?}");
        assert_eq!(stream_of("to err"), Some("stderr".into()), "{recs:?}");
    }
}
