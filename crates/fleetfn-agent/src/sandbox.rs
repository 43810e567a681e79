//! The sandboxing launcher: starts each runtime through `fleetfn jail` (the single-threaded
//! helper of `fleetfn-sandbox`), which puts it in its own cgroup (memory = `MemorySize`, CPU
//! quota = `vcpus × cpu_scale` host CPUs) under the instance's slice, private mount/pid/ipc/uts
//! namespaces with the code read-only at `/var/task`, its own size-capped `/tmp`, and an
//! unprivileged uid. Memory, CPU and OOM kills are read from the environment's cgroup; the
//! cgroup is killed and removed when the environment goes.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use fleetfn_sandbox::net::{self, EnvNetwork, NetIsolation};
use fleetfn_sandbox::{
    CgroupSpec, Cgroups, ExtensionProcess, Isolation, Lease, LeaseDir, Namespaces, Rlimits,
    SandboxSpec, SlotLease,
};

use crate::instance::{AGENT_LEAF, InstanceSlice, quota_us};
use crate::process::{
    Gate, GateSignal, LaunchCommand, Launched, Launcher, Reservation, ResourceAccounting,
    TmpStorage, runtime_command,
};

/// Where a runtime's host directories appear inside the sandbox when they cannot keep their
/// host path (`/opt` is the layers').
const SANDBOX_RUNTIME_ROOT: &str = "/var/runtime";
/// Where the function's merged layers appear inside the sandbox.
const SANDBOX_OPT: &str = fleetfn_sandbox::spec::OPT_DIR;
/// The agents' cgroup slice (instance slices and, without one, environment cgroups go here).
pub const SLICE: &str = "fleetfn";
/// Host roots the sandbox binds read-only anyway; paths under them need no extra bind.
const SYSTEM_ROOTS: &[&str] = &["/usr", "/bin", "/lib", "/lib64", "/sbin", "/etc"];
/// Smallest `/tmp` a sandbox gets, MiB.
const MIN_TMP_MB: u32 = 64;
/// Smallest CPU share of an environment, in vCPUs.
const MIN_VCPUS: f64 = 0.1;

/// First uid of environments: slot `n` runs as uid (and gid) `UID_BASE + n`.
pub const UID_BASE: u32 = 20_000;
/// Lease kind of cgroups that belong to a live agent (instance slices, environment cgroups).
pub const CGROUP_LEASES: &str = "cgroups";

/// Whether a live agent holds cgroup `name`'s lease (when that cannot be told, it is treated as
/// held: a sweep must never remove what might be alive).
pub(crate) fn cgroup_owned(leases: &LeaseDir, name: &str) -> bool {
    leases.is_held(CGROUP_LEASES, name).unwrap_or(true)
}

/// How environments are networked, and the host-wide leases they take.
#[derive(Debug, Clone)]
pub struct NetworkConfig {
    /// What the host allows (probed at start).
    pub isolation: NetIsolation,
    /// Resolvers written to the environments' `/etc/resolv.conf` (empty: the host's file).
    pub dns: Vec<std::net::IpAddr>,
    /// Host-wide leases (environment slots, live cgroups).
    pub leases: LeaseDir,
}

/// Launches runtimes inside sandboxes via `<binary> jail` (the spec on its stdin).
#[derive(Debug, Clone)]
pub struct SandboxLauncher {
    binary: PathBuf,
    isolation: Isolation,
    /// The environments' parent cgroup: the instance slice, or [`SLICE`] without one.
    cgroups: Option<Arc<Cgroups>>,
    instance: Option<Arc<InstanceSlice>>,
    net: NetworkConfig,
}

/// What a sandboxed environment holds for its life: its slot (uid and addresses), its
/// network namespace and the lease that marks its cgroup as alive.
#[derive(Debug)]
struct EnvHold {
    /// Dropped first: the namespace (and its veth pair) goes with the last process in it.
    net: Option<EnvNetwork>,
    _cgroup: Option<Lease>,
    slot: SlotLease,
}

impl EnvHold {
    fn uid(&self) -> u32 {
        UID_BASE + self.slot.slot()
    }
}

impl SandboxLauncher {
    /// `binary` is the `fleetfn` executable (its `jail` subcommand is the helper). Environment
    /// cgroups go under `instance`'s slice when given; else directly under [`SLICE`] (created
    /// here, process-free leftovers swept).
    pub fn new(
        binary: PathBuf,
        isolation: Isolation,
        instance: Option<Arc<InstanceSlice>>,
        net: NetworkConfig,
    ) -> Self {
        let cgroups = match &instance {
            Some(slice) => Some(Arc::new(slice.cgroups().clone())),
            None => isolation.cgroups.as_ref().and_then(|layout| {
                let c = Cgroups::new(layout.clone(), SLICE).ok()?;
                c.create_slice().ok()?;
                c.sweep(&[AGENT_LEAF], &|name| cgroup_owned(&net.leases, name));
                Some(Arc::new(c))
            }),
        };
        Self {
            binary,
            isolation,
            cgroups,
            instance,
            net,
        }
    }

    /// Sweeps empty environment cgroups whose environments are gone (call after stopping
    /// environments).
    pub fn sweep_cgroups(&self) -> usize {
        self.cgroups.as_deref().map_or(0, |c| {
            c.sweep(&[AGENT_LEAF], &|name| cgroup_owned(&self.net.leases, name))
                .len()
        })
    }

    /// Environment cgroups under the environments' parent cgroup.
    pub fn cgroup_count(&self) -> usize {
        self.cgroups.as_deref().map_or(0, |c| {
            c.list()
                .map(|l| l.iter().filter(|n| *n != AGENT_LEAF).count())
                .unwrap_or(0)
        })
    }

    /// CFS quota of an environment of `vcpus` vCPUs at `cpu_scale` host CPUs per vCPU.
    fn env_quota_us(&self, vcpus: f64, cpu_scale: f64) -> u64 {
        let host_cpus = vcpus.max(MIN_VCPUS) * cpu_scale;
        match &self.instance {
            Some(slice) => slice.env_quota_us(host_cpus),
            None => quota_us(host_cpus),
        }
    }
}

/// The Runtime API's defence in depth: a connection is served only when the socket at its
/// other end belongs to `uid`, the environment's own user (asked of the kernel in the
/// environment's network namespace). Everything else is refused: processes of other
/// environments (each has its own uid) and of the host, root included.
fn peer_filter(uid: u32, diag: Arc<net::SockDiag>) -> fleetfn_runtime_api::PeerFilter {
    Arc::new(move |peer, local| match (peer, local) {
        (std::net::SocketAddr::V4(peer), std::net::SocketAddr::V4(local)) => {
            diag.tcp_uid(peer, local).ok().flatten() == Some(uid)
        }
        _ => false,
    })
}

/// Connections made inside an environment's network namespace, until it is closed (the
/// namespace must not outlive the environment: its slot's addresses get reused).
#[derive(Debug)]
struct NsConnect(parking_lot::Mutex<Option<std::os::fd::OwnedFd>>);

impl crate::process::EnvConnect for NsConnect {
    fn connect(&self, addr: std::net::SocketAddr) -> io::Result<std::net::TcpStream> {
        // A clone, so the lock is not held across the (up to 1 s) connect.
        let ns = self
            .0
            .lock()
            .as_ref()
            .map(std::os::fd::OwnedFd::try_clone)
            .transpose()?
            .ok_or_else(|| {
                io::Error::new(io::ErrorKind::NotConnected, "the environment is gone")
            })?;
        net::connect_in(&ns, addr)
    }

    fn close(&self) {
        self.0.lock().take();
    }
}

/// Where an environment's slot search starts: a hash of its id (FNV-1a), so concurrent
/// starts rarely contend for the same slot.
fn slot_hint(env_id: &str) -> u32 {
    env_id.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

fn is_system_path(p: &Path) -> bool {
    SYSTEM_ROOTS.iter().any(|r| p.starts_with(r))
}

/// Rewrites host paths to their sandbox paths in one string.
fn rewrite(s: &str, map: &[(String, String)]) -> String {
    let mut out = s.to_string();
    for (host, inside) in map {
        if !host.is_empty() {
            out = out.replace(host.as_str(), inside);
        }
    }
    out
}

/// Reads an environment's memory and OOM kills from its cgroup; kills and removes the cgroup
/// when dropped (the environment is gone then).
#[derive(Debug)]
struct CgroupAccounting {
    cgroups: Arc<Cgroups>,
    name: String,
    /// Peak as of the last sample (the environment samples once a second).
    peak: std::sync::atomic::AtomicU64,
    /// Throttled CFS periods as of the last sample.
    throttled: std::sync::atomic::AtomicU64,
    /// The environment's reservation, released after the cgroup is killed.
    _hold: Option<crate::process::Hold>,
}

impl CgroupAccounting {
    /// Reads the cgroup once: updates the peak, returns it with (working set, CPU ns).
    fn read(&self) -> Option<(u64, (u64, u64))> {
        let s = self.cgroups.stats(&self.name).ok()?;
        let peak = s.memory_peak_bytes.unwrap_or(s.memory_current_bytes);
        self.peak
            .fetch_max(peak, std::sync::atomic::Ordering::Relaxed);
        self.throttled.store(
            s.cpu_throttled_periods,
            std::sync::atomic::Ordering::Relaxed,
        );
        Some((peak, (s.memory_working_set_bytes(), s.cpu_usage_ns)))
    }
}

impl ResourceAccounting for CgroupAccounting {
    fn peak_memory_bytes(&self) -> Option<u64> {
        self.read().map(|r| r.0)
    }

    fn last_peak_memory_bytes(&self) -> Option<u64> {
        Some(self.peak.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Memory is the working set (the charge minus inactive page cache; tmpfs pages of the
    /// environment's `/tmp` count).
    fn usage(&self) -> Option<(u64, u64)> {
        self.read().map(|r| r.1)
    }

    fn sample(&self) -> Option<(u64, u64)> {
        self.usage()
    }

    fn cpu_throttled_periods(&self) -> Option<u64> {
        Some(self.throttled.load(std::sync::atomic::Ordering::Relaxed))
    }

    fn oom_killed(&self) -> Option<bool> {
        self.cgroups.stats(&self.name).ok().map(|s| s.oom_kills > 0)
    }
}

impl Drop for CgroupAccounting {
    /// Kills what is left in the cgroup and removes it; then (the fields drop after this) the
    /// environment's hold is released, so its uid and slot are never reused while a process
    /// of it lives.
    fn drop(&mut self) {
        let _ = self.cgroups.kill_all(&self.name);
        if let Err(e) = self.cgroups.remove(&self.name) {
            tracing::warn!(cgroup = %self.name, error = %e, "removing the environment cgroup failed");
        }
    }
}

impl Launcher for SandboxLauncher {
    /// Takes a host-wide slot (its uid and address block), marks the environment's cgroup as
    /// alive, and creates its network namespace with the Runtime API listener inside.
    fn reserve(&self, env_id: &str) -> io::Result<Reservation> {
        let slot = self
            .net
            .leases
            .acquire_slot(net::slot_count(), slot_hint(env_id))?;
        let cgroup = match self.cgroups {
            Some(_) => Some(self.net.leases.hold_once(CGROUP_LEASES, env_id)?),
            None => None,
        };
        let (listener, network, diag) = if self.net.isolation.has_namespace() {
            let egress = matches!(self.net.isolation, NetIsolation::Egress);
            let mut network = EnvNetwork::create(slot.slot(), egress).map_err(io::Error::other)?;
            let listener = network
                .take_listener()
                .ok_or_else(|| io::Error::other("the namespace has no listener"))?;
            let diag = network.sock_diag();
            (listener, Some(network), diag)
        } else {
            (
                std::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0))?,
                None,
                Arc::new(net::SockDiag::open()?),
            )
        };
        // Deliveries to the environment's extensions go to its own loopback.
        let connect: Option<crate::process::Connect> = match &network {
            Some(n) => Some(Arc::new(NsConnect(parking_lot::Mutex::new(Some(
                n.ns_fd().try_clone_to_owned()?,
            ))))),
            None => None,
        };
        let hold = EnvHold {
            net: network,
            _cgroup: cgroup,
            slot,
        };
        let uid = hold.uid();
        Ok(Reservation {
            api_addr: listener.local_addr()?,
            listener: Some(listener),
            peer_filter: Some(peer_filter(uid, diag)),
            hold: Some(Box::new(hold)),
            connect,
        })
    }

    fn launch(&self, cmd: &LaunchCommand, reservation: Reservation) -> io::Result<Launched> {
        let inputs = &cmd.sandbox;
        let env_dir = inputs
            .tmp_dir
            .parent()
            .map_or_else(|| inputs.tmp_dir.clone(), Path::to_path_buf);
        // Host path → sandbox path, longest first so nested paths map correctly.
        let mut map: Vec<(String, String)> = vec![
            (
                inputs.code_dir.display().to_string(),
                "/var/task".to_string(),
            ),
            (inputs.tmp_dir.display().to_string(), "/tmp".to_string()),
        ];
        if let Some(opt) = &inputs.opt_dir {
            map.push((opt.display().to_string(), SANDBOX_OPT.to_string()));
        }
        let mut binds = Vec::new();
        for (i, dir) in inputs.runtime_dirs.iter().enumerate() {
            if is_system_path(dir) || !dir.exists() {
                continue;
            }
            // Same path inside when allowed (interpreters may have their install prefix baked
            // in); trees under /tmp, /var/task or the layers' /opt move to /var/runtime.
            if dir.starts_with("/tmp")
                || dir.starts_with("/var/task")
                || dir.starts_with("/proc")
                || dir.starts_with("/dev")
                || dir.starts_with(SANDBOX_RUNTIME_ROOT)
                || (inputs.opt_dir.is_some() && dir.starts_with(SANDBOX_OPT))
            {
                let inside = format!("{SANDBOX_RUNTIME_ROOT}/r{i}");
                map.push((dir.display().to_string(), inside.clone()));
                binds.push((dir.clone(), PathBuf::from(inside)));
            } else {
                binds.push((dir.clone(), dir.clone()));
            }
        }
        // The log socket of the runtime's workers, at a fixed place inside (connecting to a
        // socket needs no write access to its mount).
        let socket_inside = inputs
            .log_socket
            .as_ref()
            .filter(|_| self.isolation.namespaces.mount);
        if let Some(sock) = socket_inside {
            binds.push((sock.clone(), PathBuf::from(crate::log_socket::SANDBOX_PATH)));
        }
        map.sort_by_key(|(h, _)| std::cmp::Reverse(h.len()));
        let mut argv = vec![rewrite(&cmd.program.display().to_string(), &map)];
        argv.extend(cmd.args.iter().map(|a| rewrite(a, &map)));
        let env: Vec<(String, String)> = cmd
            .env
            .iter()
            .map(|(k, v)| match k.as_str() {
                crate::log_socket::SOCKET_ENV if socket_inside.is_some() => {
                    (k.clone(), crate::log_socket::SANDBOX_PATH.to_owned())
                }
                _ => (k.clone(), rewrite(v, &map)),
            })
            .collect();
        if self.cgroups.is_some() && inputs.env_id == AGENT_LEAF {
            return Err(io::Error::other(format!(
                "{AGENT_LEAF:?} names the agent's own cgroup; it cannot be an environment id"
            )));
        }
        let hold = reservation
            .hold
            .and_then(|h| h.downcast::<EnvHold>().ok())
            .ok_or_else(|| {
                io::Error::other("the environment was not reserved by the sandbox launcher")
            })?;
        let uid = hold.uid();
        if let Some(sock) = &inputs.log_socket {
            // Only the environment's uid may connect (the socket is mode 0600).
            std::os::unix::fs::chown(sock, Some(uid), Some(uid))?;
        }
        let rootfs_dir = env_dir.join("rootfs");
        std::fs::create_dir_all(&rootfs_dir)?;
        let cgroup = self.cgroups.as_ref().map(|c| CgroupSpec {
            name: inputs.env_id.clone(),
            memory_bytes: Some(u64::from(inputs.memory_mb) * 1024 * 1024),
            cpu_quota_us: Some(self.env_quota_us(inputs.vcpus, inputs.cpu_scale)),
            cpu_period_us: Some(fleetfn_sandbox::cgroups::DEFAULT_CPU_PERIOD_US),
            pids_max: Some(4096),
            root: c.layout().root().to_path_buf(),
            slice: c.slice().display().to_string(),
        });
        let mut spec = SandboxSpec {
            argv,
            env,
            cwd: PathBuf::from(rewrite(&cmd.cwd.display().to_string(), &map)),
            code_dir: inputs.code_dir.clone(),
            extra_ro_binds: binds,
            tmp_size_mb: u64::from(inputs.tmp_size_mb.max(MIN_TMP_MB)),
            uid,
            gid: uid,
            rootfs_dir,
            namespaces: Namespaces::all(),
            cgroup,
            no_new_privs: true,
            rlimits: Rlimits::default(),
            netns: hold.net.as_ref().map(EnvNetwork::ns_path),
            seccomp: true,
            resolv_conf: None,
            opt_dir: inputs.opt_dir.clone(),
            hosts_file: inputs.hosts_file.clone(),
            extensions: inputs
                .extensions
                .iter()
                .map(|name| ExtensionProcess {
                    name: name.clone(),
                    path: Path::new(SANDBOX_OPT)
                        .join(crate::layers::EXTENSIONS_DIR)
                        .join(name),
                })
                .collect(),
            extension_output: Vec::new(),
        };
        if !self.net.dns.is_empty() {
            let path = env_dir.join("resolv.conf");
            let lines: String = self
                .net
                .dns
                .iter()
                .map(|ip| format!("nameserver {ip}\n"))
                .collect();
            std::fs::write(&path, lines)?;
            spec.resolv_conf = Some(path);
        }
        self.isolation.fit(&mut spec);
        let mut command = runtime_command(&self.binary);
        // Each extension writes on its own pipe (not the runtime's stdout and stderr).
        let mut extension_output = Vec::new();
        let mut output_writers = Vec::new();
        for ext in &spec.extensions {
            let (read, write) = std::io::pipe()?;
            extension_output.push((ext.name.clone(), std::os::fd::OwnedFd::from(read)));
            output_writers.push(std::os::fd::OwnedFd::from(write));
        }
        spec.extension_output =
            fleetfn_sandbox::pass_extension_outputs(command.as_std_mut(), output_writers);
        // The spec (with the function's environment variables) goes through a pipe, never to
        // disk; the helper reads it to the end and gives the runtime /dev/null as stdin. With
        // extensions it is one line, and the pipe stays open for the gate (and stop) bytes.
        let mut json = serde_json::to_vec(&spec).map_err(io::Error::other)?;
        let (gate, gate_rx) = if spec.extensions.is_empty() {
            (None, None)
        } else {
            json.push(b'\n');
            let (g, rx) = Gate::new();
            (Some(g), Some(rx))
        };
        let (spec_read, spec_write) = std::io::pipe()?;
        let child = command.arg("jail").stdin(spec_read).spawn()?;
        // The agent's copies of the write ends go with the command.
        drop(command);
        std::thread::Builder::new()
            .name("sandbox-spec".into())
            .spawn(move || {
                let mut w = spec_write;
                // A helper that died early closes the pipe: EPIPE ends the write.
                if std::io::Write::write_all(&mut w, &json).is_err() {
                    return;
                }
                let Some(rx) = gate_rx else { return };
                // Until the environment drops its gate: an unopened gate closes the pipe,
                // which aborts the sandbox before its runtime starts.
                while let Ok(signal) = rx.recv() {
                    let byte = match signal {
                        GateSignal::Open => fleetfn_sandbox::init::GATE_BYTE,
                        GateSignal::Stopping => fleetfn_sandbox::init::STOPPING_BYTE,
                    };
                    if std::io::Write::write_all(&mut w, &[byte]).is_err() {
                        return;
                    }
                }
            })?;
        let mut hold: Option<crate::process::Hold> = Some(hold);
        let accounting: Option<Arc<dyn ResourceAccounting>> =
            self.cgroups
                .as_ref()
                .map(|c| -> Arc<dyn ResourceAccounting> {
                    Arc::new(CgroupAccounting {
                        cgroups: c.clone(),
                        name: inputs.env_id.clone(),
                        peak: std::sync::atomic::AtomicU64::new(0),
                        throttled: std::sync::atomic::AtomicU64::new(0),
                        _hold: hold.take(),
                    })
                });
        let tmp = if spec.namespaces.mount {
            TmpStorage::PrivateTmpfs {
                size_bytes: spec.tmp_size_mb * 1024 * 1024,
            }
        } else {
            TmpStorage::HostDir
        };
        Ok(Launched {
            child,
            accounting,
            tmp,
            hold,
            gate,
            extension_output,
        })
    }

    /// The sandbox's init starts them ([`fleetfn_sandbox::init`]), each environment has its
    /// own network (when the host allows namespaces) and `/opt`.
    fn extensions_unsupported(&self) -> Option<String> {
        (!self.isolation.namespaces.mount).then(|| {
            "external extensions (the executables in /opt/extensions) need the layers bound at /opt, and this host cannot give environments a private mount namespace".to_owned()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_give_unique_unprivileged_uids() {
        let tmp = tempfile::tempdir().unwrap();
        let leases = LeaseDir::new(tmp.path());
        let holds: Vec<EnvHold> = (0..50)
            .map(|_| EnvHold {
                net: None,
                _cgroup: None,
                // The same hint every time: contention still yields distinct slots.
                slot: leases
                    .acquire_slot(net::slot_count(), slot_hint("e-1"))
                    .unwrap(),
            })
            .collect();
        let mut uids: Vec<u32> = holds.iter().map(EnvHold::uid).collect();
        assert!(
            uids.iter()
                .all(|u| *u >= UID_BASE && *u < UID_BASE + net::slot_count())
        );
        uids.sort_unstable();
        uids.dedup();
        assert_eq!(uids.len(), 50);
    }

    #[test]
    fn host_paths_map_into_the_sandbox() {
        let mut map = vec![
            (
                "/data/artifacts/extracted/abc".to_string(),
                "/var/task".to_string(),
            ),
            ("/data/envs/e-1/tmp".to_string(), "/tmp".to_string()),
            (
                "/data/runtimes/python3.13".to_string(),
                "/var/runtime/r0".to_string(),
            ),
        ];
        map.sort_by_key(|(h, _)| std::cmp::Reverse(h.len()));
        assert_eq!(
            rewrite(
                "/data/artifacts/extracted/abc:/data/runtimes/python3.13",
                &map
            ),
            "/var/task:/var/runtime/r0"
        );
        assert_eq!(rewrite("/data/envs/e-1/tmp", &map), "/tmp");
        assert!(is_system_path(Path::new("/usr/bin/node")));
        assert!(!is_system_path(Path::new("/root/.pyenv/versions/3.13.0")));
    }
}
