//! The new root of an environment, as an ordered plan of mounts and file operations that
//! [`apply`] carries out inside the private mount namespace.
//!
//! Layout: a small tmpfs on `rootfs_dir` holds mount points only; host `/usr`, `/bin`, `/lib`,
//! `/lib64`, `/sbin`, `/etc` (those that exist; host symlinks recreated as symlinks), the code at
//! `/var/task`, the layers at `/opt`, the extra binds and the environment's `/etc/resolv.conf`
//! and `/etc/hosts` are bound read-only, nosuid and nodev; `/tmp` is a size-capped
//! tmpfs; `/dev` is a tmpfs with `null`, `zero`, `random`, `urandom` bound from the host plus the
//! `fd`/`stdin`/`stdout`/`stderr` symlinks; `/proc` is a fresh procfs of the new pid namespace.
//! Then `pivot_root` and the root tmpfs is remounted read-only.

use std::fmt;
use std::path::{Path, PathBuf};

use nix::mount::MsFlags;

use crate::error::JailError;
use crate::host::{FileKind, Host, MountArgs};
use crate::spec::{OPT_DIR, SYSTEM_DIRS, SandboxSpec, TASK_DIR};

/// Device nodes bound from the host into `/dev`.
pub const DEVICES: [&str; 4] = ["null", "zero", "random", "urandom"];

/// One step of building the new root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RootfsOp {
    Mkdir(PathBuf),
    CreateFile(PathBuf),
    Symlink { target: PathBuf, link: PathBuf },
    Mount(MountArgs),
    PivotRoot(PathBuf),
}

impl fmt::Display for RootfsOp {
    /// Names the step in the helper's one-line failure message.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Mkdir(path) => write!(f, "mkdir {}", path.display()),
            Self::CreateFile(path) => write!(f, "create {}", path.display()),
            Self::Symlink { link, .. } => write!(f, "symlink {}", link.display()),
            Self::Mount(m) if m.flags.contains(MsFlags::MS_REMOUNT) => {
                write!(f, "remount {} read-only", m.target.display())
            }
            Self::Mount(m) if m.flags.contains(MsFlags::MS_BIND) => match &m.source {
                Some(source) => write!(f, "bind {} on {}", source.display(), m.target.display()),
                None => write!(f, "bind on {}", m.target.display()),
            },
            Self::Mount(m) => {
                write!(
                    f,
                    "mount {} on {}",
                    m.fstype.as_deref().unwrap_or("?"),
                    m.target.display()
                )
            }
            Self::PivotRoot(path) => write!(f, "pivot_root {}", path.display()),
        }
    }
}

fn mount(
    source: Option<&Path>,
    target: PathBuf,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<String>,
) -> RootfsOp {
    RootfsOp::Mount(MountArgs {
        source: source.map(Path::to_path_buf),
        target,
        fstype: fstype.map(str::to_owned),
        flags,
        data,
    })
}

fn tmpfs(target: PathBuf, flags: MsFlags, data: String) -> RootfsOp {
    mount(
        Some(Path::new("tmpfs")),
        target,
        Some("tmpfs"),
        flags,
        Some(data),
    )
}

fn remount_ro(target: PathBuf, extra: MsFlags) -> RootfsOp {
    mount(
        None,
        target,
        None,
        MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY | extra,
        None,
    )
}

/// Recursive bind, then a read-only, nosuid, nodev remount of its top mount.
fn bind_ro(ops: &mut Vec<RootfsOp>, source: &Path, target: PathBuf) {
    ops.push(mount(
        Some(source),
        target.clone(),
        None,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None,
    ));
    ops.push(remount_ro(target, MsFlags::MS_NOSUID | MsFlags::MS_NODEV));
}

/// `root` + absolute sandbox `path`.
pub(crate) fn under(root: &Path, path: &Path) -> PathBuf {
    root.join(path.strip_prefix("/").unwrap_or(path))
}

fn stat(host: &dyn Host, what: &str, path: &Path) -> Result<FileKind, JailError> {
    host.stat_kind(path)
        .map_err(|e| JailError::new(format!("{what} {}", path.display()), e))
}

/// Plans the new root for `spec`, asking `host` which host paths exist and what they are.
pub fn plan(spec: &SandboxSpec, host: &dyn Host) -> Result<Vec<RootfsOp>, JailError> {
    let root = spec.rootfs_dir.as_path();
    if stat(host, "rootfs", root)? != FileKind::Dir {
        return Err(JailError::new(
            format!("rootfs {}", root.display()),
            "not a directory",
        ));
    }
    if stat(host, "code", &spec.code_dir)? != FileKind::Dir {
        return Err(JailError::new(
            format!("code {}", spec.code_dir.display()),
            "not a directory",
        ));
    }
    let nosuid_nodev = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    let mut ops = vec![tmpfs(
        root.to_path_buf(),
        nosuid_nodev,
        "mode=0755,size=1m".into(),
    )];

    for dir in SYSTEM_DIRS.map(Path::new) {
        let target = under(root, dir);
        match host.lstat_kind(dir) {
            Ok(FileKind::Symlink) => {
                let link_target = host
                    .read_link(dir)
                    .map_err(|e| JailError::new(format!("readlink {}", dir.display()), e))?;
                ops.push(RootfsOp::Symlink {
                    target: link_target,
                    link: target,
                });
            }
            Ok(FileKind::Dir) => {
                ops.push(RootfsOp::Mkdir(target.clone()));
                bind_ro(&mut ops, dir, target);
            }
            _ => {}
        }
    }

    for (what, etc_file, host_file) in [
        ("resolv.conf", "/etc/resolv.conf", &spec.resolv_conf),
        ("hosts", "/etc/hosts", &spec.hosts_file),
    ] {
        let Some(host_file) = host_file else { continue };
        // Only over a regular file: a symlinked /etc file would point the bind at a path
        // outside the new root.
        let etc_file = Path::new(etc_file);
        if host.lstat_kind(etc_file).ok() != Some(FileKind::File) {
            return Err(JailError::new(
                what,
                format!(
                    "the host's {} is not a regular file, so it cannot be replaced",
                    etc_file.display()
                ),
            ));
        }
        stat(host, what, host_file)?;
        ops.push(mount(
            Some(host_file),
            under(root, etc_file),
            None,
            MsFlags::MS_BIND,
            None,
        ));
        ops.push(remount_ro(
            under(root, etc_file),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        ));
    }

    let task = under(root, Path::new(TASK_DIR));
    ops.push(RootfsOp::Mkdir(task.clone()));
    bind_ro(&mut ops, &spec.code_dir, task);

    if let Some(opt) = &spec.opt_dir {
        if stat(host, "opt", opt)? != FileKind::Dir {
            return Err(JailError::new(
                format!("opt {}", opt.display()),
                "not a directory",
            ));
        }
        let target = under(root, Path::new(OPT_DIR));
        ops.push(RootfsOp::Mkdir(target.clone()));
        bind_ro(&mut ops, opt, target);
    }

    for (source, target) in &spec.extra_ro_binds {
        let target = under(root, target);
        match stat(host, "bind source", source)? {
            FileKind::Dir => ops.push(RootfsOp::Mkdir(target.clone())),
            _ => {
                if let Some(parent) = target.parent() {
                    ops.push(RootfsOp::Mkdir(parent.to_path_buf()));
                }
                ops.push(RootfsOp::CreateFile(target.clone()));
            }
        }
        bind_ro(&mut ops, source, target);
    }

    let tmp = under(root, Path::new("/tmp"));
    ops.push(RootfsOp::Mkdir(tmp.clone()));
    ops.push(tmpfs(
        tmp,
        nosuid_nodev,
        format!("size={}m,mode=1777", spec.tmp_size_mb),
    ));

    let dev = under(root, Path::new("/dev"));
    ops.push(RootfsOp::Mkdir(dev.clone()));
    ops.push(tmpfs(
        dev.clone(),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        "mode=0755,size=64k".into(),
    ));
    for name in DEVICES {
        let node = dev.join(name);
        ops.push(RootfsOp::CreateFile(node.clone()));
        let host_node = Path::new("/dev").join(name);
        ops.push(mount(Some(&host_node), node, None, MsFlags::MS_BIND, None));
    }
    for (link, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        ops.push(RootfsOp::Symlink {
            target: target.into(),
            link: dev.join(link),
        });
    }
    ops.push(remount_ro(dev, MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC));

    let proc = under(root, Path::new("/proc"));
    ops.push(RootfsOp::Mkdir(proc.clone()));
    ops.push(mount(
        Some(Path::new("proc")),
        proc,
        Some("proc"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None,
    ));

    ops.push(RootfsOp::PivotRoot(root.to_path_buf()));
    ops.push(remount_ro(PathBuf::from("/"), nosuid_nodev));
    Ok(ops)
}

/// Carries out `ops` in order; the first failure names its step.
pub fn apply(ops: &[RootfsOp], host: &dyn Host) -> Result<(), JailError> {
    for op in ops {
        let result = match op {
            RootfsOp::Mkdir(path) => host.mkdir_all(path),
            RootfsOp::CreateFile(path) => host.create_file(path),
            RootfsOp::Symlink { target, link } => host.symlink(target, link),
            RootfsOp::Mount(args) => host.mount(args),
            RootfsOp::PivotRoot(path) => host.pivot_root(path),
        };
        result.map_err(|e| JailError::new(op.to_string(), e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::RecordingHost;
    use crate::spec::tests::sample;

    /// A merged-/usr host like Debian 12: /bin, /lib, /lib64, /sbin are symlinks into /usr.
    fn host() -> RecordingHost {
        RecordingHost::root()
            .dir("/usr/bin")
            .dir("/etc")
            .symlink("/bin", "usr/bin")
            .symlink("/lib", "usr/lib")
            .symlink("/sbin", "usr/sbin")
            .dir("/srv/fleetfn/code/abc")
            .dir("/srv/fleetfn/envs/e1/root")
            .dir("/opt/fleetfn/python3.12")
            .file("/opt/fleetfn/extra.conf", "x")
    }

    fn position(ops: &[RootfsOp], pred: impl Fn(&RootfsOp) -> bool) -> usize {
        ops.iter().position(pred).expect("op in plan")
    }

    fn is_mount_on(op: &RootfsOp, target: &str) -> bool {
        matches!(op, RootfsOp::Mount(m) if m.target == Path::new(target))
    }

    #[test]
    fn plan_for_merged_usr_host() {
        let ops = plan(&sample(), &host()).unwrap();
        let text: Vec<String> = ops.iter().map(ToString::to_string).collect();
        let r = "/srv/fleetfn/envs/e1/root";
        let expected = [
            format!("mount tmpfs on {r}"),
            format!("mkdir {r}/usr"),
            format!("bind /usr on {r}/usr"),
            format!("remount {r}/usr read-only"),
            format!("symlink {r}/bin"),
            format!("symlink {r}/lib"),
            format!("symlink {r}/sbin"),
            format!("mkdir {r}/etc"),
            format!("bind /etc on {r}/etc"),
            format!("remount {r}/etc read-only"),
            format!("mkdir {r}/var/task"),
            format!("bind /srv/fleetfn/code/abc on {r}/var/task"),
            format!("remount {r}/var/task read-only"),
            format!("mkdir {r}/var/lang"),
            format!("bind /opt/fleetfn/python3.12 on {r}/var/lang"),
            format!("remount {r}/var/lang read-only"),
            format!("mkdir {r}/tmp"),
            format!("mount tmpfs on {r}/tmp"),
            format!("mkdir {r}/dev"),
            format!("mount tmpfs on {r}/dev"),
            format!("create {r}/dev/null"),
            format!("bind /dev/null on {r}/dev/null"),
            format!("create {r}/dev/zero"),
            format!("bind /dev/zero on {r}/dev/zero"),
            format!("create {r}/dev/random"),
            format!("bind /dev/random on {r}/dev/random"),
            format!("create {r}/dev/urandom"),
            format!("bind /dev/urandom on {r}/dev/urandom"),
            format!("symlink {r}/dev/fd"),
            format!("symlink {r}/dev/stdin"),
            format!("symlink {r}/dev/stdout"),
            format!("symlink {r}/dev/stderr"),
            format!("remount {r}/dev read-only"),
            format!("mkdir {r}/proc"),
            format!("mount proc on {r}/proc"),
            format!("pivot_root {r}"),
            "remount / read-only".to_owned(),
        ];
        assert_eq!(text, expected);
        // /lib64 does not exist on this host, so it is skipped; symlinks keep their targets.
        assert!(ops.contains(&RootfsOp::Symlink {
            target: "usr/lib".into(),
            link: format!("{r}/lib").into()
        }));
    }

    #[test]
    fn mount_flags_and_data() {
        let spec = sample();
        let ops = plan(&spec, &host()).unwrap();
        let get = |target: &str, nth: usize| -> MountArgs {
            ops.iter()
                .filter_map(|op| match op {
                    RootfsOp::Mount(m) if m.target == Path::new(target) => Some(m.clone()),
                    _ => None,
                })
                .nth(nth)
                .unwrap()
        };
        let r = "/srv/fleetfn/envs/e1/root";
        let tmp = get(&format!("{r}/tmp"), 0);
        assert_eq!(tmp.fstype.as_deref(), Some("tmpfs"));
        assert_eq!(tmp.data.as_deref(), Some("size=512m,mode=1777"));
        assert_eq!(tmp.flags, MsFlags::MS_NOSUID | MsFlags::MS_NODEV);

        let task_bind = get(&format!("{r}/var/task"), 0);
        assert_eq!(
            task_bind.source.as_deref(),
            Some(Path::new("/srv/fleetfn/code/abc"))
        );
        assert_eq!(task_bind.flags, MsFlags::MS_BIND | MsFlags::MS_REC);
        let task_ro = get(&format!("{r}/var/task"), 1);
        assert!(
            task_ro
                .flags
                .contains(MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY)
        );
        assert!(
            task_ro
                .flags
                .contains(MsFlags::MS_NOSUID | MsFlags::MS_NODEV)
        );

        let proc = get(&format!("{r}/proc"), 0);
        assert_eq!(proc.fstype.as_deref(), Some("proc"));
        assert!(proc.flags.contains(MsFlags::MS_NOEXEC));

        let dev_null = get(&format!("{r}/dev/null"), 0);
        assert!(
            !dev_null.flags.contains(MsFlags::MS_NODEV),
            "device binds must allow device access"
        );

        let root_ro = get("/", 0);
        assert!(root_ro.flags.contains(MsFlags::MS_RDONLY));
    }

    #[test]
    fn ordering_invariants() {
        let ops = plan(&sample(), &host()).unwrap();
        let r = "/srv/fleetfn/envs/e1/root";
        let pivot = position(&ops, |op| matches!(op, RootfsOp::PivotRoot(_)));
        assert_eq!(
            position(&ops, |op| is_mount_on(op, r)),
            0,
            "root tmpfs comes first"
        );
        // Every mount point is created before its mount, and everything happens before pivot
        // except the final read-only remount of /.
        for (i, op) in ops.iter().enumerate() {
            if let RootfsOp::Mount(m) = op {
                if m.target != Path::new("/") {
                    assert!(i < pivot, "{op} after pivot");
                }
                if m.target != Path::new(r) && !m.flags.contains(MsFlags::MS_REMOUNT) {
                    let created = ops[..i].iter().any(|o| {
                        matches!(o, RootfsOp::Mkdir(p) | RootfsOp::CreateFile(p) if *p == m.target)
                    });
                    assert!(created, "no mount point before {op}");
                }
            }
        }
        assert!(is_mount_on(&ops[pivot + 1], "/"));
        assert_eq!(ops.len(), pivot + 2);
        // Device nodes are bound before /dev is made read-only.
        let dev_ro = position(&ops, |op| {
            op.to_string() == format!("remount {r}/dev read-only")
        });
        let last_dev = ops
            .iter()
            .rposition(|op| op.to_string().contains(&format!("{r}/dev/")))
            .unwrap();
        assert!(last_dev < dev_ro);
    }

    #[test]
    fn file_binds_get_a_file_mount_point() {
        let mut spec = sample();
        spec.extra_ro_binds = vec![(
            "/opt/fleetfn/extra.conf".into(),
            "/opt/conf/extra.conf".into(),
        )];
        let ops = plan(&spec, &host()).unwrap();
        let r = "/srv/fleetfn/envs/e1/root";
        let mkdir = position(&ops, |op| {
            *op == RootfsOp::Mkdir(format!("{r}/opt/conf").into())
        });
        let create = position(&ops, |op| {
            *op == RootfsOp::CreateFile(format!("{r}/opt/conf/extra.conf").into())
        });
        let bind = position(&ops, |op| {
            is_mount_on(op, &format!("{r}/opt/conf/extra.conf"))
        });
        assert!(mkdir < create && create < bind);
    }

    #[test]
    fn layers_at_opt_and_hosts_file_are_bound_read_only() {
        let mut spec = sample();
        spec.opt_dir = Some("/srv/fleetfn/layers/l1".into());
        spec.hosts_file = Some("/srv/fleetfn/envs/e1/hosts".into());
        spec.extra_ro_binds = vec![("/opt/fleetfn/python3.12".into(), "/var/runtime/r0".into())];
        let host = host()
            .dir("/srv/fleetfn/layers/l1")
            .file("/srv/fleetfn/envs/e1/hosts", "127.0.0.1 localhost\n")
            .file("/etc/hosts", "host's");
        let text: Vec<String> = plan(&spec, &host)
            .unwrap()
            .iter()
            .map(ToString::to_string)
            .collect();
        let r = "/srv/fleetfn/envs/e1/root";
        let expected = [
            format!("bind /srv/fleetfn/envs/e1/hosts on {r}/etc/hosts"),
            format!("remount {r}/etc/hosts read-only"),
            format!("mkdir {r}/var/task"),
            format!("bind /srv/fleetfn/code/abc on {r}/var/task"),
            format!("remount {r}/var/task read-only"),
            format!("mkdir {r}/opt"),
            format!("bind /srv/fleetfn/layers/l1 on {r}/opt"),
            format!("remount {r}/opt read-only"),
            format!("mkdir {r}/var/runtime/r0"),
            format!("bind /opt/fleetfn/python3.12 on {r}/var/runtime/r0"),
            format!("remount {r}/var/runtime/r0 read-only"),
        ];
        let start = text
            .iter()
            .position(|t| *t == expected[0])
            .expect("hosts bind in plan");
        assert_eq!(text[start..start + expected.len()], expected);
        let etc = text
            .iter()
            .position(|t| *t == format!("bind /etc on {r}/etc"))
            .unwrap();
        assert!(etc < start, "the hosts file goes on top of the /etc bind");

        // A symlinked host /etc/hosts cannot be covered; a missing source names the step.
        let linked = self::host()
            .dir("/srv/fleetfn/layers/l1")
            .file("/srv/fleetfn/envs/e1/hosts", "")
            .symlink("/etc/hosts", "/run/hosts");
        assert_eq!(
            plan(&spec, &linked).unwrap_err().to_string(),
            "hosts: the host's /etc/hosts is not a regular file, so it cannot be replaced"
        );
        let no_layers = self::host()
            .file("/srv/fleetfn/envs/e1/hosts", "")
            .file("/etc/hosts", "");
        assert_eq!(
            plan(&spec, &no_layers).unwrap_err().step,
            "opt /srv/fleetfn/layers/l1"
        );
    }

    #[test]
    fn missing_sources_fail_with_the_step() {
        let mut spec = sample();
        spec.code_dir = "/nope".into();
        assert_eq!(
            plan(&spec, &host()).unwrap_err().to_string(),
            "code /nope: entity not found"
        );
        let mut spec = sample();
        spec.extra_ro_binds = vec![("/missing".into(), "/opt/x".into())];
        assert_eq!(
            plan(&spec, &host()).unwrap_err().step,
            "bind source /missing"
        );
        let mut spec = sample();
        spec.rootfs_dir = "/srv/fleetfn/code/abc/../x".into();
        assert!(plan(&spec, &host()).unwrap_err().step.starts_with("rootfs"));
    }

    #[test]
    fn apply_replays_plan_and_stops_at_first_failure() {
        let mut host = host();
        let ops = plan(&sample(), &host).unwrap();
        apply(&ops, &host).unwrap();
        assert_eq!(host.calls().len(), ops.len());

        host.fail = Some(
            |call| matches!(call, crate::host::Call::Mount(m) if m.target.ends_with("var/task")),
        );
        let before = host.calls().len();
        let err = apply(&ops, &host).unwrap_err();
        assert_eq!(
            err.to_string(),
            "bind /srv/fleetfn/code/abc on /srv/fleetfn/envs/e1/root/var/task: Operation not permitted (os error 1)"
        );
        let after = host.calls();
        assert!(matches!(after.last(), Some(crate::host::Call::Mount(_))));
        assert!(after.len() - before < ops.len());
    }
}
