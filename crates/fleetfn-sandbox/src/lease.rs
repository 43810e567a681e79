//! Host-wide leases: a lease is an exclusive `flock` on a file in a directory every fleetfn
//! process on the host shares (`/run/fleetfn` by default). The kernel drops the lock when its
//! holder exits, however it exits, so a lease is never left behind by a crash and "not held"
//! means "its owner is dead".
//!
//! Two uses: [`LeaseDir::acquire_slot`] hands out environment slots (each slot is a uid and an
//! address block, so no two live environments on the host share either, whichever agent or
//! server started them), and [`LeaseDir::hold`] / [`LeaseDir::is_held`] let an agent mark its
//! instance's cgroup slice as alive, so another agent's sweep removes only the slices of
//! instances known to be dead.

use std::fs::{File, OpenOptions, TryLockError};
use std::io;
use std::path::{Path, PathBuf};

/// Default directory of the host's leases.
pub const DEFAULT_LEASE_DIR: &str = "/run/fleetfn";

/// A directory of lease files.
#[derive(Clone, Debug)]
pub struct LeaseDir {
    dir: PathBuf,
}

/// A held lease; dropping it releases the lock. The file stays, empty, for the next holder,
/// unless the lease was taken with [`LeaseDir::hold_once`].
#[derive(Debug)]
pub struct Lease {
    file: File,
    name: String,
    /// Removed (while still locked) on drop.
    remove: Option<PathBuf>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(path) = self.remove.take() {
            let _ = std::fs::remove_file(path);
        }
        // Unlock explicitly rather than by closing: a child forked meanwhile by any thread
        // shares the open file description (and so the lock) until it execs, and LOCK_UN on
        // any copy releases it at once.
        let _ = self.file.unlock();
    }
}

impl Lease {
    /// The lease's name (for a slot, its number).
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// A held environment slot.
#[derive(Debug)]
pub struct SlotLease {
    slot: u32,
    _lease: Lease,
}

impl SlotLease {
    /// The slot number, below the `count` it was acquired with.
    pub fn slot(&self) -> u32 {
        self.slot
    }
}

/// Lease names are plain file names.
fn check_name(name: &str) -> io::Result<()> {
    if name.is_empty()
        || name.starts_with('.')
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("lease name {name:?} must be a plain file name"),
        ));
    }
    Ok(())
}

impl LeaseDir {
    /// Leases under `dir` (created with mode 0700 on first use).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    fn file(&self, sub: &str, name: &str) -> io::Result<File> {
        check_name(name)?;
        let dir = self.dir.join(sub);
        std::fs::create_dir_all(&dir)?;
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join(name))
    }

    /// Takes the lease `name` of kind `sub`; `Ok(None)` when another live process holds it.
    pub fn try_hold(&self, sub: &str, name: &str) -> io::Result<Option<Lease>> {
        let file = self.file(sub, name)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(Lease {
                file,
                name: name.to_owned(),
                remove: None,
            })),
            Err(TryLockError::WouldBlock) => Ok(None),
            Err(TryLockError::Error(e)) => Err(e),
        }
    }

    /// Takes the lease `name` of kind `sub`, failing when a live process holds it.
    pub fn hold(&self, sub: &str, name: &str) -> io::Result<Lease> {
        self.try_hold(sub, name)?.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::AddrInUse,
                format!(
                    "lease {sub}/{name} in {} is held by another process",
                    self.dir.display()
                ),
            )
        })
    }

    /// [`Self::hold`] for a name used once (an environment id): the file is removed when the
    /// lease is dropped, so names that never come back leave nothing behind.
    pub fn hold_once(&self, sub: &str, name: &str) -> io::Result<Lease> {
        let mut lease = self.hold(sub, name)?;
        lease.remove = Some(self.dir.join(sub).join(name));
        Ok(lease)
    }

    /// Whether a live process holds `sub/name`. A lease file that does not exist is not held.
    /// (The check takes and releases the lock, so a holder starting at that instant may see
    /// its `hold` fail once; holders take their lease before creating what it guards.)
    pub fn is_held(&self, sub: &str, name: &str) -> io::Result<bool> {
        check_name(name)?;
        let path = self.dir.join(sub).join(name);
        let file = match OpenOptions::new().read(true).write(true).open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        match file.try_lock() {
            Ok(()) => Ok(false),
            Err(TryLockError::WouldBlock) => Ok(true),
            Err(TryLockError::Error(e)) => Err(e),
        }
    }

    /// Takes the first free slot in `0..count`, starting the search at `hint % count` (so
    /// consecutive environments do not all contend for slot 0). Fails when all are held.
    pub fn acquire_slot(&self, count: u32, hint: u32) -> io::Result<SlotLease> {
        if count == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "no environment slots configured",
            ));
        }
        for i in 0..count {
            let slot = (hint % count + i) % count;
            if let Some(lease) = self.try_hold("slots", &slot.to_string())? {
                return Ok(SlotLease {
                    slot,
                    _lease: lease,
                });
            }
        }
        Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!(
                "all {count} environment slots in {} are in use",
                self.dir.display()
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_exclusive_until_dropped() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = LeaseDir::new(tmp.path());
        let a = dir.acquire_slot(3, 1).unwrap();
        let b = dir.acquire_slot(3, 1).unwrap();
        let c = dir.acquire_slot(3, 1).unwrap();
        let mut got = [a.slot(), b.slot(), c.slot()];
        got.sort_unstable();
        assert_eq!(got, [0, 1, 2]);
        assert_eq!(a.slot(), 1, "the search starts at the hint");
        let err = dir.acquire_slot(3, 0).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        drop(b);
        let again = dir.acquire_slot(3, 0).unwrap();
        assert_eq!(again.slot(), 2);
    }

    #[test]
    fn holds_are_visible_to_others_and_end_with_the_holder() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = LeaseDir::new(tmp.path());
        assert!(
            !dir.is_held("instances", "i-1").unwrap(),
            "no file: not held"
        );
        let lease = dir.hold("instances", "i-1").unwrap();
        assert_eq!(lease.name(), "i-1");
        assert!(dir.is_held("instances", "i-1").unwrap());
        assert_eq!(
            dir.hold("instances", "i-1").unwrap_err().kind(),
            io::ErrorKind::AddrInUse
        );
        drop(lease);
        assert!(!dir.is_held("instances", "i-1").unwrap());
    }

    #[test]
    fn a_lease_held_by_another_process_is_seen_and_freed_when_it_exits() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = LeaseDir::new(tmp.path());
        dir.try_hold("instances", "i-2").unwrap(); // creates the file, released at once
        let path = tmp.path().join("instances/i-2");
        // flock(1) holds the lock until its child, `read`, returns on our closing its stdin.
        let mut child = std::process::Command::new("flock")
            .arg(&path)
            .args(["sh", "-c", "echo locked; read x"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("flock(1) from util-linux");
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        assert_eq!(line.trim(), "locked");
        assert!(dir.is_held("instances", "i-2").unwrap());
        drop(child.stdin.take());
        child.wait().unwrap();
        assert!(!dir.is_held("instances", "i-2").unwrap());
    }

    #[test]
    fn one_time_leases_leave_no_file() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = LeaseDir::new(tmp.path());
        let lease = dir.hold_once("cgroups", "e-1").unwrap();
        assert!(tmp.path().join("cgroups/e-1").exists());
        assert!(dir.is_held("cgroups", "e-1").unwrap());
        drop(lease);
        assert!(!tmp.path().join("cgroups/e-1").exists());
        assert!(!dir.is_held("cgroups", "e-1").unwrap());
    }

    #[test]
    fn names_must_be_plain() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = LeaseDir::new(tmp.path());
        for bad in ["", "../x", "a/b", ".hidden"] {
            assert!(dir.hold("instances", bad).is_err(), "{bad:?}");
        }
    }
}
