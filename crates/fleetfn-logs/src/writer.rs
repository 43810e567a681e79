//! One environment's log: its own segment files, rotated by size and age, pruned with the rest
//! of its version's directory to stay under the cap.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::layout::{is_safe_component, list_segments, segment_name};
use crate::limits::LogLimits;
use crate::prune::prune_version_dir;

/// Writes records (one line each) for one environment into
/// `<version dir>/<env id>.<seq>.jsonl`. Holds an exclusive `flock` on its current segment so
/// pruners leave it alone; buffered, never `fsync`s.
#[derive(Debug)]
pub struct SegmentWriter {
    dir: PathBuf,
    env_id: String,
    limits: LogLimits,
    seq: u64,
    out: Option<BufWriter<File>>,
    /// Bytes in the current segment, buffered ones included.
    size: u64,
    opened: SystemTime,
    /// Bytes written since the last prune.
    unpruned: u64,
}

impl SegmentWriter {
    /// Creates the directory if needed and starts a segment after the environment's existing
    /// ones (if any).
    pub fn open(dir: &Path, env_id: &str, limits: LogLimits) -> io::Result<Self> {
        if !is_safe_component(env_id) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("environment id {env_id:?} cannot name a log file"),
            ));
        }
        std::fs::create_dir_all(dir)?;
        let seq = list_segments(dir)?
            .iter()
            .filter(|s| s.env_id == env_id)
            .map(|s| s.seq + 1)
            .max()
            .unwrap_or(0);
        let mut w = Self {
            dir: dir.to_owned(),
            env_id: env_id.to_owned(),
            limits,
            seq,
            out: None,
            size: 0,
            opened: SystemTime::now(),
            unpruned: 0,
        };
        w.start_segment()?;
        w.prune();
        Ok(w)
    }

    /// The segment being written.
    pub fn current_path(&self) -> PathBuf {
        self.dir.join(segment_name(&self.env_id, self.seq))
    }

    fn start_segment(&mut self) -> io::Result<()> {
        for _ in 0..1000 {
            let path = self.current_path();
            let opened = OpenOptions::new().write(true).create_new(true).open(&path);
            let file = match opened {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    self.seq += 1;
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    std::fs::create_dir_all(&self.dir)?;
                    OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .open(&path)?
                }
                Err(e) => return Err(e),
            };
            // Pruners hold a segment's lock only for an instant while probing it.
            file.lock()?;
            self.out = Some(BufWriter::with_capacity(64 * 1024, file));
            self.size = 0;
            self.opened = SystemTime::now();
            return Ok(());
        }
        Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "no free segment name",
        ))
    }

    fn close_segment(&mut self) -> io::Result<()> {
        if let Some(mut out) = self.out.take() {
            out.flush()?;
        }
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.close_segment()?;
        self.seq += 1;
        self.start_segment()
    }

    /// Appends one record (`line` without its newline).
    pub fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
        let len = line.len() as u64 + 1;
        let too_big = self.size + len > self.limits.effective_segment_bytes();
        let too_old = self
            .opened
            .elapsed()
            .is_ok_and(|age| age > self.limits.max_age / 4);
        if self.out.is_none() || (self.size > 0 && (too_big || too_old)) {
            self.rotate()?;
            self.prune();
        }
        let Some(out) = self.out.as_mut() else {
            return Err(io::Error::other("no open segment"));
        };
        out.write_all(line)?;
        out.write_all(b"\n")?;
        self.size += len;
        self.unpruned += len;
        if self.unpruned >= self.limits.prune_interval() {
            self.prune();
        }
        Ok(())
    }

    /// Writes buffered records to the file (no `fsync`).
    pub fn flush(&mut self) -> io::Result<()> {
        match self.out.as_mut() {
            Some(out) => out.flush(),
            None => Ok(()),
        }
    }

    /// Brings the version under its cap; when this writer's own segment is what keeps it over,
    /// closes it so that it can go as well.
    fn prune(&mut self) {
        self.unpruned = 0;
        let reserve = self.limits.prune_interval();
        let pruned = prune_version_dir(&self.dir, &self.limits, reserve, SystemTime::now());
        let result = match pruned {
            Ok(o) if o.over && self.size > 0 => self.rotate().and_then(|()| {
                prune_version_dir(&self.dir, &self.limits, reserve, SystemTime::now()).map(drop)
            }),
            Ok(_) => Ok(()),
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            tracing::warn!(dir = %self.dir.display(), error = %e, "pruning function logs failed");
        }
    }
}

impl Drop for SegmentWriter {
    fn drop(&mut self) {
        let _ = self.close_segment();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prune::read_dropped;
    use std::time::Duration;

    fn dir_bytes(d: &Path) -> u64 {
        list_segments(d).unwrap().iter().map(|s| s.size).sum()
    }

    #[test]
    fn rotates_by_size_and_stays_under_the_cap() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path().join("fn").join("1");
        let limits = LogLimits::new(256 * 1024, 1024 * 1024, Duration::from_secs(3600)).unwrap();
        let mut w = SegmentWriter::open(&d, "env-a", limits).unwrap();
        let line = vec![b'x'; 999];
        let mut max_seen = 0;
        for i in 0..10_000 {
            w.write_line(&line).unwrap();
            if i % 100 == 0 {
                w.flush().unwrap();
                max_seen = max_seen.max(dir_bytes(&d));
            }
        }
        w.flush().unwrap();
        assert!(max_seen <= limits.max_bytes, "{max_seen}");
        let segs = list_segments(&d).unwrap();
        assert!(segs.len() >= 3, "{segs:?}");
        assert!(segs.iter().all(|s| s.size <= 256 * 1024), "{segs:?}");
        assert!(dir_bytes(&d) <= limits.max_bytes);
        let dropped = read_dropped(&d);
        let kept: u64 = segs
            .iter()
            .map(|s| std::fs::read(&s.path).unwrap().len() as u64 / 1000)
            .sum();
        assert_eq!(dropped.lines + kept, 10_000, "{dropped:?}");
        assert_eq!(dropped.bytes + dir_bytes(&d), 10_000 * 1000);
    }

    #[test]
    fn flooding_writer_leaves_other_writers_segments_alone() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path().join("v");
        let limits = LogLimits::new(256 * 1024, 1024 * 1024, Duration::from_secs(3600)).unwrap();
        let mut quiet = SegmentWriter::open(&d, "quiet", limits).unwrap();
        quiet.write_line(b"{\"message\":\"still here\"}").unwrap();
        quiet.flush().unwrap();
        let mut loud = SegmentWriter::open(&d, "loud", limits).unwrap();
        for _ in 0..5000 {
            loud.write_line(&[b'y'; 999]).unwrap();
        }
        loud.flush().unwrap();
        let text = std::fs::read_to_string(quiet.current_path()).unwrap();
        assert!(text.contains("still here"));
        assert!(dir_bytes(&d) <= limits.max_bytes);
        // A reopened environment continues after its last segment.
        let before = loud.current_path();
        drop(loud);
        let again = SegmentWriter::open(&d, "loud", limits).unwrap();
        assert!(again.current_path() > before);
    }

    #[test]
    fn refuses_unsafe_env_ids() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(SegmentWriter::open(tmp.path(), "../x", LogLimits::default()).is_err());
    }
}
