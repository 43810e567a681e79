//! The OS boundary: every system call the helper and the probe make goes through [`Host`].
//! [`LinuxHost`] makes the real calls; [`RecordingHost`] records them (and fakes a small host
//! filesystem) so the mount plan and the order of privileged steps are tested without root.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nix::mount::MsFlags;
use nix::sched::CloneFlags;
use nix::sys::resource::Resource;

use crate::spec::Namespaces;

/// Arguments of one `mount(2)` call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountArgs {
    pub source: Option<PathBuf>,
    pub target: PathBuf,
    pub fstype: Option<String>,
    pub flags: MsFlags,
    pub data: Option<String>,
}

/// What a path is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    Dir,
    File,
    Symlink,
    Other,
}

impl FileKind {
    fn of(file_type: std::fs::FileType) -> Self {
        if file_type.is_symlink() {
            Self::Symlink
        } else if file_type.is_dir() {
            Self::Dir
        } else if file_type.is_file() {
            Self::File
        } else {
            Self::Other
        }
    }
}

/// System calls and host queries used by the helper and the probe.
pub trait Host {
    /// Effective uid of this process.
    fn euid(&self) -> u32;
    /// Whether `path` exists (following symlinks).
    fn exists(&self, path: &Path) -> bool;
    /// Reads a whole (small) file.
    fn read_to_string(&self, path: &Path) -> io::Result<String>;
    /// Kind of `path` itself (`lstat`).
    fn lstat_kind(&self, path: &Path) -> io::Result<FileKind>;
    /// Kind of what `path` points to (`stat`).
    fn stat_kind(&self, path: &Path) -> io::Result<FileKind>;
    /// Target of a symlink.
    fn read_link(&self, path: &Path) -> io::Result<PathBuf>;
    /// Whether a throwaway child process can unshare `namespaces` (probe only; never touches
    /// the calling process, so it is safe from the multithreaded agent).
    fn try_unshare(&self, namespaces: Namespaces) -> io::Result<()>;

    fn mkdir_all(&self, path: &Path) -> io::Result<()>;
    /// Creates an empty regular file (a bind-mount target).
    fn create_file(&self, path: &Path) -> io::Result<()>;
    fn symlink(&self, target: &Path, link: &Path) -> io::Result<()>;
    fn mount(&self, args: &MountArgs) -> io::Result<()>;
    fn unshare(&self, flags: CloneFlags) -> io::Result<()>;
    /// Makes `new_root` (a mount point) the root, detaches the old root and changes to `/`.
    fn pivot_root(&self, new_root: &Path) -> io::Result<()>;
    fn chdir(&self, path: &Path) -> io::Result<()>;
    fn sethostname(&self, name: &str) -> io::Result<()>;
    /// Sets soft and hard limit to `value`.
    fn setrlimit(&self, resource: Resource, value: u64) -> io::Result<()>;
    /// Empties the capability bounding set, so no later exec can gain capabilities.
    fn drop_bounding_set(&self) -> io::Result<()>;
    fn setgroups_empty(&self) -> io::Result<()>;
    fn setgid(&self, gid: u32) -> io::Result<()>;
    fn setuid(&self, uid: u32) -> io::Result<()>;
    /// `(real uid, effective uid, real gid, effective gid)`.
    fn ids(&self) -> (u32, u32, u32, u32);
    fn set_no_new_privs(&self) -> io::Result<()>;
    /// SIGKILL this process when its parent (the helper's supervisor) dies.
    fn set_parent_death_signal(&self) -> io::Result<()>;
    /// Marks every descriptor from `first` up close-on-exec.
    fn cloexec_from(&self, first: u32) -> io::Result<()>;
    /// Joins the network namespace `path` names.
    fn setns_net(&self, path: &Path) -> io::Result<()>;
    /// Installs the default system call filter ([`crate::seccomp`]).
    fn install_seccomp(&self) -> io::Result<()>;
}

/// The real host.
#[derive(Clone, Copy, Debug, Default)]
pub struct LinuxHost;

fn nix_io<T>(result: nix::Result<T>) -> io::Result<T> {
    result.map_err(io::Error::from)
}

impl Host for LinuxHost {
    fn euid(&self) -> u32 {
        nix::unistd::geteuid().as_raw()
    }

    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }

    fn read_to_string(&self, path: &Path) -> io::Result<String> {
        std::fs::read_to_string(path)
    }

    fn lstat_kind(&self, path: &Path) -> io::Result<FileKind> {
        Ok(FileKind::of(std::fs::symlink_metadata(path)?.file_type()))
    }

    fn stat_kind(&self, path: &Path) -> io::Result<FileKind> {
        Ok(FileKind::of(std::fs::metadata(path)?.file_type()))
    }

    fn read_link(&self, path: &Path) -> io::Result<PathBuf> {
        std::fs::read_link(path)
    }

    fn try_unshare(&self, namespaces: Namespaces) -> io::Result<()> {
        let flags = namespaces.clone_flags();
        let (program, args): (&str, &[&str]) = ["/bin/true", "/usr/bin/true"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .map_or(("/bin/sh", &["-c", ":"]), |p| (p, &[]));
        let mut command = Command::new(program);
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: the closure runs between fork and exec in the child. It only makes the
        // unshare(2) system call and converts an errno into an io::Error without allocating,
        // both async-signal-safe; it touches no lock or shared state of the parent.
        unsafe {
            command.pre_exec(move || nix::sched::unshare(flags).map_err(io::Error::from));
        }
        let status = command.status()?;
        if status.success() {
            Ok(())
        } else {
            Err(io::Error::other(format!("{program} exited with {status}")))
        }
    }

    fn mkdir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir_all(path)
    }

    fn create_file(&self, path: &Path) -> io::Result<()> {
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map(drop)
    }

    fn symlink(&self, target: &Path, link: &Path) -> io::Result<()> {
        std::os::unix::fs::symlink(target, link)
    }

    fn mount(&self, args: &MountArgs) -> io::Result<()> {
        nix_io(nix::mount::mount(
            args.source.as_deref(),
            &args.target,
            args.fstype.as_deref(),
            args.flags,
            args.data.as_deref(),
        ))
    }

    fn unshare(&self, flags: CloneFlags) -> io::Result<()> {
        nix_io(nix::sched::unshare(flags))
    }

    fn pivot_root(&self, new_root: &Path) -> io::Result<()> {
        // runc's trick: pivot onto "." with the old root stacked on top of it, then detach the
        // old root; no put_old directory is needed inside the new root.
        nix_io(nix::unistd::chdir(new_root))?;
        nix_io(nix::unistd::pivot_root(".", "."))?;
        nix_io(nix::mount::umount2(".", nix::mount::MntFlags::MNT_DETACH))?;
        nix_io(nix::unistd::chdir("/"))
    }

    fn chdir(&self, path: &Path) -> io::Result<()> {
        nix_io(nix::unistd::chdir(path))
    }

    fn sethostname(&self, name: &str) -> io::Result<()> {
        nix_io(nix::unistd::sethostname(name))
    }

    fn setrlimit(&self, resource: Resource, value: u64) -> io::Result<()> {
        nix_io(nix::sys::resource::setrlimit(resource, value, value))
    }

    fn drop_bounding_set(&self) -> io::Result<()> {
        for cap in 0..64u32 {
            // SAFETY: PR_CAPBSET_DROP takes only integer arguments; no memory is passed.
            let rc =
                unsafe { libc::prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(cap), 0, 0, 0) };
            if rc != 0 {
                let err = io::Error::last_os_error();
                // EINVAL: past the kernel's last capability; we are done.
                if err.raw_os_error() == Some(libc::EINVAL) && cap > 0 {
                    return Ok(());
                }
                return Err(err);
            }
        }
        Ok(())
    }

    fn setgroups_empty(&self) -> io::Result<()> {
        nix_io(nix::unistd::setgroups(&[]))
    }

    fn setgid(&self, gid: u32) -> io::Result<()> {
        nix_io(nix::unistd::setgid(nix::unistd::Gid::from_raw(gid)))
    }

    fn setuid(&self, uid: u32) -> io::Result<()> {
        nix_io(nix::unistd::setuid(nix::unistd::Uid::from_raw(uid)))
    }

    fn ids(&self) -> (u32, u32, u32, u32) {
        use nix::unistd::{getegid, geteuid, getgid, getuid};
        (
            getuid().as_raw(),
            geteuid().as_raw(),
            getgid().as_raw(),
            getegid().as_raw(),
        )
    }

    fn set_no_new_privs(&self) -> io::Result<()> {
        nix_io(nix::sys::prctl::set_no_new_privs())
    }

    fn set_parent_death_signal(&self) -> io::Result<()> {
        nix_io(nix::sys::prctl::set_pdeathsig(
            nix::sys::signal::Signal::SIGKILL,
        ))
    }

    fn cloexec_from(&self, first: u32) -> io::Result<()> {
        // SAFETY: close_range(2) with CLOSE_RANGE_CLOEXEC only sets flags on descriptors of
        // this process; it takes integers and cannot invalidate memory.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_close_range,
                first,
                u32::MAX,
                libc::CLOSE_RANGE_CLOEXEC,
            )
        };
        if rc == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if !matches!(err.raw_os_error(), Some(libc::ENOSYS | libc::EINVAL)) {
            return Err(err);
        }
        // Kernels before 5.11: walk /proc/self/fd instead (collect first; the walk opens one).
        let fds: Vec<i32> = std::fs::read_dir("/proc/self/fd")?
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .filter(|&fd| u32::try_from(fd).is_ok_and(|fd| fd >= first))
            .collect();
        for fd in fds {
            // SAFETY: F_SETFD only changes the close-on-exec flag of a descriptor number; a
            // number closed meanwhile (the directory walk's own) yields EBADF, ignored.
            unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
        }
        Ok(())
    }

    fn setns_net(&self, path: &Path) -> io::Result<()> {
        let ns = std::fs::File::open(path)?;
        nix_io(nix::sched::setns(ns, CloneFlags::CLONE_NEWNET))
    }

    fn install_seccomp(&self) -> io::Result<()> {
        crate::seccomp::install_default().map_err(io::Error::other)
    }
}

/// One recorded side-effecting call of [`RecordingHost`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Call {
    Mkdir(PathBuf),
    CreateFile(PathBuf),
    Symlink { target: PathBuf, link: PathBuf },
    Mount(MountArgs),
    Unshare(CloneFlags),
    PivotRoot(PathBuf),
    Chdir(PathBuf),
    SetHostname(String),
    SetRlimit(Resource, u64),
    DropBoundingSet,
    SetGroupsEmpty,
    SetGid(u32),
    SetUid(u32),
    NoNewPrivs,
    ParentDeathSignal,
    CloexecFrom(u32),
    SetnsNet(PathBuf),
    InstallSeccomp,
}

/// An entry of [`RecordingHost`]'s fake filesystem.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FakeEntry {
    Dir,
    File(String),
    Symlink(PathBuf),
}

/// A fake host for unit tests: queries are answered from a small in-memory filesystem,
/// side-effecting calls are recorded in order and succeed unless `fail` says otherwise. It
/// models uid changes the way the kernel does: after `setuid(n != 0)`, `setuid(0)` and
/// `setgid(0)` fail with `EPERM`.
#[derive(Debug)]
pub struct RecordingHost {
    /// Effective uid reported by [`Host::euid`] (and the starting uid).
    pub euid: u32,
    /// The fake filesystem (absolute paths).
    pub entries: BTreeMap<PathBuf, FakeEntry>,
    /// Namespaces [`Host::try_unshare`] succeeds for.
    pub unshareable: Namespaces,
    /// Calls for which this returns true fail with `EPERM` (after being recorded).
    pub fail: Option<fn(&Call) -> bool>,
    calls: RefCell<Vec<Call>>,
    uid: Cell<u32>,
    gid: Cell<u32>,
}

impl RecordingHost {
    /// A root host with an empty filesystem where every namespace can be unshared.
    pub fn root() -> Self {
        Self::with_euid(0)
    }

    /// A host whose process runs as `euid`.
    pub fn with_euid(euid: u32) -> Self {
        Self {
            euid,
            entries: BTreeMap::new(),
            unshareable: Namespaces::all(),
            fail: None,
            calls: RefCell::new(Vec::new()),
            uid: Cell::new(euid),
            gid: Cell::new(euid),
        }
    }

    /// Adds a directory (and its parents).
    pub fn dir(mut self, path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        for ancestor in path.ancestors() {
            self.entries
                .entry(ancestor.to_path_buf())
                .or_insert(FakeEntry::Dir);
        }
        self
    }

    /// Adds a file with `content` (and its parent directories).
    pub fn file(self, path: impl Into<PathBuf>, content: &str) -> Self {
        let path = path.into();
        let mut this = match path.parent() {
            Some(parent) => self.dir(parent),
            None => self,
        };
        this.entries
            .insert(path, FakeEntry::File(content.to_owned()));
        this
    }

    /// Adds a symlink `path -> target`.
    pub fn symlink(mut self, path: impl Into<PathBuf>, target: impl Into<PathBuf>) -> Self {
        self.entries
            .insert(path.into(), FakeEntry::Symlink(target.into()));
        self
    }

    /// The calls recorded so far.
    pub fn calls(&self) -> Vec<Call> {
        self.calls.borrow().clone()
    }

    fn record(&self, call: Call) -> io::Result<()> {
        let failed = self.fail.is_some_and(|f| f(&call));
        self.calls.borrow_mut().push(call);
        if failed {
            Err(io::Error::from_raw_os_error(libc::EPERM))
        } else {
            Ok(())
        }
    }

    fn resolve(&self, path: &Path) -> Option<&FakeEntry> {
        let mut path = path.to_path_buf();
        for _ in 0..8 {
            match self.entries.get(&path)? {
                FakeEntry::Symlink(target) => {
                    path = path.parent().unwrap_or(Path::new("/")).join(target);
                }
                entry => return Some(entry),
            }
        }
        None
    }
}

fn kind(entry: &FakeEntry) -> FileKind {
    match entry {
        FakeEntry::Dir => FileKind::Dir,
        FakeEntry::File(_) => FileKind::File,
        FakeEntry::Symlink(_) => FileKind::Symlink,
    }
}

fn not_found() -> io::Error {
    io::Error::from(io::ErrorKind::NotFound)
}

impl Host for RecordingHost {
    fn euid(&self) -> u32 {
        self.euid
    }

    fn exists(&self, path: &Path) -> bool {
        self.resolve(path).is_some()
    }

    fn read_to_string(&self, path: &Path) -> io::Result<String> {
        match self.resolve(path) {
            Some(FakeEntry::File(content)) => Ok(content.clone()),
            _ => Err(not_found()),
        }
    }

    fn lstat_kind(&self, path: &Path) -> io::Result<FileKind> {
        self.entries.get(path).map(kind).ok_or_else(not_found)
    }

    fn stat_kind(&self, path: &Path) -> io::Result<FileKind> {
        self.resolve(path).map(kind).ok_or_else(not_found)
    }

    fn read_link(&self, path: &Path) -> io::Result<PathBuf> {
        match self.entries.get(path) {
            Some(FakeEntry::Symlink(target)) => Ok(target.clone()),
            _ => Err(io::Error::from_raw_os_error(libc::EINVAL)),
        }
    }

    fn try_unshare(&self, namespaces: Namespaces) -> io::Result<()> {
        if namespaces.intersect(self.unshareable) == namespaces {
            Ok(())
        } else {
            Err(io::Error::from_raw_os_error(libc::EPERM))
        }
    }

    fn mkdir_all(&self, path: &Path) -> io::Result<()> {
        self.record(Call::Mkdir(path.to_path_buf()))
    }

    fn create_file(&self, path: &Path) -> io::Result<()> {
        self.record(Call::CreateFile(path.to_path_buf()))
    }

    fn symlink(&self, target: &Path, link: &Path) -> io::Result<()> {
        self.record(Call::Symlink {
            target: target.to_path_buf(),
            link: link.to_path_buf(),
        })
    }

    fn mount(&self, args: &MountArgs) -> io::Result<()> {
        self.record(Call::Mount(args.clone()))
    }

    fn unshare(&self, flags: CloneFlags) -> io::Result<()> {
        self.record(Call::Unshare(flags))
    }

    fn pivot_root(&self, new_root: &Path) -> io::Result<()> {
        self.record(Call::PivotRoot(new_root.to_path_buf()))
    }

    fn chdir(&self, path: &Path) -> io::Result<()> {
        self.record(Call::Chdir(path.to_path_buf()))
    }

    fn sethostname(&self, name: &str) -> io::Result<()> {
        self.record(Call::SetHostname(name.to_owned()))
    }

    fn setrlimit(&self, resource: Resource, value: u64) -> io::Result<()> {
        self.record(Call::SetRlimit(resource, value))
    }

    fn drop_bounding_set(&self) -> io::Result<()> {
        self.record(Call::DropBoundingSet)
    }

    fn setgroups_empty(&self) -> io::Result<()> {
        self.record(Call::SetGroupsEmpty)
    }

    fn setgid(&self, gid: u32) -> io::Result<()> {
        self.record(Call::SetGid(gid))?;
        if self.uid.get() != 0 && gid != self.gid.get() {
            return Err(io::Error::from_raw_os_error(libc::EPERM));
        }
        self.gid.set(gid);
        Ok(())
    }

    fn setuid(&self, uid: u32) -> io::Result<()> {
        self.record(Call::SetUid(uid))?;
        if self.uid.get() != 0 && uid != self.uid.get() {
            return Err(io::Error::from_raw_os_error(libc::EPERM));
        }
        self.uid.set(uid);
        Ok(())
    }

    fn ids(&self) -> (u32, u32, u32, u32) {
        (
            self.uid.get(),
            self.uid.get(),
            self.gid.get(),
            self.gid.get(),
        )
    }

    fn set_no_new_privs(&self) -> io::Result<()> {
        self.record(Call::NoNewPrivs)
    }

    fn set_parent_death_signal(&self) -> io::Result<()> {
        self.record(Call::ParentDeathSignal)
    }

    fn cloexec_from(&self, first: u32) -> io::Result<()> {
        self.record(Call::CloexecFrom(first))
    }

    fn setns_net(&self, path: &Path) -> io::Result<()> {
        self.record(Call::SetnsNet(path.to_path_buf()))
    }

    fn install_seccomp(&self) -> io::Result<()> {
        self.record(Call::InstallSeccomp)
    }
}
